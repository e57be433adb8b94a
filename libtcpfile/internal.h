/*
 * internal.h - private structures and helpers shared by the library's
 * modules. Nothing here is exported: internal functions are tf__name and the
 * build hides every symbol without TF_API.
 */
#ifndef TF_INTERNAL_H
#define TF_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpfile.h"

#define TF_DEFAULT_MAX_NAME 255
#define TF_ERRMSG_MAX 512

/* printf-style checking for our own formatters. */
#if defined(__GNUC__) || defined(__clang__)
#  define TF__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define TF__PRINTF(f, a)
#endif

/* The detail of a failure, kept beside each handle (tf_errmsg). The first
   message of a failure wins (curl's Curl_failf): once set, later tf__fail
   calls on the way up return their code but leave the message alone, so
   that the caller reads the deepest, most specific cause ("write failed: No
   space left on device", the server's own words) rather than the last
   layer's summary. Each public entry point clears the record. */
typedef struct tf__err {
    /* Non-empty exactly when it holds the current failure: no separate flag,
       so that a zeroed record ({{0}}, calloc, memset) is an empty one. */
    char msg[TF_ERRMSG_MAX];
} tf__err;

/* Records a message, unless e already holds one, and returns code, so that
   each error path is one line:
   return tf__fail(e, TF_ENOENT, "no file named \"%s\"", name); */
int tf__fail(tf__err *e, int code, const char *fmt, ...) TF__PRINTF(3, 4);
/* The same, with ": <strerror(errnum)>" appended. */
int tf__fail_errno(tf__err *e, int code, int errnum, const char *fmt, ...)
    TF__PRINTF(4, 5);
/* Adds context in front of the message held: "<fmt>: <first message>" (or
   sets "<fmt>" when none is held), and returns code. For the places that
   deliberately say more than the cause, never instead of it. */
int tf__err_prefix(tf__err *e, int code, const char *fmt, ...) TF__PRINTF(3, 4);
/* Replaces e's message with from's. For failures ranked by precedence, not
   by time: a failure recorded aside while a stream is kept in step (a local
   write, the sender's trailer) and chosen once the stream is done. */
void tf__err_take(tf__err *e, const tf__err *from);
/* Says something else instead of the message held, and returns code: for a
   lower layer's message that the caller knows to be only a symptom (a wait
   that timed out is a connect that timed out). */
int tf__err_replace(tf__err *e, int code, const char *fmt, ...) TF__PRINTF(3, 4);
/* The TF_E* code that best describes a file-system errno. */
int tf__code_from_errno(int errnum);
/* Forgets the message: the next tf__fail records again. */
void tf__err_clear(tf__err *e);

/* tf_options: values indexed by tf_option key, plus callbacks. */
#define TF__OPT_COUNT 19
/* Largest TF_OPT_PIPELINE. */
#define TF__PIPELINE_MAX 256
struct tf_options {
    int64_t value[TF__OPT_COUNT];
    tf_progress_fn progress;
    void *progress_user;
    tf_log_fn log;
    void *log_user;
};
/* Fills *dst with src, or with the defaults when src is NULL. */
void tf__options_copy(tf_options *dst, const tf_options *src);

/* Name validation over (bytes, length), for names that are not C strings. */
int tf__name_check_bytes(const void *name, size_t len, size_t max_len, const char **why);

/* Serves one already-connected socket in the calling thread, through a
   worker's event loop in its one-connection mode (worker.c: the same loop
   and session code as the server's worker threads), until that session
   ends, and closes it. peer is ignored. For tests and fuzzing, which feed
   a socketpair without a listener. */
int tf__server_serve_fd(tf_server *srv, int fd, const char *peer);

/* Monotonic clock, milliseconds. */
int64_t tf__now_ms(void);

#endif /* TF_INTERNAL_H */
