/*
 * smallcache.h - small whole files kept in memory by one event loop, with
 * their digests, so that a repeated small get costs one stat instead of
 * open, fstat, read and close, and no hashing (issue 14).
 *
 * Each copy is tied to the version of the file it was read from (the
 * storage's id: inode, device, size, mtime and ctime to the nanosecond),
 * and every hit asks the storage for the name's version again (its
 * version call: one stat, confined as an open is). A file replaced by a
 * rename (a put, ours or another's) has another inode; one changed in
 * place, another mtime or, with its mtime put back, another ctime: either
 * is read afresh, never served stale. Only settled files are kept (no
 * change for TF_SMALL_CACHE_SETTLE_S seconds, as for remembered digests):
 * a change within the file system's timestamp tick would not show.
 *
 * One cache per loop, so no lock; its bytes (the files, their names and
 * the entries) stay under a bound, whatever the number of connections.
 */
#ifndef TF_SMALLCACHE_H
#define TF_SMALLCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "storage.h"

/* Files larger than this are never kept. */
#define TF_SMALL_CACHE_FILE_MAX ((size_t)16 << 10)
#define TF_SMALL_CACHE_SETTLE_S 2

typedef struct tf__small_cache tf__small_cache;

/* A cache of at most max_bytes. NULL when max_bytes is 0 (no cache) or
   without memory: tf__small_get then reads every time. */
tf__small_cache *tf__small_cache_new(size_t max_bytes);
void tf__small_cache_free(tf__small_cache *c);

/* The whole of st's name, at most cap bytes, into buf without blocking:
   the cache's copy when the name is still that version, else read by
   st's read_cached (and kept, when small and settled). 1 with *len and,
   when digest is not NULL, the bytes' digest in it; 0 when it cannot be
   done without the disk (the caller then opens the file on the disk
   pool). c may be NULL; st must have read_cached. */
int tf__small_get(tf__small_cache *c, tf__storage *st, const char *name, void *buf, size_t cap,
                  size_t *len, uint8_t digest[TF_DIGEST_SIZE]);

/* For the tests. */
typedef struct tf__small_cache_stats {
    uint64_t hits;    /* served from memory */
    uint64_t stale;   /* found, but the file had changed */
    size_t bytes;     /* held now, entries and names included */
    size_t entries;
} tf__small_cache_stats;
void tf__small_cache_stats_get(const tf__small_cache *c, tf__small_cache_stats *out);
/* Seconds a file must have been left alone to be kept (default
   TF_SMALL_CACHE_SETTLE_S). */
void tf__small_cache_set_settle(tf__small_cache *c, int64_t seconds);

#endif /* TF_SMALLCACHE_H */
