/*
 * test_auth.c - users on a real server (issue 13): logins (feature AUTH,
 * op 4), rights, a user confined to a sub-directory, guessing slowed down,
 * logins checked off the event loop, the log, a reload and a stop with
 * logins in flight. Servers on 127.0.0.1 port 0; users files made with
 * tf_users_add in a temporary directory (default scrypt cost: ~25 ms a
 * check).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include "cmocka_main.h"

#include "tcpfile.h"
#include "testutil.h"
#include "wire.h"

/* Users made once for the group: their tokens, and the users file. */
static char g_dir[256];
static char g_users[300];
static char tok_alice[TF_TOKEN_SIZE]; /* read, whole root */
static char tok_bob[TF_TOKEN_SIZE];   /* write, whole root */
static char tok_carol[TF_TOKEN_SIZE]; /* write, confined to "carol" */
static char tok_dave[TF_TOKEN_SIZE];  /* read, confined to "team/dave" */

static tf_options *new_opts(void)
{
    tf_options *o = NULL;
    assert_int_equal(tf_options_new(&o), TF_OK);
    return o;
}

static void add_user(const char *name, const char *access, const char *dir, char *token)
{
    tf_options *o = new_opts();
    assert_int_equal(tf_options_set_string(o, TF_SOPT_USERS_FILE, g_users), TF_OK);
    char why[256];
    int rc = tf_users_add(o, name, access, dir, token, TF_TOKEN_SIZE, why, sizeof why);
    if (rc != TF_OK)
        print_error("tf_users_add %s: %s\n", name, why);
    assert_int_equal(rc, TF_OK);
    assert_int_equal(strlen(token), TF_TOKEN_LEN);
    tf_options_free(o);
}

static int group_setup(void **state)
{
    (void)state;
    tu_mkdtemp(g_dir, sizeof g_dir);
    snprintf(g_users, sizeof g_users, "%s/users", g_dir);
    add_user("alice", "read", NULL, tok_alice);
    add_user("bob", "write", "-", tok_bob);
    add_user("carol", "write", "carol", tok_carol);
    add_user("dave", "read", "team/dave", tok_dave);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rm_rf(g_dir);
    return 0;
}

/* Server options with the group's users file (the caller frees them). */
static tf_options *server_opts(void)
{
    tf_options *o = new_opts();
    assert_int_equal(tf_options_set_string(o, TF_SOPT_USERS_FILE, g_users), TF_OK);
    return o;
}

static int login(const test_server *t, const char *user, const char *token, tf_client **out,
                 char *why, size_t why_len)
{
    tf_options *o = new_opts();
    if (user)
        assert_int_equal(tf_options_set_string(o, TF_SOPT_USER, user), TF_OK);
    if (token)
        assert_int_equal(tf_options_set_string(o, TF_SOPT_TOKEN, token), TF_OK);
    int rc = tf_connect_ex(out, "127.0.0.1", t->port, o, why, why_len);
    tf_options_free(o);
    return rc;
}

static tf_client *login_ok(const test_server *t, const char *user, const char *token)
{
    tf_client *c = NULL;
    char why[256];
    int rc = login(t, user, token, &c, why, sizeof why);
    if (rc != TF_OK)
        print_error("login %s: %s (%s)\n", user, tf_strerror(rc), why);
    assert_int_equal(rc, TF_OK);
    return c;
}

/* ---- a raw peer: hellos and frames by hand ------------------------------------ */

static int raw_connect(const char *port, const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (from) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        inet_pton(AF_INET, from, &src.sin_addr);
        assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        assert_true(k > 0);
        b += k;
        n -= (size_t)k;
    }
}

