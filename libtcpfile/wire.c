/*
 * wire.c - frame and list codec. Bytes in, structs out (and back); nothing
 * here touches a socket or a file, so every path is unit-testable.
 */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "listing.h"

void tf__put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void tf__put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void tf__put_u64(uint8_t *p, uint64_t v)
{
    tf__put_u32(p, (uint32_t)(v >> 32));
    tf__put_u32(p + 4, (uint32_t)v);
}

uint16_t tf__get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t tf__get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
           (uint32_t)p[3];
}

uint64_t tf__get_u64(const uint8_t *p)
{
    return ((uint64_t)tf__get_u32(p) << 32) | tf__get_u32(p + 4);
}

/* The codes the wire carries: up to TF_EINTERNAL, then the tree's
   (TF_ENOTDIR..TF_ENOTEMPTY) and TF_ECONFLICT (PUTX). The three between them
   (TF_ERESOLVE, TF_ECONNREFUSED, TF_EPEERVERIFY) are a client's own, about
   reaching a server, and never sent; a status of their number is unknown. */
#define WIRE_LAST TF_EINTERNAL
#define WIRE_TREE_FIRST TF_ENOTDIR
#define WIRE_TREE_LAST TF_ECONFLICT

static int wire_travels(int code)
{
    return (code < 0 && code >= WIRE_LAST) || (code <= WIRE_TREE_FIRST && code >= WIRE_TREE_LAST);
}

uint16_t tf__wire_status(int code)
{
    if (code >= 0)
        return 0;
    if (!wire_travels(code))
        return (uint16_t)-TF_EINTERNAL;
    return (uint16_t)-code;
}

int tf__wire_status_known(uint16_t status)
{
    return status == 0 || wire_travels(-(int)status);
}

/* A status this version does not know comes from a newer peer: the frame
   that carried it is well formed, so it fails that one request with the
   generic code and leaves the connection in step (TF_EPROTO would close it,
   and every new status would break every older client). */
int tf__wire_code(uint16_t status)
{
    if (status == 0)
        return TF_OK;
    if (!tf__wire_status_known(status))
        return TF_EINTERNAL;
    return -(int)status;
}

long tf__wire_encode_client_hello(uint8_t *buf, size_t cap, const tf_wire_client_hello *h)
{
    if (cap < TF_WIRE_CLIENT_HELLO_SIZE || h->version_min == 0 ||
        h->version_min > h->version_max)
        return TF_EINVAL;
    memcpy(buf, TF_WIRE_MAGIC, 4);
    tf__put_u16(buf + 4, h->version_min);
    tf__put_u16(buf + 6, h->version_max);
    tf__put_u32(buf + 8, h->features);
    tf__put_u32(buf + 12, 0);
    return TF_WIRE_CLIENT_HELLO_SIZE;
}

long tf__wire_decode_client_hello(const uint8_t *buf, size_t len, tf_wire_client_hello *h)
{
    /* Check the magic as soon as its bytes arrive, so a stray HTTP client is
       told off at once rather than waited for. */
    if (memcmp(buf, TF_WIRE_MAGIC, len < 4 ? len : 4) != 0)
        return TF_EPROTO;
    if (len < TF_WIRE_CLIENT_HELLO_SIZE)
        return TF_WIRE_NEED_MORE;
    h->version_min = tf__get_u16(buf + 4);
    h->version_max = tf__get_u16(buf + 6);
    h->features = tf__get_u32(buf + 8);
    if (h->version_min == 0 || h->version_min > h->version_max)
        return TF_EPROTO;
    /* buf + 12 is reserved: ignored, so that a later version may use it. */
    return TF_WIRE_CLIENT_HELLO_SIZE;
}

