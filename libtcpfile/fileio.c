/*
 * fileio.c - what both ends do with open files and directory descriptors:
 * opening beneath a directory, full writes, hashing ranges, and files
 * written under a temporary name (tf__tmpfile) that is renamed into place.
 */
#include "fileio.h"

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
#include <sys/uio.h>
#include <sys/xattr.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int tf__fail_fs(tf__err *e, int errnum, const char *what, const char *name)
{
    return tf__fail_errno(e, tf__code_from_errno(errnum), errnum, "%s \"%s\"", what, name);
}

/* Without openat2: a path ("a/b/c", validated: no "..", no empty or "."
   component) is walked a directory at a time, each opened with O_NOFOLLOW,
   so that a symbolic link on the way is refused (ELOOP or ENOTDIR) as
   RESOLVE_NO_SYMLINKS refuses it. */
static int open_walk(int dirfd, const char *name, int flags, mode_t mode)
{
    char comp[NAME_MAX + 1];
    int at = dirfd;
    const char *p = name;
    for (const char *slash; (slash = strchr(p, '/')) != NULL; p = slash + 1) {
        size_t n = (size_t)(slash - p);
        if (n == 0 || n > NAME_MAX) {
            errno = n ? ENAMETOOLONG : ENOENT;
            goto fail;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        int next = openat(at, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        /* O_DIRECTORY is checked before O_NOFOLLOW: a link shows as
           ENOTDIR; say ELOOP, as openat2 does. */
        if (next < 0 && errno == ENOTDIR &&
            fstatat(at, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            errno = ELOOP;
        if (next < 0)
            goto fail;
        if (at != dirfd)
            close(at);
        at = next;
    }
    int fd = openat(at, p, flags | O_NOFOLLOW, mode);
    int err = errno;
    if (at != dirfd)
        close(at);
    errno = err;
    return fd;
fail:;
    int e = errno;
    if (at != dirfd)
        close(at);
    errno = e;
    return -1;
}

/*
 * Opens name relative to dirfd, never leaving dirfd and never following a
 * symlink anywhere on the way: openat2 with RESOLVE_BENEATH where the kernel
 * has it (5.6+), else a walk of openat calls with O_NOFOLLOW, one per
 * component (open_walk).
 */
int tf__open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
#ifdef SYS_openat2
    struct open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW),
        .mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
        return (int)fd; /* EPERM: a seccomp filter that does not know openat2 */
#endif
    return strchr(name, '/') ? open_walk(dirfd, name, flags, mode)
                             : openat(dirfd, name, flags | O_NOFOLLOW, mode);
}

#ifndef RESOLVE_CACHED
#define RESOLVE_CACHED 0x20
#endif

ssize_t tf__read_beneath_cached(int dirfd, const char *name, void *buf, size_t cap,
                                struct stat *out)
{
#if defined(SYS_openat2) && defined(RWF_NOWAIT)
    struct open_how how = {
        .flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                   RESOLVE_CACHED,
    };
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
    if (fd < 0)
        return -1; /* EAGAIN: not all cached; EINVAL: a kernel before 5.12 */
    struct stat st;
    ssize_t n = -1;
    if (fstat((int)fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= cap) {
        struct iovec v = {buf, (size_t)st.st_size};
        n = st.st_size ? preadv2((int)fd, &v, 1, 0, RWF_NOWAIT) : 0;
        if (n != (ssize_t)st.st_size)
            n = -1; /* EAGAIN (a page not cached), or the file changed */
        if (out)
            *out = st;
    }
    close((int)fd);
    return n;
#else
    (void)dirfd;
    (void)name;
    (void)buf;
    (void)cap;
    (void)out;
    return -1;
#endif
}

int tf__stat_beneath_cached(int dirfd, const char *name, struct stat *st)
{
    /* A single component: nothing to pass through, and ".." and the like
       are refused by the name rules before this. */
    if (!strchr(name, '/'))
        return fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW);
#ifdef SYS_openat2
    struct open_how how = {
        .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                   RESOLVE_CACHED,
    };
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
    if (fd < 0)
        return -1;
    int rc = fstat((int)fd, st);
    int err = errno;
    close((int)fd);
    errno = err;
    return rc;
#else
    (void)st;
    errno = ENOSYS;
    return -1;
#endif
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

/* Gives the temporary fd the mode, and the owner where allowed, of the
   regular file dirfd/name it is about to replace: it was created with the
   umask's mode, and a rename must not widen a 600 file to 644 (nor narrow
   a 640 one). Owner first: fchown may clear set-id bits. Best effort: a
   non-root process cannot give a file away, and then keeps its own.
   fchown only when the owner differs: a sandbox (the systemd unit's
   SystemCallFilter) may forbid it, and the usual case needs none. */
void tf__keep_mode(int dirfd, const char *name, int fd)
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

/* The attempt-th candidate "<prefix><16 random hex digits>" for t->name. */
static void tmp_name(tf__tmpfile *t, const char *prefix, int attempt)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uint64_t)tf__now_ms() * 2654435761u + (uint64_t)attempt;
    snprintf(t->name, sizeof t->name, "%s%016llx", prefix, (unsigned long long)r);
}

/* Creates an unused "<prefix><16 random hex digits>" in dirfd. */
int tf__tmpfile_create(int dirfd, const char *prefix, mode_t mode, tf__tmpfile *t,
                       tf__err *e)
{
    t->dirfd = dirfd;
    t->direct = 0;
    for (int attempt = 0; attempt < 16; attempt++) {
        tmp_name(t, prefix, attempt);
        t->fd = tf__open_beneath(dirfd, t->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (t->fd >= 0)
            return TF_OK;
        if (errno != EEXIST)
            return tf__fail_errno(e, tf__code_from_errno(errno), errno,
                                  "cannot create a temporary file");
    }
    return tf__fail(e, TF_EIO, "cannot find an unused temporary name");
}

/* linkat of the unnamed file fd as dirfd/name (fileio.h). AT_EMPTY_PATH needs
   CAP_DAC_READ_SEARCH (ENOENT without it); the /proc/self/fd form, which
   open(2) gives for O_TMPFILE and systemd's link_tmpfile_at falls back
   to, needs only /proc. */
int tf__fs_link_fd(int fd, int dirfd, const char *name)
{
    if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno != ENOENT)
        return -1;
    char proc[32];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW);
}

