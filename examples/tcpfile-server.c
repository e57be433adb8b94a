/*
 * tcpfile-server - serves one directory to tcpfile clients.
 *
 *   tcpfile-server [OPTIONS] PORT [ROOT]
 *   tcpfile-server [OPTIONS] --store s3://BUCKET[/PREFIX] --s3-endpoint URL PORT
 *
 * A thin user of the public API (tcpfile.h only): parse the command line
 * into tf_options, open the server, print where it listens, log each
 * request on stdout, and stop cleanly on SIGINT or SIGTERM.
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <limits.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_parse.h"
#include "tcpfile.h"

#define PROG "tcpfile-server"

/* Exit statuses, as documented in --help. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };
/* parse_args: run the server (anything else is an exit status). */
#define PARSE_RUN (-1)

typedef struct server_args {
    const char *bind; /* NULL: every address, IPv4 and IPv6 */
    const char *port;
    const char *root;
    const char *store; /* --store s3://...: served instead of root */
    const char *endpoint;
    int quiet;
    tf_options *opt;
    /* Users: --add-user NAME --access read|write [--dir SUBDIR] adds one and
       exits; --users FILE names the file (default: in the state directory). */
    const char *add_user;
    const char *access;
    const char *dir;
    const char *client_cert; /* --client-cert FILE: a machine, no token */
    int users_given;
} server_args;

/* The signal handler needs the server, and a handler gets no user pointer. */
static tf_server *g_server;

static void usage(FILE *to)
{
    fprintf(to,
            "Usage: " PROG " [OPTIONS] PORT [ROOT]\n"
            "       " PROG " [OPTIONS] --store s3://BUCKET[/PREFIX] --s3-endpoint URL PORT\n"
            "Serve the regular files of directory ROOT (default: the current\n"
            "directory), or of an S3 bucket, to tcpfile-client over TCP. PORT 0\n"
            "picks a free port.\n"
            "\n"
            "Options (anywhere on the line; \"--\" ends them):\n"
            "  -b, --bind ADDR          listen on ADDR only (default: every address,\n"
            "                           IPv4 and IPv6)\n"
            "      --max-name N         longest file name in bytes, 1..4096 (default 255)\n"
            "      --max-depth N        most components of a path (a/b/c: 3), 1..2048\n"
            "                           (default 64)\n"
            "      --max-path N         longest path in bytes, 1..4096 (default 4096)\n"
            "      --max-connections N  clients served at once; more are told the\n"
            "                           server is busy (default 1024)\n"
            "      --max-upload BYTES   largest upload accepted; K, M, G, T suffixes\n"
            "                           multiply by 1024 (default: no limit)\n"
            "      --workers N          worker threads, 0..1024; 0 = one per online\n"
            "                           CPU (default 0)\n"
            "      --disk-threads N     threads for the storage's blocking work\n"
            "                           (open, hash, fsync, rename, scans), shared\n"
            "                           by the workers, 0..64; 0 = 4, 16 with\n"
            "                           --store s3:// (default 0)\n"
            "      --get-ahead N        with --store s3://: pipelined gets of one\n"
            "                           connection opened at once, ahead of their\n"
            "                           turn (answers stay in order), 0..64 (default 8)\n"
            "      --small-cache BYTES  memory each worker keeps files of 16 KiB or\n"
            "                           less in, with their checksums, checked by a\n"
            "                           stat on every use; K, M, G suffixes; 0 = off\n"
            "                           (default 4M)\n"
            "      --idle-timeout SECONDS\n"
            "                           close a connection that sends no request for\n"
            "                           SECONDS (decimals allowed); 0 = never\n"
            "                           (default 300)\n"
            "      --min-rate BYTES     least bytes per second a request in flight must\n"
            "                           move, else it is cut off; K, M, G, T suffixes\n"
            "                           multiply by 1024; 0 = no minimum (default 1K)\n"
            "      --max-partials N     interrupted uploads kept for resuming; the\n"
            "                           oldest go first; 0 = none (default 64)\n"
            "      --stop-grace SECONDS on SIGINT or SIGTERM, how long requests in\n"
            "                           flight may take to finish before they are cut\n"
            "                           off (decimals allowed; default 5)\n"
            "      --tls-cert FILE      the server's TLS certificate (PEM, the chain\n"
            "                           after it); with --tls-key\n"
            "      --tls-key FILE       its private key (PEM, unencrypted)\n"
            "      --state-dir DIR      where the server keeps the TLS identity it\n"
            "                           makes on its first start when no --tls-cert is\n"
            "                           given (default $XDG_STATE_HOME/tcpfile, else\n"
            "                           ~/.local/state/tcpfile)\n"
            "      --plaintext          no TLS: for loopback and trusted networks\n"
            "                           only; clients need --plaintext too\n"
            "      --store s3://BUCKET[/PREFIX]\n"
            "                           serve that bucket (under PREFIX) of an\n"
            "                           S3-compatible store instead of a directory;\n"
            "                           credentials from AWS_ACCESS_KEY_ID and\n"
            "                           AWS_SECRET_ACCESS_KEY, else AWS_PROFILE in\n"
            "                           AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials)\n"
            "      --s3-endpoint URL    the store's address, http://HOST:PORT or https://\n"
            "      --s3-region R        the region requests are signed for (default\n"
            "                           us-east-1)\n"
            "      --read-only          refuse every upload\n"
            "      --no-overwrite       refuse uploads over an existing file\n"
            "      --users FILE         serve only the users in FILE (default: the file\n"
            "                           \"users\" in the state directory, when it exists;\n"
            "                           with none, anyone who can connect is served)\n"
            "      --add-user NAME      add user NAME (or give it a new token) in the\n"
            "                           users file, print its token alone on one line,\n"
            "                           and exit; with --access read|write (required)\n"
            "                           and --dir SUBDIR (the part of ROOT that is the\n"
            "                           user's whole world; default: all of it)\n"
            "      --client-cert FILE   with --add-user: the user is a machine that\n"
            "                           logs in with the client certificate in FILE\n"
            "                           (PEM; tcpfile-client --cert/--key) and gets no\n"
            "                           token; its fingerprint is printed instead\n"
            "  -q, --quiet              do not print a line per request\n"
            "  -h, --help               print this help and exit\n"
            "      --version            print the library version and exit\n"
            "\n"
            "SIGINT or SIGTERM stops the server: requests in flight get a few\n"
            "seconds (--stop-grace) to finish, and those cut off are logged as such.\n"
            "A second signal ends it at once. SIGHUP reads the users file again: a\n"
            "user given a new token with --add-user can use only the new one from\n"
            "then on.\n"
            "Exit status: 0 after a clean stop, 1 if serving failed, 2 for a usage\n"
            "error.\n");
}

