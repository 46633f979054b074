/*
 * queue-drive: the driver of queue-bench.sh. Submits one process per
 * message, as cron jobs and scripts do, optionally runs a queue command,
 * and waits until every message is in the recipients' maildirs; reports
 * the time and CPU of each phase. The same driver runs every MTA measured.
 *
 *   queue-drive [-l label] [-n limit] [-t timeout] [-B cmd] [-Q cmd]
 *               [-A cmd] -r rcpt,... -w dir,... MSGDIR CMD [ARG...]
 *
 * Message i (in name order) goes to the (i mod k)-th of the k recipients
 * in -r: every "%r" in CMD's arguments is replaced by it, and the message
 * comes on a pipe in 64 KiB writes. Each -w directory (a maildir's new/)
 * is watched with inotify; delivery is complete when they hold the initial
 * number of files plus one per message. Phases, in order:
 *
 *   -B cmd   run and waited for before the clock starts (e.g. start a
 *            daemon); not in any figure
 *   submit   CMD once per message, one after the other
 *   -Q cmd   started when the last submission has exited (e.g. a queue
 *            run, or starting a stopped daemon); not waited for by itself
 *   wait     until the maildirs hold every message (and -Q has exited)
 *   -A cmd   run and waited for (e.g. stop the daemon)
 *   reap     every remaining descendant
 *
 * The driver is a child subreaper (PR_SET_CHILD_SUBREAPER): processes that
 * detach themselves (a background delivery, a daemon's master) are
 * re-parented to it, and their CPU time, and that of everything they
 * waited for, reaches getrusage(RUSAGE_CHILDREN) when they are reaped. So
 * the CPU figures count every process the submissions and commands led to,
 * and nothing else on the machine. Prints one line:
 *
 *   LABEL msgs=N submit_s= submit_rate= submit_cpu_ms= queue_s=
 *   queue_rate= queue_cmd_s= queue_cpu_ms= e2e_s= e2e_rate= cpu_ms=
 *   user_ms= sys_ms=
 *
 * submit_s: first submission started to last exited; queue_s: -Q started
 * (or the last submission exited) to the last maildir file; e2e_s: first
 * submission to last maildir file; *_cpu_ms and cpu_ms: user+system CPU
 * per message of the processes reaped in that phase (cpu_ms: from the
 * first submission to the end, -A included; a detached process's time is
 * counted in the phase it is reaped in).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_DIRS 64

static const char *label = "run";
static char *dirs[MAX_DIRS];
static int ndirs;
static int inotify_fd = -1;
static int overflowed;
static long events;
static int failed_orphans;
static int stopping;	/* -A has run: a daemon's children die by signal */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "queue-drive: %s: %s: %s\n", label, what,
		strerror(errno));
	exit(2);
}

static int
is_message(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 4 && strcmp(d->d_name + n - 4, ".eml") == 0;
}

static int
split(char *list, char **out, int max)
{
	int n = 0;
	char *p;

	for (p = strtok(list, ","); p != NULL; p = strtok(NULL, ","))
		if (n < max)
			out[n++] = p;
	return n;
}

static double
cpu_of(const struct rusage *ru, int user)
{
	const struct timeval *tv = user ? &ru->ru_utime : &ru->ru_stime;

	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static struct rusage
children(void)
{
	struct rusage ru;

	getrusage(RUSAGE_CHILDREN, &ru);
	return ru;
}

/* Files now in the watched directories (dot files aside). */
static long
count_files(void)
{
	long n = 0;
	int i;

	for (i = 0; i < ndirs; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;

		if (d == NULL)
			die(dirs[i]);
		while ((e = readdir(d)) != NULL)
			n += e->d_name[0] != '.';
		closedir(d);
	}
	return n;
}

/* Counts the files that the pending inotify events announce. */
static void
drain_events(void)
{
	char buf[65536] __attribute__((aligned(8)));
	ssize_t got;

	while ((got = read(inotify_fd, buf, sizeof(buf))) > 0) {
		char *p = buf;

		while (p < buf + got) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				overflowed = 1;
			else if (!(ev->mask & IN_ISDIR) && ev->len > 0 &&
				 ev->name[0] != '.')
				events++;
			p += sizeof(*ev) + ev->len;
		}
	}
	if (got < 0 && errno != EAGAIN && errno != EINTR)
		die("inotify read");
}

