/*
 * client: the outgoing SMTP client.
 */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>

#define LINE_MAX_OUT 998

struct smtp_conn {
	struct config *cfg;
	int fd;
	SSL *ssl;
	char peer[320];
	struct buf in;		/* bytes read, not yet a whole reply */
	struct buf out;		/* bytes to send */
	int esmtp, pipelining, size, eightbit, starttls;
	int need_rset;
	int broken;
};

struct reply {
	int code;
	char dsn[16];
	char text[512];		/* the whole reply, lines joined by "; " */
};

SSL_CTX *
client_tls_context(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx != NULL) {
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

/* --- the wire ----------------------------------------------------------- */

static int
wait_fd(int fd, short events, unsigned seconds)
{
	struct pollfd p = { fd, events, 0 };
	int r;

	do {
		r = poll(&p, 1, (int)(seconds * 1000));
	} while (r < 0 && errno == EINTR);
	return r;
}

static int
flush_out(struct smtp_conn *c)
{
	const char *p = c->out.data;
	size_t n = c->out.len;

	while (n > 0 && !c->broken) {
		ssize_t w;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, p, (int)(n > 65536 ? 65536
								   : n));

			w = r > 0 ? r : -1;
		} else {
			w = write(c->fd, p, n);
			if (w < 0 && errno == EINTR)
				continue;
		}
		if (w <= 0) {
			c->broken = 1;
			break;
		}
		p += w;
		n -= (size_t)w;
	}
	buf_reset(&c->out);
	return c->broken ? -1 : 0;
}

/* Reads one reply (all its lines). -1 on timeout or a broken connection. */
static int
read_reply(struct smtp_conn *c, unsigned timeout, struct reply *r)
{
	size_t start = 0, tlen = 0;

	memset(r, 0, sizeof(*r));
	for (;;) {
		char *nl;

		while ((nl = memchr(c->in.data + start, '\n',
				    c->in.len - start)) != NULL) {
			char *line = c->in.data + start;
			size_t len = (size_t)(nl - line);
			int last;

			if (len > 0 && line[len - 1] == '\r')
				len--;
			if (len < 3 || line[0] < '2' || line[0] > '5' ||
			    line[1] < '0' || line[1] > '9' || line[2] < '0' ||
			    line[2] > '9') {
				c->broken = 1;
				snprintf(r->text, sizeof(r->text),
					 "malformed reply: %.*s",
					 (int)(len > 80 ? 80 : len), line);
				return -1;
			}
			last = len == 3 || line[3] == ' ';
			if (r->code == 0)
				r->code = (line[0] - '0') * 100 +
					  (line[1] - '0') * 10 + line[2] - '0';
			if (len > 4 && tlen < sizeof(r->text) - 1)
				tlen += (size_t)snprintf(
					r->text + tlen, sizeof(r->text) - tlen,
					"%s%.*s", tlen ? "; " : "",
					(int)(len - 4), line + 4);
			if (tlen >= sizeof(r->text))
				tlen = sizeof(r->text) - 1;
			start = (size_t)(nl - c->in.data) + 1;
			if (last) {
				int a, b, d, n = 0;

				memmove(c->in.data, c->in.data + start,
					c->in.len - start);
				c->in.len -= start;
				c->in.data[c->in.len] = '\0';
				if (sscanf(r->text, "%1d.%3d.%3d%n", &a, &b, &d,
					   &n) == 3 &&
				    a == r->code / 100 &&
				    (r->text[n] == ' ' || r->text[n] == '\0'))
					snprintf(r->dsn, sizeof(r->dsn),
						 "%d.%d.%d", a, b, d);
				else
					snprintf(r->dsn, sizeof(r->dsn),
						 "%d.0.0", r->code / 100);
				return 0;
			}
		}
		if (c->in.len > 65536) {
			c->broken = 1;
			snprintf(r->text, sizeof(r->text), "reply too long");
			return -1;
		}
		{
			char chunk[4096];
			ssize_t n;

			if ((c->ssl == NULL || SSL_pending(c->ssl) == 0) &&
			    wait_fd(c->fd, POLLIN, timeout) <= 0) {
				c->broken = 1;
				snprintf(r->text, sizeof(r->text),
					 "timeout waiting for a reply");
				return -1;
			}
			if (c->ssl != NULL) {
				int k = SSL_read(c->ssl, chunk, sizeof(chunk));

				n = k > 0 ? k : -1;
			} else {
				do {
					n = read(c->fd, chunk, sizeof(chunk));
				} while (n < 0 && errno == EINTR);
			}
			if (n <= 0) {
				c->broken = 1;
				snprintf(r->text, sizeof(r->text),
					 "connection closed by the server");
				return -1;
			}
			buf_append(&c->in, chunk, (size_t)n);
		}
	}
}

