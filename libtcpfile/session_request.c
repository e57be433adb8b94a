/*
 * session_request.c - one request's head: its name and path checked, its
 * rights, and the dispatch to the handler of its operation.
 */
#include <string.h>

#include "groupcommit.h"
#include "session_internal.h"
#include "walk.h"

/* ---- requests ------------------------------------------------------------------ */

/* The longest name a request may carry: a path with the tree feature. */
size_t tf__sess_request_max_name(const session *s)
{
    return (size_t)opts(s)->value[(s->features & TF_FEATURE_TREE) ? TF_OPT_MAX_PATH
                                                                   : TF_OPT_MAX_NAME_LEN];
}

tf__path_limits tf__sess_path_limits(const session *s)
{
    const tf_options *opt = opts(s);
    tf__path_limits lim = {(size_t)opt->value[TF_OPT_MAX_NAME_LEN],
                           (size_t)opt->value[TF_OPT_MAX_DEPTH],
                           (size_t)opt->value[TF_OPT_MAX_PATH]};
    return lim;
}

/* A path of a TREE request (what = "path", "new path"): the path rules,
   TF_EACCES for the staging directory as any component. */
static int path_check(session *s, const char *p, size_t len, const char *what, tf__err *e)
{
    char why[TF__PATH_WHY_MAX];
    tf__path_limits lim = tf__sess_path_limits(s);
    int rc = tf__path_check_bytes(p, len, &lim, why, sizeof why);
    if (rc == TF_EINVAL)
        return tf__fail(e, rc, "bad %s: %s", what, why);
    if (rc != TF_OK)
        return tf__fail(e, rc, "%s", why);
    return TF_OK;
}

int tf__sess_check_path(session *s, const char *p, size_t len, const char *what)
{
    return path_check(s, p, len, what, &s->req->err);
}

int tf__sess_name_check(session *s, const tf_wire_request *q, tf__err *e)
{
    if (s->features & TF_FEATURE_TREE)
        return path_check(s, q->name, q->name_len, "path", e);
    const char *why;
    size_t max = (size_t)opts(s)->value[TF_OPT_MAX_NAME_LEN];
    if (tf__name_check_bytes(q->name, q->name_len, max, &why) != TF_OK)
        return tf__fail(e, TF_EINVAL, "bad name: %s (at most %zu bytes)", why, max);
    /* A valid name, but the storage's own: never served nor replaced. */
    const char *own = storage(s)->reserved;
    if (own && q->name_len == strlen(own) && memcmp(q->name, own, q->name_len) == 0)
        return tf__fail(e, TF_EACCES,
                        "\"%s\" is reserved for the server's uploads in progress", own);
    return TF_OK;
}

int tf__sess_check_name(session *s, const tf_wire_request *q)
{
    return tf__sess_name_check(s, q, &s->req->err);
}

/* Whether a decoded request is one this version can serve. Anything else
   leaves the stream in an unknown state: the reply closes the connection. */
static int request_valid(session *s, const tf_wire_request *q)
{
    tf__err *e = &s->req->err;
    int resume = (s->features & TF_FEATURE_RESUME) != 0;
    const tree_op *t =
        (s->features & TF_FEATURE_TREE) ? tf__sess_find_tree_op(q->op) : NULL;
    if (t) {
        if (q->flags & ~t->flags)
            return tf__fail(e, TF_EPROTO, "unknown %s flags 0x%02x", t->label,
                            (unsigned)q->flags);
        if (q->offset != 0)
            return tf__fail(e, TF_EPROTO, "an offset needs get and resume");
        size_t to_len;
        tf__wire_request_to(q, &to_len);
        if (q->op == TF_OP_RENAME ? to_len == 0 : q->size != 0)
            return tf__fail(e, TF_EPROTO, q->op == TF_OP_RENAME
                                              ? "a rename's size is its new path's length, "
                                                "1..4096"
                                              : "a size is only allowed on put and rename");
        return TF_OK;
    }
    if (q->op != TF_OP_GET && q->op != TF_OP_PUT && q->op != TF_OP_LIST)
        return tf__fail(e, TF_EPROTO, "unknown operation %u", (unsigned)q->op);
    uint8_t known = TF_REQ_UPLOAD_KEY | TF_REQ_STREAM;
    if (q->op == TF_OP_PUT && (s->features & TF_FEATURE_PUTX))
        known |= TF_REQ_PUTX_MASK;
    if (q->flags & ~known)
        return tf__fail(e, TF_EPROTO, "unknown request flags 0x%02x", (unsigned)q->flags);
    /* A pipelined put's payload follows at once: from byte 0, of a known
       size, so never resumed nor streamed. */
    if ((q->flags & TF_REQ_NO_GOAHEAD) && (q->flags & (TF_REQ_UPLOAD_KEY | TF_REQ_STREAM)))
        return tf__fail(e, TF_EPROTO, "no-go-ahead excludes an upload key and streaming");
    if ((q->flags & TF_REQ_SKIP_SAME) && (q->flags & TF_REQ_STREAM))
        return tf__fail(e, TF_EPROTO, "skip-if-same needs the size and digest up front");
    if ((q->flags & TF_REQ_UPLOAD_KEY) && (q->op != TF_OP_PUT || !resume))
        return tf__fail(e, TF_EPROTO, "an upload key needs put and resume");
    if ((q->flags & TF_REQ_STREAM) &&
        (q->op != TF_OP_PUT || !(s->features & TF_FEATURE_STREAM) ||
         (q->flags & TF_REQ_UPLOAD_KEY) || q->size != 0))
        return tf__fail(e, TF_EPROTO, "a streamed upload needs put, the stream feature, "
                                      "size 0 and no upload key");
    if (q->offset != 0 && (q->op != TF_OP_GET || !resume))
        return tf__fail(e, TF_EPROTO, "an offset needs get and resume");
    if (q->op != TF_OP_PUT && q->size != 0)
        return tf__fail(e, TF_EPROTO, "a size is only allowed on put");
    return TF_OK;
}

