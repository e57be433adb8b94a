/*
 * tcpfile-client - gets, puts and lists files on a tcpfile-server.
 *
 *   tcpfile-client [OPTIONS] HOST PORT get NAME [LOCAL]
 *   tcpfile-client [OPTIONS] HOST PORT put LOCAL [NAME]
 *   tcpfile-client [OPTIONS] HOST PORT list [-h]
 *
 * Several operations may follow one another; they share one connection and
 * the first failure ends the run. A thin user of the public API (tcpfile.h
 * only): the command line is parsed into a list of operations first, so a
 * mistake anywhere in it is reported before anything is transferred.
 *
 * For a person at a terminal it draws a progress bar for long transfers and
 * lists files with human sizes and local times; into a pipe or a file it
 * prints only the stable, machine-readable forms.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_parse.h"
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

/* How much goes to stderr besides errors: -q, the default, -v. */
enum { QUIET = 0, NORMAL = 1, VERBOSE = 2 };

typedef enum op_kind { OP_GET, OP_PUT, OP_LIST } op_kind;

typedef struct op {
    op_kind kind;
    const char *name;  /* the remote name; NULL for list, or put's default */
    const char *local; /* get: NULL = ./name, "-" = stdout; put: "-" = stdin */
    int human;         /* list -h */
} op;

typedef struct client_args {
    const char *host;
    const char *port;
    int verbosity;
    int human; /* -h before HOST: every list in human form */
    op *ops;
    size_t nops;
    tf_options *opt;
} client_args;

/* A transfer gets a bar only once it has taken BAR_DELAY, so that quick
   ones leave no trace, and the bar is redrawn at most every BAR_PERIOD. */
#define BAR_DELAY 0.5
#define BAR_PERIOD 0.1

/* What the progress callback saw of the current transfer: the byte count
   for the summary line, and the state of the progress bar. */
typedef struct progress {
    uint64_t done, total;
    int bar_enabled;   /* stderr is a terminal, and not -q */
    const char *label; /* "get NAME", "put NAME", "list" */
    int started;       /* the transfer's first callback has come */
    uint64_t first;    /* done at that callback: bytes a resumed transfer had */
    double start, last_draw;
    int drawn; /* columns of bar on the screen, to erase before other output */
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
                "  list [-h]          print SIZE<TAB>MTIME<TAB>NAME per file, MTIME\n"
                "                     in ISO 8601 UTC; with -h, or when standard\n"
                "                     output is a terminal, human sizes and local times\n"
                "A word after NAME or LOCAL that is get, put or list starts the next\n"
                "operation; write ./get to mean a local file named get.\n"
                "HOST may be a name or an IPv4 or IPv6 address (::1 or [::1]).\n"
                "\n"
                "Options (before HOST):\n"
                "      --timeout SECONDS  give up when connecting takes, or the server\n"
                "                         stalls for, longer than SECONDS (0 = never;\n"
                "                         defaults: 10 s to connect, 30 s stalled)\n"
                "  -h, --human-readable   list every file with human sizes and local\n"
                "                         times\n"
                "  -q, --quiet            print nothing but results and errors: no\n"
                "                         summary lines, no progress bar\n"
                "  -v, --verbose          also print connection details, the server's\n"
                "                         limits and the time and rate of each operation\n"
                "      --resume           keep what an interrupted get or put moved, and\n"
                "                         continue from there on the next try\n"
                "      --no-checksum      do not verify transfers end to end (XXH3-128)\n"
                "      --help             print this help and exit\n"
                "      --version          print the library version and exit\n"
                "\n"
                "On a terminal, a transfer that takes more than a moment shows a\n"
                "progress bar on standard error (bytes, rate, time left).\n"
                "Exit status: 0 if every operation succeeded, 1 when one failed (the\n"
                "operations after it are not run), 2 for a usage error.\n");
}

