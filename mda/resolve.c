/*
 * resolve: recipient resolution (virtusertable, aliases, .forward).
 */
#include "resolve.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "maillog.h"
#include "userfile.h"

#define MAX_DEPTH 20

/* Where a destination came from: what it may name and who it runs as. */
enum origin { FROM_TOP, FROM_VIRTUAL, FROM_ALIAS, FROM_FORWARD, FROM_INCLUDE };

struct step {
	const struct step *parent;
	int depth;
	char kind;		/* 'v' virtusertable, 'a' alias, 'f' .forward,
				 * 'i' include, 0 top */
	const char *key;	/* for cycle detection */
	enum origin origin;
	const char *self;	/* a name that means "this user's mailbox" */
	int unsafe;		/* from a group/world-writable table */
	const char *sender;
	/* who file and command destinations run as */
	const char *run_user;
	uid_t run_uid;
	gid_t run_gid;
	const char *run_home;
};

struct top {
	const char *recipient;
	const char *extension;
};

static void resolve_address(struct resolver *r, const struct top *top,
			    const struct step *st, const char *text,
			    size_t len);

static void
trace(struct resolver *r, int depth, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
trace(struct resolver *r, int depth, const char *fmt, ...)
{
	va_list ap;
	int i;

	if (r->trace == NULL)
		return;
	for (i = 0; i < depth; i++)
		buf_puts(r->trace, "  ");
	va_start(ap, fmt);
	buf_vprintf(r->trace, fmt, ap);
	va_end(ap);
	buf_putc(r->trace, '\n');
}

void
resolver_init(struct resolver *r, struct config *cfg, const char *sender)
{
	memset(r, 0, sizeof(*r));
	r->cfg = cfg;
	r->sender = sender;
}

static void
dest_free(struct dest *d)
{
	free(d->target);
	free(d->recipient);
	free(d->extension);
	free(d->sender);
	free(d->user);
	free(d->home);
}

void
resolver_free(struct resolver *r)
{
	size_t i;

	for (i = 0; i < r->count; i++)
		dest_free(&r->dests[i]);
	free(r->dests);
	free(r->seen);
	map_close(r->virtusertable);
	for (i = 0; i < r->naliases; i++)
		map_close(r->aliases[i]);
	free(r->aliases);
	memset(r, 0, sizeof(*r));
}

void
dest_describe(const struct dest *d, struct buf *out)
{
	char stat[STATUS_TEXT_MAX + 16];

	switch (d->kind) {
	case DEST_MAILBOX:
		buf_printf(out, "mailbox of %s", d->target);
		break;
	case DEST_FILE:
		buf_printf(out, "file %s (as %s)", d->target, d->user);
		break;
	case DEST_PIPE:
		buf_printf(out, "command \"|%s\" (as %s)", d->target, d->user);
		break;
	case DEST_REMOTE:
		buf_printf(out, "remote <%s>", d->target);
		break;
	case DEST_ERROR:
		buf_printf(out, "error %s %s", d->st.dsn,
			   status_stat(&d->st, stat, sizeof(stat)));
		break;
	}
}

static uint32_t
hash_text(const char *p)
{
	uint32_t h = 2166136261u;

	while (*p != '\0')
		h = (h ^ (unsigned char)*p++) * 16777619u;
	return h;
}

static void
dest_key(const struct dest *d, struct buf *key)
{
	buf_reset(key);
	/* Remote addresses and user names match in any case; files and
	 * commands exactly, and per user. */
	buf_printf(key, "%d|%ld|", (int)d->kind,
		   d->kind == DEST_FILE || d->kind == DEST_PIPE ? (long)d->uid
								 : -1L);
	buf_puts(key, d->target);
	if (d->kind == DEST_MAILBOX || d->kind == DEST_REMOTE)
		address_lowercase(key->data, key->len);
}

/* Adds a final destination unless the same one is already there. */
static void
add_dest(struct resolver *r, const struct step *st, struct dest *d)
{
	struct buf key, other;
	size_t slot, i;

	if (d->kind != DEST_ERROR) {
		buf_init(&key);
		buf_init(&other);
		dest_key(d, &key);
		if (r->nseen > 0) {
			slot = hash_text(key.data) & (r->nseen - 1);
			while (r->seen[slot] != 0) {
				dest_key(&r->dests[r->seen[slot] - 1], &other);
				if (strcmp(other.data, key.data) == 0) {
					buf_free(&key);
					buf_free(&other);
					trace(r, st->depth + 1,
					      "(already delivered above)");
					dest_free(d);
					return;
				}
				slot = (slot + 1) & (r->nseen - 1);
			}
		}
		buf_free(&key);
		buf_free(&other);
	}
	if (r->count == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 8;
		r->dests = xrealloc(r->dests, r->cap * sizeof(*r->dests));
	}
	r->dests[r->count++] = *d;
	{
		struct buf desc;

		buf_init(&desc);
		dest_describe(d, &desc);
		trace(r, st->depth + 1, "%s %s",
		      d->kind == DEST_ERROR ? "undeliverable:" : "deliverable:",
		      desc.data);
		buf_free(&desc);
	}
	/* Keep the set at most half full. */
	if (r->count * 2 > r->nseen) {
		free(r->seen);
		r->nseen = r->nseen ? r->nseen * 2 : 64;
		r->seen = xcalloc(r->nseen, sizeof(*r->seen));
		buf_init(&key);
		for (i = 0; i < r->count; i++) {
			if (r->dests[i].kind == DEST_ERROR)
				continue;
			dest_key(&r->dests[i], &key);
			slot = hash_text(key.data) & (r->nseen - 1);
			while (r->seen[slot] != 0)
				slot = (slot + 1) & (r->nseen - 1);
			r->seen[slot] = i + 1;
		}
		buf_free(&key);
	} else if (d->kind != DEST_ERROR) {
		buf_init(&key);
		dest_key(d, &key);
		slot = hash_text(key.data) & (r->nseen - 1);
		while (r->seen[slot] != 0)
			slot = (slot + 1) & (r->nseen - 1);
		r->seen[slot] = r->count;
		buf_free(&key);
	}
}

static void
new_dest(struct dest *d, enum dest_kind kind, const char *target,
	 size_t len, const struct top *top, const struct step *st)
{
	memset(d, 0, sizeof(*d));
	d->kind = kind;
	d->target = xstrndup(target, len);
	d->recipient = xstrdup(top->recipient);
	d->extension = top->extension ? xstrdup(top->extension) : NULL;
	d->sender = xstrdup(st->sender);
	status_ok(&d->st);
}

static void
add_error(struct resolver *r, const struct top *top, const struct step *st,
	  const struct status *why)
{
	struct dest d;

	new_dest(&d, DEST_ERROR, top->recipient, strlen(top->recipient), top,
		 st);
	d.st = *why;
	add_dest(r, st, &d);
}

static void
add_error_text(struct resolver *r, const struct top *top,
	       const struct step *st, int code, const char *dsn,
	       const char *text)
{
	struct status why;

	status_set(&why, code, dsn, "%s", text);
	add_error(r, top, st, &why);
}

static void
add_mailbox_pw(struct resolver *r, const struct top *top,
	       const struct step *st, const struct passwd *pw)
{
	struct dest d;

	new_dest(&d, DEST_MAILBOX, pw->pw_name, strlen(pw->pw_name), top, st);
	d.user = xstrdup(pw->pw_name);
	d.uid = pw->pw_uid;
	d.gid = pw->pw_gid;
	d.home = xstrdup(pw->pw_dir);
	add_dest(r, st, &d);
}

/* The mailbox of a local user, with no further expansion. */
static void
add_mailbox(struct resolver *r, const struct top *top, const struct step *st,
	    const char *name, size_t len)
{
	struct passwd *pw;
	char *copy;

	if (!address_safe_local(name, len)) {
		add_error_text(r, top, st, EX_NOUSER, "5.1.1",
			       "User unknown (unsafe name)");
		return;
	}
	copy = xstrndup(name, len);
	pw = getpwnam(copy);
	if (pw == NULL) {
		address_lowercase(copy, len);
		pw = getpwnam(copy);
	}
	free(copy);
	if (pw == NULL)
		add_error_text(r, top, st, EX_NOUSER, "5.1.1", "User unknown");
	else
		add_mailbox_pw(r, top, st, pw);
}

static int
on_cycle(const struct step *st, char kind, const char *key)
{
	for (; st != NULL; st = st->parent)
		if (st->kind == kind && st->key != NULL &&
		    strcasecmp(st->key, key) == 0)
			return 1;
	return 0;
}

static void
cycle_text(const struct step *st, const char *key, struct buf *out)
{
	const struct step *s;
	struct buf chain;

	buf_init(&chain);
	for (s = st; s != NULL; s = s->parent)
		if (s->key != NULL) {
			struct buf tmp;

			buf_init(&tmp);
			buf_printf(&tmp, "%s%s%s", s->key,
				   chain.len ? " -> " : "", chain.data);
			buf_free(&chain);
			chain = tmp;
		}
	buf_printf(out, "mail loop: %s -> %s", chain.data, key);
	buf_free(&chain);
}

/* Is `class` ("alias", "forward", "include") listed in a config list? */
static int
allowed(const struct strlist *list, enum origin origin)
{
	const char *word = origin == FROM_FORWARD ? "forward" :
			   origin == FROM_INCLUDE ? "include" : "alias";
	size_t i;

	for (i = 0; i < list->count; i++)
		if (strcasecmp(list->items[i], word) == 0)
			return 1;
	return 0;
}

/* File and command destinations of a root-owned table run as
 * default_privs: never as root. */
static int
set_runner(struct resolver *r, struct step *st, uid_t owner,
	   struct buf *name_store, struct buf *home_store)
{
	struct passwd *pw = owner == 0 ? getpwnam(r->cfg->default_privs)
				       : getpwuid(owner);

	buf_reset(name_store);
	buf_reset(home_store);
	if (pw == NULL || pw->pw_uid == 0) {
		/* Nobody to run commands and files as: they are refused
		 * (add_runner_dest), plain addresses still resolve. */
		buf_printf(name_store, "%s", owner == 0 ? r->cfg->default_privs
							: "?");
		buf_puts(home_store, "/");
		st->run_uid = (uid_t)-1;
		st->run_gid = (gid_t)-1;
	} else {
		buf_puts(name_store, pw->pw_name);
		buf_puts(home_store, pw->pw_dir);
		st->run_uid = pw->pw_uid;
		st->run_gid = pw->pw_gid;
	}
	st->run_user = name_store->data;
	st->run_home = home_store->data;
	return 0;
}

static void
add_runner_dest(struct resolver *r, const struct top *top,
		const struct step *st, enum dest_kind kind, const char *text,
		size_t len)
{
	struct dest d;

	if (st->run_uid == (uid_t)-1 || st->run_uid == 0) {
		struct status why;

		status_set(&why, EX_TEMPFAIL, "4.3.5",
			   "no user to run commands and files as (%s unknown)",
			   st->run_user ? st->run_user : "owner");
		add_error(r, top, st, &why);
		return;
	}
	new_dest(&d, kind, text, len, top, st);
	d.user = xstrdup(st->run_user ? st->run_user : "?");
	d.uid = st->run_uid;
	d.gid = st->run_gid;
	d.home = xstrdup(st->run_home ? st->run_home : "/");
	add_dest(r, st, &d);
}

static void expand_list(struct resolver *r, const struct top *top,
			const struct step *st, const char *value, size_t len);

static void
expand_include(struct resolver *r, const struct top *top,
	       const struct step *st, const char *path)
{
	struct buf content, reason, name, home;
	struct status why;
	struct step child;
	enum userfile_result res;
	uid_t owner = 0;

	if (path[0] != '/') {
		add_error_text(r, top, st, EX_UNAVAILABLE, "5.3.5",
			       ":include: needs an absolute path");
		return;
	}
	if (on_cycle(st, 'i', path)) {
		buf_init(&content);
		cycle_text(st, path, &content);
		add_error_text(r, top, st, EX_UNAVAILABLE, "5.4.6",
			       content.data);
		buf_free(&content);
		return;
	}
	buf_init(&content);
	buf_init(&reason);
	buf_init(&name);
	buf_init(&home);
	status_ok(&why);
	/* Read with the reader's privileges; whoever owns the file is who
	 * its commands and files run as. */
	res = userfile_read(path, st->run_uid, st->run_gid,
			    USERFILE_ANY_OWNER, &content,
			    &reason, &owner, &why);
	trace(r, st->depth + 1, ":include:%s", path);
	switch (res) {
	case USERFILE_FOUND:
		child = *st;
		child.parent = st;
		child.depth = st->depth + 1;
		child.kind = 'i';
		child.key = path;
		child.origin = FROM_INCLUDE;
		child.self = NULL;
		if (set_runner(r, &child, owner, &name, &home) < 0) {
			add_error_text(r, top, st, EX_TEMPFAIL, "4.3.5",
				       "default_privs user unknown");
			break;
		}
		/* One destination a line, or several with commas. */
		for (char *p = content.data; *p != '\0';) {
			char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);

			if (n > 0 && p[0] != '#')
				expand_list(r, top, &child, p, n);
			p += n + (nl != NULL);
		}
		break;
	case USERFILE_MISSING:
		add_error_text(r, top, st, EX_NOUSER, "5.1.1",
			       ":include: file does not exist");
		break;
	case USERFILE_IGNORED:
		maillog("%s: :include:%s ignored: %s", top->recipient, path,
			reason.data);
		buf_printf(&content, ":include:%s is unsafe (%s)", path,
			   reason.data);
		add_error_text(r, top, st, EX_TEMPFAIL, "4.3.5", content.data);
		break;
	case USERFILE_TRYLATER:
		add_error(r, top, st, &why);
		break;
	}
	buf_free(&content);
	buf_free(&reason);
	buf_free(&name);
	buf_free(&home);
}

