/*
 * users.c - the users file, tokens and their scrypt hashes. See users.h.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "b64.h"
#include "ossl.h"
#include "secfile.h"
#include "tls_identity.h"
#include "users.h"

#define USERS_FILE_MAX (4u * 1024 * 1024)
#define SALT_LEN 16
#define HASH_LEN 32
#define TOKEN_BYTES 24
/* Longest token verified: far above ours, so nothing valid is cut, and a
   bound on what an attacker makes the KDF read. */
#define TOKEN_MAX 256
/* Bounds on a file's KDF parameters: a tampered or mistyped file must not
   make each login take seconds or gigabytes. */
#define LN_MIN 10
#define LN_MAX 20
#define R_MAX 32
#define P_MAX 16
#define SCRYPT_MAXMEM ((uint64_t)512 * 1024 * 1024)

static const char users_header[] =
    "# tcpfile users: NAME ACCESS DIR KDF SALT HASH [CERT] (docs/security.md)\n"
    "# Managed by tcpfile-server --add-user; holds no token, only salted scrypt hashes.\n";

typedef struct entry {
    char name[TF__USER_NAME_MAX + 1]; /* NUL-padded: compared whole */
    int access;
    char dir[TF__USER_DIR_MAX + 1];
    unsigned ln, r, p;
    unsigned char salt[SALT_LEN];
    unsigned char hash[HASH_LEN];
    int has_token;                    /* KDF SALT HASH are not "- - -" */
    int has_cert;                     /* a CERT field */
    unsigned char cert[TF__CERT_LEN]; /* its SPKI SHA-256 */
} entry;

struct tf__users {
    size_t count;
    entry *entries;
    entry dummy; /* what an unknown name is checked against */
};

int tf__users_name_check(const char *name, const char **why)
{
    const char *w = NULL;
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > TF__USER_NAME_MAX)
        w = "a user name has 1 to 32 characters";
    else if (name[0] == '.' || name[0] == '-')
        w = "a user name starts with a letter, a digit or '_'";
    for (size_t i = 0; !w && i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(isascii(c) && (isalnum(c) || c == '.' || c == '_' || c == '-')))
            w = "a user name holds only letters, digits, '.', '_' and '-'";
    }
    if (why)
        *why = w;
    return w ? TF_EINVAL : TF_OK;
}

int tf__users_dir_check(const char *dir, const char **why)
{
    const char *w = NULL;
    if (!dir || !*dir || strcmp(dir, "-") == 0)
        goto out;
    size_t n = strlen(dir);
    if (n > TF__USER_DIR_MAX) {
        w = "the directory is over 1024 bytes";
        goto out;
    }
    if (dir[0] == '/') {
        w = "the directory is relative to the served root (no leading '/')";
        goto out;
    }
    for (const char *p = dir; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        const char *nw = NULL;
        if (tf__name_check_bytes(p, len, 255, &nw) != TF_OK) {
            w = nw ? nw : "a component of the directory is not a valid name";
            goto out;
        }
        for (size_t i = 0; i < len; i++)
            if (p[i] == ' ' || p[i] == '\t' || p[i] == '#') {
                w = "the directory may not hold blanks or '#'";
                goto out;
            }
        if (!slash)
            break;
        p = slash + 1;
        if (!*p) {
            w = "the directory ends with '/'";
            goto out;
        }
    }
out:
    if (why)
        *why = w;
    return w ? TF_EINVAL : TF_OK;
}

/* scrypt(token, salt) with the entry's parameters into out. */
static int derive(unsigned char out[HASH_LEN], const entry *en, const char *token, size_t len,
                  tf__err *e)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!ctx)
        return tf__ossl_fail(e, TF_EINTERNAL, "scrypt is not available");
    uint64_t n = (uint64_t)1 << en->ln, maxmem = SCRYPT_MAXMEM;
    uint32_t r = en->r, p = en->p;
    /* An empty password is valid for scrypt; the params need a non-NULL pointer. */
    static const char empty[1] = {0};
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                          (void *)(token ? token : empty), token ? len : 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)en->salt, SALT_LEN),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(ctx, out, HASH_LEN, params);
    EVP_KDF_CTX_free(ctx);
    if (ok != 1)
        return tf__ossl_fail(e, TF_ENOMEM, "scrypt failed");
    return TF_OK;
}

