/*
 * fuzz_names.c - tf__name_check_bytes on arbitrary bytes, against a second,
 * independently written statement of the name rule in docs/protocol.md.
 * The first two input bytes are max_len (0 = the default, 255).
 *
 * The same bytes as a path of the tree feature (tf__path_check_bytes), with
 * max_len as the component limit, under the default depth and length limits
 * and under small ones derived from max_len; and the component iterator,
 * which must cut exactly where the checker does, from an exact copy (ASan:
 * neither reads past len).
 */
#include "fuzz.h"
#include "internal.h"

/* The rule, written from the specification rather than from name.c: UTF-8
   by its bit patterns, then the code point's ranges. */
static int reference_ok(const uint8_t *s, size_t len, size_t max_len)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (max_len == 0)
        max_len = 255;
    if (len == 0 || len > max_len)
        return 0;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return 0;
    for (size_t i = 0; i < len;) {
        uint8_t b = s[i];
        size_t n;
        uint32_t cp;
        if ((b & 0x80) == 0)
            n = 1, cp = b;
        else if ((b & 0xE0) == 0xC0)
            n = 2, cp = b & 0x1Fu;
        else if ((b & 0xF0) == 0xE0)
            n = 3, cp = b & 0x0Fu;
        else if ((b & 0xF8) == 0xF0)
            n = 4, cp = b & 0x07u;
        else
            return 0;
        if (len - i < n)
            return 0;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        if (cp == '/' || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return 0;
        i += n;
    }
    return 1;
}

/* The path rule of docs/protocol.md, split by hand: 0, TF_EINVAL, or
   TF_EACCES for a well-formed path with a ".tcpfile-tmp" component. */
static int reference_path(const uint8_t *s, size_t len, const tf__path_limits *lim)
{
    size_t max_name = lim->max_name ? lim->max_name : 255;
    size_t max_depth = lim->max_depth ? lim->max_depth : 64;
    size_t max_path = lim->max_path ? lim->max_path : 4096;
    if (len == 0 || len > max_path)
        return TF_EINVAL;
    size_t depth = 0, start = 0;
    int reserved = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        if (!reference_ok(s + start, i - start, max_name))
            return TF_EINVAL;
        reserved |= i - start == 12 && memcmp(s + start, ".tcpfile-tmp", 12) == 0;
        depth++;
        start = i + 1;
    }
    if (depth > max_depth)
        return TF_EINVAL;
    return reserved ? TF_EACCES : TF_OK;
}

static void check_path(const uint8_t *p, size_t size, const tf__path_limits *lim)
{
    char why[TF__PATH_WHY_MAX];
    int rc = tf__path_check_bytes(p, size, lim, why, sizeof why);
    FUZZ_CHECK(rc == reference_path(p, size, lim));
    FUZZ_CHECK((rc == TF_OK) == (why[0] == '\0'));
    FUZZ_CHECK(strlen(why) < sizeof why);
    FUZZ_CHECK(tf__path_check_bytes(p, size, lim, NULL, 0) == rc);

    /* The iterator cuts at every '/' and nowhere else: its components,
       joined again, are the path, each lies inside it, and on an accepted
       path each is a valid name and there are at most max_depth. */
    tf__path_iter it;
    tf__path_iter_init(&it, p, size);
    const char *c;
    size_t n, count = 0, at = 0, slashes = 0;
    for (size_t i = 0; i < size; i++)
        slashes += p[i] == '/';
    while (tf__path_iter_next(&it, &c, &n)) {
        FUZZ_CHECK(c == (const char *)p + at && at + n <= size);
        FUZZ_CHECK(memchr(c, '/', n) == NULL);
        FUZZ_CHECK(at + n == size || p[at + n] == '/');
        FUZZ_CHECK(tf__path_iter_done(&it) == (at + n == size));
        if (rc == TF_OK)
            FUZZ_CHECK(tf__name_check_bytes(c, n, lim->max_name, NULL) == TF_OK);
        count++;
        FUZZ_CHECK(it.index == count);
        at += n + 1;
    }
    FUZZ_CHECK(count == (size ? slashes + 1 : 0));
    FUZZ_CHECK(!tf__path_iter_next(&it, &c, &n));
    if (rc == TF_OK)
        FUZZ_CHECK(count <= (lim->max_depth ? lim->max_depth : 64));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_len = fuzz_take_u16(&data, &size);
    const char *why = NULL;
    int rc = tf__name_check_bytes(data, size, max_len, &why);
    FUZZ_CHECK(rc == TF_OK || rc == TF_EINVAL);
    FUZZ_CHECK(why != NULL && (rc == TF_OK) == (why[0] == '\0'));
    FUZZ_CHECK((rc == TF_OK) == reference_ok(data, size, max_len));
    FUZZ_CHECK(tf__name_check_bytes(data, size, max_len, NULL) == rc);

    /* The public, NUL-terminated form agrees whenever the bytes hold no
       NUL; with one, it sees the name cut there. */
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = '\0';
    size_t cut = strlen(s);
    int want = tf__name_check_bytes(data, cut, max_len, NULL);
    FUZZ_CHECK(tf_name_check(s, max_len, NULL) == want);
    if (cut == size)
        FUZZ_CHECK(want == rc);
    free(s);

    uint8_t *p = fuzz_copy(data, size);
    tf__path_limits lim = {max_len, 0, 0};
    check_path(p, size, &lim);
    lim.max_depth = 1 + max_len % 7;
    lim.max_path = 1 + max_len % 61;
    check_path(p, size, &lim);
    free(p);
    return 0;
}
