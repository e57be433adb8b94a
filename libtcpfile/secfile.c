/*
 * secfile.c - private files: 0700 directories, atomic 0600 rewrites, whole
 * reads, flock-based locks. See secfile.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "secfile.h"

int tf__secfile_mkdirs(const char *dir, tf__err *e)
{
    char buf[PATH_MAX];
    size_t n = dir ? strlen(dir) : 0;
    if (n == 0 || n >= sizeof buf)
        return tf__fail(e, TF_EINVAL, "directory name empty or too long");
    memcpy(buf, dir, n + 1);
    /* Each prefix in turn, so that every missing parent gets 0700 too (a
       state directory under a fresh ~/.local/state must not be world-readable
       through its parent either). */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return tf__fail_errno(e, tf__code_from_errno(errno) == TF_EACCES ? TF_EACCES : TF_EIO,
                                  errno, "cannot create directory %s", buf);
        buf[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot use directory %s", dir);
    if (!S_ISDIR(st.st_mode))
        return tf__fail(e, TF_EINVAL, "%s is not a directory", dir);
    return TF_OK;
}

static int dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        if (cap < 2)
            return -1;
        strcpy(dir, ".");
        return 0;
    }
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= cap)
        return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return 0;
}

static int write_code(int errnum)
{
    int c = tf__code_from_errno(errnum);
    return c == TF_EACCES || c == TF_ENOSPC ? c : TF_EIO;
}

int tf__secfile_write(const char *path, const void *data, size_t len, tf__err *e)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    if (!path || !*path || dir_of(path, dir, sizeof dir) != 0 ||
        snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp)
        return tf__fail(e, TF_EINVAL, "file name empty or too long");
    /* mkstemp creates the file 0600 with O_EXCL: nobody else can have it open. */
    int fd = mkstemp(tmp);
    if (fd < 0)
        return tf__fail_errno(e, write_code(errno), errno, "cannot create a temporary beside %s",
                              path);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int err = w < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            return tf__fail_errno(e, write_code(err), err, "cannot write %s", tmp);
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return tf__fail_errno(e, write_code(err), err, "cannot write %s", tmp);
    }
    if (close(fd) != 0) {
        int err = errno;
        unlink(tmp);
        return tf__fail_errno(e, write_code(err), err, "cannot write %s", tmp);
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return tf__fail_errno(e, write_code(err), err, "cannot rename %s to %s", tmp, path);
    }
    /* The rename is durable only once the directory is on disk. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int r = fsync(dfd);
        int err = errno;
        close(dfd);
        if (r != 0)
            return tf__fail_errno(e, TF_EIO, err, "cannot sync directory %s", dir);
    }
    return TF_OK;
}

int tf__secfile_read(const char *path, size_t max, char **out, size_t *len, tf__err *e)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int c = tf__code_from_errno(errno);
        return tf__fail_errno(e, c == TF_ENOENT || c == TF_EACCES ? c : TF_EIO, errno,
                              "cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tf__fail(e, TF_EIO, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return tf__fail(e, TF_ETOOBIG, "%s is over %zu bytes", path, max);
    }
    size_t cap = (size_t)st.st_size + 1;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return tf__fail(e, TF_ENOMEM, "out of memory reading %s", path);
    }
    size_t have = 0;
    for (;;) {
        if (have + 1 == cap) {
            /* The file grew since fstat: read on, within max. */
            if (cap > max) {
                tf__secfile_free(buf, have);
                close(fd);
                return tf__fail(e, TF_ETOOBIG, "%s is over %zu bytes", path, max);
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nbuf = malloc(ncap);
            if (!nbuf) {
                tf__secfile_free(buf, have);
                close(fd);
                return tf__fail(e, TF_ENOMEM, "out of memory reading %s", path);
            }
            memcpy(nbuf, buf, have);
            tf__secfile_free(buf, have);
            buf = nbuf;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + have, cap - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            tf__secfile_free(buf, have);
            close(fd);
            return tf__fail_errno(e, TF_EIO, err, "cannot read %s", path);
        }
        if (r == 0)
            break;
        have += (size_t)r;
    }
    close(fd);
    buf[have] = '\0';
    *out = buf;
    *len = have;
    return TF_OK;
}

void tf__secfile_free(char *p, size_t len)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

int tf__secfile_lock(const char *path, int *fd, tf__err *e)
{
    char lock[PATH_MAX];
    *fd = -1;
    if (!path || snprintf(lock, sizeof lock, "%s.lock", path) >= (int)sizeof lock)
        return tf__fail(e, TF_EINVAL, "file name too long");
    int f = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f < 0)
        return tf__fail_errno(e, tf__code_from_errno(errno) == TF_EACCES ? TF_EACCES : TF_EIO,
                              errno, "cannot open lock file %s", lock);
    /* The lock file itself is never removed: removing it would let a waiter
       lock the unlinked inode while a newcomer locks a new one. */
    while (flock(f, LOCK_EX) != 0) {
        if (errno == EINTR)
            continue;
        int err = errno;
        close(f);
        return tf__fail_errno(e, TF_EIO, err, "cannot lock %s", lock);
    }
    *fd = f;
    return TF_OK;
}

void tf__secfile_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the only descriptor releases the flock */
}
