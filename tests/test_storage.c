/*
 * test_storage.c - the local storage backend (storage_local.c) through the
 * storage interface: staging and committing uploads, and the operations
 * the file tree (issue 12) will use - stat, the paged listing, remove,
 * rename, mkdir - confined to the root, never through a symbolic link,
 * never showing or touching the staging directory.
 *
 * Each test gets a fresh root under a temporary directory, with an
 * "outside" directory beside it that symbolic links point into, so that
 * any escape shows as a change there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "storage.h"
#include "testutil.h"

typedef struct fixture {
    char base[64];
    char root[96];
    char outside[96];
    tf__storage *st;
} fixture;

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int exists_in(const char *dir, const char *name)
{
    char path[512];
    struct stat s;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return lstat(path, &s) == 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->base, sizeof f->base, "/tmp/tf-storage.XXXXXX");
    assert_non_null(mkdtemp(f->base));
    snprintf(f->root, sizeof f->root, "%s/root", f->base);
    snprintf(f->outside, sizeof f->outside, "%s/outside", f->base);
    assert_int_equal(mkdir(f->root, 0700), 0);
    assert_int_equal(mkdir(f->outside, 0700), 0);
    put_file(f->outside, "secret", "outside");
    /* A link to a directory outside, and one to a file outside. */
    char path[512];
    snprintf(path, sizeof path, "%s/out", f->root);
    assert_int_equal(symlink(f->outside, path), 0);
    snprintf(path, sizeof path, "%s/secret-link", f->root);
    assert_int_equal(symlink("../outside/secret", path), 0);
    tf__storage_local_config cfg = {.read_only = 0, .resume_ttl_s = 3600, .max_partials = 4};
    tf__err e = {{0}};
    assert_int_equal(tf__storage_local_open(&f->st, f->root, &cfg, &e), TF_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    f->st->ops->close(f->st);
    tu_rm_rf(f->base);
    free(f);
    return 0;
}

/* The outside directory holds exactly its one untouched file. */
static void assert_outside_untouched(fixture *f)
{
    char path[512];
    char buf[32] = {0};
    snprintf(path, sizeof path, "%s/secret", f->outside);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    assert_non_null(fgets(buf, sizeof buf, in));
    fclose(in);
    assert_string_equal(buf, "outside");
    assert_false(exists_in(f->outside, "x"));
    assert_false(exists_in(f->outside, "d"));
}

