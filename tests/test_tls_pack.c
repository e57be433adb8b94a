/*
 * test_tls_pack.c - a TLS server's pipelined answers packed into full
 * records (tls.h, tf__tls_writev_more): a raw TLS client sends a batch of
 * requests in one record and must get every answer, whatever ends the
 * batch (a small get, an error, a large get, a listing), with nothing left
 * in the server's pack; a burst of small gets arrives in fewer records
 * than answers; a burst larger than the socket takes waits for it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tcpfile.h"
#include "testutil.h"
#include "tls.h"
#include "wire.h"

#define SMALL 4096
#define LARGE ((size_t)1 << 20) /* past the server's small-answer path */

typedef struct fixture {
    char state[PATH_MAX];
    test_server srv;
    tf_options *sopt;
    char fp[64];
    tf__tls_ctx *ctx;
    tf__tls *t;
    int fd;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    tu_mkdtemp(f->state, sizeof f->state);
    assert_int_equal(tf_options_new(&f->sopt), TF_OK);
    assert_int_equal(tf_options_set(f->sopt, TF_OPT_TLS, 1), TF_OK);
    assert_int_equal(tf_options_set_string(f->sopt, TF_SOPT_STATE_DIR, f->state), TF_OK);
    tu_server_start(&f->srv, f->sopt);
    assert_int_equal(tf_server_fingerprint(f->srv.srv, f->fp, sizeof f->fp), TF_OK);
    uint8_t *data = malloc(LARGE);
    assert_non_null(data);
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%02d", i);
        tu_fill(data, SMALL, (uint64_t)i);
        tu_write_in(f->srv.root, name, data, SMALL);
    }
    tu_fill(data, LARGE, 99);
    tu_write_in(f->srv.root, "large", data, LARGE);
    tu_fill(data, 60000, 7); /* a small answer of several records */
    tu_write_in(f->srv.root, "s60k", data, 60000);
    free(data);
    f->fd = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tf__tls_free(f->t);
    if (f->fd >= 0)
        close(f->fd);
    tf__tls_ctx_free(f->ctx);
    tu_server_stop(&f->srv, 1);
    tf_options_free(f->sopt);
    tu_rm_rf(f->state);
    free(f);
    return 0;
}

static void tls_write_all(fixture *f, const void *buf, size_t len)
{
    tf__err e = {{0}};
    const uint8_t *p = buf;
    while (len > 0) {
        size_t n = 0;
        assert_int_equal(tf__tls_write(f->t, p, len, &n, &e), TF_OK);
        p += n;
        len -= n;
    }
}

/* Reads exactly len bytes (into buf, or dropped when NULL) within 3 s: 0,
   or -1 (an answer the server kept to itself times out here). */
static int tls_read_all(fixture *f, void *buf, size_t len)
{
    tf__err e = {{0}};
    uint8_t sink[16384];
    uint8_t *p = buf;
    int64_t end = tu_now_ms() + 3000;
    while (len > 0) {
        if (!tf__tls_pending(f->t)) {
            struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
            int left = (int)(end - tu_now_ms());
            if (left <= 0 || poll(&pfd, 1, left) != 1)
                return -1;
        }
        size_t n = 0, want = p ? len : (len < sizeof sink ? len : sizeof sink);
        int r = tf__tls_read(f->t, p ? p : sink, want, &n, &e);
        if (r == TF__TLS_WANT_READ)
            continue;
        if (r != TF_OK)
            return -1;
        if (p)
            p += n;
        len -= n;
    }
    return 0;
}

/* Connects, shakes hands and exchanges the hellos (which also takes the
   server's session tickets off the socket). */
static void open_conn(fixture *f)
{
    tf__err e = {{0}};
    tf__tls_client_conf conf = {.pin = f->fp};
    assert_int_equal(tf__tls_client_ctx_new(&f->ctx, &conf, &e), TF_OK);
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(f->srv.port))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(tf__tls_client_new(&f->t, f->ctx, f->fd, "127.0.0.1", NULL, &e), TF_OK);
    int r;
    while ((r = tf__tls_handshake(f->t, &e)) == TF__TLS_WANT_READ || r == TF__TLS_WANT_WRITE)
        ;
    assert_int_equal(r, TF_OK);
    uint8_t out[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello ch = {1, 1, 0};
    tls_write_all(f, out, (size_t)tf__wire_encode_client_hello(out, sizeof out, &ch));
    uint8_t hello[TF_WIRE_SERVER_HELLO_SIZE];
    assert_int_equal(tls_read_all(f, hello, sizeof hello), 0);
}

/* Appends a request for name to buf at *at. */
static void add_request(uint8_t *buf, size_t cap, size_t *at, uint8_t op, const char *name)
{
    tf_wire_request q = {.op = op, .name = name, .name_len = (uint16_t)strlen(name)};
    long n = tf__wire_encode_request(buf + *at, cap - *at, &q);
    assert_true(n > 0);
    *at += (size_t)n;
}

/* Reads one answer: its status; a get's body (size checked against want,
   when not -1) and trailer. */
