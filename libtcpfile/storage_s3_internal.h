/*
 * storage_s3_internal.h - what the files of the S3 backend share
 * (storage_s3*.c): its constants, the store, an upload, and the helpers
 * one file lends the others. Not for the rest of the library.
 */
#ifndef TF_STORAGE_S3_INTERNAL_H
#define TF_STORAGE_S3_INTERNAL_H

#include "storage.h"

#include <pthread.h>
#include <sys/mman.h>

#include "s3.h"

/* S3's smallest part (but the last): the least part_size taken. */
#define PART_MIN ((size_t)5 << 20)
/* Read-ahead of a read handle: one ranged GET fetches this much, so that
   a large get pays a request's latency once per 4 MiB... */
#define READ_AHEAD ((size_t)4 << 20)
/* ...as long as the read-aheads of all readers (a store and its views)
   fit in this budget; a reader that finds it spent reads with ranged GETs
   of what the session asks (256 KiB) straight into the session's buffer,
   holding nothing. So the memory of N readers at once is at most
   RA_BUDGET + N * OPEN_AHEAD, not N * READ_AHEAD (100 clients: 440 MiB). */
#define RA_BUDGET TF_S3_READAHEAD_BUDGET
/* Less than this left in the budget: no read-ahead. */
#define RA_MIN ((size_t)1 << 20)
/* What open_read fetches with the object's head, in the same GET: a small
   file whole (one request per small get, not a HEAD and a GET). */
#define OPEN_AHEAD ((size_t)64 << 10)

/* The large buffers (a part being filled or sent, a reader's read-ahead)
   are mapped, not malloc'd: freed, glibc raises its mmap threshold to
   their size and then serves them from each thread's arena, which keeps
   them after free (a server idle after a 1 GiB put and get held 475 MiB
   with 16 disk threads). munmap gives them back at once. */
static inline uint8_t *tf__s3s_big_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static inline void tf__s3s_big_free(uint8_t *p, size_t n)
{
    if (p)
        munmap(p, n);
}
/* The ring a streamed upload's PUT is fed from (storage_s3_stream.c), of
   the read-ahead budget: the session writes while curl sends. */
#define STREAM_RING ((size_t)8 << 20)
/* The metadata of an object put by one streaming PUT: its digest is
   beside it (TF_TMP_DIR/d/NAME), as for a multipart upload in place. */
#define DIGEST_BESIDE "xxh3-beside"
/* S3's largest single PUT: beyond it an upload of known size is
   multipart (single_put_max's default and ceiling). */
#define SINGLE_PUT_MAX ((uint64_t)5 << 30)
/* Age after which a plain staged upload left in the bucket is debris
   (sweep): its server has surely given up on it. */
#define PLAIN_STALE_S 3600
/* Parts an upload may have: cfg.part_size * this is the largest file. */
#define MAX_PARTS TF_S3_PARTS_MAX
/* Parts of one upload sent in the background at once, while the session
   fills the next: each holds a part's size of the read-ahead budget (none
   left: the part is sent while the caller waits, as the first one). */
#define PARTS_AHEAD 2

/* The read-ahead budget, shared by a store and its views (s_sub). */
typedef struct tf__ra_budget {
    pthread_mutex_t mu;
    size_t used;
    int refs;
} ra_budget;

/* One streaming PUT in progress (storage_s3_stream.c). */
typedef struct tf__s3s_stream tf__s3s_stream;

typedef struct pooled {
    tf__s3 *s3;
    struct pooled *next;
} pooled;

/* An object open for reading: its handle is its index in the table. */
typedef struct reader {
    char key[TF_S3_KEY_MAX + 1];
    uint64_t size;
    uint64_t id[TF_STORAGE_ID_LEN];
    int has_digest;
    uint8_t digest[TF_DIGEST_SIZE];
    uint8_t *ra; /* read-ahead: bytes [ra_off, ra_off + ra_len) */
    size_t ra_cap;
    size_t ra_charged; /* of ra_cap, what the budget lent */
    uint64_t ra_off;
    size_t ra_len;
} reader;

typedef struct s3store {
    tf__storage base; /* first */
    tf__storage_s3_config cfg;
    char *prefix; /* "" or "dir/" */
    char *endpoint, *bucket, *region, *access_key, *secret_key;
    pthread_mutex_t mu;
    /* held across a multipart commit's check and copy (commit_with) */
    pthread_mutex_t commit_mu;
    pooled *free_handles;
    ra_budget *budget;
    reader **readers;
    size_t n_readers;
    /* stems of resumable uploads in progress here */
    char **busy;
    size_t n_busy;
    /* parts being sent in the background now, and the most at once (for
       the tests: tf__storage_s3_parts_overlap); under mu */
    size_t parts_flying, parts_flying_max;
    /* uploads sent as one streaming PUT so far (tf__storage_s3_streams) */
    size_t streams;
} s3store;

