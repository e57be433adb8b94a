/*
 * session.h - one connection of the server (session*.c): its state machine
 * and its requests, driven by an event loop (loop.h) through a transport
 * (transport.h). It knows nothing of workers or the server: what it needs
 * from them is in a tf__session_ctx, one per loop.
 *
 * A connection never moves between loops, so its state needs no lock.
 * Connections sit on one of three timer lists by what they wait for, each
 * ordered by last progress, so that timeouts are found at the list heads.
 */
#ifndef TF_SESSION_H
#define TF_SESSION_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>

#include "digest.h"
#include "storage.h"
#include "internal.h"
#include "loop.h"
#include "spares.h"
#include "transport.h"
#include "threadpool.h"
#include "wire.h"

typedef struct session session;
struct tf__auth;
struct tf__auth_job;

/* Where a pool's finished jobs come back into one loop: its completion
   queue, watched for reading (session_conn.c drains it). */
typedef struct tf__session_queue {
    tf__pool_queue q;
    tf__watcher watch;
    int on; /* initialised: to be finished */
} tf__session_queue;

/* What the sessions of one loop share: the loop, the server's settings and
   counters, their timer lists and the pools they reuse. */
typedef struct tf__session_ctx {
    tf__loop *loop;
    const tf_options *opt;
    tf__storage *storage;           /* every file-system call goes through it */
    atomic_long *sessions;          /* open connections, for the limit */
    _Atomic uint64_t *list_bytes;   /* listings held (TF_OPT_MAX_MEMORY) */
    atomic_ullong *prefix_hashed;   /* for the tests */
    int stopping;                   /* no new requests */
    tf__timer_list idle;    /* between requests: idle timeout */
    tf__timer_list active;  /* handshake or request in flight: I/O timeout */
    tf__timer_list closing; /* reply sent, draining before close: linger */
    /* Requests kept for reuse, so that a request costs no allocation (and
       keeps its checksum state). At most REQUEST_POOL_MAX. */
    struct request *spare_requests;
    int nspare;
    /* The same for input buffers (INPUT_SMALL bytes) and storage calls
       (session_disk): at most INPUT_POOL_MAX (session.c) and DISK_POOL_MAX
       (session_disk.c). Idle sessions hold neither. */
    tf__spares spare_in;
    tf__spares spare_disk;
    /* The server's TLS context (TF_OPT_TLS), shared by every loop; NULL:
       plaintext. */
    struct tf__tls_ctx *tls;
    /* Users (issue 13): NULL when the server serves everyone. Logins are
       checked on auth's pool; their completions come back through
       auth_queue. A failed login waits on auth_delay, ordered by when it
       is to be answered. */
    struct tf__auth *auth;
    tf__session_queue auth_queue;
    tf__timer_list auth_delay;
    struct tf__auth_job *auth_jobs; /* in flight, for cancelling at a stop */
    size_t auth_inflight;
    /* Storage work (S_DISK): run on the server's disk pool, completions
       through disk_queue. Sessions waiting for their job sit on disk, a
       list that never expires (so that a stop finds them). NULL pool: the
       work runs inline (a context without a server). */
    tf__pool *disk_pool;
    tf__session_queue disk_queue;
    tf__timer_list disk;
    size_t disk_inflight;
    /* Gets opened ahead (TF_OPT_GET_AHEAD), of every connection of the
       server, and at most (getahead.h); NULL: none (no server). */
    atomic_long *ahead_held;
    long ahead_max;
    /* Small files kept by this loop (smallcache.h); NULL: none. The
       worker's. */
    struct tf__small_cache *small_cache;
} tf__session_ctx;

/* Where a session is; decides which events it waits for and what a stop,
   a timeout or a peer's close does to it. */
typedef enum session_state {
    S_HELLO,        /* reading the client's hello */
    S_IDLE,         /* waiting for, or parsing, a request */
    S_SEND,         /* writing a response: head, body, trailer */
    S_RECV_BODY,    /* receiving a put's payload */
    S_RECV_TRAILER, /* receiving a put's trailer */
    S_CLOSING,      /* last reply sent: draining until the peer closes */
    S_TLS,          /* the TLS handshake, before the hello (TF_OPT_TLS) */
    S_AUTH,         /* a token is being checked on the auth pool */
    S_AUTH_DELAY,   /* a failed login waits to be answered (authlimit.h) */
    S_DISK          /* a storage call runs on the disk pool (disk_call) */
} session_state;

/* What comes after a response has been sent. */
typedef enum after_send { AFTER_IDLE, AFTER_RECV_BODY, AFTER_CLOSE } after_send;

/* Per request, only while one is in flight (then back to the loop's
   pool). */
