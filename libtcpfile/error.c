/*
 * error.c - the code table (one X-macro feeds the enum, the messages and
 * the names) and the helpers that record a failure's detail.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

const char *tf_strerror(int code)
{
    switch (code) {
    case TF_OK:
        return "success";
#define TF__ERR_MSG(name, value, msg) \
    case TF_##name:                   \
        return msg;
        TF_ERRNO_MAP(TF__ERR_MSG)
#undef TF__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *tf_errname(int code)
{
    switch (code) {
    case TF_OK:
        return "TF_OK";
#define TF__ERR_NAME(name, value, msg) \
    case TF_##name:                    \
        return "TF_" #name;
        TF_ERRNO_MAP(TF__ERR_NAME)
#undef TF__ERR_NAME
    default:
        return "TF_EUNKNOWN";
    }
}

void tf__err_clear(tf__err *e)
{
    if (e)
        e->msg[0] = '\0';
}

TF__PRINTF(2, 0) static void format_into(tf__err *e, const char *fmt, va_list ap)
{
    if (!e)
        return;
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    if (n < 0)
        e->msg[0] = '\0';
}

int tf__fail(tf__err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format_into(e, fmt, ap);
    va_end(ap);
    return code;
}

int tf__fail_errno(tf__err *e, int code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format_into(e, fmt, ap);
    va_end(ap);
    if (e) {
        char buf[128];
        /* The GNU strerror_r may return a static string instead of filling buf. */
        const char *text = strerror_r(errnum, buf, sizeof buf);
        size_t used = strlen(e->msg);
        snprintf(e->msg + used, sizeof e->msg - used, ": %s", text);
    }
    return code;
}

int tf__code_from_errno(int errnum)
{
    switch (errnum) {
    case ENOENT:
    case ENOTDIR:
        return TF_ENOENT;
    case EEXIST:
    case ENOTEMPTY:
        return TF_EEXIST;
    case EACCES:
    case EPERM:
    case EROFS:
    case ELOOP:
    case EISDIR:
    case EXDEV:
        return TF_EACCES;
    case ENOSPC:
    case EDQUOT:
        return TF_ENOSPC;
    case EFBIG:
        return TF_ETOOBIG;
    case ENOMEM:
        return TF_ENOMEM;
    case ENAMETOOLONG: /* a name too long is a bad name (protocol.md) */
    case EINVAL:
        return TF_EINVAL;
    default:
        return TF_EIO;
    }
}

int64_t tf__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
