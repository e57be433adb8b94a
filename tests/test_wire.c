/*
 * test_wire.c - the frame and list codec (wire.h) against docs/protocol.md.
 *
 * Every decoder is fed its input from a malloc'd buffer of exactly the length
 * it is told, so that AddressSanitizer reports a read past (buf, len). The
 * expected bytes are written out by hand or built by a byte builder that does
 * not use the codec's own helpers, so the codec is never its own oracle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "listing.h"
#include "wire.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* Compares two integers and names the case on failure (loops over tables
   would otherwise only say which line failed). */
#define expect_int(ctx, got, want)                                                        \
    do {                                                                                  \
        long long got_ = (long long)(got);                                                \
        long long want_ = (long long)(want);                                              \
        if (got_ != want_) {                                                              \
            print_error("%s: %s gave %lld, expected %lld\n", (ctx), #got, got_, want_);   \
            fail();                                                                       \
        }                                                                                 \
    } while (0)

#define expect_u64(ctx, got, want)                                                        \
    do {                                                                                  \
        uint64_t got_ = (uint64_t)(got);                                                  \
        uint64_t want_ = (uint64_t)(want);                                                \
        if (got_ != want_) {                                                              \
            print_error("%s: %s gave 0x%" PRIx64 ", expected 0x%" PRIx64 "\n", (ctx),     \
                        #got, got_, want_);                                               \
            fail();                                                                       \
        }                                                                                 \
    } while (0)

/* A heap block of exactly n bytes (malloc(0) may give NULL; a 1-byte block
   is the fallback only then). */
static uint8_t *exact_alloc(size_t n)
{
    uint8_t *p = malloc(n);
    if (!p && n == 0)
        p = malloc(1);
    assert_non_null(p);
    return p;
}

static uint8_t *exact_copy(const void *src, size_t n)
{
    uint8_t *p = exact_alloc(n);
    if (n)
        memcpy(p, src, n);
    return p;
}

/* A byte builder for hand-made inputs: big-endian by explicit shifts. */
typedef struct bytes {
    uint8_t data[16384];
    size_t len;
} bytes;

static void b_raw(bytes *b, const void *p, size_t n)
{
    assert_true(b->len + n <= sizeof b->data);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void b_uint(bytes *b, uint64_t v, int width)
{
    assert_true(b->len + (size_t)width <= sizeof b->data);
    for (int i = width - 1; i >= 0; i--)
        b->data[b->len++] = (uint8_t)(v >> (8 * i));
}

static void b_entry(bytes *b, const char *name, size_t nlen, uint64_t size, int64_t mtime)
{
    b_uint(b, nlen, 2);
    b_raw(b, name, nlen);
    b_uint(b, size, 8);
    b_uint(b, (uint64_t)mtime, 8);
}

static bytes *b_new(void)
{
    bytes *b = calloc(1, sizeof *b);
    assert_non_null(b);
    return b;
}

/* One decoder behind a common signature, for the generic checks. */
typedef union frame_out {
    tf_wire_client_hello ch;
    tf_wire_server_hello sh;
    tf_wire_request rq;
    tf_wire_response rs;
    tf_wire_trailer tr;
    tf_wire_auth au;
} frame_out;

typedef long (*decode_fn)(const uint8_t *buf, size_t len, frame_out *out);

static long dec_client_hello(const uint8_t *buf, size_t len, frame_out *out)
{
    return tf__wire_decode_client_hello(buf, len, &out->ch);
}

static long dec_server_hello(const uint8_t *buf, size_t len, frame_out *out)
{
    return tf__wire_decode_server_hello(buf, len, &out->sh);
}

static long dec_request(const uint8_t *buf, size_t len, frame_out *out)
{
    return tf__wire_decode_request(buf, len, TF_WIRE_NAME_MAX, &out->rq);
}

static long dec_response(const uint8_t *buf, size_t len, frame_out *out)
{
    return tf__wire_decode_response(buf, len, &out->rs);
}

static long dec_trailer(const uint8_t *buf, size_t len, frame_out *out)
{
    return tf__wire_decode_trailer(buf, len, &out->tr);
}

/* Decodes the first len bytes of frame from a block of exactly len bytes. */
static long decode_prefix(decode_fn dec, const uint8_t *frame, size_t len)
{
    frame_out out;
    uint8_t *copy = exact_copy(frame, len);
    long rc = dec(copy, len, &out);
    free(copy);
    return rc;
}

#define LONGEST_FRAME                                                                     \
    (TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX + TF_UPLOAD_KEY_SIZE + TF_WIRE_MESSAGE_MAX)

/*
 * A valid frame of n bytes: every proper prefix is "need more", the whole
 * frame is consumed exactly, and bytes after it (the next frame) are left
 * alone.
 */
static void check_frame_prefixes(const char *ctx, decode_fn dec, const uint8_t *frame,
                                 size_t n)
{
    char where[160];
    /* Frames are at most a request head, a name and a key. Saying so is
       also what lets an optimising compiler see that n + 5 below cannot
       wrap (gcc 12 -O2 warned of a memcpy into a 0-byte block otherwise). */
    if (n > LONGEST_FRAME) {
        print_error("%s: a %zu-byte frame is longer than any frame\n", ctx, n);
        fail();
        return;
    }
    for (size_t len = 0; len < n; len++) {
        snprintf(where, sizeof where, "%s, truncated to %zu of %zu bytes", ctx, len, n);
        expect_int(where, decode_prefix(dec, frame, len), TF_WIRE_NEED_MORE);
    }
    expect_int(ctx, decode_prefix(dec, frame, n), (long)n);

    uint8_t *more = exact_alloc(n + 5);
    memcpy(more, frame, n);
    memset(more + n, 0xEE, 5);
    frame_out out;
    expect_int(ctx, dec(more, n + 5, &out), (long)n);
    free(more);
}

/* An encoder must refuse every capacity below n, without writing: each
   attempt gets a block of exactly that capacity. */
typedef long (*encode_fn)(uint8_t *buf, size_t cap, const void *frame);

static void check_encoder_capacity(const char *ctx, encode_fn enc, const void *frame,
                                   size_t n)
{
    char where[160];
    for (size_t cap = 0; cap < n; cap++) {
        uint8_t *buf = exact_alloc(cap);
        snprintf(where, sizeof where, "%s, capacity %zu of %zu", ctx, cap, n);
        expect_int(where, enc(buf, cap, frame), TF_EINVAL);
        free(buf);
    }
    uint8_t *buf = exact_alloc(n);
    expect_int(ctx, enc(buf, n, frame), (long)n);
    free(buf);
}

static long enc_client_hello(uint8_t *buf, size_t cap, const void *f)
{
    return tf__wire_encode_client_hello(buf, cap, f);
}

static long enc_server_hello(uint8_t *buf, size_t cap, const void *f)
{
    return tf__wire_encode_server_hello(buf, cap, f);
}

static long enc_request(uint8_t *buf, size_t cap, const void *f)
{
    return tf__wire_encode_request(buf, cap, f);
}

static long enc_response(uint8_t *buf, size_t cap, const void *f)
{
    return tf__wire_encode_response(buf, cap, f);
}

static long enc_trailer(uint8_t *buf, size_t cap, const void *f)
{
    return tf__wire_encode_trailer(buf, cap, f);
}

/* Encodes with an exact capacity and returns a heap copy of the frame. */
static uint8_t *encode_exact(const char *ctx, encode_fn enc, const void *frame, size_t n)
{
    uint8_t *buf = exact_alloc(n);
    expect_int(ctx, enc(buf, n, frame), (long)n);
    return buf;
}

/* Long payloads for the limit cases. */
static char msg_max[TF_WIRE_MESSAGE_MAX];
static char name_max[TF_WIRE_NAME_MAX + 1];
static uint8_t digest_max[TF_WIRE_DIGEST_MAX];

static int group_setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof msg_max; i++)
        msg_max[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof name_max; i++)
        name_max[i] = (char)('A' + i % 26);
    for (size_t i = 0; i < sizeof digest_max; i++)
        digest_max[i] = (uint8_t)(0xFF - i);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Byte-order helpers                                                       */
/* ------------------------------------------------------------------------ */

static void test_wire_byte_order_helpers(void **state)
{
    (void)state;
    uint8_t b[8];

    tf__put_u16(b, 0x0102);
    assert_memory_equal(b, ((uint8_t[]){0x01, 0x02}), 2);
    tf__put_u16(b, 0xFF80);
    assert_memory_equal(b, ((uint8_t[]){0xFF, 0x80}), 2);
    tf__put_u32(b, 0x0A0B0C0Du);
    assert_memory_equal(b, ((uint8_t[]){0x0A, 0x0B, 0x0C, 0x0D}), 4);
    tf__put_u64(b, 0x0102030405060708u);
    assert_memory_equal(b, ((uint8_t[]){1, 2, 3, 4, 5, 6, 7, 8}), 8);
    tf__put_u64(b, 0x8000000000000001u);
    assert_memory_equal(b, ((uint8_t[]){0x80, 0, 0, 0, 0, 0, 0, 0x01}), 8);

    assert_int_equal(tf__get_u16((const uint8_t[]){0x12, 0x34}), 0x1234);
    assert_int_equal(tf__get_u16((const uint8_t[]){0xFF, 0xFE}), 0xFFFE);
    assert_int_equal(tf__get_u32((const uint8_t[]){0x80, 0x00, 0x00, 0x01}), 0x80000001u);
    assert_int_equal(tf__get_u32((const uint8_t[]){0xDE, 0xAD, 0xBE, 0xEF}), 0xDEADBEEFu);
    assert_true(tf__get_u64((const uint8_t[]){1, 2, 3, 4, 5, 6, 7, 8}) ==
                0x0102030405060708u);
    assert_true(tf__get_u64((const uint8_t[]){0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                               0xFF}) == UINT64_MAX);
    assert_true(tf__get_u64((const uint8_t[]){0, 0, 0, 1, 0, 0, 0, 0}) == 0x100000000u);
}

/* ------------------------------------------------------------------------ */
/* Client hello                                                             */
/* ------------------------------------------------------------------------ */

static void test_wire_client_hello_round_trip(void **state)
{
    (void)state;
    static const tf_wire_client_hello cases[] = {
        {1, 1, 0},
        {1, 3, 0},
        {2, 2, 0xFFFFFFFFu},
        {1, 0xFFFF, 0x80000001u},
        {0xFFFF, 0xFFFF, 1},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "client hello case %zu", i);
        const size_t n = TF_WIRE_CLIENT_HELLO_SIZE;
        uint8_t *buf = encode_exact(ctx, enc_client_hello, &cases[i], n);
        assert_memory_equal(buf, "TCPF", 4);
        assert_memory_equal(buf + 12, ((uint8_t[]){0, 0, 0, 0}), 4);

        tf_wire_client_hello h;
        memset(&h, 0xA5, sizeof h);
        expect_int(ctx, tf__wire_decode_client_hello(buf, n, &h), (long)n);
        expect_int(ctx, h.version_min, cases[i].version_min);
        expect_int(ctx, h.version_max, cases[i].version_max);
        expect_u64(ctx, h.features, cases[i].features);

        check_frame_prefixes(ctx, dec_client_hello, buf, n);
        check_encoder_capacity(ctx, enc_client_hello, &cases[i], n);
        free(buf);
    }
}

static void test_wire_client_hello_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = {0x54, 0x43, 0x50, 0x46, 0x01, 0x02, 0x03, 0x04,
                                   0xA1, 0xB2, 0xC3, 0xD4, 0x00, 0x00, 0x00, 0x00};
    tf_wire_client_hello h = {0x0102, 0x0304, 0xA1B2C3D4u};
    uint8_t buf[TF_WIRE_CLIENT_HELLO_SIZE];
    memset(buf, 0x55, sizeof buf);
    assert_int_equal(tf__wire_encode_client_hello(buf, sizeof buf, &h), sizeof want);
    assert_memory_equal(buf, want, sizeof want);

    /* The reserved word is ignored on receipt. */
    uint8_t in[sizeof want];
    memcpy(in, want, sizeof want);
    memcpy(in + 12, "\xde\xad\xbe\xef", 4);
    tf_wire_client_hello d;
    assert_int_equal(tf__wire_decode_client_hello(in, sizeof in, &d), 16);
    assert_int_equal(d.version_min, 0x0102);
    assert_int_equal(d.version_max, 0x0304);
    assert_int_equal(d.features, 0xA1B2C3D4u);
}

