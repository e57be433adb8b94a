/*
 * test_integrity.c - the promises of "nothing lost": end-to-end checksums
 * (a proxy in the middle flips one bit), resumed downloads and uploads,
 * the minimum-progress timeout, and the start-up sweep of temporaries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

#include "testutil.h"
#include "wire.h"

#define FILE_SIZE ((size_t)8 << 20)

/* ---- a proxy that flips one bit ------------------------------------------ */

typedef struct proxy {
    int listen_fd;
    char port[16];
    const char *server_port;
    int to_server;      /* flip in the client-to-server direction (else back) */
    long long flip_at;  /* byte index in that direction; -1: flip nothing */
    pthread_t thread;
} proxy;

static int listen_loopback(char *port, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    snprintf(port, len, "%u", (unsigned)ntohs(a.sin_port));
    return fd;
}

static int connect_loopback(const char *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Copies what is readable on from to to; flips the bit if it passes by. */
static int pump(int from, int to, long long *count, long long flip_at)
{
    char buf[65536];
    ssize_t n = recv(from, buf, sizeof buf, 0);
    if (n <= 0)
        return -1;
    if (flip_at >= *count && flip_at < *count + n)
        buf[flip_at - *count] ^= 0x10;
    *count += n;
    for (ssize_t done = 0; done < n;) {
        ssize_t w = send(to, buf + done, (size_t)(n - done), MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        done += w;
    }
    return 0;
}

static void *proxy_main(void *arg)
{
    proxy *p = arg;
    int client = accept(p->listen_fd, NULL, NULL);
    int server = connect_loopback(p->server_port);
    long long up = 0, down = 0;
    while (client >= 0 && server >= 0) {
        struct pollfd f[2] = {{.fd = client, .events = POLLIN}, {.fd = server, .events = POLLIN}};
        if (poll(f, 2, 10000) <= 0)
            break;
        if (f[0].revents && pump(client, server, &up, p->to_server ? p->flip_at : -1) != 0)
            break;
        if (f[1].revents && pump(server, client, &down, p->to_server ? -1 : p->flip_at) != 0)
            break;
    }
    if (client >= 0)
        close(client);
    if (server >= 0)
        close(server);
    return NULL;
}

static void proxy_start(proxy *p, const char *server_port, int to_server, long long flip_at)
{
    p->server_port = server_port;
    p->to_server = to_server;
    p->flip_at = flip_at;
    p->listen_fd = listen_loopback(p->port, sizeof p->port);
    assert_int_equal(pthread_create(&p->thread, NULL, proxy_main, p), 0);
}

static void proxy_join(proxy *p)
{
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
}

static tf_client *connect_via(const proxy *p, const tf_options *opt)
{
    tf_client *c = NULL;
    char err[256];
    int rc = tf_connect_ex(&c, "127.0.0.1", p->port, opt, err, sizeof err);
    if (rc != TF_OK)
        fail_msg("connect through the proxy: %s (%s)", tf_strerror(rc), err);
    return c;
}

/* ---- fixtures --------------------------------------------------------------- */

typedef struct fixture {
    test_server server;
    char local[256];
    uint8_t *data;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->data = malloc(FILE_SIZE);
    tu_fill(f->data, FILE_SIZE, 42);
    tu_server_start(&f->server, NULL);
    tu_mkdtemp(f->local, sizeof f->local);
    char path[512];
    snprintf(path, sizeof path, "%s/big.bin", f->server.root);
    tu_write_file(path, f->data, FILE_SIZE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_server_stop(&f->server, 1);
    tu_rm_rf(f->local);
    free(f->data);
    free(f);
    return 0;
}

static tf_options *options(int64_t checksum, int64_t resume)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_CHECKSUM, checksum), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_RESUME, resume), TF_OK);
    return o;
}

/* Bytes from the start of the server's stream to the first payload byte of
   a get of a name (server hello, no message; response head). */
#define GET_PAYLOAD_START (TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_RESPONSE_SIZE)

/* ---- checksums ------------------------------------------------------------- */

static void test_integrity_get_bit_flip_is_caught(void **state)
{
    fixture *f = *state;
    proxy p;
    char dest[512];
    snprintf(dest, sizeof dest, "%s/flipped.bin", f->local);
    proxy_start(&p, f->server.port, 0, GET_PAYLOAD_START + 123456);
    tf_client *c = connect_via(&p, NULL);
    int rc = tf_get(c, "big.bin", dest);
    assert_int_equal(rc, TF_ECHECKSUM);
    assert_non_null(strstr(tf_errmsg(c), "checksum"));
    assert_int_equal(tu_file_size(dest), -1); /* nothing kept */
    assert_int_equal(tu_count_prefix(f->local, ".tcpfile-part"), 0);
    /* The stream is still in step: the same connection goes on. */
    void *d;
    size_t n;
    assert_int_equal(tf_get_mem(c, "big.bin", &d, &n), TF_OK);
    assert_int_equal(n, FILE_SIZE);
    assert_memory_equal(d, f->data, FILE_SIZE);
    tf_free(d);
    tf_close(c);
    proxy_join(&p);
}

