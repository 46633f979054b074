/*
 * maps: text tables, their tinycdb form, and lookups in either.
 */
#include "maps.h"

#include <cdb.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maillog.h"

/* Keys of the marker records that say "this domain appears in a key". A
 * text key never starts with a control character. */
#define DOMAIN_MARK '\001'

struct entry {
	size_t key_off, key_len;
	size_t value_off, value_len;
};

struct map {
	char *path;
	uid_t owner;
	int unsafe;		/* text writable by group or others */
	/* In memory (parsed text): */
	struct buf arena;
	struct entry *entries;
	size_t count, cap;
	size_t *slots;		/* open addressing: entry index + 1, 0 free */
	size_t nslots;
	/* Or compiled: */
	int cdb_fd;
	struct cdb cdb;
};

static uint32_t
hash_key(const char *p, size_t len)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	while (len-- > 0)
		h = (h ^ (unsigned char)*p++) * 16777619u;
	return h;
}

static struct map *
map_new(const char *path)
{
	struct map *m = xcalloc(1, sizeof(*m));

	m->path = xstrdup(path);
	m->cdb_fd = -1;
	buf_init(&m->arena);
	return m;
}

void
map_close(struct map *m)
{
	if (m == NULL)
		return;
	if (m->cdb_fd >= 0) {
		cdb_free(&m->cdb);
		close(m->cdb_fd);
	}
	buf_free(&m->arena);
	free(m->entries);
	free(m->slots);
	free(m->path);
	free(m);
}

static void
rehash(struct map *m)
{
	size_t i;

	free(m->slots);
	m->nslots = m->nslots ? m->nslots * 2 : 64;
	m->slots = xcalloc(m->nslots, sizeof(*m->slots));
	for (i = 0; i < m->count; i++) {
		const struct entry *e = &m->entries[i];
		size_t s = hash_key(m->arena.data + e->key_off, e->key_len) &
			   (m->nslots - 1);

		while (m->slots[s] != 0)
			s = (s + 1) & (m->nslots - 1);
		m->slots[s] = i + 1;
	}
}

static struct entry *
mem_find(const struct map *m, const char *key, size_t len)
{
	size_t s;

	if (m->nslots == 0)
		return NULL;
	s = hash_key(key, len) & (m->nslots - 1);
	while (m->slots[s] != 0) {
		struct entry *e = &m->entries[m->slots[s] - 1];

		if (e->key_len == len &&
		    memcmp(m->arena.data + e->key_off, key, len) == 0)
			return e;
		s = (s + 1) & (m->nslots - 1);
	}
	return NULL;
}

/* Adds key (lower-cased here) -> value; a repeated key replaces the value.
 * Returns 1 when the key was new. */
static int
mem_add(struct map *m, const char *key, size_t key_len, const char *value,
	size_t value_len)
{
	struct entry *e;
	size_t key_off = m->arena.len, i;

	buf_append(&m->arena, key, key_len);
	buf_putc(&m->arena, '\0');
	for (i = 0; i < key_len; i++)
		m->arena.data[key_off + i] =
			(char)tolower((unsigned char)m->arena.data[key_off + i]);
	e = mem_find(m, m->arena.data + key_off, key_len);
	if (e != NULL) {
		buf_truncate(&m->arena, key_off);
		e->value_off = m->arena.len;
		e->value_len = value_len;
		buf_append(&m->arena, value, value_len);
		buf_putc(&m->arena, '\0');
		return 0;
	}
	if (m->count == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->entries = xrealloc(m->entries, m->cap * sizeof(*m->entries));
	}
	e = &m->entries[m->count++];
	e->key_off = key_off;
	e->key_len = key_len;
	e->value_off = m->arena.len;
	e->value_len = value_len;
	buf_append(&m->arena, value, value_len);
	buf_putc(&m->arena, '\0');
	if (m->count * 2 > m->nslots)
		rehash(m);
	else {
		size_t s = hash_key(m->arena.data + key_off, key_len) &
			   (m->nslots - 1);

		while (m->slots[s] != 0)
			s = (s + 1) & (m->nslots - 1);
		m->slots[s] = m->count;
	}
	return 1;
}

