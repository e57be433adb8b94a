/*
 * session_internal.h - what the files of a session (session.h) share, and
 * nothing else includes: the server's state machine is cut into files of
 * one job each, and their functions called across files are declared
 * here (tf__sess_*, hidden like every internal symbol).
 *
 *   session.c          the core: requests' lifetime, states, input, events
 *   session_request.c  a request's head: checks, rights, dispatch
 *   session_send.c     output: heads, bodies, trailers
 *   session_disk.c     storage work on the disk pool (S_DISK)
 *   session_get.c      get and list
 *   session_ahead.c    pipelined gets opened ahead (getahead.h)
 *   session_put.c      put: decide, stage, receive, commit
 *   session_group.c    group commit of pipelined puts
 *   session_auth.c     users: rights and logins
 *   session_tree.c     the tree's operations (stat, listdir, mkdir, ...)
 *   session_conn.c     hellos, TLS, new and closed sessions, the loop's ctx
 */
#ifndef TF_SESSION_INTERNAL_H
#define TF_SESSION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "session.h"
#include "users.h"

/* A request's transfer buffer (request.buf). */
#define XFER_BUF ((size_t)256 << 10)
/* Most bytes one session moves per event, so that one fast peer cannot
   starve the others on its worker. */
#define EVENT_BUDGET ((size_t)8 << 20)
/* Files up to this size are read with one pread and go out with their
   head and trailer in one sendmsg, hashed on the spot: three system calls
   fewer than head, sendfile and trailer, and no remembered checksum to
   look up. (Measured with bench/: 4 KiB gets are CPU-bound on calls.) */
#define SMALL_BODY_MAX ((size_t)64 << 10)

#define SESSION_OF(p, field) ((session *)((char *)(p) - offsetof(session, field)))

static inline const tf_options *opts(const session *s)
{
    return s->ctx->opt;
}

/* A logged-in user's own view of the storage (users confined to a
   sub-directory, issue 13). */
struct session_user {
    tf__user_info info;
    tf__storage *storage; /* NULL: the whole root */
};

static inline tf__storage *storage(const session *s)
{
    return s->user && s->user->storage ? s->user->storage : s->ctx->storage;
}

static inline uint32_t offered_features(const tf_options *opt)
{
    return TF_FEATURE_RESUME | TF_FEATURE_STREAM | TF_FEATURE_TREE | TF_FEATURE_PUTX |
           (opt->value[TF_OPT_CHECKSUM] ? TF_FEATURE_CHECKSUM : 0);
}

/* The tree's operations (section 3a), one line each: what the log calls
   it, whether it changes the tree (refused on a read-only server), the
   request flags it takes, and its handler. Rights per op go here. */
typedef struct tree_op {
    uint8_t op;
    const char *label;
    int writes;
    uint8_t flags;
    void (*handle)(session *s, const tf_wire_request *q);
} tree_op;

/* session.c */
const char *tf__sess_op_label(int op);
void tf__sess_log_entry(session *s, const char *op, const char *name, const char *to,
                        uint64_t bytes, int result, const char *message,
                        int64_t started_ms);
request *tf__sess_request_begin(session *s, uint8_t op);
void tf__sess_request_end(session *s, int keep_partial);
int tf__sess_ensure_buf(request *r);
int tf__sess_watch(session *s, uint32_t events);
void tf__sess_list_move(session *s, tf__timer_list *list, int64_t now_ms);
void tf__sess_enter_closing(session *s);
void tf__sess_enter_idle(session *s);
void tf__sess_fail_session(session *s, int code, const char *why);
void tf__sess_consume_input(session *s, size_t n);
void tf__sess_drop_skipped(session *s);
int tf__sess_progressed(session *s, size_t bytes);
int tf__sess_grow_input(session *s, size_t need);
void tf__sess_parse_input(session *s);
void tf__sess_on_events_once(session *s, uint32_t events);
void tf__sess_read_pending(session *s);
void tf__sess_on_events(tf__watcher *watch, uint32_t events);

/* session_request.c */
size_t tf__sess_request_max_name(const session *s);
tf__path_limits tf__sess_path_limits(const session *s);
int tf__sess_check_path(session *s, const char *p, size_t len, const char *what);
int tf__sess_check_name(session *s, const tf_wire_request *q);
/* check_name's rules, with the reason in e (a get looked at ahead of its
   turn has no request of its own yet). */
int tf__sess_name_check(session *s, const tf_wire_request *q, tf__err *e);
void tf__sess_on_request(session *s);

/* session_send.c */
int tf__sess_code_for_peer(const session *s, int code);
void tf__sess_queue_head(session *s, int code, uint64_t size, uint8_t flags,
                         const char *msg);
void tf__sess_reply_failure(session *s, int code, after_send after);
void tf__sess_build_trailer(session *s);
void tf__sess_sent(session *s);
void tf__sess_continue_send(session *s);
void tf__sess_start_send(session *s, after_send after);

/* session_disk.c */
void tf__sess_disk_call(session *s, void (*work)(session *s), void (*then)(session *s));
/* Puts s in S_DISK until its disk_done (d is s->disk): NULL when out of
   memory. A d without work is a wait for a get opened ahead
   (session_ahead.c), ended by tf__sess_disk_wait_over. */
session_disk *tf__sess_disk_enter(session *s, void (*work)(session *s),
                                  void (*then)(session *s));
void tf__sess_disk_wait_over(session *s);

/* session_get.c */
void tf__sess_handle_get(session *s, const tf_wire_request *q);
/* What a get does once its file is opened (r->disk_rc, body_fd...). */
void tf__sess_get_opened(session *s);

/* session_ahead.c: pipelined gets opened ahead (getahead.h) */
/* Opens ahead the plain gets that follow in s's input buffer. */
void tf__sess_ahead_fill(session *s);
/* The get in flight, if it was opened ahead: answered from there, now or
   once its job is over (1); else 0. */
int tf__sess_ahead_use(session *s);
/* Closing: 1 while gets ahead still run (the last one's end closes s). */
int tf__sess_ahead_close(session *s);
void tf__sess_handle_list(session *s, const tf_wire_request *q);

/* session_put.c */
void tf__sess_put_refuse(session *s, int rc);
void tf__sess_put_decide(session *s);
void tf__sess_handle_put(session *s, const tf_wire_request *q);
void tf__sess_receive_trailer(session *s);
void tf__sess_receive_body(session *s);

/* session_group.c */
int tf__sess_group_takes(const session *s, const tf_wire_request *q);
void tf__sess_group_send(session *s);
void tf__sess_group_put(session *s, int rc, uint8_t resp_flags);
void tf__sess_group_close_work(session *s);
void tf__sess_group_close(session *s);

/* session_auth.c */
int tf__sess_check_rights(session *s, uint8_t op);
void tf__sess_auth_delay_over(session *s);
int tf__sess_cert_login(session *s);
void tf__sess_on_auth(session *s);
void tf__sess_cancel_auth_jobs(tf__session_ctx *ctx);

/* session_tree.c */
void tf__sess_stat_finish(session *s);
const tree_op *tf__sess_find_tree_op(int op);
void tf__sess_handle_tree(session *s, const tree_op *t, const tf_wire_request *q);

/* session_conn.c */
int tf__sess_queue_start(tf__session_ctx *ctx, tf__session_queue *sq);
int tf__sess_send_hello(session *s, int code, const char *message);
void tf__sess_tls_step(session *s);
int tf__sess_greet_tls(session *s);
void tf__sess_close_now(session *s);

#endif /* TF_SESSION_INTERNAL_H */