long tf__wire_encode_server_hello(uint8_t *buf, size_t cap, const tf_wire_server_hello *h)
{
    size_t need = TF_WIRE_SERVER_HELLO_SIZE + (size_t)h->message_len;
    /* Refuse what the decoder refuses: never put a malformed hello on the wire. */
    if (h->message_len > TF_WIRE_MESSAGE_MAX || cap < need || h->version_min == 0 ||
        h->version_min > h->version_max ||
        (h->status == 0 && (h->max_name == 0 || h->max_name > TF_WIRE_NAME_MAX)))
        return TF_EINVAL;
    memcpy(buf, TF_WIRE_MAGIC, 4);
    tf__put_u16(buf + 4, h->version_min);
    tf__put_u16(buf + 6, h->version_max);
    tf__put_u32(buf + 8, h->features);
    tf__put_u16(buf + 12, h->status);
    tf__put_u16(buf + 14, h->max_name);
    tf__put_u64(buf + 16, h->max_upload);
    tf__put_u16(buf + 24, h->message_len);
    tf__put_u16(buf + 26, 0);
    if (h->message_len)
        memcpy(buf + TF_WIRE_SERVER_HELLO_SIZE, h->message, h->message_len);
    return (long)need;
}

long tf__wire_decode_server_hello(const uint8_t *buf, size_t len, tf_wire_server_hello *h)
{
    if (memcmp(buf, TF_WIRE_MAGIC, len < 4 ? len : 4) != 0)
        return TF_EPROTO;
    if (len < TF_WIRE_SERVER_HELLO_SIZE)
        return TF_WIRE_NEED_MORE;
    h->version_min = tf__get_u16(buf + 4);
    h->version_max = tf__get_u16(buf + 6);
    h->features = tf__get_u32(buf + 8);
    h->status = tf__get_u16(buf + 12);
    h->max_name = tf__get_u16(buf + 14);
    h->max_upload = tf__get_u64(buf + 16);
    h->message_len = tf__get_u16(buf + 24);
    if (h->version_min == 0 || h->version_min > h->version_max)
        return TF_EPROTO;
    if (h->message_len > TF_WIRE_MESSAGE_MAX)
        return TF_EPROTO;
    if (h->status == 0 && (h->max_name == 0 || h->max_name > TF_WIRE_NAME_MAX))
        return TF_EPROTO;
    if (len - TF_WIRE_SERVER_HELLO_SIZE < h->message_len)
        return TF_WIRE_NEED_MORE;
    h->message = (const char *)buf + TF_WIRE_SERVER_HELLO_SIZE;
    return TF_WIRE_SERVER_HELLO_SIZE + (long)h->message_len;
}

uint16_t tf__wire_negotiate(uint16_t a_min, uint16_t a_max, uint16_t b_min, uint16_t b_max)
{
    uint16_t lo = a_min > b_min ? a_min : b_min;
    uint16_t hi = a_max < b_max ? a_max : b_max;
    return lo <= hi ? hi : 0;
}

/* A rename's second path: its length is the size field, when that is a
   length a path can have; otherwise there is none (and the request is
   refused as unframeable). */
static size_t rename_to_len(const tf_wire_request *r)
{
    return r->op == TF_OP_RENAME && r->size > 0 && r->size <= TF_WIRE_NAME_MAX
               ? (size_t)r->size
               : 0;
}

/* Flag 0x01 is UPLOAD_KEY on the version 1 ops (and on unknown ones, as
   before), but each tree op's own flag: no key follows those. */
static int has_key(const tf_wire_request *r)
{
    return (r->flags & TF_REQ_UPLOAD_KEY) && !(r->op >= TF_OP_STAT && r->op <= TF_OP_LISTDIR);
}

/* The put extension block's length, from the flags alone (bounded: 44).
   Only a put has one: the tree ops give the same bits meanings of their
   own. */
static size_t ext_len(const tf_wire_request *r)
{
    if (r->op != TF_OP_PUT)
        return 0;
    return ((r->flags & TF_REQ_IF_MATCH) ? TF_WIRE_EXT_DIGEST : 0) +
           ((r->flags & TF_REQ_MTIME) ? TF_WIRE_MTIME_SIZE : 0) +
           ((r->flags & TF_REQ_SKIP_SAME) ? TF_WIRE_EXT_DIGEST : 0);
}

