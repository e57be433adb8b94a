/*
 * counter HOST PORT NAME [TIMES] - adds 1 to the number stored in NAME on a
 * tcpfile-server, TIMES times (default 1), with optimistic concurrency: read
 * the file, compute the new content, and put it only if the file is still
 * the version that was read (TF_PUT_IF_MATCH with its digest). When another
 * client got there first the put fails with TF_ECONFLICT and nothing
 * changes: read again and retry. Any number of counters may run at once
 * against the same NAME; no increment is lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tcpfile.h>

/* One increment; retries on TF_ECONFLICT. Returns TF_OK or a failure. */
static int increment(tf_client *c, const char *name, int *retries)
{
    for (;;) {
        void *data = NULL;
        size_t len = 0;
        tf_put_args args = {0}; /* zeroed: the reserved room must be */
        long n = 0;
        int rc = tf_get_mem(c, name, &data, &len);
        if (rc == TF_OK) {
            n = strtol(data, NULL, 10);
            args.flags = TF_PUT_IF_MATCH; /* replace exactly what we read */
            rc = tf_digest(data, len, args.if_match);
        } else if (rc == TF_ENOENT) {
            args.flags = TF_PUT_IF_ABSENT; /* the first one creates it */
            rc = TF_OK;
        }
        tf_free(data);
        if (rc != TF_OK)
            return rc;
        char text[32];
        int tlen = snprintf(text, sizeof text, "%ld\n", n + 1);
        rc = tf_put_mem_ex(c, text, (size_t)tlen, name, &args, NULL);
        if (rc != TF_ECONFLICT && rc != TF_EEXIST)
            return rc;
        (*retries)++; /* someone else changed (or created) it: again */
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT NAME [TIMES]\n", argv[0]);
        return 2;
    }
    long times = argc == 5 ? strtol(argv[4], NULL, 10) : 1;
    tf_client *c;
    char why[256];
    int rc = tf_connect_ex(&c, argv[1], argv[2], NULL, why, sizeof why);
    if (rc != TF_OK) {
        fprintf(stderr, "connect: %s (%s)\n", tf_strerror(rc), why);
        return 1;
    }
    if (!tf_client_can_putx(c)) {
        fprintf(stderr, "the server does not take conditional puts\n");
        tf_close(c);
        return 1;
    }
    int retries = 0;
    for (long i = 0; i < times && rc == TF_OK; i++)
        rc = increment(c, argv[3], &retries);
    if (rc != TF_OK)
        fprintf(stderr, "counter: %s (%s)\n", tf_strerror(rc), tf_errmsg(c));
    else
        printf("%ld increments, %d retries\n", times, retries);
    tf_close(c);
    return rc == TF_OK ? 0 : 1;
}
