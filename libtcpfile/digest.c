/* digest.c - XXH3-128 from libxxhash, behind a small interface so that the
   rest of the library never sees xxhash's types. */
#include "digest.h"

/* The state's layout, for tf__digest_save / tf__digest_restore. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#ifdef TF_HAVE_XXH_DISPATCH
/* x86: the library's runtime dispatch picks AVX2 (or AVX-512) where the CPU
   has it, about twice the speed of the SSE2 code it is built with. The
   header maps XXH3_128bits_update to it. */
#include <xxh_x86dispatch.h>
#endif

#include <string.h>

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

void tf__digest_once(const void *data, size_t len, uint8_t out[TF_DIGEST_SIZE])
{
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits(data, len));
    memcpy(out, canon.digest, TF_DIGEST_SIZE);
}

void tf__digest_end(tf__digest *d)
{
    if (d->state)
        XXH3_freeState(d->state);
    d->state = NULL;
    d->on = 0;
}

/* ---- a state carried to another process (storage_s3.c) ---- */

/* "TFX3", xxhash's version and the state's size: a state is restored only
   by the same library build, which lays it out the same. */
#define SAVE_MAGIC 0x54465833u
#define SAVE_HEAD 12

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t tf__digest_save(const tf__digest *d, uint8_t *out, size_t cap)
{
    if (!d->on || cap < SAVE_HEAD + sizeof(XXH3_state_t))
        return 0;
    put32(out, SAVE_MAGIC);
    put32(out + 4, XXH_versionNumber());
    put32(out + 8, (uint32_t)sizeof(XXH3_state_t));
    memcpy(out + SAVE_HEAD, d->state, sizeof(XXH3_state_t));
    return SAVE_HEAD + sizeof(XXH3_state_t);
}

int tf__digest_restore(tf__digest *d, const uint8_t *in, size_t len)
{
    if (len != SAVE_HEAD + sizeof(XXH3_state_t) || get32(in) != SAVE_MAGIC ||
        get32(in + 4) != XXH_versionNumber() || get32(in + 8) != sizeof(XXH3_state_t))
        return TF_EINVAL;
    if (tf__digest_begin(d, 1) != TF_OK)
        return TF_ENOMEM;
    XXH3_state_t *st = d->state;
    /* The secret is the library's default, whose address is this
       process's: keep the fresh state's pointer. */
    const unsigned char *secret = st->extSecret;
    memcpy(st, in + SAVE_HEAD, sizeof *st);
    st->extSecret = secret;
    return TF_OK;
}
