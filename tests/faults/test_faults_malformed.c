/*
 * test_faults_malformed.c - hundreds of malformed frames of every kind, over
 * raw sockets, against the real tcpfile-server program (its path is the
 * first argument), interleaved with normal tf_client requests that must all
 * succeed. Each bad input has an exact expected outcome: an error reply on
 * a connection that stays usable, an error reply and a close, or a close.
 * At the end the server's resident memory, threads and open connections
 * (read from /proc/PID) must be back at their baseline, no upload temporary
 * may be left, and the files the attacks aimed at must be intact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "digest.h"
#include "rawpeer.h"
#include "testutil.h"
#include "wire.h"

extern char **environ;

#define C TF_FEATURE_CHECKSUM
#define R TF_FEATURE_RESUME
#define S TF_FEATURE_STREAM
#define KEEP_SIZE ((size_t)100 << 10)
#define BIG_SIZE ((size_t)8 << 20)
#define HOLD_CONNECTIONS 200
#define RSS_SLACK_KIB (8 << 10)
/* How long the server may take to close a connection it should close. */
#define CLOSE_WAIT_MS 3000

static const char *g_server_bin;

static struct {
    pid_t pid;
    int out_fd;
    char port[16];
    char root[256];
    tf_client *steady; /* one long-lived normal client */
    uint8_t *keep;     /* keep.bin's content: every bad put aims at it */
    long base_rss_kib, peak_rss_kib, base_threads, base_sockets;
    long end_rss_kib, end_threads, end_sockets; /* after the attacks */
    int bad_inputs;                             /* malformed frames and streams sent */
    int normal_requests; /* normal requests, all of which succeeded */
    int resumable_cut;   /* keyed uploads cut off (their temporaries stay) */
} g;

/* ---- the server process ---------------------------------------------------- */

static long proc_status(const char *key)
{
    char path[64], line[256];
    long v = -1;
    size_t klen = strlen(key);
    snprintf(path, sizeof path, "/proc/%d/status", (int)g.pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            v = strtol(line + klen + 1, NULL, 10);
    fclose(f);
    return v;
}

/* Open sockets of the server: the listener plus one per connection. */
static long proc_sockets(void)
{
    char path[64], link[128], target[128];
    long n = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)g.pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        snprintf(link, sizeof link, "%s/%.20s", path, de->d_name);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k > 0) {
            target[k] = '\0';
            n += strncmp(target, "socket:", 7) == 0;
        }
    }
    closedir(d);
    return n;
}

static void note_peak(void)
{
    long rss = proc_status("VmRSS");
    if (rss > g.peak_rss_kib)
        g.peak_rss_kib = rss;
}

static void spawn_server(void)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    /* Plaintext: the raw peers write frames by hand (TLS has its own tests,
       test_tls_loopback and cli_tls). */
    char *argv[] = {(char *)g_server_bin, "--plaintext", "-q", "-b", "127.0.0.1", "0", g.root,
                    NULL};
    /* A sanitized server keeps freed memory in AddressSanitizer's
       quarantine (256 MiB by default), which would read as growth: keep it
       small. The setting means nothing to a server built without ASan. */
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    char asan[512];
    const char *had = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%squarantine_size_mb=1", had ? had : "",
             had && *had ? ":" : "");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "ASAN_OPTIONS=", 13) != 0)
            env[k++] = environ[i];
    env[k++] = asan;
    env[k] = NULL;
    assert_int_equal(posix_spawn(&g.pid, g_server_bin, &fa, NULL, argv, env), 0);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    g.out_fd = p[0];
    /* The banner carries the port: "server up and running on IP: A port N". */
    char line[256];
    size_t len = 0;
    while (len < sizeof line - 1 && !memchr(line, '\n', len)) {
        struct pollfd pf = {.fd = g.out_fd, .events = POLLIN};
        if (poll(&pf, 1, 10000) <= 0)
            fail_msg("no banner from %s within 10 s", g_server_bin);
        ssize_t got = read(g.out_fd, line + len, sizeof line - 1 - len);
        if (got <= 0)
            fail_msg("%s exited before its banner", g_server_bin);
        len += (size_t)got;
    }
    line[len] = '\0';
    const char *at = strstr(line, " port ");
    assert_non_null(at);
    snprintf(g.port, sizeof g.port, "%d", atoi(at + 6));
}

/* ---- normal service, interleaved ------------------------------------------------ */

static tf_client *connect_normal(void)
{
    tf_client *c = NULL;
    char err[256];
    int rc = tf_connect_ex(&c, "127.0.0.1", g.port, NULL, err, sizeof err);
    if (rc != TF_OK)
        fail_msg("a normal client cannot connect: %s (%s)", tf_errname(rc), err);
    return c;
}

/* A put, a get of it and (every fourth time, on a new connection) a list:
   all must succeed, with the bytes intact. */
static void normal_round(void)
{
    static unsigned k;
    k++;
    size_t n = 1 + (k * 7919u) % (256u << 10);
    uint8_t *data = malloc(n);
    char name[32];
    void *back;
    size_t back_len;
    tu_fill(data, n, k);
    snprintf(name, sizeof name, "normal-%u.bin", k % 8);
    int rc = tf_put_mem(g.steady, data, n, name);
    if (rc != TF_OK)
        fail_msg("normal put %u: %s (%s)", k, tf_errname(rc), tf_errmsg(g.steady));
    rc = tf_get_mem(g.steady, name, &back, &back_len);
    if (rc != TF_OK)
        fail_msg("normal get %u: %s (%s)", k, tf_errname(rc), tf_errmsg(g.steady));
    assert_int_equal(back_len, n);
    assert_memory_equal(back, data, n);
    tf_free(back);
    free(data);
    g.normal_requests += 2;
    if (k % 4 == 0) {
        tf_client *c = connect_normal();
        tf_listing *l;
        assert_int_equal(tf_list(c, &l), TF_OK);
        assert_true(tf_listing_count(l) >= 2);
        tf_listing_free(l);
        tf_close(c);
        g.normal_requests++;
    }
    note_peak();
}

/* Counts one bad input; every tenth, normal service must still be there. */
static void tried(void)
{
    if (++g.bad_inputs % 10 == 0)
        normal_round();
}

/* ---- expectations ------------------------------------------------------------------ */

