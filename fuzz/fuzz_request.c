/*
 * fuzz_request.c - tf__wire_decode_request on arbitrary bytes. The first
 * two input bytes are the receiver's max_name (0..65535: the decoder must
 * clamp it to TF_WIRE_NAME_MAX), the rest is the frame: head, name, and
 * the upload key when the flags announce one, and the put extension block
 * (if-match digest, mtime, skip-if-same digest) as its flags announce.
 */
#include "fuzz.h"
#include "wire.h"

struct ctx {
    size_t max_name;
    tf_wire_request r;
};

static long decode(const uint8_t *buf, size_t len, void *vctx)
{
    struct ctx *c = vctx;
    return tf__wire_decode_request(buf, len, c->max_name, &c->r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct ctx c;
    c.max_name = fuzz_take_u16(&data, &size);
    size_t limit = c.max_name < TF_WIRE_NAME_MAX ? c.max_name : TF_WIRE_NAME_MAX;
    tf_wire_request r;
    long n = tf__wire_decode_request(data, size, c.max_name, &r);
    FUZZ_CHECK(n == TF_WIRE_NEED_MORE || n == TF_ETOOBIG || n >= TF_WIRE_REQUEST_SIZE);
    /* What follows the head: the name, an upload key when flagged (flag
       0x01 is each tree op's own, no key), a rename's new path (its length
       the size field, when 1..4096), and a put's extension block. */
    size_t tail = 0, key = 0, to = 0;
    uint8_t ext_flags = 0;
    if (size >= TF_WIRE_REQUEST_SIZE) {
        uint8_t op = data[0], flags = data[1];
        uint64_t sz = tf__get_u64(data + 8);
        key = (flags & TF_REQ_UPLOAD_KEY) && !(op >= TF_OP_STAT && op <= TF_OP_LISTDIR)
                  ? TF_UPLOAD_KEY_SIZE
                  : 0;
        to = op == TF_OP_RENAME && sz > 0 && sz <= TF_WIRE_NAME_MAX ? (size_t)sz : 0;
        ext_flags = op == TF_OP_PUT ? flags : 0;
        tail = tf__get_u16(data + 2) + key + to +
               ((ext_flags & TF_REQ_IF_MATCH) ? TF_WIRE_EXT_DIGEST : 0) +
               ((ext_flags & TF_REQ_MTIME) ? TF_WIRE_MTIME_SIZE : 0) +
               ((ext_flags & TF_REQ_SKIP_SAME) ? TF_WIRE_EXT_DIGEST : 0);
    }
    FUZZ_CHECK(tail <= 0xFFFFu + TF_UPLOAD_KEY_SIZE + TF_WIRE_NAME_MAX + TF_WIRE_EXT_MAX);
    if (n == TF_WIRE_NEED_MORE)
        FUZZ_CHECK(size < TF_WIRE_REQUEST_SIZE || size - TF_WIRE_REQUEST_SIZE < tail);
    /* Over the limit is decided from the head alone, before the name. */
    if (n == TF_ETOOBIG)
        FUZZ_CHECK(size >= TF_WIRE_REQUEST_SIZE &&
                   (tf__get_u16(data + 2) > limit || to > limit));
    if (n <= 0)
        return 0;

    FUZZ_CHECK((size_t)n <= size);
    FUZZ_CHECK(r.name_len <= limit);
    FUZZ_CHECK((size_t)n == TF_WIRE_REQUEST_SIZE + tail);
    FUZZ_CHECK(tf__wire_request_tail(&r) == tail);
    FUZZ_CHECK(r.name == (const char *)data + TF_WIRE_REQUEST_SIZE);
    if (key)
        FUZZ_CHECK(r.key == data + TF_WIRE_REQUEST_SIZE + r.name_len);
    else
        FUZZ_CHECK(r.key == NULL);
    /* The extension block ends a put's frame, its fields in flag order. */
    const uint8_t *ext = data + TF_WIRE_REQUEST_SIZE + r.name_len + key + to;
    FUZZ_CHECK(r.if_match == ((ext_flags & TF_REQ_IF_MATCH) ? ext : NULL));
    ext += (ext_flags & TF_REQ_IF_MATCH) ? TF_WIRE_EXT_DIGEST : 0;
    if (ext_flags & TF_REQ_MTIME)
        FUZZ_CHECK((uint64_t)r.mtime_sec == tf__get_u64(ext) &&
                   r.mtime_nsec == tf__get_u32(ext + 8));
    else
        FUZZ_CHECK(r.mtime_sec == 0 && r.mtime_nsec == 0);
    ext += (ext_flags & TF_REQ_MTIME) ? TF_WIRE_MTIME_SIZE : 0;
    FUZZ_CHECK(r.same == ((ext_flags & TF_REQ_SKIP_SAME) ? ext : NULL));
    ext += (ext_flags & TF_REQ_SKIP_SAME) ? TF_WIRE_EXT_DIGEST : 0;
    FUZZ_CHECK(ext == data + n);
    /* What was accepted encodes back to the same bytes, but the reserved
       field, which is sent as zero (a rename has an encoder of its own). */
    static uint8_t out[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX + TF_UPLOAD_KEY_SIZE +
                       TF_WIRE_EXT_MAX];
    if (r.op != TF_OP_RENAME) {
        FUZZ_CHECK(tf__wire_encode_request(out, sizeof out, &r) == n);
        FUZZ_CHECK(memcmp(out, data, 4) == 0);
        FUZZ_CHECK(tf__get_u32(out + 4) == 0);
        FUZZ_CHECK(memcmp(out + 8, data + 8, (size_t)n - 8) == 0);
    }
    fuzz_check_prefixes(data, (size_t)n, TF_WIRE_REQUEST_SIZE, decode, &c);
    return 0;
}
