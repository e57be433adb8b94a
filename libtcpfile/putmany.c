/*
 * putmany.c - tf_put_many: many uploads over one connection. With the
 * server's PUTX feature each put goes out as request, payload and trailer
 * at once (NO_GOAHEAD, docs/protocol.md section 4b), up to TF_OPT_PIPELINE
 * of them before their answers, which are read as they come; without it,
 * the items are put one after the other. An item with SKIP_SAME larger
 * than SAME_INLINE_MAX goes out without NO_GOAHEAD instead: its request
 * alone, then the answers owed and its own first answer are read, and the
 * payload follows only a go-ahead, so a file the server already holds
 * costs a round trip but no payload byte. A smaller one offers its digest
 * and sends its payload straight behind, as any pipelined put: the server
 * drops the payload when it holds those bytes (answer SAME), and its
 * bytes cost less than the round trip.
 *
 * Why it cannot deadlock: the server answers a put only once it has read
 * its trailer, and stops reading while an answer waits for room, so puts
 * sent ahead can fill both sockets' buffers. Sends therefore never block
 * while an answer is owed (a put sent whole and not answered): a send that
 * does not fit makes the client read an answer first. They block only with
 * nothing owed, when the server has nothing to send and will read.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batchoutcome.h"
#include "client_internal.h"
#include "localfile.h"
#include "wire.h"

/* An item's result before it is known (results are 0 or negative). */
#define PENDING 1

typedef struct batch {
    tf_client *c;
    tf_put_item *items;
    size_t n;
    tf__outcomes outcomes; /* the items' messages, the first failure */
} batch;

/* The first failure in item order wins (batchoutcome.c). */
static void resolve(batch *b, size_t index, int rc)
{
    b->items[index].result = rc;
    tf__outcomes_record(&b->outcomes, index, rc);
}

static int item_reserved_zero(const tf_put_item *it)
{
    if (it->reserved_int)
        return 0;
    for (size_t i = 0; i < sizeof it->reserved / sizeof it->reserved[0]; i++)
        if (it->reserved[i] != NULL)
            return 0;
    return 1;
}

static const char *item_name(const tf_put_item *it)
{
    if (it->name || !it->local_path)
        return it->name;
    const char *slash = strrchr(it->local_path, '/');
    return slash ? slash + 1 : it->local_path;
}

/* Without PUTX: one put after the other, each its own round trips. */
static int put_one(tf_client *c, tf_put_item *it)
{
    const char *name = item_name(it);
    if (it->local_path)
        return tf_put_ex(c, it->local_path, name, it->args, &it->skipped);
    if (it->fd >= 0)
        return tf_put_fd_ex(c, it->fd, it->size, name, it->args, &it->skipped);
    if (!it->data && it->size)
        return tf__fail(&c->err, TF_EINVAL, "item \"%s\" has no source", name ? name : "");
    if (it->size > SIZE_MAX)
        return tf__fail(&c->err, TF_ETOOBIG, "item \"%s\" is larger than memory",
                        name ? name : "");
    return tf_put_mem_ex(c, it->data, (size_t)it->size, name, it->args, &it->skipped);
}

static int put_sequential(batch *b)
{
    tf_client *c = b->c;
    for (size_t i = 0; i < b->n; i++) {
        tf_put_item *it = &b->items[i];
        int rc = item_reserved_zero(it)
                     ? put_one(c, it)
                     : tf__fail(&c->err, TF_EINVAL, "the item's reserved room is not zero");
        if (c->broken && rc != TF_OK && tf__client_fatal(rc))
            return rc;
        resolve(b, i, rc);
    }
    return TF_OK;
}

/* ---- pipelined (PUTX, NO_GOAHEAD) ------------------------------------ */

/* SKIP_SAME items up to this size do not wait for the server's first
   answer: their payload follows at once (see the top of this file). */
#define SAME_INLINE_MAX ((uint64_t)64 << 10)

/* A put sent whole whose answer has not come: its item, and how its source
   fared (a source that failed mid-way made the sender pad with zeros and
   send a failing trailer: that failure is the item's result). */
typedef struct owed {
    size_t index;
    int src_rc;
    tf__err src_err;
} owed;

/* The one put being sent: request, payload and trailer go out through the
   out buffer c->buf[pos, len). */
typedef struct sender {
    int active;
    size_t index;
    int fd, own_fd, seekable;
    const uint8_t *mem;
    uint64_t off;        /* the source's start (fd offset) */
    uint64_t size, done; /* payload bytes, and those put in the buffer */
    int known;           /* SKIP_SAME: the digest was computed first */
    int asks;            /* SKIP_SAME: the request waits for its first answer
                            (SAME or a go-ahead) before any payload */
    tf__putx px;
    int src_rc;
    tf__err src_err;
    int trailer;         /* the trailer is in the buffer */
    size_t pos, len;
} sender;

