/*
 * enqueue: a message read from a stream into the queue, as the sendmail
 * command submits it: the header section rewritten (submit.c), a Received:
 * field added, the body streamed into the df, and the recipients from the
 * command line and, with -t, from the header. enqueue_message returns 0 only
 * when df, qf and the queue directory are on disk.
 */
#ifndef SMTPD_ENQUEUE_H
#define SMTPD_ENQUEUE_H

#include <stdio.h>

#include "buf.h"
#include "config.h"
#include "qid.h"
#include "status.h"

struct enqueue_request {
	struct config *cfg;
	const char *sender;	/* envelope sender; "" is <> */
	const char *full_name;	/* -F, or NULL for the gecos name */
	const char *login;	/* the submitting user's name */
	const char *const *recipients;	/* from the command line */
	size_t nrecipients;
	int extract_recipients;	/* -t */
	int ignore_dots;	/* -i / -oi: a lone "." is not the end */
};

/* Reads the message from in and queues it. On success id holds its queue
 * id and *nrcpts the number of recipients; on failure nothing of it is
 * left in the queue and st says why (EX_USAGE: no recipients, EX_DATAERR:
 * too large or looping, EX_TEMPFAIL: the queue could not take it). */
int enqueue_message(const struct enqueue_request *req, FILE *in,
		    char id[QID_SIZE], size_t *nrcpts, struct status *st);

/* Qualifies a bare local name with the host name: "alice" becomes
 * "alice@HOST"; anything with an '@' is kept. */
void enqueue_qualify(const char *addr, size_t len, const char *hostname,
		     struct buf *out);

#endif
