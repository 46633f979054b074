/*
 * sendmail: the sendmail-compatible command: submission into the queue,
 * the queue listing (-bp, and as "mailq"), queue runs (-q, -qINTERVAL),
 * address tests (-bv, through deliver's own resolver) and newaliases (-bi).
 * Every other sendmail option is accepted and ignored, as Postfix does.
 *
 * Installed setgid to submit_group, it lets any user queue mail into a
 * queue directory only that group can enter; the group is used for nothing
 * else: it is dropped for good before anything but queue access happens,
 * and before a -C file that is not root's own is read.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aliases.h"
#include "buf.h"
#include "config.h"
#include "enqueue.h"
#include "io.h"
#include "mailq.h"
#include "maillog.h"
#include "privs.h"
#include "runner.h"
#include "status.h"

struct options {
	const char *config_path;
	const char *sender;
	const char *full_name;
	char mode;		/* m: submit, p, i, v, s, d, D, t */
	char delivery;		/* b: background, i: interactive, q: queue */
	int extract;		/* -t */
	int ignore_dots;	/* -i, -oi */
	int verbose;		/* -v */
	int run_queue;		/* -q */
	unsigned interval;	/* -qINTERVAL */
	const char *const *rcpts;
	size_t nrcpts;
};

static void
usage(void)
{
	fprintf(stderr,
		"usage: sendmail [-C conf] [-t] [-i] [-f sender] [-F name] "
		"[-odb|-odi|-odq] [-v] [--] [recipient...]\n"
		"       sendmail [-C conf] -bp | -bi | -bv address... | -q | "
		"-qINTERVAL [-bD]\n");
	exit(EX_USAGE);
}

static void
die(int code, const char *fmt, const char *arg)
{
	fprintf(stderr, "sendmail: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(code);
}

/* The options of sendmail(8) that take a value. */
static int
takes_value(char c)
{
	return strchr("BCFLMNOQRVXbdefhopqr", c) != NULL;
}

static void
parse_options(int argc, char **argv, struct options *o)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i], *val;
		char c;

		if (arg[0] != '-' || arg[1] == '\0')
			break;
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		/* Letters without a value may be combined, and the last
		 * one may take a value: -ti, -tf addr, -itfaddr. */
		{
			const char *p = arg + 1;

			while (*p != '\0' && !takes_value(*p)) {
				switch (*p) {
				case 't': o->extract = 1; break;
				case 'i': o->ignore_dots = 1; break;
				case 'v': o->verbose = 1; break;
				default: break;	/* -G -I -m -n -s -T -U */
				}
				p++;
			}
			if (*p == '\0')
				continue;
			c = *p;
			/* -o, -b, -d and -q carry their value attached. */
			if (strchr("obdq", c) != NULL || p[1] != '\0') {
				val = p + 1;
			} else {
				if (i + 1 >= argc)
					usage();
				val = argv[++i];
			}
		}
		switch (c) {
		case 'C':
			o->config_path = val;
			break;
		case 'f':
		case 'r':
			o->sender = val;
			break;
		case 'F':
			o->full_name = val;
			break;
		case 'b':
			if (strchr("mpivsdDt", val[0]) == NULL || val[0] == '\0')
				die(EX_USAGE, "unknown mode -b%s", val);
			o->mode = val[0];
			break;
		case 'o':
			if (val[0] == 'i' && val[1] == '\0')
				o->ignore_dots = 1;
			else if (val[0] == 'd' && val[1] != '\0')
				o->delivery = val[1] == 'd' ? 'q' : val[1];
			/* -oem, -oee, -oXxx: ignored */
			break;
		case 'O':
			if (strncasecmp(val, "IgnoreDots", 10) == 0)
				o->ignore_dots = 1;
			break;
		case 'q':
			o->run_queue = 1;
			if (val[0] != '\0' && val[0] >= '0' && val[0] <= '9' &&
			    config_parse_duration(val, &o->interval) < 0)
				die(EX_USAGE, "bad queue interval -q%s", val);
			break;
		default:
			break;	/* -B -N -R -V -X -L -h -e -d ...: ignored */
		}
	}
	o->rcpts = (const char *const *)argv + i;
	o->nrcpts = (size_t)(argc - i);
}

