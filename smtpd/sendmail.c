/*
 * sendmail: the sendmail-compatible command. This release implements the
 * address and alias modes: -bv (what each address resolves to, through
 * deliver's own resolver: `deliver -V`) and -bi (newaliases). Submission
 * to the queue comes with the queue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aliases.h"
#include "buf.h"
#include "config.h"
#include "status.h"

static void
usage(void)
{
	fprintf(stderr, "usage: sendmail [-C conf] [-bv address... | -bi]\n");
	exit(EX_USAGE);
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct status st;
	const char *config_path = NULL;
	char mode = 'm';
	int i, rc;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *arg = argv[i];

		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (strncmp(arg, "-C", 2) == 0) {
			config_path = arg[2] ? arg + 2 : argv[++i];
			if (config_path == NULL)
				usage();
		} else if (strcmp(arg, "-bv") == 0) {
			mode = 'v';
		} else if (strcmp(arg, "-bi") == 0) {
			mode = 'i';
		} else if (strncmp(arg, "-b", 2) == 0) {
			mode = arg[2];
		}
		/* Other sendmail options are accepted and ignored. */
	}
	if (config_load(&cfg, config_path, config_path != NULL, &st) < 0) {
		fprintf(stderr, "sendmail: %s\n", st.text);
		return EX_CONFIG;
	}
	if (mode == 'i') {
		rc = aliases_rebuild(&cfg, stdout, stderr);
	} else if (mode == 'v') {
		/* The very resolver delivery uses: deliver -V. */
		char **args = calloc((size_t)(argc - i) + 5, sizeof(*args));
		int n = 0;

		if (i >= argc || args == NULL)
			usage();
		args[n++] = cfg.deliver_path;
		if (config_path != NULL) {
			args[n++] = "-C";
			args[n++] = (char *)config_path;
		}
		args[n++] = "-V";
		for (; i < argc; i++)
			args[n++] = argv[i];
		args[n] = NULL;
		fflush(NULL);
		execv(cfg.deliver_path, args);
		fprintf(stderr, "sendmail: cannot run %s: %s\n",
			cfg.deliver_path, strerror(errno));
		rc = EX_UNAVAILABLE;
	} else {
		fprintf(stderr, "sendmail: mode -b%c is not available in this "
				"release (the queue is not built yet)\n", mode);
		rc = EX_UNAVAILABLE;
	}
	config_free(&cfg);
	return rc;
}
