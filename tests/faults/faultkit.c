/*
 * faultkit - a small client for the fault scripts: what the CLI cannot do.
 *
 *   faultkit fill PATH SIZE SEED [PATH SIZE SEED]...
 *       writes SIZE bytes of seeded pseudo-random data (fast, reproducible)
 *       to each PATH (many in one process: a script's forks are its cost)
 *   faultkit put HOST PORT LOCAL NAME [--rate MIB_PER_S] [--hold-at BYTES] [--resume]
 *   faultkit get HOST PORT NAME LOCAL [--rate MIB_PER_S] [--hold-at BYTES] [--resume]
 *   faultkit putmany HOST PORT DIR COUNT [--hold-after INDEX]
 *       puts DIR/f0000 .. DIR/f(COUNT-1) as f0000 ... in one tf_put_many
 *       batch (pipelined puts, PUTX); with --hold-after it holds (as above)
 *       once item INDEX's payload has been handed to the connection, and
 *       prints "ok I" for each item stored and "fail I CODE" for the others
 *       one transfer, optionally throttled (the progress callback sleeps to
 *       hold the rate, so a kill -9 can land anywhere inside the transfer),
 *       optionally held once BYTES have moved (it prints "held N" and waits,
 *       at most 30 s, for SIGUSR1: a script kills the server meanwhile, so
 *       the kill lands mid-payload however loaded the machine is) and
 *       resumable (TF_OPT_RESUME).
 *
 * A transfer prints "first N" on stdout at its first progress report (N > 0
 * means it continued an earlier one) and "done N" at the end, each line
 * flushed at once so that a killed run leaves them behind. A failure prints
 * "faultkit: put: TF_ENOSPC: detail" on stderr and exits 1; bad arguments
 * exit 2. Only tcpfile.h is used.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tcpfile.h"

typedef struct throttle {
    double rate;  /* bytes per second, 0 = as fast as possible */
    double start; /* when the first report came */
    uint64_t base;
    int reported;
    uint64_t hold_at; /* 0: never held */
    int held;
} throttle;

static volatile sig_atomic_t released;

static void on_release(int sig)
{
    (void)sig;
    released = 1;
}

/* Waits for SIGUSR1 (at most 30 s, so that a broken script cannot hang). */
static void hold(uint64_t done)
{
    printf("held %" PRIu64 "\n", done);
    fflush(stdout);
    for (int i = 0; i < 3000 && !released; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    throttle *t = user;
    (void)total;
    if (!t->reported) {
        t->reported = 1;
        t->start = now_s();
        t->base = done;
        printf("first %" PRIu64 "\n", done);
        fflush(stdout);
    }
    if (t->hold_at && !t->held && done >= t->hold_at) {
        t->held = 1;
        hold(done);
    }
    if (t->rate > 0) {
        double due = t->start + (double)(done - t->base) / t->rate;
        double wait = due - now_s();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait,
                                  (long)((wait - (double)(time_t)wait) * 1e9)};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            }
        }
    }
    return 0;
}

