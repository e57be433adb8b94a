/*
 * session_send.c - output: a response's head, body (a file, memory, a
 * listing's chunks) and trailer, sent a step at a time as the transport
 * takes them; a resumed transfer's prefix hashed in slices first.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "groupcommit.h"
#include "session_internal.h"
#include "transport_tls.h"
#include "walk.h"

/* sendfile's largest step: bounded so EVENT_BUDGET holds. */
#define SENDFILE_STEP ((size_t)2 << 20)
/* A resumed transfer's prefix is hashed this much per job of the disk pool. */
#define HASH_SLICE ((uint64_t)1 << 20)

/* ---- output ------------------------------------------------------------------- */

/* The tree's codes (TF_ENOTDIR, TF_EISDIR, TF_ENOTEMPTY) travel only to a
   client that uses TREE; an older one hears what version 1 said. */
int tf__sess_code_for_peer(const session *s, int code)
{
    if (s->features & TF_FEATURE_TREE)
        return code;
    switch (code) {
    case TF_ENOTDIR:
        return TF_ENOENT;
    case TF_EISDIR:
        return TF_EACCES;
    case TF_ENOTEMPTY:
        return TF_EEXIST;
    default:
        return code;
    }
}

void tf__sess_queue_head(session *s, int code, uint64_t size, uint8_t flags,
                         const char *msg)
{
    request *r = s->req;
    code = tf__sess_code_for_peer(s, code);
    size_t mlen = msg ? strlen(msg) : 0;
    if (mlen > TF_WIRE_MESSAGE_MAX)
        mlen = TF_WIRE_MESSAGE_MAX;
    tf_wire_response resp = {.op = r->op, .flags = flags, .status = tf__wire_status(code),
                             .size = size, .message = msg, .message_len = (uint16_t)mlen};
    r->head_len = (size_t)tf__wire_encode_response(r->head, sizeof r->head, &resp);
    r->head_pos = 0;
}


/* Replies with the failure recorded in the request. */
void tf__sess_reply_failure(session *s, int code, after_send after)
{
    request *r = s->req;
    r->result = code;
    tf__sess_queue_head(s, code, 0, 0, r->err.msg[0] ? r->err.msg : tf_strerror(code));
    r->body_left = 0;
    r->has_trailer = 0;
    tf__sess_start_send(s, after);
}

void tf__sess_build_trailer(session *s)
{
    request *r = s->req;
    uint8_t digest[TF_DIGEST_SIZE];
    tf_wire_trailer t = {.status = tf__wire_status(r->body_rc)};
    if (r->body_rc == TF_OK && r->cached) {
        t.digest = r->cached_digest;
        t.digest_len = TF_DIGEST_SIZE;
    } else if (r->body_rc == TF_OK && tf__digest_on(&r->digest)) {
        tf__digest_final(&r->digest, digest);
        t.digest = digest;
        t.digest_len = TF_DIGEST_SIZE;
        /* The whole file is hashed (a resumed get's prefix too): remember
           it, so that the next get, from any offset, is zero-copy and hashes
           nothing (a small one is cheaper to hash again than to look up). */
        if (r->body_fd >= 0 && !r->gathered)
            storage(s)->ops->digest_store(storage(s), r->body_fd, digest, r->file_id);
    }
    r->tail_len = (size_t)tf__wire_encode_trailer(r->tail, sizeof r->tail, &t);
    r->tail_pos = 0;
}

/* Sends from memory; returns bytes sent, 0 when the transport is full, or
   -1 (errno and s->conn.err set) when the connection failed. */
static ssize_t send_bytes(session *s, const void *p, size_t n, int more)
{
    ssize_t k = tf__conn_write(&s->conn, p, n, more ? TF__IO_MORE : 0);
    return k == TF__IO_AGAIN ? 0 : k;
}

/* The file failed or shrank mid-body: the frame is completed with zeros
   and the trailer carries the failure. */
static void body_failed(request *r, int code, int errnum, const char *what)
{
    if (errnum)
        tf__fail_errno(&r->err, code, errnum, "%s", what);
    else
        tf__fail(&r->err, code, "%s", what);
    r->body_rc = code;
    if (tf__sess_ensure_buf(r) == TF_OK)
        memset(r->buf, 0, XFER_BUF);
    r->buf_pos = r->buf_end = 0;
}

