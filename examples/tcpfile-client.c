/*
 * tcpfile-client - gets, puts and lists files on a tcpfile-server.
 *
 *   tcpfile-client [OPTIONS] HOST[:PORT] [PORT] OPERATION...
 *     get NAME... [--to PATH]      put LOCAL... [--as NAME]      list
 *   tcpfile-client [OPTIONS] tcpfile://HOST[:PORT]/NAME
 *
 * Several sources always mean several files, as with scp: renaming is
 * never positional but explicit (--to, --as), so a shell glob that expands
 * to two files cannot make the second one a target. Options may come
 * anywhere; "--" ends them.
 *
 * Several operations share one connection. By default the first failure
 * ends the run and a line says which operations were not run;
 * --keep-going runs them all. A thin user of the public API (tcpfile.h
 * only): the command line is parsed into a list of single-file operations
 * first, so a mistake anywhere in it is reported before anything is
 * transferred.
 *
 * For a person at a terminal it draws a progress bar for long transfers and
 * lists files with human sizes and local times; into a pipe or a file it
 * prints only the stable, machine-readable forms.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <xxhash.h>

#include "cli_parse.h"
#include "cli_tree.h"
#include "tcpfile.h"

#define PROG "tcpfile-client"

/* The port scripts/serve.sh and the examples use when none is given. */
#define DEFAULT_PORT "7878"

/* Exit statuses, as documented in --help and the man page: one per cause a
   script may act on differently (curl and rsync do the same). */
enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,     /* any other failure */
    EXIT_USAGE = 2,      /* the command line: nothing was transferred */
    EXIT_RESOLVE = 3,    /* the host name does not resolve */
    EXIT_CONNECT = 4,    /* cannot connect: refused, unreachable */
    EXIT_REFUSED = 5,    /* the server refused: read-only, permission, busy */
    EXIT_NOENT = 6,      /* no such file, on the server or here */
    EXIT_LOCAL_IO = 7,   /* local I/O error or local disk full */
    EXIT_SERVER_IO = 8,  /* the server's I/O error or full disk */
    EXIT_TIMEOUT = 9,    /* the server stopped responding */
    EXIT_CHECKSUM = 10,  /* the data was corrupted on the way */
    EXIT_NETWORK = 11,   /* connection lost, or not a tcpfile server */
    EXIT_EXISTS = 12,    /* a file exists and was not replaced */
    EXIT_IDENTITY = 13,  /* the server's identity was rejected (TLS) */
    EXIT_INTERRUPTED = 130 /* SIGINT (SIGTERM: 143) */
};
/* parse_args: go on and run the operations (anything else is a status). */
#define PARSE_RUN (-1)

/* Longest name any server may allow (TF_OPT_MAX_NAME_LEN's upper bound).
   The real limit comes from the server's handshake and the library checks
   it; here we only catch names that no server could accept. */
#define NAME_MAX_ANY 4096
/* The deepest path any server may allow (TF_OPT_MAX_DEPTH's bound). */
#define PATH_DEPTH_ANY 2048

/* How much goes to stderr besides errors: -q, the default, -v. */
enum { QUIET = 0, NORMAL = 1, VERBOSE = 2 };

typedef enum op_kind {
    OP_GET,
    OP_PUT,
    OP_LIST,
    /* The tree (a server with the TREE feature): */
    OP_STAT,  /* stat PATH */
    OP_LS,    /* ls [DIR] [-r] */
    OP_MKDIR, /* mkdir [-p] DIR */
    OP_RM,    /* rm [-r] PATH */
    OP_MV,    /* mv FROM TO [--no-overwrite] */
    OP_GETR,  /* get -r DIR [LOCAL] */
    OP_PUTR,  /* put -r LOCALDIR [DIR] */
    OP_SYNC   /* sync SRC DST, one of them :REMOTE */
} op_kind;

/* Flags of the tree operations (op.flags, group.flags). */
enum {
    F_RECURSIVE = 1,    /* -r: get, put, list, ls, rm */
    F_PARENTS = 2,      /* -p: mkdir, put */
    F_NO_OVERWRITE = 4, /* --no-overwrite: mv */
    F_DELETE = 8,       /* --delete: sync */
    F_DRY_RUN = 16,     /* --dry-run: sync, get -r, put -r */
    F_CHECKSUM = 32,    /* --checksum: sync, get -r, put -r */
    F_IF_ABSENT = 64    /* --if-absent: put */
};

/* One file to move, or one listing: "get a b --to d/" becomes two. */
typedef struct op {
    op_kind kind;
    const char *name;  /* the remote name; NULL for list */
    const char *local; /* get: NULL = ./NAME, "-" = stdout, else a path or a
                          directory; put: the source, "-" = stdin */
    int renamed;       /* put --as / get --to a file: the name was chosen */
    int no_match;      /* get of a wildcard that matched no remote name */
    int group;         /* which operation word it came from: the names of
                          one get are fetched pipelined (tf_get_many) */
    unsigned flags;    /* F_*: -r, -p, --no-overwrite, --delete, ... */
    const char *to;    /* mv: the new path; sync: the destination, with
                          the remote one's ':' removed */
    int push;          /* sync: local -> server */
    char *owned;       /* a name made up here (put -r's default), freed
                          at exit */
    int has_if_match;  /* put --if-match DIGEST: */
    uint8_t if_match[16];
} op;

/* What the command line said before it is split into operations. */
typedef struct group {
    op_kind kind;
    int first, n;        /* its operands: words[first .. first + n) */
    const char *to, *as; /* --to PATH (get), --as NAME (put) */
    unsigned flags;      /* F_*, given after the operation word */
    int has_if_match;    /* put --if-match DIGEST: */
    uint8_t if_match[16];
} group;

typedef struct client_args {
    const char *host; /* as given, brackets and all */
    const char *port;
    char hostbuf[1024];
    int verbosity;
    int human;      /* -H: every list in human form */
    int keep_going; /* --keep-going */
    int no_clobber; /* --no-clobber */
    int force;      /* --force */
    int resume;     /* --resume */
    double rate;    /* --limit-rate, bytes per second; 0 = none */
    const char *user;       /* --user NAME */
    const char *token_file; /* --token-file FILE */
    const char *cert_file;  /* --cert FILE */
    const char *key_file;   /* --key FILE */
    op *ops;
    size_t nops;
    tf_options *opt;
} client_args;

/* How long a put --resume waits for the server to let go of an
   interrupted attempt of the same upload: BUSY_TRIES times BUSY_WAIT s. */
#define BUSY_TRIES 20
#define BUSY_WAIT 0.5

/* A transfer gets a bar only once it has taken BAR_DELAY, so that quick
   ones leave no trace, and the bar is redrawn at most every BAR_PERIOD. */
#define BAR_DELAY 0.5
#define BAR_PERIOD 0.1

/* What the progress callback saw of the current transfer: the byte count
   for the summary line, and the state of the progress bar. */
typedef struct progress {
    uint64_t done, total;
    int bar_enabled;   /* stderr is a terminal, and not -q */
    const char *label; /* "get NAME", "put NAME", "list" */
    int started;       /* the transfer's first callback has come */
    uint64_t first;    /* done at that callback: bytes a resumed transfer had */
    double start, last_draw;
    int drawn;   /* columns of bar on the screen, to erase before other output */
    double rate; /* --limit-rate: bytes per second, 0 = none */
    const char *what; /* the operation as describe() names it, for notes */
    int talk;         /* not -q: say how a resumed transfer starts */
    uint64_t had;     /* get --resume: bytes in the part file beforehand */
    struct batch *batch; /* a pipelined get of several names, or NULL */
    struct treerun *tree; /* a tree operation: one bar for all its files */
} progress;

/* The signal that asked us to stop (SIGINT, SIGTERM), 0 while none has.
   The progress callback sees it and cancels the transfer, so that the
   library removes, or keeps for --resume, what it was writing. */
static volatile sig_atomic_t g_signal;

static void usage(FILE *to)
{
    fprintf(to,
            "Usage: " PROG " [OPTIONS] HOST[:PORT] [PORT] OPERATION...\n"
            "       " PROG " [OPTIONS] tcpfile://HOST[:PORT]/NAME\n"
            "Operations (several may follow one another on one connection):\n"
            "  get NAME... [--to PATH]   download each NAME into ./NAME; --to PATH\n"
            "                            saves one NAME as PATH, or every NAME into\n"
            "                            PATH when it is a directory or ends in \"/\";\n"
            "                            --to - writes to standard output; a NAME\n"
            "                            with * ? [ ] gets every name on the server\n"
            "                            that matches (quote it: 'img-*.jpg')\n"
            "  put LOCAL... [--as NAME]  upload each LOCAL under its last component;\n"
            "                            --as NAME uploads one LOCAL as NAME; LOCAL\n"
            "                            \"-\" reads standard input (needs --as)\n"
            "  list                      print SIZE<TAB>MTIME<TAB>NAME per file, MTIME\n"
            "                            in ISO 8601 UTC; with -H, or when standard\n"
            "                            output is a terminal, human sizes and times\n"
            "With a server that has directories, a NAME may be a path (a/b.txt):\n"
            "  stat PATH...              TYPE SIZE MTIME DIGEST PATH of each\n"
            "  ls [DIR] [-r]             TYPE SIZE MTIME PATH per entry; -r: the tree\n"
            "                            (list DIR and list -r are the same)\n"
            "  mkdir [-p] DIR...         make directories (-p: parents too)\n"
            "  rm [-r] PATH...           remove a file or empty directory (-r: a tree)\n"
            "  mv FROM TO [--no-overwrite]  rename on the server, atomically\n"
            "  put -p LOCAL --as DIR/NAME   make the missing directories first\n"
            "  put LOCAL --if-absent     store only if the name is free (else exit 12)\n"
            "  put LOCAL --if-match DIGEST  replace only the version with that digest\n"
            "                            (32 hex digits, as stat prints; else exit 12)\n"
            "  get -r DIR [LOCAL]        fetch a tree;  put -r LOCALDIR [DIR]: send one\n"
            "  sync SRC DST              push (sync photos :backup/photos) or pull\n"
            "                            (sync :backup/photos photos) only what\n"
            "                            differs by size, mtime, then digest;\n"
            "                            --delete removes what SRC lacks, -n/--dry-run\n"
            "                            only says, -c/--checksum compares every file\n"
            "Several LOCALs or NAMEs always mean several files (a shell glob works),\n"
            "sent pipelined; a word that is an operation starts the next one (write\n"
            "./get for a local file named get). The URL form gets NAME into ./NAME.\n"
            "HOST is a name or an IPv4 or IPv6 address (::1, [::1], [::1]:7878);\n"
            "PORT defaults to " DEFAULT_PORT ".\n"
            "\n"
            "Options (anywhere on the line; \"--\" ends them):\n"
            "      --timeout SECONDS  give up when connecting takes, or the server\n"
            "                         stalls for, longer than SECONDS (0 = never;\n"
            "                         defaults: 10 s to connect, 30 s stalled)\n"
            "  -H, --human            list every file with human sizes and local\n"
            "                         times\n"
            "  -q, --quiet            print nothing but results and errors: no\n"
            "                         summary lines, no progress bar\n"
            "  -v, --verbose          also print connection details, the server's\n"
            "                         limits and the time and rate of each operation\n"
            "      --resume           keep what an interrupted get or put moved, and\n"
            "                         continue from there on the next try (the\n"
            "                         default when TCPFILE_RESUME=1; --no-resume)\n"
            "      --no-clobber       never replace an existing file (a local one on\n"
            "                         get, a remote one on put)\n"
            "  -f, --force            replace a read-only local file on get\n"
            "  -k, --keep-going       run every operation even after a failure\n"
            "      --limit-rate RATE  move at most RATE bytes per second; K, M, G\n"
            "                         suffixes multiply by 1024\n"
            "      --no-checksum      do not verify transfers end to end (XXH3-128)\n"
            "      --pin SHA256:...   accept only the server whose key has this\n"
            "                         fingerprint (as its banner shows it)\n"
            "      --ca FILE          accept a server whose certificate a CA in FILE\n"
            "                         (PEM) signed for HOST\n"
            "      --accept-new       accept a server not yet known and record it in\n"
            "                         the known-hosts file (trust on first use)\n"
            "      --known-hosts FILE the servers met before (default\n"
            "                         $XDG_CONFIG_HOME/tcpfile/known_hosts, else\n"
            "                         ~/.config/tcpfile/known_hosts)\n"
            "      --plaintext        no TLS, for a server run with --plaintext\n"
            "                         (loopback and trusted networks only)\n"
            "      --user NAME        log in as NAME, on a server with users; the\n"
            "                         token comes from TCPFILE_TOKEN in the\n"
            "                         environment or from --token-file (never from\n"
            "                         the command line, where ps would show it)\n"
            "      --token-file FILE  read the token from FILE (its first line); FILE\n"
            "                         must not be readable by group or others\n"
            "      --cert FILE        present the client certificate in FILE (PEM),\n"
            "      --key FILE         with its key (which group and others must not\n"
            "                         read): a machine whose certificate the server\n"
            "                         maps to a user is that user, without a token\n"
            "  -h, --help             print this help and exit\n"
            "      --version          print the library version and exit\n"
            "\n"
            "A replaced file keeps its mode (and owner, where allowed). On a\n"
            "terminal, a transfer that takes more than a moment shows a progress\n"
            "bar on standard error. Ctrl-C stops at the next block: the partial\n"
            "download is removed, or kept with --resume; a second Ctrl-C ends the\n"
            "program at once.\n"
            "\n"
            "Exit status: 0 success; 1 other failure; 2 usage error; 3 cannot\n"
            "resolve HOST; 4 cannot connect; 5 refused by the server (read-only,\n"
            "permission, busy, authentication failed or required); 6 no such file; 7 local I/O error or disk full;\n"
            "8 the server's I/O error or full disk; 9 timed out; 10 checksum\n"
            "mismatch; 11 connection lost; 12 a file exists\n"
            "and was not replaced (or another version than --if-match names); 13 the server's identity was rejected (TLS);\n"
            "130 interrupted (143 for SIGTERM). After a\n"
            "failure the operations after it are not run (unless --keep-going:\n"
            "then the highest status of all is returned).\n");
}

/* Every usage error is one line on stderr, pointing at --help. */
static int usage_error(const char *what, const char *arg)
{
    return cli_usage_error(PROG, what, arg);
}

/* ---- command line -------------------------------------------------------- */

static const struct {
    const char *word;
    op_kind kind;
} keywords[] = {{"get", OP_GET},     {"put", OP_PUT}, {"list", OP_LIST}, {"stat", OP_STAT},
                {"ls", OP_LS},       {"mkdir", OP_MKDIR}, {"rm", OP_RM}, {"mv", OP_MV},
                {"sync", OP_SYNC}};

/* The operation w starts, or -1 when it is not an operation word. */
static int keyword_kind(const char *w)
{
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strcmp(w, keywords[i].word) == 0)
            return (int)keywords[i].kind;
    return -1;
}

static int is_keyword(const char *w)
{
    return keyword_kind(w) >= 0;
}

