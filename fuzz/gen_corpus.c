/*
 * gen_corpus.c - writes the seed corpus, a handful of valid (and a few
 * nearly valid) frames per harness, made with the library's own encoders:
 *
 *   fuzz_gen_corpus fuzz/corpus
 *
 * The output is committed. Files found by fuzzing (crash reproducers) are
 * added beside these by hand and are never overwritten by this program.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "digest.h"
#include "internal.h"
#include "wire.h"

static const char *out_dir;

typedef struct buf {
    uint8_t data[16384];
    size_t len;
} buf;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_gen_corpus: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void need(long n)
{
    if (n < 0) {
        fprintf(stderr, "fuzz_gen_corpus: an encoder refused a seed (%ld)\n", n);
        exit(1);
    }
}

static void raw(buf *b, const void *p, size_t n)
{
    if (b->len + n > sizeof b->data) {
        fprintf(stderr, "fuzz_gen_corpus: seed too large\n");
        exit(1);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void u8(buf *b, uint8_t v)
{
    raw(b, &v, 1);
}

static void u16(buf *b, uint16_t v)
{
    uint8_t p[2];
    tf__put_u16(p, v);
    raw(b, p, 2);
}

static void save(const char *harness, const char *name, const buf *b)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out_dir, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die(path);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0)
        die(path);
}

/* ---- frames ------------------------------------------------------------ */

static void client_hello(buf *b, uint16_t lo, uint16_t hi, uint32_t features)
{
    tf_wire_client_hello h = {.version_min = lo, .version_max = hi, .features = features};
    long n = tf__wire_encode_client_hello(b->data + b->len, sizeof b->data - b->len, &h);
    need(n);
    b->len += (size_t)n;
}

static void server_hello(buf *b, int code, uint16_t max_name, uint64_t max_upload,
                         const char *msg)
{
    tf_wire_server_hello h = {.version_min = 1,
                              .version_max = 1,
                              .status = tf__wire_status(code),
                              .max_name = max_name,
                              .max_upload = max_upload,
                              .message = msg,
                              .message_len = (uint16_t)(msg ? strlen(msg) : 0)};
    long n = tf__wire_encode_server_hello(b->data + b->len, sizeof b->data - b->len, &h);
    need(n);
    b->len += (size_t)n;
}

static void request_ex(buf *b, uint8_t op, const char *name, uint64_t size, uint64_t offset,
                       const uint8_t *key)
{
    tf_wire_request r = {.op = op,
                         .flags = key ? TF_REQ_UPLOAD_KEY : 0,
                         .size = size,
                         .offset = offset,
                         .name = name,
                         .name_len = (uint16_t)(name ? strlen(name) : 0),
                         .key = key};
    long n = tf__wire_encode_request(b->data + b->len, sizeof b->data - b->len, &r);
    need(n);
    b->len += (size_t)n;
}

static void request(buf *b, uint8_t op, const char *name, uint64_t size)
{
    request_ex(b, op, name, size, 0, NULL);
}

/* A streamed put's request (flag STREAM, size 0). */
static void stream_request(buf *b, const char *name)
{
    tf_wire_request r = {.op = TF_OP_PUT, .flags = TF_REQ_STREAM, .name = name,
                         .name_len = (uint16_t)strlen(name)};
    long n = tf__wire_encode_request(b->data + b->len, sizeof b->data - b->len, &r);
    need(n);
    b->len += (size_t)n;
}

/* A put with extensions (PUTX): flags TF_REQ_PARENTS..NO_GOAHEAD, each
   block field filled with a recognisable pattern. */
static void putx_request(buf *b, uint8_t flags, const char *name, uint64_t size,
                         const uint8_t *if_match, const uint8_t *same)
{
    tf_wire_request r = {.op = TF_OP_PUT, .flags = flags, .name = name,
                         .name_len = (uint16_t)strlen(name), .size = size,
                         .if_match = if_match, .mtime_sec = 1234567890,
                         .mtime_nsec = 123456789, .same = same};
    long n = tf__wire_encode_request(b->data + b->len, sizeof b->data - b->len, &r);
    need(n);
    b->len += (size_t)n;
}

