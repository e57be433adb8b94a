/*
 * test_s3.c - the S3 client (s3.c) and the S3 storage backend
 * (storage_s3.c) against a real store: the single-node Ceph of
 * scripts/ceph.sh. The store is found through TF_S3_ENDPOINT, TF_S3_BUCKET,
 * TF_S3_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or else the
 * env file that `scripts/ceph.sh up` writes ($TF_CEPH_DIR/s3.env, default
 * /tmp/tcpfile-ceph/s3.env). Without either every test FAILS, saying to run
 * scripts/ceph.sh up, unless TF_S3_TESTS=0 says to skip them: a CI without
 * Ceph cannot pass by running nothing.
 *
 * Each test works under a prefix of its own ("t-PID-N/") and removes
 * everything there (objects and multipart uploads) afterwards.
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
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "s3.h"
#include "digest.h"
#include "storage.h"

typedef struct fixture {
    tf__s3_config cfg;
    tf__s3 *s3;
    char prefix[64];
} fixture;

/* Sets the variables of the env file that are not set already. */
static void load_env_file(void)
{
    char path[512];
    const char *dir = getenv("TF_CEPH_DIR");
    snprintf(path, sizeof path, "%s/s3.env", dir && *dir ? dir : "/tmp/tcpfile-ceph");
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (strncmp(line, "export", 6) == 0 || !eq)
            continue;
        *eq = '\0';
        const char *have = getenv(line);
        if (!have || !*have) /* an empty variable counts as unset */
            setenv(line, eq + 1, 1);
    }
    fclose(f);
}

static int setup(void **state)
{
    const char *want = getenv("TF_S3_TESTS");
    if (want && strcmp(want, "0") == 0) {
        *state = NULL; /* each test skips itself (cmocka fails a skip here) */
        return 0;
    }
    load_env_file();
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->cfg.endpoint = getenv("TF_S3_ENDPOINT");
    f->cfg.bucket = getenv("TF_S3_BUCKET");
    f->cfg.region = getenv("TF_S3_REGION");
    if (!f->cfg.endpoint || !f->cfg.bucket) {
        print_error("no S3 store: run scripts/ceph.sh up (or set TF_S3_ENDPOINT and "
                    "TF_S3_BUCKET; TF_S3_TESTS=0 skips these tests)\n");
        free(f);
        fail();
    }
    static int counter;
    snprintf(f->prefix, sizeof f->prefix, "t-%ld-%d-%d/", (long)getpid(), counter++,
             (int)(time(NULL) % 100000));
    tf__err e = {{0}};
    int rc = tf__s3_open(&f->s3, &f->cfg, &e);
    if (rc != TF_OK)
        print_error("tf__s3_open: %s\n", e.msg);
    assert_int_equal(rc, TF_OK);
    /* The store answers at all: a clear failure, not a hang, without it. */
    tf__s3_info h;
    rc = tf__s3_head(f->s3, "no-such-object-probe", &h, &e);
    if (rc != TF_ENOENT)
        print_error("the S3 store at %s does not answer as expected (%s): run scripts/ceph.sh "
                    "up\n",
                    f->cfg.endpoint, e.msg);
    assert_int_equal(rc, TF_ENOENT);
    *state = f;
    return 0;
}

/* The test's fixture, or a skip when TF_S3_TESTS=0. */
static fixture *fixture_of(void **state)
{
    if (!*state) {
        print_message("TF_S3_TESTS=0: skipped\n");
        skip();
    }
    return *state;
}

static int collect_upload(void *user, const char *key, const char *id, int64_t initiated)
{
    (void)initiated;
    tf__s3 *s3 = user;
    tf__err e = {{0}};
    tf__s3_mpu_abort(s3, key, id, &e);
    return 0;
}

typedef struct keys {
    char (*k)[TF_S3_KEY_MAX + 1];
    size_t n, cap;
} keys;

static int collect_key(void *user, const char *key, int is_prefix, uint64_t size,
                       int64_t mtime)
{
    (void)size;
    (void)mtime;
    keys *ks = user;
    if (is_prefix)
        return 0;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 256;
        ks->k = realloc(ks->k, ks->cap * sizeof *ks->k);
        assert_non_null(ks->k);
    }
    snprintf(ks->k[ks->n++], TF_S3_KEY_MAX + 1, "%s", key);
    return 0;
}

/* Removes every object and upload under prefix. */
static void clean_prefix(tf__s3 *s3, const char *prefix)
{
    tf__err e = {{0}};
    tf__s3_mpu_list(s3, prefix, collect_upload, s3, &e);
    keys ks = {0};
    tf__s3_page page = {.prefix = prefix};
    do {
        tf__err_clear(&e);
        if (tf__s3_list(s3, &page, collect_key, &ks, &e) != TF_OK)
            break;
    } while (page.token[0]);
    for (size_t i = 0; i < ks.n; i++)
        tf__s3_delete(s3, ks.k[i], &e);
    free(ks.k);
}

static int teardown(void **state)
{
    fixture *f = *state; /* NULL: skipped */
    if (!f)
        return 0;
    clean_prefix(f->s3, f->prefix);
    tf__s3_close(f->s3);
    free(f);
    return 0;
}

static const char *key_of(fixture *f, const char *name)
{
    static char buf[8][TF_S3_KEY_MAX];
    static int at;
    char *k = buf[at++ % 8];
    snprintf(k, TF_S3_KEY_MAX, "%s%s", f->prefix, name);
    return k;
}

static void fill_pattern(uint8_t *p, size_t n, uint64_t from)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((from + i) * 2654435761u >> 13);
}

/* n bytes of fill_pattern's, the caller's to free. */
static uint8_t *patterned(size_t n, uint64_t from)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    fill_pattern(p, n, from);
    return p;
}

static void test_s3_roundtrip_meta(void **state)
{
    fixture *f = fixture_of(state);
    tf__err e = {{0}};
    const char *key = key_of(f, "hello world.txt");
    static const char text[] = "hello, object store";
    tf__s3_body body = {.buf = text, .len = sizeof text - 1};
    tf__s3_meta meta[] = {{"xxh3", "00112233445566778899aabbccddeeff"}, {"mtime", "1700000000"}};
    assert_int_equal(tf__s3_put(f->s3, key, &body, meta, 2, &e), TF_OK);

    tf__s3_info h;
    assert_int_equal(tf__s3_head(f->s3, key, &h, &e), TF_OK);
    assert_int_equal(h.size, sizeof text - 1);
    assert_true(h.mtime > 1600000000);
    assert_non_null(tf__s3_head_meta(&h, "xxh3"));
    assert_string_equal(tf__s3_head_meta(&h, "xxh3"), "00112233445566778899aabbccddeeff");
    assert_string_equal(tf__s3_head_meta(&h, "mtime"), "1700000000");
    assert_null(tf__s3_head_meta(&h, "other"));

    char buf[64];
    size_t got;
    assert_int_equal(tf__s3_get(f->s3, key, 0, sizeof buf, buf, &got, &e), TF_OK);
    assert_int_equal(got, sizeof text - 1);
    assert_memory_equal(buf, text, got);
    /* Ranges: inside, cut at the end, past the end. */
    assert_int_equal(tf__s3_get(f->s3, key, 7, 6, buf, &got, &e), TF_OK);
    assert_int_equal(got, 6);
    assert_memory_equal(buf, "object", 6);
    assert_int_equal(tf__s3_get(f->s3, key, 14, 50, buf, &got, &e), TF_OK);
    assert_int_equal(got, 5);
    assert_memory_equal(buf, "store", 5);
    assert_int_equal(tf__s3_get(f->s3, key, 100, 10, buf, &got, &e), TF_OK);
    assert_int_equal(got, 0);

    /* Into a descriptor, from a descriptor. */
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    uint64_t n64;
    assert_int_equal(tf__s3_get_fd(f->s3, key, 0, UINT64_MAX, fileno(tmp), &n64, &e), TF_OK);
    assert_int_equal(n64, sizeof text - 1);
    const char *key2 = key_of(f, "from-fd");
    tf__s3_body fb = {.fd = fileno(tmp), .off = 7, .len = 6};
    assert_int_equal(tf__s3_put(f->s3, key2, &fb, NULL, 0, &e), TF_OK);
    fclose(tmp);
    assert_int_equal(tf__s3_get(f->s3, key2, 0, sizeof buf, buf, &got, &e), TF_OK);
    assert_int_equal(got, 6);
    assert_memory_equal(buf, "object", 6);
}

