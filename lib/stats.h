/*
 * stats: the counters mailstats prints, in sendmail's sense: per mailer,
 * messages and bytes from and to it, rejected and discarded; and the TCP
 * connections received, made and rejected. Kept in a small text file that
 * every program updates under an exclusive fcntl lock (read, add, rewrite), so
 * concurrent updates are never lost. Open it before dropping privileges:
 * the descriptor stays usable afterwards.
 */
#ifndef LIB_STATS_H
#define LIB_STATS_H

#include <stdio.h>
#include <time.h>

/* Mailer numbers, as in sendmail's usual configuration. */
enum stats_mailer {
	STATS_PROG = 0,
	STATS_FILE = 1,
	STATS_LOCAL = 3,
	STATS_ESMTP = 5,
	STATS_RELAY = 8,
	STATS_MAILERS = 10
};

struct stats_counts {
	long long msgsfr, bytes_from, msgsto, bytes_to, msgsrej, msgsdis;
};

struct stats {
	time_t since;
	struct stats_counts mailer[STATS_MAILERS];
	long long conn_from, conn_to, conn_rej;
};

/* Opens the file (creating it only when asked: as with sendmail, counting
 * happens only where the administrator created the file). -1 when it cannot
 * be opened: counting then stops, mail does not. */
int stats_open(const char *path, int create);
/* Adds delta to the file's counters, atomically. Returns 0 or -1. */
int stats_add(int fd, const struct stats *delta);
/* Shorthands for one message to / from a mailer. */
void stats_count_to(int fd, enum stats_mailer mailer, long long bytes);
void stats_count_from(int fd, enum stats_mailer mailer, long long bytes);
void stats_count_rejected(int fd, enum stats_mailer mailer);
int stats_read(const char *path, struct stats *out);
/* Zeroes the counters and restarts "since". */
int stats_reset(const char *path);
/* sendmail's mailstats layout. */
void stats_print(const struct stats *s, FILE *out);
const char *stats_mailer_name(int mailer);

#endif