static void test_storage_stat(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__fstat s;
    tf__err e = {{0}};
    put_file(f->root, "a.txt", "hello");
    assert_int_equal(st->ops->mkdir(st, "dir", &e), TF_OK);
    put_file(f->root, "dir/inner", "12345678");

    assert_int_equal(st->ops->stat(st, "a.txt", &s, &e), TF_OK);
    assert_int_equal(s.type, TF__FT_FILE);
    assert_int_equal(s.size, 5);
    assert_true(s.mtime > 0);
    assert_int_equal(st->ops->stat(st, "dir", &s, &e), TF_OK);
    assert_int_equal(s.type, TF__FT_DIR);
    assert_int_equal(st->ops->stat(st, "dir/inner", &s, &e), TF_OK);
    assert_int_equal(s.size, 8);

    assert_int_equal(st->ops->stat(st, "missing", &s, &e), TF_ENOENT);
    assert_int_equal(st->ops->stat(st, "dir/missing", &s, &e), TF_ENOENT);
    /* Links: neither the link itself nor anything through it. */
    assert_int_equal(st->ops->stat(st, "secret-link", &s, &e), TF_EACCES);
    assert_int_equal(st->ops->stat(st, "out", &s, &e), TF_EACCES);
    assert_int_equal(st->ops->stat(st, "out/secret", &s, &e), TF_EACCES);
    /* Malformed paths and the staging directory. */
    const char *bad[] = {"", "/etc/passwd", "..", "../outside/secret", "a/../a.txt",
                         "dir//inner", "./a.txt", "dir/", "dir/."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(st->ops->stat(st, bad[i], &s, &e), TF_EINVAL);
    assert_int_equal(st->ops->stat(st, ".tcpfile-tmp", &s, &e), TF_EACCES);
    assert_int_equal(st->ops->stat(st, ".tcpfile-tmp/x", &s, &e), TF_EACCES);
}

/* Lists dir whole, checking that no batch is over the bound; returns the
   number of entries and counts the batches. */
static size_t list_all(tf__storage *st, const char *dir, char seen[][32], size_t max,
                       tf__fstat *types, size_t *batches)
{
    tf__lister *li = NULL;
    tf__err e = {{0}};
    size_t total = 0, n;
    const tf__dirent *b;
    *batches = 0;
    assert_int_equal(st->ops->list_open(st, dir, &li, &e), TF_OK);
    while (st->ops->list_next(st, li, &b, &n, &e) == TF_OK && n > 0) {
        assert_true(n <= TF_STORAGE_LIST_BATCH);
        (*batches)++;
        for (size_t i = 0; i < n; i++) {
            assert_true(total < max);
            assert_true(strlen(b[i].name) < 32);
            memcpy(seen[total], b[i].name, strlen(b[i].name) + 1);
            types[total] = b[i].st;
            total++;
        }
    }
    st->ops->list_close(st, li);
    return total;
}

static void test_storage_list_paged(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    enum { FILES = 150 };
    static char seen[FILES + 16][32];
    static tf__fstat types[FILES + 16];
    char name[32];
    for (int i = 0; i < FILES; i++) {
        snprintf(name, sizeof name, "f%03d", i);
        put_file(f->root, name, "x");
    }
    assert_int_equal(st->ops->mkdir(st, "sub", &e), TF_OK);
    put_file(f->root, "sub/inner", "y");
    /* An upload in progress: the staging directory exists now. */
    tf__upload *up = NULL;
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_true(exists_in(f->root, ".tcpfile-tmp"));

    size_t batches;
    size_t n = list_all(st, "", seen, FILES + 16, types, &batches);
    /* 150 files, sub, and the two links; never ".", "..", the staging. */
    assert_int_equal(n, FILES + 3);
    assert_true(batches >= (FILES + 3 + TF_STORAGE_LIST_BATCH - 1) / TF_STORAGE_LIST_BATCH);
    int files = 0, dirs = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(seen[i], ".tcpfile-tmp");
        assert_string_not_equal(seen[i], ".");
        assert_string_not_equal(seen[i], "..");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]); /* each once */
        files += types[i].type == TF__FT_FILE;
        dirs += types[i].type == TF__FT_DIR;
        other += types[i].type == TF__FT_OTHER; /* the links, not followed */
    }
    assert_int_equal(files, FILES);
    assert_int_equal(dirs, 1);
    assert_int_equal(other, 2);

    n = list_all(st, "sub", seen, FILES + 16, types, &batches);
    assert_int_equal(n, 1);
    assert_string_equal(seen[0], "inner");
    assert_int_equal(types[0].size, 1);

    tf__lister *li = NULL;
    assert_int_equal(st->ops->list_open(st, "out", &li, &e), TF_EACCES);
    assert_int_equal(st->ops->list_open(st, ".tcpfile-tmp", &li, &e), TF_EACCES);
    assert_int_equal(st->ops->list_open(st, "nothing", &li, &e), TF_ENOENT);
    assert_int_equal(st->ops->list_open(st, "../outside", &li, &e), TF_EINVAL);
    assert_null(li);
    st->ops->abort(st, &up);
    assert_null(up);
}

/* The listing a list request sends, built from the pages: regular files
   only, sorted, bounded. */
