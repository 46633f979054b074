/*
 * newaliases: rebuilds aliases.db from the aliases text (sendmail -bi).
 */
#include <stdio.h>
#include <unistd.h>

#include "aliases.h"
#include "config.h"
#include "status.h"

int
main(int argc, char **argv)
{
	struct config cfg;
	struct status st;
	const char *config_path = NULL;
	int c, rc;

	while ((c = getopt(argc, argv, "C:")) != -1) {
		if (c != 'C') {
			fprintf(stderr, "usage: newaliases [-C conf]\n");
			return EX_USAGE;
		}
		config_path = optarg;
	}
	if (optind != argc) {
		fprintf(stderr, "usage: newaliases [-C conf]\n");
		return EX_USAGE;
	}
	if (config_load(&cfg, config_path, config_path != NULL, &st) < 0) {
		fprintf(stderr, "newaliases: %s\n", st.text);
		return EX_CONFIG;
	}
	rc = aliases_rebuild(&cfg, stdout, stderr);
	config_free(&cfg);
	return rc;
}
