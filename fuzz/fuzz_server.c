/*
 * fuzz_server.c - the server's per-connection work fed arbitrary byte
 * streams. For each input, a socketpair: one end is served by
 * tf__server_serve_fd in a thread, as a worker serves an accepted
 * connection; on the other this harness writes the input while draining
 * (and keeping) whatever the server answers, shuts its sending side, and
 * reads to EOF.
 *
 * Input: byte 0 is a control byte, the rest is the stream.
 *   bit 0     1 = send the stream raw; 0 = a valid client hello first
 *   bits 1-2  which server: 0 default limits made small, 1 no overwrite,
 *             no checksums and a tiny name/list limit, 2 read-only
 *             (3 is 0 again)
 *   bits 3-5  the features that valid hello asks for: CHECKSUM (bit 3),
 *             RESUME (bit 4), STREAM (bit 5: size-less puts in chunks)
 *   bit 6     PUTX too (put extensions: conditions, mtime, parents,
 *             skip-if-same, no-go-ahead puts)
 *   bit 7     TREE too (paths; stat, mkdir, remove, rename, listdir)
 *
 * The served roots hold a few files and traps: an empty file, a directory,
 * a symlink to a file inside the root, one to a file outside it, a FIFO,
 * a file whose name breaks the name rules, and a sub-directory "sub" with
 * a file and a symlink "sub/up" to the directory outside the root that
 * holds the secret (a path through it must never reach that directory).
 * After each input the harness checks that the file outside the root was
 * neither sent nor changed and that nothing appeared beside it, that no
 * trap was replaced, moved or removed (the empty directory "dir" may be:
 * it is made again), that only regular files and directories were
 * created, that no upload temporary was left behind and that the
 * process's descriptors are the ones it had before (none leaked, none
 * closed or replaced); then it puts the root back as it was, so that every
 * input starts from the same state (and completed uploads cannot pile
 * up).
 *
 * Timeouts are short (the server never waits for this harness: it always
 * reads, and shuts its side once the input is out), so a server that makes
 * no progress for STUCK_S seconds is stuck: the run fails with the server
 * thread's stack (before libFuzzer's -timeout=5 would, with only ours).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <execinfo.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rootfs.h"
#include "fuzz.h"
#include "internal.h"
#include "wire.h"

#define NSERVERS 3
#define MAX_UPLOAD 4096
#define KEEP_OUTPUT ((size_t)1 << 20)
/* Under libFuzzer's -timeout=5, so that a stuck server thread is reported
   with its own stack, not only with the harness's. */
#define STUCK_S 3
/* Longer than any name the servers accept, so no error message that
   quotes a name can carry it. */
#define SECRET "fuzz-secret-outside-the-root-that-no-server-may-ever-send"
#define BAD_NAME "bad\001name"

static char base[256]; /* temporary directory holding everything */
static char roots[NSERVERS][300];
static tf_server *servers[NSERVERS];
static int rootfds[NSERVERS];
static char fds_before[4096]; /* the descriptor table before any input */
static uint8_t outbuf[KEEP_OUTPUT];

/* Regular files every root starts with (put may replace them). */
static const struct seed {
    const char *name;
    const char *data;
    size_t len;
} seeds[] = {
    {"hello.txt", "hi\n", 3},
    {"empty", "", 0},
    {"a", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 64},
    {BAD_NAME, "listed by nobody", 16},
    {"sub/inner.txt", "inner", 5},
};

/* Directories every root starts with (mkdir, rename and remove may
   change them: they are made again). */
static const char *const dirs[] = {"dir", "sub"};

/* The traps: names the server must neither serve as files nor replace. */
static const struct trap {
    const char *name;
    mode_t type;
} traps[] = {
    {"link", S_IFLNK},
    {"outside", S_IFLNK},
    {"fifo", S_IFIFO},
    {"sub/up", S_IFLNK},
};

/* Called from the connection thread: checks the entry is well formed. */
static void log_fn(void *user, const tf_request_log *e)
{
    (void)user;
    FUZZ_CHECK(e->peer && e->op && e->name && e->message);
    FUZZ_CHECK(strlen(e->peer) + strlen(e->op) + strlen(e->name) + strlen(e->message) <
               (size_t)1 << 20);
    FUZZ_CHECK(e->result <= 0 && e->result >= TF__ERR_LAST);
}

/* What came back, for studying a finding. */
static void dump_output(int which, size_t in, size_t kept)
{
    fprintf(stderr, "fuzz_server: server %d, %zu bytes in, %zu bytes back:", which, in,
            kept);
    for (size_t i = 0; i < kept && i < 4096; i++)
        fprintf(stderr, " %02x", outbuf[i]);
    fprintf(stderr, "\n");
}

