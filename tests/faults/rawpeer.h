/*
 * rawpeer.h - a hand-driven tcpfile peer for the fault tests: raw sockets to
 * 127.0.0.1 that send any bytes, well formed or not, and read the server's
 * frames with bounded waits. Every call returns 0 / a count on success and
 * -1 when the connection failed, closed or timed out, so a test can assert
 * exactly what it expects.
 */
#ifndef TF_RAWPEER_H
#define TF_RAWPEER_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Connects to 127.0.0.1:port; reads and writes wait at most 5 s. */
int rp_connect(const char *port);
/* Sends all n bytes (never SIGPIPE). */
int rp_send(int fd, const void *p, size_t n);
/* Receives exactly n bytes. */
int rp_recv(int fd, void *p, size_t n);

/* Sends a client hello with these fields (any values, for bad ones too). */
int rp_send_hello(int fd, uint16_t vmin, uint16_t vmax, uint32_t features);
/* Reads the server's hello (and its message, dropped). */
int rp_read_server_hello(int fd, tf_wire_server_hello *h);
/* Both, with a valid hello asking for features: the connection is ready
   for requests. Returns the features in use, or -1. */
long rp_handshake(int fd, uint32_t features);

/* Encodes a request by hand (so that name_len may be anything up to 65535,
   and flags and fields anything at all) and sends it, followed by name_len
   bytes of name (NULL: that many 'n's) and, when key is not NULL, the 16
   key bytes. */
int rp_send_request(int fd, uint8_t op, uint8_t flags, uint16_t name_len, uint64_t size,
                    uint64_t offset, const char *name, const uint8_t *key);
/* Reads one response head and its message (msg may be NULL). */
int rp_read_response(int fd, tf_wire_response *r, char *msg, size_t msg_len);
/* Reads a payload of size bytes (dropped) and its trailer; returns the
   trailer's status, or -1. */
int rp_read_payload(int fd, uint64_t size);

/* A list request on an open connection: 0 when the reply is a good
   listing, -1 otherwise. Proves the connection is still in step. */
int rp_list_ok(int fd);

/* Sends a trailer: status and digest_len bytes of digest. */
int rp_send_trailer(int fd, uint16_t status, const uint8_t *digest, uint16_t digest_len);

/* Waits up to timeout_ms for the server to close the connection,
   discarding what it sends. 1 when it closed (EOF or reset), 0 if not. */
int rp_wait_closed(int fd, int timeout_ms);

/* Closes with a reset (SO_LINGER 0) instead of a FIN. */
void rp_abort(int fd);

/* The local port of a connected socket. */
int rp_local_port(int fd);

#endif /* TF_RAWPEER_H */
