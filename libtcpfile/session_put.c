/*
 * session_put.c - put: deciding it (PUTX conditions, resumes), staging
 * the upload, then receiving its body, trailer or stream and committing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "groupcommit.h"
#include "session_internal.h"

/* ---- put: deciding, staging ------------------------------------------------------- */

/* The resumable temporary for an upload key, name and size: a digest of
   the three, so one key cannot reach another name's upload, and bytes kept
   for one size are never resumed for another (a changed file). */
static void resume_stem(const request *r, char *out, size_t len)
{
    tf__digest d = {0};
    uint8_t h[TF_DIGEST_SIZE];
    out[0] = '\0';
    if (tf__digest_begin(&d, 1) != TF_OK)
        return;
    tf__digest_update(&d, r->key, TF_UPLOAD_KEY_SIZE);
    tf__digest_update(&d, r->name, strlen(r->name));
    uint8_t size[8];
    for (int i = 0; i < 8; i++)
        size[i] = (uint8_t)(r->size >> (56 - 8 * i));
    tf__digest_update(&d, size, sizeof size);
    tf__digest_final(&d, h);
    tf__digest_end(&d);
    for (int i = 0; i < TF_DIGEST_SIZE && (size_t)(2 * i + 2) < len; i++)
        snprintf(out + 2 * i, len - 2 * (size_t)i, "%02x", h[i]);
}

/* Into the payload: with NO_GOAHEAD at once (no head goes out: the send
   step finds nothing to send and moves on), else after the go-ahead. */
static void put_receive(session *s, int goahead)
{
    request *r = s->req;
    r->left = r->size - r->have;
    if (goahead)
        tf__sess_queue_head(s, TF_OK, r->have, 0, NULL); /* go ahead, from byte `have` */
    tf__sess_start_send(s, AFTER_RECV_BODY);
}

/* Refuses a put. With NO_GOAHEAD its payload and trailer are on their way:
   they are read and dropped (timed as a request in flight), then the
   refusal is the answer, so the connection stays in step. */
