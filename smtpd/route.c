/*
 * route: mailertable, smarthost, MX and address lookups.
 */
#include "route.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "access.h"

/* --- DNS --------------------------------------------------------------- */

/* One query; the answer length, 0 for "no such data", or -1 with st set
 * (NXDOMAIN permanent, everything else temporary). */
static int
query(const char *name, int type, unsigned char *answer, int size,
      struct status *st)
{
	struct __res_state rs;
	int n;

	memset(&rs, 0, sizeof(rs));
	if (res_ninit(&rs) < 0)
		return status_set(st, EX_TEMPFAIL, "4.4.3",
				  "cannot initialize the resolver");
	n = res_nquery(&rs, name, ns_c_in, type, answer, size);
	if (n < 0) {
		int err = rs.res_h_errno;

		res_nclose(&rs);
		if (err == HOST_NOT_FOUND)
			return status_set(st, EX_NOHOST, "5.1.2",
					  "%s: no such domain (NXDOMAIN)", name);
		if (err == NO_DATA)
			return 0;
		return status_set(st, EX_TEMPFAIL, "4.4.3",
				  "%s: DNS lookup failed (%s)", name,
				  err == TRY_AGAIN ? "server failure or "
						     "timeout"
						   : "no answer");
	}
	res_nclose(&rs);
	return n;
}

static unsigned
random_below(unsigned n)
{
	unsigned v = 0;

	if (n <= 1)
		return 0;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = (unsigned)rand();
	return v % n;
}

int
route_mx(const char *domain, struct route *r, struct status *st)
{
	unsigned char answer[8192];
	ns_msg msg;
	ns_rr rr;
	int n, i, count;
	size_t a, b;

	r->nhosts = 0;
	n = query(domain, ns_t_mx, answer, sizeof(answer), st);
	if (n <= 0)
		return n;
	if (ns_initparse(answer, n, &msg) < 0)
		return status_set(st, EX_TEMPFAIL, "4.4.3",
				  "%s: malformed DNS answer", domain);
	count = ns_msg_count(msg, ns_s_an);
	for (i = 0; i < count && r->nhosts < ROUTE_MAX_HOSTS; i++) {
		struct route_host *h = &r->hosts[r->nhosts];

		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 ||
		    ns_rr_type(rr) != ns_t_mx || ns_rr_rdlen(rr) < 3)
			continue;
		h->pref = ns_get16(ns_rr_rdata(rr));
		if (dn_expand(ns_msg_base(msg), ns_msg_end(msg),
			      ns_rr_rdata(rr) + 2, h->name,
			      sizeof(h->name)) < 0)
			continue;
		h->port = 0;
		r->nhosts++;
	}
	if (r->nhosts == 0)
		return 0;
	/* Preference order; equal preferences in random order. */
	for (a = 0; a < r->nhosts; a++) {
		for (b = a + 1; b < r->nhosts; b++) {
			if (r->hosts[b].pref < r->hosts[a].pref) {
				struct route_host t = r->hosts[a];

				r->hosts[a] = r->hosts[b];
				r->hosts[b] = t;
			}
		}
	}
	for (a = 0; a < r->nhosts;) {
		size_t end = a, k;

		while (end < r->nhosts && r->hosts[end].pref == r->hosts[a].pref)
			end++;
		for (k = end - 1; k > a; k--) {
			size_t j = a + random_below((unsigned)(k - a + 1));
			struct route_host t = r->hosts[k];

			r->hosts[k] = r->hosts[j];
			r->hosts[j] = t;
		}
		a = end;
	}
	/* "MX 0 ." (RFC 7505): the domain takes no mail. */
	if (r->nhosts == 1 && r->hosts[0].name[0] == '\0') {
		r->nhosts = 0;
		return status_set(st, EX_NOHOST, "5.1.10",
				  "%s does not accept mail (null MX)", domain);
	}
	return 1;
}

