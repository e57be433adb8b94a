/*
 * test_early.c - TF_OPT_EARLY_REQUESTS: the first request goes right behind
 * the client's hello. A fake server that answers only once it holds both
 * proves the request did not wait; a fake old server proves that requests
 * needing a feature wait for its hello; a full server, one with users and
 * a TLS server report their refusal at the first call, with tf_connect's
 * code and message; pipelined gets start early too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faults/rawpeer.h"
#include "testutil.h"
#include "wire.h"

static tf_options *early_options(int early)
{
    tf_options *o = NULL;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_EARLY_REQUESTS, early), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_IO_TIMEOUT_MS, 3000), TF_OK);
    return o;
}

/* ---- fake servers ---------------------------------------------------- */

/* wait_for_request: answers only once the client's hello AND a get request
   are in (a client that waits for the hello first gets nothing: its call
   times out). Otherwise an old server: its hello at once, with no
   features, then it counts what it receives. */
typedef struct fake_server {
    int listen_fd;
    int wait_for_request;
    size_t received; /* bytes the client sent, hello included */
    int answered;
} fake_server;

static void send_hello(int fd)
{
    uint8_t buf[TF_WIRE_SERVER_HELLO_SIZE];
    tf_wire_server_hello sh = {.version_min = 1, .version_max = 1, .max_name = 255};
    long n = tf__wire_encode_server_hello(buf, sizeof buf, &sh);
    assert_true(n > 0 && rp_send(fd, buf, (size_t)n) == 0);
}