/* A connection with its handshake done, asking for features. */
static int ready(uint32_t features)
{
    int fd = rp_connect(g.port);
    assert_true(fd >= 0);
    long got = rp_handshake(fd, features);
    if (got != (long)(features & (C | R | S)))
        fail_msg("handshake asking for features 0x%x gave %ld", features, got);
    return fd;
}

static void expect_closed(int fd, const char *what)
{
    if (!rp_wait_closed(fd, CLOSE_WAIT_MS))
        fail_msg("%s: the server did not close the connection within %d ms", what,
                 CLOSE_WAIT_MS);
    close(fd);
}

static void expect_reply(int fd, uint8_t op, int code, const char *what)
{
    tf_wire_response r;
    char msg[TF_WIRE_MESSAGE_MAX + 1];
    if (rp_read_response(fd, &r, msg, sizeof msg) != 0)
        fail_msg("%s: no response", what);
    if (r.op != op || r.status != tf__wire_status(code))
        fail_msg("%s: response op %u status %u (\"%s\"), expected op %u status %u (%s)",
                 what, r.op, r.status, msg, op, tf__wire_status(code), tf_errname(code));
    if (code != TF_OK && r.message_len == 0)
        fail_msg("%s: an error reply without a message", what);
}

/* An error reply, then the server closes. */
static void expect_reply_then_close(int fd, uint8_t op, int code, const char *what)
{
    expect_reply(fd, op, code, what);
    expect_closed(fd, what);
}

/* An error reply, and the connection stays in step (a list works). */
static void expect_reply_open(int fd, uint8_t op, int code, const char *what)
{
    expect_reply(fd, op, code, what);
    if (rp_list_ok(fd) != 0)
        fail_msg("%s: the connection is out of step after the error reply", what);
}

static void send_or_fail(int rc, const char *what)
{
    if (rc != 0)
        fail_msg("%s: sending failed: %s", what, strerror(errno));
}

/* Waits for the server to drop every plain upload temporary. */
static void expect_no_plain_temps(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/.tcpfile-tmp", g.root);
    for (int i = 0; i < 100 && tu_count_prefix(dir, "up-") > 0; i++)
        tu_sleep_ms(30);
    assert_int_equal(tu_count_prefix(dir, "up-"), 0);
}

static void expect_keep_intact(void)
{
    char path[512];
    size_t n;
    snprintf(path, sizeof path, "%s/keep.bin", g.root);
    uint8_t *now = tu_read_file(path, &n);
    assert_non_null(now);
    assert_int_equal(n, KEEP_SIZE);
    assert_memory_equal(now, g.keep, KEEP_SIZE);
    free(now);
}

/* ---- setup -------------------------------------------------------------------------- */

/* The teardown's checks may fail, and jump past its own stopping of the
   server: the server process must not outlive the test all the same. */
static void kill_server_at_exit(void)
{
    if (g.pid > 0) {
        kill(g.pid, SIGKILL);
        waitpid(g.pid, NULL, 0);
        g.pid = 0;
        tu_rm_rf(g.root);
    }
}

static int setup(void **state)
{
    (void)state;
    char path[512];
    atexit(kill_server_at_exit);
    tu_mkdtemp(g.root, sizeof g.root);
    g.keep = malloc(KEEP_SIZE);
    tu_fill(g.keep, KEEP_SIZE, 4);
    snprintf(path, sizeof path, "%s/keep.bin", g.root);
    tu_write_file(path, g.keep, KEEP_SIZE);
    uint8_t *big = malloc(BIG_SIZE);
    tu_fill(big, BIG_SIZE, 5);
    snprintf(path, sizeof path, "%s/big.bin", g.root);
    tu_write_file(path, big, BIG_SIZE);
    free(big);
    spawn_server();
    g.steady = connect_normal();
    /* Warm up: the baseline is a server that has served, not a fresh one. */
    for (int i = 0; i < 8; i++)
        normal_round();
    void *d;
    size_t n;
    assert_int_equal(tf_get_mem(g.steady, "big.bin", &d, &n), TF_OK);
    tf_free(d);
    tu_sleep_ms(200);
    g.base_rss_kib = g.peak_rss_kib = proc_status("VmRSS");
    g.base_threads = proc_status("Threads");
    g.base_sockets = proc_sockets();
    assert_true(g.base_rss_kib > 0 && g.base_threads > 0 && g.base_sockets > 0);
    return 0;
}

static void test_faults_resources_back_to_baseline(void **state);

static int teardown(void **state)
{
    /* ctest runs each test on its own (one entry each), so every one of
       them ends with the check that the server's memory, threads and
       sockets are back at their baseline. */
    if (g.steady != NULL)
        test_faults_resources_back_to_baseline(state);
    tf_close(g.steady);
    int status = -1;
    if (g.pid > 0) {
        kill(g.pid, SIGTERM);
        waitpid(g.pid, &status, 0);
        g.pid = 0;
    }
    close(g.out_fd);
    tu_rm_rf(g.root);
    free(g.keep);
    printf(
        "faults: malformed: %d bad inputs tried, %d normal requests interleaved (all "
        "succeeded); server RSS %ld KiB before, %ld KiB after (peak %ld), threads %ld -> "
        "%ld, sockets %ld -> %ld; bytes lost 0\n",
        g.bad_inputs, g.normal_requests, g.base_rss_kib, g.end_rss_kib, g.peak_rss_kib,
        g.base_threads, g.end_threads, g.base_sockets, g.end_sockets);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "the server did not stop cleanly (wait status 0x%x)\n", status);
        return -1;
    }
    return 0;
}

/* ---- hellos ------------------------------------------------------------------------- */

