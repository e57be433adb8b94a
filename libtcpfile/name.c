/*
 * name.c - what a file name may be. Pure: no file system, no sockets. The
 * client checks before sending and the server checks again on arrival, so
 * both use this one function. And tf_escape, which makes text a peer
 * chose safe to show, using the same reading of UTF-8. And the paths of
 * the tree feature (tf__path_*), which are names joined by '/'.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one.
   Refuses overlong forms, surrogates and code points past U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s, size_t avail, unsigned *cp)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, min = 0x80, *cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, min = 0x800, *cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, min = 0x10000, *cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3F);
    }
    if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
        return 0;
    return n;
}

int tf__name_check_bytes(const void *name, size_t len, size_t max_len, const char **why)
{
    const unsigned char *s = name;
    const char *reason = NULL;
    if (max_len == 0)
        max_len = TF_DEFAULT_MAX_NAME;
    if (len == 0)
        reason = "the name is empty";
    else if (len > max_len)
        reason = "the name is longer than the limit";
    else if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        reason = "the name may not be \".\" or \"..\"";
    for (size_t i = 0; !reason && i < len;) {
        unsigned cp;
        size_t n = utf8_sequence(s + i, len - i, &cp);
        if (n == 0)
            reason = "the name is not valid UTF-8";
        else if (cp == '/')
            reason = "the name may not contain '/'";
        else if (cp == 0)
            reason = "the name may not contain a NUL byte";
        else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            reason = "the name may not contain control characters";
        i += n ? n : 1;
    }
    if (why)
        *why = reason ? reason : "";
    return reason ? TF_EINVAL : TF_OK;
}

int tf_name_check(const char *name, size_t max_len, const char **why)
{
    if (!name) {
        if (why)
            *why = "the name is missing";
        return TF_EINVAL;
    }
    /* Read at most one byte past the limit: a name longer than that fails
       anyway, and an unterminated buffer is not scanned for ever. */
    size_t limit = max_len ? max_len : TF_DEFAULT_MAX_NAME;
    size_t scan = limit < SIZE_MAX ? limit + 1 : limit; /* no wrap to 0 */
    return tf__name_check_bytes(name, strnlen(name, scan), max_len, why);
}

/* ---- paths ------------------------------------------------------------ */

void tf__path_iter_init(tf__path_iter *it, const void *path, size_t len)
{
    it->path = path;
    it->len = len;
    it->pos = len == 0 ? 1 : 0; /* the empty path has no component at all */
    it->index = 0;
}

int tf__path_iter_next(tf__path_iter *it, const char **comp, size_t *comp_len)
{
    if (it->pos > it->len)
        return 0;
    const char *start = it->path + it->pos;
    size_t left = it->len - it->pos;
    const char *slash = left ? memchr(start, '/', left) : NULL;
    size_t n = slash ? (size_t)(slash - start) : left;
    /* After the last component pos goes one past len, so a trailing '/'
       still yields its (empty) last component first. */
    it->pos += n + 1;
    it->index++;
    *comp = start;
    *comp_len = n;
    return 1;
}

int tf__path_iter_done(const tf__path_iter *it)
{
    return it->pos > it->len;
}

static int path_fail(char *why, size_t cap, int code, const char *fmt, ...) TF__PRINTF(4, 5);

static int path_fail(char *why, size_t cap, int code, const char *fmt, ...)
{
    if (why && cap) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(why, cap, fmt, ap);
        va_end(ap);
        if (n < 0)
            why[0] = '\0';
    }
    return code;
}

/* Names are compared byte for byte and never normalised (NFC "caf\xc3\xa9"
   and NFD "cafe\xcc\x81" are two different names), because the file
   systems below compare bytes: a server that folded them would serve a
   file under a name the directory does not hold, or confuse two files.
   Likewise only the byte '/' separates: U+2215 and U+FF0F are ordinary
   characters, and the overlong form of '/' is not UTF-8 at all. */
