/*
 * s3.h - a small S3 client (issue 15): objects, ranged reads, paged
 * listings and multipart uploads in one bucket of an S3-compatible store
 * (Ceph's RADOS Gateway, MinIO, AWS S3), over libcurl. libcurl signs every
 * request (CURLOPT_AWS_SIGV4) and expat parses every XML answer: nothing
 * cryptographic and no XML by hand here.
 *
 * One tf__s3 is one libcurl easy handle, so its connection to the store is
 * kept alive and reused from one call to the next. A handle is for one
 * thread at a time (as a curl easy handle is): give each thread its own.
 *
 * Keys are the object names, without the bucket, never starting with '/'.
 * Every call returns 0 or a negative TF_E* code with the detail in e:
 * TF_ENOENT for a missing object, upload or bucket ("no such bucket"),
 * TF_EACCES for credentials the store refuses, TF_EIO when the store cannot
 * be reached or fails (5xx), with the reason; the message quotes the
 * store's own error code and text. Credentials are never put in a message.
 */
#ifndef TF_S3_H
#define TF_S3_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct tf__s3 tf__s3;

/* Longest key handled (S3's own limit). */
#define TF_S3_KEY_MAX 1024
/* Metadata pairs a head keeps (x-amz-meta-NAME: VALUE), and their sizes. */
#define TF_S3_META_MAX 8
#define TF_S3_META_NAME_MAX 64
#define TF_S3_META_VALUE_MAX 256
/* Room for an upload id and an ETag, terminator included. */
#define TF_S3_ID_MAX 256
/* Parts of a multipart upload (S3's limit). */
#define TF_S3_PARTS_MAX 10000

typedef struct tf__s3_config {
    const char *endpoint;   /* "http://127.0.0.1:7480" (https: verified) */
    const char *bucket;
    const char *region;     /* SigV4's scope; NULL: "us-east-1" */
    const char *access_key; /* NULL (both): tf__s3_creds_load's */
    const char *secret_key;
    long timeout_s;         /* per request; 0: 60 */
} tf__s3_config;

/* Credentials as the AWS tools find them: AWS_ACCESS_KEY_ID and
   AWS_SECRET_ACCESS_KEY, else the profile AWS_PROFILE (default "default")
   of the credentials file AWS_SHARED_CREDENTIALS_FILE (default
   ~/.aws/credentials). The two strings are the caller's, to be wiped and
   freed with tf__s3_creds_free. TF_EACCES when there are none. */
int tf__s3_creds_load(char **access_key, char **secret_key, tf__err *e);
void tf__s3_creds_free(char *access_key, char *secret_key);

/* A handle on cfg's bucket (no request is made). TF_EINVAL, TF_ENOMEM,
   TF_EACCES (no credentials). Closed with tf__s3_close (NULL: no-op). */
int tf__s3_open(tf__s3 **out, const tf__s3_config *cfg, tf__err *e);
void tf__s3_close(tf__s3 *s3);

/* A metadata pair to store with an object (x-amz-meta-NAME; NAME in lower
   case, VALUE printable ASCII). */
typedef struct tf__s3_meta {
    const char *name;
    const char *value;
} tf__s3_meta;

/* What head tells of an object. */
typedef struct tf__s3_info {
    uint64_t size;
    int64_t mtime; /* Last-Modified, seconds since the epoch */
    char etag[TF_S3_ID_MAX];
    size_t n_meta;
    struct {
        char name[TF_S3_META_NAME_MAX];
        char value[TF_S3_META_VALUE_MAX];
    } meta[TF_S3_META_MAX];
} tf__s3_info;

/* The value of the metadata NAME, or NULL. */
const char *tf__s3_head_meta(const tf__s3_info *h, const char *name);

/* A put's bytes as they come (tf__s3_put_stream): pull copies up to max
   of the next bytes to dst, waiting for them, and returns how many; 0 cuts
   the request (the store drops what it got: nothing shows). cut says,
   while curl waits on the store, whether to cut it now. Both are called
   from the thread of the put. */
typedef struct tf__s3_source {
    size_t (*pull)(void *user, void *dst, size_t max);
    int (*cut)(void *user);
    void *user;
} tf__s3_source;

/* Where the bytes of a put or an upload_part come from: len bytes of buf,
   or (buf NULL) len bytes of the descriptor fd from offset off (pread), or
   (src set) len bytes of src. */
typedef struct tf__s3_body {
    const void *buf;
    int fd;
    uint64_t off;
    uint64_t len;
    const tf__s3_source *src;
} tf__s3_body;

/* Stores key whole (one PUT) with the metadata given, replacing it. */
int tf__s3_put(tf__s3 *s3, const char *key, const tf__s3_body *body, const tf__s3_meta *meta,
               size_t n_meta, tf__err *e);
/* The same, only if key is still there as the version whose ETag is
   if_match, or (if_match "*") only if key does not exist: the store
   checks and stores in one step. Otherwise TF_EEXIST ("already exists",
   from the store's 412). if_match NULL: as tf__s3_put. */
int tf__s3_put_if(tf__s3 *s3, const char *key, const tf__s3_body *body,
                  const tf__s3_meta *meta, size_t n_meta, const char *if_match, tf__err *e);
