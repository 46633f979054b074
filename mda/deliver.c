/*
 * deliver: the local delivery agent. Reads one message on standard input,
 * resolves each recipient (virtusertable, aliases, ~/.forward) and delivers
 * to every final destination, each as its user; exits 0 when all succeeded,
 * otherwise with the most serious failure (75 outranks permanent codes:
 * nothing is lost).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "buf.h"
#include "config.h"
#include "file.h"
#include "local.h"
#include "maillog.h"
#include "message.h"
#include "msgform.h"
#include "pipe.h"
#include "privs.h"
#include "qid.h"
#include "rcdeliver.h"
#include "resolve.h"
#include "stats.h"
#include "status.h"

struct options {
	const char *config_path;
	const char *sender;
	const char *extension;
	const char *queue_id;
	const char *rcfile;	/* -r: run this rcfile as the caller */
	int direct;		/* -d: no alias or .forward resolution */
	int verify;		/* -V: print the resolution, deliver nothing */
	int recovery;		/* -U: the runner was interrupted before */
};

struct run {
	struct config cfg;
	struct message msg;
	const char *sender;
	const char *extension;	/* -a: the rules' $1 */
	int stats_fd;		/* mailstats counters, or -1 */
	char queue_id[QID_SIZE];
	int queued;		/* -Q: for our queue runner */
	int recovery;		/* -U */
	size_t nrcpts;
};

static void
usage(void)
{
	fprintf(stderr, "usage: deliver [-C conf] [-f sender] [-a extension] "
			"[-d] [-V] [-Q queueid [-U]] recipient... | "
			"deliver [-C conf] [-f sender] -r rcfile [arg...]\n");
	exit(EX_USAGE);
}

/* The envelope sender: -f, else the message's "From " line, else the
 * calling user. "<>" and "" are the null sender. */
static int
choose_sender(const char *given, const struct message *m, struct buf *out)
{
	const char *text = given;
	size_t len, i;

	if (text == NULL)
		text = m->envelope_sender;
	if (text == NULL) {
		struct passwd *pw = getpwuid(getuid());

		text = pw != NULL ? pw->pw_name : "MAILER-DAEMON";
	}
	len = strlen(text);
	address_unbracket(&text, &len);
	/* A sender goes into header fields: no line breaks, no controls. */
	for (i = 0; i < len; i++)
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
			return -1;
	buf_append(out, text, len);
	return 0;
}

static const char *
mailer_name(enum dest_kind kind)
{
	switch (kind) {
	case DEST_FILE: return "*file*";
	case DEST_PIPE: return "prog";
	case DEST_REMOTE: return "relay";
	default: return "local";
	}
}

static void
log_result(struct run *run, const struct dest *d, time_t started,
	   const struct status *st)
{
	char delay[32], xdelay[32], ctl[64] = "", stat[STATUS_TEXT_MAX + 16];
	const char *to = d->kind == DEST_ERROR ? d->recipient : d->target;
	struct buf orig, pipe_to;
	time_t now = time(NULL);

	buf_init(&orig);
	buf_init(&pipe_to);
	if (d->kind == DEST_PIPE) {
		buf_printf(&pipe_to, "|%s", d->target);
		to = pipe_to.data;
	}
	if (strcasecmp(to, d->recipient) != 0)
		buf_printf(&orig, ", orig_to=<%s>", d->recipient);
	maillog_delay(delay, sizeof(delay), (long)(now - run->msg.arrival));
	maillog_delay(xdelay, sizeof(xdelay), (long)(now - started));
	if (d->user != NULL)
		snprintf(ctl, sizeof(ctl), " (%ld/%ld)", (long)d->uid,
			 (long)d->gid);
	maillog("%s: to=<%s>%s, ctladdr=<%s>%s, delay=%s, xdelay=%s, "
		"mailer=%s, pri=%lld, dsn=%s, stat=%s",
		run->queue_id, to, orig.data, d->sender, ctl, delay, xdelay,
		mailer_name(d->kind),
		(long long)run->msg.size + 30000LL * (long long)run->nrcpts,
		st->dsn, status_stat(st, stat, sizeof(stat)));
	if (st->exit_code != EX_OK)
		fprintf(stderr, "deliver: %s: %s\n", d->recipient, stat);
	buf_free(&orig);
	buf_free(&pipe_to);
}

