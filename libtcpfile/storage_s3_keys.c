/*
 * storage_s3_keys.c - keys of an S3 store: names to keys, versions, the
 * directory probe, and the digests kept beside uploads completed in place.
 */
#include "storage_s3_internal.h"

#include <stdio.h>
#include <string.h>

/* ---- names ------------------------------------------------------------ */

/* The same rules as the local backend (tf__storage_check_path), short
   enough to leave room in a key for the prefix and a suffix. */
int tf__s3s_check_path(const char *path, tf__err *e)
{
    return tf__storage_check_path(path, TF_S3_KEY_MAX - 64, e);
}

/* PREFIX path SUFFIX into out (TF_S3_KEY_MAX + 1). */
int tf__s3s_key_for(s3store *s, char *out, const char *path, const char *suffix, tf__err *e)
{
    int n = snprintf(out, TF_S3_KEY_MAX + 1, "%s%s%s", s->prefix, path, suffix);
    if (n < 0 || n > TF_S3_KEY_MAX)
        return tf__fail(e, TF_EINVAL, "\"%s\" is too long for an S3 key", path);
    return TF_OK;
}

/* The key of the file path: a path that passes tf__s3s_check_path, as tf__s3s_key_for. */
int tf__s3s_file_key(s3store *s, char *out, const char *path, tf__err *e)
{
    int rc = tf__s3s_check_path(path, e);
    return rc == TF_OK ? tf__s3s_key_for(s, out, path, "", e) : rc;
}

/* A time as x-amz-meta-mtime holds it: "SEC", or "SEC.NNNNNNNNN". */
void tf__s3s_format_mtime(char out[48], int64_t sec, uint32_t nsec)
{
    if (nsec)
        snprintf(out, 48, "%lld.%09u", (long long)sec, (unsigned)nsec);
    else
        snprintf(out, 48, "%lld", (long long)sec);
}

void tf__s3s_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int tf__s3s_unhex(const char *s, uint8_t *out, size_t n)
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
void tf__s3s_version_of(const tf__s3_info *h, uint64_t id[TF_STORAGE_ID_LEN])
{
    uint64_t x = 1469598103934665603ull;
    for (const char *c = h->etag; *c; c++)
        x = (x ^ (uint8_t)*c) * 1099511628211ull;
    memset(id, 0, TF_STORAGE_ID_LEN * sizeof id[0]);
    id[0] = x;
    id[1] = h->size;
    id[2] = (uint64_t)h->mtime;
}

int tf__s3s_count_any(void *user, const char *key, int is_prefix, uint64_t size,
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

int tf__s3s_dir_probe(s3store *s, tf__s3 *h, const char *path, any *a, tf__err *e)
{
    char key[TF_S3_KEY_MAX + 1];
    int rc = tf__s3s_key_for(s, key, path, "/", e);
    if (rc != TF_OK)
        return rc;
    tf__s3_page page = {.prefix = key, .delimiter = "/", .max_keys = 2};
    memset(a, 0, sizeof *a);
    a->marker = key;
    return tf__s3_list(h, &page, tf__s3s_count_any, a, e);
}

/* ---- digests of uploads completed in place ---- */

/* The key of the object that holds path's digest (TF_TMP_DIR/d/path). */
int tf__s3s_digest_key(s3store *s, const char *path, char *out, tf__err *e)
{
    char rel[64];
    snprintf(rel, sizeof rel, "%s/d/", TF_TMP_DIR);
    char key[TF_S3_KEY_MAX + 1];
    int rc = tf__s3s_key_for(s, key, rel, path, e);
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
void tf__s3s_digest_put(s3store *s, tf__s3 *h, const char *path, const char *etag,
                        const uint8_t digest[TF_DIGEST_SIZE])
{
    char key[TF_S3_KEY_MAX + 1], text[TF_S3_ID_MAX + 2 * TF_DIGEST_SIZE + 4];
    tf__err e = {{0}};
    if (!etag[0] || tf__s3s_digest_key(s, path, key, &e) != TF_OK)
        return;
    char hx[2 * TF_DIGEST_SIZE + 1];
    tf__s3s_hex(digest, TF_DIGEST_SIZE, hx);
    int n = snprintf(text, sizeof text, "%s\n%s\n", etag, hx);
    tf__s3_body body = {.buf = text, .len = (size_t)n};
    tf__s3_put(h, key, &body, NULL, 0, &e);
}

void tf__s3s_digest_drop(s3store *s, tf__s3 *h, const char *path)
{
    char key[TF_S3_KEY_MAX + 1];
    tf__err e = {{0}};
    if (tf__s3s_digest_key(s, path, key, &e) == TF_OK)
        tf__s3_delete(h, key, &e);
}

/* path's recorded digest: 1 when there is one for the version etag. */
int tf__s3s_digest_get(s3store *s, tf__s3 *h, const char *path, const char *etag,
                       uint8_t digest[TF_DIGEST_SIZE])
{
    char key[TF_S3_KEY_MAX + 1], text[TF_S3_ID_MAX + 2 * TF_DIGEST_SIZE + 4];
    size_t got = 0;
    tf__err e = {{0}};
    if (tf__s3s_digest_key(s, path, key, &e) != TF_OK ||
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
    return same_etag(text, etag) && tf__s3s_unhex(hx, digest, TF_DIGEST_SIZE) == 0;
}
