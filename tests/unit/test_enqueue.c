/*
 * enqueue: header lookups, address qualification, the runner's backoff,
 * and whole submissions read from memory streams into a private queue:
 * where a lone dot ends the input (and where it does not), messages
 * without a header section, -t, and the limits that refuse a message
 * without leaving anything of it in the queue.
 */
#include <CUnit/CUnit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "enqueue.h"
#include "submit.h"
#include "queue.h"
#include "runner.h"
#include "suites.h"

#define HOST "host.example"

static char *top;		/* the test's private directory */
static char *qdir;		/* top/queue */
static struct config cfg;
static int have_cfg;

/* mail.conf in top with extra (a line or ""), loaded into cfg. */
static int
load_config(const char *extra)
{
	struct buf path, text;
	struct status st;
	int rc;

	if (have_cfg)
		config_free(&cfg);
	have_cfg = 0;
	buf_init(&path);
	buf_init(&text);
	buf_printf(&path, "%s/mail.conf", top);
	buf_printf(&text, "hostname = " HOST "\nqueue_dir = queue\n"
			  "statistics = statistics\nlog = maillog\n%s\n",
		   extra);
	rc = fixture_write_text(path.data, text.data);
	if (rc == 0)
		rc = config_load(&cfg, path.data, 1, &st);
	have_cfg = rc == 0;
	buf_free(&path);
	buf_free(&text);
	return rc;
}

static void
setup(void)
{
	struct buf path;

	top = fixture_tmpdir();
	buf_init(&path);
	buf_printf(&path, "%s/queue", top != NULL ? top : "/nonexistent");
	qdir = buf_steal(&path);
	buf_free(&path);
	if (top != NULL) {
		mkdir(qdir, 0700);
		load_config("");
	}
}

static void
teardown(void)
{
	if (have_cfg)
		config_free(&cfg);
	have_cfg = 0;
	if (top != NULL)
		fixture_rmtree(top);
	free(top);
	free(qdir);
	top = qdir = NULL;
}

struct submission {
	int ignore_dots;
	int extract;
	const char *const *rcpts;
	size_t nrcpts;
};

static const char *const to_alice[] = { "alice" };
static const struct submission plain = { 0, 0, to_alice, 1 };
static const struct submission dots_ignored = { 1, 0, to_alice, 1 };

/* Queues len bytes of text as sendmail would; returns enqueue_message's
 * result, with the id in id and the status in st. */