/* Every usage error is one line on stderr, pointing at --help. */
static int usage_error(const char *what, const char *arg)
{
    return cli_usage_error(PROG, what, arg);
}

/* How an option's value is written on the command line. */
typedef enum value_kind {
    COUNT,   /* a non-negative number */
    BYTES,   /* the same, with an optional K, M, G or T suffix */
    SECONDS, /* seconds with optional decimals, for a millisecond option */
} value_kind;

/* Sets a numeric option from its command-line text; the library knows the
   valid range, so an out-of-range value is reported as its refusal. */
static int set_number(tf_options *opt, tf_option key, const char *flag, const char *arg,
                      value_kind kind)
{
    int64_t v;
    char what[64];
    int bad = kind == SECONDS ? cli_parse_seconds(arg, &v)
                              : cli_parse_number(arg, kind == BYTES, &v);
    if (bad) {
        snprintf(what, sizeof what, "%s needs %s, not", flag,
                 kind == SECONDS ? "a number of seconds" : "a non-negative number");
        return usage_error(what, arg);
    }
    if (tf_options_set(opt, key, v) != TF_OK) {
        snprintf(what, sizeof what, "%s: value out of range:", flag);
        return usage_error(what, arg);
    }
    return PARSE_RUN;
}

/* ---- request log --------------------------------------------------------- */

