/*
 * storage_s3.c - a bucket (and a key prefix in it) of an S3-compatible
 * store as a storage backend (issue 15), over s3.c.
 *
 * Layout under the prefix: a file "a/b" is the object "PREFIX a/b"; a
 * directory is every key under "a/", plus the zero-byte marker "a/" that
 * mkdir leaves so that an empty directory exists; the reserved TF_TMP_DIR
 * holds the backend's own staging:
 *   a/b (in progress)          a plain upload over 8 MiB staged for its
 *                              name (stage_named): a multipart upload of
 *                              the name itself
 *   TF_TMP_DIR/u/RANDOM        the same staged without a name (stage)
 *   TF_TMP_DIR/p/STEM          a resumable upload (multipart), and
 *   TF_TMP_DIR/p/STEM.state    its running digest after its last part
 *   TF_TMP_DIR/d/a/b           "ETAG\nDIGEST\n": the digest of a/b when
 *                              it was completed in place (below)
 * Uploads become visible whole or not at all: a small one is one PUT, a
 * large one a multipart upload completed at commit - in place, or copied
 * (server side) onto its name from the staging. Reads are ranged GETs
 * through a read-ahead buffer (storage.h: read_handles). The XXH3-128
 * digest of every upload travels as the object's metadata x-amz-meta-xxh3,
 * except for an upload completed in place: its metadata is set when it
 * starts, before its digest is known, so the digest goes in the small
 * object TF_TMP_DIR/d/NAME, valid while NAME's ETag is the one it names.
 * (Setting the metadata afterwards would copy the object onto itself:
 * twice the store's work for every large put.)
 *
 * Not atomic on S3, and said so in the docs: rename (copy + delete), a
 * commit's check that the name is free when overwriting is off (a HEAD,
 * then the PUT), and the lock of a resumable upload, which only holds
 * within one server.
 *
 * Thread safety: every call may come from any thread; each takes an S3
 * handle (a connection) from a pool for its duration. An upload's full
 * parts are sent by threads of their own (send_part), at most PARTS_AHEAD
 * at once, which every call that ends the upload waits for.
 */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "s3.h"

/* A multipart upload's part: every one but the last this size. */
#define PART_SIZE ((size_t)8 << 20)
/* Read-ahead of a read handle: one ranged GET fetches this much, so that
   a large get pays a request's latency once per 4 MiB... */
#define READ_AHEAD ((size_t)4 << 20)
/* ...as long as the read-aheads of all readers (a store and its views)
   fit in this budget; a reader that finds it spent reads with ranged GETs
   of what the session asks (256 KiB) straight into the session's buffer,
   holding nothing. So the memory of N readers at once is at most
   RA_BUDGET + N * OPEN_AHEAD, not N * READ_AHEAD (100 clients: 440 MiB). */
#define RA_BUDGET TF_S3_READAHEAD_BUDGET
/* Less than this left in the budget: no read-ahead. */
#define RA_MIN ((size_t)1 << 20)
/* What open_read fetches with the object's head, in the same GET: a small
   file whole (one request per small get, not a HEAD and a GET). */
#define OPEN_AHEAD ((size_t)64 << 10)
/* Age after which a plain staged upload left in the bucket is debris
   (sweep): its server has surely given up on it. */
#define PLAIN_STALE_S 3600
/* Parts an upload may have: PART_SIZE * this is the largest file. */
#define MAX_PARTS TF_S3_PARTS_MAX
/* Parts of one upload sent in the background at once, while the session
   fills the next: each holds PART_SIZE of the read-ahead budget (none
   left: the part is sent while the caller waits, as the first one). */
#define PARTS_AHEAD 2

/* The read-ahead budget, shared by a store and its views (s_sub). */
typedef struct tf__ra_budget {
    pthread_mutex_t mu;
    size_t used;
    int refs;
} ra_budget;

typedef struct pooled {
    tf__s3 *s3;
    struct pooled *next;
} pooled;

/* An object open for reading: its handle is its index in the table. */
typedef struct reader {
    char key[TF_S3_KEY_MAX + 1];
    uint64_t size;
    uint64_t id[TF_STORAGE_ID_LEN];
    int has_digest;
    uint8_t digest[TF_DIGEST_SIZE];
    uint8_t *ra; /* read-ahead: bytes [ra_off, ra_off + ra_len) */
    size_t ra_cap;
    size_t ra_charged; /* of ra_cap, what the budget lent */
    uint64_t ra_off;
    size_t ra_len;
} reader;

typedef struct s3store {
    tf__storage base; /* first */
    tf__storage_s3_config cfg;
    char *prefix;     /* "" or "dir/" */
    char *endpoint, *bucket, *region, *access_key, *secret_key;
    pthread_mutex_t mu;
    /* held across a multipart commit's check and copy (commit_with) */
    pthread_mutex_t commit_mu;
    pooled *free_handles;
    ra_budget *budget;
    reader **readers;
    size_t n_readers;
    /* stems of resumable uploads in progress here */
    char **busy;
    size_t n_busy;
    /* parts being sent in the background now, and the most at once (for
       the tests: tf__storage_s3_parts_overlap); under mu */
    size_t parts_flying, parts_flying_max;
} s3store;

/* A full part sent by a thread of its own (send_part), with a resumable
   upload's state after it, while the caller goes on filling the next. Its
   results are taken up in order (finish_part), so that the parts are
   recorded as if sent one after the other. */
typedef struct flying_part {
    pthread_t thread;
    s3store *s;
    tf__upload *up;              /* read only: its stem (save_state) */
    const char *key, *upload_id; /* the upload's, stable while it flies */
    unsigned number;
    uint8_t *buf;
    uint64_t written;            /* the upload's bytes up to this part's end */
    uint8_t state[TF_DIGEST_STATE_MAX]; /* its digest there (resumable) */
    size_t state_len;
    char etag[TF_S3_ID_MAX];
    int rc;
    tf__err e;
} flying_part;

struct tf__upload {
    char stage_key[TF_S3_KEY_MAX + 1]; /* the multipart upload's key */
    char upload_id[TF_S3_ID_MAX];      /* "" until one is started */
    int resumable;
    int in_place; /* stage_key is the name's own key (stage_named) */
    /* a part could not be stored (the store is down): the parts before
       it stay for the retry, abort keeps them (see s_abort) */
    int store_failed;
    char stem[80];
    tf__s3_part *parts;
    size_t n_parts;
    flying_part *flying[PARTS_AHEAD]; /* after parts, oldest first */
    size_t n_flying;
    uint8_t *buf; /* the part being filled */
    size_t buf_len;
    uint64_t written; /* bytes in parts and buf */
    tf__digest digest;
    /* a resumed upload: the digest of its parts, fed to the session's
       digest by hash_range (the parts themselves cannot be read back) */
    uint8_t *saved_state;
    size_t saved_len;
    uint64_t saved_bytes;
};

struct tf__lister {
    char prefix[TF_S3_KEY_MAX + 1];
    int at_root;
    int done;
    tf__s3_page page;
    size_t n;
    tf__dirent batch[TF_STORAGE_LIST_BATCH];
};

static s3store *S(tf__storage *st)
{
    return (s3store *)st;
}

/* ---- handles ---------------------------------------------------------- */

static tf__s3 *take_s3(s3store *s, tf__err *e)
{
    pthread_mutex_lock(&s->mu);
    pooled *p = s->free_handles;
    if (p)
        s->free_handles = p->next;
    pthread_mutex_unlock(&s->mu);
    if (p) {
        tf__s3 *h = p->s3;
        free(p);
        return h;
    }
    tf__s3_config c = {.endpoint = s->endpoint,
                       .bucket = s->bucket,
                       .region = s->region,
                       .access_key = s->access_key,
                       .secret_key = s->secret_key,
                       .timeout_s = s->cfg.timeout_s};
    tf__s3 *h = NULL;
    if (tf__s3_open(&h, &c, e) != TF_OK)
        return NULL;
    return h;
}

static void give_s3(s3store *s, tf__s3 *h)
{
    if (!h)
        return;
    pooled *p = malloc(sizeof *p);
    if (!p) {
        tf__s3_close(h);
        return;
    }
    p->s3 = h;
    pthread_mutex_lock(&s->mu);
    p->next = s->free_handles;
    s->free_handles = p;
    pthread_mutex_unlock(&s->mu);
}

/* ---- names ------------------------------------------------------------ */

/* The same rules as the local backend (tf__storage_check_path), short
   enough to leave room in a key for the prefix and a suffix. */
static int check_path(const char *path, tf__err *e)
{
    return tf__storage_check_path(path, TF_S3_KEY_MAX - 64, e);
}

/* PREFIX path SUFFIX into out (TF_S3_KEY_MAX + 1). */
static int key_for(s3store *s, char *out, const char *path, const char *suffix, tf__err *e)
{
    int n = snprintf(out, TF_S3_KEY_MAX + 1, "%s%s%s", s->prefix, path, suffix);
    if (n < 0 || n > TF_S3_KEY_MAX)
        return tf__fail(e, TF_EINVAL, "\"%s\" is too long for an S3 key", path);
    return TF_OK;
}

