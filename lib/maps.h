/*
 * maps: the administrator's lookup tables: /etc/aliases ("name: dest, dest"
 * with continuation lines) and the key/value tables virtusertable,
 * mailertable and access ("key<blanks>value"). Keys match in any case.
 * A table's compiled form NAME.db (tinycdb) is written to a new file,
 * fsynced and renamed into place, so a reader never sees half a table; a
 * .db older than its text is never used: it is rebuilt when we may write
 * it, and otherwise the text is read (with a maillog warning).
 */
#ifndef LIB_MAPS_H
#define LIB_MAPS_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "status.h"

enum map_format {
	MAP_ALIASES,	/* name: dest, dest */
	MAP_TABLE,	/* key value */
};

struct map;

struct map_stats {
	size_t entries;
	size_t longest;		/* longest value, bytes */
	size_t total;		/* all values, bytes */
	size_t duplicates;	/* keys given more than once (last wins) */
};

#define MAP_MAY_REBUILD 1	/* rebuild a missing or stale NAME.db */

/* Opens the table whose text is at path. A missing text and .db give an
 * empty table. Returns NULL with st set on a syntax error (file:line) or an
 * unreadable file (a temporary failure: nothing gets bounced for it). */
struct map *map_open(const char *path, enum map_format format, int flags,
		     struct status *st);
/* Reads the text only (for newaliases, and the fallback of map_open). */
struct map *map_parse_text(const char *path, enum map_format format,
			   struct map_stats *stats, struct status *st);
/* Writes the compiled form atomically to db_path. */
int map_write_db(const struct map *m, const char *db_path, struct status *st);
void map_close(struct map *m);

/* 1 and the value when found, 0 when not, -1 on a read error. */
int map_lookup(struct map *m, const char *key, size_t len, struct buf *value);
/* 1 when some key ends in "@domain" (the domain is handled by the table). */
int map_has_domain(struct map *m, const char *domain, size_t len);
/* Calls fn for each entry, in the order of the text; stops when fn returns
 * nonzero and returns that. */
int map_foreach(struct map *m,
		int (*fn)(const char *key, size_t key_len, const char *value,
			  size_t value_len, void *arg),
		void *arg);
/* The owner of the table's text file (who commands in it run as). */
uid_t map_owner(const struct map *m);
/* 1 when the text is group or world writable: anyone may have put
 * commands or files in it. */
int map_unsafe(const struct map *m);
const char *map_path(const struct map *m);

/* Splits an alias value into destinations at commas outside quotes;
 * each destination is trimmed. Calls fn for each; stops on nonzero. */
int map_split_list(const char *value, size_t len,
		   int (*fn)(const char *dest, size_t dest_len, void *arg),
		   void *arg);

#endif
