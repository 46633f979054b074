/*
 * policy: MAIL and RCPT checks.
 */
#include "policy.h"

#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "address.h"
#include "maillog.h"
#include "route.h"

static int
table_exists(const char *path)
{
	struct stat sb;
	struct buf db;
	int found;

	if (stat(path, &sb) == 0)
		return 1;
	buf_init(&db);
	buf_printf(&db, "%s.db", path);
	found = stat(db.data, &sb) == 0;
	buf_free(&db);
	return found;
}

int
policy_open(struct policy *p, struct config *cfg, struct status *st)
{
	size_t i;

	memset(p, 0, sizeof(*p));
	p->cfg = cfg;
	if (table_exists(cfg->access)) {
		p->access = map_open(cfg->access, MAP_TABLE, 0, st);
		if (p->access == NULL)
			return -1;
	}
	p->virtusertable = map_open(cfg->virtusertable, MAP_TABLE, 0, st);
	if (p->virtusertable == NULL)
		return -1;
	p->aliases = calloc(cfg->aliases.count + 1, sizeof(*p->aliases));
	if (p->aliases == NULL)
		return status_errno(st, ENOMEM, "aliases");
	for (i = 0; i < cfg->aliases.count; i++) {
		p->aliases[i] = map_open(cfg->aliases.items[i], MAP_ALIASES, 0,
					 st);
		if (p->aliases[i] == NULL)
			return -1;
		p->naliases++;
	}
	return 0;
}

void
policy_close(struct policy *p)
{
	size_t i;

	if (p->access)
		map_close(p->access);
	if (p->virtusertable)
		map_close(p->virtusertable);
	for (i = 0; i < p->naliases; i++)
		map_close(p->aliases[i]);
	free(p->aliases);
	memset(p, 0, sizeof(*p));
}

/* "550 5.7.1 text" for address as "550 5.7.1 <address>... text". */
static void
address_reply(struct buf *out, const char *reply, const char *address)
{
	const char *sp = strchr(reply, ' ');
	const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;

	if (sp2 == NULL)
		buf_printf(out, "%s <%s>...", reply, address);
	else
		buf_printf(out, "%.*s <%s>... %s", (int)(sp2 - reply), reply,
			   address, sp2 + 1);
}

static void
log_reject(const struct policy *p, const char *ruleset, const char *arg,
	   const char *reply)
{
	maillog("ruleset=%s, arg1=<%s>, relay=%s [%s], reject=%s", ruleset,
		arg, p->client_name ? p->client_name : "unknown",
		p->client_ip ? p->client_ip : "", reply);
}

int
policy_client(struct policy *p, const char *ip, const char *name,
	      struct buf *reply)
{
	struct access_result r;

	p->client_ip = ip;
	p->client_name = name;
	access_client(p->access, ip, name, &r);
	switch (r.action) {
	case ACCESS_RELAY:
		p->relay_client = 1;
		return 0;
	case ACCESS_DISCARD:
		p->discard = 1;
		return 0;
	case ACCESS_REJECT:
	case ACCESS_ERROR:
		buf_puts(reply, r.reply);
		log_reject(p, "check_relay", ip, r.reply);
		return -1;
	default:
		return 0;
	}
}

int
policy_sender(struct policy *p, const char *address, struct buf *reply)
{
	struct access_result r;

	/* Each MAIL decides for its own transaction only. */
	p->discard_sender = 0;
	access_sender(p->access, address, &r);
	switch (r.action) {
	case ACCESS_REJECT:
	case ACCESS_ERROR:
		address_reply(reply, r.reply, address);
		log_reject(p, "check_mail", address, reply->data);
		return -1;
	case ACCESS_DISCARD:
		p->discard_sender = 1;
		return 0;
	default:
		return 0;
	}
}

/* Looks key up in the virtusertable: 1 found (value set), 0 not, -1 error. */
static int
virtual(struct policy *p, const char *key, struct buf *value)
{
	buf_reset(value);
	return map_lookup(p->virtusertable, key, strlen(key), value);
}

/* An "error:D.S.N:CODE text" value as an SMTP reply. */
static void
virtual_error_reply(const char *value, const char *address, struct buf *reply)
{
	struct access_result r;

	if (access_parse_value(value, strlen(value), &r) == 0 &&
	    r.action == ACCESS_ERROR)
		address_reply(reply, r.reply, address);
	else
		buf_printf(reply, "550 5.1.1 <%s>... User unknown", address);
}

/* Looks name up in the alias files: 1 found, 0 not, -1 read error. */
static int
alias_known(struct policy *p, const char *name, size_t len)
{
	struct buf value;
	size_t i;
	int rc = 0;

	buf_init(&value);
	for (i = 0; rc == 0 && i < p->naliases; i++)
		rc = map_lookup(p->aliases[i], name, len, &value);
	buf_free(&value);
	return rc;
}

/* The local part names an alias or a user: 1, 0, or -1 when a table
 * could not be read (the client is told to try later). */
