/*
 * test_server.c - the event-driven server's own promises: the connection
 * limit, the idle and I/O timeouts, many idle connections held while others
 * are served, pipelined requests (their answers sharing segments), and a
 * stop that lets transfers in flight finish within the grace period (and
 * cuts them after it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "wire.h"

static tf_options *opts_with(tf_option k1, int64_t v1, tf_option k2, int64_t v2)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    if (k1)
        assert_int_equal(tf_options_set(o, k1, v1), TF_OK);
    if (k2)
        assert_int_equal(tf_options_set(o, k2, v2), TF_OK);
    return o;
}

static int raw_connect(const char *port)
{
    return tu_raw_connect(port);
}

/* Sends a client hello and reads the server's; returns the hello status. */
static int raw_handshake(int fd)
{
    uint8_t buf[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    tf_wire_client_hello ch = {1, 1, 0};
    tf__wire_encode_client_hello(buf, sizeof buf, &ch);
    assert_int_equal(send(fd, buf, TF_WIRE_CLIENT_HELLO_SIZE, MSG_NOSIGNAL),
                     TF_WIRE_CLIENT_HELLO_SIZE);
    assert_int_equal(recv(fd, buf, TF_WIRE_SERVER_HELLO_SIZE, MSG_WAITALL),
                     TF_WIRE_SERVER_HELLO_SIZE);
    return tf__get_u16(buf + 12);
}

/* Milliseconds until the server closes fd (reading and dropping), or -1
   if it is still open after limit_ms. */
static int64_t ms_until_closed(int fd, int limit_ms)
{
    int64_t start = tu_now_ms();
    char sink[4096];
    while (tu_now_ms() - start < limit_ms) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
            return tu_now_ms() - start;
    }
    return -1;
}

static void test_server_connection_limit(void **state)
{
    (void)state;
    tf_options *o = opts_with(TF_OPT_MAX_CONNECTIONS, 3, 0, 0);
    test_server s;
    tu_server_start(&s, o);
    tf_client *held[3];
    for (int i = 0; i < 3; i++)
        held[i] = tu_connect(&s, NULL);
    tf_client *extra = NULL;
    char why[256];
    assert_int_equal(tf_connect_ex(&extra, "127.0.0.1", s.port, NULL, why, sizeof why),
                     TF_EBUSY);
    assert_null(extra);
    assert_non_null(strstr(why, "full"));
    /* The held ones are served meanwhile. */
    tf_listing *l;
    assert_int_equal(tf_list(held[1], &l), TF_OK);
    tf_listing_free(l);
    tf_close(held[0]);
    int rc = TF_EBUSY;
    for (int64_t end = tu_now_ms() + 3000; rc == TF_EBUSY && tu_now_ms() < end;) {
        rc = tf_connect(&extra, "127.0.0.1", s.port, NULL);
        if (rc == TF_EBUSY)
            tu_sleep_ms(10);
    }
    assert_int_equal(rc, TF_OK);
    tf_close(extra);
    tf_close(held[1]);
    tf_close(held[2]);
    tu_server_stop(&s, 1);
    tf_options_free(o);
}

static void test_server_idle_timeout(void **state)
{
    (void)state;
    tf_options *o = opts_with(TF_OPT_IDLE_TIMEOUT_MS, 200, 0, 0);
    test_server s;
    tu_server_start(&s, o);
    int fd = raw_connect(s.port);
    assert_int_equal(raw_handshake(fd), 0);
    int64_t took = ms_until_closed(fd, 3000);
    assert_true(took >= 100 && took < 2000);
    close(fd);
    /* A client that keeps asking is not idle. */
    tf_client *c = tu_connect(&s, NULL);
    for (int i = 0; i < 6; i++) {
        tf_listing *l;
        assert_int_equal(tf_list(c, &l), TF_OK);
        tf_listing_free(l);
        tu_sleep_ms(100);
    }
    tf_close(c);
    tu_server_stop(&s, 1);
    tf_options_free(o);
}

