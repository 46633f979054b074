/*
 * policy: what smtpd accepts at MAIL and RCPT time. Local domains and
 * virtusertable domains are ours: a recipient there must be a virtusertable
 * entry, an alias or a local user (postmaster always is); a virtusertable
 * "error:" entry answers with its own code and text. Any other domain is
 * relaying, allowed only to a client the access table lets RELAY or to a
 * domain it lists as "To:domain RELAY". The access table can also refuse
 * senders and recipients.
 */
#ifndef SMTPD_POLICY_H
#define SMTPD_POLICY_H

#include "access.h"
#include "buf.h"
#include "config.h"
#include "maps.h"

struct policy {
	struct config *cfg;
	struct map *access;		/* NULL: no table (defaults) */
	struct map *virtusertable;
	struct map **aliases;
	size_t naliases;
	int relay_client;		/* the client may relay */
	int discard;			/* DISCARD client: accept, drop */
	int discard_sender;		/* DISCARD sender of this MAIL */
	const char *client_ip;
	const char *client_name;
};

/* Opens the tables; 0, or -1 with st set (a table that cannot be read:
 * the session answers 4xx, never 5xx, for what it cannot know). */
int policy_open(struct policy *p, struct config *cfg, struct status *st);
void policy_close(struct policy *p);
/* The client's verdict: 0 to talk, or the reply refusing it in reply. */
int policy_client(struct policy *p, const char *ip, const char *name,
		  struct buf *reply);
/* 0 to accept the sender / recipient; otherwise the reply. */
int policy_sender(struct policy *p, const char *address, struct buf *reply);
int policy_recipient(struct policy *p, const char *address,
		     struct buf *reply);

#endif
