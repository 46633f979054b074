/*
 * mime: the part structure of RFC 2046 multiparts and the two transfer
 * encodings of RFC 2045. Lenient as mail readers are: a missing closing
 * boundary ends the part at the end of the text.
 */
#include "mime.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

void
mime_base64_decode(const char *p, size_t len, struct buf *out)
{
	unsigned long acc = 0;
	int bits = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		int v;

		if (p[i] == '=')
			break;
		v = b64_value((unsigned char)p[i]);
		if (v < 0)
			continue;
		acc = (acc << 6) | (unsigned long)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_putc(out, (char)((acc >> bits) & 0xff));
		}
	}
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)toupper((unsigned char)c);
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void
mime_qp_decode(const char *p, size_t len, struct buf *out)
{
	size_t i = 0;

	while (i < len) {
		if (p[i] != '=') {
			buf_putc(out, p[i++]);
			continue;
		}
		/* soft line break: '=', blanks, line end */
		{
			size_t j = i + 1;

			while (j < len && (p[j] == ' ' || p[j] == '\t'))
				j++;
			if (j < len && p[j] == '\r')
				j++;
			if (j >= len || p[j] == '\n') {
				i = j < len ? j + 1 : j;
				continue;
			}
		}
		if (i + 2 < len + 0 && hex_value(p[i + 1]) >= 0 &&
		    hex_value(p[i + 2]) >= 0) {
			buf_putc(out, (char)(hex_value(p[i + 1]) * 16 +
					     hex_value(p[i + 2])));
			i += 3;
		} else {
			buf_putc(out, p[i++]);
		}
	}
}

int
mime_header_field(const char *header, size_t len, const char *name,
		  struct buf *out)
{
	size_t n = strlen(name), i = 0;

	buf_reset(out);
	while (i < len) {
		const char *line = header + i;
		const char *nl = memchr(line, '\n', len - i);
		size_t ll = nl != NULL ? (size_t)(nl - line) : len - i;

		i += ll + (nl != NULL);
		if (ll > n && strncasecmp(line, name, n) == 0 &&
		    line[n] == ':') {
			buf_append(out, line + n + 1, ll - n - 1);
			/* continuation lines */
			while (i < len && (header[i] == ' ' ||
					   header[i] == '\t')) {
				line = header + i;
				nl = memchr(line, '\n', len - i);
				ll = nl != NULL ? (size_t)(nl - line) :
					len - i;
				buf_append(out, line, ll);
				i += ll + (nl != NULL);
			}
			return 1;
		}
	}
	return 0;
}

int
mime_param(const char *value, const char *param, struct buf *out)
{
	const char *p = value;
	size_t n = strlen(param);

	buf_reset(out);
	while ((p = strchr(p, ';')) != NULL) {
		p++;
		while (isspace((unsigned char)*p))
			p++;
		if (strncasecmp(p, param, n) != 0)
			continue;
		p += n;
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '=')
			continue;
		p++;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '"') {
			p++;
			while (*p != '\0' && *p != '"') {
				if (*p == '\\' && p[1] != '\0')
					p++;
				buf_putc(out, *p++);
			}
		} else {
			while (*p != '\0' && *p != ';' &&
			       !isspace((unsigned char)*p))
				buf_putc(out, *p++);
		}
		return 1;
	}
	return 0;
}

/* "type/subtype" of a Content-Type value, lower case. */
static void
media_type(const char *value, struct buf *out)
{
	const char *p = value;

	buf_reset(out);
	while (isspace((unsigned char)*p))
		p++;
	while (*p != '\0' && *p != ';' && !isspace((unsigned char)*p))
		buf_putc(out, (char)tolower((unsigned char)*p++));
	if (out->len == 0)
		buf_puts(out, "text/plain");
}

/* Where the header of a part ends (after its empty line), or 0 when it has
 * none: then the part is all body. */
static size_t
header_end(const char *p, size_t len)
{
	size_t i = 0;

	if (len > 0 && p[0] == '\n')
		return 1;
	if (len > 1 && p[0] == '\r' && p[1] == '\n')
		return 2;
	while (i < len) {
		const char *nl = memchr(p + i, '\n', len - i);

		if (nl == NULL)
			return len;
		i = (size_t)(nl - p) + 1;
		if (i < len && p[i] == '\n')
			return i + 1;
		if (i + 1 < len && p[i] == '\r' && p[i + 1] == '\n')
			return i + 2;
	}
	return len;
}

