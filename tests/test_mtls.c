/*
 * test_mtls.c - machines that log in with a client certificate mapped to
 * a user (issue 13, "the second way in"), over a real TLS server on
 * 127.0.0.1 port 0: the mapped machine is its user from the first byte
 * (rights, sub-directory, the log), an unknown certificate is nobody (the
 * token login stays possible), a certificate without its key is refused;
 * and a request pipelined right behind AUTH over TLS is answered (the
 * bytes TLS already decrypted are read after the login's pool job).
 * Certificates made with the openssl command line.
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tcpfile.h"
#include "testutil.h"
#include "tls.h"
#include "wire.h"

typedef struct fixture {
    char dir[PATH_MAX];
    char state[PATH_MAX];
    char users[PATH_MAX];
    char fp[64]; /* the server's */
    char tok_alice[TF_TOKEN_SIZE];
    test_server srv;
    tf_options *sopt;
    pthread_mutex_t log_lock;
    char log[8192];
} fixture;

static void path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    assert_true(snprintf(buf, cap, "%s/%s", dir, name) < (int)cap);
}

static int sh(const char *fmt, ...) TF__PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static void on_log(void *user, const tf_request_log *entry)
{
    fixture *f = user;
    pthread_mutex_lock(&f->log_lock);
    size_t used = strlen(f->log);
    snprintf(f->log + used, sizeof f->log - used, "%s user=%s %s %s\n", entry->op,
             entry->user, entry->name, tf_errname(entry->result));
    pthread_mutex_unlock(&f->log_lock);
}

static int log_has(fixture *f, const char *text)
{
    int64_t end = tu_now_ms() + 2000;
    for (;;) {
        pthread_mutex_lock(&f->log_lock);
        int found = strstr(f->log, text) != NULL;
        pthread_mutex_unlock(&f->log_lock);
        if (found || tu_now_ms() > end)
            return found;
        tu_sleep_ms(10);
    }
}

static tf_options *users_opts(fixture *f)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_USERS_FILE, f->users), TF_OK);
    return o;
}

/* m1 and m2: self-signed machine certificates; m1 is user "m1" (write,
   confined to machines/m1), m2 is nobody's. alice: a token user (read). */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    pthread_mutex_init(&f->log_lock, NULL);
    tu_mkdtemp(f->dir, sizeof f->dir);
    path_in(f->state, sizeof f->state, f->dir, "state");
    path_in(f->users, sizeof f->users, f->dir, "users");
    assert_int_equal(
        sh("cd '%s' && for m in m1 m2; do openssl req -x509 -newkey ec "
           "-pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=$m -keyout $m.key "
           "-out $m.pem 2>/dev/null || exit 1; done",
           f->dir),
        0);
    tf_options *o = users_opts(f);
    char why[256], m1[PATH_MAX], fp[64];
    path_in(m1, sizeof m1, f->dir, "m1.pem");
    assert_int_equal(tf_users_add(o, "alice", "read", NULL, f->tok_alice,
                                  sizeof f->tok_alice, why, sizeof why),
                     TF_OK);
    int rc = tf_users_add_cert(o, "m1", "write", "machines/m1", m1, fp, sizeof fp, why,
                               sizeof why);
    if (rc != TF_OK)
        print_error("tf_users_add_cert: %s\n", why);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(strncmp(fp, "SHA256:", 7), 0);
    tf_options_free(o);

    f->sopt = users_opts(f);
    assert_int_equal(tf_options_set(f->sopt, TF_OPT_TLS, 1), TF_OK);
    assert_int_equal(tf_options_set_string(f->sopt, TF_SOPT_STATE_DIR, f->state), TF_OK);
    assert_int_equal(tf_options_set(f->sopt, TF_OPT_WORKERS, 1), TF_OK);
    assert_int_equal(tf_options_set_log(f->sopt, on_log, f), TF_OK);
    tu_server_start(&f->srv, f->sopt);
    assert_int_equal(tf_server_fingerprint(f->srv.srv, f->fp, sizeof f->fp), TF_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_server_stop(&f->srv, 1);
    tf_options_free(f->sopt);
    tu_rm_rf(f->dir);
    pthread_mutex_destroy(&f->log_lock);
    free(f);
    return 0;
}

/* A pinned TLS client presenting cert/key (NULL: none) from the fixture's
   directory, and user/token (NULL: none). */
