/*
 * test_tls_loopback.c - the library over TLS (TF_OPT_TLS), end to end: a
 * real server on 127.0.0.1 port 0 with its identity in a temporary state
 * directory, real clients. get / put / list / get_many through TLS (the
 * server sends files through the pread + SSL_write fallback here: this
 * kernel has no kTLS), the ways the client checks the server (pin,
 * known_hosts with TOFU and the loud mismatch, the host-check callback, a
 * CA with host-name verification), plaintext against TLS both ways,
 * session resumption, a handshake that never comes, a capture relay that
 * must see none of a file's bytes, and openssl s_client against the
 * server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client_internal.h"
#include "tcpfile.h"
#include "testutil.h"
#include "tls.h"
#include "transport_tls.h"

#define BIG ((size_t)3 << 20)

typedef struct fixture {
    char dir[PATH_MAX];  /* everything of the test: state, known_hosts, files */
    char state[PATH_MAX];
    char kh[PATH_MAX];
    test_server srv;
    tf_options *sopt;
    char fp[64];
    pthread_mutex_t log_lock;
    char log[8192];
} fixture;

static void path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    assert_true(snprintf(buf, cap, "%s/%s", dir, name) < (int)cap);
}

static void on_log(void *user, const tf_request_log *entry)
{
    fixture *f = user;
    pthread_mutex_lock(&f->log_lock);
    size_t used = strlen(f->log);
    snprintf(f->log + used, sizeof f->log - used, "%s %s %s\n", entry->op,
             tf_errname(entry->result), entry->message ? entry->message : "");
    pthread_mutex_unlock(&f->log_lock);
}

/* Whether the server's log holds text, waiting up to 2 s for it. */
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

static tf_options *server_options(fixture *f, int tls)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_TLS, tls), TF_OK);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_STATE_DIR, f->state), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_WORKERS, 2), TF_OK);
    assert_int_equal(tf_options_set_log(o, on_log, f), TF_OK);
    return o;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    pthread_mutex_init(&f->log_lock, NULL);
    tu_mkdtemp(f->dir, sizeof f->dir);
    path_in(f->state, sizeof f->state, f->dir, "state");
    path_in(f->kh, sizeof f->kh, f->dir, "known_hosts");
    f->sopt = server_options(f, 1);
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

/* Client options: TLS, known_hosts in the test's directory. */
static tf_options *client_options(fixture *f)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_TLS, 1), TF_OK);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_KNOWN_HOSTS, f->kh), TF_OK);
    return o;
}

static tf_options *pinned(fixture *f)
{
    tf_options *o = client_options(f);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_PIN, f->fp), TF_OK);
    return o;
}

static int try_connect(tf_client **c, const char *host, const char *port, const tf_options *o,
                       char *err, size_t cap)
{
    return tf_connect_ex(c, host, port, o, err, cap);
}

/* ---- data ------------------------------------------------------------------ */

