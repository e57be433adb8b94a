/*
 * test_aclient.c - the event-driven client (tf_aclient_*) against a real
 * server on loopback and against fake servers: many connections from one
 * thread through poll and through epoll, pipelined requests completing in
 * order, server errors that leave the connection usable, the memory limit,
 * gets into descriptors, a refused connect, a server that closes in the
 * middle of a response, a silent server (timeout), and closing with
 * requests outstanding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/socket.h>

#include "digest.h"
#include "testutil.h"
#include "wire.h"

static const size_t sizes[] = {0, 1, 4096, 65536, 65537, 300000, 3 << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

typedef struct fixture {
    test_server srv;
    char local[256];
} fixture;

static void make_files(const char *root)
{
    for (size_t i = 0; i < NSIZES; i++) {
        uint8_t *data = malloc(sizes[i] ? sizes[i] : 1);
        char path[512];
        assert_non_null(data);
        tu_fill(data, sizes[i], i);
        snprintf(path, sizeof path, "%s/f%zu", root, i);
        tu_write_file(path, data, sizes[i]);
        free(data);
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    tu_server_start(&f->srv, NULL);
    make_files(f->srv.root);
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

/* What a callback saw, for the checks after the loop. */
typedef struct seen {
    int calls;
    int order;  /* the global completion counter when it came */
    int result;
    char message[512];
    size_t index; /* which file was asked for */
    int *counter; /* shared by the requests of one connection */
    tf_listing *listing;
} seen;

static void on_done(tf_aclient *a, void *user, tf_aresult *r)
{
    seen *s = user;
    (void)a;
    s->calls++;
    s->order = (*s->counter)++;
    s->result = r->result;
    snprintf(s->message, sizeof s->message, "%s", r->message);
    assert_non_null(r->message);
    if (r->result != TF_OK)
        return;
    if (r->listing) { /* taken: freed by the test */
        s->listing = r->listing;
        r->listing = NULL;
        return;
    }
    /* get_mem: the bytes are file index's */
    size_t len = sizes[s->index];
    uint8_t *want = malloc(len ? len : 1);
    assert_non_null(want);
    tu_fill(want, len, s->index);
    assert_int_equal(r->len, len);
    assert_int_equal(r->size, len);
    assert_memory_equal(r->data, want, len);
    assert_int_equal(((const char *)r->data)[len], '\0');
    free(want);
}

static tf_aclient *start(const fixture *f, const tf_options *opt)
{
    tf_aclient *a = NULL;
    char why[256];
    int rc = tf_aclient_connect_start(&a, "127.0.0.1", f->srv.port, opt, why, sizeof why);
    if (rc != TF_OK)
        fail_msg("connect_start: %s (%s)", tf_strerror(rc), why);
    assert_true(tf_aclient_fd(a) >= 0);
    return a;
}

/* Steps every client through poll until none is in progress; rcs gets
   each one's last result. Fails the test after 30 s (sanitizers, a
   loaded machine). */
static void run_poll(tf_aclient **as, int n, int *rcs)
{
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    int64_t until = tu_now_ms() + 30000;
    assert_non_null(p);
    for (int i = 0; i < n; i++)
        rcs[i] = TF_INPROGRESS;
    for (;;) {
        int busy = 0, wait = 1000;
        for (int i = 0; i < n; i++) {
            if (rcs[i] == TF_INPROGRESS)
                rcs[i] = tf_aclient_step(as[i]);
            int ev = rcs[i] == TF_INPROGRESS ? tf_aclient_events(as[i]) : 0;
            p[i] = (struct pollfd){.fd = ev ? tf_aclient_fd(as[i]) : -1,
                                   .events = (short)((ev & TF_WANT_READ ? POLLIN : 0) |
                                                     (ev & TF_WANT_WRITE ? POLLOUT : 0))};
            if (rcs[i] == TF_INPROGRESS) {
                busy = 1;
                int t = tf_aclient_timeout(as[i]);
                if (t >= 0 && t < wait)
                    wait = t;
            }
        }
        if (!busy)
            break;
        assert_true(tu_now_ms() < until);
        assert_true(poll(p, (nfds_t)n, wait) >= 0);
    }
    free(p);
}