void tf__sess_put_refuse(session *s, int rc)
{
    request *r = s->req;
    if (r->body_fd >= 0) {
        storage(s)->ops->close_read(storage(s), r->body_fd);
        r->body_fd = -1;
    }
    if (!(r->putx & TF_REQ_NO_GOAHEAD)) {
        tf__sess_reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    if (tf__sess_ensure_buf(r) != TF_OK) {
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    r->drain = 1;
    r->drain_rc = rc;
    storage(s)->ops->abort(storage(s), &r->up);
    r->have = 0;
    put_receive(s, 0);
}

/* The second half of a put, once the current version's digest is known
   (IF_MATCH, SKIP_SAME): the conditions, skip-if-same, the parents, the
   target and the staging, then the go-ahead (or straight into the payload
   with NO_GOAHEAD). */
static void put_same(session *s);
static void put_mtime_work(session *s);
static void put_stage_work(session *s);
static void put_staged(session *s);
static void put_hold(session *s);

void tf__sess_put_decide(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    int rc = TF_OK;
    if (r->putx & TF_REQ_IF_MATCH) {
        if (!r->cur_exists)
            rc = tf__fail(&r->err, TF_ECONFLICT,
                          "\"%s\" does not exist, so it is not the version named", r->name);
        else if (memcmp(r->cur_digest, r->if_match, TF_DIGEST_SIZE) != 0)
            rc = tf__fail(&r->err, TF_ECONFLICT,
                          "\"%s\" is not the version named (its digest differs)", r->name);
        else
            r->matched = 1; /* file_id: the version commit_cond checks again */
    }
    if (rc == TF_OK && (r->putx & TF_REQ_SKIP_SAME) && r->cur_exists &&
        r->cur_size == r->size && memcmp(r->cur_digest, r->same, TF_DIGEST_SIZE) == 0) {
        storage(s)->ops->close_read(st, r->body_fd);
        r->body_fd = -1;
        r->disk_rc = TF_OK;
        if (r->putx & TF_REQ_MTIME)
            tf__sess_disk_call(s, put_mtime_work, put_same);
        else
            put_same(s);
        return;
    }
    if (r->body_fd >= 0) {
        st->ops->close_read(st, r->body_fd);
        r->body_fd = -1;
    }
    if (rc != TF_OK) {
        tf__sess_put_refuse(s, rc);
        return;
    }
    if (r->grouped && !r->keyed && tf__group_can_hold(s->group, r->size)) {
        put_hold(s);
        return;
    }
    tf__sess_disk_call(s, put_stage_work, put_staged);
}

/* A small grouped put: no job of its own. Its payload is kept whole in
   memory and given to the group, whose commit job stages, writes and
   publishes it with the others (tf__group_commit); the target is checked
   there, at the publishing, as it always is. */
static void put_hold(session *s)
{
    request *r = s->req;
    if (tf__sess_ensure_buf(r) != TF_OK ||
        !(r->wbuf = malloc(r->size ? (size_t)r->size : 1))) {
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    r->held = 1;
    put_receive(s, 0);
}

/* SKIP_SAME found the bytes there (MTIME: given their time first). */
static void put_same(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        tf__sess_put_refuse(s, r->disk_rc);
        return;
    }
    r->same_hit = 1;
    if (r->putx & TF_REQ_NO_GOAHEAD) {
        r->drain = 1;
        if (tf__sess_ensure_buf(r) != TF_OK) {
            tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
            return;
        }
        put_receive(s, 0);
        return;
    }
    /* Already there: this answer ends the put, no payload follows. */
    r->result = TF_OK;
    tf__sess_queue_head(s, TF_OK, r->size, TF_RESP_SAME, NULL);
    tf__sess_start_send(s, AFTER_IDLE);
}

static void put_mtime_work(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    r->disk_rc = st->ops->set_mtime(st, r->name, r->mtime_sec, r->mtime_nsec, &r->err);
}

/* On the disk pool: the parents, the target, the staging. */
static void put_stage_work(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    const tf_options *opt = opts(s);
    int rc = TF_OK;
    if (r->putx & TF_REQ_PARENTS)
        rc = tf__storage_make_parents(st, r->name, &r->err);
    /* Refuse before the data moves, not after. */
    if (rc == TF_OK)
        rc = st->ops->check_target(st, r->name,
                                   (r->putx & TF_REQ_IF_ABSENT)
                                       ? 0
                                       : (int)opt->value[TF_OPT_OVERWRITE],
                                   &r->err);
    if (rc == TF_OK)
        rc = tf__sess_ensure_buf(r);
    if (rc == TF_OK && r->keyed) {
        char stem[2 * TF_DIGEST_SIZE + 1];
        resume_stem(r, stem, sizeof stem);
        rc = st->ops->stage_resumable(st, stem, r->size, &r->up, &r->have, &r->has_key,
                                      &r->err);
    } else if (rc == TF_OK && !r->stream) {
        rc = tf__storage_stage_sized(st, r->name, r->size, &r->up, &r->err);
    } else if (rc == TF_OK) {
        rc = tf__storage_stage_for(st, r->name, &r->up, &r->err);
    }
    r->disk_rc = rc;
}

static void put_staged(session *s)
{
    request *r = s->req;
    if (r->disk_rc == TF_OK && s->ctx->disk_queue.on && !(r->wbuf = malloc(XFER_BUF)))
        r->disk_rc = tf__fail(&r->err, TF_ENOMEM, "out of memory");
    if (r->disk_rc != TF_OK) {
        tf__sess_put_refuse(s, r->disk_rc);
        return;
    }
    /* The partial's bytes go into the digest before the go-ahead, in
       slices (continue_send). */
    if (r->have && tf__digest_on(&r->digest))
        r->prefix_to = r->have;
    put_receive(s, !(r->putx & TF_REQ_NO_GOAHEAD));
}

/* IF_ABSENT, checked before the data moves (and again at the commit). */
static int check_absent(session *s)
{
    request *r = s->req;
    tf__fstat fs;
    tf__err quiet = {{0}};
    int rc = storage(s)->ops->stat(storage(s), r->name, &fs, &quiet);
    if (rc == TF_OK)
        return tf__fail(&r->err, TF_EEXIST, "\"%s\" already exists (if-absent)", r->name);
    if (rc == TF_ENOENT || rc == TF_ENOTDIR)
        return TF_OK; /* absent; a parent in the way fails at the target check */
    tf__err_take(&r->err, &quiet);
    return rc;
}

/* IF_MATCH and SKIP_SAME need the current version and its digest: the
   remembered one, or one computed in slices (continue_send) before the
   put is decided. Returns 1 when the hashing has started. */
static int open_current(session *s, int *rc)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    tf__err quiet = {{0}};
    int orc = st->ops->open_read(st, r->name, &r->body_fd, &r->cur_size, r->file_id, &quiet);
    if (orc != TF_OK) {
        r->body_fd = -1;
        /* Nothing (or nothing readable) there: not the version IF_MATCH
           names, and not the same bytes; the target check says the rest. */
        return 0;
    }
    r->cur_exists = 1;
    if (st->ops->digest_load(st, r->body_fd, r->file_id, r->cur_digest))
        return 0;
    if (tf__digest_begin(&r->cur, 1) != TF_OK) {
        *rc = tf__fail(&r->err, TF_ENOMEM, "out of memory");
        return 0;
    }
    r->cur_hashing = 1;
    r->hashed_to = 0;
    r->prefix_to = r->cur_size; /* 0: continue_send decides at once */
    return 1;
}

static void put_probe_work(session *s);
static void put_probed(session *s);

void tf__sess_handle_put(session *s, const tf_wire_request *q)
{
    request *r = s->req;
    const tf_options *opt = opts(s);
    uint64_t max_upload = (uint64_t)opt->value[TF_OPT_MAX_UPLOAD];
    tf__storage *st = storage(s);
    /* Kept in the request: deciding may wait for a digest. */
    r->putx = q->flags & TF_REQ_PUTX_MASK;
    r->size = q->size;
    r->stream = (q->flags & TF_REQ_STREAM) != 0;
    if (q->key) {
        r->keyed = 1;
        memcpy(r->key, q->key, TF_UPLOAD_KEY_SIZE);
    }
    if (q->if_match)
        memcpy(r->if_match, q->if_match, TF_DIGEST_SIZE);
    if (q->same)
        memcpy(r->same, q->same, TF_DIGEST_SIZE);
    r->mtime_sec = q->mtime_sec;
    r->mtime_nsec = q->mtime_nsec;
    r->grouped = tf__sess_group_takes(s, q);
    int rc = tf__sess_check_name(s, q);
    if (rc == TF_OK && (r->putx & TF_REQ_IF_ABSENT) && (r->putx & TF_REQ_IF_MATCH))
        rc = tf__fail(&r->err, TF_EINVAL, "if-absent and if-match exclude each other");
    if (rc == TF_OK && (r->putx & TF_REQ_MTIME) && r->mtime_nsec >= 1000000000u)
        rc = tf__fail(&r->err, TF_EINVAL, "mtime nanoseconds %u out of range",
                      (unsigned)r->mtime_nsec);
    if (rc == TF_OK && r->putx && (!st->ops->commit_cond || !st->ops->set_mtime))
        rc = tf__fail(&r->err, TF_EINTERNAL, "this storage does not take put extensions");
    if (rc == TF_OK && opt->value[TF_OPT_READ_ONLY])
        rc = tf__fail(&r->err, TF_EACCES, "the server is read-only");
    if (rc == TF_OK && max_upload && q->size > max_upload)
        rc = tf__fail(&r->err, TF_ETOOBIG, "%llu bytes is over the upload limit of %llu",
                      (unsigned long long)q->size, (unsigned long long)max_upload);
    if (rc != TF_OK) {
        tf__sess_put_refuse(s, rc);
        return;
    }
    if (r->putx & (TF_REQ_IF_ABSENT | TF_REQ_IF_MATCH | TF_REQ_SKIP_SAME))
        tf__sess_disk_call(s, put_probe_work, put_probed);
    else
        tf__sess_put_decide(s);
}

/* On the disk pool: IF_ABSENT's look, the current version for IF_MATCH
   and SKIP_SAME. */
static void put_probe_work(session *s)
{
    request *r = s->req;
    int rc = TF_OK;
    r->disk_size = 0; /* 1: the current version's digest is to be hashed */
    if (r->putx & TF_REQ_IF_ABSENT)
        rc = check_absent(s);
    if (rc == TF_OK && (r->putx & (TF_REQ_IF_MATCH | TF_REQ_SKIP_SAME)))
        r->disk_size = (uint64_t)open_current(s, &rc);
    r->disk_rc = rc;
}

static void put_probed(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        tf__sess_put_refuse(s, r->disk_rc);
        return;
    }
    if (r->disk_size) {
        /* The send state drives the slices (continue_send), one per turn of
           the loop; nothing is sent until put_decide. */
        tf__sess_start_send(s, AFTER_IDLE);
        return;
    }
    tf__sess_put_decide(s);
}

