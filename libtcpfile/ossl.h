/*
 * ossl.h - how the TLS and key modules turn OpenSSL's error queue into one
 * tf__err message. OpenSSL keeps its errors in a per-thread queue; each
 * failure path reads the reason and empties the queue, so that a later,
 * unrelated call does not report a stale error.
 */
#ifndef TF_OSSL_H
#define TF_OSSL_H

#include "internal.h"

/* As tf__fail, with ": <OpenSSL's reason>" appended when the queue holds
   one; the queue is emptied either way. Returns code. */
int tf__ossl_fail(tf__err *e, int code, const char *fmt, ...) TF__PRINTF(3, 4);

/* Empties the calling thread's OpenSSL error queue. */
void tf__ossl_clear(void);

#endif /* TF_OSSL_H */
