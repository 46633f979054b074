/*
 * rxtrans: procmail regex to PCRE2. Procmail's own matcher reads "^" and
 * "$" as "a newline (or the edge of the text)", negated classes never match
 * a newline, "{" is an ordinary character and a backslash only quotes.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "rxtrans.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

/* procmailrc(5) of procmail 3.22, word for word. */
static const char TO_KEY[] =
	"(^((Original-)?(Resent-)?(To|Cc|Bcc)|(X-Envelope|Apparently"
	"(-Resent)?)-To):(.*[^-a-zA-Z0-9_.])?)";
static const char TO_WORD[] =
	"(^((Original-)?(Resent-)?(To|Cc|Bcc)|(X-Envelope|Apparently"
	"(-Resent)?)-To):(.*[^a-zA-Z])?)";
static const char FROM_DAEMON[] =
	"(^(Mailing-List:|Precedence:.*(junk|bulk|list)|To: Multiple "
	"recipients of |(((Resent-)?(From|Sender)|X-Envelope-From):|>?From "
	")([^>]*[^(.%@a-z0-9])?(Post(ma?(st(e?r)?|n)|office)|(send)?Mail(er)?"
	"|daemon|m(mdf|ajordomo)|n?uucp|LIST(SERV|proc)|NETSERV|o(wner|ps)"
	"|r(e(quest|sponse)|oot)|b(ounce|bs\\.smtp)|echo|mirror|s(erv(ices?|er)"
	"|mtp(error)?|ystem)|A(dmin(istrator)?|MMGR|utoanswer))(([^).!:a-"
	"z0-9][-_a-z0-9]*)?[%@>\t ][^<)]*(\\(.*\\).*)?)?$([^>]|$)))";
static const char FROM_MAILER[] =
	"(^(((Resent-)?(From|Sender)|X-Envelope-From):|>?From "
	")([^>]*[^(.%@a-z0-9])?(Post(ma(st(er)?|n)|office)|(send)?Mail(er)?"
	"|daemon|mmdf|n?uucp|ops|r(esponse|oot)|(bbs\\.)?smtp(error)?"
	"|s(erv(ices?|er)|ystem)|A(dmin(istrator)?|MMGR))(([^).!:a-z0-9]"
	"[-_a-z0-9]*)?[%@>\t ][^<)]*(\\(.*\\).*)?)?$([^>]|$))";

/* Texts larger than this are searched with the JIT. */
#define JIT_THRESHOLD (64 * 1024)

struct rx {
	char *pattern;		/* procmail form, the cache key */
	int case_sensitive;
	int has_split;
	int jit_tried;
	pcre2_code *code;
	pcre2_match_data *md;
	pcre2_code *dfa_code;	/* for counting, made when first needed */
	int dfa_tried;
	struct rx *next;
};

struct rx_cache {
	struct rx *list;
};

/* The macros, textually, as procmail substitutes them. */
static void
expand_macros(const char *pat, size_t len, struct buf *out)
{
	static const struct {
		const char *name;
		const char *text;
	} macros[] = {
		{ "^TO_", TO_KEY },
		{ "^TO", TO_WORD },
		{ "^FROM_DAEMON", FROM_DAEMON },
		{ "^FROM_MAILER", FROM_MAILER },
	};
	size_t i = 0, k;

	while (i < len) {
		if (pat[i] == '\\' && i + 1 < len) {
			buf_append(out, pat + i, 2);
			i += 2;
			continue;
		}
		for (k = 0; k < sizeof(macros) / sizeof(macros[0]); k++) {
			size_t n = strlen(macros[k].name);

			if (len - i >= n && memcmp(pat + i, macros[k].name,
						   n) == 0) {
				buf_puts(out, macros[k].text);
				i += n;
				break;
			}
		}
		if (k == sizeof(macros) / sizeof(macros[0]))
			buf_putc(out, pat[i++]);
	}
}

static int
is_quantifier(char c)
{
	return c == '*' || c == '+' || c == '?';
}

/* Whether the pattern holds a "\/" (outside a bracket expression). */
static int
find_split(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (s[i] == '\\' && i + 1 < n) {
			if (s[i + 1] == '/')
				return 1;
			i += 2;
		} else if (s[i] == '[') {
			i++;
			if (i < n && s[i] == '^')
				i++;
			if (i < n && s[i] == ']')
				i++;
			while (i < n && s[i] != ']')
				i += s[i] == '\\' && i + 1 < n ? 2 : 1;
			i++;
		} else {
			i++;
		}
	}
	return 0;
}

