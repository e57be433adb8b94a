/*
 * test_name.c - what a file name may be (tf_name_check, tf__name_check_bytes),
 * against the rule of docs/protocol.md: one path component of 1..max_name
 * bytes of valid UTF-8, not "." or "..", no '/', NUL or control character.
 *
 * Each name is handed over in a heap block of exactly its length (plus the
 * terminator for the C-string variant), so that AddressSanitizer reports any
 * read past it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A string literal and its length, embedded NULs included. */
#define S(lit) lit, sizeof(lit) - 1

/* What a failure's `why` must mention. */
#define WHY_EMPTY "empty"
#define WHY_LONG "longer"
#define WHY_DOTS "\".\""
#define WHY_SLASH "'/'"
#define WHY_NUL "NUL"
#define WHY_CONTROL "control"
#define WHY_UTF8 "UTF-8"

typedef struct name_case {
    const char *bytes;
    size_t len;
    size_t max_len;      /* 0: the default, 255 */
    const char *why_has; /* NULL: the name is valid */
} name_case;

static const name_case cases[] = {
    /* valid */
    {S("a"), 0, NULL},
    {S("hello.txt"), 0, NULL},
    {S("caf\xc3\xa9"), 0, NULL},                 /* café */
    {S("\xf0\x9f\x98\x80"), 0, NULL},            /* U+1F600, an emoji */
    {S("\xe6\x97\xa5\xe6\x9c\xac.txt"), 0, NULL}, /* CJK */
    {S(".hidden"), 0, NULL},
    {S("..."), 0, NULL},
    {S("..x"), 0, NULL},
    {S(".x."), 0, NULL},
    {S("a b"), 0, NULL},
    {S(" "), 0, NULL},
    {S(" leading and trailing "), 0, NULL},
    {S("~"), 0, NULL},
    {S("-rf"), 0, NULL},
    {S("a\\b"), 0, NULL},             /* a backslash is an ordinary byte */
    {S("\xc2\xa0"), 0, NULL},         /* U+00A0, just after the C1 block */
    {S("\xe0\xa0\x80"), 0, NULL},     /* U+0800, the first 3-byte form */
    {S("\xed\x9f\xbf"), 0, NULL},     /* U+D7FF, just before the surrogates */
    {S("\xee\x80\x80"), 0, NULL},     /* U+E000, just after them */
    {S("\xef\xbf\xbd"), 0, NULL},     /* U+FFFD */
    {S("\xf0\x90\x80\x80"), 0, NULL}, /* U+10000, the first 4-byte form */
    {S("\xf4\x8f\xbf\xbf"), 0, NULL}, /* U+10FFFF, the last code point */
    {S("abcd"), 4, NULL},             /* custom limit, exactly reached */
    {S("a"), 1, NULL},

    /* invalid: emptiness, dots, length */
    {S(""), 0, WHY_EMPTY},
    {S(""), 10, WHY_EMPTY},
    {S("."), 0, WHY_DOTS},
    {S(".."), 0, WHY_DOTS},
    {S("abcde"), 4, WHY_LONG},
    {S("ab"), 1, WHY_LONG},
    {S("\xc3\xa9"), 1, WHY_LONG}, /* the limit counts bytes, not characters */

    /* invalid: path separators */
    {S("a/b"), 0, WHY_SLASH},
    {S("/abs"), 0, WHY_SLASH},
    {S("../x"), 0, WHY_SLASH},
    {S("x/"), 0, WHY_SLASH},
    {S("/"), 0, WHY_SLASH},
    {S("./"), 0, WHY_SLASH},

    /* invalid: NUL and control characters */
    {S("a\0b"), 0, WHY_NUL},
    {S("\0"), 0, WHY_NUL},
    {S("abc\0"), 0, WHY_NUL},
    {S("\x01"), 0, WHY_CONTROL},
    {S("a\x1f"), 0, WHY_CONTROL},
    {S("tab\there"), 0, WHY_CONTROL},
    {S("line\n"), 0, WHY_CONTROL},
    {S("a\rb"), 0, WHY_CONTROL},
    {S("\x1b[31m"), 0, WHY_CONTROL},
    {S("\x7f"), 0, WHY_CONTROL},
    {S("\xc2\x80"), 0, WHY_CONTROL}, /* U+0080 */
    {S("\xc2\x85"), 0, WHY_CONTROL}, /* U+0085, NEL */
    {S("x\xc2\x9fy"), 0, WHY_CONTROL}, /* U+009F */

    /* invalid: not UTF-8 */
    {S("\xc0\xaf"), 0, WHY_UTF8},         /* overlong '/' */
    {S("\xc0\x80"), 0, WHY_UTF8},         /* overlong NUL */
    {S("\xc1\xbf"), 0, WHY_UTF8},         /* overlong */
    {S("\xe0\x80\xaf"), 0, WHY_UTF8},     /* overlong, 3 bytes */
    {S("\xe0\x9f\xbf"), 0, WHY_UTF8},     /* overlong U+07FF */
    {S("\xf0\x80\x80\xaf"), 0, WHY_UTF8}, /* overlong, 4 bytes */
    {S("\xf0\x8f\xbf\xbf"), 0, WHY_UTF8}, /* overlong U+FFFF */
    {S("\xed\xa0\x80"), 0, WHY_UTF8},     /* U+D800, a surrogate */
    {S("\xed\xbf\xbf"), 0, WHY_UTF8},     /* U+DFFF */
    {S("\xf4\x90\x80\x80"), 0, WHY_UTF8}, /* U+110000 */
    {S("\xf5\x80\x80\x80"), 0, WHY_UTF8},
    {S("\xf7\xbf\xbf\xbf"), 0, WHY_UTF8},
    {S("\xf8\x88\x80\x80\x80"), 0, WHY_UTF8}, /* 5-byte form */
    {S("\xfe"), 0, WHY_UTF8},
    {S("\xff"), 0, WHY_UTF8},
    {S("\xc3"), 0, WHY_UTF8},             /* truncated */
    {S("caf\xc3"), 0, WHY_UTF8},
    {S("\xe2\x82"), 0, WHY_UTF8},
    {S("\xf0\x9f\x98"), 0, WHY_UTF8},
    {S("\xf0\x9f\x98x"), 0, WHY_UTF8},    /* cut short by an ASCII byte */
    {S("\xe2\x28\xa1"), 0, WHY_UTF8},     /* bad second byte */
    {S("\x80"), 0, WHY_UTF8},             /* lone continuation bytes */
    {S("a\xbf" "b"), 0, WHY_UTF8},
    {S("\xc3\xa9\xa9"), 0, WHY_UTF8},
    {S("\xc0"), 0, WHY_UTF8},
};

