/*
 * rcdeliver: running a user's procmail rules and carrying them out.
 */
#include "rcdeliver.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "file.h"
#include "folder.h"
#include "maildir.h"
#include "maillog.h"
#include "mbox.h"
#include "msgform.h"
#include "pipe.h"
#include "privs.h"

#define DEFAULT_TIMEOUT 960	/* procmail's TIMEOUT */

struct context {
	const struct rcdeliver_request *req;
	char hostname[256];
};

static char *
expand_home(const char *path, const char *home)
{
	struct buf b;
	char *result;

	buf_init(&b);
	if (path[0] == '~' && path[1] == '/')
		buf_printf(&b, "%s%s", home, path + 1);
	else
		buf_puts(&b, path);
	result = buf_steal(&b);
	buf_free(&b);
	return result;
}

/* procmail's rule: an rcfile anyone else could have written is not run. */
static int
rcfile_safe(const char *path, uid_t uid, int *exists)
{
	struct stat sb;

	*exists = 0;
	if (stat(path, &sb) < 0)
		return 0;
	*exists = 1;
	if (!S_ISREG(sb.st_mode)) {
		maillog("rules: %s is not a regular file: ignored", path);
		return 0;
	}
	if (sb.st_uid != uid && sb.st_uid != 0) {
		maillog("rules: %s is owned by uid %ld, not by %ld or root: "
			"ignored", path, (long)sb.st_uid, (long)uid);
		return 0;
	}
	if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
		maillog("rules: %s is group or world writable: ignored", path);
		return 0;
	}
	return 1;
}

size_t
rcdeliver_rcfiles(struct config *cfg, const struct local_user *user,
		  char *out[2])
{
	size_t n = 0;
	int exists;
	char *path;

	if (cfg->system_rcfile[0] != '\0' &&
	    rcfile_safe(cfg->system_rcfile, 0, &exists))
		out[n++] = xstrdup(cfg->system_rcfile);
	if (cfg->user_rcfile[0] != '\0') {
		path = expand_home(cfg->user_rcfile, user->home);
		if (rcfile_safe(path, user->uid, &exists))
			out[n++] = path;
		else
			free(path);
	}
	return n;
}

static int
in_spool(const struct config *cfg, const char *path)
{
	size_t len = strlen(cfg->spool_dir);

	return strncmp(path, cfg->spool_dir, len) == 0 && path[len] == '/';
}

/* Writes m (already in delivered form) to an mbox: the user's spool mbox
 * gets the spool's mode and group, any other one is a plain file. */
static int
write_mbox(const struct rcdeliver_request *req, const char *path,
	   const struct message *m, const struct msgform *form,
	   struct status *st)
{
	struct mbox_options opts;

	memset(&opts, 0, sizeof(opts));
	opts.lock_timeout = req->cfg->lock_timeout;
	opts.create_gid = (gid_t)-1;
	if (in_spool(req->cfg, path)) {
		struct group *gr = getgrnam(req->cfg->mail_group);

		opts.create_mode = 0660;
		opts.create_gid = gr != NULL ? gr->gr_gid : (gid_t)-1;
		opts.owner = req->user->uid;
	} else {
		opts.create_mode = 0600;
		opts.owner = (uid_t)-1;	/* any file the user may write */
		opts.dotlock_may_fail = 1;
	}
	if (strcmp(path, "/dev/null") == 0)
		return 0;
	if (in_spool(req->cfg, path)) {
		int rc;

		/* The mail group only while the spool file is written. */
		privs_use_extra_group(1);
		rc = mbox_deliver(path, &opts, m, form, st);
		privs_use_extra_group(0);
		return rc;
	}
	return mbox_deliver(path, &opts, m, form, st);
}

static void
raw_form(struct msgform *form, const char *sender)
{
	memset(form, 0, sizeof(*form));
	form->sender = sender;
	form->now = time(NULL);
	form->raw = 1;
}

