/*
 * config: the mail.conf loader. The key table below is the single list of
 * keys, their types and their defaults; doc/mail.conf.5 describes the same.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"

enum key_type {
	KEY_STRING,	/* free text */
	KEY_PATH,	/* a path; relative ones are taken from the file's dir */
	KEY_LIST,	/* comma separated words */
	KEY_PATHLIST,	/* comma separated paths */
	KEY_BOOL,
	KEY_SIZE,	/* bytes, with an optional k/m/g suffix */
	KEY_COUNT,	/* a positive whole number */
	KEY_DURATION,	/* seconds, or a number with s/m/h/d/w */
};

struct config_key {
	const char *name;
	enum key_type type;
	size_t offset;
	const char *fallback;	/* the default, before $key expansion */
	unsigned minimum;	/* for KEY_COUNT */
};

#ifndef BINDIR
#define BINDIR "/usr/local/bin"
#endif
#ifndef SBINDIR
#define SBINDIR "/usr/local/sbin"
#endif

#define KEY(name, type, fallback, minimum) \
	{ #name, type, offsetof(struct config, name), fallback, minimum }

static const struct config_key config_keys[] = {
	KEY(hostname, KEY_STRING, "", 0),
	KEY(local_domains, KEY_LIST, "$hostname, localhost", 0),
	KEY(spool_dir, KEY_PATH, "/var/spool/mail", 0),
	KEY(mailbox, KEY_STRING, "$spool_dir/%u", 0),
	KEY(queue_dir, KEY_PATH, "/var/spool/mqueue", 0),
	KEY(aliases, KEY_PATHLIST, "/etc/aliases", 0),
	KEY(virtusertable, KEY_PATH, "/etc/mail/virtusertable", 0),
	KEY(mailertable, KEY_PATH, "/etc/mail/mailertable", 0),
	KEY(access, KEY_PATH, "/etc/mail/access", 0),
	KEY(log, KEY_STRING, "syslog", 0),
	KEY(statistics, KEY_PATH, "/etc/mail/statistics", 0),
	KEY(listen, KEY_LIST, "127.0.0.1:25, [::1]:25", 0),
	KEY(relay_based_on_mx, KEY_BOOL, "no", 0),
	KEY(default_privs, KEY_STRING, "nobody", 0),
	KEY(max_message_size, KEY_SIZE, "52428800", 0),
	KEY(max_recipients, KEY_COUNT, "1000", 100),
	KEY(max_hops, KEY_COUNT, "25", 1),
	KEY(queue_lifetime, KEY_DURATION, "5d", 0),
	KEY(queue_warn, KEY_DURATION, "4h", 0),
	KEY(command_timeout, KEY_DURATION, "5m", 1),
	KEY(data_timeout, KEY_DURATION, "10m", 1),
	KEY(max_sessions, KEY_COUNT, "100", 1),
	KEY(max_sessions_per_client, KEY_COUNT, "10", 1),
	KEY(smtp_cert, KEY_PATH, "", 0),
	KEY(smtp_key, KEY_PATH, "", 0),
	KEY(mail_group, KEY_STRING, "mail", 0),
	KEY(lock_timeout, KEY_DURATION, "5m", 0),
	KEY(recipient_delimiter, KEY_STRING, "+", 0),
	KEY(sendmail_path, KEY_PATH, SBINDIR "/sendmail", 0),
	KEY(tmp_dir, KEY_PATH, "/tmp", 0),
	KEY(allow_mail_to_commands, KEY_LIST, "alias, forward", 0),
	KEY(allow_mail_to_files, KEY_LIST, "alias, forward", 0),
	KEY(command_time_limit, KEY_DURATION, "1000s", 0),
	KEY(deliver_path, KEY_PATH, BINDIR "/deliver", 0),
	KEY(system_rcfile, KEY_PATH, SYSCONFDIR "/procmailrc", 0),
	KEY(user_rcfile, KEY_STRING, "~/.procmailrc", 0),
	KEY(submit_group, KEY_STRING, "smmsp", 0),
	KEY(max_deliveries, KEY_COUNT, "4", 1),
	KEY(min_backoff, KEY_DURATION, "5m", 0),
	KEY(max_backoff, KEY_DURATION, "1h", 0),
	KEY(smtpd_user, KEY_STRING, "mail", 0),
	KEY(smtpd_path, KEY_PATH, SBINDIR "/smtpd", 0),
	KEY(max_line_length, KEY_COUNT, "2048", 1000),
	KEY(smarthost, KEY_STRING, "", 0),
	KEY(smtp_port, KEY_COUNT, "25", 1),
	KEY(local_only, KEY_BOOL, "no", 0),
	KEY(smtp_connect_timeout, KEY_DURATION, "30s", 1),
	KEY(smtp_bind_address, KEY_STRING, "", 0),
	KEY(smtp_connection_reuse, KEY_BOOL, "yes", 0),
	KEY(smtpd_max_use, KEY_COUNT, "100", 1),
};

#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

void
strlist_add(struct strlist *list, const char *item)
{
	list->items = xrealloc(list->items,
			       (list->count + 1) * sizeof(*list->items));
	list->items[list->count++] = xstrdup(item);
}

void
strlist_free(struct strlist *list)
{
	size_t i;

	for (i = 0; i < list->count; i++)
		free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

int
config_parse_duration(const char *text, unsigned *seconds)
{
	char *end;
	unsigned long n, unit = 1;

	if (!isdigit((unsigned char)*text))
		return -1;
	errno = 0;
	n = strtoul(text, &end, 10);
	if (errno != 0)
		return -1;
	switch (*end) {
	case '\0': unit = 1; break;
	case 's': unit = 1; end++; break;
	case 'm': unit = 60; end++; break;
	case 'h': unit = 3600; end++; break;
	case 'd': unit = 86400; end++; break;
	case 'w': unit = 604800; end++; break;
	default: return -1;
	}
	if (*end != '\0' || n > UINT_MAX / unit)
		return -1;
	*seconds = (unsigned)(n * unit);
	return 0;
}

int
config_parse_size(const char *text, uint64_t *bytes)
{
	char *end;
	unsigned long long n, unit = 1;

	if (!isdigit((unsigned char)*text))
		return -1;
	errno = 0;
	n = strtoull(text, &end, 10);
	if (errno != 0)
		return -1;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': unit = 1024ULL; end++; break;
	case 'm': case 'M': unit = 1024ULL * 1024; end++; break;
	case 'g': case 'G': unit = 1024ULL * 1024 * 1024; end++; break;
	default: return -1;
	}
	if (*end != '\0' || n > UINT64_MAX / unit)
		return -1;
	*bytes = n * unit;
	return 0;
}

int
config_parse_bool(const char *text, int *value)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < 4; i++) {
		if (strcasecmp(text, yes[i]) == 0)
			return *value = 1, 0;
		if (strcasecmp(text, no[i]) == 0)
			return *value = 0, 0;
	}
	return -1;
}

