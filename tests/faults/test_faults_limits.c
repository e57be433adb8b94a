/*
 * test_faults_limits.c - the server's limits hold exactly and fail cleanly:
 *
 * - out of file descriptors (RLIMIT_NOFILE 32 in a child process, 40
 *   clients), every client is answered - served, or refused with EBUSY -
 *   and the server does not spin on its listener;
 * - the connection limit is exact with several workers accepting at once;
 * - a refused over-long name, while the server skips it, is timed like a
 *   request in flight (I/O timeout, minimum rate), not like an idle client;
 * - the encoded listings held for slow readers have a server-wide budget;
 * - the name limit announced in the hello is one the root's file system
 *   can hold, so a longer name is refused before a put's data moves;
 * - a client may send requests right behind its hello, before it has read
 *   the server's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rootfs.h"
#include "rawpeer.h"
#include "testutil.h"
#include "wire.h"

static tf_options *options(void)
{
    tf_options *o;
    assert_int_equal(tf_options_new(&o), TF_OK);
    return o;
}

/* A connection with its hello sent; the server's is not read yet. */
static int connect_hello(const char *port)
{
    int fd = rp_connect(port);
    assert_true(fd >= 0);
    assert_int_equal(rp_send_hello(fd, 1, 1, 0), 0);
    return fd;
}

/* The server's hello within wait_ms: its status (0, or a TF_E* code), or
   1 when the connection closed without one, 2 when nothing came. */
static int hello_within(int fd, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, wait_ms) <= 0)
        return 2;
    tf_wire_server_hello h;
    if (rp_read_server_hello(fd, &h) != 0)
        return 1;
    return h.status == 0 ? 0 : tf__wire_code(h.status);
}

/* ---- out of descriptors ------------------------------------------------------- */

/* User plus system CPU time of a process, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long utime = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                     &stime) != 2)
        return -1;
    return (long)(utime + stime);
}

#define FD_LIMIT 32
#define FD_CLIENTS 40

static void test_faults_out_of_descriptors(void **state)
{
    (void)state;
    char root[256];
    tu_mkdtemp(root, sizeof root);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The server, with few descriptors; two workers, each with its
           own spare. */
        close(p[0]);
        struct rlimit rl = {FD_LIMIT, FD_LIMIT};
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(3);
        tf_options *o = NULL;
        tf_server *s = NULL;
        if (tf_options_new(&o) != TF_OK || tf_options_set(o, TF_OPT_WORKERS, 2) != TF_OK ||
            tf_server_open(&s, "127.0.0.1", "0", root, o) != TF_OK)
            _exit(4);
        int port = tf_server_port(s);
        if (write(p[1], &port, sizeof port) != (ssize_t)sizeof port)
            _exit(5);
        close(p[1]);
        tf_server_run(s);
        _exit(0);
    }
    close(p[1]);
    int port = 0;
    assert_int_equal(read(p[0], &port, sizeof port), (ssize_t)sizeof port);
    close(p[0]);
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);

    int fds[FD_CLIENTS], served = 0, busy = 0, closed = 0, silent = 0;
    for (int i = 0; i < FD_CLIENTS; i++)
        fds[i] = connect_hello(ports);
    int64_t deadline = tu_now_ms() + 3000;
    for (int i = 0; i < FD_CLIENTS; i++) {
        int64_t left = deadline - tu_now_ms();
        int got = hello_within(fds[i], left > 0 ? (int)left : 0);
        if (got == 0)
            served++;
        else if (got == TF_EBUSY)
            busy++;
        else if (got == 1)
            closed++;
        else
            silent++;
    }
    /* All answered now; the served ones stay connected, idle. A spinning
       accept loop burns CPU from here on. */
    long before = cpu_ticks(pid);
    tu_sleep_ms(1500);
    long after = cpu_ticks(pid);
    double cpu_s = (double)(after - before) / (double)sysconf(_SC_CLK_TCK);
    printf("faults: out-of-descriptors: %d served, %d refused (EBUSY), %d closed, %d "
           "unanswered; "
           "server CPU %.2f s in 1.5 s\n",
           served, busy, closed, silent, cpu_s);
    for (int i = 0; i < FD_CLIENTS; i++)
        close(fds[i]);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    tu_rm_rf(root);
    assert_true(before >= 0 && after >= 0);
    assert_int_equal(silent, 0);
    assert_true(served > 0 && served < FD_CLIENTS);
    assert_true(busy > 0);
    assert_true(cpu_s < 0.3);
}

/* ---- the connection limit, several workers --------------------------------------- */

#define LIMIT 8
#define RACERS 8
#define PER_RACER 4
#define ROUNDS 25

