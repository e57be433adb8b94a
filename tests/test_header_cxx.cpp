/*
 * test_header_cxx.cpp - tcpfile.h compiles as C++ (extern "C", no C-only
 * constructs) and links against the public library.
 */
#include <tcpfile.h>

#include <cstring>

namespace {

int on_progress(void *, uint64_t done, uint64_t total)
{
    return done > total ? 1 : 0;
}

} // namespace

int main()
{
    tf_progress_fn progress = on_progress;
    tf_options *opt = nullptr;
    if (tf_options_new(&opt) != TF_OK)
        return 1;
    int rc = tf_options_set(opt, TF_OPT_READ_ONLY, 1);
    rc |= tf_options_set_progress(opt, progress, nullptr);
    tf_options_free(opt);
    if (rc != TF_OK)
        return 1;

    tf_entry entry = {"name", 1, -1};
    tf_get_item item = {}; /* zeroed, reserved room included */
    if (sizeof item != 6 * sizeof(void *) + 2 * sizeof(int) || item.reserved[0] != nullptr)
        return 1;
    tf_client *client = nullptr;
    tf_close(client); /* NULL is fine */
    if (std::strcmp(tf_errname(TF_EPROTO), "TF_EPROTO") != 0)
        return 1;
    return tf_strerror(TF_OK)[0] != '\0' && entry.mtime == -1 ? 0 : 1;
}
