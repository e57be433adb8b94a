/*
 * partials.h - the server's staging directory (root/TF_TMP_DIR): uploads
 * in progress, resumable partial uploads and their eviction, and the
 * commit that publishes an upload under its name.
 */
#ifndef TF_PARTIALS_H
#define TF_PARTIALS_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include "rootfs.h"

/* Server side: a new temporary under root/TF_TMP_DIR. */
int tf__upload_begin(int rootfd, tf__tmpfile *t, tf__err *e);
/* Opens root/TF_TMP_DIR, creating it, and checks it is the server's own
   and private: a descriptor to keep for tf__upload_begin_in, or a negative
   TF_E* code. */
int tf__upload_tmpdir_open(int rootfd, tf__err *e);
/* tf__upload_begin in the staging directory tmpdirfd (kept by the
   caller: t does not close it). */
int tf__upload_begin_in(int tmpdirfd, tf__tmpfile *t, tf__err *e);

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
/* The mode a published upload gets: what a file created by this process
   would have had (0666 and the umask), read from /proc without changing
   the umask (umask() would, for every thread at once). A storage reads it
   once, when it opens, and passes it to every commit. */
mode_t tf__publish_mode(void);
/* fsyncs the data, renames it to root/name with the given mode (refusing
   an existing name when overwrite is 0, and any name that is not a regular
   file), fsyncs root; on failure the temporary is removed. The check of
   the target and the rename are done holding lock (NULL: none), so that
   they are one step with respect to every other commit taking it; with
   expect_id (NULL: none), it publishes only if root/name is still that
   version (tf__fs_ids_same), else TF_ECONFLICT. The data's fsync stays
   outside the lock. */
int tf__upload_commit_locked(int rootfd, tf__tmpfile *t, const char *name, int overwrite,
                             mode_t mode, pthread_mutex_t *lock, const uint64_t *expect_id,
                             tf__err *e);

/* The commit in its three steps, for committing many uploads together
   (group commit: storage_local.c, l_commit_many): prepare gives the
   temporary its published mode (tf__publish_mode); sync makes its data durable (fsync; a
   group syncs its file system once instead); publish checks the target
   (and expect_id, as above) and renames the temporary to root/name, the
   caller holding the commit lock and making root durable afterwards. None
   of them closes t: tf__tmpfile_abort does, removing it unless published. */
int tf__upload_prepare(tf__tmpfile *t, mode_t mode, const char *name, tf__err *e);
int tf__upload_sync(tf__tmpfile *t, const char *name, tf__err *e);
int tf__upload_publish(int rootfd, tf__tmpfile *t, const char *name, int overwrite,
                       const uint64_t *expect_id, tf__err *e);

#endif /* TF_PARTIALS_H */