static void test_server_io_timeout(void **state)
{
    (void)state;
    tf_options *o = opts_with(TF_OPT_IO_TIMEOUT_MS, 200, 0, 0);
    test_server s;
    tu_server_start(&s, o);
    /* Half a request, then silence: cut after the I/O timeout, although the
       idle timeout (minutes) is far away. */
    int fd = raw_connect(s.port);
    assert_int_equal(raw_handshake(fd), 0);
    uint8_t half[10] = {TF_OP_LIST};
    assert_int_equal(send(fd, half, sizeof half, MSG_NOSIGNAL), (ssize_t)sizeof half);
    int64_t took = ms_until_closed(fd, 3000);
    assert_true(took >= 100 && took < 2000);
    close(fd);
    /* A handshake that never comes is cut the same way. */
    fd = raw_connect(s.port);
    took = ms_until_closed(fd, 3000);
    assert_true(took >= 100 && took < 2000);
    close(fd);
    tu_server_stop(&s, 1);
    tf_options_free(o);
}

static void test_server_many_idle_connections(void **state)
{
    (void)state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int n = rl.rlim_cur > 2200 ? 1000 : (int)rl.rlim_cur / 2 - 50;
    test_server s;
    tu_server_start(&s, NULL);
    char path[512];
    uint8_t *mib = malloc(1 << 20);
    tu_fill(mib, 1 << 20, 3);
    snprintf(path, sizeof path, "%s/one.bin", s.root);
    tu_write_file(path, mib, 1 << 20);

    int *fds = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        fds[i] = raw_connect(s.port);
        assert_int_equal(raw_handshake(fds[i]), 0);
    }
    /* With n connections idle, a 1 MiB get is still quick. */
    tf_client *c = tu_connect(&s, NULL);
    int64_t start = tu_now_ms();
    void *d;
    size_t len;
    assert_int_equal(tf_get_mem(c, "one.bin", &d, &len), TF_OK);
    int64_t took = tu_now_ms() - start;
    assert_int_equal(len, 1 << 20);
    assert_memory_equal(d, mib, 1 << 20);
    print_message("%d idle connections held; a 1 MiB get took %lld ms\n", n, (long long)took);
    assert_true(took < 2000); /* generous: sanitizer builds and a busy machine */
    tf_free(d);
    tf_close(c);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    free(mib);
    tu_server_stop(&s, 1);
}

static void test_server_pipelined_gets(void **state)
{
    (void)state;
    test_server s;
    tu_server_start(&s, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/p.txt", s.root);
    tu_write_file(path, "pipelined", 9);
    int fd = raw_connect(s.port);
    assert_int_equal(raw_handshake(fd), 0);
    /* Ten requests in one write, before any answer. */
    uint8_t req[10 * (TF_WIRE_REQUEST_SIZE + 5)];
    size_t len = 0;
    for (int i = 0; i < 10; i++) {
        tf_wire_request r = {.op = TF_OP_GET, .name = "p.txt", .name_len = 5};
        len += (size_t)tf__wire_encode_request(req + len, sizeof req - len, &r);
    }
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    for (int i = 0; i < 10; i++) {
        uint8_t buf[TF_WIRE_RESPONSE_SIZE + 9 + TF_WIRE_TRAILER_SIZE];
        assert_int_equal(recv(fd, buf, sizeof buf, MSG_WAITALL), (ssize_t)sizeof buf);
        tf_wire_response resp;
        assert_int_equal(tf__wire_decode_response(buf, TF_WIRE_RESPONSE_SIZE, &resp),
                         TF_WIRE_RESPONSE_SIZE);
        assert_int_equal(resp.status, 0);
        assert_int_equal(resp.size, 9);
        assert_memory_equal(buf + TF_WIRE_RESPONSE_SIZE, "pipelined", 9);
    }
    close(fd);
    tu_server_stop(&s, 1);
}

/* Answers to gets already buffered behind each other leave in shared
   segments (MSG_MORE), not one segment each: TCP_INFO counts the data
   segments that reached the client. */
static void test_server_pipelined_answers_share_segments(void **state)
{
    (void)state;
    test_server s;
    tu_server_start(&s, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/p.txt", s.root);
    tu_write_file(path, "pipelined", 9);
    int fd = raw_connect(s.port);
    assert_int_equal(raw_handshake(fd), 0);
    enum { N = 20 };
    uint8_t req[N * (TF_WIRE_REQUEST_SIZE + 5)];
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        tf_wire_request r = {.op = TF_OP_GET, .name = "p.txt", .name_len = 5};
        len += (size_t)tf__wire_encode_request(req + len, sizeof req - len, &r);
    }
    struct tcp_info before, after;
    socklen_t ilen = sizeof before;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &before, &ilen), 0);
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    uint8_t buf[N * (TF_WIRE_RESPONSE_SIZE + 9 + TF_WIRE_TRAILER_SIZE)];
    assert_int_equal(recv(fd, buf, sizeof buf, MSG_WAITALL), (ssize_t)sizeof buf);
    ilen = sizeof after;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &after, &ilen), 0);
    /* One segment each before; one or two now (the server may take the
       requests in more than one read on a loaded machine). */
    assert_true(after.tcpi_data_segs_in - before.tcpi_data_segs_in < N / 2);
    close(fd);
    tu_server_stop(&s, 1);
}

