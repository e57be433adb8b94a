#include <stdio.h>
#include <tcpfile.h>

/* send HOST PORT FILE: uploads a message and FILE to a tcpfile-server. */
int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST PORT FILE\n", argv[0]);
        return 2;
    }
    tf_client *c;
    char why[256];
    int rc = tf_connect_ex(&c, argv[1], argv[2], NULL, why, sizeof why);
    if (rc != TF_OK) {
        fprintf(stderr, "connect: %s (%s)\n", tf_strerror(rc), why);
        return 1;
    }
    const char msg[] = "hello over TCP";
    rc = tf_put_mem(c, msg, sizeof msg - 1, "message.txt"); /* a message */
    if (rc == TF_OK)
        rc = tf_put(c, argv[3], NULL); /* a file, under its own name */
    if (rc != TF_OK)
        fprintf(stderr, "put: %s (%s)\n", tf_strerror(rc), tf_errmsg(c));
    tf_close(c);
    return rc == TF_OK ? 0 : 1;
}
