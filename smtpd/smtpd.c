/*
 * smtpd: the SMTP server.
 *   smtpd [-C conf] [-F] [-q interval]    a daemon on the listen addresses
 *   smtpd [-C conf] -i                    one session on stdin/stdout
 *
 * The master binds its sockets as root, loads the TLS key, opens the log and
 * the statistics file, and then only accepts: each connection gets its own
 * process, which becomes smtpd_user (group submit_group, to write the
 * queue) before it reads a byte, so that a crashing or hostile session
 * takes nothing else down. SIGTERM: stop accepting, let sessions finish
 * the message they are in, then stop; SIGHUP: read mail.conf and the TLS
 * key again (tables are read by every session anyway). With -q the master
 * also starts the queue runner daemon (sendmail -qINTERVAL) as root.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "config.h"
#include "io.h"
#include "maillog.h"
#include "policy.h"
#include "privs.h"
#include "queue.h"
#include "runner.h"
#include "session.h"
#include "stats.h"
#include "status.h"

#define MAX_LISTEN 16
/* A session process serves up to smtpd_max_use connections, one at a
 * time, and waits at most IDLE_SECONDS for the next (Postfix's max_use
 * and max_idle): a connection then costs no fork. */
#define IDLE_SECONDS 60

struct child {
	pid_t pid;
	char ip[INET6_ADDRSTRLEN];	/* "" while idle */
	int ctl;			/* socket to it; -1: it is ending */
	int busy;
	unsigned gen;			/* configuration it was started with */
	time_t idle_since;
};

/* A connection handed to a session process. */
struct handoff {
	struct sockaddr_storage ss;
	socklen_t len;
	char ip[INET6_ADDRSTRLEN];
};

static volatile sig_atomic_t got_term, got_hup, got_chld;
static const char *config_path;
static struct config cfg;
static SSL_CTX *tls_ctx;
static int stats_fd = -1;

static void
on_signal(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: smtpd [-C conf] [-F] [-q interval]\n"
			"       smtpd [-C conf] -i\n");
	exit(EX_USAGE);
}

/* --- TLS --------------------------------------------------------------- */