/* One destination from an alias, a .forward, an include or virtusertable. */
static void
expand_one(struct resolver *r, const struct top *top, const struct step *st,
	   const char *text, size_t len)
{
	struct buf dest;
	size_t i;

	buf_init(&dest);
	/* "..." quotes a destination; \" inside stays a quote. */
	if (len >= 2 && text[0] == '"' && text[len - 1] == '"') {
		for (i = 1; i + 1 < len; i++) {
			if (text[i] == '\\' && i + 2 < len &&
			    text[i + 1] == '"')
				i++;
			buf_putc(&dest, text[i]);
		}
	} else {
		buf_append(&dest, text, len);
	}
	if (dest.data[0] == '|') {
		const char *cmd = dest.data + 1;

		while (*cmd == ' ' || *cmd == '\t')
			cmd++;
		if (st->unsafe)
			add_error_text(r, top, st, EX_NOPERM, "5.7.1",
				       "commands refused: the table naming "
				       "them is group or world writable");
		else if (!allowed(&r->cfg->allow_mail_to_commands, st->origin))
			add_error_text(r, top, st, EX_NOPERM, "5.7.1",
				       "mail to commands is not allowed here");
		else if (*cmd == '\0')
			add_error_text(r, top, st, EX_UNAVAILABLE, "5.3.5",
				       "empty command");
		else
			add_runner_dest(r, top, st, DEST_PIPE, cmd,
					strlen(cmd));
	} else if (dest.data[0] == '/') {
		if (st->unsafe)
			add_error_text(r, top, st, EX_NOPERM, "5.7.1",
				       "files refused: the table naming them "
				       "is group or world writable");
		else if (!allowed(&r->cfg->allow_mail_to_files, st->origin))
			add_error_text(r, top, st, EX_NOPERM, "5.7.1",
				       "mail to files is not allowed here");
		else
			add_runner_dest(r, top, st, DEST_FILE, dest.data,
					dest.len);
	} else if (strncasecmp(dest.data, ":include:", 9) == 0) {
		const char *path = dest.data + 9;

		while (*path == ' ')
			path++;
		expand_include(r, top, st, path);
	} else if (dest.data[0] == '\\') {
		trace(r, st->depth + 1, "%s", dest.data);
		add_mailbox(r, top, st, dest.data + 1, dest.len - 1);
	} else {
		struct address a;
		int self = 0;

		address_init(&a);
		if (st->self != NULL &&
		    address_parse(&a, dest.data, dest.len) == 0 &&
		    strcasecmp(a.local.data, st->self) == 0 &&
		    (a.domain.len == 0 ||
		     config_is_local_domain(r->cfg, a.domain.data,
					    a.domain.len)))
			self = 1;
		if (self) {
			/* "name: name, other" and "alice" in alice's own
			 * .forward mean her mailbox, as in sendmail. */
			trace(r, st->depth + 1, "%s (itself)", dest.data);
			add_mailbox(r, top, st, a.local.data, a.local.len);
		} else {
			resolve_address(r, top, st, dest.data, dest.len);
		}
		address_free(&a);
	}
	buf_free(&dest);
}

