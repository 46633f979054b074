/*
 * maildir: delivers a message into a maildir. Creates tmp/, new/ and cur/
 * when missing, writes the message under a unique name in tmp/, fsyncs it,
 * moves it into new/ (never replacing a file) and fsyncs new/: a message in
 * new/ is always whole, and on disk once we return 0.
 */
#ifndef MDA_MAILDIR_H
#define MDA_MAILDIR_H

#include "buf.h"
#include "message.h"
#include "msgform.h"
#include "status.h"

/* dir: the maildir (with or without a trailing slash). On success the path
 * of the new file is left in delivered (when not NULL). */
int maildir_deliver(const char *dir, const struct message *m,
		    const struct msgform *form, const char *hostname,
		    struct buf *delivered, struct status *st);
/* The unique base name: "SECS.MUSECSPpidRrandom.host", with marker
 * (e.g. "Q6AUDQNuFqHZgFk_1a2b3c4d", or NULL) after the random part. */
void maildir_unique_name(struct buf *out, const char *hostname,
			 const char *marker);
/* The marker of a delivery for the queue runner: the queue id and a hash
 * of the Delivered-To: address. */
void maildir_queue_marker(struct buf *out, const char *queue_id,
			  const char *delivered_to);

#endif
