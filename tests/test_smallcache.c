/*
 * test_smallcache.c - the loop's small-file cache (smallcache.c) over the
 * local storage: a hit costs no read, a changed file is never served from
 * memory (replaced by a put, ours or another's, with the same size and
 * mtime; changed in place with its mtime put back), a link swapped in for
 * a name or a directory is not a way out of the root, and the bytes held
 * stay under the bound.
 *
 * The files are made "settled" at once (tf__small_cache_set_settle 0)
 * except where the settling rule itself is tested, and in the one test
 * through a server, which waits for its file to settle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "smallcache.h"
#include "storage.h"
#include "testutil.h"

typedef struct fixture {
    char base[64];
    char root[96];
    char outside[96];
    tf__storage *st;
    tf__small_cache *c;
} fixture;

static void path_of(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static void write_file(const char *dir, const char *name, char fill, size_t len)
{
    char path[512], buf[TF_SMALL_CACHE_FILE_MAX * 2];
    path_of(path, sizeof path, dir, name);
    memset(buf, fill, len);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

/* Sets name's mtime to t (as rsync -t or a put's MTIME would). */
static void set_mtime(const char *dir, const char *name, const struct timespec *t)
{
    char path[512];
    path_of(path, sizeof path, dir, name);
    struct timespec ts[2] = {*t, *t};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static struct timespec mtime_of(const char *dir, const char *name)
{
    char path[512];
    struct stat s;
    path_of(path, sizeof path, dir, name);
    assert_int_equal(lstat(path, &s), 0);
    return s.st_mtim;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->base, sizeof f->base, "/tmp/tf-smallcache.XXXXXX");
    assert_non_null(mkdtemp(f->base));
    snprintf(f->root, sizeof f->root, "%s/root", f->base);
    snprintf(f->outside, sizeof f->outside, "%s/outside", f->base);
    assert_int_equal(mkdir(f->root, 0700), 0);
    assert_int_equal(mkdir(f->outside, 0700), 0);
    tf__storage_local_config cfg = {.read_only = 0, .resume_ttl_s = 3600, .max_partials = 4};
    tf__err e = {{0}};
    assert_int_equal(tf__storage_local_open(&f->st, f->root, &cfg, &e), TF_OK);
    f->c = tf__small_cache_new((size_t)1 << 20);
    assert_non_null(f->c);
    tf__small_cache_set_settle(f->c, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tf__small_cache_free(f->c);
    f->st->ops->close(f->st);
    tu_rm_rf(f->base);
    free(f);
    return 0;
}

/* Gets name through the cache: 1 and its first byte, its length and
   digest checked against the bytes; 0 when it could not be had. */
static int get(fixture *f, const char *name, char *first, size_t *len)
{
    uint8_t buf[TF_SMALL_CACHE_FILE_MAX * 2], d[TF_DIGEST_SIZE], want[TF_DIGEST_SIZE];
    if (!tf__small_get(f->c, f->st, name, buf, sizeof buf, len, d))
        return 0;
    tf__digest_once(buf, *len, want);
    assert_memory_equal(d, want, TF_DIGEST_SIZE);
    for (size_t i = 1; i < *len; i++)
        assert_int_equal(buf[i], buf[0]);
    *first = *len ? (char)buf[0] : 0;
    return 1;
}

static uint64_t hits(fixture *f)
{
    tf__small_cache_stats s;
    tf__small_cache_stats_get(f->c, &s);
    return s.hits;
}

static void test_smallcache_hit_after_read(void **state)
{
    fixture *f = *state;
    char first;
    size_t len;
    write_file(f->root, "a", 'a', 4096);
    assert_true(get(f, "a", &first, &len));
    assert_int_equal(hits(f), 0);
    assert_true(get(f, "a", &first, &len));
    assert_int_equal(first, 'a');
    assert_int_equal(len, 4096);
    assert_int_equal(hits(f), 1);
    /* No digest asked: the bytes alone, from memory too. */
    uint8_t buf[4096];
    assert_true(tf__small_get(f->c, f->st, "a", buf, sizeof buf, &len, NULL));
    assert_int_equal(hits(f), 2);
    /* Larger than the largest kept: served, never kept. */
    write_file(f->root, "big", 'b', TF_SMALL_CACHE_FILE_MAX + 1);
    assert_true(get(f, "big", &first, &len));
    assert_true(get(f, "big", &first, &len));
    assert_int_equal(hits(f), 2);
}

/* A put through the server: staged, committed over the name (a rename),
   same size, and its mtime set to the old one. */
static void test_smallcache_put_over_is_read_again(void **state)
{
    fixture *f = *state;
    tf__storage *st = f->st;
    char first;
    size_t len;
    write_file(f->root, "p", 'o', 4096);
    struct timespec old = mtime_of(f->root, "p");
    assert_true(get(f, "p", &first, &len));
    assert_true(get(f, "p", &first, &len)); /* cached */

    tf__upload *up = NULL;
    tf__err e = {{0}};
    char bytes[4096];
    memset(bytes, 'n', sizeof bytes);
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, bytes, sizeof bytes, &e), TF_OK);
    assert_int_equal(st->ops->commit(st, &up, "p", 1, &e), TF_OK);
    set_mtime(f->root, "p", &old);

    uint64_t before = hits(f);
    assert_true(get(f, "p", &first, &len));
    assert_int_equal(first, 'n');
    assert_int_equal(len, 4096);
    assert_int_equal(hits(f), before);
}

