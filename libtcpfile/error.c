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

void tf__err_take(tf__err *e, const tf__err *from)
{
    if (e && from && e != from)
        *e = *from;
}

TF__PRINTF(2, 0) static void format_into(tf__err *e, const char *fmt, va_list ap)
{
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    if (n <= 0) /* an empty message would not count as set */
        snprintf(e->msg, sizeof e->msg, "%s", "failed");
}

int tf__fail(tf__err *e, int code, const char *fmt, ...)
{
    if (!e || e->msg[0])
        return code;
    va_list ap;
    va_start(ap, fmt);
    format_into(e, fmt, ap);
    va_end(ap);
    return code;
}

int tf__fail_errno(tf__err *e, int code, int errnum, const char *fmt, ...)
{
    if (!e || e->msg[0])
        return code;
    va_list ap;
    va_start(ap, fmt);
    format_into(e, fmt, ap);
    va_end(ap);
    char buf[128];
    /* The GNU strerror_r may return a static string instead of filling buf. */
    const char *text = strerror_r(errnum, buf, sizeof buf);
    size_t used = strlen(e->msg);
    snprintf(e->msg + used, sizeof e->msg - used, ": %s", text);
    return code;
}

int tf__err_replace(tf__err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->msg[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    format_into(e, fmt, ap);
    va_end(ap);
    return code;
}

int tf__err_prefix(tf__err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    char head[TF_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    if (n < 0)
        head[0] = '\0';
    if (e->msg[0]) {
        /* head, ": ", then as much of the cause as still fits. */
        char cause[TF_ERRMSG_MAX];
        memcpy(cause, e->msg, sizeof cause);
        size_t hl = strlen(head), cl = strlen(cause), cap = sizeof e->msg - 1;
        if (hl > cap)
            hl = cap;
        memcpy(e->msg, head, hl);
        size_t used = hl;
        if (cap - used >= 2) {
            memcpy(e->msg + used, ": ", 2);
            used += 2;
        }
        if (cl > cap - used)
            cl = cap - used;
        memcpy(e->msg + used, cause, cl);
        e->msg[used + cl] = '\0';
    } else {
        memcpy(e->msg, head, sizeof e->msg);
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
