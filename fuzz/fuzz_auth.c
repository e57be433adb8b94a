/*
 * fuzz_auth.c - tf__wire_decode_auth (the AUTH feature's op 4) on
 * arbitrary bytes: the head, the user name and the token. Lengths over the
 * protocol's maxima are refused from the head alone, before the tail.
 */
#include "fuzz.h"
#include "wire.h"

static long decode(const uint8_t *buf, size_t len, void *vctx)
{
    return tf__wire_decode_auth(buf, len, vctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tf_wire_auth a;
    long n = tf__wire_decode_auth(data, size, &a);
    FUZZ_CHECK(n == TF_WIRE_NEED_MORE || n == TF_ETOOBIG || n == TF_EPROTO ||
               n >= TF_WIRE_AUTH_SIZE);
    if (n == TF_ETOOBIG)
        FUZZ_CHECK(size >= TF_WIRE_AUTH_SIZE && (tf__get_u16(data + 2) > TF_WIRE_USER_MAX ||
                                                 tf__get_u16(data + 4) > TF_WIRE_TOKEN_MAX));
    if (n == TF_EPROTO)
        FUZZ_CHECK(size >= TF_WIRE_AUTH_SIZE);
    if (n <= 0)
        return 0;
    size_t tail = (size_t)tf__get_u16(data + 2) + tf__get_u16(data + 4);
    FUZZ_CHECK((size_t)n == TF_WIRE_AUTH_SIZE + tail && (size_t)n <= size);
    FUZZ_CHECK(a.user_len <= TF_WIRE_USER_MAX && a.token_len <= TF_WIRE_TOKEN_MAX);
    FUZZ_CHECK(a.user == (const char *)data + TF_WIRE_AUTH_SIZE);
    FUZZ_CHECK(a.token == a.user + a.user_len);
    /* What was accepted encodes back to the same bytes. */
    static uint8_t out[TF_WIRE_AUTH_SIZE + TF_WIRE_USER_MAX + TF_WIRE_TOKEN_MAX];
    FUZZ_CHECK(tf__wire_encode_auth(out, sizeof out, &a) == n);
    FUZZ_CHECK(memcmp(out, data, (size_t)n) == 0);
    fuzz_check_prefixes(data, (size_t)n, TF_WIRE_AUTH_SIZE, decode, &a);
    return 0;
}
