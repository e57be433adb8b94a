/*
 * test_offloop.c - storage work runs on the server's disk pool, off the
 * worker's event loop (issue 14): a real server on loopback whose storage
 * has a gate - its calls on names starting with "slow" wait until the test
 * opens it - so that a slow disk is a state the test holds, not a timing.
 *
 * The gate is put into the server's own storage (its ops table swapped for
 * a copy with gated entries), so every other call is the local backend's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server_internal.h"
#include "testutil.h"
#include "wire.h"

/* ---- the gate ---------------------------------------------------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;     /* calls pass */
    int entered;  /* gated calls that have started */
    int inside;   /* and not yet returned */
    int64_t opened_ms;
    /* where writes ran (the network-store test) */
    pthread_t loop_thread;
    int writes_on_loop, writes_off_loop;
    int opens; /* open_read calls */
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, 0, 0, 0, 0, 0, 0, 0};

/* TF_OPT_GET_AHEAD of the next gs_start (-1: the default). */
static int get_ahead = -1;

static const tf__storage_ops *real_ops;
static tf__storage_ops gated_ops;

static void gate_reset(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = 0;
    gate.entered = gate.inside = 0;
    gate.opened_ms = 0;
    gate.writes_on_loop = gate.writes_off_loop = 0;
    gate.opens = 0;
    pthread_mutex_unlock(&gate.mu);
}

static void gate_pass(const char *name)
{
    if (strncmp(name, "slow", 4) != 0)
        return;
    pthread_mutex_lock(&gate.mu);
    gate.entered++;
    gate.inside++;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.open)
        pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
}

static void gate_left(const char *name)
{
    if (strncmp(name, "slow", 4) != 0)
        return;
    pthread_mutex_lock(&gate.mu);
    gate.inside--;
    pthread_mutex_unlock(&gate.mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = 1;
    gate.opened_ms = tu_now_ms();
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* Waits (at most 5 s) until n gated calls have started. */
static void gate_wait_entered(int n)
{
    int64_t end = tu_now_ms() + 5000;
    pthread_mutex_lock(&gate.mu);
    while (gate.entered < n && tu_now_ms() < end) {
        pthread_mutex_unlock(&gate.mu);
        tu_sleep_ms(5);
        pthread_mutex_lock(&gate.mu);
    }
    int entered = gate.entered;
    pthread_mutex_unlock(&gate.mu);
    assert_true(entered >= n);
}

static int gated_open_read(tf__storage *st, const char *name, int *fd, uint64_t *size,
                           uint64_t id[TF_STORAGE_ID_LEN], tf__err *e)
{
    pthread_mutex_lock(&gate.mu);
    gate.opens++;
    pthread_mutex_unlock(&gate.mu);
    gate_pass(name);
    int rc = real_ops->open_read(st, name, fd, size, id, e);
    gate_left(name);
    return rc;
}

static int gated_stat(tf__storage *st, const char *path, tf__fstat *out, tf__err *e)
{
    gate_pass(path);
    int rc = real_ops->stat(st, path, out, e);
    gate_left(path);
    return rc;
}

static int counted_write(tf__storage *st, tf__upload *up, const void *p, size_t n, tf__err *e)
{
    pthread_mutex_lock(&gate.mu);
    if (pthread_equal(pthread_self(), gate.loop_thread))
        gate.writes_on_loop++;
    else
        gate.writes_off_loop++;
    pthread_mutex_unlock(&gate.mu);
    return real_ops->write(st, up, p, n, e);
}

/* ---- a server with the gate ------------------------------------------------------- */

typedef struct gated_server {
    tf_server *srv;
    pthread_t thread;
    char root[256];
    char state[300]; /* TLS: the server's identity, beside the root */
    char fp[128];    /* and its fingerprint; "" when plaintext */
    char port[16];
    int run_rc;
    int64_t returned_ms; /* when tf_server_run returned */
} gated_server;

static void *serve(void *arg)
{
    gated_server *g = arg;
    g->run_rc = tf_server_run(g->srv);
    g->returned_ms = tu_now_ms();
    return NULL;
}

/* One worker (so that every connection shares its loop), disk_threads
   pool threads, grace_ms to stop; network: the storage says it is a
   network store; tls: TLS with an identity of its own; cached: small
   files in memory are read without open_read, as the local backend does
   (else every get goes through the gate). */
static void gs_start_ex(gated_server *g, int disk_threads, int grace_ms, int network, int tls,
                        int cached)
{
    tf_options *o = NULL;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_WORKERS, 1), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_DISK_THREADS, disk_threads), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_STOP_GRACE_MS, grace_ms), TF_OK);
    if (get_ahead >= 0)
        assert_int_equal(tf_options_set(o, TF_OPT_GET_AHEAD, get_ahead), TF_OK);
    tu_mkdtemp(g->root, sizeof g->root);
    snprintf(g->state, sizeof g->state, "%s.state", g->root);
    g->fp[0] = '\0';
    if (tls) {
        assert_int_equal(tf_options_set(o, TF_OPT_TLS, 1), TF_OK);
        assert_int_equal(tf_options_set_string(o, TF_SOPT_STATE_DIR, g->state), TF_OK);
    }
    assert_int_equal(tf_server_open(&g->srv, "127.0.0.1", "0", g->root, o), TF_OK);
    tf_options_free(o);
    if (tls)
        assert_int_equal(tf_server_fingerprint(g->srv, g->fp, sizeof g->fp), TF_OK);
    snprintf(g->port, sizeof g->port, "%d", tf_server_port(g->srv));
    /* The server's own storage, with gated entries. */
    tf__storage *st = tf__server_swap_storage(g->srv, NULL);
    real_ops = st->ops;
    gated_ops = *real_ops;
    gated_ops.open_read = gated_open_read;
    if (!cached)
        gated_ops.read_cached = NULL;
    gated_ops.stat = gated_stat;
    gated_ops.write = counted_write;
    st->ops = &gated_ops;
    st->network = network;
    tf__server_swap_storage(g->srv, st);
    gate_reset();
    assert_int_equal(pthread_create(&g->thread, NULL, serve, g), 0);
    pthread_mutex_lock(&gate.mu);
    gate.loop_thread = g->thread; /* the one worker runs in tf_server_run's thread */
    pthread_mutex_unlock(&gate.mu);
}

