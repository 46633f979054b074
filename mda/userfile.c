/*
 * userfile: safe reads of user-controlled files, as their user.
 */
#include "userfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "privs.h"

/* The check and read proper, already as the user. The first line of out
 * is "CODE OWNER reason", CODE one of F M I T; the file follows. */
static void
check_and_read(const char *path, uid_t uid, int flags, struct buf *out)
{
	struct stat sb, dsb;
	char *dir, *slash;
	int fd;

	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash != NULL) {
		*(slash == dir ? slash + 1 : slash) = '\0';
		if ((flags & USERFILE_CHECK_DIR) && lstat(dir, &dsb) == 0) {
			if (dsb.st_mode & S_ISVTX) {
				buf_printf(out, "T 0 %s is sticky: its owner "
					   "may be editing it; try again "
					   "later\n", dir);
				free(dir);
				return;
			}
			if (dsb.st_mode & (S_IWGRP | S_IWOTH)) {
				buf_printf(out, "I 0 %s is group or world "
					   "writable\n", dir);
				free(dir);
				return;
			}
		}
	}
	free(dir);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
				O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			buf_puts(out, "M 0 missing\n");
		else if (errno == ELOOP)
			buf_puts(out, "I 0 is a symbolic link\n");
		else if (errno == EACCES)
			buf_puts(out, "I 0 is not readable\n");
		else
			buf_printf(out, "T 0 cannot open: %s\n",
				   strerror(errno));
		return;
	}
	if (fstat(fd, &sb) < 0) {
		buf_printf(out, "T 0 fstat: %s\n", strerror(errno));
	} else if (!S_ISREG(sb.st_mode)) {
		buf_puts(out, "I 0 is not a regular file\n");
	} else if (!(flags & USERFILE_ANY_OWNER) && sb.st_uid != uid &&
		   sb.st_uid != 0) {
		buf_printf(out, "I 0 is owned by uid %ld, not by %ld or root\n",
			   (long)sb.st_uid, (long)uid);
	} else if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
		buf_puts(out, "I 0 is group or world writable\n");
	} else if (sb.st_size > USERFILE_MAX) {
		buf_puts(out, "I 0 is too large\n");
	} else {
		char chunk[8192];
		ssize_t n;
		size_t header;

		buf_printf(out, "F %ld found\n", (long)sb.st_uid);
		header = out->len;
		while ((n = read(fd, chunk, sizeof(chunk))) > 0 &&
		       out->len - header < USERFILE_MAX)
			buf_append(out, chunk, (size_t)n);
		if (n < 0) {
			buf_reset(out);
			buf_printf(out, "T 0 read: %s\n", strerror(errno));
		}
	}
	close(fd);
}

static int
read_child(int fd, struct buf *out)
{
	char chunk[8192];
	ssize_t n;

	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf_append(out, chunk, (size_t)n);
	}
	return n < 0 ? -1 : 0;
}

enum userfile_result
userfile_read(const char *path, uid_t uid, gid_t gid, int flags,
	      struct buf *content, struct buf *reason, uid_t *owner,
	      struct status *st)
{
	struct buf raw;
	enum userfile_result result;
	const char *nl, *text;
	long file_owner = 0;
	char code;

	buf_reset(content);
	buf_reset(reason);
	buf_init(&raw);
	if (geteuid() == uid) {
		check_and_read(path, uid, flags, &raw);
	} else {
		int fds[2], status;
		pid_t pid;

		if (pipe2(fds, O_CLOEXEC) < 0) {
			status_errno(st, errno, "pipe");
			buf_free(&raw);
			return USERFILE_TRYLATER;
		}
		fflush(NULL);
		pid = fork();
		if (pid < 0) {
			status_errno(st, errno, "fork");
			close(fds[0]);
			close(fds[1]);
			buf_free(&raw);
			return USERFILE_TRYLATER;
		}
		if (pid == 0) {
			struct status ignored;
			size_t off = 0;

			close(fds[0]);
			signal(SIGPIPE, SIG_DFL);
			if (privs_become(uid, gid, (gid_t)-1, &ignored) < 0)
				buf_printf(&raw, "T 0 %s\n", ignored.text);
			else
				check_and_read(path, uid, flags, &raw);
			while (off < raw.len) {
				ssize_t n = write(fds[1], raw.data + off,
						  raw.len - off);
				if (n <= 0)
					_exit(1);
				off += (size_t)n;
			}
			_exit(0);
		}
		close(fds[1]);
		read_child(fds[0], &raw);
		close(fds[0]);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			buf_reset(&raw);
	}
	nl = memchr(raw.data, '\n', raw.len);
	if (nl == NULL || raw.len < 4 ||
	    sscanf(raw.data, "%c %ld", &code, &file_owner) != 2) {
		status_set(st, EX_TEMPFAIL, "4.3.0",
			   "%s: could not be read as uid %ld", path, (long)uid);
		buf_free(&raw);
		return USERFILE_TRYLATER;
	}
	text = strchr(raw.data + 2, ' ');
	text = text != NULL && text < nl ? text + 1 : nl;
	switch (code) {
	case 'F':
		result = USERFILE_FOUND;
		buf_append(content, nl + 1, raw.len - (size_t)(nl + 1 - raw.data));
		if (owner != NULL)
			*owner = (uid_t)file_owner;
		break;
	case 'M':
		result = USERFILE_MISSING;
		break;
	case 'I':
		result = USERFILE_IGNORED;
		buf_append(reason, text, (size_t)(nl - text));
		break;
	default:
		result = USERFILE_TRYLATER;
		status_set(st, EX_TEMPFAIL, "4.3.0", "%s: %.*s", path,
			   (int)(nl - text), text);
		break;
	}
	buf_free(&raw);
	return result;
}
