/*
 * fuzz.h - what every harness shares. Each fuzz_<name>.c defines
 * LLVMFuzzerTestOneInput and is built twice: with libFuzzer (TF_BUILD_FUZZ,
 * fuzz/run.sh) and with replay.c as a plain program that runs the committed
 * corpus once (ctest, label fuzz).
 *
 * A harness checks more than "no crash": a decoded frame must re-encode to
 * the same bytes, and every shorter prefix of it must be "need more". A
 * broken property aborts, which libFuzzer reports like a crash.
 */
#ifndef TF_FUZZ_H
#define TF_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* A heap block holding exactly n bytes of src, so that AddressSanitizer
   catches a decoder reading past the length it was given. */
static inline uint8_t *fuzz_copy(const uint8_t *src, size_t n)
{
    uint8_t *p = malloc(n);
    if (!p && n == 0)
        p = malloc(1);
    FUZZ_CHECK(p != NULL);
    if (n)
        memcpy(p, src, n);
    return p;
}

/* A decoder under test, bound to its extra arguments by the harness. */
typedef long (*fuzz_decode_fn)(const uint8_t *buf, size_t len, void *ctx);

/* A frame that decodes to n bytes must decode to "need more" (0) from any
   shorter prefix: a receiver feeding bytes as they come must never see a
   whole frame early, nor a malformed one. Tries every prefix up to just
   past the fixed head, and a few longer ones, each from an exact copy. */
static inline void fuzz_check_prefixes(const uint8_t *frame, size_t n, size_t head,
                                       fuzz_decode_fn fn, void *ctx)
{
    for (size_t k = 0; k < n; k++) {
        if (k > head + 1 && k != n - 1 && k != head + (n - head) / 2)
            continue;
        uint8_t *p = fuzz_copy(frame, k);
        long r = fn(p, k, ctx);
        free(p);
        FUZZ_CHECK(r == 0);
    }
}

/* The first two input bytes as a limit (max_name, max_len), so that the
   fuzzer explores limits as well as frames. Consumes them. */
static inline size_t fuzz_take_u16(const uint8_t **data, size_t *size)
{
    if (*size < 2)
        return 0;
    size_t v = ((size_t)(*data)[0] << 8) | (*data)[1];
    *data += 2;
    *size -= 2;
    return v;
}

#endif /* TF_FUZZ_H */