size_t tf__wire_request_tail(const tf_wire_request *r)
{
    return (size_t)r->name_len + (has_key(r) ? TF_UPLOAD_KEY_SIZE : 0) + rename_to_len(r) +
           ext_len(r);
}

long tf__wire_encode_request(uint8_t *buf, size_t cap, const tf_wire_request *r)
{
    size_t need = TF_WIRE_REQUEST_SIZE + tf__wire_request_tail(r);
    int put = r->op == TF_OP_PUT;
    if (r->name_len > TF_WIRE_NAME_MAX || cap < need || (has_key(r) && !r->key) ||
        r->op == TF_OP_RENAME || (put && (r->flags & TF_REQ_IF_MATCH) && !r->if_match) ||
        (put && (r->flags & TF_REQ_SKIP_SAME) && !r->same))
        return TF_EINVAL; /* a rename: tf__wire_encode_rename */
    buf[0] = r->op;
    buf[1] = r->flags;
    tf__put_u16(buf + 2, r->name_len);
    tf__put_u32(buf + 4, 0);
    tf__put_u64(buf + 8, r->size);
    tf__put_u64(buf + 16, r->offset);
    uint8_t *p = buf + TF_WIRE_REQUEST_SIZE;
    if (r->name_len)
        memcpy(p, r->name, r->name_len);
    p += r->name_len;
    if (has_key(r)) {
        memcpy(p, r->key, TF_UPLOAD_KEY_SIZE);
        p += TF_UPLOAD_KEY_SIZE;
    }
    if (!put)
        return (long)need;
    if (r->flags & TF_REQ_IF_MATCH) {
        memcpy(p, r->if_match, TF_WIRE_EXT_DIGEST);
        p += TF_WIRE_EXT_DIGEST;
    }
    if (r->flags & TF_REQ_MTIME) {
        tf__put_u64(p, (uint64_t)r->mtime_sec);
        tf__put_u32(p + 8, r->mtime_nsec);
        p += TF_WIRE_MTIME_SIZE;
    }
    if (r->flags & TF_REQ_SKIP_SAME)
        memcpy(p, r->same, TF_WIRE_EXT_DIGEST);
    return (long)need;
}

long tf__wire_decode_request(const uint8_t *buf, size_t len, size_t max_name,
                             tf_wire_request *r)
{
    if (len < TF_WIRE_REQUEST_SIZE)
        return TF_WIRE_NEED_MORE;
    r->op = buf[0];
    r->flags = buf[1];
    r->name_len = tf__get_u16(buf + 2);
    r->size = tf__get_u64(buf + 8);
    r->offset = tf__get_u64(buf + 16);
    r->name = NULL; /* until it is there (not with TF_ETOOBIG) */
    r->key = NULL;
    r->if_match = NULL;
    r->same = NULL;
    r->mtime_sec = 0;
    r->mtime_nsec = 0;
    /* The name limit is checked before we wait for (or look at) the name
       (and a rename's new path). */
    if (max_name > TF_WIRE_NAME_MAX)
        max_name = TF_WIRE_NAME_MAX;
    if (r->name_len > max_name || rename_to_len(r) > max_name)
        return TF_ETOOBIG;
    if (len - TF_WIRE_REQUEST_SIZE < tf__wire_request_tail(r))
        return TF_WIRE_NEED_MORE;
    const uint8_t *p = buf + TF_WIRE_REQUEST_SIZE;
    r->name = (const char *)p;
    p += r->name_len;
    if (has_key(r)) {
        r->key = p;
        p += TF_UPLOAD_KEY_SIZE;
    }
    if (r->op != TF_OP_PUT)
        return TF_WIRE_REQUEST_SIZE + (long)tf__wire_request_tail(r);
    if (r->flags & TF_REQ_IF_MATCH) {
        r->if_match = p;
        p += TF_WIRE_EXT_DIGEST;
    }
    if (r->flags & TF_REQ_MTIME) {
        r->mtime_sec = (int64_t)tf__get_u64(p);
        r->mtime_nsec = tf__get_u32(p + 8);
        p += TF_WIRE_MTIME_SIZE;
    }
    if (r->flags & TF_REQ_SKIP_SAME)
        r->same = p;
    return TF_WIRE_REQUEST_SIZE + (long)tf__wire_request_tail(r);
}

