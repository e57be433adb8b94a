/*
 * name.c - what a file name may be. Pure: no file system, no sockets. The
 * client checks before sending and the server checks again on arrival, so
 * both use this one function. And tf_escape, which makes text a peer
 * chose safe to show, using the same reading of UTF-8.
 */
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
