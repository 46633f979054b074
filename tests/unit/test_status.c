/*
 * status: ranking of results, errno classification, stat= texts.
 */
#include <CUnit/CUnit.h>

#include <errno.h>
#include <string.h>
#include <sysexits.h>

#include "status.h"
#include "suites.h"

static void
test_status_ok_is_success(void)
{
	struct status st;

	memset(&st, 'x', sizeof(st));
	status_ok(&st);
	CU_ASSERT_EQUAL(st.exit_code, EX_OK);
	CU_ASSERT_STRING_EQUAL(st.dsn, "2.0.0");
	CU_ASSERT_STRING_EQUAL(st.text, "");
}

static void
test_status_worse_prefers_temporary_failures(void)
{
	/* 75 (retry) outranks permanent failures, in either order. */
	CU_ASSERT_EQUAL(status_worse(EX_TEMPFAIL, EX_NOUSER), EX_TEMPFAIL);
	CU_ASSERT_EQUAL(status_worse(EX_NOUSER, EX_TEMPFAIL), EX_TEMPFAIL);
	CU_ASSERT_EQUAL(status_worse(EX_TEMPFAIL, EX_NOPERM), EX_TEMPFAIL);
	CU_ASSERT_EQUAL(status_worse(EX_NOPERM, EX_TEMPFAIL), EX_TEMPFAIL);
	CU_ASSERT_EQUAL(status_worse(75, 67), 75);
	CU_ASSERT_EQUAL(status_worse(77, 75), 75);
	/* Other temporary codes too. */
	CU_ASSERT_EQUAL(status_worse(EX_NOUSER, EX_IOERR), EX_IOERR);
	CU_ASSERT_EQUAL(status_worse(EX_UNAVAILABLE, EX_CONFIG), EX_CONFIG);
}

static void
test_status_worse_any_failure_outranks_success(void)
{
	static const int codes[] = { EX_USAGE, EX_NOUSER, EX_UNAVAILABLE,
				     EX_CANTCREAT, EX_TEMPFAIL, EX_NOPERM,
				     EX_CONFIG, 1 };
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		CU_ASSERT_EQUAL(status_worse(EX_OK, codes[i]), codes[i]);
		CU_ASSERT_EQUAL(status_worse(codes[i], EX_OK), codes[i]);
	}
	CU_ASSERT_EQUAL(status_worse(EX_OK, EX_OK), EX_OK);
}

static void
test_status_worse_does_not_depend_on_order(void)
{
	static const int codes[] = { EX_OK, EX_USAGE, EX_NOUSER, EX_NOHOST,
				     EX_UNAVAILABLE, EX_CANTCREAT, EX_IOERR,
				     EX_TEMPFAIL, EX_NOPERM, EX_CONFIG };
	size_t i, j, n = sizeof(codes) / sizeof(codes[0]);

	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++) {
			int w = status_worse(codes[i], codes[j]);

			CU_ASSERT(w == codes[i] || w == codes[j]);
			CU_ASSERT_EQUAL(w, status_worse(codes[j], codes[i]));
		}
	/* Within a class the higher code wins. */
	CU_ASSERT_EQUAL(status_worse(EX_NOUSER, EX_NOPERM), EX_NOPERM);
	CU_ASSERT_EQUAL(status_worse(EX_CONFIG, EX_TEMPFAIL), EX_CONFIG);
}

static void
test_status_temporary_classes(void)
{
	CU_ASSERT_TRUE(status_is_temporary(EX_TEMPFAIL));
	CU_ASSERT_TRUE(status_is_temporary(EX_OSERR));
	CU_ASSERT_TRUE(status_is_temporary(EX_IOERR));
	CU_ASSERT_TRUE(status_is_temporary(EX_CONFIG));
	CU_ASSERT_FALSE(status_is_temporary(EX_OK));
	CU_ASSERT_FALSE(status_is_temporary(EX_NOUSER));
	CU_ASSERT_FALSE(status_is_temporary(EX_NOPERM));
	CU_ASSERT_FALSE(status_is_temporary(EX_CANTCREAT));
	CU_ASSERT_FALSE(status_is_temporary(12345));
}

