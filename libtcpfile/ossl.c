/*
 * ossl.c - OpenSSL's error queue as tf__err messages. See ossl.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "ossl.h"

int tf__ossl_fail(tf__err *e, int code, const char *fmt, ...)
{
    /* The last error is the most specific (the first is often a generic
       "PEM lib" or "system lib" that led to it). */
    unsigned long err = ERR_peek_last_error();
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        if (n < 0)
            e->msg[0] = '\0';
        if (err != 0) {
            const char *reason = ERR_reason_error_string(err);
            size_t used = strlen(e->msg);
            if (reason)
                snprintf(e->msg + used, sizeof e->msg - used, ": %s", reason);
            else
                snprintf(e->msg + used, sizeof e->msg - used, ": OpenSSL error %lx", err);
        }
    }
    ERR_clear_error();
    return code;
}

void tf__ossl_clear(void)
{
    ERR_clear_error();
}