/* Reads exactly n bytes within ms; 0, or -1 on a timeout or close. */
static int raw_recv(int fd, void *p, size_t n, int ms)
{
    uint8_t *b = p;
    int64_t end = tu_now_ms() + ms;
    while (n > 0) {
        int left = (int)(end - tu_now_ms());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return -1;
        ssize_t k = recv(fd, b, n, 0);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Sends a client hello with features and reads the server's; returns the
   server's features. */
static uint32_t raw_hello(int fd, uint32_t features)
{
    uint8_t h[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello ch = {1, 1, features};
    assert_int_equal(tf__wire_encode_client_hello(h, sizeof h, &ch), sizeof h);
    raw_send(fd, h, sizeof h);
    uint8_t in[TF_WIRE_SERVER_HELLO_SIZE];
    assert_int_equal(raw_recv(fd, in, sizeof in, 5000), 0);
    tf_wire_server_hello sh;
    assert_int_equal(tf__wire_decode_server_hello(in, sizeof in, &sh), sizeof in);
    assert_int_equal(sh.status, 0);
    return sh.features;
}

static size_t auth_frame(uint8_t *buf, size_t cap, const char *user, const char *token)
{
    tf_wire_auth a = {user, (uint16_t)(user ? strlen(user) : 0), token,
                      (uint16_t)(token ? strlen(token) : 0)};
    long n = tf__wire_encode_auth(buf, cap, &a);
    assert_true(n > 0);
    return (size_t)n;
}

static size_t get_frame(uint8_t *buf, size_t cap, const char *name)
{
    tf_wire_request r = {.op = TF_OP_GET, .name = name, .name_len = (uint16_t)strlen(name)};
    long n = tf__wire_encode_request(buf, cap, &r);
    assert_true(n > 0);
    return (size_t)n;
}

/* Reads one response head and message; returns its status, or -1. */
static int raw_response(int fd, uint8_t *op, uint64_t *size, char *msg, size_t msg_cap, int ms)
{
    uint8_t in[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    if (raw_recv(fd, in, TF_WIRE_RESPONSE_SIZE, ms) != 0)
        return -1;
    tf_wire_response r;
    long n = tf__wire_decode_response(in, TF_WIRE_RESPONSE_SIZE, &r);
    if (n == TF_WIRE_NEED_MORE) {
        if (raw_recv(fd, in + TF_WIRE_RESPONSE_SIZE, r.message_len, ms) != 0)
            return -1;
        n = tf__wire_decode_response(in, TF_WIRE_RESPONSE_SIZE + r.message_len, &r);
    }
    assert_true(n > 0);
    if (op)
        *op = r.op;
    if (size)
        *size = r.size;
    if (msg) {
        size_t m = r.message_len < msg_cap - 1 ? r.message_len : msg_cap - 1;
        memcpy(msg, r.message, m);
        msg[m] = '\0';
    }
    return r.status;
}

/* ---- rights ------------------------------------------------------------------- */

static void test_auth_read_cannot_put(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", t.root);
    tu_write_file(path, "data", 4);

    tf_client *c = login_ok(&t, "alice", tok_alice);
    assert_int_equal(tf_put_mem(c, "x", 1, "new.txt"), TF_EACCES);
    assert_string_equal(tf_errmsg(c), "user alice has read access only: put needs write");
    /* The refusal comes before any data moves: the connection is usable,
       and read works. */
    void *data;
    size_t len;
    assert_int_equal(tf_get_mem(c, "f.txt", &data, &len), TF_OK);
    assert_int_equal(len, 4);
    tf_free(data);
    tf_listing *l;
    assert_int_equal(tf_list(c, &l), TF_OK);
    assert_int_equal(tf_listing_count(l), 1);
    tf_listing_free(l);
    tf_close(c);
    snprintf(path, sizeof path, "%s/new.txt", t.root);
    assert_int_equal(tu_file_size(path), -1);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

static void test_auth_write_can_put(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    tf_client *c = login_ok(&t, "bob", tok_bob);
    assert_int_equal(tf_put_mem(c, "hello", 5, "b.txt"), TF_OK);
    void *data;
    size_t len;
    assert_int_equal(tf_get_mem(c, "b.txt", &data, &len), TF_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "hello", 5);
    tf_free(data);
    tf_close(c);
    char path[512];
    snprintf(path, sizeof path, "%s/b.txt", t.root);
    assert_int_equal(tu_file_size(path), 5);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

static void test_auth_read_only_server_refuses_writers(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    assert_int_equal(tf_options_set(o, TF_OPT_READ_ONLY, 1), TF_OK);
    test_server t;
    tu_server_start(&t, o);
    tf_client *c = login_ok(&t, "bob", tok_bob);
    assert_int_equal(tf_put_mem(c, "x", 1, "x.txt"), TF_EACCES);
    assert_string_equal(tf_errmsg(c), "the server is read-only");
    tf_close(c);
    /* A confined user whose directory is missing: a read-only server
       creates none. */
    c = NULL;
    char why[256];
    assert_int_equal(login(&t, "carol", tok_carol, &c, why, sizeof why), TF_EACCES);
    assert_null(c);
    assert_non_null(strstr(why, "directory of user carol does not exist"));
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* ---- logging in ----------------------------------------------------------------- */

static void test_auth_failures_are_identical(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    char wrong[TF_TOKEN_SIZE];
    memcpy(wrong, tok_bob, sizeof wrong);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    const struct {
        const char *user, *token;
    } cases[] = {
        {"bob", wrong},          /* wrong token */
        {"bob", NULL},           /* missing token */
        {"bob", ""},             /* empty token */
        {"zed", tok_bob},        /* unknown user, someone's token */
        {"alice", tok_bob},      /* another user's token */
        {"bob\n", tok_bob},      /* a name no user can have */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tf_client *c = NULL;
        char why[256];
        int rc = login(&t, cases[i].user, cases[i].token, &c, why, sizeof why);
        if (rc != TF_EACCES || strcmp(why, "authentication failed") != 0)
            print_error("case %zu: %s (%s)\n", i, tf_strerror(rc), why);
        assert_int_equal(rc, TF_EACCES);
        assert_string_equal(why, "authentication failed");
        assert_null(c);
    }
    /* No user at all: the client says so itself, sending nothing. */
    tf_client *c = NULL;
    char why[256];
    assert_int_equal(login(&t, NULL, NULL, &c, why, sizeof why), TF_EACCES);
    assert_non_null(strstr(why, "authentication required"));
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* Requests before a login get EACCES "authentication required" and the
   connection stays in step, for a client that knows AUTH and for one that
   does not (features 0); then a login, pipelined with a get behind it. */
static void test_auth_required_before_requests(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", t.root);
    tu_write_file(path, "abc", 3);
    for (int old = 0; old < 2; old++) {
        int fd = raw_connect(t.port, NULL);
        uint32_t f = raw_hello(fd, old ? 0 : 0x8);
        assert_true(f & 0x8); /* AUTH: this server wants a login */
        uint8_t buf[512];
        size_t n = get_frame(buf, sizeof buf, "f.txt");
        /* A put before the login: refused before any payload is expected. */
        tf_wire_request put = {.op = TF_OP_PUT, .name = "p", .name_len = 1, .size = 3};
        long pn = tf__wire_encode_request(buf + n, sizeof buf - n, &put);
        assert_true(pn > 0);
        raw_send(fd, buf, n + (size_t)pn);
        char msg[256];
        uint8_t op;
        assert_int_equal(raw_response(fd, &op, NULL, msg, sizeof msg, 5000), 4 /* EACCES */);
        assert_int_equal(op, TF_OP_GET);
        assert_string_equal(msg, "authentication required");
        assert_int_equal(raw_response(fd, &op, NULL, msg, sizeof msg, 5000), 4);
        assert_int_equal(op, TF_OP_PUT);
        assert_string_equal(msg, "authentication required");
        /* Now the login and a get behind it, without waiting. */
        n = auth_frame(buf, sizeof buf, "alice", tok_alice);
        n += get_frame(buf + n, sizeof buf - n, "f.txt");
        raw_send(fd, buf, n);
        assert_int_equal(raw_response(fd, &op, NULL, msg, sizeof msg, 5000), 0);
        assert_int_equal(op, TF_OP_AUTH);
        uint64_t size;
        assert_int_equal(raw_response(fd, &op, &size, msg, sizeof msg, 5000), 0);
        assert_int_equal(op, TF_OP_GET);
        assert_int_equal(size, 3);
        close(fd);
    }
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* A server without users closes on op 4, as on any unknown op; one with
   users closes on an auth frame whose lengths are over the limits. */
static void test_auth_frame_refused_when_not_expected(void **state)
{
    (void)state;
    test_server t;
    tu_server_start(&t, NULL);
    int fd = raw_connect(t.port, NULL);
    assert_int_equal(raw_hello(fd, 0x8) & 0x8, 0);
    uint8_t buf[512];
    size_t n = auth_frame(buf, sizeof buf, "bob", tok_bob);
    raw_send(fd, buf, n);
    assert_int_equal(raw_response(fd, NULL, NULL, NULL, 0, 5000), 9 /* EPROTO */);
    close(fd);
    tu_server_stop(&t, 1);

    tf_options *o = server_opts();
    tu_server_start(&t, o);
    fd = raw_connect(t.port, NULL);
    raw_hello(fd, 0x8);
    n = auth_frame(buf, sizeof buf, "bob", tok_bob);
    buf[4] = 0x7F; /* token_len far over 256 */
    raw_send(fd, buf, TF_WIRE_AUTH_SIZE);
    char msg[256];
    assert_int_equal(raw_response(fd, NULL, NULL, msg, sizeof msg, 5000), 9);
    assert_non_null(strstr(msg, "over the limit"));
    uint8_t x;
    assert_int_equal(raw_recv(fd, &x, 1, 5000), -1); /* closed */
    close(fd);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

static void test_auth_users_file_that_does_not_parse(void **state)
{
    (void)state;
    char dir[256], bad[300], why[512], root[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(bad, sizeof bad, "%s/users", dir);
    /* Served beside the users file, never above it (that is refused). */
    snprintf(root, sizeof root, "%s/root", dir);
    assert_int_equal(mkdir(root, 0700), 0);
    const char text[] = "# users\nbob admin - scrypt:ln=13,r=8,p=1 AAAAAAAAAAAAAAAAAAAAAA "
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
    tu_write_file(bad, text, sizeof text - 1);
    tf_options *o = new_opts();
    assert_int_equal(tf_options_set_string(o, TF_SOPT_USERS_FILE, bad), TF_OK);
    tf_server *s = NULL;
    assert_int_equal(tf_server_open_ex(&s, "127.0.0.1", "0", root, o, why, sizeof why),
                     TF_EINVAL);
    assert_null(s);
    char where[320];
    snprintf(where, sizeof where, "%s:2:", bad);
    assert_non_null(strstr(why, where));
    /* A missing one fails too: a typo must not open the server to all. */
    snprintf(bad, sizeof bad, "%s/missing", dir);
    assert_int_equal(tf_options_set_string(o, TF_SOPT_USERS_FILE, bad), TF_OK);
    assert_int_equal(tf_server_open_ex(&s, "127.0.0.1", "0", root, o, why, sizeof why),
                     TF_ENOENT);
    tf_options_free(o);
    tu_rm_rf(dir);
}

/* ---- confinement ---------------------------------------------------------------- */

static void test_auth_sub_directory_confines(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    char path[512], target[512];
    snprintf(path, sizeof path, "%s/top.txt", t.root);
    tu_write_file(path, "secret", 6);

    tf_client *c = login_ok(&t, "carol", tok_carol);
    /* Created at the first login, 0700. */
    snprintf(path, sizeof path, "%s/carol", t.root);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);

    /* Every operation in carol/: put lands there, list shows only it, the
       root's files are out of reach. */
    assert_int_equal(tf_put_mem(c, "mine", 4, "c.txt"), TF_OK);
    snprintf(path, sizeof path, "%s/carol/c.txt", t.root);
    assert_int_equal(tu_file_size(path), 4);
    snprintf(path, sizeof path, "%s/c.txt", t.root);
    assert_int_equal(tu_file_size(path), -1);
    tf_listing *l;
    assert_int_equal(tf_list(c, &l), TF_OK);
    assert_int_equal(tf_listing_count(l), 1);
    assert_string_equal(tf_listing_at(l, 0)->name, "c.txt");
    tf_listing_free(l);
    void *data;
    size_t len;
    assert_int_equal(tf_get_mem(c, "top.txt", &data, &len), TF_ENOENT);

    /* A symbolic link inside the user's directory pointing out of it is
       neither read nor written through. */
    snprintf(path, sizeof path, "%s/carol/link", t.root);
    snprintf(target, sizeof target, "%s/top.txt", t.root);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(tf_get_mem(c, "link", &data, &len), TF_EACCES);
    assert_int_equal(tf_put_mem(c, "overwritten", 11, "link"), TF_EACCES);
    assert_int_equal(tu_file_size(target), 6);
    snprintf(path, sizeof path, "%s/carol/up", t.root);
    assert_int_equal(symlink("..", path), 0);
    assert_int_equal(tf_get_mem(c, "up", &data, &len), TF_EACCES);
    tf_close(c);

    /* "../" tricks never pass the name check; raw, to skip the client's. */
    int fd = raw_connect(t.port, NULL);
    raw_hello(fd, 0x8);
    uint8_t buf[512];
    size_t n = auth_frame(buf, sizeof buf, "carol", tok_carol);
    raw_send(fd, buf, n);
    assert_int_equal(raw_response(fd, NULL, NULL, NULL, 0, 5000), 0);
    const char *tricks[] = {"../top.txt", "..", "/etc/passwd", "a/../../top.txt"};
    for (size_t i = 0; i < sizeof tricks / sizeof tricks[0]; i++) {
        n = get_frame(buf, sizeof buf, tricks[i]);
        raw_send(fd, buf, n);
        int status = raw_response(fd, NULL, NULL, NULL, 0, 5000);
        assert_true(status == 1 /* EINVAL */ || status == 2 /* ENOENT */);
    }
    close(fd);

    /* A user directory that is a symbolic link is no user's world. */
    char dir[256];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/team", t.root);
    assert_int_equal(symlink(dir, path), 0);
    c = NULL;
    char why[256];
    assert_int_equal(login(&t, "dave", tok_dave, &c, why, sizeof why), TF_EACCES);
    assert_non_null(strstr(why, "user dave"));
    snprintf(path, sizeof path, "%s/dave", dir);
    struct stat st2;
    assert_int_equal(lstat(path, &st2), -1); /* nothing made out there */
    tu_rm_rf(dir);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* A confined user's uploads are staged, and kept for resuming, inside the
   user's directory. */
static void test_auth_partials_stay_in_user_dir(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    tf_client *c = login_ok(&t, "carol", tok_carol);
    assert_int_equal(tf_put_mem(c, "abc", 3, "a.txt"), TF_OK);
    tf_close(c);
    char path[512];
    snprintf(path, sizeof path, "%s/carol/.tcpfile-tmp", t.root);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    snprintf(path, sizeof path, "%s/.tcpfile-tmp", t.root);
    assert_int_equal(lstat(path, &st), -1); /* the root's staging untouched */
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* A crash's debris inside a user's directory is swept at start, as the
   root's is: a plain upload cut short goes, a fresh resumable one stays. */
static void test_auth_startup_sweeps_user_dirs(void **state)
{
    (void)state;
    char root[256], tmp[512], path[600];
    tu_mkdtemp(root, sizeof root);
    snprintf(tmp, sizeof tmp, "%s/team", root);
    assert_int_equal(mkdir(tmp, 0700), 0);
    snprintf(tmp, sizeof tmp, "%s/team/dave", root);
    assert_int_equal(mkdir(tmp, 0700), 0);
    snprintf(tmp, sizeof tmp, "%s/team/dave/.tcpfile-tmp", root);
    assert_int_equal(mkdir(tmp, 0700), 0);
    snprintf(path, sizeof path, "%s/up-0123456789abcdef", tmp);
    tu_write_file(path, "half", 4);
    snprintf(path, sizeof path, "%s/resume-new", tmp);
    tu_write_file(path, "new", 3);
    tf_options *o = server_opts();
    test_server t;
    tu_server_start_in(&t, root, o);
    assert_int_equal(tu_count_prefix(tmp, "up-"), 0);
    assert_int_equal(tu_count_prefix(tmp, "resume-new"), 1);
    /* carol never logged in: her directory is not made by the sweep. */
    snprintf(path, sizeof path, "%s/carol", root);
    struct stat st;
    assert_int_equal(lstat(path, &st), -1);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* ---- guessing ------------------------------------------------------------------- */

/* 500 wrong tokens pipelined on one connection: after the first few, each
   is answered later than the one before, so in 2 s only a handful are;
   meanwhile the right user gets in at once, from another address and from
   the same one. */
static void test_auth_guessing_is_slowed(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    int fd = raw_connect(t.port, NULL);
    raw_hello(fd, 0x8);
    enum { GUESSES = 500 };
    size_t one = TF_WIRE_AUTH_SIZE + 3 + TF_TOKEN_LEN;
    uint8_t *all = malloc(one * GUESSES);
    assert_non_null(all);
    for (int i = 0; i < GUESSES; i++) {
        char guess[TF_TOKEN_SIZE];
        snprintf(guess, sizeof guess, "%032d", i);
        assert_int_equal(auth_frame(all + (size_t)i * one, one, "bob", guess), one);
    }
    int64_t start = tu_now_ms();
    raw_send(fd, all, one * GUESSES);
    free(all);

    int answered = 0;
    int64_t first_slow = 0, prev = start;
    tu_sleep_ms(300);
    for (int pass = 0; pass < 2; pass++) {
        /* The right user, from elsewhere (127.0.0.2) then from the same
           address, while the guesses wait. */
        int lfd = raw_connect(t.port, pass == 0 ? "127.0.0.2" : NULL);
        raw_hello(lfd, 0x8);
        uint8_t buf[256];
        size_t n = auth_frame(buf, sizeof buf, "bob", tok_bob);
        int64_t t0 = tu_now_ms();
        raw_send(lfd, buf, n);
        assert_int_equal(raw_response(lfd, NULL, NULL, NULL, 0, 5000), 0);
        int64_t took = tu_now_ms() - t0;
        print_message("right login from %s: %lld ms\n", pass == 0 ? "127.0.0.2" : "127.0.0.1",
                      (long long)took);
        assert_true(took < 1500);
        close(lfd);
    }
    /* At least 2 s from the start, and 1 s after the logins (which take
       long on a loaded machine or under the sanitizers). */
    int64_t until = start + 2000;
    if (until < tu_now_ms() + 1000)
        until = tu_now_ms() + 1000;
    while (tu_now_ms() < until) {
        char msg[64];
        int st = raw_response(fd, NULL, NULL, msg, sizeof msg, (int)(until - tu_now_ms()));
        if (st < 0)
            break;
        assert_int_equal(st, 4);
        assert_string_equal(msg, "authentication failed");
        int64_t now = tu_now_ms();
        if (!first_slow && now - prev >= 80)
            first_slow = now - start;
        prev = now;
        answered++;
    }
    print_message("%d of %d wrong tokens answered in %lld ms (the first slowed one after %lld"
                  " ms)\n",
                  answered, GUESSES, (long long)(until - start), (long long)first_slow);
    /* Unslowed, a check takes ~25 ms: 2 s would answer about 80 of them
       (38 on this machine under load); slowed, about 10. (Under the
       sanitizers a check takes 100-300 ms: then this tells little, but
       the first answers must still come.) */
    assert_true(answered >= 1);
    assert_true(answered < 20);
    close(fd);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* Checks of slow tokens run on the auth threads: a worker's other
   connections are served meanwhile. */
static void test_auth_slow_checks_do_not_stall_the_worker(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    assert_int_equal(tf_options_set(o, TF_OPT_WORKERS, 1), TF_OK);
    test_server t;
    tu_server_start(&t, o);
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", t.root);
    tu_write_file(path, "abc", 3);
    tf_client *c = login_ok(&t, "alice", tok_alice);

    /* 24 connections, each with 2 logins of an unknown user (each a full
       scrypt against the dummy entry): ~1.2 s of checks. */
    enum { CONNS = 24 };
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = raw_connect(t.port, "127.0.0.3");
        raw_hello(fds[i], 0x8);
    }
    uint8_t buf[256];
    size_t n = auth_frame(buf, sizeof buf, "nobody", tok_bob);
    memcpy(buf + n, buf, n);
    for (int i = 0; i < CONNS; i++)
        raw_send(fds[i], buf, 2 * n);
    int64_t worst = 0;
    for (int i = 0; i < 10; i++) {
        int64_t t0 = tu_now_ms();
        void *data;
        size_t len;
        assert_int_equal(tf_get_mem(c, "f.txt", &data, &len), TF_OK);
        tf_free(data);
        int64_t took = tu_now_ms() - t0;
        if (took > worst)
            worst = took;
        tu_sleep_ms(20);
    }
    print_message("slowest get during the checks: %lld ms\n", (long long)worst);
    /* Checked on the worker's own thread, the first get alone would wait
       for 24 scrypts (~600 ms). */
    assert_true(worst < 250);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    tf_close(c);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* Stopping with logins queued and running: the queued ones are cancelled,
   the running ones waited for, nothing leaks (ASan) or races (TSan). */
static void test_auth_stop_with_logins_in_flight(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    assert_int_equal(tf_options_set(o, TF_OPT_WORKERS, 2), TF_OK);
    test_server t;
    tu_server_start(&t, o);
    enum { CONNS = 16 };
    int fds[CONNS];
    uint8_t buf[256];
    size_t n = auth_frame(buf, sizeof buf, "bob", tok_bob);
    for (int i = 0; i < CONNS; i++) {
        fds[i] = raw_connect(t.port, NULL);
        raw_hello(fds[i], 0x8);
        raw_send(fds[i], buf, n);
    }
    tu_sleep_ms(10);
    int64_t t0 = tu_now_ms();
    tu_server_join(&t);
    assert_int_equal(t.run_rc, TF_OK);
    assert_true(tu_now_ms() - t0 < 5000);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* ---- the log ---------------------------------------------------------------------- */

#define LOG_KEEP 64
static struct {
    pthread_mutex_t lock;
    size_t count;
    struct {
        char op[16], name[64], user[64], message[256];
        int result;
    } e[LOG_KEEP];
} g_log = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void capture_log(void *user, const tf_request_log *entry)
{
    (void)user;
    pthread_mutex_lock(&g_log.lock);
    if (g_log.count < LOG_KEEP) {
        snprintf(g_log.e[g_log.count].op, 16, "%s", entry->op);
        snprintf(g_log.e[g_log.count].name, 64, "%s", entry->name);
        snprintf(g_log.e[g_log.count].user, 64, "%s", entry->user ? entry->user : "(null)");
        snprintf(g_log.e[g_log.count].message, 256, "%s", entry->message);
        g_log.e[g_log.count].result = entry->result;
    }
    g_log.count++;
    pthread_mutex_unlock(&g_log.lock);
}

static void test_auth_log_names_the_user(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    assert_int_equal(tf_options_set_log(o, capture_log, NULL), TF_OK);
    test_server t;
    tu_server_start(&t, o);
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", t.root);
    tu_write_file(path, "abc", 3);
    char wrong[TF_TOKEN_SIZE];
    memcpy(wrong, tok_bob, sizeof wrong);
    wrong[5] = wrong[5] == 'x' ? 'y' : 'x';
    tf_client *c = NULL;
    char why[256];
    assert_int_equal(login(&t, "bob", wrong, &c, why, sizeof why), TF_EACCES);
    c = login_ok(&t, "bob", tok_bob);
    void *data;
    size_t len;
    assert_int_equal(tf_get_mem(c, "f.txt", &data, &len), TF_OK);
    tf_free(data);
    tf_close(c);
    for (int i = 0; i < 200; i++) { /* the server logs after it has answered */
        pthread_mutex_lock(&g_log.lock);
        size_t n = g_log.count;
        pthread_mutex_unlock(&g_log.lock);
        if (n >= 3)
            break;
        tu_sleep_ms(10);
    }
    tu_server_stop(&t, 1);
    assert_int_equal(g_log.count, 3);
    assert_string_equal(g_log.e[0].op, "auth");
    assert_string_equal(g_log.e[0].name, "bob");
    assert_string_equal(g_log.e[0].user, "");
    assert_int_equal(g_log.e[0].result, TF_EACCES);
    assert_string_equal(g_log.e[0].message, "authentication failed");
    assert_string_equal(g_log.e[1].op, "auth");
    assert_string_equal(g_log.e[1].user, "bob");
    assert_int_equal(g_log.e[1].result, TF_OK);
    assert_string_equal(g_log.e[2].op, "get");
    assert_string_equal(g_log.e[2].user, "bob");
    for (size_t i = 0; i < 3; i++) {
        assert_null(strstr(g_log.e[i].message, tok_bob));
        assert_null(strstr(g_log.e[i].message, wrong));
        assert_null(strstr(g_log.e[i].name, wrong));
    }
    tf_options_free(o);
}

/* ---- replacing a token ------------------------------------------------------------- */

static void test_auth_reload_replaces_tokens(void **state)
{
    (void)state;
    char dir[256], file[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(file, sizeof file, "%s/users", dir);
    tf_options *o = new_opts();
    assert_int_equal(tf_options_set_string(o, TF_SOPT_USERS_FILE, file), TF_OK);
    char old_tok[TF_TOKEN_SIZE], new_tok[TF_TOKEN_SIZE], why[256];
    assert_int_equal(tf_users_add(o, "erin", "write", NULL, old_tok, sizeof old_tok, why,
                                  sizeof why),
                     TF_OK);
    test_server t;
    tu_server_start(&t, o);
    assert_int_equal(tf_server_user_count(t.srv), 1);
    tf_close(login_ok(&t, "erin", old_tok));
    assert_int_equal(tf_users_add(o, "erin", "write", NULL, new_tok, sizeof new_tok, why,
                                  sizeof why),
                     TF_OK);
    assert_int_equal(tf_users_add(o, "fred", "read", NULL, why, sizeof why, NULL, 0), TF_OK);
    assert_int_equal(tf_server_reload_users(t.srv, why, sizeof why), TF_OK);
    assert_int_equal(tf_server_user_count(t.srv), 2);
    tf_client *c = NULL;
    assert_int_equal(login(&t, "erin", old_tok, &c, why, sizeof why), TF_EACCES);
    tf_close(login_ok(&t, "erin", new_tok));
    /* A file broken meanwhile: the users in use are kept. */
    tu_write_file(file, "garbage\n", 8);
    assert_int_equal(tf_server_reload_users(t.srv, why, sizeof why), TF_EINVAL);
    tf_close(login_ok(&t, "erin", new_tok));
    tu_server_stop(&t, 1);
    tf_options_free(o);
    tu_rm_rf(dir);
    /* No users file: everyone is served, and there is nothing to reload. */
    tu_server_start(&t, NULL);
    assert_int_equal(tf_server_user_count(t.srv), TF_ENOENT);
    assert_int_equal(tf_server_reload_users(t.srv, NULL, 0), TF_ENOENT);
    tu_server_stop(&t, 1);
}

/* The event-driven client does not log in: meeting a server with users, it
   fails at once with TF_EACCES, each queued request with it. */
static void a_done(tf_aclient *a, void *user, tf_aresult *r)
{
    (void)a;
    *(int *)user = r->result;
}

static void test_auth_event_client_refused_clearly(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    tf_aclient *a = NULL;
    assert_int_equal(tf_aclient_connect_start(&a, "127.0.0.1", t.port, NULL, NULL, 0), TF_OK);
    int result = 1;
    assert_int_equal(tf_aclient_list(a, a_done, &result), TF_OK);
    int rc = TF_INPROGRESS;
    for (int i = 0; i < 500 && rc == TF_INPROGRESS; i++) {
        rc = tf_aclient_step(a);
        if (rc != TF_INPROGRESS)
            break;
        int ev = tf_aclient_events(a);
        struct pollfd p = {.fd = tf_aclient_fd(a),
                           .events = (short)(((ev & TF_WANT_READ) ? POLLIN : 0) |
                                             ((ev & TF_WANT_WRITE) ? POLLOUT : 0))};
        poll(&p, 1, 20);
    }
    assert_int_equal(rc, TF_EACCES);
    assert_int_equal(result, TF_EACCES);
    assert_non_null(strstr(tf_aclient_errmsg(a), "authentication required"));
    tf_aclient_close(a);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

/* The tree's operations go through the same rights table: a read user may
   stat, not mkdir nor remove; a confined writer's mkdir lands in its dir. */
static void test_auth_tree_ops_need_their_right(void **state)
{
    (void)state;
    tf_options *o = server_opts();
    test_server t;
    tu_server_start(&t, o);
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", t.root);
    tu_write_file(path, "abc", 3);
    tf_client *c = login_ok(&t, "alice", tok_alice);
    tf_stat_info st;
    assert_int_equal(tf_stat(c, "f.txt", &st), TF_OK);
    assert_int_equal(tf_mkdir(c, "d", 0), TF_EACCES);
    assert_string_equal(tf_errmsg(c), "user alice has read access only: mkdir needs write");
    assert_int_equal(tf_remove(c, "f.txt"), TF_EACCES);
    assert_non_null(strstr(tf_errmsg(c), "remove needs write"));
    tf_close(c);
    assert_int_equal(tu_file_size(path), 3);
    c = login_ok(&t, "carol", tok_carol);
    assert_int_equal(tf_mkdir(c, "d", 0), TF_OK);
    assert_int_equal(tf_stat(c, "f.txt", &st), TF_ENOENT);
    tf_close(c);
    struct stat sb;
    snprintf(path, sizeof path, "%s/carol/d", t.root);
    assert_int_equal(lstat(path, &sb), 0);
    snprintf(path, sizeof path, "%s/d", t.root);
    assert_int_equal(lstat(path, &sb), -1);
    tu_server_stop(&t, 1);
    tf_options_free(o);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_read_cannot_put),
        cmocka_unit_test(test_auth_write_can_put),
        cmocka_unit_test(test_auth_read_only_server_refuses_writers),
        cmocka_unit_test(test_auth_failures_are_identical),
        cmocka_unit_test(test_auth_required_before_requests),
        cmocka_unit_test(test_auth_frame_refused_when_not_expected),
        cmocka_unit_test(test_auth_users_file_that_does_not_parse),
        cmocka_unit_test(test_auth_sub_directory_confines),
        cmocka_unit_test(test_auth_partials_stay_in_user_dir),
        cmocka_unit_test(test_auth_startup_sweeps_user_dirs),
        cmocka_unit_test(test_auth_guessing_is_slowed),
        cmocka_unit_test(test_auth_slow_checks_do_not_stall_the_worker),
        cmocka_unit_test(test_auth_stop_with_logins_in_flight),
        cmocka_unit_test(test_auth_log_names_the_user),
        cmocka_unit_test(test_auth_reload_replaces_tokens),
        cmocka_unit_test(test_auth_event_client_refused_clearly),
        cmocka_unit_test(test_auth_tree_ops_need_their_right),
    };
    return TU_RUN_GROUP("auth", tests, group_setup, group_teardown, argc > 1 ? argv[1] : NULL);
}