void
rx_translate(const char *pat, size_t len, struct buf *out, int *has_split)
{
	struct buf src;
	const char *s;
	size_t n, i = 0;
	int atom = 0, depth = 0, lazy;

	*has_split = 0;
	buf_init(&src);
	expand_macros(pat, len, &src);
	s = src.data;
	n = src.len;
	/* procmail matches the part left of "\/" as short as it can and
	 * the part right of it (MATCH) as long as it can: the quantifiers
	 * on the left are lazy. */
	lazy = find_split(s, n);
	if (n >= 2 && s[0] == '^' && s[1] == '^') {
		buf_puts(out, "\\A");
		i = 2;
	}
	while (i < n) {
		char c = s[i];

		switch (c) {
		case '^':
			if (i + 1 < n && s[i + 1] == '^' && i + 2 == n) {
				buf_puts(out, "\\z");
				i += 2;
				atom = 0;
				continue;
			}
			buf_puts(out, "(?:^|\\n)");
			atom = 1;
			i++;
			continue;
		case '$':
			buf_puts(out, "(?:\\n|\\z)");
			atom = 1;
			i++;
			continue;
		case '\\':
			i++;
			if (i >= n) {
				buf_puts(out, "\\\\");
				atom = 1;
				continue;
			}
			c = s[i++];
			if (c == '/') {
				if (!*has_split)
					buf_puts(out, "\\K");
				*has_split = 1;
				lazy = 0;
				atom = 0;
			} else if (c == '<') {
				buf_puts(out, "(?:^|[^a-zA-Z0-9_])");
				atom = 1;
			} else if (c == '>') {
				buf_puts(out, "(?:[^a-zA-Z0-9_]|\\z)");
				atom = 1;
			} else if (isalnum((unsigned char)c)) {
				buf_putc(out, c);
				atom = 1;
			} else {
				buf_putc(out, '\\');
				buf_putc(out, c);
				atom = 1;
			}
			continue;
		case '[':
			i++;
			buf_putc(out, '[');
			if (i < n && s[i] == '^') {
				/* procmail: not these, and not a newline */
				buf_puts(out, "^\\n");
				i++;
			}
			if (i < n && s[i] == ']') {
				buf_puts(out, "\\]");
				i++;
			}
			if (i < n && s[i] == '-') {
				/* no longer first: keep it from making a
				 * range with what went before */
				buf_puts(out, "\\-");
				i++;
			}
			while (i < n && s[i] != ']') {
				c = s[i++];
				if (c == '\\' && i < n) {
					c = s[i++];
					if (!isalnum((unsigned char)c))
						buf_putc(out, '\\');
					buf_putc(out, c);
				} else if (c == '[' || c == '\\') {
					buf_putc(out, '\\');
					buf_putc(out, c);
				} else {
					buf_putc(out, c);
				}
			}
			buf_putc(out, ']');	/* also closes a truncated one */
			if (i < n)
				i++;
			atom = 1;
			continue;
		case '(':
			buf_puts(out, "(?:");
			depth++;
			atom = 0;
			i++;
			continue;
		case ')':
			if (depth == 0) {
				buf_puts(out, "\\)");
			} else {
				buf_putc(out, ')');
				depth--;
			}
			atom = 1;
			i++;
			continue;
		case '|':
			buf_putc(out, '|');
			atom = 0;
			i++;
			continue;
		case '*':
		case '+':
		case '?':
			if (!atom) {
				buf_putc(out, '\\');
				buf_putc(out, c);
				atom = 1;
				i++;
				continue;
			} else {
				/* A run of quantifiers means what the widest
				 * one says; PCRE2 would read "*?" as lazy
				 * and "*+" as possessive. */
				int star = 0, plus = 0, opt = 0;

				while (i < n && is_quantifier(s[i])) {
					star |= s[i] == '*';
					plus |= s[i] == '+';
					opt |= s[i] == '?';
					i++;
				}
				if (star || (plus && opt))
					buf_putc(out, '*');
				else
					buf_putc(out, plus ? '+' : '?');
				if (lazy)
					buf_putc(out, '?');
				atom = 0;
			}
			continue;
		case '{':
		case '}':
			buf_putc(out, '\\');
			buf_putc(out, c);
			atom = 1;
			i++;
			continue;
		default:
			buf_putc(out, c);
			atom = 1;
			i++;
			continue;
		}
	}
	while (depth-- > 0)
		buf_putc(out, ')');
	buf_free(&src);
}

struct rx_cache *
rx_cache_new(void)
{
	return xcalloc(1, sizeof(struct rx_cache));
}

void
rx_cache_free(struct rx_cache *cache)
{
	struct rx *rx, *next;

	if (cache == NULL)
		return;
	for (rx = cache->list; rx != NULL; rx = next) {
		next = rx->next;
		pcre2_match_data_free(rx->md);
		pcre2_code_free(rx->code);
		pcre2_code_free(rx->dfa_code);
		free(rx->pattern);
		free(rx);
	}
	free(cache);
}