static int read_answer(fixture *f, uint8_t op, long long want)
{
    uint8_t in[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    if (tls_read_all(f, in, TF_WIRE_RESPONSE_SIZE) != 0)
        return -1;
    tf_wire_response r;
    long n = tf__wire_decode_response(in, TF_WIRE_RESPONSE_SIZE, &r);
    if (n == TF_WIRE_NEED_MORE) {
        if (tls_read_all(f, in + TF_WIRE_RESPONSE_SIZE, r.message_len) != 0)
            return -1;
        n = tf__wire_decode_response(in, TF_WIRE_RESPONSE_SIZE + r.message_len, &r);
    }
    assert_true(n > 0);
    if (r.status != 0)
        return r.status;
    if (want >= 0)
        assert_int_equal(r.size, (uint64_t)want);
    if (tls_read_all(f, NULL, (size_t)r.size) != 0)
        return -1;
    if (op == TF_OP_GET || op == TF_OP_LIST) {
        uint8_t tr[TF_WIRE_TRAILER_SIZE];
        if (tls_read_all(f, tr, sizeof tr) != 0)
            return -1;
    }
    return 0;
}

/* N small gets in one record, then last: every answer arrives. */
static void batch_ending_in(fixture *f, uint8_t op, const char *last, long long want,
                            int status)
{
    open_conn(f);
    enum { N = 12 };
    uint8_t out[1024];
    size_t at = 0;
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%02d", i);
        add_request(out, sizeof out, &at, TF_OP_GET, name);
    }
    add_request(out, sizeof out, &at, op, last);
    tls_write_all(f, out, at); /* one record */
    for (int i = 0; i < N; i++)
        assert_int_equal(read_answer(f, TF_OP_GET, SMALL), 0);
    int st = read_answer(f, op, want);
    assert_int_equal(st, status);
}

static void test_tlspack_batch_ends_in_small_get(void **state)
{
    batch_ending_in(*state, TF_OP_GET, "s39", SMALL, 0);
}

static void test_tlspack_batch_ends_in_error(void **state)
{
    batch_ending_in(*state, TF_OP_GET, "missing", -1, tf__wire_status(TF_ENOENT));
}

static void test_tlspack_batch_ends_in_large_get(void **state)
{
    batch_ending_in(*state, TF_OP_GET, "large", (long long)LARGE, 0);
}

static void test_tlspack_batch_ends_in_list(void **state)
{
    batch_ending_in(*state, TF_OP_LIST, "", -1, 0);
}

/* One request, and the client waits: its answer comes. */
static void test_tlspack_single_request_answered(void **state)
{
    fixture *f = *state;
    open_conn(f);
    uint8_t out[64];
    size_t at = 0;
    add_request(out, sizeof out, &at, TF_OP_GET, "s00");
    tls_write_all(f, out, at);
    assert_int_equal(read_answer(f, TF_OP_GET, SMALL), 0);
    /* And again, after a pause: nothing was left behind. */
    tu_sleep_ms(20);
    tls_write_all(f, out, at);
    assert_int_equal(read_answer(f, TF_OP_GET, SMALL), 0);
}

/* A burst of 16 small gets (one client record) comes back in full records,
   far fewer than one per answer (without packing: 16). Counted on the
   socket before reading, from the records' headers. */
static void test_tlspack_burst_in_fewer_records(void **state)
{
    fixture *f = *state;
    open_conn(f);
    enum { N = 16 };
    uint8_t out[1024];
    size_t at = 0;
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%02d", i);
        add_request(out, sizeof out, &at, TF_OP_GET, name);
    }
    tls_write_all(f, out, at);
    size_t plain = N * (TF_WIRE_RESPONSE_SIZE + SMALL + TF_WIRE_TRAILER_SIZE);
    static uint8_t peek[256 << 10];
    int avail = 0, last = -1;
    for (int64_t end = tu_now_ms() + 3000; tu_now_ms() < end;) {
        assert_int_equal(ioctl(f->fd, FIONREAD, &avail), 0);
        if ((size_t)avail > plain && avail == last)
            break; /* all of it (ciphertext is longer) and nothing more coming */
        last = avail;
        tu_sleep_ms(30);
    }
    ssize_t got = recv(f->fd, peek, sizeof peek, MSG_PEEK);
    assert_true(got > (ssize_t)plain);
    int records = 0;
    for (size_t p = 0; p + 5 <= (size_t)got; records++)
        p += 5 + ((size_t)peek[p + 3] << 8 | peek[p + 4]);
    print_message("# %d answers in %d records, %zd bytes\n", N, records, got);
    assert_true(records <= N / 3);
    for (int i = 0; i < N; i++)
        assert_int_equal(read_answer(f, TF_OP_GET, SMALL), 0);
}

/* More than the sockets hold (200 answers of 60,000 bytes, 12 MB), sent
   while the client is not reading: packs wait for room, none is lost. */
static void test_tlspack_burst_larger_than_socket(void **state)
{
    fixture *f = *state;
    open_conn(f);
    enum { N = 200 };
    static uint8_t out[N * 64];
    size_t at = 0;
    for (int i = 0; i < N; i++)
        add_request(out, sizeof out, &at, TF_OP_GET, i % 5 == 4 ? "s01" : "s60k");
    tls_write_all(f, out, at);
    tu_sleep_ms(100); /* the server fills the socket and waits */
    for (int i = 0; i < N; i++)
        assert_int_equal(read_answer(f, TF_OP_GET, i % 5 == 4 ? SMALL : 60000), 0);
}

int main(int argc, char **argv)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_tlspack_batch_ends_in_small_get),
        T(test_tlspack_batch_ends_in_error),
        T(test_tlspack_batch_ends_in_large_get),
        T(test_tlspack_batch_ends_in_list),
        T(test_tlspack_single_request_answered),
        T(test_tlspack_burst_in_fewer_records),
        T(test_tlspack_burst_larger_than_socket),
    };
    return TU_RUN_GROUP("tls_pack", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
