/*
 * test_loopback.c - integration tests over loopback: a real server on
 * 127.0.0.1 port 0 running in a thread, real clients, and raw sockets that
 * speak the protocol by hand through the wire codec (wire.h), to reach the
 * server with frames a tf_client would never send.
 *
 * The group setup creates the main server's root and a client-side
 * directory under /tmp; tests that need other server options start their
 * own server (each with its own root). Every test compares bytes and
 * return codes; the per-test teardown closes whatever a failed test left
 * open, and the group teardown stops the servers and removes every
 * directory. Servers, files and content come from testutil.h, the byte
 * I/O of the raw connections from faults/rawpeer.h.
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
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "faults/rawpeer.h"
#include "tcpfile.h"
#include "testutil.h"
#include "wire.h"

#define BIG_SIZE ((size_t)64 << 20)
#define MID_SIZE (((size_t)8 << 20) + 12345)
#define MAX_TRACKED 32
#define MAX_EXTRA 2
#define PART_PREFIX ".tcpfile-part-"
#define TMP_DIR ".tcpfile-tmp"

/* ------------------------------------------------------------------------ */
/* Assertions that say what the library said                                */
/* ------------------------------------------------------------------------ */

#define expect_rc(c, call, want)                                                           \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        int want_ = (want);                                                                \
        if (rc_ != want_) {                                                                \
            print_error("%s gave %s, expected %s (message: \"%s\")\n", #call,              \
                        tf_errname(rc_), tf_errname(want_), tf_errmsg(c));                 \
            fail();                                                                        \
        }                                                                                  \
    } while (0)

#define expect_ok(c, call) expect_rc(c, call, TF_OK)

/* ------------------------------------------------------------------------ */
/* Small helpers: files                                                     */
/* ------------------------------------------------------------------------ */

static void join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

static void assert_file_content(const char *path, const void *want, size_t want_len)
{
    size_t len = 0;
    uint8_t *got = tu_read_file(path, &len);
    if (!got) {
        print_error("cannot read %s\n", path);
        fail();
    }
    assert_int_equal(len, want_len);
    if (len && memcmp(got, want, len) != 0) {
        free(got);
        print_error("%s differs from what was sent\n", path);
        fail();
    }
    free(got);
}

/* Fails if dir holds a file starting with prefix. */
static void assert_no_entry_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    char found[NAME_MAX + 1] = "";
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(found, sizeof found, "%s", de->d_name);
            break;
        }
    }
    closedir(d);
    if (found[0]) {
        print_error("%s holds a leftover temporary %s\n", dir, found);
        fail();
    }
}

/* Entries of dir except "." and "..". */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* The server's upload directory ends up empty (uploads that were cut off
   are cleaned up by their connection thread, so allow it a moment). */
static void assert_upload_dir_empty(const char *root)
{
    char path[PATH_MAX];
    join_path(path, sizeof path, root, TMP_DIR);
    int n = -1;
    for (int i = 0; i < 300; i++) {
        n = count_entries(path);
        if (n <= 0)
            break;
        tu_sleep_ms(10);
    }
    if (n > 0) {
        print_error("%s still holds %d files\n", path, n);
        fail();
    }
}

/* Removes everything in root except the upload directory. */
static void clean_root(const char *root)
{
    DIR *d = opendir(root);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            !strcmp(de->d_name, TMP_DIR))
            continue;
        char path[PATH_MAX];
        join_path(path, sizeof path, root, de->d_name);
        tu_rm_rf(path);
    }
    closedir(d);
    assert_true(count_entries(root) <= 1);
}

static const tf_entry *find_entry(const tf_listing *l, const char *name)
{
    for (size_t i = 0; i < tf_listing_count(l); i++) {
        const tf_entry *e = tf_listing_at(l, i);
        if (strcmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Servers, clients and raw sockets, tracked so that a failed test leaks    */
/* nothing into the next                                                    */
/* ------------------------------------------------------------------------ */

static struct {
    test_server main;
    test_server extra[MAX_EXTRA];
    char local[64];   /* the client side's own directory */
    uint8_t *big;     /* BIG_SIZE random bytes */
    tf_options *copt; /* clients: bounded waits, so a hang is a failure */
    tf_client *clients[MAX_TRACKED];
    int fds[MAX_TRACKED];
    int64_t test_started_ms;
} g;

static test_server *extra_server(const tf_options *opt)
{
    for (int i = 0; i < MAX_EXTRA; i++) {
        if (!g.extra[i].srv) {
            tu_server_start(&g.extra[i], opt);
            return &g.extra[i];
        }
    }
    fail_msg("no free server slot");
    return NULL;
}

static void track_client(tf_client *c)
{
    for (int i = 0; i < MAX_TRACKED; i++) {
        if (!g.clients[i]) {
            g.clients[i] = c;
            return;
        }
    }
    tf_close(c);
    fail_msg("too many clients open");
}

/* A client of ts, with g.copt's bounded waits unless opt says otherwise. */
static tf_client *connect_to(const test_server *ts, const tf_options *opt)
{
    tf_client *c = tu_connect(ts, opt ? opt : g.copt);
    assert_non_null(c);
    track_client(c);
    return c;
}

static tf_client *connect_main(void)
{
    return connect_to(&g.main, NULL);
}

static void drop_client(tf_client *c)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (g.clients[i] == c)
            g.clients[i] = NULL;
    tf_close(c);
}

/* A plain TCP connection with 5 s send and receive timeouts, and no Nagle
   delay (frames go out in pieces). */
static int raw_connect(const char *port)
{
    int fd = rp_connect(port);
    if (fd < 0)
        fail_msg("cannot connect to 127.0.0.1:%s: %s", port, strerror(errno));
    for (int i = 0; i < MAX_TRACKED; i++) {
        if (g.fds[i] < 0) {
            g.fds[i] = fd;
            return fd;
        }
    }
    close(fd);
    fail_msg("too many raw sockets open");
    return -1;
}

static void raw_close(int fd)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (g.fds[i] == fd)
            g.fds[i] = -1;
    close(fd);
}

static void raw_send(int fd, const void *buf, size_t len)
{
    if (rp_send(fd, buf, len) != 0)
        fail_msg("send failed: %s", strerror(errno));
}

static void raw_recv_ok(int fd, void *buf, size_t len)
{
    if (rp_recv(fd, buf, len) != 0)
        fail_msg("the server closed or stalled while %zu bytes were expected", len);
}

/* Reads the server's hello (it sends it without waiting for ours). */
static void raw_read_server_hello(int fd, tf_wire_server_hello *out)
{
    if (rp_read_server_hello(fd, out) != 0)
        fail_msg("the server closed or stalled, or sent a malformed hello");
}

/* Client hello out, server hello in; returns the server's name limit. */
static int raw_handshake(int fd)
{
    uint8_t out[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello ch = {.version_min = TF_WIRE_VERSION,
                               .version_max = TF_WIRE_VERSION};
    assert_int_equal(tf__wire_encode_client_hello(out, sizeof out, &ch),
                     TF_WIRE_CLIENT_HELLO_SIZE);
    raw_send(fd, out, sizeof out);
    tf_wire_server_hello sh;
    raw_read_server_hello(fd, &sh);
    assert_int_equal(sh.status, 0);
    assert_int_equal(sh.version_min, TF_WIRE_VERSION);
    return sh.max_name;
}

/* A request head whose name_len says declared_len, whatever follows. */
static void raw_send_head(int fd, uint8_t op, size_t declared_len, uint64_t size)
{
    uint8_t buf[TF_WIRE_REQUEST_SIZE];
    tf_wire_request r = {.op = op, .size = size};
    assert_int_equal(tf__wire_encode_request(buf, sizeof buf, &r), TF_WIRE_REQUEST_SIZE);
    tf__put_u16(buf + 2, (uint16_t)declared_len);
    raw_send(fd, buf, sizeof buf);
}

static void raw_request(int fd, uint8_t op, const char *name, size_t name_len,
                        uint64_t size)
{
    uint8_t buf[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX];
    tf_wire_request r = {
        .op = op, .size = size, .name = name, .name_len = (uint16_t)name_len};
    long n = tf__wire_encode_request(buf, sizeof buf, &r);
    assert_int_equal(n, (long)(TF_WIRE_REQUEST_SIZE + name_len));
    raw_send(fd, buf, (size_t)n);
}

/* Reads one response; its message is copied into msg (NUL-terminated). */
static void raw_response(int fd, tf_wire_response *r, char *msg, size_t msg_cap)
{
    if (rp_read_response(fd, r, msg, msg_cap) != 0)
        fail_msg("the server closed or stalled, or sent a malformed response");
}

/* Expects a refusal of op with the wire status for code and a message. */
static void raw_expect_refusal(int fd, uint8_t op, int code)
{
    tf_wire_response r;
    char msg[TF_WIRE_MESSAGE_MAX + 1];
    raw_response(fd, &r, msg, sizeof msg);
    if (r.status != tf__wire_status(code))
        fail_msg("status %u (%s), expected %u (%s); message \"%s\"", (unsigned)r.status,
                 tf_errname(tf__wire_code(r.status)), (unsigned)tf__wire_status(code),
                 tf_errname(code), msg);
    assert_int_equal(r.op, op);
    assert_int_equal(r.size, 0);
    assert_true(msg[0] != '\0');
}

/* A LIST on a raw connection; the listing is decoded for the caller. */
static tf_listing *raw_list(int fd)
{
    raw_request(fd, TF_OP_LIST, NULL, 0, 0);
    tf_wire_response r;
    char msg[TF_WIRE_MESSAGE_MAX + 1];
    raw_response(fd, &r, msg, sizeof msg);
    if (r.status != 0)
        fail_msg("list refused: %s", msg);
    assert_int_equal(r.op, TF_OP_LIST);
    assert_true(r.size >= 4 && r.size < ((uint64_t)64 << 20));
    uint8_t *body = malloc((size_t)r.size);
    assert_non_null(body);
    raw_recv_ok(fd, body, (size_t)r.size);
    uint8_t tbuf[TF_WIRE_TRAILER_SIZE];
    tf_wire_trailer t;
    raw_recv_ok(fd, tbuf, sizeof tbuf);
    assert_int_equal(tf__wire_decode_trailer(tbuf, sizeof tbuf, &t), TF_WIRE_TRAILER_SIZE);
    assert_int_equal(t.status, 0);
    tf_listing *l = NULL;
    int rc = tf__wire_decode_list(body, (size_t)r.size, TF_WIRE_NAME_MAX, &l);
    free(body);
    assert_int_equal(rc, TF_OK);
    return l;
}

/* A fresh, ordinary client can still do a full round trip. */
static void assert_server_alive(const test_server *ts)
{
    tf_client *c = connect_to(ts, NULL);
    static const char text[] = "still serving";
    expect_ok(c, tf_put_mem(c, text, sizeof text - 1, "alive-check"));
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "alive-check", &data, &len));
    assert_int_equal(len, sizeof text - 1);
    assert_memory_equal(data, text, len);
    tf_free(data);
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    assert_non_null(find_entry(l, "alive-check"));
    tf_listing_free(l);
    drop_client(c);
}

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                */
/* ------------------------------------------------------------------------ */