/* Reads the file's next chunk into the request's buffer and hashes it, so
   that the digest describes exactly what is read for sending. Returns 1;
   0 when the file failed (body_failed: zeros follow); -1 without memory. */
static int read_chunk(tf__storage *st, request *r)
{
    if (tf__sess_ensure_buf(r) != TF_OK)
        return -1;
    size_t want = r->body_left < XFER_BUF ? (size_t)r->body_left : XFER_BUF;
    ssize_t n = st->ops->read_at(st, r->body_fd, r->buf, want, r->body_off);
    if (n <= 0) {
        body_failed(r, TF_EIO, n < 0 ? errno : 0,
                    n < 0 ? "reading the file failed" : "the file shrank while being sent");
        return 0;
    }
    tf__digest_update(&r->digest, r->buf, (size_t)n);
    r->buf_pos = 0;
    r->buf_end = (size_t)n;
    r->hashed_to = r->body_off + (uint64_t)n;
    return 1;
}

/* The body's strategies, one function each: memory (a listing), zeros
   after the file failed, sendfile, hash-then-sendfile, and the copy path
   (pread + send) for files sendfile refuses. Each returns bytes sent (0:
   the transport is full, or the body just failed and zeros follow), or -1
   when the connection failed. */

static ssize_t send_mem_step(session *s)
{
    request *r = s->req;
    size_t n = r->body_left < SENDFILE_STEP ? (size_t)r->body_left : SENDFILE_STEP;
    ssize_t k = send_bytes(s, r->body_mem + r->body_off, n, 0);
    if (k > 0 && !r->walk) /* a listdir hashes its entries, not its chunk heads */
        tf__digest_update(&r->digest, r->body_mem + r->body_off, (size_t)k);
    return k;
}

static ssize_t send_zeros_step(session *s)
{
    request *r = s->req;
    if (!r->buf)
        return -1; /* no memory for the zeros: give up on the connection */
    size_t n = r->body_left < XFER_BUF ? (size_t)r->body_left : XFER_BUF;
    return send_bytes(s, r->buf, n, 0);
}

/* send_body_step's answer when the next bytes must first be read on the
   disk pool (a network store's read_at): continue_send starts the job. */
#define SEND_NEEDS_READ ((ssize_t)-2)

static ssize_t send_copy_step(session *s)
{
    request *r = s->req;
    if (r->buf_pos == r->buf_end) {
        if (storage(s)->network && s->ctx->disk_queue.on)
            return SEND_NEEDS_READ;
        int got = read_chunk(storage(s), r);
        if (got <= 0)
            return got;
    }
    ssize_t k = send_bytes(s, r->buf + r->buf_pos, r->buf_end - r->buf_pos, 0);
    if (k > 0)
        r->buf_pos += (size_t)k;
    return k;
}

/* sendfile of n bytes from body_off; hashed: they are in the buffer too
   (hash-then-sendfile), and go from there should sendfile refuse. */
static ssize_t send_file_step(session *s, size_t n, int hashed)
{
    request *r = s->req;
    /* SIGPIPE is blocked in every thread that runs sessions (see
       tf_server_run), so no per-call masking. */
    ssize_t k = tf__conn_sendfile(&s->conn, r->body_fd, r->body_off, n);
    if (k > 0)
        return k;
    if (k == 0) {
        body_failed(r, TF_EIO, 0, "the file shrank while being sent");
        return 0;
    }
    if (k == TF__IO_AGAIN)
        return 0;
    if (s->conn.err != EINVAL && s->conn.err != ENOSYS && s->conn.err != EIO)
        return -1;
    /* A file system without sendfile, or a read error: the copy path
       tells the two apart. What is hashed already goes from the buffer,
       not hashed twice. */
    r->copy_path = 1;
    r->buf_pos = hashed ? r->buf_end - n : r->buf_end;
    return send_copy_step(s);
}

/* Hash the next chunk as read, then let sendfile move the same bytes: one
   copy fewer than sending from the buffer. Should the file change in place
   between the two, the digest no longer matches what was sent and the
   client gets TF_ECHECKSUM. (A change to a part not read yet is sent and
   hashed as it is then, as before: in-place writers can tear a copy;
   uploads, which rename, cannot.) */
