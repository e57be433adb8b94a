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
    *fd = tf__open_beneath(rootfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
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
        return tf__fail(e, TF_EACCES, "\"%s\" is not a regular file", name);
    }
    *size = (uint64_t)st.st_size;
    if (id)
        identity_of(&st, id);
    return TF_OK;
}

int tf__fs_check_target(int rootfd, const char *name, int overwrite, tf__err *e)
{
    struct stat st;
    if (fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENAMETOOLONG ? tf__fail_fs(e, errno, "cannot store", name)
                                     : TF_OK; /* nothing there (yet) */
    if (!S_ISREG(st.st_mode))
        return tf__fail(e, TF_EACCES, "\"%s\" exists and is not a regular file", name);
    if (!overwrite)
        return tf__fail(e, TF_EEXIST, "\"%s\" exists and the server does not overwrite",
                        name);
    return TF_OK;
}

int tf__fs_identity(int fd, uint64_t id[TF_FS_ID_LEN])
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return -1;
    identity_of(&st, id);
    return 0;
}

/* ---- scanning the root ------------------------------------------------ */

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const tf_entry *)a)->name, ((const tf_entry *)b)->name);
}

int tf__fs_scan(int rootfd, size_t max_entries, size_t max_name, tf_listing **out,
                tf__err *e)
{
    *out = NULL;
    /* A fresh open, not dup(): a dup would share (and move) the read offset
       with every other thread listing the same root. */
    int fd = tf__open_beneath(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot read the directory");
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return tf__fail_errno(e, TF_EIO, errno, "cannot read the directory");
    }
    tf_entry *entries = NULL;
    size_t *offsets = NULL;
    char *names = NULL;
    size_t count = 0, cap = 0, names_len = 0, names_cap = 0;
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
        if (count == max_entries) {
            rc = tf__fail(e, TF_ETOOBIG, "the directory holds more than %zu files",
                          max_entries);
            break;
        }
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            tf_entry *ne = realloc(entries, ncap * sizeof *ne);
            size_t *no = ne ? realloc(offsets, ncap * sizeof *no) : NULL;
            if (ne)
                entries = ne;
            if (!ne || !no) {
                rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
                break;
            }
            offsets = no;
            cap = ncap;
        }
        if (names_len + nlen + 1 > names_cap) {
            size_t ncap = names_cap ? names_cap * 2 : 4096;
            while (ncap < names_len + nlen + 1)
                ncap *= 2;
            char *nn = realloc(names, ncap);
            if (!nn) {
                rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
                break;
            }
            names = nn;
            names_cap = ncap;
        }
        memcpy(names + names_len, de->d_name, nlen + 1);
        offsets[count] = names_len;
        entries[count].size = (uint64_t)st.st_size;
        entries[count].mtime = (int64_t)st.st_mtime;
        names_len += nlen + 1;
        count++;
    }
    if (rc == TF_OK && errno != 0)
        rc = tf__fail_errno(e, TF_EIO, errno, "cannot read the directory");
    closedir(d);
    tf_listing *l = NULL;
    if (rc == TF_OK && !(l = calloc(1, sizeof *l)))
        rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
    if (rc != TF_OK) {
        free(entries);
        free(offsets);
        free(names);
        return rc;
    }
    /* Names were appended to a growing block; point at them only now. */
    for (size_t i = 0; i < count; i++)
        entries[i].name = names + offsets[i];
    free(offsets);
    /* An empty root leaves entries NULL, which qsort may not be given. */
    if (count > 1)
        qsort(entries, count, sizeof *entries, compare_entries);
    l->count = count;
    l->entries = entries;
    l->names = names;
    *out = l;
    return TF_OK;
}
