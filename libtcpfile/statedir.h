/*
 * statedir.h - the server's default state directory, shared by what keeps
 * files there (the TLS identity, the users file), so that all agree.
 */
#ifndef TF_STATEDIR_H
#define TF_STATEDIR_H

#include <stddef.h>

#include "internal.h"

/* $XDG_STATE_HOME/tcpfile when XDG_STATE_HOME is an absolute path (the
   XDG spec ignores a relative one), else $HOME/.local/state/tcpfile.
   TF_EINVAL when neither is set or the path does not fit in cap. Creates
   nothing. */
int tf__state_dir_default(char *buf, size_t cap, tf__err *e);

/* 1 when path lies at or below the directory root (both resolved through
   symbolic links; a path that does not exist yet counts by its deepest
   existing ancestor), else 0 - also when root cannot be resolved. For
   refusing to serve the server's own secrets. */
int tf__path_is_inside(const char *root, const char *path);

#endif /* TF_STATEDIR_H */
