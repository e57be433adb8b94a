/* rawpeer.c - see rawpeer.h. */
#include "rawpeer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int rp_connect(const char *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(port)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int rp_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int rp_recv(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t k = recv(fd, c, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int rp_send_hello(int fd, uint16_t vmin, uint16_t vmax, uint32_t features)
{
    uint8_t b[TF_WIRE_CLIENT_HELLO_SIZE];
    memcpy(b, TF_WIRE_MAGIC, 4);
    tf__put_u16(b + 4, vmin);
    tf__put_u16(b + 6, vmax);
    tf__put_u32(b + 8, features);
    tf__put_u32(b + 12, 0);
    return rp_send(fd, b, sizeof b);
}

int rp_read_server_hello(int fd, tf_wire_server_hello *h)
{
    uint8_t b[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    if (rp_recv(fd, b, TF_WIRE_SERVER_HELLO_SIZE) != 0)
        return -1;
    long n = tf__wire_decode_server_hello(b, TF_WIRE_SERVER_HELLO_SIZE, h);
    if (n == TF_WIRE_NEED_MORE) {
        if (rp_recv(fd, b + TF_WIRE_SERVER_HELLO_SIZE, h->message_len) != 0)
            return -1;
        n = tf__wire_decode_server_hello(b, TF_WIRE_SERVER_HELLO_SIZE + h->message_len, h);
    }
    h->message = NULL; /* b is gone after the return */
    return n > 0 ? 0 : -1;
}

long rp_handshake(int fd, uint32_t features)
{
    tf_wire_server_hello h;
    if (rp_send_hello(fd, 1, 1, features) != 0 || rp_read_server_hello(fd, &h) != 0 ||
        h.status != 0)
        return -1;
    return (long)(h.features & features);
}

int rp_send_request(int fd, uint8_t op, uint8_t flags, uint16_t name_len, uint64_t size,
                    uint64_t offset, const char *name, const uint8_t *key)
{
    size_t total = TF_WIRE_REQUEST_SIZE + name_len + (key ? TF_UPLOAD_KEY_SIZE : 0);
    uint8_t *b = malloc(total);
    if (!b)
        return -1;
    b[0] = op;
    b[1] = flags;
    tf__put_u16(b + 2, name_len);
    tf__put_u32(b + 4, 0);
    tf__put_u64(b + 8, size);
    tf__put_u64(b + 16, offset);
    if (name)
        memcpy(b + TF_WIRE_REQUEST_SIZE, name, name_len);
    else
        memset(b + TF_WIRE_REQUEST_SIZE, 'n', name_len);
    if (key)
        memcpy(b + TF_WIRE_REQUEST_SIZE + name_len, key, TF_UPLOAD_KEY_SIZE);
    int rc = rp_send(fd, b, total);
    free(b);
    return rc;
}

int rp_read_response(int fd, tf_wire_response *r, char *msg, size_t msg_len)
{
    uint8_t b[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    if (rp_recv(fd, b, TF_WIRE_RESPONSE_SIZE) != 0)
        return -1;
    long n = tf__wire_decode_response(b, TF_WIRE_RESPONSE_SIZE, r);
    if (n == TF_WIRE_NEED_MORE) {
        if (rp_recv(fd, b + TF_WIRE_RESPONSE_SIZE, r->message_len) != 0)
            return -1;
        n = tf__wire_decode_response(b, TF_WIRE_RESPONSE_SIZE + r->message_len, r);
    }
    if (n <= 0)
        return -1;
    if (msg && msg_len) {
        size_t k = r->message_len < msg_len - 1 ? r->message_len : msg_len - 1;
        memcpy(msg, r->message, k);
        msg[k] = '\0';
    }
    r->message = NULL;
    return 0;
}

int rp_read_payload(int fd, uint64_t size)
{
    char buf[65536];
    while (size > 0) {
        size_t n = size < sizeof buf ? (size_t)size : sizeof buf;
        if (rp_recv(fd, buf, n) != 0)
            return -1;
        size -= n;
    }
    uint8_t t[TF_WIRE_TRAILER_SIZE + TF_WIRE_DIGEST_MAX];
    tf_wire_trailer tr;
    if (rp_recv(fd, t, TF_WIRE_TRAILER_SIZE) != 0)
        return -1;
    long n = tf__wire_decode_trailer(t, TF_WIRE_TRAILER_SIZE, &tr);
    if (n == TF_WIRE_NEED_MORE) {
        if (rp_recv(fd, t + TF_WIRE_TRAILER_SIZE, tr.digest_len) != 0)
            return -1;
        n = tf__wire_decode_trailer(t, TF_WIRE_TRAILER_SIZE + tr.digest_len, &tr);
    }
    return n > 0 ? tr.status : -1;
}

int rp_list_ok(int fd)
{
    tf_wire_response r;
    if (rp_send_request(fd, TF_OP_LIST, 0, 0, 0, 0, NULL, NULL) != 0 ||
        rp_read_response(fd, &r, NULL, 0) != 0 || r.op != TF_OP_LIST || r.status != 0)
        return -1;
    return rp_read_payload(fd, r.size) == 0 ? 0 : -1;
}

int rp_send_trailer(int fd, uint16_t status, const uint8_t *digest, uint16_t digest_len)
{
    uint8_t *b = malloc(TF_WIRE_TRAILER_SIZE + (size_t)digest_len);
    if (!b)
        return -1;
    tf__put_u16(b, status);
    tf__put_u16(b + 2, digest_len);
    for (size_t i = 0; i < digest_len; i++)
        b[TF_WIRE_TRAILER_SIZE + i] = digest ? digest[i] : (uint8_t)i;
    int rc = rp_send(fd, b, TF_WIRE_TRAILER_SIZE + (size_t)digest_len);
    free(b);
    return rc;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rp_wait_closed(int fd, int timeout_ms)
{
    char sink[65536];
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int k = poll(&p, 1, (int)left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return 0;
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return 1;
    }
}

void rp_abort(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

int rp_local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    return ntohs(a.sin_port);
}