static void test_integrity_without_checksum_a_flip_goes_unseen(void **state)
{
    fixture *f = *state;
    proxy p;
    tf_options *o = options(0, 0);
    proxy_start(&p, f->server.port, 0, GET_PAYLOAD_START + 99);
    tf_client *c = connect_via(&p, o);
    void *d;
    size_t n;
    /* This is why the checksum is on by default. */
    assert_int_equal(tf_get_mem(c, "big.bin", &d, &n), TF_OK);
    assert_int_equal(n, FILE_SIZE);
    assert_true(memcmp(d, f->data, FILE_SIZE) != 0);
    assert_int_equal(((uint8_t *)d)[99] ^ f->data[99], 0x10);
    tf_free(d);
    tf_close(c);
    proxy_join(&p);
    tf_options_free(o);
}

static void test_integrity_put_bit_flip_is_caught(void **state)
{
    fixture *f = *state;
    proxy p;
    const char *name = "upload.bin";
    /* client hello, the put request (head + name), then the payload */
    long long start = TF_WIRE_CLIENT_HELLO_SIZE + TF_WIRE_REQUEST_SIZE + (long long)strlen(name);
    proxy_start(&p, f->server.port, 1, start + 4321);
    tf_client *c = connect_via(&p, NULL);
    assert_int_equal(tf_put_mem(c, f->data, FILE_SIZE, name), TF_ECHECKSUM);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", f->server.root, name);
    assert_int_equal(tu_file_size(path), -1);
    snprintf(path, sizeof path, "%s/.tcpfile-tmp", f->server.root);
    assert_int_equal(tu_count_prefix(path, "up-"), 0);
    /* And the connection goes on. */
    assert_int_equal(tf_put_mem(c, "ok", 2, name), TF_OK);
    tf_close(c);
    proxy_join(&p);
}

static void test_integrity_checksum_off_on_one_side_still_works(void **state)
{
    fixture *f = *state;
    tf_options *o = options(0, 0);
    tf_client *c = tu_connect(&f->server, o);
    void *d;
    size_t n;
    assert_int_equal(tf_put_mem(c, f->data, 1000, "plain.bin"), TF_OK);
    assert_int_equal(tf_get_mem(c, "plain.bin", &d, &n), TF_OK);
    assert_int_equal(n, 1000);
    assert_memory_equal(d, f->data, 1000);
    tf_free(d);
    tf_close(c);
    tf_options_free(o);
}

static void test_integrity_remembered_digest(void **state)
{
    fixture *f = *state;
    char path[512];
    snprintf(path, sizeof path, "%s/remembered.bin", f->server.root);
    tf_client *c = tu_connect(&f->server, NULL);
    assert_int_equal(tf_put_mem(c, f->data, 1 << 20, "remembered.bin"), TF_OK);
    /* The put left the verified digest beside the file, where the file
       system keeps user xattrs (tmpfs before Linux 6.6 does not). */
    int remembered = getxattr(path, "user.tcpfile.xxh3", NULL, 0) > 0;
    void *d;
    size_t n;
    assert_int_equal(tf_get_mem(c, "remembered.bin", &d, &n), TF_OK);
    assert_int_equal(n, 1 << 20);
    assert_memory_equal(d, f->data, 1 << 20);
    tf_free(d);

    /* Changed behind the server's back (same size, other bytes, another
       mtime): the remembered digest no longer applies, and the get is still
       right. */
    uint8_t *other = malloc(1 << 20);
    tu_fill(other, 1 << 20, 7);
    tu_write_file(path, other, 1 << 20);
    struct timeval later[2] = {{time(NULL) + 5, 0}, {time(NULL) + 5, 0}};
    assert_int_equal(utimes(path, later), 0);
    assert_int_equal(tf_get_mem(c, "remembered.bin", &d, &n), TF_OK);
    assert_int_equal(n, 1 << 20);
    assert_memory_equal(d, other, 1 << 20);
    tf_free(d);
    print_message("digest remembered in an xattr: %s\n", remembered ? "yes" : "no (no xattrs)");
    free(other);
    tf_close(c);
}

/* ---- resume ------------------------------------------------------------------ */

