/*
 * remote: the queue runner's remote delivery. The recipients of a message
 * are grouped by domain and route (route.c); one connection carries all of
 * a message's recipients for a destination, and open connections are kept
 * in a small per-process cache so that the next message to the same
 * destination reuses them (unless smtp_connection_reuse is off).
 */
#ifndef SMTPD_REMOTE_H
#define SMTPD_REMOTE_H

#include <stddef.h>

#include "config.h"
#include "queue.h"

/* What happened to one recipient. */
struct remote_outcome {
	enum queue_state state;	/* SENT, QUEUED (deferred), BOUNCED */
	char dsn[16];
	char reply[600];
	char relay[320];	/* "host [ip]", or "" */
	char local_user[256];	/* mailertable local:user: deliver here */
};

/* Delivers to the recipients of e whose indexes are in idx (n of them),
 * the body read from body_fd; out[k] gets the outcome of idx[k]. Errors of
 * the exchange are appended to transcript. */
void remote_deliver(struct config *cfg, const struct queue_entry *e,
		    int body_fd, const size_t *idx, size_t n,
		    struct remote_outcome *out, struct buf *transcript);
/* Closes the cached connections (politely). */
void remote_close_all(void);

#endif
