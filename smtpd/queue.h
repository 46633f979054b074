/*
 * queue: the files of the mail queue, one flat directory with per message a
 * dfID (the body, written once), a qfID (envelope, per-recipient state,
 * headers), a tfID while a qf is written and an xfID (error transcript).
 * Promises: queue_commit() returns 0 only when df, qf and the directory are
 * on disk; a failure at any step leaves no trace of the message; a qf is
 * only ever replaced whole (tf, fsync, rename, fsync the directory). The qf
 * format is described in queue.5.
 */
#ifndef SMTPD_QUEUE_H
#define SMTPD_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "qid.h"
#include "status.h"

#define QUEUE_VERSION 1
/* A df without its qf, or a stale tf, older than this is removed. */
#define QUEUE_ORPHAN_AGE 3600

enum queue_state {
	QUEUE_QUEUED = 'Q',	/* not delivered yet: new or deferred */
	QUEUE_SENT = 'S',	/* delivered; never again */
	QUEUE_BOUNCED = 'B',	/* failed for good; a bounce is due or sent */
};

struct queue_recipient {
	char *address;		/* without angle brackets */
	char *orcpt;		/* RFC 3461 ORCPT ("rfc822;addr"), or NULL */
	enum queue_state state;
	char dsn[16];		/* last enhanced status code; "" before any */
	char *reply;		/* last reply or reason, or NULL */
};

/* A record of a later writer that this version does not know: kept and
 * written back unchanged, after the same number of R records. */
struct queue_extra {
	size_t after;		/* R records before it */
	char *line;		/* the whole line, without its newline */
};

/* Every pointer in an entry is owned by it (malloc'd; freed by
 * queue_entry_free), including the ones a caller puts there. */
struct queue_entry {
	char id[QID_SIZE];
	time_t created;		/* T */
	time_t last_attempt;	/* K; 0 before the first attempt */
	unsigned tries;		/* N */
	time_t next_attempt;	/* Y; 0: as soon as possible */
	char *sender;		/* S; "" (or NULL) is the null sender <> */
	uint64_t body_size;	/* Z; set by queue_commit */
	char *message_id;	/* I, or NULL */
	int warned;		/* W: a delay warning was sent */
	char *status_message;	/* M, or NULL */
	struct queue_recipient *recipients;
	size_t nrecipients;
	struct buf headers;	/* H: physical lines, each ending in "\n" */
	struct queue_extra *extras;
	size_t nextras;
};

void queue_entry_init(struct queue_entry *e);
/* Frees all e holds and leaves it zeroed (freeing again is harmless;
 * initialize it again before reuse). */
void queue_entry_free(struct queue_entry *e);
/* Adds a recipient in state QUEUED (orcpt may be NULL); returns it (valid
 * until the next call). */
struct queue_recipient *queue_add_recipient(struct queue_entry *e,
					    const char *address,
					    const char *orcpt);
/* Records an attempt's outcome: state, dsn (may be NULL), reply (NULL
 * clears it). */
void queue_recipient_set(struct queue_recipient *r, enum queue_state state,
			 const char *dsn, const char *reply);

/* The qf text of e (version 1) and back. queue_parse initializes e and
 * fills all but its id; on failure it leaves e empty and says why in st: a
 * malformed file is EX_DATAERR, a newer format version EX_TEMPFAIL. */
void queue_format(const struct queue_entry *e, struct buf *out);
int queue_parse(const char *text, size_t len, struct queue_entry *e,
		struct status *st);

/* Queueing a message: queue_begin gives e a new id (known before the
 * header is final: Message-ID, Received) and creates its df, locked against
 * runners and the orphan cleanup; queue_write appends body bytes (the body
 * only: the header section goes into e->headers); queue_commit makes df and
 * qf durable, sets e->body_size and frees the draft. After a failed
 * queue_write call queue_abort, which removes the df; a failed queue_commit
 * has already removed all it wrote. e->created is set to now when 0. */
struct queue_draft;
int queue_begin(const char *queue_dir, struct queue_entry *e,
		struct queue_draft **draft, struct status *st);
int queue_write(struct queue_draft *draft, const void *data, size_t len,
		struct status *st);
int queue_commit(struct queue_draft *draft, struct queue_entry *e,
		 struct status *st);
void queue_abort(struct queue_draft *draft);
/* All three at once with the body read from body_fd up to its end. */
int queue_create(const char *queue_dir, struct queue_entry *e, int body_fd,
		 struct status *st);

/* Reads qfID into e (initialized here; free it with queue_entry_free even
 * after a failure). */
int queue_read(const char *queue_dir, const char *id, struct queue_entry *e,
	       struct status *st);
/* Replaces qfID with e, durably. The caller holds the lock of e->id. */
int queue_update(const char *queue_dir, const struct queue_entry *e,
		 struct status *st);
/* Removes qfID first (so a crash leaves at most an orphan df), then dfID,
 * xfID and any tfID. Call it holding the lock, then unlock. */
int queue_remove(const char *queue_dir, const char *id, struct status *st);

enum queue_lock_result {
	QUEUE_LOCK_ERROR = -1,	/* st says why */
	QUEUE_LOCKED = 0,	/* *lock_fd is ours */
	QUEUE_LOCK_BUSY,	/* another process works on the message */
	QUEUE_LOCK_GONE,	/* the message left the queue meanwhile */
};

/* Takes the message's lock without waiting: flock(2) on its df, which is
 * never renamed, so the lock holds across queue_update. *lock_fd is the df
 * open for reading (pread the body from it); queue_unlock closes it. */
enum queue_lock_result queue_lock(const char *queue_dir, const char *id,
				  int *lock_fd, struct status *st);
void queue_unlock(int lock_fd);

/* Calls fn with the id of every qf, in id order (oldest first); fn returns
 * 0 to go on, a positive value to stop. Returns 0, fn's value, or -1 with
 * st set. Orphan df and tf files and other names are not listed. */
int queue_list(const char *queue_dir, int (*fn)(const char *id, void *arg),
	       void *arg, struct status *st);
/* Removes what crashes leave: a df (and xf) without qf older than
 * QUEUE_ORPHAN_AGE at now, a tf nobody is writing, an xf with neither.
 * Messages whose lock is held are left alone. Returns the number of
 * files removed, or -1 with st set. */
int queue_cleanup_orphans(const char *queue_dir, time_t now,
			  struct status *st);

/* Appends text (and a newline when it has none) to xfID. */
int queue_append_transcript(const char *queue_dir, const char *id,
			    const char *text, struct status *st);
/* Appends the transcript to out (nothing when there is none). */
int queue_read_transcript(const char *queue_dir, const char *id,
			  struct buf *out, struct status *st);

#endif
