/*
 * test_putx.c - the put extensions (feature PUTX) against a real server:
 * if-absent, if-match (right digest, wrong digest, two writers racing),
 * the mtime set to the nanosecond, skip-if-same sending no payload, the
 * arguments a client refuses, resuming and checksums with the extensions,
 * and tf_put_many: a thousand small files in one call, refused items in
 * the middle of a batch while the rest are stored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "faults/rawpeer.h"
#include "testutil.h"
#include "wire.h"

typedef struct fixture {
    test_server srv;
    char local[256];
    /* the server's log: bytes and result of the last put */
    pthread_mutex_t mu;
    int puts;
    uint64_t last_bytes;
    int last_result;
    uint64_t put_bytes; /* payload bytes of every put, summed */
} fixture;

static void on_log(void *user, const tf_request_log *e)
{
    fixture *f = user;
    if (strcmp(e->op, "put") != 0)
        return;
    pthread_mutex_lock(&f->mu);
    f->puts++;
    f->last_bytes = e->bytes;
    f->put_bytes += e->bytes;
    f->last_result = e->result;
    pthread_mutex_unlock(&f->mu);
}

/* The log entry of the server's n-th put (the log comes after the answer,
   so it is waited for): its bytes and result. */
static void logged_put(fixture *f, int n, uint64_t *bytes, int *result)
{
    int64_t end = tu_now_ms() + 5000;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        int puts = f->puts;
        *bytes = f->last_bytes;
        *result = f->last_result;
        pthread_mutex_unlock(&f->mu);
        if (puts >= n || tu_now_ms() > end)
            break;
        tu_sleep_ms(2);
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set_log(opt, on_log, f), TF_OK);
    tu_server_start(&f->srv, opt);
    tf_options_free(opt);
    tu_mkdtemp(f->local, sizeof f->local);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_server_stop(&f->srv, 1);
    tu_rm_rf(f->local);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static void digest_of(const void *p, size_t n, uint8_t out[16])
{
    tf__digest d = {0};
    assert_int_equal(tf__digest_begin(&d, 1), TF_OK);
    tf__digest_update(&d, p, n);
    tf__digest_final(&d, out);
    tf__digest_end(&d);
}

/* Whether the server's root holds exactly text under name. */
static void expect_stored(fixture *f, const char *name, const char *text)
{
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", f->srv.root, name);
    uint8_t *got = tu_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(got, text, len);
    free(got);
}

static void put_text(tf_client *c, const char *name, const char *text)
{
    assert_int_equal(tf_put_mem(c, text, strlen(text), name), TF_OK);
}

static void test_putx_offered(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    assert_int_equal(tf_client_can_putx(c), 1);
    assert_int_equal(tf_client_can_putx(NULL), 0);
    /* The caller allocates these: their sizes are part of the ABI. */
    assert_int_equal(sizeof(tf_put_args), sizeof(void *) == 8 ? 64 : 48);
    assert_int_equal(sizeof(tf_put_item), sizeof(void *) == 8 ? 88 : 56);
    /* args NULL, and all zero, are plain puts */
    tf_put_args none = {0};
    int skipped = 7;
    assert_int_equal(tf_put_mem_ex(c, "a", 1, "plain", NULL, &skipped), TF_OK);
    assert_int_equal(skipped, 0);
    assert_int_equal(tf_put_mem_ex(c, "bb", 2, "plain", &none, NULL), TF_OK);
    expect_stored(f, "plain", "bb");
    tf_close(c);
}

static void test_putx_if_absent(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    put_text(c, "taken", "old");
    tf_put_args a = {.flags = TF_PUT_IF_ABSENT};
    /* The server overwrites by default; if-absent refuses all the same. */
    assert_int_equal(tf_put_mem_ex(c, "new", 3, "taken", &a, NULL), TF_EEXIST);
    assert_non_null(strstr(tf_errmsg(c), "taken"));
    expect_stored(f, "taken", "old");
    /* A free name is stored; the connection stayed in step. */
    assert_int_equal(tf_put_mem_ex(c, "fresh", 5, "free", &a, NULL), TF_OK);
    expect_stored(f, "free", "fresh");
    assert_int_equal(tf_put_mem_ex(c, "again", 5, "free", &a, NULL), TF_EEXIST);
    expect_stored(f, "free", "fresh");
    tf_close(c);
}

