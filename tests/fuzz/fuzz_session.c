/*
 * fuzz_session: libFuzzer harness for the SMTP session parser. The first
 * byte chooses the session's settings (limits, STARTTLS, store failures);
 * the rest is what a client sends. It is fed twice: in one piece and in
 * pieces of pseudo-random sizes (from a hash of the input, so the run is
 * reproducible). Checked: every reply is one CRLF-ended line starting with
 * a 3-digit code, each message begun is committed or aborted exactly once,
 * and, when no STARTTLS cut the stream, both feeds give the same replies
 * and the same messages: how a client's bytes are split into reads must
 * not change what the server understands.
 * Seeds: tests/fuzz/corpus/session/ (first byte: the F_ flags below).
 * Built by "make fuzz-replay" and "make fuzz", or by hand:
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined \
 *     -Ilib -Ismtpd tests/fuzz/fuzz_session.c smtpd/session.c \
 *     smtpd/queue.c lib/address.c lib/maillog.c lib/qid.c lib/status.c \
 *     lib/buf.c -o fuzz_session
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	unsigned flags;
	int begun, ended;	/* messages begun; committed or aborted */
	int open;			/* a message is between begin and end */
	int tls_cuts;			/* STARTTLS dropped unused bytes */
	struct buf replies;
	struct buf messages;		/* sender, recipients, headers, body */
};

enum {
	F_TLS = 1,		/* STARTTLS offered */
	F_SMALL = 2,		/* small size and line limits */
	F_FAIL_BEGIN = 4,
	F_FAIL_WRITE = 8,
	F_FAIL_COMMIT = 16,
	F_DISCARD = 32,
	F_REJECT = 64,		/* the client is refused */
	F_NAME = 128,		/* the client has a name */
};

static int
check_address(void *arg, struct session *s, const char *address,
	      struct buf *reply)
{
	(void)arg;
	(void)s;
	if (strncmp(address, "bad", 3) == 0) {
		buf_printf(reply, "550 5.1.1 <%s>... User unknown", address);
		return -1;
	}
	return 0;
}

static int
msg_begin(void *arg, struct queue_entry *e, struct status *st)
{
	struct run *r = arg;

	if (r->open)
		abort();	/* a second message over an open one */
	if (r->flags & F_FAIL_BEGIN) {
		status_set(st, EX_TEMPFAIL, "4.3.1", "no space");
		return -1;
	}
	memcpy(e->id, "6AOB0tEOod1va3", QID_SIZE);
	r->begun++;
	r->open = 1;
	buf_puts(&r->messages, "BEGIN\n");
	return 0;
}

static int
msg_write(void *arg, const void *data, size_t len, struct status *st)
{
	struct run *r = arg;

	if (!r->open || len == 0)
		abort();
	if (r->flags & F_FAIL_WRITE) {
		status_set(st, EX_TEMPFAIL, "4.3.1", "no space");
		return -1;
	}
	buf_append(&r->messages, data, len);
	return 0;
}

static int
msg_commit(void *arg, struct queue_entry *e, struct status *st)
{
	struct run *r = arg;
	size_t i;

	if (!r->open)
		abort();
	r->open = 0;
	r->ended++;
	if (e->nrecipients == 0 || e->sender == NULL)
		abort();	/* DATA without MAIL and a good RCPT */
	if (r->flags & F_FAIL_COMMIT) {
		status_set(st, EX_TEMPFAIL, "4.3.0", "cannot write");
		return -1;
	}
	buf_printf(&r->messages, "\nCOMMIT <%s>", e->sender);
	for (i = 0; i < e->nrecipients; i++)
		buf_printf(&r->messages, " <%s>", e->recipients[i].address);
	buf_putc(&r->messages, '\n');
	/* The Received line has a date in it: only the client's part. */
	if (strncmp(e->headers.data, "Received: ", 10) != 0)
		abort();
	return 0;
}

static void
msg_abort(void *arg)
{
	struct run *r = arg;

	if (!r->open)
		abort();
	r->open = 0;
	r->ended++;
	buf_puts(&r->messages, "\nABORT\n");
}

