/*
 * test_faults_slow.c - slow and idle peers held while others are served.
 *
 * A server with a 1 s I/O timeout and a minimum rate of 1000 bytes/s gets
 * 50 idle clients (handshake done, no request), 10 silent connections (not
 * even a hello) and 6 tricklers moving 1 byte every 200 ms: through the
 * hello, through a request head, through a put's payload, and one reading a
 * get's payload at that pace. Meanwhile another client makes 100 requests,
 * each of which must complete within 1 s. The silent ones must be cut by
 * the I/O timeout and the tricklers by the minimum rate, each within its
 * expected window, while every idle client is kept and still works at the
 * end. A second server with a limit of 8 connections answers the ninth
 * with TF_EBUSY at once, not a hang, and takes it once a slot frees.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rawpeer.h"
#include "testutil.h"
#include "wire.h"

#define IO_TIMEOUT_MS 1000
#define MIN_RATE 1000
#define TRICKLE_MS 200
#define IDLE 50
#define SILENT 10
#define TRICKLERS 6
#define NORMAL_OPS 100
#define BIG_SIZE ((size_t)16 << 20)
/* Where a cut may fall: the rule fires at the first byte after a full
   window (minimum rate) or one timeout after the last byte (I/O timeout);
   the upper bound leaves room for a loaded CI machine. */
#define CUT_MIN_MS (IO_TIMEOUT_MS - 100)
#define CUT_MAX_MS (2 * IO_TIMEOUT_MS + 1000)

/* ---- what the server logs about cut connections ------------------------------ */

#define MAX_LOG 64
static struct {
    pthread_mutex_t lock;
    struct cut {
        int port;
        int result;
        int64_t at_ms;
        char op[16];
        char message[160];
    } cut[MAX_LOG];
    int n;
} g_log = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_log(void *user, const tf_request_log *e)
{
    (void)user;
    if (e->result != TF_ETIMEDOUT)
        return;
    const char *colon = strrchr(e->peer, ':');
    pthread_mutex_lock(&g_log.lock);
    if (g_log.n < MAX_LOG) {
        struct cut *c = &g_log.cut[g_log.n++];
        c->port = colon ? atoi(colon + 1) : -1;
        c->result = e->result;
        c->at_ms = tu_now_ms();
        snprintf(c->op, sizeof c->op, "%s", e->op);
        snprintf(c->message, sizeof c->message, "%s", e->message);
    }
    pthread_mutex_unlock(&g_log.lock);
}

/* The server's log entry for the connection from local port, if any. */
static int find_cut(int port, struct cut *out)
{
    int found = 0;
    pthread_mutex_lock(&g_log.lock);
    for (int i = 0; i < g_log.n; i++) {
        if (g_log.cut[i].port == port) {
            *out = g_log.cut[i];
            found = 1;
        }
    }
    pthread_mutex_unlock(&g_log.lock);
    return found;
}

/* ---- slow peers -------------------------------------------------------------------- */

typedef enum kind { K_SILENT, K_HELLO, K_REQUEST, K_BODY, K_READER } kind;
static const char *const kind_name[] = {"silent", "hello trickler", "request trickler",
                                        "payload trickler", "slow reader"};

typedef struct peer {
    kind kind;
    int fd;
    int port;
    const uint8_t *bytes; /* what it trickles */
    size_t len, sent;
    int64_t start_ms; /* when its timed stretch began */
    int64_t cut_ms;   /* how long until the server cut it; -1: not yet */
    atomic_int live; /* read by the main thread while the trickler writes it */
} peer;

static peer g_peers[SILENT + TRICKLERS];
static int g_npeers;
static uint8_t g_hello[TF_WIRE_CLIENT_HELLO_SIZE];
static uint8_t g_list_req[TF_WIRE_REQUEST_SIZE];
static uint8_t g_body[1000];

static peer *add_peer(kind k, int fd)
{
    peer *p = &g_peers[g_npeers++];
    memset(p, 0, sizeof *p);
    p->kind = k;
    p->fd = fd;
    p->port = rp_local_port(fd);
    p->cut_ms = -1;
    p->live = 1;
    p->start_ms = tu_now_ms();
    return p;
}

