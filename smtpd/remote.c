/*
 * remote: remote delivery with a connection cache.
 */
#include "remote.h"

#include <signal.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "io.h"
#include "maps.h"
#include "privs.h"
#include "route.h"
#include "stats.h"
#include "status.h"

#define CACHE_SIZE 8

struct cached {
	char key[300];
	struct smtp_conn *conn;
	time_t used;
};

static struct cached cache[CACHE_SIZE];
static SSL_CTX *tls_client;
static int tls_tried;

static struct smtp_conn *
cache_take(const char *key)
{
	size_t i;

	for (i = 0; i < CACHE_SIZE; i++)
		if (cache[i].conn != NULL && strcmp(cache[i].key, key) == 0) {
			struct smtp_conn *c = cache[i].conn;

			cache[i].conn = NULL;
			return c;
		}
	return NULL;
}

static void
cache_put(const char *key, struct smtp_conn *c)
{
	size_t i, oldest = 0;

	for (i = 0; i < CACHE_SIZE; i++) {
		if (cache[i].conn == NULL) {
			oldest = i;
			break;
		}
		if (cache[i].used < cache[oldest].used)
			oldest = i;
	}
	if (cache[oldest].conn != NULL)
		client_close(cache[oldest].conn, 1);
	snprintf(cache[oldest].key, sizeof(cache[oldest].key), "%s", key);
	cache[oldest].conn = c;
	cache[oldest].used = time(NULL);
}

static void client_stop(void);

void
remote_close_all(void)
{
	size_t i;

	for (i = 0; i < CACHE_SIZE; i++)
		if (cache[i].conn != NULL) {
			client_close(cache[i].conn, 1);
			cache[i].conn = NULL;
		}
	client_stop();
}

static void
set_outcome(struct remote_outcome *o, enum queue_state state,
	    const char *dsn, const char *reply, const char *relay)
{
	o->state = state;
	snprintf(o->dsn, sizeof(o->dsn), "%s", dsn);
	snprintf(o->reply, sizeof(o->reply), "%s", reply);
	snprintf(o->relay, sizeof(o->relay), "%s", relay ? relay : "");
}

static void
fail_all(struct remote_outcome *out, const size_t *members, size_t m,
	 const struct status *st)
{
	size_t k;

	for (k = 0; k < m; k++)
		set_outcome(&out[members[k]],
			    status_is_temporary(st->exit_code) ? QUEUE_QUEUED
							       : QUEUE_BOUNCED,
			    st->dsn, st->text, NULL);
}

/* One destination: the recipients members[] (indexes into idx/out).
 * Returns the number of connections it opened. */