static struct {
    pthread_barrier_t go;
    const char *port;
    atomic_int served;
    int fds[RACERS][PER_RACER];
} g_race;

static void *racer(void *arg)
{
    int me = (int)(intptr_t)arg;
    pthread_barrier_wait(&g_race.go);
    for (int i = 0; i < PER_RACER; i++)
        g_race.fds[me][i] = connect_hello(g_race.port);
    for (int i = 0; i < PER_RACER; i++)
        if (hello_within(g_race.fds[me][i], 3000) == 0)
            atomic_fetch_add(&g_race.served, 1);
    return NULL;
}

static void test_faults_connection_limit_exact(void **state)
{
    (void)state;
    tf_options *o = options();
    assert_int_equal(tf_options_set(o, TF_OPT_MAX_CONNECTIONS, LIMIT), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_WORKERS, 4), TF_OK);
    test_server t;
    tu_server_start(&t, o);
    tf_options_free(o);
    g_race.port = t.port;
    int most = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t th[RACERS];
        atomic_store(&g_race.served, 0);
        pthread_barrier_init(&g_race.go, NULL, RACERS);
        for (int i = 0; i < RACERS; i++)
            assert_int_equal(pthread_create(&th[i], NULL, racer, (void *)(intptr_t)i), 0);
        for (int i = 0; i < RACERS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&g_race.go);
        int served = atomic_load(&g_race.served);
        if (served > most)
            most = served;
        if (served > LIMIT)
            fail_msg("round %d: %d connections served at once with a limit of %d", round,
                     served, LIMIT);
        for (int i = 0; i < RACERS; i++)
            for (int k = 0; k < PER_RACER; k++)
                close(g_race.fds[i][k]);
        /* Until the server has seen every close, a slot is still taken. */
        int64_t until = tu_now_ms() + 3000;
        for (;;) {
            int fd = connect_hello(t.port);
            int got = hello_within(fd, 3000);
            close(fd);
            if (got == 0) {
                /* Not all LIMIT free yet perhaps: give the closes a moment. */
                tu_sleep_ms(20);
                break;
            }
            if (tu_now_ms() > until)
                fail_msg("round %d: the server stayed full after every client left", round);
            tu_sleep_ms(10);
        }
    }
    printf("faults: exact-limit: connection limit %d, 4 workers, %d rounds of %d racing "
           "clients: at most %d "
           "served at once\n",
           LIMIT, ROUNDS, RACERS * PER_RACER, most);
    assert_true(most > 0);
    tu_server_stop(&t, 1);
}

/* ---- a skipped name is timed as a request ---------------------------------------- */

#define SKIP_IO_MS 400

static void test_faults_skip_is_timed(void **state)
{
    (void)state;
    tf_options *o = options();
    assert_int_equal(tf_options_set(o, TF_OPT_IO_TIMEOUT_MS, SKIP_IO_MS), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_IDLE_TIMEOUT_MS, 30000), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_MIN_RATE, 1000), TF_OK);
    test_server t;
    tu_server_start(&t, o);
    tf_options_free(o);
    char name[1000];
    memset(name, 's', sizeof name);
    tf_wire_response r;

    /* 1. Stalls in the middle of a name over the limit: the I/O timeout. */
    int fd = rp_connect(t.port);
    assert_true(rp_handshake(fd, 0) >= 0);
    uint8_t head[TF_WIRE_REQUEST_SIZE] = {TF_OP_GET};
    tf__put_u16(head + 2, 1000);
    assert_int_equal(rp_send(fd, head, sizeof head), 0);
    assert_int_equal(rp_send(fd, name, 10), 0);
    assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
    assert_int_equal(r.status, tf__wire_status(TF_EINVAL));
    int64_t t0 = tu_now_ms();
    int cut = rp_wait_closed(fd, 3 * SKIP_IO_MS + 1000);
    int64_t stalled_ms = tu_now_ms() - t0;
    close(fd);

    /* 2. Trickles the rest of the name, 1 byte every 100 ms: too slow. */
    fd = rp_connect(t.port);
    assert_true(rp_handshake(fd, 0) >= 0);
    assert_int_equal(rp_send(fd, head, sizeof head), 0);
    assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
    assert_int_equal(r.status, tf__wire_status(TF_EINVAL));
    t0 = tu_now_ms();
    int trickle_cut = 0;
    for (int i = 0; i < 30 && !trickle_cut; i++) {
        tu_sleep_ms(100);
        if (send(fd, name, 1, MSG_NOSIGNAL) != 1)
            trickle_cut = 1;
        else if (rp_wait_closed(fd, 0))
            trickle_cut = 1;
    }
    int64_t trickled_ms = tu_now_ms() - t0;
    close(fd);

    /* 3. Sends the whole name promptly: back to idle, where the I/O timeout
       does not apply, and the connection still works. */
    fd = rp_connect(t.port);
    assert_true(rp_handshake(fd, 0) >= 0);
    assert_int_equal(rp_send_request(fd, TF_OP_GET, 0, 1000, 0, 0, name, NULL), 0);
    assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
    assert_int_equal(r.status, tf__wire_status(TF_EINVAL));
    tu_sleep_ms(3 * SKIP_IO_MS);
    int still = rp_list_ok(fd) == 0;
    close(fd);

    printf("faults: skip-timed: skipped name: a stall cut after %lld ms, a trickle after "
           "%lld ms; idle kept: "
           "%d\n",
           (long long)stalled_ms, (long long)trickled_ms, still);
    tu_server_stop(&t, 1);
    assert_true(cut);
    assert_true(trickle_cut);
    assert_true(trickled_ms < 2500);
    assert_true(still);
}