static void test_putx_if_match_replaces(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    put_text(c, "doc", "version 1");
    tf_put_args a = {.flags = TF_PUT_IF_MATCH};
    digest_of("version 1", 9, a.if_match);
    assert_int_equal(tf_put_mem_ex(c, "version 2", 9, "doc", &a, NULL), TF_OK);
    expect_stored(f, "doc", "version 2");
    /* The same digest again no longer names what is there. */
    assert_int_equal(tf_put_mem_ex(c, "version 3", 9, "doc", &a, NULL), TF_ECONFLICT);
    expect_stored(f, "doc", "version 2");
    /* A large current version is hashed in slices before the answer. */
    size_t big = (5u << 20) + 3;
    uint8_t *data = malloc(big);
    assert_non_null(data);
    tu_fill(data, big, 9);
    assert_int_equal(tf_put_mem(c, data, big, "big"), TF_OK);
    digest_of(data, big, a.if_match);
    assert_int_equal(tf_put_mem_ex(c, "small", 5, "big", &a, NULL), TF_OK);
    expect_stored(f, "big", "small");
    free(data);
    tf_close(c);
}

static void test_putx_if_match_conflict(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    put_text(c, "doc", "mine");
    tf_put_args a = {.flags = TF_PUT_IF_MATCH};
    digest_of("someone else's", 14, a.if_match);
    assert_int_equal(tf_put_mem_ex(c, "lost", 4, "doc", &a, NULL), TF_ECONFLICT);
    assert_string_equal(tf_errname(TF_ECONFLICT), "TF_ECONFLICT");
    expect_stored(f, "doc", "mine");
    /* A name that does not exist is not the version named either. */
    assert_int_equal(tf_put_mem_ex(c, "lost", 4, "nothing", &a, NULL), TF_ECONFLICT);
    char path[512];
    snprintf(path, sizeof path, "%s/nothing", f->srv.root);
    assert_int_equal(tu_file_size(path), -1);
    /* Nothing is left staged, and the connection is still usable. */
    put_text(c, "after", "ok");
    tf_close(c);
}

typedef struct racer {
    const test_server *srv;
    int fd;
    uint64_t size;
    tf_put_args args;
    int rc;
} racer;

static void *race_put(void *arg)
{
    racer *r = arg;
    tf_client *c = tu_connect(r->srv, NULL);
    r->rc = tf_put_fd_ex(c, r->fd, r->size, "shared", &r->args, NULL);
    tf_close(c);
    return NULL;
}

/* Two writers with the same if-match: A passes the check and stalls in
   its payload (a pipe it reads from); B passes it too, and is stored; A's
   data then arrives, and A must lose at the commit: its check is done
   again there, at once with the rename. Exactly one wins. */
static void test_putx_if_match_race(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    put_text(c, "shared", "base");
    int p[2];
    assert_int_equal(pipe(p), 0);
    racer a = {.srv = &f->srv, .fd = p[0], .size = 6, .args = {.flags = TF_PUT_IF_MATCH}};
    digest_of("base", 4, a.args.if_match);
    uint64_t bytes;
    int result;
    logged_put(f, 1, &bytes, &result); /* the base's own log entry */
    int puts_before = 1;
    char tmpdir[512];
    snprintf(tmpdir, sizeof tmpdir, "%s/.tcpfile-tmp", f->srv.root);
    /* Staged uploads: named in the staging directory, or unnamed in
       place (O_TMPFILE), open in this process's server. */
#define STAGED() (tu_count_prefix(tmpdir, "") + tu_count_unnamed(f->srv.root))
    int staged_before = STAGED();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, race_put, &a), 0);
    /* A has its go-ahead once its upload is staged on the server. */
    int64_t end = tu_now_ms() + 5000;
    while (STAGED() <= staged_before && tu_now_ms() < end)
        tu_sleep_ms(5);
    assert_true(STAGED() > staged_before);
    tf_put_args b = {.flags = TF_PUT_IF_MATCH};
    digest_of("base", 4, b.if_match);
    assert_int_equal(tf_put_mem_ex(c, "from B", 6, "shared", &b, NULL), TF_OK);
    assert_int_equal(write(p[1], "from A", 6), 6);
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    assert_int_equal(a.rc, TF_ECONFLICT);
    expect_stored(f, "shared", "from B");
    logged_put(f, puts_before + 2, &bytes, &result);
    pthread_mutex_lock(&f->mu);
    int puts = f->puts;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(puts, puts_before + 2);
    assert_int_equal(STAGED(), staged_before);
