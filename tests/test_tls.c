/*
 * test_tls.c - one TLS connection (libtcpfile/tls.c): non-blocking
 * handshakes over socketpairs driven from one thread, data both ways, a
 * 1 MiB file through the sendfile fallback, the three ways a client checks
 * the server (pin, CA + host name, a known-hosts hook), TLS 1.2 refused,
 * plaintext tcpfile peers recognised on both sides, resumption, truncation,
 * no SIGPIPE from a peer that has gone, and interoperability with the
 * openssl command line (s_client).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "internal.h"
#include "known_hosts.h"
#include "testutil.h"
#include "tls.h"
#include "tls_identity.h"
#include "wire.h"

typedef struct fixture {
    char dir[PATH_MAX];
    tf__tls_identity *a, *b; /* two server identities */
    tf__tls_ctx *server_a;
} fixture;

static void path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    assert_true(snprintf(buf, cap, "%s/%s", dir, name) < (int)cap);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    tu_mkdtemp(f->dir, sizeof f->dir);
    char a[PATH_MAX], b[PATH_MAX];
    path_in(a, sizeof a, f->dir, "a");
    path_in(b, sizeof b, f->dir, "b");
    tf__err e = {{0}};
    assert_int_equal(tf__tls_identity_ensure(&f->a, a, "a.example", NULL, &e), TF_OK);
    assert_int_equal(tf__tls_identity_ensure(&f->b, b, "b.example", NULL, &e), TF_OK);
    assert_int_equal(tf__tls_server_ctx_new(&f->server_a, f->a, &e), TF_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tf__tls_ctx_free(f->server_a);
    tf__tls_identity_free(f->a);
    tf__tls_identity_free(f->b);
    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static void nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    nonblocking(sv[0]);
    nonblocking(sv[1]);
}

/* Alternates both handshakes until each is done or failed (a side left
   wanting to read after its peer failed stays WANT_READ). */
static void pump(tf__tls *s, tf__tls *c, int *rs, int *rc, tf__err *es, tf__err *ec)
{
    *rs = *rc = TF__TLS_WANT_READ;
    int sdone = 0, cdone = 0;
    for (int i = 0; i < 200 && (!sdone || !cdone); i++) {
        if (!cdone && (*rc = tf__tls_handshake(c, ec)) <= 0)
            cdone = 1;
        if (!sdone && (*rs = tf__tls_handshake(s, es)) <= 0)
            sdone = 1;
    }
}

typedef struct conn {
    int sv[2]; /* [0] server end, [1] client end */
    tf__tls *s, *c;
    tf__err es, ec;
    int rs, rc;
} conn;

static void conn_open(conn *k, tf__tls_ctx *sctx, tf__tls_ctx *cctx, const char *host,
                      void *user)
{
    memset(k, 0, sizeof *k);
    pair(k->sv);
    assert_int_equal(tf__tls_server_new(&k->s, sctx, k->sv[0], &k->es), TF_OK);
    assert_int_equal(tf__tls_client_new(&k->c, cctx, k->sv[1], host, user, &k->ec), TF_OK);
    pump(k->s, k->c, &k->rs, &k->rc, &k->es, &k->ec);
}

static void conn_close(conn *k)
{
    tf__tls_free(k->s);
    tf__tls_free(k->c);
    close(k->sv[0]);
    close(k->sv[1]);
}

static tf__tls_ctx *client_pin(const char *pin)
{
    tf__tls_client_conf conf = {.pin = pin};
    tf__tls_ctx *c = NULL;
    tf__err e = {{0}};
    assert_int_equal(tf__tls_client_ctx_new(&c, &conf, &e), TF_OK);
    return c;
}

/* Reads exactly len bytes from c, writing nothing (the peer has queued
   what it sends). */
static void read_all(tf__tls *c, uint8_t *buf, size_t len)
{
    size_t got = 0;
    for (int spins = 0; got < len && spins < 100000; spins++) {
        size_t n;
        tf__err e = {{0}};
        int r = tf__tls_read(c, buf + got, len - got, &n, &e);
        if (r == TF_OK)
            got += n;
        else if (r != TF__TLS_WANT_READ)
            fail_msg("read: %d %s", r, e.msg);
    }
    assert_int_equal(got, len);
}