static unsigned
send_group(struct config *cfg, const struct queue_entry *e, int body_fd,
	   const struct route *rt, const size_t *idx, const size_t *members,
	   size_t m, struct remote_outcome *out, struct buf *transcript)
{
	struct client_rcpt *rc = calloc(m, sizeof(*rc));
	struct client_msg msg;
	struct smtp_conn *c;
	struct status st;
	char peer[320];
	size_t k;
	int reused;
	unsigned connections = 0;

	if (rc == NULL) {
		status_set(&st, EX_TEMPFAIL, "4.3.0", "out of memory");
		fail_all(out, members, m, &st);
		return 0;
	}
	if (!tls_tried) {
		tls_client = client_tls_context();
		tls_tried = 1;
	}
	for (k = 0; k < m; k++)
		rc[k].address = e->recipients[idx[members[k]]].address;
	memset(&msg, 0, sizeof(msg));
	msg.sender = e->sender ? e->sender : "";
	msg.headers = e->headers.data;
	msg.headers_len = e->headers.len;
	msg.body_fd = body_fd;
	msg.body_size = e->body_size;

	c = cfg->smtp_connection_reuse ? cache_take(rt->key) : NULL;
	reused = c != NULL;
	for (;;) {
		if (c == NULL) {
			c = client_connect(cfg, rt, tls_client, transcript, &st);
			if (c != NULL)
				connections++;
		}
		if (c == NULL) {
			fail_all(out, members, m, &st);
			break;
		}
		/* Kept: the log names the relay even when the connection
		 * broke (the message may have arrived there). */
		snprintf(peer, sizeof(peer), "%s", client_peer(c));
		if (client_send(c, &msg, rc, m, transcript) < 0) {
			client_close(c, 0);
			c = NULL;
			/* A cached connection the server had closed: once
			 * more on a fresh one, unless something was said. */
			if (reused) {
				int spoken = 0;

				for (k = 0; k < m; k++)
					spoken |= rc[k].code > 0;
				reused = 0;
				if (!spoken)
					continue;
			}
		}
		for (k = 0; k < m; k++) {
			struct remote_outcome *o = &out[members[k]];
			const char *relay = peer;

			if (rc[k].code >= 200 && rc[k].code < 300)
				set_outcome(o, QUEUE_SENT, rc[k].dsn,
					    rc[k].reply, relay);
			else if (rc[k].code >= 500)
				set_outcome(o, QUEUE_BOUNCED, rc[k].dsn,
					    rc[k].reply, relay);
			else
				set_outcome(o, QUEUE_QUEUED,
					    rc[k].dsn[0] ? rc[k].dsn : "4.0.0",
					    rc[k].reply, relay);
		}
		break;
	}
	if (c != NULL) {
		if (cfg->smtp_connection_reuse)
			cache_put(rt->key, c);
		else
			client_close(c, 1);
	}
	free(rc);
	return connections;
}

/* mailertable local:user: the runner delivers these itself. */
static void
local_route(const struct queue_entry *e, const size_t *idx,
	    const size_t *members, size_t m, const struct route *rt,
	    struct remote_outcome *out)
{
	size_t k;

	for (k = 0; k < m; k++) {
		struct remote_outcome *o = &out[members[k]];
		const char *a = e->recipients[idx[members[k]]].address;
		const char *at = strrchr(a, '@');

		set_outcome(o, QUEUE_QUEUED, "", "", NULL);
		/* "local:" alone: the recipient's own local part, as
		 * sendmail has it. */
		if (rt->local_user[0] != '\0')
			snprintf(o->local_user, sizeof(o->local_user), "%s",
				 rt->local_user);
		else
			snprintf(o->local_user, sizeof(o->local_user), "%.*s",
				 (int)(at ? at - a : (long)strlen(a)), a);
	}
}

/* The exchanges, in this process. */
static void
deliver_here(struct config *cfg, const struct queue_entry *e, int body_fd,
	     const size_t *idx, size_t n, struct remote_outcome *out,
	     struct buf *transcript, remote_done_fn done, void *arg)
{
	struct map *mailertable = NULL;
	struct status st;
	size_t *members, i, k, m;
	char *taken;