struct list_walk {
	struct resolver *r;
	const struct top *top;
	const struct step *st;
};

static int
walk_one(const char *dest, size_t len, void *arg)
{
	struct list_walk *w = arg;

	expand_one(w->r, w->top, w->st, dest, len);
	return 0;
}

static void
expand_list(struct resolver *r, const struct top *top, const struct step *st,
	    const char *value, size_t len)
{
	struct list_walk w = { r, top, st };

	map_split_list(value, len, walk_one, &w);
}

static int
open_tables(struct resolver *r)
{
	size_t i;

	if (r->tables_open)
		return r->tables_open > 0 ? 0 : -1;
	r->virtusertable = map_open(r->cfg->virtusertable, MAP_TABLE,
				    r->map_flags, &r->table_status);
	if (r->virtusertable == NULL) {
		r->tables_open = -1;
		return -1;
	}
	r->aliases = xcalloc(r->cfg->aliases.count + 1, sizeof(*r->aliases));
	for (i = 0; i < r->cfg->aliases.count; i++) {
		r->aliases[i] = map_open(r->cfg->aliases.items[i], MAP_ALIASES,
					 r->map_flags, &r->table_status);
		if (r->aliases[i] == NULL) {
			r->tables_open = -1;
			return -1;
		}
		r->naliases++;
	}
	r->tables_open = 1;
	return 0;
}