/* ---- receiving a put ------------------------------------------------------------ */

static void store(tf__storage *st, request *r, const uint8_t *p, size_t n)
{
    tf__digest_update(&r->digest, p, n);
    /* A write failure (a full disk) does not stop the reading: the rest is
       drained so the stream stays in step, and the client hears why. The
       bytes are written on the disk pool (flush_writes): even the local
       disk's write(2) and its writeback start stall for tens of ms under
       dirty-page throttling (README, "Where the disk work runs"). */
    if (r->store_rc == TF_OK && !r->drain && r->wbuf) {
        memcpy(r->wbuf + r->wlen, p, n);
        r->wlen += n;
    } else if (r->store_rc == TF_OK && !r->drain) {
        r->store_rc = st->ops->write(st, r->up, p, n, &r->store_err);
    }
    if (!r->stream)
        r->left -= n;
    r->bytes += n;
}

static void put_commit_work(session *s);
static void put_committed(session *s);


/* On the disk pool: the bytes store gathered. */
static void write_work(session *s)
{
    request *r = s->req;
    if (r->store_rc == TF_OK)
        r->store_rc = storage(s)->ops->write(storage(s), r->up, r->wbuf, r->wlen, &r->store_err);
    r->wlen = 0;
}

/* The payload is written on the disk pool, the bytes of one read at a
   time, handed over in wbuf (the socket is not read meanwhile). Returns 1
   when a job took them: receive_body runs again after it. */
