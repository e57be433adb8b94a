/*
 * known_hosts.c - lookups in and additions to the known_hosts file. See
 * known_hosts.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "b64.h"
#include "known_hosts.h"
#include "secfile.h"

#define KH_FILE_MAX (16u * 1024 * 1024)
static const char kh_header[] =
    "# tcpfile known hosts: HOST:PORT SHA256:<key fingerprint>, one server a line\n";

int tf__known_hosts_default_path(char *buf, size_t cap, tf__err *e)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    int n;
    /* The XDG spec: a relative value is invalid and ignored. */
    if (xdg && xdg[0] == '/') {
        n = snprintf(buf, cap, "%s/tcpfile/known_hosts", xdg);
    } else {
        const char *home = getenv("HOME");
        char pwbuf[4096];
        struct passwd pw, *res = NULL;
        if ((!home || !*home) && getpwuid_r(getuid(), &pw, pwbuf, sizeof pwbuf, &res) == 0 &&
            res)
            home = res->pw_dir;
        if (!home || !*home)
            return tf__fail(e, TF_ENOENT, "no home directory for the known_hosts file");
        n = snprintf(buf, cap, "%s/.config/tcpfile/known_hosts", home);
    }
    if (n < 0 || (size_t)n >= cap)
        return tf__fail(e, TF_EINVAL, "the known_hosts path is too long");
    return TF_OK;
}

int tf__known_hosts_name(char *buf, size_t cap, const char *host, unsigned port, tf__err *e)
{
    if (!host || !*host || port == 0 || port > 65535)
        return tf__fail(e, TF_EINVAL, "a known host needs a host and a port 1..65535");
    char h[256];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof h)
        return tf__fail(e, TF_EINVAL, "host name too long");
    memcpy(h, host, n);
    h[n] = '\0';
    unsigned char a6[16];
    int w;
    if (inet_pton(AF_INET6, h, a6) == 1) {
        /* One spelling per address: "::1" and "0::1" are one server. */
        char canon[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, a6, canon, sizeof canon);
        w = snprintf(buf, cap, "[%s]:%u", canon, port);
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)h[i];
            if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
                return tf__fail(e, TF_EINVAL, "host name \"%s\" has a character not allowed",
                                h);
            h[i] = (char)tolower(c);
        }
        w = snprintf(buf, cap, "%s:%u", h, port);
    }
    if (w < 0 || (size_t)w >= cap)
        return tf__fail(e, TF_EINVAL, "host name too long");
    return TF_OK;
}

/* Splits one line into its two fields; NULL why when it is a comment or
   blank (nothing to match), a static reason when it is malformed. */
static int parse_line(char *line, char **name, unsigned char md[32], const char **why)
{
    *why = NULL;
    char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    char *save = NULL;
    char *f1 = strtok_r(p, " \t", &save);
    char *f2 = strtok_r(NULL, " \t", &save);
    char *f3 = strtok_r(NULL, " \t", &save);
    if (!f2 || (f3 && f3[0] != '#')) {
        *why = "expected \"HOST:PORT SHA256:...\"";
        return -1;
    }
    char *colon = strrchr(f1, ':');
    char *end = NULL;
    unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || colon == f1 || !end || *end != '\0' || colon[1] == '\0' || port == 0 ||
        port > 65535) {
        *why = "the host has no valid :PORT";
        return -1;
    }
    if (tf__tls_fingerprint_parse(md, f2, NULL) != TF_OK) {
        *why = "the key is not SHA256: and 43 base64 characters";
        return -1;
    }
    *name = f1;
    return 1;
}