static void gs_start(gated_server *g, int disk_threads, int grace_ms, int network)
{
    gs_start_ex(g, disk_threads, grace_ms, network, 0, 0);
}

static void gs_stop(gated_server *g)
{
    gate_open();
    tf_server_stop(g->srv);
    pthread_join(g->thread, NULL);
    tf_server_close(g->srv);
    tu_rm_rf(g->root);
    tu_rm_rf(g->state);
}

static void gs_file(const gated_server *g, const char *name, const char *content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g->root, name);
    tu_write_file(path, content, strlen(content));
}

static tf_client *gs_connect(const gated_server *g)
{
    tf_options *o = NULL;
    assert_int_equal(tf_options_new(&o), TF_OK);
    /* Short: a worker held by the disk fails the test, not hangs it. */
    assert_int_equal(tf_options_set(o, TF_OPT_CONNECT_TIMEOUT_MS, 3000), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_IO_TIMEOUT_MS, 3000), TF_OK);
    if (g->fp[0]) {
        assert_int_equal(tf_options_set(o, TF_OPT_TLS, 1), TF_OK);
        assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_PIN, g->fp), TF_OK);
    }
    tf_client *c = NULL;
    int rc = tf_connect(&c, "127.0.0.1", g->port, o);
    tf_options_free(o);
    return rc == TF_OK ? c : NULL;
}

/* A client call from its own thread. */
typedef struct client_job {
    const gated_server *g;
    const char *name;
    int stat;  /* tf_stat, else tf_get_mem */
    int rc;
} client_job;

