/*
 * fspath.h - every file-system access of the library. Server-side calls
 * work on a directory descriptor of the served root and take names that
 * tf__name_check_bytes has accepted (one component: no '/', not "..").
 * Client-side calls work on the caller's own paths.
 */
#ifndef TF_FSPATH_H
#define TF_FSPATH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "internal.h"

/* The hidden subdirectory of the root that holds uploads in progress. A
   directory is never listed nor served, so its files cannot be fetched. */
#define TF_TMP_DIR ".tcpfile-tmp"
#define TF_TMP_PLAIN_PREFIX "up-"
#define TF_TMP_RESUME_PREFIX "resume-"

/* A file's identity, the version of it a remembered digest is valid for:
   inode, size, mtime (s, ns), device, ctime (s, ns). */
#define TF_FS_ID_LEN 7

/* Opens root as a directory descriptor. TF_ENOENT, TF_EACCES, TF_EINVAL. */
int tf__root_open(const char *root, int *dirfd, tf__err *e);

/* Opens root/name for reading: regular files only, never through a
   symlink, never blocking on a FIFO. *size is the file's size; id, when not
   NULL, its identity (see tf__fs_identity), from the same fstat. */
int tf__fs_open_read(int rootfd, const char *name, int *fd, uint64_t *size,
                     uint64_t id[TF_FS_ID_LEN], tf__err *e);

/* Writes len bytes to fd; ENOSPC and friends become TF_ENOSPC / TF_EIO. */
int tf__fs_write_all(int fd, const void *buf, size_t len, tf__err *e);

/* Asks the kernel to start writing [off, off + len) of fd to disk without
   waiting for it (sync_file_range), so a later fsync has less to do. Best
   effort: nothing is reported. */
void tf__fs_start_writeback(int fd, uint64_t off, uint64_t len);

/* A file being written under a temporary name, published by rename. */
typedef struct tf__tmpfile {
    int dirfd;      /* where the temporary lives */
    int fd;         /* open for writing; -1 when closed */
    int direct;     /* 1: writing straight into a non-regular file */
    int owns_dirfd; /* dirfd was opened for this file and is closed with it */
    char name[64];  /* the temporary's name inside dirfd */
} tf__tmpfile;

/* Server side: a new temporary under root/TF_TMP_DIR. */
int tf__upload_begin(int rootfd, tf__tmpfile *t, tf__err *e);

/* Server side, resumable: opens (or creates) root/TF_TMP_DIR/<stem>, locked
   against a second connection (TF_EBUSY), positioned at its end; *have is
   what it already holds, at most size (a longer one is emptied). On the
   way it removes partials untouched for ttl_s seconds. With max_partials 0
   the upload gets a plain temporary instead and *resumable is 0: it is not
   to be kept when cut off. */
int tf__upload_begin_resumable(int rootfd, const char *stem, uint64_t size, int64_t ttl_s,
                               size_t max_partials, tf__tmpfile *t, uint64_t *have,
                               int *resumable, tf__err *e);

/* A resumable upload was cut off: keeps its partial for resuming if it
   can stay among max_partials, removing the least recently written others
   that no connection is using to make room; when the others are all in
   progress (or max_partials is 0) it is removed instead. Closes t. */
void tf__upload_keep(tf__tmpfile *t, int64_t ttl_s, size_t max_partials);

/* Removes leftovers in root/TF_TMP_DIR: every plain upload temporary (a
   crash's debris: no connection owns one at start-up) when all_plain is
   set, resumable ones untouched for ttl_s seconds, and the least recently
   written resumable ones beyond max_partials (never one in use). */
void tf__upload_sweep(int rootfd, int all_plain, int64_t ttl_s, size_t max_partials);
/* Whether an upload may be stored as name: TF_EEXIST if it exists and
   overwrite is 0, TF_EACCES if it exists and is not a regular file. */
int tf__fs_check_target(int rootfd, const char *name, int overwrite, tf__err *e);

/* fsyncs the data, renames it to root/name (refusing an existing name when
   overwrite is 0, and any name that is not a regular file), fsyncs root. On
   failure the temporary is removed. */
int tf__upload_commit(int rootfd, tf__tmpfile *t, const char *name, int overwrite,
                      tf__err *e);

/* Client side: prepares to write path. If path is an existing directory,
   the file goes to path/name; if it is an existing non-regular file (a
   device, a FIFO), it is opened for writing directly; otherwise a
   temporary is made beside it. */
int tf__local_begin(const char *path, const char *name, tf__tmpfile *t, char *final,
                    size_t final_len, tf__err *e);
/* Renames the temporary to final (no-op when direct). */
int tf__local_commit(tf__tmpfile *t, const char *final, tf__err *e);

/* Client side, resumable: like tf__local_begin, but the temporary has a
   fixed name beside the target (".<name>.tcpfile-part"), is reused if it
   exists, and *have says how many bytes it already holds. */
int tf__local_begin_resumable(const char *path, const char *name, tf__tmpfile *t,
                              char *final, size_t final_len, uint64_t *have, tf__err *e);

/* Empties an open temporary, to start again from byte 0. */
int tf__tmpfile_restart(tf__tmpfile *t, tf__err *e);

/* Closes and removes the temporary; safe to call twice or after commit. */
void tf__tmpfile_abort(tf__tmpfile *t);
/* Closes the temporary but keeps it on disk, to be resumed later. */
void tf__tmpfile_keep(tf__tmpfile *t);

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

/* What a remembered digest is tied to (see TF_FS_ID_LEN). */
int tf__fs_identity(int fd, uint64_t id[TF_FS_ID_LEN]);
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

/* Feeds bytes [from, from + len) of fd to d, reading through buf. TF_EIO
   when the file cannot be read or is shorter. */
int tf__fs_hash_range(int fd, uint64_t from, uint64_t len, tf__digest *d, uint8_t *buf,
                      size_t buf_len, tf__err *e);
/* The same from byte 0. */
int tf__fs_hash_prefix(int fd, uint64_t len, tf__digest *d, uint8_t *buf, size_t buf_len,
                       tf__err *e);

/* Opens a local file for upload. *size is its size when it is a regular
   file; anything else (a pipe, a terminal) is copied into an unnamed
   temporary first so that its size is known. */
int tf__local_open_read(const char *path, int *fd, uint64_t *size, tf__err *e);

/* Reads the root's regular files (no symlinks, no directories, no names
   that fail the name check or exceed max_name) into a listing sorted by
   name. More than max_entries gives TF_ETOOBIG. */
int tf__fs_scan(int rootfd, size_t max_entries, size_t max_name, tf_listing **out,
                tf__err *e);

#endif /* TF_FSPATH_H */