/* A table's trouble is temporary: mail waits for the administrator. */
static void
table_failure(struct resolver *r, const struct top *top,
	      const struct step *st)
{
	struct status why;

	status_set(&why, EX_TEMPFAIL, "4.3.5", "%s", r->table_status.text);
	add_error(r, top, st, &why);
}

/* Substitutes %1 (user), %2 (detail) and %3 (+detail) in a virtusertable
 * value. The user and detail come from the sender: -1 when one that is
 * used is not a safe name (a quote, comma, '|' or '/' would make it another
 * destination, a command or a file). */
static int
virtual_subst(const char *value, size_t len, const char *user,
	      const char *detail, char delimiter, struct buf *out)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (value[i] == '%' && i + 1 < len && value[i + 1] >= '1' &&
		    value[i + 1] <= '3') {
			char which = value[++i];

			if (which == '1' ? !address_safe_local(user,
							       strlen(user))
					 : detail != NULL && *detail != '\0' &&
					   !address_safe_local(detail,
							       strlen(detail)))
				return -1;
			if (which == '1')
				buf_puts(out, user);
			else if (which == '2')
				buf_puts(out, detail ? detail : "");
			else if (detail != NULL && *detail != '\0') {
				buf_putc(out, delimiter);
				buf_puts(out, detail);
			}
		} else {
			buf_putc(out, value[i]);
		}
	}
	return 0;
}