typedef struct cancel_at {
    uint64_t limit;    /* cancel once done passes this; 0: never */
    uint64_t first;    /* done at the first report */
    uint64_t last;
    int calls;
} cancel_at;

static int cancel_progress(void *user, uint64_t done, uint64_t total)
{
    cancel_at *c = user;
    (void)total;
    if (c->calls++ == 0)
        c->first = done;
    assert_true(done >= c->last);
    c->last = done;
    return c->limit && done >= c->limit;
}

static void test_integrity_resumed_get(void **state)
{
    fixture *f = *state;
    tf_options *o = options(1, 1);
    cancel_at cut = {.limit = 3 << 20};
    assert_int_equal(tf_options_set_progress(o, cancel_progress, &cut), TF_OK);
    char dest[512], part[512];
    snprintf(dest, sizeof dest, "%s/big.bin", f->local);
    snprintf(part, sizeof part, "%s/.big.bin.tcpfile-part", f->local);

    tf_client *c = tu_connect(&f->server, o);
    assert_int_equal(tf_get(c, "big.bin", dest), TF_ECANCELED);
    tf_close(c);
    long long kept = tu_file_size(part);
    assert_true(kept >= 3 << 20 && kept < (long long)FILE_SIZE);
    assert_int_equal(tu_file_size(dest), -1);

    cut = (cancel_at){0};
    c = tu_connect(&f->server, o);
    assert_int_equal(tf_get(c, "big.bin", dest), TF_OK);
    tf_close(c);
    assert_int_equal(cut.first, (uint64_t)kept); /* it continued, not restarted */
    assert_int_equal(cut.last, FILE_SIZE);
    size_t n;
    uint8_t *got = tu_read_file(dest, &n);
    assert_int_equal(n, FILE_SIZE);
    assert_memory_equal(got, f->data, FILE_SIZE);
    free(got);
    assert_int_equal(tu_file_size(part), -1);
    tf_options_free(o);
}

static void test_integrity_resumed_get_of_a_changed_file(void **state)
{
    fixture *f = *state;
    tf_options *o = options(1, 1);
    char dest[512], part[512], src[512];
    snprintf(dest, sizeof dest, "%s/changing.bin", f->local);
    snprintf(part, sizeof part, "%s/.changing.bin.tcpfile-part", f->local);
    snprintf(src, sizeof src, "%s/changing.bin", f->server.root);
    tf_client *c = tu_connect(&f->server, o);

    /* A stale partial with other bytes: the whole-file checksum refuses the
       mix, drops the partial, and the next try fetches it whole. */
    uint8_t stale[4096];
    memset(stale, 0xEE, sizeof stale);
    tu_write_file(src, f->data, 100000);
    tu_write_file(part, stale, sizeof stale);
    assert_int_equal(tf_get(c, "changing.bin", dest), TF_ECHECKSUM);
    assert_int_equal(tu_file_size(part), -1);
    assert_int_equal(tu_file_size(dest), -1);
    assert_int_equal(tf_get(c, "changing.bin", dest), TF_OK);
    size_t n;
    uint8_t *got = tu_read_file(dest, &n);
    assert_int_equal(n, 100000);
    assert_memory_equal(got, f->data, 100000);
    free(got);

    /* A partial longer than the file (it shrank): the server sends it whole. */
    unlink(dest);
    tu_write_file(part, f->data, 200000);
    assert_int_equal(tf_get(c, "changing.bin", dest), TF_OK);
    got = tu_read_file(dest, &n);
    assert_int_equal(n, 100000);
    assert_memory_equal(got, f->data, 100000);
    free(got);
    tf_close(c);
    tf_options_free(o);
}

/* A fake server whose file shrank mid-get, as the real one answers it:
   the announced size, the bytes it could read, zeros for the rest, and a
   trailer with EIO. */
typedef struct shrinking_server {
    int listen_fd;
    const uint8_t *data;
    size_t size, readable;
    int ok; /* it sent the whole frame */
} shrinking_server;