static size_t
add_records(const char *host, int type, unsigned short port,
	    struct route_addr *out, size_t n, size_t max, struct status *st,
	    int *failed)
{
	unsigned char answer[8192];
	ns_msg msg;
	ns_rr rr;
	int len, i, count;

	len = query(host, type, answer, sizeof(answer), st);
	if (len < 0) {
		*failed = 1;
		return n;
	}
	if (len == 0 || ns_initparse(answer, len, &msg) < 0)
		return n;
	count = ns_msg_count(msg, ns_s_an);
	for (i = 0; i < count && n < max; i++) {
		struct route_addr *a = &out[n];

		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 ||
		    (int)ns_rr_type(rr) != type)
			continue;
		memset(a, 0, sizeof(*a));
		if (type == ns_t_a && ns_rr_rdlen(rr) == 4) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;

			sin->sin_family = AF_INET;
			sin->sin_port = htons(port);
			memcpy(&sin->sin_addr, ns_rr_rdata(rr), 4);
			a->len = sizeof(*sin);
			inet_ntop(AF_INET, &sin->sin_addr, a->text,
				  sizeof(a->text));
			n++;
		} else if (type == ns_t_aaaa && ns_rr_rdlen(rr) == 16) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;

			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(port);
			memcpy(&s6->sin6_addr, ns_rr_rdata(rr), 16);
			a->len = sizeof(*s6);
			inet_ntop(AF_INET6, &s6->sin6_addr, a->text,
				  sizeof(a->text));
			n++;
		}
	}
	return n;
}

static int
literal(const char *host, unsigned short port, struct route_addr *a)
{
	char text[64];
	size_t len = strlen(host);
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;

	if (len < 2 || host[0] != '[' || host[len - 1] != ']' || len > 60)
		return 0;
	snprintf(text, sizeof(text), "%.*s", (int)(len - 2), host + 1);
	if (strncasecmp(text, "IPv6:", 5) == 0)
		memmove(text, text + 5, strlen(text + 5) + 1);
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		a->len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		a->len = sizeof(*s6);
	} else {
		return -1;
	}
	snprintf(a->text, sizeof(a->text), "%s", text);
	return 1;
}

size_t
route_addresses(const char *host, unsigned short port, struct route_addr *out,
		size_t max, struct status *st)
{
	size_t n = 0;
	int failed = 0, lit;

	status_ok(st);
	lit = literal(host, port, &out[0]);
	if (lit == 1)
		return 1;
	if (lit < 0) {
		status_set(st, EX_NOHOST, "5.1.2", "%s: bad address literal",
			   host);
		return 0;
	}
	n = add_records(host, ns_t_a, port, out, n, max, st, &failed);
	n = add_records(host, ns_t_aaaa, port, out, n, max, st, &failed);
	if (n == 0 && !failed)
		status_set(st, EX_NOHOST, "5.1.2", "%s: host has no address",
			   host);
	return n;
}

/* --- who we are ---------------------------------------------------------- */

int
route_is_self(struct config *cfg, const char *name)
{
	struct route_addr addrs[ROUTE_MAX_ADDRS];
	struct ifaddrs *ifs, *ifa;
	struct status st;
	size_t n, i;
	int self = 0;

	if (strcasecmp(name, config_hostname(cfg)) == 0)
		return 1;
	n = route_addresses(name, 25, addrs, ROUTE_MAX_ADDRS, &st);
	if (n == 0 || getifaddrs(&ifs) < 0)
		return 0;
	for (ifa = ifs; ifa != NULL && !self; ifa = ifa->ifa_next) {
		char text[64];

		if (ifa->ifa_addr == NULL ||
		    (ifa->ifa_addr->sa_family != AF_INET &&
		     ifa->ifa_addr->sa_family != AF_INET6))
			continue;
		if (getnameinfo(ifa->ifa_addr,
				ifa->ifa_addr->sa_family == AF_INET
					? sizeof(struct sockaddr_in)
					: sizeof(struct sockaddr_in6),
				text, sizeof(text), NULL, 0,
				NI_NUMERICHOST) != 0)
			continue;
		for (i = 0; i < n; i++)
			if (strcmp(text, addrs[i].text) == 0)
				self = 1;
	}
	freeifaddrs(ifs);
	return self;
}

