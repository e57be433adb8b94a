/*
 * groupcommit.h - the puts of one pipelined batch, staged to be made
 * durable together (group commit, docs/protocol.md section 4b): a
 * session's NO_GOAHEAD puts, once their trailers have come, wait here with
 * their answers instead of each paying for its own data and directory
 * syncs; the session commits the group (tf__group_commit, one
 * commit_many of the storage) when the client's pipeline pauses, before a
 * request of another kind, or at a cap, and then answers the puts in
 * order. Answers decided without a commit (a refusal, "already there")
 * wait in the group too, so that the order of the answers is the order of
 * the requests.
 *
 * No locks: a group belongs to one session, and is touched by one thread
 * at a time (the loop's, or the pool thread committing it while the
 * session waits).
 */
#ifndef TF_GROUPCOMMIT_H
#define TF_GROUPCOMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "storage.h"

/* Most puts, and most payload bytes, one group holds; a put larger than
   TF__GROUP_PUT_MAX is not grouped (its own sync costs little beside its
   bytes, and the others' answers would wait for all of them). */
#define TF__GROUP_COUNT_MAX 256
#define TF__GROUP_BYTES_MAX ((uint64_t)32 << 20)
#define TF__GROUP_PUT_MAX ((uint64_t)1 << 20)
/* A small put's payload may wait in the group's memory instead of in a
   staged file (tf__group_add_held): its staging and writing then happen in
   the group's commit job, so the put costs no disk job of its own. At most
   TF__GROUP_HOLD_PUT_MAX bytes each and TF__GROUP_HOLD_MAX in all, per
   session. */
#define TF__GROUP_HOLD_PUT_MAX ((uint64_t)64 << 10)
#define TF__GROUP_HOLD_MAX ((uint64_t)4 << 20)

/* One answer owed, in request order. */
typedef struct tf__group_entry {
    size_t item;          /* its commit item, SIZE_MAX: decided already */
    size_t name_at;       /* its name in the group's names */
    int rc;               /* decided: the answer; else set by the commit */
    uint8_t resp_flags;   /* TF_RESP_SAME */
    uint64_t size;        /* the answer's size field */
    uint64_t bytes;       /* payload bytes received, for the log */
    int64_t started_ms;   /* for the log */
    uint8_t *held;        /* a held payload (tf__group_add_held), to stage at the
                             commit; NULL: staged already, or decided */
    size_t held_len;
    int parents;          /* held: make the missing parents first (PARENTS) */
} tf__group_entry;

typedef struct tf__group {
    tf__group_entry *v;
    size_t n, cap;
    tf__commit_item *items; /* the uploads to commit, in order */
    uint64_t (*ids)[TF_STORAGE_ID_LEN]; /* per item: the version IF_MATCH checked */
    size_t nitems, items_cap;
    tf__err *decided_err;   /* per entry: the message of a decided failure */
    char *names;
    size_t names_len, names_cap;
    uint64_t bytes;         /* payload bytes of the uploads */
    uint64_t held;          /* of which held in memory */
    int committed;          /* tf__group_commit ran on these entries */
    /* Answers encoded after the commit, not yet sent (out_pos of out_len). */
    uint8_t *out;
    size_t out_len, out_pos, out_cap;
} tf__group;

/* Whether a put may join a group: no more than TF__GROUP_PUT_MAX bytes,
   and g (NULL: none yet) has room for it. */
int tf__group_fits(const tf__group *g, uint64_t size);
/* Adds an upload to commit as name with cond (*cond's expect_id copied);
   takes *up (set to NULL) on success. TF_ENOMEM (nothing taken). *g is
   made on first use. */
int tf__group_add(tf__group **g, tf__upload **up, const char *name, const tf__commit_cond *cond,
                  uint64_t size, uint64_t bytes, int64_t started_ms);
/* Whether a put of size bytes may be held in memory (tf__group_add_held):
   small enough, and g (NULL: none yet) has memory left for it. */
int tf__group_can_hold(const tf__group *g, uint64_t size);
/* As tf__group_add, for an upload not staged yet: its len payload bytes
   at *data (malloc'd; taken, *data set to NULL, on success), staged and
   written by tf__group_commit, after making name's missing parents when
   parents is set. */
int tf__group_add_held(tf__group **g, uint8_t **data, size_t len, int parents, const char *name,
                       const tf__commit_cond *cond, uint64_t size, uint64_t bytes,
                       int64_t started_ms);
/* Adds an answer decided already: rc with message e (may be NULL), or
   TF_OK with resp_flags. TF_ENOMEM. */
int tf__group_add_decided(tf__group **g, const char *name, int rc, const tf__err *e,
                          uint8_t resp_flags, uint64_t size, uint64_t bytes, int64_t started_ms);
/* Answers owed (0 for NULL). */
size_t tf__group_pending(const tf__group *g);
/* Commits the group's uploads (tf__storage_commit_many), staging the held
   ones first: may block on the disk, touches nothing but g and st (a pool
   thread may run it). Each entry's rc is then its answer. */
void tf__group_commit(tf__group *g, tf__storage *st);
/* Entry i's name and message (after the commit; "" for none). */
const char *tf__group_name(const tf__group *g, size_t i);
const char *tf__group_message(const tf__group *g, size_t i);
/* Appends n bytes to the answers to send. TF_ENOMEM. */
int tf__group_out_append(tf__group *g, const void *p, size_t n);
/* Empties the group's entries (after they were answered), keeping its
   memory and any answers still to send. */
void tf__group_clear(tf__group *g);
/* Frees g, aborting uploads not committed. NULL is fine. */
void tf__group_free(tf__group *g, tf__storage *st);

#endif /* TF_GROUPCOMMIT_H */