static void test_s3_missing(void **state)
{
    fixture *f = fixture_of(state);
    tf__err e = {{0}};
    tf__s3_info h;
    char buf[8];
    size_t got;
    assert_int_equal(tf__s3_head(f->s3, key_of(f, "missing"), &h, &e), TF_ENOENT);
    tf__err_clear(&e);
    assert_int_equal(tf__s3_get(f->s3, key_of(f, "missing"), 0, 8, buf, &got, &e), TF_ENOENT);
    assert_non_null(strstr(e.msg, "missing"));
    tf__err_clear(&e);
    assert_int_equal(tf__s3_delete(f->s3, key_of(f, "missing"), &e), TF_OK);
    assert_int_equal(tf__s3_copy(f->s3, key_of(f, "missing"), key_of(f, "to"), &e), TF_ENOENT);
}

static void test_s3_wrong_credentials(void **state)
{
    fixture *f = fixture_of(state);
    tf__s3_config cfg = f->cfg;
    cfg.access_key = getenv("AWS_ACCESS_KEY_ID");
    cfg.secret_key = "not-the-secret";
    tf__s3 *bad;
    tf__err e = {{0}};
    assert_int_equal(tf__s3_open(&bad, &cfg, &e), TF_OK);
    tf__s3_body body = {.buf = "x", .len = 1};
    assert_int_equal(tf__s3_put(bad, key_of(f, "x"), &body, NULL, 0, &e), TF_EACCES);
    assert_non_null(strstr(e.msg, "SignatureDoesNotMatch"));
    assert_null(strstr(e.msg, "not-the-secret"));
    tf__err_clear(&e);
    tf__s3_info h;
    assert_int_equal(tf__s3_head(bad, key_of(f, "x"), &h, &e), TF_EACCES);
    tf__s3_close(bad);

    cfg.access_key = "NOSUCHKEY0000";
    assert_int_equal(tf__s3_open(&bad, &cfg, &e), TF_OK);
    tf__err_clear(&e);
    assert_int_equal(tf__s3_put(bad, key_of(f, "x"), &body, NULL, 0, &e), TF_EACCES);
    assert_non_null(strstr(e.msg, "InvalidAccessKeyId"));
    tf__s3_close(bad);
}

static void test_s3_missing_bucket(void **state)
{
    fixture *f = fixture_of(state);
    tf__s3_config cfg = f->cfg;
    cfg.bucket = "tcpfile-no-such-bucket";
    tf__s3 *s3;
    tf__err e = {{0}};
    assert_int_equal(tf__s3_open(&s3, &cfg, &e), TF_OK);
    tf__s3_body body = {.buf = "x", .len = 1};
    assert_int_equal(tf__s3_put(s3, "x", &body, NULL, 0, &e), TF_ENOENT);
    assert_non_null(strstr(e.msg, "no such bucket"));
    tf__err_clear(&e);
    tf__s3_page page = {.prefix = ""};
    keys ks = {0};
    assert_int_equal(tf__s3_list(s3, &page, collect_key, &ks, &e), TF_ENOENT);
    assert_non_null(strstr(e.msg, "no such bucket"));
    tf__s3_close(s3);
}

static void test_s3_unreachable(void **state)
{
    fixture *f = fixture_of(state);
    tf__s3_config cfg = f->cfg;
    cfg.endpoint = "http://127.0.0.1:1"; /* nothing listens on port 1 */
    tf__s3 *s3;
    tf__err e = {{0}};
    assert_int_equal(tf__s3_open(&s3, &cfg, &e), TF_OK);
    tf__s3_info h;
    assert_int_equal(tf__s3_head(s3, "x", &h, &e), TF_EIO);
    assert_non_null(strstr(e.msg, "cannot reach the S3 store"));
    tf__s3_close(s3);
}

/* Puts keys [from, to) of a list test from a thread of its own. */
typedef struct put_job {
    fixture *f;
    int from, to;
    int rc;
    int del; /* delete them instead */
} put_job;

static void list_key_name(char *out, size_t cap, const char *prefix, int i)
{
    /* 50 keys in 5 "directories", the rest at the top. */
    if (i < 50)
        snprintf(out, cap, "%sdir%d/f%04d", prefix, i % 5, i);
    else
        snprintf(out, cap, "%sf%04d", prefix, i);
}

static void *put_range(void *arg)
{
    put_job *j = arg;
    tf__s3 *s3;
    tf__err e = {{0}};
    j->rc = tf__s3_open(&s3, &j->f->cfg, &e);
    for (int i = j->from; i < j->to && j->rc == TF_OK; i++) {
        char key[256];
        list_key_name(key, sizeof key, j->f->prefix, i);
        tf__s3_body body = {.buf = "k", .len = 1};
        j->rc = j->del ? tf__s3_delete(s3, key, &e) : tf__s3_put(s3, key, &body, NULL, 0, &e);
    }
    tf__s3_close(s3);
    return NULL;
}

typedef struct counts {
    size_t objects, prefixes;
    char prefix_seen[8][64];
} counts;

static int count_entry(void *user, const char *key, int is_prefix, uint64_t size,
                       int64_t mtime)
{
    (void)mtime;
    counts *c = user;
    if (is_prefix) {
        if (c->prefixes < 8)
            snprintf(c->prefix_seen[c->prefixes], 64, "%s", key);
        c->prefixes++;
    } else {
        assert_int_equal(size, 1);
        c->objects++;
    }
    return 0;
}

/* Enough for several pages at the page sizes asked below (the store's
   default of 1000 a page would need thousands of keys: slow to make). */
#define LIST_KEYS 600

static void test_s3_list_paged(void **state)
{
    fixture *f = fixture_of(state);
    enum { THREADS = 16 };
    pthread_t t[THREADS];
    put_job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (put_job){f, i * LIST_KEYS / THREADS, (i + 1) * LIST_KEYS / THREADS, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, put_range, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].rc, TF_OK);
    }
    tf__err e = {{0}};
    counts c = {0};
    tf__s3_page page = {.prefix = f->prefix, .delimiter = "/", .max_keys = 250};
    int pages = 0;
    do {
        assert_int_equal(tf__s3_list(f->s3, &page, count_entry, &c, &e), TF_OK);
        pages++;
    } while (page.token[0]);
    assert_true(pages >= 3); /* 250 a page at most */
    assert_int_equal(c.objects, LIST_KEYS - 50);
    assert_int_equal(c.prefixes, 5);
    char want[128];
    snprintf(want, sizeof want, "%sdir0/", f->prefix);
    assert_string_equal(c.prefix_seen[0], want);
    /* Without the delimiter everything, in smaller pages. */
    memset(&c, 0, sizeof c);
    tf__s3_page all = {.prefix = f->prefix, .max_keys = 170};
    pages = 0;
    do {
        assert_int_equal(tf__s3_list(f->s3, &all, count_entry, &c, &e), TF_OK);
        pages++;
    } while (all.token[0]);
    assert_int_equal(pages, 4);
    assert_int_equal(c.objects, LIST_KEYS);
    assert_int_equal(c.prefixes, 0);
    /* Removed here in threads, as they were put: one by one in the
       teardown would take long. */
    for (int i = 0; i < THREADS; i++) {
        jobs[i].del = 1;
        assert_int_equal(pthread_create(&t[i], NULL, put_range, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].rc, TF_OK);
    }
}

#define PART (5u << 20)