static void test_faults_bad_hellos(void **state)
{
    (void)state;
    int first = g.bad_inputs;
    char what[128];
    uint8_t good[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello ch = {1, 1, C | R};
    assert_int_equal(tf__wire_encode_client_hello(good, sizeof good, &ch), sizeof good);

    /* Every magic byte wrong, in several ways. */
    static const uint8_t wrong[] = {0x00, 0xff, 0x80, 0x01, ' ', 't', 'c', 'p', 'f', 'X'};
    for (int pos = 0; pos < 4; pos++) {
        for (size_t v = 0; v < sizeof wrong; v++) {
            if (wrong[v] == good[pos])
                continue;
            uint8_t b[sizeof good];
            memcpy(b, good, sizeof b);
            b[pos] = wrong[v];
            int fd = rp_connect(g.port);
            tf_wire_server_hello sh;
            assert_int_equal(rp_read_server_hello(fd, &sh), 0); /* sent at once */
            send_or_fail(rp_send(fd, b, sizeof b), "bad magic");
            snprintf(what, sizeof what, "magic byte %d = 0x%02x", pos, wrong[v]);
            expect_closed(fd, what);
            tried();
        }
    }

    /* Other protocols knocking. */
    static const char *const others[] = {
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS ClientHello */
        "PING\r\n",
        "\r\n",
        "tcpf\x00\x01\x00\x01",
        "TCPFTCPFTCPFTCPF",
        "*1\r\n$4\r\nPING\r\n",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        int fd = rp_connect(g.port);
        send_or_fail(rp_send(fd, others[i], strlen(others[i])), "foreign protocol");
        shutdown(fd, SHUT_WR);
        expect_closed(fd, "a foreign protocol");
        tried();
    }

    /* Every truncation of a good hello, then the end of the stream. */
    for (size_t len = 0; len < sizeof good; len++) {
        int fd = rp_connect(g.port);
        send_or_fail(rp_send(fd, good, len), "truncated hello");
        shutdown(fd, SHUT_WR);
        snprintf(what, sizeof what, "a hello cut at %zu bytes", len);
        expect_closed(fd, what);
        tried();
    }

    /* Versions with nothing in common with version 1, or malformed. */
    static const uint16_t versions[][2] = {{0, 0},     {0, 1},     {0, 65535},    {1, 0},
                                           {2, 1},     {2, 2},     {2, 65535},    {3, 4},
                                           {100, 200}, {65535, 1}, {65535, 65535}};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        int fd = rp_connect(g.port);
        send_or_fail(rp_send_hello(fd, versions[i][0], versions[i][1], C | R), "versions");
        snprintf(what, sizeof what, "versions %u-%u", versions[i][0], versions[i][1]);
        expect_closed(fd, what);
        tried();
    }

    /* Random garbage, every stream seeded. */
    for (unsigned seed = 1; seed <= 24; seed++) {
        uint8_t b[512];
        size_t len = 1 + (seed * 37u) % sizeof b;
        tu_fill(b, len, 1000 + seed);
        int fd = rp_connect(g.port);
        send_or_fail(rp_send(fd, b, len), "garbage hello");
        shutdown(fd, SHUT_WR);
        snprintf(what, sizeof what, "%zu random bytes (seed %u) as a hello", len, seed);
        expect_closed(fd, what);
        tried();
    }

    /* Not bad: a wide version range, unknown feature bits and a non-zero
       reserved field must all be accepted (the protocol says so). */
    int fd = rp_connect(g.port);
    assert_int_equal(rp_send_hello(fd, 1, 65535, 0xffffffffu), 0);
    tf_wire_server_hello sh;
    assert_int_equal(rp_read_server_hello(fd, &sh), 0);
    assert_int_equal(sh.features & ~TF_FEATURES_KNOWN, 0);
    assert_int_equal(rp_list_ok(fd), 0);
    close(fd);
    fd = rp_connect(g.port);
    uint8_t odd[sizeof good];
    memcpy(odd, good, sizeof odd);
    memset(odd + 12, 0xee, 4);
    assert_int_equal(rp_send(fd, odd, sizeof odd), 0);
    assert_int_equal(rp_read_server_hello(fd, &sh), 0);
    assert_int_equal(rp_list_ok(fd), 0);
    close(fd);
    printf("# hellos: %d bad inputs\n", g.bad_inputs - first);
}

/* ---- requests the server cannot frame: an EPROTO reply, then a close ---------------- */

