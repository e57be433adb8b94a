/*
 * storage_s3_resume.c - uploads left in an S3 bucket: a resumable upload
 * taken up by any server, and the sweep of stale and expired ones.
 */
#include "storage_s3_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    rc = tf__s3s_state_key(s, up, skey, e);
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

int tf__s3s_stage_resumable(tf__storage *st, const char *stem, uint64_t size,
                            tf__upload **out, uint64_t *have, int *resumable, tf__err *e)
{
    s3store *s = S(st);
    *out = NULL;
    *have = 0;
    *resumable = 0;
    /* One part or less: a single PUT, nothing to keep when cut off. */
    if (size <= PART_SIZE || strlen(stem) >= sizeof((tf__upload *)0)->stem)
        return tf__s3s_stage(st, out, e);
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
    tf__upload *up = tf__s3s_new_upload(e);
    if (!up) {
        tf__s3s_unbusy(s, stem);
        return TF_ENOMEM;
    }
    up->resumable = 1;
    snprintf(up->stem, sizeof up->stem, "%s", stem);
    char rel[128];
    snprintf(rel, sizeof rel, "%s/p/%s", TF_TMP_DIR, stem);
    int rc = tf__s3s_key_for(s, up->stage_key, rel, "", e);
    tf__s3 *h = rc == TF_OK ? tf__s3s_take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    if (rc == TF_OK)
        rc = resume(s, h, up, e);
    tf__s3s_give_s3(s, h);
    if (rc != TF_OK) {
        tf__s3s_unbusy(s, stem);
        tf__s3s_free_upload(up);
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
void tf__s3s_sweep(tf__storage *st, int all_plain)
{
    s3store *s = S(st);
    tf__err e = {{0}};
    tf__s3 *h = tf__s3s_take_s3(s, &e);
    if (!h)
        return;
    sweep_ctx c = {s, h, all_plain, (int64_t)time(NULL), strlen(s->prefix)};
    tf__s3_mpu_list(h, s->prefix, sweep_one, &c, &e);
    tf__s3s_give_s3(s, h);
}