static void *client_main(void *arg)
{
    client_job *j = arg;
    tf_client *c = gs_connect(j->g);
    if (!c) {
        j->rc = TF_ENET;
        return NULL;
    }
    if (j->stat) {
        tf_stat_info info;
        j->rc = tf_stat(c, j->name, &info);
    } else {
        void *data = NULL;
        size_t len = 0;
        j->rc = tf_get_mem(c, j->name, &data, &len);
        free(data);
    }
    tf_close(c);
    return NULL;
}

/* A connection that has passed the hello (no features). */
static int raw_connect(const char *port)
{
    int fd = tu_raw_connect(port);
    struct timeval tv = {5, 0}; /* a lost answer fails the test, not hangs it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    tf_wire_client_hello ch = {1, 1, 0};
    tf__wire_encode_client_hello(buf, sizeof buf, &ch);
    assert_int_equal(send(fd, buf, TF_WIRE_CLIENT_HELLO_SIZE, MSG_NOSIGNAL),
                     TF_WIRE_CLIENT_HELLO_SIZE);
    assert_int_equal(recv(fd, buf, TF_WIRE_SERVER_HELLO_SIZE, MSG_WAITALL),
                     TF_WIRE_SERVER_HELLO_SIZE);
    assert_int_equal(tf__get_u16(buf + 12), 0);
    return fd;
}

static size_t encode_get(uint8_t *buf, size_t cap, const char *name)
{
    tf_wire_request r = {.op = TF_OP_GET, .name = name, .name_len = (uint16_t)strlen(name)};
    long n = tf__wire_encode_request(buf, cap, &r);
    assert_true(n > 0);
    return (size_t)n;
}

/* Reads one get's answer of a content of len bytes (no checksum). */
static void expect_get(int fd, const char *content)
{
    size_t len = strlen(content);
    uint8_t buf[TF_WIRE_RESPONSE_SIZE + 64 + TF_WIRE_TRAILER_SIZE];
    size_t want = TF_WIRE_RESPONSE_SIZE + len + TF_WIRE_TRAILER_SIZE;
    assert_true(want <= sizeof buf);
    assert_int_equal(recv(fd, buf, want, MSG_WAITALL), (ssize_t)want);
    tf_wire_response resp;
    assert_int_equal(tf__wire_decode_response(buf, TF_WIRE_RESPONSE_SIZE, &resp),
                     TF_WIRE_RESPONSE_SIZE);
    assert_int_equal(resp.status, 0);
    assert_int_equal(resp.size, len);
    assert_memory_equal(buf + TF_WIRE_RESPONSE_SIZE, content, len);
}

/* Reads one get's answer of len bytes (no checksum). */
static void expect_body(int fd, const uint8_t *content, size_t len)
{
    uint8_t head[TF_WIRE_RESPONSE_SIZE];
    assert_int_equal(recv(fd, head, sizeof head, MSG_WAITALL), (ssize_t)sizeof head);
    tf_wire_response resp;
    assert_int_equal(tf__wire_decode_response(head, sizeof head, &resp), TF_WIRE_RESPONSE_SIZE);
    assert_int_equal(resp.status, 0);
    assert_int_equal(resp.size, len);
    uint8_t *got = malloc(len + TF_WIRE_TRAILER_SIZE);
    assert_non_null(got);
    assert_int_equal(recv(fd, got, len + TF_WIRE_TRAILER_SIZE, MSG_WAITALL),
                     (ssize_t)(len + TF_WIRE_TRAILER_SIZE));
    assert_memory_equal(got, content, len);
    assert_int_equal(tf__get_u16(got + len), 0); /* the trailer's status */
    free(got);
}

/* Reads a failed answer: its status is code's. */
static void expect_failure(int fd, int code)
{
    uint8_t buf[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    assert_int_equal(recv(fd, buf, TF_WIRE_RESPONSE_SIZE, MSG_WAITALL), TF_WIRE_RESPONSE_SIZE);
    size_t mlen = tf__get_u16(buf + 4);
    assert_true(mlen <= TF_WIRE_MESSAGE_MAX);
    if (mlen)
        assert_int_equal(recv(fd, buf + TF_WIRE_RESPONSE_SIZE, mlen, MSG_WAITALL),
                         (ssize_t)mlen);
    tf_wire_response resp;
    assert_int_equal(tf__wire_decode_response(buf, TF_WIRE_RESPONSE_SIZE + mlen, &resp),
                     (long)(TF_WIRE_RESPONSE_SIZE + mlen));
    assert_int_equal(resp.status, tf__wire_status(code));
}

/* ---- tests ------------------------------------------------------------------------- */

/* Opens the gate once the first gated call has started. */
static void *open_gate_later(void *arg)
{
    (void)arg;
    int64_t end = tu_now_ms() + 5000; /* no cmocka assert off the main thread */
    for (;;) {
        pthread_mutex_lock(&gate.mu);
        int entered = gate.entered;
        pthread_mutex_unlock(&gate.mu);
        if (entered || tu_now_ms() > end)
            break;
        tu_sleep_ms(5);
    }
    tu_sleep_ms(100);
    gate_open();
    return NULL;
}

/* While one connection's storage call is stuck, another connection of the
   same worker is accepted and served. (Inline, the worker itself would be
   stuck: the second client's connect times out.) */
static void test_offloop_other_connection_served(void **state)
{
    (void)state;
    gated_server g;
    gs_start(&g, 2, 1000, 0);
    gs_file(&g, "slow.txt", "slow");
    gs_file(&g, "fast.txt", "fast");
    client_job a = {&g, "slow.txt", 1, -1};
    pthread_t ta;
    assert_int_equal(pthread_create(&ta, NULL, client_main, &a), 0);
    gate_wait_entered(1);

    tf_client *c = gs_connect(&g);
    assert_non_null(c);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(tf_get_mem(c, "fast.txt", &data, &len), TF_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "fast", 4);
    free(data);
    tf_stat_info info;
    assert_int_equal(tf_stat(c, "fast.txt", &info), TF_OK);
    tf_close(c);
    pthread_mutex_lock(&gate.mu);
    int inside = gate.inside;
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(inside, 1); /* the slow call was still held meanwhile */

    gate_open();
    pthread_join(ta, NULL);
    assert_int_equal(a.rc, TF_OK);
    gs_stop(&g);
}

/* A request pipelined behind one that waits for the disk is answered once
   the first is: the session reads what it already holds when it resumes,
   as no socket event will come for it. */
static void test_offloop_pipelined_behind_disk(void **state)
{
    (void)state;
    gated_server g;
    gs_start(&g, 2, 1000, 0);
    gs_file(&g, "slow.txt", "slow one");
    gs_file(&g, "fast.txt", "fast one");
    int fd = raw_connect(g.port);
    uint8_t req[2 * (TF_WIRE_REQUEST_SIZE + 16)];
    size_t len = encode_get(req, sizeof req, "slow.txt");
    len += encode_get(req + len, sizeof req - len, "fast.txt");
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    gate_wait_entered(1);
    tu_sleep_ms(50); /* the second request is in the session's buffer by now */
    gate_open();
    expect_get(fd, "slow one");
    expect_get(fd, "fast one");
    close(fd);
    gs_stop(&g);
}

/* The same over TLS, where the requests behind come in the same record:
   OpenSSL holds them, epoll sees nothing, and only the session's own look
   at its transport when it resumes (tf__conn_pending) finds them. */
static void test_offloop_tls_pipelined_behind_disk(void **state)
{
    (void)state;
    gated_server g;
    gs_start_ex(&g, 2, 1000, 0, 1, 0);
    gs_file(&g, "slow.txt", "slow one");
    gs_file(&g, "fast.txt", "fast one");
    tf_client *c = gs_connect(&g);
    assert_non_null(c);
    enum { N = 8 };
    tf_get_item items[N];
    memset(items, 0, sizeof items);
    for (int i = 0; i < N; i++) {
        items[i].name = i == 0 ? "slow.txt" : "fast.txt";
        items[i].fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        assert_true(items[i].fd >= 0);
    }
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
    assert_int_equal(tf_get_many(c, items, N), TF_OK);
    pthread_join(opener, NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(items[i].result, TF_OK);
        close(items[i].fd);
    }
    tf_close(c);
    gs_stop(&g);
}

/* A stop with storage calls in flight: the grace period ends, the job
   that has not started is cancelled (it never runs), and tf_server_run
   returns only once the running one is over. */
static void test_offloop_stop_waits_for_jobs(void **state)
{
    (void)state;
    gated_server g;
    gs_start(&g, 1, 100, 0);
    gs_file(&g, "slow.txt", "slow");
    client_job a = {&g, "slow.txt", 0, -1}, b = {&g, "slow.txt", 0, -1};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, client_main, &a), 0);
    gate_wait_entered(1);
    /* b's job waits behind a's on the pool's one thread. */
    assert_int_equal(pthread_create(&tb, NULL, client_main, &b), 0);
    tu_sleep_ms(200);
    tf_server_stop(g.srv);
    tu_sleep_ms(400); /* well past the grace period */
    pthread_mutex_lock(&gate.mu);
    int inside = gate.inside;
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(inside, 1);
    gate_open();
    pthread_join(g.thread, NULL);
    assert_true(g.returned_ms >= gate.opened_ms); /* waited for the running job */
    pthread_mutex_lock(&gate.mu);
    assert_int_equal(gate.entered, 1); /* b's was cancelled, never run */
    assert_int_equal(gate.inside, 0);
    pthread_mutex_unlock(&gate.mu);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_not_equal(b.rc, TF_OK);
    tf_server_close(g.srv);
    tu_rm_rf(g.root);
}