static void test_faults_unframeable_requests(void **state)
{
    (void)state;
    int first = g.bad_inputs;
    static const uint32_t feature_sets[] = {0, C, R, C | R};
    static const uint8_t key[TF_UPLOAD_KEY_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    char what[128];

    /* Every unknown operation. */
    for (int op = 0; op < 256; op++) {
        if (op == TF_OP_GET || op == TF_OP_PUT || op == TF_OP_LIST)
            continue;
        int fd = ready(feature_sets[op % 4]);
        uint16_t nl = op % 3 == 0 ? 0 : 5;
        send_or_fail(rp_send_request(fd, (uint8_t)op, 0, nl, 0, 0, "a.txt", NULL), "op");
        snprintf(what, sizeof what, "unknown op %d", op);
        expect_reply_then_close(fd, (uint8_t)op, TF_EPROTO, what);
        tried();
    }

    /* Unknown flags on each operation (with the key bytes when bit 0 is
       set, so that the frame itself is complete). */
    static const uint8_t flags[] = {0x02, 0x04, 0x08, 0x10, 0x20,
                                    0x40, 0x80, 0x03, 0xfe, 0xff};
    for (size_t i = 0; i < sizeof flags; i++) {
        for (uint8_t op = TF_OP_GET; op <= TF_OP_LIST; op++) {
            int fd = ready(C | R);
            uint16_t nl = op == TF_OP_LIST ? 0 : 8;
            send_or_fail(rp_send_request(fd, op, flags[i], nl, op == TF_OP_PUT ? 10 : 0, 0,
                                         "keep.bin", (flags[i] & 1) ? key : NULL),
                         "flags");
            snprintf(what, sizeof what, "op %u with flags 0x%02x", op, flags[i]);
            expect_reply_then_close(fd, op, TF_EPROTO, what);
            tried();
        }
    }

    /* An upload key where it does not belong: on get and list, and on a put
       of a connection that did not negotiate RESUME. */
    struct {
        uint8_t op;
        uint32_t features;
    } keyed[] = {{TF_OP_GET, C | R}, {TF_OP_LIST, C | R}, {TF_OP_PUT, C}, {TF_OP_PUT, 0}};
    for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) {
        int fd = ready(keyed[i].features);
        uint16_t nl = keyed[i].op == TF_OP_LIST ? 0 : 8;
        send_or_fail(rp_send_request(fd, keyed[i].op, TF_REQ_UPLOAD_KEY, nl,
                                     keyed[i].op == TF_OP_PUT ? 10 : 0, 0, "keep.bin", key),
                     "key");
        snprintf(what, sizeof what, "an upload key on op %u, features 0x%x", keyed[i].op,
                 keyed[i].features);
        expect_reply_then_close(fd, keyed[i].op, TF_EPROTO, what);
        tried();
    }

    /* A request that cannot be framed safely and also has a name over the
       limit: framing wins (protocol.md, section 5). EPROTO and a close, not
       EINVAL and a skip of name_len bytes, which would leave the stream
       wherever the unknown part of the frame ends. */
    struct {
        uint8_t op, flags;
        uint64_t size, offset;
        uint32_t features;
        const char *what;
    } long_and_bad[] = {
        {0, 0, 0, 0, C | R, "unknown op 0"},
        {4, 0, 0, 0, C | R, "unknown op 4"},
        {0x7f, 0, 0, 0, C | R, "unknown op 0x7f"},
        {0xff, 0, 0, 0, C | R, "unknown op 0xff"},
        {TF_OP_GET, 0x02, 0, 0, C | R, "get with unknown flags"},
        {TF_OP_PUT, 0x80, 10, 0, C | R, "put with unknown flags"},
        {TF_OP_LIST, 0x04, 0, 0, C | R, "list with unknown flags"},
        {TF_OP_GET, 0, 5, 0, C | R, "get with a size"},
        {TF_OP_LIST, 0, 5, 0, C | R, "list with a size"},
        {TF_OP_PUT, 0, 10, 3, C | R, "put with an offset"},
        {TF_OP_GET, 0, 0, 3, C, "get with an offset without RESUME"},
        {TF_OP_PUT, TF_REQ_UPLOAD_KEY, 10, 0, C, "put with a key without RESUME"},
        {TF_OP_GET, TF_REQ_UPLOAD_KEY, 0, 0, C | R, "get with a key"},
    };
    for (size_t i = 0; i < sizeof long_and_bad / sizeof long_and_bad[0]; i++) {
        static const uint16_t lens[] = {256, 4097, 65535};
        int fd = ready(long_and_bad[i].features);
        /* Only the head: the name (and key) would follow. */
        uint8_t head[TF_WIRE_REQUEST_SIZE] = {long_and_bad[i].op, long_and_bad[i].flags};
        tf__put_u16(head + 2, lens[i % 3]);
        tf__put_u64(head + 8, long_and_bad[i].size);
        tf__put_u64(head + 16, long_and_bad[i].offset);
        send_or_fail(rp_send(fd, head, sizeof head), "head");
        snprintf(what, sizeof what, "%s, name_len %u", long_and_bad[i].what,
                 (unsigned)lens[i % 3]);
        expect_reply_then_close(fd, long_and_bad[i].op, TF_EPROTO, what);
        tried();
    }

    /* Offsets without RESUME, or on put and list. */
    static const uint64_t offsets[] = {1, (uint64_t)1 << 40, UINT64_MAX};
    for (size_t i = 0; i < 3; i++) {
        for (uint32_t f = 0; f <= C; f += C) {
            int fd = ready(f);
            send_or_fail(
                rp_send_request(fd, TF_OP_GET, 0, 8, 0, offsets[i], "keep.bin", NULL),
                "offset");
            snprintf(what, sizeof what, "get at offset %llu without RESUME",
                     (unsigned long long)offsets[i]);
            expect_reply_then_close(fd, TF_OP_GET, TF_EPROTO, what);
            tried();
        }
        int fd = ready(C | R);
        send_or_fail(rp_send_request(fd, TF_OP_PUT, 0, 8, 10, offsets[i], "keep.bin", NULL),
                     "offset");
        expect_reply_then_close(fd, TF_OP_PUT, TF_EPROTO, "put with an offset");
        tried();
        fd = ready(C | R);
        send_or_fail(rp_send_request(fd, TF_OP_LIST, 0, 0, 0, offsets[i], NULL, NULL),
                     "offset");
        expect_reply_then_close(fd, TF_OP_LIST, TF_EPROTO, "list with an offset");
        tried();
    }

    /* Sizes on get and list. */
    static const uint64_t sizes[] = {1, 4096, (uint64_t)1 << 63, UINT64_MAX};
    for (size_t i = 0; i < 4; i++) {
        int fd = ready(feature_sets[i]);
        send_or_fail(rp_send_request(fd, TF_OP_GET, 0, 8, sizes[i], 0, "keep.bin", NULL),
                     "size");
        expect_reply_then_close(fd, TF_OP_GET, TF_EPROTO, "get with a size");
        tried();
        fd = ready(feature_sets[i]);
        send_or_fail(rp_send_request(fd, TF_OP_LIST, 0, 0, sizes[i], 0, NULL, NULL),
                     "size");
        expect_reply_then_close(fd, TF_OP_LIST, TF_EPROTO, "list with a size");
        tried();
    }
    printf("# unframeable requests: %d bad inputs\n", g.bad_inputs - first);
}

/* Streamed puts (docs/protocol.md, section 4a): the STREAM flag without the
   feature, off put, with a size or a key, and a chunk over 1 MiB, are
   framing errors (EPROTO and a close); a stream cut off stores nothing. */