/* ---- parsing ------------------------------------------------------------ */

static int parse_kdf(entry *en, const char *s)
{
    unsigned ln, r, p;
    int used = 0;
    if (sscanf(s, "scrypt:ln=%u,r=%u,p=%u%n", &ln, &r, &p, &used) != 3 || s[used] != '\0')
        return -1;
    if (ln < LN_MIN || ln > LN_MAX || r < 1 || r > R_MAX || p < 1 || p > P_MAX ||
        (uint64_t)128 * r * ((uint64_t)1 << ln) > SCRYPT_MAXMEM)
        return -1;
    en->ln = ln;
    en->r = r;
    en->p = p;
    return 0;
}

/* Parses one non-comment line (modified in place) into en; NULL or why. */
static const char *parse_entry(entry *en, char *line)
{
    char *save = NULL, *f[8];
    int nf = 0;
    for (char *tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
        if (nf == 8)
            break;
        f[nf++] = tok;
    }
    if (nf != 6 && nf != 7)
        return "expected NAME ACCESS DIR KDF SALT HASH [CERT]";
    memset(en, 0, sizeof *en);
    const char *why;
    if (tf__users_name_check(f[0], &why) != TF_OK)
        return why;
    strcpy(en->name, f[0]);
    if (strcmp(f[1], "read") == 0)
        en->access = TF__ACCESS_READ;
    else if (strcmp(f[1], "write") == 0)
        en->access = TF__ACCESS_WRITE;
    else
        return "the access is \"read\" or \"write\"";
    if (tf__users_dir_check(f[2], &why) != TF_OK)
        return why;
    if (strcmp(f[2], "-") != 0)
        strcpy(en->dir, f[2]);
    if (nf == 7) {
        tf__err ignored = {{0}};
        if (tf__tls_fingerprint_parse(en->cert, f[6], &ignored) != TF_OK)
            return "the certificate is \"SHA256:\" and 43 base64 characters";
        en->has_cert = 1;
    }
    /* "- - -": no token; such a user gets in by certificate only. */
    if (strcmp(f[3], "-") == 0 && strcmp(f[4], "-") == 0 && strcmp(f[5], "-") == 0)
        return en->has_cert ? NULL : "a user without a token needs a certificate";
    if (parse_kdf(en, f[3]) != 0)
        return "the KDF is \"scrypt:ln=L,r=R,p=P\" within bounds (ln 10..20, r 1..32, p 1..16)";
    if (strlen(f[4]) != TF__B64_LEN(SALT_LEN) ||
        tf__b64_decode(en->salt, sizeof en->salt, f[4], strlen(f[4])) != SALT_LEN)
        return "the salt is 16 bytes in base64url (22 characters)";
    if (strlen(f[5]) != TF__B64_LEN(HASH_LEN) ||
        tf__b64_decode(en->hash, sizeof en->hash, f[5], strlen(f[5])) != HASH_LEN)
        return "the hash is 32 bytes in base64url (43 characters)";
    en->has_token = 1;
    return NULL;
}

static int is_comment(const char *line)
{
    while (*line == ' ' || *line == '\t' || *line == '\r')
        line++;
    return *line == '\0' || *line == '#';
}

/* Parses text (modified in place) into a new array of *count entries;
   TF_EINVAL with "PATH:LINE: why" at the first bad line. */
static int parse_all(const char *path, char *text, entry **out, size_t *count, tf__err *e)
{
    *out = NULL;
    *count = 0;
    size_t cap = 0;
    unsigned lineno = 0;
    entry *arr = NULL;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        if (!is_comment(line)) {
            if (*count == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                entry *na = realloc(arr, ncap * sizeof *na);
                if (!na) {
                    OPENSSL_cleanse(arr, cap * sizeof *arr);
                    free(arr);
                    return tf__fail(e, TF_ENOMEM, "out of memory");
                }
                arr = na;
                cap = ncap;
            }
            const char *why = parse_entry(&arr[*count], line);
            for (size_t i = 0; !why && i < *count; i++) {
                if (strcmp(arr[i].name, arr[*count].name) == 0)
                    why = "this user is already on an earlier line";
                else if (arr[i].has_cert && arr[*count].has_cert &&
                         memcmp(arr[i].cert, arr[*count].cert, TF__CERT_LEN) == 0)
                    why = "this certificate is already another user's";
            }
            if (why) {
                OPENSSL_cleanse(arr, cap * sizeof *arr);
                free(arr);
                *count = 0;
                return tf__fail(e, TF_EINVAL, "%s:%u: %s", path, lineno, why);
            }
            (*count)++;
        }
        line = nl ? nl + 1 : NULL;
    }
    *out = arr;
    return TF_OK;
}

