/*
 * rootfs.h - the confined root of a server. Calls work on a directory
 * descriptor of the served root and take names that tf__name_check_bytes
 * has accepted (one component: no '/', not "..").
 */
#ifndef TF_ROOTFS_H
#define TF_ROOTFS_H

#include <stddef.h>
#include <stdint.h>

#include "fileio.h"

/* TF_TMP_DIR, the hidden subdirectory of the root that holds uploads in
   progress, is in internal.h: the name rules (name.c) reserve it too. */
#define TF_TMP_PLAIN_PREFIX "up-"
#define TF_TMP_RESUME_PREFIX "resume-"

/* A file's identity, the version of it a remembered digest is valid for:
   inode, size, mtime (s, ns), device, ctime (s, ns). */
#define TF_FS_ID_LEN 7

/* Opens root as a directory descriptor. TF_ENOENT, TF_EACCES, TF_EINVAL. */
int tf__root_open(const char *root, int *dirfd, tf__err *e);

/* Opens root/name for reading: regular files only, never through a
   symlink, never blocking on a FIFO. *size is the file's size; id, when not
   NULL, its identity (see tf__fs_identity), from the same fstat. */
int tf__fs_open_read(int rootfd, const char *name, int *fd, uint64_t *size,
                     uint64_t id[TF_FS_ID_LEN], tf__err *e);

/* Whether an upload may be stored as name: TF_EEXIST if it exists and
   overwrite is 0, TF_EACCES if it exists and is not a regular file. */
int tf__fs_check_target(int rootfd, const char *name, int overwrite, tf__err *e);

/* What a remembered digest is tied to (see TF_FS_ID_LEN). */
int tf__fs_identity(int fd, uint64_t id[TF_FS_ID_LEN]);
/* The same from a stat already made. */
struct stat;
void tf__fs_identity_of(const struct stat *st, uint64_t id[TF_FS_ID_LEN]);
/* Whether two identities are the same version: inode, size, mtime and
   device. The change time is left out: remembering a digest (an extended
   attribute) moves it without changing a byte. */
int tf__fs_ids_same(const uint64_t a[TF_FS_ID_LEN], const uint64_t b[TF_FS_ID_LEN]);

#endif /* TF_ROOTFS_H */