/* The full original recipient for Delivered-To: local names get the host
 * name. */
static void
qualify(struct run *run, const char *recipient, struct buf *out)
{
	const char *text = recipient;
	size_t len = strlen(text);

	buf_reset(out);
	address_unbracket(&text, &len);
	buf_append(out, text, len);
	if (memchr(text, '@', len) == NULL)
		buf_printf(out, "@%s", config_hostname(&run->cfg));
}

/* Mail loops visible in the header: too many Received: fields, or a
 * Delivered-To: naming this very recipient (RFC 5321 6.3). */
static int
check_loops(struct run *run, const char *qualified, struct status *st)
{
	size_t pos = 0, name_len, value_len;
	const char *name, *value;
	size_t hops = message_header_count(&run->msg, "Received");

	if (hops > run->cfg.max_hops)
		return status_set(st, EX_UNAVAILABLE, "5.4.6",
				  "too many hops (%zu Received: fields, "
				  "max_hops %u): mail loop", hops,
				  run->cfg.max_hops);
	while (message_header_next(&run->msg, &pos, &name, &name_len, &value,
				   &value_len)) {
		if (name_len != 12 || strncasecmp(name, "Delivered-To", 12))
			continue;
		while (value_len > 0 && (*value == ' ' || *value == '\t'))
			value++, value_len--;
		while (value_len > 0 && (value[value_len - 1] == ' ' ||
					 value[value_len - 1] == '\t'))
			value_len--;
		if (value_len == strlen(qualified) &&
		    strncasecmp(value, qualified, value_len) == 0)
			return status_set(st, EX_UNAVAILABLE, "5.4.6",
					  "mail forwarding loop for %s",
					  qualified);
	}
	return 0;
}

/* Appends text as one shell word: in single quotes, a quote in it as
 * '\'' (o'brien@example.com is a valid address). */
static void
shell_quote(struct buf *out, const char *text)
{
	buf_putc(out, '\'');
	for (; *text != '\0'; text++) {
		if (*text == '\'')
			buf_puts(out, "'\\''");
		else
			buf_putc(out, *text);
	}
	buf_putc(out, '\'');
}

