/*
 * magic: the real MIME type of a buffer, from libmagic. libmagic is not
 * linked: it is dlopen()ed ("libmagic.so.1") the first time a type is asked
 * for, so that rules that never read ATTACHMENT_TYPES cost nothing and a
 * host without libmagic still delivers mail.
 */
#ifndef RULES_MAGIC_H
#define RULES_MAGIC_H

#include <stddef.h>

#include "buf.h"

/* Appends the type ("application/pdf") to out. Returns 0, or -1 when
 * libmagic is not available or cannot tell. */
int magic_type_of(const void *data, size_t len, struct buf *out);

#endif
