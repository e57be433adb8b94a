/*
 * test_name.c - what a file name may be (tf_name_check, tf__name_check_bytes),
 * against the rule of docs/protocol.md: one path component of 1..max_name
 * bytes of valid UTF-8, not "." or "..", no '/', NUL or control character.
 * And what a path of the tree feature may be (tf__path_check_bytes, the
 * component iterator tf__path_iter_*): such names joined by single '/'.
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

/* ---- paths (issue 12: the tree feature) ------------------------------------ */

/* What a refused path's reason must mention. */
#define PWHY_EMPTY_PATH "the path is empty"
#define PWHY_ABS "starts with '/'"
#define PWHY_TRAIL "ends with '/'"
#define PWHY_DEEP "more than"
#define PWHY_LONG "the path is longer"

typedef struct path_case {
    const char *bytes;
    size_t len;
    tf__path_limits lim; /* zeros: the defaults, 255 / 64 / 4096 */
    int want;            /* TF_OK, TF_EINVAL or TF_EACCES */
    const char *why_has; /* what the reason must mention; NULL: anything */
} path_case;

#define P_OK(lit) {S(lit), {0, 0, 0}, TF_OK, NULL}
#define P_BAD(lit, why) {S(lit), {0, 0, 0}, TF_EINVAL, why}
#define P_RES(lit, why) {S(lit), {0, 0, 0}, TF_EACCES, why}

static const path_case path_cases[] = {
    /* good */
    P_OK("a"),
    P_OK("a/b"),
    P_OK("a/b/c.txt"),
    P_OK("dir.d/file.tar.gz"),
    P_OK(".hidden/.also"),
    P_OK("..../...x/x.."),
    P_OK("a b/ c /~/-rf"),
    P_OK("a\\..\\b"),                         /* a backslash separates nothing */
    P_OK("caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x98\x80"),
    P_OK("a\xe2\x88\x95..\xe2\x88\x95" "b"), /* U+2215 DIVISION SLASH: no separator */
    P_OK("a\xef\xbc\x8f..\xef\xbc\x8f" "b"), /* U+FF0F FULLWIDTH SOLIDUS: neither */
    P_OK(".tcpfile-tm/.tcpfile-tmpx/x.tcpfile-tmp/.TCPFILE-TMP"), /* near the reserved name */
    {S("abc/abcd"), {4, 0, 0}, TF_OK, NULL},  /* component limit exactly reached */
    {S("a/b/c"), {0, 3, 0}, TF_OK, NULL},     /* depth limit exactly reached */
    {S("a/b/c"), {0, 0, 5}, TF_OK, NULL},     /* length limit exactly reached */

    /* the hostile ones of the issue */
    P_BAD("a/../b", "component 2 is \"..\""),
    P_BAD("a//b", "component 2 is empty"),
    P_BAD("/etc/passwd", PWHY_ABS),
    P_BAD("a/./b", "component 2 is \".\""),
    P_BAD("./a", "component 1 is \".\""),
    P_BAD("a/", PWHY_TRAIL),
    P_BAD("..", "component 1 is \"..\""),
    P_BAD("../etc/passwd", "component 1 is \"..\""),
    P_BAD("a/b/..", "component 3 is \"..\""),
    P_BAD("a/b/.", "component 3 is \".\""),
    P_BAD("/", PWHY_ABS),
    P_BAD("//", PWHY_ABS),
    P_BAD("a///b", "component 2 is empty"),
    P_BAD("a/b//", PWHY_TRAIL),
    P_BAD("", PWHY_EMPTY_PATH),
    P_BAD("a/\xc0\xaf/b", "component 2: the name is not valid UTF-8"), /* overlong '/' */
    P_BAD("a/\xc0\xae\xc0\xae/b", "component 2: the name is not valid UTF-8"), /* overlong ".." */

    /* NUL, control characters and bad UTF-8 in a later component */
    P_BAD("a\0/b", "component 1: the name may not contain a NUL byte"),
    P_BAD("a/b\0c", "component 2: the name may not contain a NUL byte"),
    P_BAD("a/b/\0", "component 3: the name may not contain a NUL byte"),
    P_BAD("a/b\nc", "component 2: the name may not contain control characters"),
    P_BAD("a/b/c\x1b[2J", "component 3: the name may not contain control characters"),
    P_BAD("a/b/\x7f", "component 3: the name may not contain control characters"),
    P_BAD("a/b/x\xc2\x9b", "component 3: the name may not contain control characters"),
    P_BAD("a/b/\xff", "component 3: the name is not valid UTF-8"),
    P_BAD("a/b/caf\xc3", "component 3: the name is not valid UTF-8"), /* cut sequence */
    P_BAD("a/\xed\xa0\x80/c", "component 2: the name is not valid UTF-8"), /* surrogate */
    P_BAD("a/\xf4\x90\x80\x80", "component 2: the name is not valid UTF-8"),
    P_BAD("\xc3/\xa9", "component 1: the name is not valid UTF-8"), /* split by '/' */

    /* custom limits */
    {S("abc/abcde"), {4, 0, 0}, TF_EINVAL, "component 2 is longer than the limit of 4 bytes"},
    {S("a/b/c/d"), {0, 3, 0}, TF_EINVAL, "more than 3 levels"},
    {S("a/b/c"), {0, 0, 4}, TF_EINVAL, "longer than the limit of 4 bytes"},
    {S("ab"), {1, 0, 0}, TF_EINVAL, "component 1 is longer"},

    /* the reserved staging directory, in every position */
    P_RES(".tcpfile-tmp", "component 1 is \".tcpfile-tmp\", reserved"),
    P_RES(".tcpfile-tmp/x", "component 1 is \".tcpfile-tmp\", reserved"),
    P_RES("a/.tcpfile-tmp/x", "component 2 is \".tcpfile-tmp\", reserved"),
    P_RES("a/b/.tcpfile-tmp", "component 3 is \".tcpfile-tmp\", reserved"),
    P_RES("a/.tcpfile-tmp/.tcpfile-tmp", "component 2"),
    /* a malformed path is malformed first, wherever the reserved name is */
    P_BAD(".tcpfile-tmp/../x", "component 2 is \"..\""),
    P_BAD(".tcpfile-tmp/", PWHY_TRAIL),
};

