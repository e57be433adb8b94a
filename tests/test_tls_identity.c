/*
 * test_tls_identity.c - the server's TLS identity: created once in a state
 * directory and reused, files and modes, loading PEM files, a key that does
 * not match its certificate, and the fingerprint against the one the
 * openssl command line computes from the same certificate.
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
#include <unistd.h>

#include "internal.h"
#include "testutil.h"
#include "tls_identity.h"

typedef struct fixture {
    char dir[PATH_MAX];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    tu_mkdtemp(f->dir, sizeof f->dir);
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

/* Runs a shell command, returns its first output line (trimmed) in out. */
static int run(char *out, size_t cap, const char *fmt, ...) TF__PRINTF(3, 4);
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    if (!fgets(out, (int)cap, p))
        out[0] = '\0';
    int st = pclose(p);
    out[strcspn(out, "\r\n")] = '\0';
    return st;
}

/* The fingerprint as the openssl command line computes it (the recipe of
   docs/security.md), padding removed as ssh prints it. */
static void openssl_fingerprint(char *out, size_t cap, const char *cert)
{
    char b64[128];
    int st = run(b64, sizeof b64,
                 "openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin -outform DER | "
                 "openssl dgst -sha256 -binary | base64",
                 cert);
    assert_int_equal(st, 0);
    size_t n = strlen(b64);
    while (n > 0 && b64[n - 1] == '=')
        b64[--n] = '\0';
    assert_int_equal(n, 43);
    snprintf(out, cap, "SHA256:%s", b64);
}

static void path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    assert_true(snprintf(buf, cap, "%s/%s", dir, name) < (int)cap);
}

