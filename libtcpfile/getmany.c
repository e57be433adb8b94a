/*
 * getmany.c - tf_get_many: gets with pipelined requests. Requests are
 * encoded into the client's out buffer a window at a time and sent while
 * responses are read in order, so that small files cost one round trip per
 * window rather than one per file.
 *
 * Why it cannot deadlock: the server reads one request at a time and stops
 * reading while its response waits for room, so requests sent ahead can
 * fill both sockets' buffers. Sends therefore never block while a response
 * is owed (MSG_DONTWAIT: what does not fit waits until a response has been
 * read); they block only with nothing in flight, when the server has
 * nothing to send and will read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "batchoutcome.h"
#include "client_internal.h"
#include "localfile.h"
#include "wire.h"

/* An item's result before it is known (results are 0 or negative). */
#define PENDING 1
/* Small answers bound for one descriptor (tcpfile-client get ... --to -
   writes thousands to a pipe) are gathered and written many to a write:
   one write per 4 KiB answer cost the program as much CPU as the rest of
   the get. An answer up to STAGE_ITEM bytes goes through the stage. */
#define STAGE_CAP ((size_t)64 << 10)
#define STAGE_ITEM ((size_t)16 << 10)

typedef struct pipeline {
    tf_client *c;
    tf_get_item *items;
    size_t n;
    size_t next_encode; /* first item not yet looked at for sending */
    size_t next_recv;   /* first item whose outcome is not known */
    size_t inflight;    /* requests sent whole, responses not read */
    /* Encoded requests: out[pos..len) is not sent yet; ends[] holds where
       each of its requests ends, oldest first. */
    uint8_t *out;
    size_t pos, len;
    size_t ends[TF__PIPELINE_MAX];
    size_t first_end, nends;
    tf__outcomes outcomes; /* the items' messages, the first failure */
    uint8_t *stage;     /* STAGE_CAP bytes (NULL: none, written directly) */
    size_t stage_len;
    int stage_fd;       /* where the staged bytes go */
    size_t stage_from;  /* the first item whose bytes may be staged */
} pipeline;

/* Used when there was no memory to keep an item's own message. */
/* Items can fail out of order (a bad name before the responses ahead of
   it): batchoutcome.c keeps the first in item order. */
static void resolve(pipeline *p, tf_get_item *it, int rc)
{
    it->result = rc;
    tf__outcomes_record(&p->outcomes, (size_t)(it - p->items), rc);
}

/* The room a later version may give meaning to must be zero today, so
   that callers who fill it by accident learn it now, not on an upgrade. */
static int reserved_zero(const tf_get_item *it)
{
    for (size_t i = 0; i < sizeof it->reserved / sizeof it->reserved[0]; i++)
        if (it->reserved[i] != NULL)
            return 0;
    return 1;
}

/* Encodes requests while the window and the out buffer have room. Items
   that cannot be sent (bad name, no destination, reserved room not zero)
   fail here. */
static void encode_more(pipeline *p, size_t depth)
{
    tf_client *c = p->c;
    while (p->next_encode < p->n && p->inflight + p->nends < depth) {
        tf_get_item *it = &p->items[p->next_encode];
        if (tf__client_check_name(c, it->name) != TF_OK) {
            if (c->hello_rc)
                return; /* the server's hello, read for this name, failed */
            resolve(p, it, TF_EINVAL);
            p->next_encode++;
            continue;
        }
        if (!reserved_zero(it)) {
            resolve(p, it,
                    tf__fail(&c->err, TF_EINVAL,
                             "\"%s\": the item's reserved room is not zero", it->name));
            p->next_encode++;
            continue;
        }
        tf_wire_request r = {.op = TF_OP_GET, .name = it->name,
                             .name_len = (uint16_t)strlen(it->name)};
        long k = tf__wire_encode_request(p->out + p->len, OUT_BUF - p->len, &r);
        if (k < 0 && p->len > 0)
            break; /* the buffer is full: the rest goes in a later window */
        if (k < 0) {
            resolve(p, it, tf__fail(&c->err, TF_EINVAL, "cannot encode a request for \"%s\"",
                                    it->name));
            p->next_encode++;
            continue;
        }
        p->len += (size_t)k;
        p->ends[(p->first_end + p->nends++) % TF__PIPELINE_MAX] = p->len;
        p->next_encode++;
    }
}

/* Sends what it can of the encoded requests; blocks only when no response
   is owed. */
static int send_some(pipeline *p)
{
    tf_client *c = p->c;
    int wait = p->inflight == 0;
    ssize_t k = tf__conn_write(&c->s.conn, p->out + p->pos, p->len - p->pos,
                               wait ? 0 : TF__IO_NOWAIT);
    if (k == TF__IO_AGAIN && c->s.conn.err == EINTR)
        return TF_OK;
    if (k == TF__IO_AGAIN) {
        if (!wait)
            return TF_OK; /* full: read a response first */
        return tf__fail(&c->err, TF_ETIMEDOUT, "the peer made no progress for %d ms",
                        c->s.timeout_ms);
    }
    if (k < 0)
        return tf__fail_errno(&c->err, TF_ENET, c->s.conn.err, "send failed");
    p->pos += (size_t)k;
    while (p->nends && p->ends[p->first_end] <= p->pos) {
        p->first_end = (p->first_end + 1) % TF__PIPELINE_MAX;
        p->nends--;
        p->inflight++;
    }
    if (p->pos == p->len)
        p->pos = p->len = 0;
    return TF_OK;
}

/* Writes the staged bytes. A failure is that of every item before upto
   whose bytes were staged, as a direct write's would have been. */
