/*
 * rootfs.c - the confined root: opening files for reading under it, the
 * checks before an upload is stored, and scanning it.
 */
#include "rootfs.h"

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

int tf__root_open(const char *root, int *dirfd, tf__err *e)
{
    *dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0)
        return tf__fail_fs(e, errno, "cannot open the directory", root);
    return TF_OK;
}

void tf__fs_identity_of(const struct stat *st, uint64_t id[TF_FS_ID_LEN])
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
    *fd = tf__open_beneath(rootfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
    if (*fd < 0) {
        if (errno == ELOOP)
            return tf__fail(e, TF_EACCES, "\"%s\" is a symbolic link, which is not served",
                            name);
        if (errno == ENOENT)
            return tf__fail(e, TF_ENOENT, "no file named \"%s\"", name);
        if (errno == ENOTDIR) /* a path through a file: the session says ENOENT to v1 */
            return tf__fail(e, TF_ENOTDIR, "a component of \"%s\" is not a directory", name);
        /* Opening a socket file, or a device without a driver, for reading
           fails with ENXIO / ENODEV: not a regular file either. */
        if (errno == ENXIO || errno == ENODEV)
            return tf__fail(e, TF_EACCES, "\"%s\" is not a regular file", name);
        return tf__fail_fs(e, errno, "cannot open", name);
    }
    if (fstat(*fd, &st) != 0) {
        int err = errno;
        close(*fd);
        *fd = -1;
        return tf__fail_fs(e, err, "cannot stat", name);
    }
    if (!S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        if (S_ISDIR(st.st_mode)) /* the session says EACCES to v1 */
            return tf__fail(e, TF_EISDIR, "\"%s\" is a directory", name);
        return tf__fail(e, TF_EACCES, "\"%s\" is not a regular file", name);
    }
    *size = (uint64_t)st.st_size;
    if (id)
        tf__fs_identity_of(&st, id);
    return TF_OK;
}

int tf__fs_check_target(int rootfd, const char *name, int overwrite, tf__err *e)
{
    struct stat st;
    if (fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENAMETOOLONG ? tf__fail_fs(e, errno, "cannot store", name)
                                     : TF_OK; /* nothing there (yet) */
    if (S_ISDIR(st.st_mode)) /* the session says EACCES to v1 */
        return tf__fail(e, TF_EISDIR, "\"%s\" is a directory", name);
    if (!S_ISREG(st.st_mode))
        return tf__fail(e, TF_EACCES, "\"%s\" exists and is not a regular file", name);
    if (!overwrite)
        return tf__fail(e, TF_EEXIST, "\"%s\" exists and the server does not overwrite",
                        name);
    return TF_OK;
}

int tf__fs_ids_same(const uint64_t a[TF_FS_ID_LEN], const uint64_t b[TF_FS_ID_LEN])
{
    return memcmp(a, b, 5 * sizeof a[0]) == 0;
}

int tf__fs_identity(int fd, uint64_t id[TF_FS_ID_LEN])
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return -1;
    tf__fs_identity_of(&st, id);
    return 0;
}