/* A client that leaves while its storage call runs: the session is freed
   only after the job (ASan would see a use after free), and the worker
   goes on serving. */
static void test_offloop_client_leaves_during_job(void **state)
{
    (void)state;
    gated_server g;
    gs_start(&g, 2, 1000, 0);
    gs_file(&g, "slow.txt", "slow");
    gs_file(&g, "fast.txt", "fast");
    for (int i = 0; i < 2; i++) {
        int fd = raw_connect(g.port);
        uint8_t req[TF_WIRE_REQUEST_SIZE + 16];
        size_t len = encode_get(req, sizeof req, "slow.txt");
        assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
        gate_wait_entered(i + 1);
        if (i == 1) /* with a reset rather than a close */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0},
                       sizeof(struct linger));
        close(fd);
        tu_sleep_ms(50);
        gate_open();
        int64_t end = tu_now_ms() + 5000;
        pthread_mutex_lock(&gate.mu);
        while (gate.inside > 0 && tu_now_ms() < end) {
            pthread_mutex_unlock(&gate.mu);
            tu_sleep_ms(5);
            pthread_mutex_lock(&gate.mu);
        }
        assert_int_equal(gate.inside, 0);
        gate.open = 0;
        pthread_mutex_unlock(&gate.mu);
    }
    gate_open();
    tf_client *c = gs_connect(&g);
    assert_non_null(c);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(tf_get_mem(c, "fast.txt", &data, &len), TF_OK);
    free(data);
    tf_close(c);
    gs_stop(&g);
}

