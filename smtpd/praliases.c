/*
 * praliases: prints the aliases in force, "name:dest,dest" one a line.
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
			fprintf(stderr, "usage: praliases [-C conf] "
					"[name...]\n");
			return EX_USAGE;
		}
		config_path = optarg;
	}
	if (config_load(&cfg, config_path, config_path != NULL, &st) < 0) {
		fprintf(stderr, "praliases: %s\n", st.text);
		return EX_CONFIG;
	}
	rc = aliases_print(&cfg, argv + optind, argc - optind, stdout, stderr);
	config_free(&cfg);
	return rc;
}