/* Whether the server has closed fd (reading and dropping what it sent). */
static int closed_by_server(int fd)
{
    char sink[4096];
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n > 0)
            continue;
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
}

/* Moves each live peer one byte every TRICKLE_MS and notes when it is cut. */
static void *trickle_main(void *arg)
{
    (void)arg;
    int64_t next = tu_now_ms(), end = next + 3 * CUT_MAX_MS;
    for (int live = 1; live && tu_now_ms() < end;) {
        live = 0;
        for (int i = 0; i < g_npeers; i++) {
            peer *p = &g_peers[i];
            if (!p->live)
                continue;
            int gone = 0;
            if (p->kind == K_READER) {
                char c;
                recv(p->fd, &c, 1, MSG_DONTWAIT);
                struct cut cut;
                if (find_cut(p->port, &cut)) { /* the log tells; its bytes wait here */
                    p->cut_ms = cut.at_ms - p->start_ms;
                    p->live = 0;
                }
            } else {
                if (p->kind != K_SILENT && p->sent < p->len &&
                    send(p->fd, p->bytes + p->sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                    p->sent++;
                gone = closed_by_server(p->fd);
            }
            if (gone) {
                p->cut_ms = tu_now_ms() - p->start_ms;
                p->live = 0;
            }
            live |= p->live;
        }
        /* On a fixed beat, so that a late round does not delay the next. */
        next += TRICKLE_MS;
        int64_t wait = next - tu_now_ms();
        if (wait > 0)
            tu_sleep_ms((int)wait);
    }
    return NULL;
}

/* ---- the test ----------------------------------------------------------------------- */

static tf_options *server_options(void)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_IO_TIMEOUT_MS, IO_TIMEOUT_MS), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_MIN_RATE, MIN_RATE), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_IDLE_TIMEOUT_MS, 60000), TF_OK);
    assert_int_equal(tf_options_set_log(o, on_log, NULL), TF_OK);
    return o;
}

