/*
 * test_curlapi.c - libcurl is loaded only when an S3 store is opened
 * (curlapi.h): a client and a server on a local directory never map it,
 * and loading the table maps it and resolves every function.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "cmocka_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curlapi.h"
#include "tcpfile.h"
#include "testutil.h"

/* Whether a library whose file name starts with prefix is mapped. */
static int mapped(const char *prefix)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        const char *slash = strrchr(line, '/');
        found = slash && strncmp(slash + 1, prefix, strlen(prefix)) == 0;
    }
    fclose(f);
    return found;
}

static void test_curlapi_not_loaded_by_local_work(void **state)
{
    (void)state;
    assert_false(mapped("libcurl"));
    test_server s;
    tu_server_start(&s, NULL);
    tu_write_in(s.root, "a.txt", "hello", 5);
    tf_client *c = tu_connect(&s, NULL);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(tf_get_mem(c, "a.txt", &data, &len), TF_OK);
    assert_int_equal(len, 5);
    free(data);
    tf_close(c);
    tu_server_stop(&s, 1);
    assert_false(mapped("libcurl"));
}

static void test_curlapi_load_maps_and_resolves(void **state)
{
    (void)state;
    tf__curl api;
    tf__err e = {{0}};
    assert_int_equal(tf__curl_load(&api, &e), TF_OK);
    assert_true(mapped("libcurl"));
    assert_non_null(api.easy_init);
    assert_non_null(api.getdate);
    CURL *h = api.easy_init();
    assert_non_null(h);
    assert_int_equal(api.easy_setopt(h, CURLOPT_NOSIGNAL, 1L), CURLE_OK);
    assert_string_equal(api.easy_strerror(CURLE_OK), "No error");
    assert_true(api.getdate("Sun, 06 Nov 1994 08:49:37 GMT", NULL) == 784111777);
    api.easy_cleanup(h);
    /* A second table is independent of the first (no shared state). */
    tf__curl again;
    assert_int_equal(tf__curl_load(&again, &e), TF_OK);
    tf__curl_unload(&api);
    h = again.easy_init();
    assert_non_null(h);
    again.easy_cleanup(h);
    tf__curl_unload(&again);
    tf__curl_unload(&again); /* harmless twice */
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curlapi_not_loaded_by_local_work),
        cmocka_unit_test(test_curlapi_load_maps_and_resolves),
    };
    return TU_RUN_GROUP("curlapi", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
