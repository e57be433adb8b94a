/*
 * options.c - tf_options: a fixed table of integer tunables behind an
 * enum-keyed setter, so that new options never change the ABI.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct option_spec {
    int64_t def, min, max;
} option_spec;

#define MS_MAX ((int64_t)24 * 3600 * 1000)

/* Indexed by tf_option; index 0 is unused. */
static const option_spec specs[TF__OPT_COUNT] = {
    [TF_OPT_CONNECT_TIMEOUT_MS] = {10000, 0, MS_MAX},
    [TF_OPT_IO_TIMEOUT_MS] = {30000, 0, MS_MAX},
    [TF_OPT_IDLE_TIMEOUT_MS] = {300000, 0, MS_MAX},
    [TF_OPT_MAX_NAME_LEN] = {TF_DEFAULT_MAX_NAME, 1, 4096},
    [TF_OPT_READ_ONLY] = {0, 0, 1},
    [TF_OPT_MAX_CONNECTIONS] = {1024, 1, 1000000},
    [TF_OPT_MAX_UPLOAD] = {0, 0, INT64_MAX},
    [TF_OPT_OVERWRITE] = {1, 0, 1},
    [TF_OPT_MAX_MEMORY] = {(int64_t)256 << 20, 1, INT64_MAX},
    [TF_OPT_MAX_LIST_ENTRIES] = {1000000, 1, UINT32_MAX},
    [TF_OPT_STOP_GRACE_MS] = {5000, 0, MS_MAX},
    [TF_OPT_CHECKSUM] = {1, 0, 1},
    [TF_OPT_RESUME] = {0, 0, 1},
    [TF_OPT_RESUME_TTL_S] = {86400, 1, (int64_t)365 * 86400},
    [TF_OPT_MIN_RATE] = {1024, 0, (int64_t)1 << 40},
    [TF_OPT_WORKERS] = {0, 0, 1024},
    [TF_OPT_PIPELINE] = {32, 1, TF__PIPELINE_MAX},
    [TF_OPT_MAX_PARTIALS] = {64, 0, 1000000},
    [TF_OPT_TLS] = {0, 0, 1},
    [TF_OPT_TLS_ACCEPT_NEW] = {0, 0, 1},
    [TF_OPT_MAX_DEPTH] = {TF_DEFAULT_MAX_DEPTH, 1, 2048},
    [TF_OPT_MAX_PATH] = {TF_DEFAULT_MAX_PATH, 1, 4096},
    [TF_OPT_DISK_THREADS] = {0, 0, 64},
    [TF_OPT_EARLY_REQUESTS] = {0, 0, 1},
    [TF_OPT_GROUP_COMMIT] = {256, 1, 256},
    [TF_OPT_SMALL_CACHE] = {(int64_t)4 << 20, 0, (int64_t)1 << 30},
    [TF_OPT_GET_AHEAD] = {8, 0, 64},
    [TF_OPT_GET_AHEAD_MAX] = {0, 0, 1000000},
};

/* Text keys this version knows (indexed by tf_string_option). */
static const unsigned char string_known[TF__SOPT_COUNT] = {
    [TF_SOPT_TLS_CERT] = 1,   [TF_SOPT_TLS_KEY] = 1,         [TF_SOPT_TLS_CA] = 1,
    [TF_SOPT_TLS_PIN] = 1,    [TF_SOPT_KNOWN_HOSTS] = 1,     [TF_SOPT_STATE_DIR] = 1,
    [TF_SOPT_USERS_FILE] = 1, [TF_SOPT_USER] = 1,            [TF_SOPT_TOKEN] = 1,
    [TF_SOPT_TLS_CLIENT_CERT] = 1, [TF_SOPT_TLS_CLIENT_KEY] = 1,
    [TF_SOPT_S3_STORE] = 1,   [TF_SOPT_S3_ENDPOINT] = 1,     [TF_SOPT_S3_REGION] = 1,
};

