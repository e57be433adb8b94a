/*
 * users_api.c - the public side of users (tcpfile.h, "Users"): where the
 * users file is, adding a user, and a running server's users.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "secfile.h"
#include "server_internal.h"
#include "statedir.h"
#include "tls_identity.h"
#include "users.h"

_Static_assert(TF_TOKEN_LEN == TF__TOKEN_LEN && TF_TOKEN_SIZE == TF__TOKEN_SIZE,
               "the public token size is the users file's");

int tf_users_file_path(const tf_options *opt, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return TF_EINVAL;
    buf[0] = '\0';
    const char *file = opt ? tf__opt_str(opt, TF_SOPT_USERS_FILE) : NULL;
    if (file) {
        if (strlen(file) >= cap)
            return TF_EINVAL;
        memcpy(buf, file, strlen(file) + 1);
        return TF_OK;
    }
    char dir[4096];
    const char *state = opt ? tf__opt_str(opt, TF_SOPT_STATE_DIR) : NULL;
    tf__err e = {{0}};
    if (!state) {
        if (tf__state_dir_default(dir, sizeof dir, &e) != TF_OK)
            return TF_EINVAL;
        state = dir;
    }
    int n = snprintf(buf, cap, "%s/%s", state, TF__USERS_FILE);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return TF_EINVAL;
    }
    return TF_OK;
}

/* The directory the users file lives in (the state directory by default). */
static int users_dir_make(const char *path, tf__err *e)
{
    char parent[4096];
    memcpy(parent, path, strlen(path) + 1);
    char *slash = strrchr(parent, '/');
    if (!slash || slash == parent)
        return TF_OK;
    *slash = '\0';
    return tf__secfile_mkdirs(parent, e);
}

int tf_users_add(const tf_options *opt, const char *name, const char *access, const char *dir,
                 char *token, size_t cap, char *errbuf, size_t errlen)
{
    tf__err e = {{0}};
    char path[4096];
    int rc = TF_OK;
    int acc = access && strcmp(access, "read") == 0    ? TF__ACCESS_READ
              : access && strcmp(access, "write") == 0 ? TF__ACCESS_WRITE
                                                       : 0;
    if (!name || !token || cap < TF_TOKEN_SIZE)
        rc = tf__fail(&e, TF_EINVAL, "a name and room for the token are needed");
    else if (!acc)
        rc = tf__fail(&e, TF_EINVAL, "the access is \"read\" or \"write\"");
    else if (tf_users_file_path(opt, path, sizeof path) != TF_OK)
        rc = tf__fail(&e, TF_EINVAL, "no users file: set one, a state directory, or HOME");
    if (rc == TF_OK)
        rc = users_dir_make(path, &e);
    if (rc == TF_OK)
        rc = tf__users_add(path, name, acc, dir, token, cap, &e);
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", rc == TF_OK ? "" : e.msg);
    return rc;
}

int tf_users_add_cert(const tf_options *opt, const char *name, const char *access,
                      const char *dir, const char *cert_file, char *fingerprint, size_t cap,
                      char *errbuf, size_t errlen)
{
    tf__err e = {{0}};
    char path[4096], fp[TF__FP_SIZE];
    int rc = TF_OK;
    int acc = access && strcmp(access, "read") == 0    ? TF__ACCESS_READ
              : access && strcmp(access, "write") == 0 ? TF__ACCESS_WRITE
                                                       : 0;
    if (fingerprint && cap)
        fingerprint[0] = '\0';
    if (!name || !cert_file)
        rc = tf__fail(&e, TF_EINVAL, "a name and a certificate file are needed");
    else if (!acc)
        rc = tf__fail(&e, TF_EINVAL, "the access is \"read\" or \"write\"");
    else if (tf_users_file_path(opt, path, sizeof path) != TF_OK)
        rc = tf__fail(&e, TF_EINVAL, "no users file: set one, a state directory, or HOME");
    if (rc == TF_OK)
        rc = tf__tls_cert_file_fingerprint(fp, cert_file, &e);
    if (rc == TF_OK)
        rc = users_dir_make(path, &e);
    if (rc == TF_OK)
        rc = tf__users_add_cert(path, name, acc, dir, fp, &e);
    if (rc == TF_OK && fingerprint && cap)
        snprintf(fingerprint, cap, "%s", fp);
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", rc == TF_OK ? "" : e.msg);
    return rc;
}

int tf_server_user_count(const tf_server *s)
{
    if (!s)
        return TF_EINVAL;
    if (!s->auth)
        return TF_ENOENT;
    size_t n = tf__auth_count(s->auth);
    return n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
}

int tf_server_reload_users(tf_server *s, char *errbuf, size_t errlen)
{
    tf__err e = {{0}};
    int rc = !s ? TF_EINVAL
             : !s->auth ? tf__fail(&e, TF_ENOENT, "the server has no users file")
                        : tf__auth_reload(s->auth, &e);
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", rc == TF_OK ? "" : e.msg);
    return rc;
}
