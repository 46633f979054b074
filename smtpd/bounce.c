/*
 * bounce: RFC 3464 delivery status notifications.
 */
#include "bounce.h"

#include <stdio.h>
#include <string.h>

static void
rfc5322_date(struct buf *out, time_t t)
{
	char text[64];
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S %z", &tm);
	buf_puts(out, text);
}

/* Text that goes into a header or a DSN field: one line, printable. */
static void
one_line(struct buf *out, const char *text)
{
	for (; *text != '\0'; text++) {
		unsigned char c = (unsigned char)*text;

		buf_putc(out, c == '\r' || c == '\n' || c == '\t' ? ' ' :
			      c < 0x20 || c >= 0x7f ? '?' : (char)c);
	}
}

void
bounce_build(const struct bounce_request *req, struct buf *out)
{
	const char *boundary_fmt = "%s.%lld/%s";
	struct buf boundary;
	size_t i;
	int failed = req->kind == BOUNCE_FAILED;

	buf_init(&boundary);
	buf_printf(&boundary, boundary_fmt, req->queue_id,
		   (long long)req->now, req->hostname);

	buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\n",
		   req->hostname);
	buf_printf(out, "To: <%s>\n", req->to);
	buf_printf(out, "Subject: %s\n",
		   failed ? (req->double_bounce ?
			     "Undeliverable bounce (postmaster copy)" :
			     "Undelivered Mail Returned to Sender")
			  : "Delayed Mail (still being retried)");
	buf_puts(out, "Date: ");
	rfc5322_date(out, req->now);
	buf_putc(out, '\n');
	buf_printf(out, "Message-ID: <%s.%lld.dsn@%s>\n", req->queue_id,
		   (long long)req->now, req->hostname);
	buf_puts(out, "Auto-Submitted: auto-replied\n");
	buf_puts(out, "MIME-Version: 1.0\n");
	buf_printf(out, "Content-Type: multipart/report; "
			"report-type=delivery-status;\n\tboundary=\"%s\"\n",
		   boundary.data);
	buf_puts(out, "\nThis is a MIME-encapsulated message.\n\n");

	/* The part for people. */
	buf_printf(out, "--%s\n", boundary.data);
	buf_puts(out, "Content-Description: Notification\n"
		      "Content-Type: text/plain; charset=us-ascii\n\n");
	buf_printf(out, "This is the mail system at host %s.\n\n",
		   req->hostname);
	if (failed)
		buf_puts(out, "I'm sorry to have to inform you that your "
			      "message could not\nbe delivered to one or more "
			      "recipients. It's attached below.\n\n");
	else
		buf_puts(out, "Your message could not be delivered yet to one "
			      "or more recipients.\nThe mail system will go on "
			      "trying; you do not need to send it again.\n\n");
	for (i = 0; i < req->nrecipients; i++) {
		const struct bounce_recipient *r = &req->recipients[i];

		buf_printf(out, "<%s>: ", r->address);
		one_line(out, r->diagnostic ? r->diagnostic : r->dsn);
		buf_puts(out, "\n");
	}

	/* The part for programs. */
	buf_printf(out, "\n--%s\n", boundary.data);
	buf_puts(out, "Content-Description: Delivery report\n"
		      "Content-Type: message/delivery-status\n\n");
	buf_printf(out, "Reporting-MTA: dns; %s\n", req->hostname);
	buf_printf(out, "X-Queue-ID: %s\n", req->queue_id);
	buf_puts(out, "Arrival-Date: ");
	rfc5322_date(out, req->arrival);
	buf_putc(out, '\n');
	for (i = 0; i < req->nrecipients; i++) {
		const struct bounce_recipient *r = &req->recipients[i];

		buf_putc(out, '\n');
		buf_puts(out, "Final-Recipient: rfc822; ");
		one_line(out, r->address);
		buf_putc(out, '\n');
		if (r->original != NULL && r->original[0] != '\0') {
			buf_puts(out, "Original-Recipient: rfc822; ");
			one_line(out, r->original);
			buf_putc(out, '\n');
		}
		buf_printf(out, "Action: %s\n", failed ? "failed" : "delayed");
		buf_puts(out, "Status: ");
		one_line(out, r->dsn);
		buf_putc(out, '\n');
		if (r->remote_mta != NULL) {
			buf_puts(out, "Remote-MTA: dns; ");
			one_line(out, r->remote_mta);
			buf_putc(out, '\n');
		}
		if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
			buf_printf(out, "Diagnostic-Code: %s; ",
				   r->smtp_reply ? "smtp" : "x-unix");
			one_line(out, r->diagnostic);
			buf_putc(out, '\n');
		}
		if (!failed && req->retry_until != 0) {
			buf_puts(out, "Will-Retry-Until: ");
			rfc5322_date(out, req->retry_until);
			buf_putc(out, '\n');
		}
	}

	/* The original header section. */
	buf_printf(out, "\n--%s\n", boundary.data);
	buf_puts(out, "Content-Description: Undelivered Message Headers\n"
		      "Content-Type: text/rfc822-headers\n\n");
	buf_append(out, req->headers, req->headers_len);
	if (req->headers_len > 0 && req->headers[req->headers_len - 1] != '\n')
		buf_putc(out, '\n');
	buf_printf(out, "\n--%s--\n", boundary.data);
	buf_free(&boundary);
}