static void dummy_init(entry *d)
{
    memset(d, 0, sizeof *d);
    d->ln = TF__SCRYPT_LN;
    d->r = TF__SCRYPT_R;
    d->p = TF__SCRYPT_P;
    /* A hash no token gives (random, never stored): the dummy never matches
       even if RAND_bytes were to fail and leave zeros, because a match also
       requires a found name. */
    RAND_bytes(d->salt, sizeof d->salt);
    RAND_bytes(d->hash, sizeof d->hash);
}

int tf__users_load(tf__users **out, const char *path, tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "out is NULL");
    *out = NULL;
    if (!path || !*path)
        return tf__fail(e, TF_EINVAL, "no users file");
    char *text;
    size_t len;
    int r = tf__secfile_read(path, USERS_FILE_MAX, &text, &len, e);
    if (r != TF_OK)
        return r;
    tf__users *u = calloc(1, sizeof *u);
    if (!u) {
        tf__secfile_free(text, len);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    r = parse_all(path, text, &u->entries, &u->count, e);
    tf__secfile_free(text, len);
    if (r != TF_OK) {
        free(u);
        return r;
    }
    dummy_init(&u->dummy);
    *out = u;
    return TF_OK;
}

size_t tf__users_count(const tf__users *u)
{
    return u ? u->count : 0;
}

const char *tf__users_dir(const tf__users *u, size_t i)
{
    return u->entries[i].dir;
}

void tf__users_free(tf__users *u)
{
    if (!u)
        return;
    if (u->entries) {
        OPENSSL_cleanse(u->entries, u->count * sizeof *u->entries);
        free(u->entries);
    }
    OPENSSL_cleanse(&u->dummy, sizeof u->dummy);
    free(u);
}

int tf__users_verify(const tf__users *u, const char *name, const char *token, size_t token_len,
                     tf__user_info *info, tf__err *e)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (!u)
        return tf__fail(e, TF_EINVAL, "no users");
    /* The name compared against every entry, whole and in constant time,
       so the scan's duration does not depend on where (or whether) it
       matches. */
    char want[TF__USER_NAME_MAX + 1];
    memset(want, 0, sizeof want);
    size_t nlen = name ? strnlen(name, sizeof want) : 0;
    int name_ok = name && nlen > 0 && nlen < sizeof want;
    if (name_ok)
        memcpy(want, name, nlen);
    const entry *found = &u->dummy;
    int hit = 0;
    for (size_t i = 0; i < u->count; i++) {
        int eq = CRYPTO_memcmp(want, u->entries[i].name, sizeof want) == 0;
        if (eq) {
            found = &u->entries[i];
            hit = 1;
        }
    }
    hit &= name_ok;
    if (!found->has_token && found != &u->dummy) {
        /* A certificate-only user: no token is right; the dummy's scrypt
           keeps the time the same. */
        found = &u->dummy;
        hit = 0;
    }
    size_t tlen = token ? token_len : 0;
    if (tlen > TOKEN_MAX)
        tlen = TOKEN_MAX; /* still derived, still refused below */
    unsigned char got[HASH_LEN];
    int r = derive(got, found, token, tlen, e);
    if (r != TF_OK) {
        OPENSSL_cleanse(got, sizeof got);
        return r;
    }
    int match = CRYPTO_memcmp(got, found->hash, HASH_LEN) == 0;
    OPENSSL_cleanse(got, sizeof got);
    OPENSSL_cleanse(want, sizeof want);
    if (!(match & hit & (token != NULL) & (token_len > 0) & (token_len <= TOKEN_MAX)))
        return tf__fail(e, TF_EACCES, "authentication failed");
    if (info) {
        memcpy(info->name, found->name, sizeof info->name);
        info->access = found->access;
        memcpy(info->dir, found->dir, sizeof info->dir);
    }
    return TF_OK;
}

