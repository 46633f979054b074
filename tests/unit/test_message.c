/*
 * message: reading from pipes (in memory and spooled) and regular files,
 * the "From " envelope line, the header section and its fields.
 */
#include <CUnit/CUnit.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "message.h"
#include "suites.h"

/* message_pread() returns exactly want, read in one piece. */
static int
pread_is(const struct message *m, off_t offset, const char *want,
	 size_t len)
{
	char *got = malloc(len + 1);
	ssize_t n;
	int same;

	if (got == NULL)
		return 0;
	n = message_pread(m, got, len, offset);
	same = n == (ssize_t)len && memcmp(got, want, len) == 0;
	free(got);
	return same;
}

/* 200 reads at random offsets and of random lengths match text. */
static int
random_preads_match(const struct message *m, const char *text, size_t size)
{
	int k, bad = 0;

	srand(42);
	for (k = 0; k < 200; k++) {
		size_t len = (size_t)rand() % 200000 + 1;
		off_t offset = (off_t)((size_t)rand() % size);

		if ((size_t)offset + len > size)
			len = size - (size_t)offset;
		if (!pread_is(m, offset, text + offset, len))
			bad++;
	}
	return bad == 0;
}

/* Reads past the end stop there. */
static void
assert_pread_stops_at_end(const struct message *m, const char *text)
{
	char tail[100];

	CU_ASSERT_EQUAL(message_pread(m, tail, sizeof(tail), m->size - 5), 5);
	CU_ASSERT_EQUAL(memcmp(tail, text + m->size - 5, 5), 0);
	CU_ASSERT_EQUAL(message_pread(m, tail, sizeof(tail), m->size), 0);
	CU_ASSERT_EQUAL(message_pread(m, tail, sizeof(tail), m->size + 9), 0);
}

/* size bytes: a header, then every byte value (NUL too) in a fixed
 * pseudo-random order. The caller frees it. */
static char *
make_message(size_t size)
{
	char *text = malloc(size);
	unsigned seed = 12345;
	size_t i;

	if (text == NULL)
		return NULL;
	memcpy(text, "Subject: big\n\n", 14);
	for (i = 14; i < size; i++) {
		seed = seed * 1103515245u + 12345u;
		text[i] = (char)(seed >> 16);
	}
	return text;
}

static void
test_message_small_pipe_stays_in_memory(void)
{
	static const char text[] = "Subject: hi\nTo: bob\n\nhello\n";
	char *dir = fixture_tmpdir();
	struct message m;
	struct status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	CU_ASSERT_FATAL(fixture_message(&m, text, strlen(text), dir, &st) ==
			0);
	CU_ASSERT_EQUAL(m.fd, -1);
	CU_ASSERT_EQUAL(m.size, (off_t)strlen(text));
	CU_ASSERT_EQUAL(m.head.len, strlen(text));
	CU_ASSERT_EQUAL(m.header_len, 21);
	CU_ASSERT_PTR_NULL(m.envelope_sender);
	CU_ASSERT_TRUE(pread_is(&m, 0, text, strlen(text)));
	CU_ASSERT_TRUE(pread_is(&m, 21, "hello\n", 6));
	CU_ASSERT_EQUAL(fixture_count_entries(dir), 0);
	message_free(&m);
	CU_ASSERT_EQUAL(fixture_rmtree(dir), 0);
	free(dir);
}

static void
test_message_large_pipe_is_spooled_and_read_back_exactly(void)
{
	size_t size = MESSAGE_MEMORY_MAX + 300000 + 17;
	char *text = make_message(size), *dir = fixture_tmpdir();
	struct message m;
	struct status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	CU_ASSERT_FATAL(fixture_message(&m, text, size, dir, &st) == 0);
	CU_ASSERT(m.fd >= 0);
	CU_ASSERT_EQUAL(m.size, (off_t)size);
	CU_ASSERT_EQUAL(m.header_len, 14);
	CU_ASSERT(m.head.len <= MESSAGE_MEMORY_MAX);
	/* The spool file is unlinked: nothing left in tmp_dir. */
	CU_ASSERT_EQUAL(fixture_count_entries(dir), 0);
	CU_ASSERT_TRUE(random_preads_match(&m, text, size));
	/* Across the end of what is in memory. */
	CU_ASSERT_TRUE(pread_is(&m, MESSAGE_MEMORY_MAX - 10,
				text + MESSAGE_MEMORY_MAX - 10, 20));
	CU_ASSERT_TRUE(pread_is(&m, 0, text, size));
	assert_pread_stops_at_end(&m, text);
	message_free(&m);
	CU_ASSERT_EQUAL(fixture_rmtree(dir), 0);
	free(dir);
	free(text);
}

