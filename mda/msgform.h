/*
 * msgform: writes a message in its delivered form. Adds Return-Path: and
 * Delivered-To:, drops the Return-Path: and Content-Length: fields the
 * message came with (they mean something only at final delivery), stores
 * CRLF line ends as LF (RFC 4155) and, for an mbox, writes the "From " line,
 * quotes ">*From " lines as mboxrd does and ends with a blank line.
 * Streams through a fixed buffer: memory use does not grow with the message.
 */
#ifndef MDA_MSGFORM_H
#define MDA_MSGFORM_H

#include <sys/types.h>
#include <time.h>

#include "message.h"
#include "status.h"

struct msgform {
	int mbox;			/* mbox framing and quoting */
	int from_line;			/* a "From " line only (for commands) */
	int omit_return_path;		/* forwarding: no Return-Path: yet */
	/* The message as it is: no fields added or dropped and line ends
	 * kept (rules folders: the message already is in delivered form). */
	int raw;
	const char *sender;		/* envelope sender; "" = null sender */
	const char *delivered_to;	/* NULL: no Delivered-To: */
	/* Delivering for our queue runner (deliver -Q): the queue id, so
	 * that a maildir file name carries it, and skip_if_present (-U):
	 * the runner was interrupted while this delivery ran, so a mailbox
	 * that already holds this message (this queue id, this
	 * Delivered-To:) is left as it is. */
	const char *queue_id;
	int skip_if_present;
	time_t now;			/* for the "From " line */
	/* Called after each buffer written, e.g. to refresh a dot-lock. */
	void (*progress)(void *arg);
	void *progress_arg;
	/* For an mbox: what the file ends with, so that the new message is
	 * separated from the last one by an empty line. 0 = empty file,
	 * 1 = ends with one newline, 2 = with an empty line, -1 = no newline. */
	int mbox_tail;
};

/* Writes to fd (opened for appending). *written counts bytes written, also
 * when it fails. Returns 0, or -1 with st set. */
int msgform_write(const struct message *m, const struct msgform *form, int fd,
		  off_t *written, struct status *st);
/* The "From " line's sender: MAILER-DAEMON for <>, blanks made '_'. */
void msgform_from_line(struct buf *out, const char *sender, time_t now);

#endif
