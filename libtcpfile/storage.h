/*
 * storage.h - the server's storage interface: everything a session does
 * with files goes through a tf__storage, a table of operations and the
 * backend's state, so that the session never asks which backend it has
 * (the shape of libgit2's git_odb_backend and rclone's fs.Fs). The local
 * directory (storage_local.c) is the one backend today.
 *
 * Names are validated by the caller (tf__name_check_bytes). Today they are
 * single components; the operations take them as paths ("a/b/c") so that
 * the tree issue needs no new interface: a backend resolves every
 * component beneath its root and refuses a symbolic link anywhere on the
 * way. Every call returns 0 or a negative TF_E* code with the detail in e.
 *
 * The session makes its calls from the server's disk pool (session_disk.c,
 * disk_call), never from a worker's event loop, except the few that never
 * block (read_cached) or that it keeps there on purpose (close_read,
 * digest_store, abort and keep at a request's end; a local file's reads
 * while it is sent). So a backend's calls may block, and run in many
 * threads at once.
 */
#ifndef TF_STORAGE_H
#define TF_STORAGE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "digest.h"
#include "internal.h"

/* A file's version, which a remembered digest is valid for (the local
   backend: inode, size, mtime, device, ctime). Compared whole. */
#define TF_STORAGE_ID_LEN 7

typedef struct tf__storage tf__storage;
/* An upload being staged: opaque, the backend's; freed by commit, abort
   or keep. */
typedef struct tf__upload tf__upload;
/* A listing in progress (list_open). */
typedef struct tf__lister tf__lister;

typedef enum tf__ftype { TF__FT_FILE = 1, TF__FT_DIR = 2, TF__FT_OTHER = 3 } tf__ftype;

/* What stat and list tell of an entry. */
typedef struct tf__fstat {
    tf__ftype type;
    uint64_t size;  /* files only */
    int64_t mtime;  /* seconds since the epoch */
    uint32_t mtime_ns; /* and nanoseconds (0 where the backend has none) */
} tf__fstat;

/* An entry of a listing: its name within the directory listed. */
typedef struct tf__dirent {
    tf__fstat st;
    char name[256]; /* NUL-terminated; the backend's longest name is less */
} tf__dirent;

/* Entries a list_next returns at most: a listing never holds more. */
#define TF_STORAGE_LIST_BATCH 64

/* What commit_cond checks and does beyond commit (PUTX). */
typedef struct tf__commit_cond {
    int overwrite;            /* 0: TF_EEXIST if name exists (IF_ABSENT too) */
    const uint64_t *expect_id; /* IF_MATCH: publish only if name is still this
                                  version (open_read's id), else TF_ECONFLICT */
    int set_mtime;            /* MTIME: give the file this time first */
    int64_t mtime_sec;
    uint32_t mtime_nsec;
} tf__commit_cond;

/* One upload of a group commit (commit_many): the upload, its name and
   conditions (as commit_cond's; a plain commit is overwrite alone), and
   what became of it. */
typedef struct tf__commit_item {
    tf__upload *up;        /* ended (NULL) by commit_many, whatever the result */
    const char *name;
    tf__commit_cond cond;
    int rc;                /* out: TF_OK when published durably */
    tf__err err;           /* out: why not */
} tf__commit_item;

/* rename's flags */
#define TF_STORAGE_NOREPLACE 1u /* fail with TF_EEXIST if `to` exists */