/* Every usage error is one line on stderr, pointing at --help. */
static int usage_error(const char *what, const char *arg)
{
    return cli_usage_error(PROG, what, arg);
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

/* --timeout: non-negative seconds, fractions allowed, up to one day (the
   library's limit). Sets both the connect and the per-transfer timeout. */
static int set_timeout(tf_options *opt, const char *arg)
{
    double s;
    if (cli_parse_double(arg, &s) != 0 || !(s >= 0 && s <= 86400))
        return usage_error("--timeout needs seconds from 0 to 86400, not", arg);
    int64_t ms = (int64_t)(s * 1000.0 + 0.5);
    if (s > 0 && ms == 0)
        ms = 1; /* a tiny timeout must not turn into "no limit" */
    if (tf_options_set(opt, TF_OPT_CONNECT_TIMEOUT_MS, ms) != TF_OK ||
        tf_options_set(opt, TF_OPT_IO_TIMEOUT_MS, ms) != TF_OK)
        return usage_error("--timeout out of range:", arg);
    return PARSE_RUN;
}

/* The remote name an operation uses (list has none). */
static const char *remote_name(const op *o)
{
    if (o->kind == OP_LIST)
        return NULL;
    return o->name ? o->name : last_component(o->local);
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
    const char *name = remote_name(o);
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
            /* list takes no operand, so "-h" after it cannot be a file. */
            if (i < n && (strcmp(words[i], "-h") == 0 ||
                          strcmp(words[i], "--human-readable") == 0)) {
                o->human = 1;
                i++;
            }
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

enum { OPT_TIMEOUT = 256, OPT_HELP, OPT_VERSION, OPT_RESUME, OPT_NO_CHECKSUM };

/* Fills *a from argv. Returns PARSE_RUN, or the status to exit with. The
   caller frees a->opt and a->ops in every case. */
static int parse_args(int argc, char **argv, client_args *a)
{
    static const struct option longopts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"human-readable", no_argument, NULL, 'h'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"resume", no_argument, NULL, OPT_RESUME},
        {"no-checksum", no_argument, NULL, OPT_NO_CHECKSUM},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    a->verbosity = NORMAL;
    if (tf_options_new(&a->opt) != TF_OK) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    /* '+': options end at HOST, so a file named "-q" after it is a file;
       ':': we print the one-line errors ourselves instead of getopt's. */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "+:hqv", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            a->human = 1;
            break;
        case 'q': /* the last of -q and -v wins */
            a->verbosity = QUIET;
            break;
        case 'v':
            a->verbosity = VERBOSE;
            break;
        case OPT_TIMEOUT:
            if (set_timeout(a->opt, optarg) != PARSE_RUN)
                return EXIT_USAGE;
            break;
        case OPT_RESUME:
            tf_options_set(a->opt, TF_OPT_RESUME, 1);
            break;
        case OPT_NO_CHECKSUM:
            tf_options_set(a->opt, TF_OPT_CHECKSUM, 0);
            break;
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
    if (argc - optind < 1)
        return usage_error("missing HOST, PORT and operation", NULL);
    if (argc - optind < 2)
        return usage_error("missing PORT and operation", NULL);
    a->host = argv[optind];
    a->port = argv[optind + 1];
    /* A number 1..65535: getaddrinfo would also take service names and say
       little about a typo, so be strict and specific here. */
    int64_t port;
    if (cli_parse_int(a->port, 1, 65535, &port) != 0)
        return usage_error("PORT must be a number from 1 to 65535, not", a->port);
    return parse_ops(argv + optind + 2, argc - optind - 2, a);
}

/* ---- formatting ------------------------------------------------------------ */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "512 B", "1.5 KiB", "23 MiB": three significant figures at most. */
static void format_size(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(buf, len, "%" PRIu64 " B", n);
        return;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    /* Move up a unit before the value would print as 1024. */
    while (v >= 1023.5 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (v < 9.95)
        snprintf(buf, len, "%.1f %s", v, units[u]);
    else
        snprintf(buf, len, "%.0f %s", v, units[u]);
}

/* "0:07", "12:34", "1:02:03"; "--:--" when unknown or absurd. */
static void format_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0 && s < 100.0 * 3600)) {
        snprintf(buf, len, "--:--");
        return;
    }
    unsigned t = (unsigned)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%u:%02u:%02u", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%u:%02u", t / 60, t % 60);
}

/* ISO 8601 UTC ("2001-02-03T04:05:06Z") or, for people, local time
   ("2001-02-03 05:05"); the raw number if the C library cannot represent
   the time. */