static void
note_exit(pid_t pid, int status)
{
	if (!stopping && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
		failed_orphans++;
		fprintf(stderr, "queue-drive: %s: process %ld ended with "
			"status 0x%x\n", label, (long)pid, status);
	}
}

/* Waits for pid, reaping whatever else ends meanwhile; returns its
 * status. */
static int
wait_for(pid_t pid)
{
	int status;
	pid_t got;

	for (;;) {
		got = waitpid(-1, &status, 0);
		if (got == pid)
			return status;
		if (got > 0)
			note_exit(got, status);
		else if (errno != EINTR)
			die("waitpid");
	}
}

/* Reaps the descendants that have ended; returns 0 when none is left. */
static int
reap_ended(pid_t watch, int *watch_status)
{
	int status;
	pid_t got;

	while ((got = waitpid(-1, &status, WNOHANG)) > 0) {
		if (got == watch)
			*watch_status = status;
		else
			note_exit(got, status);
	}
	return !(got < 0 && errno == ECHILD);
}

/* Waits for every descendant left. */
static void
reap_all(void)
{
	int status;
	pid_t got;

	for (;;) {
		got = waitpid(-1, &status, 0);
		if (got > 0)
			note_exit(got, status);
		else if (errno == ECHILD)
			return;
		else if (errno != EINTR)
			die("waitpid");
	}
}

static void
on_alarm(int sig)
{
	static const char msg[] = "queue-drive: descendants still running "
				  "after the timeout\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	_exit(1);
}

static pid_t
start_shell(const char *cmd)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
run_shell(const char *cmd)
{
	int status = wait_for(start_shell(cmd));

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "queue-drive: %s: '%s' failed (status 0x%x)\n",
			label, cmd, status);
		exit(1);
	}
}