typedef struct tf__storage_ops {
    const char *name; /* "local" */

    /* ---- reading ---- */
    /* Opens name for reading: regular files only, never through a symbolic
       link, never blocking. *fd is a descriptor the caller may sendfile or
       pread from, and gives back with close_read; *size its size, id its
       version. A backend without descriptors (S3) sets read_handles in
       its tf__storage: *fd is then its own handle (0, 1, 2...), which the
       caller reads only through read_at and hash_range - never sendfile,
       pread nor close - and gives back with close_read. */
    int (*open_read)(tf__storage *, const char *name, int *fd, uint64_t *size,
                     uint64_t id[TF_STORAGE_ID_LEN], tf__err *e);
    void (*close_read)(tf__storage *, int fd);
    /* A whole small file (at most cap bytes) into buf, but only if no
       disk or network is needed for it (the local backend: every path
       component and byte already in memory): 1 and *len; 0 when it cannot
       be done so, for any reason - the caller then asks open_read, on the
       disk pool, which has the last word. Never blocks; may be NULL. */
    int (*read_cached)(tf__storage *, const char *name, void *buf, size_t cap, size_t *len,
                       uint64_t id[TF_STORAGE_ID_LEN]);
    /* name's version now (as open_read's id, of what read_cached read), by
       one stat under the same confinement as open_read: 1 for a regular
       file, 0 otherwise (none, a link on the way, not regular, would
       block). What the loop's small-file cache (smallcache.h) checks on
       every hit. Does not wait for the network; may be NULL. */
    int (*version)(tf__storage *, const char *name, uint64_t id[TF_STORAGE_ID_LEN]);
    /* Reads up to len bytes at off of an open_read file: bytes read, 0 at
       its end, -1 with errno. */
    ssize_t (*read_at)(tf__storage *, int fd, void *buf, size_t len, uint64_t off);
    /* Feeds bytes [from, from + len) of an open_read file (up == NULL) or
       of a staged upload to d, through buf. TF_EIO if shorter. A resumed
       upload whose bytes cannot be read back (S3's parts) is the prefix's
       digest state instead: set into d by the slice that starts at 0, the
       later slices of the same prefix adding nothing. */
    int (*hash_range)(tf__storage *, int fd, tf__upload *up, uint64_t from, uint64_t len,
                      tf__digest *d, uint8_t *buf, size_t buf_len, tf__err *e);
    /* Remembered digests of a version (open_read's id): 1 and out filled
       when one is known; store is best effort, and only for a version that
       has not changed since it was opened and has settled. */
    int (*digest_load)(tf__storage *, int fd, const uint64_t id[TF_STORAGE_ID_LEN],
                       uint8_t out[TF_DIGEST_SIZE]);
    void (*digest_store)(tf__storage *, int fd, const uint8_t digest[TF_DIGEST_SIZE],
                         const uint64_t id[TF_STORAGE_ID_LEN]);

    /* ---- writing: stage, write, then commit / abort / keep ---- */
    /* Whether an upload may be stored as name: TF_EEXIST if it exists and
       overwrite is 0, TF_EACCES if it is not a regular file. */
    int (*check_target)(tf__storage *, const char *name, int overwrite, tf__err *e);
    /* A new upload. */
    int (*stage)(tf__storage *, tf__upload **out, tf__err *e);
    /* The same for an upload to be committed as name, and only as name
       (another name at commit: TF_EINTERNAL), which lets a backend stage
       it in place (S3: a multipart upload of name itself, which completing
       publishes, with no copy; the local backend: an unnamed file in name's
       directory, which must exist). NULL: stage. */
    int (*stage_named)(tf__storage *, const char *name, tf__upload **out, tf__err *e);
    /* stage_named for an upload of exactly size bytes that is not to be
       resumed, which lets a backend send it while it comes (S3: one
       streaming PUT, its last byte held back until commit). Fewer or more
       bytes written fail the upload. NULL: stage_named. */
    int (*stage_sized)(tf__storage *, const char *name, uint64_t size, tf__upload **out,
                       tf__err *e);
    /* A resumable upload named by stem (the caller's digest of key, name and
       size): taken up where it was left, *have bytes already there, locked
       against a second connection (TF_EBUSY). *resumable 0: no room for
       partials, it is a plain upload (not kept when cut off). */
    int (*stage_resumable)(tf__storage *, const char *stem, uint64_t size, tf__upload **out,
                           uint64_t *have, int *resumable, tf__err *e);
    /* Appends n bytes (TF_ENOSPC, TF_EIO). */
    int (*write)(tf__storage *, tf__upload *, const void *p, size_t n, tf__err *e);
    /* Publishes the upload as name, durably; on failure it is removed.
       All three end the upload and set *up to NULL (NULL: no-op). */
    int (*commit)(tf__storage *, tf__upload **up, const char *name, int overwrite,
                  tf__err *e);
    /* Group commit: publishes n uploads as commit_cond would one after
       the other, with their durability shared. The local backend syncs
       the data of all (one syncfs, or one fsync for a single upload),
       then renames each in order under the commit lock, then syncs the
       directories once; so a name shows a whole version or none, and an
       item with rc TF_OK is on disk when this returns. Each item fails
       alone (a target check, a conflict) except a sync, which fails every
       item it covers (TF_EIO, TF_ENOSPC). NULL: tf__storage_commit_many
       commits the items one by one (the S3 backend, whose commit is one
       request each). */
    void (*commit_many)(tf__storage *, tf__commit_item *items, size_t n);
    void (*abort)(tf__storage *, tf__upload **up);
    /* Cut off: keeps a resumable upload's bytes for the next attempt if it
       has room among the partials, else removes it. */
    void (*keep)(tf__storage *, tf__upload **up);

    /* ---- the tree (issue 12): implemented and tested, no request uses
       them yet. Paths never leave the root nor pass a symbolic link; the
       backend's own staging is never seen nor touched. ---- */
    int (*stat)(tf__storage *, const char *path, tf__fstat *out, tf__err *e);
    /* A directory's entries ("" for the root) in batches of at most
       TF_STORAGE_LIST_BATCH, in no particular order: list_next points
       *batch at the next ones (valid until the next call), *n 0 at the
       end. Never "." nor "..". */
    int (*list_open)(tf__storage *, const char *dir, tf__lister **out, tf__err *e);
    int (*list_next)(tf__storage *, tf__lister *, const tf__dirent **batch, size_t *n,
                     tf__err *e);
    void (*list_close)(tf__storage *, tf__lister *);
    /* A file, or an empty directory (TF_ENOTEMPTY when not empty). Errors
       keep POSIX's distinctions: TF_ENOTDIR, TF_EISDIR, TF_ENOTEMPTY. */
    int (*remove)(tf__storage *, const char *path, tf__err *e);
    /* Atomic; flags TF_STORAGE_NOREPLACE. */
    int (*rename)(tf__storage *, const char *from, const char *to, unsigned flags,
                  tf__err *e);
    int (*mkdir)(tf__storage *, const char *path, tf__err *e);

    /* ---- put extensions (PUTX) ---- */
    /* As commit, with c's conditions. The check of expect_id and the
       publishing are one step with respect to every other commit and
       commit_cond of this storage (the local backend: a lock held across
       the comparison and the rename; plain commits take it too). */
    int (*commit_cond)(tf__storage *, tf__upload **up, const char *name,
                       const tf__commit_cond *c, tf__err *e);
    /* Sets a file's modification (and access) time, never through a
       symbolic link. TF_ENOENT, TF_EACCES, TF_EINVAL (a time the file
       system refuses). */
    int (*set_mtime)(tf__storage *, const char *path, int64_t sec, uint32_t nsec, tf__err *e);
    /* ---- views (issue 13: users confined to a sub-directory) ---- */
    /* A storage whose root is dir ("team/alice": components that pass the
       name rules, checked by the caller) beneath this one's, reached
       without a symbolic link anywhere on the way, with its own staging
       (its own partials) and nothing above it visible. create: missing
       components are made (mode 0700); else TF_ENOENT. Closed with
       (*child)->ops->close, independently of the parent; may run in any
       thread (a pool thread at login). TF_ENOENT, TF_EACCES (a component
       is a link or not a directory), TF_EIO, TF_ENOMEM. (S3: a key
       prefix.) */
    int (*sub)(tf__storage *, const char *dir, int create, tf__storage **child, tf__err *e);

    /* ---- upkeep ---- */
    /* Removes leftovers: every plain staged upload when all_plain (at start
       no connection owns one), expired and surplus partials. */
    void (*sweep)(tf__storage *, int all_plain);
    void (*close)(tf__storage *);
} tf__storage_ops;

