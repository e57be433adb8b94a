/*
 * server.c - tf_server_*: opens the root and the listeners, and runs worker
 * threads (worker.c), each with its own event loop, that accept
 * connections and drive their sessions (session.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "netio.h"
#include "server_internal.h"
#include "statedir.h"
#include "tls.h"

/* Disk threads by default for a store whose calls wait on the network. */
#define NETWORK_DISK_THREADS 16

uint64_t tf__server_syncs(tf_server *srv)
{
    return atomic_load(&srv->storage->syncs);
}

uint64_t tf__server_prefix_hashed(tf_server *srv)
{
    return atomic_load(&srv->prefix_hashed);
}

long tf__server_ahead_held(tf_server *srv)
{
    return atomic_load(&srv->ahead_held);
}

tf__storage *tf__server_swap_storage(tf_server *srv, tf__storage *st)
{
    tf__storage *old = srv->storage;
    srv->storage = st;
    return old;
}

/* The one connection runs in the calling thread through a worker's loop
   in its serve_one mode: done when the session is. */
int tf__server_serve_fd(tf_server *srv, int fd, const char *peer)
{
    (void)peer;
    worker w;
    tf__sigpipe_guard guard; /* as in tf_server_run */
    tf__sigpipe_block(&guard);
    int rc = tf__worker_init(&w, srv, 0);
    w.serve_one = 1;
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (rc == TF_OK)
        atomic_fetch_add(&srv->sessions, 1); /* tf__session_new's to drop */
    session *s = rc == TF_OK ? tf__session_new(&w.ctx, fd, NULL) : NULL;
    if (!s && rc != TF_OK) {
        tf__conn c;
        tf__conn_tcp(&c, fd, 1);
        tf__conn_close(&c);
    }
    if (s && tf__session_greet(s) == 0)
        tf__worker_run(&w); /* until the one session is gone (or the server stops) */
    tf__worker_destroy(&w);
    tf__sigpipe_restore(&guard);
    return rc != TF_OK ? rc : s ? TF_OK : TF_ENOMEM;
}

static void *worker_main(void *arg)
{
    tf__worker_run(arg);
    return NULL;
}

int tf_server_run(tf_server *srv)
{
    if (!srv)
        return TF_EINVAL;
    tf__err_clear(&srv->err);
    if (atomic_load(&srv->stopping) || srv->workers)
        return TF_OK;
    long n = srv->opt.value[TF_OPT_WORKERS];
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    srv->workers = calloc((size_t)n, sizeof *srv->workers);
    if (!srv->workers)
        return tf__fail(&srv->err, TF_ENOMEM, "out of memory for %ld workers", n);
    /* Workers send with sendfile, which has no MSG_NOSIGNAL: SIGPIPE stays
       blocked in this thread, and in the workers that inherit its mask, for
       as long as the server runs, instead of around every call. */
    tf__sigpipe_guard guard;
    tf__sigpipe_block(&guard);
    int rc = TF_OK;
    for (long i = 0; i < n && rc == TF_OK; i++) {
        rc = tf__worker_init(&srv->workers[i], srv, 1);
        if (rc != TF_OK)
            tf__fail_errno(&srv->err, rc, errno, "cannot set up worker %ld's event loop", i);
        int perr = rc == TF_OK && i > 0 ? pthread_create(&srv->workers[i].thread, NULL,
                                                         worker_main, &srv->workers[i])
                                        : 0;
        if (perr != 0)
            rc = tf__fail_errno(&srv->err, TF_ENOMEM, perr, "cannot start worker thread %ld", i);
        if (rc == TF_OK)
            srv->nworkers = (int)i + 1;
    }
    if (rc != TF_OK)
        tf_server_stop(srv);
    /* The calling thread is worker 0. */
    if (srv->nworkers > 0)
        tf__worker_run(&srv->workers[0]);
    for (int i = 1; i < srv->nworkers; i++)
        pthread_join(srv->workers[i].thread, NULL);
    for (int i = 0; i < (int)n; i++)
        tf__worker_destroy(&srv->workers[i]);
    tf__sigpipe_restore(&guard);
    /* No new clients from here on: close the listeners so connects are
       refused rather than left waiting. */
    for (int i = 0; i < srv->nlisten; i++)
        close(srv->listen_fds[i]);
    srv->nlisten = 0;
    return rc;
}

void tf_server_stop(tf_server *s)
{
    if (!s)
        return;
    /* Only async-signal-safe operations here: an atomic store and write(). */
    atomic_store(&s->stopping, 1);
    char x = 1;
    ssize_t n = write(s->stop_pipe[1], &x, 1);
    (void)n; /* a full pipe is already readable, which is all we need */
}

