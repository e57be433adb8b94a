/*
 * storage.c - what is built on any storage backend: the path check at a
 * backend's edge, the listing a list request sends, read from the
 * backend's paged listing through the listing builder (listing.h), and
 * the group commit's fallback, a put's missing parents, the staging of
 * a plain upload.
 */
#include "storage.h"

#include <limits.h>
#include <string.h>

#include "listing.h"

int tf__storage_check_path(const char *path, size_t max_len, tf__err *e)
{
    size_t len = strlen(path);
    if (len == 0 || len > max_len)
        return tf__fail(e, TF_EINVAL, "bad path \"%s\"", path);
    const char *p = path;
    for (int first = 1;; first = 0) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return tf__fail(e, TF_EINVAL, "bad path \"%s\"", path);
        if (first && n == strlen(TF_TMP_DIR) && memcmp(p, TF_TMP_DIR, n) == 0)
            return tf__fail(e, TF_EACCES, "\"%s\" is reserved for the server's uploads",
                            TF_TMP_DIR);
        if (!end)
            return TF_OK;
        p = end + 1;
    }
}

int tf__storage_scan(tf__storage *st, size_t max_entries, size_t max_name, tf_listing **out,
                     tf__err *e)
{
    *out = NULL;
    tf__lister *li = NULL;
    int rc = st->ops->list_open(st, "", &li, e);
    if (rc != TF_OK)
        return rc;
    tf__listing_builder b;
    tf__listing_builder_init(&b, max_entries, max_name);
    const tf__dirent *batch;
    size_t n;
    while (rc == TF_OK && (rc = st->ops->list_next(st, li, &batch, &n, e)) == TF_OK && n > 0) {
        for (size_t i = 0; i < n && rc == TF_OK; i++) {
            const tf__dirent *de = &batch[i];
            size_t nlen = strlen(de->name);
            if (de->st.type != TF__FT_FILE)
                continue; /* directories, links, devices: not served */
            rc = tf__listing_builder_add(&b, de->name, nlen, de->st.size, de->st.mtime);
            if (rc == TF_EINVAL)
                rc = TF_OK; /* a name no client could ask for: not listed */
            else if (rc == TF_ETOOBIG)
                rc = tf__fail(e, rc, "the directory holds more than %zu files", max_entries);
            else if (rc != TF_OK)
                rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
        }
    }
    st->ops->list_close(st, li);
    if (rc == TF_OK && tf__listing_builder_finish(&b, out) != TF_OK)
        rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
    tf__listing_builder_abort(&b);
    return rc;
}

int tf__storage_make_parents(tf__storage *st, const char *path, tf__err *e)
{
    char dir[PATH_MAX];
    for (const char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
        size_t len = (size_t)(p - path);
        if (len >= sizeof dir)
            return tf__fail(e, TF_EINVAL, "the path is too long");
        memcpy(dir, path, len);
        dir[len] = '\0';
        tf__err quiet = {{0}};
        int rc = st->ops->mkdir(st, dir, &quiet);
        if (rc == TF_EEXIST) {
            tf__fstat fs;
            rc = st->ops->stat(st, dir, &fs, e);
            if (rc == TF_OK && fs.type != TF__FT_DIR)
                rc = tf__fail(e, TF_ENOTDIR, "\"%s\" exists and is not a directory", dir);
        } else if (rc != TF_OK) {
            tf__err_take(e, &quiet);
        }
        if (rc != TF_OK)
            return rc;
    }
    return TF_OK;
}

int tf__storage_stage_for(tf__storage *st, const char *name, tf__upload **out, tf__err *e)
{
    return st->ops->stage_named ? st->ops->stage_named(st, name, out, e)
                                : st->ops->stage(st, out, e);
}

int tf__storage_stage_sized(tf__storage *st, const char *name, uint64_t size,
                            tf__upload **out, tf__err *e)
{
    return st->ops->stage_sized ? st->ops->stage_sized(st, name, size, out, e)
                                : tf__storage_stage_for(st, name, out, e);
}

void tf__storage_commit_many(tf__storage *st, tf__commit_item *items, size_t n)
{
    if (st->ops->commit_many) {
        st->ops->commit_many(st, items, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        tf__commit_item *it = &items[i];
        tf__err_clear(&it->err);
        if (st->ops->commit_cond)
            it->rc = st->ops->commit_cond(st, &it->up, it->name, &it->cond, &it->err);
        else
            it->rc = st->ops->commit(st, &it->up, it->name, it->cond.overwrite, &it->err);
    }
}
