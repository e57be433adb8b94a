/*
 * tls.h - one TLS 1.3 connection over OpenSSL, for the transport table:
 * usable from the server's non-blocking event loop and from a blocking
 * client alike. The caller owns the socket (connected, blocking or not);
 * this module never closes it and never polls it.
 *
 * Every call that moves data returns a normalised result:
 *   TF_OK               progress: *n bytes moved (handshake: it is done)
 *   TF__TLS_WANT_READ   would block; call again when the socket is readable
 *   TF__TLS_WANT_WRITE  would block; call again when it is writable
 *   TF__TLS_EOF         the peer closed cleanly (close_notify); reads only
 *   a negative TF_E*    failed, with a message in e; the connection is dead:
 *     TF_EPEERVERIFY  the server's identity was rejected (client side)
 *     TF_EPROTO       not TLS, not TLS 1.3, a plaintext tcpfile peer, an alert
 *     TF_ENET         reset, or closed without close_notify (truncation)
 * As with OpenSSL, a write that returned WANT_* is repeated with the same
 * bytes (sendfile: the same offset; the bytes it read are kept).
 */
#ifndef TF_TLS_H
#define TF_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "internal.h"
#include "tls_identity.h"

#define TF__TLS_WANT_READ 1
#define TF__TLS_WANT_WRITE 2
#define TF__TLS_EOF 3

/* Most plaintext one SSL_write takes: one TLS record. */
#define TF__TLS_RECORD 16384

typedef struct tf__tls_ctx tf__tls_ctx;
typedef struct tf__tls tf__tls;

/* Known-hosts decision for a server key the client has no pin or CA for:
   0 to accept, or a negative code with a message in e to refuse
   (TF_EPEERVERIFY; another code such as TF_EIO is passed on as it is).
   user is the pointer given to tf__tls_client_new. It runs inside the
   handshake, before the client sends anything but its ClientHello. */
typedef int (*tf__tls_check_fn)(void *user, const char *host, const char *fingerprint,
                                tf__err *e);

/* How a client checks the server, the first one set winning: pin, then
   ca_file, then check. With none of them the context is refused. */
typedef struct tf__tls_client_conf {
    const char *pin;        /* "SHA256:..." of the server's SPKI           */
    const char *ca_file;    /* PEM CAs; the host name is verified too      */
    tf__tls_check_fn check; /* known_hosts, asked with the fingerprint      */
} tf__tls_client_conf;

/* A server context for id (which must outlive it): TLS 1.3 only, the
   default cipher suites, SSL_OP_ENABLE_KTLS, session tickets for
   resumption. TF_EINVAL, TF_ENOMEM. Freed with tf__tls_ctx_free. */
int tf__tls_server_ctx_new(tf__tls_ctx **out, const tf__tls_identity *id, tf__err *e);
/* A client context: TLS 1.3 only, kTLS allowed, remembers the last session
   ticket per host for resumption. TF_EINVAL (no way to check the server,
   a bad pin), TF_ENOENT / TF_EINVAL (unreadable CA file), TF_ENOMEM. */
int tf__tls_client_ctx_new(tf__tls_ctx **out, const tf__tls_client_conf *conf, tf__err *e);
/* Contexts are reference counted: each connection holds one reference, so
   the creator may free its own at any time. tf__tls_ctx_ref adds one. */
void tf__tls_ctx_ref(tf__tls_ctx *ctx);
void tf__tls_ctx_free(tf__tls_ctx *ctx);

/* Mutual TLS. Server: asks every client for a certificate (without
   requiring one) and verifies a presented one against ca_file, failing the
   handshake when it does not verify. Client: presents cert_file / key_file
   (PEM). Before the first connection. TF_ENOENT, TF_EACCES, TF_EINVAL. */
int tf__tls_server_ctx_client_ca(tf__tls_ctx *ctx, const char *ca_file, tf__err *e);
int tf__tls_client_ctx_cert(tf__tls_ctx *ctx, const char *cert_file, const char *key_file,
                            tf__err *e);
/* Server without a client CA: asks every client for a certificate (not
   requiring one) and accepts whichever is presented, for the caller to
   judge by its fingerprint (tf__tls_peer_identity). With a client CA set,
   it changes nothing. TF_EINVAL. */
int tf__tls_server_ctx_ask_client_cert(tf__tls_ctx *ctx, tf__err *e);
/* 1 when the peer presented a certificate that verified (server side: a
   client certificate against the client CA; without a CA, any certificate
   asked for by tf__tls_server_ctx_ask_client_cert), with its SPKI fingerprint in
   fp and its subject CN (cut to cn_cap; "" when none) in cn; 0 otherwise.
   Either buffer may be NULL. */
int tf__tls_peer_identity(const tf__tls *t, char fp[TF__FP_SIZE], char *cn, size_t cn_cap);

/* One connection on fd, server or client side. host (client): the name or
   address the user gave, for SNI, the CA's host-name check and check().
   TF_EINVAL, TF_ENOMEM. Freed with tf__tls_free, which leaves fd open. */
int tf__tls_server_new(tf__tls **out, tf__tls_ctx *ctx, int fd, tf__err *e);
int tf__tls_client_new(tf__tls **out, tf__tls_ctx *ctx, int fd, const char *host,
                       void *check_user, tf__err *e);
