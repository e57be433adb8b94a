/*
 * s3tool.c - what the S3 test scripts ask of the store directly, through
 * the library's own S3 client (s3.c), never through a server:
 *
 *   s3tool keys PREFIX      every object under PREFIX, one key a line
 *   s3tool uploads PREFIX   every multipart upload in progress there
 *   s3tool purge PREFIX     removes both (a test's cleanup)
 *   s3tool freeport         a loopback port free now (for haproxy, which
 *                           cannot report the one port 0 gave it)
 *
 * The store: TF_S3_ENDPOINT, TF_S3_BUCKET, TF_S3_REGION and the AWS_*
 * credentials, as tests/s3/lib.sh exports them.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "s3.h"

static int print_key(void *user, const char *key, int is_prefix, uint64_t size, int64_t mtime)
{
    (void)user;
    (void)is_prefix;
    (void)size;
    (void)mtime;
    printf("%s\n", key);
    return 0;
}

static int print_upload(void *user, const char *key, const char *id, int64_t initiated)
{
    (void)user;
    (void)id;
    (void)initiated;
    printf("%s\n", key);
    return 0;
}

/* Keys are gathered a page at a time and deleted after it: the list
   callback must not use the handle. */
typedef struct batch {
    char (*keys)[TF_S3_KEY_MAX + 1];
    size_t n;
} batch;

static int gather(void *user, const char *key, int is_prefix, uint64_t size, int64_t mtime)
{
    (void)is_prefix;
    (void)size;
    (void)mtime;
    batch *b = user;
    snprintf(b->keys[b->n++], TF_S3_KEY_MAX + 1, "%s", key);
    return 0;
}

static int abort_upload(void *user, const char *key, const char *id, int64_t initiated)
{
    (void)initiated;
    tf__err e = {{0}};
    tf__s3_mpu_abort(user, key, id, &e);
    return 0;
}

static int purge(tf__s3 *s3, const char *prefix, tf__err *e)
{
    int rc = tf__s3_mpu_list(s3, prefix, abort_upload, s3, e);
    batch b = {calloc(1000, sizeof *b.keys), 0};
    if (!b.keys)
        return TF_ENOMEM;
    tf__s3_page page = {.prefix = prefix, .max_keys = 1000};
    do {
        b.n = 0;
        rc = tf__s3_list(s3, &page, gather, &b, e);
        for (size_t i = 0; rc == TF_OK && i < b.n; i++)
            rc = tf__s3_delete(s3, b.keys[i], e);
    } while (rc == TF_OK && page.token[0]);
    free(b.keys);
    return rc;
}

static int freeport(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return 1;
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "freeport") == 0)
        return freeport();
    if (argc != 3) {
        fprintf(stderr, "usage: s3tool keys|uploads|purge PREFIX | s3tool freeport\n");
        return 2;
    }
    tf__s3_config cfg = {.endpoint = getenv("TF_S3_ENDPOINT"),
                         .bucket = getenv("TF_S3_BUCKET"),
                         .region = getenv("TF_S3_REGION")};
    tf__err e = {{0}};
    tf__s3 *s3 = NULL;
    int rc = tf__s3_open(&s3, &cfg, &e);
    if (rc == TF_OK && strcmp(argv[1], "keys") == 0) {
        tf__s3_page page = {.prefix = argv[2]};
        do
            rc = tf__s3_list(s3, &page, print_key, NULL, &e);
        while (rc == TF_OK && page.token[0]);
    } else if (rc == TF_OK && strcmp(argv[1], "uploads") == 0) {
        rc = tf__s3_mpu_list(s3, argv[2], print_upload, NULL, &e);
    } else if (rc == TF_OK && strcmp(argv[1], "purge") == 0) {
        rc = purge(s3, argv[2], &e);
    } else if (rc == TF_OK) {
        fprintf(stderr, "s3tool: unknown command %s\n", argv[1]);
        rc = TF_EINVAL;
    }
    if (rc != TF_OK)
        fprintf(stderr, "s3tool: %s: %s\n", argv[1], e.msg);
    tf__s3_close(s3);
    return rc == TF_OK ? 0 : 1;
}
