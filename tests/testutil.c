/* testutil.c - see testutil.h. Failures abort through cmocka's asserts. */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void tu_mkdtemp(char *path, size_t len)
{
    assert_true(snprintf(path, len, "/tmp/tcpfile-test-XXXXXX") < (int)len);
    assert_non_null(mkdtemp(path));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void tu_rm_rf(const char *path)
{
    if (path && path[0])
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void *serve(void *arg)
{
    test_server *t = arg;
    t->run_rc = tf_server_run(t->srv);
    return NULL;
}

void tu_server_start_in(test_server *t, const char *root, const tf_options *opt)
{
    char err[256];
    t->srv = NULL;
    t->running = 0;
    t->run_rc = TF_OK;
    snprintf(t->root, sizeof t->root, "%s", root);
    int rc = tf_server_open_ex(&t->srv, "127.0.0.1", "0", t->root, opt, err, sizeof err);
    if (rc != TF_OK)
        fail_msg("tf_server_open: %s (%s)", tf_strerror(rc), err);
    int port = tf_server_port(t->srv);
    if (port <= 0)
        fail_msg("tf_server_port: %s", tf_strerror(port));
    snprintf(t->port, sizeof t->port, "%d", port);
    assert_int_equal(pthread_create(&t->thread, NULL, serve, t), 0);
    t->running = 1;
}

void tu_server_start(test_server *t, const tf_options *opt)
{
    char root[256];
    tu_mkdtemp(root, sizeof root);
    tu_server_start_in(t, root, opt);
}

void tu_server_join(test_server *t)
{
    if (!t->running)
        return;
    tf_server_stop(t->srv);
    pthread_join(t->thread, NULL);
    t->running = 0;
}

void tu_server_stop(test_server *t, int remove_root)
{
    if (!t->srv)
        return;
    tu_server_join(t);
    tf_server_close(t->srv);
    t->srv = NULL;
    if (remove_root)
        tu_rm_rf(t->root);
}

tf_client *tu_connect(const test_server *t, const tf_options *opt)
{
    tf_client *c = NULL;
    char err[256];
    int rc = tf_connect_ex(&c, "127.0.0.1", t->port, opt, err, sizeof err);
    if (rc != TF_OK)
        fail_msg("tf_connect: %s (%s)", tf_strerror(rc), err);
    return c;
}

int tu_raw_connect(const char *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

int tu_listen_loopback(char *port, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    assert_true(snprintf(port, len, "%u", (unsigned)ntohs(a.sin_port)) < (int)len);
    return fd;
}

void tu_fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    /* Eight bytes a step: group setups fill 64 MiB, once per ctest entry. */
    for (size_t i = 0; i < n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, n - i < 8 ? n - i : 8);
    }
}

void tu_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
    assert_int_equal(close(fd), 0);
}

void tu_write_in(const char *dir, const char *name, const void *data, size_t len)
{
    char path[1024];
    assert_true(snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path);
    tu_write_file(path, data, len);
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size;
    uint8_t *buf = malloc(cap + 1);
    size_t have = 0;
    while (buf && have < cap) {
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    if (!buf || have != cap) {
        free(buf);
        return NULL;
    }
    buf[have] = '\0';
    *len = have;
    return buf;
}

long long tu_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int tu_count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

int tu_count_unnamed(const char *root)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return 0;
    size_t rl = strlen(root);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char link[300], target[1024];
        snprintf(link, sizeof link, "/proc/self/fd/%s", de->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        /* An O_TMPFILE shows as "DIR/#INODE (deleted)". */
        const char *hash = strrchr(target, '/');
        n += strncmp(target, root, rl) == 0 && target[rl] == '/' && hash && hash[1] == '#' &&
             len > 10 && strcmp(target + len - 10, " (deleted)") == 0;
    }
    closedir(d);
    return n;
}

void tu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tu_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof cmd);
    return system(cmd);
}

void tu_make_server_cert(const char *dir, const char *host)
{
    const char *req = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    assert_int_equal(
        tu_sh("cd '%s' && { "
              "%s -x509 -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem && "
              "%s -x509 -days 2 -subj /CN=other-ca -keyout other.key "
              "-out other.pem && "
              "%s -subj /CN=%s -addext subjectAltName=DNS:%s "
              "-keyout srv.key -out srv.csr && "
              "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
              "-CAcreateserial -days 2 -copy_extensions copy -out srv.pem; "
              "} 2>/dev/null",
              dir, req, req, req, host, host),
        0);
}
