/*
 * test_getmany.c - tf_get_many against a real server: pipelined gets of
 * files on both sides of the server's small-file path, into descriptors and
 * into local paths; one file's failure leaves the others whole; windows from
 * 1 to 256 with responses that fill the sockets (no deadlock); a connection
 * that fails mid-batch fails what is left; per-item messages and progress,
 * the first failure in order; small answers for one descriptor gathered
 * into few writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* Around the server's 64 KiB small-file limit, and well past it. */
static const size_t sizes[] = {0, 1, 4096, 65535, 65536, 65537, 300000, 2 << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void make_files(const char *root, int n)
{
    for (int i = 0; i < n; i++) {
        size_t len = sizes[(size_t)i % NSIZES];
        uint8_t *data = malloc(len ? len : 1);
        char path[512];
        assert_non_null(data);
        tu_fill(data, len, (uint64_t)i);
        snprintf(path, sizeof path, "%s/f%03d", root, i);
        tu_write_file(path, data, len);
        free(data);
    }
}

/* Whether path holds exactly file number i. */
static void check_file(const char *path, int i)
{
    size_t len = sizes[(size_t)i % NSIZES], got = 0;
    uint8_t *want = malloc(len ? len : 1);
    uint8_t *have = tu_read_file(path, &got);
    assert_non_null(want);
    assert_non_null(have);
    tu_fill(want, len, (uint64_t)i);
    assert_int_equal(got, len);
    assert_memory_equal(have, want, len);
    free(want);
    free(have);
}

typedef struct fixture {
    test_server srv;
    char local[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    tu_server_start(&f->srv, NULL);
    tu_mkdtemp(f->local, sizeof f->local);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_server_stop(&f->srv, 1);
    tu_rm_rf(f->local);
    free(f);
    return 0;
}

static tf_client *connect_with_depth(fixture *f, int depth)
{
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_PIPELINE, depth), TF_OK);
    tf_client *c = tu_connect(&f->srv, opt);
    tf_options_free(opt);
    return c;
}

/* Every file into its own local path, for windows 1, 7 and 256. */
static void test_paths_every_window(void **state)
{
    fixture *f = *state;
    enum { N = 40 };
    make_files(f->srv.root, N);
    static const int depths[] = {1, 7, 256};
    for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
        tf_client *c = connect_with_depth(f, depths[d]);
        char names[N][16], paths[N][1024];
        tf_get_item items[N];
        for (int i = 0; i < N; i++) {
            snprintf(names[i], sizeof names[i], "f%03d", i);
            snprintf(paths[i], sizeof paths[i], "%s/d%zu-%s", f->local, d, names[i]);
            items[i] = (tf_get_item){.name = names[i], .local_path = paths[i], .fd = -1};
        }
        assert_int_equal(tf_get_many(c, items, N), TF_OK);
        for (int i = 0; i < N; i++) {
            assert_int_equal(items[i].result, TF_OK);
            check_file(paths[i], i);
        }
        /* The connection is still in step for ordinary calls. */
        void *data;
        size_t len;
        assert_int_equal(tf_get_mem(c, "f002", &data, &len), TF_OK);
        assert_int_equal(len, sizes[2]);
        tf_free(data);
        tf_close(c);
    }
    assert_int_equal(tu_count_prefix(f->local, ".tcpfile-part"), 0);
}

/* Many requests for one 64 KiB file, into descriptors: the server's
   one-sendmsg responses meet full sockets while requests keep coming. */
static void test_full_sockets(void **state)
{
    fixture *f = *state;
    enum { N = 600 };
    make_files(f->srv.root, 5); /* f004 is 65536 bytes */
    tf_client *c = connect_with_depth(f, 256);
    char path[512];
    snprintf(path, sizeof path, "%s/all", f->local);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    tf_get_item *items = calloc(N, sizeof *items);
    assert_non_null(items);
    for (int i = 0; i < N; i++)
        items[i] = (tf_get_item){.name = "f004", .fd = fd};
    assert_int_equal(tf_get_many(c, items, N), TF_OK);
    close(fd);
    assert_int_equal(tu_file_size(path), (long long)N * 65536);
    size_t len;
    uint8_t *all = tu_read_file(path, &len), *one = malloc(65536);
    assert_non_null(all);
    assert_non_null(one);
    tu_fill(one, 65536, 4);
    for (int i = 0; i < N; i++)
        assert_memory_equal(all + (size_t)i * 65536, one, 65536);
    free(all);
    free(one);
    free(items);
    tf_close(c);
}

