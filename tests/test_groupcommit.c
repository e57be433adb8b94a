/*
 * test_groupcommit.c - the group commit of pipelined puts (groupcommit.h):
 * a batch sent in one write costs a few syncs, not two per file; answers
 * keep the order of the requests when some puts are refused in the middle;
 * a request of another kind ends the batch and sees the puts before it;
 * with TF_OPT_GROUP_COMMIT 1 every put pays its own two syncs; a slow
 * steady pipeline is answered as it goes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faults/rawpeer.h"
#include "server_internal.h"
#include "testutil.h"
#include "wire.h"

#define BATCH 40

typedef struct fixture {
    test_server srv;
} fixture;

static int start(void **state, int group)
{
    fixture *f = calloc(1, sizeof *f);
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_CHECKSUM, 0), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_GROUP_COMMIT, group), TF_OK);
    tu_server_start(&f->srv, opt);
    tf_options_free(opt);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return start(state, 256);
}

static int setup_alone(void **state)
{
    return start(state, 1);
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_server_stop(&f->srv, 1);
    free(f);
    return 0;
}

/* Appends a pipelined put of text as name (flags beside NO_GOAHEAD). */
static size_t put_frame(uint8_t *out, size_t cap, const char *name, const char *text,
                        uint8_t flags, uint32_t mtime_nsec)
{
    tf_wire_request q = {.op = TF_OP_PUT, .flags = (uint8_t)(TF_REQ_NO_GOAHEAD | flags),
                         .name = name, .name_len = (uint16_t)strlen(name),
                         .size = strlen(text), .mtime_nsec = mtime_nsec};
    long k = tf__wire_encode_request(out, cap, &q);
    assert_true(k > 0);
    size_t len = (size_t)k;
    memcpy(out + len, text, strlen(text));
    len += strlen(text);
    tf_wire_trailer t = {0};
    len += (size_t)tf__wire_encode_trailer(out + len, cap - len, &t);
    return len;
}

static int connect_raw(fixture *f)
{
    int fd = rp_connect(f->srv.port);
    assert_true(fd >= 0);
    long feats = rp_handshake(fd, TF_FEATURE_PUTX | TF_FEATURE_TREE);
    assert_true(feats & TF_FEATURE_PUTX);
    return fd;
}

static void expect_file(fixture *f, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", f->srv.root, name);
    size_t len;
    uint8_t *got = tu_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(got, text, len);
    free(got);
}

/* BATCH puts in one write, answered in order: a handful of syncs. */
static size_t send_batch(fixture *f)
{
    uint8_t *out = malloc(BATCH * 256);
    size_t len = 0;
    char name[32], text[32];
    for (int i = 0; i < BATCH; i++) {
        snprintf(name, sizeof name, "f%02d", i);
        snprintf(text, sizeof text, "content %d", i);
        len += put_frame(out + len, BATCH * 256 - len, name, text, 0, 0);
    }
    uint64_t before = tf__server_syncs(f->srv.srv);
    int fd = connect_raw(f);
    assert_int_equal(rp_send(fd, out, len), 0);
    for (int i = 0; i < BATCH; i++) {
        tf_wire_response r;
        char msg[1100];
        assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
        assert_int_equal(r.status, 0);
        snprintf(text, sizeof text, "content %d", i);
        assert_int_equal(r.size, strlen(text));
    }
    close(fd);
    free(out);
    for (int i = 0; i < BATCH; i++) {
        snprintf(name, sizeof name, "f%02d", i);
        snprintf(text, sizeof text, "content %d", i);
        expect_file(f, name, text);
    }
    return (size_t)(tf__server_syncs(f->srv.srv) - before);
}

static void test_group_few_syncs(void **state)
{
    size_t syncs = send_batch(*state);
    /* One write on loopback arrives whole: one batch, two syncs; a server
       that caught up with the bytes mid-way makes two or three batches. */
    print_message("# %d pipelined puts: %zu syncs\n", BATCH, syncs);
    assert_true(syncs >= 2);
    assert_true(syncs <= 8);
}

/* The same with grouping off: each put its data's and its directory's. */
static void test_group_off_two_each(void **state)
{
    size_t syncs = send_batch(*state);
    assert_int_equal(syncs, 2 * BATCH);
}

