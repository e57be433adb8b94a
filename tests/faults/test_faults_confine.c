/*
 * test_faults_confine.c - symlink, FIFO and other tricks planted in the
 * served root, and a file swapped for a symlink while gets and puts run.
 *
 * Outside the root, in a temporary directory, live a passwd-like file and a
 * secret with distinctive content, a file to be overwritten and a directory.
 * Inside the root: symlinks to /etc/passwd, to those files, to the directory,
 * to ".." and to a file inside the root; a FIFO, a Unix socket, a device
 * node, a subdirectory, and a hard link to a file outside. Every special
 * entry is left out of the listing and refused by get and put (quickly: a
 * FIFO must not hang anyone); the hard link is served, since it IS a regular
 * file of the root (the OS cannot tell it from any other). A thread swaps a
 * name between a real file and a symlink to the secret while gets, lists
 * and puts run: gets return the real content or a refusal, never the
 * secret's. A root whose upload directory is a symlink outside gets no
 * upload written there and no file swept from there. Afterwards every file
 * outside is byte-for-byte what it was, and where the file system keeps
 * access times, none of them was even read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "rawpeer.h"
#include "testutil.h"
#include "wire.h"

#define SECRET "SECRET-OUTSIDE-THE-ROOT-7f3a9c\n"
#define PASSWD "root:x:0:0:FAKE-PASSWD-MARKER-51c2:/root:/bin/sh\n"
#define VICTIM "VICTIM-ORIGINAL-CONTENT-e81d\n"
#define HARD "HARD-LINKED-FROM-OUTSIDE-0b44\n"
#define REAL "the real file inside the root\n"
#define SWAP_REAL "SWAP-REAL-CONTENT-2d6e\n"
#define PUT_DATA "PUT-BY-A-CLIENT-99aa\n"
#define OLD_ATIME 946684800 /* 2000-01-01: any read after this shows */

/* ---- a snapshot of everything outside ------------------------------------------ */

#define SNAP_MAX 64
typedef struct snap_entry {
    char path[512];
    mode_t mode;
    off_t size;
    struct timespec mtime;
    char link[512];
} snap_entry;

static snap_entry g_snap[SNAP_MAX];
static int g_nsnap;

static int snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag;
    (void)ftw;
    if (g_nsnap == SNAP_MAX)
        return -1;
    snap_entry *e = &g_snap[g_nsnap++];
    memset(e, 0, sizeof *e);
    snprintf(e->path, sizeof e->path, "%s", path);
    e->mode = st->st_mode;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    if (S_ISLNK(st->st_mode))
        assert_true(readlink(path, e->link, sizeof e->link - 1) >= 0);
    return 0;
}

static int take_snapshot(const char *dir, snap_entry *out)
{
    g_nsnap = 0;
    assert_int_equal(nftw(dir, snap_one, 16, FTW_PHYS), 0);
    memcpy(out, g_snap, sizeof g_snap);
    return g_nsnap;
}

typedef struct fixture {
    char outside[256]; /* files a client must never reach */
    char stage[256];   /* the swapper's staging area, outside too */
    char root[256];
    test_server server;
    int have_device, have_hardlink;
    snap_entry outside_before[SNAP_MAX]; /* taken before the server starts */
    int n_outside;
    int outside_checked; /* test_faults_outside_untouched ran (it reads them) */
} fixture;

static void path_in(char *buf, size_t len, const char *dir, const char *name)
{
    assert_true(snprintf(buf, len, "%s/%s", dir, name) < (int)len);
}

static void write_at(const char *dir, const char *name, const char *text)
{
    char p[512];
    path_in(p, sizeof p, dir, name);
    tu_write_file(p, text, strlen(text));
}

static void symlink_at(const char *target, const char *dir, const char *name)
{
    char p[512];
    path_in(p, sizeof p, dir, name);
    assert_int_equal(symlink(target, p), 0);
}