static const char *last_component(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* --timeout: non-negative seconds, fractions allowed, up to one day (the
   library's limit). Sets both the connect and the per-transfer timeout. */
static int set_timeout(tf_options *opt, const char *arg)
{
    double s;
    if (cli_parse_double(arg, &s) != 0 || !(s >= 0 && s <= 86400))
        return usage_error("--timeout needs seconds from 0 to 86400, not", arg);
    int64_t ms = (int64_t)(s * 1000.0 + 0.5);
    if (s > 0 && ms == 0)
        ms = 1; /* a tiny timeout must not turn into "no limit" */
    if (tf_options_set(opt, TF_OPT_CONNECT_TIMEOUT_MS, ms) != TF_OK ||
        tf_options_set(opt, TF_OPT_IO_TIMEOUT_MS, ms) != TF_OK)
        return usage_error("--timeout out of range:", arg);
    return PARSE_RUN;
}

/* "get \"a.txt\"", "put \"x/y\" as \"z\"", ...: how an operation is named
   in its error and summary lines. */
static void describe(const op *o, char *buf, size_t len)
{
    switch (o->kind) {
    case OP_LIST:
        snprintf(buf, len, "list");
        break;
    case OP_STAT:
        snprintf(buf, len, "stat \"%s\"", o->name);
        break;
    case OP_LS:
        snprintf(buf, len, o->name[0] ? "ls%s \"%s\"" : "ls%s", (o->flags & F_RECURSIVE) ? " -r" : "",
                 o->name);
        break;
    case OP_MKDIR:
        snprintf(buf, len, "mkdir \"%s\"", o->name);
        break;
    case OP_RM:
        snprintf(buf, len, "rm%s \"%s\"", (o->flags & F_RECURSIVE) ? " -r" : "", o->name);
        break;
    case OP_MV:
        snprintf(buf, len, "mv \"%s\" \"%s\"", o->name, o->to);
        break;
    case OP_GETR:
        snprintf(buf, len, "get -r \"%s\" to \"%s\"", o->name, o->local);
        break;
    case OP_PUTR:
        snprintf(buf, len, "put -r \"%s\" as \"%s\"", o->local, o->name);
        break;
    case OP_SYNC:
        if (o->push)
            snprintf(buf, len, "sync \"%s\" \":%s\"", o->local, o->name);
        else
            snprintf(buf, len, "sync \":%s\" \"%s\"", o->name, o->local);
        break;
    case OP_GET:
        if (!o->local)
            snprintf(buf, len, "get \"%s\"", o->name);
        else if (strcmp(o->local, "-") == 0)
            snprintf(buf, len, "get \"%s\" to standard output", o->name);
        else
            snprintf(buf, len, "get \"%s\" to \"%s\"", o->name, o->local);
        break;
    case OP_PUT:
        if (strcmp(o->local, "-") == 0)
            snprintf(buf, len, "put standard input as \"%s\"", o->name);
        else if (o->renamed)
            snprintf(buf, len, "put \"%s\" as \"%s\"", o->local, o->name);
        else
            snprintf(buf, len, "put \"%s\"", o->local);
        break;
    }
}

/* Refuses, before connecting, a name no server could take, so that a
   mistake late on the command line does not leave earlier operations done. */
static int check_name(const op *o)
{
    char why[256];
    /* A path "a/b.txt" is a name too, for a server with the tree. */
    if (tf_path_check(o->name, NAME_MAX_ANY, PATH_DEPTH_ANY, NAME_MAX_ANY, why, sizeof why) ==
        TF_OK)
        return PARSE_RUN;
    char what[8192];
    describe(o, what, sizeof what);
    if (o->kind == OP_GET && strchr(o->name, '/'))
        fprintf(stderr,
                PROG ": %s: bad name: %s; to save it under a local path: get NAME --to PATH"
                     " (see " PROG " --help)\n",
                what, why);
    else if (o->kind == OP_GET || o->renamed)
        fprintf(stderr, PROG ": %s: bad name: %s (see " PROG " --help)\n", what, why);
    else /* the name was derived from LOCAL: show what it came out as */
        fprintf(stderr,
                PROG ": %s: bad remote name \"%s\": %s; give one with --as NAME"
                     " (see " PROG " --help)\n",
                what, o->name, why);
    return EXIT_USAGE;
}

/* HOST, HOST:PORT, [V6], [V6]:PORT, plain V6 (more than one ':'), or
   tcpfile://HOST[:PORT][/NAME]; *url_name receives NAME (decoded from
   %XX) or NULL. Returns PARSE_RUN or a status. */
static int parse_host(const char *w, client_args *a, char **url_name)
{
    static const char scheme[] = "tcpfile://";
    char *h = a->hostbuf;
    *url_name = NULL;
    int url = strncmp(w, scheme, sizeof scheme - 1) == 0;
    if (snprintf(h, sizeof a->hostbuf, "%s", url ? w + sizeof scheme - 1 : w) >=
        (int)sizeof a->hostbuf)
        return usage_error("HOST is too long:", w);
    if (url) {
        char *slash = strchr(h[0] == '[' && strchr(h, ']') ? strchr(h, ']') : h, '/');
        if (slash) {
            *slash = '\0';
            char *n = slash + 1, *o = n;
            for (const char *i = n; *i; i++) {
                unsigned v;
                if (*i == '%' && sscanf(i + 1, "%2x", &v) == 1 && i[1] && i[2]) {
                    *o++ = (char)v;
                    i += 2;
                } else {
                    *o++ = *i;
                }
            }
            *o = '\0';
            if (*n)
                *url_name = n;
        }
    }
    char *port = NULL;
    if (h[0] == '[') {
        char *close = strchr(h, ']');
        if (!close || (close[1] && close[1] != ':'))
            return usage_error("HOST: an IPv6 address is written [ADDRESS]:PORT, not", w);
        if (close[1] == ':') {
            port = close + 2;
            close[1] = '\0';
        }
    } else {
        char *colon = strchr(h, ':');
        if (colon && !strchr(colon + 1, ':')) { /* one colon: HOST:PORT */
            *colon = '\0';
            port = colon + 1;
        }
    }
    if (!h[0])
        return usage_error("missing HOST in", w);
    a->host = h;
    if (port) {
        int64_t v;
        if (cli_parse_int(port, 1, 65535, &v) != 0)
            return usage_error("PORT must be a number from 1 to 65535, not", port);
        a->port = port;
    }
    return PARSE_RUN;
}

/* Whether path names a directory to save into: an existing one, or one
   written with a trailing '/'. */
static int is_dir_target(const char *path)
{
    struct stat st;
    size_t n = strlen(path);
    return (n > 0 && path[n - 1] == '/') || (stat(path, &st) == 0 && S_ISDIR(st.st_mode));
}

/* A remote path of a tree operation, checked before connecting ("" is
   the root, for ls and sync). */
static int check_path(const char *what, const char *path, int root_ok)
{
    char why[256];
    if ((root_ok && path[0] == '\0') ||
        tf_path_check(path, NAME_MAX_ANY, PATH_DEPTH_ANY, NAME_MAX_ANY, why, sizeof why) ==
            TF_OK)
        return PARSE_RUN;
    fprintf(stderr, PROG ": %s \"%s\": bad path: %s (see " PROG " --help)\n", what, path,
            path[0] ? why : "the root cannot be used here");
    return EXIT_USAGE;
}

/* A local directory given to put -r or sync, without its trailing '/'s
   ("photos/" -> "photos"), as its last component names the remote one. */
static const char *dir_base(const char *local, char *buf, size_t len)
{
    size_t n = strlen(local);
    while (n > 1 && local[n - 1] == '/')
        n--;
    snprintf(buf, len, "%.*s", (int)n, local);
    return last_component(buf);
}

/* stat, ls, mkdir, rm, mv, sync, get -r and put -r: one operation per
   operand (stat, mkdir, rm) or one for the lot. */
static int expand_tree_group(const group *gr, int k, char **words, client_args *a)
{
    const char *w0 = gr->n > 0 ? words[gr->first] : NULL;
    const char *w1 = gr->n > 1 ? words[gr->first + 1] : NULL;
    op base = {.kind = gr->kind, .group = k, .flags = gr->flags};
    char tmp[4096];
    switch (gr->kind) {
    case OP_GET: /* get -r DIR [LOCAL] */
        if (gr->n < 1 || gr->n > 2 || (w1 && gr->to))
            return usage_error("get -r takes one remote DIR and at most one LOCAL directory"
                               " (or --to LOCAL)",
                               NULL);
        base.kind = OP_GETR;
        base.name = w0;
        base.local = w1 ? w1 : gr->to ? gr->to : last_component(w0);
        if (check_path("get -r", w0, 0) != PARSE_RUN)
            return EXIT_USAGE;
        break;
    case OP_PUT: /* put -r LOCALDIR [DIR] */
        if (gr->n < 1 || gr->n > 2 || (w1 && gr->as))
            return usage_error("put -r takes one LOCALDIR and at most one remote DIR"
                               " (or --as DIR)",
                               NULL);
        base.kind = OP_PUTR;
        base.local = w0;
        base.name = w1 ? w1 : gr->as ? gr->as : NULL;
        if (!base.name) { /* its last component, kept with the words */
            const char *b = dir_base(w0, tmp, sizeof tmp);
            char *copy = strdup(b);
            if (!copy)
                return usage_error("out of memory", NULL);
            base.owned = copy; /* freed with the operations */
            base.name = copy;
        }
        if (check_path("put -r", base.name, 1) != PARSE_RUN)
            return EXIT_USAGE;
        break;
    case OP_LS:
        if (gr->n > 1)
            return usage_error("ls and list take at most one DIR, not also", w1);
        base.name = w0 ? w0 : "";
        if (check_path("ls", base.name, 1) != PARSE_RUN)
            return EXIT_USAGE;
        break;
    case OP_MV:
        if (gr->n != 2)
            return usage_error("mv takes FROM and TO", NULL);
        base.name = w0;
        base.to = w1;
        if (check_path("mv", w0, 0) != PARSE_RUN || check_path("mv", w1, 0) != PARSE_RUN)
            return EXIT_USAGE;
        break;
    case OP_SYNC: {
        if (gr->n != 2)
            return usage_error("sync takes SRC and DST, one of them :REMOTE (sync photos"
                               " :backup/photos pushes, sync :backup/photos photos pulls)",
                               NULL);
        int r0 = w0[0] == ':', r1 = w1[0] == ':';
        if (r0 == r1)
            return usage_error(r0 ? "sync: one side must be local, not both :REMOTE"
                                  : "sync: write the server's side with a leading ':'"
                                    " (sync photos :backup/photos)",
                               NULL);
        base.push = r1;
        base.local = r1 ? w0 : w1;
        base.name = r1 ? w1 + 1 : w0 + 1;
        base.to = w1;
        if (check_path("sync", base.name, 1) != PARSE_RUN)
            return EXIT_USAGE;
        break;
    }
    default: /* stat, mkdir, rm: each operand */
        if (gr->n == 0)
            return usage_error(gr->kind == OP_STAT    ? "stat needs a PATH"
                               : gr->kind == OP_MKDIR ? "mkdir needs a DIR"
                                                      : "rm needs a PATH",
                               NULL);
        for (int i = 0; i < gr->n; i++) {
            op *o = &a->ops[a->nops++];
            *o = base;
            o->name = words[gr->first + i];
            if (check_path(gr->kind == OP_STAT ? "stat" : gr->kind == OP_MKDIR ? "mkdir" : "rm",
                           o->name, 0) != PARSE_RUN)
                return EXIT_USAGE;
        }
        return PARSE_RUN;
    }
    a->ops[a->nops++] = base;
    return PARSE_RUN;
}

/* Splits the groups into single-file operations, checking each. Returns
   PARSE_RUN or a status. */
static int expand_groups(const group *g, size_t ngroups, char **words, client_args *a)
{
    int stdin_used = 0, get_before = 0;
    for (size_t k = 0; k < ngroups; k++) {
        const group *gr = &g[k];
        if ((gr->flags & F_RECURSIVE) && ((gr->flags & F_IF_ABSENT) || gr->has_if_match))
            return usage_error("--if-absent and --if-match go with put of single files,"
                               " not put -r",
                               NULL);
        group as_ls;
        if (gr->kind == OP_LIST && (gr->n > 0 || (gr->flags & F_RECURSIVE))) {
            /* list DIR, list -r: the tree's listing (ls); a bare list keeps
               the root's files in the old format */
            as_ls = *gr;
            as_ls.kind = OP_LS;
            gr = &as_ls;
        }
        if (gr->kind >= OP_STAT || (gr->flags & F_RECURSIVE)) {
            int st = expand_tree_group(gr, (int)k, words, a);
            if (st != PARSE_RUN)
                return st;
            continue;
        }
        if (gr->flags & (F_DRY_RUN | F_CHECKSUM))
            return usage_error(gr->kind == OP_GET ? "--dry-run and --checksum need get -r"
                                                  : "--dry-run and --checksum need put -r",
                               NULL);
        if (gr->kind == OP_LIST) {
            a->ops[a->nops++] = (op){.kind = OP_LIST};
            continue;
        }
        if (gr->kind == OP_GET) {
            get_before = 1;
            if (gr->n == 0)
                return usage_error("get needs a NAME", NULL);
            if (gr->n > 1 && gr->to && strcmp(gr->to, "-") != 0 && !is_dir_target(gr->to))
                return usage_error("get of several NAMEs needs --to DIRECTORY/ (an existing"
                                   " directory, or a path ending in \"/\"), not",
                                   gr->to);
            for (int i = 0; i < gr->n; i++) {
                op *o = &a->ops[a->nops++];
                *o = (op){.kind = OP_GET, .name = words[gr->first + i], .local = gr->to,
                          .group = (int)k};
                o->renamed = gr->to && gr->n == 1 && !is_dir_target(gr->to);
                if (strcmp(o->name, "-") == 0)
                    return usage_error("\"-\" is not a remote NAME; to write to standard"
                                       " output: get NAME --to -",
                                       NULL);
                if (check_name(o) != PARSE_RUN)
                    return EXIT_USAGE;
            }
            continue;
        }
        /* put */
        if (gr->n == 0)
            return usage_error("put needs a LOCAL file", NULL);
        if (gr->as && gr->n > 1)
            return usage_error("--as NAME renames a single LOCAL file; several are each"
                               " uploaded under their own name, so drop --as before",
                               gr->as);
        for (int i = 0; i < gr->n; i++) {
            op *o = &a->ops[a->nops++];
            const char *local = words[gr->first + i];
            *o = (op){.kind = OP_PUT, .local = local, .renamed = gr->as != NULL,
                      .flags = gr->flags, .group = (int)k, .has_if_match = gr->has_if_match};
            memcpy(o->if_match, gr->if_match, sizeof o->if_match); /* the groups are freed */
            o->name = gr->as ? gr->as : last_component(local);
            if (strcmp(local, "-") == 0) {
                if (!gr->as)
                    return usage_error("put - (standard input) needs --as NAME", NULL);
                if (stdin_used++)
                    return usage_error("standard input can be uploaded only once", NULL);
            }
            if (check_name(o) != PARSE_RUN)
                return EXIT_USAGE;
            struct stat st;
            /* A missing file is said before connecting: often a second
               word meant as a new name, which is --as now. Not when
               --keep-going should send the others, nor when a get before
               it may create it. */
            if (!a->keep_going && !get_before && strcmp(local, "-") != 0 &&
                stat(local, &st) != 0 && errno == ENOENT) {
                if (i > 0 && tf_name_check(local, NAME_MAX_ANY, NULL) == TF_OK)
                    fprintf(stderr,
                            PROG ": put \"%s\": no such local file; nothing was sent (to"
                                 " upload %s under another name: put %s --as %s)\n",
                            local, words[gr->first + i - 1], words[gr->first + i - 1],
                            local);
                else
                    fprintf(stderr, PROG ": put \"%s\": no such local file; nothing was sent\n",
                            local);
                return EXIT_NOENT;
            }
        }
    }
    return PARSE_RUN;
}

enum {
    OPT_TIMEOUT = 256,
    OPT_HELP,
    OPT_VERSION,
    OPT_RESUME,
    OPT_NO_RESUME,
    OPT_NO_CHECKSUM,
    OPT_NO_CLOBBER,
    OPT_LIMIT_RATE,
    OPT_TO,
    OPT_AS,
    OPT_PIN,
    OPT_CA,
    OPT_ACCEPT_NEW,
    OPT_KNOWN_HOSTS,
    OPT_PLAINTEXT,
    OPT_USER,
    OPT_TOKEN_FILE,
    OPT_CERT,
    OPT_KEY,
    OPT_RECURSIVE,
    OPT_PARENTS,
    OPT_NO_OVERWRITE,
    OPT_DELETE,
    OPT_DRY_RUN,
    OPT_CHECKSUM,
    OPT_IF_ABSENT,
    OPT_IF_MATCH
};

typedef struct optdef {
    const char *lng;
    char shrt;
    int has_arg;
    int id;
} optdef;

static const optdef optdefs[] = {
    {"timeout", 0, 1, OPT_TIMEOUT},
    {"human", 'H', 0, 'H'},
    {"human-readable", 0, 0, 'H'}, /* the old spelling */
    {"quiet", 'q', 0, 'q'},
    {"verbose", 'v', 0, 'v'},
    {"resume", 0, 0, OPT_RESUME},
    {"no-resume", 0, 0, OPT_NO_RESUME},
    {"no-clobber", 0, 0, OPT_NO_CLOBBER},
    {"force", 'f', 0, 'f'},
    {"keep-going", 'k', 0, 'k'},
    {"limit-rate", 0, 1, OPT_LIMIT_RATE},
    {"no-checksum", 0, 0, OPT_NO_CHECKSUM},
    {"to", 0, 1, OPT_TO},
    {"as", 0, 1, OPT_AS},
    {"pin", 0, 1, OPT_PIN},
    {"ca", 0, 1, OPT_CA},
    {"accept-new", 0, 0, OPT_ACCEPT_NEW},
    {"known-hosts", 0, 1, OPT_KNOWN_HOSTS},
    {"plaintext", 0, 0, OPT_PLAINTEXT},
    {"user", 0, 1, OPT_USER},
    {"token-file", 0, 1, OPT_TOKEN_FILE},
    {"cert", 0, 1, OPT_CERT},
    {"key", 0, 1, OPT_KEY},
    {"recursive", 'r', 0, OPT_RECURSIVE},
    {"parents", 'p', 0, OPT_PARENTS},
    {"no-overwrite", 0, 0, OPT_NO_OVERWRITE},
    {"delete", 0, 0, OPT_DELETE},
    {"dry-run", 'n', 0, OPT_DRY_RUN},
    {"checksum", 'c', 0, OPT_CHECKSUM},
    {"if-absent", 0, 0, OPT_IF_ABSENT},
    {"if-match", 0, 1, OPT_IF_MATCH},
    {"help", 'h', 0, OPT_HELP},
    {"version", 0, 0, OPT_VERSION},
};

/* The tree's flags belong to the operation word before them: -r to get,
   put, ls and rm; -p to mkdir and put; --no-overwrite to mv; --delete to
   sync; --dry-run and --checksum to sync, get -r and put -r. */
static int apply_tree_flag(const optdef *d, group *cur)
{
    static const struct {
        int id;
        unsigned flag;
        unsigned kinds; /* 1 << op_kind */
        const char *where;
    } rules[] = {
        {OPT_RECURSIVE, F_RECURSIVE,
         1u << OP_GET | 1u << OP_PUT | 1u << OP_LIST | 1u << OP_LS | 1u << OP_RM,
         "-r goes after get, put, list, ls or rm"},
        {OPT_PARENTS, F_PARENTS, 1u << OP_MKDIR | 1u << OP_PUT, "-p goes after mkdir or put"},
        {OPT_NO_OVERWRITE, F_NO_OVERWRITE, 1u << OP_MV, "--no-overwrite goes after mv"},
        {OPT_DELETE, F_DELETE, 1u << OP_SYNC, "--delete goes after sync"},
        {OPT_DRY_RUN, F_DRY_RUN, 1u << OP_SYNC | 1u << OP_GET | 1u << OP_PUT,
         "--dry-run goes after sync, get -r or put -r"},
        {OPT_CHECKSUM, F_CHECKSUM, 1u << OP_SYNC | 1u << OP_GET | 1u << OP_PUT,
         "--checksum goes after sync, get -r or put -r"},
        {OPT_IF_ABSENT, F_IF_ABSENT, 1u << OP_PUT, "--if-absent goes after put"},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (rules[i].id != d->id)
            continue;
        if (!cur || !(rules[i].kinds & 1u << cur->kind))
            return usage_error(rules[i].where, NULL);
        cur->flags |= rules[i].flag;
    }
    return PARSE_RUN;
}

/* Applies one option; cur is the operation being written (NULL before the
   first). Returns PARSE_RUN, or the status to exit with (EXIT_OK for
   --help and --version). */
static int apply_option(const optdef *d, const char *val, group *cur, client_args *a)
{
    int64_t v;
    switch (d->id) {
    case 'H':
        a->human = 1;
        break;
    case 'q': /* the last of -q and -v wins */
        a->verbosity = QUIET;
        break;
    case 'v':
        a->verbosity = VERBOSE;
        break;
    case 'f':
        a->force = 1;
        break;
    case 'k':
        a->keep_going = 1;
        break;
    case OPT_TIMEOUT:
        return set_timeout(a->opt, val);
    case OPT_RESUME:
    case OPT_NO_RESUME:
        a->resume = d->id == OPT_RESUME;
        tf_options_set(a->opt, TF_OPT_RESUME, a->resume);
        break;
    case OPT_NO_CHECKSUM:
        tf_options_set(a->opt, TF_OPT_CHECKSUM, 0);
        break;
    case OPT_NO_CLOBBER:
        a->no_clobber = 1;
        break;
    case OPT_LIMIT_RATE:
        if (cli_parse_number(val, 1, &v) != 0 || v == 0)
            return usage_error("--limit-rate needs bytes per second (K, M, G allowed), not",
                               val);
        a->rate = (double)v;
        break;
    case OPT_TO:
    case OPT_AS:
        if (!cur || cur->kind != (d->id == OPT_TO ? OP_GET : OP_PUT))
            return usage_error(d->id == OPT_TO ? "--to PATH goes after get NAME..., not"
                                               : "--as NAME goes after put LOCAL, not",
                               val);
        if (*(d->id == OPT_TO ? &cur->to : &cur->as))
            return usage_error(d->id == OPT_TO ? "one --to per get, not also"
                                               : "one --as per put, not also",
                               val);
        *(d->id == OPT_TO ? &cur->to : &cur->as) = val;
        break;
    case OPT_PIN:
    case OPT_CA:
    case OPT_KNOWN_HOSTS:
        if (d->id == OPT_PIN && strncmp(val, "SHA256:", 7) != 0)
            return usage_error("--pin needs the server's SHA256:... fingerprint, not", val);
        if (tf_options_set_string(a->opt,
                                  d->id == OPT_PIN  ? TF_SOPT_TLS_PIN
                                  : d->id == OPT_CA ? TF_SOPT_TLS_CA
                                                    : TF_SOPT_KNOWN_HOSTS,
                                  val) != TF_OK)
            return usage_error("value too long:", val);
        break;
    case OPT_ACCEPT_NEW:
        tf_options_set(a->opt, TF_OPT_TLS_ACCEPT_NEW, 1);
        break;
    case OPT_PLAINTEXT:
        tf_options_set(a->opt, TF_OPT_TLS, 0);
        break;
    case OPT_USER:
        a->user = val;
        break;
    case OPT_TOKEN_FILE:
        a->token_file = val;
        break;
    case OPT_CERT:
        a->cert_file = val;
        break;
    case OPT_KEY:
        a->key_file = val;
        break;
    case OPT_RECURSIVE:
    case OPT_PARENTS:
    case OPT_NO_OVERWRITE:
    case OPT_DELETE:
    case OPT_DRY_RUN:
    case OPT_CHECKSUM:
    case OPT_IF_ABSENT:
        return apply_tree_flag(d, cur);
    case OPT_IF_MATCH: /* 32 hex digits, as stat prints them */
        if (!cur || cur->kind != OP_PUT)
            return usage_error("--if-match DIGEST goes after put LOCAL, not", val);
        for (int i = 0; i < 16; i++) {
            unsigned byte;
            if (strlen(val) != 32 || !isxdigit((unsigned char)val[2 * i]) ||
                !isxdigit((unsigned char)val[2 * i + 1]) ||
                sscanf(val + 2 * i, "%2x", &byte) != 1)
                return usage_error("--if-match takes the 32 hex digits of a digest"
                                   " (as stat prints it), not",
                                   val);
            cur->if_match[i] = (uint8_t)byte;
        }
        cur->has_if_match = 1;
        break;
    case OPT_HELP:
        usage(stdout);
        return EXIT_OK;
    case OPT_VERSION:
        printf(PROG " %s\n", tf_version_string());
        return EXIT_OK;
    }
    return PARSE_RUN;
}

/* ---- logging in ---------------------------------------------------------- */

/* Reads the token from FILE's first line into buf. As ssh does with keys,
   a file that group or others may read is refused: the token would be as
   good as theirs. Returns PARSE_RUN, or the status after saying why. */
/* 0 when a secret's file (what: "token", "key") is for its owner only;
   else says why and returns -1. */
static int secret_mode_ok(const char *flag, const char *what, const char *path,
                          const struct stat *st)
{
    if (!(st->st_mode & 077))
        return 0;
    fprintf(stderr,
            PROG
            ": %s %s: readable by others (mode %04o); the %s is not used: chmod 600 %s\n",
            flag, path, (unsigned)(st->st_mode & 07777), what, path);
    return -1;
}

static int read_token_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, PROG ": --token-file %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return EXIT_FAILED;
    }
    if (secret_mode_ok("--token-file", "token", path, &st) != 0) {
        fclose(f);
        return EXIT_FAILED;
    }
    if (!fgets(buf, (int)cap, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return PARSE_RUN;
}

/* --cert FILE --key FILE into the options: both or neither, and a key
   that group and others cannot read (as the token file). */
static int set_client_cert(client_args *a)
{
    if (!a->cert_file && !a->key_file)
        return PARSE_RUN;
    if (!a->cert_file || !a->key_file)
        return usage_error(a->cert_file ? "--cert FILE needs --key FILE"
                                        : "--key FILE needs --cert FILE",
                           NULL);
    struct stat st;
    if (stat(a->key_file, &st) != 0) {
        fprintf(stderr, PROG ": --key %s: %s\n", a->key_file, strerror(errno));
        return EXIT_FAILED;
    }
    if (secret_mode_ok("--key", "key", a->key_file, &st) != 0)
        return EXIT_FAILED;
    if (tf_options_set_string(a->opt, TF_SOPT_TLS_CLIENT_CERT, a->cert_file) != TF_OK ||
        tf_options_set_string(a->opt, TF_SOPT_TLS_CLIENT_KEY, a->key_file) != TF_OK)
        return usage_error("--cert or --key: the path is too long:", a->cert_file);
    return PARSE_RUN;
}

/* --user NAME with its token (TCPFILE_TOKEN, or --token-file) into the
   options. Returns PARSE_RUN, or the status after saying why. */
static int set_credentials(client_args *a)
{
    if (!a->user) {
        if (a->token_file)
            return usage_error("--token-file needs --user NAME", NULL);
        return PARSE_RUN;
    }
    char token[1024] = "";
    int status = PARSE_RUN;
    const char *env = getenv("TCPFILE_TOKEN");
    if (a->token_file)
        status = read_token_file(a->token_file, token, sizeof token);
    else if (env)
        snprintf(token, sizeof token, "%s", env);
    else
        status = usage_error("--user needs a token: set TCPFILE_TOKEN, or give"
                             " --token-file FILE", NULL);
    if (status == PARSE_RUN && !token[0])
        status = usage_error("the token is empty; it is the line tcpfile-server"
                             " --add-user printed", NULL);
    if (status == PARSE_RUN && (tf_options_set_string(a->opt, TF_SOPT_USER, a->user) != TF_OK ||
                                tf_options_set_string(a->opt, TF_SOPT_TOKEN, token) != TF_OK))
        status = usage_error("--user NAME or its token is too long:", a->user);
    /* The options hold their own copy (wiped when freed). */
    volatile char *v = token;
    for (size_t i = 0; i < sizeof token; i++)
        v[i] = 0;
    return status;
}

/* Parses argv[*i], an option word (it starts with '-' and is not "-" or
   "--"), taking its value from the next word when needed. */
static int parse_option(int argc, char **argv, int *i, group *cur, client_args *a)
{
    const char *w = argv[*i];
    const size_t ndefs = sizeof optdefs / sizeof optdefs[0];
    if (w[1] == '-') {
        const char *eq = strchr(w + 2, '=');
        size_t len = eq ? (size_t)(eq - w - 2) : strlen(w + 2);
        for (size_t k = 0; k < ndefs; k++) {
            const optdef *d = &optdefs[k];
            if (strlen(d->lng) != len || strncmp(d->lng, w + 2, len) != 0)
                continue;
            if (!d->has_arg && eq)
                return usage_error("option takes no value:", w);
            const char *val = eq ? eq + 1 : NULL;
            if (d->has_arg && !val) {
                if (*i + 1 >= argc)
                    return usage_error("missing value for option", w);
                val = argv[++*i];
            }
            return apply_option(d, val, cur, a);
        }
        char shown[128];
        snprintf(shown, sizeof shown, "%.*s", (int)(eq ? (size_t)(eq - w) : strlen(w)), w);
        return usage_error("unknown option", shown);
    }
    /* A cluster of short flags: -qH. */
    for (const char *c = w + 1; *c; c++) {
        const optdef *d = NULL;
        for (size_t k = 0; k < ndefs && !d; k++)
            if (optdefs[k].shrt == *c)
                d = &optdefs[k];
        if (!d) {
            char shown[3] = {'-', *c, '\0'};
            return usage_error("unknown option", shown);
        }
        int status = apply_option(d, NULL, cur, a);
        if (status != PARSE_RUN)
            return status;
    }
    return PARSE_RUN;
}

/* The host-check callback: on a terminal, the user decides about a server
   not yet known (ssh's question); elsewhere it is refused, and the error
   says how to accept it. */
static int ask_on_terminal(void *user, const char *host, int port, const char *fp)
{
    (void)user;
    if (!isatty(STDERR_FILENO))
        return 0;
    FILE *tty = fopen("/dev/tty", "r");
    if (!tty)
        return 0;
    fprintf(stderr,
            "The authenticity of server %s port %d can't be established.\n"
            "Its key fingerprint is %s.\n"
            "Are you sure you want to continue connecting (yes/no)? ",
            host, port, fp);
    char line[64] = "";
    int yes = fgets(line, sizeof line, tty) && strcmp(line, "yes\n") == 0;
    fclose(tty);
    if (yes)
        fprintf(stderr, PROG ": server %s port %d recorded as known\n", host, port);
    return yes;
}

/* Fills *a from argv. Returns PARSE_RUN, or the status to exit with. The
   caller frees a->opt and a->ops in every case. */
static int parse_args(int argc, char **argv, client_args *a)
{
    memset(a, 0, sizeof *a);
    a->verbosity = NORMAL;
    a->port = DEFAULT_PORT;
    if (tf_options_new(&a->opt) != TF_OK) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    /* TLS unless --plaintext; an unknown server is asked about on a
       terminal, as ssh does. */
    tf_options_set(a->opt, TF_OPT_TLS, 1);
    tf_options_set_host_check(a->opt, ask_on_terminal, NULL);
    /* The first request goes right behind the hello, one round trip
       sooner (the library waits for the hello itself with --user). */
    tf_options_set(a->opt, TF_OPT_EARLY_REQUESTS, 1);
    /* A whole tree batch (TREE_BATCH) on the wire at once: the server
       makes a pipelined batch durable together, at most 256 puts a group,
       and reads the next group's puts as soon as one is committed, so the
       window must hold several groups (with one group's worth, each
       commit waited for the client and the client for the commit). */
    tf_options_set(a->opt, TF_OPT_PIPELINE, 1024);
    /* --resume by default, for those who want every interruption to be
       continued later; --no-resume overrides it. */
    const char *env = getenv("TCPFILE_RESUME");
    if (env && strcmp(env, "1") == 0) {
        a->resume = 1;
        tf_options_set(a->opt, TF_OPT_RESUME, 1);
    }
    /* Every operation has at least one word, so argc bounds them all. */
    group *groups = calloc((size_t)argc + 1, sizeof *groups);
    char **words = calloc((size_t)argc + 1, sizeof *words);
    a->ops = calloc((size_t)argc + 1, sizeof *a->ops);
    if (!groups || !words || !a->ops) {
        free(groups);
        free(words);
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    size_t ngroups = 0;
    int nwords = 0, options_done = 0, port_given = 0, status = PARSE_RUN;
    char *url_name = NULL;
    for (int i = 1; i < argc && status == PARSE_RUN; i++) {
        const char *w = argv[i];
        group *cur = ngroups ? &groups[ngroups - 1] : NULL;
        if (!options_done && strcmp(w, "--") == 0) {
            options_done = 1;
        } else if (!options_done && w[0] == '-' && w[1] != '\0') {
            status = parse_option(argc, argv, &i, cur, a);
        } else if (!a->host) {
            const char *before = a->port;
            status = parse_host(w, a, &url_name);
            port_given = a->port != before;
            if (status == PARSE_RUN && url_name) { /* get NAME, open to --to */
                words[nwords] = url_name;
                groups[ngroups++] = (group){.kind = OP_GET, .first = nwords++, .n = 1};
            }
        } else if (!port_given && !ngroups && !url_name && w[0] >= '0' && w[0] <= '9') {
            int64_t v;
            if (cli_parse_int(w, 1, 65535, &v) != 0)
                status = usage_error("PORT must be a number from 1 to 65535, not", w);
            a->port = w;
            port_given = 1;
        } else if (is_keyword(w)) {
            if (url_name) {
                status = usage_error("a URL with a NAME is an operation itself; no more"
                                     " operations after it, not",
                                     w);
                break;
            }
            groups[ngroups++] = (group){.kind = (op_kind)keyword_kind(w), .first = nwords};
        } else if (!cur) {
            status = usage_error("unknown operation (expected get, put, list, stat, ls,"
                                 " mkdir, rm, mv or sync):",
                                 w);
        } else if (url_name) {
            status = usage_error("a URL names its one file; no more NAMEs after it, not", w);
        } else {
            words[nwords++] = argv[i];
            cur->n++;
        }
    }
    if (status == PARSE_RUN && !a->host)
        status = usage_error("missing HOST and operation", NULL);
    if (status == PARSE_RUN && ngroups == 0)
        status = usage_error("missing operation (get, put, list, stat, ls, mkdir, rm, mv"
                             " or sync)",
                             NULL);
    if (status == PARSE_RUN)
        status = expand_groups(groups, ngroups, words, a);
    /* A tree transfer always keeps what a file cut off moved, so that the
       same command run again continues where it stopped. */
    for (size_t k = 0; status == PARSE_RUN && k < a->nops; k++)
        if (a->ops[k].kind == OP_GETR || a->ops[k].kind == OP_PUTR || a->ops[k].kind == OP_SYNC) {
            a->resume = 1;
            tf_options_set(a->opt, TF_OPT_RESUME, 1);
        }
    if (status == PARSE_RUN)
        status = set_credentials(a);
    if (status == PARSE_RUN)
        status = set_client_cert(a);
    free(groups);
    free(words);
    return status;
}

/* ---- formatting ------------------------------------------------------------ */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "512 B", "1.5 KiB", "23 MiB": three significant figures at most. */
static void format_size(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(buf, len, "%" PRIu64 " B", n);
        return;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    /* Move up a unit before the value would print as 1024. */
    while (v >= 1023.5 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (v < 9.95)
        snprintf(buf, len, "%.1f %s", v, units[u]);
    else
        snprintf(buf, len, "%.0f %s", v, units[u]);
}

/* "0:07", "12:34", "1:02:03"; "--:--" when unknown or absurd. */
static void format_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0 && s < 100.0 * 3600)) {
        snprintf(buf, len, "--:--");
        return;
    }
    unsigned t = (unsigned)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%u:%02u:%02u", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%u:%02u", t / 60, t % 60);
}

