/*
 * pipe: runs commands that mail is handed to. command_run() is the one
 * place a command is started: in its own process group, as a given user
 * (never root), with an explicit environment, the message on standard input
 * in the form the caller chose, and a time limit after which the whole
 * group is killed. pipe_deliver() is the "|command" destination of aliases
 * and .forward files on top of it: Postfix's environment, the message with
 * its "From " line, Return-Path: and Delivered-To:, and the exit status
 * read as Postfix reads it (status_command_exit).
 */
#ifndef MDA_PIPE_H
#define MDA_PIPE_H

#include <sys/types.h>

#include "buf.h"
#include "message.h"
#include "msgform.h"
#include "status.h"

struct command_spec {
	const char *shell_command;	/* run as: shell -c shell_command */
	char *const *argv;		/* or exec'ed directly (argv[0]) */
	const char *shell;		/* NULL: /bin/sh */
	char *const *envp;		/* the whole environment */
	uid_t uid;			/* who runs it; (uid_t)-1: ourselves */
	gid_t gid;
	const char *cwd;		/* NULL: where we are */
	unsigned timeout;		/* seconds; 0: none */
	/* Standard output: 0 joins stderr in a memory file of which the
	 * first bytes come back in output (a reason for a bounce); 1 keeps
	 * all of stdout in output and leaves stderr alone (VAR=| cmd). */
	int capture_all;
};

/* Runs the command with the message (NULL: nothing) written on its stdin
 * in form. *exit_status: its exit code, 128 + signal when killed, -1 on a
 * timeout. Returns 0 when the command ran to an end of its own, -1 with st
 * set otherwise (timeout: temporary). */
int command_run(const struct command_spec *spec, const struct message *m,
		const struct msgform *form, int *exit_status,
		struct buf *output, struct status *st);

struct pipe_request {
	const char *command;
	uid_t uid;
	gid_t gid;
	const char *user;	/* USER, LOGNAME */
	const char *home;	/* HOME and the working directory */
	const char *sender;	/* SENDER */
	const char *recipient;	/* RECIPIENT: the original recipient */
	const char *extension;	/* EXTENSION, or NULL */
	unsigned timeout;	/* seconds; 0: none */
};

int pipe_deliver(const struct pipe_request *req, const struct message *m,
		 const struct msgform *form, struct status *st);

#endif
