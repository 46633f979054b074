/*
 * Unit tests for smtpd/submit.c: address lists and submission headers.
 */
#include <CUnit/CUnit.h>

#include <string.h>

#include "submit.h"
#include "suites.h"

static void
collect(const char *addr, size_t len, void *arg)
{
	struct buf *out = arg;

	buf_append(out, addr, len);
	buf_putc(out, '|');
}

static void
list_is(const char *list, const char *expected)
{
	struct buf out;

	buf_init(&out);
	submit_addresses(list, strlen(list), collect, &out);
	CU_ASSERT_STRING_EQUAL(out.data, expected);
	buf_free(&out);
}

static void
test_submit_addresses_of_every_shape(void)
{
	list_is("alice@example.org", "alice@example.org|");
	list_is(" Alice <alice@example.org>, bob@example.net ",
		"alice@example.org|bob@example.net|");
	list_is("\"Doe, John\" <john@x.org>, jane@x.org (Jane, Doe)",
		"john@x.org|jane@x.org|");
	list_is("team: a@x.org, b@x.org;, c@x.org",
		"a@x.org|b@x.org|c@x.org|");
	list_is("undisclosed-recipients:;", "");
	list_is("<@relay.example:user@x.org>", "user@x.org|");
	list_is("\"a b\"@x.org", "\"a b\"@x.org|");
	list_is("bob", "bob|");
	list_is("", "");
	list_is("  ,  , ", "");
	list_is("x@y (comment with <angle> and, comma)", "x@y|");
}

static const struct submit_header opts = {
	.from_address = "alice@host.example",
	.full_name = "Alice \"Al\" Example",
	.hostname = "host.example",
	.queue_id = "6AOB0tEOod1va3",
	.now = 1700000000,
	.extract_recipients = 1,
};

static void
test_submit_header_adds_and_drops(void)
{
	const char *in = "To: bob@x.org, Carol <carol@x.org>\n"
			 "Bcc: secret@x.org,\n  other@x.org\n"
			 "Return-Path: <forged@x.org>\n"
			 "Subject: hi\n\n";
	struct buf out, rcpts;

	buf_init(&out);
	buf_init(&rcpts);
	CU_ASSERT_EQUAL(submit_header(&opts, in, strlen(in), &out, collect,
				      &rcpts), 0);
	CU_ASSERT_STRING_EQUAL(rcpts.data, "bob@x.org|carol@x.org|"
					   "secret@x.org|other@x.org|");
	CU_ASSERT_PTR_NULL(strstr(out.data, "Bcc"));
	CU_ASSERT_PTR_NULL(strstr(out.data, "secret"));
	CU_ASSERT_PTR_NULL(strstr(out.data, "Return-Path"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "To: bob@x.org, Carol "
					       "<carol@x.org>\nSubject: hi\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "\nDate: "));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "\nMessage-ID: "
					       "<6AOB0tEOod1va3@host.example>\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "\nFrom: \"Alice \\\"Al\\\" "
					       "Example\" <alice@host.example>"
					       "\n"));
	buf_free(&out);
	buf_free(&rcpts);
}

static void
test_submit_header_keeps_what_is_there(void)
{
	const char *in = "From: me@x.org\nDate: Mon, 1 Jan 2024 00:00:00 "
			 "+0000\nMessage-ID: <a@b>\nTo: z@x.org\n";
	struct buf out, rcpts;
	struct submit_header o = opts;

	o.extract_recipients = 0;
	buf_init(&out);
	buf_init(&rcpts);
	submit_header(&o, in, strlen(in), &out, collect, &rcpts);
	CU_ASSERT_STRING_EQUAL(out.data, in);
	CU_ASSERT_STRING_EQUAL(rcpts.data, "");
	buf_free(&out);
	buf_free(&rcpts);
}

static void
test_submit_header_resent_fields_win(void)
{
	const char *in = "To: original@x.org\nResent-To: new@x.org\n"
			 "Resent-Bcc: hidden@x.org\n";
	struct buf out, rcpts;

	buf_init(&out);
	buf_init(&rcpts);
	submit_header(&opts, in, strlen(in), &out, collect, &rcpts);
	CU_ASSERT_STRING_EQUAL(rcpts.data, "new@x.org|hidden@x.org|");
	CU_ASSERT_PTR_NULL(strstr(out.data, "hidden"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "To: original@x.org\n"));
	buf_free(&out);
	buf_free(&rcpts);
}

static void
test_submit_header_counts_lines_that_are_no_fields(void)
{
	const char *in = "To: a@x.org\nthis is not a field\n";
	struct buf out, rcpts;

	buf_init(&out);
	buf_init(&rcpts);
	CU_ASSERT_EQUAL(submit_header(&opts, in, strlen(in), &out, collect,
				      &rcpts), 1);
	buf_free(&out);
	buf_free(&rcpts);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_submit_addresses_of_every_shape),
	UNIT_TEST(test_submit_header_adds_and_drops),
	UNIT_TEST(test_submit_header_keeps_what_is_there),
	UNIT_TEST(test_submit_header_resent_fields_win),
	UNIT_TEST(test_submit_header_counts_lines_that_are_no_fields),
};

void
test_submit_register(void)
{
	fixture_suite("submit", tests, UNIT_COUNT(tests));
}
