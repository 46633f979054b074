/*
 * status: the single mapping of failure classes to exit codes, enhanced
 * status codes and maillog words.
 */
#include "status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* temporary: how our own failures with this code are classed (an I/O or
 * configuration error of ours never bounces mail). command_dsn: how the
 * exit code of a command that mail was piped to is read, as Postfix and
 * sendmail read it (only 71 and 75 ask for a retry). */
static const struct {
	int exit_code;
	int temporary;
	const char *dsn;
	const char *word;
	const char *command_dsn;
} status_table[] = {
	{ EX_OK, 0, "2.0.0", "Sent", "2.0.0" },
	{ EX_USAGE, 0, "5.5.4", "Usage error", "5.3.0" },
	{ EX_DATAERR, 0, "5.6.0", "Data format error", "5.6.0" },
	{ EX_NOINPUT, 0, "5.3.0", "Cannot open input", "5.3.0" },
	{ EX_NOUSER, 0, "5.1.1", "User unknown", "5.1.1" },
	{ EX_NOHOST, 0, "5.1.2", "Host unknown", "5.1.2" },
	{ EX_UNAVAILABLE, 0, "5.3.0", "Service unavailable", "5.3.0" },
	{ EX_SOFTWARE, 0, "5.3.0", "Internal error", "5.3.0" },
	{ EX_OSERR, 1, "4.3.0", "Deferred", "4.3.0" },
	{ EX_OSFILE, 0, "5.3.5", "Critical OS file missing", "5.3.0" },
	{ EX_CANTCREAT, 0, "5.3.0", "Can't create output", "5.2.0" },
	{ EX_IOERR, 1, "4.3.0", "Deferred", "5.3.0" },
	{ EX_TEMPFAIL, 1, "4.3.0", "Deferred", "4.3.0" },
	{ EX_PROTOCOL, 0, "5.5.0", "Remote protocol error", "5.5.0" },
	{ EX_NOPERM, 0, "5.7.1", "Permission denied", "5.7.0" },
	{ EX_CONFIG, 1, "4.3.5", "Deferred", "5.3.5" },
};

static int
status_index(int exit_code)
{
	size_t i;

	for (i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++)
		if (status_table[i].exit_code == exit_code)
			return (int)i;
	return -1;
}

void
status_ok(struct status *st)
{
	st->exit_code = EX_OK;
	snprintf(st->dsn, sizeof(st->dsn), "2.0.0");
	st->text[0] = '\0';
}

static void
status_vset(struct status *st, int exit_code, const char *dsn,
	    const char *fmt, va_list ap)
{
	int i = status_index(exit_code);

	st->exit_code = exit_code;
	if (dsn == NULL)
		dsn = i >= 0 ? status_table[i].dsn : "5.3.0";
	snprintf(st->dsn, sizeof(st->dsn), "%s", dsn);
	/* A reason cut at STATUS_TEXT_MAX is still a reason. */
	vsnprintf(st->text, sizeof(st->text), fmt, ap);
}

int
status_set(struct status *st, int exit_code, const char *dsn,
	   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	status_vset(st, exit_code, dsn, fmt, ap);
	va_end(ap);
	return -1;
}

int
status_errno(struct status *st, int err, const char *fmt, ...)
{
	va_list ap;
	int code;
	const char *dsn;
	size_t len;

	switch (err) {
	case ENOSPC:
		code = EX_TEMPFAIL, dsn = "4.3.1";	/* mail system full */
		break;
	case EDQUOT:
		code = EX_TEMPFAIL, dsn = "4.2.2";	/* mailbox full */
		break;
	case EFBIG:
		code = EX_CANTCREAT, dsn = "5.2.2";
		break;
	case EACCES:
	case EPERM:
	case EROFS:
		code = EX_TEMPFAIL, dsn = "4.3.0";	/* an admin can fix it */
		break;
	default:
		code = EX_TEMPFAIL, dsn = "4.3.0";
		break;
	}
	va_start(ap, fmt);
	status_vset(st, code, dsn, fmt, ap);
	va_end(ap);
	len = strlen(st->text);
	snprintf(st->text + len, sizeof(st->text) - len, ": %s", strerror(err));
	return -1;
}

int
status_is_temporary(int exit_code)
{
	int i = status_index(exit_code);

	return i >= 0 ? status_table[i].temporary : 0;
}

int
status_worse(int a, int b)
{
	if (a == EX_OK)
		return b;
	if (b == EX_OK)
		return a;
	/* Temporary outranks permanent; within a class the higher code
	 * wins, so that the result does not depend on the order. */
	if (status_is_temporary(a) != status_is_temporary(b))
		return status_is_temporary(a) ? a : b;
	return a > b ? a : b;
}

const char *
status_word(int exit_code)
{
	int i = status_index(exit_code);

	return i >= 0 ? status_table[i].word : "Unknown error";
}

const char *
status_stat(const struct status *st, char *out, size_t size)
{
	if (st->exit_code == EX_OK)
		snprintf(out, size, "%s", status_word(EX_OK));
	else if (status_is_temporary(st->exit_code))
		snprintf(out, size, "Deferred: %s",
			 st->text[0] != '\0' ? st->text :
						status_word(st->exit_code));
	else
		snprintf(out, size, "%s",
			 st->text[0] != '\0' ? st->text :
						status_word(st->exit_code));
	return out;
}

int
status_command_exit(struct status *st, int exit_code, const char *output)
{
	int i = status_index(exit_code);
	const char *dsn = i >= 0 ? status_table[i].command_dsn : "5.3.0";
	int temporary = dsn[0] == '4';
	char given[16];
	size_t n = 0;

	if (exit_code == EX_OK) {
		status_ok(st);
		return 0;
	}
	/* A command may say more precisely what happened: an enhanced status
	 * code at the start of its output is used, in the class its exit
	 * status gave. */
	if (output != NULL && (output[0] == '4' || output[0] == '5') &&
	    output[1] == '.') {
		while (n < sizeof(given) - 1 &&
		       (output[n] == '.' ||
			(output[n] >= '0' && output[n] <= '9')))
			n++;
		memcpy(given, output, n);
		given[n] = '\0';
		if (n >= 5 && strchr(given + 2, '.') != NULL &&
		    given[n - 1] != '.') {
			given[0] = temporary ? '4' : '5';
			dsn = given;
		}
	}
	status_set(st, temporary ? EX_TEMPFAIL :
		   exit_code == EX_NOUSER ? EX_NOUSER : EX_UNAVAILABLE, dsn,
		   "command failed with exit status %d%s%s", exit_code,
		   output != NULL && output[0] != '\0' ? ": " : "",
		   output != NULL ? output : "");
	return -1;
}