int tf__tmpfile_link(int dirfd, const char *prefix, tf__tmpfile *t, tf__err *e)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        tmp_name(t, prefix, attempt);
        if (tf__fs_link_fd(t->fd, dirfd, t->name) == 0) {
            t->dirfd = dirfd;
            return TF_OK;
        }
        if (errno != EEXIST) {
            t->name[0] = '\0';
            return tf__fail_errno(e, tf__code_from_errno(errno), errno,
                                  "cannot name the staged upload");
        }
    }
    t->name[0] = '\0';
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

void tf__tmpfile_init(tf__tmpfile *t)
{
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->dirfd = -1;
}

/* Opens (creating) dirfd/name for a resumable temporary, locks it, and
   positions it at its end; *have is its size. With SERVER_TMP_MODE, a file
   there that is not our own (planted while the directory was open to
   others, or linked from elsewhere) or that others could write is
   replaced by a new one: her inode, renamed into place, would stay hers to
   rewrite. One that others could only read is made private. */
int tf__tmpfile_open_resumable(int dirfd, tf__tmpfile *t, uint64_t size, mode_t mode,
                          uint64_t *have, tf__err *e)
{
    struct stat st;
    t->fd = tf__open_beneath(dirfd, t->name, O_RDWR | O_CREAT | O_CLOEXEC, mode);
    if (t->fd >= 0 && mode == SERVER_TMP_MODE && fstat(t->fd, &st) == 0 &&
        (st.st_uid != geteuid() || st.st_nlink != 1 || (st.st_mode & 022) != 0)) {
        close(t->fd);
        t->fd = -1;
        if (unlinkat(dirfd, t->name, 0) == 0 || errno == ENOENT)
            t->fd = tf__open_beneath(dirfd, t->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
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