static ssize_t send_hashed_file_step(session *s)
{
    request *r = s->req;
    if (r->body_off == r->hashed_to) {
        int got = read_chunk(storage(s), r); /* kept, should sendfile fail */
        if (got <= 0)
            return got;
    }
    return send_file_step(s, (size_t)(r->hashed_to - r->body_off), 1);
}

/* One step of the body, by strategy. */
static ssize_t send_body_step(session *s)
{
    request *r = s->req;
    if (r->body_mem)
        return send_mem_step(s);
    if (r->body_rc != TF_OK)
        return send_zeros_step(s);
    if (r->copy_path)
        return send_copy_step(s);
    if (tf__digest_on(&r->digest) && !r->cached)
        return send_hashed_file_step(s);
    return send_file_step(s, r->body_left < SENDFILE_STEP ? (size_t)r->body_left
                                                           : SENDFILE_STEP, 0);
}

/* A listdir's entries per chunk, at most (the chunk is r->buf). */
#define WALK_CHUNK ((size_t)64 << 10)

/* A listdir's next entries, read on the disk pool (walk_filled queues
   them). Asked for only when the previous chunk is out, so a chunk is
   produced when the socket has taken the last one: the listing is never
   ahead of the client by more than a chunk. A failed walk lists no more,
   and the trailer carries the failure. */
static void walk_work(session *s)
{
    request *r = s->req;
    size_t len = 0;
    int done = 1;
    int rc = tf__walk_fill(r->walk, r->buf + TF_WIRE_CHUNK_HEAD_SIZE, WALK_CHUNK, &len, &done,
                           &r->err);
    if (rc != TF_OK) {
        r->walk_rc = rc;
        len = 0;
        done = 1;
    }
    r->walk_ended = done;
    if (len)
        tf__digest_update(&r->digest, r->buf + TF_WIRE_CHUNK_HEAD_SIZE, len);
    r->walk_len = len;
}

/* Queues len bytes of entries (0: the end marker) as the body. */
static void walk_queue(request *r, size_t len)
{
    tf__wire_encode_chunk_head(r->buf, TF_WIRE_CHUNK_HEAD_SIZE, (uint32_t)len);
    r->body_mem = r->buf;
    r->body_off = 0;
    r->body_left = TF_WIRE_CHUNK_HEAD_SIZE + len;
}

/* Writes what it can. Returns 1 when the response is out, 0 when the
   socket is full, -1 when the connection failed (s is closed), 2 when the
   body's next bytes need the disk pool first (r->want: WANT_*). */
static int send_some(session *s)
{
    request *r = s->req;
    size_t budget = EVENT_BUDGET;
    while (budget > 0) {
        ssize_t k;
        tf__group *g = s->group;
        if (g && g->out_pos < g->out_len) {
            /* The group's answers go before this request's own. */
            k = send_bytes(s, g->out + g->out_pos, g->out_len - g->out_pos,
                           r->head_pos < r->head_len);
            if (k > 0)
                g->out_pos += (size_t)k;
        } else if (r->head_pos < r->head_len) {
            int more = r->body_left > 0 || r->has_trailer;
            k = send_bytes(s, r->head + r->head_pos, r->head_len - r->head_pos, more);
            if (k > 0)
                r->head_pos += (size_t)k;
        } else if (r->body_left > 0) {
            k = send_body_step(s);
            if (k == SEND_NEEDS_READ) {
                r->want = WANT_READ;
                return 2;
            }
            if (k > 0) {
                r->body_off += (uint64_t)k;
                r->body_left -= (uint64_t)k;
                r->bytes += (uint64_t)k;
            }
        } else if (r->walk && !r->walk_over) {
            if (!r->walk_ended) {
                r->want = WANT_WALK; /* entries (or nothing yet) from walk_work */
                return 2;
            }
            r->walk_over = 1;
            walk_queue(r, 0); /* the end marker */
            continue;
        } else if (r->has_trailer && r->tail_len == 0) {
            if (r->walk)
                r->body_rc = r->walk_rc; /* only now: see the zeros above */
            tf__sess_build_trailer(s);
            continue;
        } else if (r->tail_pos < r->tail_len) {
            k = send_bytes(s, r->tail + r->tail_pos, r->tail_len - r->tail_pos, 0);
            if (k > 0)
                r->tail_pos += (size_t)k;
        } else {
            return 1;
        }
        if (k < 0) {
            char why[128];
            snprintf(why, sizeof why, "send failed: %s", strerror(errno));
            tf__sess_fail_session(s, TF_ENET, why);
            return -1;
        }
        if (k == 0 && r->body_rc == TF_OK)
            return 0;
        if (k == 0)
            continue; /* the body just failed: go on with the zeros */
        if (tf__sess_progressed(s, (size_t)k))
            return -1;
        budget -= (size_t)k < budget ? (size_t)k : budget;
    }
    return 0;
}