/* ISO 8601 UTC ("2001-02-03T04:05:06Z") or, for people, local time
   ("2001-02-03 05:05"); the raw number if the C library cannot represent
   the time. */
static void format_mtime(int64_t t, int human, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    int ok = (int64_t)tt == t && (human ? localtime_r(&tt, &tm) : gmtime_r(&tt, &tm));
    if (!ok ||
        strftime(buf, len, human ? "%Y-%m-%d %H:%M" : "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "%" PRId64, t);
}

/* ---- the progress bar ---------------------------------------------------------- */

static int terminal_columns(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

/* Erases the bar, so that the next line starts on a clean row. Spaces
   rather than an escape sequence: that works on every terminal. */
static void bar_erase(progress *p)
{
    if (!p->drawn)
        return;
    fprintf(stderr, "\r%*s\r", p->drawn, "");
    p->drawn = 0;
}

/* Appends at most max columns of s to buf, cut at a UTF-8 character
   boundary with "..." when it does not fit. Returns the columns used
   (counting one per character, which is right for most scripts). */
static int append_label(char *buf, size_t len, const char *s, int max)
{
    size_t o = strlen(buf);
    int cols = 0, need = 0;
    for (const char *q = s; *q; q++)
        need += ((unsigned char)*q & 0xC0) != 0x80;
    int limit = need <= max ? max : max - 3;
    for (; *s && o + 5 < len; s++) {
        int starts = ((unsigned char)*s & 0xC0) != 0x80;
        if (starts && cols == limit)
            break;
        cols += starts;
        buf[o++] = *s;
    }
    buf[o] = '\0';
    if (need > max && limit >= 0 && o + 4 < len) {
        memcpy(buf + o, "...", 4);
        cols += 3;
    }
    return cols;
}

/* Draws "get big.iso [#####     ]  45%  1.2 GiB / 2.7 GiB  98 MiB/s  ETA 0:16",
   fitted to the terminal's width (the bar shrinks, then the label). */
static void bar_draw(progress *p, double now)
{
    char stats[160], done[32], total[32], rate[32], eta[16];
    double elapsed = now - p->start;
    double bps = elapsed > 0 ? (double)(p->done - p->first) / elapsed : 0;
    format_size(p->done, done, sizeof done);
    format_size((uint64_t)bps, rate, sizeof rate);
    if (p->total > 0) {
        format_size(p->total, total, sizeof total);
        format_duration(bps > 0 ? (double)(p->total - p->done) / bps : -1, eta, sizeof eta);
        snprintf(stats, sizeof stats, " %3d%%  %s / %s  %s/s  ETA %s",
                 (int)(p->done * 100 / p->total), done, total, rate, eta);
    } else {
        snprintf(stats, sizeof stats, "  %s  %s/s", done, rate);
    }
    /* One column short of the width, so the cursor never wraps. */
    int width = terminal_columns() - 1;
    int room = width - (int)strlen(stats);
    int bar = room - 24 >= 10 ? (room - 24 < 40 ? room - 24 : 40) : 0;
    char line[512] = "";
    int label_max = room - (bar ? bar + 3 : 1);
    int used = label_max > 4 ? append_label(line, sizeof line, p->label, label_max) : 0;
    size_t o = strlen(line);
    if (bar) {
        int filled = p->total ? (int)((double)bar * (double)p->done / (double)p->total) : 0;
        o += (size_t)snprintf(line + o, sizeof line - o, " [");
        for (int i = 0; i < bar && o + 2 < sizeof line; i++)
            line[o++] = i < filled ? '#' : ' ';
        line[o++] = ']';
        line[o] = '\0';
        used += bar + 3;
    }
    snprintf(line + o, sizeof line - o, "%s", stats);
    used += (int)strlen(stats);
    /* Pad over whatever a longer previous drawing left. */
    int pad = p->drawn > used ? p->drawn - used : 0;
    fprintf(stderr, "\r%s%*s", line, pad, "");
    p->drawn = used + pad;
    p->last_draw = now;
}


/* Sleeps up to s seconds; a signal cuts it short. */
static void nap(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static int tree_progress(progress *p, size_t index, uint64_t done);

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    progress *p = user;
    if (p->tree)
        return tree_progress(p, 0, done);
    p->done = done;
    p->total = total;
    /* Cancelling lets the library clean up: a get removes its temporary,
       or keeps it for --resume; the connection is closed. */
    if (g_signal)
        return 1;
    double now = now_seconds();
    /* Timing starts at the first callback, when the data starts moving:
       spooling standard input for a put happens before it. */
    if (!p->started) {
        p->started = 1;
        p->start = now;
        p->first = done;
        /* A resumed transfer's first report starts at what was there. */
        if (p->talk && done > 0 && done == total) {
            fprintf(stderr, PROG ": %s: already complete\n", p->what);
        } else if (p->talk && done > 0) {
            char at[32], of[32];
            format_size(done, at, sizeof at);
            format_size(total, of, sizeof of);
            fprintf(stderr, PROG ": %s: resuming at %s of %s\n", p->what, at, of);
        } else if (p->talk && p->had > 0)
            fprintf(stderr, PROG ": %s: changed on the server (shorter than the %" PRIu64
                                " bytes kept), starting over\n",
                    p->what, p->had);
        return 0;
    }
    if (p->rate > 0) {
        double due = p->start + (double)(done - p->first) / p->rate;
        if (due > now) {
            nap(due - now);
            if (g_signal)
                return 1;
            now = now_seconds();
        }
    }
    if (p->bar_enabled && now - p->start >= BAR_DELAY && now - p->last_draw >= BAR_PERIOD)
        bar_draw(p, now);
    return 0;
}

/* ---- running -------------------------------------------------------------- */

static void on_signal(int sig)
{
    g_signal = sig;
}

/* SA_RESETHAND: the first Ctrl-C stops at the next block and cleans up;
   a second one (say the server stalls) takes the default action at once.
   No SA_RESTART, so that a pause of --limit-rate ends early. */
static void set_handlers(void)
{
    static const int sigs[] = {SIGINT, SIGTERM};
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        /* A signal ignored when we started (a background job of a script,
           nohup) stays ignored, as the shell meant. */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
    }
}

/* Returns 0, or -1 with errno set when standard output fails (a full disk,
   a closed pipe). */
static int print_listing(const tf_listing *l, int human)
{
    size_t n = tf_listing_count(l);
    for (size_t i = 0; i < n; i++) {
        const tf_entry *e = tf_listing_at(l, i);
        char when[64];
        format_mtime(e->mtime, human, when, sizeof when);
        /* Names cannot hold tabs or newlines (tf_name_check refuses control
           characters), so the columns are unambiguous. */
        if (human) {
            char size[32];
            format_size(e->size, size, sizeof size);
            printf("%10s  %s  %s\n", size, when, e->name);
        } else {
            printf("%" PRIu64 "\t%s\t%s\n", e->size, when, e->name);
        }
    }
    return fflush(stdout) == 0 ? 0 : -1;
}

/* The file a get writes (as the library resolves it: LOCAL, LOCAL/NAME
   for a directory, ./NAME without LOCAL) into buf; 0 when it writes to
   standard output. */
static int get_target(const op *o, char *buf, size_t len)
{
    struct stat st;
    /* get a/b.txt saves ./b.txt: the path's last component. */
    const char *path = o->local ? o->local : last_component(o->name);
    if (strcmp(path, "-") == 0 && o->local)
        return 0;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        snprintf(buf, len, "%s%s%s", path, n && path[n - 1] == '/' ? "" : "/",
                 last_component(o->name));
    } else {
        snprintf(buf, len, "%s", path);
    }
    return 1;
}

/* The outcome of one operation. */
typedef struct outcome {
    int rc;         /* TF_OK or the failure */
    int local;      /* the failure is on this machine's side */
    char why[8448]; /* our own detail (not tf_errmsg), "" if none */
    size_t files;   /* list: how many */
    nlink_t links;  /* get: hard links the replaced file had */
    off_t src_size; /* put: the source's size before, -1 if unknown */
    const char *msg; /* a batch item's detail from the library; NULL:
                        tf_errmsg */
} outcome;

static void reset_outcome(outcome *out)
{
    out->src_size = -1;
    out->rc = TF_OK;
    out->local = 0;
    out->why[0] = '\0';
    out->files = 0;
    out->links = 0;
    out->msg = NULL;
}

/* Local checks before a get replaces a file: --no-clobber, and a
   read-only file (which rename would replace silently) needs --force. */
static int check_clobber_local(const client_args *a, const op *o, outcome *out)
{
    char target[8192];
    struct stat st;
    if (!get_target(o, target, sizeof target) || stat(target, &st) != 0 ||
        !S_ISREG(st.st_mode))
        return 0;
    out->links = st.st_nlink;
    if (a->no_clobber) {
        snprintf(out->why, sizeof out->why, "\"%s\" exists; not replaced (--no-clobber)",
                 target);
    } else if (!a->force && (!(st.st_mode & 0222) || access(target, W_OK) != 0)) {
        snprintf(out->why, sizeof out->why,
                 "\"%s\" is read-only; not replaced (--force replaces it, keeping its mode)",
                 target);
    } else {
        return 0;
    }
    out->rc = TF_EEXIST;
    out->local = 1;
    return -1;
}

/* --no-clobber on put: the server's names, fetched once per run. */
static int check_clobber_remote(tf_client *c, tf_listing **names, const op *o, outcome *out)
{
    if (!*names) {
        int rc = tf_list(c, names);
        if (rc != TF_OK) {
            out->rc = rc;
            return -1;
        }
    }
    for (size_t i = 0; i < tf_listing_count(*names); i++) {
        if (strcmp(tf_listing_at(*names, i)->name, o->name) == 0) {
            snprintf(out->why, sizeof out->why,
                     "the server has \"%s\" already; not replaced (--no-clobber)", o->name);
            out->rc = TF_EEXIST;
            return -1;
        }
    }
    return 0;
}

static int breaks_connection(int rc);

/* ---- the tree: stat, ls, mkdir, rm, mv, get -r, put -r, sync -------------- */

/* Files per tf_get_many / tf_put_many batch: a huge tree never holds more
   than this many requests, names and argument blocks at once. */
#define TREE_BATCH 1024
/* A pull batch's most files: its files are named when it ends. */
#define TREE_PULL_BATCH 256
/* Files from this size go one by one, each resumable (TF_OPT_RESUME): a
   file cut off in the middle continues on the next run. Smaller ones go
   pipelined, and are whole or absent. */
#define TREE_BIG ((uint64_t)4 << 20)
/* Files to compare (same size, other mtime) below this size are pushed in
   the batch with skip-if-same; larger ones ask first, one by one. */
#define TREE_COMPARE_BATCHED ((uint64_t)64 << 10)
/* A pull batch is fetched when it holds this many bytes: its new files
   are named once the batch is over, so this is the most a killed client
   fetches again. */
#define TREE_PULL_BATCH_BYTES ((uint64_t)16 << 20)

/* One tree operation under way: its counts, its first failure and the
   state of its one progress bar. */
typedef struct treerun {
    const client_args *a;
    tf_client *c;
    const op *o;
    progress *p;
    outcome *out;
    char what[8192];
    char label[8400];
    size_t files_total, files_done, sent, same, failed, deleted, made;
    uint64_t bytes_total, bytes_base, bytes_sent;
    size_t cur;        /* the batch item the callback is on, SIZE_MAX: none */
    uint64_t cur_done; /* its bytes so far */
    int stop;          /* a failure that ends the operation (connection, Ctrl-C) */
    unsigned parents;  /* TF_PUT_PARENTS once a directory is left to the puts
                          into it (push_dir_by_puts), else 0 */
    /* A pull's local destination: its root and the directory files are
       being written into, kept open (pull_dir). */
    int root_fd, dir_fd; /* -1: not open */
    char dir_rel[4096];  /* dir_fd's path under the root */
    int dir_used;        /* a queued file goes into dir_fd */
    int no_tmpfile;      /* O_TMPFILE refused: the library's temporaries */
    int link_proc;       /* see tree_tmpfile_link */
    size_t fd_budget;    /* descriptors a pull batch may hold */
} treerun;

/* The progress callbacks' tree mode: one bar for the whole tree (files
   done of all, bytes of all, rate, time left). */
static int tree_progress(progress *p, size_t index, uint64_t done)
{
    treerun *t = p->tree;
    if (g_signal)
        return 1;
    if (index != t->cur || done < t->cur_done) {
        /* The next file: of a batch, or (plain callback, index 0) a
           batch an older server takes one by one. */
        if (t->cur != SIZE_MAX)
            t->bytes_base += t->cur_done;
        t->cur = index;
        t->cur_done = 0;
    }
    t->cur_done = done;
    p->done = t->bytes_base + done;
    p->total = t->bytes_total > p->done ? t->bytes_total : p->done;
    double now = now_seconds();
    if (p->rate > 0) {
        double due = p->start + (double)p->done / p->rate;
        if (due > now) {
            nap(due - now);
            if (g_signal)
                return 1;
            now = now_seconds();
        }
    }
    if (p->bar_enabled && now - p->start >= BAR_DELAY && now - p->last_draw >= BAR_PERIOD) {
        size_t k = t->files_done + index;
        snprintf(t->label, sizeof t->label, "%s %zu/%zu", t->what, k, t->files_total);
        bar_draw(p, now);
    }
    return 0;
}

/* A transfer (or batch) of the tree is over: its bytes count as done. */
static void tree_settle(treerun *t)
{
    if (t->cur != SIZE_MAX)
        t->bytes_base += t->cur_done;
    t->cur = SIZE_MAX;
    t->cur_done = 0;
}

/* One failure inside a tree operation: a line of its own now, the first
   one's code for the operation's status; a failure of the connection or
   Ctrl-C ends the operation. */
static void tree_fail(treerun *t, int rc, int local, const char *verb, const char *path,
                      const char *detail)
{
    bar_erase(t->p);
    t->failed++;
    if (!(rc == TF_ECANCELED && g_signal))
        fprintf(stderr, PROG ": %s: %s \"%s\": %s%s%s%s%s\n", t->what, verb, path,
                rc == TF_ENOENT || rc == TF_EACCES || rc == TF_EIO || rc == TF_ENOSPC ||
                        rc == TF_EEXIST || rc == TF_ENOTDIR || rc == TF_EISDIR
                    ? (local ? "local: " : "server: ")
                    : "",
                tf_strerror(rc), detail && detail[0] ? " (" : "", detail ? detail : "",
                detail && detail[0] ? ")" : "");
    if (t->out->rc == TF_OK) {
        t->out->rc = rc;
        t->out->local = local;
    }
    if (breaks_connection(rc) || g_signal)
        t->stop = 1;
}

/* XXH3-128 of what fd holds from offset 0, canonical (big-endian) form:
   what tf_stat reports, to compare without moving the bytes. Returns 0 or
   -1. */
static int fd_digest(int fd, uint8_t out[16])
{
    XXH3_state_t *st = XXH3_createState();
    int rc = st ? 0 : -1;
    if (st)
        XXH3_128bits_reset(st);
    static char buf[1 << 16];
    ssize_t n;
    off_t at = 0;
    while (rc == 0 && (n = pread(fd, buf, sizeof buf, at)) != 0) {
        if (n < 0) {
            rc = -1;
        } else {
            XXH3_128bits_update(st, buf, (size_t)n);
            at += n;
        }
    }
    if (rc == 0) {
        XXH128_canonical_t can;
        XXH128_canonicalFromHash(&can, XXH3_128bits_digest(st));
        memcpy(out, can.digest, 16);
    }
    XXH3_freeState(st);
    return rc;
}

/* The same of a local file, by its path. */
static int local_digest(const char *path, uint8_t out[16])
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fd_digest(fd, out);
    close(fd);
    return rc;
}