/* Hands a remote destination to the sendmail command (the queue). */
static int
forward_remote(struct run *run, const struct dest *d,
	       const struct msgform *form, struct status *st)
{
	struct pipe_request req;
	struct buf command;
	const char *p;
	int rc;

	/* The address goes into a shell command, quoted; no line breaks or
	 * other controls. */
	for (p = d->target; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return status_set(st, EX_NOUSER, "5.1.3",
					  "bad address syntax");
	buf_init(&command);
	buf_puts(&command, "exec ");
	shell_quote(&command, run->cfg.sendmail_path);
	buf_puts(&command, " -oi -f ");
	shell_quote(&command, d->sender);
	buf_puts(&command, " -- ");
	shell_quote(&command, d->target);
	memset(&req, 0, sizeof(req));
	req.command = command.data;
	req.uid = d->uid;
	req.gid = d->gid;
	req.user = d->user;
	req.home = d->home;
	req.sender = d->sender;
	req.recipient = d->recipient;
	req.timeout = run->cfg.command_time_limit;
	rc = pipe_deliver(&req, &run->msg, form, st);
	buf_free(&command);
	return rc;
}

/* Delivers to one final destination; may switch users (so: last, or in a
 * child). Returns the exit code. */
static int
deliver_dest(struct run *run, struct dest *d, time_t started)
{
	struct status st;
	struct msgform form;
	struct buf delivered_to;

	status_ok(&st);
	buf_init(&delivered_to);
	qualify(run, d->recipient, &delivered_to);
	memset(&form, 0, sizeof(form));
	form.sender = d->sender;
	form.delivered_to = delivered_to.data;
	form.now = time(NULL);
	if (run->queued) {
		form.queue_id = run->queue_id;
		form.skip_if_present = run->recovery;
	}

	switch (d->kind) {
	case DEST_ERROR:
		st = d->st;
		break;
	case DEST_MAILBOX: {
		struct local_user user;

		user.name = d->user;
		user.uid = d->uid;
		user.gid = d->gid;
		user.home = d->home;
		/* $1 of the rules: -a, else the recipient's extension (as
		 * with Postfix's mailbox_command = procmail -a $EXTENSION). */
		{
			const char *arg = run->extension ? run->extension
							 : d->extension;

			local_deliver_mailbox(&run->cfg, &user, &run->msg,
					      &form, arg ? &arg : NULL,
					      arg ? 1 : 0, &st);
		}
		break;
	}
	case DEST_FILE:
		if (privs_become(d->uid, d->gid, (gid_t)-1, &st) == 0)
			file_deliver(d->target, run->cfg.lock_timeout,
				     &run->msg, &form, &st);
		break;
	case DEST_PIPE: {
		struct pipe_request req;

		memset(&req, 0, sizeof(req));
		req.command = d->target;
		req.uid = d->uid;
		req.gid = d->gid;
		req.user = d->user;
		req.home = d->home;
		req.sender = d->sender;
		req.recipient = delivered_to.data;
		req.extension = d->extension;
		req.timeout = run->cfg.command_time_limit;
		form.from_line = 1;
		pipe_deliver(&req, &run->msg, &form, &st);
		break;
	}
	case DEST_REMOTE: {
		struct passwd *pw = getpwnam(run->cfg.default_privs);

		/* Forwarding runs unprivileged too. */
		free(d->user);
		free(d->home);
		d->user = xstrdup(pw ? pw->pw_name : "nobody");
		d->uid = pw ? pw->pw_uid : 65534;
		d->gid = pw ? pw->pw_gid : 65534;
		d->home = xstrdup("/");
		if (geteuid() != 0) {
			d->uid = geteuid();
			d->gid = getegid();
		}
		form.omit_return_path = 1;
		forward_remote(run, d, &form, &st);
		break;
	}
	}
	log_result(run, d, started, &st);
	if (st.exit_code == EX_OK && d->kind != DEST_ERROR)
		stats_count_to(run->stats_fd, d->kind == DEST_PIPE ? STATS_PROG :
				d->kind == DEST_FILE ? STATS_FILE :
				d->kind == DEST_REMOTE ? STATS_RELAY :
							 STATS_LOCAL,
			       (long long)run->msg.size);
	buf_free(&delivered_to);
	return st.exit_code;
}

/* Children delivering at once: enough to overlap their fsyncs, few enough
 * not to swamp a host when a list has thousands of members. */
#define MAX_CHILDREN 4

struct child {
	pid_t pid;
	struct dest *dest;
	time_t started;
};

static int
reap_one(struct run *run, struct child *children, size_t *running)
{
	int status, code;
	pid_t pid;
	size_t i;

	for (;;) {
		pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			*running = 0;
			return EX_OSERR;
		}
		for (i = 0; i < *running; i++)
			if (children[i].pid == pid)
				break;
		if (i < *running)
			break;
	}
	if (WIFEXITED(status)) {
		code = WEXITSTATUS(status);
	} else {
		struct status st;

		/* Killed: the caller retries. */
		status_set(&st, EX_TEMPFAIL, "4.3.0",
			   "delivery process died with signal %d",
			   WTERMSIG(status));
		log_result(run, children[i].dest, children[i].started, &st);
		code = EX_TEMPFAIL;
	}
	children[i] = children[--*running];
	return code;
}

