/*
 * statedir.c - the default state directory (statedir.h).
 */
#include "statedir.h"

#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tf__state_dir_default(char *buf, size_t cap, tf__err *e)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (!home || home[0] != '/') {
        /* A service started without HOME still has a home directory. */
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/tcpfile", xdg);
    else if (home && home[0] == '/')
        n = snprintf(buf, cap, "%s/.local/state/tcpfile", home);
    else
        return tf__fail(e, TF_EINVAL, "no state directory: neither XDG_STATE_HOME nor a "
                                      "home directory; give one (--state-dir)");
    if (n < 0 || (size_t)n >= cap)
        return tf__fail(e, TF_EINVAL, "the state directory's path is too long");
    return TF_OK;
}

/* path resolved through realpath, or - when it does not exist yet - its
   deepest existing ancestor resolved with the rest appended. */
static int resolve_loosely(const char *path, char out[PATH_MAX])
{
    char tmp[PATH_MAX];
    if (strlen(path) >= sizeof tmp)
        return -1;
    strcpy(tmp, path);
    size_t cut = strlen(tmp);
    for (;;) {
        if (realpath(tmp[0] ? tmp : ".", out)) {
            if (cut < strlen(path) &&
                strlen(out) + strlen(path + cut) >= PATH_MAX)
                return -1;
            if (cut < strlen(path))
                strcat(out, path + cut);
            return 0;
        }
        char *slash = strrchr(tmp, '/');
        if (!slash)
            return realpath(".", out) ? 0 : -1;
        *slash = '\0';
        cut = (size_t)(slash - tmp);
    }
}

int tf__path_is_inside(const char *root, const char *path)
{
    char r[PATH_MAX], p[PATH_MAX];
    if (!realpath(root, r) || resolve_loosely(path, p) != 0)
        return 0;
    size_t n = strlen(r);
    if (n == 1) /* "/" holds everything */
        return 1;
    return strncmp(p, r, n) == 0 && (p[n] == '\0' || p[n] == '/');
}