static void test_tls_handshake_nonblocking_round_trip(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    conn k;
    conn_open(&k, f->server_a, cctx, "a.example", NULL);
    assert_int_equal(k.rs, TF_OK);
    assert_int_equal(k.rc, TF_OK);
    char desc[128];
    tf__tls_describe(k.c, desc, sizeof desc);
    assert_non_null(strstr(desc, "TLSv1.3"));
    assert_int_equal(tf__tls_ktls_send(k.s), 0); /* no kTLS on this machine's kernel */
    assert_false(tf__tls_resumed(k.c));

    /* A header and a payload in one writev; read back at the server. */
    uint8_t hdr[8] = {'T', 'C', 'P', 'F', 0, 1, 2, 3};
    const char *payload = "a small payload";
    struct iovec iov[3] = {{hdr, sizeof hdr}, {NULL, 0}, {(void *)payload, strlen(payload)}};
    size_t n;
    assert_int_equal(tf__tls_writev(k.c, iov, 3, &n, &k.ec), TF_OK);
    assert_int_equal(n, sizeof hdr + strlen(payload));
    uint8_t in[64];
    read_all(k.s, in, n);
    assert_memory_equal(in, hdr, sizeof hdr);
    assert_memory_equal(in + sizeof hdr, payload, strlen(payload));

    /* 100 KB back, in writes that may each stop after a record; the client
       reads between them (socket buffers are finite). */
    size_t size = 100 * 1000;
    uint8_t *out = malloc(size), *back = malloc(size);
    assert_non_null(out);
    assert_non_null(back);
    tu_fill(out, size, 7);
    size_t sent = 0, got = 0;
    for (int spins = 0; got < size && spins < 100000; spins++) {
        if (sent < size) {
            int r = tf__tls_write(k.s, out + sent, size - sent, &n, &k.es);
            if (r == TF_OK)
                sent += n;
            else
                assert_int_equal(r, TF__TLS_WANT_WRITE);
        }
        int r = tf__tls_read(k.c, back + got, size - got, &n, &k.ec);
        if (r == TF_OK)
            got += n;
        else
            assert_int_equal(r, TF__TLS_WANT_READ);
    }
    assert_int_equal(got, size);
    assert_memory_equal(out, back, size);
    free(out);
    free(back);

    /* close_notify: the client reads a clean end. */
    assert_int_equal(tf__tls_shutdown(k.s, &k.es), TF_OK);
    int r = TF__TLS_WANT_READ;
    for (int i = 0; i < 100 && r == TF__TLS_WANT_READ; i++)
        r = tf__tls_read(k.c, in, sizeof in, &n, &k.ec);
    assert_int_equal(r, TF__TLS_EOF);
    conn_close(&k);
    tf__tls_ctx_free(cctx);
}

static void test_tls_sendfile_fallback_1mib(void **state)
{
    fixture *f = *state;
    size_t size = 1024 * 1024 + 123;
    uint8_t *data = malloc(size), *back = malloc(size);
    assert_non_null(data);
    assert_non_null(back);
    tu_fill(data, size, 42);
    char path[PATH_MAX];
    path_in(path, sizeof path, f->dir, "file.bin");
    tu_write_file(path, data, size);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);

    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    conn k;
    conn_open(&k, f->server_a, cctx, "a.example", NULL);
    assert_int_equal(k.rs, TF_OK);
    assert_int_equal(k.rc, TF_OK);
    assert_int_equal(tf__tls_ktls_send(k.s), 0);

    size_t off = 0, got = 0, n;
    int blocked = 0;
    for (int spins = 0; got < size && spins < 1000000; spins++) {
        /* The server sends until the socket is full; after WANT_WRITE the
           same offset is offered again once the client has read, as an
           event loop does when the socket turns writable. */
        while (off < size) {
            int r = tf__tls_sendfile(k.s, fd, (off_t)off, size - off, &n, &k.es);
            if (r == TF_OK) {
                assert_true(n > 0 && n <= size - off);
                off += n;
            } else if (r == TF__TLS_WANT_WRITE) {
                blocked++;
                break;
            } else {
                fail_msg("sendfile: %d %s", r, k.es.msg);
            }
        }
        int r = tf__tls_read(k.c, back + got, size - got, &n, &k.ec);
        if (r == TF_OK)
            got += n;
        else
            assert_int_equal(r, TF__TLS_WANT_READ);
    }
    assert_int_equal(got, size);
    assert_memory_equal(data, back, size);
    /* The socket filled up at least once: the retry path ran. */
    assert_true(blocked > 0);

    /* Past the file's end: the file's fault, TF_EIO. */
    int r = tf__tls_sendfile(k.s, fd, (off_t)size - 10, 100, &n, &k.es);
    assert_int_equal(r, TF_EIO);
    assert_non_null(strstr(k.es.msg, "file ends"));
    conn_close(&k);
    tf__tls_ctx_free(cctx);
    close(fd);
    free(data);
    free(back);
}

/* A bulk reader (the blocking client's connection): one read takes every
   record already received, not one record of 16 KiB; and records read
   ahead but not decrypted yet count as pending, since epoll cannot see
   them. Fails with one record per read, or with SSL_pending alone. */
static void test_tls_bulk_reads_take_every_record(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    conn k;
    memset(&k, 0, sizeof k);
    pair(k.sv);
    assert_int_equal(tf__tls_server_new(&k.s, f->server_a, k.sv[0], &k.es), TF_OK);
    assert_int_equal(tf__tls_client_new(&k.c, cctx, k.sv[1], "a.example", NULL, &k.ec), TF_OK);
    tf__tls_bulk_reads(k.c);
    pump(k.s, k.c, &k.rs, &k.rc, &k.es, &k.ec);
    assert_int_equal(k.rs, TF_OK);
    assert_int_equal(k.rc, TF_OK);

    enum { RECORDS = 4, SIZE = RECORDS * TF__TLS_RECORD };
    static uint8_t data[SIZE], back[SIZE];
    tu_fill(data, SIZE, 7);
    size_t off = 0, n;
    while (off < SIZE) { /* one record per write: partial writes are on */
        assert_int_equal(tf__tls_write(k.s, data + off, SIZE - off, &n, &k.es), TF_OK);
        off += n;
    }
    /* Exactly the first record: the other three wait, read ahead. */
    size_t got = 0;
    for (int i = 0; i < 1000 && got == 0; i++) {
        int r = tf__tls_read(k.c, back, TF__TLS_RECORD, &got, &k.ec);
        assert_true(r == TF_OK || r == TF__TLS_WANT_READ);
    }
    assert_int_equal(got, TF__TLS_RECORD);
    assert_true(tf__tls_pending(k.c) > 0);
    /* The rest in one call. */
    assert_int_equal(tf__tls_read(k.c, back + got, SIZE - got, &n, &k.ec), TF_OK);
    assert_int_equal(n, SIZE - got);
    assert_memory_equal(data, back, SIZE);
    assert_int_equal(tf__tls_pending(k.c), 0);
    conn_close(&k);
    tf__tls_ctx_free(cctx);
}

