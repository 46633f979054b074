/*
 * runner: the queue runner.
 */
#include "runner.h"

#include "io.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bounce.h"
#include "buf.h"
#include "maillog.h"
#include "maps.h"
#include "qid.h"
#include "queue.h"
#include "remote.h"
#include "stats.h"
#include "status.h"

#define TRIGGER_NAME ".trigger"
#define REPLY_MAX 2048

unsigned
runner_backoff(const struct config *cfg, unsigned tries)
{
	unsigned wait = cfg->min_backoff;

	while (tries-- > 1 && wait < cfg->max_backoff)
		wait = wait > cfg->max_backoff / 2 ? cfg->max_backoff : wait * 2;
	return wait < cfg->max_backoff ? wait : cfg->max_backoff;
}

/* --- which recipients deliver can take --------------------------------- */

static int
is_local(struct config *cfg, struct map **virt, const char *addr)
{
	const char *at = strrchr(addr, '@');
	struct status st;

	if (at == NULL)
		return 1;
	if (config_is_local_domain(cfg, at + 1, strlen(at + 1)))
		return 1;
	if (*virt == NULL)
		*virt = map_open(cfg->virtusertable, MAP_TABLE, 0, &st);
	return *virt != NULL && map_has_domain(*virt, at + 1, strlen(at + 1));
}

/* --- the message as deliver reads it ----------------------------------- */

/* An unnamed file with the header section, the empty line and the body. */
static int
message_file(const struct runner *r, const struct queue_entry *e, int df,
	     struct status *st)
{
	char chunk[65536];
	off_t off = 0;
	ssize_t n;
	int fd;

