/*
 * fuzz_server_hello.c - tf__wire_decode_server_hello on arbitrary bytes.
 */
#include "fuzz.h"
#include "wire.h"

static long decode(const uint8_t *buf, size_t len, void *ctx)
{
    return tf__wire_decode_server_hello(buf, len, ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tf_wire_server_hello h;
    long n = tf__wire_decode_server_hello(data, size, &h);
    FUZZ_CHECK(n == TF_WIRE_NEED_MORE || n == TF_EPROTO || n >= TF_WIRE_SERVER_HELLO_SIZE);
    size_t m = size < 4 ? size : 4;
    if (memcmp(data, TF_WIRE_MAGIC, m) != 0)
        FUZZ_CHECK(n == TF_EPROTO);
    if (n <= 0)
        return 0;

    FUZZ_CHECK((size_t)n <= size);
    FUZZ_CHECK(h.version_min >= 1 && h.version_min <= h.version_max);
    FUZZ_CHECK(h.message_len <= TF_WIRE_MESSAGE_MAX);
    FUZZ_CHECK((size_t)n == TF_WIRE_SERVER_HELLO_SIZE + (size_t)h.message_len);
    FUZZ_CHECK(h.message == (const char *)data + TF_WIRE_SERVER_HELLO_SIZE);
    if (h.status == 0)
        FUZZ_CHECK(h.max_name >= 1 && h.max_name <= TF_WIRE_NAME_MAX);
    /* The encoder accepts whatever the decoder accepted, and gives back the
       same bytes but the reserved field. */
    static uint8_t out[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    FUZZ_CHECK(tf__wire_encode_server_hello(out, sizeof out, &h) == n);
    FUZZ_CHECK(memcmp(out, data, 26) == 0);
    FUZZ_CHECK(tf__get_u16(out + 26) == 0);
    FUZZ_CHECK(memcmp(out + 28, data + 28, (size_t)n - 28) == 0);
    fuzz_check_prefixes(data, (size_t)n, TF_WIRE_SERVER_HELLO_SIZE, decode, &h);
    return 0;
}
