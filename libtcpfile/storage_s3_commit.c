/*
 * storage_s3_commit.c - publishing an upload on an S3 store under its name
 * (a single PUT, a multipart upload completed in place or copied), and an
 * object's time as metadata.
 */
#include "storage_s3_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    tf__s3s_hex(digest, TF_DIGEST_SIZE, m->digest);
    tf__s3s_format_mtime(m->mtime, sec, nsec);
    m->meta[0] = (tf__s3_meta){"xxh3", m->digest};
    m->meta[1] = (tf__s3_meta){"mtime", m->mtime};
}

/* An object's time: its x-amz-meta-mtime when it has one (set by a put
   with a time, or set_mtime), else when the store last wrote it. */
void tf__s3s_object_mtime(const tf__s3_info *h, int64_t *sec, uint32_t *nsec)
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
        tf__s3s_version_of(&info, id);
        if (memcmp(id, c->expect_id, sizeof id) != 0)
            return tf__fail(e, TF_ECONFLICT,
                            "\"%s\" changed while it was uploaded; not stored", name);
        snprintf(if_match, TF_S3_ID_MAX, "%s", info.etag);
        return TF_OK;
    }
    if (rc == TF_OK)
        return tf__fail(e, TF_EEXIST, "\"%s\" already exists", name);
    snprintf(if_match, TF_S3_ID_MAX, "*");
    return TF_OK;
}

/* Completes a streamed upload (stage_sized) as name: its last byte goes
   once c's condition holds, with the check and the completion one step
   among this server's commits (as for a multipart upload in place); its
   digest then goes beside it, its time as a copy onto itself. */
static int commit_stream(s3store *s, tf__s3 *h, tf__upload *up, const char *key,
                         const char *name, const tf__commit_cond *c, const pub_meta *m,
                         const uint8_t digest[TF_DIGEST_SIZE], tf__err *e)
{
    char etag[TF_S3_ID_MAX], if_match[TF_S3_ID_MAX];
    if (strcmp(key, up->stage_key) != 0)
        return tf__fail(e, TF_EINTERNAL,
                        "an upload staged for another name committed as \"%s\"", name);
    pthread_mutex_lock(&s->commit_mu);
    int rc = precondition(h, key, name, c, if_match, e);
    if (rc == TF_OK)
        rc = tf__s3s_stream_finish(up->stream, etag, e);
    pthread_mutex_unlock(&s->commit_mu);
    if (rc == TF_OK && c->set_mtime)
        rc = tf__s3_copy_meta(h, key, key, m->meta, 2, e);
    else if (rc == TF_OK)
        tf__s3s_digest_put(s, h, name, etag, digest);
    return rc;
}

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
    int rc = tf__s3s_land_parts(s, up, e);
    if (rc != TF_OK && up->resumable && up->store_failed) {
        tf__s3s_keep(&s->base, &up); /* its good parts stay for the retry */
        return rc;
    }
    if (rc == TF_OK)
        rc = tf__s3s_file_key(s, key, name, e);
    tf__s3 *h = rc == TF_OK ? tf__s3s_take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    uint8_t digest[TF_DIGEST_SIZE];
    tf__digest_final(&up->digest, digest);
    pub_meta m;
    pub_meta_init(&m, digest, c->set_mtime ? c->mtime_sec : (int64_t)time(NULL),
                  c->set_mtime ? c->mtime_nsec : 0);
    if (rc == TF_OK && up->stream) {
        rc = commit_stream(s, h, up, key, name, c, &m, digest, e);
    } else if (rc == TF_OK && !up->upload_id[0]) {
        rc = precondition(h, key, name, c, if_match, e);
        tf__s3_body body = {.buf = up->buf ? up->buf : (const uint8_t *)"",
                            .len = up->buf_len};
        tf__err mine = {{0}};
        if (rc == TF_OK)
            rc = tf__s3_put_if(h, key, &body, m.meta, 2, if_match[0] ? if_match : NULL,
                               &mine);
        /* The store's 412: it changed (or appeared) since the check. */
        if (rc == TF_EEXIST && c->expect_id)
            rc = tf__fail(e, TF_ECONFLICT,
                          "\"%s\" changed while it was uploaded; not stored", name);
        else if (rc == TF_EEXIST)
            rc = tf__fail(e, TF_EEXIST, "\"%s\" already exists", name);
        else if (rc != TF_OK && mine.msg[0])
            rc = tf__fail(e, rc, "%s", mine.msg);
    } else if (rc == TF_OK && up->in_place) {
        /* Completing publishes it: the check and the completion are one
           step among this server's commits, as a copy's below. */
        char etag[TF_S3_ID_MAX];
        if (strcmp(key, up->stage_key) != 0)
            rc = tf__fail(e, TF_EINTERNAL,
                          "an upload staged for another name committed as "
                          "\"%s\"",
                          name);
        if (rc == TF_OK && up->buf_len > 0)
            rc = tf__s3s_flush_part(s, h, up, e);
        if (rc == TF_OK) {
            pthread_mutex_lock(&s->commit_mu);
            rc = precondition(h, key, name, c, if_match, e);
            if (rc == TF_OK)
                rc = tf__s3_mpu_complete(h, key, up->upload_id, up->parts, up->n_parts,
                                         etag, e);
            pthread_mutex_unlock(&s->commit_mu);
        }
        if (rc == TF_OK) {
            up->upload_id[0] = '\0'; /* completed: nothing to abort */
            /* A time of the client's is metadata: that needs the copy. */
            if (c->set_mtime)
                rc = tf__s3_copy_meta(h, key, key, m.meta, 2, e);
            else
                tf__s3s_digest_put(s, h, name, etag, digest);
        }
    } else if (rc == TF_OK) {
        if (up->buf_len > 0)
            rc = tf__s3s_flush_part(s, h, up, e);
        if (rc == TF_OK)
            rc = tf__s3_mpu_complete(h, up->stage_key, up->upload_id, up->parts,
                                     up->n_parts, NULL, e);
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
    tf__s3s_give_s3(s, h);
    tf__s3s_drop(s, up);
    return rc;
}