static void test_storage_scan_from_pages(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    char name[32];
    for (int i = 99; i >= 0; i--) {
        snprintf(name, sizeof name, "n%02d", i);
        put_file(f->root, name, "abc");
    }
    assert_int_equal(st->ops->mkdir(st, "adir", &e), TF_OK);
    tf_listing *l = NULL;
    assert_int_equal(tf__storage_scan(st, 1000, 255, &l, &e), TF_OK);
    assert_int_equal(tf_listing_count(l), 100);
    for (size_t i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "n%02zu", i);
        assert_string_equal(tf_listing_at(l, i)->name, name);
        assert_int_equal(tf_listing_at(l, i)->size, 3);
    }
    tf_listing_free(l);
    l = NULL;
    assert_int_equal(tf__storage_scan(st, 99, 255, &l, &e), TF_ETOOBIG);
    assert_null(l);
}

static void test_storage_remove(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    put_file(f->root, "x", "1");
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);
    assert_int_equal(st->ops->mkdir(st, "full", &e), TF_OK);
    put_file(f->root, "full/keep", "2");

    assert_int_equal(st->ops->remove(st, "x", &e), TF_OK);
    assert_false(exists_in(f->root, "x"));
    assert_int_equal(st->ops->remove(st, "d", &e), TF_OK);
    assert_false(exists_in(f->root, "d"));
    assert_int_equal(st->ops->remove(st, "full", &e), TF_ENOTEMPTY); /* not empty */
    assert_true(exists_in(f->root, "full/keep"));
    assert_int_equal(st->ops->remove(st, "x", &e), TF_ENOENT);
    /* Links are refused, and nothing is removed through one. */
    assert_int_equal(st->ops->remove(st, "secret-link", &e), TF_EACCES);
    assert_true(exists_in(f->root, "secret-link"));
    assert_int_equal(st->ops->remove(st, "out/secret", &e), TF_EACCES);
    assert_int_equal(st->ops->remove(st, "out", &e), TF_EACCES);
    assert_int_equal(st->ops->remove(st, "../outside/secret", &e), TF_EINVAL);
    assert_outside_untouched(f);
    /* The staging directory is the backend's. */
    tf__upload *up = NULL;
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->remove(st, ".tcpfile-tmp", &e), TF_EACCES);
    assert_true(exists_in(f->root, ".tcpfile-tmp"));
    st->ops->abort(st, &up);
    assert_int_equal(st->ops->remove(st, "full/keep", &e), TF_OK);
    assert_int_equal(st->ops->remove(st, "full", &e), TF_OK);
}

static void test_storage_rename(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    tf__fstat s;
    put_file(f->root, "a", "AAA");
    put_file(f->root, "b", "BB");
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);

    /* No-replace leaves both as they were. */
    assert_int_equal(st->ops->rename(st, "a", "b", TF_STORAGE_NOREPLACE, &e), TF_EEXIST);
    assert_int_equal(st->ops->stat(st, "a", &s, &e), TF_OK);
    assert_int_equal(s.size, 3);
    assert_int_equal(st->ops->stat(st, "b", &s, &e), TF_OK);
    assert_int_equal(s.size, 2);
    /* Without it, b is replaced. */
    assert_int_equal(st->ops->rename(st, "a", "b", 0, &e), TF_OK);
    assert_int_equal(st->ops->stat(st, "b", &s, &e), TF_OK);
    assert_int_equal(s.size, 3);
    assert_int_equal(st->ops->stat(st, "a", &s, &e), TF_ENOENT);
    /* Into a directory and back, no-replace onto a free name. */
    assert_int_equal(st->ops->rename(st, "b", "d/b", TF_STORAGE_NOREPLACE, &e), TF_OK);
    assert_true(exists_in(f->root, "d/b"));
    assert_int_equal(st->ops->rename(st, "d/b", "c", 0, &e), TF_OK);
    assert_int_equal(st->ops->rename(st, "missing", "z", 0, &e), TF_ENOENT);
    /* Never out of the root, through a link, or into the staging. */
    assert_int_equal(st->ops->rename(st, "c", "out/x", 0, &e), TF_EACCES);
    assert_int_equal(st->ops->rename(st, "c", "../outside/x", 0, &e), TF_EINVAL);
    assert_int_equal(st->ops->rename(st, "out/secret", "stolen", 0, &e), TF_EACCES);
    assert_int_equal(st->ops->rename(st, "secret-link", "l2", 0, &e), TF_EACCES);
    assert_int_equal(st->ops->rename(st, "c", ".tcpfile-tmp/x", 0, &e), TF_EACCES);
    assert_int_equal(st->ops->rename(st, "c", ".tcpfile-tmp", 0, &e), TF_EACCES);
    assert_false(exists_in(f->root, "stolen"));
    assert_true(exists_in(f->root, "c"));
    assert_outside_untouched(f);
}

