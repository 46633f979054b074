/*
 * maillog: writes the maillog, one line per event, in sendmail's layout:
 *   "Mar  3 16:25:33 host prog[pid]: ID: to=<...>, ..., stat=Sent"
 * to syslog (facility mail) or appended to a file with one write(2) per line,
 * so that lines from concurrent processes never interleave. Open it before
 * dropping privileges: the descriptor stays usable afterwards.
 */
#ifndef LIB_MAILLOG_H
#define LIB_MAILLOG_H

#include <stddef.h>

#include "status.h"

/* target: "syslog" or a file path. Returns 0, or -1 with st set. */
int maillog_open(const char *target, const char *progname,
		 const char *hostname, struct status *st);
void maillog_close(void);
/* Writes one line; text without a trailing newline. Failures to log are
 * ignored: the mail matters more than the log line about it. */
void maillog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Formats seconds as sendmail's delay=: "HH:MM:SS", or "D+HH:MM:SS". */
void maillog_delay(char *out, size_t size, long seconds);

#endif
