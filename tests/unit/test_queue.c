/*
 * queue: every qf record survives a round trip, hostile texts included;
 * unknown records are kept and newer versions refused; queueing is all or
 * nothing, also when the disk refuses and under concurrency; locks are
 * exclusive and survive rewrites; listing and orphan cleanup.
 */
#include <CUnit/CUnit.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "privs.h"
#include "queue.h"
#include "suites.h"

#define TEST_UID 60123
#define CHILDREN 8
#define PER_CHILD 200

static char *top;	/* the test's private directory */
static char *qdir;	/* top/queue */

static void
setup(void)
{
	struct buf path;

	top = fixture_tmpdir();
	buf_init(&path);
	buf_printf(&path, "%s/queue", top != NULL ? top : "/nonexistent");
	qdir = buf_steal(&path);
	buf_free(&path);
	if (top != NULL)
		mkdir(qdir, 0700);
}

static void
teardown(void)
{
	if (top != NULL) {
		chmod(top, 0700);
		chmod(qdir, 0700);
		fixture_rmtree(top);
	}
	free(top);
	free(qdir);
	top = qdir = NULL;
}

static char *
qpath(char kind, const char *id)
{
	struct buf path;
	char *result;

	buf_init(&path);
	buf_printf(&path, "%s/%cf%s", qdir, kind, id);
	result = buf_steal(&path);
	buf_free(&path);
	return result;
}

static int
qexists(char kind, const char *id)
{
	char *path = qpath(kind, id);
	struct stat sb;
	int rc = lstat(path, &sb) == 0;

	free(path);
	return rc;
}

/* An entry with a text in every record that could break the format. */
static void
hostile_entry(struct queue_entry *e)
{
	struct queue_recipient *r;
	static const char header[] =
		"Received: from a (b [1.2.3.4])\n"
		"\tby host; Tue, 1 Jan 2030 00:00:00 +0000\n"
		"Subject: 100% sure: a\rb =?utf-8?q?=C3=A9?= \xc3\xa9\n"
		"  folded: line with : colons\n"
		"X-Empty:\n"
		"X-Nul: a\0b\n";

	queue_entry_init(e);
	e->created = 1700000000;
	e->last_attempt = 1700000300;
	e->tries = 3;
	e->next_attempt = 1700001200;
	e->sender = xstrdup("we:ird%25\n\r\x01sender@example.org");
	e->body_size = 12345;
	e->message_id = xstrdup("<a:b%c\nd@example.org>");
	e->warned = 1;
	e->status_message = xstrdup("Deferred: 451 4.3.0 try: later\nagain %");
	queue_add_recipient(e, "plain@example.org", NULL);
	r = queue_add_recipient(e, "\"we:ird\"@example.org",
				"rfc822;we:ird@example.org");
	queue_recipient_set(r, QUEUE_SENT, "2.0.0", "250 2.0.0 Ok: queued");
	r = queue_add_recipient(e, "bounced@example.org", NULL);
	queue_recipient_set(r, QUEUE_BOUNCED, "5.1.1",
			    "550 5.1.1 <bounced>: no\r\nsuch user\t\x7f\xff");
	r = queue_add_recipient(e, "deferred@example.org", NULL);
	queue_recipient_set(r, QUEUE_QUEUED, "4.2.2", "mailbox: full");
	buf_append(&e->headers, header, sizeof(header) - 1);
}

static void
assert_same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL) {
		CU_ASSERT_PTR_EQUAL(a, b);
	} else {
		CU_ASSERT_STRING_EQUAL(a, b);
	}
}

static void
assert_same_entry(const struct queue_entry *a, const struct queue_entry *b)
{
	size_t i;

	CU_ASSERT_EQUAL(a->created, b->created);
	CU_ASSERT_EQUAL(a->last_attempt, b->last_attempt);
	CU_ASSERT_EQUAL(a->tries, b->tries);
	CU_ASSERT_EQUAL(a->next_attempt, b->next_attempt);
	assert_same_string(a->sender, b->sender);
	CU_ASSERT_EQUAL(a->body_size, b->body_size);
	assert_same_string(a->message_id, b->message_id);
	CU_ASSERT_EQUAL(a->warned, b->warned);
	assert_same_string(a->status_message, b->status_message);
	CU_ASSERT_EQUAL_FATAL(a->nrecipients, b->nrecipients);
	for (i = 0; i < a->nrecipients; i++) {
		assert_same_string(a->recipients[i].address,
				   b->recipients[i].address);
		assert_same_string(a->recipients[i].orcpt,
				   b->recipients[i].orcpt);
		assert_same_string(a->recipients[i].reply,
				   b->recipients[i].reply);
		CU_ASSERT_EQUAL(a->recipients[i].state,
				b->recipients[i].state);
		CU_ASSERT_STRING_EQUAL(a->recipients[i].dsn,
				       b->recipients[i].dsn);
	}
	CU_ASSERT_EQUAL_FATAL(a->headers.len, b->headers.len);
	CU_ASSERT(memcmp(a->headers.data, b->headers.data, a->headers.len) ==
		  0);
	CU_ASSERT_EQUAL_FATAL(a->nextras, b->nextras);
	for (i = 0; i < a->nextras; i++) {
		CU_ASSERT_EQUAL(a->extras[i].after, b->extras[i].after);
		CU_ASSERT_STRING_EQUAL(a->extras[i].line, b->extras[i].line);
	}
}

