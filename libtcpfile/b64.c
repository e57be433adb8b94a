/*
 * b64.c - unpadded base64 over OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "b64.h"

long tf__b64_encode(char *out, size_t cap, const void *in, size_t len, int url)
{
    size_t need = TF__B64_LEN(len);
    if (cap < need + 1 || len > (size_t)1 << 28)
        return -1;
    /* EVP_EncodeBlock pads to a multiple of 4 and writes a NUL: staging it
       in a block of that size keeps out's capacity what the caller gave. */
    size_t full = (len + 2) / 3 * 4 + 1;
    unsigned char *tmp = malloc(full);
    if (!tmp)
        return -1;
    EVP_EncodeBlock(tmp, in, (int)len);
    for (size_t i = 0; i < need; i++) {
        char c = (char)tmp[i];
        if (url && c == '+')
            c = '-';
        else if (url && c == '/')
            c = '_';
        out[i] = c;
    }
    out[need] = '\0';
    OPENSSL_cleanse(tmp, full);
    free(tmp);
    return (long)need;
}

long tf__b64_decode(void *out, size_t cap, const char *text, size_t n)
{
    while (n > 0 && text[n - 1] == '=')
        n--;
    if (n % 4 == 1 || n > (size_t)1 << 28)
        return -1;
    size_t padded = (n + 3) / 4 * 4;
    size_t bytes = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
    if (bytes > cap)
        return -1;
    unsigned char *in = malloc(padded + 1);
    unsigned char *dec = malloc(padded / 4 * 3 + 1);
    long r = -1;
    if (!in || !dec)
        goto out;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        /* EVP_DecodeBlock skips leading and trailing blanks; we do not. */
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            goto out;
        in[i] = (unsigned char)c;
    }
    for (size_t i = n; i < padded; i++)
        in[i] = '=';
    if (EVP_DecodeBlock(dec, in, (int)padded) < 0)
        goto out;
    /* Unused low bits of the last character must be zero, so that each
       byte string has exactly one text (a fingerprint compares as text). */
    if (n % 4 != 0) {
        static const char alpha[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        int v = (int)(strchr(alpha, in[n - 1]) - alpha);
        if ((n % 4 == 2 && (v & 0x0f)) || (n % 4 == 3 && (v & 0x03)))
            goto out;
    }
    memcpy(out, dec, bytes);
    r = (long)bytes;
out:
    if (in)
        OPENSSL_cleanse(in, padded + 1);
    if (dec)
        OPENSSL_cleanse(dec, padded / 4 * 3 + 1);
    free(in);
    free(dec);
    return r;
}
