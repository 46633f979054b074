/*
 * local: a local user and their default mailbox. Looks the user up with
 * getpwnam(3) (so NSS sources and test wrappers work), computes the mailbox
 * from mail.conf's `mailbox`, and delivers there as the user: the switch to
 * the user happens first and cannot be undone.
 */
#ifndef MDA_LOCAL_H
#define MDA_LOCAL_H

#include <sys/types.h>

#include "buf.h"
#include "config.h"
#include "message.h"
#include "msgform.h"
#include "status.h"

struct local_user {
	char *name;
	uid_t uid;
	gid_t gid;
	char *home;
};

/* name need not be NUL-terminated. Hostile names ("../x", "-x", "a/b") and
 * unknown users give EX_NOUSER. Returns 0 or -1. */
int local_lookup(const char *name, size_t len, struct local_user *user,
		 struct status *st);
void local_user_free(struct local_user *user);
/* The mailbox path; *is_maildir when it ends with '/'. *in_spool when it is
 * below spool_dir (such files get group mail_group and mode 0660). */
void local_mailbox_path(const struct config *cfg, const struct local_user *u,
			struct buf *path, int *is_maildir, int *in_spool);
/* Becomes the user (when root) and delivers: through the user's rules
 * (/etc/procmailrc, ~/.procmailrc) when there are any, otherwise straight
 * to the default mailbox. args are the rules' $1... */
int local_deliver_mailbox(struct config *cfg, const struct local_user *u,
			  const struct message *m, const struct msgform *form,
			  const char *const *args, size_t nargs,
			  struct status *st);

#endif