static int
parse_text(const char *text, struct queue_entry *e, struct status *st)
{
	return queue_parse(text, strlen(text), e, st);
}

static void
test_queue_round_trip_of_every_record(void)
{
	struct queue_entry e, back;
	struct buf text, again;
	struct status st;
	size_t i;

	hostile_entry(&e);
	buf_init(&text);
	buf_init(&again);
	queue_format(&e, &text);
	/* One record a line: no raw control character but tab survives. */
	for (i = 0; i < text.len; i++) {
		unsigned char c = (unsigned char)text.data[i];

		CU_ASSERT(c >= 0x20 || c == '\t' || c == '\n');
		CU_ASSERT(c != 0x7f);
	}
	CU_ASSERT_EQUAL_FATAL(queue_parse(text.data, text.len, &back, &st), 0);
	assert_same_entry(&e, &back);
	/* Writing what was read gives the same bytes. */
	queue_format(&back, &again);
	CU_ASSERT_EQUAL(text.len, again.len);
	CU_ASSERT_STRING_EQUAL(text.data, again.data);
	queue_entry_free(&back);
	queue_entry_free(&e);
	buf_free(&text);
	buf_free(&again);
}

static void
test_queue_format_is_one_record_a_line(void)
{
	struct queue_entry e;
	struct queue_recipient *r;
	struct buf text;

	queue_entry_init(&e);
	e.created = 1700000000;
	e.sender = xstrdup("");
	e.body_size = 42;
	queue_add_recipient(&e, "bob@example.org", NULL);
	r = queue_add_recipient(&e, "a:b@example.org", "rfc822;x@y");
	queue_recipient_set(r, QUEUE_QUEUED, "4.3.0", "421 4.3.0 busy: 50%");
	r = queue_add_recipient(&e, "carol@example.org", NULL);
	queue_recipient_set(r, QUEUE_SENT, "2.0.0", "delivered\nto maildir");
	buf_puts(&e.headers, "Subject: hi\n\tthere\n");
	buf_init(&text);
	queue_format(&e, &text);
	CU_ASSERT_STRING_EQUAL(text.data,
			       "V1\nT1700000000\nK0\nN0\nY0\nS\nZ42\n"
			       "RQ::bob@example.org\n"
			       "RQ:4.3.0:a%3Ab@example.org:rfc822;x@y:"
			       "421 4.3.0 busy%3A 50%25\n"
			       "RS:2.0.0:carol@example.org::delivered%0Ato "
			       "maildir\n"
			       "HSubject: hi\nH\tthere\n.\n");
	queue_entry_free(&e);
	buf_free(&text);
}

static void
test_queue_writer_never_writes_what_the_reader_refuses(void)
{
	struct queue_entry e, back;
	struct queue_recipient *r;
	struct status st;
	struct buf text;

	queue_entry_init(&e);
	e.created = -5;				/* a caller's mistakes */
	r = queue_add_recipient(&e, "", "");
	r->state = (enum queue_state)0;
	queue_recipient_set(queue_add_recipient(&e, "x@y", NULL), QUEUE_SENT,
			    "2.0.0: ok", NULL);
	snprintf(e.recipients[0].dsn, sizeof(e.recipients[0].dsn), "4:%%\n");
	buf_init(&text);
	queue_format(&e, &text);
	CU_ASSERT_EQUAL_FATAL(queue_parse(text.data, text.len, &back, &st), 0);
	CU_ASSERT_EQUAL(back.created, 0);
	CU_ASSERT_STRING_EQUAL(back.sender, "");
	CU_ASSERT_EQUAL_FATAL(back.nrecipients, 2);
	CU_ASSERT_EQUAL(back.recipients[0].state, QUEUE_QUEUED);
	CU_ASSERT_STRING_EQUAL(back.recipients[0].address, "");
	CU_ASSERT_STRING_EQUAL(back.recipients[0].dsn, "");
	CU_ASSERT_PTR_NULL(back.recipients[0].orcpt);
	CU_ASSERT_EQUAL(back.recipients[1].state, QUEUE_SENT);
	CU_ASSERT_STRING_EQUAL(back.recipients[1].dsn, "");
	queue_entry_free(&back);
	queue_entry_free(&e);
	buf_free(&text);
}

static void
test_queue_parse_decodes_either_case_and_refuses_bad_escapes(void)
{
	struct queue_entry e;
	struct status st;
	static const char *bad[] = {
		"V1\nT1\nSa%4\n.\n",		/* cut escape */
		"V1\nT1\nSa%zz\n.\n",		/* not hex */
		"V1\nT1\nSa%00b\n.\n",		/* NUL in a string */
		"V1\nT1\nS\nRQ::a%0\n.\n",
		"V1\nT1\nS\nH%\n.\n",
	};
	size_t i;

	CU_ASSERT_EQUAL_FATAL(parse_text("V1\nT1\nSa%3a%3Ab%0a\nHx%00y\n.\n",
					 &e, &st), 0);
	CU_ASSERT_STRING_EQUAL(e.sender, "a::b\n");
	CU_ASSERT_EQUAL(e.headers.len, 4);
	CU_ASSERT(memcmp(e.headers.data, "x\0y\n", 4) == 0);
	queue_entry_free(&e);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(parse_text(bad[i], &e, &st), -1);
		CU_ASSERT_EQUAL(st.exit_code, EX_DATAERR);
		CU_ASSERT_EQUAL(e.nrecipients, 0);
		CU_ASSERT_PTR_NULL(e.sender);
	}
}