static int flush_writes(session *s)
{
    if (!s->req->wlen || s->req->held)
        return 0;
    tf__sess_disk_call(s, write_work, tf__sess_receive_body);
    return 1;
}

static void finish_put(session *s, int verdict, const tf__err *verdict_err)
{
    request *r = s->req;
    if (r->grouped && r->drain) {
        r->grouped = 0;
        tf__sess_group_put(s, r->same_hit ? TF_OK : r->drain_rc,
                           r->same_hit ? TF_RESP_SAME : 0);
        return;
    }
    if (r->drain) {
        /* A pipelined put decided before its payload came: the payload was
           dropped, and the answer is that decision, whatever the trailer. */
        if (!r->same_hit) {
            tf__sess_reply_failure(s, r->drain_rc, AFTER_IDLE);
            return;
        }
        r->result = TF_OK;
        tf__sess_queue_head(s, TF_OK, r->size, TF_RESP_SAME, NULL);
        tf__sess_start_send(s, AFTER_IDLE);
        return;
    }
    int rc = r->store_rc;
    if (verdict != TF_OK) {
        rc = verdict;
        tf__err_take(&r->err, verdict_err);
    } else if (rc != TF_OK) {
        tf__err_take(&r->err, &r->store_err);
    }
    if (r->grouped) {
        r->grouped = 0; /* set again once the group holds its answer */
        tf__sess_group_put(s, rc, 0);
        return;
    }
    r->disk_rc = rc;
    tf__sess_disk_call(s, put_commit_work, put_committed);
}

/* On the disk pool: publishes the upload (fsync, rename), or removes it
   when disk_rc says it failed. */