static void test_faults_stream_framing(void **state)
{
    (void)state;
    static const uint8_t key[TF_UPLOAD_KEY_SIZE] = {1, 2, 3};
    struct {
        uint8_t op, flags;
        uint64_t size;
        uint32_t features;
        const char *what;
    } bad[] = {
        {TF_OP_PUT, TF_REQ_STREAM, 0, C | R, "STREAM without the feature"},
        {TF_OP_GET, TF_REQ_STREAM, 0, C | R | S, "STREAM on get"},
        {TF_OP_LIST, TF_REQ_STREAM, 0, C | R | S, "STREAM on list"},
        {TF_OP_PUT, TF_REQ_STREAM, 10, C | R | S, "STREAM with a size"},
        {TF_OP_PUT, TF_REQ_STREAM | TF_REQ_UPLOAD_KEY, 0, C | R | S, "STREAM with a key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = ready(bad[i].features);
        uint16_t nl = bad[i].op == TF_OP_LIST ? 0 : 8;
        send_or_fail(rp_send_request(fd, bad[i].op, bad[i].flags, nl, bad[i].size, 0,
                                     "keep.bin",
                                     (bad[i].flags & TF_REQ_UPLOAD_KEY) ? key : NULL),
                     bad[i].what);
        expect_reply_then_close(fd, bad[i].op, TF_EPROTO, bad[i].what);
        tried();
    }
    /* A chunk over the maximum, after a good one. */
    int fd = ready(C | R | S);
    send_or_fail(rp_send_request(fd, TF_OP_PUT, TF_REQ_STREAM, 10, 0, 0, "stream.bin", NULL),
                 "stream");
    expect_reply(fd, TF_OP_PUT, TF_OK, "streamed put's go-ahead");
    uint8_t chunk[4 + 3] = {0, 0, 0, 3, 'a', 'b', 'c'};
    send_or_fail(rp_send(fd, chunk, sizeof chunk), "chunk");
    uint8_t over[4];
    tf__put_u32(over, TF_WIRE_CHUNK_MAX + 1);
    send_or_fail(rp_send(fd, over, sizeof over), "oversized chunk head");
    expect_reply_then_close(fd, TF_OP_PUT, TF_EPROTO, "a chunk over 1 MiB");
    tried();
    /* Cut off mid-chunk and between chunks: nothing stored. */
    for (int mid = 0; mid < 2; mid++) {
        fd = ready(C | R | S);
        send_or_fail(
            rp_send_request(fd, TF_OP_PUT, TF_REQ_STREAM, 10, 0, 0, "stream.bin", NULL),
            "stream");
        expect_reply(fd, TF_OP_PUT, TF_OK, "streamed put's go-ahead");
        send_or_fail(rp_send(fd, chunk, mid ? 5 : sizeof chunk), "chunk");
        rp_abort(fd);
        tried();
    }
    char path[600];
    snprintf(path, sizeof path, "%s/stream.bin", g.root);
    assert_true(access(path, F_OK) != 0);
}

/* ---- requests refused on a connection that stays open ------------------------------- */

static void test_faults_refused_requests(void **state)
{
    (void)state;
    int first = g.bad_inputs;
    char what[160];

    /* Names longer than the limit (255), up to what name_len can say: the
       server answers EINVAL and skips the name, and the stream goes on. */
    static const uint16_t lens[] = {256, 1000, 4096, 4097, 65535};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (uint8_t op = TF_OP_GET; op <= TF_OP_LIST; op++) {
            int fd = ready(C | R);
            send_or_fail(rp_send_request(fd, op, 0, lens[i], op == TF_OP_PUT ? 100 : 0, 0,
                                         NULL, NULL),
                         "long name");
            snprintf(what, sizeof what, "op %u with a %u-byte name", op, lens[i]);
            expect_reply_open(fd, op, TF_EINVAL, what);
            close(fd);
            tried();
        }
    }

    /* Bad names of every kind, all on one connection. */
    static const struct {
        const char *bytes;
        uint16_t len;
    } names[] = {
        {"", 0},
        {".", 1},
        {"..", 2},
        {"a/b", 3},
        {"/etc/passwd", 11},
        {"../keep.bin", 11},
        {"x\0y", 3},
        {"\n", 1},
        {"a\tb", 3},
        {"\x7f", 1},
        {"\xc2\x80", 2},         /* U+0080, a C1 control */
        {"\xff", 1},             /* never valid in UTF-8 */
        {"\xc0\xaf", 2},         /* an overlong "/" */
        {"\xe0\x80\xaf", 3},     /* another overlong "/" */
        {"\xed\xa0\x80", 3},     /* a surrogate */
        {"\xf4\x90\x80\x80", 4}, /* above U+10FFFF */
        {"\xc3", 1},             /* a truncated sequence */
        {"keep.bin\xc3", 9},
        {".tcpfile-tmp/up-0", 17},
    };
    int fd = ready(C | R);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        for (uint8_t op = TF_OP_GET; op <= TF_OP_PUT; op++) {
            send_or_fail(rp_send_request(fd, op, 0, names[i].len, op == TF_OP_PUT ? 10 : 0,
                                         0, names[i].bytes, NULL),
                         "bad name");
            snprintf(what, sizeof what, "op %u, bad name #%zu", op, i);
            expect_reply(fd, op, TF_EINVAL, what);
            tried();
        }
    }
    assert_int_equal(rp_list_ok(fd), 0);

    /* A list that names a file. */
    send_or_fail(rp_send_request(fd, TF_OP_LIST, 0, 8, 0, 0, "keep.bin", NULL),
                 "list name");
    expect_reply_open(fd, TF_OP_LIST, TF_EINVAL, "a list with a name");
    tried();

    /* The uploads' own directory is neither served nor writable. */
    send_or_fail(rp_send_request(fd, TF_OP_GET, 0, 12, 0, 0, ".tcpfile-tmp", NULL), "tmp");
    expect_reply_open(fd, TF_OP_GET, TF_EACCES, "get .tcpfile-tmp");
    tried();
    send_or_fail(rp_send_request(fd, TF_OP_PUT, 0, 12, 10, 0, ".tcpfile-tmp", NULL), "tmp");
    expect_reply_open(fd, TF_OP_PUT, TF_EACCES, "put .tcpfile-tmp");
    tried();
    close(fd);
    expect_keep_intact();
    printf("# refused requests: %d bad inputs\n", g.bad_inputs - first);
}

/* ---- truncated frames and garbage after good ones --------------------------------------
 */

