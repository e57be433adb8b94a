/*
 * testutil.h - what the integration tests share: a real server on
 * 127.0.0.1 port 0 in a thread, temporary directories, files and content.
 */
#ifndef TF_TESTUTIL_H
#define TF_TESTUTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpfile.h"

typedef struct test_server {
    tf_server *srv; /* NULL once stopped */
    pthread_t thread;
    char root[256];
    char port[16];
    int running; /* the thread is started and not yet joined */
    int run_rc;  /* what tf_server_run returned, once joined */
} test_server;

/* Makes a fresh directory under /tmp; path receives its name. */
void tu_mkdtemp(char *path, size_t len);
/* rm -rf, never following symlinks. */
void tu_rm_rf(const char *path);

/* Starts a server for a new temporary root with opt (NULL: defaults). */
void tu_server_start(test_server *t, const tf_options *opt);
/* The same for an existing root. */
void tu_server_start_in(test_server *t, const char *root, const tf_options *opt);
/* Stops it and joins its thread (t->run_rc then holds what tf_server_run
   returned), without closing it: that is left to tu_server_stop. Does
   nothing if the thread is already joined. */
void tu_server_join(test_server *t);
/* Joins it if need be, closes it, and removes its root when remove_root.
   Does nothing for a server already stopped. */
void tu_server_stop(test_server *t, int remove_root);

/* Connects a client to t (asserting success). */
tf_client *tu_connect(const test_server *t, const tf_options *opt);

/* A TCP socket connected to 127.0.0.1 at port (asserting success), for a
   test that speaks the wire protocol itself. */
int tu_raw_connect(const char *port);

/* A TCP socket listening on 127.0.0.1 at a free port, for a fake server
   (asserting success); port receives the port's number as text. */
int tu_listen_loopback(char *port, size_t len);

/* Runs a shell command made with printf's format; returns system()'s status. */
int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Makes, in dir, with the openssl command line (P-256 keys, valid 2 days):
   a CA (ca.pem, ca.key), a second CA that signs nothing here (other.pem,
   other.key) and a server certificate the first signs for the DNS name host
   (srv.pem, srv.key). Asserts success. */
void tu_make_server_cert(const char *dir, const char *host);

/* Deterministic pseudo-random bytes (xorshift64), different per seed. */
void tu_fill(uint8_t *p, size_t n, uint64_t seed);
/* Creates or truncates path and writes all of data (asserting success). */
void tu_write_file(const char *path, const void *data, size_t len);
/* The same for dir/name. */
void tu_write_in(const char *dir, const char *name, const void *data, size_t len);
/* Reads a whole regular file, NUL-terminated one past the end; *len gets
   its size. NULL if it is missing, not a regular file, or cannot be read
   whole. free() it. */
uint8_t *tu_read_file(const char *path, size_t *len);
/* Size of a file, or -1 if missing. */
long long tu_file_size(const char *path);
/* Number of entries in a directory whose names start with prefix. */
int tu_count_prefix(const char *dir, const char *prefix);
/* Unnamed files (O_TMPFILE: uploads staged in place) this process holds
   open beneath root. */
int tu_count_unnamed(const char *root);
void tu_sleep_ms(int ms);
int64_t tu_now_ms(void);

#endif /* TF_TESTUTIL_H */