static void test_s3_multipart_complete(void **state)
{
    fixture *f = fixture_of(state);
    tf__err e = {{0}};
    const char *key = key_of(f, "big");
    uint8_t *data = malloc(PART + 1000);
    assert_non_null(data);
    fill_pattern(data, PART + 1000, 0);
    char id[TF_S3_ID_MAX];
    tf__s3_meta meta[] = {{"xxh3", "feed"}};
    assert_int_equal(tf__s3_mpu_create(f->s3, key, meta, 1, id, &e), TF_OK);
    tf__s3_part parts[2] = {{.number = 1, .size = PART}, {.number = 2, .size = 1000}};
    tf__s3_body b1 = {.buf = data, .len = PART}, b2 = {.buf = data + PART, .len = 1000};
    assert_int_equal(tf__s3_mpu_part(f->s3, key, id, 1, &b1, parts[0].etag, &e), TF_OK);
    assert_int_equal(tf__s3_mpu_part(f->s3, key, id, 2, &b2, parts[1].etag, &e), TF_OK);
    /* Nothing visible before completion. */
    tf__s3_info h;
    assert_int_equal(tf__s3_head(f->s3, key, &h, &e), TF_ENOENT);
    tf__err_clear(&e);
    tf__s3_part listed[4];
    size_t n;
    assert_int_equal(tf__s3_mpu_parts(f->s3, key, id, listed, 4, &n, &e), TF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(listed[0].size, PART);
    assert_string_equal(listed[1].etag, parts[1].etag);
    assert_int_equal(tf__s3_mpu_complete(f->s3, key, id, parts, 2, NULL, &e), TF_OK);
    assert_int_equal(tf__s3_head(f->s3, key, &h, &e), TF_OK);
    assert_int_equal(h.size, PART + 1000);
    assert_string_equal(tf__s3_head_meta(&h, "xxh3"), "feed");
    /* A range across the parts' boundary. */
    uint8_t buf[100];
    size_t got;
    assert_int_equal(tf__s3_get(f->s3, key, PART - 50, 100, buf, &got, &e), TF_OK);
    assert_int_equal(got, 100);
    assert_memory_equal(buf, data + PART - 50, 100);
    /* Done: the upload is gone. */
    assert_int_equal(tf__s3_mpu_abort(f->s3, key, id, &e), TF_ENOENT);
    free(data);
}

typedef struct found {
    char key[TF_S3_KEY_MAX + 1];
    char id[TF_S3_ID_MAX];
    int n;
} found;

static int find_upload(void *user, const char *key, const char *id, int64_t initiated)
{
    found *fd = user;
    assert_true(initiated > 1600000000);
    snprintf(fd->key, sizeof fd->key, "%s", key);
    snprintf(fd->id, sizeof fd->id, "%s", id);
    fd->n++;
    return 0;
}

/* An upload cut off on one "server" (handle), found by listing the uploads
   and finished from another. */
static void test_s3_multipart_resume_elsewhere(void **state)
{
    fixture *f = fixture_of(state);
    tf__err e = {{0}};
    const char *key = key_of(f, "partial/stem1");
    uint8_t *data = malloc(2 * PART);
    assert_non_null(data);
    fill_pattern(data, 2 * PART, 7);
    {
        tf__s3 *first;
        assert_int_equal(tf__s3_open(&first, &f->cfg, &e), TF_OK);
        char id[TF_S3_ID_MAX], etag[TF_S3_ID_MAX];
        assert_int_equal(tf__s3_mpu_create(first, key, NULL, 0, id, &e), TF_OK);
        tf__s3_body b = {.buf = data, .len = PART};
        assert_int_equal(tf__s3_mpu_part(first, key, id, 1, &b, etag, &e), TF_OK);
        tf__s3_close(first); /* the first server is gone */
    }
    tf__s3 *second;
    assert_int_equal(tf__s3_open(&second, &f->cfg, &e), TF_OK);
    found fd = {0};
    assert_int_equal(tf__s3_mpu_list(second, key_of(f, "partial/"), find_upload, &fd, &e),
                     TF_OK);
    assert_int_equal(fd.n, 1);
    assert_string_equal(fd.key, key);
    tf__s3_part parts[3];
    size_t n;
    assert_int_equal(tf__s3_mpu_parts(second, key, fd.id, parts, 3, &n, &e), TF_OK);
    assert_int_equal(n, 1);
    assert_int_equal(parts[0].size, PART);
    tf__s3_body b = {.buf = data + PART, .len = PART};
    parts[1].number = 2;
    assert_int_equal(tf__s3_mpu_part(second, key, fd.id, 2, &b, parts[1].etag, &e), TF_OK);
    assert_int_equal(tf__s3_mpu_complete(second, key, fd.id, parts, 2, NULL, &e), TF_OK);
    uint8_t buf[64];
    size_t got;
    assert_int_equal(tf__s3_get(second, key, 2 * PART - 64, 64, buf, &got, &e), TF_OK);
    assert_int_equal(got, 64);
    assert_memory_equal(buf, data + 2 * PART - 64, 64);
    /* An abandoned one, aborted: no longer listed. */
    char id2[TF_S3_ID_MAX];
    assert_int_equal(tf__s3_mpu_create(second, key_of(f, "partial/stem2"), NULL, 0, id2, &e),
                     TF_OK);
    assert_int_equal(tf__s3_mpu_abort(second, key_of(f, "partial/stem2"), id2, &e), TF_OK);
    memset(&fd, 0, sizeof fd);
    assert_int_equal(tf__s3_mpu_list(second, key_of(f, "partial/"), find_upload, &fd, &e),
                     TF_OK);
    assert_int_equal(fd.n, 0);
    tf__s3_close(second);
    free(data);
}

static void test_s3_copy_delete(void **state)
{
    fixture *f = fixture_of(state);
    tf__err e = {{0}};
    tf__s3_body body = {.buf = "payload", .len = 7};
    tf__s3_meta meta[] = {{"xxh3", "abcd"}};
    assert_int_equal(tf__s3_put(f->s3, key_of(f, "a b+c"), &body, meta, 1, &e), TF_OK);
    assert_int_equal(tf__s3_copy(f->s3, key_of(f, "a b+c"), key_of(f, "d/e"), &e), TF_OK);
    assert_int_equal(tf__s3_delete(f->s3, key_of(f, "a b+c"), &e), TF_OK);
    tf__s3_info h;
    assert_int_equal(tf__s3_head(f->s3, key_of(f, "a b+c"), &h, &e), TF_ENOENT);
    tf__err_clear(&e);
    assert_int_equal(tf__s3_head(f->s3, key_of(f, "d/e"), &h, &e), TF_OK);
    assert_int_equal(h.size, 7);
    assert_string_equal(tf__s3_head_meta(&h, "xxh3"), "abcd");
}

/* ---- the storage backend (storage_s3.c) ---- */

/* The tests' part: 8 MiB, half the default (TF_S3_PART_SIZE), to move
   less; the code is the same for any size. (At S3's least, 5 MiB, a part
   could land before the next is filled under ASan on a loaded machine,
   and storage_parts_overlap saw one part in flight, not two.) */
#define SPART ((size_t)8 << 20)

/* single_put_max: its config's (0: the default, S3's 5 GiB). */
static tf__storage *open_store_max(fixture *f, uint64_t single_put_max)
{
    tf__storage_s3_config c = {.endpoint = f->cfg.endpoint,
                               .bucket = f->cfg.bucket,
                               .prefix = f->prefix,
                               .region = f->cfg.region,
                               .resume_ttl_s = 3600,
                               .part_size = SPART,
                               .single_put_max = single_put_max};
    tf__storage *st;
    tf__err e = {{0}};
    int rc = tf__storage_s3_open(&st, &c, &e);
    if (rc != TF_OK)
        print_error("tf__storage_s3_open: %s\n", e.msg);
    assert_int_equal(rc, TF_OK);
    assert_true(st->read_handles);
    assert_string_equal(st->ops->name, "s3");
    return st;
}

static tf__storage *open_store(fixture *f)
{
    return open_store_max(f, 0);
}

static void digest_of(const void *p, size_t n, uint8_t out[TF_DIGEST_SIZE])
{
    tf__digest d = {0};
    assert_int_equal(tf__digest_begin(&d, 1), TF_OK);
    tf__digest_update(&d, p, n);
    tf__digest_final(&d, out);
    tf__digest_end(&d);
}

/* Puts n bytes of pattern as name through stage / write / commit. */
static void store_file(tf__storage *st, const char *name, const uint8_t *data, size_t n)
{
    tf__err e = {{0}};
    tf__upload *up;
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    for (size_t at = 0; at < n;) {
        size_t k = n - at < 65536 ? n - at : 65536;
        assert_int_equal(st->ops->write(st, up, data + at, k, &e), TF_OK);
        at += k;
    }
    int rc = st->ops->commit(st, &up, name, 1, &e);
    if (rc != TF_OK)
        print_error("commit %s: %s\n", name, e.msg);
    assert_int_equal(rc, TF_OK);
    assert_null(up);
}

/* Reads name back whole through open_read / read_at, checks it against
   data, and the remembered digest against its hash. */
static void check_file(tf__storage *st, const char *name, const uint8_t *data, size_t n)
{
    tf__err e = {{0}};
    int h;
    uint64_t size, id[TF_STORAGE_ID_LEN];
    assert_int_equal(st->ops->open_read(st, name, &h, &size, id, &e), TF_OK);
    assert_int_equal(size, n);
    uint8_t *back = malloc(n + 1);
    assert_non_null(back);
    size_t at = 0;
    while (at < n) {
        size_t want = n - at < 100000 ? n - at : 100000; /* not aligned to the read-ahead */
        ssize_t k = st->ops->read_at(st, h, back + at, want, at);
        assert_true(k > 0);
        at += (size_t)k;
    }
    assert_int_equal(st->ops->read_at(st, h, back, 1, n), 0);
    assert_memory_equal(back, data, n);
    uint8_t want[TF_DIGEST_SIZE], got[TF_DIGEST_SIZE];
    digest_of(data, n, want);
    assert_int_equal(st->ops->digest_load(st, h, id, got), 1);
    assert_memory_equal(got, want, TF_DIGEST_SIZE);
    /* hash_range over a middle slice, through the read-ahead. */
    if (n > 10) {
        tf__digest d = {0};
        assert_int_equal(tf__digest_begin(&d, 1), TF_OK);
        assert_int_equal(st->ops->hash_range(st, h, NULL, 3, n - 6, &d, back, 4096, &e), TF_OK);
        tf__digest_final(&d, got);
        tf__digest_end(&d);
        digest_of(data + 3, n - 6, want);
        assert_memory_equal(got, want, TF_DIGEST_SIZE);
    }
    st->ops->close_read(st, h);
    free(back);
}

static void test_s3_storage_small(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    static const uint8_t text[] = "hello, storage";
    assert_int_equal(st->ops->check_target(st, "a.txt", 0, &e), TF_OK);
    store_file(st, "a.txt", text, sizeof text - 1);
    check_file(st, "a.txt", text, sizeof text - 1);
    assert_int_equal(st->ops->check_target(st, "a.txt", 0, &e), TF_EEXIST);
    tf__err_clear(&e);
    assert_int_equal(st->ops->check_target(st, "a.txt", 1, &e), TF_OK);
    /* overwrite off at commit: refused, and the file is unchanged */
    tf__upload *up;
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, "other", 5, &e), TF_OK);
    assert_int_equal(st->ops->commit(st, &up, "a.txt", 0, &e), TF_EEXIST);
    assert_null(up);
    tf__err_clear(&e);
    check_file(st, "a.txt", text, sizeof text - 1);
    /* an empty file, an aborted upload */
    store_file(st, "empty", text, 0);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "empty", &fs, &e), TF_OK);
    assert_int_equal(fs.size, 0);
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, "gone", 4, &e), TF_OK);
    st->ops->abort(st, &up);
    assert_null(up);
    int h;
    uint64_t size, id[TF_STORAGE_ID_LEN];
    assert_int_equal(st->ops->open_read(st, "missing", &h, &size, id, &e), TF_ENOENT);
    st->ops->close(st);
}

