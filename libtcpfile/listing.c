/*
 * listing.c - the listing data model: builder, order, public accessors.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "listing.h"

void tf__listing_builder_init(tf__listing_builder *b, size_t max_entries, size_t max_name)
{
    memset(b, 0, sizeof *b);
    b->max_entries = max_entries;
    b->max_name = max_name;
}

/* The most entries and name bytes a builder will hold: past these, doubling
   or multiplying by an element size could wrap around. */
#define MAX_ENTRIES (SIZE_MAX / 4 / (sizeof(tf_entry) + sizeof(size_t)))
#define MAX_NAMES (SIZE_MAX / 4)

static int grow_entries(tf__listing_builder *b, size_t want)
{
    if (want <= b->cap)
        return TF_OK;
    if (want > MAX_ENTRIES)
        return TF_ENOMEM;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < want)
        ncap *= 2;
    tf_entry *ne = realloc(b->entries, ncap * sizeof *ne);
    if (!ne)
        return TF_ENOMEM;
    b->entries = ne;
    size_t *no = realloc(b->offsets, ncap * sizeof *no);
    if (!no)
        return TF_ENOMEM; /* entries grew, cap did not: still consistent */
    b->offsets = no;
    b->cap = ncap;
    return TF_OK;
}

static int grow_names(tf__listing_builder *b, size_t want)
{
    if (want <= b->names_cap)
        return TF_OK;
    if (want > MAX_NAMES)
        return TF_ENOMEM;
    size_t ncap = b->names_cap ? b->names_cap : 4096;
    while (ncap < want)
        ncap *= 2;
    char *nn = realloc(b->names, ncap);
    if (!nn)
        return TF_ENOMEM;
    b->names = nn;
    b->names_cap = ncap;
    return TF_OK;
}

int tf__listing_builder_reserve(tf__listing_builder *b, size_t count, size_t names_bytes)
{
    /* Exactly what was asked when nothing is held yet: a decoder that knows
       the sizes then allocates once and wastes nothing. */
    if (count > MAX_ENTRIES - b->count || names_bytes > MAX_NAMES - b->names_len)
        return TF_ENOMEM;
    if (b->cap == 0 && count) {
        tf_entry *ne = malloc(count * sizeof *ne);
        size_t *no = ne ? malloc(count * sizeof *no) : NULL;
        if (!no) {
            free(ne);
            return TF_ENOMEM;
        }
        b->entries = ne;
        b->offsets = no;
        b->cap = count;
    } else if (grow_entries(b, b->count + count) != TF_OK) {
        return TF_ENOMEM;
    }
    if (b->names_cap == 0 && names_bytes) {
        if (!(b->names = malloc(names_bytes)))
            return TF_ENOMEM;
        b->names_cap = names_bytes;
        return TF_OK;
    }
    return grow_names(b, b->names_len + names_bytes);
}

int tf__listing_builder_add(tf__listing_builder *b, const char *name, size_t len,
                            uint64_t size, int64_t mtime)
{
    if (len == 0 || len > b->max_name ||
        tf__name_check_bytes(name, len, b->max_name, NULL) != TF_OK)
        return TF_EINVAL;
    if (b->count >= b->max_entries)
        return TF_ETOOBIG;
    if (grow_entries(b, b->count + 1) != TF_OK || grow_names(b, b->names_len + len + 1) != TF_OK)
        return TF_ENOMEM;
    memcpy(b->names + b->names_len, name, len);
    b->names[b->names_len + len] = '\0';
    /* Names live in a block that may still move: keep offsets, point at
       them only in finish. */
    b->offsets[b->count] = b->names_len;
    b->entries[b->count].name = NULL;
    b->entries[b->count].size = size;
    b->entries[b->count].mtime = mtime;
    b->names_len += len + 1;
    b->count++;
    return TF_OK;
}

int tf__listing_builder_finish(tf__listing_builder *b, tf_listing **out)
{
    *out = NULL;
    tf_listing *l = calloc(1, sizeof *l);
    if (!l) {
        tf__listing_builder_abort(b);
        return TF_ENOMEM;
    }
    for (size_t i = 0; i < b->count; i++)
        b->entries[i].name = b->names + b->offsets[i];
    /* An empty listing may hold NULL entries, which qsort may not be given. */
    if (b->count > 1)
        qsort(b->entries, b->count, sizeof *b->entries, tf__listing_compare);
    l->count = b->count;
    l->entries = b->entries;
    l->names = b->names;
    free(b->offsets);
    size_t max_entries = b->max_entries, max_name = b->max_name;
    tf__listing_builder_init(b, max_entries, max_name);
    *out = l;
    return TF_OK;
}

void tf__listing_builder_abort(tf__listing_builder *b)
{
    free(b->entries);
    free(b->offsets);
    free(b->names);
    tf__listing_builder_init(b, b->max_entries, b->max_name);
}

int tf__listing_compare(const void *a, const void *b)
{
    return strcmp(((const tf_entry *)a)->name, ((const tf_entry *)b)->name);
}

size_t tf_listing_count(const tf_listing *l)
{
    return l ? l->count : 0;
}

const tf_entry *tf_listing_at(const tf_listing *l, size_t i)
{
    return l && i < l->count ? &l->entries[i] : NULL;
}

void tf_listing_free(tf_listing *l)
{
    if (!l)
        return;
    free(l->entries);
    free(l->names);
    free(l);
}