/* Every reply line: three digits, ' ' or '-', text without CR or LF, CRLF. */
static void
check_replies(const char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		const char *crlf = memchr(p + i, '\r', len - i);
		size_t end;

		if (crlf == NULL)
			abort();
		end = (size_t)(crlf - p);
		if (end + 1 >= len || p[end + 1] != '\n' || end - i < 4 ||
		    p[i] < '2' || p[i] > '5' || p[i + 1] < '0' ||
		    p[i + 1] > '9' || p[i + 2] < '0' || p[i + 2] > '9' ||
		    (p[i + 3] != ' ' && p[i + 3] != '-') ||
		    memchr(p + i, '\n', end - i) != NULL ||
		    memchr(p + i, '\0', end - i) != NULL)
			abort();
		i = end + 2;
	}
}

static uint64_t
next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Feeds data in pieces (whole when seed is 0) as the daemon would: after
 * an accepted STARTTLS the rest of that read is dropped and TLS "starts". */
static void
run(struct run *r, unsigned flags, const char *data, size_t len,
    uint64_t seed)
{
	struct session *s = calloc(1, sizeof(*s));
	struct session_params p;
	struct session_ops ops;
	size_t off = 0;

	if (s == NULL)
		abort();
	memset(r, 0, sizeof(*r));
	r->flags = flags;
	buf_init(&r->replies);
	buf_init(&r->messages);
	memset(&p, 0, sizeof(p));
	p.hostname = "mx.test";
	p.client_ip = "192.0.2.1";
	p.client_name = flags & F_NAME ? "client.example" : NULL;
	p.max_message_size = flags & F_SMALL ? 300 : 1000000;
	p.max_recipients = 100;
	p.max_hops = flags & F_SMALL ? 2 : 25;
	p.max_line_length = flags & F_SMALL ? 40 : 1000;
	p.tls_available = (flags & F_TLS) != 0;
	p.discard = (flags & F_DISCARD) != 0;
	p.reject = flags & F_REJECT ? "550 5.7.1 Access denied" : NULL;
	memset(&ops, 0, sizeof(ops));
	ops.arg = r;
	ops.check_mail = check_address;
	ops.check_rcpt = check_address;
	ops.msg_begin = msg_begin;
	ops.msg_write = msg_write;
	ops.msg_commit = msg_commit;
	ops.msg_abort = msg_abort;
	session_init(s, &p, &ops);
	session_greet(s);
	while (off < len && s->state != SESSION_CLOSED) {
		size_t n = len - off, used;

		if (seed != 0) {
			uint64_t pick = next_random(&seed);

			/* Mostly small reads, now and then a big one. */
			n = pick % 8 == 0 ? (size_t)(pick >> 8) % 4096 + 1
					  : (size_t)(pick >> 8) % 16 + 1;
			if (n > len - off)
				n = len - off;
		}
		used = session_input(s, data + off, n);
		if (used > n)
			abort();
		if (s->want_tls) {
			if (used < n)
				r->tls_cuts++;
			session_tls_started(s);
		} else if (used < n && s->state != SESSION_CLOSED) {
			abort();	/* bytes left over for no reason */
		}
		off += n;
		buf_append(&r->replies, s->out.data, s->out.len);
		buf_reset(&s->out);
	}
	if (s->state == SESSION_CLOSED && session_input(s, "NOOP\r\n", 6) != 0)
		abort();
	session_eof(s);
	buf_append(&r->replies, s->out.data, s->out.len);
	check_replies(r->replies.data, r->replies.len);
	session_free(s);
	free(s);
	if (r->open || r->begun != r->ended)
		abort();	/* a message neither committed nor aborted */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole, pieces;
	uint64_t seed = 0xcbf29ce484222325ULL;
	size_t i;

	if (size < 1)
		return 0;
	for (i = 0; i < size; i++)
		seed = (seed ^ data[i]) * 0x100000001b3ULL;
	run(&whole, data[0], (const char *)data + 1, size - 1, 0);
	run(&pieces, data[0], (const char *)data + 1, size - 1, seed | 1);
	if (whole.tls_cuts == 0 && pieces.tls_cuts == 0 &&
	    (whole.replies.len != pieces.replies.len ||
	     memcmp(whole.replies.data, pieces.replies.data,
		    whole.replies.len) != 0 ||
	     whole.messages.len != pieces.messages.len ||
	     memcmp(whole.messages.data, pieces.messages.data,
		    whole.messages.len) != 0))
		abort();	/* the split changed the meaning */
	buf_free(&whole.replies);
	buf_free(&whole.messages);
	buf_free(&pieces.replies);
	buf_free(&pieces.messages);
	return 0;
}
