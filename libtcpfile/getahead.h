/*
 * getahead.h - a connection's pipelined gets opened ahead (issue 15).
 *
 * On a store whose every call waits on the network (S3: about 5 ms a
 * GET), a connection that pipelines small gets would wait for one store
 * call after the other. The session (session.c) hands the gets that
 * already sit in its input buffer, behind the one it is serving, to a
 * tf__ahead: each becomes a job of the disk pool that opens the file (and
 * reads a small one whole) at once, and the session takes the results
 * back in request order, waiting only for the one it answers next.
 *
 * Bounds: a connection has at most per_conn gets ahead (only those it has
 * sent), and all connections together at most the shared *held counter's
 * limit, so that the disk pool is never filled with one client's work
 * and the memory held is at most limit * (small_max + the backend's open
 * handle). A get that finds no room is simply served in its turn.
 *
 * Everything here runs in the session's loop thread, but each job's work
 * (on a pool thread), which touches only its own item.
 */
#ifndef TF_GETAHEAD_H
#define TF_GETAHEAD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "internal.h"
#include "storage.h"
#include "threadpool.h"

typedef struct tf__ahead tf__ahead;

/* What a get opened ahead found: open_read's results, the whole file when
   it was small (data, size bytes, the caller's to free; the file is then
   closed already and fd is -1), or its remembered digest (cached). */
typedef struct tf__ahead_got {
    int rc;
    tf__err err;
    int fd;
    uint64_t size;
    uint64_t id[TF_STORAGE_ID_LEN];
    uint8_t *data;
    int cached;
    uint8_t digest[TF_DIGEST_SIZE];
} tf__ahead_got;

typedef struct tf__ahead_config {
    tf__pool *pool;
    tf__pool_queue *queue;  /* the loop's, where the jobs come back */
    size_t per_conn;        /* gets ahead of one connection at most */
    atomic_long *held;      /* gets ahead of every connection, now... */
    long held_max;          /* ...and at most */
    size_t small_max;       /* files up to this are read whole */
    /* A job is over (in the loop's thread): head_ready when the first get
       in order is the one that finished. */
    void (*on_done)(void *user, int head_ready);
    void *user;
} tf__ahead_config;

/* TF_ENOMEM. Freed with tf__ahead_free once tf__ahead_busy is 0. */
int tf__ahead_new(tf__ahead **out, const tf__ahead_config *cfg);
void tf__ahead_free(tf__ahead *a);

/* Gets ahead, in order (done or not). */
size_t tf__ahead_count(const tf__ahead *a);
/* Jobs submitted whose done has not run yet: the owner lives until 0. */
size_t tf__ahead_busy(const tf__ahead *a);

/* Opens name[0..len) of st ahead (offset 0 only); with_digest: look up
   its remembered digest too. 1 when submitted, 0 when there is no room
   (either bound) or no memory. */
int tf__ahead_submit(tf__ahead *a, tf__storage *st, const char *name, size_t len,
                     int with_digest);

/* Whether the first get ahead is for name: 1 when done (take it), 2 when
   its job still runs (on_done says when), 0 when it is not for name or
   there is none. */
int tf__ahead_head(const tf__ahead *a, const char *name);
/* Moves the first get's results (done) to out and forgets it. */
void tf__ahead_take(tf__ahead *a, tf__ahead_got *out);
/* Forgets every get ahead: done ones are closed and freed now, queued ones
   cancelled, running ones freed when their job is over. */
void tf__ahead_drop(tf__ahead *a);

#endif /* TF_GETAHEAD_H */