static int make_pipe(int p[2])
{
    return pipe2(p, O_CLOEXEC | O_NONBLOCK);
}

/* The server's private key, its state directory and its users file must
   not be servable: a root that holds them (serving $HOME, where the default
   state directory ~/.local/state/tcpfile lives) would hand the key to any
   client. Refused at open, with the way out. */
static int secrets_outside_root(tf_server *s, const char *root)
{
    const char *users = tf__opt_str(&s->opt, TF_SOPT_USERS_FILE);
    if (users && tf__path_is_inside(root, users))
        return tf__fail(&s->err, TF_EINVAL,
                        "the users file %s is inside the served directory %s, where clients "
                        "could read it: keep it outside (--users FILE)",
                        users, root);
    if (!s->opt.value[TF_OPT_TLS])
        return TF_OK;
    const char *key = tf__opt_str(&s->opt, TF_SOPT_TLS_KEY);
    if (key) {
        if (tf__path_is_inside(root, key))
            return tf__fail(&s->err, TF_EINVAL,
                            "the TLS key %s is inside the served directory %s, where clients "
                            "could download it: keep it outside",
                            key, root);
        return TF_OK;
    }
    char dir[4096];
    const char *state = tf__opt_str(&s->opt, TF_SOPT_STATE_DIR);
    if (!state) {
        tf__err ignored = {{0}};
        if (tf__state_dir_default(dir, sizeof dir, &ignored) != TF_OK)
            return TF_OK; /* tf__server_tls_open says why */
        state = dir;
    }
    if (tf__path_is_inside(root, state))
        return tf__fail(&s->err, TF_EINVAL,
                        "the state directory %s (the server's TLS key) is inside the served "
                        "directory %s, where clients could download the key: give another "
                        "(--state-dir DIR)",
                        state, root);
    return TF_OK;
}

int tf_server_open_ex(tf_server **out, const char *host, const char *port, const char *root,
                      const tf_options *opt, char *errbuf, size_t errlen)
{
    int rc = TF_OK;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out)
        return TF_EINVAL;
    *out = NULL;
    tf_server *s = calloc(1, sizeof *s);
    if (!s)
        return TF_ENOMEM;
    if (tf__options_copy(&s->opt, opt) != TF_OK) {
        free(s);
        return TF_ENOMEM;
    }
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    atomic_init(&s->stopping, 0);
    atomic_init(&s->sessions, 0);
    atomic_init(&s->list_bytes, 0);
    atomic_init(&s->ahead_held, 0);
    atomic_init(&s->prefix_hashed, 0);

    const char *s3_store = tf__opt_str(&s->opt, TF_SOPT_S3_STORE);
    if (s3_store) {
        /* A bucket instead of a directory (issue 15); root unused. */
        tf__storage_s3_config cfg = {
            .endpoint = tf__opt_str(&s->opt, TF_SOPT_S3_ENDPOINT),
            .region = tf__opt_str(&s->opt, TF_SOPT_S3_REGION),
            .resume_ttl_s = s->opt.value[TF_OPT_RESUME_TTL_S],
        };
        rc = tf__storage_s3_open_url(&s->storage, s3_store, &cfg, &s->err);
        root = NULL;
    } else if (!root || !*root) {
        rc = tf__fail(&s->err, TF_EINVAL, "a root directory is required");
    } else {
        /* Every file-system call of the server goes through this. */
        tf__storage_local_config cfg = {
            .read_only = s->opt.value[TF_OPT_READ_ONLY] != 0,
            .resume_ttl_s = s->opt.value[TF_OPT_RESUME_TTL_S],
            .max_partials = (size_t)s->opt.value[TF_OPT_MAX_PARTIALS],
        };
        rc = tf__storage_local_open(&s->storage, root, &cfg, &s->err);
    }
    if (rc == TF_OK) {
        /* The name limit announced in the hello is one the root's file
           system can hold, so that a longer name is refused (EINVAL) when
           it is requested, before a put's data moves. */
        size_t fs_max = s->storage->name_max;
        if (fs_max > 0 && (int64_t)fs_max < s->opt.value[TF_OPT_MAX_NAME_LEN])
            s->opt.value[TF_OPT_MAX_NAME_LEN] = (int64_t)fs_max;
    }
    if (rc == TF_OK && root)
        rc = secrets_outside_root(s, root);
    if (rc == TF_OK)
        rc = tf__server_tls_open(s);
    /* Users: a users file that does not parse fails the open, with its line. */
    const char *users = tf__opt_str(&s->opt, TF_SOPT_USERS_FILE);
    if (rc == TF_OK && users)
        rc = tf__auth_open(&s->auth, users, s->storage, s->opt.value[TF_OPT_READ_ONLY] != 0,
                           &s->err);
    /* Machines log in with client certificates mapped to users: every
       client is asked for one (a reload may add the first). */
    if (rc == TF_OK && s->auth && s->tls)
        rc = tf__tls_server_ctx_ask_client_cert(s->tls, &s->err);
    /* A network store's every call holds a thread while it waits: more of
       them, so that gets opened ahead run side by side (getahead.h). */
    int threads = (int)s->opt.value[TF_OPT_DISK_THREADS];
    if (rc == TF_OK && threads == 0 && s->storage->network)
        threads = NETWORK_DISK_THREADS;
    if (rc == TF_OK)
        rc = tf__pool_new(&s->disk_pool, threads, &s->err);
    if (rc == TF_OK)
        s->ahead_max = s->opt.value[TF_OPT_GET_AHEAD_MAX] ? (long)s->opt.value[TF_OPT_GET_AHEAD_MAX]
                                                          : tf__pool_size(s->disk_pool);
    if (rc == TF_OK && make_pipe(s->stop_pipe) != 0)
        rc = tf__fail_errno(&s->err, TF_EIO, errno, "cannot create a pipe");
    if (rc == TF_OK)
        rc = tf__listen(s->listen_fds, TF_MAX_LISTEN, &s->nlisten, host, port, &s->err);
    /* Uploads cut short by a crash are debris now: no connection owns them.
       (A read-only server writes nothing under its root, not even that.) */
    if (rc == TF_OK && !s->opt.value[TF_OPT_READ_ONLY]) {
        s->storage->ops->sweep(s->storage, 1);
        if (s->auth)
            tf__auth_sweep(s->auth); /* users' own staging, in their directories */
    }
    if (rc != TF_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", s->err.msg);
        tf_server_close(s);
        return rc;
    }
    *out = s;
    return TF_OK;
}

