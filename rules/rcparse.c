/*
 * rcparse: the rcfile grammar of procmailrc(5), read the way procmail reads
 * it: item by item, where an item starts after blanks, newlines and
 * comments, so that "{ LOG=x }" on one line works as well as one item a line.
 */
#include "rcparse.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define FLAG_LETTERS "HBDAaEehbfcwWir"

struct parser {
	const char *name;
	const char *p, *end;
	int line;
	size_t nerrors;
	rc_error_fn *error;
	void *arg;
	int depth;
};

static void
parse_error(struct parser *ps, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
parse_error(struct parser *ps, int line, const char *fmt, ...)
{
	char text[256];
	va_list ap;

	ps->nerrors++;
	if (ps->error == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ps->error(ps->arg, ps->name, line, text);
}

static int
is_blank(int c)
{
	return c == ' ' || c == '\t';
}

static int
is_name_start(int c)
{
	return isalpha((unsigned char)c) || c == '_';
}

static int
is_name_char(int c)
{
	return isalnum((unsigned char)c) || c == '_';
}

static void
skip_blanks(struct parser *ps)
{
	while (ps->p < ps->end && is_blank(*ps->p))
		ps->p++;
}

static void
skip_to_eol(struct parser *ps)
{
	while (ps->p < ps->end && *ps->p != '\n')
		ps->p++;
}

/* Skips blanks, newlines, comments and backslash-newline pairs: what lies
 * between two items. */
static void
skip_space(struct parser *ps)
{
	while (ps->p < ps->end) {
		char c = *ps->p;

		if (c == '\n') {
			ps->line++;
			ps->p++;
		} else if (is_blank(c)) {
			ps->p++;
		} else if (c == '#') {
			skip_to_eol(ps);
		} else if (c == '\\' && ps->p + 1 < ps->end &&
			   ps->p[1] == '\n') {
			ps->p += 2;
			ps->line++;
		} else {
			break;
		}
	}
}

/* Reads the rest of a line with its continuation lines: a backslash before
 * the newline joins the next line. strip_lead drops the leading blanks of
 * continuation lines (conditions may be indented). */
static char *
read_logical_line(struct parser *ps, int strip_lead)
{
	struct buf out;
	char *line;

	buf_init(&out);
	while (ps->p < ps->end && *ps->p != '\n') {
		if (*ps->p == '\\' && ps->p + 1 < ps->end &&
		    ps->p[1] == '\n') {
			ps->p += 2;
			ps->line++;
			if (strip_lead)
				skip_blanks(ps);
			continue;
		}
		buf_putc(&out, *ps->p++);
	}
	while (out.len > 0 && (is_blank(out.data[out.len - 1])))
		out.len--;
	out.data[out.len] = '\0';
	line = buf_steal(&out);
	buf_free(&out);	/* buf_steal leaves an empty buffer behind */
	return line;
}

static char *
trimmed_dup(const char *s)
{
	const char *e;

	while (is_blank(*s))
		s++;
	e = s + strlen(s);
	while (e > s && is_blank(e[-1]))
		e--;
	return xstrndup(s, (size_t)(e - s));
}

/* "w^x": two decimal numbers; returns the length taken, 0 when none. */
static size_t
parse_weight(const char *s, double *w, double *x)
{
	char *e1, *e2;

	if (!(isdigit((unsigned char)*s) || *s == '-' || *s == '+' ||
	      *s == '.'))
		return 0;
	*w = strtod(s, &e1);
	if (e1 == s || *e1 != '^')
		return 0;
	*x = strtod(e1 + 1, &e2);
	if (e2 == e1 + 1)
		return 0;
	if (*e2 != '\0' && !is_blank(*e2))
		return 0;
	return (size_t)(e2 - s);
}

static void parse_items(struct parser *ps, struct rc_item **items,
			size_t *nitems);

static void
add_item(struct rc_item **items, size_t *nitems, const struct rc_item *item)
{
	*items = xrealloc(*items, (*nitems + 1) * sizeof(**items));
	(*items)[(*nitems)++] = *item;
}

/* Reads one condition line after its '*'. */
static void
parse_condition(struct parser *ps, struct rc_recipe *r)
{
	struct rc_cond cond;
	const char *s;
	char *raw;
	size_t n;
	int line = ps->line;

	memset(&cond, 0, sizeof(cond));
	skip_blanks(ps);
	/* A "$" condition keeps the blanks of its continuation lines: they
	 * are part of a double-quoted text. */
	s = ps->p;
	while (s < ps->end && (*s == '!' || is_blank(*s)))
		s++;
	raw = read_logical_line(ps, !(s < ps->end && *s == '$'));
	s = raw;
	n = parse_weight(s, &cond.weight, &cond.exponent);
	if (n > 0) {
		cond.weighted = 1;
		s += n;
	}
	cond.text = trimmed_dup(s);
	cond.line = line;
	free(raw);
	r->conds = xrealloc(r->conds, (r->nconds + 1) * sizeof(*r->conds));
	r->conds[r->nconds++] = cond;
}

/* Reads the flags and lock of a ":0 flags :lockfile" line. */
static void
parse_recipe_line(struct parser *ps, struct rc_recipe *r)
{
	int line = ps->line;

	ps->p++;	/* ':' */
	while (ps->p < ps->end && isdigit((unsigned char)*ps->p))
		ps->p++;
	while (ps->p < ps->end && *ps->p != '\n' && *ps->p != ':') {
		char c = *ps->p++;
		const char *f;

		if (is_blank(c))
			continue;
		if (c == '#') {
			ps->p--;
			skip_to_eol(ps);
			break;
		}
		f = c != '\0' ? strchr(FLAG_LETTERS, c) : NULL;
		if (f == NULL) {
			parse_error(ps, line, "unknown flag '%c'", c);
			continue;
		}
		switch (c) {
		case 'H': r->flags |= RC_FLAG_H; break;
		case 'B': r->flags |= RC_FLAG_B; break;
		case 'D': r->flags |= RC_FLAG_D; break;
		case 'A': r->flags |= RC_FLAG_A; break;
		case 'a': r->flags |= RC_FLAG_a; break;
		case 'E': r->flags |= RC_FLAG_E; break;
		case 'e': r->flags |= RC_FLAG_e; break;
		case 'h': r->flags |= RC_FLAG_h; break;
		case 'b': r->flags |= RC_FLAG_b; break;
		case 'f': r->flags |= RC_FLAG_f; break;
		case 'c': r->flags |= RC_FLAG_c; break;
		case 'w': r->flags |= RC_FLAG_w; break;
		case 'W': r->flags |= RC_FLAG_W; break;
		case 'i': r->flags |= RC_FLAG_i; break;
		case 'r': r->flags |= RC_FLAG_r; break;
		}
	}
	if (ps->p < ps->end && *ps->p == ':') {
		char *text, *hash;

		ps->p++;
		r->locked = 1;
		text = read_logical_line(ps, 1);
		hash = strchr(text, '#');
		if (hash != NULL && (hash == text || is_blank(hash[-1])))
			*hash = '\0';
		r->lockfile = trimmed_dup(text);
		free(text);
		if (r->lockfile[0] == '\0') {
			free(r->lockfile);
			r->lockfile = NULL;
		}
	}
	skip_to_eol(ps);
}

/* "NAME=|": the length up to and with the '|', 0 when it is not one. */
static size_t
capture_prefix(const char *p, const char *end, size_t *name_len)
{
	const char *s = p;

	if (s >= end || !is_name_start(*s))
		return 0;
	while (s < end && is_name_char(*s))
		s++;
	*name_len = (size_t)(s - p);
	while (s < end && is_blank(*s))
		s++;
	if (s >= end || *s != '=')
		return 0;
	s++;
	while (s < end && is_blank(*s))
		s++;
	if (s >= end || *s != '|')
		return 0;
	return (size_t)(s + 1 - p);
}

static struct rc_recipe *
parse_recipe(struct parser *ps, int line)
{
	struct rc_recipe *r = xcalloc(1, sizeof(*r));
	size_t n, name_len;

	parse_recipe_line(ps, r);
	for (;;) {
		skip_space(ps);
		if (ps->p >= ps->end || *ps->p != '*')
			break;
		ps->p++;
		parse_condition(ps, r);
	}
	if (ps->p >= ps->end || *ps->p == '}') {
		parse_error(ps, line, "recipe without an action");
		r->action = RC_ACTION_FOLDER;
		r->action_text = NULL;
		return r;
	}
	if (*ps->p == '{' &&
	    (ps->p + 1 == ps->end || isspace((unsigned char)ps->p[1]))) {
		int open_line = ps->line;

		ps->p++;
		r->action = RC_ACTION_BLOCK;
		ps->depth++;
		parse_items(ps, &r->block, &r->nblock);
		ps->depth--;
		if (ps->p < ps->end && *ps->p == '}')
			ps->p++;
		else
			parse_error(ps, open_line, "missing closing brace");
		return r;
	}
	if (*ps->p == '!') {
		ps->p++;
		r->action = RC_ACTION_FORWARD;
		r->action_text = read_logical_line(ps, 0);
	} else if (*ps->p == '|') {
		ps->p++;
		r->action = RC_ACTION_PIPE;
		r->action_text = read_logical_line(ps, 0);
	} else if ((n = capture_prefix(ps->p, ps->end, &name_len)) > 0) {
		r->capture = xstrndup(ps->p, name_len);
		ps->p += n;
		r->action = RC_ACTION_PIPE;
		r->action_text = read_logical_line(ps, 0);
	} else {
		r->action = RC_ACTION_FOLDER;
		r->action_text = read_logical_line(ps, 0);
	}
	{
		char *t = trimmed_dup(r->action_text);

		free(r->action_text);
		r->action_text = t;
	}
	if (r->action == RC_ACTION_FOLDER && r->action_text[0] == '\0')
		parse_error(ps, line, "recipe without an action");
	return r;
}

/* Scans the value of an assignment: one shell word, quotes kept. Returns
 * it, or NULL for a word that is empty. */
static char *
parse_value(struct parser *ps)
{
	const char *start;
	int line = ps->line;

	skip_blanks(ps);
	start = ps->p;
	if (ps->p < ps->end && *ps->p == '#') {
		skip_to_eol(ps);
		return xstrdup("");
	}
	while (ps->p < ps->end && !is_blank(*ps->p) && *ps->p != '\n') {
		char c = *ps->p++, q;

		switch (c) {
		case '\\':
			if (ps->p < ps->end) {
				if (*ps->p == '\n')
					ps->line++;
				ps->p++;
			}
			break;
		case '\'':
		case '"':
		case '`':
			q = c;
			while (ps->p < ps->end && *ps->p != q) {
				if (*ps->p == '\n')
					ps->line++;
				if (*ps->p == '\\' && q != '\'' &&
				    ps->p + 1 < ps->end) {
					ps->p++;
					if (*ps->p == '\n')
						ps->line++;
				}
				ps->p++;
			}
			if (ps->p >= ps->end)
				parse_error(ps, line, "unterminated %c quote",
					    q);
			else
				ps->p++;
			break;
		default:
			break;
		}
	}
	return xstrndup(start, (size_t)(ps->p - start));
}

static void
parse_items(struct parser *ps, struct rc_item **items, size_t *nitems)
{
	for (;;) {
		struct rc_item item;
		const char *s;

		skip_space(ps);
		if (ps->p >= ps->end)
			return;
		memset(&item, 0, sizeof(item));
		item.line = ps->line;
		if (*ps->p == '}') {
			if (ps->depth > 0)
				return;
			parse_error(ps, ps->line, "unexpected '}'");
			ps->p++;
			continue;
		}
		if (*ps->p == ':') {
			item.type = RC_ITEM_RECIPE;
			item.recipe = parse_recipe(ps, item.line);
			add_item(items, nitems, &item);
			continue;
		}
		if (!is_name_start(*ps->p)) {
			const char *e = ps->p;

			while (e < ps->end && *e != '\n')
				e++;
			parse_error(ps, item.line, "skipped \"%.*s\"",
				    (int)(e - ps->p > 60 ? 60 : e - ps->p),
				    ps->p);
			skip_to_eol(ps);
			continue;
		}
		s = ps->p;
		while (ps->p < ps->end && is_name_char(*ps->p))
			ps->p++;
		item.type = RC_ITEM_ASSIGN;
		item.name = xstrndup(s, (size_t)(ps->p - s));
		skip_blanks(ps);
		if (ps->p < ps->end && *ps->p == '=') {
			ps->p++;
			item.value = parse_value(ps);
		} else if (ps->p < ps->end && *ps->p != '\n' &&
			   *ps->p != '#' && *ps->p != '}') {
			/* "word junk": procmail skips what it cannot read. */
			parse_error(ps, item.line, "skipped \"%s\"",
				    item.name);
			free(item.name);
			skip_to_eol(ps);
			continue;
		}
		add_item(items, nitems, &item);
	}
}

struct rc_file *
rc_parse(const char *name, const char *text, size_t len, rc_error_fn *error,
	 void *arg)
{
	struct rc_file *rc = xcalloc(1, sizeof(*rc));
	struct parser ps;
	struct buf norm;
	size_t i;

	/* CRLF is read as LF and NUL as a blank, so that the scanner can work
	 * on a C string's rules without ever leaving [text, text + len). */
	buf_init(&norm);
	for (i = 0; i < len; i++) {
		if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
			continue;
		buf_putc(&norm, text[i] == '\0' ? ' ' : text[i]);
	}
	memset(&ps, 0, sizeof(ps));
	ps.name = name;
	ps.p = norm.data;
	ps.end = norm.data + norm.len;
	ps.line = 1;
	ps.error = error;
	ps.arg = arg;
	rc->name = xstrdup(name);
	parse_items(&ps, &rc->items, &rc->nitems);
	rc->nerrors = ps.nerrors;
	buf_free(&norm);
	return rc;
}

static void free_items(struct rc_item *items, size_t n);

static void
free_recipe(struct rc_recipe *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nconds; i++)
		free(r->conds[i].text);
	free(r->conds);
	free(r->lockfile);
	free(r->action_text);
	free(r->capture);
	free_items(r->block, r->nblock);
	free(r);
}

static void
free_items(struct rc_item *items, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(items[i].name);
		free(items[i].value);
		free_recipe(items[i].recipe);
	}
	free(items);
}