/* ---- the auth request ------------------------------------------------- */

long tf__wire_encode_auth(uint8_t *buf, size_t cap, const tf_wire_auth *a)
{
    size_t need = TF_WIRE_AUTH_SIZE + (size_t)a->user_len + (size_t)a->token_len;
    if (a->user_len > TF_WIRE_USER_MAX || a->token_len > TF_WIRE_TOKEN_MAX || cap < need)
        return TF_EINVAL;
    memset(buf, 0, TF_WIRE_AUTH_SIZE);
    buf[0] = TF_OP_AUTH;
    tf__put_u16(buf + 2, a->user_len);
    tf__put_u16(buf + 4, a->token_len);
    if (a->user_len)
        memcpy(buf + TF_WIRE_AUTH_SIZE, a->user, a->user_len);
    if (a->token_len)
        memcpy(buf + TF_WIRE_AUTH_SIZE + a->user_len, a->token, a->token_len);
    return (long)need;
}

long tf__wire_decode_auth(const uint8_t *buf, size_t len, tf_wire_auth *a)
{
    if (len < TF_WIRE_AUTH_SIZE)
        return TF_WIRE_NEED_MORE;
    if (buf[0] != TF_OP_AUTH || buf[1] != 0)
        return TF_EPROTO;
    /* Bytes 6..23 are reserved and must be zero: they are where a later
       version would say that more follows, so a frame with them set is one
       this version cannot measure. */
    for (size_t i = 6; i < TF_WIRE_AUTH_SIZE; i++)
        if (buf[i])
            return TF_EPROTO;
    uint16_t ulen = tf__get_u16(buf + 2), tlen = tf__get_u16(buf + 4);
    if (ulen > TF_WIRE_USER_MAX || tlen > TF_WIRE_TOKEN_MAX)
        return TF_ETOOBIG;
    a->user_len = ulen;
    a->token_len = tlen;
    if (len - TF_WIRE_AUTH_SIZE < (size_t)ulen + tlen)
        return TF_WIRE_NEED_MORE;
    a->user = (const char *)buf + TF_WIRE_AUTH_SIZE;
    a->token = (const char *)buf + TF_WIRE_AUTH_SIZE + ulen;
    return TF_WIRE_AUTH_SIZE + (long)ulen + (long)tlen;
}

long tf__wire_encode_response(uint8_t *buf, size_t cap, const tf_wire_response *r)
{
    size_t need = TF_WIRE_RESPONSE_SIZE + (size_t)r->message_len;
    if (r->message_len > TF_WIRE_MESSAGE_MAX || cap < need)
        return TF_EINVAL;
    buf[0] = r->op;
    buf[1] = r->flags;
    tf__put_u16(buf + 2, r->status);
    tf__put_u16(buf + 4, r->message_len);
    tf__put_u16(buf + 6, 0);
    tf__put_u64(buf + 8, r->size);
    if (r->message_len)
        memcpy(buf + TF_WIRE_RESPONSE_SIZE, r->message, r->message_len);
    return (long)need;
}

long tf__wire_decode_response(const uint8_t *buf, size_t len, tf_wire_response *r)
{
    if (len < TF_WIRE_RESPONSE_SIZE)
        return TF_WIRE_NEED_MORE;
    r->op = buf[0];
    r->flags = buf[1];
    r->status = tf__get_u16(buf + 2);
    r->message_len = tf__get_u16(buf + 4);
    r->size = tf__get_u64(buf + 8);
    if (r->message_len > TF_WIRE_MESSAGE_MAX)
        return TF_EPROTO;
    if (len - TF_WIRE_RESPONSE_SIZE < r->message_len)
        return TF_WIRE_NEED_MORE;
    r->message = (const char *)buf + TF_WIRE_RESPONSE_SIZE;
    return TF_WIRE_RESPONSE_SIZE + (long)r->message_len;
}