/* The open descriptors and what they are, one "fd target" line each. */
static void fd_table(char *buf, size_t cap)
{
    size_t len = 0;
    char kept[8][256];
    int nkept = 0;
    buf[0] = '\0';
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] == '.' || fd == dirfd(d))
            continue;
        char target[256];
        ssize_t n = readlinkat(dirfd(d), de->d_name, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        /* A server keeps its staging directory open once it has taken an
           upload (storage_local.c, staging_dir): one such descriptor per
           directory is its own, not a leak; a second one would be. */
        size_t tl = strlen(target), sl = strlen("/" TF_TMP_DIR);
        if (tl > sl && strcmp(target + tl - sl, "/" TF_TMP_DIR) == 0 && nkept < 8) {
            int seen = 0;
            for (int k = 0; k < nkept; k++)
                seen |= strcmp(kept[k], target) == 0;
            if (!seen) {
                snprintf(kept[nkept++], sizeof kept[0], "%s", target);
                continue;
            }
        }
        int w = snprintf(buf + len, cap - len, "%d %s\n", fd, target);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
    }
    closedir(d);
}

static void write_file_at(int dirfd, const char *name, const char *data, size_t len)
{
    int fd =
        openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, data, len) == (ssize_t)len);
    close(fd);
}

/* Whether dirfd/name is a regular file holding exactly (data, len). */
static int same_content(int dirfd, const char *name, const char *data, size_t len)
{
    char buf[256];
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, buf, sizeof buf) : -1;
    close(fd);
    return n == (ssize_t)len && memcmp(buf, data, len) == 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Nothing but the secret and the roots may be in the directory outside. */
static void check_base(void)
{
    DIR *d = opendir(base);
    FUZZ_CHECK(d != NULL);
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strcmp(de->d_name, "secret") != 0 && strncmp(de->d_name, "root", 4) != 0)
            fprintf(stderr, "fuzz_server: \"%s\" appeared outside the roots\n", de->d_name);
        FUZZ_CHECK(strcmp(de->d_name, "secret") == 0 || strncmp(de->d_name, "root", 4) == 0);
        n++;
    }
    closedir(d);
    FUZZ_CHECK(n == 1 + NSERVERS);
}

static void cleanup(void)
{
    for (int i = 0; i < NSERVERS; i++) {
        tf_server_close(servers[i]);
        servers[i] = NULL;
        if (rootfds[i] >= 0)
            close(rootfds[i]);
        rootfds[i] = -1;
    }
    if (base[0])
        nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    base[0] = '\0';
}

static const char *temp_parent(void)
{
    const char *env = getenv("TF_FUZZ_TMPDIR");
    if (env && *env)
        return env;
    /* Uploads are fsync'd: on tmpfs that costs nothing. */
    if (access("/dev/shm", W_OK) == 0)
        return "/dev/shm";
    env = getenv("TMPDIR");
    return env && *env ? env : "/tmp";
}