static void test_wire_client_hello_rejects_bad_versions(void **state)
{
    (void)state;
    static const struct {
        uint8_t vmin[2], vmax[2];
    } bad[] = {
        {{0, 0}, {0, 1}},       /* version_min 0 */
        {{0, 0}, {0, 0}},       /* both 0 */
        {{0, 2}, {0, 1}},       /* min > max */
        {{0xFF, 0xFF}, {0, 1}}, /* min > max */
        {{1, 0}, {0, 0xFF}},    /* 256 > 255: the high byte counts */
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        uint8_t in[16] = {'T', 'C', 'P', 'F'};
        memcpy(in + 4, bad[i].vmin, 2);
        memcpy(in + 6, bad[i].vmax, 2);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "bad client hello versions %zu", i);
        expect_int(ctx, decode_prefix(dec_client_hello, in, sizeof in), TF_EPROTO);
    }

    uint8_t buf[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello h = {2, 1, 0};
    assert_int_equal(tf__wire_encode_client_hello(buf, sizeof buf, &h), TF_EINVAL);
    h = (tf_wire_client_hello){0, 1, 0};
    assert_int_equal(tf__wire_encode_client_hello(buf, sizeof buf, &h), TF_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Server hello                                                             */
/* ------------------------------------------------------------------------ */

static void test_wire_server_hello_round_trip(void **state)
{
    (void)state;
    const tf_wire_server_hello cases[] = {
        {1, 1, 0, 0, 255, 0, NULL, 0},
        {1, 2, 5, 0, 1, 1, "", 0},
        {1, 1, 0, 0, TF_WIRE_NAME_MAX, UINT64_MAX, "hello", 5},
        {1, 1, 0, 13, 0, 0, "server busy", 11},
        {3, 7, 0xFFFFFFFFu, 0, 4096, 0x100000000u, msg_max, TF_WIRE_MESSAGE_MAX},
        {0xFFFF, 0xFFFF, 0, 0xFFFF, 0xFFFF, 42, "\xc3\xa9", 2},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const tf_wire_server_hello *c = &cases[i];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "server hello case %zu", i);
        const size_t n = TF_WIRE_SERVER_HELLO_SIZE + c->message_len;
        uint8_t *buf = encode_exact(ctx, enc_server_hello, c, n);
        assert_memory_equal(buf, "TCPF", 4);
        assert_memory_equal(buf + 26, ((uint8_t[]){0, 0}), 2);

        tf_wire_server_hello h;
        memset(&h, 0xA5, sizeof h);
        expect_int(ctx, tf__wire_decode_server_hello(buf, n, &h), (long)n);
        expect_int(ctx, h.version_min, c->version_min);
        expect_int(ctx, h.version_max, c->version_max);
        expect_u64(ctx, h.features, c->features);
        expect_int(ctx, h.status, c->status);
        expect_int(ctx, h.max_name, c->max_name);
        expect_u64(ctx, h.max_upload, c->max_upload);
        expect_int(ctx, h.message_len, c->message_len);
        assert_ptr_equal(h.message, buf + TF_WIRE_SERVER_HELLO_SIZE);
        if (c->message_len)
            assert_memory_equal(h.message, c->message, c->message_len);

        check_frame_prefixes(ctx, dec_server_hello, buf, n);
        check_encoder_capacity(ctx, enc_server_hello, c, n);
        free(buf);
    }
}

static void test_wire_server_hello_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x54, 0x43, 0x50, 0x46,                         /* "TCPF" */
        0x00, 0x01, 0x02, 0x03,                         /* versions 1..0x0203 */
        0x0A, 0x0B, 0x0C, 0x0D,                         /* features */
        0x00, 0x00,                                     /* status */
        0x10, 0x00,                                     /* max_name 4096 */
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* max_upload */
        0x00, 0x03,                                     /* message_len */
        0x00, 0x00,                                     /* reserved */
        'o',  'k',  '!',
    };
    tf_wire_server_hello h = {0x0001, 0x0203, 0x0A0B0C0Du, 0, 0x1000, 0x0102030405060708u,
                              "ok!", 3};
    uint8_t buf[sizeof want];
    memset(buf, 0x55, sizeof buf);
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &h), sizeof want);
    assert_memory_equal(buf, want, sizeof want);

    /* A busy server: status, no name limit, a message; reserved ignored. */
    static const uint8_t busy[] = {
        0x54, 0x43, 0x50, 0x46, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x0D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x04, 0xAB, 0xCD, 'b',  'u',  's',  'y',
    };
    tf_wire_server_hello d;
    assert_int_equal(decode_prefix(dec_server_hello, busy, sizeof busy), sizeof busy);
    assert_int_equal(tf__wire_decode_server_hello(busy, sizeof busy, &d), sizeof busy);
    assert_int_equal(d.status, 13);
    assert_int_equal(tf__wire_code(d.status), TF_EBUSY);
    assert_int_equal(d.max_name, 0);
    assert_int_equal(d.message_len, 4);
    assert_memory_equal(d.message, "busy", 4);
}

static void test_wire_server_hello_rejects_bad_fields(void **state)
{
    (void)state;
    /* A valid head, then one field spoiled per case; only 28 bytes are
       given, so an error here is not a "need more" in disguise. */
    static const struct {
        size_t off;
        uint8_t v[2];
        long want;
    } cases[] = {
        {4, {0, 0}, TF_EPROTO},        /* version_min 0 */
        {4, {0, 2}, TF_EPROTO},        /* version_min 2 > version_max 1 */
        {14, {0, 0}, TF_EPROTO},       /* status 0 with max_name 0 */
        {14, {0x10, 0x01}, TF_EPROTO}, /* max_name 4097 */
        {14, {0xFF, 0xFF}, TF_EPROTO}, /* max_name 65535 */
        {14, {0x10, 0x00}, 28},        /* max_name 4096 is the ceiling */
        {14, {0x00, 0x01}, 28},        /* max_name 1 is the floor */
        {24, {0x04, 0x01}, TF_EPROTO}, /* message_len 1025 */
        {24, {0xFF, 0xFF}, TF_EPROTO}, /* message_len 65535 */
        {24, {0x04, 0x00}, TF_WIRE_NEED_MORE}, /* 1024 is allowed: wait */
        {26, {0xFF, 0xFF}, 28},        /* reserved: ignored */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t in[28] = {'T', 'C', 'P', 'F', 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xFF};
        memcpy(in + cases[i].off, cases[i].v, 2);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "server hello field case %zu", i);
        expect_int(ctx, decode_prefix(dec_server_hello, in, sizeof in), cases[i].want);
    }

    /* A status other than 0 needs no name limit. */
    uint8_t busy[28] = {'T', 'C', 'P', 'F', 0, 1, 0, 1, 0, 0, 0, 0, 0, 13};
    assert_int_equal(decode_prefix(dec_server_hello, busy, sizeof busy), 28);

    /* The encoder refuses what the decoder would refuse. */
    uint8_t buf[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX + 1];
    tf_wire_server_hello h = {1, 1, 0, 0, 255, 0, msg_max, TF_WIRE_MESSAGE_MAX + 1};
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &h), TF_EINVAL);
    h = (tf_wire_server_hello){2, 1, 0, 0, 255, 0, NULL, 0};
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &h), TF_EINVAL);
    h = (tf_wire_server_hello){0, 1, 0, 0, 255, 0, NULL, 0};
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &h), TF_EINVAL);
    h = (tf_wire_server_hello){1, 1, 0, 0, 0, 0, NULL, 0};
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &h), TF_EINVAL);
    h = (tf_wire_server_hello){1, 1, 0, 0, TF_WIRE_NAME_MAX + 1, 0, NULL, 0};
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &h), TF_EINVAL);
    h = (tf_wire_server_hello){1, 1, 0, 13, 0, 0, "busy", 4};
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &h), 32);
}

/* ------------------------------------------------------------------------ */
/* Magic                                                                    */
/* ------------------------------------------------------------------------ */

static void test_wire_hello_bad_magic_rejected_at_first_byte(void **state)
{
    (void)state;
    uint8_t ch[TF_WIRE_CLIENT_HELLO_SIZE];
    uint8_t sh[TF_WIRE_SERVER_HELLO_SIZE];
    tf_wire_client_hello c = {1, 1, 0};
    tf_wire_server_hello s = {1, 1, 0, 0, 255, 0, NULL, 0};
    assert_int_equal(tf__wire_encode_client_hello(ch, sizeof ch, &c), sizeof ch);
    assert_int_equal(tf__wire_encode_server_hello(sh, sizeof sh, &s), sizeof sh);

    const struct {
        const char *what;
        decode_fn dec;
        const uint8_t *frame;
        size_t n;
    } kinds[] = {
        {"client hello", dec_client_hello, ch, sizeof ch},
        {"server hello", dec_server_hello, sh, sizeof sh},
    };
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        for (size_t pos = 0; pos < 4; pos++) {
            uint8_t bad[TF_WIRE_SERVER_HELLO_SIZE];
            memcpy(bad, kinds[k].frame, kinds[k].n);
            bad[pos] ^= 0x20; /* "TCPF" -> "tCPF", "TcPF", ... */
            for (size_t len = 0; len <= kinds[k].n; len++) {
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s, byte %zu wrong, %zu bytes", kinds[k].what,
                         pos, len);
                long want = len <= pos ? TF_WIRE_NEED_MORE : TF_EPROTO;
                expect_int(ctx, decode_prefix(kinds[k].dec, bad, len), want);
            }
        }
    }

    /* A stray HTTP client is refused at its first byte. */
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for (size_t len = 1; len < sizeof http; len++) {
        assert_int_equal(decode_prefix(dec_client_hello, (const uint8_t *)http, len),
                         TF_EPROTO);
        assert_int_equal(decode_prefix(dec_server_hello, (const uint8_t *)http, len),
                         TF_EPROTO);
    }
    /* "TCP" is a valid start; "TCPX" is not. */
    assert_int_equal(decode_prefix(dec_client_hello, (const uint8_t *)"TCP", 3),
                     TF_WIRE_NEED_MORE);
    assert_int_equal(decode_prefix(dec_client_hello, (const uint8_t *)"TCPX", 4),
                     TF_EPROTO);
}

/* ------------------------------------------------------------------------ */
/* Request                                                                  */
/* ------------------------------------------------------------------------ */