static SSL_CTX *
tls_load(const struct config *c, struct status *st)
{
	SSL_CTX *ctx;

	if (c->smtp_cert[0] == '\0' || c->smtp_key[0] == '\0')
		return NULL;
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		status_set(st, EX_SOFTWARE, NULL, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, c->smtp_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, c->smtp_key, SSL_FILETYPE_PEM) !=
		    1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		char err[256];

		ERR_error_string_n(ERR_get_error(), err, sizeof(err));
		status_set(st, EX_CONFIG, NULL, "%s, %s: %s", c->smtp_cert,
			   c->smtp_key, err);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* --- the connection's I/O ------------------------------------------------ */

struct io {
	int in, out;
	SSL *ssl;
};

static int
io_write(struct io *io, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;

		if (io->ssl != NULL) {
			int r = SSL_write(io->ssl, p, (int)(n > 65536 ? 65536
								  : n));

			if (r <= 0)
				return -1;
			w = r;
		} else {
			w = write(io->out, p, n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* 1 data, 0 timeout, -1 error or end. */
static int
io_wait(struct io *io, unsigned seconds)
{
	struct pollfd pfd = { io->in, POLLIN, 0 };
	int r;

	if (io->ssl != NULL && SSL_pending(io->ssl) > 0)
		return 1;
	do {
		r = poll(&pfd, 1, (int)(seconds * 1000));
	} while (r < 0 && errno == EINTR && !got_term);
	return r;
}

static ssize_t
io_read(struct io *io, char *buf, size_t size)
{
	if (io->ssl != NULL) {
		int r = SSL_read(io->ssl, buf, (int)size);

		return r > 0 ? r : -1;
	}
	for (;;) {
		ssize_t r = read(io->in, buf, size);

		if (r < 0 && errno == EINTR)
			continue;
		return r;
	}
}

/* --- a session's process -------------------------------------------------- */

struct store {
	struct config *cfg;
	struct policy *policy;
	struct queue_draft *draft;
};

static int
st_check_mail(void *arg, struct session *s, const char *address,
	      struct buf *reply)
{
	struct store *k = arg;
	int rc = policy_sender(k->policy, address, reply);

	s->p.discard = k->policy->discard || k->policy->discard_sender;
	if (rc != 0 && stats_fd >= 0)
		stats_count_rejected(stats_fd, STATS_ESMTP);
	return rc;
}

static int
st_check_rcpt(void *arg, struct session *s, const char *address,
	      struct buf *reply)
{
	struct store *k = arg;
	int rc = policy_recipient(k->policy, address, reply);

	(void)s;
	if (rc != 0 && reply->data[0] == '5' && stats_fd >= 0)
		stats_count_rejected(stats_fd, STATS_ESMTP);
	return rc;
}

static int
st_begin(void *arg, struct queue_entry *e, struct status *st)
{
	struct store *k = arg;

	return queue_begin(k->cfg->queue_dir, e, &k->draft, st);
}

static int
st_write(void *arg, const void *data, size_t len, struct status *st)
{
	struct store *k = arg;

	return queue_write(k->draft, data, len, st);
}

static int
st_commit(void *arg, struct queue_entry *e, struct status *st)
{
	struct store *k = arg;
	struct queue_draft *d = k->draft;

	k->draft = NULL;
	return queue_commit(d, e, st);
}

static void
st_abort(void *arg)
{
	struct store *k = arg;

	if (k->draft != NULL)
		queue_abort(k->draft);
	k->draft = NULL;
}

static void
st_accepted(void *arg, const struct queue_entry *e)
{
	struct store *k = arg;

	if (stats_fd >= 0)
		stats_count_from(stats_fd, STATS_ESMTP,
				 (long long)(e->headers.len + 1 +
					     e->body_size));
	runner_trigger(k->cfg);
}

static void
st_discarded(void *arg, const struct queue_entry *e)
{
	struct stats delta;

	(void)arg;
	(void)e;
	if (stats_fd < 0)
		return;
	memset(&delta, 0, sizeof(delta));
	delta.mailer[STATS_ESMTP].msgsdis = 1;
	stats_add(stats_fd, &delta);
}

/* The client's verified name: its PTR, when that name has the address. */
static char *
verified_name(const struct sockaddr *sa, socklen_t len, const char *ip)
{
	char host[NI_MAXHOST];
	struct addrinfo hints, *res, *ai;
	char *found = NULL;

	if (getnameinfo(sa, len, host, sizeof(host), NULL, 0, NI_NAMEREQD) !=
	    0)
		return NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = sa->sa_family;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return NULL;
	for (ai = res; ai != NULL && found == NULL; ai = ai->ai_next) {
		char other[INET6_ADDRSTRLEN];

		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, other,
				sizeof(other), NULL, 0, NI_NUMERICHOST) == 0 &&
		    strcmp(other, ip) == 0)
			found = xstrdup(host);
	}
	freeaddrinfo(res);
	return found;
}

/* smtpd_user and submit_group as numbers, looked up by the master at
 * start and on SIGHUP, not by every session. */
static uid_t session_uid;
static gid_t session_gid;
static int session_ids;

static void
resolve_session_ids(void)
{
	struct passwd *pw = getpwnam(cfg.smtpd_user);
	struct group *gr = getgrnam(cfg.submit_group);

	session_ids = pw != NULL && pw->pw_uid != 0;
	if (!session_ids) {
		maillog("smtpd_user %s: no such unprivileged user",
			cfg.smtpd_user);
		return;
	}
	session_uid = pw->pw_uid;
	session_gid = gr ? gr->gr_gid : pw->pw_gid;
}

/* The session as smtpd_user, group submit_group. */
static int
become_session_user(struct status *st)
{
	if (geteuid() != 0)
		return 0;
	if (!session_ids)
		return status_set(st, EX_CONFIG, "4.3.5",
				  "smtpd_user %s: no such unprivileged user",
				  cfg.smtpd_user);
	return privs_become(session_uid, session_gid, (gid_t)-1, st);
}

static void
run_session(int in, int out, const struct sockaddr *sa, socklen_t salen,
	    const char *ip)
{
	struct session s;
	struct session_params p;
	struct session_ops ops;
	struct policy policy;
	struct store store;
	struct status st;
	struct buf refusal;
	struct io io = { in, out, NULL };
	char data[16384];
	char *name = NULL;
	int table_error = 0;
	struct timeval tv;

	signal(SIGTERM, on_signal);
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	if (become_session_user(&st) < 0) {
		maillog("%s", st.text);
		(void)!write(out, "421 4.3.5 Service not available\r\n", 33);
		return;
	}
	/* A send that blocks forever would hold the session forever. */
	tv.tv_sec = (time_t)cfg.data_timeout;
	tv.tv_usec = 0;
	setsockopt(out, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(in, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	if (sa != NULL)
		name = verified_name(sa, salen, ip);
	maillog("connect from %s [%s]", name ? name : "unknown", ip);
	buf_init(&refusal);
	if (policy_open(&policy, &cfg, &st) < 0) {
		maillog("cannot read the tables: %s", st.text);
		table_error = 1;
		buf_puts(&refusal, "421 4.3.0 Temporary table failure");
	} else if (policy_client(&policy, ip, name, &refusal) != 0 &&
		   stats_fd >= 0) {
		struct stats delta;

		memset(&delta, 0, sizeof(delta));
		delta.conn_rej = 1;
		stats_add(stats_fd, &delta);
	}

	memset(&p, 0, sizeof(p));
	p.hostname = config_hostname(&cfg);
	p.client_ip = ip;
	p.client_name = name;
	p.max_message_size = cfg.max_message_size;
	p.max_recipients = cfg.max_recipients;
	p.max_hops = cfg.max_hops;
	p.max_line_length = cfg.max_line_length;
	p.tls_available = tls_ctx != NULL;
	p.discard = !table_error && policy.discard;
	p.reject = refusal.len > 0 ? refusal.data : NULL;
	store.cfg = &cfg;
	store.policy = &policy;
	store.draft = NULL;
	memset(&ops, 0, sizeof(ops));
	ops.arg = &store;
	ops.check_mail = st_check_mail;
	ops.check_rcpt = st_check_rcpt;
	ops.msg_begin = st_begin;
	ops.msg_write = st_write;
	ops.msg_commit = st_commit;
	ops.msg_abort = st_abort;
	ops.accepted = st_accepted;
	ops.discarded = st_discarded;
	session_init(&s, &p, &ops);
	session_greet(&s);

	while (s.state != SESSION_CLOSED) {
		ssize_t n;
		int r;

		if (s.out.len > 0) {
			if (io_write(&io, s.out.data, s.out.len) < 0) {
				session_eof(&s);
				break;
			}
			buf_reset(&s.out);
		}
		if (s.want_tls) {
			io.ssl = SSL_new(tls_ctx);
			if (io.ssl == NULL || !SSL_set_rfd(io.ssl, in) ||
			    !SSL_set_wfd(io.ssl, out) ||
			    SSL_accept(io.ssl) != 1) {
				maillog("STARTTLS from %s [%s] failed",
					name ? name : "unknown", ip);
				session_eof(&s);
				break;
			}
			session_tls_started(&s);
			maillog("STARTTLS from %s [%s]: %s, %s",
				name ? name : "unknown", ip,
				SSL_get_version(io.ssl),
				SSL_get_cipher_name(io.ssl));
			continue;
		}
		if (got_term && s.state != SESSION_DATA) {
			session_shutdown(&s);
			continue;
		}
		r = io_wait(&io, s.state == SESSION_DATA ? cfg.data_timeout
							 : cfg.command_timeout);
		/* SIGTERM woke us: the top of the loop says 421, unless a
		 * message is coming in, which may finish first. */
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			session_timeout(&s);
			continue;
		}
		if (r < 0) {
			session_eof(&s);
			break;
		}
		n = io_read(&io, data, sizeof(data));
		if (n <= 0) {
			session_eof(&s);
			break;
		}
		/* Whatever follows an accepted STARTTLS in the same read
		 * was sent in the clear: session_input leaves it unused,
		 * and it is dropped here (CVE-2011-0411). */
		session_input(&s, data, (size_t)n);
	}
	if (s.out.len > 0)
		(void)io_write(&io, s.out.data, s.out.len);
	maillog("disconnect from %s [%s], %u message%s", name ? name : "unknown",
		ip, s.messages, s.messages == 1 ? "" : "s");
	if (io.ssl != NULL) {
		SSL_shutdown(io.ssl);
		SSL_free(io.ssl);
	}
	session_free(&s);
	if (!table_error)
		policy_close(&policy);
	buf_free(&refusal);
	free(name);
}

/* The next connection from the master: its descriptor, or -1 when the
 * master is done with this process (EOF) or it is told to stop. */
static int
receive_connection(int ctl, struct handoff *h)
{
	int fd;

	if (io_recv_fd(ctl, h, sizeof(*h), &fd) != (ssize_t)sizeof(*h)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	h->ip[sizeof(h->ip) - 1] = '\0';
	if (h->len > sizeof(h->ss))
		h->len = sizeof(h->ss);
	return fd;
}

static int
hand_over(int ctl, int fd, const struct handoff *h)
{
	return io_send_fd(ctl, h, sizeof(*h), fd, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* A session process: sessions one after another, each handed over by the
 * master, until it has served smtpd_max_use or the master lets it go. */
static void
session_worker(int ctl, int fd, struct handoff *h)
{
	unsigned used = 0;

	for (;;) {
		run_session(fd, fd, (struct sockaddr *)&h->ss, h->len, h->ip);
		close(fd);
		if (got_term || ++used >= cfg.smtpd_max_use)
			break;
		if (write(ctl, "i", 1) != 1)
			break;
		fd = receive_connection(ctl, h);
		if (fd < 0 || got_term)
			break;
	}
}

/* --- the master ---------------------------------------------------------- */

static int
parse_listen(const char *item, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon, *port;
	struct addrinfo hints, *res;
	int rc;

	if (item[0] == '[') {
		const char *end = strchr(item, ']');

		if (end == NULL || end[1] != ':')
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(end - item - 1),
			 item + 1);
		port = end + 2;
	} else {
		colon = strrchr(item, ':');
		if (colon == NULL)
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - item), item);
		port = colon + 1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints,
			 &res);
	if (rc != 0)
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int
open_listeners(int *fds, size_t *n, struct status *st)
{
	size_t i;

	*n = 0;
	for (i = 0; i < cfg.listen.count && *n < MAX_LISTEN; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		int fd, on = 1;

		if (parse_listen(cfg.listen.items[i], &ss, &len) < 0)
			return status_set(st, EX_CONFIG, NULL,
					  "listen: bad address %s",
					  cfg.listen.items[i]);
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC |
						  SOCK_NONBLOCK, 0);
		if (fd < 0)
			return status_errno(st, errno, "socket");
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on,
				   sizeof(on));
		if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
		    listen(fd, 256) < 0) {
			status_errno(st, errno, "listen on %s",
				     cfg.listen.items[i]);
			close(fd);
			return -1;
		}
		fds[(*n)++] = fd;
	}
	return 0;
}

/* The client's numeric address; "::ffff:1.2.3.4" (a dual-stack socket)
 * is 1.2.3.4, so that IPv4 access keys apply. */
static void
client_address(const struct sockaddr *sa, socklen_t len, char *ip, size_t size)
{
	if (getnameinfo(sa, len, ip, size, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(ip, size, "unknown");
	if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.') != NULL)
		memmove(ip, ip + 7, strlen(ip + 7) + 1);
}

static void
count_connection(int rejected)
{
	struct stats delta;

	if (stats_fd < 0)
		return;
	memset(&delta, 0, sizeof(delta));
	delta.conn_from = 1;
	delta.conn_rej = rejected;
	stats_add(stats_fd, &delta);
}

static void
refuse(int fd, const char *why, const char *ip)
{
	char line[256];
	int n;

	n = snprintf(line, sizeof(line), "421 4.7.0 %s %s\r\n",
		     config_hostname(&cfg), why);
	(void)!write(fd, line, (size_t)n);
	maillog("refused connection from [%s]: %s", ip, why);
	count_connection(1);
}

static void
reload(void)
{
	struct config fresh;
	struct status st;
	SSL_CTX *ctx;

	if (config_load(&fresh, config_path, config_path != NULL, &st) < 0) {
		maillog("reload: %s: keeping the old configuration", st.text);
		return;
	}
	ctx = tls_load(&fresh, &st);
	if (ctx == NULL && fresh.smtp_cert[0] != '\0') {
		maillog("reload: %s: keeping the old configuration", st.text);
		config_free(&fresh);
		return;
	}
	config_free(&cfg);
	cfg = fresh;
	if (tls_ctx != NULL)
		SSL_CTX_free(tls_ctx);
	tls_ctx = ctx;
	if (stats_fd >= 0)
		close(stats_fd);
	stats_fd = stats_open(cfg.statistics, 0);
	resolve_session_ids();
	maillog("configuration reloaded");
}

static pid_t
start_runner(unsigned interval)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct runner r;

		memset(&r, 0, sizeof(r));
		r.cfg = &cfg;
		r.config_path = config_path;
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_IGN);
		signal(SIGCHLD, SIG_DFL);
		_exit(runner_daemon(&r, interval) == 0 ? 0 : 1);
	}
	return pid;
}

