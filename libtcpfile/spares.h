/*
 * spares.h - blocks of one kind kept for reuse by one thread (a loop's
 * input buffers, its storage-call blocks: session.h), so that taking one
 * costs no allocation. A kept block is linked through its first bytes,
 * so it must be at least a pointer's size and its contents are garbage
 * when taken again.
 */
#ifndef TF_SPARES_H
#define TF_SPARES_H

#include <stdlib.h>
#include <string.h>

typedef struct tf__spares {
    void *head; /* the last block given back; NULL: none kept */
    int n;
} tf__spares;

/* A kept block, or NULL when none is (the caller allocates one). */
static inline void *tf__spares_take(tf__spares *sp)
{
    void *b = sp->head;
    if (b) {
        memcpy(&sp->head, b, sizeof sp->head);
        sp->n--;
    }
    return b;
}

/* Keeps b (allocated with malloc) for reuse, or frees it when max are
   kept already. */
static inline void tf__spares_give(tf__spares *sp, void *b, int max)
{
    if (sp->n < max) {
        memcpy(b, &sp->head, sizeof sp->head);
        sp->head = b;
        sp->n++;
    } else {
        free(b);
    }
}

/* Frees every kept block. */
static inline void tf__spares_free(tf__spares *sp)
{
    void *b;
    while ((b = tf__spares_take(sp)))
        free(b);
}

#endif /* TF_SPARES_H */