static int contains_nul(const char *s, size_t n)
{
    return memchr(s, '\0', n) != NULL;
}

static void check_why(const char *ctx, int rc, const char *why, const char *why_has)
{
    if (!why) {
        print_error("%s: why was left NULL\n", ctx);
        fail();
    }
    if (rc == TF_OK) {
        if (why[0] != '\0') {
            print_error("%s: valid, but why is \"%s\"\n", ctx, why);
            fail();
        }
        return;
    }
    /* A sentence: non-empty, starts with a letter, one line. */
    if (strlen(why) < 8 || !isalpha((unsigned char)why[0]) || strchr(why, '\n')) {
        print_error("%s: why is \"%s\", not a sentence\n", ctx, why);
        fail();
    }
    if (why_has && !strstr(why, why_has)) {
        print_error("%s: why is \"%s\", expected it to mention %s\n", ctx, why, why_has);
        fail();
    }
}

static void describe(char *out, size_t cap, const name_case *c, size_t index)
{
    int used = snprintf(out, cap, "case %zu \"", index);
    for (size_t i = 0; i < c->len && used > 0 && (size_t)used + 5 < cap; i++) {
        unsigned char ch = (unsigned char)c->bytes[i];
        if (ch >= 0x20 && ch < 0x7f)
            used += snprintf(out + used, cap - (size_t)used, "%c", ch);
        else
            used += snprintf(out + used, cap - (size_t)used, "\\x%02x", ch);
    }
    if (used > 0 && (size_t)used + 12 < cap)
        snprintf(out + used, cap - (size_t)used, "\" max %zu", c->max_len);
}

