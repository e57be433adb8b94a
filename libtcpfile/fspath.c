/*
 * fspath.c - the file system: opening files under the served root, writing
 * through temporaries that are renamed into place, and scanning the root.
 */
#include "fspath.h"
#include "listing.h"

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

#define COPY_BUF ((size_t)128 << 10)

static int fail_fs(tf__err *e, int errnum, const char *what, const char *name)
{
    return tf__fail_errno(e, tf__code_from_errno(errnum), errnum, "%s \"%s\"", what, name);
}

/*
 * Opens name relative to dirfd, never leaving dirfd and never following a
 * symlink anywhere on the way: openat2 with RESOLVE_BENEATH where the kernel
 * has it (5.6+), else openat with O_NOFOLLOW, which is as strict here since
 * a validated name is a single component.
 */
static int open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
#ifdef SYS_openat2
    struct open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
        return (int)fd; /* EPERM: a seccomp filter that does not know openat2 */
#endif
    return openat(dirfd, name, flags | O_NOFOLLOW, mode);
}

int tf__root_open(const char *root, int *dirfd, tf__err *e)
{
    *dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0)
        return fail_fs(e, errno, "cannot open the directory", root);
    return TF_OK;
}

static void identity_of(const struct stat *st, uint64_t id[TF_FS_ID_LEN])
{
    id[0] = (uint64_t)st->st_ino;
    id[1] = (uint64_t)st->st_size;
    id[2] = (uint64_t)st->st_mtim.tv_sec;
    id[3] = (uint64_t)st->st_mtim.tv_nsec;
    id[4] = (uint64_t)st->st_dev;
    id[5] = (uint64_t)st->st_ctim.tv_sec;
    id[6] = (uint64_t)st->st_ctim.tv_nsec;
}

int tf__fs_open_read(int rootfd, const char *name, int *fd, uint64_t *size,
                     uint64_t id[TF_FS_ID_LEN], tf__err *e)
{
    struct stat st;
    /* O_NONBLOCK: a FIFO planted in the root must not hang the server;
       O_NOFOLLOW: a symlink, even one pointing inside the root, is refused. */
    *fd = open_beneath(rootfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
    if (*fd < 0) {
        if (errno == ELOOP)
            return tf__fail(e, TF_EACCES, "\"%s\" is a symbolic link, which is not served",
                            name);
        if (errno == ENOENT)
            return tf__fail(e, TF_ENOENT, "no file named \"%s\"", name);
        /* Opening a socket file, or a device without a driver, for reading
           fails with ENXIO / ENODEV: not a regular file either. */
        if (errno == ENXIO || errno == ENODEV)
            return tf__fail(e, TF_EACCES, "\"%s\" is not a regular file", name);
        return fail_fs(e, errno, "cannot open", name);
    }
    if (fstat(*fd, &st) != 0) {
        int err = errno;
        close(*fd);
        *fd = -1;
        return fail_fs(e, err, "cannot stat", name);
    }
    if (!S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return tf__fail(e, TF_EACCES, "\"%s\" is not a regular file", name);
    }
    *size = (uint64_t)st.st_size;
    if (id)
        identity_of(&st, id);
    return TF_OK;
}

void tf__fs_start_writeback(int fd, uint64_t off, uint64_t len)
{
    (void)sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

int tf__fs_write_all(int fd, const void *buf, size_t len, tf__err *e)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tf__fail_errno(e, tf__code_from_errno(errno) == TF_ENOSPC ? TF_ENOSPC
                                                                             : TF_EIO,
                                  errno, "writing the file failed");
        p += n;
        len -= (size_t)n;
    }
    return TF_OK;
}

/* Modes of new temporaries. The server's are private until published
   (publish_mode), so that even a staging directory that was briefly open
   to others (see open_tmp_dir) exposes nothing; the client's get the usual
   0666 and umask, being renamed into place as they are. */
#define SERVER_TMP_MODE 0600
#define CLIENT_TMP_MODE 0666