/* Refusals in the middle of a batch (a bad mtime, decided before the
   payload; a missing parent, at the target check) are answered in their
   places; the puts around them are stored. */
static void test_group_order_with_refusals(void **state)
{
    fixture *f = *state;
    uint8_t out[2048];
    size_t len = 0;
    len += put_frame(out + len, sizeof out - len, "a", "first", 0, 0);
    len += put_frame(out + len, sizeof out - len, "bad", "drop", TF_REQ_MTIME, 1000000000u);
    len += put_frame(out + len, sizeof out - len, "b", "second", 0, 0);
    len += put_frame(out + len, sizeof out - len, "nodir/c", "orphan", 0, 0);
    len += put_frame(out + len, sizeof out - len, "c", "third", 0, 0);
    int fd = connect_raw(f);
    assert_int_equal(rp_send(fd, out, len), 0);
    static const int want[] = {0, TF_EINVAL, 0, TF_ENOENT, 0};
    static const uint64_t size[] = {5, 0, 6, 0, 5};
    for (int i = 0; i < 5; i++) {
        tf_wire_response r;
        char msg[1100];
        assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
        assert_int_equal(r.status, (uint16_t)-want[i]);
        assert_int_equal(r.size, size[i]);
    }
    assert_int_equal(rp_list_ok(fd), 0); /* still in step */
    close(fd);
    expect_file(f, "a", "first");
    expect_file(f, "b", "second");
    expect_file(f, "c", "third");
    char path[512];
    snprintf(path, sizeof path, "%s/bad", f->srv.root);
    assert_int_equal(tu_file_size(path), -1);
}

/* Small puts wait in the group's memory and are staged by its commit:
   PARENTS made once per directory, a directory or a file in the way failing
   only its own put, and the puts after a failed one still stored under
   their own names (the commit's items packed without it). */
static void test_group_held_parents_and_failures(void **state)
{
    fixture *f = *state;
    char path[512];
    snprintf(path, sizeof path, "%s/adir", f->srv.root);
    assert_int_equal(mkdir(path, 0755), 0);
    tu_write_in(f->srv.root, "file", "x", 1);
    uint8_t out[4096];
    size_t len = 0;
    len += put_frame(out + len, sizeof out - len, "p/q/one", "1", TF_REQ_PARENTS, 0);
    len += put_frame(out + len, sizeof out - len, "adir", "in the way", 0, 0);
    len += put_frame(out + len, sizeof out - len, "p/q/two", "22", TF_REQ_PARENTS, 0);
    len += put_frame(out + len, sizeof out - len, "file/x", "not a dir", TF_REQ_PARENTS, 0);
    len += put_frame(out + len, sizeof out - len, "p/r/three", "333", TF_REQ_PARENTS, 0);
    len += put_frame(out + len, sizeof out - len, "top", "4444", 0, 0);
    int fd = connect_raw(f);
    assert_int_equal(rp_send(fd, out, len), 0);
    static const int want[] = {0, TF_EISDIR, 0, TF_ENOTDIR, 0, 0};
    static const uint64_t size[] = {1, 0, 2, 0, 3, 4};
    for (int i = 0; i < 6; i++) {
        tf_wire_response r;
        char msg[1100];
        assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
        assert_int_equal(r.status, (uint16_t)-want[i]);
        assert_int_equal(r.size, size[i]);
    }
    assert_int_equal(rp_list_ok(fd), 0); /* still in step */
    close(fd);
    expect_file(f, "p/q/one", "1");
    expect_file(f, "p/q/two", "22");
    expect_file(f, "p/r/three", "333");
    expect_file(f, "top", "4444");
    expect_file(f, "file", "x");
}

/* The staging directory is opened once and kept: removed while the server
   runs, it is made again for the next upload that needs it (a new name is
   linked straight to its place; replacing one goes through it). */