/* --- the route ------------------------------------------------------------ */

/* "host", "[host]", "[host]:port", "host:port" into h; brackets: no MX. */
static int
parse_host(const char *text, unsigned short default_port,
	   struct route_host *h, int *bracketed)
{
	const char *end, *colon;
	size_t len;

	*bracketed = text[0] == '[';
	if (*bracketed) {
		end = strchr(text, ']');
		if (end == NULL)
			return -1;
		/* An address literal keeps its brackets. */
		len = (size_t)(end - text) + 1;
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] != '\0' && colon == NULL)
			return -1;
		/* "[host.name]": a name without MX lookup */
		snprintf(h->name, sizeof(h->name), "%.*s", (int)len, text);
		{
			struct in6_addr a;
			char inner[256];

			snprintf(inner, sizeof(inner), "%.*s", (int)len - 2,
				 text + 1);
			if (inet_pton(AF_INET, inner, &a) != 1 &&
			    inet_pton(AF_INET6, inner, &a) != 1 &&
			    strncasecmp(inner, "IPv6:", 5) != 0)
				snprintf(h->name, sizeof(h->name), "%s", inner);
		}
	} else {
		colon = strrchr(text, ':');
		len = colon ? (size_t)(colon - text) : strlen(text);
		snprintf(h->name, sizeof(h->name), "%.*s", (int)len, text);
	}
	h->port = default_port;
	if (colon != NULL) {
		char *e;
		long p = strtol(colon + 1, &e, 10);

		if (*e != '\0' || p <= 0 || p > 65535)
			return -1;
		h->port = (unsigned short)p;
	}
	h->pref = -1;
	return h->name[0] != '\0' ? 0 : -1;
}

static void
make_key(struct route *r)
{
	size_t i, off = 0;

	r->key[0] = '\0';
	for (i = 0; i < r->nhosts && off < sizeof(r->key); i++)
		off += (size_t)snprintf(r->key + off, sizeof(r->key) - off,
					"%s%s:%u", i ? "," : "",
					r->hosts[i].name, r->hosts[i].port);
}

/* MX hosts of name, or name itself when it has no MX. */
static void
hosts_of(struct config *cfg, const char *name, unsigned short port,
	 struct route *r, struct status *st)
{
	size_t i, keep;
	int rc = route_mx(name, r, st);

	if (rc < 0) {
		r->kind = ROUTE_ERROR;
		return;
	}
	if (rc == 0) {
		/* No MX: the domain's own addresses (RFC 5321 5.1). */
		snprintf(r->hosts[0].name, sizeof(r->hosts[0].name), "%s",
			 name);
		r->hosts[0].pref = -1;
		r->hosts[0].port = port;
		r->nhosts = 1;
		if (route_is_self(cfg, name)) {
			/* Permanent, as sendmail's 553 5.3.5: retrying
			 * would only loop again. */
			r->kind = ROUTE_ERROR;
			status_set(st, EX_UNAVAILABLE, "5.3.5",
				   "mail for %s loops back to me (it has no "
				   "MX and its address is mine)", name);
		}
		return;
	}
	r->via_mx = 1;
	/* Never through ourselves or an MX no better than us. */
	for (i = 0; i < r->nhosts; i++) {
		r->hosts[i].port = port;
		if (route_is_self(cfg, r->hosts[i].name)) {
			int mine = r->hosts[i].pref;

			for (keep = 0; keep < r->nhosts &&
				       r->hosts[keep].pref < mine;
			     keep++)
				;
			r->nhosts = keep;
			r->truncated = 1;
			break;
		}
	}
	if (r->nhosts == 0) {
		r->kind = ROUTE_ERROR;
		status_set(st, EX_UNAVAILABLE, "5.3.5",
			   "mail for %s loops back to me: this host is its "
			   "best MX", name);
	}
}

