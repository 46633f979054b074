/*
 * folder: the folder kinds of procmail that mailboxes do not cover: an MH
 * folder (the next free number, as procmail and nmh number them) and a
 * plain directory (one uniquely named file a message). Each file is written
 * whole under a temporary name, synced, and linked into place, so no
 * reader sees half a message.
 */
#ifndef MDA_FOLDER_H
#define MDA_FOLDER_H

#include "buf.h"
#include "message.h"
#include "msgform.h"
#include "status.h"

/* dir without the trailing "/." of procmail's syntax. */
int folder_mh_deliver(const char *dir, const struct message *m,
		      const struct msgform *form, struct buf *stored,
		      struct status *st);
int folder_dir_deliver(const char *dir, const struct message *m,
		       const struct msgform *form, struct buf *stored,
		       struct status *st);

#endif
