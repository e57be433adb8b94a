/*
 * test_digest.c - the server's staging and whole-file digests over
 * loopback: a resumed get hashes the file ahead of its offset without
 * holding up the worker's other connections, a file's digest is computed
 * once per version whatever the offset, a read-only server writes nothing
 * under its root (no xattr, no ctime change), a digest is never served
 * for content it does not describe, and what a keyed upload leaves behind
 * (nothing when it is empty or its trailer is malformed; resumed only for
 * the same key, name and size).
 *
 * Servers run with one worker (TF_OPT_WORKERS 1), so that two connections
 * are sure to share it. Raw connections come from faults/rawpeer.h.
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "faults/rawpeer.h"
#include "server_internal.h"
#include "testutil.h"
#include "wire.h"

#define XATTR "user.tcpfile.xxh3"

static void start(test_server *s, int read_only, const char *root)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_WORKERS, 1), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_READ_ONLY, read_only), TF_OK);
    if (root)
        tu_server_start_in(s, root, o);
    else
        tu_server_start(s, o);
    tf_options_free(o);
}

static void path_of(char *out, size_t len, const char *dir, const char *name)
{
    assert_true(snprintf(out, len, "%s/%s", dir, name) < (int)len);
}

/* Dates a file's modification 10 s back: a version that has settled, whose
   digest the server may remember. */