/* virtusertable's error:D.S.N:CODE text (or error:CODE text). */
static void
virtual_error(const char *value, struct status *why)
{
	const char *p = value + 6, *dsn_end;
	char dsn[16] = "5.0.0";
	int code = 550;

	dsn_end = strchr(p, ':');
	if (dsn_end != NULL && dsn_end - p < (int)sizeof(dsn) &&
	    (p[0] == '4' || p[0] == '5') && p[1] == '.') {
		snprintf(dsn, sizeof(dsn), "%.*s", (int)(dsn_end - p), p);
		p = dsn_end + 1;
	}
	while (*p == ' ')
		p++;
	if (isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
	    isdigit((unsigned char)p[2])) {
		code = atoi(p);
		if (strcmp(dsn, "5.0.0") == 0 && p[0] == '4')
			dsn[0] = '4';
	}
	if (dsn[0] == '4')
		status_set(why, EX_TEMPFAIL, dsn, "%s", p);
	else
		status_set(why, dsn[2] == '1' && dsn[4] == '1' ? EX_NOUSER :
							       EX_UNAVAILABLE,
			   dsn, "%s", p);
	(void)code;
}

static int
lookup_virtual(struct resolver *r, const char *local, size_t local_len,
	       const char *domain, struct buf *value, struct buf *key_used,
	       struct buf *user, struct buf *detail)
{
	char delim = r->cfg->recipient_delimiter[0];
	size_t user_len, ext_len;
	const char *ext;
	int has_ext = address_split_extension(local, local_len, delim,
					      &user_len, &ext, &ext_len);
	int rc;

	buf_reset(user);
	buf_reset(detail);
	buf_append(user, local, user_len);
	if (has_ext)
		buf_append(detail, ext, ext_len);
	/* user+detail@domain, user++@domain, user@domain, @domain */
	buf_reset(key_used);
	buf_printf(key_used, "%.*s@%s", (int)local_len, local, domain);
	if ((rc = map_lookup(r->virtusertable, key_used->data, key_used->len,
			     value)) != 0)
		return rc;
	if (has_ext) {
		buf_reset(key_used);
		buf_printf(key_used, "%s%c%c@%s", user->data, delim, delim,
			   domain);
		if ((rc = map_lookup(r->virtusertable, key_used->data,
				     key_used->len, value)) != 0)
			return rc;
		buf_reset(key_used);
		buf_printf(key_used, "%s@%s", user->data, domain);
		if ((rc = map_lookup(r->virtusertable, key_used->data,
				     key_used->len, value)) != 0)
			return rc;
	}
	buf_reset(key_used);
	buf_printf(key_used, "@%s", domain);
	return map_lookup(r->virtusertable, key_used->data, key_used->len,
			  value);
}