#define LOG_KEEP 64

typedef struct log_copy {
    char peer[64];
    char op[32];
    char name[300];
    char message[300];
    uint64_t bytes;
    int result;
    double seconds;
} log_copy;

static struct {
    pthread_mutex_t lock;
    size_t count;
    log_copy e[LOG_KEEP];
} g_log = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void capture_log(void *user, const tf_request_log *entry)
{
    (void)user;
    pthread_mutex_lock(&g_log.lock);
    if (g_log.count < LOG_KEEP) {
        log_copy *e = &g_log.e[g_log.count];
        snprintf(e->peer, sizeof e->peer, "%s", entry->peer);
        snprintf(e->op, sizeof e->op, "%s", entry->op);
        snprintf(e->name, sizeof e->name, "%s", entry->name);
        snprintf(e->message, sizeof e->message, "%s", entry->message);
        e->bytes = entry->bytes;
        e->result = entry->result;
        e->seconds = entry->seconds;
    }
    g_log.count++;
    pthread_mutex_unlock(&g_log.lock);
}

static size_t log_count(void)
{
    pthread_mutex_lock(&g_log.lock);
    size_t n = g_log.count;
    pthread_mutex_unlock(&g_log.lock);
    return n;
}

static void log_reset(void)
{
    pthread_mutex_lock(&g_log.lock);
    g_log.count = 0;
    pthread_mutex_unlock(&g_log.lock);
}

/* The server logs after it has answered: wait (bounded) for n entries. */
static size_t log_wait(size_t n)
{
    size_t have = 0;
    for (int i = 0; i < 400 && (have = log_count()) < n; i++)
        tu_sleep_ms(5);
    return have;
}

/* A server of its own whose request log goes to g_log, emptied. */
static test_server *logged_server(void)
{
    tf_options *so = NULL;
    assert_int_equal(tf_options_new(&so), TF_OK);
    assert_int_equal(tf_options_set_log(so, capture_log, NULL), TF_OK);
    test_server *ts = extra_server(so);
    tf_options_free(so);
    log_reset();
    return ts;
}

typedef struct progress_rec {
    int calls;
    uint64_t last_done;
    uint64_t total;
    int went_back;      /* done decreased */
    int total_changed;  /* total differed between calls */
    int past_total;     /* done > total */
    uint64_t cancel_at; /* return non-zero once done >= this; 0 = never */
    int cancelled;
} progress_rec;

static int record_progress(void *user, uint64_t done, uint64_t total)
{
    progress_rec *p = user;
    if (p->calls > 0 && done < p->last_done)
        p->went_back = 1;
    if (p->calls > 0 && total != p->total)
        p->total_changed = 1;
    if (total && done > total)
        p->past_total = 1;
    p->calls++;
    p->last_done = done;
    p->total = total;
    if (p->cancel_at && done >= p->cancel_at) {
        p->cancelled++;
        return 1;
    }
    return 0;
}

static void assert_progress_complete(const progress_rec *p, uint64_t size)
{
    assert_true(p->calls >= 2);
    assert_false(p->went_back);
    assert_false(p->total_changed);
    assert_false(p->past_total);
    assert_int_equal(p->total, size);
    assert_int_equal(p->last_done, size);
}

/* Client options with the usual bounded waits, plus what the test adds. */
static tf_options *client_options(void)
{
    tf_options *o = NULL;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_CONNECT_TIMEOUT_MS, 5000), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_IO_TIMEOUT_MS, 10000), TF_OK);
    return o;
}

/* ------------------------------------------------------------------------ */
/* Setup and teardown                                                       */
/* ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_TRACKED; i++)
        g.fds[i] = -1;
    if (tf_options_new(&g.copt) != TF_OK ||
        tf_options_set(g.copt, TF_OPT_CONNECT_TIMEOUT_MS, 5000) != TF_OK ||
        tf_options_set(g.copt, TF_OPT_IO_TIMEOUT_MS, 10000) != TF_OK)
        return -1;
    tu_mkdtemp(g.local, sizeof g.local);
    /* Filled once per ctest entry (each test runs in its own process): in
       2 MiB pages where the kernel allows, 512 times fewer page faults
       (0.6-0.8 s -> 0.1 s on a virtual machine). */
    if (posix_memalign((void **)&g.big, (size_t)2 << 20, BIG_SIZE) != 0)
        return -1;
    (void)madvise(g.big, BIG_SIZE, MADV_HUGEPAGE);
    tu_fill(g.big, BIG_SIZE, 64);
    tu_server_start(&g.main, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_server_join(&g.main);
    int ok = g.main.run_rc == TF_OK;
    tu_server_stop(&g.main, 1);
    for (int i = 0; i < MAX_EXTRA; i++)
        tu_server_stop(&g.extra[i], 1);
    tu_rm_rf(g.local);
    free(g.big);
    tf_options_free(g.copt);
    return ok ? 0 : -1;
}

static int test_setup(void **state)
{
    (void)state;
    g.test_started_ms = tu_now_ms();
    return 0;
}

/* Closes what a test (perhaps a failed one) left open, and says how long
   the test took. */
static int test_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_TRACKED; i++) {
        tf_close(g.clients[i]);
        g.clients[i] = NULL;
        if (g.fds[i] >= 0)
            close(g.fds[i]);
        g.fds[i] = -1;
    }
    for (int i = 0; i < MAX_EXTRA; i++)
        tu_server_stop(&g.extra[i], 1);
    print_message("      (%lld ms)\n", (long long)(tu_now_ms() - g.test_started_ms));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Content: sizes, in memory and through files                              */
/* ------------------------------------------------------------------------ */

typedef struct sized_case {
    const char *label;
    size_t size;
    const uint8_t *data;
} sized_case;

/* empty, one byte (a NUL), every byte value once, and 64 MiB of noise. */
static void sized_cases(sized_case out[4], uint8_t all_bytes[256])
{
    static const uint8_t one = 0;
    for (int i = 0; i < 256; i++)
        all_bytes[i] = (uint8_t)i;
    out[0] = (sized_case){"empty", 0, (const uint8_t *)""};
    out[1] = (sized_case){"one", 1, &one};
    out[2] = (sized_case){"bytes256", 256, all_bytes};
    out[3] = (sized_case){"big64m", BIG_SIZE, g.big};
}

/* The server lists each case as PREFIX-LABEL, with its size. */
static void assert_cases_listed(tf_client *c, const char *prefix, const sized_case cases[4])
{
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%s", prefix, cases[i].label);
        const tf_entry *e = find_entry(l, name);
        assert_non_null(e);
        assert_int_equal(e->size, cases[i].size);
    }
    tf_listing_free(l);
}

static void test_loopback_sizes_in_memory(void **state)
{
    (void)state;
    uint8_t all[256];
    sized_case cases[4];
    sized_cases(cases, all);
    tf_client *c = connect_main();
    for (int i = 0; i < 4; i++) {
        char name[64], path[PATH_MAX];
        snprintf(name, sizeof name, "mem-%s", cases[i].label);
        expect_ok(c, tf_put_mem(c, cases[i].data, cases[i].size, name));
        /* What the server stored, byte for byte. */
        join_path(path, sizeof path, g.main.root, name);
        assert_file_content(path, cases[i].data, cases[i].size);

        void *data = (void *)1;
        size_t len = 12345;
        expect_ok(c, tf_get_mem(c, name, &data, &len));
        assert_non_null(data);
        assert_int_equal(len, cases[i].size);
        if (len)
            assert_memory_equal(data, cases[i].data, len);
        assert_int_equal(((uint8_t *)data)[len], 0); /* the documented NUL */
        tf_free(data);
    }
    assert_cases_listed(c, "mem", cases);
    assert_upload_dir_empty(g.main.root);
}

static void test_loopback_sizes_through_files(void **state)
{
    (void)state;
    uint8_t all[256];
    sized_case cases[4];
    sized_cases(cases, all);
    tf_client *c = connect_main();
    for (int i = 0; i < 4; i++) {
        char name[64], src[PATH_MAX], dst[PATH_MAX], stored[PATH_MAX];
        snprintf(name, sizeof name, "file-%s", cases[i].label);
        snprintf(src, sizeof src, "%s/src-%s", g.local, cases[i].label);
        snprintf(dst, sizeof dst, "%s/dst-%s", g.local, cases[i].label);
        tu_write_file(src, cases[i].data, cases[i].size);
        expect_ok(c, tf_put(c, src, name));
        join_path(stored, sizeof stored, g.main.root, name);
        assert_file_content(stored, cases[i].data, cases[i].size);

        expect_ok(c, tf_get(c, name, dst));
        assert_file_content(dst, cases[i].data, cases[i].size);
        /* Getting again replaces the file whole. */
        tu_write_file(dst, "stale content that is longer than some", 38);
        expect_ok(c, tf_get(c, name, dst));
        assert_file_content(dst, cases[i].data, cases[i].size);

        if (cases[i].size <= 256) {
            /* A NULL name uploads under the local file's basename. */
            char base[64];
            snprintf(base, sizeof base, "src-%s", cases[i].label);
            expect_ok(c, tf_put(c, src, NULL));
            join_path(stored, sizeof stored, g.main.root, base);
            assert_file_content(stored, cases[i].data, cases[i].size);
        }
        unlink(src);
        unlink(dst);
    }
    assert_cases_listed(c, "file", cases);
    assert_no_entry_prefixed(g.local, PART_PREFIX);
    assert_upload_dir_empty(g.main.root);
}

typedef struct pipe_reader {
    int fd;
    uint8_t *buf;
    size_t len, cap;
    int failed;
} pipe_reader;

