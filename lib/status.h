/*
 * status: how an operation ended, classified once where it happened.
 * Carries the sysexits.h code, the RFC 3463 enhanced status code and a reason
 * in words an administrator understands. The one table in status.c maps an
 * exit code to its class (temporary or permanent) and to the maillog's words.
 */
#ifndef LIB_STATUS_H
#define LIB_STATUS_H

#include <stddef.h>
#include <sysexits.h>

#define STATUS_TEXT_MAX 512

struct status {
	int exit_code;			/* EX_OK, EX_TEMPFAIL, ... */
	char dsn[16];			/* "2.0.0", "4.2.0", "5.1.1" */
	char text[STATUS_TEXT_MAX];	/* the reason, without a trailing newline */
};

void status_ok(struct status *st);
/* Sets all three fields; dsn NULL picks the default for exit_code. Returns -1,
 * so that a failing function can say "return status_set(...)". */
int status_set(struct status *st, int exit_code, const char *dsn,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The same for a failed system call: appends ": strerror(err)" and picks
 * temporary or permanent from errno (ENOSPC, EDQUOT, EIO... are temporary). */
int status_errno(struct status *st, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

int status_is_temporary(int exit_code);
/* Which of two exit codes a program with several results reports: any
 * temporary failure outranks permanent ones (the caller retries and nothing
 * is lost), and any failure outranks success. */
int status_worse(int a, int b);
/* "Sent", "Deferred: reason" or the reason itself, as sendmail's stat=. */
const char *status_word(int exit_code);
/* Classifies the exit status of a command mail was piped to (Postfix's
 * reading of sysexits.h); output: the first lines it printed, or NULL. */
int status_command_exit(struct status *st, int exit_code, const char *output);
/* The whole stat= text: "Sent", "Deferred: reason", or the reason of a
 * permanent failure (its word when there is no reason). Returns out. */
const char *status_stat(const struct status *st, char *out, size_t size);

#endif