/* A full part sent by a thread of its own (send_part), with a resumable
   upload's state after it, while the caller goes on filling the next. Its
   results are taken up in order (finish_part), so that the parts are
   recorded as if sent one after the other. */
typedef struct flying_part {
    pthread_t thread;
    s3store *s;
    tf__upload *up;              /* read only: its stem (save_state) */
    const char *key, *upload_id; /* the upload's, stable while it flies */
    unsigned number;
    uint8_t *buf;
    uint64_t written;                   /* the upload's bytes up to this part's end */
    uint8_t state[TF_DIGEST_STATE_MAX]; /* its digest there (resumable) */
    size_t state_len;
    char etag[TF_S3_ID_MAX];
    int rc;
    tf__err e;
} flying_part;

struct tf__upload {
    char stage_key[TF_S3_KEY_MAX + 1]; /* the multipart upload's key */
    char upload_id[TF_S3_ID_MAX];      /* "" until one is started */
    int resumable;
    int in_place; /* stage_key is the name's own key (stage_named) */
    /* sent as one streaming PUT of stage_key (stage_sized): no parts */
    tf__s3s_stream *stream;
    /* a part could not be stored (the store is down): the parts before
       it stay for the retry, abort keeps them (see tf__s3s_abort) */
    int store_failed;
    char stem[80];
    tf__s3_part *parts;
    size_t n_parts;
    flying_part *flying[PARTS_AHEAD]; /* after parts, oldest first */
    size_t n_flying;
    uint8_t *buf; /* the part being filled (tf__s3s_big_alloc) */
    size_t buf_cap; /* its size: the store's part_size */
    size_t buf_len;
    uint64_t written; /* bytes in parts and buf */
    tf__digest digest;
    /* a resumed upload: the digest of its parts, fed to the session's
       digest by hash_range (the parts themselves cannot be read back) */
    uint8_t *saved_state;
    size_t saved_len;
    uint64_t saved_bytes;
};

struct tf__lister {
    char prefix[TF_S3_KEY_MAX + 1];
    int at_root;
    int done;
    tf__s3_page page;
    size_t n;
    tf__dirent batch[TF_STORAGE_LIST_BATCH];
};

/* Whether any key starts with "PREFIX path/" (a directory): 1, 0, or an
   error. */
typedef struct any {
    int n;
    int other; /* a key other than the marker itself */
    const char *marker;
} any;

static inline s3store *S(tf__storage *st)
{
    return (s3store *)st;
}