/* The key of the file path: a path that passes check_path, as key_for. */
static int file_key(s3store *s, char *out, const char *path, tf__err *e)
{
    int rc = check_path(path, e);
    return rc == TF_OK ? key_for(s, out, path, "", e) : rc;
}

/* A time as x-amz-meta-mtime holds it: "SEC", or "SEC.NNNNNNNNN". */
static void format_mtime(char out[48], int64_t sec, uint32_t nsec)
{
    if (nsec)
        snprintf(out, 48, "%lld.%09u", (long long)sec, (unsigned)nsec);
    else
        snprintf(out, 48, "%lld", (long long)sec);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        out[i / 2] = (uint8_t)(i % 2 ? (out[i / 2] | v) : v << 4);
    }
    return 0;
}

/* A version of an object: its ETag (FNV-1a), size and mtime. */
static void version_of(const tf__s3_info *h, uint64_t id[TF_STORAGE_ID_LEN])
{
    uint64_t x = 1469598103934665603ull;
    for (const char *c = h->etag; *c; c++)
        x = (x ^ (uint8_t)*c) * 1099511628211ull;
    memset(id, 0, TF_STORAGE_ID_LEN * sizeof id[0]);
    id[0] = x;
    id[1] = h->size;
    id[2] = (uint64_t)h->mtime;
}

/* Whether any key starts with "PREFIX path/" (a directory): 1, 0, or an
   error. */
typedef struct any {
    int n;
    int other; /* a key other than the marker itself */
    const char *marker;
} any;

static int count_any(void *user, const char *key, int is_prefix, uint64_t size,
                     int64_t mtime)
{
    (void)size;
    (void)mtime;
    any *a = user;
    a->n++;
    if (is_prefix || strcmp(key, a->marker) != 0)
        a->other = 1;
    return 0;
}

static int dir_probe(s3store *s, tf__s3 *h, const char *path, any *a, tf__err *e)
{
    char key[TF_S3_KEY_MAX + 1];
    int rc = key_for(s, key, path, "/", e);
    if (rc != TF_OK)
        return rc;
    tf__s3_page page = {.prefix = key, .delimiter = "/", .max_keys = 2};
    memset(a, 0, sizeof *a);
    a->marker = key;
    return tf__s3_list(h, &page, count_any, a, e);
}

/* ---- digests of uploads completed in place ---- */

/* The key of the object that holds path's digest (TF_TMP_DIR/d/path). */
static int digest_key(s3store *s, const char *path, char *out, tf__err *e)
{
    char rel[64];
    snprintf(rel, sizeof rel, "%s/d/", TF_TMP_DIR);
    char key[TF_S3_KEY_MAX + 1];
    int rc = key_for(s, key, rel, path, e);
    if (rc == TF_OK)
        memcpy(out, key, strlen(key) + 1);
    return rc;
}

/* An ETag without its quotes, as radosgw's headers and XML differ. */
static int same_etag(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= 2 && a[0] == '"' && a[la - 1] == '"')
        a++, la -= 2;
    if (lb >= 2 && b[0] == '"' && b[lb - 1] == '"')
        b++, lb -= 2;
    return la > 0 && la == lb && memcmp(a, b, la) == 0;
}

/* Records path's digest for its version etag (best effort: without it
   the file is hashed at each get, as one put by other means). */
static void digest_put(s3store *s, tf__s3 *h, const char *path, const char *etag,
                       const uint8_t digest[TF_DIGEST_SIZE])
{
    char key[TF_S3_KEY_MAX + 1], text[TF_S3_ID_MAX + 2 * TF_DIGEST_SIZE + 4];
    tf__err e = {{0}};
    if (!etag[0] || digest_key(s, path, key, &e) != TF_OK)
        return;
    char hx[2 * TF_DIGEST_SIZE + 1];
    hex(digest, TF_DIGEST_SIZE, hx);
    int n = snprintf(text, sizeof text, "%s\n%s\n", etag, hx);
    tf__s3_body body = {.buf = text, .len = (size_t)n};
    tf__s3_put(h, key, &body, NULL, 0, &e);
}

static void digest_drop(s3store *s, tf__s3 *h, const char *path)
{
    char key[TF_S3_KEY_MAX + 1];
    tf__err e = {{0}};
    if (digest_key(s, path, key, &e) == TF_OK)
        tf__s3_delete(h, key, &e);
}

/* path's recorded digest: 1 when there is one for the version etag. */
static int digest_get(s3store *s, tf__s3 *h, const char *path, const char *etag,
                      uint8_t digest[TF_DIGEST_SIZE])
{
    char key[TF_S3_KEY_MAX + 1], text[TF_S3_ID_MAX + 2 * TF_DIGEST_SIZE + 4];
    size_t got = 0;
    tf__err e = {{0}};
    if (digest_key(s, path, key, &e) != TF_OK ||
        tf__s3_get(h, key, 0, sizeof text - 1, text, &got, &e) != TF_OK || got == 0)
        return 0;
    text[got] = '\0';
    char *nl = strchr(text, '\n');
    if (!nl)
        return 0;
    *nl = '\0';
    char *hx = nl + 1, *end = strchr(hx, '\n');
    if (end)
        *end = '\0';
    return same_etag(text, etag) && unhex(hx, digest, TF_DIGEST_SIZE) == 0;
}

/* ---- reading ---------------------------------------------------------- */

/* Up to want bytes of the budget (at least RA_MIN): how many, or 0. */
static size_t budget_take(ra_budget *b, size_t want)
{
    pthread_mutex_lock(&b->mu);
    size_t left = RA_BUDGET - b->used;
    size_t n = left < want ? left : want;
    if (n < RA_MIN)
        n = 0;
    b->used += n;
    pthread_mutex_unlock(&b->mu);
    return n;
}

static void budget_give(ra_budget *b, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&b->mu);
    b->used -= n;
    pthread_mutex_unlock(&b->mu);
}

static void budget_unref(ra_budget *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    int last = --b->refs == 0;
    pthread_mutex_unlock(&b->mu);
    if (last) {
        pthread_mutex_destroy(&b->mu);
        free(b);
    }
}

size_t tf__storage_s3_readahead_held(tf__storage *st)
{
    ra_budget *b = S(st)->budget;
    pthread_mutex_lock(&b->mu);
    size_t n = b->used;
    pthread_mutex_unlock(&b->mu);
    return n;
}

static void reader_free(s3store *s, reader *r)
{
    budget_give(s->budget, r->ra_charged);
    free(r->ra);
    free(r);
}

