/* cli_parse.c - see cli_parse.h. */
#define _POSIX_C_SOURCE 200809L

#include "cli_parse.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_usage_error(const char *prog, const char *what, const char *arg)
{
    if (arg)
        fprintf(stderr, "%s: %s \"%s\" (see %s --help)\n", prog, what, arg, prog);
    else
        fprintf(stderr, "%s: %s (see %s --help)\n", prog, what, prog);
    return CLI_EXIT_USAGE;
}

int cli_option_error(const char *prog, int ch, char *const *argv)
{
    if (ch == ':')
        return cli_usage_error(prog, "missing value for option", argv[optind - 1]);
    /* A short option is known by optopt; a long one only by the word getopt
       just stepped over (optopt is 0 for an unknown one, and the option's
       own value, 256 or more in these programs, for one given a value it
       does not take). */
    char shortopt[3] = {'-', (char)optopt, '\0'};
    int is_short = optopt > 0 && optopt <= UCHAR_MAX;
    return cli_usage_error(prog, "unknown option", is_short ? shortopt : argv[optind - 1]);
}

int cli_parse_number(const char *s, int allow_suffix, int64_t *out)
{
    int64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - (*p - '0')) / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (*p && allow_suffix) {
        static const char units[] = "KMGT";
        const char *u = strchr(units, *p == 'k' ? 'K' : *p);
        if (!u || p[1] != '\0')
            return -1;
        for (ptrdiff_t i = 0; i <= u - units; i++) {
            if (v > INT64_MAX / 1024)
                return -1;
            v *= 1024;
        }
        p++;
    }
    if (*p)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v;
    if (cli_parse_number(s, 0, &v) != 0 || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_seconds(const char *s, int64_t *ms)
{
    int64_t sec = 0, frac = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++)
        sec = sec > (INT64_MAX - 9) / 10 ? INT64_MAX : sec * 10 + (*p - '0');
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        int round_up = 0;
        for (int place = 100; *p >= '0' && *p <= '9'; p++, place /= 10) {
            if (place > 0)
                frac += (*p - '0') * place;
            else if (*p != '0')
                round_up = 1;
        }
        frac += round_up;
    }
    if (*p)
        return -1;
    *ms = sec > (INT64_MAX - frac) / 1000 ? INT64_MAX : sec * 1000 + frac;
    return 0;
}

int cli_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno)
        return -1;
    *out = v;
    return 0;
}
