/* digest.c - XXH3-128 from libxxhash, behind a small interface so that the
   rest of the library never sees xxhash's types. */
#include "digest.h"

#include <xxhash.h>
#ifdef TF_HAVE_XXH_DISPATCH
/* x86: the library's runtime dispatch picks AVX2 (or AVX-512) where the CPU
   has it, about twice the speed of the SSE2 code it is built with. The
   header maps XXH3_128bits_update to it. */
#include <xxh_x86dispatch.h>
#endif

#include "tcpfile.h"

int tf__digest_begin(tf__digest *d, int on)
{
    d->on = 0;
    if (!on)
        return TF_OK;
    if (!d->state && !(d->state = XXH3_createState()))
        return TF_ENOMEM;
    XXH3_128bits_reset(d->state);
    d->on = 1;
    return TF_OK;
}

int tf__digest_on(const tf__digest *d)
{
    return d->on;
}

void tf__digest_update(tf__digest *d, const void *data, size_t len)
{
    if (d->on && len)
        XXH3_128bits_update(d->state, data, len);
}

void tf__digest_final(const tf__digest *d, uint8_t out[TF_DIGEST_SIZE])
{
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(d->state));
    for (int i = 0; i < TF_DIGEST_SIZE; i++)
        out[i] = canon.digest[i];
}

void tf__digest_end(tf__digest *d)
{
    if (d->state)
        XXH3_freeState(d->state);
    d->state = NULL;
    d->on = 0;
}