int tf_server_open(tf_server **out, const char *host, const char *port, const char *root,
                   const tf_options *opt)
{
    return tf_server_open_ex(out, host, port, root, opt, NULL, 0);
}

int tf_server_port(const tf_server *s)
{
    if (!s || s->nlisten == 0)
        return TF_EINVAL;
    int port = tf__socket_port(s->listen_fds[0]);
    return port > 0 ? port : TF_ENET;
}

int tf_server_address(const tf_server *s, char *buf, size_t len)
{
    return tf_server_address_at(s, 0, buf, len);
}

int tf_server_address_at(const tf_server *s, size_t i, char *buf, size_t len)
{
    if (!s || !buf || i >= (size_t)s->nlisten)
        return TF_EINVAL;
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    if (getsockname(s->listen_fds[i], (struct sockaddr *)&ss, &slen) != 0)
        return TF_ENET;
    char tmp[64];
    tf__format_addr((struct sockaddr *)&ss, 0, tmp, sizeof tmp);
    if (strlen(tmp) >= len)
        return TF_EINVAL;
    memcpy(buf, tmp, strlen(tmp) + 1);
    return TF_OK;
}

void tf_server_close(tf_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen_fds[i]);
    for (int i = 0; i < 2; i++)
        if (s->stop_pipe[i] >= 0)
            close(s->stop_pipe[i]);
    /* The workers have drained their login queues (tf_server_run): the
       pool has nothing left to post. Before the storage its views hang on. */
    tf__auth_free(s->auth);
    tf__pool_free(s->disk_pool); /* idle: every worker's queue is drained */
    if (s->storage)
        s->storage->ops->close(s->storage);
    free(s->workers);
    tf__server_tls_close(s);
    tf__options_release(&s->opt);
    free(s);
}

const char *tf_server_errmsg(const tf_server *s)
{
    return s ? s->err.msg : "";
}

int tf_serve_ex(const char *host, const char *port, const char *root, const tf_options *opt,
                char *errbuf, size_t errlen)
{
    tf_server *s;
    int rc = tf_server_open_ex(&s, host, port, root, opt, errbuf, errlen);
    if (rc != TF_OK)
        return rc;
    rc = tf_server_run(s);
    if (rc != TF_OK && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", s->err.msg);
    tf_server_close(s);
    return rc;
}

int tf_serve(const char *host, const char *port, const char *root, const tf_options *opt)
{
    return tf_serve_ex(host, port, root, opt, NULL, 0);
}