/* Another program replaces the file behind our back: a new file renamed
   over it, same size and same mtime to the nanosecond. */
static void test_smallcache_rename_behind_our_back(void **state)
{
    fixture *f = *state;
    char first, from[512], to[512];
    size_t len;
    write_file(f->root, "r", 'o', 4096);
    struct timespec old = mtime_of(f->root, "r");
    assert_true(get(f, "r", &first, &len));
    assert_true(get(f, "r", &first, &len));
    write_file(f->root, "r.new", 'n', 4096);
    set_mtime(f->root, "r.new", &old);
    path_of(from, sizeof from, f->root, "r.new");
    path_of(to, sizeof to, f->root, "r");
    assert_int_equal(rename(from, to), 0);
    uint64_t before = hits(f);
    assert_true(get(f, "r", &first, &len));
    assert_int_equal(first, 'n');
    assert_int_equal(hits(f), before);
}

/* Rewritten in place, same size, mtime put back: only the ctime tells.
   (The pause puts the change in a later timestamp tick than the read;
   within the same tick is what the settling rule is for.) */
static void test_smallcache_in_place_change(void **state)
{
    fixture *f = *state;
    char first;
    size_t len;
    write_file(f->root, "i", 'o', 4096);
    struct timespec old = mtime_of(f->root, "i");
    assert_true(get(f, "i", &first, &len));
    assert_true(get(f, "i", &first, &len));
    nanosleep(&(struct timespec){0, 30 * 1000 * 1000}, NULL);
    write_file(f->root, "i", 'n', 4096);
    set_mtime(f->root, "i", &old);
    assert_true(get(f, "i", &first, &len));
    assert_int_equal(first, 'n');
}

/* A file changed in the last seconds is not kept: a change within the
   same timestamp tick would not show. */
static void test_smallcache_unsettled_not_kept(void **state)
{
    fixture *f = *state;
    char first;
    size_t len;
    tf__small_cache_set_settle(f->c, TF_SMALL_CACHE_SETTLE_S);
    write_file(f->root, "fresh", 'f', 100);
    assert_true(get(f, "fresh", &first, &len));
    assert_true(get(f, "fresh", &first, &len));
    assert_int_equal(hits(f), 0);
    tf__small_cache_stats s;
    tf__small_cache_stats_get(f->c, &s);
    assert_int_equal(s.entries, 0);
}

/* The name, once kept, replaced by a link to a file outside the root with
   the same bytes, or its directory replaced by a link to one outside
   holding the very same file (moved there): neither is served. */
