/*
 * digestcache.c - remembered whole-file digests: beside the file (an
 * extended attribute) or, for a server that writes nothing, in memory.
 */
#include "digestcache.h"

#include <errno.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>

#define DIGEST_XATTR "user.tcpfile.xxh3"
/* Version, the first four words of the identity (inode, size, mtime: the
   ctime changes with the attribute itself), digest. */
#define XATTR_ID_LEN 4
#define DIGEST_RECORD (1 + XATTR_ID_LEN * 8 + TF_DIGEST_SIZE)

void tf__digest_cache_init(tf__digest_cache *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
}

void tf__digest_cache_destroy(tf__digest_cache *c)
{
    pthread_mutex_destroy(&c->lock);
}

static int memo_load(tf__digest_cache *c, const uint64_t id[TF_FS_ID_LEN],
                     uint8_t out[TF_DIGEST_SIZE])
{
    int found = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < TF_DIGEST_CACHE_SIZE && !found; i++) {
        tf__digest_memo *m = &c->memo[i];
        if (m->used && memcmp(m->id, id, sizeof m->id) == 0) {
            memcpy(out, m->digest, TF_DIGEST_SIZE);
            m->used = ++c->clock;
            found = 1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

/* Replaces the entry of the same file (device and inode: its older version
   is of no more use), or else the least recently used one. */
static void memo_store(tf__digest_cache *c, const uint64_t id[TF_FS_ID_LEN],
                       const uint8_t digest[TF_DIGEST_SIZE])
{
    pthread_mutex_lock(&c->lock);
    tf__digest_memo *victim = &c->memo[0];
    for (size_t i = 0; i < TF_DIGEST_CACHE_SIZE; i++) {
        tf__digest_memo *m = &c->memo[i];
        if (m->used && m->id[0] == id[0] && m->id[4] == id[4]) {
            victim = m;
            break;
        }
        if (m->used < victim->used)
            victim = m;
    }
    memcpy(victim->id, id, sizeof victim->id);
    memcpy(victim->digest, digest, TF_DIGEST_SIZE);
    victim->used = ++c->clock;
    pthread_mutex_unlock(&c->lock);
}

int tf__fs_digest_load(int fd, const uint64_t id[TF_FS_ID_LEN], tf__digest_cache *mem,
                       uint8_t out[TF_DIGEST_SIZE])
{
    /* Read-only still reads what a server that could write left. */
    if (mem && memo_load(mem, id, out))
        return 1;
    uint8_t rec[DIGEST_RECORD];
    if (fgetxattr(fd, DIGEST_XATTR, rec, sizeof rec) != (ssize_t)sizeof rec || rec[0] != 1 ||
        memcmp(rec + 1, id, XATTR_ID_LEN * sizeof id[0]) != 0)
        return 0;
    memcpy(out, rec + 1 + XATTR_ID_LEN * sizeof id[0], TF_DIGEST_SIZE);
    return 1;
}

void tf__fs_digest_store(int fd, const uint8_t digest[TF_DIGEST_SIZE],
                         const uint64_t id[TF_FS_ID_LEN], tf__digest_cache *mem)
{
    uint8_t rec[DIGEST_RECORD];
    uint64_t now_id[TF_FS_ID_LEN];
    if (tf__fs_identity(fd, now_id) != 0 || memcmp(now_id, id, sizeof now_id) != 0)
        return;
    if ((int64_t)now_id[2] > (int64_t)time(NULL) - 2)
        return; /* not settled */
    if (mem) {
        memo_store(mem, now_id, digest);
        return;
    }
    rec[0] = 1;
    memcpy(rec + 1, now_id, XATTR_ID_LEN * sizeof now_id[0]);
    memcpy(rec + 1 + XATTR_ID_LEN * sizeof now_id[0], digest, TF_DIGEST_SIZE);
    /* Best effort: no xattrs here only means hashing again next time. */
    (void)fsetxattr(fd, DIGEST_XATTR, rec, sizeof rec, 0);
}