static int
enqueue_text(const struct submission *how, const char *text, size_t len,
	     char id[QID_SIZE], struct status *st)
{
	struct enqueue_request req;
	size_t nrcpts = 0;
	FILE *in;
	int rc;

	CU_ASSERT_FATAL(have_cfg);
	in = fmemopen((void *)text, len, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	memset(&req, 0, sizeof(req));
	req.cfg = &cfg;
	req.sender = "sender@x.org";
	req.login = "tester";
	req.full_name = "Test Er";
	req.recipients = how->rcpts;
	req.nrecipients = how->nrcpts;
	req.extract_recipients = how->extract;
	req.ignore_dots = how->ignore_dots;
	id[0] = '\0';
	rc = enqueue_message(&req, in, id, &nrcpts, st);
	fclose(in);
	return rc;
}

/* The df of id, or "<none>". */
static void
read_df(const char *id, struct buf *out)
{
	struct buf path;

	buf_init(&path);
	buf_printf(&path, "%s/df%s", qdir, id);
	if (fixture_read_file(path.data, out) < 0)
		buf_puts(out, "<none>");
	buf_free(&path);
}

/* Queues text (a C string) and checks that the df holds exactly body. */
static void
body_is(const struct submission *how, const char *text, const char *body)
{
	char id[QID_SIZE];
	struct status st;
	struct buf df;

	CU_ASSERT_EQUAL_FATAL(enqueue_text(how, text, strlen(text), id, &st), 0);
	buf_init(&df);
	read_df(id, &df);
	if (strcmp(df.data, body) != 0)
		fprintf(stderr, "\ninput %s\ndf %s\nwanted %s\n", text,
			df.data, body);
	CU_ASSERT_STRING_EQUAL(df.data, body);
	buf_free(&df);
}

/* --- submit_header_value ---------------------------------------------- */

static void
value_is(const char *headers, size_t hlen, const char *name,
	 const char *expected)
{
	size_t len = 99;
	const char *v = submit_header_value(headers, hlen, name, &len);

	if (expected == NULL) {
		CU_ASSERT_PTR_NULL(v);
		return;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	CU_ASSERT_EQUAL(len, strlen(expected));
	CU_ASSERT_EQUAL(memcmp(v, expected, len), 0);
}

static void
test_submit_header_value_finds_the_first_field(void)
{
	static const char h[] = "Subject: hi there\n"
				"Message-ID:   <a@b.org>\r\n"
				"Subjectless: no\n"
				" Message-ID: <folded@b.org>\n"
				"X-Empty:\n"
				"subject: second\n"
				"To:\tz@y.org";

	value_is(h, sizeof(h) - 1, "Subject", "hi there");
	value_is(h, sizeof(h) - 1, "subject", "hi there");
	value_is(h, sizeof(h) - 1, "Message-ID", "<a@b.org>");
	value_is(h, sizeof(h) - 1, "MESSAGE-ID", "<a@b.org>");
	value_is(h, sizeof(h) - 1, "Subjectless", "no");
	value_is(h, sizeof(h) - 1, "X-Empty", "");
	value_is(h, sizeof(h) - 1, "To", "z@y.org");
	value_is(h, sizeof(h) - 1, "Cc", NULL);
	value_is(h, sizeof(h) - 1, "Subj", NULL);
	value_is("", 0, "Subject", NULL);
}

static void
test_submit_header_value_stays_within_the_length(void)
{
	static const char h[] = "To: abcdef\nCc: x@y\n";

	/* Cut inside the first value: only what is inside counts. */
	value_is(h, 6, "To", "ab");
	value_is(h, 3, "To", "");
	value_is(h, 2, "To", NULL);
	value_is(h, 11, "Cc", NULL);
	value_is(h, sizeof(h) - 1, "Cc", "x@y");
}

/* --- enqueue_qualify --------------------------------------------------- */

static void
qualified_is(const char *addr, size_t len, const char *expected)
{
	struct buf out;

	buf_init(&out);
	buf_puts(&out, "[");
	enqueue_qualify(addr, len, HOST, &out);
	CU_ASSERT_STRING_EQUAL(out.data, expected);
	buf_free(&out);
}

static void
test_enqueue_qualify_adds_the_host_to_bare_names(void)
{
	qualified_is("alice", 5, "[alice@" HOST);
	qualified_is("bob@x.org", 9, "[bob@x.org");
	qualified_is("\"a b\"@x.org", 11, "[\"a b\"@x.org");
	/* Only len bytes are looked at: the '@' after them does not count. */
	qualified_is("carol@x.org", 5, "[carol@" HOST);
	qualified_is("postmaster", 10, "[postmaster@" HOST);
}

/* --- runner_backoff ---------------------------------------------------- */

static void
test_runner_backoff_doubles_from_min_to_max(void)
{
	struct config c;

	memset(&c, 0, sizeof(c));
	c.min_backoff = 300;
	c.max_backoff = 3600;
	CU_ASSERT_EQUAL(runner_backoff(&c, 0), 300);
	CU_ASSERT_EQUAL(runner_backoff(&c, 1), 300);
	CU_ASSERT_EQUAL(runner_backoff(&c, 2), 600);
	CU_ASSERT_EQUAL(runner_backoff(&c, 3), 1200);
	CU_ASSERT_EQUAL(runner_backoff(&c, 4), 2400);
	CU_ASSERT_EQUAL(runner_backoff(&c, 5), 3600);
	CU_ASSERT_EQUAL(runner_backoff(&c, 6), 3600);
	CU_ASSERT_EQUAL(runner_backoff(&c, 1000), 3600);
	CU_ASSERT_EQUAL(runner_backoff(&c, 0xffffffffu), 3600);

	/* A maximum that is no power-of-two multiple is still the cap. */
	c.min_backoff = 60;
	c.max_backoff = 150;
	CU_ASSERT_EQUAL(runner_backoff(&c, 1), 60);
	CU_ASSERT_EQUAL(runner_backoff(&c, 2), 120);
	CU_ASSERT_EQUAL(runner_backoff(&c, 3), 150);
	CU_ASSERT_EQUAL(runner_backoff(&c, 40), 150);

	/* A minimum above the maximum: the maximum. */
	c.min_backoff = 7200;
	c.max_backoff = 3600;
	CU_ASSERT_EQUAL(runner_backoff(&c, 1), 3600);
	CU_ASSERT_EQUAL(runner_backoff(&c, 9), 3600);

	/* Large values do not overflow. */
	c.min_backoff = 0x80000000u;
	c.max_backoff = 0xffffffffu;
	CU_ASSERT_EQUAL(runner_backoff(&c, 1), 0x80000000u);
	CU_ASSERT_EQUAL(runner_backoff(&c, 2), 0xffffffffu);
	CU_ASSERT_EQUAL(runner_backoff(&c, 3), 0xffffffffu);
}

/* --- enqueue_message: the end of the input ----------------------------- */

static void
test_enqueue_lone_dot_ends_the_input(void)
{
	body_is(&plain, "Subject: a\n\nline\n.\nafter\n", "line\n");
	body_is(&plain, "Subject: a\r\n\r\nline\r\n.\r\nafter\r\n",
		"line\r\n");
	/* At the very end, with or without its line end. */
	body_is(&plain, "Subject: a\n\nline\n.", "line\n");
	body_is(&plain, "Subject: a\n\nline\n.\r", "line\n");
	body_is(&plain, "Subject: a\n\n.\n", "");
	/* Only a dot alone on its line. */
	body_is(&plain, "Subject: a\n\n..\n.x\nx.\n. \n.\rx\nend\n",
		"..\n.x\nx.\n. \n.\rx\nend\n");
}

static void
test_enqueue_lone_dot_in_the_header_ends_the_input(void)
{
	static const char text[] = "Subject: cut\n.\nX-Not: read\n\nbody\n";
	char id[QID_SIZE];
	struct status st;
	struct queue_entry e;
	struct buf df;

	CU_ASSERT_EQUAL_FATAL(enqueue_text(&plain, text, sizeof(text) - 1, id,
					   &st), 0);
	buf_init(&df);
	read_df(id, &df);
	CU_ASSERT_STRING_EQUAL(df.data, "");
	buf_free(&df);
	CU_ASSERT_EQUAL_FATAL(queue_read(qdir, id, &e, &st), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.headers.data, "\nSubject: cut\n"));
	CU_ASSERT_PTR_NULL(strstr(e.headers.data, "X-Not"));
	queue_entry_free(&e);
}

static void
test_enqueue_ignore_dots_keeps_every_line(void)
{
	body_is(&dots_ignored, "Subject: a\n\nline\n.\nafter\n..\n.",
		"line\n.\nafter\n..\n.");
	body_is(&dots_ignored, "Subject: a\r\n\r\n.\r\nx\r\n",
		".\r\nx\r\n");
	/* In the header too: the dot line is a (bad) header line there. */
	body_is(&dots_ignored, "Subject: a\n.\n\nbody\n", "body\n");
}

static void
test_enqueue_body_larger_than_the_copy_buffer_is_whole(void)
{
	struct buf text;
	const char *body;

	buf_init(&text);
	fixture_big_message(&text, 20000);
	CU_ASSERT_FATAL(text.len > 3 * 65536);
	body = strstr(text.data, "\n\n") + 2;
	body_is(&plain, text.data, body);
	/* A dot line far beyond the first buffer still ends it. */
	buf_puts(&text, ".\nnot this\n");
	body = strstr(text.data, "\n\n") + 2;
	CU_ASSERT_FATAL(strstr(body, ".\nnot this\n") != NULL);
	{
		struct buf want;

		buf_init(&want);
		buf_append(&want, body, strlen(body) - 11);
		body_is(&plain, text.data, want.data);
		buf_free(&want);
	}
	buf_free(&text);
}

/* --- enqueue_message: the header section ------------------------------- */

static void
test_enqueue_message_without_header_section(void)
{
	static const char text[] = "just some text\nand: more\n\nbody\n";
	char id[QID_SIZE];
	struct status st;
	struct queue_entry e;

	body_is(&plain, text, text);
	CU_ASSERT_EQUAL_FATAL(enqueue_text(&plain, text, sizeof(text) - 1, id,
					   &st), 0);
	CU_ASSERT_EQUAL_FATAL(queue_read(qdir, id, &e, &st), 0);
	CU_ASSERT_PTR_NULL(strstr(e.headers.data, "just some"));
	CU_ASSERT_PTR_NULL(strstr(e.headers.data, "and: more"));
	CU_ASSERT_EQUAL(strncmp(e.headers.data, "Received: (from tester@"
						"localhost)\n", 34), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.headers.data, "\nDate: "));
	CU_ASSERT_PTR_NOT_NULL(strstr(e.headers.data, "\nMessage-ID: <"));
	CU_ASSERT_PTR_NOT_NULL(strstr(e.headers.data,
				      "\nFrom: \"Test Er\" <tester@" HOST
				      ">\n"));
	CU_ASSERT_EQUAL(e.body_size, sizeof(text) - 1);
	queue_entry_free(&e);

	/* A lone dot as the very first line: an empty message. */
	body_is(&plain, ".\nrest\n", "");
	/* A body that is one line without header and line end. */
	body_is(&plain, "no header here", "no header here");
}