int
map_split_list(const char *value, size_t len,
	       int (*fn)(const char *dest, size_t dest_len, void *arg),
	       void *arg)
{
	size_t i = 0;

	while (i < len) {
		size_t start, end;
		int quoted = 0, rc;

		while (i < len && (isspace((unsigned char)value[i]) ||
				   value[i] == ','))
			i++;
		start = i;
		for (; i < len; i++) {
			if (value[i] == '\\' && i + 1 < len) {
				i++;
				continue;
			}
			if (value[i] == '"')
				quoted = !quoted;
			else if (value[i] == ',' && !quoted)
				break;
		}
		end = i;
		while (end > start && isspace((unsigned char)value[end - 1]))
			end--;
		if (end > start && (rc = fn(value + start, end - start, arg)))
			return rc;
	}
	return 0;
}

static int
append_dest(const char *dest, size_t len, void *arg)
{
	struct buf *out = arg;

	if (out->len > 0)
		buf_putc(out, ',');
	buf_append(out, dest, len);
	return 0;
}

/* One logical line of the text (continuations joined) becomes an entry. */
static int
parse_entry(struct map *m, enum map_format format, const char *line,
	    size_t len, const char *path, int lineno, struct map_stats *stats,
	    struct status *st)
{
	const char *key = line, *p, *end = line + len;
	size_t key_len;
	struct buf value;

	buf_init(&value);
	if (format == MAP_ALIASES) {
		const char *colon = memchr(line, ':', len);
		int quoted = line[0] == '"';

		if (quoted) {
			const char *close = memchr(line + 1, '"', len - 1);

			colon = close ? memchr(close, ':', (size_t)(end - close))
				      : NULL;
		}
		if (colon == NULL) {
			buf_free(&value);
			return status_set(st, EX_CONFIG, "4.3.5",
					  "%s:%d: missing colon", path, lineno);
		}
		key_len = (size_t)(colon - line);
		while (key_len > 0 && isspace((unsigned char)key[key_len - 1]))
			key_len--;
		if (quoted && key_len >= 2)
			key++, key_len -= 2;
		for (p = key; p < key + key_len; p++)
			if (!quoted && isspace((unsigned char)*p)) {
				buf_free(&value);
				return status_set(st, EX_CONFIG, "4.3.5",
						  "%s:%d: blank in alias name",
						  path, lineno);
			}
		map_split_list(colon + 1, (size_t)(end - colon - 1),
			       append_dest, &value);
	} else {
		for (p = line; p < end && !isspace((unsigned char)*p); p++)
			;
		key_len = (size_t)(p - line);
		while (p < end && isspace((unsigned char)*p))
			p++;
		while (end > p && isspace((unsigned char)end[-1]))
			end--;
		buf_append(&value, p, (size_t)(end - p));
	}
	if (key_len == 0 || value.len == 0) {
		buf_free(&value);
		return status_set(st, EX_CONFIG, "4.3.5", "%s:%d: %s", path,
				  lineno, key_len == 0 ? "missing name"
						       : "missing value");
	}
	if (!mem_add(m, key, key_len, value.data, value.len))
		stats->duplicates++;
	else
		stats->entries++;
	if (value.len > stats->longest)
		stats->longest = value.len;
	stats->total += value.len;
	if (format == MAP_TABLE) {
		const char *at = memchr(key, '@', key_len);

		if (at != NULL && at + 1 < key + key_len) {
			struct buf mark;

			buf_init(&mark);
			buf_putc(&mark, DOMAIN_MARK);
			buf_append(&mark, at + 1,
				   (size_t)(key + key_len - at - 1));
			mem_add(m, mark.data, mark.len, "1", 1);
			buf_free(&mark);
		}
	}
	buf_free(&value);
	return 0;
}

struct map *
map_parse_text(const char *path, enum map_format format,
	       struct map_stats *stats, struct status *st)
{
	struct map_stats local_stats;
	struct map *m;
	struct buf logical;
	struct stat sb;
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int fd, lineno = 0, start_line = 0;

