/*
 * rcdeliver: a local user's rules. Finds the rcfiles that apply (the
 * system one, then the user's; one that is group/world writable or not
 * owned by the user or root is skipped, as procmail skips it), runs them
 * with the rules engine, and carries out what they decide: folders (mbox,
 * maildir, MH, directory), commands, forwarding. When no recipe delivers,
 * or the rules cannot be run at all, the message goes to DEFAULT: a broken
 * rcfile never loses mail. Runs as the user (the caller switched).
 */
#ifndef MDA_RCDELIVER_H
#define MDA_RCDELIVER_H

#include <stddef.h>

#include "config.h"
#include "local.h"
#include "message.h"
#include "status.h"

struct rcdeliver_request {
	struct config *cfg;
	const struct local_user *user;
	const char *sender;
	const char *default_mailbox;	/* DEFAULT: the user's mailbox */
	const char *const *rcfiles;	/* NULL: the system and user ones */
	size_t nrcfiles;
	const char *const *args;	/* $1 ... */
	size_t nargs;
};

/* The rcfiles that would run for user (existing, safe); returns how many
 * were put in out (at most 2; paths allocated: free them). Unsafe ones are
 * logged. */
size_t rcdeliver_rcfiles(struct config *cfg, const struct local_user *user,
			 char *out[2]);
/* Runs the rules on m (already in delivered form: Return-Path and
 * Delivered-To in it) and delivers. Returns 0 or -1 with st set. */
int rcdeliver_run(const struct rcdeliver_request *req,
		  const struct message *m, struct status *st);

#endif