static void test_tls_pin_mismatch_refused(void **state)
{
    fixture *f = *state;
    /* The client expects b; the server is a. */
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->b));
    conn k;
    conn_open(&k, f->server_a, cctx, "a.example", NULL);
    assert_int_equal(k.rc, TF_EPEERVERIFY);
    assert_non_null(strstr(k.ec.msg, tf__tls_identity_fingerprint(f->a)));
    assert_non_null(strstr(k.ec.msg, "not the pinned one"));
    /* The server hears the client's alert. */
    assert_int_equal(k.rs, TF_EPROTO);
    /* Nothing more goes out on a rejected connection. */
    size_t n;
    assert_int_equal(tf__tls_write(k.c, "x", 1, &n, &k.ec), TF_ENET);
    assert_int_equal(tf__tls_shutdown(k.c, &k.ec), TF_OK);
    conn_close(&k);
    tf__tls_ctx_free(cctx);
}

typedef struct check_state {
    int calls;
    int answer;
    char host[64];
    char fp[TF__FP_SIZE];
} check_state;

static int check_cb(void *user, const char *host, const char *fingerprint, tf__err *e)
{
    check_state *cs = user;
    cs->calls++;
    snprintf(cs->host, sizeof cs->host, "%s", host);
    snprintf(cs->fp, sizeof cs->fp, "%s", fingerprint);
    if (cs->answer == TF_EPEERVERIFY)
        return tf__fail(e, TF_EPEERVERIFY, "REMOTE HOST IDENTIFICATION HAS CHANGED");
    if (cs->answer < 0)
        return tf__fail(e, cs->answer, "cannot read known_hosts");
    return TF_OK;
}

static void test_tls_known_hosts_hook(void **state)
{
    fixture *f = *state;
    tf__tls_client_conf conf = {.check = check_cb};
    tf__tls_ctx *cctx = NULL;
    tf__err e = {{0}};
    assert_int_equal(tf__tls_client_ctx_new(&cctx, &conf, &e), TF_OK);

    check_state cs = {0};
    conn k;
    conn_open(&k, f->server_a, cctx, "[::1]", &cs);
    assert_int_equal(k.rc, TF_OK);
    assert_int_equal(k.rs, TF_OK);
    assert_int_equal(cs.calls, 1);
    assert_string_equal(cs.host, "::1");
    assert_string_equal(cs.fp, tf__tls_identity_fingerprint(f->a));
    conn_close(&k);

    memset(&cs, 0, sizeof cs);
    cs.answer = TF_EPEERVERIFY;
    conn_open(&k, f->server_a, cctx, "other.example", &cs);
    assert_int_equal(k.rc, TF_EPEERVERIFY);
    assert_string_equal(k.ec.msg, "REMOTE HOST IDENTIFICATION HAS CHANGED");
    assert_int_equal(k.rs, TF_EPROTO);
    conn_close(&k);

    /* A failure of the hook itself keeps its code. */
    memset(&cs, 0, sizeof cs);
    cs.answer = TF_EIO;
    conn_open(&k, f->server_a, cctx, "third.example", &cs);
    assert_int_equal(k.rc, TF_EIO);
    conn_close(&k);
    tf__tls_ctx_free(cctx);
}

/* The known_hosts policy as the hook: a server recorded on first contact
   (accept-new), then another key for the same host:port (a man in the
   middle, or a replaced key) refused before anything is sent. */
static void test_tls_known_hosts_file_detects_new_key(void **state)
{
    fixture *f = *state;
    char kh[PATH_MAX];
    path_in(kh, sizeof kh, f->dir, "known_hosts");
    tf__tls_client_conf conf = {.check = tf__known_hosts_check};
    tf__tls_ctx *cctx = NULL, *server_b = NULL;
    tf__err e = {{0}};
    assert_int_equal(tf__tls_client_ctx_new(&cctx, &conf, &e), TF_OK);
    assert_int_equal(tf__tls_server_ctx_new(&server_b, f->b, &e), TF_OK);
    tf__kh_policy strict = {.path = kh, .port = 7070, .accept_new = 0};
    tf__kh_policy accept = {.path = kh, .port = 7070, .accept_new = 1};

    conn k;
    conn_open(&k, f->server_a, cctx, "files.example", &strict);
    assert_int_equal(k.rc, TF_EPEERVERIFY);
    assert_non_null(strstr(k.ec.msg, "not a known server"));
    conn_close(&k);
    conn_open(&k, f->server_a, cctx, "files.example", &accept);
    assert_int_equal(k.rc, TF_OK);
    conn_close(&k);
    conn_open(&k, f->server_a, cctx, "files.example", &strict);
    assert_int_equal(k.rc, TF_OK);
    conn_close(&k);
    /* Server b answers for the same name: refused, even with accept-new. A
       new client context, so no ticket from server a is offered. */
    tf__tls_ctx *fresh = NULL;
    assert_int_equal(tf__tls_client_ctx_new(&fresh, &conf, &e), TF_OK);
    conn_open(&k, server_b, fresh, "files.example", &accept);
    assert_int_equal(k.rc, TF_EPEERVERIFY);
    assert_non_null(strstr(k.ec.msg, "HAS CHANGED"));
    assert_non_null(strstr(k.ec.msg, tf__tls_identity_fingerprint(f->b)));
    assert_int_equal(k.rs, TF_EPROTO);
    conn_close(&k);
    tf__tls_ctx_free(fresh);
    tf__tls_ctx_free(server_b);
    tf__tls_ctx_free(cctx);
}