int tf__users_by_cert(const tf__users *u, const unsigned char spki[TF__CERT_LEN],
                      tf__user_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    for (size_t i = 0; u && spki && i < u->count; i++) {
        const entry *en = &u->entries[i];
        if (en->has_cert && CRYPTO_memcmp(en->cert, spki, TF__CERT_LEN) == 0) {
            if (info) {
                memcpy(info->name, en->name, sizeof info->name);
                info->access = en->access;
                memcpy(info->dir, en->dir, sizeof info->dir);
            }
            return TF_OK;
        }
    }
    return TF_ENOENT;
}

/* ---- adding --------------------------------------------------------------- */

/* The first field of a line, for finding the line to replace. */
static int line_names(const char *line, size_t len, const char *name)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t start = i;
    while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
        i++;
    size_t n = strlen(name);
    return i - start == n && memcmp(line + start, name, n) == 0 && line[start] != '#';
}

/* Writes line (ll bytes, the user's whole line) into the users file at
   path, replacing name's line where it stood, through an atomic rewrite
   under the file's lock. The result is parsed before it is written: a
   file that would not load (a malformed one already, or a certificate
   that is another user's) is left as it was. */
static int put_line(const char *path, const char *name, const char *line, size_t ll,
                    tf__err *e)
{
    int lock;
    int r = tf__secfile_lock(path, &lock, e);
    if (r != TF_OK)
        return r;
    char *text = NULL, *copy = NULL, *out = NULL;
    size_t len = 0, total = 0, copy_len = 0;
    r = tf__secfile_read(path, USERS_FILE_MAX, &text, &len, e);
    if (r == TF_ENOENT) {
        /* No file yet: the first user makes it. The record must not keep
           the miss, since the first message of a failure wins. */
        tf__err_clear(e);
        r = TF_OK;
        text = NULL;
        len = 0;
    }
    if (r != TF_OK)
        goto done;
    if (text) {
        copy_len = len;
        /* A file that does not parse is left for a human to fix. */
        entry *arr;
        size_t count;
        copy = strdup(text);
        if (!copy) {
            r = tf__fail(e, TF_ENOMEM, "out of memory");
            goto done;
        }
        r = parse_all(path, copy, &arr, &count, e);
        if (r != TF_OK)
            goto done;
        OPENSSL_cleanse(arr, count * sizeof *arr);
        free(arr);
        tf__secfile_free(copy, len);
        copy = NULL;
    }
    total = (text ? len + 1 : sizeof users_header) + ll + 1;
    out = malloc(total);
    if (!out) {
        r = tf__fail(e, TF_ENOMEM, "out of memory");
        goto done;
    }
    size_t at = 0;
    int replaced = 0;
    if (!text) {
        memcpy(out, users_header, sizeof users_header - 1);
        at = sizeof users_header - 1;
    }
    /* Every line kept as it was, the user's own replaced where it stood. */
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        if (!replaced && line_names(text + i, n, name)) {
            memcpy(out + at, line, ll);
            at += ll;
            replaced = 1;
        } else {
            memcpy(out + at, text + i, n);
            at += n;
            out[at++] = '\n';
        }
        i += n + (nl ? 1 : 0);
    }
    if (!replaced) {
        memcpy(out + at, line, ll);
        at += ll;
    }
    out[at] = '\0';
    entry *arr;
    size_t count;
    copy_len = at;
    if (!(copy = strdup(out))) {
        r = tf__fail(e, TF_ENOMEM, "out of memory");
        goto done;
    }
    r = parse_all(path, copy, &arr, &count, e);
    if (r == TF_OK) {
        OPENSSL_cleanse(arr, count * sizeof *arr);
        free(arr);
        r = tf__secfile_write(path, out, at, e);
    }
done:
    tf__secfile_unlock(lock);
    if (text)
        tf__secfile_free(text, len);
    if (copy)
        tf__secfile_free(copy, copy_len);
    if (out)
        tf__secfile_free(out, total);
    return r;
}