static void init_once(void)
{
    if (base[0])
        return;
    snprintf(base, sizeof base, "%s/tf-fuzz-server-XXXXXX", temp_parent());
    FUZZ_CHECK(mkdtemp(base) != NULL);
    for (int i = 0; i < NSERVERS; i++)
        rootfds[i] = -1;
    atexit(cleanup);
    char path[400];
    snprintf(path, sizeof path, "%s/secret", base);
    int basefd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FUZZ_CHECK(basefd >= 0);
    write_file_at(basefd, "secret", SECRET, strlen(SECRET));
    close(basefd);

    for (int i = 0; i < NSERVERS; i++) {
        snprintf(roots[i], sizeof roots[i], "%s/root%d", base, i);
        FUZZ_CHECK(mkdir(roots[i], 0755) == 0);
        rootfds[i] = open(roots[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        FUZZ_CHECK(rootfds[i] >= 0);
        for (size_t k = 0; k < sizeof dirs / sizeof dirs[0]; k++)
            FUZZ_CHECK(mkdirat(rootfds[i], dirs[k], 0755) == 0);
        FUZZ_CHECK(symlinkat("hello.txt", rootfds[i], "link") == 0);
        FUZZ_CHECK(symlinkat(path, rootfds[i], "outside") == 0);
        FUZZ_CHECK(symlinkat(base, rootfds[i], "sub/up") == 0);
        FUZZ_CHECK(mkfifoat(rootfds[i], "fifo", 0644) == 0);
        for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++)
            write_file_at(rootfds[i], seeds[k].name, seeds[k].data, seeds[k].len);

        tf_options *opt;
        FUZZ_CHECK(tf_options_new(&opt) == TF_OK);
        tf_options_set(opt, TF_OPT_IO_TIMEOUT_MS, 200);
        tf_options_set(opt, TF_OPT_IDLE_TIMEOUT_MS, 200);
        tf_options_set(opt, TF_OPT_STOP_GRACE_MS, 200);
        /* The rate is measured over time: leave it out, for determinism. */
        tf_options_set(opt, TF_OPT_MIN_RATE, 0);
        tf_options_set(opt, TF_OPT_WORKERS, 1);
        tf_options_set(opt, TF_OPT_CHECKSUM, i != 1);
        tf_options_set(opt, TF_OPT_MAX_UPLOAD, MAX_UPLOAD);
        tf_options_set(opt, TF_OPT_MAX_NAME_LEN, i == 1 ? 8 : 32);
        tf_options_set(opt, TF_OPT_MAX_LIST_ENTRIES, i == 1 ? 2 : 64);
        tf_options_set(opt, TF_OPT_OVERWRITE, i == 1 ? 0 : 1);
        tf_options_set(opt, TF_OPT_READ_ONLY, i == 2);
        tf_options_set_log(opt, log_fn, NULL);
        char err[256];
        int rc = tf_server_open_ex(&servers[i], "127.0.0.1", "0", roots[i], opt, err,
                                   sizeof err);
        tf_options_free(opt);
        if (rc != TF_OK)
            fprintf(stderr, "fuzz_server: tf_server_open: %s\n", err);
        FUZZ_CHECK(rc == TF_OK);
    }
    fd_table(fds_before, sizeof fds_before);
}

static int is_seed(const char *path)
{
    for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++)
        if (strcmp(path, seeds[k].name) == 0)
            return 1;
    return 0;
}

static int is_dir(const char *path)
{
    for (size_t k = 0; k < sizeof dirs / sizeof dirs[0]; k++)
        if (strcmp(path, dirs[k]) == 0)
            return 1;
    return 0;
}

static const struct trap *find_trap(const char *path)
{
    for (size_t k = 0; k < sizeof traps / sizeof traps[0]; k++)
        if (strcmp(path, traps[k].name) == 0)
            return &traps[k];
    return NULL;
}

/* Upload temporaries must be gone once a connection ends, except the
   partial data a resumable upload keeps on purpose. */
static void check_tmp_dir(int rootfd)
{
    int fd = openat(rootfd, TF_TMP_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    FUZZ_CHECK(d != NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strncmp(de->d_name, TF_TMP_RESUME_PREFIX, strlen(TF_TMP_RESUME_PREFIX)) == 0) {
            /* Kept on purpose; removed here so that inputs start alike. */
            FUZZ_CHECK(unlinkat(dirfd(d), de->d_name, 0) == 0);
            continue;
        }
        fprintf(stderr, "fuzz_server: upload temporary left behind: %s\n", de->d_name);
        FUZZ_CHECK(!"an upload temporary was left behind");
    }
    closedir(d);
}

/* Whether "sub/up" went with a renamed "sub" (a directory is renamed with
   its contents); it is made again then, and only then. */
static int up_moved;

/* Removes dirfd/path, made by a request: only regular files of at most
   MAX_UPLOAD bytes and directories of them may have been made (and "sub"
   renamed holds the link that was "sub/up"). */