/* A client that downloads slowly, from its own thread. */
typedef struct slow_get {
    const test_server *s;
    int delay_ms;       /* per progress report */
    atomic_int run_ended; /* the server has returned: stop dawdling */
    int rc;
    size_t len;
    int64_t done_ms;
} slow_get;

/* Slow while the server runs; once it has returned, what is left is
   bytes already buffered on loopback, read at once, so that the test
   does not sleep through megabytes the server sent before the cut. */
static int slow_progress(void *user, uint64_t done, uint64_t total)
{
    slow_get *g = user;
    (void)done;
    (void)total;
    if (!atomic_load(&g->run_ended))
        tu_sleep_ms(g->delay_ms);
    return 0;
}

static void *slow_get_main(void *arg)
{
    slow_get *g = arg;
    tf_options *o;
    tf_options_new(&o);
    tf_options_set_progress(o, slow_progress, g);
    tf_client *c = NULL;
    g->rc = tf_connect(&c, "127.0.0.1", g->s->port, o);
    if (g->rc == TF_OK) {
        void *d = NULL;
        g->rc = tf_get_mem(c, "big.bin", &d, &g->len);
        tf_free(d);
    }
    g->done_ms = tu_now_ms();
    tf_close(c);
    tf_options_free(o);
    return NULL;
}

static void run_stop_with_transfer(int grace_ms, int delay_ms, int expect_ok)
{
    tf_options *o = opts_with(TF_OPT_STOP_GRACE_MS, grace_ms, 0, 0);
    test_server s;
    tu_server_start(&s, o);
    size_t size = (size_t)16 << 20;
    uint8_t *data = malloc(size);
    tu_fill(data, size, 9);
    char path[512];
    snprintf(path, sizeof path, "%s/big.bin", s.root);
    tu_write_file(path, data, size);
    free(data);

    tf_client *idle = tu_connect(&s, NULL);
    slow_get g = {.s = &s, .delay_ms = delay_ms};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_get_main, &g), 0);
    tu_sleep_ms(150); /* the get is under way */
    int64_t stop_at = tu_now_ms();
    tf_server_stop(s.srv);
    pthread_join(s.thread, NULL); /* tf_server_run returns */
    int64_t run_ended = tu_now_ms();
    atomic_store(&g.run_ended, 1);
    s.running = 0;
    pthread_join(t, NULL);
    if (expect_ok) {
        assert_int_equal(g.rc, TF_OK); /* finished within the grace period */
        assert_int_equal(g.len, size);
    } else {
        assert_int_not_equal(g.rc, TF_OK); /* cut when the grace ran out */
        assert_true(run_ended - stop_at < grace_ms + 2000);
    }
    /* The idle client was let go at once. */
    tf_listing *l;
    assert_int_equal(tf_list(idle, &l), TF_ENET);
    tf_close(idle);
    /* And nobody new gets in. */
    tf_client *late = NULL;
    assert_int_not_equal(tf_connect(&late, "127.0.0.1", s.port, NULL), TF_OK);
    tf_server_close(s.srv);
    tu_rm_rf(s.root);
    tf_options_free(o);
}