static void
note(struct buf *transcript, const struct smtp_conn *c, const char *what,
     const struct reply *r)
{
	if (transcript != NULL && r->code == 0)
		buf_printf(transcript, "%s: %s: %s\n", c->peer, what,
			   r->text);
	else if (transcript != NULL)
		buf_printf(transcript, "%s: %s: %d %s\n", c->peer, what,
			   r->code, r->text);
}

/* --- connecting ---------------------------------------------------------- */

static int
connect_addr(struct smtp_conn *c, const struct route_addr *a,
	     struct status *st)
{
	int fd, err = 0;
	socklen_t elen = sizeof(err);
	struct timeval tv;

	fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC |
					     SOCK_NONBLOCK, 0);
	if (fd < 0)
		return status_errno(st, errno, "socket");
	if (c->cfg->smtp_bind_address[0] != '\0') {
		struct addrinfo hints, *res;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = a->sa.ss_family;
		hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
		if (getaddrinfo(c->cfg->smtp_bind_address, NULL, &hints,
				&res) == 0) {
			if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
				err = errno;
			freeaddrinfo(res);
		}
		if (err != 0) {
			close(fd);
			return status_errno(st, err, "bind %s",
					    c->cfg->smtp_bind_address);
		}
	}
	if (connect(fd, (const struct sockaddr *)&a->sa, a->len) < 0 &&
	    errno != EINPROGRESS) {
		err = errno;
		close(fd);
		return status_errno(st, err, "connect to %s", c->peer);
	}
	if (wait_fd(fd, POLLOUT, c->cfg->smtp_connect_timeout) <= 0) {
		close(fd);
		return status_set(st, EX_TEMPFAIL, "4.4.1",
				  "connection to %s timed out", c->peer);
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
		close(fd);
		return status_errno(st, err ? err : errno,
				    "connect to %s", c->peer);
	}
	/* Blocking from here, with time limits on every send. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	tv.tv_sec = (time_t)c->cfg->data_timeout;
	tv.tv_usec = 0;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->fd = fd;
	return 0;
}

static void
parse_ehlo(struct smtp_conn *c, const char *text)
{
	/* text: "host Hello; PIPELINING; SIZE 100; ..." */
	const char *p = text;

	c->pipelining = c->size = c->eightbit = c->starttls = 0;
	while ((p = strstr(p, "; ")) != NULL) {
		p += 2;
		if (strncasecmp(p, "PIPELINING", 10) == 0 &&
		    (p[10] == ';' || p[10] == '\0' || p[10] == ' '))
			c->pipelining = 1;
		else if (strncasecmp(p, "SIZE", 4) == 0 &&
			 (p[4] == ';' || p[4] == '\0' || p[4] == ' '))
			c->size = 1;
		else if (strncasecmp(p, "8BITMIME", 8) == 0)
			c->eightbit = 1;
		else if (strncasecmp(p, "STARTTLS", 8) == 0)
			c->starttls = 1;
	}
}