/* Over one part: a multipart upload, invisible until commit. */
static void test_s3_storage_multipart(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    size_t n = SPART + 300000;
    uint8_t *data = patterned(n, 3);
    tf__upload *up;
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data, SPART + 10, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data + SPART + 10, n - SPART - 10, &e), TF_OK);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "big.bin", &fs, &e), TF_ENOENT);
    tf__err_clear(&e);
    assert_int_equal(st->ops->commit(st, &up, "big.bin", 0, &e), TF_OK);
    check_file(st, "big.bin", data, n);
    /* the staging is gone: nothing under the reserved directory */
    found fd = {0};
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.tcpfile-tmp/", f->prefix);
    assert_int_equal(tf__s3_mpu_list(f->s3, tmp, find_upload, &fd, &e), TF_OK);
    assert_int_equal(fd.n, 0);
    keys ks = {0};
    tf__s3_page page = {.prefix = tmp};
    assert_int_equal(tf__s3_list(f->s3, &page, collect_key, &ks, &e), TF_OK);
    assert_int_equal(ks.n, 0);
    free(ks.k);
    st->ops->close(st);
    free(data);
}

/* Staged for its name (stage_named, as the server does): the multipart
   upload is of the name itself, and completing it publishes it - no copy
   at commit (a copy would have set the digest as metadata). The digest
   is kept beside, found at open, moved by rename, dropped by remove. */
static void test_s3_storage_in_place(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    size_t n = SPART + 70000;
    uint8_t *data = patterned(n, 9);
    tf__upload *up;
    assert_int_equal(st->ops->stage_named(st, "d.bin", &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data, n, &e), TF_OK);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "d.bin", &fs, &e), TF_ENOENT); /* not before */
    tf__err_clear(&e);
    assert_int_equal(st->ops->commit(st, &up, "d.bin", 0, &e), TF_OK);
    tf__s3_info h;
    assert_int_equal(tf__s3_head(f->s3, key_of(f, "d.bin"), &h, &e), TF_OK);
    assert_null(tf__s3_head_meta(&h, "xxh3"));
    assert_non_null(strchr(h.etag, '-'));
    check_file(st, "d.bin", data, n); /* the digest too */
    /* overwrite off: refused, the upload dropped, the file as it was */
    assert_int_equal(st->ops->stage_named(st, "d.bin", &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data + 1, n - 1, &e), TF_OK);
    assert_int_equal(st->ops->commit(st, &up, "d.bin", 0, &e), TF_EEXIST);
    tf__err_clear(&e);
    found fd = {0};
    assert_int_equal(tf__s3_mpu_list(f->s3, key_of(f, "d.bin"), find_upload, &fd, &e), TF_OK);
    assert_int_equal(fd.n, 0);
    check_file(st, "d.bin", data, n);
    /* staged for one name, committed as another: refused */
    assert_int_equal(st->ops->stage_named(st, "x.bin", &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data, n, &e), TF_OK);
    assert_int_equal(st->ops->commit(st, &up, "y.bin", 1, &e), TF_EINTERNAL);
    tf__err_clear(&e);
    assert_int_equal(st->ops->stat(st, "x.bin", &fs, &e), TF_ENOENT);
    tf__err_clear(&e);
    /* rename takes the digest along; remove leaves nothing behind */
    assert_int_equal(st->ops->rename(st, "d.bin", "e.bin", 0, &e), TF_OK);
    check_file(st, "e.bin", data, n);
    assert_int_equal(st->ops->remove(st, "e.bin", &e), TF_OK);
    keys ks = {0};
    tf__s3_page page = {.prefix = f->prefix};
    assert_int_equal(tf__s3_list(f->s3, &page, collect_key, &ks, &e), TF_OK);
    for (size_t i = 0; i < ks.n; i++)
        print_error("left: %s\n", ks.k[i]);
    assert_int_equal(ks.n, 0);
    free(ks.k);
    st->ops->close(st);
    free(data);
}

/* A resumable upload cut off on one server, taken up on another: the
   parts are found by listing the uploads, the digest of what is there is
   carried beside them. */
static void test_s3_storage_resume_elsewhere(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *one = open_store(f), *two = open_store(f);
    tf__err e = {{0}};
    size_t n = 2 * SPART + 5000;
    uint8_t *data = patterned(n, 11);
    const char *stem = "00112233445566778899aabbccddeeff";
    tf__upload *up;
    uint64_t have;
    int resumable;
    assert_int_equal(one->ops->stage_resumable(one, stem, n, &up, &have, &resumable, &e),
                     TF_OK);
    assert_int_equal(have, 0);
    assert_int_equal(resumable, 1);
    /* a second connection to the same server: busy */
    tf__upload *up2;
    assert_int_equal(one->ops->stage_resumable(one, stem, n, &up2, &have, &resumable, &e),
                     TF_EBUSY);
    tf__err_clear(&e);
    assert_int_equal(one->ops->write(one, up, data, SPART + 1234, &e), TF_OK);
    one->ops->keep(one, &up); /* cut off */
    assert_null(up);
    one->ops->close(one);

    assert_int_equal(two->ops->stage_resumable(two, stem, n, &up, &have, &resumable, &e),
                     TF_OK);
    assert_int_equal(resumable, 1);
    assert_int_equal(have, SPART); /* whole parts only */
    /* the session's digest of the prefix, in slices */
    tf__digest d = {0};
    uint8_t buf[64];
    assert_int_equal(tf__digest_begin(&d, 1), TF_OK);
    for (uint64_t at = 0; at < have; at += SPART / 4)
        assert_int_equal(two->ops->hash_range(two, -1, up, at, SPART / 4, &d, buf, sizeof buf,
                                              &e),
                         TF_OK);
    tf__digest_update(&d, data + have, n - have);
    assert_int_equal(two->ops->write(two, up, data + have, n - have, &e), TF_OK);
    assert_int_equal(two->ops->commit(two, &up, "resumed.bin", 0, &e), TF_OK);
    uint8_t got[TF_DIGEST_SIZE], want[TF_DIGEST_SIZE];
    tf__digest_final(&d, got);
    tf__digest_end(&d);
    digest_of(data, n, want);
    assert_memory_equal(got, want, TF_DIGEST_SIZE);
    check_file(two, "resumed.bin", data, n);
    /* done: a new upload of the same stem starts from nothing */
    assert_int_equal(two->ops->stage_resumable(two, stem, n, &up, &have, &resumable, &e),
                     TF_OK);
    assert_int_equal(have, 0);
    two->ops->abort(two, &up);
    two->ops->close(two);
    free(data);
}