static void resolve_local(struct resolver *r, const struct top *top,
			  const struct step *st, const char *local,
			  size_t len);

static void
resolve_address(struct resolver *r, const struct top *top,
		const struct step *st, const char *text, size_t len)
{
	struct address a;
	struct buf value, key, user, detail, expanded, name, home;
	struct step child;
	int rc;

	address_init(&a);
	if (st->depth >= MAX_DEPTH) {
		add_error_text(r, top, st, EX_UNAVAILABLE, "5.4.6",
			       "too many levels of aliases or forwarding");
		goto out_addr;
	}
	if (address_parse(&a, text, len) < 0) {
		add_error_text(r, top, st, EX_NOUSER, "5.1.3",
			       "bad address syntax");
		goto out_addr;
	}
	if (a.domain.len == 0 || r->direct) {
		if (a.domain.len > 0 &&
		    !config_is_local_domain(r->cfg, a.domain.data,
					    a.domain.len)) {
			add_error_text(r, top, st, EX_NOUSER, "5.1.2",
				       "not a local address");
			goto out_addr;
		}
		resolve_local(r, top, st, a.local.data, a.local.len);
		goto out_addr;
	}
	if (open_tables(r) < 0) {
		table_failure(r, top, st);
		goto out_addr;
	}
	buf_init(&value);
	buf_init(&key);
	buf_init(&user);
	buf_init(&detail);
	buf_init(&expanded);
	buf_init(&name);
	buf_init(&home);
	rc = lookup_virtual(r, a.local.data, a.local.len, a.domain.data,
			    &value, &key, &user, &detail);
	if (rc < 0) {
		add_error_text(r, top, st, EX_TEMPFAIL, "4.3.5",
			       "virtusertable read error");
	} else if (rc > 0) {
		trace(r, st->depth + 1, "virtusertable %s -> %s", key.data,
		      value.data);
		if (strncasecmp(value.data, "error:", 6) == 0) {
			struct status why;

			virtual_error(value.data, &why);
			add_error(r, top, st, &why);
		} else if (on_cycle(st, 'v', key.data)) {
			cycle_text(st, key.data, &expanded);
			add_error_text(r, top, st, EX_UNAVAILABLE, "5.4.6",
				       expanded.data);
		} else if (virtual_subst(value.data, value.len, user.data,
					 detail.len ? detail.data : NULL,
					 r->cfg->recipient_delimiter[0],
					 &expanded) < 0) {
			add_error_text(r, top, st, EX_NOUSER, "5.1.1",
				       "User unknown (unsafe name)");
		} else {
			child = *st;
			child.parent = st;
			child.depth = st->depth + 1;
			child.kind = 'v';
			child.key = key.data;
			child.origin = FROM_VIRTUAL;
			child.self = NULL;
			child.unsafe = map_unsafe(r->virtusertable);
			if (set_runner(r, &child,
				       map_owner(r->virtusertable), &name,
				       &home) < 0)
				add_error_text(r, top, st, EX_TEMPFAIL, "4.3.5",
					       "default_privs user unknown");
			else
				expand_list(r, top, &child, expanded.data,
					    expanded.len);
		}
	} else if (config_is_local_domain(r->cfg, a.domain.data,
					  a.domain.len)) {
		resolve_local(r, top, st, a.local.data, a.local.len);
	} else if (map_has_domain(r->virtusertable, a.domain.data,
				  a.domain.len)) {
		add_error_text(r, top, st, EX_NOUSER, "5.1.1",
			       "User unknown");
	} else {
		struct dest d;
		struct buf addr;

		buf_init(&addr);
		address_quote_local(&addr, a.local.data, a.local.len);
		buf_printf(&addr, "@%s", a.domain.data);
		new_dest(&d, DEST_REMOTE, addr.data, addr.len, top, st);
		add_dest(r, st, &d);
		buf_free(&addr);
	}
	buf_free(&value);
	buf_free(&key);
	buf_free(&user);
	buf_free(&detail);
	buf_free(&expanded);
	buf_free(&name);
	buf_free(&home);
out_addr:
	address_free(&a);
}

/* Looks name up in the aliases files, first file first. */
static int
lookup_alias(struct resolver *r, const char *name, size_t len,
	     struct buf *value, struct map **found_in)
{
	size_t i;
	int rc;

	for (i = 0; i < r->naliases; i++) {
		rc = map_lookup(r->aliases[i], name, len, value);
		if (rc != 0) {
			*found_in = r->aliases[i];
			return rc;
		}
	}
	return 0;
}

