/*
 * test_known_hosts.c - the client's known_hosts file: names, lookups
 * (unknown, match, mismatch), malformed lines skipped and reported, adding
 * (file and directory modes, refusing to replace a key), and clients
 * adding at once (processes) losing no line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "known_hosts.h"
#include "testutil.h"

/* Two well-formed fingerprints (SHA-256 of "" and of "abc"). */
#define FP1 "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
#define FP2 "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"

typedef struct fixture {
    char dir[PATH_MAX];
    char path[PATH_MAX]; /* dir/cfg/tcpfile/known_hosts: two missing levels */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    tu_mkdtemp(f->dir, sizeof f->dir);
    assert_true(snprintf(f->path, sizeof f->path, "%s/cfg/tcpfile/known_hosts", f->dir) <
                (int)sizeof f->path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static int lookup(const fixture *f, const char *host, unsigned port, const char *fp,
                  tf__kh_result *res)
{
    tf__err e = {{0}};
    int r = tf__known_hosts_lookup(f->path, host, port, fp, res, &e);
    assert_int_equal(r, TF_OK);
    return res->status;
}

static void test_known_hosts_names(void **state)
{
    (void)state;
    char b[TF__KH_NAME_MAX + 1];
    tf__err e = {{0}};
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "Files.Example", 7070, &e), TF_OK);
    assert_string_equal(b, "files.example:7070");
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "192.0.2.1", 1, &e), TF_OK);
    assert_string_equal(b, "192.0.2.1:1");
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "[::1]", 7070, &e), TF_OK);
    assert_string_equal(b, "[::1]:7070");
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "0:0::1", 7070, &e), TF_OK);
    assert_string_equal(b, "[::1]:7070");
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "2001:DB8::A", 65535, &e), TF_OK);
    assert_string_equal(b, "[2001:db8::a]:65535");
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "x", 0, &e), TF_EINVAL);
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "x", 65536, &e), TF_EINVAL);
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "", 1, &e), TF_EINVAL);
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "a b", 1, &e), TF_EINVAL);
    assert_int_equal(tf__known_hosts_name(b, sizeof b, "a\nb", 1, &e), TF_EINVAL);
    assert_int_equal(tf__known_hosts_name(b, 5, "files.example", 1, &e), TF_EINVAL);
}

static void test_known_hosts_default_path(void **state)
{
    (void)state;
    char b[PATH_MAX];
    tf__err e = {{0}};
    char *old_xdg = getenv("XDG_CONFIG_HOME") ? strdup(getenv("XDG_CONFIG_HOME")) : NULL;
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("XDG_CONFIG_HOME", "/xdg/conf", 1);
    setenv("HOME", "/home/someone", 1);
    assert_int_equal(tf__known_hosts_default_path(b, sizeof b, &e), TF_OK);
    assert_string_equal(b, "/xdg/conf/tcpfile/known_hosts");
    /* A relative XDG_CONFIG_HOME is ignored, as the spec says. */
    setenv("XDG_CONFIG_HOME", "relative", 1);
    assert_int_equal(tf__known_hosts_default_path(b, sizeof b, &e), TF_OK);
    assert_string_equal(b, "/home/someone/.config/tcpfile/known_hosts");
    unsetenv("XDG_CONFIG_HOME");
    assert_int_equal(tf__known_hosts_default_path(b, sizeof b, &e), TF_OK);
    assert_string_equal(b, "/home/someone/.config/tcpfile/known_hosts");
    assert_int_equal(tf__known_hosts_default_path(b, 10, &e), TF_EINVAL);
    if (old_xdg)
        setenv("XDG_CONFIG_HOME", old_xdg, 1);
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_xdg);
    free(old_home);
}