static void put_commit_work(session *s)
{
    request *r = s->req;
    int rc = r->disk_rc;
    /* The digest just verified is not remembered: the file was written a
       moment ago, and an in-place change within the same clock tick, at
       the same size, would leave the same timestamps and a stale digest
       that every later get would fail on. The first get after it has
       settled remembers it (build_trailer). */
    int overwrite = (int)opts(s)->value[TF_OPT_OVERWRITE];
    if (rc == TF_OK && r->putx) {
        tf__commit_cond cond = {
            .overwrite = (r->putx & TF_REQ_IF_ABSENT) ? 0 : overwrite,
            .expect_id = r->matched ? r->file_id : NULL,
            .set_mtime = (r->putx & TF_REQ_MTIME) != 0,
            .mtime_sec = r->mtime_sec,
            .mtime_nsec = r->mtime_nsec,
        };
        rc = storage(s)->ops->commit_cond(storage(s), &r->up, r->name, &cond, &r->err);
    } else if (rc == TF_OK) {
        rc = storage(s)->ops->commit(storage(s), &r->up, r->name, overwrite, &r->err);
    } else
        storage(s)->ops->abort(storage(s), &r->up);
    r->disk_rc = rc;
}

static void put_committed(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        tf__sess_reply_failure(s, r->disk_rc, AFTER_IDLE);
        return;
    }
    r->result = TF_OK;
    tf__sess_queue_head(s, TF_OK, r->size, 0, NULL);
    tf__sess_start_send(s, AFTER_IDLE);
}

void tf__sess_receive_trailer(session *s)
{
    request *r = s->req;
    tf_wire_trailer t;
    long n = tf__wire_decode_trailer(s->in, s->in_len, &t);
    if (n == TF_WIRE_NEED_MORE)
        return;
    if (n < 0) {
        /* Not a trailer that ends this upload cleanly: what came before it
           is not to be trusted, so not kept for resuming either. */
        storage(s)->ops->abort(storage(s), &r->up);
        tf__sess_fail_session(s, TF_EPROTO, "malformed trailer");
        return;
    }
    int verdict = TF_OK;
    tf__err verdict_err = {{0}};
    if (t.status != 0) {
        verdict = tf__wire_code(t.status);
        tf__fail(&verdict_err, verdict, "the client abandoned the upload: %s",
                 tf_strerror(verdict));
    } else if (tf__digest_on(&r->digest) != (t.digest_len == TF_DIGEST_SIZE) ||
               (t.digest_len && t.digest_len != TF_DIGEST_SIZE)) {
        /* Well framed but not what was negotiated: say so, then close. */
        tf__sess_consume_input(s, (size_t)n);
        storage(s)->ops->abort(storage(s), &r->up);
        tf__fail(&r->err, TF_EPROTO, "the trailer does not carry the negotiated checksum");
        if (r->grouped) { /* an answer now would overtake the group's */
            tf__sess_fail_session(s, TF_EPROTO, r->err.msg);
            return;
        }
        tf__sess_reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    } else if (t.digest_len) {
        uint8_t mine[TF_DIGEST_SIZE];
        tf__digest_final(&r->digest, mine);
        if (memcmp(mine, t.digest, TF_DIGEST_SIZE) != 0)
            verdict = tf__fail(&verdict_err, TF_ECHECKSUM,
                               "checksum mismatch: the upload was corrupted in transit");
    }
    tf__sess_consume_input(s, (size_t)n);
    finish_put(s, verdict, &verdict_err);
}

static void enter_trailer(session *s)
{
    s->state = S_RECV_TRAILER;
    tf__sess_receive_trailer(s);
}

/*
 * A streamed put's payload (TF_REQ_STREAM): chunks, each a u32 length and
 * that many bytes, until a length 0. Takes what it can of p[0..n) and
 * returns how much; stops right after the zero-length head, so that what
 * follows (the trailer) stays for the input buffer. The upload limit is
 * checked on each chunk's head, before its bytes are stored; going over it
 * (or a malformed head) replies and closes at once, since the stream's
 * end may be far: -1 then.
 */