static void test_wire_request_round_trip(void **state)
{
    (void)state;
    const tf_wire_request cases[] = {
        {TF_OP_GET, 0, 0, 0, "hi.txt", 6, NULL, NULL, 0, 0, NULL},
        {TF_OP_PUT, 0, UINT64_MAX, 0, "x", 1, NULL, NULL, 0, 0, NULL},
        {TF_OP_PUT, 0, 0x100000000u, 0, "caf\xc3\xa9", 5, NULL, NULL, 0, 0, NULL},
        {TF_OP_LIST, 0, 0, 0, NULL, 0, NULL, NULL, 0, 0, NULL},
        {0xFF, 0xFE, 0x0102030405060708u, 0x8877665544332211u, name_max,
         TF_WIRE_NAME_MAX, NULL, (const uint8_t *)"IF-MATCH-DIGEST!", INT64_MIN, 0xFFFFFFFFu,
         (const uint8_t *)"SKIP-SAME-DIGEST"},
        {TF_OP_PUT, TF_REQ_UPLOAD_KEY, 42, 0, "k.bin", 5,
         (const uint8_t *)"0123456789abcdef", NULL, 0, 0, NULL},
        /* every extension after a key, and a negative mtime */
        {TF_OP_PUT, 0xFD, 7, 0, "e", 1, (const uint8_t *)"0123456789abcdef",
         (const uint8_t *)"fedcba9876543210", -1, 999999999u,
         (const uint8_t *)"ffffffffffffffff"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const tf_wire_request *c = &cases[i];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "request case %zu", i);
        const size_t n = TF_WIRE_REQUEST_SIZE + tf__wire_request_tail(c);
        uint8_t *buf = encode_exact(ctx, enc_request, c, n);
        assert_memory_equal(buf + 4, ((uint8_t[]){0, 0, 0, 0}), 4);

        tf_wire_request r;
        memset(&r, 0xA5, sizeof r);
        expect_int(ctx, tf__wire_decode_request(buf, n, TF_WIRE_NAME_MAX, &r), (long)n);
        expect_int(ctx, r.op, c->op);
        expect_int(ctx, r.flags, c->flags);
        expect_u64(ctx, r.size, c->size);
        expect_u64(ctx, r.offset, c->offset);
        expect_int(ctx, r.name_len, c->name_len);
        assert_ptr_equal(r.name, buf + TF_WIRE_REQUEST_SIZE);
        if (c->name_len)
            assert_memory_equal(r.name, c->name, c->name_len);
        if (c->flags & TF_REQ_UPLOAD_KEY) {
            assert_ptr_equal(r.key, buf + TF_WIRE_REQUEST_SIZE + c->name_len);
            assert_memory_equal(r.key, c->key, TF_UPLOAD_KEY_SIZE);
        } else {
            assert_null(r.key);
        }
        /* The extension block: each field where its flag says, in order;
           only a put has one (the tree ops give the bits other meanings). */
        uint8_t ext_flags = c->op == TF_OP_PUT ? c->flags : 0;
        const uint8_t *ext = buf + TF_WIRE_REQUEST_SIZE + c->name_len +
                             ((c->flags & TF_REQ_UPLOAD_KEY) ? TF_UPLOAD_KEY_SIZE : 0);
        if (ext_flags & TF_REQ_IF_MATCH) {
            assert_ptr_equal(r.if_match, ext);
            assert_memory_equal(r.if_match, c->if_match, TF_WIRE_EXT_DIGEST);
            ext += TF_WIRE_EXT_DIGEST;
        } else {
            assert_null(r.if_match);
        }
        if (ext_flags & TF_REQ_MTIME) {
            expect_u64(ctx, (uint64_t)r.mtime_sec, (uint64_t)c->mtime_sec);
            expect_u64(ctx, r.mtime_nsec, c->mtime_nsec);
            ext += TF_WIRE_MTIME_SIZE;
        } else {
            expect_u64(ctx, (uint64_t)r.mtime_sec, 0);
            expect_u64(ctx, r.mtime_nsec, 0);
        }
        if (ext_flags & TF_REQ_SKIP_SAME) {
            assert_ptr_equal(r.same, ext);
            assert_memory_equal(r.same, c->same, TF_WIRE_EXT_DIGEST);
            ext += TF_WIRE_EXT_DIGEST;
        } else {
            assert_null(r.same);
        }
        assert_ptr_equal(ext, buf + n);

        /* The receiver's own limit: equal is fine, one less is too big. */
        expect_int(ctx, tf__wire_decode_request(buf, n, c->name_len, &r), (long)n);
        if (c->name_len) {
            expect_int(ctx, tf__wire_decode_request(buf, n, c->name_len - 1u, &r),
                       TF_ETOOBIG);
        }

        check_frame_prefixes(ctx, dec_request, buf, n);
        check_encoder_capacity(ctx, enc_request, c, n);
        free(buf);
    }
}

static void test_wire_request_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x02, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, /* op, flags, len, reserved */
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* size */
        0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00, /* offset */
        'a',  'b',  'c',
    };
    tf_wire_request r = {TF_OP_PUT, 0, 0x1122334455667788u, 0x99AABBCCDDEEFF00u, "abc", 3, NULL, NULL, 0, 0, NULL};
    uint8_t buf[sizeof want];
    memset(buf, 0x55, sizeof buf);
    assert_int_equal(tf__wire_encode_request(buf, sizeof buf, &r), sizeof want);
    assert_memory_equal(buf, want, sizeof want);

    uint8_t in[sizeof want];
    memcpy(in, want, sizeof want);
    memcpy(in + 4, "\x01\x02\x03\x04", 4); /* reserved: ignored */
    tf_wire_request d;
    assert_int_equal(tf__wire_decode_request(in, sizeof in, 255, &d), sizeof in);
    assert_int_equal(d.op, 2);
    assert_int_equal(d.name_len, 3);
    assert_true(d.size == 0x1122334455667788u);
    assert_true(d.offset == 0x99AABBCCDDEEFF00u);
    assert_memory_equal(d.name, "abc", 3);
}

static void test_wire_request_name_limit(void **state)
{
    (void)state;
    /* Only the 24-byte head is given: an over-long name is refused before
       its bytes are waited for; an acceptable one is waited for. */
    static const struct {
        uint16_t name_len;
        size_t max_name;
        long want;
    } cases[] = {
        {256, 255, TF_ETOOBIG},
        {255, 255, TF_WIRE_NEED_MORE},
        {0xFFFF, 255, TF_ETOOBIG},
        {0xFFFF, TF_WIRE_NAME_MAX, TF_ETOOBIG},
        {4097, 10000, TF_ETOOBIG}, /* the receiver's limit is capped at 4096 */
        {4096, 10000, TF_WIRE_NEED_MORE},
        {1, 0, TF_ETOOBIG},
        {0, 0, TF_WIRE_REQUEST_SIZE},
        {0, 255, TF_WIRE_REQUEST_SIZE},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t head[TF_WIRE_REQUEST_SIZE] = {TF_OP_GET};
        head[2] = (uint8_t)(cases[i].name_len >> 8);
        head[3] = (uint8_t)cases[i].name_len;
        uint8_t *buf = exact_copy(head, sizeof head);
        tf_wire_request r;
        char ctx[64];
        snprintf(ctx, sizeof ctx, "request name limit case %zu", i);
        expect_int(ctx, tf__wire_decode_request(buf, sizeof head, cases[i].max_name, &r),
                   cases[i].want);
        free(buf);
    }

    /* The encoder refuses a name over the protocol ceiling. */
    uint8_t *buf = exact_alloc(TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX + 1);
    tf_wire_request r = {TF_OP_GET, 0, 0, 0, name_max, TF_WIRE_NAME_MAX + 1, NULL, NULL, 0, 0, NULL};
    assert_int_equal(
        tf__wire_encode_request(buf, TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX + 1, &r),
        TF_EINVAL);
    free(buf);
}


/* ------------------------------------------------------------------------ */
/* Auth request (op 4, feature AUTH)                                        */
/* ------------------------------------------------------------------------ */

static long dec_auth(const uint8_t *buf, size_t len, frame_out *out)
{
    return tf__wire_decode_auth(buf, len, &out->au);
}

static long enc_auth(uint8_t *buf, size_t cap, const void *f)
{
    return tf__wire_encode_auth(buf, cap, f);
}

static void test_wire_auth_round_trip(void **state)
{
    (void)state;
    static char user_max[TF_WIRE_USER_MAX], token_max[TF_WIRE_TOKEN_MAX];
    memset(user_max, 'u', sizeof user_max);
    memset(token_max, 't', sizeof token_max);
    const tf_wire_auth cases[] = {
        {"alice", 5, "0123456789abcdef0123456789abcdef", 32},
        {"bob", 3, NULL, 0},  /* no token: refused by the server, well framed */
        {NULL, 0, "x", 1},    /* no user, likewise */
        {NULL, 0, NULL, 0},
        {user_max, TF_WIRE_USER_MAX, token_max, TF_WIRE_TOKEN_MAX},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const tf_wire_auth *c = &cases[i];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "auth case %zu", i);
        const size_t n = TF_WIRE_AUTH_SIZE + c->user_len + c->token_len;
        uint8_t *buf = encode_exact(ctx, enc_auth, c, n);
        tf_wire_auth a;
        memset(&a, 0xA5, sizeof a);
        expect_int(ctx, tf__wire_decode_auth(buf, n, &a), (long)n);
        expect_int(ctx, a.user_len, c->user_len);
        expect_int(ctx, a.token_len, c->token_len);
        assert_ptr_equal(a.user, buf + TF_WIRE_AUTH_SIZE);
        assert_ptr_equal(a.token, buf + TF_WIRE_AUTH_SIZE + c->user_len);
        if (c->user_len)
            assert_memory_equal(a.user, c->user, c->user_len);
        if (c->token_len)
            assert_memory_equal(a.token, c->token, c->token_len);
        check_frame_prefixes(ctx, dec_auth, buf, n);
        check_encoder_capacity(ctx, enc_auth, c, n);
        free(buf);
    }
}

static void test_wire_auth_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x04, 0x00, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, /* op, flags, user_len, token_len */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* reserved */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* reserved */
        'a',  'l',  't',  'o',  'k',
    };
    tf_wire_auth a = {"al", 2, "tok", 3};
    uint8_t buf[sizeof want];
    memset(buf, 0x55, sizeof buf);
    assert_int_equal(tf__wire_encode_auth(buf, sizeof buf, &a), sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    /* The head has the request's size and its op byte in the same place, so
       a server reads the op and then the right frame. */
    assert_int_equal(TF_WIRE_AUTH_SIZE, TF_WIRE_REQUEST_SIZE);
}

static void test_wire_auth_rejects_bad_heads(void **state)
{
    (void)state;
    /* Only the head is given: the lengths are checked before the user name
       and token are waited for. */
    static const struct {
        size_t at;
        uint8_t value;
        long want;
    } cases[] = {
        {0, TF_OP_GET, TF_EPROTO},   /* not an auth request */
        {1, 0x01, TF_EPROTO},        /* flags */
        {6, 0x01, TF_EPROTO},        /* reserved bytes must be zero */
        {23, 0x80, TF_EPROTO},
        {3, TF_WIRE_USER_MAX + 1, TF_ETOOBIG},
        {2, 0xFF, TF_ETOOBIG},       /* user_len 0xFF00 */
        {4, 0x01, TF_ETOOBIG},       /* token_len 0x0101 (257; byte 5 set below) */
        {5, 0x01, TF_WIRE_NEED_MORE},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t head[TF_WIRE_AUTH_SIZE] = {TF_OP_AUTH};
        head[cases[i].at] = cases[i].value;
        long want = cases[i].want;
        if (cases[i].at == 4)
            head[5] = 0x01;
        uint8_t *buf = exact_copy(head, sizeof head);
        tf_wire_auth a;
        char ctx[64];
        snprintf(ctx, sizeof ctx, "auth head case %zu", i);
        expect_int(ctx, tf__wire_decode_auth(buf, sizeof head, &a), want);
        free(buf);
    }
    /* The encoder refuses what the decoder would. */
    static char big[TF_WIRE_TOKEN_MAX + 1];
    uint8_t out[TF_WIRE_AUTH_SIZE + sizeof big + TF_WIRE_USER_MAX + 1];
    tf_wire_auth a = {big, TF_WIRE_USER_MAX + 1, NULL, 0};
    assert_int_equal(tf__wire_encode_auth(out, sizeof out, &a), TF_EINVAL);
    a = (tf_wire_auth){NULL, 0, big, TF_WIRE_TOKEN_MAX + 1};
    assert_int_equal(tf__wire_encode_auth(out, sizeof out, &a), TF_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Response                                                                 */
/* ------------------------------------------------------------------------ */

static void test_wire_response_round_trip(void **state)
{
    (void)state;
    const tf_wire_response cases[] = {
        {TF_OP_GET, 0, 0, 3, NULL, 0},
        {TF_OP_PUT, 0, 0, UINT64_MAX, "", 0},
        {TF_OP_GET, 0, 2, 0, "no file named \"x\"", 17},
        {TF_OP_LIST, 0, 0, 0x100000000u, NULL, 0},
        {9, 0xAB, 0xFFFF, 0x0102030405060708u, msg_max, TF_WIRE_MESSAGE_MAX},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const tf_wire_response *c = &cases[i];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "response case %zu", i);
        const size_t n = TF_WIRE_RESPONSE_SIZE + c->message_len;
        uint8_t *buf = encode_exact(ctx, enc_response, c, n);
        assert_memory_equal(buf + 6, ((uint8_t[]){0, 0}), 2);

        tf_wire_response r;
        memset(&r, 0xA5, sizeof r);
        expect_int(ctx, tf__wire_decode_response(buf, n, &r), (long)n);
        expect_int(ctx, r.op, c->op);
        expect_int(ctx, r.flags, c->flags);
        expect_int(ctx, r.status, c->status);
        expect_u64(ctx, r.size, c->size);
        expect_int(ctx, r.message_len, c->message_len);
        assert_ptr_equal(r.message, buf + TF_WIRE_RESPONSE_SIZE);
        if (c->message_len)
            assert_memory_equal(r.message, c->message, c->message_len);

        check_frame_prefixes(ctx, dec_response, buf, n);
        check_encoder_capacity(ctx, enc_response, c, n);
        free(buf);
    }
}

static void test_wire_response_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x03, 0x01, 0x01, 0x02, 0x00, 0x02, 0x00, 0x00, /* op, flags, status, mlen */
        0xF0, 0xE0, 0xD0, 0xC0, 0xB0, 0xA0, 0x90, 0x80, /* size */
        'n',  'o',
    };
    tf_wire_response r = {TF_OP_LIST, 0x01, 0x0102, 0xF0E0D0C0B0A09080u, "no", 2};
    uint8_t buf[sizeof want];
    memset(buf, 0x55, sizeof buf);
    assert_int_equal(tf__wire_encode_response(buf, sizeof buf, &r), sizeof want);
    assert_memory_equal(buf, want, sizeof want);

    uint8_t in[sizeof want];
    memcpy(in, want, sizeof want);
    in[6] = 0x7F; /* reserved: ignored */
    tf_wire_response d;
    assert_int_equal(tf__wire_decode_response(in, sizeof in, &d), sizeof in);
    assert_int_equal(d.op, 3);
    assert_int_equal(d.flags, 1);
    assert_int_equal(d.status, 0x0102);
    assert_true(d.size == 0xF0E0D0C0B0A09080u);
    assert_int_equal(d.message_len, 2);
    assert_memory_equal(d.message, "no", 2);
}

