/*
 * fuzz_client_hello.c - tf__wire_decode_client_hello on arbitrary bytes.
 */
#include "fuzz.h"
#include "wire.h"

static long decode(const uint8_t *buf, size_t len, void *ctx)
{
    return tf__wire_decode_client_hello(buf, len, ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tf_wire_client_hello h;
    long n = tf__wire_decode_client_hello(data, size, &h);
    FUZZ_CHECK(n == TF_WIRE_NEED_MORE || n == TF_EPROTO || n == TF_WIRE_CLIENT_HELLO_SIZE);
    /* A wrong magic byte is refused as soon as it is seen. */
    size_t m = size < 4 ? size : 4;
    if (memcmp(data, TF_WIRE_MAGIC, m) != 0)
        FUZZ_CHECK(n == TF_EPROTO);
    if (n == TF_WIRE_NEED_MORE)
        FUZZ_CHECK(size < TF_WIRE_CLIENT_HELLO_SIZE);
    if (n <= 0)
        return 0;

    FUZZ_CHECK(h.version_min >= 1 && h.version_min <= h.version_max);
    /* What was accepted encodes back to the same bytes (the reserved field,
       ignored on receipt, is sent as zero). */
    uint8_t out[TF_WIRE_CLIENT_HELLO_SIZE];
    FUZZ_CHECK(tf__wire_encode_client_hello(out, sizeof out, &h) == n);
    FUZZ_CHECK(memcmp(out, data, 12) == 0);
    FUZZ_CHECK(tf__get_u32(out + 12) == 0);
    fuzz_check_prefixes(data, (size_t)n, TF_WIRE_CLIENT_HELLO_SIZE, decode, &h);
    return 0;
}