/* Running setgid (not as root): the group is only for the queue. */
static int
setgid_caller(void)
{
	return getuid() != 0 && getegid() != getgid();
}

static void
drop_group(void)
{
	if (getegid() != getgid() && setresgid(getgid(), getgid(),
					       getgid()) < 0)
		die(EX_OSERR, "cannot drop the submission group: %s",
		    strerror(errno));
}

/* A -C file is trusted with the group only when root wrote it. */
static void
check_config_file(const char *path)
{
	struct stat sb;

	if (!setgid_caller())
		return;
	if (stat(path, &sb) < 0 || sb.st_uid != 0 ||
	    (sb.st_mode & (S_IWGRP | S_IWOTH)))
		drop_group();
}

static int
exec_deliver_verify(struct config *cfg, const struct options *o)
{
	const char **args;
	size_t n = 0, i;

	if (o->nrcpts == 0)
		usage();
	drop_group();
	args = calloc(o->nrcpts + 5, sizeof(*args));
	if (args == NULL)
		die(EX_OSERR, "%s", strerror(errno));
	args[n++] = cfg->deliver_path;
	if (o->config_path != NULL) {
		args[n++] = "-C";
		args[n++] = o->config_path;
	}
	args[n++] = "-V";
	for (i = 0; i < o->nrcpts; i++)
		args[n++] = o->rcpts[i];
	args[n] = NULL;
	fflush(NULL);
	execv(cfg->deliver_path, (char *const *)args);
	fprintf(stderr, "sendmail: cannot run %s: %s\n", cfg->deliver_path,
		strerror(errno));
	return EX_UNAVAILABLE;
}

/* -bs, -bd, -bD: the SMTP server does it (smtpd -i, smtpd [-F]),
 * with the queue runner daemon when -qINTERVAL came too. */
static int
exec_smtpd(struct config *cfg, const struct options *o)
{
	const char *args[8];
	char interval[32];
	size_t n = 0;

	args[n++] = cfg->smtpd_path;
	if (o->config_path != NULL) {
		args[n++] = "-C";
		args[n++] = o->config_path;
	}
	if (o->mode == 's') {
		args[n++] = "-i";
	} else {
		if (getuid() != 0)
			die(EX_NOPERM, "%s", "only root may start the daemon");
		drop_group();
		if (o->mode == 'D')
			args[n++] = "-F";
		if (o->run_queue && o->interval > 0) {
			snprintf(interval, sizeof(interval), "%us",
				 o->interval);
			args[n++] = "-q";
			args[n++] = interval;
		}
	}
	args[n] = NULL;
	fflush(NULL);
	if (setgid_caller()) {
		/* With the submission group, nothing of the caller's
		 * environment comes along. */
		static char *const clean[] = {
			"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL
		};

		execve(cfg->smtpd_path, (char *const *)args, clean);
	} else {
		execv(cfg->smtpd_path, (char *const *)args);
	}
	fprintf(stderr, "sendmail: cannot run %s: %s\n", cfg->smtpd_path,
		strerror(errno));
	return EX_UNAVAILABLE;
}

static char *
clean_sender(const char *given, const char *login, const char *hostname)
{
	struct buf b;
	size_t len;
	char *out;

	buf_init(&b);
	if (given == NULL) {
		buf_printf(&b, "%s@%s", login, hostname);
	} else {
		while (*given == ' ')
			given++;
		len = strlen(given);
		if (len >= 2 && given[0] == '<' && given[len - 1] == '>') {
			given++;
			len -= 2;
		}
		if (memchr(given, '\n', len) || memchr(given, '\r', len))
			die(EX_USAGE, "bad sender address: %s", given);
		if (len > 0)
			enqueue_qualify(given, len, hostname, &b);
	}
	out = buf_steal(&b);
	buf_free(&b);
	return out;
}