static const struct config_key *
config_find_key(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strlen(config_keys[i].name) == len &&
		    memcmp(config_keys[i].name, name, len) == 0)
			return &config_keys[i];
	return NULL;
}

/* The raw text of every key, before expansion and typing. */
struct raw_values {
	char *text[NKEYS];
	int line[NKEYS];
};

/* Expands $key and ${key} references to other keys' raw text. Depth-limited
 * so that "a = $a" is an error and not a hang. */
static void host_fqdn(struct buf *out);

/* Returns 0, -1 for a bad reference, or -2 with the unknown name in
 * unknown. lazy_hostname: an empty hostname stays "$hostname" (for
 * local_domains, matched by config_is_local_domain without a lookup). */
static int
expand_value(const struct raw_values *raw, const char *text, struct buf *out,
	     int depth, int lazy_hostname, struct buf *unknown)
{
	const char *p = text;

	if (depth > 8)
		return -1;
	while (*p != '\0') {
		const char *name, *end;
		const struct config_key *key;
		int braced;

		if (*p != '$') {
			buf_putc(out, *p++);
			continue;
		}
		braced = p[1] == '{';
		name = p + 1 + braced;
		end = name;
		while (isalnum((unsigned char)*end) || *end == '_')
			end++;
		if (braced && *end != '}')
			return -1;
		key = config_find_key(name, (size_t)(end - name));
		if (key == NULL) {
			buf_reset(unknown);
			buf_append(unknown, name, (size_t)(end - name));
			return -2;
		}
		if (strcmp(key->name, "hostname") == 0 &&
		    raw->text[key - config_keys][0] == '\0') {
			/* Looking the name up costs time that most runs never
			 * need: local_domains keeps "$hostname" for
			 * config_is_local_domain(). */
			if (lazy_hostname)
				buf_puts(out, "$hostname");
			else
				host_fqdn(out);
			p = end + braced;
			continue;
		}
		int inner = expand_value(raw, raw->text[key - config_keys],
					 out, depth + 1, lazy_hostname,
					 unknown);
		if (inner < 0)
			return inner;
		p = end + braced;
	}
	return 0;
}

