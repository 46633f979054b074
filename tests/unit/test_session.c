/*
 * Unit tests for smtpd/session.c: the SMTP state machine driven with byte
 * strings and a stub message store (no sockets, no queue).
 */
#include <CUnit/CUnit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "suites.h"

#define TEST_ID "6AOB0tEOod1va3"

/* What the session asked of its store and checks. */
struct stub {
	int begins, writes, commits, aborts, accepted;
	const char *fail_begin;		/* a DSN to fail with, or NULL */
	const char *fail_write;
	const char *fail_commit;
	const char *refuse_rcpt;	/* check_rcpt refuses this address */
	const char *refuse_mail;
	struct buf body;		/* every msg_write, in order */
	struct buf headers;		/* e->headers at commit */
	struct buf sender;
	struct buf recipients;		/* "a|b|" at commit */
};

static struct stub stub;
static struct session *sess;
static struct buf output;		/* replies of the last feed */

static void
fail(struct status *st, const char *dsn)
{
	status_set(st, dsn[0] == '4' ? EX_TEMPFAIL : EX_UNAVAILABLE, dsn,
		   "stub failure %s", dsn);
}

static int
stub_check_mail(void *arg, struct session *s, const char *address,
		struct buf *reply)
{
	(void)arg;
	(void)s;
	if (stub.refuse_mail && strcmp(address, stub.refuse_mail) == 0) {
		buf_printf(reply, "553 5.7.1 <%s>... Sender refused", address);
		return -1;
	}
	return 0;
}

static int
stub_check_rcpt(void *arg, struct session *s, const char *address,
		struct buf *reply)
{
	(void)arg;
	(void)s;
	if (stub.refuse_rcpt && strcmp(address, stub.refuse_rcpt) == 0) {
		buf_printf(reply, "550 5.1.1 <%s>... User unknown", address);
		return -1;
	}
	return 0;
}

static int
stub_begin(void *arg, struct queue_entry *e, struct status *st)
{
	(void)arg;
	stub.begins++;
	if (stub.fail_begin) {
		fail(st, stub.fail_begin);
		return -1;
	}
	snprintf(e->id, sizeof(e->id), "%s", TEST_ID);
	buf_reset(&stub.body);
	return 0;
}

static int
stub_write(void *arg, const void *data, size_t len, struct status *st)
{
	(void)arg;
	stub.writes++;
	if (stub.fail_write) {
		fail(st, stub.fail_write);
		return -1;
	}
	buf_append(&stub.body, data, len);
	return 0;
}

static int
stub_commit(void *arg, struct queue_entry *e, struct status *st)
{
	size_t i;

	(void)arg;
	if (stub.fail_commit) {
		fail(st, stub.fail_commit);
		return -1;
	}
	stub.commits++;
	buf_reset(&stub.headers);
	buf_append(&stub.headers, e->headers.data, e->headers.len);
	buf_reset(&stub.sender);
	buf_puts(&stub.sender, e->sender ? e->sender : "");
	buf_reset(&stub.recipients);
	for (i = 0; i < e->nrecipients; i++)
		buf_printf(&stub.recipients, "%s|", e->recipients[i].address);
	e->body_size = stub.body.len;
	return 0;
}

static void
stub_abort(void *arg)
{
	(void)arg;
	stub.aborts++;
}

static void
stub_accepted(void *arg, const struct queue_entry *e)
{
	(void)arg;
	(void)e;
	stub.accepted++;
}

static const struct session_ops stub_ops = {
	.check_mail = stub_check_mail,
	.check_rcpt = stub_check_rcpt,
	.msg_begin = stub_begin,
	.msg_write = stub_write,
	.msg_commit = stub_commit,
	.msg_abort = stub_abort,
	.accepted = stub_accepted,
};

static struct session_params
default_params(void)
{
	struct session_params p;

	memset(&p, 0, sizeof(p));
	p.hostname = "mx.test";
	p.client_ip = "192.0.2.1";
	p.max_message_size = 10000;
	p.max_recipients = 100;
	p.max_hops = 5;
	p.max_line_length = 1000;
	return p;
}

static void
take_output(void)
{
	buf_reset(&output);
	buf_append(&output, sess->out.data, sess->out.len);
	buf_reset(&sess->out);
}

/* A new session with p; returns the greeting. */
static const char *
start(const struct session_params *p)
{
	if (sess != NULL)
		session_free(sess);
	else
		sess = calloc(1, sizeof(*sess));
	session_init(sess, p, &stub_ops);
	session_greet(sess);
	take_output();
	return output.data;
}

/* Feeds len bytes; the replies they caused. */
static const char *
feed_bytes(const char *data, size_t len, size_t *used)
{
	size_t n = session_input(sess, data, len);

	if (used != NULL)
		*used = n;
	take_output();
	return output.data;
}

static const char *
feed(const char *text)
{
	size_t used;
	const char *out = feed_bytes(text, strlen(text), &used);

	CU_ASSERT_EQUAL(used, strlen(text));
	return out;
}

/* The reply to one command line must start with want. */
#define REPLY(cmd, want) \
	CU_ASSERT_STRING_EQUAL(prefix(feed(cmd), strlen(want)), want)

static const char *
prefix(const char *s, size_t n)
{
	static char cut[4096];

	snprintf(cut, sizeof(cut), "%.*s", (int)n, s);
	return cut;
}

