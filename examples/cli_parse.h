/*
 * cli_parse.h - what the command-line programs (tcpfile-server,
 * tcpfile-client and bench/tcpfile-bench) share: one-line usage errors and
 * strict parsing of numbers, sizes and seconds.
 *
 * Compiled into each program (examples/CMakeLists.txt,
 * bench/CMakeLists.txt). It is not part of libtcpfile: nothing here is
 * exported from the library, and it uses no tcpfile.h at all.
 */
#ifndef TF_CLI_PARSE_H
#define TF_CLI_PARSE_H

#include <stdint.h>

/* The exit status of a usage error, as each program's --help says. */
#define CLI_EXIT_USAGE 2

/* Prints a usage error as one line on stderr, pointing at --help:
     PROG: WHAT "ARG" (see PROG --help)
   or, when arg is NULL, the same without "ARG". Returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *prog, const char *what, const char *arg);

/* Reports a bad option as a usage error, given what getopt_long returned
   for it (its optstring starting with ':'): ':' is a missing value, any
   other an unknown option. Call it before getopt_long runs again: it reads
   optind and optopt. Returns CLI_EXIT_USAGE. */
int cli_option_error(const char *prog, int ch, char *const *argv);

/* A non-negative decimal number into *out, with an optional binary suffix
   when allow_suffix: K (or k), M, G or T multiply by 1024, 1024^2, ...
   Refuses signs, spaces, an empty string and overflow, which strtoll would
   accept or wrap silently. Returns 0, or -1 with *out untouched. */
int cli_parse_number(const char *s, int allow_suffix, int64_t *out);

/* cli_parse_number without a suffix, and only from lo to hi (a port is
   cli_parse_int(s, 1, 65535, &v)). Returns 0, or -1 with *out untouched. */
int cli_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);

/* A non-negative number of seconds with optional decimals ("30", "0.5"),
   into *ms as milliseconds. A fraction of a millisecond rounds up, so a
   non-zero value never becomes 0 (which options take as "no limit").
   Refuses signs, exponents, spaces and a bare "." on either side; a value
   too large to hold becomes INT64_MAX, for the caller to refuse as out of
   range. Returns 0, or -1 with *ms untouched. */
int cli_parse_seconds(const char *s, int64_t *ms);

/* The whole of s as strtod reads it (fractions, exponents, ".5"), into
   *out; the caller checks the range. Returns 0, or -1 when s is empty,
   has anything after the number, or is out of the range of a double. */
int cli_parse_double(const char *s, double *out);

#endif /* TF_CLI_PARSE_H */
