/*
 * message: the message deliver is given, read once from standard input.
 * A regular file is used where it is; a pipe is kept in memory up to 1 MiB
 * and otherwise spooled to an unlinked temporary file, so that a 100 MiB
 * message never sits in memory. The header section is always in memory.
 * A leading "From " envelope line is taken off (its sender is kept).
 */
#ifndef MDA_MESSAGE_H
#define MDA_MESSAGE_H

#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "status.h"

#define MESSAGE_MEMORY_MAX (1024 * 1024)

struct message {
	struct buf head;	/* message bytes [0, head.len); all of a small one */
	int fd;			/* the whole message, or -1 when all is in head */
	off_t fd_base;		/* offset of byte 0 of the message in fd */
	off_t size;		/* bytes in the message */
	size_t header_len;	/* the header section with its empty line */
	char *envelope_sender;	/* from a leading "From " line, or NULL */
	time_t arrival;
};

/* Reads the message from in_fd. tmp_dir holds the spool file of a large
 * message. Returns 0, or -1 with st set (75 for a full tmp_dir). */
int message_read(struct message *m, int in_fd, const char *tmp_dir,
		 struct status *st);
void message_free(struct message *m);
/* Reads up to len bytes at offset; returns the count (0 at the end), or -1
 * with errno set. */
ssize_t message_pread(const struct message *m, void *out, size_t len,
		      off_t offset);
/* Iterates over header fields: *pos starts at 0. Sets name and value (the
 * raw value with its folding, without the final line end). Returns 1 per
 * field, 0 at the end. */
int message_header_next(const struct message *m, size_t *pos,
			const char **name, size_t *name_len,
			const char **value, size_t *value_len);
/* Counts header fields named name (any case). */
size_t message_header_count(const struct message *m, const char *name);

#endif
