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
    tf_server *srv;
    pthread_t thread;
    char root[256];
    char port[16];
    int running;
} test_server;

/* Makes a fresh directory under /tmp; path receives its name. */
void tu_mkdtemp(char *path, size_t len);
/* rm -rf, never following symlinks. */
void tu_rm_rf(const char *path);

/* Starts a server for a new temporary root with opt (NULL: defaults). */
void tu_server_start(test_server *t, const tf_options *opt);
/* The same for an existing root. */
void tu_server_start_in(test_server *t, const char *root, const tf_options *opt);
/* Stops it, joins it, and removes its root. */
void tu_server_stop(test_server *t, int remove_root);

/* Connects a client to t (asserting success). */
tf_client *tu_connect(const test_server *t, const tf_options *opt);

void tu_fill(uint8_t *p, size_t n, uint64_t seed);
void tu_write_file(const char *path, const void *data, size_t len);
/* Reads a whole file; *len gets its size. NULL if missing. free() it. */
uint8_t *tu_read_file(const char *path, size_t *len);
/* Size of a file, or -1 if missing. */
long long tu_file_size(const char *path);
/* Number of entries in a directory whose names start with prefix. */
int tu_count_prefix(const char *dir, const char *prefix);
void tu_sleep_ms(int ms);
int64_t tu_now_ms(void);

#endif /* TF_TESTUTIL_H */
