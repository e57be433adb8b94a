/*
 * fuzz_trailer.c - tf__wire_decode_trailer on arbitrary bytes.
 */
#include "fuzz.h"
#include "wire.h"

static long decode(const uint8_t *buf, size_t len, void *ctx)
{
    return tf__wire_decode_trailer(buf, len, ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tf_wire_trailer t;
    long n = tf__wire_decode_trailer(data, size, &t);
    FUZZ_CHECK(n == TF_WIRE_NEED_MORE || n == TF_EPROTO || n >= TF_WIRE_TRAILER_SIZE);
    if (n == TF_EPROTO)
        FUZZ_CHECK(size >= TF_WIRE_TRAILER_SIZE &&
                   tf__get_u16(data + 2) > TF_WIRE_DIGEST_MAX);
    if (n <= 0)
        return 0;

    FUZZ_CHECK((size_t)n <= size);
    FUZZ_CHECK(t.digest_len <= TF_WIRE_DIGEST_MAX);
    FUZZ_CHECK((size_t)n == TF_WIRE_TRAILER_SIZE + (size_t)t.digest_len);
    FUZZ_CHECK(t.digest == data + TF_WIRE_TRAILER_SIZE);
    uint8_t out[TF_WIRE_TRAILER_SIZE + TF_WIRE_DIGEST_MAX];
    FUZZ_CHECK(tf__wire_encode_trailer(out, sizeof out, &t) == n);
    FUZZ_CHECK(memcmp(out, data, (size_t)n) == 0);
    fuzz_check_prefixes(data, (size_t)n, TF_WIRE_TRAILER_SIZE, decode, &t);
    return 0;
}
