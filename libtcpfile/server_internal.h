/*
 * server_internal.h - the event-driven server's structures, shared by
 * server.c (workers, accepting, timers, stopping) and session.c (one
 * connection's state machine and its requests).
 *
 * Each worker thread owns an epoll instance and the connections it
 * accepted; a connection never moves between workers, so its state needs no
 * lock. Connections sit on one of three lists by what they wait for, each
 * ordered by last progress, so that timeouts are found at the list heads.
 */
#ifndef TF_SERVER_INTERNAL_H
#define TF_SERVER_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "digest.h"
#include "internal.h"
#include "storage.h"
#include "wire.h"

#define TF_MAX_LISTEN 8

typedef struct worker worker;
typedef struct session session;

/* A list of sessions ordered by last progress (oldest first). */
typedef struct session_list {
    session *head, *tail;
    size_t count;
} session_list;

struct worker {
    tf_server *srv;
    int epfd;
    int listening;        /* the listeners are in this worker's epoll */
    int spare_fd;         /* /dev/null, given up to refuse a client when out
                             of descriptors (server.c); -1 if none */
    int64_t accept_resume_ms; /* not 0: listeners unwatched until then */
    int stopping;         /* the stop has been seen */
    int64_t grace_end_ms; /* when stopping: requests in flight end here */
    session_list idle;    /* between requests: idle timeout */
    session_list active;  /* handshake or request in flight: I/O timeout */
    session_list closing; /* reply sent, draining before close: linger */
    session *graveyard;   /* closed this round; freed when no event can
                             still point at them */
    /* Requests kept for reuse, so that a request costs no allocation (and
       keeps its checksum state). At most REQUEST_POOL_MAX. */
    struct request *spare_requests;
    int nspare;
    /* Where a small file is read before it goes out in one sendmsg with
       its head and trailer; allocated on first use. Shared by the worker's
       sessions: it is only used within one call. */
    uint8_t *small_body;
    pthread_t thread;
};

struct tf_server {
    int listen_fds[TF_MAX_LISTEN];
    int nlisten;
    tf__storage *storage; /* every file-system call goes through it */
    tf_options opt;
    /* Written once by tf_server_stop: readable for ever after, and in every
       worker's epoll. A pipe, because write() is async-signal-safe. */
    int stop_pipe[2];
    atomic_int stopping;
    atomic_long sessions; /* open connections, for the connection limit */
    /* Bytes of encoded listings held by connections still sending them,
       bounded by TF_OPT_MAX_MEMORY (session.c, list_reserve). */
    _Atomic uint64_t list_bytes;
    int nworkers;
    worker *workers;
    /* Bytes hashed ahead of a resumed get's offset: for the tests. */
    atomic_ullong prefix_hashed;
    /* Why tf_server_open or tf_server_run failed (tf_server_errmsg). Written
       only by the thread in those calls; a request's failure goes to the
       log callback instead. */
    tf__err err;
};

/* Where a session is; decides which events it waits for and what a stop,
   a timeout or a peer's close does to it. */
typedef enum session_state {
    S_HELLO,        /* reading the client's hello */
    S_IDLE,         /* waiting for, or parsing, a request */
    S_SEND,         /* writing a response: head, body, trailer */
    S_RECV_BODY,    /* receiving a put's payload */
    S_RECV_TRAILER, /* receiving a put's trailer */
    S_CLOSING       /* last reply sent: draining until the peer closes */
} session_state;

/* What comes after a response has been sent. */
typedef enum after_send { AFTER_IDLE, AFTER_RECV_BODY, AFTER_CLOSE } after_send;

/* Per request, only while one is in flight (then back to the worker's
   pool). */
typedef struct request {
    struct request *next_spare;
    uint8_t op;
    int has_key;
    int64_t started_ms;
    uint64_t bytes;         /* payload bytes moved, for the log */
    int result;             /* for the log */
    tf__err err;            /* detail of a failure */
    tf__digest digest;
    after_send after;

    /* output: head, then a body (file or memory), then a trailer */
    uint8_t head[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
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
    tf__err store_err;
    /* a streamed put (TF_REQ_STREAM): size is unknown until the last chunk */
    int stream, stream_end;
    uint32_t chunk_left;    /* bytes of the current chunk still to come */
    uint8_t chunk_head[TF_WIRE_CHUNK_HEAD_SIZE];
    size_t chunk_head_len;  /* bytes of the next chunk's head so far */

    /* Last, and not cleared between uses (request_begin): 4 KiB. */
    char name[TF_WIRE_NAME_MAX + 1];
} request;

struct session {
    int fd;
    session_state state;
    uint32_t features;
    worker *w;
    session_list *list;
    session *prev, *next;
    int64_t last_ms;        /* last progress, for the timeouts */
    int64_t window_ms;      /* minimum-rate window start */
    uint64_t window_bytes;
    uint32_t events;        /* what epoll watches for now */
    int shut;               /* SHUT_WR done (closing) */
    int dead;               /* closed; waits in the graveyard to be freed */
    size_t skip;            /* bytes of an over-long name still to drop */
    request *req;
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } peer;
    /* Input: hellos, request heads and names, trailers. Pipelined bytes wait
       here too. Points at small[] unless a long name needed more. */
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t small[96];
};

/* session.c */
/* A session for fd. The caller has already counted it in srv->sessions
   (so that the connection limit is checked and taken in one atomic step);
   from here on the count is the session's: dropped when it closes, or here
   when it cannot be created (NULL; fd is closed). */
session *tf__session_new(worker *w, int fd, const struct sockaddr *peer);
/* Sends the hello of a served connection; on failure s is closed. */
int tf__session_greet(session *s);
/* Sends a refusal hello (TF_EBUSY, message) on a connection that has no
   session (the server is out of descriptors), without blocking, after
   reading what the client sent so that the close is not a reset. The
   caller closes fd. */
void tf__refuse_fd(tf_server *srv, int fd, const struct sockaddr *peer, const char *message);
/* Sends the refusal hello of a full server and puts s into closing. */
void tf__session_refuse(session *s, int code, const char *message);
/* Handles epoll events for s. May free s. */
void tf__session_on_events(session *s, uint32_t events);
/* The server is stopping: an idle session is closed now. */
void tf__session_on_stop(session *s);
/* A timeout expired: log it (if a request was in flight) and close. */
void tf__session_timeout(session *s, int code, const char *why);
/* Closes s at once; its memory lives until tf__worker_bury, so callers
   up the stack may still look at s->dead. */
void tf__session_close(session *s);
/* Frees the sessions closed since the last call. */
void tf__worker_bury(worker *w);
/* Frees the worker's pooled requests and buffers (when it has finished). */
void tf__worker_release(worker *w);

/* Bytes srv has hashed ahead of resumed gets' offsets (a whole file for a
   get at its end), so tests can tell a remembered digest from a new one. */
uint64_t tf__server_prefix_hashed(tf_server *srv);

/* server.c: list and epoll bookkeeping for sessions */
void tf__session_list_move(session *s, session_list *to, int64_t now_ms);
int tf__session_watch(session *s, uint32_t events);

#endif /* TF_SERVER_INTERNAL_H */
