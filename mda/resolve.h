/*
 * resolve: where mail for one recipient goes, in sendmail's order of
 * precedence: virtusertable (full address, then user++@domain, user@domain
 * and the @domain catch-all, with %1 %2 %3), then the aliases files (with
 * an extension: name+tag before name; names in any case), then ~/.forward
 * (.forward+tag before .forward), then the user's own mailbox. The result
 * is a list of final destinations; the same destination reached twice is
 * listed once; cycles and runaway depth become errors (5.4.6). The one
 * resolver serves delivery and `sendmail -bv` (the trace).
 */
#ifndef MDA_RESOLVE_H
#define MDA_RESOLVE_H

#include <sys/types.h>

#include "buf.h"
#include "config.h"
#include "maps.h"
#include "status.h"

enum dest_kind {
	DEST_MAILBOX,	/* a local user's mailbox (and rules) */
	DEST_FILE,	/* an mbox file named in an alias or .forward */
	DEST_PIPE,	/* a command */
	DEST_REMOTE,	/* an address on another host */
	DEST_ERROR,	/* undeliverable (or not yet): st says why */
};

struct dest {
	enum dest_kind kind;
	char *target;		/* user name, path, command or address */
	char *recipient;	/* the original recipient, as resolved */
	char *extension;	/* its +tag, or NULL */
	char *sender;		/* envelope sender for this destination */
	char *user;		/* who it is delivered as */
	uid_t uid;
	gid_t gid;
	char *home;
	struct status st;	/* DEST_ERROR */
};

struct resolver {
	struct config *cfg;
	const char *sender;
	int direct;		/* deliver -d: local users only, no aliases */
	int map_flags;		/* MAP_MAY_REBUILD when we may write .db */
	struct buf *trace;	/* `sendmail -bv`: the tree, or NULL */
	struct dest *dests;
	size_t count, cap;
	/* private */
	size_t *seen;		/* hash set over dests */
	size_t nseen;
	struct map *virtusertable;
	struct map **aliases;
	size_t naliases;
	int tables_open;
	struct status table_status;
};

void resolver_init(struct resolver *r, struct config *cfg, const char *sender);
void resolver_free(struct resolver *r);
/* Appends the final destinations of recipient (an address or a local
 * name) to r->dests. */
void resolve_recipient(struct resolver *r, const char *recipient);
/* "mailbox alice", "file /x", "command |x", "remote a@b", "error ...". */
void dest_describe(const struct dest *d, struct buf *out);

#endif
