/*
 * tcpfile-client - gets, puts and lists files on a tcpfile-server.
 *
 *   tcpfile-client [OPTIONS] HOST PORT get NAME [LOCAL]
 *   tcpfile-client [OPTIONS] HOST PORT put LOCAL [NAME]
 *   tcpfile-client [OPTIONS] HOST PORT list
 *
 * Several operations may follow one another; they share one connection and
 * the first failure ends the run. A thin user of the public API (tcpfile.h
 * only): the command line is parsed into a list of operations first, so a
 * mistake anywhere in it is reported before anything is transferred.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tcpfile.h"

#define PROG "tcpfile-client"

/* Exit statuses, as documented in --help. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };
/* parse_args: go on and run the operations (anything else is a status). */
#define PARSE_RUN (-1)

/* Longest name any server may allow (TF_OPT_MAX_NAME_LEN's upper bound).
   The real limit comes from the server's handshake and the library checks
   it; here we only catch names that no server could accept. */
#define NAME_MAX_ANY 4096

typedef enum op_kind { OP_GET, OP_PUT, OP_LIST } op_kind;

typedef struct op {
    op_kind kind;
    const char *name;  /* the remote name; NULL for list, or put's default */
    const char *local; /* get: NULL = ./name, "-" = stdout; put: "-" = stdin */
} op;

typedef struct client_args {
    const char *host;
    const char *port;
    int quiet;
    op *ops;
    size_t nops;
    tf_options *opt;
} client_args;

/* What the progress callback saw of the current transfer, for the summary
   line printed after it. */
typedef struct progress {
    uint64_t done;
} progress;

static void usage(FILE *to)
{
    fprintf(to, "Usage: " PROG " [OPTIONS] HOST PORT OPERATION...\n"
                "Operations (several may follow one another on one connection):\n"
                "  get NAME [LOCAL]   download NAME into LOCAL (default ./NAME);\n"
                "                     LOCAL \"-\" writes to standard output\n"
                "  put LOCAL [NAME]   upload LOCAL as NAME (default: LOCAL's last\n"
                "                     component); LOCAL \"-\" reads standard input,\n"
                "                     and then NAME is required\n"
                "  list               print SIZE<TAB>MTIME<TAB>NAME per file, MTIME\n"
                "                     in ISO 8601 UTC\n"
                "A word after NAME or LOCAL that is get, put or list starts the next\n"
                "operation; write ./get to mean a local file named get.\n"
                "HOST may be a name or an IPv4 or IPv6 address (::1 or [::1]).\n"
                "\n"
                "Options (before HOST):\n"
                "      --timeout SECONDS  give up when connecting takes, or the server\n"
                "                         stalls for, longer than SECONDS (0 = never;\n"
                "                         defaults: 10 s to connect, 30 s stalled)\n"
                "  -q, --quiet            print nothing but results and errors\n"
                "      --help             print this help and exit\n"
                "      --version          print the library version and exit\n"
                "\n"
                "Exit status: 0 if every operation succeeded, 1 when one failed (the\n"
                "operations after it are not run), 2 for a usage error.\n");
}

/* Every usage error is one line on stderr, pointing at --help. */
static int usage_error(const char *what, const char *arg)
{
    if (arg)
        fprintf(stderr, PROG ": %s \"%s\" (see " PROG " --help)\n", what, arg);
    else
        fprintf(stderr, PROG ": %s (see " PROG " --help)\n", what);
    return EXIT_USAGE;
}

/* ---- command line -------------------------------------------------------- */

static int is_keyword(const char *w)
{
    return strcmp(w, "get") == 0 || strcmp(w, "put") == 0 || strcmp(w, "list") == 0;
}

static const char *last_component(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A port as a number 1..65535: getaddrinfo would also take service names
   and say little about a typo, so be strict and specific here. */
static int valid_port(const char *s)
{
    long v = 0;
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || (v = v * 10 + (*s - '0')) > 65535)
            return 0;
    }
    return v > 0;
}

/* --timeout: non-negative seconds, fractions allowed, up to one day (the
   library's limit). Sets both the connect and the per-transfer timeout. */
static int set_timeout(tf_options *opt, const char *arg)
{
    char *end;
    errno = 0;
    double s = strtod(arg, &end);
    if (end == arg || *end || errno || !(s >= 0 && s <= 86400))
        return usage_error("--timeout needs seconds from 0 to 86400, not", arg);
    int64_t ms = (int64_t)(s * 1000.0 + 0.5);
    if (s > 0 && ms == 0)
        ms = 1; /* a tiny timeout must not turn into "no limit" */
    if (tf_options_set(opt, TF_OPT_CONNECT_TIMEOUT_MS, ms) != TF_OK ||
        tf_options_set(opt, TF_OPT_IO_TIMEOUT_MS, ms) != TF_OK)
        return usage_error("--timeout out of range:", arg);
    return PARSE_RUN;
}