/* A tree request (feature TREE): op 5..9 on path. */
static void tree_request(buf *b, uint8_t op, uint8_t flags, const char *path)
{
    tf_wire_request r = {.op = op, .flags = flags, .name = path,
                         .name_len = (uint16_t)strlen(path)};
    long n = tf__wire_encode_request(b->data + b->len, sizeof b->data - b->len, &r);
    need(n);
    b->len += (size_t)n;
}

static void rename_request(buf *b, uint8_t flags, const char *from, const char *to)
{
    long n = tf__wire_encode_rename(b->data + b->len, sizeof b->data - b->len, flags, from,
                                    strlen(from), to, strlen(to));
    need(n);
    b->len += (size_t)n;
}

/* One chunk of a streamed put: its head, then len bytes of data. */
static void chunk(buf *b, const char *data, uint32_t len)
{
    need(tf__wire_encode_chunk_head(b->data + b->len, sizeof b->data - b->len, len));
    b->len += TF_WIRE_CHUNK_HEAD_SIZE;
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void response(buf *b, uint8_t op, int code, uint64_t size, const char *msg)
{
    tf_wire_response r = {.op = op,
                          .status = tf__wire_status(code),
                          .size = size,
                          .message = msg,
                          .message_len = (uint16_t)(msg ? strlen(msg) : 0)};
    long n = tf__wire_encode_response(b->data + b->len, sizeof b->data - b->len, &r);
    need(n);
    b->len += (size_t)n;
}

static void trailer(buf *b, int code, size_t digest_len)
{
    uint8_t digest[TF_WIRE_DIGEST_MAX];
    for (size_t i = 0; i < sizeof digest; i++)
        digest[i] = (uint8_t)(i * 37 + 1);
    tf_wire_trailer t = {.status = tf__wire_status(code),
                         .digest_len = (uint16_t)digest_len,
                         .digest = digest};
    long n = tf__wire_encode_trailer(b->data + b->len, sizeof b->data - b->len, &t);
    need(n);
    b->len += (size_t)n;
}

/* A status-0 trailer carrying the XXH3-128 of data (feature CHECKSUM). */
static void trailer_digest(buf *b, const void *data, size_t len)
{
    tf__digest d = {0};
    uint8_t digest[TF_DIGEST_SIZE];
    if (tf__digest_begin(&d, 1) != TF_OK)
        die("tf__digest_begin");
    tf__digest_update(&d, data, len);
    tf__digest_final(&d, digest);
    tf__digest_end(&d);
    tf_wire_trailer t = {.digest_len = TF_DIGEST_SIZE, .digest = digest};
    long n = tf__wire_encode_trailer(b->data + b->len, sizeof b->data - b->len, &t);
    need(n);
    b->len += (size_t)n;
}

static void list_entry(buf *b, const char *name, uint64_t size, int64_t mtime)
{
    long n = tf__wire_encode_list_entry(b->data + b->len, sizeof b->data - b->len, name,
                                        strlen(name), size, mtime);
    need(n);
    b->len += (size_t)n;
}

static void list_head(buf *b, uint32_t count)
{
    need(tf__wire_encode_list_head(b->data + b->len, sizeof b->data - b->len, count));
    b->len += 4;
}

/* ---- per harness --------------------------------------------------------- */

static void gen_client_hello(void)
{
    buf b = {.len = 0};
    client_hello(&b, 1, 1, 0);
    save("client_hello", "v1", &b);
    b.len = 0;
    client_hello(&b, 1, 3, 0xFFFFFFFFu);
    save("client_hello", "v1-3-features", &b);
    b.len = 0;
    client_hello(&b, 2, 2, 0);
    save("client_hello", "v2-only", &b);
    b.len = 0;
    raw(&b, "TCPF\0\0\0\1", 8);
    save("client_hello", "truncated", &b);
    b.len = 0;
    raw(&b, "GET / HTTP/1.1\r\n\r\n", 18);
    save("client_hello", "http", &b);
}

static void gen_server_hello(void)
{
    buf b = {.len = 0};
    server_hello(&b, TF_OK, 255, 0, NULL);
    save("server_hello", "ok", &b);
    b.len = 0;
    server_hello(&b, TF_OK, 4096, 1 << 20, NULL);
    save("server_hello", "limits", &b);
    b.len = 0;
    server_hello(&b, TF_EBUSY, 0, 0, "the server is full (4 connections); try again later");
    save("server_hello", "busy", &b);
    b.len = 0;
    server_hello(&b, TF_OK, 255, 0, "welcome");
    b.len -= 3;
    save("server_hello", "truncated-message", &b);
}

static void gen_request(void)
{
    buf b = {.len = 0};
    u16(&b, 255);
    request(&b, TF_OP_GET, "hello.txt", 0);
    save("request", "get", &b);
    b.len = 0;
    u16(&b, 255);
    request(&b, TF_OP_PUT, "new file", 12);
    save("request", "put", &b);
    b.len = 0;
    u16(&b, 255);
    request(&b, TF_OP_LIST, NULL, 0);
    save("request", "list", &b);
    b.len = 0;
    u16(&b, 4);
    request(&b, TF_OP_GET, "longer-than-four", 0);
    save("request", "name-over-limit", &b);
    b.len = 0;
    u16(&b, 65535);
    request(&b, TF_OP_GET, "h\xc3\xa9llo", 0);
    b.len -= 2;
    save("request", "truncated-name", &b);

    b.len = 0;
    u16(&b, 255);
    static const uint8_t d1[16] = "if-match-digest", d2[16] = "same-bytes-here";
    putx_request(&b, 0xFC, "ext", 7, d1, d2);
    save("request", "put-extensions", &b);
}

static void auth(buf *b, const char *user, const char *token)
{
    tf_wire_auth a = {user, (uint16_t)(user ? strlen(user) : 0), token,
                      (uint16_t)(token ? strlen(token) : 0)};
    long n = tf__wire_encode_auth(b->data + b->len, sizeof b->data - b->len, &a);
    if (n < 0)
        die("encode auth");
    b->len += (size_t)n;
}

static void gen_auth(void)
{
    buf b = {.len = 0};
    auth(&b, "alice", "0123456789abcdefghijklmnopqrstuv");
    save("auth", "alice", &b);
    b.len = 0;
    auth(&b, "bob", NULL);
    save("auth", "no-token", &b);
    b.len = 0;
    auth(&b, "carol", "tok");
    b.data[4] = 0x7F; /* token_len over the maximum */
    save("auth", "token-too-long", &b);
    b.len = 0;
    auth(&b, "dave", "tok");
    b.len -= 2;
    save("auth", "truncated-token", &b);
}

static void gen_response(void)
{
    buf b = {.len = 0};
    response(&b, TF_OP_GET, TF_OK, 3, NULL);
    save("response", "get-ok", &b);
    b.len = 0;
    response(&b, TF_OP_GET, TF_ENOENT, 0, "no file named \"x\"");
    save("response", "enoent", &b);
    b.len = 0;
    response(&b, TF_OP_PUT, TF_ETOOBIG, 0, "5000 bytes is over the upload limit of 4096");
    save("response", "put-toobig", &b);
    b.len = 0;
    response(&b, TF_OP_LIST, TF_OK, 1u << 20, NULL);
    save("response", "list-ok", &b);
}

static void gen_trailer(void)
{
    buf b = {.len = 0};
    trailer(&b, TF_OK, 0);
    save("trailer", "ok", &b);
    b.len = 0;
    trailer(&b, TF_EIO, 0);
    save("trailer", "eio", &b);
    b.len = 0;
    trailer(&b, TF_OK, 16);
    save("trailer", "digest16", &b);
    b.len = 0;
    trailer(&b, TF_ECHECKSUM, TF_WIRE_DIGEST_MAX);
    save("trailer", "digest-max", &b);
}

static void gen_list(void)
{
    buf b = {.len = 0};
    u16(&b, 255);
    list_head(&b, 0);
    save("list", "empty", &b);
    b.len = 0;
    u16(&b, 255);
    list_head(&b, 3);
    list_entry(&b, "b.txt", 12, 1700000000);
    list_entry(&b, "a", 0, -1);
    list_entry(&b, "h\xc3\xa9llo \xe2\x82\xac", UINT64_MAX, INT64_MIN);
    save("list", "three", &b);
    b.len = 0;
    u16(&b, 8);
    list_head(&b, 2);
    list_entry(&b, "short", 1, 2);
    list_entry(&b, "much-too-long", 3, 4);
    save("list", "name-over-limit", &b);
}

static void gen_names(void)
{
    static const struct {
        const char *file;
        uint16_t max;
        const char *name;
    } names[] = {
        {"plain", 0, "hello.txt"},
        {"utf8", 255, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"dotdot", 255, ".."},
        {"slash", 255, "a/b"},
        {"control", 255, "tab\there"},
        {"overlong", 255, "\xc0\xaf"},
        {"surrogate", 255, "\xed\xa0\x80"},
        {"too-long", 4, "abcdef"},
        {"path", 0, "a/b/c.txt"},
        {"path-dotdot", 0, "a/../b"},
        {"path-empty", 255, "a//b"},
        {"path-absolute", 255, "/etc/passwd"},
        {"path-trailing", 255, "a/"},
        {"path-reserved", 255, "a/.tcpfile-tmp/x"},
        {"path-control", 255, "a/b/c\x1b[2J"},
        {"path-utf8", 255, "a/caf\xc3"},
        {"path-deep", 0x0306, "a/b/c/d/e/f/g"}, /* depth limit 1 + 774 % 7 = 5 */
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        buf b = {.len = 0};
        u16(&b, names[i].max);
        raw(&b, names[i].name, strlen(names[i].name));
        save("names", names[i].file, &b);
    }
}

/* fuzz_tree: a mode byte (0 stat record, 1 listdir chunk, 2 request),
   then its input. */
static void gen_tree(void)
{
    buf b = {.len = 0};
    u8(&b, 0);
    tf_wire_stat st = {1, TF_WIRE_STAT_HAS_DIGEST, 5, 1234, 1700000000, {1, 2, 3}};
    long n = tf__wire_encode_stat(b.data + b.len, sizeof b.data - b.len, &st);
    need(n);
    b.len += (size_t)n;
    save("tree", "stat-file", &b);

    b.len = 0;
    u8(&b, 1);
    u16(&b, 4096);
    static const tf_wire_dirent ents[] = {{"a", 1, 2, 0, 0, 1}, {"a/b.txt", 7, 1, 9, 77, 2}};
    for (size_t i = 0; i < 2; i++) {
        n = tf__wire_encode_dirent(b.data + b.len, sizeof b.data - b.len, &ents[i]);
        need(n);
        b.len += (size_t)n;
    }
    save("tree", "chunk-two", &b);

    b.len = 0;
    u8(&b, 2);
    u16(&b, 4096);
    n = tf__wire_encode_rename(b.data + b.len, sizeof b.data - b.len, TF_REQ_RENAME_NOREPLACE,
                               "a/b", 3, "c/d", 3);
    need(n);
    b.len += (size_t)n;
    save("tree", "rename", &b);

    b.len = 0;
    u8(&b, 2);
    u16(&b, 255);
    tf_wire_request r = {.op = TF_OP_LISTDIR, .flags = TF_REQ_LIST_RECURSIVE, .name = "dir",
                         .name_len = 3};
    n = tf__wire_encode_request(b.data + b.len, sizeof b.data - b.len, &r);
    need(n);
    b.len += (size_t)n;
    save("tree", "listdir", &b);
}

/* A pipelined put (PUTX) of data under name, its payload and a good
   trailer without a digest right behind it. */
static void putx_send(buf *b, uint8_t flags, const char *name, const char *data)
{
    putx_request(b, flags, name, strlen(data), NULL, NULL);
    raw(b, data, strlen(data));
    trailer(b, TF_OK, 0);
}

/* fuzz_server with TREE (control bit 7): every tree op, hostile paths,
   PUTX with paths, a directory renamed with the symlink inside it. */
static void gen_server_tree(void)
{
    buf b = {.len = 0};
    u8(&b, 128 | 8);
    tree_request(&b, TF_OP_STAT, 0, "");
    tree_request(&b, TF_OP_STAT, TF_REQ_STAT_DIGEST, "sub/inner.txt");
    tree_request(&b, TF_OP_MKDIR, TF_REQ_MKDIR_PARENTS, "n/m");
    tree_request(&b, TF_OP_MKDIR, 0, "dir");
    tree_request(&b, TF_OP_LISTDIR, TF_REQ_LIST_RECURSIVE, "");
    tree_request(&b, TF_OP_LISTDIR, 0, "sub");
    rename_request(&b, 0, "hello.txt", "n/m/h.txt");
    rename_request(&b, TF_REQ_RENAME_NOREPLACE, "n", "dir");
    rename_request(&b, 0, "n", "dir");
    request(&b, TF_OP_GET, "dir/m/h.txt", 0);
    tree_request(&b, TF_OP_REMOVE, 0, "dir/m/h.txt");
    tree_request(&b, TF_OP_REMOVE, 0, "dir/m");
    tree_request(&b, TF_OP_REMOVE, 0, "sub");
    tree_request(&b, TF_OP_REMOVE, 0, "dir");
    request(&b, TF_OP_PUT, "sub/new.txt", 3);
    raw(&b, "new", 3);
    trailer_digest(&b, "new", 3);
    save("server", "tree-ops", &b);

    /* Hostile paths, each refused; the connection stays in step. */
    static const char *const hostile[] = {
        "a/../b", "a//b", "/etc/passwd", "a/./b", "sub/", "..", "sub/up/secret",
        "sub/up", "sub/up/root0/hello.txt", "link/x", "outside", "fifo",
        ".tcpfile-tmp/x", "sub/.tcpfile-tmp", "a\\b", "caf\xc3\xa9", "cafe\xcc\x81",
        "bad\001name/x", "a/\xc0\xaf/b",
    };
    b.len = 0;
    u8(&b, 128 | 64);
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        tree_request(&b, TF_OP_STAT, TF_REQ_STAT_DIGEST, hostile[i]);
        request(&b, TF_OP_GET, hostile[i], 0);
        tree_request(&b, TF_OP_LISTDIR, TF_REQ_LIST_RECURSIVE, hostile[i]);
    }
    tree_request(&b, TF_OP_MKDIR, TF_REQ_MKDIR_PARENTS, "sub/up/x");
    tree_request(&b, TF_OP_REMOVE, 0, "sub/up");
    tree_request(&b, TF_OP_REMOVE, 0, "fifo");
    rename_request(&b, 0, "sub/up", "y");
    rename_request(&b, 0, "link", "y");
    rename_request(&b, 0, "sub/inner.txt", "sub/up/inner");
    rename_request(&b, 0, "a", "sub/up");
    rename_request(&b, 0, "sub", "sub/deeper");
    putx_send(&b, TF_REQ_NO_GOAHEAD | TF_REQ_PARENTS, "sub/up/evil", "e");
    putx_send(&b, TF_REQ_NO_GOAHEAD, "caf\xc3\xa9", "nfc");
    putx_send(&b, TF_REQ_NO_GOAHEAD | TF_REQ_IF_ABSENT, "cafe\xcc\x81", "nfd");
    char deep[2100];
    size_t k = 0;
    while (k + 2 < sizeof deep - 1) { /* 1,000 levels of "a/" */
        deep[k++] = 'a';
        deep[k++] = '/';
    }
    deep[k++] = 'a';
    deep[k] = '\0';
    tree_request(&b, TF_OP_MKDIR, TF_REQ_MKDIR_PARENTS, deep);
    tree_request(&b, TF_OP_STAT, 0, deep);
    tree_request(&b, TF_OP_LISTDIR, TF_REQ_LIST_RECURSIVE, "");
    save("server", "tree-hostile", &b);

    /* PUTX with paths: parents, conditions, a directory and a file on the
       way. */
    static const uint8_t ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    b.len = 0;
    u8(&b, 128 | 64);
    putx_send(&b, TF_REQ_NO_GOAHEAD | TF_REQ_PARENTS | TF_REQ_MTIME, "x/y/z.txt", "zz");
    putx_request(&b, TF_REQ_IF_ABSENT, "sub/inner.txt", 1, NULL, NULL);
    putx_request(&b, TF_REQ_SKIP_SAME, "sub/inner.txt", 5, NULL, ones);
    raw(&b, "inner", 5);
    trailer(&b, TF_OK, 0);
    putx_send(&b, TF_REQ_NO_GOAHEAD, "dir", "d");
    putx_send(&b, TF_REQ_NO_GOAHEAD | TF_REQ_PARENTS, "hello.txt/x", "h");
    putx_send(&b, TF_REQ_NO_GOAHEAD, "missing/x", "m");
    tree_request(&b, TF_OP_STAT, TF_REQ_STAT_DIGEST, "x/y/z.txt");
    save("server", "tree-putx", &b);

    /* A directory renamed with the symlink inside it, then looked through. */
    b.len = 0;
    u8(&b, 128);
    rename_request(&b, 0, "sub", "moved");
    tree_request(&b, TF_OP_LISTDIR, TF_REQ_LIST_RECURSIVE, "moved");
    request(&b, TF_OP_GET, "moved/up/secret", 0);
    tree_request(&b, TF_OP_STAT, 0, "moved/up");
    save("server", "tree-rename-dir", &b);

    /* A tree op without the feature: EPROTO and a close. */
    b.len = 0;
    u8(&b, 64);
    tree_request(&b, TF_OP_STAT, 0, "a");
    request(&b, TF_OP_LIST, NULL, 0);
    save("server", "tree-without-feature", &b);
}