static void settle(const char *path)
{
    struct timespec t[2] = {{0, UTIME_OMIT}, {time(NULL) - 10, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

/* A sparse file of size bytes (zeros that cost no disk), settled. */
static void make_sparse(const char *dir, const char *name, uint64_t size)
{
    char p[512];
    path_of(p, sizeof p, dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
    settle(p);
}

/* A raw connection with CHECKSUM and RESUME. */
static int raw_connect(const test_server *s)
{
    int fd = rp_connect(s->port);
    assert_true(fd >= 0);
    assert_int_equal(rp_handshake(fd, TF_FEATURE_CHECKSUM | TF_FEATURE_RESUME),
                     TF_FEATURE_CHECKSUM | TF_FEATURE_RESUME);
    return fd;
}

static void send_get(int fd, const char *name, uint64_t offset)
{
    assert_int_equal(
        rp_send_request(fd, TF_OP_GET, 0, (uint16_t)strlen(name), 0, offset, name, NULL), 0);
}

/* Reads a get's response: OK, size bytes of payload, a good trailer. */
static void expect_get_ok(int fd, uint64_t size)
{
    tf_wire_response r;
    assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.size, size);
    assert_int_equal(rp_read_payload(fd, size), 0);
}

/* ---- defect 3: resumed gets ------------------------------------------------------- */

/* A get at offset = size of a large file makes the server hash all of it
   before it can answer. Another client's 4 KiB get on the same worker
   must not wait for that: it completes while the first response has not
   even begun. (Before the fix the hash ran in one go on the worker, and
   the small get, its connection even, waited for all of it.) */
static void test_digest_resumed_get_does_not_stall_others(void **state)
{
    (void)state;
    const uint64_t big = (uint64_t)256 << 20; /* sparse: reading it costs no disk */
    test_server s;
    start(&s, 0, NULL);
    make_sparse(s.root, "big.bin", big);
    char p[512];
    uint8_t small[4096];
    tu_fill(small, sizeof small, 9);
    path_of(p, sizeof p, s.root, "small.bin");
    tu_write_file(p, small, sizeof small);

    int a = raw_connect(&s);
    int64_t t0 = tu_now_ms();
    send_get(a, "big.bin", big);
    tu_sleep_ms(50); /* the worker is hashing by now */

    int64_t t1 = tu_now_ms();
    tf_client *c = tu_connect(&s, NULL);
    void *d;
    size_t n;
    assert_int_equal(tf_get_mem(c, "small.bin", &d, &n), TF_OK);
    int64_t small_ms = tu_now_ms() - t1;
    assert_int_equal(n, sizeof small);
    assert_memory_equal(d, small, n);
    tf_free(d);
    tf_close(c);
    /* Nothing of the first response yet: its hash is still under way. */
    struct pollfd pfd = {.fd = a, .events = POLLIN};
    int first_answered = poll(&pfd, 1, 0);

    expect_get_ok(a, 0);
    int64_t big_ms = tu_now_ms() - t0;
    close(a);
    print_message("a get at the end of a 256 MiB file answered in %lld ms; a 4 KiB get on the "
                  "same worker meanwhile took %lld ms\n",
                  (long long)big_ms, (long long)small_ms);
    if (first_answered != 0)
        fail_msg("the 4 KiB get waited for the whole-file hash of another connection "
                 "(%lld ms, the hash %lld ms)",
                 (long long)small_ms, (long long)big_ms);
    assert_int_equal(tf__server_prefix_hashed(s.srv), big);
    tu_server_stop(&s, 1);
}

/* The digest of a file is computed once per version whatever the offset:
   a second get at offset = size of the unchanged file hashes nothing; a
   new version is hashed again. In memory on a read-only server, beside the
   file otherwise (where the file system keeps user xattrs). */
static void hashed_once(int read_only)
{
    const uint64_t size = (uint64_t)64 << 20;
    test_server s;
    start(&s, read_only, NULL);
    make_sparse(s.root, "f.bin", size);
    char p[512];
    path_of(p, sizeof p, s.root, "f.bin");
    if (!read_only && setxattr(p, "user.probe", "1", 1, 0) != 0) {
        print_message("no user xattrs on %s: skipped\n", s.root);
        tu_server_stop(&s, 1);
        skip();
    }
    int fd = raw_connect(&s);
    send_get(fd, "f.bin", size);
    expect_get_ok(fd, 0);
    assert_int_equal(tf__server_prefix_hashed(s.srv), size);
    send_get(fd, "f.bin", size);
    expect_get_ok(fd, 0);
    send_get(fd, "f.bin", size / 2);
    expect_get_ok(fd, size / 2);
    assert_int_equal(tf__server_prefix_hashed(s.srv), size); /* nothing more */

    /* Another version (another size) is hashed again. */
    int w = open(p, O_WRONLY | O_CLOEXEC);
    assert_true(w >= 0);
    assert_int_equal(ftruncate(w, (off_t)(size + 4096)), 0);
    close(w);
    settle(p);
    send_get(fd, "f.bin", size + 4096);
    expect_get_ok(fd, 0);
    assert_int_equal(tf__server_prefix_hashed(s.srv), 2 * size + 4096);
    close(fd);
    tu_server_stop(&s, 1);
}

static void test_digest_resumed_get_hashed_once(void **state)
{
    (void)state;
    hashed_once(0);
}

static void test_digest_resumed_get_hashed_once_read_only(void **state)
{
    (void)state;
    hashed_once(1);
}

/* ---- defect 5: read-only writes nothing ------------------------------------------- */

static void test_digest_read_only_writes_nothing(void **state)
{
    (void)state;
    const size_t size = (size_t)1 << 20; /* over the size sent in one sendmsg */
    char root[256], p[512], tmpdir[512], debris[600];
    tu_mkdtemp(root, sizeof root);
    uint8_t *data = malloc(size);
    tu_fill(data, size, 3);
    path_of(p, sizeof p, root, "file.bin");
    tu_write_file(p, data, size);
    settle(p);
    /* An old upload's debris: a read-only server does not sweep it either. */
    path_of(tmpdir, sizeof tmpdir, root, ".tcpfile-tmp");
    assert_int_equal(mkdir(tmpdir, 0700), 0);
    path_of(debris, sizeof debris, tmpdir, "up-0123456789abcdef");
    tu_write_file(debris, "x", 1);
    tu_sleep_ms(20); /* a change now would show in the ctime */
    struct stat before, after;
    assert_int_equal(stat(p, &before), 0);

    test_server s;
    start(&s, 1, root);
    tf_client *c = tu_connect(&s, NULL);
    void *d;
    size_t n;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tf_get_mem(c, "file.bin", &d, &n), TF_OK);
        assert_int_equal(n, size);
        assert_memory_equal(d, data, size);
        tf_free(d);
    }
    tf_close(c);
    int fd = raw_connect(&s);
    send_get(fd, "file.bin", size);
    expect_get_ok(fd, 0);
    close(fd);
    /* Remembered in memory: the whole-file get above left the digest. */
    assert_int_equal(tf__server_prefix_hashed(s.srv), 0);
    tu_server_stop(&s, 0);

    assert_int_equal(stat(p, &after), 0);
    errno = 0;
    assert_true(getxattr(p, XATTR, NULL, 0) < 0);
    assert_true(errno == ENODATA || errno == ENOTSUP);
    assert_int_equal(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
    assert_int_equal(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
    assert_int_equal(tu_file_size(debris), 1);
    tu_rm_rf(root);
    free(data);
}

/* The in-memory digests are shared by the workers: gets from several
   threads, spread over two workers, of files whose digests are being
   remembered and looked up at the same time (run under TSan too). */
typedef struct getter {
    const test_server *s;
    const uint8_t *data;
    size_t size;
    int ok;
} getter;

static void *get_loop(void *arg)
{
    getter *g = arg;
    tf_client *c = NULL;
    if (tf_connect(&c, "127.0.0.1", g->s->port, NULL) != TF_OK)
        return NULL;
    for (int i = 0; i < 20; i++) {
        void *d;
        size_t n;
        char name[16];
        snprintf(name, sizeof name, "f%d.bin", i % 4);
        if (tf_get_mem(c, name, &d, &n) != TF_OK)
            break;
        if (n == g->size && memcmp(d, g->data, n) == 0)
            g->ok++;
        tf_free(d);
    }
    tf_close(c);
    return NULL;
}

static void test_digest_read_only_memory_shared(void **state)
{
    (void)state;
    const size_t size = (size_t)256 << 10;
    uint8_t *data = malloc(size);
    tu_fill(data, size, 5);
    test_server s;
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_WORKERS, 2), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_READ_ONLY, 1), TF_OK);
    tu_server_start(&s, o);
    tf_options_free(o);
    for (int i = 0; i < 4; i++) {
        char name[16], p[512];
        snprintf(name, sizeof name, "f%d.bin", i);
        path_of(p, sizeof p, s.root, name);
        tu_write_file(p, data, size);
        settle(p);
    }
    pthread_t t[4];
    getter g[4];
    for (int i = 0; i < 4; i++) {
        g[i] = (getter){.s = &s, .data = data, .size = size};
        assert_int_equal(pthread_create(&t[i], NULL, get_loop, &g[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(g[i].ok, 20);
    }
    tu_server_stop(&s, 1);
    free(data);
}

/* ---- suspected: a digest remembered right after an upload ------------------------ */

/* An upload, then an in-place edit at the same size within the same clock
   tick (simulated: the edit's mtime is set back to the upload's). A digest
   remembered at upload time would still match the file's identity, and
   every later get would fail its checksum. */
static void test_digest_not_remembered_unsettled(void **state)
{
    (void)state;
    const size_t size = (size_t)1 << 20;
    test_server s;
    start(&s, 0, NULL);
    uint8_t *one = malloc(size), *two = malloc(size);
    tu_fill(one, size, 1);
    tu_fill(two, size, 2);
    tf_client *c = tu_connect(&s, NULL);
    assert_int_equal(tf_put_mem(c, one, size, "edited.bin"), TF_OK);
    char p[512];
    path_of(p, sizeof p, s.root, "edited.bin");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, two, size, 0), (ssize_t)size);
    struct timespec t[2] = {{0, UTIME_OMIT}, st.st_mtim};
    assert_int_equal(futimens(fd, t), 0);
    close(fd);
    void *d;
    size_t n;
    int rc = tf_get_mem(c, "edited.bin", &d, &n);
    if (rc != TF_OK)
        fail_msg("get after an in-place edit: %s (%s)", tf_errname(rc), tf_errmsg(c));
    assert_int_equal(n, size);
    assert_memory_equal(d, two, size);
    tf_free(d);
    tf_close(c);
    free(one);
    free(two);
    tu_server_stop(&s, 1);
}

/* ---- keyed uploads: what is kept -------------------------------------------------- */

static void keyed_put_head(int fd, const char *name, uint64_t size, uint8_t k,
                           uint64_t *have)
{
    uint8_t key[TF_UPLOAD_KEY_SIZE];
    memset(key, k, sizeof key);
    assert_int_equal(rp_send_request(fd, TF_OP_PUT, TF_REQ_UPLOAD_KEY, (uint16_t)strlen(name),
                                     size, 0, name, key),
                     0);
    tf_wire_response r;
    assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
    assert_int_equal(r.status, 0);
    *have = r.size;
}

/* Waits until the server has let go of every partial (a cut connection is
   noticed on the server's own time), then counts them. */
static int partials(const test_server *s)
{
    char tmpdir[512];
    path_of(tmpdir, sizeof tmpdir, s->root, ".tcpfile-tmp");
    tu_sleep_ms(50);
    for (int i = 0; i < 100; i++) {
        int busy = 0;
        DIR *d = opendir(tmpdir);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, "resume-", 7) != 0)
                continue;
            int f = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
            busy |= f >= 0 && flock(f, LOCK_EX | LOCK_NB) != 0;
            if (f >= 0)
                close(f);
        }
        if (d)
            closedir(d);
        if (!busy)
            break;
        tu_sleep_ms(10);
    }
    return tu_count_prefix(tmpdir, "resume-");
}

