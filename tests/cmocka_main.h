/*
 * cmocka_main.h - one ctest entry per cmocka test. tests/CMakeLists.txt
 * (tf_add_cmocka_test) finds the test names in each source at configure time
 * and registers one entry per name, which runs the program with that name as
 * its filter argument; each main() ends with
 *
 *     return TU_RUN_GROUP("group", tests, group_setup, group_teardown, filter);
 *
 * with filter the argument (NULL: the whole group, as when run by hand). The
 * group fixtures run around the one selected test, so a hang or a crash names
 * its test. A filter that names no test of the group fails rather than
 * running nothing: a renamed or removed test cannot pass silently.
 * Include after <cmocka.h>.
 */
#ifndef TF_CMOCKA_MAIN_H
#define TF_CMOCKA_MAIN_H

#include <stdio.h>
#include <string.h>

/* cmocka 1.1 reports a failed group teardown but still returns 0 for the
   run; the teardown is called through this wrapper, which notes whether it
   returned 0 (a failed assertion jumps out of it, leaving the note unset). */
static CMFixtureFunction tu__teardown;
static int tu__teardown_ok;

static inline int tu__group_teardown(void **state)
{
    int rc = tu__teardown(state);
    tu__teardown_ok = rc == 0;
    return rc;
}

/* Runs the test named filter (exactly; NULL runs all of them) between the
   group's setup and teardown; returns what cmocka returns, 1 when no test
   has that name, and 1 when the group teardown failed. */
static inline int tu_run_group(const char *group, const struct CMUnitTest *tests, size_t n,
                               CMFixtureFunction setup, CMFixtureFunction teardown,
                               const char *filter)
{
    if (filter != NULL) {
        size_t hits = 0;
        for (size_t i = 0; i < n; i++)
            if (tests[i].name != NULL && strcmp(tests[i].name, filter) == 0)
                hits++;
        /* Exact names only: cmocka's filter is a glob, and "*" would pass
           whatever the group holds. */
        if (hits != 1) {
            fprintf(stderr, "%s: no test named \"%s\" (%zu matches)\n", group, filter,
                    hits);
            return 1;
        }
        cmocka_set_test_filter(filter);
    }
    tu__teardown = teardown;
    tu__teardown_ok = 0;
    int rc = _cmocka_run_group_tests(group, tests, n, setup,
                                     teardown != NULL ? tu__group_teardown : NULL);
    if (rc == 0 && teardown != NULL && !tu__teardown_ok)
        rc = 1;
    return rc;
}

#define TU_RUN_GROUP(group, tests, setup, teardown, filter)                                \
    tu_run_group((group), (tests), sizeof(tests) / sizeof((tests)[0]), (setup),            \
                 (teardown), (filter))

#endif /* TF_CMOCKA_MAIN_H */
