/*
 * storage_s3_tree.c - the tree of an S3 store: stat, paged listing,
 * remove, rename (copy + delete), mkdir (a marker object).
 */
#include "storage_s3_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tree --------------------------------------------------------- */

int tf__s3s_stat(tf__storage *st, const char *path, tf__fstat *out, tf__err *e)
{
    s3store *s = S(st);
    char key[TF_S3_KEY_MAX + 1];
    int rc = tf__s3s_file_key(s, key, path, e);
    if (rc != TF_OK)
        return rc;
    tf__s3 *h = tf__s3s_take_s3(s, e);
    if (!h)
        return TF_EIO;
    tf__s3_info info;
    tf__err mine = {{0}};
    rc = tf__s3_head(h, key, &info, &mine);
    if (rc == TF_OK) {
        out->type = TF__FT_FILE;
        out->size = info.size;
        tf__s3s_object_mtime(&info, &out->mtime, &out->mtime_ns);
    } else if (rc == TF_ENOENT) {
        any a;
        rc = tf__s3s_dir_probe(s, h, path, &a, e);
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
    tf__s3s_give_s3(s, h);
    return rc;
}

int tf__s3s_list_open(tf__storage *st, const char *dir, tf__lister **out, tf__err *e)
{
    s3store *s = S(st);
    *out = NULL;
    int at_root = dir[0] == '\0';
    int rc = at_root ? TF_OK : tf__s3s_check_path(dir, e);
    if (rc != TF_OK)
        return rc;
    tf__lister *li = calloc(1, sizeof *li);
    if (!li)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    li->at_root = at_root;
    rc = tf__s3s_key_for(s, li->prefix, dir, at_root ? "" : "/", e);
    if (rc == TF_OK && !at_root) {
        /* A directory that is not there is TF_ENOENT, as locally. */
        tf__fstat fs;
        rc = tf__s3s_stat(st, dir, &fs, e);
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

static int add_entry(void *user, const char *key, int is_prefix, uint64_t size,
                     int64_t mtime)
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

int tf__s3s_list_next(tf__storage *st, tf__lister *li, const tf__dirent **batch, size_t *n,
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
        if (!h && !(h = tf__s3s_take_s3(s, e)))
            return TF_EIO;
        int rc = tf__s3_list(h, &li->page, add_entry, li, e);
        if (rc != TF_OK) {
            tf__s3s_give_s3(s, h);
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
            tf__s3s_object_mtime(&info, &d->st.mtime, &d->st.mtime_ns);
    }
    tf__s3s_give_s3(s, h);
    *n = li->n;
    return TF_OK;
}

void tf__s3s_list_close(tf__storage *st, tf__lister *li)
{
    (void)st;
    free(li);
}

int tf__s3s_remove(tf__storage *st, const char *path, tf__err *e)
{
    s3store *s = S(st);
    tf__fstat fs;
    int rc = tf__s3s_stat(st, path, &fs, e);
    if (rc != TF_OK)
        return rc;
    char key[TF_S3_KEY_MAX + 1];
    rc = tf__s3s_key_for(s, key, path, fs.type == TF__FT_DIR ? "/" : "", e);
    tf__s3 *h = rc == TF_OK ? tf__s3s_take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    any a;
    if (rc == TF_OK && fs.type == TF__FT_DIR) {
        rc = tf__s3s_dir_probe(s, h, path, &a, e);
        if (rc == TF_OK && a.other)
            rc = tf__fail(e, TF_ENOTEMPTY, "the directory \"%s\" is not empty", path);
    }
    if (rc == TF_OK)
        rc = tf__s3_delete(h, key, e);
    if (rc == TF_OK && fs.type == TF__FT_FILE)
        tf__s3s_digest_drop(s, h, path);
    tf__s3s_give_s3(s, h);
    return rc;
}

int tf__s3s_rename(tf__storage *st, const char *from, const char *to, unsigned flags,
                   tf__err *e)
{
    s3store *s = S(st);
    tf__fstat fs;
    char kfrom[TF_S3_KEY_MAX + 1], kto[TF_S3_KEY_MAX + 1];
    int rc = tf__s3s_check_path(to, e);
    if (rc == TF_OK)
        rc = tf__s3s_stat(st, from, &fs, e);
    if (rc == TF_OK && fs.type == TF__FT_DIR)
        rc = tf__fail(e, TF_EINVAL, "renaming a directory is not supported on S3 (\"%s\")",
                      from);
    if (rc == TF_OK)
        rc = tf__s3s_key_for(s, kfrom, from, "", e);
    if (rc == TF_OK)
        rc = tf__s3s_key_for(s, kto, to, "", e);
    if (rc != TF_OK)
        return rc;
    if (flags & TF_STORAGE_NOREPLACE) {
        tf__fstat ts;
        tf__err mine = {{0}};
        int trc = tf__s3s_stat(st, to, &ts, &mine);
        if (trc == TF_OK)
            return tf__fail(e, TF_EEXIST, "\"%s\" already exists", to);
        if (trc != TF_ENOENT)
            return tf__fail(e, trc, "%s", mine.msg);
    }
    tf__s3 *h = tf__s3s_take_s3(s, e);
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
    if (rc == TF_OK && tf__s3s_digest_key(s, from, dfrom, &ignored) == TF_OK &&
        tf__s3s_digest_key(s, to, dto, &ignored) == TF_OK &&
        tf__s3_copy(h, dfrom, dto, &ignored) == TF_ENOENT)
        tf__s3_delete(h, dto, &ignored);
    else if (rc == TF_OK)
        tf__s3_delete(h, dfrom, &ignored);
    tf__s3s_give_s3(s, h);
    return rc;
}

int tf__s3s_mkdir(tf__storage *st, const char *path, tf__err *e)
{
    s3store *s = S(st);
    tf__fstat fs;
    tf__err mine = {{0}};
    int rc = tf__s3s_check_path(path, e);
    if (rc != TF_OK)
        return rc;
    rc = tf__s3s_stat(st, path, &fs, &mine);
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
        rc = tf__s3s_stat(st, parent, &fs, &mine);
        if (rc == TF_OK && fs.type != TF__FT_DIR)
            return tf__fail(e, TF_ENOENT, "\"%s\" is not a directory", parent);
        if (rc != TF_OK)
            return tf__fail(e, rc, "cannot create the directory \"%s\": %s", path,
                            mine.msg);
    }
    char key[TF_S3_KEY_MAX + 1];
    rc = tf__s3s_key_for(s, key, path, "/", e);
    tf__s3 *h = rc == TF_OK ? tf__s3s_take_s3(s, e) : NULL;
    if (rc == TF_OK && !h)
        rc = TF_EIO;
    tf__s3_body body = {.buf = "", .len = 0};
    if (rc == TF_OK)
        rc = tf__s3_put(h, key, &body, NULL, 0, e);
    tf__s3s_give_s3(s, h);
    return rc;
}
