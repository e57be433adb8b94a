/*
 * digestcache.h - remembered whole-file digests.
 */
#ifndef TF_DIGESTCACHE_H
#define TF_DIGESTCACHE_H

#include <pthread.h>
#include <stdint.h>

#include "digest.h"
#include "rootfs.h"

/*
 * Remembered whole-file checksums, so that a get can send a file with
 * zero-copy sendfile, and resume at any offset, without hashing it again.
 * A server that may write keeps them beside the file (an extended
 * attribute, user.tcpfile.xxh3, tied to the file's inode, size and
 * modification time); a read-only one writes nothing under its root and
 * keeps them in memory instead (a tf__digest_cache, tied to the whole
 * identity, ctime included). Either is ignored once the file changes.
 */
#define TF_DIGEST_CACHE_SIZE 256
typedef struct tf__digest_memo {
    uint64_t id[TF_FS_ID_LEN];
    uint8_t digest[TF_DIGEST_SIZE];
    uint64_t used; /* for evicting the least recently used; 0: empty */
} tf__digest_memo;
typedef struct tf__digest_cache {
    pthread_mutex_t lock; /* the server's workers share it */
    uint64_t clock;
    tf__digest_memo memo[TF_DIGEST_CACHE_SIZE];
} tf__digest_cache;
void tf__digest_cache_init(tf__digest_cache *c);
void tf__digest_cache_destroy(tf__digest_cache *c);

/* Returns 1 and fills out when a digest is remembered for fd's identity id
   (as tf__fs_open_read or tf__fs_identity gives it): in mem when it is not
   NULL, or beside the file. */
int tf__fs_digest_load(int fd, const uint64_t id[TF_FS_ID_LEN], tf__digest_cache *mem,
                       uint8_t out[TF_DIGEST_SIZE]);
/* Remembers digest for fd (in mem when not NULL, else beside the file, best
   effort: a file system without user xattrs simply does not remember),
   only if fd's identity is still id (it was not changed while it was
   hashed) and its last modification is more than two seconds old: a change
   within the same clock tick would not show in the timestamps ("racy"
   timestamps), and the digest would be served for content it does not
   describe. */
void tf__fs_digest_store(int fd, const uint8_t digest[TF_DIGEST_SIZE],
                         const uint64_t id[TF_FS_ID_LEN], tf__digest_cache *mem);

#endif /* TF_DIGESTCACHE_H */