static void
test_queue_parse_refuses_malformed_files(void)
{
	struct queue_entry e;
	struct status st;
	static const char *bad[] = {
		"",
		"T1\nS\n.\n",			/* no V first */
		"V1\nT1\nS\n",			/* truncated */
		"V1\nT1\nS\n.",			/* "." without newline */
		"V1\nT1\nS\n.\nT2\n",		/* text after the end */
		"V1\nT1\nS\n.x\n",
		"V1\nT1\nT2\nS\n.\n",		/* twice */
		"V1\nT1\nS\nSb\n.\n",
		"V1\nS\n.\n",			/* no T */
		"V1\nT1\n.\n",			/* no S */
		"V1\nT1\nS\n\n.\n",		/* empty line */
		"V1\nTx\nS\n.\n",
		"V1\nT-1\nS\n.\n",
		"V1\nT1\nN99999999999\nS\n.\n",
		"V1\nT1\nS\nW2\n.\n",
		"V1\nT1\nS\nRX::a@b\n.\n",	/* unknown state */
		"V1\nT1\nS\nRQ:a@b\n.\n",	/* too few fields */
		"V1\nT1\nS\nRQ::a:b:c:d\n.\n",	/* too many */
		"V1\nT1\nS\nRQ:4.x.0:a\n.\n",	/* not a dsn */
		"V1\nT1\nS\n1junk\n.\n",	/* no letter */
		"V0\nT1\nS\n.\n",
		"V1\nV1\nT1\nS\n.\n",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse_text(bad[i], &e, &st);

		CU_ASSERT_EQUAL(rc, -1);
		if (rc != -1)
			fprintf(stderr, "\naccepted: %s\n", bad[i]);
		CU_ASSERT_EQUAL(st.exit_code, EX_DATAERR);
		queue_entry_free(&e);
	}
}

static void
test_queue_unknown_records_are_written_back_in_place(void)
{
	static const char text[] =
		"V1\nPfuture:1\nT5\nS\nZ0\n"
		"RQ::a@example.org\nxper-recipient a\n"
		"RS:2.0.0:b@example.org\nxper-recipient b\nQq\n"
		"HSubject: x\n.\n";
	struct queue_entry e;
	struct status st;
	struct buf out;

	CU_ASSERT_EQUAL_FATAL(parse_text(text, &e, &st), 0);
	CU_ASSERT_EQUAL_FATAL(e.nextras, 4);
	CU_ASSERT_EQUAL(e.extras[0].after, 0);
	CU_ASSERT_STRING_EQUAL(e.extras[0].line, "Pfuture:1");
	CU_ASSERT_EQUAL(e.extras[1].after, 1);
	CU_ASSERT_EQUAL(e.extras[3].after, 2);
	buf_init(&out);
	queue_format(&e, &out);
	CU_ASSERT_STRING_EQUAL(out.data,
			       "V1\nT5\nK0\nN0\nY0\nS\nZ0\nPfuture:1\n"
			       "RQ::a@example.org\nxper-recipient a\n"
			       "RS:2.0.0:b@example.org\nxper-recipient b\n"
			       "Qq\nHSubject: x\n.\n");
	queue_entry_free(&e);
	buf_free(&out);
}

