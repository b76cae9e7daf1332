/*
 * wal_record.c - WalRecord payloads (proto/wal.proto) in and out.
 *
 * The WAL frames bytes; these helpers are the one place that turns a
 * payload back into a message and checks what the frame cannot: that the
 * oneof matches the frame type, that the payload format is one this build
 * understands, and that a replicated_apply does not wrap another one (the
 * original is carried as bytes precisely so decoding stays one level deep,
 * whatever a hostile peer sends). protobuf-c is confined to wal/ and
 * proto/: wal.h only forward-declares the generated struct.
 */
#include "wal_int.h"
#include "wal.pb-c.h"

#include <errno.h>

int
wal_record_decode(uint16_t type, const void *payload, size_t len, struct Meridian__WalRecord **out)
{
    Meridian__WalRecord *rec;

    if (!out || (!payload && len))
        return MRD_EINVAL;
    rec = meridian__wal_record__unpack(NULL, len, payload);
    if (!rec)
        return MRD_ECORRUPT;
    if (rec->body_case == MERIDIAN__WAL_RECORD__BODY__NOT_SET ||
        (type != 0 && (uint16_t)rec->body_case != type) || rec->format > WAL_RECORD_FORMAT)
        goto corrupt;
    if (rec->body_case == MERIDIAN__WAL_RECORD__BODY_REPLICATED_APPLY) {
        const Meridian__ReplicatedApply *ra = rec->replicated_apply;
        if (ra->original_type == 0 || !wal_rec_forwarded((uint16_t)ra->original_type) ||
            ra->original_type > 0xffff)
            goto corrupt;
    }
    *out = rec;
    return 0;
corrupt:
    meridian__wal_record__free_unpacked(rec, NULL);
    return MRD_ECORRUPT;
}

void
wal_record_free(struct Meridian__WalRecord *rec)
{
    if (rec)
        meridian__wal_record__free_unpacked(rec, NULL);
}
