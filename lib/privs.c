/*
 * privs: dropping root completely and verifiably.
 */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <sys/prctl.h>
#endif

/*
 * Sanitizer builds only: the kernel marks a process whose credentials
 * changed as not dumpable, and LeakSanitizer then cannot attach to its
 * own threads at exit and fails the run.  Production builds never do
 * this, so a user cannot ptrace a delivery that still holds the mail
 * group.
 */
#ifdef __SANITIZE_ADDRESS__
static void
sanitizer_at_exit(void)
{
	/* LeakSanitizer's helper shares our real ids only; give up the
	 * saved mail group so that it may attach. */
	privs_drop_extra_group();
}
#endif

static void
sanitizer_keep_dumpable(void)
{
#ifdef __SANITIZE_ADDRESS__
	static int registered;

	if (!registered && atexit(sanitizer_at_exit) == 0)
		registered = 1;
	(void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
}

int
privs_become(uid_t uid, gid_t gid, gid_t extra_gid, struct status *st)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid, kept;

	if (geteuid() != 0) {
		if (getuid() == uid && geteuid() == uid)
			return 0;
		return status_set(st, EX_NOPERM, "5.7.1",
				  "cannot act as uid %ld: not running as root",
				  (long)uid);
	}
	if (uid == 0)
		return status_set(st, EX_NOPERM, "5.7.1",
				  "refusing to act as root");
	kept = extra_gid != (gid_t)-1 ? extra_gid : gid;
	if (setgroups(1, &gid) < 0)
		return status_errno(st, errno, "setgroups");
	if (setresgid(gid, kept, kept) < 0)
		return status_errno(st, errno, "setgid %ld", (long)gid);
	if (setresuid(uid, uid, uid) < 0)
		return status_errno(st, errno, "setuid %ld", (long)uid);
	/* Verify: a switch that half worked must not go on. */
	if (getresuid(&ruid, &euid, &suid) < 0 ||
	    getresgid(&rgid, &egid, &sgid) < 0 || ruid != uid || euid != uid ||
	    suid != uid || rgid != gid || egid != kept || sgid != kept ||
	    setuid(0) == 0)
		return status_set(st, EX_OSERR, "4.3.0",
				  "privilege switch to uid %ld did not stick",
				  (long)uid);
	sanitizer_keep_dumpable();
	return 0;
}

void
privs_use_extra_group(int on)
{
	gid_t rgid, egid, sgid;

	if (getresgid(&rgid, &egid, &sgid) == 0 && rgid != sgid)
		if (setresgid((gid_t)-1, on ? sgid : rgid, (gid_t)-1) < 0) {
			/* Only ever fails without a saved group to switch
			 * to: then there is nothing to change. */
		}
	sanitizer_keep_dumpable();
}

void
privs_drop_extra_group(void)
{
	gid_t rgid = getgid();

	if (geteuid() != 0 && setresgid(rgid, rgid, rgid) < 0) {
		/* Setting all three to the real group is always allowed. */
	}
	sanitizer_keep_dumpable();
}
