/*
 * storage_s3_upload.c - writing an S3 store: staging an upload, filling
 * its parts and sending them (the full ones in the background), dropping
 * or keeping it.
 */
#include "storage_s3_internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- writing ---------------------------------------------------------- */

int tf__s3s_check_target(tf__storage *st, const char *name, int overwrite, tf__err *e)
{
    s3store *s = S(st);
    char key[TF_S3_KEY_MAX + 1];
    int rc = tf__s3s_file_key(s, key, name, e);
    if (rc != TF_OK)
        return rc;
    tf__s3 *h = tf__s3s_take_s3(s, e);
    if (!h)
        return TF_EIO;
    tf__s3_info info;
    tf__err mine = {{0}};
    rc = tf__s3_head(h, key, &info, &mine);
    any a;
    if (rc == TF_OK && !overwrite)
        rc = tf__fail(e, TF_EEXIST, "\"%s\" already exists", name);
    else if (rc == TF_OK || rc == TF_ENOENT)
        rc = tf__s3s_dir_probe(s, h, name, &a, e) == TF_OK && a.n > 0
                 ? tf__fail(e, TF_EACCES, "\"%s\" is a directory, not a regular file", name)
                 : TF_OK;
    else
        rc = tf__fail(e, rc, "%s", mine.msg);
    tf__s3s_give_s3(s, h);
    return rc;
}

tf__upload *tf__s3s_new_upload(tf__err *e)
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

void tf__s3s_free_upload(tf__upload *up)
{
    tf__digest_end(&up->digest);
    free(up->parts);
    tf__s3s_big_free(up->buf, up->buf_cap);
    free(up->saved_state);
    free(up);
}

int tf__s3s_stage(tf__storage *st, tf__upload **out, tf__err *e)
{
    s3store *s = S(st);
    *out = NULL;
    tf__upload *up = tf__s3s_new_upload(e);
    if (!up)
        return TF_ENOMEM;
    uint8_t rnd[12];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, rnd, sizeof rnd) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)sizeof rnd) {
        tf__s3s_free_upload(up);
        return tf__fail(e, TF_EIO, "no random bytes for a staging name");
    }
    char name[2 * sizeof rnd + 1];
    tf__s3s_hex(rnd, sizeof rnd, name);
    char rel[64];
    snprintf(rel, sizeof rel, "%s/u/%s", TF_TMP_DIR, name);
    int rc = tf__s3s_key_for(s, up->stage_key, rel, "", e);
    if (rc != TF_OK) {
        tf__s3s_free_upload(up);
        return rc;
    }
    *out = up;
    return TF_OK;
}

int tf__s3s_stage_named(tf__storage *st, const char *name, tf__upload **out, tf__err *e)
{
    s3store *s = S(st);
    *out = NULL;
    tf__upload *up = tf__s3s_new_upload(e);
    if (!up)
        return TF_ENOMEM;
    int rc = tf__s3s_file_key(s, up->stage_key, name, e);
    if (rc != TF_OK) {
        tf__s3s_free_upload(up);
        return rc;
    }
    up->in_place = 1;
    *out = up;
    return TF_OK;
}

/* Of a size of a part or more (less is one PUT at commit already) and
   within single_put_max: one streaming PUT of name, started now; else
   (or with no room in the budget for its ring) multipart in place. */
int tf__s3s_stage_sized(tf__storage *st, const char *name, uint64_t size, tf__upload **out,
                        tf__err *e)
{
    s3store *s = S(st);
    int rc = tf__s3s_stage_named(st, name, out, e);
    if (rc != TF_OK || size < s->cfg.part_size || size > s->cfg.single_put_max)
        return rc;
    rc = tf__s3s_stream_start(s, *out, size, e);
    if (rc < 0) {
        tf__s3s_free_upload(*out);
        *out = NULL;
        return rc;
    }
    return TF_OK;
}

/* The state object of a resumable upload: its digest after its parts. */
int tf__s3s_state_key(s3store *s, const tf__upload *up, char *out, tf__err *e)
{
    char rel[128];
    snprintf(rel, sizeof rel, "%s/p/%s.state", TF_TMP_DIR, up->stem);
    return tf__s3s_key_for(s, out, rel, "", e);
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
    int rc = tf__s3s_state_key(s, up, key, e);
    tf__s3_body body = {.buf = blob, .len = (size_t)head + n};
    if (rc == TF_OK)
        rc = tf__s3_put(h, key, &body, NULL, 0, e);
    return rc;
}

/* Sends the buffer as the next part, starting the multipart upload first
   when there is none. */
int tf__s3s_flush_part(s3store *s, tf__s3 *h, tf__upload *up, tf__err *e)
{
    int rc = TF_OK;
    if (!up->upload_id[0])
        rc = tf__s3_mpu_create(h, up->stage_key, NULL, 0, up->upload_id, e);
    if (rc != TF_OK)
        return rc;
    if (up->n_parts == MAX_PARTS)
        return tf__fail(e, TF_ETOOBIG, "the upload is over %d parts of %zu bytes",
                        MAX_PARTS, s->cfg.part_size);
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
    tf__s3 *h = tf__s3s_take_s3(f->s, &f->e);
    tf__s3_body body = {.buf = f->buf, .len = f->s->cfg.part_size};
    f->rc = h ? tf__s3_mpu_part(h, f->key, f->upload_id, f->number, &body, f->etag, &f->e)
              : TF_EIO;
    /* The state at once, while the store answers: two threads may save
       theirs out of order, which resume takes (the parts past the state's
       are sent again). */
    if (f->rc == TF_OK && f->up->resumable)
        f->rc = save_state(f->s, h, f->up, f->written, f->number, f->state, f->state_len,
                           &f->e);
    tf__s3s_give_s3(f->s, h);
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
        up->parts[up->n_parts] =
            (tf__s3_part){.number = f->number, .size = s->cfg.part_size};
        memcpy(up->parts[up->n_parts].etag, f->etag, sizeof f->etag);
        up->n_parts++;
    }
    if (rc == TF_EIO)
        up->store_failed = 1;
    tf__s3s_budget_give(s->budget, s->cfg.part_size);
    tf__s3s_big_free(f->buf, s->cfg.part_size);
    free(f);
    return rc;
}