typedef struct pipe_state {
    batch *b;
    size_t depth;
    owed *ring;          /* depth entries */
    size_t head, count;  /* answers owed, oldest at head */
    sender snd;
    tf__digest digest;   /* the payload's, when CHECKSUM is on and not known */
} pipe_state;

static int report(tf_client *c, size_t index, uint64_t done, uint64_t total)
{
    if (c->opt.item_progress)
        return c->opt.item_progress(c->opt.progress_user_item, index, done, total);
    if (c->opt.progress)
        return c->opt.progress(c->opt.progress_user, done, total);
    return 0;
}

static void sender_close(sender *sd)
{
    if (sd->own_fd && sd->fd >= 0)
        close(sd->fd);
    else if (sd->fd >= 0 && sd->seekable)
        lseek(sd->fd, (off_t)(sd->off + sd->size), SEEK_SET); /* just past it, as tf_put_fd */
    sd->fd = -1;
    sd->own_fd = 0;
    sd->active = 0;
}

/* Opens item i's source and encodes its request into the out buffer. A
   failure here is the item's own (nothing was sent): 0 is returned after
   resolving it. 1: the sender is active. */
static int sender_start(pipe_state *ps, size_t i)
{
    batch *b = ps->b;
    tf_client *c = b->c;
    tf_put_item *it = &b->items[i];
    sender *sd = &ps->snd;
    memset(sd, 0, sizeof *sd);
    sd->fd = -1;
    sd->index = i;
    const char *name = item_name(it);
    int rc = TF_OK;
    if (!item_reserved_zero(it))
        rc = tf__fail(&c->err, TF_EINVAL, "the item's reserved room is not zero");
    else if (!name)
        rc = tf__fail(&c->err, TF_EINVAL, "the item has no name");
    if (rc == TF_OK)
        rc = tf__client_check_name(c, name);
    if (rc == TF_OK && it->local_path) {
        rc = tf__local_open_read(it->local_path, &sd->fd, &sd->size, &c->err);
        sd->own_fd = rc == TF_OK;
    } else if (rc == TF_OK && it->fd >= 0) {
        sd->fd = it->fd;
        sd->size = it->size;
    } else if (rc == TF_OK) {
        if (!it->data && it->size)
            rc = tf__fail(&c->err, TF_EINVAL, "the item has no source");
        sd->mem = it->data ? it->data : (const uint8_t *)"";
        sd->size = it->size;
    }
    if (rc == TF_OK && sd->fd >= 0) {
        off_t at = lseek(sd->fd, 0, SEEK_CUR);
        sd->seekable = at >= 0;
        sd->off = at >= 0 ? (uint64_t)at : 0;
    }
    if (rc == TF_OK && c->max_upload && sd->size > c->max_upload)
        rc = tf__fail(&c->err, TF_ETOOBIG, "\"%s\" is %llu bytes; the server accepts at most %llu",
                      name, (unsigned long long)sd->size, (unsigned long long)c->max_upload);
    if (rc == TF_OK)
        rc = tf__putx_from_args(c, it->args, sd->fd, &sd->px);
    if (rc == TF_OK && (sd->px.flags & TF_REQ_SKIP_SAME)) {
        rc = tf__putx_hash(c, &sd->px, sd->fd, sd->off, sd->mem, sd->size);
        sd->known = 1;
    }
    if (rc == TF_OK) {
        sd->asks = sd->known && sd->size > SAME_INLINE_MAX;
        tf_wire_request r = {.op = TF_OP_PUT,
                             .flags = sd->px.flags | (sd->asks ? 0 : TF_REQ_NO_GOAHEAD),
                             .name = name, .name_len = (uint16_t)strlen(name),
                             .size = sd->size, .if_match = sd->px.if_match,
                             .mtime_sec = sd->px.mtime_sec, .mtime_nsec = sd->px.mtime_nsec,
                             .same = sd->px.same};
        long k = tf__wire_encode_request(c->buf, IO_BUF, &r);
        if (k < 0)
            rc = tf__fail(&c->err, TF_EINVAL, "cannot encode a request for \"%s\"", name);
        else
            sd->len = (size_t)k;
    }
    if (rc == TF_OK && !sd->known && tf__digest_begin(&ps->digest,
                                                      (c->features & TF_FEATURE_CHECKSUM) != 0))
        rc = tf__fail(&c->err, TF_ENOMEM, "out of memory");
    if (rc != TF_OK) {
        sender_close(sd);
        resolve(b, i, rc);
        return 0;
    }
    sd->active = 1;
    return 1;
}

