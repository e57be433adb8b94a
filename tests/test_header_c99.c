/*
 * test_header_c99.c - tcpfile.h alone compiles as strict C99 (-std=c99
 * -pedantic -Werror) and links against the public library.
 */
#include <tcpfile.h>

/* A few declarations a C99 user would write. */
static int on_progress(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    return done > total;
}

static void on_log(void *user, const tf_request_log *entry)
{
    (void)user;
    (void)entry;
}

int main(void)
{
    tf_progress_fn progress = on_progress;
    tf_log_fn log_fn = on_log;
    tf_option key = TF_OPT_MAX_NAME_LEN;
    enum tf_error code = TF_ENOENT;
    tf_entry entry = {"name", 1, -1};
    tf_options *opt = NULL;

    if (tf_options_new(&opt) != TF_OK)
        return 1;
    if (tf_options_set(opt, key, 100) != TF_OK || tf_options_set_progress(opt, progress, 0) ||
        tf_options_set_log(opt, log_fn, 0)) {
        tf_options_free(opt);
        return 1;
    }
    tf_options_free(opt);

    if (tf_strerror(code)[0] == '\0' || entry.size != 1)
        return 1;
    if (tf_version() != TF_VERSION_NUMBER)
        return 1;
    /* Callers allocate arrays of tf_get_item: its size is promised (6
       pointers and 2 ints), with the reserved room at its end. */
    tf_get_item item = {0};
    if (sizeof(tf_get_item) != 6 * sizeof(void *) + 2 * sizeof(int) ||
        sizeof item.reserved != 4 * sizeof(void *) ||
        (const char *)&item.reserved + sizeof item.reserved != (const char *)(&item + 1) ||
        item.reserved[3] != NULL)
        return 1;
    return tf_name_check(entry.name, 0, 0) == TF_OK ? 0 : 1;
}