#undef STAGED
    tf_close(c);
}

typedef struct counter_arg {
    const test_server *srv;
    int times, rc, retries;
} counter_arg;

/* examples/counter.c's loop: read, digest, put if still that version. */
static void *count_up(void *p)
{
    counter_arg *a = p;
    tf_client *c = tu_connect(a->srv, NULL);
    for (int i = 0; i < a->times && a->rc == TF_OK; i++) {
        for (;;) {
            void *data = NULL;
            size_t len = 0;
            tf_put_args args = {0};
            long n = 0;
            int rc = tf_get_mem(c, "counter", &data, &len);
            if (rc == TF_OK) {
                n = strtol(data, NULL, 10);
                args.flags = TF_PUT_IF_MATCH;
                rc = tf_digest(data, len, args.if_match);
            } else if (rc == TF_ENOENT) {
                args.flags = TF_PUT_IF_ABSENT;
                rc = TF_OK;
            }
            tf_free(data);
            char text[32];
            int tlen = snprintf(text, sizeof text, "%ld\n", n + 1);
            if (rc == TF_OK)
                rc = tf_put_mem_ex(c, text, (size_t)tlen, "counter", &args, NULL);
            if (rc == TF_ECONFLICT || rc == TF_EEXIST) {
                a->retries++;
                continue;
            }
            a->rc = rc;
            break;
        }
    }
    tf_close(c);
    return NULL;
}

/* Four writers increment one counter with conditional puts: every
   increment lands (a lost update would leave less than the total). */
static void test_putx_counter_no_lost_update(void **state)
{
    fixture *f = *state;
    enum { THREADS = 4, TIMES = 15 };
    pthread_t t[THREADS];
    counter_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (counter_arg){.srv = &f->srv, .times = TIMES};
        assert_int_equal(pthread_create(&t[i], NULL, count_up, &a[i]), 0);
    }
    int retries = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].rc, TF_OK);
        retries += a[i].retries;
    }
    char want[32];
    snprintf(want, sizeof want, "%d\n", THREADS * TIMES);
    expect_stored(f, "counter", want);
    print_message("%d increments, %d retries\n", THREADS * TIMES, retries);
    /* tf_digest is the digest the server compares. */
    uint8_t mine[16], lib[16];
    digest_of("abc", 3, mine);
    assert_int_equal(tf_digest("abc", 3, lib), TF_OK);
    assert_memory_equal(mine, lib, 16);
    assert_int_equal(tf_digest(NULL, 1, lib), TF_EINVAL);
    assert_int_equal(tf_digest(NULL, 0, lib), TF_OK);
}

static void test_putx_mtime(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    tf_put_args a = {.flags = TF_PUT_MTIME, .mtime_sec = 1234567890,
                     .mtime_nsec = 123456789};
    assert_int_equal(tf_put_mem_ex(c, "t", 1, "timed", &a, NULL), TF_OK);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/timed", f->srv.root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 1234567890);
    assert_int_equal(st.st_mtim.tv_nsec, 123456789);
    /* Before the epoch too. */
    a.mtime_sec = -86400;
    a.mtime_nsec = 5;
    assert_int_equal(tf_put_mem_ex(c, "t", 1, "timed", &a, NULL), TF_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, -86400);
    assert_int_equal(st.st_mtim.tv_nsec, 5);
    /* KEEP_MTIME takes the local file's. */
    char local[512];
    snprintf(local, sizeof local, "%s/src", f->local);
    tu_write_file(local, "local", 5);
    struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 999999999},
                             {.tv_sec = 1000000000, .tv_nsec = 999999999}};
    assert_int_equal(utimensat(AT_FDCWD, local, ts, 0), 0);
    tf_put_args k = {.flags = TF_PUT_KEEP_MTIME};
    assert_int_equal(tf_put_ex(c, local, "kept", &k, NULL), TF_OK);
    snprintf(path, sizeof path, "%s/kept", f->srv.root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 1000000000);
    assert_int_equal(st.st_mtim.tv_nsec, 999999999);
    expect_stored(f, "kept", "local");
    tf_close(c);
}

