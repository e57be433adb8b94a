/*
 * tls_identity.h - the server's TLS identity: a certificate and its private
 * key, loaded from PEM files the operator gives, or created once in the
 * server's state directory and reused on every later start; and the
 * fingerprint users check, "SHA256:" + base64 (no padding, as ssh prints
 * host keys) of the SHA-256 of the certificate's DER SubjectPublicKeyInfo.
 * The fingerprint names the key, not the certificate: renewing a
 * certificate for the same key keeps it.
 */
#ifndef TF_TLS_IDENTITY_H
#define TF_TLS_IDENTITY_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "internal.h"

/* "SHA256:" + 43 base64 characters. */
#define TF__FP_LEN 50
#define TF__FP_SIZE (TF__FP_LEN + 1)
#define TF__FP_PREFIX "SHA256:"

/* Names of the files tf__tls_identity_ensure keeps in the state directory. */
#define TF__TLS_KEY_FILE "tls-key.pem"
#define TF__TLS_CERT_FILE "tls-cert.pem"

typedef struct tf__tls_identity tf__tls_identity;

/* Loads a PEM certificate (the leaf first, then any intermediates) and a
   PEM private key (unencrypted: the server starts unattended), and checks
   that they belong together. TF_ENOENT (missing file), TF_EACCES, TF_EINVAL
   (not PEM, encrypted key, key does not match the certificate), TF_ENOMEM.
   *out is the caller's, freed with tf__tls_identity_free. */
int tf__tls_identity_load(tf__tls_identity **out, const char *cert_file, const char *key_file,
                          tf__err *e);

/* The identity kept in state_dir (created 0700 with its parents when
   missing): the EC P-256 key TF__TLS_KEY_FILE (0600) and a self-signed
   certificate TF__TLS_CERT_FILE for hostname (NULL: "tcpfile") as CN and
   subjectAltName, valid 100 years. Created when absent, each file written
   atomically; reused when present (a certificate lost beside a kept key is
   made again for that key, so the fingerprint stays). Serialised with a
   lock file, so two servers starting at once share one identity.
   *created (may be NULL) is 1 when a new key was made. A key file others
   can read, or a certificate without its key, is refused (TF_EACCES,
   TF_EINVAL) rather than replaced. Codes as tf__tls_identity_load, plus
   TF_EIO, TF_ENOSPC. */
int tf__tls_identity_ensure(tf__tls_identity **out, const char *state_dir,
                            const char *hostname, int *created, tf__err *e);

/* The identity's fingerprint, "SHA256:...", valid while id lives. */
const char *tf__tls_identity_fingerprint(const tf__tls_identity *id);
/* Borrowed pointers, valid while id lives (for SSL_CTX_use_*). */
X509 *tf__tls_identity_cert(const tf__tls_identity *id);
EVP_PKEY *tf__tls_identity_key(const tf__tls_identity *id);
/* The intermediates after the leaf in the certificate file; may be NULL. */
STACK_OF(X509) *tf__tls_identity_chain(const tf__tls_identity *id);
void tf__tls_identity_free(tf__tls_identity *id);

/* SHA-256 of cert's DER SubjectPublicKeyInfo. TF_EINVAL, TF_ENOMEM. */
int tf__tls_spki_sha256(unsigned char out[32], X509 *cert, tf__err *e);
/* The same as text: "SHA256:" + unpadded base64, NUL-terminated. */
int tf__tls_fingerprint(char out[TF__FP_SIZE], X509 *cert, tf__err *e);
/* The fingerprint of the first certificate in a PEM file (no key needed).
   TF_ENOENT, TF_EACCES, TF_EINVAL (no certificate), TF_ENOMEM. */
int tf__tls_cert_file_fingerprint(char out[TF__FP_SIZE], const char *cert_file, tf__err *e);
/* Reads a fingerprint as users type it ("SHA256:" + 43 base64 characters,
   an '=' of padding tolerated) into its 32 bytes. TF_EINVAL otherwise. */
int tf__tls_fingerprint_parse(unsigned char out[32], const char *text, tf__err *e);

#endif /* TF_TLS_IDENTITY_H */
