/*
 * transport_tls.h - TLS behind the transport table (transport.h): a
 * connection whose every read and write goes through one tf__tls (tls.h).
 */
#ifndef TF_TRANSPORT_TLS_H
#define TF_TRANSPORT_TLS_H

#include "tls.h"
#include "transport.h"

extern const tf__transport tf__transport_tls;

/* Puts a connected socket behind the TLS table; the connection owns tls
   from here on (tf__conn_close frees it and closes fd). TF_ENOMEM (then
   tls is still the caller's). The handshake is tf__conn_handshake's. */
int tf__conn_tls(tf__conn *c, int fd, int nowait, tf__tls *tls);

/* Drops the TLS state of c and goes on in plain TCP over the same socket:
   for answering a plaintext client in its own language. */
void tf__conn_tls_to_tcp(tf__conn *c);

/* The TLS connection under c, NULL when c is not TLS. */
tf__tls *tf__conn_tls_of(const tf__conn *c);

/* After TF__IO_ERROR on a TLS connection: its TF_E* code (TF_EPEERVERIFY,
   TF_EPROTO, TF_ENET, ...) and words in *msg (valid while c lives); 0 and
   "" when c is not TLS or nothing failed. */
int tf__conn_tls_error(const tf__conn *c, const char **msg);

/* The verified client certificate of a server connection (mutual TLS,
   TF_SOPT_TLS_CA): 1 with its SPKI fingerprint "SHA256:..." in fp and its
   subject CN in cn (either may be NULL), 0 when the client presented none
   or c is not TLS. For the users module, which maps it to a user. */
int tf__conn_peer_identity(const tf__conn *c, char fp[TF__FP_SIZE], char *cn, size_t cn_cap);

#endif /* TF_TRANSPORT_TLS_H */