static void remove_made(int at, const char *name, const char *path)
{
    struct stat st;
    FUZZ_CHECK(fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0);
    if (S_ISLNK(st.st_mode)) {
        char target[300];
        ssize_t n = readlinkat(at, name, target, sizeof target - 1);
        if (n > 0 && (size_t)n == strlen(base) && memcmp(target, base, (size_t)n) == 0 &&
            strcmp(name, "up") == 0) {
            FUZZ_CHECK(unlinkat(at, name, 0) == 0);
            up_moved = 1;
            return;
        }
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        fprintf(stderr, "fuzz_server: \"%s\" was made and is no file or directory\n", path);
    FUZZ_CHECK(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
    if (S_ISREG(st.st_mode)) {
        FUZZ_CHECK(st.st_size <= MAX_UPLOAD);
        FUZZ_CHECK(unlinkat(at, name, 0) == 0);
        return;
    }
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    DIR *d = fdopendir(fd);
    FUZZ_CHECK(d != NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            remove_made(dirfd(d), de->d_name, path);
    closedir(d);
    FUZZ_CHECK(unlinkat(at, name, AT_REMOVEDIR) == 0);
}

/* Walks directory prefix ("" the root) of root rootfd: keeps the seeds,
   checks the traps, recurses into the starting directories and removes
   what requests made. */
static void reset_dir(int rootfd, const char *prefix)
{
    int fd = openat(rootfd, prefix[0] ? prefix : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                        O_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    DIR *d = fdopendir(fd);
    FUZZ_CHECK(d != NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        char path[512];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "/" : "", name);
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(path, TF_TMP_DIR) == 0)
            continue;
        const struct trap *t = find_trap(path);
        struct stat st;
        FUZZ_CHECK(fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0);
        if (is_seed(path) && !S_ISREG(st.st_mode)) {
            remove_made(dirfd(d), name, path); /* removed, and made again otherwise */
        } else if (is_seed(path)) {
            continue;
        } else if (t && (st.st_mode & S_IFMT) != t->type && strchr(path, '/')) {
            /* "sub" was renamed away (its link with it) and made again:
               what is under the trap's name now was made by a request.
               The link must then be found where "sub" went (up_moved). */
            remove_made(dirfd(d), name, path);
        } else if (t) {
            if ((st.st_mode & S_IFMT) != t->type)
                fprintf(stderr, "fuzz_server: \"%s\" was replaced\n", path);
            FUZZ_CHECK((st.st_mode & S_IFMT) == t->type);
        } else if (is_dir(path) && S_ISDIR(st.st_mode)) {
            reset_dir(rootfd, path);
        } else {
            remove_made(dirfd(d), name, path);
        }
    }
    closedir(d);
}

/* Puts root i back as init_once made it, checking on the way that the
   traps and the file outside the root are untouched. */
static void reset_root(int i)
{
    int rootfd = rootfds[i];
    check_tmp_dir(rootfd);
    reset_dir(rootfd, "");
    /* The starting directories (an empty one may have been removed or
       renamed away), then the seeds. */
    for (size_t k = 0; k < sizeof dirs / sizeof dirs[0]; k++) {
        struct stat st;
        if (fstatat(rootfd, dirs[k], &st, AT_SYMLINK_NOFOLLOW) != 0)
            FUZZ_CHECK(mkdirat(rootfd, dirs[k], 0755) == 0);
    }
    for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
        const struct seed *s = &seeds[k];
        if (!same_content(rootfd, s->name, s->data, s->len))
            write_file_at(rootfd, s->name, s->data, s->len);
    }
    if (up_moved) {
        struct stat st;
        if (fstatat(rootfd, "sub/up", &st, AT_SYMLINK_NOFOLLOW) != 0)
            FUZZ_CHECK(symlinkat(base, rootfd, "sub/up") == 0);
        up_moved = 0;
    }
    /* Every trap still there (a symlink, a FIFO is never moved or removed). */
    for (size_t k = 0; k < sizeof traps / sizeof traps[0]; k++) {
        struct stat st;
        int there = fstatat(rootfd, traps[k].name, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (!there)
            fprintf(stderr, "fuzz_server: \"%s\" was removed or moved\n", traps[k].name);
        FUZZ_CHECK(there && (st.st_mode & S_IFMT) == traps[k].type);
    }
    /* Now exactly the seeds, the traps, the directories and the upload
       directory ("dir" is empty, "sub" holds its seed and trap). */
    size_t entries = 0;
    DIR *d = fdopendir(openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    FUZZ_CHECK(d != NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        entries += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                   strcmp(de->d_name, TF_TMP_DIR) != 0;
    closedir(d);
    FUZZ_CHECK(entries == sizeof seeds / sizeof seeds[0] - 1 + sizeof traps / sizeof traps[0] -
                              1 + sizeof dirs / sizeof dirs[0]);

    int basefd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FUZZ_CHECK(basefd >= 0);
    FUZZ_CHECK(same_content(basefd, "secret", SECRET, strlen(SECRET)));
    close(basefd);
    check_base();
}

/* Weak: present in sanitizer builds, which symbolize the stack. */
void __sanitizer_print_stack_trace(void) __attribute__((weak));

static void print_stack(int sig)
{
    (void)sig;
    if (__sanitizer_print_stack_trace) {
        __sanitizer_print_stack_trace();
    } else {
        void *frames[64];
        backtrace_symbols_fd(frames, backtrace(frames, 64), 2);
    }
}

/* The server thread is stuck: prints its stack (from a signal handler run
   on that thread) and fails the run. */
static void stuck(pthread_t tid, const char *what)
{
    fprintf(stderr, "fuzz_server: %s; the server thread's stack:\n", what);
    signal(SIGUSR1, print_stack);
    pthread_kill(tid, SIGUSR1);
    sleep(1);
    FUZZ_CHECK(!"the server thread is stuck");
}

/* Joins the server thread; one still busy after STUCK_S is stuck. */
static void join_server(pthread_t tid)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += STUCK_S;
    int rc = pthread_timedjoin_np(tid, NULL, &ts);
    if (rc == ETIMEDOUT)
        stuck(tid, "the connection is over but the server thread still runs");
    FUZZ_CHECK(rc == 0);
}

struct serve_arg {
    tf_server *srv;
    int fd;
};

static void *serve_main(void *p)
{
    struct serve_arg *a = p;
    tf__server_serve_fd(a->srv, a->fd, "fuzz");
    return NULL;
}

/* Writes the stream while reading what comes back, so that neither side
   can block the other; then shuts the sending side and reads to EOF.
   Returns the bytes kept from the server (at most KEEP_OUTPUT). */
static size_t talk(pthread_t tid, int fd, const uint8_t *hello, size_t hello_len,
                   const uint8_t *data, size_t size)
{
    size_t sent = 0, total = hello_len + size, kept = 0;
    int writing = 1;
    for (;;) {
        if (writing && sent == total) {
            shutdown(fd, SHUT_WR);
            writing = 0;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (writing ? POLLOUT : 0)};
        int r = poll(&p, 1, STUCK_S * 1000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            stuck(tid, writing ? "the server reads nothing and sends nothing"
                               : "the server neither sends nor closes");
        FUZZ_CHECK(r > 0);
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t sink[65536];
            ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                /* EOF, or reset by a server that closed first. Say
                   goodbye at once: a server lingering for our EOF after
                   its error reply would otherwise wait its full linger. */
                shutdown(fd, SHUT_RDWR);
                break;
            }
            if (n > 0 && kept < KEEP_OUTPUT) {
                size_t k = (size_t)n < KEEP_OUTPUT - kept ? (size_t)n : KEEP_OUTPUT - kept;
                memcpy(outbuf + kept, sink, k);
                kept += k;
            }
        }
        if (writing && (p.revents & POLLOUT)) {
            const uint8_t *src =
                sent < hello_len ? hello + sent : data + (sent - hello_len);
            size_t left = sent < hello_len ? hello_len - sent : total - sent;
            ssize_t n = send(fd, src, left, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                writing = 0; /* the server is gone; read what it said */
        }
    }
    return kept;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    init_once();
    uint8_t ctl = data[0];
    data++, size--;
    int which = ((ctl >> 1) & 3) % NSERVERS;
    uint8_t hello[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello h = {.version_min = 1,
                              .version_max = 1,
                              .features = (ctl & 8 ? TF_FEATURE_CHECKSUM : 0) |
                                          (ctl & 16 ? TF_FEATURE_RESUME : 0) |
                                          (ctl & 32 ? TF_FEATURE_STREAM : 0) |
                                          (ctl & 64 ? TF_FEATURE_PUTX : 0) |
                                          (ctl & 128 ? TF_FEATURE_TREE : 0)};
    size_t hello_len = 0;
    if (!(ctl & 1))
        hello_len = (size_t)tf__wire_encode_client_hello(hello, sizeof hello, &h);

    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    FUZZ_CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);

    struct serve_arg arg = {servers[which], sv[1]};
    pthread_t tid;
    FUZZ_CHECK(pthread_create(&tid, NULL, serve_main, &arg) == 0);
    size_t kept = talk(tid, sv[0], hello, hello_len, data, size);
    join_server(tid);
    close(sv[0]);

    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("TF_FUZZ_VERBOSE") != NULL;
    if (verbose)
        dump_output(which, hello_len + size, kept);

    /* The file behind the "outside" symlink must never be served. */
    /* (libFuzzer learns the secret from these very comparisons, so an
       input may carry it: then a put and a get echo it legitimately.) */
    if (memmem(outbuf, kept, SECRET, strlen(SECRET)) != NULL &&
        memmem(data, size, SECRET, strlen(SECRET)) == NULL) {
        fprintf(stderr, "fuzz_server: the server sent the file outside the root\n");
        dump_output(which, hello_len + size, kept);
        FUZZ_CHECK(!"the server sent the file outside the root");
    }
    /* The server closes what it opens, and only that: the descriptor
       table is the same after each input as before the first one. */
    char fds_now[sizeof fds_before];
    fd_table(fds_now, sizeof fds_now);
    if (strcmp(fds_now, fds_before) != 0) {
        fprintf(stderr, "fuzz_server: descriptors changed; before:\n%safter:\n%s",
                fds_before, fds_now);
        dump_output(which, hello_len + size, kept);
        FUZZ_CHECK(!"the descriptor table changed");
    }
    reset_root(which);
    return 0;
}