/* "get \"a.txt\"", "put \"x/y\" as \"z\"", ...: how an operation is named
   in its error and summary lines. */
static void describe(const op *o, char *buf, size_t len)
{
    switch (o->kind) {
    case OP_LIST:
        snprintf(buf, len, "list");
        break;
    case OP_GET:
        if (!o->local)
            snprintf(buf, len, "get \"%s\"", o->name);
        else if (strcmp(o->local, "-") == 0)
            snprintf(buf, len, "get \"%s\" to standard output", o->name);
        else
            snprintf(buf, len, "get \"%s\" to \"%s\"", o->name, o->local);
        break;
    case OP_PUT:
        if (strcmp(o->local, "-") == 0)
            snprintf(buf, len, "put standard input as \"%s\"", o->name);
        else if (o->name)
            snprintf(buf, len, "put \"%s\" as \"%s\"", o->local, o->name);
        else
            snprintf(buf, len, "put \"%s\"", o->local);
        break;
    }
}

/* Refuses, before connecting, a name no server could take, so that a
   mistake late on the command line does not leave earlier operations done. */
static int check_name(const op *o)
{
    const char *why;
    const char *name = o->name ? o->name : last_component(o->local);
    if (tf_name_check(name, NAME_MAX_ANY, &why) == TF_OK)
        return PARSE_RUN;
    char what[8192];
    describe(o, what, sizeof what);
    if (o->name)
        fprintf(stderr, PROG ": %s: bad name: %s\n", what, why);
    else /* the name was derived from LOCAL: show what it came out as */
        fprintf(stderr, PROG ": %s: bad remote name \"%s\": %s; give NAME explicitly\n",
                what, name, why);
    return EXIT_USAGE;
}

/* Parses the operations in words[0..n). Returns PARSE_RUN or a status. */
static int parse_ops(char **words, int n, client_args *a)
{
    int stdin_used = 0;
    if (n == 0)
        return usage_error("missing operation (get, put or list)", NULL);
    a->ops = calloc((size_t)n, sizeof *a->ops);
    if (!a->ops) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    for (int i = 0; i < n;) {
        op *o = &a->ops[a->nops++];
        const char *kw = words[i++];
        /* The optional second word is taken only if it is not the start of
           the next operation. */
        const char *second = i + 1 < n && !is_keyword(words[i + 1]) ? words[i + 1] : NULL;
        if (strcmp(kw, "list") == 0) {
            o->kind = OP_LIST;
        } else if (strcmp(kw, "get") == 0) {
            if (i >= n)
                return usage_error("get needs a NAME", NULL);
            o->kind = OP_GET;
            o->name = words[i++];
            o->local = second;
            i += second != NULL;
            if (check_name(o) != PARSE_RUN)
                return EXIT_USAGE;
        } else if (strcmp(kw, "put") == 0) {
            if (i >= n)
                return usage_error("put needs a LOCAL file", NULL);
            o->kind = OP_PUT;
            o->local = words[i++];
            o->name = second;
            i += second != NULL;
            if (strcmp(o->local, "-") == 0) {
                if (!o->name)
                    return usage_error("put - (standard input) needs a NAME", NULL);
                if (stdin_used++)
                    return usage_error("standard input can be uploaded only once", NULL);
            }
            if (check_name(o) != PARSE_RUN)
                return EXIT_USAGE;
        } else {
            return usage_error("unknown operation (expected get, put or list):", kw);
        }
    }
    return PARSE_RUN;
}

enum { OPT_TIMEOUT = 256, OPT_HELP, OPT_VERSION };

/* Fills *a from argv. Returns PARSE_RUN, or the status to exit with. The
   caller frees a->opt and a->ops in every case. */
static int parse_args(int argc, char **argv, client_args *a)
{
    static const struct option longopts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    if (tf_options_new(&a->opt) != TF_OK) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    /* '+': options end at HOST, so a file named "-q" after it is a file;
       ':': we print the one-line errors ourselves instead of getopt's. */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "+:q", longopts, NULL)) != -1) {
        switch (ch) {
        case 'q':
            a->quiet = 1;
            break;
        case OPT_TIMEOUT:
            if (set_timeout(a->opt, optarg) != PARSE_RUN)
                return EXIT_USAGE;
            break;
        case OPT_HELP:
            usage(stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf(PROG " %s\n", tf_version_string());
            return EXIT_OK;
        case ':':
            return usage_error("missing value for option", argv[optind - 1]);
        default: {
            /* A short option is known by optopt; a long one only by the
               word getopt just stepped over. */
            char shortopt[3] = {'-', (char)optopt, '\0'};
            return usage_error("unknown option", optopt ? shortopt : argv[optind - 1]);
        }
        }
    }
    if (argc - optind < 1)
        return usage_error("missing HOST, PORT and operation", NULL);
    if (argc - optind < 2)
        return usage_error("missing PORT and operation", NULL);
    a->host = argv[optind];
    a->port = argv[optind + 1];
    if (!valid_port(a->port))
        return usage_error("PORT must be a number from 1 to 65535, not", a->port);
    return parse_ops(argv + optind + 2, argc - optind - 2, a);
}