	fd = open(r->cfg->queue_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		fd = open(r->cfg->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC,
			  0600);
	if (fd < 0)
		return status_errno(st, errno, "temporary message file");
	if (io_write_all(fd, e->headers.data, e->headers.len) < 0 ||
	    io_write_all(fd, "\n", 1) < 0)
		goto fail;
	while ((n = pread(df, chunk, sizeof(chunk), off)) > 0) {
		if (io_write_all(fd, chunk, (size_t)n) < 0)
			goto fail;
		off += n;
	}
	if (n < 0)
		goto fail;
	return fd;
fail:
	status_errno(st, errno, "temporary message file");
	close(fd);
	return -1;
}

/* --- one deliver run --------------------------------------------------- */

/* The reason deliver gave: its last line of output, "deliver: " gone. */
static void
last_line(struct buf *out, char *reply, size_t size)
{
	char *p, *start;

	while (out->len > 0 && (out->data[out->len - 1] == '\n' ||
				out->data[out->len - 1] == '\r'))
		out->data[--out->len] = '\0';
	p = strrchr(out->data, '\n');
	start = p ? p + 1 : out->data;
	if (strncmp(start, "deliver: ", 9) == 0)
		start += 9;
	snprintf(reply, size, "%s", start);
}

/* The enhanced status code in text ("... 5.1.1 ..."), or NULL. */
static const char *
find_dsn(const char *text, char out[16])
{
	const char *p;

	for (p = text; *p != '\0'; p++) {
		int a, b, c, n = 0;

		if ((*p == '2' || *p == '4' || *p == '5') &&
		    (p == text || p[-1] == ' ' || p[-1] == '(') &&
		    sscanf(p, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 &&
		    (p[n] == '\0' || p[n] == ' ' || p[n] == ')' ||
		     p[n] == ':')) {
			snprintf(out, 16, "%d.%d.%d", a, b, c);
			return out;
		}
	}
	return NULL;
}

/* --- the attempt journal ---------------------------------------------- */

/* jfID names the recipients whose deliver run began. It is written before
 * each run and removed once the qf records the outcomes; not synced, since
 * it has to survive the runner's death (SIGKILL, a crash), not the
 * machine's. A recipient still queued but in the journal may have been
 * delivered just before the runner died: its next deliver run gets -U and
 * leaves a mailbox alone that already holds the message. */
static void
journal_name(const struct config *cfg, const char *id, struct buf *out)
{
	buf_printf(out, "%s/jf%s", cfg->queue_dir, id);
}

static void
journal_add(const struct config *cfg, const char *id, const char *rcpt)
{
	struct buf path, line;
	int fd;

	buf_init(&path);
	buf_init(&line);
	journal_name(cfg, id, &path);
	buf_printf(&line, "%s\n", rcpt);
	fd = open(path.data, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW |
				     O_CLOEXEC, 0640);
	if (fd < 0 || io_write_all(fd, line.data, line.len) < 0)
		maillog("%s: cannot write %s: %s", id, path.data,
			strerror(errno));
	if (fd >= 0)
		close(fd);
	buf_free(&path);
	buf_free(&line);
}

static void
journal_load(const struct config *cfg, const char *id, struct buf *out)
{
	struct buf path;
	char chunk[4096];
	ssize_t n;
	int fd;

	buf_init(&path);
	journal_name(cfg, id, &path);
	buf_puts(out, "\n");
	fd = open(path.data, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	while (fd >= 0 && (n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(out, chunk, (size_t)n);
	if (fd >= 0)
		close(fd);
	buf_free(&path);
}

static int
journal_has(const struct buf *journal, const char *rcpt)
{
	struct buf line;
	int found;

	buf_init(&line);
	buf_printf(&line, "\n%s\n", rcpt);
	found = memmem(journal->data, journal->len, line.data, line.len) !=
		NULL;
	buf_free(&line);
	return found;
}

static void
journal_clear(const struct config *cfg, const char *id)
{
	struct buf path;

	buf_init(&path);
	journal_name(cfg, id, &path);
	if (unlink(path.data) < 0 && errno != ENOENT)
		maillog("%s: cannot remove %s: %s", id, path.data,
			strerror(errno));
	buf_free(&path);
}

static int
run_deliver(const struct runner *r, const struct queue_entry *e,
	    const char *rcpt, int msg_fd, int recovery, struct status *st)
{
	const char *argv[12];
	struct buf out;
	char reply[REPLY_MAX], dsn[16], chunk[512];
	int p[2], status, n = 0, code;
	pid_t pid;
	ssize_t got;

	argv[n++] = r->cfg->deliver_path;
	if (r->config_path != NULL) {
		argv[n++] = "-C";
		argv[n++] = r->config_path;
	}
	argv[n++] = "-Q";
	argv[n++] = e->id;
	argv[n++] = "-f";
	argv[n++] = e->sender != NULL && e->sender[0] != '\0' ? e->sender
							      : "<>";
	if (recovery)
		argv[n++] = "-U";
	argv[n++] = "--";
	argv[n++] = rcpt;
	argv[n] = NULL;
	journal_add(r->cfg, e->id, rcpt);

	if (lseek(msg_fd, 0, SEEK_SET) < 0)
		return status_errno(st, errno, "rewinding the message");
	if (pipe2(p, O_CLOEXEC) < 0)
		return status_errno(st, errno, "pipe");
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return status_errno(st, errno, "fork");
	}
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (dup2(msg_fd, 0) < 0 || null < 0 || dup2(null, 1) < 0 ||
		    dup2(p[1], 2) < 0)
			_exit(EX_OSERR);
		execv(argv[0], (char *const *)argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(EX_OSERR);
	}
	close(p[1]);
	buf_init(&out);
	while ((got = read(p[0], chunk, sizeof(chunk))) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (out.len < 16384)
			buf_append(&out, chunk, (size_t)got);
	}
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			status = W_EXITCODE(EX_OSERR, 0);
			break;
		}
	last_line(&out, reply, sizeof(reply));
	buf_free(&out);
	if (WIFEXITED(status)) {
		code = WEXITSTATUS(status);
	} else {
		code = EX_TEMPFAIL;
		snprintf(reply, sizeof(reply), "%s was killed by signal %d",
			 r->cfg->deliver_path, WTERMSIG(status));
	}
	if (code == EX_OK) {
		status_ok(st);
		return 0;
	}
	status_set(st, code, find_dsn(reply, dsn), "%s",
		   reply[0] ? reply : status_word(code));
	return -1;
}

/* --- bounces ----------------------------------------------------------- */

/* Queues a whole message text (header, empty line, body) from <>. */
static int
queue_text(const struct config *cfg, const char *rcpt, const char *text,
	   size_t len, char id[QID_SIZE], struct status *st)
{
	struct queue_entry e;
	struct queue_draft *draft;
	const char *sep = NULL, *p;
	int rc = -1;

	for (p = text; p + 1 < text + len; p++)
		if (p[0] == '\n' && p[1] == '\n') {
			sep = p + 1;
			break;
		}
	if (sep == NULL)
		sep = text + len;
	queue_entry_init(&e);
	e.sender = xstrdup("");
	queue_add_recipient(&e, rcpt, NULL);
	if (queue_begin(cfg->queue_dir, &e, &draft, st) == 0) {
		buf_append(&e.headers, text, (size_t)(sep - text));
		if (sep < text + len)
			sep++;
		if (queue_write(draft, sep, (size_t)(text + len - sep), st) < 0)
			queue_abort(draft);
		else if (queue_commit(draft, &e, st) == 0) {
			memcpy(id, e.id, QID_SIZE);
			rc = 0;
		}
	}
	queue_entry_free(&e);
	return rc;
}

/* "550 5.1.1 ...": a remote server's reply, which a DSN labels "smtp"
 * (RFC 3464 2.3.6); anything else is this host's own words. */
static int
is_smtp_reply(const char *text)
{
	return text[0] >= '2' && text[0] <= '5' &&
	       isdigit((unsigned char)text[1]) &&
	       isdigit((unsigned char)text[2]) &&
	       (text[3] == ' ' || text[3] == '-' || text[3] == '\0');
}

static int
is_postmaster(const char *addr)
{
	return strncasecmp(addr, "postmaster", 10) == 0 &&
	       (addr[10] == '\0' || addr[10] == '@');
}

/* Sends the notice of kind for the recipients in state (B: failed, Q:
 * delayed). Returns 0 when it is queued (or, for a lost double bounce,
 * logged), -1 when it must be tried again later. */
static int
notify(const struct runner *r, struct queue_entry *e,
       enum bounce_kind kind, time_t now)
{
	struct config *cfg = r->cfg;
	enum queue_state want = kind == BOUNCE_FAILED ? QUEUE_BOUNCED
						      : QUEUE_QUEUED;
	struct bounce_recipient *list;
	struct bounce_request req;
	struct status st;
	struct buf text, to;
	char id[QID_SIZE];
	size_t i, n = 0;
	int rc;

	list = calloc(e->nrecipients, sizeof(*list));
	if (list == NULL)
		return -1;
	for (i = 0; i < e->nrecipients; i++) {
		struct queue_recipient *q = &e->recipients[i];

		if (q->state != want)
			continue;
		list[n].address = q->address;
		list[n].original = q->orcpt;
		list[n].dsn = q->dsn[0] ? q->dsn
				: kind == BOUNCE_FAILED ? "5.0.0" : "4.0.0";
		list[n].diagnostic = q->reply ? q->reply : "";
		list[n].smtp_reply = is_smtp_reply(list[n].diagnostic);
		n++;
	}
	buf_init(&to);
	memset(&req, 0, sizeof(req));
	if (e->sender != NULL && e->sender[0] != '\0') {
		buf_puts(&to, e->sender);
	} else {
		/* A notice about a notice: to postmaster, once. */
		if (kind == BOUNCE_DELAYED || (n > 0 &&
		    is_postmaster(list[0].address))) {
			if (kind == BOUNCE_FAILED)
				maillog("%s: lost bounce from <> to %s: %s",
					e->id, list[0].address,
					list[0].diagnostic);
			free(list);
			buf_free(&to);
			return 0;
		}
		buf_printf(&to, "postmaster@%s", config_hostname(cfg));
		req.double_bounce = 1;
	}
	req.kind = kind;
	req.hostname = config_hostname(cfg);
	req.queue_id = e->id;
	req.to = to.data;
	req.arrival = e->created;
	req.now = now;
	req.retry_until = cfg->queue_lifetime ? e->created +
				  (time_t)cfg->queue_lifetime : 0;
	req.recipients = list;
	req.nrecipients = n;
	req.headers = e->headers.data;
	req.headers_len = e->headers.len;
	buf_init(&text);
	bounce_build(&req, &text);
	rc = queue_text(cfg, to.data, text.data, text.len, id, &st);
	if (rc == 0)
		maillog("%s: %s: %s: %s", e->id, id,
			kind == BOUNCE_FAILED ? "DSN" : "postmaster notify",
			list[0].diagnostic[0] ? list[0].diagnostic
			: kind == BOUNCE_FAILED ? "Service unavailable"
						: "Warning: could not send "
						  "message for past 4 hours");
	else
		maillog("%s: cannot queue the delivery status notification: "
			"%s", e->id, st.text);
	buf_free(&text);
	buf_free(&to);
	free(list);
	return rc;
}

/* Drops the recipients whose bounce is queued. */
static void
forget_bounced(struct queue_entry *e)
{
	size_t i, k = 0;

	for (i = 0; i < e->nrecipients; i++) {
		struct queue_recipient *q = &e->recipients[i];

		if (q->state == QUEUE_BOUNCED) {
			free(q->address);
			free(q->orcpt);
			free(q->reply);
			continue;
		}
		e->recipients[k++] = *q;
	}
	e->nrecipients = k;
}

/* --- one message ------------------------------------------------------- */

/* A duration as mail.conf would say it, in words: "5 days", "36 hours",
 * "1 second" (the largest unit that divides it). */
static void
duration_words(unsigned seconds, char *out, size_t size)
{
	static const struct {
		unsigned length;
		const char *name;
	} units[] = {
		{ 86400, "day" }, { 3600, "hour" }, { 60, "minute" },
		{ 1, "second" },
	};
	size_t i = 0;

	while (units[i].length > 1 && seconds % units[i].length != 0)
		i++;
	snprintf(out, size, "%u %s%s", seconds / units[i].length,
		 units[i].name, seconds == units[i].length ? "" : "s");
}

static size_t
count_state(const struct queue_entry *e, enum queue_state s)
{
	size_t i, n = 0;

	for (i = 0; i < e->nrecipients; i++)
		n += e->recipients[i].state == s;
	return n;
}

static void
say(const struct runner *r, const char *addr, const char *what)
{
	if (r->verbose) {
		printf("%s... %s\n", addr, what);
		fflush(stdout);
	}
}

/* Moves an unreadable qf aside (as sendmail's Qf) for the administrator. */
static void
set_aside(const struct runner *r, const char *id, const struct status *why)
{
	struct buf from, to;

	buf_init(&from);
	buf_init(&to);
	buf_printf(&from, "%s/qf%s", r->cfg->queue_dir, id);
	buf_printf(&to, "%s/Qf%s", r->cfg->queue_dir, id);
	if (rename(from.data, to.data) == 0)
		maillog("%s: unreadable queue file moved to %s: %s", id,
			to.data, why->text);
	buf_free(&from);
	buf_free(&to);
}

struct remote_ctx {
	const struct runner *r;
	struct queue_entry *e;
	int lock_fd;
	int *msg_fd;
	const char **last_reply;
	const struct buf *journal;
	const size_t *idx;
	struct remote_outcome *out;
	time_t start;
	int stats_fd;
	int rc;
};

/* One destination's outcomes: logged, counted and recorded in the qf at
 * once (unless nothing is left to do: the removal records that). */
static void
remote_done(void *arg, const size_t *members, size_t m, unsigned connections)
{
	struct remote_ctx *c = arg;
	struct queue_entry *e = c->e;
	struct config *cfg = c->r->cfg;
	struct status st;
	char delay[32], xdelay[32];
	time_t end = time(NULL);
	size_t j;

	maillog_delay(delay, sizeof(delay), (long)(end - e->created));
	maillog_delay(xdelay, sizeof(xdelay), (long)(end - c->start));
	if (connections > 0 && c->stats_fd >= 0) {
		struct stats delta;

		memset(&delta, 0, sizeof(delta));
		delta.conn_to = connections;
		stats_add(c->stats_fd, &delta);
	}
	for (j = 0; j < m; j++) {
		size_t k = members[j];
		struct queue_recipient *q = &e->recipients[c->idx[k]];
		struct remote_outcome *o = &c->out[k];
		char what[700];

		if (o->local_user[0] != '\0') {
			/* mailertable local:user */
			if (*c->msg_fd < 0)
				*c->msg_fd = message_file(c->r, e, c->lock_fd,
							  &st);
			if (*c->msg_fd < 0)
				queue_recipient_set(q, QUEUE_QUEUED, st.dsn,
						    st.text);
			else if (run_deliver(c->r, e, o->local_user,
					     *c->msg_fd,
					     journal_has(c->journal,
							 o->local_user),
					     &st) == 0)
				queue_recipient_set(q, QUEUE_SENT, "2.0.0",
						    NULL);
			else
				queue_recipient_set(
					q, status_is_temporary(st.exit_code)
						   ? QUEUE_QUEUED
						   : QUEUE_BOUNCED,
					st.dsn, st.text);
			if (q->state == QUEUE_QUEUED)
				*c->last_reply = q->reply;
			continue;
		}
		queue_recipient_set(q, o->state, o->dsn,
				    o->state == QUEUE_SENT ? NULL : o->reply);
		if (o->state == QUEUE_SENT) {
			snprintf(what, sizeof(what), "Sent (%s)", o->reply);
			if (c->stats_fd >= 0)
				stats_count_to(c->stats_fd, STATS_ESMTP,
					       (long long)(e->headers.len + 1 +
							   e->body_size));
		} else if (o->state == QUEUE_QUEUED) {
			snprintf(what, sizeof(what), "Deferred: %s", o->reply);
			*c->last_reply = q->reply;
		} else {
			snprintf(what, sizeof(what), "%s", o->reply);
		}
		maillog("%s: to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, "
			"pri=%llu, relay=%s, dsn=%s, stat=%s", e->id,
			q->address, delay, xdelay,
			(unsigned long long)(30000 + e->body_size +
					     e->tries * 90000ULL),
			o->relay[0] ? o->relay : "none", o->dsn, what);
		say(c->r, q->address, what);
	}
	if (count_state(e, QUEUE_QUEUED) + count_state(e, QUEUE_BOUNCED) > 0) {
		if (queue_update(cfg->queue_dir, e, &st) < 0) {
			maillog("%s: cannot record deliveries: %s", e->id,
				st.text);
			c->rc = -1;
		} else {
			journal_clear(cfg, e->id);
		}
	}
}

/* The remote recipients idx[0..n): through the SMTP client (or, for a
 * mailertable local:user, through deliver), each destination's outcomes
 * recorded in the qf before the next destination is tried. */
static int
remote_phase(const struct runner *r, struct queue_entry *e, int lock_fd,
	     const size_t *idx, size_t n, int *msg_fd, const char **last_reply,
	     const struct buf *journal)
{
	struct config *cfg = r->cfg;
	struct remote_ctx c;
	struct buf transcript;
	struct status st;

	memset(&c, 0, sizeof(c));
	c.r = r;
	c.e = e;
	c.lock_fd = lock_fd;
	c.msg_fd = msg_fd;
	c.last_reply = last_reply;
	c.journal = journal;
	c.idx = idx;
	c.out = xcalloc(n, sizeof(*c.out));
	c.start = time(NULL);
	c.stats_fd = stats_open(cfg->statistics, 0);
	buf_init(&transcript);
	remote_deliver(cfg, e, lock_fd, idx, n, c.out, &transcript,
		       remote_done, &c);
	if (c.stats_fd >= 0)
		close(c.stats_fd);
	if (transcript.len > 0)
		queue_append_transcript(cfg->queue_dir, e->id, transcript.data,
					&st);
	buf_free(&transcript);
	free(c.out);
	return c.rc;
}

int
runner_message(const struct runner *r, const char *id)
{
	struct config *cfg = r->cfg;
	struct queue_entry e;
	struct status st;
	struct map *virt = NULL;
	int lock_fd = -1, msg_fd = -1, rc = 0;
	time_t now = time(NULL);
	size_t i, pending, nremote = 0, *remote = NULL;
	struct buf journal;
	const char *last_reply = NULL;

	switch (queue_lock(cfg->queue_dir, id, &lock_fd, &st)) {
	case QUEUE_LOCKED:
		break;
	case QUEUE_LOCK_BUSY:
	case QUEUE_LOCK_GONE:
		return 0;
	default:
		maillog("%s: cannot lock: %s", id, st.text);
		return -1;
	}
	if (queue_read(cfg->queue_dir, id, &e, &st) < 0) {
		if (st.exit_code == EX_DATAERR)
			set_aside(r, id, &st);
		else
			maillog("%s: cannot read the queue file: %s", id,
				st.text);
		queue_entry_free(&e);
		queue_unlock(lock_fd);
		return -1;
	}
	if (!r->force && e.next_attempt > now) {
		queue_entry_free(&e);
		queue_unlock(lock_fd);
		return 0;
	}

	buf_init(&journal);
	journal_load(cfg, id, &journal);
	pending = count_state(&e, QUEUE_QUEUED);
	remote = xcalloc(e.nrecipients + 1, sizeof(*remote));
	for (i = 0; i < e.nrecipients; i++) {
		struct queue_recipient *q = &e.recipients[i];

		if (q->state != QUEUE_QUEUED)
			continue;
		if (!is_local(cfg, &virt, q->address)) {
			remote[nremote++] = i;
			continue;
		}
		if (msg_fd < 0) {
			msg_fd = message_file(r, &e, lock_fd, &st);
			if (msg_fd < 0) {
				maillog("%s: %s", id, st.text);
				queue_recipient_set(q, QUEUE_QUEUED, st.dsn,
						    st.text);
				last_reply = q->reply;
				break;
			}
		}
		pending--;
		if (run_deliver(r, &e, q->address, msg_fd,
				journal_has(&journal, q->address), &st) == 0) {
			queue_recipient_set(q, QUEUE_SENT, "2.0.0", NULL);
			say(r, q->address, "Sent");
		} else if (status_is_temporary(st.exit_code)) {
			char what[STATUS_TEXT_MAX + 16];

			queue_recipient_set(q, QUEUE_QUEUED, st.dsn, st.text);
			last_reply = q->reply;
			snprintf(what, sizeof(what), "Deferred: %s", st.text);
			say(r, q->address, what);
			queue_append_transcript(cfg->queue_dir, id, st.text,
						&st);
			continue;
		} else {
			queue_recipient_set(q, QUEUE_BOUNCED, st.dsn, st.text);
			say(r, q->address, st.text);
			queue_append_transcript(cfg->queue_dir, id, st.text,
						&st);
		}
		/* Recorded at once, unless this was the last one and the
		 * removal below records it. */
		if (pending > 0 || count_state(&e, QUEUE_BOUNCED) > 0 ||
		    count_state(&e, QUEUE_QUEUED) > 0) {
			if (queue_update(cfg->queue_dir, &e, &st) < 0) {
				maillog("%s: cannot record a delivery: %s", id,
					st.text);
				rc = -1;
				goto out;
			}
			journal_clear(cfg, id);
		}
	}
	if (nremote > 0 && rc == 0 &&
	    remote_phase(r, &e, lock_fd, remote, nremote, &msg_fd,
			 &last_reply, &journal) < 0) {
		rc = -1;
		goto out;
	}
	if (msg_fd >= 0)
		close(msg_fd);
	msg_fd = -1;

	/* Expired recipients fail now. */
	if (cfg->queue_lifetime > 0 &&
	    now - e.created >= (time_t)cfg->queue_lifetime) {
		for (i = 0; i < e.nrecipients; i++) {
			struct queue_recipient *q = &e.recipients[i];
			char why[STATUS_TEXT_MAX + 64], lifetime[32];

			if (q->state != QUEUE_QUEUED)
				continue;
			duration_words(cfg->queue_lifetime, lifetime,
				       sizeof(lifetime));
			snprintf(why, sizeof(why),
				 "message could not be delivered for %s%s%s",
				 lifetime, q->reply ? ": " : "",
				 q->reply ? q->reply : "");
			queue_recipient_set(q, QUEUE_BOUNCED, "4.4.7", why);
			maillog("%s: to=<%s>, stat=%s", id, q->address, why);
		}
		last_reply = NULL;
	}
	if (count_state(&e, QUEUE_BOUNCED) > 0) {
		if (notify(r, &e, BOUNCE_FAILED, now) == 0)
			forget_bounced(&e);
	}
	if (count_state(&e, QUEUE_QUEUED) == 0 &&
	    count_state(&e, QUEUE_BOUNCED) == 0) {
		if (queue_remove(cfg->queue_dir, id, &st) < 0) {
			maillog("%s: cannot remove: %s", id, st.text);
			rc = -1;
		}
		goto out;
	}
	if (count_state(&e, QUEUE_QUEUED) > 0 && !e.warned &&
	    cfg->queue_warn > 0 &&
	    now - e.created >= (time_t)cfg->queue_warn &&
	    (cfg->queue_lifetime == 0 || cfg->queue_warn < cfg->queue_lifetime)) {
		if (notify(r, &e, BOUNCE_DELAYED, now) == 0)
			e.warned = 1;
	}
	e.tries++;
	e.last_attempt = now;
	e.next_attempt = now + (time_t)runner_backoff(cfg, e.tries);
	if (last_reply != NULL) {
		char *m = xstrdup(last_reply);

		free(e.status_message);
		e.status_message = m;
	}
	if (queue_update(cfg->queue_dir, &e, &st) < 0) {
		maillog("%s: cannot reschedule: %s", id, st.text);
		rc = -1;
	} else {
		journal_clear(cfg, id);
	}
out:
	free(remote);
	buf_free(&journal);
	if (msg_fd >= 0)
		close(msg_fd);
	if (virt != NULL)
		map_close(virt);
	queue_entry_free(&e);
	queue_unlock(lock_fd);
	return rc;
}

/* --- the whole queue --------------------------------------------------- */

struct idlist {
	char (*ids)[QID_SIZE];
	size_t n, cap;
};

static int
collect(const char *id, void *arg)
{
	struct idlist *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->ids = xrealloc(l->ids, l->cap * sizeof(*l->ids));
	}
	snprintf(l->ids[l->n++], QID_SIZE, "%s", id);
	return 0;
}

static volatile sig_atomic_t stopping;

/* A worker: message ids from the pipe, one after another, so that its
 * cached SMTP connections serve several messages. */
static void
worker(const struct runner *r, int ids)
{
	char id[QID_SIZE];

	for (;;) {
		ssize_t n = read(ids, id, QID_LEN);

		if (n < 0 && errno == EINTR)
			continue;
		if (n != QID_LEN)
			break;
		id[QID_LEN] = '\0';
		if (qid_valid(id))
			runner_message(r, id);
	}
	remote_close_all();
}

int
runner_run(const struct runner *r)
{
	struct idlist l = { NULL, 0, 0 };
	struct status st;
	size_t i, nworkers, running = 0;
	int status, p[2];

	if (queue_cleanup_orphans(r->cfg->queue_dir, time(NULL), &st) < 0)
		maillog("queue cleanup: %s", st.text);
	if (queue_list(r->cfg->queue_dir, collect, &l, &st) < 0) {
		maillog("cannot read the queue: %s", st.text);
		fprintf(stderr, "sendmail: %s\n", st.text);
		return -1;
	}
	if (l.n == 0) {
		free(l.ids);
		return 0;
	}
	/* max_deliveries workers share the ids through a pipe: a write of
	 * one id (fewer than PIPE_BUF bytes) and a read of one id are
	 * whole, so each message goes to exactly one worker. */
	nworkers = l.n < r->cfg->max_deliveries ? l.n : r->cfg->max_deliveries;
	if (pipe2(p, O_CLOEXEC) < 0) {
		maillog("pipe: %s", strerror(errno));
		free(l.ids);
		return -1;
	}
	fflush(NULL);
	for (i = 0; i < nworkers; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			close(p[1]);
			worker(r, p[0]);
			_exit(0);
		}
		if (pid > 0)
			running++;
	}
	close(p[0]);
	if (running == 0) {
		/* No process to spare: all of them in ours. */
		for (i = 0; i < l.n && !stopping; i++)
			runner_message(r, l.ids[i]);
		remote_close_all();
	} else {
		signal(SIGPIPE, SIG_IGN);
		for (i = 0; i < l.n && !stopping; i++)
			if (write(p[1], l.ids[i], QID_LEN) != QID_LEN)
				break;	/* every worker is gone */
	}
	close(p[1]);
	while (running > 0) {
		if (wait(&status) > 0)
			running--;
		else if (errno != EINTR)
			break;
	}
	free(l.ids);
	return 0;
}

/* --- the daemon -------------------------------------------------------- */

static void
on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

void
runner_trigger(const struct config *cfg)
{
	struct buf path;
	int fd;

	buf_init(&path);
	buf_printf(&path, "%s/" TRIGGER_NAME, cfg->queue_dir);
	fd = open(path.data, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0) {
		struct stat sb;

		if (fstat(fd, &sb) == 0 && S_ISFIFO(sb.st_mode) &&
		    write(fd, "r", 1) < 0) {
			/* Full: a run is due anyway. */
		}
		close(fd);
	}
	buf_free(&path);
}

int
runner_daemon(const struct runner *r, unsigned interval)
{
	struct sigaction sa;
	struct buf path;
	struct group *gr;
	int fifo;
	time_t next;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	buf_init(&path);
	buf_printf(&path, "%s/" TRIGGER_NAME, r->cfg->queue_dir);
	if (mkfifo(path.data, 0620) < 0 && errno != EEXIST)
		maillog("cannot create %s: %s", path.data, strerror(errno));
	else if (geteuid() == 0 && (gr = getgrnam(r->cfg->submit_group)) &&
		 (chown(path.data, 0, gr->gr_gid) < 0 ||
		  chmod(path.data, 0620) < 0))
		/* Submitters (setgid submit_group) may wake us; chmod, since
		 * sendmail's umask 027 took the group's write bit. */
		maillog("cannot chown %s: %s", path.data, strerror(errno));
	/* O_RDWR: the FIFO never reports end-of-file between writers. */
	fifo = open(path.data, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	buf_free(&path);
	maillog("starting queue runner daemon, interval %us", interval);
	while (!stopping) {
		runner_run(r);
		next = time(NULL) + (time_t)interval;
		while (!stopping) {
			struct pollfd pfd = { fifo, POLLIN, 0 };
			time_t left = next - time(NULL);
			char drain[256];

			if (left <= 0)
				break;
			if (poll(&pfd, fifo >= 0 ? 1 : 0,
				 (int)(left > 3600 ? 3600000 : left * 1000)) > 0) {
				while (read(fifo, drain, sizeof(drain)) > 0)
					;
				break;
			}
		}
	}
	maillog("queue runner daemon stopped");
	if (fifo >= 0)
		close(fifo);
	return 0;
}