static int
hello(struct smtp_conn *c, struct buf *transcript, struct status *st)
{
	struct reply r;
	const char *me = config_hostname(c->cfg);

	buf_printf(&c->out, "EHLO %s\r\n", me);
	if (flush_out(c) < 0 || read_reply(c, c->cfg->command_timeout, &r) < 0)
		return status_set(st, EX_TEMPFAIL, "4.4.2", "%s: %s", c->peer,
				  r.text[0] ? r.text : "connection lost");
	if (r.code == 250) {
		c->esmtp = 1;
		parse_ehlo(c, r.text);
		return 0;
	}
	note(transcript, c, "EHLO", &r);
	buf_printf(&c->out, "HELO %s\r\n", me);
	if (flush_out(c) < 0 || read_reply(c, c->cfg->command_timeout, &r) < 0)
		return status_set(st, EX_TEMPFAIL, "4.4.2", "%s: %s", c->peer,
				  r.text[0] ? r.text : "connection lost");
	if (r.code != 250) {
		note(transcript, c, "HELO", &r);
		return status_set(st, r.code >= 500 ? EX_UNAVAILABLE
						    : EX_TEMPFAIL,
				  r.dsn, "%s said: %d %s", c->peer, r.code,
				  r.text);
	}
	c->esmtp = 0;
	c->pipelining = c->size = c->eightbit = c->starttls = 0;
	return 0;
}

static int
start_tls(struct smtp_conn *c, SSL_CTX *tls, struct buf *transcript,
	  struct status *st)
{
	struct reply r;

	buf_puts(&c->out, "STARTTLS\r\n");
	if (flush_out(c) < 0 || read_reply(c, c->cfg->command_timeout, &r) < 0)
		return status_set(st, EX_TEMPFAIL, "4.4.2", "%s: %s", c->peer,
				  r.text);
	if (r.code != 220) {
		/* Refused: go on in the clear. */
		note(transcript, c, "STARTTLS", &r);
		return 0;
	}
	c->ssl = SSL_new(tls);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd) ||
	    SSL_connect(c->ssl) != 1) {
		c->broken = 1;
		return status_set(st, EX_TEMPFAIL, "4.7.5",
				  "%s: TLS handshake failed", c->peer);
	}
	buf_reset(&c->in);
	return hello(c, transcript, st);
}

static void
conn_free(struct smtp_conn *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_reset(&c->in);
	buf_reset(&c->out);
	c->broken = 0;
}

struct smtp_conn *
client_connect(struct config *cfg, const struct route *rt, SSL_CTX *tls,
	       struct buf *transcript, struct status *st)
{
	struct smtp_conn *c = calloc(1, sizeof(*c));
	struct status last;
	size_t h, i;
	int permanent = 1;

	if (c == NULL) {
		status_errno(st, ENOMEM, "client");
		return NULL;
	}
	c->cfg = cfg;
	c->fd = -1;
	buf_init(&c->in);
	buf_init(&c->out);
	status_set(&last, EX_TEMPFAIL, "4.4.1", "no host to try");
	for (h = 0; h < rt->nhosts; h++) {
		struct route_addr addrs[ROUTE_MAX_ADDRS];
		size_t n = route_addresses(rt->hosts[h].name, rt->hosts[h].port,
					   addrs, ROUTE_MAX_ADDRS, &last);

		if (n == 0) {
			if (status_is_temporary(last.exit_code))
				permanent = 0;
			if (transcript)
				buf_printf(transcript, "%s: %s\n",
					   rt->hosts[h].name, last.text);
			continue;
		}
		for (i = 0; i < n; i++) {
			struct reply r;
			int no_tls = 0;

			if (rt->hosts[h].name[0] == '[')
				snprintf(c->peer, sizeof(c->peer), "%s",
					 rt->hosts[h].name);
			else
				snprintf(c->peer, sizeof(c->peer), "%s [%s]",
					 rt->hosts[h].name, addrs[i].text);
		retry:
			if (connect_addr(c, &addrs[i], &last) < 0) {
				permanent = 0;
				if (transcript)
					buf_printf(transcript, "%s\n",
						   last.text);
				continue;
			}
			if (read_reply(c, cfg->command_timeout, &r) < 0 ||
			    r.code != 220) {
				if (r.code == 0) {
					/* No reply at all: r.text says why. */
					permanent = 0;
					status_set(&last, EX_TEMPFAIL, "4.4.2",
						   "%s: %s", c->peer, r.text);
				} else if (r.code >= 500) {
					status_set(&last, EX_UNAVAILABLE,
						   r.dsn, "%s said: %d %s",
						   c->peer, r.code, r.text);
				} else {
					permanent = 0;
					status_set(&last, EX_TEMPFAIL, "4.4.2",
						   "%s: %d %s", c->peer, r.code,
						   r.text);
				}
				note(transcript, c, "greeting", &r);
				conn_free(c);
				continue;
			}
			if (hello(c, transcript, &last) < 0) {
				if (status_is_temporary(last.exit_code))
					permanent = 0;
				conn_free(c);
				continue;
			}
			if (c->starttls && tls != NULL && !no_tls) {
				if (start_tls(c, tls, transcript, &last) < 0) {
					/* Opportunistic: once more in the
					 * clear. */
					conn_free(c);
					no_tls = 1;
					goto retry;
				}
			}
			return c;
		}
	}
	*st = last;
	if (!permanent && !status_is_temporary(st->exit_code))
		st->exit_code = EX_TEMPFAIL, st->dsn[0] = '4';
	conn_free(c);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
	return NULL;
}

