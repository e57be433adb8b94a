/*
 * session_tree.c - the tree's operations (docs/protocol.md section 3a):
 * stat, listdir, mkdir, remove, rename, one line each in tree_ops.
 */
#include <string.h>

#include "session_internal.h"
#include "walk.h"

/* ---- the tree (section 3a) -------------------------------------------------------- */

/* Replies success with no body. */
static void reply_ok(session *s)
{
    tf__sess_queue_head(s, TF_OK, 0, 0, NULL);
    s->req->body_left = 0;
    s->req->has_trailer = 0;
    tf__sess_start_send(s, AFTER_IDLE);
}

static void reply_rc(session *s, int rc)
{
    if (rc == TF_OK)
        reply_ok(s);
    else
        tf__sess_reply_failure(s, rc, AFTER_IDLE);
}

/* The head and the record, once the digest (if any) is known. */
void tf__sess_stat_finish(session *s)
{
    request *r = s->req;
    tf_wire_stat st = {.type = r->stat_type,
                       .mtime_ns = r->stat_mtime_ns,
                       .size = r->stat_size,
                       .mtime = r->stat_mtime};
    if (r->stat_pending) {
        tf__digest_final(&r->digest, st.digest);
        st.flags = TF_WIRE_STAT_HAS_DIGEST;
        /* Computed once per version: the next stat or get finds it. */
        storage(s)->ops->digest_store(storage(s), r->body_fd, st.digest, r->file_id);
        r->stat_pending = 0;
    } else if (r->cached) {
        memcpy(st.digest, r->cached_digest, sizeof st.digest);
        st.flags = TF_WIRE_STAT_HAS_DIGEST;
    }
    tf__wire_encode_stat(r->stat_rec, sizeof r->stat_rec, &st);
    tf__sess_queue_head(s, TF_OK, sizeof r->stat_rec, 0, NULL);
    r->body_mem = r->stat_rec;
    r->body_off = 0;
    r->body_left = sizeof r->stat_rec;
    r->has_trailer = 0;
}

/* On the disk pool: the entry, and a file's remembered digest. */
static void stat_work(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    tf__fstat fs = {TF__FT_DIR, 0, 0, 0};
    uint64_t size = 0;
    int rc = TF_OK;
    if (r->name[0])
        rc = st->ops->stat(st, r->name, &fs, &r->err);
    if (rc == TF_OK && fs.type == TF__FT_OTHER)
        rc = tf__fail(&r->err, TF_EACCES, "\"%s\" is not a regular file or directory",
                      r->name);
    if (rc == TF_OK && fs.type == TF__FT_FILE) {
        /* The digest, if remembered for this version; computed (in slices,
           continue_send) only when asked for. */
        rc = st->ops->open_read(st, r->name, &r->body_fd, &size, r->file_id, &r->err);
        if (rc == TF_OK) {
            fs.size = size;
            r->cached = st->ops->digest_load(st, r->body_fd, r->file_id, r->cached_digest);
            if (!r->cached && (r->qflags & TF_REQ_STAT_DIGEST)) {
                rc = tf__digest_begin(&r->digest, 1);
                if (rc == TF_OK)
                    rc = tf__sess_ensure_buf(r);
                else
                    tf__fail(&r->err, rc, "out of memory");
                r->stat_pending = rc == TF_OK;
                r->hashed_to = 0;
                r->prefix_to = size;
            }
        }
    }
    r->disk_rc = rc;
    r->stat_type = fs.type == TF__FT_DIR ? 2 : 1;
    r->stat_size = fs.type == TF__FT_DIR ? 0 : fs.size;
    r->stat_mtime = fs.mtime;
    r->stat_mtime_ns = fs.mtime_ns;
}

static void stat_done(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        tf__sess_reply_failure(s, r->disk_rc, AFTER_IDLE);
        return;
    }
    if (!r->stat_pending)
        tf__sess_stat_finish(s);
    tf__sess_start_send(s, AFTER_IDLE);
}

