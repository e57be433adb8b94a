/*
 * tcpfile-bench - measures a tcpfile server through the public API.
 *
 *   tcpfile-bench [TARGET] get NAME [--out PATH] [--count K]
 *   tcpfile-bench [TARGET] put LOCAL [NAME] [--count K]
 *   tcpfile-bench [TARGET] small [--count N] [--prefix P --files F --digits D]
 *   tcpfile-bench [TARGET] concurrent [--conns C] [--seconds S] [--prefix ...]
 *   tcpfile-bench [TARGET] idle [--conns N] [--name NAME] [--gets K]
 *
 * TARGET is either an external server (--host HOST --port PORT, with
 * --server-pid PID to report its memory and CPU) or, by default, a server
 * run inside this process on 127.0.0.1, port 0, serving --root DIR.
 *
 * Every mode prints a few human-readable lines and then one line
 * "RESULT key=value ..." for scripts (bench/compare.sh reads it). A thin
 * user of tcpfile.h only, like the example programs.
 */
#define _GNU_SOURCE /* RUSAGE_THREAD, getopt_long */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli_parse.h"
#include "tcpfile.h"

#define PROG "tcpfile-bench"
/* Most requests in flight per connection in concurrent --async. */
#define TF__BENCH_MAX_DEPTH 256

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* ---- command line ------------------------------------------------------ */

typedef struct args {
    /* target */
    const char *host;
    const char *port;
    const char *root;
    long server_pid; /* 0: none given */
    int64_t max_connections;
    int64_t checksum; /* -1: the library's default */
    /* mode */
    const char *mode;
    const char *arg1;
    const char *arg2;
    const char *out;
    const char *prefix;
    const char *name;
    int64_t count; /* -1: the mode's default */
    int64_t files; /* -1: same as count */
    int64_t digits;
    int64_t conns; /* -1: the mode's default */
    double seconds;
    int64_t gets;
    int64_t settle_ms;
    int64_t pipeline; /* >1: small and concurrent use tf_get_many */
    int async;        /* concurrent: one thread, tf_aclient over epoll */
    int64_t threads;  /* concurrent --async: event loops (1) */
    const char *tls_pin; /* the client speaks TLS, pinning this key */
} args;

static void usage(FILE *to)
{
    fprintf(
        to,
        "Usage: " PROG " [TARGET] MODE [ARGS] [OPTIONS]\n"
        "\n"
        "Target (default: a server inside this process on 127.0.0.1, port 0):\n"
        "  --host HOST --port PORT   measure an external server instead\n"
        "  --server-pid PID          report that process's resident memory (VmRSS)\n"
        "                            and CPU time\n"
        "  --root DIR                in-process server: directory served (default .)\n"
        "  --max-connections N       in-process server: connection limit (20000)\n"
        "  --tls-pin SHA256:...      speak TLS to the server, accepting only this key\n"
        "  --checksum 0|1            end-to-end checksums on or off (TF_OPT_CHECKSUM,\n"
        "                            client and in-process server; default: the\n"
        "                            library's)\n"
        "\n"
        "Modes:\n"
        "  get NAME      download NAME --count times (1) over one connection to\n"
        "                --out PATH (default /dev/null; a file path goes through\n"
        "                tf_get's temporary file and rename)\n"
        "  put LOCAL [NAME]  upload LOCAL --count times (1) as NAME (default:\n"
        "                its last component)\n"
        "  small         --count gets (10000) over one connection, of the names\n"
        "                PREFIX + the index modulo --files, zero-padded to --digits\n"
        "                (defaults: --prefix s --files COUNT --digits 5), to /dev/null\n"
        "  concurrent    --conns threads (64), each with its own connection,\n"
        "                getting those names for --seconds (10)\n"
        "                small and concurrent take --pipeline N (default 1): with\n"
        "                N > 1 the gets go through tf_get_many, N requests in\n"
        "                flight (TF_OPT_PIPELINE), in batches of 4N names; the\n"
        "                latency figures are then per batch divided by its size,\n"
        "                and bytes are not counted (no progress callback)\n"
        "                concurrent --async: one thread drives every connection\n"
        "                through the event-driven client (tf_aclient, epoll), one\n"
        "                request in flight each (--pipeline N: N each)\n"
        "  connections   --count times (1000): a new connection, a get of --name\n"
        "                (m1.bin) to /dev/null, close (with --tls-pin: one options\n"
        "                object, so TLS sessions resume)\n"
        "  idle          hold --conns idle connections (10000) and meanwhile time\n"
        "                --gets downloads (20) of --name (m1.bin), each on a new\n"
        "                connection; reports the server's memory per connection\n"
        "                (--settle-ms 1000: wait before reading it)\n"
        "\n"
        "Output: human-readable lines, then \"RESULT key=value ...\". MB = 10^6 bytes.\n"
        "Client CPU is the CPU time of the threads that run the client calls.\n");
}

static int usage_error(const char *what, const char *arg)
{
    return cli_usage_error(PROG, what, arg);
}

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_ROOT,
    OPT_SERVER_PID,
    OPT_MAX_CONN,
    OPT_CHECKSUM,
    OPT_OUT,
    OPT_COUNT,
    OPT_PREFIX,
    OPT_FILES,
    OPT_DIGITS,
    OPT_CONNS,
    OPT_SECONDS,
    OPT_NAME,
    OPT_GETS,
    OPT_SETTLE,
    OPT_PIPELINE,
    OPT_ASYNC,
    OPT_THREADS,
    OPT_TLS_PIN,
    OPT_HELP,
    OPT_VERSION
};

