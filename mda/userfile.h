/*
 * userfile: reads a file that a user controls (~/.forward, an :include:
 * file) with that user's privileges, in a child process, and applies
 * sendmail's safety rules: a symlink, a file not owned by the user (or
 * root), a group/world-writable file or one in a group/world-writable
 * directory is ignored with a reason; a sticky home directory means the
 * user may be editing the file: try again later.
 */
#ifndef MDA_USERFILE_H
#define MDA_USERFILE_H

#include <sys/types.h>

#include "buf.h"
#include "status.h"

enum userfile_result {
	USERFILE_FOUND,		/* content holds the file */
	USERFILE_MISSING,	/* no such file */
	USERFILE_IGNORED,	/* unsafe: reason says why */
	USERFILE_TRYLATER,	/* temporary: st says why */
};

#define USERFILE_MAX (256 * 1024)

#define USERFILE_CHECK_DIR 1	/* check the directory too (a home) */
#define USERFILE_ANY_OWNER 2	/* an :include: file may belong to anyone */

/* Reads path as uid/gid (switching in a child when we are root), with the
 * USERFILE_* flags. Returns the result; content or reason filled, and the
 * file's owner in *owner. */
enum userfile_result userfile_read(const char *path, uid_t uid, gid_t gid,
				   int flags, struct buf *content,
				   struct buf *reason, uid_t *owner,
				   struct status *st);

#endif