static int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int recv_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = recv(fd, b, n, 0);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static void *shrinking_main(void *arg)
{
    shrinking_server *v = arg;
    int fd = accept(v->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    uint8_t buf[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX];
    tf_wire_server_hello sh = {.version_min = TF_WIRE_VERSION,
                               .version_max = TF_WIRE_VERSION,
                               .features = TF_FEATURE_CHECKSUM | TF_FEATURE_RESUME,
                               .max_name = 255};
    long n = tf__wire_encode_server_hello(buf, sizeof buf, &sh);
    tf_wire_request r;
    if (n > 0 && send_all(fd, buf, (size_t)n) == 0 &&
        recv_all(fd, buf, TF_WIRE_CLIENT_HELLO_SIZE) == 0 &&
        recv_all(fd, buf, TF_WIRE_REQUEST_SIZE) == 0 &&
        tf__wire_decode_request(buf, TF_WIRE_REQUEST_SIZE, 255, &r) == TF_WIRE_NEED_MORE &&
        recv_all(fd, buf + TF_WIRE_REQUEST_SIZE, r.name_len) == 0) {
        tf_wire_response rs = {.op = TF_OP_GET, .size = v->size};
        uint8_t *zeros = calloc(1, v->size - v->readable);
        tf_wire_trailer t = {.status = tf__wire_status(TF_EIO)};
        n = tf__wire_encode_response(buf, sizeof buf, &rs);
        if (zeros && send_all(fd, buf, (size_t)n) == 0 &&
            send_all(fd, v->data, v->readable) == 0 &&
            send_all(fd, zeros, v->size - v->readable) == 0 &&
            send_all(fd, buf, (size_t)tf__wire_encode_trailer(buf, sizeof buf, &t)) == 0)
            v->ok = 1;
        free(zeros);
    }
    while (recv(fd, buf, sizeof buf, 0) > 0) /* until the client closes */
        ;
    close(fd);
    return NULL;
}

/* A get whose trailer says EIO leaves no partial behind, so that a resumed
   get fetches the file whole: with checksums it was refused as a mismatch
   (the kept padding never matches), without them the padding was published
   as the file. */
static void test_integrity_failed_trailer_discards_partial(void **state)
{
    fixture *f = *state;
    const size_t size = (size_t)1 << 20;
    char dest[512], part[512], src[512];
    snprintf(dest, sizeof dest, "%s/shrunk.bin", f->local);
    snprintf(part, sizeof part, "%s/.shrunk.bin.tcpfile-part", f->local);
    snprintf(src, sizeof src, "%s/shrunk.bin", f->server.root);
    tu_write_file(src, f->data, size);
    for (int checksum = 0; checksum <= 1; checksum++) {
        tf_options *o = options(checksum, 1);
        shrinking_server v = {.data = f->data, .size = size, .readable = 300000};
        char port[16];
        v.listen_fd = listen_loopback(port, sizeof port);
        pthread_t tid;
        assert_int_equal(pthread_create(&tid, NULL, shrinking_main, &v), 0);
        tf_client *c = NULL;
        assert_int_equal(tf_connect(&c, "127.0.0.1", port, o), TF_OK);
        assert_int_equal(tf_get(c, "shrunk.bin", dest), TF_EIO);
        tf_close(c);
        pthread_join(tid, NULL);
        close(v.listen_fd);
        assert_true(v.ok);
        assert_int_equal(tu_file_size(dest), -1);
        assert_int_equal(tu_file_size(part), -1); /* none of it was vouched for */

        /* The resume: from byte 0, and what is published is the file. */
        c = tu_connect(&f->server, o);
        assert_int_equal(tf_get(c, "shrunk.bin", dest), TF_OK);
        tf_close(c);
        size_t n;
        uint8_t *got = tu_read_file(dest, &n);
        assert_non_null(got);
        assert_int_equal(n, size);
        assert_memory_equal(got, f->data, size);
        free(got);
        unlink(dest);
        tf_options_free(o);
    }
    unlink(src);
}

static void test_integrity_resumed_put(void **state)
{
    fixture *f = *state;
    tf_options *o = options(1, 1);
    cancel_at cut = {.limit = 3 << 20};
    assert_int_equal(tf_options_set_progress(o, cancel_progress, &cut), TF_OK);
    char local[512], tmpdir[512], final[512];
    snprintf(local, sizeof local, "%s/up.bin", f->local);
    snprintf(tmpdir, sizeof tmpdir, "%s/.tcpfile-tmp", f->server.root);
    snprintf(final, sizeof final, "%s/up.bin", f->server.root);
    tu_write_file(local, f->data, FILE_SIZE);

    tf_client *c = tu_connect(&f->server, o);
    assert_int_equal(tf_put(c, local, NULL), TF_ECANCELED);
    tf_close(c);
    assert_int_equal(tu_file_size(final), -1);

    /* The server notices the cut on its own time; until then the partial
       upload is locked by the old connection (TF_EBUSY). */
    cut = (cancel_at){0};
    int rc = TF_EBUSY;
    for (int64_t end = tu_now_ms() + 5000; rc == TF_EBUSY && tu_now_ms() < end;) {
        c = tu_connect(&f->server, o);
        cut = (cancel_at){0};
        rc = tf_put(c, local, NULL);
        tf_close(c);
        if (rc == TF_EBUSY)
            tu_sleep_ms(20);
    }
    assert_int_equal(rc, TF_OK);
    assert_true(cut.first >= 3 << 20 && cut.first < FILE_SIZE); /* continued */
    assert_int_equal(cut.last, FILE_SIZE);
    size_t n;
    uint8_t *got = tu_read_file(final, &n);
    assert_int_equal(n, FILE_SIZE);
    assert_memory_equal(got, f->data, FILE_SIZE);
    free(got);
    assert_int_equal(tu_count_prefix(tmpdir, "resume-"), 0);
    tf_options_free(o);
}

static void test_integrity_other_upload_cannot_continue(void **state)
{
    fixture *f = *state;
    tf_options *o = options(1, 1);
    cancel_at cut = {.limit = 1 << 20};
    assert_int_equal(tf_options_set_progress(o, cancel_progress, &cut), TF_OK);
    tf_client *c = tu_connect(&f->server, o);
    assert_int_equal(tf_put_mem(c, f->data, FILE_SIZE, "mine.bin"), TF_ECANCELED);
    tf_close(c);
    /* Different content under the same name has another key: it starts at 0. */
    uint8_t *other = malloc(FILE_SIZE);
    memcpy(other, f->data, FILE_SIZE);
    other[0] ^= 1;
    cut = (cancel_at){0};
    c = tu_connect(&f->server, o);
    assert_int_equal(tf_put_mem(c, other, FILE_SIZE, "mine.bin"), TF_OK);
    assert_int_equal(cut.first, 0);
    cut = (cancel_at){0};
    void *d;
    size_t n;
    assert_int_equal(tf_get_mem(c, "mine.bin", &d, &n), TF_OK);
    assert_int_equal(n, FILE_SIZE);
    assert_memory_equal(d, other, FILE_SIZE);
    tf_free(d);
    tf_close(c);
    free(other);
    tf_options_free(o);
}

/* ---- how many interrupted uploads are kept ------------------------------------ */

static void start_capped(test_server *s, int64_t max_partials)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_MAX_PARTIALS, max_partials), TF_OK);
    tu_server_start(s, o);
    tf_options_free(o);
}