struct rx *
rx_get(struct rx_cache *cache, const char *pat, int case_sensitive,
       struct buf *err)
{
	struct rx *rx;
	struct buf pcre;
	int code, split;
	PCRE2_SIZE offset;
	uint32_t options = PCRE2_MULTILINE;

	for (rx = cache->list; rx != NULL; rx = rx->next)
		if (rx->case_sensitive == case_sensitive &&
		    strcmp(rx->pattern, pat) == 0)
			return rx;
	buf_init(&pcre);
	rx_translate(pat, strlen(pat), &pcre, &split);
	if (!case_sensitive)
		options |= PCRE2_CASELESS;
	rx = xcalloc(1, sizeof(*rx));
	rx->code = pcre2_compile((PCRE2_SPTR)pcre.data, pcre.len, options,
				 &code, &offset, NULL);
	buf_free(&pcre);
	if (rx->code == NULL) {
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(code, msg, sizeof(msg));
		buf_printf(err, "invalid regexp \"%s\": %s", pat,
			   (const char *)msg);
		free(rx);
		return NULL;
	}
	rx->md = pcre2_match_data_create_from_pattern(rx->code, NULL);
	if (rx->md == NULL)
		abort();
	rx->pattern = xstrdup(pat);
	rx->case_sensitive = case_sensitive;
	rx->has_split = split;
	rx->next = cache->list;
	cache->list = rx;
	return rx;
}

int
rx_search(struct rx *rx, const char *text, size_t len, size_t start,
	  size_t *match_start, size_t *match_end)
{
	PCRE2_SIZE *ov;
	int rc;

	if (len > JIT_THRESHOLD && !rx->jit_tried) {
		rx->jit_tried = 1;
		(void)pcre2_jit_compile(rx->code, PCRE2_JIT_COMPLETE);
	}
	if (start > len)
		return 0;
	rc = pcre2_match(rx->code, (PCRE2_SPTR)text, len, start, 0, rx->md,
			 NULL);
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc < 0)
		return -1;
	ov = pcre2_get_ovector_pointer(rx->md);
	*match_start = ov[0];
	*match_end = ov[1];
	/* \K inside a lookaround can end a match before it starts. */
	if (*match_start > *match_end)
		*match_start = *match_end;
	return 1;
}

/* The next match from start that ends first (procmail's matcher stops at
 * the first end it reaches: "a+" in "aaa" is "a"), by PCRE2's DFA
 * matcher; 0 when none, -1 when the DFA matcher cannot run the pattern. */
static int
search_shortest(struct rx *rx, const char *text, size_t len, size_t start,
		size_t *match_end)
{
	int workspace[1000];
	PCRE2_SIZE *ov;
	int rc;

	if (!rx->dfa_tried) {
		/* Without auto-possessification, which would make "a+" at
		 * the end of a pattern take all the a's even here. */
		struct buf pcre;
		int code, split;
		PCRE2_SIZE offset;
		uint32_t options = PCRE2_MULTILINE | PCRE2_NO_AUTO_POSSESS;

		rx->dfa_tried = 1;
		buf_init(&pcre);
		rx_translate(rx->pattern, strlen(rx->pattern), &pcre, &split);
		if (!rx->case_sensitive)
			options |= PCRE2_CASELESS;
		rx->dfa_code = pcre2_compile((PCRE2_SPTR)pcre.data, pcre.len,
					     options, &code, &offset, NULL);
		buf_free(&pcre);
	}
	if (rx->dfa_code == NULL)
		return -1;
	rc = pcre2_dfa_match(rx->dfa_code, (PCRE2_SPTR)text, len, start,
			     PCRE2_DFA_SHORTEST, rx->md, NULL, workspace,
			     sizeof(workspace) / sizeof(workspace[0]));
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc < 0)
		return -1;
	ov = pcre2_get_ovector_pointer(rx->md);
	*match_end = ov[1];
	return 1;
}

long
rx_count(struct rx *rx, const char *text, size_t len, long max)
{
	size_t pos = 0, ms, me;
	long count = 0;
	int rc = 1;

	while (count < max && pos <= len) {
		if (rc >= 0)
			rc = search_shortest(rx, text, len, pos, &me);
		if (rc < 0 && rx_search(rx, text, len, pos, &ms, &me) != 1)
			break;
		if (rc == 0)
			break;
		count++;
		pos = me > pos ? me : pos + 1;
	}
	return count;
}

int
rx_has_split(const struct rx *rx)
{
	return rx->has_split;
}
