/*
 * test_errors.c - the error code table (values, messages, names), the
 * version functions and tf_options (defaults, ranges, NULL handling).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Error codes                                                              */
/* ------------------------------------------------------------------------ */

typedef struct err_row {
    int code;
    int value;
    const char *name; /* "TF_" #name */
    const char *msg;
} err_row;

static const err_row map[] = {
#define ROW(name, value, msg) {TF_##name, value, "TF_" #name, msg},
    TF_ERRNO_MAP(ROW)
#undef ROW
};

static void test_errors_fixed_values(void **state)
{
    (void)state;
    /* Released codes never change: these numbers are written by hand. */
    static const struct {
        int code, value;
    } fixed[] = {
        {TF_OK, 0},          {TF_EINVAL, -1},     {TF_ENOENT, -2},     {TF_EEXIST, -3},
        {TF_EACCES, -4},     {TF_ETOOBIG, -5},    {TF_ENOSPC, -6},     {TF_EIO, -7},
        {TF_ENET, -8},       {TF_EPROTO, -9},     {TF_ETIMEDOUT, -10}, {TF_ENOMEM, -11},
        {TF_ECHECKSUM, -12}, {TF_EBUSY, -13},     {TF_ECANCELED, -14}, {TF_EINTERNAL, -15},
        {TF_ERESOLVE, -16},  {TF_ECONNREFUSED, -17}, {TF_EPEERVERIFY, -18},
        {TF_ENOTDIR, -19},   {TF_EISDIR, -20},    {TF_ENOTEMPTY, -21},
        {TF_ECONFLICT, -22},
    };
    for (size_t i = 0; i < ARRAY_LEN(fixed); i++)
        assert_int_equal(fixed[i].code, fixed[i].value);

    assert_int_equal(ARRAY_LEN(map), 22);
    int lowest = 0;
    for (size_t i = 0; i < ARRAY_LEN(map); i++) {
        assert_int_equal(map[i].code, map[i].value);
        /* Dense, in order, starting at -1. */
        assert_int_equal(map[i].value, -(int)(i + 1));
        if (map[i].code < lowest)
            lowest = map[i].code;
    }
    assert_int_equal(TF__ERR_LAST, lowest);
}

static void test_errors_messages_and_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(map); i++) {
        const char *msg = tf_strerror(map[i].code);
        const char *name = tf_errname(map[i].code);
        assert_non_null(msg);
        assert_non_null(name);
        assert_string_equal(msg, map[i].msg);
        assert_string_equal(name, map[i].name);
        assert_true(strlen(msg) > 0);
        assert_true(strncmp(name, "TF_E", 4) == 0);
        assert_string_not_equal(msg, "unknown error");
        assert_string_not_equal(msg, "success");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(msg, tf_strerror(map[j].code)) == 0 ||
                strcmp(name, tf_errname(map[j].code)) == 0) {
                print_error("%s and %s share a message or a name\n", map[i].name,
                            map[j].name);
                fail();
            }
        }
    }
    /* Spot checks, by hand. */
    assert_string_equal(tf_errname(TF_ENOENT), "TF_ENOENT");
    assert_string_equal(tf_strerror(TF_ENOENT), "no such file");
    assert_string_equal(tf_errname(TF_EINTERNAL), "TF_EINTERNAL");
    assert_string_equal(tf_strerror(TF_EPROTO), "protocol error");

    assert_string_equal(tf_strerror(TF_OK), "success");
    assert_string_equal(tf_errname(TF_OK), "TF_OK");
}

static void test_errors_unknown_codes(void **state)
{
    (void)state;
    static const int unknown[] = {1, 2, 15, -30, -100, 1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < ARRAY_LEN(unknown); i++) {
        assert_string_equal(tf_strerror(unknown[i]), "unknown error");
        assert_string_equal(tf_errname(unknown[i]), "TF_EUNKNOWN");
    }
    assert_string_equal(tf_strerror(TF__ERR_LAST - 1), "unknown error");
    assert_string_not_equal(tf_strerror(TF__ERR_LAST), "unknown error");
}

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