/* The three-digit codes of every reply line in text, "250 250 354". */
static const char *
codes(const char *text)
{
	static char list[8192];
	size_t off = 0;
	const char *p = text;

	list[0] = '\0';
	while (*p != '\0' && off + 5 < sizeof(list)) {
		const char *nl = strstr(p, "\r\n");

		if (p[3] == ' ')
			off += (size_t)snprintf(list + off, sizeof(list) - off,
						"%s%.3s", off ? " " : "", p);
		if (nl == NULL)
			break;
		p = nl + 2;
	}
	return list;
}

static void
setup(void)
{
	memset(&stub, 0, sizeof(stub));
	buf_init(&stub.body);
	buf_init(&stub.headers);
	buf_init(&stub.sender);
	buf_init(&stub.recipients);
	buf_init(&output);
	sess = NULL;
}

static void
teardown(void)
{
	if (sess != NULL) {
		session_free(sess);
		free(sess);
	}
	sess = NULL;
	buf_free(&stub.body);
	buf_free(&stub.headers);
	buf_free(&stub.sender);
	buf_free(&stub.recipients);
	buf_free(&output);
}

/* A session past EHLO, MAIL and RCPT, ready for DATA. */
static void
start_transaction(const struct session_params *p)
{
	start(p);
	REPLY("EHLO client.example\r\n", "250-");
	REPLY("MAIL FROM:<alice@a.example>\r\n", "250 2.1.0 ");
	REPLY("RCPT TO:<bob@b.example>\r\n", "250 2.1.5 ");
}

static void
start_data(const struct session_params *p)
{
	start_transaction(p);
	REPLY("DATA\r\n", "354 ");
	CU_ASSERT_EQUAL(sess->state, SESSION_DATA);
}

/* --- greeting and hello ------------------------------------------------- */

