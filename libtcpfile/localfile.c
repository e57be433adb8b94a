/*
 * localfile.c - the client's own files: where a download goes (temporary
 * beside the target, renamed into place; a resumable .part file; writing
 * straight into a device or FIFO) and opening a local file to upload
 * (spooling a pipe into an unnamed temporary so that its size is known).
 */
#include "localfile.h"

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

/* Resolves the local target: path, or path/name when path is a directory.
   Returns 1 when it exists and is not a regular file (write into it). */
static int resolve_target(const char *path, const char *name, char *final, size_t final_len,
                          tf__err *e)
{
    struct stat st;
    if (snprintf(final, final_len, "%s", path) >= (int)final_len)
        return tf__fail(e, TF_EINVAL, "the local path is too long");
    int there = stat(final, &st) == 0;
    if (there && S_ISDIR(st.st_mode)) {
        size_t n = strlen(final);
        const char *sep = n && final[n - 1] == '/' ? "" : "/";
        if (snprintf(final + n, final_len - n, "%s%s", sep, name) >= (int)(final_len - n))
            return tf__fail(e, TF_EINVAL, "the local path is too long");
        there = stat(final, &st) == 0; /* the file inside it */
    }
    return there && !S_ISREG(st.st_mode);
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
        return tf__fail_fs(e, errno, "cannot open the directory", dir);
    return dirfd;
}

static int open_direct(const char *final, tf__tmpfile *t, tf__err *e)
{
    /* /dev/null, a FIFO, a terminal: write into it, never replace it. */
    t->fd = open(final, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (t->fd < 0)
        return tf__fail_fs(e, errno, "cannot open", final);
    t->direct = 1;
    return TF_OK;
}

int tf__local_begin(const char *path, const char *name, tf__tmpfile *t, char *final,
                    size_t final_len, tf__err *e)
{
    tf__tmpfile_init(t);
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
    int rc = tf__tmpfile_create(dirfd, ".tcpfile-part-", CLIENT_TMP_MODE, t, e);
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
    tf__tmpfile_init(t);
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
    int rc = tf__tmpfile_open_resumable(dirfd, t, UINT64_MAX, CLIENT_TMP_MODE, have, e);
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
    tf__keep_mode(t->dirfd, base, t->fd);
    if (close(t->fd) != 0) {
        t->fd = -1;
        rc = tf__fail_fs(e, errno, "cannot write", final);
    } else {
        t->fd = -1;
        if (renameat(t->dirfd, t->name, t->dirfd, base) != 0)
            rc = tf__fail_fs(e, errno, "cannot create", final);
        else
            t->name[0] = '\0';
    }
    tf__tmpfile_abort(t);
    return rc;
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
            rc = tf__fail_fs(e, errno, "cannot read", path);
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
        return tf__fail_fs(e, errno, "cannot open", path);
    }
    if (fstat(*fd, &st) != 0) {
        int err = errno;
        close(*fd);
        *fd = -1;
        return tf__fail_fs(e, err, "cannot stat", path);
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