/* A keyed put of FILE_SIZE bytes of data as name, cancelled once limit bytes
   are sent (0: never). *first (if not NULL) is the byte it started from. */
static int keyed_put(const test_server *s, const uint8_t *data, const char *name,
                     uint64_t limit, uint64_t *first)
{
    tf_options *o = options(1, 1);
    cancel_at cut = {.limit = limit};
    assert_int_equal(tf_options_set_progress(o, cancel_progress, &cut), TF_OK);
    tf_client *c = tu_connect(s, o);
    int rc = tf_put_mem(c, data, FILE_SIZE, name);
    tf_close(c);
    tf_options_free(o);
    if (first)
        *first = cut.first;
    return rc;
}

/* Waits until no connection holds a partial upload in dir: the server
   notices a cut connection on its own time, and only then lets go. */
static void wait_partials_idle(const char *dir)
{
    int64_t end = tu_now_ms() + 5000;
    for (int busy = 1; busy;) {
        DIR *d = opendir(dir);
        struct dirent *de;
        busy = 0;
        while (d && (de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, "resume-", 7) != 0)
                continue;
            int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
            busy |= fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0;
            if (fd >= 0)
                close(fd);
        }
        if (d)
            closedir(d);
        if (busy) {
            assert_true(tu_now_ms() < end);
            tu_sleep_ms(10);
        }
    }
}

static void assert_stored(const test_server *s, const char *name, const uint8_t *data)
{
    char path[512];
    size_t n;
    snprintf(path, sizeof path, "%s/%s", s->root, name);
    uint8_t *got = tu_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, FILE_SIZE);
    assert_memory_equal(got, data, FILE_SIZE);
    free(got);
}

/* Completes a keyed put of name and checks where it started (at 0, or
   part-way when resumed) and that the whole file is stored. */
static void keyed_put_whole(const test_server *s, const uint8_t *data, const char *name,
                            int resumed)
{
    uint64_t first = 1;
    assert_int_equal(keyed_put(s, data, name, 0, &first), TF_OK);
    if (resumed)
        assert_true(first > 0 && first < FILE_SIZE);
    else
        assert_int_equal(first, 0);
    assert_stored(s, name, data);
}