/* One of the store's counters (under mu), for the tests. */
static inline size_t tf__s3s_counter(s3store *s, const size_t *c)
{
    pthread_mutex_lock(&s->mu);
    size_t n = *c;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* storage_s3.c: the store, its pool of S3 handles (one per call) */
void tf__s3s_give_s3(s3store *s, tf__s3 *h);
tf__s3 *tf__s3s_take_s3(s3store *s, tf__err *e);

/* storage_s3_commit.c: publishing an upload, times */
void tf__s3s_object_mtime(const tf__s3_info *h, int64_t *sec, uint32_t *nsec);
int tf__s3s_commit(tf__storage *st, tf__upload **upp, const char *name, int overwrite,
                   tf__err *e);
int tf__s3s_commit_cond(tf__storage *st, tf__upload **upp, const char *name,
                        const tf__commit_cond *c, tf__err *e);
int tf__s3s_set_mtime(tf__storage *st, const char *path, int64_t sec, uint32_t nsec,
                      tf__err *e);

/* storage_s3_keys.c: names, keys, versions, digests kept beside */
int tf__s3s_check_path(const char *path, tf__err *e);
int tf__s3s_count_any(void *user, const char *key, int is_prefix, uint64_t size,
                      int64_t mtime);
void tf__s3s_digest_drop(s3store *s, tf__s3 *h, const char *path);
int tf__s3s_digest_get(s3store *s, tf__s3 *h, const char *path, const char *etag,
                       uint8_t digest[TF_DIGEST_SIZE]);
int tf__s3s_digest_key(s3store *s, const char *path, char *out, tf__err *e);
void tf__s3s_digest_put(s3store *s, tf__s3 *h, const char *path, const char *etag,
                        const uint8_t digest[TF_DIGEST_SIZE]);
int tf__s3s_dir_probe(s3store *s, tf__s3 *h, const char *path, any *a, tf__err *e);
int tf__s3s_file_key(s3store *s, char *out, const char *path, tf__err *e);
void tf__s3s_format_mtime(char out[48], int64_t sec, uint32_t nsec);
void tf__s3s_hex(const uint8_t *p, size_t n, char *out);
int tf__s3s_key_for(s3store *s, char *out, const char *path, const char *suffix,
                    tf__err *e);
int tf__s3s_unhex(const char *s, uint8_t *out, size_t n);
void tf__s3s_version_of(const tf__s3_info *h, uint64_t id[TF_STORAGE_ID_LEN]);

/* storage_s3_read.c: read handles and the read-ahead budget */
void tf__s3s_budget_give(ra_budget *b, size_t n);
size_t tf__s3s_budget_take(ra_budget *b, size_t want);
void tf__s3s_budget_unref(ra_budget *b);
void tf__s3s_reader_free(s3store *s, reader *r);
void tf__s3s_close_read(tf__storage *st, int fd);
int tf__s3s_digest_load(tf__storage *st, int fd, const uint64_t id[TF_STORAGE_ID_LEN],
                        uint8_t out[TF_DIGEST_SIZE]);
void tf__s3s_digest_store(tf__storage *st, int fd, const uint8_t digest[TF_DIGEST_SIZE],
                          const uint64_t id[TF_STORAGE_ID_LEN]);
int tf__s3s_hash_range(tf__storage *st, int fd, tf__upload *up, uint64_t from, uint64_t len,
                       tf__digest *d, uint8_t *buf, size_t buf_len, tf__err *e);
int tf__s3s_open_read(tf__storage *st, const char *name, int *fd, uint64_t *size,
                      uint64_t id[TF_STORAGE_ID_LEN], tf__err *e);
ssize_t tf__s3s_read_at(tf__storage *st, int fd, void *buf, size_t len, uint64_t off);

/* storage_s3_resume.c: uploads left in the bucket */
int tf__s3s_stage_resumable(tf__storage *st, const char *stem, uint64_t size,
                            tf__upload **out, uint64_t *have, int *resumable, tf__err *e);
void tf__s3s_sweep(tf__storage *st, int all_plain);

/* storage_s3_stream.c: an upload of known size as one streaming PUT */
int tf__s3s_stream_start(s3store *s, tf__upload *up, uint64_t size, tf__err *e);
int tf__s3s_stream_write(tf__s3s_stream *st, const uint8_t *p, size_t n, tf__err *e);
int tf__s3s_stream_finish(tf__s3s_stream *st, char *etag, tf__err *e);
void tf__s3s_stream_end(s3store *s, tf__s3s_stream *st);

/* storage_s3_tree.c: stat, list, remove, rename, mkdir */
void tf__s3s_list_close(tf__storage *st, tf__lister *li);
int tf__s3s_list_next(tf__storage *st, tf__lister *li, const tf__dirent **batch, size_t *n,
                      tf__err *e);
int tf__s3s_list_open(tf__storage *st, const char *dir, tf__lister **out, tf__err *e);
int tf__s3s_mkdir(tf__storage *st, const char *path, tf__err *e);
int tf__s3s_remove(tf__storage *st, const char *path, tf__err *e);
int tf__s3s_rename(tf__storage *st, const char *from, const char *to, unsigned flags,
                   tf__err *e);
int tf__s3s_stat(tf__storage *st, const char *path, tf__fstat *out, tf__err *e);

/* storage_s3_upload.c: staging, parts, dropping and keeping */
void tf__s3s_drop(s3store *s, tf__upload *up);
int tf__s3s_flush_part(s3store *s, tf__s3 *h, tf__upload *up, tf__err *e);
void tf__s3s_free_upload(tf__upload *up);
int tf__s3s_land_parts(s3store *s, tf__upload *up, tf__err *e);
tf__upload *tf__s3s_new_upload(tf__err *e);
void tf__s3s_abort(tf__storage *st, tf__upload **up);
int tf__s3s_check_target(tf__storage *st, const char *name, int overwrite, tf__err *e);
void tf__s3s_keep(tf__storage *st, tf__upload **upp);
int tf__s3s_stage(tf__storage *st, tf__upload **out, tf__err *e);
int tf__s3s_stage_named(tf__storage *st, const char *name, tf__upload **out, tf__err *e);
int tf__s3s_stage_sized(tf__storage *st, const char *name, uint64_t size, tf__upload **out,
                        tf__err *e);
int tf__s3s_write(tf__storage *st, tf__upload *up, const void *p, size_t n, tf__err *e);
int tf__s3s_state_key(s3store *s, const tf__upload *up, char *out, tf__err *e);
void tf__s3s_unbusy(s3store *s, const char *stem);

#endif