static void
test_status_errno_maps_disk_and_quota_errors(void)
{
	struct status st;
	const char *tail;

	CU_ASSERT_EQUAL(status_errno(&st, ENOSPC, "write %s", "/x"), -1);
	CU_ASSERT_EQUAL(st.exit_code, 75);
	CU_ASSERT_STRING_EQUAL(st.dsn, "4.3.1");
	CU_ASSERT_EQUAL(strncmp(st.text, "write /x: ", 10), 0);
	tail = strerror(ENOSPC);
	CU_ASSERT_STRING_EQUAL(st.text + 10, tail);

	status_errno(&st, EDQUOT, "quota");
	CU_ASSERT_EQUAL(st.exit_code, 75);
	CU_ASSERT_STRING_EQUAL(st.dsn, "4.2.2");

	status_errno(&st, EFBIG, "big");
	CU_ASSERT_EQUAL(st.exit_code, 73);
	CU_ASSERT_EQUAL(st.dsn[0], '5');

	status_errno(&st, EIO, "io");
	CU_ASSERT_EQUAL(st.exit_code, 75);
	CU_ASSERT_EQUAL(st.dsn[0], '4');
	status_errno(&st, EACCES, "perm");
	CU_ASSERT_EQUAL(st.exit_code, 75);
}

static void
test_status_set_picks_default_dsn(void)
{
	struct status st;

	CU_ASSERT_EQUAL(status_set(&st, EX_NOUSER, NULL, "no %s", "bob"), -1);
	CU_ASSERT_EQUAL(st.exit_code, EX_NOUSER);
	CU_ASSERT_STRING_EQUAL(st.dsn, "5.1.1");
	CU_ASSERT_STRING_EQUAL(st.text, "no bob");
	status_set(&st, EX_TEMPFAIL, NULL, "later");
	CU_ASSERT_STRING_EQUAL(st.dsn, "4.3.0");
	status_set(&st, EX_TEMPFAIL, "4.2.0", "locked");
	CU_ASSERT_STRING_EQUAL(st.dsn, "4.2.0");
}

static void
test_status_set_cuts_long_text(void)
{
	struct status st;
	char big[2 * STATUS_TEXT_MAX];

	memset(big, 'r', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	status_set(&st, EX_TEMPFAIL, NULL, "%s", big);
	CU_ASSERT_EQUAL(strlen(st.text), STATUS_TEXT_MAX - 1);
	status_errno(&st, ENOSPC, "%s", big);
	CU_ASSERT_EQUAL(strlen(st.text), STATUS_TEXT_MAX - 1);
}

static void
test_status_stat_texts(void)
{
	struct status st;
	char out[STATUS_TEXT_MAX + 32];

	status_ok(&st);
	CU_ASSERT_STRING_EQUAL(status_stat(&st, out, sizeof(out)), "Sent");
	status_set(&st, EX_TEMPFAIL, NULL, "mailbox locked");
	CU_ASSERT_STRING_EQUAL(status_stat(&st, out, sizeof(out)),
			       "Deferred: mailbox locked");
	status_set(&st, EX_NOUSER, NULL, "no such user");
	CU_ASSERT_STRING_EQUAL(status_stat(&st, out, sizeof(out)),
			       "no such user");
	status_set(&st, EX_NOUSER, NULL, "%s", "");
	CU_ASSERT_STRING_EQUAL(status_stat(&st, out, sizeof(out)),
			       "User unknown");
	/* A small buffer gets a cut, terminated text. */
	status_set(&st, EX_TEMPFAIL, NULL, "mailbox locked");
	CU_ASSERT_STRING_EQUAL(status_stat(&st, out, 9), "Deferred");
}

static void
test_status_words(void)
{
	CU_ASSERT_STRING_EQUAL(status_word(EX_OK), "Sent");
	CU_ASSERT_STRING_EQUAL(status_word(EX_TEMPFAIL), "Deferred");
	CU_ASSERT_STRING_EQUAL(status_word(EX_NOUSER), "User unknown");
	CU_ASSERT_STRING_EQUAL(status_word(4242), "Unknown error");
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_status_ok_is_success),
	UNIT_TEST(test_status_worse_prefers_temporary_failures),
	UNIT_TEST(test_status_worse_any_failure_outranks_success),
	UNIT_TEST(test_status_worse_does_not_depend_on_order),
	UNIT_TEST(test_status_temporary_classes),
	UNIT_TEST(test_status_errno_maps_disk_and_quota_errors),
	UNIT_TEST(test_status_set_picks_default_dsn),
	UNIT_TEST(test_status_set_cuts_long_text),
	UNIT_TEST(test_status_stat_texts),
	UNIT_TEST(test_status_words),
};

void
test_status_register(void)
{
	fixture_suite("status", tests, UNIT_COUNT(tests));
}
