/*
 * address: parsing and checking of mail addresses.
 */
#include "address.h"

#include <ctype.h>
#include <string.h>

void
address_init(struct address *a)
{
	buf_init(&a->local);
	buf_init(&a->domain);
}

void
address_free(struct address *a)
{
	buf_free(&a->local);
	buf_free(&a->domain);
}

void
address_lowercase(char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		s[i] = (char)tolower((unsigned char)s[i]);
}

void
address_unbracket(const char **text, size_t *len)
{
	const char *p = *text;
	size_t n = *len;

	while (n > 0 && isspace((unsigned char)p[0]))
		p++, n--;
	while (n > 0 && isspace((unsigned char)p[n - 1]))
		n--;
	if (n >= 2 && p[0] == '<' && p[n - 1] == '>')
		p++, n -= 2;
	*text = p;
	*len = n;
}

int
address_parse(struct address *a, const char *text, size_t len)
{
	size_t i, at = (size_t)-1;
	int quoted = 0;

	buf_reset(&a->local);
	buf_reset(&a->domain);
	address_unbracket(&text, &len);
	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c < 0x20 || c == 0x7f)
			return -1;
		if (c == '\\' && quoted && i + 1 < len) {
			i++;
			continue;
		}
		if (c == '"')
			quoted = !quoted;
		else if (c == '@' && !quoted)
			at = i;
	}
	if (quoted)
		return -1;
	if (at == (size_t)-1)
		at = len;
	/* The local part, without its quotes: "a b"@x is the local part a b. */
	for (i = 0; i < at; i++) {
		if (text[i] == '"')
			continue;
		if (text[i] == '\\' && i + 1 < at)
			i++;
		buf_putc(&a->local, text[i]);
	}
	if (at < len) {
		if (at + 1 == len)
			return -1;
		buf_append(&a->domain, text + at + 1, len - at - 1);
		address_lowercase(a->domain.data, a->domain.len);
	}
	return a->local.len > 0 ? 0 : -1;
}

int
address_safe_local(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || len > 64 || name[0] == '-' || name[0] == '.')
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c <= 0x20 || c == 0x7f || c == '/' || c == '\\' ||
		    c == '"' || c == '\'' || c == '`' || c == '|' ||
		    c == '$' || c == ';' || c == '&' || c == '<' || c == '>' ||
		    c == '(' || c == ')' || c == '*' || c == '?' || c == '[' ||
		    c == ']' || c == '{' || c == '}' || c == '~' || c == '!' ||
		    c == '#' || c == ':' || c == '@' || c == ',')
			return 0;
	}
	return 1;
}

int
address_split_extension(const char *local, size_t len, char delimiter,
			size_t *user_len, const char **ext, size_t *ext_len)
{
	const char *d;

	*user_len = len;
	*ext = NULL;
	*ext_len = 0;
	if (delimiter == '\0')
		return 0;
	d = memchr(local, delimiter, len);
	/* "+tag" alone is not user "" with a tag. */
	if (d == NULL || d == local)
		return 0;
	*user_len = (size_t)(d - local);
	*ext = d + 1;
	*ext_len = len - *user_len - 1;
	return 1;
}

static int
atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("!#$%&'*+-/=?^_`{|}~", c);
}

void
address_quote_local(struct buf *out, const char *local, size_t len)
{
	size_t i;
	int plain = len > 0 && local[0] != '.' && local[len - 1] != '.';

	for (i = 0; plain && i < len; i++)
		if (!(local[i] != '\0' && (atext((unsigned char)local[i]) ||
		      (local[i] == '.' && local[i + 1] != '.'))))
			plain = 0;
	if (plain) {
		buf_append(out, local, len);
		return;
	}
	buf_putc(out, '"');
	for (i = 0; i < len; i++) {
		if (local[i] == '"' || local[i] == '\\')
			buf_putc(out, '\\');
		buf_putc(out, local[i]);
	}
	buf_putc(out, '"');
}