static void test_putx_skip_same(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    size_t len = 300000;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    tu_fill(data, len, 3);
    char local[512];
    snprintf(local, sizeof local, "%s/same", f->local);
    tu_write_file(local, data, len);
    assert_int_equal(tf_put(c, local, "same"), TF_OK);
    tf_put_args a = {.flags = TF_PUT_SKIP_SAME | TF_PUT_MTIME, .mtime_sec = 2000000000};
    int skipped = 0;
    assert_int_equal(tf_put_ex(c, local, "same", &a, &skipped), TF_OK);
    assert_int_equal(skipped, 1);
    /* No payload moved, and the time was still set. */
    uint64_t bytes;
    int result;
    logged_put(f, 2, &bytes, &result);
    assert_int_equal(result, TF_OK);
    assert_int_equal(bytes, 0);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/same", f->srv.root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 2000000000);
    /* Changed bytes go out (their digest, computed first, is the trailer's:
       a wrong one would be TF_ECHECKSUM) and are stored. */
    data[1000] ^= 1;
    tu_write_file(local, data, len);
    assert_int_equal(tf_put_ex(c, local, "same", &a, &skipped), TF_OK);
    assert_int_equal(skipped, 0);
    logged_put(f, 3, &bytes, &result);
    assert_int_equal(result, TF_OK);
    assert_int_equal(bytes, len);
    size_t got_len;
    uint8_t *got = tu_read_file(path, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
    /* A name that does not exist yet is simply stored. */
    assert_int_equal(tf_put_mem_ex(c, data, 10, "other", &a, &skipped), TF_OK);
    assert_int_equal(skipped, 0);
    /* if-absent is checked before the comparison. */
    a.flags |= TF_PUT_IF_ABSENT;
    assert_int_equal(tf_put_mem_ex(c, data, 10, "other", &a, &skipped), TF_EEXIST);
    free(data);
    tf_close(c);
}

static void test_putx_bad_args(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    tf_put_args a = {.flags = 0x40000000u};
    assert_int_equal(tf_put_mem_ex(c, "x", 1, "x", &a, NULL), TF_EINVAL);
    a = (tf_put_args){.flags = TF_PUT_IF_ABSENT | TF_PUT_IF_MATCH};
    assert_int_equal(tf_put_mem_ex(c, "x", 1, "x", &a, NULL), TF_EINVAL);
    a = (tf_put_args){.flags = TF_PUT_MTIME, .mtime_nsec = 1000000000u};
    assert_int_equal(tf_put_mem_ex(c, "x", 1, "x", &a, NULL), TF_EINVAL);
    a = (tf_put_args){.flags = TF_PUT_KEEP_MTIME};
    assert_int_equal(tf_put_mem_ex(c, "x", 1, "x", &a, NULL), TF_EINVAL);
    int dummy;
    a = (tf_put_args){0};
    a.reserved[2] = &dummy;
    assert_int_equal(tf_put_mem_ex(c, "x", 1, "x", &a, NULL), TF_EINVAL);
    /* skip-if-same from a pipe cannot hash first */
    int p[2];
    assert_int_equal(pipe(p), 0);
    a = (tf_put_args){.flags = TF_PUT_SKIP_SAME};
    assert_int_equal(tf_put_fd_ex(c, p[0], 1, "x", &a, NULL), TF_EINVAL);
    close(p[0]);
    close(p[1]);
    /* None of it sent anything: the connection is in step. */
    put_text(c, "x", "fine");
    expect_stored(f, "x", "fine");
    tf_close(c);
}

/* Resumable puts (keyed) take the extensions too, checksummed as ever. */
static void test_putx_resume_and_checksum(void **state)
{
    fixture *f = *state;
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_RESUME, 1), TF_OK);
    tf_client *c = tu_connect(&f->srv, opt);
    tf_options_free(opt);
    size_t len = 2u << 20;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    tu_fill(data, len, 11);
    char local[512];
    snprintf(local, sizeof local, "%s/r", f->local);
    tu_write_file(local, data, len);
    tf_put_args a = {.flags = TF_PUT_IF_ABSENT | TF_PUT_MTIME, .mtime_sec = 1500000000};
    assert_int_equal(tf_put_ex(c, local, "r", &a, NULL), TF_OK);
    assert_int_equal(tf_put_ex(c, local, "r", &a, NULL), TF_EEXIST);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/r", f->srv.root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 1500000000);
    size_t got_len;
    uint8_t *got = tu_read_file(path, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
    free(data);
    tf_close(c);
}

