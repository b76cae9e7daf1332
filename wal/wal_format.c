/*
 * wal_format.c - the WAL's bytes: segment headers, record frames, and the
 * scanner that decides what a segment image holds.
 *
 * A segment is a 32-byte header followed by records back to back (the full
 * grammar is wal/FORMAT.md). Each record carries its own LSN, so a segment
 * needs no index, and a CRC32C over everything after the CRC field, so any
 * damaged byte is caught. What needs care is telling a torn tail from real
 * corruption, because the answers differ: a torn tail is the normal result
 * of a crash during the last write and is cut off silently (it was never
 * acknowledged), while a bad record inside data that had been fdatasync'ed
 * means the disk lost acknowledged writes, and start-up must stop.
 *
 * The writer makes the difference visible on disk. It writes a batch, then
 * fdatasyncs it, and only then writes the next batch, so at a crash at most
 * the last batch can be partly on disk, in any order of its pages (the page
 * cache flushes pages independently; ext4 may extend the size before the
 * data lands and show zeros). Every record carries "synced": the size of the
 * segment's durable prefix when the record was written, i.e. the offset of
 * the batch it belongs to. When a record at offset X fails to check, the
 * scanner looks further for any record that does check: if one has
 * synced > X, the bytes at X had been synced before that record was written,
 * so X is corruption in durable data (WAL_SCAN_CORRUPT). If none does,
 * everything from X on belongs to the last batch, which was never
 * acknowledged (WAL_SCAN_TORN). Segment rolls keep this local to the newest
 * segment: a segment is fdatasync'ed before the next one is created, so only
 * the newest segment may have a torn tail; a bad record in an older one is
 * always corruption.
 *
 * The blind spot, documented in FORMAT.md: damage inside the very last batch
 * after it was synced looks exactly like a torn write. wal_open then cuts it
 * and reports it, and the caller can still notice when the index had applied
 * a cut LSN (wal_open fails: replay_from beyond the end).
 *
 * The forward search runs only on the failure path; it CRCs a candidate only
 * when its header is plausible (nonzero type, sane length, synced between
 * the segment header and its own offset), so it costs little on real data.
 * Hostile input can make it quadratic in the segment size; the fuzzer keeps
 * inputs small and wal_open only runs it once, on a bad record.
 */
#include "wal_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void
wal__seg_header_encode(uint8_t *hdr, uint32_t site_id, uint64_t first_lsn)
{
    memset(hdr, 0, WAL__SEG_HDR);
    memcpy(hdr, WAL__MAGIC, 8);
    wal__put32(hdr + 8, WAL__VERSION);
    wal__put32(hdr + 12, site_id);
    wal__put64(hdr + 16, first_lsn);
    wal__put32(hdr + 24, 0); /* flags, reserved */
    wal__put32(hdr + 28, wal__crc_mask(mrd_crc32c(0, hdr, 28)));
}

const char *
wal__seg_header_decode(const uint8_t *hdr, size_t len, uint32_t *site_id, uint64_t *first_lsn)
{
    if (len < WAL__SEG_HDR)
        return "segment shorter than its header";
    if (memcmp(hdr, WAL__MAGIC, 8) != 0)
        return "bad segment magic";
    if (wal__get32(hdr + 28) != wal__crc_mask(mrd_crc32c(0, hdr, 28)))
        return "segment header checksum mismatch";
    if (wal__get32(hdr + 8) == 0 || wal__get32(hdr + 8) > WAL__VERSION)
        return "unsupported segment format version";
    if (wal__get64(hdr + 16) == 0)
        return "segment first LSN is 0";
    *site_id = wal__get32(hdr + 12);
    *first_lsn = wal__get64(hdr + 16);
    return NULL;
}

void
wal__rec_header_init(uint8_t *frame, uint32_t len, uint64_t lsn, uint16_t type)
{
    wal__put32(frame, 0);
    wal__put32(frame + 4, len);
    wal__put64(frame + 8, lsn);
    wal__put16(frame + 16, type);
    wal__put16(frame + 18, 0);
    wal__put32(frame + 20, 0);
}

void
wal__rec_seal(uint8_t *frame, uint32_t synced)
{
    uint32_t len = wal__get32(frame + 4);

    wal__put32(frame + 20, synced);
    wal__put32(frame, wal__crc_mask(mrd_crc32c(0, frame + 4, WAL__REC_HDR - 4 + (size_t)len)));
}