static void test_wire_response_message_limit(void **state)
{
    (void)state;
    static const struct {
        uint16_t message_len;
        long want;
    } cases[] = {
        {TF_WIRE_MESSAGE_MAX + 1, TF_EPROTO},
        {0xFFFF, TF_EPROTO},
        {0x8000, TF_EPROTO},
        {TF_WIRE_MESSAGE_MAX, TF_WIRE_NEED_MORE},
        {1, TF_WIRE_NEED_MORE},
        {0, TF_WIRE_RESPONSE_SIZE},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t head[TF_WIRE_RESPONSE_SIZE] = {TF_OP_GET, 0, 0, 9};
        head[4] = (uint8_t)(cases[i].message_len >> 8);
        head[5] = (uint8_t)cases[i].message_len;
        char ctx[64];
        snprintf(ctx, sizeof ctx, "response message limit case %zu", i);
        expect_int(ctx, decode_prefix(dec_response, head, sizeof head), cases[i].want);
    }

    uint8_t *buf = exact_alloc(TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX + 1);
    tf_wire_response r = {TF_OP_GET, 0, 9, 0, msg_max, TF_WIRE_MESSAGE_MAX + 1};
    assert_int_equal(
        tf__wire_encode_response(buf, TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX + 1, &r),
        TF_EINVAL);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Trailer                                                                  */
/* ------------------------------------------------------------------------ */

/* A streamed put's chunk head: round trip at the edges, big-endian bytes,
   truncation (need more, never a read past len), over the maximum refused
   both ways. */
static void test_wire_chunk_head(void **state)
{
    (void)state;
    static const uint32_t lens[] = {0, 1, 4096, TF_WIRE_CHUNK_MAX - 1, TF_WIRE_CHUNK_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t buf[TF_WIRE_CHUNK_HEAD_SIZE + 1];
        memset(buf, 0xEE, sizeof buf);
        assert_int_equal(tf__wire_encode_chunk_head(buf, sizeof buf, lens[i]),
                         TF_WIRE_CHUNK_HEAD_SIZE);
        assert_int_equal(buf[TF_WIRE_CHUNK_HEAD_SIZE], 0xEE);
        uint32_t got = 0xDEAD;
        for (size_t cut = 0; cut < TF_WIRE_CHUNK_HEAD_SIZE; cut++) {
            uint8_t *part = malloc(cut ? cut : 1); /* ASan sees a read past cut */
            assert_non_null(part);
            memcpy(part, buf, cut);
            assert_int_equal(tf__wire_decode_chunk_head(part, cut, &got), TF_WIRE_NEED_MORE);
            assert_int_equal(got, 0xDEAD);
            free(part);
        }
        assert_int_equal(tf__wire_decode_chunk_head(buf, sizeof buf, &got),
                         TF_WIRE_CHUNK_HEAD_SIZE);
        assert_int_equal(got, lens[i]);
    }
    uint8_t b[4];
    assert_int_equal(tf__wire_encode_chunk_head(b, sizeof b, 0x01020304u & 0xFFFFF), 4);
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[1], 0x02);
    assert_int_equal(b[2], 0x03);
    assert_int_equal(b[3], 0x04);
    /* Over the maximum: not encoded, and malformed when received. */
    assert_int_equal(tf__wire_encode_chunk_head(b, sizeof b, TF_WIRE_CHUNK_MAX + 1), TF_EINVAL);
    assert_int_equal(tf__wire_encode_chunk_head(b, 3, 1), TF_EINVAL);
    static const uint8_t over[][4] = {{0x00, 0x10, 0x00, 0x01}, {0xFF, 0xFF, 0xFF, 0xFF},
                                      {0x80, 0x00, 0x00, 0x00}};
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        uint32_t got = 7;
        assert_int_equal(tf__wire_decode_chunk_head(over[i], 4, &got), TF_EPROTO);
        assert_int_equal(got, 7);
    }
}

static void test_wire_trailer_round_trip(void **state)
{
    (void)state;
    const tf_wire_trailer cases[] = {
        {0, 0, NULL},
        {7, 0, NULL},
        {0xFFFF, 1, (const uint8_t *)"\x00"},
        {0, TF_WIRE_DIGEST_MAX, digest_max},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const tf_wire_trailer *c = &cases[i];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "trailer case %zu", i);
        const size_t n = TF_WIRE_TRAILER_SIZE + c->digest_len;
        uint8_t *buf = encode_exact(ctx, enc_trailer, c, n);

        tf_wire_trailer t;
        memset(&t, 0xA5, sizeof t);
        expect_int(ctx, tf__wire_decode_trailer(buf, n, &t), (long)n);
        expect_int(ctx, t.status, c->status);
        expect_int(ctx, t.digest_len, c->digest_len);
        assert_ptr_equal(t.digest, buf + TF_WIRE_TRAILER_SIZE);
        if (c->digest_len)
            assert_memory_equal(t.digest, c->digest, c->digest_len);

        check_frame_prefixes(ctx, dec_trailer, buf, n);
        check_encoder_capacity(ctx, enc_trailer, c, n);
        free(buf);
    }
}

