/*
 * file: file destinations.
 */
#include "file.h"

#include <string.h>
#include <sys/types.h>

#include "mbox.h"

int
file_deliver(const char *path, unsigned lock_timeout, const struct message *m,
	     const struct msgform *form, struct status *st)
{
	struct mbox_options opts;

	if (strcmp(path, "/dev/null") == 0) {
		status_ok(st);
		return 0;
	}
	memset(&opts, 0, sizeof(opts));
	opts.create_mode = 0600;
	opts.create_gid = (gid_t)-1;
	opts.owner = (uid_t)-1;	/* whoever may write it: the kernel decides */
	opts.lock_timeout = lock_timeout;
	opts.dotlock_may_fail = 1;
	return mbox_deliver(path, &opts, m, form, st);
}
