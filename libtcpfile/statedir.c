/*
 * statedir.c - the default state directory (statedir.h).
 */
#include "statedir.h"

#include <stdio.h>
#include <stdlib.h>

int tf__state_dir_default(char *buf, size_t cap, tf__err *e)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/tcpfile", xdg);
    else if (home && home[0])
        n = snprintf(buf, cap, "%s/.local/state/tcpfile", home);
    else
        return tf__fail(e, TF_EINVAL, "no state directory: neither XDG_STATE_HOME nor HOME "
                                      "is set");
    if (n < 0 || (size_t)n >= cap)
        return tf__fail(e, TF_EINVAL, "the state directory's path is too long");
    return TF_OK;
}
