/*
 * enqueue: the sendmail command's submission into the queue.
 */
#include "enqueue.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "maillog.h"
#include "stats.h"
#include "queue.h"
#include "submit.h"

/* A header section larger than this is not a header section. */
#define HEADER_MAX (1024 * 1024)
#define CHUNK 65536

struct rcpts {
	struct queue_entry *e;
	const char *hostname;
};

static void
add_recipient(const char *addr, size_t len, void *arg)
{
	struct rcpts *r = arg;
	struct buf q;
	size_t i;

	while (len > 0 && isspace((unsigned char)*addr)) {
		addr++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)addr[len - 1]))
		len--;
	if (len > 1 && addr[0] == '<' && addr[len - 1] == '>') {
		addr++;
		len -= 2;
	}
	if (len == 0)
		return;
	buf_init(&q);
	enqueue_qualify(addr, len, r->hostname, &q);
	for (i = 0; i < r->e->nrecipients; i++)
		if (strcasecmp(r->e->recipients[i].address, q.data) == 0)
			break;
	if (i == r->e->nrecipients)
		queue_add_recipient(r->e, q.data, NULL);
	buf_free(&q);
}

void
enqueue_qualify(const char *addr, size_t len, const char *hostname,
		struct buf *out)
{
	buf_append(out, addr, len);
	if (memchr(addr, '@', len) == NULL)
		buf_printf(out, "@%s", hostname);
}

/* 1 when the line l (n bytes) can start a header section: a "Name:"
 * field or a From_ line. */
static int
starts_header(const char *l, size_t n)
{
	size_t k = 0;

	while (k < n && l[k] > ' ' && l[k] < 127 && l[k] != ':')
		k++;
	return (k > 0 && k < n && l[k] == ':') ||
	       (n >= 5 && memcmp(l, "From ", 5) == 0);
}

/* Reads the header section: up to and without the empty line that ends
 * it. A first line that is no field means there is no header at all: what
 * was read is then the start of the body (left in hdr, *no_header set). */
static int
read_header(FILE *in, struct buf *hdr, int *at_eof, int *no_header,
	    int ignore_dots, int *dot_end)
{
	int c, bol = 1, first = 1;
	size_t line_start = 0;

	*at_eof = *no_header = *dot_end = 0;
	for (;;) {
		c = getc_unlocked(in);
		if (c == EOF) {
			*at_eof = 1;
			/* A first line without its line end is one too. */
			if (first && hdr->len > line_start &&
			    !starts_header(hdr->data + line_start,
					   hdr->len - line_start))
				*no_header = 1;
			return 0;
		}
		if (bol && !ignore_dots && c == '.') {
			int d = getc_unlocked(in), e = EOF;

			if (d == '\r')
				e = getc_unlocked(in);
			if (d == '\n' || d == EOF ||
			    (d == '\r' && (e == '\n' || e == EOF))) {
				*dot_end = 1;
				return 0;
			}
			if (d == '\r') {
				/* ".\r" and more: all of it is text */
				buf_puts(hdr, ".\r");
				bol = 0;
				ungetc(e, in);
				continue;
			}
			ungetc(d, in);
		}
		if (bol && (c == '\n' || c == '\r')) {
			if (c == '\r') {
				int d = getc_unlocked(in);

				if (d != '\n') {
					if (d != EOF && ungetc(d, in) == EOF)
						return -1;
					buf_putc(hdr, '\r');
					bol = 0;
					continue;
				}
			}
			return 0;	/* the empty line */
		}
		buf_putc(hdr, (char)c);
		if (hdr->len > HEADER_MAX)
			return 1;
		if (c == '\n') {
			if (first) {
				if (!starts_header(hdr->data + line_start,
						   hdr->len - line_start)) {
					*no_header = 1;
					return 0;
				}
				first = 0;
			}
			bol = 1;
			line_start = hdr->len;
		} else {
			bol = 0;
		}
	}
}

/* Streams the rest of the input into the df; stops at a lone "." line
 * unless ignore_dots. *size counts the bytes written. */
static int
copy_body(FILE *in, struct queue_draft *draft, int ignore_dots, int bol,
	  uint64_t limit, uint64_t *size, struct status *st)
{
	char chunk[CHUNK];
	size_t n = 0;
	int c;

	for (;;) {
		c = getc_unlocked(in);
		if (c == EOF)
			break;
		if (bol && !ignore_dots && c == '.') {
			int d = getc_unlocked(in), e = EOF;

			if (d == '\r')
				e = getc_unlocked(in);
			if (d == '\n' || d == EOF ||
			    (d == '\r' && (e == '\n' || e == EOF)))
				break;
			if (d == '\r') {
				chunk[n++] = '.';
				c = '\r';
				ungetc(e, in);
			} else {
				ungetc(d, in);
			}
		}
		chunk[n++] = (char)c;
		bol = c == '\n';
		if (n >= sizeof(chunk) - 1) {
			*size += n;
			if (limit && *size > limit)
				return status_set(st, EX_DATAERR, "5.2.3",
						  "message is larger than the "
						  "limit of %llu bytes",
						  (unsigned long long)limit);
			if (queue_write(draft, chunk, n, st) < 0)
				return -1;
			n = 0;
		}
	}
	if (ferror(in))
		return status_errno(st, errno, "reading the message");
	*size += n;
	if (limit && *size > limit)
		return status_set(st, EX_DATAERR, "5.2.3",
				  "message is larger than the limit of %llu "
				  "bytes", (unsigned long long)limit);
	if (n > 0 && queue_write(draft, chunk, n, st) < 0)
		return -1;
	return 0;
}

