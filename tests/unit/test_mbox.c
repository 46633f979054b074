/*
 * mbox: appends under both locks, refuses unsafe files, and leaves the
 * mbox as it was after any failure, including a killed delivery.
 */
#include <CUnit/CUnit.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mbox.h"
#include "suites.h"

#define HEAD "From alice@example.org Tue Nov 14 22:13:20 2023\n" \
	     "Return-Path: <alice@example.org>\n" \
	     "Delivered-To: bob@example.org\n"
#define MSG1 "Subject: one\n\nfirst\n"
#define MSG2 "Subject: two\n\nsecond\n"
#define FORM1 HEAD MSG1 "\n"
#define FORM2 HEAD MSG2 "\n"
#define OLD "From x@y Mon Jan  1 00:00:00 2024\nSubject: old\n\nold\n\n"
#define HALF "From half\nSubject: cut"	/* what a killed delivery left */

struct box {
	char *dir;
	struct buf path;	/* DIR/mbox */
	struct buf lock;	/* DIR/mbox.lock */
	struct mbox_options opts;
	struct msgform form;
	struct status st;
};

static struct box box;	/* a fresh one for every test */

static void
box_init(void)
{
	memset(&box, 0, sizeof(box));
	buf_init(&box.path);
	buf_init(&box.lock);
	box.dir = fixture_tmpdir();
	if (box.dir == NULL)
		abort();	/* no temporary directory: nothing can run */
	buf_printf(&box.path, "%s/mbox", box.dir);
	buf_printf(&box.lock, "%s/mbox.lock", box.dir);
	box.opts.create_mode = 0600;
	box.opts.create_gid = (gid_t)-1;
	box.opts.owner = getuid();
	box.opts.lock_timeout = 5;
	box.form.sender = "alice@example.org";
	box.form.delivered_to = "bob@example.org";
	box.form.now = 1700000000;	/* main() sets TZ=UTC */
}

static void
box_done(void)
{
	CU_ASSERT_EQUAL(fixture_rmtree(box.dir), 0);
	free(box.dir);
	buf_free(&box.path);
	buf_free(&box.lock);
}

/* Delivers text; 0 or -1 with box.st set. */
static int
box_deliver(const char *text)
{
	struct message m;
	int rc;

	status_ok(&box.st);
	if (fixture_message(&m, text, strlen(text), box.dir, &box.st) < 0)
		return -2;
	rc = mbox_deliver(box.path.data, &box.opts, &m, &box.form, &box.st);
	message_free(&m);
	return rc;
}

static int
no_lock_left(void)
{
	return access(box.lock.data, F_OK) < 0 && errno == ENOENT;
}

/* A delivery fails with 75, a reason containing why, and path as it was. */
static void
assert_refused(const char *why, const char *path, const char *content)
{
	CU_ASSERT_EQUAL(box_deliver(MSG1), -1);
	CU_ASSERT_EQUAL(box.st.exit_code, EX_TEMPFAIL);
	CU_ASSERT_PTR_NOT_NULL(strstr(box.st.text, why));
	CU_ASSERT_TRUE(fixture_file_is(path, content));
	CU_ASSERT_TRUE(no_lock_left());
}

static void
test_mbox_creates_file_with_mode_and_no_lock_left(void)
{
	struct stat sb;

	box.opts.create_mode = 0660;	/* beyond umask 022 */
	CU_ASSERT_EQUAL(box_deliver(MSG1), 0);
	CU_ASSERT_EQUAL(box.st.exit_code, EX_OK);
	CU_ASSERT_EQUAL_FATAL(lstat(box.path.data, &sb), 0);
	CU_ASSERT(S_ISREG(sb.st_mode));
	CU_ASSERT_EQUAL(sb.st_mode & 07777, 0660);
	CU_ASSERT_EQUAL(sb.st_uid, getuid());
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, FORM1));
	CU_ASSERT_TRUE(no_lock_left());
}