/* Sets a file's access time far back, so that any later read moves it. */
static void age_atime(const char *dir, const char *name)
{
    char p[512];
    path_in(p, sizeof p, dir, name);
    struct timespec t[2] = {{OLD_ATIME, 0}, {0, UTIME_OMIT}};
    assert_int_equal(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW), 0);
}

static time_t atime_of(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    path_in(p, sizeof p, dir, name);
    assert_int_equal(lstat(p, &st), 0);
    return st.st_atime;
}

/* ---- setup ------------------------------------------------------------------------ */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char p[512], q[512];
    tu_mkdtemp(f->outside, sizeof f->outside);
    tu_mkdtemp(f->stage, sizeof f->stage);
    tu_mkdtemp(f->root, sizeof f->root);

    write_at(f->outside, "secret", SECRET);
    write_at(f->outside, "passwd", PASSWD);
    write_at(f->outside, "victim", VICTIM);
    write_at(f->outside, "hard", HARD);
    path_in(p, sizeof p, f->outside, "dir");
    assert_int_equal(mkdir(p, 0755), 0);
    write_at(p, "inner.txt", SECRET);

    write_at(f->root, "real.txt", REAL);
    write_at(f->root, "swap.txt", SWAP_REAL);
    symlink_at("/etc/passwd", f->root, "etc_passwd");
    path_in(q, sizeof q, f->outside, "passwd");
    symlink_at(q, f->root, "passwd");
    path_in(q, sizeof q, f->outside, "secret");
    symlink_at(q, f->root, "secret");
    path_in(q, sizeof q, f->outside, "victim");
    symlink_at(q, f->root, "victim");
    path_in(q, sizeof q, f->outside, "dir");
    symlink_at(q, f->root, "outdir");
    symlink_at("..", f->root, "dotdot");
    symlink_at("real.txt", f->root, "inner_link");
    path_in(q, sizeof q, f->root, "real.txt");
    symlink_at(q, f->root, "inner_abs");
    symlink_at("does-not-exist", f->root, "dangling");
    path_in(p, sizeof p, f->root, "fifo");
    assert_int_equal(mkfifo(p, 0644), 0);
    path_in(p, sizeof p, f->root, "subdir");
    assert_int_equal(mkdir(p, 0755), 0);
    write_at(p, "x.txt", REAL);

    /* A Unix socket file. */
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    path_in(sun.sun_path, sizeof sun.sun_path, f->root, "sock");
    assert_int_equal(bind(sfd, (struct sockaddr *)&sun, sizeof sun), 0);
    close(sfd);

    /* A device node (a copy of /dev/null): root only. */
    path_in(p, sizeof p, f->root, "null");
    f->have_device = mknod(p, S_IFCHR | 0666, makedev(1, 3)) == 0;

    /* A hard link to a file outside: needs the same file system. */
    path_in(p, sizeof p, f->outside, "hard");
    path_in(q, sizeof q, f->root, "hard.txt");
    f->have_hardlink = link(p, q) == 0;

    /* From here on, a read of these shows in their access time. */
    age_atime(f->outside, "secret");
    age_atime(f->outside, "passwd");
    age_atime(f->outside, "victim");
    age_atime(f->outside, "dir/inner.txt");
    f->n_outside = take_snapshot(f->outside, f->outside_before);

    tu_server_start_in(&f->server, f->root, NULL);
    *state = f;
    return 0;
}

static void test_faults_outside_untouched(void **state);

static int teardown(void **state)
{
    fixture *f = *state;
    /* ctest runs each test on its own (one entry each), so every one of
       them ends with the check that nothing outside the root changed. */
    if (f == NULL)
        return -1; /* the setup failed */
    /* The server first, so that a failed check cannot leave it running. */
    tu_server_stop(&f->server, 1);
    if (!f->outside_checked)
        test_faults_outside_untouched(state);
    tu_rm_rf(f->outside);
    tu_rm_rf(f->stage);
    free(f);
    return 0;
}

/* ---- what the server shows and refuses ------------------------------------------ */