static reader *reader_at(s3store *s, int fd)
{
    pthread_mutex_lock(&s->mu);
    reader *r = fd >= 0 && (size_t)fd < s->n_readers ? s->readers[fd] : NULL;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static int s_open_read(tf__storage *st, const char *name, int *fd, uint64_t *size,
                       uint64_t id[TF_STORAGE_ID_LEN], tf__err *e)
{
    s3store *s = S(st);
    *fd = -1;
    reader *r = calloc(1, sizeof *r);
    if (!r)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    int rc = file_key(s, r->key, name, e);
    tf__s3 *h = rc == TF_OK ? take_s3(s, e) : NULL;
    tf__s3_info info;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    if (rc == TF_OK && !(r->ra = malloc(OPEN_AHEAD)))
        rc = tf__fail(e, TF_ENOMEM, "out of memory");
    r->ra_cap = OPEN_AHEAD;
    if (rc == TF_OK)
        rc = tf__s3_get_head(h, r->key, OPEN_AHEAD, r->ra, &r->ra_len, &info, e);
    if (rc != TF_OK) {
        give_s3(s, h);
        free(r->ra);
        free(r);
        return rc;
    }
    r->size = info.size;
    version_of(&info, r->id);
    const char *d = tf__s3_head_meta(&info, "xxh3");
    r->has_digest = d && unhex(d, r->digest, TF_DIGEST_SIZE) == 0;
    /* Completed in place (a multipart ETag, "...-N"): its digest beside. */
    if (!r->has_digest && strchr(info.etag, '-'))
        r->has_digest = digest_get(s, h, name, info.etag, r->digest);
    give_s3(s, h);
    /* A slot in the table: its index is the handle. */
    pthread_mutex_lock(&s->mu);
    size_t i = 0;
    while (i < s->n_readers && s->readers[i])
        i++;
    if (i == s->n_readers) {
        reader **grown = realloc(s->readers, (s->n_readers + 16) * sizeof *grown);
        if (grown) {
            memset(grown + s->n_readers, 0, 16 * sizeof *grown);
            s->readers = grown;
            s->n_readers += 16;
        }
    }
    int ok = i < s->n_readers;
    if (ok)
        s->readers[i] = r;
    pthread_mutex_unlock(&s->mu);
    if (!ok) {
        free(r);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    *fd = (int)i;
    *size = r->size;
    memcpy(id, r->id, sizeof r->id);
    return TF_OK;
}

static void s_close_read(tf__storage *st, int fd)
{
    s3store *s = S(st);
    pthread_mutex_lock(&s->mu);
    reader *r = fd >= 0 && (size_t)fd < s->n_readers ? s->readers[fd] : NULL;
    if (r)
        s->readers[fd] = NULL;
    pthread_mutex_unlock(&s->mu);
    if (r)
        reader_free(s, r);
}

static ssize_t s_read_at(tf__storage *st, int fd, void *buf, size_t len, uint64_t off)
{
    s3store *s = S(st);
    reader *r = reader_at(s, fd);
    if (!r) {
        errno = EBADF;
        return -1;
    }
    if (off >= r->size || len == 0)
        return 0;
    if (off < r->ra_off || off >= r->ra_off + r->ra_len) {
        /* A ranged GET of the read-ahead from off (a large read goes
           straight to the caller's buffer). */
        uint64_t want = r->size - off;
        tf__err e = {{0}};
        tf__s3 *h = take_s3(s, &e);
        if (!h) {
            errno = EIO;
            return -1;
        }
        size_t got = 0;
        int rc;
        if (r->ra_cap < READ_AHEAD && !r->ra_charged && len < READ_AHEAD) {
            size_t lent = budget_take(s->budget, want < READ_AHEAD ? (size_t)want : READ_AHEAD);
            uint8_t *big = lent ? malloc(lent) : NULL;
            if (big) {
                free(r->ra);
                r->ra = big;
                r->ra_cap = lent;
                r->ra_charged = lent;
                r->ra_len = 0;
            } else {
                budget_give(s->budget, lent);
            }
        }
        if (len >= r->ra_cap) {
            /* No read-ahead (a large read, or the budget spent): the
               session's buffer is the only one. */
            rc = tf__s3_get(h, r->key, off, want < len ? (size_t)want : len, buf, &got, &e);
            give_s3(s, h);
            if (rc != TF_OK) {
                errno = rc == TF_ENOENT ? ESTALE : EIO;
                return -1;
            }
            return (ssize_t)got;
        }
        rc = tf__s3_get(h, r->key, off, want < r->ra_cap ? (size_t)want : r->ra_cap, r->ra,
                        &got, &e);
        give_s3(s, h);
        if (rc != TF_OK) {
            errno = rc == TF_ENOENT ? ESTALE : EIO;
            return -1;
        }
        r->ra_off = off;
        r->ra_len = got;
        if (got == 0)
            return 0; /* shorter than it was */
    }
    size_t at = (size_t)(off - r->ra_off);
    size_t n = r->ra_len - at < len ? r->ra_len - at : len;
    memcpy(buf, r->ra + at, n);
    return (ssize_t)n;
}

static int s_hash_range(tf__storage *st, int fd, tf__upload *up, uint64_t from, uint64_t len,
                        tf__digest *d, uint8_t *buf, size_t buf_len, tf__err *e)
{
    if (up) {
        /* A resumed upload's parts: the digest saved with them stands for
           the whole prefix, taken at its first slice; the others are
           already in it. */
        if (from + len > up->saved_bytes || !up->saved_state)
            return tf__fail(e, TF_EINTERNAL, "hashing past a resumed upload's parts");
        if (from == 0 && tf__digest_restore(d, up->saved_state, up->saved_len) != TF_OK)
            return tf__fail(e, TF_EIO, "the resumed upload's digest cannot be restored");
        return TF_OK;
    }
    uint64_t off = from, end = from + len;
    while (off < end) {
        size_t want = end - off < buf_len ? (size_t)(end - off) : buf_len;
        ssize_t n = s_read_at(st, fd, buf, want, off);
        if (n < 0)
            return tf__fail_errno(e, TF_EIO, errno, "reading the object failed");
        if (n == 0)
            return tf__fail(e, TF_EIO, "the object is shorter than expected");
        tf__digest_update(d, buf, (size_t)n);
        off += (uint64_t)n;
    }
    return TF_OK;
}

static int s_digest_load(tf__storage *st, int fd, const uint64_t id[TF_STORAGE_ID_LEN],
                         uint8_t out[TF_DIGEST_SIZE])
{
    reader *r = reader_at(S(st), fd);
    if (!r || !r->has_digest || memcmp(id, r->id, sizeof r->id) != 0)
        return 0;
    memcpy(out, r->digest, TF_DIGEST_SIZE);
    return 1;
}

/* The digest is stored with the object when it is put (x-amz-meta-xxh3);
   one put by other means is hashed at each get. Storing it afterwards
   would mean copying the object onto itself, a new version. */
static void s_digest_store(tf__storage *st, int fd, const uint8_t digest[TF_DIGEST_SIZE],
                           const uint64_t id[TF_STORAGE_ID_LEN])
{
    (void)st;
    (void)fd;
    (void)digest;
    (void)id;
}

/* ---- writing ---------------------------------------------------------- */

static int s_check_target(tf__storage *st, const char *name, int overwrite, tf__err *e)
{
    s3store *s = S(st);
    char key[TF_S3_KEY_MAX + 1];
    int rc = file_key(s, key, name, e);
    if (rc != TF_OK)
        return rc;
    tf__s3 *h = take_s3(s, e);
    if (!h)
        return TF_EIO;
    tf__s3_info info;
    tf__err mine = {{0}};
    rc = tf__s3_head(h, key, &info, &mine);
    any a;
    if (rc == TF_OK && !overwrite)
        rc = tf__fail(e, TF_EEXIST, "\"%s\" already exists", name);
    else if (rc == TF_OK || rc == TF_ENOENT)
        rc = dir_probe(s, h, name, &a, e) == TF_OK && a.n > 0
                 ? tf__fail(e, TF_EACCES, "\"%s\" is a directory, not a regular file", name)
                 : TF_OK;
    else
        rc = tf__fail(e, rc, "%s", mine.msg);
    give_s3(s, h);
    return rc;
}

static tf__upload *new_upload(tf__err *e)
{
    tf__upload *up = calloc(1, sizeof *up);
    if (!up) {
        tf__fail(e, TF_ENOMEM, "out of memory");
        return NULL;
    }
    if (tf__digest_begin(&up->digest, 1) != TF_OK) {
        free(up);
        tf__fail(e, TF_ENOMEM, "out of memory");
        return NULL;
    }
    return up;
}

static void free_upload(tf__upload *up)
{
    tf__digest_end(&up->digest);
    free(up->parts);
    free(up->buf);
    free(up->saved_state);
    free(up);
}

static int s_stage(tf__storage *st, tf__upload **out, tf__err *e)
{
    s3store *s = S(st);
    *out = NULL;
    tf__upload *up = new_upload(e);
    if (!up)
        return TF_ENOMEM;
    uint8_t rnd[12];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, rnd, sizeof rnd) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)sizeof rnd) {
        free_upload(up);
        return tf__fail(e, TF_EIO, "no random bytes for a staging name");
    }
    char name[2 * sizeof rnd + 1];
    hex(rnd, sizeof rnd, name);
    char rel[64];
    snprintf(rel, sizeof rel, "%s/u/%s", TF_TMP_DIR, name);
    int rc = key_for(s, up->stage_key, rel, "", e);
    if (rc != TF_OK) {
        free_upload(up);
        return rc;
    }
    *out = up;
    return TF_OK;
}

static int s_stage_named(tf__storage *st, const char *name, tf__upload **out, tf__err *e)
{
    s3store *s = S(st);
    *out = NULL;
    tf__upload *up = new_upload(e);
    if (!up)
        return TF_ENOMEM;
    int rc = file_key(s, up->stage_key, name, e);
    if (rc != TF_OK) {
        free_upload(up);
        return rc;
    }
    up->in_place = 1;
    *out = up;
    return TF_OK;
}

/* The state object of a resumable upload: its digest after its parts. */
static int state_key(s3store *s, const tf__upload *up, char *out, tf__err *e)
{
    char rel[128];
    snprintf(rel, sizeof rel, "%s/p/%s.state", TF_TMP_DIR, up->stem);
    return key_for(s, out, rel, "", e);
}

/* Saves what a resumed upload needs: "BYTES PARTS\n" and the digest of
   those bytes (state, n bytes of tf__digest_save; NULL: up's own now).
   Reads only up's stem and, without state, its digest. */
static int save_state(s3store *s, tf__s3 *h, tf__upload *up, uint64_t written, size_t parts,
                      const uint8_t *state, size_t n, tf__err *e)
{
    uint8_t blob[64 + TF_DIGEST_STATE_MAX];
    int head = snprintf((char *)blob, 64, "%" PRIu64 " %zu\n", written, parts);
    if (state && n <= TF_DIGEST_STATE_MAX)
        memcpy(blob + head, state, n);
    else
        n = tf__digest_save(&up->digest, blob + head, sizeof blob - (size_t)head);
    if (n == 0)
        return tf__fail(e, TF_EINTERNAL, "cannot save the upload's digest");
    char key[TF_S3_KEY_MAX + 1];
    int rc = state_key(s, up, key, e);
    tf__s3_body body = {.buf = blob, .len = (size_t)head + n};
    if (rc == TF_OK)
        rc = tf__s3_put(h, key, &body, NULL, 0, e);
    return rc;
}

