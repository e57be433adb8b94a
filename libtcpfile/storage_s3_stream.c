/*
 * storage_s3_stream.c - a plain upload of known size sent to S3 as one
 * streaming PUT of its name while its bytes arrive (stage_sized), not as a
 * multipart upload: radosgw takes one PUT at curl's speed, each part at
 * about a third of it (bench/RESULTS.md, "S3 put").
 *
 * A thread of its own runs the PUT; curl pulls the body from a bounded
 * ring (of the read-ahead budget) that write fills, waiting while it is
 * full. The last byte is held back until the commit releases it: until
 * then the store has not the whole body and publishes nothing, so a failed
 * digest check, an abort, a client gone or a server stopping cuts the
 * request and the name keeps what it had (the store drops a PUT whose body
 * never ended).
 */
#include "storage_s3_internal.h"

#include <stdlib.h>
#include <string.h>

struct tf__s3s_stream {
    s3store *s;
    const char *key; /* the upload's stage_key: its name's own key */
    uint64_t size;
    pthread_t thread;
    int joined;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *ring;
    size_t cap;
    uint64_t in, out; /* bytes put into the ring, bytes curl took */
    int released;     /* the commit's go: the last byte may go */
    int cut;
    int pull_waits, write_waits; /* a side asleep on cv, waiting for the other */
    int64_t pull_slept_ms;       /* when curl's side went to sleep */
    int done; /* the PUT has ended: rc, e, etag */
    int rc;
    tf__err e;
    char etag[TF_S3_ID_MAX];
    tf__s3_source src;
};

/* Bytes curl may take now: all that is in, but the last until released. */
static uint64_t ready(const tf__s3s_stream *st)
{
    uint64_t upto = st->released || st->in < st->size ? st->in : st->size - 1;
    return upto - st->out;
}

/* A side asleep is woken only when it has WAKE bytes (or room) to work
   with, or nothing more is coming: one wake-up per chunk written or taken
   cost the server more CPU than the bytes' copies (bench/RESULTS.md).
   curl's side is woken for less after WAKE_MS, so that a slow client's
   bytes still reach the store (curl's low-speed limit). */
#define WAKE ((uint64_t)1 << 20)
#define WAKE_MS 1000

static void wake(tf__s3s_stream *st, int *waits)
{
    if (*waits) {
        *waits = 0;
        pthread_cond_broadcast(&st->cv);
    }
}

static size_t pull(void *user, void *dst, size_t max)
{
    tf__s3s_stream *st = user;
    pthread_mutex_lock(&st->mu);
    while (!st->cut && ready(st) == 0) {
        if (!st->pull_waits)
            st->pull_slept_ms = tf__now_ms();
        st->pull_waits = 1;
        pthread_cond_wait(&st->cv, &st->mu);
    }
    if (st->cut) {
        pthread_mutex_unlock(&st->mu);
        return 0;
    }
    size_t at = (size_t)(st->out % st->cap);
    uint64_t k = ready(st);
    if (k > st->cap - at)
        k = st->cap - at;
    if (k > max)
        k = max;
    pthread_mutex_unlock(&st->mu);
    /* [out, out + k) is the writer's no more until out moves past it. */
    memcpy(dst, st->ring + at, (size_t)k);
    pthread_mutex_lock(&st->mu);
    st->out += k;
    if (st->cap - (st->in - st->out) >= WAKE || st->out == st->size)
        wake(st, &st->write_waits);
    pthread_mutex_unlock(&st->mu);
    return (size_t)k;
}

static int is_cut(void *user)
{
    tf__s3s_stream *st = user;
    pthread_mutex_lock(&st->mu);
    int cut = st->cut;
    pthread_mutex_unlock(&st->mu);
    return cut;
}

