/*
 * route: where mail for a remote domain goes. The mailertable first (the
 * exact domain, then ".parent" wildcards from the most specific up):
 * "smtp:[host]" or "smtp:[host]:port" is that host without MX lookup,
 * "smtp:host" the MX hosts of host, "local:user" a local user,
 * "error:D.S.N:CODE text" a failure; then the smarthost of mail.conf; then
 * the domain's MX records in preference order (equal preferences
 * shuffled), or its address records when it has no MX. A list that names
 * this host keeps only the hosts more preferred than it (no loops through
 * an MX of equal or worse preference). DNS failures are temporary; only a
 * definite "no such domain" is permanent.
 *
 * DNS queries go through res_nquery (MX, A, AAAA), so a test can answer
 * them with resolv_wrapper.
 */
#ifndef SMTPD_ROUTE_H
#define SMTPD_ROUTE_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "buf.h"
#include "config.h"
#include "maps.h"
#include "status.h"

#define ROUTE_MAX_HOSTS 16
#define ROUTE_MAX_ADDRS 16

enum route_kind {
	ROUTE_SMTP,		/* hosts to try, in order */
	ROUTE_LOCAL,		/* local:user: deliver here */
	ROUTE_ERROR,		/* st holds the failure */
};

struct route_host {
	char name[256];
	int pref;		/* MX preference; -1: no MX (explicit host) */
	unsigned short port;
};

struct route {
	enum route_kind kind;
	char key[300];		/* destination identity: hosts and port */
	struct route_host hosts[ROUTE_MAX_HOSTS];
	size_t nhosts;
	char local_user[256];	/* ROUTE_LOCAL */
	int via_mx;		/* the hosts came from MX records */
	int truncated;		/* we are in the MX list: hosts below us cut */
};

struct route_addr {
	struct sockaddr_storage sa;
	socklen_t len;
	char text[64];		/* numeric, for the log */
};

/* The route for domain. Returns 0 with r filled (kind may be ROUTE_ERROR
 * with st set: a permanent or temporary failure), -1 is never returned. */
void route_domain(struct config *cfg, struct map *mailertable,
		  const char *domain, struct route *r, struct status *st);
/* The addresses of a host ("[1.2.3.4]" literal, or A/AAAA records).
 * Returns the number found, 0 for none (st: permanent or temporary). */
size_t route_addresses(const char *host, unsigned short port,
		       struct route_addr *out, size_t max, struct status *st);
/* The MX hosts of domain into r (pref order, ties shuffled): 1 found,
 * 0 the domain has none (but exists), -1 error (st). */
int route_mx(const char *domain, struct route *r, struct status *st);
/* 1 when name is this host (its configured name, or an address of ours). */
int route_is_self(struct config *cfg, const char *name);

#endif