static void
test_mbox_two_deliveries_read_back_exactly(void)
{
	CU_ASSERT_EQUAL(box_deliver(MSG1), 0);
	CU_ASSERT_EQUAL(box_deliver("From alice@example.org Fri Jan  5 "
				    "10:00:00 2024\n" MSG2), 0);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, FORM1 FORM2));
	CU_ASSERT_TRUE(no_lock_left());
}

static void
test_mbox_separates_from_file_without_final_newline(void)
{
	CU_ASSERT_FATAL(fixture_write_text(box.path.data, OLD "cut") == 0);
	CU_ASSERT_EQUAL(box_deliver(MSG1), 0);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, OLD "cut\n\n" FORM1));
}

static void
test_mbox_refuses_symlink(void)
{
	struct buf target;

	buf_init(&target);
	buf_printf(&target, "%s/target", box.dir);
	CU_ASSERT_FATAL(fixture_write_text(target.data, OLD) == 0);
	CU_ASSERT_FATAL(symlink(target.data, box.path.data) == 0);
	assert_refused("symbolic link", target.data, OLD);
	buf_free(&target);
}

static int
deliver_with_alarm(void *arg)
{
	(void)arg;
	alarm(10);	/* a blocked open ends the child here */
	if (box_deliver(MSG1) != -1)
		return 1;
	return box.st.exit_code == EX_TEMPFAIL ? 0 : 2;
}

static void
test_mbox_refuses_fifo_without_blocking(void)
{
	time_t t0 = time(NULL);
	int reader;

	CU_ASSERT_FATAL(mkfifo(box.path.data, 0600) == 0);
	CU_ASSERT_EQUAL(fixture_in_child(deliver_with_alarm, NULL), 0);
	/* With a reader the open succeeds: the file type check refuses. */
	reader = open(box.path.data, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	CU_ASSERT_FATAL(reader >= 0);
	CU_ASSERT_EQUAL(fixture_in_child(deliver_with_alarm, NULL), 0);
	CU_ASSERT_EQUAL(box_deliver(MSG1), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(box.st.text, "not a regular file"));
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, ""));	/* untouched */
	close(reader);
	CU_ASSERT(time(NULL) - t0 < 5);
}

static void
test_mbox_refuses_hard_linked_file(void)
{
	struct buf other;

	buf_init(&other);
	buf_printf(&other, "%s/other", box.dir);
	CU_ASSERT_FATAL(fixture_write_text(box.path.data, OLD) == 0);
	CU_ASSERT_FATAL(link(box.path.data, other.data) == 0);
	assert_refused("hard link", box.path.data, OLD);
	buf_free(&other);
}

static void
test_mbox_refuses_file_of_another_user(void)
{
	CU_ASSERT_FATAL(fixture_write_text(box.path.data, OLD) == 0);
	CU_ASSERT_FATAL(chown(box.path.data, 60123, 60123) == 0);
	assert_refused("60123", box.path.data, OLD);
}

static void
test_mbox_times_out_on_dot_lock_of_live_process(void)
{
	struct buf lock_text;
	time_t t0;

	buf_init(&lock_text);
	buf_printf(&lock_text, "%ld\n", (long)getpid());
	CU_ASSERT_FATAL(fixture_write_text(box.path.data, OLD) == 0);
	CU_ASSERT_FATAL(fixture_write_text(box.lock.data, lock_text.data) ==
			0);
	box.opts.lock_timeout = 1;
	t0 = time(NULL);
	CU_ASSERT_EQUAL(box_deliver(MSG1), -1);
	CU_ASSERT(time(NULL) - t0 <= 3);
	CU_ASSERT_EQUAL(box.st.exit_code, 75);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, OLD));
	/* Someone else's lock stays as it was. */
	CU_ASSERT_TRUE(fixture_file_is(box.lock.data, lock_text.data));
	buf_free(&lock_text);
}