static void test_faults_special_entries_refused(void **state)
{
    fixture *f = *state;
    tf_client *c = tu_connect(&f->server, NULL);

    /* The listing holds the regular files only; the hard link is one. */
    tf_listing *l;
    assert_int_equal(tf_list(c, &l), TF_OK);
    const char *want[] = {"hard.txt", "real.txt", "swap.txt"};
    size_t n = tf_listing_count(l), k = 0;
    for (size_t i = 0; i < 3; i++) {
        if (i == 0 && !f->have_hardlink)
            continue;
        assert_true(k < n);
        assert_string_equal(tf_listing_at(l, k)->name, want[i]);
        k++;
    }
    assert_int_equal(n, k);
    tf_listing_free(l);

    /* Every special entry: get refused, and promptly (a FIFO would block). */
    static const char *const special[] = {
        "etc_passwd", "passwd",   "secret", "victim", "outdir", "dotdot", "inner_link",
        "inner_abs",  "dangling", "fifo",   "sock",   "subdir", "null",   ".tcpfile-tmp"};
    int refused = 0;
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        if (strcmp(special[i], "null") == 0 && !f->have_device)
            continue;
        void *d = NULL;
        size_t len = 0;
        int64_t t0 = tu_now_ms();
        int rc = tf_get_mem(c, special[i], &d, &len);
        int64_t took = tu_now_ms() - t0;
        if (rc != TF_EACCES &&
            !(rc == TF_ENOENT && strcmp(special[i], ".tcpfile-tmp") == 0) &&
            !(rc == TF_EISDIR && strcmp(special[i], "subdir") == 0)) /* with TREE */
            fail_msg("get \"%s\": %s (%s), expected TF_EACCES", special[i], tf_errname(rc),
                     tf_errmsg(c));
        if (took > 1000)
            fail_msg("get \"%s\" took %lld ms", special[i], (long long)took);
        assert_null(d);
        refused++;

        /* And put: refused before any data moves, the entry left as it was. */
        t0 = tu_now_ms();
        rc = tf_put_mem(c, PUT_DATA, strlen(PUT_DATA), special[i]);
        took = tu_now_ms() - t0;
        if (rc != TF_EACCES && !(rc == TF_EISDIR && strcmp(special[i], "subdir") == 0))
            fail_msg("put \"%s\": %s (%s), expected TF_EACCES", special[i], tf_errname(rc),
                     tf_errmsg(c));
        if (took > 1000)
            fail_msg("put \"%s\" took %lld ms", special[i], (long long)took);
        refused++;
    }
    char p[512];
    struct stat st;
    path_in(p, sizeof p, f->root, "victim");
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode)); /* not replaced, not followed */
    path_in(p, sizeof p, f->root, "fifo");
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));

    /* The regular files are served. */
    void *d;
    size_t len;
    assert_int_equal(tf_get_mem(c, "real.txt", &d, &len), TF_OK);
    assert_int_equal(len, strlen(REAL));
    assert_memory_equal(d, REAL, len);
    tf_free(d);
    if (f->have_hardlink) {
        /* A hard link to a file outside is a regular file of the root: it
           is served, and there is no way to tell. Documented, not a bug. */
        assert_int_equal(tf_get_mem(c, "hard.txt", &d, &len), TF_OK);
        assert_int_equal(len, strlen(HARD));
        assert_memory_equal(d, HARD, len);
        tf_free(d);
    }

    /* Names that try to leave the root never reach the file system. */
    int fd = rp_connect(f->server.port);
    assert_true(rp_handshake(fd, 0) >= 0);
    char up[512];
    snprintf(up, sizeof up, "../%s/secret", strrchr(f->outside, '/') + 1);
    const char *escapes[] = {"/etc/passwd", up, "subdir/x.txt", "..", "outdir/inner.txt"};
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        for (uint8_t op = TF_OP_GET; op <= TF_OP_PUT; op++) {
            tf_wire_response r;
            assert_int_equal(rp_send_request(fd, op, 0, (uint16_t)strlen(escapes[i]),
                                             op == TF_OP_PUT ? 5 : 0, 0, escapes[i], NULL),
                             0);
            assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
            assert_int_equal(r.status, tf__wire_status(TF_EINVAL));
            refused++;
        }
    }
    assert_int_equal(rp_list_ok(fd), 0);
    close(fd);
    tf_close(c);
    printf("faults: confinement: %d gets and puts of symlinks, a FIFO, a socket, %sa "
           "directory and escaping names refused; hard link %s\n",
           refused, f->have_device ? "a device, " : "",
           f->have_hardlink ? "served (a regular file: the OS cannot tell)" : "not tested");
}