int tf__s3s_commit(tf__storage *st, tf__upload **upp, const char *name, int overwrite,
                   tf__err *e)
{
    tf__commit_cond c = {.overwrite = overwrite};
    return commit_with(S(st), upp, name, &c, e);
}

int tf__s3s_commit_cond(tf__storage *st, tf__upload **upp, const char *name,
                        const tf__commit_cond *c, tf__err *e)
{
    return commit_with(S(st), upp, name, c, e);
}

/* A new time is new metadata, and S3 changes an object's metadata only by
   copying it onto itself (its bytes stay; its ETag too, for one put
   whole). */
int tf__s3s_set_mtime(tf__storage *st, const char *path, int64_t sec, uint32_t nsec,
                      tf__err *e)
{
    s3store *s = S(st);
    char key[TF_S3_KEY_MAX + 1];
    int rc = tf__s3s_file_key(s, key, path, e);
    if (rc != TF_OK)
        return rc;
    if (nsec > 999999999u)
        return tf__fail(e, TF_EINVAL, "a time with %u nanoseconds", (unsigned)nsec);
    tf__s3 *h = tf__s3s_take_s3(s, e);
    if (!h)
        return TF_EIO;
    tf__s3_info info;
    rc = tf__s3_head(h, key, &info, e);
    if (rc == TF_OK) {
        char mtime[48];
        tf__s3s_format_mtime(mtime, sec, nsec);
        /* Every other pair kept as it was (the digest first of all). */
        tf__s3_meta meta[TF_S3_META_MAX + 1];
        size_t n = 0;
        for (size_t i = 0; i < info.n_meta; i++)
            if (strcmp(info.meta[i].name, "mtime") != 0)
                meta[n++] = (tf__s3_meta){info.meta[i].name, info.meta[i].value};
        meta[n++] = (tf__s3_meta){"mtime", mtime};
        rc = tf__s3_copy_meta(h, key, key, meta, n, e);
    }
    tf__s3s_give_s3(s, h);
    return rc;
}