/* The rule restated without the code under test's splitting: each
   component found by hand and judged by tf__name_check_bytes (the name
   rule, tested above), then the reserved name. */
static int path_reference(const char *p, size_t n, const tf__path_limits *lim)
{
    size_t max_name = lim->max_name ? lim->max_name : 255;
    size_t max_depth = lim->max_depth ? lim->max_depth : 64;
    size_t max_path = lim->max_path ? lim->max_path : 4096;
    if (n == 0 || n > max_path)
        return TF_EINVAL;
    size_t depth = 0, start = 0;
    int reserved = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        depth++;
        if (tf__name_check_bytes(p + start, i - start, max_name, NULL) != TF_OK)
            return TF_EINVAL;
        if (i - start == 12 && memcmp(p + start, ".tcpfile-tmp", 12) == 0)
            reserved = 1;
        start = i + 1;
    }
    if (depth > max_depth)
        return TF_EINVAL;
    return reserved ? TF_EACCES : TF_OK;
}

/* Checks one path from a heap block of exactly its length; returns rc. */
static int check_path_exact(const char *ctx, const char *bytes, size_t len,
                            const tf__path_limits *lim, int want, const char *why_has)
{
    char *exact = malloc(len ? len : 1);
    assert_non_null(exact);
    memcpy(exact, bytes, len);
    char why[TF__PATH_WHY_MAX];
    memset(why, 'X', sizeof why);
    int rc = tf__path_check_bytes(exact, len, lim, why, sizeof why);
    if (rc != want) {
        print_error("%s: gave %s (\"%s\"), expected %s\n", ctx, tf_errname(rc), why,
                    tf_errname(want));
        fail();
    }
    check_why(ctx, rc, why, why_has);
    assert_int_equal(tf__path_check_bytes(exact, len, lim, NULL, 0), want);
    /* A short buffer gets a cut, terminated reason. */
    char tiny[6];
    assert_int_equal(tf__path_check_bytes(exact, len, lim, tiny, sizeof tiny), want);
    assert_true(strlen(tiny) < sizeof tiny);
    free(exact);
    return rc;
}