static void test_wire_trailer_bytes_and_limit(void **state)
{
    (void)state;
    static const uint8_t want[] = {0x0C, 0x0D, 0x00, 0x03, 0xDE, 0xAD, 0xBE};
    tf_wire_trailer t = {0x0C0D, 3, (const uint8_t *)"\xde\xad\xbe"};
    uint8_t buf[sizeof want];
    assert_int_equal(tf__wire_encode_trailer(buf, sizeof buf, &t), sizeof want);
    assert_memory_equal(buf, want, sizeof want);

    static const struct {
        uint16_t digest_len;
        long want;
    } cases[] = {
        {TF_WIRE_DIGEST_MAX + 1, TF_EPROTO},
        {0xFFFF, TF_EPROTO},
        {TF_WIRE_DIGEST_MAX, TF_WIRE_NEED_MORE},
        {0, TF_WIRE_TRAILER_SIZE},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t head[TF_WIRE_TRAILER_SIZE] = {0, 0};
        head[2] = (uint8_t)(cases[i].digest_len >> 8);
        head[3] = (uint8_t)cases[i].digest_len;
        char ctx[64];
        snprintf(ctx, sizeof ctx, "trailer digest limit case %zu", i);
        expect_int(ctx, decode_prefix(dec_trailer, head, sizeof head), cases[i].want);
    }

    uint8_t big[TF_WIRE_TRAILER_SIZE + TF_WIRE_DIGEST_MAX + 1];
    uint8_t digest[TF_WIRE_DIGEST_MAX + 1] = {0};
    t = (tf_wire_trailer){0, TF_WIRE_DIGEST_MAX + 1, digest};
    assert_int_equal(tf__wire_encode_trailer(big, sizeof big, &t), TF_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Need more: the head is decoded once it is whole                          */
/* ------------------------------------------------------------------------ */

/* wire.h: on TF_WIRE_NEED_MORE with the whole fixed head in buf, every
   field but the pointers into the tail is set (callers read the tail's
   length from it); with less than the head, the out struct is untouched. */
static void test_wire_need_more_sets_the_head(void **state)
{
    (void)state;
    static const uint8_t key[TF_UPLOAD_KEY_SIZE] = {1, 2, 3};
    static const uint8_t digest[16] = {9, 8, 7};
    uint8_t frame[256];
    const char *msg = "not here";

    tf_wire_server_hello sh = {1, 2, TF_FEATURES_KNOWN, 4, 0, 77, msg, 8};
    long n = tf__wire_encode_server_hello(frame, sizeof frame, &sh);
    assert_true(n == TF_WIRE_SERVER_HELLO_SIZE + 8);
    for (size_t len = 0; len < (size_t)n; len++) {
        tf_wire_server_hello got, untouched;
        memset(&got, 0xA5, sizeof got);
        memset(&untouched, 0xA5, sizeof untouched);
        uint8_t *copy = exact_copy(frame, len);
        assert_int_equal(tf__wire_decode_server_hello(copy, len, &got), TF_WIRE_NEED_MORE);
        free(copy);
        if (len < TF_WIRE_SERVER_HELLO_SIZE) {
            assert_memory_equal(&got, &untouched, sizeof got);
            continue;
        }
        assert_int_equal(got.version_min, 1);
        assert_int_equal(got.version_max, 2);
        assert_int_equal(got.features, TF_FEATURES_KNOWN);
        assert_int_equal(got.status, 4);
        assert_int_equal(got.max_name, 0);
        assert_true(got.max_upload == 77);
        assert_int_equal(got.message_len, 8);
    }

    tf_wire_request rq = {TF_OP_PUT, TF_REQ_UPLOAD_KEY, 12345, 678, "a-name", 6, key, NULL, 0, 0, NULL};
    n = tf__wire_encode_request(frame, sizeof frame, &rq);
    assert_true(n == TF_WIRE_REQUEST_SIZE + 6 + TF_UPLOAD_KEY_SIZE);
    for (size_t len = 0; len < (size_t)n; len++) {
        tf_wire_request got, untouched;
        memset(&got, 0xA5, sizeof got);
        memset(&untouched, 0xA5, sizeof untouched);
        uint8_t *copy = exact_copy(frame, len);
        assert_int_equal(tf__wire_decode_request(copy, len, 255, &got), TF_WIRE_NEED_MORE);
        free(copy);
        if (len < TF_WIRE_REQUEST_SIZE) {
            assert_memory_equal(&got, &untouched, sizeof got);
            continue;
        }
        assert_int_equal(got.op, TF_OP_PUT);
        assert_int_equal(got.flags, TF_REQ_UPLOAD_KEY);
        assert_true(got.size == 12345 && got.offset == 678);
        assert_int_equal(got.name_len, 6);
        assert_int_equal(tf__wire_request_tail(&got), 6 + TF_UPLOAD_KEY_SIZE);
    }

    tf_wire_response rs = {TF_OP_GET, TF_RESP_FROM_START, 2, 99, msg, 8};
    n = tf__wire_encode_response(frame, sizeof frame, &rs);
    assert_true(n == TF_WIRE_RESPONSE_SIZE + 8);
    for (size_t len = 0; len < (size_t)n; len++) {
        tf_wire_response got, untouched;
        memset(&got, 0xA5, sizeof got);
        memset(&untouched, 0xA5, sizeof untouched);
        uint8_t *copy = exact_copy(frame, len);
        assert_int_equal(tf__wire_decode_response(copy, len, &got), TF_WIRE_NEED_MORE);
        free(copy);
        if (len < TF_WIRE_RESPONSE_SIZE) {
            assert_memory_equal(&got, &untouched, sizeof got);
            continue;
        }
        assert_int_equal(got.op, TF_OP_GET);
        assert_int_equal(got.flags, TF_RESP_FROM_START);
        assert_int_equal(got.status, 2);
        assert_true(got.size == 99);
        assert_int_equal(got.message_len, 8);
    }

    tf_wire_trailer tr = {7, sizeof digest, digest};
    n = tf__wire_encode_trailer(frame, sizeof frame, &tr);
    assert_true(n == TF_WIRE_TRAILER_SIZE + (long)sizeof digest);
    for (size_t len = 0; len < (size_t)n; len++) {
        tf_wire_trailer got, untouched;
        memset(&got, 0xA5, sizeof got);
        memset(&untouched, 0xA5, sizeof untouched);
        uint8_t *copy = exact_copy(frame, len);
        assert_int_equal(tf__wire_decode_trailer(copy, len, &got), TF_WIRE_NEED_MORE);
        free(copy);
        if (len < TF_WIRE_TRAILER_SIZE) {
            assert_memory_equal(&got, &untouched, sizeof got);
            continue;
        }
        assert_int_equal(got.status, 7);
        assert_int_equal(got.digest_len, sizeof digest);
    }

    /* The client hello has no tail: below its size, nothing is set. */
    tf_wire_client_hello ch = {1, 1, 0};
    n = tf__wire_encode_client_hello(frame, sizeof frame, &ch);
    for (size_t len = 0; len < (size_t)n; len++) {
        tf_wire_client_hello got, untouched;
        memset(&got, 0xA5, sizeof got);
        memset(&untouched, 0xA5, sizeof untouched);
        uint8_t *copy = exact_copy(frame, len);
        assert_int_equal(tf__wire_decode_client_hello(copy, len, &got), TF_WIRE_NEED_MORE);
        free(copy);
        assert_memory_equal(&got, &untouched, sizeof got);
    }
}

/* ------------------------------------------------------------------------ */
/* The example exchange of docs/protocol.md, read from the document         */
/* ------------------------------------------------------------------------ */

/* The document the example is read from (CMake passes its path). */
#ifndef TF_PROTOCOL_MD
#error "TF_PROTOCOL_MD (the path of docs/protocol.md) must be defined"
#endif

/* The example's bytes, one stream per direction. */
typedef struct doc_example {
    uint8_t c2s[256], s2c[256];
    size_t c2s_len, s2c_len;
} doc_example;

/* Reads the first fenced block after "## Example" in docs/protocol.md. A
   line that starts with "C→S" or "S→C" switches to that direction, a line
   that starts with a space continues the current one; each line's bytes are
   the two-digit hex numbers after that, one space apart, up to the first
   double space (the comment). Every line must carry at least one byte. */
static void read_doc_example(doc_example *d)
{
    /* "C→S" and "S→C" in UTF-8, as the document writes them. */
    static const char c2s[] = "C\xe2\x86\x92S", s2c[] = "S\xe2\x86\x92" "C";
    FILE *f = fopen(TF_PROTOCOL_MD, "r");
    if (f == NULL)
        fail_msg("cannot open %s", TF_PROTOCOL_MD);
    memset(d, 0, sizeof *d);
    char line[512];
    int where = 0; /* 0 before the heading, 1 before the fence, 2 in it, 3 past it */
    uint8_t *cur = NULL;
    size_t *cur_len = NULL, cap = sizeof d->c2s;
    while (where < 3 && fgets(line, sizeof line, f) != NULL) {
        if (where == 0) {
            if (strcmp(line, "## Example\n") == 0)
                where = 1;
            continue;
        }
        if (strncmp(line, "```", 3) == 0) {
            where++;
            continue;
        }
        if (where == 1)
            continue;
        const char *p = line;
        if (strncmp(p, c2s, strlen(c2s)) == 0) {
            cur = d->c2s, cur_len = &d->c2s_len, p += strlen(c2s);
        } else if (strncmp(p, s2c, strlen(s2c)) == 0) {
            cur = d->s2c, cur_len = &d->s2c_len, p += strlen(s2c);
        } else if (p[0] != ' ' || cur == NULL) {
            fclose(f);
            fail_msg("docs/protocol.md example: a line with no direction: %s", line);
        }
        while (*p == ' ')
            p++;
        size_t before = *cur_len;
        for (;;) {
            unsigned v;
            if (sscanf(p, "%2x", &v) != 1 || strspn(p, "0123456789abcdef") != 2)
                break;
            if (*cur_len == cap) {
                fclose(f);
                fail_msg("docs/protocol.md example: more than %zu bytes", cap);
            }
            cur[(*cur_len)++] = (uint8_t)v;
            p += 2;
            if (p[0] != ' ' || p[1] == ' ')
                break;
            p++;
        }
        if (*cur_len == before) {
            fclose(f);
            fail_msg("docs/protocol.md example: a line without bytes: %s", line);
        }
    }
    fclose(f);
    if (where != 3)
        fail_msg("docs/protocol.md: no fenced block under \"## Example\"");
}

/* Decodes a frame from an exact copy of (p, n) and returns the bytes it
   consumed, which must be > 0 (a whole frame). */
#define decode_doc_frame(fn, p, n, out)                                                   \
    do {                                                                                  \
        uint8_t *copy_ = exact_copy((p), (n));                                            \
        long used_ = fn(copy_, (n), (out));                                               \
        free(copy_);                                                                      \
        if (used_ <= 0)                                                                   \
            fail_msg("docs/protocol.md example: %s gave %ld at byte %zu", #fn, used_,     \
                     (size_t)((p) - start));                                              \
        (p) += used_;                                                                     \
    } while (0)

/* What the document says of the example: a client that asks for no
   features fetches "hi.txt" (3 bytes, "hi\n") from a server with default
   limits that offers CHECKSUM and RESUME; no digest in the trailer. The
   frames are decoded with the codec, every stated field checked, and the
   codec's own encoding of those fields must be the document's bytes. */
static void test_wire_protocol_example(void **state)
{
    (void)state;
    doc_example d;
    read_doc_example(&d);
    uint8_t buf[64];

    /* Client to server: the hello, then the request, and nothing else. */
    const uint8_t *start = d.c2s, *p = d.c2s, *end = d.c2s + d.c2s_len;
    tf_wire_client_hello ch;
    decode_doc_frame(tf__wire_decode_client_hello, p, (size_t)(end - p), &ch);
    assert_int_equal(ch.version_min, 1);
    assert_int_equal(ch.version_max, 1);
    assert_int_equal(ch.features, 0);
    assert_int_equal(tf__wire_encode_client_hello(buf, sizeof buf, &ch), p - start);
    assert_memory_equal(buf, start, (size_t)(p - start));

    const uint8_t *frame = p;
    tf_wire_request rq;
    uint8_t *copy = exact_copy(p, (size_t)(end - p));
    long used = tf__wire_decode_request(copy, (size_t)(end - p), 255, &rq);
    assert_true(used > 0);
    assert_int_equal(rq.op, TF_OP_GET);
    assert_int_equal(rq.flags, 0);
    assert_true(rq.size == 0 && rq.offset == 0);
    assert_int_equal(rq.name_len, 6);
    assert_memory_equal(rq.name, "hi.txt", 6);
    assert_int_equal(tf__wire_encode_request(buf, sizeof buf, &rq), used);
    assert_memory_equal(buf, frame, (size_t)used);
    free(copy);
    p += used;
    assert_true(p == end);

    /* Server to client: the hello, the response, the payload, the trailer. */
    start = p = d.s2c, end = d.s2c + d.s2c_len;
    tf_wire_server_hello sh;
    decode_doc_frame(tf__wire_decode_server_hello, p, (size_t)(end - p), &sh);
    assert_int_equal(sh.version_min, 1);
    assert_int_equal(sh.version_max, 1);
    assert_int_equal(sh.features, TF_FEATURE_CHECKSUM | TF_FEATURE_RESUME);
    assert_int_equal(sh.status, 0);
    assert_int_equal(sh.max_name, 255);
    assert_true(sh.max_upload == 0);
    assert_int_equal(sh.message_len, 0);
    sh.message = NULL; /* it pointed into the freed copy */
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &sh), p - start);
    assert_memory_equal(buf, start, (size_t)(p - start));
    /* Version 1 agreed; the client's 0 leaves no feature in use. */
    assert_int_equal(tf__wire_negotiate(ch.version_min, ch.version_max, sh.version_min,
                                        sh.version_max),
                     1);
    assert_int_equal(ch.features & sh.features, 0);

    frame = p;
    tf_wire_response rs;
    decode_doc_frame(tf__wire_decode_response, p, (size_t)(end - p), &rs);
    assert_int_equal(rs.op, TF_OP_GET);
    assert_int_equal(rs.flags, 0);
    assert_int_equal(rs.status, 0);
    assert_true(rs.size == 3);
    assert_int_equal(rs.message_len, 0);
    rs.message = NULL;
    assert_int_equal(tf__wire_encode_response(buf, sizeof buf, &rs), p - frame);
    assert_memory_equal(buf, frame, (size_t)(p - frame));

    assert_true((size_t)(end - p) >= 3);
    assert_memory_equal(p, "hi\n", 3);
    p += 3;

    frame = p;
    tf_wire_trailer tr;
    decode_doc_frame(tf__wire_decode_trailer, p, (size_t)(end - p), &tr);
    assert_int_equal(tr.status, 0);
    assert_int_equal(tr.digest_len, 0);
    assert_int_equal(tf__wire_encode_trailer(buf, sizeof buf, &tr), p - frame);
    assert_memory_equal(buf, frame, (size_t)(p - frame));
    assert_true(p == end);
}

/* ------------------------------------------------------------------------ */
/* Negotiation and status codes                                             */
/* ------------------------------------------------------------------------ */

static void test_wire_negotiate(void **state)
{
    (void)state;
    static const struct {
        uint16_t a_min, a_max, b_min, b_max, want;
    } cases[] = {
        {1, 1, 1, 1, 1},
        {1, 3, 1, 2, 2}, /* the docs' example: server 1..3, client 1..2 */
        {1, 2, 1, 3, 2},
        {1, 5, 3, 4, 4},
        {2, 9, 1, 2, 2}, /* ranges touching at one version */
        {2, 3, 1, 1, 0}, /* disjoint */
        {50, 60, 1, 1, 0},
        {1, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF},
        {1, 0xFFFE, 0xFFFF, 0xFFFF, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "negotiate case %zu", i);
        expect_int(ctx,
                   tf__wire_negotiate(cases[i].a_min, cases[i].a_max, cases[i].b_min,
                                      cases[i].b_max),
                   cases[i].want);
        /* Both sides compute the same result. */
        expect_int(ctx,
                   tf__wire_negotiate(cases[i].b_min, cases[i].b_max, cases[i].a_min,
                                      cases[i].a_max),
                   cases[i].want);
    }
}