static int machine_connect(fixture *f, const char *cert, const char *key, const char *user,
                           const char *token, tf_client **c, char *why, size_t why_len)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_TLS, 1), TF_OK);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_PIN, f->fp), TF_OK);
    char cp[PATH_MAX], kp[PATH_MAX];
    if (cert) {
        path_in(cp, sizeof cp, f->dir, cert);
        path_in(kp, sizeof kp, f->dir, key);
        assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_CLIENT_CERT, cp), TF_OK);
        assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_CLIENT_KEY, kp), TF_OK);
    }
    if (user)
        assert_int_equal(tf_options_set_string(o, TF_SOPT_USER, user), TF_OK);
    if (token)
        assert_int_equal(tf_options_set_string(o, TF_SOPT_TOKEN, token), TF_OK);
    *c = NULL;
    int rc = tf_connect_ex(c, "127.0.0.1", f->srv.port, o, why, why_len);
    tf_options_free(o);
    return rc;
}

/* m1's certificate makes the connection user m1: no token, write access,
   confined to machines/m1, named in the log. */
static void test_mtls_machine_is_its_user(void **state)
{
    fixture *f = *state;
    tf_client *c;
    char why[512];
    int rc = machine_connect(f, "m1.pem", "m1.key", NULL, NULL, &c, why, sizeof why);
    if (rc != TF_OK)
        print_error("connect: %s\n", why);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(tf_put_mem(c, "beep", 4, "reading.txt"), TF_OK);
    char p[PATH_MAX];
    path_in(p, sizeof p, f->srv.root, "machines/m1/reading.txt");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    path_in(p, sizeof p, f->srv.root, "reading.txt");
    assert_int_equal(stat(p, &st), -1); /* confined */
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(tf_get_mem(c, "reading.txt", &data, &len), TF_OK);
    assert_int_equal(len, 4);
    free(data);
    tf_close(c);
    assert_true(log_has(f, "auth user=m1 SHA256:"));
    assert_true(log_has(f, "put user=m1 reading.txt TF_OK"));
}

/* m2's certificate is nobody's: the token login is still required, and a
   token user may use it with that certificate. */
static void test_mtls_unknown_cert_needs_a_token(void **state)
{
    fixture *f = *state;
    tf_client *c;
    char why[512];
    assert_int_equal(
        machine_connect(f, "m2.pem", "m2.key", NULL, NULL, &c, why, sizeof why), TF_EACCES);
    assert_non_null(strstr(why, "authentication required"));
    assert_non_null(strstr(why, "maps the client certificate to no user"));
    int rc =
        machine_connect(f, "m2.pem", "m2.key", "alice", f->tok_alice, &c, why, sizeof why);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(tf_put_mem(c, "x", 1, "x.txt"), TF_EACCES); /* alice reads only */
    tf_close(c);
    /* And a machine's user cannot be had with a token (it has none). */
    assert_int_equal(machine_connect(f, NULL, NULL, "m1", "", &c, why, sizeof why),
                     TF_EACCES);
    assert_int_equal(machine_connect(f, NULL, NULL, "m1", "-", &c, why, sizeof why),
                     TF_EACCES);
}

/* m1's certificate with m2's key: refused before anything is sent (the
   key does not match the certificate; TLS could not prove it either). */
static void test_mtls_cert_without_its_key_is_refused(void **state)
{
    fixture *f = *state;
    tf_client *c;
    char why[512];
    int rc = machine_connect(f, "m1.pem", "m2.key", NULL, NULL, &c, why, sizeof why);
    print_message("m1.pem with m2.key: %s (%s)\n", tf_errname(rc), why);
    assert_true(rc < 0);
    assert_null(c);
    assert_false(log_has(f, "user=m1"));
}

/* ---- a request right behind AUTH, in the same TLS record -------------- */

static void tls_write_all(tf__tls *t, const void *buf, size_t len)
{
    tf__err e = {{0}};
    const uint8_t *p = buf;
    while (len > 0) {
        size_t n = 0;
        assert_int_equal(tf__tls_write(t, p, len, &n, &e), TF_OK);
        p += n;
        len -= n;
    }
}

