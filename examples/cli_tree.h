/*
 * cli_tree.h - the local half of tcpfile-client's tree commands (get -r,
 * put -r, sync, rm -r): walking a local directory, checking that a path a
 * server sent stays inside the local destination, and planning what a sync
 * sends, skips and deletes.
 *
 * Pure C and POSIX, no tcpfile.h: the planning is tested without a server,
 * and the client turns the plan into library calls. Compiled into
 * tcpfile-client only (examples/CMakeLists.txt).
 */
#ifndef TF_CLI_TREE_H
#define TF_CLI_TREE_H

#include <stddef.h>
#include <stdint.h>

/* One file or directory of a tree, by its path relative to the tree's top
   ("a/b/c.txt", never "" nor with a leading or trailing '/'). */
typedef struct tree_ent {
    char *path;     /* owned by the list */
    int dir;        /* 1: a directory, 0: a regular file */
    uint64_t size;  /* files: bytes */
    int64_t mtime;  /* seconds since the epoch */
} tree_ent;

typedef struct tree_list {
    tree_ent *v;
    size_t n, cap;
} tree_list;

/* Appends a copy of path. Returns 0, or -1 when out of memory. */
int tree_list_add(tree_list *l, const char *path, int dir, uint64_t size, int64_t mtime);
/* Sorts by path, bytewise: both sides of a sync are compared in this order. */
void tree_list_sort(tree_list *l);
void tree_list_free(tree_list *l);

/* Called for each local entry the walk leaves out (a symbolic link, a
   device, an unreadable directory), with the path and why. */
typedef void (*tree_warn_fn)(void *user, const char *path, const char *why);

/*
 * Walks the local directory root (not following a symbolic link anywhere:
 * root itself must be a real directory) and adds every regular file and
 * directory below it to out, unsorted. Symbolic links and special files are
 * skipped through warn. Returns 0, or -1 with the reason in err (root
 * missing or not a directory, out of memory, deeper than max_depth).
 */
int tree_walk_local(const char *root, int max_depth, tree_list *out, tree_warn_fn warn,
                    void *user, char *err, size_t errlen);

/* Whether rel is a path this side may write under a destination: non-empty
   components separated by single '/', none "." or "..", no leading or
   trailing '/', no control characters. A server's listing is checked with
   it even though the library checks names too. Returns 1 or 0. */
int tree_rel_ok(const char *rel);

/*
 * Makes sure root/rel can be written without leaving root: every directory
 * component of rel under root is a real directory (created, mode 0777 less
 * the umask, when mkdirs is set and it is missing), none is a symbolic link,
 * and the last component, if it exists, is neither a symbolic link nor a
 * directory. root itself must exist and be a directory (not a link).
 * Returns 0, or -1 with the reason in err.
 */
int tree_local_safe(const char *root, const char *rel, int mkdirs, char *err, size_t errlen);
/* (mkdirs 2: rel itself is a directory, made when missing.) */

/*
 * Opens the directory made of the first len bytes of rel ("" or len 0: a
 * new descriptor of rootfd itself) one component at a time from rootfd,
 * each with O_NOFOLLOW, making a missing one (mode 0777 less the umask)
 * when mkdirs is set. A get -r keeps the descriptor while it writes that
 * directory's files, rather than walking from the top for each. Returns
 * the descriptor, or -1 with the reason in err (a symbolic link, a file,
 * no such directory).
 */
int tree_open_dir(int rootfd, const char *rel, size_t len, int mkdirs, char *err,
                  size_t errlen);

/* An unnamed file in the directory dirfd, open to write and read back
   (O_TMPFILE):
   nothing shows under any name until tree_tmpfile_link, and nothing is
   left if the program dies first. Returns the descriptor, or -1 with
   errno (EOPNOTSUPP, EISDIR or EINVAL where the file system or kernel
   cannot). */
int tree_tmpfile(int dirfd);
/* Gives the unnamed file fd the name dirfd/name: never over anything (an
   existing name, a link among them, fails with EEXIST). *via_proc starts
   at 0 and remembers that this kernel wants the /proc/self/fd path.
   Returns 0, or -1 with errno. */
int tree_tmpfile_link(int fd, int dirfd, const char *name, int *via_proc);

/* Whether a local name is one of the client's own temporaries (a get's
   ".tcpfile-part-XXXXXX", a kept ".NAME.tcpfile-part"): walks leave them
   out, so they are never uploaded nor deleted. */
int tree_is_temp(const char *name);

/*
 * Removes root/rel (a file, or with dir an empty directory) without
 * following a symbolic link on the way: each directory of rel is opened
 * from the one before with O_NOFOLLOW, and the last component is removed
 * from its parent (a link there is removed as a link, never followed).
 * Returns 0, or -1 with the reason in err.
 */
int tree_local_remove(const char *root, const char *rel, int dir, char *err, size_t errlen);

/* What a sync does with one path. */
typedef enum tree_act_kind {
    ACT_SEND,     /* missing on the destination, or its size differs */
    ACT_COMPARE,  /* same size, different mtime (or --checksum): send
                     unless the digests agree */
    ACT_MKDIR,    /* a directory missing on the destination */
    ACT_DELETE,   /* --delete: a file the source lacks */
    ACT_RMDIR,    /* --delete: a directory the source lacks */
    ACT_CONFLICT  /* a file on one side, a directory on the other */
} tree_act_kind;

typedef struct tree_act {
    tree_act_kind kind;
    const tree_ent *src; /* NULL for deletions */
    const tree_ent *dst; /* NULL when missing on the destination */
} tree_act;

typedef struct tree_plan {
    tree_act *v;
    size_t n, cap;
    size_t files;   /* ACT_SEND + ACT_COMPARE */
    uint64_t bytes; /* their source sizes */
    size_t same;    /* files skipped: same size and mtime */
} tree_plan;

/*
 * Compares two sorted lists. Directories come in the plan before anything
 * under them (ACT_MKDIR in path order); deletions last, files before the
 * directories that hold them (reverse path order) so that each directory
 * is empty when it is removed. checksum: compare every file present on
 * both sides with the same size by digest (ACT_COMPARE) rather than
 * skipping on equal mtimes. del: plan deletions. Returns 0, or -1 when out
 * of memory. The plan points into src and dst.
 */
int tree_plan_make(const tree_list *src, const tree_list *dst, int checksum, int del,
                   tree_plan *out);
void tree_plan_free(tree_plan *p);

/* root + "/" + rel into buf (just root when rel is ""; no doubled '/').
   Returns 0, or -1 when it does not fit. */
int tree_join(char *buf, size_t len, const char *root, const char *rel);

#endif /* TF_CLI_TREE_H */