/* Sets a local file's modification time (seconds) without following a
   link, so that the next sync skips it by size and mtime. */
static int set_local_mtime(const char *path, int64_t mtime)
{
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)mtime}};
    return utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

/* The remote tree under dir ("" the root) into *l, sorted; *missing when
   dir does not exist. Returns TF_OK or the failure (reported). */
static int remote_tree(treerun *t, const char *dir, tree_list *l, int *missing)
{
    tf_stat_info si;
    *missing = 0;
    int rc = dir[0] ? tf_stat(t->c, dir, &si) : TF_OK;
    if (rc == TF_ENOENT) {
        *missing = 1;
        return TF_OK;
    }
    if (rc == TF_OK && dir[0] && si.type != TF_FTYPE_DIR)
        rc = TF_ENOTDIR;
    if (rc != TF_OK) {
        tree_fail(t, rc, 0, "list", dir,
                  rc == TF_ENOTDIR ? "a file on the server, not a directory" : tf_errmsg(t->c));
        t->stop = 1;
        return rc;
    }
    tf_dir *d;
    rc = tf_dir_open(t->c, dir, TF_LIST_RECURSIVE, &d);
    const tf_dirent *e;
    while (rc == TF_OK && (rc = tf_dir_next(d, &e)) == TF_OK && e)
        if (tree_list_add(l, e->path, e->type == TF_FTYPE_DIR, e->size, e->mtime) != 0)
            rc = TF_ENOMEM;
    if (rc != TF_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", tf_errmsg(t->c));
        tf_dir_close(d);
        tree_fail(t, rc, rc == TF_ENOMEM, "list", dir[0] ? dir : "/", msg);
        t->stop = 1;
        return rc;
    }
    tf_dir_close(d);
    tree_list_sort(l);
    return TF_OK;
}