struct tf__storage {
    const tf__storage_ops *ops;
    /* Longest name the backend can store (0: no limit of its own). */
    size_t name_max;
    /* A name the backend keeps for itself at the top, never served nor
       replaced (NULL: none). */
    const char *reserved;
    /* open_read hands out the backend's handles, not descriptors (0: the
       local backend's descriptors). */
    int read_handles;
    /* Every call may wait on the network: the session makes even its
       payload reads (read_at) on the disk pool, not only the calls that
       may wait on a disk (0: the local backend, whose reads the session
       makes inline or by sendfile, from the page cache mostly). */
    int network;
    /* Durability calls made (fsync, syncfs): counted by the local backend,
       read by the tests (tf__server_syncs). */
    atomic_ulong syncs;
};

/* What the local backend needs of the server's options. */
typedef struct tf__storage_local_config {
    int read_only;       /* write nothing under the root: digests in memory */
    int64_t resume_ttl_s;
    size_t max_partials;
} tf__storage_local_config;

/* The local directory root as a storage (storage_local.c). TF_ENOENT,
   TF_EACCES, TF_EINVAL, TF_ENOMEM. Closed with (*out)->ops->close. */
int tf__storage_local_open(tf__storage **out, const char *root,
                           const tf__storage_local_config *cfg, tf__err *e);

/* An S3 bucket, or a key prefix in it, as a storage (storage_s3.c, over
   s3.c): see that file for its layout and what is not atomic there. */