/* n pipelined puts of up to size bytes each with options opt (NULL: the
   defaults): each stored whole under its name, the connection in step. */
static void put_many_check(fixture *f, const tf_options *opt, int n, size_t size)
{
    tf_client *c = tu_connect(&f->srv, opt);
    tf_put_item *items = calloc((size_t)n, sizeof *items);
    uint8_t *data = calloc((size_t)n, size);
    char(*names)[16] = calloc((size_t)n, sizeof *names);
    assert_non_null(items);
    assert_non_null(data);
    assert_non_null(names);
    for (int i = 0; i < n; i++) {
        tu_fill(data + (size_t)i * size, size, (uint64_t)i + 100);
        snprintf(names[i], sizeof names[i], "m%04d", i);
        items[i] = (tf_put_item){.name = names[i], .fd = -1, .data = data + (size_t)i * size,
                                 .size = (uint64_t)((size_t)i % size)};
    }
    int64_t t0 = tu_now_ms();
    assert_int_equal(tf_put_many(c, items, (size_t)n), TF_OK);
    int64_t ms = tu_now_ms() - t0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(items[i].result, TF_OK);
        assert_string_equal(items[i].message, "");
        char path[512];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", f->srv.root, names[i]);
        uint8_t *got = tu_read_file(path, &len);
        assert_non_null(got);
        assert_int_equal(len, (size_t)i % size);
        assert_memory_equal(got, data + (size_t)i * size, len);
        free(got);
    }
    print_message("%d pipelined puts: %lld ms\n", n, (long long)ms);
    /* The connection is in step afterwards. */
    put_text(c, "after", "ok");
    free(items);
    free(data);
    free(names);
    tf_close(c);
}

static void test_putx_many_thousand(void **state)
{
    put_many_check(*state, NULL, 1000, 512);
}

/* A window of several groups (tcpfile-client's push: 1024 puts; a group
   holds 256): the client keeps sending while the server, committing a
   group, does not read, and reads the answers as they come, so neither
   side waits on the other for good. */
static void test_putx_many_window_of_groups(void **state)
{
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_PIPELINE, 1024), TF_OK);
    put_many_check(*state, opt, 1024, 8192);
    tf_options_free(opt);
}

/* A bad name, an existing name under if-absent, a wrong if-match and a
   missing local file in the middle fail alone; the rest are stored. */