static void *fake_main(void *arg)
{
    fake_server *v = arg;
    int fd = accept(v->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[4096];
    tf_wire_request r;
    if (v->wait_for_request) {
        if (rp_recv(fd, buf, TF_WIRE_CLIENT_HELLO_SIZE) == 0 &&
            rp_recv(fd, buf, TF_WIRE_REQUEST_SIZE) == 0 &&
            tf__wire_decode_request(buf, TF_WIRE_REQUEST_SIZE, 255, &r) == TF_WIRE_NEED_MORE &&
            rp_recv(fd, buf + TF_WIRE_REQUEST_SIZE, r.name_len) == 0) {
            send_hello(fd);
            tf_wire_response ok = {.op = TF_OP_GET, .size = 2};
            tf_wire_trailer t = {0};
            long n = tf__wire_encode_response(buf, sizeof buf, &ok);
            n += tf__wire_encode_trailer(buf + n + 2, sizeof buf - (size_t)n - 2, &t);
            memcpy(buf + TF_WIRE_RESPONSE_SIZE, "hi", 2);
            v->answered = rp_send(fd, buf, (size_t)n + 2) == 0;
        }
    } else {
        send_hello(fd);
    }
    ssize_t got;
    while ((got = recv(fd, buf, sizeof buf, 0)) > 0) /* until the client closes */
        v->received += (size_t)got;
    close(fd);
    return NULL;
}

static void fake_start(fake_server *v, pthread_t *th, char *port, size_t port_len)
{
    v->listen_fd = tu_listen_loopback(port, port_len);
    assert_int_equal(pthread_create(th, NULL, fake_main, v), 0);
}

static void fake_stop(fake_server *v, pthread_t th)
{
    pthread_join(th, NULL);
    close(v->listen_fd);
}

/* The get went out before the server's hello was read: this server sends
   its hello only once it holds the request. */
static void test_early_request_before_server_hello(void **state)
{
    (void)state;
    fake_server v = {.wait_for_request = 1};
    pthread_t th;
    char port[16];
    fake_start(&v, &th, port, sizeof port);
    tf_options *o = early_options(1);
    tf_client *c = NULL;
    assert_int_equal(tf_connect(&c, "127.0.0.1", port, o), TF_OK);
    void *data = NULL;
    size_t len = 0;
    int rc = tf_get_mem(c, "a.txt", &data, &len);
    if (rc != TF_OK)
        fail_msg("early get: %s (%s)", tf_errname(rc), tf_errmsg(c));
    assert_int_equal(len, 2);
    assert_memory_equal(data, "hi", 2);
    tf_free(data);
    /* Now the hello is known: no features, the server's limits. */
    assert_int_equal(tf_client_can_putx(c), 0);
    assert_int_equal(tf_client_max_name(c), 255);
    tf_close(c);
    fake_stop(&v, th);
    assert_true(v.answered);
    tf_options_free(o);
}

/* An old server (no feature at all): what needs a feature is never sent
   before its hello says whether it has it; the client refuses locally. */
static void test_early_old_server_gets_no_featured_request(void **state)
{
    (void)state;
    fake_server v = {0};
    pthread_t th;
    char port[16];
    fake_start(&v, &th, port, sizeof port);
    tf_options *o = early_options(1);
    assert_int_equal(tf_options_set(o, TF_OPT_RESUME, 1), TF_OK);
    tf_client *c = NULL;
    assert_int_equal(tf_connect(&c, "127.0.0.1", port, o), TF_OK);
    void *data = NULL;
    size_t len = 0;
    /* A path needs TREE: checked as a name once the hello says none. */
    assert_int_equal(tf_get_mem(c, "dir/a.txt", &data, &len), TF_EINVAL);
    assert_non_null(strstr(tf_errmsg(c), "bad name"));
    assert_int_equal(tf_client_has_tree(c), 0);
    assert_int_equal(tf_client_can_stream(c), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[1]);
    assert_int_equal(tf_put_stream(c, fds[0], "s"), TF_EPROTO);
    close(fds[0]);
    tf_put_args a = {.flags = TF_PUT_IF_ABSENT};
    assert_int_equal(tf_put_mem_ex(c, "x", 1, "x", &a, NULL), TF_EPROTO);
    tf_close(c);
    fake_stop(&v, th);
    assert_int_equal(v.received, TF_WIRE_CLIENT_HELLO_SIZE); /* the hello alone */
    tf_options_free(o);
}

/* ---- real servers ------------------------------------------------------ */

/* What tf_connect_ex says without early requests, and what the first call
   says with them: the same code and message, and again at the next call. */
static void expect_refusal_at_first_call(const char *port, const tf_options *plain,
                                         const tf_options *early, int want)
{
    tf_client *c = NULL;
    char err[512] = "";
    assert_int_equal(tf_connect_ex(&c, "127.0.0.1", port, plain, err, sizeof err), want);
    assert_null(c);
    assert_true(err[0] != '\0');

    assert_int_equal(tf_connect(&c, "127.0.0.1", port, early), TF_OK);
    tf_listing *l = NULL;
    int rc = tf_list(c, &l);
    if (rc != want)
        fail_msg("first call: %s (%s), want %s", tf_errname(rc), tf_errmsg(c), tf_errname(want));
    assert_string_equal(tf_errmsg(c), err);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(tf_get_mem(c, "a", &data, &len), want);
    assert_string_equal(tf_errmsg(c), err);
    tf_close(c);
}

static void test_early_busy_reported_at_first_call(void **state)
{
    (void)state;
    tf_options *so = early_options(0);
    assert_int_equal(tf_options_set(so, TF_OPT_MAX_CONNECTIONS, 1), TF_OK);
    test_server ts;
    tu_server_start(&ts, so);
    tf_options *plain = early_options(0), *early = early_options(1);
    tf_client *first = tu_connect(&ts, plain);
    tf_listing *l = NULL;
    assert_int_equal(tf_list(first, &l), TF_OK); /* it holds the one slot */
    tf_listing_free(l);
    expect_refusal_at_first_call(ts.port, plain, early, TF_EBUSY);

    /* get_many's every item fails with it. */
    tf_client *c = NULL;
    assert_int_equal(tf_connect(&c, "127.0.0.1", ts.port, early), TF_OK);
    tf_get_item items[3] = {{.name = "a", .fd = -1}, {.name = "b", .fd = -1},
                            {.name = "c", .fd = -1}};
    assert_int_equal(tf_get_many(c, items, 3), TF_EBUSY);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(items[i].result, TF_EBUSY);
        assert_non_null(strstr(items[i].message, "the server refused"));
    }
    tf_close(c);
    tf_close(first);
    tu_server_stop(&ts, 1);
    tf_options_free(plain);
    tf_options_free(early);
    tf_options_free(so);
}

/* A server with users: the login it demands is reported at the first
   call; with a user given, tf_connect logs in as before. */
