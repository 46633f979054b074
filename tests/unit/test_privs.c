/*
 * privs: the switch to a user is complete and final. Every switch happens in
 * a child process, so that the test program stays root.
 */
#include <CUnit/CUnit.h>

#include <grp.h>
#include <sysexits.h>
#include <unistd.h>

#include "privs.h"
#include "suites.h"

#define TEST_UID 60123
#define OTHER_UID 60124
#define EXTRA_GID 8

/* Each check that fails sets its own bit in the child's exit status. */
static int
become_and_check(void *arg)
{
	struct status st;
	gid_t groups[64];
	int n, i, found = 0, failed = 0;

	(void)arg;
	if (privs_become(TEST_UID, TEST_UID, EXTRA_GID, &st) != 0)
		return 1;
	if (getuid() != TEST_UID || geteuid() != TEST_UID)
		failed |= 2;
	/* The mail group is kept as effective and saved group only, never
	 * as a supplementary group a command would inherit. */
	if (getgid() != TEST_UID || getegid() != EXTRA_GID)
		failed |= 4;
	n = getgroups(64, groups);
	for (i = 0; i < n; i++) {
		if (groups[i] == EXTRA_GID)
			found = 1;
		else if (groups[i] != TEST_UID)
			failed |= 8;	/* root's groups must be gone */
	}
	if (found)
		failed |= 16;
	privs_use_extra_group(0);
	if (getegid() != TEST_UID)
		failed |= 32;
	privs_use_extra_group(1);
	if (getegid() != EXTRA_GID)
		failed |= 64;
	privs_drop_extra_group();
	if (getegid() != TEST_UID || setegid(EXTRA_GID) == 0)
		failed |= 128;
	/* No way back. */
	if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0)
		failed |= 32;
	return failed;
}

static void
test_privs_become_switches_for_good(void)
{
	if (geteuid() != 0) {
		CU_FAIL("needs root");
		return;
	}
	CU_ASSERT_EQUAL(fixture_in_child(become_and_check, NULL), 0);
}

static int
become_without_extra_group(void *arg)
{
	struct status st;
	gid_t groups[64];
	int n;

	(void)arg;
	if (privs_become(TEST_UID, TEST_UID + 1, (gid_t)-1, &st) != 0)
		return 1;
	n = getgroups(64, groups);
	if (n != 1 || groups[0] != TEST_UID + 1)
		return 2;
	return getegid() == TEST_UID + 1 ? 0 : 3;
}

static void
test_privs_become_without_extra_group_keeps_only_primary(void)
{
	if (geteuid() != 0) {
		CU_FAIL("needs root");
		return;
	}
	CU_ASSERT_EQUAL(fixture_in_child(become_without_extra_group, NULL), 0);
}

static int
become_root(void *arg)
{
	struct status st;

	(void)arg;
	if (privs_become(0, 0, (gid_t)-1, &st) != -1)
		return 1;
	if (st.exit_code != EX_NOPERM)
		return 2;
	return getuid() == 0 && geteuid() == 0 ? 0 : 3;
}

static void
test_privs_refuses_uid_zero(void)
{
	CU_ASSERT_EQUAL(fixture_in_child(become_root, NULL), 0);
}

static int
switch_twice(void *arg)
{
	struct status st;

	(void)arg;
	if (privs_become(TEST_UID, TEST_UID, (gid_t)-1, &st) != 0)
		return 1;
	/* Not root any more: another user is out of reach... */
	if (privs_become(OTHER_UID, OTHER_UID, (gid_t)-1, &st) != -1)
		return 2;
	if (st.exit_code != EX_NOPERM)
		return 3;
	if (getuid() != TEST_UID)
		return 4;
	/* ...and becoming who we are is nothing to do. */
	status_ok(&st);
	if (privs_become(TEST_UID, TEST_UID, (gid_t)-1, &st) != 0)
		return 5;
	return 0;
}

static void
test_privs_non_root_cannot_become_another_user(void)
{
	if (geteuid() != 0) {
		CU_FAIL("needs root");
		return;
	}
	CU_ASSERT_EQUAL(fixture_in_child(switch_twice, NULL), 0);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_privs_become_switches_for_good),
	UNIT_TEST(test_privs_become_without_extra_group_keeps_only_primary),
	UNIT_TEST(test_privs_refuses_uid_zero),
	UNIT_TEST(test_privs_non_root_cannot_become_another_user),
};

void
test_privs_register(void)
{
	fixture_suite("privs", tests, UNIT_COUNT(tests));
}