static void
test_queue_refuses_a_newer_version(void)
{
	struct queue_entry e;
	struct status st;
	char id[QID_SIZE], *path;

	CU_ASSERT_EQUAL(parse_text("V2\nT1\nS\nnew stuff\n.\n", &e, &st), -1);
	CU_ASSERT_EQUAL(st.exit_code, EX_TEMPFAIL);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.text, "version 2 is newer"));
	/* Through the file, with the file named. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	qid_new(id, time(NULL));
	path = qpath('q', id);
	CU_ASSERT_EQUAL(fixture_write_text(path, "V17\nT1\nS\n.\n"), 0);
	CU_ASSERT_EQUAL(queue_read(qdir, id, &e, &st), -1);
	CU_ASSERT_EQUAL(st.exit_code, EX_TEMPFAIL);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.text, path));
	CU_ASSERT_PTR_NOT_NULL(strstr(st.text, "version 17"));
	queue_entry_free(&e);
	free(path);
}

static int
write_body_file(const char *name, const char *data, size_t len)
{
	struct buf path;
	int fd;

	buf_init(&path);
	buf_printf(&path, "%s/%s", top, name);
	if (fixture_write_file(path.data, data, len) < 0) {
		buf_free(&path);
		return -1;
	}
	fd = open(path.data, O_RDONLY | O_CLOEXEC);
	buf_free(&path);
	return fd;
}

static void
test_queue_create_writes_body_and_envelope(void)
{
	static const char body[] = "line one\nline two\n";
	struct queue_entry e, back;
	struct status st;
	struct buf df;
	struct stat sb;
	char *path;
	int fd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	hostile_entry(&e);
	e.created = 0;
	fd = write_body_file("body", body, sizeof(body) - 1);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(queue_create(qdir, &e, fd, &st), 0);
	close(fd);
	CU_ASSERT(qid_valid(e.id));
	CU_ASSERT(e.created > 1700000000);
	CU_ASSERT_EQUAL(e.body_size, sizeof(body) - 1);
	/* df, qf and nothing else, readable by owner and group only. */
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 2);
	path = qpath('d', e.id);
	CU_ASSERT(fixture_file_is(path, body));
	CU_ASSERT(stat(path, &sb) == 0 &&
		  (sb.st_mode & 07777) == (0640 & ~fixture_umask()));
	free(path);
	path = qpath('q', e.id);
	CU_ASSERT(stat(path, &sb) == 0 &&
		  (sb.st_mode & 07777) == (0640 & ~fixture_umask()));
	free(path);
	CU_ASSERT_EQUAL_FATAL(queue_read(qdir, e.id, &back, &st), 0);
	CU_ASSERT_STRING_EQUAL(back.id, e.id);
	assert_same_entry(&e, &back);
	queue_entry_free(&back);
	/* The body is readable through the lock. */
	CU_ASSERT_EQUAL_FATAL(queue_lock(qdir, e.id, &fd, &st), QUEUE_LOCKED);
	buf_init(&df);
	buf_reserve(&df, 64);
	CU_ASSERT_EQUAL(pread(fd, df.data, 64, 0), (ssize_t)sizeof(body) - 1);
	CU_ASSERT(memcmp(df.data, body, sizeof(body) - 1) == 0);
	buf_free(&df);
	queue_unlock(fd);
	queue_entry_free(&e);
}

static void
test_queue_draft_streams_large_bodies(void)
{
	struct queue_entry e;
	struct queue_draft *d;
	struct status st;
	struct buf body, got;
	size_t off, step = 1;
	char *path;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	queue_entry_init(&e);
	e.sender = xstrdup("a@example.org");
	queue_add_recipient(&e, "b@example.org", NULL);
	buf_init(&body);
	fixture_big_message(&body, 20000);	/* ~ 500 KiB */
	CU_ASSERT_EQUAL_FATAL(queue_begin(qdir, &e, &d, &st), 0);
	CU_ASSERT(qid_valid(e.id));
	/* Small and large pieces, across the draft's buffer size. */
	for (off = 0; off < body.len; off += step, step = step * 3 + 1) {
		size_t n = body.len - off < step ? body.len - off : step;

		CU_ASSERT_EQUAL_FATAL(queue_write(d, body.data + off, n, &st),
				      0);
	}
	/* No qf before the commit. */
	CU_ASSERT(!qexists('q', e.id));
	CU_ASSERT_EQUAL_FATAL(queue_commit(d, &e, &st), 0);
	CU_ASSERT_EQUAL(e.body_size, body.len);
	path = qpath('d', e.id);
	buf_init(&got);
	CU_ASSERT_EQUAL(fixture_read_file(path, &got), 0);
	CU_ASSERT_EQUAL(got.len, body.len);
	CU_ASSERT(memcmp(got.data, body.data, body.len) == 0);
	free(path);
	buf_free(&got);
	buf_free(&body);
	queue_entry_free(&e);
}

static void
test_queue_abort_removes_the_draft(void)
{
	struct queue_entry e;
	struct queue_draft *d;
	struct status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	queue_entry_init(&e);
	CU_ASSERT_EQUAL_FATAL(queue_begin(qdir, &e, &d, &st), 0);
	CU_ASSERT_EQUAL(queue_write(d, "abc", 3, &st), 0);
	CU_ASSERT(qexists('d', e.id));
	queue_abort(d);
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 0);
	queue_abort(NULL);
	queue_entry_free(&e);
}

struct limited {
	size_t body_len;
	size_t header_lines;
};

/* queue_create with a file size limit (SIGXFSZ ignored: write gets
 * EFBIG). Returns 0 when it failed as it should. */
static int
create_with_size_limit(void *arg)
{
	const struct limited *lim = arg;
	struct queue_entry e;
	struct status st;
	struct rlimit rl;
	struct buf body;
	size_t i;
	int fd, rc;

	buf_init(&body);
	for (i = 0; i < lim->body_len; i++)
		buf_putc(&body, (char)('a' + i % 26));
	fd = write_body_file("body", body.data, body.len);
	if (fd < 0)
		return 10;
	queue_entry_init(&e);
	e.sender = xstrdup("a@example.org");
	queue_add_recipient(&e, "b@example.org", NULL);
	for (i = 0; i < lim->header_lines; i++)
		buf_printf(&e.headers, "X-Filler-%zu: %s\n", i,
			   "0123456789012345678901234567890123456789");
	signal(SIGXFSZ, SIG_IGN);
	rl.rlim_cur = rl.rlim_max = 16384;
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		return 11;
	rc = queue_create(qdir, &e, fd, &st);
	close(fd);
	queue_entry_free(&e);
	buf_free(&body);
	if (rc != -1)
		return 12;
	if (strstr(st.text, "File too large") == NULL)
		return 13;
	return st.exit_code == EX_CANTCREAT ? 0 : 14;
}

