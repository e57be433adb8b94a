/*
 * s3.c - the S3 client of s3.h over libcurl (HTTP, keep-alive, SigV4
 * signing) and expat (the XML of listings and errors, parsed as it
 * arrives, so a page of any size takes the parser's memory only).
 *
 * Requests are path-style (ENDPOINT/BUCKET/KEY), which every S3-compatible
 * store accepts without DNS names per bucket. The payload is sent as
 * UNSIGNED-PAYLOAD: curl 7.88 hashes no streamed body, the stores want the
 * header, and the end-to-end check of a transfer is the XXH3-128 digest,
 * not the HTTP layer (TLS protects an https endpoint's bytes). Query
 * strings are built sorted and encoded, as SigV4's canonical request wants
 * them, since curl 7.88 signs the query as it is given.
 */
#include "s3.h"

#include "curlapi.h"

#include <ctype.h>
#include <errno.h>
#include <expat.h>
#include <openssl/evp.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct tf__s3 {
    tf__curl api;   /* libcurl, loaded for this handle (curlapi.h) */
    CURL *curl;     /* one easy handle: its connection cache is the keep-alive */
    char *endpoint; /* without a trailing '/' */
    char *bucket;
    char *userpwd;  /* "access:secret", wiped on close */
    char sigv4[160];
    long timeout_s;
    char curl_err[CURL_ERROR_SIZE];
    /* The socket of the connection to the store (-1: none), for
       ack_now. */
    curl_socket_t sock;
};

/* Copies src into dst (cap bytes), cut to fit. */
static void scopy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

/* ---- credentials ------------------------------------------------------ */

void tf__s3_creds_free(char *access_key, char *secret_key)
{
    wipe_free(access_key);
    wipe_free(secret_key);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* The profile's two keys from an AWS credentials file (INI). */
static int creds_from_file(const char *path, const char *profile, char **ak, char **sk)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        char *s = trim(line);
        if (*s == '#' || *s == ';' || *s == '\0')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (end)
                *end = '\0';
            in = strcmp(trim(s + 1), profile) == 0;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in || !eq)
            continue;
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        char **dst = strcmp(k, "aws_access_key_id") == 0       ? ak
                     : strcmp(k, "aws_secret_access_key") == 0 ? sk
                                                                : NULL;
        if (dst && !*dst)
            *dst = strdup(v);
    }
    memset(line, 0, sizeof line);
    fclose(f);
    return 0;
}

int tf__s3_creds_load(char **access_key, char **secret_key, tf__err *e)
{
    *access_key = *secret_key = NULL;
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (ak && *ak && sk && *sk) {
        *access_key = strdup(ak);
        *secret_key = strdup(sk);
    } else {
        char path[4096];
        const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
        const char *home = getenv("HOME");
        const char *profile = getenv("AWS_PROFILE");
        if (!profile || !*profile)
            profile = "default";
        if (file && *file)
            scopy(path, sizeof path, file);
        else
            snprintf(path, sizeof path, "%s/.aws/credentials", home ? home : "");
        creds_from_file(path, profile, access_key, secret_key);
        if (!*access_key || !*secret_key) {
            tf__s3_creds_free(*access_key, *secret_key);
            *access_key = *secret_key = NULL;
            return tf__fail(e, TF_EACCES,
                            "no S3 credentials: set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or profile \"%s\" in %s",
                            profile, path);
        }
    }
    if (!*access_key || !*secret_key) {
        tf__s3_creds_free(*access_key, *secret_key);
        *access_key = *secret_key = NULL;
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    return TF_OK;
}

/* ---- the handle ------------------------------------------------------- */

int tf__s3_open(tf__s3 **out, const tf__s3_config *cfg, tf__err *e)
{
    *out = NULL;
    if (!cfg->endpoint || !cfg->bucket || !*cfg->bucket || strchr(cfg->bucket, '/') ||
        (strncmp(cfg->endpoint, "http://", 7) != 0 && strncmp(cfg->endpoint, "https://", 8) != 0))
        return tf__fail(e, TF_EINVAL, "an S3 store needs an http:// or https:// endpoint "
                                      "and a bucket name");
    tf__s3 *s3 = calloc(1, sizeof *s3);
    if (!s3)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    int loaded = tf__curl_load(&s3->api, e);
    if (loaded != TF_OK) {
        free(s3);
        return loaded;
    }
    char *ak = NULL, *sk = NULL;
    int rc = TF_OK;
    if (cfg->access_key && cfg->secret_key) {
        ak = strdup(cfg->access_key);
        sk = strdup(cfg->secret_key);
    } else {
        rc = tf__s3_creds_load(&ak, &sk, e);
    }
    if (rc == TF_OK) {
        size_t n = strlen(cfg->endpoint);
        while (n > 0 && cfg->endpoint[n - 1] == '/')
            n--;
        s3->endpoint = strndup(cfg->endpoint, n);
        s3->bucket = strdup(cfg->bucket);
        s3->curl = s3->api.easy_init();
        if (ak && sk) {
            size_t len = strlen(ak) + strlen(sk) + 2;
            s3->userpwd = malloc(len);
            if (s3->userpwd)
                snprintf(s3->userpwd, len, "%s:%s", ak, sk);
        }
        if (!s3->endpoint || !s3->bucket || !s3->curl || !s3->userpwd)
            rc = tf__fail(e, TF_ENOMEM, "out of memory");
    }
    tf__s3_creds_free(ak, sk);
    if (rc != TF_OK) {
        tf__s3_close(s3);
        return rc;
    }
    snprintf(s3->sigv4, sizeof s3->sigv4, "aws:amz:%s:s3",
             cfg->region && *cfg->region ? cfg->region : "us-east-1");
    s3->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 60;
    s3->sock = CURL_SOCKET_BAD;
    *out = s3;
    return TF_OK;
}

void tf__s3_close(tf__s3 *s3)
{
    if (!s3)
        return;
    if (s3->curl)
        s3->api.easy_cleanup(s3->curl);
    tf__curl_unload(&s3->api);
    free(s3->endpoint);
    free(s3->bucket);
    wipe_free(s3->userpwd);
    free(s3);
}

const char *tf__s3_head_meta(const tf__s3_info *h, const char *name)
{
    for (size_t i = 0; i < h->n_meta; i++)
        if (strcasecmp(h->meta[i].name, name) == 0)
            return h->meta[i].value;
    return NULL;
}

/* ---- encoding --------------------------------------------------------- */

/* Appends s percent-encoded as SigV4 wants (unreserved bytes kept, and '/'
   when keep_slash); 0, or -1 when it does not fit. */
static int enc(char *dst, size_t cap, size_t *len, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int keep = isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
                   (keep_slash && c == '/');
        if (*len + (keep ? 1 : 3) >= cap)
            return -1;
        if (keep) {
            dst[(*len)++] = (char)c;
        } else {
            dst[(*len)++] = '%';
            dst[(*len)++] = hex[c >> 4];
            dst[(*len)++] = hex[c & 15];
        }
    }
    dst[*len] = '\0';
    return 0;
}

