/*
 * auth.h - what a server with a users file needs to let users in
 * (issue 13): the users (users.h), the threads that check tokens, the
 * table that slows guessing down (authlimit.h), and the job one login is.
 * The sessions' side (the auth request, the rights, the delays) is in
 * session_auth.c; this file keeps what is shared by all of a server's workers.
 *
 * Why one table of failures per server, under a lock, rather than one per
 * worker: connections are spread over the workers (EPOLLEXCLUSIVE), so an
 * attacker opening many connections would get one allowance per worker,
 * and a per-worker table would slow the attacker less the more workers the
 * server has. The lock is held for a table lookup per attempt, next to the
 * ~25 ms of scrypt each attempt costs: never contended in practice.
 *
 * Why a pool of its own rather than the disk pool: a scrypt takes a
 * thread for ~25 ms and 8 MiB; a flood of logins must not queue the
 * server's disk work behind it, nor the other way round.
 */
#ifndef TF_AUTH_H
#define TF_AUTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "authlimit.h"
#include "internal.h"
#include "storage.h"
#include "threadpool.h"
#include "users.h"
#include "wire.h"

/* Threads that check tokens: each scrypt takes 8 MiB while it runs. */
#define TF__AUTH_THREADS 2

typedef struct tf__users_ref tf__users_ref;

typedef struct tf__auth {
    tf__pool *pool;
    pthread_mutex_t mu;     /* guards limit and users */
    tf__authlimit *limit;
    tf__users_ref *users;   /* the current users; replaced by a reload */
    char *path;             /* the users file */
    tf__storage *root;      /* the served root, for the users' views */
    int read_only;          /* no directory is created for a user */
} tf__auth;

/* Loads the users file at path (a file that does not parse fails with its
   line: "PATH:LINE: ..."), and starts the pool and the table. TF_ENOENT,
   TF_EINVAL, TF_EACCES, TF_EIO, TF_ENOMEM. *out is the caller's, freed
   with tf__auth_free after every worker has finished (their queues drained). */
int tf__auth_open(tf__auth **out, const char *path, tf__storage *root, int read_only,
                  tf__err *e);
void tf__auth_free(tf__auth *a);
/* Reads the users file again; on success, logins from now on use it (a
   login being checked finishes with the users it started with). On
   failure the users in use are kept. */
int tf__auth_reload(tf__auth *a, tf__err *e);
/* Users in the file in use. */
size_t tf__auth_count(tf__auth *a);

/* A failed login from sa: the milliseconds to wait before answering it. */
int64_t tf__auth_failed(tf__auth *a, const struct sockaddr *sa);
/* A login from sa succeeded: its failures are forgotten. */
void tf__auth_succeeded(tf__auth *a, const struct sockaddr *sa);

/* One login, checked on a pool thread: the session fills user and token,
   submits work; the pool runs tf__auth_job_run (the scrypt, then the
   user's view of the storage), and the session's done callback reads rc,
   err, info and storage. */
typedef struct tf__auth_job {
    tf__work work;
    tf__auth *auth;
    struct tf__auth_job *prev, *next; /* the loop's jobs in flight */
    char user[TF_WIRE_USER_MAX + 1];  /* NUL-terminated; "" if it held a NUL */
    char token[TF_WIRE_TOKEN_MAX];
    size_t token_len;
    int by_cert;                      /* a client certificate, not a token: */
    unsigned char spki[TF__CERT_LEN]; /* its fingerprint (rc TF_ENOENT: nobody's) */
    /* results */
    int rc;
    tf__err err;
    tf__user_info info;
    tf__storage *storage; /* the user's view; NULL: the whole root, shared */
} tf__auth_job;

/* At start, before any connection: sweeps each user's sub-directory of
   the uploads a crash left there (as the root's own sweep does). */
void tf__auth_sweep(tf__auth *a);

/* The pool's side of a job (tf__work.work). */
void tf__auth_job_run(tf__work *w);
/* Wipes the token and frees the job and any view it holds. */
void tf__auth_job_free(tf__auth_job *j);

#endif /* TF_AUTH_H */