static int parse_args(int argc, char **argv, args *a)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"root", required_argument, NULL, OPT_ROOT},
        {"server-pid", required_argument, NULL, OPT_SERVER_PID},
        {"max-connections", required_argument, NULL, OPT_MAX_CONN},
        {"checksum", required_argument, NULL, OPT_CHECKSUM},
        {"out", required_argument, NULL, OPT_OUT},
        {"count", required_argument, NULL, OPT_COUNT},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"files", required_argument, NULL, OPT_FILES},
        {"digits", required_argument, NULL, OPT_DIGITS},
        {"conns", required_argument, NULL, OPT_CONNS},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"name", required_argument, NULL, OPT_NAME},
        {"gets", required_argument, NULL, OPT_GETS},
        {"settle-ms", required_argument, NULL, OPT_SETTLE},
        {"pipeline", required_argument, NULL, OPT_PIPELINE},
        {"async", no_argument, NULL, OPT_ASYNC},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"tls-pin", required_argument, NULL, OPT_TLS_PIN},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    a->root = ".";
    a->max_connections = 20000;
    a->checksum = -1;
    a->out = "/dev/null";
    a->prefix = "s";
    a->name = "m1.bin";
    a->count = -1;
    a->files = -1;
    a->digits = 5;
    a->conns = -1;
    a->seconds = 10;
    a->gets = 20;
    a->settle_ms = 1000;
    opterr = 0;
    int ch;
    int64_t v;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_HOST:
            a->host = optarg;
            break;
        case OPT_PORT:
            a->port = optarg;
            break;
        case OPT_ROOT:
            a->root = optarg;
            break;
        case OPT_SERVER_PID:
            if (cli_parse_int(optarg, 1, INT32_MAX, &v) != 0)
                return usage_error("--server-pid needs a process id, not", optarg);
            a->server_pid = (long)v;
            break;
        case OPT_MAX_CONN:
            if (cli_parse_int(optarg, 1, 1000000, &a->max_connections) != 0)
                return usage_error("--max-connections needs 1..1000000, not", optarg);
            break;
        case OPT_CHECKSUM:
            if (cli_parse_int(optarg, 0, 1, &a->checksum) != 0)
                return usage_error("--checksum needs 0 or 1, not", optarg);
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_COUNT:
            if (cli_parse_int(optarg, 1, INT32_MAX, &a->count) != 0)
                return usage_error("--count needs a positive number, not", optarg);
            break;
        case OPT_PREFIX:
            a->prefix = optarg;
            break;
        case OPT_FILES:
            if (cli_parse_int(optarg, 1, INT32_MAX, &a->files) != 0)
                return usage_error("--files needs a positive number, not", optarg);
            break;
        case OPT_DIGITS:
            if (cli_parse_int(optarg, 0, 18, &a->digits) != 0)
                return usage_error("--digits needs 0..18, not", optarg);
            break;
        case OPT_CONNS:
            if (cli_parse_int(optarg, 1, 1000000, &a->conns) != 0)
                return usage_error("--conns needs 1..1000000, not", optarg);
            break;
        case OPT_SECONDS:
            if (cli_parse_double(optarg, &a->seconds) != 0 ||
                !(a->seconds > 0 && a->seconds <= 3600))
                return usage_error("--seconds needs a number in (0, 3600], not", optarg);
            break;
        case OPT_NAME:
            a->name = optarg;
            break;
        case OPT_GETS:
            if (cli_parse_int(optarg, 0, 1000000, &a->gets) != 0)
                return usage_error("--gets needs a number, not", optarg);
            break;
        case OPT_SETTLE:
            if (cli_parse_int(optarg, 0, 600000, &a->settle_ms) != 0)
                return usage_error("--settle-ms needs 0..600000, not", optarg);
            break;
        case OPT_PIPELINE:
            if (cli_parse_int(optarg, 1, 256, &a->pipeline) != 0)
                return usage_error("--pipeline needs 1..256, not", optarg);
            break;
        case OPT_ASYNC:
            a->async = 1;
            break;
        case OPT_THREADS:
            if (cli_parse_int(optarg, 1, 64, &a->threads) != 0)
                return usage_error("--threads needs 1..64, not", optarg);
            break;
        case OPT_TLS_PIN:
            a->tls_pin = optarg;
            break;
        case OPT_HELP:
            usage(stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf(PROG " (libtcpfile %s)\n", tf_version_string());
            return EXIT_OK;
        default: /* ':' (a missing value) or '?' (an unknown option) */
            return cli_option_error(PROG, ch, argv);
        }
    }
    if ((a->host == NULL) != (a->port == NULL))
        return usage_error("--host and --port go together", NULL);
    int left = argc - optind;
    if (left < 1)
        return usage_error("missing MODE (get, put, small, concurrent or idle)", NULL);
    a->mode = argv[optind];
    a->arg1 = left > 1 ? argv[optind + 1] : NULL;
    a->arg2 = left > 2 ? argv[optind + 2] : NULL;
    int want_max = 1;
    if (strcmp(a->mode, "get") == 0) {
        if (!a->arg1)
            return usage_error("get needs a NAME", NULL);
        want_max = 2;
    } else if (strcmp(a->mode, "put") == 0) {
        if (!a->arg1)
            return usage_error("put needs a LOCAL file", NULL);
        want_max = 3;
    } else if (strcmp(a->mode, "small") != 0 && strcmp(a->mode, "concurrent") != 0 &&
               strcmp(a->mode, "idle") != 0 && strcmp(a->mode, "connections") != 0) {
        return usage_error("unknown mode", a->mode);
    }
    if (left > want_max)
        return usage_error("too many arguments, starting at", argv[optind + want_max]);
    return -1;
}