/* ---- a name swapped under the server's feet ---------------------------------------- */

typedef struct swapper {
    const fixture *f;
    atomic_int stop;
    long swaps;
} swapper;

static void *swap_main(void *arg)
{
    swapper *sw = arg;
    char target[512], link_stage[512], real_stage[512], name[512];
    path_in(target, sizeof target, sw->f->outside, "secret");
    path_in(link_stage, sizeof link_stage, sw->f->stage, "link");
    path_in(real_stage, sizeof real_stage, sw->f->stage, "real");
    path_in(name, sizeof name, sw->f->root, "swap.txt");
    while (!atomic_load(&sw->stop)) {
        /* rename() replaces the name atomically: it is always one or the
           other, and the server cannot win by timing alone. */
        unlink(link_stage);
        if (symlink(target, link_stage) == 0)
            rename(link_stage, name);
        tu_sleep_ms(1);
        int fd = open(real_stage, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            ssize_t w = write(fd, SWAP_REAL, strlen(SWAP_REAL));
            close(fd);
            if (w == (ssize_t)strlen(SWAP_REAL))
                rename(real_stage, name);
        }
        sw->swaps++;
        tu_sleep_ms(1);
    }
    return NULL;
}

static void test_faults_swapped_for_a_symlink(void **state)
{
    fixture *f = *state;
    swapper sw = {.f = f};
    atomic_init(&sw.stop, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, swap_main, &sw), 0);
    tf_client *c = tu_connect(&f->server, NULL);
    tf_client *writer = tu_connect(&f->server, NULL);
    long ok = 0, refused = 0, gone = 0, listed = 0, puts_ok = 0, puts_refused = 0;
    char local[512];
    path_in(local, sizeof local, f->stage, "got.txt");
    int64_t end = tu_now_ms() + 1500, hard_end = tu_now_ms() + 6000;
    for (int i = 0;
         tu_now_ms() < end || ((ok == 0 || refused == 0) && tu_now_ms() < hard_end); i++) {
        /* Listed first, then fetched: the swap may come in between. */
        tf_listing *l;
        assert_int_equal(tf_list(c, &l), TF_OK);
        for (size_t k = 0; k < tf_listing_count(l); k++)
            listed += strcmp(tf_listing_at(l, k)->name, "swap.txt") == 0;
        tf_listing_free(l);
        void *d = NULL;
        size_t len = 0;
        int rc =
            i % 4 == 3 ? tf_get(c, "swap.txt", local) : tf_get_mem(c, "swap.txt", &d, &len);
        if (rc == TF_OK && i % 4 == 3) {
            d = tu_read_file(local, &len);
            unlink(local);
        }
        if (rc == TF_OK) {
            /* The swapper's real file, or what a put below stored. */
            int real = len == strlen(SWAP_REAL) && memcmp(d, SWAP_REAL, len) == 0;
            int put = len == strlen(PUT_DATA) && memcmp(d, PUT_DATA, len) == 0;
            if (!real && !put)
                fail_msg("get of swap.txt returned %zu bytes that are no real file's%s",
                         len, memmem(d, len, "SECRET", 6) ? ": THE SECRET LEAKED" : "");
            ok++;
        } else if (rc == TF_EACCES) {
            refused++;
        } else if (rc == TF_ENOENT) {
            gone++;
        } else {
            fail_msg("get of swap.txt: %s (%s)", tf_errname(rc), tf_errmsg(c));
        }
        if (i % 4 == 3)
            free(d);
        else
            tf_free(d);
        assert_int_equal(tu_file_size(local), -1); /* no partial file, ever */

        /* Puts to the same name: stored or refused, never through the link. */
        if (i % 8 == 0) {
            rc = tf_put_mem(writer, PUT_DATA, strlen(PUT_DATA), "swap.txt");
            if (rc == TF_OK)
                puts_ok++;
            else if (rc == TF_EACCES)
                puts_refused++;
            else
                fail_msg("put of swap.txt: %s (%s)", tf_errname(rc), tf_errmsg(writer));
        }
    }
    atomic_store(&sw.stop, 1);
    pthread_join(t, NULL);
    tf_close(c);
    tf_close(writer);
    /* Both outcomes must have happened, or the race was not run. */
    assert_true(ok > 0);
    assert_true(refused > 0);
    printf(
        "faults: swap-race: %ld swaps; %ld gets returned the real file, %ld were refused "
        "(a symlink at that instant), %ld found no file, 0 returned the secret; %ld puts "
        "stored, %ld refused, none followed the link; swap.txt listed %ld times\n",
        sw.swaps, ok, refused, gone, puts_ok, puts_refused, listed);
}