static void log_request(void *user, const tf_request_log *e)
{
    (void)user;
    /* Sized for the longest name the library accepts (4096 bytes), each
       byte possibly escaped to four. The server's worker threads have stack
       to spare for this; a static buffer would need a lock. */
    char name[4 * 4096 + 1];
    char message[4 * 512 + 1];
    char when[32] = "?";
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    if (gmtime_r(&now.tv_sec, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* A peer chooses these bytes: escaped, they cannot forge log lines or
       drive the terminal. */
    tf_escape(name, sizeof name, e->name, strlen(e->name), 1);
    tf_escape(message, sizeof message, e->message, strlen(e->message), 0);
    /* Who, on a server with users: "127.0.0.1:5000 user alice get ...". */
    char who[4 * 64 + 8] = "";
    if (e->user && e->user[0]) {
        memcpy(who, " user ", 7);
        tf_escape(who + 6, sizeof who - 6, e->user, strlen(e->user), 0);
    }
    const char *shown = e->name[0] ? name : "-";
    int quote = e->name[0] != '\0';
    /* A rename shows both paths: rename "a" -> "b". */
    char to[4 * 4096 + 8] = "";
    if (e->to && e->to[0]) {
        memcpy(to, " -> \"", 5);
        size_t k = 5 + tf_escape(to + 5, sizeof to - 6, e->to, strlen(e->to), 1);
        memcpy(to + k, "\"", 2);
    }
    /* One printf per line: stdio locks stdout for the whole call, so lines
       written by several worker threads at once never interleave. */
    if (e->result == TF_OK)
        printf("%s %s%s %s %s%s%s%s ok %" PRIu64 " bytes %.3f s\n", when, e->peer, who, e->op,
               quote ? "\"" : "", shown, quote ? "\"" : "", to, e->bytes, e->seconds);
    else
        printf("%s %s%s %s %s%s%s%s failed %" PRIu64 " bytes %.3f s: %s%s%s%s\n", when,
               e->peer, who, e->op, quote ? "\"" : "", shown, quote ? "\"" : "", to, e->bytes,
               e->seconds,
               tf_strerror(e->result), message[0] ? " (" : "", message,
               message[0] ? ")" : "");
}

/* ---- command line -------------------------------------------------------- */

enum {
    OPT_MAX_NAME = 256,
    OPT_MAX_DEPTH,
    OPT_MAX_PATH,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_UPLOAD,
    OPT_WORKERS,
    OPT_DISK_THREADS,
    OPT_GET_AHEAD,
    OPT_SMALL_CACHE,
    OPT_IDLE_TIMEOUT,
    OPT_MIN_RATE,
    OPT_MAX_PARTIALS,
    OPT_STOP_GRACE,
    OPT_READ_ONLY,
    OPT_NO_OVERWRITE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_STATE_DIR,
    OPT_PLAINTEXT,
    OPT_USERS,
    OPT_ADD_USER,
    OPT_ACCESS,
    OPT_DIR,
    OPT_CLIENT_CERT,
    OPT_STORE,
    OPT_S3_ENDPOINT,
    OPT_S3_REGION,
    OPT_HELP,
    OPT_VERSION
};

/* Fills *a from argv. Returns PARSE_RUN, or the status to exit with. The
   caller frees a->opt in every case. */
static int parse_args(int argc, char **argv, server_args *a)
{
    static const struct option longopts[] = {
        {"bind", required_argument, NULL, 'b'},
        {"max-name", required_argument, NULL, OPT_MAX_NAME},
        {"max-depth", required_argument, NULL, OPT_MAX_DEPTH},
        {"max-path", required_argument, NULL, OPT_MAX_PATH},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"max-upload", required_argument, NULL, OPT_MAX_UPLOAD},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"disk-threads", required_argument, NULL, OPT_DISK_THREADS},
        {"get-ahead", required_argument, NULL, OPT_GET_AHEAD},
        {"small-cache", required_argument, NULL, OPT_SMALL_CACHE},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"min-rate", required_argument, NULL, OPT_MIN_RATE},
        {"max-partials", required_argument, NULL, OPT_MAX_PARTIALS},
        {"stop-grace", required_argument, NULL, OPT_STOP_GRACE},
        {"read-only", no_argument, NULL, OPT_READ_ONLY},
        {"no-overwrite", no_argument, NULL, OPT_NO_OVERWRITE},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"plaintext", no_argument, NULL, OPT_PLAINTEXT},
        {"users", required_argument, NULL, OPT_USERS},
        {"add-user", required_argument, NULL, OPT_ADD_USER},
        {"access", required_argument, NULL, OPT_ACCESS},
        {"dir", required_argument, NULL, OPT_DIR},
        {"client-cert", required_argument, NULL, OPT_CLIENT_CERT},
        {"store", required_argument, NULL, OPT_STORE},
        {"s3-endpoint", required_argument, NULL, OPT_S3_ENDPOINT},
        {"s3-region", required_argument, NULL, OPT_S3_REGION},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    a->root = ".";
    if (tf_options_new(&a->opt) != TF_OK) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    /* Options may follow PORT and ROOT too (getopt permutes; "--" ends
       them); ':': we print the one-line errors ourselves instead of
       getopt's. */
    opterr = 0;
    /* TLS unless --plaintext: the library's default is plaintext only for
       programs written before TLS. */
    tf_options_set(a->opt, TF_OPT_TLS, 1);
    int ch, status = PARSE_RUN;
    while (status == PARSE_RUN &&
           (ch = getopt_long(argc, argv, ":b:qh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            a->bind = optarg;
            break;
        case 'q':
            a->quiet = 1;
            break;
        case OPT_MAX_NAME:
            status = set_number(a->opt, TF_OPT_MAX_NAME_LEN, "--max-name", optarg, COUNT);
            break;
        case OPT_MAX_DEPTH:
            status = set_number(a->opt, TF_OPT_MAX_DEPTH, "--max-depth", optarg, COUNT);
            break;
        case OPT_MAX_PATH:
            status = set_number(a->opt, TF_OPT_MAX_PATH, "--max-path", optarg, COUNT);
            break;
        case OPT_MAX_CONNECTIONS:
            status = set_number(a->opt, TF_OPT_MAX_CONNECTIONS, "--max-connections", optarg,
                                COUNT);
            break;
        case OPT_MAX_UPLOAD:
            status = set_number(a->opt, TF_OPT_MAX_UPLOAD, "--max-upload", optarg, BYTES);
            break;
        case OPT_WORKERS:
            status = set_number(a->opt, TF_OPT_WORKERS, "--workers", optarg, COUNT);
            break;
        case OPT_DISK_THREADS:
            status = set_number(a->opt, TF_OPT_DISK_THREADS, "--disk-threads", optarg, COUNT);
            break;
        case OPT_GET_AHEAD:
            status = set_number(a->opt, TF_OPT_GET_AHEAD, "--get-ahead", optarg, COUNT);
            break;
        case OPT_SMALL_CACHE:
            status = set_number(a->opt, TF_OPT_SMALL_CACHE, "--small-cache", optarg, BYTES);
            break;
        case OPT_IDLE_TIMEOUT:
            status = set_number(a->opt, TF_OPT_IDLE_TIMEOUT_MS, "--idle-timeout", optarg,
                                SECONDS);
            break;
        case OPT_MIN_RATE:
            status = set_number(a->opt, TF_OPT_MIN_RATE, "--min-rate", optarg, BYTES);
            break;
        case OPT_MAX_PARTIALS:
            status = set_number(a->opt, TF_OPT_MAX_PARTIALS, "--max-partials", optarg, COUNT);
            break;
        case OPT_STOP_GRACE:
            status = set_number(a->opt, TF_OPT_STOP_GRACE_MS, "--stop-grace", optarg,
                                SECONDS);
            break;
        case OPT_READ_ONLY:
            tf_options_set(a->opt, TF_OPT_READ_ONLY, 1);
            break;
        case OPT_NO_OVERWRITE:
            tf_options_set(a->opt, TF_OPT_OVERWRITE, 0);
            break;
        case OPT_TLS_CERT:
        case OPT_TLS_KEY:
        case OPT_STATE_DIR:
            if (tf_options_set_string(a->opt,
                                      ch == OPT_TLS_CERT  ? TF_SOPT_TLS_CERT
                                      : ch == OPT_TLS_KEY ? TF_SOPT_TLS_KEY
                                                          : TF_SOPT_STATE_DIR,
                                      optarg) != TF_OK)
                return usage_error("path too long:", optarg);
            break;
        case OPT_PLAINTEXT:
            tf_options_set(a->opt, TF_OPT_TLS, 0);
            break;
        case OPT_USERS:
            if (tf_options_set_string(a->opt, TF_SOPT_USERS_FILE, optarg) != TF_OK)
                return usage_error("--users FILE: the path is too long:", optarg);
            a->users_given = 1;
            break;
        case OPT_ADD_USER:
            a->add_user = optarg;
            break;
        case OPT_ACCESS:
            if (strcmp(optarg, "read") != 0 && strcmp(optarg, "write") != 0)
                return usage_error("--access is read or write, not", optarg);
            a->access = optarg;
            break;
        case OPT_DIR:
            a->dir = optarg;
            break;
        case OPT_CLIENT_CERT:
            a->client_cert = optarg;
            break;
        case OPT_STORE:
        case OPT_S3_ENDPOINT:
        case OPT_S3_REGION:
            if (ch == OPT_STORE && strncmp(optarg, "s3://", 5) != 0)
                return usage_error("--store takes s3://BUCKET[/PREFIX], not", optarg);
            if (tf_options_set_string(a->opt,
                                      ch == OPT_STORE         ? TF_SOPT_S3_STORE
                                      : ch == OPT_S3_ENDPOINT ? TF_SOPT_S3_ENDPOINT
                                                              : TF_SOPT_S3_REGION,
                                      optarg) != TF_OK)
                return usage_error("value too long:", optarg);
            if (ch == OPT_STORE)
                a->store = optarg;
            else if (ch == OPT_S3_ENDPOINT)
                a->endpoint = optarg;
            break;
        case 'h':
        case OPT_HELP:
            usage(stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf(PROG " %s\n", tf_version_string());
            return EXIT_OK;
        default: /* ':' (a missing value) or '?' (an unknown option) */
            return cli_option_error(PROG, ch, argv);
        }
    }
    if (status != PARSE_RUN)
        return status;
    int left = argc - optind;
    if (a->add_user) {
        if (!a->access)
            return usage_error("--add-user NAME needs --access read or --access write", NULL);
        if (left > 0)
            return usage_error("--add-user takes no PORT or ROOT, not", argv[optind]);
        return PARSE_RUN;
    }
    if (a->access || a->dir || a->client_cert)
        return usage_error(a->access ? "--access goes with --add-user NAME"
                           : a->dir  ? "--dir goes with --add-user NAME"
                                     : "--client-cert goes with --add-user NAME",
                           NULL);
    if (left < 1)
        return usage_error("missing PORT", NULL);
    if (left > 2)
        return usage_error("too many arguments, starting at", argv[optind + 2]);
    a->port = argv[optind];
    /* A number 0..65535: getaddrinfo would also take service names and say
       little about a typo, so be strict and specific here. */
    int64_t port;
    if (cli_parse_int(a->port, 0, 65535, &port) != 0)
        return usage_error("PORT must be a number from 0 to 65535, not", a->port);
    if (left == 2 && a->store)
        return usage_error("--store serves a bucket, not a directory too:", argv[optind + 1]);
    if (a->store && !a->endpoint)
        return usage_error("--store needs --s3-endpoint URL", NULL);
    if (left == 2)
        a->root = argv[optind + 1];
    if (!a->quiet)
        tf_options_set_log(a->opt, log_request, NULL);
    return PARSE_RUN;
}

/* ---- users ---------------------------------------------------------------- */

/* --add-user: the token alone on stdout (for a script to capture), the
   rest on stderr. */
static int add_user(const server_args *a)
{
    char token[TF_TOKEN_SIZE], path[4096] = "?", err[512];
    tf_users_file_path(a->opt, path, sizeof path);
    if (a->client_cert) {
        /* A machine: its certificate's fingerprint on stdout, no token. */
        char fp[64];
        int rc = tf_users_add_cert(a->opt, a->add_user, a->access, a->dir, a->client_cert,
                                   fp, sizeof fp, err, sizeof err);
        if (rc != TF_OK) {
            fprintf(stderr, PROG ": --add-user %s: %s (%s)\n", a->add_user, tf_strerror(rc),
                    err);
            return rc == TF_EINVAL ? EXIT_USAGE : EXIT_FAILED;
        }
        printf("%s\n", fp);
        fprintf(stderr,
                PROG
                ": user %s (%s access%s%s) in %s logs in with the client certificate %s"
                " (fingerprint above), without a token. A running server uses it after"
                " SIGHUP or a restart.\n",
                a->add_user, a->access, a->dir ? ", directory " : "", a->dir ? a->dir : "",
                path, a->client_cert);
        return EXIT_OK;
    }
    int rc = tf_users_add(a->opt, a->add_user, a->access, a->dir, token, sizeof token, err,
                          sizeof err);
    if (rc != TF_OK) {
        fprintf(stderr, PROG ": --add-user %s: %s (%s)\n", a->add_user, tf_strerror(rc), err);
        return rc == TF_EINVAL ? EXIT_USAGE : EXIT_FAILED;
    }
    printf("%s\n", token);
    memset(token, 0, sizeof token);
    fprintf(stderr,
            PROG ": user %s (%s access%s%s) in %s; its token is the line above, shown only"
                 " once. A running server uses it after SIGHUP or a restart.\n",
            a->add_user, a->access, a->dir ? ", directory " : "", a->dir ? a->dir : "", path);
    return EXIT_OK;
}

/* Without --users, the default file is used when it exists, so that
   --add-user without --users and a plain start agree. */
static void default_users(server_args *a)
{
    char path[4096];
    if (a->users_given || tf_users_file_path(a->opt, path, sizeof path) != TF_OK)
        return;
    if (access(path, F_OK) == 0)
        tf_options_set_string(a->opt, TF_SOPT_USERS_FILE, path);
}

/* SIGHUP reads the users file again. A handler may not (the reload reads a
   file and allocates): SIGHUP stays blocked in every thread, and this one
   takes it with sigwait. */
static pthread_t g_hup_thread;
static atomic_int g_hup_quit; /* set by the main thread, read by hup_main */

static void *hup_main(void *arg)
{
    tf_server *s = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0 || atomic_load(&g_hup_quit))
            return NULL;
        char err[512];
        int rc = tf_server_reload_users(s, err, sizeof err);
        if (rc == TF_OK)
            printf("users file read again: %d user%s\n", tf_server_user_count(s),
                   tf_server_user_count(s) == 1 ? "" : "s");
        else
            fprintf(stderr, PROG ": SIGHUP: the users file was not read again: %s (%s); the"
                            " users in use are kept\n",
                    tf_strerror(rc), err);
    }
}