/* Creates an unused "<prefix><16 random hex digits>" in dirfd. */
static int create_temp(int dirfd, const char *prefix, mode_t mode, tf__tmpfile *t,
                       tf__err *e)
{
    t->dirfd = dirfd;
    t->direct = 0;
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = (uint64_t)tf__now_ms() * 2654435761u + (uint64_t)attempt;
        snprintf(t->name, sizeof t->name, "%s%016llx", prefix, (unsigned long long)r);
        t->fd = open_beneath(dirfd, t->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (t->fd >= 0)
            return TF_OK;
        if (errno != EEXIST)
            return tf__fail_errno(e, tf__code_from_errno(errno), errno,
                                  "cannot create a temporary file");
    }
    return tf__fail(e, TF_EIO, "cannot find an unused temporary name");
}

void tf__tmpfile_abort(tf__tmpfile *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (!t->direct && t->name[0] && t->dirfd >= 0)
        unlinkat(t->dirfd, t->name, 0);
    t->name[0] = '\0';
    if (t->dirfd >= 0 && t->dirfd != AT_FDCWD && t->owns_dirfd)
        close(t->dirfd);
    t->dirfd = -1;
}

void tf__tmpfile_keep(tf__tmpfile *t)
{
    t->name[0] = '\0'; /* nothing to remove */
    tf__tmpfile_abort(t);
}