void tf__sess_sent(session *s)
{
    request *r = s->req;
    if (r->body_rc != TF_OK)
        r->result = r->body_rc;
    switch (r->after) {
    case AFTER_RECV_BODY:
        s->state = S_RECV_BODY;
        s->window_ms = tf__now_ms();
        s->window_bytes = 0;
        if (tf__sess_watch(s, EPOLLIN) != 0) {
            tf__sess_fail_session(s, TF_ENET, "epoll failed");
            return;
        }
        tf__sess_receive_body(s);
        return;
    case AFTER_CLOSE:
        tf__sess_request_end(s, 0);
        tf__sess_enter_closing(s);
        return;
    case AFTER_IDLE:
        tf__sess_request_end(s, 0);
        tf__sess_enter_idle(s);
        if (tf__sess_watch(s, EPOLLIN) != 0) {
            tf__session_close(s);
            return;
        }
        tf__sess_parse_input(s); /* a pipelined request may be waiting */
        return;
    }
}

/* Hashes the next slice of the prefix a resumed transfer's digest needs
   before its response head goes out: a get's file before its offset, a
   put's partial (on the disk pool: hash_slice_work). One slice per job
   lets a stop cancel a whole file's hash (a get at offset = size) between
   slices. */
static int hash_prefix_step(session *s)
{
    request *r = s->req;
    uint64_t n = r->prefix_to - r->hashed_to;
    if (n > HASH_SLICE)
        n = HASH_SLICE;
    int rc = tf__sess_ensure_buf(r);
    /* A conditional put hashes the name's current version (open for
       reading in body_fd) into its own digest, not the upload's. */
    tf__upload *up = r->op == TF_OP_PUT && !r->cur_hashing ? r->up : NULL;
    if (rc == TF_OK)
        rc = storage(s)->ops->hash_range(storage(s), r->body_fd, up, r->hashed_to, n,
                                         r->cur_hashing ? &r->cur : &r->digest, r->buf,
                                         XFER_BUF, &r->err);
    if (rc != TF_OK)
        return rc;
    r->hashed_to += n;
    atomic_fetch_add(s->ctx->prefix_hashed, n);
    return TF_OK;
}

static void hash_slice_work(session *s)
{
    s->req->disk_rc = hash_prefix_step(s);
}


/* Back from the disk pool: a chunk read (the copy path), entries of a
   listdir, or a slice hashed. */
static void read_work(session *s)
{
    request *r = s->req;
    int got = read_chunk(storage(s), r);
    r->disk_rc = got < 0 ? TF_ENOMEM : TF_OK;
}

static void walk_filled(session *s)
{
    request *r = s->req;
    if (r->walk_len)
        walk_queue(r, r->walk_len);
    tf__sess_continue_send(s);
}