/* Root makes a missing queue directory: root, group submit_group, mode
 * 2770 (files inherit the group); without that group, root's alone. */
static void
ensure_queue_dir(const struct config *cfg)
{
	struct group *gr;

	if (getuid() != 0 || geteuid() != 0)
		return;
	gr = getgrnam(cfg->submit_group);
	if (mkdir(cfg->queue_dir, gr ? 0770 : 0700) < 0)
		return;	/* there already, or the error comes when it is used */
	if (gr != NULL && (chown(cfg->queue_dir, 0, gr->gr_gid) < 0 ||
			   chmod(cfg->queue_dir, 02770) < 0))
		fprintf(stderr, "sendmail: %s: %s\n", cfg->queue_dir,
			strerror(errno));
}

/* Takes one of max_deliveries slots (flock on queue_dir/.slotN, held
 * until exit); 0 when all are taken. */
static int
delivery_slot(const struct config *cfg)
{
	unsigned k;

	for (k = 0; k < cfg->max_deliveries; k++) {
		struct buf path;
		int fd;

		buf_init(&path);
		buf_printf(&path, "%s/.slot%u", cfg->queue_dir, k);
		fd = open(path.data, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
			  0600);
		buf_free(&path);
		if (fd < 0)
			return 1;	/* cannot tell: deliver anyway */
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 1;	/* fd stays open: the slot is ours */
		close(fd);
	}
	return 0;
}

static int
submit(struct config *cfg, const struct options *o)
{
	struct enqueue_request req;
	struct passwd *pw = getpwuid(getuid());
	struct runner r;
	struct status st;
	char id[QID_SIZE], login[64], *sender, *gecos = NULL;
	size_t nrcpts = 0;
	pid_t pid;

	if (pw != NULL)
		snprintf(login, sizeof(login), "%s", pw->pw_name);
	else
		snprintf(login, sizeof(login), "uid%ld", (long)getuid());
	if (o->full_name == NULL && pw != NULL && pw->pw_gecos != NULL) {
		gecos = xstrdup(pw->pw_gecos);
		gecos[strcspn(gecos, ",")] = '\0';
	}
	sender = clean_sender(o->sender, login, config_hostname(cfg));
	ensure_queue_dir(cfg);
	memset(&req, 0, sizeof(req));
	req.cfg = cfg;
	req.sender = sender;
	req.full_name = o->full_name ? o->full_name : gecos;
	req.login = login;
	req.recipients = o->rcpts;
	req.nrecipients = o->nrcpts;
	req.extract_recipients = o->extract;
	req.ignore_dots = o->ignore_dots;
	if (enqueue_message(&req, stdin, id, &nrcpts, &st) < 0) {
		fprintf(stderr, "sendmail: %s\n", st.text);
		free(sender);
		free(gecos);
		return st.exit_code;
	}
	free(sender);
	free(gecos);
	if (o->verbose)
		printf("%s: queued for %zu recipient%s\n", id, nrcpts,
		       nrcpts == 1 ? "" : "s");

	/* Delivery: only root can run deliver for other users; everyone
	 * else wakes the queue daemon (if there is none, the next queue run
	 * delivers). */
	if (o->delivery == 'q')
		return EX_OK;
	if (getuid() != 0 || geteuid() != 0) {
		runner_trigger(cfg);
		return EX_OK;
	}
	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	r.config_path = o->config_path;
	r.force = 1;
	r.verbose = o->verbose;
	if (o->delivery == 'i' || o->verbose) {
		runner_message(&r, id);
		return EX_OK;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		setsid();
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
			if (null > 2)
				close(null);
		}
		/* At most max_deliveries of these at once: a burst of
		 * submissions (cron at midnight) must not become a burst of
		 * processes. Without a free slot the message waits for the
		 * queue daemon, which is woken, or the next queue run. */
		if (!delivery_slot(cfg)) {
			runner_trigger(cfg);
			_exit(0);
		}
		_exit(runner_message(&r, id) == 0 ? 0 : 1);
	}
	/* No fork: the message waits for the next queue run. */
	return EX_OK;
}