static void test_tlsloop_get_put_list(void **state)
{
    fixture *f = *state;
    assert_non_null(strstr(f->fp, "SHA256:"));
    tf_options *o = pinned(f);
    tf_client *c = tu_connect(&f->srv, o);
    assert_non_null(tf__conn_tls_of(&c->s.conn));
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    tu_fill(big, BIG, 13);
    assert_int_equal(tf_put_mem(c, "small", 5, "a.txt"), TF_OK);
    assert_int_equal(tf_put_mem(c, big, BIG, "big.bin"), TF_OK);
    /* The big get goes through the server's sendfile, which over TLS
       without kTLS is the pread + SSL_write fallback. */
    void *got = NULL;
    size_t len = 0;
    assert_int_equal(tf_get_mem(c, "big.bin", &got, &len), TF_OK);
    assert_int_equal(len, BIG);
    assert_memory_equal(got, big, BIG);
    tf_free(got);
    /* Many small requests on the connection, each answered in one record. */
    for (int i = 0; i < 50; i++) {
        assert_int_equal(tf_get_mem(c, "a.txt", &got, &len), TF_OK);
        assert_int_equal(len, 5);
        assert_memory_equal(got, "small", 5);
        tf_free(got);
    }
    /* A put from a file goes through the client's sendfile: over TLS
       without kTLS (this kernel), the pread + SSL_write fallback. */
    assert_false(tf__tls_ktls_send(tf__conn_tls_of(&c->s.conn)));
    char local[PATH_MAX], back[PATH_MAX];
    path_in(local, sizeof local, f->dir, "local.bin");
    path_in(back, sizeof back, f->dir, "back.bin");
    tu_write_file(local, big, BIG);
    assert_int_equal(tf_put(c, local, "file.bin"), TF_OK);
    assert_int_equal(tf_get(c, "file.bin", back), TF_OK);
    size_t blen = 0;
    uint8_t *b = tu_read_file(back, &blen);
    assert_non_null(b);
    assert_int_equal(blen, BIG);
    assert_memory_equal(b, big, BIG);
    free(b);
    tf_listing *l = NULL;
    assert_int_equal(tf_list(c, &l), TF_OK);
    assert_int_equal(tf_listing_count(l), 3);
    tf_listing_free(l);
    /* Pipelined gets: several responses in one TLS record, read from what
       the server decrypted but epoll does not see. */
    char p1[PATH_MAX], p2[PATH_MAX];
    path_in(p1, sizeof p1, f->dir, "g1");
    path_in(p2, sizeof p2, f->dir, "g2");
    tf_get_item items[3] = {{.name = "a.txt", .local_path = p1, .fd = -1},
                            {.name = "big.bin", .local_path = p2, .fd = -1},
                            {.name = "nope", .local_path = p1, .fd = -1}};
    int rc = tf_get_many(c, items, 3);
    assert_int_equal(items[0].result, TF_OK);
    assert_int_equal(items[1].result, TF_OK);
    assert_int_equal(items[2].result, TF_ENOENT);
    assert_true(rc != TF_OK);
    assert_int_equal(tu_file_size(p2), (long long)BIG);
    tf_close(c);
    free(big);
    tf_options_free(o);
}

/* The server's pipelined input: many requests written at once land in one
   TLS record; the server must answer all of them though epoll reports the
   socket only once. */
static void test_tlsloop_server_reads_pending_records(void **state)
{
    fixture *f = *state;
    tf_options *o = pinned(f);
    tf_client *c = tu_connect(&f->srv, o);
    assert_int_equal(tf_put_mem(c, "x", 1, "p.txt"), TF_OK);
    enum { N = 40 };
    tf_get_item items[N];
    int fds[N];
    memset(items, 0, sizeof items);
    for (int i = 0; i < N; i++) {
        fds[i] = open("/dev/null", O_WRONLY);
        items[i] = (tf_get_item){.name = "p.txt", .fd = fds[i]};
    }
    assert_int_equal(tf_get_many(c, items, N), TF_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(items[i].result, TF_OK);
        close(fds[i]);
    }
    tf_close(c);
    tf_options_free(o);
}

static void test_tlsloop_resumption(void **state)
{
    fixture *f = *state;
    tf_options *o = pinned(f);
    tf_client *c = tu_connect(&f->srv, o);
    assert_false(tf__tls_resumed(tf__conn_tls_of(&c->s.conn)));
    tf_close(c);
    /* Same options: the context and its ticket are shared. */
    c = tu_connect(&f->srv, o);
    assert_true(tf__tls_resumed(tf__conn_tls_of(&c->s.conn)));
    assert_int_equal(tf_put_mem(c, "r", 1, "r.txt"), TF_OK);
    tf_close(c);
    tf_options_free(o);
}

/* ---- identity ---------------------------------------------------------- */

static void test_tlsloop_wrong_pin_refused(void **state)
{
    fixture *f = *state;
    tf_options *o = client_options(f);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_PIN,
                                           "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                     TF_OK);
    tf_client *c = NULL;
    char err[512];
    assert_int_equal(try_connect(&c, "127.0.0.1", f->srv.port, o, err, sizeof err),
                     TF_EPEERVERIFY);
    assert_non_null(strstr(err, f->fp));
    assert_null(c);
    /* The server saw a handshake abandoned, no hello: no request logged. */
    tf_options_free(o);
}