static void tree_warn(void *user, const char *path, const char *why)
{
    treerun *t = user;
    if (t->a->verbosity > QUIET) {
        bar_erase(t->p);
        fprintf(stderr, PROG ": %s: skipped \"%s\": %s\n", t->what, path, why);
    }
}

/* --dry-run: what would change, one line each on standard output. */
static void tree_print_plan(const tree_plan *pl)
{
    for (size_t i = 0; i < pl->n; i++) {
        const tree_act *x = &pl->v[i];
        switch (x->kind) {
        case ACT_SEND:
            printf("send\t%" PRIu64 "\t%s\n", x->src->size, x->src->path);
            break;
        case ACT_COMPARE:
            printf("compare\t%" PRIu64 "\t%s\n", x->src->size, x->src->path);
            break;
        case ACT_MKDIR:
            printf("mkdir\t0\t%s/\n", x->src->path);
            break;
        case ACT_DELETE:
            printf("delete\t%" PRIu64 "\t%s\n", x->dst->size, x->dst->path);
            break;
        case ACT_RMDIR:
            printf("delete\t0\t%s/\n", x->dst->path);
            break;
        case ACT_CONFLICT:
            printf("conflict\t0\t%s\n", x->src->path);
            break;
        }
    }
    fflush(stdout);
}

/* A batch of pushes or pulls: the source and destination of each, the
   mtime to keep, the size listed, and whether to offer the digest first
   (skip-if-same, for a file whose size matches but mtime differs). */
typedef struct tree_batch {
    size_t n;
    char *from[TREE_BATCH], *to[TREE_BATCH];
    int64_t mtime[TREE_BATCH];
    uint64_t size[TREE_BATCH];
    int compare[TREE_BATCH];
    const char *path[TREE_BATCH]; /* relative, for messages */
    /* A pull into an unnamed file (pull_add): the unnamed file it is written
       into, and the directory and name it gets once whole; fd -1: a pull
       through the library's temporary (to), or a push. */
    int fd[TREE_BATCH], dir_fd[TREE_BATCH];
    const char *leaf[TREE_BATCH];
    int retired[TREE_BATCH]; /* directories left behind, closed after */
    size_t nretired, nfds;   /* nfds: fd[] and retired[] open */
    uint64_t bytes;
} tree_batch;

static void batch_clear(tree_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->from[i]);
        free(b->to[i]);
        if (b->fd[i] >= 0)
            close(b->fd[i]);
    }
    for (size_t i = 0; i < b->nretired; i++)
        close(b->retired[i]);
    b->n = b->nretired = b->nfds = 0;
    b->bytes = 0;
}

/* Queues root_from/rel -> root_to/rel. Returns 0 or -1 (out of memory). */
static int batch_add(tree_batch *b, const char *root_from, const char *root_to, const char *rel,
                     int64_t mtime, uint64_t size, int compare)
{
    char x[8192], y[8192];
    if (tree_join(x, sizeof x, root_from, rel) != 0 || tree_join(y, sizeof y, root_to, rel) != 0)
        return -1;
    b->from[b->n] = strdup(x);
    b->to[b->n] = strdup(y);
    if (!b->from[b->n] || !b->to[b->n]) {
        free(b->from[b->n]);
        free(b->to[b->n]);
        return -1;
    }
    b->mtime[b->n] = mtime;
    b->size[b->n] = size;
    b->compare[b->n] = compare;
    b->fd[b->n] = b->dir_fd[b->n] = -1;
    b->bytes += size;
    b->path[b->n++] = rel;
    return 0;
}

/* The open directory rel's first len bytes name under the pull's local
   root (made when missing), for the files that go into it: the one kept
   open when it is the same, else walked to from the root without
   following a link. The one it replaces is closed, or after the batch
   when a queued file still goes into it. Returns it, or -1 with the
   reason in err. */
static int pull_dir(treerun *t, tree_batch *b, const char *local, const char *rel, size_t len,
                    char *err, size_t errlen)
{
    if (t->dir_fd >= 0 && strlen(t->dir_rel) == len && memcmp(t->dir_rel, rel, len) == 0)
        return t->dir_fd;
    if (t->dir_fd >= 0 && t->dir_used) {
        b->retired[b->nretired++] = t->dir_fd;
        b->nfds++;
    } else if (t->dir_fd >= 0) {
        close(t->dir_fd);
    }
    t->dir_fd = -1;
    t->dir_used = 0;
    if (len >= sizeof t->dir_rel) {
        snprintf(err, errlen, "\"%s\": the path is too long", rel);
        return -1;
    }
    if (t->root_fd < 0) {
        t->root_fd = open(local, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (t->root_fd < 0) {
            snprintf(err, errlen, "\"%s\": %s", local,
                     errno == ELOOP ? "a symbolic link" : strerror(errno));
            return -1;
        }
    }
    t->dir_fd = tree_open_dir(t->root_fd, rel, len, 1, err, errlen);
    if (t->dir_fd >= 0)
        snprintf(t->dir_rel, sizeof t->dir_rel, "%.*s", (int)len, rel);
    return t->dir_fd;
}

/* A local failure's code, from errno. */
static int local_code(int e)
{
    return e == ENOSPC || e == EDQUOT               ? TF_ENOSPC
           : e == EACCES || e == EPERM || e == EROFS ? TF_EACCES
                                                     : TF_EIO;
}

/* Queues the pull of a file the destination lacks, into an unnamed file
   in its directory, named once whole (pull_name): no walk from the top,
   no temporary name, no rename. compare: a small file the destination
   has, with the same size and another mtime, fetched to be compared
   (pull_replace) rather than asked for its digest first, a round trip
   each. Returns 1 when queued, 0 when this file system has no unnamed
   files (the caller takes the library's way), -1 on a failure
   (reported). */
static int pull_add(treerun *t, tree_batch *b, const char *remote, const char *local,
                    const tree_ent *e, int compare)
{
    char err[8448];
    const char *slash = strrchr(e->path, '/');
    int dir = pull_dir(t, b, local, e->path, slash ? (size_t)(slash - e->path) : 0, err,
                       sizeof err);
    if (dir < 0) {
        tree_fail(t, TF_EACCES, 1, "get", e->path, err);
        return -1;
    }
    int fd = tree_tmpfile(dir);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        t->no_tmpfile = 1;
        return 0;
    }
    if (fd < 0) {
        tree_fail(t, local_code(errno), 1, "get", e->path, strerror(errno));
        return -1;
    }
    if (batch_add(b, remote, local, e->path, e->mtime, e->size, compare) != 0) {
        close(fd);
        tree_fail(t, TF_ENOMEM, 1, "get", e->path, NULL);
        return -1;
    }
    size_t i = b->n - 1;
    b->fd[i] = fd;
    b->dir_fd[i] = dir;
    b->leaf[i] = slash ? slash + 1 : e->path;
    b->nfds++;
    t->dir_used = 1;
    return 1;
}

/* Gives pulled item i (an unnamed file, whole) its mtime and its name.
   Returns TF_OK, or the failure with why in msg. */
static int pull_name(treerun *t, tree_batch *b, size_t i, char *msg, size_t len)
{
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)b->mtime[i]}};
    if (futimens(b->fd[i], ts) != 0) {
        snprintf(msg, len, "cannot set its mtime: %s", strerror(errno));
        return local_code(errno);
    }
    if (tree_tmpfile_link(b->fd[i], b->dir_fd[i], b->leaf[i], &t->link_proc) == 0)
        return TF_OK;
    int e = errno;
    struct stat st;
    if (e != EEXIST)
        snprintf(msg, len, "%s", strerror(e));
    else if (fstatat(b->dir_fd[i], b->leaf[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
             S_ISLNK(st.st_mode))
        snprintf(msg, len, "a symbolic link here: not written through");
    else
        snprintf(msg, len, "it appeared here during the get: not replaced");
    return e == EEXIST ? TF_EEXIST : local_code(e);
}

/* Pulled item i (a file to compare, whole in its unnamed file): when its
   bytes are the local file's, only the local mtime is set (*same); else
   it replaces the local file, keeping its mode, under a temporary name
   renamed over it. Returns TF_OK, or the failure with why in msg. */
static int pull_replace(treerun *t, tree_batch *b, size_t i, int *same, char *msg, size_t len)
{
    int fd = b->fd[i], dir = b->dir_fd[i];
    const char *leaf = b->leaf[i];
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)b->mtime[i]}};
    struct stat st;
    uint8_t got[16], mine[16];
    *same = 0;
    int old = openat(dir, leaf, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (old < 0 || fstat(old, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = old < 0 ? errno : EISDIR;
        snprintf(msg, len, "%s", e == ELOOP ? "a symbolic link here: not written through"
                                 : old < 0  ? strerror(e)
                                            : "not a regular file here: not replaced");
        if (old >= 0)
            close(old);
        return local_code(e);
    }
    if (fd_digest(fd, got) == 0 && fd_digest(old, mine) == 0 && memcmp(got, mine, 16) == 0) {
        *same = 1;
        futimens(old, ts);
        close(old);
        return TF_OK;
    }
    close(old);
    if (fchmod(fd, st.st_mode & 07777) != 0 || futimens(fd, ts) != 0) {
        snprintf(msg, len, "%s", strerror(errno));
        return local_code(errno);
    }
    char tmp[64];
    for (unsigned k = 0;; k++) {
        snprintf(tmp, sizeof tmp, ".tcpfile-part-%ld-%zu-%u", (long)getpid(), i, k);
        if (tree_tmpfile_link(fd, dir, tmp, &t->link_proc) == 0)
            break;
        if (errno != EEXIST || k == 99) {
            snprintf(msg, len, "%s", strerror(errno));
            return local_code(errno);
        }
    }
    if (renameat(dir, tmp, dir, leaf) != 0) {
        int e = errno;
        unlinkat(dir, tmp, 0);
        snprintf(msg, len, "%s", strerror(e));
        return local_code(e);
    }
    return TF_OK;
}

/* Whether the batch goes now: full, or (a pull) holding enough bytes or
   descriptors. */
static int batch_full(const treerun *t, const tree_batch *b, int push)
{
    return b->n == TREE_BATCH ||
           (!push && (b->n >= TREE_PULL_BATCH || b->bytes >= TREE_PULL_BATCH_BYTES ||
                      b->nfds + 2 >= t->fd_budget));
}

/* Sends the queued pushes with tf_put_many, each carrying its mtime when
   the server takes put extensions. */
static void push_flush(treerun *t, tree_batch *b)
{
    if (b->n == 0 || t->stop) {
        batch_clear(b);
        return;
    }
    int putx = tf_client_can_putx(t->c);
    tf_put_item items[TREE_BATCH];
    tf_put_args args[TREE_BATCH];
    for (size_t i = 0; i < b->n; i++) {
        args[i] = (tf_put_args){.flags = TF_PUT_MTIME | t->parents |
                                         (b->compare[i] ? TF_PUT_SKIP_SAME : 0),
                                .mtime_sec = b->mtime[i]};
        items[i] = (tf_put_item){.local_path = b->from[i], .name = b->to[i], .fd = -1,
                                 .args = putx ? &args[i] : NULL};
    }
    t->cur = SIZE_MAX;
    tf_put_many(t->c, items, b->n);
    tree_settle(t);
    for (size_t i = 0; i < b->n; i++) {
        if (items[i].result == TF_OK && items[i].skipped) {
            t->same++;
            t->files_done++;
        } else if (items[i].result == TF_OK) {
            t->sent++;
            t->files_done++;
            t->bytes_sent += b->size[i];
        } else if (!t->stop || items[i].result != TF_ECANCELED) {
            tree_fail(t, items[i].result, items[i].result == TF_ENOENT, "put", b->path[i],
                      items[i].message);
        }
    }
    batch_clear(b);
}

/* One push on its own: a large file (resumable), or one to compare first
   (skip-if-same: the server says whether it has those bytes). */
static void push_one(treerun *t, const tree_ent *e, const char *local, const char *remote,
                     int compare)
{
    char from[8192], to[8192];
    if (tree_join(from, sizeof from, local, e->path) != 0 ||
        tree_join(to, sizeof to, remote, e->path) != 0) {
        tree_fail(t, TF_EINVAL, 1, "put", e->path, "path too long");
        return;
    }
    int putx = tf_client_can_putx(t->c), skipped = 0, rc;
    if (compare && !putx) {
        /* An older server: compare its digest with ours. */
        tf_stat_info si;
        uint8_t mine[16];
        if (tf_stat_ex(t->c, to, TF_STAT_DIGEST, &si) == TF_OK && si.has_digest &&
            local_digest(from, mine) == 0 && memcmp(mine, si.digest, 16) == 0) {
            t->same++;
            t->files_done++;
            t->bytes_base += e->size;
            return;
        }
    }
    tf_put_args args = {.flags = TF_PUT_MTIME | t->parents | (compare ? TF_PUT_SKIP_SAME : 0),
                        .mtime_sec = e->mtime};
    t->cur = SIZE_MAX;
    rc = tf_put_ex(t->c, from, to, putx ? &args : NULL, &skipped);
    tree_settle(t);
    if (rc != TF_OK) {
        tree_fail(t, rc, rc == TF_ENOENT, "put", e->path, tf_errmsg(t->c));
        return;
    }
    t->files_done++;
    if (skipped) {
        t->same++;
    } else {
        t->sent++;
        t->bytes_sent += e->size;
    }
}

/* Fetches the queued pulls with tf_get_many, then gives each file its
   mtime from the listing. */
static void pull_flush(treerun *t, tree_batch *b)
{
    if (b->n == 0 || t->stop) {
        batch_clear(b);
        return;
    }
    tf_get_item items[TREE_BATCH];
    for (size_t i = 0; i < b->n; i++)
        items[i] = (tf_get_item){.name = b->from[i],
                                 .local_path = b->fd[i] >= 0 ? NULL : b->to[i],
                                 .fd = b->fd[i]};
    t->cur = SIZE_MAX;
    tf_get_many(t->c, items, b->n);
    tree_settle(t);
    for (size_t i = 0; i < b->n; i++) {
        int r = items[i].result;
        char msg[256];
        const char *why = items[i].message;
        int local = r == TF_EIO || r == TF_ENOSPC, same = 0;
        if (r == TF_OK && b->fd[i] >= 0) {
            r = b->compare[i] ? pull_replace(t, b, i, &same, msg, sizeof msg)
                              : pull_name(t, b, i, msg, sizeof msg);
            why = msg;
            local = 1;
        } else if (r == TF_OK) {
            set_local_mtime(b->to[i], b->mtime[i]);
        }
        if (r == TF_OK && same) {
            t->same++;
            t->files_done++;
        } else if (r == TF_OK) {
            t->bytes_sent += b->size[i];
            t->sent++;
            t->files_done++;
        } else if (!t->stop || r != TF_ECANCELED) {
            tree_fail(t, r, local, "get", b->path[i], why);
        }
    }
    t->dir_used = 0; /* none of the batch's files is left to name */
    batch_clear(b);
}

static void pull_one(treerun *t, const tree_ent *e, const char *remote, const char *local,
                     int compare)
{
    char from[8192], to[8192];
    if (tree_join(from, sizeof from, remote, e->path) != 0 ||
        tree_join(to, sizeof to, local, e->path) != 0) {
        tree_fail(t, TF_EINVAL, 1, "get", e->path, "path too long");
        return;
    }
    if (compare) {
        tf_stat_info si;
        uint8_t mine[16];
        int rc = tf_stat_ex(t->c, from, TF_STAT_DIGEST, &si);
        if (rc == TF_OK && si.has_digest && local_digest(to, mine) == 0 &&
            memcmp(mine, si.digest, 16) == 0) {
            set_local_mtime(to, e->mtime);
            t->same++;
            t->files_done++;
            t->bytes_base += e->size;
            return;
        }
        if (rc != TF_OK && breaks_connection(rc)) {
            tree_fail(t, rc, 0, "stat", e->path, tf_errmsg(t->c));
            return;
        }
    }
    t->cur = SIZE_MAX;
    int rc = tf_get(t->c, from, to);
    tree_settle(t);
    if (rc != TF_OK) {
        tree_fail(t, rc, rc == TF_EIO || rc == TF_ENOSPC, "get", e->path, tf_errmsg(t->c));
        return;
    }
    set_local_mtime(to, e->mtime);
    t->sent++;
    t->files_done++;
    t->bytes_sent += e->size;
}

/* Whether the directory of plan step i (a push's mkdir) can be left to
   the puts that follow it (TF_PUT_PARENTS makes it on the server), which
   saves a round trip and a directory sync each: the next step goes inside
   it. An empty directory is still made by its mkdir. */
static int push_dir_by_puts(const treerun *t, const tree_plan *pl, size_t i)
{
    if (!tf_client_can_putx(t->c) || i + 1 >= pl->n)
        return 0;
    const tree_act *next = &pl->v[i + 1];
    const char *dir = pl->v[i].src->path;
    size_t len = strlen(dir);
    return (next->kind == ACT_SEND || next->kind == ACT_COMPARE || next->kind == ACT_MKDIR) &&
           next->src && strncmp(next->src->path, dir, len) == 0 && next->src->path[len] == '/';
}

/* Pushes (o->push) or pulls the tree: sends what differs, by size and
   mtime, then by digest; --delete removes what the source lacks, on the
   destination only. get -r and put -r are the same without --delete. */
static void tree_transfer(treerun *t, int push, const char *local, const char *remote,
                          unsigned flags)
{
    tree_list src = {0}, dst = {0}, loc = {0}, rem = {0};
    tree_plan pl = {0};
    tree_batch *b = calloc(1, sizeof *b);
    char err[8448];
    int missing = 0, dry = (flags & F_DRY_RUN) != 0;
    if (!b) {
        tree_fail(t, TF_ENOMEM, 1, "plan", local, NULL);
        return;
    }
    /* The local side. */
    struct stat st;
    int local_there = lstat(local, &st) == 0;
    if (local_there && (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode))) {
        tree_fail(t, TF_ENOTDIR, 1, push ? "read" : "write into", local,
                  S_ISLNK(st.st_mode) ? "a symbolic link, not a directory"
                                      : "a file here, not a directory");
        goto done;
    }
    if (push && !local_there) {
        tree_fail(t, TF_ENOENT, 1, "read", local, "no such directory");
        goto done;
    }
    if (local_there &&
        tree_walk_local(local, PATH_DEPTH_ANY, &loc, push ? tree_warn : NULL, t, err,
                        sizeof err) != 0) {
        tree_fail(t, TF_EIO, 1, "read", local, err);
        goto done;
    }
    tree_list_sort(&loc);
    /* The server's side. */
    if (remote_tree(t, remote, &rem, &missing) != TF_OK)
        goto done;
    if (missing && !push) {
        tree_fail(t, TF_ENOENT, 0, "list", remote, "no such directory on the server");
        goto done;
    }
    if (!push)
        for (size_t i = 0; i < rem.n; i++)
            if (!tree_rel_ok(rem.v[i].path)) { /* a hostile or broken server */
                tree_fail(t, TF_EPROTO, 0, "list", rem.v[i].path,
                          "the server listed a path that would leave the destination;"
                          " nothing was written");
                goto done;
            }
    src = push ? loc : rem;
    dst = push ? rem : loc;
    if (tree_plan_make(&src, &dst, (flags & F_CHECKSUM) != 0, (flags & F_DELETE) != 0, &pl) !=
        0) {
        tree_fail(t, TF_ENOMEM, 1, "plan", local, NULL);
        goto done;
    }
    t->files_total = pl.files;
    t->bytes_total = pl.bytes;
    if (dry) {
        tree_print_plan(&pl);
        t->same = pl.same;
        goto done;
    }
    if (!push && !local_there && mkdir(local, 0777) != 0) {
        tree_fail(t, TF_EIO, 1, "create", local, strerror(errno));
        goto done;
    }
    if (push && missing && remote[0]) {
        int rc = tf_mkdir(t->c, remote, TF_MKDIR_PARENTS);
        if (rc != TF_OK) {
            tree_fail(t, rc, 0, "mkdir", remote, tf_errmsg(t->c));
            goto done;
        }
    }
    t->p->started = 1;
    t->p->start = now_seconds();
    t->same = pl.same;
    for (size_t i = 0; i < pl.n && !t->stop && !g_signal; i++) {
        const tree_act *x = &pl.v[i];
        const char *rel = x->src ? x->src->path : x->dst->path;
        char path[8192];
        if (x->kind == ACT_DELETE || x->kind == ACT_RMDIR) {
            /* Deletions come last: everything sent first. */
            (push ? push_flush : pull_flush)(t, b);
            if (t->stop)
                break;
            if (push) {
                if (tree_join(path, sizeof path, remote, rel) != 0)
                    continue;
                int rc = tf_remove(t->c, path);
                if (rc != TF_OK)
                    tree_fail(t, rc, 0, "delete", rel, tf_errmsg(t->c));
                else
                    t->deleted++;
            } else if (tree_local_remove(local, rel, x->kind == ACT_RMDIR, err, sizeof err) !=
                       0) {
                tree_fail(t, TF_EIO, 1, "delete", rel, err);
            } else {
                t->deleted++;
            }
            continue;
        }
        if (x->kind == ACT_CONFLICT) {
            tree_fail(t, x->src->dir ? TF_ENOTDIR : TF_EISDIR, !push, push ? "put" : "get", rel,
                      x->src->dir ? "a file where the source has a directory"
                                  : "a directory where the source has a file");
            continue;
        }
        if (x->kind == ACT_MKDIR) {
            int rc = 0;
            if (push && push_dir_by_puts(t, &pl, i)) {
                t->parents = TF_PUT_PARENTS;
            } else if (push) {
                if (tree_join(path, sizeof path, remote, rel) != 0)
                    continue;
                /* PARENTS: its parent may be one left to the puts. */
                rc = tf_mkdir(t->c, path, TF_MKDIR_PARENTS);
                if (rc == TF_EEXIST)
                    rc = TF_OK;
                if (rc != TF_OK)
                    tree_fail(t, rc, 0, "mkdir", rel, tf_errmsg(t->c));
            } else if (pull_dir(t, b, local, rel, strlen(rel), err, sizeof err) < 0) {
                tree_fail(t, TF_EACCES, 1, "mkdir", rel, err);
                rc = -1;
            }
            t->made += rc == 0;
            continue;
        }
        /* A file to send, or to compare first. A pull of one the
           destination lacks, or of a small one to compare, is written into
           its directory, kept open, and named (or compared) once whole. */
        int pull_compare = x->kind == ACT_COMPARE && x->src->size < TREE_COMPARE_BATCHED;
        if (!push && ((x->kind == ACT_SEND && !x->dst) || pull_compare) && !t->no_tmpfile &&
            x->src->size < TREE_BIG) {
            int queued = pull_add(t, b, remote, local, x->src, pull_compare);
            if (queued > 0 && batch_full(t, b, 0))
                pull_flush(t, b);
            if (queued != 0)
                continue;
        }
        if (!push && tree_local_safe(local, rel, 1, err, sizeof err) != 0) {
            tree_fail(t, TF_EACCES, 1, "get", rel, err);
            continue;
        }
        int compare = x->kind == ACT_COMPARE;
        /* A small file to compare goes in the pipelined batch, offering
           its digest (skip-if-same): its bytes cost less than a round
           trip of its own. */
        int batch_compare = compare && push && x->src->size < TREE_COMPARE_BATCHED &&
                            tf_client_can_putx(t->c);
        if ((compare && !batch_compare) || x->src->size >= TREE_BIG) {
            if (push)
                push_one(t, x->src, local, remote, compare);
            else
                pull_one(t, x->src, remote, local, compare);
            continue;
        }
        if (push ? batch_add(b, local, remote, rel, x->src->mtime, x->src->size, batch_compare)
                 : batch_add(b, remote, local, rel, x->src->mtime, x->src->size, 0)) {
            tree_fail(t, TF_ENOMEM, 1, push ? "put" : "get", rel, NULL);
            continue;
        }
        if (batch_full(t, b, push))
            (push ? push_flush : pull_flush)(t, b);
    }
    (push ? push_flush : pull_flush)(t, b);
    if (g_signal && t->out->rc == TF_OK) {
        t->out->rc = TF_ECANCELED;
        t->stop = 1;
    }
done:
    bar_erase(t->p);
    if (t->dir_fd >= 0)
        close(t->dir_fd);
    if (t->root_fd >= 0)
        close(t->root_fd);
    t->dir_fd = t->root_fd = -1;
    tree_plan_free(&pl);
    tree_list_free(&loc);
    tree_list_free(&rem);
    batch_clear(b);
    free(b);
}