static int
run_queue(struct config *cfg, const struct options *o)
{
	struct runner r;

	if (getuid() != 0 || geteuid() != 0)
		die(EX_NOPERM, "%s", "only root may run the queue");
	ensure_queue_dir(cfg);
	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	r.config_path = o->config_path;
	r.verbose = o->verbose;
	if (o->interval == 0) {
		r.force = 1;
		return runner_run(&r) == 0 ? EX_OK : EX_TEMPFAIL;
	}
	if (o->mode != 'D') {
		int detached = io_detach();

		if (detached < 0)
			die(EX_OSERR, "fork: %s", strerror(errno));
		if (detached > 0)
			return EX_OK;
	}
	return runner_daemon(&r, o->interval) == 0 ? EX_OK : EX_TEMPFAIL;
}

int
main(int argc, char **argv)
{
	struct options o;
	struct config cfg;
	struct status st;
	const char *name = strrchr(argv[0], '/');
	int rc;

	/* Queue files are group-readable for mailq (see queue.5). */
	umask(027);
	/* Whatever the caller left, SIGCHLD must be reapable. */
	signal(SIGCHLD, SIG_DFL);
	/* Changes nothing (the effective group is the submission group
	 * already) but in sanitizer builds, where it lets LeakSanitizer
	 * attach at exit (see privs.c). */
	if (setgid_caller())
		privs_use_extra_group(1);
	memset(&o, 0, sizeof(o));
	o.mode = 'm';
	o.delivery = 'b';
	name = name ? name + 1 : argv[0];
	parse_options(argc, argv, &o);
	if (strcmp(name, "mailq") == 0)
		o.mode = 'p';
	else if (strcmp(name, "newaliases") == 0)
		o.mode = 'i';
	if (o.config_path != NULL)
		check_config_file(o.config_path);
	if (config_load(&cfg, o.config_path, o.config_path != NULL, &st) < 0) {
		fprintf(stderr, "sendmail: %s\n", st.text);
		return EX_CONFIG;
	}
	/* A user's submission may not write root's log file: syslog then,
	 * as deliver does. */
	if (maillog_open(cfg.log, "sendmail", config_hostname(&cfg), &st) < 0 &&
	    maillog_open("syslog", "sendmail", config_hostname(&cfg), &st) < 0)
		fprintf(stderr, "sendmail: %s\n", st.text);

	if (o.run_queue && o.mode != 'p' && o.mode != 'd' && o.mode != 'D') {
		drop_group();
		rc = run_queue(&cfg, &o);
	} else {
		switch (o.mode) {
		case 'm':
			rc = submit(&cfg, &o);
			break;
		case 'p':
			rc = mailq_print(&cfg, stdout) == 0 ? EX_OK
							    : EX_TEMPFAIL;
			break;
		case 'i':
			drop_group();
			rc = aliases_rebuild(&cfg, stdout, stderr);
			break;
		case 'v':
			rc = exec_deliver_verify(&cfg, &o);
			break;
		case 's':
		case 'd':
		case 'D':
			rc = exec_smtpd(&cfg, &o);
			break;
		default:
			fprintf(stderr, "sendmail: -b%c is not supported\n",
				o.mode);
			rc = EX_UNAVAILABLE;
			break;
		}
	}
	fflush(stdout);
	if (ferror(stdout) && rc == EX_OK)
		rc = EX_IOERR;
	maillog_close();
	config_free(&cfg);
	return rc;
}