long tf__wire_encode_trailer(uint8_t *buf, size_t cap, const tf_wire_trailer *t)
{
    size_t need = TF_WIRE_TRAILER_SIZE + (size_t)t->digest_len;
    if (t->digest_len > TF_WIRE_DIGEST_MAX || cap < need)
        return TF_EINVAL;
    tf__put_u16(buf, t->status);
    tf__put_u16(buf + 2, t->digest_len);
    if (t->digest_len)
        memcpy(buf + TF_WIRE_TRAILER_SIZE, t->digest, t->digest_len);
    return (long)need;
}

long tf__wire_decode_trailer(const uint8_t *buf, size_t len, tf_wire_trailer *t)
{
    if (len < TF_WIRE_TRAILER_SIZE)
        return TF_WIRE_NEED_MORE;
    t->status = tf__get_u16(buf);
    t->digest_len = tf__get_u16(buf + 2);
    if (t->digest_len > TF_WIRE_DIGEST_MAX)
        return TF_EPROTO;
    if (len - TF_WIRE_TRAILER_SIZE < t->digest_len)
        return TF_WIRE_NEED_MORE;
    t->digest = buf + TF_WIRE_TRAILER_SIZE;
    return TF_WIRE_TRAILER_SIZE + (long)t->digest_len;
}

/* ---- chunks of a streamed put ------------------------------------------ */

long tf__wire_encode_chunk_head(uint8_t *buf, size_t cap, uint32_t len)
{
    if (cap < TF_WIRE_CHUNK_HEAD_SIZE || len > TF_WIRE_CHUNK_MAX)
        return TF_EINVAL;
    tf__put_u32(buf, len);
    return TF_WIRE_CHUNK_HEAD_SIZE;
}

long tf__wire_decode_chunk_head(const uint8_t *buf, size_t len, uint32_t *chunk_len)
{
    if (len < TF_WIRE_CHUNK_HEAD_SIZE)
        return TF_WIRE_NEED_MORE;
    uint32_t n = tf__get_u32(buf);
    /* Bounded so that a receiver can check its limits chunk by chunk. */
    if (n > TF_WIRE_CHUNK_MAX)
        return TF_EPROTO;
    *chunk_len = n;
    return TF_WIRE_CHUNK_HEAD_SIZE;
}

/* ---- list encoding ---------------------------------------------------- */

#define LIST_HEAD_SIZE 4
#define LIST_ENTRY_FIXED 18 /* u16 name length + u64 size + i64 mtime */

size_t tf__wire_list_entry_size(size_t name_len)
{
    return LIST_ENTRY_FIXED + name_len;
}

long tf__wire_encode_list_head(uint8_t *buf, size_t cap, uint32_t count)
{
    if (cap < LIST_HEAD_SIZE)
        return TF_EINVAL;
    tf__put_u32(buf, count);
    return LIST_HEAD_SIZE;
}

long tf__wire_encode_list_entry(uint8_t *buf, size_t cap, const char *name,
                                size_t name_len, uint64_t size, int64_t mtime)
{
    size_t need = tf__wire_list_entry_size(name_len);
    if (name_len == 0 || name_len > TF_WIRE_NAME_MAX || cap < need)
        return TF_EINVAL;
    tf__put_u16(buf, (uint16_t)name_len);
    memcpy(buf + 2, name, name_len);
    tf__put_u64(buf + 2 + name_len, size);
    tf__put_u64(buf + 10 + name_len, (uint64_t)mtime);
    return (long)need;
}

size_t tf__wire_list_size(const tf_listing *l)
{
    size_t total = LIST_HEAD_SIZE;
    for (size_t i = 0; i < l->count; i++)
        total += tf__wire_list_entry_size(strlen(l->entries[i].name));
    return total;
}

