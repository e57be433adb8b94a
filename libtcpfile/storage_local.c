/*
 * storage_local.c - the local directory as a storage backend: a directory
 * descriptor of the root, staging in root/TF_TMP_DIR (partials.c) or,
 * for an upload staged for its name, an unnamed file in its directory
 * (l_stage_named), digests beside the files or, read-only, in memory
 * (digestcache.c).
 */
#include "storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digestcache.h"
#include "partials.h"
#include "rootfs.h"

/* An upload's bytes are handed to the disk in steps of this size, so that
   the fsync before the reply has only the tail left to wait for. */
#define WRITEBACK_STEP ((uint64_t)8 << 20)

_Static_assert(TF_STORAGE_ID_LEN == TF_FS_ID_LEN, "a version is the file's identity");

typedef struct local {
    tf__storage base; /* first: a tf__storage * is a local * */
    int rootfd;
    tf__storage_local_config cfg;
    tf__digest_cache mem; /* used when read-only */
    /* Held across the target check and the rename of every commit, so that
       a conditional put's check and publishing are one step (PUTX). */
    pthread_mutex_t commit_lock;
    mode_t publish_mode; /* tf__publish_mode, read once at open */
    /* The staging directory, opened and checked once (tf__upload_tmpdir_open)
       rather than for every upload; -1 until the first. */
    int tmpfd;
    pthread_mutex_t tmp_lock;
    /* O_TMPFILE was refused here (a file system or kernel without it):
       every upload is staged in the staging directory. */
    atomic_int no_tmpfile;
} local;

struct tf__upload {
    tf__tmpfile tmp;
    uint64_t written;    /* bytes in the file */
    uint64_t flushed_to; /* writeback started up to here */
    int unnamed;         /* an O_TMPFILE, named at its commit (link_staged) */
};

struct tf__lister {
    DIR *d;
    int at_root; /* the staging directory is hidden there */
    tf__dirent batch[TF_STORAGE_LIST_BATCH];
};

static local *L(tf__storage *st)
{
    return (local *)st;
}

/* ---- reading ---------------------------------------------------------- */

static int l_open_read(tf__storage *st, const char *name, int *fd, uint64_t *size,
                       uint64_t id[TF_STORAGE_ID_LEN], tf__err *e)
{
    return tf__fs_open_read(L(st)->rootfd, name, fd, size, id, e);
}

static int l_read_cached(tf__storage *st, const char *name, void *buf, size_t cap, size_t *len,
                         uint64_t id[TF_STORAGE_ID_LEN])
{
    struct stat sb;
    ssize_t n = tf__read_beneath_cached(L(st)->rootfd, name, buf, cap, &sb);
    if (n < 0)
        return 0;
    *len = (size_t)n;
    tf__fs_identity_of(&sb, id);
    return 1;
}