typedef struct tf__storage_s3_config {
    const char *endpoint; /* "http://127.0.0.1:7480" */
    const char *bucket;
    const char *prefix;   /* NULL or "": the whole bucket */
    const char *region;   /* NULL: "us-east-1" */
    const char *access_key, *secret_key; /* NULL: tf__s3_creds_load's */
    int64_t resume_ttl_s; /* sweep aborts resumable uploads older */
    /* sweep at start aborts plain uploads older (other servers over the
       bucket may be sending the younger); 0: an hour; < 0: every one */
    int64_t stale_plain_s;
    long timeout_s;       /* per request; 0: 60 */
    /* A multipart upload's part (every one but the last); 0:
       TF_S3_PART_SIZE, else at least S3's least, 5 MiB (the tests' are
       smaller than the default, to move less). */
    size_t part_size;
    /* An upload of known size above part_size and up to this is one
       streaming PUT, not multipart; 0 (and the most): S3's limit, 5 GiB. */
    uint64_t single_put_max;
    /* A view (sub) shares its parent's read-ahead budget; NULL: its own. */
    struct tf__ra_budget *shared_budget;
} tf__storage_s3_config;

/* TF_EINVAL, TF_ENOMEM, TF_EACCES (no credentials). No request is made:
   a store that is down shows at the first call. Closed with
   (*out)->ops->close. */
int tf__storage_s3_open(tf__storage **out, const tf__storage_s3_config *cfg, tf__err *e);

/* Checks a tree path's form at a backend's edge: 1 to max_len bytes,
   components separated by single '/', none empty, "." or "..", and the
   first not the staging directory (TF_TMP_DIR), which is never seen nor
   touched through the tree calls. TF_EINVAL, or TF_EACCES for the staging
   directory. Each backend passes its own length limit. */
int tf__storage_check_path(const char *path, size_t max_len, tf__err *e);

/* A put's PARENTS: makes each missing directory on the way to path's last
   component, as mkdir -p. One that exists must be a directory (never a
   link: the backend refuses those on the way): else TF_ENOTDIR. */
int tf__storage_make_parents(tf__storage *st, const char *path, tf__err *e);

/* A plain upload to be committed as name: stage_named where the backend
   has it (staged in place), else stage. */
int tf__storage_stage_for(tf__storage *st, const char *name, tf__upload **out, tf__err *e);

/* A plain upload of exactly size bytes to be committed as name:
   stage_sized where the backend has it, else tf__storage_stage_for. */
int tf__storage_stage_sized(tf__storage *st, const char *name, uint64_t size,
                            tf__upload **out, tf__err *e);

/* Commits items[0..n) through st's commit_many, or one by one with
   commit_cond (commit where there is none) on a backend without it. */
void tf__storage_commit_many(tf__storage *st, tf__commit_item *items, size_t n);

/* What the read-aheads of an S3 store's readers, and the upload parts it
   sends in the background, may hold at once, its views' included
   (storage_s3.c). */
#define TF_S3_READAHEAD_BUDGET ((size_t)64 << 20)
/* A multipart upload's part by default (every one but the last): 16 MiB,
   not 8, as radosgw's cost per part made 8 MiB parts the slowest put
   (bench/RESULTS.md, "S3 put"). Two in flight hold half the budget. */
#define TF_S3_PART_SIZE ((size_t)16 << 20)
/* Bytes of read-ahead the S3 store st and its views hold now (at most
   their shared budget): for tests. */
size_t tf__storage_s3_readahead_held(tf__storage *st);
/* The most parts of uploads to st sent at once so far (storage_s3.c sends
   up to 2 of an upload in the background, within that budget): for
   tests. */
size_t tf__storage_s3_parts_overlap(tf__storage *st);
/* Uploads to st sent as one streaming PUT so far (stage_sized): for
   tests. */
size_t tf__storage_s3_streams(tf__storage *st);

/* Whether the store answers for the bucket (one listing request): TF_OK,
   TF_EACCES (credentials refused), TF_ENOENT (no such bucket), TF_EIO
   (unreachable, failing), with the store's words. */
int tf__storage_s3_check(tf__storage *st, tf__err *e);
/* tf__storage_s3_open of "s3://BUCKET[/PREFIX]" with base's other settings
   (its bucket and prefix ignored), then tf__storage_s3_check: a server
   that starts serves a bucket it can reach. TF_EINVAL (no endpoint, a bad
   URL) and the codes of both. */
int tf__storage_s3_open_url(tf__storage **out, const char *url,
                            const tf__storage_s3_config *base, tf__err *e);

/* Builds the listing a list request sends from the root's paged listing
   (storage.c): regular files whose names pass the name check and fit
   max_name, sorted by name. More than max_entries: TF_ETOOBIG. */
int tf__storage_scan(tf__storage *st, size_t max_entries, size_t max_name, tf_listing **out,
                     tf__err *e);

#endif /* TF_STORAGE_H */