	members = xcalloc(n ? n : 1, sizeof(*members));
	taken = xcalloc(n ? n : 1, 1);
	for (i = 0; i < n; i++)
		memset(&out[i], 0, sizeof(out[i]));
	/* A server that closes the connection while we write must give
	 * EPIPE, not kill the queue runner: OpenSSL writes with write(2) as
	 * well, so MSG_NOSIGNAL would not be enough. (deliver, run from
	 * here later, ignores SIGPIPE anyway.) */
	signal(SIGPIPE, SIG_IGN);
	if (!cfg->local_only) {
		mailertable = map_open(cfg->mailertable, MAP_TABLE, 0, &st);
		if (mailertable == NULL)
			for (i = 0; i < n; i++)
				set_outcome(&out[i], QUEUE_QUEUED, "4.3.0",
					    st.text, NULL);
	}
	for (i = 0; i < n; i++) {
		const char *addr = e->recipients[idx[i]].address;
		const char *domain = strrchr(addr, '@');
		unsigned connections = 0;
		struct route rt;

		if (taken[i])
			continue;
		domain = domain ? domain + 1 : "";
		/* Everyone of this message for the same domain. */
		m = 0;
		for (k = i; k < n; k++) {
			const char *a = e->recipients[idx[k]].address;
			const char *d = strrchr(a, '@');

			if (!taken[k] && strcasecmp(d ? d + 1 : "", domain) ==
						 0) {
				members[m++] = k;
				taken[k] = 1;
			}
		}
		if (cfg->local_only) {
			for (k = 0; k < m; k++)
				set_outcome(&out[members[k]], QUEUE_BOUNCED,
					    "5.3.2",
					    "remote delivery is turned off on "
					    "this host (local_only)", NULL);
		} else if (mailertable == NULL) {
			/* deferred above */
		} else {
			route_domain(cfg, mailertable, domain, &rt, &st);
			if (rt.kind == ROUTE_ERROR)
				fail_all(out, members, m, &st);
			else if (rt.kind == ROUTE_LOCAL)
				local_route(e, idx, members, m, &rt, out);
			else
				connections = send_group(cfg, e, body_fd, &rt,
							 idx, members, m, out,
							 transcript);
		}
		if (done != NULL)
			done(arg, members, m, connections);
	}
	if (mailertable != NULL)
		map_close(mailertable);
	free(members);
	free(taken);
}

/* --- the client process ------------------------------------------------ */

/* Requests: struct request, then the qf text and the positions, with the
 * df passed along (SCM_RIGHTS). Answers: frames of struct frame, each
 * followed by its payload: an outcome, transcript text, a destination's
 * end, the request's end. */
struct request {
	char id[QID_SIZE];
	uint32_t text_len;
	uint32_t n;
};

enum frame_type { F_OUTCOME = 'o', F_TEXT = 't', F_GROUP = 'g', F_END = 'e' };

struct frame {
	uint32_t type;
	uint32_t value;		/* F_OUTCOME: position; F_GROUP: connections */
	uint32_t len;		/* payload bytes */
};

static pid_t client_pid = -1;
static int client_sock = -1;

static int
send_frame(int fd, uint32_t type, uint32_t value, const void *data,
	   size_t len)
{
	struct frame f = { type, value, (uint32_t)len };

	if (io_write_all(fd, &f, sizeof(f)) < 0)
		return -1;
	return len > 0 ? io_write_all(fd, data, len) : 0;
}

struct child_ctx {
	int sock;
	const struct remote_outcome *out;
	struct buf *transcript;
	size_t sent_text;
};

static void
child_done(void *arg, const size_t *members, size_t m, unsigned connections)
{
	struct child_ctx *c = arg;
	size_t k;

	for (k = 0; k < m; k++)
		send_frame(c->sock, F_OUTCOME, (uint32_t)members[k],
			   &c->out[members[k]], sizeof(c->out[0]));
	if (c->transcript->len > c->sent_text) {
		send_frame(c->sock, F_TEXT, 0,
			   c->transcript->data + c->sent_text,
			   c->transcript->len - c->sent_text);
		c->sent_text = c->transcript->len;
	}
	send_frame(c->sock, F_GROUP, connections, NULL, 0);
}

/* Receives a request; the df's descriptor in *fd. */
static int
receive_request(int sock, struct request *rq, int *fd)
{
	ssize_t r = io_recv_fd(sock, rq, sizeof(*rq), fd);

	if (r <= 0 || *fd < 0) {
		if (*fd >= 0)
			close(*fd);
		return -1;
	}
	if ((size_t)r < sizeof(*rq) &&
	    io_read_all(sock, (char *)rq + r, sizeof(*rq) - (size_t)r) < 0) {
		close(*fd);
		return -1;
	}
	return 0;
}

