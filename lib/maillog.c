/*
 * maillog: the maillog writer (syslog or a file).
 */
#include "maillog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static int log_fd = -1;
static int log_syslog;
static char log_prog[64] = "mail";
static char log_host[256] = "localhost";

int
maillog_open(const char *target, const char *progname, const char *hostname,
	     struct status *st)
{
	const char *dot;

	maillog_close();
	snprintf(log_prog, sizeof(log_prog), "%s", progname);
	if (hostname == NULL || hostname[0] == '\0') {
		if (gethostname(log_host, sizeof(log_host)) < 0)
			snprintf(log_host, sizeof(log_host), "localhost");
		log_host[sizeof(log_host) - 1] = '\0';
		hostname = log_host;
	}
	/* syslog shows the short host name; so do we. */
	dot = strchr(hostname, '.');
	if (hostname != log_host)
		snprintf(log_host, sizeof(log_host), "%s", hostname);
	if (dot != NULL)
		log_host[dot - hostname] = '\0';
	if (strcmp(target, "syslog") == 0) {
		openlog(log_prog, LOG_PID | LOG_NDELAY, LOG_MAIL);
		log_syslog = 1;
		return 0;
	}
	log_fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
				      O_NOCTTY | O_NOFOLLOW, 0640);
	if (log_fd < 0)
		return status_errno(st, errno, "cannot open log %s", target);
	return 0;
}

void
maillog_close(void)
{
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	if (log_syslog)
		closelog();
	log_syslog = 0;
}

void
maillog(const char *fmt, ...)
{
	struct buf line;
	va_list ap;
	char stamp[32];
	struct tm tm;
	time_t now;
	ssize_t ignored;

	if (log_fd < 0 && !log_syslog)
		return;
	buf_init(&line);
	va_start(ap, fmt);
	if (log_syslog) {
		buf_vprintf(&line, fmt, ap);
		syslog(LOG_INFO, "%s", line.data);
	} else {
		now = time(NULL);
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
		buf_printf(&line, "%s %s %s[%ld]: ", stamp, log_host,
			   log_prog, (long)getpid());
		buf_vprintf(&line, fmt, ap);
		/* One line, whatever the reason text held. */
		for (size_t i = 0; i < line.len; i++)
			if (line.data[i] == '\n' || line.data[i] == '\r')
				line.data[i] = ' ';
		buf_putc(&line, '\n');
		ignored = write(log_fd, line.data, line.len);
		(void)ignored;
	}
	va_end(ap);
	buf_free(&line);
}

void
maillog_delay(char *out, size_t size, long seconds)
{
	long days;

	if (seconds < 0)
		seconds = 0;
	days = seconds / 86400;
	seconds %= 86400;
	if (days > 0)
		snprintf(out, size, "%ld+%02ld:%02ld:%02ld", days,
			 seconds / 3600, seconds / 60 % 60, seconds % 60);
	else
		snprintf(out, size, "%02ld:%02ld:%02ld", seconds / 3600,
			 seconds / 60 % 60, seconds % 60);
}
