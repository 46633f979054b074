/*
 * maillog: the file target's line layout, one line per call, delay= texts.
 */
#include <CUnit/CUnit.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "maillog.h"
#include "suites.h"

/* "Mon dd HH:MM:SS host prog[pid]: text", sendmail's layout. */
static int
line_matches(const char *line, size_t len, const char *host,
	     const char *prog, const char *text)
{
	regex_t re;
	struct buf pattern, copy;
	int ok;

	buf_init(&pattern);
	buf_printf(&pattern,
		   "^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
		   "[ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] %s %s\\[%ld\\]: ",
		   host, prog, (long)getpid());
	if (regcomp(&re, pattern.data, REG_EXTENDED | REG_NOSUB) != 0) {
		buf_free(&pattern);
		return 0;
	}
	buf_init(&copy);
	buf_append(&copy, line, len);
	ok = regexec(&re, copy.data, 0, NULL, 0) == 0;
	/* What follows the prefix is the text, exactly. */
	if (ok) {
		const char *colon = strstr(copy.data, "]: ");

		ok = colon != NULL && strcmp(colon + 3, text) == 0;
	}
	regfree(&re);
	buf_free(&pattern);
	buf_free(&copy);
	return ok;
}

static void
test_maillog_writes_one_line_per_call_in_sendmail_layout(void)
{
	char *dir = fixture_tmpdir();
	struct buf path, content;
	struct status st;
	const char *p, *nl;
	int lines = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	buf_init(&path);
	buf_init(&content);
	buf_printf(&path, "%s/maillog", dir);
	CU_ASSERT_FATAL(maillog_open(path.data, "deliver", "mx.example.org",
				     &st) == 0);
	maillog("%s: to=<%s>, stat=%s", "6AOAmnRk3xTq0v", "bob@example.org",
		"Sent");
	maillog("second: reason=%s", "line one\nline two\r\nend");
	maillog_close();
	maillog("after close: not written");
	CU_ASSERT_EQUAL(fixture_read_file(path.data, &content), 0);
	for (p = content.data; (nl = memchr(p, '\n',
					    content.len -
						    (size_t)(p - content.data)));
	     p = nl + 1) {
		lines++;
		if (lines == 1)
			CU_ASSERT_TRUE(line_matches(
				p, (size_t)(nl - p), "mx", "deliver",
				"6AOAmnRk3xTq0v: to=<bob@example.org>, "
				"stat=Sent"));
		if (lines == 2)
			CU_ASSERT_TRUE(line_matches(
				p, (size_t)(nl - p), "mx", "deliver",
				"second: reason=line one line two  end"));
	}
	CU_ASSERT_EQUAL(lines, 2);
	CU_ASSERT_EQUAL((size_t)(p - content.data), content.len);
	buf_free(&content);
	buf_free(&path);
	CU_ASSERT_EQUAL(fixture_rmtree(dir), 0);
	free(dir);
}

static void
test_maillog_appends_to_an_existing_file(void)
{
	char *dir = fixture_tmpdir();
	struct buf path, content;
	struct status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	buf_init(&path);
	buf_init(&content);
	buf_printf(&path, "%s/maillog", dir);
	CU_ASSERT_FATAL(fixture_write_file(path.data, "old line\n", 9) == 0);
	CU_ASSERT_FATAL(maillog_open(path.data, "smtpd", "relay", &st) == 0);
	maillog("new line");
	maillog_close();
	CU_ASSERT_EQUAL(fixture_read_file(path.data, &content), 0);
	CU_ASSERT_EQUAL(strncmp(content.data, "old line\n", 9), 0);
	CU_ASSERT_TRUE(line_matches(content.data + 9, content.len - 10,
				    "relay", "smtpd", "new line"));
	CU_ASSERT_EQUAL(content.data[content.len - 1], '\n');
	buf_free(&content);
	buf_free(&path);
	CU_ASSERT_EQUAL(fixture_rmtree(dir), 0);
	free(dir);
}

static void
test_maillog_open_fails_in_missing_directory(void)
{
	char *dir = fixture_tmpdir();
	struct buf path;
	struct status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	buf_init(&path);
	buf_printf(&path, "%s/no/such/dir/maillog", dir);
	status_ok(&st);
	CU_ASSERT_EQUAL(maillog_open(path.data, "deliver", "h", &st), -1);
	CU_ASSERT_NOT_EQUAL(st.exit_code, EX_OK);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.text, path.data));
	maillog_close();
	buf_free(&path);
	CU_ASSERT_EQUAL(fixture_rmtree(dir), 0);
	free(dir);
}

static void
test_maillog_delay_formats(void)
{
	char out[32];

	maillog_delay(out, sizeof(out), 0);
	CU_ASSERT_STRING_EQUAL(out, "00:00:00");
	maillog_delay(out, sizeof(out), 59);
	CU_ASSERT_STRING_EQUAL(out, "00:00:59");
	maillog_delay(out, sizeof(out), 3661);
	CU_ASSERT_STRING_EQUAL(out, "01:01:01");
	maillog_delay(out, sizeof(out), 86399);
	CU_ASSERT_STRING_EQUAL(out, "23:59:59");
	maillog_delay(out, sizeof(out), 86400);
	CU_ASSERT_STRING_EQUAL(out, "1+00:00:00");
	maillog_delay(out, sizeof(out), 90061);
	CU_ASSERT_STRING_EQUAL(out, "1+01:01:01");
	maillog_delay(out, sizeof(out), 12 * 86400 + 5);
	CU_ASSERT_STRING_EQUAL(out, "12+00:00:05");
	maillog_delay(out, sizeof(out), -5);
	CU_ASSERT_STRING_EQUAL(out, "00:00:00");
	maillog_delay(out, 6, 3661);	/* cut, but terminated */
	CU_ASSERT_STRING_EQUAL(out, "01:01");
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_maillog_writes_one_line_per_call_in_sendmail_layout),
	UNIT_TEST(test_maillog_appends_to_an_existing_file),
	UNIT_TEST(test_maillog_open_fails_in_missing_directory),
	UNIT_TEST(test_maillog_delay_formats),
};

void
test_maillog_register(void)
{
	fixture_suite("maillog", tests, UNIT_COUNT(tests));
}