/* rm -r: the tree below path, listed, then removed files first and each
   directory once emptied (bottom up), then path itself. */
static void tree_remove(treerun *t, const char *path)
{
    tree_list l = {0};
    int missing = 0;
    if (remote_tree(t, path, &l, &missing) != TF_OK)
        return;
    if (missing) {
        tree_fail(t, TF_ENOENT, 0, "rm -r", path, tf_errmsg(t->c));
        return;
    }
    for (size_t i = l.n; i-- > 0 && !t->stop && !g_signal;) {
        char full[8192];
        if (tree_join(full, sizeof full, path, l.v[i].path) != 0)
            continue;
        int rc = tf_remove(t->c, full);
        if (rc != TF_OK)
            tree_fail(t, rc, 0, "rm", full, tf_errmsg(t->c));
        else
            t->deleted++;
    }
    tree_list_free(&l);
    if (!t->stop && !g_signal) {
        int rc = tf_remove(t->c, path);
        if (rc != TF_OK)
            tree_fail(t, rc, 0, "rm", path, tf_errmsg(t->c));
        else
            t->deleted++;
    }
}

/* "f" or "d", size, mtime and path, as list prints them (-H / terminal:
   human sizes and local times). */
static void print_dirent(int dir, uint64_t size, int64_t mtime, const char *path, int human)
{
    char when[64];
    format_mtime(mtime, human, when, sizeof when);
    if (human) {
        char sz[32];
        if (dir)
            snprintf(sz, sizeof sz, "-");
        else
            format_size(size, sz, sizeof sz);
        printf("%s %10s  %s  %s%s\n", dir ? "d" : "-", sz, when, path, dir ? "/" : "");
    } else {
        printf("%s\t%" PRIu64 "\t%s\t%s\n", dir ? "d" : "f", size, when, path);
    }
}

/* ls [DIR] [-r]: streamed (bounded memory however big the tree); a single
   directory is printed sorted by name, a recursive walk as it comes. */
static void run_ls(treerun *t, const op *o, int human)
{
    tf_dir *d;
    int rc = tf_dir_open(t->c, o->name, (o->flags & F_RECURSIVE) ? TF_LIST_RECURSIVE : 0, &d);
    if (rc != TF_OK) {
        t->out->rc = rc;
        return;
    }
    tree_list l = {0};
    const tf_dirent *e;
    int sorted = !(o->flags & F_RECURSIVE);
    while ((rc = tf_dir_next(d, &e)) == TF_OK && e) {
        t->out->files++;
        if (!sorted)
            print_dirent(e->type == TF_FTYPE_DIR, e->size, e->mtime, e->path, human);
        else if (tree_list_add(&l, e->path, e->type == TF_FTYPE_DIR, e->size, e->mtime) != 0)
            rc = TF_ENOMEM;
        if (rc != TF_OK)
            break;
    }
    if (rc != TF_OK)
        snprintf(t->out->why, sizeof t->out->why, "%s", tf_errmsg(t->c));
    tf_dir_close(d);
    tree_list_sort(&l);
    for (size_t i = 0; i < l.n; i++)
        print_dirent(l.v[i].dir, l.v[i].size, l.v[i].mtime, l.v[i].path, human);
    tree_list_free(&l);
    if (fflush(stdout) != 0 && rc == TF_OK) {
        snprintf(t->out->why, sizeof t->out->why, "writing standard output: %s",
                 strerror(errno));
        rc = TF_EIO;
        t->out->local = 1;
    }
    t->out->rc = rc;
}

/* stat PATH: TYPE, SIZE, MTIME, DIGEST (hex, or "-" when the server does
   not know it yet) and PATH; for people, one line in words. */
static void run_stat(treerun *t, const op *o, int human)
{
    tf_stat_info si;
    int rc = tf_stat_ex(t->c, o->name, TF_STAT_DIGEST, &si); /* what --if-match takes */
    t->out->rc = rc;
    if (rc != TF_OK)
        return;
    char hex[33] = "-", when[64];
    if (si.has_digest)
        for (int i = 0; i < 16; i++)
            snprintf(hex + 2 * i, 3, "%02x", si.digest[i]);
    format_mtime(si.mtime, human, when, sizeof when);
    int dir = si.type == TF_FTYPE_DIR;
    if (human) {
        char sz[32];
        format_size(si.size, sz, sizeof sz);
        printf("%s: %s, %s, modified %s%s%s\n", o->name, dir ? "directory" : "file",
               dir ? "-" : sz, when, si.has_digest ? ", XXH3-128 " : "",
               si.has_digest ? hex : "");
    } else {
        printf("%s\t%" PRIu64 "\t%s\t%s\t%s\n", dir ? "d" : "f", si.size, when, hex, o->name);
    }
    if (fflush(stdout) != 0) {
        snprintf(t->out->why, sizeof t->out->why, "writing standard output: %s",
                 strerror(errno));
        t->out->rc = TF_EIO;
        t->out->local = 1;
    }
}

/* The summary of a tree transfer or rm -r, unless -q. */
static void tree_summary(const treerun *t, double seconds)
{
    char size[32];
    format_size(t->bytes_sent, size, sizeof size);
    const op *o = t->o;
    if (o->kind == OP_RM) {
        fprintf(stderr, PROG ": %s: %zu removed in %.3f s\n", t->what, t->deleted, seconds);
        return;
    }
    if (o->flags & F_DRY_RUN) {
        fprintf(stderr,
                PROG ": %s: dry run: %zu file%s to send or compare (%" PRIu64 " bytes), %zu"
                     " unchanged; nothing was changed\n",
                t->what, t->files_total, t->files_total == 1 ? "" : "s", t->bytes_total,
                t->same);
        return;
    }
    fprintf(stderr,
            PROG ": %s: %zu file%s sent (%" PRIu64 " bytes, %s), %zu unchanged, %zu"
                 " director%s made, %zu deleted, %zu failed in %.3f s\n",
            t->what, t->sent, t->sent == 1 ? "" : "s", t->bytes_sent, size, t->same, t->made,
            t->made == 1 ? "y" : "ies", t->deleted, t->failed, seconds);
}

/* The descriptors a pull batch may hold open (its unnamed files and the
   directories they go into): the limit, less room for the rest. */
static size_t fd_budget(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > 4 * TREE_PULL_BATCH)
        return 4 * TREE_PULL_BATCH;
    return rl.rlim_cur > 48 ? (size_t)rl.rlim_cur - 32 : 16;
}

/* Runs one tree operation into *out. */
static void run_tree_op(const client_args *a, tf_client *c, const op *o, int human,
                        progress *p, outcome *out)
{
    treerun t = {.a = a, .c = c, .o = o, .p = p, .out = out, .cur = SIZE_MAX, .root_fd = -1,
                 .dir_fd = -1, .fd_budget = fd_budget()};
    describe(o, t.what, sizeof t.what);
    snprintf(t.label, sizeof t.label, "%s", t.what);
    double start = now_seconds();
    int rc;
    switch (o->kind) {
    case OP_STAT:
        run_stat(&t, o, human);
        return;
    case OP_LS:
        run_ls(&t, o, human);
        return;
    case OP_MKDIR:
        out->rc = tf_mkdir(c, o->name, (o->flags & F_PARENTS) ? TF_MKDIR_PARENTS : 0);
        return;
    case OP_MV:
        out->rc = tf_rename(c, o->name, o->to,
                            (o->flags & F_NO_OVERWRITE) ? TF_RENAME_NOREPLACE : 0);
        if (out->rc == TF_EEXIST && (o->flags & F_NO_OVERWRITE))
            snprintf(out->why, sizeof out->why, "\"%s\" exists; not replaced (--no-overwrite)",
                     o->to);
        return;
    case OP_RM:
        if (!(o->flags & F_RECURSIVE)) {
            out->rc = tf_remove(c, o->name);
            if (out->rc == TF_ENOTEMPTY)
                snprintf(out->why, sizeof out->why,
                         "\"%s\" is a directory with entries; rm -r removes it and them",
                         o->name);
            return;
        }
        p->tree = &t;
        p->label = t.label;
        tree_remove(&t, o->name);
        break;
    default: /* OP_GETR, OP_PUTR, OP_SYNC */
        p->tree = &t;
        p->label = t.label;
        tree_transfer(&t, o->kind == OP_PUTR || (o->kind == OP_SYNC && o->push), o->local,
                      o->name, o->flags);
        break;
    }
    p->tree = NULL;
    bar_erase(p);
    rc = out->rc;
    if (a->verbosity > QUIET && !(rc == TF_ECANCELED && g_signal) &&
        (rc == TF_OK || t.sent || t.same || t.deleted || t.made))
        tree_summary(&t, now_seconds() - start);
    if (rc != TF_OK && t.failed > 1)
        snprintf(out->why, sizeof out->why, "%zu failures, the first one's code shown",
                 t.failed);
    else if (rc != TF_OK)
        snprintf(out->why, sizeof out->why, "see the line above");
    if (rc == TF_ECANCELED && g_signal)
        out->why[0] = '\0';
}

