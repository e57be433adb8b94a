/*
 * fuzz_response.c - tf__wire_decode_response on arbitrary bytes.
 */
#include "fuzz.h"
#include "wire.h"

static long decode(const uint8_t *buf, size_t len, void *ctx)
{
    return tf__wire_decode_response(buf, len, ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tf_wire_response r;
    long n = tf__wire_decode_response(data, size, &r);
    FUZZ_CHECK(n == TF_WIRE_NEED_MORE || n == TF_EPROTO || n >= TF_WIRE_RESPONSE_SIZE);
    if (n == TF_EPROTO)
        FUZZ_CHECK(size >= TF_WIRE_RESPONSE_SIZE &&
                   tf__get_u16(data + 4) > TF_WIRE_MESSAGE_MAX);
    if (n <= 0)
        return 0;

    FUZZ_CHECK((size_t)n <= size);
    FUZZ_CHECK(r.message_len <= TF_WIRE_MESSAGE_MAX);
    FUZZ_CHECK((size_t)n == TF_WIRE_RESPONSE_SIZE + (size_t)r.message_len);
    FUZZ_CHECK(r.message == (const char *)data + TF_WIRE_RESPONSE_SIZE);
    /* Any status maps to a code of the API; unknown ones (a newer peer's)
       to the generic TF_EINTERNAL, which keeps the connection. */
    int code = tf__wire_code(r.status);
    FUZZ_CHECK(code <= 0 && code >= TF__ERR_LAST);
    FUZZ_CHECK(tf__wire_status_known(r.status) ? tf__wire_status(code) == r.status
                                               : code == TF_EINTERNAL);
    static uint8_t out[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    FUZZ_CHECK(tf__wire_encode_response(out, sizeof out, &r) == n);
    FUZZ_CHECK(memcmp(out, data, 6) == 0);
    FUZZ_CHECK(tf__get_u16(out + 6) == 0);
    FUZZ_CHECK(memcmp(out + 8, data + 8, (size_t)n - 8) == 0);
    fuzz_check_prefixes(data, (size_t)n, TF_WIRE_RESPONSE_SIZE, decode, &r);
    return 0;
}
