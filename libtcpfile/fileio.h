/*
 * fileio.h - what both ends do with open files and directory descriptors:
 * opening beneath a directory without following links, full writes,
 * hashing ranges, and files written under a temporary name.
 */
#ifndef TF_FILEIO_H
#define TF_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "digest.h"
#include "internal.h"

/* Modes of new temporaries. The server's are private until published
   (partials.c, tf__publish_mode), so that even a staging directory that was
   briefly open to others exposes nothing; the client's get the usual 0666
   and umask, being renamed into place as they are. */
#define SERVER_TMP_MODE 0600
#define CLIENT_TMP_MODE 0666

/* Fails e with errnum's code: "<what> \"<name>\"". Returns the code. */
int tf__fail_fs(tf__err *e, int errnum, const char *what, const char *name);

/* Opens name relative to dirfd, never leaving dirfd and never following a
   symlink on the way (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
   RESOLVE_NO_MAGICLINKS, else openat O_NOFOLLOW). -1 with errno. */
int tf__open_beneath(int dirfd, const char *name, int flags, mode_t mode);

/* Reads the whole regular file name beneath dirfd into buf (at most cap
   bytes) only if that needs no disk: every component in the dentry cache
   (openat2 RESOLVE_CACHED, Linux 5.12+) and every byte in the page cache
   (preadv2 RWF_NOWAIT). The size read, or -1 when it cannot be done so
   (not cached, too large, not a regular file, a link, any error). st, when
   not NULL, gets the file's fstat, the version of what was read. */
struct stat;
ssize_t tf__read_beneath_cached(int dirfd, const char *name, void *buf, size_t cap,
                                struct stat *st);

/* The stat of name beneath dirfd (a regular file or not, a link itself),
   resolved as tf__open_beneath resolves it: 0, or -1 with errno. For a
   single component one fstatat, which has no directory to pass through and
   does not follow the last (AT_SYMLINK_NOFOLLOW); it may wait for the disk
   should the entry have left the dentry cache. For a path an O_PATH
   openat2 beneath, without links, only from the dentry cache (EAGAIN),
   then fstat. */
int tf__stat_beneath_cached(int dirfd, const char *name, struct stat *st);

/* Writes len bytes to fd; ENOSPC and friends become TF_ENOSPC / TF_EIO. */
int tf__fs_write_all(int fd, const void *buf, size_t len, tf__err *e);

/* Asks the kernel to start writing [off, off + len) of fd to disk without
   waiting for it (sync_file_range), so a later fsync has less to do. Best
   effort: nothing is reported. */
void tf__fs_start_writeback(int fd, uint64_t off, uint64_t len);

/* A file being written under a temporary name, published by rename. */
typedef struct tf__tmpfile {
    int dirfd;      /* where the temporary lives */
    int fd;         /* open for writing; -1 when closed */
    int direct;     /* 1: writing straight into a non-regular file */
    int owns_dirfd; /* dirfd was opened for this file and is closed with it */
    char name[64];  /* the temporary's name inside dirfd */
} tf__tmpfile;

/* Gives fd the mode (and owner, where allowed) of the regular file
   dirfd/name it is about to replace by rename. Best effort. */
void tf__keep_mode(int dirfd, const char *name, int fd);
/* Clears t: no file, no directory. */
void tf__tmpfile_init(tf__tmpfile *t);
/* Creates an unused "<prefix><16 random hex digits>" in dirfd. */
int tf__tmpfile_create(int dirfd, const char *prefix, mode_t mode, tf__tmpfile *t,
                       tf__err *e);
/* Names an unnamed t->fd (O_TMPFILE) "<prefix><16 random hex digits>" in
   dirfd, which t->dirfd becomes (its owns_dirfd untouched). TF_ENOENT when
   dirfd was removed, or /proc is missing to a process without
   CAP_DAC_READ_SEARCH. */
int tf__tmpfile_link(int dirfd, const char *prefix, tf__tmpfile *t, tf__err *e);
/* Links the unnamed file fd (O_TMPFILE) as dirfd/name: never replaces
   (EEXIST, whatever is there, a symbolic link included, is left alone).
   0, or -1 with errno. */
int tf__fs_link_fd(int fd, int dirfd, const char *name);
/* Opens (creating) dirfd/t->name, locked against a second user (TF_EBUSY),
   positioned at its end; *have is what it holds, at most size (a longer one
   is emptied). With SERVER_TMP_MODE, a file there that is not our own or
   that others could write is replaced by a new one. */
int tf__tmpfile_open_resumable(int dirfd, tf__tmpfile *t, uint64_t size, mode_t mode,
                               uint64_t *have, tf__err *e);
/* Empties an open temporary, to start again from byte 0. */
int tf__tmpfile_restart(tf__tmpfile *t, tf__err *e);

/* Closes and removes the temporary; safe to call twice or after commit. */
void tf__tmpfile_abort(tf__tmpfile *t);
/* Closes the temporary but keeps it on disk, to be resumed later. */
void tf__tmpfile_keep(tf__tmpfile *t);

/* Feeds bytes [from, from + len) of fd to d, reading through buf. TF_EIO
   when the file cannot be read or is shorter. */
int tf__fs_hash_range(int fd, uint64_t from, uint64_t len, tf__digest *d, uint8_t *buf,
                      size_t buf_len, tf__err *e);
/* The same from byte 0. */
int tf__fs_hash_prefix(int fd, uint64_t len, tf__digest *d, uint8_t *buf, size_t buf_len,
                       tf__err *e);

#endif /* TF_FILEIO_H */
