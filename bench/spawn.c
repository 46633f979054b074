/*
 * spawn: the benchmark driver. Runs one process per message, one after the
 * other, as an MTA runs its delivery agent, and reports rate, CPU and peak
 * memory of the children. The same driver runs every program measured.
 *
 *   spawn [-p|-f] [-l label] [-n limit] MSGDIR|FILE CMD [ARG...]
 *
 * -p (default): the message comes through a pipe, copied in 64 KiB writes,
 *    as an MTA hands it over; -f: the child gets the open file itself.
 * -n: only the first limit messages (for a warm-up).
 * Stops at the first child that does not exit 0. Prints one line:
 *   LABEL msgs=N wall=S rate=MSGS_PER_S cpu_ms=C user_ms=U sys_ms=S
 *   maxrss_kib=R
 * rate is over the wall time of the whole loop; cpu_ms the children's mean
 * user+system time per message (wait4's rusage: the driver's own time is
 * not in it); maxrss_kib the largest peak RSS of one child.
 *
 * Written in C, not Python, because a child's ru_maxrss also counts the
 * memory it had before exec, i.e. the parent's: forked from this small
 * process, that floor stays far below what is measured.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int
is_message(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 4 && strcmp(d->d_name + n - 4, ".eml") == 0;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
run_one(char **cmd, const char *path, int use_pipe, struct rusage *ru)
{
	static char buf[65536];
	int fd, pfd[2] = { -1, -1 }, status;
	pid_t pid;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	if (use_pipe && pipe2(pfd, O_CLOEXEC) < 0) {
		perror("pipe");
		exit(2);
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		dup2(use_pipe ? pfd[0] : fd, 0);	/* dup2 clears CLOEXEC */
		execvp(cmd[0], cmd);
		perror(cmd[0]);
		_exit(127);
	}
	if (use_pipe) {
		ssize_t n;

		close(pfd[0]);
		while ((n = read(fd, buf, sizeof(buf))) > 0) {
			char *p = buf;

			while (n > 0) {
				ssize_t w = write(pfd[1], p, (size_t)n);

				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					goto done;	/* EPIPE: it stopped */
				p += w;
				n -= w;
			}
		}
done:
		close(pfd[1]);
	}
	close(fd);
	while (wait4(pid, &status, 0, ru) < 0)
		if (errno != EINTR) {
			perror("wait4");
			exit(2);
		}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int
main(int argc, char **argv)
{
	const char *label = "run";
	int use_pipe = 1, c, i, count, limit = 0;
	struct dirent **names = NULL;
	char **files;
	struct stat sb;
	double start, wall, user = 0, sys = 0;
	long maxrss = 0;

	while ((c = getopt(argc, argv, "+pfl:n:")) != -1) {
		switch (c) {
		case 'p': use_pipe = 1; break;
		case 'f': use_pipe = 0; break;
		case 'l': label = optarg; break;
		case 'n': limit = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (argc - optind < 2)
		goto usage;
	signal(SIGPIPE, SIG_IGN);
	if (stat(argv[optind], &sb) < 0) {
		perror(argv[optind]);
		return 2;
	}
	if (S_ISDIR(sb.st_mode)) {
		count = scandir(argv[optind], &names, is_message, alphasort);
		if (count < 0) {
			perror(argv[optind]);
			return 2;
		}
		files = calloc((size_t)count + 1, sizeof(*files));
		for (i = 0; i < count; i++) {
			size_t len = strlen(argv[optind]) +
				     strlen(names[i]->d_name) + 2;

			files[i] = malloc(len);
			snprintf(files[i], len, "%s/%s", argv[optind],
				 names[i]->d_name);
		}
	} else {
		count = 1;
		files = &argv[optind];
	}
	if (limit > 0 && limit < count)
		count = limit;
	if (count == 0) {
		fprintf(stderr, "%s: no *.eml files\n", argv[optind]);
		return 2;
	}

	start = now();
	for (i = 0; i < count; i++) {
		struct rusage ru;
		int rc = run_one(argv + optind + 1, files[i], use_pipe, &ru);

		if (rc != 0) {
			fprintf(stderr, "%s: %s < %s: exit %d\n", label,
				argv[optind + 1], files[i], rc);
			return 1;
		}
		user += (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
		sys += (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
		if (ru.ru_maxrss > maxrss)
			maxrss = ru.ru_maxrss;
	}
	wall = now() - start;
	printf("%s msgs=%d wall=%.3f rate=%.1f cpu_ms=%.3f user_ms=%.3f "
	       "sys_ms=%.3f maxrss_kib=%ld\n", label, count, wall,
	       count / wall, (user + sys) / count * 1000, user / count * 1000,
	       sys / count * 1000, maxrss);
	return 0;
usage:
	fprintf(stderr, "usage: spawn [-p|-f] [-l label] [-n limit] "
			"MSGDIR|FILE CMD [ARG...]\n");
	return 2;
}
