/*
 * Unit tests for lib/stats.c: the mailstats counters.
 */
#include <CUnit/CUnit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stats.h"
#include "suites.h"

static char *dir;
static char path[4096];

static void
setup(void)
{
	dir = fixture_tmpdir();
	snprintf(path, sizeof(path), "%s/statistics", dir ? dir : "/tmp");
}

static void
teardown(void)
{
	if (dir != NULL)
		fixture_rmtree(dir);
	free(dir);
	dir = NULL;
}

static void
test_stats_not_counted_without_the_file(void)
{
	CU_ASSERT_EQUAL(stats_open(path, 0), -1);
	stats_count_to(-1, STATS_LOCAL, 100);	/* harmless */
	CU_ASSERT_EQUAL(access(path, F_OK), -1);
}

static void
test_stats_counts_add_up(void)
{
	struct stats s;
	int fd;

	CU_ASSERT_EQUAL(stats_reset(path), 0);
	fd = stats_open(path, 0);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	stats_count_to(fd, STATS_LOCAL, 1000);
	stats_count_to(fd, STATS_LOCAL, 2048);
	stats_count_to(fd, STATS_PROG, 10);
	stats_count_from(fd, STATS_ESMTP, 5000);
	stats_count_rejected(fd, STATS_ESMTP);
	close(fd);
	CU_ASSERT_EQUAL(stats_read(path, &s), 0);
	CU_ASSERT_EQUAL(s.mailer[STATS_LOCAL].msgsto, 2);
	CU_ASSERT_EQUAL(s.mailer[STATS_LOCAL].bytes_to, 3048);
	CU_ASSERT_EQUAL(s.mailer[STATS_PROG].msgsto, 1);
	CU_ASSERT_EQUAL(s.mailer[STATS_ESMTP].msgsfr, 1);
	CU_ASSERT_EQUAL(s.mailer[STATS_ESMTP].bytes_from, 5000);
	CU_ASSERT_EQUAL(s.mailer[STATS_ESMTP].msgsrej, 1);
	CU_ASSERT_TRUE(s.since > 0);
}

/* Children sharing one descriptor, as deliver's do, lose no update. */
static void
test_stats_concurrent_updates_are_not_lost(void)
{
	struct stats s;
	int fd, i, status, ok = 1;
	pid_t pids[8];

	CU_ASSERT_EQUAL_FATAL(stats_reset(path), 0);
	fd = stats_open(path, 0);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	for (i = 0; i < 8; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			for (int j = 0; j < 100; j++)
				stats_count_to(fd, STATS_LOCAL, 10);
			_exit(0);
		}
	}
	for (i = 0; i < 8; i++)
		if (waitpid(pids[i], &status, 0) != pids[i] ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			ok = 0;
	close(fd);
	CU_ASSERT_TRUE(ok);
	CU_ASSERT_EQUAL(stats_read(path, &s), 0);
	CU_ASSERT_EQUAL(s.mailer[STATS_LOCAL].msgsto, 800);
	CU_ASSERT_EQUAL(s.mailer[STATS_LOCAL].bytes_to, 8000);
}

static void
test_stats_print_has_sendmails_layout(void)
{
	struct stats s;
	struct buf out;
	char *text = NULL;
	size_t len = 0;
	FILE *fp;
	int fd;

	CU_ASSERT_EQUAL_FATAL(stats_reset(path), 0);
	fd = stats_open(path, 0);
	stats_count_to(fd, STATS_LOCAL, 2048);
	stats_count_from(fd, STATS_LOCAL, 4096);
	close(fd);
	CU_ASSERT_EQUAL(stats_read(path, &s), 0);
	fp = open_memstream(&text, &len);
	stats_print(&s, fp);
	fclose(fp);
	buf_init(&out);
	buf_append(&out, text, len);
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "Statistics from "));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, " M   msgsfr  bytes_from   "
					       "msgsto    bytes_to  msgsrej "
					       "msgsdis  Mailer\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, " 3        1          4K "
					       "       1          2K        0 "
					       "      0  local\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "\n T        1          4K "
					       "       1          2K"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "\n C "));
	free(text);
	buf_free(&out);
}

static void
test_stats_reset_zeroes(void)
{
	struct stats s;
	int fd;

	CU_ASSERT_EQUAL_FATAL(stats_reset(path), 0);
	fd = stats_open(path, 0);
	stats_count_to(fd, STATS_FILE, 1);
	close(fd);
	CU_ASSERT_EQUAL(stats_reset(path), 0);
	CU_ASSERT_EQUAL(stats_read(path, &s), 0);
	CU_ASSERT_EQUAL(s.mailer[STATS_FILE].msgsto, 0);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_stats_not_counted_without_the_file),
	UNIT_TEST(test_stats_counts_add_up),
	UNIT_TEST(test_stats_concurrent_updates_are_not_lost),
	UNIT_TEST(test_stats_print_has_sendmails_layout),
	UNIT_TEST(test_stats_reset_zeroes),
};

void
test_stats_register(void)
{
	fixture_suite_setup("stats", tests, UNIT_COUNT(tests), setup,
			    teardown);
}
