/*
 * test_stream.c - tf_put_stream (feature STREAM, docs/protocol.md) against a
 * real server: 64 MiB through a pipe stored whole and checksummed; an empty
 * stream; a stream cut off or cancelled stores nothing visible; over the
 * server's upload limit it is refused mid-stream with TF_ETOOBIG and
 * nothing is stored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define MIB ((size_t)1 << 20)

/* Writes blocks of MIB bytes (block i filled from seed i) into a pipe,
   then closes it, after hold_ms of silence when hold_ms > 0. */
typedef struct writer {
    pthread_t thread;
    int fd;
    size_t blocks;
    int hold_ms;
    size_t written;
} writer;

static void *write_blocks(void *arg)
{
    writer *w = arg;
    uint8_t *buf = malloc(MIB);
    if (!buf)
        return NULL;
    for (size_t i = 0; i < w->blocks; i++) {
        tu_fill(buf, MIB, (uint64_t)i);
        size_t off = 0;
        while (off < MIB) {
            ssize_t k = write(w->fd, buf + off, MIB - off);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                goto out; /* the reader is gone (EPIPE) */
            off += (size_t)k;
            w->written += (size_t)k;
        }
    }
out:
    if (w->hold_ms)
        tu_sleep_ms(w->hold_ms);
    free(buf);
    close(w->fd);
    return NULL;
}

/* Starts a writer; *rd receives the pipe's read end. */
static void writer_start(writer *w, size_t blocks, int hold_ms, int *rd)
{
    int p[2];
    memset(w, 0, sizeof *w);
    assert_int_equal(pipe(p), 0);
    w->fd = p[1];
    w->blocks = blocks;
    w->hold_ms = hold_ms;
    *rd = p[0];
    assert_int_equal(pthread_create(&w->thread, NULL, write_blocks, w), 0);
}

static void writer_join(writer *w)
{
    pthread_join(w->thread, NULL);
}

/* The files a client sees, and whatever is left in the staging directory. */
static void assert_nothing_stored(const test_server *srv)
{
    tf_client *c = tu_connect(srv, NULL);
    tf_listing *l;
    assert_int_equal(tf_list(c, &l), TF_OK);
    assert_int_equal(tf_listing_count(l), 0);
    tf_listing_free(l);
    tf_close(c);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/.tcpfile-tmp", srv->root);
    DIR *d = opendir(tmp);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
                fail_msg("left in the staging directory: %s", e->d_name);
        closedir(d);
    }
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* the writers see EPIPE when the reader stops */
    return 0;
}

/* 64 MiB through a pipe, of unknown size: stored whole, checksummed on the
   way (CHECKSUM is on by default), and the same bytes on the server. */
static void test_stream_64_mib(void **state)
{
    (void)state;
    test_server srv;
    tu_server_start(&srv, NULL);
    tf_client *c = tu_connect(&srv, NULL);
    assert_int_equal(tf_client_can_stream(c), 1);
    writer w;
    int rd;
    writer_start(&w, 64, 0, &rd);
    assert_int_equal(tf_put_stream(c, rd, "big.bin"), TF_OK);
    writer_join(&w);
    close(rd);
    char path[512];
    snprintf(path, sizeof path, "%s/big.bin", srv.root);
    assert_int_equal(tu_file_size(path), (long long)(64 * MIB));
    FILE *f = fopen(path, "rb");
    uint8_t *want = malloc(MIB), *have = malloc(MIB);
    assert_non_null(f);
    assert_non_null(want);
    assert_non_null(have);
    for (size_t i = 0; i < 64; i++) {
        tu_fill(want, MIB, (uint64_t)i);
        assert_int_equal(fread(have, 1, MIB, f), MIB);
        assert_memory_equal(have, want, MIB);
    }
    fclose(f);
    free(want);
    free(have);
    /* The connection is in step for what follows. */
    assert_int_equal(tf_put_mem(c, "x", 1, "after"), TF_OK);
    tf_close(c);
    tu_server_stop(&srv, 1);
}