/* ---- an upload directory that points outside ---------------------------------------- */

static void test_faults_upload_dir_symlink(void **state)
{
    fixture *f = *state;
    char root[256], tmpdir[512], planted[600], p[512];
    tu_mkdtemp(root, sizeof root);
    path_in(tmpdir, sizeof tmpdir, f->stage, "uploads");
    assert_int_equal(mkdir(tmpdir, 0700), 0);
    path_in(planted, sizeof planted, tmpdir, "up-0123456789abcdef");
    tu_write_file(planted, "planted", 7);
    path_in(p, sizeof p, root, ".tcpfile-tmp");
    assert_int_equal(symlink(tmpdir, p), 0);
    write_at(root, "here.txt", REAL);

    /* The start-up sweep must not reach through the link... */
    test_server s;
    tu_server_start_in(&s, root, NULL);
    assert_int_equal(tu_file_size(planted), 7);
    /* ...nor must an upload write there. */
    tf_client *c = tu_connect(&s, NULL);
    int rc = tf_put_mem(c, PUT_DATA, strlen(PUT_DATA), "new.txt");
    if (rc == TF_OK)
        fail_msg("an upload went through a .tcpfile-tmp symlink");
    char why[600];
    snprintf(why, sizeof why, "%s", tf_errmsg(c));
    /* Refused with a message that names the problem, not "no such file". */
    assert_int_equal(rc, TF_EIO);
    assert_non_null(strstr(why, ".tcpfile-tmp"));
    assert_int_equal(tu_count_prefix(tmpdir, ""), 3); /* ".", "..", the planted file */
    path_in(p, sizeof p, root, "new.txt");
    assert_int_equal(tu_file_size(p), -1);
    void *d;
    size_t len;
    assert_int_equal(tf_get_mem(c, "here.txt", &d, &len), TF_OK);
    assert_memory_equal(d, REAL, len);
    tf_free(d);
    tf_close(c);
    tu_server_stop(&s, 1);
    assert_int_equal(tu_file_size(planted), 7);
    printf("faults: upload-dir-symlink: a .tcpfile-tmp symlink to outside: upload refused "
           "(%s: %s), nothing written or swept there\n",
           tf_errname(rc), why);
}

/* ---- a staging directory another user made or opened ------------------------------------- */

/* A local user who can write in the root makes .tcpfile-tmp before the
   server does (here: owned by "nobody", open to all, with a temporary of
   hers inside). The server must neither write there nor sweep her files:
   she could read uploads and swap a temporary before it is published. */
