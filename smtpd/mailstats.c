/*
 * mailstats: prints the mail statistics in sendmail's layout.
 *   mailstats [-C conf] [-f file] [-o] [-p | -P] [-r]
 * -p prints in a program-readable form and clears, -P prints that form
 * only, -r clears without printing, -o leaves the mailer names out.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "stats.h"
#include "status.h"

static void
usage(void)
{
	fprintf(stderr, "usage: mailstats [-C conf] [-f file] [-o] [-p | -P] "
			"[-r]\n");
}

static void
print_program(const struct stats *s, int names, FILE *out)
{
	int m;

	fprintf(out, "%lld %lld\n", (long long)s->since,
		(long long)time(NULL));
	for (m = 0; m < STATS_MAILERS; m++) {
		const struct stats_counts *c = &s->mailer[m];

		if (!(c->msgsfr || c->bytes_from || c->msgsto || c->bytes_to ||
		      c->msgsrej || c->msgsdis))
			continue;
		fprintf(out, "%d %lld %lld %lld %lld %lld %lld%s%s\n", m,
			c->msgsfr, (c->bytes_from + 1023) / 1024, c->msgsto,
			(c->bytes_to + 1023) / 1024, c->msgsrej, c->msgsdis,
			names ? " " : "", names ? stats_mailer_name(m) : "");
	}
	fprintf(out, "C %lld %lld %lld\n", s->conn_from, s->conn_to,
		s->conn_rej);
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct status st;
	struct stats s;
	const char *config_path = NULL, *file = NULL;
	int c, names = 1, program = 0, clear = 0, print = 1, rc = EX_OK;

	while ((c = getopt(argc, argv, "C:f:opPr")) != -1) {
		switch (c) {
		case 'C': config_path = optarg; break;
		case 'f': file = optarg; break;
		case 'o': names = 0; break;
		case 'p': program = 1; clear = 1; break;
		case 'P': program = 1; break;
		case 'r': clear = 1; print = 0; break;
		default: usage(); return EX_USAGE;
		}
	}
	if (optind != argc) {
		usage();
		return EX_USAGE;
	}
	if (config_load(&cfg, config_path, config_path != NULL, &st) < 0) {
		fprintf(stderr, "mailstats: %s\n", st.text);
		return EX_CONFIG;
	}
	if (file == NULL)
		file = cfg.statistics;
	if (print) {
		if (stats_read(file, &s) < 0) {
			perror(file);
			rc = EX_NOINPUT;
		} else if (program) {
			print_program(&s, names, stdout);
		} else {
			stats_print(&s, stdout);
		}
	}
	if (rc == EX_OK && clear && stats_reset(file) < 0) {
		perror(file);
		rc = EX_CANTCREAT;
	}
	config_free(&cfg);
	return rc;
}