static void test_storage_mkdir(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    tf__fstat s;
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_EEXIST);
    assert_int_equal(st->ops->mkdir(st, "d/e", &e), TF_OK);
    assert_int_equal(st->ops->stat(st, "d/e", &s, &e), TF_OK);
    assert_int_equal(s.type, TF__FT_DIR);
    assert_int_equal(st->ops->mkdir(st, "missing/e", &e), TF_ENOENT);
    assert_int_equal(st->ops->mkdir(st, "out/x", &e), TF_EACCES);
    assert_int_equal(st->ops->mkdir(st, "out/d", &e), TF_EACCES);
    assert_int_equal(st->ops->mkdir(st, "../outside/d", &e), TF_EINVAL);
    assert_int_equal(st->ops->mkdir(st, ".tcpfile-tmp", &e), TF_EACCES);
    assert_outside_untouched(f);
}

/* Stage, write, commit; a resumable upload kept and taken up again; an
   aborted one leaves nothing. */
static void test_storage_stage_commit(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    tf__upload *up = NULL;
    assert_int_equal(st->ops->check_target(st, "new", 0, &e), TF_OK);
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, "hello", 5, &e), TF_OK);
    assert_int_equal(st->ops->commit(st, &up, "new", 0, &e), TF_OK);
    assert_null(up);
    int fd = -1;
    uint64_t size = 0, id[TF_STORAGE_ID_LEN];
    char buf[8] = {0};
    assert_int_equal(st->ops->open_read(st, "new", &fd, &size, id, &e), TF_OK);
    assert_int_equal(size, 5);
    assert_int_equal(st->ops->read_at(st, fd, buf, sizeof buf, 1), 4);
    assert_string_equal(buf, "ello");
    st->ops->close_read(st, fd);
    assert_int_equal(st->ops->check_target(st, "new", 0, &e), TF_EEXIST);
    assert_int_equal(st->ops->open_read(st, "secret-link", &fd, &size, id, &e), TF_EACCES);

    uint64_t have = 99;
    int resumable = 0;
    assert_int_equal(st->ops->stage_resumable(st, "stem1", 10, &up, &have, &resumable, &e),
                     TF_OK);
    assert_int_equal(have, 0);
    assert_int_equal(resumable, 1);
    assert_int_equal(st->ops->write(st, up, "abcd", 4, &e), TF_OK);
    st->ops->keep(st, &up);
    assert_null(up);
    assert_int_equal(st->ops->stage_resumable(st, "stem1", 10, &up, &have, &resumable, &e),
                     TF_OK);
    assert_int_equal(have, 4);
    /* The kept bytes hash like any others. */
    tf__digest d1 = {0}, d2 = {0};
    uint8_t h1[TF_DIGEST_SIZE], h2[TF_DIGEST_SIZE], hb[64];
    assert_int_equal(tf__digest_begin(&d1, 1), TF_OK);
    assert_int_equal(tf__digest_begin(&d2, 1), TF_OK);
    assert_int_equal(st->ops->hash_range(st, -1, up, 0, 4, &d1, hb, sizeof hb, &e), TF_OK);
    tf__digest_update(&d2, "abcd", 4);
    tf__digest_final(&d1, h1);
    tf__digest_final(&d2, h2);
    tf__digest_end(&d1);
    tf__digest_end(&d2);
    assert_memory_equal(h1, h2, TF_DIGEST_SIZE);
    st->ops->abort(st, &up);
    assert_null(up);
    assert_int_equal(st->ops->stage_resumable(st, "stem1", 10, &up, &have, &resumable, &e),
                     TF_OK);
    assert_int_equal(have, 0); /* aborted: gone */
    st->ops->abort(st, &up);
    /* Committing over a link is refused, and the link's target untouched. */
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, "x", 1, &e), TF_OK);
    assert_int_equal(st->ops->commit(st, &up, "secret-link", 1, &e), TF_EACCES);
    assert_null(up);
    assert_outside_untouched(f);
}