/* Refills the out buffer with the next piece of payload, or the trailer.
   A source that fails or ends early is padded with zeros: the trailer
   then says so and the server stores nothing. Returns TF_ECANCELED when
   the progress callback says stop (the batch ends). */
static int sender_fill(pipe_state *ps)
{
    tf_client *c = ps->b->c;
    sender *sd = &ps->snd;
    sd->pos = sd->len = 0;
    if (sd->done == 0 && !sd->trailer && report(c, sd->index, 0, sd->size) != 0)
        return tf__fail(&c->err, TF_ECANCELED, "cancelled by the progress callback");
    if (sd->done < sd->size) {
        size_t want = sd->size - sd->done < IO_BUF ? (size_t)(sd->size - sd->done) : IO_BUF;
        ssize_t got = (ssize_t)want;
        if (sd->src_rc != TF_OK) {
            memset(c->buf, 0, want);
        } else if (sd->mem) {
            memcpy(c->buf, sd->mem + sd->done, want);
        } else {
            got = sd->seekable ? pread(sd->fd, c->buf, want, (off_t)(sd->off + sd->done))
                               : read(sd->fd, c->buf, want);
            if (got <= 0) {
                if (got < 0)
                    tf__fail_errno(&sd->src_err, TF_EIO, errno, "cannot read the file");
                else
                    tf__fail(&sd->src_err, TF_EIO, "the file shrank while being sent");
                sd->src_rc = TF_EIO;
                memset(c->buf, 0, want);
                got = (ssize_t)want;
            }
        }
        if (sd->src_rc == TF_OK && !sd->known)
            tf__digest_update(&ps->digest, c->buf, (size_t)got);
        sd->done += (uint64_t)got;
        sd->len = (size_t)got;
        if (report(c, sd->index, sd->done, sd->size) != 0)
            return tf__fail(&c->err, TF_ECANCELED, "cancelled by the progress callback");
        return TF_OK;
    }
    uint8_t digest[TF_DIGEST_SIZE];
    tf_wire_trailer t = {.status = tf__wire_status(sd->src_rc)};
    if (sd->src_rc == TF_OK && (c->features & TF_FEATURE_CHECKSUM)) {
        if (sd->known)
            memcpy(digest, sd->px.same, TF_DIGEST_SIZE);
        else
            tf__digest_final(&ps->digest, digest);
        t.digest = digest;
        t.digest_len = TF_DIGEST_SIZE;
    }
    sd->len = (size_t)tf__wire_encode_trailer(c->buf, IO_BUF, &t);
    sd->trailer = 1;
    return TF_OK;
}

/* Reads the oldest owed answer and settles its item. Returns the
   connection's failure (the batch ends), else TF_OK. */
static int receive_one(pipe_state *ps)
{
    batch *b = ps->b;
    tf_client *c = b->c;
    owed *o = &ps->ring[ps->head];
    tf_put_item *it = &b->items[o->index];
    uint64_t size = 0;
    uint8_t flags = 0;
    int rc = tf__client_read_response(c, TF_OP_PUT, item_name(it), &size, &flags);
    if (rc == TF_OK && (flags & TF_RESP_SAME)) {
        const tf_put_args *a = it->args;
        if (!a || !(a->flags & TF_PUT_SKIP_SAME))
            rc = tf__fail(&c->err, TF_EPROTO, "an \"already there\" answer to a put "
                                              "that did not offer its digest");
        else
            it->skipped = 1;
    }
    if (tf__client_fatal(rc))
        return rc;
    ps->head = (ps->head + 1) % ps->depth;
    ps->count--;
    if (o->src_rc != TF_OK) {
        /* The source's failure is the real story; the server's answer only
           echoes the failing trailer. */
        tf__err_clear(&c->err);
        tf__err_take(&c->err, &o->src_err);
        rc = o->src_rc;
    }
    resolve(b, o->index, rc);
    return TF_OK;
}

/* A SKIP_SAME request is out: reads the answers owed before it, then its
   own first one. SAME or a refusal settles the item (no payload follows);
   a go-ahead lets the payload go. Returns the connection's failure, else
   TF_OK. */
static int receive_first(pipe_state *ps)
{
    tf_client *c = ps->b->c;
    sender *sd = &ps->snd;
    int rc = TF_OK;
    while (rc == TF_OK && ps->count > 0)
        rc = receive_one(ps);
    if (rc != TF_OK)
        return rc;
    tf_put_item *it = &ps->b->items[sd->index];
    uint64_t size = 0;
    uint8_t flags = 0;
    rc = tf__client_read_response(c, TF_OP_PUT, item_name(it), &size, &flags);
    if (rc == TF_OK && !(flags & TF_RESP_SAME) && size != 0)
        rc = tf__fail(&c->err, TF_EPROTO, "a go-ahead at byte %llu for a put from byte 0",
                      (unsigned long long)size);
    if (tf__client_fatal(rc))
        return rc;
    if (rc == TF_OK && !(flags & TF_RESP_SAME)) {
        sd->asks = 0; /* go ahead: the payload follows */
        return TF_OK;
    }
    it->skipped = rc == TF_OK;
    sender_close(sd);
    resolve(ps->b, sd->index, rc);
    return TF_OK;
}