static int app(char *dst, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n >= cap)
        return -1;
    memcpy(dst + *len, s, n + 1);
    *len += n;
    return 0;
}

/* "2026-05-01T12:00:00.000Z" (listings) as seconds since the epoch. */
static int64_t parse_iso8601(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* ---- XML, as it arrives ----------------------------------------------- */

#define XML_DEPTH 8
#define XML_NAME 48
#define XML_TEXT (TF_S3_KEY_MAX * 3 + 64)

typedef struct req req;
/* Called at each element's end with its parent's name ("" at the top) and
   its text (a leaf's content). */
typedef void (*xml_end_fn)(req *r, const char *parent, const char *name, const char *text);

typedef struct xmlctx {
    XML_Parser p;
    int depth;
    char stack[XML_DEPTH][XML_NAME];
    char text[XML_TEXT];
    size_t text_len;
    int bad;
} xmlctx;

/* One request in flight: what it sends, where its answer goes. */
struct req {
    tf__s3 *s3;
    long status;
    /* the body of a successful answer */
    enum { SINK_NONE, SINK_BUF, SINK_FD, SINK_XML } sink;
    uint8_t *buf;
    size_t cap;
    uint64_t got;
    int fd;
    int sink_errno;
    /* what a PUT sends */
    const tf__s3_body *body;
    uint64_t sent;
    int read_errno;
    /* the XML of an answer (the operation's, or an error's) */
    xmlctx x;
    int xml_started;
    xml_end_fn on_end;
    void *op;
    char err_code[64];
    char err_msg[256];
    /* headers */
    tf__s3_info *head;
    char etag[TF_S3_ID_MAX];
    uint64_t range_total; /* Content-Range's "/TOTAL"; UINT64_MAX: none */
};

static void XMLCALL x_start(void *user, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    req *r = user;
    xmlctx *x = &r->x;
    if (x->depth < XML_DEPTH)
        scopy(x->stack[x->depth], XML_NAME, name);
    x->depth++;
    x->text_len = 0;
    x->text[0] = '\0';
}

static void XMLCALL x_text(void *user, const XML_Char *s, int len)
{
    req *r = user;
    xmlctx *x = &r->x;
    size_t n = (size_t)len;
    if (x->text_len + n >= sizeof x->text) {
        x->bad = 1; /* longer than any field we read */
        n = sizeof x->text - 1 - x->text_len;
    }
    memcpy(x->text + x->text_len, s, n);
    x->text_len += n;
    x->text[x->text_len] = '\0';
}

static void XMLCALL x_end(void *user, const XML_Char *name)
{
    req *r = user;
    xmlctx *x = &r->x;
    x->depth--;
    const char *parent = x->depth >= 1 && x->depth <= XML_DEPTH ? x->stack[x->depth - 1] : "";
    /* The error of any answer, a 200 one included (CopyObject and
       CompleteMultipartUpload report failures in their body). */
    if (strcmp(parent, "Error") == 0) {
        if (strcmp(name, "Code") == 0)
            scopy(r->err_code, sizeof r->err_code, x->text);
        else if (strcmp(name, "Message") == 0)
            scopy(r->err_msg, sizeof r->err_msg, x->text);
    } else if (r->on_end && x->depth < XML_DEPTH) {
        r->on_end(r, parent, name, x->text);
    }
    x->text_len = 0;
    x->text[0] = '\0';
}

static int xml_feed(req *r, const char *p, size_t n, int final)
{
    if (!r->xml_started) {
        r->x.p = XML_ParserCreate(NULL);
        if (!r->x.p)
            return -1;
        XML_SetUserData(r->x.p, r);
        XML_SetElementHandler(r->x.p, x_start, x_end);
        XML_SetCharacterDataHandler(r->x.p, x_text);
        r->xml_started = 1;
    }
    if (XML_Parse(r->x.p, p, (int)n, final) != XML_STATUS_OK)
        r->x.bad = 1;
    return 0;
}

/* ---- one request ------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t nmemb, void *user)
{
    req *r = user;
    size_t n = size * nmemb;
    if (r->status == 0)
        r->s3->api.easy_getinfo(r->s3->curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->status >= 300 || r->sink == SINK_XML)
        return xml_feed(r, p, n, 0) == 0 ? n : 0;
    if (r->sink == SINK_BUF) {
        if (r->got + n > r->cap)
            return 0; /* more than asked for */
        memcpy(r->buf + r->got, p, n);
        r->got += n;
    } else if (r->sink == SINK_FD) {
        for (size_t off = 0; off < n;) {
            ssize_t w = write(r->fd, p + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                r->sink_errno = w < 0 ? errno : EIO;
                return 0;
            }
            off += (size_t)w;
        }
        r->got += n;
    }
    return n;
}

static size_t on_read(char *p, size_t size, size_t nmemb, void *user)
{
    req *r = user;
    const tf__s3_body *b = r->body;
    size_t n = size * nmemb;
    if (!b || r->sent >= b->len)
        return 0;
    if (n > b->len - r->sent)
        n = (size_t)(b->len - r->sent);
    if (b->src) {
        n = b->src->pull(b->src->user, p, n);
        if (n == 0)
            return CURL_READFUNC_ABORT;
    } else if (b->buf) {
        memcpy(p, (const uint8_t *)b->buf + r->sent, n);
    } else {
        ssize_t got;
        do
            got = pread(b->fd, p, n, (off_t)(b->off + r->sent));
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            r->read_errno = got < 0 ? errno : EIO;
            return CURL_READFUNC_ABORT;
        }
        n = (size_t)got;
    }
    r->sent += n;
    return n;
}

