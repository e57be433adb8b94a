/*
 * storage.c - what is built on any storage backend: the listing a list
 * request sends, read from the backend's paged listing.
 */
#include "storage.h"

#include <stdlib.h>
#include <string.h>

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const tf_entry *)a)->name, ((const tf_entry *)b)->name);
}

int tf__storage_scan(tf__storage *st, size_t max_entries, size_t max_name, tf_listing **out,
                     tf__err *e)
{
    *out = NULL;
    tf__lister *li = NULL;
    int rc = st->ops->list_open(st, "", &li, e);
    if (rc != TF_OK)
        return rc;
    tf_entry *entries = NULL;
    size_t *offsets = NULL;
    char *names = NULL;
    size_t count = 0, cap = 0, names_len = 0, names_cap = 0;
    const tf__dirent *batch;
    size_t n;
    while (rc == TF_OK && (rc = st->ops->list_next(st, li, &batch, &n, e)) == TF_OK && n > 0) {
        for (size_t i = 0; i < n; i++) {
            const tf__dirent *de = &batch[i];
            size_t nlen = strlen(de->name);
            if (de->st.type != TF__FT_FILE)
                continue; /* directories, links, devices: not served */
            if (tf__name_check_bytes(de->name, nlen, max_name, NULL) != TF_OK)
                continue; /* names no client could ask for */
            if (count == max_entries) {
                rc = tf__fail(e, TF_ETOOBIG, "the directory holds more than %zu files",
                              max_entries);
                break;
            }
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                tf_entry *ne = realloc(entries, ncap * sizeof *ne);
                size_t *no = ne ? realloc(offsets, ncap * sizeof *no) : NULL;
                if (ne)
                    entries = ne;
                if (!ne || !no) {
                    rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
                    break;
                }
                offsets = no;
                cap = ncap;
            }
            if (names_len + nlen + 1 > names_cap) {
                size_t ncap = names_cap ? names_cap * 2 : 4096;
                while (ncap < names_len + nlen + 1)
                    ncap *= 2;
                char *nn = realloc(names, ncap);
                if (!nn) {
                    rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
                    break;
                }
                names = nn;
                names_cap = ncap;
            }
            memcpy(names + names_len, de->name, nlen + 1);
            offsets[count] = names_len;
            entries[count].size = de->st.size;
            entries[count].mtime = de->st.mtime;
            names_len += nlen + 1;
            count++;
        }
    }
    st->ops->list_close(st, li);
    tf_listing *l = NULL;
    if (rc == TF_OK && !(l = calloc(1, sizeof *l)))
        rc = tf__fail(e, TF_ENOMEM, "out of memory listing the directory");
    if (rc != TF_OK) {
        free(entries);
        free(offsets);
        free(names);
        return rc;
    }
    /* Names were appended to a growing block; point at them only now. */
    for (size_t i = 0; i < count; i++)
        entries[i].name = names + offsets[i];
    free(offsets);
    /* An empty root leaves entries NULL, which qsort may not be given. */
    if (count > 1)
        qsort(entries, count, sizeof *entries, compare_entries);
    l->count = count;
    l->entries = entries;
    l->names = names;
    *out = l;
    return TF_OK;
}
