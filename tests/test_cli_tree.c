/*
 * test_cli_tree.c - the local half of tcpfile-client's tree commands
 * (examples/cli_tree.c): which relative paths a destination accepts, that a
 * destination check never goes through a symbolic link, that a local walk
 * skips links, and what a sync plan sends, skips and deletes, in which
 * order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_tree.h"

static char g_dir[512]; /* short, so that every path built from it fits */

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/tcpfile-clitree.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put_file(const char *rel, const char *text)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void put_dir(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    assert_int_equal(mkdir(p, 0777), 0);
}

static void test_rel_ok(void **state)
{
    (void)state;
    static const char *const good[] = {"a", "a/b", "a/b/c.txt", "..a", "a..", ".hidden/x"};
    static const char *const bad[] = {"",   "/etc/passwd", "a/../b", "..",   "../x", "a/..",
                                      ".",  "a/./b",       "a//b",   "a/",   "/",    "a/b\n",
                                      "\x1b"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(tree_rel_ok(good[i]), 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tree_rel_ok(bad[i]), 0);
    assert_int_equal(tree_rel_ok(NULL), 0);
}

static void test_local_safe_refuses_links(void **state)
{
    (void)state;
    char err[256], out[PATH_MAX];
    put_dir("dst");
    snprintf(out, sizeof out, "%s/outside", g_dir);
    assert_int_equal(mkdir(out, 0777), 0);
    char link[PATH_MAX];
    /* dst/esc -> ../outside: a directory link in the middle. */
    snprintf(link, sizeof link, "%s/dst/esc", g_dir);
    assert_int_equal(symlink("../outside", link), 0);
    /* dst/f -> ../outside/f: a link as the file itself. */
    snprintf(link, sizeof link, "%s/dst/f", g_dir);
    assert_int_equal(symlink("../outside/f", link), 0);
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/dst", g_dir);

    assert_int_equal(tree_local_safe(root, "esc/x", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(tree_local_safe(root, "f", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(tree_local_safe(root, "../outside/x", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "unsafe"));
    /* Nothing was created outside. */
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/outside/x", g_dir);
    assert_int_equal(access(probe, F_OK), -1);

    /* A new sub-directory is made when asked, and only then. */
    assert_int_equal(tree_local_safe(root, "new/deep/x", 0, err, sizeof err), -1);
    assert_int_equal(tree_local_safe(root, "new/deep/x", 1, err, sizeof err), 0);
    snprintf(probe, sizeof probe, "%s/dst/new/deep", g_dir);
    struct stat st;
    assert_int_equal(lstat(probe, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* A file where a directory should be, and a directory as the file. */
    put_file("dst/plain", "x");
    assert_int_equal(tree_local_safe(root, "plain/x", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "is a file"));
    assert_int_equal(tree_local_safe(root, "new", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "is a directory"));
    /* The root itself as a link is refused. */
    snprintf(link, sizeof link, "%s/rootlink", g_dir);
    assert_int_equal(symlink("dst", link), 0);
    assert_int_equal(tree_local_safe(link, "ok", 1, err, sizeof err), -1);
}

/* What get -r writes through: a directory opened link-free from the root
   and kept, and an unnamed file linked in once whole, never over a name. */
static void test_open_dir_and_tmpfile(void **state)
{
    (void)state;
    char err[512], p[PATH_MAX];
    put_dir("od");
    put_dir("od/a");
    put_dir("elsewhere");
    snprintf(p, sizeof p, "%s/od/a/esc", g_dir);
    assert_int_equal(symlink("../../elsewhere", p), 0);
    put_file("od/a/plain", "x");
    snprintf(p, sizeof p, "%s/od", g_dir);
    int root = open(p, O_RDONLY | O_DIRECTORY);
    assert_true(root >= 0);

    /* A linked directory, a file and a missing one (mkdirs 0) are refused;
       nothing is made beyond the link. */
    assert_int_equal(tree_open_dir(root, "a/esc/x", 7, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(tree_open_dir(root, "a/plain", 7, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "is a file"));
    assert_int_equal(tree_open_dir(root, "a/new", 5, 0, err, sizeof err), -1);
    snprintf(p, sizeof p, "%s/elsewhere/x", g_dir);
    assert_int_equal(access(p, F_OK), -1);
    /* len counts: "a/new/f" up to its directory, made when asked. */
    int dir = tree_open_dir(root, "a/new/f", 5, 1, err, sizeof err);
    assert_true(dir >= 0);
    int top = tree_open_dir(root, "", 0, 0, err, sizeof err);
    assert_true(top >= 0 && top != root);
    close(top);

    int fd = tree_tmpfile(dir);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        close(dir);
        close(root);
        skip(); /* (this file system has no unnamed files: get -r does without) */
    }
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "whole", 5), 5);
    snprintf(p, sizeof p, "%s/od/a/new", g_dir);
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", p);
    assert_int_equal(system(cmd), 0); /* nothing shows before the link */
    int via_proc = 0;
    /* Never over a name: a link stays a link, a file stays itself. */
    assert_int_equal(symlinkat("../../../elsewhere/y", dir, "ln"), 0);
    assert_int_equal(tree_tmpfile_link(fd, dir, "ln", &via_proc), -1);
    assert_int_equal(errno, EEXIST);
    snprintf(p, sizeof p, "%s/elsewhere/y", g_dir);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(tree_tmpfile_link(fd, dir, "f", &via_proc), 0);
    close(fd);
    close(dir);
    close(root);
    snprintf(p, sizeof p, "%s/od/a/new/f", g_dir);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char got[16] = {0};
    assert_int_equal(fread(got, 1, sizeof got, f), 5);
    fclose(f);
    assert_string_equal(got, "whole");
}

static void warned(void *user, const char *path, const char *why)
{
    (void)why;
    char *seen = user;
    if (strlen(seen) + strlen(path) + 2 < 256) {
        strcat(seen, path);
        strcat(seen, ";");
    }
}

static void test_walk_skips_links(void **state)
{
    (void)state;
    put_dir("src");
    put_dir("src/d");
    put_dir("src/d/e");
    put_file("src/a.txt", "aaa");
    put_file("src/d/b.txt", "bb");
    char link[PATH_MAX];
    snprintf(link, sizeof link, "%s/src/d/ln", g_dir);
    assert_int_equal(symlink("/etc", link), 0);
    char root[PATH_MAX], err[256], seen[256] = "";
    snprintf(root, sizeof root, "%s/src", g_dir);
    tree_list l = {0};
    assert_int_equal(tree_walk_local(root, 64, &l, warned, seen, err, sizeof err), 0);
    tree_list_sort(&l);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.v[0].path, "a.txt");
    assert_int_equal(l.v[0].size, 3);
    assert_string_equal(l.v[1].path, "d");
    assert_int_equal(l.v[1].dir, 1);
    assert_string_equal(l.v[2].path, "d/b.txt");
    assert_string_equal(l.v[3].path, "d/e");
    assert_int_equal(l.v[3].dir, 1);
    assert_string_equal(seen, "d/ln;");
    tree_list_free(&l);
    /* Too deep: refused, not walked without end. */
    assert_int_equal(tree_walk_local(root, 1, &l, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "deeper"));
    tree_list_free(&l);
    /* A root that is a link is refused. */
    snprintf(link, sizeof link, "%s/srclink", g_dir);
    assert_int_equal(symlink("src", link), 0);
    assert_int_equal(tree_walk_local(link, 64, &l, NULL, NULL, err, sizeof err), -1);
    tree_list_free(&l);
}

static void test_remove_and_mkdir(void **state)
{
    (void)state;
    char root[PATH_MAX], err[256], probe[PATH_MAX];
    put_dir("rm");
    put_dir("rm/sub");
    put_file("rm/sub/f", "x");
    put_dir("victim");
    put_file("victim/keep", "k");
    snprintf(root, sizeof root, "%s/rm", g_dir);
    char link[PATH_MAX];
    snprintf(link, sizeof link, "%s/rm/ln", g_dir);
    assert_int_equal(symlink("../victim", link), 0);
    /* Through a link: refused, the target untouched. */
    assert_int_equal(tree_local_remove(root, "ln/keep", 0, err, sizeof err), -1);
    snprintf(probe, sizeof probe, "%s/victim/keep", g_dir);
    assert_int_equal(access(probe, F_OK), 0);
    /* The link itself is removed as a link, never followed. */
    assert_int_equal(tree_local_remove(root, "ln", 0, err, sizeof err), 0);
    assert_int_equal(access(probe, F_OK), 0);
    assert_int_equal(tree_local_remove(root, "../victim/keep", 0, err, sizeof err), -1);
    assert_int_equal(tree_local_remove(root, "sub", 1, err, sizeof err), -1); /* not empty */
    assert_int_equal(tree_local_remove(root, "sub/f", 0, err, sizeof err), 0);
    assert_int_equal(tree_local_remove(root, "sub", 1, err, sizeof err), 0);
    snprintf(probe, sizeof probe, "%s/rm/sub", g_dir);
    assert_int_equal(access(probe, F_OK), -1);
    /* mkdirs 2: the path itself is a directory, made when missing. */
    assert_int_equal(tree_local_safe(root, "a/b/c", 2, err, sizeof err), 0);
    assert_int_equal(tree_local_safe(root, "a/b/c", 2, err, sizeof err), 0);
    snprintf(probe, sizeof probe, "%s/rm/a/b/c", g_dir);
    struct stat st;
    assert_int_equal(lstat(probe, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    put_file("rm/a/file", "f");
    assert_int_equal(tree_local_safe(root, "a/file", 2, err, sizeof err), -1);
    /* The client's own temporaries are never walked. */
    assert_int_equal(tree_is_temp(".tcpfile-part-Ab12Cd"), 1);
    assert_int_equal(tree_is_temp(".big.bin.tcpfile-part"), 1);
    assert_int_equal(tree_is_temp("big.bin.tcpfile-part"), 0);
    assert_int_equal(tree_is_temp("notes.txt"), 0);
}

static void add(tree_list *l, const char *p, int dir, uint64_t size, int64_t mtime)
{
    assert_int_equal(tree_list_add(l, p, dir, size, mtime), 0);
}

static void test_plan(void **state)
{
    (void)state;
    tree_list s = {0}, d = {0};
    add(&s, "a", 1, 0, 1);
    add(&s, "a/new.txt", 0, 5, 100);
    add(&s, "a/same.txt", 0, 7, 100);
    add(&s, "a/touched.txt", 0, 7, 200);
    add(&s, "a/grown.txt", 0, 9, 100);
    add(&s, "b", 1, 0, 1);
    add(&s, "clash", 0, 1, 1);
    add(&d, "a", 1, 0, 5);
    add(&d, "a/same.txt", 0, 7, 100);
    add(&d, "a/touched.txt", 0, 7, 100);
    add(&d, "a/grown.txt", 0, 8, 100);
    add(&d, "a/old.txt", 0, 1, 1);
    add(&d, "gone", 1, 0, 1);
    add(&d, "gone/x", 1, 0, 1);
    add(&d, "gone/x/y.txt", 0, 1, 1);
    add(&d, "clash", 1, 0, 1);
    tree_list_sort(&s);
    tree_list_sort(&d);
    tree_plan p;
    assert_int_equal(tree_plan_make(&s, &d, 0, 0, &p), 0);
    /* a/grown.txt, a/new.txt: send; a/touched.txt: compare; b: mkdir;
       clash: conflict. */
    assert_int_equal(p.n, 5);
    assert_int_equal(p.v[0].kind, ACT_SEND);
    assert_string_equal(p.v[0].src->path, "a/grown.txt");
    assert_int_equal(p.v[1].kind, ACT_SEND);
    assert_string_equal(p.v[1].src->path, "a/new.txt");
    assert_null(p.v[1].dst);
    assert_int_equal(p.v[2].kind, ACT_COMPARE);
    assert_string_equal(p.v[2].src->path, "a/touched.txt");
    assert_int_equal(p.v[3].kind, ACT_MKDIR);
    assert_string_equal(p.v[3].src->path, "b");
    assert_int_equal(p.v[4].kind, ACT_CONFLICT);
    assert_int_equal(p.files, 3);
    assert_int_equal(p.bytes, 9 + 5 + 7);
    assert_int_equal(p.same, 1);
    tree_plan_free(&p);

    /* --delete: contents before their directory, nothing the source has. */
    assert_int_equal(tree_plan_make(&s, &d, 0, 1, &p), 0);
    assert_int_equal(p.n, 9);
    assert_int_equal(p.v[5].kind, ACT_DELETE);
    assert_string_equal(p.v[5].dst->path, "gone/x/y.txt");
    assert_int_equal(p.v[6].kind, ACT_RMDIR);
    assert_string_equal(p.v[6].dst->path, "gone/x");
    assert_int_equal(p.v[7].kind, ACT_RMDIR);
    assert_string_equal(p.v[7].dst->path, "gone");
    assert_int_equal(p.v[8].kind, ACT_DELETE);
    assert_string_equal(p.v[8].dst->path, "a/old.txt");
    tree_plan_free(&p);

    /* --checksum: an equal size and mtime is compared too. */
    assert_int_equal(tree_plan_make(&s, &d, 1, 0, &p), 0);
    assert_int_equal(p.same, 0);
    assert_int_equal(p.files, 4);
    tree_plan_free(&p);

    /* The same tree on both sides: nothing to do. */
    assert_int_equal(tree_plan_make(&s, &s, 0, 1, &p), 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(p.same, 5);
    tree_plan_free(&p);
    tree_list_free(&s);
    tree_list_free(&d);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rel_ok),
        cmocka_unit_test(test_local_safe_refuses_links),
        cmocka_unit_test(test_walk_skips_links),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_remove_and_mkdir),
        cmocka_unit_test(test_open_dir_and_tmpfile),
    };
    return TU_RUN_GROUP("cli_tree", tests, setup, teardown, argc > 1 ? argv[1] : NULL);
}
