/*
 * holdconns - opens N TCP connections to HOST PORT and holds them idle, so
 * that a server's memory per idle connection can be measured.
 *
 *   holdconns HOST PORT N [--http PATH] [--seconds S]
 *
 * With --http, each connection first sends "HEAD PATH HTTP/1.1" and reads
 * the response headers, leaving it as an idle HTTP keep-alive connection
 * (the state nginx holds between requests); without it, the connections
 * only connect. Prints "ready N" once all are held, then holds them until
 * SIGTERM/SIGINT or S seconds (default 120) pass, and exits.
 *
 * Plain sockets, no libtcpfile: bench/compare.sh uses it against nginx.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PROG "holdconns"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    struct rlimit nl = {want, rl.rlim_max > want ? rl.rlim_max : want};
    if (setrlimit(RLIMIT_NOFILE, &nl) != 0) {
        nl.rlim_cur = nl.rlim_max = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nl);
    }
}

/* Sends a HEAD request and reads up to the end of the response headers. */
static int http_head(int fd, const char *path)
{
    char req[1024], buf[4096];
    int len = snprintf(
        req, sizeof req,
        "HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " PROG "\r\n\r\n", path);
    if (len < 0 || (size_t)len >= sizeof req)
        return -1;
    if (send(fd, req, (size_t)len, MSG_NOSIGNAL) != len)
        return -1;
    size_t have = 0;
    while (have < sizeof buf - 1) {
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    double seconds = 120;
    if (argc < 4) {
        fprintf(stderr, "usage: " PROG " HOST PORT N [--http PATH] [--seconds S]\n");
        return 2;
    }
    long n = strtol(argv[3], NULL, 10);
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--http") == 0)
            path = argv[i + 1];
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = strtod(argv[i + 1], NULL);
        else {
            fprintf(stderr, PROG ": unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (n < 1 || n > 1000000 || !(seconds > 0)) {
        fprintf(stderr, PROG ": bad N or --seconds\n");
        return 2;
    }
    raise_nofile((rlim_t)n + 64);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, PROG ": %s port %s: %s\n", argv[1], argv[2], gai_strerror(gai));
        return 1;
    }
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds)
        return 1;
    long held = 0;
    for (; held < n && !g_stop; held++) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            fprintf(stderr, PROG ": connection %ld: %s\n", held + 1, strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        if (path && http_head(fd, path) != 0) {
            fprintf(stderr, PROG ": connection %ld: the HTTP request failed\n", held + 1);
            close(fd);
            break;
        }
        fds[held] = fd;
    }
    freeaddrinfo(ai);
    printf("ready %ld\n", held);
    fflush(stdout);

    struct timespec start, t;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!g_stop) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - start.tv_sec) + (double)(t.tv_nsec - start.tv_nsec) / 1e9 >=
            seconds)
            break;
        struct timespec step = {0, 50 * 1000 * 1000};
        nanosleep(&step, NULL);
    }
    for (long i = 0; i < held; i++)
        close(fds[i]);
    free(fds);
    return held == n ? 0 : 1;
}