static void
test_mbox_times_out_on_fcntl_lock_of_live_process(void)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int ready[2], fd, got;
	time_t t0;
	char c;
	pid_t pid;

	CU_ASSERT_FATAL(fixture_write_text(box.path.data, OLD) == 0);
	CU_ASSERT_FATAL(pipe(ready) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		fd = open(box.path.data, O_WRONLY);
		if (fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0 &&
		    write(ready[1], "x", 1) == 1)
			pause();	/* until killed */
		_exit(1);
	}
	close(ready[1]);
	got = read(ready[0], &c, 1);
	close(ready[0]);
	box.opts.lock_timeout = 1;
	t0 = time(NULL);
	if (got == 1) {
		CU_ASSERT_EQUAL(box_deliver(MSG1), -1);
		CU_ASSERT(time(NULL) - t0 <= 3);
		CU_ASSERT_EQUAL(box.st.exit_code, 75);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	CU_ASSERT_EQUAL(got, 1);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, OLD));
}

/* What a delivery killed while it held the locks leaves: its partial
 * message, then maybe more mail (after), and a dot-lock naming a dead pid
 * and the old size and inode (changed by the deltas). */
static void
leave_killed_delivery(const char *after, long long size_delta,
		      unsigned long long inode_delta)
{
	struct buf lock_text, content;
	struct stat sb;
	pid_t dead = fork();

	if (dead == 0)
		_exit(0);
	CU_ASSERT_FATAL(dead > 0 && waitpid(dead, NULL, 0) == dead);
	CU_ASSERT_FATAL(fixture_write_text(box.path.data, FORM1) == 0);
	CU_ASSERT_FATAL(stat(box.path.data, &sb) == 0);
	buf_init(&lock_text);
	buf_printf(&lock_text, "%ld\ndeliver-append %lld %llu\n", (long)dead,
		   (long long)sb.st_size + size_delta,
		   (unsigned long long)sb.st_ino + inode_delta);
	CU_ASSERT_FATAL(fixture_write_text(box.lock.data, lock_text.data) ==
			0);
	buf_init(&content);
	buf_puts(&content, FORM1 HALF);
	buf_puts(&content, after);
	CU_ASSERT_FATAL(fixture_write_text(box.path.data, content.data) == 0);
	buf_free(&content);
	buf_free(&lock_text);
}

static void
test_mbox_rolls_back_delivery_killed_while_locked(void)
{
	leave_killed_delivery("", 0, 0);
	CU_ASSERT_EQUAL(box_deliver(MSG2), 0);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, FORM1 FORM2));
	CU_ASSERT_TRUE(no_lock_left());
}

static void
test_mbox_ignores_stale_mark_for_other_inode_or_size(void)
{
	leave_killed_delivery("", 0, 1);	/* another file's mark */
	CU_ASSERT_EQUAL(box_deliver(MSG2), 0);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data,
				       FORM1 HALF "\n\n" FORM2));
	box_done();
	box_init();
	/* Beyond the end: truncating would add zeros. */
	leave_killed_delivery("", 1000, 0);
	CU_ASSERT_EQUAL(box_deliver(MSG2), 0);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data,
				       FORM1 HALF "\n\n" FORM2));
}

static void
test_mbox_keeps_mail_appended_after_killed_one_across_64k(void)
{
	static const size_t offsets[] = { 65531, 65532, 65534, 65535, 65536 };
	struct buf after, want;
	size_t i;

	/* Another "From " line after the partial message is other mail:
	 * not cut, also where it spans the 64 KiB pieces the check reads. */
	buf_init(&after);
	buf_init(&want);
	for (i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		buf_reset(&after);
		while (after.len + strlen(HALF) < offsets[i] - 1)
			buf_putc(&after, 'x');
		buf_puts(&after, "\nFrom other@x Mon Jan  1 00:00:00 2024\n\n");
		leave_killed_delivery(after.data, 0, 0);
		CU_ASSERT_EQUAL(box_deliver(MSG2), 0);
		buf_reset(&want);
		buf_printf(&want, "%s%s%s", FORM1 HALF, after.data, FORM2);
		CU_ASSERT_TRUE(fixture_file_is(box.path.data, want.data));
		box_done();
		box_init();
	}
	buf_free(&after);
	buf_free(&want);
}