static void walk(const char *header, size_t hlen, const char *body,
		 size_t blen, mime_part_fn *fn, void *arg, int depth);

static void
walk_multipart(const char *body, size_t blen, const char *boundary,
	       mime_part_fn *fn, void *arg, int depth)
{
	size_t blen_b = strlen(boundary), i = 0;
	const char *part = NULL;

	while (i < blen) {
		const char *line = body + i;
		const char *nl = memchr(line, '\n', blen - i);
		size_t ll = nl != NULL ? (size_t)(nl - line) : blen - i;
		size_t next = i + ll + (nl != NULL);

		if (ll >= 2 + blen_b && line[0] == '-' && line[1] == '-' &&
		    memcmp(line + 2, boundary, blen_b) == 0) {
			int closing = ll >= 4 + blen_b &&
				line[2 + blen_b] == '-' &&
				line[3 + blen_b] == '-';

			if (part != NULL) {
				/* the line end before the boundary belongs
				 * to it (RFC 2046 5.1.1) */
				size_t plen = (size_t)(line - part);
				size_t h;

				if (plen > 0 && part[plen - 1] == '\n')
					plen--;
				if (plen > 0 && part[plen - 1] == '\r')
					plen--;
				h = header_end(part, plen);
				walk(part, h, part + h, plen - h, fn, arg,
				     depth + 1);
			}
			if (closing)
				return;
			part = body + next;
		}
		i = next;
	}
	if (part != NULL && part < body + blen) {
		size_t plen = (size_t)(body + blen - part);
		size_t h = header_end(part, plen);

		walk(part, h, part + h, plen - h, fn, arg, depth + 1);
	}
}

static void
walk(const char *header, size_t hlen, const char *body, size_t blen,
     mime_part_fn *fn, void *arg, int depth)
{
	struct buf ct, type, param, cte, decoded;

	buf_init(&ct);
	buf_init(&type);
	buf_init(&param);
	buf_init(&cte);
	buf_init(&decoded);
	mime_header_field(header, hlen, "Content-Type", &ct);
	media_type(ct.data, &type);
	if (strncmp(type.data, "multipart/", 10) == 0 &&
	    depth < MIME_DEPTH_MAX && mime_param(ct.data, "boundary", &param) &&
	    param.len > 0) {
		walk_multipart(body, blen, param.data, fn, arg, depth);
	} else if (strcmp(type.data, "message/rfc822") == 0 &&
		   depth < MIME_DEPTH_MAX) {
		size_t h = header_end(body, blen);

		walk(body, h, body + h, blen - h, fn, arg, depth + 1);
	} else {
		const char *p;

		mime_header_field(header, hlen, "Content-Transfer-Encoding",
				  &cte);
		p = cte.data;
		while (isspace((unsigned char)*p))
			p++;
		if (strncasecmp(p, "base64", 6) == 0) {
			mime_base64_decode(body, blen, &decoded);
			fn(arg, type.data, decoded.data, decoded.len);
		} else if (strncasecmp(p, "quoted-printable", 16) == 0) {
			mime_qp_decode(body, blen, &decoded);
			fn(arg, type.data, decoded.data, decoded.len);
		} else {
			fn(arg, type.data, body, blen);
		}
	}
	buf_free(&ct);
	buf_free(&type);
	buf_free(&param);
	buf_free(&cte);
	buf_free(&decoded);
}

void
mime_walk(const char *header, size_t hlen, const char *body, size_t blen,
	  mime_part_fn *fn, void *arg)
{
	walk(header, hlen, body, blen, fn, arg, 0);
}

struct types_arg {
	mime_typer_fn *typer;
	struct buf *out;
};

static void
type_part(void *arg, const char *declared, const char *data, size_t len)
{
	struct types_arg *ta = arg;
	size_t start = ta->out->len;

	if (ta->typer == NULL || ta->typer(data, len, ta->out) < 0 ||
	    ta->out->len == start) {
		buf_truncate(ta->out, start);
		buf_puts(ta->out, declared);
	}
	buf_putc(ta->out, '\n');
}

void
mime_attachment_types(const char *header, size_t hlen, const char *body,
		      size_t blen, mime_typer_fn *typer, struct buf *out)
{
	struct types_arg ta = { typer, out };

	mime_walk(header, hlen, body, blen, type_part, &ta);
	/* one type a line, without a final newline, like $(cmd) */
	if (out->len > 0 && out->data[out->len - 1] == '\n')
		buf_truncate(out, out->len - 1);
}
