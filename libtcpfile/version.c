/* version.c - the version of the library actually linked. */
#include "internal.h"

unsigned tf_version(void)
{
    return TF_VERSION_NUMBER;
}

const char *tf_version_string(void)
{
    return TF_VERSION_STRING;
}