static void *drain_pipe(void *arg)
{
    pipe_reader *r = arg;
    for (;;) {
        if (r->len == r->cap) {
            size_t ncap = r->cap ? r->cap * 2 : 65536;
            uint8_t *nb = realloc(r->buf, ncap);
            if (!nb) {
                r->failed = 1;
                break;
            }
            r->buf = nb;
            r->cap = ncap;
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r->failed = 1;
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    return NULL;
}

static void test_loopback_get_fd_pipe_and_file(void **state)
{
    (void)state;
    tf_client *c = connect_main();
    const size_t size = ((size_t)1 << 20) + 3; /* well over a pipe's buffer */
    expect_ok(c, tf_put_mem(c, g.big, size, "fd-src"));

    /* Into a pipe, read by another thread. */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pipe_reader r = {.fd = p[0]};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, drain_pipe, &r), 0);
    int rc = tf_get_fd(c, "fd-src", p[1]);
    close(p[1]);
    pthread_join(tid, NULL);
    close(p[0]);
    expect_rc(c, rc, TF_OK);
    assert_false(r.failed);
    assert_int_equal(r.len, size);
    assert_memory_equal(r.buf, g.big, size);
    free(r.buf);

    /* Into a temporary file, at its current offset. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/fd-target-XXXXXX", g.local);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "head:", 5), 5);
    expect_ok(c, tf_get_fd(c, "fd-src", fd));
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)(5 + size));
    /* A missing file writes nothing and the descriptor stays usable. */
    expect_rc(c, tf_get_fd(c, "fd-no-such-file", fd), TF_ENOENT);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)(5 + size));
    expect_rc(c, tf_get_fd(c, "fd-src", -1), TF_EINVAL);
    close(fd);
    size_t len;
    uint8_t *got = tu_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, 5 + size);
    assert_memory_equal(got, "head:", 5);
    assert_memory_equal(got + 5, g.big, size);
    free(got);
    unlink(path);
}

static void test_loopback_get_into_directory(void **state)
{
    (void)state;
    tf_client *c = connect_main();
    static const char text[] = "saved as dir/name";
    expect_ok(c, tf_put_mem(c, text, sizeof text - 1, "into-dir.txt"));
    char dir[PATH_MAX], path[PATH_MAX];
    join_path(dir, sizeof dir, g.local, "target-dir");
    assert_int_equal(mkdir(dir, 0755), 0);
    expect_ok(c, tf_get(c, "into-dir.txt", dir));
    join_path(path, sizeof path, dir, "into-dir.txt");
    assert_file_content(path, text, sizeof text - 1);
    /* With a trailing slash, over an existing file. */
    tu_write_file(path, "old", 3);
    char slash[PATH_MAX];
    join_path(slash, sizeof slash, dir, "");
    expect_ok(c, tf_get(c, "into-dir.txt", slash));
    assert_file_content(path, text, sizeof text - 1);
    assert_int_equal(count_entries(dir), 1);
    tu_rm_rf(dir);
}

static void test_loopback_get_into_dev_null(void **state)
{
    (void)state;
    struct stat before, after;
    assert_int_equal(stat("/dev/null", &before), 0);
    assert_true(S_ISCHR(before.st_mode));
    tf_client *c = connect_main();
    expect_ok(c, tf_put_mem(c, g.big, (size_t)3 << 20, "to-dev-null"));
    expect_ok(c, tf_get(c, "to-dev-null", "/dev/null"));
    assert_int_equal(stat("/dev/null", &after), 0);
    assert_true(S_ISCHR(after.st_mode));
    assert_int_equal(after.st_rdev, before.st_rdev);
    assert_int_equal(after.st_ino, before.st_ino);
    /* The connection is in step afterwards. */
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "to-dev-null", &data, &len));
    assert_int_equal(len, (size_t)3 << 20);
    assert_memory_equal(data, g.big, len);
    tf_free(data);
}

/* ------------------------------------------------------------------------ */
/* Failures: missing files, bad names, and the connection carrying on       */
/* ------------------------------------------------------------------------ */

static void test_loopback_missing_file(void **state)
{
    (void)state;
    tf_client *c = connect_main();
    char path[PATH_MAX];
    join_path(path, sizeof path, g.local, "never-created");
    for (int round = 0; round < 3; round++) {
        void *data = (void *)1;
        size_t len = 99;
        expect_rc(c, tf_get_mem(c, "no-such-file-1", &data, &len), TF_ENOENT);
        assert_null(data);
        assert_int_equal(len, 0);
        assert_non_null(strstr(tf_errmsg(c), "no-such-file-1"));

        expect_rc(c, tf_get(c, "no-such-file-2", path), TF_ENOENT);
        assert_non_null(strstr(tf_errmsg(c), "no-such-file-2"));
        assert_int_equal(access(path, F_OK), -1);

        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        expect_rc(c, tf_get_fd(c, "no-such-file-3", fd), TF_ENOENT);
        close(fd);
        assert_non_null(strstr(tf_errmsg(c), "no-such-file-3"));

        /* The same connection keeps working after each failure. */
        expect_ok(c, tf_put_mem(c, "x", 1, "exists-after-miss"));
        assert_string_equal(tf_errmsg(c), "");
        expect_ok(c, tf_get_mem(c, "exists-after-miss", &data, &len));
        assert_int_equal(len, 1);
        assert_memory_equal(data, "x", 1);
        tf_free(data);
        tf_listing *l;
        expect_ok(c, tf_list(c, &l));
        assert_null(find_entry(l, "no-such-file-1"));
        tf_listing_free(l);
    }
    /* A missing local file to upload. */
    expect_rc(c, tf_put(c, path, "whatever"), TF_ENOENT);
    assert_non_null(strstr(tf_errmsg(c), "never-created"));
    expect_ok(c, tf_put_mem(c, "y", 1, "exists-after-miss"));
    assert_no_entry_prefixed(g.local, PART_PREFIX);
}

static const struct bad_name {
    const char *name;
    size_t len;
} bad_names[] = {
    {"", 0},
    {".", 1},
    {"..", 2},
    {"a//b", 4}, /* "a/b" is a path with TREE (test_tree.c) */
    {"../x", 4},
    {"/etc/passwd", 11},
    {"x/", 2},
    {"\xff", 1},             /* never valid in UTF-8 */
    {"\xc0\xaf", 2},         /* an overlong '/' */
    {"\xed\xa0\x80", 3},     /* a surrogate */
    {"\xf4\x90\x80\x80", 4}, /* past U+10FFFF */
    {"abc\x80", 4},          /* a stray continuation byte */
    {"a\nb", 3},             /* a control character */
    {"tab\there", 8},
    {"del\x7f", 4},
};

static void test_loopback_client_refuses_bad_names(void **state)
{
    (void)state;
    /* A server of its own, whose log shows what reached it. */
    test_server *ts = logged_server();
    tf_client *c = connect_to(ts, NULL);

    char long_name[257];
    memset(long_name, 'n', 256);
    long_name[256] = '\0';
    char local[PATH_MAX];
    join_path(local, sizeof local, g.local, "bad-name-target");
    tu_write_file(local, "keep", 4);

    size_t nbad = sizeof bad_names / sizeof bad_names[0];
    for (size_t i = 0; i <= nbad; i++) {
        const char *name = i < nbad ? bad_names[i].name : long_name;
        void *data = (void *)1;
        size_t len = 7;
        expect_rc(c, tf_get_mem(c, name, &data, &len), TF_EINVAL);
        assert_null(data);
        assert_true(tf_errmsg(c)[0] != '\0');
        expect_rc(c, tf_put_mem(c, "z", 1, name), TF_EINVAL);
        expect_rc(c, tf_get(c, name, local), TF_EINVAL);
        expect_rc(c, tf_put(c, local, name), TF_EINVAL);
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        expect_rc(c, tf_get_fd(c, name, fd), TF_EINVAL);
        close(fd);
    }
    expect_rc(c, tf_get_mem(c, NULL, &(void *){0}, &(size_t){0}), TF_EINVAL);
    expect_rc(c, tf_put_mem(c, "z", 1, NULL), TF_EINVAL);
    /* A path ending in '/' has no basename to upload as. */
    char slash[PATH_MAX];
    snprintf(slash, sizeof slash, "%s/", g.local);
    expect_rc(c, tf_put(c, slash, NULL), TF_EINVAL);
    assert_file_content(local, "keep", 4);
    assert_no_entry_prefixed(g.local, PART_PREFIX);

    /* 255 bytes is the default limit, and is fine. */
    long_name[255] = '\0';
    expect_ok(c, tf_put_mem(c, "ok", 2, long_name));
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, long_name, &data, &len));
    assert_int_equal(len, 2);
    tf_free(data);

    /* None of the bad names went out: the server saw only the last two. */
    assert_int_equal(log_wait(2), 2);
    tu_sleep_ms(50);
    assert_int_equal(log_count(), 2);
    assert_string_equal(g_log.e[0].op, "put");
    assert_string_equal(g_log.e[1].op, "get");
    unlink(local);
}

static void test_loopback_server_refuses_bad_names(void **state)
{
    (void)state;
    int fd = raw_connect(g.main.port);
    assert_int_equal(raw_handshake(fd), 255);
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        raw_request(fd, TF_OP_GET, bad_names[i].name, bad_names[i].len, 0);
        raw_expect_refusal(fd, TF_OP_GET, TF_EINVAL);
    }
    /* A NUL inside a name is refused, not cut short. */
    raw_request(fd, TF_OP_GET, "a\0b", 3, 0);
    raw_expect_refusal(fd, TF_OP_GET, TF_EINVAL);

    /* An upload that would escape the root is refused before any data. */
    char escape[64];
    snprintf(escape, sizeof escape, "../tf-loopback-escape-%ld", (long)getpid());
    raw_request(fd, TF_OP_PUT, escape, strlen(escape), 5);
    raw_expect_refusal(fd, TF_OP_PUT, TF_EINVAL);
    char outside[PATH_MAX];
    snprintf(outside, sizeof outside, "/tmp/%s", escape + 3);
    assert_int_equal(access(outside, F_OK), -1);

    /* The same raw connection still serves a valid LIST. */
    tf_listing *l = raw_list(fd);
    for (size_t i = 0; i < tf_listing_count(l); i++)
        assert_int_equal(tf_name_check(tf_listing_at(l, i)->name, 255, NULL), TF_OK);
    tf_listing_free(l);
    raw_close(fd);
    assert_server_alive(&g.main);
}

static void test_loopback_server_skips_overlong_names(void **state)
{
    (void)state;
    static const size_t lens[] = {256, 1000, 4096, 4097, 9000, 65535};
    char *name = malloc(65535);
    assert_non_null(name);
    memset(name, 'q', 65535);
    int fd = raw_connect(g.main.port);
    raw_handshake(fd);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        raw_send_head(fd, TF_OP_GET, lens[i], 0);
        raw_send(fd, name, lens[i]);
        raw_expect_refusal(fd, TF_OP_GET, TF_EINVAL);
        /* A put with a name over the limit is refused before its data. */
        raw_send_head(fd, TF_OP_PUT, lens[i], 10);
        raw_send(fd, name, lens[i]);
        raw_expect_refusal(fd, TF_OP_PUT, TF_EINVAL);
    }
    free(name);
    tf_listing *l = raw_list(fd);
    tf_listing_free(l);
    raw_close(fd);
    assert_server_alive(&g.main);
}