static void test_faults_upload_dir_foreign(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        printf("faults: upload-dir-foreign: skipped (needs root to chown)\n");
        skip();
    }
    char root[256], tmpdir[512], planted[600], p[512];
    tu_mkdtemp(root, sizeof root);
    path_in(tmpdir, sizeof tmpdir, root, ".tcpfile-tmp");
    assert_int_equal(mkdir(tmpdir, 0777), 0);
    assert_int_equal(chown(tmpdir, 65534, 65534), 0);
    assert_int_equal(chmod(tmpdir, 0777), 0);
    path_in(planted, sizeof planted, tmpdir, "up-0123456789abcdef");
    tu_write_file(planted, "planted", 7);
    assert_int_equal(chown(planted, 65534, 65534), 0);

    test_server s;
    tu_server_start_in(&s, root, NULL);
    assert_int_equal(tu_file_size(planted), 7); /* not swept */
    tf_client *c = tu_connect(&s, NULL);
    int rc = tf_put_mem(c, PUT_DATA, strlen(PUT_DATA), "new.txt");
    if (rc == TF_OK)
        fail_msg("an upload was staged in a .tcpfile-tmp owned by another user");
    char why[600];
    snprintf(why, sizeof why, "%s", tf_errmsg(c));
    assert_int_equal(rc, TF_EIO);
    assert_non_null(strstr(why, ".tcpfile-tmp"));
    assert_non_null(strstr(why, "uid 65534"));
    path_in(p, sizeof p, root, "new.txt");
    assert_int_equal(tu_file_size(p), -1);
    assert_int_equal(tu_count_prefix(tmpdir, ""), 3); /* ".", "..", hers */
    /* Still refused on the next try (checked on every open), and gets go on. */
    assert_int_equal(tf_put_mem(c, PUT_DATA, strlen(PUT_DATA), "new.txt"), TF_EIO);
    tf_close(c);
    tu_server_stop(&s, 0);
    assert_int_equal(tu_file_size(planted), 7);
    struct stat st;
    assert_int_equal(stat(tmpdir, &st), 0);
    assert_int_equal(st.st_uid, 65534); /* not taken over or changed either */
    assert_int_equal(st.st_mode & 0777, 0777);
    tu_rm_rf(root);
    printf("faults: upload-dir-foreign: a .tcpfile-tmp of uid 65534, mode 0777: uploads "
           "refused (%s), nothing written or swept there\n",
           why);
}

/* The server's own .tcpfile-tmp left open to others (by hand, or by an
   older version) is made private before use; temporaries in it are 0600,
   and a published upload gets the usual 0666 & umask. */