/* Delivers to every destination: the last one in this process (its user
 * switch may as well be for good), the others in children. */
static int
deliver_all(struct run *run, struct resolver *r)
{
	struct child children[MAX_CHILDREN];
	size_t running = 0, i;
	int result = EX_OK;

	for (i = 0; i < r->count; i++) {
		struct dest *d = &r->dests[i];
		time_t started = time(NULL);
		pid_t pid;

		if (d->kind == DEST_ERROR || i == r->count - 1) {
			result = status_worse(result,
					      deliver_dest(run, d, started));
			continue;
		}
		if (running == MAX_CHILDREN)
			result = status_worse(result, reap_one(run, children,
							       &running));
		fflush(NULL);
		pid = fork();
		if (pid < 0) {
			struct status st;

			status_errno(&st, errno, "fork");
			log_result(run, d, started, &st);
			result = status_worse(result, st.exit_code);
			continue;
		}
		if (pid == 0)
			_exit(deliver_dest(run, d, started));
		children[running].pid = pid;
		children[running].dest = d;
		children[running].started = started;
		running++;
	}
	while (running > 0)
		result = status_worse(result,
				      reap_one(run, children, &running));
	return result;
}

/* deliver -r rcfile: one rcfile on the message, as the caller, like
 * `procmail rcfile`; the message is filed as it came. */
static int
run_rcfile(struct run *run, const char *rcfile, char **args, size_t nargs)
{
	struct rcdeliver_request req;
	struct local_user user;
	struct passwd *pw = getpwuid(getuid());
	struct status st;
	struct buf mailbox;
	struct dest d;
	int is_maildir, in_spool;
	time_t started = time(NULL);

	if (pw == NULL) {
		fprintf(stderr, "deliver: who are you (uid %ld)?\n",
			(long)getuid());
		return EX_NOUSER;
	}
	user.name = pw->pw_name;
	user.uid = pw->pw_uid;
	user.gid = pw->pw_gid;
	user.home = pw->pw_dir;
	buf_init(&mailbox);
	local_mailbox_path(&run->cfg, &user, &mailbox, &is_maildir, &in_spool);
	memset(&req, 0, sizeof(req));
	req.cfg = &run->cfg;
	req.user = &user;
	req.sender = run->sender;
	req.default_mailbox = mailbox.data;
	req.rcfiles = &rcfile;
	req.nrcfiles = 1;
	req.args = (const char *const *)args;
	req.nargs = nargs;
	rcdeliver_run(&req, &run->msg, &st);
	memset(&d, 0, sizeof(d));
	d.kind = DEST_MAILBOX;
	d.target = user.name;
	d.recipient = user.name;
	d.sender = (char *)run->sender;
	d.user = user.name;
	d.uid = user.uid;
	d.gid = user.gid;
	log_result(run, &d, started, &st);
	buf_free(&mailbox);
	return st.exit_code;
}

/* Resolves every recipient; the loop checks come first. */
static void
resolve_all(struct run *run, struct resolver *r, char **recipients, int n)
{
	struct buf qualified;
	int i;

	buf_init(&qualified);
	for (i = 0; i < n; i++) {
		struct status st;

		qualify(run, recipients[i], &qualified);
		if (check_loops(run, qualified.data, &st) < 0) {
			struct dest d;

			memset(&d, 0, sizeof(d));
			d.kind = DEST_ERROR;
			d.target = xstrdup(recipients[i]);
			d.recipient = xstrdup(recipients[i]);
			d.sender = xstrdup(run->sender);
			d.st = st;
			if (r->count == r->cap) {
				r->cap = r->cap ? r->cap * 2 : 8;
				r->dests = xrealloc(r->dests,
						    r->cap * sizeof(*r->dests));
			}
			r->dests[r->count++] = d;
			continue;
		}
		resolve_recipient(r, recipients[i]);
	}
	buf_free(&qualified);
}

