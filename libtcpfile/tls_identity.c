/*
 * tls_identity.c - loading, creating and fingerprinting the server's TLS
 * certificate and key. See tls_identity.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "b64.h"
#include "ossl.h"
#include "secfile.h"
#include "tls_identity.h"

/* PEM files of a few certificates and one key are small; a cap keeps a
   wrong path (a disk image, /dev/zero) from being read whole. */
#define PEM_MAX (1024 * 1024)
#define CERT_DAYS 36525 /* 100 years: the fingerprint, not the dates, is what users check */

struct tf__tls_identity {
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;
    char fp[TF__FP_SIZE];
};

/* A PEM pass-phrase callback that never asks: OpenSSL's default would
   prompt on the terminal, and a library must not. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int tf__tls_spki_sha256(unsigned char out[32], X509 *cert, tf__err *e)
{
    X509_PUBKEY *pk = cert ? X509_get_X509_PUBKEY(cert) : NULL;
    if (!pk)
        return tf__fail(e, TF_EINVAL, "certificate without a public key");
    /* The whole DER SubjectPublicKeyInfo (algorithm + key), as
       `openssl pkey -pubin -outform DER` prints it; X509_pubkey_digest would
       hash the key bits only. */
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(pk, &der);
    if (n <= 0)
        return tf__ossl_fail(e, TF_ENOMEM, "cannot encode the public key");
    unsigned int mdlen = 0;
    int ok = EVP_Digest(der, (size_t)n, out, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok || mdlen != 32)
        return tf__ossl_fail(e, TF_EINTERNAL, "SHA-256 failed");
    return TF_OK;
}

int tf__tls_fingerprint(char out[TF__FP_SIZE], X509 *cert, tf__err *e)
{
    unsigned char md[32];
    int r = tf__tls_spki_sha256(md, cert, e);
    if (r != TF_OK)
        return r;
    memcpy(out, TF__FP_PREFIX, sizeof TF__FP_PREFIX - 1);
    if (tf__b64_encode(out + sizeof TF__FP_PREFIX - 1, TF__FP_SIZE - (sizeof TF__FP_PREFIX - 1),
                       md, sizeof md, 0) != 43)
        return tf__fail(e, TF_EINTERNAL, "cannot encode the fingerprint");
    return TF_OK;
}

int tf__tls_fingerprint_parse(unsigned char out[32], const char *text, tf__err *e)
{
    size_t plen = sizeof TF__FP_PREFIX - 1;
    if (!text || strncmp(text, TF__FP_PREFIX, plen) != 0)
        return tf__fail(e, TF_EINVAL, "a fingerprint starts with \"SHA256:\"");
    const char *b = text + plen;
    size_t n = strlen(b);
    if (n == 44 && b[43] == '=')
        n = 43;
    unsigned char md[33];
    if (n != 43 || tf__b64_decode(md, sizeof md, b, n) != 32)
        return tf__fail(e, TF_EINVAL,
                        "a fingerprint is \"SHA256:\" and 43 base64 characters (as ssh prints)");
    memcpy(out, md, 32);
    return TF_OK;
}

static tf__tls_identity *identity_new(void)
{
    return calloc(1, sizeof(tf__tls_identity));
}

void tf__tls_identity_free(tf__tls_identity *id)
{
    if (!id)
        return;
    X509_free(id->cert);
    EVP_PKEY_free(id->key);
    sk_X509_pop_free(id->chain, X509_free);
    free(id);
}

const char *tf__tls_identity_fingerprint(const tf__tls_identity *id)
{
    return id ? id->fp : NULL;
}

X509 *tf__tls_identity_cert(const tf__tls_identity *id)
{
    return id ? id->cert : NULL;
}

EVP_PKEY *tf__tls_identity_key(const tf__tls_identity *id)
{
    return id ? id->key : NULL;
}

STACK_OF(X509) *tf__tls_identity_chain(const tf__tls_identity *id)
{
    return id ? id->chain : NULL;
}

/* Reads a PEM file through secfile (size cap, clear errors) into a memory BIO. */
static int pem_bio(BIO **out, const char *path, const char *what, tf__err *e)
{
    char *data;
    size_t len;
    *out = NULL;
    int r = tf__secfile_read(path, PEM_MAX, &data, &len, e);
    if (r != TF_OK) {
        if (r == TF_ETOOBIG)
            return tf__fail(e, TF_EINVAL, "%s %s is too large for a PEM file", what, path);
        return r;
    }
    /* A secure-memory BIO: its buffer is cleansed when freed (a key). */
    BIO *b = BIO_new(BIO_s_secmem());
    if (!b || BIO_write(b, data, (int)len) != (int)len) {
        BIO_free(b);
        tf__secfile_free(data, len);
        return tf__ossl_fail(e, TF_ENOMEM, "out of memory reading %s", path);
    }
    tf__secfile_free(data, len);
    *out = b;
    return TF_OK;
}

