/*
 * stats: the mailstats counters.
 */
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"

/* fcntl locks, not flock: they belong to the process, so children that
 * share one descriptor still exclude each other. */
static int
lock(int fd, short type)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	while (fcntl(fd, F_SETLKW, &fl) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

static const char *const mailer_names[STATS_MAILERS] = {
	"prog", "*file*", NULL, "local", NULL, "esmtp", NULL, NULL, "relay",
	NULL
};

const char *
stats_mailer_name(int mailer)
{
	if (mailer < 0 || mailer >= STATS_MAILERS ||
	    mailer_names[mailer] == NULL)
		return "unknown";
	return mailer_names[mailer];
}

int
stats_open(const char *path, int create)
{
	return open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
				  (create ? O_CREAT : 0), 0644);
}

/* The file: "S since", "M n a b c d e f" per mailer, "C a b c". A file
 * that does not parse counts as empty (it only holds statistics). */
static void
parse(const char *text, struct stats *s)
{
	const char *p = text;

	memset(s, 0, sizeof(*s));
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		int m;
		struct stats_counts c;

		if (p[0] == 'S') {
			s->since = (time_t)strtoll(p + 1, NULL, 10);
		} else if (p[0] == 'M' &&
			   sscanf(p + 1, "%d %lld %lld %lld %lld %lld %lld", &m,
				  &c.msgsfr, &c.bytes_from, &c.msgsto,
				  &c.bytes_to, &c.msgsrej, &c.msgsdis) == 7 &&
			   m >= 0 && m < STATS_MAILERS) {
			s->mailer[m] = c;
		} else if (p[0] == 'C') {
			if (sscanf(p + 1, "%lld %lld %lld", &s->conn_from,
				   &s->conn_to, &s->conn_rej) != 3)
				s->conn_from = s->conn_to = s->conn_rej = 0;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
}

static void
format(const struct stats *s, struct buf *out)
{
	int m;

	buf_printf(out, "S%lld\n", (long long)s->since);
	for (m = 0; m < STATS_MAILERS; m++) {
		const struct stats_counts *c = &s->mailer[m];

		if (c->msgsfr || c->bytes_from || c->msgsto || c->bytes_to ||
		    c->msgsrej || c->msgsdis)
			buf_printf(out, "M%d %lld %lld %lld %lld %lld %lld\n", m,
				   c->msgsfr, c->bytes_from, c->msgsto,
				   c->bytes_to, c->msgsrej, c->msgsdis);
	}
	buf_printf(out, "C%lld %lld %lld\n", s->conn_from, s->conn_to,
		   s->conn_rej);
}

static int
read_fd(int fd, struct buf *text)
{
	char chunk[4096];
	off_t off = 0;
	ssize_t n;

	while ((n = pread(fd, chunk, sizeof(chunk), off)) > 0) {
		buf_append(text, chunk, (size_t)n);
		off += n;
	}
	return n < 0 ? -1 : 0;
}

int
stats_add(int fd, const struct stats *delta)
{
	struct buf text;
	struct stats s;
	int m, rc = -1;

	if (fd < 0)
		return -1;
	if (lock(fd, F_WRLCK) < 0)
		return -1;
	buf_init(&text);
	if (read_fd(fd, &text) == 0) {
		parse(text.data, &s);
		if (s.since == 0)
			s.since = time(NULL);
		for (m = 0; m < STATS_MAILERS; m++) {
			struct stats_counts *c = &s.mailer[m];
			const struct stats_counts *d = &delta->mailer[m];

			c->msgsfr += d->msgsfr;
			c->bytes_from += d->bytes_from;
			c->msgsto += d->msgsto;
			c->bytes_to += d->bytes_to;
			c->msgsrej += d->msgsrej;
			c->msgsdis += d->msgsdis;
		}
		s.conn_from += delta->conn_from;
		s.conn_to += delta->conn_to;
		s.conn_rej += delta->conn_rej;
		buf_reset(&text);
		format(&s, &text);
		/* The new text is never shorter than the old one (counters
		 * only grow), so a crash here leaves a parsable file. */
		if (pwrite(fd, text.data, text.len, 0) == (ssize_t)text.len &&
		    ftruncate(fd, (off_t)text.len) == 0)
			rc = 0;
	}
	lock(fd, F_UNLCK);
	buf_free(&text);
	return rc;
}

static void
count(int fd, enum stats_mailer mailer, int field, long long bytes)
{
	struct stats delta;

	if (fd < 0)
		return;
	memset(&delta, 0, sizeof(delta));
	if (field == 0) {
		delta.mailer[mailer].msgsto = 1;
		delta.mailer[mailer].bytes_to = bytes;
	} else if (field == 1) {
		delta.mailer[mailer].msgsfr = 1;
		delta.mailer[mailer].bytes_from = bytes;
	} else {
		delta.mailer[mailer].msgsrej = 1;
	}
	stats_add(fd, &delta);
}

void
stats_count_to(int fd, enum stats_mailer mailer, long long bytes)
{
	count(fd, mailer, 0, bytes);
}

void
stats_count_from(int fd, enum stats_mailer mailer, long long bytes)
{
	count(fd, mailer, 1, bytes);
}

void
stats_count_rejected(int fd, enum stats_mailer mailer)
{
	count(fd, mailer, 2, 0);
}

int
stats_read(const char *path, struct stats *out)
{
	struct buf text;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	memset(out, 0, sizeof(*out));
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	buf_init(&text);
	lock(fd, F_RDLCK);
	if (read_fd(fd, &text) == 0)
		parse(text.data, out);
	lock(fd, F_UNLCK);
	close(fd);
	buf_free(&text);
	return 0;
}

int
stats_reset(const char *path)
{
	struct buf text;
	struct stats s;
	int fd = stats_open(path, 1), rc = -1;

	if (fd < 0)
		return -1;
	memset(&s, 0, sizeof(s));
	s.since = time(NULL);
	buf_init(&text);
	format(&s, &text);
	if (lock(fd, F_WRLCK) == 0) {
		if (pwrite(fd, text.data, text.len, 0) == (ssize_t)text.len &&
		    ftruncate(fd, (off_t)text.len) == 0)
			rc = 0;
		lock(fd, F_UNLCK);
	}
	close(fd);
	buf_free(&text);
	return rc;
}

static long long
kbytes(long long bytes)
{
	return (bytes + 1023) / 1024;
}

void
stats_print(const struct stats *s, FILE *out)
{
	struct stats_counts total;
	char since[64];
	struct tm tm;
	time_t t = s->since ? s->since : time(NULL);
	int m;

	memset(&total, 0, sizeof(total));
	localtime_r(&t, &tm);
	strftime(since, sizeof(since), "%a %b %e %H:%M:%S %Y", &tm);
	fprintf(out, "Statistics from %s\n", since);
	fprintf(out, " M   msgsfr  bytes_from   msgsto    bytes_to  msgsrej "
		     "msgsdis  Mailer\n");
	for (m = 0; m < STATS_MAILERS; m++) {
		const struct stats_counts *c = &s->mailer[m];

		if (!(c->msgsfr || c->bytes_from || c->msgsto || c->bytes_to ||
		      c->msgsrej || c->msgsdis))
			continue;
		fprintf(out, "%2d %8lld %10lldK %8lld %10lldK   %6lld  %6lld  "
			"%s\n", m, c->msgsfr, kbytes(c->bytes_from), c->msgsto,
			kbytes(c->bytes_to), c->msgsrej, c->msgsdis,
			stats_mailer_name(m));
		total.msgsfr += c->msgsfr;
		total.bytes_from += kbytes(c->bytes_from);
		total.msgsto += c->msgsto;
		total.bytes_to += kbytes(c->bytes_to);
		total.msgsrej += c->msgsrej;
		total.msgsdis += c->msgsdis;
	}
	fprintf(out, "============================================================"
		     "=========\n");
	fprintf(out, " T %8lld %10lldK %8lld %10lldK   %6lld  %6lld\n",
		total.msgsfr, total.bytes_from, total.msgsto, total.bytes_to,
		total.msgsrej, total.msgsdis);
	fprintf(out, " C %8lld %8lld %8lld\n", s->conn_from, s->conn_to,
		s->conn_rej);
}