/* A path of `depth` components of `comp` bytes each ('x', or `fill` for the
   component at `odd`, 1-based, when odd is not 0), in a block of exactly
   its length. */
static char *build_path(size_t depth, size_t comp, size_t odd, const char *fill,
                        size_t *len)
{
    size_t fill_len = fill ? strlen(fill) : 0;
    size_t n = depth * comp + (depth ? depth - 1 : 0) + (odd ? fill_len - comp : 0);
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    size_t o = 0;
    for (size_t i = 1; i <= depth; i++) {
        if (i > 1)
            p[o++] = '/';
        if (i == odd) {
            memcpy(p + o, fill, fill_len);
            o += fill_len;
        } else {
            memset(p + o, 'x', comp);
            o += comp;
        }
    }
    assert_int_equal(o, n);
    *len = n;
    return p;
}

/* A path of exactly n bytes: 254-byte components and a shorter last one
   (4,096 bytes: 17 components). */
static char *path_of_length(size_t n)
{
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 'y', n);
    for (size_t i = 254; i + 1 < n; i += 255)
        p[i] = '/';
    return p;
}

/* Every prefix of a good path is judged as the rule says, from a block of
   exactly its length; those that end with '/' (or are empty) are refused.
   Returns how many prefixes were refused. */
static size_t check_truncations(const char *ctx, const char *p, size_t n,
                                const tf__path_limits *lim)
{
    size_t refused = 0;
    for (size_t k = 0; k < n; k++) {
        char c[256]; /* ctx (at most 192) and the count */
        snprintf(c, sizeof c, "%s, cut to %zu bytes", ctx, k);
        int want = path_reference(p, k, lim);
        if (k == 0 || p[k - 1] == '/')
            assert_int_equal(want, TF_EINVAL); /* the reference itself agrees */
        int rc = check_path_exact(c, p, k, lim, want, NULL);
        refused += rc != TF_OK;
    }
    return refused;
}

static void describe_path(char *out, size_t cap, const path_case *c, size_t index)
{
    name_case nc = {c->bytes, c->len, c->lim.max_name, NULL};
    describe(out, cap, &nc, index);
}

static void test_name_path_table(void **state)
{
    (void)state;
    size_t good = 0, bad = 0, cut = 0;
    for (size_t i = 0; i < ARRAY_LEN(path_cases); i++) {
        const path_case *c = &path_cases[i];
        char ctx[192];
        describe_path(ctx, sizeof ctx, c, i);
        int rc = check_path_exact(ctx, c->bytes, c->len, &c->lim, c->want, c->why_has);
        assert_int_equal(path_reference(c->bytes, c->len, &c->lim), rc);
        if (rc == TF_OK) {
            good++;
            cut += check_truncations(ctx, c->bytes, c->len, &c->lim);
        } else {
            bad++;
        }
    }
    /* NULL limits are the defaults. */
    assert_int_equal(tf__path_check_bytes("a/b", 3, NULL, NULL, 0), TF_OK);
    assert_int_equal(tf__path_check_bytes("a/../b", 6, NULL, NULL, 0), TF_EINVAL);
    /* NULL bytes: refused, never read. */
    char why[TF__PATH_WHY_MAX];
    assert_int_equal(tf__path_check_bytes(NULL, 0, NULL, why, sizeof why), TF_EINVAL);
    check_why("NULL path", TF_EINVAL, why, PWHY_EMPTY_PATH);
    assert_int_equal(tf__path_check_bytes(NULL, 5, NULL, why, sizeof why), TF_EINVAL);
    check_why("NULL path", TF_EINVAL, why, "missing");
    print_message("%zu good and %zu bad paths; %zu truncations of good ones refused\n",
                  good, bad, cut);
    assert_true(cut > 0);
}