/* A small file whose pages are all in memory is read by the loop itself
   (read_cached: nothing can block), not by a job of the pool; a large
   one, or one not in memory, is opened on the pool (open_read). */
static void test_offloop_small_cached_get_inline(void **state)
{
    (void)state;
    gated_server g;
    gs_start_ex(&g, 2, 1000, 0, 0, 1);
    gate_open();
    gs_file(&g, "fast.txt", "fast");
    char path[512];
    snprintf(path, sizeof path, "%s/big.bin", g.root);
    size_t n = (size_t)1 << 20; /* over the small-file limit */
    uint8_t *blob = calloc(1, n);
    assert_non_null(blob);
    tu_write_file(path, blob, n);
    tf_client *c = gs_connect(&g);
    assert_non_null(c);
    for (int i = 0; i < 3; i++) {
        void *data = NULL;
        size_t len = 0;
        assert_int_equal(tf_get_mem(c, "fast.txt", &data, &len), TF_OK);
        assert_int_equal(len, 4);
        free(data);
    }
    pthread_mutex_lock(&gate.mu);
    int opens = gate.opens;
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(opens, 0);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(tf_get_mem(c, "big.bin", &data, &len), TF_OK);
    assert_int_equal(len, n);
    free(data);
    pthread_mutex_lock(&gate.mu);
    opens = gate.opens;
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(opens, 1);
    tf_close(c);
    free(blob);
    gs_stop(&g);
}

