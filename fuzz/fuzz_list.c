/*
 * fuzz_list.c - tf__wire_decode_list on arbitrary bytes. The first two
 * input bytes are the receiver's max_name (0..65535), the rest is the
 * listing. An accepted listing must hold only valid names, come out
 * sorted, and encode back to a listing of the same length that decodes
 * to the same entries.
 */
#include "fuzz.h"
#include "internal.h"
#include "wire.h"

static void check_same(const tf_listing *a, const tf_listing *b)
{
    FUZZ_CHECK(tf_listing_count(a) == tf_listing_count(b));
    for (size_t i = 0; i < tf_listing_count(a); i++) {
        const tf_entry *x = tf_listing_at(a, i);
        const tf_entry *y = tf_listing_at(b, i);
        FUZZ_CHECK(strcmp(x->name, y->name) == 0);
        /* Equal names may come in any order; their sizes then can differ. */
        if (i + 1 < tf_listing_count(a) &&
            strcmp(x->name, tf_listing_at(a, i + 1)->name) == 0)
            continue;
        if (i > 0 && strcmp(x->name, tf_listing_at(a, i - 1)->name) == 0)
            continue;
        FUZZ_CHECK(x->size == y->size && x->mtime == y->mtime);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_name = fuzz_take_u16(&data, &size);
    size_t limit = max_name < TF_WIRE_NAME_MAX ? max_name : TF_WIRE_NAME_MAX;
    tf_listing *l = (tf_listing *)1;
    int rc = tf__wire_decode_list(data, size, max_name, &l);
    FUZZ_CHECK(rc == TF_OK || rc == TF_EPROTO);
    if (rc != TF_OK) {
        FUZZ_CHECK(l == NULL);
        return 0;
    }

    size_t count = tf_listing_count(l);
    FUZZ_CHECK(size >= 4 && count == tf__get_u32(data));
    FUZZ_CHECK(count <= (size - 4) / 19);
    FUZZ_CHECK(tf_listing_at(l, count) == NULL);
    for (size_t i = 0; i < count; i++) {
        const tf_entry *e = tf_listing_at(l, i);
        FUZZ_CHECK(e != NULL && e->name != NULL);
        size_t len = strlen(e->name);
        FUZZ_CHECK(len >= 1 && len <= limit);
        FUZZ_CHECK(tf_name_check(e->name, limit, NULL) == TF_OK);
        if (i > 0)
            FUZZ_CHECK(strcmp(tf_listing_at(l, i - 1)->name, e->name) <= 0);
    }

    /* Round trip: the sorted listing encodes to as many bytes as came in. */
    FUZZ_CHECK(tf__wire_list_size(l) == size);
    uint8_t *out = fuzz_copy(data, size);
    FUZZ_CHECK(tf__wire_encode_list(out, size, l) == (long)size);
    tf_listing *again = NULL;
    FUZZ_CHECK(tf__wire_decode_list(out, size, max_name, &again) == TF_OK);
    check_same(l, again);
    tf_listing_free(again);
    free(out);
    tf_listing_free(l);
    return 0;
}
