/*
 * batchoutcome.h - what a batch call (tf_get_many, tf_put_many) keeps of
 * its items' failures: each item's own message, and the first failure in
 * item order, which becomes the call's result and tf_errmsg.
 */
#ifndef TF_BATCHOUTCOME_H
#define TF_BATCHOUTCOME_H

#include <stddef.h>

#include "client_internal.h"

typedef struct tf__outcomes {
    tf_client *c;
    size_t first;      /* the first item (in order) that failed, n if none: */
    int first_rc;      /* its result, the call's return value, ... */
    tf__err first_err; /* ... and its message for tf_errmsg */
    size_t *msg_at;    /* per item: where its message starts in
                          c->item_msgs (NULL: no memory for them) */
    size_t msgs_len;
} tf__outcomes;

/* Ready for n items; without memory for the messages the items say so. */
void tf__outcomes_init(tf__outcomes *o, tf_client *c, size_t n);

/* Item index ended with rc: a failure keeps c->err as its message (then
   clears it, so the next item's first message is its own). Items can
   fail out of order, so the first failure is the lowest index. */
void tf__outcomes_record(tf__outcomes *o, size_t index, int rc);

/* Item index's message once the call is over ("" when it did not fail). */
const char *tf__outcomes_message(const tf__outcomes *o, size_t index, int result);

/* Frees what init took; returns the call's result, its message in c->err. */
int tf__outcomes_finish(tf__outcomes *o);

#endif