static void test_tls_ca_and_host_name(void **state)
{
    fixture *f = *state;
    const char *d = f->dir;
    /* A CA, a server certificate it signs for right.example, and a second
       CA that signed nothing here. */
    tu_make_server_cert(d, "right.example");
    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], other[PATH_MAX];
    path_in(cert, sizeof cert, d, "srv.pem");
    path_in(key, sizeof key, d, "srv.key");
    path_in(ca, sizeof ca, d, "ca.pem");
    path_in(other, sizeof other, d, "other.pem");
    tf__err e = {{0}};
    tf__tls_identity *id = NULL;
    assert_int_equal(tf__tls_identity_load(&id, cert, key, &e), TF_OK);
    tf__tls_ctx *sctx = NULL, *cctx = NULL, *octx = NULL;
    assert_int_equal(tf__tls_server_ctx_new(&sctx, id, &e), TF_OK);
    tf__tls_client_conf conf = {.ca_file = ca};
    assert_int_equal(tf__tls_client_ctx_new(&cctx, &conf, &e), TF_OK);

    conn k;
    conn_open(&k, sctx, cctx, "right.example", NULL);
    assert_int_equal(k.rc, TF_OK);
    assert_int_equal(k.rs, TF_OK);
    conn_close(&k);

    conn_open(&k, sctx, cctx, "wrong.example", NULL);
    assert_int_equal(k.rc, TF_EPEERVERIFY);
    assert_non_null(strstr(k.ec.msg, "wrong.example"));
    assert_non_null(strstr(k.ec.msg, "hostname mismatch"));
    conn_close(&k);

    /* The right name, the wrong CA. */
    conf.ca_file = other;
    assert_int_equal(tf__tls_client_ctx_new(&octx, &conf, &e), TF_OK);
    conn_open(&k, sctx, octx, "right.example", NULL);
    assert_int_equal(k.rc, TF_EPEERVERIFY);
    conn_close(&k);

    /* A CA file that is missing or not PEM. */
    tf__tls_ctx *bad = NULL;
    conf.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(tf__tls_client_ctx_new(&bad, &conf, &e), TF_ENOENT);
    conf.ca_file = key; /* a key, not a certificate */
    assert_int_equal(tf__tls_client_ctx_new(&bad, &conf, &e), TF_EINVAL);
    assert_null(bad);

    tf__tls_ctx_free(sctx);
    tf__tls_ctx_free(cctx);
    tf__tls_ctx_free(octx);
    tf__tls_identity_free(id);
}

static void test_tls_12_client_refused(void **state)
{
    fixture *f = *state;
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    assert_non_null(old);
    SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION);
    SSL_CTX_set_verify(old, SSL_VERIFY_NONE, NULL);
    int sv[2];
    pair(sv);
    tf__tls *s = NULL;
    tf__err es = {{0}};
    assert_int_equal(tf__tls_server_new(&s, f->server_a, sv[0], &es), TF_OK);
    SSL *c = SSL_new(old);
    assert_non_null(c);
    SSL_set_fd(c, sv[1]);
    int rs = TF__TLS_WANT_READ, rc = -1;
    for (int i = 0; i < 100; i++) {
        rc = SSL_connect(c);
        if (rs > 0)
            rs = tf__tls_handshake(s, &es);
        if (rc == 1 || (rc <= 0 && SSL_get_error(c, rc) == SSL_ERROR_SSL))
            break;
    }
    assert_true(rc != 1);
    assert_int_equal(rs, TF_EPROTO);
    assert_non_null(strstr(es.msg, "TLS 1.3"));
    ERR_clear_error();
    SSL_free(c);
    SSL_CTX_free(old);
    tf__tls_free(s);
    close(sv[0]);
    close(sv[1]);
}