int tf__tmpfile_restart(tf__tmpfile *t, tf__err *e)
{
    if (ftruncate(t->fd, 0) != 0 || lseek(t->fd, 0, SEEK_SET) != 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot empty the temporary file");
    return TF_OK;
}

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
    int dirfd = open_beneath(rootfd, TF_TMP_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
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

static void tmpfile_init(tf__tmpfile *t)
{
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->dirfd = -1;
}

int tf__upload_begin(int rootfd, tf__tmpfile *t, tf__err *e)
{
    tmpfile_init(t);
    int dirfd = open_tmp_dir(rootfd, 1, e);
    if (dirfd < 0)
        return dirfd;
    t->owns_dirfd = 1;
    int rc = create_temp(dirfd, TF_TMP_PLAIN_PREFIX, SERVER_TMP_MODE, t, e);
    if (rc != TF_OK) {
        close(dirfd);
        t->dirfd = -1;
    }
    return rc;
}

/* Opens (creating) dirfd/name for a resumable temporary, locks it, and
   positions it at its end; *have is its size. With SERVER_TMP_MODE, a file
   there that is not our own (planted while the directory was open to
   others, or linked from elsewhere) or that others could write is
   replaced by a new one: her inode, renamed into place, would stay hers to
   rewrite. One that others could only read is made private. */
static int open_resumable(int dirfd, tf__tmpfile *t, uint64_t size, mode_t mode,
                          uint64_t *have, tf__err *e)
{
    struct stat st;
    t->fd = open_beneath(dirfd, t->name, O_RDWR | O_CREAT | O_CLOEXEC, mode);
    if (t->fd >= 0 && mode == SERVER_TMP_MODE && fstat(t->fd, &st) == 0 &&
        (st.st_uid != geteuid() || st.st_nlink != 1 || (st.st_mode & 022) != 0)) {
        close(t->fd);
        t->fd = -1;
        if (unlinkat(dirfd, t->name, 0) == 0 || errno == ENOENT)
            t->fd = open_beneath(dirfd, t->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        else
            errno = EACCES;
    }
    if (t->fd < 0)
        return tf__fail_errno(e, tf__code_from_errno(errno), errno,
                              "cannot open the partial file");
    if (mode == SERVER_TMP_MODE)
        (void)fchmod(t->fd, SERVER_TMP_MODE);
    /* Two connections continuing one upload would interleave their bytes. */
    if (flock(t->fd, LOCK_EX | LOCK_NB) != 0)
        return tf__fail(e, TF_EBUSY, "this transfer is in progress on another connection");
    if (fstat(t->fd, &st) != 0 || !S_ISREG(st.st_mode))
        return tf__fail(e, TF_EIO, "the partial file is unusable");
    *have = (uint64_t)st.st_size;
    if (*have > size) {
        int rc = tf__tmpfile_restart(t, e);
        if (rc != TF_OK)
            return rc;
        *have = 0;
    }
    if (lseek(t->fd, (off_t)*have, SEEK_SET) < 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot seek in the partial file");
    return TF_OK;
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
        int fd = open_beneath(dirfd, p[i].name, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
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
    tmpfile_init(t);
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
    int rc = *resumable ? open_resumable(dirfd, t, size, SERVER_TMP_MODE, have, e)
                        : create_temp(dirfd, TF_TMP_PLAIN_PREFIX, SERVER_TMP_MODE, t, e);
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

int tf__fs_check_target(int rootfd, const char *name, int overwrite, tf__err *e)
{
    struct stat st;
    if (fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENAMETOOLONG ? fail_fs(e, errno, "cannot store", name)
                                     : TF_OK; /* nothing there (yet) */
    if (!S_ISREG(st.st_mode))
        return tf__fail(e, TF_EACCES, "\"%s\" exists and is not a regular file", name);
    if (!overwrite)
        return tf__fail(e, TF_EEXIST, "\"%s\" exists and the server does not overwrite",
                        name);
    return TF_OK;
}

/* Gives the temporary fd the mode, and the owner where allowed, of the
   regular file dirfd/name it is about to replace: it was created with the
   umask's mode, and a rename must not widen a 600 file to 644 (nor narrow
   a 640 one). Owner first: fchown may clear set-id bits. Best effort: a
   non-root process cannot give a file away, and then keeps its own.
   fchown only when the owner differs: a sandbox (the systemd unit's
   SystemCallFilter) may forbid it, and the usual case needs none. */
static void keep_mode(int dirfd, const char *name, int fd)
{
    struct stat st, mine;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        fstat(fd, &mine) != 0)
        return;
    if ((st.st_uid != mine.st_uid || st.st_gid != mine.st_gid) &&
        fchown(fd, st.st_uid, st.st_gid) != 0) {
        /* EPERM: the file becomes ours, its mode still as before */
    }
    if ((st.st_mode & 07777) != (mine.st_mode & 07777))
        (void)fchmod(fd, st.st_mode & 07777);
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

/* The mode a published upload gets: what a file created by this process
   would have had (0666 and the umask), read without changing the umask,
   which umask() would do for every thread at once. */
static mode_t publish_mode(void)
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

int tf__upload_commit(int rootfd, tf__tmpfile *t, const char *name, int overwrite,
                      tf__err *e)
{
    int rc = TF_OK;
    /* Written private (SERVER_TMP_MODE); published as any new file is. */
    if (fchmod(t->fd, publish_mode()) != 0) {
        rc = fail_fs(e, errno, "cannot set the mode of", name);
        goto out;
    }
    if (fsync(t->fd) != 0) {
        rc = tf__fail_errno(e, tf__code_from_errno(errno) == TF_ENOSPC ? TF_ENOSPC : TF_EIO,
                            errno, "cannot flush \"%s\" to disk", name);
        goto out;
    }
    rc = tf__fs_check_target(rootfd, name, overwrite, e);
    if (rc != TF_OK)
        goto out;
    /* What is renamed is what we wrote: the staging directory is ours
       alone (open_tmp_dir), so this only states the promise. */
    struct stat mine, there;
    if (fstat(t->fd, &mine) != 0 ||
        fstatat(t->dirfd, t->name, &there, AT_SYMLINK_NOFOLLOW) != 0 ||
        mine.st_dev != there.st_dev || mine.st_ino != there.st_ino) {
        rc = tf__fail(e, TF_EIO, "the temporary of \"%s\" was replaced; not stored", name);
        goto out;
    }
    if (overwrite)
        keep_mode(rootfd, name, t->fd);
    int r = overwrite ? renameat(t->dirfd, t->name, rootfd, name)
                      : rename_noreplace(t->dirfd, t->name, rootfd, name);
    if (r != 0) {
        rc = errno == EEXIST ? tf__fail(e, TF_EEXIST, "\"%s\" already exists", name)
                             : fail_fs(e, errno, "cannot store", name);
        goto out;
    }
    t->name[0] = '\0'; /* published: nothing left to remove */
    /* The rename is durable only once the directory itself is on disk. */
    if (fsync(rootfd) != 0)
        rc = tf__fail_errno(e, TF_EIO, errno, "cannot flush the directory to disk");
out:
    tf__tmpfile_abort(t);
    return rc;
}

/* Resolves the local target: path, or path/name when path is a directory.
   Returns 1 when it exists and is not a regular file (write into it). */
static int resolve_target(const char *path, const char *name, char *final, size_t final_len,
                          tf__err *e)
{
    struct stat st;
    if (snprintf(final, final_len, "%s", path) >= (int)final_len)
        return tf__fail(e, TF_EINVAL, "the local path is too long");
    if (stat(final, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(final);
        const char *sep = n && final[n - 1] == '/' ? "" : "/";
        if (snprintf(final + n, final_len - n, "%s%s", sep, name) >= (int)(final_len - n))
            return tf__fail(e, TF_EINVAL, "the local path is too long");
    }
    return stat(final, &st) == 0 && !S_ISREG(st.st_mode);
}

/* Opens the directory that holds final. */
static int open_parent(const char *final, tf__err *e)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(final, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == final)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - final), final);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return fail_fs(e, errno, "cannot open the directory", dir);
    return dirfd;
}

static int open_direct(const char *final, tf__tmpfile *t, tf__err *e)
{
    /* /dev/null, a FIFO, a terminal: write into it, never replace it. */
    t->fd = open(final, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (t->fd < 0)
        return fail_fs(e, errno, "cannot open", final);
    t->direct = 1;
    return TF_OK;
}

int tf__local_begin(const char *path, const char *name, tf__tmpfile *t, char *final,
                    size_t final_len, tf__err *e)
{
    tmpfile_init(t);
    int special = resolve_target(path, name, final, final_len, e);
    if (special < 0)
        return special;
    if (special)
        return open_direct(final, t, e);
    /* The temporary goes beside the target, so the rename stays within one
       file system and is atomic. */
    int dirfd = open_parent(final, e);
    if (dirfd < 0)
        return dirfd;
    t->owns_dirfd = 1;
    int rc = create_temp(dirfd, ".tcpfile-part-", CLIENT_TMP_MODE, t, e);
    if (rc != TF_OK) {
        close(dirfd);
        t->dirfd = -1;
        return tf__err_prefix(e, rc, "cannot write beside \"%s\"", final);
    }
    return TF_OK;
}

int tf__local_begin_resumable(const char *path, const char *name, tf__tmpfile *t,
                              char *final, size_t final_len, uint64_t *have, tf__err *e)
{
    tmpfile_init(t);
    *have = 0;
    int special = resolve_target(path, name, final, final_len, e);
    if (special < 0)
        return special;
    if (special)
        return open_direct(final, t, e);
    int dirfd = open_parent(final, e);
    if (dirfd < 0)
        return dirfd;
    t->dirfd = dirfd;
    t->owns_dirfd = 1;
    const char *base = strrchr(final, '/');
    base = base ? base + 1 : final;
    if (snprintf(t->name, sizeof t->name, ".%s.tcpfile-part", base) >= (int)sizeof t->name) {
        /* A long name: the part file is named by a digest of it instead. */
        tf__digest d = {0};
        uint8_t h[TF_DIGEST_SIZE];
        if (tf__digest_begin(&d, 1) != TF_OK) {
            tf__tmpfile_keep(t);
            return tf__fail(e, TF_ENOMEM, "out of memory");
        }
        tf__digest_update(&d, base, strlen(base));
        tf__digest_final(&d, h);
        tf__digest_end(&d);
        int n = snprintf(t->name, sizeof t->name, ".tcpfile-part-");
        for (int i = 0; i < 8; i++)
            n += snprintf(t->name + n, sizeof t->name - (size_t)n, "%02x", h[i]);
    }
    int rc = open_resumable(dirfd, t, UINT64_MAX, CLIENT_TMP_MODE, have, e);
    if (rc != TF_OK)
        tf__tmpfile_keep(t);
    return rc;
}

int tf__local_commit(tf__tmpfile *t, const char *final, tf__err *e)
{
    int rc = TF_OK;
    if (t->direct) {
        close(t->fd);
        t->fd = -1;
        return TF_OK;
    }
    const char *base = strrchr(final, '/');
    base = base ? base + 1 : final;
    keep_mode(t->dirfd, base, t->fd);
    if (close(t->fd) != 0) {
        t->fd = -1;
        rc = fail_fs(e, errno, "cannot write", final);
    } else {
        t->fd = -1;
        if (renameat(t->dirfd, t->name, t->dirfd, base) != 0)
            rc = fail_fs(e, errno, "cannot create", final);
        else
            t->name[0] = '\0';
    }
    tf__tmpfile_abort(t);
    return rc;
}

#define DIGEST_XATTR "user.tcpfile.xxh3"
/* Version, the first four words of the identity (inode, size, mtime: the
   ctime changes with the attribute itself), digest. */
#define XATTR_ID_LEN 4
#define DIGEST_RECORD (1 + XATTR_ID_LEN * 8 + TF_DIGEST_SIZE)

int tf__fs_identity(int fd, uint64_t id[TF_FS_ID_LEN])
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return -1;
    identity_of(&st, id);
    return 0;
}

void tf__digest_cache_init(tf__digest_cache *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
}

void tf__digest_cache_destroy(tf__digest_cache *c)
{
    pthread_mutex_destroy(&c->lock);
}

static int memo_load(tf__digest_cache *c, const uint64_t id[TF_FS_ID_LEN],
                     uint8_t out[TF_DIGEST_SIZE])
{
    int found = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < TF_DIGEST_CACHE_SIZE && !found; i++) {
        tf__digest_memo *m = &c->memo[i];
        if (m->used && memcmp(m->id, id, sizeof m->id) == 0) {
            memcpy(out, m->digest, TF_DIGEST_SIZE);
            m->used = ++c->clock;
            found = 1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

/* Replaces the entry of the same file (device and inode: its older version
   is of no more use), or else the least recently used one. */
static void memo_store(tf__digest_cache *c, const uint64_t id[TF_FS_ID_LEN],
                       const uint8_t digest[TF_DIGEST_SIZE])
{
    pthread_mutex_lock(&c->lock);
    tf__digest_memo *victim = &c->memo[0];
    for (size_t i = 0; i < TF_DIGEST_CACHE_SIZE; i++) {
        tf__digest_memo *m = &c->memo[i];
        if (m->used && m->id[0] == id[0] && m->id[4] == id[4]) {
            victim = m;
            break;
        }
        if (m->used < victim->used)
            victim = m;
    }
    memcpy(victim->id, id, sizeof victim->id);
    memcpy(victim->digest, digest, TF_DIGEST_SIZE);
    victim->used = ++c->clock;
    pthread_mutex_unlock(&c->lock);
}

int tf__fs_digest_load(int fd, const uint64_t id[TF_FS_ID_LEN], tf__digest_cache *mem,
                       uint8_t out[TF_DIGEST_SIZE])
{
    /* Read-only still reads what a server that could write left. */
    if (mem && memo_load(mem, id, out))
        return 1;
    uint8_t rec[DIGEST_RECORD];
    if (fgetxattr(fd, DIGEST_XATTR, rec, sizeof rec) != (ssize_t)sizeof rec || rec[0] != 1 ||
        memcmp(rec + 1, id, XATTR_ID_LEN * sizeof id[0]) != 0)
        return 0;
    memcpy(out, rec + 1 + XATTR_ID_LEN * sizeof id[0], TF_DIGEST_SIZE);
    return 1;
}

void tf__fs_digest_store(int fd, const uint8_t digest[TF_DIGEST_SIZE],
                         const uint64_t id[TF_FS_ID_LEN], tf__digest_cache *mem)
{
    uint8_t rec[DIGEST_RECORD];
    uint64_t now_id[TF_FS_ID_LEN];
    if (tf__fs_identity(fd, now_id) != 0 || memcmp(now_id, id, sizeof now_id) != 0)
        return;
    if ((int64_t)now_id[2] > (int64_t)time(NULL) - 2)
        return; /* not settled */
    if (mem) {
        memo_store(mem, now_id, digest);
        return;
    }
    rec[0] = 1;
    memcpy(rec + 1, now_id, XATTR_ID_LEN * sizeof now_id[0]);
    memcpy(rec + 1 + XATTR_ID_LEN * sizeof now_id[0], digest, TF_DIGEST_SIZE);
    /* Best effort: no xattrs here only means hashing again next time. */
    (void)fsetxattr(fd, DIGEST_XATTR, rec, sizeof rec, 0);
}

int tf__fs_hash_range(int fd, uint64_t from, uint64_t len, tf__digest *d, uint8_t *buf,
                      size_t buf_len, tf__err *e)
{
    uint64_t off = from;
    len += from;
    while (off < len) {
        size_t want = len - off < buf_len ? (size_t)(len - off) : buf_len;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tf__fail_errno(e, TF_EIO, errno, "reading the file failed");
        if (n == 0)
            return tf__fail(e, TF_EIO, "the file is shorter than expected");
        tf__digest_update(d, buf, (size_t)n);
        off += (uint64_t)n;
    }
    return TF_OK;
}

int tf__fs_hash_prefix(int fd, uint64_t len, tf__digest *d, uint8_t *buf, size_t buf_len,
                       tf__err *e)
{
    return tf__fs_hash_range(fd, 0, len, d, buf, buf_len, e);
}

/* Copies a stream of unknown length into an unnamed temporary file. */
static int spool(int in, int *out, uint64_t *size, const char *path, tf__err *e)
{
    const char *tmpdir = getenv("TMPDIR");
    int fd = open(tmpdir && *tmpdir ? tmpdir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot create a temporary file for \"%s\"",
                              path);
    char *buf = malloc(COPY_BUF);
    if (!buf) {
        close(fd);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    uint64_t total = 0;
    int rc = TF_OK;
    for (;;) {
        ssize_t n = read(in, buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fail_fs(e, errno, "cannot read", path);
            break;
        }
        if (n == 0)
            break;
        rc = tf__fs_write_all(fd, buf, (size_t)n, e);
        if (rc != TF_OK)
            break;
        total += (uint64_t)n;
    }
    free(buf);
    if (rc == TF_OK && lseek(fd, 0, SEEK_SET) != 0)
        rc = tf__fail_errno(e, TF_EIO, errno, "cannot rewind the temporary file");
    if (rc != TF_OK) {
        close(fd);
        return rc;
    }
    *out = fd;
    *size = total;
    return TF_OK;
}

int tf__local_open_read(const char *path, int *fd, uint64_t *size, tf__err *e)
{
    struct stat st;
    *fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (*fd < 0) {
        if (errno == ENOENT)
            return tf__fail(e, TF_ENOENT, "no local file \"%s\"", path);
        return fail_fs(e, errno, "cannot open", path);
    }
    if (fstat(*fd, &st) != 0) {
        int err = errno;
        close(*fd);
        *fd = -1;
        return fail_fs(e, err, "cannot stat", path);
    }
    if (S_ISDIR(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return tf__fail(e, TF_EINVAL, "\"%s\" is a directory", path);
    }
    if (S_ISREG(st.st_mode)) {
        *size = (uint64_t)st.st_size;
        return TF_OK;
    }
    int in = *fd;
    int rc = spool(in, fd, size, path, e);
    close(in);
    if (rc != TF_OK)
        *fd = -1;
    return rc;
}

/* ---- scanning the root ------------------------------------------------ */

int tf__fs_scan(int rootfd, size_t max_entries, size_t max_name, tf_listing **out,
                tf__err *e)
{
    *out = NULL;
    /* A fresh open, not dup(): a dup would share (and move) the read offset
       with every other thread listing the same root. */
    int fd = open_beneath(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot read the directory");
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return tf__fail_errno(e, TF_EIO, errno, "cannot read the directory");
    }
    tf__listing_builder b;
    tf__listing_builder_init(&b, max_entries, max_name);
    int rc = TF_OK;
    struct dirent *de;
    /* errno is reset before each readdir: only its own failure ends the loop. */
    while ((errno = 0, de = readdir(d)) != NULL) {
        size_t nlen = strlen(de->d_name);
        struct stat st;
        if (tf__name_check_bytes(de->d_name, nlen, max_name, NULL) != TF_OK)
            continue; /* ".", "..", and names no client could ask for */
        if (strcmp(de->d_name, TF_TMP_DIR) == 0)
            continue; /* reserved, even if something planted a file there */
        if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
            continue;
        if (fstatat(rootfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue; /* gone meanwhile, or not a regular file */
        rc = tf__listing_builder_add(&b, de->d_name, nlen, (uint64_t)st.st_size,
                                     (int64_t)st.st_mtime);
        if (rc == TF_ETOOBIG)
            rc = tf__fail(e, rc, "the directory holds more than %zu files", max_entries);
        else if (rc != TF_OK)
            rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
        if (rc != TF_OK)
            break;
    }
    if (rc == TF_OK && errno != 0)
        rc = tf__fail_errno(e, TF_EIO, errno, "cannot read the directory");
    closedir(d);
    if (rc == TF_OK && tf__listing_builder_finish(&b, out) != TF_OK)
        rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
    tf__listing_builder_abort(&b);
    return rc;
}