static int fill(const char *path, const char *size_s, const char *seed_s)
{
    uint64_t size = strtoull(size_s, NULL, 10);
    uint64_t x = strtoull(seed_s, NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
    static uint64_t buf[1 << 16];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    while (size > 0) {
        for (size_t i = 0; i < sizeof buf / sizeof buf[0]; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = x;
        }
        size_t n = size < sizeof buf ? (size_t)size : sizeof buf;
        if (write(fd, buf, n) != (ssize_t)n) {
            perror(path);
            close(fd);
            return 1;
        }
        size -= n;
    }
    return close(fd) == 0 ? 0 : 1;
}

/* mvloop HOST PORT: renames over and over, through one connection, until
   it fails (the server is killed): the file "d1/x" to "d2/x" and back, and
   the directory "a" (with its files) to "b" and back. Prints "renamed N"
   after each. Exit 0 when the connection ended (expected), 1 otherwise. */
static int mvloop(const char *host, const char *port)
{
    tf_client *c;
    char err[512];
    int rc = tf_connect_ex(&c, host, port, NULL, err, sizeof err);
    if (rc != TF_OK) {
        fprintf(stderr, "faultkit: connect: %s: %s\n", tf_errname(rc), err);
        return 1;
    }
    static const char *const pairs[4][2] = {
        {"d1/x", "d2/x"}, {"a", "b"}, {"d2/x", "d1/x"}, {"b", "a"}};
    for (unsigned long n = 0;; n++) {
        rc = tf_rename(c, pairs[n % 4][0], pairs[n % 4][1], TF_RENAME_NOREPLACE);
        if (rc != TF_OK)
            break;
        printf("renamed %lu\n", n + 1);
    }
    fprintf(stderr, "faultkit: mvloop: %s: %s\n", tf_errname(rc), tf_errmsg(c));
    tf_close(c);
    return rc == TF_ENET || rc == TF_ETIMEDOUT ? 0 : 1;
}

typedef struct many_hold {
    long index; /* -1: never */
    int held;
} many_hold;

static int on_item(void *user, size_t index, uint64_t done, uint64_t total)
{
    many_hold *h = user;
    if (h->index >= 0 && !h->held && index == (size_t)h->index && done == total) {
        h->held = 1;
        hold(done);
    }
    return 0;
}

static int putmany(int argc, char **argv)
{
    long count = strtol(argv[5], NULL, 10);
    many_hold h = {.index = -1};
    if (argc == 8 && strcmp(argv[6], "--hold-after") == 0)
        h.index = strtol(argv[7], NULL, 10);
    else if (argc != 6)
        return 2;
    if (count <= 0 || count > 100000)
        return 2;
    tf_options *opt;
    if (tf_options_new(&opt) != TF_OK)
        return 1;
    struct sigaction sa = {.sa_handler = on_release};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    tf_options_set_item_progress(opt, on_item, &h);
    tf_put_item *items = calloc((size_t)count, sizeof *items);
    char (*paths)[4096] = calloc((size_t)count, sizeof *paths);
    char (*names)[16] = calloc((size_t)count, sizeof *names);
    if (!items || !paths || !names)
        return 1;
    for (long i = 0; i < count; i++) {
        snprintf(names[i], sizeof names[i], "f%04ld", i);
        snprintf(paths[i], sizeof paths[i], "%s/%s", argv[4], names[i]);
        items[i] = (tf_put_item){.local_path = paths[i], .name = names[i], .fd = -1};
    }
    char err[512];
    tf_client *c;
    int rc = tf_connect_ex(&c, argv[2], argv[3], opt, err, sizeof err);
    if (rc != TF_OK) {
        fprintf(stderr, "faultkit: connect: %s: %s\n", tf_errname(rc), err);
        tf_options_free(opt);
        free(items);
        free(paths);
        free(names);
        return 1;
    }
    printf("connected\n"); /* the script's kill waits for this line */
    rc = tf_put_many(c, items, (size_t)count);
    for (long i = 0; i < count; i++) {
        if (items[i].result == TF_OK)
            printf("ok %ld\n", i);
        else
            printf("fail %ld %s\n", i, tf_errname(items[i].result));
    }
    if (rc != TF_OK)
        fprintf(stderr, "faultkit: putmany: %s: %s\n", tf_errname(rc), tf_errmsg(c));
    tf_close(c);
    tf_options_free(opt);
    free(items);
    free(paths);
    free(names);
    return rc == TF_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 5 && (argc - 2) % 3 == 0 && strcmp(argv[1], "fill") == 0) {
        for (int i = 2; i < argc; i += 3)
            if (fill(argv[i], argv[i + 1], argv[i + 2]) != 0)
                return 1;
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "mvloop") == 0)
        return mvloop(argv[2], argv[3]);
    if (argc >= 6 && strcmp(argv[1], "putmany") == 0)
        return putmany(argc, argv);
    if (argc < 6 || (strcmp(argv[1], "put") != 0 && strcmp(argv[1], "get") != 0)) {
        fprintf(stderr,
                "usage: faultkit fill PATH SIZE SEED [PATH SIZE SEED]...\n"
                "       faultkit mvloop HOST PORT\n"
                "       faultkit put HOST PORT LOCAL NAME [--rate MIB] [--hold-at BYTES] "
                "[--resume]\n"
                "       faultkit get HOST PORT NAME LOCAL [--rate MIB] [--hold-at BYTES] "
                "[--resume]\n");
        return 2;
    }
    throttle t = {0};
    tf_options *opt;
    if (tf_options_new(&opt) != TF_OK)
        return 1;
    for (int i = 6; i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0) {
            tf_options_set(opt, TF_OPT_RESUME, 1);
        } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
            t.rate = strtod(argv[++i], NULL) * 1048576.0;
        } else if (strcmp(argv[i], "--hold-at") == 0 && i + 1 < argc) {
            t.hold_at = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "faultkit: unknown option %s\n", argv[i]);
            tf_options_free(opt);
            return 2;
        }
    }
    struct sigaction sa = {.sa_handler = on_release};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    tf_options_set_progress(opt, on_progress, &t);
    char err[512];
    tf_client *c;
    int rc = tf_connect_ex(&c, argv[2], argv[3], opt, err, sizeof err);
    if (rc != TF_OK) {
        fprintf(stderr, "faultkit: connect: %s: %s\n", tf_errname(rc), err);
        tf_options_free(opt);
        return 1;
    }
    int put = strcmp(argv[1], "put") == 0;
    rc = put ? tf_put(c, argv[4], argv[5]) : tf_get(c, argv[4], argv[5]);
    if (rc == TF_OK)
        printf("done\n");
    else
        fprintf(stderr, "faultkit: %s: %s: %s\n", argv[1], tf_errname(rc), tf_errmsg(c));
    tf_close(c);
    tf_options_free(opt);
    return rc == TF_OK ? 0 : 1;
}
