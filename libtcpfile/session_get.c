/*
 * session_get.c - the reading operations: get (opened and sent from the
 * disk pool, small files read whole) and list.
 */
#include <stdlib.h>
#include <string.h>

#include "listing.h"
#include "session_internal.h"
#include "smallcache.h"

/* ---- get ------------------------------------------------------------------------ */

/* Reads a whole small file into the request's small buffer (kept with the
   request for the next one) and hashes it, for push_gathered. Returns 0
   when it cannot (no memory, the file changed size): the general path
   then sends it, or says what went wrong. */
static int read_small(session *s, uint64_t size)
{
    request *r = s->req;
    if (!r->small && !(r->small = malloc(SMALL_BODY_MAX)))
        return 0;
    tf__storage *st = storage(s);
    ssize_t n = size ? st->ops->read_at(st, r->body_fd, r->small, (size_t)size, 0) : 0;
    if (n != (ssize_t)size)
        return 0;
    tf__digest_update(&r->digest, r->small, (size_t)size);
    r->gathered = 1;
    return 1;
}

/* A get's storage work (on the disk pool): the file opened, a small one
   read whole, a remembered digest looked up. */
static void get_open_work(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    r->disk_rc = st->ops->open_read(st, r->name, &r->body_fd, &r->disk_size, r->file_id,
                                    &r->err);
    if (r->disk_rc != TF_OK)
        return;
    if (r->body_off == 0 && r->disk_size <= SMALL_BODY_MAX && read_small(s, r->disk_size))
        return;
    if (tf__digest_on(&r->digest)) {
        r->cached = st->ops->digest_load(st, r->body_fd, r->file_id, r->cached_digest);
        if (!r->cached)
            r->disk_rc = tf__sess_ensure_buf(r);
    }
}

/* A small file whose every byte is in memory already is sent at once: a
   job of the disk pool would cost more than the read (two thread hand-offs
   and ten system calls more per 4 KiB get). Its digest comes with it (the
   loop's small-file cache, smallcache.h). Returns 1 when it was. */
static int get_small_cached(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    size_t len;
    uint8_t *digest = tf__digest_on(&r->digest) ? r->cached_digest : NULL;
    if (!st->ops->read_cached || (!r->small && !(r->small = malloc(SMALL_BODY_MAX))) ||
        !tf__small_get(s->ctx->small_cache, st, r->name, r->small, SMALL_BODY_MAX, &len, digest))
        return 0;
    r->cached = digest != NULL;
    r->gathered = 1;
    r->disk_size = len;
    r->disk_rc = TF_OK;
    return 1;
}

void tf__sess_handle_get(session *s, const tf_wire_request *q)
{
    int rc = tf__sess_check_name(s, q);
    if (rc != TF_OK) {
        tf__sess_reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    s->req->body_off = q->offset;
    if (tf__sess_ahead_use(s))
        return;
    if (q->offset == 0 && get_small_cached(s)) {
        tf__sess_get_opened(s);
        return;
    }
    tf__sess_disk_call(s, get_open_work, tf__sess_get_opened);
    if (s->disk)
        tf__sess_ahead_fill(s); /* after the get in flight's job: first in the queue */
}

void tf__sess_get_opened(session *s)
{
    request *r = s->req;
    uint64_t size = r->disk_size, off = r->body_off;
    uint8_t flags = 0;
    int rc = r->disk_rc;
    r->body_off = 0;
    if (rc == TF_OK && r->gathered) {
        tf__sess_queue_head(s, TF_OK, size, 0, NULL);
        r->body_left = size;
        r->has_trailer = 1;
        tf__sess_build_trailer(s);
        tf__sess_start_send(s, AFTER_IDLE);
        return;
    }
    if (rc == TF_OK && off > size) {
        /* Shorter than the client's partial copy: it changed; send it whole. */
        flags |= TF_RESP_FROM_START;
        off = 0;
    }
    if (rc != TF_OK) {
        tf__sess_reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    tf__sess_queue_head(s, TF_OK, size - off, flags, NULL);
    r->body_off = off;
    /* The checksum covers the whole file, resumed or not: the prefix is
       hashed before the head goes out (continue_send), in slices. */
    if (off && tf__digest_on(&r->digest) && !r->cached)
        r->prefix_to = off;
    else
        r->hashed_to = off;
    r->body_left = size - off;
    r->has_trailer = 1;
    /* A backend's own read handles (S3) are no descriptors: never sendfile. */
    r->copy_path = storage(s)->read_handles;
    tf__sess_start_send(s, AFTER_IDLE);
}

/* Takes len bytes of the server's listing budget (TF_OPT_MAX_MEMORY) for
   this request's encoded listing, which it holds until the client has read
   it all - at the minimum rate, that can be long. Over the budget it is
   TF_EBUSY, try again later; one listing alone is always allowed, or a
   root whose listing is over the budget could never be listed. */
static int list_reserve(session *s, size_t len)
{
    uint64_t budget = (uint64_t)opts(s)->value[TF_OPT_MAX_MEMORY];
    uint64_t before = atomic_fetch_add(s->ctx->list_bytes, (uint64_t)len);
    if (before > 0 && before + len > budget) {
        atomic_fetch_sub(s->ctx->list_bytes, (uint64_t)len);
        return tf__fail(&s->req->err, TF_EBUSY,
                        "the server is sending too many listings (%llu bytes held, at most "
                        "%llu); try again later",
                        (unsigned long long)before, (unsigned long long)budget);
    }
    s->req->list_held = len;
    return TF_OK;
}

/* On the disk pool: the root's listing, scanned and encoded into r->list. */
static void list_work(session *s)
{
    request *r = s->req;
    const tf_options *opt = opts(s);
    tf_listing *l = NULL;
    size_t len = 0;
    int rc = tf__storage_scan(storage(s), (size_t)opt->value[TF_OPT_MAX_LIST_ENTRIES],
                              (size_t)opt->value[TF_OPT_MAX_NAME_LEN], &l, &r->err);
    if (rc == TF_OK) {
        len = tf__wire_list_size(l);
        rc = list_reserve(s, len);
    }
    if (rc == TF_OK) {
        r->list = malloc(len);
        if (!r->list)
            rc = tf__fail(&r->err, TF_ENOMEM, "out of memory encoding the listing");
        else if (tf__wire_encode_list(r->list, len, l) < 0)
            rc = tf__fail(&r->err, TF_EINTERNAL, "cannot encode the listing");
    }
    tf_listing_free(l);
    r->disk_rc = rc;
    r->disk_size = len;
}

static void list_done(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        tf__sess_reply_failure(s, r->disk_rc, AFTER_IDLE);
        return;
    }
    tf__sess_queue_head(s, TF_OK, r->disk_size, 0, NULL);
    r->body_mem = r->list;
    r->body_left = r->disk_size;
    r->has_trailer = 1;
    tf__sess_start_send(s, AFTER_IDLE);
}

void tf__sess_handle_list(session *s, const tf_wire_request *q)
{
    if (q->name_len) {
        tf__fail(&s->req->err, TF_EINVAL, "list takes no name");
        tf__sess_reply_failure(s, TF_EINVAL, AFTER_IDLE);
        return;
    }
    tf__sess_disk_call(s, list_work, list_done);
}
