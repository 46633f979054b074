/*
 * msgform: the delivered form, byte for byte: the "From " line, added and
 * dropped fields, CRLF to LF (also across the 64 KiB chunks it streams in),
 * mboxrd quoting, the final newline and the separator from the last message.
 */
#include <CUnit/CUnit.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msgform.h"
#include "suites.h"

#define CHUNK 65536	/* msgform's buffer: the body is read in these */
#define NOW 1700000000	/* Tue Nov 14 22:13:20 2023 UTC; main() sets TZ */
#define FROM_LINE "From alice@example.org Tue Nov 14 22:13:20 2023\n"
#define FIELDS "Return-Path: <alice@example.org>\n" \
	       "Delivered-To: bob@example.org\n"

static struct msgform
mbox_form(void)
{
	struct msgform form;

	memset(&form, 0, sizeof(form));
	form.mbox = 1;
	form.sender = "alice@example.org";
	form.delivered_to = "bob@example.org";
	form.now = NOW;
	return form;
}

/* Writes the form of message text into a file; out gets the file. */
static int
form_of(const char *text, size_t len, const struct msgform *form,
	struct buf *out)
{
	char *dir = fixture_tmpdir();
	struct buf path;
	struct message m;
	struct status st;
	off_t written = -1;
	int fd, rc = -1;

	if (dir == NULL)
		return -1;
	buf_init(&path);
	buf_printf(&path, "%s/out", dir);
	buf_reset(out);
	if (fixture_message(&m, text, len, dir, &st) == 0) {
		fd = open(path.data, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			  0600);
		if (fd >= 0) {
			rc = msgform_write(&m, form, fd, &written, &st);
			close(fd);
			if (fixture_read_file(path.data, out) < 0 ||
			    written != (off_t)out->len)
				rc = -1;
		}
		message_free(&m);
	}
	buf_free(&path);
	if (fixture_rmtree(dir) < 0)
		rc = -1;
	free(dir);
	return rc;
}

/* The form of text equals want, byte for byte. */
static void
assert_form(const char *text, const struct msgform *form, const char *want)
{
	struct buf out;

	buf_init(&out);
	CU_ASSERT_EQUAL(form_of(text, strlen(text), form, &out), 0);
	CU_ASSERT_EQUAL(out.len, strlen(want));
	CU_ASSERT_STRING_EQUAL(out.data, want);
	buf_free(&out);
}

static void
test_msgform_mbox_starts_with_from_line_and_envelope_fields(void)
{
	struct msgform form = mbox_form();

	assert_form("Subject: hi\n\nbody\n", &form,
		    FROM_LINE FIELDS "Subject: hi\n\nbody\n\n");
	form.delivered_to = NULL;
	assert_form("Subject: hi\n\nbody\n", &form,
		    FROM_LINE "Return-Path: <alice@example.org>\n"
			      "Subject: hi\n\nbody\n\n");
}

static void
test_msgform_null_sender_is_mailer_daemon(void)
{
	struct msgform form = mbox_form();
	struct buf line;

	form.sender = "";
	assert_form("A: b\n\nc\n", &form,
		    "From MAILER-DAEMON Tue Nov 14 22:13:20 2023\n"
		    "Return-Path: <>\nDelivered-To: bob@example.org\n"
		    "A: b\n\nc\n\n");
	/* Blanks would split the line; a one-digit day is space padded. */
	buf_init(&line);
	msgform_from_line(&line, "a b\tc", 1709655933);
	CU_ASSERT_STRING_EQUAL(line.data, "From a_b_c Tue Mar  5 16:25:33 2024\n");
	buf_free(&line);
}

static void
test_msgform_drops_old_return_path_and_content_length(void)
{
	struct msgform form = mbox_form();

	assert_form("Return-Path: <forged@example.net>\n"
		    "Subject: kept\n"
		    "CONTENT-LENGTH: 5\n"
		    "Content-Length:\n 12\n"
		    "X-Folded: one\n\ttwo\n"
		    "return-path:\n\t<also@forged>\n"
		    "X-Return-Path: kept too\n"
		    "Return-Path \t: <blanks before the colon>\n"
		    "Content-Lengthy: kept\n"
		    "\n"
		    "Return-Path: in the body stays\n",
		    &form,
		    FROM_LINE FIELDS "Subject: kept\n"
				     "X-Folded: one\n\ttwo\n"
				     "X-Return-Path: kept too\n"
				     "Content-Lengthy: kept\n"
				     "\n"
				     "Return-Path: in the body stays\n\n");
}

