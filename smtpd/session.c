/*
 * session: the SMTP server's protocol state machine.
 */
#include "session.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "address.h"
#include "submit.h"
#include "maillog.h"

/* RFC 5321 4.5.3.1.4: 512 octets for a command line; extensions may add a
 * little (SIZE=, BODY=). */
#define COMMAND_MAX 1024
#define PATH_MAX_LEN 256
#define HEADER_MAX (1024 * 1024)
#define MAX_ERRORS 20

enum { D_BOL, D_TEXT, D_CR, D_DOT, D_DOTCR };

static void
reply(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
reply(struct session *s, const char *fmt, ...)
{
	va_list ap;
	size_t start = s->out.len, i;

	va_start(ap, fmt);
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
	/* A reply is one line whatever went into it. */
	for (i = start; i < s->out.len; i++)
		if (s->out.data[i] == '\r' || s->out.data[i] == '\n' ||
		    s->out.data[i] == '\0')
			s->out.data[i] = ' ';
	buf_puts(&s->out, "\r\n");
}

static const char *
client_name(const struct session *s)
{
	return s->p.client_name ? s->p.client_name : "unknown";
}

static void
transaction_reset(struct session *s)
{
	if (s->have_message && s->ops.msg_abort)
		s->ops.msg_abort(s->ops.arg);
	s->have_message = 0;
	queue_entry_free(&s->e);
	queue_entry_init(&s->e);
	s->declared_size = 0;
	s->bad_rcpts = 0;
	buf_reset(&s->header);
	buf_reset(&s->line);
	s->chunk_len = 0;
	s->size = 0;
	s->line_len = 0;
	s->too_big = s->too_long = s->has_nul = s->store_failed = 0;
	s->header_bad = 0;
	if (s->state != SESSION_START && s->state != SESSION_CLOSED)
		s->state = SESSION_READY;
}

void
session_init(struct session *s, const struct session_params *p,
	     const struct session_ops *ops)
{
	memset(s, 0, sizeof(*s));
	s->p = *p;
	s->ops = *ops;
	s->state = SESSION_START;
	buf_init(&s->in);
	buf_init(&s->out);
	buf_init(&s->header);
	buf_init(&s->line);
	queue_entry_init(&s->e);
}

void
session_free(struct session *s)
{
	transaction_reset(s);
	queue_entry_free(&s->e);
	buf_free(&s->in);
	buf_free(&s->out);
	buf_free(&s->header);
	buf_free(&s->line);
}

void
session_greet(struct session *s)
{
	if (s->p.reject != NULL) {
		/* 4xx: try later, now gone; 5xx: only QUIT (RFC 5321 3.1) */
		if (s->p.reject[0] == '4') {
			reply(s, "421 %s", s->p.reject + 4);
			s->state = SESSION_CLOSED;
		} else {
			reply(s, "554 %s", s->p.reject + 4);
			s->rejected = 1;
		}
		return;
	}
	reply(s, "220 %s ESMTP ready", s->p.hostname);
}

void
session_tls_started(struct session *s)
{
	transaction_reset(s);
	s->state = SESSION_START;
	s->esmtp = 0;
	s->helo[0] = '\0';
	s->tls = 1;
	s->want_tls = 0;
	buf_reset(&s->in);
	s->skipping = 0;
}

void
session_eof(struct session *s)
{
	if (s->state == SESSION_DATA)
		maillog("lost input channel from %s [%s] during message "
			"transfer", client_name(s), s->p.client_ip);
	transaction_reset(s);
	s->state = SESSION_CLOSED;
}

void
session_timeout(struct session *s)
{
	maillog("timeout waiting for input from %s [%s] %s",
		client_name(s), s->p.client_ip,
		s->state == SESSION_DATA ? "during message transfer"
					 : "during SMTP");
	transaction_reset(s);
	reply(s, "421 4.4.2 %s Error: timeout exceeded", s->p.hostname);
	s->state = SESSION_CLOSED;
}

void
session_shutdown(struct session *s)
{
	transaction_reset(s);
	reply(s, "421 4.3.2 %s Service shutting down", s->p.hostname);
	s->state = SESSION_CLOSED;
}

/* --- paths and parameters ---------------------------------------------- */

/* Parses "<path> params" after "FROM:" or "TO:". The address (source
 * route dropped) goes to addr; *params to what follows. 0, or -1 with a
 * reply given. */
static int
parse_path(struct session *s, const char *arg, struct buf *addr,
	   const char **params, const char *dsn)
{
	const char *p = arg, *end;
	int quoted = 0;
	struct address a;

	while (*p == ' ')
		p++;
	if (*p != '<') {
		reply(s, "501 %s Syntax error in address: angle brackets "
			 "required", dsn);
		return -1;
	}
	for (end = p + 1; *end != '\0'; end++) {
		if (*end == '\\' && quoted && end[1] != '\0')
			end++;
		else if (*end == '"')
			quoted = !quoted;
		else if (*end == '>' && !quoted)
			break;
	}
	if (*end != '>') {
		reply(s, "501 %s Syntax error in address: no closing '>'",
		      dsn);
		return -1;
	}
	p++;
	/* "@a,@b:user@host": the source route is ignored (RFC 5321 C). */
	if (*p == '@') {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		if (colon == NULL) {
			reply(s, "501 %s Syntax error in address", dsn);
			return -1;
		}
		p = colon + 1;
	}
	buf_reset(addr);
	if ((size_t)(end - p) > PATH_MAX_LEN) {
		reply(s, "501 %s Address too long", dsn);
		return -1;
	}
	if (end > p) {
		address_init(&a);
		if (address_parse(&a, p, (size_t)(end - p)) < 0 ||
		    memchr(p, ' ', (size_t)(end - p)) != NULL) {
			address_free(&a);
			reply(s, "501 %s Syntax error in address", dsn);
			return -1;
		}
		address_free(&a);
		buf_append(addr, p, (size_t)(end - p));
	}
	p = end + 1;
	while (*p == ' ')
		p++;
	*params = p;
	return 0;
}

static const char *
after_keyword(const char *line, const char *kw)
{
	size_t n = strlen(kw);

	if (strncasecmp(line, kw, n) != 0)
		return NULL;
	line += n;
	while (*line == ' ')
		line++;
	return line;
}

/* --- commands ---------------------------------------------------------- */

static int
need_helo(struct session *s)
{
	if (s->state == SESSION_START) {
		reply(s, "503 5.5.1 Polite people say HELO first");
		return 1;
	}
	return 0;
}

static void
cmd_helo(struct session *s, const char *arg, int esmtp)
{
	const char *p = arg, *q;

	while (*p == ' ')
		p++;
	if (*p == '\0') {
		reply(s, "501 5.5.4 Syntax: %s hostname",
		      esmtp ? "EHLO" : "HELO");
		return;
	}
	/* The name goes into our Received line: a CR in it could start a
	 * header line of the client's making. */
	for (q = p; *q != '\0'; q++)
		if ((unsigned char)*q < ' ' || *q == 127) {
			reply(s, "501 5.5.4 Invalid domain name");
			return;
		}
	snprintf(s->helo, sizeof(s->helo), "%.*s", (int)strcspn(p, " "), p);
	transaction_reset(s);
	s->state = SESSION_READY;
	s->esmtp = esmtp;
	if (!esmtp) {
		reply(s, "250 %s Hello %s [%s], pleased to meet you",
		      s->p.hostname, client_name(s), s->p.client_ip);
		return;
	}
	reply(s, "250-%s Hello %s [%s], pleased to meet you", s->p.hostname,
	      client_name(s), s->p.client_ip);
	buf_puts(&s->out, "250-PIPELINING\r\n");
	if (s->p.max_message_size > 0)
		buf_printf(&s->out, "250-SIZE %llu\r\n",
			   (unsigned long long)s->p.max_message_size);
	else
		buf_puts(&s->out, "250-SIZE\r\n");
	buf_puts(&s->out, "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n");
	if (s->p.tls_available && !s->tls)
		buf_puts(&s->out, "250-STARTTLS\r\n");
	buf_puts(&s->out, "250 HELP\r\n");
}

static void
cmd_mail(struct session *s, const char *line)
{
	const char *arg = after_keyword(line, "MAIL FROM:"), *params;
	struct buf addr, why;

	if (need_helo(s))
		return;
	if (s->state != SESSION_READY) {
		reply(s, "503 5.5.1 Sender already specified");
		return;
	}
	if (arg == NULL) {
		reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	buf_init(&addr);
	buf_init(&why);
	if (parse_path(s, arg, &addr, &params, "5.1.7") < 0)
		goto out;
	s->declared_size = 0;
	while (*params != '\0') {
		size_t n = strcspn(params, " ");

		if (!s->esmtp) {
			reply(s, "555 5.5.4 No parameters without EHLO");
			goto out;
		}
		if (n > 5 && strncasecmp(params, "SIZE=", 5) == 0) {
			char *endp;
			unsigned long long v = strtoull(params + 5, &endp, 10);

			if (endp != params + n || !isdigit((unsigned char)
							   params[5])) {
				reply(s, "501 5.5.4 Bad SIZE parameter");
				goto out;
			}
			s->declared_size = v;
		} else if (n > 5 && strncasecmp(params, "BODY=", 5) == 0) {
			if (!((n == 9 && strncasecmp(params + 5, "7BIT", 4) ==
				  0) ||
			      (n == 13 &&
			       strncasecmp(params + 5, "8BITMIME", 8) == 0))) {
				reply(s, "501 5.5.4 Bad BODY parameter");
				goto out;
			}
		} else {
			reply(s, "555 5.5.4 Unsupported parameter %.*s",
			      (int)(n > 64 ? 64 : n), params);
			goto out;
		}
		params += n;
		while (*params == ' ')
			params++;
	}
	if (s->p.max_message_size > 0 &&
	    s->declared_size > s->p.max_message_size) {
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message "
			 "size");
		goto out;
	}
	if (s->ops.check_mail &&
	    s->ops.check_mail(s->ops.arg, s, addr.data, &why) != 0) {
		reply(s, "%s", why.data);
		goto out;
	}
	free(s->e.sender);
	s->e.sender = xstrdup(addr.data);
	s->state = SESSION_MAIL;
	reply(s, "250 2.1.0 Sender ok");
out:
	buf_free(&addr);
	buf_free(&why);
}

static void
cmd_rcpt(struct session *s, const char *line)
{
	const char *arg = after_keyword(line, "RCPT TO:"), *params;
	struct buf addr, why;
	size_t i;

	if (need_helo(s))
		return;
	if (s->state != SESSION_MAIL && s->state != SESSION_RCPT) {
		reply(s, "503 5.5.1 Need MAIL before RCPT");
		return;
	}
	if (arg == NULL) {
		reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	buf_init(&addr);
	buf_init(&why);
	if (parse_path(s, arg, &addr, &params, "5.1.3") < 0)
		goto out;
	if (*params != '\0') {
		reply(s, "555 5.5.4 Unsupported parameter %.*s",
		      (int)strcspn(params, " "), params);
		goto out;
	}
	if (addr.len == 0) {
		reply(s, "501 5.1.3 Null recipient not allowed");
		goto out;
	}
	if (s->e.nrecipients >= s->p.max_recipients) {
		reply(s, "452 4.5.3 Too many recipients");
		goto out;
	}
	if (s->ops.check_rcpt &&
	    s->ops.check_rcpt(s->ops.arg, s, addr.data, &why) != 0) {
		reply(s, "%s", why.data);
		s->bad_rcpts++;
		goto out;
	}
	/* "postmaster" and other bare names are this host's. */
	if (strchr(addr.data, '@') == NULL)
		buf_printf(&addr, "@%s", s->p.hostname);
	for (i = 0; i < s->e.nrecipients; i++)
		if (strcasecmp(s->e.recipients[i].address, addr.data) == 0)
			break;
	if (i == s->e.nrecipients)
		queue_add_recipient(&s->e, addr.data, NULL);
	s->state = SESSION_RCPT;
	reply(s, "250 2.1.5 Recipient ok");
out:
	buf_free(&addr);
	buf_free(&why);
}

static void
cmd_data(struct session *s, const char *arg)
{
	struct status st;

	if (need_helo(s))
		return;
	if (*arg != '\0') {
		reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->state == SESSION_READY) {
		reply(s, "503 5.5.1 Need MAIL command");
		return;
	}
	if (s->state == SESSION_MAIL) {
		/* RFC 2920 3.1: no valid recipients */
		reply(s, "554 5.5.1 No valid recipients");
		return;
	}
	if (s->ops.msg_begin && s->ops.msg_begin(s->ops.arg, &s->e, &st) < 0) {
		if (st.exit_code == EX_TEMPFAIL && strcmp(st.dsn, "4.3.1") == 0)
			reply(s, "452 4.3.1 Insufficient system storage");
		else
			reply(s, "451 4.3.0 Temporary failure: try again "
				 "later");
		maillog("cannot queue a message from %s [%s]: %s",
			client_name(s), s->p.client_ip, st.text);
		return;
	}
	s->have_message = 1;
	s->state = SESSION_DATA;
	s->dstate = D_BOL;
	s->in_header = 1;
	s->size = 0;
	s->line_len = 0;
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
cmd_starttls(struct session *s, const char *arg)
{
	if (!s->p.tls_available) {
		reply(s, "502 5.5.1 STARTTLS not available");
		return;
	}
	if (s->tls) {
		reply(s, "503 5.5.1 TLS already active");
		return;
	}
	if (*arg != '\0') {
		reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	s->want_tls = 1;
}

static void
command(struct session *s, const char *line, size_t len)
{
	const char *arg;
	char verb[16];
	size_t n = strcspn(line, " ");
	size_t before = s->out.len;

	if (memchr(line, '\0', len) != NULL) {
		reply(s, "500 5.5.2 Syntax error: NUL in command");
		goto counted;
	}
	snprintf(verb, sizeof(verb), "%.*s", (int)(n < 15 ? n : 15), line);
	arg = line + n;
	while (*arg == ' ')
		arg++;

	if (strcasecmp(verb, "QUIT") == 0) {
		reply(s, "221 2.0.0 %s closing connection", s->p.hostname);
		transaction_reset(s);
		s->state = SESSION_CLOSED;
		return;
	}
	if (strcasecmp(verb, "NOOP") == 0) {
		reply(s, "250 2.0.0 OK");
		return;
	}
	if (strcasecmp(verb, "RSET") == 0) {
		transaction_reset(s);
		reply(s, "250 2.0.0 Reset state");
		return;
	}
	if (s->rejected) {
		reply(s, "503 %s", s->p.reject + 4);
		goto counted;
	}
	if (strcasecmp(verb, "EHLO") == 0)
		cmd_helo(s, arg, 1);
	else if (strcasecmp(verb, "HELO") == 0)
		cmd_helo(s, arg, 0);
	else if (strcasecmp(verb, "MAIL") == 0)
		cmd_mail(s, line);
	else if (strcasecmp(verb, "RCPT") == 0)
		cmd_rcpt(s, line);
	else if (strcasecmp(verb, "DATA") == 0)
		cmd_data(s, arg);
	else if (strcasecmp(verb, "STARTTLS") == 0)
		cmd_starttls(s, arg);
	else if (strcasecmp(verb, "VRFY") == 0) {
		if (*arg == '\0')
			reply(s, "501 5.5.4 Syntax: VRFY address");
		else
			reply(s, "252 2.5.2 Cannot VRFY user; try RCPT to "
				 "attempt delivery");
	} else if (strcasecmp(verb, "EXPN") == 0)
		reply(s, "502 5.7.0 EXPN is not allowed");
	else if (strcasecmp(verb, "HELP") == 0) {
		buf_puts(&s->out, "214-2.0.0 This is an SMTP server.\r\n"
				  "214-2.0.0 Commands: HELO EHLO MAIL RCPT "
				  "DATA RSET NOOP QUIT HELP VRFY");
		if (s->p.tls_available)
			buf_puts(&s->out, " STARTTLS");
		buf_puts(&s->out, "\r\n214 2.0.0 End of HELP info\r\n");
	} else
		reply(s, "500 5.5.1 Command unrecognized");
counted:
	/* Too many errors: a client that is not talking SMTP. */
	if (s->out.len > before && s->out.data[before] == '5' &&
	    ++s->errors > MAX_ERRORS && s->state != SESSION_CLOSED) {
		reply(s, "421 4.7.0 %s Too many errors", s->p.hostname);
		transaction_reset(s);
		s->state = SESSION_CLOSED;
	}
}

/* --- the data ---------------------------------------------------------- */

static void
flush_chunk(struct session *s)
{
	if (s->chunk_len == 0)
		return;
	if (!s->store_failed && !s->too_big && !s->too_long && !s->has_nul &&
	    s->ops.msg_write &&
	    s->ops.msg_write(s->ops.arg, s->chunk, s->chunk_len,
			     &s->store_status) < 0)
		s->store_failed = 1;
	s->chunk_len = 0;
}

static void
body_byte(struct session *s, char c)
{
	s->chunk[s->chunk_len++] = c;
	if (s->chunk_len == sizeof(s->chunk))
		flush_chunk(s);
}

static int
is_field(const char *l, size_t n)
{
	size_t k = 0;

	while (k < n && (unsigned char)l[k] > ' ' &&
	       (unsigned char)l[k] < 127 && l[k] != ':')
		k++;
	return k > 0 && k < n && l[k] == ':';
}

/* A complete header line (with its "\n") decides whether the header
 * section goes on. */
static void
header_line(struct session *s)
{
	const char *l = s->line.data;
	size_t n = s->line.len, i;

	if (n == 1) {			/* the empty line */
		s->in_header = 0;
	} else if ((l[0] == ' ' || l[0] == '\t') && s->header.len > 0) {
		buf_append(&s->header, l, n);
	} else if (is_field(l, n) && s->header.len + n <= HEADER_MAX) {
		buf_append(&s->header, l, n);
	} else {
		/* Not a field: the body starts here, without empty line. */
		s->in_header = 0;
		for (i = 0; i < n; i++)
			body_byte(s, l[i]);
	}
	buf_reset(&s->line);
}

static void
emit(struct session *s, char c)
{
	if (c == '\n') {
		s->line_len = 0;
	} else if (++s->line_len > s->p.max_line_length &&
		   s->p.max_line_length > 0) {
		s->too_long = 1;
	}
	if (s->too_long || s->too_big)
		return;
	if (s->in_header) {
		buf_putc(&s->line, c);
		if (c == '\n')
			header_line(s);
		return;
	}
	body_byte(s, c);
}

static void
text_byte(struct session *s, char c)
{
	if (c == '\r')
		s->dstate = D_CR;
	else
		emit(s, c);		/* a bare LF is a line break too */
}

static void
log_accepted(struct session *s, const char *msgid, size_t idlen)
{
	maillog("%s: from=<%s>, size=%llu, class=0, nrcpts=%zu%s%.*s, "
		"proto=%s, daemon=smtpd, relay=%s [%s]", s->e.id,
		s->e.sender ? s->e.sender : "",
		(unsigned long long)s->size, s->e.nrecipients,
		msgid ? ", msgid=" : "", msgid ? (int)idlen : 0,
		msgid ? msgid : "", s->esmtp ? "ESMTP" : "SMTP",
		client_name(s), s->p.client_ip);
}

static void
data_end(struct session *s)
{
	struct status st;
	char date[64];
	struct tm tm;
	time_t now = time(NULL);
	const char *msgid;
	size_t idlen = 0;

	/* A header line without its line end is still a header line. */
	if (s->in_header && s->line.len > 0 && !s->too_long && !s->too_big) {
		buf_putc(&s->line, '\n');
		header_line(s);
	}
	flush_chunk(s);
	s->state = SESSION_READY;
	if (s->store_failed) {
		if (strcmp(s->store_status.dsn, "4.3.1") == 0)
			reply(s, "452 4.3.1 Insufficient system storage");
		else
			reply(s, "451 4.3.0 Temporary failure: try again "
				 "later");
		maillog("%s: cannot store a message from %s [%s]: %s",
			s->e.id, client_name(s), s->p.client_ip,
			s->store_status.text);
		goto reset;
	}
	if (s->too_big) {
		reply(s, "552 5.3.4 Message size exceeds fixed maximum "
			 "message size");
		maillog("%s: message from %s [%s] refused: size over %llu",
			s->e.id, client_name(s), s->p.client_ip,
			(unsigned long long)s->p.max_message_size);
		goto reset;
	}
	if (s->has_nul) {
		reply(s, "554 5.6.0 Message contains NUL characters");
		goto reset;
	}
	if (s->too_long) {
		reply(s, "554 5.6.0 Message has a line longer than %u octets",
		      s->p.max_line_length);
		goto reset;
	}
	if (submit_count_received(s->header.data, s->header.len) >= s->p.max_hops) {
		reply(s, "554 5.4.6 Too many hops: mail loop?");
		maillog("%s: message from %s [%s] refused: too many hops",
			s->e.id, client_name(s), s->p.client_ip);
		goto reset;
	}
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	buf_reset(&s->e.headers);
	buf_printf(&s->e.headers, "Received: from %s (%s [%s])\n\tby %s with "
		   "%s%s id %s", s->helo, client_name(s), s->p.client_ip,
		   s->p.hostname, s->esmtp ? "ESMTP" : "SMTP",
		   s->tls ? "S" : "", s->e.id);
	if (s->e.nrecipients == 1)
		buf_printf(&s->e.headers, "\n\tfor <%s>",
			   s->e.recipients[0].address);
	buf_printf(&s->e.headers, ";\n\t%s\n", date);
	buf_append(&s->e.headers, s->header.data, s->header.len);
	msgid = submit_header_value(s->header.data, s->header.len, "Message-ID",
			     &idlen);
	if (s->p.discard) {
		reply(s, "250 2.0.0 %s Message accepted for delivery", s->e.id);
		maillog("%s: from=<%s>: discarded (access table)", s->e.id,
			s->e.sender ? s->e.sender : "");
		if (s->ops.discarded)
			s->ops.discarded(s->ops.arg, &s->e);
		goto reset;
	}
	if (s->ops.msg_commit && s->ops.msg_commit(s->ops.arg, &s->e, &st) <
	    0) {
		s->have_message = 0;	/* commit cleaned up */
		if (strcmp(st.dsn, "4.3.1") == 0)
			reply(s, "452 4.3.1 Insufficient system storage");
		else
			reply(s, "451 4.3.0 Temporary failure: try again "
				 "later");
		maillog("%s: cannot queue a message from %s [%s]: %s",
			s->e.id, client_name(s), s->p.client_ip, st.text);
		goto reset;
	}
	s->have_message = 0;
	s->messages++;
	log_accepted(s, msgid, idlen);
	reply(s, "250 2.0.0 %s Message accepted for delivery", s->e.id);
	if (s->ops.accepted)
		s->ops.accepted(s->ops.arg, &s->e);
reset:
	transaction_reset(s);
}

/* Feeds DATA bytes; returns how many were used (up to the end of data). */
static size_t
data_input(struct session *s, const char *data, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		char c = data[i];

		s->size++;
		if (s->p.max_message_size > 0 &&
		    s->size > s->p.max_message_size + 3)
			s->too_big = 1;
		if (c == '\0')
			s->has_nul = 1;
		switch (s->dstate) {
		case D_BOL:
			if (c == '.') {
				s->dstate = D_DOT;
				break;
			}
			s->dstate = D_TEXT;
			text_byte(s, c);
			break;
		case D_DOT:
			if (c == '\r') {
				s->dstate = D_DOTCR;
				break;
			}
			s->dstate = D_TEXT;	/* the stuffed dot is gone */
			text_byte(s, c);
			break;
		case D_DOTCR:
			if (c == '\n') {
				s->size -= 3;	/* ".\r\n" is not the message */
				data_end(s);
				return i + 1;
			}
			s->dstate = D_TEXT;
			emit(s, '\r');
			text_byte(s, c);
			break;
		case D_CR:
			if (c == '\n') {
				emit(s, '\n');
				s->dstate = D_BOL;
				break;
			}
			emit(s, '\r');		/* a bare CR is text */
			s->dstate = D_TEXT;
			text_byte(s, c);
			break;
		default:
			text_byte(s, c);
			break;
		}
	}
	return len;
}

size_t
session_input(struct session *s, const char *data, size_t len)
{
	size_t used = 0;

	while (used < len && s->state != SESSION_CLOSED && !s->want_tls) {
		const char *nl;
		size_t n;

		if (s->state == SESSION_DATA) {
			used += data_input(s, data + used, len - used);
			continue;
		}
		nl = memchr(data + used, '\n', len - used);
		n = nl ? (size_t)(nl - (data + used)) + 1 : len - used;
		if (s->skipping) {
			if (nl != NULL)
				s->skipping = 0;
			used += n;
			continue;
		}
		if (s->in.len + n > COMMAND_MAX) {
			reply(s, "500 5.5.2 Line too long");
			buf_reset(&s->in);
			s->skipping = nl == NULL;
			used += n;
			continue;
		}
		buf_append(&s->in, data + used, n);
		used += n;
		if (nl == NULL)
			break;
		/* The line without its LF and a CR before it. */
		s->in.len--;
		if (s->in.len > 0 && s->in.data[s->in.len - 1] == '\r')
			s->in.len--;
		s->in.data[s->in.len] = '\0';
		command(s, s->in.data, s->in.len);
		buf_reset(&s->in);
	}
	return used;
}
