/*
 * msgform: the delivered form of a message, streamed.
 */
#include "msgform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define OUT_SIZE 65536

struct writer {
	int fd;
	char *out;
	size_t used;
	off_t *written;
	const struct msgform *form;
	int error;		/* errno of a failed write, 0 while fine */
	/* Line state. */
	int bol;		/* at the beginning of a line */
	size_t gt;		/* '>' seen at the start of this line */
	size_t match;		/* bytes of "From " matched after them */
	int held_cr;		/* a '\r' not yet written: a '\n' may follow */
	char last[2];		/* the last two bytes written */
};

static void
flush(struct writer *w)
{
	size_t off = 0;

	while (off < w->used && w->error == 0) {
		ssize_t n = write(w->fd, w->out + off, w->used - off);

		if (n < 0) {
			if (errno != EINTR)
				w->error = errno;
			continue;
		}
		off += (size_t)n;
		*w->written += n;
	}
	w->used = 0;
	if (w->form->progress != NULL)
		w->form->progress(w->form->progress_arg);
}

static void
emit(struct writer *w, const char *p, size_t len)
{
	while (len > 0 && w->error == 0) {
		size_t room = OUT_SIZE - w->used;
		size_t n = len < room ? len : room;

		memcpy(w->out + w->used, p, n);
		w->used += n;
		p += n;
		len -= n;
		if (w->used == OUT_SIZE)
			flush(w);
	}
}

static void
emit_byte(struct writer *w, char c)
{
	emit(w, &c, 1);
	w->last[0] = w->last[1];
	w->last[1] = c;
}

static void
emit_text(struct writer *w, const char *p, size_t len)
{
	if (len == 0)
		return;
	emit(w, p, len);
	if (len >= 2) {
		w->last[0] = p[len - 2];
		w->last[1] = p[len - 1];
	} else {
		w->last[0] = w->last[1];
		w->last[1] = p[0];
	}
}

/* Ends the "start of line" check: writes what it held back. */
static void
release_prefix(struct writer *w, int quote)
{
	static const char from[] = "From ";
	size_t i;

	if (quote)
		emit_byte(w, '>');
	for (i = 0; i < w->gt; i++)
		emit_byte(w, '>');
	emit_text(w, from, w->match);
	w->bol = 0;
	w->gt = 0;
	w->match = 0;
}

/* Feeds message bytes through line-end conversion and mboxrd quoting. */
static void
feed(struct writer *w, const char *p, size_t len)
{
	const char *end = p + len;

	while (p < end && w->error == 0) {
		if (w->held_cr) {
			w->held_cr = 0;
			if (*p != '\n')
				emit_byte(w, '\r');
		}
		if (w->bol && w->form->mbox) {
			if (w->match == 0 && *p == '>') {
				w->gt++;
				p++;
				continue;
			}
			if (*p == "From "[w->match]) {
				p++;
				if (++w->match == 5)
					release_prefix(w, 1);
				continue;
			}
			release_prefix(w, 0);
			continue;
		}
		w->bol = 0;
		{
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *stop = nl ? nl : end;
			size_t n = (size_t)(stop - p);

			if (n > 0 && stop[-1] == '\r' && !w->form->raw) {
				/* CR before LF goes; a CR at the end of the
				 * chunk waits for the next byte. */
				emit_text(w, p, n - 1);
				if (nl == NULL)
					w->held_cr = 1;
			} else {
				emit_text(w, p, n);
			}
			if (nl != NULL) {
				emit_byte(w, '\n');
				w->bol = 1;
				p = nl + 1;
			} else {
				p = end;
			}
		}
	}
}

static void
finish_lines(struct writer *w)
{
	if (w->held_cr) {
		w->held_cr = 0;
		emit_byte(w, '\r');
	}
	if (w->bol && (w->gt > 0 || w->match > 0))
		release_prefix(w, 0);
}

void
msgform_from_line(struct buf *out, const char *sender, time_t now)
{
	char date[64];
	struct tm tm;
	size_t start;

	localtime_r(&now, &tm);
	/* asctime(3)'s layout, as every mbox reader expects. */
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	buf_puts(out, "From ");
	start = out->len;
	buf_puts(out, sender[0] != '\0' ? sender : "MAILER-DAEMON");
	for (size_t i = start; i < out->len; i++)
		if ((unsigned char)out->data[i] <= ' ')
			out->data[i] = '_';
	buf_printf(out, " %s\n", date);
}

static int
dropped_field(const char *line, size_t len)
{
	static const char *const fields[] = { "return-path",
					      "content-length" };
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		size_t n = strlen(fields[i]);

		if (len < n || strncasecmp(line, fields[i], n) != 0)
			continue;
		/* RFC 822 allowed blanks before the colon. */
		while (n < len && (line[n] == ' ' || line[n] == '\t'))
			n++;
		if (n < len && line[n] == ':')
			return 1;
	}
	return 0;
}

/* The header section, in memory: drops the fields the delivery replaces. */
static void
feed_header(struct writer *w, const struct message *m)
{
	const char *p = m->head.data, *end = p + m->header_len;
	int dropping = 0;

	while (p < end && w->error == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;

		if (p[0] != ' ' && p[0] != '\t' && !w->form->raw)
			dropping = dropped_field(p, (size_t)(next - p));
		if (!dropping)
			feed(w, p, (size_t)(next - p));
		p = next;
	}
}

int
msgform_write(const struct message *m, const struct msgform *form, int fd,
	      off_t *written, struct status *st)
{
	struct writer w;
	struct buf top;
	char *chunk = NULL;
	off_t offset;

	memset(&w, 0, sizeof(w));
	w.fd = fd;
	w.form = form;
	w.written = written;
	w.out = xmalloc(OUT_SIZE);
	w.bol = 1;
	*written = 0;

	buf_init(&top);
	if (form->mbox) {
		if (form->mbox_tail == -1)
			buf_puts(&top, "\n\n");
		else if (form->mbox_tail == 1)
			buf_puts(&top, "\n");
		msgform_from_line(&top, form->sender, form->now);
	} else if (form->from_line) {
		msgform_from_line(&top, form->sender, form->now);
	}
	if (!form->omit_return_path && !form->raw)
		buf_printf(&top, "Return-Path: <%s>\n", form->sender);
	if (form->delivered_to != NULL && !form->raw)
		buf_printf(&top, "Delivered-To: %s\n", form->delivered_to);
	emit_text(&w, top.data, top.len);
	buf_free(&top);

	feed_header(&w, m);
	offset = (off_t)m->header_len;
	if (offset < m->size) {
		chunk = xmalloc(OUT_SIZE);
		while (offset < m->size && w.error == 0) {
			ssize_t n = message_pread(m, chunk, OUT_SIZE, offset);

			if (n <= 0) {
				int err = n < 0 ? errno : EIO;

				free(chunk);
				free(w.out);
				return status_errno(st, err,
						    "cannot read message");
			}
			feed(&w, chunk, (size_t)n);
			offset += n;
		}
		free(chunk);
	}
	finish_lines(&w);
	/* Every message ends with a newline; in an mbox an empty line
	 * follows, so that the next "From " line starts a message. */
	if (w.last[1] != '\n')
		emit_byte(&w, '\n');
	if (form->mbox)
		emit_byte(&w, '\n');
	if (w.used > 0)
		flush(&w);
	free(w.out);
	if (w.error != 0)
		return status_errno(st, w.error, "write failed");
	return 0;
}
