/*
 * fspath.h - every file-system header of the library at once, for code
 * (and tests) written before fspath.c was split by job. New code includes
 * the one it needs: fileio.h (open files, temporaries), rootfs.h (the
 * confined root), partials.h (staging and partial uploads), digestcache.h
 * (remembered digests), localfile.h (the client's own paths); the server's
 * session sees only storage.h.
 */
#ifndef TF_FSPATH_H
#define TF_FSPATH_H

#include "digestcache.h"
#include "fileio.h"
#include "localfile.h"
#include "partials.h"
#include "rootfs.h"

#endif /* TF_FSPATH_H */