static void
test_msgform_crlf_becomes_lf_and_bare_cr_stays(void)
{
	struct msgform form = mbox_form();

	assert_form("A: 1\r\nB: 2\r\n\r\nline\r\nbare\rcr\r\n\r\nx\r\r\n",
		    &form,
		    FROM_LINE FIELDS "A: 1\nB: 2\n\nline\nbare\rcr\n\nx\r\n\n");
}

/* Appends 80-byte lines (CRLF in in, LF in want) and one shorter line, so
 * that the body (starting at body_start) is exactly at bytes long. */
static void
pad_body(struct buf *in, struct buf *want, size_t body_start, size_t at)
{
	char line[200];
	size_t rest;

	memset(line, 'x', sizeof(line));
	while (at - (in->len - body_start) > 160) {
		buf_append(in, line, 78);
		buf_puts(in, "\r\n");
		buf_append(want, line, 78);
		buf_putc(want, '\n');
	}
	rest = at - (in->len - body_start);
	buf_append(in, line, rest - 2);
	buf_puts(in, "\r\n");
	buf_append(want, line, rest - 2);
	buf_putc(want, '\n');
}

/* A message whose body reaches past the first chunk: tail_in starts at body
 * offset at; the form must be want_tail there. */
static void
assert_across_chunks(size_t at, const char *tail_in, const char *want_tail,
		     size_t cr_at)
{
	struct msgform form = mbox_form();
	struct buf in, want, out;
	size_t body_start;

	buf_init(&in);
	buf_init(&want);
	buf_init(&out);
	buf_puts(&in, "Subject: big\r\n\r\n");
	body_start = in.len;
	buf_puts(&want, FROM_LINE FIELDS "Subject: big\n\n");
	pad_body(&in, &want, body_start, at);
	buf_puts(&in, tail_in);
	buf_puts(&want, want_tail);
	buf_puts(&in, "after\r\n");
	buf_puts(&want, "after\n\n");
	if (cr_at != 0)
		CU_ASSERT_EQUAL_FATAL(in.data[body_start + cr_at], '\r');
	CU_ASSERT(in.len - body_start > CHUNK);
	CU_ASSERT_EQUAL(form_of(in.data, in.len, &form, &out), 0);
	CU_ASSERT_EQUAL(out.len, want.len);
	CU_ASSERT(out.len == want.len &&
		  memcmp(out.data, want.data, out.len) == 0);
	buf_free(&in);
	buf_free(&want);
	buf_free(&out);
}

static void
test_msgform_crlf_split_across_chunk_boundary(void)
{
	/* '\r' is the last byte of the first chunk, '\n' the first of the
	 * next; the "From " line after it is quoted. */
	assert_across_chunks(CHUNK - 11, "0123456789\r\nFrom the edge\r\n",
			     "0123456789\n>From the edge\n", CHUNK - 1);
}

static void
test_msgform_bare_cr_at_chunk_boundary_stays(void)
{
	assert_across_chunks(CHUNK - 3, "ab\rcd\r\n", "ab\rcd\n", CHUNK - 1);
	assert_across_chunks(CHUNK - 1, "\rzz\r\n", "\rzz\n", CHUNK - 1);
}

static void
test_msgform_quotes_from_line_split_across_chunks(void)
{
	assert_across_chunks(CHUNK - 3, "From split\r\n", ">From split\n", 0);
	assert_across_chunks(CHUNK - 2, ">>From deep\r\n", ">>>From deep\n", 0);
	assert_across_chunks(CHUNK - 2, "Fromage\r\n", "Fromage\n", 0);
}

static void
test_msgform_mboxrd_quoting(void)
{
	struct msgform form = mbox_form();
	static const char body[] =
		"From here\n"
		">From there\n"
		">>>From deep\n"
		"Fromage\n"
		">Fro\n"
		"From\n"
		">\n"
		" From indented\n"
		"x From inside\n"
		"From";
	static const char quoted[] =
		">From here\n"
		">>From there\n"
		">>>>From deep\n"
		"Fromage\n"
		">Fro\n"
		"From\n"
		">\n"
		" From indented\n"
		"x From inside\n"
		"From\n";
	struct buf in, want;

	buf_init(&in);
	buf_init(&want);
	buf_printf(&in, "Subject: q\n\n%s", body);
	buf_printf(&want, FROM_LINE FIELDS "Subject: q\n\n%s\n", quoted);
	assert_form(in.data, &form, want.data);
	buf_free(&in);
	buf_free(&want);
}

static void
test_msgform_adds_final_newline_and_blank_line(void)
{
	struct msgform form = mbox_form();

	assert_form("S: x\n\nno newline", &form,
		    FROM_LINE FIELDS "S: x\n\nno newline\n\n");
	assert_form("S: x\n\nends\n\n", &form,
		    FROM_LINE FIELDS "S: x\n\nends\n\n\n");
	/* Header only, no blank line, no final newline. */
	assert_form("S: x", &form, FROM_LINE FIELDS "S: x\n\n");
}