static void test_tlsloop_unknown_refused_then_accept_new(void **state)
{
    fixture *f = *state;
    tf_options *o = client_options(f);
    tf_client *c = NULL;
    char err[512];
    assert_int_equal(try_connect(&c, "127.0.0.1", f->srv.port, o, err, sizeof err),
                     TF_EPEERVERIFY);
    assert_non_null(strstr(err, "--accept-new"));
    assert_non_null(strstr(err, f->fp));
    assert_int_equal(tu_file_size(f->kh), -1); /* nothing recorded */
    assert_int_equal(tf_options_set(o, TF_OPT_TLS_ACCEPT_NEW, 1), TF_OK);
    assert_int_equal(try_connect(&c, "127.0.0.1", f->srv.port, o, err, sizeof err), TF_OK);
    tf_close(c);
    size_t len;
    char *kh = (char *)tu_read_file(f->kh, &len);
    assert_non_null(kh);
    assert_non_null(strstr(kh, f->fp));
    free(kh);
    /* Known now: no accept-new needed. */
    assert_int_equal(tf_options_set(o, TF_OPT_TLS_ACCEPT_NEW, 0), TF_OK);
    assert_int_equal(try_connect(&c, "127.0.0.1", f->srv.port, o, err, sizeof err), TF_OK);
    tf_close(c);
    tf_options_free(o);
}

/* A server with another identity at an address known_hosts has a key for:
   what a man in the middle looks like. */
static void test_tlsloop_changed_identity_refused_loudly(void **state)
{
    fixture *f = *state;
    char line[256];
    snprintf(line, sizeof line, "# a comment\n127.0.0.1:%s %s\n", f->srv.port,
             "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    tu_write_file(f->kh, line, strlen(line));
    tf_options *o = client_options(f);
    assert_int_equal(tf_options_set(o, TF_OPT_TLS_ACCEPT_NEW, 1), TF_OK);
    tf_client *c = NULL;
    char err[512];
    assert_int_equal(try_connect(&c, "127.0.0.1", f->srv.port, o, err, sizeof err),
                     TF_EPEERVERIFY);
    assert_non_null(strstr(err, "WARNING: THE SERVER'S IDENTITY HAS CHANGED"));
    assert_non_null(strstr(err, "eavesdropping"));
    assert_non_null(strstr(err, f->fp));
    assert_non_null(strstr(err, "remove line 2 of"));
    /* Nothing sent: the server never saw a hello (no request, no log). */
    tu_sleep_ms(100);
    pthread_mutex_lock(&f->log_lock);
    assert_null(strstr(f->log, "get"));
    pthread_mutex_unlock(&f->log_lock);
    /* And the record was not overwritten. */
    size_t len;
    char *kh = (char *)tu_read_file(f->kh, &len);
    assert_null(strstr(kh, f->fp));
    free(kh);
    tf_options_free(o);
}

typedef struct asked {
    int answer;
    int calls;
    char fp[64];
    int port;
} asked;

static int ask(void *user, const char *host, int port, const char *fp)
{
    asked *a = user;
    (void)host;
    a->calls++;
    a->port = port;
    snprintf(a->fp, sizeof a->fp, "%s", fp);
    return a->answer;
}

static void test_tlsloop_host_check_callback(void **state)
{
    fixture *f = *state;
    tf_options *o = client_options(f);
    asked a = {.answer = 0};
    assert_int_equal(tf_options_set_host_check(o, ask, &a), TF_OK);
    tf_client *c = NULL;
    char err[512];
    assert_int_equal(try_connect(&c, "127.0.0.1", f->srv.port, o, err, sizeof err),
                     TF_EPEERVERIFY);
    assert_int_equal(a.calls, 1);
    assert_string_equal(a.fp, f->fp);
    assert_int_equal(a.port, atoi(f->srv.port));
    a.answer = 1;
    assert_int_equal(try_connect(&c, "127.0.0.1", f->srv.port, o, err, sizeof err), TF_OK);
    tf_close(c);
    assert_int_equal(a.calls, 2);
    /* Recorded: not asked again. */
    tf_options *fresh = client_options(f);
    assert_int_equal(tf_options_set_host_check(fresh, ask, &a), TF_OK);
    assert_int_equal(try_connect(&c, "127.0.0.1", f->srv.port, fresh, err, sizeof err), TF_OK);
    tf_close(c);
    assert_int_equal(a.calls, 2);
    tf_options_free(fresh);
    tf_options_free(o);
}

/* A server certificate from a CA, made with the openssl command line: the
   right CA and the right name work; another CA or another name do not. */
static void test_tlsloop_ca_and_host_name(void **state)
{
    fixture *f = *state;
    const char *d = f->dir;
    /* The certificate names "localhost": a bare chroot may have no
       /etc/hosts to resolve it, and then there is nothing to check. */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo("localhost", NULL, &hints, &ai) != 0) {
        print_message("skipped: \"localhost\" does not resolve here (no /etc/hosts?)\n");
        skip();
    }
    freeaddrinfo(ai);
    tu_make_server_cert(d, "localhost");
    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], other[PATH_MAX];
    path_in(cert, sizeof cert, d, "srv.pem");
    path_in(key, sizeof key, d, "srv.key");
    path_in(ca, sizeof ca, d, "ca.pem");
    path_in(other, sizeof other, d, "other.pem");
    tf_options *so = server_options(f, 1);
    assert_int_equal(tf_options_set_string(so, TF_SOPT_TLS_CERT, cert), TF_OK);
    assert_int_equal(tf_options_set_string(so, TF_SOPT_TLS_KEY, key), TF_OK);
    test_server s2;
    tu_server_start(&s2, so);

    tf_options *o = client_options(f);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_CA, ca), TF_OK);
    tf_client *c = NULL;
    char err[512];
    assert_int_equal(try_connect(&c, "localhost", s2.port, o, err, sizeof err), TF_OK);
    assert_int_equal(tf_put_mem(c, "ca", 2, "ca.txt"), TF_OK);
    tf_close(c);
    /* The certificate names localhost, not 127.0.0.1. */
    assert_int_equal(try_connect(&c, "127.0.0.1", s2.port, o, err, sizeof err),
                     TF_EPEERVERIFY);
    assert_non_null(strstr(err, "127.0.0.1"));
    tf_options *wrong = client_options(f);
    assert_int_equal(tf_options_set_string(wrong, TF_SOPT_TLS_CA, other), TF_OK);
    assert_int_equal(try_connect(&c, "localhost", s2.port, wrong, err, sizeof err),
                     TF_EPEERVERIFY);
    tf_options_free(wrong);
    tf_options_free(o);
    tu_server_stop(&s2, 1);
    tf_options_free(so);
}

