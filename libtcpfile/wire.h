/*
 * wire.h - the protocol's frames and list encoding as pure functions over
 * byte buffers. No sockets, no files, no allocation except where a decoder
 * returns a listing. docs/protocol.md is the specification; this file is
 * its executable form.
 *
 * Decoders take (buf, len) and return the number of bytes consumed (> 0),
 * TF_WIRE_NEED_MORE when buf holds a valid but incomplete frame, or a
 * negative TF_E* code (TF_EPROTO malformed, TF_ETOOBIG over a limit). They
 * never read past buf + len.
 *
 * On TF_WIRE_NEED_MORE with len at least the frame's fixed head
 * (TF_WIRE_*_SIZE), the head has been decoded and checked: every field of
 * the out struct is set except the pointers into the variable part
 * (message, name, key, digest), so message_len, name_len (with the flags:
 * tf__wire_request_tail) and digest_len say how many more bytes the frame
 * needs. Callers rely on this to read a head and then exactly its tail
 * (client.c's hello and responses, transfer.c's trailers). With len below
 * the head, the out struct is left untouched.
 *
 * Encoders write into (buf, cap) and return the bytes written, or
 * TF_EINVAL when cap is too small or a field is out of range.
 */
#ifndef TF_WIRE_H
#define TF_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "tcpfile.h"

#define TF_WIRE_MAGIC "TCPF"
#define TF_WIRE_VERSION 1

/* Decoders return this (positive callers never see it as a length). */
#define TF_WIRE_NEED_MORE 0

/* Fixed sizes of each frame's head, before its variable fields. */
#define TF_WIRE_CLIENT_HELLO_SIZE 16
#define TF_WIRE_SERVER_HELLO_SIZE 28
#define TF_WIRE_REQUEST_SIZE 24
#define TF_WIRE_RESPONSE_SIZE 16
#define TF_WIRE_TRAILER_SIZE 4

/* Hard protocol ceilings: no peer may announce more, whatever it is told. */
#define TF_WIRE_NAME_MAX 4096     /* bytes of one name             */
#define TF_WIRE_MESSAGE_MAX 1024  /* bytes of one status message   */
#define TF_WIRE_DIGEST_MAX 64     /* bytes of one trailer digest   */

enum tf_wire_op {
    TF_OP_GET = 1,
    TF_OP_PUT = 2,
    TF_OP_LIST = 3,
    TF_OP_AUTH = 4, /* with the AUTH feature: who the client is (tf_wire_auth) */
    /* the tree (feature TREE, section 3a) */
    TF_OP_STAT = 5,
    TF_OP_MKDIR = 6,
    TF_OP_REMOVE = 7,
    TF_OP_RENAME = 8,
    TF_OP_LISTDIR = 9
};

/* The tree operations' request flags (each op its own). */
#define TF_REQ_STAT_DIGEST 0x01u     /* stat: compute the digest if unknown */
#define TF_REQ_MKDIR_PARENTS 0x01u   /* mkdir: -p */
#define TF_REQ_RENAME_NOREPLACE 0x01u /* rename: EEXIST when `to` exists */
#define TF_REQ_LIST_RECURSIVE 0x01u  /* listdir: the whole tree */

/* The most components a path may have, whatever is announced. */
#define TF_WIRE_DEPTH_MAX 2048

/* stat's record: fixed part, and the most a receiver accepts. */
#define TF_WIRE_STAT_SIZE 40
#define TF_WIRE_STAT_MAX 1024
#define TF_WIRE_STAT_HAS_DIGEST 0x01u
/* A listdir entry's fixed bytes besides its path. */
#define TF_WIRE_DIRENT_FIXED 24

/* Feature bits negotiated in the handshake: in use when both hellos set
   them. A peer ignores bits it does not know, so new bits are always safe. */
#define TF_FEATURE_CHECKSUM 0x1u /* trailers carry an XXH3-128 digest   */
#define TF_FEATURE_RESUME 0x2u   /* offsets and upload keys (resume)   */
#define TF_FEATURE_STREAM 0x4u   /* size-less puts in chunks (STREAM)   */
#define TF_FEATURE_AUTH 0x8u     /* the server wants an auth request first */
#define TF_FEATURE_TREE 0x10u    /* paths and ops 5..9 (section 3a) */
#define TF_FEATURE_PUTX 0x20u    /* put extensions (section 4b)         */
#define TF_FEATURES_KNOWN                                                      \
    (TF_FEATURE_CHECKSUM | TF_FEATURE_RESUME | TF_FEATURE_STREAM | TF_FEATURE_AUTH | \
     TF_FEATURE_TREE | TF_FEATURE_PUTX)

