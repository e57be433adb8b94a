/*
 * server_internal.h - the server's structures, shared by server.c (tf_server_*) and
 * worker.c (one thread's loop: listeners, accepting, stopping). A worker
 * drives its sessions (session.h) through its own event loop (loop.h).
 */
#ifndef TF_SERVER_INTERNAL_H
#define TF_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"
#include "loop.h"
#include "session.h"
#include "storage.h"

#define TF_MAX_LISTEN 8

typedef struct worker worker;

/* A listening socket in one worker's loop. */
typedef struct tf__listener {
    tf__watcher watch;
    worker *w;
} tf__listener;

struct worker {
    tf_server *srv;
    tf__loop loop;
    tf__session_ctx ctx;
    tf__watcher stop_watch; /* the server's stop pipe */
    tf__listener listeners[TF_MAX_LISTEN];
    int listening;        /* the listeners are in this worker's loop */
    int serve_one;        /* tf__server_serve_fd: done when no session is left */
    int spare_fd;         /* /dev/null, given up to refuse a client when out
                             of descriptors (worker.c); -1 if none */
    int64_t accept_resume_ms; /* not 0: listeners unwatched until then */
    int64_t grace_end_ms; /* when stopping: requests in flight end here */
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
       bounded by TF_OPT_MAX_MEMORY (session_get.c, list_reserve). */
    _Atomic uint64_t list_bytes;
    /* Gets opened ahead by all connections, and at most
       (TF_OPT_GET_AHEAD_MAX; getahead.h). */
    atomic_long ahead_held;
    long ahead_max;
    int nworkers;
    worker *workers;
    /* Users (issue 13): NULL when the server serves everyone. */
    struct tf__auth *auth;
    /* The sessions' blocking storage work (TF_OPT_DISK_THREADS), shared by
       every worker: each worker's loop takes its completions through its
       own queue (session.h, tf__session_ctx_disk). */
    tf__pool *disk_pool;
    /* Bytes hashed ahead of a resumed get's offset: for the tests. */
    atomic_ullong prefix_hashed;
    /* Why tf_server_open or tf_server_run failed (tf_server_errmsg). Written
       only by the thread in those calls; a request's failure goes to the
       log callback instead. */
    tf__err err;
    /* TF_OPT_TLS: the server's identity and the one context every worker
       shares (server_tls.c); NULL when plaintext. */
    struct tf__tls_identity *tls_id;
    struct tf__tls_ctx *tls;
};

/* server_tls.c */
/* With TF_OPT_TLS: loads the identity (TF_SOPT_TLS_CERT / KEY, or the one
   kept in the state directory) and builds srv->tls. TF_OK when TLS is off.
   Codes of tf__tls_identity_load / ensure, with the words in srv->err. */
int tf__server_tls_open(tf_server *srv);
void tf__server_tls_close(tf_server *srv);

/* worker.c */
/* Sets w up for srv: its loop, the stop pipe and (listen) the listeners.
   On failure what was set up is left for tf__worker_destroy. */
int tf__worker_init(worker *w, tf_server *srv, int listen);
/* Runs w's loop until it is done: stopped and without sessions (or, with
   w->serve_one, without sessions). */
void tf__worker_run(worker *w);
/* Frees what tf__worker_init set up (w zeroed by calloc is fine). */
void tf__worker_destroy(worker *w);

/* Bytes srv has hashed ahead of resumed gets' offsets (a whole file for a
   get at its end), so tests can tell a remembered digest from a new one. */
uint64_t tf__server_prefix_hashed(tf_server *srv);

/* Gets opened ahead and not yet answered nor freed, all connections
   together (getahead.h): for the tests. */
long tf__server_ahead_held(tf_server *srv);

/* Durability calls (fsync, syncfs) srv's storage has made: for the tests
   of the group commit. */
uint64_t tf__server_syncs(tf_server *srv);

/* For the tests: makes srv serve from st (before tf_server_run) and
   returns the storage it had, which the caller now owns. */
tf__storage *tf__server_swap_storage(tf_server *srv, tf__storage *st);

#endif /* TF_SERVER_INTERNAL_H */
