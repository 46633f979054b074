/*
 * qid: shape, validity, uniqueness and the time prefix of queue ids.
 */
#include <CUnit/CUnit.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qid.h"
#include "suites.h"

static time_t
utc(int year, int mon, int mday, int hour, int min, int sec)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	return timegm(&tm);
}

static void
test_qid_new_is_14_valid_chars(void)
{
	char id[QID_SIZE];
	int i;

	for (i = 0; i < 100; i++) {
		memset(id, '!', sizeof(id));
		qid_new(id, time(NULL));
		CU_ASSERT_EQUAL(strlen(id), 14);
		CU_ASSERT_TRUE(qid_valid(id));
		CU_ASSERT_PTR_NULL(strpbrk(id, "/.yz-_ "));
	}
}

static void
test_qid_valid_rejects_malformed(void)
{
	CU_ASSERT_TRUE(qid_valid("6AOAmnRk3xTq0v"));
	CU_ASSERT_FALSE(qid_valid(""));
	CU_ASSERT_FALSE(qid_valid("6AOAmnRk3xTq0"));	/* 13 */
	CU_ASSERT_FALSE(qid_valid("6AOAmnRk3xTq0vw"));	/* 15 */
	CU_ASSERT_FALSE(qid_valid("6AOAmnRk3xTq0y"));	/* y is not base 60 */
	CU_ASSERT_FALSE(qid_valid("6AOAmnRk3xTq0z"));
	CU_ASSERT_FALSE(qid_valid("../../etc/pass"));
	CU_ASSERT_FALSE(qid_valid("6AOAmn k3xTq0v"));
	CU_ASSERT_FALSE(qid_valid("6AOAmn-k3xTq0v"));
	CU_ASSERT_FALSE(qid_valid("6AOAmn\xc3\xa9k3xTq0"));
}

static int
compare_ids(const void *a, const void *b)
{
	return memcmp(a, b, QID_SIZE);
}

static void
test_qid_ten_thousand_ids_are_distinct(void)
{
	enum { COUNT = 10000 };
	char (*ids)[QID_SIZE] = calloc(COUNT, QID_SIZE);
	time_t now = time(NULL);
	int i, dups = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
	for (i = 0; i < COUNT; i++)
		qid_new(ids[i], now);	/* one second: only the random part
					 * tells them apart */
	qsort(ids, COUNT, QID_SIZE, compare_ids);
	for (i = 1; i < COUNT; i++)
		if (memcmp(ids[i - 1], ids[i], QID_SIZE) == 0)
			dups++;
	CU_ASSERT_EQUAL(dups, 0);
	free(ids);
}

static void
test_qid_prefix_encodes_the_time(void)
{
	char a[QID_SIZE], b[QID_SIZE];
	time_t t = utc(2024, 3, 5, 16, 25, 33);

	qid_new(a, t);
	qid_new(b, t);
	/* year%60=4, month-1=2, day 5, 16h=G, 25m=P, 33s=X */
	CU_ASSERT_EQUAL(strncmp(a, "425GPX", 6), 0);
	CU_ASSERT_EQUAL(memcmp(a, b, 6), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(a + 6, b + 6, 8), 0);
	qid_new(b, t + 1);
	CU_ASSERT_EQUAL(strncmp(b, "425GPY", 6), 0);
	qid_new(b, utc(2024, 12, 31, 23, 59, 59));
	CU_ASSERT_EQUAL(strncmp(b, "4BVNxx", 6), 0);
	qid_new(b, 0);
	CU_ASSERT_EQUAL(strncmp(b, "A01000", 6), 0);
}

static void
test_qid_prefix_sorts_by_age_within_a_year(void)
{
	char early[QID_SIZE], late[QID_SIZE];

	qid_new(early, utc(2025, 1, 31, 9, 0, 0));
	qid_new(late, utc(2025, 2, 1, 8, 0, 0));
	CU_ASSERT(memcmp(early, late, 6) < 0);
	qid_new(late, utc(2025, 1, 31, 9, 0, 1));
	CU_ASSERT(memcmp(early, late, 6) < 0);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_qid_new_is_14_valid_chars),
	UNIT_TEST(test_qid_valid_rejects_malformed),
	UNIT_TEST(test_qid_ten_thousand_ids_are_distinct),
	UNIT_TEST(test_qid_prefix_encodes_the_time),
	UNIT_TEST(test_qid_prefix_sorts_by_age_within_a_year),
};

void
test_qid_register(void)
{
	fixture_suite("qid", tests, UNIT_COUNT(tests));
}
