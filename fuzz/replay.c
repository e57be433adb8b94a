/*
 * replay.c - main() for a harness built without libFuzzer: runs every file
 * named on the command line, and every file in every directory named, once
 * through LLVMFuzzerTestOneInput, in name order. ctest uses it to replay
 * the committed corpus (under ASan/UBSan in the sanitizer build), so a
 * crash found once stays fixed.
 *
 *   replay_<harness> DIR|FILE...
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf)
            break;
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap)
            break;
        cap *= 2;
        uint8_t *bigger = realloc(buf, cap);
        if (!bigger)
            free(buf);
        buf = bigger;
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        return -1;
    }
    /* An exact copy, so that reading past the end is caught. */
    uint8_t *exact = fuzz_copy(buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int skip_dots(const struct dirent *de)
{
    return de->d_name[0] != '.';
}

int main(int argc, char **argv)
{
    int runs = 0, errors = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            errors++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            errors += run_file(argv[i]) != 0;
            runs++;
            continue;
        }
        struct dirent **list;
        int n = scandir(argv[i], &list, skip_dots, alphasort);
        if (n < 0) {
            perror(argv[i]);
            errors++;
            continue;
        }
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], list[k]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                errors += run_file(path) != 0;
                runs++;
            }
            free(list[k]);
        }
        free(list);
    }
    printf("%s: %d input%s replayed, %d unreadable\n", argv[0], runs, runs == 1 ? "" : "s",
           errors);
    /* An empty corpus is a mistake in the test, not a pass. */
    return errors || runs == 0 ? 1 : 0;
}
