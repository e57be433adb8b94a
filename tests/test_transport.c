/*
 * test_transport.c - the TCP transport table (transport.h) over a
 * socketpair: bytes both ways, writev of several pieces, would-block with
 * what it waits for, end of stream, sendfile from a file, shutdown, errors
 * with their errno, and close.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

static void pair(tf__conn *a, tf__conn *b, int nowait)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    tf__conn_tcp(a, sv[0], nowait);
    tf__conn_tcp(b, sv[1], nowait);
    assert_string_equal(a->t->name, "tcp");
}

static void test_read_write(void **state)
{
    (void)state;
    tf__conn a, b;
    pair(&a, &b, 1);
    char buf[64];
    /* Nothing yet: would block, waiting to read. */
    assert_int_equal(tf__conn_read(&b, buf, sizeof buf), TF__IO_AGAIN);
    assert_int_equal(b.want, EPOLLIN);

    assert_int_equal(tf__conn_write(&a, "head", 4, TF__IO_MORE), 4);
    struct iovec iov[3] = {{"a", 1}, {"bc", 2}, {"def", 3}};
    assert_int_equal(tf__conn_writev(&a, iov, 3, 0), 6);
    assert_int_equal(tf__conn_read(&b, buf, sizeof buf), 10);
    assert_memory_equal(buf, "headabcdef", 10);

    /* A full socket would block, waiting to write. */
    static char big[1 << 16];
    ssize_t n;
    while ((n = tf__conn_write(&a, big, sizeof big, 0)) > 0)
        ;
    assert_int_equal(n, TF__IO_AGAIN);
    assert_int_equal(a.want, EPOLLOUT);

    /* Our end shut: the peer reads what was sent, then end of stream. */
    tf__conn c, d;
    pair(&c, &d, 1);
    assert_int_equal(tf__conn_write(&c, "x", 1, 0), 1);
    assert_int_equal(tf__conn_shutdown(&c), 0);
    assert_int_equal(tf__conn_read(&d, buf, sizeof buf), 1);
    assert_int_equal(tf__conn_read(&d, buf, sizeof buf), 0);

    /* Writing to a closed peer: an error with its errno, no SIGPIPE. */
    tf__conn_close(&d);
    assert_int_equal(d.fd, -1);
    assert_int_equal(tf__conn_write(&c, "y", 1, 0), TF__IO_ERROR);
    assert_int_equal(c.err, EPIPE);
    tf__conn_close(&a);
    tf__conn_close(&b);
    tf__conn_close(&c);
    tf__conn_close(&c); /* twice: nothing */
}

static void test_blocking_nowait(void **state)
{
    (void)state;
    tf__conn a, b;
    pair(&a, &b, 0);
    /* A blocking socket, one call asked not to wait. */
    static char big[1 << 16];
    ssize_t n;
    while ((n = tf__conn_write(&a, big, sizeof big, TF__IO_NOWAIT)) > 0)
        ;
    assert_int_equal(n, TF__IO_AGAIN);
    tf__conn_close(&a);
    tf__conn_close(&b);
}

static void test_sendfile(void **state)
{
    (void)state;
    char path[] = "/tmp/tf_transport_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    tf__conn a, b;
    pair(&a, &b, 1);
    assert_int_equal(tf__conn_sendfile(&a, fd, 3, 4), 4);
    assert_int_equal(tf__conn_sendfile(&a, fd, 10, 4), 0); /* the file's end */
    char buf[16];
    assert_int_equal(tf__conn_read(&b, buf, sizeof buf), 4);
    assert_memory_equal(buf, "3456", 4);
    /* Not a file sendfile can read at an offset: the errno says so. */
    assert_int_equal(tf__conn_sendfile(&a, b.fd, 0, 4), TF__IO_ERROR);
    assert_int_equal(a.err, ESPIPE);
    close(fd);
    tf__conn_close(&a);
    tf__conn_close(&b);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* sendfile's callers block it; MSG_NOSIGNAL elsewhere */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_blocking_nowait),
        cmocka_unit_test(test_sendfile),
    };
    return TU_RUN_GROUP("transport", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