static void test_early_auth_demand_at_first_call(void **state)
{
    (void)state;
    char dir[256], users[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(users, sizeof users, "%s/users", dir);
    tf_options *so = early_options(0);
    assert_int_equal(tf_options_set_string(so, TF_SOPT_USERS_FILE, users), TF_OK);
    char token[TF_TOKEN_SIZE], why[256];
    assert_int_equal(tf_users_add(so, "ann", "write", NULL, token, sizeof token, why, sizeof why),
                     TF_OK);
    test_server ts;
    tu_server_start(&ts, so);
    tf_options *plain = early_options(0), *early = early_options(1);
    expect_refusal_at_first_call(ts.port, plain, early, TF_EACCES);

    assert_int_equal(tf_options_set_string(early, TF_SOPT_USER, "ann"), TF_OK);
    assert_int_equal(tf_options_set_string(early, TF_SOPT_TOKEN, token), TF_OK);
    tf_client *c = NULL;
    assert_int_equal(tf_connect(&c, "127.0.0.1", ts.port, early), TF_OK);
    assert_int_equal(tf_put_mem(c, "hi", 2, "f"), TF_OK);
    tf_close(c);
    tu_server_stop(&ts, 1);
    tu_rm_rf(dir);
    tf_options_free(plain);
    tf_options_free(early);
    tf_options_free(so);
}

/* Pipelined gets right behind the hello, checksums on (the hello read in
   the middle of the batch turns them on). */
static void test_early_get_many(void **state)
{
    (void)state;
    enum { N = 40 };
    test_server ts;
    tu_server_start(&ts, NULL);
    char name[N][16];
    tf_get_item items[N];
    memset(items, 0, sizeof items);
    for (int i = 0; i < N; i++) {
        snprintf(name[i], sizeof name[i], "f%02d", i);
        tu_write_in(ts.root, name[i], name[i], strlen(name[i]));
        items[i] = (tf_get_item){.name = name[i], .fd = -1};
    }
    char local[256];
    tu_mkdtemp(local, sizeof local);
    char path[N][300];
    for (int i = 0; i < N; i++) {
        snprintf(path[i], sizeof path[i], "%s/%.15s", local, name[i]);
        items[i].local_path = path[i];
    }
    tf_options *early = early_options(1);
    tf_client *c = NULL;
    assert_int_equal(tf_connect(&c, "127.0.0.1", ts.port, early), TF_OK);
    int rc = tf_get_many(c, items, N);
    if (rc != TF_OK)
        fail_msg("get_many: %s (%s)", tf_errname(rc), tf_errmsg(c));
    for (int i = 0; i < N; i++) {
        size_t len = 0;
        uint8_t *got = tu_read_file(path[i], &len);
        assert_non_null(got);
        assert_int_equal(len, strlen(name[i]));
        assert_memory_equal(got, name[i], len);
        free(got);
    }
    tf_close(c);
    tu_rm_rf(local);
    tu_server_stop(&ts, 1);
    tf_options_free(early);
}

/* TLS: the hello follows the TLS handshake, the get right behind it. A
   TLS server with users reports its login demand at the first call. */
static void test_early_tls(void **state)
{
    (void)state;
    char dir[256], sub[300], users[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/state", dir);
    snprintf(users, sizeof users, "%s/users", dir);
    tf_options *so = early_options(0);
    assert_int_equal(tf_options_set(so, TF_OPT_TLS, 1), TF_OK);
    assert_int_equal(tf_options_set_string(so, TF_SOPT_STATE_DIR, sub), TF_OK);
    test_server ts;
    tu_server_start(&ts, so);
    tu_write_in(ts.root, "t.txt", "tls", 3);
    char fp[128];
    assert_int_equal(tf_server_fingerprint(ts.srv, fp, sizeof fp), TF_OK);
    tf_options *early = early_options(1), *plain = early_options(0);
    for (int i = 0; i < 2; i++) {
        tf_options *o = i ? plain : early;
        assert_int_equal(tf_options_set(o, TF_OPT_TLS, 1), TF_OK);
        assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_PIN, fp), TF_OK);
    }
    tf_client *c = NULL;
    assert_int_equal(tf_connect(&c, "127.0.0.1", ts.port, early), TF_OK);
    void *data = NULL;
    size_t len = 0;
    int rc = tf_get_mem(c, "t.txt", &data, &len);
    if (rc != TF_OK)
        fail_msg("early get over TLS: %s (%s)", tf_errname(rc), tf_errmsg(c));
    assert_int_equal(len, 3);
    assert_memory_equal(data, "tls", 3);
    tf_free(data);
    tf_close(c);
    char root[256];
    snprintf(root, sizeof root, "%s", ts.root);
    tu_server_stop(&ts, 0);

    char token[TF_TOKEN_SIZE], why[256];
    assert_int_equal(tf_options_set_string(so, TF_SOPT_USERS_FILE, users), TF_OK);
    assert_int_equal(tf_users_add(so, "bo", "read", NULL, token, sizeof token, why, sizeof why),
                     TF_OK);
    tu_server_start_in(&ts, root, so);
    expect_refusal_at_first_call(ts.port, plain, early, TF_EACCES);
    tu_server_stop(&ts, 1);
    tu_rm_rf(dir);
    tf_options_free(early);
    tf_options_free(plain);
    tf_options_free(so);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_early_request_before_server_hello),
        cmocka_unit_test(test_early_old_server_gets_no_featured_request),
        cmocka_unit_test(test_early_busy_reported_at_first_call),
        cmocka_unit_test(test_early_auth_demand_at_first_call),
        cmocka_unit_test(test_early_get_many),
        cmocka_unit_test(test_early_tls),
    };
    return TU_RUN_GROUP("early", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
