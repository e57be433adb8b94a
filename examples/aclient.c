#include <poll.h>
#include <stdio.h>
#include <tcpfile.h>

/* aclient HOST PORT NAME...: gets every NAME over one connection, all the
   requests in flight at once, through the event-driven client and poll. */
static void done(tf_aclient *a, void *user, tf_aresult *r)
{
    int *failures = user;
    (void)a;
    if (r->result == TF_OK) {
        printf("%s: %zu bytes\n", r->name, r->len);
    } else {
        fprintf(stderr, "%s: %s (%s)\n", r->name, tf_strerror(r->result), r->message);
        ++*failures;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT NAME...\n", argv[0]);
        return 2;
    }
    tf_aclient *a;
    char why[256];
    int failures = 0;
    int rc = tf_aclient_connect_start(&a, argv[1], argv[2], NULL, why, sizeof why);
    if (rc != TF_OK) {
        fprintf(stderr, "connect: %s (%s)\n", tf_strerror(rc), why);
        return 1;
    }
    for (int i = 3; i < argc; i++) /* queued at once: they go out pipelined */
        if (tf_aclient_get_mem(a, argv[i], done, &failures) != TF_OK) {
            fprintf(stderr, "%s: bad name\n", argv[i]);
            failures++;
        }
    /* The loop: wait for what the client wants, then let it step. */
    while ((rc = tf_aclient_step(a)) == TF_INPROGRESS) {
        int want = tf_aclient_events(a);
        struct pollfd p = {.fd = tf_aclient_fd(a),
                           .events = (short)((want & TF_WANT_READ ? POLLIN : 0) |
                                             (want & TF_WANT_WRITE ? POLLOUT : 0))};
        poll(&p, 1, tf_aclient_timeout(a));
    }
    if (rc != TF_OK)
        fprintf(stderr, "connection: %s (%s)\n", tf_strerror(rc), tf_aclient_errmsg(a));
    tf_aclient_close(a);
    return rc == TF_OK && failures == 0 ? 0 : 1;
}