static void
test_queue_create_leaves_nothing_when_the_df_write_fails(void)
{
	struct limited lim = { 200000, 1 };

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	CU_ASSERT_EQUAL(fixture_in_child(create_with_size_limit, &lim), 0);
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 0);
}

static void
test_queue_create_leaves_nothing_when_the_qf_write_fails(void)
{
	/* The df fits, the tf does not: the df must go too. */
	struct limited lim = { 1000, 2000 };

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	CU_ASSERT_EQUAL(fixture_in_child(create_with_size_limit, &lim), 0);
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 0);
}

static int
create_in_readonly_dir(void *arg)
{
	struct queue_entry e;
	struct status st;
	int fd, rc;

	(void)arg;
	fd = write_body_file("body", "hello\n", 6);
	if (fd < 0)
		return 10;
	/* root writes anywhere: become someone the mode applies to. */
	if (geteuid() == 0 &&
	    privs_become(TEST_UID, TEST_UID, (gid_t)-1, &st) < 0)
		return 11;
	queue_entry_init(&e);
	e.sender = xstrdup("a@example.org");
	queue_add_recipient(&e, "b@example.org", NULL);
	rc = queue_create(qdir, &e, fd, &st);
	queue_entry_free(&e);
	close(fd);
	if (rc != -1)
		return 12;
	if (strstr(st.text, "Permission denied") == NULL)
		return 13;
	/* Not the sender's fault: it must retry, not bounce. */
	return st.exit_code == EX_TEMPFAIL ? 0 : 14;
}

static void
test_queue_create_fails_cleanly_in_a_readonly_dir(void)
{
	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	if (geteuid() == 0) {
		CU_ASSERT_EQUAL(chown(qdir, TEST_UID, TEST_UID), 0);
		CU_ASSERT_EQUAL(chmod(top, 0755), 0);
	}
	CU_ASSERT_EQUAL(chmod(qdir, 0500), 0);
	CU_ASSERT_EQUAL(fixture_in_child(create_in_readonly_dir, NULL), 0);
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 0);
}

static int
create_many(void *arg)
{
	int child = *(const int *)arg, i;
	struct queue_entry e;
	struct queue_draft *d;
	struct status st;
	struct buf body;

	buf_init(&body);
	for (i = 0; i < PER_CHILD; i++) {
		queue_entry_init(&e);
		buf_reset(&body);
		buf_printf(&body, "child %d message %d\n", child, i);
		buf_printf(&e.headers, "Subject: %d/%d\n", child, i);
		e.sender = xmalloc(64);
		snprintf(e.sender, 64, "c%d-%d@example.org", child, i);
		queue_add_recipient(&e, "rcpt@example.org", NULL);
		if (queue_begin(qdir, &e, &d, &st) < 0 ||
		    queue_write(d, body.data, body.len, &st) < 0 ||
		    queue_commit(d, &e, &st) < 0) {
			fprintf(stderr, "child %d: %s\n", child, st.text);
			return 1;
		}
		queue_entry_free(&e);
	}
	buf_free(&body);
	return 0;
}

struct census {
	unsigned char seen[CHILDREN][PER_CHILD];
	int entries, bad;
};

static int
count_entry(const char *id, void *arg)
{
	struct census *c = arg;
	struct queue_entry e;
	struct status st;
	struct buf df, want;
	int child, i;
	char *path;

	if (queue_read(qdir, id, &e, &st) < 0) {
		c->bad++;
		return 0;
	}
	c->entries++;
	buf_init(&df);
	buf_init(&want);
	path = qpath('d', id);
	if (sscanf(e.sender, "c%d-%d@", &child, &i) != 2 || child < 0 ||
	    child >= CHILDREN || i < 0 || i >= PER_CHILD ||
	    fixture_read_file(path, &df) < 0) {
		c->bad++;
	} else {
		buf_printf(&want, "child %d message %d\n", child, i);
		c->seen[child][i]++;
		if (df.len != e.body_size || strcmp(df.data, want.data) != 0 ||
		    e.nrecipients != 1)
			c->bad++;
	}
	free(path);
	buf_free(&df);
	buf_free(&want);
	queue_entry_free(&e);
	return 0;
}

static void
test_queue_concurrent_creates_are_distinct_and_complete(void)
{
	static struct census census;
	int ids[CHILDREN], child, i, j, wstatus, ok = 1;
	pid_t pids[CHILDREN];
	struct status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	fflush(NULL);
	for (child = 0; child < CHILDREN; child++) {
		ids[child] = child;
		pids[child] = fork();
		if (pids[child] == 0)
			_exit(create_many(&ids[child]));
		CU_ASSERT(pids[child] > 0);
	}
	for (child = 0; child < CHILDREN; child++) {
		if (pids[child] <= 0)
			continue;
		CU_ASSERT(waitpid(pids[child], &wstatus, 0) == pids[child] &&
			  WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
	}
	memset(&census, 0, sizeof(census));
	CU_ASSERT_EQUAL(queue_list(qdir, count_entry, &census, &st), 0);
	CU_ASSERT_EQUAL(census.entries, CHILDREN * PER_CHILD);
	CU_ASSERT_EQUAL(census.bad, 0);
	for (i = 0; i < CHILDREN; i++)
		for (j = 0; j < PER_CHILD; j++)
			if (census.seen[i][j] != 1)
				ok = 0;
	CU_ASSERT(ok);
	/* A df and a qf each; no tf. */
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 2 * CHILDREN * PER_CHILD);
}