const char *
client_peer(const struct smtp_conn *c)
{
	return c->peer;
}

void
client_close(struct smtp_conn *c, int polite)
{
	struct reply r;

	if (c == NULL)
		return;
	if (polite && !c->broken && c->fd >= 0) {
		buf_puts(&c->out, "QUIT\r\n");
		if (flush_out(c) == 0)
			read_reply(c, 10, &r);
	}
	if (c->ssl != NULL && !c->broken)
		SSL_shutdown(c->ssl);
	conn_free(c);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

/* --- a message ------------------------------------------------------------ */

struct text_state {
	int bol;
	int cr;			/* a CR waits for its LF */
	size_t col;
	int header;		/* fold long header lines, do not cut them */
};

static void
put_text(struct smtp_conn *c, struct text_state *t, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char ch = p[i];

		if (t->cr) {
			t->cr = 0;
			buf_puts(&c->out, "\r\n");
			t->bol = 1;
			t->col = 0;
			if (ch == '\n')
				continue;
		}
		if (ch == '\r') {
			t->cr = 1;
			continue;
		}
		if (ch == '\n') {
			buf_puts(&c->out, "\r\n");
			t->bol = 1;
			t->col = 0;
			continue;
		}
		if (t->col >= LINE_MAX_OUT) {
			buf_puts(&c->out, t->header ? "\r\n " : "\r\n");
			t->bol = !t->header;
			t->col = t->header ? 1 : 0;
		}
		if (t->bol && ch == '.')
			buf_putc(&c->out, '.');
		buf_putc(&c->out, ch);
		t->bol = 0;
		t->col++;
		if (c->out.len >= 65536)
			flush_out(c);
	}
}

static int
send_body(struct smtp_conn *c, const struct client_msg *m)
{
	struct text_state t = { 1, 0, 0, 1 };
	char chunk[65536];
	off_t off = 0;
	ssize_t n;

	put_text(c, &t, m->headers, m->headers_len);
	if (t.cr || !t.bol)
		put_text(c, &t, "\n", 1);
	buf_puts(&c->out, "\r\n");
	t.bol = 1;
	t.col = 0;
	t.header = 0;
	while ((n = pread(m->body_fd, chunk, sizeof(chunk), off)) > 0) {
		put_text(c, &t, chunk, (size_t)n);
		off += n;
		if (c->broken)
			return -1;
	}
	if (n < 0)
		return -1;
	if (t.cr || !t.bol)
		put_text(c, &t, "\n", 1);
	buf_puts(&c->out, ".\r\n");
	return flush_out(c);
}

static void
set_rcpt(struct client_rcpt *rc, const struct reply *r)
{
	rc->code = r->code;
	snprintf(rc->dsn, sizeof(rc->dsn), "%s", r->dsn);
	snprintf(rc->reply, sizeof(rc->reply), "%d %.500s", r->code, r->text);
}

static void
mail_command(struct smtp_conn *c, const struct client_msg *m)
{
	buf_printf(&c->out, "MAIL FROM:<%s>", m->sender);
	if (c->size)
		buf_printf(&c->out, " SIZE=%llu",
			   (unsigned long long)(m->headers_len + m->body_size));
	if (c->eightbit)
		buf_puts(&c->out, " BODY=8BITMIME");
	buf_puts(&c->out, "\r\n");
}

