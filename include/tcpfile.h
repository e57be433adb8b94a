/*
 * tcpfile.h - the whole public API of libtcpfile.
 *
 * libtcpfile moves files and in-memory messages between machines over TCP:
 * a client gets, puts and lists files on a server that serves one directory.
 *
 * Conventions (they hold for every function below):
 *  - Every int-returning call returns TF_OK (0) or a negative TF_E* code;
 *    tf_strerror() turns a code into a sentence, tf_errname() into its name.
 *  - Handles are opaque. Each *_free / *_close accepts NULL.
 *  - A call that creates a handle takes its out parameter first
 *    (tf_options_new, tf_connect, tf_server_open); a call on a handle takes
 *    the handle first and its out parameters last (tf_options_get, tf_get_mem,
 *    tf_list), as does tf_name_check (why). That order is part of the ABI and
 *    stays. What comes back through **out belongs to the caller and is
 *    released with the matching tf_*_free / tf_close.
 *  - The library keeps no global state, prints nothing, installs no signal
 *    handlers and never raises SIGPIPE.
 *  - A tf_client is used by one thread at a time; different clients and
 *    servers may run in parallel threads freely.
 */
#ifndef TCPFILE_H
#define TCPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "tcpfile_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef TF_API
#  if defined(_WIN32) && defined(TF_SHARED_BUILD)
#    define TF_API __declspec(dllexport)
#  elif defined(__GNUC__) || defined(__clang__)
#    define TF_API __attribute__((visibility("default")))
#  else
#    define TF_API
#  endif
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * X(name, value, message). Released values are never renumbered or reused;
 * the same numbers (as positive values) travel as status codes on the wire,
 * see docs/protocol.md, up to TF_EINTERNAL: the codes after it describe
 * reaching a server and never travel (-16..-18), except the tree's
 * TF_ENOTDIR, TF_EISDIR and TF_ENOTEMPTY (-19..-21), which travel as
 * statuses 19..21. TF_ENET stays the generic network
 * code (unreachable, reset, closed); TF_ERESOLVE and TF_ECONNREFUSED tell
 * apart the two connect failures a user acts on differently.
 */
#define TF_ERRNO_MAP(X)                                                        \
    X(EINVAL, -1, "invalid argument or name")                                 \
    X(ENOENT, -2, "no such file")                                             \
    X(EEXIST, -3, "file already exists")                                      \
    X(EACCES, -4, "permission denied")                                        \
    X(ETOOBIG, -5, "over a size or count limit")                              \
    X(ENOSPC, -6, "no space left on device")                                  \
    X(EIO, -7, "file input/output error")                                     \
    X(ENET, -8, "network error or connection closed")                         \
    X(EPROTO, -9, "protocol error")                                           \
    X(ETIMEDOUT, -10, "timed out")                                            \
    X(ENOMEM, -11, "out of memory")                                           \
    X(ECHECKSUM, -12, "checksum mismatch")                                    \
    X(EBUSY, -13, "server busy")                                              \
    X(ECANCELED, -14, "cancelled by the caller")                              \
    X(EINTERNAL, -15, "internal error")                                       \
    X(ERESOLVE, -16, "cannot resolve the host name")                          \
    X(ECONNREFUSED, -17, "connection refused")                                \
    X(EPEERVERIFY, -18, "server identity rejected")                           \
    X(ENOTDIR, -19, "not a directory")                                        \
    X(EISDIR, -20, "is a directory")                                          \
    X(ENOTEMPTY, -21, "directory not empty")                                  \
    X(ECONFLICT, -22, "the file changed: it no longer has the expected digest")

enum tf_error {
    TF_OK = 0,
#define TF__ERR_ENUM(name, value, msg) TF_##name = (value),
    TF_ERRNO_MAP(TF__ERR_ENUM)
#undef TF__ERR_ENUM
    TF__ERR_LAST = -22 /* the most negative code in use; grows over time */
};

/* A sentence describing code ("success" for TF_OK; "unknown error" for a
   code this version does not know). Static, never NULL, never freed. */
TF_API const char *tf_strerror(int code);

/* The code's name, e.g. "TF_ENOENT"; "TF_EUNKNOWN" for a code this version
   does not know. Static, never NULL, never freed. */
TF_API const char *tf_errname(int code);

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

/* TF_VERSION_NUMBER of the library actually linked (major<<16|minor<<8|patch),
   which may be newer than the tcpfile_version.h compiled against. */
TF_API unsigned tf_version(void);
/* The same as a "MAJOR.MINOR.PATCH" string. Static, never NULL. */
TF_API const char *tf_version_string(void);

/* ------------------------------------------------------------------------ */
/* Options: one opaque bag of tunables, for clients and servers alike.      */
/* NULL wherever a const tf_options * is taken means "all defaults".        */
/* ------------------------------------------------------------------------ */

typedef struct tf_options tf_options;

