/*
 * pipe: command destinations and the command runner.
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

#include "privs.h"

#define OUTPUT_KEEP 512		/* bytes of a failing command's output kept */

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

/* In the child: becomes the user, sets up the descriptors and execs. */
static void
exec_command(const struct command_spec *spec, int in_fd, int out_fd)
{
	struct status st;
	static char *const no_env[] = { NULL };
	int err_fd = spec->capture_all ? STDERR_FILENO : out_fd;

	setsid();	/* its own process group: a timeout kills all of it */
	if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
	    dup2(err_fd, STDERR_FILENO) < 0)
		_exit(EX_OSERR);
	if (spec->uid != (uid_t)-1) {
		if (spec->uid == 0 && geteuid() == 0) {
			fprintf(stderr, "refusing to run a command as root\n");
			_exit(EX_NOPERM);
		}
		if (privs_become(spec->uid, spec->gid, (gid_t)-1, &st) < 0) {
			fprintf(stderr, "%s\n", st.text);
			_exit(EX_TEMPFAIL);
		}
	}
	/* The spool's mail group never reaches a command. */
	privs_drop_extra_group();
	if (spec->cwd != NULL && chdir(spec->cwd) < 0 && chdir("/") < 0)
		_exit(EX_OSERR);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	if (spec->argv != NULL) {
		execve(spec->argv[0], spec->argv,
		       spec->envp ? spec->envp : no_env);
		fprintf(stderr, "cannot run %s: %s\n", spec->argv[0],
			strerror(errno));
	} else {
		const char *shell = spec->shell ? spec->shell : "/bin/sh";
		const char *base = strrchr(shell, '/');

		execle(shell, base ? base + 1 : shell, "-c",
		       spec->shell_command, (char *)NULL,
		       spec->envp ? spec->envp : no_env);
		fprintf(stderr, "cannot run %s: %s\n", shell, strerror(errno));
	}
	_exit(EX_OSERR);
}

static void
read_output(int fd, int all, struct buf *out)
{
	char chunk[8192];
	off_t off = 0;
	ssize_t n;

	while ((n = pread(fd, chunk, sizeof(chunk), off)) > 0) {
		size_t take = (size_t)n;

		if (!all && out->len + take > OUTPUT_KEEP)
			take = OUTPUT_KEEP - out->len;
		buf_append(out, chunk, take);
		off += n;
		if (!all && out->len >= OUTPUT_KEEP)
			break;
	}
}

int
command_run(const struct command_spec *spec, const struct message *m,
	    const struct msgform *form, int *exit_status, struct buf *output,
	    struct status *st)
{
	struct sigaction sa, old_sa;
	struct itimerval it, no_timer;
	struct status write_st;
	int in[2], out_fd, status, rc = 0, write_rc = 0;
	off_t written;
	pid_t pid;

	*exit_status = -1;
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
		exec_command(spec, in[0], out_fd);
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
	it.it_value.tv_sec = spec->timeout;	/* 0: no timer */
	setitimer(ITIMER_REAL, &it, NULL);

	status_ok(&write_st);
	if (m != NULL && form != NULL)
		write_rc = msgform_write(m, form, in[1], &written, &write_st);
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

	read_output(out_fd, spec->capture_all, output);
	close(out_fd);
	if (timed_out) {
		rc = status_set(st, EX_TEMPFAIL, "4.3.0",
				"command timed out after %u seconds",
				spec->timeout);
	} else if (status == -1) {
		rc = status_errno(st, errno, "waitpid");
	} else if (WIFSIGNALED(status)) {
		*exit_status = 128 + WTERMSIG(status);
	} else {
		*exit_status = WEXITSTATUS(status);
		/* A command that did not read all its input but exited 0
		 * has the message (as Postfix sees it); any other failure
		 * to hand the message over is ours: retry. */
		if (write_rc < 0 && *exit_status == 0 &&
		    strstr(write_st.text, "Broken pipe") == NULL) {
			*st = write_st;
			rc = -1;
		}
	}
	return rc;
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

int
pipe_deliver(const struct pipe_request *req, const struct message *m,
	     const struct msgform *form, struct status *st)
{
	struct command_spec spec;
	struct buf env, output;
	size_t offsets[16], n = 0, i;
	char *envp[17];
	const char *domain = req->recipient ? strrchr(req->recipient, '@')
					    : NULL;
	char *local = NULL;
	int exit_status, rc;

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

	memset(&spec, 0, sizeof(spec));
	spec.shell_command = req->command;
	spec.envp = envp;
	spec.uid = req->uid;
	spec.gid = req->gid;
	spec.cwd = req->home ? req->home : "/";
	spec.timeout = req->timeout;
	buf_init(&output);
	umask(077);
	rc = command_run(&spec, m, form, &exit_status, &output, st);
	/* One line of what it said, for the bounce and the maillog. */
	for (i = 0; i < output.len; i++)
		if (output.data[i] == '\n' || output.data[i] == '\r' ||
		    output.data[i] == '\t' || output.data[i] == '\0')
			output.data[i] = ' ';
	while (output.len > 0 && output.data[output.len - 1] == ' ')
		buf_truncate(&output, output.len - 1);
	if (rc == 0) {
		if (exit_status >= 128)
			rc = status_set(st, EX_TEMPFAIL, "4.3.0",
					"command died with signal %d%s%s",
					exit_status - 128,
					output.len ? ": " : "", output.data);
		else
			rc = status_command_exit(st, exit_status,
						 output.data);
	} else if (output.len > 0) {
		size_t len = strlen(st->text);

		snprintf(st->text + len, sizeof(st->text) - len, ": %s",
			 output.data);
	}
	buf_free(&output);
	buf_free(&env);
	free(local);
	return rc;
}
