/*
 * submit: header processing for message submission.
 */
#include "submit.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* One address of a list, from start to end: the part in <> if any,
 * otherwise the text without comments and blanks. */
static void
emit_address(const char *p, const char *end,
	     void (*fn)(const char *addr, size_t len, void *arg), void *arg)
{
	struct buf plain;
	const char *lt = NULL, *gt = NULL, *q;
	int quoted = 0, depth = 0;

	for (q = p; q < end; q++) {
		if (*q == '\\' && q + 1 < end) {
			q++;
			continue;
		}
		if (*q == '"' && depth == 0)
			quoted = !quoted;
		else if (!quoted && *q == '(')
			depth++;
		else if (!quoted && *q == ')' && depth > 0)
			depth--;
		else if (!quoted && depth == 0 && *q == '<')
			lt = q;
		else if (!quoted && depth == 0 && *q == '>' && lt != NULL)
			gt = q;
	}
	buf_init(&plain);
	if (lt != NULL && gt != NULL && gt > lt) {
		p = lt + 1;
		end = gt;
		/* An RFC 5321 source route (@a,@b:user@c) is dropped. */
		if (*p == '@') {
			const char *colon = memchr(p, ':', (size_t)(end - p));

			if (colon != NULL)
				p = colon + 1;
		}
	}
	quoted = 0;
	depth = 0;
	for (q = p; q < end; q++) {
		if (*q == '\\' && q + 1 < end && (quoted || depth == 0)) {
			if (depth == 0) {
				buf_putc(&plain, q[0]);
				buf_putc(&plain, q[1]);
			}
			q++;
			continue;
		}
		if (*q == '"' && depth == 0) {
			quoted = !quoted;
			buf_putc(&plain, *q);
		} else if (!quoted && *q == '(') {
			depth++;
		} else if (!quoted && *q == ')' && depth > 0) {
			depth--;
		} else if (depth == 0 && (quoted || !isspace((unsigned char)*q))) {
			buf_putc(&plain, *q);
		}
	}
	if (plain.len > 0 && !(plain.len == 2 && strcmp(plain.data, "<>") == 0))
		fn(plain.data, plain.len, arg);
	buf_free(&plain);
}

void
submit_addresses(const char *list, size_t len,
		 void (*fn)(const char *addr, size_t len, void *arg),
		 void *arg)
{
	const char *p = list, *end = list + len, *start = list;
	int quoted = 0, depth = 0, angle = 0;

	for (; p < end; p++) {
		if (*p == '\\' && p + 1 < end) {
			p++;
			continue;
		}
		if (*p == '"' && depth == 0) {
			quoted = !quoted;
			continue;
		}
		if (quoted)
			continue;
		if (*p == '(') {
			depth++;
		} else if (*p == ')' && depth > 0) {
			depth--;
		} else if (depth > 0) {
			continue;
		} else if (*p == '<') {
			angle = 1;
		} else if (*p == '>') {
			angle = 0;
		} else if (*p == ':' && !angle) {
			/* "group: a, b;" the group's name is no address. */
			start = p + 1;
		} else if ((*p == ',' || *p == ';') && !angle) {
			emit_address(start, p, fn, arg);
			start = p + 1;
		}
	}
	emit_address(start, end, fn, arg);
}

static int
field_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);

	if (len <= n || strncasecmp(line, name, n) != 0)
		return 0;
	while (n < len && (line[n] == ' ' || line[n] == '\t'))
		n++;
	return n < len && line[n] == ':';
}

struct field {
	const char *start;	/* the whole field, continuation lines too */
	size_t len;
	const char *value;	/* after the colon */
	size_t value_len;
};

/* Splits the header section into fields; calls fn for each. Lines that
 * are no fields are passed with value NULL. */
static int
each_field(const char *in, size_t len,
	   void (*fn)(const struct field *f, void *arg), void *arg)
{
	const char *p = in, *end = in + len;
	int bad = 0;

	while (p < end) {
		const char *q = p, *colon;
		struct field f;

		if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
			break;	/* the empty line: the end of the header */
		do {
			const char *nl = memchr(q, '\n', (size_t)(end - q));

			q = nl ? nl + 1 : end;
		} while (q < end && (*q == ' ' || *q == '\t'));
		f.start = p;
		f.len = (size_t)(q - p);
		colon = memchr(p, ':', f.len);
		if (colon == NULL || colon == p || *p == ' ' || *p == '\t') {
			f.value = NULL;
			f.value_len = 0;
			bad++;
		} else {
			f.value = colon + 1;
			f.value_len = (size_t)(q - colon - 1);
		}
		fn(&f, arg);
		p = q;
	}
	return bad;
}