/* fuzz_server: a control byte (bit 0: no hello; bits 1-2: which server;
   bit 3: CHECKSUM, bit 4: RESUME asked for), then the client's side of a
   conversation. */
static void gen_server(void)
{
    buf b = {.len = 0};
    u8(&b, 0);
    request(&b, TF_OP_GET, "hello.txt", 0);
    request(&b, TF_OP_LIST, NULL, 0);
    save("server", "get-list", &b);

    b.len = 0;
    u8(&b, 0);
    request(&b, TF_OP_PUT, "new", 5);
    raw(&b, "12345", 5);
    trailer(&b, TF_OK, 0);
    request(&b, TF_OP_GET, "new", 0);
    request(&b, TF_OP_LIST, NULL, 0);
    save("server", "put-get", &b);

    b.len = 0;
    u8(&b, 2); /* no overwrite, tiny limits */
    request(&b, TF_OP_PUT, "a", 1);
    request(&b, TF_OP_PUT, "x", 2);
    raw(&b, "xx", 2);
    trailer(&b, TF_OK, 0);
    request(&b, TF_OP_LIST, NULL, 0);
    request(&b, TF_OP_GET, "too-long-name", 0);
    request(&b, TF_OP_GET, "empty", 0);
    save("server", "no-overwrite", &b);

    b.len = 0;
    u8(&b, 4); /* read-only */
    request(&b, TF_OP_PUT, "new", 1);
    request(&b, TF_OP_GET, "a", 0);
    save("server", "read-only", &b);

    b.len = 0;
    u8(&b, 0);
    request(&b, TF_OP_GET, "fifo", 0);
    request(&b, TF_OP_GET, "link", 0);
    request(&b, TF_OP_GET, "outside", 0);
    request(&b, TF_OP_GET, "dir", 0);
    request(&b, TF_OP_GET, "..", 0);
    request(&b, TF_OP_GET, "bad\001name", 0);
    request(&b, TF_OP_PUT, "fifo", 1);
    request(&b, TF_OP_PUT, "outside", 1);
    save("server", "traps", &b);

    b.len = 0;
    u8(&b, 0);
    request(&b, TF_OP_PUT, "big", 5000);
    request(&b, TF_OP_PUT, "gone", 4);
    raw(&b, "data", 4);
    trailer(&b, TF_ECANCELED, 0);
    request(&b, TF_OP_PUT, "digest", 1);
    raw(&b, "d", 1);
    trailer(&b, TF_OK, 8);
    save("server", "put-refused-abandoned", &b);

    b.len = 0;
    u8(&b, 0);
    request(&b, TF_OP_PUT, "cut", 100);
    raw(&b, "only a part", 11);
    save("server", "put-cut", &b);

    b.len = 0;
    u8(&b, 32); /* STREAM */
    stream_request(&b, "streamed");
    chunk(&b, "12345", 5);
    chunk(&b, "678", 3);
    chunk(&b, "", 0);
    trailer(&b, TF_OK, 0);
    request(&b, TF_OP_GET, "streamed", 0);
    save("server", "put-stream", &b);

    /* PUTX (bit 6 of the control byte), checksums off: an if-absent put,
       an if-match that conflicts, a skip-if-same, pipelined puts with one
       refused in the middle (its payload dropped), mtime and parents. */
    static const uint8_t zeros[16], ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    b.len = 0;
    u8(&b, 64);
    putx_request(&b, TF_REQ_IF_ABSENT | TF_REQ_MTIME, "fresh", 3, NULL, NULL);
    raw(&b, "abc", 3);
    trailer(&b, TF_OK, 0);
    putx_request(&b, TF_REQ_IF_MATCH, "fresh", 1, zeros, NULL);
    putx_request(&b, TF_REQ_SKIP_SAME, "fresh", 3, NULL, ones);
    raw(&b, "xyz", 3);
    trailer(&b, TF_OK, 0);
    putx_request(&b, TF_REQ_NO_GOAHEAD, "p1", 2, NULL, NULL);
    raw(&b, "p1", 2);
    trailer(&b, TF_OK, 0);
    putx_request(&b, TF_REQ_NO_GOAHEAD | TF_REQ_IF_ABSENT, "fresh", 4, NULL, NULL);
    raw(&b, "drop", 4);
    trailer(&b, TF_OK, 0);
    putx_request(&b, TF_REQ_NO_GOAHEAD | TF_REQ_PARENTS, "d/e", 1, NULL, NULL);
    raw(&b, "e", 1);
    trailer(&b, TF_OK, 0);
    putx_request(&b, TF_REQ_NO_GOAHEAD | TF_REQ_IF_ABSENT | TF_REQ_IF_MATCH, "x", 1, zeros,
                 NULL);
    raw(&b, "x", 1);
    trailer(&b, TF_OK, 0);
    request(&b, TF_OP_LIST, NULL, 0);
    save("server", "putx", &b);

    b.len = 0;
    u8(&b, 32 | 8 | 16);
    stream_request(&b, "cut");
    chunk(&b, "only", 4);
    raw(&b, "\x00\x00\x10", 3);
    save("server", "put-stream-cut", &b);

    b.len = 0;
    u8(&b, 0);
    request(&b, 9, NULL, 0);
    save("server", "bad-op", &b);

    b.len = 0;
    u8(&b, 1); /* raw: the hello is part of the input */
    client_hello(&b, 1, 5, 0xFFFFFFFFu);
    request(&b, TF_OP_LIST, NULL, 0);
    save("server", "raw-hello", &b);

    b.len = 0;
    u8(&b, 1);
    raw(&b, "GET / HTTP/1.1\r\n\r\n", 18);
    save("server", "http", &b);

    b.len = 0;
    u8(&b, 8); /* CHECKSUM */
    request(&b, TF_OP_PUT, "new", 5);
    raw(&b, "12345", 5);
    trailer_digest(&b, "12345", 5);
    request(&b, TF_OP_GET, "new", 0);
    request(&b, TF_OP_LIST, NULL, 0);
    save("server", "checksum-put-get", &b);

    b.len = 0;
    u8(&b, 8);
    request(&b, TF_OP_PUT, "bad", 5);
    raw(&b, "12345", 5);
    trailer_digest(&b, "12346", 5);
    request(&b, TF_OP_PUT, "nodigest", 1);
    raw(&b, "x", 1);
    trailer(&b, TF_OK, 0);
    save("server", "checksum-mismatch", &b);

    static const uint8_t key[TF_UPLOAD_KEY_SIZE] = "0123456789abcdef";
    b.len = 0;
    u8(&b, 8 | 16); /* CHECKSUM and RESUME */
    request_ex(&b, TF_OP_GET, "a", 0, 10, NULL);
    request_ex(&b, TF_OP_GET, "hello.txt", 0, 3, NULL);
    request_ex(&b, TF_OP_GET, "hello.txt", 0, 1000, NULL);
    request_ex(&b, TF_OP_PUT, "keyed", 4, 0, key);
    raw(&b, "abcd", 4);
    trailer_digest(&b, "abcd", 4);
    save("server", "resume", &b);

    b.len = 0;
    u8(&b, 16); /* RESUME: a keyed upload cut off keeps its bytes */
    request_ex(&b, TF_OP_PUT, "partial", 100, 0, key);
    raw(&b, "the first twenty....", 20);
    save("server", "resume-put-cut", &b);

    b.len = 0;
    u8(&b, 0); /* an offset and a key without RESUME */
    request_ex(&b, TF_OP_PUT, "k", 1, 0, key);
    save("server", "key-without-resume", &b);
    b.len = 0;
    u8(&b, 0);
    request_ex(&b, TF_OP_GET, "a", 0, 1, NULL);
    save("server", "offset-without-resume", &b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        die(out_dir);
    gen_client_hello();
    gen_server_hello();
    gen_request();
    gen_auth();
    gen_response();
    gen_trailer();
    gen_list();
    gen_names();
    gen_server();
    gen_server_tree();
    gen_tree();
    return 0;
}