/* Request flags. */
#define TF_REQ_UPLOAD_KEY 0x01u  /* put: a 16-byte upload key follows the name */
#define TF_REQ_STREAM 0x02u      /* put: size 0, the payload comes in chunks */
#define TF_UPLOAD_KEY_SIZE 16
/* Put extensions (feature PUTX, docs/protocol.md section 4b). IF_MATCH,
   MTIME and SKIP_SAME add fields to the extension block after the name
   (and key), in that order. */
#define TF_REQ_PARENTS 0x04u     /* put: make the missing parent directories */
#define TF_REQ_IF_ABSENT 0x08u   /* put: EEXIST if the name exists */
#define TF_REQ_IF_MATCH 0x10u    /* put: 16-byte digest the version must have */
#define TF_REQ_MTIME 0x20u       /* put: i64 seconds, u32 nanoseconds */
#define TF_REQ_SKIP_SAME 0x40u   /* put: 16-byte digest of the payload */
#define TF_REQ_NO_GOAHEAD 0x80u  /* put: payload follows at once; one answer */
#define TF_REQ_PUTX_MASK 0xfcu
#define TF_WIRE_EXT_DIGEST 16 /* IF_MATCH and SKIP_SAME digests: XXH3-128 */
#define TF_WIRE_MTIME_SIZE 12
#define TF_WIRE_EXT_MAX (2 * TF_WIRE_EXT_DIGEST + TF_WIRE_MTIME_SIZE)
/* A streamed put's chunk: a u32 length, then that many bytes; length 0
   ends the payload. No chunk is longer than this. */
#define TF_WIRE_CHUNK_HEAD_SIZE 4
#define TF_WIRE_CHUNK_MAX ((uint32_t)1 << 20)
/* Response flags. */
#define TF_RESP_FROM_START 0x01u /* get: the offset was not honoured; the
                                    payload starts at byte 0 */
#define TF_RESP_SAME 0x02u       /* put with SKIP_SAME: the bytes are already
                                    there, nothing stored */

typedef struct tf_wire_client_hello {
    uint16_t version_min;
    uint16_t version_max;
    uint32_t features;
} tf_wire_client_hello;

/* Both hellos are sent at once, neither waiting for the other: each side
   announces the versions and features it supports, and both compute the
   same result (tf__wire_negotiate). */
typedef struct tf_wire_server_hello {
    uint16_t version_min;
    uint16_t version_max;
    uint32_t features;
    uint16_t status;        /* 0, or a wire status (see tf__wire_status)  */
    uint16_t max_name;      /* the server's name limit                    */
    uint64_t max_upload;    /* 0 = no limit                               */
    const char *message;    /* points into the decoded buffer; not NUL-terminated */
    uint16_t message_len;
} tf_wire_server_hello;

/* A TREE server announces its max_depth in the hello's reserved field
   (offset 26; docs/protocol.md "Server hello"), so that the hello keeps its
   size. These write it into an encoded hello and read it from a received
   one (0: not announced). */
void tf__wire_server_hello_put_depth(uint8_t *hello, uint16_t max_depth);
uint16_t tf__wire_server_hello_depth(const uint8_t *hello);

typedef struct tf_wire_request {
    uint8_t op;
    uint8_t flags;          /* TF_REQ_* bits */
    uint64_t size;          /* PUT: the file's full size; otherwise 0 */
    uint64_t offset;        /* GET: first byte wanted (resume); otherwise 0 */
    const char *name;       /* points into the decoded buffer */
    uint16_t name_len;
    const uint8_t *key;     /* with TF_REQ_UPLOAD_KEY: 16 bytes after the name */
    /* The extension block (PUTX): set by the decoder from the flags, read
       by the encoder when the flag is set. */
    const uint8_t *if_match;  /* TF_REQ_IF_MATCH: 16 bytes */
    int64_t mtime_sec;        /* TF_REQ_MTIME */
    uint32_t mtime_nsec;      /* TF_REQ_MTIME; range checked by the server */
    const uint8_t *same;      /* TF_REQ_SKIP_SAME: 16 bytes */
} tf_wire_request;