static void test_wire_status_code_mapping(void **state)
{
    (void)state;
    static const struct {
        int code;
        uint16_t status;
    } table[] = {
#define ROW(name, value, msg) {TF_##name, (uint16_t)-(value)},
        TF_ERRNO_MAP(ROW)
#undef ROW
    };
    assert_int_equal(ARRAY_LEN(table), 22);
    for (size_t i = 0; i < ARRAY_LEN(table); i++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "status of %s", tf_errname(table[i].code));
        if (table[i].code < TF_EINTERNAL && table[i].code > TF_ENOTDIR) {
            /* A client's own codes (TF_ERESOLVE, ...) never travel. */
            expect_int(ctx, tf__wire_status(table[i].code), 15);
            continue;
        }
        expect_int(ctx, tf__wire_status(table[i].code), table[i].status);
        expect_int(ctx, tf__wire_code(table[i].status), table[i].code);
    }
    /* The documented numbers, spot-checked by hand. */
    assert_int_equal(tf__wire_status(TF_EINVAL), 1);
    assert_int_equal(tf__wire_status(TF_ENOENT), 2);
    assert_int_equal(tf__wire_status(TF_EPROTO), 9);
    assert_int_equal(tf__wire_status(TF_EBUSY), 13);
    assert_int_equal(tf__wire_status(TF_EINTERNAL), 15);
    assert_int_equal(tf__wire_status(TF_ENOTDIR), 19);
    assert_int_equal(tf__wire_status(TF_EISDIR), 20);
    assert_int_equal(tf__wire_status(TF_ENOTEMPTY), 21);
    /* 16..18 never travel, in either direction. */
    assert_int_equal(tf__wire_status(TF_EPEERVERIFY), 15);
    assert_int_equal(tf__wire_code(18), TF_EINTERNAL);
    assert_int_equal(tf__wire_status(TF_ECONFLICT), 22);
    assert_int_equal(tf__wire_status(-23), 15);

    assert_int_equal(tf__wire_status(TF_OK), 0);
    assert_int_equal(tf__wire_code(0), TF_OK);
    /* Codes the wire cannot carry become "internal error"... */
    assert_int_equal(tf__wire_status(-16), 15);
    assert_int_equal(tf__wire_status(-1000), 15);
    assert_int_equal(tf__wire_status(INT32_MIN), 15);
    /* ...and non-negative ones are success. */
    assert_int_equal(tf__wire_status(1), 0);
    assert_int_equal(tf__wire_status(INT32_MAX), 0);
    /* Every status not (yet) defined, from a newer peer, is the generic
       TF_EINTERNAL, which does not close the connection, and is known as
       unknown (for the "unknown error from the server" message). */
    for (unsigned s = 0; s <= 0xFFFF; s++) {
        /* the codes that travel: to TF_EINTERNAL, then the tree's 19..21, 22 */
        int known = s <= (unsigned)-TF_EINTERNAL ||
                    (s >= (unsigned)-TF_ENOTDIR && s <= (unsigned)-TF_ECONFLICT);
        int want = known ? -(int)s : TF_EINTERNAL;
        if (tf__wire_code((uint16_t)s) != want ||
            tf__wire_status_known((uint16_t)s) != known) {
            print_error("status %u gave %d\n", s, tf__wire_code((uint16_t)s));
            fail();
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Lists                                                                    */
/* ------------------------------------------------------------------------ */

static void free_listing(tf_listing *l)
{
    tf_listing_free(l);
}

/* Decodes a list from an exact copy; *out stays valid after the copy goes,
   since the listing owns its names. */
static int decode_list_exact(const uint8_t *buf, size_t len, size_t max_name,
                             tf_listing **out)
{
    uint8_t *copy = exact_copy(buf, len);
    *out = (tf_listing *)(uintptr_t)1; /* must be reset, whatever happens */
    int rc = tf__wire_decode_list(copy, len, max_name, out);
    free(copy);
    return rc;
}

static void test_wire_list_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x00, 0x00, 0x00, 0x02,                         /* count */
        0x00, 0x01, 'a',                                /* name */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, /* size */
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* mtime */
        0x00, 0x02, 'b',  'c',                          /* name */
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, /* size 4 GiB */
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* mtime -1 */
    };
    tf_entry e[] = {{"a", 5, 0x0102030405060708}, {"bc", 0x100000000u, -1}};
    tf_listing l = {ARRAY_LEN(e), e, NULL};

    assert_int_equal(tf__wire_list_entry_size(1), 19);
    assert_int_equal(tf__wire_list_size(&l), sizeof want);
    uint8_t *buf = exact_alloc(sizeof want);
    assert_int_equal(tf__wire_encode_list(buf, sizeof want, &l), sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    free(buf);

    /* The same bytes, piece by piece. */
    uint8_t piece[sizeof want];
    long pos = tf__wire_encode_list_head(piece, sizeof piece, 2);
    assert_int_equal(pos, 4);
    long n = tf__wire_encode_list_entry(piece + pos, sizeof piece - (size_t)pos, "a", 1, 5,
                                        0x0102030405060708);
    assert_int_equal(n, 19);
    pos += n;
    n = tf__wire_encode_list_entry(piece + pos, sizeof piece - (size_t)pos, "bc", 2,
                                   0x100000000u, -1);
    assert_int_equal(n, 20);
    pos += n;
    assert_int_equal(pos, sizeof want);
    assert_memory_equal(piece, want, sizeof want);

    tf_listing *d;
    assert_int_equal(decode_list_exact(want, sizeof want, 255, &d), TF_OK);
    assert_non_null(d);
    assert_int_equal(tf_listing_count(d), 2);
    assert_string_equal(tf_listing_at(d, 0)->name, "a");
    assert_true(tf_listing_at(d, 0)->size == 5);
    assert_true(tf_listing_at(d, 0)->mtime == 0x0102030405060708);
    assert_string_equal(tf_listing_at(d, 1)->name, "bc");
    assert_true(tf_listing_at(d, 1)->size == 0x100000000u);
    assert_true(tf_listing_at(d, 1)->mtime == -1);
    assert_null(tf_listing_at(d, 2));
    free_listing(d);
}

static void test_wire_list_encoders_refuse(void **state)
{
    (void)state;
    tf_entry e[] = {{"one", 1, 1}, {"two", 2, 2}};
    tf_listing l = {ARRAY_LEN(e), e, NULL};
    size_t need = tf__wire_list_size(&l);
    assert_int_equal(need, 4 + 2 * (18 + 3));
    for (size_t cap = 0; cap < need; cap++) {
        uint8_t *buf = exact_alloc(cap);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "list capacity %zu of %zu", cap, need);
        expect_int(ctx, tf__wire_encode_list(buf, cap, &l), TF_EINVAL);
        free(buf);
    }

    tf_listing empty = {0, NULL, NULL};
    assert_int_equal(tf__wire_list_size(&empty), 4);
    uint8_t four[4];
    memset(four, 0x55, sizeof four);
    assert_int_equal(tf__wire_encode_list(four, sizeof four, &empty), 4);
    assert_memory_equal(four, ((uint8_t[]){0, 0, 0, 0}), 4);

    uint8_t small[3];
    assert_int_equal(tf__wire_encode_list_head(small, sizeof small, 1), TF_EINVAL);

    uint8_t *buf = exact_alloc(18 + TF_WIRE_NAME_MAX + 1);
    assert_int_equal(tf__wire_encode_list_entry(buf, 18 + TF_WIRE_NAME_MAX + 1, "", 0, 0, 0),
                     TF_EINVAL);
    assert_int_equal(tf__wire_encode_list_entry(buf, 18 + TF_WIRE_NAME_MAX + 1, name_max,
                                                TF_WIRE_NAME_MAX + 1, 0, 0),
                     TF_EINVAL);
    assert_int_equal(tf__wire_encode_list_entry(buf, 18 + TF_WIRE_NAME_MAX + 1, name_max,
                                                TF_WIRE_NAME_MAX, 0, 0),
                     18 + TF_WIRE_NAME_MAX);
    assert_int_equal(tf__wire_encode_list_entry(buf, 20, "abc", 3, 0, 0), TF_EINVAL);
    free(buf);

    /* An entry with an empty name cannot be encoded as part of a list. */
    tf_entry bad[] = {{"ok", 1, 1}, {"", 2, 2}};
    tf_listing lb = {ARRAY_LEN(bad), bad, NULL};
    uint8_t out[64];
    assert_int_equal(tf__wire_encode_list(out, sizeof out, &lb), TF_EINVAL);
}

typedef struct list_case {
    const char *what;
    size_t max_name;
    size_t count;
    tf_entry entries[12]; /* in the order they are sent */
    const char *sorted[12];
} list_case;

static void check_list_round_trip(const list_case *c)
{
    tf_listing l = {c->count, (tf_entry *)c->entries, NULL};
    size_t n = tf__wire_list_size(&l);
    size_t want_n = 4;
    for (size_t i = 0; i < c->count; i++)
        want_n += 18 + strlen(c->entries[i].name);
    expect_int(c->what, n, want_n);

    uint8_t *buf = exact_alloc(n);
    expect_int(c->what, tf__wire_encode_list(buf, n, &l), (long)n);

    tf_listing *d;
    expect_int(c->what, decode_list_exact(buf, n, c->max_name, &d), TF_OK);
    assert_non_null(d);
    expect_int(c->what, tf_listing_count(d), c->count);
    for (size_t i = 0; i < c->count; i++) {
        const tf_entry *got = tf_listing_at(d, i);
        assert_non_null(got);
        if (strcmp(got->name, c->sorted[i]) != 0) {
            print_error("%s: entry %zu is \"%s\", expected \"%s\"\n", c->what, i, got->name,
                        c->sorted[i]);
            fail();
        }
        /* Find what was sent under this name: size and mtime travel with it. */
        const tf_entry *sent = NULL;
        for (size_t j = 0; j < c->count; j++)
            if (strcmp(c->entries[j].name, got->name) == 0)
                sent = &c->entries[j];
        assert_non_null(sent);
        expect_u64(c->what, got->size, sent->size);
        expect_u64(c->what, got->mtime, sent->mtime);
    }
    assert_null(tf_listing_at(d, c->count));

    /* Re-encoding the decoded listing gives the same number of bytes. */
    expect_int(c->what, tf__wire_list_size(d), n);
    free_listing(d);

    /* Every truncation is malformed: a listing's length is known up front. */
    for (size_t len = 0; len < n; len++) {
        char ctx[160];
        snprintf(ctx, sizeof ctx, "%s, truncated to %zu of %zu", c->what, len, n);
        expect_int(ctx, decode_list_exact(buf, len, c->max_name, &d), TF_EPROTO);
        assert_null(d);
    }

    /* Trailing garbage: one byte, or a whole entry the count does not cover. */
    bytes *b = b_new();
    b_raw(b, buf, n);
    b_uint(b, 0, 1);
    expect_int(c->what, decode_list_exact(b->data, b->len, c->max_name, &d), TF_EPROTO);
    assert_null(d);
    b->len = n;
    b_entry(b, "extra", 5, 1, 1);
    expect_int(c->what, decode_list_exact(b->data, b->len, c->max_name, &d), TF_EPROTO);
    assert_null(d);
    free(b);
    free(buf);
}

static void test_wire_list_round_trip(void **state)
{
    (void)state;
    static const list_case cases[] = {
        {"empty list", 255, 0, {{0}}, {0}},
        {"one entry", 255, 1, {{"hello.txt", 12, 1700000000}}, {"hello.txt"}},
        {"bytewise order",
         255,
         10,
         {{"zeta", 1, 1},
          {"alpha", 2, 2},
          {"Beta", 3, 3},
          {"\xc3\xa9" "clair", 4, 4},
          {"a b", 5, 5},
          {"_x", 6, 6},
          {"a", 7, 7},
          {"ab", 8, 8},
          {".hidden", 9, 9},
          {"~tilde", 10, 10}},
         {".hidden", "Beta", "_x", "a", "a b", "ab", "alpha", "zeta", "~tilde",
          "\xc3\xa9" "clair"}},
        {"64-bit sizes and negative times",
         255,
         5,
         {{"neg", 5000000000u, -86400},
          {"huge", UINT64_MAX, INT64_MIN},
          {"big", 0x100000000u, -1},
          {"max", 1, INT64_MAX},
          {"four-gib-minus-one", 0xFFFFFFFFu, 0}},
         {"big", "four-gib-minus-one", "huge", "max", "neg"}},
        {"multibyte names",
         255,
         3,
         {{"\xf0\x9f\x98\x80", 1, 1}, {"\xe6\x97\xa5\xe6\x9c\xac", 2, 2}, {"caf\xc3\xa9", 3, 3}},
         {"caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80"}},
        {"already sorted",
         255,
         3,
         {{"a1", 1, 1}, {"a2", 2, 2}, {"a3", 3, 3}},
         {"a1", "a2", "a3"}},
        {"reverse order",
         255,
         4,
         {{"d", 4, 4}, {"c", 3, 3}, {"b", 2, 2}, {"a", 1, 1}},
         {"a", "b", "c", "d"}},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        check_list_round_trip(&cases[i]);
}

static void test_wire_list_long_names(void **state)
{
    (void)state;
    static char n255[256], n4096[4097];
    memset(n255, 'x', 255);
    memset(n4096, 'y', 4096);
    list_case c = {"255-byte name", 255, 2, {{n255, 1, 1}, {"a", 2, 2}}, {"a", n255}};
    check_list_round_trip(&c);
    list_case big = {"4096-byte name", 4096, 1, {{n4096, 1, 1}}, {n4096}};
    check_list_round_trip(&big);
    /* A receiver limit above the protocol ceiling is the ceiling. */
    big.max_name = 100000;
    check_list_round_trip(&big);
}

static void test_wire_list_rejects_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *name;
        size_t nlen;
        size_t max_name;
    } bad_names[] = {
        {"name with '/'", "a/b", 3, 255},
        {"name \"/\"", "/", 1, 255},
        {"name \".\"", ".", 1, 255},
        {"name \"..\"", "..", 2, 255},
        {"overlong '/'", "\xc0\xaf", 2, 255},
        {"surrogate", "\xed\xa0\x80", 3, 255},
        {"above U+10FFFF", "\xf4\x90\x80\x80", 4, 255},
        {"lone continuation byte", "a\x80", 2, 255},
        {"0xFF byte", "\xff", 1, 255},
        {"embedded NUL", "a\0b", 3, 255},
        {"control character", "a\x01", 2, 255},
        {"DEL", "\x7f", 1, 255},
        {"C1 control", "\xc2\x85", 2, 255},
        {"longer than max_name", "abcd", 4, 3},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad_names); i++) {
        bytes *b = b_new();
        b_uint(b, 1, 4);
        b_entry(b, bad_names[i].name, bad_names[i].nlen, 1, 1);
        tf_listing *d;
        expect_int(bad_names[i].what,
                   decode_list_exact(b->data, b->len, bad_names[i].max_name, &d), TF_EPROTO);
        assert_null(d);
        free(b);
    }

    /* A name of exactly max_name bytes is fine. */
    bytes *b = b_new();
    b_uint(b, 1, 4);
    b_entry(b, "abcd", 4, 1, 1);
    tf_listing *d;
    assert_int_equal(decode_list_exact(b->data, b->len, 4, &d), TF_OK);
    free_listing(d);

    /* A name truncated mid-sequence must not borrow the size's first byte
       (0x80 would complete "\xe2\x82" into U+2080). */
    b->len = 0;
    b_uint(b, 1, 4);
    b_entry(b, "\xe2\x82", 2, 0x80A0000000000000u, 1);
    assert_int_equal(decode_list_exact(b->data, b->len, 255, &d), TF_EPROTO);
    assert_null(d);

    /* name_len 0. */
    b->len = 0;
    b_uint(b, 1, 4);
    b_entry(b, "", 0, 1, 1);
    b_uint(b, 0, 1); /* pad so the count check passes */
    assert_int_equal(decode_list_exact(b->data, b->len, 255, &d), TF_EPROTO);
    assert_null(d);

    /* name_len over the 4096 ceiling, even with a larger receiver limit. */
    b->len = 0;
    b_uint(b, 1, 4);
    b_entry(b, name_max, TF_WIRE_NAME_MAX + 1, 1, 1);
    assert_int_equal(decode_list_exact(b->data, b->len, 100000, &d), TF_EPROTO);
    assert_null(d);

    /* name_len running past the end. */
    b->len = 0;
    b_uint(b, 1, 4);
    b_uint(b, 100, 2);
    b_raw(b, "abcdefghijklmnopqrstuvwxyz", 26);
    assert_int_equal(decode_list_exact(b->data, b->len, 255, &d), TF_EPROTO);
    assert_null(d);

    /* Counts the buffer cannot hold. */
    static const uint32_t counts[] = {1, 2, 3, 0x7FFFFFFFu, 0xFFFFFFFFu};
    for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
        b->len = 0;
        b_uint(b, counts[i], 4);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "count %u with no entries", (unsigned)counts[i]);
        expect_int(ctx, decode_list_exact(b->data, b->len, 255, &d), TF_EPROTO);
        assert_null(d);
        if (counts[i] > 1) {
            b_entry(b, "only", 4, 1, 1);
            snprintf(ctx, sizeof ctx, "count %u with one entry", (unsigned)counts[i]);
            expect_int(ctx, decode_list_exact(b->data, b->len, 255, &d), TF_EPROTO);
            assert_null(d);
        }
    }
    /* A count the size would allow ((len - 4) / 19 = 2) but the entries do
       not fill. */
    b->len = 0;
    b_uint(b, 2, 4);
    b_entry(b, "abcdefghijklmnopqrstu", 21, 1, 1);
    assert_int_equal((b->len - 4) / 19, 2);
    assert_int_equal(decode_list_exact(b->data, b->len, 255, &d), TF_EPROTO);
    assert_null(d);

    /* Too short for a count at all. */
    for (size_t len = 0; len < 4; len++) {
        assert_int_equal(decode_list_exact((const uint8_t *)"\0\0\0\0", len, 255, &d),
                         TF_EPROTO);
        assert_null(d);
    }
    /* An empty list is exactly 4 bytes. */
    assert_int_equal(decode_list_exact((const uint8_t *)"\0\0\0\0", 4, 255, &d), TF_OK);
    assert_non_null(d);
    assert_int_equal(tf_listing_count(d), 0);
    assert_null(tf_listing_at(d, 0));
    free_listing(d);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Garbage                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