static void test_integrity_kept_partials_are_capped(void **state)
{
    fixture *f = *state;
    enum { CAP = 3, UPLOADS = 5 };
    test_server s;
    char tmpdir[512], name[32];
    uint64_t first = 0;
    start_capped(&s, CAP);
    snprintf(tmpdir, sizeof tmpdir, "%s/.tcpfile-tmp", s.root);

    /* Five keyed uploads (five invented keys) cut off one after another: the
       oldest partials make room for the new ones. */
    for (int i = 0; i < UPLOADS; i++) {
        snprintf(name, sizeof name, "cut%d.bin", i);
        assert_int_equal(keyed_put(&s, f->data, name, 1 << 20, NULL), TF_ECANCELED);
        wait_partials_idle(tmpdir);
        assert_int_equal(tu_count_prefix(tmpdir, "resume-"), i < CAP ? i + 1 : CAP);
        tu_sleep_ms(20); /* a later mtime for the next, even on a coarse clock */
    }

    /* The most recent continues where it was cut and arrives whole; so does
       the oldest one kept. */
    keyed_put_whole(&s, f->data, "cut4.bin", 1);
    keyed_put_whole(&s, f->data, "cut2.bin", 1);
    /* The two oldest were removed: they start over, and still arrive whole. */
    assert_int_equal(keyed_put(&s, f->data, "cut1.bin", 0, &first), TF_OK);
    assert_int_equal(first, 0);
    keyed_put_whole(&s, f->data, "cut0.bin", 0);
    assert_int_equal(tu_count_prefix(tmpdir, "resume-"), 1); /* cut3.bin's */
    tu_server_stop(&s, 1);
}

typedef struct meanwhile {
    const test_server *s;
    const uint8_t *data;
    int started;
    int rc;
} meanwhile;

/* Progress of an upload in flight: once it is under way (its partial locked
   on the server), another keyed upload is cut off. */
static int cut_another(void *user, uint64_t done, uint64_t total)
{
    meanwhile *m = user;
    (void)total;
    if (done >= 1 << 20 && !m->started) {
        m->started = 1;
        m->rc = keyed_put(m->s, m->data, "other.bin", 1 << 20, NULL);
    }
    return 0;
}

static void test_integrity_partial_in_progress_is_not_removed(void **state)
{
    fixture *f = *state;
    test_server s;
    char tmpdir[512];
    start_capped(&s, 1);
    snprintf(tmpdir, sizeof tmpdir, "%s/.tcpfile-tmp", s.root);

    /* The only place is taken by an upload in progress: the other upload
       cannot have it, goes ahead all the same, and is not kept. */
    meanwhile m = {.s = &s, .data = f->data};
    tf_options *o = options(1, 1);
    assert_int_equal(tf_options_set_progress(o, cut_another, &m), TF_OK);
    tf_client *c = tu_connect(&s, o);
    assert_int_equal(tf_put_mem(c, f->data, FILE_SIZE, "held.bin"), TF_OK);
    tf_close(c);
    tf_options_free(o);
    assert_true(m.started);
    assert_int_equal(m.rc, TF_ECANCELED);
    assert_stored(&s, "held.bin", f->data);
    wait_partials_idle(tmpdir);
    assert_int_equal(tu_count_prefix(tmpdir, "resume-"), 0);
    assert_int_equal(tu_count_prefix(tmpdir, "up-"), 0);

    keyed_put_whole(&s, f->data, "other.bin", 0);
    tu_server_stop(&s, 1);
}

static void test_integrity_max_partials_zero_keeps_none(void **state)
{
    fixture *f = *state;
    test_server s;
    char tmpdir[512];
    start_capped(&s, 0);
    snprintf(tmpdir, sizeof tmpdir, "%s/.tcpfile-tmp", s.root);
    assert_int_equal(keyed_put(&s, f->data, "zero.bin", 1 << 20, NULL), TF_ECANCELED);
    wait_partials_idle(tmpdir);
    assert_int_equal(tu_count_prefix(tmpdir, "resume-"), 0);
    /* A keyed put still works; it just starts over. */
    keyed_put_whole(&s, f->data, "zero.bin", 0);
    tu_server_stop(&s, 1);
}

/* ---- slow peers and leftovers -------------------------------------------------- */

