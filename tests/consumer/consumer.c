/*
 * consumer.c - a program built the way a user of the installed library
 * builds one: only <tcpfile.h>, flags from pkg-config. It connects nowhere;
 * it checks that the header and the library it was linked with agree.
 * Exit status 0 when everything is sane.
 */
#include <stdio.h>
#include <string.h>

#include <tcpfile.h>

int main(void)
{
    int bad = 0;
    const char *v = tf_version_string();
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TF_VERSION_MAJOR, TF_VERSION_MINOR,
             TF_VERSION_PATCH);
    if (!v || strcmp(v, want) != 0) {
        fprintf(stderr, "tf_version_string() is \"%s\", the header says %s\n",
                v ? v : "(null)", want);
        bad = 1;
    }
    if (tf_version() != TF_VERSION_NUMBER) {
        fprintf(stderr, "tf_version() is %#x, the header says %#x\n", tf_version(),
                (unsigned)TF_VERSION_NUMBER);
        bad = 1;
    }
    const char *msg = tf_strerror(TF_ENOENT);
    if (!msg || strcmp(msg, "no such file") != 0) {
        fprintf(stderr, "tf_strerror(TF_ENOENT) is \"%s\"\n", msg ? msg : "(null)");
        bad = 1;
    }
    if (strcmp(tf_errname(TF_ENOENT), "TF_ENOENT") != 0) {
        fprintf(stderr, "tf_errname(TF_ENOENT) is \"%s\"\n", tf_errname(TF_ENOENT));
        bad = 1;
    }
    tf_options *opt = NULL;
    int64_t value = 0;
    if (tf_options_new(&opt) != TF_OK || !opt ||
        tf_options_set(opt, TF_OPT_MAX_NAME_LEN, 100) != TF_OK ||
        tf_options_get(opt, TF_OPT_MAX_NAME_LEN, &value) != TF_OK || value != 100) {
        fprintf(stderr, "tf_options_new/set/get failed\n");
        bad = 1;
    }
    /* A server too: tf_server_open reaches the S3 backend, so a static
       link needs libcurl and expat from the .pc file. Asked for a bucket
       without an endpoint it fails at once, making no request. */
    tf_server *srv = NULL;
    if (opt && (tf_options_set_string(opt, TF_SOPT_S3_STORE, "s3://bucket") != TF_OK ||
                tf_server_open(&srv, "127.0.0.1", "0", NULL, opt) != TF_EINVAL)) {
        fprintf(stderr, "tf_server_open on S3 without an endpoint did not fail with EINVAL\n");
        bad = 1;
    }
    tf_server_close(srv);
    tf_options_free(opt);
    tf_options_free(NULL);
    if (!bad)
        printf("consumer: libtcpfile %s works\n", v);
    return bad;
}
