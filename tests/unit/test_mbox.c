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

#define NOW 1700000000	/* Tue Nov 14 22:13:20 2023 UTC; main() sets TZ */
#define HEAD "From alice@example.org Tue Nov 14 22:13:20 2023\n" \
	     "Return-Path: <alice@example.org>\n" \
	     "Delivered-To: bob@example.org\n"
#define MSG1 "Subject: one\n\nfirst\n"
#define MSG2 "Subject: two\n\nsecond\n"
#define FORM1 HEAD MSG1 "\n"
#define FORM2 HEAD MSG2 "\n"
#define OLD "From x@y Mon Jan  1 00:00:00 2024\nSubject: old\n\nold\n\n"

struct box {
	char *dir;
	struct buf path;	/* DIR/mbox */
	struct buf lock;	/* DIR/mbox.lock */
	struct mbox_options opts;
	struct msgform form;
	struct status st;
};

static int
box_init(struct box *b)
{
	memset(b, 0, sizeof(*b));
	buf_init(&b->path);
	buf_init(&b->lock);
	b->dir = fixture_tmpdir();
	if (b->dir == NULL)
		return -1;
	buf_printf(&b->path, "%s/mbox", b->dir);
	buf_printf(&b->lock, "%s/mbox.lock", b->dir);
	b->opts.create_mode = 0600;
	b->opts.create_gid = (gid_t)-1;
	b->opts.owner = getuid();
	b->opts.lock_timeout = 5;
	b->form.sender = "alice@example.org";
	b->form.delivered_to = "bob@example.org";
	b->form.now = NOW;
	return 0;
}

static void
box_done(struct box *b)
{
	CU_ASSERT_EQUAL(fixture_rmtree(b->dir), 0);
	free(b->dir);
	buf_free(&b->path);
	buf_free(&b->lock);
}

/* Delivers text; 0 or -1 with b->st set. */
static int
box_deliver(struct box *b, const char *text)
{
	struct message m;
	int rc;

	status_ok(&b->st);
	if (fixture_message(&m, text, strlen(text), b->dir, &b->st) < 0)
		return -2;
	rc = mbox_deliver(b->path.data, &b->opts, &m, &b->form, &b->st);
	message_free(&m);
	return rc;
}

/* The file at path holds exactly want. */
static int
file_is(const char *path, const char *want)
{
	struct buf content;
	int same;

	buf_init(&content);
	same = fixture_read_file(path, &content) == 0 &&
	       content.len == strlen(want) &&
	       memcmp(content.data, want, content.len) == 0;
	buf_free(&content);
	return same;
}

static int
write_text(const char *path, const char *text)
{
	return fixture_write_file(path, text, strlen(text));
}

static void
test_mbox_creates_file_with_mode_and_no_lock_left(void)
{
	struct box b;
	struct stat sb;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	b.opts.create_mode = 0660;	/* beyond umask 022 */
	CU_ASSERT_EQUAL(box_deliver(&b, MSG1), 0);
	CU_ASSERT_EQUAL(b.st.exit_code, EX_OK);
	CU_ASSERT_EQUAL_FATAL(lstat(b.path.data, &sb), 0);
	CU_ASSERT(S_ISREG(sb.st_mode));
	CU_ASSERT_EQUAL(sb.st_mode & 07777, 0660);
	CU_ASSERT_EQUAL(sb.st_uid, getuid());
	CU_ASSERT_TRUE(file_is(b.path.data, FORM1));
	CU_ASSERT(access(b.lock.data, F_OK) < 0 && errno == ENOENT);
	box_done(&b);
}

static void
test_mbox_two_deliveries_read_back_exactly(void)
{
	struct box b;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	CU_ASSERT_EQUAL(box_deliver(&b, MSG1), 0);
	CU_ASSERT_EQUAL(box_deliver(&b, "From alice@example.org Fri Jan  5 "
					"10:00:00 2024\n" MSG2), 0);
	CU_ASSERT_TRUE(file_is(b.path.data, FORM1 FORM2));
	CU_ASSERT(access(b.lock.data, F_OK) < 0 && errno == ENOENT);
	box_done(&b);
}

static void
test_mbox_separates_from_file_without_final_newline(void)
{
	struct box b;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	CU_ASSERT_FATAL(write_text(b.path.data, "From x@y Mon Jan  1 "
						"00:00:00 2024\n\ncut") == 0);
	CU_ASSERT_EQUAL(box_deliver(&b, MSG1), 0);
	CU_ASSERT_TRUE(file_is(b.path.data, "From x@y Mon Jan  1 00:00:00 "
					    "2024\n\ncut\n\n" FORM1));
	box_done(&b);
}