static char *
trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static int
set_value(struct config *cfg, const struct config_key *key, char *value)
{
	void *field = (char *)cfg + key->offset;

	switch (key->type) {
	case KEY_STRING:
	case KEY_PATH:
		*(char **)field = xstrdup(value);
		return 0;
	case KEY_LIST:
	case KEY_PATHLIST: {
		struct strlist *list = field;
		char *save = NULL, *item;

		for (item = strtok_r(value, ",", &save); item != NULL;
		     item = strtok_r(NULL, ",", &save)) {
			char *word = trim(item);

			if (*word != '\0')
				strlist_add(list, word);
		}
		return 0;
	}
	case KEY_BOOL:
		return config_parse_bool(value, (int *)field);
	case KEY_SIZE:
		return config_parse_size(value, (uint64_t *)field);
	case KEY_DURATION:
		if (config_parse_duration(value, (unsigned *)field) < 0 ||
		    *(unsigned *)field < key->minimum)
			return -1;
		return 0;
	case KEY_COUNT: {
		uint64_t n;
		char *end;

		if (!isdigit((unsigned char)*value))
			return -1;
		errno = 0;
		n = strtoull(value, &end, 10);
		if (errno != 0 || *end != '\0' || n > UINT_MAX ||
		    n < key->minimum ||
		    (strcmp(key->name, "smtp_port") == 0 && n > 65535))
			return -1;
		*(unsigned *)field = (unsigned)n;
		return 0;
	}
	}
	return -1;
}

static const char *
type_words(const struct config_key *key)
{
	static char words[64];

	switch (key->type) {
	case KEY_BOOL:
		return "yes or no";
	case KEY_SIZE:
		return "a size in bytes (suffix k, m or g allowed)";
	case KEY_DURATION:
		return "a duration (e.g. 30s, 5m, 4h, 5d)";
	case KEY_COUNT:
		snprintf(words, sizeof(words), "a whole number of at least %u",
			 key->minimum);
		return words;
	default:
		return "a value";
	}
}

/* Relative paths in the file are relative to the file's directory; they are
 * made absolute as they are read, so that "$spool_dir/%u" sees the result. */
static char *
resolve_paths(const struct config_key *key, const char *value,
	      const char *file)
{
	const char *slash = strrchr(file, '/');
	struct buf out, dir;
	char *copy, *save = NULL, *item, *result;
	int path_like = key->type == KEY_PATH || key->type == KEY_PATHLIST ||
			(strcmp(key->name, "log") == 0 &&
			 strcmp(value, "syslog") != 0) ||
			(strcmp(key->name, "mailbox") == 0 &&
			 value[0] != '~' && value[0] != '$');

	if (!path_like || value[0] == '\0')
		return xstrdup(value);
	buf_init(&dir);
	if (slash != NULL)
		buf_append(&dir, file, (size_t)(slash - file));
	else
		buf_putc(&dir, '.');
	if (dir.len == 0)
		buf_putc(&dir, '/');
	buf_init(&out);
	copy = xstrdup(value);
	for (item = strtok_r(copy, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		char *word = trim(item);

		if (out.len > 0)
			buf_puts(&out, ", ");
		if (word[0] != '/' && word[0] != '$')
			buf_printf(&out, "%s/", dir.data);
		buf_puts(&out, word);
		if (key->type != KEY_PATHLIST)
			break;
	}
	free(copy);
	buf_free(&dir);
	result = buf_steal(&out);
	buf_free(&out);	/* buf_steal leaves a new empty buffer behind */
	return result;
}

static int
read_file(struct config *cfg, const char *path, int must_exist,
	  struct raw_values *raw, struct status *st)
{
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT && !must_exist)
			return 0;
		return status_set(st, EX_CONFIG, "4.3.5", "%s: %s", path,
				  strerror(errno));
	}
	fp = fdopen(fd, "r");
	if (fp == NULL) {
		close(fd);
		return status_errno(st, errno, "%s", path);
	}
	cfg->path = xstrdup(path);
	while ((n = getline(&line, &cap, fp)) >= 0) {
		char *text, *eq, *name, *value;
		const struct config_key *key;

		lineno++;
		if (memchr(line, '\0', (size_t)n) != NULL)
			goto bad_line;
		text = trim(line);
		if (*text == '#' || *text == '\0')
			continue;
		eq = strchr(text, '=');
		if (eq == NULL)
			goto bad_line;
		*eq = '\0';
		name = trim(text);
		value = trim(eq + 1);
		key = config_find_key(name, strlen(name));
		if (key == NULL) {
			status_set(st, EX_CONFIG, "4.3.5",
				   "%s:%d: unknown key \"%s\"", path, lineno,
				   name);
			goto fail;
		}
		free(raw->text[key - config_keys]);
		raw->text[key - config_keys] = resolve_paths(key, value, path);
		raw->line[key - config_keys] = lineno;
	}
	if (ferror(fp)) {
		status_errno(st, errno, "%s", path);
		goto fail;
	}
	free(line);
	fclose(fp);
	return 0;

