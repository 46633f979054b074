/*
 * remote: the queue runner's remote delivery. The recipients of a message
 * are grouped by domain and route (route.c); one connection carries all of
 * a message's recipients for a destination, and open connections are kept
 * in a small per-process cache so that the next message to the same
 * destination reuses them (unless smtp_connection_reuse is off).
 *
 * When the runner is root, the SMTP exchanges happen in a separate
 * process that runs as smtpd_user: it gets the message (its qf text and
 * its df as a descriptor) over a socket and answers with the outcomes, one
 * destination at a time, so that what a remote server sends is never
 * parsed with root's privileges, and each destination's outcomes are
 * recorded before the next destination is tried.
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

/* Called after each destination with the positions (into idx and out) of
 * its recipients and the number of connections it opened. */
typedef void (*remote_done_fn)(void *arg, const size_t *members, size_t m,
			       unsigned connections);

/* Delivers to the recipients of e whose indexes are in idx (n of them),
 * the body read from body_fd; out[k] gets the outcome of idx[k], and done
 * is called after each destination. Errors of the exchange are appended
 * to transcript. As root, the exchanges run in the client process. */
void remote_deliver(struct config *cfg, const struct queue_entry *e,
		    int body_fd, const size_t *idx, size_t n,
		    struct remote_outcome *out, struct buf *transcript,
		    remote_done_fn done, void *arg);
/* Closes the cached connections (politely) and ends the client process. */
void remote_close_all(void);

#endif