static void
test_enqueue_header_only_message_has_an_empty_body(void)
{
	char id[QID_SIZE];
	struct status st;
	struct queue_entry e;
	const char text[] = "Subject: only\nMessage-ID: <only@x.org>\n";

	body_is(&plain, text, "");
	CU_ASSERT_EQUAL_FATAL(enqueue_text(&plain, text, sizeof(text) - 1, id,
					   &st), 0);
	CU_ASSERT_EQUAL_FATAL(queue_read(qdir, id, &e, &st), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.headers.data, "\nSubject: only\n"));
	CU_ASSERT_STRING_EQUAL(e.message_id, "<only@x.org>");
	CU_ASSERT_STRING_EQUAL(e.sender, "sender@x.org");
	CU_ASSERT_EQUAL(e.body_size, 0);
	queue_entry_free(&e);
}

static void
test_enqueue_extracts_recipients_with_t(void)
{
	static const char text[] =
		"To: a@x.org, Bee <b@y.org>\n"
		"Cc: carol,\n  \"D. Dee\" <d@z.org>\n"
		"Bcc: hidden@w.org\n"
		"Subject: many\n\nbody\n";
	static const char *const extra[] = { "e@v.org", "A@X.ORG" };
	const struct submission with_t = { 0, 1, extra, 2 };
	static const char *const expected[] = {
		"a@x.org", "b@y.org", "carol@" HOST, "d@z.org", "hidden@w.org",
		"e@v.org",
	};
	char id[QID_SIZE];
	struct status st;
	struct queue_entry e;
	size_t i;

	CU_ASSERT_EQUAL_FATAL(enqueue_text(&with_t, text, sizeof(text) - 1, id,
					   &st), 0);
	CU_ASSERT_EQUAL_FATAL(queue_read(qdir, id, &e, &st), 0);
	CU_ASSERT_EQUAL_FATAL(e.nrecipients, 6);
	for (i = 0; i < 6; i++) {
		CU_ASSERT_STRING_EQUAL(e.recipients[i].address, expected[i]);
		CU_ASSERT_EQUAL(e.recipients[i].state, QUEUE_QUEUED);
	}
	CU_ASSERT_PTR_NULL(strstr(e.headers.data, "Bcc"));
	CU_ASSERT_PTR_NULL(strstr(e.headers.data, "hidden"));
	CU_ASSERT_PTR_NOT_NULL(strstr(e.headers.data, "\nTo: a@x.org, Bee "
						      "<b@y.org>\n"));
	queue_entry_free(&e);
}