/* ---- running -------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    tf_server_stop(g_server); /* async-signal-safe by contract */
}

static int set_handlers(void (*handler)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return -1;
    return 0;
}

/* What to do when the server cannot start, if the reason alone does not
   say. The library's detail carries the strerror() text of the cause. */
static const char *open_hint(int rc, const char *err)
{
    if (rc == TF_ENET && strstr(err, strerror(EADDRINUSE)))
        return "; another program is using that port: choose another PORT, or 0 for "
               "any free one";
    if (rc == TF_ENET && strstr(err, strerror(EADDRNOTAVAIL)))
        return "; --bind needs an address of this machine";
    if (rc == TF_ENET && strstr(err, strerror(EACCES)))
        return "; ports below 1024 need privileges: choose PORT 1024 or above";
    if (rc == TF_ENOENT && strstr(err, "no such bucket"))
        return "; create the bucket, or name an existing one";
    if (rc == TF_ENOENT)
        return "; create the directory, or name an existing ROOT";
    if (rc == TF_EACCES && strstr(err, "S3"))
        return "; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)";
    return "";
}

/* Each connection is a descriptor, and the default connection limit
   (1,024) alone is a shell's usual soft limit: raise the soft limit to the
   hard one, as a server process may (the library changes no process-wide
   state; out of descriptors it refuses clients, but that is a fallback). */
