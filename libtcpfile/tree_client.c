/*
 * tree_client.c - the client's side of the tree (feature TREE,
 * docs/protocol.md section 3a): stat, mkdir, remove, rename and the
 * streamed directory listing.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "transfer.h"
#include "wire.h"

const char *tf__path_leaf(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : path;
}

int tf__client_check_path(tf_client *c, const char *path, const char *what)
{
    char why[TF__PATH_WHY_MAX];
    tf__path_limits lim = {c->max_name, c->max_depth, c->max_path};
    if (!path)
        return tf__fail(&c->err, TF_EINVAL, "bad %s: none given", what);
    int rc = tf__path_check_bytes(path, strlen(path), &lim, why, sizeof why);
    if (rc != TF_OK)
        return tf__fail(&c->err, rc,
                        "bad %s \"%s\": %s (at most %u bytes per component, %u levels, %u "
                        "bytes in all)",
                        what, path, why, (unsigned)c->max_name, (unsigned)c->max_depth,
                        (unsigned)c->max_path);
    return TF_OK;
}

int tf_client_has_tree(const tf_client *c)
{
    if (c)
        tf__client_settle(c);
    return c && (c->features & TF_FEATURE_TREE) ? 1 : 0;
}

int tf_client_max_path(const tf_client *c)
{
    if (!c)
        return TF_EINVAL;
    return tf_client_has_tree(c) ? c->max_path : c->max_name;
}

int tf_client_max_depth(const tf_client *c)
{
    if (!c)
        return TF_EINVAL;
    return tf_client_has_tree(c) ? c->max_depth : 1;
}

int tf_path_check(const char *path, size_t max_path, size_t max_depth, size_t max_name,
                  char *why, size_t why_len)
{
    tf__path_limits lim = {max_name, max_depth, max_path};
    if (why && why_len)
        why[0] = '\0';
    if (!path)
        return TF_EINVAL;
    return tf__path_check_bytes(path, strlen(path), &lim, why, why_len);
}

/* Every tree call starts here: a usable client that speaks TREE. */
static int begin_tree_call(tf_client *c)
{
    if (!c)
        return TF_EINVAL;
    int rc = tf__client_usable(c);
    if (rc == TF_OK)
        rc = tf__client_hello(c); /* TREE must be confirmed */
    if (rc == TF_OK && !(c->features & TF_FEATURE_TREE))
        return tf__fail(&c->err, TF_EPROTO,
                        "the server does not offer the tree operations (feature TREE)");
    return rc == TF_OK ? tf__client_buffers(c) : rc;
}

/* A failure that leaves the stream out of step closes it. */
static int settle(tf_client *c, int rc)
{
    return tf__client_fatal(rc) ? tf__client_break(c, rc) : rc;
}

/* Sends a request of op on path ("" allowed where the op takes the root),
   with rename's new path when to is not NULL. */
static int send_tree_request(tf_client *c, uint8_t op, uint8_t flags, const char *path,
                             const char *to)
{
    uint8_t buf[TF_WIRE_REQUEST_SIZE + 2 * TF_WIRE_NAME_MAX];
    size_t len = strlen(path);
    long n;
    if (to) {
        n = tf__wire_encode_rename(buf, sizeof buf, flags, path, len, to, strlen(to));
    } else {
        tf_wire_request r = {.op = op, .flags = flags, .name = path, .name_len = (uint16_t)len};
        n = tf__wire_encode_request(buf, sizeof buf, &r);
    }
    if (n < 0)
        return tf__fail(&c->err, TF_EINVAL, "cannot encode the request");
    return settle(c, tf__stream_write(&c->s, buf, (size_t)n, &c->err));
}

/* The whole exchange of an op whose success has no body. */
static int simple_op(tf_client *c, uint8_t op, uint8_t flags, const char *path, const char *to)
{
    uint64_t size = 0;
    int rc = send_tree_request(c, op, flags, path, to);
    if (rc == TF_OK)
        rc = tf__client_read_response(c, op, path, &size, NULL);
    if (rc == TF_OK && size != 0)
        rc = tf__fail(&c->err, TF_EPROTO, "unexpected body in the answer to %s", path);
    return settle(c, rc);
}