static void test_known_hosts_add_and_lookup(void **state)
{
    fixture *f = *state;
    tf__kh_result res;
    tf__err e = {{0}};
    /* No file yet: unknown, and the lookup creates nothing. */
    assert_int_equal(lookup(f, "files.example", 7070, FP1, &res), TF__KH_UNKNOWN);
    assert_int_equal(access(f->path, F_OK), -1);

    assert_int_equal(tf__known_hosts_add(f->path, "files.example", 7070, FP1, &e), TF_OK);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[PATH_MAX];
    assert_true(snprintf(dir, sizeof dir, "%s/cfg/tcpfile", f->dir) < (int)sizeof dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(lookup(f, "files.example", 7070, FP1, &res), TF__KH_MATCH);
    assert_int_equal(res.bad_lines, 0);
    /* Case does not matter in a name; the port does. */
    assert_int_equal(lookup(f, "FILES.example", 7070, FP1, &res), TF__KH_MATCH);
    assert_int_equal(lookup(f, "files.example", 7071, FP1, &res), TF__KH_UNKNOWN);
    /* Another key for a known server: a mismatch, naming the key on record. */
    assert_int_equal(lookup(f, "files.example", 7070, FP2, &res), TF__KH_MISMATCH);
    assert_string_equal(res.known, FP1);
    assert_int_equal(res.line, 2); /* after the header comment */

    /* Adding again is a no-op; adding another key is refused. */
    assert_int_equal(tf__known_hosts_add(f->path, "files.example", 7070, FP1, &e), TF_OK);
    assert_int_equal(tf__known_hosts_add(f->path, "files.example", 7070, FP2, &e), TF_EEXIST);
    assert_non_null(strstr(e.msg, "line 2"));
    assert_int_equal(lookup(f, "files.example", 7070, FP2, &res), TF__KH_MISMATCH);

    /* IPv6, and a fingerprint with its '=' of padding. */
    assert_int_equal(tf__known_hosts_add(f->path, "[::1]", 7070, FP2 "=", &e), TF_OK);
    assert_int_equal(lookup(f, "::1", 7070, FP2, &res), TF__KH_MATCH);
    size_t len;
    char *text = (char *)tu_read_file(f->path, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "\nfiles.example:7070 " FP1 "\n"));
    assert_non_null(strstr(text, "\n[::1]:7070 " FP2 "\n"));
    assert_null(strstr(text, FP2 "="));
    free(text);

    /* Bad arguments. */
    assert_int_equal(tf__known_hosts_lookup(f->path, "x", 1, "SHA256:short", &res, &e),
                     TF_EINVAL);
    assert_int_equal(tf__known_hosts_add(f->path, "x", 0, FP1, &e), TF_EINVAL);
}

static void test_known_hosts_malformed_lines(void **state)
{
    fixture *f = *state;
    tf__err e = {{0}};
    /* Make the directory through a first add, then write the file by hand. */
    assert_int_equal(tf__known_hosts_add(f->path, "seed.example", 1, FP1, &e), TF_OK);
    const char *content = "# a comment\n"
                          "\n"
                          "   # an indented comment\n"
                          "good.example:7070 " FP1 "\n"
                          "noport.example " FP1 "\n"                /* 5 */
                          "bad.example:7070 SHA256:xyz\n"           /* 6 */
                          "three.example:7070 " FP1 " extra\n"      /* 7 */
                          "zero.example:0 " FP1 "\n"                /* 8 */
                          "tabs.example:7070\t" FP2 "   # note\n"
                          "last.example:7070 " FP2; /* no final newline */
    tu_write_file(f->path, content, strlen(content));
    tf__kh_result res;
    assert_int_equal(lookup(f, "good.example", 7070, FP1, &res), TF__KH_MATCH);
    assert_int_equal(res.line, 4);
    assert_int_equal(res.bad_lines, 4);
    assert_int_equal(res.first_bad_line, 5);
    assert_non_null(res.first_bad_why);
    assert_int_equal(lookup(f, "tabs.example", 7070, FP2, &res), TF__KH_MATCH);
    assert_int_equal(lookup(f, "last.example", 7070, FP2, &res), TF__KH_MATCH);
    /* A malformed line matches nothing, not even its own host. */
    assert_int_equal(lookup(f, "bad.example", 7070, FP1, &res), TF__KH_UNKNOWN);

    /* Adding keeps every line, the malformed ones included, and ends the
       unterminated last line first. */
    assert_int_equal(tf__known_hosts_add(f->path, "new.example", 7070, FP1, &e), TF_OK);
    size_t len;
    char *text = (char *)tu_read_file(f->path, &len);
    assert_non_null(text);
    assert_memory_equal(text, content, strlen(content));
    assert_string_equal(text + strlen(content), "\nnew.example:7070 " FP1 "\n");
    free(text);
    assert_int_equal(lookup(f, "new.example", 7070, FP1, &res), TF__KH_MATCH);

    /* Two keys for one host (a rotation): either matches. */
    assert_int_equal(tf__known_hosts_add(f->path, "rot.example", 1, FP1, &e), TF_OK);
    text = (char *)tu_read_file(f->path, &len);
    assert_non_null(text);
    char *more = malloc(len + 100);
    assert_non_null(more);
    int n = snprintf(more, len + 100, "%srot.example:1 %s\n", text, FP2);
    tu_write_file(f->path, more, (size_t)n);
    free(text);
    free(more);
    assert_int_equal(lookup(f, "rot.example", 1, FP1, &res), TF__KH_MATCH);
    assert_int_equal(lookup(f, "rot.example", 1, FP2, &res), TF__KH_MATCH);
}