/* Creates a message with one recipient; its id goes to e->id. */
static void
make_message(struct queue_entry *e)
{
	struct queue_draft *d;
	struct status st;

	queue_entry_init(e);
	e->sender = xstrdup("a@example.org");
	queue_add_recipient(e, "b@example.org", NULL);
	queue_add_recipient(e, "c@example.org", NULL);
	CU_ASSERT_EQUAL_FATAL(queue_begin(qdir, e, &d, &st), 0);
	CU_ASSERT_EQUAL_FATAL(queue_write(d, "body\n", 5, &st), 0);
	CU_ASSERT_EQUAL_FATAL(queue_commit(d, e, &st), 0);
}

static int
lock_from_child(void *arg)
{
	struct status st;
	int fd;
	enum queue_lock_result rc = queue_lock(qdir, arg, &fd, &st);

	if (rc == QUEUE_LOCKED)
		queue_unlock(fd);
	return (int)rc + 10;
}

static void
test_queue_lock_is_exclusive_and_survives_update(void)
{
	struct queue_entry e, back;
	struct status st;
	struct stat before, after;
	char *qf;
	int fd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	make_message(&e);
	qf = qpath('q', e.id);
	CU_ASSERT_EQUAL_FATAL(queue_lock(qdir, e.id, &fd, &st), QUEUE_LOCKED);
	CU_ASSERT_EQUAL(fixture_in_child(lock_from_child, e.id),
			QUEUE_LOCK_BUSY + 10);
	/* A rewrite of the qf (a new inode) keeps the lock. */
	CU_ASSERT_EQUAL(stat(qf, &before), 0);
	queue_recipient_set(&e.recipients[0], QUEUE_SENT, "2.0.0", "ok");
	e.tries = 1;
	CU_ASSERT_EQUAL(queue_update(qdir, &e, &st), 0);
	CU_ASSERT_EQUAL(stat(qf, &after), 0);
	CU_ASSERT_NOT_EQUAL(before.st_ino, after.st_ino);
	CU_ASSERT(!qexists('t', e.id));
	CU_ASSERT_EQUAL(fixture_in_child(lock_from_child, e.id),
			QUEUE_LOCK_BUSY + 10);
	/* Also within this process, through another open file. */
	{
		int fd2;

		CU_ASSERT_EQUAL(queue_lock(qdir, e.id, &fd2, &st),
				QUEUE_LOCK_BUSY);
		CU_ASSERT_PTR_NOT_NULL(strstr(st.text, "busy"));
	}
	CU_ASSERT_EQUAL_FATAL(queue_read(qdir, e.id, &back, &st), 0);
	CU_ASSERT_EQUAL(back.recipients[0].state, QUEUE_SENT);
	CU_ASSERT_EQUAL(back.recipients[1].state, QUEUE_QUEUED);
	CU_ASSERT_EQUAL(back.tries, 1);
	queue_entry_free(&back);
	queue_unlock(fd);
	CU_ASSERT_EQUAL(fixture_in_child(lock_from_child, e.id),
			QUEUE_LOCKED + 10);
	free(qf);
	queue_entry_free(&e);
}

static void
test_queue_remove_takes_everything_and_lock_says_gone(void)
{
	struct queue_entry e;
	struct status st;
	char *tf;
	int fd, fd2;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	make_message(&e);
	CU_ASSERT_EQUAL(queue_append_transcript(qdir, e.id, "oops", &st), 0);
	tf = qpath('t', e.id);
	CU_ASSERT_EQUAL(fixture_write_text(tf, "V1\n"), 0);
	free(tf);
	CU_ASSERT_EQUAL_FATAL(queue_lock(qdir, e.id, &fd, &st), QUEUE_LOCKED);
	CU_ASSERT_EQUAL(queue_remove(qdir, e.id, &st), 0);
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 0);
	/* An update must not bring it back. */
	CU_ASSERT_EQUAL(queue_update(qdir, &e, &st), -1);
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 0);
	queue_unlock(fd);
	CU_ASSERT_EQUAL(queue_lock(qdir, e.id, &fd2, &st), QUEUE_LOCK_GONE);
	CU_ASSERT_EQUAL(fd2, -1);
	/* Removing twice is not an error. */
	CU_ASSERT_EQUAL(queue_remove(qdir, e.id, &st), 0);
	queue_entry_free(&e);
}