static void flush_stage(pipeline *p, size_t upto)
{
    if (!p->stage_len)
        return;
    tf__err e = {{0}};
    int rc = tf__fs_write_all(p->stage_fd, p->stage, p->stage_len, &e);
    p->stage_len = 0;
    for (size_t i = p->stage_from; rc != TF_OK && i < upto; i++) {
        tf_get_item *it = &p->items[i];
        if (it->result == TF_OK && !it->local_path && it->fd == p->stage_fd) {
            p->c->err = e;
            resolve(p, it, rc);
        }
    }
}

/* Whether the next answer is all in the read buffer already: if not,
   reading it may wait for the network, and staged bytes go out first so
   that a reader of the descriptor never waits on us. */
static int next_buffered(const tf_client *c)
{
    const tf__stream *s = &c->s;
    tf_wire_response r;
    size_t have = s->rlen - s->rpos;
    long n = have ? tf__wire_decode_response(s->rbuf + s->rpos, have, &r) : -1;
    return n > 0 && r.size <= have &&
           (size_t)n + r.size + TF_WIRE_TRAILER_SIZE + TF_WIRE_DIGEST_MAX <= have;
}

/* Reads the response to it and its payload, into its fd (a small one
   through the stage) or, through a temporary renamed when complete, its
   local_path (NULL with no fd: ./name, as tf_get). index is the item's,
   for progress. */
static int receive_item(pipeline *p, tf_get_item *it, size_t index)
{
    tf_client *c = p->c;
    uint64_t size;
    int rc = tf__client_read_response(c, TF_OP_GET, it->name, &size, NULL);
    if (rc == TF_OK && !it->local_path && it->fd >= 0 && p->stage && size <= STAGE_ITEM) {
        if (p->stage_len && (p->stage_fd != it->fd || p->stage_len + size > STAGE_CAP))
            flush_stage(p, index);
        if (!p->stage_len) {
            p->stage_fd = it->fd;
            p->stage_from = index;
        }
        rc = tf__client_receive_to(c, -1, p->stage + p->stage_len, size, (long)index);
        /* Written whatever the trailer said, as a direct write is; a
           broken connection's partial payload is not. */
        if (!tf__client_fatal(rc))
            p->stage_len += (size_t)size;
        return rc;
    }
    flush_stage(p, index); /* bytes go out in the items' order */
    if (rc != TF_OK || (!it->local_path && it->fd >= 0))
        return rc != TF_OK ? rc : tf__client_receive_fd(c, it->fd, size, (long)index);
    tf__tmpfile t;
    char final[4096];
    const char *path = it->local_path ? it->local_path : tf__path_leaf(it->name);
    rc = tf__local_begin(path, tf__path_leaf(it->name), &t, final, sizeof final, &c->err);
    if (rc != TF_OK) {
        /* Keeps the stream in step; its own failure cannot overwrite why
           this item failed (the first message wins). */
        int drop = tf__client_receive_fd(c, -1, size, -1);
        return drop != TF_OK ? drop : rc;
    }
    rc = tf__client_receive_fd(c, t.fd, size, index);
    if (rc == TF_OK)
        return tf__local_commit(&t, final, &c->err);
    tf__tmpfile_abort(&t);
    return rc;
}

int tf_get_many(tf_client *c, tf_get_item *items, size_t n)
{
    if (!c || (!items && n))
        return TF_EINVAL;
    for (size_t i = 0; i < n; i++)
        items[i].result = PENDING;
    int rc = tf__client_usable(c);
    if (rc == TF_OK)
        rc = tf__client_buffers(c);
    pipeline p = {.c = c, .items = items, .n = n};
    tf__outcomes_init(&p.outcomes, c, n);
    p.out = c->buf + IO_BUF + READ_BUF;
    for (size_t i = 0; n > 1 && i < n && !p.stage; i++)
        if (!items[i].local_path && items[i].fd >= 0)
            p.stage = malloc(STAGE_CAP); /* none: each is written directly */
    size_t depth = (size_t)c->opt.value[TF_OPT_PIPELINE];
    while (rc == TF_OK && p.next_recv < n) {
        tf_get_item *it = &items[p.next_recv];
        if (it->result != PENDING) {
            p.next_recv++;
            continue;
        }
        /* Refill once half the window has drained, so that requests go out
           many to a send. */
        if (p.len == 0 && p.inflight <= depth / 2)
            encode_more(&p, depth);
        if (c->hello_rc) {
            rc = c->hello_rc;
            break;
        }
        if (p.pos < p.len && (rc = send_some(&p)) != TF_OK)
            break;
        if (p.inflight == 0)
            continue; /* it was refused locally, or its request is still going out */
        rc = receive_item(&p, it, p.next_recv);
        p.inflight--;
        p.next_recv++;
        if (tf__client_fatal(rc) || c->hello_rc) /* the connection failed, or its hello */
            break;
        resolve(&p, it, rc);
        rc = TF_OK;
        if (p.stage_len && !next_buffered(c))
            flush_stage(&p, p.next_recv);
    }
    if (rc != TF_OK) {
        /* The connection failed: what is not finished fails with it. */
        tf__client_break(c, rc);
        tf__err broke = c->err; /* each item left gets the same message */
        for (size_t i = 0; i < n; i++)
            if (items[i].result == PENDING) {
                c->err = broke;
                resolve(&p, &items[i], rc);
            }
    }
    flush_stage(&p, p.next_recv);
    free(p.stage);
    /* The buffer has stopped moving: the items can point into it. */
    for (size_t i = 0; i < n; i++)
        items[i].message = tf__outcomes_message(&p.outcomes, i, items[i].result);
    return tf__outcomes_finish(&p.outcomes);
}