static void
let_go(struct child *k)
{
	if (k->ctl >= 0)
		close(k->ctl);
	k->ctl = -1;
}

static int
serve(int *fds, size_t nfds, unsigned interval)
{
	struct child *kids;
	struct pollfd *pfd;
	size_t nkids = 0, room = 2 * (size_t)cfg.max_sessions + 1, i;
	struct sigaction sa;
	pid_t runner = -1;
	unsigned gen = 0;

	kids = xcalloc(room, sizeof(*kids));
	pfd = xcalloc(room + MAX_LISTEN, sizeof(*pfd));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (interval > 0)
		runner = start_runner(interval);
	maillog("starting daemon, %zu listening socket%s", nfds,
		nfds == 1 ? "" : "s");

	while (!got_term) {
		size_t npfd, busy = 0;
		time_t now = time(NULL);
		pid_t pid;
		int status;

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid == runner) {
				/* The queue runner must not just go away. */
				maillog("queue runner daemon (pid %ld) ended "
					"with status %d: starting it again",
					(long)pid, status);
				runner = got_term ? -1 : start_runner(interval);
				continue;
			}
			for (i = 0; i < nkids; i++)
				if (kids[i].pid == pid) {
					let_go(&kids[i]);
					kids[i] = kids[--nkids];
					break;
				}
			if (WIFSIGNALED(status))
				maillog("session process %ld died of signal "
					"%d", (long)pid, WTERMSIG(status));
		}
		if (got_hup) {
			got_hup = 0;
			reload();
			/* Session processes of the old configuration end. */
			gen++;
			for (i = 0; i < nkids; i++)
				if (!kids[i].busy)
					let_go(&kids[i]);
			if (2 * (size_t)cfg.max_sessions + 1 > room) {
				room = 2 * (size_t)cfg.max_sessions + 1;
				kids = xrealloc(kids, room * sizeof(*kids));
				pfd = xrealloc(pfd, (room + MAX_LISTEN) *
							    sizeof(*pfd));
			}
		}
		for (i = 0; i < nkids; i++) {
			if (kids[i].busy)
				busy++;
			else if (kids[i].ctl >= 0 &&
				 now - kids[i].idle_since > IDLE_SECONDS)
				let_go(&kids[i]);
		}
		for (npfd = 0; npfd < nfds; npfd++) {
			pfd[npfd].fd = fds[npfd];
			pfd[npfd].events = POLLIN;
			pfd[npfd].revents = 0;
		}
		for (i = 0; i < nkids; i++) {
			pfd[npfd].fd = kids[i].ctl;	/* -1: ignored */
			pfd[npfd].events = POLLIN;
			pfd[npfd].revents = 0;
			npfd++;
		}
		if (poll(pfd, npfd, 1000) <= 0)
			continue;
		/* Session processes that became idle. */
		for (i = 0; i < nkids; i++) {
			struct child *k = &kids[i];
			char c;

			if (k->ctl < 0 || !(pfd[nfds + i].revents &
					    (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (read(k->ctl, &c, 1) != 1) {
				let_go(k);
				continue;
			}
			k->busy = 0;
			k->ip[0] = '\0';
			k->idle_since = now;
			if (k->gen != gen)
				let_go(k);
			busy--;
		}
		for (i = 0; i < nfds; i++) {
			struct handoff h;
			size_t same = 0, k, idle = nkids;
			int fd;
			int sv[2];

			if (!(pfd[i].revents & POLLIN))
				continue;
			memset(&h, 0, sizeof(h));
			h.len = sizeof(h.ss);
			fd = accept4(fds[i], (struct sockaddr *)&h.ss, &h.len,
				     SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			client_address((struct sockaddr *)&h.ss, h.len, h.ip,
				       sizeof(h.ip));
			for (k = 0; k < nkids; k++)
				same += kids[k].busy &&
					strcmp(kids[k].ip, h.ip) == 0;
			if (busy >= cfg.max_sessions) {
				refuse(fd, "Too many sessions, try again later",
				       h.ip);
				close(fd);
				continue;
			}
			if (same >= cfg.max_sessions_per_client) {
				refuse(fd, "Too many sessions from your address, "
					   "try again later", h.ip);
				close(fd);
				continue;
			}
			/* An idle session process of this configuration. */
			for (k = 0; k < nkids && idle == nkids; k++)
				if (!kids[k].busy && kids[k].ctl >= 0 &&
				    kids[k].gen == gen)
					idle = k;
			if (idle < nkids && hand_over(kids[idle].ctl, fd, &h) ==
						    0) {
				kids[idle].busy = 1;
				snprintf(kids[idle].ip, sizeof(kids[idle].ip),
					 "%s", h.ip);
				busy++;
				count_connection(0);
				close(fd);
				continue;
			}
			if (idle < nkids)
				let_go(&kids[idle]);
			if (nkids >= room ||
			    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC,
				       0, sv) < 0) {
				refuse(fd, "Out of processes, try again later",
				       h.ip);
				close(fd);
				continue;
			}
			pid = fork();
			if (pid == 0) {
				size_t j;

				for (j = 0; j < nfds; j++)
					close(fds[j]);
				for (j = 0; j < nkids; j++)
					if (kids[j].ctl >= 0)
						close(kids[j].ctl);
				close(sv[0]);
				free(kids);
				free(pfd);
				session_worker(sv[1], fd, &h);
				maillog_close();
				_exit(0);
			}
			close(sv[1]);
			if (pid > 0) {
				memset(&kids[nkids], 0, sizeof(kids[nkids]));
				kids[nkids].pid = pid;
				snprintf(kids[nkids].ip, sizeof(kids[nkids].ip),
					 "%s", h.ip);
				kids[nkids].ctl = sv[0];
				kids[nkids].busy = 1;
				kids[nkids].gen = gen;
				nkids++;
				busy++;
				count_connection(0);
			} else {
				close(sv[0]);
				refuse(fd, "Out of processes, try again later",
				       h.ip);
			}
			close(fd);
		}
	}

	/* Stop: no new sessions; those in progress finish their message. */
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	for (i = 0; i < nkids; i++) {
		kill(kids[i].pid, SIGTERM);
		let_go(&kids[i]);
	}
	if (runner > 0)
		kill(runner, SIGTERM);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	maillog("daemon stopped");
	free(kids);
	free(pfd);
	return EX_OK;
}

int
main(int argc, char **argv)
{
	struct status st;
	int c, foreground = 0, inetd = 0, fds[MAX_LISTEN];
	unsigned interval = 0;
	size_t nfds = 0;

	while ((c = getopt(argc, argv, "C:Fiq:")) != -1) {
		switch (c) {
		case 'C': config_path = optarg; break;
		case 'F': foreground = 1; break;
		case 'i': inetd = 1; break;
		case 'q':
			if (config_parse_duration(optarg, &interval) < 0 ||
			    interval == 0)
				usage();
			break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	umask(027);
	if (config_load(&cfg, config_path, config_path != NULL, &st) < 0) {
		fprintf(stderr, "smtpd: %s\n", st.text);
		return EX_CONFIG;
	}
	if (maillog_open(cfg.log, "smtpd", config_hostname(&cfg), &st) < 0)
		fprintf(stderr, "smtpd: %s\n", st.text);
	tls_ctx = tls_load(&cfg, &st);
	if (tls_ctx == NULL && cfg.smtp_cert[0] != '\0') {
		fprintf(stderr, "smtpd: %s\n", st.text);
		return EX_CONFIG;
	}
	stats_fd = stats_open(cfg.statistics, 0);
	resolve_session_ids();

	if (inetd) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		char ip[INET6_ADDRSTRLEN] = "127.0.0.1";
		int sock = getpeername(0, (struct sockaddr *)&ss, &len) == 0;

		if (sock)
			client_address((struct sockaddr *)&ss, len, ip,
				       sizeof(ip));
		count_connection(0);
		run_session(0, 1, sock ? (struct sockaddr *)&ss : NULL,
			    sock ? len : 0, ip);
		maillog_close();
		return EX_OK;
	}
	if (open_listeners(fds, &nfds, &st) < 0) {
		fprintf(stderr, "smtpd: %s\n", st.text);
		return st.exit_code == EX_CONFIG ? EX_CONFIG : EX_OSERR;
	}
	if (!foreground) {
		int detached = io_detach();

		if (detached < 0) {
			fprintf(stderr, "smtpd: fork: %s\n", strerror(errno));
			return EX_OSERR;
		}
		if (detached > 0)
			return EX_OK;
	}
	return serve(fds, nfds, interval);
}