static void test_loopback_garbage_instead_of_hello(void **state)
{
    (void)state;
    /* An HTTP client: the server's hello goes out, then it hangs up. */
    int fd = raw_connect(g.main.port);
    static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    raw_send(fd, http, sizeof http - 1);
    tf_wire_server_hello sh;
    raw_read_server_hello(fd, &sh);
    assert_int_equal(sh.status, 0);
    assert_true(rp_wait_closed(fd, 5000));
    raw_close(fd);
    assert_server_alive(&g.main);

    /* Binary noise that starts with the magic. */
    fd = raw_connect(g.main.port);
    uint8_t noise[64];
    tu_fill(noise, sizeof noise, 7);
    memcpy(noise, TF_WIRE_MAGIC, 4);
    noise[4] = 0; /* version_min 0 */
    noise[5] = 0;
    raw_send(fd, noise, sizeof noise);
    assert_true(rp_wait_closed(fd, 5000));
    raw_close(fd);

    /* A hello with no common version. */
    fd = raw_connect(g.main.port);
    uint8_t hello[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello ch = {.version_min = 50, .version_max = 60};
    tf__wire_encode_client_hello(hello, sizeof hello, &ch);
    raw_send(fd, hello, sizeof hello);
    assert_true(rp_wait_closed(fd, 5000));
    raw_close(fd);

    /* Silence then goodbye, and half a hello then goodbye. */
    fd = raw_connect(g.main.port);
    raw_close(fd);
    fd = raw_connect(g.main.port);
    raw_send(fd, "TCP", 3);
    raw_close(fd);
    assert_server_alive(&g.main);
}

static void test_loopback_unknown_op_closes(void **state)
{
    (void)state;
    static const struct {
        uint8_t op, flags;
        uint64_t size, offset;
    } cases[] = {
        {0x7f, 0, 0, 0},        /* unknown op */
        {0, 0, 0, 0},           /* op 0 */
        {TF_OP_GET, 0x80, 0, 0}, /* flags nobody defined */
        {TF_OP_GET, 0x01, 0, 0}, /* an upload key on a get (the key follows the name) */
        {TF_OP_GET, 0, 0, 100}, /* an offset nobody negotiated */
        {TF_OP_LIST, 0, 77, 0}, /* a size on list */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = raw_connect(g.main.port);
        raw_handshake(fd);
        uint8_t buf[TF_WIRE_REQUEST_SIZE + 8 + TF_UPLOAD_KEY_SIZE];
        tf_wire_request r = {.op = cases[i].op,
                             .flags = cases[i].flags,
                             .size = cases[i].size,
                             .offset = cases[i].offset,
                             .key = (const uint8_t *)"0123456789abcdef"};
        if (cases[i].op == TF_OP_GET) {
            r.name = "whatever";
            r.name_len = 8;
        }
        long n = tf__wire_encode_request(buf, sizeof buf, &r);
        assert_true(n > 0);
        raw_send(fd, buf, (size_t)n);
        tf_wire_response resp;
        char msg[TF_WIRE_MESSAGE_MAX + 1];
        raw_response(fd, &resp, msg, sizeof msg);
        assert_int_equal(resp.status, tf__wire_status(TF_EPROTO));
        assert_int_equal(resp.op, cases[i].op); /* echoed */
        assert_true(msg[0] != '\0');
        assert_true(rp_wait_closed(fd, 5000));
        raw_close(fd);
    }
    assert_server_alive(&g.main);
}

static void test_loopback_truncated_requests(void **state)
{
    (void)state;
    uint8_t buf[TF_WIRE_REQUEST_SIZE + 16];
    tf_wire_request r = {.op = TF_OP_GET, .name = "truncated", .name_len = 9};
    long n = tf__wire_encode_request(buf, sizeof buf, &r);
    assert_true(n > 0);

    /* Half a head, then close. */
    int fd = raw_connect(g.main.port);
    raw_handshake(fd);
    raw_send(fd, buf, 10);
    raw_close(fd);
    assert_server_alive(&g.main);

    /* A whole head and part of its name, then close. */
    fd = raw_connect(g.main.port);
    raw_handshake(fd);
    raw_send(fd, buf, TF_WIRE_REQUEST_SIZE + 3);
    raw_close(fd);
    assert_server_alive(&g.main);

    /* An upload cut off mid-payload: nothing is published and the
       temporary is removed. */
    fd = raw_connect(g.main.port);
    raw_handshake(fd);
    raw_request(fd, TF_OP_PUT, "cut-upload", 10, 100000);
    tf_wire_response resp;
    char msg[TF_WIRE_MESSAGE_MAX + 1];
    raw_response(fd, &resp, msg, sizeof msg);
    assert_int_equal(resp.status, 0); /* go ahead */
    raw_send(fd, g.big, 1000);
    raw_close(fd);
    assert_server_alive(&g.main);
    char path[PATH_MAX];
    join_path(path, sizeof path, g.main.root, "cut-upload");
    assert_upload_dir_empty(g.main.root);
    assert_int_equal(access(path, F_OK), -1);

    /* An upload whose trailer says the sender failed: discarded. */
    fd = raw_connect(g.main.port);
    raw_handshake(fd);
    raw_request(fd, TF_OP_PUT, "abandoned", 9, 100);
    raw_response(fd, &resp, msg, sizeof msg);
    assert_int_equal(resp.status, 0);
    raw_send(fd, g.big, 100);
    uint8_t tbuf[TF_WIRE_TRAILER_SIZE];
    tf_wire_trailer t = {.status = tf__wire_status(TF_EIO)};
    tf__wire_encode_trailer(tbuf, sizeof tbuf, &t);
    raw_send(fd, tbuf, sizeof tbuf);
    raw_response(fd, &resp, msg, sizeof msg);
    assert_int_not_equal(resp.status, 0);
    join_path(path, sizeof path, g.main.root, "abandoned");
    assert_int_equal(access(path, F_OK), -1);
    /* ... and the connection goes on. */
    tf_listing *l = raw_list(fd);
    assert_null(find_entry(l, "abandoned"));
    tf_listing_free(l);
    raw_close(fd);
    assert_upload_dir_empty(g.main.root);
}

static void test_loopback_pipelined_requests(void **state)
{
    (void)state;
    tf_client *c = connect_main();
    expect_ok(c, tf_put_mem(c, "pipelined", 9, "pipe-a"));
    drop_client(c);
    /* Several requests in one write: answered strictly in order. */
    int fd = raw_connect(g.main.port);
    raw_handshake(fd);
    uint8_t buf[4 * (TF_WIRE_REQUEST_SIZE + 16)];
    size_t used = 0;
    const char *names[] = {"pipe-a", "pipe-missing", "pipe-a"};
    for (int i = 0; i < 3; i++) {
        tf_wire_request r = {
            .op = TF_OP_GET, .name = names[i], .name_len = (uint16_t)strlen(names[i])};
        used += (size_t)tf__wire_encode_request(buf + used, sizeof buf - used, &r);
    }
    tf_wire_request lr = {.op = TF_OP_LIST};
    used += (size_t)tf__wire_encode_request(buf + used, sizeof buf - used, &lr);
    raw_send(fd, buf, used);
    for (int i = 0; i < 3; i++) {
        tf_wire_response resp;
        char msg[TF_WIRE_MESSAGE_MAX + 1];
        raw_response(fd, &resp, msg, sizeof msg);
        assert_int_equal(resp.op, TF_OP_GET);
        if (i == 1) {
            assert_int_equal(resp.status, tf__wire_status(TF_ENOENT));
            assert_non_null(strstr(msg, "pipe-missing"));
            continue;
        }
        assert_int_equal(resp.status, 0);
        assert_int_equal(resp.size, 9);
        uint8_t body[9 + TF_WIRE_TRAILER_SIZE];
        raw_recv_ok(fd, body, sizeof body);
        assert_memory_equal(body, "pipelined", 9);
        assert_int_equal(tf__get_u16(body + 9), 0);
    }
    /* The LIST answer is the fourth. */
    tf_wire_response resp;
    char msg[TF_WIRE_MESSAGE_MAX + 1];
    raw_response(fd, &resp, msg, sizeof msg);
    assert_int_equal(resp.op, TF_OP_LIST);
    assert_int_equal(resp.status, 0);
    raw_close(fd);
}

/* The library never raises SIGPIPE: a peer that vanishes in the middle of
   a file (sent with sendfile, which has no MSG_NOSIGNAL) must not kill the
   process (this one: both ends are in it). */
static void test_loopback_client_vanishes_mid_get(void **state)
{
    (void)state;
    char path[PATH_MAX];
    join_path(path, sizeof path, g.main.root, "vanish-src");
    tu_write_file(path, g.big, (size_t)16 << 20);
    for (int i = 0; i < 5; i++) {
        int fd = raw_connect(g.main.port);
        raw_handshake(fd);
        raw_request(fd, TF_OP_GET, "vanish-src", 10, 0);
        tf_wire_response resp;
        char msg[TF_WIRE_MESSAGE_MAX + 1];
        raw_response(fd, &resp, msg, sizeof msg);
        assert_int_equal(resp.status, 0);
        assert_int_equal(resp.size, (uint64_t)16 << 20);
        uint8_t some[4096];
        raw_recv_ok(fd, some, sizeof some);
        assert_memory_equal(some, g.big, sizeof some);
        raw_close(fd); /* unread data: the kernel resets the connection */
        tu_sleep_ms(20);
    }
    assert_server_alive(&g.main);
    unlink(path);
}

/* A fake server that accepts one upload, reads a little of it, and resets
   the connection. */
typedef struct vanishing_server {
    int listen_fd;
    int ok; /* it got as far as the payload */
} vanishing_server;

static void *vanishing_main(void *arg)
{
    vanishing_server *v = arg;
    int fd = accept(v->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX];
    tf_wire_server_hello sh = {
        .version_min = TF_WIRE_VERSION, .version_max = TF_WIRE_VERSION, .max_name = 255};
    long n = tf__wire_encode_server_hello(buf, sizeof buf, &sh);
    tf_wire_request r;
    if (n > 0 && send(fd, buf, (size_t)n, MSG_NOSIGNAL) == n &&
        rp_recv(fd, buf, TF_WIRE_CLIENT_HELLO_SIZE) == 0 &&
        rp_recv(fd, buf, TF_WIRE_REQUEST_SIZE) == 0 &&
        tf__wire_decode_request(buf, TF_WIRE_REQUEST_SIZE, 255, &r) == TF_WIRE_NEED_MORE &&
        rp_recv(fd, buf + TF_WIRE_REQUEST_SIZE, r.name_len) == 0) {
        tf_wire_response go = {.op = TF_OP_PUT};
        n = tf__wire_encode_response(buf, sizeof buf, &go);
        if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) == n && rp_recv(fd, buf, 1000) == 0)
            v->ok = 1;
    }
    struct linger lg = {1, 0}; /* close with a reset */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    return NULL;
}