static void
test_queue_lock_without_body_is_an_error(void)
{
	struct queue_entry e;
	struct status st;
	char *df;
	int fd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	make_message(&e);
	df = qpath('d', e.id);
	CU_ASSERT_EQUAL(unlink(df), 0);
	CU_ASSERT_EQUAL(queue_lock(qdir, e.id, &fd, &st), QUEUE_LOCK_ERROR);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.text, "body is missing"));
	free(df);
	queue_entry_free(&e);
}

static void
test_queue_refuses_ids_that_are_not_ids(void)
{
	static const char *bad[] = {
		"../../etc/passw", "6AOAmnRk3xTq0", "6AOAmnRk3xTq0vv",
		"6AOAmnRk3x/q0v", "", "6AOAmnRk3xTq0y",
	};
	struct queue_entry e;
	struct status st;
	struct buf out;
	size_t i;
	int fd;

	buf_init(&out);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(queue_read(qdir, bad[i], &e, &st), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(st.text, "not a queue id"));
		queue_entry_free(&e);
		CU_ASSERT_EQUAL(queue_lock(qdir, bad[i], &fd, &st),
				QUEUE_LOCK_ERROR);
		CU_ASSERT_EQUAL(queue_remove(qdir, bad[i], &st), -1);
		CU_ASSERT_EQUAL(queue_append_transcript(qdir, bad[i], "x",
							&st), -1);
		CU_ASSERT_EQUAL(queue_read_transcript(qdir, bad[i], &out,
						      &st), -1);
		queue_entry_init(&e);
		snprintf(e.id, sizeof(e.id), "%s", bad[i]);
		CU_ASSERT_EQUAL(queue_update(qdir, &e, &st), -1);
		queue_entry_free(&e);
	}
	buf_free(&out);
}

static void
test_queue_transcript_appends_lines(void)
{
	struct queue_entry e;
	struct status st;
	struct buf out;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	make_message(&e);
	buf_init(&out);
	CU_ASSERT_EQUAL(queue_read_transcript(qdir, e.id, &out, &st), 0);
	CU_ASSERT_EQUAL(out.len, 0);
	CU_ASSERT_EQUAL(queue_append_transcript(qdir, e.id,
						"<b@example.org>: 451 later",
						&st), 0);
	CU_ASSERT_EQUAL(queue_append_transcript(qdir, e.id,
						"<c@example.org>: 550 no\n",
						&st), 0);
	CU_ASSERT_EQUAL(queue_read_transcript(qdir, e.id, &out, &st), 0);
	CU_ASSERT_STRING_EQUAL(out.data, "<b@example.org>: 451 later\n"
					 "<c@example.org>: 550 no\n");
	buf_free(&out);
	queue_entry_free(&e);
}

static int
collect_id(const char *id, void *arg)
{
	struct buf *out = arg;

	buf_puts(out, id);
	buf_putc(out, ' ');
	return 0;
}

static int
stop_at_second(const char *id, void *arg)
{
	int *calls = arg;

	(void)id;
	return ++*calls == 2 ? 7 : 0;
}

static void
write_named(char kind, const char *id, const char *text)
{
	char *path = qpath(kind, id);

	CU_ASSERT_EQUAL(fixture_write_text(path, text), 0);
	free(path);
}

static void
test_queue_list_gives_qf_ids_oldest_first(void)
{
	char newer[QID_SIZE], older[QID_SIZE], oldest[QID_SIZE];
	char orphan[QID_SIZE];
	struct buf got, want, junk;
	struct status st;
	int calls = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	qid_new(newer, 1800000000);
	qid_new(older, 1790000000);
	qid_new(oldest, 1700000000);
	qid_new(orphan, 1600000000);
	write_named('q', newer, "V1\nT1\nS\n.\n");
	write_named('q', oldest, "V1\nT1\nS\n.\n");
	write_named('q', older, "V1\nT1\nS\n.\n");
	/* Neither orphans nor other names are messages. */
	write_named('d', orphan, "");
	write_named('t', orphan, "");
	buf_init(&junk);
	buf_printf(&junk, "%s/qfnot-an-id", qdir);
	CU_ASSERT_EQUAL(fixture_write_text(junk.data, ""), 0);
	buf_reset(&junk);
	buf_printf(&junk, "%s/qf%s.bak", qdir, oldest);
	CU_ASSERT_EQUAL(fixture_write_text(junk.data, ""), 0);
	buf_free(&junk);
	buf_init(&got);
	buf_init(&want);
	buf_printf(&want, "%s %s %s ", oldest, older, newer);
	CU_ASSERT_EQUAL(queue_list(qdir, collect_id, &got, &st), 0);
	CU_ASSERT_STRING_EQUAL(got.data, want.data);
	CU_ASSERT_EQUAL(queue_list(qdir, stop_at_second, &calls, &st), 7);
	CU_ASSERT_EQUAL(calls, 2);
	buf_free(&got);
	buf_free(&want);
	CU_ASSERT_EQUAL(queue_list("/nonexistent/queue", collect_id, &got,
				   &st), -1);
	CU_ASSERT_EQUAL(st.exit_code, EX_TEMPFAIL);
}

static void
make_old(char kind, const char *id, time_t when)
{
	struct timespec times[2];
	char *path = qpath(kind, id);

	times[0].tv_sec = times[1].tv_sec = when;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	CU_ASSERT_EQUAL(utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW),
			0);
	free(path);
}