int tf__path_check_bytes(const void *path, size_t len, const tf__path_limits *lim,
                         char *why, size_t why_cap)
{
    const char *s = path;
    size_t max_name = lim && lim->max_name ? lim->max_name : TF_DEFAULT_MAX_NAME;
    size_t max_depth = lim && lim->max_depth ? lim->max_depth : TF_DEFAULT_MAX_DEPTH;
    size_t max_path = lim && lim->max_path ? lim->max_path : TF_DEFAULT_MAX_PATH;

    if (len == 0)
        return path_fail(why, why_cap, TF_EINVAL, "the path is empty");
    if (!s)
        return path_fail(why, why_cap, TF_EINVAL, "the path is missing");
    /* Whole-path limits first, so that the work is bounded by max_path
       whatever a peer sends. */
    if (len > max_path)
        return path_fail(why, why_cap, TF_EINVAL,
                         "the path is longer than the limit of %zu bytes", max_path);
    if (s[0] == '/')
        return path_fail(why, why_cap, TF_EINVAL,
                         "the path starts with '/' (paths are relative to the root)");
    if (s[len - 1] == '/')
        return path_fail(why, why_cap, TF_EINVAL, "the path ends with '/'");
    size_t depth = 1;
    for (const char *p = s, *end = s + len; (p = memchr(p, '/', (size_t)(end - p))); p++)
        depth++;
    if (depth > max_depth)
        return path_fail(why, why_cap, TF_EINVAL, "the path has more than %zu levels",
                         max_depth);

    /* Every component must be a valid name; only then is a reserved one
       reported, so that EACCES always means "well formed, but not yours". */
    size_t reserved = 0;
    tf__path_iter it;
    const char *c;
    size_t n;
    tf__path_iter_init(&it, s, len);
    while (tf__path_iter_next(&it, &c, &n)) {
        const char *w;
        if (n == 0)
            return path_fail(why, why_cap, TF_EINVAL, "component %zu is empty (\"//\")",
                             it.index);
        if (n > max_name)
            return path_fail(why, why_cap, TF_EINVAL,
                             "component %zu is longer than the limit of %zu bytes", it.index,
                             max_name);
        if (c[0] == '.' && (n == 1 || (n == 2 && c[1] == '.')))
            return path_fail(why, why_cap, TF_EINVAL, "component %zu is \"%.*s\"", it.index,
                             (int)n, c);
        if (tf__name_check_bytes(c, n, max_name, &w) != TF_OK)
            return path_fail(why, why_cap, TF_EINVAL, "component %zu: %s", it.index, w);
        if (!reserved && n == sizeof TF_TMP_DIR - 1 && memcmp(c, TF_TMP_DIR, n) == 0)
            reserved = it.index;
    }
    /* In any position: "a/.tcpfile-tmp/x" must never reach the staging
       area of a sub-directory either. */
    if (reserved)
        return path_fail(why, why_cap, TF_EACCES,
                         "component %zu is \"%s\", reserved for the server's uploads in "
                         "progress",
                         reserved, TF_TMP_DIR);
    if (why && why_cap) /* no formatting on success: every request checks a path */
        why[0] = '\0';
    return TF_OK;
}

size_t tf_escape(char *out, size_t out_len, const void *text, size_t len, int quoted)
{
    const unsigned char *s = text;
    size_t o = 0;
    if (!out || out_len == 0)
        return 0;
    for (size_t i = 0; i < len && s;) {
        unsigned cp = s[i];
        size_t n = s[i] < 0x80 ? 1 : utf8_sequence(s + i, len - i, &cp);
        /* What is shown as \xNN, byte by byte: C0 controls and DEL (ESC
           drives a terminal, a newline forges a line), C1 controls (U+009B
           is a CSI on some terminals), and bytes that are not UTF-8. */
        int hex = n == 0 || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
        int backslash = !hex && quoted && (cp == '"' || cp == '\\');
        size_t k = n ? n : 1;
        size_t need = hex ? 4 * k : backslash ? 2 : k;
        if (o + need >= out_len)
            break; /* truncated, never mid-escape or mid-character */
        if (hex) {
            for (size_t j = 0; j < k; j++)
                o += (size_t)snprintf(out + o, out_len - o, "\\x%02x", s[i + j]);
        } else if (backslash) {
            out[o++] = '\\';
            out[o++] = (char)s[i];
        } else {
            memcpy(out + o, s + i, k);
            o += k;
        }
        i += k;
    }
    out[o] = '\0';
    return o;
}