static void test_loopback_server_vanishes_mid_put(void **state)
{
    (void)state;
    char src[PATH_MAX];
    join_path(src, sizeof src, g.local, "vanish-put");
    tu_write_file(src, g.big, (size_t)32 << 20);
    for (int i = 0; i < 3; i++) {
        char port[16];
        vanishing_server v = {.listen_fd = tu_listen_loopback(port, sizeof port)};
        pthread_t tid;
        assert_int_equal(pthread_create(&tid, NULL, vanishing_main, &v), 0);
        tf_client *c = NULL;
        int rc = tf_connect(&c, "127.0.0.1", port, g.copt);
        if (rc == TF_OK) {
            track_client(c);
            /* From a file (sendfile) and, once, from memory (send). */
            rc = i < 2 ? tf_put(c, src, NULL) : tf_put_mem(c, g.big, (size_t)32 << 20, "m");
        }
        pthread_join(tid, NULL);
        close(v.listen_fd);
        assert_true(v.ok);
        if (rc != TF_ENET)
            fail_msg("an upload to a vanished server gave %s", tf_errname(rc));
        if (c) {
            expect_rc(c, tf_list(c, &(tf_listing *){NULL}), TF_ENET);
            drop_client(c);
        }
    }
    unlink(src);
}

/* ------------------------------------------------------------------------ */
/* Errors: the first message of a failure reaches tf_errmsg                 */
/* ------------------------------------------------------------------------ */

/* A local write failure deep in a get (the payload keeps coming, drained to
   keep the stream in step) is what tf_errmsg says, errno text and all; the
   next call starts with a clean record on a connection still usable. */
static void test_loopback_errors_local_write_keeps_errno(void **state)
{
    (void)state;
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        skip();
    tf_client *c = connect_main();
    expect_ok(c, tf_put_mem(c, g.big, 256 << 10, "errs-full"));
    int rc = tf_get_fd(c, "errs-full", fd);
    close(fd);
    if (rc == TF_OK)
        fail_msg("a get into /dev/full succeeded");
    assert_int_equal(rc, TF_ENOSPC);
    if (!strstr(tf_errmsg(c), strerror(ENOSPC)))
        fail_msg("the local write's errno text is lost: \"%s\"", tf_errmsg(c));
    tf_listing *l = NULL;
    expect_ok(c, tf_list(c, &l));
    tf_listing_free(l);
    assert_string_equal(tf_errmsg(c), "");
    drop_client(c);
}

/* A server's refusal is the message, and each call's own: a second refusal
   does not find the first one's message still standing. */
static void test_loopback_errors_refusal_kept_per_call(void **state)
{
    (void)state;
    tf_client *c = connect_main();
    void *data = NULL;
    size_t len = 0;
    expect_rc(c, tf_get_mem(c, "errs-missing-a", &data, &len), TF_ENOENT);
    if (!strstr(tf_errmsg(c), "errs-missing-a"))
        fail_msg("the refusal lost its detail: \"%s\"", tf_errmsg(c));
    expect_rc(c, tf_get_mem(c, "errs-missing-b", &data, &len), TF_ENOENT);
    if (!strstr(tf_errmsg(c), "errs-missing-b") || strstr(tf_errmsg(c), "errs-missing-a"))
        fail_msg("the second refusal says \"%s\"", tf_errmsg(c));
    /* In a batch, the first item's failure is the call's message. */
    tf_get_item items[2] = {{.name = "errs-missing-c", .fd = -1, .local_path = g.local},
                            {.name = "errs-missing-d", .fd = -1, .local_path = g.local}};
    expect_rc(c, tf_get_many(c, items, 2), TF_ENOENT);
    assert_int_equal(items[1].result, TF_ENOENT);
    if (!strstr(tf_errmsg(c), "errs-missing-c"))
        fail_msg("the batch says \"%s\"", tf_errmsg(c));
    drop_client(c);
}

/* A fake server that reads the client's hello and resets the connection. */
static void *resetting_main(void *arg)
{
    int *listen_fd = arg;
    int fd = accept(*listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[TF_WIRE_CLIENT_HELLO_SIZE];
    (void)rp_recv(fd, buf, sizeof buf);
    rp_abort(fd);
    return NULL;
}

/* The handshake's failure says where it happened and keeps why (the reset),
   instead of a summary that replaced the cause. */
static void test_loopback_errors_handshake_reset_keeps_cause(void **state)
{
    (void)state;
    char port[16];
    int listen_fd = tu_listen_loopback(port, sizeof port);
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, resetting_main, &listen_fd), 0);
    tf_client *c = NULL;
    char why[512];
    int rc = tf_connect_ex(&c, "127.0.0.1", port, g.copt, why, sizeof why);
    pthread_join(tid, NULL);
    close(listen_fd);
    assert_null(c);
    assert_int_equal(rc, TF_ENET);
    if (!strstr(why, "handshake") || !strstr(why, strerror(ECONNRESET)))
        fail_msg("the handshake's failure says \"%s\"", why);
}

/* A hostile fake server: its hello refuses with `refusal` (when not NULL),
   or it answers one request with ENOENT and `message`. Both carry bytes
   meant for the user's terminal. */
typedef struct hostile_server {
    int listen_fd;
    const char *refusal;
    const char *message;
    int ok; /* it said its piece */
} hostile_server;

static void *hostile_main(void *arg)
{
    hostile_server *v = arg;
    int fd = accept(v->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX + TF_WIRE_MESSAGE_MAX];
    tf_wire_server_hello sh = {.version_min = TF_WIRE_VERSION,
                               .version_max = TF_WIRE_VERSION,
                               .max_name = 255};
    if (v->refusal) {
        sh.status = tf__wire_status(TF_EBUSY);
        sh.message = v->refusal;
        sh.message_len = (uint16_t)strlen(v->refusal);
    }
    long n = tf__wire_encode_server_hello(buf, sizeof buf, &sh);
    tf_wire_request r;
    if (n > 0 && rp_send(fd, buf, (size_t)n) == 0 &&
        rp_recv(fd, buf, TF_WIRE_CLIENT_HELLO_SIZE) == 0) {
        if (v->refusal) {
            v->ok = 1;
        } else if (rp_recv(fd, buf, TF_WIRE_REQUEST_SIZE) == 0 &&
                   tf__wire_decode_request(buf, TF_WIRE_REQUEST_SIZE, 255, &r) ==
                       TF_WIRE_NEED_MORE &&
                   rp_recv(fd, buf + TF_WIRE_REQUEST_SIZE, r.name_len) == 0) {
            tf_wire_response no = {.op = r.op, .status = tf__wire_status(TF_ENOENT),
                                   .message = v->message,
                                   .message_len = (uint16_t)strlen(v->message)};
            n = tf__wire_encode_response(buf, sizeof buf, &no);
            if (n > 0 && rp_send(fd, buf, (size_t)n) == 0)
                v->ok = 1;
        }
    }
    while (recv(fd, buf, sizeof buf, 0) > 0) /* until the client closes */
        ;
    close(fd);
    return NULL;
}

/* No byte a terminal acts on: C0 controls and DEL. */
static void assert_printable(const char *what, const char *s)
{
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            fail_msg("%s holds control byte 0x%02x: \"%s\"", what, (unsigned char)*p, s);
}

static void test_loopback_server_text_is_escaped(void **state)
{
    (void)state;
    /* Clears the screen, then forges a line of the CLI's own. */
    static const char evil[] = "\x1b[2J\x1b]0;pwned\x07gone\ntcpfile-client: get \"x\": ok";
    static const char shown[] = "\\x1b[2J\\x1b]0;pwned\\x07gone\\x0atcpfile-client: get";
    for (int refuse = 0; refuse <= 1; refuse++) {
        char port[16];
        hostile_server v = {.listen_fd = tu_listen_loopback(port, sizeof port),
                            .refusal = refuse ? evil : NULL, .message = evil};
        pthread_t tid;
        assert_int_equal(pthread_create(&tid, NULL, hostile_main, &v), 0);
        tf_client *c = NULL;
        char err[512];
        int rc = tf_connect_ex(&c, "127.0.0.1", port, g.copt, err, sizeof err);
        if (refuse) {
            assert_int_equal(rc, TF_EBUSY);
            assert_printable("tf_connect_ex's message", err);
            if (!strstr(err, shown))
                fail_msg("the refusal shows as \"%s\"", err);
        } else {
            assert_int_equal(rc, TF_OK);
            expect_rc(c, tf_get_mem(c, "x", &(void *){NULL}, &(size_t){0}), TF_ENOENT);
            assert_printable("tf_errmsg", tf_errmsg(c));
            if (!strstr(tf_errmsg(c), shown))
                fail_msg("the message shows as \"%s\"", tf_errmsg(c));
            tf_close(c);
        }
        pthread_join(tid, NULL);
        close(v.listen_fd);
        assert_true(v.ok);
    }
}

/* A fake newer server that answers four gets on one connection: with a
   status this client does not know (99), normally, with a trailer whose
   status it does not know (98), and normally again. */
typedef struct newer_server {
    int listen_fd;
    int answered; /* requests read and answered */
} newer_server;

static void *newer_main(void *arg)
{
    newer_server *v = arg;
    int fd = accept(v->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX];
    tf_wire_server_hello sh = {
        .version_min = TF_WIRE_VERSION, .version_max = TF_WIRE_VERSION, .max_name = 255};
    long n = tf__wire_encode_server_hello(buf, sizeof buf, &sh);
    if (n <= 0 || send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n ||
        rp_recv(fd, buf, TF_WIRE_CLIENT_HELLO_SIZE) != 0)
        goto out;
    for (int i = 0; i < 4; i++) {
        tf_wire_request r;
        if (rp_recv(fd, buf, TF_WIRE_REQUEST_SIZE) != 0 ||
            tf__wire_decode_request(buf, TF_WIRE_REQUEST_SIZE, 255, &r) != TF_WIRE_NEED_MORE ||
            rp_recv(fd, buf + TF_WIRE_REQUEST_SIZE, r.name_len) != 0)
            goto out;
        static const char future[] = "a status from a later version";
        tf_wire_response rs = {.op = TF_OP_GET, .size = 3};
        if (i == 0)
            rs = (tf_wire_response){.op = TF_OP_GET, .status = 99, .message = future,
                                    .message_len = sizeof future - 1};
        n = tf__wire_encode_response(buf, sizeof buf, &rs);
        if (n <= 0 || send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
            goto out;
        if (i > 0) {
            tf_wire_trailer tr = {.status = i == 2 ? 98 : 0};
            memcpy(buf, "hi\n", 3);
            n = tf__wire_encode_trailer(buf + 3, sizeof buf - 3, &tr);
            if (n <= 0 || send(fd, buf, (size_t)n + 3, MSG_NOSIGNAL) != n + 3)
                goto out;
        }
        v->answered++;
    }
    rp_wait_closed(fd, 5000);
out:
    close(fd);
    return NULL;
}

/* A status this client does not know, from a newer server, fails that one
   request with TF_EINTERNAL and "unknown error from the server (status N)",
   in a response and in a trailer; the connection stays in step and the
   next request on it succeeds. */
static void test_loopback_unknown_status_keeps_connection(void **state)
{
    (void)state;
    char port[16];
    newer_server v = {.listen_fd = tu_listen_loopback(port, sizeof port)};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, newer_main, &v), 0);
    tf_client *c = NULL;
    assert_int_equal(tf_connect(&c, "127.0.0.1", port, g.copt), TF_OK);
    track_client(c);
    void *data = NULL;
    size_t len = 0;
    expect_rc(c, tf_get_mem(c, "a", &data, &len), TF_EINTERNAL);
    assert_string_equal(tf_errmsg(c), "unknown error from the server (status 99): a status "
                                      "from a later version");
    expect_ok(c, tf_get_mem(c, "b", &data, &len));
    assert_int_equal(len, 3);
    assert_memory_equal(data, "hi\n", 3);
    tf_free(data);
    expect_rc(c, tf_get_mem(c, "c", &data, &len), TF_EINTERNAL);
    assert_non_null(strstr(tf_errmsg(c), "unknown error from the server (status 98)"));
    expect_ok(c, tf_get_mem(c, "d", &data, &len));
    assert_memory_equal(data, "hi\n", 3);
    tf_free(data);
    drop_client(c);
    pthread_join(tid, NULL);
    close(v.listen_fd);
    assert_int_equal(v.answered, 4);
}