/* One connection, many pipelined requests: all in flight at once, every
   one completes once, in the order queued, with the right bytes. */
static void test_aclient_pipelined_in_order(void **state)
{
    fixture *f = *state;
    enum { N = 100 };
    tf_aclient *a = start(f, NULL);
    seen s[N + 1];
    int counter = 0;
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++) {
        char name[16];
        s[i].index = (size_t)i % NSIZES;
        s[i].counter = &counter;
        snprintf(name, sizeof name, "f%zu", s[i].index);
        assert_int_equal(tf_aclient_get_mem(a, name, on_done, &s[i]), TF_OK);
    }
    s[N].counter = &counter;
    assert_int_equal(tf_aclient_list(a, on_done, &s[N]), TF_OK);
    assert_int_equal(tf_aclient_pending(a), N + 1);
    int rc;
    run_poll(&a, 1, &rc);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(tf_aclient_pending(a), 0);
    for (int i = 0; i <= N; i++) {
        assert_int_equal(s[i].calls, 1);
        assert_int_equal(s[i].result, TF_OK);
        assert_int_equal(s[i].order, i);
    }
    assert_non_null(s[N].listing);
    assert_int_equal(tf_listing_count(s[N].listing), NSIZES);
    tf_listing_free(s[N].listing);
    tf_aclient_close(a);
}

/* 32 connections from one thread through poll, each with its own batch
   (files up to 300 KB: many connections, not many bytes). */
static void test_aclient_many_connections_poll(void **state)
{
    fixture *f = *state;
    enum { C = 32, R = 12 };
    tf_aclient *as[C];
    seen s[C][R];
    int counters[C], rcs[C];
    memset(s, 0, sizeof s);
    for (int c = 0; c < C; c++) {
        as[c] = start(f, NULL);
        counters[c] = 0;
        for (int i = 0; i < R; i++) {
            char name[16];
            s[c][i].index = (size_t)(c + i) % (NSIZES - 1); /* not the 3 MiB one */
            s[c][i].counter = &counters[c];
            snprintf(name, sizeof name, "f%zu", s[c][i].index);
            assert_int_equal(tf_aclient_get_mem(as[c], name, on_done, &s[c][i]), TF_OK);
        }
    }
    run_poll(as, C, rcs);
    for (int c = 0; c < C; c++) {
        assert_int_equal(rcs[c], TF_OK);
        for (int i = 0; i < R; i++) {
            assert_int_equal(s[c][i].calls, 1);
            assert_int_equal(s[c][i].result, TF_OK);
            assert_int_equal(s[c][i].order, i);
        }
        tf_aclient_close(as[c]);
    }
}

/* The same through epoll, level-triggered, with a request queued from
   each callback until each connection has done R, one in flight each. */
typedef struct chain {
    tf_aclient *a;
    int left, done, failed;
} chain;

static void on_chain(tf_aclient *a, void *user, tf_aresult *r)
{
    chain *ch = user;
    if (r->result != TF_OK || r->len != sizes[2])
        ch->failed++;
    ch->done++;
    if (--ch->left > 0)
        assert_int_equal(tf_aclient_get_mem(a, "f2", on_chain, ch), TF_OK);
}

static void test_aclient_many_connections_epoll(void **state)
{
    fixture *f = *state;
    enum { C = 24, R = 30 };
    chain ch[C];
    int ep = epoll_create1(EPOLL_CLOEXEC), live = C;
    assert_true(ep >= 0);
    for (int c = 0; c < C; c++) {
        ch[c] = (chain){.a = start(f, NULL), .left = R};
        assert_int_equal(tf_aclient_get_mem(ch[c].a, "f2", on_chain, &ch[c]), TF_OK);
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = &ch[c]};
        assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, tf_aclient_fd(ch[c].a), &ev), 0);
    }
    int64_t until = tu_now_ms() + 10000;
    while (live > 0) {
        struct epoll_event evs[C];
        int n = epoll_wait(ep, evs, C, 1000);
        assert_true(n >= 0);
        assert_true(tu_now_ms() < until);
        for (int k = 0; k < n; k++) {
            chain *x = evs[k].data.ptr;
            int fd = tf_aclient_fd(x->a);
            int rc = tf_aclient_step(x->a);
            if (rc != TF_INPROGRESS) {
                assert_int_equal(rc, TF_OK);
                assert_int_equal(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL), 0);
                live--;
                continue;
            }
            int want = tf_aclient_events(x->a);
            struct epoll_event ev = {
                .events = (want & TF_WANT_READ ? EPOLLIN : 0u) |
                          (want & TF_WANT_WRITE ? EPOLLOUT : 0u),
                .data.ptr = x};
            assert_int_equal(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev), 0);
        }
    }
    close(ep);
    for (int c = 0; c < C; c++) {
        assert_int_equal(ch[c].done, R);
        assert_int_equal(ch[c].failed, 0);
        tf_aclient_close(ch[c].a);
    }
}