static void test_name_table(void **state)
{
    (void)state;
    size_t valid = 0, invalid = 0;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const name_case *c = &cases[i];
        char ctx[160];
        describe(ctx, sizeof ctx, c, i);
        int want = c->why_has ? TF_EINVAL : TF_OK;
        if (want == TF_OK)
            valid++;
        else
            invalid++;

        /* The bytes variant, from a block of exactly len bytes. */
        char *exact = malloc(c->len ? c->len : 1);
        assert_non_null(exact);
        memcpy(exact, c->bytes, c->len);
        const char *why = "not touched";
        int rc = tf__name_check_bytes(exact, c->len, c->max_len, &why);
        if (rc != want) {
            print_error("%s: bytes check gave %s, expected %s\n", ctx, tf_errname(rc),
                        tf_errname(want));
            fail();
        }
        check_why(ctx, rc, why, c->why_has);
        assert_int_equal(tf__name_check_bytes(exact, c->len, c->max_len, NULL), want);
        free(exact);

        /* The C-string variant sees the same name when it has no NUL. */
        if (!contains_nul(c->bytes, c->len)) {
            char *str = malloc(c->len + 1);
            assert_non_null(str);
            memcpy(str, c->bytes, c->len);
            str[c->len] = '\0';
            const char *why2 = "not touched";
            rc = tf_name_check(str, c->max_len, &why2);
            if (rc != want) {
                print_error("%s: string check gave %s, expected %s\n", ctx,
                            tf_errname(rc), tf_errname(want));
                fail();
            }
            check_why(ctx, rc, why2, c->why_has);
            assert_string_equal(why, why2);
            assert_int_equal(tf_name_check(str, c->max_len, NULL), want);
            free(str);
        }
    }
    print_message("%zu valid and %zu invalid names\n", valid, invalid);
}

/* A name of n copies of fill in a block of exactly n + 1 bytes. */
static char *repeat(char fill, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, fill, n);
    s[n] = '\0';
    return s;
}

static void test_name_length_limits(void **state)
{
    (void)state;
    static const struct {
        size_t len, max_len;
        int want;
    } cases_len[] = {
        {255, 0, TF_OK},        {256, 0, TF_EINVAL},    {255, 255, TF_OK},
        {256, 255, TF_EINVAL},  {1000, 0, TF_EINVAL},   {4096, 4096, TF_OK},
        {4097, 4096, TF_EINVAL}, {300, 300, TF_OK},     {301, 300, TF_EINVAL},
        {10, 9, TF_EINVAL},     {1, 1, TF_OK},          {2, 1, TF_EINVAL},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases_len); i++) {
        char *s = repeat('n', cases_len[i].len);
        const char *why = NULL;
        int rc = tf_name_check(s, cases_len[i].max_len, &why);
        if (rc != cases_len[i].want) {
            print_error("%zu bytes, max %zu: gave %s\n", cases_len[i].len,
                        cases_len[i].max_len, tf_errname(rc));
            fail();
        }
        check_why("length", rc, why, rc ? WHY_LONG : NULL);
        assert_int_equal(tf__name_check_bytes(s, cases_len[i].len, cases_len[i].max_len, &why),
                         cases_len[i].want);
        free(s);
    }

    /* 255 bytes of multibyte characters is fine; one more byte is not. */
    char *s = malloc(256 + 1);
    assert_non_null(s);
    for (size_t i = 0; i < 255; i += 3)
        memcpy(s + i, "\xe2\x82\xac", 3); /* U+20AC x 85 */
    s[255] = '\0';
    assert_int_equal(tf_name_check(s, 0, NULL), TF_OK);
    s[255] = 'x';
    s[256] = '\0';
    assert_int_equal(tf_name_check(s, 0, NULL), TF_EINVAL);
    free(s);
}