static void test_faults_truncated_and_trailing_garbage(void **state)
{
    (void)state;
    int first = g.bad_inputs;
    char what[128];
    uint8_t req[TF_WIRE_REQUEST_SIZE + 8];
    tf_wire_request q = {.op = TF_OP_GET, .name = "keep.bin", .name_len = 8};
    assert_int_equal(tf__wire_encode_request(req, sizeof req, &q), sizeof req);

    /* Every truncation of a get request, then the end of the stream. */
    for (size_t len = 1; len < sizeof req; len++) {
        int fd = ready(len % 2 ? C : C | R);
        send_or_fail(rp_send(fd, req, len), "truncated request");
        shutdown(fd, SHUT_WR);
        snprintf(what, sizeof what, "a request cut at %zu of %zu bytes", len, sizeof req);
        expect_closed(fd, what);
        tried();
    }
    /* A keyed put whose key is cut short. */
    {
        static const uint8_t key[TF_UPLOAD_KEY_SIZE] = {9};
        uint8_t b[TF_WIRE_REQUEST_SIZE + 8 + TF_UPLOAD_KEY_SIZE];
        tf_wire_request p = {.op = TF_OP_PUT,
                             .flags = TF_REQ_UPLOAD_KEY,
                             .name = "keep.bin",
                             .name_len = 8,
                             .size = 10,
                             .key = key};
        assert_int_equal(tf__wire_encode_request(b, sizeof b, &p), sizeof b);
        int fd = ready(C | R);
        send_or_fail(rp_send(fd, b, sizeof b - 7), "cut key");
        shutdown(fd, SHUT_WR);
        expect_closed(fd, "a put whose upload key is cut short");
        tried();
    }

    /* Garbage after a good list: short garbage is a truncated request;
       24 bytes or more of 0xfe (with a name_len of 0) an unknown operation. */
    static const size_t garbage[] = {1, 8, 23, 24, 100, 4096};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        size_t n = TF_WIRE_REQUEST_SIZE + garbage[i];
        uint8_t *b = malloc(n);
        tf_wire_request l = {.op = TF_OP_LIST};
        assert_int_equal(tf__wire_encode_request(b, n, &l), TF_WIRE_REQUEST_SIZE);
        memset(b + TF_WIRE_REQUEST_SIZE, 0xfe, garbage[i]);
        if (garbage[i] >= 4)
            memset(b + TF_WIRE_REQUEST_SIZE + 2, 0, 2);
        int fd = ready(C);
        send_or_fail(rp_send(fd, b, n), "garbage after list");
        free(b);
        tf_wire_response r;
        assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
        assert_int_equal(r.status, 0);
        assert_int_equal(rp_read_payload(fd, r.size), 0);
        snprintf(what, sizeof what, "%zu bytes of garbage after a list", garbage[i]);
        if (garbage[i] >= TF_WIRE_REQUEST_SIZE) {
            expect_reply_then_close(fd, 0xfe, TF_EPROTO, what);
        } else {
            shutdown(fd, SHUT_WR);
            expect_closed(fd, what);
        }
        tried();
    }

    /* Garbage after a whole get, and after a whole put. */
    {
        uint8_t b[sizeof req + TF_WIRE_REQUEST_SIZE];
        memcpy(b, req, sizeof req);
        memset(b + sizeof req, 0, TF_WIRE_REQUEST_SIZE); /* op 0 */
        int fd = ready(0);
        send_or_fail(rp_send(fd, b, sizeof b), "garbage after get");
        tf_wire_response r;
        assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
        assert_int_equal(r.size, KEEP_SIZE);
        assert_int_equal(rp_read_payload(fd, r.size), 0);
        expect_reply_then_close(fd, 0, TF_EPROTO, "zeros after a get");
        tried();

        fd = ready(0);
        send_or_fail(rp_send_request(fd, TF_OP_PUT, 0, 11, 5, 0, "scratch.bin", NULL),
                     "put");
        expect_reply(fd, TF_OP_PUT, TF_OK, "go-ahead");
        uint8_t tail[5 + TF_WIRE_TRAILER_SIZE + 40];
        memcpy(tail, "hello", 5);
        memset(tail + 5, 0, TF_WIRE_TRAILER_SIZE); /* a good trailer (no checksum) */
        memset(tail + 5 + TF_WIRE_TRAILER_SIZE, 0xfe, 40);
        memset(tail + 5 + TF_WIRE_TRAILER_SIZE + 2, 0, 2); /* name_len 0 */
        send_or_fail(rp_send(fd, tail, sizeof tail), "put + garbage");
        expect_reply(fd, TF_OP_PUT, TF_OK, "the put before the garbage");
        expect_reply_then_close(fd, 0xfe, TF_EPROTO, "garbage after a put");
        tried();
    }

    /* Random streams after a good handshake: whatever they decode to, the
       server must answer or close, and live on. */
    for (unsigned seed = 1; seed <= 64; seed++) {
        uint8_t b[300];
        size_t len = 1 + (seed * 53u) % sizeof b;
        tu_fill(b, len, 5000 + seed);
        int fd = ready(seed % 4 == 0 ? 0 : C | R);
        rp_send(fd, b, len); /* the server may already have closed */
        shutdown(fd, SHUT_WR);
        snprintf(what, sizeof what, "%zu random bytes (seed %u) after a handshake", len,
                 seed);
        expect_closed(fd, what);
        tried();
    }
    printf("# truncated frames and trailing garbage: %d bad inputs\n",
           g.bad_inputs - first);
}

/* ---- payloads and trailers
 * ---------------------------------------------------------------- */

/* Starts a put of size bytes of name and sends the payload. */
static void put_payload(int fd, const char *name, const uint8_t *data, uint64_t size,
                        const uint8_t *key)
{
    send_or_fail(rp_send_request(fd, TF_OP_PUT, key ? TF_REQ_UPLOAD_KEY : 0,
                                 (uint16_t)strlen(name), size, 0, name, key),
                 "put");
    expect_reply(fd, TF_OP_PUT, TF_OK, "the go-ahead");
    if (data)
        send_or_fail(rp_send(fd, data, (size_t)size), "payload");
}

static void digest_of(const uint8_t *data, size_t n, uint8_t out[TF_DIGEST_SIZE])
{
    tf__digest d = {0};
    assert_int_equal(tf__digest_begin(&d, 1), TF_OK);
    tf__digest_update(&d, data, n);
    tf__digest_final(&d, out);
    tf__digest_end(&d);
}