static void test_loopback_failed_get_keeps_local_file(void **state)
{
    (void)state;
    clean_root(g.main.root);
    char sub[PATH_MAX], victim[PATH_MAX], path[PATH_MAX];
    join_path(sub, sizeof sub, g.local, "keep-dir");
    assert_int_equal(mkdir(sub, 0755), 0);
    join_path(victim, sizeof victim, sub, "victim.txt");
    static const char precious[] = "precious bytes";
    tu_write_file(victim, precious, sizeof precious - 1);
    /* Things on the server that cannot be fetched. */
    join_path(path, sizeof path, g.main.root, "a-dir");
    assert_int_equal(mkdir(path, 0755), 0);
    join_path(path, sizeof path, g.main.root, "a-fifo");
    assert_int_equal(mkfifo(path, 0644), 0);

    tf_client *c = connect_main();
    expect_rc(c, tf_get(c, "victim-missing", victim), TF_ENOENT);
    assert_file_content(victim, precious, sizeof precious - 1);
    int rc = tf_get(c, "a-dir", victim);
    assert_true(rc == TF_EACCES || rc == TF_ENOENT || rc == TF_EISDIR);
    assert_file_content(victim, precious, sizeof precious - 1);
    rc = tf_get(c, "a-fifo", victim);
    assert_true(rc == TF_EACCES || rc == TF_ENOENT);
    assert_file_content(victim, precious, sizeof precious - 1);
    /* Into a directory: dir/name must not appear. */
    expect_rc(c, tf_get(c, "victim-missing", sub), TF_ENOENT);
    join_path(path, sizeof path, sub, "victim-missing");
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_entries(sub), 1);
    assert_no_entry_prefixed(sub, PART_PREFIX);
    assert_no_entry_prefixed(g.local, PART_PREFIX);
    tu_rm_rf(sub);
    clean_root(g.main.root);
}

/* ------------------------------------------------------------------------ */
/* The server's directory                                                   */
/* ------------------------------------------------------------------------ */

static int compare_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_loopback_root_holds_only_published_files(void **state)
{
    (void)state;
    clean_root(g.main.root);
    tf_client *c = connect_main();
    expect_ok(c, tf_put_mem(c, "a", 1, "pub-a"));
    expect_ok(c, tf_put_mem(c, g.big, 100000, "pub-b"));
    expect_ok(c, tf_put_mem(c, "first", 5, "pub-c"));
    expect_ok(c, tf_put_mem(c, "second", 6, "pub-c")); /* overwrite */
    char src[PATH_MAX];
    join_path(src, sizeof src, g.local, "pub-d");
    tu_write_file(src, "from a file", 11);
    expect_ok(c, tf_put(c, src, NULL));
    expect_ok(c, tf_put_mem(c, "", 0, ".hidden-but-valid"));
    unlink(src);

    /* Exactly the published names, plus the empty upload directory. */
    const char *want[] = {".hidden-but-valid", TMP_DIR, "pub-a", "pub-b", "pub-c", "pub-d"};
    const size_t nwant = sizeof want / sizeof want[0];
    const char *got[16];
    size_t ngot = 0;
    char names[16][NAME_MAX + 1];
    DIR *d = opendir(g.main.root);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (ngot < 16) {
            snprintf(names[ngot], sizeof names[ngot], "%s", de->d_name);
            got[ngot] = names[ngot];
        }
        ngot++;
    }
    closedir(d);
    assert_int_equal(ngot, nwant);
    qsort(got, ngot, sizeof got[0], compare_str);
    for (size_t i = 0; i < nwant; i++)
        assert_string_equal(got[i], want[i]);
    char tmp[PATH_MAX];
    join_path(tmp, sizeof tmp, g.main.root, TMP_DIR);
    struct stat st;
    assert_int_equal(lstat(tmp, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(count_entries(tmp), 0);

    char path[PATH_MAX];
    join_path(path, sizeof path, g.main.root, "pub-c");
    assert_file_content(path, "second", 6);

    /* The listing: the files, never the upload directory. */
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    assert_int_equal(tf_listing_count(l), 5);
    assert_null(find_entry(l, TMP_DIR));
    assert_string_equal(tf_listing_at(l, 0)->name, ".hidden-but-valid");
    assert_string_equal(tf_listing_at(l, 4)->name, "pub-d");
    assert_null(tf_listing_at(l, 5));
    tf_listing_free(l);

    /* The upload directory cannot be fetched nor written over. */
    int rc = tf_get_mem(c, TMP_DIR, &(void *){0}, &(size_t){0});
    assert_true(rc == TF_EACCES || rc == TF_ENOENT);
    rc = tf_put_mem(c, "x", 1, TMP_DIR);
    assert_true(rc == TF_EACCES || rc == TF_EEXIST);
    assert_int_equal(lstat(tmp, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    clean_root(g.main.root);
}

static void test_loopback_special_entries_not_served(void **state)
{
    (void)state;
    clean_root(g.main.root);
    char path[PATH_MAX], sub[PATH_MAX];
    join_path(path, sizeof path, g.main.root, "real");
    tu_write_file(path, "real!", 5);
    join_path(path, sizeof path, g.main.root, "link");
    assert_int_equal(symlink("real", path), 0);
    join_path(path, sizeof path, g.main.root, "escape");
    assert_int_equal(symlink("/etc/hostname", path), 0);
    join_path(path, sizeof path, g.main.root, "dangling");
    assert_int_equal(symlink("nowhere", path), 0);
    join_path(sub, sizeof sub, g.main.root, "subdir");
    assert_int_equal(mkdir(sub, 0755), 0);
    join_path(path, sizeof path, sub, "inner");
    tu_write_file(path, "inner", 5);
    join_path(path, sizeof path, g.main.root, "fifo");
    assert_int_equal(mkfifo(path, 0644), 0);
    /* A name no client could ask for is not listed either. */
    join_path(path, sizeof path, g.main.root, "bad\nname");
    tu_write_file(path, "x", 1);

    tf_client *c = connect_main();
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    assert_int_equal(tf_listing_count(l), 1);
    assert_string_equal(tf_listing_at(l, 0)->name, "real");
    assert_int_equal(tf_listing_at(l, 0)->size, 5);
    tf_listing_free(l);

    static const char *refused[] = {"link",   "escape", "dangling",
                                    "subdir", "fifo",   TMP_DIR};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int64_t t0 = tu_now_ms();
        void *data = (void *)1;
        size_t len = 1;
        int rc = tf_get_mem(c, refused[i], &data, &len);
        if (rc != TF_EACCES && rc != TF_ENOENT && rc != TF_EISDIR) /* a directory, with TREE */
            fail_msg("get \"%s\" gave %s (%s)", refused[i], tf_errname(rc), tf_errmsg(c));
        assert_null(data);
        assert_true(tu_now_ms() - t0 < 3000);
        /* Through a local file too: nothing is created. */
        char local[PATH_MAX];
        join_path(local, sizeof local, g.local, "special-target");
        rc = tf_get(c, refused[i], local);
        assert_true(rc == TF_EACCES || rc == TF_ENOENT || rc == TF_EISDIR);
        assert_int_equal(access(local, F_OK), -1);
    }
    /* Uploads may not replace them either. */
    static const char *unwritable[] = {"link", "escape", "subdir", "fifo"};
    for (size_t i = 0; i < sizeof unwritable / sizeof unwritable[0]; i++) {
        int rc = tf_put_mem(c, "overwritten", 11, unwritable[i]);
        if (rc != TF_EACCES && !(rc == TF_EISDIR && strcmp(unwritable[i], "subdir") == 0))
            fail_msg("put \"%s\" gave %s (%s)", unwritable[i], tf_errname(rc),
                     tf_errmsg(c));
    }
    struct stat st;
    join_path(path, sizeof path, g.main.root, "link");
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    join_path(path, sizeof path, g.main.root, "fifo");
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    join_path(path, sizeof path, g.main.root, "real");
    assert_file_content(path, "real!", 5);
    /* The connection is fine after all that. */
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "real", &data, &len));
    assert_int_equal(len, 5);
    assert_memory_equal(data, "real!", 5);
    tf_free(data);
    assert_upload_dir_empty(g.main.root);
    clean_root(g.main.root);
}

static void test_loopback_list_thousand_files(void **state)
{
    (void)state;
    clean_root(g.main.root);
    enum { N = 1000 };
    /* Prefixes chosen so that bytewise order differs from a naive one:
       upper case before lower, UTF-8 after ASCII. */
    static const char *prefixes[] = {"f", "F", "_", "\xc3\xa9", "z", "0", "\xe6\x97\xa5",
                                     "~"};
    char(*names)[32] = calloc(N, sizeof *names);
    assert_non_null(names);
    uint8_t zeros[300] = {0};
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "%s-%04d", prefixes[i % 8], (i * 7919) % N);
        char path[PATH_MAX];
        join_path(path, sizeof path, g.main.root, names[i]);
        tu_write_file(path, zeros, (size_t)(i % 300));
        struct timespec times[2] = {{1000000000 + i * 37, 0}, {1000000000 + i * 37, 0}};
        assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
    }
    tf_client *c = connect_main();
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    assert_int_equal(tf_listing_count(l), N);
    for (size_t i = 0; i < N; i++) {
        const tf_entry *e = tf_listing_at(l, i);
        if (i > 0 && strcmp(tf_listing_at(l, i - 1)->name, e->name) >= 0)
            fail_msg("not sorted bytewise at %zu: \"%s\" then \"%s\"", i,
                     tf_listing_at(l, i - 1)->name, e->name);
        char path[PATH_MAX];
        join_path(path, sizeof path, g.main.root, e->name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(e->size, (uint64_t)st.st_size);
        assert_int_equal(e->mtime, (int64_t)st.st_mtime);
    }
    /* Every file made is there (the count and the order rule out dups). */
    for (int i = 0; i < N; i++) {
        const tf_entry *e = find_entry(l, names[i]);
        assert_non_null(e);
        assert_int_equal(e->size, (uint64_t)(i % 300));
        assert_int_equal(e->mtime, (int64_t)1000000000 + i * 37);
    }
    tf_listing_free(l);
    free(names);
    clean_root(g.main.root);
}

