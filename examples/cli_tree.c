/*
 * cli_tree.c - local tree walking, destination checks and sync planning
 * for tcpfile-client (see cli_tree.h).
 *
 * Every step below a root is taken with openat(O_NOFOLLOW) from the
 * directory before it, so neither a walk nor a destination check can be
 * led out of the tree by a symbolic link: the server's names are checked
 * by the library, and checked again here, because a local link can point
 * anywhere.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_TMPFILE, AT_EMPTY_PATH */
#endif

#include "cli_tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

__attribute__((format(printf, 3, 4))) static void say(char *err, size_t len, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && len)
        vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

int tree_list_add(tree_list *l, const char *path, int dir, uint64_t size, int64_t mtime)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        tree_ent *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    char *p = strdup(path);
    if (!p)
        return -1;
    l->v[l->n++] = (tree_ent){.path = p, .dir = dir, .size = size, .mtime = mtime};
    return 0;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const tree_ent *)a)->path, ((const tree_ent *)b)->path);
}

void tree_list_sort(tree_list *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, by_path);
}

void tree_list_free(tree_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].path);
    free(l->v);
    *l = (tree_list){0};
}

int tree_join(char *buf, size_t len, const char *root, const char *rel)
{
    size_t n = strlen(root);
    int w;
    if (!rel[0])
        w = snprintf(buf, len, "%s", root);
    else if (n == 0)
        w = snprintf(buf, len, "%s", rel);
    else
        w = snprintf(buf, len, "%s%s%s", root, root[n - 1] == '/' ? "" : "/", rel);
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

int tree_is_temp(const char *name)
{
    static const char part[] = ".tcpfile-part";
    size_t n = strlen(name), k = sizeof part - 1;
    return strncmp(name, ".tcpfile-part-", k + 1) == 0 ||
           (name[0] == '.' && n > k + 1 && strcmp(name + n - k, part) == 0);
}

/* Adds the entries of the open directory fd (path rel under the root) and
   recurses into its sub-directories. Closes fd. */
static int walk(int fd, const char *rel, int depth, int max_depth, tree_list *out,
                tree_warn_fn warn, void *user, char *err, size_t errlen)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        say(err, errlen, "%s: %s", rel[0] ? rel : ".", strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    char path[8192];
    while (rc == 0 && (errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            tree_is_temp(e->d_name))
            continue;
        if (tree_join(path, sizeof path, rel, e->d_name) != 0) {
            say(err, errlen, "%s/%s: path too long", rel, e->d_name);
            rc = -1;
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (warn)
                warn(user, path, strerror(errno));
            continue;
        }
        if (S_ISLNK(st.st_mode)) {
            if (warn)
                warn(user, path, "a symbolic link: skipped");
            continue;
        }
        if (S_ISREG(st.st_mode)) {
            if (tree_list_add(out, path, 0, (uint64_t)st.st_size, (int64_t)st.st_mtime) != 0) {
                say(err, errlen, "out of memory");
                rc = -1;
            }
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (warn)
                warn(user, path, "not a regular file or directory: skipped");
            continue;
        }
        if (depth + 1 > max_depth) {
            say(err, errlen, "%s: deeper than %d levels", path, max_depth);
            rc = -1;
            break;
        }
        if (tree_list_add(out, path, 1, 0, (int64_t)st.st_mtime) != 0) {
            say(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            if (warn)
                warn(user, path, strerror(errno));
            continue;
        }
        rc = walk(sub, path, depth + 1, max_depth, out, warn, user, err, errlen);
    }
    if (rc == 0 && errno != 0 && !e) {
        say(err, errlen, "reading %s: %s", rel[0] ? rel : ".", strerror(errno));
        rc = -1;
    }
    closedir(d);
    return rc;
}

int tree_walk_local(const char *root, int max_depth, tree_list *out, tree_warn_fn warn,
                    void *user, char *err, size_t errlen)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        struct stat st;
        if (errno == ELOOP || (errno == ENOTDIR && lstat(root, &st) == 0 && S_ISLNK(st.st_mode)))
            say(err, errlen, "\"%s\" is a symbolic link, not a directory", root);
        else
            say(err, errlen, "\"%s\": %s", root, strerror(errno));
        return -1;
    }
    return walk(fd, "", 0, max_depth, out, warn, user, err, errlen);
}

