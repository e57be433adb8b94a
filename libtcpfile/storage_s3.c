/*
 * storage_s3.c - a bucket (and a key prefix in it) of an S3-compatible
 * store as a storage backend (issue 15), over s3.c.
 *
 * Layout under the prefix: a file "a/b" is the object "PREFIX a/b"; a
 * directory is every key under "a/", plus the zero-byte marker "a/" that
 * mkdir leaves so that an empty directory exists; the reserved TF_TMP_DIR
 * holds the backend's own staging:
 *   a/b (in progress)          a plain upload over a part staged for its
 *                              name (stage_named): a multipart upload of
 *                              the name itself
 *   TF_TMP_DIR/u/RANDOM        the same staged without a name (stage)
 *   TF_TMP_DIR/p/STEM          a resumable upload (multipart), and
 *   TF_TMP_DIR/p/STEM.state    its running digest after its last part
 *   TF_TMP_DIR/d/a/b           "ETAG\nDIGEST\n": the digest of a/b when
 *                              it was completed in place (below)
 * Uploads become visible whole or not at all: a small one is one PUT, a
 * large one of known size one streaming PUT whose last byte waits for the
 * commit (storage_s3_stream.c), any other a multipart upload completed at
 * commit - in place, or copied (server side) onto its name from the
 * staging. Reads are ranged GETs
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
 *
 * The backend's files, one job each (storage_s3_internal.h ties them):
 *   storage_s3.c          the store: setup, its handles, views, teardown
 *   storage_s3_keys.c     names to keys, versions, digests kept beside
 *   storage_s3_read.c     read handles and the read-ahead budget
 *   storage_s3_upload.c   staging, filling and sending the parts
 *   storage_s3_stream.c   an upload of known size as one streaming PUT
 *   storage_s3_commit.c   publishing an upload under its name, times
 *   storage_s3_resume.c   resumable uploads left in the bucket, the sweep
 *   storage_s3_tree.c     stat, list, remove, rename, mkdir
 */
#include "storage_s3_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- handles ---------------------------------------------------------- */

tf__s3 *tf__s3s_take_s3(s3store *s, tf__err *e)
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

void tf__s3s_give_s3(s3store *s, tf__s3 *h)
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
            tf__s3s_reader_free(s, s->readers[i]);
    free(s->readers);
    tf__s3s_budget_unref(s->budget);
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
    .open_read = tf__s3s_open_read,
    .close_read = tf__s3s_close_read,
    .read_at = tf__s3s_read_at,
    .hash_range = tf__s3s_hash_range,
    .digest_load = tf__s3s_digest_load,
    .digest_store = tf__s3s_digest_store,
    .check_target = tf__s3s_check_target,
    .stage = tf__s3s_stage,
    .stage_named = tf__s3s_stage_named,
    .stage_sized = tf__s3s_stage_sized,
    .stage_resumable = tf__s3s_stage_resumable,
    .write = tf__s3s_write,
    .commit = tf__s3s_commit,
    .abort = tf__s3s_abort,
    .keep = tf__s3s_keep,
    .stat = tf__s3s_stat,
    .list_open = tf__s3s_list_open,
    .list_next = tf__s3s_list_next,
    .list_close = tf__s3s_list_close,
    .remove = tf__s3s_remove,
    .rename = tf__s3s_rename,
    .mkdir = tf__s3s_mkdir,
    .commit_cond = tf__s3s_commit_cond,
    .set_mtime = tf__s3s_set_mtime,
    .sub = s_sub,
    .sweep = tf__s3s_sweep,
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
    if (cfg->part_size && cfg->part_size < PART_MIN)
        return tf__fail(e, TF_EINVAL, "an S3 part of %zu bytes is under S3's least, %zu",
                        cfg->part_size, PART_MIN);
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
    if (!s->cfg.part_size)
        s->cfg.part_size = TF_S3_PART_SIZE;
    if (!s->cfg.single_put_max || s->cfg.single_put_max > SINGLE_PUT_MAX)
        s->cfg.single_put_max = SINGLE_PUT_MAX;
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
    tf__s3 *h = rc == TF_OK ? tf__s3s_take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EINVAL;
    tf__s3s_give_s3(s, h);
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
    int rc = tf__s3s_check_path(dir, e);
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
        rc = tf__s3s_mkdir(st, part, &mine);
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
        rc = tf__s3s_stat(st, dir, &fs, e);
    if (rc == TF_OK && fs.type != TF__FT_DIR)
        rc = tf__fail(e, TF_EACCES, "\"%s\" is not a directory", dir);
    char prefix[TF_S3_KEY_MAX + 1];
    if (rc == TF_OK)
        rc = tf__s3s_key_for(s, prefix, dir, "", e);
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
    tf__s3 *h = tf__s3s_take_s3(s, e);
    if (!h)
        return TF_EIO;
    tf__s3_page page = {.prefix = s->prefix, .max_keys = 1};
    any a = {.marker = ""}; /* counts what it finds; nothing is needed */
    int rc = tf__s3_list(h, &page, tf__s3s_count_any, &a, e);
    tf__s3s_give_s3(s, h);
    return rc;
}

int tf__storage_s3_open_url(tf__storage **out, const char *url,
                            const tf__storage_s3_config *base, tf__err *e)
{
    *out = NULL;
    if (strncmp(url, "s3://", 5) != 0 || url[5] == '\0' || url[5] == '/')
        return tf__fail(e, TF_EINVAL,
                        "the store is s3://BUCKET or s3://BUCKET/PREFIX, not \"%s\"", url);
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
        return tf__fail(e, TF_EINVAL,
                        "serving %s needs the store's endpoint (--s3-endpoint "
                        "URL, TF_SOPT_S3_ENDPOINT)",
                        url);
    int rc = tf__storage_s3_open(out, &c, e);
    tf__err mine = {{0}};
    if (rc == TF_OK && (rc = tf__storage_s3_check(*out, &mine)) != TF_OK) {
        (*out)->ops->close(*out);
        *out = NULL;
        rc = tf__fail(e, rc, "%s", mine.msg);
    }
    return rc;
}