/* ---- plaintext against TLS ------------------------------------------------ */

static void test_tlsloop_plaintext_client_tls_server(void **state)
{
    fixture *f = *state;
    tf_client *c = NULL;
    char err[512];
    int64_t t0 = tu_now_ms();
    int rc = try_connect(&c, "127.0.0.1", f->srv.port, NULL, err, sizeof err);
    assert_int_equal(rc, TF_EPROTO);
    assert_true(tu_now_ms() - t0 < 3000);
    assert_non_null(strstr(err, "this server requires TLS (the client has --plaintext)"));
    assert_null(strchr(err, '\n'));
    assert_true(log_has(f, "this server requires TLS (the client has --plaintext)"));
}

static void test_tlsloop_tls_client_plaintext_server(void **state)
{
    fixture *f = *state;
    tf_options *so = server_options(f, 0);
    test_server s2;
    tu_server_start(&s2, so);
    tf_options *o = pinned(f);
    tf_client *c = NULL;
    char err[512];
    int64_t t0 = tu_now_ms();
    int rc = try_connect(&c, "127.0.0.1", s2.port, o, err, sizeof err);
    assert_int_equal(rc, TF_EPROTO);
    assert_true(tu_now_ms() - t0 < 3000);
    assert_string_equal(err, "the server does not speak TLS (it runs with --plaintext)");
    assert_true(log_has(f, "a TLS client; this server runs --plaintext"));
    tf_options_free(o);
    tu_server_stop(&s2, 1);
    tf_options_free(so);
}

/* A full server's refusal is decided during the handshake and sent inside
   TLS once it is over (the session keeps it only until then). */
static void test_tlsloop_full_server_refuses_inside_tls(void **state)
{
    fixture *f = *state;
    tf_options *so = server_options(f, 1);
    assert_int_equal(tf_options_set(so, TF_OPT_MAX_CONNECTIONS, 1), TF_OK);
    test_server s2;
    tu_server_start(&s2, so);
    tf_options *o = pinned(f);
    tf_client *held = tu_connect(&s2, o);
    tf_client *c = NULL;
    char err[512];
    assert_int_equal(try_connect(&c, "127.0.0.1", s2.port, o, err, sizeof err), TF_EBUSY);
    assert_non_null(strstr(err, "the server is full (1 connection)"));
    assert_true(log_has(f, "TF_EBUSY the server is full (1 connection)"));
    tf_close(held);
    tf_options_free(o);
    tu_server_stop(&s2, 1);
    tf_options_free(so);
}