/* A plaintext tcpfile client meets a TLS server. */
static void test_tls_plaintext_client_detected(void **state)
{
    fixture *f = *state;
    int sv[2];
    pair(sv);
    tf__tls *s = NULL;
    tf__err e = {{0}};
    assert_int_equal(tf__tls_server_new(&s, f->server_a, sv[0], &e), TF_OK);
    uint8_t hello[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello h = {.version_min = 1, .version_max = 1, .features = 0};
    assert_int_equal(tf__wire_encode_client_hello(hello, sizeof hello, &h), sizeof hello);
    assert_int_equal(write(sv[1], hello, sizeof hello), (ssize_t)sizeof hello);
    int r = tf__tls_handshake(s, &e);
    assert_int_equal(r, TF_EPROTO);
    assert_string_equal(e.msg, "a plaintext client; this server requires TLS (the client has "
                                "--plaintext)");
    assert_true(tf__tls_peer_plaintext(s));
    tf__tls_free(s);
    close(sv[0]);
    close(sv[1]);

    /* Something else entirely (an HTTP request) is told apart. */
    pair(sv);
    assert_int_equal(tf__tls_server_new(&s, f->server_a, sv[0], &e), TF_OK);
    assert_int_equal(write(sv[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
    tf__err_clear(&e); /* the first message of a failure wins: one per call */
    assert_int_equal(tf__tls_handshake(s, &e), TF_EPROTO);
    assert_non_null(strstr(e.msg, "not a TLS record"));
    assert_false(tf__tls_peer_plaintext(s));
    tf__tls_free(s);
    close(sv[0]);
    close(sv[1]);
}

/* A TLS client meets a plaintext server, which sends its hello at once. */
static void test_tls_plaintext_server_detected(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    int sv[2];
    pair(sv);
    tf__tls *c = NULL;
    tf__err e = {{0}};
    assert_int_equal(tf__tls_client_new(&c, cctx, sv[1], "a.example", NULL, &e), TF_OK);
    assert_int_equal(tf__tls_handshake(c, &e), TF__TLS_WANT_READ);
    uint8_t hello[256];
    tf_wire_server_hello h = {.version_min = 1, .version_max = 1, .max_name = 255};
    long len = tf__wire_encode_server_hello(hello, sizeof hello, &h);
    assert_true(len > 0);
    assert_int_equal(write(sv[0], hello, (size_t)len), len);
    assert_int_equal(tf__tls_handshake(c, &e), TF_EPROTO);
    assert_string_equal(e.msg, "the server does not speak TLS (it runs with --plaintext)");
    tf__tls_free(c);
    close(sv[0]);
    close(sv[1]);

    /* A server that closes at once: a network error, not a protocol one. */
    pair(sv);
    assert_int_equal(tf__tls_client_new(&c, cctx, sv[1], "a.example", NULL, &e), TF_OK);
    assert_int_equal(tf__tls_handshake(c, &e), TF__TLS_WANT_READ);
    close(sv[0]);
    assert_int_equal(tf__tls_handshake(c, &e), TF_ENET);
    tf__tls_free(c);
    close(sv[1]);
    tf__tls_ctx_free(cctx);
}

static void test_tls_resumption_and_truncation(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    conn k;
    conn_open(&k, f->server_a, cctx, "a.example", NULL);
    assert_int_equal(k.rc, TF_OK);
    assert_int_equal(k.rs, TF_OK);
    /* Tickets arrive after the handshake: the client reads them with data. */
    size_t n;
    uint8_t buf[4];
    assert_int_equal(tf__tls_write(k.s, "abcd", 4, &n, &k.es), TF_OK);
    read_all(k.c, buf, 4);
    conn_close(&k);

    conn_open(&k, f->server_a, cctx, "a.example", NULL);
    assert_int_equal(k.rc, TF_OK);
    assert_int_equal(k.rs, TF_OK);
    assert_true(tf__tls_resumed(k.c));
    assert_true(tf__tls_resumed(k.s));
    char desc[128];
    tf__tls_describe(k.s, desc, sizeof desc);
    assert_non_null(strstr(desc, "(resumed)"));

    /* The server's socket closes without close_notify: truncation, which
       the client must not take for a clean end. */
    close(k.sv[0]);
    k.sv[0] = -1;
    int r = TF__TLS_WANT_READ;
    for (int i = 0; i < 100 && r == TF__TLS_WANT_READ; i++)
        r = tf__tls_read(k.c, buf, sizeof buf, &n, &k.ec);
    assert_int_equal(r, TF_ENET);
    if (!strstr(k.ec.msg, "close_notify"))
        fail_msg("%s", k.ec.msg);
    conn_close(&k);
    tf__tls_ctx_free(cctx);
}

/* Contexts are shared by threads (the server's workers, a client's
   parallel transfers): each thread runs its own connections on the same
   two contexts, the client's ticket cache included. */
typedef struct worker {
    tf__tls_ctx *sctx, *cctx;
    int ok, resumed;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 15; i++) {
        conn k;
        memset(&k, 0, sizeof k);
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, k.sv) != 0)
            break;
        if (tf__tls_server_new(&k.s, w->sctx, k.sv[0], &k.es) == TF_OK &&
            tf__tls_client_new(&k.c, w->cctx, k.sv[1], "a.example", NULL, &k.ec) == TF_OK) {
            pump(k.s, k.c, &k.rs, &k.rc, &k.es, &k.ec);
            size_t n = 0, got = 0;
            uint8_t b[2];
            if (k.rs == TF_OK && k.rc == TF_OK &&
                tf__tls_write(k.s, "ok", 2, &n, &k.es) == TF_OK) {
                for (int spins = 0; got < 2 && spins < 1000; spins++) {
                    size_t m = 0;
                    if (tf__tls_read(k.c, b + got, 2 - got, &m, &k.ec) == TF_OK)
                        got += m;
                }
            }
            w->ok += got == 2;
            w->resumed += tf__tls_resumed(k.c);
            tf__tls_shutdown(k.c, &k.ec);
        }
        conn_close(&k);
    }
    return NULL;
}

static void test_tls_contexts_shared_by_threads(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    worker w[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (worker){.sctx = f->server_a, .cctx = cctx};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    int resumed = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].ok, 15);
        resumed += w[i].resumed;
    }
    /* After the first tickets arrived, connections resumed. */
    assert_true(resumed > 0);
    tf__tls_ctx_free(cctx);
}

