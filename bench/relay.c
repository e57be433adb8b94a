/*
 * relay.c - a TCP relay that delays each direction by a fixed time, for
 * measuring over a network with latency where `tc netem` is not available:
 *
 *     relay LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS
 *
 * It listens on 127.0.0.1:LISTEN_PORT (0: any free port; the port is
 * printed as "relay listening on port N"), and for every connection it
 * accepts, connects to the target and forwards the bytes both ways, each
 * piece DELAY_MS after it arrived, in order (a round trip through it gains
 * 2 x DELAY_MS). Bandwidth is not limited: everything read is held until due
 * (up to HOLD_MAX bytes a direction, then reading that side pauses).
 * A peer's end of stream is passed on once what came before it has been
 * delivered. One thread, poll, runs until killed. Both tools under test go
 * through the same relay (bench/compare.sh).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PIECE_MAX ((size_t)256 << 10)
#define HOLD_MAX ((size_t)64 << 20)
#define MAX_PAIRS 512

typedef struct piece {
    struct piece *next;
    int64_t due; /* ms */
    size_t len, off;
    unsigned char data[];
} piece;

/* One direction: bytes read from `from`, held, written to `to`. */
typedef struct dir {
    int from, to;
    piece *head, *tail;
    size_t held;
    int eof;  /* from has ended: shut `to` down once the queue is empty */
    int done; /* shut down */
} dir;

typedef struct pair {
    int used;
    dir d[2];
} pair;

static pair pairs[MAX_PAIRS];
static int64_t delay_ms;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int connect_target(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0)
        nodelay(fd);
    return fd;
}

static void drop_pair(pair *p)
{
    for (int k = 0; k < 2; k++) {
        while (p->d[k].head) {
            piece *x = p->d[k].head;
            p->d[k].head = x->next;
            free(x);
        }
    }
    close(p->d[0].from);
    close(p->d[0].to);
    memset(p, 0, sizeof *p);
}

/* Reads what `from` has into a new piece. 0 fine, -1 the pair failed. */
static int pull(dir *d)
{
    piece *x = malloc(sizeof *x + PIECE_MAX);
    if (!x)
        return -1;
    ssize_t n = recv(d->from, x->data, PIECE_MAX, MSG_DONTWAIT);
    if (n <= 0) {
        free(x);
        if (n == 0) {
            d->eof = 1;
            return 0;
        }
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    }
    if ((size_t)n < PIECE_MAX / 2) { /* do not hold 256 KiB for a few bytes */
        piece *y = realloc(x, sizeof *x + (size_t)n);
        if (y)
            x = y;
    }
    x->next = NULL;
    x->due = now_ms() + delay_ms;
    x->len = (size_t)n;
    x->off = 0;
    if (d->tail)
        d->tail->next = x;
    else
        d->head = x;
    d->tail = x;
    d->held += (size_t)n;
    return 0;
}

/* Writes what is due. 0 fine, -1 the pair failed. */
static int push(dir *d, int64_t now)
{
    while (d->head && d->head->due <= now) {
        piece *x = d->head;
        ssize_t n = send(d->to, x->data + x->off, x->len - x->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        x->off += (size_t)n;
        d->held -= (size_t)n;
        if (x->off < x->len)
            return 0;
        d->head = x->next;
        if (!d->head)
            d->tail = NULL;
        free(x);
    }
    if (!d->head && d->eof && !d->done) {
        shutdown(d->to, SHUT_WR);
        d->done = 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: relay LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS\n");
        return 2;
    }
    delay_ms = atoll(argv[4]);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 128) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
        perror("relay: listen");
        return 1;
    }
    printf("relay listening on port %u\n", (unsigned)ntohs(a.sin_port));
    fflush(stdout);
    static struct pollfd pf[1 + 2 * MAX_PAIRS];
    for (;;) {
        int64_t now = now_ms(), next = -1;
        /* pf[0] the listener; pf[1 + 2i] and pf[2 + 2i] pair i's two
           sockets, each watched for reading (its own direction) and for
           writing (the other direction's due pieces). */
        pf[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < MAX_PAIRS; i++) {
            pair *p = &pairs[i];
            for (int k = 0; p->used && k < 2; k++) /* the next piece to fall due */
                if (p->d[k].head && p->d[k].head->due > now &&
                    (next < 0 || p->d[k].head->due < next))
                    next = p->d[k].head->due;
            int s0 = p->used ? p->d[0].from : -1, s1 = p->used ? p->d[1].from : -1;
            short e0 = 0, e1 = 0;
            if (p->used) {
                /* d[0]: s0 -> s1, d[1]: s1 -> s0 */
                if (!p->d[0].eof && p->d[0].held < HOLD_MAX)
                    e0 |= POLLIN;
                if (!p->d[1].eof && p->d[1].held < HOLD_MAX)
                    e1 |= POLLIN;
                if (p->d[0].head && p->d[0].head->due <= now)
                    e1 |= POLLOUT;
                if (p->d[1].head && p->d[1].head->due <= now)
                    e0 |= POLLOUT;
            }
            pf[1 + 2 * i] = (struct pollfd){.fd = e0 ? s0 : -1, .events = e0};
            pf[2 + 2 * i] = (struct pollfd){.fd = e1 ? s1 : -1, .events = e1};
        }
        nfds_t n = 1 + 2 * MAX_PAIRS;
        int wait = next < 0 ? 1000 : (int)(next - now > 0 ? next - now : 0);
        if (poll(pf, n, wait) < 0 && errno != EINTR) {
            perror("relay: poll");
            return 1;
        }
        if (pf[0].revents & POLLIN) {
            int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            int slot = -1;
            for (int i = 0; cfd >= 0 && i < MAX_PAIRS && slot < 0; i++)
                if (!pairs[i].used)
                    slot = i;
            int tfd = slot >= 0 ? connect_target(argv[2], argv[3]) : -1;
            if (tfd < 0) {
                if (cfd >= 0)
                    close(cfd);
            } else {
                nodelay(cfd);
                pairs[slot] = (pair){.used = 1,
                                     .d = {{.from = cfd, .to = tfd}, {.from = tfd, .to = cfd}}};
            }
        }
        now = now_ms();
        for (int i = 0; i < MAX_PAIRS; i++) {
            pair *p = &pairs[i];
            if (!p->used)
                continue;
            int bad = 0;
            if (pf[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))
                bad |= pull(&p->d[0]);
            if (pf[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))
                bad |= pull(&p->d[1]);
            bad |= push(&p->d[0], now);
            bad |= push(&p->d[1], now);
            if (bad || (p->d[0].done && p->d[1].done))
                drop_pair(p);
        }
    }
}