static void
test_session_greets_and_answers_helo_and_ehlo(void)
{
	struct session_params p = default_params();

	CU_ASSERT_STRING_EQUAL(start(&p), "220 mx.test ESMTP ready\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_START);
	CU_ASSERT_STRING_EQUAL(feed("HELO client.example\r\n"),
			       "250 mx.test Hello unknown [192.0.2.1], "
			       "pleased to meet you\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_READY);
	CU_ASSERT_EQUAL(sess->esmtp, 0);
	CU_ASSERT_STRING_EQUAL(sess->helo, "client.example");
	CU_ASSERT_STRING_EQUAL(feed("EHLO client.example\r\n"),
			       "250-mx.test Hello unknown [192.0.2.1], "
			       "pleased to meet you\r\n"
			       "250-PIPELINING\r\n"
			       "250-SIZE 10000\r\n"
			       "250-8BITMIME\r\n"
			       "250-ENHANCEDSTATUSCODES\r\n"
			       "250 HELP\r\n");
	CU_ASSERT_EQUAL(sess->esmtp, 1);
	REPLY("EHLO\r\n", "501 5.5.4 ");
	REPLY("HELO   \r\n", "501 5.5.4 ");
	/* No control characters: the name goes into the Received line. */
	REPLY("EHLO evil\rX-Injected: yes\r\n", "501 5.5.4 ");
	REPLY("HELO a\tb\r\n", "501 5.5.4 ");
	CU_ASSERT_STRING_EQUAL(sess->helo, "client.example");
	/* Verbs in any case; a bare LF ends a command as well. */
	REPLY("ehlo other.example\n", "250-mx.test");
	CU_ASSERT_STRING_EQUAL(sess->helo, "other.example");

	/* A verified client name shows in the reply; no size limit gives a
	 * bare SIZE. */
	p.client_name = "client.example";
	p.max_message_size = 0;
	start(&p);
	CU_ASSERT_PTR_NOT_NULL(strstr(feed("EHLO x\r\n"),
				      "250-mx.test Hello client.example "
				      "[192.0.2.1]"));
	CU_ASSERT_PTR_NOT_NULL(strstr(output.data, "250-SIZE\r\n"));
}

static void
test_session_needs_helo_before_mail(void)
{
	struct session_params p = default_params();

	start(&p);
	REPLY("MAIL FROM:<a@a.example>\r\n", "503 5.5.1 ");
	REPLY("RCPT TO:<b@b.example>\r\n", "503 5.5.1 ");
	REPLY("DATA\r\n", "503 5.5.1 ");
	REPLY("NOOP\r\n", "250 2.0.0 ");
	REPLY("RSET\r\n", "250 2.0.0 ");
	CU_ASSERT_EQUAL(sess->state, SESSION_START);
	REPLY("HELO c\r\n", "250 ");
	REPLY("MAIL FROM:<a@a.example>\r\n", "250 2.1.0 ");
}

static void
test_session_starttls_only_when_offered_and_only_once(void)
{
	struct session_params p = default_params();
	const char *pipelined = "STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n"
				"RCPT TO:<victim@x.example>\r\n";
	size_t used;

	start(&p);
	CU_ASSERT_PTR_NULL(strstr(feed("EHLO c\r\n"), "STARTTLS"));
	REPLY("STARTTLS\r\n", "502 5.5.1 ");
	CU_ASSERT_PTR_NULL(strstr(feed("HELP\r\n"), "STARTTLS"));
	CU_ASSERT_EQUAL(sess->want_tls, 0);

	p.tls_available = 1;
	start(&p);
	CU_ASSERT_PTR_NOT_NULL(strstr(feed("EHLO c\r\n"), "250-STARTTLS\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(feed("HELP\r\n"), " STARTTLS"));
	REPLY("STARTTLS now\r\n", "501 5.5.4 ");
	REPLY("MAIL FROM:<a@a.example>\r\n", "250 ");

	/* Everything after STARTTLS in the same read is left unused: it was
	 * sent in the clear and must not be taken as said under TLS
	 * (CVE-2011-0411). */
	CU_ASSERT_STRING_EQUAL(feed_bytes(pipelined, strlen(pipelined), &used),
			       "220 2.0.0 Ready to start TLS\r\n");
	CU_ASSERT_EQUAL(used, strlen("STARTTLS\r\n"));
	CU_ASSERT_EQUAL(sess->want_tls, 1);
	/* Until TLS is up, nothing more is read. */
	CU_ASSERT_STRING_EQUAL(feed_bytes("NOOP\r\n", 6, &used), "");
	CU_ASSERT_EQUAL(used, 0);

	/* TLS is up: the session starts over (RFC 3207 4.2). */
	session_tls_started(sess);
	CU_ASSERT_EQUAL(sess->state, SESSION_START);
	CU_ASSERT_EQUAL(sess->tls, 1);
	CU_ASSERT_EQUAL(sess->want_tls, 0);
	CU_ASSERT_PTR_NULL(sess->e.sender);
	REPLY("MAIL FROM:<a@a.example>\r\n", "503 5.5.1 ");
	CU_ASSERT_PTR_NULL(strstr(feed("EHLO c\r\n"), "STARTTLS"));
	CU_ASSERT_STRING_EQUAL(codes(output.data), "250");
	REPLY("STARTTLS\r\n", "503 5.5.1 ");
	CU_ASSERT_EQUAL(sess->want_tls, 0);

	/* The Received line says ESMTPS. */
	REPLY("MAIL FROM:<a@a.example>\r\n", "250 ");
	REPLY("RCPT TO:<b@b.example>\r\n", "250 ");
	REPLY("DATA\r\n", "354 ");
	REPLY("Subject: s\r\n\r\nhi\r\n.\r\n", "250 ");
	CU_ASSERT_PTR_NOT_NULL(strstr(stub.headers.data, "with ESMTPS id"));
}

static void
test_session_starttls_with_a_partial_line_after_it(void)
{
	struct session_params p = default_params();
	const char *in = "STARTTLS\r\nMAIL FR";
	size_t used;

	p.tls_available = 1;
	start(&p);
	feed("EHLO c\r\n");
	feed_bytes(in, strlen(in), &used);
	CU_ASSERT_EQUAL(used, 10);
	session_tls_started(sess);
	/* Nothing of "MAIL FR" survived into the TLS session. */
	CU_ASSERT_EQUAL(sess->in.len, 0);
	REPLY("OM:<a@a.example>\r\n", "500 5.5.1 ");
}

/* --- one message ---------------------------------------------------------- */

static void
test_session_accepts_a_message(void)
{
	struct session_params p = default_params();
	const char *received = "Received: from client.example (unknown "
			       "[192.0.2.1])\n\tby mx.test with ESMTP id "
			       TEST_ID "\n\tfor <bob@b.example>;\n\t";

	start(&p);
	REPLY("EHLO client.example\r\n", "250-");
	CU_ASSERT_STRING_EQUAL(feed("MAIL FROM:<alice@a.example>\r\n"),
			       "250 2.1.0 Sender ok\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_MAIL);
	CU_ASSERT_STRING_EQUAL(feed("RCPT TO:<bob@b.example>\r\n"),
			       "250 2.1.5 Recipient ok\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_RCPT);
	CU_ASSERT_STRING_EQUAL(feed("DATA\r\n"),
			       "354 End data with <CR><LF>.<CR><LF>\r\n");
	CU_ASSERT_EQUAL(stub.begins, 1);
	CU_ASSERT_STRING_EQUAL(feed("Subject: hi\r\nMessage-ID: <m@x>\r\n"
				    "\r\nHello\r\nBye\r\n"), "");
	CU_ASSERT_STRING_EQUAL(feed(".\r\n"), "250 2.0.0 " TEST_ID
			       " Message accepted for delivery\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_READY);
	CU_ASSERT_EQUAL(stub.commits, 1);
	CU_ASSERT_EQUAL(stub.accepted, 1);
	CU_ASSERT_EQUAL(stub.aborts, 0);
	CU_ASSERT_EQUAL(sess->messages, 1);
	CU_ASSERT_STRING_EQUAL(stub.body.data, "Hello\nBye\n");
	CU_ASSERT_STRING_EQUAL(stub.sender.data, "alice@a.example");
	CU_ASSERT_STRING_EQUAL(stub.recipients.data, "bob@b.example|");
	/* Our Received line first, then the client's header with LF ends. */
	CU_ASSERT_EQUAL(strncmp(stub.headers.data, received,
				strlen(received)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(stub.headers.data,
				      "\nSubject: hi\nMessage-ID: <m@x>\n"));
	CU_ASSERT_EQUAL(stub.headers.data[stub.headers.len - 1], '\n');

	/* The next transaction starts clean. */
	REPLY("DATA\r\n", "503 5.5.1 ");
	REPLY("MAIL FROM:<>\r\n", "250 2.1.0 ");
	REPLY("RCPT TO:<carol@c.example>\r\n", "250 ");
	REPLY("DATA\r\n", "354 ");
	REPLY("\r\nbody only\r\n.\r\n", "250 2.0.0 ");
	CU_ASSERT_EQUAL(stub.commits, 2);
	CU_ASSERT_STRING_EQUAL(stub.sender.data, "");
	CU_ASSERT_STRING_EQUAL(stub.body.data, "body only\n");

	CU_ASSERT_STRING_EQUAL(feed("QUIT\r\n"),
			       "221 2.0.0 mx.test closing connection\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_CLOSED);
	CU_ASSERT_STRING_EQUAL(feed_bytes("NOOP\r\n", 6, NULL), "");
}

static void
test_session_quit_leaves_the_rest_unused(void)
{
	struct session_params p = default_params();
	const char *in = "QUIT\r\nNOOP\r\n";
	size_t used;

	start(&p);
	CU_ASSERT_STRING_EQUAL(codes(feed_bytes(in, strlen(in), &used)), "221");
	CU_ASSERT_EQUAL(used, 6);
}

static void
test_session_unstuffs_leading_dots(void)
{
	struct session_params p = default_params();

	start_data(&p);
	REPLY("Subject: dots\r\n\r\n..one\r\n...\r\n. x\r\nplain.\r\n"
	      "..\r\n.\r\n", "250 ");
	CU_ASSERT_STRING_EQUAL(stub.body.data, ".one\n..\n x\nplain.\n.\n");

	/* An empty message ends at once. */
	start_data(&p);
	REPLY(".\r\n", "250 ");
	CU_ASSERT_EQUAL(stub.body.len, 0);
}

/* Each text holds something that some SMTP software takes as the end of
 * the data; only CRLF "." CRLF is, so whatever follows stays message
 * text: no second message can be smuggled in. */
static void
test_session_only_crlf_dot_crlf_ends_data(void)
{
	static const char *const not_an_end[] = {
		"a\n.\nb", "a\r.\rb", "a\r\n.\nb", "a\n.\r\nb", "a\r.\r\nb",
		"a\r\n.\rb", "a\n.\rb", "a\r\r\n.\nb", "a\r\n.\r\r\nb",
		"a\n\r\n.\n\r\nb",
	};
	struct session_params p = default_params();
	size_t i;

	for (i = 0; i < sizeof(not_an_end) / sizeof(not_an_end[0]); i++) {
		char in[512];

		stub.commits = 0;
		start_data(&p);
		snprintf(in, sizeof(in), "Subject: s\r\n\r\n%s\r\n"
			 "MAIL FROM:<evil@x.example>\r\n"
			 "RCPT TO:<victim@x.example>\r\nDATA\r\n"
			 "Subject: smuggled\r\n\r\n", not_an_end[i]);
		CU_ASSERT_STRING_EQUAL(feed(in), "");
		CU_ASSERT_EQUAL(sess->state, SESSION_DATA);
		CU_ASSERT_STRING_EQUAL(codes(feed("\r\n.\r\n")), "250");
		CU_ASSERT_EQUAL(stub.commits, 1);
		CU_ASSERT_PTR_NOT_NULL(strstr(stub.body.data,
					      "MAIL FROM:<evil@x.example>\n"));
		CU_ASSERT_PTR_NOT_NULL(strstr(stub.body.data,
					      "Subject: smuggled\n"));
		CU_ASSERT_STRING_EQUAL(stub.recipients.data, "bob@b.example|");
	}
}

static void
test_session_stores_bare_lf_as_line_break_and_keeps_bare_cr(void)
{
	struct session_params p = default_params();

	start_data(&p);
	REPLY("Subject: s\r\n\r\nx\ry\r\nz\nw\r\n\r\r\n.\r\n", "250 ");
	CU_ASSERT_STRING_EQUAL(stub.body.data, "x\ry\nz\nw\n\r\n");
	/* A dot after a bare LF is text, not stuffing. */
	start_data(&p);
	REPLY("\r\na\n..b\r\n.\r\n", "250 ");
	CU_ASSERT_STRING_EQUAL(stub.body.data, "a\n..b\n");
}

static void
test_session_header_section_without_empty_line(void)
{
	struct session_params p = default_params();

	start_data(&p);
	REPLY("Subject: a\r\n folded\r\nnot a header line\r\nX: y\r\n.\r\n",
	      "250 ");
	CU_ASSERT_PTR_NOT_NULL(strstr(stub.headers.data,
				      "\nSubject: a\n folded\n"));
	CU_ASSERT_PTR_NULL(strstr(stub.headers.data, "X: y"));
	CU_ASSERT_STRING_EQUAL(stub.body.data, "not a header line\nX: y\n");
}

/* --- pipelining ----------------------------------------------------------- */

static const char pipelined[] =
	"EHLO client.example\r\n"
	"MAIL FROM:<alice@a.example> SIZE=100 BODY=8BITMIME\r\n"
	"RCPT TO:<bob@b.example>\r\n"
	"RCPT TO:<nobody@b.example>\r\n"
	"RCPT TO:<carol@c.example>\r\n"
	"DATA\r\n"
	"Subject: one\r\n\r\nfirst\r\n.\r\n"
	"MAIL FROM:<alice@a.example>\r\n"
	"RCPT TO:<nobody@b.example>\r\n"
	"DATA\r\n"
	"RSET\r\n"
	"MAIL FROM:<dave@d.example>\r\n"
	"RCPT TO:<bob@b.example>\r\n"
	"DATA\r\n"
	"Subject: two\r\n\r\n..second\r\n.\r\n"
	"QUIT\r\n";

static void
test_session_pipelined_commands_answer_in_order(void)
{
	struct session_params p = default_params();
	struct buf whole;

	buf_init(&whole);
	stub.refuse_rcpt = "nobody@b.example";
	start(&p);
	buf_puts(&whole, feed(pipelined));
	CU_ASSERT_STRING_EQUAL(codes(whole.data),
			       "250 250 250 550 250 354 250 250 550 554 250 "
			       "250 250 354 250 221");
	CU_ASSERT_EQUAL(stub.commits, 2);
	CU_ASSERT_STRING_EQUAL(stub.sender.data, "dave@d.example");
	CU_ASSERT_STRING_EQUAL(stub.body.data, ".second\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_CLOSED);

	/* The same bytes in any split give the same replies and message. */
	{
		static const size_t steps[] = { 1, 2, 3, 7, 64 };
		size_t k, off;

		for (k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
			struct buf out;

			buf_init(&out);
			stub.commits = 0;
			start(&p);
			for (off = 0; off < sizeof(pipelined) - 1;
			     off += steps[k]) {
				size_t n = sizeof(pipelined) - 1 - off;

				if (n > steps[k])
					n = steps[k];
				buf_puts(&out, feed_bytes(pipelined + off, n,
							  NULL));
			}
			CU_ASSERT_STRING_EQUAL(out.data, whole.data);
			CU_ASSERT_EQUAL(stub.commits, 2);
			CU_ASSERT_STRING_EQUAL(stub.body.data, ".second\n");
			buf_free(&out);
		}
	}
	buf_free(&whole);
}

/* --- commands ------------------------------------------------------------- */

static void
test_session_mail_and_rcpt_syntax(void)
{
	struct session_params p = default_params();

	start(&p);
	REPLY("EHLO c\r\n", "250-");
	REPLY("MAIL FROM:alice@a.example\r\n", "501 5.1.7 ");
	REPLY("MAIL FROM:<alice@a.example\r\n", "501 5.1.7 ");
	REPLY("MAIL TO:<alice@a.example>\r\n", "501 5.5.4 ");
	REPLY("MAIL FROM:<a b@a.example>\r\n", "501 5.1.7 ");
	REPLY("MAIL FROM:<alice@a.example> XYZ=1\r\n", "555 5.5.4 ");
	REPLY("MAIL FROM:<alice@a.example> BODY=BINARYMIME\r\n",
	      "501 5.5.4 ");
	REPLY("MAIL FROM:<alice@a.example> SIZE=12x\r\n", "501 5.5.4 ");
	REPLY("MAIL FROM:<alice@a.example> SIZE=\r\n", "555 5.5.4 ");
	REPLY("RCPT TO:<bob@b.example>\r\n", "503 5.5.1 ");
	REPLY("mail from:<alice@a.example> body=7bit\r\n", "250 2.1.0 ");
	REPLY("MAIL FROM:<alice@a.example>\r\n", "503 5.5.1 ");
	REPLY("DATA\r\n", "554 5.5.1 ");
	REPLY("RCPT TO:bob@b.example\r\n", "501 5.1.3 ");
	REPLY("RCPT TO:<>\r\n", "501 5.1.3 ");
	REPLY("RCPT TO:<bob@b.example> NOTIFY=NEVER\r\n", "555 5.5.4 ");
	REPLY("RCPT FROM:<bob@b.example>\r\n", "501 5.5.4 ");
	/* A source route is dropped (RFC 5321 appendix C); a bare name is
	 * this host's; a repeated recipient is kept once. */
	REPLY("RCPT TO:<@relay.example,@r2.example:bob@b.example>\r\n",
	      "250 2.1.5 ");
	REPLY("RCPT TO:<BOB@b.example>\r\n", "250 2.1.5 ");
	REPLY("RCPT TO:<postmaster>\r\n", "250 2.1.5 ");
	CU_ASSERT_EQUAL(sess->e.nrecipients, 2);
	CU_ASSERT_STRING_EQUAL(sess->e.recipients[0].address, "bob@b.example");
	CU_ASSERT_STRING_EQUAL(sess->e.recipients[1].address,
			       "postmaster@mx.test");
	REPLY("DATA extra\r\n", "501 5.5.4 ");
	REPLY("RSET\r\n", "250 2.0.0 ");
	CU_ASSERT_EQUAL(sess->state, SESSION_READY);
	CU_ASSERT_EQUAL(sess->e.nrecipients, 0);
	REPLY("DATA\r\n", "503 5.5.1 ");

	/* No parameters without EHLO (RFC 5321 4.1.1.11). */
	start(&p);
	REPLY("HELO c\r\n", "250 ");
	REPLY("MAIL FROM:<alice@a.example> SIZE=10\r\n", "555 5.5.4 ");
	REPLY("MAIL FROM:<alice@a.example>\r\n", "250 2.1.0 ");
}

static void
test_session_passes_on_the_checks_replies(void)
{
	struct session_params p = default_params();

	stub.refuse_mail = "spammer@bad.example";
	stub.refuse_rcpt = "nobody@b.example";
	start(&p);
	REPLY("EHLO c\r\n", "250-");
	CU_ASSERT_STRING_EQUAL(feed("MAIL FROM:<spammer@bad.example>\r\n"),
			       "553 5.7.1 <spammer@bad.example>... Sender "
			       "refused\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_READY);
	REPLY("MAIL FROM:<alice@a.example>\r\n", "250 ");
	CU_ASSERT_STRING_EQUAL(feed("RCPT TO:<nobody@b.example>\r\n"),
			       "550 5.1.1 <nobody@b.example>... User "
			       "unknown\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_MAIL);
	CU_ASSERT_EQUAL(sess->bad_rcpts, 1);
	/* RFC 2920 3.1: DATA without a good recipient is refused. */
	REPLY("DATA\r\n", "554 5.5.1 ");
	CU_ASSERT_EQUAL(stub.begins, 0);
}

static void
test_session_other_commands(void)
{
	struct session_params p = default_params();
	const char *help;

	start(&p);
	REPLY("HELO c\r\n", "250 ");
	REPLY("VRFY alice\r\n", "252 2.5.2 ");
	REPLY("VRFY\r\n", "501 5.5.4 ");
	REPLY("EXPN staff\r\n", "502 5.7.0 ");
	REPLY("NOOP\r\n", "250 2.0.0 ");
	REPLY("noop with args\r\n", "250 2.0.0 ");
	REPLY("FOO\r\n", "500 5.5.1 ");
	REPLY("\r\n", "500 5.5.1 ");
	REPLY("TURN\r\n", "500 5.5.1 ");
	help = feed("HELP\r\n");
	CU_ASSERT_EQUAL(strncmp(help, "214-2.0.0 ", 10), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(help, "\r\n214 2.0.0 "));
	CU_ASSERT_STRING_EQUAL(codes(help), "214");
	CU_ASSERT_PTR_NOT_NULL(strstr(help, "VRFY"));
}

static void
test_session_too_many_errors_close_the_session(void)
{
	struct session_params p = default_params();
	int i;

	start(&p);
	for (i = 0; i < 20; i++)
		REPLY("BOGUS\r\n", "500 ");
	CU_ASSERT_STRING_EQUAL(codes(feed("BOGUS\r\n")), "500 421");
	CU_ASSERT_PTR_NOT_NULL(strstr(output.data, "421 4.7.0 "));
	CU_ASSERT_EQUAL(sess->state, SESSION_CLOSED);
}

static void
test_session_refused_client(void)
{
	struct session_params p = default_params();

	p.reject = "550 5.7.1 Access denied";
	CU_ASSERT_STRING_EQUAL(start(&p), "554 5.7.1 Access denied\r\n");
	CU_ASSERT_NOT_EQUAL(sess->state, SESSION_CLOSED);
	CU_ASSERT_STRING_EQUAL(feed("EHLO c\r\n"),
			       "503 5.7.1 Access denied\r\n");
	REPLY("MAIL FROM:<a@a.example>\r\n", "503 5.7.1 ");
	REPLY("NOOP\r\n", "250 ");
	REPLY("QUIT\r\n", "221 ");
	CU_ASSERT_EQUAL(sess->state, SESSION_CLOSED);

	/* A temporary refusal: 421 and gone. */
	p.reject = "451 4.7.1 Try again later";
	CU_ASSERT_STRING_EQUAL(start(&p), "421 4.7.1 Try again later\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_CLOSED);
	CU_ASSERT_STRING_EQUAL(feed_bytes("EHLO c\r\n", 8, NULL), "");
}

/* --- limits --------------------------------------------------------------- */

static void
test_session_limits_recipients(void)
{
	struct session_params p = default_params();
	char cmd[128];
	int i, stored;

	start(&p);
	REPLY("EHLO c\r\n", "250-");
	REPLY("MAIL FROM:<a@a.example>\r\n", "250 ");
	for (i = 0; i < 100; i++) {
		snprintf(cmd, sizeof(cmd), "RCPT TO:<user%d@b.example>\r\n",
			 i);
		REPLY(cmd, "250 2.1.5 ");
	}
	/* A repeat does not count; one more does not fit (RFC 5321
	 * 4.5.3.1.10: 452, and at least 100 must be accepted). */
	REPLY("RCPT TO:<user7@b.example>\r\n", "452 4.5.3 ");
	REPLY("RCPT TO:<user100@b.example>\r\n", "452 4.5.3 ");
	CU_ASSERT_EQUAL(sess->e.nrecipients, 100);
	REPLY("DATA\r\n", "354 ");
	REPLY("\r\nhi\r\n.\r\n", "250 ");
	for (i = 0, stored = 0; stub.recipients.data[i] != '\0'; i++)
		stored += stub.recipients.data[i] == '|';
	CU_ASSERT_EQUAL(stored, 100);
	CU_ASSERT_PTR_NOT_NULL(strstr(stub.recipients.data,
				      "|user99@b.example|"));
	CU_ASSERT_PTR_NULL(strstr(stub.headers.data, "\tfor <"));
}

/* A message of exactly len octets as the client sends it, CRLF ends. */
static void
message_of(struct buf *out, size_t len)
{
	size_t line = 0;

	buf_reset(out);
	buf_puts(out, "Subject: size\r\n\r\n");
	while (out->len + 2 < len) {
		buf_putc(out, (char)('a' + line % 26));
		if (++line == 70) {
			buf_puts(out, "\r\n");
			line = 0;
		}
	}
	if (out->len + 2 > len)
		buf_truncate(out, len - 2);
	buf_puts(out, "\r\n");
	CU_ASSERT_EQUAL(out->len, len);
}

static void
test_session_size_limit_at_and_over(void)
{
	struct session_params p = default_params();
	struct buf msg;

	buf_init(&msg);
	start(&p);
	REPLY("EHLO c\r\n", "250-");
	REPLY("MAIL FROM:<a@a.example> SIZE=10001\r\n", "552 5.3.4 ");
	CU_ASSERT_EQUAL(sess->state, SESSION_READY);
	REPLY("MAIL FROM:<a@a.example> SIZE=99999999999999999999999\r\n",
	      "552 5.3.4 ");
	REPLY("MAIL FROM:<a@a.example> SIZE=10000\r\n", "250 ");
	REPLY("RCPT TO:<b@b.example>\r\n", "250 ");
	REPLY("DATA\r\n", "354 ");
	message_of(&msg, 10000);
	CU_ASSERT_STRING_EQUAL(feed(msg.data), "");
	REPLY(".\r\n", "250 2.0.0 ");
	CU_ASSERT_EQUAL(stub.commits, 1);

	/* One octet more: refused at the end, nothing kept. */
	REPLY("MAIL FROM:<a@a.example>\r\n", "250 ");
	REPLY("RCPT TO:<b@b.example>\r\n", "250 ");
	REPLY("DATA\r\n", "354 ");
	message_of(&msg, 10001);
	CU_ASSERT_STRING_EQUAL(feed(msg.data), "");
	CU_ASSERT_EQUAL(sess->state, SESSION_DATA);
	REPLY(".\r\n", "552 5.3.4 ");
	CU_ASSERT_EQUAL(stub.commits, 1);
	CU_ASSERT_EQUAL(stub.aborts, 1);
	CU_ASSERT_EQUAL(sess->state, SESSION_READY);

	/* Far over: the rest is read and thrown away up to the end. */
	REPLY("MAIL FROM:<a@a.example>\r\n", "250 ");
	REPLY("RCPT TO:<b@b.example>\r\n", "250 ");
	REPLY("DATA\r\n", "354 ");
	message_of(&msg, 200000);
	CU_ASSERT_STRING_EQUAL(feed(msg.data), "");
	CU_ASSERT(stub.body.len <= 10000);
	REPLY(".\r\nNOOP\r\n", "552 5.3.4 ");
	CU_ASSERT_STRING_EQUAL(codes(output.data), "552 250");
	CU_ASSERT_EQUAL(stub.commits, 1);
	buf_free(&msg);
}

static void
test_session_refuses_nul_bytes(void)
{
	struct session_params p = default_params();
	static const char with_nul[] = "Subject: n\r\n\r\na\0b\r\n.\r\n";
	static const char cmd_nul[] = "NOOP\0x\r\n";
	size_t used;

	start_data(&p);
	CU_ASSERT_EQUAL(strncmp(feed_bytes(with_nul, sizeof(with_nul) - 1,
					   &used), "554 5.6.0 ", 10), 0);
	CU_ASSERT_EQUAL(used, sizeof(with_nul) - 1);
	CU_ASSERT_EQUAL(stub.commits, 0);
	CU_ASSERT_EQUAL(stub.aborts, 1);
	CU_ASSERT_EQUAL(strncmp(feed_bytes(cmd_nul, sizeof(cmd_nul) - 1, NULL),
				"500 5.5.2 ", 10), 0);
	REPLY("NOOP\r\n", "250 ");
}

static void
test_session_line_length_limits(void)
{
	struct session_params p = default_params();
	struct buf line;

	buf_init(&line);
	/* A text line of max_line_length octets is fine, one more is not. */
	start_data(&p);
	buf_puts(&line, "\r\n");
	while (line.len < 2 + 1000)
		buf_putc(&line, 'x');
	buf_puts(&line, "\r\n.\r\n");
	REPLY(line.data, "250 ");
	CU_ASSERT_EQUAL(stub.body.len, 1001);
	stub.commits = 0;
	start_data(&p);
	buf_reset(&line);
	buf_puts(&line, "\r\n");
	while (line.len < 2 + 1001)
		buf_putc(&line, 'x');
	buf_puts(&line, "\r\n.\r\n");
	REPLY(line.data, "554 5.6.0 ");
	CU_ASSERT_EQUAL(stub.commits, 0);
	CU_ASSERT_EQUAL(stub.aborts, 1);

	/* A command line over 1024 octets: 500, and the next one works,
	 * also when the long line comes in pieces. */
	start(&p);
	buf_reset(&line);
	buf_puts(&line, "NOOP ");
	while (line.len < 2000)
		buf_putc(&line, 'y');
	CU_ASSERT_STRING_EQUAL(codes(feed(line.data)), "500");
	CU_ASSERT_PTR_NOT_NULL(strstr(output.data, "500 5.5.2 "));
	CU_ASSERT_STRING_EQUAL(feed(line.data), "");
	CU_ASSERT_STRING_EQUAL(feed("yyy\r\n"), "");
	REPLY("NOOP\r\n", "250 ");
	buf_puts(&line, "\r\nNOOP\r\n");
	CU_ASSERT_STRING_EQUAL(codes(feed(line.data)), "500 250");
	buf_free(&line);
}

static void
test_session_hop_limit(void)
{
	struct session_params p = default_params();

	start_data(&p);
	REPLY("Received: 1\r\nReceived: 2\r\nReceived: 3\r\n"
	      "Received: 4\r\n\r\nbody\r\n.\r\n", "250 ");
	stub.commits = 0;
	start_data(&p);
	REPLY("Received: 1\r\nReceived: 2\r\nreceived: 3\r\n"
	      "Received: 4\r\nRECEIVED: 5\r\n\r\nbody\r\n.\r\n", "554 5.4.6 ");
	CU_ASSERT_EQUAL(stub.commits, 0);
	CU_ASSERT_EQUAL(stub.aborts, 1);
}

/* --- failures ------------------------------------------------------------- */

static void
test_session_store_failures_are_temporary(void)
{
	struct session_params p = default_params();

	stub.fail_begin = "4.3.1";
	start_transaction(&p);
	REPLY("DATA\r\n", "452 4.3.1 ");
	CU_ASSERT_EQUAL(sess->state, SESSION_RCPT);
	stub.fail_begin = "4.3.0";
	REPLY("DATA\r\n", "451 4.3.0 ");

	stub.fail_begin = NULL;
	stub.fail_write = "4.3.1";
	start_data(&p);
	REPLY("Subject: s\r\n\r\nbody\r\n.\r\n", "452 4.3.1 ");
	CU_ASSERT_EQUAL(stub.commits, 0);
	CU_ASSERT_EQUAL(stub.accepted, 0);
	CU_ASSERT_EQUAL(stub.aborts, 1);
	CU_ASSERT_EQUAL(sess->state, SESSION_READY);

	stub.fail_write = NULL;
	stub.fail_commit = "4.3.1";
	start_data(&p);
	REPLY("Subject: s\r\n\r\nbody\r\n.\r\n", "452 4.3.1 ");
	stub.fail_commit = "4.2.0";
	start_data(&p);
	REPLY("Subject: s\r\n\r\nbody\r\n.\r\n", "451 4.3.0 ");
	CU_ASSERT_EQUAL(stub.accepted, 0);
	CU_ASSERT_EQUAL(sess->messages, 0);
}

static void
test_session_eof_timeout_and_shutdown_drop_the_message(void)
{
	struct session_params p = default_params();

	start_data(&p);
	feed("Subject: s\r\n\r\nhalf a mess");
	session_eof(sess);
	CU_ASSERT_EQUAL(sess->state, SESSION_CLOSED);
	CU_ASSERT_EQUAL(stub.aborts, 1);
	CU_ASSERT_EQUAL(stub.commits, 0);

	start_data(&p);
	feed("Subject: s\r\n\r\nhalf");
	session_timeout(sess);
	take_output();
	CU_ASSERT_STRING_EQUAL(output.data,
			       "421 4.4.2 mx.test Error: timeout exceeded\r\n");
	CU_ASSERT_EQUAL(sess->state, SESSION_CLOSED);
	CU_ASSERT_EQUAL(stub.aborts, 2);

	start(&p);
	session_shutdown(sess);
	take_output();
	CU_ASSERT_EQUAL(strncmp(output.data, "421 4.3.2 ", 10), 0);
	CU_ASSERT_EQUAL(sess->state, SESSION_CLOSED);
	CU_ASSERT_EQUAL(stub.commits, 0);
}

static void
test_session_discard_accepts_and_drops(void)
{
	struct session_params p = default_params();

	p.discard = 1;
	start_data(&p);
	REPLY("Subject: s\r\n\r\nbody\r\n.\r\n", "250 2.0.0 ");
	CU_ASSERT_EQUAL(stub.commits, 0);
	CU_ASSERT_EQUAL(stub.accepted, 0);
	CU_ASSERT_EQUAL(stub.aborts, 1);
}

static void
test_session_replies_are_one_line_each(void)
{
	struct session_params p = default_params();

	/* A client name with a line break cannot add a reply line. */
	p.client_name = "evil\r\n250 fake";
	start(&p);
	CU_ASSERT_STRING_EQUAL(codes(feed("HELO c\r\n")), "250");
	CU_ASSERT_PTR_NULL(strstr(output.data, "\r\n250 fake"));
	CU_ASSERT_STRING_EQUAL(codes(feed("EHLO c\r\n")), "250");
	CU_ASSERT_PTR_NULL(strstr(output.data, "\r\n250 fake"));
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_session_greets_and_answers_helo_and_ehlo),
	UNIT_TEST(test_session_needs_helo_before_mail),
	UNIT_TEST(test_session_starttls_only_when_offered_and_only_once),
	UNIT_TEST(test_session_starttls_with_a_partial_line_after_it),
	UNIT_TEST(test_session_accepts_a_message),
	UNIT_TEST(test_session_quit_leaves_the_rest_unused),
	UNIT_TEST(test_session_unstuffs_leading_dots),
	UNIT_TEST(test_session_only_crlf_dot_crlf_ends_data),
	UNIT_TEST(test_session_stores_bare_lf_as_line_break_and_keeps_bare_cr),
	UNIT_TEST(test_session_header_section_without_empty_line),
	UNIT_TEST(test_session_pipelined_commands_answer_in_order),
	UNIT_TEST(test_session_mail_and_rcpt_syntax),
	UNIT_TEST(test_session_passes_on_the_checks_replies),
	UNIT_TEST(test_session_other_commands),
	UNIT_TEST(test_session_too_many_errors_close_the_session),
	UNIT_TEST(test_session_refused_client),
	UNIT_TEST(test_session_limits_recipients),
	UNIT_TEST(test_session_size_limit_at_and_over),
	UNIT_TEST(test_session_refuses_nul_bytes),
	UNIT_TEST(test_session_line_length_limits),
	UNIT_TEST(test_session_hop_limit),
	UNIT_TEST(test_session_store_failures_are_temporary),
	UNIT_TEST(test_session_eof_timeout_and_shutdown_drop_the_message),
	UNIT_TEST(test_session_discard_accepts_and_drops),
	UNIT_TEST(test_session_replies_are_one_line_each),
};

void
test_session_register(void)
{
	fixture_suite_setup("session", tests, UNIT_COUNT(tests), setup,
			    teardown);
}