/* Runs one operation into *out. */
static void run_op(const client_args *a, tf_client *c, const op *o, int human,
                   tf_listing **names, progress *p, outcome *out)
{
    if (o->no_match) {
        snprintf(out->why, sizeof out->why, "no file on the server matches \"%s\"", o->name);
        out->rc = TF_ENOENT;
        return;
    }
    switch (o->kind) {
    case OP_STAT:
    case OP_LS:
    case OP_MKDIR:
    case OP_RM:
    case OP_MV:
    case OP_GETR:
    case OP_PUTR:
    case OP_SYNC:
        run_tree_op(a, c, o, human, p, out);
        return;
    case OP_LIST: {
        tf_listing *l;
        out->rc = tf_list(c, &l);
        if (out->rc != TF_OK)
            return;
        out->files = tf_listing_count(l);
        if (print_listing(l, human) != 0) {
            snprintf(out->why, sizeof out->why, "writing standard output: %s",
                     strerror(errno));
            out->rc = TF_EIO;
            out->local = 1;
        }
        tf_listing_free(l);
        return;
    }
    case OP_GET:
        if (o->local && strcmp(o->local, "-") == 0) {
            /* Earlier list output must come out before these bytes. */
            if (fflush(stdout) != 0) {
                snprintf(out->why, sizeof out->why, "writing standard output: %s",
                         strerror(errno));
                out->rc = TF_EIO;
                out->local = 1;
                return;
            }
            out->rc = tf_get_fd(c, o->name, STDOUT_FILENO);
            return;
        }
        if (check_clobber_local(a, o, out) != 0)
            return;
        out->rc = tf_get(c, o->name, o->local);
        return;
    case OP_PUT:
        if (a->no_clobber && check_clobber_remote(c, names, o, out) != 0)
            return;
        /* Standard input that cannot seek (a pipe) is streamed when the
           server takes it: any size, no local temporary. Otherwise the
           library spools a pipe or terminal itself to learn its size. */
        struct stat st;
        if (strcmp(o->local, "-") == 0 && lseek(STDIN_FILENO, 0, SEEK_CUR) < 0 &&
            tf_client_can_stream(c)) {
            out->rc = tf_put_stream(c, STDIN_FILENO, o->name);
            return;
        }
        if (strcmp(o->local, "-") != 0 && stat(o->local, &st) == 0 && S_ISREG(st.st_mode))
            out->src_size = st.st_size;
        const char *src = strcmp(o->local, "-") == 0 ? "/dev/stdin" : o->local;
        if ((o->flags & F_IF_ABSENT) || o->has_if_match) { /* the server checks, atomically */
            if (!tf_client_can_putx(c)) {
                out->rc = TF_EPROTO;
                snprintf(out->why, sizeof out->why,
                         "the server does not take conditional puts (--if-absent,"
                         " --if-match: feature PUTX)");
                return;
            }
            tf_put_args args = {.flags = ((o->flags & F_PARENTS) ? TF_PUT_PARENTS : 0) |
                                         ((o->flags & F_IF_ABSENT) ? TF_PUT_IF_ABSENT : 0) |
                                         (o->has_if_match ? TF_PUT_IF_MATCH : 0)};
            if (o->has_if_match)
                memcpy(args.if_match, o->if_match, sizeof args.if_match);
            out->rc = tf_put_ex(c, src, o->name, &args, NULL);
            return;
        }
        if (o->flags & F_PARENTS) { /* put -p: make the missing directories */
            const char *slash = strrchr(o->name, '/');
            if (tf_client_can_putx(c)) {
                tf_put_args args = {.flags = TF_PUT_PARENTS};
                out->rc = tf_put_ex(c, src, o->name, &args, NULL);
                return;
            }
            if (slash) { /* an older server: mkdir -p, then the put */
                char dir[4096];
                snprintf(dir, sizeof dir, "%.*s", (int)(slash - o->name), o->name);
                out->rc = tf_mkdir(c, dir, TF_MKDIR_PARENTS);
                if (out->rc != TF_OK)
                    return;
            }
        }
        out->rc = tf_put(c, src, o->name);
        return;
    }
}

/* Whether the directory a get writes into exists (stdout and ./NAME:
   yes). */
static int local_dir_exists(const char *local)
{
    struct stat st;
    if (!local || strcmp(local, "-") == 0)
        return 1;
    const char *slash = strrchr(local, '/');
    if (!slash) /* a file in the current directory, or a directory there */
        return 1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash == local ? 1 : (int)(slash - local), local);
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Which side a failure is on, from its code and the operation: a get
   writes here and only reads on the server, a put the reverse. */
static int failure_is_local(const op *o, int rc, const progress *p, const outcome *out)
{
    struct stat st;
    switch (rc) {
    case TF_ENOSPC:
    case TF_EIO:
        if (o->kind == OP_GET)
            return 1; /* the server only reads on a get */
        if (o->kind != OP_PUT || !o->local)
            return 0; /* list, stat, ls...: the server's storage failed */
        /* A put: standard input spooled before any byte moved, or a
           source that changed or cannot be read any more, is ours. */
        if (strcmp(o->local, "-") == 0)
            return !p->started;
        return out->src_size >= 0 &&
               (stat(o->local, &st) != 0 || st.st_size != out->src_size ||
                access(o->local, R_OK) != 0);
    case TF_ENOENT:
        /* On a put, the local file, or (with the tree) the server's
           directory; on a get the local directory may be missing. */
        if (o->kind == OP_PUT)
            return strcmp(o->local, "-") != 0 && stat(o->local, &st) != 0;
        return !local_dir_exists(o->local);
    case TF_EACCES: {
        if (o->kind == OP_PUT)
            return strcmp(o->local, "-") != 0 && access(o->local, R_OK) != 0;
        /* A get is refused here when its directory takes no new file. */
        char target[8192];
        if (!local_dir_exists(o->local))
            return 1;
        if (!get_target(o, target, sizeof target)) /* standard output */
            return 0;
        char *slash = strrchr(target, '/');
        if (slash)
            *(slash == target ? slash + 1 : slash) = '\0';
        return access(slash ? target : ".", W_OK) != 0;
    }
    default:
        return 0;
    }
}

/* The exit status for a failure (see usage()). */
static int exit_status(const outcome *out)
{
    switch (out->rc) {
    case TF_OK:
        return EXIT_OK;
    case TF_ENOENT:
        return EXIT_NOENT;
    case TF_EEXIST:
    case TF_ECONFLICT: /* --if-match: another version is there, not replaced */
        return EXIT_EXISTS;
    case TF_EACCES:
        return out->local ? EXIT_LOCAL_IO : EXIT_REFUSED;
    case TF_EINVAL:
    case TF_ETOOBIG:
    case TF_EBUSY:
        return EXIT_REFUSED;
    case TF_ENOSPC:
    case TF_EIO:
        return out->local ? EXIT_LOCAL_IO : EXIT_SERVER_IO;
    case TF_ETIMEDOUT:
        return EXIT_TIMEOUT;
    case TF_ECHECKSUM:
        return EXIT_CHECKSUM;
    case TF_ENET:
    case TF_EPROTO:
        return EXIT_NETWORK;
    case TF_ECANCELED:
        return g_signal ? 128 + g_signal : EXIT_FAILED;
    default:
        return EXIT_FAILED;
    }
}

/* What to do about a failure, appended to its line ("" when the message
   says it all). Kept to the cases where the next step is not obvious. */
static void failure_hint(const client_args *a, tf_client *c, const op *o, const outcome *out,
                         char *buf, size_t len)
{
    buf[0] = '\0';
    switch (out->rc) {
    case TF_ETIMEDOUT:
        snprintf(buf, len,
                 "; the server stopped responding: check that it is up and not"
                 " overloaded, or wait longer with --timeout SECONDS (0 = never)");
        break;
    case TF_ENET:
        snprintf(buf, len, "; the connection was lost: run the command again");
        break;
    case TF_ENOENT:
        if (!out->local && o->kind == OP_PUT && strchr(o->name, '/'))
            snprintf(buf, len, "; put -p makes the missing directories");
        /* Missing on the server, not a missing local directory. */
        if (!out->local && o->kind == OP_GET && local_dir_exists(o->local))
            snprintf(buf, len, "; see the names it has with: " PROG " %s %s list", a->host,
                     a->port);
        break;
    case TF_EEXIST:
        if (!out->why[0])
            snprintf(buf, len, "; the server does not overwrite files: choose another"
                               " name with --as NAME");
        break;
    case TF_ECONFLICT:
        snprintf(buf, len, "; the file changed since its digest was taken: see its digest"
                           " now with: " PROG " %s %s stat %s",
                 a->host, a->port, o->name);
        break;
    case TF_EACCES:
        if (o->kind == OP_PUT && !out->local)
            snprintf(buf, len, "; the server does not take this upload (a read-only server"
                               " only serves get and list)");
        break;
    case TF_EINVAL:
        if (o->kind == OP_PUT && tf_client_max_name(c) > 0 &&
            strlen(o->name) > (size_t)tf_client_max_name(c))
            snprintf(buf, len, "; upload it under a shorter name: put LOCAL --as NAME");
        break;
    }
}

/* The hidden part file a get --resume keeps beside target (the library's
   naming), into buf; 0 if the name is too long to say it simply. */
static int part_file(const char *target, char *buf, size_t len)
{
    const char *base = last_component(target);
    if (strlen(base) + sizeof ".tcpfile-part" + 1 > 64) /* the library's limit */
        return 0;
    snprintf(buf, len, "%.*s.%s.tcpfile-part", (int)(base - target), target, base);
    return 1;
}