/* A missing file, a bad name and an unwritable local path fail alone. */
static void test_failures_stay_local(void **state)
{
    fixture *f = *state;
    make_files(f->srv.root, 8);
    tf_client *c = connect_with_depth(f, 4);
    char p0[512], p1[512], p2[512], p3[512], p4[512];
    snprintf(p0, sizeof p0, "%s/a", f->local);
    snprintf(p1, sizeof p1, "%s/b", f->local);
    snprintf(p2, sizeof p2, "%s/no-such-dir/c", f->local);
    snprintf(p3, sizeof p3, "%s/d", f->local);
    snprintf(p4, sizeof p4, "%s/e", f->local);
    tf_get_item items[] = {
        {.name = "f007", .local_path = p0},
        {.name = "missing", .local_path = p1},
        {.name = "f006", .local_path = p2}, /* 2 MiB, drained */
        {.name = "../f001", .local_path = p3},
        {.name = "f003", .local_path = NULL, .fd = -1}, /* ./f003, as tf_get */
        {.name = "f005", .local_path = p4},
    };
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->local), 0);
    int rc = tf_get_many(c, items, sizeof items / sizeof items[0]);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, TF_ENOENT); /* the first failure, with its message */
    assert_non_null(strstr(tf_errmsg(c), "missing"));
    assert_int_equal(items[0].result, TF_OK);
    assert_int_equal(items[1].result, TF_ENOENT);
    /* The local directory is missing: what tf_get says, and nothing else. */
    assert_int_not_equal(items[2].result, TF_OK);
    assert_int_equal(items[2].result, tf_get(c, "f006", p2));
    assert_int_equal(items[3].result, TF_EINVAL);
    assert_int_equal(items[4].result, TF_OK);
    assert_int_equal(items[5].result, TF_OK);
    /* Each failure keeps its own message; successes have "". */
    assert_string_equal(items[0].message, "");
    assert_non_null(strstr(items[1].message, "missing"));
    assert_non_null(strstr(items[2].message, "no-such-dir"));
    assert_non_null(strstr(items[3].message, "../f001"));
    assert_string_equal(items[4].message, "");
    char p5[512];
    snprintf(p5, sizeof p5, "%s/f003", f->local);
    check_file(p5, 3);
    check_file(p0, 7);
    check_file(p4, 5);
    assert_int_equal(tu_file_size(p1), -1);
    assert_int_equal(tf_get_many(c, items, 0), TF_OK);
    assert_int_equal(tf_get_many(NULL, items, 1), TF_EINVAL);
    tf_close(c);
}

/* An item whose reserved room is not zero fails alone, with TF_EINVAL;
   zeroed items around it are fetched. */
static void test_reserved_room_must_be_zero(void **state)
{
    fixture *f = *state;
    make_files(f->srv.root, 8);
    tf_client *c = connect_with_depth(f, 4);
    char p0[512], p1[512], p2[512];
    snprintf(p0, sizeof p0, "%s/a", f->local);
    snprintf(p1, sizeof p1, "%s/b", f->local);
    snprintf(p2, sizeof p2, "%s/c", f->local);
    tf_get_item items[] = {
        {.name = "f001", .local_path = p0},
        {.name = "f002", .local_path = p1},
        {.name = "f003", .local_path = p2},
    };
    items[1].reserved[2] = &items[1];
    assert_int_equal(tf_get_many(c, items, 3), TF_EINVAL);
    assert_non_null(strstr(tf_errmsg(c), "reserved"));
    assert_int_equal(items[0].result, TF_OK);
    assert_int_equal(items[1].result, TF_EINVAL);
    assert_int_equal(items[2].result, TF_OK);
    check_file(p0, 1);
    assert_int_equal(tu_file_size(p1), -1);
    check_file(p2, 3);
    tf_close(c);
}

/* The first failure is the lowest index, not the earliest: a bad name
   fails before any response is read, yet a missing file ahead of it is
   what the call returns. */
static void test_first_failure_in_order(void **state)
{
    fixture *f = *state;
    make_files(f->srv.root, 2);
    tf_client *c = connect_with_depth(f, 8);
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    tf_get_item items[] = {
        {.name = "f000", .fd = fd},
        {.name = "gone", .fd = fd},
        {.name = "a/../../x", .fd = fd},
    };
    assert_int_equal(tf_get_many(c, items, 3), TF_ENOENT);
    assert_non_null(strstr(tf_errmsg(c), "gone"));
    assert_int_equal(items[2].result, TF_EINVAL);
    assert_non_null(strstr(items[2].message, "a/../../x"));
    assert_null(strstr(items[1].message, "a/../../x"));
    close(fd);
    tf_close(c);
}

