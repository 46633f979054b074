/*
 * The unit test suites, one per module, and the fixtures they share: temporary
 * directories, whole-file reads and writes, messages fed through a pipe, and
 * work done in a child process (privilege switches, resource limits).
 */
#ifndef TESTS_UNIT_SUITES_H
#define TESTS_UNIT_SUITES_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "message.h"
#include "status.h"

void test_buf_register(void);
void test_config_register(void);
void test_status_register(void);
void test_address_register(void);
void test_qid_register(void);
void test_maillog_register(void);
void test_privs_register(void);
void test_message_register(void);
void test_msgform_register(void);
void test_mbox_register(void);
void test_maildir_register(void);
void test_rcparse_register(void);
void test_rxtrans_register(void);
void test_engine_register(void);
void test_stats_register(void);
void test_submit_register(void);
void test_io_register(void);
void test_queue_register(void);
void test_enqueue_register(void);
void test_session_register(void);
void test_access_register(void);

struct unit_test {
	const char *name;
	void (*run)(void);
};

#define UNIT_TEST(fn) { #fn, fn }
#define UNIT_COUNT(tests) (sizeof(tests) / sizeof((tests)[0]))

/* Adds a suite to the CUnit registry (errors are left in CU_get_error()). */
void fixture_suite(const char *name, const struct unit_test *tests,
		   size_t count);
/* The same with a setup and a teardown run around every test. */
void fixture_suite_setup(const char *name, const struct unit_test *tests,
			 size_t count, void (*setup)(void),
			 void (*teardown)(void));
/* A new private directory below $TMPDIR or /tmp; the caller frees the path
 * and removes the directory with fixture_rmtree(). NULL on failure. */
char *fixture_tmpdir(void);
/* The process's umask (left unchanged). */
unsigned fixture_umask(void);
/* Removes path and everything below it, links not followed. 0 or -1. */
int fixture_rmtree(const char *path);
/* Appends the file's bytes to out. 0 or -1. */
int fixture_read_file(const char *path, struct buf *out);
/* Creates or replaces path with exactly data. 0 or -1. */
int fixture_write_file(const char *path, const void *data, size_t len);
/* The same for a C string. */
int fixture_write_text(const char *path, const char *text);
/* 1 when the file holds exactly want (a C string). */
int fixture_file_is(const char *path, const char *want);
/* Appends a message of a header and lines numbered body lines. */
void fixture_big_message(struct buf *out, int lines);
/* Entries in a directory, "." and ".." not counted; -1 when unreadable. */
int fixture_count_entries(const char *dir);
/* message_read() from a pipe that a child process fills with data. */
int fixture_message(struct message *m, const void *data, size_t len,
		    const char *tmp_dir, struct status *st);
/* Runs fn(arg) in a child and returns its exit status (fn's return value
 * masked to 0..255), 128 + the signal that killed it, or -1. */
int fixture_in_child(int (*fn)(void *arg), void *arg);

#endif