int tf_stat_ex(tf_client *c, const char *path, unsigned flags, tf_stat_info *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    int rc = begin_tree_call(c);
    if (rc != TF_OK)
        return rc;
    if (!out || (flags & ~TF_STAT_DIGEST))
        return tf__fail(&c->err, TF_EINVAL, "bad arguments to tf_stat");
    if (!path)
        path = "";
    if (path[0] && (rc = tf__client_check_path(c, path, "path")) != TF_OK)
        return rc;
    uint64_t size = 0;
    rc = send_tree_request(c, TF_OP_STAT, (flags & TF_STAT_DIGEST) ? TF_REQ_STAT_DIGEST : 0,
                           path, NULL);
    if (rc == TF_OK)
        rc = tf__client_read_response(c, TF_OP_STAT, path, &size, NULL);
    if (rc != TF_OK)
        return settle(c, rc);
    uint8_t rec[TF_WIRE_STAT_MAX];
    tf_wire_stat st;
    if (size < TF_WIRE_STAT_SIZE || size > TF_WIRE_STAT_MAX)
        return settle(c, tf__fail(&c->err, TF_EPROTO, "malformed stat record (%llu bytes)",
                                  (unsigned long long)size));
    rc = tf__stream_read(&c->s, rec, (size_t)size, &c->err);
    if (rc != TF_OK)
        return settle(c, rc);
    if (tf__wire_decode_stat(rec, (size_t)size, &st) < 0)
        return settle(c, tf__fail(&c->err, TF_EPROTO, "malformed stat record"));
    out->type = st.type == 2 ? TF_FTYPE_DIR : TF_FTYPE_FILE;
    out->size = st.size;
    out->mtime = st.mtime;
    out->mtime_nsec = st.mtime_ns;
    out->has_digest = (st.flags & TF_WIRE_STAT_HAS_DIGEST) != 0;
    if (out->has_digest)
        memcpy(out->digest, st.digest, sizeof out->digest);
    return TF_OK;
}

int tf_stat(tf_client *c, const char *path, tf_stat_info *out)
{
    return tf_stat_ex(c, path, 0, out);
}

int tf_mkdir(tf_client *c, const char *path, unsigned flags)
{
    int rc = begin_tree_call(c);
    if (rc == TF_OK && (flags & ~TF_MKDIR_PARENTS))
        rc = tf__fail(&c->err, TF_EINVAL, "unknown tf_mkdir flags 0x%x", flags);
    if (rc == TF_OK)
        rc = tf__client_check_path(c, path, "path");
    if (rc == TF_OK)
        rc = simple_op(c, TF_OP_MKDIR, (flags & TF_MKDIR_PARENTS) ? TF_REQ_MKDIR_PARENTS : 0,
                       path, NULL);
    return rc;
}

int tf_remove(tf_client *c, const char *path)
{
    int rc = begin_tree_call(c);
    if (rc == TF_OK)
        rc = tf__client_check_path(c, path, "path");
    if (rc == TF_OK)
        rc = simple_op(c, TF_OP_REMOVE, 0, path, NULL);
    return rc;
}

int tf_rename(tf_client *c, const char *from, const char *to, unsigned flags)
{
    int rc = begin_tree_call(c);
    if (rc == TF_OK && (flags & ~TF_RENAME_NOREPLACE))
        rc = tf__fail(&c->err, TF_EINVAL, "unknown tf_rename flags 0x%x", flags);
    if (rc == TF_OK)
        rc = tf__client_check_path(c, from, "path");
    if (rc == TF_OK)
        rc = tf__client_check_path(c, to, "new path");
    if (rc == TF_OK)
        rc = simple_op(c, TF_OP_RENAME,
                       (flags & TF_RENAME_NOREPLACE) ? TF_REQ_RENAME_NOREPLACE : 0, from, to);
    return rc;
}

/* ---- the streamed listing ------------------------------------------------ */

struct tf_dir {
    tf_client *c;
    tf__digest digest;   /* of the chunks' data, with CHECKSUM */
    uint8_t *chunk;      /* the current chunk, at most TF_WIRE_CHUNK_MAX */
    size_t cap, len, pos;
    int ended;           /* the trailer has been read */
    int rc;              /* a failure, then returned for ever */
    tf_dirent ent;
    char path[TF_WIRE_NAME_MAX + 1];
};

/* Ends the listing with rc; a failure of the stream closes it. */
static int dir_fail(tf_dir *d, int rc)
{
    d->rc = settle(d->c, rc);
    return d->rc;
}

