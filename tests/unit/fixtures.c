/*
 * fixtures: what the unit suites share. Nothing here asserts; the suites do.
 */
#include <CUnit/CUnit.h>

#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suites.h"

void
fixture_suite_setup(const char *name, const struct unit_test *tests,
		    size_t count, void (*setup)(void), void (*teardown)(void))
{
	CU_pSuite suite = CU_add_suite_with_setup_and_teardown(
		name, NULL, NULL, setup, teardown);
	size_t i;

	if (suite == NULL)
		return;
	for (i = 0; i < count; i++)
		if (CU_add_test(suite, tests[i].name, tests[i].run) == NULL)
			return;
}

void
fixture_suite(const char *name, const struct unit_test *tests, size_t count)
{
	fixture_suite_setup(name, tests, count, NULL, NULL);
}

char *
fixture_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	struct buf path;

	if (base == NULL || base[0] != '/')
		base = "/tmp";
	buf_init(&path);
	buf_printf(&path, "%s/unit-XXXXXX", base);
	if (mkdtemp(path.data) == NULL) {
		buf_free(&path);
		return NULL;
	}
	return path.data;
}

static int
remove_entry(const char *path, const struct stat *sb, int type,
	     struct FTW *ftw)
{
	(void)sb, (void)type, (void)ftw;
	return remove(path);
}

int
fixture_rmtree(const char *path)
{
	if (path == NULL)
		return -1;
	return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int
fixture_read_file(const char *path, struct buf *out)
{
	char chunk[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd < 0)
		return -1;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		buf_append(out, chunk, (size_t)n);
	}
	close(fd);
	return 0;
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
fixture_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return -1;
	rc = write_all(fd, data, len);
	if (close(fd) < 0)
		rc = -1;
	return rc;
}

int
fixture_write_text(const char *path, const char *text)
{
	return fixture_write_file(path, text, strlen(text));
}

int
fixture_file_is(const char *path, const char *want)
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

void
fixture_big_message(struct buf *out, int lines)
{
	int i;

	buf_puts(out, "Subject: big\n\n");
	for (i = 0; i < lines; i++)
		buf_printf(out, "line %d of a big message\n", i);
}

unsigned
fixture_umask(void)
{
	mode_t old = umask(022);

	umask(old);
	return (unsigned)old;
}

int
fixture_count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int count = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			count++;
	closedir(d);
	return count;
}

int
fixture_message(struct message *m, const void *data, size_t len,
		const char *tmp_dir, struct status *st)
{
	int fds[2], rc, wstatus;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		/* A pipe holds 64 KiB: larger messages need a writer that
		 * runs while message_read() reads. */
		close(fds[0]);
		_exit(write_all(fds[1], data, len) < 0 ? 1 : 0);
	}
	close(fds[1]);
	rc = message_read(m, fds[0], tmp_dir, st);
	close(fds[0]);
	if ((waitpid(pid, &wstatus, 0) < 0 || !WIFEXITED(wstatus) ||
	     WEXITSTATUS(wstatus) != 0) && rc == 0) {
		message_free(m);	/* not all of data arrived */
		rc = -1;
	}
	return rc;
}

int
fixture_in_child(int (*fn)(void *arg), void *arg)
{
	int wstatus;
	pid_t pid;

	/* stdio buffers would be flushed twice otherwise. */
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0)
		_exit(fn(arg) & 0xff);	/* _exit: no CUnit or sanitizer
					 * exit handlers in the child */
	if (waitpid(pid, &wstatus, 0) < 0)
		return -1;
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
}