/* The payload is written on the pool, the loop only reads the socket,
   whether the store says it is on the network or not (the local disk's
   write(2) stalls too, under dirty-page throttling). Both uploads arrive
   whole. */
static void check_put_writes(int network)
{
    gated_server g;
    gs_start(&g, 2, 1000, network);
    gate_open();
    size_t n = (size_t)3 << 20;
    uint8_t *blob = malloc(n);
    assert_non_null(blob);
    tu_fill(blob, n, 14);
    char local[512];
    snprintf(local, sizeof local, "%s.src", g.root);
    tu_write_file(local, blob, n);
    tf_client *c = gs_connect(&g);
    assert_non_null(c);
    assert_int_equal(tf_put(c, local, "big.bin"), TF_OK);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(tf_get_mem(c, "big.bin", &data, &len), TF_OK);
    assert_int_equal(len, n);
    assert_memory_equal(data, blob, n);
    free(data);
    tf_close(c);
    pthread_mutex_lock(&gate.mu);
    int on = gate.writes_on_loop, off = gate.writes_off_loop;
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(on, 0);
    assert_true(off > 0);
    unlink(local);
    free(blob);
    gs_stop(&g);
}

static void test_offloop_network_store_writes_on_pool(void **state)
{
    (void)state;
    check_put_writes(1);
}

static void test_offloop_local_writes_on_pool(void **state)
{
    (void)state;
    check_put_writes(0);
}

/* Pipelined gets on a network store: AHEAD_N small files, one missing
   and one large (over the 64 KiB read whole) among them, sent at once. */
#define AHEAD_N 12
#define AHEAD_MISSING 4
#define AHEAD_BIG 6
#define AHEAD_BIG_LEN ((size_t)100 << 10)

static void ahead_name(char *out, size_t cap, int i)
{
    snprintf(out, cap, i == AHEAD_MISSING ? "slow-gone%02d" : "slow%02d", i);
}

/* Makes the files and sends the AHEAD_N gets on a new connection. */
static int ahead_send(gated_server *g, uint8_t *big)
{
    uint8_t req[AHEAD_N * (TF_WIRE_REQUEST_SIZE + 16)];
    size_t len = 0;
    for (int i = 0; i < AHEAD_N; i++) {
        char name[32], content[32], path[512];
        ahead_name(name, sizeof name, i);
        snprintf(path, sizeof path, "%s/%s", g->root, name);
        snprintf(content, sizeof content, "file number %d", i);
        if (i == AHEAD_BIG)
            tu_write_file(path, big, AHEAD_BIG_LEN);
        else if (i != AHEAD_MISSING)
            tu_write_file(path, content, strlen(content));
        len += encode_get(req + len, sizeof req - len, name);
    }
    int fd = raw_connect(g->port);
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    return fd;
}

/* Reads the answers to ahead_send's gets, in order. */
static void ahead_expect(int fd, const uint8_t *big)
{
    for (int i = 0; i < AHEAD_N; i++) {
        char content[32];
        snprintf(content, sizeof content, "file number %d", i);
        if (i == AHEAD_MISSING)
            expect_failure(fd, TF_ENOENT);
        else if (i == AHEAD_BIG)
            expect_body(fd, big, AHEAD_BIG_LEN);
        else
            expect_get(fd, content);
    }
}