static void test_tls_client_conf_checked(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *c = NULL;
    tf__err e = {{0}};
    tf__tls_client_conf none = {0};
    assert_int_equal(tf__tls_client_ctx_new(&c, &none, &e), TF_EINVAL);
    assert_non_null(strstr(e.msg, "no way to check"));
    assert_int_equal(tf__tls_client_ctx_new(&c, NULL, &e), TF_EINVAL);
    tf__tls_client_conf bad = {.pin = "SHA256:tooshort"};
    assert_int_equal(tf__tls_client_ctx_new(&c, &bad, &e), TF_EINVAL);
    assert_null(c);
    assert_int_equal(tf__tls_server_ctx_new(&c, NULL, &e), TF_EINVAL);
    /* Contexts used on the wrong side. */
    tf__tls *t = NULL;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    assert_int_equal(tf__tls_server_new(&t, cctx, 0, &e), TF_EINVAL);
    assert_int_equal(tf__tls_client_new(&t, f->server_a, 0, "x", NULL, &e), TF_EINVAL);
    assert_int_equal(tf__tls_client_new(&t, cctx, 0, "", NULL, &e), TF_EINVAL);
    assert_null(t);
    tf__tls_ctx_free(cctx);
}

static void test_tls_sniff(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        int want;
    } rows[] = {
        {"", 0, TF__SNIFF_MORE},
        {"\x16", 1, TF__SNIFF_MORE},
        {"\x16\x03\x01", 3, TF__SNIFF_TLS},
        {"\x15\x03\x03", 3, TF__SNIFF_TLS},
        {"\x16\x02", 2, TF__SNIFF_OTHER},
        {"T", 1, TF__SNIFF_MORE},
        {"TCP", 3, TF__SNIFF_MORE},
        {"TCPF", 4, TF__SNIFF_TCPF},
        {"TCPX", 4, TF__SNIFF_OTHER},
        {"GET ", 4, TF__SNIFF_OTHER},
        {"\x17\x03\x03", 3, TF__SNIFF_OTHER},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(tf__tls_sniff(rows[i].bytes, rows[i].len), rows[i].want);
}

/* Mutual TLS: a server with a client CA asks for a certificate without
   requiring one; a verified one gives its fingerprint and CN (what the
   users module maps to a user); one from another CA fails the handshake. */
static void test_tls_client_certificate(void **state)
{
    fixture *f = *state;
    const char *d = f->dir;
    assert_int_equal(
        tu_sh("cd '%s' && "
              "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
              "-days 2 -subj /CN=machines-ca -keyout mca.key -out mca.pem 2>/dev/null && "
              "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
              "-days 2 -subj /CN=rogue-ca -keyout rca.key -out rca.pem 2>/dev/null && "
              "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
              "-subj /CN=machine-1 -keyout m1.key -out m1.csr 2>/dev/null && "
              "openssl x509 -req -in m1.csr -CA mca.pem -CAkey mca.key -CAcreateserial "
              "-days 2 -out m1.pem 2>/dev/null && "
              "openssl x509 -req -in m1.csr -CA rca.pem -CAkey rca.key -CAcreateserial "
              "-days 2 -out m1-rogue.pem 2>/dev/null",
              d),
        0);
    char mca[PATH_MAX], m1[PATH_MAX], m1key[PATH_MAX], rogue[PATH_MAX];
    path_in(mca, sizeof mca, d, "mca.pem");
    path_in(m1, sizeof m1, d, "m1.pem");
    path_in(m1key, sizeof m1key, d, "m1.key");
    path_in(rogue, sizeof rogue, d, "m1-rogue.pem");
    tf__err e = {{0}};
    tf__tls_ctx *sctx = NULL;
    assert_int_equal(tf__tls_server_ctx_new(&sctx, f->a, &e), TF_OK);
    assert_int_equal(tf__tls_server_ctx_client_ca(sctx, mca, &e), TF_OK);
    const char *pin = tf__tls_identity_fingerprint(f->a);

    /* No certificate: fine, and no identity. */
    tf__tls_ctx *plain = client_pin(pin);
    conn k;
    conn_open(&k, sctx, plain, "a.example", NULL);
    assert_int_equal(k.rc, TF_OK);
    assert_int_equal(k.rs, TF_OK);
    char fp[TF__FP_SIZE], cn[64];
    assert_int_equal(tf__tls_peer_identity(k.s, fp, cn, sizeof cn), 0);
    conn_close(&k);

    /* The CA's certificate: its fingerprint and CN. */
    tf__tls_ctx *m = client_pin(pin);
    assert_int_equal(tf__tls_client_ctx_cert(m, m1, m1key, &e), TF_OK);
    conn_open(&k, sctx, m, "a.example", NULL);
    assert_int_equal(k.rc, TF_OK);
    assert_int_equal(k.rs, TF_OK);
    assert_int_equal(tf__tls_peer_identity(k.s, fp, cn, sizeof cn), 1);
    assert_string_equal(cn, "machine-1");
    tf__tls_identity *mid = NULL;
    assert_int_equal(tf__tls_identity_load(&mid, m1, m1key, &e), TF_OK);
    assert_string_equal(fp, tf__tls_identity_fingerprint(mid));
    tf__tls_identity_free(mid);
    conn_close(&k);

    /* The same key signed by another CA: the server refuses it. */
    tf__tls_ctx *r = client_pin(pin);
    assert_int_equal(tf__tls_client_ctx_cert(r, rogue, m1key, &e), TF_OK);
    conn_open(&k, sctx, r, "a.example", NULL);
    assert_true(k.rs < 0);
    assert_int_equal(tf__tls_peer_identity(k.s, fp, cn, sizeof cn), 0);
    conn_close(&k);

    tf__tls_ctx_free(plain);
    tf__tls_ctx_free(m);
    tf__tls_ctx_free(r);
    tf__tls_ctx_free(sctx);
}