static void
test_queue_cleanup_removes_only_what_crashes_left(void)
{
	char old_orphan[QID_SIZE], new_orphan[QID_SIZE], locked[QID_SIZE];
	char stale_tf[QID_SIZE], lone_xf[QID_SIZE];
	struct queue_entry queued, busy;
	struct status st;
	time_t now = time(NULL);
	char *path;
	int fd, lock_fd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	/* A whole old message: kept, with its transcript. */
	make_message(&queued);
	CU_ASSERT_EQUAL(queue_append_transcript(qdir, queued.id, "x", &st), 0);
	make_old('d', queued.id, now - 7200);
	/* A df whose qf never came, two hours old: removed with its xf. */
	qid_new(old_orphan, now - 7200);
	write_named('d', old_orphan, "body");
	write_named('x', old_orphan, "x");
	make_old('d', old_orphan, now - 7200);
	/* The same but recent: it may still be being written. */
	qid_new(new_orphan, now);
	write_named('d', new_orphan, "body");
	/* An old orphan whose lock is held: someone works on it. */
	qid_new(locked, now - 7200);
	write_named('d', locked, "body");
	make_old('d', locked, now - 7200);
	path = qpath('d', locked);
	lock_fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	CU_ASSERT_EQUAL(flock(lock_fd, LOCK_EX), 0);
	/* A tf of a message nobody works on, a tf without any df, an xf
	 * without qf and df. */
	make_message(&busy);
	write_named('t', busy.id, "V1\n");
	qid_new(stale_tf, now);
	write_named('t', stale_tf, "V1\n");
	qid_new(lone_xf, now);
	write_named('x', lone_xf, "x");
	CU_ASSERT_EQUAL(queue_cleanup_orphans(qdir, now, &st), 5);
	CU_ASSERT(qexists('q', queued.id) && qexists('d', queued.id) &&
		  qexists('x', queued.id));
	CU_ASSERT(!qexists('d', old_orphan) && !qexists('x', old_orphan));
	CU_ASSERT(qexists('d', new_orphan));
	CU_ASSERT(qexists('d', locked));
	CU_ASSERT(!qexists('t', busy.id) && qexists('q', busy.id) &&
		  qexists('d', busy.id));
	CU_ASSERT(!qexists('t', stale_tf));
	CU_ASSERT(!qexists('x', lone_xf));
	/* A tf of a message whose lock is held is being written: kept. */
	CU_ASSERT_EQUAL_FATAL(queue_lock(qdir, busy.id, &fd, &st),
			      QUEUE_LOCKED);
	write_named('t', busy.id, "V1\n");
	CU_ASSERT_EQUAL(queue_cleanup_orphans(qdir, now + 86400, &st), 1);
	CU_ASSERT(qexists('t', busy.id));	/* locked: kept */
	CU_ASSERT(!qexists('d', new_orphan));	/* now a day old */
	CU_ASSERT(qexists('d', locked));
	queue_unlock(fd);
	close(lock_fd);
	CU_ASSERT_EQUAL(queue_cleanup_orphans(qdir, now + 86400, &st), 2);
	CU_ASSERT(!qexists('d', locked) && !qexists('t', busy.id));
	CU_ASSERT_EQUAL(fixture_count_entries(qdir), 5);
	queue_entry_free(&queued);
	queue_entry_free(&busy);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_queue_round_trip_of_every_record),
	UNIT_TEST(test_queue_format_is_one_record_a_line),
	UNIT_TEST(test_queue_writer_never_writes_what_the_reader_refuses),
	UNIT_TEST(test_queue_parse_decodes_either_case_and_refuses_bad_escapes),
	UNIT_TEST(test_queue_parse_refuses_malformed_files),
	UNIT_TEST(test_queue_unknown_records_are_written_back_in_place),
	UNIT_TEST(test_queue_refuses_a_newer_version),
	UNIT_TEST(test_queue_create_writes_body_and_envelope),
	UNIT_TEST(test_queue_draft_streams_large_bodies),
	UNIT_TEST(test_queue_abort_removes_the_draft),
	UNIT_TEST(test_queue_create_leaves_nothing_when_the_df_write_fails),
	UNIT_TEST(test_queue_create_leaves_nothing_when_the_qf_write_fails),
	UNIT_TEST(test_queue_create_fails_cleanly_in_a_readonly_dir),
	UNIT_TEST(test_queue_concurrent_creates_are_distinct_and_complete),
	UNIT_TEST(test_queue_lock_is_exclusive_and_survives_update),
	UNIT_TEST(test_queue_remove_takes_everything_and_lock_says_gone),
	UNIT_TEST(test_queue_lock_without_body_is_an_error),
	UNIT_TEST(test_queue_refuses_ids_that_are_not_ids),
	UNIT_TEST(test_queue_transcript_appends_lines),
	UNIT_TEST(test_queue_list_gives_qf_ids_oldest_first),
	UNIT_TEST(test_queue_cleanup_removes_only_what_crashes_left),
};

void
test_queue_register(void)
{
	fixture_suite_setup("queue", tests, UNIT_COUNT(tests), setup,
			    teardown);
}