/* Sends the buffer as the next part, starting the multipart upload first
   when there is none. */
static int flush_part(s3store *s, tf__s3 *h, tf__upload *up, tf__err *e)
{
    int rc = TF_OK;
    if (!up->upload_id[0])
        rc = tf__s3_mpu_create(h, up->stage_key, NULL, 0, up->upload_id, e);
    if (rc != TF_OK)
        return rc;
    if (up->n_parts == MAX_PARTS)
        return tf__fail(e, TF_ETOOBIG, "the upload is over %d parts of %zu bytes", MAX_PARTS,
                        PART_SIZE);
    tf__s3_part *grown = realloc(up->parts, (up->n_parts + 1) * sizeof *grown);
    if (!grown)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    up->parts = grown;
    tf__s3_part *p = &up->parts[up->n_parts];
    memset(p, 0, sizeof *p);
    p->number = (unsigned)up->n_parts + 1;
    p->size = up->buf_len;
    tf__s3_body body = {.buf = up->buf, .len = up->buf_len};
    rc = tf__s3_mpu_part(h, up->stage_key, up->upload_id, p->number, &body, p->etag, e);
    if (rc != TF_OK)
        return rc;
    up->n_parts++;
    up->buf_len = 0;
    if (up->resumable)
        rc = save_state(s, h, up, up->written, up->n_parts, NULL, 0, e);
    return rc;
}

static void *send_part(void *arg)
{
    flying_part *f = arg;
    tf__s3 *h = take_s3(f->s, &f->e);
    tf__s3_body body = {.buf = f->buf, .len = PART_SIZE};
    f->rc = h ? tf__s3_mpu_part(h, f->key, f->upload_id, f->number, &body, f->etag, &f->e)
              : TF_EIO;
    /* The state at once, while the store answers: two threads may save
       theirs out of order, which resume takes (the parts past the state's
       are sent again). */
    if (f->rc == TF_OK && f->up->resumable)
        f->rc = save_state(f->s, h, f->up, f->written, f->number, f->state, f->state_len,
                           &f->e);
    give_s3(f->s, h);
    pthread_mutex_lock(&f->s->mu);
    f->s->parts_flying--;
    pthread_mutex_unlock(&f->s->mu);
    return NULL;
}

/* Waits for the oldest part in flight and records it; its error is the
   upload's. */
static int finish_part(s3store *s, tf__upload *up, tf__err *e)
{
    flying_part *f = up->flying[0];
    memmove(up->flying, up->flying + 1, --up->n_flying * sizeof *up->flying);
    pthread_join(f->thread, NULL);
    int rc = f->rc;
    if (rc != TF_OK)
        tf__fail(e, rc, "%s", f->e.msg);
    /* After a part that failed, none is recorded: the parts stay 1..n. */
    else if (f->number != up->n_parts + 1)
        rc = tf__fail(e, TF_EIO, "part %u of the upload was not stored", f->number - 1);
    tf__s3_part *grown = NULL;
    if (rc == TF_OK && !(grown = realloc(up->parts, (up->n_parts + 1) * sizeof *grown)))
        rc = tf__fail(e, TF_ENOMEM, "out of memory");
    if (rc == TF_OK) {
        up->parts = grown;
        up->parts[up->n_parts] = (tf__s3_part){.number = f->number, .size = PART_SIZE};
        memcpy(up->parts[up->n_parts].etag, f->etag, sizeof f->etag);
        up->n_parts++;
    }
    if (rc == TF_EIO)
        up->store_failed = 1;
    budget_give(s->budget, PART_SIZE);
    free(f->buf);
    free(f);
    return rc;
}

/* Waits for every part in flight: the first error, if any. */
static int land_parts(s3store *s, tf__upload *up, tf__err *e)
{
    int rc = TF_OK;
    while (up->n_flying > 0) {
        tf__err mine = {{0}};
        int r = finish_part(s, up, &mine);
        if (r != TF_OK && rc == TF_OK)
            rc = tf__fail(e, r, "%s", mine.msg);
    }
    return rc;
}

/* Sends the full buffer as the next part in the background: 1 when it
   went, 0 when it is to be sent while the caller waits (no budget, no
   thread, the last part allowed), or an error. */
static int fly_part(s3store *s, tf__upload *up, tf__err *e)
{
    int rc = TF_OK;
    if (up->n_flying == PARTS_AHEAD && (rc = finish_part(s, up, e)) != TF_OK)
        return rc;
    if (up->n_parts + up->n_flying + 1 >= MAX_PARTS)
        return 0;
    if (!up->upload_id[0]) {
        tf__s3 *h = take_s3(s, e);
        rc = h ? tf__s3_mpu_create(h, up->stage_key, NULL, 0, up->upload_id, e) : TF_EIO;
        give_s3(s, h);
        if (rc != TF_OK)
            return rc;
    }
    flying_part *f = calloc(1, sizeof *f);
    size_t lent = f ? budget_take(s->budget, PART_SIZE) : 0;
    if (lent < PART_SIZE) {
        budget_give(s->budget, lent);
        free(f);
        return 0;
    }
    *f = (flying_part){.s = s, .up = up, .key = up->stage_key, .upload_id = up->upload_id,
                       .number = (unsigned)(up->n_parts + up->n_flying + 1), .buf = up->buf,
                       .written = up->written};
    if (up->resumable)
        f->state_len = tf__digest_save(&up->digest, f->state, sizeof f->state);
    pthread_mutex_lock(&s->mu);
    s->parts_flying++;
    if (s->parts_flying > s->parts_flying_max)
        s->parts_flying_max = s->parts_flying;
    pthread_mutex_unlock(&s->mu);
    if (pthread_create(&f->thread, NULL, send_part, f) != 0) {
        pthread_mutex_lock(&s->mu);
        s->parts_flying--;
        pthread_mutex_unlock(&s->mu);
        budget_give(s->budget, PART_SIZE);
        free(f);
        return 0;
    }
    up->flying[up->n_flying++] = f;
    up->buf = NULL;
    up->buf_len = 0;
    return 1;
}

size_t tf__storage_s3_parts_overlap(tf__storage *st)
{
    s3store *s = S(st);
    pthread_mutex_lock(&s->mu);
    size_t n = s->parts_flying_max;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int s_write(tf__storage *st, tf__upload *up, const void *p, size_t n, tf__err *e)
{
    s3store *s = S(st);
    const uint8_t *in = p;
    if (!up->buf && !(up->buf = malloc(PART_SIZE)))
        return tf__fail(e, TF_ENOMEM, "out of memory");
    while (n > 0) {
        size_t k = PART_SIZE - up->buf_len < n ? PART_SIZE - up->buf_len : n;
        memcpy(up->buf + up->buf_len, in, k);
        tf__digest_update(&up->digest, in, k);
        up->buf_len += k;
        up->written += k;
        in += k;
        n -= k;
        if (up->buf_len == PART_SIZE) {
            int rc = fly_part(s, up, e);
            if (rc == 0 && (rc = land_parts(s, up, e)) == TF_OK) {
                tf__s3 *h = take_s3(s, e);
                rc = h ? flush_part(s, h, up, e) : TF_EIO;
                give_s3(s, h);
            }
            if (rc < 0) {
                up->store_failed = rc == TF_EIO;
                return rc;
            }
            if (!up->buf && !(up->buf = malloc(PART_SIZE)))
                return tf__fail(e, TF_ENOMEM, "out of memory");
        }
    }
    return TF_OK;
}

static void unbusy(s3store *s, const char *stem)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_busy; i++)
        if (strcmp(s->busy[i], stem) == 0) {
            free(s->busy[i]);
            s->busy[i] = s->busy[--s->n_busy];
            break;
        }
    pthread_mutex_unlock(&s->mu);
}

/* Drops an upload's multipart upload and state, and the upload. */
static void drop(s3store *s, tf__upload *up)
{
    tf__err e = {{0}};
    land_parts(s, up, &e);
    tf__s3 *h = take_s3(s, &e);
    if (h && up->upload_id[0])
        tf__s3_mpu_abort(h, up->stage_key, up->upload_id, &e);
    char key[TF_S3_KEY_MAX + 1];
    if (h && up->resumable && state_key(s, up, key, &e) == TF_OK)
        tf__s3_delete(h, key, &e);
    give_s3(s, h);
    if (up->resumable)
        unbusy(s, up->stem);
    free_upload(up);
}

/* The metadata every published object carries: its digest and its time
   (seconds, or "SEC.NSEC"), which stat and list report. */
typedef struct pub_meta {
    char digest[2 * TF_DIGEST_SIZE + 1];
    char mtime[48];
    tf__s3_meta meta[2];
} pub_meta;