typedef struct report {
    size_t index;
    uint64_t done, total;
} report;

typedef struct reports {
    report r[4096];
    size_t n;
    size_t cancel_at; /* cancel on the first report of this index */
} reports;

static int item_progress(void *user, size_t index, uint64_t done, uint64_t total)
{
    reports *rs = user;
    if (rs->n < sizeof rs->r / sizeof rs->r[0])
        rs->r[rs->n++] = (report){index, done, total};
    return index == rs->cancel_at;
}

static int plain_progress(void *user, uint64_t done, uint64_t total)
{
    return item_progress(user, SIZE_MAX - 1, done, total);
}

/* Checks that every item i (but skip) reports from 0 to its size, in
   order, and skip reports nothing. */
static void check_reports(const reports *rs, int n, int skip, int with_index)
{
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (i == skip)
            continue;
        uint64_t size = sizes[(size_t)i % NSIZES];
        assert_true(k < rs->n);
        if (with_index)
            assert_int_equal(rs->r[k].index, i);
        assert_int_equal(rs->r[k].done, 0);
        assert_int_equal(rs->r[k].total, size);
        while (k + 1 < rs->n && rs->r[k].done < size) {
            k++;
            if (with_index)
                assert_int_equal(rs->r[k].index, i);
            assert_int_equal(rs->r[k].total, size);
        }
        assert_int_equal(rs->r[k].done, size);
        k++;
        /* A zero-byte item may report 0 once or twice. */
        while (size == 0 && k < rs->n && rs->r[k].done == 0 && rs->r[k].total == 0 &&
               (!with_index || rs->r[k].index == (size_t)i))
            k++;
    }
    assert_int_equal(k, rs->n);
}

/* The item progress callback tells each item's index and bytes; without
   it the plain one sees each item from 0 to its size; a failed item
   reports nothing; a non-zero return cancels the batch. */
static void test_progress_per_item(void **state)
{
    fixture *f = *state;
    enum { N = 10 };
    make_files(f->srv.root, N);
    static reports rs;
    char names[N][16], paths[N][1024];
    tf_get_item items[N];
    for (int round = 0; round < 3; round++) {
        memset(&rs, 0, sizeof rs);
        rs.cancel_at = round == 2 ? 7 : SIZE_MAX;
        tf_options *opt;
        assert_int_equal(tf_options_new(&opt), TF_OK);
        assert_int_equal(tf_options_set(opt, TF_OPT_PIPELINE, 4), TF_OK);
        if (round == 1)
            assert_int_equal(tf_options_set_progress(opt, plain_progress, &rs), TF_OK);
        else
            assert_int_equal(tf_options_set_item_progress(opt, item_progress, &rs), TF_OK);
        tf_client *c = tu_connect(&f->srv, opt);
        tf_options_free(opt);
        for (int i = 0; i < N; i++) {
            snprintf(names[i], sizeof names[i], i == 3 ? "nope%d" : "f%03d", i);
            snprintf(paths[i], sizeof paths[i], "%s/r%d-%d", f->local, round, i);
            items[i] = (tf_get_item){.name = names[i], .local_path = paths[i], .fd = -1};
        }
        int rc = tf_get_many(c, items, N);
        if (round < 2) {
            assert_int_equal(rc, TF_ENOENT);
            check_reports(&rs, N, 3, round == 0);
        } else {
            assert_int_equal(rc, TF_ENOENT); /* item 3 comes first */
            assert_int_equal(items[6].result, TF_OK);
            assert_int_equal(items[7].result, TF_ECANCELED);
            assert_int_equal(items[9].result, TF_ECANCELED);
            assert_non_null(strstr(items[9].message, "cancel"));
            assert_int_equal(tu_file_size(paths[7]), -1);
        }
        tf_close(c);
    }
}

/* The server stops mid-batch: what is not finished fails with the
   connection, and the client says so from then on. */
