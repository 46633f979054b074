/*
 * pipe: delivers a message to a "|command" destination. The command runs
 * with /bin/sh -c as the given user (never root), in a new process group,
 * with a clean environment, the message on standard input in the form the
 * caller chose (for "|command": "From " line, Return-Path:, Delivered-To:,
 * as Postfix's local delivery writes it), and a time limit: on expiry the
 * whole group is killed and the delivery deferred. Its exit status is read
 * as Postfix reads it (status_command_exit).
 */
#ifndef MDA_PIPE_H
#define MDA_PIPE_H

#include <sys/types.h>

#include "message.h"
#include "msgform.h"
#include "status.h"

struct pipe_request {
	const char *command;
	uid_t uid;
	gid_t gid;
	const char *user;	/* USER, LOGNAME */
	const char *home;	/* HOME and the working directory */
	const char *sender;	/* SENDER */
	const char *recipient;	/* RECIPIENT: the original recipient */
	const char *extension;	/* EXTENSION, or NULL */
	unsigned timeout;	/* seconds */
};

int pipe_deliver(const struct pipe_request *req, const struct message *m,
		 const struct msgform *form, struct status *st);

#endif