static void test_errors_version(void **state)
{
    (void)state;
    assert_int_equal(tf_version(), TF_VERSION_NUMBER);
    assert_int_equal(TF_VERSION_NUMBER,
                     ((unsigned)TF_VERSION_MAJOR << 16) | ((unsigned)TF_VERSION_MINOR << 8) |
                         (unsigned)TF_VERSION_PATCH);
    assert_non_null(tf_version_string());
    assert_string_equal(tf_version_string(), TF_VERSION_STRING);

    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", TF_VERSION_MAJOR, TF_VERSION_MINOR,
             TF_VERSION_PATCH);
    assert_string_equal(tf_version_string(), expect);
    /* Each part fits its byte of the packed number. */
    assert_in_range(TF_VERSION_MINOR, 0, 255);
    assert_in_range(TF_VERSION_PATCH, 0, 255);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static void test_errors_options_defaults(void **state)
{
    (void)state;
    static const struct {
        tf_option key;
        int64_t def;
    } defaults[] = {
        {TF_OPT_CONNECT_TIMEOUT_MS, 10000},
        {TF_OPT_IO_TIMEOUT_MS, 30000},
        {TF_OPT_IDLE_TIMEOUT_MS, 300000},
        {TF_OPT_MAX_NAME_LEN, 255},
        {TF_OPT_READ_ONLY, 0},
        {TF_OPT_MAX_CONNECTIONS, 1024},
        {TF_OPT_MAX_UPLOAD, 0},
        {TF_OPT_OVERWRITE, 1},
        {TF_OPT_MAX_MEMORY, (int64_t)256 << 20},
        {TF_OPT_MAX_LIST_ENTRIES, 1000000},
        {TF_OPT_STOP_GRACE_MS, 5000},
        {TF_OPT_MAX_PARTIALS, 64},
        {TF_OPT_TLS, 0},
        {TF_OPT_TLS_ACCEPT_NEW, 0},
    };
    tf_options *opt = NULL;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    assert_non_null(opt);
    for (size_t i = 0; i < ARRAY_LEN(defaults); i++) {
        int64_t v = -12345;
        assert_int_equal(tf_options_get(opt, defaults[i].key, &v), TF_OK);
        if (v != defaults[i].def) {
            print_error("option %d: default %lld, expected %lld\n", (int)defaults[i].key,
                        (long long)v, (long long)defaults[i].def);
            fail();
        }
    }

    /* The internal copy with no source gives the same defaults. */
    tf_options copy;
    assert_int_equal(tf__options_copy(&copy, NULL), TF_OK);
    for (size_t i = 0; i < ARRAY_LEN(defaults); i++) {
        int64_t v = -1;
        assert_int_equal(tf_options_get(&copy, defaults[i].key, &v), TF_OK);
        assert_true(v == defaults[i].def);
    }
    assert_null(copy.progress);
    assert_null(copy.log);

    /* And a copy of a changed object keeps the change. */
    assert_int_equal(tf_options_set(opt, TF_OPT_MAX_NAME_LEN, 100), TF_OK);
    assert_int_equal(tf_options_set_string(opt, TF_SOPT_USER, "alice"), TF_OK);
    assert_int_equal(tf__options_copy(&copy, opt), TF_OK);
    int64_t v = 0;
    assert_int_equal(tf_options_get(&copy, TF_OPT_MAX_NAME_LEN, &v), TF_OK);
    assert_true(v == 100);
    /* The copy's strings are its own: freeing the source leaves them. */
    tf_options_free(opt);
    assert_string_equal(tf__opt_str(&copy, TF_SOPT_USER), "alice");
    tf__options_release(&copy);
    assert_null(tf__opt_str(&copy, TF_SOPT_USER));
}