/* An empty stream is an empty file. */
static void test_stream_empty(void **state)
{
    (void)state;
    test_server srv;
    tu_server_start(&srv, NULL);
    tf_client *c = tu_connect(&srv, NULL);
    writer w;
    int rd;
    writer_start(&w, 0, 0, &rd);
    assert_int_equal(tf_put_stream(c, rd, "empty"), TF_OK);
    writer_join(&w);
    close(rd);
    char path[512];
    snprintf(path, sizeof path, "%s/empty", srv.root);
    assert_int_equal(tu_file_size(path), 0);
    assert_int_equal(tf_put_stream(c, -1, "x"), TF_EINVAL);
    tf_close(c);
    tu_server_stop(&srv, 1);
}

/* The source stalls after 3 MiB for longer than the server's I/O timeout:
   the server drops the connection, and the 3 MiB it had are not stored. */
static void test_stream_cut_off_stores_nothing(void **state)
{
    (void)state;
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_IO_TIMEOUT_MS, 300), TF_OK);
    test_server srv;
    tu_server_start(&srv, opt);
    tf_options_free(opt);
    tf_client *c = tu_connect(&srv, NULL);
    writer w;
    int rd;
    /* 3 MiB, then 1.5 s of silence (the server's timeout is 0.3 s), then
       the end: the client sends it into a connection the server closed. */
    writer_start(&w, 3, 1500, &rd);
    int rc = tf_put_stream(c, rd, "cut.bin");
    writer_join(&w);
    close(rd);
    assert_true(rc == TF_ENET || rc == TF_ETIMEDOUT);
    tf_close(c);
    assert_nothing_stored(&srv);
    tu_server_stop(&srv, 1);
}

static int cancel_after_2mib(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    assert_int_equal(total, 0);
    return done >= 2 * MIB;
}

/* The caller cancels mid-stream: a failing trailer, nothing stored. */
static void test_stream_cancelled_stores_nothing(void **state)
{
    (void)state;
    test_server srv;
    tu_server_start(&srv, NULL);
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set_progress(opt, cancel_after_2mib, NULL), TF_OK);
    tf_client *c = tu_connect(&srv, opt);
    tf_options_free(opt);
    writer w;
    int rd;
    writer_start(&w, 8, 0, &rd);
    assert_int_equal(tf_put_stream(c, rd, "cancelled.bin"), TF_ECANCELED);
    close(rd); /* the writer gets EPIPE */
    writer_join(&w);
    tf_close(c);
    assert_nothing_stored(&srv);
    tu_server_stop(&srv, 1);
}

/* Over the server's upload limit: refused mid-stream with TF_ETOOBIG (long
   before the source ends), nothing stored, the connection closed. A stream
   of exactly the limit is stored. */
static void test_stream_over_limit(void **state)
{
    (void)state;
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_MAX_UPLOAD, (int64_t)(4 * MIB)), TF_OK);
    test_server srv;
    tu_server_start(&srv, opt);
    tf_options_free(opt);
    tf_client *c = tu_connect(&srv, NULL);
    writer w;
    int rd;
    writer_start(&w, 1024, 0, &rd); /* 1 GiB offered: never all read */
    assert_int_equal(tf_put_stream(c, rd, "toobig.bin"), TF_ETOOBIG);
    assert_non_null(strstr(tf_errmsg(c), "limit"));
    close(rd);
    writer_join(&w);
    assert_true(w.written < 256 * MIB);
    assert_int_equal(tf_put_mem(c, "x", 1, "after"), TF_ENET);
    tf_close(c);
    assert_nothing_stored(&srv);

    c = tu_connect(&srv, NULL);
    writer_start(&w, 4, 0, &rd);
    assert_int_equal(tf_put_stream(c, rd, "exact.bin"), TF_OK);
    writer_join(&w);
    close(rd);
    tf_close(c);
    char path[512];
    snprintf(path, sizeof path, "%s/exact.bin", srv.root);
    assert_int_equal(tu_file_size(path), (long long)(4 * MIB));
    tu_server_stop(&srv, 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_64_mib),
        cmocka_unit_test(test_stream_empty),
        cmocka_unit_test(test_stream_cut_off_stores_nothing),
        cmocka_unit_test(test_stream_cancelled_stores_nothing),
        cmocka_unit_test(test_stream_over_limit),
    };
    return TU_RUN_GROUP("stream", tests, group_setup, NULL, argc > 1 ? argv[1] : NULL);
}