/* Rewinding, when curl sends a body again (a redirect, a reconnect). */
static int on_seek(void *user, curl_off_t off, int origin)
{
    req *r = user;
    if (origin != SEEK_SET || off < 0 || (r->body && r->body->src && (uint64_t)off != r->sent))
        return CURL_SEEKFUNC_CANTSEEK; /* a stream's bytes are gone once sent */
    r->sent = (uint64_t)off;
    return CURL_SEEKFUNC_OK;
}

/* A stream's cut, seen while curl waits on the store (it calls this at
   least once a second). */
static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    const tf__s3_source *src = user;
    return src->cut(src->user);
}

/* The store's socket, kept for ack_now (curl makes it, or closes it, as
   it sees fit; a reused connection calls neither). */
static int on_sockopt(void *user, curl_socket_t fd, curlsocktype purpose)
{
    tf__s3 *s3 = user;
    if (purpose == CURLSOCKTYPE_IPCXN)
        s3->sock = fd;
    return CURL_SOCKOPT_OK;
}

static int on_close_socket(void *user, curl_socket_t fd)
{
    tf__s3 *s3 = user;
    if (s3->sock == fd)
        s3->sock = CURL_SOCKET_BAD;
    return close(fd);
}

/* Acknowledges at once what the store has sent so far. radosgw's beast
   sends an answer's headers and its body in two writes without
   TCP_NODELAY: Nagle holds the body until the headers are acknowledged,
   and Linux, seeing a request-answer exchange, delays that
   acknowledgement (up to 40 ms). Every small GET took 44 ms, curl's own
   too. TCP_QUICKACK sends the pending acknowledgement now; it does not
   last (the next request turns the delay back on), hence once per
   answer. */