static void test_errors_options_strings(void **state)
{
    (void)state;
    tf_options *opt = NULL;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    const char *v = "x";
    /* Unset by default. */
    assert_int_equal(tf_options_get_string(opt, TF_SOPT_TLS_PIN, &v), TF_OK);
    assert_null(v);
    assert_int_equal(tf_options_set_string(opt, TF_SOPT_TLS_PIN, "SHA256:abc"), TF_OK);
    assert_int_equal(tf_options_get_string(opt, TF_SOPT_TLS_PIN, &v), TF_OK);
    assert_string_equal(v, "SHA256:abc");
    /* Replaced, then cleared. */
    assert_int_equal(tf_options_set_string(opt, TF_SOPT_TLS_PIN, "SHA256:def"), TF_OK);
    assert_int_equal(tf_options_get_string(opt, TF_SOPT_TLS_PIN, &v), TF_OK);
    assert_string_equal(v, "SHA256:def");
    assert_int_equal(tf_options_set_string(opt, TF_SOPT_TLS_PIN, NULL), TF_OK);
    assert_int_equal(tf_options_get_string(opt, TF_SOPT_TLS_PIN, &v), TF_OK);
    assert_null(v);
    /* Unknown keys and bad arguments. */
    assert_int_equal(tf_options_set_string(opt, (tf_string_option)0, "x"), TF_EINVAL);
    assert_int_equal(tf_options_set_string(opt, (tf_string_option)999, "x"), TF_EINVAL);
    assert_int_equal(tf_options_set_string(NULL, TF_SOPT_USER, "x"), TF_EINVAL);
    assert_int_equal(tf_options_get_string(opt, TF_SOPT_USER, NULL), TF_EINVAL);
    assert_int_equal(tf_options_get_string(opt, (tf_string_option)999, &v), TF_EINVAL);
    /* Over 4096 bytes is refused and leaves the old value. */
    char big[4098];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(tf_options_set_string(opt, TF_SOPT_USER, "bob"), TF_OK);
    assert_int_equal(tf_options_set_string(opt, TF_SOPT_USER, big), TF_EINVAL);
    assert_int_equal(tf_options_get_string(opt, TF_SOPT_USER, &v), TF_OK);
    assert_string_equal(v, "bob");
    big[4096] = '\0'; /* exactly 4096 is fine */
    assert_int_equal(tf_options_set_string(opt, TF_SOPT_USER, big), TF_OK);
    /* TF_OPT_TLS is an ordinary 0/1 key. */
    assert_int_equal(tf_options_set(opt, TF_OPT_TLS, 2), TF_EINVAL);
    assert_int_equal(tf_options_set(opt, TF_OPT_TLS, 1), TF_OK);
    tf_options_free(opt);
}

static void test_errors_options_ranges(void **state)
{
    (void)state;
    const int64_t day_ms = (int64_t)24 * 3600 * 1000;
    static const int64_t none = INT64_MIN; /* "no such bound to probe" */
    const struct {
        tf_option key;
        int64_t lo, hi; /* valid extremes to probe */
        int64_t below, above; /* invalid neighbours, or none */
    } ranges[] = {
        {TF_OPT_CONNECT_TIMEOUT_MS, 0, day_ms, -1, none},
        {TF_OPT_IO_TIMEOUT_MS, 0, day_ms, -1, none},
        {TF_OPT_IDLE_TIMEOUT_MS, 0, day_ms, -1, none},
        {TF_OPT_MAX_NAME_LEN, 1, 4096, 0, 4097},
        {TF_OPT_READ_ONLY, 0, 1, -1, 2},
        {TF_OPT_MAX_CONNECTIONS, 1, 1000000, 0, 1000001},
        {TF_OPT_MAX_UPLOAD, 0, INT64_MAX, -1, none},
        {TF_OPT_OVERWRITE, 0, 1, -1, 2},
        {TF_OPT_MAX_MEMORY, 1, INT64_MAX, -1, none},
        {TF_OPT_MAX_LIST_ENTRIES, 1, UINT32_MAX, 0, (int64_t)UINT32_MAX + 1},
        {TF_OPT_STOP_GRACE_MS, 0, day_ms, -1, none},
        {TF_OPT_WORKERS, 0, 1024, -1, 1025},
        {TF_OPT_PIPELINE, 1, 1024, 0, 1025},
        {TF_OPT_MAX_PARTIALS, 0, 1000000, -1, 1000001},
        {TF_OPT_TLS, 0, 1, -1, 2},
        {TF_OPT_TLS_ACCEPT_NEW, 0, 1, -1, 2},
        {TF_OPT_DISK_THREADS, 0, 64, -1, 65},
    };
    tf_options *opt = NULL;
    assert_int_equal(tf_options_new(&opt), TF_OK);
    for (size_t i = 0; i < ARRAY_LEN(ranges); i++) {
        tf_option k = ranges[i].key;
        int64_t v = 0, before = 0;
        assert_int_equal(tf_options_set(opt, k, ranges[i].lo), TF_OK);
        assert_int_equal(tf_options_get(opt, k, &v), TF_OK);
        assert_true(v == ranges[i].lo);
        assert_int_equal(tf_options_set(opt, k, ranges[i].hi), TF_OK);
        assert_int_equal(tf_options_get(opt, k, &v), TF_OK);
        assert_true(v == ranges[i].hi);

        /* A refused value leaves the old one in place. */
        assert_int_equal(tf_options_get(opt, k, &before), TF_OK);
        const int64_t bad[] = {ranges[i].below, ranges[i].above, INT64_MIN};
        for (size_t j = 0; j < ARRAY_LEN(bad); j++) {
            if (bad[j] == none && j != 2)
                continue;
            if (tf_options_set(opt, k, bad[j]) != TF_EINVAL) {
                print_error("option %d accepted %lld\n", (int)k, (long long)bad[j]);
                fail();
            }
            assert_int_equal(tf_options_get(opt, k, &v), TF_OK);
            assert_true(v == before);
        }
    }
    tf_options_free(opt);
}