static long stream_take(session *s, const uint8_t *p, size_t n)
{
    request *r = s->req;
    uint64_t max_upload = (uint64_t)opts(s)->value[TF_OPT_MAX_UPLOAD];
    size_t took = 0;
    while (took < n && !r->stream_end) {
        if (r->chunk_left) {
            size_t k = n - took < r->chunk_left ? n - took : r->chunk_left;
            store(storage(s), r, p + took, k);
            r->chunk_left -= (uint32_t)k;
            took += k;
            continue;
        }
        size_t k = TF_WIRE_CHUNK_HEAD_SIZE - r->chunk_head_len;
        k = n - took < k ? n - took : k;
        memcpy(r->chunk_head + r->chunk_head_len, p + took, k);
        r->chunk_head_len += k;
        took += k;
        if (r->chunk_head_len < TF_WIRE_CHUNK_HEAD_SIZE)
            break;
        r->chunk_head_len = 0;
        uint32_t len;
        int rc = TF_OK;
        if (tf__wire_decode_chunk_head(r->chunk_head, TF_WIRE_CHUNK_HEAD_SIZE, &len) < 0)
            rc = tf__fail(&r->err, TF_EPROTO, "a chunk longer than %u bytes",
                          (unsigned)TF_WIRE_CHUNK_MAX);
        else if (max_upload && r->bytes + len > max_upload)
            rc = tf__fail(&r->err, TF_ETOOBIG,
                          "the stream went over the upload limit of %llu bytes",
                          (unsigned long long)max_upload);
        if (rc != TF_OK) {
            storage(s)->ops->abort(storage(s), &r->up);
            tf__sess_reply_failure(s, rc, AFTER_CLOSE);
            return -1;
        }
        if (len == 0)
            r->stream_end = 1;
        r->chunk_left = len;
    }
    return (long)took;
}

static void receive_stream(session *s)
{
    request *r = s->req;
    if (s->in_len) {
        long k = stream_take(s, s->in, s->in_len);
        if (k < 0)
            return;
        tf__sess_consume_input(s, (size_t)k);
        if (flush_writes(s))
            return;
    }
    size_t budget = EVENT_BUDGET;
    while (!r->stream_end && budget > 0) {
        /* Never past the zero-length head: the trailer is the input's. */
        size_t want = r->chunk_left ? (r->chunk_left < XFER_BUF ? r->chunk_left : XFER_BUF)
                                    : TF_WIRE_CHUNK_HEAD_SIZE - r->chunk_head_len;
        ssize_t n = tf__conn_read(&s->conn, r->buf, want);
        if (n == TF__IO_AGAIN)
            return;
        if (n <= 0) {
            char why[160];
            snprintf(why, sizeof why,
                     "the client went away after %llu bytes of a streamed upload",
                     (unsigned long long)r->bytes);
            tf__sess_fail_session(s, TF_ENET, why);
            return;
        }
        if (stream_take(s, r->buf, (size_t)n) < 0)
            return;
        if (tf__sess_progressed(s, (size_t)n) || flush_writes(s))
            return;
        budget -= (size_t)n < budget ? (size_t)n : budget;
    }
    if (r->stream_end) {
        r->size = r->bytes;
        enter_trailer(s);
    }
}

void tf__sess_receive_body(session *s)
{
    request *r = s->req;
    if (r->stream) {
        receive_stream(s);
        return;
    }
    /* Bytes that arrived with the request come first. */
    if (s->in_len && r->left) {
        size_t n = s->in_len < r->left ? s->in_len : (size_t)r->left;
        store(storage(s), r, s->in, n);
        tf__sess_consume_input(s, n);
        if (flush_writes(s))
            return;
    }
    size_t budget = EVENT_BUDGET;
    while (r->left > 0 && budget > 0) {
        size_t want = r->left < XFER_BUF ? (size_t)r->left : XFER_BUF;
        ssize_t n = tf__conn_read(&s->conn, r->buf, want);
        if (n == TF__IO_AGAIN)
            return;
        if (n <= 0) {
            char why[160];
            snprintf(why, sizeof why, "the client went away with %llu of %llu bytes sent%s",
                     (unsigned long long)(r->size - r->left), (unsigned long long)r->size,
                     r->has_key ? " (kept for resuming)" : "");
            tf__sess_fail_session(s, TF_ENET, why);
            return;
        }
        store(storage(s), r, r->buf, (size_t)n);
        if (tf__sess_progressed(s, (size_t)n) || flush_writes(s))
            return;
        budget -= (size_t)n < budget ? (size_t)n : budget;
    }
    if (r->left == 0)
        enter_trailer(s);
}