/* Waits (at most 5 s) until the server holds no get opened ahead. */
static void ahead_wait_freed(gated_server *g)
{
    int64_t end = tu_now_ms() + 5000;
    while (tf__server_ahead_held(g->srv) != 0 && tu_now_ms() < end)
        tu_sleep_ms(5);
    assert_int_equal(tf__server_ahead_held(g->srv), 0);
}

/* The gets behind the one in flight are opened at once (the first and
   the 8 of TF_OPT_GET_AHEAD's default wait in the gate together: one at
   a time, only the first would), and answered in request order: the
   missing one with its error, the large one whole. */
static void test_offloop_ahead_in_order(void **state)
{
    (void)state;
    gated_server g;
    gs_start(&g, 16, 1000, 1);
    uint8_t *big = malloc(AHEAD_BIG_LEN);
    assert_non_null(big);
    for (size_t i = 0; i < AHEAD_BIG_LEN; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    int fd = ahead_send(&g, big);
    gate_wait_entered(9);
    tu_sleep_ms(50);
    pthread_mutex_lock(&gate.mu);
    assert_int_equal(gate.entered, 9); /* no more than asked for */
    pthread_mutex_unlock(&gate.mu);
    gate_open();
    ahead_expect(fd, big);
    close(fd);
    ahead_wait_freed(&g);
    free(big);
    gs_stop(&g);
}

/* TF_OPT_GET_AHEAD bounds what one connection has opened ahead. */
static void test_offloop_ahead_bound(void **state)
{
    (void)state;
    gated_server g;
    get_ahead = 2;
    gs_start(&g, 16, 1000, 1);
    get_ahead = -1;
    uint8_t *big = calloc(1, AHEAD_BIG_LEN);
    assert_non_null(big);
    int fd = ahead_send(&g, big);
    gate_wait_entered(3);
    tu_sleep_ms(100);
    pthread_mutex_lock(&gate.mu);
    assert_int_equal(gate.entered, 3); /* the get in flight and 2 ahead */
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(tf__server_ahead_held(g.srv), 2);
    gate_open();
    ahead_expect(fd, big);
    close(fd);
    free(big);
    gs_stop(&g);
}

/* A client that closes (or resets) while its gets ahead are in the gate:
   they are cancelled or finished and freed (ASan finds a leak), and the
   server goes on serving. */
static void test_offloop_ahead_client_leaves(void **state)
{
    (void)state;
    gated_server g;
    gs_start(&g, 16, 1000, 1);
    uint8_t *big = calloc(1, AHEAD_BIG_LEN);
    assert_non_null(big);
    for (int reset = 0; reset < 2; reset++) {
        int fd = ahead_send(&g, big);
        gate_wait_entered(9 * (reset + 1));
        if (reset)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0},
                       sizeof(struct linger));
        close(fd);
        tu_sleep_ms(50);
        gate_open();
        ahead_wait_freed(&g);
        pthread_mutex_lock(&gate.mu);
        gate.open = 0;
        pthread_mutex_unlock(&gate.mu);
    }
    gate_open();
    int fd = raw_connect(g.port);
    uint8_t req[TF_WIRE_REQUEST_SIZE + 16];
    size_t len = encode_get(req, sizeof req, "slow00");
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    expect_get(fd, "file number 0");
    close(fd);
    free(big);
    gs_stop(&g);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offloop_other_connection_served),
        cmocka_unit_test(test_offloop_pipelined_behind_disk),
        cmocka_unit_test(test_offloop_tls_pipelined_behind_disk),
        cmocka_unit_test(test_offloop_stop_waits_for_jobs),
        cmocka_unit_test(test_offloop_client_leaves_during_job),
        cmocka_unit_test(test_offloop_small_cached_get_inline),
        cmocka_unit_test(test_offloop_network_store_writes_on_pool),
        cmocka_unit_test(test_offloop_local_writes_on_pool),
        cmocka_unit_test(test_offloop_ahead_in_order),
        cmocka_unit_test(test_offloop_ahead_bound),
        cmocka_unit_test(test_offloop_ahead_client_leaves),
    };
    return TU_RUN_GROUP("offloop", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
