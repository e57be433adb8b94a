/*
 * curlapi.c - loading libcurl with dlopen (see curlapi.h for why).
 *
 * Every tf__s3 loads its own table: dlopen counts references, and
 * curl_global_init counts its callers and is thread-safe from curl 7.84
 * (CURL_VERSION_THREADSAFE), so no state is shared here. RTLD_NODELETE
 * keeps libcurl mapped after the last dlclose: the libraries it pulls in
 * may have registered exit handlers that must still be there at exit.
 */
#include "curlapi.h"

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#define CURL_SONAME "libcurl.so.4"

/* Resolves one symbol into *slot; 0 when it is missing. The cast goes
   through a union: ISO C has no conversion from void * to a function
   pointer, POSIX guarantees dlsym's result can be used as one. */
static int resolve(void *lib, const char *name, void (**slot)(void))
{
    union {
        void *object;
        void (*function)(void);
    } u = {.object = dlsym(lib, name)};
    *slot = u.function;
    return u.object != NULL;
}

/* Fills api from lib, checks the version and starts libcurl; on failure
   the caller closes lib. */
static int bind_and_start(void *lib, tf__curl *api, tf__err *e)
{
    static const struct {
        const char *name;
        size_t offset;
    } symbols[] = {
        {"curl_easy_init", offsetof(tf__curl, easy_init)},
        {"curl_easy_cleanup", offsetof(tf__curl, easy_cleanup)},
        {"curl_easy_reset", offsetof(tf__curl, easy_reset)},
        {"curl_easy_setopt", offsetof(tf__curl, easy_setopt)},
        {"curl_easy_perform", offsetof(tf__curl, easy_perform)},
        {"curl_easy_getinfo", offsetof(tf__curl, easy_getinfo)},
        {"curl_easy_strerror", offsetof(tf__curl, easy_strerror)},
        {"curl_slist_append", offsetof(tf__curl, slist_append)},
        {"curl_slist_free_all", offsetof(tf__curl, slist_free_all)},
        {"curl_getdate", offsetof(tf__curl, getdate)},
        {"curl_global_init", offsetof(tf__curl, global_init)},
        {"curl_global_cleanup", offsetof(tf__curl, global_cleanup)},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        void (**slot)(void) = (void (**)(void))(void *)((char *)api + symbols[i].offset);
        if (!resolve(lib, symbols[i].name, slot))
            return tf__fail(e, TF_EINVAL, "%s has no %s", CURL_SONAME, symbols[i].name);
    }
    curl_version_info_data *(*version)(CURLversion);
    if (!resolve(lib, "curl_version_info", (void (**)(void))(void *)&version))
        return tf__fail(e, TF_EINVAL, "%s has no curl_version_info", CURL_SONAME);
    /* SigV4 signing came in 7.75, a thread-safe curl_global_init in 7.84. */
    const curl_version_info_data *v = version(CURLVERSION_NOW);
    if (!v || v->version_num < 0x075400 || !(v->features & CURL_VERSION_THREADSAFE))
        return tf__fail(e, TF_EINVAL, "libcurl %s is too old for an S3 store (7.84 or later)",
                        v && v->version ? v->version : "?");
    if (api->global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return tf__fail(e, TF_ENOMEM, "libcurl could not start (curl_global_init)");
    return TF_OK;
}

int tf__curl_load(tf__curl *api, tf__err *e)
{
    memset(api, 0, sizeof *api);
    void *lib = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!lib)
        return tf__fail(e, TF_EINVAL, "an S3 store needs libcurl (%s): %s", CURL_SONAME,
                        dlerror());
    int rc = bind_and_start(lib, api, e);
    if (rc != TF_OK) {
        dlclose(lib);
        memset(api, 0, sizeof *api);
        return rc;
    }
    api->lib = lib;
    return TF_OK;
}

void tf__curl_unload(tf__curl *api)
{
    if (!api->lib)
        return;
    if (api->global_cleanup)
        api->global_cleanup();
    dlclose(api->lib);
    memset(api, 0, sizeof *api);
}