/* A missing file, a bad name (refused before it is queued), a file over
   the memory limit: each fails alone, the connection carries on. */
static void test_aclient_server_errors_keep_connection(void **state)
{
    fixture *f = *state;
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_MAX_MEMORY, 100000), TF_OK);
    tf_aclient *a = start(f, opt);
    tf_options_free(opt);
    seen s[4];
    int counter = 0;
    memset(s, 0, sizeof s);
    for (int i = 0; i < 4; i++)
        s[i].counter = &counter;
    s[1].index = 5; /* 300000 bytes: over the limit */
    s[2].index = 2;
    s[3].index = 3;
    assert_int_equal(tf_aclient_get_mem(a, "no-such-file", on_done, &s[0]), TF_OK);
    assert_int_equal(tf_aclient_get_mem(a, "f5", on_done, &s[1]), TF_OK);
    assert_int_equal(tf_aclient_get_mem(a, "../etc", on_done, &s[2]), TF_EINVAL);
    assert_int_equal(tf_aclient_get_mem(a, "f2", on_done, &s[2]), TF_OK);
    assert_int_equal(tf_aclient_get_mem(a, "f3", on_done, &s[3]), TF_OK);
    int rc;
    run_poll(&a, 1, &rc);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(s[0].result, TF_ENOENT);
    assert_non_null(strstr(s[0].message, "no-such-file"));
    assert_int_equal(s[1].result, TF_ETOOBIG);
    assert_non_null(strstr(s[1].message, "memory limit"));
    assert_int_equal(s[2].result, TF_OK);
    assert_int_equal(s[3].result, TF_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(s[i].calls, 1);
    assert_string_equal(tf_aclient_errmsg(a), "");
    tf_aclient_close(a);
}

static void on_fd_done(tf_aclient *a, void *user, tf_aresult *r)
{
    (void)a;
    int *rc = user;
    *rc = r->result;
    assert_int_equal(r->size, sizes[6]);
}

/* A get into a descriptor: the whole file, checksummed. */
static void test_aclient_get_fd(void **state)
{
    fixture *f = *state;
    char path[512];
    snprintf(path, sizeof path, "%s/out", f->local);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    tf_aclient *a = start(f, NULL);
    int got = 1, rc;
    assert_int_equal(tf_aclient_get_fd(a, "f6", -1, on_fd_done, &got), TF_EINVAL);
    assert_int_equal(tf_aclient_get_fd(a, "f6", fd, on_fd_done, &got), TF_OK);
    run_poll(&a, 1, &rc);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(got, TF_OK);
    close(fd);
    size_t len;
    uint8_t *have = tu_read_file(path, &len);
    uint8_t *want = malloc(sizes[6]);
    assert_non_null(have);
    assert_non_null(want);
    tu_fill(want, sizes[6], 6);
    assert_int_equal(len, sizes[6]);
    assert_memory_equal(have, want, len);
    free(have);
    free(want);
    tf_aclient_close(a);
}

/* Nothing listens: the step says refused, and requests queued meanwhile
   are completed with it. */