typedef struct seen {
    size_t n, batches, dirs;
    int has_tmp;
} seen;

static void list_dir(tf__storage *st, const char *dir, seen *sn)
{
    tf__err e = {{0}};
    tf__lister *li;
    memset(sn, 0, sizeof *sn);
    assert_int_equal(st->ops->list_open(st, dir, &li, &e), TF_OK);
    for (;;) {
        const tf__dirent *b;
        size_t n;
        assert_int_equal(st->ops->list_next(st, li, &b, &n, &e), TF_OK);
        if (n == 0)
            break;
        assert_true(n <= TF_STORAGE_LIST_BATCH);
        sn->batches++;
        for (size_t i = 0; i < n; i++) {
            sn->n++;
            sn->dirs += b[i].st.type == TF__FT_DIR;
            sn->has_tmp |= strcmp(b[i].name, ".tcpfile-tmp") == 0;
            assert_null(strchr(b[i].name, '/'));
        }
    }
    st->ops->list_close(st, li);
}

static void test_s3_storage_tree(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    tf__fstat fs;
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_OK);
    assert_int_equal(st->ops->stat(st, "d", &fs, &e), TF_OK);
    assert_int_equal(fs.type, TF__FT_DIR);
    assert_int_equal(st->ops->mkdir(st, "d", &e), TF_EEXIST);
    tf__err_clear(&e);
    assert_int_equal(st->ops->mkdir(st, "x/y", &e), TF_ENOENT);
    tf__err_clear(&e);
    store_file(st, "d/f", (const uint8_t *)"12345678", 8);
    assert_int_equal(st->ops->stat(st, "d/f", &fs, &e), TF_OK);
    assert_int_equal(fs.type, TF__FT_FILE);
    assert_int_equal(fs.size, 8);
    assert_true(fs.mtime > 1600000000);
    assert_int_equal(st->ops->remove(st, "d", &e), TF_ENOTEMPTY);
    tf__err_clear(&e);
    /* rename = copy + delete; NOREPLACE */
    store_file(st, "g", (const uint8_t *)"g", 1);
    assert_int_equal(st->ops->rename(st, "d/f", "g", TF_STORAGE_NOREPLACE, &e), TF_EEXIST);
    tf__err_clear(&e);
    assert_int_equal(st->ops->rename(st, "d/f", "h", TF_STORAGE_NOREPLACE, &e), TF_OK);
    assert_int_equal(st->ops->stat(st, "d/f", &fs, &e), TF_ENOENT);
    tf__err_clear(&e);
    check_file(st, "h", (const uint8_t *)"12345678", 8);
    assert_int_equal(st->ops->remove(st, "d", &e), TF_OK);
    assert_int_equal(st->ops->stat(st, "d", &fs, &e), TF_ENOENT);
    tf__err_clear(&e);
    assert_int_equal(st->ops->remove(st, "h", &e), TF_OK);
    assert_int_equal(st->ops->remove(st, "h", &e), TF_ENOENT);
    tf__err_clear(&e);
    /* malformed paths and the staging directory */
    const char *bad[] = {"", "/etc/passwd", "..", "a/../g", "d//f", "./g", "d/", "d/."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(st->ops->stat(st, bad[i], &fs, &e), TF_EINVAL);
        tf__err_clear(&e);
    }
    assert_int_equal(st->ops->stat(st, ".tcpfile-tmp", &fs, &e), TF_EACCES);
    tf__err_clear(&e);
    assert_int_equal(st->ops->mkdir(st, ".tcpfile-tmp/x", &e), TF_EACCES);
    tf__err_clear(&e);
    /* a paged listing: 150 files and 2 directories, the staging hidden */
    tf__upload *up;
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, "x", 1, &e), TF_OK);
    assert_int_equal(st->ops->mkdir(st, "sub", &e), TF_OK);
    assert_int_equal(st->ops->mkdir(st, "sub/inner", &e), TF_OK);
    enum { FILES = 150 };
    pthread_t t[4];
    put_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (put_job){f, 50 + i * FILES / 4, 50 + (i + 1) * FILES / 4, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, put_range, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].rc, TF_OK);
    }
    char tmpkey[128];
    snprintf(tmpkey, sizeof tmpkey, "%s.tcpfile-tmp/planted", f->prefix);
    tf__s3_body one = {.buf = "p", .len = 1};
    assert_int_equal(tf__s3_put(f->s3, tmpkey, &one, NULL, 0, &e), TF_OK);
    seen sn;
    list_dir(st, "", &sn);
    assert_int_equal(sn.n, FILES + 2); /* the files, "g", "sub" */
    assert_int_equal(sn.dirs, 1);
    assert_true(sn.batches >= 3);
    assert_false(sn.has_tmp);
    list_dir(st, "sub", &sn);
    assert_int_equal(sn.n, 1);
    assert_int_equal(sn.dirs, 1);
    tf__lister *li;
    assert_int_equal(st->ops->list_open(st, "nothere", &li, &e), TF_ENOENT);
    st->ops->abort(st, &up);
    st->ops->close(st);
}

/* sweep at start aborts the stale plain uploads and keeps a fresh
   resumable one; a fresh plain upload is kept too: another server over
   the same bucket may still be sending it. */
static void test_s3_storage_sweep(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    char key[256], plain[256], id[TF_S3_ID_MAX];
    snprintf(plain, sizeof plain, "%s.tcpfile-tmp/u/left", f->prefix);
    assert_int_equal(tf__s3_mpu_create(f->s3, plain, NULL, 0, id, &e), TF_OK);
    snprintf(key, sizeof key, "%s.tcpfile-tmp/p/stem", f->prefix);
    assert_int_equal(tf__s3_mpu_create(f->s3, key, NULL, 0, id, &e), TF_OK);
    found fd = {0};
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.tcpfile-tmp/", f->prefix);
    st->ops->sweep(st, 1); /* both fresh: both kept */
    assert_int_equal(tf__s3_mpu_list(f->s3, tmp, find_upload, &fd, &e), TF_OK);
    assert_int_equal(fd.n, 2);
    st->ops->close(st);
    /* A server whose plain uploads are stale at once. */
    tf__storage_s3_config c = {.endpoint = f->cfg.endpoint,
                               .bucket = f->cfg.bucket,
                               .prefix = f->prefix,
                               .region = f->cfg.region,
                               .resume_ttl_s = 3600,
                               .stale_plain_s = -1};
    assert_int_equal(tf__storage_s3_open(&st, &c, &e), TF_OK);
    st->ops->sweep(st, 1);
    memset(&fd, 0, sizeof fd);
    assert_int_equal(tf__s3_mpu_list(f->s3, tmp, find_upload, &fd, &e), TF_OK);
    assert_int_equal(fd.n, 1);
    assert_string_equal(fd.key, key);
    st->ops->close(st);
}

/* One storage shared by threads, as a server's workers share it: its pool
   of connections and its table of read handles. */
typedef struct share_job {
    tf__storage *st;
    int n;
} share_job;

static void *share_work(void *arg)
{
    share_job *j = arg;
    char name[32];
    uint8_t data[3000];
    fill_pattern(data, sizeof data, (uint64_t)j->n);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "w%d-%d", j->n, i);
        store_file(j->st, name, data, sizeof data - (size_t)i);
        check_file(j->st, name, data, sizeof data - (size_t)i);
    }
    return NULL;
}