static void
test_msgform_maildir_form_has_no_from_line_or_quoting(void)
{
	struct msgform form = mbox_form();

	form.mbox = 0;
	form.mbox_tail = -1;	/* ignored without mbox */
	assert_form("Subject: s\r\n\r\nFrom here\r\n>From x\r\nlast", &form,
		    FIELDS "Subject: s\n\nFrom here\n>From x\nlast\n");
	assert_form("Subject: s\n\nbody\n", &form,
		    FIELDS "Subject: s\n\nbody\n");
}

static void
test_msgform_mbox_tail_separates_from_last_message(void)
{
	static const char text[] = "S: x\n\nb\n";
	static const char rest[] = FROM_LINE FIELDS "S: x\n\nb\n\n";
	struct msgform form = mbox_form();

	form.mbox_tail = -1;	/* no newline at the end of the file */
	assert_form(text, &form, "\n\n" FROM_LINE FIELDS "S: x\n\nb\n\n");
	form.mbox_tail = 0;	/* empty file */
	assert_form(text, &form, rest);
	form.mbox_tail = 1;	/* one newline */
	assert_form(text, &form, "\n" FROM_LINE FIELDS "S: x\n\nb\n\n");
	form.mbox_tail = 2;	/* an empty line already */
	assert_form(text, &form, rest);
}

static void
count_progress(void *arg)
{
	(*(int *)arg)++;
}

static void
test_msgform_streams_a_spooled_message_unchanged(void)
{
	struct msgform form = mbox_form();
	struct buf in, out;
	int calls = 0, i;

	form.mbox = 0;
	form.progress = count_progress;
	form.progress_arg = &calls;
	buf_init(&in);
	buf_init(&out);
	buf_puts(&in, "Subject: large\n\n");
	for (i = 0; in.len <= MESSAGE_MEMORY_MAX + 500000; i++)
		buf_printf(&in, "line %07d of a message too big for memory\n",
			   i);
	CU_ASSERT_EQUAL(form_of(in.data, in.len, &form, &out), 0);
	CU_ASSERT_EQUAL(out.len, strlen(FIELDS) + in.len);
	CU_ASSERT(out.len == strlen(FIELDS) + in.len &&
		  memcmp(out.data, FIELDS, strlen(FIELDS)) == 0 &&
		  memcmp(out.data + strlen(FIELDS), in.data, in.len) == 0);
	/* Once per buffer written: memory does not grow with the message. */
	CU_ASSERT(calls >= (int)(out.len / CHUNK));
	buf_free(&in);
	buf_free(&out);
}

static void
test_msgform_reports_write_error(void)
{
	struct msgform form = mbox_form();
	struct message m;
	struct status st;
	off_t written = -1;
	int fd;

	CU_ASSERT_FATAL(fixture_message(&m, "S: x\n\nb\n", 8, "/tmp", &st) ==
			0);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);	/* not writable */
	CU_ASSERT_FATAL(fd >= 0);
	status_ok(&st);
	CU_ASSERT_EQUAL(msgform_write(&m, &form, fd, &written, &st), -1);
	CU_ASSERT_EQUAL(written, 0);
	CU_ASSERT_NOT_EQUAL(st.exit_code, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.text, "write"));
	close(fd);
	message_free(&m);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_msgform_mbox_starts_with_from_line_and_envelope_fields),
	UNIT_TEST(test_msgform_null_sender_is_mailer_daemon),
	UNIT_TEST(test_msgform_drops_old_return_path_and_content_length),
	UNIT_TEST(test_msgform_crlf_becomes_lf_and_bare_cr_stays),
	UNIT_TEST(test_msgform_crlf_split_across_chunk_boundary),
	UNIT_TEST(test_msgform_bare_cr_at_chunk_boundary_stays),
	UNIT_TEST(test_msgform_quotes_from_line_split_across_chunks),
	UNIT_TEST(test_msgform_mboxrd_quoting),
	UNIT_TEST(test_msgform_adds_final_newline_and_blank_line),
	UNIT_TEST(test_msgform_maildir_form_has_no_from_line_or_quoting),
	UNIT_TEST(test_msgform_mbox_tail_separates_from_last_message),
	UNIT_TEST(test_msgform_streams_a_spooled_message_unchanged),
	UNIT_TEST(test_msgform_reports_write_error),
};

void
test_msgform_register(void)
{
	fixture_suite("msgform", tests, UNIT_COUNT(tests));
}