static int load_cert(tf__tls_identity *id, const char *cert_file, tf__err *e)
{
    BIO *b;
    int r = pem_bio(&b, cert_file, "certificate", e);
    if (r != TF_OK)
        return r;
    id->cert = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    if (!id->cert) {
        BIO_free(b);
        return tf__ossl_fail(e, TF_EINVAL, "%s holds no PEM certificate", cert_file);
    }
    /* What follows the leaf is its chain; the end of the file ends it. */
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL) {
        if (!id->chain && !(id->chain = sk_X509_new_null())) {
            X509_free(x);
            BIO_free(b);
            return tf__ossl_fail(e, TF_ENOMEM, "out of memory");
        }
        if (!sk_X509_push(id->chain, x)) {
            X509_free(x);
            BIO_free(b);
            return tf__ossl_fail(e, TF_ENOMEM, "out of memory");
        }
    }
    unsigned long err = ERR_peek_last_error();
    BIO_free(b);
    if (err && !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE))
        return tf__ossl_fail(e, TF_EINVAL, "%s: a certificate after the first is unreadable",
                             cert_file);
    tf__ossl_clear();
    return TF_OK;
}

int tf__tls_cert_file_fingerprint(char out[TF__FP_SIZE], const char *cert_file, tf__err *e)
{
    out[0] = '\0';
    tf__tls_identity *id = identity_new();
    if (!id)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    int r = load_cert(id, cert_file, e);
    if (r == TF_OK)
        r = tf__tls_fingerprint(out, id->cert, e);
    tf__tls_identity_free(id);
    return r;
}

static int load_key(EVP_PKEY **key, const char *key_file, tf__err *e)
{
    BIO *b;
    int r = pem_bio(&b, key_file, "key", e);
    if (r != TF_OK)
        return r;
    *key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (!*key)
        return tf__ossl_fail(e, TF_EINVAL,
                             "%s holds no unencrypted PEM private key", key_file);
    return TF_OK;
}

static int finish(tf__tls_identity *id, const char *cert_file, const char *key_file, tf__err *e)
{
    if (X509_check_private_key(id->cert, id->key) != 1)
        return tf__ossl_fail(e, TF_EINVAL, "the key in %s does not match the certificate in %s",
                             key_file, cert_file);
    return tf__tls_fingerprint(id->fp, id->cert, e);
}

int tf__tls_identity_load(tf__tls_identity **out, const char *cert_file, const char *key_file,
                          tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "out is NULL");
    *out = NULL;
    if (!cert_file || !key_file || !*cert_file || !*key_file)
        return tf__fail(e, TF_EINVAL, "a certificate file and a key file are both needed");
    tf__tls_identity *id = identity_new();
    if (!id)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    int r = load_cert(id, cert_file, e);
    if (r == TF_OK)
        r = load_key(&id->key, key_file, e);
    if (r == TF_OK)
        r = finish(id, cert_file, key_file, e);
    if (r != TF_OK) {
        tf__tls_identity_free(id);
        return r;
    }
    *out = id;
    return TF_OK;
}

/* ---- creating an identity ------------------------------------------- */

/* The subjectAltName for hostname: an IP literal as IP:, a name as DNS:. */
static int san_for(char *buf, size_t cap, const char *host, tf__err *e)
{
    unsigned char tmp[16];
    if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1) {
        snprintf(buf, cap, "IP:%s", host);
        return TF_OK;
    }
    size_t n = strlen(host);
    if (n == 0 || n > 253)
        return tf__fail(e, TF_EINVAL, "a host name has 1 to 253 characters");
    for (size_t i = 0; i < n; i++) {
        char c = host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return tf__fail(e, TF_EINVAL,
                            "host name \"%s\": only letters, digits, '-' and '.' are allowed",
                            host);
    }
    snprintf(buf, cap, "DNS:%s", host);
    return TF_OK;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static int make_cert(X509 **out, EVP_PKEY *key, const char *host, tf__err *e)
{
    char san[300];
    int r = san_for(san, sizeof san, host, e);
    if (r != TF_OK)
        return r;
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    if (!x)
        return tf__ossl_fail(e, TF_ENOMEM, "out of memory");
    /* A random positive serial of 127 bits, as RFC 5280 and CAs do. */
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1) {
        X509_free(x);
        return tf__ossl_fail(e, TF_EINTERNAL, "no random bytes for the serial number");
    }
    serial[0] &= 0x7f;
    serial[0] |= 0x40; /* no leading zero byte, so the length is fixed */
    X509_NAME *name = X509_get_subject_name(x);
    int ok = X509_set_version(x, 2) && (bn = BN_bin2bn(serial, sizeof serial, NULL)) != NULL &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL &&
             /* An hour back, for clients whose clock is slightly behind. */
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
             X509_time_adj_ex(X509_getm_notAfter(x), CERT_DAYS, 0, NULL) != NULL &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host,
                                        -1, -1, 0) &&
             X509_set_issuer_name(x, name) && X509_set_pubkey(x, key) &&
             add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, NID_key_usage, "critical,digitalSignature") &&
             add_ext(x, NID_ext_key_usage, "serverAuth") &&
             add_ext(x, NID_subject_key_identifier, "hash") &&
             add_ext(x, NID_subject_alt_name, san) && X509_sign(x, key, EVP_sha256()) > 0;
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        return tf__ossl_fail(e, TF_EINTERNAL, "cannot make a self-signed certificate");
    }
    *out = x;
    return TF_OK;
}