void
route_domain(struct config *cfg, struct map *mailertable, const char *domain,
	     struct route *r, struct status *st)
{
	struct buf value;
	const char *p;
	int found = 0, bracketed;

	memset(r, 0, sizeof(*r));
	status_ok(st);
	r->kind = ROUTE_SMTP;
	buf_init(&value);
	if (mailertable != NULL) {
		found = map_lookup(mailertable, domain, strlen(domain), &value);
		for (p = strchr(domain, '.'); found == 0 && p != NULL;
		     p = strchr(p + 1, '.'))
			found = map_lookup(mailertable, p, strlen(p), &value);
		if (found < 0) {
			r->kind = ROUTE_ERROR;
			status_set(st, EX_TEMPFAIL, "4.3.0",
				   "mailertable read error");
			goto out;
		}
	}
	if (found > 0) {
		char *v = value.data, *colon;

		while (isspace((unsigned char)*v))
			v++;
		colon = strchr(v, ':');
		if (strncasecmp(v, "error:", 6) == 0) {
			struct access_result ar;

			r->kind = ROUTE_ERROR;
			if (access_parse_value(v, strlen(v), &ar) == 0 &&
			    ar.action == ACCESS_ERROR) {
				char dsn[16];
				const char *text = strchr(ar.reply + 4, ' ');

				snprintf(dsn, sizeof(dsn), "%.*s",
					 (int)(text ? text - ar.reply - 4 : 5),
					 ar.reply + 4);
				status_set(st, ar.reply[0] == '4' ? EX_TEMPFAIL
								  : EX_UNAVAILABLE,
					   dsn, "%s", text ? text + 1 : "");
			} else {
				status_set(st, EX_UNAVAILABLE, "5.3.0", "%s",
					   v + 6);
			}
			goto out;
		}
		if (strncasecmp(v, "local:", 6) == 0) {
			r->kind = ROUTE_LOCAL;
			snprintf(r->local_user, sizeof(r->local_user), "%s",
				 v + 6);
			goto out;
		}
		if (colon == NULL || (strncasecmp(v, "smtp:", 5) != 0 &&
				      strncasecmp(v, "esmtp:", 6) != 0 &&
				      strncasecmp(v, "relay:", 6) != 0)) {
			r->kind = ROUTE_ERROR;
			status_set(st, EX_CONFIG, "4.3.5",
				   "mailertable: unknown mailer in \"%s\"", v);
			goto out;
		}
		v = colon + 1;
		if (*v == '\0') {
			hosts_of(cfg, domain, (unsigned short)cfg->smtp_port, r, st);
		} else if (parse_host(v, (unsigned short)cfg->smtp_port, &r->hosts[0],
				      &bracketed) < 0) {
			r->kind = ROUTE_ERROR;
			status_set(st, EX_CONFIG, "4.3.5",
				   "mailertable: bad host in \"%s\"",
				   value.data);
		} else if (bracketed) {
			r->nhosts = 1;
		} else {
			unsigned short port = r->hosts[0].port;
			char name[256];

			snprintf(name, sizeof(name), "%s", r->hosts[0].name);
			hosts_of(cfg, name, port, r, st);
		}
	} else if (cfg->smarthost[0] != '\0') {
		if (parse_host(cfg->smarthost, (unsigned short)cfg->smtp_port, &r->hosts[0],
			       &bracketed) < 0) {
			r->kind = ROUTE_ERROR;
			status_set(st, EX_CONFIG, "4.3.5", "bad smarthost %s",
				   cfg->smarthost);
		} else if (bracketed) {
			r->nhosts = 1;
		} else {
			unsigned short port = r->hosts[0].port;
			char name[256];

			snprintf(name, sizeof(name), "%s", r->hosts[0].name);
			hosts_of(cfg, name, port, r, st);
		}
	} else {
		hosts_of(cfg, domain, (unsigned short)cfg->smtp_port, r, st);
	}
out:
	if (r->kind == ROUTE_SMTP)
		make_key(r);
	buf_free(&value);
}
