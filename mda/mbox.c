/*
 * mbox: locked, all-or-nothing appends to mbox files.
 *
 * Rolling back a killed delivery: while we hold both locks we add a line
 * "deliver-append SIZE INODE" to our dot-lock file (liblockfile wrote our pid
 * on its first line). A process killed with SIGKILL cannot truncate its half
 * message away, but it leaves that lock behind. The next deliverer, holding
 * the fcntl lock (so alone), finds the lock's pid dead and our line in it,
 * and truncates the mbox back to SIZE before it appends. A process killed
 * after its fsync but before it unlocked was not seen to succeed by its
 * caller, which retries: removing its message keeps delivery exactly-once.
 */
#include "mbox.h"

#include <errno.h>
#include <fcntl.h>
#include <lockfile.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "maillog.h"

#define TOUCH_INTERVAL 60	/* seconds between dot-lock refreshes */

struct lock_state {
	const char *lock_path;
	int have_dotlock;
	time_t last_touch;
};

static void
on_alarm(int sig)
{
	(void)sig;	/* only interrupts fcntl(F_SETLKW) */
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for the fcntl lock until deadline. Returns 0, 1 on timeout, -1. */
static int
fcntl_lock(int fd, double deadline)
{
	struct flock fl;
	struct sigaction sa, old;
	int rc;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) == 0)
		return 0;
	if (errno != EAGAIN && errno != EACCES)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;	/* no SA_RESTART: EINTR ends the wait */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old);
	for (;;) {
		double left = deadline - now_seconds();
		struct itimerval it;

		if (left <= 0) {
			rc = 1;
			break;
		}
		memset(&it, 0, sizeof(it));
		it.it_value.tv_sec = (time_t)left;
		it.it_value.tv_usec = (suseconds_t)((left - (double)(time_t)left) * 1e6) + 1;
		setitimer(ITIMER_REAL, &it, NULL);
		rc = fcntl(fd, F_SETLKW, &fl);
		memset(&it, 0, sizeof(it));
		setitimer(ITIMER_REAL, &it, NULL);
		if (rc == 0)
			break;
		if (errno != EINTR) {
			rc = -1;
			break;
		}
	}
	sigaction(SIGALRM, &old, NULL);
	return rc;
}

static void
fcntl_unlock(int fd)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_UNLCK;
	fl.l_whence = SEEK_SET;
	fcntl(fd, F_SETLK, &fl);
}