static void raise_nofile_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl); /* best effort: the old limit still works */
    }
}

/* Whether a listening address is reachable only from this machine. */
static int is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0;
}

/* The banner: the first line is the one scripts wait for (and parse the
   port from); the next say what is served and how, and every address. A
   root that uploads cannot go to, and a server anyone may write to, get a
   warning on stderr. */
static void banner(const server_args *a, const tf_server *s)
{
    char addr[64] = "?", root[PATH_MAX];
    int port = tf_server_port(s), open_to_all = 0;
    int64_t read_only = 0, overwrite = 1;
    tf_options_get(a->opt, TF_OPT_READ_ONLY, &read_only);
    tf_options_get(a->opt, TF_OPT_OVERWRITE, &overwrite);
    if (a->store)
        snprintf(root, sizeof root, "%s", a->store);
    else if (!realpath(a->root, root))
        snprintf(root, sizeof root, "%s", a->root);
    tf_server_address(s, addr, sizeof addr);
    printf("server up and running on IP: %s port %d\n", addr, port);
    /* Second line: what a user checks on first connect, as ssh shows a
       host key. */
    char fp[64];
    if (tf_server_fingerprint(s, fp, sizeof fp) == TF_OK)
        printf("server identity: %s (check it on first connect: tcpfile-client --pin %s)\n",
               fp, fp);
    else
        printf("no TLS (--plaintext): everything crosses the network in clear\n");
    open_to_all = !is_loopback(addr);
    for (size_t i = 1; tf_server_address_at(s, i, addr, sizeof addr) == TF_OK; i++) {
        printf("also listening on IP: %s port %d\n", addr, port);
        open_to_all |= !is_loopback(addr);
    }
    if (a->store)
        printf("store: S3 bucket at %s (uploads whole or not at all; a rename is a copy\n"
               "  and a delete, not atomic)\n",
               a->endpoint);
    printf("serving \"%s\": %s\n", root,
           read_only   ? "get and list only (--read-only)"
           : overwrite ? "get, list and put; a put replaces a file of the same name"
                       : "get, list and put; a put never replaces a file (--no-overwrite)");
    const char *users = "?";
    int nusers = tf_server_user_count(s);
    if (nusers >= 0) {
        tf_options_get_string(a->opt, TF_SOPT_USERS_FILE, &users);
        printf("users: %d in %s; each logs in with its token (SIGHUP reads the file again)\n",
               nusers, users);
    } else {
        printf("no users file: anyone who can connect may %s\n",
               read_only ? "read" : "read and write");
    }
    if (read_only)
        return;
    if (!a->store && access(a->root, W_OK) != 0)
        fprintf(stderr, PROG ": warning: uploads will fail: \"%s\" is not writable (%s)\n",
                root, strerror(errno));
    else if (open_to_all && nusers < 0)
        fprintf(stderr,
                PROG ": warning: anyone who can reach port %d may upload%s files in \"%s\""
                     " (there is no authentication); --read-only, or --bind 127.0.0.1,"
                     " limits that\n",
                port, overwrite ? " and replace" : "", root);
}