/* Depth, length and component size at and just past their limits, and
   the reserved name at each position of a deep path. */
static void test_name_path_limits(void **state)
{
    (void)state;
    static const tf__path_limits defaults = {0, 0, 0};
    static const struct {
        size_t depth, comp;
        tf__path_limits lim;
        int want;
        const char *why_has;
    } shapes[] = {
        {64, 1, {0, 0, 0}, TF_OK, NULL},
        {65, 1, {0, 0, 0}, TF_EINVAL, "the path has more than 64 levels"},
        {1000, 1, {0, 0, 0}, TF_EINVAL, "the path has more than 64 levels"},
        {1000, 1, {0, 1000, 0}, TF_OK, NULL},
        {1001, 1, {0, 1000, 0}, TF_EINVAL, "more than 1000 levels"},
        {2049, 1, {0, 4096, 0}, TF_EINVAL, "the path is longer than the limit of 4096 bytes"},
        {1, 255, {0, 0, 0}, TF_OK, NULL},
        {1, 256, {0, 0, 0}, TF_EINVAL, "component 1 is longer than the limit of 255 bytes"},
        {3, 255, {0, 0, 0}, TF_OK, NULL},
        {16, 255, {0, 0, 0}, TF_OK, NULL}, /* 4095 bytes */
        {17, 255, {0, 0, 0}, TF_EINVAL, PWHY_LONG},
        {2, 1000, {1000, 0, 0}, TF_OK, NULL},
        {2, 1001, {1000, 0, 0}, TF_EINVAL, "component 1 is longer than the limit of 1000"},
        {3, 3000, {4096, 0, 9010}, TF_OK, NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        char ctx[96];
        snprintf(ctx, sizeof ctx, "shape %zu: %zu levels of %zu bytes", i, shapes[i].depth,
                 shapes[i].comp);
        size_t n;
        char *p = build_path(shapes[i].depth, shapes[i].comp, 0, NULL, &n);
        check_path_exact(ctx, p, n, &shapes[i].lim, shapes[i].want, shapes[i].why_has);
        free(p);
    }

    /* A component of 256 bytes in a later position. */
    {
        char fat[257];
        memset(fat, 'f', 256);
        fat[256] = '\0';
        size_t n;
        char *p = build_path(5, 1, 4, fat, &n);
        check_path_exact("256-byte component 4", p, n, &defaults, TF_EINVAL,
                         "component 4 is longer than the limit of 255 bytes");
        free(p);
    }

    /* 4,096 bytes exactly, and 4,097. */
    char *p = path_of_length(4096);
    check_path_exact("4096 bytes", p, 4096, &defaults, TF_OK, NULL);
    free(p);
    p = path_of_length(4097);
    check_path_exact("4097 bytes", p, 4097, &defaults, TF_EINVAL,
                     "the path is longer than the limit of 4096 bytes");
    free(p);

    /* The reserved name at each of 64 positions; ".." at each position;
       a control character at each position. */
    static const struct {
        const char *fill;
        int want;
        const char *why_tail; /* after "component N" */
    } at[] = {
        {".tcpfile-tmp", TF_EACCES, " is \".tcpfile-tmp\", reserved"},
        {"..", TF_EINVAL, " is \"..\""},
        {".", TF_EINVAL, " is \".\""},
        {"", TF_EINVAL, NULL}, /* empty: "//", or a leading or trailing '/' */
        {"b\tc", TF_EINVAL, ": the name may not contain control characters"},
        {"\xe2\x82", TF_EINVAL, ": the name is not valid UTF-8"},
    };
    for (size_t k = 0; k < ARRAY_LEN(at); k++) {
        for (size_t pos = 1; pos <= 64; pos++) {
            char ctx[96], why_has[96];
            snprintf(ctx, sizeof ctx, "\"%s\" at %zu of 64", at[k].fill, pos);
            if (at[k].why_tail)
                snprintf(why_has, sizeof why_has, "component %zu%s", pos, at[k].why_tail);
            else
                snprintf(why_has, sizeof why_has, "%s",
                         pos == 1 ? PWHY_ABS : pos == 64 ? PWHY_TRAIL : "is empty");
            size_t n;
            char *q = build_path(64, 3, pos, at[k].fill, &n);
            check_path_exact(ctx, q, n, &defaults, at[k].want, why_has);
            /* One level too many: depth is refused before any component
               is looked at (only a leading '/' is reported before it). */
            free(q);
            q = build_path(65, 3, pos, at[k].fill, &n);
            check_path_exact(ctx, q, n, &defaults, TF_EINVAL,
                             pos == 1 && !at[k].fill[0] ? PWHY_ABS : "more than 64 levels");
            free(q);
        }
    }
}

/* The good paths of the limits, cut at every length: every prefix that
   breaks the rule is refused (and none that keeps it). */
static void test_name_path_truncations(void **state)
{
    (void)state;
    static const tf__path_limits defaults = {0, 0, 0};
    size_t n, refused = 0;
    char *p = build_path(64, 1, 0, NULL, &n);
    refused += check_truncations("64 levels", p, n, &defaults);
    free(p);
    p = path_of_length(4096);
    refused += check_truncations("4096 bytes", p, 4096, &defaults);
    free(p);
    p = build_path(3, 4, 2, "\xf0\x9f\x98\x80", &n); /* a 4-byte character, cut inside */
    size_t cut = check_truncations("emoji", p, n, &defaults);
    free(p);
    assert_int_equal(cut, 1 + 2 + 3); /* empty, the two '/', three cuts of U+1F600 */
    print_message("%zu prefixes refused\n", refused + cut);
}

/* A name with no '/' is judged by the path rule as by the name rule (the
   reserved name aside), so single-component names keep today's meaning. */
static void test_name_path_single_component_is_name(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const name_case *c = &cases[i];
        if (memchr(c->bytes, '/', c->len))
            continue;
        tf__path_limits lim = {c->max_len, 0, c->len > 4096 ? c->len : 0};
        char ctx[160];
        describe(ctx, sizeof ctx, c, i);
        int want = c->why_has ? TF_EINVAL : TF_OK;
        int rc = check_path_exact(ctx, c->bytes, c->len, &lim, want, NULL);
        assert_int_equal(rc, tf__name_check_bytes(c->bytes, c->len, c->max_len, NULL));
    }
    /* The reserved name is a valid name, refused as a path (EACCES, as a
       server refuses it today). */
    assert_int_equal(tf__name_check_bytes(S(".tcpfile-tmp"), 0, NULL), TF_OK);
    assert_int_equal(tf__path_check_bytes(S(".tcpfile-tmp"), NULL, NULL, 0), TF_EACCES);
}