typedef struct request {
    struct request *next_spare;
    uint8_t op;
    int has_key;
    int64_t started_ms;
    uint64_t bytes;         /* payload bytes moved, for the log */
    int result;             /* for the log */
    tf__digest digest;
    after_send after;

    /* output: head (below), then a body (file or memory), then a trailer */
    size_t head_len, head_pos;
    int body_fd;            /* file sent, -1 if none */
    const uint8_t *body_mem;
    uint64_t body_off, body_left;
    int body_rc;            /* the file failed mid-way: zero-fill, fail trailer */
    int copy_path;          /* sendfile refused this file: pread + send */
    int cached;             /* the file's digest was remembered: sendfile it */
    int gathered;           /* small: head, body, trailer in one sendmsg */
    uint64_t hashed_to;     /* the digest covers the file up to here */
    uint8_t cached_digest[TF_DIGEST_SIZE];
    uint64_t file_id[TF_STORAGE_ID_LEN]; /* the file's identity when opened */
    /* A resumed get hashes [hashed_to, prefix_to) before its head goes
       out, a slice per turn of the loop (hash_prefix_step), so that other
       connections on the worker are served in between. */
    uint64_t prefix_to;
    int has_trailer;
    uint8_t tail[TF_WIRE_TRAILER_SIZE + TF_DIGEST_SIZE];
    size_t tail_len, tail_pos; /* tail_len 0 until built */

    /* staging buffer: file data read for sending, or received for a put */
    uint8_t *buf;
    size_t buf_pos, buf_end;

    uint8_t *list;          /* an encoded listing, owned */
    size_t list_held;       /* its bytes counted in srv->list_bytes */

    /* put */
    tf__upload *up;         /* the backend's; NULL when none */
    uint64_t size, have, left;
    int store_rc;
    /* a streamed put (TF_REQ_STREAM): size is unknown until the last chunk */
    int stream, stream_end;
    uint32_t chunk_left;    /* bytes of the current chunk still to come */
    uint8_t chunk_head[TF_WIRE_CHUNK_HEAD_SIZE];
    size_t chunk_head_len;  /* bytes of the next chunk's head so far */

    /* put extensions (PUTX): the request's fields, kept here since deciding
       may wait for the current version's digest (hashed in slices). */
    uint8_t putx;           /* TF_REQ_PARENTS .. TF_REQ_NO_GOAHEAD bits */
    uint8_t if_match[TF_DIGEST_SIZE];
    uint8_t same[TF_DIGEST_SIZE];
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    int keyed;              /* an upload key came: key[] */
    uint8_t key[TF_UPLOAD_KEY_SIZE];
    int cur_exists;         /* name held a regular file: body_fd, file_id */
    int cur_hashing;        /* its digest is being computed (prefix_to) */
    uint64_t cur_size;
    uint8_t cur_digest[TF_DIGEST_SIZE];
    tf__digest cur;         /* its digest while computed; ended by request_end */
    int matched;            /* IF_MATCH held: commit only over file_id */
    int drain;              /* NO_GOAHEAD: read and drop the payload, then
                               answer drain_rc (or SAME when same_hit) */
    int drain_rc;
    int same_hit;           /* SKIP_SAME: the bytes are already there */
    int grouped;            /* answered (and logged) by the session's group
                               commit (groupcommit.h), not by this request */
    /* the tree (docs/protocol.md section 3a) */
    struct tf__walk *walk;  /* listdir: produces the chunks; NULL otherwise */
    int walk_ended;         /* no more entries: the end marker is next */
    int walk_over;          /* the end marker is queued: the trailer is next */
    int walk_rc;            /* the walk failed: the trailer's status */
    int stat_pending;       /* stat: the digest is hashed before the head */
    /* storage work on the disk pool (disk_call): its result */
    int disk_rc;
    uint64_t disk_size;     /* get: the file's size */
    enum { WANT_WALK = 1, WANT_READ } want; /* what the body waits for */
    size_t walk_len;        /* listdir: entries walk_work put in buf */
    uint8_t qflags;         /* the request's flags, for what runs after a job */
    uint8_t *wbuf;          /* the payload, handed to the pool to write */
    size_t wlen;
    int held;               /* grouped and small: the whole payload stays in
                               wbuf, staged by the group's commit job */
    /* A small file read whole (read_small, on the pool): kept with the
       request when it goes back to the loop's spares. */
    uint8_t *small;
    uint8_t stat_rec[TF_WIRE_STAT_SIZE];
    uint8_t stat_type;
    uint64_t stat_size;
    int64_t stat_mtime;
    uint32_t stat_mtime_ns;

    /* Last, and not cleared between uses (request_begin): 2 KiB of
       messages and head, then 8 KiB of names. */
    tf__err err;            /* detail of a failure */
    tf__err store_err;      /* put: the backend's failure */
    uint8_t head[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    char name[TF_WIRE_NAME_MAX + 1];
    char to[TF_WIRE_NAME_MAX + 1]; /* rename: the new path */
} request;

/* A storage call on the disk pool (disk_call in session_disk.c): the job, its
   two halves, and what the session was doing before (restored after).
   Taken from the loop's spares when the call starts and given back when it
   is over, so that an idle session holds none. */
typedef struct session_disk {
    tf__work work;                  /* data: the session. First: a
                                       spare's link (spares.h) lands here */
    void (*fn)(session *s);         /* on a pool thread */
    void (*then)(session *s);       /* back in the loop's thread */
    session_state from;
    uint32_t events;
    int64_t since;                  /* when the job was submitted */
} session_disk;

/* A refusal (server full) decided during the TLS handshake, sent once it
   is done (tf__session_refuse). */
typedef struct session_refusal {
    int code;
    char msg[]; /* NUL-terminated */
} session_refusal;

/* What a session holds while idle, kept small: 10,000 idle connections
   must cost at most half of nginx's memory (issue 14), one 256-byte malloc
   chunk each. What only a request, a storage call, a login or a TLS
   refusal needs lives in an allocation of its own, made when needed; the
   input buffer is taken from the loop's spares when bytes come and given
   back once they have all been used (tests/test_idle.c holds the line). */
#define TF__SESSION_IDLE_MAX 248

struct session {
    tf__conn conn;
    tf__watcher watch;      /* conn's fd in the loop */
    tf__timer timer;        /* on one of ctx's lists: last progress */
    tf__deferred free_later;
    tf__session_ctx *ctx;
    request *req;
    int64_t window_ms;      /* minimum-rate window start */
    uint64_t window_bytes;
    size_t skip;            /* bytes of an over-long name still to drop */
    /* Input: hellos, request heads and names, trailers. Pipelined bytes wait
       here too. NULL while nothing is buffered (in_cap 0); INPUT_SMALL
       bytes from the loop's spares, or more for a long name. */
    uint8_t *in;
    size_t in_len, in_cap;
    /* Who is logged in (servers with users): NULL until then, and on
       servers that serve everyone. */
    struct session_user *user;
    struct tf__auth_job *job; /* a login being checked */
    session_disk *disk;       /* the storage call in flight; NULL: none */
    /* Pipelined puts received and not yet committed, and answers not yet
       sent (groupcommit.h); NULL until the first. */
    struct tf__group *group;
    union {
        session_refusal *refusal; /* NULL: none */
        /* Pipelined gets opened ahead (getahead.h), when has_ahead: only
           a session that serves requests has them, and it is refused
           nothing. */
        struct tf__ahead *ahead;
    };
    session_state state;
    uint32_t features;
    uint8_t shut;           /* SHUT_WR done (closing) */
    uint8_t dead;           /* closed; freed after the loop's round */
    uint8_t has_ahead;      /* the union above holds ahead, not refusal */
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } peer;
};