static void
backoff(unsigned attempt)
{
	unsigned char r = 0;
	long ms = 10L << (attempt < 6 ? attempt : 6);	/* 10 ms .. 640 ms */
	struct timespec ts;

	if (getrandom(&r, 1, GRND_NONBLOCK) == 1)
		ms += ms * r / 512;	/* jitter: waiters do not march */
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

/* Whether [from, to) holds at most one message: the killed one. We quote
 * every ">*From " line, so a second line starting with "From " there was
 * written by someone else. */
static int
only_our_message(int fd, off_t from, off_t to)
{
	char chunk[65536 + 8];
	off_t pos = from;
	size_t carry = 0;
	int seen_from = 0;

	while (pos < to) {
		size_t want = sizeof(chunk) - 8;
		ssize_t n;
		size_t i;

		if ((off_t)want > to - pos)
			want = (size_t)(to - pos);
		n = pread(fd, chunk + carry, want, pos);
		if (n <= 0)
			return 0;
		n += (ssize_t)carry;
		/* With a carry, its first byte was looked at already. */
		for (i = carry > 0 ? 1 : 0; i + 5 <= (size_t)n; i++) {
			int bol = (pos - (off_t)carry + (off_t)i == from) ||
				  (i > 0 && chunk[i - 1] == '\n');

			if (bol && memcmp(chunk + i, "From ", 5) == 0) {
				if (seen_from)
					return 0;
				seen_from = 1;
			}
		}
		pos += n - (ssize_t)carry;
		/* Keep the last bytes: a "From " may span chunks. */
		carry = (size_t)n < 5 ? (size_t)n : 5;
		memmove(chunk, chunk + n - (ssize_t)carry, carry);
	}
	return 1;
}

/* Rolls back what a killed deliverer left (see the top of this file).
 * Called with the fcntl lock held and before the dot-lock is taken. */
static void
recover_killed_append(int fd, const char *path, const char *lock_path)
{
	char text[256];
	int lfd;
	ssize_t n;
	long pid;
	long long size;
	unsigned long long inode;
	const char *marker;
	struct stat sb;

	lfd = open(lock_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (lfd < 0)
		return;
	n = read(lfd, text, sizeof(text) - 1);
	close(lfd);
	if (n <= 0)
		return;
	text[n] = '\0';
	marker = strstr(text, "\ndeliver-append ");
	if (marker == NULL || sscanf(text, "%ld", &pid) != 1 || pid <= 0 ||
	    sscanf(marker, "\ndeliver-append %lld %llu", &size, &inode) != 2)
		return;
	if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
		return;		/* its holder still runs */
	if (fstat(fd, &sb) < 0 || (unsigned long long)sb.st_ino != inode ||
	    size < 0 || sb.st_size <= (off_t)size)
		return;
	if (!only_our_message(fd, (off_t)size, sb.st_size)) {
		/* Someone appended after the killed delivery (a program that
		 * uses only fcntl locks): cutting would lose that mail. */
		maillog("%s: an interrupted delivery (pid %ld) left a partial "
			"message at offset %lld, followed by other mail: "
			"left in place", path, pid, size);
		return;
	}
	if (ftruncate(fd, (off_t)size) == 0) {
		fdatasync(fd);
		maillog("%s: removed %lld bytes left by an interrupted delivery "
			"(pid %ld)", path, (long long)(sb.st_size - size), pid);
	}
}

static void
touch_lock(void *arg)
{
	struct lock_state *ls = arg;
	time_t now;

	if (!ls->have_dotlock)
		return;
	now = time(NULL);
	if (now - ls->last_touch >= TOUCH_INTERVAL) {
		lockfile_touch(ls->lock_path);
		ls->last_touch = now;
	}
}

/* Takes both locks. Returns 0, or -1 with st set. */
static int
lock_mbox(int fd, const char *path, const struct mbox_options *opts,
	  struct lock_state *ls, struct status *st)
{
	double deadline = now_seconds() + opts->lock_timeout;
	unsigned attempt = 0;

	for (;;) {
		int rc = fcntl_lock(fd, deadline);

		if (rc == 1)
			return status_set(st, EX_TEMPFAIL, "4.2.0",
					  "%s: lock timeout (fcntl)", path);
		if (rc < 0)
			return status_errno(st, errno, "%s: fcntl lock", path);
		recover_killed_append(fd, path, ls->lock_path);
		rc = lockfile_create(ls->lock_path, 0, L_PID);
		if (rc == L_SUCCESS) {
			ls->have_dotlock = 1;
			ls->last_touch = time(NULL);
			return 0;
		}
		if (rc != L_MAXTRYS) {
			int err = errno;

			if (opts->dotlock_may_fail)
				return 0;
			fcntl_unlock(fd);
			return status_errno(st, err ? err : EACCES,
					    "%s: cannot create dot-lock",
					    path);
		}
		/* Someone holds the dot-lock: let go of the fcntl lock so
		 * that it can finish, then try again. */
		fcntl_unlock(fd);
		if (now_seconds() >= deadline)
			return status_set(st, EX_TEMPFAIL, "4.2.0",
					  "%s: lock timeout (dot-lock)",
					  path);
		backoff(attempt++);
	}
}

static void
unlock_mbox(int fd, struct lock_state *ls)
{
	if (ls->have_dotlock)
		lockfile_remove(ls->lock_path);
	ls->have_dotlock = 0;
	fcntl_unlock(fd);
}

static void
mark_append(const struct lock_state *ls, const struct stat *sb)
{
	char line[96];
	int lfd, n;

	if (!ls->have_dotlock)
		return;
	lfd = open(ls->lock_path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (lfd < 0)
		return;
	n = snprintf(line, sizeof(line), "\ndeliver-append %lld %llu\n",
		     (long long)sb->st_size, (unsigned long long)sb->st_ino);
	if (write(lfd, line, (size_t)n) < 0) {
		/* Without the mark a kill is not rolled back; the append
		 * itself is no less safe. */
	}
	close(lfd);
}

/* Opens the mbox for appending, creating it when missing, and checks that it
 * is a plain file of ours. Returns the fd, or -1 with st set. */
static int
open_mbox(const char *path, const struct mbox_options *opts, struct stat *sb,
	  struct status *st)
{
	/* Read access too: tail_state() must see how the file ends. */
	int flags = O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
		    O_NONBLOCK;	/* a FIFO must not block us */
	int fd, tries;

	for (tries = 0; tries < 5; tries++) {
		fd = open(path, flags);
		if (fd >= 0 || errno != ENOENT)
			break;
		fd = open(path, flags | O_CREAT | O_EXCL, opts->create_mode);
		if (fd >= 0) {
			/* The mode and group an admin expects, whatever the
			 * umask and the directory's group are. */
			if (fchmod(fd, opts->create_mode) < 0 ||
			    (opts->create_gid != (gid_t)-1 &&
			     fchown(fd, (uid_t)-1, opts->create_gid) < 0)) {
				/* Not fatal: the file is ours and private. */
			}
			break;
		}
		if (errno != EEXIST)
			break;
	}
	if (fd < 0) {
		if (errno == ELOOP)
			return status_set(st, EX_TEMPFAIL, "4.2.0",
					  "%s: mailbox is a symbolic link: "
					  "refused", path);
		return status_errno(st, errno, "%s: cannot open mailbox", path);
	}
	if (fstat(fd, sb) < 0) {
		status_errno(st, errno, "%s: fstat", path);
		goto refuse;
	}
	if (!S_ISREG(sb->st_mode)) {
		status_set(st, EX_TEMPFAIL, "4.2.0",
			   "%s: mailbox is not a regular file: refused", path);
		goto refuse;
	}
	if (sb->st_nlink != 1) {
		status_set(st, EX_TEMPFAIL, "4.2.0",
			   "%s: mailbox has %lu hard links: refused", path,
			   (unsigned long)sb->st_nlink);
		goto refuse;
	}
	if (opts->owner != (uid_t)-1 && sb->st_uid != opts->owner) {
		status_set(st, EX_TEMPFAIL, "4.2.0",
			   "%s: mailbox belongs to uid %ld, not %ld: refused",
			   path, (long)sb->st_uid, (long)opts->owner);
		goto refuse;
	}
	fcntl(fd, F_SETFL, O_APPEND);
	return fd;
refuse:
	close(fd);
	return -1;
}

/* After locking: is the file still the one at path (not renamed away by a
 * mail reader that rewrote the mbox while we waited)? */
static int
still_current(int fd, const char *path)
{
	struct stat at_path, opened;

	return lstat(path, &at_path) == 0 && fstat(fd, &opened) == 0 &&
	       at_path.st_dev == opened.st_dev &&
	       at_path.st_ino == opened.st_ino && opened.st_nlink == 1;
}

static int
tail_state(int fd, off_t size)
{
	char tail[2];

	if (size == 0)
		return 0;
	if (size == 1) {
		if (pread(fd, tail + 1, 1, 0) != 1)
			return 2;
		return tail[1] == '\n' ? 1 : -1;
	}
	if (pread(fd, tail, 2, size - 2) != 2)
		return 2;
	if (tail[1] != '\n')
		return -1;
	return tail[0] == '\n' ? 2 : 1;
}

/* 1 when a message in the mbox carries the queue id in its header
 * section (our Received: field) below "Delivered-To: <to>": a copy that a
 * delivery for the queue runner wrote before it was interrupted. */
static int
holds_copy(int fd, off_t size, const char *qid, const char *to)
{
	const char *map, *p, *end;
	size_t qlen = strlen(qid);
	struct buf want;
	int found = 0;

	if (size <= 0)
		return 0;
	map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return 0;
	buf_init(&want);
	buf_printf(&want, "\nDelivered-To: %s\n", to);
	end = map + size;
	for (p = map; !found && (p = memmem(p, (size_t)(end - p), qid, qlen));
	     p += qlen) {
		const char *start = p, *body;

		/* The message's start: its "From " line (body lines that
		 * start so are quoted in an mbox). */
		while (start > map && !(start[-1] == '\n' &&
					(size_t)(end - start) > 5 &&
					memcmp(start, "From ", 5) == 0))
			start--;
		body = memmem(start, (size_t)(end - start), "\n\n", 2);
		if (body != NULL && p > body)
			continue;	/* in a body, not a header */
		found = memmem(start, (size_t)(p - start), want.data,
			       want.len) != NULL;
	}
	buf_free(&want);
	munmap((void *)map, (size_t)size);
	return found;
}

int
mbox_deliver(const char *path, const struct mbox_options *opts,
	     const struct message *m, const struct msgform *form,
	     struct status *st)
{
	struct lock_state ls;
	struct msgform f = *form;
	struct buf lock_path;
	struct stat sb;
	off_t written = 0;
	int fd, attempt, rc = -1;

	buf_init(&lock_path);
	buf_printf(&lock_path, "%s.lock", path);
	memset(&ls, 0, sizeof(ls));
	ls.lock_path = lock_path.data;
	for (attempt = 0;; attempt++) {
		fd = open_mbox(path, opts, &sb, st);
		if (fd < 0)
			goto out;
		if (lock_mbox(fd, path, opts, &ls, st) < 0) {
			close(fd);
			goto out;
		}
		if (still_current(fd, path))
			break;
		unlock_mbox(fd, &ls);
		close(fd);
		if (attempt == 5) {
			status_set(st, EX_TEMPFAIL, "4.2.0",
				   "%s: mailbox keeps changing", path);
			goto out;
		}
	}
	if (fstat(fd, &sb) < 0) {
		status_errno(st, errno, "%s: fstat", path);
		goto unlock;
	}
	if (f.skip_if_present && f.queue_id != NULL &&
	    f.delivered_to != NULL &&
	    holds_copy(fd, sb.st_size, f.queue_id, f.delivered_to)) {
		maillog("%s: %s already holds this message for %s: not "
			"delivered again", f.queue_id, path, f.delivered_to);
		rc = 0;
		goto unlock;
	}
	mark_append(&ls, &sb);
	f.mbox = 1;
	f.mbox_tail = tail_state(fd, sb.st_size);
	f.progress = touch_lock;
	f.progress_arg = &ls;
	if (msgform_write(m, &f, fd, &written, st) < 0)
		goto rollback;
	if (fdatasync(fd) < 0) {
		status_errno(st, errno, "%s: fsync", path);
		goto rollback;
	}
	rc = 0;
	goto unlock;
rollback:
	/* No half message stays behind. */
	if (written > 0 && ftruncate(fd, sb.st_size) == 0)
		fdatasync(fd);
unlock:
	unlock_mbox(fd, &ls);
	close(fd);
out:
	buf_free(&lock_path);
	return rc;
}