static void handle_stat(session *s, const tf_wire_request *q)
{
    int rc = q->name_len ? tf__sess_check_name(s, q) : TF_OK;
    if (rc != TF_OK) {
        tf__sess_reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    tf__sess_disk_call(s, stat_work, stat_done);
}

/* mkdir -p: each prefix in turn; one that exists as a directory is fine. */
static int mkdir_parents(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    size_t len = strlen(r->name);
    char path[TF_WIRE_NAME_MAX + 1];
    for (size_t end = 0; end <= len; end++) {
        if (end < len && r->name[end] != '/')
            continue;
        memcpy(path, r->name, end);
        path[end] = '\0';
        tf__err step = {{0}};
        int rc = st->ops->mkdir(st, path, &step);
        if (rc == TF_EEXIST) {
            tf__fstat fs;
            tf__err_clear(&step);
            rc = st->ops->stat(st, path, &fs, &step);
            if (rc == TF_OK && fs.type != TF__FT_DIR)
                rc = tf__fail(&step, TF_EEXIST, "\"%s\" exists and is not a directory", path);
        }
        if (rc != TF_OK) {
            tf__err_take(&r->err, &step);
            return rc;
        }
    }
    return TF_OK;
}

/* The tree's changes, each on the disk pool, answered by tree_done. */
static void mkdir_work(session *s)
{
    request *r = s->req;
    s->req->disk_rc = (r->qflags & TF_REQ_MKDIR_PARENTS)
                          ? mkdir_parents(s)
                          : storage(s)->ops->mkdir(storage(s), r->name, &r->err);
}

static void remove_work(session *s)
{
    request *r = s->req;
    r->disk_rc = storage(s)->ops->remove(storage(s), r->name, &r->err);
}

static void rename_work(session *s)
{
    request *r = s->req;
    r->disk_rc = storage(s)->ops->rename(
        storage(s), r->name, r->to,
        (r->qflags & TF_REQ_RENAME_NOREPLACE) ? TF_STORAGE_NOREPLACE : 0, &r->err);
}

static void tree_done(session *s)
{
    reply_rc(s, s->req->disk_rc);
}

static void handle_mkdir(session *s, const tf_wire_request *q)
{
    int rc = tf__sess_check_name(s, q);
    if (rc != TF_OK)
        reply_rc(s, rc);
    else
        tf__sess_disk_call(s, mkdir_work, tree_done);
}

static void handle_remove(session *s, const tf_wire_request *q)
{
    int rc = tf__sess_check_name(s, q);
    if (rc != TF_OK)
        reply_rc(s, rc);
    else
        tf__sess_disk_call(s, remove_work, tree_done);
}

static void handle_rename(session *s, const tf_wire_request *q)
{
    request *r = s->req;
    int rc = tf__sess_check_name(s, q);
    if (rc == TF_OK)
        rc = tf__sess_check_path(s, r->to, strlen(r->to), "new path");
    if (rc != TF_OK)
        reply_rc(s, rc);
    else
        tf__sess_disk_call(s, rename_work, tree_done);
}

/* On the disk pool: the walk's first directory opened. */
static void listdir_work(session *s)
{
    request *r = s->req;
    tf__path_limits lim = tf__sess_path_limits(s);
    r->disk_rc = tf__walk_open(storage(s), r->name, (r->qflags & TF_REQ_LIST_RECURSIVE) != 0,
                               &lim, &r->walk, &r->err);
}

static void listdir_opened(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        tf__sess_reply_failure(s, r->disk_rc, AFTER_IDLE);
        return;
    }
    tf__sess_queue_head(s, TF_OK, 0, 0, NULL);
    r->body_left = 0;
    r->has_trailer = 1;
    tf__sess_start_send(s, AFTER_IDLE);
}

static void handle_listdir(session *s, const tf_wire_request *q)
{
    request *r = s->req;
    int rc = q->name_len ? tf__sess_check_name(s, q) : TF_OK;
    if (rc == TF_OK)
        rc = tf__sess_ensure_buf(r);
    if (rc != TF_OK) {
        tf__sess_reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    tf__sess_disk_call(s, listdir_work, listdir_opened);
}

static const tree_op tree_ops[] = {
    {TF_OP_STAT, "stat", 0, TF_REQ_STAT_DIGEST, handle_stat},
    {TF_OP_MKDIR, "mkdir", 1, TF_REQ_MKDIR_PARENTS, handle_mkdir},
    {TF_OP_REMOVE, "remove", 1, 0, handle_remove},
    {TF_OP_RENAME, "rename", 1, TF_REQ_RENAME_NOREPLACE, handle_rename},
    {TF_OP_LISTDIR, "listdir", 0, TF_REQ_LIST_RECURSIVE, handle_listdir},
};

const tree_op *tf__sess_find_tree_op(int op)
{
    for (size_t i = 0; i < sizeof tree_ops / sizeof tree_ops[0]; i++)
        if (tree_ops[i].op == op)
            return &tree_ops[i];
    return NULL;
}

/* The one place every tree request passes: the rights, then the op. */
void tf__sess_handle_tree(session *s, const tree_op *t, const tf_wire_request *q)
{
    if (t->writes && opts(s)->value[TF_OPT_READ_ONLY]) {
        tf__fail(&s->req->err, TF_EACCES, "the server is read-only");
        tf__sess_reply_failure(s, TF_EACCES, AFTER_IDLE);
        return;
    }
    t->handle(s, q);
}
