/*
 * known_hosts.h - the client's record of servers it has met, as ssh keeps
 * one: a text file ($XDG_CONFIG_HOME/tcpfile/known_hosts, by default
 * ~/.config/tcpfile/known_hosts) with one server per line,
 *
 *     HOST:PORT SHA256:<43 base64 characters>
 *
 * HOST a name (lower case) or an address, an IPv6 one in brackets
 * ("[::1]:7070"); blank lines and lines starting with '#' are comments. A
 * line that does not parse is skipped (and reported), never fatal and
 * never dropped when the file is rewritten. A host may have several lines
 * (a key being rotated): any of them matching is a match.
 */
#ifndef TF_KNOWN_HOSTS_H
#define TF_KNOWN_HOSTS_H

#include <stddef.h>

#include "internal.h"
#include "tls_identity.h"

/* Longest HOST:PORT we write: a 253-character name, ':' and 5 digits. */
#define TF__KH_NAME_MAX 270

enum {
    TF__KH_UNKNOWN = 0,  /* no line for this host and port */
    TF__KH_MATCH = 1,    /* a line with this very key */
    TF__KH_MISMATCH = 2, /* lines for the host, none with this key */
};

typedef struct tf__kh_result {
    int status;                    /* TF__KH_*                                 */
    unsigned line;                 /* the matching / first mismatching line    */
    char known[TF__FP_SIZE];       /* mismatch: the key on record              */
    unsigned bad_lines;            /* malformed lines skipped                  */
    unsigned first_bad_line;       /* and the first of them (0: none)         */
    const char *first_bad_why;     /* what was wrong with it (static text)     */
} tf__kh_result;

/* The default file: $XDG_CONFIG_HOME/tcpfile/known_hosts when that is an
   absolute path, else $HOME/.config/tcpfile/known_hosts (HOME from the
   password database when unset). TF_EINVAL (too long), TF_ENOENT (no home). */
int tf__known_hosts_default_path(char *buf, size_t cap, tf__err *e);

/* The HOST:PORT a server is recorded under: host as the user gave it
   ("[::1]" or "::1", a name in any case), port 1..65535. TF_EINVAL. */
int tf__known_hosts_name(char *buf, size_t cap, const char *host, unsigned port, tf__err *e);

/* Looks host:port up with the key fingerprint ("SHA256:..."). A missing
   file is an empty one (TF__KH_UNKNOWN). TF_OK with *res filled, or
   TF_EINVAL (bad host, port or fingerprint), TF_EACCES, TF_EIO, TF_ETOOBIG
   (over 16 MiB), TF_ENOMEM. */
int tf__known_hosts_lookup(const char *path, const char *host, unsigned port,
                           const char *fingerprint, tf__kh_result *res, tf__err *e);

/* Records host:port with fingerprint (ssh's "accept-new"): creates the file
   (0600) and its directory (0700) when missing, appends the line through an
   atomic rewrite under a lock, so that clients adding at once lose no line.
   TF_OK also when that very line is there already; TF_EEXIST when the host
   is recorded with another key (that is a mismatch to report, never to
   overwrite). Codes as lookup, plus TF_ENOSPC. */
int tf__known_hosts_add(const char *path, const char *host, unsigned port,
                        const char *fingerprint, tf__err *e);

/* ssh's policy, as a tf__tls_check_fn (tls.h) with a tf__kh_policy as its
   user pointer: a match is accepted; a mismatch is refused, loudly, with
   the key shown and the line on record; an unknown server is recorded and
   accepted with accept_new, refused otherwise (a front end that can ask
   the user on a terminal looks up first and calls tf__known_hosts_add
   itself). Refusals are TF_EPEERVERIFY; a file that cannot be read or
   written gives its own code. */
typedef struct tf__kh_policy {
    const char *path; /* the known_hosts file */
    unsigned port;    /* the server's port, for the HOST:PORT key */
    int accept_new;   /* record and accept a server not yet known */
} tf__kh_policy;
int tf__known_hosts_check(void *policy, const char *host, const char *fingerprint, tf__err *e);

#endif /* TF_KNOWN_HOSTS_H */
