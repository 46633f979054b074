/*
 * Unit tests for lib/io: whole reads and writes, descriptor passing.
 */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"
#include "suites.h"

static void
test_io_write_and_read_all_through_a_pipe(void)
{
	int p[2];
	char out[6] = "";

	CU_ASSERT_FATAL(pipe(p) == 0);
	CU_ASSERT_EQUAL(io_write_all(p[1], "hello!", 6), 0);
	close(p[1]);
	CU_ASSERT_EQUAL(io_read_all(p[0], out, 6), 0);
	CU_ASSERT(memcmp(out, "hello!", 6) == 0);
	/* Nothing more: the end of file is a failure with errno 0. */
	CU_ASSERT_EQUAL(io_read_all(p[0], out, 1), -1);
	CU_ASSERT_EQUAL(errno, 0);
	close(p[0]);
}

static void
test_io_write_all_to_a_closed_pipe_fails(void)
{
	int p[2];

	CU_ASSERT_FATAL(pipe(p) == 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	CU_ASSERT_EQUAL(io_write_all(p[1], "x", 1), -1);
	CU_ASSERT_EQUAL(errno, EPIPE);
	close(p[1]);
}

static void
test_io_passes_a_working_descriptor(void)
{
	int sv[2], p[2], got = -1;
	char data[4] = "", byte = 0;

	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CU_ASSERT_FATAL(pipe(p) == 0);
	CU_ASSERT_EQUAL(io_send_fd(sv[0], "abcd", 4, p[1], 0), 0);
	close(p[1]);
	CU_ASSERT_EQUAL(io_recv_fd(sv[1], data, sizeof(data), &got), 4);
	CU_ASSERT(memcmp(data, "abcd", 4) == 0);
	CU_ASSERT_FATAL(got >= 0);
	CU_ASSERT(fcntl(got, F_GETFD) & FD_CLOEXEC);
	/* The received end writes into the same pipe. */
	CU_ASSERT_EQUAL(write(got, "z", 1), 1);
	CU_ASSERT_EQUAL(read(p[0], &byte, 1), 1);
	CU_ASSERT_EQUAL(byte, 'z');
	close(got);
	close(p[0]);
	/* Without a descriptor, and at the end. */
	CU_ASSERT_EQUAL(write(sv[0], "q", 1), 1);
	CU_ASSERT_EQUAL(io_recv_fd(sv[1], data, sizeof(data), &got), 1);
	CU_ASSERT_EQUAL(got, -1);
	close(sv[0]);
	CU_ASSERT_EQUAL(io_recv_fd(sv[1], data, sizeof(data), &got), 0);
	CU_ASSERT_EQUAL(got, -1);
	close(sv[1]);
}

static void
test_io_send_fd_to_a_closed_peer_fails(void)
{
	int sv[2];

	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	close(sv[1]);
	CU_ASSERT_EQUAL(io_send_fd(sv[0], "x", 1, 0, MSG_NOSIGNAL), -1);
	close(sv[0]);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_io_write_and_read_all_through_a_pipe),
	UNIT_TEST(test_io_write_all_to_a_closed_pipe_fails),
	UNIT_TEST(test_io_passes_a_working_descriptor),
	UNIT_TEST(test_io_send_fd_to_a_closed_peer_fails),
};

void
test_io_register(void)
{
	fixture_suite("io", tests, UNIT_COUNT(tests));
}