/* Names are bytes: two spellings of one text under Unicode normalisation
   are both accepted and stay two different paths; nothing folds them. */
static void test_name_path_unicode_forms_distinct(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b; /* the same text, two normalisation forms */
    } pairs[] = {
        {"caf\xc3\xa9/x", "cafe\xcc\x81/x"},           /* é: NFC U+00E9, NFD e + U+0301 */
        {"d/\xc3\x85ngstr\xc3\xb6m", "d/A\xcc\x8a" "ngstro\xcc\x88m"}, /* Å ö */
        {"\xe2\x84\xab", "\xc3\x85"},                   /* U+212B ANGSTROM SIGN, U+00C5 */
        {"k/\xea\xb0\x80", "k/\xe1\x84\x80\xe1\x85\xa1"}, /* Hangul 가, and as jamo */
        {"\xef\xac\x81le", "file"},                      /* U+FB01 ligature (NFKC) */
    };
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        const char *forms[2] = {pairs[i].a, pairs[i].b};
        const char *comps[2][4];
        size_t lens[2][4], counts[2];
        for (int f = 0; f < 2; f++) {
            size_t n = strlen(forms[f]);
            check_path_exact(forms[f], forms[f], n, NULL, TF_OK, NULL);
            tf__path_iter it;
            tf__path_iter_init(&it, forms[f], n);
            counts[f] = 0;
            while (counts[f] < 4 &&
                   tf__path_iter_next(&it, &comps[f][counts[f]], &lens[f][counts[f]]))
                counts[f]++;
        }
        /* Same shape, and the differing component is handed on as it came:
           a backend that opens it gets the bytes, not a normal form. */
        assert_int_equal(counts[0], counts[1]);
        int differ = 0;
        for (size_t k = 0; k < counts[0]; k++)
            differ += lens[0][k] != lens[1][k] ||
                      memcmp(comps[0][k], comps[1][k], lens[0][k]) != 0;
        assert_int_equal(differ, 1);
        assert_true(strlen(pairs[i].a) != strlen(pairs[i].b) ||
                    memcmp(pairs[i].a, pairs[i].b, strlen(pairs[i].a)) != 0);
    }
}