static int
on_folder(void *arg, const char *path, enum rules_folder_type type,
	  const struct rules_msg *msg, int flags, struct buf *stored,
	  struct status *st)
{
	struct context *ctx = arg;
	struct msgform form;

	(void)flags;
	status_ok(st);
	raw_form(&form, msg->sender);
	buf_reset(stored);
	switch (type) {
	case RULES_DEVNULL:
		return 0;
	case RULES_MBOX:
		form.mbox = 1;
		return write_mbox(ctx->req, path, msg->message, &form, st);
	case RULES_MAILDIR:
		return maildir_deliver(path, msg->message, &form,
				       config_hostname(ctx->req->cfg), stored,
				       st);
	case RULES_MH:
		return folder_mh_deliver(path, msg->message, &form, stored, st);
	case RULES_DIRECTORY:
		return folder_dir_deliver(path, msg->message, &form, stored,
					  st);
	}
	return status_set(st, EX_SOFTWARE, NULL, "unknown folder type");
}

static int
on_pipe(void *arg, const char *command, const struct rules_msg *msg,
	int flags, int capture_stdout, struct buf *output, int *exit_status,
	struct status *st)
{
	struct command_spec spec;
	struct msgform form;
	struct buf said;
	const char *timeout = rules_msg_getvar(msg, "TIMEOUT");
	int rc;

	(void)arg;
	status_ok(st);
	memset(&spec, 0, sizeof(spec));
	spec.shell_command = command;
	spec.shell = rules_msg_getvar(msg, "SHELL");
	spec.envp = msg->envp;
	spec.uid = (uid_t)-1;	/* we already are the user */
	spec.timeout = timeout != NULL ? (unsigned)atoi(timeout) :
					 DEFAULT_TIMEOUT;
	spec.capture_all = capture_stdout;
	raw_form(&form, msg->sender);
	/* The header part starts with the "From " line, as procmail's. */
	form.from_line = (flags & RULES_HEADER) != 0;
	buf_init(&said);
	rc = command_run(&spec, (flags & RULES_FEED_NOTHING) ? NULL :
			 msg->message, &form, exit_status,
			 capture_stdout ? output : &said, st);
	/* What a command says goes where procmail's stderr goes. */
	if (!capture_stdout && said.len > 0)
		fwrite(said.data, 1, said.len, stderr);
	buf_free(&said);
	return rc;
}

static int
on_forward(void *arg, const char *const *addresses, size_t n,
	   const struct rules_msg *msg, struct status *st)
{
	struct context *ctx = arg;
	struct command_spec spec;
	struct msgform form;
	struct buf flags, output;
	const char *sendmail = rules_msg_getvar(msg, "SENDMAIL");
	const char *sendmail_flags = rules_msg_getvar(msg, "SENDMAILFLAGS");
	char **argv, *save = NULL, *word;
	size_t argc = 0, i;
	int exit_status, rc;

	status_ok(st);
	buf_init(&flags);
	buf_puts(&flags, sendmail_flags ? sendmail_flags : "");
	argv = xcalloc(n + flags.len / 2 + 4, sizeof(*argv));
	argv[argc++] = (char *)(sendmail ? sendmail :
				ctx->req->cfg->sendmail_path);
	for (word = strtok_r(flags.data, " \t", &save); word != NULL;
	     word = strtok_r(NULL, " \t", &save))
		argv[argc++] = word;
	for (i = 0; i < n; i++)
		argv[argc++] = (char *)addresses[i];
	argv[argc] = NULL;
	memset(&spec, 0, sizeof(spec));
	spec.argv = argv;
	spec.envp = msg->envp;
	spec.uid = (uid_t)-1;
	spec.timeout = DEFAULT_TIMEOUT;
	raw_form(&form, msg->sender);
	form.from_line = 1;
	buf_init(&output);
	rc = command_run(&spec, msg->message, &form, &exit_status, &output,
			 st);
	if (rc == 0 && exit_status != 0)
		rc = status_command_exit(st, exit_status, output.data);
	buf_free(&output);
	buf_free(&flags);
	free(argv);
	return rc;
}