bad_line:
	status_set(st, EX_CONFIG, "4.3.5",
		   "%s:%d: expected \"key = value\"", path, lineno);
fail:
	free(line);
	fclose(fp);
	return -1;
}

int
config_load(struct config *cfg, const char *path, int must_exist,
	    struct status *st)
{
	struct raw_values raw;
	size_t i;
	int rc = -1;

	memset(cfg, 0, sizeof(*cfg));
	memset(&raw, 0, sizeof(raw));
	if (path == NULL)
		path = CONFIG_DEFAULT_PATH;
	for (i = 0; i < NKEYS; i++)
		raw.text[i] = xstrdup(config_keys[i].fallback);
	if (read_file(cfg, path, must_exist, &raw, st) < 0)
		goto out;
	for (i = 0; i < NKEYS; i++) {
		const struct config_key *key = &config_keys[i];
		struct buf value, unknown;
		int bad, expanded;

		buf_init(&value);
		buf_init(&unknown);
		expanded = expand_value(&raw, raw.text[i], &value, 0,
				  key->type == KEY_LIST &&
					  strcmp(key->name, "local_domains") == 0,
				  &unknown);
		bad = expanded < 0 || set_value(cfg, key, value.data) < 0;
		buf_free(&value);
		if (expanded == -2) {
			status_set(st, EX_CONFIG, "4.3.5",
				   "%s:%d: %s: unknown key $%s in the value",
				   path, raw.line[i], key->name, unknown.data);
			buf_free(&unknown);
			goto out;
		}
		buf_free(&unknown);
		if (bad) {
			if (raw.line[i] > 0)
				status_set(st, EX_CONFIG, "4.3.5",
					   "%s:%d: bad value for %s: expected %s",
					   path, raw.line[i], key->name,
					   type_words(key));
			else
				status_set(st, EX_CONFIG, "4.3.5",
					   "bad default for %s", key->name);
			goto out;
		}
	}
	if (cfg->recipient_delimiter[0] != '\0' &&
	    cfg->recipient_delimiter[1] != '\0') {
		i = (size_t)(config_find_key("recipient_delimiter", 19) -
			     config_keys);
		status_set(st, EX_CONFIG, "4.3.5",
			   "%s:%d: bad value for recipient_delimiter: "
			   "expected one character", path, raw.line[i]);
		goto out;
	}
	rc = 0;
out:
	for (i = 0; i < NKEYS; i++)
		free(raw.text[i]);
	if (rc < 0)
		config_free(cfg);
	return rc;
}

void
config_free(struct config *cfg)
{
	size_t i;

	for (i = 0; i < NKEYS; i++) {
		void *field = (char *)cfg + config_keys[i].offset;

		switch (config_keys[i].type) {
		case KEY_STRING:
		case KEY_PATH:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		case KEY_LIST:
		case KEY_PATHLIST:
			strlist_free(field);
			break;
		default:
			break;
		}
	}
	free(cfg->path);
	cfg->path = NULL;
}

/* The host's fully qualified name: gethostname(), looked up only when it
 * has no dot (/etc/hosts usually knows the full name). */
static void
host_fqdn(struct buf *out)
{
	char name[256];
	struct addrinfo hints, *res = NULL;

	if (gethostname(name, sizeof(name)) < 0)
		snprintf(name, sizeof(name), "localhost");
	name[sizeof(name) - 1] = '\0';
	if (strchr(name, '.') == NULL) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_flags = AI_CANONNAME;
		if (getaddrinfo(name, NULL, &hints, &res) == 0 && res != NULL &&
		    res->ai_canonname != NULL &&
		    strchr(res->ai_canonname, '.') != NULL) {
			buf_puts(out, res->ai_canonname);
			freeaddrinfo(res);
			return;
		}
		if (res != NULL)
			freeaddrinfo(res);
	}
	buf_puts(out, name);
}

const char *
config_hostname(struct config *cfg)
{
	struct buf name;

	if (cfg->hostname != NULL && cfg->hostname[0] != '\0')
		return cfg->hostname;
	buf_init(&name);
	host_fqdn(&name);
	free(cfg->hostname);
	cfg->hostname = buf_steal(&name);
	buf_free(&name);
	return cfg->hostname;
}

int
config_is_local_domain(struct config *cfg, const char *domain, size_t len)
{
	size_t i;

	for (i = 0; i < cfg->local_domains.count; i++) {
		const char *d = cfg->local_domains.items[i];

		if (strcmp(d, "$hostname") == 0)
			d = config_hostname(cfg);
		if (strlen(d) == len && strncasecmp(d, domain, len) == 0)
			return 1;
	}
	return 0;
}