/* The checks both ways of adding a user share. */
static int add_check(const char *path, const char *name, int access, const char *dir,
                     tf__err *e)
{
    const char *why;
    if (!path || !*path)
        return tf__fail(e, TF_EINVAL, "no users file");
    if (tf__users_name_check(name, &why) != TF_OK)
        return tf__fail(e, TF_EINVAL, "user name: %s", why);
    if (access != TF__ACCESS_READ && access != TF__ACCESS_WRITE)
        return tf__fail(e, TF_EINVAL, "the access is read or write");
    if (tf__users_dir_check(dir, &why) != TF_OK)
        return tf__fail(e, TF_EINVAL, "directory: %s", why);
    return TF_OK;
}

int tf__users_add(const char *path, const char *name, int access, const char *dir,
                  char *token, size_t cap, tf__err *e)
{
    if (token && cap)
        token[0] = '\0';
    if (!token || cap < TF__TOKEN_SIZE)
        return tf__fail(e, TF_EINVAL, "no room for the token");
    int r = add_check(path, name, access, dir, e);
    if (r != TF_OK)
        return r;
    if (!dir || !*dir)
        dir = "-";

    /* The token and the line are made before the lock: scrypt takes a
       while, and the lock should not. */
    unsigned char raw[TOKEN_BYTES];
    entry en;
    memset(&en, 0, sizeof en);
    en.ln = TF__SCRYPT_LN;
    en.r = TF__SCRYPT_R;
    en.p = TF__SCRYPT_P;
    char tok[TF__TOKEN_SIZE];
    if (RAND_bytes(raw, sizeof raw) != 1 || RAND_bytes(en.salt, sizeof en.salt) != 1) {
        OPENSSL_cleanse(raw, sizeof raw);
        return tf__ossl_fail(e, TF_EINTERNAL, "no random bytes for the token");
    }
    tf__b64_encode(tok, sizeof tok, raw, sizeof raw, 1);
    OPENSSL_cleanse(raw, sizeof raw);
    r = derive(en.hash, &en, tok, TF__TOKEN_LEN, e);
    if (r != TF_OK) {
        OPENSSL_cleanse(tok, sizeof tok);
        return r;
    }
    char salt[TF__B64_LEN(SALT_LEN) + 1], hash[TF__B64_LEN(HASH_LEN) + 1];
    tf__b64_encode(salt, sizeof salt, en.salt, SALT_LEN, 1);
    tf__b64_encode(hash, sizeof hash, en.hash, HASH_LEN, 1);
    char line[TF__USER_NAME_MAX + TF__USER_DIR_MAX + 200];
    int ll = snprintf(line, sizeof line, "%s %s %s scrypt:ln=%u,r=%u,p=%u %s %s\n", name,
                      access == TF__ACCESS_WRITE ? "write" : "read", dir, en.ln, en.r, en.p,
                      salt, hash);
    OPENSSL_cleanse(&en, sizeof en);
    r = put_line(path, name, line, (size_t)ll, e);
    OPENSSL_cleanse(line, sizeof line);
    if (r == TF_OK)
        memcpy(token, tok, TF__TOKEN_SIZE);
    OPENSSL_cleanse(tok, sizeof tok);
    return r;
}

int tf__users_add_cert(const char *path, const char *name, int access, const char *dir,
                       const char *fingerprint, tf__err *e)
{
    int r = add_check(path, name, access, dir, e);
    if (r != TF_OK)
        return r;
    unsigned char spki[TF__CERT_LEN];
    if (!fingerprint || tf__tls_fingerprint_parse(spki, fingerprint, e) != TF_OK)
        return tf__fail(e, TF_EINVAL,
                        "the certificate's fingerprint is not \"SHA256:...\"");
    if (!dir || !*dir)
        dir = "-";
    char line[TF__USER_NAME_MAX + TF__USER_DIR_MAX + 200];
    int ll = snprintf(line, sizeof line, "%s %s %s - - - %s\n", name,
                      access == TF__ACCESS_WRITE ? "write" : "read", dir, fingerprint);
    return put_line(path, name, line, (size_t)ll, e);
}