/* ---- the listing budget ---------------------------------------------------------- */

#define LIST_FILES 16000
#define LIST_BUDGET (64 << 10)

/* A connection whose receive buffer is small, so that a listing stays in
   the server's memory while it is not read. */
static int connect_small_rcvbuf(const char *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(port)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void test_faults_listing_budget(void **state)
{
    (void)state;
    /* In memory where there is a tmpfs: 16,000 files are made faster. */
    char root[256] = "/dev/shm/tf-listing-XXXXXX";
    if (!mkdtemp(root))
        tu_mkdtemp(root, sizeof root);
    /* About 4.4 MB of listing: more than the socket buffers take in. */
    char path[512];
    for (int i = 0; i < LIST_FILES; i++) {
        snprintf(path, sizeof path, "%s/%06d-%0240d", root, i, 0);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
    }
    tf_options *o = options();
    assert_int_equal(tf_options_set(o, TF_OPT_MAX_MEMORY, LIST_BUDGET), TF_OK);
    assert_int_equal(tf_options_set(o, TF_OPT_WORKERS, 2), TF_OK);
    test_server t;
    tu_server_start_in(&t, root, o);
    tf_options_free(o);

    /* A lists and does not read: its listing is held. */
    int a = connect_small_rcvbuf(t.port);
    assert_true(rp_handshake(a, 0) >= 0);
    tf_wire_response r;
    char msg[TF_WIRE_MESSAGE_MAX + 1];
    assert_int_equal(rp_send_request(a, TF_OP_LIST, 0, 0, 0, 0, NULL, NULL), 0);
    assert_int_equal(rp_read_response(a, &r, NULL, 0), 0);
    assert_int_equal(r.status, 0);
    uint64_t listing = r.size;
    tu_sleep_ms(100);

    /* B is over the budget: EBUSY, and its connection stays usable. */
    int b = rp_connect(t.port);
    assert_true(rp_handshake(b, 0) >= 0);
    assert_int_equal(rp_send_request(b, TF_OP_LIST, 0, 0, 0, 0, NULL, NULL), 0);
    assert_int_equal(rp_read_response(b, &r, msg, sizeof msg), 0);
    int b_status = r.status;
    if (r.status == 0)
        assert_int_equal(rp_read_payload(b, r.size), 0);

    /* A reads its listing; then B may list. */
    assert_int_equal(rp_read_payload(a, listing), 0);
    int b_later = -1;
    for (int i = 0; i < 50 && b_later != 0; i++) {
        assert_int_equal(rp_send_request(b, TF_OP_LIST, 0, 0, 0, 0, NULL, NULL), 0);
        assert_int_equal(rp_read_response(b, &r, NULL, 0), 0);
        b_later = r.status;
        if (r.status == 0)
            assert_int_equal(rp_read_payload(b, r.size), 0);
        else
            tu_sleep_ms(10);
    }
    printf("faults: listing-budget: listing of %llu bytes held, budget %d: a second list "
           "got %s (\"%s\"), then %s\n",
           (unsigned long long)listing, LIST_BUDGET,
           tf_errname(b_status ? tf__wire_code((uint16_t)b_status) : TF_OK),
           b_status ? msg : "",
           b_later == 0 ? "OK once the first was read" : "still refused");
    close(a);
    close(b);
    tu_server_stop(&t, 1);
    assert_int_equal(b_status, tf__wire_status(TF_EBUSY));
    assert_int_equal(b_later, 0);
}

/* ---- the announced name limit ------------------------------------------------------ */

static void test_faults_name_limit_of_the_file_system(void **state)
{
    (void)state;
    tf_options *o = options();
    assert_int_equal(tf_options_set(o, TF_OPT_MAX_NAME_LEN, 4096), TF_OK);
    test_server t;
    tu_server_start(&t, o);
    tf_options_free(o);
    long fs_max = pathconf(t.root, _PC_NAME_MAX);
    assert_true(fs_max > 0 && fs_max < 4096);

    int fd = rp_connect(t.port);
    assert_int_equal(rp_send_hello(fd, 1, 1, 0), 0);
    tf_wire_server_hello h;
    assert_int_equal(rp_read_server_hello(fd, &h), 0);
    assert_int_equal(h.status, 0);
    /* A put of a name the file system cannot hold: refused before the
       go-ahead, and the connection stays in step. */
    char name[300];
    memset(name, 'x', sizeof name);
    assert_int_equal(rp_send_request(fd, TF_OP_PUT, 0, sizeof name, 1000, 0, name, NULL),
                     0);
    tf_wire_response r;
    char msg[TF_WIRE_MESSAGE_MAX + 1];
    assert_int_equal(rp_read_response(fd, &r, msg, sizeof msg), 0);
    printf("faults: fs-name-limit: --max-name 4096 on a file system of %ld: announced %u; "
           "a put of a 300-byte "
           "name got %s (\"%s\")\n",
           fs_max, (unsigned)h.max_name, tf_errname(tf__wire_code(r.status)), msg);
    assert_int_equal(h.max_name, fs_max);
    assert_int_equal(r.status, tf__wire_status(TF_EINVAL));
    assert_int_equal(rp_list_ok(fd), 0);
    close(fd);

    /* Should a file system still say ENAMETOOLONG (its limit not known in
       advance), the put is refused before its data too, as a bad name. */
    int rootfd = open(t.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(rootfd >= 0);
    tf__err e = {{0}};
    name[sizeof name - 1] = '\0';
    assert_int_equal(tf__fs_check_target(rootfd, name, 1, &e), TF_EINVAL);
    close(rootfd);

    /* The library's client refuses it before sending anything. */
    tf_client *c = tu_connect(&t, NULL);
    char cname[301];
    memset(cname, 'y', 300);
    cname[300] = '\0';
    assert_int_equal(tf_put_mem(c, "abc", 3, cname), TF_EINVAL);
    tf_close(c);
    tu_server_stop(&t, 1);
}

/* ---- requests before the server's hello ------------------------------------------- */

static void test_faults_requests_before_hello(void **state)
{
    (void)state;
    test_server t;
    tu_server_start(&t, NULL);
    char path[300];
    snprintf(path, sizeof path, "%s/early.txt", t.root);
    tu_write_file(path, "early\n", 6);
    int fd = rp_connect(t.port);
    /* Hello, a get and a list in one send, nothing read yet. */
    uint8_t b[TF_WIRE_CLIENT_HELLO_SIZE + 2 * TF_WIRE_REQUEST_SIZE + 9] = {0};
    memcpy(b, TF_WIRE_MAGIC, 4);
    tf__put_u16(b + 4, 1);
    tf__put_u16(b + 6, 1);
    uint8_t *q = b + TF_WIRE_CLIENT_HELLO_SIZE;
    q[0] = TF_OP_GET;
    tf__put_u16(q + 2, 9);
    memcpy(q + TF_WIRE_REQUEST_SIZE, "early.txt", 9);
    q += TF_WIRE_REQUEST_SIZE + 9;
    q[0] = TF_OP_LIST;
    assert_int_equal(rp_send(fd, b, sizeof b), 0);
    tf_wire_server_hello h;
    assert_int_equal(rp_read_server_hello(fd, &h), 0);
    assert_int_equal(h.status, 0);
    tf_wire_response r;
    assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
    assert_int_equal(r.op, TF_OP_GET);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.size, 6);
    assert_int_equal(rp_read_payload(fd, r.size), 0);
    assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
    assert_int_equal(r.op, TF_OP_LIST);
    assert_int_equal(r.status, 0);
    assert_int_equal(rp_read_payload(fd, r.size), 0);
    close(fd);
    tu_server_stop(&t, 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        /* First: it forks, which is simplest before any thread exists. */
        cmocka_unit_test(test_faults_out_of_descriptors),
        cmocka_unit_test(test_faults_connection_limit_exact),
        cmocka_unit_test(test_faults_skip_is_timed),
        cmocka_unit_test(test_faults_listing_budget),
        cmocka_unit_test(test_faults_name_limit_of_the_file_system),
        cmocka_unit_test(test_faults_requests_before_hello),
    };
    return TU_RUN_GROUP("limits", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
