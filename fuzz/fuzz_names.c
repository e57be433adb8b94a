/*
 * fuzz_names.c - tf__name_check_bytes on arbitrary bytes, against a second,
 * independently written statement of the name rule in docs/protocol.md.
 * The first two input bytes are max_len (0 = the default, 255).
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
    return 0;
}