static void test_integrity_trickling_client_is_cut(void **state)
{
    (void)state;
    tf_options *o;
    test_server s;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_IO_TIMEOUT_MS, 300), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_MIN_RATE, 1000), TF_OK);
    tu_server_start(&s, o);

    int fd = connect_loopback(s.port);
    assert_true(fd >= 0);
    uint8_t hello[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello ch = {1, 1, 0};
    tf__wire_encode_client_hello(hello, sizeof hello, &ch);
    assert_int_equal(send(fd, hello, sizeof hello, MSG_NOSIGNAL), (ssize_t)sizeof hello);
    char sink[256];
    assert_true(recv(fd, sink, TF_WIRE_SERVER_HELLO_SIZE, MSG_WAITALL) ==
                TF_WIRE_SERVER_HELLO_SIZE);

    /* One byte of a request every 100 ms: each wait is under the 300 ms
       I/O timeout, but 3 bytes in 300 ms is far under 1000 bytes/s. */
    int64_t start = tu_now_ms();
    uint8_t req[TF_WIRE_REQUEST_SIZE] = {TF_OP_LIST};
    int closed = 0;
    for (size_t i = 0; i < sizeof req && !closed; i++) {
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1)
            closed = 1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
            closed = 1;
    }
    int64_t took = tu_now_ms() - start;
    assert_true(closed);
    assert_true(took < 2000);
    close(fd);

    /* Everyone else is still served. */
    tf_client *c = tu_connect(&s, NULL);
    tf_listing *l;
    assert_int_equal(tf_list(c, &l), TF_OK);
    tf_listing_free(l);
    tf_close(c);
    tu_server_stop(&s, 1);
    tf_options_free(o);
}

static void test_integrity_startup_sweeps_leftovers(void **state)
{
    (void)state;
    char root[256], tmp[512], path[600];
    tu_mkdtemp(root, sizeof root);
    snprintf(tmp, sizeof tmp, "%s/.tcpfile-tmp", root);
    assert_int_equal(mkdir(tmp, 0700), 0);
    snprintf(path, sizeof path, "%s/up-0123456789abcdef", tmp);
    tu_write_file(path, "half", 4);
    snprintf(path, sizeof path, "%s/resume-old", tmp);
    tu_write_file(path, "old", 3);
    struct utimbuf two_days_ago = {time(NULL) - 2 * 86400, time(NULL) - 2 * 86400};
    assert_int_equal(utime(path, &two_days_ago), 0);
    snprintf(path, sizeof path, "%s/resume-new", tmp);
    tu_write_file(path, "new", 3);

    test_server s;
    tu_server_start_in(&s, root, NULL);
    assert_int_equal(tu_count_prefix(tmp, "up-"), 0);  /* a crash's debris */
    assert_int_equal(tu_count_prefix(tmp, "resume-old"), 0); /* expired */
    assert_int_equal(tu_count_prefix(tmp, "resume-new"), 1); /* may yet resume */
    tu_server_stop(&s, 1);
}

/* A cap lowered between runs holds from the start: the most recently
   written partials stay, the others go. */
static void test_integrity_startup_applies_max_partials(void **state)
{
    (void)state;
    char root[256], tmp[512], path[600];
    tu_mkdtemp(root, sizeof root);
    snprintf(tmp, sizeof tmp, "%s/.tcpfile-tmp", root);
    assert_int_equal(mkdir(tmp, 0700), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/resume-%d", tmp, i);
        tu_write_file(path, "part", 4);
        struct utimbuf t = {time(NULL) - 600 + i * 60, time(NULL) - 600 + i * 60};
        assert_int_equal(utime(path, &t), 0);
    }
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_MAX_PARTIALS, 2), TF_OK);
    test_server s;
    tu_server_start_in(&s, root, o);
    assert_int_equal(tu_count_prefix(tmp, "resume-"), 2);
    assert_int_equal(tu_count_prefix(tmp, "resume-4"), 1); /* the newest two */
    assert_int_equal(tu_count_prefix(tmp, "resume-3"), 1);
    tu_server_stop(&s, 1);
    tf_options_free(o);
}

/* ---- races and large directories ----------------------------------------------- */

typedef struct racer {
    const test_server *s;
    const uint8_t *content; /* RACE_SIZE bytes, all one value */
    int rounds;
    int failures;
} racer;

#define RACE_SIZE ((size_t)2 << 20)

static void *race_put(void *arg)
{
    racer *r = arg;
    tf_client *c = NULL;
    if (tf_connect(&c, "127.0.0.1", r->s->port, NULL) != TF_OK)
        return NULL;
    for (int i = 0; i < r->rounds; i++)
        r->failures += tf_put_mem(c, r->content, RACE_SIZE, "race.bin") != TF_OK;
    tf_close(c);
    return NULL;
}

