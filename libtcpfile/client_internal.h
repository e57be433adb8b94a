/*
 * client_internal.h - the client handle and the steps of a request that
 * client.c (one request at a time) and getmany.c (pipelined gets) share.
 */
#ifndef TF_CLIENT_INTERNAL_H
#define TF_CLIENT_INTERNAL_H

#include <stdint.h>

#include "digest.h"
#include "internal.h"
#include "netio.h"
#include "tcpfile.h"

#define IO_BUF ((size_t)1 << 20)
/* The stream's read buffer: a response head, a small file and its trailer
   arrive in one recv. */
#define READ_BUF ((size_t)64 << 10)
/* Requests encoded ahead by tf_get_many (at least one longest request). */
#define OUT_BUF ((size_t)16 << 10)

struct tf_client {
    tf__stream s;
    tf_options opt;
    tf__err err;
    uint16_t version;
    uint32_t features;
    uint16_t max_name;    /* the server's limit, from the handshake */
    uint64_t max_upload;  /* the server's limit, 0 = none */
    uint16_t max_path;    /* with TREE: the lower of the server's and ours */
    uint16_t max_depth;
    struct tf_dir *dir;   /* a tf_dir_open listing in progress: other calls
                             get TF_EBUSY */
    int broken;           /* the stream lost sync: every call fails */
    int hello_pending;    /* TF_OPT_EARLY_REQUESTS: the server's hello is
                             still unread; features and limits are what
                             was asked for (tf__client_hello) */
    uint32_t wanted;      /* the features the client's hello asked for */
    int hello_rc;         /* the server's hello failed (read late): every
                             call returns this, with hello_msg */
    char *hello_msg;
    tf__digest digest;    /* checksum state kept between transfers */
    uint8_t *buf;         /* IO_BUF bytes, the stream's READ_BUF bytes, then
                             OUT_BUF for pipelined requests; allocated on
                             first transfer */
    char *item_msgs;      /* tf_get_many's failure messages, one after the
                             other; items point into it until the next call */
    size_t item_msgs_cap;
};

/* A put's extensions as they go on the wire (PUTX): the TF_REQ_* bits
   and their fields, from a caller's tf_put_args (tf__putx_from_args). */
typedef struct tf__putx {
    uint8_t flags;                       /* TF_REQ_PARENTS .. NO_GOAHEAD */
    uint8_t if_match[TF_DIGEST_SIZE];
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint8_t same[TF_DIGEST_SIZE];        /* SKIP_SAME: the source's digest */
} tf__putx;

/* Checks a caller's args and turns them into *px (zeroed for NULL): TF_EINVAL
   for unknown flags, reserved room not zero, IF_ABSENT with IF_MATCH, an
   nsec out of range, KEEP_MTIME without a descriptor (fd < 0); TF_EPROTO
   when flags are set and the server lacks PUTX. fd is the source, for
   KEEP_MTIME. SKIP_SAME's digest is not computed here (tf__putx_hash). */
int tf__putx_from_args(tf_client *c, const tf_put_args *a, int fd, tf__putx *px);
/* SKIP_SAME: hashes the source (fd from off, or mem) of size bytes into
   px->same. TF_EIO (fd failed or ended early), TF_EINVAL (fd cannot seek). */
int tf__putx_hash(tf_client *c, tf__putx *px, int fd, uint64_t off, const uint8_t *mem,
                  uint64_t size);

/* With TF_OPT_EARLY_REQUESTS, reads the server's hello if it is still
   unread (and is a no-op otherwise): TF_OK, or what tf_connect would have
   returned, with its message; after a failure the connection is closed
   and every later call returns the same. */
int tf__client_hello(tf_client *c);
/* For the tf_client_* queries (const handles): reads a pending hello, so
   that they tell the server's features and limits; a failure is kept for
   the next call, tf_errmsg is left as it was. */
void tf__client_settle(const tf_client *c);
/* Closes the connection after a failure that leaves the stream out of
   step (TF_ENET, TF_ETIMEDOUT, TF_EPROTO, TF_ECANCELED, TF_ENOMEM); returns
   rc either way. */
int tf__client_break(tf_client *c, int rc);
/* Whether rc is one of the failures tf__client_break closes for. */
int tf__client_fatal(int rc);
/* TF_OK, or TF_ENET once the connection has been broken. */
int tf__client_usable(tf_client *c);
/* Checks a name against the server's limit; TF_EINVAL says why. */
int tf__client_check_name(tf_client *c, const char *name);
/* With TREE: checks a path against the rules and c's limits; TF_EINVAL
   (or TF_EACCES for the staging directory) says why, what naming it. */
int tf__client_check_path(tf_client *c, const char *path, const char *what);
/* The last component of a path (the path itself when it has one): where
   a get stores by default. */
const char *tf__path_leaf(const char *path);
/* Allocates c->buf (and the stream's read buffer) on first use. */
int tf__client_buffers(tf_client *c);
/* Reads one response to op; a failure status is returned as its code. */
int tf__client_read_response(tf_client *c, int op, const char *name, uint64_t *size,
                             uint8_t *flags);
/* Receives a get's payload of size bytes into fd (-1: nowhere), and its
   trailer; the result ranks as receive_payload in client.c says. index >= 0:
   reports progress as tf_get_many's item index; -1: no progress reports. */
int tf__client_receive_fd(tf_client *c, int fd, uint64_t size, long index);
/* The same into fd or, with fd -1, into mem (size bytes of room). */
int tf__client_receive_to(tf_client *c, int fd, uint8_t *mem, uint64_t size, long index);

/* client_tls.c: the TLS handshake on c's connected stream, before the
   hello, checking the server as the options say (pin, CA, known_hosts).
   TF_EPEERVERIFY (identity rejected), TF_EPROTO (not TLS, not TLS 1.3, a
   plaintext server), TF_ETIMEDOUT, TF_ENET, TF_ENOMEM, or the known_hosts
   file's own code. */
int tf__client_tls_start(tf_client *c, const char *host);

#endif /* TF_CLIENT_INTERNAL_H */