static int l_version(tf__storage *st, const char *name, uint64_t id[TF_STORAGE_ID_LEN])
{
    struct stat sb;
    if (tf__stat_beneath_cached(L(st)->rootfd, name, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    tf__fs_identity_of(&sb, id);
    return 1;
}

static void l_close_read(tf__storage *st, int fd)
{
    (void)st;
    if (fd >= 0)
        close(fd);
}

static ssize_t l_read_at(tf__storage *st, int fd, void *buf, size_t len, uint64_t off)
{
    (void)st;
    return pread(fd, buf, len, (off_t)off);
}

static int l_hash_range(tf__storage *st, int fd, tf__upload *up, uint64_t from, uint64_t len,
                        tf__digest *d, uint8_t *buf, size_t buf_len, tf__err *e)
{
    (void)st;
    return tf__fs_hash_range(up ? up->tmp.fd : fd, from, len, d, buf, buf_len, e);
}

/* In memory when the server may not write under its root, else beside
   the files (digestcache.h). */
static tf__digest_cache *digest_memory(local *l)
{
    return l->cfg.read_only ? &l->mem : NULL;
}

static int l_digest_load(tf__storage *st, int fd, const uint64_t id[TF_STORAGE_ID_LEN],
                         uint8_t out[TF_DIGEST_SIZE])
{
    return tf__fs_digest_load(fd, id, digest_memory(L(st)), out);
}

static void l_digest_store(tf__storage *st, int fd, const uint8_t digest[TF_DIGEST_SIZE],
                           const uint64_t id[TF_STORAGE_ID_LEN])
{
    tf__fs_digest_store(fd, digest, id, digest_memory(L(st)));
}

/* ---- writing ---------------------------------------------------------- */

static int open_parent(local *l, const char *path, int *dirfd, const char **base, tf__err *e);
static int passes_link(int rootfd, const char *path, int err);
static int check_path(const char *path, tf__err *e);
static void close_parent(local *l, int dirfd);
static int fail_tree(tf__err *e, int err, const char *what, const char *path);
static int sync_dir(local *l, int dirfd, tf__err *e);
static void l_abort(tf__storage *st, tf__upload **up);

/* A path's directories are opened beneath the root (open_parent), so that
   a symbolic link on the way, or one swapped in for a directory while the
   upload ran, is refused rather than followed: only the last component is
   looked at (and replaced) relative to that directory. */
static int l_check_target(tf__storage *st, const char *name, int overwrite, tf__err *e)
{
    local *l = L(st);
    int dirfd;
    const char *base;
    int rc = open_parent(l, name, &dirfd, &base, e);
    if (rc != TF_OK)
        return rc;
    rc = tf__fs_check_target(dirfd, base, overwrite, e);
    close_parent(l, dirfd);
    return rc;
}

/* A descriptor of the staging directory, the caller's to close: a
   duplicate of the one opened and checked on first use, opened again when
   stale (the directory was removed: creating in it is ENOENT). Each upload
   holds its own duplicate, so that reopening never closes one in use. */
static int staging_dir(local *l, int stale, tf__err *e)
{
    pthread_mutex_lock(&l->tmp_lock);
    if (stale && l->tmpfd >= 0) {
        close(l->tmpfd);
        l->tmpfd = -1;
    }
    if (l->tmpfd < 0)
        l->tmpfd = tf__upload_tmpdir_open(l->rootfd, e);
    int fd = l->tmpfd;
    if (fd >= 0 && (fd = fcntl(l->tmpfd, F_DUPFD_CLOEXEC, 0)) < 0)
        fd = tf__fail_errno(e, TF_EIO, errno, "cannot duplicate the directory for uploads");
    pthread_mutex_unlock(&l->tmp_lock);
    return fd;
}

/* A new temporary in the staging directory, which it owns a descriptor of. */
static int stage_in(local *l, int stale, tf__tmpfile *t, tf__err *e)
{
    int dirfd = staging_dir(l, stale, e);
    if (dirfd < 0)
        return dirfd;
    int rc = tf__upload_begin_in(dirfd, t, e);
    if (rc != TF_OK) {
        close(dirfd);
        return rc;
    }
    t->owns_dirfd = 1;
    return TF_OK;
}

static int l_stage(tf__storage *st, tf__upload **out, tf__err *e)
{
    local *l = L(st);
    tf__upload *up = calloc(1, sizeof *up);
    *out = NULL;
    if (!up)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    int rc = stage_in(l, 0, &up->tmp, e);
    if (rc == TF_ENOENT) /* removed under us: open it anew, once */
        rc = stage_in(l, 1, &up->tmp, e);
    if (rc != TF_OK) {
        free(up);
        return rc;
    }
    *out = up;
    return TF_OK;
}

/* Staged where it will be published: an unnamed file (O_TMPFILE) in the
   name's directory, opened beneath the root. ext4 allocates a new inode
   in its directory's group, so that creating a tree spreads over its
   directories' groups as rsync's temporaries do, instead of every upload
   scanning the one staging directory's group (where a removed tree's
   inodes wait, "recently deleted", to be reused). Nothing has a name
   until the commit (publish_unnamed), and a crash leaves nothing behind.
   One openat2 of the directory itself, confined as open_parent's, makes
   it; with the mode it is published with, as no one else can open it.
   Without O_TMPFILE: stage. */
static int l_stage_named(tf__storage *st, const char *name, tf__upload **out, tf__err *e)
{
    local *l = L(st);
    *out = NULL;
    if (atomic_load_explicit(&l->no_tmpfile, memory_order_relaxed))
        return l_stage(st, out, e);
    int rc = check_path(name, e);
    if (rc != TF_OK)
        return rc;
    const char *slash = strrchr(name, '/');
    char parent[PATH_MAX] = ".";
    if (slash) {
        memcpy(parent, name, (size_t)(slash - name));
        parent[slash - name] = '\0';
    }
    int fd = tf__open_beneath(l->rootfd, parent, O_TMPFILE | O_RDWR | O_CLOEXEC, l->publish_mode);
    int err = errno;
    if (fd < 0 && (err == EOPNOTSUPP || err == EISDIR || err == EINVAL)) {
        /* EISDIR: a kernel before 3.11, which takes it for O_DIRECTORY */
        atomic_store_explicit(&l->no_tmpfile, 1, memory_order_relaxed);
        return l_stage(st, out, e);
    }
    if (fd < 0 && slash && passes_link(l->rootfd, parent, err))
        return tf__fail(e, TF_EACCES, "\"%s\" passes a symbolic link, which is not followed",
                        name);
    if (fd < 0)
        return fail_tree(e, err, "cannot open the directory of", name);
    tf__upload *up = calloc(1, sizeof *up);
    if (!up) {
        close(fd);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    tf__tmpfile_init(&up->tmp);
    up->tmp.fd = fd;
    up->unnamed = 1;
    *out = up;
    return TF_OK;
}

/* An unnamed upload linked into the staging directory under a temporary
   name, so that it is published (and its debris swept) as any other:
   renamed from there over its name (RENAME_NOREPLACE without overwrite).
   A name in the staging directory is a directory entry only: the inode
   stays where l_stage_named allocated it. */
static int link_in(local *l, int stale, tf__upload *up, tf__err *e)
{
    int dirfd = staging_dir(l, stale, e);
    if (dirfd < 0)
        return dirfd;
    int rc = tf__tmpfile_link(dirfd, TF_TMP_PLAIN_PREFIX, &up->tmp, e);
    if (rc != TF_OK) {
        close(dirfd);
        return rc;
    }
    up->tmp.owns_dirfd = 1;
    up->unnamed = 0;
    return TF_OK;
}

static int link_staged(local *l, tf__upload *up, tf__err *e)
{
    if (!up->unnamed)
        return TF_OK;
    int rc = link_in(l, 0, up, e);
    if (rc == TF_ENOENT) /* the staging directory removed under us */
        rc = link_in(l, 1, up, e);
    return rc;
}

static int l_stage_resumable(tf__storage *st, const char *stem, uint64_t size,
                             tf__upload **out, uint64_t *have, int *resumable, tf__err *e)
{
    local *l = L(st);
    tf__upload *up = calloc(1, sizeof *up);
    *out = NULL;
    *have = 0;
    *resumable = 0;
    if (!up)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    /* On failure the partial is closed and left alone: it may be another
       connection's. */
    int rc = tf__upload_begin_resumable(l->rootfd, stem, size, l->cfg.resume_ttl_s,
                                        l->cfg.max_partials, &up->tmp, have, resumable, e);
    if (rc != TF_OK) {
        free(up);
        return rc;
    }
    up->written = up->flushed_to = *have;
    *out = up;
    return TF_OK;
}

static int l_write(tf__storage *st, tf__upload *up, const void *p, size_t n, tf__err *e)
{
    (void)st;
    int rc = tf__fs_write_all(up->tmp.fd, p, n, e);
    if (rc != TF_OK)
        return rc;
    up->written += n;
    if (up->written - up->flushed_to >= WRITEBACK_STEP) {
        tf__fs_start_writeback(up->tmp.fd, up->flushed_to, up->written - up->flushed_to);
        up->flushed_to = up->written;
    }
    return TF_OK;
}

static int l_commit(tf__storage *st, tf__upload **up, const char *name, int overwrite,
                    tf__err *e)
{
    if (!*up)
        return tf__fail(e, TF_EINTERNAL, "no upload to commit");
    local *l = L(st);
    int dirfd;
    const char *base;
    /* Staged in root/TF_TMP_DIR, on the root's file system, and renamed
       into the path's directory, opened beneath the root; under the commit
       lock (conditional puts, l_commit_cond). */
    int rc = link_staged(l, *up, e);
    if (rc == TF_OK)
        rc = open_parent(l, name, &dirfd, &base, e);
    if (rc == TF_OK) {
        rc = tf__upload_commit_locked(dirfd, &(*up)->tmp, base, overwrite, l->publish_mode,
                                      &l->commit_lock, NULL, e);
        close_parent(l, dirfd);
        atomic_fetch_add(&l->base.syncs, 2); /* the data's and the directory's */
    } else {
        tf__tmpfile_abort(&(*up)->tmp);
    }
    free(*up);
    *up = NULL;
    return rc;
}

/* An upload's mtime, set before it is published (MTIME). */
static int set_upload_mtime(tf__upload *up, const tf__commit_cond *c, const char *name,
                            tf__err *e)
{
    struct timespec ts[2] = {{.tv_sec = (time_t)c->mtime_sec, .tv_nsec = c->mtime_nsec},
                             {.tv_sec = (time_t)c->mtime_sec, .tv_nsec = c->mtime_nsec}};
    if (futimens(up->tmp.fd, ts) != 0)
        return tf__fail_errno(e, errno == EINVAL || errno == EOVERFLOW ? TF_EINVAL : TF_EIO,
                              errno, "cannot set the time of \"%s\"", name);
    return TF_OK;
}

static int l_commit_cond(tf__storage *st, tf__upload **up, const char *name,
                         const tf__commit_cond *c, tf__err *e)
{
    if (!*up)
        return tf__fail(e, TF_EINTERNAL, "no upload to commit");
    local *l = L(st);
    int dirfd = -1;
    const char *base = name;
    int rc = TF_OK;
    if (c->set_mtime) /* before the rename, so the file appears with its time */
        rc = set_upload_mtime(*up, c, name, e);
    if (rc == TF_OK)
        rc = link_staged(l, *up, e);
    if (rc == TF_OK)
        rc = open_parent(l, name, &dirfd, &base, e);
    if (rc == TF_OK) {
        rc = tf__upload_commit_locked(dirfd, &(*up)->tmp, base, c->overwrite, l->publish_mode,
                                      &l->commit_lock, c->expect_id, e);
        close_parent(l, dirfd);
        atomic_fetch_add(&l->base.syncs, 2); /* the data's and the directory's */
    } else {
        tf__tmpfile_abort(&(*up)->tmp);
    }
    free(*up);
    *up = NULL;
    return rc;
}

/* Syncs the root's file system (every staged upload and every rename of
   the batch with it): one call for the whole group, where a file and a
   directory at a time would each wait for their own journal commit. */
static int sync_all(local *l, tf__err *e)
{
    atomic_fetch_add(&l->base.syncs, 1);
    if (syncfs(l->rootfd) != 0)
        return tf__fail_errno(e, tf__code_from_errno(errno) == TF_ENOSPC ? TF_ENOSPC : TF_EIO,
                              errno, "cannot flush the uploads to disk");
    return TF_OK;
}

/* Fails every item still live (dirfd set, rc TF_OK) with e's failure. */
static void fail_live(tf__commit_item *items, const int *dirfd, size_t n, int rc,
                      const tf__err *e)
{
    for (size_t i = 0; i < n; i++)
        if (dirfd[i] >= 0 && items[i].rc == TF_OK) {
            items[i].rc = rc;
            items[i].err = *e;
        }
}

/* Whether paths a and b name entries of the same directory. */
static int same_parent(const char *a, const char *b)
{
    const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');
    size_t la = sa ? (size_t)(sa - a) : 0, lb = sb ? (size_t)(sb - b) : 0;
    return !sa == !sb && la == lb && memcmp(a, b, la) == 0;
}

/* Publishes an unnamed upload as dirfd/base (under the commit lock). A
   new name, nothing there, is the upload linked straight to it: linkat
   never replaces, nor follows a link planted at the name, so there is
   nothing to check first, and no temporary name to rename. Something
   there (EEXIST): the way of a named upload, through the staging
   directory, which checks it and replaces it or not as c says. */
static int publish_unnamed(local *l, int dirfd, tf__upload *up, const char *base,
                           const tf__commit_cond *c, tf__err *e)
{
    if (tf__fs_link_fd(up->tmp.fd, dirfd, base) == 0)
        return TF_OK;
    if (errno != EEXIST)
        return tf__fail_fs(e, errno, "cannot store", base);
    int rc = link_staged(l, up, e);
    if (rc == TF_OK)
        rc = tf__upload_publish(dirfd, &up->tmp, base, c->overwrite, c->expect_id, e);
    return rc;
}

/* The group commit (storage.h): prepare each, make the data durable (a
   single upload: its fsync; more: one syncfs), publish each in order
   under the commit lock, make the renames durable (its directory's fsync;
   more: one syncfs). The directory descriptors stay open until then. */
static void l_commit_many(tf__storage *st, tf__commit_item *items, size_t n)
{
    local *l = L(st);
    int dirfd_small[64];
    int *dirfd = n <= 64 ? dirfd_small : malloc(n * sizeof *dirfd);
    size_t live = 0;
    if (!dirfd) {
        for (size_t i = 0; i < n; i++) {
            items[i].rc = tf__fail(&items[i].err, TF_ENOMEM, "out of memory");
            l_abort(st, &items[i].up);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        tf__commit_item *it = &items[i];
        const char *base;
        dirfd[i] = -1;
        tf__err_clear(&it->err);
        it->rc = it->up ? TF_OK : tf__fail(&it->err, TF_EINTERNAL, "no upload to commit");
        if (it->rc == TF_OK && it->cond.set_mtime)
            it->rc = set_upload_mtime(it->up, &it->cond, it->name, &it->err);
        /* An unnamed upload has its mode; it is linked at its publishing
           (publish_unnamed), unless IF_MATCH must look at the name first. */
        if (it->rc == TF_OK && it->up->unnamed && it->cond.expect_id)
            it->rc = link_staged(l, it->up, &it->err);
        else if (it->rc == TF_OK && !it->up->unnamed)
            it->rc = tf__upload_prepare(&it->up->tmp, l->publish_mode, it->name, &it->err);
        if (it->rc == TF_OK && i > 0 && dirfd[i - 1] >= 0 &&
            same_parent(items[i - 1].name, it->name))
            dirfd[i] = dirfd[i - 1]; /* a run into one directory opens it once */
        else if (it->rc == TF_OK)
            it->rc = open_parent(l, it->name, &dirfd[i], &base, &it->err);
        if (it->rc == TF_OK)
            live++;
        else
            dirfd[i] = -1;
    }
    /* The data first: a name must never show a version not yet on disk. */
    tf__err e = {{0}};
    int rc = TF_OK;
    if (live == 1) {
        for (size_t i = 0; i < n; i++)
            if (dirfd[i] >= 0 && items[i].rc == TF_OK) {
                atomic_fetch_add(&l->base.syncs, 1);
                rc = tf__upload_sync(&items[i].up->tmp, items[i].name, &e);
            }
    } else if (live > 1) {
        rc = sync_all(l, &e);
    }
    if (rc != TF_OK)
        fail_live(items, dirfd, n, rc, &e);
    size_t published = 0;
    int last_dir = -1;
    pthread_mutex_lock(&l->commit_lock);
    for (size_t i = 0; i < n; i++) {
        tf__commit_item *it = &items[i];
        if (dirfd[i] < 0 || it->rc != TF_OK)
            continue;
        const char *slash = strrchr(it->name, '/');
        const char *base = slash ? slash + 1 : it->name;
        it->rc = it->up->unnamed ? publish_unnamed(l, dirfd[i], it->up, base, &it->cond, &it->err)
                                 : tf__upload_publish(dirfd[i], &it->up->tmp, base,
                                                      it->cond.overwrite, it->cond.expect_id,
                                                      &it->err);
        if (it->rc == TF_OK) {
            published++;
            last_dir = dirfd[i];
        }
    }
    pthread_mutex_unlock(&l->commit_lock);
    /* Then the renames: acknowledged only once their directories are on
       disk. */
    rc = TF_OK;
    if (published == 1) {
        rc = sync_dir(l, last_dir, &e);
    } else if (published > 1) {
        rc = sync_all(l, &e);
    }
    if (rc != TF_OK)
        fail_live(items, dirfd, n, rc, &e);
    for (size_t i = 0; i < n; i++) {
        if (i + 1 == n || dirfd[i + 1] != dirfd[i]) /* the last of its run */
            close_parent(l, dirfd[i]);
        l_abort(st, &items[i].up); /* closes; removes what was not published */
    }
    if (dirfd != dirfd_small)
        free(dirfd);
}

static void l_abort(tf__storage *st, tf__upload **up)
{
    (void)st;
    if (!*up)
        return;
    tf__tmpfile_abort(&(*up)->tmp);
    free(*up);
    *up = NULL;
}

static void l_keep(tf__storage *st, tf__upload **up)
{
    local *l = L(st);
    if (!*up)
        return;
    tf__upload_keep(&(*up)->tmp, l->cfg.resume_ttl_s, l->cfg.max_partials);
    free(*up);
    *up = NULL;
}

/* ---- the tree --------------------------------------------------------- */

/* A path's form (tf__storage_check_path), shorter than PATH_MAX. */
static int check_path(const char *path, tf__err *e)
{
    return tf__storage_check_path(path, PATH_MAX - 1, e);
}

/* The tree's codes for a file-system errno: POSIX's distinctions
   (ENOTDIR, EISDIR, ENOTEMPTY) are kept, the rest as everywhere. The
   session says them differently to a client without TREE. */
static int tree_code(int err)
{
    switch (err) {
    case ENOTDIR:
        return TF_ENOTDIR;
    case EISDIR:
        return TF_EISDIR;
    case ENOTEMPTY:
        return TF_ENOTEMPTY;
    default:
        return tf__code_from_errno(err);
    }
}

static int fail_tree(tf__err *e, int err, const char *what, const char *path)
{
    return tf__fail_errno(e, tree_code(err), err, "%s \"%s\"", what, path);
}

/* Why opening path as a directory failed with errno err: a symbolic link
   as its last component shows as ENOTDIR (O_DIRECTORY is checked before
   O_NOFOLLOW), so look at what is there without following it. */
static int passes_link(int rootfd, const char *path, int err)
{
    if (err == ELOOP || err == EXDEV)
        return 1;
    if (err != ENOTDIR)
        return 0;
    struct stat s;
    int fd = tf__open_beneath(rootfd, path, O_PATH | O_CLOEXEC, 0);
    int link = fd >= 0 && fstat(fd, &s) == 0 && S_ISLNK(s.st_mode);
    if (fd >= 0)
        close(fd);
    return link;
}

/* Opens the directory that holds path's last component, beneath the root
   and through no symbolic link (O_RDONLY: it is fsynced after a change),
   and points *base at that component. *dirfd is the root itself, not to
   be closed, for a single component. */
static int open_parent(local *l, const char *path, int *dirfd, const char **base, tf__err *e)
{
    int rc = check_path(path, e);
    if (rc != TF_OK)
        return rc;
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *dirfd = l->rootfd;
        *base = path;
        return TF_OK;
    }
    char parent[PATH_MAX];
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = '\0';
    *dirfd = tf__open_beneath(l->rootfd, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (*dirfd < 0) {
        int err = errno;
        if (passes_link(l->rootfd, parent, err))
            return tf__fail(e, TF_EACCES, "\"%s\" passes a symbolic link, which is not followed",
                            path);
        return fail_tree(e, err, "cannot open the directory of", path);
    }
    *base = slash + 1;
    return TF_OK;
}

static void close_parent(local *l, int dirfd)
{
    if (dirfd >= 0 && dirfd != l->rootfd)
        close(dirfd);
}

static tf__ftype type_of(mode_t m)
{
    return S_ISREG(m) ? TF__FT_FILE : S_ISDIR(m) ? TF__FT_DIR : TF__FT_OTHER;
}

static void fill_stat(const struct stat *s, tf__fstat *out)
{
    out->type = type_of(s->st_mode);
    out->size = S_ISREG(s->st_mode) ? (uint64_t)s->st_size : 0;
    out->mtime = (int64_t)s->st_mtim.tv_sec;
    out->mtime_ns = (uint32_t)s->st_mtim.tv_nsec;
}

/* lstat of dirfd/base that refuses a symbolic link. */
static int stat_nolink(int dirfd, const char *base, const char *path, struct stat *s,
                       tf__err *e)
{
    if (fstatat(dirfd, base, s, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return tf__fail(e, TF_ENOENT, "no file named \"%s\"", path);
        return fail_tree(e, errno, "cannot stat", path);
    }
    if (S_ISLNK(s->st_mode))
        return tf__fail(e, TF_EACCES, "\"%s\" is a symbolic link, which is not served", path);
    return TF_OK;
}

/* remove and rename touch only regular files and directories: a symbolic
   link, FIFO, socket or device in the root is the operator's, never moved,
   replaced or removed through the protocol (docs/protocol.md 3a). */
static int file_or_dir(const struct stat *s, const char *path, tf__err *e)
{
    if (S_ISREG(s->st_mode) || S_ISDIR(s->st_mode))
        return TF_OK;
    if (S_ISLNK(s->st_mode))
        return tf__fail(e, TF_EACCES, "\"%s\" is a symbolic link, which is not served", path);
    return tf__fail(e, TF_EACCES, "\"%s\" is not a regular file or directory", path);
}

static int sync_dir(local *l, int dirfd, tf__err *e)
{
    atomic_fetch_add(&l->base.syncs, 1);
    if (fsync(dirfd) != 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot flush the directory to disk");
    return TF_OK;
}

static int l_stat(tf__storage *st, const char *path, tf__fstat *out, tf__err *e)
{
    local *l = L(st);
    int dirfd;
    const char *base;
    struct stat s;
    int rc = open_parent(l, path, &dirfd, &base, e);
    if (rc != TF_OK)
        return rc;
    rc = stat_nolink(dirfd, base, path, &s, e);
    if (rc == TF_OK)
        fill_stat(&s, out);
    close_parent(l, dirfd);
    return rc;
}

static int l_list_open(tf__storage *st, const char *dir, tf__lister **out, tf__err *e)
{
    local *l = L(st);
    int at_root = dir[0] == '\0';
    *out = NULL;
    int rc = at_root ? TF_OK : check_path(dir, e);
    if (rc != TF_OK)
        return rc;
    /* A fresh open, not dup(): a dup would share (and move) the read offset
       with every other thread listing the same directory. */
    int fd = tf__open_beneath(l->rootfd, at_root ? "." : dir,
                              O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        if (passes_link(l->rootfd, dir, err))
            return tf__fail(e, TF_EACCES, "\"%s\" passes a symbolic link, which is not followed",
                            dir);
        int code = at_root ? TF_EIO
                   : err == ENOENT ? TF_ENOENT
                   : err == ENOTDIR ? TF_ENOTDIR
                                    : TF_EIO;
        return tf__fail_errno(e, code, err, "cannot read the directory \"%s\"", dir);
    }
    tf__lister *li = malloc(sizeof *li);
    DIR *d = li ? fdopendir(fd) : NULL;
    if (!d) {
        int err = errno;
        close(fd);
        free(li);
        return li ? tf__fail_errno(e, TF_EIO, err, "cannot read the directory")
                  : tf__fail(e, TF_ENOMEM, "out of memory");
    }
    li->d = d;
    li->at_root = at_root;
    *out = li;
    return TF_OK;
}

static int l_list_next(tf__storage *st, tf__lister *li, const tf__dirent **batch, size_t *n,
                       tf__err *e)
{
    (void)st;
    size_t k = 0;
    struct dirent *de;
    *batch = li->batch;
    /* errno is reset before each readdir: only its own failure ends it. */
    while (k < TF_STORAGE_LIST_BATCH && (errno = 0, de = readdir(li->d)) != NULL) {
        struct stat s;
        size_t len = strlen(de->d_name);
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strcmp(de->d_name, TF_TMP_DIR) == 0)
            continue; /* reserved at any level, even if something planted it */
        if (len >= sizeof li->batch[0].name)
            continue;
        if (fstatat(dirfd(li->d), de->d_name, &s, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* gone meanwhile */
        fill_stat(&s, &li->batch[k].st);
        memcpy(li->batch[k].name, de->d_name, len + 1);
        k++;
    }
    *n = k;
    if (k == 0 && errno != 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot read the directory");
    return TF_OK;
}

static void l_list_close(tf__storage *st, tf__lister *li)
{
    (void)st;
    if (!li)
        return;
    closedir(li->d);
    free(li);
}

static int l_remove(tf__storage *st, const char *path, tf__err *e)
{
    local *l = L(st);
    int dirfd;
    const char *base;
    struct stat s;
    int rc = open_parent(l, path, &dirfd, &base, e);
    if (rc != TF_OK)
        return rc;
    rc = stat_nolink(dirfd, base, path, &s, e);
    if (rc == TF_OK)
        rc = file_or_dir(&s, path, e);
    if (rc == TF_OK && unlinkat(dirfd, base, S_ISDIR(s.st_mode) ? AT_REMOVEDIR : 0) != 0)
        rc = errno == ENOTEMPTY || errno == EEXIST
                 ? tf__fail(e, TF_ENOTEMPTY, "the directory \"%s\" is not empty", path)
                 : fail_tree(e, errno, "cannot remove", path);
    if (rc == TF_OK)
        rc = sync_dir(l, dirfd, e);
    close_parent(l, dirfd);
    return rc;
}

static int l_rename(tf__storage *st, const char *from, const char *to, unsigned flags,
                    tf__err *e)
{
    local *l = L(st);
    int fromfd = -1, tofd = -1;
    const char *from_base, *to_base;
    struct stat s;
    int rc = open_parent(l, from, &fromfd, &from_base, e);
    if (rc == TF_OK)
        rc = open_parent(l, to, &tofd, &to_base, e);
    if (rc == TF_OK)
        rc = stat_nolink(fromfd, from_base, from, &s, e);
    if (rc == TF_OK)
        rc = file_or_dir(&s, from, e);
    /* What would be replaced too (a program other than the server could
       still plant one between this check and the rename). */
    if (rc == TF_OK && fstatat(tofd, to_base, &s, AT_SYMLINK_NOFOLLOW) == 0)
        rc = file_or_dir(&s, to, e);
    if (rc == TF_OK &&
        renameat2(fromfd, from_base, tofd, to_base,
                  (flags & TF_STORAGE_NOREPLACE) ? RENAME_NOREPLACE : 0) != 0)
        rc = errno == EEXIST || (errno == ENOTEMPTY && (flags & TF_STORAGE_NOREPLACE))
                 ? tf__fail(e, TF_EEXIST, "\"%s\" already exists", to)
                 : errno == ENOTEMPTY
                 ? tf__fail(e, TF_ENOTEMPTY, "the directory \"%s\" is not empty", to)
                 : fail_tree(e, errno, "cannot rename", from);
    if (rc == TF_OK)
        rc = sync_dir(l, tofd, e);
    if (rc == TF_OK && fromfd != tofd)
        rc = sync_dir(l, fromfd, e);
    close_parent(l, fromfd);
    close_parent(l, tofd);
    return rc;
}

static int l_set_mtime(tf__storage *st, const char *path, int64_t sec, uint32_t nsec,
                       tf__err *e)
{
    local *l = L(st);
    int dirfd;
    const char *base;
    int rc = open_parent(l, path, &dirfd, &base, e);
    if (rc != TF_OK)
        return rc;
    struct timespec ts[2] = {{.tv_sec = (time_t)sec, .tv_nsec = nsec},
                             {.tv_sec = (time_t)sec, .tv_nsec = nsec}};
    if (utimensat(dirfd, base, ts, AT_SYMLINK_NOFOLLOW) != 0)
        rc = errno == EINVAL || errno == EOVERFLOW
                 ? tf__fail_errno(e, TF_EINVAL, errno, "cannot set the time of \"%s\"", path)
                 : tf__fail_fs(e, errno, "cannot set the time of", path);
    close_parent(l, dirfd);
    return rc;
}

static int l_mkdir(tf__storage *st, const char *path, tf__err *e)
{
    local *l = L(st);
    int dirfd;
    const char *base;
    int rc = open_parent(l, path, &dirfd, &base, e);
    if (rc != TF_OK)
        return rc;
    if (mkdirat(dirfd, base, 0777) != 0)
        rc = errno == EEXIST ? tf__fail(e, TF_EEXIST, "\"%s\" already exists", path)
                             : fail_tree(e, errno, "cannot create the directory", path);
    if (rc == TF_OK)
        rc = sync_dir(l, dirfd, e);
    close_parent(l, dirfd);
    return rc;
}

/* ---- views ------------------------------------------------------------ */

/* One component at a time: each open is of a single name beneath the
   directory before it, so no symbolic link is followed even where openat2
   is missing (O_NOFOLLOW then covers the only component there is). */
static int l_sub(tf__storage *st, const char *dir, int create, tf__storage **out, tf__err *e)
{
    local *l = L(st);
    *out = NULL;
    char comp[256];
    int cur = l->rootfd;
    int rc = TF_OK;
    const char *p = dir;
    while (rc == TF_OK && *p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len >= sizeof comp) {
            rc = tf__fail(e, TF_EINVAL, "bad directory \"%s\"", dir);
            break;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        p += len + (slash ? 1 : 0);
        int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
        int fd = tf__open_beneath(cur, comp, flags, 0);
        if (fd < 0 && errno == ENOENT && create) {
            /* Another login may create it at the same moment: EEXIST is fine. */
            if (mkdirat(cur, comp, 0700) != 0 && errno != EEXIST)
                rc = tf__fail_errno(e, tf__code_from_errno(errno), errno,
                                    "cannot create the directory \"%s\"", dir);
            else
                fd = tf__open_beneath(cur, comp, flags, 0);
        }
        if (rc == TF_OK && fd < 0) {
            int err = errno;
            if (err == ENOENT)
                rc = tf__fail(e, TF_ENOENT, "the directory \"%s\" does not exist", dir);
            else if (err == ELOOP || err == ENOTDIR || err == EXDEV)
                rc = tf__fail(e, TF_EACCES,
                              "\"%s\" is not a directory (or passes a symbolic link)", dir);
            else
                rc = tf__fail_errno(e, tf__code_from_errno(err), err,
                                    "cannot open the directory \"%s\"", dir);
        }
        if (cur != l->rootfd)
            close(cur);
        cur = rc == TF_OK ? fd : -1;
    }
    if (rc != TF_OK) {
        if (cur >= 0 && cur != l->rootfd)
            close(cur);
        return rc;
    }
    local *c = calloc(1, sizeof *c);
    if (!c) {
        if (cur != l->rootfd)
            close(cur);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    c->base = l->base;
    c->cfg = l->cfg;
    c->publish_mode = l->publish_mode;
    c->tmpfd = -1;
    pthread_mutex_init(&c->commit_lock, NULL);
    pthread_mutex_init(&c->tmp_lock, NULL);
    tf__digest_cache_init(&c->mem);
    /* "" is the whole root: a view of its own all the same, so that the
       caller closes what it was given whatever dir was. */
    c->rootfd = cur == l->rootfd ? fcntl(l->rootfd, F_DUPFD_CLOEXEC, 0) : cur;
    if (c->rootfd < 0) {
        int err = errno;
        free(c);
        return tf__fail_errno(e, TF_EIO, err, "cannot duplicate the root");
    }
    *out = &c->base;
    return TF_OK;
}

/* ---- upkeep ----------------------------------------------------------- */

static void l_sweep(tf__storage *st, int all_plain)
{
    local *l = L(st);
    tf__upload_sweep(l->rootfd, all_plain, l->cfg.resume_ttl_s, l->cfg.max_partials);
}

static void l_close(tf__storage *st)
{
    local *l = L(st);
    if (!l)
        return;
    if (l->rootfd >= 0)
        close(l->rootfd);
    if (l->tmpfd >= 0)
        close(l->tmpfd);
    tf__digest_cache_destroy(&l->mem);
    pthread_mutex_destroy(&l->commit_lock);
    pthread_mutex_destroy(&l->tmp_lock);
    free(l);
}

static const tf__storage_ops local_ops = {
    .name = "local",
    .open_read = l_open_read,
    .close_read = l_close_read,
    .read_cached = l_read_cached,
    .version = l_version,
    .read_at = l_read_at,
    .hash_range = l_hash_range,
    .digest_load = l_digest_load,
    .digest_store = l_digest_store,
    .check_target = l_check_target,
    .stage = l_stage,
    .stage_named = l_stage_named,
    .stage_resumable = l_stage_resumable,
    .write = l_write,
    .commit = l_commit,
    .commit_many = l_commit_many,
    .abort = l_abort,
    .keep = l_keep,
    .stat = l_stat,
    .list_open = l_list_open,
    .list_next = l_list_next,
    .list_close = l_list_close,
    .remove = l_remove,
    .rename = l_rename,
    .mkdir = l_mkdir,
    .commit_cond = l_commit_cond,
    .set_mtime = l_set_mtime,
    .sub = l_sub,
    .sweep = l_sweep,
    .close = l_close,
};

int tf__storage_local_open(tf__storage **out, const char *root,
                           const tf__storage_local_config *cfg, tf__err *e)
{
    *out = NULL;
    local *l = calloc(1, sizeof *l);
    if (!l)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    l->base.ops = &local_ops;
    l->base.reserved = TF_TMP_DIR;
    l->cfg = *cfg;
    tf__digest_cache_init(&l->mem);
    pthread_mutex_init(&l->commit_lock, NULL);
    pthread_mutex_init(&l->tmp_lock, NULL);
    l->tmpfd = -1;
    l->publish_mode = tf__publish_mode();
    int rc = tf__root_open(root, &l->rootfd, e);
    if (rc != TF_OK) {
        l->rootfd = -1;
        l_close(&l->base);
        return rc;
    }
    long fs_max = fpathconf(l->rootfd, _PC_NAME_MAX);
    l->base.name_max = fs_max > 0 ? (size_t)fs_max : 0;
    *out = &l->base;
    return TF_OK;
}