static void
test_enqueue_without_t_ignores_header_recipients(void)
{
	static const char text[] = "To: someone@x.org\nSubject: s\n\nbody\n";
	char id[QID_SIZE];
	struct status st;
	struct queue_entry e;

	CU_ASSERT_EQUAL_FATAL(enqueue_text(&plain, text, sizeof(text) - 1, id,
					   &st), 0);
	CU_ASSERT_EQUAL_FATAL(queue_read(qdir, id, &e, &st), 0);
	CU_ASSERT_EQUAL_FATAL(e.nrecipients, 1);
	CU_ASSERT_STRING_EQUAL(e.recipients[0].address, "alice@" HOST);
	queue_entry_free(&e);
}

/* --- enqueue_message: refusals leave nothing behind -------------------- */

static void
refused(const struct submission *how, const char *text, size_t len,
	int exit_code)
{
	char id[QID_SIZE];
	struct status st;

	CU_ASSERT_EQUAL(enqueue_text(how, text, len, id, &st), -1);
	CU_ASSERT_EQUAL(st.exit_code, exit_code);
	CU_ASSERT(st.text[0] != '\0');
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 0);
}

static void
test_enqueue_refuses_a_header_section_over_the_limit(void)
{
	struct buf text;
	int i;

	buf_init(&text);
	for (i = 0; text.len <= 1024 * 1024; i++)
		buf_printf(&text, "X-Filler-%06d: %0100d\n", i, i);
	buf_puts(&text, "\nbody\n");
	refused(&plain, text.data, text.len, EX_DATAERR);
	/* One long line without a line end, too. */
	buf_reset(&text);
	buf_puts(&text, "Subject: ");
	while (text.len <= 1024 * 1024 + 10)
		buf_puts(&text, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	refused(&plain, text.data, text.len, EX_DATAERR);
	buf_free(&text);
}

static void
test_enqueue_refuses_a_message_without_recipients(void)
{
	static const char text[] = "Subject: s\n\nbody\n";
	const struct submission nobody = { 0, 0, NULL, 0 };
	const struct submission nobody_t = { 0, 1, NULL, 0 };

	refused(&nobody, text, sizeof(text) - 1, EX_USAGE);
	refused(&nobody_t, text, sizeof(text) - 1, EX_USAGE);
}

static void
test_enqueue_size_limit_counts_header_and_body(void)
{
	struct buf text;

	CU_ASSERT_EQUAL_FATAL(load_config("max_message_size = 1000"), 0);
	buf_init(&text);
	/* The body alone is too large. */
	buf_puts(&text, "Subject: s\n\n");
	while (text.len < 1200)
		buf_puts(&text, "0123456789\n");
	refused(&plain, text.data, text.len, EX_DATAERR);
	/* The header alone is. */
	buf_reset(&text);
	while (text.len < 1100)
		buf_puts(&text, "X-Pad: 0123456789012345678901234567890123\n");
	buf_puts(&text, "\nsmall\n");
	refused(&plain, text.data, text.len, EX_DATAERR);
	/* Neither is, but both are: the client's octets count. */
	buf_reset(&text);
	while (text.len < 600)
		buf_puts(&text, "X-Pad: 0123456789012345678901234567890123\n");
	buf_puts(&text, "\n");
	while (text.len < 1100)
		buf_puts(&text, "0123456789\n");
	refused(&plain, text.data, text.len, EX_DATAERR);
	/* Exactly at the limit: taken. */
	buf_reset(&text);
	buf_puts(&text, "Subject: s\n\n");
	while (text.len < 1000)
		buf_putc(&text, 'x');
	CU_ASSERT_EQUAL(text.len, 1000);
	body_is(&plain, text.data, text.data + 12);
	buf_free(&text);
}

static void
test_enqueue_refuses_too_many_hops(void)
{
	static const char three[] = "Received: a\nReceived: b\nReceived: c\n"
				    "Subject: loop\n\nbody\n";
	static const char two[] = "Received: a\nreceived: b\n\nbody\n";

	CU_ASSERT_EQUAL_FATAL(load_config("max_hops = 3"), 0);
	refused(&plain, three, sizeof(three) - 1, EX_DATAERR);
	body_is(&plain, two, "body\n");
}

static void
test_enqueue_refuses_too_many_recipients(void)
{
	static const char text[] = "Subject: s\n\nbody\n";
	const char *many[101];
	char names[101][16];
	struct submission how = { 0, 0, many, 101 };
	size_t i;

	CU_ASSERT_EQUAL_FATAL(load_config("max_recipients = 100"), 0);
	for (i = 0; i < 101; i++) {
		snprintf(names[i], sizeof(names[i]), "u%zu@x.org", i);
		many[i] = names[i];
	}
	refused(&how, text, sizeof(text) - 1, EX_DATAERR);
	how.nrcpts = 100;
	body_is(&how, text, "body\n");
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_submit_header_value_finds_the_first_field),
	UNIT_TEST(test_submit_header_value_stays_within_the_length),
	UNIT_TEST(test_enqueue_qualify_adds_the_host_to_bare_names),
	UNIT_TEST(test_runner_backoff_doubles_from_min_to_max),
	UNIT_TEST(test_enqueue_lone_dot_ends_the_input),
	UNIT_TEST(test_enqueue_lone_dot_in_the_header_ends_the_input),
	UNIT_TEST(test_enqueue_ignore_dots_keeps_every_line),
	UNIT_TEST(test_enqueue_body_larger_than_the_copy_buffer_is_whole),
	UNIT_TEST(test_enqueue_message_without_header_section),
	UNIT_TEST(test_enqueue_header_only_message_has_an_empty_body),
	UNIT_TEST(test_enqueue_extracts_recipients_with_t),
	UNIT_TEST(test_enqueue_without_t_ignores_header_recipients),
	UNIT_TEST(test_enqueue_refuses_a_header_section_over_the_limit),
	UNIT_TEST(test_enqueue_refuses_a_message_without_recipients),
	UNIT_TEST(test_enqueue_size_limit_counts_header_and_body),
	UNIT_TEST(test_enqueue_refuses_too_many_hops),
	UNIT_TEST(test_enqueue_refuses_too_many_recipients),
};

void
test_enqueue_register(void)
{
	fixture_suite_setup("enqueue", tests, UNIT_COUNT(tests), setup,
			    teardown);
}
