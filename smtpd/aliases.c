/*
 * aliases: newaliases and praliases.
 */
#include "aliases.h"

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

static int
print_entry(const char *key, size_t key_len, const char *value,
	    size_t value_len, void *arg)
{
	FILE *out = arg;

	fprintf(out, "%.*s:%.*s\n", (int)key_len, key, (int)value_len, value);
	return 0;
}

int
aliases_print(struct config *cfg, char **names, int count, FILE *out,
	      FILE *err)
{
	struct buf value;
	size_t i;
	int j, result = EX_OK;

	buf_init(&value);
	for (i = 0; i < cfg->aliases.count; i++) {
		struct status st;
		struct map *m = map_open(cfg->aliases.items[i], MAP_ALIASES, 0,
					 &st);

		if (m == NULL) {
			fprintf(err, "praliases: %s\n", st.text);
			result = status_worse(result, st.exit_code);
			continue;
		}
		if (count == 0)
			map_foreach(m, print_entry, out);
		for (j = 0; j < count; j++) {
			int rc = map_lookup(m, names[j], strlen(names[j]),
					    &value);

			if (rc > 0)
				fprintf(out, "%s:%s\n", names[j], value.data);
			else if (i + 1 == cfg->aliases.count)
				fprintf(out, "%s: No such key\n", names[j]);
		}
		map_close(m);
	}
	buf_free(&value);
	return result;
}
