/*
 * engine: runs procmail rcfiles against a message. Decides, in procmail's
 * order and with its flags, variables and logfile, what is to happen to the
 * message, and has the caller's callbacks do it: the engine itself never
 * writes a mailbox, runs a command or sends mail. It changes the working
 * directory (MAILDIR) and umask (UMASK) while it runs and restores both.
 */
#ifndef RULES_ENGINE_H
#define RULES_ENGINE_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "message.h"
#include "status.h"

enum rules_folder_type {
	RULES_MBOX,
	RULES_MAILDIR,		/* "dir/" */
	RULES_MH,		/* "dir/." */
	RULES_DIRECTORY,	/* an existing directory: one file a message */
	RULES_DEVNULL		/* "/dev/null" */
};

/* Flags given to the callbacks. */
enum {
	RULES_HEADER = 1 << 0,	/* the header is in msg->message */
	RULES_BODY = 1 << 1,	/* the body is */
	RULES_RAW = 1 << 2,	/* "r": write as is */
	RULES_IGNORE_WRITE_ERRORS = 1 << 3,	/* "i" */
	RULES_WAIT = 1 << 4,	/* "w"/"W": the exit code counts */
	RULES_FEED_NOTHING = 1 << 5	/* no stdin (not used by procmail) */
};

/* What a callback is to deliver or feed. */
struct rules_msg {
	/* The current message (the original or the output of filters), or
	 * only its header or body as the recipe's h/b flags say; a message
	 * held in memory (fd -1) when it is not the original. */
	const struct message *message;
	/* The variables, "NAME=value", NULL-terminated: the environment for
	 * commands (SHELL, PATH, SENDMAIL, SENDMAILFLAGS, TIMEOUT, UMASK...). */
	char *const *envp;
	const char *sender;	/* envelope sender, "" for <> */
};

/* Value of one variable of envp, or NULL. */
const char *rules_msg_getvar(const struct rules_msg *msg, const char *name);

struct rules_actions {
	void *arg;
	/* Writes msg to path. stored_path gets where it went (the file in a
	 * maildir or directory), for LASTFOLDER and the logfile; empty means
	 * path. Returns 0, or -1 with st set. */
	int (*folder)(void *arg, const char *path, enum rules_folder_type type,
		      const struct rules_msg *msg, int flags,
		      struct buf *stored_path, struct status *st);
	/* Runs command (through $SHELL $SHELLFLAGS when it holds any of
	 * $SHELLMETAS, in the current directory) with msg on its stdin. With
	 * capture_stdout its output is appended to output. *exit_status gets
	 * its exit code (128 + signal when killed). Returns 0 when it ran
	 * (whatever its exit code), -1 with st set when it could not. */
	int (*pipe)(void *arg, const char *command, const struct rules_msg *msg,
		    int flags, int capture_stdout, struct buf *output,
		    int *exit_status, struct status *st);
	/* Sends msg to the addresses (procmail: $SENDMAIL $SENDMAILFLAGS).
	 * Returns 0, or -1 with st set. */
	int (*forward)(void *arg, const char *const *addresses, size_t n,
		       const struct rules_msg *msg, struct status *st);
};

struct rules_env {
	const char *home;
	const char *logname;		/* also USER */
	const char *shell;		/* NULL: /bin/sh */
	const char *sender;		/* envelope sender; NULL: the message's */
	const char *default_mailbox;	/* DEFAULT */
	const char *orgmail;		/* ORGMAIL; NULL: DEFAULT */
	const char *hostname;		/* HOST must equal this */
	const char *sendmail;		/* SENDMAIL; NULL: /usr/sbin/sendmail */
	const char *const *args;	/* $1 ... */
	size_t nargs;
	int system_rcfile;		/* PATH without $HOME/bin (/etc/procmailrc) */
	/* Syntax errors and diagnostics, one line each, no newline. */
	void (*log)(void *arg, const char *text);
	void *log_arg;

	/* Results, set by rules_run(). */
	char *result_default;		/* $DEFAULT at the end, absolute; free() */
	int result_exitcode;		/* $EXITCODE, -1 when not set */
	int result_host_mismatch;	/* stopped by HOST: the mail counts as
					   delivered, as in procmail */
};

/* Runs the rcfiles in turn (a missing one is skipped with a log line).
 * *delivered is 1 when a delivering recipe (without "c") succeeded, or
 * when the engine delivered to $DEFAULT itself through actions->folder (it
 * does when the outcome matters to the run: a filtered message, a LOGFILE
 * to write the abstract to, a TRAP that sees EXITCODE); when 0 the caller
 * delivers to env->result_default. Returns 0, or -1 with st set when the
 * run could not be done at all (the caller then delivers to the default
 * mailbox as well). */
int rules_run(const char *const *rcfiles, size_t n, struct rules_env *env,
	      const struct message *m, const struct rules_actions *actions,
	      int *delivered, struct status *st);

/* The same for rcfile text already in memory (tests, "deliver -r -"). */
int rules_run_text(const char *name, const char *text, size_t len,
		   struct rules_env *env, const struct message *m,
		   const struct rules_actions *actions, int *delivered,
		   struct status *st);

#endif