/* A put of body->len bytes from body->src as they come, with no limit on
   its time as long as bytes move (the source sets the pace; its cut ends
   it; nothing moving for the request timeout ends it too): one request
   however long, which the store publishes only once the last byte is in.
   With the metadata given; the new object's ETag into etag
   (TF_S3_ID_MAX). */
int tf__s3_put_stream(tf__s3 *s3, const char *key, const tf__s3_body *body,
                      const tf__s3_meta *meta, size_t n_meta, char *etag, tf__err *e);
/* Bytes [off, off + len) of key into buf (*got: how many; fewer at the
   object's end, 0 past it). */
int tf__s3_get(tf__s3 *s3, const char *key, uint64_t off, size_t len, void *buf, size_t *got,
               tf__err *e);
/* What head tells (out) and the object's first len bytes (*got of them)
   in one request: a small file's open and read at once. */
int tf__s3_get_head(tf__s3 *s3, const char *key, size_t len, void *buf, size_t *got,
                    tf__s3_info *out, tf__err *e);
/* The same range written to the descriptor fd (len UINT64_MAX: to the end). */
int tf__s3_get_fd(tf__s3 *s3, const char *key, uint64_t off, uint64_t len, int fd,
                  uint64_t *got, tf__err *e);
int tf__s3_head(tf__s3 *s3, const char *key, tf__s3_info *out, tf__err *e);
/* Deleting a missing key succeeds (S3's own rule). */
int tf__s3_delete(tf__s3 *s3, const char *key, tf__err *e);
/* Server-side copy, metadata included (for rename: copy, then delete; not
   atomic). TF_ENOENT when from is missing. */
int tf__s3_copy(tf__s3 *s3, const char *from, const char *to, tf__err *e);
/* The same with the metadata given instead of from's. */
int tf__s3_copy_meta(tf__s3 *s3, const char *from, const char *to, const tf__s3_meta *meta,
                     size_t n_meta, tf__err *e);

/* ---- listing: one page of ListObjectsV2 per call ---- */

/* An entry of a page: an object (is_prefix 0: key, size, mtime) or, with a
   delimiter, a common prefix ("dir/": is_prefix 1). Return nonzero to
   stop the page early (TF_ECANCELED). */
typedef int (*tf__s3_list_fn)(void *user, const char *key, int is_prefix, uint64_t size,
                              int64_t mtime);

typedef struct tf__s3_page {
    const char *prefix;    /* keys starting with it ("" or NULL: all) */
    const char *delimiter; /* "/" for directories; NULL: none */
    size_t max_keys;       /* 0: the store's default (1000) */
    /* In: where to go on ("" first); out: the next page's ("" at the end). */
    char token[TF_S3_KEY_MAX + 64];
} tf__s3_page;

/* The next page: fn for each entry, in the store's (key) order, as the
   answer is parsed (so fn must not use s3 itself); memory is bounded by
   the parser's, whatever the page's size. */
int tf__s3_list(tf__s3 *s3, tf__s3_page *page, tf__s3_list_fn fn, void *user, tf__err *e);

/* ---- multipart uploads ---- */

/* A new multipart upload of key with the metadata given; its id into
   upload_id (TF_S3_ID_MAX). Nothing shows under key until complete. */
int tf__s3_mpu_create(tf__s3 *s3, const char *key, const tf__s3_meta *meta, size_t n_meta,
                      char *upload_id, tf__err *e);
/* Uploads part number part (1..10000; every part but the last at least
   5 MiB); its ETag into etag (TF_S3_ID_MAX). */
int tf__s3_mpu_part(tf__s3 *s3, const char *key, const char *upload_id, unsigned part,
                    const tf__s3_body *body, char *etag, tf__err *e);

typedef struct tf__s3_part {
    unsigned number;
    uint64_t size;
    char etag[TF_S3_ID_MAX];
} tf__s3_part;

/* Publishes the parts (in increasing number) as key, whole; the new
   object's ETag into etag (TF_S3_ID_MAX; NULL: not wanted). */
int tf__s3_mpu_complete(tf__s3 *s3, const char *key, const char *upload_id,
                        const tf__s3_part *parts, size_t n, char *etag, tf__err *e);
/* Drops an upload and its parts. TF_ENOENT when it is not (or no longer)
   there. */
int tf__s3_mpu_abort(tf__s3 *s3, const char *key, const char *upload_id, tf__err *e);

/* Each multipart upload in progress whose key starts with prefix (all
   pages): fn(user, key, upload_id, initiated), after each page's request,
   so that fn may use s3 (to abort one); nonzero stops. */
typedef int (*tf__s3_upload_fn)(void *user, const char *key, const char *upload_id,
                                int64_t initiated);
int tf__s3_mpu_list(tf__s3 *s3, const char *prefix, tf__s3_upload_fn fn, void *user,
                    tf__err *e);
/* The parts an upload holds (all pages), in increasing number, into parts
   (cap entries; TF_ETOOBIG beyond); *n how many. */
int tf__s3_mpu_parts(tf__s3 *s3, const char *key, const char *upload_id, tf__s3_part *parts,
                     size_t cap, size_t *n, tf__err *e);

#endif /* TF_S3_H */