/* Reads the message from a file holding skip junk bytes before it, with
 * the offset of the descriptor moved past them. */
static int
read_file_at(struct message *m, const char *dir, const char *text,
	     size_t size, size_t skip)
{
	struct buf path, content;
	struct status st;
	int fd, rc = -1;

	buf_init(&path);
	buf_init(&content);
	buf_printf(&path, "%s/msg", dir);
	while (content.len < skip)
		buf_putc(&content, 'J');
	buf_append(&content, text, size);
	if (fixture_write_file(path.data, content.data, content.len) == 0 &&
	    (fd = open(path.data, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (lseek(fd, (off_t)skip, SEEK_SET) == (off_t)skip)
			rc = message_read(m, fd, dir, &st);
		close(fd);
	}
	unlink(path.data);	/* m keeps its own descriptor */
	buf_free(&content);
	buf_free(&path);
	return rc;
}

static void
test_message_regular_file_read_from_current_offset(void)
{
	static const char small[] = "Subject: in place\n\nbody\n";
	size_t size = 3 * 65536 + 99;
	char *text = make_message(size), *dir = fixture_tmpdir();
	struct message m;

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	CU_ASSERT_FATAL(read_file_at(&m, dir, text, size, 8) == 0);
	CU_ASSERT(m.fd >= 0);	/* used where it is, not copied */
	CU_ASSERT_EQUAL(m.fd_base, 8);
	CU_ASSERT_EQUAL(m.size, (off_t)size);
	CU_ASSERT_EQUAL(m.header_len, 14);
	CU_ASSERT(m.head.len < size);
	CU_ASSERT_TRUE(random_preads_match(&m, text, size));
	CU_ASSERT_TRUE(pread_is(&m, 0, text, size));
	assert_pread_stops_at_end(&m, text);
	message_free(&m);

	CU_ASSERT_FATAL(read_file_at(&m, dir, small, strlen(small), 8) == 0);
	CU_ASSERT_EQUAL(m.size, (off_t)strlen(small));
	CU_ASSERT_EQUAL(m.header_len, 19);
	CU_ASSERT_TRUE(pread_is(&m, 0, small, strlen(small)));
	CU_ASSERT_TRUE(pread_is(&m, 19, "body\n", 5));
	message_free(&m);
	CU_ASSERT_EQUAL(fixture_count_entries(dir), 0);
	CU_ASSERT_EQUAL(fixture_rmtree(dir), 0);
	free(dir);
	free(text);
}

static void
test_message_envelope_from_line_is_taken_off(void)
{
	static const char text[] =
		"From alice@example.org  Tue Nov 14 22:13:20 2023\n"
		"Subject: x\n\nbody\n";
	const char *rest = text + 49;
	char *dir = fixture_tmpdir();
	struct buf path;
	struct message m;
	struct status st;
	int fd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	CU_ASSERT_FATAL(fixture_message(&m, text, strlen(text), dir, &st) ==
			0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m.envelope_sender);
	CU_ASSERT_STRING_EQUAL(m.envelope_sender, "alice@example.org");
	CU_ASSERT_EQUAL(m.size, (off_t)strlen(rest));
	CU_ASSERT_EQUAL(m.header_len, 12);
	CU_ASSERT_TRUE(pread_is(&m, 0, rest, strlen(rest)));
	message_free(&m);

	/* The same from a file: the offset moves past the line. */
	buf_init(&path);
	buf_printf(&path, "%s/msg", dir);
	CU_ASSERT_FATAL(fixture_write_file(path.data, text, strlen(text)) == 0);
	fd = open(path.data, O_RDONLY | O_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(message_read(&m, fd, dir, &st) == 0);
	close(fd);
	CU_ASSERT_STRING_EQUAL(m.envelope_sender, "alice@example.org");
	CU_ASSERT_EQUAL(m.fd_base, 49);
	CU_ASSERT_EQUAL(m.size, (off_t)strlen(rest));
	CU_ASSERT_TRUE(pread_is(&m, 0, rest, strlen(rest)));
	message_free(&m);
	buf_free(&path);
	CU_ASSERT_EQUAL(fixture_rmtree(dir), 0);
	free(dir);
}

/* Reads text through a pipe and returns header_len, or -1. */
static long
header_len_of(const char *text)
{
	struct message m;
	struct status st;
	long len;

	if (fixture_message(&m, text, strlen(text), "/tmp", &st) < 0)
		return -1;
	len = (long)m.header_len;
	message_free(&m);
	return len;
}

static void
test_message_header_len_with_lf_and_crlf(void)
{
	CU_ASSERT_EQUAL(header_len_of("A: 1\nB: 2\n\nbody\n"), 11);
	CU_ASSERT_EQUAL(header_len_of("A: 1\r\nB: 2\r\n\r\nbody\r\n"), 14);
	/* A blank line in the body does not count twice. */
	CU_ASSERT_EQUAL(header_len_of("A: 1\n\nx\n\ny\n"), 6);
	/* No body, and no blank line at all: all of it is header. */
	CU_ASSERT_EQUAL(header_len_of("A: 1\nB: 2\n\n"), 11);
	CU_ASSERT_EQUAL(header_len_of("A: 1\nB: 2\n"), 10);
	CU_ASSERT_EQUAL(header_len_of("A: 1\nB: 2"), 9);
	CU_ASSERT_EQUAL(header_len_of("\nbody only\n"), 1);
}

static void
test_message_header_next_iterates_folded_fields(void)
{
	static const char text[] =
		"Subject: a\n b\n"
		"To : x@y\r\n"
		"Received: from z\n\tby w\n"
		"subject: again\n"
		"\n"
		"Body: not a field\n";
	static const char *names[] = { "Subject", "To", "Received",
				       "subject" };
	static const char *values[] = { " a\n b", " x@y",
					" from z\n\tby w", " again" };
	struct message m;
	struct status st;
	size_t pos = 0, name_len, value_len;
	const char *name, *value;
	int i = 0;

	CU_ASSERT_FATAL(fixture_message(&m, text, strlen(text), "/tmp", &st) ==
			0);
	while (message_header_next(&m, &pos, &name, &name_len, &value,
				   &value_len)) {
		if (i >= 4) {
			i++;
			break;
		}
		CU_ASSERT_EQUAL(name_len, strlen(names[i]));
		CU_ASSERT_EQUAL(strncmp(name, names[i], name_len), 0);
		CU_ASSERT_EQUAL(value_len, strlen(values[i]));
		CU_ASSERT_EQUAL(strncmp(value, values[i], value_len), 0);
		i++;
	}
	CU_ASSERT_EQUAL(i, 4);
	CU_ASSERT_EQUAL(message_header_count(&m, "SUBJECT"), 2);
	CU_ASSERT_EQUAL(message_header_count(&m, "received"), 1);
	CU_ASSERT_EQUAL(message_header_count(&m, "to"), 1);
	CU_ASSERT_EQUAL(message_header_count(&m, "Body"), 0);
	CU_ASSERT_EQUAL(message_header_count(&m, "Subjec"), 0);
	message_free(&m);
}

static void
test_message_header_next_skips_lines_that_are_not_fields(void)
{
	static const char text[] = " orphan: continuation\nA: 1\n: no name\n"
				   "no colon\nB: 2\n\nC: body\n";
	struct message m;
	struct status st;
	size_t pos = 0, nl, vl;
	const char *n, *v;

	CU_ASSERT_FATAL(fixture_message(&m, text, strlen(text), "/tmp", &st) ==
			0);
	CU_ASSERT_EQUAL(message_header_next(&m, &pos, &n, &nl, &v, &vl), 1);
	CU_ASSERT(nl == 1 && n[0] == 'A' && vl == 2);
	CU_ASSERT_EQUAL(message_header_next(&m, &pos, &n, &nl, &v, &vl), 1);
	CU_ASSERT(nl == 1 && n[0] == 'B' && vl == 2);
	CU_ASSERT_EQUAL(message_header_next(&m, &pos, &n, &nl, &v, &vl), 0);
	message_free(&m);
}

static void
test_message_empty_input_is_an_empty_message(void)
{
	struct message m;
	struct status st;
	size_t pos = 0, nl, vl;
	const char *n, *v;

	CU_ASSERT_FATAL(fixture_message(&m, "", 0, "/tmp", &st) == 0);
	CU_ASSERT_EQUAL(m.size, 0);
	CU_ASSERT_EQUAL(m.header_len, 0);
	CU_ASSERT_EQUAL(message_header_next(&m, &pos, &n, &nl, &v, &vl), 0);
	message_free(&m);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_message_small_pipe_stays_in_memory),
	UNIT_TEST(test_message_large_pipe_is_spooled_and_read_back_exactly),
	UNIT_TEST(test_message_regular_file_read_from_current_offset),
	UNIT_TEST(test_message_envelope_from_line_is_taken_off),
	UNIT_TEST(test_message_header_len_with_lf_and_crlf),
	UNIT_TEST(test_message_header_next_iterates_folded_fields),
	UNIT_TEST(test_message_header_next_skips_lines_that_are_not_fields),
	UNIT_TEST(test_message_empty_input_is_an_empty_message),
};

void
test_message_register(void)
{
	fixture_suite("message", tests, UNIT_COUNT(tests));
}