static void
on_log(void *arg, const char *text)
{
	(void)arg;
	maillog("rules: %s", text);
}

/* Delivers to DEFAULT: an mbox, or a maildir when it ends with '/'. */
static int
deliver_default(struct context *ctx, const char *path,
		const struct message *m, struct status *st)
{
	struct msgform form;
	size_t len = strlen(path);

	status_ok(st);
	raw_form(&form, ctx->req->sender);
	if (len > 0 && path[len - 1] == '/')
		return maildir_deliver(path, m, &form,
				       config_hostname(ctx->req->cfg), NULL, st);
	if (len > 1 && path[len - 1] == '.' && path[len - 2] == '/') {
		struct buf dir, stored;
		int rc;

		buf_init(&dir);
		buf_init(&stored);
		buf_append(&dir, path, len - 2);
		rc = folder_mh_deliver(dir.data, m, &form, &stored, st);
		buf_free(&dir);
		buf_free(&stored);
		return rc;
	}
	form.mbox = 1;
	return write_mbox(ctx->req, path, m, &form, st);
}

int
rcdeliver_run(const struct rcdeliver_request *req, const struct message *m,
	      struct status *st)
{
	struct context ctx;
	struct rules_env env;
	struct rules_actions actions;
	char *found[2] = { NULL, NULL };
	const char *const *rcfiles = req->rcfiles;
	size_t nrc = req->nrcfiles, i;
	int delivered = 0, rc;

	memset(&ctx, 0, sizeof(ctx));
	ctx.req = req;
	if (gethostname(ctx.hostname, sizeof(ctx.hostname)) < 0)
		snprintf(ctx.hostname, sizeof(ctx.hostname), "localhost");
	ctx.hostname[sizeof(ctx.hostname) - 1] = '\0';
	if (rcfiles == NULL) {
		nrc = rcdeliver_rcfiles(req->cfg, req->user, found);
		rcfiles = (const char *const *)found;
	}
	memset(&env, 0, sizeof(env));
	env.home = req->user->home;
	env.logname = req->user->name;
	env.sender = req->sender;
	env.default_mailbox = req->default_mailbox;
	env.hostname = ctx.hostname;
	env.sendmail = req->cfg->sendmail_path;
	env.args = req->args;
	env.nargs = req->nargs;
	env.log = on_log;
	env.result_exitcode = -1;
	memset(&actions, 0, sizeof(actions));
	actions.arg = &ctx;
	actions.folder = on_folder;
	actions.pipe = on_pipe;
	actions.forward = on_forward;

	status_ok(st);
	/* Folders the rules create belong to the user's own group. */
	privs_use_extra_group(0);
	rc = nrc > 0 ? rules_run(rcfiles, nrc, &env, m, &actions, &delivered,
				 st)
		     : 0;
	if (rc < 0)
		maillog("rules for %s could not run (%s): delivering to the "
			"default mailbox", req->user->name, st->text);
	if (env.result_host_mismatch && rc == 0) {
		/* procmail's HOST: the mail counts as delivered. */
		maillog("rules for %s: HOST mismatch, message dropped as "
			"procmail does", req->user->name);
		delivered = 1;
	}
	if (!delivered) {
		const char *target = env.result_default != NULL ?
				     env.result_default : req->default_mailbox;

		rc = deliver_default(&ctx, target, m, st);
	} else {
		rc = 0;
		status_ok(st);
	}
	if (rc == 0 && env.result_exitcode > 0)
		rc = status_set(st, env.result_exitcode, NULL,
				"EXITCODE=%d set by the rules",
				env.result_exitcode);
	free(env.result_default);
	for (i = 0; i < 2; i++)
		free(found[i]);
	return rc;
}