static void test_name_unterminated_buffer_not_overread(void **state)
{
    (void)state;
    /* A buffer without a terminator, one byte longer than the limit: the
       check must stop there (ASan watches the byte after it). */
    static const size_t limits[] = {0, 1, 10, 255, 4096};
    for (size_t i = 0; i < ARRAY_LEN(limits); i++) {
        size_t limit = limits[i] ? limits[i] : 255;
        char *s = malloc(limit + 1);
        assert_non_null(s);
        memset(s, 'u', limit + 1);
        const char *why = NULL;
        assert_int_equal(tf_name_check(s, limits[i], &why), TF_EINVAL);
        check_why("unterminated", TF_EINVAL, why, WHY_LONG);
        free(s);
    }
}

static void test_name_huge_limit(void **state)
{
    (void)state;
    /* "No practical limit" must not wrap around into "empty". */
    const char *why = NULL;
    assert_int_equal(tf_name_check("abc", SIZE_MAX, &why), TF_OK);
    assert_string_equal(why, "");
    assert_int_equal(tf_name_check("a/b", SIZE_MAX, &why), TF_EINVAL);
    check_why("huge limit", TF_EINVAL, why, WHY_SLASH);
    assert_int_equal(tf_name_check("", SIZE_MAX, &why), TF_EINVAL);
    check_why("huge limit", TF_EINVAL, why, WHY_EMPTY);
    assert_int_equal(tf__name_check_bytes("abc", 3, SIZE_MAX, &why), TF_OK);
    assert_int_equal(tf__name_check_bytes("abc", 3, SIZE_MAX - 1, &why), TF_OK);
}

static void test_name_null(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(tf_name_check(NULL, 0, &why), TF_EINVAL);
    check_why("NULL name", TF_EINVAL, why, NULL);
    assert_int_equal(tf_name_check(NULL, 255, NULL), TF_EINVAL);

    why = NULL;
    assert_int_equal(tf__name_check_bytes(NULL, 0, 0, &why), TF_EINVAL);
    check_why("NULL bytes", TF_EINVAL, why, WHY_EMPTY);
}

/* UTF-8 by hand, independent of the code under test. */
static size_t encode_utf8(unsigned cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static void test_name_every_code_point(void **state)
{
    (void)state;
    /* Each code point alone as a name: valid unless it is a control
       character, a surrogate, '/', '.' (the name ".") or NUL. */
    unsigned accepted = 0;
    for (unsigned cp = 0; cp <= 0x10FFFF; cp++) {
        unsigned char buf[4];
        size_t n = encode_utf8(cp, buf);
        int want_ok = !(cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) ||
                        (cp >= 0xD800 && cp <= 0xDFFF) || cp == '/' || cp == '.');
        int rc = tf__name_check_bytes(buf, n, 0, NULL);
        if (rc != (want_ok ? TF_OK : TF_EINVAL)) {
            print_error("U+%04X gave %s\n", cp, tf_errname(rc));
            fail();
        }
        accepted += rc == TF_OK;
    }
    /* 0x110000 code points minus 65 controls, 2048 surrogates, '/' and '.'. */
    assert_int_equal(accepted, 0x110000 - 65 - 2048 - 2);

    /* Each byte that cannot start a sequence, alone. */
    for (unsigned b = 0x80; b <= 0xFF; b++) {
        unsigned char one = (unsigned char)b;
        if (tf__name_check_bytes(&one, 1, 0, NULL) != TF_EINVAL) {
            print_error("lone byte 0x%02X accepted\n", b);
            fail();
        }
    }
}