static void test_putx_many_refused_middle(void **state)
{
    fixture *f = *state;
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_PIPELINE, 4), TF_OK);
    tf_client *c = tu_connect(&f->srv, opt);
    tf_options_free(opt);
    put_text(c, "exists", "keep me");
    size_t big = 3u << 20; /* a refused payload the server must drain */
    uint8_t *data = malloc(big);
    assert_non_null(data);
    tu_fill(data, big, 5);
    char local[512], missing[512];
    snprintf(local, sizeof local, "%s/file", f->local);
    snprintf(missing, sizeof missing, "%s/none", f->local);
    tu_write_file(local, data, 1000);
    tf_put_args absent = {.flags = TF_PUT_IF_ABSENT};
    tf_put_args match = {.flags = TF_PUT_IF_MATCH};
    digest_of("not it", 6, match.if_match);
    tf_put_item items[] = {
        {.name = "a", .fd = -1, .data = "A", .size = 1},
        {.name = "../bad", .fd = -1, .data = "B", .size = 1},
        {.name = "exists", .fd = -1, .data = data, .size = big, .args = &absent},
        {.name = "c", .fd = -1, .data = data, .size = big},
        {.name = "exists", .fd = -1, .data = "D", .size = 1, .args = &match},
        {.local_path = missing, .fd = -1},
        {.local_path = local, .name = "e", .fd = -1},
        {.local_path = local, .fd = -1}, /* as "file" */
    };
    size_t n = sizeof items / sizeof items[0];
    assert_int_equal(tf_put_many(c, items, n), TF_EINVAL); /* the first in order */
    assert_non_null(strstr(tf_errmsg(c), "../bad"));
    assert_int_equal(items[0].result, TF_OK);
    assert_int_equal(items[1].result, TF_EINVAL);
    assert_int_equal(items[2].result, TF_EEXIST);
    assert_non_null(strstr(items[2].message, "exists"));
    assert_int_equal(items[3].result, TF_OK);
    assert_int_equal(items[4].result, TF_ECONFLICT);
    assert_int_equal(items[5].result, TF_ENOENT);
    assert_int_equal(items[6].result, TF_OK);
    assert_int_equal(items[7].result, TF_OK);
    assert_string_equal(items[0].message, "");
    expect_stored(f, "a", "A");
    expect_stored(f, "exists", "keep me");
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/c", f->srv.root);
    uint8_t *got = tu_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, big);
    assert_memory_equal(got, data, big);
    free(got);
    snprintf(path, sizeof path, "%s/file", f->srv.root);
    assert_int_equal(tu_file_size(path), 1000);
    snprintf(path, sizeof path, "%s/e", f->srv.root);
    assert_int_equal(tu_file_size(path), 1000);
    put_text(c, "after", "ok");
    free(data);
    tf_close(c);
}

static void test_putx_many_skip_same(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    put_text(c, "s1", "same");
    put_text(c, "s2", "old");
    tf_put_args a = {.flags = TF_PUT_SKIP_SAME};
    tf_put_item items[] = {
        {.name = "s1", .fd = -1, .data = "same", .size = 4, .args = &a},
        {.name = "s2", .fd = -1, .data = "new", .size = 3, .args = &a},
        {.name = "s3", .fd = -1, .data = "brand", .size = 5, .args = &a},
    };
    assert_int_equal(tf_put_many(c, items, 3), TF_OK);
    assert_int_equal(items[0].skipped, 1);
    assert_int_equal(items[1].skipped, 0);
    assert_int_equal(items[2].skipped, 0);
    expect_stored(f, "s1", "same");
    expect_stored(f, "s2", "new");
    expect_stored(f, "s3", "brand");
    tf_close(c);
}

/* A batch of skip-if-same puts sends no payload for the files the server
   already holds: its log counts the bytes of the one changed file only
   (the payload of a pipelined put would be read and dropped, and counted). */
static void test_putx_many_skip_same_no_payload(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    enum { N = 6, LEN = 100000 };
    uint8_t *data = malloc((size_t)N * LEN);
    assert_non_null(data);
    tu_fill(data, (size_t)N * LEN, 7);
    tf_put_item items[N];
    tf_put_args a = {.flags = TF_PUT_SKIP_SAME | TF_PUT_MTIME, .mtime_sec = 1500000000};
    char names[N][8];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        items[i] = (tf_put_item){.name = names[i], .fd = -1, .data = data + (size_t)i * LEN,
                                 .size = LEN};
    }
    assert_int_equal(tf_put_many(c, items, N), TF_OK); /* the first versions */
    int puts;
    uint64_t bytes;
    int result;
    logged_put(f, N, &bytes, &result);
    pthread_mutex_lock(&f->mu);
    puts = f->puts;
    f->put_bytes = 0;
    pthread_mutex_unlock(&f->mu);
    data[3 * LEN + 5] ^= 1; /* k3 changes */
    for (int i = 0; i < N; i++)
        items[i].args = &a;
    assert_int_equal(tf_put_many(c, items, N), TF_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(items[i].skipped, i != 3);
    logged_put(f, puts + N, &bytes, &result);
    pthread_mutex_lock(&f->mu);
    uint64_t moved = f->put_bytes;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(moved, LEN);
    /* The stored bytes, and the time set on the skipped files too. */
    char path[512];
    struct stat st;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "%s/%s", f->srv.root, names[i]);
        size_t got_len;
        uint8_t *got = tu_read_file(path, &got_len);
        assert_non_null(got);
        assert_int_equal(got_len, LEN);
        assert_memory_equal(got, data + (size_t)i * LEN, LEN);
        free(got);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mtim.tv_sec, 1500000000);
    }
    /* Refused and stored items behind skipped ones keep their order. */
    tf_put_args absent = {.flags = TF_PUT_SKIP_SAME | TF_PUT_IF_ABSENT};
    items[0].args = &absent; /* exists: EEXIST before the comparison */
    items[1].args = NULL;    /* pipelined, stored again */
    assert_int_equal(tf_put_many(c, items, 3), TF_EEXIST);
    assert_int_equal(items[0].result, TF_EEXIST);
    assert_int_equal(items[1].result, TF_OK);
    assert_int_equal(items[2].result, TF_OK);
    assert_int_equal(items[2].skipped, 1);
    put_text(c, "after", "ok"); /* still in step */
    free(data);
    tf_close(c);
}