int
main(int argc, char **argv)
{
	struct options opt;
	struct run run;
	struct status st;
	struct resolver resolver;
	struct buf sender, trace;
	int c, result = EX_OK;
	size_t i;

	memset(&opt, 0, sizeof(opt));
	memset(&run, 0, sizeof(run));
	while ((c = getopt(argc, argv, "+C:f:a:dQ:UVr:")) != -1) {
		switch (c) {
		case 'C': opt.config_path = optarg; break;
		case 'f': opt.sender = optarg; break;
		case 'a': opt.extension = optarg; break;
		case 'd': opt.direct = 1; break;
		case 'Q': opt.queue_id = optarg; break;
		case 'U': opt.recovery = 1; break;
		case 'V': opt.verify = 1; break;
		case 'r': opt.rcfile = optarg; break;
		default: usage();
		}
	}
	if (optind >= argc && opt.rcfile == NULL)
		usage();
	/* A broken pipe to a command must not kill a delivery half way. */
	signal(SIGPIPE, SIG_IGN);

	if (config_load(&run.cfg, opt.config_path, opt.config_path != NULL,
			&st) < 0) {
		fprintf(stderr, "deliver: %s\n", st.text);
		return EX_CONFIG;
	}
	if (maillog_open(run.cfg.log, "deliver", run.cfg.hostname, &st) < 0) {
		/* A log we may not write (deliver run as the recipient by
		 * another MTA) must not stop the mail: syslog takes over. */
		fprintf(stderr, "deliver: warning: %s; logging to syslog\n",
			st.text);
		maillog_open("syslog", "deliver", run.cfg.hostname, &st);
	}
	/* Opened while we may: the counters belong to root. */
	run.stats_fd = stats_open(run.cfg.statistics, 0);
	if (opt.queue_id != NULL && qid_valid(opt.queue_id)) {
		snprintf(run.queue_id, sizeof(run.queue_id), "%s",
			 opt.queue_id);
		run.queued = 1;
		run.recovery = opt.recovery;
	} else
		qid_new(run.queue_id, time(NULL));

	buf_init(&sender);
	buf_init(&trace);
	if (opt.verify) {
		/* Nothing is read: only where mail would go is shown. */
		buf_puts(&sender, opt.sender ? opt.sender : "");
	} else {
		if (message_read(&run.msg, STDIN_FILENO, run.cfg.tmp_dir,
				 &st) < 0) {
			fprintf(stderr, "deliver: %s\n", st.text);
			maillog("%s: cannot read message: %s", run.queue_id,
				st.text);
			result = st.exit_code;
			goto out;
		}
		if (choose_sender(opt.sender, &run.msg, &sender) < 0) {
			fprintf(stderr, "deliver: bad sender address\n");
			result = EX_USAGE;
			goto out;
		}
	}
	run.sender = sender.data;
	run.extension = opt.extension;
	run.nrcpts = (size_t)(argc - optind);
	if (opt.rcfile != NULL) {
		result = run_rcfile(&run, opt.rcfile, argv + optind,
				    (size_t)(argc - optind));
		goto out;
	}

	resolver_init(&resolver, &run.cfg, run.sender);
	resolver.direct = opt.direct;
	/* -V only looks: it writes no .db file. */
	resolver.map_flags = opt.verify ? 0 : MAP_MAY_REBUILD;
	if (opt.verify)
		resolver.trace = &trace;
	resolve_all(&run, &resolver, argv + optind, argc - optind);
	if (opt.verify) {
		fputs(trace.data, stdout);
		for (i = 0; i < resolver.count; i++)
			result = status_worse(result,
					      resolver.dests[i].st.exit_code);
	} else {
		result = deliver_all(&run, &resolver);
	}
	resolver_free(&resolver);
out:
	buf_free(&sender);
	buf_free(&trace);
	if (!opt.verify)
		message_free(&run.msg);
	maillog_close();
	config_free(&run.cfg);
	return result;
}