/* Reads exactly len bytes within 3 s; 0, or -1. */
static int tls_read_all(tf__tls *t, int fd, void *buf, size_t len)
{
    tf__err e = {{0}};
    uint8_t *p = buf;
    int64_t end = tu_now_ms() + 3000;
    while (len > 0) {
        if (!tf__tls_pending(t)) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int left = (int)(end - tu_now_ms());
            if (left <= 0 || poll(&pfd, 1, left) != 1)
                return -1;
        }
        size_t n = 0;
        int r = tf__tls_read(t, p, len, &n, &e);
        if (r == TF__TLS_WANT_READ)
            continue;
        if (r != TF_OK)
            return -1;
        p += n;
        len -= n;
    }
    return 0;
}

/* The response head's status (and its message skipped), or -1. */
static int tls_response(tf__tls *t, int fd, uint64_t *size)
{
    uint8_t in[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    if (tls_read_all(t, fd, in, TF_WIRE_RESPONSE_SIZE) != 0)
        return -1;
    tf_wire_response r;
    long n = tf__wire_decode_response(in, TF_WIRE_RESPONSE_SIZE, &r);
    if (n == TF_WIRE_NEED_MORE) {
        if (tls_read_all(t, fd, in + TF_WIRE_RESPONSE_SIZE, r.message_len) != 0)
            return -1;
        n = tf__wire_decode_response(in, TF_WIRE_RESPONSE_SIZE + r.message_len, &r);
    }
    assert_true(n > 0);
    if (size)
        *size = r.size;
    return r.status;
}

/* Hello, AUTH and a GET in one TLS record: the server takes the hello and
   the AUTH frame from it, checks the token on its pool, and the GET waits
   decrypted inside TLS, where epoll does not see it. It must be answered
   (before the fix it never was: the client waited for ever). */
static void test_mtls_request_pipelined_behind_auth(void **state)
{
    fixture *f = *state;
    /* A name long enough that the GET cannot fit the session's first
       read with the hello and the AUTH frame. */
    static const char name[] = "a-reading-with-a-rather-long-name-0123456789.txt";
    char p[PATH_MAX];
    path_in(p, sizeof p, f->srv.root, name);
    tu_write_file(p, "twelve bytes", 12);

    tf__err e = {{0}};
    tf__tls_client_conf conf = {.pin = f->fp};
    tf__tls_ctx *ctx = NULL;
    assert_int_equal(tf__tls_client_ctx_new(&ctx, &conf, &e), TF_OK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(f->srv.port))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    tf__tls *t = NULL;
    assert_int_equal(tf__tls_client_new(&t, ctx, fd, "127.0.0.1", NULL, &e), TF_OK);
    int r;
    while ((r = tf__tls_handshake(t, &e)) == TF__TLS_WANT_READ || r == TF__TLS_WANT_WRITE)
        ;
    assert_int_equal(r, TF_OK);

    uint8_t out[512];
    size_t at = 0;
    tf_wire_client_hello ch = {1, 1, TF_FEATURE_AUTH};
    at += (size_t)tf__wire_encode_client_hello(out, sizeof out, &ch);
    tf_wire_auth a = {"alice", 5, f->tok_alice, TF_TOKEN_LEN};
    long n = tf__wire_encode_auth(out + at, sizeof out - at, &a);
    assert_true(n > 0);
    at += (size_t)n;
    tf_wire_request q = {.op = TF_OP_GET, .name = name, .name_len = (uint16_t)strlen(name)};
    n = tf__wire_encode_request(out + at, sizeof out - at, &q);
    assert_true(n > 0);
    at += (size_t)n;
    assert_true(at > 96 + 16); /* past the session's small input buffer */
    tls_write_all(t, out, at); /* one record */

    uint8_t hello[TF_WIRE_SERVER_HELLO_SIZE];
    assert_int_equal(tls_read_all(t, fd, hello, sizeof hello), 0);
    assert_int_equal(tls_response(t, fd, NULL), 0); /* AUTH */
    uint64_t size = 0;
    int st = tls_response(t, fd, &size); /* the GET behind it */
    assert_int_equal(st, 0);
    assert_int_equal(size, 12);
    char body[12];
    assert_int_equal(tls_read_all(t, fd, body, sizeof body), 0);
    assert_memory_equal(body, "twelve bytes", 12);
    tf__tls_free(t);
    close(fd);
    tf__tls_ctx_free(ctx);
}

int main(int argc, char **argv)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_mtls_machine_is_its_user),
        T(test_mtls_unknown_cert_needs_a_token),
        T(test_mtls_cert_without_its_key_is_refused),
        T(test_mtls_request_pipelined_behind_auth),
    };
#undef T
    return TU_RUN_GROUP("mtls", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