static void test_faults_upload_dir_private(void **state)
{
    (void)state;
    char root[256], tmpdir[512], p[600];
    tu_mkdtemp(root, sizeof root);
    path_in(tmpdir, sizeof tmpdir, root, ".tcpfile-tmp");
    assert_int_equal(mkdir(tmpdir, 0700), 0);
    assert_int_equal(chmod(tmpdir, 0777), 0);
    test_server s;
    tu_server_start_in(&s, root, NULL);
    tf_client *c = tu_connect(&s, NULL);
    assert_int_equal(tf_put_mem(c, PUT_DATA, strlen(PUT_DATA), "new.txt"), TF_OK);
    struct stat st;
    assert_int_equal(stat(tmpdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    mode_t mask = umask(0);
    umask(mask);
    path_in(p, sizeof p, root, "new.txt");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0666 & ~mask);
    tf_close(c);

    /* A keyed upload cut off after 10 bytes: its partial stays, private. */
    int fd = rp_connect(s.port);
    assert_true(fd >= 0);
    assert_true(rp_handshake(fd, TF_FEATURE_RESUME) >= 0);
    uint8_t key[TF_UPLOAD_KEY_SIZE];
    memset(key, 0x5a, sizeof key);
    assert_int_equal(rp_send_request(fd, TF_OP_PUT, TF_REQ_UPLOAD_KEY, 8, 100, 0, "part.bin",
                                     key),
                     0);
    tf_wire_response r;
    assert_int_equal(rp_read_response(fd, &r, NULL, 0), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(rp_send(fd, "0123456789", 10), 0);
    rp_abort(fd);
    int found = 0;
    for (int i = 0; i < 200 && !found; i++) {
        found = tu_count_prefix(tmpdir, "resume-") == 1;
        if (!found)
            tu_sleep_ms(10);
    }
    assert_true(found);
    tu_server_stop(&s, 0); /* the partial is complete on disk once it stops */
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    struct dirent *de;
    int checked = 0;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "resume-", 7) != 0)
            continue;
        path_in(p, sizeof p, tmpdir, de->d_name);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(st.st_size, 10);
        checked++;
    }
    closedir(d);
    assert_int_equal(checked, 1);
    assert_int_equal(stat(tmpdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    tu_rm_rf(root);
    printf("faults: upload-dir-private: a .tcpfile-tmp of ours with mode 0777 made 0700; "
           "its partial 0600; the upload published %03o\n",
           (unsigned)(0666 & ~mask));
}

/* ---- nothing outside was touched --------------------------------------------------------
 */

static void test_faults_outside_untouched(void **state)
{
    fixture *f = *state;
    f->outside_checked = 1; /* once: its own reads below move access times */
    snap_entry after[SNAP_MAX];
    struct {
        const char *name, *text;
    } files[] = {{"secret", SECRET},
                 {"passwd", PASSWD},
                 {"victim", VICTIM},
                 {"hard", HARD},
                 {"dir/inner.txt", SECRET}};
    /* Reads first (their atime is the proof), content after. */
    int atime_kept = 1;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (strcmp(files[i].name, "hard") == 0)
            continue; /* read on purpose, through the hard link */
        if (atime_of(f->outside, files[i].name) != OLD_ATIME)
            atime_kept = 0;
    }
    /* Does this file system maintain access times at all? A control read. */
    write_at(f->stage, "control", "x");
    age_atime(f->stage, "control");
    char p[512];
    size_t len;
    path_in(p, sizeof p, f->stage, "control");
    free(tu_read_file(p, &len));
    int atime_works = atime_of(f->stage, "control") != OLD_ATIME;
    if (atime_works && !atime_kept)
        fail_msg("a file outside the root was read (its access time moved)");

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        path_in(p, sizeof p, f->outside, files[i].name);
        uint8_t *got = tu_read_file(p, &len);
        assert_non_null(got);
        assert_int_equal(len, strlen(files[i].text));
        assert_memory_equal(got, files[i].text, len);
        free(got);
    }
    /* Nothing created, removed, replaced or modified out there. */
    const snap_entry *before = f->outside_before;
    int n = f->n_outside;
    assert_int_equal(take_snapshot(f->outside, after), n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(before[i].path, after[i].path);
        assert_int_equal(before[i].mode, after[i].mode);
        assert_int_equal(before[i].size, after[i].size);
        assert_int_equal(before[i].mtime.tv_sec, after[i].mtime.tv_sec);
        assert_int_equal(before[i].mtime.tv_nsec, after[i].mtime.tv_nsec);
        assert_string_equal(before[i].link, after[i].link);
    }
    printf("faults: outside-untouched: %d entries outside the root unchanged; %s; bytes "
           "lost 0\n",
           n,
           atime_works ? "access times prove none of them was read"
                       : "(this file system keeps no access times: reads not checked)");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_special_entries_refused),
        cmocka_unit_test(test_faults_swapped_for_a_symlink),
        cmocka_unit_test(test_faults_upload_dir_symlink),
        cmocka_unit_test(test_faults_upload_dir_foreign),
        cmocka_unit_test(test_faults_upload_dir_private),
        cmocka_unit_test(test_faults_outside_untouched),
    };
    return TU_RUN_GROUP("confinement", tests, setup, teardown, argc > 1 ? argv[1] : NULL);
}