void tf__tls_free(tf__tls *t);

/* Advances the handshake: TF_OK once done, WANT_*, or an error. */
int tf__tls_handshake(tf__tls *t, tf__err *e);
/* Up to len bytes into buf: TF_OK with *n > 0, WANT_*, TF__TLS_EOF, error.
   Takes every record already received, not only the first. */
int tf__tls_read(tf__tls *t, void *buf, size_t len, size_t *n, tf__err *e);
/* Bytes already received and waiting in OpenSSL: epoll will not report
   them, so an event loop reads again while this is non-zero. */
int tf__tls_pending(const tf__tls *t);
/* Copies up to len of those decrypted bytes (one record's) into buf
   without taking them: how many, 0 when none. Never touches the socket. */
size_t tf__tls_peek(tf__tls *t, void *buf, size_t len);
/* For a blocking connection that reads large payloads (the client's):
   once the handshake is done, OpenSSL reads the socket ahead into a large
   buffer, one read for many records instead of two per record. Call
   before the handshake. */
void tf__tls_bulk_reads(tf__tls *t);
/* Writes from buf: TF_OK with 0 < *n <= len (one record or more), WANT_*. */
int tf__tls_write(tf__tls *t, const void *buf, size_t len, size_t *n, tf__err *e);
/* Writes from iov (a frame header and its payload): small pieces are
   gathered into one record of up to TF__TLS_RECORD bytes. As write, except
   that after WANT_* the same bytes may come again cut otherwise (each piece
   by itself, through write or writev): they are the gathered record's. */
int tf__tls_writev(tf__tls *t, const struct iovec *iov, int iovcnt, size_t *n, tf__err *e);
/* As writev, for bytes that more bytes follow at once (a server's
   pipelined small answers; TCP's MSG_MORE): they are packed into full
   records (TF__TLS_RECORD bytes of plaintext), and the records into one
   send of up to TF__TLS_PACK_SEND bytes. Packed bytes count as written;
   they leave at the next write without more (its bytes join them), and
   before sendfile, shutdown, flush or free: the caller must make one of
   those calls. A write without more reports its last byte only once all
   of it has been sent (after WANT_*, the same byte comes again). */
#define TF__TLS_PACK_SEND ((size_t)64 << 10)
int tf__tls_writev_more(tf__tls *t, const struct iovec *iov, int iovcnt, size_t *n,
                        tf__err *e);
/* Sends what packed writes hold: TF_OK when nothing is left, WANT_WRITE,
   or an error. A failed connection has nothing to send: TF_OK. */
int tf__tls_flush(tf__tls *t, tf__err *e);
/* Sends len bytes of file_fd from offset: SSL_sendfile when the kernel
   does TLS for this socket (kTLS), else pread + SSL_write through an
   internal record buffer. TF_OK with 0 < *n <= len, WANT_*, TF_EIO (the
   file: read error, or shorter than offset + len), or an error. */
int tf__tls_sendfile(tf__tls *t, int file_fd, off_t offset, size_t len, size_t *n, tf__err *e);
/* Sends close_notify (not waiting for the peer's): TF_OK, WANT_*, error.
   After a failed connection it does nothing and returns TF_OK. */
int tf__tls_shutdown(tf__tls *t, tf__err *e);

/* 1 when the session was resumed from a ticket (no certificate exchanged). */
int tf__tls_resumed(const tf__tls *t);
/* 1 when the kernel encrypts what this connection sends (kTLS). */
int tf__tls_ktls_send(const tf__tls *t);
/* 1 when no call on this connection can raise SIGPIPE: every write goes
   out with MSG_NOSIGNAL. 0 during the handshake (kTLS may start in it)
   and with kTLS sending (write, sendmsg and sendfile to the socket):
   then a caller whose thread does not block SIGPIPE guards each call. */
int tf__tls_sigpipe_safe(const tf__tls *t);
/* 1 when the handshake failed because the peer spoke plaintext tcpfile:
   the server's adapter may answer with a plaintext hello saying so. */
int tf__tls_peer_plaintext(const tf__tls *t);
/* Every byte read from the socket so far, when they are few (at most
   TF__TLS_FIRST_MAX, and cap): a client that met a plaintext peer reads
   the rest of its hello itself (a busy server's refusal). Returns how many
   were copied into buf, 0 when they are not all kept. */
#define TF__TLS_FIRST_MAX 32
size_t tf__tls_peer_first(const tf__tls *t, void *buf, size_t cap);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs; "" before the handshake. */
void tf__tls_describe(const tf__tls *t, char *buf, size_t cap);

/* What the first bytes of a stream are (also for a plaintext client that
   wants to recognise a TLS server's reply). */
enum {
    TF__SNIFF_MORE = 0,  /* too few bytes to tell */
    TF__SNIFF_TLS = 1,   /* a TLS record: handshake or alert */
    TF__SNIFF_TCPF = 2,  /* a plaintext tcpfile hello ("TCPF") */
    TF__SNIFF_OTHER = 3, /* anything else */
};
int tf__tls_sniff(const void *buf, size_t len);

#endif /* TF_TLS_H */
