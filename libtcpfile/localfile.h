/*
 * localfile.h - the client's own files, named by the caller's paths.
 */
#ifndef TF_LOCALFILE_H
#define TF_LOCALFILE_H

#include <stddef.h>
#include <stdint.h>

#include "fileio.h"

/* Client side: prepares to write path. If path is an existing directory,
   the file goes to path/name; if it is an existing non-regular file (a
   device, a FIFO), it is opened for writing directly; otherwise a
   temporary is made beside it. */
int tf__local_begin(const char *path, const char *name, tf__tmpfile *t, char *final,
                    size_t final_len, tf__err *e);
/* Renames the temporary to final (no-op when direct). */
int tf__local_commit(tf__tmpfile *t, const char *final, tf__err *e);

/* Client side, resumable: like tf__local_begin, but the temporary has a
   fixed name beside the target (".<name>.tcpfile-part"), is reused if it
   exists, and *have says how many bytes it already holds. */
int tf__local_begin_resumable(const char *path, const char *name, tf__tmpfile *t,
                              char *final, size_t final_len, uint64_t *have, tf__err *e);

/* Opens a local file for upload. *size is its size when it is a regular
   file; anything else (a pipe, a terminal) is copied into an unnamed
   temporary first so that its size is known. */
int tf__local_open_read(const char *path, int *fd, uint64_t *size, tf__err *e);

#endif /* TF_LOCALFILE_H */