long tf__wire_encode_list(uint8_t *buf, size_t cap, const tf_listing *l)
{
    if (l->count > UINT32_MAX || cap < tf__wire_list_size(l))
        return TF_EINVAL;
    long pos = tf__wire_encode_list_head(buf, cap, (uint32_t)l->count);
    for (size_t i = 0; i < l->count; i++) {
        const tf_entry *e = &l->entries[i];
        long n = tf__wire_encode_list_entry(buf + pos, cap - (size_t)pos, e->name,
                                            strlen(e->name), e->size, e->mtime);
        if (n < 0)
            return n;
        pos += n;
    }
    return pos;
}

int tf__wire_decode_list(const uint8_t *buf, size_t len, size_t max_name,
                         tf_listing **out)
{
    *out = NULL;
    if (len < LIST_HEAD_SIZE)
        return TF_EPROTO;
    uint32_t count = tf__get_u32(buf);
    /* Every entry takes at least LIST_ENTRY_FIXED + 1 bytes, so a count the
       buffer cannot hold is refused before anything is allocated. */
    if ((uint64_t)count > (len - LIST_HEAD_SIZE) / (LIST_ENTRY_FIXED + 1))
        return TF_EPROTO;
    if (max_name > TF_WIRE_NAME_MAX)
        max_name = TF_WIRE_NAME_MAX;

    /* One pass to validate and measure, one to fill the listing through
       its builder: reserved once, since the sizes are known by then. */
    size_t names_bytes = 0;
    size_t pos = LIST_HEAD_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < 2)
            return TF_EPROTO;
        size_t nlen = tf__get_u16(buf + pos);
        if (nlen == 0 || nlen > max_name)
            return TF_EPROTO;
        if (len - pos < tf__wire_list_entry_size(nlen))
            return TF_EPROTO;
        if (tf__name_check_bytes(buf + pos + 2, nlen, max_name, NULL) != TF_OK)
            return TF_EPROTO;
        names_bytes += nlen + 1;
        pos += tf__wire_list_entry_size(nlen);
    }
    if (pos != len)
        return TF_EPROTO;

    tf__listing_builder b;
    tf__listing_builder_init(&b, count, max_name);
    int rc = tf__listing_builder_reserve(&b, count, names_bytes);
    pos = LIST_HEAD_SIZE;
    for (uint32_t i = 0; rc == TF_OK && i < count; i++) {
        size_t nlen = tf__get_u16(buf + pos);
        rc = tf__listing_builder_add(&b, (const char *)buf + pos + 2, nlen,
                                     tf__get_u64(buf + pos + 2 + nlen),
                                     (int64_t)tf__get_u64(buf + pos + 10 + nlen));
        pos += tf__wire_list_entry_size(nlen);
    }
    if (rc == TF_OK)
        return tf__listing_builder_finish(&b, out);
    tf__listing_builder_abort(&b);
    /* The first pass checked every name the builder checks. */
    return rc == TF_ENOMEM ? TF_ENOMEM : TF_EPROTO;
}

/* ---- the tree (section 3a) --------------------------------------------- */

void tf__wire_server_hello_put_depth(uint8_t *hello, uint16_t max_depth)
{
    tf__put_u16(hello + 26, max_depth);
}

uint16_t tf__wire_server_hello_depth(const uint8_t *hello)
{
    return tf__get_u16(hello + 26);
}

const char *tf__wire_request_to(const tf_wire_request *r, size_t *len)
{
    *len = rename_to_len(r);
    return *len && r->name ? r->name + r->name_len : NULL;
}

long tf__wire_encode_rename(uint8_t *buf, size_t cap, uint8_t flags, const char *from,
                            size_t from_len, const char *to, size_t to_len)
{
    if (from_len == 0 || from_len > TF_WIRE_NAME_MAX || to_len == 0 ||
        to_len > TF_WIRE_NAME_MAX || cap < TF_WIRE_REQUEST_SIZE + from_len + to_len)
        return TF_EINVAL;
    buf[0] = TF_OP_RENAME;
    buf[1] = flags;
    tf__put_u16(buf + 2, (uint16_t)from_len);
    tf__put_u32(buf + 4, 0);
    tf__put_u64(buf + 8, to_len);
    tf__put_u64(buf + 16, 0);
    memcpy(buf + TF_WIRE_REQUEST_SIZE, from, from_len);
    memcpy(buf + TF_WIRE_REQUEST_SIZE + from_len, to, to_len);
    return (long)(TF_WIRE_REQUEST_SIZE + from_len + to_len);
}

