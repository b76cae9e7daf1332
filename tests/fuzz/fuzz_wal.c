/*
 * fuzz_wal.c - libFuzzer target for the WAL segment reader.
 *
 * The input is a segment image (what wal_open reads from disk) behind one
 * control byte:
 *   bit 0: scan it as the newest segment (torn tails allowed) or an older one;
 *   bit 1: repair checksums before scanning. Random bytes almost never carry
 *          a valid CRC32C, so without this the fuzzer would only ever test the
 *          header check. With it, the harness recomputes the header CRC and
 *          walks the frames by their declared lengths, fixing each record's
 *          CRC, so lengths, LSN sequence, synced offsets, types and the
 *          torn-versus-corrupt search get exercised.
 * Every record the scanner accepts is decoded as a WalRecord (and the
 * original inside a replicated_apply), as the engine's replay would. The
 * scanner's answers are checked for consistency; a violation aborts.
 */
#include "wal.h"
#include "wal.pb-c.h"
#include "wal_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz {
    uint64_t n;
    uint64_t last;
} fz;

static int
on_record(void *ud, const wal_entry *e)
{
    fz *f = ud;
    struct Meridian__WalRecord *rec = NULL;

    if (f->n > 0 && e->lsn != f->last + 1)
        abort(); /* accepted records must be consecutive */
    f->n++;
    f->last = e->lsn;
    if (wal_record_decode(e->type, e->payload, e->len, &rec) == 0) {
        if (rec->body_case == MERIDIAN__WAL_RECORD__BODY_REPLICATED_APPLY) {
            struct Meridian__WalRecord *inner = NULL;
            const Meridian__ReplicatedApply *ra = rec->replicated_apply;
            if (wal_record_decode((uint16_t)ra->original_type, ra->original.data, ra->original.len,
                                  &inner) == 0)
                wal_record_free(inner);
        }
        wal_record_free(rec);
    }
    return 0;
}

static void
repair(uint8_t *buf, size_t len)
{
    size_t off = WAL__SEG_HDR;

    if (len < WAL__SEG_HDR)
        return;
    memcpy(buf, WAL__MAGIC, 8);
    wal__put32(buf + 28, wal__crc_mask(mrd_crc32c(0, buf, 28)));
    while (off + WAL__REC_HDR <= len) {
        uint32_t rlen = wal__get32(buf + off + 4);
        if (rlen > len - off - WAL__REC_HDR)
            break;
        wal__put32(buf + off,
                   wal__crc_mask(mrd_crc32c(0, buf + off + 4, WAL__REC_HDR - 4 + (size_t)rlen)));
        off += WAL__REC_HDR + rlen;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wal_scan_result res;
    uint8_t *buf;
    fz f = {0, 0};
    int ctl;

    if (size < 1)
        return 0;
    ctl = data[0];
    size--;
    buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size);
    if (ctl & 2)
        repair(buf, size);
    if (wal_segment_scan(buf, size, ctl & 1, on_record, &f, &res) != 0)
        abort();
    if (res.state != WAL_SCAN_BAD_HEADER) {
        if (res.end > size || res.end < WAL__SEG_HDR || res.records != f.n)
            abort();
        if (res.last_lsn != res.first_lsn - 1 + res.records)
            abort();
        if ((res.state == WAL_SCAN_CLEAN) != (res.end == size))
            abort();
        if (res.state == WAL_SCAN_TORN && !(ctl & 1))
            abort(); /* only the newest segment may be torn */
    } else if (f.n != 0) {
        abort();
    }
    free(buf);
    return 0;
}