int
client_send(struct smtp_conn *c, const struct client_msg *m,
	    struct client_rcpt *rcpts, size_t n, struct buf *transcript)
{
	struct reply r, mail;
	size_t i, accepted = 0;
	unsigned timeout = c->cfg->command_timeout;
	const char *why;

	memset(&r, 0, sizeof(r));
	memset(&mail, 0, sizeof(mail));

	for (i = 0; i < n; i++) {
		rcpts[i].code = 0;
		rcpts[i].dsn[0] = '\0';
		rcpts[i].reply[0] = '\0';
	}
	if (c->broken)
		return -1;
	if (c->need_rset) {
		buf_puts(&c->out, "RSET\r\n");
		if (flush_out(c) < 0 || read_reply(c, timeout, &r) < 0 ||
		    r.code != 250)
			return -1;
		c->need_rset = 0;
	}
	mail_command(c, m);
	if (c->pipelining) {
		for (i = 0; i < n; i++)
			buf_printf(&c->out, "RCPT TO:<%s>\r\n",
				   rcpts[i].address);
		buf_puts(&c->out, "DATA\r\n");
	}
	if (flush_out(c) < 0 || read_reply(c, timeout, &mail) < 0)
		goto broken;
	if (mail.code != 250)
		note(transcript, c, "MAIL FROM", &mail);
	for (i = 0; i < n; i++) {
		if (mail.code != 250) {
			set_rcpt(&rcpts[i], &mail);
			if (c->pipelining && read_reply(c, timeout, &r) < 0)
				goto broken;
			continue;
		}
		if (!c->pipelining) {
			buf_printf(&c->out, "RCPT TO:<%s>\r\n",
				   rcpts[i].address);
			if (flush_out(c) < 0)
				goto broken;
		}
		if (read_reply(c, timeout, &r) < 0)
			goto broken;
		if (r.code == 250 || r.code == 251) {
			accepted++;
			rcpts[i].code = -1;	/* waits for the data */
		} else {
			set_rcpt(&rcpts[i], &r);
			note(transcript, c, rcpts[i].address, &r);
		}
	}
	if (!c->pipelining) {
		if (accepted == 0) {
			c->need_rset = 1;
			return 0;
		}
		buf_puts(&c->out, "DATA\r\n");
		if (flush_out(c) < 0)
			goto broken;
	}
	if (read_reply(c, c->pipelining ? timeout : 120, &r) < 0)
		goto broken;
	if (r.code != 354) {
		if (accepted > 0)
			note(transcript, c, "DATA", &r);
		for (i = 0; i < n; i++)
			if (rcpts[i].code == -1)
				set_rcpt(&rcpts[i], &r);
		c->need_rset = 1;
		return 0;
	}
	if (accepted == 0) {
		/* A server that says 354 without recipients: an empty
		 * message ends it (RFC 2920 3.1). */
		buf_puts(&c->out, ".\r\n");
		if (flush_out(c) < 0 || read_reply(c, timeout, &r) < 0)
			goto broken;
		c->need_rset = 1;
		return 0;
	}
	if (send_body(c, m) < 0 ||
	    read_reply(c, c->cfg->data_timeout, &r) < 0)
		goto broken;
	if (r.code != 250)
		note(transcript, c, "end of data", &r);
	for (i = 0; i < n; i++)
		if (rcpts[i].code == -1)
			set_rcpt(&rcpts[i], &r);
	return 0;
broken:
	/* The reason is the text of the reply that could not be read (code
	 * 0); a reply that did come is no reason, and a failed write has
	 * none. */
	why = mail.code == 0 && mail.text[0] ? mail.text
	      : r.code == 0 && r.text[0]     ? r.text
					     : "connection lost";
	for (i = 0; i < n; i++)
		if (rcpts[i].code == -1 || rcpts[i].code == 0) {
			rcpts[i].code = 0;
			snprintf(rcpts[i].dsn, sizeof(rcpts[i].dsn), "4.4.2");
			snprintf(rcpts[i].reply, sizeof(rcpts[i].reply),
				 "%.200s: %.300s", c->peer, why);
		}
	if (transcript)
		buf_printf(transcript, "%s: %s\n", c->peer, why);
	c->broken = 1;
	return -1;
}