/* PARENTS makes the missing directories (with paths: feature TREE); a file
   or a symbolic link on the way refuses the put and nothing appears. */
static void test_putx_parents(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->srv, NULL);
    tf_put_args p = {.flags = TF_PUT_PARENTS};
    /* Without PARENTS, a missing directory fails. */
    assert_int_not_equal(tf_put_mem_ex(c, "x", 1, "a/b/c.txt", NULL, NULL), TF_OK);
    assert_int_equal(tf_put_mem_ex(c, "deep", 4, "a/b/c.txt", &p, NULL), TF_OK);
    expect_stored(f, "a/b/c.txt", "deep");
    /* Existing parents are fine. */
    assert_int_equal(tf_put_mem_ex(c, "next", 4, "a/b/d.txt", &p, NULL), TF_OK);
    expect_stored(f, "a/b/d.txt", "next");
    /* A file in the way. */
    put_text(c, "file", "plain");
    int rc = tf_put_mem_ex(c, "x", 1, "file/x", &p, NULL);
    assert_true(rc == TF_ENOTDIR || rc == TF_EEXIST);
    expect_stored(f, "file", "plain");
    /* A symbolic link in the way, to a directory outside the root. */
    char link[512], outside[512];
    snprintf(outside, sizeof outside, "%s/outside", f->local);
    assert_int_equal(mkdir(outside, 0755), 0);
    snprintf(link, sizeof link, "%s/link", f->srv.root);
    assert_int_equal(symlink(outside, link), 0);
    rc = tf_put_mem_ex(c, "x", 1, "link/sub/x", &p, NULL);
    assert_int_not_equal(rc, TF_OK);
    assert_true(rc == TF_EACCES || rc == TF_ENOTDIR || rc == TF_EEXIST);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", outside);
    struct stat st;
    assert_int_not_equal(lstat(sub, &st), 0);
    /* Pipelined, a small tree in one batch. */
    tf_put_item items[] = {
        {.name = "t/1/x", .fd = -1, .data = "1", .size = 1, .args = &p},
        {.name = "t/2/y", .fd = -1, .data = "2", .size = 1, .args = &p},
        {.name = "t/2/z/w", .fd = -1, .data = "3", .size = 1, .args = &p},
    };
    assert_int_equal(tf_put_many(c, items, 3), TF_OK);
    expect_stored(f, "t/1/x", "1");
    expect_stored(f, "t/2/y", "2");
    expect_stored(f, "t/2/z/w", "3");
    tf_close(c);
}

/* Framing: the extension flags without PUTX in use, or no-go-ahead with an
   upload key, are EPROTO and a close (the frame's length depends on them). */
