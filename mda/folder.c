/*
 * folder: MH folders and plain directories.
 */
#include "folder.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes the message into a hidden temporary file of dirfd; returns its
 * fd (name in tmp), or -1 with st set. */
static int
write_temp(int dirfd, const char *dir, const struct message *m,
	   const struct msgform *form, struct buf *tmp, struct status *st)
{
	unsigned char r[6] = { 0 };
	off_t written;
	int fd;

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) < 0) {
		/* the pid still makes the name ours */
	}
	buf_printf(tmp, ".deliver.%ld.%02x%02x%02x%02x%02x%02x",
		   (long)getpid(), r[0], r[1], r[2], r[3], r[4], r[5]);
	fd = openat(dirfd, tmp->data,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return status_errno(st, errno, "%s/%s: cannot create", dir,
				    tmp->data);
	if (msgform_write(m, form, fd, &written, st) < 0 || fsync(fd) < 0) {
		if (st->exit_code == EX_OK)
			status_errno(st, errno, "%s: fsync", dir);
		close(fd);
		unlinkat(dirfd, tmp->data, 0);
		return -1;
	}
	return fd;
}

static int
open_dir(const char *dir, struct status *st)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT && mkdir(dir, 0700) == 0)
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return status_errno(st, errno, "%s: cannot open folder", dir);
	return fd;
}

/* The highest message number in an MH folder. */
static long
mh_last(int dirfd)
{
	DIR *d;
	struct dirent *e;
	long last = 0;
	int fd = dup(dirfd);

	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		const char *p = e->d_name;
		char *end;
		long n;

		if (!isdigit((unsigned char)*p))
			continue;
		n = strtol(p, &end, 10);
		if (*end == '\0' && n > last)
			last = n;
	}
	closedir(d);
	return last;
}

int
folder_mh_deliver(const char *dir, const struct message *m,
		  const struct msgform *form, struct buf *stored,
		  struct status *st)
{
	struct buf tmp, name;
	int dirfd, fd, tries, rc = -1;
	long next;

	dirfd = open_dir(dir, st);
	if (dirfd < 0)
		return -1;
	buf_init(&tmp);
	buf_init(&name);
	fd = write_temp(dirfd, dir, m, form, &tmp, st);
	if (fd < 0)
		goto out;
	close(fd);
	/* link() never replaces: a number taken meanwhile is skipped. */
	next = mh_last(dirfd) + 1;
	for (tries = 0; tries < 1000; tries++, next++) {
		buf_reset(&name);
		buf_printf(&name, "%ld", next);
		if (linkat(dirfd, tmp.data, dirfd, name.data, 0) == 0)
			break;
		if (errno != EEXIST) {
			status_errno(st, errno, "%s/%s: cannot link", dir,
				     name.data);
			break;
		}
	}
	unlinkat(dirfd, tmp.data, 0);
	if (tries < 1000 && st->exit_code == EX_OK) {
		fsync(dirfd);
		buf_reset(stored);
		buf_printf(stored, "%s/%s", dir, name.data);
		rc = 0;
	} else if (st->exit_code == EX_OK) {
		status_set(st, EX_TEMPFAIL, "4.2.0", "%s: no free number",
			   dir);
	}
out:
	close(dirfd);
	buf_free(&tmp);
	buf_free(&name);
	return rc;
}

int
folder_dir_deliver(const char *dir, const struct message *m,
		   const struct msgform *form, struct buf *stored,
		   struct status *st)
{
	struct buf tmp, name;
	int dirfd, fd, tries, rc = -1;

	dirfd = open_dir(dir, st);
	if (dirfd < 0)
		return -1;
	buf_init(&tmp);
	buf_init(&name);
	fd = write_temp(dirfd, dir, m, form, &tmp, st);
	if (fd < 0)
		goto out;
	close(fd);
	/* procmail's names: msg. and a few letters. */
	for (tries = 0; tries < 100; tries++) {
		static const char letters[] =
			"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
		unsigned char r[4];
		int i;

		if (getrandom(r, sizeof(r), GRND_NONBLOCK) < 0)
			memset(r, tries, sizeof(r));
		buf_reset(&name);
		buf_puts(&name, "msg.");
		for (i = 0; i < 4; i++)
			buf_putc(&name, letters[r[i] % 52]);
		if (linkat(dirfd, tmp.data, dirfd, name.data, 0) == 0)
			break;
		if (errno != EEXIST) {
			status_errno(st, errno, "%s/%s: cannot link", dir,
				     name.data);
			break;
		}
	}
	unlinkat(dirfd, tmp.data, 0);
	if (tries < 100 && st->exit_code == EX_OK) {
		fsync(dirfd);
		buf_reset(stored);
		buf_printf(stored, "%s/%s", dir, name.data);
		rc = 0;
	} else if (st->exit_code == EX_OK) {
		status_set(st, EX_TEMPFAIL, "4.2.0", "%s: no free name", dir);
	}
out:
	close(dirfd);
	buf_free(&tmp);
	buf_free(&name);
	return rc;
}
