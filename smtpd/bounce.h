/*
 * bounce: delivery status notifications (RFC 3464): a multipart/report
 * with a human-readable part, a message/delivery-status part with one
 * block per recipient, and the original header section (text/rfc822-headers,
 * RFC 6522). Pure: builds the text of the notification; the caller queues it
 * from the null sender <>, so that it can never cause another bounce.
 */
#ifndef SMTPD_BOUNCE_H
#define SMTPD_BOUNCE_H

#include <stddef.h>
#include <time.h>

#include "buf.h"

enum bounce_kind {
	BOUNCE_FAILED,		/* Action: failed */
	BOUNCE_DELAYED,		/* Action: delayed (a warning) */
};

struct bounce_recipient {
	const char *address;	/* Final-Recipient */
	const char *original;	/* Original-Recipient, or NULL */
	const char *dsn;	/* Status: 5.1.1 */
	const char *diagnostic;	/* what went wrong, in words */
	const char *remote_mta;	/* Remote-MTA, or NULL */
	int smtp_reply;		/* 1: diagnostic is an SMTP reply */
};

struct bounce_request {
	enum bounce_kind kind;
	const char *hostname;		/* Reporting-MTA, From: */
	const char *queue_id;
	const char *to;			/* where the notice goes */
	time_t arrival;
	time_t now;
	time_t retry_until;		/* delayed: when it gives up; 0: unknown */
	const struct bounce_recipient *recipients;
	size_t nrecipients;
	const char *headers;		/* the original header section */
	size_t headers_len;
	int double_bounce;		/* to postmaster: the sender was <> */
};

/* Appends the whole notification (header and body) to out. */
void bounce_build(const struct bounce_request *req, struct buf *out);

#endif