static void ack_now(tf__s3 *s3)
{
#ifdef TCP_QUICKACK
    int one = 1;
    if (s3->sock != CURL_SOCKET_BAD)
        (void)setsockopt(s3->sock, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
#else
    (void)s3;
#endif
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *user)
{
    req *r = user;
    size_t n = size * nmemb;
    char line[1024];
    size_t len = n < sizeof line ? n : sizeof line - 1;
    memcpy(line, p, len);
    line[len] = '\0';
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        line[--len] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new answer (after a 100) */
        ack_now(r->s3);
        if (r->head) {
            memset(r->head, 0, sizeof *r->head);
        }
        r->etag[0] = '\0';
        return n;
    }
    char *colon = strchr(line, ':');
    if (!colon)
        return n;
    *colon = '\0';
    char *name = line, *value = trim(colon + 1);
    if (strcasecmp(name, "ETag") == 0)
        scopy(r->etag, sizeof r->etag, value);
    if (strcasecmp(name, "Content-Range") == 0) {
        const char *slash = strchr(value, '/');
        if (slash && slash[1] >= '0' && slash[1] <= '9')
            r->range_total = strtoull(slash + 1, NULL, 10);
    }
    if (!r->head)
        return n;
    tf__s3_info *h = r->head;
    if (strcasecmp(name, "Content-Length") == 0) {
        h->size = strtoull(value, NULL, 10);
    } else if (strcasecmp(name, "Last-Modified") == 0) {
        time_t t = r->s3->api.getdate(value, NULL);
        h->mtime = t > 0 ? (int64_t)t : 0;
    } else if (strcasecmp(name, "ETag") == 0) {
        scopy(h->etag, sizeof h->etag, value);
    } else if (strncasecmp(name, "x-amz-meta-", 11) == 0 && h->n_meta < TF_S3_META_MAX) {
        scopy(h->meta[h->n_meta].name, TF_S3_META_NAME_MAX, name + 11);
        for (char *c = h->meta[h->n_meta].name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        scopy(h->meta[h->n_meta].value, TF_S3_META_VALUE_MAX, value);
        h->n_meta++;
    }
    return n;
}

static void req_init(req *r, tf__s3 *s3)
{
    memset(r, 0, sizeof *r);
    r->range_total = UINT64_MAX;
    r->s3 = s3;
    r->fd = -1;
}

static void req_done(req *r)
{
    if (r->xml_started)
        XML_ParserFree(r->x.p);
    r->xml_started = 0;
}

/* The TF_E* code and message of a failed answer. */
static int fail_status(req *r, const char *what, const char *key, tf__err *e)
{
    const char *code = r->err_code, *msg = r->err_msg;
    long st = r->status;
    const char *sep = msg[0] ? ": " : "";
    if (strcmp(code, "NoSuchBucket") == 0)
        return tf__fail(e, TF_ENOENT, "no such bucket \"%s\" at %s", r->s3->bucket,
                        r->s3->endpoint);
    if (strcmp(code, "NoSuchUpload") == 0)
        return tf__fail(e, TF_ENOENT, "%s \"%s\": no such multipart upload", what, key);
    if (st == 404 || strcmp(code, "NoSuchKey") == 0)
        return tf__fail(e, TF_ENOENT, "no object \"%s\" in the bucket \"%s\"", key,
                        r->s3->bucket);
    if (st == 403 || strcmp(code, "AccessDenied") == 0 ||
        strcmp(code, "SignatureDoesNotMatch") == 0 || strcmp(code, "InvalidAccessKeyId") == 0)
        return tf__fail(e, TF_EACCES, "%s \"%s\": the S3 store refused access (%s%s%s)", what,
                        key, code[0] ? code : "HTTP 403", sep, msg);
    if (st == 412 || strcmp(code, "PreconditionFailed") == 0)
        return tf__fail(e, TF_EEXIST, "\"%s\" already exists", key);
    if (st >= 500)
        return tf__fail(e, TF_EIO, "%s \"%s\": the S3 store failed: HTTP %ld %s%s%s", what, key,
                        st, code, sep, msg);
    return tf__fail(e, TF_EIO, "%s \"%s\": the S3 store answered HTTP %ld %s%s%s", what, key,
                    st, code[0] ? code : "", sep, msg);
}

/* Sends method to KEY?QUERY (key NULL: the bucket; query already sorted and
   encoded) with the extra headers, and waits for the answer. TF_OK for a
   2xx answer without an error in its body. */
static int perform(req *r, const char *method, const char *key, const char *query,
                   struct curl_slist *extra, const char *post, size_t post_len,
                   const char *what, tf__err *e)
{
    tf__s3 *s3 = r->s3;
    CURL *c = s3->curl;
    const tf__curl *cu = &s3->api;
    char url[TF_S3_KEY_MAX * 3 + 2048];
    size_t len = 0;
    if (app(url, sizeof url, &len, s3->endpoint) != 0 || app(url, sizeof url, &len, "/") != 0 ||
        enc(url, sizeof url, &len, s3->bucket, 0) != 0 ||
        (key && (app(url, sizeof url, &len, "/") != 0 || enc(url, sizeof url, &len, key, 1) != 0)) ||
        (query && (app(url, sizeof url, &len, "?") != 0 || app(url, sizeof url, &len, query) != 0)))
        return tf__fail(e, TF_EINVAL, "%s: the key is too long", what);

    struct curl_slist *h = NULL, *t;
    int oom = 0;
#define ADD(s)                                                                                \
    do {                                                                                      \
        t = cu->slist_append(h, s);                                                            \
        if (t)                                                                                \
            h = t;                                                                            \
        else                                                                                  \
            oom = 1;                                                                          \
    } while (0)
    /* (No "Expect:" to turn 100-continue off: curl 7.88 would sign the
       empty header it never sends, and the store would refuse.) */
    ADD("x-amz-content-sha256: UNSIGNED-PAYLOAD");
    for (struct curl_slist *x = extra; x; x = x->next)
        ADD(x->data);
#undef ADD
    if (oom) {
        cu->slist_free_all(h);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }

    cu->easy_reset(c);
    s3->curl_err[0] = '\0';
    cu->easy_setopt(c, CURLOPT_URL, url);
    cu->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    cu->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https"); /* and no redirects */
    cu->easy_setopt(c, CURLOPT_AWS_SIGV4, s3->sigv4);
    cu->easy_setopt(c, CURLOPT_USERPWD, s3->userpwd);
    cu->easy_setopt(c, CURLOPT_TIMEOUT, s3->timeout_s);
    cu->easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    cu->easy_setopt(c, CURLOPT_ERRORBUFFER, s3->curl_err);
    cu->easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cu->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    cu->easy_setopt(c, CURLOPT_WRITEDATA, r);
    cu->easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    cu->easy_setopt(c, CURLOPT_HEADERDATA, r);
    cu->easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
    cu->easy_setopt(c, CURLOPT_SOCKOPTDATA, s3);
    cu->easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    cu->easy_setopt(c, CURLOPT_CLOSESOCKETDATA, s3);
    if (strcmp(method, "HEAD") == 0) {
        cu->easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "PUT") == 0) {
        cu->easy_setopt(c, CURLOPT_UPLOAD, 1L);
        cu->easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        cu->easy_setopt(c, CURLOPT_READDATA, r);
        cu->easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
        cu->easy_setopt(c, CURLOPT_SEEKDATA, r);
        cu->easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)(r->body ? r->body->len : 0));
        if (r->body && r->body->src) {
            /* No limit on the whole, as long as bytes move: a store that
               takes none for the request timeout ends it. */
            cu->easy_setopt(c, CURLOPT_TIMEOUT, 0L);
            cu->easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
            cu->easy_setopt(c, CURLOPT_LOW_SPEED_TIME, s3->timeout_s);
            cu->easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
            cu->easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
            cu->easy_setopt(c, CURLOPT_XFERINFODATA, (void *)r->body->src);
        }
    } else if (strcmp(method, "POST") == 0) {
        cu->easy_setopt(c, CURLOPT_POST, 1L);
        cu->easy_setopt(c, CURLOPT_POSTFIELDS, post ? post : "");
        cu->easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_len);
    } else if (strcmp(method, "GET") != 0) {
        cu->easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }

    CURLcode cc = cu->easy_perform(c);
    cu->slist_free_all(h);
    curl_socket_t live = CURL_SOCKET_BAD;
    if (cc == CURLE_OK && cu->easy_getinfo(c, CURLINFO_ACTIVESOCKET, &live) == CURLE_OK &&
        live != CURL_SOCKET_BAD)
        s3->sock = live; /* the one kept of several tried (IPv6 and IPv4) */
    if (cc == CURLE_OK || r->status == 0)
        cu->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->xml_started)
        xml_feed(r, "", 0, 1);
    if (cc != CURLE_OK) {
        if (r->sink_errno)
            return tf__fail_errno(e, TF_EIO, r->sink_errno, "%s \"%s\": cannot write", what,
                                  key ? key : "");
        if (r->read_errno)
            return tf__fail_errno(e, TF_EIO, r->read_errno, "%s \"%s\": cannot read", what,
                                  key ? key : "");
        if (cc == CURLE_WRITE_ERROR && r->sink == SINK_BUF)
            return tf__fail(e, TF_EIO, "%s \"%s\": the store sent more than was asked", what,
                            key ? key : "");
        return tf__fail(e, TF_EIO, "%s \"%s\": cannot reach the S3 store at %s: %s", what,
                        key ? key : "", s3->endpoint,
                        s3->curl_err[0] ? s3->curl_err : cu->easy_strerror(cc));
    }
    if (r->status < 200 || r->status >= 300 || r->err_code[0])
        return fail_status(r, what, key ? key : "", e);
    if (r->x.bad && r->sink == SINK_XML)
        return tf__fail(e, TF_EIO, "%s: the S3 store's answer is not the XML expected", what);
    return TF_OK;
}

/* Headers x-amz-meta-NAME: VALUE for meta. */
static int meta_headers(const tf__curl *cu, struct curl_slist **h, const tf__s3_meta *meta,
                        size_t n, tf__err *e)
{
    char line[TF_S3_META_NAME_MAX + TF_S3_META_VALUE_MAX + 16];
    for (size_t i = 0; i < n; i++) {
        if (strlen(meta[i].name) >= TF_S3_META_NAME_MAX ||
            strlen(meta[i].value) >= TF_S3_META_VALUE_MAX)
            return tf__fail(e, TF_EINVAL, "S3 metadata too long");
        snprintf(line, sizeof line, "x-amz-meta-%s: %s", meta[i].name, meta[i].value);
        struct curl_slist *t = cu->slist_append(*h, line);
        if (!t)
            return tf__fail(e, TF_ENOMEM, "out of memory");
        *h = t;
    }
    return TF_OK;
}

/* ---- objects ---------------------------------------------------------- */