/* Waits for every part in flight: the first error, if any. */
int tf__s3s_land_parts(s3store *s, tf__upload *up, tf__err *e)
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
        tf__s3 *h = tf__s3s_take_s3(s, e);
        rc = h ? tf__s3_mpu_create(h, up->stage_key, NULL, 0, up->upload_id, e) : TF_EIO;
        tf__s3s_give_s3(s, h);
        if (rc != TF_OK)
            return rc;
    }
    flying_part *f = calloc(1, sizeof *f);
    size_t lent = f ? tf__s3s_budget_take(s->budget, s->cfg.part_size) : 0;
    if (lent < s->cfg.part_size) {
        tf__s3s_budget_give(s->budget, lent);
        free(f);
        return 0;
    }
    *f = (flying_part){.s = s,
                       .up = up,
                       .key = up->stage_key,
                       .upload_id = up->upload_id,
                       .number = (unsigned)(up->n_parts + up->n_flying + 1),
                       .buf = up->buf,
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
        tf__s3s_budget_give(s->budget, s->cfg.part_size);
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
    return tf__s3s_counter(S(st), &S(st)->parts_flying_max);
}

/* A new part buffer for up: 0 without memory. */
static int part_buffer(const s3store *s, tf__upload *up)
{
    up->buf = tf__s3s_big_alloc(s->cfg.part_size);
    up->buf_cap = up->buf ? s->cfg.part_size : 0;
    return up->buf != NULL;
}

int tf__s3s_write(tf__storage *st, tf__upload *up, const void *p, size_t n, tf__err *e)
{
    s3store *s = S(st);
    const uint8_t *in = p;
    if (up->stream) {
        tf__digest_update(&up->digest, in, n);
        up->written += n;
        return tf__s3s_stream_write(up->stream, in, n, e);
    }
    if (!up->buf && !part_buffer(s, up))
        return tf__fail(e, TF_ENOMEM, "out of memory");
    while (n > 0) {
        size_t k = s->cfg.part_size - up->buf_len < n ? s->cfg.part_size - up->buf_len : n;
        memcpy(up->buf + up->buf_len, in, k);
        tf__digest_update(&up->digest, in, k);
        up->buf_len += k;
        up->written += k;
        in += k;
        n -= k;
        if (up->buf_len == s->cfg.part_size) {
            int rc = fly_part(s, up, e);
            if (rc == 0 && (rc = tf__s3s_land_parts(s, up, e)) == TF_OK) {
                tf__s3 *h = tf__s3s_take_s3(s, e);
                rc = h ? tf__s3s_flush_part(s, h, up, e) : TF_EIO;
                tf__s3s_give_s3(s, h);
            }
            if (rc < 0) {
                up->store_failed = rc == TF_EIO;
                return rc;
            }
            if (!up->buf && !part_buffer(s, up))
                return tf__fail(e, TF_ENOMEM, "out of memory");
        }
    }
    return TF_OK;
}

void tf__s3s_unbusy(s3store *s, const char *stem)
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
void tf__s3s_drop(s3store *s, tf__upload *up)
{
    tf__err e = {{0}};
    if (up->stream) /* cut, unless it was completed */
        tf__s3s_stream_end(s, up->stream);
    up->stream = NULL;
    tf__s3s_land_parts(s, up, &e);
    tf__s3 *h = tf__s3s_take_s3(s, &e);
    if (h && up->upload_id[0])
        tf__s3_mpu_abort(h, up->stage_key, up->upload_id, &e);
    char key[TF_S3_KEY_MAX + 1];
    if (h && up->resumable && tf__s3s_state_key(s, up, key, &e) == TF_OK)
        tf__s3_delete(h, key, &e);
    tf__s3s_give_s3(s, h);
    if (up->resumable)
        tf__s3s_unbusy(s, up->stem);
    tf__s3s_free_upload(up);
}

/* A resumable upload cut short by the store (a part it could not take) is
   kept, not dropped: the parts before it are good, and the client's retry
   takes up from them once the store is back - from any server. */
void tf__s3s_abort(tf__storage *st, tf__upload **up)
{
    if (!*up)
        return;
    tf__err ignored = {{0}};
    tf__s3s_land_parts(S(st), *up, &ignored); /* a part that failed sets store_failed */
    if ((*up)->resumable && (*up)->store_failed) {
        tf__s3s_keep(st, up);
        return;
    }
    tf__s3s_drop(S(st), *up);
    *up = NULL;
}

void tf__s3s_keep(tf__storage *st, tf__upload **upp)
{
    s3store *s = S(st);
    tf__upload *up = *upp;
    if (!up)
        return;
    *upp = NULL;
    tf__err ignored = {{0}};
    tf__s3s_land_parts(s, up, &ignored);
    if (!up->resumable || up->n_parts == 0) {
        tf__s3s_drop(s, up);
        return;
    }
    /* The parts stay, for any server to find; the tail in the buffer (less
       than a part) is sent again by the client. */
    tf__s3s_unbusy(s, up->stem);
    tf__s3s_free_upload(up);
}