static void
expand_alias(struct resolver *r, const struct top *top,
	     const struct step *st, const char *name, const char *value,
	     struct map *table)
{
	struct buf owner_key, owner_value, sender, runner, home, loop;
	struct step child;
	struct map *owner_table;

	buf_init(&loop);
	if (on_cycle(st, 'a', name)) {
		cycle_text(st, name, &loop);
		add_error_text(r, top, st, EX_UNAVAILABLE, "5.4.6", loop.data);
		buf_free(&loop);
		return;
	}
	buf_free(&loop);
	buf_init(&owner_key);
	buf_init(&owner_value);
	buf_init(&sender);
	buf_init(&runner);
	buf_init(&home);
	trace(r, st->depth + 1, "alias %s -> %s", name, value);
	child = *st;
	child.parent = st;
	child.depth = st->depth + 1;
	child.kind = 'a';
	child.key = name;
	child.origin = FROM_ALIAS;
	child.self = name;
	child.unsafe = map_unsafe(table);
	/* Errors of list NAME go to owner-NAME, when there is one. */
	buf_printf(&owner_key, "owner-%s", name);
	if (strncasecmp(name, "owner-", 6) != 0 &&
	    lookup_alias(r, owner_key.data, owner_key.len, &owner_value,
			 &owner_table) > 0 &&
	    st->sender[0] != '\0') {
		buf_printf(&sender, "%s@%s", owner_key.data,
			   config_hostname(r->cfg));
		child.sender = sender.data;
	}
	if (set_runner(r, &child, map_owner(table), &runner, &home) < 0)
		add_error_text(r, top, st, EX_TEMPFAIL, "4.3.5",
			       "default_privs user unknown");
	else
		expand_list(r, top, &child, value, strlen(value));
	buf_free(&owner_key);
	buf_free(&owner_value);
	buf_free(&sender);
	buf_free(&runner);
	buf_free(&home);
}

/* ~/.forward+tag, then ~/.forward; 1 when one expanded the user. */
static int
expand_forward(struct resolver *r, const struct top *top,
	       const struct step *st, struct passwd *pw, const char *ext)
{
	struct buf path, content, reason, loop, runner, home;
	struct step child;
	struct status why;
	int attempt, done = 0;

	buf_init(&runner);
	buf_init(&home);
	buf_init(&path);
	buf_init(&content);
	buf_init(&reason);
	for (attempt = ext != NULL ? 0 : 1; attempt < 2 && !done; attempt++) {
		struct stat sb;
		enum userfile_result res;

		/* The extension comes from the sender: "+../x" must not
		 * name a file outside the home directory. */
		if (attempt == 0 && !address_safe_local(ext, strlen(ext)))
			continue;
		buf_reset(&path);
		buf_printf(&path, "%s/.forward", pw->pw_dir);
		if (attempt == 0)
			buf_printf(&path, "%s%s", r->cfg->recipient_delimiter,
				   ext);
		/* Most users have none: look before paying for a child
		 * process that reads it as the user. */
		if (lstat(path.data, &sb) < 0 && errno == ENOENT)
			continue;
		status_ok(&why);
		res = userfile_read(path.data, pw->pw_uid, pw->pw_gid,
				    USERFILE_CHECK_DIR,
				    &content, &reason, NULL, &why);
		if (res == USERFILE_MISSING)
			continue;
		if (res == USERFILE_IGNORED) {
			maillog("%s: %s ignored: %s", top->recipient,
				path.data, reason.data);
			trace(r, st->depth + 1, "%s ignored: %s", path.data,
			      reason.data);
			continue;
		}
		if (res == USERFILE_TRYLATER) {
			add_error(r, top, st, &why);
			done = 1;
			break;
		}
		/* An empty .forward (only blanks and comments) is none. */
		{
			const char *p = content.data;
			int any = 0;

			while (*p != '\0') {
				const char *nl = strchr(p, '\n');
				size_t n = nl ? (size_t)(nl - p) : strlen(p);
				size_t i = 0;

				while (i < n && isspace((unsigned char)p[i]))
					i++;
				if (i < n && p[i] != '#')
					any = 1;
				p += n + (nl != NULL);
			}
			if (!any)
				continue;
		}
		if (on_cycle(st, 'f', pw->pw_name)) {
			buf_init(&loop);
			cycle_text(st, pw->pw_name, &loop);
			add_error_text(r, top, st, EX_UNAVAILABLE, "5.4.6",
				       loop.data);
			buf_free(&loop);
			done = 1;
			break;
		}
		trace(r, st->depth + 1, "%s", path.data);
		child = *st;
		child.parent = st;
		child.depth = st->depth + 1;
		child.kind = 'f';
		child.key = pw->pw_name;
		child.origin = FROM_FORWARD;
		child.self = pw->pw_name;
		child.unsafe = 0;
		/* Root's own .forward: its files and commands run as
		 * default_privs, like a root-owned alias file's. */
		if (set_runner(r, &child, pw->pw_uid, &runner, &home) < 0) {
			add_error_text(r, top, st, EX_TEMPFAIL, "4.3.5",
				       "default_privs user unknown");
			done = 1;
			break;
		}
		for (char *p = content.data; *p != '\0';) {
			char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			size_t i = 0;

			while (i < n && isspace((unsigned char)p[i]))
				i++;
			if (i < n && p[i] != '#')
				expand_list(r, top, &child, p + i, n - i);
			p += n + (nl != NULL);
		}
		done = 1;
	}
	buf_free(&path);
	buf_free(&content);
	buf_free(&reason);
	buf_free(&runner);
	buf_free(&home);
	return done;
}