/* Reads the next chunk (or the end marker and the trailer). */
static int dir_refill(tf_dir *d)
{
    tf_client *c = d->c;
    uint8_t head[TF_WIRE_CHUNK_HEAD_SIZE];
    uint32_t len;
    int rc = tf__stream_read(&c->s, head, sizeof head, &c->err);
    if (rc != TF_OK)
        return dir_fail(d, rc);
    if (tf__wire_decode_chunk_head(head, sizeof head, &len) < 0)
        return dir_fail(d, tf__fail(&c->err, TF_EPROTO, "malformed listing chunk"));
    if (len == 0) {
        tf__xfer x = {.s = &c->s, .digest = d->digest};
        int verdict;
        tf__err verr = {{0}};
        rc = tf__xfer_recv_trailer(&x, &verdict, &verr, &c->err);
        d->ended = 1;
        if (rc != TF_OK)
            return dir_fail(d, rc);
        if (verdict != TF_OK) {
            tf__err_take(&c->err, &verr);
            d->rc = verdict; /* the stream is in step: c stays usable */
            return verdict;
        }
        return TF_OK;
    }
    if (len > d->cap) {
        uint8_t *p = realloc(d->chunk, len);
        if (!p)
            return dir_fail(d, tf__fail(&c->err, TF_ENOMEM, "out of memory"));
        d->chunk = p;
        d->cap = len;
    }
    rc = tf__stream_read(&c->s, d->chunk, len, &c->err);
    if (rc != TF_OK)
        return dir_fail(d, rc);
    tf__digest_update(&d->digest, d->chunk, len);
    d->len = len;
    d->pos = 0;
    return TF_OK;
}

int tf_dir_open(tf_client *c, const char *path, unsigned flags, tf_dir **out)
{
    if (out)
        *out = NULL;
    int rc = begin_tree_call(c);
    if (rc != TF_OK)
        return rc;
    if (!out || (flags & ~TF_LIST_RECURSIVE))
        return tf__fail(&c->err, TF_EINVAL, "bad arguments to tf_dir_open");
    if (!path)
        path = "";
    if (path[0] && (rc = tf__client_check_path(c, path, "path")) != TF_OK)
        return rc;
    tf_dir *d = calloc(1, sizeof *d);
    if (!d)
        return tf__fail(&c->err, TF_ENOMEM, "out of memory");
    d->c = c;
    rc = tf__digest_begin(&d->digest, (c->features & TF_FEATURE_CHECKSUM) != 0);
    if (rc != TF_OK) {
        free(d);
        return tf__fail(&c->err, rc, "out of memory");
    }
    uint64_t size;
    rc = send_tree_request(c, TF_OP_LISTDIR,
                           (flags & TF_LIST_RECURSIVE) ? TF_REQ_LIST_RECURSIVE : 0, path, NULL);
    if (rc == TF_OK)
        rc = settle(c, tf__client_read_response(c, TF_OP_LISTDIR, path, &size, NULL));
    if (rc != TF_OK) {
        tf__digest_end(&d->digest);
        free(d);
        return rc;
    }
    c->dir = d;
    *out = d;
    return TF_OK;
}

int tf_dir_next(tf_dir *d, const tf_dirent **ent)
{
    if (ent)
        *ent = NULL;
    if (!d || !ent)
        return TF_EINVAL;
    tf_client *c = d->c;
    tf__err_clear(&c->err);
    if (d->rc != TF_OK)
        return tf__fail(&c->err, d->rc, "the listing has failed: %s", tf_strerror(d->rc));
    while (!d->ended && d->pos == d->len) {
        int rc = dir_refill(d);
        if (rc != TF_OK)
            return rc;
    }
    if (d->ended)
        return TF_OK;
    tf_wire_dirent we;
    long n = tf__wire_decode_dirent(d->chunk + d->pos, d->len - d->pos, c->max_path, &we);
    char why[TF__PATH_WHY_MAX];
    /* The server's paths obey the rules its requests do: never "..", never
       absolute, never the staging directory. */
    tf__path_limits lim = {c->max_name, TF_WIRE_DEPTH_MAX, c->max_path};
    if (n < 0 || tf__path_check_bytes(we.path, we.path_len, &lim, why, sizeof why) != TF_OK)
        return dir_fail(d, tf__fail(&c->err, TF_EPROTO, "malformed listing entry"));
    memcpy(d->path, we.path, we.path_len);
    d->path[we.path_len] = '\0';
    d->ent.path = d->path;
    d->ent.type = we.type == 2 ? TF_FTYPE_DIR : TF_FTYPE_FILE;
    d->ent.size = we.size;
    d->ent.mtime = we.mtime;
    d->ent.mtime_nsec = we.mtime_ns;
    d->pos += (size_t)n;
    *ent = &d->ent;
    return TF_OK;
}

void tf_dir_close(tf_dir *d)
{
    if (!d)
        return;
    /* Read what is left, so the next request's answer is not mistaken for
       this listing's rest. */
    const tf_dirent *ent;
    while (d->rc == TF_OK && !d->ended && tf_dir_next(d, &ent) == TF_OK && ent)
        ;
    d->c->dir = NULL;
    tf__digest_end(&d->digest);
    free(d->chunk);
    free(d);
}
