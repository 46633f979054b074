/*
 * session: one SMTP server session (RFC 5321, with RFC 1870 SIZE, RFC 6152
 * 8BITMIME, RFC 2920 PIPELINING, RFC 2034 ENHANCEDSTATUSCODES, RFC 3207
 * STARTTLS) as a state machine over bytes: the caller feeds what the client
 * sent and sends what the session put into its output buffer. No I/O here,
 * so that the protocol can be tested and fuzzed without sockets; recipient
 * checks and the message store are callbacks.
 *
 * Line ends: commands end at LF (a CR before it is dropped). In DATA only
 * CRLF ends a line, and only CRLF "." CRLF ends the data: a bare LF or a
 * bare CR is message text (stored as a line break, resp. kept), never part
 * of an end-of-data, so that no "smuggled" message can hide in the text. A
 * line that starts with a dot after CRLF loses that dot (RFC 5321 4.5.2).
 */
#ifndef SMTPD_SESSION_H
#define SMTPD_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "queue.h"
#include "status.h"

struct session;

struct session_ops {
	void *arg;
	/* 0 to accept; otherwise the whole reply ("550 5.1.1 ...") in
	 * reply, without CRLF. */
	int (*check_mail)(void *arg, struct session *s, const char *address,
			  struct buf *reply);
	int (*check_rcpt)(void *arg, struct session *s, const char *address,
			  struct buf *reply);
	/* The message store: begin gives e its id; write appends body
	 * bytes; commit makes it durable (0) or fails with st set; abort
	 * forgets it. */
	int (*msg_begin)(void *arg, struct queue_entry *e, struct status *st);
	int (*msg_write)(void *arg, const void *data, size_t len,
			 struct status *st);
	int (*msg_commit)(void *arg, struct queue_entry *e, struct status *st);
	void (*msg_abort)(void *arg);
	/* After a message was accepted (e.g. wake the queue runner). */
	void (*accepted)(void *arg, const struct queue_entry *e);
	/* After a message was accepted and thrown away (DISCARD). */
	void (*discarded)(void *arg, const struct queue_entry *e);
};

struct session_params {
	const char *hostname;		/* ours */
	const char *client_ip;
	const char *client_name;	/* verified reverse name, or NULL */
	uint64_t max_message_size;	/* 0: none */
	unsigned max_recipients;
	unsigned max_hops;
	unsigned max_line_length;	/* DATA text lines */
	int tls_available;		/* offer STARTTLS */
	int discard;			/* accept, then throw away */
	const char *reject;		/* refuse the session with this reply */
};

enum session_state {
	SESSION_START,		/* greeting sent, no HELO yet */
	SESSION_READY,		/* after HELO/EHLO or RSET */
	SESSION_MAIL,		/* after MAIL */
	SESSION_RCPT,		/* after a good RCPT */
	SESSION_DATA,		/* in the data */
	SESSION_CLOSED,
};

struct session {
	struct session_params p;
	struct session_ops ops;
	enum session_state state;
	int esmtp;
	int tls;			/* TLS is on */
	int want_tls;			/* STARTTLS said 220: switch now */
	int rejected;			/* p.reject: only QUIT, NOOP, RSET */
	unsigned errors;		/* 5xx replies to commands */
	char helo[256];
	struct buf in;			/* a command line being assembled */
	int skipping;			/* an over-long line: up to its LF */
	struct buf out;			/* replies for the client */
	/* The transaction. */
	struct queue_entry e;
	int have_message;		/* msg_begin succeeded */
	uint64_t declared_size;
	unsigned bad_rcpts;
	/* DATA parsing. */
	int dstate;			/* see session.c */
	int in_header;
	int header_bad;			/* no header section at all */
	struct buf header;		/* the client's header section */
	struct buf line;		/* current header line */
	char chunk[65536];		/* body bytes waiting for msg_write */
	size_t chunk_len;
	uint64_t size;			/* client octets in DATA */
	size_t line_len;		/* current text line */
	int too_big, too_long, has_nul, store_failed;
	struct status store_status;
	unsigned messages;		/* accepted in this session */
};

void session_init(struct session *s, const struct session_params *p,
		  const struct session_ops *ops);
void session_free(struct session *s);
/* The greeting (220, or the rejection). */
void session_greet(struct session *s);
/* Feeds client bytes. Returns how many were used: fewer than len when a
 * STARTTLS was accepted (the rest was sent in the clear before TLS began
 * and must be thrown away) or the session closed. */
size_t session_input(struct session *s, const char *data, size_t len);
/* TLS is up: everything learnt before is forgotten (RFC 3207 4.2). */
void session_tls_started(struct session *s);
/* The client went away: an unfinished message is dropped. */
void session_eof(struct session *s);
/* The client was silent too long: 421 and close. */
void session_timeout(struct session *s);
/* The server stops: 421 and close. */
void session_shutdown(struct session *s);

#endif
