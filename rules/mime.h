/*
 * mime: walks the MIME parts of a message held in memory (RFC 2045/2046)
 * and decodes base64 and quoted-printable bodies. Pure functions over
 * buffers; never reads past the lengths given; nests at most
 * MIME_DEPTH_MAX multiparts deep.
 */
#ifndef RULES_MIME_H
#define RULES_MIME_H

#include <stddef.h>

#include "buf.h"

#define MIME_DEPTH_MAX 16

/* Appends the decoded bytes; bad characters are skipped (RFC 2045 6.8). */
void mime_base64_decode(const char *p, size_t len, struct buf *out);
/* RFC 2045 6.7, soft line breaks removed. */
void mime_qp_decode(const char *p, size_t len, struct buf *out);

/* The unfolded value of the first field called name in a header section,
 * into out (reset first). Returns 1 when found. */
int mime_header_field(const char *header, size_t len, const char *name,
		      struct buf *out);
/* A parameter of a Content-Type value ("boundary", "charset"), unquoted,
 * into out (reset first). Returns 1 when found. */
int mime_param(const char *value, const char *param, struct buf *out);

/* Called for each leaf part: its declared type (lower case, "text/plain"
 * when none) and its decoded body. */
typedef void mime_part_fn(void *arg, const char *declared_type,
			  const char *data, size_t len);

void mime_walk(const char *header, size_t hlen, const char *body,
	       size_t blen, mime_part_fn *fn, void *arg);

/* Types each leaf part with typer (e.g. magic_type_of; on its failure the
 * declared type counts) and appends one type a line to out. */
typedef int mime_typer_fn(const void *data, size_t len, struct buf *out);
void mime_attachment_types(const char *header, size_t hlen, const char *body,
			   size_t blen, mime_typer_fn *typer,
			   struct buf *out);

#endif
