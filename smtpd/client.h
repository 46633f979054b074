/*
 * client: the SMTP client of the queue runner (RFC 5321). It connects to a
 * route's hosts in order until one greets it, says EHLO (HELO when that is
 * refused), starts TLS when offered (opportunistic: no certificate check),
 * uses SIZE, 8BITMIME and PIPELINING when offered, and sends a message to
 * several recipients at once, with each recipient's reply kept: 2xx sent,
 * 4xx deferred, 5xx bounced. Text goes out with CRLF line ends only (a bare
 * LF or CR becomes CRLF), dot-stuffed, lines longer than 998 octets broken.
 * A connection may carry several messages one after another.
 */
#ifndef SMTPD_CLIENT_H
#define SMTPD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "config.h"
#include "route.h"
#include "status.h"

struct smtp_conn;

struct client_rcpt {
	const char *address;
	int code;		/* the reply's code; 0 when none came */
	char dsn[16];
	char reply[512];	/* the server's reply, one line */
};

struct client_msg {
	const char *sender;	/* "" is <> */
	const char *headers;	/* header section, LF line ends */
	size_t headers_len;
	int body_fd;		/* read with pread from offset 0 */
	uint64_t body_size;
};

/* A TLS client context for opportunistic STARTTLS (NULL: never TLS). */
SSL_CTX *client_tls_context(void);

/* Connects to the first host of r that greets with 220. NULL when none
 * did, with st saying why (temporary unless every host said 5xx or none
 * exists); the tried hosts' errors are appended to transcript. */
struct smtp_conn *client_connect(struct config *cfg, const struct route *r,
				 SSL_CTX *tls, struct buf *transcript,
				 struct status *st);
/* Sends m to the n recipients: every rcpts[i] gets code/dsn/reply.
 * Returns 0 when the connection can carry another message, -1 when it is
 * broken (recipients without a reply then have code 0: deferred). */
int client_send(struct smtp_conn *c, const struct client_msg *m,
		struct client_rcpt *rcpts, size_t n, struct buf *transcript);
/* "host [address]" of the peer. */
const char *client_peer(const struct smtp_conn *c);
/* Sends QUIT when polite and the connection still works, then frees. */
void client_close(struct smtp_conn *c, int polite);

#endif