static int string_key_known(int key)
{
    return key > 0 && key < TF__SOPT_COUNT && string_known[key];
}

/* Frees one text setting; the token's bytes are wiped first, so that a
   freed heap block does not keep it. */
static void free_string(char **slot)
{
    if (*slot) {
        volatile char *p = *slot;
        while (*p)
            *p++ = 0;
        free(*slot);
        *slot = NULL;
    }
}

static int key_known(int key)
{
    return key > 0 && key < TF__OPT_COUNT && specs[key].max > 0;
}

int tf__options_copy(tf_options *dst, const tf_options *src)
{
    if (!src) {
        memset(dst, 0, sizeof *dst);
        for (int k = 0; k < TF__OPT_COUNT; k++)
            dst->value[k] = specs[k].def;
        return TF_OK;
    }
    *dst = *src;
    tf__tls_share_ref(dst->tls_share);
    for (int k = 0; k < TF__SOPT_COUNT; k++)
        dst->str[k] = NULL;
    for (int k = 0; k < TF__SOPT_COUNT; k++) {
        if (src->str[k] && !(dst->str[k] = strdup(src->str[k]))) {
            tf__options_release(dst);
            return TF_ENOMEM;
        }
    }
    return TF_OK;
}

void tf__options_release(tf_options *o)
{
    for (int k = 0; k < TF__SOPT_COUNT; k++)
        free_string(&o->str[k]);
    tf__tls_share_unref(o->tls_share);
    o->tls_share = NULL;
}

int tf_options_new(tf_options **out)
{
    if (!out)
        return TF_EINVAL;
    *out = malloc(sizeof **out);
    if (!*out)
        return TF_ENOMEM;
    tf__options_copy(*out, NULL);
    /* Without its cache an options object still works: no resumption. */
    (void)tf__tls_share_new(&(*out)->tls_share);
    return TF_OK;
}

void tf_options_free(tf_options *opt)
{
    if (!opt)
        return;
    tf__options_release(opt);
    free(opt);
}

int tf_options_set(tf_options *opt, tf_option key, int64_t value)
{
    if (!opt || !key_known((int)key))
        return TF_EINVAL;
    if (value < specs[key].min || value > specs[key].max)
        return TF_EINVAL;
    opt->value[key] = value;
    return TF_OK;
}

int tf_options_get(const tf_options *opt, tf_option key, int64_t *value)
{
    if (!opt || !value || !key_known((int)key))
        return TF_EINVAL;
    *value = opt->value[key];
    return TF_OK;
}

int tf_options_set_string(tf_options *opt, tf_string_option key, const char *value)
{
    if (!opt || !string_key_known((int)key))
        return TF_EINVAL;
    char *copy = NULL;
    if (value) {
        if (strnlen(value, TF__SOPT_MAX + 1) > TF__SOPT_MAX)
            return TF_EINVAL;
        if (!(copy = strdup(value)))
            return TF_ENOMEM;
    }
    free_string(&opt->str[key]);
    opt->str[key] = copy;
    return TF_OK;
}

int tf_options_get_string(const tf_options *opt, tf_string_option key, const char **value)
{
    if (!opt || !value || !string_key_known((int)key))
        return TF_EINVAL;
    *value = opt->str[key];
    return TF_OK;
}

int tf_options_set_progress(tf_options *opt, tf_progress_fn fn, void *user)
{
    if (!opt)
        return TF_EINVAL;
    opt->progress = fn;
    opt->progress_user = user;
    return TF_OK;
}

int tf_options_set_item_progress(tf_options *opt, tf_item_progress_fn fn, void *user)
{
    if (!opt)
        return TF_EINVAL;
    opt->item_progress = fn;
    opt->progress_user_item = user;
    return TF_OK;
}

int tf_options_set_log(tf_options *opt, tf_log_fn fn, void *user)
{
    if (!opt)
        return TF_EINVAL;
    opt->log = fn;
    opt->log_user = user;
    return TF_OK;
}