static void
submit(char **cmd, const char *path)
{
	static char buf[65536];
	int fd, pfd[2], status;
	ssize_t n;
	pid_t pid;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(path);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		die("pipe");
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		dup2(pfd[0], 0);
		execvp(cmd[0], cmd);
		perror(cmd[0]);
		_exit(127);
	}
	close(pfd[0]);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		char *p = buf;

		while (n > 0) {
			ssize_t w = write(pfd[1], p, (size_t)n);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				break;	/* the child stopped reading */
			}
			p += w;
			n -= w;
		}
	}
	close(pfd[1]);
	close(fd);
	status = wait_for(pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "queue-drive: %s: %s for %s: status 0x%x\n",
			label, cmd[0], path, status);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	const char *before = NULL, *queue_cmd = NULL, *after = NULL;
	char *rcpts[MAX_DIRS], **cmd, **argv_i, *rlist = NULL, *wlist = NULL;
	struct dirent **names;
	struct rusage ru0, ru1, ru2;
	double t0, t1, tq, t2 = 0, tq_end = 0, timeout = 600, last_progress;
	long limit = -1, nmsgs, initial, target, i;
	int nrcpts, c, cmdc, k, queue_status = -1;
	pid_t queue_pid = -1;
	struct sigaction sa;

	while ((c = getopt(argc, argv, "+l:n:t:B:Q:A:r:w:")) != -1) {
		switch (c) {
		case 'l': label = optarg; break;
		case 'n': limit = atol(optarg); break;
		case 't': timeout = atof(optarg); break;
		case 'B': before = optarg; break;
		case 'Q': queue_cmd = optarg; break;
		case 'A': after = optarg; break;
		case 'r': rlist = optarg; break;
		case 'w': wlist = optarg; break;
		default: goto usage;
		}
	}
	if (argc - optind < 2 || rlist == NULL || wlist == NULL) {
usage:
		fprintf(stderr, "usage: queue-drive [-l label] [-n limit] "
			"[-t timeout] [-B cmd] [-Q cmd] [-A cmd] -r rcpt,... "
			"-w dir,... MSGDIR CMD [ARG...]\n");
		return 2;
	}
	nrcpts = split(rlist, rcpts, MAX_DIRS);
	ndirs = split(wlist, dirs, MAX_DIRS);
	if (nrcpts == 0 || ndirs == 0)
		goto usage;
	nmsgs = scandir(argv[optind], &names, is_message, alphasort);
	if (nmsgs < 0)
		die(argv[optind]);
	if (limit >= 0 && limit < nmsgs)
		nmsgs = limit;
	cmdc = argc - optind - 1;
	argv_i = argv + optind + 1;
	cmd = calloc((size_t)cmdc + 1, sizeof(*cmd));
	if (cmd == NULL)
		die("calloc");

	/* A writer that stops reading must not kill the driver. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		die("PR_SET_CHILD_SUBREAPER");
	inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (inotify_fd < 0)
		die("inotify_init1");
	for (k = 0; k < ndirs; k++)
		if (inotify_add_watch(inotify_fd, dirs[k],
				      IN_CREATE | IN_MOVED_TO) < 0)
			die(dirs[k]);

	if (before != NULL)
		run_shell(before);
	reap_ended(-1, &queue_status);
	drain_events();
	events = 0;
	initial = count_files();
	target = initial + nmsgs;

	ru0 = children();
	t0 = now();
	for (i = 0; i < nmsgs; i++) {
		const char *rcpt = rcpts[i % nrcpts];
		char path[PATH_MAX];

		for (k = 0; k < cmdc; k++)
			cmd[k] = strcmp(argv_i[k], "%r") == 0 ? (char *)rcpt
							      : argv_i[k];
		snprintf(path, sizeof(path), "%s/%s", argv[optind],
			 names[i]->d_name);
		submit(cmd, path);
		drain_events();
	}
	t1 = now();
	ru1 = children();

	tq = t1;
	if (queue_cmd != NULL) {
		tq = now();
		queue_pid = start_shell(queue_cmd);
	}
	last_progress = now();
	for (;;) {
		struct pollfd pfd = { inotify_fd, POLLIN, 0 };
		long before_events = events;

		drain_events();
		if (t2 == 0 && (overflowed || initial + events >= target) &&
		    count_files() >= target)
			t2 = now();
		reap_ended(queue_pid, &queue_status);
		if (queue_pid > 0 && queue_status != -1 && tq_end == 0)
			tq_end = now();
		if (t2 != 0 && (queue_pid < 0 || tq_end != 0))
			break;
		if (events != before_events)
			last_progress = now();
		if (now() - last_progress > timeout) {
			fprintf(stderr, "queue-drive: %s: no delivery for %.0f s;"
				" %ld of %ld messages arrived\n", label, timeout,
				count_files() - initial, nmsgs);
			exit(1);
		}
		poll(&pfd, 1, overflowed ? 20 : 50);
	}
	if (queue_pid > 0 && (!WIFEXITED(queue_status) ||
			      WEXITSTATUS(queue_status) != 0)) {
		fprintf(stderr, "queue-drive: %s: '%s' failed (status 0x%x)\n",
			label, queue_cmd, queue_status);
		exit(1);
	}
	if (after != NULL) {
		stopping = 1;
		run_shell(after);
	}
	/* Everything left (detached deliveries finishing their queue
	 * update, daemons' children after a stop) is waited for. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	alarm((unsigned)timeout);
	reap_all();
	alarm(0);
	ru2 = children();

	if (failed_orphans > 0) {
		fprintf(stderr, "queue-drive: %s: %d detached processes "
			"failed\n", label, failed_orphans);
		return 1;
	}
	{
		double n = nmsgs > 0 ? (double)nmsgs : 1;
		double user = cpu_of(&ru2, 1) - cpu_of(&ru0, 1);
		double sys = cpu_of(&ru2, 0) - cpu_of(&ru0, 0);
		double sub = cpu_of(&ru1, 1) + cpu_of(&ru1, 0) -
			     cpu_of(&ru0, 1) - cpu_of(&ru0, 0);
		double que = cpu_of(&ru2, 1) + cpu_of(&ru2, 0) -
			     cpu_of(&ru1, 1) - cpu_of(&ru1, 0);

		printf("%s msgs=%ld submit_s=%.3f submit_rate=%.1f "
		       "submit_cpu_ms=%.3f queue_s=%.3f queue_rate=%.1f "
		       "queue_cmd_s=%.3f queue_cpu_ms=%.3f e2e_s=%.3f "
		       "e2e_rate=%.1f cpu_ms=%.3f user_ms=%.3f sys_ms=%.3f\n",
		       label, nmsgs, t1 - t0, n / (t1 - t0), 1e3 * sub / n,
		       t2 - tq, n / (t2 - tq),
		       tq_end > 0 ? tq_end - tq : 0, 1e3 * que / n,
		       t2 - t0, n / (t2 - t0), 1e3 * (user + sys) / n,
		       1e3 * user / n, 1e3 * sys / n);
	}
	return 0;
}
