/*
 * walk.h - a listdir's walk over a storage (docs/protocol.md section 3a):
 * produces the encoded entries of a directory, or of the tree below it,
 * a chunk at a time, holding one storage lister (one batch) per level and
 * never the listing. Pure over the storage interface: no sockets.
 */
#ifndef TF_WALK_H
#define TF_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "storage.h"

typedef struct tf__walk tf__walk;

/* Opens the walk of dir ("" the root; a path checked by the caller).
   recursive: depth first through every sub-directory. Entries whose path
   from the root breaks lim (longer than max_path, deeper than max_depth)
   or whose name is not a valid name are skipped, as are symbolic links,
   special files and TF_TMP_DIR. Errors as the storage's list_open
   (TF_ENOENT, TF_ENOTDIR, TF_EACCES, TF_EIO) and TF_ENOMEM. */
int tf__walk_open(tf__storage *st, const char *dir, int recursive, const tf__path_limits *lim,
                  tf__walk **out, tf__err *e);

/* Appends whole encoded entries to buf (cap bytes, at least
   TF_WIRE_DIRENT_FIXED + max_path): *len bytes written. Stops when the
   next entry does not fit, or after a bounded amount of directory reading
   (so that one call never holds up a worker: *len may then be 0 with the
   walk not over). *done is set once the walk has ended. A sub-directory
   that vanished or became something else meanwhile is skipped; a failure
   to read one (TF_EIO) ends the walk with that code. */
int tf__walk_fill(tf__walk *w, uint8_t *buf, size_t cap, size_t *len, int *done, tf__err *e);

/* Closes every lister still open. NULL is fine. */
void tf__walk_close(tf__walk *w);

#endif /* TF_WALK_H */