int tf__s3_put(tf__s3 *s3, const char *key, const tf__s3_body *body, const tf__s3_meta *meta,
               size_t n_meta, tf__err *e)
{
    return tf__s3_put_if(s3, key, body, meta, n_meta, NULL, e);
}

int tf__s3_put_if(tf__s3 *s3, const char *key, const tf__s3_body *body,
                  const tf__s3_meta *meta, size_t n_meta, const char *if_match, tf__err *e)
{
    const tf__curl *cu = &s3->api;
    struct curl_slist *h = NULL;
    int rc = meta_headers(cu, &h, meta, n_meta, e);
    if (rc == TF_OK && if_match) {
        /* "*" as If-None-Match; an ETag bare, as radosgw 16 compares it
           (quoted, it never matches there). */
        char line[TF_S3_ID_MAX + 32];
        size_t n = strlen(if_match);
        const char *v = if_match;
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            v++;
            n -= 2;
        }
        if (strcmp(if_match, "*") == 0)
            snprintf(line, sizeof line, "If-None-Match: *");
        else
            snprintf(line, sizeof line, "If-Match: %.*s", (int)n, v);
        struct curl_slist *t = cu->slist_append(h, line);
        if (t)
            h = t;
        else
            rc = tf__fail(e, TF_ENOMEM, "out of memory");
    }
    req r;
    req_init(&r, s3);
    r.body = body;
    if (rc == TF_OK)
        rc = perform(&r, "PUT", key, NULL, h, NULL, 0, "put", e);
    cu->slist_free_all(h);
    req_done(&r);
    return rc;
}

int tf__s3_put_stream(tf__s3 *s3, const char *key, const tf__s3_body *body,
                      const tf__s3_meta *meta, size_t n_meta, char *etag, tf__err *e)
{
    struct curl_slist *h = NULL;
    int rc = meta_headers(&s3->api, &h, meta, n_meta, e);
    req r;
    req_init(&r, s3);
    r.body = body;
    if (rc == TF_OK)
        rc = perform(&r, "PUT", key, NULL, h, NULL, 0, "put", e);
    if (rc == TF_OK)
        scopy(etag, TF_S3_ID_MAX, r.etag);
    s3->api.slist_free_all(h);
    req_done(&r);
    return rc;
}

