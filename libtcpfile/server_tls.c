/*
 * server_tls.c - the server's side of TLS (TF_OPT_TLS): its identity, from
 * the operator's PEM files or kept in a state directory, the one TLS
 * context its workers share, mutual TLS, and the fingerprint users check.
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server_internal.h"
#include "statedir.h"
#include "tls.h"
#include "tls_identity.h"

int tf__server_tls_open(tf_server *srv)
{
    if (!srv->opt.value[TF_OPT_TLS])
        return TF_OK;
    const char *cert = tf__opt_str(&srv->opt, TF_SOPT_TLS_CERT);
    const char *key = tf__opt_str(&srv->opt, TF_SOPT_TLS_KEY);
    int rc;
    if (cert || key) {
        if (!cert || !key)
            return tf__fail(&srv->err, TF_EINVAL,
                            "a TLS certificate needs its key and a key its certificate "
                            "(--tls-cert and --tls-key)");
        rc = tf__tls_identity_load(&srv->tls_id, cert, key, &srv->err);
    } else {
        char dir[4096];
        const char *state = tf__opt_str(&srv->opt, TF_SOPT_STATE_DIR);
        rc = TF_OK;
        if (!state) {
            rc = tf__state_dir_default(dir, sizeof dir, &srv->err);
            state = dir;
        }
        if (rc == TF_OK)
            rc = tf__tls_identity_ensure(&srv->tls_id, state, NULL, NULL, &srv->err);
        if (rc != TF_OK)
            tf__err_prefix(&srv->err, rc, "the server's TLS identity in %s", state);
    }
    if (rc == TF_OK)
        rc = tf__tls_server_ctx_new(&srv->tls, srv->tls_id, &srv->err);
    const char *ca = tf__opt_str(&srv->opt, TF_SOPT_TLS_CA);
    if (rc == TF_OK && ca)
        rc = tf__tls_server_ctx_client_ca(srv->tls, ca, &srv->err);
    return rc;
}

void tf__server_tls_close(tf_server *srv)
{
    tf__tls_ctx_free(srv->tls);
    srv->tls = NULL;
    tf__tls_identity_free(srv->tls_id);
    srv->tls_id = NULL;
}

int tf_server_fingerprint(const tf_server *s, char *buf, size_t len)
{
    if (!s || !buf || !s->tls_id)
        return TF_EINVAL;
    const char *fp = tf__tls_identity_fingerprint(s->tls_id);
    size_t n = strlen(fp);
    if (n >= len)
        return TF_EINVAL;
    memcpy(buf, fp, n + 1);
    return TF_OK;
}
