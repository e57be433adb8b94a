/*
 * authlimit.c - per-address failure counts in a fixed, set-associative
 * table. See authlimit.h.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <xxhash.h>

#include "authlimit.h"

#define WAYS 8

typedef struct rec {
    uint8_t key[16];
    uint8_t used;
    uint32_t fails;
    int64_t until; /* when the last failure is answered */
    int64_t last;  /* the last failure */
} rec;

struct tf__authlimit {
    size_t sets;
    size_t used;
    uint64_t seed; /* random: an attacker cannot aim addresses at one set */
    rec *recs;     /* sets * WAYS */
};

int tf__authlimit_new(tf__authlimit **out, size_t capacity, tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "out is NULL");
    *out = NULL;
    if (capacity == 0)
        capacity = TF__AUTHLIMIT_DEFAULT_CAPACITY;
    if (capacity > ((size_t)1 << 24))
        return tf__fail(e, TF_EINVAL, "authlimit capacity over 2^24");
    tf__authlimit *a = calloc(1, sizeof *a);
    if (!a)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    a->sets = (capacity + WAYS - 1) / WAYS;
    a->recs = calloc(a->sets * WAYS, sizeof *a->recs);
    if (!a->recs) {
        free(a);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    if (RAND_bytes((unsigned char *)&a->seed, sizeof a->seed) != 1)
        a->seed = (uint64_t)(uintptr_t)a ^ 0x9e3779b97f4a7c15ull; /* still works, less evenly */
    *out = a;
    return TF_OK;
}

void tf__authlimit_free(tf__authlimit *a)
{
    if (!a)
        return;
    free(a->recs);
    free(a);
}

/* The record key of an address: IPv4 (also as ::ffff:a.b.c.d) whole, in
   its mapped form; IPv6 by its /64, marked so that no /64 equals a mapped
   IPv4 address; anything else (a Unix socket) shares one key. */
static void key_of(uint8_t key[16], const struct sockaddr *sa)
{
    memset(key, 0, 16);
    if (!sa)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            memcpy(key, &in6->sin6_addr, 16);
        } else {
            memcpy(key, &in6->sin6_addr, 8);
            key[15] = 1;
        }
    }
}

static rec *set_of(const tf__authlimit *a, const uint8_t key[16])
{
    uint64_t h = XXH3_64bits_withSeed(key, 16, a->seed);
    return &a->recs[(size_t)(h % a->sets) * WAYS];
}

static rec *find(const tf__authlimit *a, const uint8_t key[16])
{
    rec *s = set_of(a, key);
    for (int i = 0; i < WAYS; i++)
        if (s[i].used && memcmp(s[i].key, key, 16) == 0)
            return &s[i];
    return NULL;
}

static int stale(const rec *r, int64_t now)
{
    return now - r->last > TF__AUTHLIMIT_FORGET_MS && now >= r->until;
}

/* A free way, else a forgotten one, else the one with the fewest failures
   (the oldest among equals): an attacker's heavy record outlives a flood
   of one-failure ones. */
static rec *take(tf__authlimit *a, const uint8_t key[16], int64_t now)
{
    rec *s = set_of(a, key), *victim = NULL;
    for (int i = 0; i < WAYS && !victim; i++)
        if (!s[i].used)
            victim = &s[i];
    for (int i = 0; i < WAYS && !victim; i++)
        if (stale(&s[i], now))
            victim = &s[i];
    if (!victim) {
        victim = &s[0];
        for (int i = 1; i < WAYS; i++)
            if (s[i].fails < victim->fails ||
                (s[i].fails == victim->fails && s[i].last < victim->last))
                victim = &s[i];
    }
    if (!victim->used)
        a->used++;
    memset(victim, 0, sizeof *victim);
    memcpy(victim->key, key, 16);
    victim->used = 1;
    return victim;
}

static int64_t delay_for(uint32_t fails)
{
    if (fails <= TF__AUTHLIMIT_FREE)
        return 0;
    uint32_t step = fails - TF__AUTHLIMIT_FREE - 1;
    if (step >= 7) /* 100 ms << 7 is already over 10 s */
        return TF__AUTHLIMIT_MAX_MS;
    int64_t d = (int64_t)TF__AUTHLIMIT_BASE_MS << step;
    return d < TF__AUTHLIMIT_MAX_MS ? d : TF__AUTHLIMIT_MAX_MS;
}

int64_t tf__authlimit_fail(tf__authlimit *a, const struct sockaddr *sa, int64_t now_ms)
{
    if (!a)
        return 0;
    uint8_t key[16];
    key_of(key, sa);
    rec *r = find(a, key);
    if (r && stale(r, now_ms)) {
        r->fails = 0;
        r->until = 0;
    }
    if (!r)
        r = take(a, key, now_ms);
    if (r->fails < UINT32_MAX)
        r->fails++;
    r->last = now_ms;
    /* Behind the failures already waiting, so that parallel attempts queue. */
    int64_t start = r->until > now_ms ? r->until : now_ms;
    r->until = start + delay_for(r->fails);
    if (r->until - now_ms > TF__AUTHLIMIT_QUEUE_MS)
        r->until = now_ms + TF__AUTHLIMIT_QUEUE_MS;
    return r->until - now_ms;
}

int64_t tf__authlimit_wait(const tf__authlimit *a, const struct sockaddr *sa, int64_t now_ms)
{
    if (!a)
        return 0;
    uint8_t key[16];
    key_of(key, sa);
    const rec *r = find(a, key);
    if (!r || r->until <= now_ms)
        return 0;
    return r->until - now_ms;
}

void tf__authlimit_success(tf__authlimit *a, const struct sockaddr *sa)
{
    if (!a)
        return;
    uint8_t key[16];
    key_of(key, sa);
    rec *r = find(a, key);
    if (r) {
        memset(r, 0, sizeof *r);
        a->used--;
    }
}

size_t tf__authlimit_size(const tf__authlimit *a)
{
    return a ? a->used : 0;
}

size_t tf__authlimit_capacity(const tf__authlimit *a)
{
    return a ? a->sets * WAYS : 0;
}
