/*
 * access: the access table (/etc/mail/access) in sendmail's text format:
 * "key value" lines whose keys are IP addresses, IP prefixes ("192.168."
 * or "192.168", "IPv6:2001:db8"), host names and domains (".example.com"
 * for every subdomain), e-mail addresses, with an optional sendmail tag
 * ("Connect:", "From:", "To:"); values RELAY, OK, REJECT, DISCARD and
 * "ERROR:D.S.N:CODE text". When no entry matches (or there is no table),
 * localhost, 127.0.0.1 and ::1 may relay, as the seed's default file says.
 */
#ifndef SMTPD_ACCESS_H
#define SMTPD_ACCESS_H

#include "maps.h"

enum access_action {
	ACCESS_NONE,		/* no entry */
	ACCESS_OK,
	ACCESS_RELAY,
	ACCESS_REJECT,
	ACCESS_DISCARD,
	ACCESS_ERROR,		/* reply is the administrator's */
};

struct access_result {
	enum access_action action;
	char reply[512];	/* REJECT/ERROR: "550 5.7.1 text" */
	char key[256];		/* the entry that matched, for the log */
};

/* The client (tags Connect: and none): its address, then its prefixes,
 * then its host name (only a verified one; may be NULL) and the domains
 * above it, then the default for localhost. m may be NULL (no table). */
void access_client(struct map *m, const char *ip, const char *hostname,
		   struct access_result *r);
/* The envelope sender (From: and none): the address, the domain and the
 * domains above it, "user@". */
void access_sender(struct map *m, const char *address,
		   struct access_result *r);
/* A recipient (To:): the address, the domain and the domains above it. */
void access_recipient(struct map *m, const char *address,
		      struct access_result *r);

/* Parses a value ("RELAY", "ERROR:5.7.1:550 go away"); 0, or -1 when it
 * is none of the known ones. */
int access_parse_value(const char *value, size_t len,
		       struct access_result *r);

#endif
