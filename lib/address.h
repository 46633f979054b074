/*
 * address: the basics of mail addresses (RFC 5321 paths, RFC 5322
 * local@domain). Pure functions over (pointer, length); nothing here trusts
 * NUL termination of its input or touches the file system.
 */
#ifndef LIB_ADDRESS_H
#define LIB_ADDRESS_H

#include <stddef.h>

#include "buf.h"

struct address {
	struct buf local;	/* local part, quotes removed */
	struct buf domain;	/* domain, lower case; empty when none */
};

void address_init(struct address *a);
void address_free(struct address *a);
/* Parses "local@domain", "<local@domain>", "\"quoted local\"@domain" or a
 * bare local part. The split is at the last '@' outside quotes. Returns 0, or
 * -1 for an empty, unbalanced or control-character address. */
int address_parse(struct address *a, const char *text, size_t len);
/* Strips one pair of surrounding angle brackets and blanks, in place. */
void address_unbracket(const char **text, size_t *len);
/* 1 when name may be used as a local user name, a path component or an
 * argument: not empty, no '/', no leading '-' or '.', no control
 * characters or white space, at most 64 bytes. Hostile names
 * ("../x", "-x", "a/b") fail. */
int address_safe_local(const char *name, size_t len);
/* Splits local at the first delimiter: user+tag -> user, tag. Returns 1 when
 * there was an extension. delimiter '\0' means none is recognised. */
int address_split_extension(const char *local, size_t len, char delimiter,
			    size_t *user_len, const char **ext,
			    size_t *ext_len);
void address_lowercase(char *s, size_t len);
/* Appends a local part as RFC 5321 writes it: as is when it is a
 * dot-string, otherwise quoted ("a b" -> "\"a b\""). */
void address_quote_local(struct buf *out, const char *local, size_t len);

#endif