/* Processes adding at once: every line must survive (the lock). */
static void test_known_hosts_concurrent_add(void **state)
{
    fixture *f = *state;
    enum { PROCS = 6, EACH = 15 };
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            for (int i = 0; i < EACH; i++) {
                char host[64];
                tf__err e = {{0}};
                snprintf(host, sizeof host, "h%d-%d.example", p, i);
                if (tf__known_hosts_add(f->path, host, 7070, (i & 1) ? FP1 : FP2, &e) != TF_OK)
                    _exit(1);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (int p = 0; p < PROCS; p++) {
        for (int i = 0; i < EACH; i++) {
            char host[64];
            tf__kh_result res;
            snprintf(host, sizeof host, "h%d-%d.example", p, i);
            assert_int_equal(lookup(f, host, 7070, (i & 1) ? FP1 : FP2, &res), TF__KH_MATCH);
        }
    }
    size_t len;
    char *text = (char *)tu_read_file(f->path, &len);
    assert_non_null(text);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 1 + PROCS * EACH); /* the header and each host once */
    free(text);
}

/* The ssh policy the TLS client's hook applies. */
static void test_known_hosts_check_policy(void **state)
{
    fixture *f = *state;
    tf__err e = {{0}};
    tf__kh_policy strict = {.path = f->path, .port = 7070, .accept_new = 0};
    tf__kh_policy accept = {.path = f->path, .port = 7070, .accept_new = 1};
    /* Unknown: refused without accept-new, and nothing recorded. */
    assert_int_equal(tf__known_hosts_check(&strict, "files.example", FP1, &e), TF_EPEERVERIFY);
    assert_non_null(strstr(e.msg, "not a known server"));
    assert_non_null(strstr(e.msg, FP1));
    assert_int_equal(access(f->path, F_OK), -1);
    /* With accept-new it is recorded, then known to the strict policy. */
    assert_int_equal(tf__known_hosts_check(&accept, "files.example", FP1, &e), TF_OK);
    assert_int_equal(tf__known_hosts_check(&strict, "files.example", FP1, &e), TF_OK);
    /* Another key: refused, loudly, even with accept-new, and not recorded. */
    assert_int_equal(tf__known_hosts_check(&accept, "files.example", FP2, &e), TF_EPEERVERIFY);
    assert_non_null(strstr(e.msg, "HAS CHANGED"));
    assert_non_null(strstr(e.msg, FP1));
    assert_non_null(strstr(e.msg, FP2));
    tf__kh_result res;
    assert_int_equal(lookup(f, "files.example", 7070, FP2, &res), TF__KH_MISMATCH);
    /* The port is part of the identity. */
    tf__kh_policy other = {.path = f->path, .port = 7071, .accept_new = 0};
    assert_int_equal(tf__known_hosts_check(&other, "files.example", FP1, &e), TF_EPEERVERIFY);
    assert_int_equal(tf__known_hosts_check(NULL, "files.example", FP1, &e), TF_EINVAL);
}

int main(int argc, char **argv)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_hosts_names),
        cmocka_unit_test(test_known_hosts_default_path),
        T(test_known_hosts_add_and_lookup),
        T(test_known_hosts_malformed_lines),
        T(test_known_hosts_concurrent_add),
        T(test_known_hosts_check_policy),
    };
#undef T
    return TU_RUN_GROUP("known_hosts", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