static void *run_put(void *arg)
{
    tf__s3s_stream *st = arg;
    tf__err e = {{0}};
    char etag[TF_S3_ID_MAX] = "";
    tf__s3 *h = tf__s3s_take_s3(st->s, &e);
    tf__s3_body body = {.len = st->size, .src = &st->src};
    /* Its digest is known at the end only: it goes beside (commit). */
    static const tf__s3_meta beside = {DIGEST_BESIDE, "1"};
    int rc = h ? tf__s3_put_stream(h, st->key, &body, &beside, 1, etag, &e) : TF_EIO;
    tf__s3s_give_s3(st->s, h);
    pthread_mutex_lock(&st->mu);
    st->rc = rc;
    st->e = e;
    memcpy(st->etag, etag, sizeof etag);
    st->done = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

int tf__s3s_stream_start(s3store *s, tf__upload *up, uint64_t size, tf__err *e)
{
    size_t cap = STREAM_RING;
    size_t lent = tf__s3s_budget_take(s->budget, cap);
    if (lent < cap) {
        tf__s3s_budget_give(s->budget, lent);
        return 0;
    }
    tf__s3s_stream *st = calloc(1, sizeof *st);
    uint8_t *ring = st ? tf__s3s_big_alloc(cap) : NULL;
    if (!ring) {
        free(st);
        tf__s3s_budget_give(s->budget, cap);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    *st = (tf__s3s_stream){.s = s, .key = up->stage_key, .size = size, .ring = ring, .cap = cap};
    st->src = (tf__s3_source){.pull = pull, .cut = is_cut, .user = st};
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    if (pthread_create(&st->thread, NULL, run_put, st) != 0) {
        pthread_cond_destroy(&st->cv);
        pthread_mutex_destroy(&st->mu);
        tf__s3s_big_free(ring, cap);
        free(st);
        tf__s3s_budget_give(s->budget, cap);
        return 0;
    }
    pthread_mutex_lock(&s->mu);
    s->streams++;
    pthread_mutex_unlock(&s->mu);
    up->stream = st;
    return 1;
}

/* The PUT's failure, once it has ended before its time. */
static int ended(tf__s3s_stream *st, tf__err *e)
{
    if (st->rc != TF_OK)
        return tf__fail(e, st->rc, "%s", st->e.msg);
    return tf__fail(e, TF_EIO, "the put of \"%s\" ended early", st->key);
}

int tf__s3s_stream_write(tf__s3s_stream *st, const uint8_t *p, size_t n, tf__err *e)
{
    pthread_mutex_lock(&st->mu);
    if (n > st->size - st->in) {
        pthread_mutex_unlock(&st->mu);
        return tf__fail(e, TF_EIO, "more than the %llu bytes announced for \"%s\"",
                        (unsigned long long)st->size, st->key);
    }
    while (n > 0) {
        while (!st->cut && !st->done && st->in - st->out == st->cap) {
            st->write_waits = 1;
            pthread_cond_wait(&st->cv, &st->mu);
        }
        if (st->cut || st->done) {
            int rc = ended(st, e);
            pthread_mutex_unlock(&st->mu);
            return rc;
        }
        size_t at = (size_t)(st->in % st->cap);
        size_t k = st->cap - (size_t)(st->in - st->out);
        if (k > st->cap - at)
            k = st->cap - at;
        if (k > n)
            k = n;
        pthread_mutex_unlock(&st->mu);
        /* [in, in + k) is free: curl takes nothing past in. */
        memcpy(st->ring + at, p, k);
        pthread_mutex_lock(&st->mu);
        st->in += k;
        if (st->pull_waits && (ready(st) >= WAKE || st->in == st->size ||
                               tf__now_ms() - st->pull_slept_ms >= WAKE_MS))
            wake(st, &st->pull_waits);
        p += k;
        n -= k;
    }
    pthread_mutex_unlock(&st->mu);
    return TF_OK;
}

int tf__s3s_stream_finish(tf__s3s_stream *st, char *etag, tf__err *e)
{
    pthread_mutex_lock(&st->mu);
    if (st->in != st->size) {
        pthread_mutex_unlock(&st->mu);
        return tf__fail(e, TF_EIO, "%llu of the %llu bytes announced for \"%s\"",
                        (unsigned long long)st->in, (unsigned long long)st->size, st->key);
    }
    st->released = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    st->joined = 1;
    if (st->rc != TF_OK)
        return tf__fail(e, st->rc, "%s", st->e.msg);
    memcpy(etag, st->etag, TF_S3_ID_MAX);
    return TF_OK;
}

void tf__s3s_stream_end(s3store *s, tf__s3s_stream *st)
{
    if (!st->joined) {
        pthread_mutex_lock(&st->mu);
        st->cut = 1;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thread, NULL);
    }
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    tf__s3s_big_free(st->ring, st->cap);
    tf__s3s_budget_give(s->budget, st->cap);
    free(st);
}

size_t tf__storage_s3_streams(tf__storage *st)
{
    return tf__s3s_counter(S(st), &S(st)->streams);
}