static void pub_meta_init(pub_meta *m, const uint8_t digest[TF_DIGEST_SIZE], int64_t sec,
                          uint32_t nsec)
{
    hex(digest, TF_DIGEST_SIZE, m->digest);
    format_mtime(m->mtime, sec, nsec);
    m->meta[0] = (tf__s3_meta){"xxh3", m->digest};
    m->meta[1] = (tf__s3_meta){"mtime", m->mtime};
}

/* An object's time: its x-amz-meta-mtime when it has one (set by a put
   with a time, or set_mtime), else when the store last wrote it. */
static void object_mtime(const tf__s3_info *h, int64_t *sec, uint32_t *nsec)
{
    *sec = h->mtime;
    *nsec = 0;
    const char *m = tf__s3_head_meta(h, "mtime");
    if (!m)
        return;
    char *end;
    errno = 0;
    long long v = strtoll(m, &end, 10);
    if (errno || end == m || (*end && *end != '.'))
        return;
    unsigned long ns = 0;
    if (*end == '.') {
        char *e2;
        ns = strtoul(end + 1, &e2, 10);
        if (*e2 || e2 - (end + 1) != 9 || ns > 999999999ul)
            return;
    }
    *sec = (int64_t)v;
    *nsec = (uint32_t)ns;
}

/* Checks c's condition on key before publishing: *if_match gets what the
   store is to check again at the PUT ("*": still absent; an ETag: still
   that version), so that for a single PUT check and publish are one step. */
static int precondition(tf__s3 *h, const char *key, const char *name,
                        const tf__commit_cond *c, char *if_match, tf__err *e)
{
    if_match[0] = '\0';
    if (!c->expect_id && c->overwrite)
        return TF_OK;
    tf__s3_info info;
    tf__err mine = {{0}};
    int rc = tf__s3_head(h, key, &info, &mine);
    if (rc != TF_OK && rc != TF_ENOENT)
        return tf__fail(e, rc, "%s", mine.msg);
    if (c->expect_id) {
        uint64_t id[TF_STORAGE_ID_LEN];
        if (rc == TF_ENOENT)
            return tf__fail(e, TF_ECONFLICT,
                            "\"%s\" changed while it was uploaded (it is gone); not stored",
                            name);
        version_of(&info, id);
        if (memcmp(id, c->expect_id, sizeof id) != 0)
            return tf__fail(e, TF_ECONFLICT, "\"%s\" changed while it was uploaded; not stored",
                            name);
        snprintf(if_match, TF_S3_ID_MAX, "%s", info.etag);
        return TF_OK;
    }
    if (rc == TF_OK)
        return tf__fail(e, TF_EEXIST, "\"%s\" already exists", name);
    snprintf(if_match, TF_S3_ID_MAX, "*");
    return TF_OK;
}

static void s_keep(tf__storage *st, tf__upload **upp);

/* Publishes up as name under c: a single PUT (conditional on the store's
   side: If-None-Match / If-Match), or a multipart upload completed and
   copied onto its name (the store cannot make a copy conditional: the
   check and the copy are one step only among this server's commits). */
static int commit_with(s3store *s, tf__upload **upp, const char *name,
                       const tf__commit_cond *c, tf__err *e)
{
    tf__upload *up = *upp;
    *upp = NULL;
    if (!up)
        return tf__fail(e, TF_EINTERNAL, "no upload to commit");
    char key[TF_S3_KEY_MAX + 1], if_match[TF_S3_ID_MAX];
    int rc = land_parts(s, up, e);
    if (rc != TF_OK && up->resumable && up->store_failed) {
        s_keep(&s->base, &up); /* its good parts stay for the retry */
        return rc;
    }
    if (rc == TF_OK)
        rc = file_key(s, key, name, e);
    tf__s3 *h = rc == TF_OK ? take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    uint8_t digest[TF_DIGEST_SIZE];
    tf__digest_final(&up->digest, digest);
    pub_meta m;
    pub_meta_init(&m, digest, c->set_mtime ? c->mtime_sec : (int64_t)time(NULL),
                  c->set_mtime ? c->mtime_nsec : 0);
    if (rc == TF_OK && !up->upload_id[0]) {
        rc = precondition(h, key, name, c, if_match, e);
        tf__s3_body body = {.buf = up->buf ? up->buf : (const uint8_t *)"", .len = up->buf_len};
        tf__err mine = {{0}};
        if (rc == TF_OK)
            rc = tf__s3_put_if(h, key, &body, m.meta, 2, if_match[0] ? if_match : NULL, &mine);
        /* The store's 412: it changed (or appeared) since the check. */
        if (rc == TF_EEXIST && c->expect_id)
            rc = tf__fail(e, TF_ECONFLICT, "\"%s\" changed while it was uploaded; not stored",
                          name);
        else if (rc == TF_EEXIST)
            rc = tf__fail(e, TF_EEXIST, "\"%s\" already exists", name);
        else if (rc != TF_OK && mine.msg[0])
            rc = tf__fail(e, rc, "%s", mine.msg);
    } else if (rc == TF_OK && up->in_place) {
        /* Completing publishes it: the check and the completion are one
           step among this server's commits, as a copy's below. */
        char etag[TF_S3_ID_MAX];
        if (strcmp(key, up->stage_key) != 0)
            rc = tf__fail(e, TF_EINTERNAL, "an upload staged for another name committed as "
                                           "\"%s\"", name);
        if (rc == TF_OK && up->buf_len > 0)
            rc = flush_part(s, h, up, e);
        if (rc == TF_OK) {
            pthread_mutex_lock(&s->commit_mu);
            rc = precondition(h, key, name, c, if_match, e);
            if (rc == TF_OK)
                rc = tf__s3_mpu_complete(h, key, up->upload_id, up->parts, up->n_parts, etag,
                                         e);
            pthread_mutex_unlock(&s->commit_mu);
        }
        if (rc == TF_OK) {
            up->upload_id[0] = '\0'; /* completed: nothing to abort */
            /* A time of the client's is metadata: that needs the copy. */
            if (c->set_mtime)
                rc = tf__s3_copy_meta(h, key, key, m.meta, 2, e);
            else
                digest_put(s, h, name, etag, digest);
        }
    } else if (rc == TF_OK) {
        if (up->buf_len > 0)
            rc = flush_part(s, h, up, e);
        if (rc == TF_OK)
            rc = tf__s3_mpu_complete(h, up->stage_key, up->upload_id, up->parts, up->n_parts,
                                     NULL, e);
        if (rc == TF_OK) {
            up->upload_id[0] = '\0'; /* completed: nothing to abort */
            pthread_mutex_lock(&s->commit_mu);
            rc = precondition(h, key, name, c, if_match, e);
            if (rc == TF_OK)
                rc = tf__s3_copy_meta(h, up->stage_key, key, m.meta, 2, e);
            pthread_mutex_unlock(&s->commit_mu);
            tf__err ignored = {{0}};
            tf__s3_delete(h, up->stage_key, &ignored);
        }
    }
    give_s3(s, h);
    drop(s, up);
    return rc;
}

static int s_commit(tf__storage *st, tf__upload **upp, const char *name, int overwrite,
                    tf__err *e)
{
    tf__commit_cond c = {.overwrite = overwrite};
    return commit_with(S(st), upp, name, &c, e);
}

static int s_commit_cond(tf__storage *st, tf__upload **upp, const char *name,
                         const tf__commit_cond *c, tf__err *e)
{
    return commit_with(S(st), upp, name, c, e);
}

/* A new time is new metadata, and S3 changes an object's metadata only by
   copying it onto itself (its bytes stay; its ETag too, for one put
   whole). */
static int s_set_mtime(tf__storage *st, const char *path, int64_t sec, uint32_t nsec,
                       tf__err *e)
{
    s3store *s = S(st);
    char key[TF_S3_KEY_MAX + 1];
    int rc = file_key(s, key, path, e);
    if (rc != TF_OK)
        return rc;
    if (nsec > 999999999u)
        return tf__fail(e, TF_EINVAL, "a time with %u nanoseconds", (unsigned)nsec);
    tf__s3 *h = take_s3(s, e);
    if (!h)
        return TF_EIO;
    tf__s3_info info;
    rc = tf__s3_head(h, key, &info, e);
    if (rc == TF_OK) {
        char mtime[48];
        format_mtime(mtime, sec, nsec);
        /* Every other pair kept as it was (the digest first of all). */
        tf__s3_meta meta[TF_S3_META_MAX + 1];
        size_t n = 0;
        for (size_t i = 0; i < info.n_meta; i++)
            if (strcmp(info.meta[i].name, "mtime") != 0)
                meta[n++] = (tf__s3_meta){info.meta[i].name, info.meta[i].value};
        meta[n++] = (tf__s3_meta){"mtime", mtime};
        rc = tf__s3_copy_meta(h, key, key, meta, n, e);
    }
    give_s3(s, h);
    return rc;
}

/* A resumable upload cut short by the store (a part it could not take) is
   kept, not dropped: the parts before it are good, and the client's retry
   takes up from them once the store is back - from any server. */