/* ---- openssl s_client against a TLS server on loopback ---------------- */

/* Serves one TLS connection on lfd: handshake, a line, close_notify.
   Returns the handshake's result. */
static int serve_one(tf__tls_ctx *sctx, int lfd, tf__err *e)
{
    struct pollfd lp = {.fd = lfd, .events = POLLIN};
    if (poll(&lp, 1, 10000) != 1)
        return tf__fail(e, TF_ETIMEDOUT, "no connection");
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return tf__fail(e, TF_ENET, "accept");
    tf__tls *t = NULL;
    int r = tf__tls_server_new(&t, sctx, fd, e);
    int64_t end = tu_now_ms() + 10000;
    while (r == TF_OK || r > 0) {
        r = tf__tls_handshake(t, e);
        if (r <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = r == TF__TLS_WANT_READ ? POLLIN : POLLOUT};
        if (tu_now_ms() > end) {
            r = tf__fail(e, TF_ETIMEDOUT, "handshake timed out");
            break;
        }
        poll(&p, 1, 1000);
    }
    if (r == TF_OK) {
        const char *line = "hello from tcpfile\n";
        size_t n = 0, off = 0;
        while (off < strlen(line)) {
            int w = tf__tls_write(t, line + off, strlen(line) - off, &n, e);
            if (w == TF_OK)
                off += n;
            else if (w < 0)
                break;
            else
                poll(&(struct pollfd){.fd = fd, .events = POLLOUT}, 1, 1000);
        }
        while (tf__tls_shutdown(t, e) > 0)
            poll(&(struct pollfd){.fd = fd, .events = POLLOUT}, 1, 1000);
    }
    tf__tls_free(t);
    close(fd);
    return r;
}

static void run_s_client(fixture *f, const char *version, int *handshake, int *status,
                         char *out, size_t cap)
{
    char port[16];
    int lfd = tu_listen_loopback(port, sizeof port);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl s_client -connect 127.0.0.1:%s %s -ign_eof </dev/null 2>&1", port,
             version);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    tf__err e = {{0}};
    *handshake = serve_one(f->server_a, lfd, &e);
    size_t used = fread(out, 1, cap - 1, p);
    out[used] = '\0';
    *status = pclose(p);
    close(lfd);
}

static void test_tls_openssl_s_client_tls13(void **state)
{
    fixture *f = *state;
    static char out[65536];
    int hs, st;
    run_s_client(f, "-tls1_3", &hs, &st, out, sizeof out);
    if (hs != TF_OK || !strstr(out, "hello from tcpfile"))
        print_error("s_client said:\n%s\n", out);
    assert_int_equal(hs, TF_OK);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_non_null(strstr(out, "TLSv1.3"));
    assert_non_null(strstr(out, "hello from tcpfile"));
    /* s_client shows the server's certificate: the one we made. */
    assert_non_null(strstr(out, "CN = a.example"));
}