/* ---- handshake timeout ---------------------------------------------------- */

static int connect_raw(const char *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void test_tlsloop_silent_client_dropped(void **state)
{
    fixture *f = *state;
    tf_options *so = server_options(f, 1);
    assert_int_equal(tf_options_set(so, TF_OPT_WORKERS, 1), TF_OK);
    assert_int_equal(tf_options_set(so, TF_OPT_IO_TIMEOUT_MS, 300), TF_OK);
    test_server s2;
    tu_server_start(&s2, so);
    int silent = connect_raw(s2.port);
    /* The one worker serves others meanwhile. */
    tf_options *o = pinned(f);
    tf_client *c = NULL;
    char err[512];
    assert_int_equal(try_connect(&c, "127.0.0.1", s2.port, o, err, sizeof err), TF_OK);
    assert_int_equal(tf_put_mem(c, "x", 1, "x"), TF_OK);
    tf_close(c);
    /* And drops the silent one after the I/O timeout. */
    struct pollfd p = {.fd = silent, .events = POLLIN};
    int64_t t0 = tu_now_ms();
    assert_int_equal(poll(&p, 1, 3000), 1);
    char b;
    assert_true(recv(silent, &b, 1, 0) <= 0);
    assert_true(tu_now_ms() - t0 < 3000);
    close(silent);
    assert_true(log_has(f, "connect TF_ETIMEDOUT"));
    tf_options_free(o);
    tu_server_stop(&s2, 1);
    tf_options_free(so);
}

/* ---- a capture relay ------------------------------------------------------ */

typedef struct relay {
    int lfd;
    char port[16];
    const char *to;
    uint8_t *seen;
    size_t seen_len, seen_cap;
    pthread_t thread;
} relay;

static void record(relay *r, const uint8_t *p, size_t n)
{
    if (r->seen_len + n > r->seen_cap) {
        r->seen_cap = (r->seen_len + n) * 2;
        r->seen = realloc(r->seen, r->seen_cap);
        assert_non_null(r->seen);
    }
    memcpy(r->seen + r->seen_len, p, n);
    r->seen_len += n;
}

/* Relays one connection both ways, keeping every byte. */
static void *relay_main(void *arg)
{
    relay *r = arg;
    int a = accept(r->lfd, NULL, NULL);
    if (a < 0)
        return NULL;
    int b = connect_raw(r->to);
    struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    uint8_t buf[65536];
    for (;;) {
        if (poll(p, 2, 5000) <= 0)
            break;
        int done = 0;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = recv(p[i].fd, buf, sizeof buf, 0);
            if (n <= 0) {
                done = 1;
                break;
            }
            record(r, buf, (size_t)n);
            for (ssize_t off = 0; off < n;) {
                ssize_t w = send(p[1 - i].fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
                if (w <= 0) {
                    done = 1;
                    break;
                }
                off += w;
            }
        }
        if (done)
            break;
    }
    close(a);
    close(b);
    return NULL;
}

static void test_tlsloop_capture_sees_no_content(void **state)
{
    fixture *f = *state;
    relay r = {.to = f->srv.port};
    r.lfd = tu_listen_loopback(r.port, sizeof r.port);
    assert_int_equal(pthread_create(&r.thread, NULL, relay_main, &r), 0);
    static const char secret[] = "THE-SECRET-CONTENT-0123456789-never-on-the-wire";
    tf_options *o = pinned(f);
    tf_client *c = NULL;
    char err[512];
    assert_int_equal(try_connect(&c, "127.0.0.1", r.port, o, err, sizeof err), TF_OK);
    assert_int_equal(tf_put_mem(c, secret, sizeof secret - 1, "secret.txt"), TF_OK);
    void *got;
    size_t len;
    assert_int_equal(tf_get_mem(c, "secret.txt", &got, &len), TF_OK);
    assert_memory_equal(got, secret, sizeof secret - 1);
    tf_free(got);
    tf_close(c);
    pthread_join(r.thread, NULL);
    close(r.lfd);
    assert_true(r.seen_len > 0);
    assert_null(memmem(r.seen, r.seen_len, "SECRET", 6));
    assert_null(memmem(r.seen, r.seen_len, "TCPF", 4)); /* not even the hellos */
    assert_null(memmem(r.seen, r.seen_len, "secret.txt", 10));
    free(r.seen);
    tf_options_free(o);
}

/* ---- openssl s_client ------------------------------------------------------- */

static void s_client(fixture *f, const char *version, char *out, size_t cap, int *status)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl s_client -connect 127.0.0.1:%s %s </dev/null 2>&1", f->srv.port,
             version);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t used = fread(out, 1, cap - 1, p);
    out[used] = '\0';
    *status = pclose(p);
}

