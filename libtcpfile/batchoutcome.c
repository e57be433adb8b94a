/*
 * batchoutcome.c - the items' messages of a batch call. They are copied
 * one after the other into the client's item_msgs buffer, which items
 * point into only when the call is over, since growing it moves it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batchoutcome.h"

static const char no_room[] = "(no memory to keep this item's message)";

void tf__outcomes_init(tf__outcomes *o, tf_client *c, size_t n)
{
    *o = (tf__outcomes){.c = c, .first = n, .first_rc = TF_OK};
    o->msg_at = n ? malloc(n * sizeof *o->msg_at) : NULL;
}

static void keep_message(tf__outcomes *o, size_t index, int rc)
{
    tf_client *c = o->c;
    if (!o->msg_at)
        return;
    if (!c->err.msg[0]) /* a failure without its own words */
        tf__fail(&c->err, rc, "%s", tf_strerror(rc));
    size_t len = strlen(c->err.msg) + 1;
    if (o->msgs_len + len > c->item_msgs_cap) {
        size_t cap = c->item_msgs_cap ? c->item_msgs_cap : 4096;
        while (cap < o->msgs_len + len)
            cap *= 2;
        char *m = realloc(c->item_msgs, cap);
        if (!m) {
            o->msg_at[index] = SIZE_MAX;
            return;
        }
        c->item_msgs = m;
        c->item_msgs_cap = cap;
    }
    memcpy(c->item_msgs + o->msgs_len, c->err.msg, len);
    o->msg_at[index] = o->msgs_len;
    o->msgs_len += len;
}

void tf__outcomes_record(tf__outcomes *o, size_t index, int rc)
{
    if (rc == TF_OK)
        return;
    keep_message(o, index, rc);
    if (index < o->first) {
        o->first = index;
        o->first_rc = rc;
        o->first_err = o->c->err;
    }
    tf__err_clear(&o->c->err);
}

const char *tf__outcomes_message(const tf__outcomes *o, size_t index, int result)
{
    if (result >= TF_OK) /* TF_OK, or never finished */
        return "";
    if (!o->msg_at || o->msg_at[index] == SIZE_MAX)
        return no_room;
    return o->c->item_msgs + o->msg_at[index];
}

int tf__outcomes_finish(tf__outcomes *o)
{
    free(o->msg_at);
    o->msg_at = NULL;
    if (o->first_rc != TF_OK)
        tf__err_take(&o->c->err, &o->first_err);
    return o->first_rc;
}