static void test_aclient_refused(void **state)
{
    (void)state;
    char port[16];
    int lfd = tu_listen_loopback(port, sizeof port);
    close(lfd); /* the port is free now, and nothing listens */
    tf_aclient *a = NULL;
    int rc = tf_aclient_connect_start(&a, "127.0.0.1", port, NULL, NULL, 0);
    if (rc == TF_ECONNREFUSED) { /* refused at once: no handle */
        assert_null(a);
        return;
    }
    assert_int_equal(rc, TF_OK);
    seen s = {0};
    int counter = 0;
    s.counter = &counter;
    assert_int_equal(tf_aclient_get_mem(a, "x", on_done, &s), TF_OK);
    int rcs;
    run_poll(&a, 1, &rcs);
    assert_int_equal(rcs, TF_ECONNREFUSED);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.result, TF_ECONNREFUSED);
    assert_int_equal(tf_aclient_fd(a), -1);
    assert_int_equal(tf_aclient_events(a), 0);
    assert_int_equal(tf_aclient_get_mem(a, "x", on_done, &s), TF_ENET);
    assert_int_equal(tf_aclient_step(a), TF_ENET);
    tf_aclient_close(a);
}

/* A fake server's hello (checksums on, as the client asks). */
static size_t fake_hello(uint8_t *buf, size_t cap)
{
    tf_wire_server_hello sh = {.version_min = 1, .version_max = 1,
                               .features = TF_FEATURE_CHECKSUM, .max_name = 255};
    long n = tf__wire_encode_server_hello(buf, cap, &sh);
    assert_true(n > 0);
    return (size_t)n;
}

/* A server that answers the first get with a head announcing 100000 bytes,
   sends 10 of them and closes: that get and the one behind it fail with
   TF_ENET, and the step reports the loss. */
static void test_aclient_server_closes_mid_response(void **state)
{
    (void)state;
    char port[16];
    int lfd = tu_listen_loopback(port, sizeof port);
    tf_aclient *a = NULL;
    assert_int_equal(tf_aclient_connect_start(&a, "127.0.0.1", port, NULL, NULL, 0), TF_OK);
    seen s[2];
    int counter = 0;
    memset(s, 0, sizeof s);
    s[0].counter = s[1].counter = &counter;
    assert_int_equal(tf_aclient_get_mem(a, "a", on_done, &s[0]), TF_OK);
    assert_int_equal(tf_aclient_get_mem(a, "b", on_done, &s[1]), TF_OK);
    int sfd = accept(lfd, NULL, NULL); /* the kernel accepted it already */
    assert_true(sfd >= 0);
    uint8_t out[512];
    size_t n = fake_hello(out, sizeof out);
    tf_wire_response r = {.op = TF_OP_GET, .size = 100000};
    long k = tf__wire_encode_response(out + n, sizeof out - n, &r);
    assert_true(k > 0);
    n += (size_t)k;
    memset(out + n, 'x', 10);
    n += 10;
    assert_int_equal(write(sfd, out, n), (ssize_t)n);
    close(sfd);
    close(lfd);
    int rc;
    run_poll(&a, 1, &rc);
    assert_int_equal(rc, TF_ENET);
    assert_int_equal(s[0].calls, 1);
    assert_int_equal(s[0].result, TF_ENET);
    assert_non_null(strstr(s[0].message, "closed the connection"));
    assert_int_equal(s[1].calls, 1);
    assert_int_equal(s[1].result, TF_ENET);
    assert_non_null(strstr(tf_aclient_errmsg(a), "closed the connection"));
    tf_aclient_close(a);
}

/* A server that is full says so in its hello and closes: the step and
   every request get TF_EBUSY, with the server's words (escaped). */