/* A view of a sub-directory (issue 13, a confined user): made when missing
   (0700) or refused, never through a symbolic link anywhere on the way,
   with its own staging, nothing above it reachable, closed on its own. */
static void test_storage_sub_view(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st, *v = NULL;
    tf__err e = {{0}};
    assert_int_equal(st->ops->sub(st, "team/alice", 0, &v, &e), TF_ENOENT);
    assert_null(v);
    assert_false(exists_in(f->root, "team"));
    tf__err_clear(&e);
    assert_int_equal(st->ops->sub(st, "team/alice", 1, &v, &e), TF_OK);
    assert_non_null(v);
    char path[256];
    struct stat sb;
    snprintf(path, sizeof path, "%s/team/alice", f->root);
    assert_int_equal(lstat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    /* Uploads land in the view, staged inside it. */
    tf__upload *up = NULL;
    assert_int_equal(v->ops->stage(v, &up, &e), TF_OK);
    assert_int_equal(v->ops->write(v, up, "hi", 2, &e), TF_OK);
    assert_int_equal(v->ops->commit(v, &up, "a.txt", 1, &e), TF_OK);
    assert_true(exists_in(path, "a.txt"));
    assert_true(exists_in(path, TF_TMP_DIR));
    assert_false(exists_in(f->root, "a.txt"));
    /* The root's files are out of reach; links inside are refused. */
    put_file(f->root, "top", "root");
    int fd = -1;
    uint64_t size, id[TF_STORAGE_ID_LEN];
    tf__err_clear(&e);
    assert_int_equal(v->ops->open_read(v, "top", &fd, &size, id, &e), TF_ENOENT);
    assert_int_equal(symlink("../../top", strcat(path, "/up")), 0);
    tf__err_clear(&e);
    assert_int_equal(v->ops->open_read(v, "up", &fd, &size, id, &e), TF_EACCES);
    /* The view outlives nothing of its parent's and the reverse. */
    v->ops->close(v);
    /* A link on the way, or as the directory itself, is refused. */
    tf__storage *w = NULL;
    tf__err_clear(&e);
    assert_int_equal(st->ops->sub(st, "out", 1, &w, &e), TF_EACCES);
    tf__err_clear(&e);
    assert_int_equal(st->ops->sub(st, "out/x", 1, &w, &e), TF_EACCES);
    assert_null(w);
    assert_false(exists_in(f->outside, "x"));
    /* A file where a directory should be. */
    put_file(f->root, "plain", "x");
    tf__err_clear(&e);
    assert_int_equal(st->ops->sub(st, "plain", 1, &w, &e), TF_EACCES);
    assert_outside_untouched(f);
}

/* Entries of root/dir, "." and ".." aside (0 when it is missing). */
static int entries_in(fixture *f, const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", f->root, dir);
    DIR *d = opendir(path);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void assert_holds(fixture *f, const char *name, const char *text)
{
    char path[512], buf[64] = {0};
    snprintf(path, sizeof path, "%s/%s", f->root, name);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    size_t n = fread(buf, 1, sizeof buf - 1, in);
    fclose(in);
    assert_int_equal(n, strlen(text));
    assert_string_equal(buf, text);
}

/* Stages name in place with text, checking that nothing has a name yet:
   neither a staging directory nor a new entry in name's directory. */
static tf__upload *stage_text(fixture *f, const char *name, const char *dir, const char *text)
{
    tf__storage *st = f->st;
    tf__err e = {{0}};
    tf__upload *up = NULL;
    int before = entries_in(f, dir);
    assert_int_equal(st->ops->stage_named(st, name, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, text, strlen(text), &e), TF_OK);
    assert_int_equal(entries_in(f, dir), before);
    assert_int_equal(entries_in(f, ".tcpfile-tmp"), 0);
    return up;
}

/* Uploads staged for their names (stage_named) are unnamed files
   (O_TMPFILE) in their directories until the commit: no name anywhere
   while written, none left by an abort or a refused commit, and the
   commit's conditions hold as for any upload. */
static void test_storage_stage_in_place(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);
    tf__upload *up = stage_text(f, "d/a", "d", "first");
    assert_int_equal(st->ops->commit(st, &up, "d/a", 0, &e), TF_OK);
    assert_holds(f, "d/a", "first");
    assert_int_equal(entries_in(f, "d"), 1);
    assert_int_equal(entries_in(f, ".tcpfile-tmp"), 0);

    /* Without overwrite (if-absent): refused, the old version kept. */
    up = stage_text(f, "d/a", "d", "second");
    assert_int_equal(st->ops->commit(st, &up, "d/a", 0, &e), TF_EEXIST);
    assert_null(up);
    assert_holds(f, "d/a", "first");
    /* If-match: a stale version is a conflict; the current one replaces. */
    int fd;
    uint64_t size, id[TF_STORAGE_ID_LEN], stale[TF_STORAGE_ID_LEN];
    assert_int_equal(st->ops->open_read(st, "d/a", &fd, &size, id, &e), TF_OK);
    st->ops->close_read(st, fd);
    memcpy(stale, id, sizeof id);
    stale[0]++;
    tf__commit_cond c = {.overwrite = 1, .expect_id = stale};
    up = stage_text(f, "d/a", "d", "third");
    assert_int_equal(st->ops->commit_cond(st, &up, "d/a", &c, &e), TF_ECONFLICT);
    assert_holds(f, "d/a", "first");
    c.expect_id = id;
    c.set_mtime = 1;
    c.mtime_sec = 1000000000;
    up = stage_text(f, "d/a", "d", "fourth");
    assert_int_equal(st->ops->commit_cond(st, &up, "d/a", &c, &e), TF_OK);
    assert_holds(f, "d/a", "fourth");
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "d/a", &fs, &e), TF_OK);
    assert_int_equal(fs.mtime, 1000000000);
    /* Aborted, and cut off (keep): nothing left. */
    up = stage_text(f, "d/b", "d", "gone");
    st->ops->abort(st, &up);
    up = stage_text(f, "d/b", "d", "gone");
    st->ops->keep(st, &up);
    assert_null(up);
    assert_int_equal(entries_in(f, "d"), 1);
    assert_int_equal(entries_in(f, ".tcpfile-tmp"), 0);
    /* Its directory must exist; a link on the way is refused. */
    assert_int_equal(st->ops->stage_named(st, "none/x", &up, &e), TF_ENOENT);
    assert_int_equal(st->ops->stage_named(st, "out/x", &up, &e), TF_EACCES);
    assert_null(up);
    assert_outside_untouched(f);
}

