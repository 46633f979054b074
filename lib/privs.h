/*
 * privs: becoming a user for good. As root: setgroups, setgid, setuid, in
 * that order, each checked, with no way back. Not as root: succeeds only when
 * we already are that user (nothing to switch).
 */
#ifndef LIB_PRIVS_H
#define LIB_PRIVS_H

#include <sys/types.h>

#include "status.h"

/* extra_gid: a supplementary group to keep (e.g. mail for the spool), or
 * (gid_t)-1 for none. Returns 0, or -1 with st set (EX_NOPERM / EX_OSERR). */
int privs_become(uid_t uid, gid_t gid, gid_t extra_gid, struct status *st);

#endif