typedef struct outcome_counts {
    unsigned ok, need_more, rejected;
} outcome_counts;

static void count_outcome(outcome_counts *c, long rc)
{
    if (rc > 0)
        c->ok++;
    else if (rc == 0)
        c->need_more++;
    else
        c->rejected++;
}

static int entries_sorted(const tf_listing *l)
{
    for (size_t i = 1; i < tf_listing_count(l); i++)
        if (strcmp(tf_listing_at(l, i - 1)->name, tf_listing_at(l, i)->name) > 0)
            return 0;
    return 1;
}

/* Valid frames to mutate, so that random damage reaches deep paths too. */
typedef struct seed_frame {
    uint8_t data[96];
    size_t len;
} seed_frame;

static void make_seeds(seed_frame *s, size_t *count)
{
    size_t n = 0;
    tf_wire_client_hello ch = {1, 2, 0};
    s[n].len = (size_t)tf__wire_encode_client_hello(s[n].data, sizeof s[n].data, &ch);
    n++;
    tf_wire_server_hello sh = {1, 1, 0, 0, 255, 1000, "msg", 3};
    s[n].len = (size_t)tf__wire_encode_server_hello(s[n].data, sizeof s[n].data, &sh);
    n++;
    tf_wire_request rq = {TF_OP_PUT, 0, 12, 0, "file.bin", 8, NULL, NULL, 0, 0, NULL};
    s[n].len = (size_t)tf__wire_encode_request(s[n].data, sizeof s[n].data, &rq);
    n++;
    tf_wire_response rs = {TF_OP_GET, 0, 2, 0, "no such", 7};
    s[n].len = (size_t)tf__wire_encode_response(s[n].data, sizeof s[n].data, &rs);
    n++;
    tf_wire_trailer tr = {0, 4, (const uint8_t *)"abcd"};
    s[n].len = (size_t)tf__wire_encode_trailer(s[n].data, sizeof s[n].data, &tr);
    n++;
    tf_entry e[] = {{"b", 1, -1}, {"a\xc3\xa9", 0x100000000u, 5}, {"c", 0, 0}};
    tf_listing l = {ARRAY_LEN(e), e, NULL};
    s[n].len = (size_t)tf__wire_encode_list(s[n].data, sizeof s[n].data, &l);
    n++;
    for (size_t i = 0; i < n; i++)
        assert_true(s[i].len > 0 && s[i].len <= sizeof s[i].data);
    *count = n;
}

static void test_wire_garbage_never_crashes(void **state)
{
    (void)state;
    enum { ITERATIONS = 100000, MAX_LEN = 128 };
    static const size_t max_names[] = {0, 1, 3, 255, TF_WIRE_NAME_MAX, 65535};
    seed_frame seeds[8];
    size_t nseeds;
    make_seeds(seeds, &nseeds);

    outcome_counts ch = {0}, sh = {0}, rq = {0}, rs = {0}, tr = {0}, li = {0};
    uint64_t rng = 0x9E3779B97F4A7C15u;
    uint8_t raw[MAX_LEN];

    for (unsigned it = 0; it < ITERATIONS; it++) {
        size_t len = (size_t)(xorshift64(&rng) % (MAX_LEN + 1));
        for (size_t i = 0; i < len; i++)
            raw[i] = (uint8_t)xorshift64(&rng);

        switch (it % 4) {
        case 0: /* pure noise */
            break;
        case 1: /* plausible hello: the magic, small versions, small lengths */
            if (len >= 4)
                memcpy(raw, TF_WIRE_MAGIC, 4);
            if (len >= 8) {
                raw[4] = 0;
                raw[5] = (uint8_t)(raw[5] % 3);
                raw[6] = 0;
                raw[7] = (uint8_t)(raw[7] % 3);
            }
            if (len >= 16)
                raw[14] = (uint8_t)(raw[14] % 0x12); /* max_name around 4096 */
            if (len >= 26) {
                raw[24] = (uint8_t)(raw[24] % 5); /* message_len around 1024 */
                raw[25] = (uint8_t)(raw[25] % 100);
            }
            break;
        case 2: /* small length fields for the other frames and the list */
            if (len >= 4) {
                /* list count 0..3; request name_len and digest_len 0..3 */
                raw[0] = 0;
                raw[1] = 0;
                raw[2] = 0;
                raw[3] = (uint8_t)(raw[3] % 4);
            }
            if (len >= 6) {
                /* response message_len and the first list name_len: 0..7 */
                raw[4] = 0;
                raw[5] = (uint8_t)(raw[5] % 8);
            }
            break;
        default: { /* a valid frame with one to three bytes changed, cut or grown */
            const seed_frame *s = &seeds[xorshift64(&rng) % nseeds];
            size_t keep = s->len < len ? s->len : len;
            memcpy(raw, s->data, keep);
            if (xorshift64(&rng) % 4 == 0 && len > s->len)
                len = s->len; /* sometimes the exact frame length */
            unsigned flips = (unsigned)(xorshift64(&rng) % 4);
            for (unsigned f = 0; f < flips && len > 0; f++)
                raw[xorshift64(&rng) % len] ^= (uint8_t)(1u << (xorshift64(&rng) % 8));
            break;
        }
        }

        uint8_t *buf = exact_copy(raw, len);
        long rc;

        tf_wire_client_hello c;
        rc = tf__wire_decode_client_hello(buf, len, &c);
        assert_true(rc == TF_WIRE_NEED_MORE || rc == TF_EPROTO ||
                    rc == TF_WIRE_CLIENT_HELLO_SIZE);
        if (rc > 0) {
            assert_true(len >= 16);
            assert_true(c.version_min >= 1 && c.version_min <= c.version_max);
        }
        count_outcome(&ch, rc);

        tf_wire_server_hello h;
        rc = tf__wire_decode_server_hello(buf, len, &h);
        assert_true(rc >= TF_WIRE_NEED_MORE || rc == TF_EPROTO);
        if (rc > 0) {
            assert_int_equal(rc, TF_WIRE_SERVER_HELLO_SIZE + h.message_len);
            assert_true((size_t)rc <= len);
            assert_true(h.message_len <= TF_WIRE_MESSAGE_MAX);
            assert_ptr_equal(h.message, buf + TF_WIRE_SERVER_HELLO_SIZE);
            assert_true(h.version_min >= 1 && h.version_min <= h.version_max);
            assert_true(h.status != 0 ||
                        (h.max_name >= 1 && h.max_name <= TF_WIRE_NAME_MAX));
        }
        count_outcome(&sh, rc);

        size_t max_name = max_names[it % ARRAY_LEN(max_names)];
        tf_wire_request r;
        rc = tf__wire_decode_request(buf, len, max_name, &r);
        assert_true(rc >= TF_WIRE_NEED_MORE || rc == TF_ETOOBIG);
        if (rc > 0) {
            assert_int_equal(rc, TF_WIRE_REQUEST_SIZE + tf__wire_request_tail(&r));
            assert_true((size_t)rc <= len);
            assert_true(r.name_len <= max_name && r.name_len <= TF_WIRE_NAME_MAX);
            assert_ptr_equal(r.name, buf + TF_WIRE_REQUEST_SIZE);
        }
        count_outcome(&rq, rc);

        tf_wire_response p;
        rc = tf__wire_decode_response(buf, len, &p);
        assert_true(rc >= TF_WIRE_NEED_MORE || rc == TF_EPROTO);
        if (rc > 0) {
            assert_int_equal(rc, TF_WIRE_RESPONSE_SIZE + p.message_len);
            assert_true((size_t)rc <= len);
            assert_true(p.message_len <= TF_WIRE_MESSAGE_MAX);
        }
        count_outcome(&rs, rc);

        tf_wire_trailer t;
        rc = tf__wire_decode_trailer(buf, len, &t);
        assert_true(rc >= TF_WIRE_NEED_MORE || rc == TF_EPROTO);
        if (rc > 0) {
            assert_int_equal(rc, TF_WIRE_TRAILER_SIZE + t.digest_len);
            assert_true((size_t)rc <= len);
            assert_true(t.digest_len <= TF_WIRE_DIGEST_MAX);
        }
        count_outcome(&tr, rc);

        tf_listing *l = (tf_listing *)(uintptr_t)1;
        int lrc = tf__wire_decode_list(buf, len, max_name, &l);
        if (lrc == TF_OK) {
            assert_non_null(l);
            assert_true(len >= 4);
            assert_true(tf_listing_count(l) <= (len - 4) / 19);
            assert_true(entries_sorted(l));
            assert_int_equal(tf__wire_list_size(l), len);
            for (size_t i = 0; i < tf_listing_count(l); i++)
                assert_int_equal(tf_name_check(tf_listing_at(l, i)->name, max_name, NULL),
                                 TF_OK);
            tf_listing_free(l);
            li.ok++;
        } else {
            assert_int_equal(lrc, TF_EPROTO);
            assert_null(l);
            li.rejected++;
        }
        free(buf);
    }

    /* The shaping must have reached every outcome, or the loop proves little. */
    const struct {
        const char *what;
        outcome_counts *c;
    } all[] = {{"client hello", &ch}, {"server hello", &sh}, {"request", &rq},
               {"response", &rs},     {"trailer", &tr}};
    for (size_t i = 0; i < ARRAY_LEN(all); i++) {
        print_message("%-12s ok %6u  need more %6u  rejected %6u\n", all[i].what,
                      all[i].c->ok, all[i].c->need_more, all[i].c->rejected);
        assert_true(all[i].c->ok > 0);
        assert_true(all[i].c->need_more > 0);
    }
    print_message("%-12s ok %6u  rejected %6u\n", "list", li.ok, li.rejected);
    assert_true(li.ok > 0 && li.rejected > 0);
    assert_true(ch.rejected > 0 && sh.rejected > 0 && rq.rejected > 0 && rs.rejected > 0 &&
                tr.rejected > 0);
}