/* ---- measuring --------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct cpu {
    double user;
    double sys;
} cpu;

static cpu cpu_now(int who)
{
    struct rusage ru;
    cpu c = {0, 0};
    if (getrusage(who, &ru) == 0) {
        c.user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
        c.sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    }
    return c;
}

static cpu cpu_since(int who, cpu start)
{
    cpu c = cpu_now(who);
    c.user -= start.user;
    c.sys -= start.sys;
    return c;
}

/* VmRSS of pid in KiB, or -1. */
static long rss_kib(long pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* utime + stime of every thread of pid, in seconds, or -1. */
static double proc_cpu(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields are counted
       from the last ')'. utime and stime are fields 14 and 15; the one
       after ')' is field 3. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) !=
        2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A growable array of latencies, in seconds. */
typedef struct samples {
    double *v;
    size_t n;
    size_t cap;
} samples;

static int samples_add(samples *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
static double percentile(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

/* What one mode measured, printed by report(). */
typedef struct result {
    const char *mode;
    uint64_t bytes;
    uint64_t requests;
    uint64_t errors;
    double seconds; /* the timed part */
    samples lat;    /* per-request latency */
    cpu client;     /* the client threads */
    cpu process;    /* the whole process (includes an in-process server) */
    long server_pid;
    long rss_kib;      /* server RSS at the end */
    double server_cpu; /* seconds used by an external server during the run; -1 unknown */
    char extra[512];   /* more "key=value" pairs for the RESULT line */
} result;

static void report(result *r)
{
    double sec = r->seconds > 0 ? r->seconds : 1e-9;
    double mbps = (double)r->bytes / sec / 1e6;
    double rps = (double)r->requests / sec;
    qsort(r->lat.v, r->lat.n, sizeof *r->lat.v, cmp_double);
    double p50 = percentile(r->lat.v, r->lat.n, 50) * 1e3;
    double p90 = percentile(r->lat.v, r->lat.n, 90) * 1e3;
    double p99 = percentile(r->lat.v, r->lat.n, 99) * 1e3;
    double pmax = r->lat.n ? r->lat.v[r->lat.n - 1] * 1e3 : 0;
    double ccpu = r->client.user + r->client.sys;

    printf("  bytes        %" PRIu64 "\n", r->bytes);
    printf("  time         %.3f s\n", r->seconds);
    printf("  throughput   %.1f MB/s\n", mbps);
    printf("  requests     %" PRIu64 " (%.1f /s), %" PRIu64 " failed\n", r->requests, rps,
           r->errors);
    printf("  latency      p50 %.3f  p90 %.3f  p99 %.3f  max %.3f ms\n", p50, p90, p99,
           pmax);
    printf("  client CPU   user %.3f s  sys %.3f s  (%.0f%% of one core)\n", r->client.user,
           r->client.sys, 100.0 * ccpu / sec);
    printf("  process CPU  user %.3f s  sys %.3f s\n", r->process.user, r->process.sys);
    if (r->server_cpu >= 0)
        printf("  server CPU   %.2f s (pid %ld)\n", r->server_cpu, r->server_pid);
    if (r->rss_kib >= 0)
        printf("  server RSS   %ld KiB (pid %ld)\n", r->rss_kib, r->server_pid);
    printf("RESULT mode=%s bytes=%" PRIu64 " seconds=%.6f mbps=%.2f requests=%" PRIu64
           " reqps=%.1f errors=%" PRIu64 " p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f"
           " client_user=%.3f client_sys=%.3f server_cpu=%.3f rss_kib=%ld%s%s\n",
           r->mode, r->bytes, r->seconds, mbps, r->requests, rps, r->errors, p50, p90, p99,
           pmax, r->client.user, r->client.sys, r->server_cpu, r->rss_kib,
           r->extra[0] ? " " : "", r->extra);
    fflush(stdout);
    free(r->lat.v);
    r->lat.v = NULL;
}

/* ---- the target --------------------------------------------------------- */

typedef struct target {
    const char *host;
    char port[16];
    long pid; /* whose memory and CPU to report; 0 = nobody's */
    int inproc;
    tf_server *srv;
    pthread_t thread;
    int run_rc;
} target;

static void *server_main(void *p)
{
    target *t = p;
    t->run_rc = tf_server_run(t->srv);
    return NULL;
}

static int target_open(target *t, const args *a)
{
    memset(t, 0, sizeof *t);
    if (a->host) {
        t->host = a->host;
        snprintf(t->port, sizeof t->port, "%s", a->port);
        t->pid = a->server_pid;
        return 0;
    }
    tf_options *opt;
    if (tf_options_new(&opt) != TF_OK)
        return -1;
    tf_options_set(opt, TF_OPT_MAX_CONNECTIONS, a->max_connections);
    if (a->checksum >= 0)
        tf_options_set(opt, TF_OPT_CHECKSUM, a->checksum);
    char err[512];
    int rc = tf_server_open_ex(&t->srv, "127.0.0.1", "0", a->root, opt, err, sizeof err);
    tf_options_free(opt);
    if (rc != TF_OK) {
        fprintf(stderr, PROG ": in-process server on \"%s\": %s (%s)\n", a->root,
                tf_strerror(rc), err);
        return -1;
    }
    if (pthread_create(&t->thread, NULL, server_main, t) != 0) {
        fprintf(stderr, PROG ": cannot start the server thread\n");
        tf_server_close(t->srv);
        return -1;
    }
    t->inproc = 1;
    t->host = "127.0.0.1";
    snprintf(t->port, sizeof t->port, "%d", tf_server_port(t->srv));
    t->pid = (long)getpid();
    printf("in-process server: 127.0.0.1 port %s, root %s\n", t->port, a->root);
    return 0;
}

static void target_close(target *t)
{
    if (!t->inproc)
        return;
    tf_server_stop(t->srv);
    pthread_join(t->thread, NULL);
    tf_server_close(t->srv);
    t->inproc = 0;
}

/* ---- client helpers ----------------------------------------------------- */

/* Counts payload bytes through the progress callbacks: a transfer reports
   its total; a tf_get_many batch reports each item's, which add up. Reset
   (x = (xfer){0}) before each call. */
typedef struct xfer {
    uint64_t total;  /* the call's bytes so far */
    uint64_t before; /* a batch: the bytes of the items before this one */
    size_t item;     /* a batch: this item's index + 1 (0: none yet) */
} xfer;

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    xfer *x = user;
    x->total = total > done ? total : done;
    return 0;
}

static int on_item_progress(void *user, size_t index, uint64_t done, uint64_t total)
{
    xfer *x = user;
    if (x->item != index + 1) {
        x->before = x->total;
        x->item = index + 1;
    }
    x->total = x->before + (total > done ? total : done);
    return 0;
}

static tf_client *connect_or_report(const target *t, const tf_options *opt)
{
    tf_client *c;
    char err[512];
    int rc = tf_connect_ex(&c, t->host, t->port, opt, err, sizeof err);
    if (rc != TF_OK) {
        fprintf(stderr, PROG ": connect to %s port %s: %s (%s)\n", t->host, t->port,
                tf_strerror(rc), err);
        return NULL;
    }
    return c;
}

static int make_client_options(tf_options **opt, xfer *x, const args *a)
{
    if (tf_options_new(opt) != TF_OK)
        return -1;
    tf_options_set_progress(*opt, on_progress, x);
    tf_options_set_item_progress(*opt, on_item_progress, x);
    if (a->checksum >= 0)
        tf_options_set(*opt, TF_OPT_CHECKSUM, a->checksum);
    if (a->pipeline > 1)
        tf_options_set(*opt, TF_OPT_PIPELINE, a->pipeline);
    if (a->tls_pin &&
        (tf_options_set(*opt, TF_OPT_TLS, 1) != TF_OK ||
         tf_options_set_string(*opt, TF_SOPT_TLS_PIN, a->tls_pin) != TF_OK))
        return -1;
    return 0;
}

static void small_name(const args *a, uint64_t i, char *buf, size_t len)
{
    uint64_t files = (uint64_t)(a->files > 0 ? a->files : a->count);
    snprintf(buf, len, "%s%0*" PRIu64, a->prefix, (int)a->digits, i % files);
}

/* Most names one tf_get_many batch carries: 4 windows of --pipeline. */
#define BATCH_MAX 1024

/* Gets up to want names from index *next on, to devnull: one tf_get_fd,
   or a tf_get_many batch when pipelining. Returns how many were got (0
   with *rc set on a failure, the message in err). */
static int64_t get_some(const args *a, tf_client *c, uint64_t *next, int64_t want, int devnull,
                        int *rc, char *err, size_t errlen)
{
    static __thread char names[BATCH_MAX][64];
    tf_get_item items[BATCH_MAX];
    int64_t n = a->pipeline > 1 ? 4 * a->pipeline : 1;
    if (n > want)
        n = want;
    for (int64_t k = 0; k < n; k++) {
        small_name(a, (*next)++, names[k], sizeof names[k]);
        items[k] = (tf_get_item){.name = names[k], .fd = devnull};
    }
    *rc = n == 1 && a->pipeline <= 1 ? tf_get_fd(c, names[0], devnull)
                                     : tf_get_many(c, items, (size_t)n);
    if (*rc != TF_OK) {
        snprintf(err, errlen, "get %s: %s (%s)", n == 1 ? names[0] : "(batch)",
                 tf_strerror(*rc), tf_errmsg(c));
        return 0;
    }
    return n;
}

static void begin_result(result *r, const char *mode, const target *t)
{
    memset(r, 0, sizeof *r);
    r->mode = mode;
    r->server_pid = t->pid;
    r->rss_kib = -1;
    r->server_cpu = -1;
}

/* Server memory and CPU at the end of a run (CPU only for an external
   server: an in-process one is part of "process CPU"). */
static void end_result(result *r, const target *t, double server_cpu0)
{
    if (t->pid > 0)
        r->rss_kib = rss_kib(t->pid);
    if (t->pid > 0 && !t->inproc && server_cpu0 >= 0) {
        double c1 = proc_cpu(t->pid);
        r->server_cpu = c1 >= 0 ? c1 - server_cpu0 : -1;
    }
}

static double server_cpu_start(const target *t)
{
    return t->pid > 0 && !t->inproc ? proc_cpu(t->pid) : -1;
}

/* ---- modes --------------------------------------------------------------- */

/* get and put: K transfers of one large file over one connection. */
static int run_transfer(const args *a, const target *t, int is_put)
{
    xfer x = {0};
    tf_options *opt;
    if (make_client_options(&opt, &x, a) != 0)
        return EXIT_FAILED;
    int64_t count = a->count > 0 ? a->count : 1;
    const char *name = a->arg1;
    if (is_put) {
        name = a->arg2;
        if (!name) {
            const char *slash = strrchr(a->arg1, '/');
            name = slash ? slash + 1 : a->arg1;
        }
        printf("put %s as %s, %" PRId64 " time(s), server %s port %s\n", a->arg1, name,
               count, t->host, t->port);
    } else {
        printf("get %s to %s, %" PRId64 " time(s), server %s port %s\n", name, a->out,
               count, t->host, t->port);
    }
    result r;
    begin_result(&r, is_put ? "put" : "get", t);
    double scpu0 = server_cpu_start(t);
    cpu c0 = cpu_now(RUSAGE_THREAD), p0 = cpu_now(RUSAGE_SELF);
    double t0 = now();
    tf_client *c = connect_or_report(t, opt);
    int status = EXIT_OK;
    double connect_s = now() - t0;
    for (int64_t i = 0; c && i < count; i++) {
        x = (xfer){0};
        double s = now();
        int rc = is_put ? tf_put(c, a->arg1, name) : tf_get(c, name, a->out);
        double e = now();
        if (rc != TF_OK) {
            fprintf(stderr, PROG ": %s %s: %s (%s)\n", r.mode, name, tf_strerror(rc),
                    tf_errmsg(c));
            r.errors++;
            status = EXIT_FAILED;
            break;
        }
        samples_add(&r.lat, e - s);
        r.bytes += x.total;
        r.requests++;
    }
    r.seconds = now() - t0;
    r.client = cpu_since(RUSAGE_THREAD, c0);
    r.process = cpu_since(RUSAGE_SELF, p0);
    tf_close(c);
    tf_options_free(opt);
    if (!c)
        return EXIT_FAILED;
    end_result(&r, t, scpu0);
    printf("  connect      %.3f ms (included in time)\n", connect_s * 1e3);
    snprintf(r.extra, sizeof r.extra, "connect_ms=%.3f", connect_s * 1e3);
    report(&r);
    return status;
}

static int open_devnull(void)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        fprintf(stderr, PROG ": /dev/null: %s\n", strerror(errno));
    return fd;
}

/* small: many small gets, one after the other, over one connection. */
static int run_small(const args *a, const target *t)
{
    xfer x = {0};
    tf_options *opt;
    int devnull = open_devnull();
    if (devnull < 0 || make_client_options(&opt, &x, a) != 0)
        return EXIT_FAILED;
    int64_t count = a->count > 0 ? a->count : 10000;
    args local = *a;
    local.count = count;
    printf("small: %" PRId64 " gets over one connection, server %s port %s\n", count,
           t->host, t->port);
    result r;
    begin_result(&r, "small", t);
    double scpu0 = server_cpu_start(t);
    cpu c0 = cpu_now(RUSAGE_THREAD), p0 = cpu_now(RUSAGE_SELF);
    double t0 = now();
    tf_client *c = connect_or_report(t, opt);
    int status = c ? EXIT_OK : EXIT_FAILED;
    uint64_t next = 0;
    for (int64_t i = 0; c && i < count;) {
        char err[600];
        int rc;
        x = (xfer){0};
        double s = now();
        int64_t got = get_some(&local, c, &next, count - i, devnull, &rc, err, sizeof err);
        double e = now();
        if (rc != TF_OK) {
            fprintf(stderr, PROG ": %s\n", err);
            r.errors++;
            status = EXIT_FAILED;
            break;
        }
        for (int64_t k = 0; k < got; k++)
            samples_add(&r.lat, (e - s) / (double)got);
        r.bytes += x.total;
        r.requests += (uint64_t)got;
        i += got;
    }
    r.seconds = now() - t0;
    r.client = cpu_since(RUSAGE_THREAD, c0);
    r.process = cpu_since(RUSAGE_SELF, p0);
    tf_close(c);
    tf_options_free(opt);
    close(devnull);
    end_result(&r, t, scpu0);
    snprintf(r.extra, sizeof r.extra, "files_per_s=%.1f",
             r.seconds > 0 ? (double)r.requests / r.seconds : 0);
    report(&r);
    return status;
}

/* connections: what a client that connects for each file costs (the TCP
   and TLS handshakes, the hello, a get, the close), one after the other,
   all from one options object (TLS: sessions resume). */
static int run_connections(const args *a, const target *t)
{
    xfer x = {0};
    tf_options *opt;
    int devnull = open_devnull();
    if (devnull < 0 || make_client_options(&opt, &x, a) != 0)
        return EXIT_FAILED;
    int64_t count = a->count > 0 ? a->count : 1000;
    printf("connections: %" PRId64 " x (connect, get %s, close), server %s port %s%s\n",
           count, a->name, t->host, t->port, a->tls_pin ? ", TLS" : "");
    result r;
    begin_result(&r, "connections", t);
    double scpu0 = server_cpu_start(t);
    cpu c0 = cpu_now(RUSAGE_THREAD), p0 = cpu_now(RUSAGE_SELF);
    double t0 = now();
    int status = EXIT_OK;
    for (int64_t i = 0; i < count; i++) {
        double s = now();
        tf_client *c = connect_or_report(t, opt);
        if (!c) {
            status = EXIT_FAILED;
            r.errors++;
            break;
        }
        x = (xfer){0};
        int rc = tf_get_fd(c, a->name, devnull);
        tf_close(c);
        if (rc != TF_OK) {
            fprintf(stderr, PROG ": get %s: %s\n", a->name, tf_strerror(rc));
            status = EXIT_FAILED;
            r.errors++;
            break;
        }
        samples_add(&r.lat, now() - s);
        r.bytes += x.total;
        r.requests++;
    }
    r.seconds = now() - t0;
    r.client = cpu_since(RUSAGE_THREAD, c0);
    r.process = cpu_since(RUSAGE_SELF, p0);
    tf_options_free(opt);
    close(devnull);
    end_result(&r, t, scpu0);
    snprintf(r.extra, sizeof r.extra, "connections_per_s=%.1f",
             r.seconds > 0 ? (double)r.requests / r.seconds : 0);
    report(&r);
    return status;
}

/* concurrent: C threads, each its own tf_client, for a fixed duration. */
typedef struct worker {
    const args *a;
    const target *t;
    pthread_barrier_t *start;
    const double *deadline_p; /* set by the main thread before the barrier opens */
    unsigned index;
    unsigned nworkers;
    int devnull;
    /* results */
    samples lat;
    uint64_t bytes;
    uint64_t requests;
    uint64_t errors;
    uint64_t reconnects;
    cpu used;
    char first_error[600];
} worker;

static void *worker_main(void *p)
{
    worker *w = p;
    xfer x = {0};
    tf_options *opt = NULL;
    tf_client *c = NULL;
    if (make_client_options(&opt, &x, w->a) == 0)
        c = connect_or_report(w->t, opt);
    /* Every thread, connected or not, must reach the barrier. */
    pthread_barrier_wait(w->start);
    cpu c0 = cpu_now(RUSAGE_THREAD);
    double deadline = *w->deadline_p;
    uint64_t files = (uint64_t)(w->a->files > 0 ? w->a->files : 10000);
    /* Threads start at different names so that they do not all read the
       same file at the same time. */
    uint64_t i = files * w->index / w->nworkers;
    args local = *w->a;
    local.files = (int64_t)files;
    while (opt) {
        double s = now();
        if (s >= deadline)
            break;
        if (!c) {
            w->reconnects++;
            c = connect_or_report(w->t, opt);
            if (!c) {
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
            s = now();
        }
        x = (xfer){0};
        int rc;
        char err[600];
        int64_t got = get_some(&local, c, &i, INT64_MAX, w->devnull, &rc, err, sizeof err);
        double e = now();
        if (rc != TF_OK) {
            if (!w->errors)
                snprintf(w->first_error, sizeof w->first_error, "%s", err);
            w->errors++;
            tf_close(c);
            c = NULL;
            continue;
        }
        for (int64_t k = 0; k < got; k++)
            samples_add(&w->lat, (e - s) / (double)got);
        w->bytes += x.total;
        w->requests += (uint64_t)got;
    }
    w->used = cpu_since(RUSAGE_THREAD, c0);
    tf_close(c);
    tf_options_free(opt);
    return NULL;
}

static int run_concurrent(const args *a, const target *t)
{
    unsigned n = (unsigned)(a->conns > 0 ? a->conns : 64);
    int devnull = open_devnull();
    if (devnull < 0)
        return EXIT_FAILED;
    worker *w = calloc(n, sizeof *w);
    pthread_t *tid = calloc(n, sizeof *tid);
    pthread_barrier_t start;
    double deadline = 0;
    if (!w || !tid || pthread_barrier_init(&start, NULL, n + 1) != 0) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    printf("concurrent: %u connections for %.1f s, server %s port %s\n", n, a->seconds,
           t->host, t->port);
    unsigned started = 0;
    for (; started < n; started++) {
        w[started] = (worker){.a = a,
                              .t = t,
                              .start = &start,
                              .deadline_p = &deadline,
                              .index = started,
                              .nworkers = n,
                              .devnull = devnull};
        if (pthread_create(&tid[started], NULL, worker_main, &w[started]) != 0)
            break;
    }
    if (started < n) {
        /* The barrier counts n + 1: without every thread it would never
           open. This only happens when threads cannot be created at all. */
        fprintf(stderr, PROG ": could start only %u of %u threads\n", started, n);
        exit(EXIT_FAILED);
    }
    result r;
    begin_result(&r, "concurrent", t);
    double scpu0 = server_cpu_start(t);
    cpu p0 = cpu_now(RUSAGE_SELF);
    double t0 = now();
    deadline = t0 + a->seconds;
    pthread_barrier_wait(&start);
    for (unsigned i = 0; i < n; i++)
        pthread_join(tid[i], NULL);
    r.seconds = now() - t0;
    r.process = cpu_since(RUSAGE_SELF, p0);
    uint64_t reconnects = 0;
    for (unsigned i = 0; i < n; i++) {
        for (size_t k = 0; k < w[i].lat.n; k++)
            samples_add(&r.lat, w[i].lat.v[k]);
        free(w[i].lat.v);
        r.bytes += w[i].bytes;
        r.requests += w[i].requests;
        r.errors += w[i].errors;
        reconnects += w[i].reconnects;
        r.client.user += w[i].used.user;
        r.client.sys += w[i].used.sys;
        if (w[i].errors && r.errors == w[i].errors)
            fprintf(stderr, PROG ": first failure: %s\n", w[i].first_error);
    }
    end_result(&r, t, scpu0);
    if (r.errors)
        printf("  failures     %" PRIu64 " (each followed by a reconnect; %" PRIu64
               " reconnects)\n",
               r.errors, reconnects);
    snprintf(r.extra, sizeof r.extra, "conns=%u reconnects=%" PRIu64, n, reconnects);
    report(&r);
    pthread_barrier_destroy(&start);
    free(w);
    free(tid);
    close(devnull);
    return r.errors ? EXIT_FAILED : EXIT_OK;
}

/* concurrent --async: every connection in this one thread, each a
   tf_aclient on one epoll set, each getting the next name as soon as its
   last answer came (wrk's shape: one request in flight per connection). */
typedef struct aconn {
    tf_aclient *c;
    const args *a;
    result *r;
    uint64_t next;       /* the next name's index */
    double sent[TF__BENCH_MAX_DEPTH];
    unsigned head, tail; /* the send times of the requests in flight */
    int dead;
    int watched; /* the events registered with epoll */
    char first_error[600];
} aconn;

static double g_adeadline;

static void aqueue(aconn *k);

static void on_aget(tf_aclient *c, void *user, tf_aresult *res)
{
    aconn *k = user;
    double e = now();
    (void)c;
    double s = k->sent[k->head++ % TF__BENCH_MAX_DEPTH];
    if (res->result != TF_OK) {
        if (!k->r->errors)
            snprintf(k->first_error, sizeof k->first_error, "get %s: %s (%s)", res->name,
                     tf_strerror(res->result), res->message);
        k->r->errors++;
        return;
    }
    samples_add(&k->r->lat, e - s);
    k->r->bytes += res->size;
    k->r->requests++;
    if (e < g_adeadline)
        aqueue(k);
}

static void aqueue(aconn *k)
{
    char name[64];
    small_name(k->a, k->next++, name, sizeof name);
    k->sent[k->tail++ % TF__BENCH_MAX_DEPTH] = now();
    if (tf_aclient_get_mem(k->c, name, on_aget, k) != TF_OK)
        k->dead = 1;
}

static void awatch(int ep, int op, aconn *k)
{
    int want = tf_aclient_events(k->c);
    if (op == EPOLL_CTL_MOD && want == k->watched)
        return; /* a system call saved per request */
    k->watched = want;
    struct epoll_event ev = {.events = (want & TF_WANT_READ ? EPOLLIN : 0u) |
                                       (want & TF_WANT_WRITE ? EPOLLOUT : 0u),
                             .data.ptr = k};
    (void)epoll_ctl(ep, op, tf_aclient_fd(k->c), &ev);
}

/* One event loop of concurrent --async: its connections on its epoll set,
   its own result (merged after the join, no lock). */
typedef struct aloop {
    aconn *k;
    unsigned n;
    int ep;
    int depth; /* requests in flight per connection */
    result r;
    cpu used;
    pthread_t tid;
} aloop;

static void *aloop_main(void *p)
{
    aloop *l = p;
    cpu c0 = cpu_now(RUSAGE_THREAD);
    unsigned live = 0;
    for (unsigned i = 0; i < l->n; i++) {
        for (int d = 0; d < l->depth; d++)
            aqueue(&l->k[i]);
        awatch(l->ep, EPOLL_CTL_ADD, &l->k[i]);
        live++;
    }
    struct epoll_event evs[256];
    while (live > 0) {
        int m = epoll_wait(l->ep, evs, 256, 100);
        if (m < 0 && errno != EINTR)
            break;
        for (int j = 0; j < m; j++) {
            aconn *x = evs[j].data.ptr;
            int fd = tf_aclient_fd(x->c);
            int rc = tf_aclient_step(x->c);
            if (rc == TF_INPROGRESS && !x->dead) {
                awatch(l->ep, EPOLL_CTL_MOD, x);
                continue;
            }
            /* Done (its last answer came after the deadline), or failed. */
            (void)epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
            live--;
            if (rc != TF_OK && rc != TF_INPROGRESS && !x->first_error[0])
                snprintf(x->first_error, sizeof x->first_error, "connection: %s (%s)",
                         tf_strerror(rc), tf_aclient_errmsg(x->c));
            if (rc != TF_OK)
                l->r.errors++;
        }
    }
    l->used = cpu_since(RUSAGE_THREAD, c0);
    return NULL;
}

static int run_aconcurrent(const args *a, const target *t)
{
    unsigned n = (unsigned)(a->conns > 0 ? a->conns : 64);
    unsigned nt = (unsigned)(a->threads > 0 ? a->threads : 1);
    int depth = a->pipeline > 1 ? (int)a->pipeline : 1;
    if (depth > TF__BENCH_MAX_DEPTH)
        depth = TF__BENCH_MAX_DEPTH;
    if (nt > n)
        nt = n;
    aconn *k = calloc(n, sizeof *k);
    aloop *l = calloc(nt, sizeof *l);
    tf_options *opt = NULL;
    if (!k || !l || tf_options_new(&opt) != TF_OK) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    if (a->checksum >= 0)
        tf_options_set(opt, TF_OPT_CHECKSUM, a->checksum);
    printf("concurrent --async: %u connections in %u thread%s for %.1f s, %d in flight "
           "each, server %s port %s\n",
           n, nt, nt == 1 ? "" : "s", a->seconds, depth, t->host, t->port);
    result r;
    begin_result(&r, "concurrent", t);
    uint64_t files = (uint64_t)(a->files > 0 ? a->files : 10000);
    args local = *a;
    local.files = (int64_t)files;
    int status = EXIT_OK;
    /* Connected (handshake done) before the clock starts, as the threaded
       mode's barrier does. Thread j drives connections j*n/nt onwards. */
    for (unsigned j = 0; j < nt; j++) {
        l[j] = (aloop){.k = k + j * n / nt, .n = (j + 1) * n / nt - j * n / nt,
                       .ep = epoll_create1(EPOLL_CLOEXEC), .depth = depth};
        begin_result(&l[j].r, "concurrent", t);
        if (l[j].ep < 0) {
            fprintf(stderr, PROG ": epoll_create1: %s\n", strerror(errno));
            return EXIT_FAILED;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        char err[512];
        int rc = tf_aclient_connect_start(&k[i].c, t->host, t->port, opt, err, sizeof err);
        if (rc != TF_OK) {
            fprintf(stderr, PROG ": connect to %s port %s: %s (%s)\n", t->host, t->port,
                    tf_strerror(rc), err);
            status = EXIT_FAILED;
            n = i;
            break;
        }
        k[i].a = &local;
        k[i].next = files * i / n;
        while ((rc = tf_aclient_step(k[i].c)) == TF_INPROGRESS) {
            int want = tf_aclient_events(k[i].c);
            struct pollfd p = {.fd = tf_aclient_fd(k[i].c),
                               .events = (short)((want & TF_WANT_READ ? POLLIN : 0) |
                                                 (want & TF_WANT_WRITE ? POLLOUT : 0))};
            poll(&p, 1, 100);
        }
        if (rc != TF_OK) {
            fprintf(stderr, PROG ": connect to %s port %s: %s (%s)\n", t->host, t->port,
                    tf_strerror(rc), tf_aclient_errmsg(k[i].c));
            status = EXIT_FAILED;
            n = i + 1;
            break;
        }
    }
    for (unsigned j = 0; j < nt; j++)
        for (unsigned i = 0; i < l[j].n; i++)
            l[j].k[i].r = &l[j].r;
    double scpu0 = server_cpu_start(t);
    cpu p0 = cpu_now(RUSAGE_SELF);
    double t0 = now();
    g_adeadline = t0 + a->seconds;
    unsigned started = 0;
    for (; status == EXIT_OK && started < nt; started++)
        if (pthread_create(&l[started].tid, NULL, aloop_main, &l[started]) != 0) {
            fprintf(stderr, PROG ": could start only %u of %u threads\n", started, nt);
            status = EXIT_FAILED;
            break;
        }
    for (unsigned j = 0; j < started; j++)
        pthread_join(l[j].tid, NULL);
    r.seconds = now() - t0;
    r.process = cpu_since(RUSAGE_SELF, p0);
    for (unsigned j = 0; j < nt; j++) {
        for (size_t s = 0; s < l[j].r.lat.n; s++)
            samples_add(&r.lat, l[j].r.lat.v[s]);
        free(l[j].r.lat.v);
        r.bytes += l[j].r.bytes;
        r.requests += l[j].r.requests;
        r.errors += l[j].r.errors;
        r.client.user += l[j].used.user;
        r.client.sys += l[j].used.sys;
        close(l[j].ep);
    }
    for (unsigned i = 0; i < n; i++) {
        if (k[i].first_error[0] && status == EXIT_OK)
            fprintf(stderr, PROG ": first failure: %s\n", k[i].first_error);
        if (k[i].first_error[0])
            status = EXIT_FAILED;
        tf_aclient_close(k[i].c);
    }
    end_result(&r, t, scpu0);
    snprintf(r.extra, sizeof r.extra, "conns=%u async=1 depth=%d threads=%u", n, depth, nt);
    report(&r);
    free(k);
    free(l);
    tf_options_free(opt);
    return r.errors ? EXIT_FAILED : status;
}

/* Raises the open-file limit to at least want, the hard limit too if we
   may (root). Returns the soft limit in force. */
static rlim_t raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur >= want)
        return rl.rlim_cur;
    struct rlimit nl = {want, rl.rlim_max > want ? rl.rlim_max : want};
    if (setrlimit(RLIMIT_NOFILE, &nl) != 0) {
        nl.rlim_cur = rl.rlim_max;
        nl.rlim_max = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* idle: hold N connections open (handshake done, no request) and time
   downloads on fresh connections meanwhile. */
static int run_idle(const args *a, const target *t)
{
    int64_t n = a->conns > 0 ? a->conns : 10000;
    rlim_t want = (rlim_t)n * (t->inproc ? 2 : 1) + 256;
    rlim_t have = raise_nofile(want);
    if (have < want)
        fprintf(stderr, PROG ": warning: open-file limit %llu, %llu wanted\n",
                (unsigned long long)have, (unsigned long long)want);
    tf_client **held = calloc((size_t)n, sizeof *held);
    xfer x = {0};
    tf_options *opt;
    if (!held || make_client_options(&opt, &x, a) != 0)
        return EXIT_FAILED;
    printf("idle: %" PRId64 " idle connections, %" PRId64
           " gets of %s meanwhile, server %s port %s%s\n",
           n, a->gets, a->name, t->host, t->port,
           t->inproc ? " (in-process: our client memory counts too)" : "");
    if (t->pid <= 0)
        fprintf(stderr, PROG ": warning: no --server-pid: memory is not measured\n");

    /* Warm up: one connection and one transfer, so what the server
       allocates once (buffers, thread pools) is in the baseline. */
    tf_client *c = connect_or_report(t, opt);
    if (!c)
        return EXIT_FAILED;
    int rc = tf_get(c, a->name, "/dev/null");
    tf_close(c);
    if (rc != TF_OK) {
        fprintf(stderr, PROG ": get %s: %s\n", a->name, tf_strerror(rc));
        return EXIT_FAILED;
    }
    sleep_ms(a->settle_ms);

    result r;
    begin_result(&r, "idle", t);
    long rss0 = t->pid > 0 ? rss_kib(t->pid) : -1;
    double t0 = now();
    int64_t opened = 0;
    for (; opened < n; opened++) {
        char err[512];
        rc = tf_connect_ex(&held[opened], t->host, t->port, opt, err, sizeof err);
        if (rc != TF_OK) {
            fprintf(stderr, PROG ": idle connection %" PRId64 ": %s (%s)\n", opened + 1,
                    tf_strerror(rc), err);
            break;
        }
    }
    double connect_s = now() - t0;
    printf("  held         %" PRId64 " connections, opened in %.3f s\n", opened, connect_s);
    sleep_ms(a->settle_ms);
    long rss1 = t->pid > 0 ? rss_kib(t->pid) : -1;

    /* The downloads meanwhile: each on a new connection, timed from
       connect to close, the get alone kept apart. */
    samples get_only = {0};
    double scpu0 = server_cpu_start(t);
    cpu c0 = cpu_now(RUSAGE_THREAD), p0 = cpu_now(RUSAGE_SELF);
    double g0 = now();
    for (int64_t i = 0; i < a->gets; i++) {
        double s = now();
        c = connect_or_report(t, opt);
        if (!c) {
            r.errors++;
            continue;
        }
        double s2 = now();
        x = (xfer){0};
        rc = tf_get(c, a->name, "/dev/null");
        double e2 = now();
        tf_close(c);
        double e = now();
        if (rc != TF_OK) {
            fprintf(stderr, PROG ": get %s: %s\n", a->name, tf_strerror(rc));
            r.errors++;
            continue;
        }
        samples_add(&r.lat, e - s);
        samples_add(&get_only, e2 - s2);
        r.bytes += x.total;
        r.requests++;
    }
    r.seconds = now() - g0;
    long rss2 = t->pid > 0 ? rss_kib(t->pid) : -1;
    r.client = cpu_since(RUSAGE_THREAD, c0);
    r.process = cpu_since(RUSAGE_SELF, p0);
    end_result(&r, t, scpu0);
    for (int64_t i = 0; i < opened; i++)
        tf_close(held[i]);
    free(held);
    tf_options_free(opt);

    qsort(get_only.v, get_only.n, sizeof *get_only.v, cmp_double);
    double g50 = percentile(get_only.v, get_only.n, 50) * 1e3;
    double gmax = get_only.n ? get_only.v[get_only.n - 1] * 1e3 : 0;
    free(get_only.v);
    double per_conn = rss0 >= 0 && rss1 >= 0 && opened > 0
                          ? (double)(rss1 - rss0) * 1024.0 / (double)opened
                          : -1;
    printf("  server RSS   before %ld KiB, holding %ld KiB, during gets %ld KiB\n", rss0,
           rss1, rss2);
    printf("  per conn     %.0f bytes of server RSS per idle connection\n", per_conn);
    printf("  get alone    p50 %.3f  max %.3f ms (latency below includes connect "
           "and close)\n",
           g50, gmax);
    snprintf(r.extra, sizeof r.extra,
             "held=%" PRId64 " connect_all_s=%.3f rss_before_kib=%ld rss_held_kib=%ld"
             " bytes_per_conn=%.0f get_only_p50_ms=%.3f get_only_max_ms=%.3f",
             opened, connect_s, rss0, rss1, per_conn, g50, gmax);
    report(&r);
    return opened == n && r.errors == 0 ? EXIT_OK : EXIT_FAILED;
}

int main(int argc, char **argv)
{
    args a;
    int status = parse_args(argc, argv, &a);
    if (status != -1)
        return status;
    setvbuf(stdout, NULL, _IOLBF, 0);
    target t;
    if (target_open(&t, &a) != 0)
        return EXIT_FAILED;
    if (strcmp(a.mode, "get") == 0)
        status = run_transfer(&a, &t, 0);
    else if (strcmp(a.mode, "put") == 0)
        status = run_transfer(&a, &t, 1);
    else if (strcmp(a.mode, "small") == 0)
        status = run_small(&a, &t);
    else if (strcmp(a.mode, "concurrent") == 0 && a.async)
        status = run_aconcurrent(&a, &t);
    else if (strcmp(a.mode, "connections") == 0)
        status = run_connections(&a, &t);
    else if (strcmp(a.mode, "concurrent") == 0)
        status = run_concurrent(&a, &t);
    else
        status = run_idle(&a, &t);
    target_close(&t);
    return status;
}