	if (stats == NULL)
		stats = &local_stats;
	memset(stats, 0, sizeof(*stats));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		status_errno(st, errno, "%s", path);
		return NULL;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		status_set(st, EX_CONFIG, "4.3.5", "%s: not a regular file",
			   path);
		return NULL;
	}
	fp = fdopen(fd, "r");
	if (fp == NULL) {
		close(fd);
		status_errno(st, errno, "%s", path);
		return NULL;
	}
	m = map_new(path);
	m->owner = sb.st_uid;
	m->unsafe = (sb.st_mode & (S_IWGRP | S_IWOTH)) != 0;
	buf_init(&logical);
	while ((n = getline(&line, &cap, fp)) >= 0) {
		size_t len = (size_t)n;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' ||
				   line[len - 1] == '\r'))
			len--;
		if (len > 0 && memchr(line, '\0', len) != NULL) {
			status_set(st, EX_CONFIG, "4.3.5",
				   "%s:%d: NUL byte", path, lineno);
			goto fail;
		}
		if (len > 0 && line[0] == '#')
			continue;
		/* A line starting with a blank continues the entry. */
		if (len > 0 && (line[0] == ' ' || line[0] == '\t')) {
			size_t i = 0;

			while (i < len && isspace((unsigned char)line[i]))
				i++;
			if (i == len)
				continue;	/* blank line */
			if (logical.len == 0) {
				status_set(st, EX_CONFIG, "4.3.5",
					   "%s:%d: continuation line without "
					   "an entry", path, lineno);
				goto fail;
			}
			buf_putc(&logical, ' ');
			buf_append(&logical, line + i, len - i);
			continue;
		}
		if (logical.len > 0 &&
		    parse_entry(m, format, logical.data, logical.len, path,
				start_line, stats, st) < 0)
			goto fail;
		buf_reset(&logical);
		if (len == 0)
			continue;
		buf_append(&logical, line, len);
		start_line = lineno;
	}
	if (ferror(fp)) {
		status_errno(st, errno, "%s", path);
		goto fail;
	}
	if (logical.len > 0 &&
	    parse_entry(m, format, logical.data, logical.len, path,
			start_line, stats, st) < 0)
		goto fail;
	free(line);
	buf_free(&logical);
	fclose(fp);
	return m;
fail:
	free(line);
	buf_free(&logical);
	fclose(fp);
	map_close(m);
	return NULL;
}

int
map_write_db(const struct map *m, const char *db_path, struct status *st)
{
	struct cdb_make cdbm;
	struct buf tmp, dir;
	const char *slash;
	size_t i;
	int fd, dfd;

	buf_init(&tmp);
	buf_printf(&tmp, "%s.tmpXXXXXX", db_path);
	fd = mkostemp(tmp.data, O_CLOEXEC);
	if (fd < 0) {
		status_errno(st, errno, "cannot create %s", tmp.data);
		buf_free(&tmp);
		return -1;
	}
	if (fchmod(fd, 0644) < 0 || cdb_make_start(&cdbm, fd) < 0)
		goto fail;
	for (i = 0; i < m->count; i++) {
		const struct entry *e = &m->entries[i];

		if (cdb_make_add(&cdbm, m->arena.data + e->key_off,
				 (unsigned)e->key_len,
				 m->arena.data + e->value_off,
				 (unsigned)e->value_len) < 0)
			goto fail;
	}
	if (cdb_make_finish(&cdbm) < 0 || fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp.data, db_path) < 0)
		goto fail;
	/* The rename is durable only once the directory is synced. */
	buf_init(&dir);
	slash = strrchr(db_path, '/');
	if (slash != NULL)
		buf_append(&dir, db_path,
			   slash == db_path ? 1 : (size_t)(slash - db_path));
	else
		buf_putc(&dir, '.');
	dfd = open(dir.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	buf_free(&dir);
	buf_free(&tmp);
	return 0;
fail:
	status_errno(st, errno ? errno : EIO, "cannot write %s", db_path);
	if (fd >= 0)
		close(fd);
	unlink(tmp.data);
	buf_free(&tmp);
	return -1;
}

static struct map *
open_db(const char *path, const char *db_path, const struct stat *owner_sb,
	struct status *st)
{
	struct map *m;
	int fd = open(db_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		status_errno(st, errno, "%s", db_path);
		return NULL;
	}
	m = map_new(path);
	m->owner = owner_sb->st_uid;
	m->unsafe = (owner_sb->st_mode & (S_IWGRP | S_IWOTH)) != 0;
	if (cdb_init(&m->cdb, fd) < 0) {
		status_set(st, EX_CONFIG, "4.3.5", "%s: not a valid table",
			   db_path);
		close(fd);
		m->cdb_fd = -1;
		map_close(m);
		return NULL;
	}
	m->cdb_fd = fd;
	return m;
}

static int
newer(const struct stat *a, const struct stat *b)
{
	return a->st_mtim.tv_sec > b->st_mtim.tv_sec ||
	       (a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
		a->st_mtim.tv_nsec > b->st_mtim.tv_nsec);
}

