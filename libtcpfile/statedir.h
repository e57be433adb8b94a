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

#endif /* TF_STATEDIR_H */
