/*
 * putmany.c - tf_put_many: many uploads over one connection. With the
 * server's PUTX feature each put goes out as request, payload and trailer
 * at once (NO_GOAHEAD, docs/protocol.md section 4b), up to TF_OPT_PIPELINE
 * of them before their answers, which are read as they come; without it,
 * the items are put one after the other.
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

#include "client_internal.h"
#include "localfile.h"
#include "wire.h"

/* An item's result before it is known (results are 0 or negative). */
#define PENDING 1

typedef struct batch {
    tf_client *c;
    tf_put_item *items;
    size_t n;
    size_t first;       /* the first item (in order) that failed, n if none: */
    int first_rc;       /* its result, the return value, ... */
    tf__err first_err;  /* ... and its message for tf_errmsg */
    size_t *msg_at;     /* per item: where its message starts in
                           c->item_msgs (NULL: no memory for them) */
    size_t msgs_len;
} batch;

static const char no_room[] = "(no memory to keep this item's message)";

/* Keeps c->err as the item's message (as getmany.c does: copied one after
   the other, pointed at only at the end, since the buffer moves). */
static void keep_message(batch *b, size_t index, int rc)
{
    tf_client *c = b->c;
    if (!b->msg_at)
        return;
    if (!c->err.msg[0])
        tf__fail(&c->err, rc, "%s", tf_strerror(rc));
    size_t len = strlen(c->err.msg) + 1;
    if (b->msgs_len + len > c->item_msgs_cap) {
        size_t cap = c->item_msgs_cap ? c->item_msgs_cap : 4096;
        while (cap < b->msgs_len + len)
            cap *= 2;
        char *m = realloc(c->item_msgs, cap);
        if (!m) {
            b->msg_at[index] = SIZE_MAX;
            return;
        }
        c->item_msgs = m;
        c->item_msgs_cap = cap;
    }
    memcpy(c->item_msgs + b->msgs_len, c->err.msg, len);
    b->msg_at[index] = b->msgs_len;
    b->msgs_len += len;
}

/* The first failure is the lowest index, not the earliest. Each item's
   failure is its own: the record is cleared for the next one. */
static void resolve(batch *b, size_t index, int rc)
{
    b->items[index].result = rc;
    if (rc != TF_OK)
        keep_message(b, index, rc);
    if (rc != TF_OK && index < b->first) {
        b->first = index;
        b->first_rc = rc;
        b->first_err = b->c->err;
    }
    if (rc != TF_OK)
        tf__err_clear(&b->c->err);
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

int tf_put_many(tf_client *c, tf_put_item *items, size_t n)
{
    if (!c || (!items && n))
        return TF_EINVAL;
    for (size_t i = 0; i < n; i++) {
        items[i].result = PENDING;
        items[i].skipped = 0;
    }
    batch b = {.c = c, .items = items, .n = n, .first = n, .first_rc = TF_OK};
    b.msg_at = n ? malloc(n * sizeof *b.msg_at) : NULL;
    int rc = tf__client_usable(c);
    if (rc == TF_OK)
        rc = put_sequential(&b);
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
    for (size_t i = 0; i < n; i++) {
        if (items[i].result == TF_OK || items[i].result == PENDING)
            items[i].message = "";
        else if (!b.msg_at || b.msg_at[i] == SIZE_MAX)
            items[i].message = no_room;
        else
            items[i].message = c->item_msgs + b.msg_at[i];
    }
    free(b.msg_at);
    if (b.first_rc != TF_OK)
        tf__err_take(&c->err, &b.first_err);
    return b.first_rc;
}