int tree_rel_ok(const char *rel)
{
    if (!rel || !rel[0] || rel[0] == '/')
        return 0;
    const char *s = rel;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return 0;
        if (!slash)
            return 1;
        s = slash + 1;
    }
}

/* The message for a component of rel (its first n bytes) that could not
   be opened as a directory from fd, errno e: what is there says why. */
static void say_not_dir(int fd, const char *comp, const char *rel, size_t n, int e, char *err,
                        size_t errlen)
{
    struct stat st;
    int there = fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (there && S_ISLNK(st.st_mode))
        say(err, errlen, "\"%.*s\" is a symbolic link here: not followed", (int)n, rel);
    else if (there && !S_ISDIR(st.st_mode))
        say(err, errlen, "\"%.*s\" is a file here, not a directory", (int)n, rel);
    else
        say(err, errlen, "\"%.*s\": %s", (int)n, rel,
            e == ENOENT ? "no such directory" : strerror(e));
}

int tree_open_dir(int rootfd, const char *rel, size_t len, int mkdirs, char *err,
                  size_t errlen)
{
    int fd = rootfd;
    char comp[4096];
    const char *s = rel, *end = rel + len;
    while (s < end) {
        const char *slash = memchr(s, '/', (size_t)(end - s));
        size_t n = slash ? (size_t)(slash - s) : (size_t)(end - s);
        if (n >= sizeof comp) {
            say(err, errlen, "\"%.*s\": a component is too long", (int)len, rel);
            break;
        }
        memcpy(comp, s, n);
        comp[n] = '\0';
        /* No stat first: the open says what is there (a link: ELOOP, a
           file: ENOTDIR), and a stat is made only to word a refusal. */
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && mkdirs &&
            (mkdirat(fd, comp, 0777) == 0 || errno == EEXIST))
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            say_not_dir(fd, comp, rel, (size_t)(s - rel) + n, errno, err, errlen);
            break;
        }
        if (fd != rootfd)
            close(fd);
        fd = next;
        s = slash ? slash + 1 : end;
    }
    if (s < end) {
        if (fd != rootfd)
            close(fd);
        return -1;
    }
    if (fd == rootfd && (fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0)) < 0)
        say(err, errlen, "\"%s\": %s", rel, strerror(errno));
    return fd;
}

/* Checks rel and opens the destination root (not a link). Returns the
   descriptor, or -1 with the reason in err. */
static int open_root(const char *root, const char *rel, char *err, size_t errlen)
{
    if (!tree_rel_ok(rel)) {
        say(err, errlen, "refused the unsafe path \"%s\"", rel);
        return -1;
    }
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        say(err, errlen, "\"%s\": %s", root, errno == ELOOP ? "a symbolic link" : strerror(errno));
    return fd;
}

int tree_local_safe(const char *root, const char *rel, int mkdirs, char *err, size_t errlen)
{
    int rootfd = open_root(root, rel, err, errlen);
    if (rootfd < 0)
        return -1;
    const char *slash = strrchr(rel, '/');
    const char *last = slash ? slash + 1 : rel;
    int fd = tree_open_dir(rootfd, rel, slash ? (size_t)(slash - rel) : 0, mkdirs, err, errlen);
    close(rootfd);
    if (fd < 0)
        return -1;
    struct stat st;
    int there = fstatat(fd, last, &st, AT_SYMLINK_NOFOLLOW) == 0;
    int rc = -1;
    if (!there && errno != ENOENT)
        say(err, errlen, "\"%s\": %s", rel, strerror(errno));
    else if (there && S_ISLNK(st.st_mode))
        say(err, errlen, "\"%s\" is a symbolic link here: not written through", rel);
    else if (mkdirs == 2) { /* a directory, made if missing */
        rc = there ? (S_ISDIR(st.st_mode) ? 0 : -1) : mkdirat(fd, last, 0777);
        if (rc != 0 && !there && errno == EEXIST)
            rc = 0;
        if (rc != 0)
            say(err, errlen, "\"%s\": %s", rel,
                there ? "is a file here, not a directory" : strerror(errno));
    } else if (there && S_ISDIR(st.st_mode)) { /* the file itself */
        say(err, errlen, "\"%s\" is a directory here", rel);
    } else {
        rc = 0;
    }
    close(fd);
    return rc;
}