static void test_server_stop_lets_transfers_finish(void **state)
{
    (void)state;
    /* 16 MiB read in 1 MiB steps, 20 ms apart: well inside 5 s of grace. */
    run_stop_with_transfer(5000, 20, 1);
}

static void test_server_stop_cuts_after_grace(void **state)
{
    (void)state;
    /* 300 ms apart per step would take seconds; the grace is 300 ms. */
    run_stop_with_transfer(300, 300, 0);
}

/* The server's own error channel: a run that cannot start says why, with
   errno text, through tf_server_errmsg. The failure is made real: in a
   child, the descriptor limit is used up before tf_server_run, so its
   event loop cannot be created. */
static void test_server_errmsg_after_failed_run(void **state)
{
    (void)state;
    assert_string_equal(tf_server_errmsg(NULL), "");
    char root[64];
    tu_mkdtemp(root, sizeof root);
    tf_options *o = opts_with(TF_OPT_WORKERS, 1, 0, 0);
    tf_server *srv = NULL;
    assert_int_equal(tf_server_open(&srv, "127.0.0.1", "0", root, o), TF_OK);
    tf_options_free(o);
    assert_string_equal(tf_server_errmsg(srv), "");
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = 256;
        setrlimit(RLIMIT_NOFILE, &rl);
        while (dup(pfd[1]) >= 0)
            continue; /* every descriptor taken */
        int rc = tf_server_run(srv);
        char line[600];
        int n = snprintf(line, sizeof line, "%d %s", rc, tf_server_errmsg(srv));
        ssize_t w = write(pfd[1], line, (size_t)n);
        _exit(w == n ? 0 : 1);
    }
    close(pfd[1]);
    char got[600] = {0};
    size_t have = 0;
    ssize_t k;
    while ((k = read(pfd[0], got + have, sizeof got - 1 - have)) > 0)
        have += (size_t)k;
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    tf_server_close(srv);
    tu_rm_rf(root);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int rc = atoi(got);
    if (rc == TF_OK || !strstr(got, strerror(EMFILE)))
        fail_msg("a run with no descriptors left gave: \"%s\"", got);
}

/* tf_serve_ex hands back the detail that tf_serve dropped. */
static void test_server_serve_ex_reports_why(void **state)
{
    (void)state;
    char why[512];
    strcpy(why, "stale");
    int rc = tf_serve_ex("127.0.0.1", "0", "/nonexistent/tcpfile-test-root", NULL, why,
                         sizeof why);
    assert_int_equal(rc, TF_ENOENT);
    if (!strstr(why, "/nonexistent/tcpfile-test-root") || !strstr(why, strerror(ENOENT)))
        fail_msg("tf_serve_ex says \"%s\"", why);
    assert_int_equal(tf_serve_ex("127.0.0.1", "0", NULL, NULL, NULL, 0), TF_EINVAL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_connection_limit),
        cmocka_unit_test(test_server_idle_timeout),
        cmocka_unit_test(test_server_io_timeout),
        cmocka_unit_test(test_server_many_idle_connections),
        cmocka_unit_test(test_server_pipelined_gets),
        cmocka_unit_test(test_server_pipelined_answers_share_segments),
        cmocka_unit_test(test_server_stop_lets_transfers_finish),
        cmocka_unit_test(test_server_stop_cuts_after_grace),
        cmocka_unit_test(test_server_errmsg_after_failed_run),
        cmocka_unit_test(test_server_serve_ex_reports_why),
    };
    return TU_RUN_GROUP("server", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
