/*
 * pipe: command destinations.
 */
#include "pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "privs.h"

#define OUTPUT_KEEP 512		/* bytes of the command's output kept */

static volatile sig_atomic_t timed_out;
static volatile pid_t child_group;

static void
on_timeout(int sig)
{
	(void)sig;
	timed_out = 1;
	if (child_group > 0)
		kill(-child_group, SIGKILL);
}

static void
add_env(struct buf *store, size_t *offsets, size_t *n, const char *name,
	const char *value)
{
	if (value == NULL)
		return;
	offsets[(*n)++] = store->len;
	buf_printf(store, "%s=%s", name, value);
	buf_putc(store, '\0');
}

/* Runs in the child: becomes the user and execs the shell. */
static void
run_command(const struct pipe_request *req, int in_fd, int out_fd)
{
	struct status st;
	struct buf env;
	size_t offsets[16], n = 0, i;
	char *envp[17];
	const char *domain = req->recipient ? strrchr(req->recipient, '@')
					    : NULL;
	char *local = NULL;

	setsid();	/* its own process group: a timeout kills all of it */
	if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
	    dup2(out_fd, STDERR_FILENO) < 0)
		_exit(EX_OSERR);
	if (req->uid == 0) {
		fprintf(stderr, "refusing to run a command as root\n");
		_exit(EX_NOPERM);
	}
	if (privs_become(req->uid, req->gid, (gid_t)-1, &st) < 0) {
		fprintf(stderr, "%s\n", st.text);
		_exit(EX_TEMPFAIL);
	}
	if (req->home == NULL || chdir(req->home) < 0)
		if (chdir("/") < 0)
			_exit(EX_OSERR);
	umask(077);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	if (req->recipient != NULL)
		local = domain ? xstrndup(req->recipient,
					  (size_t)(domain - req->recipient))
			       : xstrdup(req->recipient);
	buf_init(&env);
	add_env(&env, offsets, &n, "HOME", req->home ? req->home : "/");
	add_env(&env, offsets, &n, "USER", req->user);
	add_env(&env, offsets, &n, "LOGNAME", req->user);
	add_env(&env, offsets, &n, "SHELL", "/bin/sh");
	add_env(&env, offsets, &n, "PATH", "/usr/local/bin:/usr/bin:/bin");
	add_env(&env, offsets, &n, "SENDER", req->sender);
	add_env(&env, offsets, &n, "RECIPIENT", req->recipient);
	add_env(&env, offsets, &n, "ORIGINAL_RECIPIENT", req->recipient);
	add_env(&env, offsets, &n, "LOCAL", local);
	add_env(&env, offsets, &n, "DOMAIN", domain ? domain + 1 : NULL);
	add_env(&env, offsets, &n, "EXTENSION", req->extension);
	add_env(&env, offsets, &n, "LANG", "C");
	for (i = 0; i < n; i++)
		envp[i] = env.data + offsets[i];
	envp[n] = NULL;
	execle("/bin/sh", "sh", "-c", req->command, (char *)NULL, envp);
	fprintf(stderr, "cannot run /bin/sh: %s\n", strerror(errno));
	_exit(EX_OSERR);
}

/* The first lines of what the command printed, on one line. */
static void
read_output(int fd, struct buf *out)
{
	char text[OUTPUT_KEEP + 1];
	ssize_t n = pread(fd, text, OUTPUT_KEEP, 0);
	size_t i;

	if (n <= 0)
		return;
	text[n] = '\0';
	for (i = 0; i < (size_t)n; i++)
		if (text[i] == '\n' || text[i] == '\r' || text[i] == '\t' ||
		    text[i] == '\0')
			text[i] = ' ';
	while (n > 0 && text[n - 1] == ' ')
		text[--n] = '\0';
	buf_puts(out, text);
}

int
pipe_deliver(const struct pipe_request *req, const struct message *m,
	     const struct msgform *form, struct status *st)
{
	struct msgform f = *form;
	struct sigaction sa, old_sa;
	struct itimerval it, no_timer;
	struct buf output;
	struct status write_st;
	int in[2], out_fd, status, rc;
	off_t written;
	pid_t pid;

	out_fd = memfd_create("deliver-command-output", MFD_CLOEXEC);
	if (out_fd < 0)
		return status_errno(st, errno, "memfd_create");
	if (pipe2(in, O_CLOEXEC) < 0) {
		close(out_fd);
		return status_errno(st, errno, "pipe");
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(out_fd);
		close(in[0]);
		close(in[1]);
		return status_errno(st, errno, "fork");
	}
	if (pid == 0) {
		close(in[1]);
		run_command(req, in[0], out_fd);
	}
	close(in[0]);
	timed_out = 0;
	child_group = pid;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_timeout;	/* no SA_RESTART: writes stop */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old_sa);
	memset(&it, 0, sizeof(it));
	memset(&no_timer, 0, sizeof(no_timer));
	it.it_value.tv_sec = req->timeout;	/* 0: no limit */
	setitimer(ITIMER_REAL, &it, NULL);

	f.mbox = 0;
	rc = msgform_write(m, &f, in[1], &written, &write_st);
	close(in[1]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			status = -1;
			break;
		}
	}
	setitimer(ITIMER_REAL, &no_timer, NULL);
	sigaction(SIGALRM, &old_sa, NULL);
	child_group = 0;

	buf_init(&output);
	read_output(out_fd, &output);
	close(out_fd);
	if (timed_out) {
		status_set(st, EX_TEMPFAIL, "4.3.0",
			   "command timed out after %u seconds%s%s",
			   req->timeout, output.len ? ": " : "", output.data);
		rc = -1;
	} else if (status == -1) {
		status_errno(st, errno, "waitpid");
		rc = -1;
	} else if (WIFSIGNALED(status)) {
		status_set(st, EX_TEMPFAIL, "4.3.0",
			   "command died with signal %d%s%s", WTERMSIG(status),
			   output.len ? ": " : "", output.data);
		rc = -1;
	} else if (rc < 0 && WEXITSTATUS(status) == 0 &&
		   strstr(write_st.text, "Broken pipe") == NULL) {
		/* A command that did not read all its input but exited 0
		 * has the message (as Postfix sees it); any other failure
		 * to hand the message over is ours: retry. */
		*st = write_st;
	} else {
		rc = status_command_exit(st, WEXITSTATUS(status), output.data);
	}
	buf_free(&output);
	return rc;
}