/* A keyed put whose trailer is malformed (digest_len over 64): the
   connection is closed, and its partial is not kept. */
static void test_digest_malformed_trailer_keeps_nothing(void **state)
{
    (void)state;
    test_server s;
    start(&s, 0, NULL);
    int fd = raw_connect(&s);
    uint64_t have = 1;
    keyed_put_head(fd, "k.bin", 100, 0x11, &have);
    assert_int_equal(have, 0);
    uint8_t body[100] = {0}, digest[TF_WIRE_DIGEST_MAX + 1] = {0};
    assert_int_equal(rp_send(fd, body, sizeof body), 0);
    assert_int_equal(rp_send_trailer(fd, 0, digest, sizeof digest), 0);
    assert_int_equal(rp_wait_closed(fd, 5000), 1);
    close(fd);
    assert_int_equal(partials(&s), 0);
    tu_server_stop(&s, 1);
}

/* A keyed put cut off after its go-ahead with no byte sent leaves no
   partial, and takes no room from one that holds bytes. */
static void test_digest_empty_partial_not_kept(void **state)
{
    (void)state;
    test_server s;
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_MAX_PARTIALS, 1), TF_OK);
    tu_server_start(&s, o);
    tf_options_free(o);
    uint64_t have = 1;
    /* A real partial: 10 bytes of 100. */
    int fd = raw_connect(&s);
    keyed_put_head(fd, "real.bin", 100, 0x22, &have);
    assert_int_equal(rp_send(fd, "0123456789", 10), 0);
    rp_abort(fd);
    assert_int_equal(partials(&s), 1);
    /* Another key, cut off before its first byte. */
    fd = raw_connect(&s);
    keyed_put_head(fd, "empty.bin", 100, 0x33, &have);
    assert_int_equal(have, 0);
    rp_abort(fd);
    assert_int_equal(partials(&s), 1);
    /* The real one is still there to resume. */
    fd = raw_connect(&s);
    keyed_put_head(fd, "real.bin", 100, 0x22, &have);
    assert_int_equal(have, 10);
    rp_abort(fd);
    tu_server_stop(&s, 1);
}

