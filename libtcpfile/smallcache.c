/*
 * smallcache.c - the loop's small-file cache (smallcache.h): a hash table
 * of entries keyed by storage and name, in least-recently-used order.
 */
#include "smallcache.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
    struct entry *chain;       /* the bucket's next */
    struct entry *prev, *next; /* use order: head most recent */
    const tf__storage *owner;  /* a user's view is a storage of its own */
    uint64_t hash;
    uint64_t id[TF_STORAGE_ID_LEN];
    uint8_t digest[TF_DIGEST_SIZE];
    size_t len, cost;
    uint8_t *data;             /* len bytes, after the name */
    char name[];               /* NUL-terminated */
} entry;

struct tf__small_cache {
    size_t max, bytes, entries;
    int64_t settle_s;
    uint64_t rng;              /* admission when full (see keep) */
    uint64_t hits, stale;
    entry *head, *tail;
    size_t nbuckets;           /* a power of two */
    entry **buckets;
};

static uint64_t key_hash(const tf__storage *owner, const char *name)
{
    uint64_t h = 14695981039346656037ull ^ (uint64_t)(uintptr_t)owner;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h ^ (h >> 29);
}

tf__small_cache *tf__small_cache_new(size_t max_bytes)
{
    if (max_bytes == 0)
        return NULL;
    tf__small_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->settle_s = TF_SMALL_CACHE_SETTLE_S;
    c->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)c;
    /* About one bucket per 4 KiB file the bound holds. */
    c->nbuckets = 64;
    while (c->nbuckets < max_bytes / 4096 && c->nbuckets < ((size_t)1 << 20))
        c->nbuckets <<= 1;
    /* The table and this struct count against the bound too. */
    size_t fixed = sizeof *c + c->nbuckets * sizeof *c->buckets;
    c->max = max_bytes > fixed ? max_bytes - fixed : 0;
    if (!(c->buckets = calloc(c->nbuckets, sizeof *c->buckets))) {
        free(c);
        return NULL;
    }
    return c;
}

static void unlink_use(tf__small_cache *c, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(tf__small_cache *c, entry *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void drop(tf__small_cache *c, entry *e)
{
    entry **p = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    unlink_use(c, e);
    c->bytes -= e->cost;
    c->entries--;
    free(e);
}

void tf__small_cache_free(tf__small_cache *c)
{
    if (!c)
        return;
    for (entry *e = c->head, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    free(c->buckets);
    free(c);
}

static entry *find(tf__small_cache *c, const tf__storage *owner, const char *name, uint64_t h)
{
    for (entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->chain)
        if (e->hash == h && e->owner == owner && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static uint64_t next_random(tf__small_cache *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

/* Keeps a copy of a file just read, if it is small and settled. When full,
   only one miss in eight is let in (evicting the least recently used): a
   working set larger than the cache, walked in turn, would otherwise
   evict every entry before its next use and never hit, while with this a
   part of it stays and hits. A hot file still gets in after a few misses. */
static void keep(tf__small_cache *c, const tf__storage *owner, const char *name, uint64_t h,
                 const uint64_t id[TF_STORAGE_ID_LEN], const void *data, size_t len,
                 const uint8_t digest[TF_DIGEST_SIZE])
{
    int64_t changed = (int64_t)id[2] > (int64_t)id[5] ? (int64_t)id[2] : (int64_t)id[5];
    if (len > TF_SMALL_CACHE_FILE_MAX || changed > (int64_t)time(NULL) - c->settle_s)
        return;
    size_t name_len = strlen(name);
    size_t cost = sizeof(entry) + name_len + 1 + len;
    if (cost > c->max)
        return;
    if (c->bytes + cost > c->max && (next_random(c) & 7) != 0)
        return;
    entry *e = malloc(cost);
    if (!e)
        return;
    while (c->bytes + cost > c->max)
        drop(c, c->tail);
    memcpy(e->name, name, name_len + 1);
    e->data = (uint8_t *)e->name + name_len + 1;
    memcpy(e->data, data, len);
    e->len = len;
    e->cost = cost;
    e->owner = owner;
    e->hash = h;
    memcpy(e->id, id, sizeof e->id);
    memcpy(e->digest, digest, TF_DIGEST_SIZE);
    entry **b = &c->buckets[h & (c->nbuckets - 1)];
    e->chain = *b;
    *b = e;
    push_front(c, e);
    c->bytes += cost;
    c->entries++;
}

int tf__small_get(tf__small_cache *c, tf__storage *st, const char *name, void *buf, size_t cap,
                  size_t *len, uint8_t digest[TF_DIGEST_SIZE])
{
    uint64_t id[TF_STORAGE_ID_LEN];
    uint64_t h = 0;
    if (c && st->ops->version) {
        h = key_hash(st, name);
        entry *e = find(c, st, name, h);
        if (e && e->len <= cap && st->ops->version(st, name, id) &&
            memcmp(id, e->id, sizeof id) == 0) {
            memcpy(buf, e->data, e->len);
            *len = e->len;
            if (digest)
                memcpy(digest, e->digest, TF_DIGEST_SIZE);
            c->hits++;
            if (c->head != e) {
                unlink_use(c, e);
                push_front(c, e);
            }
            return 1;
        }
        if (e) {
            c->stale++;
            drop(c, e);
        }
    }
    if (!st->ops->read_cached(st, name, buf, cap, len, id))
        return 0;
    /* The digest is kept with the bytes, so it is computed here even
       for a client that asked for none. */
    uint8_t d[TF_DIGEST_SIZE];
    int keepable = c && st->ops->version && *len <= TF_SMALL_CACHE_FILE_MAX;
    if (digest || keepable)
        tf__digest_once(buf, *len, d);
    if (digest)
        memcpy(digest, d, TF_DIGEST_SIZE);
    if (keepable)
        keep(c, st, name, h, id, buf, *len, d);
    return 1;
}

void tf__small_cache_stats_get(const tf__small_cache *c, tf__small_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    out->hits = c->hits;
    out->stale = c->stale;
    out->bytes = c->bytes + sizeof *c + c->nbuckets * sizeof *c->buckets;
    out->entries = c->entries;
}

void tf__small_cache_set_settle(tf__small_cache *c, int64_t seconds)
{
    if (c)
        c->settle_s = seconds;
}
