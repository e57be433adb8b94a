/*
 * test_listing.c - the listing builder: caps, order, duplicates, the
 * out-of-memory guards, and that a builder is reusable after any failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "listing.h"

static int add(tf__listing_builder *b, const char *name, uint64_t size)
{
    return tf__listing_builder_add(b, name, strlen(name), size, (int64_t)size * 10);
}

static void test_listing_builder_sorts_and_copies(void **state)
{
    (void)state;
    tf__listing_builder b;
    tf__listing_builder_init(&b, 10, 255);
    char name[8];
    strcpy(name, "zeta");
    assert_int_equal(add(&b, name, 1), TF_OK);
    strcpy(name, "Alpha"); /* names are copied: the caller's buffer is reused */
    assert_int_equal(add(&b, name, 2), TF_OK);
    assert_int_equal(add(&b, "alpha", 3), TF_OK);
    assert_int_equal(add(&b, "b", 4), TF_OK);
    tf_listing *l = NULL;
    assert_int_equal(tf__listing_builder_finish(&b, &l), TF_OK);
    assert_non_null(l);
    static const char *const want[] = {"Alpha", "alpha", "b", "zeta"}; /* bytewise */
    static const uint64_t sizes[] = {2, 3, 4, 1};
    assert_int_equal(tf_listing_count(l), 4);
    for (size_t i = 0; i < 4; i++) {
        const tf_entry *e = tf_listing_at(l, i);
        assert_string_equal(e->name, want[i]);
        assert_int_equal(e->size, sizes[i]);
        assert_int_equal(e->mtime, (int64_t)sizes[i] * 10);
    }
    assert_null(tf_listing_at(l, 4));
    tf_listing_free(l);
    tf__listing_builder_abort(&b); /* after finish: nothing left, no double free */
}

static void test_listing_builder_empty(void **state)
{
    (void)state;
    tf__listing_builder b;
    tf__listing_builder_init(&b, 0, 255);
    assert_int_equal(tf__listing_builder_reserve(&b, 0, 0), TF_OK);
    tf_listing *l = NULL;
    assert_int_equal(tf__listing_builder_finish(&b, &l), TF_OK);
    assert_non_null(l);
    assert_int_equal(tf_listing_count(l), 0);
    assert_null(tf_listing_at(l, 0));
    tf_listing_free(l);
}

static void test_listing_builder_caps(void **state)
{
    (void)state;
    tf__listing_builder b;
    tf__listing_builder_init(&b, 2, 5);
    assert_int_equal(add(&b, "", 1), TF_EINVAL);
    assert_int_equal(add(&b, "toolong", 1), TF_EINVAL); /* over max_name 5 */
    assert_int_equal(add(&b, "..", 1), TF_EINVAL);
    assert_int_equal(tf__listing_builder_add(&b, "a/b", 3, 1, 1), TF_EINVAL);
    assert_int_equal(tf__listing_builder_add(&b, "a\0b", 3, 1, 1), TF_EINVAL);
    assert_int_equal(add(&b, "five5", 1), TF_OK); /* exactly max_name */
    assert_int_equal(add(&b, "two", 2), TF_OK);
    assert_int_equal(add(&b, "three", 3), TF_ETOOBIG); /* max_entries 2 */
    /* Refusals added nothing and left the builder usable. */
    tf_listing *l = NULL;
    assert_int_equal(tf__listing_builder_finish(&b, &l), TF_OK);
    assert_int_equal(tf_listing_count(l), 2);
    assert_string_equal(tf_listing_at(l, 0)->name, "five5");
    assert_string_equal(tf_listing_at(l, 1)->name, "two");
    tf_listing_free(l);
}

static void test_listing_builder_duplicates_kept(void **state)
{
    (void)state;
    tf__listing_builder b;
    tf__listing_builder_init(&b, 10, 255);
    assert_int_equal(add(&b, "same", 1), TF_OK);
    assert_int_equal(add(&b, "other", 2), TF_OK);
    assert_int_equal(add(&b, "same", 3), TF_OK);
    tf_listing *l = NULL;
    assert_int_equal(tf__listing_builder_finish(&b, &l), TF_OK);
    assert_int_equal(tf_listing_count(l), 3);
    assert_string_equal(tf_listing_at(l, 0)->name, "other");
    assert_string_equal(tf_listing_at(l, 1)->name, "same");
    assert_string_equal(tf_listing_at(l, 2)->name, "same");
    /* Both kept, whichever order qsort left them in. */
    assert_int_equal(tf_listing_at(l, 1)->size + tf_listing_at(l, 2)->size, 4);
    tf_listing_free(l);
}

/* Many entries with long names: the arrays and the name block move while
   growing, and every name must still point into the final block. */
static void test_listing_builder_grows(void **state)
{
    (void)state;
    enum { N = 5000 };
    tf__listing_builder b;
    tf__listing_builder_init(&b, N, 255);
    char name[64];
    for (unsigned i = 0; i < N; i++) {
        snprintf(name, sizeof name, "file-%05u-padding-padding-padding-padding", N - 1 - i);
        assert_int_equal(add(&b, name, i), TF_OK);
    }
    tf_listing *l = NULL;
    assert_int_equal(tf__listing_builder_finish(&b, &l), TF_OK);
    assert_int_equal(tf_listing_count(l), N);
    for (unsigned i = 0; i < N; i++) {
        snprintf(name, sizeof name, "file-%05u-padding-padding-padding-padding", i);
        assert_string_equal(tf_listing_at(l, i)->name, name);
        assert_int_equal(tf_listing_at(l, i)->size, N - 1 - i);
    }
    tf_listing_free(l);
}

/* The sizes a builder refuses before asking malloc: a count or a name
   total so large that multiplying or doubling it would wrap around. */
static void test_listing_builder_reserve_overflow(void **state)
{
    (void)state;
    tf__listing_builder b;
    tf__listing_builder_init(&b, SIZE_MAX, 255);
    assert_int_equal(tf__listing_builder_reserve(&b, SIZE_MAX, 0), TF_ENOMEM);
    assert_int_equal(tf__listing_builder_reserve(&b, SIZE_MAX / sizeof(tf_entry), 0), TF_ENOMEM);
    assert_int_equal(tf__listing_builder_reserve(&b, 1, SIZE_MAX), TF_ENOMEM);
    assert_int_equal(tf__listing_builder_reserve(&b, 1, SIZE_MAX / 2 + 1), TF_ENOMEM);
    /* Still usable: a refusal allocated nothing that leaks. */
    assert_int_equal(tf__listing_builder_reserve(&b, 2, 8), TF_OK);
    assert_int_equal(add(&b, "x", 1), TF_OK);
    tf__listing_builder_abort(&b);
    tf__listing_builder_abort(&b); /* twice is harmless */
}

static void test_listing_free_null(void **state)
{
    (void)state;
    tf_listing_free(NULL);
    assert_int_equal(tf_listing_count(NULL), 0);
    assert_null(tf_listing_at(NULL, 0));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listing_builder_sorts_and_copies),
        cmocka_unit_test(test_listing_builder_empty),
        cmocka_unit_test(test_listing_builder_caps),
        cmocka_unit_test(test_listing_builder_duplicates_kept),
        cmocka_unit_test(test_listing_builder_grows),
        cmocka_unit_test(test_listing_builder_reserve_overflow),
        cmocka_unit_test(test_listing_free_null),
    };
    return TU_RUN_GROUP("listing", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
