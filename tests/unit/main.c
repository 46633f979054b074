/*
 * The unit test runner: every module's suite, CUnit's verbose report, and
 * an exit status that says whether anything failed.
 */
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "suites.h"

int
main(void)
{
	unsigned failures, tests_failed, suites_failed;
	CU_ErrorCode error;

	/* "From " lines and the maillog use local time: make it one. */
	setenv("TZ", "UTC", 1);
	tzset();
	if (CU_initialize_registry() != CUE_SUCCESS) {
		fprintf(stderr, "unit-tests: %s\n", CU_get_error_msg());
		return 1;
	}
	test_buf_register();
	test_config_register();
	test_status_register();
	test_address_register();
	test_qid_register();
	test_maillog_register();
	test_privs_register();
	test_message_register();
	test_msgform_register();
	test_mbox_register();
	test_maildir_register();
	test_rcparse_register();
	test_rxtrans_register();
	test_engine_register();
	test_stats_register();
	test_submit_register();
	test_io_register();
	test_queue_register();
	test_enqueue_register();
	test_session_register();
	test_access_register();
	if (CU_get_error() != CUE_SUCCESS) {
		fprintf(stderr, "unit-tests: registry: %s\n",
			CU_get_error_msg());
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	error = CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	tests_failed = CU_get_number_of_tests_failed();
	suites_failed = CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	if (error != CUE_SUCCESS) {
		fprintf(stderr, "unit-tests: run: error %d\n", (int)error);
		return 1;
	}
	return failures > 0 || tests_failed > 0 || suites_failed > 0 ? 1 : 0;
}