/* Delivers a message larger than the file may grow: with SIGXFSZ ignored
 * the write fails (EFBIG), by default the signal kills us mid-message. */
static int
deliver_past_size_limit(void *arg)
{
	int ignore = *(const int *)arg;
	struct rlimit rl = { 0, 0 };
	struct buf big;
	int rc;

	signal(SIGXFSZ, ignore ? SIG_IGN : SIG_DFL);
	setrlimit(RLIMIT_CORE, &rl);
	rl.rlim_cur = rl.rlim_max = strlen(FORM1) + 300;
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		return 10;
	buf_init(&big);
	fixture_big_message(&big, 3000);
	rc = box_deliver(big.data);
	buf_free(&big);
	if (rc != -1)
		return 11;
	return box.st.exit_code == EX_CANTCREAT ? 0 : 12;
}

static void
test_mbox_truncates_on_write_error(void)
{
	int ignore = 1;

	CU_ASSERT_FATAL(fixture_write_text(box.path.data, FORM1) == 0);
	CU_ASSERT_EQUAL(fixture_in_child(deliver_past_size_limit, &ignore), 0);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, FORM1));
	CU_ASSERT_TRUE(no_lock_left());
}

static void
test_mbox_next_delivery_rolls_back_a_killed_one(void)
{
	struct buf lock_text;
	struct stat sb;
	int ignore = 0;

	buf_init(&lock_text);
	CU_ASSERT_FATAL(fixture_write_text(box.path.data, FORM1) == 0);
	CU_ASSERT_EQUAL(fixture_in_child(deliver_past_size_limit, &ignore),
			128 + SIGXFSZ);
	/* Killed mid-message: part of it is there, and the lock. */
	CU_ASSERT(stat(box.path.data, &sb) == 0 &&
		  sb.st_size > (off_t)strlen(FORM1));
	CU_ASSERT_EQUAL(fixture_read_file(box.lock.data, &lock_text), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(lock_text.data, "\ndeliver-append "));
	CU_ASSERT_EQUAL(box_deliver(MSG2), 0);
	CU_ASSERT_TRUE(fixture_file_is(box.path.data, FORM1 FORM2));
	CU_ASSERT_TRUE(no_lock_left());
	buf_free(&lock_text);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_mbox_creates_file_with_mode_and_no_lock_left),
	UNIT_TEST(test_mbox_two_deliveries_read_back_exactly),
	UNIT_TEST(test_mbox_separates_from_file_without_final_newline),
	UNIT_TEST(test_mbox_refuses_symlink),
	UNIT_TEST(test_mbox_refuses_fifo_without_blocking),
	UNIT_TEST(test_mbox_refuses_hard_linked_file),
	UNIT_TEST(test_mbox_refuses_file_of_another_user),
	UNIT_TEST(test_mbox_times_out_on_dot_lock_of_live_process),
	UNIT_TEST(test_mbox_times_out_on_fcntl_lock_of_live_process),
	UNIT_TEST(test_mbox_rolls_back_delivery_killed_while_locked),
	UNIT_TEST(test_mbox_ignores_stale_mark_for_other_inode_or_size),
	UNIT_TEST(test_mbox_keeps_mail_appended_after_killed_one_across_64k),
	UNIT_TEST(test_mbox_truncates_on_write_error),
	UNIT_TEST(test_mbox_next_delivery_rolls_back_a_killed_one),
};

void
test_mbox_register(void)
{
	fixture_suite_setup("mbox", tests, UNIT_COUNT(tests), box_init,
			    box_done);
}