static void format_mtime(int64_t t, int human, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    int ok = (int64_t)tt == t && (human ? localtime_r(&tt, &tm) : gmtime_r(&tt, &tm));
    if (!ok ||
        strftime(buf, len, human ? "%Y-%m-%d %H:%M" : "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "%" PRId64, t);
}

/* ---- the progress bar ---------------------------------------------------------- */

static int terminal_columns(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

/* Erases the bar, so that the next line starts on a clean row. Spaces
   rather than an escape sequence: that works on every terminal. */
static void bar_erase(progress *p)
{
    if (!p->drawn)
        return;
    fprintf(stderr, "\r%*s\r", p->drawn, "");
    p->drawn = 0;
}

/* Appends at most max columns of s to buf, cut at a UTF-8 character
   boundary with "..." when it does not fit. Returns the columns used
   (counting one per character, which is right for most scripts). */
static int append_label(char *buf, size_t len, const char *s, int max)
{
    size_t o = strlen(buf);
    int cols = 0, need = 0;
    for (const char *q = s; *q; q++)
        need += ((unsigned char)*q & 0xC0) != 0x80;
    int limit = need <= max ? max : max - 3;
    for (; *s && o + 5 < len; s++) {
        int starts = ((unsigned char)*s & 0xC0) != 0x80;
        if (starts && cols == limit)
            break;
        cols += starts;
        buf[o++] = *s;
    }
    buf[o] = '\0';
    if (need > max && limit >= 0 && o + 4 < len) {
        memcpy(buf + o, "...", 4);
        cols += 3;
    }
    return cols;
}

/* Draws "get big.iso [#####     ]  45%  1.2 GiB / 2.7 GiB  98 MiB/s  ETA 0:16",
   fitted to the terminal's width (the bar shrinks, then the label). */
static void bar_draw(progress *p, double now)
{
    char stats[160], done[32], total[32], rate[32], eta[16];
    double elapsed = now - p->start;
    double bps = elapsed > 0 ? (double)(p->done - p->first) / elapsed : 0;
    format_size(p->done, done, sizeof done);
    format_size((uint64_t)bps, rate, sizeof rate);
    if (p->total > 0) {
        format_size(p->total, total, sizeof total);
        format_duration(bps > 0 ? (double)(p->total - p->done) / bps : -1, eta, sizeof eta);
        snprintf(stats, sizeof stats, " %3d%%  %s / %s  %s/s  ETA %s",
                 (int)(p->done * 100 / p->total), done, total, rate, eta);
    } else {
        snprintf(stats, sizeof stats, "  %s  %s/s", done, rate);
    }
    /* One column short of the width, so the cursor never wraps. */
    int width = terminal_columns() - 1;
    int room = width - (int)strlen(stats);
    int bar = room - 24 >= 10 ? (room - 24 < 40 ? room - 24 : 40) : 0;
    char line[512] = "";
    int label_max = room - (bar ? bar + 3 : 1);
    int used = label_max > 4 ? append_label(line, sizeof line, p->label, label_max) : 0;
    size_t o = strlen(line);
    if (bar) {
        int filled = p->total ? (int)((double)bar * (double)p->done / (double)p->total) : 0;
        o += (size_t)snprintf(line + o, sizeof line - o, " [");
        for (int i = 0; i < bar && o + 2 < sizeof line; i++)
            line[o++] = i < filled ? '#' : ' ';
        line[o++] = ']';
        line[o] = '\0';
        used += bar + 3;
    }
    snprintf(line + o, sizeof line - o, "%s", stats);
    used += (int)strlen(stats);
    /* Pad over whatever a longer previous drawing left. */
    int pad = p->drawn > used ? p->drawn - used : 0;
    fprintf(stderr, "\r%s%*s", line, pad, "");
    p->drawn = used + pad;
    p->last_draw = now;
}

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    progress *p = user;
    p->done = done;
    p->total = total;
    if (!p->bar_enabled)
        return 0;
    double now = now_seconds();
    /* Timing starts at the first callback, when the data starts moving:
       spooling standard input for a put happens before it. */
    if (!p->started) {
        p->started = 1;
        p->start = now;
        p->first = done;
        return 0;
    }
    if (now - p->start >= BAR_DELAY && now - p->last_draw >= BAR_PERIOD)
        bar_draw(p, now);
    return 0;
}

/* ---- running -------------------------------------------------------------- */

/* Returns 0, or -1 with errno set when standard output fails (a full disk,
   a closed pipe). */
static int print_listing(const tf_listing *l, int human)
{
    size_t n = tf_listing_count(l);
    for (size_t i = 0; i < n; i++) {
        const tf_entry *e = tf_listing_at(l, i);
        char when[64];
        format_mtime(e->mtime, human, when, sizeof when);
        /* Names cannot hold tabs or newlines (tf_name_check refuses control
           characters), so the columns are unambiguous. */
        if (human) {
            char size[32];
            format_size(e->size, size, sizeof size);
            printf("%10s  %s  %s\n", size, when, e->name);
        } else {
            printf("%" PRIu64 "\t%s\t%s\n", e->size, when, e->name);
        }
    }
    return fflush(stdout) == 0 ? 0 : -1;
}

/* Runs one operation. A failure on our side of the library (writing
   standard output) is described in why; otherwise tf_errmsg has it.
   *files receives the number of files a list found. */
static int run_op(tf_client *c, const op *o, int human, size_t *files, char *why,
                  size_t len)
{
    switch (o->kind) {
    case OP_LIST: {
        tf_listing *l;
        int rc = tf_list(c, &l);
        if (rc != TF_OK)
            return rc;
        *files = tf_listing_count(l);
        if (print_listing(l, human) != 0) {
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
            return tf_get_fd(c, o->name, STDOUT_FILENO);
        }
        return tf_get(c, o->name, o->local);
    case OP_PUT:
        /* The library spools a pipe or terminal itself to learn its size. */
        return tf_put(c, strcmp(o->local, "-") == 0 ? "/dev/stdin" : o->local, o->name);
    }
    return TF_EINTERNAL;
}

/* Whether the directory a get writes into exists (stdout and ./NAME:
   yes). */
static int local_dir_exists(const char *local)
{
    struct stat st;
    if (!local || strcmp(local, "-") == 0)
        return 1;
    const char *slash = strrchr(local, '/');
    if (!slash) /* a file in the current directory, or a directory there */
        return 1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash == local ? 1 : (int)(slash - local), local);
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* What to do about a failure, appended to its line ("" when the message
   says it all). Kept to the cases where the next step is not obvious. */
static void failure_hint(const client_args *a, tf_client *c, const op *o, int rc, char *buf,
                         size_t len)
{
    const char *name = remote_name(o);
    buf[0] = '\0';
    switch (rc) {
    case TF_ETIMEDOUT:
        snprintf(buf, len,
                 "; the server stopped responding: check that it is up and not"
                 " overloaded, or wait longer with --timeout SECONDS (0 = never)");
        break;
    case TF_ENET:
        snprintf(buf, len, "; the connection was lost: run the command again");
        break;
    case TF_ENOENT:
        /* Missing on the server, not a missing local directory. */
        if (o->kind == OP_GET && local_dir_exists(o->local))
            snprintf(buf, len, "; see the names it has with: " PROG " %s %s list", a->host,
                     a->port);
        break;
    case TF_EEXIST:
        snprintf(buf, len, "; the server does not overwrite files: choose another NAME");
        break;
    case TF_EACCES:
        if (o->kind == OP_PUT && strstr(tf_errmsg(c), "read-only"))
            snprintf(buf, len, "; this server only serves get and list");
        break;
    case TF_EINVAL:
        if (o->kind == OP_PUT && tf_client_max_name(c) > 0 &&
            strlen(name) > (size_t)tf_client_max_name(c))
            snprintf(buf, len, "; upload it under a shorter name: put LOCAL NAME");
        break;
    }
}

/* One line on stderr: operation, name, reason, the detail if any, and what
   to do about it if that is not obvious. */
static void report_failure(const client_args *a, tf_client *c, const op *o, int rc,
                           const char *why)
{
    char what[8192], hint[256] = "";
    const char *detail = why[0] ? why : tf_errmsg(c);
    describe(o, what, sizeof what);
    if (!why[0]) /* not a failure on our side, which why says all about */
        failure_hint(a, c, o, rc, hint, sizeof hint);
    fprintf(stderr, PROG ": %s: %s%s%s%s%s\n", what, tf_strerror(rc), detail[0] ? " (" : "",
            detail, detail[0] ? ")" : "", hint);
}

static void report_success(const client_args *a, const op *o, const progress *p,
                           size_t files, double seconds)
{
    char what[8192], size[32], rate[32];
    describe(o, what, sizeof what);
    if (a->verbosity >= VERBOSE) {
        if (o->kind == OP_LIST) {
            fprintf(stderr, PROG ": list: %zu file%s in %.3f s\n", files,
                    files == 1 ? "" : "s", seconds);
            return;
        }
        char human[40] = ""; /* " (1.5 MiB)" where bytes alone are hard to read */
        if (p->done >= 1024) {
            format_size(p->done, size, sizeof size);
            snprintf(human, sizeof human, " (%s)", size);
        }
        format_size(seconds > 0 ? (uint64_t)((double)p->done / seconds) : 0, rate,
                    sizeof rate);
        fprintf(stderr, PROG ": %s: %" PRIu64 " bytes%s in %.3f s, %s/s\n", what, p->done,
                human, seconds, rate);
    } else if (o->kind != OP_LIST) { /* a listing is its own report */
        fprintf(stderr, PROG ": %s: %" PRIu64 " bytes in %.3f s\n", what, p->done, seconds);
    }
}

/* Says, after a failed connect, what the reason most likely means. */
static void connect_hint(const client_args *a, int rc, const char *err, char *buf,
                         size_t len)
{
    buf[0] = '\0';
    /* A refusal almost always means nothing listens there. The library's
       detail carries strerror(ECONNREFUSED) in that case. */
    if (rc == TF_ENET && strstr(err, strerror(ECONNREFUSED)))
        snprintf(buf, len, "; is tcpfile-server running on %s port %s?", a->host, a->port);
    else if (rc == TF_ENET && strstr(err, "resolve"))
        snprintf(buf, len, "; check the host name");
    else if (rc == TF_ETIMEDOUT)
        snprintf(buf, len,
                 "; is %s reachable and tcpfile-server on port %s responding?"
                 " (--timeout SECONDS waits longer)",
                 a->host, a->port);
    else if (rc == TF_EBUSY)
        snprintf(buf, len, "; it serves its maximum of clients at once: try again later");
    else if (rc == TF_EPROTO)
        snprintf(buf, len, "; is port %s that of a tcpfile-server?", a->port);
}

static tf_client *connect_or_report(const client_args *a)
{
    char err[512], hint[512];
    tf_client *c;
    double start = now_seconds();
    if (a->verbosity >= VERBOSE) {
        int64_t cto = 0, ito = 0;
        tf_options_get(a->opt, TF_OPT_CONNECT_TIMEOUT_MS, &cto);
        tf_options_get(a->opt, TF_OPT_IO_TIMEOUT_MS, &ito);
        fprintf(stderr,
                PROG ": connecting to %s port %s (libtcpfile %s; timeouts: connect %.3g s,"
                     " stalled transfer %.3g s, 0 = none)\n",
                a->host, a->port, tf_version_string(), (double)cto / 1000,
                (double)ito / 1000);
    }
    int rc = tf_connect_ex(&c, a->host, a->port, a->opt, err, sizeof err);
    if (rc == TF_OK) {
        if (a->verbosity >= VERBOSE)
            fprintf(stderr,
                    PROG ": connected in %.3f s; the server takes names of up to %d"
                         " bytes\n",
                    now_seconds() - start, tf_client_max_name(c));
        return c;
    }
    connect_hint(a, rc, err, hint, sizeof hint);
    fprintf(stderr, PROG ": connect to %s port %s: %s%s%s%s%s\n", a->host, a->port,
            tf_strerror(rc), err[0] ? " (" : "", err, err[0] ? ")" : "", hint);
    return NULL;
}

static int run(client_args *a)
{
    progress p = {0};
    p.bar_enabled = a->verbosity > QUIET && isatty(STDERR_FILENO);
    tf_options_set_progress(a->opt, on_progress, &p);
    double begin = now_seconds();
    tf_client *c = connect_or_report(a);
    if (!c)
        return EXIT_FAILED;
    /* A person reads a listing on a terminal; a program reads it anywhere
       else and gets the stable tab-separated form. */
    int stdout_tty = isatty(STDOUT_FILENO);
    int status = EXIT_OK;
    size_t i;
    for (i = 0; i < a->nops && status == EXIT_OK; i++) {
        const op *o = &a->ops[i];
        char label[8192];
        snprintf(label, sizeof label, "%s %s", o->kind == OP_GET ? "get" : "put",
                 o->kind == OP_LIST ? "" : remote_name(o));
        p = (progress){.bar_enabled = p.bar_enabled,
                       .label = o->kind == OP_LIST ? "list" : label};
        char why[512] = "";
        size_t files = 0;
        double start = now_seconds();
        int rc = run_op(c, o, o->human || a->human || stdout_tty, &files, why, sizeof why);
        double seconds = now_seconds() - start;
        bar_erase(&p);
        if (rc != TF_OK) {
            report_failure(a, c, o, rc, why);
            status = EXIT_FAILED;
        } else if (a->verbosity > QUIET) {
            report_success(a, o, &p, files, seconds);
        }
    }
    tf_close(c);
    if (a->verbosity >= VERBOSE)
        fprintf(stderr, PROG ": %zu of %zu operation%s done in %.3f s; connection closed\n",
                status == EXIT_OK ? i : i - 1, a->nops, a->nops == 1 ? "" : "s",
                now_seconds() - begin);
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