static void s_abort(tf__storage *st, tf__upload **up)
{
    if (!*up)
        return;
    tf__err ignored = {{0}};
    land_parts(S(st), *up, &ignored); /* a part that failed sets store_failed */
    if ((*up)->resumable && (*up)->store_failed) {
        s_keep(st, up);
        return;
    }
    drop(S(st), *up);
    *up = NULL;
}

static void s_keep(tf__storage *st, tf__upload **upp)
{
    s3store *s = S(st);
    tf__upload *up = *upp;
    if (!up)
        return;
    *upp = NULL;
    tf__err ignored = {{0}};
    land_parts(s, up, &ignored);
    if (!up->resumable || up->n_parts == 0) {
        drop(s, up);
        return;
    }
    /* The parts stay, for any server to find; the tail in the buffer (less
       than a part) is sent again by the client. */
    unbusy(s, up->stem);
    free_upload(up);
}

typedef struct found_upload {
    const char *key;
    char id[TF_S3_ID_MAX];
    int n;
    tf__s3 *h; /* to abort the extra ones */
} found_upload;

static int find_mine(void *user, const char *key, const char *id, int64_t initiated)
{
    (void)initiated;
    found_upload *f = user;
    if (strcmp(key, f->key) != 0)
        return 0;
    if (f->n++ == 0) {
        snprintf(f->id, sizeof f->id, "%s", id);
    } else {
        tf__err e = {{0}};
        tf__s3_mpu_abort(f->h, key, id, &e); /* one upload per stem */
    }
    return 0;
}

/* Takes up a resumable upload left by any server: its parts must add up to
   what its state says; otherwise it is dropped and started again. */
static int resume(s3store *s, tf__s3 *h, tf__upload *up, tf__err *e)
{
    found_upload f = {.key = up->stage_key, .h = h};
    int rc = tf__s3_mpu_list(h, up->stage_key, find_mine, &f, e);
    if (rc != TF_OK || f.n == 0)
        return rc;
    char skey[TF_S3_KEY_MAX + 1];
    uint8_t blob[64 + TF_DIGEST_STATE_MAX + 1];
    size_t got = 0;
    tf__err mine = {{0}};
    rc = state_key(s, up, skey, e);
    if (rc == TF_OK && tf__s3_get(h, skey, 0, sizeof blob, blob, &got, &mine) != TF_OK)
        got = 0;
    up->parts = calloc(MAX_PARTS, sizeof *up->parts);
    if (rc == TF_OK && !up->parts)
        rc = tf__fail(e, TF_ENOMEM, "out of memory");
    size_t n = 0;
    if (rc == TF_OK)
        rc = tf__s3_mpu_parts(h, up->stage_key, f.id, up->parts, MAX_PARTS, &n, e);
    if (rc != TF_OK)
        return rc;
    uint64_t bytes = 0, state_bytes = 0;
    size_t state_parts = 0, whole = 0;
    int ok = got > 0 && got < sizeof blob;
    while (whole < n && up->parts[whole].number == whole + 1 &&
           up->parts[whole].size == PART_SIZE)
        whole++;
    char *nl = ok ? memchr(blob, '\n', got < 64 ? got : 64) : NULL;
    /* Parts after the state's were in flight when the upload was cut off
       (sent in the background): they are sent again, under the same
       numbers, and completing names only those recorded. */
    if (nl) {
        *nl = '\0';
        ok = sscanf((char *)blob, "%" SCNu64 " %zu", &state_bytes, &state_parts) == 2 &&
             state_parts > 0 && state_parts <= whole &&
             state_bytes == (uint64_t)state_parts * PART_SIZE;
        n = state_parts;
        bytes = state_bytes;
    } else {
        ok = 0;
    }
    if (ok) {
        size_t off = (size_t)(nl + 1 - (char *)blob);
        up->saved_len = got - off;
        up->saved_state = malloc(up->saved_len);
        ok = up->saved_state != NULL &&
             tf__digest_restore(&up->digest, blob + off, up->saved_len) == TF_OK;
        if (ok)
            memcpy(up->saved_state, blob + off, up->saved_len);
    }
    if (!ok) { /* a torn state (cut between a part and its state): anew */
        tf__err ignored = {{0}};
        tf__s3_mpu_abort(h, up->stage_key, f.id, &ignored);
        free(up->saved_state);
        up->saved_state = NULL;
        up->saved_len = 0;
        tf__digest_begin(&up->digest, 1);
        return TF_OK;
    }
    snprintf(up->upload_id, sizeof up->upload_id, "%s", f.id);
    up->n_parts = n;
    up->written = up->saved_bytes = bytes;
    return TF_OK;
}

static int s_stage_resumable(tf__storage *st, const char *stem, uint64_t size,
                             tf__upload **out, uint64_t *have, int *resumable, tf__err *e)
{
    s3store *s = S(st);
    *out = NULL;
    *have = 0;
    *resumable = 0;
    /* One part or less: a single PUT, nothing to keep when cut off. */
    if (size <= PART_SIZE || strlen(stem) >= sizeof((tf__upload *)0)->stem)
        return s_stage(st, out, e);
    pthread_mutex_lock(&s->mu);
    int busy = 0;
    for (size_t i = 0; i < s->n_busy; i++)
        busy |= strcmp(s->busy[i], stem) == 0;
    char **grown = busy ? NULL : realloc(s->busy, (s->n_busy + 1) * sizeof *grown);
    char *copy = grown ? strdup(stem) : NULL;
    if (grown)
        s->busy = grown;
    if (copy)
        s->busy[s->n_busy++] = copy;
    pthread_mutex_unlock(&s->mu);
    if (busy)
        return tf__fail(e, TF_EBUSY, "the upload is in progress on another connection");
    if (!copy)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    tf__upload *up = new_upload(e);
    if (!up) {
        unbusy(s, stem);
        return TF_ENOMEM;
    }
    up->resumable = 1;
    snprintf(up->stem, sizeof up->stem, "%s", stem);
    char rel[128];
    snprintf(rel, sizeof rel, "%s/p/%s", TF_TMP_DIR, stem);
    int rc = key_for(s, up->stage_key, rel, "", e);
    tf__s3 *h = rc == TF_OK ? take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    if (rc == TF_OK)
        rc = resume(s, h, up, e);
    give_s3(s, h);
    if (rc != TF_OK) {
        unbusy(s, stem);
        free_upload(up);
        return rc;
    }
    if (!up->upload_id[0]) {
        free(up->parts);
        up->parts = NULL;
        up->n_parts = 0;
    }
    *have = up->written;
    *resumable = 1;
    *out = up;
    return TF_OK;
}

/* ---- the tree --------------------------------------------------------- */

static int s_stat(tf__storage *st, const char *path, tf__fstat *out, tf__err *e)
{
    s3store *s = S(st);
    char key[TF_S3_KEY_MAX + 1];
    int rc = file_key(s, key, path, e);
    if (rc != TF_OK)
        return rc;
    tf__s3 *h = take_s3(s, e);
    if (!h)
        return TF_EIO;
    tf__s3_info info;
    tf__err mine = {{0}};
    rc = tf__s3_head(h, key, &info, &mine);
    if (rc == TF_OK) {
        out->type = TF__FT_FILE;
        out->size = info.size;
        object_mtime(&info, &out->mtime, &out->mtime_ns);
    } else if (rc == TF_ENOENT) {
        any a;
        rc = dir_probe(s, h, path, &a, e);
        if (rc == TF_OK && a.n > 0) {
            out->type = TF__FT_DIR;
            out->size = 0;
            out->mtime = 0;
            out->mtime_ns = 0;
        } else if (rc == TF_OK) {
            rc = tf__fail(e, TF_ENOENT, "no file named \"%s\"", path);
        }
    } else {
        rc = tf__fail(e, rc, "%s", mine.msg);
    }
    give_s3(s, h);
    return rc;
}

static int s_list_open(tf__storage *st, const char *dir, tf__lister **out, tf__err *e)
{
    s3store *s = S(st);
    *out = NULL;
    int at_root = dir[0] == '\0';
    int rc = at_root ? TF_OK : check_path(dir, e);
    if (rc != TF_OK)
        return rc;
    tf__lister *li = calloc(1, sizeof *li);
    if (!li)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    li->at_root = at_root;
    rc = key_for(s, li->prefix, dir, at_root ? "" : "/", e);
    if (rc == TF_OK && !at_root) {
        /* A directory that is not there is TF_ENOENT, as locally. */
        tf__fstat fs;
        rc = s_stat(st, dir, &fs, e);
        if (rc == TF_OK && fs.type != TF__FT_DIR)
            rc = tf__fail(e, TF_ENOENT, "\"%s\" is not a directory", dir);
    }
    if (rc != TF_OK) {
        free(li);
        return rc;
    }
    li->page.prefix = li->prefix;
    li->page.delimiter = "/";
    li->page.max_keys = TF_STORAGE_LIST_BATCH;
    *out = li;
    return TF_OK;
}

