/*
 * access: lookups in the access table.
 */
#include "access.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "maillog.h"

static int
word_is(const char *v, size_t len, const char *word)
{
	size_t n = strlen(word);

	return len >= n && strncasecmp(v, word, n) == 0 &&
	       (len == n || isspace((unsigned char)v[n]));
}

int
access_parse_value(const char *v, size_t len, struct access_result *r)
{
	while (len > 0 && isspace((unsigned char)*v)) {
		v++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)v[len - 1]))
		len--;
	r->reply[0] = '\0';
	if (word_is(v, len, "OK")) {
		r->action = ACCESS_OK;
	} else if (word_is(v, len, "RELAY")) {
		r->action = ACCESS_RELAY;
	} else if (word_is(v, len, "REJECT")) {
		r->action = ACCESS_REJECT;
		snprintf(r->reply, sizeof(r->reply), "550 5.7.1 Access denied");
	} else if (word_is(v, len, "DISCARD")) {
		r->action = ACCESS_DISCARD;
	} else if (len > 6 && strncasecmp(v, "ERROR:", 6) == 0) {
		const char *p = v + 6, *end = v + len;
		char dsn[16] = "";
		int a, b, c, n = 0;

		if (p < end && *p == '"') {
			p++;
			if (end > p && end[-1] == '"')
				end--;
		}
		/* an optional D.S.N: first */
		if (sscanf(p, "%1d.%3d.%3d:%n", &a, &b, &c, &n) == 3 && n > 0 &&
		    p + n <= end) {
			snprintf(dsn, sizeof(dsn), "%d.%d.%d", a, b, c);
			p += n;
		}
		if (end - p < 3 || (p[0] != '4' && p[0] != '5') ||
		    !isdigit((unsigned char)p[1]) ||
		    !isdigit((unsigned char)p[2]))
			return -1;
		if (dsn[0] == '\0')
			snprintf(dsn, sizeof(dsn), "%c.7.1", p[0]);
		else if (dsn[0] != p[0])
			dsn[0] = p[0];	/* class of code and DSN agree */
		r->action = ACCESS_ERROR;
		{
			const char *text = p + 3;

			while (text < end && (*text == ' ' || *text == '\t'))
				text++;
			snprintf(r->reply, sizeof(r->reply), "%.3s %s %.*s", p,
				 dsn, (int)(end - text), text);
			/* No line breaks or controls reach the wire. */
			for (char *q = r->reply; *q; q++)
				if ((unsigned char)*q < ' ')
					*q = ' ';
		}
	} else {
		return -1;
	}
	return 0;
}

/* Looks key up with the tag and without; 1 when an entry decided. */
static int
lookup(struct map *m, const char *tag, const char *key,
       struct access_result *r)
{
	struct buf k, v;
	int found = 0, i;

	if (m == NULL || key[0] == '\0')
		return 0;
	buf_init(&k);
	buf_init(&v);
	for (i = 0; i < 2 && !found; i++) {
		buf_reset(&k);
		buf_reset(&v);
		if (i == 0 && tag == NULL)
			continue;
		buf_printf(&k, "%s%s", i == 0 ? tag : "", key);
		if (map_lookup(m, k.data, k.len, &v) != 1)
			continue;
		if (access_parse_value(v.data, v.len, r) == 0) {
			snprintf(r->key, sizeof(r->key), "%s", k.data);
			found = 1;
		} else {
			maillog("%s: %s: unknown value \"%s\": entry ignored",
				map_path(m), k.data, v.data);
		}
	}
	buf_free(&k);
	buf_free(&v);
	return found;
}

/* The host name and each ".domain" above it. */
static int
lookup_domain(struct map *m, const char *tag, const char *name,
	      struct access_result *r)
{
	const char *p;

	if (lookup(m, tag, name, r))
		return 1;
	for (p = name; (p = strchr(p, '.')) != NULL; p++)
		if (p[1] != '\0' && lookup(m, tag, p, r))
			return 1;
	return 0;
}