static void test_faults_slow_and_idle_peers(void **state)
{
    (void)state;
    tf_options *o = server_options();
    test_server s;
    /* The subject is the network, not the disk: on a tmpfs the fsync of
       each upload costs nothing, so a busy disk (other tests writing
       hundreds of MiB) cannot make a normal put slow. */
    char root[256] = "/dev/shm/tcpfile-faults-XXXXXX";
    if (!mkdtemp(root))
        tu_mkdtemp(root, sizeof root);
    tu_server_start_in(&s, root, o);
    char path[512];
    uint8_t *big = malloc(BIG_SIZE);
    tu_fill(big, BIG_SIZE, 8);
    snprintf(path, sizeof path, "%s/big.bin", s.root);
    tu_write_file(path, big, BIG_SIZE);
    free(big);
    /* On disk before the clock starts (if the root is on one): the server
       fsyncs each upload and its directory, which on ext4 would otherwise
       wait for these 16 MiB. */
    int bfd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(bfd >= 0);
    assert_int_equal(fsync(bfd), 0);
    close(bfd);
    tf_wire_client_hello ch = {1, 1, TF_FEATURE_CHECKSUM};
    tf__wire_encode_client_hello(g_hello, sizeof g_hello, &ch);
    tf_wire_request lq = {.op = TF_OP_LIST};
    tf__wire_encode_request(g_list_req, sizeof g_list_req, &lq);
    tu_fill(g_body, sizeof g_body, 9);

    /* 50 idle clients: a finished handshake, then nothing. */
    tf_client *idle[IDLE];
    for (int i = 0; i < IDLE; i++)
        idle[i] = tu_connect(&s, NULL);

    /* The tricklers' handshakes first: a server times a connection from
       its accept, and a request from its first byte or its go-ahead, so
       everything that starts a clock comes last, in one burst just before
       the trickling starts. */
    int req_fd[2], body_fd[2], reader_fd;
    for (int i = 0; i < 2; i++) {
        req_fd[i] = rp_connect(s.port);
        assert_true(rp_handshake(req_fd[i], TF_FEATURE_CHECKSUM) >= 0);
        body_fd[i] = rp_connect(s.port);
        assert_true(rp_handshake(body_fd[i], TF_FEATURE_CHECKSUM) >= 0);
    }
    reader_fd = rp_connect(s.port);
    int small = 4096;
    setsockopt(reader_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    assert_true(rp_handshake(reader_fd, TF_FEATURE_CHECKSUM) >= 0);

    peer *p;
    for (int i = 0; i < 2; i++) {
        p = add_peer(K_REQUEST, req_fd[i]);
        p->bytes = g_list_req;
        p->len = sizeof g_list_req;
    }
    for (int i = 0; i < SILENT; i++)
        add_peer(K_SILENT, rp_connect(s.port));
    p = add_peer(K_HELLO, rp_connect(s.port));
    p->bytes = g_hello;
    p->len = sizeof g_hello;
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "trickle-%d.bin", i);
        assert_int_equal(rp_send_request(body_fd[i], TF_OP_PUT, 0, (uint16_t)strlen(name),
                                         sizeof g_body, 0, name, NULL),
                         0);
        tf_wire_response r;
        assert_int_equal(rp_read_response(body_fd[i], &r, NULL, 0), 0);
        assert_int_equal(r.status, 0);
        p = add_peer(K_BODY, body_fd[i]);
        p->bytes = g_body;
        p->len = sizeof g_body;
    }
    assert_int_equal(rp_send_request(reader_fd, TF_OP_GET, 0, 7, 0, 0, "big.bin", NULL), 0);
    add_peer(K_READER, reader_fd);
    pthread_t trickler;
    assert_int_equal(pthread_create(&trickler, NULL, trickle_main, NULL), 0);

    /* Meanwhile: 100 requests from another client, each timed. */
    tf_client *c = tu_connect(&s, NULL);
    int64_t slowest = 0, during = 0;
    const char *slowest_op = "";
    uint8_t data[64 << 10];
    for (int i = 0; i < NORMAL_OPS; i++) {
        int64_t t0 = tu_now_ms();
        int rc;
        char name[32];
        snprintf(name, sizeof name, "normal-%d.bin", i / 3 % 5);
        if (i % 10 == 9) { /* a new connection now and then */
            tf_close(c);
            c = tu_connect(&s, NULL);
        }
        if (i % 3 == 0) {
            tu_fill(data, sizeof data, (uint64_t)i);
            rc = tf_put_mem(c, data, sizeof data, name);
        } else if (i % 3 == 1) {
            void *d;
            size_t n;
            rc = tf_get_mem(c, name, &d, &n);
            if (rc == TF_OK) {
                assert_int_equal(n, sizeof data);
                assert_memory_equal(d, data, sizeof data);
            }
            tf_free(d);
        } else {
            tf_listing *l;
            rc = tf_list(c, &l);
            tf_listing_free(l);
        }
        int64_t took = tu_now_ms() - t0;
        if (rc != TF_OK)
            fail_msg("normal request %d: %s (%s)", i, tf_errname(rc), tf_errmsg(c));
        if (took >= 1000)
            fail_msg("normal request %d took %lld ms", i, (long long)took);
        if (took > slowest) {
            slowest = took;
            slowest_op = i % 3 == 0 ? "put" : i % 3 == 1 ? "get" : "list";
        }
        int alive = 0;
        for (int k = 0; k < g_npeers; k++)
            alive += g_peers[k].live;
        during += alive == g_npeers;
        tu_sleep_ms(10);
    }
    tf_close(c);
    pthread_join(trickler, NULL);

    /* Every slow peer was cut, within its window, for the right reason. */
    int64_t lo = -1, hi = 0;
    for (int i = 0; i < g_npeers; i++) {
        p = &g_peers[i];
        struct cut cut;
        if (p->cut_ms < 0)
            fail_msg("the %s on port %d was never cut", kind_name[p->kind], p->port);
        if (p->cut_ms < CUT_MIN_MS || p->cut_ms > CUT_MAX_MS)
            fail_msg("the %s was cut after %lld ms, outside [%d, %d]", kind_name[p->kind],
                     (long long)p->cut_ms, CUT_MIN_MS, CUT_MAX_MS);
        if (!find_cut(p->port, &cut))
            fail_msg("the server logged no timeout for the %s", kind_name[p->kind]);
        /* Silence meets the I/O timeout, a trickle the minimum rate; a
           reader may meet either, depending on how the kernel opens its
           window. */
        const char *why = p->kind == K_SILENT ? "no progress" : "too slow";
        if (!strstr(cut.message, why) &&
            !(p->kind == K_READER && strstr(cut.message, "no progress")))
            fail_msg("the %s was cut for \"%s\", expected \"%s\"", kind_name[p->kind],
                     cut.message, why);
        if (lo < 0 || p->cut_ms < lo)
            lo = p->cut_ms;
        if (p->cut_ms > hi)
            hi = p->cut_ms;
        close(p->fd);
        printf("# %s: cut after %lld ms (%s)\n", kind_name[p->kind], (long long)p->cut_ms,
               cut.message);
    }
    /* No cut upload was stored. */
    snprintf(path, sizeof path, "%s/trickle-0.bin", s.root);
    assert_int_equal(tu_file_size(path), -1);

    /* The idle clients were held, not dropped, and still work. */
    for (int i = 0; i < IDLE; i++) {
        tf_listing *l;
        int rc = tf_list(idle[i], &l);
        if (rc != TF_OK)
            fail_msg("idle client %d: %s (%s)", i, tf_errname(rc), tf_errmsg(idle[i]));
        tf_listing_free(l);
        tf_close(idle[i]);
    }
    tu_server_stop(&s, 1);
    tf_options_free(o);
    printf("faults: slow-peers: %d idle clients held and still served, %d silent "
           "connections and %d tricklers (1 byte per %d ms) cut after %lld-%lld ms "
           "(I/O timeout %d ms, minimum rate %d B/s); %d normal requests meanwhile "
           "(%lld while every slow peer was connected), slowest %lld ms (a %s); bytes lost "
           "0\n",
           IDLE, SILENT, TRICKLERS, TRICKLE_MS, (long long)lo, (long long)hi, IO_TIMEOUT_MS,
           MIN_RATE, NORMAL_OPS, (long long)during, (long long)slowest, slowest_op);
}