/* Whether an answer can be read without waiting. */
static int answer_ready(tf_client *c)
{
    /* Bytes in the read buffer or held by TLS: poll cannot see them. */
    if (c->s.rpos < c->s.rlen || tf__conn_pending(&c->s.conn))
        return 1;
    struct pollfd p = {.fd = c->s.conn.fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Sends what it can of the out buffer: without blocking while answers are
   owed (what does not fit waits until one has been read), blocking (with
   the I/O timeout) when none is. */
static int sender_send(pipe_state *ps)
{
    tf_client *c = ps->b->c;
    sender *sd = &ps->snd;
    int wait = ps->count == 0;
    ssize_t k = tf__conn_write(&c->s.conn, c->buf + sd->pos, sd->len - sd->pos,
                               wait ? 0 : TF__IO_NOWAIT);
    if (k == TF__IO_AGAIN && c->s.conn.err == EINTR)
        return TF_OK;
    if (k == TF__IO_AGAIN) {
        if (!wait)
            return receive_one(ps); /* full: an answer first */
        return tf__fail(&c->err, TF_ETIMEDOUT, "the peer made no progress for %d ms",
                        c->s.timeout_ms);
    }
    if (k < 0)
        return tf__fail_errno(&c->err, TF_ENET, c->s.conn.err, "send failed");
    sd->pos += (size_t)k;
    return TF_OK;
}

static int put_pipelined(batch *b)
{
    tf_client *c = b->c;
    pipe_state ps = {.b = b};
    ps.depth = (size_t)c->opt.value[TF_OPT_PIPELINE];
    if (ps.depth < 1)
        ps.depth = 1;
    ps.ring = malloc(ps.depth * sizeof *ps.ring);
    if (!ps.ring)
        return tf__fail(&c->err, TF_ENOMEM, "out of memory");
    ps.snd.fd = -1;
    int rc = tf__client_buffers(c);
    size_t next = 0;
    while (rc == TF_OK) {
        sender *sd = &ps.snd;
        if (!sd->active && next < b->n && ps.count < ps.depth) {
            sender_start(&ps, next++);
            continue;
        }
        if (sd->active) {
            if (sd->pos == sd->len) {
                if (sd->asks) {
                    rc = receive_first(&ps);
                    continue;
                }
                if (sd->trailer) {
                    /* Sent whole: its answer is owed now. */
                    owed *o = &ps.ring[(ps.head + ps.count) % ps.depth];
                    o->index = sd->index;
                    o->src_rc = sd->src_rc;
                    o->src_err = sd->src_err;
                    ps.count++;
                    sender_close(sd);
                    while (rc == TF_OK && ps.count > 0 && answer_ready(c))
                        rc = receive_one(&ps);
                    continue;
                }
                rc = sender_fill(&ps);
                continue;
            }
            rc = sender_send(&ps);
            continue;
        }
        if (ps.count > 0) {
            rc = receive_one(&ps);
            continue;
        }
        break; /* all sent, all answered */
    }
    sender_close(&ps.snd);
    tf__digest_end(&ps.digest);
    free(ps.ring);
    return rc;
}

int tf_put_many(tf_client *c, tf_put_item *items, size_t n)
{
    if (!c || (!items && n))
        return TF_EINVAL;
    for (size_t i = 0; i < n; i++) {
        items[i].result = PENDING;
        items[i].skipped = 0;
    }
    batch b = {.c = c, .items = items, .n = n};
    tf__outcomes_init(&b.outcomes, c, n);
    int rc = tf__client_usable(c);
    if (rc == TF_OK)
        rc = tf__client_hello(c); /* puts sent ahead need PUTX confirmed */
    if (rc == TF_OK)
        rc = (c->features & TF_FEATURE_PUTX) ? put_pipelined(&b) : put_sequential(&b);
    if (rc != TF_OK) {
        /* The connection failed: what is not finished fails with it. */
        tf__client_break(c, rc);
        tf__err broke = c->err;
        for (size_t i = 0; i < n; i++)
            if (items[i].result == PENDING) {
                c->err = broke;
                resolve(&b, i, rc);
            }
    }
    for (size_t i = 0; i < n; i++)
        items[i].message = tf__outcomes_message(&b.outcomes, i, items[i].result);
    return tf__outcomes_finish(&b.outcomes);
}
