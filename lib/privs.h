/*
 * privs: becoming a user for good. As root: setgroups, setgid, setuid, in
 * that order, each checked, with no way back. Not as root: succeeds only when
 * we already are that user (nothing to switch).
 *
 * The mail group a spool mbox needs is not a supplementary group (a user's
 * command would inherit it and could write everyone's mailbox): it is kept
 * as the saved and effective group id, used only while a spool file is
 * written, and dropped for good before anything is executed.
 */
#ifndef LIB_PRIVS_H
#define LIB_PRIVS_H

#include <sys/types.h>

#include "status.h"

/* extra_gid: the group kept for the spool (effective and saved), or
 * (gid_t)-1 for none. Returns 0, or -1 with st set (EX_NOPERM / EX_OSERR). */
int privs_become(uid_t uid, gid_t gid, gid_t extra_gid, struct status *st);
/* Switches the effective group between the user's own (0) and the kept
 * extra group (1). No-op without an extra group. */
void privs_use_extra_group(int on);
/* Gives the extra group up for good (before exec). */
void privs_drop_extra_group(void);

#endif