static void test_s3_storage_threads(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    enum { N = 4 };
    pthread_t t[N];
    share_job jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (share_job){st, i};
        assert_int_equal(pthread_create(&t[i], NULL, share_work, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    seen sn;
    list_dir(st, "", &sn);
    assert_int_equal(sn.n, N * 3);
    st->ops->close(st);
}

/* The store down: a clear TF_EIO naming it, quickly. */
static void test_s3_storage_store_down(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage_s3_config c = {.endpoint = "http://127.0.0.1:1", .bucket = f->cfg.bucket};
    tf__storage *st;
    tf__err e = {{0}};
    assert_int_equal(tf__storage_s3_open(&st, &c, &e), TF_OK);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "x", &fs, &e), TF_EIO);
    assert_non_null(strstr(e.msg, "127.0.0.1:1"));
    st->ops->close(st);
}

/* A part under S3's least (5 MiB) is refused when the store is opened,
   not by the store at the second part. */
static void test_s3_storage_part_size(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage_s3_config c = {.endpoint = f->cfg.endpoint,
                               .bucket = f->cfg.bucket,
                               .region = f->cfg.region,
                               .part_size = ((size_t)5 << 20) - 1};
    tf__storage *st = NULL;
    tf__err e = {{0}};
    assert_int_equal(tf__storage_s3_open(&st, &c, &e), TF_EINVAL);
    assert_null(st);
    assert_non_null(strstr(e.msg, "least"));
    c.part_size = (size_t)5 << 20;
    assert_int_equal(tf__storage_s3_open(&st, &c, &e), TF_OK);
    st->ops->close(st);
}

/* An upload of bytes, staged and written, for commit_cond. */
static tf__upload *staged(tf__storage *st, const void *p, size_t n)
{
    tf__err e = {{0}};
    tf__upload *up;
    assert_int_equal(st->ops->stage(st, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, p, n, &e), TF_OK);
    return up;
}

/* PUTX's conditions: if-absent refused over an object, if-match refused
   once the object changed (the store's own If-Match on the PUT), a time
   given with the upload reported back by stat and list. */
static void test_s3_storage_commit_cond(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    store_file(st, "c.txt", (const uint8_t *)"first", 5);
    tf__upload *up = staged(st, "second", 6);
    tf__commit_cond absent = {.overwrite = 0};
    assert_int_equal(st->ops->commit_cond(st, &up, "c.txt", &absent, &e), TF_EEXIST);
    assert_null(up);
    tf__err_clear(&e);
    check_file(st, "c.txt", (const uint8_t *)"first", 5);
    up = staged(st, "fresh", 5);
    assert_int_equal(st->ops->commit_cond(st, &up, "new.txt", &absent, &e), TF_OK);
    check_file(st, "new.txt", (const uint8_t *)"fresh", 5);
    /* if-match: the version read, then someone else's put in between */
    int h;
    uint64_t size, id[TF_STORAGE_ID_LEN];
    assert_int_equal(st->ops->open_read(st, "c.txt", &h, &size, id, &e), TF_OK);
    st->ops->close_read(st, h);
    tf__commit_cond match = {.overwrite = 1, .expect_id = id};
    up = staged(st, "mine", 4);
    assert_int_equal(st->ops->commit_cond(st, &up, "c.txt", &match, &e), TF_OK);
    check_file(st, "c.txt", (const uint8_t *)"mine", 4);
    up = staged(st, "late", 4); /* id is the version before "mine" */
    assert_int_equal(st->ops->commit_cond(st, &up, "c.txt", &match, &e), TF_ECONFLICT);
    tf__err_clear(&e);
    check_file(st, "c.txt", (const uint8_t *)"mine", 4);
    /* a time with the upload */
    tf__commit_cond timed = {.overwrite = 1, .set_mtime = 1, .mtime_sec = 1000000000,
                             .mtime_nsec = 250};
    up = staged(st, "timed", 5);
    assert_int_equal(st->ops->commit_cond(st, &up, "t.txt", &timed, &e), TF_OK);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "t.txt", &fs, &e), TF_OK);
    assert_int_equal(fs.mtime, 1000000000);
    assert_int_equal(fs.mtime_ns, 250);
    st->ops->close(st);
}

/* set_mtime: metadata copied onto the object, its bytes and digest kept;
   stat and the listing report the new time. */
static void test_s3_storage_set_mtime(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    store_file(st, "m.txt", (const uint8_t *)"timed bytes", 11);
    assert_int_equal(st->ops->set_mtime(st, "m.txt", 1234567890, 0, &e), TF_OK);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "m.txt", &fs, &e), TF_OK);
    assert_int_equal(fs.mtime, 1234567890);
    check_file(st, "m.txt", (const uint8_t *)"timed bytes", 11);
    int h;
    uint64_t size, id[TF_STORAGE_ID_LEN];
    uint8_t digest[TF_DIGEST_SIZE];
    assert_int_equal(st->ops->open_read(st, "m.txt", &h, &size, id, &e), TF_OK);
    assert_int_equal(st->ops->digest_load(st, h, id, digest), 1); /* still there */
    st->ops->close_read(st, h);
    tf__lister *li;
    const tf__dirent *batch;
    size_t n;
    assert_int_equal(st->ops->list_open(st, "", &li, &e), TF_OK);
    assert_int_equal(st->ops->list_next(st, li, &batch, &n, &e), TF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(batch[0].name, "m.txt");
    assert_int_equal(batch[0].st.mtime, 1234567890);
    st->ops->list_close(st, li);
    assert_int_equal(st->ops->set_mtime(st, "none", 1, 0, &e), TF_ENOENT);
    st->ops->close(st);
}

/* sub: a user's part is a key prefix, made on demand, nothing above it
   visible. */
static void test_s3_storage_sub(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    tf__storage *child = NULL;
    assert_int_equal(st->ops->sub(st, "team/alice", 0, &child, &e), TF_ENOENT);
    tf__err_clear(&e);
    store_file(st, "top.txt", (const uint8_t *)"top", 3);
    assert_int_equal(st->ops->sub(st, "team/alice", 1, &child, &e), TF_OK);
    store_file(child, "a.txt", (const uint8_t *)"alice's", 7);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "team/alice/a.txt", &fs, &e), TF_OK);
    assert_int_equal(child->ops->stat(child, "top.txt", &fs, &e), TF_ENOENT);
    tf__err_clear(&e);
    child->ops->close(child);
    assert_int_equal(st->ops->sub(st, "top.txt", 0, &child, &e), TF_EACCES);
    st->ops->close(st);
}

/* Many readers at once (100 clients getting a file): their read-aheads
   together stay within the budget, the store's and its views' alike;
   those beyond it read straight into the caller's buffer, as right. */
static void test_s3_storage_readahead_budget(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    tf__storage *child = NULL;
    assert_int_equal(st->ops->sub(st, "v", 1, &child, &e), TF_OK);
    size_t n = 2u << 20; /* one PUT; each reader would hold ~2 MiB */
    uint8_t *data = patterned(n, 5), *back = malloc(n);
    assert_non_null(back);
    store_file(child, "f.bin", data, n);
    enum { READERS = 48 };
    int h[READERS];
    tf__storage *of[READERS];
    for (int i = 0; i < READERS; i++) {
        uint64_t size, id[TF_STORAGE_ID_LEN];
        of[i] = i % 2 ? child : st;
        assert_int_equal(of[i]->ops->open_read(of[i], i % 2 ? "f.bin" : "v/f.bin", &h[i], &size,
                                               id, &e),
                         TF_OK);
        assert_int_equal(size, n);
        /* past what open_read fetched: a read-ahead, if the budget lends */
        size_t off = 100000 + (size_t)i * 1000;
        assert_int_equal(of[i]->ops->read_at(of[i], h[i], back, 256 << 10, off), 256 << 10);
        assert_memory_equal(back, data + off, 256 << 10);
        assert_true(tf__storage_s3_readahead_held(st) <= TF_S3_READAHEAD_BUDGET);
    }
    assert_true(tf__storage_s3_readahead_held(st) > TF_S3_READAHEAD_BUDGET / 2);
    for (int i = 0; i < READERS; i++)
        of[i]->ops->close_read(of[i], h[i]);
    assert_int_equal(tf__storage_s3_readahead_held(st), 0);
    child->ops->close(child);
    st->ops->close(st);
    free(data);
    free(back);
}