/* GET of a range into r's sink (len UINT64_MAX: to the end). */
static int get_range(req *r, const char *key, uint64_t off, uint64_t len, tf__err *e)
{
    const tf__curl *cu = &r->s3->api;
    char range[80];
    struct curl_slist *h = NULL;
    if (off > 0 || len != UINT64_MAX) {
        if (len == UINT64_MAX)
            snprintf(range, sizeof range, "Range: bytes=%" PRIu64 "-", off);
        else
            snprintf(range, sizeof range, "Range: bytes=%" PRIu64 "-%" PRIu64, off,
                     off + len - 1);
        h = cu->slist_append(NULL, range);
        if (!h)
            return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    tf__err mine = {{0}};
    int rc = perform(r, "GET", key, NULL, h, NULL, 0, "get", &mine);
    cu->slist_free_all(h);
    /* A range past the end (or any range of an empty object): no bytes. */
    if (rc != TF_OK && r->status == 416)
        return TF_OK;
    if (rc != TF_OK)
        return tf__fail(e, rc, "%s", mine.msg);
    return TF_OK;
}

int tf__s3_get(tf__s3 *s3, const char *key, uint64_t off, size_t len, void *buf, size_t *got,
               tf__err *e)
{
    *got = 0;
    if (len == 0)
        return TF_OK;
    req r;
    req_init(&r, s3);
    r.sink = SINK_BUF;
    r.buf = buf;
    r.cap = len;
    int rc = get_range(&r, key, off, len, e);
    *got = (size_t)r.got;
    req_done(&r);
    return rc;
}

int tf__s3_get_head(tf__s3 *s3, const char *key, size_t len, void *buf, size_t *got,
                    tf__s3_info *out, tf__err *e)
{
    *got = 0;
    req r;
    req_init(&r, s3);
    memset(out, 0, sizeof *out);
    r.head = out;
    r.sink = SINK_BUF;
    r.buf = buf;
    r.cap = len;
    int rc = len ? get_range(&r, key, 0, len, e) : TF_OK;
    int whole = rc == TF_OK && len && r.status != 416;
    *got = whole ? (size_t)r.got : 0;
    if (whole && r.range_total != UINT64_MAX)
        out->size = r.range_total; /* not the range's Content-Length */
    req_done(&r);
    /* An empty object has no range to give (416): its head alone. */
    if (rc == TF_OK && !whole)
        rc = tf__s3_head(s3, key, out, e);
    return rc;
}

int tf__s3_get_fd(tf__s3 *s3, const char *key, uint64_t off, uint64_t len, int fd,
                  uint64_t *got, tf__err *e)
{
    *got = 0;
    if (len == 0)
        return TF_OK;
    req r;
    req_init(&r, s3);
    r.sink = SINK_FD;
    r.fd = fd;
    int rc = get_range(&r, key, off, len, e);
    *got = r.got;
    req_done(&r);
    return rc;
}

int tf__s3_head(tf__s3 *s3, const char *key, tf__s3_info *out, tf__err *e)
{
    req r;
    req_init(&r, s3);
    memset(out, 0, sizeof *out);
    r.head = out;
    int rc = perform(&r, "HEAD", key, NULL, NULL, NULL, 0, "head", e);
    req_done(&r);
    return rc;
}

int tf__s3_delete(tf__s3 *s3, const char *key, tf__err *e)
{
    req r;
    req_init(&r, s3);
    int rc = perform(&r, "DELETE", key, NULL, NULL, NULL, 0, "delete", e);
    req_done(&r);
    return rc;
}

int tf__s3_copy(tf__s3 *s3, const char *from, const char *to, tf__err *e)
{
    return tf__s3_copy_meta(s3, from, to, NULL, 0, e);
}

int tf__s3_copy_meta(tf__s3 *s3, const char *from, const char *to, const tf__s3_meta *meta,
                     size_t n_meta, tf__err *e)
{
    const tf__curl *cu = &s3->api;
    char line[TF_S3_KEY_MAX * 3 + 512];
    size_t len = 0;
    if (app(line, sizeof line, &len, "x-amz-copy-source: /") != 0 ||
        enc(line, sizeof line, &len, s3->bucket, 0) != 0 || app(line, sizeof line, &len, "/") ||
        enc(line, sizeof line, &len, from, 1) != 0)
        return tf__fail(e, TF_EINVAL, "copy: the key is too long");
    struct curl_slist *h = cu->slist_append(NULL, line);
    if (!h)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    int rc = TF_OK;
    if (meta) {
        struct curl_slist *t = cu->slist_append(h, "x-amz-metadata-directive: REPLACE");
        if (t)
            h = t;
        rc = t ? meta_headers(cu, &h, meta, n_meta, e) : tf__fail(e, TF_ENOMEM, "out of memory");
        if (rc != TF_OK) {
            cu->slist_free_all(h);
            return rc;
        }
    }
    req r;
    req_init(&r, s3);
    r.sink = SINK_XML; /* a 200 may still carry an <Error> */
    tf__err mine = {{0}};
    rc = perform(&r, "PUT", to, NULL, h, NULL, 0, "copy", &mine);
    cu->slist_free_all(h);
    req_done(&r);
    if (rc == TF_ENOENT && strstr(mine.msg, "no such bucket") == NULL)
        return tf__fail(e, rc, "no object \"%s\" in the bucket \"%s\" to copy", from,
                        s3->bucket);
    if (rc != TF_OK)
        return tf__fail(e, rc, "%s", mine.msg);
    return TF_OK;
}

/* ---- listing ---------------------------------------------------------- */

typedef struct list_op {
    tf__s3_list_fn fn;
    void *user;
    int stopped;
    int truncated;
    char next[TF_S3_KEY_MAX + 64];
    char key[TF_S3_KEY_MAX + 1];
    uint64_t size;
    int64_t mtime;
} list_op;

static void list_end(req *r, const char *parent, const char *name, const char *text)
{
    list_op *op = r->op;
    if (strcmp(parent, "Contents") == 0) {
        if (strcmp(name, "Key") == 0)
            scopy(op->key, sizeof op->key, text);
        else if (strcmp(name, "Size") == 0)
            op->size = strtoull(text, NULL, 10);
        else if (strcmp(name, "LastModified") == 0)
            op->mtime = parse_iso8601(text);
    } else if (strcmp(parent, "CommonPrefixes") == 0 && strcmp(name, "Prefix") == 0) {
        if (!op->stopped && op->fn(op->user, text, 1, 0, 0) != 0)
            op->stopped = 1;
    } else if (strcmp(parent, "ListBucketResult") == 0) {
        if (strcmp(name, "Contents") == 0) {
            if (!op->stopped && op->fn(op->user, op->key, 0, op->size, op->mtime) != 0)
                op->stopped = 1;
            op->key[0] = '\0';
            op->size = 0;
            op->mtime = 0;
        } else if (strcmp(name, "IsTruncated") == 0) {
            op->truncated = strcmp(text, "true") == 0;
        } else if (strcmp(name, "NextContinuationToken") == 0) {
            scopy(op->next, sizeof op->next, text);
        }
    }
}

int tf__s3_list(tf__s3 *s3, tf__s3_page *page, tf__s3_list_fn fn, void *user, tf__err *e)
{
    /* Parameters in SigV4's order: continuation-token, delimiter,
       list-type, max-keys, prefix. */
    char q[TF_S3_KEY_MAX * 6 + 512];
    size_t len = 0;
    char num[32];
    int bad = 0;
    if (page->token[0])
        bad |= app(q, sizeof q, &len, "continuation-token=") ||
               enc(q, sizeof q, &len, page->token, 0) || app(q, sizeof q, &len, "&");
    if (page->delimiter && page->delimiter[0])
        bad |= app(q, sizeof q, &len, "delimiter=") ||
               enc(q, sizeof q, &len, page->delimiter, 0) || app(q, sizeof q, &len, "&");
    bad |= app(q, sizeof q, &len, "list-type=2");
    if (page->max_keys) {
        snprintf(num, sizeof num, "&max-keys=%zu", page->max_keys);
        bad |= app(q, sizeof q, &len, num);
    }
    bad |= app(q, sizeof q, &len, "&prefix=") ||
           enc(q, sizeof q, &len, page->prefix ? page->prefix : "", 0);
    if (bad)
        return tf__fail(e, TF_EINVAL, "list: the prefix is too long");
    list_op op;
    memset(&op, 0, sizeof op);
    op.fn = fn;
    op.user = user;
    req r;
    req_init(&r, s3);
    r.sink = SINK_XML;
    r.on_end = list_end;
    r.op = &op;
    int rc = perform(&r, "GET", NULL, q, NULL, NULL, 0, "list", e);
    req_done(&r);
    if (rc != TF_OK)
        return rc;
    if (op.truncated && !op.next[0])
        return tf__fail(e, TF_EIO, "list: the S3 store gave no continuation token");
    scopy(page->token, sizeof page->token, op.truncated ? op.next : "");
    if (op.stopped)
        return TF_ECANCELED;
    return TF_OK;
}

/* ---- multipart uploads ------------------------------------------------ */

typedef struct found_upload {
    char key[TF_S3_KEY_MAX + 1];
    char id[TF_S3_ID_MAX];
    int64_t initiated;
} found_upload;

typedef struct mpu_op {
    found_upload *found; /* a page of uploads */
    size_t n_found, cap_found;
    int oom;
    char *id; /* create: the upload id */
    /* list */
    tf__s3_upload_fn fn;
    void *user;
    int stopped;
    int truncated;
    char key[TF_S3_KEY_MAX + 1];
    char upload_id[TF_S3_ID_MAX];
    int64_t initiated;
    char next_key[TF_S3_KEY_MAX + 1];
    char next_id[TF_S3_ID_MAX];
    /* parts */
    tf__s3_part *parts;
    size_t cap, n;
    int overflow;
    tf__s3_part part;
    unsigned next_part;
} mpu_op;

static void create_end(req *r, const char *parent, const char *name, const char *text)
{
    mpu_op *op = r->op;
    if (strcmp(parent, "InitiateMultipartUploadResult") == 0 && strcmp(name, "UploadId") == 0)
        scopy(op->id, TF_S3_ID_MAX, text);
}

int tf__s3_mpu_create(tf__s3 *s3, const char *key, const tf__s3_meta *meta, size_t n_meta,
                      char *upload_id, tf__err *e)
{
    const tf__curl *cu = &s3->api;
    struct curl_slist *h = NULL;
    mpu_op op;
    memset(&op, 0, sizeof op);
    upload_id[0] = '\0';
    op.id = upload_id;
    int rc = meta_headers(cu, &h, meta, n_meta, e);
    req r;
    req_init(&r, s3);
    r.sink = SINK_XML;
    r.on_end = create_end;
    r.op = &op;
    if (rc == TF_OK)
        rc = perform(&r, "POST", key, "uploads=", h, NULL, 0, "start a multipart upload of",
                     e);
    cu->slist_free_all(h);
    req_done(&r);
    if (rc == TF_OK && !upload_id[0])
        rc = tf__fail(e, TF_EIO, "the S3 store gave no upload id for \"%s\"", key);
    return rc;
}

int tf__s3_mpu_part(tf__s3 *s3, const char *key, const char *upload_id, unsigned part,
                    const tf__s3_body *body, char *etag, tf__err *e)
{
    char q[TF_S3_ID_MAX * 3 + 64];
    size_t len = 0;
    etag[0] = '\0';
    if (part < 1 || part > TF_S3_PARTS_MAX)
        return tf__fail(e, TF_ETOOBIG, "more than %d parts", TF_S3_PARTS_MAX);
    snprintf(q, sizeof q, "partNumber=%u&uploadId=", part);
    len = strlen(q);
    if (enc(q, sizeof q, &len, upload_id, 0) != 0)
        return tf__fail(e, TF_EINVAL, "upload id too long");
    req r;
    req_init(&r, s3);
    r.body = body;
    int rc = perform(&r, "PUT", key, q, NULL, NULL, 0, "upload a part of", e);
    if (rc == TF_OK && !r.etag[0])
        rc = tf__fail(e, TF_EIO, "the S3 store gave no ETag for a part of \"%s\"", key);
    if (rc == TF_OK)
        scopy(etag, TF_S3_ID_MAX, r.etag);
    req_done(&r);
    return rc;
}

static void complete_end(req *r, const char *parent, const char *name, const char *text)
{
    if (strcmp(parent, "CompleteMultipartUploadResult") == 0 && strcmp(name, "ETag") == 0)
        scopy(r->op, TF_S3_ID_MAX, text);
}

/* The ETag S3 gives a multipart object, "MD5-N", MD5 that of the parts'
   MD5s (their ETags) end to end; "" when a part's ETag is no MD5 (an
   encrypted store's). radosgw 16 answers a completion with an empty
   <ETag/>, yet its HEAD gives this. */
static void multipart_etag(const tf__s3_part *parts, size_t n, char *out)
{
    out[0] = '\0';
    uint8_t *md5s = malloc(n * 16 + 1);
    if (!md5s || n == 0) {
        free(md5s);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *t = parts[i].etag;
        size_t len = strlen(t);
        if (len == 34 && t[0] == '"' && t[33] == '"')
            t++, len -= 2;
        for (size_t j = 0; j < 32; j++) {
            int c = len == 32 ? tolower((unsigned char)t[j]) : -1;
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (v < 0) {
                free(md5s);
                return;
            }
            md5s[i * 16 + j / 2] = (uint8_t)(j % 2 ? (md5s[i * 16 + j / 2] | v) : v << 4);
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(md5s, n * 16, md, &mdlen, EVP_md5(), NULL) == 1 && mdlen == 16;
    free(md5s);
    if (!ok)
        return;
    size_t at = 0;
    out[at++] = '"';
    for (unsigned i = 0; i < 16; i++)
        at += (size_t)snprintf(out + at, TF_S3_ID_MAX - at, "%02x", md[i]);
    snprintf(out + at, TF_S3_ID_MAX - at, "-%zu\"", n);
}

int tf__s3_mpu_complete(tf__s3 *s3, const char *key, const char *upload_id,
                        const tf__s3_part *parts, size_t n, char *etag, tf__err *e)
{
    char ignored[TF_S3_ID_MAX];
    if (!etag)
        etag = ignored;
    etag[0] = '\0';
    char q[TF_S3_ID_MAX * 3 + 32];
    size_t len = 0;
    if (app(q, sizeof q, &len, "uploadId=") || enc(q, sizeof q, &len, upload_id, 0))
        return tf__fail(e, TF_EINVAL, "upload id too long");
    size_t cap = 128 + n * (TF_S3_ID_MAX + 64);
    char *xml = malloc(cap);
    if (!xml)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    size_t at = (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
    for (size_t i = 0; i < n; i++) {
        /* An ETag is a quoted hex string: nothing to escape but the
           quotes, which XML text allows. */
        if (strpbrk(parts[i].etag, "<>&")) {
            free(xml);
            return tf__fail(e, TF_EIO, "a part's ETag is not what S3 gives");
        }
        at += (size_t)snprintf(xml + at, cap - at,
                               "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                               parts[i].number, parts[i].etag);
    }
    at += (size_t)snprintf(xml + at, cap - at, "</CompleteMultipartUpload>");
    req r;
    req_init(&r, s3);
    r.sink = SINK_XML; /* a 200 may still carry an <Error> */
    r.on_end = complete_end;
    r.op = etag;
    int rc = perform(&r, "POST", key, q, NULL, xml, at, "complete the multipart upload of", e);
    req_done(&r);
    if (rc == TF_OK && !etag[0])
        multipart_etag(parts, n, etag);
    free(xml);
    return rc;
}

int tf__s3_mpu_abort(tf__s3 *s3, const char *key, const char *upload_id, tf__err *e)
{
    char q[TF_S3_ID_MAX * 3 + 32];
    size_t len = 0;
    if (app(q, sizeof q, &len, "uploadId=") || enc(q, sizeof q, &len, upload_id, 0))
        return tf__fail(e, TF_EINVAL, "upload id too long");
    req r;
    req_init(&r, s3);
    int rc = perform(&r, "DELETE", key, q, NULL, NULL, 0, "abort the multipart upload of", e);
    req_done(&r);
    return rc;
}

static void uploads_end(req *r, const char *parent, const char *name, const char *text)
{
    mpu_op *op = r->op;
    if (strcmp(parent, "Upload") == 0) {
        if (strcmp(name, "Key") == 0)
            scopy(op->key, sizeof op->key, text);
        else if (strcmp(name, "UploadId") == 0)
            scopy(op->upload_id, sizeof op->upload_id, text);
        else if (strcmp(name, "Initiated") == 0)
            op->initiated = parse_iso8601(text);
    } else if (strcmp(parent, "ListMultipartUploadsResult") == 0) {
        if (strcmp(name, "Upload") == 0) {
            /* Kept for after the request: fn may use the handle. */
            if (op->n_found == op->cap_found) {
                size_t cap = op->cap_found ? 2 * op->cap_found : 64;
                found_upload *grown = realloc(op->found, cap * sizeof *grown);
                if (!grown) {
                    op->oom = 1;
                    return;
                }
                op->found = grown;
                op->cap_found = cap;
            }
            found_upload *u = &op->found[op->n_found++];
            scopy(u->key, sizeof u->key, op->key);
            scopy(u->id, sizeof u->id, op->upload_id);
            u->initiated = op->initiated;
            op->key[0] = op->upload_id[0] = '\0';
            op->initiated = 0;
        } else if (strcmp(name, "IsTruncated") == 0) {
            op->truncated = strcmp(text, "true") == 0;
        } else if (strcmp(name, "NextKeyMarker") == 0) {
            scopy(op->next_key, sizeof op->next_key, text);
        } else if (strcmp(name, "NextUploadIdMarker") == 0) {
            scopy(op->next_id, sizeof op->next_id, text);
        }
    }
}

int tf__s3_mpu_list(tf__s3 *s3, const char *prefix, tf__s3_upload_fn fn, void *user,
                    tf__err *e)
{
    char key_marker[TF_S3_KEY_MAX + 1] = "", id_marker[TF_S3_ID_MAX] = "";
    for (;;) {
        /* key-marker, prefix, upload-id-marker, uploads: SigV4's order. */
        char q[TF_S3_KEY_MAX * 6 + TF_S3_ID_MAX * 3 + 128];
        size_t len = 0;
        int bad = 0;
        if (key_marker[0])
            bad |= app(q, sizeof q, &len, "key-marker=") ||
                   enc(q, sizeof q, &len, key_marker, 0) || app(q, sizeof q, &len, "&");
        bad |= app(q, sizeof q, &len, "prefix=") || enc(q, sizeof q, &len, prefix, 0);
        if (id_marker[0])
            bad |= app(q, sizeof q, &len, "&upload-id-marker=") ||
                   enc(q, sizeof q, &len, id_marker, 0);
        bad |= app(q, sizeof q, &len, "&uploads=");
        if (bad)
            return tf__fail(e, TF_EINVAL, "list uploads: the prefix is too long");
        mpu_op *op = calloc(1, sizeof *op);
        if (!op)
            return tf__fail(e, TF_ENOMEM, "out of memory");
        op->fn = fn;
        op->user = user;
        req r;
        req_init(&r, s3);
        r.sink = SINK_XML;
        r.on_end = uploads_end;
        r.op = op;
        int rc = perform(&r, "GET", NULL, q, NULL, NULL, 0, "list the multipart uploads under",
                         e);
        req_done(&r);
        int more = op->truncated && op->next_key[0];
        if (more) {
            scopy(key_marker, sizeof key_marker, op->next_key);
            scopy(id_marker, sizeof id_marker, op->next_id);
        }
        if (rc == TF_OK && op->oom)
            rc = tf__fail(e, TF_ENOMEM, "out of memory");
        for (size_t i = 0; rc == TF_OK && i < op->n_found && !op->stopped; i++)
            if (fn(user, op->found[i].key, op->found[i].id, op->found[i].initiated) != 0)
                op->stopped = 1;
        int stopped = op->stopped;
        free(op->found);
        free(op);
        if (rc != TF_OK)
            return rc;
        if (stopped)
            return TF_ECANCELED;
        if (!more)
            return TF_OK;
    }
}

static void parts_end(req *r, const char *parent, const char *name, const char *text)
{
    mpu_op *op = r->op;
    if (strcmp(parent, "Part") == 0) {
        if (strcmp(name, "PartNumber") == 0)
            op->part.number = (unsigned)strtoul(text, NULL, 10);
        else if (strcmp(name, "Size") == 0)
            op->part.size = strtoull(text, NULL, 10);
        else if (strcmp(name, "ETag") == 0)
            scopy(op->part.etag, sizeof op->part.etag, text);
    } else if (strcmp(parent, "ListPartsResult") == 0) {
        if (strcmp(name, "Part") == 0) {
            if (op->n < op->cap)
                op->parts[op->n++] = op->part;
            else
                op->overflow = 1;
            memset(&op->part, 0, sizeof op->part);
        } else if (strcmp(name, "IsTruncated") == 0) {
            op->truncated = strcmp(text, "true") == 0;
        } else if (strcmp(name, "NextPartNumberMarker") == 0) {
            op->next_part = (unsigned)strtoul(text, NULL, 10);
        }
    }
}

int tf__s3_mpu_parts(tf__s3 *s3, const char *key, const char *upload_id, tf__s3_part *parts,
                     size_t cap, size_t *n, tf__err *e)
{
    *n = 0;
    unsigned marker = 0;
    mpu_op *op = calloc(1, sizeof *op);
    if (!op)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    op->parts = parts;
    op->cap = cap;
    int rc;
    for (;;) {
        char q[TF_S3_ID_MAX * 3 + 64];
        size_t len = 0;
        if (marker)
            snprintf(q, sizeof q, "part-number-marker=%u&uploadId=", marker);
        else
            snprintf(q, sizeof q, "uploadId=");
        len = strlen(q);
        if (enc(q, sizeof q, &len, upload_id, 0)) {
            rc = tf__fail(e, TF_EINVAL, "upload id too long");
            break;
        }
        op->truncated = 0;
        op->next_part = 0;
        req r;
        req_init(&r, s3);
        r.sink = SINK_XML;
        r.on_end = parts_end;
        r.op = op;
        rc = perform(&r, "GET", key, q, NULL, NULL, 0, "list the parts of", e);
        req_done(&r);
        if (rc != TF_OK)
            break;
        if (op->overflow) {
            rc = tf__fail(e, TF_ETOOBIG, "\"%s\": more than %zu parts", key, cap);
            break;
        }
        if (!op->truncated || op->next_part <= marker)
            break;
        marker = op->next_part;
    }
    *n = op->n;
    free(op);
    return rc;
}