/* ------------------------------------------------------------------------ */
/* The tree (feature TREE, section 3a)                                      */
/* ------------------------------------------------------------------------ */

static void test_wire_tree_stat_record(void **state)
{
    (void)state;
    tf_wire_stat in = {2, 0, 999999999u, 0, -5, {0}};
    uint8_t buf[TF_WIRE_STAT_MAX];
    memset(buf, 0x77, sizeof buf);
    assert_int_equal(tf__wire_encode_stat(buf, sizeof buf, &in), TF_WIRE_STAT_SIZE);
    static const uint8_t want[TF_WIRE_STAT_SIZE] = {
        2, 0, 0, 0, 0x3B, 0x9A, 0xC9, 0xFF,                 /* type, flags, mtime_ns */
        0, 0, 0, 0, 0, 0, 0, 0,                             /* size */
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFB,     /* mtime -5 */
    };
    assert_memory_equal(buf, want, sizeof want);
    tf_wire_stat out;
    assert_int_equal(tf__wire_decode_stat(buf, TF_WIRE_STAT_SIZE, &out), TF_WIRE_STAT_SIZE);
    assert_int_equal(out.type, 2);
    assert_int_equal(out.mtime, -5);
    assert_int_equal(out.mtime_ns, 999999999u);

    tf_wire_stat file = {1, TF_WIRE_STAT_HAS_DIGEST, 1, 0x0102030405060708u, 1700000000, {0}};
    for (int i = 0; i < 16; i++)
        file.digest[i] = (uint8_t)(0xA0 + i);
    assert_int_equal(tf__wire_encode_stat(buf, sizeof buf, &file), TF_WIRE_STAT_SIZE);
    /* Longer records (a later version's) decode, their tail ignored. */
    assert_int_equal(tf__wire_decode_stat(buf, 100, &out), 100);
    assert_int_equal(out.size, 0x0102030405060708u);
    assert_int_equal(out.flags, TF_WIRE_STAT_HAS_DIGEST);
    assert_memory_equal(out.digest, file.digest, 16);
    /* Short, too long, bad type, bad nanoseconds: malformed. */
    for (size_t n = 0; n < TF_WIRE_STAT_SIZE; n++)
        assert_int_equal(tf__wire_decode_stat(buf, n, &out), TF_EPROTO);
    assert_int_equal(tf__wire_decode_stat(buf, TF_WIRE_STAT_MAX + 1, &out), TF_EPROTO);
    buf[0] = 3;
    assert_int_equal(tf__wire_decode_stat(buf, TF_WIRE_STAT_SIZE, &out), TF_EPROTO);
    buf[0] = 1;
    tf__put_u32(buf + 4, 1000000000u);
    assert_int_equal(tf__wire_decode_stat(buf, TF_WIRE_STAT_SIZE, &out), TF_EPROTO);
    /* The encoder refuses what the decoder would. */
    tf_wire_stat bad = {3, 0, 0, 0, 0, {0}};
    assert_int_equal(tf__wire_encode_stat(buf, sizeof buf, &bad), TF_EINVAL);
    assert_int_equal(tf__wire_encode_stat(buf, TF_WIRE_STAT_SIZE - 1, &file), TF_EINVAL);
}

static void test_wire_tree_dirent(void **state)
{
    (void)state;
    uint8_t buf[64];
    tf_wire_dirent in = {"a/b", 3, 1, 7, 42, 1700000000};
    assert_int_equal(tf__wire_encode_dirent(buf, sizeof buf, &in), TF_WIRE_DIRENT_FIXED + 3);
    static const uint8_t want[] = {
        0, 3, 'a', '/', 'b', 1, 0, 0, 0, 0, 7,              /* len, path, type, 0, ns */
        0, 0, 0, 0, 0, 0, 0, 42,                            /* size */
        0, 0, 0, 0, 0x65, 0x53, 0xF1, 0x00,                 /* mtime */
    };
    assert_memory_equal(buf, want, sizeof want);
    tf_wire_dirent out;
    assert_int_equal(tf__wire_decode_dirent(buf, sizeof want, 4096, &out), sizeof want);
    assert_int_equal(out.path_len, 3);
    assert_memory_equal(out.path, "a/b", 3);
    assert_int_equal(out.type, 1);
    assert_int_equal(out.size, 42);
    assert_int_equal(out.mtime, 1700000000);
    assert_int_equal(out.mtime_ns, 7);
    /* An entry never spans chunks: every shorter length is malformed. */
    for (size_t n = 0; n < sizeof want; n++)
        assert_int_equal(tf__wire_decode_dirent(buf, n, 4096, &out), TF_EPROTO);
    assert_int_equal(tf__wire_decode_dirent(buf, sizeof want, 2, &out), TF_EPROTO);
    buf[5] = 9; /* type */
    assert_int_equal(tf__wire_decode_dirent(buf, sizeof want, 4096, &out), TF_EPROTO);
    buf[5] = 2;
    buf[0] = buf[1] = 0; /* empty path */
    assert_int_equal(tf__wire_decode_dirent(buf, sizeof want, 4096, &out), TF_EPROTO);
    tf_wire_dirent empty = {"", 0, 1, 0, 0, 0};
    assert_int_equal(tf__wire_encode_dirent(buf, sizeof buf, &empty), TF_EINVAL);
    assert_int_equal(tf__wire_encode_dirent(buf, TF_WIRE_DIRENT_FIXED + 2, &in), TF_EINVAL);
}

static void test_wire_tree_rename_request(void **state)
{
    (void)state;
    uint8_t buf[TF_WIRE_REQUEST_SIZE + 16];
    long n = tf__wire_encode_rename(buf, sizeof buf, TF_REQ_RENAME_NOREPLACE, "a/b", 3, "cd", 2);
    assert_int_equal(n, TF_WIRE_REQUEST_SIZE + 5);
    assert_int_equal(buf[0], TF_OP_RENAME);
    assert_int_equal(buf[1], TF_REQ_RENAME_NOREPLACE);
    assert_int_equal(tf__get_u64(buf + 8), 2); /* size = to_len */
    tf_wire_request r;
    /* Every prefix needs more; the whole decodes, the new path after the name. */
    for (long k = 0; k < n; k++)
        assert_int_equal(tf__wire_decode_request(buf, (size_t)k, 4096, &r), TF_WIRE_NEED_MORE);
    assert_int_equal(tf__wire_decode_request(buf, (size_t)n, 4096, &r), n);
    assert_null(r.key); /* flag 0x01 is not UPLOAD_KEY on a tree op */
    size_t to_len;
    const char *to = tf__wire_request_to(&r, &to_len);
    assert_int_equal(to_len, 2);
    assert_memory_equal(to, "cd", 2);
    assert_memory_equal(r.name, "a/b", 3);
    /* The new path counts against the limit like the name. */
    assert_int_equal(tf__wire_decode_request(buf, (size_t)n, 2, &r), TF_ETOOBIG);
    /* Then the name is not there, but the new path's length still frames
       the request (found by fuzz_server under UBSan: the server asked for
       the new path of a skipped name, and got NULL + name_len). */
    assert_null(r.name);
    assert_null(tf__wire_request_to(&r, &to_len));
    assert_int_equal(to_len, 2);
    /* A size that is no path length: no new path (refused by the server). */
    tf__put_u64(buf + 8, 5000);
    assert_int_equal(tf__wire_decode_request(buf, (size_t)n, 4096, &r),
                     TF_WIRE_REQUEST_SIZE + 3);
    assert_null(tf__wire_request_to(&r, &to_len));
    assert_int_equal(to_len, 0);
    /* The generic encoder does not make renames; empty paths are refused. */
    tf_wire_request q = {.op = TF_OP_RENAME, .name = "a", .name_len = 1};
    assert_int_equal(tf__wire_encode_request(buf, sizeof buf, &q), TF_EINVAL);
    assert_int_equal(tf__wire_encode_rename(buf, sizeof buf, 0, "", 0, "x", 1), TF_EINVAL);
    assert_int_equal(tf__wire_encode_rename(buf, sizeof buf, 0, "x", 1, "", 0), TF_EINVAL);
    assert_int_equal(tf__wire_encode_rename(buf, TF_WIRE_REQUEST_SIZE + 1, 0, "x", 1, "y", 1),
                     TF_EINVAL);
    /* A stat with its DIGEST flag (0x01) carries no key either. */
    tf_wire_request st = {.op = TF_OP_STAT, .flags = TF_REQ_STAT_DIGEST, .name = "f",
                          .name_len = 1};
    assert_int_equal(tf__wire_encode_request(buf, sizeof buf, &st), TF_WIRE_REQUEST_SIZE + 1);
    assert_int_equal(tf__wire_decode_request(buf, TF_WIRE_REQUEST_SIZE + 1, 255, &r),
                     TF_WIRE_REQUEST_SIZE + 1);
    assert_null(r.key);
}

static void test_wire_tree_hello_depth(void **state)
{
    (void)state;
    tf_wire_server_hello h = {1, 1, TF_FEATURE_TREE | TF_FEATURE_CHECKSUM, 0, 255, 0, NULL, 0};
    uint8_t buf[TF_WIRE_SERVER_HELLO_SIZE];
    assert_int_equal(tf__wire_encode_server_hello(buf, sizeof buf, &h),
                     TF_WIRE_SERVER_HELLO_SIZE);
    assert_int_equal(tf__wire_server_hello_depth(buf), 0);
    tf__wire_server_hello_put_depth(buf, 64);
    assert_memory_equal(buf + 26, ((uint8_t[]){0, 64}), 2);
    /* The hello keeps its size and still decodes as version 1 did. */
    tf_wire_server_hello d;
    assert_int_equal(tf__wire_decode_server_hello(buf, sizeof buf, &d),
                     TF_WIRE_SERVER_HELLO_SIZE);
    assert_int_equal(d.message_len, 0);
    assert_int_equal(tf__wire_server_hello_depth(buf), 64);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_byte_order_helpers),
        cmocka_unit_test(test_wire_client_hello_round_trip),
        cmocka_unit_test(test_wire_client_hello_bytes),
        cmocka_unit_test(test_wire_client_hello_rejects_bad_versions),
        cmocka_unit_test(test_wire_server_hello_round_trip),
        cmocka_unit_test(test_wire_server_hello_bytes),
        cmocka_unit_test(test_wire_server_hello_rejects_bad_fields),
        cmocka_unit_test(test_wire_hello_bad_magic_rejected_at_first_byte),
        cmocka_unit_test(test_wire_request_round_trip),
        cmocka_unit_test(test_wire_request_bytes),
        cmocka_unit_test(test_wire_request_name_limit),
        cmocka_unit_test(test_wire_auth_round_trip),
        cmocka_unit_test(test_wire_auth_bytes),
        cmocka_unit_test(test_wire_auth_rejects_bad_heads),
        cmocka_unit_test(test_wire_response_round_trip),
        cmocka_unit_test(test_wire_response_bytes),
        cmocka_unit_test(test_wire_response_message_limit),
        cmocka_unit_test(test_wire_chunk_head),
        cmocka_unit_test(test_wire_trailer_round_trip),
        cmocka_unit_test(test_wire_trailer_bytes_and_limit),
        cmocka_unit_test(test_wire_protocol_example),
        cmocka_unit_test(test_wire_need_more_sets_the_head),
        cmocka_unit_test(test_wire_negotiate),
        cmocka_unit_test(test_wire_status_code_mapping),
        cmocka_unit_test(test_wire_list_bytes),
        cmocka_unit_test(test_wire_list_encoders_refuse),
        cmocka_unit_test(test_wire_list_round_trip),
        cmocka_unit_test(test_wire_list_long_names),
        cmocka_unit_test(test_wire_list_rejects_malformed),
        cmocka_unit_test(test_wire_garbage_never_crashes),
        cmocka_unit_test(test_wire_tree_stat_record),
        cmocka_unit_test(test_wire_tree_dirent),
        cmocka_unit_test(test_wire_tree_rename_request),
        cmocka_unit_test(test_wire_tree_hello_depth),
    };
    return TU_RUN_GROUP("wire", tests, group_setup, NULL, argc > 1 ? argv[1] : NULL);
}