/* Writes data[from, to) in the session's 64 KiB steps. */
static void write_steps(tf__storage *st, tf__upload *up, const uint8_t *data, size_t from,
                        size_t to)
{
    tf__err e = {{0}};
    for (size_t at = from; at < to;) {
        size_t k = to - at < 65536 ? to - at : 65536;
        assert_int_equal(st->ops->write(st, up, data + at, k, &e), TF_OK);
        at += k;
    }
}

/* A resumable upload of n bytes through a store of its own, cut off
   after upto: the most parts that store sent at once. */
static size_t cut_off(fixture *f, const char *stem, const uint8_t *data, size_t n, size_t upto)
{
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    tf__upload *up;
    uint64_t have;
    int resumable;
    assert_int_equal(st->ops->stage_resumable(st, stem, n, &up, &have, &resumable, &e), TF_OK);
    assert_int_equal(resumable, 1);
    write_steps(st, up, data, 0, upto);
    size_t most = tf__storage_s3_parts_overlap(st);
    st->ops->keep(st, &up);
    assert_int_equal(tf__storage_s3_readahead_held(st), 0);
    st->ops->close(st);
    return most;
}

/* Full parts go in the background, two of an upload at once, while the
   next is filled (within the read-ahead budget, given back after); they
   are recorded in order: a resumable upload cut off after three parts
   resumes on another server from all three, with the digest of exactly
   those bytes. (Sent while the writer waits, the most at once is 1.) */
static void test_s3_storage_parts_overlap(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *two = open_store(f);
    tf__err e = {{0}};
    size_t n = 3 * (size_t)SPART + 4321;
    uint8_t *data = patterned(n, 13);
    const char *stem = "ffeeddccbbaa99887766554433221100";
    tf__upload *up;
    uint64_t have;
    int resumable;
    assert_int_equal(cut_off(f, stem, data, n, 3 * (size_t)SPART + 100), 2);
    assert_int_equal(two->ops->stage_resumable(two, stem, n, &up, &have, &resumable, &e),
                     TF_OK);
    assert_int_equal(have, 3 * (uint64_t)SPART);
    tf__digest d = {0};
    uint8_t buf[64], got[TF_DIGEST_SIZE], want[TF_DIGEST_SIZE];
    assert_int_equal(tf__digest_begin(&d, 1), TF_OK);
    assert_int_equal(two->ops->hash_range(two, -1, up, 0, have, &d, buf, sizeof buf, &e), TF_OK);
    tf__digest_final(&d, got);
    tf__digest_end(&d);
    digest_of(data, (size_t)have, want);
    assert_memory_equal(got, want, TF_DIGEST_SIZE);
    write_steps(two, up, data, (size_t)have, n);
    assert_int_equal(two->ops->commit(two, &up, "resumed3.bin", 0, &e), TF_OK);
    check_file(two, "resumed3.bin", data, n);
    /* a plain upload of four parts and a tail, in place, as the server's */
    size_t m = 4 * (size_t)SPART + 99;
    uint8_t *more = patterned(m, 17);
    assert_int_equal(two->ops->stage_named(two, "four.bin", &up, &e), TF_OK);
    write_steps(two, up, more, 0, m);
    assert_int_equal(two->ops->commit(two, &up, "four.bin", 0, &e), TF_OK);
    assert_int_equal(tf__storage_s3_parts_overlap(two), 2);
    assert_int_equal(tf__storage_s3_readahead_held(two), 0);
    check_file(two, "four.bin", more, m);
    two->ops->close(two);
    free(data);
    free(more);
}

/* Cut off with parts past its state (they were in flight: two threads
   saved their states out of order, or the server died before saving):
   resumed from the state's parts, the later ones sent again. */
static void test_s3_storage_resume_past_state(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *two = open_store(f);
    tf__err e = {{0}};
    size_t n = 3 * (size_t)SPART + 999;
    uint8_t *data = patterned(n, 19);
    const char *stem = "0123456789abcdef0123456789abcdef";
    tf__upload *up;
    uint64_t have;
    int resumable;
    cut_off(f, stem, data, n, 3 * (size_t)SPART);
    /* the state of two parts over the three */
    tf__digest d = {0};
    assert_int_equal(tf__digest_begin(&d, 1), TF_OK);
    tf__digest_update(&d, data, 2 * (size_t)SPART);
    uint8_t blob[64 + TF_DIGEST_STATE_MAX];
    int head = snprintf((char *)blob, 64, "%zu 2\n", 2 * (size_t)SPART);
    size_t k = tf__digest_save(&d, blob + head, sizeof blob - (size_t)head);
    tf__digest_end(&d);
    assert_true(k > 0);
    char skey[256];
    snprintf(skey, sizeof skey, "%s/p/%s.state", TF_TMP_DIR, stem);
    tf__s3_body body = {.buf = blob, .len = (size_t)head + k};
    assert_int_equal(tf__s3_put(f->s3, key_of(f, skey), &body, NULL, 0, &e), TF_OK);

    assert_int_equal(two->ops->stage_resumable(two, stem, n, &up, &have, &resumable, &e),
                     TF_OK);
    assert_int_equal(have, 2 * (uint64_t)SPART);
    write_steps(two, up, data, (size_t)have, n);
    assert_int_equal(two->ops->commit(two, &up, "past.bin", 0, &e), TF_OK);
    check_file(two, "past.bin", data, n);
    two->ops->close(two);
    free(data);
}

/* The check a server makes at start. */
/* ---- an upload of known size as one streaming PUT (stage_sized) ---- */

/* Nothing under the prefix but what the test names (NULL: nothing at
   all), and no multipart upload. */
static void only_keys(fixture *f, const char *name)
{
    tf__err e = {{0}};
    keys ks = {0};
    tf__s3_page page = {.prefix = f->prefix};
    assert_int_equal(tf__s3_list(f->s3, &page, collect_key, &ks, &e), TF_OK);
    size_t want = 0;
    for (size_t i = 0; i < ks.n; i++) {
        if (name && strcmp(ks.k[i], key_of(f, name)) == 0)
            want++;
        else if (!strstr(ks.k[i], "/.tcpfile-tmp/d/"))
            print_error("left: %s\n", ks.k[i]);
    }
    assert_int_equal(want, name ? 1 : 0);
    free(ks.k);
    found fd = {0};
    assert_int_equal(tf__s3_mpu_list(f->s3, f->prefix, find_upload, &fd, &e), TF_OK);
    assert_int_equal(fd.n, 0);
}

/* Stages n bytes of data for name with stage_sized and writes them all,
   in pieces as the session does; not committed. */
static tf__upload *streamed(tf__storage *st, const char *name, const uint8_t *data, size_t n)
{
    tf__err e = {{0}};
    tf__upload *up;
    assert_int_equal(st->ops->stage_sized(st, name, n, &up, &e), TF_OK);
    for (size_t at = 0; at < n;) {
        size_t k = n - at < 262144 ? n - at : 262144;
        int rc = st->ops->write(st, up, data + at, k, &e);
        if (rc != TF_OK)
            print_error("write: %s\n", e.msg);
        assert_int_equal(rc, TF_OK);
        at += k;
    }
    return up;
}

/* Over a part, with its size known: one PUT (an ETag without "-"), sent
   while written, yet nothing under the name before the commit; its digest
   kept beside it; if-absent, if-match and a time honoured. */
