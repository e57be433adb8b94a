/*
 * auth.c - the server-wide side of users (auth.h): the users file in use,
 * the token-checking threads and the failure table.
 */
#include "auth.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* The users in use, counted, so that a reload can replace them while a
   login started before it is still checking a token against them. */
struct tf__users_ref {
    tf__users *users;
    atomic_int refs;
};

static void users_unref(tf__users_ref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        tf__users_free(r->users);
        free(r);
    }
}

static tf__users_ref *users_get(tf__auth *a)
{
    pthread_mutex_lock(&a->mu);
    tf__users_ref *r = a->users;
    atomic_fetch_add(&r->refs, 1);
    pthread_mutex_unlock(&a->mu);
    return r;
}

static int load(tf__users_ref **out, const char *path, tf__err *e)
{
    *out = NULL;
    tf__users *u;
    int rc = tf__users_load(&u, path, e);
    if (rc != TF_OK)
        return rc == TF_ENOENT ? tf__err_prefix(e, rc, "users file") : rc;
    tf__users_ref *r = malloc(sizeof *r);
    if (!r) {
        tf__users_free(u);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    r->users = u;
    atomic_init(&r->refs, 1);
    *out = r;
    return TF_OK;
}

int tf__auth_open(tf__auth **out, const char *path, tf__storage *root, int read_only,
                  tf__err *e)
{
    *out = NULL;
    tf__auth *a = calloc(1, sizeof *a);
    if (!a)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    pthread_mutex_init(&a->mu, NULL);
    a->root = root;
    a->read_only = read_only;
    int rc = (a->path = strdup(path)) ? TF_OK : tf__fail(e, TF_ENOMEM, "out of memory");
    if (rc == TF_OK)
        rc = load(&a->users, path, e);
    if (rc == TF_OK)
        rc = tf__authlimit_new(&a->limit, 0, e);
    if (rc == TF_OK)
        rc = tf__pool_new(&a->pool, TF__AUTH_THREADS, e);
    if (rc != TF_OK) {
        tf__auth_free(a);
        return rc;
    }
    *out = a;
    return TF_OK;
}

void tf__auth_free(tf__auth *a)
{
    if (!a)
        return;
    tf__pool_free(a->pool);
    tf__authlimit_free(a->limit);
    users_unref(a->users);
    free(a->path);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int tf__auth_reload(tf__auth *a, tf__err *e)
{
    tf__users_ref *fresh;
    int rc = load(&fresh, a->path, e);
    if (rc != TF_OK)
        return rc;
    pthread_mutex_lock(&a->mu);
    tf__users_ref *old = a->users;
    a->users = fresh;
    pthread_mutex_unlock(&a->mu);
    users_unref(old);
    return TF_OK;
}

size_t tf__auth_count(tf__auth *a)
{
    tf__users_ref *r = users_get(a);
    size_t n = tf__users_count(r->users);
    users_unref(r);
    return n;
}

int64_t tf__auth_failed(tf__auth *a, const struct sockaddr *sa)
{
    pthread_mutex_lock(&a->mu);
    int64_t wait = tf__authlimit_fail(a->limit, sa, tf__now_ms());
    pthread_mutex_unlock(&a->mu);
    return wait;
}

void tf__auth_succeeded(tf__auth *a, const struct sockaddr *sa)
{
    pthread_mutex_lock(&a->mu);
    tf__authlimit_success(a->limit, sa);
    pthread_mutex_unlock(&a->mu);
}

void tf__auth_job_run(tf__work *w)
{
    tf__auth_job *j = (tf__auth_job *)w;
    tf__users_ref *r = users_get(j->auth);
    if (j->by_cert)
        j->rc = tf__users_by_cert(r->users, j->spki, &j->info); /* TF_ENOENT: nobody's */
    else
        j->rc =
            tf__users_verify(r->users, j->user, j->token, j->token_len, &j->info, &j->err);
    users_unref(r);
    OPENSSL_cleanse(j->token, sizeof j->token);
    if (j->rc != TF_OK || !j->info.dir[0])
        return;
    /* The user's world, opened here rather than on the loop: it may
       create the directory, which is disk work. */
    tf__storage *root = j->auth->root;
    int rc = root->ops->sub ? root->ops->sub(root, j->info.dir, !j->auth->read_only,
                                             &j->storage, &j->err)
                            : TF_EACCES; /* a backend that cannot confine */
    if (rc != TF_OK) {
        tf__err_clear(&j->err);
        j->rc = rc == TF_ENOENT
                    ? tf__fail(&j->err, TF_EACCES,
                               "the directory of user %s does not exist (a read-only "
                               "server creates none)",
                               j->info.name)
                    : tf__fail(&j->err, TF_EACCES, "the directory of user %s cannot be "
                                                   "opened",
                               j->info.name);
    }
}

void tf__auth_sweep(tf__auth *a)
{
    tf__storage *root = a->root;
    if (a->read_only || !root->ops->sub)
        return;
    tf__users_ref *r = users_get(a);
    for (size_t i = 0; i < tf__users_count(r->users); i++) {
        const char *dir = tf__users_dir(r->users, i);
        tf__storage *view;
        tf__err ignored = {{0}};
        /* Not created: a user who never logged in has no staging. */
        if (dir[0] && root->ops->sub(root, dir, 0, &view, &ignored) == TF_OK) {
            view->ops->sweep(view, 1);
            view->ops->close(view);
        }
    }
    users_unref(r);
}

void tf__auth_job_free(tf__auth_job *j)
{
    if (!j)
        return;
    if (j->storage)
        j->storage->ops->close(j->storage);
    OPENSSL_cleanse(j, sizeof *j);
    free(j);
}