/* ---- tf_escape: a peer's text made safe to show -------------------------- */

typedef struct escape_case {
    const char *in;
    size_t len;
    int quoted;
    const char *want;
} escape_case;

static void test_name_escape_table(void **state)
{
    (void)state;
    static const escape_case escapes[] = {
        {S("plain text"), 0, "plain text"},
        {S("\x1b[31mred\x1b[0m"), 0, "\\x1b[31mred\\x1b[0m"},
        {S("one\ntcpfile-client: fake\r"), 0, "one\\x0atcpfile-client: fake\\x0d"},
        {S("a\0b"), 0, "a\\x00b"},
        {S("\x7f\x01\t"), 0, "\\x7f\\x01\\x09"},
        {S("\xc2\x9b" "2J"), 0, "\\xc2\\x9b2J"},           /* U+009B, CSI */
        {S("\xc2\xa0"), 0, "\xc2\xa0"},                    /* U+00A0 is printable */
        {S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), 0,
         "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},    /* UTF-8 kept */
        {S("\xff\xfe"), 0, "\\xff\\xfe"},                   /* not UTF-8 */
        {S("\xe2\x82"), 0, "\\xe2\\x82"},                   /* cut sequence */
        {S("\xed\xa0\x80"), 0, "\\xed\\xa0\\x80"},           /* a surrogate */
        {S("\xc0\xaf"), 0, "\\xc0\\xaf"},                   /* overlong '/' */
        {S("say \"hi\" \\"), 0, "say \"hi\" \\"},
        {S("say \"hi\" \\"), 1, "say \\\"hi\\\" \\\\"},
        {S(""), 0, ""},
    };
    char out[256];
    for (size_t i = 0; i < ARRAY_LEN(escapes); i++) {
        const escape_case *t = &escapes[i];
        memset(out, 'X', sizeof out);
        size_t n = tf_escape(out, sizeof out, t->in, t->len, t->quoted);
        if (strcmp(out, t->want) != 0 || n != strlen(t->want)) {
            print_error("case %zu: got \"%s\" (%zu), want \"%s\"\n", i, out, n, t->want);
            fail();
        }
    }
}

/* Whatever the bytes, no control byte comes out; a short buffer truncates
   between whole escapes and stays terminated. */
static void test_name_escape_every_byte(void **state)
{
    (void)state;
    char out[8];
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            unsigned char in[2] = {(unsigned char)a, (unsigned char)b};
            size_t n = tf_escape(out, sizeof out, in, 2, 1);
            assert_int_equal(n, strlen(out));
            for (size_t j = 0; j < n; j++)
                if ((unsigned char)out[j] < 0x20 || (unsigned char)out[j] == 0x7f) {
                    print_error("bytes %02x %02x gave control byte %02x\n", a, b,
                                (unsigned char)out[j]);
                    fail();
                }
        }
    }
    assert_int_equal(tf_escape(out, 6, S("ab\x1b" "cd"), 0), 2); /* "ab" + no room */
    assert_string_equal(out, "ab");
    assert_int_equal(tf_escape(out, 7, S("ab\x1b" "cd"), 0), 6);
    assert_string_equal(out, "ab\\x1b");
    assert_int_equal(tf_escape(out, 1, S("abc"), 0), 0);
    assert_string_equal(out, "");
    assert_int_equal(tf_escape(NULL, 0, S("abc"), 0), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_table),
        cmocka_unit_test(test_name_length_limits),
        cmocka_unit_test(test_name_unterminated_buffer_not_overread),
        cmocka_unit_test(test_name_huge_limit),
        cmocka_unit_test(test_name_null),
        cmocka_unit_test(test_name_every_code_point),
        cmocka_unit_test(test_name_escape_table),
        cmocka_unit_test(test_name_escape_every_byte),
    };
    return TU_RUN_GROUP("name", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