/* ------------------------------------------------------------------------ */
/* Load: parallel clients, many requests                                    */
/* ------------------------------------------------------------------------ */

enum { PAR_THREADS = 8, PAR_ROUNDS = 25 };

typedef struct par_worker {
    int id;
    int done_rounds;
    int failures;
    char first_failure[512];
} par_worker;

static void *par_main(void *arg)
{
    par_worker *w = arg;
    tf_client *c = NULL;
    char err[256];
    int rc = tf_connect_ex(&c, "127.0.0.1", g.main.port, g.copt, err, sizeof err);
    if (rc != TF_OK) {
        w->failures++;
        snprintf(w->first_failure, sizeof w->first_failure, "connect: %s %s",
                 tf_errname(rc), err);
        return NULL;
    }
    for (int r = 0; r < PAR_ROUNDS; r++) {
        uint64_t seed = (uint64_t)w->id * 1000 + (uint64_t)r;
        uint8_t sz[4];
        tu_fill(sz, sizeof sz, seed + 0x5eed);
        size_t size =
            r == 0 ? 0 : (size_t)(((uint32_t)sz[0] << 16 | sz[1] << 8 | sz[2]) % 300000);
        uint8_t *content = malloc(size + 1);
        if (!content) {
            w->failures++;
            break;
        }
        tu_fill(content, size, seed);
        char name[64];
        snprintf(name, sizeof name, "par-%d-%02d", w->id % 100, r % 100);
        void *data = NULL;
        size_t len = 0;
        rc = tf_put_mem(c, content, size, name);
        if (rc == TF_OK)
            rc = tf_get_mem(c, name, &data, &len);
        if (rc == TF_OK && (len != size || (size && memcmp(data, content, size) != 0)))
            rc = TF_ECHECKSUM;
        if (rc != TF_OK) {
            if (!w->failures++)
                snprintf(w->first_failure, sizeof w->first_failure, "round %d %s: %s (%s)",
                         r, name, tf_errname(rc), tf_errmsg(c));
        } else {
            w->done_rounds++;
        }
        tf_free(data);
        free(content);
    }
    tf_close(c);
    return NULL;
}

static void test_loopback_parallel_clients(void **state)
{
    (void)state;
    par_worker w[PAR_THREADS];
    pthread_t tid[PAR_THREADS];
    for (int i = 0; i < PAR_THREADS; i++) {
        w[i] = (par_worker){.id = i};
        assert_int_equal(pthread_create(&tid[i], NULL, par_main, &w[i]), 0);
    }
    for (int i = 0; i < PAR_THREADS; i++)
        pthread_join(tid[i], NULL);
    for (int i = 0; i < PAR_THREADS; i++) {
        if (w[i].failures)
            fail_msg("worker %d: %d failures, first: %s", i, w[i].failures,
                     w[i].first_failure);
        assert_int_equal(w[i].done_rounds, PAR_ROUNDS);
    }
    /* Everything they stored is there, once, with the right size. */
    tf_client *c = connect_main();
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    for (int i = 0; i < PAR_THREADS; i++) {
        for (int r = 0; r < PAR_ROUNDS; r++) {
            char name[64];
            snprintf(name, sizeof name, "par-%d-%02d", i, r);
            assert_non_null(find_entry(l, name));
        }
    }
    tf_listing_free(l);
    assert_upload_dir_empty(g.main.root);
}

static void test_loopback_many_requests_one_connection(void **state)
{
    (void)state;
    tf_client *c = connect_main();
    uint8_t small[2000];
    tu_fill(small, sizeof small, 2000);
    expect_ok(c, tf_put_mem(c, small, sizeof small, "small-0"));
    expect_ok(c, tf_put_mem(c, small + 1000, 1000, "small-1"));
    for (int i = 0; i < 2000; i++) {
        void *data;
        size_t len;
        const char *name = i % 2 ? "small-1" : "small-0";
        size_t want = i % 2 ? 1000 : sizeof small;
        expect_ok(c, tf_get_mem(c, name, &data, &len));
        assert_int_equal(len, want);
        assert_memory_equal(data, i % 2 ? small + 1000 : small, want);
        tf_free(data);
    }
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    tf_listing_free(l);
}

/* ------------------------------------------------------------------------ */
/* Server options                                                           */
/* ------------------------------------------------------------------------ */

static test_server *server_with(tf_option key, int64_t value)
{
    tf_options *o = NULL;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, key, value), TF_OK);
    test_server *ts = extra_server(o);
    tf_options_free(o);
    return ts;
}

static void test_loopback_option_max_connections(void **state)
{
    (void)state;
    test_server *ts = server_with(TF_OPT_MAX_CONNECTIONS, 1);
    tf_client *first = connect_to(ts, NULL);
    tf_listing *l;
    expect_ok(first, tf_list(first, &l));
    tf_listing_free(l);

    for (int i = 0; i < 3; i++) {
        tf_client *second = (tf_client *)1;
        char err[256] = "";
        int rc = tf_connect_ex(&second, "127.0.0.1", ts->port, g.copt, err, sizeof err);
        if (rc != TF_EBUSY)
            fail_msg("second connection gave %s (%s)", tf_errname(rc), err);
        assert_null(second);
        assert_true(err[0] != '\0');
    }
    /* The first connection is unaffected. */
    expect_ok(first, tf_put_mem(first, "1", 1, "only-one"));
    drop_client(first);

    /* Its slot frees once the server notices the close. */
    int rc = TF_EBUSY;
    tf_client *again = NULL;
    for (int i = 0; i < 300 && rc == TF_EBUSY; i++) {
        rc = tf_connect(&again, "127.0.0.1", ts->port, g.copt);
        if (rc == TF_EBUSY)
            tu_sleep_ms(10);
    }
    expect_rc(NULL, rc, TF_OK);
    track_client(again);
    void *data;
    size_t len;
    expect_ok(again, tf_get_mem(again, "only-one", &data, &len));
    assert_int_equal(len, 1);
    tf_free(data);
}

static void test_loopback_option_read_only(void **state)
{
    (void)state;
    test_server *ts = server_with(TF_OPT_READ_ONLY, 1);
    char path[PATH_MAX];
    join_path(path, sizeof path, ts->root, "served");
    tu_write_file(path, "read me", 7);
    tf_client *c = connect_to(ts, NULL);
    expect_rc(c, tf_put_mem(c, "no", 2, "new-file"), TF_EACCES);
    assert_true(tf_errmsg(c)[0] != '\0');
    expect_rc(c, tf_put_mem(c, "no", 2, "served"), TF_EACCES);
    char src[PATH_MAX];
    join_path(src, sizeof src, g.local, "ro-src");
    tu_write_file(src, "no", 2);
    expect_rc(c, tf_put(c, src, NULL), TF_EACCES);
    unlink(src);
    /* Reading still works, on the same connection. */
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "served", &data, &len));
    assert_int_equal(len, 7);
    assert_memory_equal(data, "read me", 7);
    tf_free(data);
    assert_file_content(path, "read me", 7);
    join_path(path, sizeof path, ts->root, "new-file");
    assert_int_equal(access(path, F_OK), -1);
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    assert_int_equal(tf_listing_count(l), 1);
    tf_listing_free(l);
}

static void test_loopback_option_no_overwrite(void **state)
{
    (void)state;
    test_server *ts = server_with(TF_OPT_OVERWRITE, 0);
    tf_client *c = connect_to(ts, NULL);
    expect_ok(c, tf_put_mem(c, "first", 5, "once"));
    expect_rc(c, tf_put_mem(c, "second", 6, "once"), TF_EEXIST);
    assert_non_null(strstr(tf_errmsg(c), "once"));
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "once", &data, &len));
    assert_int_equal(len, 5);
    assert_memory_equal(data, "first", 5);
    tf_free(data);
    char path[PATH_MAX];
    join_path(path, sizeof path, ts->root, "once");
    assert_file_content(path, "first", 5);
    assert_upload_dir_empty(ts->root);
    expect_ok(c, tf_put_mem(c, "other", 5, "twice"));
}

static void test_loopback_option_max_upload(void **state)
{
    (void)state;
    test_server *ts = server_with(TF_OPT_MAX_UPLOAD, 1000);
    tf_client *c = connect_to(ts, NULL);
    expect_ok(c, tf_put_mem(c, g.big, 1000, "exactly-1000"));
    expect_rc(c, tf_put_mem(c, g.big, 1001, "over-1000"), TF_ETOOBIG);
    expect_ok(c, tf_put_mem(c, "", 0, "empty"));
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "exactly-1000", &data, &len));
    assert_int_equal(len, 1000);
    assert_memory_equal(data, g.big, 1000);
    tf_free(data);
    char path[PATH_MAX];
    join_path(path, sizeof path, ts->root, "over-1000");
    assert_int_equal(access(path, F_OK), -1);

    /* The server refuses by itself too, whatever a client believes. */
    int fd = raw_connect(ts->port);
    raw_handshake(fd);
    raw_request(fd, TF_OP_PUT, "over-1000", 9, 1001);
    raw_expect_refusal(fd, TF_OP_PUT, TF_ETOOBIG);
    tf_listing *l = raw_list(fd);
    assert_int_equal(tf_listing_count(l), 2);
    tf_listing_free(l);
    raw_close(fd);
}

