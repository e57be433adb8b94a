/*
 * curlapi.h - libcurl, loaded when an S3 store is opened. The library is
 * not linked against libcurl: a program that never opens an S3 store
 * (every client, a server on a local directory) does not load it and the
 * thirty libraries it brings (about 15 ms of CPU at each start of a
 * program on a loaded machine). The headers still give the types and
 * constants; the functions are reached through this table.
 */
#ifndef TF_CURLAPI_H
#define TF_CURLAPI_H

#include <curl/curl.h>

#include "internal.h"

typedef struct tf__curl {
    void *lib; /* dlopen's handle; NULL: not loaded */
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *c);
    void (*easy_reset)(CURL *c);
    CURLcode (*easy_setopt)(CURL *c, CURLoption option, ...);
    CURLcode (*easy_perform)(CURL *c);
    CURLcode (*easy_getinfo)(CURL *c, CURLINFO info, ...);
    const char *(*easy_strerror)(CURLcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    void (*slist_free_all)(struct curl_slist *list);
    time_t (*getdate)(const char *date, const time_t *unused);
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
} tf__curl;

/* Loads libcurl (soname libcurl.so.4) and initialises it: TF_EINVAL with
   the reason when it is missing, too old, or not thread-safe to start. */
int tf__curl_load(tf__curl *api, tf__err *e);

/* Undoes tf__curl_load (harmless on a table never loaded). */
void tf__curl_unload(tf__curl *api);

#endif