static void test_name_path_iterator(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        size_t len;
        size_t count;
        const char *comps[5]; /* expected components */
    } walks[] = {
        {S(""), 0, {NULL}},
        {S("a"), 1, {"a"}},
        {S("a/b/c.txt"), 3, {"a", "b", "c.txt"}},
        {S("a//b"), 3, {"a", "", "b"}},
        {S("/a"), 2, {"", "a"}},
        {S("a/"), 2, {"a", ""}},
        {S("/"), 2, {"", ""}},
        {S("//"), 3, {"", "", ""}},
        {S("a\x01/b"), 2, {"a\x01", "b"}},
        {S("../x/."), 3, {"..", "x", "."}},
    };
    for (size_t i = 0; i < ARRAY_LEN(walks); i++) {
        /* From a block of exactly the path's length. */
        char *p = malloc(walks[i].len ? walks[i].len : 1);
        assert_non_null(p);
        memcpy(p, walks[i].path, walks[i].len);
        tf__path_iter it;
        tf__path_iter_init(&it, p, walks[i].len);
        const char *c;
        size_t n, k = 0;
        assert_int_equal(tf__path_iter_done(&it), walks[i].len == 0);
        while (tf__path_iter_next(&it, &c, &n)) {
            assert_true(k < walks[i].count);
            assert_int_equal(it.index, k + 1);
            const char *want = walks[i].comps[k];
            size_t want_len = strlen(want);
            assert_int_equal(n, want_len);
            assert_memory_equal(c, want, n);
            assert_true(c >= p && c + n <= p + walks[i].len);
            /* done() says whether this one was the leaf. */
            assert_int_equal(tf__path_iter_done(&it), k + 1 == walks[i].count);
            k++;
        }
        assert_int_equal(k, walks[i].count);
        assert_int_equal(tf__path_iter_next(&it, &c, &n), 0); /* and stays done */
        free(p);
    }
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
        cmocka_unit_test(test_name_path_table),
        cmocka_unit_test(test_name_path_limits),
        cmocka_unit_test(test_name_path_truncations),
        cmocka_unit_test(test_name_path_single_component_is_name),
        cmocka_unit_test(test_name_path_unicode_forms_distinct),
        cmocka_unit_test(test_name_path_iterator),
        cmocka_unit_test(test_name_escape_table),
        cmocka_unit_test(test_name_escape_every_byte),
    };
    return TU_RUN_GROUP("name", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
