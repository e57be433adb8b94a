/*
 * digest.h - the end-to-end checksum (XXH3-128) as a streaming state. Pure
 * computation: no sockets, no files.
 */
#ifndef TF_DIGEST_H
#define TF_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define TF_DIGEST_SIZE 16

typedef struct tf__digest {
    void *state; /* XXH3_state_t *, kept between uses; NULL until needed */
    int on;      /* 0: checksums are off (see tf__digest_begin) */
} tf__digest;

/* Starts a digest when on is non-zero. d must be zeroed, or a digest used
   before: its state is then reset rather than allocated again (a transfer
   costs no allocation). TF_ENOMEM. With on == 0, tf__digest_update is a
   no-op and tf__digest_end frees what an earlier use left, but
   tf__digest_final must not be called: it reads the state, which is then
   NULL or an earlier transfer's. Callers check tf__digest_on first. */
int tf__digest_begin(tf__digest *d, int on);
int tf__digest_on(const tf__digest *d);
void tf__digest_update(tf__digest *d, const void *data, size_t len);
/* The digest so far, in XXH3's canonical (big-endian) byte order. Only
   while tf__digest_on(d). */
void tf__digest_final(const tf__digest *d, uint8_t out[TF_DIGEST_SIZE]);
/* The digest of len bytes at data, as begin, update and final would give
   it, with no state. */
void tf__digest_once(const void *data, size_t len, uint8_t out[TF_DIGEST_SIZE]);
/* Frees the state; d is zeroed, ready for another begin. */
void tf__digest_end(tf__digest *d);

/* A running digest as bytes (at most TF_DIGEST_STATE_MAX), so that an
   upload cut off on one server can be hashed on by another (storage_s3.c
   keeps it beside the upload's parts, which S3 cannot read back): the
   length written, 0 when off or cap is short. restore makes d (zeroed or
   used before) that state again: TF_EINVAL when it comes from another
   build of xxhash, TF_ENOMEM. */
#define TF_DIGEST_STATE_MAX 1024
size_t tf__digest_save(const tf__digest *d, uint8_t *out, size_t cap);
int tf__digest_restore(tf__digest *d, const uint8_t *in, size_t len);

#endif /* TF_DIGEST_H */