const char *
wal__rec_check(const uint8_t *p, size_t avail, uint64_t off, uint64_t expect_lsn, wal__rec *r)
{
    wal__rec h;

    if (avail < WAL__REC_HDR)
        return "truncated record header";
    h.crc = wal__get32(p);
    h.len = wal__get32(p + 4);
    h.lsn = wal__get64(p + 8);
    h.type = wal__get16(p + 16);
    h.flags = wal__get16(p + 18);
    h.synced = wal__get32(p + 20);
    if (h.crc == 0 && h.len == 0 && h.type == 0)
        return "zeroed record header";
    if (h.len > WAL_MAX_RECORD)
        return "bad record length";
    if (h.len > avail - WAL__REC_HDR)
        return "truncated record (length beyond end of segment)";
    if (h.crc != wal__crc_mask(mrd_crc32c(0, p + 4, WAL__REC_HDR - 4 + (size_t)h.len)))
        return "checksum mismatch";
    if (h.type == 0)
        return "record type 0";
    if (h.synced < WAL__SEG_HDR || h.synced > off)
        return "bad synced offset";
    if (expect_lsn && h.lsn != expect_lsn)
        return "LSN out of sequence";
    *r = h;
    return NULL;
}

void
wal__seg_name(uint64_t first_lsn, char out[WAL__NAME_LEN])
{
    snprintf(out, WAL__NAME_LEN, "%016" PRIx64 ".wal", first_lsn);
}

int
wal__seg_name_parse(const char *name, uint64_t *first)
{
    uint64_t v = 0;

    if (strlen(name) != 20 || strcmp(name + 16, ".wal") != 0)
        return -1;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return -1;
        v = (v << 4) | (uint64_t)d;
    }
    if (v == 0)
        return -1;
    *first = v;
    return 0;
}

/* After a bad record at bad_off: counts the records further on that check,
 * and tells whether any was written after bad_off had been synced. */
static void
scan_beyond(const uint8_t *buf, size_t len, size_t bad_off, uint64_t *n_valid, int *synced_past)
{
    size_t p = bad_off + 1;

    *n_valid = 0;
    *synced_past = 0;
    while (p + WAL__REC_HDR <= len) {
        const uint8_t *h = buf + p;
        uint32_t rlen = wal__get32(h + 4), synced = wal__get32(h + 20);
        wal__rec r;

        if (wal__get16(h + 16) == 0 || rlen > len - p - WAL__REC_HDR || synced < WAL__SEG_HDR ||
            synced > p || wal__rec_check(h, len - p, p, 0, &r) != NULL) {
            p++;
            continue;
        }
        (*n_valid)++;
        if (r.synced > bad_off)
            *synced_past = 1;
        p += WAL__REC_HDR + r.len;
    }
}

int
wal_segment_scan(const void *vbuf, size_t len, int is_last, wal_replay_fn cb, void *ud,
                 wal_scan_result *res)
{
    const uint8_t *buf = vbuf;
    wal_scan_result out;
    const char *why;
    size_t off;

    if ((!buf && len) || !res)
        return MRD_EINVAL;
    memset(&out, 0, sizeof(out));
    why = wal__seg_header_decode(buf, len, &out.site_id, &out.first_lsn);
    if (why) {
        out.state = WAL_SCAN_BAD_HEADER;
        out.reason = why;
        *res = out;
        return 0;
    }
    out.last_lsn = out.first_lsn - 1;
    off = WAL__SEG_HDR;
    while (off < len) {
        wal__rec r;
        int synced_past;

        why = wal__rec_check(buf + off, len - off, off, out.last_lsn + 1, &r);
        if (why) {
            scan_beyond(buf, len, off, &out.later_records, &synced_past);
            out.state = (is_last && !synced_past) ? WAL_SCAN_TORN : WAL_SCAN_CORRUPT;
            out.reason = why;
            break;
        }
        if (cb) {
            wal_entry e = {r.lsn, r.type, buf + off + WAL__REC_HDR, r.len};
            int rc = cb(ud, &e);
            if (rc != 0)
                return rc;
        }
        out.last_lsn = r.lsn;
        if (wal_rec_forwarded(r.type))
            out.last_own = r.lsn;
        out.records++;
        off += WAL__REC_HDR + r.len;
    }
    out.end = off;
    *res = out;
    return 0;
}