/* The auth request (op 4): a request-sized head whose name field is the
   user name, followed by the token. Both lengths are bounded by the
   protocol, and checked before either is waited for. */
#define TF_WIRE_AUTH_SIZE 24
#define TF_WIRE_USER_MAX 64   /* bytes of a user name on the wire */
#define TF_WIRE_TOKEN_MAX 256 /* bytes of a token on the wire     */
typedef struct tf_wire_auth {
    const char *user;       /* points into the decoded buffer; not NUL-terminated */
    uint16_t user_len;      /* 0..TF_WIRE_USER_MAX */
    const char *token;      /* points into the decoded buffer */
    uint16_t token_len;     /* 0..TF_WIRE_TOKEN_MAX */
} tf_wire_auth;

/* A rename's new path travels right after the name, its length as the
   request's size (1..TF_WIRE_NAME_MAX; otherwise there is none and the
   request cannot be framed). For a decoded request: the new path (into the
   decoded buffer) and *len, or NULL with *len 0 when it has none; after
   TF_ETOOBIG (no name decoded) NULL, with *len still its length. */
const char *tf__wire_request_to(const tf_wire_request *r, size_t *len);
/* Encodes a rename request: from as its name, then to. TF_EINVAL when a
   path is empty or over TF_WIRE_NAME_MAX, or cap is too small. */
long tf__wire_encode_rename(uint8_t *buf, size_t cap, uint8_t flags, const char *from,
                            size_t from_len, const char *to, size_t to_len);

typedef struct tf_wire_response {
    uint8_t op;
    uint8_t flags;
    uint16_t status;
    uint64_t size;
    const char *message;    /* points into the decoded buffer */
    uint16_t message_len;
} tf_wire_response;

typedef struct tf_wire_trailer {
    uint16_t status;
    uint16_t digest_len;
    const uint8_t *digest;  /* points into the decoded buffer */
} tf_wire_trailer;

/* Status codes on the wire are the API's codes negated: 0 ok, 2 ENOENT... */
uint16_t tf__wire_status(int code);
/* And back. A status this version does not know (from a newer peer) maps
   to the generic TF_EINTERNAL, which leaves the connection usable; callers
   say "unknown error from the server (status N)" (tf__wire_status_known). */
int tf__wire_code(uint16_t status);
/* Whether status is 0 or one of this version's codes. */
int tf__wire_status_known(uint16_t status);

/* The version both sides will speak (the highest they share), or 0 if
   their ranges do not meet. */
uint16_t tf__wire_negotiate(uint16_t a_min, uint16_t a_max, uint16_t b_min, uint16_t b_max);

/* Big-endian helpers; the only way the codec touches multi-byte fields. */
void tf__put_u16(uint8_t *p, uint16_t v);
void tf__put_u32(uint8_t *p, uint32_t v);
void tf__put_u64(uint8_t *p, uint64_t v);
uint16_t tf__get_u16(const uint8_t *p);
uint32_t tf__get_u32(const uint8_t *p);
uint64_t tf__get_u64(const uint8_t *p);

long tf__wire_encode_client_hello(uint8_t *buf, size_t cap, const tf_wire_client_hello *h);
long tf__wire_decode_client_hello(const uint8_t *buf, size_t len, tf_wire_client_hello *h);

long tf__wire_encode_server_hello(uint8_t *buf, size_t cap, const tf_wire_server_hello *h);
long tf__wire_decode_server_hello(const uint8_t *buf, size_t len, tf_wire_server_hello *h);

/* max_name: the decoder refuses longer names with TF_ETOOBIG (it is the
   receiver's limit, at most TF_WIRE_NAME_MAX). */
long tf__wire_encode_request(uint8_t *buf, size_t cap, const tf_wire_request *r);
long tf__wire_decode_request(const uint8_t *buf, size_t len, size_t max_name,
                             tf_wire_request *r);

/* Bytes after the request head: the name, the upload key if flagged, and
   the extension block's fields the flags announce. */
size_t tf__wire_request_tail(const tf_wire_request *r);

/* The auth request. The decoder returns TF_EPROTO for another op, flags
   or a non-zero reserved field, TF_ETOOBIG for a length over its maximum
   (a frame that cannot be skipped safely: the server closes). */