/* The maillog's from= line and the mailstats count of the local mailer. */
static void
log_submission(const struct enqueue_request *req, const struct queue_entry *e)
{
	uint64_t size = e->headers.len + 1 + e->body_size;
	int fd;

	maillog("%s: from=<%s>, size=%llu, class=0, nrcpts=%zu%s%s, "
		"relay=%s@localhost", e->id, e->sender ? e->sender : "",
		(unsigned long long)size, e->nrecipients,
		e->message_id ? ", msgid=" : "",
		e->message_id ? e->message_id : "", req->login);
	fd = stats_open(req->cfg->statistics, 0);
	if (fd >= 0) {
		stats_count_from(fd, STATS_LOCAL, (long long)size);
		close(fd);
	}
}

int
enqueue_message(const struct enqueue_request *req, FILE *in,
		char id[QID_SIZE], size_t *nrcpts, struct status *st)
{
	struct config *cfg = req->cfg;
	const char *hostname = config_hostname(cfg);
	struct queue_entry e;
	struct queue_draft *draft = NULL;
	struct submit_header opts;
	struct buf raw, from;
	struct rcpts r;
	int at_eof, no_header, dot_end, rc = -1;
	uint64_t size = 0;
	const char *msgid;
	size_t i, idlen;
	char date[64];
	struct tm tm;

	queue_entry_init(&e);
	buf_init(&raw);
	buf_init(&from);
	r.e = &e;
	r.hostname = hostname;
	e.created = time(NULL);
	e.sender = xstrdup(req->sender);

	switch (read_header(in, &raw, &at_eof, &no_header, req->ignore_dots,
			    &dot_end)) {
	case 0:
		break;
	case 1:
		status_set(st, EX_DATAERR, "5.6.0",
			   "header section larger than %d bytes", HEADER_MAX);
		goto out;
	default:
		status_errno(st, errno, "reading the message");
		goto out;
	}
	/* The limit counts the client's octets (RFC 1870): its header
	 * section and the empty line after it too, not what we add. */
	size = raw.len + (!no_header && !at_eof && !dot_end);
	if (cfg->max_message_size && size > cfg->max_message_size) {
		status_set(st, EX_DATAERR, "5.2.3", "message is larger than "
			   "the limit of %llu bytes",
			   (unsigned long long)cfg->max_message_size);
		goto out;
	}
	if (submit_count_received(raw.data, raw.len) >= cfg->max_hops) {
		status_set(st, EX_DATAERR, "5.4.6",
			   "too many hops (%u Received: fields): mail loop?",
			   cfg->max_hops);
		goto out;
	}
	if (queue_begin(cfg->queue_dir, &e, &draft, st) < 0)
		goto out;

	/* Our Received: first, then the user's fields, rewritten. */
	localtime_r(&e.created, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	buf_printf(&e.headers, "Received: (from %s@localhost)\n\tby %s id %s;"
		   "\n\t%s\n", req->login, hostname, e.id, date);
	buf_printf(&from, "%s@%s", req->login, hostname);
	memset(&opts, 0, sizeof(opts));
	opts.from_address = from.data;
	opts.full_name = req->full_name;
	opts.hostname = hostname;
	opts.queue_id = e.id;
	opts.now = e.created;
	opts.extract_recipients = req->extract_recipients;
	submit_header(&opts, no_header ? "" : raw.data, no_header ? 0 : raw.len,
		      &e.headers, add_recipient, &r);
	for (i = 0; i < req->nrecipients; i++)
		submit_addresses(req->recipients[i],
				 strlen(req->recipients[i]), add_recipient, &r);
	/* The I record (queue.5), for the log. */
	msgid = submit_header_value(e.headers.data, e.headers.len,
				     "Message-ID", &idlen);
	if (msgid != NULL && idlen > 0)
		e.message_id = xstrndup(msgid, idlen);
	if (e.nrecipients == 0) {
		status_set(st, EX_USAGE, "5.1.3",
			   req->extract_recipients
			   ? "no recipient addresses found in the header"
			   : "recipient names must be specified");
		goto abort;
	}
	if (e.nrecipients > cfg->max_recipients) {
		status_set(st, EX_DATAERR, "5.5.3",
			   "too many recipients (%zu, at most %u)",
			   e.nrecipients, cfg->max_recipients);
		goto abort;
	}
	if (no_header) {
		/* What was read is the body's start. */
		if (queue_write(draft, raw.data, raw.len, st) < 0)
			goto abort;
	}
	if (!at_eof && !dot_end &&
	    copy_body(in, draft, req->ignore_dots,
		      !no_header || raw.len == 0 ||
		      raw.data[raw.len - 1] == '\n',
		      cfg->max_message_size, &size, st) < 0)
		goto abort;
	if (queue_commit(draft, &e, st) < 0) {
		draft = NULL;
		goto out;
	}
	draft = NULL;
	log_submission(req, &e);
	memcpy(id, e.id, QID_SIZE);
	*nrcpts = e.nrecipients;
	rc = 0;
	goto out;
abort:
	queue_abort(draft);
out:
	buf_free(&raw);
	buf_free(&from);
	queue_entry_free(&e);
	return rc;
}