/* A group commit of uploads staged in place, into two directories and the
   root: each item fails alone, the others are published whole. */
static void test_storage_stage_in_place_group(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);
    assert_int_equal(st->ops->mkdir(st, "e", &e), TF_OK);
    put_file(f->root, "e/kept", "old");
    tf__commit_item items[4] = {
        {.up = stage_text(f, "d/one", "d", "1"), .name = "d/one", .cond = {.overwrite = 1}},
        {.up = stage_text(f, "d/two", "d", "2"), .name = "d/two", .cond = {.overwrite = 1}},
        {.up = stage_text(f, "e/kept", "e", "new"), .name = "e/kept", .cond = {.overwrite = 0}},
        {.up = stage_text(f, "top", "", "3"), .name = "top", .cond = {.overwrite = 1}},
    };
    st->ops->commit_many(st, items, 4);
    assert_int_equal(items[0].rc, TF_OK);
    assert_int_equal(items[1].rc, TF_OK);
    assert_int_equal(items[2].rc, TF_EEXIST);
    assert_int_equal(items[3].rc, TF_OK);
    for (int i = 0; i < 4; i++)
        assert_null(items[i].up);
    assert_holds(f, "d/one", "1");
    assert_holds(f, "d/two", "2");
    assert_holds(f, "e/kept", "old");
    assert_holds(f, "top", "3");
    assert_int_equal(entries_in(f, "d"), 2);
    assert_int_equal(entries_in(f, "e"), 1);
    assert_int_equal(entries_in(f, ".tcpfile-tmp"), 0);
}