static void test_putx_raw_framing(void **state)
{
    fixture *f = *state;
    int fd = rp_connect(f->srv.port);
    assert_true(fd >= 0);
    long feats = rp_handshake(fd, 0); /* no PUTX */
    assert_true(feats >= 0);
    assert_int_equal(rp_send_request(fd, TF_OP_PUT, TF_REQ_IF_ABSENT, 1, 1, 0, "x", NULL), 0);
    tf_wire_response r;
    char msg[1100];
    assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
    assert_int_equal(r.status, (uint16_t)-TF_EPROTO);
    assert_int_equal(rp_wait_closed(fd, 3000), 1);
    close(fd);
    /* IF_MATCH without PUTX: no extension block follows, so none is waited
       for (found by faults_malformed): the answer comes at once. */
    fd = rp_connect(f->srv.port);
    assert_true(fd >= 0);
    assert_true(rp_handshake(fd, 0) >= 0);
    assert_int_equal(rp_send_request(fd, TF_OP_PUT, TF_REQ_IF_MATCH, 1, 1, 0, "x", NULL), 0);
    assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
    assert_int_equal(r.status, (uint16_t)-TF_EPROTO);
    assert_int_equal(rp_wait_closed(fd, 3000), 1);
    close(fd);

    fd = rp_connect(f->srv.port);
    assert_true(fd >= 0);
    feats = rp_handshake(fd, TF_FEATURE_PUTX | TF_FEATURE_RESUME);
    assert_true(feats & TF_FEATURE_PUTX);
    static const uint8_t key[16];
    assert_int_equal(rp_send_request(fd, TF_OP_PUT, TF_REQ_NO_GOAHEAD | TF_REQ_UPLOAD_KEY, 1,
                                     1, 0, "x", key),
                     0);
    assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
    assert_int_equal(r.status, (uint16_t)-TF_EPROTO);
    assert_int_equal(rp_wait_closed(fd, 3000), 1);
    close(fd);
}

/* A no-go-ahead put refused up front (a bad mtime) is answered once, after
   its payload and trailer, which the server drops; the connection goes on.
   A good one behind it, sent in the same write, is stored. */
static void test_putx_raw_no_goahead(void **state)
{
    fixture *f = *state;
    int fd = rp_connect(f->srv.port);
    assert_true(fd >= 0);
    long feats = rp_handshake(fd, TF_FEATURE_PUTX);
    assert_true(feats & TF_FEATURE_PUTX);
    uint8_t out[512];
    size_t len = 0;
    tf_wire_request q = {.op = TF_OP_PUT, .flags = TF_REQ_NO_GOAHEAD | TF_REQ_MTIME,
                         .name = "bad", .name_len = 3, .size = 5, .mtime_nsec = 1000000000u};
    long k = tf__wire_encode_request(out, sizeof out, &q);
    assert_true(k > 0);
    len += (size_t)k;
    memcpy(out + len, "drop!", 5);
    len += 5;
    tf_wire_trailer t = {0};
    len += (size_t)tf__wire_encode_trailer(out + len, sizeof out - len, &t);
    q = (tf_wire_request){.op = TF_OP_PUT, .flags = TF_REQ_NO_GOAHEAD, .name = "good",
                          .name_len = 4, .size = 2};
    len += (size_t)tf__wire_encode_request(out + len, sizeof out - len, &q);
    memcpy(out + len, "ok", 2);
    len += 2;
    len += (size_t)tf__wire_encode_trailer(out + len, sizeof out - len, &t);
    assert_int_equal(rp_send(fd, out, len), 0);
    tf_wire_response r;
    char msg[1100];
    assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
    assert_int_equal(r.status, (uint16_t)-TF_EINVAL);
    assert_non_null(strstr(msg, "nanoseconds"));
    assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.size, 2);
    assert_int_equal(rp_list_ok(fd), 0);
    close(fd);
    expect_stored(f, "good", "ok");
    char path[512];
    snprintf(path, sizeof path, "%s/bad", f->srv.root);
    assert_int_equal(tu_file_size(path), -1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_putx_offered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_if_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_if_match_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_if_match_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_if_match_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_counter_no_lost_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_mtime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_skip_same, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_resume_and_checksum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_many_thousand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_many_window_of_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_many_refused_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_many_skip_same, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_many_skip_same_no_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_parents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_raw_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_putx_raw_no_goahead, setup, teardown),
    };
    return TU_RUN_GROUP("putx", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
