/*
 * aliases: newaliases and praliases.
 */
#include "aliases.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "maps.h"
#include "status.h"

int
aliases_rebuild(struct config *cfg, FILE *out, FILE *err)
{
	size_t i;
	int result = EX_OK;

	for (i = 0; i < cfg->aliases.count; i++) {
		const char *path = cfg->aliases.items[i];
		struct map_stats stats;
		struct status st;
		struct buf db;
		struct map *m;

		m = map_parse_text(path, MAP_ALIASES, &stats, &st);
		if (m == NULL) {
			fprintf(err, "newaliases: %s\n", st.text);
			result = status_worse(result, st.exit_code);
			continue;
		}
		buf_init(&db);
		buf_printf(&db, "%s.db", path);
		if (map_write_db(m, db.data, &st) < 0) {
			fprintf(err, "newaliases: %s\n", st.text);
			result = status_worse(result, EX_CANTCREAT);
		} else {
			if (stats.duplicates > 0)
				fprintf(err, "newaliases: %s: %zu duplicate "
					"alias names (the last one counts)\n",
					path, stats.duplicates);
			fprintf(out, "%s: %zu aliases, longest %zu bytes, "
				"%zu bytes total\n", path, stats.entries,
				stats.longest, stats.total);
		}
		buf_free(&db);
		map_close(m);
	}
	return result;
}

struct print_walk {
	FILE *out;
	struct map **earlier;	/* the files before this one: they win */
	size_t nearlier;
	struct buf value;
};

static int
print_entry(const char *key, size_t key_len, const char *value,
	    size_t value_len, void *arg)
{
	struct print_walk *w = arg;
	size_t i;

	/* A name an earlier file has is not in force here. */
	for (i = 0; i < w->nearlier; i++)
		if (w->earlier[i] != NULL &&
		    map_lookup(w->earlier[i], key, key_len, &w->value) > 0)
			return 0;
	fprintf(w->out, "%.*s:%.*s\n", (int)key_len, key, (int)value_len,
		value);
	return 0;
}

int
aliases_print(struct config *cfg, char **names, int count, FILE *out,
	      FILE *err)
{
	struct print_walk w;
	struct map **maps;
	size_t i;
	int j, result = EX_OK;

	maps = xcalloc(cfg->aliases.count + 1, sizeof(*maps));
	for (i = 0; i < cfg->aliases.count; i++) {
		struct status st;

		maps[i] = map_open(cfg->aliases.items[i], MAP_ALIASES, 0, &st);
		if (maps[i] == NULL) {
			fprintf(err, "praliases: %s\n", st.text);
			result = status_worse(result, st.exit_code);
		}
	}
	w.out = out;
	w.earlier = maps;
	buf_init(&w.value);
	/* Every name in force, first file first: what deliver sees. */
	for (i = 0; count == 0 && i < cfg->aliases.count; i++) {
		if (maps[i] == NULL)
			continue;
		w.nearlier = i;
		map_foreach(maps[i], print_entry, &w);
	}
	for (j = 0; j < count; j++) {
		int rc = 0;

		/* The first file that has the name decides, as in deliver. */
		for (i = 0; rc == 0 && i < cfg->aliases.count; i++)
			if (maps[i] != NULL)
				rc = map_lookup(maps[i], names[j],
						strlen(names[j]), &w.value);
		if (rc > 0) {
			fprintf(out, "%s:%s\n", names[j], w.value.data);
		} else if (rc < 0) {
			fprintf(err, "praliases: %s: read error\n",
				cfg->aliases.items[i - 1]);
			result = status_worse(result, EX_TEMPFAIL);
		} else {
			fprintf(out, "%s: No such key\n", names[j]);
		}
	}
	for (i = 0; i < cfg->aliases.count; i++)
		map_close(maps[i]);
	free(maps);
	buf_free(&w.value);
	return result;
}