static void test_aclient_server_busy(void **state)
{
    (void)state;
    char port[16];
    int lfd = tu_listen_loopback(port, sizeof port);
    tf_aclient *a = NULL;
    assert_int_equal(tf_aclient_connect_start(&a, "127.0.0.1", port, NULL, NULL, 0), TF_OK);
    seen s = {0};
    int counter = 0;
    s.counter = &counter;
    assert_int_equal(tf_aclient_get_mem(a, "a", on_done, &s), TF_OK);
    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    static const char why[] = "too many clients\x1b[2J";
    tf_wire_server_hello sh = {.version_min = 1, .version_max = 1,
                               .status = tf__wire_status(TF_EBUSY), .message = why,
                               .message_len = (uint16_t)(sizeof why - 1)};
    uint8_t out[256];
    long n = tf__wire_encode_server_hello(out, sizeof out, &sh);
    assert_true(n > 0);
    assert_int_equal(write(sfd, out, (size_t)n), n);
    close(sfd);
    close(lfd);
    int rc;
    run_poll(&a, 1, &rc);
    assert_int_equal(rc, TF_EBUSY);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.result, TF_EBUSY);
    assert_non_null(strstr(tf_aclient_errmsg(a), "too many clients\\x1b[2J"));
    assert_null(strchr(tf_aclient_errmsg(a), '\x1b'));
    assert_non_null(strstr(s.message, "too many clients"));
    tf_aclient_close(a);
}

/* A corrupted payload: the trailer's digest does not match, that get fails
   with TF_ECHECKSUM and the next one on the connection still works. */
static void test_aclient_checksum_mismatch(void **state)
{
    (void)state;
    char port[16];
    int lfd = tu_listen_loopback(port, sizeof port);
    tf_aclient *a = NULL;
    assert_int_equal(tf_aclient_connect_start(&a, "127.0.0.1", port, NULL, NULL, 0), TF_OK);
    seen s[2];
    int counter = 0;
    memset(s, 0, sizeof s);
    s[0].counter = s[1].counter = &counter;
    s[1].index = 1; /* one byte, as file 1 holds */
    assert_int_equal(tf_aclient_get_mem(a, "a", on_done, &s[0]), TF_OK);
    assert_int_equal(tf_aclient_get_mem(a, "b", on_done, &s[1]), TF_OK);
    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    uint8_t out[512], byte;
    size_t n = fake_hello(out, sizeof out);
    tu_fill(&byte, 1, 1);
    for (int i = 0; i < 2; i++) {
        tf_wire_response r = {.op = TF_OP_GET, .size = 1};
        n += (size_t)tf__wire_encode_response(out + n, sizeof out - n, &r);
        out[n++] = byte;
        uint8_t digest[16];
        tf__digest d = {0};
        assert_int_equal(tf__digest_begin(&d, 1), TF_OK);
        uint8_t bad = (uint8_t)(byte ^ 1);
        tf__digest_update(&d, i == 0 ? &bad : &byte, 1); /* the first one lies */
        tf__digest_final(&d, digest);
        tf__digest_end(&d);
        tf_wire_trailer t = {.digest = digest, .digest_len = 16};
        n += (size_t)tf__wire_encode_trailer(out + n, sizeof out - n, &t);
    }
    assert_int_equal(write(sfd, out, n), (ssize_t)n);
    int rc;
    run_poll(&a, 1, &rc);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(s[0].result, TF_ECHECKSUM);
    assert_int_equal(s[1].result, TF_OK);
    close(sfd);
    close(lfd);
    tf_aclient_close(a);
}

/* A server that accepts and says nothing: the I/O timeout fails it, and
   tf_aclient_timeout tells the loop when to step. */
static void test_aclient_timeout(void **state)
{
    (void)state;
    char port[16];
    int lfd = tu_listen_loopback(port, sizeof port);
    tf_options *opt;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_int_equal(tf_options_set(opt, TF_OPT_CONNECT_TIMEOUT_MS, 200), TF_OK);
    tf_aclient *a = NULL;
    assert_int_equal(tf_aclient_connect_start(&a, "127.0.0.1", port, opt, NULL, 0), TF_OK);
    tf_options_free(opt);
    seen s = {0};
    int counter = 0;
    s.counter = &counter;
    assert_int_equal(tf_aclient_get_mem(a, "a", on_done, &s), TF_OK);
    int64_t t0 = tu_now_ms();
    int rc;
    run_poll(&a, 1, &rc);
    assert_int_equal(rc, TF_ETIMEDOUT);
    assert_int_equal(s.result, TF_ETIMEDOUT);
    assert_true(tu_now_ms() - t0 >= 150);
    assert_true(tu_now_ms() - t0 < 5000);
    tf_aclient_close(a);
    close(lfd);
}