void
rc_free(struct rc_file *rc)
{
	if (rc == NULL)
		return;
	free_items(rc->items, rc->nitems);
	free(rc->name);
	free(rc);
}

void
rc_cond_split(const char *text, struct rc_cond_parts *out)
{
	const char *s = text, *n;

	memset(out, 0, sizeof(*out));
	for (;;) {
		while (is_blank(*s))
			s++;
		if (*s != '!')
			break;
		out->negate = !out->negate;
		s++;
	}
	out->kind = RC_COND_REGEX;
	switch (*s) {
	case '$':
		out->kind = RC_COND_EXPAND;
		s++;
		break;
	case '?':
		out->kind = RC_COND_PROGRAM;
		s++;
		break;
	case '<':
		out->kind = RC_COND_LESS;
		s++;
		break;
	case '>':
		out->kind = RC_COND_MORE;
		s++;
		break;
	case '\\':
		if (s[1] != '\0' && strchr("!$?<>\\", s[1]) != NULL &&
		    s[1] != '\\')
			s++;
		out->rest = s;
		return;
	default:
		if (is_name_start(*s)) {
			n = s;
			while (is_name_char(*n))
				n++;
			out->var = s;
			out->var_len = (size_t)(n - s);
			while (is_blank(*n))
				n++;
			if (n[0] == '?' && n[1] == '?') {
				out->kind = RC_COND_VAR;
				s = n + 2;
				break;
			}
			out->var = NULL;
			out->var_len = 0;
		}
		out->rest = s;
		return;
	}
	while (is_blank(*s))
		s++;
	out->rest = s;
}
