/*
 * runner: the queue runner. One worker process per message, at most
 * max_deliveries at once; a worker takes the message's lock (so that two
 * runners never work on one message), runs deliver once per local recipient
 * and records each outcome in the qf at once (so that a crash never makes
 * it deliver to that recipient again), then bounces what failed, warns
 * about what is late and schedules the next attempt with exponential
 * backoff. Remote recipients go through the SMTP client (remote.c).
 */
#ifndef SMTPD_RUNNER_H
#define SMTPD_RUNNER_H

#include <time.h>

#include "config.h"

struct runner {
	struct config *cfg;
	const char *config_path;	/* passed on to deliver; NULL: default */
	int force;		/* ignore the retry schedule (sendmail -q) */
	int verbose;		/* -v: each outcome on stdout */
};

/* Works on one message (in this process); returns 0, or -1 when the
 * message could not be read or locked for a reason other than being busy. */
int runner_message(const struct runner *r, const char *id);
/* One pass over the whole queue; returns 0 or -1 (queue unreadable). */
int runner_run(const struct runner *r);
/* sendmail -qINTERVAL: a pass every interval seconds and whenever the
 * trigger FIFO is written to, until SIGTERM. Does not return on success. */
int runner_daemon(const struct runner *r, unsigned interval);
/* Wakes a running daemon (its FIFO, queue_dir/.trigger); harmless when
 * none runs. */
void runner_trigger(const struct config *cfg);
/* The wait before attempt tries+1: min_backoff doubled per try, at most
 * max_backoff. */
unsigned runner_backoff(const struct config *cfg, unsigned tries);

#endif