static void test_connection_lost(void **state)
{
    fixture *f = *state;
    enum { N = 2000 };
    make_files(f->srv.root, 8);
    tf_client *c = connect_with_depth(f, 8);
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    tf_get_item *items = calloc(N, sizeof *items);
    assert_non_null(items);
    for (int i = 0; i < N; i++)
        items[i] = (tf_get_item){.name = "f007", .fd = fd}; /* 2 MiB each */
    /* Idle now, so the stop closes the connection before or during the
       batch; either way nothing after the failure can succeed. */
    tf_server_stop(f->srv.srv);
    int rc = tf_get_many(c, items, N);
    assert_true(rc == TF_ENET || rc == TF_ETIMEDOUT);
    assert_int_equal(items[N - 1].result, rc);
    for (int i = 0; i < N; i++)
        assert_true(items[i].result == TF_OK || items[i].result == rc);
    /* Every item the failure ended carries its message, not just the first. */
    for (int i = 0; i < N; i++)
        if (items[i].result != TF_OK)
            assert_string_equal(items[i].message, items[N - 1].message);
    assert_true(items[N - 1].message[0] != '\0');
    assert_int_equal(tf_get_fd(c, "f000", fd), TF_ENET);
    close(fd);
    free(items);
    tf_close(c);
}

/* Counts the messages (one per write: SOCK_SEQPACKET keeps them apart)
   and keeps the bytes that arrive on a socket, until it closes. */
typedef struct sink {
    int fd;
    size_t writes, len, cap;
    uint8_t *bytes;
} sink;

static void *sink_run(void *arg)
{
    sink *k = arg;
    uint8_t buf[1 << 17];
    ssize_t n;
    while ((n = read(k->fd, buf, sizeof buf)) > 0) {
        if (k->len + (size_t)n > k->cap) {
            k->cap = 2 * (k->len + (size_t)n);
            k->bytes = realloc(k->bytes, k->cap);
            if (!k->bytes)
                return NULL;
        }
        memcpy(k->bytes + k->len, buf, (size_t)n);
        k->len += (size_t)n;
        k->writes++;
    }
    return NULL;
}

/* Small answers bound for one descriptor go out many to a write, around
   a large one and a small one for another descriptor (the gathered bytes
   go first); a descriptor that cannot be written fails exactly its own
   items, with TF_EIO. (A SOCK_SEQPACKET socket counts the writes; the
   large answer goes elsewhere: it would not fit one message.) */
static void test_small_answers_gathered(void **state)
{
    fixture *f = *state;
    enum { N = 96 };
    make_files(f->srv.root, 8); /* f002: 4 KiB, f006: 300000 bytes */
    tf_client *c = connect_with_depth(f, 32);
    int sv[2], other = open("/dev/null", O_WRONLY | O_CLOEXEC);
    int unwritable = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    int room = 1 << 20;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &room, sizeof room), 0);
    assert_true(other >= 0 && unwritable >= 0);
    sink k = {.fd = sv[1]};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sink_run, &k), 0);
    tf_get_item items[N];
    size_t want_len = 0;
    for (int i = 0; i < N; i++) {
        const char *name = i == 40 ? "f006" : i == 41 ? "f000" : "f002";
        int fd = i == 40 || i == 50 ? other : i >= 90 ? unwritable : sv[0];
        items[i] = (tf_get_item){.name = name, .fd = fd};
        if (fd == sv[0])
            want_len += i == 41 ? 0 : 4096;
    }
    assert_int_equal(tf_get_many(c, items, N), TF_EIO);
    close(sv[0]);
    assert_int_equal(pthread_join(th, NULL), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(items[i].result, i >= 90 ? TF_EIO : TF_OK);
    assert_int_equal(k.len, want_len);
    uint8_t *small = malloc(4096);
    assert_non_null(small);
    tu_fill(small, 4096, 2);
    for (size_t at = 0; at < k.len; at += 4096)
        assert_memory_equal(k.bytes + at, small, 4096);
    /* 87 small answers: one by one, that would be 87 writes. Gathered,
       they take 6 of 64 KiB when they come in bursts; an answer that is
       not all here yet flushes the stage first, so a loaded machine sees
       more (8 to 32 seen), never one per answer. */
    assert_true(k.writes < 60);
    free(small);
    free(k.bytes);
    close(sv[1]);
    close(other);
    close(unwritable);
    /* Still in step. */
    assert_int_equal(tf_get_fd(c, "f002", other = open("/dev/null", O_WRONLY)), TF_OK);
    close(other);
    tf_close(c);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paths_every_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_sockets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures_stay_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserved_room_must_be_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_failure_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_per_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_answers_gathered, setup, teardown),
    };
    return TU_RUN_GROUP("getmany", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
