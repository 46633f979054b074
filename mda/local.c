/*
 * local: delivery to a local user's own mailbox.
 */
#include "local.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "address.h"
#include "maildir.h"
#include "mbox.h"
#include "privs.h"
#include "rcdeliver.h"

int
local_lookup(const char *name, size_t len, struct local_user *user,
	     struct status *st)
{
	struct passwd *pw;
	char *copy;

	memset(user, 0, sizeof(*user));
	if (!address_safe_local(name, len))
		return status_set(st, EX_NOUSER, "5.1.1",
				  "User unknown (unsafe name)");
	copy = xstrndup(name, len);
	errno = 0;
	pw = getpwnam(copy);
	if (pw == NULL) {
		/* As Postfix does: local parts match user names in any
		 * case. */
		address_lowercase(copy, len);
		errno = 0;
		pw = getpwnam(copy);
	}
	if (pw == NULL) {
		int err = errno;

		free(copy);
		if (err != 0 && err != ENOENT && err != ESRCH &&
		    err != EBADF && err != EPERM)
			return status_errno(st, err, "user lookup");
		return status_set(st, EX_NOUSER, "5.1.1", "User unknown");
	}
	free(copy);
	user->name = xstrdup(pw->pw_name);
	user->uid = pw->pw_uid;
	user->gid = pw->pw_gid;
	user->home = xstrdup(pw->pw_dir);
	return 0;
}

void
local_user_free(struct local_user *user)
{
	free(user->name);
	free(user->home);
	memset(user, 0, sizeof(*user));
}

void
local_mailbox_path(const struct config *cfg, const struct local_user *u,
		   struct buf *path, int *is_maildir, int *in_spool)
{
	const char *p = cfg->mailbox;
	size_t spool_len = strlen(cfg->spool_dir);

	buf_reset(path);
	if (p[0] == '~' && p[1] == '/') {
		buf_puts(path, u->home);
		p++;
	}
	for (; *p != '\0'; p++) {
		if (p[0] == '%' && p[1] == 'u') {
			buf_puts(path, u->name);
			p++;
		} else if (p[0] == '%' && p[1] == '%') {
			buf_putc(path, '%');
			p++;
		} else {
			buf_putc(path, *p);
		}
	}
	*is_maildir = path->len > 0 && path->data[path->len - 1] == '/';
	*in_spool = path->len > spool_len &&
		    strncmp(path->data, cfg->spool_dir, spool_len) == 0 &&
		    path->data[spool_len] == '/';
}

/* The message as it will be stored (Return-Path, Delivered-To, LF line
 * ends), as a message of its own: what the rules see and file. */
static int
delivered_copy(struct config *cfg, const struct message *m,
	       const struct msgform *form, struct message *copy,
	       struct status *st)
{
	struct msgform f = *form;
	off_t written;
	int fd, rc;

	fd = open(cfg->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		fd = memfd_create("deliver-message", MFD_CLOEXEC);
	if (fd < 0)
		return status_errno(st, errno, "cannot copy the message");
	f.mbox = 0;
	f.from_line = 0;
	if (msgform_write(m, &f, fd, &written, st) < 0 ||
	    lseek(fd, 0, SEEK_SET) < 0) {
		close(fd);
		return -1;
	}
	rc = message_read(copy, fd, cfg->tmp_dir, st);
	close(fd);
	if (rc == 0)
		copy->arrival = m->arrival;
	return rc;
}

int
local_deliver_mailbox(struct config *cfg, const struct local_user *u,
		      const struct message *m, const struct msgform *form,
		      const char *const *args, size_t nargs,
		      struct status *st)
{
	struct buf path;
	char *rcfiles[2] = { NULL, NULL };
	int is_maildir, in_spool, rc;
	size_t nrc, i;
	gid_t mail_gid = (gid_t)-1;

	buf_init(&path);
	local_mailbox_path(cfg, u, &path, &is_maildir, &in_spool);
	if (in_spool && !is_maildir) {
		struct group *gr = getgrnam(cfg->mail_group);

		if (gr != NULL)
			mail_gid = gr->gr_gid;
	}
	/* Root's own mailbox is written as root; everyone else's as its
	 * owner, with the mail group kept for the spool directory. */
	if (u->uid != 0 || geteuid() != 0) {
		if (privs_become(u->uid, u->gid, mail_gid, st) < 0) {
			buf_free(&path);
			return -1;
		}
	}
	nrc = rcdeliver_rcfiles(cfg, u, rcfiles);
	if (nrc > 0) {
		struct rcdeliver_request req;
		struct message copy;

		memset(&req, 0, sizeof(req));
		req.cfg = cfg;
		req.user = u;
		req.sender = form->sender;
		req.default_mailbox = path.data;
		req.rcfiles = (const char *const *)rcfiles;
		req.nrcfiles = nrc;
		req.args = args;
		req.nargs = nargs;
		rc = delivered_copy(cfg, m, form, &copy, st);
		if (rc == 0) {
			rc = rcdeliver_run(&req, &copy, st);
			message_free(&copy);
		}
	} else if (is_maildir) {
		rc = maildir_deliver(path.data, m, form, config_hostname(cfg),
				     NULL, st);
	} else {
		struct mbox_options opts;

		memset(&opts, 0, sizeof(opts));
		opts.create_mode = in_spool ? 0660 : 0600;
		opts.create_gid = mail_gid;
		opts.owner = u->uid;
		opts.lock_timeout = cfg->lock_timeout;
		rc = mbox_deliver(path.data, &opts, m, form, st);
	}
	for (i = 0; i < nrc; i++)
		free(rcfiles[i]);
	buf_free(&path);
	return rc;
}