/* The bytes a get --resume finds in its part file (0: none). */
static uint64_t part_size(const op *o)
{
    char target[8192], part[8448];
    struct stat st;
    if (o->kind != OP_GET || !get_target(o, target, sizeof target) ||
        !part_file(target, part, sizeof part) || stat(part, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    return (uint64_t)st.st_size;
}

/* Says what an interrupted operation left behind. */
static void report_interrupted(const client_args *a, const op *o, const progress *p)
{
    char what[8192], target[8192], part[8448];
    struct stat st;
    describe(o, what, sizeof what);
    /* A device or FIFO is written straight into: nothing to keep. */
    int special = o->kind == OP_GET && get_target(o, target, sizeof target) &&
                  stat(target, &st) == 0 && !S_ISREG(st.st_mode);
    if (o->kind == OP_GET && !special && get_target(o, target, sizeof target)) {
        if (a->resume && part_file(target, part, sizeof part) && stat(part, &st) == 0)
            fprintf(stderr,
                    PROG ": %s: interrupted; %lld bytes kept in \"%s\": the same get with"
                         " --resume continues from there\n",
                    what, (long long)st.st_size, part);
        else if (a->resume)
            fprintf(stderr, PROG ": %s: interrupted; what was received is kept for --resume\n",
                    what);
        else
            fprintf(stderr,
                    PROG ": %s: interrupted; the partial download was removed (with --resume"
                         " it is kept, to continue later)\n",
                    what);
    } else if (o->kind == OP_PUT) {
        fprintf(stderr,
                a->resume ? PROG ": %s: interrupted after %" PRIu64 " bytes; the server keeps"
                                 " them: the same put with --resume continues from there\n"
                          : PROG ": %s: interrupted after %" PRIu64 " bytes; nothing was"
                                 " stored (with --resume the server keeps them)\n",
                what, p->done);
    } else {
        fprintf(stderr, PROG ": %s: interrupted\n", what);
    }
}

/* One line on stderr: operation, name, side, reason, the detail if any,
   and what to do about it if that is not obvious. */
static void report_failure(const client_args *a, tf_client *c, const op *o,
                           const outcome *out)
{
    char what[8192], hint[256] = "";
    const char *detail = out->why[0] ? out->why : out->msg ? out->msg : c ? tf_errmsg(c) : "";
    describe(o, what, sizeof what);
    failure_hint(a, c, o, out, hint, sizeof hint);
    const char *side = "";
    if (out->rc == TF_ENOSPC || out->rc == TF_EIO || out->rc == TF_EACCES ||
        out->rc == TF_ENOENT || out->rc == TF_EEXIST)
        side = out->local ? "local: " : "server: ";
    fprintf(stderr, PROG ": %s: %s%s%s%s%s%s\n", what, side, tf_strerror(out->rc),
            detail[0] ? " (" : "", detail, detail[0] ? ")" : "", hint);
}

/* The summary counts the bytes moved this time, not those a resumed
   transfer already had. */
static void report_success(const client_args *a, const op *o, const progress *p,
                           const outcome *out, double seconds)
{
    char what[8192], size[32], rate[32];
    uint64_t moved = p->done - p->first;
    describe(o, what, sizeof what);
    if (o->kind >= OP_STAT) { /* a tree transfer prints its own summary */
        if (a->verbosity >= VERBOSE)
            fprintf(stderr, PROG ": %s: done in %.3f s\n", what, seconds);
        return;
    }
    if (a->verbosity >= VERBOSE) {
        if (o->kind == OP_LIST) {
            fprintf(stderr, PROG ": list: %zu file%s in %.3f s\n", out->files,
                    out->files == 1 ? "" : "s", seconds);
            return;
        }
        char human[40] = ""; /* " (1.5 MiB)" where bytes alone are hard to read */
        if (moved >= 1024) {
            format_size(moved, size, sizeof size);
            snprintf(human, sizeof human, " (%s)", size);
        }
        format_size(seconds > 0 ? (uint64_t)((double)moved / seconds) : 0, rate, sizeof rate);
        fprintf(stderr, PROG ": %s: %" PRIu64 " bytes%s in %.3f s, %s/s\n", what, moved,
                human, seconds, rate);
    } else if (o->kind != OP_LIST) { /* a listing is its own report */
        fprintf(stderr, PROG ": %s: %" PRIu64 " bytes in %.3f s\n", what, moved, seconds);
    }
    if (out->links > 1)
        fprintf(stderr,
                PROG ": %s: note: the file replaced had %lu other hard link%s; they keep"
                     " the old content\n",
                what, (unsigned long)out->links - 1, out->links == 2 ? "" : "s");
}

/* Says, after a failed connect, what the reason most likely means; keyed
   on the code alone, never on the message's wording. */
static void connect_hint(const client_args *a, int rc, char *buf, size_t len)
{
    buf[0] = '\0';
    /* A refusal almost always means nothing listens there. */
    if (rc == TF_ECONNREFUSED)
        snprintf(buf, len, "; is tcpfile-server running on %s port %s?", a->host, a->port);
    else if (rc == TF_ERESOLVE)
        snprintf(buf, len, "; check the host name");
    else if (rc == TF_ETIMEDOUT)
        snprintf(buf, len,
                 "; is %s reachable and tcpfile-server on port %s responding?"
                 " (--timeout SECONDS waits longer)",
                 a->host, a->port);
    else if (rc == TF_EBUSY)
        snprintf(buf, len, "; it serves its maximum of clients at once: try again later");
    else if (rc == TF_EACCES && !a->user)
        snprintf(buf, len, "; log in with --user NAME and the token (TCPFILE_TOKEN or"
                           " --token-file)");
    else if (rc == TF_EACCES)
        snprintf(buf, len, "; check the user name and the token");
    /* TF_EPROTO: the library's words say it all (plaintext against TLS,
       not TLS, not a tcpfile server). */
}

/* The exit status of a failed connect. */
static int connect_status(int rc)
{
    switch (rc) {
    case TF_ERESOLVE:
        return EXIT_RESOLVE;
    case TF_ECONNREFUSED:
    case TF_ENET:
        return EXIT_CONNECT;
    case TF_ETIMEDOUT:
        return EXIT_TIMEOUT;
    case TF_EBUSY:
    case TF_EACCES: /* authentication failed, or required */
        return EXIT_REFUSED;
    case TF_EPROTO:
        /* Before any request: the two sides do not speak the same
           protocol (plaintext against TLS, another kind of server). */
        return EXIT_FAILED;
    case TF_EPEERVERIFY:
        return EXIT_IDENTITY;
    default:
        return EXIT_FAILED;
    }
}

/* The client whose failed handshake has been reported (once, however
   many operations it fails). */
static const tf_client *g_hello_told;

/* Reports a failed connect or handshake as such; its exit status. */
static int report_connect(const client_args *a, int rc, const char *err)
{
    char hint[512];
    connect_hint(a, rc, hint, sizeof hint);
    fprintf(stderr, PROG ": connect to %s port %s: %s%s%s%s%s\n", a->host, a->port,
            tf_strerror(rc), err[0] ? " (" : "", err, err[0] ? ")" : "", hint);
    return g_signal ? 128 + g_signal : connect_status(rc);
}

/* With early requests the server's refusal comes back from the first
   operation: reported as the connect failure it is. Returns 1 then. */
static int hello_failed(const client_args *a, tf_client *c, int *status)
{
    if (!c)
        return 0;
    int rc = tf_client_handshake(c);
    if (rc == TF_OK)
        return 0;
    if (g_hello_told != c) {
        g_hello_told = c;
        int st = report_connect(a, rc, tf_errmsg(c));
        if (*status == EXIT_OK || (a->keep_going && st > *status))
            *status = st;
    }
    return 1;
}

/* Connects; on failure reports it and sets *status. */
static tf_client *connect_or_report(const client_args *a, int *status)
{
    char err[512];
    tf_client *c;
    g_hello_told = NULL;
    double start = now_seconds();
    if (a->verbosity >= VERBOSE) {
        int64_t cto = 0, ito = 0;
        tf_options_get(a->opt, TF_OPT_CONNECT_TIMEOUT_MS, &cto);
        tf_options_get(a->opt, TF_OPT_IO_TIMEOUT_MS, &ito);
        fprintf(stderr,
                PROG ": connecting to %s port %s (libtcpfile %s; timeouts: connect %.3g s,"
                     " stalled transfer %.3g s, 0 = none)\n",
                a->host, a->port, tf_version_string(), (double)cto / 1000,
                (double)ito / 1000);
    }
    int rc = tf_connect_ex(&c, a->host, a->port, a->opt, err, sizeof err);
    if (rc == TF_OK && a->verbosity >= VERBOSE && (rc = tf_client_handshake(c)) != TF_OK) {
        /* Verbose: the server's limits are printed, so its hello is read. */
        snprintf(err, sizeof err, "%s", tf_errmsg(c));
        tf_close(c);
    }
    if (rc == TF_OK) {
        if (a->verbosity >= VERBOSE)
            fprintf(stderr,
                    PROG ": connected in %.3f s; the server takes names of up to %d"
                         " bytes\n",
                    now_seconds() - start, tf_client_max_name(c));
        return c;
    }
    *status = report_connect(a, rc, err);
    return NULL;
}

/* After a failure, one line naming the operations that were not run. */
static void report_not_run(const client_args *a, size_t from, const char *why)
{
    if (from >= a->nops)
        return;
    fprintf(stderr, PROG ": not run (%s):", why);
    for (size_t i = from; i < a->nops; i++) {
        char what[8192];
        describe(&a->ops[i], what, sizeof what);
        fprintf(stderr, "%s %s", i > from ? "," : "", what);
    }
    fprintf(stderr, "\n");
}

/* Whether a failure closed the connection (tf_errmsg in tcpfile.h). */
static int breaks_connection(int rc)
{
    return rc == TF_ENET || rc == TF_ETIMEDOUT || rc == TF_EPROTO || rc == TF_ECANCELED ||
           rc == TF_ENOMEM;
}

static int has_wildcard(const char *name)
{
    return strpbrk(name, "*?[") != NULL;
}

/* get 'img-*.jpg': each NAME with a wildcard becomes a get of every name
   the server lists that matches it (in the listing's order), as scp
   matches on the remote side. *names keeps the listing, whose names the
   new operations point into. Returns PARSE_RUN, or a status after saying
   why. */
static int expand_wildcards(client_args *a, tf_client *c, tf_listing **names)
{
    size_t extra = 0;
    for (size_t i = 0; i < a->nops; i++)
        if (a->ops[i].kind == OP_GET && has_wildcard(a->ops[i].name))
            extra = 1;
    if (!extra)
        return PARSE_RUN;
    int rc = tf_list(c, names);
    int st = EXIT_OK;
    if (rc != TF_OK && hello_failed(a, c, &st))
        return st;
    if (rc != TF_OK) {
        fprintf(stderr, PROG ": list, to match the wildcards: %s (%s)\n", tf_strerror(rc),
                tf_errmsg(c));
        return rc == TF_ETIMEDOUT ? EXIT_TIMEOUT : EXIT_NETWORK;
    }
    size_t n = tf_listing_count(*names), total = 0;
    for (size_t i = 0; i < a->nops; i++) {
        const op *o = &a->ops[i];
        size_t m = 0;
        if (o->kind == OP_GET && has_wildcard(o->name))
            for (size_t k = 0; k < n; k++)
                m += fnmatch(o->name, tf_listing_at(*names, k)->name, FNM_PERIOD) == 0;
        if (m > 1 && o->renamed)
            return usage_error("the wildcard matches several files; --to needs a"
                               " DIRECTORY/ for them, not",
                               o->local);
        total += m ? m : 1;
    }
    op *ops = calloc(total, sizeof *ops);
    if (!ops) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    size_t j = 0;
    for (size_t i = 0; i < a->nops; i++) {
        const op *o = &a->ops[i];
        size_t before = j;
        if (o->kind == OP_GET && has_wildcard(o->name))
            for (size_t k = 0; k < n; k++)
                if (fnmatch(o->name, tf_listing_at(*names, k)->name, FNM_PERIOD) == 0) {
                    ops[j] = *o;
                    ops[j++].name = tf_listing_at(*names, k)->name;
                }
        if (j == before) {
            ops[j] = *o;
            ops[j++].no_match = o->kind == OP_GET && has_wildcard(o->name);
        }
    }
    free(a->ops);
    a->ops = ops;
    a->nops = total;
    return PARSE_RUN;
}

/* Reports how one operation went (a summary or a failure line) and folds
   its status into *status: the first failure's, or with --keep-going the
   highest. Returns 1 when the failure closed the connection. */
static int finish_op(const client_args *a, tf_client *c, const op *o, const progress *p,
                     outcome *out, double seconds, int *status, size_t *done)
{
    if (out->rc == TF_OK) {
        (*done)++;
        if (a->verbosity > QUIET)
            report_success(a, o, p, out, seconds);
        return 0;
    }
    if (hello_failed(a, c, status))
        return 1;
    if (!out->why[0])
        out->local = failure_is_local(o, out->rc, p, out);
    int st = exit_status(out);
    if (out->rc == TF_ECANCELED && g_signal)
        report_interrupted(a, o, p);
    else
        report_failure(a, c, o, out);
    if (*status == EXIT_OK || (a->keep_going && st > *status))
        *status = st;
    return breaks_connection(out->rc);
}

/* ---- pipelined gets ------------------------------------------------------- */

/* What the item callback of tf_get_many keeps of a batch: each item's bytes
   and the time it took (from the end of the one before, as they arrive in
   turn), and the label of the one on the bar. */
typedef struct batch {
    const op *ops;   /* the batch's operations, by item */
    size_t cur;      /* the item the callback is on; SIZE_MAX before any */
    uint64_t *bytes; /* per item: the last done reported */
    double *secs;    /* per item: how long it took */
    double mark;     /* when the current item started */
    char label[8192];
} batch;

/* Whether a get writes to standard output (--to -). */
static int to_stdout(const op *o)
{
    return o->kind == OP_GET && o->local && strcmp(o->local, "-") == 0;
}

/* Whether o can go in a tf_get_many / tf_put_many batch: a get (into a
   file, or to standard output: the answers come in order, so the bytes
   do too), a put of a file (not standard input, not --no-clobber: that
   asks the server first, nor -p), neither resumed (the batches do not
   resume). */
static int batchable(const client_args *a, const op *o)
{
    if (a->resume || o->no_match)
        return 0;
    if (o->kind == OP_GET)
        return 1;
    return o->kind == OP_PUT && strcmp(o->local, "-") != 0 && !a->no_clobber &&
           !(o->flags & (F_PARENTS | F_IF_ABSENT)) && !o->has_if_match;
}

/* The end of the batch that starts at ops[i]: the gets of the same
   operation word after it that can be batched too. */
static size_t batch_end(const client_args *a, size_t i)
{
    size_t j = i;
    while (j < a->nops && batchable(a, &a->ops[j]) && a->ops[j].group == a->ops[i].group &&
           a->ops[j].kind == a->ops[i].kind)
        j++;
    return j;
}

static int on_item_progress(void *user, size_t index, uint64_t done, uint64_t total)
{
    progress *p = user;
    batch *b = p->batch;
    if (p->tree)
        return tree_progress(p, index, done);
    if (!b) /* tf_get_many outside a batch: never, but harmless */
        return on_progress(user, done, total);
    double now = now_seconds();
    if (index != b->cur) {
        if (b->cur != SIZE_MAX)
            b->secs[b->cur] = now - b->mark;
        b->cur = index;
        b->mark = now;
        /* The label is for the bar alone (a batch's items do not talk):
           naming 10,000 small gets nobody sees cost a fifth of the CPU. */
        if (p->bar_enabled)
            describe(&b->ops[index], b->label, sizeof b->label);
        int drawn = p->drawn;
        double last = p->last_draw;
        *p = (progress){.bar_enabled = p->bar_enabled,
                        .rate = p->rate,
                        .label = b->label,
                        .what = b->label,
                        .batch = b,
                        .drawn = drawn,
                        .last_draw = last};
    }
    b->bytes[index] = done;
    b->secs[index] = now - b->mark;
    return on_progress(user, done, total);
}

/* Runs ops[from .. to), gets (or puts) of one operation word, as one
   tf_get_many (tf_put_many):
   the requests are pipelined, so each name costs no round trip of its own.
   Each is then reported in order as the one-by-one path reports it; a
   file's own failure does not stop the other names of the same get (they
   were already on their way), only the operations after them. Returns the
   index of the last operation it accounts for (the interrupted one after
   Ctrl-C); *broken says the connection was closed. */
static size_t run_batch(const client_args *a, tf_client *c, size_t from, size_t to,
                            progress *p, outcome *out, int *status, size_t *done, int *broken)
{
    size_t n = to - from, m = 0;
    int put = a->ops[from].kind == OP_PUT;
    const char *verb = put ? "put" : "get";
    tf_get_item *items = calloc(n, sizeof *items);
    tf_put_item *pitems = put ? calloc(n, sizeof *pitems) : NULL;
    size_t *item_of = calloc(n, sizeof *item_of); /* op -> item + 1, 0: not sent */
    batch b = {.ops = a->ops + from, .cur = SIZE_MAX};
    b.bytes = calloc(n, sizeof *b.bytes);
    b.secs = calloc(n, sizeof *b.secs);
    const op *batch_ops = NULL;
    op *sent = calloc(n, sizeof *sent);
    if (!items || !item_of || !b.bytes || !b.secs || !sent || (put && !pitems)) {
        fprintf(stderr, PROG ": out of memory\n");
        if (*status == EXIT_OK || a->keep_going)
            *status = *status > EXIT_FAILED ? *status : EXIT_FAILED;
        free(items);
        free(pitems);
        free(item_of);
        free(b.bytes);
        free(b.secs);
        free(sent);
        return to - 1;
    }
    /* Local refusals (--no-clobber, a read-only file) are known before
       anything is asked; they are reported in their place below. */
    for (size_t k = 0; k < n; k++) {
        const op *o = &a->ops[from + k];
        reset_outcome(out);
        if (!put && !to_stdout(o) && check_clobber_local(a, o, out) != 0)
            continue;
        sent[m] = *o;
        if (put)
            pitems[m] = (tf_put_item){.local_path = o->local, .name = o->name, .fd = -1};
        else if (to_stdout(o))
            items[m] = (tf_get_item){.name = o->name, .fd = STDOUT_FILENO};
        else
            items[m] = (tf_get_item){.name = o->name, .local_path = o->local, .fd = -1};
        item_of[k] = ++m;
    }
    batch_ops = sent;
    b.ops = batch_ops;
    *p = (progress){.bar_enabled = p->bar_enabled, .rate = a->rate, .label = verb,
                    .what = verb, .batch = &b};
    double start = now_seconds();
    /* Earlier list output must come out before these bytes (if stdout
       cannot take it, the items' own writes fail and say so). */
    if (!put && m > 0)
        (void)fflush(stdout);
    if (m > 0 && put)
        tf_put_many(c, pitems, m);
    else if (m > 0)
        tf_get_many(c, items, m);
    bar_erase(p);
    if (a->verbosity >= VERBOSE)
        fprintf(stderr, PROG ": %s: %zu names pipelined over one connection in %.3f s\n", verb,
                m, now_seconds() - start);
    p->batch = NULL;
    size_t k;
    for (k = 0; k < n; k++) {
        const op *o = &a->ops[from + k];
        reset_outcome(out);
        progress one = {.what = verb};
        if (!item_of[k]) {
            check_clobber_local(a, o, out);
        } else {
            size_t it = item_of[k] - 1;
            out->rc = put ? pitems[it].result : items[it].result;
            const char *msg = put ? pitems[it].message : items[it].message;
            out->msg = msg && msg[0] ? msg : NULL;
            struct stat st;
            if (put && stat(o->local, &st) == 0 && S_ISREG(st.st_mode))
                out->src_size = st.st_size;
            one.done = b.bytes[it];
            one.started = b.cur != SIZE_MAX && it <= b.cur;
            /* A put stored whole moved the file's size (a server without
               pipelined puts takes them one by one, reporting through the
               plain callback). */
            if (put && out->rc == TF_OK && out->src_size >= 0)
                one.done = (uint64_t)out->src_size;
        }
        if (finish_op(a, c, o, &one, out, item_of[k] ? b.secs[item_of[k] - 1] : 0, status,
                      done))
            *broken = 1;
        if (out->rc == TF_ECANCELED && g_signal)
            break;
    }
    free(items);
    free(pitems);
    free(item_of);
    free(b.bytes);
    free(b.secs);
    free(sent);
    return k < n ? from + k : to - 1;
}

static int run(client_args *a)
{
    progress p = {0};
    p.bar_enabled = a->verbosity > QUIET && isatty(STDERR_FILENO);
    tf_options_set_progress(a->opt, on_progress, &p);
    tf_options_set_item_progress(a->opt, on_item_progress, &p);
    set_handlers();
    double begin = now_seconds();
    int status = EXIT_OK;
    tf_client *c = connect_or_report(a, &status);
    if (!c)
        return status;
    /* A person reads a listing on a terminal; a program reads it anywhere
       else and gets the stable tab-separated form. */
    int stdout_tty = isatty(STDOUT_FILENO);
    tf_listing *names = NULL, *matched = NULL;
    size_t i, done = 0;
    status = expand_wildcards(a, c, &matched);
    outcome *out = status == PARSE_RUN ? malloc(sizeof *out) : NULL;
    if (!out) {
        tf_close(c);
        tf_listing_free(matched);
        if (status != PARSE_RUN)
            return status;
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAILED;
    }
    status = EXIT_OK;
    for (i = 0; i < a->nops; i++) {
        if (g_signal || (status != EXIT_OK && !a->keep_going))
            break;
        const op *o = &a->ops[i];
        if (!c) { /* --keep-going after a failure that closed the connection */
            int st = EXIT_OK;
            if (!(c = connect_or_report(a, &st))) {
                status = st > status ? st : status;
                break;
            }
        }
        size_t end = batch_end(a, i);
        if (end - i >= 2) {
            int broken = 0;
            i = run_batch(a, c, i, end, &p, out, &status, &done, &broken);
            if (broken) {
                tf_close(c);
                c = NULL;
            }
            continue;
        }
        char label[8192];
        snprintf(label, sizeof label, "%s %s", o->kind == OP_GET ? "get" : "put",
                 o->kind == OP_LIST ? "" : o->name);
        char what[8192];
        describe(o, what, sizeof what);
        const progress fresh = {.bar_enabled = p.bar_enabled,
                                .rate = a->rate,
                                .label = o->kind == OP_LIST ? "list" : label,
                                .what = what,
                                .talk = a->verbosity > QUIET,
                                .had = a->resume ? part_size(o) : 0};
        p = fresh;
        reset_outcome(out);
        double start = now_seconds();
        int human = (o->kind == OP_LIST || o->kind == OP_LS || o->kind == OP_STAT) &&
                    (a->human || stdout_tty);
        run_op(a, c, o, human, &names, &p, out);
        if (out->rc == TF_ECHECKSUM && o->kind == OP_GET && p.first > 0 && !g_signal) {
            /* The whole file's checksum failed after resuming: the file
               changed on the server since the part was kept (the library
               has dropped the part). Start over, once. */
            bar_erase(&p);
            if (a->verbosity > QUIET)
                fprintf(stderr,
                        PROG ": %s: changed on the server since the %" PRIu64 " bytes kept"
                             " (the whole file's checksum differs), starting over\n",
                        what, p.first);
            p = fresh;
            p.had = 0;
            reset_outcome(out);
            run_op(a, c, o, human, &names, &p, out);
        }
        /* A put --resume retried right after an interruption may find the
           server still holding the old attempt (its connection not yet
           seen to be dead): wait for it a few seconds, saying so. */
        for (int tries = 0; out->rc == TF_EBUSY && o->kind == OP_PUT && a->resume &&
                            tries < BUSY_TRIES && !g_signal;
             tries++) {
            if (tries == 0 && a->verbosity > QUIET)
                fprintf(stderr,
                        PROG ": %s: the server is still busy with the interrupted attempt;"
                             " waiting\n",
                        what);
            nap(BUSY_WAIT);
            if (g_signal)
                break;
            p = fresh;
            reset_outcome(out);
            run_op(a, c, o, human, &names, &p, out);
        }
        double seconds = now_seconds() - start;
        bar_erase(&p);
        if (finish_op(a, c, o, &p, out, seconds, &status, &done)) {
            tf_close(c);
            c = NULL;
        }
    }
    if (g_signal && status < 128)
        status = 128 + g_signal;
    if (!g_hello_told) /* a refused connection, as a failed connect, lists nothing */
        report_not_run(a, i, g_signal ? "interrupted" : "after the failure");
    free(out);
    tf_listing_free(names);
    tf_listing_free(matched);
    tf_close(c);
    if (a->verbosity >= VERBOSE)
        fprintf(stderr, PROG ": %zu of %zu operation%s done in %.3f s; connection closed\n",
                done, a->nops, a->nops == 1 ? "" : "s", now_seconds() - begin);
    return status;
}

int main(int argc, char **argv)
{
    client_args a;
    int status = parse_args(argc, argv, &a);
    if (status == PARSE_RUN)
        status = run(&a);
    for (size_t i = 0; a.ops && i < a.nops; i++)
        free(a.ops[i].owned);
    free(a.ops);
    tf_options_free(a.opt);
    return status;
}