static void test_errors_options_unknown_keys_and_null(void **state)
{
    (void)state;
    tf_options *opt = NULL;
    assert_int_equal(tf_options_new(&opt), TF_OK);

    const int unknown[] = {0, TF__OPT_COUNT, TF__OPT_COUNT + 1, 1000, -1, INT_MIN, INT_MAX};
    for (size_t i = 0; i < ARRAY_LEN(unknown); i++) {
        int64_t v = 77;
        assert_int_equal(tf_options_set(opt, (tf_option)unknown[i], 0), TF_EINVAL);
        assert_int_equal(tf_options_set(opt, (tf_option)unknown[i], 1), TF_EINVAL);
        assert_int_equal(tf_options_get(opt, (tf_option)unknown[i], &v), TF_EINVAL);
        assert_true(v == 77);
    }

    int64_t v = 0;
    assert_int_equal(tf_options_set(NULL, TF_OPT_READ_ONLY, 1), TF_EINVAL);
    assert_int_equal(tf_options_get(NULL, TF_OPT_READ_ONLY, &v), TF_EINVAL);
    assert_int_equal(tf_options_get(opt, TF_OPT_READ_ONLY, NULL), TF_EINVAL);
    assert_int_equal(tf_options_new(NULL), TF_EINVAL);
    assert_int_equal(tf_options_set_progress(NULL, NULL, NULL), TF_EINVAL);
    assert_int_equal(tf_options_set_log(NULL, NULL, NULL), TF_EINVAL);

    /* Callbacks are stored as given, and may be cleared. */
    int user = 0;
    assert_int_equal(tf_options_set_progress(opt, NULL, &user), TF_OK);
    assert_ptr_equal(opt->progress_user, &user);
    assert_int_equal(tf_options_set_log(opt, NULL, &user), TF_OK);
    assert_ptr_equal(opt->log_user, &user);

    tf_options_free(opt);
    tf_options_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* The error record: the first message of a failure wins                    */
/* ------------------------------------------------------------------------ */

static void test_errors_first_message_wins(void **state)
{
    (void)state;
    tf__err e = {{0}};
    assert_int_equal(tf__fail_errno(&e, TF_ENOSPC, ENOSPC, "write failed"), TF_ENOSPC);
    char want[TF_ERRMSG_MAX];
    snprintf(want, sizeof want, "write failed: %s", strerror(ENOSPC));
    assert_string_equal(e.msg, want);
    /* Later layers return their code but leave the cause alone. */
    assert_int_equal(tf__fail(&e, TF_EIO, "the transfer failed"), TF_EIO);
    assert_int_equal(tf__fail_errno(&e, TF_ENET, EPIPE, "send failed"), TF_ENET);
    assert_string_equal(e.msg, want);
    /* Cleared (each public call does at entry), the next failure records. */
    tf__err_clear(&e);
    assert_string_equal(e.msg, "");
    assert_int_equal(tf__fail(&e, TF_ENOENT, "no file named \"%s\"", "x"), TF_ENOENT);
    assert_string_equal(e.msg, "no file named \"x\"");
    /* NULL records are allowed: the code still comes back. */
    assert_int_equal(tf__fail(NULL, TF_EINVAL, "ignored"), TF_EINVAL);
    assert_int_equal(tf__fail_errno(NULL, TF_EIO, EIO, "ignored"), TF_EIO);
    /* An empty message still marks the record as holding a failure. */
    tf__err_clear(&e);
    tf__fail(&e, TF_EIO, "%s", "");
    assert_true(e.msg[0] != '\0');
    tf__fail(&e, TF_EIO, "later");
    assert_string_not_equal(e.msg, "later");
}

static void test_errors_prefix_adds_context(void **state)
{
    (void)state;
    tf__err e = {{0}};
    /* With nothing held, the prefix is the message. */
    assert_int_equal(tf__err_prefix(&e, TF_ENET, "during the handshake"), TF_ENET);
    assert_string_equal(e.msg, "during the handshake");
    tf__err_clear(&e);
    tf__fail_errno(&e, TF_EACCES, EACCES, "cannot create a temporary file");
    assert_int_equal(tf__err_prefix(&e, TF_EACCES, "cannot write beside \"%s\"", "/a/b"),
                     TF_EACCES);
    char want[TF_ERRMSG_MAX];
    snprintf(want, sizeof want, "cannot write beside \"/a/b\": cannot create a temporary file: %s",
             strerror(EACCES));
    assert_string_equal(e.msg, want);
    /* Still the first message for whatever comes later. */
    tf__fail(&e, TF_EIO, "later");
    assert_string_equal(e.msg, want);
    assert_int_equal(tf__err_prefix(NULL, TF_EIO, "x"), TF_EIO);
}

static void test_errors_prefix_truncates_safely(void **state)
{
    (void)state;
    char longtext[2 * TF_ERRMSG_MAX];
    memset(longtext, 'c', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    tf__err e = {{0}};
    tf__fail(&e, TF_EIO, "%s", longtext); /* truncated to the record */
    assert_int_equal(strlen(e.msg), TF_ERRMSG_MAX - 1);
    tf__err_prefix(&e, TF_EIO, "head");
    assert_int_equal(strlen(e.msg), TF_ERRMSG_MAX - 1);
    assert_memory_equal(e.msg, "head: ccc", 9);
    /* A prefix longer than the record keeps the record terminated. */
    longtext[TF_ERRMSG_MAX + 10] = '\0';
    memset(longtext, 'p', TF_ERRMSG_MAX + 10);
    tf__err_prefix(&e, TF_EIO, "%s", longtext);
    assert_int_equal(strlen(e.msg), TF_ERRMSG_MAX - 1);
    assert_int_equal(e.msg[0], 'p');
}

static void test_errors_take_and_replace(void **state)
{
    (void)state;
    tf__err e = {{0}}, aside = {{0}};
    tf__fail(&e, TF_ENOENT, "the server's refusal");
    tf__fail(&aside, TF_EIO, "reading the file failed");
    /* Precedence, not time: the failure kept aside is chosen explicitly. */
    tf__err_take(&e, &aside);
    assert_string_equal(e.msg, "reading the file failed");
    tf__err_take(&e, &e); /* itself: unchanged */
    assert_string_equal(e.msg, "reading the file failed");
    assert_int_equal(tf__err_replace(&e, TF_ETIMEDOUT, "connecting to %s timed out", "h"),
                     TF_ETIMEDOUT);
    assert_string_equal(e.msg, "connecting to h timed out");
    assert_int_equal(tf__err_replace(NULL, TF_EIO, "x"), TF_EIO);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_fixed_values),
        cmocka_unit_test(test_errors_messages_and_names),
        cmocka_unit_test(test_errors_unknown_codes),
        cmocka_unit_test(test_errors_version),
        cmocka_unit_test(test_errors_options_defaults),
        cmocka_unit_test(test_errors_options_strings),
        cmocka_unit_test(test_errors_options_ranges),
        cmocka_unit_test(test_errors_options_unknown_keys_and_null),
        cmocka_unit_test(test_errors_first_message_wins),
        cmocka_unit_test(test_errors_prefix_adds_context),
        cmocka_unit_test(test_errors_prefix_truncates_safely),
        cmocka_unit_test(test_errors_take_and_replace),
    };
    return TU_RUN_GROUP("errors", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