int tree_tmpfile(int dirfd)
{
#ifdef O_TMPFILE
    return openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
#else
    (void)dirfd;
    errno = EOPNOTSUPP;
    return -1;
#endif
}

int tree_tmpfile_link(int fd, int dirfd, const char *name, int *via_proc)
{
#ifdef AT_EMPTY_PATH
    /* Allowed without privilege since Linux 6.10 for the opener's own
       file; before, it needs CAP_DAC_READ_SEARCH (ENOENT otherwise). */
    if (!*via_proc) {
        if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
            return 0;
        if (errno != ENOENT && errno != EPERM)
            return -1;
        *via_proc = 1;
    }
#endif
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW);
}

int tree_local_remove(const char *root, const char *rel, int dir, char *err, size_t errlen)
{
    int rootfd = open_root(root, rel, err, errlen);
    if (rootfd < 0)
        return -1;
    const char *slash = strrchr(rel, '/');
    int fd = tree_open_dir(rootfd, rel, slash ? (size_t)(slash - rel) : 0, 0, err, errlen);
    close(rootfd);
    if (fd < 0)
        return -1;
    int rc = unlinkat(fd, slash ? slash + 1 : rel, dir ? AT_REMOVEDIR : 0);
    if (rc != 0)
        say(err, errlen, "\"%s\": %s", rel, strerror(errno));
    close(fd);
    return rc == 0 ? 0 : -1;
}

static int plan_add(tree_plan *p, tree_act_kind kind, const tree_ent *src, const tree_ent *dst)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        tree_act *v = realloc(p->v, cap * sizeof *v);
        if (!v)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (tree_act){.kind = kind, .src = src, .dst = dst};
    if (kind == ACT_SEND || kind == ACT_COMPARE) {
        p->files++;
        p->bytes += src->size;
    }
    return 0;
}

int tree_plan_make(const tree_list *src, const tree_list *dst, int checksum, int del,
                   tree_plan *out)
{
    *out = (tree_plan){0};
    size_t i = 0, j = 0;
    /* Pass 1, in path order: what to create or send. */
    while (i < src->n) {
        const tree_ent *s = &src->v[i];
        int c = j < dst->n ? strcmp(s->path, dst->v[j].path) : -1;
        if (c > 0) {
            j++; /* only on the destination: pass 2 */
            continue;
        }
        const tree_ent *d = c == 0 ? &dst->v[j] : NULL;
        int rc = 0;
        if (d && d->dir != s->dir)
            rc = plan_add(out, ACT_CONFLICT, s, d);
        else if (s->dir)
            rc = d ? 0 : plan_add(out, ACT_MKDIR, s, NULL);
        else if (!d || d->size != s->size)
            rc = plan_add(out, ACT_SEND, s, d);
        else if (checksum || d->mtime != s->mtime)
            rc = plan_add(out, ACT_COMPARE, s, d);
        else
            out->same++;
        if (rc != 0) {
            tree_plan_free(out);
            return -1;
        }
        i++;
        j += c == 0;
    }
    if (!del)
        return 0;
    /* Pass 2, in reverse path order so that a directory's contents go
       before it: what the source lacks. */
    i = src->n;
    for (j = dst->n; j-- > 0;) {
        const tree_ent *d = &dst->v[j];
        int c = 1;
        while (i > 0 && (c = strcmp(src->v[i - 1].path, d->path)) > 0)
            i--;
        if (i > 0 && c == 0)
            continue;
        if (plan_add(out, d->dir ? ACT_RMDIR : ACT_DELETE, NULL, d) != 0) {
            tree_plan_free(out);
            return -1;
        }
    }
    return 0;
}

void tree_plan_free(tree_plan *p)
{
    free(p->v);
    *p = (tree_plan){0};
}