static int add_entry(void *user, const char *key, int is_prefix, uint64_t size, int64_t mtime)
{
    tf__lister *li = user;
    const char *name = key + strlen(li->prefix);
    size_t len = strlen(name);
    if (is_prefix && len > 0)
        len--; /* "dir/" */
    if (len == 0 || len >= sizeof li->batch[0].name || li->n == TF_STORAGE_LIST_BATCH)
        return 0; /* the directory's own marker, or too long */
    if (li->at_root && len == strlen(TF_TMP_DIR) && memcmp(name, TF_TMP_DIR, len) == 0)
        return 0;
    tf__dirent *d = &li->batch[li->n++];
    memcpy(d->name, name, len);
    d->name[len] = '\0';
    d->st.type = is_prefix ? TF__FT_DIR : TF__FT_FILE;
    d->st.size = is_prefix ? 0 : size;
    d->st.mtime = is_prefix ? 0 : mtime;
    d->st.mtime_ns = 0;
    return 0;
}

static int s_list_next(tf__storage *st, tf__lister *li, const tf__dirent **batch, size_t *n,
                       tf__err *e)
{
    s3store *s = S(st);
    *batch = li->batch;
    *n = 0;
    li->n = 0;
    tf__s3 *h = NULL;
    /* A page of at most a batch's entries; one whose entries were all
       skipped (markers, the staging directory) is followed by the next. */
    while (li->n == 0 && !li->done) {
        if (!h && !(h = take_s3(s, e)))
            return TF_EIO;
        int rc = tf__s3_list(h, &li->page, add_entry, li, e);
        if (rc != TF_OK) {
            give_s3(s, h);
            return rc;
        }
        li->done = li->page.token[0] == '\0';
    }
    /* A file's time may be in its metadata (a put with a time, set_mtime),
       which ListObjectsV2 does not return: one HEAD per file, so that a
       listing says what stat says (sync compares them). */
    for (size_t i = 0; i < li->n; i++) {
        tf__dirent *d = &li->batch[i];
        char key[TF_S3_KEY_MAX + 1];
        tf__s3_info info;
        tf__err ignored = {{0}};
        if (d->st.type == TF__FT_FILE &&
            snprintf(key, sizeof key, "%s%s", li->prefix, d->name) < (int)sizeof key &&
            tf__s3_head(h, key, &info, &ignored) == TF_OK)
            object_mtime(&info, &d->st.mtime, &d->st.mtime_ns);
    }
    give_s3(s, h);
    *n = li->n;
    return TF_OK;
}

static void s_list_close(tf__storage *st, tf__lister *li)
{
    (void)st;
    free(li);
}

static int s_remove(tf__storage *st, const char *path, tf__err *e)
{
    s3store *s = S(st);
    tf__fstat fs;
    int rc = s_stat(st, path, &fs, e);
    if (rc != TF_OK)
        return rc;
    char key[TF_S3_KEY_MAX + 1];
    rc = key_for(s, key, path, fs.type == TF__FT_DIR ? "/" : "", e);
    tf__s3 *h = rc == TF_OK ? take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    any a;
    if (rc == TF_OK && fs.type == TF__FT_DIR) {
        rc = dir_probe(s, h, path, &a, e);
        if (rc == TF_OK && a.other)
            rc = tf__fail(e, TF_ENOTEMPTY, "the directory \"%s\" is not empty", path);
    }
    if (rc == TF_OK)
        rc = tf__s3_delete(h, key, e);
    if (rc == TF_OK && fs.type == TF__FT_FILE)
        digest_drop(s, h, path);
    give_s3(s, h);
    return rc;
}

static int s_rename(tf__storage *st, const char *from, const char *to, unsigned flags,
                    tf__err *e)
{
    s3store *s = S(st);
    tf__fstat fs;
    char kfrom[TF_S3_KEY_MAX + 1], kto[TF_S3_KEY_MAX + 1];
    int rc = check_path(to, e);
    if (rc == TF_OK)
        rc = s_stat(st, from, &fs, e);
    if (rc == TF_OK && fs.type == TF__FT_DIR)
        rc = tf__fail(e, TF_EINVAL, "renaming a directory is not supported on S3 (\"%s\")",
                      from);
    if (rc == TF_OK)
        rc = key_for(s, kfrom, from, "", e);
    if (rc == TF_OK)
        rc = key_for(s, kto, to, "", e);
    if (rc != TF_OK)
        return rc;
    if (flags & TF_STORAGE_NOREPLACE) {
        tf__fstat ts;
        tf__err mine = {{0}};
        int trc = s_stat(st, to, &ts, &mine);
        if (trc == TF_OK)
            return tf__fail(e, TF_EEXIST, "\"%s\" already exists", to);
        if (trc != TF_ENOENT)
            return tf__fail(e, trc, "%s", mine.msg);
    }
    tf__s3 *h = take_s3(s, e);
    if (!h)
        return TF_EIO;
    /* Not atomic: both names exist between the two. */
    rc = tf__s3_copy(h, kfrom, kto, e);
    if (rc == TF_OK)
        rc = tf__s3_delete(h, kfrom, e);
    /* A digest kept beside goes along (used only if the copy kept the
       ETag it names); a stale one at `to` goes. */
    char dfrom[TF_S3_KEY_MAX + 1], dto[TF_S3_KEY_MAX + 1];
    tf__err ignored = {{0}};
    if (rc == TF_OK && digest_key(s, from, dfrom, &ignored) == TF_OK &&
        digest_key(s, to, dto, &ignored) == TF_OK &&
        tf__s3_copy(h, dfrom, dto, &ignored) == TF_ENOENT)
        tf__s3_delete(h, dto, &ignored);
    else if (rc == TF_OK)
        tf__s3_delete(h, dfrom, &ignored);
    give_s3(s, h);
    return rc;
}

static int s_mkdir(tf__storage *st, const char *path, tf__err *e)
{
    s3store *s = S(st);
    tf__fstat fs;
    tf__err mine = {{0}};
    int rc = check_path(path, e);
    if (rc != TF_OK)
        return rc;
    rc = s_stat(st, path, &fs, &mine);
    if (rc == TF_OK)
        return tf__fail(e, TF_EEXIST, "\"%s\" already exists", path);
    if (rc != TF_ENOENT)
        return tf__fail(e, rc, "%s", mine.msg);
    /* The parent must be there, as in a file system. */
    const char *slash = strrchr(path, '/');
    if (slash) {
        char parent[TF_S3_KEY_MAX + 1];
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
        tf__err_clear(&mine);
        rc = s_stat(st, parent, &fs, &mine);
        if (rc == TF_OK && fs.type != TF__FT_DIR)
            return tf__fail(e, TF_ENOENT, "\"%s\" is not a directory", parent);
        if (rc != TF_OK)
            return tf__fail(e, rc, "cannot create the directory \"%s\": %s", path, mine.msg);
    }
    char key[TF_S3_KEY_MAX + 1];
    rc = key_for(s, key, path, "/", e);
    tf__s3 *h = rc == TF_OK ? take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    tf__s3_body body = {.buf = "", .len = 0};
    if (rc == TF_OK)
        rc = tf__s3_put(h, key, &body, NULL, 0, e);
    give_s3(s, h);
    return rc;
}

/* ---- upkeep ----------------------------------------------------------- */

typedef struct sweep_ctx {
    s3store *s;
    tf__s3 *h;
    int all_plain;
    int64_t now;
    size_t prefix_len; /* the store's PREFIX */
} sweep_ctx;

/* Whether an upload's key (below the store's prefix) is a resumable one's,
   the store's or a view's: TF_TMP_DIR/p/... */
static int resumable_key(const char *rel)
{
    char mark[64];
    int n = snprintf(mark, sizeof mark, "%s/p/", TF_TMP_DIR);
    if (strncmp(rel, mark, (size_t)n) == 0)
        return 1;
    for (const char *at = strstr(rel, mark); at; at = strstr(at + 1, mark))
        if (at[-1] == '/')
            return 1;
    return 0;
}

static int sweep_one(void *user, const char *key, const char *id, int64_t initiated)
{
    sweep_ctx *c = user;
    tf__err e = {{0}};
    int plain = !resumable_key(key + c->prefix_len);
    int expired = c->s->cfg.resume_ttl_s > 0 && c->now - initiated > c->s->cfg.resume_ttl_s;
    /* Other servers may share the bucket: a plain upload is debris only
       when no server can still be sending it, an hour after it began. */
    int64_t age = c->s->cfg.stale_plain_s ? c->s->cfg.stale_plain_s : PLAIN_STALE_S;
    int stale = age < 0 || c->now - initiated > age;
    if ((plain && c->all_plain && stale) || expired) {
        tf__s3_mpu_abort(c->h, key, id, &e);
        if (!plain) {
            char state[TF_S3_KEY_MAX + 1];
            int n = snprintf(state, sizeof state, "%s.state", key);
            if (n > 0 && (size_t)n < sizeof state)
                tf__s3_delete(c->h, state, &e);
        }
    }
    return 0;
}

