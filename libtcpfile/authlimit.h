/*
 * authlimit.h - slowing down token guessing. Failed authentications are
 * counted per client address (an IPv4 address, or an IPv6 /64: one
 * customer's network, which an attacker holds whole), and each failure is
 * answered later than the one before: the first TF__AUTHLIMIT_FREE at
 * once, then after 100 ms, 200 ms, ... doubling up to 10 s. Failures
 * arriving together (many connections) queue up behind each other, so
 * parallel guessing from one address gets no further than serial guessing.
 * A success from the address clears its record; a record quiet for
 * TF__AUTHLIMIT_FORGET_MS is forgotten.
 *
 * The table has a fixed size chosen at creation: a flood of addresses
 * evicts the records with the fewest failures first, so it can neither
 * grow memory nor wash out a busy attacker's record. A pure module: time
 * is passed in (milliseconds, any monotonic origin), nothing sleeps. Not
 * locked: one table per event loop, or a lock around it.
 *
 * How the server uses it: verify every attempt; answer a success at once
 * (tf__authlimit_success); answer a failure after the delay that
 * tf__authlimit_fail returns, holding the connection meanwhile (a timer
 * in the event loop); it may refuse outright (TF_EBUSY) while
 * tf__authlimit_wait says the address is still being made to wait.
 */
#ifndef TF_AUTHLIMIT_H
#define TF_AUTHLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "internal.h"

#define TF__AUTHLIMIT_FREE 5                   /* failures answered at once */
#define TF__AUTHLIMIT_BASE_MS 100              /* the first delay           */
#define TF__AUTHLIMIT_MAX_MS 10000             /* the longest single delay  */
#define TF__AUTHLIMIT_QUEUE_MS 60000           /* most time queued ahead    */
#define TF__AUTHLIMIT_FORGET_MS (15 * 60000)   /* a quiet record's lifetime */
#define TF__AUTHLIMIT_DEFAULT_CAPACITY 4096

typedef struct tf__authlimit tf__authlimit;

/* A table of about capacity records (rounded up to a multiple of 8; 0:
   the default), allocated once. TF_EINVAL (over 2^24), TF_ENOMEM. */
int tf__authlimit_new(tf__authlimit **out, size_t capacity, tf__err *e);
void tf__authlimit_free(tf__authlimit *a);

/* Records a failed authentication from sa at now_ms; returns how many
   milliseconds to wait before answering it (0 for the first few). */
int64_t tf__authlimit_fail(tf__authlimit *a, const struct sockaddr *sa, int64_t now_ms);
/* Milliseconds until the address's last failure is answered; 0 when it is
   not being slowed. */
int64_t tf__authlimit_wait(const tf__authlimit *a, const struct sockaddr *sa, int64_t now_ms);
/* A success from sa: its record is cleared. */
void tf__authlimit_success(tf__authlimit *a, const struct sockaddr *sa);
/* Records in use, and the most there can be. */
size_t tf__authlimit_size(const tf__authlimit *a);
size_t tf__authlimit_capacity(const tf__authlimit *a);

#endif /* TF_AUTHLIMIT_H */