/* Writes what a PEM writer produces into path, atomically, 0600. */
static int write_pem(const char *path, EVP_PKEY *key, X509 *cert, tf__err *e)
{
    BIO *b = BIO_new(BIO_s_secmem());
    if (!b)
        return tf__ossl_fail(e, TF_ENOMEM, "out of memory");
    int ok = key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_X509(b, cert);
    if (!ok) {
        BIO_free(b);
        return tf__ossl_fail(e, TF_EINTERNAL, "cannot encode %s", path);
    }
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    int r = tf__secfile_write(path, data, (size_t)len, e);
    BIO_free(b); /* a secmem BIO cleanses the key text */
    return r;
}

static int path_in(char *buf, size_t cap, const char *dir, const char *file, tf__err *e)
{
    if (snprintf(buf, cap, "%s/%s", dir, file) >= (int)cap)
        return tf__fail(e, TF_EINVAL, "state directory name too long");
    return TF_OK;
}

static int exists(const char *path, struct stat *st)
{
    return lstat(path, st) == 0 ? 1 : errno == ENOENT ? 0 : -1;
}

static int ensure_locked(tf__tls_identity *id, const char *key_path, const char *cert_path,
                         const char *host, int *created, tf__err *e)
{
    struct stat kst, cst;
    int have_key = exists(key_path, &kst), have_cert = exists(cert_path, &cst);
    if (have_key < 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot examine %s", key_path);
    if (have_cert < 0)
        return tf__fail_errno(e, TF_EIO, errno, "cannot examine %s", cert_path);
    int r;
    if (have_key) {
        /* As ssh refuses an unprotected private key: someone else may
           have read it, so it no longer proves who the server is. */
        if (!S_ISREG(kst.st_mode))
            return tf__fail(e, TF_EINVAL, "%s is not a regular file", key_path);
        if (kst.st_mode & 077)
            return tf__fail(e, TF_EACCES,
                            "%s is readable by others (mode %03o): the key may be known to "
                            "someone else; make a new one (remove it and %s) or chmod 600 it",
                            key_path, (unsigned)(kst.st_mode & 0777), cert_path);
        r = load_key(&id->key, key_path, e);
        if (r != TF_OK)
            return r;
        if (have_cert) {
            r = load_cert(id, cert_path, e);
            if (r != TF_OK)
                return r;
            return finish(id, cert_path, key_path, e);
        }
        /* The key survived and its certificate did not (a crash between
           the two renames, or a removed file): a new certificate for the
           same key keeps the fingerprint users already know. */
    } else {
        if (have_cert)
            return tf__fail(e, TF_EINVAL,
                            "%s exists but its key %s does not; remove it to make a new "
                            "identity (clients will see a new fingerprint)",
                            cert_path, key_path);
        id->key = EVP_EC_gen("P-256");
        if (!id->key)
            return tf__ossl_fail(e, TF_EINTERNAL, "cannot make an EC P-256 key");
        /* The key first: a certificate is never on disk without it. */
        r = write_pem(key_path, id->key, NULL, e);
        if (r != TF_OK)
            return r;
        if (created)
            *created = 1;
    }
    r = make_cert(&id->cert, id->key, host, e);
    if (r == TF_OK)
        r = write_pem(cert_path, NULL, id->cert, e);
    if (r == TF_OK)
        r = finish(id, cert_path, key_path, e);
    return r;
}

int tf__tls_identity_ensure(tf__tls_identity **out, const char *state_dir,
                            const char *hostname, int *created, tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "out is NULL");
    *out = NULL;
    if (created)
        *created = 0;
    if (!state_dir || !*state_dir)
        return tf__fail(e, TF_EINVAL, "no state directory");
    const char *host = hostname && *hostname ? hostname : "tcpfile";
    char key_path[PATH_MAX], cert_path[PATH_MAX];
    int r = path_in(key_path, sizeof key_path, state_dir, TF__TLS_KEY_FILE, e);
    if (r == TF_OK)
        r = path_in(cert_path, sizeof cert_path, state_dir, TF__TLS_CERT_FILE, e);
    if (r == TF_OK)
        r = tf__secfile_mkdirs(state_dir, e);
    if (r != TF_OK)
        return r;
    int lock;
    r = tf__secfile_lock(key_path, &lock, e);
    if (r != TF_OK)
        return r;
    tf__tls_identity *id = identity_new();
    if (!id) {
        tf__secfile_unlock(lock);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    r = ensure_locked(id, key_path, cert_path, host, created, e);
    tf__secfile_unlock(lock);
    if (r != TF_OK) {
        tf__tls_identity_free(id);
        return r;
    }
    *out = id;
    return TF_OK;
}