static void test_group_staging_dir_removed(void **state)
{
    fixture *f = *state;
    uint8_t out[1024];
    int fd = connect_raw(f);
    tf_wire_response r;
    char msg[1100];
    const char *text[] = {"new", "before", "after"};
    for (int i = 0; i < 3; i++) {
        size_t len = put_frame(out, sizeof out, "a", text[i], 0, 0);
        assert_int_equal(rp_send(fd, out, len), 0);
        assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
        assert_int_equal(r.status, 0);
        if (i == 1) { /* made by the replacing */
            char path[512];
            snprintf(path, sizeof path, "%s/" TF_TMP_DIR, f->srv.root);
            assert_int_equal(rmdir(path), 0);
        }
    }
    close(fd);
    expect_file(f, "a", "after");
}

/* A stat right behind puts, in the same write, ends the batch: it is
   answered after them and sees the file they stored. */
static void test_group_stat_sees_puts(void **state)
{
    fixture *f = *state;
    uint8_t out[1024];
    size_t len = 0;
    len += put_frame(out + len, sizeof out - len, "x", "twelve bytes", 0, 0);
    len += put_frame(out + len, sizeof out - len, "y", "y", 0, 0);
    tf_wire_request q = {.op = TF_OP_STAT, .name = "x", .name_len = 1};
    long k = tf__wire_encode_request(out + len, sizeof out - len, &q);
    assert_true(k > 0);
    len += (size_t)k;
    int fd = connect_raw(f);
    assert_int_equal(rp_send(fd, out, len), 0);
    tf_wire_response r;
    char msg[1100];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
        assert_int_equal(r.op, TF_OP_PUT);
        assert_int_equal(r.status, 0);
    }
    assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
    assert_int_equal(r.op, TF_OP_STAT);
    assert_int_equal(r.status, 0);
    uint8_t rec[TF_WIRE_STAT_SIZE];
    assert_int_equal(r.size, sizeof rec);
    assert_int_equal(rp_recv(fd, rec, sizeof rec), 0);
    tf_wire_stat st;
    assert_true(tf__wire_decode_stat(rec, sizeof rec, &st) > 0);
    assert_int_equal(st.size, 12);
    close(fd);
}

/* A slow, steady pipeline (each write ends in the middle of a put, so the
   server never sees it pause) is still answered as it goes: a group ends
   once its first put has waited GROUP_AGE_MS (200 ms), not after 256 puts
   or at the end of the stream. 16 puts, one every 60 ms: the first answer
   must come before the last put is sent. */
static void test_group_age_bound(void **state)
{
    fixture *f = *state;
    enum { SLOW = 16 };
    static uint8_t out[SLOW][1200];
    static char text[1001]; /* long enough that half a put ends in its payload */
    memset(text, 'x', sizeof text - 1);
    size_t len[SLOW];
    for (int i = 0; i < SLOW; i++) {
        char name[16];
        snprintf(name, sizeof name, "slow%02d", i);
        len[i] = put_frame(out[i], sizeof out[i], name, text, 0, 0);
    }
    int fd = connect_raw(f);
    int answered_early = 0;
    static uint8_t buf[2 * sizeof out[0]];
    for (int i = 0; i < SLOW; i++) {
        /* the rest of the previous put and half of this one, in one write */
        size_t n = 0;
        if (i > 0) {
            memcpy(buf, out[i - 1] + len[i - 1] / 2, len[i - 1] - len[i - 1] / 2);
            n = len[i - 1] - len[i - 1] / 2;
        }
        memcpy(buf + n, out[i], len[i] / 2);
        assert_int_equal(rp_send(fd, buf, n + len[i] / 2), 0);
        usleep(60 * 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (!answered_early && poll(&p, 1, 0) == 1)
            answered_early = i + 1;
    }
    assert_int_equal(rp_send(fd, out[SLOW - 1] + len[SLOW - 1] / 2,
                             len[SLOW - 1] - len[SLOW - 1] / 2), 0);
    print_message("# first answer seen after %d of %d puts\n", answered_early, SLOW);
    assert_true(answered_early > 0);
    for (int i = 0; i < SLOW; i++) {
        tf_wire_response r;
        char msg[1100];
        assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
        assert_int_equal(r.status, 0);
    }
    close(fd);
    expect_file(f, "slow15", text);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_few_syncs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_off_two_each, setup_alone, teardown),
        cmocka_unit_test_setup_teardown(test_group_order_with_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_stat_sees_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_held_parents_and_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_staging_dir_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_age_bound, setup, teardown),
    };
    return TU_RUN_GROUP("groupcommit", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