void tf__sess_on_request(session *s)
{
    if (s->ctx->auth && s->in[0] == TF_OP_AUTH && tf__group_pending(s->group)) {
        tf__sess_group_send(s);
        return;
    }
    if (s->ctx->auth && s->in[0] == TF_OP_AUTH) {
        tf__sess_on_auth(s); /* a frame of its own (docs/protocol.md, 4b) */
        return;
    }
    size_t max_name = tf__sess_request_max_name(s);
    tf_wire_request q;
    long n = tf__wire_decode_request(s->in, s->in_len, max_name, &q);
    if (n == TF_WIRE_NEED_MORE && s->in_len >= TF_WIRE_REQUEST_SIZE && q.op == TF_OP_PUT &&
        (q.flags & TF_REQ_PUTX_MASK) && !(s->features & TF_FEATURE_PUTX)) {
        /* Without PUTX these bits are unknown flags, not an extension block
           to wait for: the request cannot be framed, and is answered now. */
        request *r = tf__sess_request_begin(s, q.op);
        if (!r) {
            tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
            return;
        }
        tf__fail(&r->err, TF_EPROTO, "unknown request flags 0x%02x", (unsigned)q.flags);
        tf__sess_reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    }
    if (n == TF_WIRE_NEED_MORE) {
        if (s->in_len >= TF_WIRE_REQUEST_SIZE &&
            tf__sess_grow_input(s, TF_WIRE_REQUEST_SIZE + tf__wire_request_tail(&q)) != 0)
            tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    if (tf__group_pending(s->group) && (n < 0 || !tf__sess_group_takes(s, &q))) {
        /* The batch ends here: its answers first, then this request
           (still buffered) from sent(). */
        tf__sess_group_send(s);
        return;
    }
    request *r = tf__sess_request_begin(s, q.op);
    if (!r) {
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    /* Framing first: a request this version cannot frame safely (unknown
       op or flags, a stray size, offset or key) is closed on, whatever its
       name, since skipping name_len bytes of it could land anywhere. */
    if (n == TF_ETOOBIG && request_valid(s, &q) != TF_OK) {
        tf__sess_reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    }
    if (n == TF_ETOOBIG) {
        /* Still well framed: answer, then skip the name as it arrives. The
           skip is timed as a request in flight (parse_input). */
        s->skip = TF_WIRE_REQUEST_SIZE + tf__wire_request_tail(&q);
        tf__fail(&r->err, TF_EINVAL,
                 "bad name: the name is longer than the limit (at most %zu bytes)",
                 max_name);
        tf__sess_drop_skipped(s);
        tf__sess_reply_failure(s, TF_EINVAL, AFTER_IDLE);
        return;
    }
    /* name_len <= the limit <= TF_WIRE_NAME_MAX (the decoder checked). */
    if (q.name_len)
        memcpy(r->name, q.name, q.name_len);
    r->name[q.name_len] = '\0';
    /* Copy what the handlers need, then free the input for what follows. */
    uint8_t key[TF_UPLOAD_KEY_SIZE];
    if (q.key) {
        memcpy(key, q.key, sizeof key);
        q.key = key;
    }
    uint8_t if_match[TF_WIRE_EXT_DIGEST], same[TF_WIRE_EXT_DIGEST];
    if (q.if_match) {
        memcpy(if_match, q.if_match, sizeof if_match);
        q.if_match = if_match;
    }
    if (q.same) {
        memcpy(same, q.same, sizeof same);
        q.same = same;
    }
    size_t to_len;
    const char *to = tf__wire_request_to(&q, &to_len); /* into s->in, as the name */
    if (to) /* rename: the new path, kept as the name is */
        memcpy(r->to, to, to_len);
    r->to[to_len] = '\0';
    char name[TF_WIRE_NAME_MAX];
    memcpy(name, q.name, q.name_len);
    q.name = name;
    tf__sess_consume_input(s, (size_t)n);
    if (request_valid(s, &q) != TF_OK) {
        tf__sess_reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    }
    if (tf__sess_check_rights(s, q.op) != TF_OK) {
        tf__sess_reply_failure(s, TF_EACCES, AFTER_IDLE);
        return;
    }
    r->qflags = q.flags;
    switch (q.op) {
    case TF_OP_GET:
        tf__sess_handle_get(s, &q);
        break;
    case TF_OP_PUT:
        tf__sess_handle_put(s, &q);
        break;
    case TF_OP_LIST:
        tf__sess_handle_list(s, &q);
        break;
    default:
        tf__sess_handle_tree(s, tf__sess_find_tree_op(q.op),
                             &q); /* request_valid found it */
        break;
    }
}