typedef enum tf_option {
    /* client: how long to wait for the TCP connect and handshake.
       Milliseconds, 0 = no limit. Default 10000. */
    TF_OPT_CONNECT_TIMEOUT_MS = 1,
    /* both: longest wait for the peer to make progress while a request is
       in flight (a read or write that moves no byte). ms, 0 = no limit.
       Default 30000. */
    TF_OPT_IO_TIMEOUT_MS = 2,
    /* server: close a connection that sends no request for this long.
       ms, 0 = no limit. Default 300000. */
    TF_OPT_IDLE_TIMEOUT_MS = 3,
    /* both: longest name in bytes, 1..4096. Default 255. The server tells
       the client its limit in the handshake, lowered to what the served
       directory's file system holds (NAME_MAX); a longer name is
       TF_EINVAL. */
    TF_OPT_MAX_NAME_LEN = 4,
    /* server: 1 = refuse every put with TF_EACCES. Default 0. */
    TF_OPT_READ_ONLY = 5,
    /* server: connections served at once; the next client is told
       TF_EBUSY. 1..1000000. Default 1024. Each takes a file descriptor:
       the library does not change RLIMIT_NOFILE, so raise the soft limit
       (tcpfile-server sets it to the hard one); out of descriptors, new
       clients are told TF_EBUSY. */
    TF_OPT_MAX_CONNECTIONS = 6,
    /* server: largest upload accepted, bytes, 0 = no limit. Default 0. */
    TF_OPT_MAX_UPLOAD = 7,
    /* server: 0 = refuse a put over an existing name with TF_EEXIST.
       Default 1 (overwrite). */
    TF_OPT_OVERWRITE = 8,
    /* client: largest encoded listing accepted from a server, bytes.
       Default 256 MiB. Also caps tf_get_mem. server: most bytes of encoded
       listings held at once for clients still reading them, all
       connections together; a list over it gets TF_EBUSY (one listing
       alone is always sent). Default 256 MiB. */
    TF_OPT_MAX_MEMORY = 9,
    /* server: most files a listing carries; more gives TF_ETOOBIG.
       Default 1000000. */
    TF_OPT_MAX_LIST_ENTRIES = 10,
    /* server: on tf_server_stop, how long requests in flight may take to
       finish before their connections are cut. ms. Default 5000. */
    TF_OPT_STOP_GRACE_MS = 11,
    /* both: 1 = verify every transfer end to end with an XXH3-128 checksum
       (used when both sides have it on). Default 1. */
    TF_OPT_CHECKSUM = 12,
    /* client: 1 = an interrupted tf_get / tf_put keeps what it moved, and
       the next tf_get / tf_put of the same file continues from there
       instead of starting over. Default 0. */
    TF_OPT_RESUME = 13,
    /* server: seconds an interrupted upload is kept for resuming. Default
       86400 (a day). */
    TF_OPT_RESUME_TTL_S = 14,
    /* server: least bytes per second a request in flight must move,
       measured over TF_OPT_IO_TIMEOUT_MS windows, so a client trickling
       bytes cannot hold a connection for ever. 0 = no minimum. Default 1024. */
    TF_OPT_MIN_RATE = 15,
    /* server: worker threads, each serving many connections through epoll.
       0 = one per online CPU (the default). */
    TF_OPT_WORKERS = 16,
    /* client: most requests tf_get_many has on the wire before their
       responses have come back, 1..1024. 1 = one at a time. Default 32. */
    TF_OPT_PIPELINE = 17,
    /* server: most partial uploads kept for resuming at once (those in
       progress included), 0..1000000. When a keyed put starts and the
       others fill this, the least recently written ones that no connection
       is using are removed to make room; if all are in use, this put is not
       kept when cut off. 0 = none kept: keyed puts work, but start over.
       Default 64. Disk bound: this times TF_OPT_MAX_UPLOAD. */
    TF_OPT_MAX_PARTIALS = 18,
    /* both: 1 = TLS 1.3 from the connection's first byte; 0 = plaintext,
       for loopback and trusted networks only. Both sides must agree: a
       mismatch fails the connection with TF_EPROTO and a clear message.
       Default 0, so that programs written before TLS (and NULL options)
       keep working; the command-line programs turn it on. */
    TF_OPT_TLS = 19,
    /* client: 1 = a server not yet in the known-hosts file is trusted on
       first use and recorded there (ssh's accept-new). Default 0: refused
       with TF_EPEERVERIFY unless a host-check callback accepts it. */
    TF_OPT_TLS_ACCEPT_NEW = 20,
    /* both: most components of a path (feature TREE, see tf_stat),
       1..2048. Default 64. The server announces its limit in the
       handshake; a client checks its paths against the lower of the two. A
       deeper path is TF_EINVAL. */
    TF_OPT_MAX_DEPTH = 21,
    /* both: longest path in bytes, separators included, 1..4096. Default
       4096. Not announced: the server answers a longer path with
       TF_EINVAL, a client refuses to send one. (Each component is still
       limited by TF_OPT_MAX_NAME_LEN.) */
    TF_OPT_MAX_PATH = 22,
    /* server: threads that do the server's blocking storage work (open,
       hash, fsync, rename, scans; every call to a network store), so that
       a worker's event loop never waits for the disk. Shared by all
       workers; 0 = 4 (the default; 16 for a network store, S3, where each
       call holds a thread while it waits), 1..64. */
    TF_OPT_DISK_THREADS = 23,
    /* client: 1 = tf_connect sends its hello and returns without waiting
       for the server's; the first request goes right behind the hello, so
       a connection's first answer costs one round trip instead of two
       (docs/protocol.md, 1). The server's hello is read by the first call
       that needs an answer (or a tf_client_* query), within
       TF_OPT_IO_TIMEOUT_MS since requests may already be in flight (not
       the connect timeout): a refusal (TF_EBUSY),
       no common version (TF_EPROTO) or a login demanded (TF_EACCES) is
       then that call's result, with the message tf_connect_ex would have
       given, and every later call on c returns the same. Requests that
       need a feature or a limit of the server (a path, a name over the
       client's TF_OPT_MAX_NAME_LEN, resuming, put extensions, streamed and
       pipelined puts, the tree calls) wait for its hello first. Ignored
       when TF_SOPT_USER is set: an auth request may only follow a hello
       that asks for it. Default 0. */
    TF_OPT_EARLY_REQUESTS = 24,
    /* server: most pipelined puts (tf_put_many's) made durable together,
       1..256: their data synced at once, then their names, before any of
       them is answered (docs/protocol.md, 4b). 1 = each on its own, two
       syncs each. Default 256. */
    TF_OPT_GROUP_COMMIT = 26,
    /* server: bytes of small files (16 KiB or less) each worker keeps in
       memory with their checksums, so that a repeated get costs one stat
       of the name instead of open, read and hashing. A copy is served only
       while the file's inode, size, mtime and ctime are those it was read
       with, and only files left alone for two seconds are kept. 0 = off;
       default 4 MiB (4194304) per worker. */
    TF_OPT_SMALL_CACHE = 28,
    /* server: on a store whose every call waits on the network (S3), most
       pipelined gets of one connection whose files are opened (a small
       file read whole, up to 64 KiB) on the disk pool at once, ahead of
       their turn, while earlier answers are fetched and sent; answers
       still go in request order. Only gets the client has sent count.
       0 = one get at a time. 0..64. Default 8. */
    TF_OPT_GET_AHEAD = 32,
    /* server: most gets opened ahead (TF_OPT_GET_AHEAD) of all
       connections together, fetched or waiting for their turn, so that
       they hold at most this many small files and the disk pool is not
       filled with them. 0 = the disk pool's threads (the default). */
    TF_OPT_GET_AHEAD_MAX = 33
} tf_option;

/* Creates an options object holding the defaults. *out is the caller's,
   released with tf_options_free. Returns TF_OK, TF_EINVAL (out NULL) or
   TF_ENOMEM (then *out is NULL). */
TF_API int tf_options_new(tf_options **out);
/* Releases opt; NULL is fine. tf_connect and tf_server_open copy the
   options they are given, so opt may be changed or freed right after:
   handles already made keep the values they were made with. */
TF_API void tf_options_free(tf_options *opt);
/* Sets one tunable. Returns TF_OK, or TF_EINVAL (opt NULL, a key this
   version does not know, a value out of the key's range) and then leaves
   opt unchanged. */
TF_API int tf_options_set(tf_options *opt, tf_option key, int64_t value);
/* Reads one tunable into *value. Returns TF_OK, or TF_EINVAL (opt or value
   NULL, an unknown key). */
TF_API int tf_options_get(const tf_options *opt, tf_option key, int64_t *value);

/* Text-valued settings: file paths and identities. */
typedef enum tf_string_option {
    /* server: PEM certificate (chain) and private key files. Neither set:
       a key and a self-signed certificate are made on the first start and
       kept in TF_SOPT_STATE_DIR. */
    TF_SOPT_TLS_CERT = 1,
    TF_SOPT_TLS_KEY = 2,
    /* client: PEM file of the CAs that vouch for the server; the host name
       is verified too (as curl does). server: the CAs whose client
       certificates are accepted (mutual TLS). */
    TF_SOPT_TLS_CA = 3,
    /* client: "SHA256:" and the base64 SHA-256 of the server's public key
       (SPKI), as the server prints it: exactly that key is accepted. */
    TF_SOPT_TLS_PIN = 4,
    /* client: the known-hosts file. Default
       $XDG_CONFIG_HOME/tcpfile/known_hosts (~/.config/tcpfile/known_hosts). */
    TF_SOPT_KNOWN_HOSTS = 5,
    /* server: the directory that keeps the generated identity (and the
       default users file). Default $XDG_STATE_HOME/tcpfile
       (~/.local/state/tcpfile). */
    TF_SOPT_STATE_DIR = 6,
    /* server: the users file. Unset: no users, everyone is served. */
    TF_SOPT_USERS_FILE = 7,
    /* client: the user to authenticate as, and that user's token. The
       token is a secret: it is wiped from memory when the options (or the
       client holding a copy) are freed. */
    TF_SOPT_USER = 8,
    TF_SOPT_TOKEN = 9,
    /* client: a PEM certificate and key for mutual TLS. A server with
       users whose file maps the certificate to a user (tf_users_add_cert)
       makes the connection that user without a token. */
    TF_SOPT_TLS_CLIENT_CERT = 10,
    TF_SOPT_TLS_CLIENT_KEY = 11,
    /* server: serve a bucket of an S3-compatible store (Ceph's RADOS
       Gateway, MinIO, AWS S3) instead of a directory: "s3://BUCKET" or
       "s3://BUCKET/PREFIX"; tf_server_open's root is then ignored (NULL is
       fine). TF_SOPT_S3_ENDPOINT is required with it ("http://host:port",
       "https://..."); TF_SOPT_S3_REGION is the signing region (default
       "us-east-1"). Credentials are never options: AWS_ACCESS_KEY_ID and
       AWS_SECRET_ACCESS_KEY, else profile AWS_PROFILE (default "default")
       of AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials). The
       bucket is checked at open: TF_EACCES (credentials refused), TF_ENOENT
       (no such bucket), TF_EIO (the store cannot be reached; the reason in
       the message). */
    TF_SOPT_S3_STORE = 12,
    TF_SOPT_S3_ENDPOINT = 13,
    TF_SOPT_S3_REGION = 14
} tf_string_option;

/* Sets a text setting to a copy of value (NULL: back to unset). Returns
   TF_OK, TF_EINVAL (opt NULL, a key this version does not know, a value
   longer than 4096 bytes) or TF_ENOMEM, leaving opt unchanged on failure. */
TF_API int tf_options_set_string(tf_options *opt, tf_string_option key, const char *value);
/* Points *value at the setting (NULL when unset), valid until it is set
   again or opt is freed. TF_OK, or TF_EINVAL (opt or value NULL, an
   unknown key). */
TF_API int tf_options_get_string(const tf_options *opt, tf_string_option key,
                                 const char **value);

/*
 * Progress of one transfer: called as bytes move. total is the full size
 * when known, otherwise 0. Return 0 to go on, non-zero to cancel: the call
 * then fails with TF_ECANCELED and (for a get) leaves no partial file.
 */
