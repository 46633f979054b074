/*
 * mbox: appends a message to an mbox file; on any failure the mbox is as it
 * was. Locks in Debian policy's order (fcntl, then the dot-lock through
 * liblockfile; never blocking on one while holding the other), refuses
 * files that are symlinks, not regular, hard-linked or someone else's, and
 * truncates back to the old size after an error. A delivery killed while it
 * held the locks is rolled back by the next one (see mbox.c).
 */
#ifndef MDA_MBOX_H
#define MDA_MBOX_H

#include <sys/types.h>

#include "message.h"
#include "msgform.h"
#include "status.h"

struct mbox_options {
	mode_t create_mode;	/* for a new file: 0600, or 0660 in the spool */
	gid_t create_gid;	/* group for a new file, or (gid_t)-1 */
	uid_t owner;		/* the uid the file must belong to; -1: any */
	unsigned lock_timeout;	/* seconds */
	int dotlock_may_fail;	/* a directory we may not write (a /file) */
};

int mbox_deliver(const char *path, const struct mbox_options *opts,
		 const struct message *m, const struct msgform *form,
		 struct status *st);

#endif
