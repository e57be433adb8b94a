/*
 * fuzz_tree.c - the tree's frames (docs/protocol.md section 3a) on
 * arbitrary bytes. Byte 0 chooses the decoder, the rest is its input:
 *   0  a stat record (tf__wire_decode_stat) of exactly that many bytes: an
 *      accepted one re-encodes to the same first 40 bytes (flags and
 *      reserved bits aside);
 *   1  a listdir chunk: entries decoded one after the other until the chunk
 *      ends, as the client does (max_path from the next two bytes); each
 *      accepted entry re-encodes to the very bytes it came from;
 *   2  a request head and tail (tf__wire_decode_request, with a rename's
 *      new path): never reads past len, every prefix of an accepted frame
 *      needs more, and a rename's new path lies inside the frame.
 * Every decode runs on an exact heap copy, so ASan sees any over-read.
 */
#include "fuzz.h"
#include "internal.h"
#include "wire.h"

static long dec_request(const uint8_t *buf, size_t len, void *ctx)
{
    tf_wire_request r;
    return tf__wire_decode_request(buf, len, *(size_t *)ctx, &r);
}

static void fuzz_stat(const uint8_t *data, size_t size)
{
    uint8_t *p = fuzz_copy(data, size);
    tf_wire_stat st;
    long n = tf__wire_decode_stat(p, size, &st);
    FUZZ_CHECK(n == (long)size || n == TF_EPROTO);
    if (n > 0) {
        FUZZ_CHECK(size >= TF_WIRE_STAT_SIZE && size <= TF_WIRE_STAT_MAX);
        FUZZ_CHECK(st.type == 1 || st.type == 2);
        uint8_t out[TF_WIRE_STAT_SIZE];
        FUZZ_CHECK(tf__wire_encode_stat(out, sizeof out, &st) == TF_WIRE_STAT_SIZE);
        FUZZ_CHECK(out[0] == p[0] && memcmp(out + 4, p + 4, 20) == 0);
        if (st.flags & TF_WIRE_STAT_HAS_DIGEST)
            FUZZ_CHECK(memcmp(out + 24, p + 24, 16) == 0);
    }
    free(p);
}

static void fuzz_chunk(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t max_path = fuzz_take_u16(&data, &size);
    uint8_t *p = fuzz_copy(data, size);
    size_t pos = 0;
    while (pos < size) {
        tf_wire_dirent d;
        long n = tf__wire_decode_dirent(p + pos, size - pos, max_path, &d);
        if (n == TF_EPROTO)
            break;
        FUZZ_CHECK(n > 0 && (size_t)n <= size - pos);
        FUZZ_CHECK(d.path_len >= 1 && d.path_len <= max_path && d.path_len <= TF_WIRE_NAME_MAX);
        FUZZ_CHECK(d.path == (const char *)p + pos + 2);
        uint8_t *out = malloc((size_t)n);
        FUZZ_CHECK(out != NULL);
        FUZZ_CHECK(tf__wire_encode_dirent(out, (size_t)n, &d) == n);
        /* The reserved byte is sent as 0 and ignored on receipt. */
        out[3 + d.path_len] = p[pos + 3 + d.path_len];
        FUZZ_CHECK(memcmp(out, p + pos, (size_t)n) == 0);
        free(out);
        pos += (size_t)n;
    }
    free(p);
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t max = fuzz_take_u16(&data, &size);
    uint8_t *p = fuzz_copy(data, size);
    tf_wire_request r;
    long n = tf__wire_decode_request(p, size, max, &r);
    FUZZ_CHECK(n == TF_WIRE_NEED_MORE || n == TF_ETOOBIG || (n > 0 && (size_t)n <= size));
    if (n > 0) {
        size_t to_len;
        const char *to = tf__wire_request_to(&r, &to_len);
        if (to) {
            FUZZ_CHECK(r.op == TF_OP_RENAME && to_len == r.size && to_len <= max);
            FUZZ_CHECK((const uint8_t *)to + to_len <= p + n);
            FUZZ_CHECK(r.key == NULL);
        }
        if (r.op >= TF_OP_STAT && r.op <= TF_OP_LISTDIR)
            FUZZ_CHECK(r.key == NULL);
        fuzz_check_prefixes(p, (size_t)n, TF_WIRE_REQUEST_SIZE, dec_request, &max);
    }
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    switch (mode % 3) {
    case 0:
        fuzz_stat(data, size);
        break;
    case 1:
        fuzz_chunk(data, size);
        break;
    default:
        fuzz_request(data, size);
        break;
    }
    return 0;
}
