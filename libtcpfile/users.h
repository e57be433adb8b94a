/*
 * users.h - the server's users file: who may connect, with which right,
 * inside which part of the root, and how to check the token each was
 * given. Only a salted slow hash of a token is stored, never the token.
 *
 * Format (text, one user a line, fields separated by spaces or tabs;
 * blank lines and lines starting with '#' are comments):
 *
 *     NAME ACCESS DIR KDF SALT HASH [CERT]
 *
 *   NAME    1..32 of [A-Za-z0-9._-], not starting with '.' or '-'
 *   ACCESS  "read" (get, list) or "write" (also put and every change)
 *   DIR     "-" for the whole root, or a relative sub-directory
 *           ("team/alice": components that are tcpfile names, with no
 *           blank and no '#') that is the user's whole world
 *   KDF     "scrypt:ln=L,r=R,p=P": scrypt with N = 2^L (EVP_KDF "SCRYPT")
 *   SALT    16 random bytes, base64url without padding (22 characters)
 *   HASH    the 32-byte scrypt output for the token, base64url (43 chars)
 *   CERT    optional: "SHA256:" and the base64 SHA-256 of a client
 *           certificate's public key (SPKI), as the server prints its own;
 *           a connection presenting it is this user from the start
 *           (docs/security.md). At most one user per certificate.
 *
 * KDF SALT HASH are "- - -" for a user without a token (certificate only).
 * A token is 24 random bytes (192 bits, RAND_bytes) printed as base64url
 * (32 characters); the hash is taken over those 32 characters as typed.
 */
#ifndef TF_USERS_H
#define TF_USERS_H

#include <stddef.h>

#include "internal.h"

#define TF__USER_NAME_MAX 32
#define TF__USER_DIR_MAX 1024
/* A token as printed, and the room it needs with its NUL. */
#define TF__TOKEN_LEN 32
#define TF__TOKEN_SIZE (TF__TOKEN_LEN + 1)
/* The users file's name inside the server's state directory. */
#define TF__USERS_FILE "users"

/* Today's cost: N = 2^13, r = 8, p = 1 (8 MiB; ~25 ms here, docs/security.md). */
#define TF__SCRYPT_LN 13
#define TF__SCRYPT_R 8
#define TF__SCRYPT_P 1

/* A client certificate as the users file keeps it: its SPKI SHA-256. */
#define TF__CERT_LEN 32

enum { TF__ACCESS_READ = 1, TF__ACCESS_WRITE = 2 };

typedef struct tf__users tf__users;

/* What a verified user may do. */
typedef struct tf__user_info {
    char name[TF__USER_NAME_MAX + 1];
    int access;                     /* TF__ACCESS_*            */
    char dir[TF__USER_DIR_MAX + 1]; /* "" for the whole root   */
} tf__user_info;

/* TF_OK when name is a valid user name; else TF_EINVAL and *why (may be
   NULL) a static sentence. */
int tf__users_name_check(const char *name, const char **why);
/* The same for a DIR field ("" or "-" mean the whole root). */
int tf__users_dir_check(const char *dir, const char **why);

/* Reads the users file. TF_ENOENT when it is missing, TF_EINVAL with
   "PATH:LINE: ..." at the first malformed line (a users file that does not
   parse is not half-used), TF_EACCES, TF_EIO, TF_ETOOBIG, TF_ENOMEM. *out
   is the caller's, freed with tf__users_free. */
int tf__users_load(tf__users **out, const char *path, tf__err *e);
size_t tf__users_count(const tf__users *u);
/* The i-th user's sub-directory ("" for the whole root); i < count. */
const char *tf__users_dir(const tf__users *u, size_t i);
void tf__users_free(tf__users *u);

/* Checks name and token (token_len bytes; token may be NULL: no token).
   The scrypt runs whatever the outcome (against a dummy entry for an
   unknown name) and the comparison is CRYPTO_memcmp, so the time taken
   does not tell a wrong name from a wrong token. TF_OK and *info filled
   (info may be NULL), or TF_EACCES "authentication failed" for every kind
   of failure alike; TF_ENOMEM / TF_EINTERNAL if the KDF itself fails. */
int tf__users_verify(const tf__users *u, const char *name, const char *token, size_t token_len,
                     tf__user_info *info, tf__err *e);

/* The user whose CERT is spki: TF_OK and *info filled (may be NULL), or
   TF_ENOENT. No secret is involved (the TLS handshake proved the key), so
   nothing here needs constant time. */
int tf__users_by_cert(const tf__users *u, const unsigned char spki[TF__CERT_LEN],
                      tf__user_info *info);

/* Adds name, or replaces it (a new token: the old one stops working), in
   the users file at path (created 0600 when missing; its directory must
   exist), through an atomic rewrite under a lock. access is TF__ACCESS_*;
   dir NULL, "" or "-" for the whole root. The new token is written to
   token (cap >= TF__TOKEN_SIZE): the caller shows it once and forgets it
   (OPENSSL_cleanse). TF_EINVAL (bad name, access, dir, or a malformed
   file, never rewritten), TF_EACCES, TF_EIO, TF_ENOSPC, TF_ENOMEM. */
int tf__users_add(const char *path, const char *name, int access, const char *dir, char *token,
                  size_t cap, tf__err *e);
/* The same for a user who logs in with the client certificate whose
   fingerprint ("SHA256:...") is given, and has no token. A fingerprint
   that is already another user's is TF_EINVAL (the file is unchanged). */
int tf__users_add_cert(const char *path, const char *name, int access, const char *dir,
                       const char *fingerprint, tf__err *e);

#endif /* TF_USERS_H */
