/*
 * vars: a small ordered table (rcfiles set a few dozen variables) and the
 * expansion rules of procmailrc(5) BUGS: unquoted expansions are split on
 * space, tab and newline only; $\name disarms the regex characters.
 */
#include "vars.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void
vars_init(struct vars *v)
{
	memset(v, 0, sizeof(*v));
}

void
vars_free(struct vars *v)
{
	size_t i;

	for (i = 0; i < v->n; i++) {
		free(v->names[i]);
		free(v->values[i]);
	}
	free(v->names);
	free(v->values);
	memset(v, 0, sizeof(*v));
}

void
vars_copy(struct vars *dst, const struct vars *src)
{
	size_t i;

	vars_init(dst);
	for (i = 0; i < src->n; i++)
		vars_set(dst, src->names[i], src->values[i]);
}

static long
find(const struct vars *v, const char *name)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		if (strcmp(v->names[i], name) == 0)
			return (long)i;
	return -1;
}

const char *
vars_get(const struct vars *v, const char *name)
{
	long i = find(v, name);

	return i < 0 ? NULL : v->values[i];
}

void
vars_set(struct vars *v, const char *name, const char *value)
{
	long i = find(v, name);
	char *copy = xstrdup(value);

	if (i >= 0) {
		free(v->values[i]);
		v->values[i] = copy;
		return;
	}
	v->names = xrealloc(v->names, (v->n + 1) * sizeof(*v->names));
	v->values = xrealloc(v->values, (v->n + 1) * sizeof(*v->values));
	v->names[v->n] = xstrdup(name);
	v->values[v->n] = copy;
	v->n++;
}

void
vars_unset(struct vars *v, const char *name)
{
	long i = find(v, name);

	if (i < 0)
		return;
	free(v->names[i]);
	free(v->values[i]);
	memmove(v->names + i, v->names + i + 1,
		(v->n - (size_t)i - 1) * sizeof(*v->names));
	memmove(v->values + i, v->values + i + 1,
		(v->n - (size_t)i - 1) * sizeof(*v->values));
	v->n--;
}

char **
vars_envp_new(const struct vars *v)
{
	char **envp = xcalloc(v->n + 1, sizeof(*envp));
	size_t i;

	for (i = 0; i < v->n; i++) {
		struct buf b;

		buf_init(&b);
		buf_printf(&b, "%s=%s", v->names[i], v->values[i]);
		envp[i] = buf_steal(&b);
		buf_free(&b);
	}
	return envp;
}

void
vars_envp_free(char **envp)
{
	size_t i;

	if (envp == NULL)
		return;
	for (i = 0; envp[i] != NULL; i++)
		free(envp[i]);
	free(envp);
}

int
vars_is_true(const char *value, int unset_default)
{
	char c;

	if (value == NULL || value[0] == '\0')
		return unset_default;
	c = (char)tolower((unsigned char)value[0]);
	if (isdigit((unsigned char)c))
		return atol(value) != 0;
	if (strncasecmp(value, "on", 2) == 0)
		return 1;
	if (strncasecmp(value, "off", 3) == 0)
		return 0;
	return c == 'y' || c == 't' || c == 'e';
}

/* Where expansion output goes: one string, or words. */
struct sink {
	struct buf *out;
	int words;		/* split mode */
	int open;		/* a word is being built */
	size_t nwords;
};

static void
sink_char(struct sink *s, char c)
{
	buf_putc(s->out, c);
	s->open = 1;
}

static void
sink_break(struct sink *s)
{
	if (s->words && s->open) {
		buf_putc(s->out, '\0');
		s->nwords++;
		s->open = 0;
	}
}

static int
is_ifs(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

/* A value substituted: split into words when unquoted in word mode. */
static void
sink_value(struct sink *s, const char *p, size_t len, int quoted)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s->words && !quoted && is_ifs(p[i]))
			sink_break(s);
		else
			sink_char(s, p[i]);
	}
}

/* $\name as procmail makes it: "()" first (an empty group, so that the
 * value cannot join what precedes it, e.g. into "^^"), then the value with
 * a backslash before each of procmail's regex characters ("]", "{" and "}"
 * are plain characters to it). */
