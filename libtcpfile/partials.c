/*
 * partials.c - the server's staging directory: uploads in progress under a
 * temporary name, resumable partial uploads kept for the next attempt and
 * evicted by age and count, and the commit that publishes an upload.
 */
#include "partials.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Opens root/TF_TMP_DIR, creating it on first use, and checks what was
 * opened: anyone who can write in the root can also create, or (in a root
 * without the sticky bit) swap in, a directory of that name. Only a
 * directory that is the server's own and closed to everyone else is used,
 * since one she can enter lets her read uploads in progress and replace a
 * temporary before it is renamed into place. The check is made on the
 * descriptor, which every later step goes through (openat, renameat from
 * it), so a swap after the check does not matter: the temporaries live in
 * the directory checked, whatever its name is by then.
 */
static int open_tmp_dir(int rootfd, int create, tf__err *e)
{
    struct stat st;
    if (create && mkdirat(rootfd, TF_TMP_DIR, 0700) != 0 && errno != EEXIST)
        return tf__fail_errno(e, tf__code_from_errno(errno), errno,
                              "cannot create the directory for uploads");
    int dirfd = tf__open_beneath(rootfd, TF_TMP_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (dirfd < 0 && (errno == ELOOP || errno == ENOTDIR))
        /* Never followed, and not a "no such file" either: say what is wrong. */
        return tf__fail(e, TF_EIO,
                        "the server cannot take uploads: \"%s\" in its directory is a "
                        "symbolic link or a file, not a directory",
                        TF_TMP_DIR);
    if (dirfd < 0)
        return tf__fail_errno(e, tf__code_from_errno(errno), errno,
                              "cannot open the directory for uploads");
    if (fstat(dirfd, &st) != 0) {
        int err = errno;
        close(dirfd);
        return tf__fail_errno(e, TF_EIO, err, "cannot stat the directory for uploads");
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        close(dirfd);
        return tf__fail(e, TF_EIO,
                        "the server cannot take uploads: \"%s\" in its directory belongs to "
                        "uid %lu, not to the server (uid %lu); remove it",
                        TF_TMP_DIR, (unsigned long)st.st_uid, (unsigned long)geteuid());
    }
    /* Ours but open to others (made by hand, or an old version's): close
       it before use. Nobody else could have put anything in it that we
       would trust: resumed bytes are checked against the client's digest. */
    if ((st.st_mode & 077) != 0 && fchmod(dirfd, 0700) != 0) {
        int err = errno;
        close(dirfd);
        return tf__fail_errno(e, TF_EIO, err,
                              "the server cannot take uploads: \"%s\" is open to other "
                              "users and cannot be made private",
                              TF_TMP_DIR);
    }
    return dirfd;
}

int tf__upload_tmpdir_open(int rootfd, tf__err *e)
{
    return open_tmp_dir(rootfd, 1, e);
}

int tf__upload_begin_in(int tmpdirfd, tf__tmpfile *t, tf__err *e)
{
    tf__tmpfile_init(t);
    int rc = tf__tmpfile_create(tmpdirfd, TF_TMP_PLAIN_PREFIX, SERVER_TMP_MODE, t, e);
    if (rc != TF_OK)
        t->dirfd = -1;
    return rc;
}

int tf__upload_begin(int rootfd, tf__tmpfile *t, tf__err *e)
{
    tf__tmpfile_init(t);
    int dirfd = open_tmp_dir(rootfd, 1, e);
    if (dirfd < 0)
        return dirfd;
    t->owns_dirfd = 1;
    int rc = tf__tmpfile_create(dirfd, TF_TMP_PLAIN_PREFIX, SERVER_TMP_MODE, t, e);
    if (rc != TF_OK) {
        close(dirfd);
        t->dirfd = -1;
    }
    return rc;
}
/* A resumable partial met by walk_tmp. */
typedef struct partial {
    struct timespec mtime;
    char name[64];
} partial;

/* One pass over root/TF_TMP_DIR (dirfd): removes every plain temporary when
   all_plain is set and resumable ones untouched for ttl_s seconds. When kept
   is not NULL, the other resumable ones, except skip, are appended to *kept
   (*n of them; free() it). -1: out of memory, the list is incomplete. */
static int walk_tmp(int dirfd, int all_plain, int64_t ttl_s, const char *skip, partial **kept,
                    size_t *n)
{
    int listfd = dup(dirfd);
    DIR *d = listfd >= 0 ? fdopendir(listfd) : NULL;
    if (!d) {
        if (listfd >= 0)
            close(listfd);
        return 0;
    }
    /* The dup shares its offset with dirfd, which an earlier walk may
       have left at the end. */
    rewinddir(d);
    time_t now = time(NULL);
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        int plain = strncmp(de->d_name, TF_TMP_PLAIN_PREFIX,
                            strlen(TF_TMP_PLAIN_PREFIX)) == 0;
        int resumable = strncmp(de->d_name, TF_TMP_RESUME_PREFIX,
                                strlen(TF_TMP_RESUME_PREFIX)) == 0;
        if (!plain && !resumable)
            continue;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if ((plain && all_plain) || (resumable && now - st.st_mtime > ttl_s)) {
            unlinkat(dirfd, de->d_name, 0);
            continue;
        }
        if (!resumable || !kept || (skip && strcmp(de->d_name, skip) == 0) ||
            strlen(de->d_name) >= sizeof kept[0]->name)
            continue; /* a longer name is none of ours */
        if (*n == cap) {
            partial *grown = realloc(*kept, (cap ? cap * 2 : 64) * sizeof *grown);
            if (!grown) {
                rc = -1;
                break;
            }
            *kept = grown;
            cap = cap ? cap * 2 : 64;
        }
        (*kept)[*n].mtime = st.st_mtim;
        memcpy((*kept)[*n].name, de->d_name, strlen(de->d_name) + 1);
        (*n)++;
    }
    closedir(d);
    return rc;
}