typedef int (*tf_progress_fn)(void *user, uint64_t done, uint64_t total);
/*
 * Makes clients created with opt call fn(user, done, total) during each
 * tf_get* and tf_put* (not tf_list): once with done 0 when the data starts
 * to move, then after every block (at least every few MiB), the last time
 * with done == total. The call comes from the thread running the transfer,
 * inside it: fn must not use the same tf_client. A resumed transfer
 * (TF_OPT_RESUME) starts at the bytes it already had. user is passed
 * through untouched, never freed. fn NULL turns progress reports off (the
 * default). Returns TF_OK, or TF_EINVAL when opt is NULL.
 */
TF_API int tf_options_set_progress(tf_options *opt, tf_progress_fn fn, void *user);

/*
 * Progress of one item of a tf_get_many batch: index is the item's place in
 * the array, done and total are that file's bytes (total its full size).
 * Return 0 to go on, non-zero to cancel: the batch then ends with
 * TF_ECANCELED (as a connection failure does, see tf_get_many).
 */
typedef int (*tf_item_progress_fn)(void *user, size_t index, uint64_t done, uint64_t total);
/*
 * Makes clients created with opt call fn(user, index, done, total) for each
 * item of tf_get_many, in place of the plain progress callback, with the
 * same rhythm (done 0 when an item's data starts, done == total at its
 * end; items report one after the other, in order, each once its bytes
 * arrive). Without it, tf_get_many calls the plain callback the same way,
 * so each item counts from 0 to its own size. Other calls never use fn.
 * Same thread rules as tf_options_set_progress; user is passed through
 * untouched. fn NULL turns it off (the default). Returns TF_OK, or
 * TF_EINVAL when opt is NULL. (A callback type of its own, so that
 * tf_progress_fn keeps its signature.)
 */
TF_API int tf_options_set_item_progress(tf_options *opt, tf_item_progress_fn fn, void *user);

/*
 * What a server tells its log callback after each request. The library owns
 * it; it is valid only during the call. Fields may be appended in later
 * minor versions, so never allocate or copy one by value.
 * This is the server's per-request error channel: a request that fails
 * reports here, with result its code and message the first (most specific)
 * detail of its failure, the same text the client was sent when it was
 * sent one. Why the server itself could not start or keep serving is
 * tf_server_errmsg's.
 */
typedef struct tf_request_log {
    const char *peer;      /* "127.0.0.1:50312" or "[::1]:50312"            */
    const char *op;        /* "get", "put", "list", "connect", "busy", ...  */
    const char *name;      /* the file name, "" when the request has none   */
    uint64_t    bytes;     /* payload bytes moved                           */
    int         result;    /* TF_OK or a negative TF_E* code                */
    const char *message;   /* detail of the failure, "" on success          */
    double      seconds;   /* how long the request took                     */
    /* Appended in 0.x (issue 13): the user logged in on the connection,
       "" when none (a server without users, or before a login). An auth
       request's entry has op "auth" and the user name it tried as name;
       never the token. */
    const char *user;
    /* Appended in 0.x (issue 12): a rename's new path (name is the old
       one), "" for every other request. */
    const char *to;
} tf_request_log;

/* A server created with opt calls fn(user, entry) once per request when it
   ends, and once for each connection turned away ("busy"), failing its
   handshake ("connect") or sending an unreadable request ("request"). The
   calls come from the server's worker threads,
   possibly several at once, so fn must be thread-safe; and while fn runs
   its worker serves no other connection, so fn should be quick (write a
   line, queue a record). user is passed through untouched, never freed.
   fn NULL: no logging (the default). Returns TF_OK, or TF_EINVAL when opt
   is NULL. */
typedef void (*tf_log_fn)(void *user, const tf_request_log *entry);
TF_API int tf_options_set_log(tf_options *opt, tf_log_fn fn, void *user);

/* The host-check callback of tf_options_set_host_check. */
typedef int (*tf_host_check_fn)(void *user, const char *host, int port,
                                const char *fingerprint);
/*
 * TLS client, a server not in the known-hosts file (and no
 * TF_OPT_TLS_ACCEPT_NEW): fn(user, host, port, fingerprint) is asked, from
 * inside tf_connect before anything but the TLS ClientHello has been sent;
 * host is the name or address as given, fingerprint "SHA256:..." of the
 * server's key. Return 1 to accept the server and record it in the
 * known-hosts file, 0 to refuse (tf_connect then fails with
 * TF_EPEERVERIFY). Without a callback an unknown server is refused. A
 * terminal program asks its user here, as ssh does. fn NULL turns it off.
 * Returns TF_OK, or TF_EINVAL when opt is NULL.
 */