struct scan {
	int resent, date, message_id, from;
};

static void
scan_field(const struct field *f, void *arg)
{
	struct scan *s = arg;

	if (f->value == NULL)
		return;
	if (field_is(f->start, f->len, "Resent-To") ||
	    field_is(f->start, f->len, "Resent-Cc") ||
	    field_is(f->start, f->len, "Resent-Bcc"))
		s->resent = 1;
	if (field_is(f->start, f->len, "Date"))
		s->date = 1;
	if (field_is(f->start, f->len, "Message-ID"))
		s->message_id = 1;
	if (field_is(f->start, f->len, "From"))
		s->from = 1;
}

struct rewrite {
	const struct submit_header *opts;
	const struct scan *scan;
	struct buf *out;
	void (*fn)(const char *addr, size_t len, void *arg);
	void *arg;
};

static void
rewrite_field(const struct field *f, void *arg)
{
	struct rewrite *rw = arg;
	static const char *const plain[] = { "To", "Cc", "Bcc" };
	static const char *const resent[] = { "Resent-To", "Resent-Cc",
					      "Resent-Bcc" };
	const char *const *names = rw->scan->resent ? resent : plain;
	int i;

	if (f->value != NULL) {
		if (rw->opts->extract_recipients)
			for (i = 0; i < 3; i++)
				if (field_is(f->start, f->len, names[i]))
					submit_addresses(f->value, f->value_len,
							 rw->fn, rw->arg);
		/* Blind copies stay blind; Return-Path: is for delivery. */
		if (field_is(f->start, f->len, "Bcc") ||
		    field_is(f->start, f->len, "Resent-Bcc") ||
		    field_is(f->start, f->len, "Return-Path"))
			return;
	}
	buf_append(rw->out, f->start, f->len);
	if (f->len > 0 && f->start[f->len - 1] != '\n')
		buf_putc(rw->out, '\n');
}

int
submit_header(const struct submit_header *opts, const char *in, size_t len,
	      struct buf *out,
	      void (*fn)(const char *addr, size_t len, void *arg), void *arg)
{
	struct scan scan;
	struct rewrite rw;
	int bad;

	memset(&scan, 0, sizeof(scan));
	each_field(in, len, scan_field, &scan);
	rw.opts = opts;
	rw.scan = &scan;
	rw.out = out;
	rw.fn = fn;
	rw.arg = arg;
	bad = each_field(in, len, rewrite_field, &rw);
	if (!scan.date) {
		char date[64];
		struct tm tm;

		localtime_r(&opts->now, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
		buf_printf(out, "Date: %s\n", date);
	}
	if (!scan.message_id)
		buf_printf(out, "Message-ID: <%s@%s>\n", opts->queue_id,
			   opts->hostname);
	if (!scan.from) {
		buf_puts(out, "From: ");
		if (opts->full_name != NULL && opts->full_name[0] != '\0') {
			const char *n;

			/* A quoted string: quotes and backslashes escaped,
			 * line breaks gone. */
			buf_putc(out, '"');
			for (n = opts->full_name; *n != '\0'; n++) {
				if (*n == '\n' || *n == '\r')
					continue;
				if (*n == '"' || *n == '\\')
					buf_putc(out, '\\');
				buf_putc(out, *n);
			}
			buf_printf(out, "\" <%s>\n", opts->from_address);
		} else {
			buf_printf(out, "%s\n", opts->from_address);
		}
	}
	return bad;
}

const char *
submit_header_value(const char *headers, size_t hlen, const char *name,
		     size_t *len)
{
	size_t nlen = strlen(name);
	const char *p = headers, *end = headers + hlen;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		if ((size_t)(eol - p) > nlen && p[nlen] == ':' &&
		    strncasecmp(p, name, nlen) == 0) {
			const char *v = p + nlen + 1;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*len = (size_t)(eol - v);
			if (*len > 0 && v[*len - 1] == '\r')
				(*len)--;
			return v;
		}
		p = nl ? nl + 1 : end;
	}
	return NULL;
}

unsigned
submit_count_received(const char *h, size_t len)
{
	const char *p = h, *end = h + len;
	unsigned n = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if ((size_t)(end - p) > 9 && strncasecmp(p, "Received:", 9) == 0)
			n++;
		p = nl ? nl + 1 : end;
	}
	return n;
}
