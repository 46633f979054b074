/*
 * deliver: the local delivery agent. Reads one message on standard input and
 * delivers it to each recipient; exits 0 when all succeeded, otherwise with
 * the most serious failure (75 outranks permanent codes: nothing is lost).
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "buf.h"
#include "config.h"
#include "local.h"
#include "maillog.h"
#include "message.h"
#include "msgform.h"
#include "qid.h"
#include "status.h"

struct options {
	const char *config_path;
	const char *sender;
	const char *extension;
	const char *queue_id;
	int direct;		/* -d: no alias or .forward resolution */
};

struct run {
	struct config cfg;
	struct message msg;
	const char *sender;
	char queue_id[QID_SIZE];
	size_t nrcpts;
};

static void
usage(void)
{
	fprintf(stderr, "usage: deliver [-C conf] [-f sender] [-a extension] "
			"[-d] recipient...\n");
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

static void
log_result(struct run *run, const char *recipient,
	   const struct local_user *user, time_t started,
	   const struct status *st)
{
	char delay[32], xdelay[32], ctl[64] = "", stat[STATUS_TEXT_MAX + 16];
	time_t now = time(NULL);

	maillog_delay(delay, sizeof(delay), (long)(now - run->msg.arrival));
	maillog_delay(xdelay, sizeof(xdelay), (long)(now - started));
	if (user != NULL && user->name != NULL)
		snprintf(ctl, sizeof(ctl), " (%ld/%ld)", (long)user->uid,
			 (long)user->gid);
	maillog("%s: to=<%s>, ctladdr=<%s>%s, delay=%s, xdelay=%s, "
		"mailer=local, pri=%lld, dsn=%s, stat=%s",
		run->queue_id, recipient, run->sender, ctl, delay, xdelay,
		(long long)run->msg.size + 30000LL * (long long)run->nrcpts,
		st->dsn, status_stat(st, stat, sizeof(stat)));
}

/* Delivers to one recipient; may switch users (so: last, or in a child). */
static int
deliver_one(struct run *run, const char *recipient, time_t started)
{
	struct status st;
	struct address addr;
	struct local_user user;
	struct msgform form;
	struct buf delivered_to;
	size_t user_len, ext_len;
	const char *ext;

	status_ok(&st);
	address_init(&addr);
	memset(&user, 0, sizeof(user));
	buf_init(&delivered_to);
	if (address_parse(&addr, recipient, strlen(recipient)) < 0) {
		status_set(&st, EX_NOUSER, "5.1.3", "Bad recipient address");
		goto done;
	}
	if (addr.domain.len > 0 &&
	    !config_is_local_domain(&run->cfg, addr.domain.data,
				    addr.domain.len)) {
		status_set(&st, EX_NOUSER, "5.1.2",
			   "not a local domain: %s", addr.domain.data);
		goto done;
	}
	address_split_extension(addr.local.data, addr.local.len,
				run->cfg.recipient_delimiter[0], &user_len,
				&ext, &ext_len);
	if (local_lookup(addr.local.data, user_len, &user, &st) < 0)
		goto done;
	/* The full original recipient, extension included. */
	buf_append(&delivered_to, addr.local.data, addr.local.len);
	buf_printf(&delivered_to, "@%s",
		   addr.domain.len > 0 ? addr.domain.data :
					 config_hostname(&run->cfg));
	memset(&form, 0, sizeof(form));
	form.sender = run->sender;
	form.delivered_to = delivered_to.data;
	form.now = time(NULL);
	local_deliver_mailbox(&run->cfg, &user, &run->msg, &form, &st);
done:
	log_result(run, recipient, &user, started, &st);
	if (st.exit_code != EX_OK) {
		char stat[STATUS_TEXT_MAX + 16];

		fprintf(stderr, "deliver: %s: %s\n", recipient,
			status_stat(&st, stat, sizeof(stat)));
	}
	local_user_free(&user);
	address_free(&addr);
	buf_free(&delivered_to);
	return st.exit_code;
}

static int
deliver_in_child(struct run *run, const char *recipient)
{
	pid_t pid;
	int status;
	time_t started = time(NULL);

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		struct status st;

		status_errno(&st, errno, "fork");
		log_result(run, recipient, NULL, started, &st);
		return st.exit_code;
	}
	if (pid == 0)
		_exit(deliver_one(run, recipient, started));
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return EX_OSERR;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return EX_TEMPFAIL;	/* killed: the caller retries */
}

int
main(int argc, char **argv)
{
	struct options opt;
	struct run run;
	struct status st;
	struct buf sender;
	int c, i, result = EX_OK;

	memset(&opt, 0, sizeof(opt));
	memset(&run, 0, sizeof(run));
	while ((c = getopt(argc, argv, "C:f:a:dQ:")) != -1) {
		switch (c) {
		case 'C': opt.config_path = optarg; break;
		case 'f': opt.sender = optarg; break;
		case 'a': opt.extension = optarg; break;
		case 'd': opt.direct = 1; break;
		case 'Q': opt.queue_id = optarg; break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	/* A broken pipe to a reader must not kill a delivery half way. */
	signal(SIGPIPE, SIG_IGN);

	if (config_load(&run.cfg, opt.config_path, opt.config_path != NULL,
			&st) < 0) {
		fprintf(stderr, "deliver: %s\n", st.text);
		return EX_CONFIG;
	}
	if (maillog_open(run.cfg.log, "deliver", run.cfg.hostname, &st) < 0) {
		fprintf(stderr, "deliver: %s\n", st.text);
		config_free(&run.cfg);
		return EX_TEMPFAIL;
	}
	if (opt.queue_id != NULL && qid_valid(opt.queue_id))
		snprintf(run.queue_id, sizeof(run.queue_id), "%s",
			 opt.queue_id);
	else
		qid_new(run.queue_id, time(NULL));

	if (message_read(&run.msg, STDIN_FILENO, run.cfg.tmp_dir, &st) < 0) {
		fprintf(stderr, "deliver: %s\n", st.text);
		maillog("%s: cannot read message: %s", run.queue_id, st.text);
		result = st.exit_code;
		goto out;
	}
	buf_init(&sender);
	if (choose_sender(opt.sender, &run.msg, &sender) < 0) {
		fprintf(stderr, "deliver: bad sender address\n");
		buf_free(&sender);
		result = EX_USAGE;
		goto out;
	}
	run.sender = sender.data;
	run.nrcpts = (size_t)(argc - optind);
	for (i = optind; i < argc; i++) {
		int rc;

		/* The last (often the only) recipient needs no child: the
		 * switch to its user may as well be for good. */
		if (i == argc - 1)
			rc = deliver_one(&run, argv[i], time(NULL));
		else
			rc = deliver_in_child(&run, argv[i]);
		result = status_worse(result, rc);
	}
	buf_free(&sender);
out:
	message_free(&run.msg);
	maillog_close();
	config_free(&run.cfg);
	return result;
}
