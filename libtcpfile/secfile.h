/*
 * secfile.h - the small private files of the security modules (TLS key and
 * certificate, known_hosts, users): directories created 0700, files written
 * whole through a 0600 temporary renamed into place, read whole with a size
 * cap, and a lock file that serialises read-modify-write cycles between
 * processes. Plain paths of the caller's own machine, not the served root.
 */
#ifndef TF_SECFILE_H
#define TF_SECFILE_H

#include <stddef.h>

#include "internal.h"

/* Creates dir and its missing parents, each new one mode 0700. An existing
   dir is left as it is. TF_EINVAL (empty or too long), TF_EACCES, TF_EIO. */
int tf__secfile_mkdirs(const char *dir, tf__err *e);

/* Replaces path with data[0..len) atomically: a 0600 temporary beside it,
   written, fsynced, renamed over path, then the directory fsynced. A reader
   sees the old file or the new one, never a part. The parent directory must
   exist. TF_EINVAL, TF_EACCES, TF_ENOSPC, TF_EIO. */
int tf__secfile_write(const char *path, const void *data, size_t len, tf__err *e);

/* Reads path whole into a NUL-terminated heap block (*out, the caller's,
   freed with tf__secfile_free; *len without the NUL). TF_ENOENT when
   missing, TF_ETOOBIG over max bytes, TF_EACCES, TF_EIO, TF_ENOMEM. */
int tf__secfile_read(const char *path, size_t max, char **out, size_t *len, tf__err *e);

/* Zeroes then frees a block from tf__secfile_read (it may hold secrets). */
void tf__secfile_free(char *p, size_t len);

/* Takes an exclusive flock on "<path>.lock" (created 0600), waiting for
   another holder. *fd is released with tf__secfile_unlock. TF_EACCES,
   TF_EIO, TF_EINVAL. */
int tf__secfile_lock(const char *path, int *fd, tf__err *e);
void tf__secfile_unlock(int fd);

#endif /* TF_SECFILE_H */