static void
test_mbox_refuses_symlink(void)
{
	struct box b;
	struct buf target;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	buf_init(&target);
	buf_printf(&target, "%s/target", b.dir);
	CU_ASSERT_FATAL(write_text(target.data, OLD) == 0);
	CU_ASSERT_FATAL(symlink(target.data, b.path.data) == 0);
	CU_ASSERT_EQUAL(box_deliver(&b, MSG1), -1);
	CU_ASSERT_EQUAL(b.st.exit_code, EX_TEMPFAIL);
	CU_ASSERT_PTR_NOT_NULL(strstr(b.st.text, "symbolic link"));
	CU_ASSERT_TRUE(file_is(target.data, OLD));
	buf_free(&target);
	box_done(&b);
}

static int
deliver_with_alarm(void *arg)
{
	struct box *b = arg;

	alarm(10);	/* a blocked open would end the child here */
	if (box_deliver(b, MSG1) != -1)
		return 1;
	return b->st.exit_code == EX_TEMPFAIL ? 0 : 2;
}

static void
test_mbox_refuses_fifo_without_blocking(void)
{
	struct box b;
	struct timespec t0, t1;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	CU_ASSERT_FATAL(mkfifo(b.path.data, 0600) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CU_ASSERT_EQUAL(fixture_in_child(deliver_with_alarm, &b), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CU_ASSERT(t1.tv_sec - t0.tv_sec < 5);
	box_done(&b);
}

static void
test_mbox_refuses_hard_linked_file(void)
{
	struct box b;
	struct buf other;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	buf_init(&other);
	buf_printf(&other, "%s/other", b.dir);
	CU_ASSERT_FATAL(write_text(b.path.data, OLD) == 0);
	CU_ASSERT_FATAL(link(b.path.data, other.data) == 0);
	CU_ASSERT_EQUAL(box_deliver(&b, MSG1), -1);
	CU_ASSERT_EQUAL(b.st.exit_code, EX_TEMPFAIL);
	CU_ASSERT_PTR_NOT_NULL(strstr(b.st.text, "hard link"));
	CU_ASSERT_TRUE(file_is(b.path.data, OLD));
	buf_free(&other);
	box_done(&b);
}

static void
test_mbox_refuses_file_of_another_user(void)
{
	struct box b;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	CU_ASSERT_FATAL(write_text(b.path.data, OLD) == 0);
	CU_ASSERT_FATAL(chown(b.path.data, 60123, 60123) == 0);
	CU_ASSERT_EQUAL(box_deliver(&b, MSG1), -1);
	CU_ASSERT_EQUAL(b.st.exit_code, EX_TEMPFAIL);
	CU_ASSERT_PTR_NOT_NULL(strstr(b.st.text, "60123"));
	CU_ASSERT_TRUE(file_is(b.path.data, OLD));
	box_done(&b);
}

static double
seconds_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void
test_mbox_times_out_on_dot_lock_of_live_process(void)
{
	struct box b;
	struct buf lock_text;
	struct timespec t0;
	double took;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	buf_init(&lock_text);
	buf_printf(&lock_text, "%ld\n", (long)getpid());
	CU_ASSERT_FATAL(write_text(b.path.data, OLD) == 0);
	CU_ASSERT_FATAL(write_text(b.lock.data, lock_text.data) == 0);
	b.opts.lock_timeout = 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CU_ASSERT_EQUAL(box_deliver(&b, MSG1), -1);
	took = seconds_since(&t0);
	CU_ASSERT_EQUAL(b.st.exit_code, 75);
	CU_ASSERT(took >= 0.9 && took < 3.0);
	CU_ASSERT_TRUE(file_is(b.path.data, OLD));
	/* Someone else's lock stays. */
	CU_ASSERT_TRUE(file_is(b.lock.data, lock_text.data));
	buf_free(&lock_text);
	box_done(&b);
}

static void
test_mbox_times_out_on_fcntl_lock_of_live_process(void)
{
	struct box b;
	struct timespec t0;
	struct flock fl;
	int ready[2], fd;
	char c;
	pid_t pid;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	CU_ASSERT_FATAL(write_text(b.path.data, OLD) == 0);
	CU_ASSERT_FATAL(pipe(ready) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		fd = open(b.path.data, O_WRONLY);
		if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		pause();	/* until killed */
		_exit(0);
	}
	close(ready[1]);
	CU_ASSERT_FATAL(read(ready[0], &c, 1) == 1);
	close(ready[0]);
	b.opts.lock_timeout = 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CU_ASSERT_EQUAL(box_deliver(&b, MSG1), -1);
	CU_ASSERT(seconds_since(&t0) < 3.0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	CU_ASSERT_EQUAL(b.st.exit_code, 75);
	CU_ASSERT_TRUE(file_is(b.path.data, OLD));
	box_done(&b);
}

/* A pid that no longer runs. */
static pid_t
dead_pid(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return pid;
}

/* What a delivery killed after writing part of its message leaves: the
 * mbox grown by garbage and a dot-lock naming a dead pid and the old size. */
static void
leave_killed_delivery(struct box *b, unsigned long long inode_delta)
{
	struct buf lock_text;
	struct stat sb;
	int fd;

	CU_ASSERT_FATAL(write_text(b->path.data, FORM1) == 0);
	CU_ASSERT_FATAL(stat(b->path.data, &sb) == 0);
	buf_init(&lock_text);
	buf_printf(&lock_text, "%ld\ndeliver-append %lld %llu\n",
		   (long)dead_pid(), (long long)sb.st_size,
		   (unsigned long long)sb.st_ino + inode_delta);
	CU_ASSERT_FATAL(write_text(b->lock.data, lock_text.data) == 0);
	buf_free(&lock_text);
	fd = open(b->path.data, O_WRONLY | O_APPEND);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(write(fd, "From half\nSubject: cut", 22) == 22);
	close(fd);
}

static void
test_mbox_rolls_back_delivery_killed_while_locked(void)
{
	struct box b;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	leave_killed_delivery(&b, 0);
	CU_ASSERT_EQUAL(box_deliver(&b, MSG2), 0);
	CU_ASSERT_TRUE(file_is(b.path.data, FORM1 FORM2));
	CU_ASSERT(access(b.lock.data, F_OK) < 0 && errno == ENOENT);
	box_done(&b);
}

static void
test_mbox_keeps_data_when_stale_mark_names_another_file(void)
{
	struct box b;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	leave_killed_delivery(&b, 1);	/* a mark for a different inode */
	CU_ASSERT_EQUAL(box_deliver(&b, MSG2), 0);
	CU_ASSERT_TRUE(file_is(b.path.data, FORM1 "From half\nSubject: cut"
						  "\n\n" FORM2));
	box_done(&b);
}

static int
deliver_with_size_limit(void *arg)
{
	struct box *b = arg;
	struct rlimit rl;
	struct buf big;
	struct message m;
	int i, rc;

	/* Room for the locks, not for the message: writes fail EFBIG. */
	signal(SIGXFSZ, SIG_IGN);
	rl.rlim_cur = rl.rlim_max = strlen(FORM1) + 300;
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		return 10;
	buf_init(&big);
	buf_puts(&big, "Subject: big\n\n");
	for (i = 0; i < 3000; i++)
		buf_printf(&big, "line %d of a message that will not fit\n", i);
	if (fixture_message(&m, big.data, big.len, b->dir, &b->st) < 0)
		return 11;
	rc = mbox_deliver(b->path.data, &b->opts, &m, &b->form, &b->st);
	message_free(&m);
	buf_free(&big);
	if (rc != -1)
		return 12;
	return b->st.exit_code == EX_CANTCREAT ? 0 : 13;
}

static void
test_mbox_truncates_on_write_error(void)
{
	struct box b;

	CU_ASSERT_FATAL(box_init(&b) == 0);
	CU_ASSERT_FATAL(write_text(b.path.data, FORM1) == 0);
	CU_ASSERT_EQUAL(fixture_in_child(deliver_with_size_limit, &b), 0);
	CU_ASSERT_TRUE(file_is(b.path.data, FORM1));
	CU_ASSERT(access(b.lock.data, F_OK) < 0 && errno == ENOENT);
	box_done(&b);
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
	UNIT_TEST(test_mbox_keeps_data_when_stale_mark_names_another_file),
	UNIT_TEST(test_mbox_truncates_on_write_error),
};

void
test_mbox_register(void)
{
	fixture_suite("mbox", tests, UNIT_COUNT(tests));
}