TF_API int tf_options_set_host_check(tf_options *opt, tf_host_check_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct tf_client tf_client;   /* one connection to a server */
typedef struct tf_listing tf_listing; /* the result of tf_list       */

/* One entry of a listing, owned by the listing and read through
   tf_listing_at (never allocated by the library's caller, so fields may be
   appended in later minor versions: do not step from one entry to the
   next with pointer arithmetic). */
typedef struct tf_entry {
    const char *name; /* UTF-8, NUL-terminated, owned by the listing */
    uint64_t size;    /* bytes */
    int64_t mtime;    /* seconds since the Unix epoch */
} tf_entry;

/*
 * Connects to host:port (a name, an IPv4 or IPv6 literal; "[::1]" is
 * accepted too) and performs the handshake. One connection carries any
 * number of requests.
 * Returns TF_OK, TF_EINVAL, TF_ERESOLVE (no such host, or the name
 * service failed), TF_ECONNREFUSED (nothing listens on that port),
 * TF_ENET (unreachable, other network failures), TF_ETIMEDOUT, TF_EPROTO (not a tcpfile server, no common version),
 * TF_EBUSY (server full), TF_ENOMEM. On success *out is the caller's,
 * closed and freed with tf_close. On failure *out is NULL; the reason is
 * not kept anywhere, so callers wanting the detail use tf_connect_ex.
 * opt NULL means the defaults; it is copied, see tf_options_free. With
 * TF_OPT_EARLY_REQUESTS the server's answer (TF_EBUSY, TF_EPROTO for no
 * common version, TF_EACCES for a login) comes from the first call instead.
 */
TF_API int tf_connect(tf_client **out, const char *host, const char *port,
                      const tf_options *opt);

/* As tf_connect, and on failure copies a detailed message into errbuf
   (NUL-terminated, truncated to errlen; errbuf may be NULL). */
TF_API int tf_connect_ex(tf_client **out, const char *host, const char *port,
                         const tf_options *opt, char *errbuf, size_t errlen);

/*
 * Downloads the remote file name into local_path (NULL: ./name). The data
 * goes to a temporary file beside local_path that is renamed over it only
 * once complete, so a failure leaves no partial file and an existing file
 * untouched; a file replaced keeps its mode (and owner, where allowed), a
 * new one gets 0666 less the umask. When local_path exists and is not a
 * regular file (/dev/null, a FIFO, a terminal) the data is written straight
 * into it.
 * Returns TF_OK, TF_EINVAL (bad name), TF_ENOENT, TF_EACCES, TF_EIO (local
 * file), TF_ENOSPC, TF_ENET, TF_EPROTO, TF_ETIMEDOUT, TF_ECANCELED, ...
 */
TF_API int tf_get(tf_client *c, const char *name, const char *local_path);

/* Downloads name and writes it to the open descriptor fd, from its current
   position; fd stays the caller's and open. Data already written stays
   written if the transfer then fails. Returns as tf_get (TF_EINVAL also
   for fd < 0; TF_EIO when writing to fd fails, after which c stays usable). */
TF_API int tf_get_fd(tf_client *c, const char *name, int fd);

/*
 * Downloads name into memory: *data (NUL-terminated one byte past *len for
 * convenience) is the caller's, released with tf_free(). Larger than
 * TF_OPT_MAX_MEMORY gives TF_ETOOBIG (c stays usable). Returns as tf_get,
 * and TF_EINVAL when data or len is NULL, TF_ENOMEM. On failure *data is
 * NULL, *len 0.
 */
TF_API int tf_get_mem(tf_client *c, const char *name, void **data, size_t *len);

/*
 * One file of a tf_get_many batch. The caller allocates the items, as an
 * array, so the struct keeps room for the fields of later versions and its
 * size stays the same within a major version (6 pointers and 2 ints: 56
 * bytes on 64-bit systems, 32 on 32-bit ones). Zero every item before
 * filling it in - a designated initializer such as
 * (tf_get_item){.name = "a.txt", .fd = -1}, calloc or memset - so that a
 * later field, placed in the reserved room, takes its default from the
 * zero; an item whose reserved room is not zero fails with TF_EINVAL.
 *
 * local_path NULL means what it means for tf_get (./name) ONLY WHEN fd < 0;
 * with local_path NULL and fd >= 0 the bytes go to fd. A zeroed item has
 * fd 0 (standard input!), so set fd = -1 unless you mean a descriptor.
 */
typedef struct tf_get_item {
    const char *name;       /* in: the file's name on the server */
    const char *local_path; /* in: where to store it, as tf_get does; NULL:
                               fd when fd >= 0, else ./name as tf_get */
    int fd;                 /* in: with local_path NULL, the descriptor the
                               bytes are written to, as tf_get_fd does; -1:
                               none */
    int result;             /* out: TF_OK or this file's failure */
    const char *message;    /* out: this file's failure message, "" on
                               success; owned by the client, valid until
                               the next call on it or tf_close. The library
                               only writes it (any value on entry is fine):
                               it took reserved[0]'s place, same size. */
    void *reserved[3];      /* zero: room for later fields */
} tf_get_item;

/*
 * Downloads n files over the one connection with pipelined requests: up to
 * TF_OPT_PIPELINE requests are on the wire before their responses arrive,
 * so a batch of small files pays for one round trip per window rather than
 * one per file. Each item's result and message say how it went; a file's
 * own failure (TF_ENOENT, TF_EACCES, a bad name, a local TF_EIO,
 * TF_ECHECKSUM) does not stop the others. A failure of the connection
 * (TF_ENET, TF_ETIMEDOUT, TF_EPROTO, TF_ECANCELED, TF_ENOMEM) ends the batch
 * and becomes the result (and message) of every item not finished.
 * Returns TF_OK when every item succeeded, else the result of the first
 * item that failed - first in array order, the lowest index, not the
 * earliest in time - with its message in tf_errmsg; TF_EINVAL when c or
 * items is NULL. No resuming (TF_OPT_RESUME is ignored here). Progress:
 * see tf_options_set_item_progress (without it the plain progress callback
 * is called for each item in turn). Small files (up to 16 KiB) bound for
 * a descriptor are written to it several to a write, in order, and always
 * before the batch waits for the network or returns; when such a write
 * fails, each item it carried fails with TF_EIO.
 */
TF_API int tf_get_many(tf_client *c, tf_get_item *items, size_t n);

/*
 * Uploads local_path as name (NULL: the basename of local_path). The server
 * stores it atomically: readers see the old content or the new, whole; a
 * file it replaces keeps its mode (and owner, where allowed).
 * Returns TF_OK, TF_EINVAL, TF_ENOENT (local file missing), TF_EIO,
 * TF_EACCES (read-only server, or local_path unreadable), TF_EEXIST
 * (server refuses overwrite), TF_ETOOBIG (over the server's upload limit),
 * TF_ENOSPC (server side), TF_ECHECKSUM (corrupted on the way: nothing is
 * stored), TF_ENET, TF_ETIMEDOUT, TF_EPROTO, TF_ECANCELED, TF_ENOMEM. A
 * local_path that cannot seek (a pipe, a terminal, "/dev/stdin") is read to
 * its end into a temporary file first, to learn its size.
 */
TF_API int tf_put(tf_client *c, const char *local_path, const char *name);

/* Uploads size bytes read from fd, from its current offset, as name; fd
   stays the caller's and open. If fd ends or fails before size bytes, the
   server discards the upload and TF_EIO is returned (c stays usable).
   Returns as tf_put, and TF_EINVAL for fd < 0. */
TF_API int tf_put_fd(tf_client *c, int fd, uint64_t size, const char *name);

/*
 * Uploads everything read from fd until its end (a pipe, a socket,
 * standard input: `tar c dir | prog`) as name, without knowing the size
 * up front and without local temporary space: the data goes out in chunks
 * through one 1 MiB buffer (docs/protocol.md, feature STREAM). The server
 * stores it atomically as tf_put does; an upload cut off, failing or over
 * the server's TF_OPT_MAX_UPLOAD stores nothing. Over the limit the server
 * refuses mid-stream: TF_ETOOBIG, and the connection is then closed (every
 * later call on c returns TF_ENET). Not resumable (TF_OPT_RESUME is
 * ignored). The progress callback gets total 0 until the end, then once
 * done == total. fd stays the caller's and open; it is read to its end
 * unless the transfer fails. The request goes out once fd's first bytes
 * (or its end) have come, so a source slow to start holds nothing on the
 * server; later, a silence longer than the server's I/O timeout (or a
 * trickle under its minimum rate) fails the upload with TF_ENET.
 * Returns as tf_put, and TF_EINVAL for fd < 0, TF_EIO when reading fd
 * fails (c stays usable), TF_EPROTO without reading fd when the server
 * does not offer STREAM (older servers: see tf_client_can_stream; tf_put
 * on a path that cannot seek spools to a temporary file instead).
 */
TF_API int tf_put_stream(tf_client *c, int fd, const char *name);

/* 1 when the server of c takes tf_put_stream's size-less uploads (it
   offered the STREAM feature in the handshake), else 0 (c NULL too). */
TF_API int tf_client_can_stream(const tf_client *c);

/* Uploads len bytes at data (still the caller's; NULL only when len is 0)
   as name. Returns as tf_put. */
TF_API int tf_put_mem(tf_client *c, const void *data, size_t len, const char *name);

/* ------------------------------------------------------------------------ */
/* Put extensions: conditions, timestamps, parents, skip-if-same, and      */
/* pipelined puts (docs/protocol.md, feature PUTX)                          */
/* ------------------------------------------------------------------------ */

/* Bits of tf_put_args.flags. */
/* Create the missing parent directories of name first, as mkdir -p does
   (names with a '/' need a server with paths, see the tree feature). A
   parent that exists as something other than a directory, or a symbolic
   link on the way, fails the put (TF_ENOTDIR / TF_EEXIST / TF_EACCES as the
   server finds it); directories it made stay. Without it, a put into a
   missing directory is TF_ENOENT. */
#define TF_PUT_PARENTS 0x01u
/* Store only if name does not exist yet: TF_EEXIST otherwise, whatever the
   server's TF_OPT_OVERWRITE. Checked before the data moves and again, at
   once with the publishing, against a put of the same name racing it. */
#define TF_PUT_IF_ABSENT 0x02u
/* Replace only the version of name whose XXH3-128 digest (canonical
   big-endian form, as tf_put_args.if_match holds it) is if_match: when
   name holds anything else, or nothing, the put fails with TF_ECONFLICT
   and nothing changes. The check and the publishing are one step on the
   server with respect to other puts of that name, so of two writers racing
   with the same if_match exactly one wins (optimistic concurrency: read,
   digest, change, put with IF_MATCH, on TF_ECONFLICT read again).
   Excludes TF_PUT_IF_ABSENT (TF_EINVAL). */
#define TF_PUT_IF_MATCH 0x04u
/* The server sets the stored file's modification time to mtime_sec /
   mtime_nsec (as rsync -t), exactly to the nanosecond where its file
   system keeps them. mtime_nsec must be below 1000000000 (TF_EINVAL). */
#define TF_PUT_MTIME 0x08u
/* As TF_PUT_MTIME with the local file's modification time (tf_put_ex and
   tf_put_fd_ex; TF_EINVAL for tf_put_mem_ex). Wins over mtime_sec/nsec. */
#define TF_PUT_KEEP_MTIME 0x10u
/* The client hashes its source first (XXH3-128) and offers the digest;
   when the server already holds exactly those bytes under name, nothing
   is sent: the call returns TF_OK with *skipped = 1 (with TF_PUT_MTIME /
   KEEP_MTIME the server still sets the time). The same hash serves as the
   transfer's checksum when the bytes do go out, so the source is read
   once to hash it and once to send it, never hashed twice. The source must
   be seekable (tf_put_fd_ex on a pipe: TF_EINVAL). Conditions are checked
   before the comparison: IF_ABSENT on an existing file is TF_EEXIST even
   when its bytes are the same. */
#define TF_PUT_SKIP_SAME 0x20u

/*
 * The extra arguments of tf_put_ex and a tf_put_many item. The caller
 * allocates it; zero it whole before filling it in (a designated
 * initializer, memset or calloc), so that fields of later versions, placed
 * in the reserved room, take their defaults from the zero: a put whose
 * reserved room is not zero fails with TF_EINVAL. Same size within a major
 * version (64 bytes on 64-bit systems, 48 on 32-bit ones). NULL wherever a
 * const tf_put_args * is taken means a plain put (all zero).
 */
typedef struct tf_put_args {
    uint32_t flags;          /* TF_PUT_* bits; unknown bits: TF_EINVAL */
    uint32_t mtime_nsec;     /* with TF_PUT_MTIME: 0..999999999 */
    int64_t mtime_sec;       /* with TF_PUT_MTIME: seconds since the epoch */
    uint8_t if_match[16];    /* with TF_PUT_IF_MATCH: the expected XXH3-128 */
    void *reserved[4];       /* zero: room for later fields */
} tf_put_args;

/*
 * tf_put with extensions. args NULL (or all zero) is exactly tf_put.
 * skipped (may be NULL) is set to 1 when TF_PUT_SKIP_SAME found the bytes
 * already on the server and nothing was sent, else to 0.
 * Returns as tf_put, and: TF_EEXIST (TF_PUT_IF_ABSENT, name exists),
 * TF_ECONFLICT (TF_PUT_IF_MATCH, name does not hold that digest), TF_ENOENT
 * (a parent directory is missing and TF_PUT_PARENTS was not given),
 * TF_EINVAL (unknown flags, IF_ABSENT with IF_MATCH, mtime_nsec out of
 * range, reserved room not zero), TF_EPROTO without sending anything when a
 * flag is given and the server does not offer PUTX (an older server: see
 * tf_client_can_putx; c stays usable). Flags other than SKIP_SAME and
 * KEEP_MTIME are also taken by resumable puts (TF_OPT_RESUME).
 */
TF_API int tf_put_ex(tf_client *c, const char *local_path, const char *name,
                     const tf_put_args *args, int *skipped);
/* tf_put_fd with extensions; as tf_put_ex. */
TF_API int tf_put_fd_ex(tf_client *c, int fd, uint64_t size, const char *name,
                        const tf_put_args *args, int *skipped);
/* tf_put_mem with extensions; as tf_put_ex (no TF_PUT_KEEP_MTIME). */
TF_API int tf_put_mem_ex(tf_client *c, const void *data, size_t len, const char *name,
                         const tf_put_args *args, int *skipped);

/* The XXH3-128 digest of len bytes at data (NULL only when len is 0), in
   the canonical big-endian form TF_PUT_IF_MATCH takes: the digest of what
   tf_get_mem returned names that version for a later conditional put.
   Returns TF_OK, TF_EINVAL (out NULL, or data NULL with len > 0) or
   TF_ENOMEM. */
TF_API int tf_digest(const void *data, size_t len, uint8_t out[16]);

/* 1 when the server of c takes the put extensions (it offered the PUTX
   feature in the handshake), else 0 (c NULL too). */
TF_API int tf_client_can_putx(const tf_client *c);

/*
 * One upload of a tf_put_many batch. Allocated by the caller as an array;
 * zero every item before filling it in (as tf_get_item), so the reserved
 * room is zero (else the item fails with TF_EINVAL). Same size within a
 * major version (8 pointers, 2 ints, a u64: 88 bytes on 64-bit systems).
 *
 * The source is local_path when it is not NULL (as tf_put: the file is
 * opened when its turn comes, so a batch holds few descriptors open),
 * else size bytes read from fd at its current offset (as tf_put_fd; a
 * zeroed item has fd 0: set fd = -1 unless you mean a descriptor), else
 * (fd < 0) the size bytes at data. The local file must not change size
 * during the batch (if it does, that item fails with TF_EIO and stores
 * nothing).
 */
typedef struct tf_put_item {
    const char *local_path;  /* in: the file to upload; NULL: fd or data */
    const char *name;        /* in: the name on the server; NULL: the
                                basename of local_path */
    int fd;                  /* in: with local_path NULL, read from here; -1 none */
    int result;              /* out: TF_OK or this file's failure */
    uint64_t size;           /* in: bytes of fd or data (ignored for a path) */
    const void *data;        /* in: with local_path NULL and fd < 0: memory */
    const tf_put_args *args; /* in: extensions for this item; NULL: none */
    const char *message;     /* out: this item's failure message, "" on
                                success; owned by the client, valid until
                                the next call on it or tf_close */
    int skipped;             /* out: 1 when TF_PUT_SKIP_SAME found the bytes
                                already there (result TF_OK) */
    int reserved_int;        /* zero */
    void *reserved[3];       /* zero: room for later fields */
} tf_put_item;

/*
 * Uploads n files over the one connection without a round trip each: with
 * PUTX, each request goes out with its payload and trailer straight behind
 * it (no waiting for a go-ahead, docs/protocol.md "NO_GOAHEAD"), up to
 * TF_OPT_PIPELINE puts before their answers, which are read as they come
 * (never blocking on a send while an answer is owed). A file's own failure
 * (a bad name, TF_EEXIST, TF_ECONFLICT, TF_EACCES, TF_ETOOBIG, a local
 * TF_ENOENT / TF_EIO, TF_ECHECKSUM) is that item's result and does not stop
 * the others: the server reads and drops a refused item's payload. A
 * failure of the connection (TF_ENET, TF_ETIMEDOUT, TF_EPROTO,
 * TF_ECANCELED, TF_ENOMEM) ends the batch and becomes the result (and
 * message) of every item not finished; items whose answer had come are
 * stored, the others may or may not be (each is whole or absent, never
 * partial). Without PUTX on the server the items are put one after the
 * other (plain tf_put; an item with flags fails with TF_EPROTO).
 * Returns TF_OK when every item succeeded, else the result of the first
 * failed item in array order, with its message in tf_errmsg; TF_EINVAL
 * when c or items is NULL. No resuming. TF_PUT_SKIP_SAME in a batch hashes
 * the item's source first and offers the digest; an item over 64 KiB waits
 * for the server's first answer (one round trip, the answers owed before
 * it are read meanwhile): when the server holds the same bytes no payload
 * byte is sent and the item reports skipped, else its payload follows. A
 * smaller one sends its payload right behind, pipelined (cheaper than the
 * round trip), which the server drops when it holds the same bytes: the
 * item reports skipped all the same. Progress: as
 * tf_get_many (the item progress callback, else the plain one per item).
 */
TF_API int tf_put_many(tf_client *c, tf_put_item *items, size_t n);

/* Lists the server's regular files, sorted by name bytewise. *out is the
   caller's, released with tf_listing_free(); NULL on failure. Returns
   TF_OK, TF_EINVAL (c or out NULL), TF_ETOOBIG (more than the server's
   TF_OPT_MAX_LIST_ENTRIES, or a listing over this client's
   TF_OPT_MAX_MEMORY), TF_EIO (the server could not read its directory),
   TF_ENOMEM, TF_ENET, TF_ETIMEDOUT, TF_EPROTO, TF_ECHECKSUM. */
TF_API int tf_list(tf_client *c, tf_listing **out);

/* The number of entries in l (0 when l is NULL). */
TF_API size_t tf_listing_count(const tf_listing *l);
/* Entry i (< count), owned by l and valid until tf_listing_free(l); NULL
   when i is out of range or l is NULL. */
TF_API const tf_entry *tf_listing_at(const tf_listing *l, size_t i);
/* Frees l and every entry and name in it. NULL is fine. */
TF_API void tf_listing_free(tf_listing *l);

/* After TF_ENET, TF_ETIMEDOUT, TF_EPROTO, TF_ECANCELED or TF_ENOMEM in the
   middle of a request the connection is out of step and is closed: every
   later call on c returns TF_ENET, and the caller reconnects. Other
   failures (TF_ENOENT, TF_EINVAL, a local TF_EIO, ...) leave c usable; so
   does a failure status this version does not know, from a newer server:
   it gives TF_EINTERNAL, with "unknown error from the server (status N)"
   in tf_errmsg. */

/* Detail of c's last failure (the server's message when it sent one), ""
   after a success or when c is NULL. Valid until the next call on c. */
TF_API const char *tf_errmsg(const tf_client *c);

/* How the handshake went. With TF_OPT_EARLY_REQUESTS, reads the server's
   hello now if no call has read it yet; returns TF_OK, or what tf_connect
   would have returned (TF_EBUSY, TF_EPROTO, TF_EACCES, TF_ENET, ...; the
   message in tf_errmsg), the same every time after. Without early
   requests: TF_OK (tf_connect did it). TF_EINVAL when c is NULL. A program
   that reports a refusal apart from a failed request asks this after a
   call fails. */
TF_API int tf_client_handshake(tf_client *c);

/* The longest name, in bytes, that the server announced in the handshake
   it accepts; TF_EINVAL when c is NULL. (This and the other tf_client_*
   queries read a pending hello first, see TF_OPT_EARLY_REQUESTS.) */
TF_API int tf_client_max_name(const tf_client *c);

/* Closes the connection and frees c (and the strings tf_errmsg returned).
   NULL is fine. */
TF_API void tf_close(tf_client *c);

/* Frees memory the library handed out (tf_get_mem's *data), which may
   come from another allocator than the caller's free(). NULL is fine. */
TF_API void tf_free(void *p);

/* Checks that name is acceptable (one path component of 1..max_len bytes,
   valid UTF-8, no '/', no control characters, not "." or ".."); max_len 0
   means the default 255. Returns TF_OK or TF_EINVAL; when why is not NULL
   it receives a static sentence saying what is wrong. */
TF_API int tf_name_check(const char *name, size_t max_len, const char **why);

/* Copies len bytes of text (any bytes: a peer chose them) into out as
   something safe to print on a terminal or in a log line: bytes below 0x20,
   0x7f, the C1 controls U+0080..U+009F and every byte that is not part of
   valid UTF-8 become the four visible characters \xNN (ESC: \x1b); when
   quoted is not 0, " and \ become \" and \\ too. out is always NUL-terminated
   (out_len > 0) and truncated between whole characters when too small;
   4 * len + 1 bytes always suffice. Returns the length written. The library
   escapes the server's messages this way before they reach tf_errmsg. */
TF_API size_t tf_escape(char *out, size_t out_len, const void *text, size_t len,
                        int quoted);

/* ------------------------------------------------------------------------ */
/* The tree (feature TREE): paths, stat, mkdir, remove, rename, listing     */
/* ------------------------------------------------------------------------ */

/*
 * With a server that offers the TREE feature (tf_client_has_tree), every
 * name taken by the calls above (tf_get*, tf_put*, tf_get_many's items) and
 * below is a path: "a/b/c.txt", components separated by '/', each a valid
 * name (tf_name_check), no leading or trailing '/', no empty component, no
 * "." or "..", at most TF_OPT_MAX_DEPTH components and TF_OPT_MAX_PATH bytes
 * (the lower of this client's and the server's limits). A path breaking a
 * rule is TF_EINVAL; a path with ".tcpfile-tmp" as any component is
 * TF_EACCES. Paths are compared byte for byte (no Unicode normalisation).
 * Without TREE (an older server) names stay single components and the calls
 * below return TF_EPROTO at once, without sending anything; c stays usable.
 *
 * A get or put of a path needs its directories to exist on the server
 * (TF_ENOENT otherwise; TF_ENOTDIR when one of them is a file); tf_get with
 * local_path NULL stores into ./LAST, the path's last component. A get of a
 * directory is TF_EISDIR, and so is a put over one.
 */

/* 1 when the server of c speaks paths and the calls below (both hellos set
   the TREE feature), else 0 (c NULL too). */
TF_API int tf_client_has_tree(const tf_client *c);
/* The path limits c checks paths against before sending them: this
   client's TF_OPT_MAX_PATH, and the lower of the server's announced depth
   and this client's TF_OPT_MAX_DEPTH. TF_EINVAL when c is NULL; without
   TREE, max_path is tf_client_max_name and max_depth 1. */
TF_API int tf_client_max_path(const tf_client *c);
TF_API int tf_client_max_depth(const tf_client *c);

/* Checks that path is acceptable as a path of at most max_path bytes and
   max_depth components (0: the defaults 4096 and 64), each component at
   most max_name bytes (0: 255). Returns TF_OK, TF_EINVAL (a broken rule)
   or TF_EACCES (a ".tcpfile-tmp" component). When why is not NULL it
   receives, cut to why_len and NUL-terminated, the reason, naming the
   component by its number from 1 ("component 2 is \"..\""), "" on success. */
TF_API int tf_path_check(const char *path, size_t max_path, size_t max_depth, size_t max_name,
                         char *why, size_t why_len);

/* What tf_stat and tf_dir_next tell of a file or directory. */
typedef enum tf_ftype {
    TF_FTYPE_FILE = 1, /* a regular file */
    TF_FTYPE_DIR = 2   /* a directory */
} tf_ftype;

/*
 * The result of tf_stat. The caller allocates it (on the stack is fine):
 * the reserved room keeps its size the same within a major version, and
 * tf_stat zeroes all of it before filling it in.
 */
typedef struct tf_stat_info {
    int type;             /* TF_FTYPE_FILE or TF_FTYPE_DIR */
    int has_digest;       /* 1: digest holds the file's XXH3-128 */
    uint64_t size;        /* bytes; 0 for a directory */
    int64_t mtime;        /* last modification, seconds since the epoch */
    uint32_t mtime_nsec;  /* and nanoseconds, 0..999999999 (0 when the
                             server's storage has only seconds) */
    uint8_t digest[16];   /* XXH3-128 of the whole file, canonical
                             (big-endian) form, when has_digest */
    void *reserved[6];    /* zeroed: room for later fields */
} tf_stat_info;

/* tf_stat_ex flags */
#define TF_STAT_DIGEST 0x1u /* have the server compute the digest when it
                               does not know it yet (it reads the whole
                               file once; the result is remembered) */

/*
 * Tells what path is on the server: type, size, mtime and, for a file
 * whose digest the server already knows (it remembers one per version of
 * the file, computed by an earlier get or stat), the digest. "" is the
 * root. tf_stat_ex with TF_STAT_DIGEST always gets a file's digest,
 * computing it if need be (for a large file that takes a while; the
 * server's other connections are not held up). *out is zeroed first.
 * Returns TF_OK, TF_EINVAL (bad path, c or out NULL, unknown flags),
 * TF_ENOENT, TF_ENOTDIR (a component on the way is a file), TF_EACCES
 * (a symbolic link or special file anywhere on the way, ".tcpfile-tmp"),
 * TF_EIO, TF_EPROTO (no TREE: see tf_client_has_tree), TF_ENET,
 * TF_ETIMEDOUT.
 */
TF_API int tf_stat(tf_client *c, const char *path, tf_stat_info *out);
TF_API int tf_stat_ex(tf_client *c, const char *path, unsigned flags, tf_stat_info *out);

/* tf_mkdir flags */
#define TF_MKDIR_PARENTS 0x1u /* as mkdir -p: create missing parents; a
                                 directory that exists is no error */

/*
 * Creates the directory path on the server. Returns TF_OK, TF_EEXIST
 * (path exists: without TF_MKDIR_PARENTS whatever it is, with it only when
 * it, or a parent, is not a directory), TF_ENOENT (a parent is missing,
 * without TF_MKDIR_PARENTS), TF_ENOTDIR (a parent is a file, without
 * TF_MKDIR_PARENTS), TF_EACCES (read-only server, symbolic link on the
 * way, ".tcpfile-tmp"), TF_EINVAL, TF_ENOSPC, TF_EIO, TF_EPROTO (no TREE),
 * TF_ENET, TF_ETIMEDOUT.
 */
TF_API int tf_mkdir(tf_client *c, const char *path, unsigned flags);

/*
 * Removes the file, or the empty directory, path (a symbolic link is
 * refused, never followed nor removed). Returns TF_OK, TF_ENOENT,
 * TF_ENOTEMPTY (a directory with entries: remove those first, as rm -r
 * does), TF_ENOTDIR, TF_EACCES (read-only server, a symbolic link or
 * special file, ".tcpfile-tmp"), TF_EINVAL (bad path; "" the root),
 * TF_EIO, TF_EPROTO (no TREE), TF_ENET, TF_ETIMEDOUT.
 */
TF_API int tf_remove(tf_client *c, const char *path);

/* tf_rename flags */
#define TF_RENAME_NOREPLACE 0x1u /* fail with TF_EEXIST when `to` exists */

/*
 * Renames from to to on the server, atomically (a reader sees the old name
 * or the new, never neither, and a file replaced at `to` is replaced whole;
 * renameat2 within the root). A directory moves with its contents.
 * Returns TF_OK, TF_ENOENT (from missing, or to's directory missing),
 * TF_EEXIST (TF_RENAME_NOREPLACE and to exists), TF_EISDIR (a file over a
 * directory), TF_ENOTDIR (a directory over a file, or a component on the
 * way is a file), TF_ENOTEMPTY (a directory over a non-empty directory),
 * TF_EINVAL (bad path, the root, or a directory into itself), TF_EACCES
 * (read-only server, symbolic link, ".tcpfile-tmp"), TF_EIO, TF_EPROTO (no
 * TREE), TF_ENET, TF_ETIMEDOUT.
 */
TF_API int tf_rename(tf_client *c, const char *from, const char *to, unsigned flags);

/* A directory listing being read (tf_dir_open). */
typedef struct tf_dir tf_dir;

/* One entry of a directory listing, owned by its tf_dir and valid until
   the next tf_dir_next or tf_dir_close (never allocated by the caller, so
   fields may be appended in later minor versions). */
typedef struct tf_dirent {
    const char *path;    /* relative to the directory listed ("b/c.txt"
                            in a recursive listing), NUL-terminated */
    int type;            /* TF_FTYPE_FILE or TF_FTYPE_DIR */
    uint64_t size;       /* bytes; 0 for a directory */
    int64_t mtime;       /* seconds since the epoch */
    uint32_t mtime_nsec; /* and nanoseconds (0 when unknown) */
} tf_dirent;

/* tf_dir_open flags */
#define TF_LIST_RECURSIVE 0x1u /* walk the whole tree below path: each
                                  directory is followed by its contents
                                  (depth first) */

/*
 * Starts listing the directory path ("" or NULL: the root): its regular
 * files and directories (not symbolic links, special files nor
 * ".tcpfile-tmp"), in no particular order; with TF_LIST_RECURSIVE,
 * everything below it. The entries are streamed: neither the server nor
 * the client ever holds the whole listing, so a directory of millions of
 * entries lists in bounded memory. *out is the caller's, ended with
 * tf_dir_close. While it is open, every other call on c fails with
 * TF_EBUSY (the connection is carrying the listing). Returns TF_OK,
 * TF_EINVAL, TF_ENOENT, TF_ENOTDIR (path is a file), TF_EACCES, TF_EIO,
 * TF_EPROTO (no TREE), TF_ENET, TF_ETIMEDOUT, TF_ENOMEM; on failure *out
 * is NULL.
 */
TF_API int tf_dir_open(tf_client *c, const char *path, unsigned flags, tf_dir **out);

/*
 * The next entry: TF_OK with *ent set, or TF_OK with *ent NULL once the
 * listing has ended (and, with CHECKSUM, its digest checked); after that,
 * tf_dir_next keeps returning TF_OK with NULL. Or a failure: TF_EIO (the
 * server could not read a directory during the walk), TF_ECHECKSUM (the
 * listing was corrupted: discard what it gave), TF_EPROTO, TF_ENET,
 * TF_ETIMEDOUT, TF_EINVAL (d or ent NULL); the detail is in tf_errmsg of
 * the client. After a failure the listing is over.
 */
TF_API int tf_dir_next(tf_dir *d, const tf_dirent **ent);

/* Ends the listing and frees d; the client is usable again. A listing not
   read to its end is read and dropped first, to keep the connection in
   step (or, when that fails, the connection is closed: later calls on the
   client return TF_ENET). NULL is fine. */
TF_API void tf_dir_close(tf_dir *d);

/* ------------------------------------------------------------------------ */
/* Event-driven client: for programs with their own event loop, and for     */
/* many connections from one thread (after libcurl's multi interface and    */
/* hiredis' async context). Plaintext; gets and lists.                      */
/* ------------------------------------------------------------------------ */

/*
 * A tf_aclient never blocks on the network (only the name lookup in
 * tf_aclient_connect_start may, as getaddrinfo does; numeric addresses do
 * not). The caller waits for tf_aclient_events() on tf_aclient_fd() with
 * poll/select/epoll - level-triggered - for at most tf_aclient_timeout()
 * ms, then calls tf_aclient_step(), which does what it can without
 * blocking and calls the completion callbacks of the requests it finished.
 * Requests may be queued at once, even before the connection is up; they
 * go out pipelined (all of them on the wire at once) and complete in the
 * order they were queued. Everything happens in the thread that calls
 * step; a tf_aclient is used by one thread at a time.
 */
typedef struct tf_aclient tf_aclient;

/* tf_aclient_step's "not finished": positive, so never a TF_E* code. */
#define TF_INPROGRESS 1

/* tf_aclient_events bits: wait until the descriptor is readable /
   writable (POLLIN / POLLOUT, EPOLLIN / EPOLLOUT). */
#define TF_WANT_READ 1
#define TF_WANT_WRITE 2

/*
 * What a request came to, passed to its callback. The library owns it; it
 * is valid only during the call, except what the callback takes: it may
 * keep data (tf_aclient_get_mem) or listing (tf_aclient_list) by copying
 * the pointer and setting the field to NULL, and then frees it with
 * tf_free / tf_listing_free; what it leaves is freed after the call.
 */
typedef struct tf_aresult {
    int result;          /* TF_OK or the request's failure (as tf_get_mem's
                            and tf_list's codes; TF_ECANCELED when the
                            client was closed first) */
    const char *message; /* "" on success, else the detail */
    const char *name;    /* the name asked for; "" for a list */
    void *data;          /* get_mem: the file's bytes (NUL-terminated one
                            past len), NULL on failure */
    size_t len;          /* get_mem: its length */
    uint64_t size;       /* get_mem / get_fd / list: payload bytes received */
    tf_listing *listing; /* list: the listing, NULL on failure */
    void *reserved[4];   /* room for later fields */
} tf_aresult;

/* Called once for each request queued with TF_OK, from tf_aclient_step
   (or tf_aclient_close). It may queue more requests on a, and may call
   tf_aclient_close(a): the other requests are then cancelled, and a is
   freed when the step returns, which then returns TF_ECANCELED. */
typedef void (*tf_acallback)(tf_aclient *a, void *user, tf_aresult *r);

/*
 * Starts connecting to host:port: resolves the name, opens a non-blocking
 * socket and queues the handshake. *out is the caller's, released with
 * tf_aclient_close. opt as tf_connect (copied; TF_OPT_CONNECT_TIMEOUT_MS,
 * TF_OPT_IO_TIMEOUT_MS, TF_OPT_CHECKSUM, TF_OPT_MAX_MEMORY are used).
 * Plaintext only: TF_OPT_TLS set in opt gives TF_EINVAL, never a
 * connection in clear.
 * Returns TF_OK (the connect goes on in tf_aclient_step), TF_EINVAL,
 * TF_ERESOLVE, TF_ECONNREFUSED or TF_ENET (when the refusal is immediate),
 * TF_ENOMEM; on failure *out is NULL and errbuf (may be NULL) gets the
 * detail, NUL-terminated, truncated to errlen.
 */
TF_API int tf_aclient_connect_start(tf_aclient **out, const char *host, const char *port,
                                    const tf_options *opt, char *errbuf, size_t errlen);

/* The socket to wait on; -1 once the connection has failed (or a NULL). */
TF_API int tf_aclient_fd(const tf_aclient *a);
/* TF_WANT_READ and/or TF_WANT_WRITE: what the next step waits for; 0 once
   the connection has failed. While connected it always wants to read, so
   that a server closing the connection is noticed. */
TF_API int tf_aclient_events(const tf_aclient *a);
/* Milliseconds until tf_aclient_step must be called even without an
   event (a connect or I/O timeout falls due then), 0 when overdue, -1 when
   no timeout is running. */
TF_API int tf_aclient_timeout(const tf_aclient *a);

/*
 * Does what can be done without blocking: connects, sends queued requests,
 * reads responses and completes requests through their callbacks. Returns
 * TF_OK when connected with no request outstanding, TF_INPROGRESS when
 * something is still under way (wait for tf_aclient_events and call again),
 * or the connection's failure (TF_ENET, TF_ECONNREFUSED, TF_ETIMEDOUT,
 * TF_EPROTO, TF_EBUSY, TF_ENOMEM, ...): then every outstanding request has
 * been completed with that code, the socket is closed, and later steps and
 * requests return TF_ENET. TF_EINVAL for a NULL a.
 */
TF_API int tf_aclient_step(tf_aclient *a);

/*
 * Queue a request; cb (not NULL) is called once with its result. Returns
 * TF_OK, TF_EINVAL (a NULL argument, a bad name, fd < 0), TF_ENET (the
 * connection has failed), TF_ENOMEM; cb is then never called.
 * get_mem: the file into memory (TF_OPT_MAX_MEMORY caps it: TF_ETOOBIG,
 *   the connection stays usable).
 * get_fd: the file written to fd, from its position, inside
 *   tf_aclient_step (a regular file or a blocking descriptor; fd stays the
 *   caller's). r->size says how many bytes came. A failure writing fd
 *   (TF_EIO, TF_ENOSPC) fails that request only.
 * list: the server's listing (r->listing).
 * A failing request (TF_ENOENT, TF_EACCES, TF_ECHECKSUM, ...) leaves the
 * connection usable; a connection failure completes every request.
 */
TF_API int tf_aclient_get_mem(tf_aclient *a, const char *name, tf_acallback cb, void *user);
TF_API int tf_aclient_get_fd(tf_aclient *a, const char *name, int fd, tf_acallback cb,
                             void *user);
TF_API int tf_aclient_list(tf_aclient *a, tf_acallback cb, void *user);

/* Requests queued and not yet completed (0 for NULL). */
TF_API size_t tf_aclient_pending(const tf_aclient *a);
/* Detail of the connection's failure, "" while it is fine or a is NULL.
   Valid until the next call on a. */
TF_API const char *tf_aclient_errmsg(const tf_aclient *a);
/* Closes the connection; each outstanding request's callback is called
   with TF_ECANCELED first. Then frees a (at the end of the step when
   called from a callback). NULL is fine. */
TF_API void tf_aclient_close(tf_aclient *a);

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct tf_server tf_server;

/*
 * Opens a server for the directory root, listening on host:port. host NULL
 * listens on every address, IPv4 and IPv6; port "0" picks a free port (see
 * tf_server_port). Nothing is served until tf_server_run.
 * Returns TF_OK, TF_EINVAL, TF_ENOENT / TF_EACCES (root unusable), TF_ENET
 * (cannot bind: in use, bad address), TF_ENOMEM. On success *out is the
 * caller's, released with tf_server_close; on failure it is NULL. opt NULL
 * means the defaults; it is copied, see tf_options_free.
 * tf_server_open_ex also copies the detail of a failure into errbuf
 * (NUL-terminated, truncated to errlen; errbuf may be NULL).
 */
TF_API int tf_server_open(tf_server **out, const char *host, const char *port,
                          const char *root, const tf_options *opt);
TF_API int tf_server_open_ex(tf_server **out, const char *host, const char *port,
                             const char *root, const tf_options *opt,
                             char *errbuf, size_t errlen);

/* The bound port (useful after port "0"), or TF_EINVAL (s NULL, or no
   longer listening after tf_server_run returned), TF_ENET. */
TF_API int tf_server_port(const tf_server *s);

/* A TLS server's identity as users check it: "SHA256:" and the base64
   SHA-256 of its certificate's public key (SPKI), as ssh prints host keys,
   NUL-terminated into buf of len bytes (64 is always enough). Returns
   TF_OK, or TF_EINVAL (s or buf NULL, buf too small, a plaintext server). */
TF_API int tf_server_fingerprint(const tf_server *s, char *buf, size_t len);

/* Writes the numeric address of the first listening socket ("0.0.0.0",
   "::", "127.0.0.1"), NUL-terminated, into buf of len bytes (64 is always
   enough). Returns TF_OK, TF_EINVAL (s or buf NULL, buf too small, not
   listening), TF_ENET. */
TF_API int tf_server_address(const tf_server *s, char *buf, size_t len);

/* The same for listening socket i, from 0: a server opened with host NULL
   listens on "0.0.0.0" and on "::" where IPv6 is available, so that a
   banner can name every address. Returns TF_OK, TF_EINVAL (as above, or i
   at or past the number of listening sockets: the loop's end), TF_ENET. */
TF_API int tf_server_address_at(const tf_server *s, size_t i, char *buf, size_t len);

/* Serves clients on the calling thread and worker threads (TF_OPT_WORKERS)
   until tf_server_stop; then accepts no new connection, gives requests in
   flight up to TF_OPT_STOP_GRACE_MS to finish, closes its listening sockets
   and returns (after the storage calls still running, one file-system or
   store call each, have returned: TF_OPT_DISK_THREADS). Call it once per
   server. Returns TF_OK after a stop,
   TF_EINVAL when s is NULL, or a negative code (TF_ENOMEM, ...) if serving
   failed. */
TF_API int tf_server_run(tf_server *s);

/* Asks tf_server_run to return: no new connections are accepted, requests
   in flight get TF_OPT_STOP_GRACE_MS to finish. Async-signal-safe; may be
   called from any thread, before or during tf_server_run. */
TF_API void tf_server_stop(tf_server *s);

/* Frees the server (after tf_server_run has returned, or if it never ran).
   NULL is fine. */
TF_API void tf_server_close(tf_server *s);

/* The server's own error channel: the detail of why the last
   tf_server_run on s failed (the first message of the failure, with errno
   text where there is one), "" when it did not. Valid until the next
   tf_server_run or tf_server_close; read it after tf_server_run returned,
   not while it runs. Failures of single requests do not land here: they go
   to the log callback (tf_request_log). A failed tf_server_open has no
   handle: tf_server_open_ex's errbuf carries its detail. NULL gives "". */
TF_API const char *tf_server_errmsg(const tf_server *s);

/* ------------------------------------------------------------------------ */
/* Users (issue 13)                                                         */
/* ------------------------------------------------------------------------ */

/* A server opened with TF_SOPT_USERS_FILE serves only the users in that
   file, each with its right (read: get, list; write: also put and every
   change) and, optionally, confined to a sub-directory of the root; a
   client logs in with TF_SOPT_USER and TF_SOPT_TOKEN at tf_connect. */

/* Characters of a token as tf_users_add writes it (192 random bits in
   base64url), and the room it needs with its NUL. */
#define TF_TOKEN_LEN 32
#define TF_TOKEN_SIZE 33

/* The users file opt names: TF_SOPT_USERS_FILE, else "users" in
   TF_SOPT_STATE_DIR, else in the default state directory
   ($XDG_STATE_HOME/tcpfile when XDG_STATE_HOME is an absolute path, else
   $HOME/.local/state/tcpfile). opt may be NULL. Writes it NUL-terminated
   to buf. Returns TF_OK, TF_EINVAL (buf too small, or neither variable
   set). Creates nothing. */
TF_API int tf_users_file_path(const tf_options *opt, char *buf, size_t cap);

/* Adds the user name, or replaces it (its old token stops working: at
   once for a server that re-reads the file, tf_server_reload_users, else
   at its next start), in the users file that tf_users_file_path names
   (created 0600, its directory 0700, when missing). access is "read" or
   "write"; dir NULL, "" or "-" for the whole root, else a relative
   sub-directory ("team/alice") that is the user's whole world. A new
   random token is written to token (cap >= TF_TOKEN_SIZE), NUL-terminated:
   show it once, then wipe it; only a salted scrypt hash of it is stored.
   Returns TF_OK, TF_EINVAL (a bad name, access or dir, or a users file
   that does not parse: it is not rewritten), TF_EACCES, TF_EIO,
   TF_ENOSPC, TF_ENOMEM; errbuf (may be NULL) receives why. */
TF_API int tf_users_add(const tf_options *opt, const char *name, const char *access,
                        const char *dir, char *token, size_t cap, char *errbuf, size_t errlen);

/* The same for a machine: the user logs in with the client certificate
   in the PEM file cert_file (mutual TLS, TF_SOPT_TLS_CLIENT_CERT on the
   client) and has no token. Only the fingerprint of the certificate's
   public key (SPKI, "SHA256:...") is stored; it is written to fingerprint
   (may be NULL; cap >= 51 holds it). A connection presenting that
   certificate is this user from its first byte, without a login; a
   certificate is one user's only. Adding the user again with another
   certificate replaces it (rotation). Returns as tf_users_add, and
   TF_ENOENT / TF_EINVAL for a missing or unreadable certificate file or a
   certificate that is already another user's. */
TF_API int tf_users_add_cert(const tf_options *opt, const char *name, const char *access,
                             const char *dir, const char *cert_file, char *fingerprint,
                             size_t cap, char *errbuf, size_t errlen);

/* How many users the server serves: >= 0, or TF_ENOENT when it has no
   users file (everyone is served), TF_EINVAL for NULL. */
TF_API int tf_server_user_count(const tf_server *s);

/* Reads the server's users file again: logins from now on use it (a
   replaced token stops working, a removed user can no longer log in;
   connections already logged in keep their user). On failure (the file
   does not parse, ...) the users in use are kept and errbuf says why.
   Returns TF_OK, TF_ENOENT (no users file was given at open), or the
   failure's code. Thread-safe, while the server runs; not async-signal-
   safe (call it from a thread that waits for SIGHUP, not a handler). */
TF_API int tf_server_reload_users(tf_server *s, char *errbuf, size_t errlen);

/* tf_server_open + tf_server_run + tf_server_close in one call: serves
   until the process ends or serving fails, with nothing to stop it by (use
   the three calls for a clean stop). Returns what tf_server_open returned,
   or what tf_server_run did. tf_serve_ex also copies the detail of a
   failure (tf_server_open_ex's errbuf, or tf_server_errmsg after a failed
   run) into errbuf (NUL-terminated, truncated to errlen; errbuf may be
   NULL; "" on success). */
TF_API int tf_serve(const char *host, const char *port, const char *root,
                    const tf_options *opt);
TF_API int tf_serve_ex(const char *host, const char *port, const char *root,
                       const tf_options *opt, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* TCPFILE_H */