long tf__wire_encode_stat(uint8_t *buf, size_t cap, const tf_wire_stat *st)
{
    if (cap < TF_WIRE_STAT_SIZE || (st->type != 1 && st->type != 2) ||
        st->mtime_ns > 999999999u)
        return TF_EINVAL;
    buf[0] = st->type;
    buf[1] = st->flags & TF_WIRE_STAT_HAS_DIGEST;
    tf__put_u16(buf + 2, 0);
    tf__put_u32(buf + 4, st->mtime_ns);
    tf__put_u64(buf + 8, st->size);
    tf__put_u64(buf + 16, (uint64_t)st->mtime);
    if (st->flags & TF_WIRE_STAT_HAS_DIGEST)
        memcpy(buf + 24, st->digest, 16);
    else
        memset(buf + 24, 0, 16);
    return TF_WIRE_STAT_SIZE;
}

long tf__wire_decode_stat(const uint8_t *buf, size_t len, tf_wire_stat *st)
{
    if (len < TF_WIRE_STAT_SIZE || len > TF_WIRE_STAT_MAX)
        return TF_EPROTO;
    st->type = buf[0];
    st->flags = buf[1] & TF_WIRE_STAT_HAS_DIGEST;
    st->mtime_ns = tf__get_u32(buf + 4);
    st->size = tf__get_u64(buf + 8);
    st->mtime = (int64_t)tf__get_u64(buf + 16);
    memcpy(st->digest, buf + 24, 16);
    if ((st->type != 1 && st->type != 2) || st->mtime_ns > 999999999u)
        return TF_EPROTO;
    return (long)len;
}

long tf__wire_encode_dirent(uint8_t *buf, size_t cap, const tf_wire_dirent *d)
{
    size_t need = TF_WIRE_DIRENT_FIXED + (size_t)d->path_len;
    if (d->path_len == 0 || d->path_len > TF_WIRE_NAME_MAX || cap < need ||
        (d->type != 1 && d->type != 2) || d->mtime_ns > 999999999u)
        return TF_EINVAL;
    uint8_t *p = buf;
    tf__put_u16(p, d->path_len);
    memcpy(p + 2, d->path, d->path_len);
    p += 2 + d->path_len;
    p[0] = d->type;
    p[1] = 0;
    tf__put_u32(p + 2, d->mtime_ns);
    tf__put_u64(p + 6, d->size);
    tf__put_u64(p + 14, (uint64_t)d->mtime);
    return (long)need;
}

long tf__wire_decode_dirent(const uint8_t *buf, size_t len, size_t max_path,
                            tf_wire_dirent *d)
{
    if (len < 2)
        return TF_EPROTO;
    d->path_len = tf__get_u16(buf);
    if (max_path > TF_WIRE_NAME_MAX)
        max_path = TF_WIRE_NAME_MAX;
    if (d->path_len == 0 || d->path_len > max_path ||
        len - 2 < (size_t)d->path_len + TF_WIRE_DIRENT_FIXED - 2)
        return TF_EPROTO;
    d->path = (const char *)buf + 2;
    const uint8_t *p = buf + 2 + d->path_len;
    d->type = p[0];
    d->mtime_ns = tf__get_u32(p + 2);
    d->size = tf__get_u64(p + 6);
    d->mtime = (int64_t)tf__get_u64(p + 14);
    if ((d->type != 1 && d->type != 2) || d->mtime_ns > 999999999u)
        return TF_EPROTO;
    return (long)(TF_WIRE_DIRENT_FIXED + d->path_len);
}