/* Bytes kept for a key and name are resumed only for the same size: the
   same key and name with another size start at byte 0. */
static void test_digest_partial_resumed_only_for_same_size(void **state)
{
    (void)state;
    test_server s;
    start(&s, 0, NULL);
    uint64_t have = 1;
    int fd = raw_connect(&s);
    keyed_put_head(fd, "sized.bin", 100, 0x44, &have);
    assert_int_equal(rp_send(fd, "0123456789", 10), 0);
    rp_abort(fd);
    assert_int_equal(partials(&s), 1);
    fd = raw_connect(&s);
    keyed_put_head(fd, "sized.bin", 200, 0x44, &have);
    assert_int_equal(have, 0);
    rp_abort(fd);
    partials(&s);
    fd = raw_connect(&s);
    keyed_put_head(fd, "sized.bin", 100, 0x44, &have);
    assert_int_equal(have, 10);
    rp_abort(fd);
    tu_server_stop(&s, 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_resumed_get_does_not_stall_others),
        cmocka_unit_test(test_digest_resumed_get_hashed_once),
        cmocka_unit_test(test_digest_resumed_get_hashed_once_read_only),
        cmocka_unit_test(test_digest_read_only_writes_nothing),
        cmocka_unit_test(test_digest_read_only_memory_shared),
        cmocka_unit_test(test_digest_not_remembered_unsettled),
        cmocka_unit_test(test_digest_malformed_trailer_keeps_nothing),
        cmocka_unit_test(test_digest_empty_partial_not_kept),
        cmocka_unit_test(test_digest_partial_resumed_only_for_same_size),
    };
    return TU_RUN_GROUP("digest", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