static void
regex_quote(const char *v, struct buf *out)
{
	buf_puts(out, "()");
	for (; *v != '\0'; v++) {
		if (strchr("\\^$.[|()*+?", *v) != NULL)
			buf_putc(out, '\\');
		buf_putc(out, *v);
	}
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

/* Expands the $ reference at text[*i] (the '$'); appends its value to val.
 * Returns 0 when it is no reference (a literal '$'). *noquote says that
 * the value is never split ($\name). */
static int
expand_ref(const struct vars_ctx *ctx, const char *text, size_t *i,
	   struct buf *val, int *nosplit)
{
	const char *p = text + *i + 1;
	const char *name_end, *v;
	char name[256];
	size_t n;

	*nosplit = 0;
	if (*p == '\\' && is_name_start(p[1])) {
		p++;
		for (name_end = p; is_name_char(*name_end); name_end++)
			;
		n = (size_t)(name_end - p);
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		memcpy(name, p, n);
		name[n] = '\0';
		v = vars_get(ctx->vars, name);
		if (v != NULL)
			regex_quote(v, val);
		*nosplit = 1;
		*i = (size_t)(name_end - text);
		return 1;
	}
	/* "$_" alone is the rcfile's name, "$_x" a variable */
	if (is_name_start(*p) && !(*p == '_' && !is_name_char(p[1]))) {
		for (name_end = p; is_name_char(*name_end); name_end++)
			;
		n = (size_t)(name_end - p);
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		memcpy(name, p, n);
		name[n] = '\0';
		v = vars_get(ctx->vars, name);
		if (v != NULL)
			buf_puts(val, v);
		*i = (size_t)(name_end - text);
		return 1;
	}
	if (*p != '\0' && (isdigit((unsigned char)*p) ||
			   strchr("#$?_-=@", *p) != NULL)) {
		if (ctx->special != NULL)
			ctx->special(ctx->arg, *p, val);
		*i = (size_t)(p + 1 - text);
		return 1;
	}
	if (*p == '{') {
		const char *close, *op;
		int colon = 0;
		char kind = 0;

		p++;
		for (name_end = p; is_name_char(*name_end); name_end++)
			;
		if (name_end == p && *name_end != '\0' &&
		    (isdigit((unsigned char)*name_end) ||
		     strchr("#$?_-=", *name_end) != NULL))
			name_end++;
		op = name_end;
		if (*op == ':' && (op[1] == '-' || op[1] == '+')) {
			colon = 1;
			op++;
		}
		if (*op == '-' || *op == '+')
			kind = *op++;
		/* The closing brace, skipping nested ${...}. */
		{
			int depth = 1;

			for (close = op; *close != '\0'; close++) {
				if (close[0] == '$' && close[1] == '{')
					depth++;
				else if (*close == '}' && --depth == 0)
					break;
			}
		}
		if (*close != '}' || (kind == 0 && op != close))
			return 0;
		n = (size_t)(name_end - p);
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		memcpy(name, p, n);
		name[n] = '\0';
		if (n == 1 && !is_name_start(name[0])) {
			struct buf sp;

			buf_init(&sp);
			if (ctx->special != NULL)
				ctx->special(ctx->arg, name[0], &sp);
			v = NULL;
			if (kind == 0)
				buf_append(val, sp.data, sp.len);
			else if (sp.len > 0 || !colon)
				v = "";
			buf_free(&sp);
			if (kind == 0) {
				*i = (size_t)(close + 1 - text);
				return 1;
			}
		} else {
			v = vars_get(ctx->vars, name);
		}
		if (kind == 0) {
			if (v != NULL)
				buf_puts(val, v);
		} else {
			int set = v != NULL && (!colon || v[0] != '\0');
			int use_word = kind == '-' ? !set : set;

			if (use_word) {
				char *word = xstrndup(op, (size_t)(close - op));

				vars_expand(ctx, word, VARS_ASSIGN, val, NULL);
				free(word);
			} else if (kind == '-' && v != NULL) {
				buf_puts(val, v);
			}
		}
		*i = (size_t)(close + 1 - text);
		return 1;
	}
	return 0;
}

/* The command of a `...` at text[*i]; *i moves past the closing quote. */
static void
backquote(const struct vars_ctx *ctx, const char *text, size_t *i,
	  struct buf *val)
{
	struct buf cmd;
	size_t j = *i + 1;

	buf_init(&cmd);
	while (text[j] != '\0' && text[j] != '`') {
		if (text[j] == '\\' && (text[j + 1] == '`' ||
					text[j + 1] == '\\' ||
					text[j + 1] == '$'))
			j++;
		buf_putc(&cmd, text[j++]);
	}
	*i = text[j] == '`' ? j + 1 : j;
	if (ctx->backquote != NULL) {
		size_t start = val->len;

		ctx->backquote(ctx->arg, cmd.data, val);
		/* sh: trailing newlines of the output are dropped */
		while (val->len > start && val->data[val->len - 1] == '\n')
			val->len--;
		val->data[val->len] = '\0';
	}
	buf_free(&cmd);
}

static void
expand_command(const struct vars_ctx *ctx, const char *text, struct buf *out)
{
	size_t i = 0;
	int sq = 0;

	while (text[i] != '\0') {
		char c = text[i];

		if (sq) {
			if (c == '\'')
				sq = 0;
			buf_putc(out, c);
			i++;
		} else if (c == '\'') {
			sq = 1;
			buf_putc(out, c);
			i++;
		} else if (c == '\\' && text[i + 1] != '\0') {
			buf_append(out, text + i, 2);
			i += 2;
		} else if (c == '$') {
			struct buf val;
			int nosplit;

			buf_init(&val);
			if (expand_ref(ctx, text, &i, &val, &nosplit))
				buf_append(out, val.data, val.len);
			else
				buf_putc(out, text[i++]);
			buf_free(&val);
		} else {
			buf_putc(out, c);
			i++;
		}
	}
}

void
vars_expand(const struct vars_ctx *ctx, const char *text, enum vars_mode mode,
	    struct buf *out, size_t *nwords)
{
	struct sink s;
	size_t i = 0;
	int sq = 0, dq = mode == VARS_DQUOTE;

	if (nwords != NULL)
		*nwords = 0;
	if (mode == VARS_COMMAND) {
		expand_command(ctx, text, out);
		return;
	}
	memset(&s, 0, sizeof(s));
	s.out = out;
	s.words = mode == VARS_WORDS;
	while (text[i] != '\0') {
		char c = text[i];

		if (sq) {
			if (c == '\'')
				sq = 0;
			else
				sink_char(&s, c);
			i++;
			continue;
		}
		if (c == '\'' && mode != VARS_DQUOTE && !dq) {
			sq = 1;
			s.open = 1;
			i++;
			continue;
		}
		if (c == '"' && mode != VARS_DQUOTE) {
			dq = !dq;
			s.open = 1;
			i++;
			continue;
		}
		if (c == '\\') {
			char d = text[i + 1];

			if (d == '\0') {
				sink_char(&s, c);
				i++;
			} else if (d == '\n') {
				i += 2;
			} else if (!dq || strchr("$`\"\\", d) != NULL) {
				sink_char(&s, d);
				i += 2;
			} else {
				sink_char(&s, c);
				i++;
			}
			continue;
		}
		if (c == '`' || c == '$') {
			struct buf val;
			int nosplit = 0, ok = 1;

			buf_init(&val);
			if (c == '`')
				backquote(ctx, text, &i, &val);
			else
				ok = expand_ref(ctx, text, &i, &val, &nosplit);
			if (ok)
				sink_value(&s, val.data, val.len,
					   dq || nosplit);
			else
				sink_char(&s, text[i++]);
			buf_free(&val);
			continue;
		}
		if (s.words && !dq && is_ifs(c)) {
			sink_break(&s);
			i++;
			continue;
		}
		if (s.words && !dq && c == '#' && !s.open)
			break;	/* a comment */
		sink_char(&s, c);
		i++;
	}
	sink_break(&s);
	if (nwords != NULL)
		*nwords = s.nwords;
}