static void
child_serve(struct config *cfg, int sock)
{
	for (;;) {
		struct request rq;
		struct queue_entry e;
		struct remote_outcome *out;
		struct buf text, transcript;
		struct child_ctx ctx;
		struct status st;
		size_t *idx, i;
		uint64_t *wire;
		int fd;

		if (receive_request(sock, &rq, &fd) < 0)
			break;
		buf_init(&text);
		buf_reserve(&text, rq.text_len);
		wire = xcalloc(rq.n ? rq.n : 1, sizeof(*wire));
		idx = xcalloc(rq.n ? rq.n : 1, sizeof(*idx));
		out = xcalloc(rq.n ? rq.n : 1, sizeof(*out));
		if (io_read_all(sock, text.data, rq.text_len) < 0 ||
		    io_read_all(sock, wire, rq.n * sizeof(*wire)) < 0)
			break;
		text.len = rq.text_len;
		text.data[text.len] = '\0';
		for (i = 0; i < rq.n; i++)
			idx[i] = (size_t)wire[i];
		buf_init(&transcript);
		if (queue_parse(text.data, text.len, &e, &st) == 0) {
			for (i = 0; i < rq.n; i++)
				if (idx[i] >= e.nrecipients)
					idx[i] = 0;	/* never trusted blindly */
			memcpy(e.id, rq.id, QID_SIZE);
			e.id[QID_LEN] = '\0';
			ctx.sock = sock;
			ctx.out = out;
			ctx.transcript = &transcript;
			ctx.sent_text = 0;
			if (e.nrecipients > 0)
				deliver_here(cfg, &e, fd, idx, rq.n, out,
					     &transcript, child_done, &ctx);
		}
		queue_entry_free(&e);
		send_frame(sock, F_END, 0, NULL, 0);
		close(fd);
		buf_free(&text);
		buf_free(&transcript);
		free(wire);
		free(idx);
		free(out);
	}
	remote_close_all();
}

/* Starts the client process as smtpd_user (group submit_group). */
static int
client_start(struct config *cfg, struct status *st)
{
	struct passwd *pw = getpwnam(cfg->smtpd_user);
	struct group *gr = getgrnam(cfg->submit_group);
	int sv[2];
	pid_t pid;

	if (pw == NULL || pw->pw_uid == 0)
		return status_set(st, EX_TEMPFAIL, "4.3.5",
				  "smtpd_user %s: no such unprivileged user, "
				  "so no SMTP client", cfg->smtpd_user);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return status_errno(st, errno, "socketpair");
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return status_errno(st, errno, "fork");
	}
	if (pid == 0) {
		/* Nothing of the runner's: no queue locks, no log. */
		if (dup2(sv[1], 3) < 0)
			_exit(EX_OSERR);
		close_range(4, ~0U, 0);
		if (privs_become(pw->pw_uid, gr ? gr->gr_gid : pw->pw_gid,
				 (gid_t)-1, st) < 0)
			_exit(EX_OSERR);
		signal(SIGTERM, SIG_DFL);
		child_serve(cfg, 3);
		_exit(0);
	}
	close(sv[1]);
	client_sock = sv[0];
	client_pid = pid;
	return 0;
}

static void
client_stop(void)
{
	if (client_sock >= 0)
		close(client_sock);
	client_sock = -1;
	if (client_pid > 0)
		while (waitpid(client_pid, NULL, 0) < 0 && errno == EINTR)
			;
	client_pid = -1;
}

static int
send_request(const struct queue_entry *e, int body_fd, const size_t *idx,
	     size_t n)
{
	struct request rq;
	struct buf text;
	uint64_t *wire = xcalloc(n ? n : 1, sizeof(*wire));
	size_t i;
	int rc = -1;

	buf_init(&text);
	queue_format(e, &text);
	memset(&rq, 0, sizeof(rq));
	memcpy(rq.id, e->id, QID_SIZE);
	rq.text_len = (uint32_t)text.len;
	rq.n = (uint32_t)n;
	for (i = 0; i < n; i++)
		wire[i] = idx[i];
	if (io_send_fd(client_sock, &rq, sizeof(rq), body_fd, MSG_NOSIGNAL) ==
		    0 &&
	    io_write_all(client_sock, text.data, text.len) == 0 &&
	    io_write_all(client_sock, wire, n * sizeof(*wire)) == 0)
		rc = 0;
	buf_free(&text);
	free(wire);
	return rc;
}