/* Scans text (modified in place) for name. */
static void scan(char *text, const char *name, const unsigned char want[32], tf__kh_result *res)
{
    memset(res, 0, sizeof *res);
    unsigned lineno = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *lname;
        unsigned char md[32];
        const char *why;
        int r = parse_line(line, &lname, md, &why);
        if (r < 0) {
            if (res->bad_lines++ == 0) {
                res->first_bad_line = lineno;
                res->first_bad_why = why;
            }
        } else if (r > 0 && strcasecmp(lname, name) == 0) {
            if (memcmp(md, want, 32) == 0) {
                /* A match wins over any mismatch on another line. */
                res->status = TF__KH_MATCH;
                res->line = lineno;
            } else if (res->status == TF__KH_UNKNOWN) {
                res->status = TF__KH_MISMATCH;
                res->line = lineno;
                memcpy(res->known, TF__FP_PREFIX, sizeof TF__FP_PREFIX - 1);
                tf__b64_encode(res->known + sizeof TF__FP_PREFIX - 1,
                               sizeof res->known - (sizeof TF__FP_PREFIX - 1), md, 32, 0);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
}

static int prepare(char *name, size_t cap, unsigned char md[32], const char *host, unsigned port,
                   const char *fingerprint, tf__err *e)
{
    int r = tf__known_hosts_name(name, cap, host, port, e);
    if (r == TF_OK)
        r = tf__tls_fingerprint_parse(md, fingerprint, e);
    return r;
}

static int read_kh(const char *path, char **text, size_t *len, tf__err *e)
{
    int r = tf__secfile_read(path, KH_FILE_MAX, text, len, e);
    if (r == TF_ENOENT) {
        tf__err_clear(e); /* no file yet is no failure (first message wins) */
        *text = NULL;
        *len = 0;
        return TF_OK;
    }
    return r;
}

int tf__known_hosts_lookup(const char *path, const char *host, unsigned port,
                           const char *fingerprint, tf__kh_result *res, tf__err *e)
{
    if (!path || !res)
        return tf__fail(e, TF_EINVAL, "no known_hosts path or no result");
    memset(res, 0, sizeof *res);
    char name[TF__KH_NAME_MAX + 1];
    unsigned char md[32];
    int r = prepare(name, sizeof name, md, host, port, fingerprint, e);
    if (r != TF_OK)
        return r;
    char *text;
    size_t len;
    r = read_kh(path, &text, &len, e);
    if (r != TF_OK || !text)
        return r;
    scan(text, name, md, res);
    free(text);
    return TF_OK;
}

static int dir_of(char *dir, size_t cap, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return snprintf(dir, cap, ".") < (int)cap ? 0 : -1;
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= cap)
        return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return 0;
}

int tf__known_hosts_add(const char *path, const char *host, unsigned port,
                        const char *fingerprint, tf__err *e)
{
    if (!path || !*path)
        return tf__fail(e, TF_EINVAL, "no known_hosts path");
    char name[TF__KH_NAME_MAX + 1], dir[PATH_MAX];
    unsigned char md[32];
    int r = prepare(name, sizeof name, md, host, port, fingerprint, e);
    if (r != TF_OK)
        return r;
    if (dir_of(dir, sizeof dir, path) != 0)
        return tf__fail(e, TF_EINVAL, "known_hosts path too long");
    r = tf__secfile_mkdirs(dir, e);
    if (r != TF_OK)
        return r;
    int lock;
    r = tf__secfile_lock(path, &lock, e);
    if (r != TF_OK)
        return r;
    char *text = NULL, *copy = NULL, *out = NULL;
    size_t len = 0;
    r = read_kh(path, &text, &len, e);
    if (r != TF_OK)
        goto done;
    if (text) {
        /* scan cuts its text into lines; the file is rewritten from the original. */
        copy = strdup(text);
        if (!copy) {
            r = tf__fail(e, TF_ENOMEM, "out of memory");
            goto done;
        }
        tf__kh_result res;
        scan(copy, name, md, &res);
        if (res.status == TF__KH_MATCH)
            goto done; /* already there */
        if (res.status == TF__KH_MISMATCH) {
            r = tf__fail(e, TF_EEXIST,
                         "%s already has another key in %s (line %u): remove that line to "
                         "accept a new one",
                         name, path, res.line);
            goto done;
        }
    }
    char line[TF__KH_NAME_MAX + TF__FP_SIZE + 4];
    char canon[TF__FP_SIZE];
    /* Written as we print it, whatever padding the caller's text had. */
    memcpy(canon, TF__FP_PREFIX, sizeof TF__FP_PREFIX - 1);
    tf__b64_encode(canon + sizeof TF__FP_PREFIX - 1, sizeof canon - (sizeof TF__FP_PREFIX - 1), md,
                   32, 0);
    int ln = snprintf(line, sizeof line, "%s %s\n", name, canon);
    size_t head = text ? 0 : sizeof kh_header - 1;
    int need_nl = text && len > 0 && text[len - 1] != '\n';
    size_t total = head + len + (size_t)need_nl + (size_t)ln;
    out = malloc(total);
    if (!out) {
        r = tf__fail(e, TF_ENOMEM, "out of memory");
        goto done;
    }
    size_t at = 0;
    if (head) {
        memcpy(out, kh_header, head);
        at = head;
    }
    if (len) {
        memcpy(out + at, text, len);
        at += len;
    }
    if (need_nl)
        out[at++] = '\n';
    memcpy(out + at, line, (size_t)ln);
    at += (size_t)ln;
    r = tf__secfile_write(path, out, at, e);
done:
    tf__secfile_unlock(lock);
    free(text);
    free(copy);
    free(out);
    return r;
}

int tf__known_hosts_check(void *policy, const char *host, const char *fingerprint, tf__err *e)
{
    const tf__kh_policy *p = policy;
    if (!p || !p->path)
        return tf__fail(e, TF_EINVAL, "no known_hosts policy");
    char name[TF__KH_NAME_MAX + 1];
    int r = tf__known_hosts_name(name, sizeof name, host, p->port, e);
    if (r != TF_OK)
        return r;
    tf__kh_result res;
    r = tf__known_hosts_lookup(p->path, host, p->port, fingerprint, &res, e);
    if (r != TF_OK)
        return r;
    switch (res.status) {
    case TF__KH_MATCH:
        return TF_OK;
    case TF__KH_MISMATCH:
        /* As loud as ssh's: this is what a man in the middle looks like. */
        return tf__fail(e, TF_EPEERVERIFY,
                        "WARNING: THE SERVER'S KEY HAS CHANGED. %s now shows %s, but %s line "
                        "%u records %s. Someone may be intercepting the connection, or the "
                        "server's key was replaced. Nothing was sent. If the change is "
                        "expected, remove that line and connect again.",
                        name, fingerprint, p->path, res.line, res.known);
    default:
        break;
    }
    if (!p->accept_new)
        return tf__fail(e, TF_EPEERVERIFY,
                        "%s is not a known server (its key is %s); check that fingerprint "
                        "with the server's operator, then connect with --accept-new to "
                        "record it, or with --pin",
                        name, fingerprint);
    return tf__known_hosts_add(p->path, host, p->port, fingerprint, e);
}