static int older_first(const void *a, const void *b)
{
    const struct timespec *x = &((const partial *)a)->mtime;
    const struct timespec *y = &((const partial *)b)->mtime;
    if (x->tv_sec != y->tv_sec)
        return x->tv_sec < y->tv_sec ? -1 : 1;
    return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

/* Removes the least recently written of the n partials until fewer than max
   are left, never one that a connection holds locked (its upload is in
   progress). Returns whether that was reached. */
static int make_room(int dirfd, partial *p, size_t n, size_t max)
{
    size_t left = n;
    if (left >= max && n > 1)
        qsort(p, n, sizeof *p, older_first);
    for (size_t i = 0; i < n && left >= max; i++) {
        int fd = tf__open_beneath(dirfd, p[i].name, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
        if (fd < 0) {
            left -= errno == ENOENT; /* committed meanwhile */
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            (unlinkat(dirfd, p[i].name, 0) == 0 || errno == ENOENT))
            left--;
        close(fd);
    }
    return left < max;
}

int tf__upload_begin_resumable(int rootfd, const char *stem, uint64_t size, int64_t ttl_s,
                               size_t max_partials, tf__tmpfile *t, uint64_t *have,
                               int *resumable, tf__err *e)
{
    tf__tmpfile_init(t);
    *have = 0;
    *resumable = 0;
    int dirfd = open_tmp_dir(rootfd, 1, e);
    if (dirfd < 0)
        return dirfd;
    t->dirfd = dirfd;
    t->owns_dirfd = 1;
    snprintf(t->name, sizeof t->name, "%s%s", TF_TMP_RESUME_PREFIX, stem);
    /* Taking up a partial and removing idle ones (here the expired, and
       in tf__upload_keep the least recently written) are one step each,
       under a lock on the directory: an idle partial that is being removed
       must not be taken up meanwhile. This open of the directory is the
       connection's own, so the lock orders the server's threads too. */
    while (flock(dirfd, LOCK_EX) != 0 && errno == EINTR)
        continue;
    /* Room is made only when a cut-off upload is kept (tf__upload_keep):
       one that completes, or that is cut off before its first byte, takes
       no older partial's place. With max_partials 0 nothing is kept. */
    *resumable = max_partials > 0;
    (void)walk_tmp(dirfd, 0, ttl_s, NULL, NULL, NULL);
    /* With no room at all: an upload like any other, not kept if it is
       cut off. */
    int rc = *resumable ? tf__tmpfile_open_resumable(dirfd, t, size, SERVER_TMP_MODE, have, e)
                        : tf__tmpfile_create(dirfd, TF_TMP_PLAIN_PREFIX, SERVER_TMP_MODE, t, e);
    flock(dirfd, LOCK_UN);
    if (rc != TF_OK) {
        /* Not ours to delete: it may belong to the other connection. */
        tf__tmpfile_keep(t);
    }
    return rc;
}

void tf__upload_keep(tf__tmpfile *t, int64_t ttl_s, size_t max_partials)
{
    int keep = 0;
    if (t->fd >= 0 && t->dirfd >= 0 && t->name[0] && max_partials > 0) {
        while (flock(t->dirfd, LOCK_EX) != 0 && errno == EINTR)
            continue;
        partial *kept = NULL;
        size_t n = 0;
        keep = walk_tmp(t->dirfd, 0, ttl_s, t->name, &kept, &n) == 0 &&
               make_room(t->dirfd, kept, n, max_partials);
        free(kept);
        flock(t->dirfd, LOCK_UN);
    }
    if (keep)
        tf__tmpfile_keep(t);
    else
        tf__tmpfile_abort(t);
}

void tf__upload_sweep(int rootfd, int all_plain, int64_t ttl_s, size_t max_partials)
{
    int dirfd = open_tmp_dir(rootfd, 0, NULL); /* no uploads yet: nothing to sweep */
    if (dirfd < 0)
        return;
    partial *kept = NULL;
    size_t n = 0;
    /* A cap lowered since the last run holds from the start, not only from
       the next keyed upload: at most max_partials stay (room for none more
       is needed here, hence + 1). */
    if (walk_tmp(dirfd, all_plain, ttl_s, NULL, &kept, &n) == 0)
        make_room(dirfd, kept, n, max_partials + 1);
    free(kept);
    close(dirfd);
}

/* rename that refuses to replace, where the kernel and file system allow. */
static int rename_noreplace(int olddir, const char *old, int newdir, const char *new_name)
{
    if (renameat2(olddir, old, newdir, new_name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* No RENAME_NOREPLACE here: link fails on an existing name, atomically. */
    if (linkat(olddir, old, newdir, new_name, 0) != 0)
        return -1;
    unlinkat(olddir, old, 0);
    return 0;
}

mode_t tf__publish_mode(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "re");
    if (f) {
        char line[128];
        unsigned m;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Umask: %o", &m) == 1) {
                mask = (mode_t)m & 0777;
                break;
            }
        fclose(f);
    }
    return 0666 & ~mask;
}

/* Under the commit lock: whether root/name is still the version a
   conditional put was checked against. */
static int still_expected(int rootfd, const char *name, const uint64_t *expect_id, tf__err *e)
{
    int fd;
    uint64_t size, id[TF_FS_ID_LEN];
    tf__err ignored = {{0}};
    if (tf__fs_open_read(rootfd, name, &fd, &size, id, &ignored) != TF_OK)
        return tf__fail(e, TF_ECONFLICT, "\"%s\" changed while it was uploaded (it is gone); "
                                         "not stored", name);
    close(fd);
    if (!tf__fs_ids_same(id, expect_id))
        return tf__fail(e, TF_ECONFLICT, "\"%s\" changed while it was uploaded; not stored",
                        name);
    return TF_OK;
}

int tf__upload_prepare(tf__tmpfile *t, mode_t mode, const char *name, tf__err *e)
{
    /* Written private (SERVER_TMP_MODE); published as any new file is. */
    if (fchmod(t->fd, mode) != 0)
        return tf__fail_fs(e, errno, "cannot set the mode of", name);
    return TF_OK;
}

int tf__upload_sync(tf__tmpfile *t, const char *name, tf__err *e)
{
    if (fsync(t->fd) != 0)
        return tf__fail_errno(e, tf__code_from_errno(errno) == TF_ENOSPC ? TF_ENOSPC : TF_EIO,
                              errno, "cannot flush \"%s\" to disk", name);
    return TF_OK;
}

int tf__upload_publish(int rootfd, tf__tmpfile *t, const char *name, int overwrite,
                       const uint64_t *expect_id, tf__err *e)
{
    int rc = tf__fs_check_target(rootfd, name, overwrite, e);
    if (rc == TF_OK && expect_id)
        rc = still_expected(rootfd, name, expect_id, e);
    if (rc != TF_OK)
        return rc;
    /* What is renamed is what we wrote: the staging directory is ours
       alone (open_tmp_dir), so this only states the promise. */
    struct stat mine, there;
    if (fstat(t->fd, &mine) != 0 ||
        fstatat(t->dirfd, t->name, &there, AT_SYMLINK_NOFOLLOW) != 0 ||
        mine.st_dev != there.st_dev || mine.st_ino != there.st_ino)
        return tf__fail(e, TF_EIO, "the temporary of \"%s\" was replaced; not stored", name);
    if (overwrite)
        tf__keep_mode(rootfd, name, t->fd);
    int r = overwrite ? renameat(t->dirfd, t->name, rootfd, name)
                      : rename_noreplace(t->dirfd, t->name, rootfd, name);
    if (r != 0)
        return errno == EEXIST ? tf__fail(e, TF_EEXIST, "\"%s\" already exists", name)
                               : tf__fail_fs(e, errno, "cannot store", name);
    t->name[0] = '\0'; /* published: nothing left to remove */
    return TF_OK;
}

int tf__upload_commit_locked(int rootfd, tf__tmpfile *t, const char *name, int overwrite,
                             mode_t mode, pthread_mutex_t *lock, const uint64_t *expect_id,
                             tf__err *e)
{
    int rc = tf__upload_prepare(t, mode, name, e);
    if (rc == TF_OK)
        rc = tf__upload_sync(t, name, e);
    if (rc == TF_OK) {
        if (lock)
            pthread_mutex_lock(lock);
        rc = tf__upload_publish(rootfd, t, name, overwrite, expect_id, e);
        if (lock)
            pthread_mutex_unlock(lock);
    }
    /* The rename is durable only once the directory itself is on disk. */
    if (rc == TF_OK && fsync(rootfd) != 0)
        rc = tf__fail_errno(e, TF_EIO, errno, "cannot flush the directory to disk");
    tf__tmpfile_abort(t);
    return rc;
}