static void
resolve_local(struct resolver *r, const struct top *top,
	      const struct step *st, const char *local, size_t len)
{
	char delim = r->cfg->recipient_delimiter[0];
	struct buf value, name, user;
	struct map *table = NULL;
	struct passwd *pw;
	size_t user_len, ext_len;
	const char *ext;
	char *ext_copy = NULL;
	int rc = 0;

	if (r->direct) {
		address_split_extension(local, len, delim, &user_len, &ext,
					&ext_len);
		add_mailbox(r, top, st, local, user_len);
		return;
	}
	if (open_tables(r) < 0) {
		table_failure(r, top, st);
		return;
	}
	buf_init(&value);
	buf_init(&name);
	buf_init(&user);
	address_split_extension(local, len, delim, &user_len, &ext, &ext_len);
	if (ext != NULL)
		ext_copy = xstrndup(ext, ext_len);
	/* name+tag, then name (Postfix's order). */
	buf_append(&name, local, len);
	address_lowercase(name.data, name.len);
	rc = lookup_alias(r, name.data, name.len, &value, &table);
	if (rc == 0 && ext != NULL) {
		buf_truncate(&name, user_len);
		rc = lookup_alias(r, name.data, name.len, &value, &table);
	}
	if (rc < 0) {
		add_error_text(r, top, st, EX_TEMPFAIL, "4.3.5",
			       "aliases read error");
		goto out;
	}
	if (rc > 0) {
		expand_alias(r, top, st, name.data, value.data, table);
		goto out;
	}
	buf_append(&user, local, user_len);
	if (!address_safe_local(user.data, user.len)) {
		add_error_text(r, top, st, EX_NOUSER, "5.1.1",
			       "User unknown (unsafe name)");
		goto out;
	}
	pw = getpwnam(user.data);
	if (pw == NULL) {
		address_lowercase(user.data, user.len);
		pw = getpwnam(user.data);
	}
	if (pw == NULL) {
		add_error_text(r, top, st, EX_NOUSER, "5.1.1", "User unknown");
		goto out;
	}
	{
		/* getpwnam's buffer is reused by later lookups. */
		struct passwd copy = *pw;

		copy.pw_name = xstrdup(pw->pw_name);
		copy.pw_dir = xstrdup(pw->pw_dir);
		trace(r, st->depth + 1, "local user %s (uid %ld)",
		      copy.pw_name, (long)copy.pw_uid);
		if (!expand_forward(r, top, st, &copy, ext_copy))
			add_mailbox_pw(r, top, st, &copy);
		free(copy.pw_name);
		free(copy.pw_dir);
	}
out:
	free(ext_copy);
	buf_free(&value);
	buf_free(&name);
	buf_free(&user);
}

void
resolve_recipient(struct resolver *r, const char *recipient)
{
	struct top top;
	struct step st;
	struct address a;
	size_t user_len, ext_len;
	const char *ext;
	char *ext_copy = NULL;

	address_init(&a);
	memset(&st, 0, sizeof(st));
	st.sender = r->sender;
	st.origin = FROM_TOP;
	if (address_parse(&a, recipient, strlen(recipient)) == 0 &&
	    address_split_extension(a.local.data, a.local.len,
				    r->cfg->recipient_delimiter[0], &user_len,
				    &ext, &ext_len))
		ext_copy = xstrndup(ext, ext_len);
	top.recipient = recipient;
	top.extension = ext_copy;
	trace(r, 0, "%s", recipient);
	resolve_address(r, &top, &st, recipient, strlen(recipient));
	free(ext_copy);
	address_free(&a);
}