static void test_faults_connection_limit(void **state)
{
    (void)state;
    tf_options *o;
    test_server s;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_MAX_CONNECTIONS, 8), TF_OK);
    tu_server_start(&s, o);
    tf_client *held[8];
    for (int i = 0; i < 8; i++)
        held[i] = tu_connect(&s, NULL);
    int64_t t0 = tu_now_ms();
    tf_client *c = NULL;
    char err[256];
    int rc = tf_connect_ex(&c, "127.0.0.1", s.port, NULL, err, sizeof err);
    int64_t took = tu_now_ms() - t0;
    assert_int_equal(rc, TF_EBUSY);
    assert_null(c);
    assert_true(took < 1000);
    /* One leaves: a slot frees once the server has seen it go. */
    tf_close(held[0]);
    rc = TF_EBUSY;
    for (int i = 0; i < 100 && rc == TF_EBUSY; i++) {
        rc = tf_connect(&c, "127.0.0.1", s.port, NULL);
        if (rc == TF_EBUSY)
            tu_sleep_ms(20);
    }
    assert_int_equal(rc, TF_OK);
    tf_listing *l;
    assert_int_equal(tf_list(c, &l), TF_OK);
    tf_listing_free(l);
    tf_close(c);
    for (int i = 1; i < 8; i++)
        tf_close(held[i]);
    tu_server_stop(&s, 1);
    tf_options_free(o);
    printf("faults: connection-limit: the 9th client of 8 told TF_EBUSY in %lld ms, "
           "served once a slot freed\n",
           (long long)took);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_slow_and_idle_peers),
        cmocka_unit_test(test_faults_connection_limit),
    };
    return TU_RUN_GROUP("slow_peers", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