static void test_faults_bad_trailers(void **state)
{
    (void)state;
    int first = g.bad_inputs;
    char what[128];
    uint8_t data[1000], good[TF_DIGEST_SIZE];
    tu_fill(data, sizeof data, 77);
    digest_of(data, sizeof data, good);

    /* Trailers that report a failure: nothing is stored, the failure comes
       back (statuses the server does not know, from a newer client, as the
       generic EINTERNAL), and the connection goes on. */
    static const uint16_t statuses[] = {1,  2,  3,  4,  5,  6,  7,  8,   9,
                                        10, 11, 12, 13, 14, 15, 16, 100, 65535};
    for (uint32_t f = 0; f <= C; f += C) {
        int fd = ready(f);
        for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
            put_payload(fd, "keep.bin", data, sizeof data, NULL);
            send_or_fail(rp_send_trailer(fd, statuses[i], NULL, 0), "trailer");
            int want = tf__wire_status_known(statuses[i]) ? -(int)statuses[i] : TF_EINTERNAL;
            snprintf(what, sizeof what, "a trailer with status %u", statuses[i]);
            expect_reply(fd, TF_OP_PUT, want, what);
            tried();
        }
        assert_int_equal(rp_list_ok(fd), 0);
        close(fd);
    }
    expect_keep_intact();

    /* A failing trailer with a digest (protocol.md, Trailer): the digest,
       of any length up to 64, is not looked at - not even the right one
       turns it into a success - and the reply carries the trailer's
       status, with or without CHECKSUM; the connection goes on. */
    static const uint16_t fail_dlens[] = {TF_DIGEST_SIZE, 5, TF_WIRE_DIGEST_MAX};
    for (uint32_t f = 0; f <= C; f += C) {
        int fd = ready(f);
        for (size_t i = 0; i < sizeof fail_dlens / sizeof fail_dlens[0]; i++) {
            put_payload(fd, "keep.bin", data, sizeof data, NULL);
            send_or_fail(rp_send_trailer(fd, 14, fail_dlens[i] == TF_DIGEST_SIZE ? good : NULL,
                                         fail_dlens[i]),
                         "trailer");
            snprintf(what, sizeof what, "a trailer with status 14 and a %u-byte digest",
                     fail_dlens[i]);
            expect_reply(fd, TF_OP_PUT, TF_ECANCELED, what);
            tried();
        }
        assert_int_equal(rp_list_ok(fd), 0);
        close(fd);
    }
    expect_keep_intact();

    /* Wrong digests: every byte of the right one flipped, and all zeros. */
    int fd = ready(C);
    for (int i = 0; i <= TF_DIGEST_SIZE; i++) {
        uint8_t bad[TF_DIGEST_SIZE];
        memcpy(bad, good, sizeof bad);
        if (i < TF_DIGEST_SIZE)
            bad[i] ^= (uint8_t)(1u << (i % 8));
        else
            memset(bad, 0, sizeof bad);
        put_payload(fd, "keep.bin", data, sizeof data, NULL);
        send_or_fail(rp_send_trailer(fd, 0, bad, TF_DIGEST_SIZE), "trailer");
        snprintf(what, sizeof what, "a digest with byte %d wrong", i);
        expect_reply(fd, TF_OP_PUT, TF_ECHECKSUM, what);
        tried();
    }
    /* The right digest is accepted: the check is real, not a refusal. */
    put_payload(fd, "digest-ok.bin", data, sizeof data, NULL);
    send_or_fail(rp_send_trailer(fd, 0, good, TF_DIGEST_SIZE), "trailer");
    expect_reply(fd, TF_OP_PUT, TF_OK, "the right digest");
    close(fd);
    expect_keep_intact();

    /* Digests of the wrong length: with CHECKSUM a success must carry 16
       bytes, without it none. Up to 64 the trailer is well framed: the
       server replies EPROTO, then closes; over 64 it is malformed and the
       server just closes. */
    static const uint16_t dlens[] = {0, 1, 15, 17, 32, 64, 65, 1000, 65535};
    for (size_t i = 0; i < sizeof dlens / sizeof dlens[0]; i++) {
        fd = ready(C);
        put_payload(fd, "keep.bin", data, sizeof data, NULL);
        snprintf(what, sizeof what, "a %u-byte digest", dlens[i]);
        if (dlens[i] > TF_WIRE_DIGEST_MAX) { /* its length alone is refused */
            uint8_t head[TF_WIRE_TRAILER_SIZE];
            tf__put_u16(head, 0);
            tf__put_u16(head + 2, dlens[i]);
            rp_send(fd, head, sizeof head);
            expect_closed(fd, what);
        } else {
            rp_send_trailer(fd, 0, NULL, dlens[i]);
            expect_reply_then_close(fd, TF_OP_PUT, TF_EPROTO, what);
        }
        tried();
    }
    fd = ready(0);
    put_payload(fd, "keep.bin", data, sizeof data, NULL);
    rp_send_trailer(fd, 0, good, TF_DIGEST_SIZE);
    expect_reply_then_close(fd, TF_OP_PUT, TF_EPROTO, "a digest without CHECKSUM");
    tried();

    /* Payloads and trailers cut short. */
    for (size_t cut = 0; cut < TF_WIRE_TRAILER_SIZE; cut++) {
        fd = ready(0);
        put_payload(fd, "keep.bin", data, sizeof data, NULL);
        uint8_t t[TF_WIRE_TRAILER_SIZE] = {0};
        rp_send(fd, t, cut);
        shutdown(fd, SHUT_WR);
        snprintf(what, sizeof what, "a trailer cut at %zu bytes", cut);
        expect_closed(fd, what);
        tried();
    }
    for (size_t part = 1; part < sizeof data; part += 400) {
        fd = ready(C);
        put_payload(fd, "keep.bin", NULL, sizeof data, NULL);
        rp_send(fd, data, part);
        shutdown(fd, SHUT_WR);
        snprintf(what, sizeof what, "a payload cut at %zu bytes", part);
        expect_closed(fd, what);
        tried();
    }
    expect_no_plain_temps();
    expect_keep_intact();
    printf("# payloads and trailers: %d bad inputs\n", g.bad_inputs - first);
}

/* ---- sizes the peer never backs with data
 * --------------------------------------------------- */

static void test_faults_huge_sizes(void **state)
{
    (void)state;
    int first = g.bad_inputs;
    char what[128];
    static const uint64_t sizes[] = {UINT64_MAX, (uint64_t)1 << 63, (uint64_t)1 << 40,
                                     (uint64_t)1 << 32};
    static uint8_t mib[1 << 20];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int how = 0; how < 3; how++) {
            int fd = ready(how == 2 ? C : 0);
            put_payload(fd, i % 2 ? "keep.bin" : "huge.bin", NULL, sizes[i], NULL);
            if (how >= 1)
                rp_send(fd, mib, sizeof mib); /* a little, then nothing */
            note_peak();
            if (how == 1) {
                rp_abort(fd);
            } else {
                shutdown(fd, SHUT_WR);
                snprintf(what, sizeof what, "a put announcing %llu bytes",
                         (unsigned long long)sizes[i]);
                expect_closed(fd, what);
            }
            tried();
        }
    }
    /* Keyed, the same: the server keeps what came (if anything) for a later
       resume. */
    for (int i = 0; i < 2; i++) {
        uint8_t key[TF_UPLOAD_KEY_SIZE];
        tu_fill(key, sizeof key, 900 + (uint64_t)i);
        int fd = ready(C | R);
        put_payload(fd, "huge-keyed.bin", NULL, UINT64_MAX, key);
        rp_send(fd, mib, (size_t)(i * 4096));
        shutdown(fd, SHUT_WR);
        expect_closed(fd, "a keyed put announcing 2^64-1 bytes");
        g.resumable_cut += i > 0; /* an empty partial is not kept */
        tried();
    }
    /* Offsets past the end of the file: served whole, flagged FROM_START. */
    static const uint64_t offsets[] = {KEEP_SIZE + 1, UINT64_MAX};
    for (size_t i = 0; i < 2; i++) {
        int fd = ready(C | R);
        send_or_fail(rp_send_request(fd, TF_OP_GET, 0, 8, 0, offsets[i], "keep.bin", NULL),
                     "offset");
        tf_wire_response r;
        assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.flags, TF_RESP_FROM_START);
        assert_int_equal(r.size, KEEP_SIZE);
        assert_int_equal(rp_read_payload(fd, r.size), 0);
        assert_int_equal(rp_list_ok(fd), 0);
        close(fd);
        tried();
    }
    expect_no_plain_temps();
    expect_keep_intact();
    char path[512];
    snprintf(path, sizeof path, "%s/huge.bin", g.root);
    assert_int_equal(tu_file_size(path), -1);
    printf("# sizes without data: %d bad inputs\n", g.bad_inputs - first);
}