/* An IPv6 address in full: eight groups without leading zeros. */
static void
ipv6_full(const struct in6_addr *a, char *out, size_t size)
{
	size_t i, off = 0;

	out[0] = '\0';
	for (i = 0; i < 8 && off < size; i++)
		off += (size_t)snprintf(out + off, size - off, "%s%x",
					i ? ":" : "",
					(a->s6_addr[2 * i] << 8) |
						a->s6_addr[2 * i + 1]);
}

static int
lookup_prefixes(struct map *m, const char *tag, const char *addr, char sep,
		struct access_result *r)
{
	char key[128], *p;

	snprintf(key, sizeof(key), "%s", addr);
	if (lookup(m, tag, key, r))
		return 1;
	while ((p = strrchr(key, sep)) != NULL) {
		p[1] = '\0';		/* "192.168.1." */
		if (lookup(m, tag, key, r))
			return 1;
		p[0] = '\0';		/* "192.168.1" */
		if (key[0] != '\0' && lookup(m, tag, key, r))
			return 1;
	}
	return 0;
}

static int
is_loopback(const char *ip)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, ip, &a4) == 1)
		return ntohl(a4.s_addr) == 0x7f000001;
	if (inet_pton(AF_INET6, ip, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

void
access_client(struct map *m, const char *ip, const char *hostname,
	      struct access_result *r)
{
	struct in6_addr a6;

	memset(r, 0, sizeof(*r));
	if (m != NULL && inet_pton(AF_INET6, ip, &a6) == 1) {
		char full[64], tagged[80];

		snprintf(tagged, sizeof(tagged), "IPv6:%s", ip);
		if (lookup(m, "Connect:", tagged, r) ||
		    lookup(m, "Connect:", ip, r))
			return;
		ipv6_full(&a6, full, sizeof(full));
		snprintf(tagged, sizeof(tagged), "IPv6:%s", full);
		if (lookup_prefixes(m, "Connect:", tagged, ':', r) ||
		    lookup_prefixes(m, "Connect:", full, ':', r))
			return;
	} else if (m != NULL && lookup_prefixes(m, "Connect:", ip, '.', r)) {
		return;
	}
	if (m != NULL && hostname != NULL && hostname[0] != '\0' &&
	    lookup_domain(m, "Connect:", hostname, r))
		return;
	/* No entry (or no table): the seed's default file, whose entries
	 * let localhost relay (INTERFACE.md: with no entry that matches,
	 * only 127.0.0.1 and ::1 may relay). */
	if (is_loopback(ip) || (hostname != NULL &&
	    strcasecmp(hostname, "localhost") == 0)) {
		r->action = ACCESS_RELAY;
		snprintf(r->key, sizeof(r->key), "%s (default)", ip);
	}
}

static void
lookup_address(struct map *m, const char *tag, const char *address,
	       int user_at, struct access_result *r)
{
	const char *at = strrchr(address, '@');

	memset(r, 0, sizeof(*r));
	if (m == NULL || address[0] == '\0')
		return;
	if (lookup(m, tag, address, r))
		return;
	if (at != NULL && at[1] != '\0' && lookup_domain(m, tag, at + 1, r))
		return;
	if (user_at && at != NULL) {
		char user[256];

		snprintf(user, sizeof(user), "%.*s@", (int)(at - address),
			 address);
		lookup(m, tag, user, r);
	}
}

void
access_sender(struct map *m, const char *address, struct access_result *r)
{
	lookup_address(m, "From:", address, 1, r);
}

void
access_recipient(struct map *m, const char *address, struct access_result *r)
{
	lookup_address(m, "To:", address, 0, r);
	/* Only To: entries speak for recipients. */
	if (r->action != ACCESS_NONE && strncasecmp(r->key, "To:", 3) != 0)
		memset(r, 0, sizeof(*r));
}
