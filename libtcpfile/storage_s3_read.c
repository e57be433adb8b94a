/*
 * storage_s3_read.c - reading an S3 store: read handles, their read-ahead
 * and the budget it is lent from (shared with the upload parts in flight).
 */
#include "storage_s3_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading ---------------------------------------------------------- */

/* Up to want bytes of the budget (at least RA_MIN): how many, or 0. */
size_t tf__s3s_budget_take(ra_budget *b, size_t want)
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

void tf__s3s_budget_give(ra_budget *b, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&b->mu);
    b->used -= n;
    pthread_mutex_unlock(&b->mu);
}

void tf__s3s_budget_unref(ra_budget *b)
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

void tf__s3s_reader_free(s3store *s, reader *r)
{
    tf__s3s_budget_give(s->budget, r->ra_charged);
    if (r->ra_charged) /* the read-ahead, mapped; else OPEN_AHEAD's malloc */
        tf__s3s_big_free(r->ra, r->ra_cap);
    else
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

int tf__s3s_open_read(tf__storage *st, const char *name, int *fd, uint64_t *size,
                      uint64_t id[TF_STORAGE_ID_LEN], tf__err *e)
{
    s3store *s = S(st);
    *fd = -1;
    reader *r = calloc(1, sizeof *r);
    if (!r)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    int rc = tf__s3s_file_key(s, r->key, name, e);
    tf__s3 *h = rc == TF_OK ? tf__s3s_take_s3(s, e) : NULL;
    tf__s3_info info;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    if (rc == TF_OK && !(r->ra = malloc(OPEN_AHEAD)))
        rc = tf__fail(e, TF_ENOMEM, "out of memory");
    r->ra_cap = OPEN_AHEAD;
    if (rc == TF_OK)
        rc = tf__s3_get_head(h, r->key, OPEN_AHEAD, r->ra, &r->ra_len, &info, e);
    if (rc != TF_OK) {
        tf__s3s_give_s3(s, h);
        free(r->ra);
        free(r);
        return rc;
    }
    r->size = info.size;
    tf__s3s_version_of(&info, r->id);
    const char *d = tf__s3_head_meta(&info, "xxh3");
    r->has_digest = d && tf__s3s_unhex(d, r->digest, TF_DIGEST_SIZE) == 0;
    /* Completed in place (a multipart ETag, "...-N") or streamed: its
       digest beside. */
    if (!r->has_digest && (strchr(info.etag, '-') || tf__s3_head_meta(&info, DIGEST_BESIDE)))
        r->has_digest = tf__s3s_digest_get(s, h, name, info.etag, r->digest);
    tf__s3s_give_s3(s, h);
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

void tf__s3s_close_read(tf__storage *st, int fd)
{
    s3store *s = S(st);
    pthread_mutex_lock(&s->mu);
    reader *r = fd >= 0 && (size_t)fd < s->n_readers ? s->readers[fd] : NULL;
    if (r)
        s->readers[fd] = NULL;
    pthread_mutex_unlock(&s->mu);
    if (r)
        tf__s3s_reader_free(s, r);
}

ssize_t tf__s3s_read_at(tf__storage *st, int fd, void *buf, size_t len, uint64_t off)
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
        tf__s3 *h = tf__s3s_take_s3(s, &e);
        if (!h) {
            errno = EIO;
            return -1;
        }
        size_t got = 0;
        int rc;
        if (r->ra_cap < READ_AHEAD && !r->ra_charged && len < READ_AHEAD) {
            size_t lent = tf__s3s_budget_take(s->budget, want < READ_AHEAD ? (size_t)want
                                                                           : READ_AHEAD);
            uint8_t *big = lent ? tf__s3s_big_alloc(lent) : NULL;
            if (big) {
                free(r->ra);
                r->ra = big;
                r->ra_cap = lent;
                r->ra_charged = lent;
                r->ra_len = 0;
            } else {
                tf__s3s_budget_give(s->budget, lent);
            }
        }
        if (len >= r->ra_cap) {
            /* No read-ahead (a large read, or the budget spent): the
               session's buffer is the only one. */
            rc = tf__s3_get(h, r->key, off, want < len ? (size_t)want : len, buf, &got, &e);
            tf__s3s_give_s3(s, h);
            if (rc != TF_OK) {
                errno = rc == TF_ENOENT ? ESTALE : EIO;
                return -1;
            }
            return (ssize_t)got;
        }
        rc = tf__s3_get(h, r->key, off, want < r->ra_cap ? (size_t)want : r->ra_cap, r->ra,
                        &got, &e);
        tf__s3s_give_s3(s, h);
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

int tf__s3s_hash_range(tf__storage *st, int fd, tf__upload *up, uint64_t from, uint64_t len,
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
        ssize_t n = tf__s3s_read_at(st, fd, buf, want, off);
        if (n < 0)
            return tf__fail_errno(e, TF_EIO, errno, "reading the object failed");
        if (n == 0)
            return tf__fail(e, TF_EIO, "the object is shorter than expected");
        tf__digest_update(d, buf, (size_t)n);
        off += (uint64_t)n;
    }
    return TF_OK;
}

int tf__s3s_digest_load(tf__storage *st, int fd, const uint64_t id[TF_STORAGE_ID_LEN],
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
void tf__s3s_digest_store(tf__storage *st, int fd, const uint8_t digest[TF_DIGEST_SIZE],
                          const uint64_t id[TF_STORAGE_ID_LEN])
{
    (void)st;
    (void)fd;
    (void)digest;
    (void)id;
}