static int serve(const server_args *a)
{
    raise_nofile_limit();
    char err[512];
    const char *where = a->bind ? a->bind : "every address";
    tf_server *s;
    struct stat st;
    /* The library would say it cannot open the directory; a file given
       by mistake deserves its own sentence. */
    const char *what = a->store ? a->store : a->root;
    if (!a->store && stat(a->root, &st) == 0 && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, PROG ": serve \"%s\": it is not a directory; name the directory to"
                        " serve\n",
                a->root);
        return EXIT_FAILED;
    }
    int rc = tf_server_open_ex(&s, a->bind, a->port, a->root, a->opt, err, sizeof err);
    if (rc != TF_OK) {
        fprintf(stderr, PROG ": serve \"%s\" on %s port %s: %s%s%s%s%s\n", what, where,
                a->port, tf_strerror(rc), err[0] ? " (" : "", err, err[0] ? ")" : "",
                open_hint(rc, err));
        return EXIT_FAILED;
    }
    g_server = s;
    /* SA_RESETHAND: the first signal asks for a clean stop; if that hangs,
       a second one takes the default action and ends the process. */
    if (set_handlers(on_signal, SA_RESETHAND) != 0) {
        fprintf(stderr, PROG ": cannot install signal handlers: %s\n", strerror(errno));
        tf_server_close(s);
        return EXIT_FAILED;
    }
    banner(a, s);
    /* Scripts wait for the first line to learn the port: it must not sit
       in a buffer. */
    fflush(stdout);

    /* Blocked here, before the workers start: they inherit the mask. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    int hup_on = tf_server_user_count(s) >= 0 &&
                 pthread_sigmask(SIG_BLOCK, &hup, NULL) == 0 &&
                 pthread_create(&g_hup_thread, NULL, hup_main, s) == 0;
    rc = tf_server_run(s);
    if (hup_on) {
        atomic_store(&g_hup_quit, 1);
        pthread_kill(g_hup_thread, SIGHUP);
        pthread_join(g_hup_thread, NULL);
    }
    /* No handler may reach the server once it is freed. */
    set_handlers(SIG_IGN, 0);
    g_server = NULL;
    tf_server_close(s);
    if (rc != TF_OK) {
        fprintf(stderr, PROG ": serve \"%s\" on %s port %s: %s\n", what, where, a->port,
                tf_strerror(rc));
        return EXIT_FAILED;
    }
    printf("server stopped\n");
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    /* Line-buffered even into a file or pipe, so each request line shows up
       as it happens. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    server_args a;
    int status = parse_args(argc, argv, &a);
    if (status == PARSE_RUN && a.add_user)
        status = add_user(&a);
    else if (status == PARSE_RUN) {
        default_users(&a);
        status = serve(&a);
    }
    tf_options_free(a.opt);
    if (fflush(stdout) != 0 && status == EXIT_OK)
        status = EXIT_FAILED;
    return status;
}