/* ---- running -------------------------------------------------------------- */

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    (void)total;
    ((progress *)user)->done = done;
    return 0;
}

/* Writes "ISO 8601 UTC" for t, or the raw number if the C library cannot
   represent it. */
static void format_mtime(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if ((int64_t)tt != t || !gmtime_r(&tt, &tm) ||
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "%" PRId64, t);
}

/* Returns 0, or -1 with errno set when standard output fails (a full disk,
   a closed pipe). */
static int print_listing(const tf_listing *l)
{
    size_t n = tf_listing_count(l);
    for (size_t i = 0; i < n; i++) {
        const tf_entry *e = tf_listing_at(l, i);
        char when[64];
        format_mtime(e->mtime, when, sizeof when);
        /* Names cannot hold tabs or newlines (tf_name_check refuses control
           characters), so the columns are unambiguous. */
        printf("%" PRIu64 "\t%s\t%s\n", e->size, when, e->name);
    }
    return fflush(stdout) == 0 ? 0 : -1;
}

/* Runs one operation. A failure on our side of the library (writing
   standard output) is described in why; otherwise tf_errmsg has it. */
static int run_op(tf_client *c, const op *o, char *why, size_t len)
{
    switch (o->kind) {
    case OP_LIST: {
        tf_listing *l;
        int rc = tf_list(c, &l);
        if (rc != TF_OK)
            return rc;
        if (print_listing(l) != 0) {
            snprintf(why, len, "writing standard output: %s", strerror(errno));
            rc = TF_EIO;
        }
        tf_listing_free(l);
        return rc;
    }
    case OP_GET:
        if (o->local && strcmp(o->local, "-") == 0) {
            /* Earlier list output must come out before these bytes. */
            if (fflush(stdout) != 0) {
                snprintf(why, len, "writing standard output: %s", strerror(errno));
                return TF_EIO;
            }
            return tf_get_fd(c, o->name, 1);
        }
        return tf_get(c, o->name, o->local);
    case OP_PUT:
        /* The library spools a pipe or terminal itself to learn its size. */
        return tf_put(c, strcmp(o->local, "-") == 0 ? "/dev/stdin" : o->local, o->name);
    }
    return TF_EINTERNAL;
}

/* One line on stderr: operation, name, reason and the detail, if any. */
static void report_failure(const op *o, int rc, const char *detail)
{
    char what[8192];
    describe(o, what, sizeof what);
    fprintf(stderr, PROG ": %s: %s%s%s%s\n", what, tf_strerror(rc), detail[0] ? " (" : "",
            detail, detail[0] ? ")" : "");
}

static void report_success(const op *o, const progress *p, double seconds)
{
    char what[8192];
    if (o->kind == OP_LIST)
        return; /* its output is the report */
    describe(o, what, sizeof what);
    fprintf(stderr, PROG ": %s: %" PRIu64 " bytes in %.3f s\n", what, p->done, seconds);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static tf_client *connect_or_report(const client_args *a)
{
    char err[512];
    tf_client *c;
    int rc = tf_connect_ex(&c, a->host, a->port, a->opt, err, sizeof err);
    if (rc == TF_OK)
        return c;
    /* A refusal almost always means nothing listens there: say so. The
       library's detail carries strerror(ECONNREFUSED) in that case. */
    int refused = rc == TF_ENET && strstr(err, strerror(ECONNREFUSED)) != NULL;
    fprintf(stderr, PROG ": connect to %s port %s: %s%s%s%s", a->host, a->port,
            tf_strerror(rc), err[0] ? " (" : "", err, err[0] ? ")" : "");
    if (refused)
        fprintf(stderr, "; is tcpfile-server running on %s port %s?", a->host, a->port);
    fputc('\n', stderr);
    return NULL;
}

static int run(client_args *a)
{
    progress p = {0};
    tf_options_set_progress(a->opt, on_progress, &p);
    tf_client *c = connect_or_report(a);
    if (!c)
        return EXIT_FAILED;
    int status = EXIT_OK;
    for (size_t i = 0; i < a->nops && status == EXIT_OK; i++) {
        const op *o = &a->ops[i];
        p.done = 0;
        char why[512] = "";
        double start = now_seconds();
        int rc = run_op(c, o, why, sizeof why);
        if (rc != TF_OK) {
            report_failure(o, rc, why[0] ? why : tf_errmsg(c));
            status = EXIT_FAILED;
        } else if (!a->quiet) {
            report_success(o, &p, now_seconds() - start);
        }
    }
    tf_close(c);
    return status;
}

int main(int argc, char **argv)
{
    client_args a;
    int status = parse_args(argc, argv, &a);
    if (status == PARSE_RUN)
        status = run(&a);
    free(a.ops);
    tf_options_free(a.opt);
    return status;
}
