/*
 * b64.h - base64 as the security modules print it: standard alphabet
 * without padding for fingerprints (as ssh prints "SHA256:..."), and the
 * URL-safe alphabet without padding for tokens and salts (no '/' or '+' to
 * quote in a shell or a file). Built on OpenSSL's EVP_EncodeBlock.
 */
#ifndef TF_B64_H
#define TF_B64_H

#include <stddef.h>

/* Characters tf__b64_encode writes for n bytes, without the NUL. */
#define TF__B64_LEN(n) (((n) * 4 + 2) / 3)

/* Encodes in[0..len) into out (NUL-terminated, no padding). url: '-' and
   '_' instead of '+' and '/'. Returns the characters written, or -1 when
   cap is below TF__B64_LEN(len) + 1. */
long tf__b64_encode(char *out, size_t cap, const void *in, size_t len, int url);

/* Decodes text[0..n) (either alphabet, with or without padding) into out.
   Returns the bytes written, or -1 when text is not base64 or out is too
   small. */
long tf__b64_decode(void *out, size_t cap, const char *text, size_t n);

#endif /* TF_B64_H */