static int
local_known(struct policy *p, const char *local, size_t len)
{
	struct buf name;
	size_t user_len, ext_len;
	const char *ext;
	int known = 0;

	buf_init(&name);
	buf_append(&name, local, len);
	address_lowercase(name.data, name.len);
	if (strcmp(name.data, "postmaster") == 0)
		known = 1;
	if (!known)
		known = alias_known(p, name.data, name.len);
	if (!known) {
		address_split_extension(name.data, name.len,
					p->cfg->recipient_delimiter[0],
					&user_len, &ext, &ext_len);
		name.data[user_len] = '\0';
		name.len = user_len;
		known = alias_known(p, name.data, name.len);
		if (!known && address_safe_local(name.data, name.len))
			known = getpwnam(name.data) != NULL;
	}
	buf_free(&name);
	return known;
}

/* relay_based_on_mx: 1 when this host is an MX of domain with a more
 * preferred one above it (a backup MX queues for the primary); 0 when
 * not; -1 with a 4xx reply when DNS cannot tell now. */
static int
backup_mx_for(struct policy *p, const char *domain, const char *address,
	      struct buf *reply)
{
	struct route rt;
	struct status st;
	size_t i;
	int rc;

	memset(&rt, 0, sizeof(rt));
	rc = route_mx(domain, &rt, &st);
	if (rc < 0 && status_is_temporary(st.exit_code)) {
		buf_printf(reply, "451 4.4.3 <%s>... %s", address, st.text);
		return -1;
	}
	if (rc <= 0)
		return 0;
	for (i = 0; i < rt.nhosts; i++)
		if (route_is_self(p->cfg, rt.hosts[i].name))
			return rt.hosts[i].pref > rt.hosts[0].pref;
	return 0;
}

int
policy_recipient(struct policy *p, const char *address, struct buf *reply)
{
	struct address a;
	struct access_result r;
	struct buf key, value;
	int rc = 0, local, found;

	address_init(&a);
	buf_init(&key);
	buf_init(&value);
	if (address_parse(&a, address, strlen(address)) < 0) {
		buf_printf(reply, "501 5.1.3 <%s>... Bad recipient address "
			   "syntax", address);
		rc = -1;
		goto out;
	}
	access_recipient(p->access, address, &r);
	if (r.action == ACCESS_REJECT || r.action == ACCESS_ERROR) {
		address_reply(reply, r.reply, address);
		log_reject(p, "check_rcpt", address, reply->data);
		rc = -1;
		goto out;
	}
	local = a.domain.len == 0 ||
		config_is_local_domain(p->cfg, a.domain.data, a.domain.len);
	if (a.domain.len > 0 &&
	    (local || map_has_domain(p->virtusertable, a.domain.data,
				     a.domain.len))) {
		/* user@domain, user@domain without +detail, @domain */
		size_t user_len, ext_len;
		const char *ext;
		int has_ext = address_split_extension(
			a.local.data, a.local.len,
			p->cfg->recipient_delimiter[0], &user_len, &ext,
			&ext_len);

		buf_printf(&key, "%s@%s", a.local.data, a.domain.data);
		found = virtual(p, key.data, &value);
		if (found == 0 && has_ext) {
			/* user++@domain: any detail (as deliver has it) */
			buf_reset(&key);
			buf_printf(&key, "%.*s%c%c@%s", (int)user_len,
				   a.local.data,
				   p->cfg->recipient_delimiter[0],
				   p->cfg->recipient_delimiter[0],
				   a.domain.data);
			found = virtual(p, key.data, &value);
		}
		if (found == 0 && has_ext) {
			buf_reset(&key);
			buf_printf(&key, "%.*s@%s", (int)user_len, a.local.data,
				   a.domain.data);
			found = virtual(p, key.data, &value);
		}
		if (found == 0) {
			buf_reset(&key);
			buf_printf(&key, "@%s", a.domain.data);
			found = virtual(p, key.data, &value);
		}
		if (found < 0) {
			buf_printf(reply, "451 4.3.0 <%s>... Temporary lookup "
				   "failure", address);
			rc = -1;
			goto out;
		}
		if (found > 0) {
			if (strncasecmp(value.data, "error:", 6) == 0) {
				virtual_error_reply(value.data, address, reply);
				log_reject(p, "check_rcpt", address,
					   reply->data);
				rc = -1;
			}
			goto out;
		}
		if (!local) {
			buf_printf(reply, "550 5.1.1 <%s>... User unknown",
				   address);
			log_reject(p, "check_rcpt", address, reply->data);
			rc = -1;
			goto out;
		}
	}
	if (local) {
		found = local_known(p, a.local.data, a.local.len);
		if (found < 0) {
			buf_printf(reply, "451 4.3.0 <%s>... Temporary lookup "
				   "failure", address);
			rc = -1;
		} else if (found == 0) {
			buf_printf(reply, "550 5.1.1 <%s>... User unknown",
				   address);
			log_reject(p, "check_rcpt", address, reply->data);
			rc = -1;
		}
		goto out;
	}
	/* Another domain: relaying. */
	if (p->relay_client || r.action == ACCESS_RELAY)
		goto out;
	if (p->cfg->relay_based_on_mx && a.domain.len > 0) {
		int backup = backup_mx_for(p, a.domain.data, address, reply);

		if (backup > 0)
			goto out;
		if (backup < 0) {
			rc = -1;
			goto out;
		}
	}
	buf_printf(reply, "550 5.7.1 <%s>... Relaying denied", address);
	log_reject(p, "check_rcpt", address, reply->data);
	rc = -1;
out:
	address_free(&a);
	buf_free(&key);
	buf_free(&value);
	return rc;
}