struct map *
map_open(const char *path, enum map_format format, int flags,
	 struct status *st)
{
	struct stat text_sb, db_sb;
	struct buf db_path;
	struct map *m;
	int have_text, have_db;

	buf_init(&db_path);
	buf_printf(&db_path, "%s.db", path);
	have_text = stat(path, &text_sb) == 0;
	have_db = stat(db_path.data, &db_sb) == 0;
	if (!have_text && errno != ENOENT) {
		status_errno(st, errno, "%s", path);
		buf_free(&db_path);
		return NULL;
	}
	if (!have_text && !have_db) {
		buf_free(&db_path);
		return map_new(path);		/* no table: nothing in it */
	}
	if (have_db && (!have_text || !newer(&text_sb, &db_sb))) {
		m = open_db(path, db_path.data,
			    have_text ? &text_sb : &db_sb, st);
		buf_free(&db_path);
		return m;
	}
	m = map_parse_text(path, format, NULL, st);
	if (m != NULL && (flags & MAP_MAY_REBUILD)) {
		struct status ignored;

		if (map_write_db(m, db_path.data, &ignored) < 0)
			maillog("warning: %s is %s and cannot be rebuilt (%s): "
				"reading the text; run newaliases or makemap",
				db_path.data, have_db ? "older than its text"
						      : "missing",
				ignored.text);
	} else if (m != NULL && have_db) {
		maillog("warning: %s is older than %s: reading the text",
			db_path.data, path);
	}
	buf_free(&db_path);
	return m;
}

int
map_lookup(struct map *m, const char *key, size_t len, struct buf *value)
{
	char small[256];
	char *lower = len < sizeof(small) ? small : xmalloc(len + 1);
	size_t i;
	int rc = 0;

	for (i = 0; i < len; i++)
		lower[i] = (char)tolower((unsigned char)key[i]);
	buf_reset(value);
	if (m->cdb_fd >= 0) {
		rc = cdb_find(&m->cdb, lower, (unsigned)len);
		if (rc > 0) {
			const void *data = cdb_getdata(&m->cdb);

			if (data == NULL)
				rc = -1;
			else
				buf_append(value, data, cdb_datalen(&m->cdb));
		}
		rc = rc > 0 ? 1 : rc < 0 ? -1 : 0;
	} else {
		const struct entry *e = mem_find(m, lower, len);

		if (e != NULL) {
			buf_append(value, m->arena.data + e->value_off,
				   e->value_len);
			rc = 1;
		}
	}
	if (lower != small)
		free(lower);
	return rc;
}

int
map_has_domain(struct map *m, const char *domain, size_t len)
{
	struct buf key, value;
	int rc;

	buf_init(&key);
	buf_init(&value);
	buf_putc(&key, DOMAIN_MARK);
	buf_append(&key, domain, len);
	rc = map_lookup(m, key.data, key.len, &value) == 1;
	buf_free(&key);
	buf_free(&value);
	return rc;
}

int
map_foreach(struct map *m,
	    int (*fn)(const char *key, size_t key_len, const char *value,
		      size_t value_len, void *arg),
	    void *arg)
{
	size_t i;
	int rc;

	if (m->cdb_fd >= 0) {
		unsigned pos;

		cdb_seqinit(&pos, &m->cdb);
		while (cdb_seqnext(&pos, &m->cdb) > 0) {
			const char *k = cdb_getkey(&m->cdb);
			const char *v = cdb_getdata(&m->cdb);

			if (k == NULL || v == NULL)
				return -1;
			if (cdb_keylen(&m->cdb) > 0 && k[0] == DOMAIN_MARK)
				continue;
			rc = fn(k, cdb_keylen(&m->cdb), v,
				cdb_datalen(&m->cdb), arg);
			if (rc != 0)
				return rc;
		}
		return 0;
	}
	for (i = 0; i < m->count; i++) {
		const struct entry *e = &m->entries[i];
		const char *k = m->arena.data + e->key_off;

		if (e->key_len > 0 && k[0] == DOMAIN_MARK)
			continue;
		rc = fn(k, e->key_len, m->arena.data + e->value_off,
			e->value_len, arg);
		if (rc != 0)
			return rc;
	}
	return 0;
}

uid_t
map_owner(const struct map *m)
{
	return m->owner;
}

int
map_unsafe(const struct map *m)
{
	return m->unsafe;
}

const char *
map_path(const struct map *m)
{
	return m->path;
}