static void test_tls_identity_create_then_reuse(void **state)
{
    fixture *f = *state;
    char sdir[PATH_MAX], fp1[TF__FP_SIZE];
    /* Two levels that do not exist yet. */
    path_in(sdir, sizeof sdir, f->dir, "state/tcpfile");
    tf__err e = {{0}};
    tf__tls_identity *id = NULL;
    int created = -1;
    assert_int_equal(tf__tls_identity_ensure(&id, sdir, "files.example", &created, &e), TF_OK);
    assert_int_equal(created, 1);
    const char *fp = tf__tls_identity_fingerprint(id);
    assert_int_equal(strlen(fp), TF__FP_LEN);
    assert_memory_equal(fp, "SHA256:", 7);
    strcpy(fp1, fp);
    tf__tls_identity_free(id);

    /* Files and modes: the directory 0700, the key 0600. */
    struct stat st;
    assert_int_equal(stat(sdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char key[PATH_MAX], cert[PATH_MAX];
    path_in(key, sizeof key, sdir, TF__TLS_KEY_FILE);
    path_in(cert, sizeof cert, sdir, TF__TLS_CERT_FILE);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(cert, &st), 0);

    /* A later start reuses it: same fingerprint, nothing created. */
    assert_int_equal(tf__tls_identity_ensure(&id, sdir, "files.example", &created, &e), TF_OK);
    assert_int_equal(created, 0);
    assert_string_equal(tf__tls_identity_fingerprint(id), fp1);
    tf__tls_identity_free(id);

    /* The certificate names the host, and the openssl CLI agrees on the
       fingerprint of the key it holds. */
    char line[512], ofp[128];
    assert_int_equal(run(line, sizeof line, "openssl x509 -in '%s' -noout -ext subjectAltName "
                                            "| tail -n 1", cert), 0);
    assert_non_null(strstr(line, "DNS:files.example"));
    openssl_fingerprint(ofp, sizeof ofp, cert);
    assert_string_equal(ofp, fp1);
    /* The key file is a key the CLI reads, and it matches the certificate. */
    char a[256], b[256];
    assert_int_equal(run(a, sizeof a, "openssl pkey -in '%s' -pubout | openssl sha256", key), 0);
    assert_int_equal(run(b, sizeof b, "openssl x509 -in '%s' -noout -pubkey | openssl sha256",
                         cert), 0);
    assert_string_equal(a, b);

    /* Loading the same two files directly gives the same identity. */
    assert_int_equal(tf__tls_identity_load(&id, cert, key, &e), TF_OK);
    assert_string_equal(tf__tls_identity_fingerprint(id), fp1);
    tf__tls_identity_free(id);

    /* A lost certificate is made again for the kept key: same fingerprint. */
    assert_int_equal(unlink(cert), 0);
    assert_int_equal(tf__tls_identity_ensure(&id, sdir, NULL, &created, &e), TF_OK);
    assert_int_equal(created, 0);
    assert_string_equal(tf__tls_identity_fingerprint(id), fp1);
    tf__tls_identity_free(id);
    assert_int_equal(run(line, sizeof line, "openssl x509 -in '%s' -noout -subject", cert), 0);
    assert_non_null(strstr(line, "CN = tcpfile"));
}

static void test_tls_identity_refuses_unsafe_state(void **state)
{
    fixture *f = *state;
    tf__err e = {{0}};
    tf__tls_identity *id = NULL;
    assert_int_equal(tf__tls_identity_ensure(&id, f->dir, NULL, NULL, &e), TF_OK);
    char fp1[TF__FP_SIZE];
    strcpy(fp1, tf__tls_identity_fingerprint(id));
    tf__tls_identity_free(id);
    char key[PATH_MAX], cert[PATH_MAX];
    path_in(key, sizeof key, f->dir, TF__TLS_KEY_FILE);
    path_in(cert, sizeof cert, f->dir, TF__TLS_CERT_FILE);

    /* A key others may have read is refused, and left as it was. */
    assert_int_equal(chmod(key, 0644), 0);
    assert_int_equal(tf__tls_identity_ensure(&id, f->dir, NULL, NULL, &e), TF_EACCES);
    assert_null(id);
    assert_non_null(strstr(e.msg, "readable by others"));
    assert_int_equal(chmod(key, 0600), 0);

    /* A certificate without its key is refused, not silently replaced
       (clients would see a new fingerprint). */
    char moved[PATH_MAX];
    path_in(moved, sizeof moved, f->dir, "moved-key.pem");
    assert_int_equal(rename(key, moved), 0);
    tf__err_clear(&e); /* the first message of a failure wins: one per call */
    assert_int_equal(tf__tls_identity_ensure(&id, f->dir, NULL, NULL, &e), TF_EINVAL);
    assert_non_null(strstr(e.msg, "its key"));
    assert_int_equal(rename(moved, key), 0);
    assert_int_equal(tf__tls_identity_ensure(&id, f->dir, NULL, NULL, &e), TF_OK);
    assert_string_equal(tf__tls_identity_fingerprint(id), fp1);
    tf__tls_identity_free(id);

    /* Bad host names for the certificate. */
    char other[PATH_MAX];
    path_in(other, sizeof other, f->dir, "other");
    assert_int_equal(tf__tls_identity_ensure(&id, other, "bad host/name", NULL, &e), TF_EINVAL);
    assert_int_equal(tf__tls_identity_ensure(&id, NULL, NULL, NULL, &e), TF_EINVAL);
}

static void test_tls_identity_mismatched_key_refused(void **state)
{
    fixture *f = *state;
    char a[PATH_MAX], b[PATH_MAX], out[256];
    path_in(a, sizeof a, f->dir, "a");
    path_in(b, sizeof b, f->dir, "b");
    tf__err e = {{0}};
    tf__tls_identity *ia = NULL, *ib = NULL;
    assert_int_equal(tf__tls_identity_ensure(&ia, a, NULL, NULL, &e), TF_OK);
    assert_int_equal(tf__tls_identity_ensure(&ib, b, NULL, NULL, &e), TF_OK);
    assert_string_not_equal(tf__tls_identity_fingerprint(ia), tf__tls_identity_fingerprint(ib));
    tf__tls_identity_free(ia);
    tf__tls_identity_free(ib);

    char acert[PATH_MAX], bkey[PATH_MAX];
    path_in(acert, sizeof acert, a, TF__TLS_CERT_FILE);
    path_in(bkey, sizeof bkey, b, TF__TLS_KEY_FILE);
    tf__tls_identity *id = (tf__tls_identity *)&e; /* must be reset to NULL */
    assert_int_equal(tf__tls_identity_load(&id, acert, bkey, &e), TF_EINVAL);
    assert_null(id);
    assert_non_null(strstr(e.msg, "does not match"));

    /* An RSA key from the CLI against our EC certificate, too. */
    char rsa[PATH_MAX];
    path_in(rsa, sizeof rsa, f->dir, "rsa.key");
    assert_int_equal(run(out, sizeof out,
                         "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
                         "-out '%s' 2>&1", rsa), 0);
    assert_int_equal(tf__tls_identity_load(&id, acert, rsa, &e), TF_EINVAL);

    /* Missing files, files that are not PEM, and an encrypted key (never a
       pass-phrase prompt). */
    char missing[PATH_MAX], enc[PATH_MAX];
    path_in(missing, sizeof missing, f->dir, "missing.pem");
    assert_int_equal(tf__tls_identity_load(&id, missing, rsa, &e), TF_ENOENT);
    assert_int_equal(tf__tls_identity_load(&id, acert, missing, &e), TF_ENOENT);
    assert_int_equal(tf__tls_identity_load(&id, rsa, rsa, &e), TF_EINVAL);
    assert_non_null(strstr(e.msg, "no PEM certificate"));
    assert_int_equal(tf__tls_identity_load(&id, acert, acert, &e), TF_EINVAL);
    path_in(enc, sizeof enc, f->dir, "enc.key");
    assert_int_equal(run(out, sizeof out,
                         "openssl pkey -in '%s' -aes256 -passout pass:secret -out '%s' 2>&1",
                         rsa, enc), 0);
    assert_int_equal(tf__tls_identity_load(&id, acert, enc, &e), TF_EINVAL);
    assert_non_null(strstr(e.msg, "unencrypted"));
    assert_int_equal(tf__tls_identity_load(&id, NULL, rsa, &e), TF_EINVAL);
}

/* Certificates made by the openssl CLI (EC, RSA, Ed25519), with a chain
   file: our fingerprint is the CLI's. */
static void test_tls_identity_fingerprint_matches_openssl(void **state)
{
    fixture *f = *state;
    static const char *const algs[] = {
        "-newkey ec -pkeyopt ec_paramgen_curve:P-256",
        "-newkey rsa:2048",
        "-newkey ed25519",
    };
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        char key[PATH_MAX], cert[PATH_MAX], out[256], ofp[128];
        char kname[32], cname[32];
        snprintf(kname, sizeof kname, "k%zu.pem", i);
        snprintf(cname, sizeof cname, "c%zu.pem", i);
        path_in(key, sizeof key, f->dir, kname);
        path_in(cert, sizeof cert, f->dir, cname);
        assert_int_equal(run(out, sizeof out,
                             "openssl req -x509 %s -nodes -subj /CN=fixed.example -days 2 "
                             "-keyout '%s' -out '%s' 2>&1",
                             algs[i], key, cert), 0);
        openssl_fingerprint(ofp, sizeof ofp, cert);
        tf__err e = {{0}};
        tf__tls_identity *id = NULL;
        assert_int_equal(tf__tls_identity_load(&id, cert, key, &e), TF_OK);
        assert_string_equal(tf__tls_identity_fingerprint(id), ofp);
        assert_null(tf__tls_identity_chain(id));
        tf__tls_identity_free(id);

        /* The same fingerprint parses back to the SPKI digest. */
        unsigned char md[32], md2[32];
        X509 *x = NULL;
        assert_int_equal(tf__tls_identity_load(&id, cert, key, &e), TF_OK);
        x = tf__tls_identity_cert(id);
        assert_int_equal(tf__tls_spki_sha256(md, x, &e), TF_OK);
        assert_int_equal(tf__tls_fingerprint_parse(md2, ofp, &e), TF_OK);
        assert_memory_equal(md, md2, 32);
        tf__tls_identity_free(id);
    }
    /* A leaf followed by its chain: the chain is kept, the leaf is named. */
    char chain[PATH_MAX], out[256], key0[PATH_MAX];
    path_in(chain, sizeof chain, f->dir, "chain.pem");
    path_in(key0, sizeof key0, f->dir, "k0.pem");
    assert_int_equal(run(out, sizeof out, "cat '%s/c0.pem' '%s/c1.pem' > '%s'", f->dir, f->dir,
                         chain), 0);
    tf__err e = {{0}};
    tf__tls_identity *id = NULL;
    assert_int_equal(tf__tls_identity_load(&id, chain, key0, &e), TF_OK);
    assert_non_null(tf__tls_identity_chain(id));
    tf__tls_identity_free(id);
}

static void test_tls_identity_fingerprint_parse(void **state)
{
    (void)state;
    unsigned char md[32];
    tf__err e = {{0}};
    const char *good = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    assert_int_equal(tf__tls_fingerprint_parse(md, good, &e), TF_OK);
    /* SHA-256 of the empty string. */
    assert_int_equal(md[0], 0xe3);
    assert_int_equal(md[31], 0x55);
    assert_int_equal(
        tf__tls_fingerprint_parse(md, "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", &e),
        TF_OK);
    static const char *const bad[] = {
        NULL,
        "",
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF",
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFUU",
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV", /* non-zero spare bits */
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSu!U",
        "SHA256: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        "MD5:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tf__tls_fingerprint_parse(md, bad[i], &e), TF_EINVAL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_identity_create_then_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_identity_refuses_unsafe_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_identity_mismatched_key_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_identity_fingerprint_matches_openssl, setup,
                                        teardown),
        cmocka_unit_test(test_tls_identity_fingerprint_parse),
    };
    return TU_RUN_GROUP("tls_identity", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