/* Aborts the plain uploads at start (those over an hour old: other
   servers over the same bucket may own the others) and the resumable ones
   older than the resume TTL (by their start: S3 keeps no time of the last
   part). Plain uploads staged in place are under their names, anywhere in
   the store: the whole prefix is listed. */
static void s_sweep(tf__storage *st, int all_plain)
{
    s3store *s = S(st);
    tf__err e = {{0}};
    tf__s3 *h = take_s3(s, &e);
    if (!h)
        return;
    sweep_ctx c = {s, h, all_plain, (int64_t)time(NULL), strlen(s->prefix)};
    tf__s3_mpu_list(h, s->prefix, sweep_one, &c, &e);
    give_s3(s, h);
}

static void s_close(tf__storage *st)
{
    s3store *s = S(st);
    if (!s)
        return;
    while (s->free_handles) {
        pooled *p = s->free_handles;
        s->free_handles = p->next;
        tf__s3_close(p->s3);
        free(p);
    }
    for (size_t i = 0; i < s->n_readers; i++)
        if (s->readers[i])
            reader_free(s, s->readers[i]);
    free(s->readers);
    budget_unref(s->budget);
    for (size_t i = 0; i < s->n_busy; i++)
        free(s->busy[i]);
    free(s->busy);
    free(s->prefix);
    free(s->endpoint);
    free(s->bucket);
    free(s->region);
    tf__s3_creds_free(s->access_key, s->secret_key);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->commit_mu);
    free(s);
}

static int s_sub(tf__storage *st, const char *dir, int create, tf__storage **child,
                 tf__err *e);

static const tf__storage_ops s3_ops = {
    .name = "s3",
    .open_read = s_open_read,
    .close_read = s_close_read,
    .read_at = s_read_at,
    .hash_range = s_hash_range,
    .digest_load = s_digest_load,
    .digest_store = s_digest_store,
    .check_target = s_check_target,
    .stage = s_stage,
    .stage_named = s_stage_named,
    .stage_resumable = s_stage_resumable,
    .write = s_write,
    .commit = s_commit,
    .abort = s_abort,
    .keep = s_keep,
    .stat = s_stat,
    .list_open = s_list_open,
    .list_next = s_list_next,
    .list_close = s_list_close,
    .remove = s_remove,
    .rename = s_rename,
    .mkdir = s_mkdir,
    .commit_cond = s_commit_cond,
    .set_mtime = s_set_mtime,
    .sub = s_sub,
    .sweep = s_sweep,
    .close = s_close,
};

static char *dup_or_null(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

int tf__storage_s3_open(tf__storage **out, const tf__storage_s3_config *cfg, tf__err *e)
{
    *out = NULL;
    if (!cfg->endpoint || !cfg->bucket)
        return tf__fail(e, TF_EINVAL, "an S3 store needs an endpoint and a bucket");
    s3store *s = calloc(1, sizeof *s);
    if (!s)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->commit_mu, NULL);
    if (cfg->shared_budget) {
        s->budget = cfg->shared_budget;
        pthread_mutex_lock(&s->budget->mu);
        s->budget->refs++;
        pthread_mutex_unlock(&s->budget->mu);
    } else if ((s->budget = calloc(1, sizeof *s->budget)) != NULL) {
        pthread_mutex_init(&s->budget->mu, NULL);
        s->budget->refs = 1;
    } else {
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->commit_mu);
        free(s);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    s->base.ops = &s3_ops;
    s->base.reserved = TF_TMP_DIR;
    s->base.read_handles = 1;
    s->base.network = 1; /* the session keeps every call off its loop */
    s->cfg = *cfg;
    int oom = 0;
    /* The prefix as "dir/" (or ""), whatever slashes it was given with. */
    const char *p = cfg->prefix ? cfg->prefix : "";
    while (*p == '/')
        p++;
    size_t plen = strlen(p);
    while (plen > 0 && p[plen - 1] == '/')
        plen--;
    s->prefix = malloc(plen + 2);
    if (s->prefix) {
        memcpy(s->prefix, p, plen);
        if (plen)
            s->prefix[plen++] = '/';
        s->prefix[plen] = '\0';
    } else {
        oom = 1;
    }
    s->endpoint = dup_or_null(cfg->endpoint, &oom);
    s->bucket = dup_or_null(cfg->bucket, &oom);
    s->region = dup_or_null(cfg->region, &oom);
    int rc = oom ? tf__fail(e, TF_ENOMEM, "out of memory") : TF_OK;
    if (rc == TF_OK && cfg->access_key && cfg->secret_key) {
        s->access_key = dup_or_null(cfg->access_key, &oom);
        s->secret_key = dup_or_null(cfg->secret_key, &oom);
        if (oom)
            rc = tf__fail(e, TF_ENOMEM, "out of memory");
    } else if (rc == TF_OK) {
        rc = tf__s3_creds_load(&s->access_key, &s->secret_key, e);
    }
    s->cfg.access_key = s->cfg.secret_key = NULL; /* the copies are ours */
    /* A first handle now: a bad endpoint fails here, not at the first
       request. */
    tf__s3 *h = rc == TF_OK ? take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EINVAL;
    give_s3(s, h);
    if (rc != TF_OK) {
        s_close(&s->base);
        return rc;
    }
    /* A component's longest name, within S3's 1024-byte keys. */
    size_t room = TF_S3_KEY_MAX - strlen(s->prefix) - 64;
    s->base.name_max = room < 255 ? room : 255;
    *out = &s->base;
    return TF_OK;
}

/* ---- views: a user's part is a key prefix ------------------------------ */

static int s_sub(tf__storage *st, const char *dir, int create, tf__storage **child,
                 tf__err *e)
{
    s3store *s = S(st);
    *child = NULL;
    int rc = check_path(dir, e);
    if (rc != TF_OK)
        return rc;
    /* Each missing component made (as mkdir -p), or the whole must be a
       directory already. */
    char part[TF_S3_KEY_MAX + 1];
    for (const char *p = dir; rc == TF_OK && create;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - dir) : strlen(dir);
        snprintf(part, sizeof part, "%.*s", (int)n, dir);
        tf__err mine = {{0}};
        rc = s_mkdir(st, part, &mine);
        if (rc == TF_EEXIST)
            rc = TF_OK;
        else if (rc != TF_OK)
            rc = tf__fail(e, rc, "%s", mine.msg);
        if (!slash)
            break;
        p = slash + 1;
    }
    tf__fstat fs;
    if (rc == TF_OK)
        rc = s_stat(st, dir, &fs, e);
    if (rc == TF_OK && fs.type != TF__FT_DIR)
        rc = tf__fail(e, TF_EACCES, "\"%s\" is not a directory", dir);
    char prefix[TF_S3_KEY_MAX + 1];
    if (rc == TF_OK)
        rc = key_for(s, prefix, dir, "", e);
    if (rc != TF_OK)
        return rc;
    tf__storage_s3_config c = s->cfg;
    c.endpoint = s->endpoint;
    c.bucket = s->bucket;
    c.region = s->region;
    c.prefix = prefix;
    c.access_key = s->access_key;
    c.secret_key = s->secret_key;
    c.shared_budget = s->budget; /* one budget for the whole server */
    return tf__storage_s3_open(child, &c, e);
}

int tf__storage_s3_check(tf__storage *st, tf__err *e)
{
    s3store *s = S(st);
    tf__s3 *h = take_s3(s, e);
    if (!h)
        return TF_EIO;
    tf__s3_page page = {.prefix = s->prefix, .max_keys = 1};
    any a = {.marker = ""}; /* counts what it finds; nothing is needed */
    int rc = tf__s3_list(h, &page, count_any, &a, e);
    give_s3(s, h);
    return rc;
}

int tf__storage_s3_open_url(tf__storage **out, const char *url,
                            const tf__storage_s3_config *base, tf__err *e)
{
    *out = NULL;
    if (strncmp(url, "s3://", 5) != 0 || url[5] == '\0' || url[5] == '/')
        return tf__fail(e, TF_EINVAL, "the store is s3://BUCKET or s3://BUCKET/PREFIX, not \"%s\"",
                        url);
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    char bucket[256];
    if (blen >= sizeof bucket)
        return tf__fail(e, TF_EINVAL, "the bucket name in \"%s\" is too long", url);
    memcpy(bucket, b, blen);
    bucket[blen] = '\0';
    tf__storage_s3_config c = *base;
    c.bucket = bucket;
    c.prefix = slash ? slash + 1 : "";
    if (!c.endpoint || !*c.endpoint)
        return tf__fail(e, TF_EINVAL, "serving %s needs the store's endpoint (--s3-endpoint "
                                      "URL, TF_SOPT_S3_ENDPOINT)", url);
    int rc = tf__storage_s3_open(out, &c, e);
    tf__err mine = {{0}};
    if (rc == TF_OK && (rc = tf__storage_s3_check(*out, &mine)) != TF_OK) {
        (*out)->ops->close(*out);
        *out = NULL;
        rc = tf__fail(e, rc, "%s", mine.msg);
    }
    return rc;
}