/* Whole versions only: every byte of what a get returns is the same value. */
static void test_integrity_racing_puts_and_gets(void **state)
{
    fixture *f = *state;
    uint8_t *a = malloc(RACE_SIZE), *b = malloc(RACE_SIZE);
    memset(a, 'A', RACE_SIZE);
    memset(b, 'B', RACE_SIZE);
    tf_client *c = tu_connect(&f->server, NULL);
    assert_int_equal(tf_put_mem(c, a, RACE_SIZE, "race.bin"), TF_OK);
    racer ra = {.s = &f->server, .content = a, .rounds = 15};
    racer rb = {.s = &f->server, .content = b, .rounds = 15};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, race_put, &ra), 0);
    assert_int_equal(pthread_create(&tb, NULL, race_put, &rb), 0);
    int gets = 0, seen_a = 0, seen_b = 0;
    for (int64_t end = tu_now_ms() + 1500; tu_now_ms() < end; gets++) {
        void *d;
        size_t n;
        assert_int_equal(tf_get_mem(c, "race.bin", &d, &n), TF_OK);
        assert_int_equal(n, RACE_SIZE);
        const uint8_t *p = d;
        for (size_t i = 1; i < n; i++)
            if (p[i] != p[0])
                fail_msg("a get saw a mix of versions at byte %zu", i);
        seen_a += p[0] == 'A';
        seen_b += p[0] == 'B';
        tf_free(d);
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(ra.failures + rb.failures, 0);
    void *d;
    size_t n;
    assert_int_equal(tf_get_mem(c, "race.bin", &d, &n), TF_OK);
    assert_true(((uint8_t *)d)[0] == 'A' || ((uint8_t *)d)[0] == 'B');
    tf_free(d);
    print_message("%d gets during 30 racing puts: %d whole A, %d whole B, no mix\n", gets,
                  seen_a, seen_b);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/.tcpfile-tmp", f->server.root);
    assert_int_equal(tu_count_prefix(tmp, "up-"), 0);
    tf_close(c);
    free(a);
    free(b);
}

#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#ifdef TU_ASAN
#include <sanitizer/allocator_interface.h>
#endif

static long rss_kib(void)
{
#ifdef TU_ASAN
    /* AddressSanitizer holds freed blocks in quarantine (256 MB) rather
       than reusing them, which grows RSS with every listing until the
       quarantine is full; in a fresh process (one ctest entry per test)
       that is all of it. Hand them back before measuring. */
    __sanitizer_purge_allocator();
#endif
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (fp)
        fclose(fp);
    return kib;
}

/* 100,000 files list correctly, and listing them costs a bounded amount of
   memory that is given back. */
static void test_integrity_hundred_thousand_files(void **state)
{
    (void)state;
    enum { N = 100000 };
    test_server s;
    tu_server_start(&s, NULL);
    char path[512];
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "%s/f%06d", s.root, i);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fclose(fp);
    }
    tf_client *c = tu_connect(&s, NULL);
    long before = rss_kib();
    tf_listing *l;
    for (int round = 0; round < 3; round++) {
        assert_int_equal(tf_list(c, &l), TF_OK);
        assert_int_equal(tf_listing_count(l), N);
        assert_string_equal(tf_listing_at(l, 0)->name, "f000000");
        assert_string_equal(tf_listing_at(l, N - 1)->name, "f099999");
        tf_listing_free(l);
    }
    long after = rss_kib();
    print_message("listing %d files three times: RSS %ld -> %ld KiB (client and server)\n", N,
                  before, after);
    /* One listing is about 2.5 MB on the wire and a few MB in each of the
       client and the server while it is built; three must not add up. */
    assert_true(after - before < 32 * 1024);
    tf_close(c);
    tu_server_stop(&s, 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integrity_get_bit_flip_is_caught),
        cmocka_unit_test(test_integrity_without_checksum_a_flip_goes_unseen),
        cmocka_unit_test(test_integrity_put_bit_flip_is_caught),
        cmocka_unit_test(test_integrity_checksum_off_on_one_side_still_works),
        cmocka_unit_test(test_integrity_remembered_digest),
        cmocka_unit_test(test_integrity_resumed_get),
        cmocka_unit_test(test_integrity_resumed_get_of_a_changed_file),
        cmocka_unit_test(test_integrity_failed_trailer_discards_partial),
        cmocka_unit_test(test_integrity_resumed_put),
        cmocka_unit_test(test_integrity_other_upload_cannot_continue),
        cmocka_unit_test(test_integrity_kept_partials_are_capped),
        cmocka_unit_test(test_integrity_partial_in_progress_is_not_removed),
        cmocka_unit_test(test_integrity_max_partials_zero_keeps_none),
        cmocka_unit_test(test_integrity_trickling_client_is_cut),
        cmocka_unit_test(test_integrity_startup_sweeps_leftovers),
        cmocka_unit_test(test_integrity_startup_applies_max_partials),
        cmocka_unit_test(test_integrity_racing_puts_and_gets),
        cmocka_unit_test(test_integrity_hundred_thousand_files),
    };
    return TU_RUN_GROUP("integrity", tests, setup, teardown, argc > 1 ? argv[1] : NULL);
}