static void test_loopback_option_max_name(void **state)
{
    (void)state;
    test_server *ts = server_with(TF_OPT_MAX_NAME_LEN, 15);
    char path[PATH_MAX];
    join_path(path, sizeof path, ts->root, "name-of-16-byte");
    tu_write_file(path, "15", 2); /* 15 bytes: listed */
    join_path(path, sizeof path, ts->root, "name-of-16-bytes");
    tu_write_file(path, "16", 2); /* 16 bytes: not listed */

    tf_client *c = connect_to(ts, NULL);
    assert_int_equal(tf_client_max_name(c), 15);
    expect_ok(c, tf_put_mem(c, "ok", 2, "fifteen-bytes-x"));
    expect_rc(c, tf_put_mem(c, "no", 2, "sixteen-bytes-xx"), TF_EINVAL);
    expect_rc(c, tf_get_mem(c, "name-of-16-bytes", &(void *){0}, &(size_t){0}), TF_EINVAL);
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "fifteen-bytes-x", &data, &len));
    assert_int_equal(len, 2);
    tf_free(data);
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    assert_int_equal(tf_listing_count(l), 2);
    assert_non_null(find_entry(l, "name-of-16-byte"));
    assert_non_null(find_entry(l, "fifteen-bytes-x"));
    tf_listing_free(l);

    /* A raw client is told the limit, and refused past it, and carries on. */
    int fd = raw_connect(ts->port);
    assert_int_equal(raw_handshake(fd), 15);
    raw_request(fd, TF_OP_GET, "name-of-16-bytes", 16, 0);
    raw_expect_refusal(fd, TF_OP_GET, TF_EINVAL);
    l = raw_list(fd);
    assert_int_equal(tf_listing_count(l), 2);
    tf_listing_free(l);
    raw_close(fd);
}

/* ------------------------------------------------------------------------ */
/* Stop, log, progress                                                      */
/* ------------------------------------------------------------------------ */

static void test_loopback_stop_with_idle_clients(void **state)
{
    (void)state;
    test_server *ts = server_with(TF_OPT_STOP_GRACE_MS, 5000);
    tf_client *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = connect_to(ts, NULL);
    tf_listing *l;
    expect_ok(c[0], tf_list(c[0], &l)); /* an empty root */
    assert_int_equal(tf_listing_count(l), 0);
    assert_null(tf_listing_at(l, 0));
    tf_listing_free(l);
    expect_ok(c[1], tf_put_mem(c[1], "idle", 4, "idle"));
    /* c[2] never sends anything. */
    int64_t t0 = tu_now_ms();
    tu_server_join(ts);
    int64_t took = tu_now_ms() - t0;
    print_message("      stop with 3 idle clients took %lld ms\n", (long long)took);
    assert_true(took < 2000);
    assert_int_equal(ts->run_rc, TF_OK);
    char port[16];
    snprintf(port, sizeof port, "%s", ts->port);
    tu_server_stop(ts, 1);

    for (int i = 0; i < 3; i++) {
        tf_listing *none = (tf_listing *)1;
        expect_rc(c[i], tf_list(c[i], &none), TF_ENET);
        assert_null(none);
        void *data = (void *)1;
        size_t len;
        expect_rc(c[i], tf_get_mem(c[i], "idle", &data, &len), TF_ENET);
        assert_null(data);
        expect_rc(c[i], tf_put_mem(c[i], "x", 1, "after-stop"), TF_ENET);
    }
    /* Nobody listens there any more. */
    tf_client *late = NULL;
    expect_rc(NULL, tf_connect(&late, "127.0.0.1", port, g.copt), TF_ECONNREFUSED);
    assert_null(late);
}

static void test_loopback_log_entries(void **state)
{
    (void)state;
    test_server *ts = logged_server();

    tf_client *c = connect_to(ts, NULL);
    expect_ok(c, tf_put_mem(c, g.big, 1234, "log-file"));
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "log-file", &data, &len));
    tf_free(data);
    expect_rc(c, tf_get_mem(c, "log-missing", &data, &len), TF_ENOENT);
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    tf_listing_free(l);
    expect_rc(c, tf_get_mem(c, "../nope", &data, &len), TF_EINVAL); /* never sent */

    assert_int_equal(log_wait(4), 4);
    drop_client(c); /* leaving is not a request */
    tu_sleep_ms(100);
    assert_int_equal(log_count(), 4);

    static const struct {
        const char *op, *name;
        uint64_t bytes;
        int result;
    } want[] = {
        {"put", "log-file", 1234, TF_OK},
        {"get", "log-file", 1234, TF_OK},
        {"get", "log-missing", 0, TF_ENOENT},
        {"list", "", 4 + 18 + 8, TF_OK}, /* one entry named "log-file" */
    };
    for (int i = 0; i < 4; i++) {
        const log_copy *e = &g_log.e[i];
        assert_string_equal(e->op, want[i].op);
        assert_string_equal(e->name, want[i].name);
        assert_int_equal(e->bytes, want[i].bytes);
        assert_int_equal(e->result, want[i].result);
        assert_int_equal(strncmp(e->peer, "127.0.0.1:", 10), 0);
        assert_true(e->seconds >= 0 && e->seconds < 10);
        if (want[i].result == TF_OK)
            assert_string_equal(e->message, "");
        else
            assert_non_null(strstr(e->message, want[i].name));
    }
}

static void test_loopback_progress(void **state)
{
    (void)state;
    tf_client *c = connect_main();
    expect_ok(c, tf_put_mem(c, g.big, MID_SIZE, "progress-src"));
    drop_client(c);

    progress_rec rec = {0};
    tf_options *o = client_options();
    assert_int_equal(tf_options_set_progress(o, record_progress, &rec), TF_OK);
    c = connect_to(&g.main, o);
    tf_options_free(o); /* the client keeps its own copy */

    char dst[PATH_MAX];
    join_path(dst, sizeof dst, g.local, "progress-dst");
    expect_ok(c, tf_get(c, "progress-src", dst));
    assert_progress_complete(&rec, MID_SIZE);
    assert_file_content(dst, g.big, MID_SIZE);
    unlink(dst);

    rec = (progress_rec){0};
    void *data;
    size_t len;
    expect_ok(c, tf_get_mem(c, "progress-src", &data, &len));
    assert_progress_complete(&rec, MID_SIZE);
    tf_free(data);

    rec = (progress_rec){0};
    expect_ok(c, tf_put_mem(c, g.big + 1, MID_SIZE, "progress-up"));
    assert_progress_complete(&rec, MID_SIZE);

    rec = (progress_rec){0};
    char src[PATH_MAX];
    join_path(src, sizeof src, g.local, "progress-file");
    tu_write_file(src, g.big, MID_SIZE);
    expect_ok(c, tf_put(c, src, "progress-up"));
    assert_progress_complete(&rec, MID_SIZE);
    unlink(src);
}

static void test_loopback_progress_cancel(void **state)
{
    (void)state;
    tf_client *c = connect_main();
    expect_ok(c, tf_put_mem(c, g.big, MID_SIZE, "cancel-src"));
    drop_client(c);

    progress_rec rec = {.cancel_at = 1};
    tf_options *o = client_options();
    assert_int_equal(tf_options_set_progress(o, record_progress, &rec), TF_OK);

    char dir[PATH_MAX], dst[PATH_MAX];
    join_path(dir, sizeof dir, g.local, "cancel-dir");
    assert_int_equal(mkdir(dir, 0755), 0);
    join_path(dst, sizeof dst, dir, "fresh");

    /* Into a new file: it never appears. */
    c = connect_to(&g.main, o);
    expect_rc(c, tf_get(c, "cancel-src", dst), TF_ECANCELED);
    assert_true(rec.cancelled >= 1);
    assert_true(rec.last_done < MID_SIZE);
    assert_int_equal(access(dst, F_OK), -1);
    drop_client(c);

    /* Over an existing file: it stays as it was. */
    join_path(dst, sizeof dst, dir, "existing");
    tu_write_file(dst, "keep me", 7);
    rec = (progress_rec){.cancel_at = (uint64_t)1 << 20};
    c = connect_to(&g.main, o);
    expect_rc(c, tf_get(c, "cancel-src", dst), TF_ECANCELED);
    assert_true(rec.last_done < MID_SIZE);
    assert_file_content(dst, "keep me", 7);
    drop_client(c);

    /* Into memory. */
    rec = (progress_rec){.cancel_at = (uint64_t)1 << 20};
    c = connect_to(&g.main, o);
    void *data = (void *)1;
    size_t len = 1;
    expect_rc(c, tf_get_mem(c, "cancel-src", &data, &len), TF_ECANCELED);
    assert_null(data);
    assert_int_equal(len, 0);
    drop_client(c);

    /* An upload: never published, its temporary removed. */
    rec = (progress_rec){.cancel_at = (uint64_t)1 << 20};
    c = connect_to(&g.main, o);
    expect_rc(c, tf_put_mem(c, g.big, MID_SIZE, "cancelled-put"), TF_ECANCELED);
    drop_client(c);
    tf_options_free(o);

    assert_int_equal(count_entries(dir), 1);
    assert_no_entry_prefixed(dir, PART_PREFIX);
    assert_upload_dir_empty(g.main.root);
    char path[PATH_MAX];
    join_path(path, sizeof path, g.main.root, "cancelled-put");
    assert_int_equal(access(path, F_OK), -1);
    c = connect_main();
    tf_listing *l;
    expect_ok(c, tf_list(c, &l));
    assert_null(find_entry(l, "cancelled-put"));
    assert_non_null(find_entry(l, "cancel-src"));
    tf_listing_free(l);
    tu_rm_rf(dir);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_loopback_sizes_in_memory),
        T(test_loopback_sizes_through_files),
        T(test_loopback_get_fd_pipe_and_file),
        T(test_loopback_get_into_directory),
        T(test_loopback_get_into_dev_null),
        T(test_loopback_missing_file),
        T(test_loopback_client_refuses_bad_names),
        T(test_loopback_server_refuses_bad_names),
        T(test_loopback_server_skips_overlong_names),
        T(test_loopback_garbage_instead_of_hello),
        T(test_loopback_unknown_op_closes),
        T(test_loopback_truncated_requests),
        T(test_loopback_pipelined_requests),
        T(test_loopback_client_vanishes_mid_get),
        T(test_loopback_server_vanishes_mid_put),
        T(test_loopback_errors_local_write_keeps_errno),
        T(test_loopback_errors_refusal_kept_per_call),
        T(test_loopback_errors_handshake_reset_keeps_cause),
        T(test_loopback_server_text_is_escaped),
        T(test_loopback_unknown_status_keeps_connection),
        T(test_loopback_failed_get_keeps_local_file),
        T(test_loopback_root_holds_only_published_files),
        T(test_loopback_special_entries_not_served),
        T(test_loopback_list_thousand_files),
        T(test_loopback_parallel_clients),
        T(test_loopback_many_requests_one_connection),
        T(test_loopback_option_max_connections),
        T(test_loopback_option_read_only),
        T(test_loopback_option_no_overwrite),
        T(test_loopback_option_max_upload),
        T(test_loopback_option_max_name),
        T(test_loopback_stop_with_idle_clients),
        T(test_loopback_log_entries),
        T(test_loopback_progress),
        T(test_loopback_progress_cancel),
    };
    return TU_RUN_GROUP("loopback", tests, group_setup, group_teardown, argc > 1 ? argv[1] : NULL);
}
