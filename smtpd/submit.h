/*
 * submit: what the sendmail command does to a message before it is queued,
 * as pure functions over its header section: recipients from To:, Cc: and
 * Bcc: (-t), Bcc: removed, Date:, Message-ID: and From: added when missing,
 * Return-Path: dropped (it is added at final delivery). And the RFC 5322
 * address-list parser they need (names, angle brackets, comments, quoted
 * strings, groups).
 */
#ifndef SMTPD_SUBMIT_H
#define SMTPD_SUBMIT_H

#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "config.h"

/* Calls fn with each address of an RFC 5322 address list (the bare
 * local@domain or local name, without display names or comments). */
void submit_addresses(const char *list, size_t len,
		      void (*fn)(const char *addr, size_t len, void *arg),
		      void *arg);

struct submit_header {
	const char *from_address;	/* user@host for a missing From: */
	const char *full_name;		/* -F, or the gecos name; may be NULL */
	const char *hostname;
	const char *queue_id;		/* for a missing Message-ID: */
	time_t now;
	int extract_recipients;		/* -t */
};

/* Rewrites the header section in (with its final empty line or without)
 * into out, adding what is missing and dropping Bcc: and Return-Path:.
 * With extract_recipients the To/Cc/Bcc addresses (or Resent-To/Cc/Bcc when
 * the message has Resent- fields) go to fn. Returns the number of header
 * lines that were not fields (0 for a clean header). */
int submit_header(const struct submit_header *opts, const char *in,
		  size_t len, struct buf *out,
		  void (*fn)(const char *addr, size_t len, void *arg),
		  void *arg);

/* The value of the first field name in a header section (without the
 * leading blanks, unfolded no further), or NULL; *len is its length. */
const char *submit_header_value(const char *headers, size_t hlen,
				 const char *name, size_t *len);

/* The number of Received: fields in a header section (the hop count). */
unsigned submit_count_received(const char *headers, size_t hlen);

#endif