static void test_s3_storage_stream(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    size_t n = SPART + 300001;
    uint8_t *data = patterned(n, 21);
    tf__upload *up = streamed(st, "s.bin", data, n);
    assert_int_equal(tf__storage_s3_streams(st), 1);
    usleep(300000); /* all but the last byte may be at the store by now */
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "s.bin", &fs, &e), TF_ENOENT);
    tf__err_clear(&e);
    assert_int_equal(st->ops->commit(st, &up, "s.bin", 0, &e), TF_OK);
    assert_null(up);
    tf__s3_info h;
    assert_int_equal(tf__s3_head(f->s3, key_of(f, "s.bin"), &h, &e), TF_OK);
    assert_null(strchr(h.etag, '-'));
    check_file(st, "s.bin", data, n);
    only_keys(f, "s.bin");
    /* if-absent over it: refused, the file as it was */
    up = streamed(st, "s.bin", data + 1, n - 1);
    tf__commit_cond absent = {.overwrite = 0};
    assert_int_equal(st->ops->commit_cond(st, &up, "s.bin", &absent, &e), TF_EEXIST);
    tf__err_clear(&e);
    check_file(st, "s.bin", data, n);
    /* a time with it: the copy onto itself carries digest and time */
    up = streamed(st, "s.bin", data + 1, n - 1);
    tf__commit_cond timed = {.overwrite = 1, .set_mtime = 1, .mtime_sec = 1000000000};
    assert_int_equal(st->ops->commit_cond(st, &up, "s.bin", &timed, &e), TF_OK);
    assert_int_equal(st->ops->stat(st, "s.bin", &fs, &e), TF_OK);
    assert_int_equal(fs.mtime, 1000000000);
    check_file(st, "s.bin", data + 1, n - 1);
    /* if-match: the version read goes through, a stale one is refused */
    int fd;
    uint64_t size, id[TF_STORAGE_ID_LEN];
    assert_int_equal(st->ops->open_read(st, "s.bin", &fd, &size, id, &e), TF_OK);
    st->ops->close_read(st, fd);
    tf__commit_cond match = {.overwrite = 1, .expect_id = id};
    up = streamed(st, "s.bin", data, n);
    assert_int_equal(st->ops->commit_cond(st, &up, "s.bin", &match, &e), TF_OK);
    up = streamed(st, "s.bin", data + 2, n - 2);
    assert_int_equal(st->ops->commit_cond(st, &up, "s.bin", &match, &e), TF_ECONFLICT);
    tf__err_clear(&e);
    check_file(st, "s.bin", data, n);
    assert_int_equal(tf__storage_s3_streams(st), 5);
    assert_int_equal(tf__storage_s3_readahead_held(st), 0);
    st->ops->close(st);
    free(data);
}

/* Aborted (a digest mismatch, a client gone: the session aborts) with
   every byte written, or half: nothing under the name, or the old file
   still whole; and the next put of the name goes through. */
static void test_s3_storage_stream_abort(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage *st = open_store(f);
    tf__err e = {{0}};
    size_t n = SPART + 123457;
    uint8_t *data = patterned(n, 5);
    tf__upload *up = streamed(st, "a.bin", data, n);
    usleep(300000);
    st->ops->abort(st, &up);
    assert_null(up);
    usleep(200000);
    tf__fstat fs;
    assert_int_equal(st->ops->stat(st, "a.bin", &fs, &e), TF_ENOENT);
    tf__err_clear(&e);
    only_keys(f, NULL);
    /* cut off half way, then put whole */
    assert_int_equal(st->ops->stage_sized(st, "a.bin", n, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data, n / 2, &e), TF_OK);
    st->ops->abort(st, &up);
    up = streamed(st, "a.bin", data, n);
    assert_int_equal(st->ops->commit(st, &up, "a.bin", 1, &e), TF_OK);
    check_file(st, "a.bin", data, n);
    /* a new version aborted whole: the old one stays */
    up = streamed(st, "a.bin", data + 7, n - 7);
    usleep(300000);
    st->ops->abort(st, &up);
    usleep(200000);
    check_file(st, "a.bin", data, n);
    /* fewer or more bytes than announced: the upload fails */
    assert_int_equal(st->ops->stage_sized(st, "b.bin", n, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data, n - 1, &e), TF_OK);
    assert_int_equal(st->ops->commit(st, &up, "b.bin", 1, &e), TF_EIO);
    tf__err_clear(&e);
    assert_int_equal(st->ops->stage_sized(st, "b.bin", n, &up, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data, n, &e), TF_OK);
    assert_int_equal(st->ops->write(st, up, data, 1, &e), TF_EIO);
    st->ops->abort(st, &up);
    assert_int_equal(st->ops->stat(st, "b.bin", &fs, &e), TF_ENOENT);
    only_keys(f, "a.bin");
    assert_int_equal(tf__storage_s3_readahead_held(st), 0);
    st->ops->close(st);
    free(data);
}

/* The sender killed with every byte written but the commit not made (a
   server killed mid-put): the store drops the PUT, nothing shows. */
static void test_s3_storage_stream_killed(void **state)
{
    fixture *f = fixture_of(state);
    size_t n = SPART + 4097;
    uint8_t *data = patterned(n, 17);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tf__storage *st = open_store(f);
        tf__upload *up = streamed(st, "k.bin", data, n);
        (void)up;
        usleep(500000); /* the ring sent, all but the last byte */
        raise(SIGKILL);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    usleep(200000);
    tf__s3_info h;
    tf__err e = {{0}};
    assert_int_equal(tf__s3_head(f->s3, key_of(f, "k.bin"), &h, &e), TF_ENOENT);
    only_keys(f, NULL);
    free(data);
}

/* What goes as one PUT: a size of a part or more, up to single_put_max,
   while the budget has room for its ring; less than a part is one PUT at
   commit, over the maximum (or with no room) multipart. */
static void test_s3_storage_stream_threshold(void **state)
{
    fixture *f = fixture_of(state);
    size_t max = SPART + 100000;
    tf__storage *st = open_store_max(f, max);
    tf__err e = {{0}};
    uint8_t *data = patterned(max + 1, 2);
    static const size_t sizes[] = {(size_t)SPART - 1, (size_t)SPART, (size_t)SPART + 100000,
                                   (size_t)SPART + 100001};
    static const size_t streams[] = {0, 1, 2, 2};
    static const int multipart[] = {0, 0, 0, 1};
    for (size_t i = 0; i < 4; i++) {
        tf__upload *up = streamed(st, "t.bin", data, sizes[i]);
        assert_int_equal(tf__storage_s3_streams(st), streams[i]);
        assert_int_equal(st->ops->commit(st, &up, "t.bin", 1, &e), TF_OK);
        tf__s3_info h;
        assert_int_equal(tf__s3_head(f->s3, key_of(f, "t.bin"), &h, &e), TF_OK);
        assert_int_equal(h.size, sizes[i]);
        assert_int_equal(strchr(h.etag, '-') != NULL, multipart[i]);
    }
    check_file(st, "t.bin", data, max + 1);
    /* No room left in the budget for a ring: multipart, as before. */
    enum { RINGS = TF_S3_READAHEAD_BUDGET / (8 << 20) };
    tf__upload *ups[RINGS + 1];
    for (size_t i = 0; i <= RINGS; i++)
        assert_int_equal(st->ops->stage_sized(st, "t.bin", SPART, &ups[i], &e), TF_OK);
    assert_int_equal(tf__storage_s3_streams(st), 2 + RINGS);
    assert_int_equal(tf__storage_s3_readahead_held(st), TF_S3_READAHEAD_BUDGET);
    for (size_t i = 0; i <= RINGS; i++)
        st->ops->abort(st, &ups[i]);
    assert_int_equal(tf__storage_s3_readahead_held(st), 0);
    check_file(st, "t.bin", data, max + 1);
    st->ops->close(st);
    free(data);
}

static void test_s3_storage_check(void **state)
{
    fixture *f = fixture_of(state);
    tf__storage_s3_config c = {.endpoint = f->cfg.endpoint, .region = f->cfg.region};
    tf__storage *st;
    tf__err e = {{0}};
    char url[256];
    snprintf(url, sizeof url, "s3://%s/%s", f->cfg.bucket, f->prefix);
    assert_int_equal(tf__storage_s3_open_url(&st, url, &c, &e), TF_OK);
    st->ops->close(st);
    assert_int_equal(tf__storage_s3_open_url(&st, "s3://no-such-bucket-here", &c, &e),
                     TF_ENOENT);
    assert_non_null(strstr(e.msg, "no such bucket"));
    assert_int_equal(tf__storage_s3_open_url(&st, "http://x", &c, &e), TF_EINVAL);
    c.endpoint = NULL;
    assert_int_equal(tf__storage_s3_open_url(&st, url, &c, &e), TF_EINVAL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_s3_roundtrip_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_wrong_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_missing_bucket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_list_paged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_multipart_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_multipart_resume_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_copy_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_multipart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_resume_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_store_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_part_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_commit_cond, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_set_mtime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_sub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_readahead_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_parts_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_resume_past_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_stream_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_stream_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_storage_stream_threshold, setup, teardown),
    };
    return TU_RUN_GROUP("s3", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