/* Closing with requests outstanding cancels them, each once; a callback
   that closes the client from inside a step is safe. */
static void on_close_inside(tf_aclient *a, void *user, tf_aresult *r)
{
    int *calls = user;
    (*calls)++;
    (void)r;
    tf_aclient_close(a);
}

static void test_aclient_close_cancels(void **state)
{
    fixture *f = *state;
    tf_aclient *a = start(f, NULL);
    seen s[3];
    int counter = 0;
    memset(s, 0, sizeof s);
    for (int i = 0; i < 3; i++) {
        s[i].counter = &counter;
        assert_int_equal(tf_aclient_get_mem(a, "f3", on_done, &s[i]), TF_OK);
    }
    tf_aclient_close(a);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i].calls, 1);
        assert_int_equal(s[i].result, TF_ECANCELED);
    }
    /* Closed from its own callback: the others are cancelled, the step
       returns TF_ECANCELED and the handle is gone (ASan checks). */
    a = start(f, NULL);
    int calls = 0;
    memset(s, 0, sizeof s);
    s[0].counter = &counter;
    assert_int_equal(tf_aclient_get_mem(a, "f1", on_close_inside, &calls), TF_OK);
    assert_int_equal(tf_aclient_get_mem(a, "f3", on_done, &s[0]), TF_OK);
    int rc;
    int64_t until = tu_now_ms() + 10000;
    while ((rc = tf_aclient_step(a)) == TF_INPROGRESS) {
        struct pollfd p = {.fd = tf_aclient_fd(a), .events = POLLIN};
        if (tf_aclient_events(a) & TF_WANT_WRITE)
            p.events |= POLLOUT;
        assert_true(poll(&p, 1, 1000) >= 0);
        assert_true(tu_now_ms() < until);
    }
    assert_int_equal(rc, TF_ECANCELED);
    assert_int_equal(calls, 1);
    assert_int_equal(s[0].calls, 1);
    assert_int_equal(s[0].result, TF_ECANCELED);
}

/* A callback that queues another request keeps its own message intact. */
typedef struct requeue {
    int calls, next_result;
    char before[256], after[256];
} requeue;

static void on_next(tf_aclient *a, void *user, tf_aresult *r)
{
    requeue *q = user;
    (void)a;
    q->next_result = r->result;
}

static void on_requeue(tf_aclient *a, void *user, tf_aresult *r)
{
    requeue *q = user;
    q->calls++;
    snprintf(q->before, sizeof q->before, "%s", r->message);
    assert_int_equal(tf_aclient_get_mem(a, "f1", on_next, q), TF_OK);
    assert_int_equal(tf_aclient_get_mem(a, "no-such", on_next, q), TF_OK);
    snprintf(q->after, sizeof q->after, "%s", r->message);
}

static void test_aclient_queue_from_callback(void **state)
{
    fixture *f = *state;
    tf_aclient *a = start(f, NULL);
    requeue q = {0};
    assert_int_equal(tf_aclient_get_mem(a, "missing-one", on_requeue, &q), TF_OK);
    int rc;
    run_poll(&a, 1, &rc);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(q.calls, 1);
    assert_non_null(strstr(q.before, "missing-one"));
    assert_string_equal(q.before, q.after);
    assert_int_equal(q.next_result, TF_ENOENT);
    tf_aclient_close(a);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aclient_pipelined_in_order),
        cmocka_unit_test(test_aclient_many_connections_poll),
        cmocka_unit_test(test_aclient_many_connections_epoll),
        cmocka_unit_test(test_aclient_server_errors_keep_connection),
        cmocka_unit_test(test_aclient_get_fd),
        cmocka_unit_test(test_aclient_refused),
        cmocka_unit_test(test_aclient_server_closes_mid_response),
        cmocka_unit_test(test_aclient_checksum_mismatch),
        cmocka_unit_test(test_aclient_server_busy),
        cmocka_unit_test(test_aclient_timeout),
        cmocka_unit_test(test_aclient_close_cancels),
        cmocka_unit_test(test_aclient_queue_from_callback),
    };
    return TU_RUN_GROUP("aclient", tests, setup, teardown, argc > 1 ? argv[1] : NULL);
}