/* Through the client process; -1 when it broke (the positions not yet
 * answered are deferred and reported). */
static void
deliver_there(struct config *cfg, const struct queue_entry *e, int body_fd,
	      const size_t *idx, size_t n, struct remote_outcome *out,
	      struct buf *transcript, remote_done_fn done, void *arg)
{
	size_t *members = xcalloc(n ? n : 1, sizeof(*members));
	char *answered = xcalloc(n ? n : 1, 1);
	size_t m = 0, i;
	struct status st;
	int broken = 0;

	status_set(&st, EX_TEMPFAIL, "4.3.0",
		   "the SMTP client process ended unexpectedly");
	if (client_sock < 0 && client_start(cfg, &st) < 0)
		broken = 1;
	if (!broken && send_request(e, body_fd, idx, n) < 0)
		broken = 1;
	while (!broken) {
		struct frame f;

		if (io_read_all(client_sock, &f, sizeof(f)) < 0) {
			broken = 1;
			break;
		}
		if (f.type == F_END)
			break;
		if (f.type == F_OUTCOME && f.value < n &&
		    f.len == sizeof(out[0])) {
			if (io_read_all(client_sock, &out[f.value],
				      sizeof(out[0])) < 0) {
				broken = 1;
				break;
			}
			/* From a less trusted process: strings ended. */
			out[f.value].dsn[sizeof(out[0].dsn) - 1] = '\0';
			out[f.value].reply[sizeof(out[0].reply) - 1] = '\0';
			out[f.value].relay[sizeof(out[0].relay) - 1] = '\0';
			out[f.value].local_user[sizeof(out[0].local_user) -
						1] = '\0';
			if (out[f.value].state != QUEUE_SENT &&
			    out[f.value].state != QUEUE_BOUNCED)
				out[f.value].state = QUEUE_QUEUED;
			if (!answered[f.value]) {
				answered[f.value] = 1;
				members[m++] = f.value;
			}
		} else if (f.type == F_TEXT && f.len <= 1 << 20) {
			size_t old = transcript->len;

			buf_reserve(transcript, f.len);
			if (io_read_all(client_sock, transcript->data + old,
				      f.len) < 0) {
				broken = 1;
				break;
			}
			transcript->len = old + f.len;
			transcript->data[transcript->len] = '\0';
		} else if (f.type == F_GROUP) {
			if (done != NULL && m > 0)
				done(arg, members, m, f.value);
			m = 0;
		} else {
			broken = 1;
		}
	}
	if (broken) {
		/* What the process did not answer is deferred. */
		m = 0;
		for (i = 0; i < n; i++)
			if (!answered[i]) {
				set_outcome(&out[i], QUEUE_QUEUED, st.dsn,
					    st.text, NULL);
				members[m++] = i;
			}
		if (done != NULL && m > 0)
			done(arg, members, m, 0);
		if (client_pid > 0)
			kill(client_pid, SIGTERM);
		client_stop();
	}
	free(members);
	free(answered);
}

void
remote_deliver(struct config *cfg, const struct queue_entry *e, int body_fd,
	       const size_t *idx, size_t n, struct remote_outcome *out,
	       struct buf *transcript, remote_done_fn done, void *arg)
{
	if (geteuid() == 0)
		deliver_there(cfg, e, body_fd, idx, n, out, transcript, done,
			      arg);
	else
		deliver_here(cfg, e, body_fd, idx, n, out, transcript, done,
			     arg);
}