static void test_tlsloop_openssl_s_client(void **state)
{
    fixture *f = *state;
    static char out[65536];
    int st;
    s_client(f, "-tls1_3", out, sizeof out, &st);
    if (!strstr(out, "TLSv1.3"))
        print_error("s_client said:\n%s\n", out);
    assert_non_null(strstr(out, "New, TLSv1.3"));
    assert_non_null(strstr(out, "CN = tcpfile"));
    s_client(f, "-tls1_2", out, sizeof out, &st);
    assert_null(strstr(out, "New, TLSv1.2"));
    assert_true(!WIFEXITED(st) || WEXITSTATUS(st) != 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* The server's secrets are never servable: a state directory (even one not
   made yet), a key file or a users file inside the root fails the open. */
static void tlsloop_secrets_inside_root_refused(void **state)
{
    fixture *f = *state;
    char err[512], sub[PATH_MAX], keyfile[PATH_MAX], users[PATH_MAX];
    tf_server *s = NULL;
    tf_options *o = server_options(f, 1);
    /* f->state is f->dir/state: serving f->dir would serve the key. */
    assert_int_equal(tf_server_open_ex(&s, "127.0.0.1", "0", f->dir, o, err, sizeof err),
                     TF_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err, "inside the served directory"));
    /* Not made yet, deeper, still refused. */
    path_in(sub, sizeof sub, f->dir, "new/state");
    assert_int_equal(tf_options_set_string(o, TF_SOPT_STATE_DIR, sub), TF_OK);
    assert_int_equal(tf_server_open_ex(&s, "127.0.0.1", "0", f->dir, o, err, sizeof err),
                     TF_EINVAL);
    assert_null(s);
    /* A key file given explicitly (it need not be valid: refused first). */
    path_in(keyfile, sizeof keyfile, f->dir, "key.pem");
    assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_CERT, keyfile), TF_OK);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_TLS_KEY, keyfile), TF_OK);
    assert_int_equal(tf_server_open_ex(&s, "127.0.0.1", "0", f->dir, o, err, sizeof err),
                     TF_EINVAL);
    assert_non_null(strstr(err, "TLS key"));
    tf_options_free(o);
    /* A users file, with or without TLS. */
    o = server_options(f, 0);
    path_in(users, sizeof users, f->dir, "users");
    assert_int_equal(tf_options_set_string(o, TF_SOPT_USERS_FILE, users), TF_OK);
    assert_int_equal(tf_server_open_ex(&s, "127.0.0.1", "0", f->dir, o, err, sizeof err),
                     TF_EINVAL);
    assert_non_null(strstr(err, "users file"));
    tf_options_free(o);
    /* Beside the root is fine: serve f->dir/files with the state in f->dir/state. */
    path_in(sub, sizeof sub, f->dir, "files");
    assert_int_equal(mkdir(sub, 0700), 0);
    o = server_options(f, 1);
    assert_int_equal(tf_server_open_ex(&s, "127.0.0.1", "0", sub, o, err, sizeof err), TF_OK);
    tf_server_close(s);
    tf_options_free(o);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(tlsloop_secrets_inside_root_refused),
        T(test_tlsloop_get_put_list),
        T(test_tlsloop_server_reads_pending_records),
        T(test_tlsloop_resumption),
        T(test_tlsloop_wrong_pin_refused),
        T(test_tlsloop_unknown_refused_then_accept_new),
        T(test_tlsloop_changed_identity_refused_loudly),
        T(test_tlsloop_host_check_callback),
        T(test_tlsloop_ca_and_host_name),
        T(test_tlsloop_plaintext_client_tls_server),
        T(test_tlsloop_tls_client_plaintext_server),
        T(test_tlsloop_full_server_refuses_inside_tls),
        T(test_tlsloop_silent_client_dropped),
        T(test_tlsloop_capture_sees_no_content),
        T(test_tlsloop_openssl_s_client),
    };
    return TU_RUN_GROUP("tls_loopback", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
