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
/* The hidden subdirectory of the root that holds uploads in progress: a
   directory is never listed nor served, and no name or path may use it. */
#define TF_TMP_DIR ".tcpfile-tmp"
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
#define TF__OPT_COUNT 34 /* 24: early requests, 26: group commit, 28: small cache, 32-33: gets ahead (alloc.md) */
/* tf_string_option keys are below this (0 unused). */
#define TF__SOPT_COUNT 16
/* Longest text setting, bytes. */
#define TF__SOPT_MAX 4096
/* Largest TF_OPT_PIPELINE. */
#define TF__PIPELINE_MAX 1024
struct tf_options {
    int64_t value[TF__OPT_COUNT];
    char *str[TF__SOPT_COUNT]; /* owned copies; NULL = unset */
    tf_progress_fn progress;
    void *progress_user;
    tf_item_progress_fn item_progress;
    void *progress_user_item;
    tf_log_fn log;
    void *log_user;
    /* client TLS: the program's question about an unknown server, and the
       context cache that lets tf_connect resume (client_tls.c). The cache
       is shared, reference counted, by the options and their copies. */
    tf_host_check_fn host_check;
    void *host_check_user;
    struct tf__tls_share *tls_share;
};
/* client_tls.c: the TLS context cache of one tf_options. */
int tf__tls_share_new(struct tf__tls_share **out);
void tf__tls_share_ref(struct tf__tls_share *sh);
void tf__tls_share_unref(struct tf__tls_share *sh);
/* Fills *dst with src (its strings copied), or with the defaults when src
   is NULL. TF_OK or TF_ENOMEM (then *dst holds no strings). A filled copy
   is released with tf__options_release. */
int tf__options_copy(tf_options *dst, const tf_options *src);
/* Frees the strings of a copy (wiping the token); *o is then unset. */
void tf__options_release(tf_options *o);
/* The text setting key, or NULL when unset. */
static inline const char *tf__opt_str(const tf_options *o, int key)
{
    return key > 0 && key < TF__SOPT_COUNT ? o->str[key] : NULL;
}

/* Name validation over (bytes, length), for names that are not C strings. */
int tf__name_check_bytes(const void *name, size_t len, size_t max_len, const char **why);

/* Paths, for the tree feature (issue 12; not yet negotiated): components
   separated by '/', each a name as above (and not TF_TMP_DIR), no leading
   or trailing '/', no "//". Byte-exact: no Unicode normalisation, so two
   spellings of "café" are two paths, as on a POSIX file system. */
#define TF_DEFAULT_MAX_DEPTH 64
#define TF_DEFAULT_MAX_PATH 4096
/* Room for any reason tf__path_check_bytes gives, terminator included. */
#define TF__PATH_WHY_MAX 128

/* A zero field means its default. max_name is the server's max_name (the
   file system's NAME_MAX caps it where the option is set, not here). */
typedef struct tf__path_limits {
    size_t max_name;  /* bytes per component; 0: TF_DEFAULT_MAX_NAME */
    size_t max_depth; /* components; 0: TF_DEFAULT_MAX_DEPTH */
    size_t max_path;  /* bytes of the whole path; 0: TF_DEFAULT_MAX_PATH */
} tf__path_limits;

/* Checks len bytes of path (lim NULL: the defaults). TF_OK; TF_EINVAL when
   it breaks a rule; TF_EACCES when it is well formed but one component is
   the reserved TF_TMP_DIR. When why is not NULL it receives (cut to
   why_cap) the reason, naming the component by its 1-based number:
   "component 3 is \"..\"", or "" on success. Never reads past len. */
int tf__path_check_bytes(const void *path, size_t len, const tf__path_limits *lim,
                         char *why, size_t why_cap);

/* Walks a path's components without copying or allocating: every '/'
   separates, so "a//b" gives "a", "", "b" and "" gives none. On any path,
   checked or not, it never reads past len. */
typedef struct tf__path_iter {
    const char *path;
    size_t len;
    size_t pos;   /* where the next component starts; len + 1: done */
    size_t index; /* 1-based number of the component last returned */
} tf__path_iter;
void tf__path_iter_init(tf__path_iter *it, const void *path, size_t len);
/* 1 with the next component in *comp / *comp_len (not NUL-terminated),
   0 when there are no more. */
int tf__path_iter_next(tf__path_iter *it, const char **comp, size_t *comp_len);
/* Whether the component last returned was the final one (the leaf). */
int tf__path_iter_done(const tf__path_iter *it);

/* Serves one already-connected socket in the calling thread, through a
   worker's event loop in its one-connection mode (worker.c: the same loop
   and session code as the server's worker threads), until that session
   ends, and closes it. peer is ignored. For tests and fuzzing, which feed
   a socketpair without a listener. */
int tf__server_serve_fd(tf_server *srv, int fd, const char *peer);

/* Monotonic clock, milliseconds. */
int64_t tf__now_ms(void);

#endif /* TF_INTERNAL_H */