static int block_openat2(void);

/* A group commit of uploads staged in place whose names were taken
   between the staging and the commit: a new name is linked straight to
   its place, with the published mode; one taken is checked and replaced
   or not as before (a link planted there is neither followed nor
   replaced, a file is kept without overwrite and replaced with it, a
   directory stays). */
static void test_storage_stage_in_place_names_taken(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    tf__err e = {{0}};
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);
    const char *names[] = {"d/new", "d/link", "d/link-keep", "d/dangling",
                           "d/file-keep", "d/file-over", "d/dir", "d/new2"};
    int overwrite[] = {1, 1, 0, 1, 0, 1, 1, 0};
    int want[] = {TF_OK, TF_EACCES, TF_EACCES, TF_EACCES, TF_EEXIST, TF_OK, TF_EISDIR, TF_OK};
    enum { N = sizeof names / sizeof names[0] };
    tf__commit_item items[N];
    for (int i = 0; i < N; i++)
        items[i] = (tf__commit_item){.up = stage_text(f, names[i], "d", "mine"),
                                     .name = names[i], .cond = {.overwrite = overwrite[i]}};
    char path[512];
    snprintf(path, sizeof path, "%s/d/link", f->root);
    assert_int_equal(symlink("../../outside/secret", path), 0);
    snprintf(path, sizeof path, "%s/d/link-keep", f->root);
    assert_int_equal(symlink("../../outside/secret", path), 0);
    snprintf(path, sizeof path, "%s/d/dangling", f->root);
    assert_int_equal(symlink("../../outside/x", path), 0);
    put_file(f->root, "d/file-keep", "theirs");
    put_file(f->root, "d/file-over", "theirs");
    snprintf(path, sizeof path, "%s/d/dir", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    st->ops->commit_many(st, items, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(items[i].rc, want[i]);
        assert_null(items[i].up);
    }
    assert_holds(f, "d/new", "mine");
    assert_holds(f, "d/new2", "mine");
    assert_holds(f, "d/file-keep", "theirs");
    assert_holds(f, "d/file-over", "mine");
    struct stat sb;
    snprintf(path, sizeof path, "%s/d/link", f->root);
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    snprintf(path, sizeof path, "%s/d/dir", f->root);
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    mode_t mask = umask(0);
    umask(mask);
    snprintf(path, sizeof path, "%s/d/new", f->root);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0666 & ~mask);
    assert_int_equal(entries_in(f, "d"), N);
    assert_int_equal(entries_in(f, ".tcpfile-tmp"), 0);
    assert_outside_untouched(f);
}

/* Installs a seccomp filter (for good: each ctest entry is a process of
   its own) that fails syscall nr with err when its argument arg has any
   of bits set. */
static int fail_syscall_with_bits(int nr, int arg, uint32_t bits, int err)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[arg])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, bits, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -1;
    return 0;
}

/* Where O_TMPFILE is refused (EOPNOTSUPP, as on a file system without
   it), an upload staged for its name is staged in the staging directory
   as before, and committed the same. */