static void test_smallcache_links_are_not_a_way_out(void **state)
{
    fixture *f = *state;
    char first, a[512], b[512];
    size_t len;
    write_file(f->root, "l", 's', 64);
    assert_true(get(f, "l", &first, &len));
    assert_true(get(f, "l", &first, &len));
    path_of(a, sizeof a, f->root, "l");
    path_of(b, sizeof b, f->outside, "l");
    assert_int_equal(rename(a, b), 0);
    assert_int_equal(symlink(b, a), 0);
    uint64_t before = hits(f);
    assert_false(get(f, "l", &first, &len));
    assert_int_equal(hits(f), before);

    /* A path: dir/x kept, then dir moved outside and a link left. */
    char dir[512], moved[512];
    path_of(dir, sizeof dir, f->root, "dir");
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "x", 'x', 64);
    assert_true(get(f, "dir/x", &first, &len));
    assert_true(get(f, "dir/x", &first, &len));
    assert_int_equal(hits(f), before + 1);
    path_of(moved, sizeof moved, f->outside, "dir");
    assert_int_equal(rename(dir, moved), 0);
    assert_int_equal(symlink(moved, dir), 0);
    assert_false(get(f, "dir/x", &first, &len));
    assert_int_equal(hits(f), before + 1);
}

/* Never more than the bound, whatever is read; a working set larger than
   it still hits in part when walked in turn. */
static void test_smallcache_bounded(void **state)
{
    fixture *f = *state;
    char first, name[32];
    size_t len;
    const size_t bound = 64 << 10;
    tf__small_cache_free(f->c);
    f->c = tf__small_cache_new(bound);
    assert_non_null(f->c);
    tf__small_cache_set_settle(f->c, 0);
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof name, "f%02d", i);
        write_file(f->root, name, (char)('A' + i % 26), 4096);
    }
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < 64; i++) {
            snprintf(name, sizeof name, "f%02d", i);
            assert_true(get(f, name, &first, &len));
            assert_int_equal(first, 'A' + i % 26);
            tf__small_cache_stats s;
            tf__small_cache_stats_get(f->c, &s);
            assert_true(s.bytes <= bound);
        }
    }
    assert_true(hits(f) > 0);
}

static void expect_get(tf_client *c, const char *name, const uint8_t *want, size_t len)
{
    void *data = NULL;
    size_t got = 0;
    assert_int_equal(tf_get_mem(c, name, &data, &got), TF_OK);
    assert_int_equal(got, len);
    assert_memory_equal(data, want, len);
    tf_free(data);
}

/* Through a server, with checksums (a wrong kept digest would fail the
   get): a settled file is served again from memory, then replaced behind
   the server's back and by a put, each time with the same size and mtime,
   and every get has the new bytes. */
static void test_smallcache_server_serves_fresh(void **state)
{
    (void)state;
    test_server t;
    tu_server_start(&t, NULL);
    uint8_t a[4096], b[4096], c3[4096];
    tu_fill(a, sizeof a, 1);
    tu_fill(b, sizeof b, 2);
    tu_fill(c3, sizeof c3, 3);
    tu_write_in(t.root, "f", a, sizeof a);
    struct timespec old = mtime_of(t.root, "f");
    tu_sleep_ms(TF_SMALL_CACHE_SETTLE_S * 1000 + 50);
    tf_client *c = tu_connect(&t, NULL);
    expect_get(c, "f", a, sizeof a);
    expect_get(c, "f", a, sizeof a); /* kept by now */

    char from[512], to[512];
    tu_write_in(t.root, "f.new", b, sizeof b);
    set_mtime(t.root, "f.new", &old);
    path_of(from, sizeof from, t.root, "f.new");
    path_of(to, sizeof to, t.root, "f");
    assert_int_equal(rename(from, to), 0);
    expect_get(c, "f", b, sizeof b);

    char local[512];
    path_of(local, sizeof local, t.root, "local.tmp");
    tu_write_file(local, c3, sizeof c3);
    assert_int_equal(tf_put(c, local, "f"), TF_OK);
    set_mtime(t.root, "f", &old);
    expect_get(c, "f", c3, sizeof c3);
    tf_close(c);
    tu_server_stop(&t, 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_smallcache_hit_after_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smallcache_put_over_is_read_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smallcache_rename_behind_our_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smallcache_in_place_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smallcache_unsettled_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smallcache_links_are_not_a_way_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smallcache_bounded, setup, teardown),
        cmocka_unit_test(test_smallcache_server_serves_fresh),
    };
    return TU_RUN_GROUP("smallcache", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