/* session_conn.c (tf__session_ctx_auth: session_auth.c) */
/* Sets up ctx for loop with the server's options; the caller fills in the
   counters and the storage. Registers ctx's timer lists with loop. */
int tf__session_ctx_init(tf__session_ctx *ctx, tf__loop *loop, const tf_options *opt);
/* Frees the pooled requests and buffers (when the loop has finished and
   its deferred frees have run). */
void tf__session_ctx_release(tf__session_ctx *ctx);
/* The server is stopping: idle sessions and handshakes are closed now,
   requests in flight run on. */
void tf__session_ctx_stop(tf__session_ctx *ctx);
/* Makes ctx's sessions require a login against auth (before any session
   is created). TF_ENOMEM / TF_EIO when the completion queue cannot be
   made. */
int tf__session_ctx_auth(tf__session_ctx *ctx, struct tf__auth *auth);
/* Makes ctx's sessions do their storage work on pool (NULL: inline).
   TF_ENOMEM / TF_EIO when the completion queue cannot be made. */
int tf__session_ctx_disk(tf__session_ctx *ctx, tf__pool *pool);
/* Closes every session of ctx at once (logins being checked and storage
   calls running: once they are over, which this waits for). */
void tf__session_ctx_close_all(tf__session_ctx *ctx);
/* Finishes ctx's completion queues (waiting for their jobs in flight);
   again is a no-op. */
void tf__session_ctx_queues_fini(tf__session_ctx *ctx);
/* Whether ctx has no session left. */
int tf__session_ctx_empty(const tf__session_ctx *ctx);

/* A session for fd. The caller has already counted it in *ctx->sessions
   (so that the connection limit is checked and taken in one atomic step);
   from here on the count is the session's: dropped when it closes, or here
   when it cannot be created (NULL; fd is closed). */
session *tf__session_new(tf__session_ctx *ctx, int fd, const struct sockaddr *peer);
/* Sends the hello of a served connection; on failure s is closed. */
int tf__session_greet(session *s);
/* Sends a refusal hello (TF_EBUSY, message) on a connection that has no
   session (the server is out of descriptors), without blocking, after
   reading what the client sent so that the close is not a reset. The
   caller closes c. */
void tf__refuse_conn(const tf_options *opt, tf__conn *c, const struct sockaddr *peer,
                     const char *message);
/* Sends the refusal hello of a full server and puts s into closing. */
void tf__session_refuse(session *s, int code, const char *message);
/* Closes s at once; its memory lives until the loop's round is over, so
   callers up the stack may still look at s->dead. */
void tf__session_close(session *s);

#endif /* TF_SESSION_H */