long tf__wire_encode_auth(uint8_t *buf, size_t cap, const tf_wire_auth *a);
long tf__wire_decode_auth(const uint8_t *buf, size_t len, tf_wire_auth *a);

long tf__wire_encode_response(uint8_t *buf, size_t cap, const tf_wire_response *r);
long tf__wire_decode_response(const uint8_t *buf, size_t len, tf_wire_response *r);

long tf__wire_encode_trailer(uint8_t *buf, size_t cap, const tf_wire_trailer *t);
long tf__wire_decode_trailer(const uint8_t *buf, size_t len, tf_wire_trailer *t);

/* A chunk's head (TF_REQ_STREAM puts): len 0 ends the payload. Encoding
   refuses len over TF_WIRE_CHUNK_MAX (TF_EINVAL); decoding returns 4 with
   *len set, TF_WIRE_NEED_MORE, or TF_EPROTO for a length over it. */
long tf__wire_encode_chunk_head(uint8_t *buf, size_t cap, uint32_t len);
long tf__wire_decode_chunk_head(const uint8_t *buf, size_t len, uint32_t *chunk_len);

/*
 * The list encoding: u32 count, then per entry u16 name length, the name,
 * u64 size, i64 mtime. tf__wire_list_entry_size gives one entry's bytes.
 */
size_t tf__wire_list_entry_size(size_t name_len);
/* Writes the 4-byte count. */
long tf__wire_encode_list_head(uint8_t *buf, size_t cap, uint32_t count);
/* Appends one entry. */
long tf__wire_encode_list_entry(uint8_t *buf, size_t cap, const char *name,
                                size_t name_len, uint64_t size, int64_t mtime);

/* Bytes needed to encode l whole, and the encoding itself (head and every
   entry, in l's order). */
size_t tf__wire_list_size(const tf_listing *l);
long tf__wire_encode_list(uint8_t *buf, size_t cap, const tf_listing *l);

/*
 * Decodes a whole listing of exactly len bytes into a new tf_listing
 * (entries sorted by name, bytewise). Unlike the frame decoders this one
 * needs the complete encoding, since its length is known from the response
 * head. Refuses (TF_EPROTO) trailing bytes, truncation, empty names, names
 * that fail tf_name_check, names longer than max_name, and counts that the
 * buffer cannot hold; TF_ENOMEM if allocation fails.
 */
int tf__wire_decode_list(const uint8_t *buf, size_t len, size_t max_name,
                         tf_listing **out);

/* ---- the tree (section 3a) ---- */

/* stat's record. type 1 file, 2 directory. */
typedef struct tf_wire_stat {
    uint8_t type;
    uint8_t flags;          /* TF_WIRE_STAT_HAS_DIGEST */
    uint32_t mtime_ns;
    uint64_t size;
    int64_t mtime;
    uint8_t digest[16];
} tf_wire_stat;
/* Encodes TF_WIRE_STAT_SIZE bytes. */
long tf__wire_encode_stat(uint8_t *buf, size_t cap, const tf_wire_stat *st);
/* Decodes a whole record of exactly len bytes (from the response's size):
   TF_EPROTO when len is below TF_WIRE_STAT_SIZE or over TF_WIRE_STAT_MAX,
   the type unknown, mtime_ns over 999999999; bytes past the known ones are
   ignored. Returns len. */
long tf__wire_decode_stat(const uint8_t *buf, size_t len, tf_wire_stat *st);

/* One listdir entry. */
typedef struct tf_wire_dirent {
    const char *path;       /* not NUL-terminated; into the buffer */
    uint16_t path_len;
    uint8_t type;
    uint32_t mtime_ns;
    uint64_t size;
    int64_t mtime;
} tf_wire_dirent;
/* Appends one entry (TF_WIRE_DIRENT_FIXED + path_len bytes). */
long tf__wire_encode_dirent(uint8_t *buf, size_t cap, const tf_wire_dirent *d);
/* Decodes the entry at buf, within a chunk of which len bytes remain: the
   bytes consumed, or TF_EPROTO when the entry does not fit (entries never
   span chunks), its path_len is 0 or over max_path, or its type unknown.
   The path's rules are the caller's (tf__path_check_bytes). */
long tf__wire_decode_dirent(const uint8_t *buf, size_t len, size_t max_path,
                            tf_wire_dirent *d);

#endif /* TF_WIRE_H */
