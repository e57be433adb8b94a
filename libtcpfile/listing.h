/*
 * listing.h - the listing as a data model: the tf_listing type, the builder
 * that both ends fill it through (the wire decoder on the client, the
 * directory scan on the server), and its one order. A leaf: it knows no
 * sockets, no files and no codec; the parsers call it, never the other way
 * round (cmark's node.c, hiredis' redisReplyObjectFunctions).
 */
#ifndef TF_LISTING_H
#define TF_LISTING_H

#include <stddef.h>
#include <stdint.h>

#include "tcpfile.h"

/* One array of entries and one block holding every name, so a listing
   frees in three calls whatever its size. tf_listing_count/at/free (the
   public accessors) are defined in listing.c. */
struct tf_listing {
    size_t count;
    tf_entry *entries;
    char *names;
};

/* Builds a listing entry by entry. Names are copied; the entries come out
   sorted by tf__listing_compare. Duplicate names are kept as given (a
   directory cannot hold two; a peer that sends two gets both back). */
typedef struct tf__listing_builder {
    size_t max_entries; /* caps, checked by add */
    size_t max_name;
    tf_entry *entries;
    size_t *offsets; /* where each entry's name starts in names */
    char *names;
    size_t count, cap, names_len, names_cap;
} tf__listing_builder;

/* Starts an empty builder: at most max_entries entries, names of at most
   max_name bytes (and passing tf_name_check). Allocates nothing. */
void tf__listing_builder_init(tf__listing_builder *b, size_t max_entries, size_t max_name);
/* Makes room for count more entries and names_bytes more bytes of names
   (each name's length + 1), when the caller knows them: the decoder does,
   and then building allocates once. TF_ENOMEM. */
int tf__listing_builder_reserve(tf__listing_builder *b, size_t count, size_t names_bytes);
/* Adds one entry (name: len bytes, no NUL needed). TF_EINVAL for a name
   that is empty, over max_name or fails tf_name_check (nothing added);
   TF_ETOOBIG when max_entries are already held; TF_ENOMEM. The builder
   stays usable after any failure (finish or abort it). */
int tf__listing_builder_add(tf__listing_builder *b, const char *name, size_t len,
                            uint64_t size, int64_t mtime);
/* Hands the sorted listing to *out (the caller's, tf_listing_free) and
   empties the builder. TF_ENOMEM (then *out is NULL and the builder is
   emptied too). */
int tf__listing_builder_finish(tf__listing_builder *b, tf_listing **out);
/* Frees what the builder holds; safe on a finished or aborted builder. */
void tf__listing_builder_abort(tf__listing_builder *b);

/* The one order of a listing: bytewise by name (a qsort comparator over
   tf_entry). */
int tf__listing_compare(const void *a, const void *b);

#endif /* TF_LISTING_H */
