/*
 * maildir: all-or-nothing delivery into maildirs.
 */
#include "maildir.h"

#include "maillog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

void
maildir_queue_marker(struct buf *out, const char *queue_id,
		     const char *delivered_to)
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	const char *p;

	for (p = delivered_to ? delivered_to : ""; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	buf_printf(out, "Q%s_%08x", queue_id, (unsigned)h);
}

void
maildir_unique_name(struct buf *out, const char *hostname, const char *marker)
{
	struct timeval tv;
	unsigned char r[4] = { 0, 0, 0, 0 };
	const char *h;

	gettimeofday(&tv, NULL);
	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		/* Time, microseconds and pid still make the name unique. */
	}
	buf_printf(out, "%lld.M%ldP%ldR%02x%02x%02x%02x%s.", (long long)tv.tv_sec,
		   (long)tv.tv_usec, (long)getpid(), r[0], r[1], r[2], r[3],
		   marker ? marker : "");
	/* The maildir convention: '/' and ':' in the host name are escaped. */
	for (h = hostname; *h != '\0'; h++) {
		if (*h == '/')
			buf_puts(out, "\\057");
		else if (*h == ':')
			buf_puts(out, "\\072");
		else
			buf_putc(out, *h);
	}
}

/* 1 when a file in the directory has marker in its name followed by '.'
 * (the part before the host name). */
static int
holds(int dirfd, const char *marker)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	size_t len = strlen(marker);
	int found = 0;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	rewinddir(d);
	while (!found && (e = readdir(d)) != NULL) {
		const char *p = strstr(e->d_name, marker);

		found = p != NULL && p[len] == '.';
	}
	closedir(d);
	return found;
}

/* Opens (creating when missing) a directory below dirfd, refusing links. */
static int
open_subdir(int dirfd, const char *name, const char *dir, int *created,
	    struct status *st)
{
	int fd;

	if (mkdirat(dirfd, name, 0700) == 0)
		*created = 1;
	else if (errno != EEXIST)
		return status_errno(st, errno, "%s/%s: cannot create", dir,
				    name);
	fd = openat(dirfd, name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return status_errno(st, errno, "%s/%s: cannot open", dir, name);
	return fd;
}

static int
open_maildir(const char *dir, int *created, struct status *st)
{
	int fd;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		goto out;
	/* Only the maildir itself is made; its parent must exist. */
	if (mkdir(dir, 0700) == 0)
		*created = 1;
	else if (errno != EEXIST)
		return status_errno(st, errno, "%s: cannot create maildir",
				    dir);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
out:
	if (fd < 0) {
		if (errno == ELOOP || errno == ENOTDIR)
			return status_set(st, EX_TEMPFAIL, "4.2.0",
					  "%s: maildir is a symbolic link or "
					  "not a directory: refused", dir);
		return status_errno(st, errno, "%s: cannot open maildir", dir);
	}
	return fd;
}

static void
fsync_parent(const char *dir)
{
	char parent[4096];
	const char *slash;
	size_t len = strlen(dir);
	int fd;

	while (len > 1 && dir[len - 1] == '/')
		len--;
	slash = memrchr(dir, '/', len);
	if (slash == NULL)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == dir)
		snprintf(parent, sizeof(parent), "/");
	else if ((size_t)(slash - dir) < sizeof(parent))
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - dir),
			 dir);
	else
		return;
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int
maildir_deliver(const char *dir_arg, const struct message *m,
		const struct msgform *form, const char *hostname,
		struct buf *delivered, struct status *st)
{
	struct buf name, final, dir_buf, marker;
	const char *dir;
	struct msgform f = *form;
	struct stat sb;
	off_t written;
	int dirfd, tmpfd = -1, newfd = -1, curfd = -1, fd = -1, rc = -1;
	int created = 0;

	buf_init(&name);
	buf_init(&final);
	buf_init(&marker);
	/* "Maildir/" would follow a symlink named Maildir despite
	 * O_NOFOLLOW: the trailing slash goes. */
	buf_init(&dir_buf);
	buf_puts(&dir_buf, dir_arg);
	while (dir_buf.len > 1 && dir_buf.data[dir_buf.len - 1] == '/')
		buf_truncate(&dir_buf, dir_buf.len - 1);
	dir = dir_buf.data;
	dirfd = open_maildir(dir, &created, st);
	if (dirfd < 0)
		goto out;
	if (created)
		fsync_parent(dir);
	if ((tmpfd = open_subdir(dirfd, "tmp", dir, &created, st)) < 0 ||
	    (newfd = open_subdir(dirfd, "new", dir, &created, st)) < 0 ||
	    (curfd = open_subdir(dirfd, "cur", dir, &created, st)) < 0)
		goto out;
	if (created)
		fsync(dirfd);

	if (form->queue_id != NULL)
		maildir_queue_marker(&marker, form->queue_id,
				     form->delivered_to);
	if (form->skip_if_present && marker.len > 0 &&
	    (holds(newfd, marker.data) || holds(curfd, marker.data))) {
		maillog("%s: %s already holds this message for %s: not "
			"delivered again", form->queue_id, dir,
			form->delivered_to ? form->delivered_to : "");
		rc = 0;
		goto out;
	}
	maildir_unique_name(&name, hostname, marker.len ? marker.data : NULL);
	fd = openat(tmpfd, name.data,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		status_errno(st, errno, "%s/tmp/%s: cannot create", dir,
			     name.data);
		goto out;
	}
	f.mbox = 0;
	if (msgform_write(m, &f, fd, &written, st) < 0)
		goto unlink_tmp;
	if (fsync(fd) < 0 || fstat(fd, &sb) < 0) {
		status_errno(st, errno, "%s/tmp/%s: fsync", dir, name.data);
		goto unlink_tmp;
	}
	close(fd);
	fd = -1;
	/* S= lets readers size the message without a stat (Dovecot, ...). */
	buf_printf(&final, "%s,S=%lld", name.data, (long long)sb.st_size);
	if (renameat2(tmpfd, name.data, newfd, final.data, RENAME_NOREPLACE) <
	    0) {
		if (errno != EINVAL && errno != ENOSYS) {
			status_errno(st, errno, "%s/new/%s: cannot move into "
				     "place", dir, final.data);
			goto unlink_tmp;
		}
		/* A file system without RENAME_NOREPLACE: link never
		 * replaces either. */
		if (linkat(tmpfd, name.data, newfd, final.data, 0) < 0) {
			status_errno(st, errno, "%s/new/%s: cannot move into "
				     "place", dir, final.data);
			goto unlink_tmp;
		}
		unlinkat(tmpfd, name.data, 0);
	}
	/* The rename is not durable until the directory is synced. */
	if (fsync(newfd) < 0) {
		status_errno(st, errno, "%s/new: fsync", dir);
		unlinkat(newfd, final.data, 0);
		goto out;
	}
	if (delivered != NULL) {
		buf_reset(delivered);
		buf_printf(delivered, "%s/new/%s", dir, final.data);
	}
	rc = 0;
	goto out;
unlink_tmp:
	unlinkat(tmpfd, name.data, 0);
out:
	if (fd >= 0)
		close(fd);
	if (curfd >= 0)
		close(curfd);
	if (newfd >= 0)
		close(newfd);
	if (tmpfd >= 0)
		close(tmpfd);
	if (dirfd >= 0)
		close(dirfd);
	buf_free(&name);
	buf_free(&final);
	buf_free(&dir_buf);
	buf_free(&marker);
	return rc;
}