/* ---- peers that vanish
 * ------------------------------------------------------------------------- */

static void test_faults_vanishing_peers(void **state)
{
    (void)state;
    int first = g.bad_inputs;
    for (int i = 0; i < 5; i++) {
        int fd = rp_connect(g.port); /* not a byte */
        if (i % 2)
            rp_abort(fd);
        else
            close(fd);
        tried();
        fd = rp_connect(g.port); /* a hello, then gone */
        rp_send_hello(fd, 1, 1, C | R);
        if (i % 2)
            rp_abort(fd);
        else
            close(fd);
        tried();
    }
    /* A get of 8 MiB nobody reads, cut with a reset or a close. */
    for (int i = 0; i < 4; i++) {
        int fd = ready(i % 2 ? C : 0);
        rp_send_request(fd, TF_OP_GET, 0, 7, 0, 0, "big.bin", NULL);
        tu_sleep_ms(20);
        note_peak();
        if (i < 2)
            rp_abort(fd);
        else
            close(fd);
        tried();
    }
    /* Hundreds of requests pipelined, none of the answers read. */
    for (int i = 0; i < 3; i++) {
        int fd = ready(C);
        uint8_t b[200 * (TF_WIRE_REQUEST_SIZE + 7)];
        size_t n = 0;
        for (int k = 0; k < 200; k++) {
            tf_wire_request q = {.op = k % 2 ? TF_OP_LIST : TF_OP_GET,
                                 .name = k % 2 ? NULL : "big.bin",
                                 .name_len = k % 2 ? 0 : 7};
            n += (size_t)tf__wire_encode_request(b + n, sizeof b - n, &q);
        }
        rp_send(fd, b, n);
        tu_sleep_ms(20);
        rp_abort(fd);
        tried();
    }
    printf("# vanishing peers: %d bad inputs\n", g.bad_inputs - first);
}

/* ---- many half-sent frames at once
 * --------------------------------------------------------- */

static void test_faults_many_partial_frames_at_once(void **state)
{
    (void)state;
    int first = g.bad_inputs;
    int fds[HOLD_CONNECTIONS];
    uint8_t half[12] = {TF_OP_PUT, 0, 0, 8};
    for (int i = 0; i < HOLD_CONNECTIONS; i++) {
        fds[i] = ready(C | R);
        send_or_fail(rp_send(fds[i], half, sizeof half), "half request");
    }
    long held = 0;
    for (int i = 0; i < 100 && held < g.base_sockets + HOLD_CONNECTIONS; i++) {
        held = proc_sockets();
        tu_sleep_ms(10);
    }
    assert_true(held >= g.base_sockets + HOLD_CONNECTIONS);
    note_peak();
    normal_round(); /* served while they hang */
    for (int i = 0; i < HOLD_CONNECTIONS; i++) {
        if (i % 2)
            rp_abort(fds[i]);
        else
            close(fds[i]);
        tried();
    }
    printf("# partial frames at once: %d bad inputs\n", g.bad_inputs - first);
}

/* ---- and afterwards
 * ------------------------------------------------------------------------- */

static void test_faults_resources_back_to_baseline(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++)
        normal_round();
    /* Closing connections linger up to a second on the server. */
    long sockets = -1;
    for (int i = 0; i < 100; i++) {
        sockets = proc_sockets();
        if (sockets == g.base_sockets)
            break;
        tu_sleep_ms(50);
    }
    long rss = proc_status("VmRSS"), threads = proc_status("Threads");
    g.end_rss_kib = rss;
    g.end_threads = threads;
    g.end_sockets = sockets;
    assert_int_equal(sockets, g.base_sockets);
    assert_int_equal(threads, g.base_threads);
    assert_true(rss <= g.base_rss_kib + RSS_SLACK_KIB);

    char dir[512];
    snprintf(dir, sizeof dir, "%s/.tcpfile-tmp", g.root);
    assert_int_equal(tu_count_prefix(dir, "up-"), 0);
    /* Cut keyed uploads wait for a resume, by design, until their TTL. */
    assert_int_equal(tu_count_prefix(dir, "resume-"), g.resumable_cut);
    expect_keep_intact();
    tf_listing *l;
    assert_int_equal(tf_list(g.steady, &l), TF_OK);
    for (size_t i = 0; i < tf_listing_count(l); i++) {
        const char *n = tf_listing_at(l, i)->name;
        assert_true(strcmp(n, "keep.bin") == 0 || strcmp(n, "big.bin") == 0 ||
                    strcmp(n, "scratch.bin") == 0 || strcmp(n, "digest-ok.bin") == 0 ||
                    strncmp(n, "normal-", 7) == 0);
    }
    tf_listing_free(l);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s PATH/TO/tcpfile-server [TEST]\n", argv[0]);
        return 2;
    }
    g_server_bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_bad_hellos),
        cmocka_unit_test(test_faults_unframeable_requests),
        cmocka_unit_test(test_faults_refused_requests),
        cmocka_unit_test(test_faults_truncated_and_trailing_garbage),
        cmocka_unit_test(test_faults_bad_trailers),
        cmocka_unit_test(test_faults_huge_sizes),
        cmocka_unit_test(test_faults_stream_framing),
        cmocka_unit_test(test_faults_vanishing_peers),
        cmocka_unit_test(test_faults_many_partial_frames_at_once),
        cmocka_unit_test(test_faults_resources_back_to_baseline),
    };
    return TU_RUN_GROUP("malformed", tests, setup, teardown, argc > 2 ? argv[2] : NULL);
}