static void read_done(session *s)
{
    if (s->req->disk_rc != TF_OK) {
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    tf__sess_continue_send(s);
}


static void hash_sliced(session *s);

void tf__sess_continue_send(session *s)
{
    request *r = s->req;
    if (r->hashed_to < r->prefix_to) {
        /* Hashed on the disk pool, a slice per job; the head goes out once
           the digest covers the prefix. */
        tf__sess_disk_call(s, hash_slice_work, hash_sliced);
        return;
    }
    if (r->cur_hashing) {
        /* The current version's digest is complete: remember it (so the
           next conditional put or get of this version hashes nothing), then
           decide the put with it. */
        r->cur_hashing = 0;
        r->prefix_to = r->hashed_to = 0;
        tf__digest_final(&r->cur, r->cur_digest);
        storage(s)->ops->digest_store(storage(s), r->body_fd, r->cur_digest, r->file_id);
        tf__sess_put_decide(s);
        return;
    }
    if (r->stat_pending)
        tf__sess_stat_finish(s);
    int rc = send_some(s);
    if (rc == 1)
        tf__sess_sent(s);
    else if (rc == 2 && r->want == WANT_WALK)
        tf__sess_disk_call(s, walk_work, walk_filled);
    else if (rc == 2)
        tf__sess_disk_call(s, read_work, read_done);
    else if (rc == 0 && tf__sess_watch(s, EPOLLOUT) != 0)
        tf__sess_fail_session(s, TF_ENET, "epoll failed");
}

static void hash_sliced(session *s)
{
    request *r = s->req;
    int hrc = r->disk_rc;
    if (hrc != TF_OK) {
        r->prefix_to = r->hashed_to = 0;
        if (r->cur_hashing) {
            r->cur_hashing = 0;
            tf__sess_put_refuse(s, hrc);
            return;
        }
        r->stat_pending = 0;
        tf__sess_reply_failure(s, hrc, AFTER_IDLE);
        return;
    }
    tf__sess_continue_send(s);
}

/* Whether a whole get is buffered behind the request being answered: its
   answer follows at once (pipelined small gets), so this one may wait in
   the socket to share a segment with it (MSG_MORE). The last answer of a
   burst goes without, and pushes them all out; a get whose file needs the
   disk pool holds the ones before it for that one job. Only where small
   files are served from memory without the pool (read_cached): on a store
   where every get waits for it (S3), each answer would come a job late. */
static int get_follows(session *s)
{
    tf_wire_request q;
    return storage(s)->ops->read_cached && s->in_len >= TF_WIRE_REQUEST_SIZE &&
           s->in[0] == TF_OP_GET &&
           tf__wire_decode_request(s->in, s->in_len, tf__sess_request_max_name(s), &q) >
               0 &&
           q.offset == 0;
}

/* A small response goes out in one sendmsg: head, body (read into the
   request's small buffer by read_small) and trailer. What the socket did
   not take is left to send_some: the head and trailer are in the request
   already, the rest of the body moves to its transfer buffer (the copy
   path). Returns -1 when the connection failed (s is closed). */
static int push_gathered(session *s)
{
    request *r = s->req;
    size_t body = (size_t)r->body_left;
    struct iovec iov[3] = {{r->head, r->head_len},
                           {r->small, body},
                           {r->tail, r->tail_len}};
    ssize_t k = tf__conn_writev(&s->conn, iov, 3, get_follows(s) ? TF__IO_MORE : 0);
    if (k == TF__IO_ERROR) {
        char why[128];
        snprintf(why, sizeof why, "send failed: %s", strerror(errno));
        tf__sess_fail_session(s, TF_ENET, why);
        return -1;
    }
    size_t left = k > 0 ? (size_t)k : 0;
    size_t head = left < r->head_len ? left : r->head_len;
    size_t data = left - head < body ? left - head : body;
    r->head_pos = head;
    r->body_off += data;
    r->body_left -= data;
    r->bytes += data;
    r->tail_pos = left - head - data;
    if (r->body_left > 0) {
        if (tf__sess_ensure_buf(r) != TF_OK) {
            tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
            return -1;
        }
        memcpy(r->buf, r->small + data, body - data);
        r->buf_pos = 0;
        r->buf_end = body - data;
        r->copy_path = 1;
    }
    return left > 0 && tf__sess_progressed(s, left) ? -1 : 0;
}

void tf__sess_start_send(session *s, after_send after)
{
    request *r = s->req;
    r->after = after;
    s->state = S_SEND;
    tf__sess_list_move(s, &s->ctx->active, tf__now_ms());
    /* Answers go out in request order: puts still in the session's group
       are answered first (group_send), before any other request is
       begun. One that would speak before them is a bug, not a reorder. */
    if ((r->head_len || r->body_left || r->has_trailer) && tf__group_pending(s->group) &&
        !r->grouped) {
        tf__sess_fail_session(s, TF_EINTERNAL, "an answer would overtake pipelined puts");
        return;
    }
    if (r->gathered && push_gathered(s) != 0)
        return;
    tf__sess_continue_send(s);
}
