/*
 * remote: remote delivery with a connection cache.
 */
#include "remote.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "maps.h"
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

void
remote_close_all(void)
{
	size_t i;

	for (i = 0; i < CACHE_SIZE; i++)
		if (cache[i].conn != NULL) {
			client_close(cache[i].conn, 1);
			cache[i].conn = NULL;
		}
}

/* mailstats' C line: connections made. */
static void
count_connection(const struct config *cfg)
{
	struct stats delta;
	int fd = stats_open(cfg->statistics, 0);

	if (fd < 0)
		return;
	memset(&delta, 0, sizeof(delta));
	delta.conn_to = 1;
	stats_add(fd, &delta);
	close(fd);
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

/* One destination: the recipients members[] (indexes into idx/out). */
static void
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

	if (rc == NULL) {
		status_set(&st, EX_TEMPFAIL, "4.3.0", "out of memory");
		fail_all(out, members, m, &st);
		return;
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
				count_connection(cfg);
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
}

void
remote_deliver(struct config *cfg, const struct queue_entry *e, int body_fd,
	       const size_t *idx, size_t n, struct remote_outcome *out,
	       struct buf *transcript)
{
	struct map *mailertable = NULL;
	struct status st;
	size_t *members, i, k, m;
	char *done;

	members = calloc(n ? n : 1, sizeof(*members));
	done = calloc(n ? n : 1, 1);
	if (members == NULL || done == NULL) {
		free(members);
		free(done);
		status_set(&st, EX_TEMPFAIL, "4.3.0", "out of memory");
		for (i = 0; i < n; i++)
			set_outcome(&out[i], QUEUE_QUEUED, st.dsn, st.text,
				    NULL);
		return;
	}
	for (i = 0; i < n; i++)
		memset(&out[i], 0, sizeof(out[i]));
	/* A server that closes the connection while we write must give
	 * EPIPE, not kill the queue runner: OpenSSL writes with write(2) as
	 * well, so MSG_NOSIGNAL would not be enough. (deliver, run from
	 * here later, ignores SIGPIPE anyway.) */
	signal(SIGPIPE, SIG_IGN);
	if (cfg->local_only) {
		for (i = 0; i < n; i++)
			set_outcome(&out[i], QUEUE_BOUNCED, "5.3.2",
				    "remote delivery is turned off on this "
				    "host (local_only)", NULL);
		goto out;
	}
	mailertable = map_open(cfg->mailertable, MAP_TABLE, 0, &st);
	if (mailertable == NULL) {
		for (i = 0; i < n; i++)
			set_outcome(&out[i], QUEUE_QUEUED, "4.3.0", st.text,
				    NULL);
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *addr = e->recipients[idx[i]].address;
		const char *domain = strrchr(addr, '@');
		struct route rt;

		if (done[i])
			continue;
		domain = domain ? domain + 1 : "";
		/* Everyone of this message for the same domain. */
		m = 0;
		for (k = i; k < n; k++) {
			const char *a = e->recipients[idx[k]].address;
			const char *d = strrchr(a, '@');

			if (!done[k] && strcasecmp(d ? d + 1 : "", domain) ==
						0) {
				members[m++] = k;
				done[k] = 1;
			}
		}
		route_domain(cfg, mailertable, domain, &rt, &st);
		if (rt.kind == ROUTE_ERROR) {
			fail_all(out, members, m, &st);
		} else if (rt.kind == ROUTE_LOCAL) {
			for (k = 0; k < m; k++) {
				struct remote_outcome *o = &out[members[k]];
				const char *a =
					e->recipients[idx[members[k]]].address;
				const char *at = strrchr(a, '@');

				set_outcome(o, QUEUE_QUEUED, "", "", NULL);
				/* "local:" alone: the recipient's own local
				 * part, as sendmail has it. */
				if (rt.local_user[0] != '\0')
					snprintf(o->local_user,
						 sizeof(o->local_user), "%s",
						 rt.local_user);
				else
					snprintf(o->local_user,
						 sizeof(o->local_user), "%.*s",
						 (int)(at ? at - a
							  : (long)strlen(a)),
						 a);
			}
		} else {
			send_group(cfg, e, body_fd, &rt, idx, members, m, out,
				   transcript);
		}
	}
out:
	if (mailertable != NULL)
		map_close(mailertable);
	free(members);
	free(done);
}