static void test_storage_stage_in_place_fallback(void **state)
{
    fixture *f = *state;
    /* O_TMPFILE's own bit (O_TMPFILE includes O_DIRECTORY, which opendir
       sets too). */
    if (fail_syscall_with_bits(SYS_openat, 2, O_TMPFILE & ~O_DIRECTORY, EOPNOTSUPP) != 0)
        skip();
    /* openat2's flags are behind a pointer: refused whole, so that the
       O_TMPFILE is tried with openat. */
    if (block_openat2() != 0)
        skip();
    tf__storage *st = f->st;
    tf__err e = {{0}};
    tf__upload *up = NULL;
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);
    for (int i = 0; i < 2; i++) { /* the second without trying O_TMPFILE again */
        assert_int_equal(st->ops->stage_named(st, "d/a", &up, &e), TF_OK);
        assert_int_equal(st->ops->write(st, up, "fallback", 8, &e), TF_OK);
        assert_int_equal(entries_in(f, ".tcpfile-tmp"), 1);
        assert_int_equal(st->ops->commit(st, &up, "d/a", 1, &e), TF_OK);
        assert_holds(f, "d/a", "fallback");
        assert_int_equal(entries_in(f, ".tcpfile-tmp"), 0);
    }
}

/* A process without CAP_DAC_READ_SEARCH cannot linkat(AT_EMPTY_PATH)
   (ENOENT): the commit names the file through /proc/self/fd instead. */
static void test_storage_stage_in_place_unprivileged_link(void **state)
{
    fixture *f = *state;
    if (fail_syscall_with_bits(SYS_linkat, 4, AT_EMPTY_PATH, ENOENT) != 0)
        skip();
    tf__storage *st = f->st;
    tf__err e = {{0}};
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);
    tf__upload *up = stage_text(f, "d/a", "d", "via proc");
    assert_int_equal(st->ops->commit(st, &up, "d/a", 1, &e), TF_OK);
    assert_holds(f, "d/a", "via proc");
    assert_int_equal(entries_in(f, ".tcpfile-tmp"), 0);
}

/* Makes openat2 fail with ENOSYS in this process from now on, as on a
   kernel older than 5.6 (each ctest entry runs one test in its own
   process, so no other test is affected). */
static int block_openat2(void)
{
#ifdef SYS_openat2
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -1;
    return syscall(SYS_openat2, AT_FDCWD, ".", NULL, 0) < 0 && errno == ENOSYS ? 0 : -1;
#else
    return 0;
#endif
}

/* Without openat2, a link anywhere on a path is still refused: the
   fallback opens one directory at a time with O_NOFOLLOW. */
static void test_storage_paths_without_openat2(void **state)
{
    fixture *f = *state;
    if (block_openat2() != 0)
        skip();
    tf__err e = {{0}};
    tf__storage *st = f->st;
    assert_int_equal(st->ops->mkdir(st, "real", &e), TF_OK);
    put_file(f->root, "real/f", "inside");
    char path[512];
    snprintf(path, sizeof path, "%s/in", f->root);
    assert_int_equal(symlink("real", path), 0);
    int fd = -1;
    uint64_t size, id[TF_STORAGE_ID_LEN];
    assert_int_equal(st->ops->open_read(st, "real/f", &fd, &size, id, &e), TF_OK);
    st->ops->close_read(st, fd);
    tf__err_clear(&e);
    assert_int_equal(st->ops->open_read(st, "out/secret", &fd, &size, id, &e), TF_EACCES);
    tf__err_clear(&e);
    assert_int_equal(st->ops->open_read(st, "in/f", &fd, &size, id, &e), TF_EACCES);
    tf__err_clear(&e);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "out/secret", &fs, &e), TF_EACCES);
    tf__err_clear(&e);
    assert_int_equal(st->ops->mkdir(st, "out/planted", &e), TF_EACCES);
    assert_false(exists_in(f->outside, "planted"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_storage_stat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_list_paged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_scan_from_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_mkdir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_stage_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_sub_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_paths_without_openat2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_stage_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_stage_in_place_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_stage_in_place_names_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_stage_in_place_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_stage_in_place_unprivileged_link, setup,
                                        teardown),
    };
    return TU_RUN_GROUP("storage", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