static void test_tls_openssl_s_client_tls12_refused(void **state)
{
    fixture *f = *state;
    static char out[65536];
    int hs, st;
    run_s_client(f, "-tls1_2", &hs, &st, out, sizeof out);
    assert_int_equal(hs, TF_EPROTO);
    assert_false(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_null(strstr(out, "hello from tcpfile"));
}

/* A small frame gathered into one record that blocks may be retried cut
   otherwise (the server's session falls back from one writev of head, body
   and trailer to each piece alone): every byte arrives once, in order,
   instead of OpenSSL's "bad write retry". */
static void test_tls_gathered_write_retried_in_pieces(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    conn k;
    conn_open(&k, f->server_a, cctx, "a.example", NULL);
    assert_int_equal(k.rs, TF_OK);
    static uint8_t sent[8 << 20], got[8 << 20];
    tu_fill(sent, sizeof sent, 5);
    /* Frames of 24 + 4096 + 8 bytes until one blocks (nobody reads). */
    size_t off = 0, n = 0;
    int r = TF_OK;
    const size_t head = 24, body = 4096, tail = 8, frame = head + body + tail;
    while (off + frame <= sizeof sent) {
        struct iovec iov[3] = {{sent + off, head},
                               {sent + off + head, body},
                               {sent + off + head + body, tail}};
        r = tf__tls_writev(k.s, iov, 3, &n, &k.es);
        if (r != TF_OK)
            break;
        assert_int_equal(n, frame);
        off += frame;
    }
    assert_int_equal(r, TF__TLS_WANT_WRITE);
    /* The same frame again, a piece at a time, while the client reads. */
    size_t pieces[3] = {head, body, tail}, have = 0;
    for (int i = 0; i < 3; i++) {
        size_t left = pieces[i];
        for (int spins = 0; left > 0 && spins < 100000; spins++) {
            r = tf__tls_write(k.s, sent + off, left, &n, &k.es);
            if (r == TF_OK) {
                assert_true(n > 0 && n <= left);
                off += n;
                left -= n;
            } else {
                assert_int_equal(r, TF__TLS_WANT_WRITE);
            }
            size_t m = 0;
            if (have < off && tf__tls_read(k.c, got + have, off - have, &m, &k.ec) == TF_OK)
                have += m;
        }
        assert_int_equal(left, 0);
    }
    read_all(k.c, got + have, off - have);
    assert_memory_equal(got, sent, off);
    conn_close(&k);
    tf__tls_ctx_free(cctx);
}

/* Frames packed with more following (tf__tls_writev_more) while nobody
   reads: the socket fills, the pack waits (WANT_WRITE, nothing taken),
   and a last write without more is reported whole only once every byte
   is out, so the reader gets them all, once, in order, with no further
   call on the server's side. */
static void test_tls_packed_writes_wait_for_room(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    conn k;
    conn_open(&k, f->server_a, cctx, "a.example", NULL);
    assert_int_equal(k.rs, TF_OK);
    static uint8_t sent[8 << 20], got[8 << 20];
    tu_fill(sent, sizeof sent, 6);
    /* The bytes as a stream of 16 + 4096 + 4 byte pieces (a partial
       write shifts them; the stream is what counts). */
    const size_t head = 16, body = 4096, tail = 4, frame = head + body + tail;
    size_t off = 0, n = 0, have = 0;
    int r = TF_OK;
    while (off + 2 * frame <= sizeof sent) {
        struct iovec iov[3] = {{sent + off, head},
                               {sent + off + head, body},
                               {sent + off + head + body, tail}};
        r = tf__tls_writev_more(k.s, iov, 3, &n, &k.es);
        if (r != TF_OK)
            break;
        assert_true(n > 0 && n <= frame);
        off += n;
    }
    assert_int_equal(r, TF__TLS_WANT_WRITE);
    assert_int_equal(n, 0);
    /* The last frame, without more, while the client reads. */
    size_t left = frame;
    for (int spins = 0; left > 0 && spins < 1000000; spins++) {
        struct iovec iov[1] = {{sent + off, left}};
        r = tf__tls_writev(k.s, iov, 1, &n, &k.es);
        if (r == TF_OK) {
            off += n;
            left -= n;
        } else {
            assert_int_equal(r, TF__TLS_WANT_WRITE);
        }
        size_t m = 0;
        if (have < off && tf__tls_read(k.c, got + have, sizeof got - have, &m, &k.ec) == TF_OK)
            have += m;
    }
    assert_int_equal(left, 0);
    read_all(k.c, got + have, off - have);
    assert_memory_equal(got, sent, off);
    conn_close(&k);
    tf__tls_ctx_free(cctx);
}

static volatile sig_atomic_t sigpipes;

static void count_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

/* Writing to a peer that has gone raises no SIGPIPE, with no signal mask
   changed around the call (tls.c's MSG_NOSIGNAL filter): a write, the
   sendfile fallback and close_notify, each on its own connection. */
static void test_tls_gone_peer_raises_no_sigpipe(void **state)
{
    fixture *f = *state;
    tf__tls_ctx *cctx = client_pin(tf__tls_identity_fingerprint(f->a));
    char path[PATH_MAX];
    path_in(path, sizeof path, f->dir, "sigpipe-src");
    static uint8_t data[65536];
    tu_fill(data, sizeof data, 3);
    tu_write_file(path, data, sizeof data);
    int file = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(file >= 0);

    struct sigaction count = {.sa_handler = count_sigpipe}, old;
    sigemptyset(&count.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &count, &old), 0);
    sigset_t pipe_set, old_mask;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &pipe_set, &old_mask), 0);
    sigpipes = 0;
    for (int how = 0; how < 3; how++) {
        conn k;
        conn_open(&k, f->server_a, cctx, "a.example", NULL);
        assert_int_equal(k.rc, TF_OK);
        assert_true(tf__tls_sigpipe_safe(k.c));
        tf__tls_free(k.s);
        k.s = NULL;
        close(k.sv[0]);
        k.sv[0] = -1;
        size_t n = 0;
        int r = how == 0   ? tf__tls_write(k.c, data, sizeof data, &n, &k.ec)
              : how == 1 ? tf__tls_sendfile(k.c, file, 0, sizeof data, &n, &k.ec)
                         : tf__tls_shutdown(k.c, &k.ec);
        assert_int_equal(sigpipes, 0);
        assert_int_equal(r, TF_ENET);
        conn_close(&k);
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGPIPE, &old, NULL);
    close(file);
    unlink(path);
    tf__tls_ctx_free(cctx);
}

int main(int argc, char **argv)
{
    /* A peer that goes away must not kill the test with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_tls_handshake_nonblocking_round_trip),
        T(test_tls_sendfile_fallback_1mib),
        T(test_tls_bulk_reads_take_every_record),
        T(test_tls_pin_mismatch_refused),
        T(test_tls_known_hosts_hook),
        T(test_tls_known_hosts_file_detects_new_key),
        T(test_tls_ca_and_host_name),
        T(test_tls_12_client_refused),
        T(test_tls_plaintext_client_detected),
        T(test_tls_plaintext_server_detected),
        T(test_tls_resumption_and_truncation),
        T(test_tls_contexts_shared_by_threads),
        T(test_tls_client_conf_checked),
        cmocka_unit_test(test_tls_sniff),
        T(test_tls_client_certificate),
        T(test_tls_openssl_s_client_tls13),
        T(test_tls_openssl_s_client_tls12_refused),
        T(test_tls_gone_peer_raises_no_sigpipe),
        T(test_tls_gathered_write_retried_in_pieces),
        T(test_tls_packed_writes_wait_for_room),
    };
#undef T
    return TU_RUN_GROUP("tls", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
