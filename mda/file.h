/*
 * file: delivers to a "/path" destination of an alias or .forward: an mbox
 * append with the same locking, checks and rollback as a mailbox (the
 * dot-lock may fail where the directory is not ours to write). /dev/null
 * takes the message and keeps nothing.
 */
#ifndef MDA_FILE_H
#define MDA_FILE_H

#include "message.h"
#include "msgform.h"
#include "status.h"

int file_deliver(const char *path, unsigned lock_timeout,
		 const struct message *m, const struct msgform *form,
		 struct status *st);

#endif
