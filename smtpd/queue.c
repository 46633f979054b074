/*
 * queue: the queue files, their format and the order in which they reach
 * the disk. See queue.5 for why nothing is lost at any crash point.
 */
#include "queue.h"

#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_SIZE (2 + QID_SIZE)	/* "qf" + id + NUL */
#define CREATE_TRIES 16

struct queue_draft {
	char *queue_dir;	/* for messages */
	int dirfd;
	int fd;			/* the df, locked */
	int failed;		/* a write failed: the body is incomplete */
	char id[QID_SIZE];
	uint64_t size;
	size_t fill;
	char buffer[65536];
};

static int valid_dsn(const char *p, size_t len);

/* ---- entries ---- */

void
queue_entry_init(struct queue_entry *e)
{
	memset(e, 0, sizeof(*e));
	buf_init(&e->headers);
}

void
queue_entry_free(struct queue_entry *e)
{
	size_t i;

	for (i = 0; i < e->nrecipients; i++) {
		free(e->recipients[i].address);
		free(e->recipients[i].orcpt);
		free(e->recipients[i].reply);
	}
	free(e->recipients);
	for (i = 0; i < e->nextras; i++)
		free(e->extras[i].line);
	free(e->extras);
	free(e->sender);
	free(e->message_id);
	free(e->status_message);
	buf_free(&e->headers);
	/* Empty, without allocating: a second free does nothing. */
	memset(e, 0, sizeof(*e));
}

struct queue_recipient *
queue_add_recipient(struct queue_entry *e, const char *address,
		    const char *orcpt)
{
	struct queue_recipient *r;

	e->recipients = xrealloc(e->recipients,
				 (e->nrecipients + 1) * sizeof(*r));
	r = &e->recipients[e->nrecipients++];
	memset(r, 0, sizeof(*r));
	r->address = xstrdup(address);
	r->orcpt = orcpt != NULL && orcpt[0] != '\0' ? xstrdup(orcpt) : NULL;
	r->state = QUEUE_QUEUED;
	return r;
}

void
queue_recipient_set(struct queue_recipient *r, enum queue_state state,
		    const char *dsn, const char *reply)
{
	r->state = state;
	/* Only what the reader takes back: digits and dots. */
	if (dsn == NULL || !valid_dsn(dsn, strlen(dsn)))
		dsn = "";
	snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
	free(r->reply);
	r->reply = reply != NULL && reply[0] != '\0' ? xstrdup(reply) : NULL;
}

static void
add_extra(struct queue_entry *e, const char *line, size_t len)
{
	struct queue_extra *x;

	e->extras = xrealloc(e->extras, (e->nextras + 1) * sizeof(*x));
	x = &e->extras[e->nextras++];
	x->after = e->nrecipients;
	x->line = xstrndup(line, len);
}

/* ---- the qf format ---- */

/* %XX for what would break a line or a field: '%' itself, control
 * characters but tab, DEL, and the separator ':' inside R records.
 * Other bytes (8-bit text included) are written as they are. */
static void
put_text(struct buf *out, const char *p, size_t len, int colon)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '%' || (c < 0x20 && c != '\t') || c == 0x7f ||
		    (colon && c == ':')) {
			buf_putc(out, '%');
			buf_putc(out, hex[c >> 4]);
			buf_putc(out, hex[c & 15]);
		} else {
			buf_putc(out, (char)c);
		}
	}
}

static void
put_string(struct buf *out, const char *s, int colon)
{
	if (s != NULL)
		put_text(out, s, strlen(s), colon);
}

static void
format_extras(const struct queue_entry *e, struct buf *out, size_t after,
	      int rest)
{
	size_t i;

	for (i = 0; i < e->nextras; i++)
		if (e->extras[i].after == after ||
		    (rest && e->extras[i].after > after)) {
			buf_puts(out, e->extras[i].line);
			buf_putc(out, '\n');
		}
}

static long long
not_negative(time_t t)
{
	return t < 0 ? 0 : (long long)t;
}

void
queue_format(const struct queue_entry *e, struct buf *out)
{
	const char *h = e->headers.data, *end = h + e->headers.len;
	size_t i;

	buf_printf(out, "V%d\nT%lld\nK%lld\nN%u\nY%lld\n", QUEUE_VERSION,
		   not_negative(e->created), not_negative(e->last_attempt),
		   e->tries, not_negative(e->next_attempt));
	buf_putc(out, 'S');
	put_string(out, e->sender, 0);
	buf_printf(out, "\nZ%llu\n", (unsigned long long)e->body_size);
	if (e->message_id != NULL) {
		buf_putc(out, 'I');
		put_string(out, e->message_id, 0);
		buf_putc(out, '\n');
	}
	if (e->warned)
		buf_puts(out, "W1\n");
	if (e->status_message != NULL) {
		buf_putc(out, 'M');
		put_string(out, e->status_message, 0);
		buf_putc(out, '\n');
	}
	format_extras(e, out, 0, e->nrecipients == 0);
	for (i = 0; i < e->nrecipients; i++) {
		const struct queue_recipient *r = &e->recipients[i];
		int has_orcpt = r->orcpt != NULL && r->orcpt[0] != '\0';
		int has_reply = r->reply != NULL && r->reply[0] != '\0';

		/* A caller's stray state is written as queued: delivered
		 * again rather than lost. */
		buf_printf(out, "R%c:",
			   r->state == QUEUE_SENT || r->state == QUEUE_BOUNCED ?
				   (char)r->state : (char)QUEUE_QUEUED);
		if (valid_dsn(r->dsn, strnlen(r->dsn, sizeof(r->dsn))))
			buf_puts(out, r->dsn);
		buf_putc(out, ':');
		put_string(out, r->address, 1);
		if (has_orcpt || has_reply) {
			buf_putc(out, ':');
			put_string(out, r->orcpt, 1);
		}
		if (has_reply) {
			buf_putc(out, ':');
			put_string(out, r->reply, 1);
		}
		buf_putc(out, '\n');
		format_extras(e, out, i + 1, i + 1 == e->nrecipients);
	}
	while (h < end) {
		const char *nl = memchr(h, '\n', (size_t)(end - h));
		size_t len = nl != NULL ? (size_t)(nl - h) : (size_t)(end - h);

		buf_putc(out, 'H');
		put_text(out, h, len, 0);
		buf_putc(out, '\n');
		h += len + (nl != NULL);
	}
	buf_puts(out, ".\n");
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes %XX; -1 on a '%' without two hex digits. */
static int
get_text(const char *p, size_t len, struct buf *out)
{
	size_t i;

	for (i = 0; i < len; i++) {
		int high, low;

		if (p[i] != '%') {
			buf_putc(out, p[i]);
			continue;
		}
		if (i + 2 >= len)
			return -1;
		high = hex_value(p[i + 1]);
		low = hex_value(p[i + 2]);
		if (high < 0 || low < 0)
			return -1;
		buf_putc(out, (char)(high << 4 | low));
		i += 2;
	}
	return 0;
}

/* A decoded C string; NULL for a bad escape or a NUL byte. */
static char *
get_string(const char *p, size_t len)
{
	struct buf text;
	char *string;

	buf_init(&text);
	if (get_text(p, len, &text) < 0 ||
	    memchr(text.data, '\0', text.len) != NULL) {
		buf_free(&text);
		return NULL;
	}
	string = buf_steal(&text);
	buf_free(&text);
	return string;
}

static int
get_number(const char *p, size_t len, uint64_t max, uint64_t *value)
{
	uint64_t n = 0, digit;
	size_t i;

	if (len == 0 || len > 20)
		return -1;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		digit = (uint64_t)(p[i] - '0');
		if (digit > max || n > (max - digit) / 10)
			return -1;
		n = n * 10 + digit;
	}
	*value = n;
	return 0;
}

static int
get_time(const char *p, size_t len, time_t *t)
{
	uint64_t n;

	if (get_number(p, len, INT64_MAX, &n) < 0)
		return -1;
	*t = (time_t)n;
	return 0;
}

static int
valid_dsn(const char *p, size_t len)
{
	size_t i;

	if (len >= 16)
		return 0;
	for (i = 0; i < len; i++)
		if ((p[i] < '0' || p[i] > '9') && p[i] != '.')
			return 0;
	return 1;
}

/* "R<state>:<dsn>:<address>[:<orcpt>[:<reply>]]", ':' inside fields
 * being %3A. */
static int
parse_recipient(struct queue_entry *e, const char *p, size_t len)
{
	const char *field[5];
	size_t field_len[5], n = 0, i, start = 0;
	struct queue_recipient *r;
	char *address, *orcpt = NULL, *reply = NULL;

	for (i = 0; i <= len; i++) {
		if (i < len && p[i] != ':')
			continue;
		if (n == 5)
			return -1;
		field[n] = p + start;
		field_len[n++] = i - start;
		start = i + 1;
	}
	if (n < 3 || field_len[0] != 1 ||
	    (p[0] != QUEUE_QUEUED && p[0] != QUEUE_SENT &&
	     p[0] != QUEUE_BOUNCED) ||
	    !valid_dsn(field[1], field_len[1]))
		return -1;
	address = get_string(field[2], field_len[2]);
	if (address == NULL)
		return -1;
	if ((n > 3 && (orcpt = get_string(field[3], field_len[3])) == NULL) ||
	    (n > 4 && (reply = get_string(field[4], field_len[4])) == NULL)) {
		free(address);
		free(orcpt);
		return -1;
	}
	e->recipients = xrealloc(e->recipients,
				 (e->nrecipients + 1) * sizeof(*r));
	r = &e->recipients[e->nrecipients++];
	r->address = address;
	r->orcpt = orcpt != NULL && orcpt[0] != '\0' ? orcpt : NULL;
	if (r->orcpt == NULL)
		free(orcpt);
	r->reply = reply != NULL && reply[0] != '\0' ? reply : NULL;
	if (r->reply == NULL)
		free(reply);
	r->state = (enum queue_state)p[0];
	memcpy(r->dsn, field[1], field_len[1]);
	r->dsn[field_len[1]] = '\0';
	return 0;
}

/* One scalar text record (S, I, M): once only. */
static int
parse_string(char **field, const char *p, size_t len)
{
	if (*field != NULL)
		return -1;
	*field = get_string(p, len);
	return *field != NULL ? 0 : -1;
}

int
queue_parse(const char *text, size_t len, struct queue_entry *e,
	    struct status *st)
{
	const char *p = text, *end = text + len;
	const char *why = "malformed record";
	unsigned line = 0;
	unsigned seen = 0;	/* bit per scalar letter - 'A' */
	int done = 0;
	uint64_t n = 0;

	queue_entry_init(e);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *arg = p + 1;
		size_t arg_len;
		char letter = *p;
		int rc = 0;

		line++;
		if (nl == NULL) {
			why = "line without its newline";
			goto bad;
		}
		arg_len = (size_t)(nl - arg);
		if (done) {
			why = "text after the end line";
			goto bad;
		}
		if (line == 1 && letter != 'V') {
			why = "not a queue file (no V record first)";
			goto bad;
		}
		if (nl == p) {
			why = "empty line";
			goto bad;
		}
		if (letter >= 'A' && letter <= 'Z' &&
		    strchr("VTKNYSZIWM", letter) != NULL) {
			if (seen & (1u << (letter - 'A'))) {
				why = "record given twice";
				goto bad;
			}
			seen |= 1u << (letter - 'A');
		}
		switch (letter) {
		case 'V':
			if (line != 1 ||
			    get_number(arg, arg_len, 1000000, &n) < 0 ||
			    n == 0) {
				why = "bad version record";
				goto bad;
			}
			if (n > QUEUE_VERSION) {
				queue_entry_free(e);
				return status_set(st, EX_TEMPFAIL, "4.3.0",
						  "queue file format version "
						  "%llu is newer than this "
						  "program reads (%d); run "
						  "the release that wrote it",
						  (unsigned long long)n,
						  QUEUE_VERSION);
			}
			break;
		case 'T':
			rc = get_time(arg, arg_len, &e->created);
			break;
		case 'K':
			rc = get_time(arg, arg_len, &e->last_attempt);
			break;
		case 'Y':
			rc = get_time(arg, arg_len, &e->next_attempt);
			break;
		case 'N':
			rc = get_number(arg, arg_len, UINT32_MAX, &n);
			e->tries = (unsigned)n;
			break;
		case 'Z':
			rc = get_number(arg, arg_len, INT64_MAX,
					&e->body_size);
			break;
		case 'W':
			rc = get_number(arg, arg_len, 1, &n);
			e->warned = (int)n;
			break;
		case 'S':
			rc = parse_string(&e->sender, arg, arg_len);
			break;
		case 'I':
			rc = parse_string(&e->message_id, arg, arg_len);
			break;
		case 'M':
			rc = parse_string(&e->status_message, arg, arg_len);
			break;
		case 'R':
			rc = parse_recipient(e, arg, arg_len);
			break;
		case 'H':
			rc = get_text(arg, arg_len, &e->headers);
			buf_putc(&e->headers, '\n');
			break;
		case '.':
			if (arg_len != 0) {
				why = "text after '.'";
				goto bad;
			}
			done = 1;
			break;
		default:
			if ((letter < 'A' || letter > 'Z') &&
			    (letter < 'a' || letter > 'z')) {
				why = "record without a letter";
				goto bad;
			}
			/* A later version 1 writer's record: kept. */
			add_extra(e, p, (size_t)(nl - p));
			break;
		}
		if (rc < 0)
			goto bad;
		p = nl + 1;
	}
	if (!done) {
		queue_entry_free(e);
		return status_set(st, EX_DATAERR, NULL,
				  "queue file is truncated (no '.' line)");
	}
	if ((seen & (1u << ('T' - 'A'))) == 0 ||
	    (seen & (1u << ('S' - 'A'))) == 0) {
		queue_entry_free(e);
		return status_set(st, EX_DATAERR, NULL,
				  "queue file lacks its %s record",
				  (seen & (1u << ('T' - 'A'))) == 0 ? "T" :
								      "S");
	}
	return 0;
bad:
	queue_entry_free(e);
	return status_set(st, EX_DATAERR, NULL, "queue file line %u: %s",
			  line, why);
}

/* ---- files ---- */

static void
file_name(char out[NAME_SIZE], char kind, const char *id)
{
	out[0] = kind;
	out[1] = 'f';
	memcpy(out + 2, id, QID_SIZE);
}

static int
check_id(const char *id, struct status *st)
{
	char shown[QID_SIZE + 8];
	size_t i;

	if (id != NULL && qid_valid(id))
		return 0;
	/* The text may end up in a log line: printable and short. */
	for (i = 0; id != NULL && id[i] != '\0' && i < sizeof(shown) - 1; i++)
		shown[i] = id[i] > 0x20 && id[i] < 0x7f ? id[i] : '?';
	shown[i] = '\0';
	status_set(st, EX_DATAERR, NULL, "\"%s\" is not a queue id", shown);
	return -1;
}

static int
open_dir(const char *queue_dir, struct status *st)
{
	int fd = open(queue_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return status_errno(st, errno,
				    "%s: cannot open the queue directory",
				    queue_dir);
	return fd;
}

/* Writes e to tfID, syncs it, renames it over qfID and syncs the
 * directory. *renamed says whether qfID now holds e (even when the last
 * sync failed). */
static int
write_qf(int dirfd, const char *queue_dir, const struct queue_entry *e,
	 int body_fd, int *renamed, struct status *st)
{
	char tf[NAME_SIZE], qf[NAME_SIZE];
	struct buf text;
	int fd, rc = -1;

	*renamed = 0;
	file_name(tf, 't', e->id);
	file_name(qf, 'q', e->id);
	buf_init(&text);
	queue_format(e, &text);
	/* A tf left by a crash is ours to replace: we hold the lock. */
	if (unlinkat(dirfd, tf, 0) < 0 && errno != ENOENT) {
		status_errno(st, errno, "%s/%s: cannot remove", queue_dir, tf);
		goto out;
	}
	fd = openat(dirfd, tf,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0) {
		status_errno(st, errno, "%s/%s: cannot create", queue_dir, tf);
		goto out;
	}
	if (io_write_all(fd, text.data, text.len) < 0) {
		status_errno(st, errno, "%s/%s: cannot write", queue_dir, tf);
		close(fd);
		goto unlink_tf;
	}
	/* A new message's df is synced here, after the tf is written:
	 * the file system then commits both new files at once, and each
	 * file's data is on disk before the rename below. */
	if (body_fd >= 0 && fsync(body_fd) < 0) {
		status_errno(st, errno, "%s/df%s: fsync", queue_dir, e->id);
		close(fd);
		goto unlink_tf;
	}
	/* The data before the name: a qf that is there is whole. */
	if (fsync(fd) < 0) {
		status_errno(st, errno, "%s/%s: fsync", queue_dir, tf);
		close(fd);
		goto unlink_tf;
	}
	if (close(fd) < 0) {
		status_errno(st, errno, "%s/%s: close", queue_dir, tf);
		goto unlink_tf;
	}
	if (renameat(dirfd, tf, dirfd, qf) < 0) {
		status_errno(st, errno, "%s/%s: cannot rename to %s",
			     queue_dir, tf, qf);
		goto unlink_tf;
	}
	*renamed = 1;
	/* The rename is not durable until the directory is synced; this
	 * sync makes the df's name durable too (same directory). */
	if (fsync(dirfd) < 0) {
		status_errno(st, errno, "%s: fsync", queue_dir);
		goto out;
	}
	rc = 0;
	goto out;
unlink_tf:
	unlinkat(dirfd, tf, 0);
out:
	buf_free(&text);
	return rc;
}

/* ---- queueing a message ---- */

int
queue_begin(const char *queue_dir, struct queue_entry *e,
	    struct queue_draft **out, struct status *st)
{
	struct queue_draft *d;
	char df[NAME_SIZE];
	time_t now = time(NULL);
	int tries;

	*out = NULL;
	d = xmalloc(sizeof(*d));
	d->dirfd = open_dir(queue_dir, st);
	if (d->dirfd < 0) {
		free(d);
		return -1;
	}
	d->queue_dir = xstrdup(queue_dir);
	d->fd = -1;
	d->failed = 0;
	d->size = 0;
	d->fill = 0;
	/* O_EXCL makes the id ours; a clash (1 in 60^8 a second) only costs
	 * another try. */
	for (tries = 0; tries < CREATE_TRIES; tries++) {
		qid_new(d->id, now);
		file_name(df, 'd', d->id);
		d->fd = openat(d->dirfd, df,
			       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				       O_CLOEXEC,
			       0640);
		if (d->fd >= 0 || errno != EEXIST)
			break;
	}
	if (d->fd < 0) {
		status_errno(st, errno, "%s/%s: cannot create", queue_dir, df);
		goto fail;
	}
	/* Held until the qf is in place: the orphan cleanup and the
	 * runners leave a message that is being written alone. */
	if (flock(d->fd, LOCK_EX | LOCK_NB) < 0) {
		status_errno(st, errno, "%s/%s: cannot lock", queue_dir, df);
		close(d->fd);
		unlinkat(d->dirfd, df, 0);
		goto fail;
	}
	memcpy(e->id, d->id, QID_SIZE);
	if (e->created == 0)
		e->created = now;
	*out = d;
	return 0;
fail:
	close(d->dirfd);
	free(d->queue_dir);
	free(d);
	return -1;
}

static int
draft_flush(struct queue_draft *d, struct status *st)
{
	if (d->fill > 0 && io_write_all(d->fd, d->buffer, d->fill) < 0) {
		d->failed = 1;
		return status_errno(st, errno, "%s/df%s: cannot write",
				    d->queue_dir, d->id);
	}
	d->fill = 0;
	return 0;
}

int
queue_write(struct queue_draft *d, const void *data, size_t len,
	    struct status *st)
{
	if (d->failed)
		return status_set(st, EX_SOFTWARE, NULL,
				  "df%s: write after a failed write", d->id);
	if (d->fill + len > sizeof(d->buffer) && draft_flush(d, st) < 0)
		return -1;
	if (len >= sizeof(d->buffer)) {
		if (io_write_all(d->fd, data, len) < 0) {
			d->failed = 1;
			return status_errno(st, errno, "%s/df%s: cannot write",
					    d->queue_dir, d->id);
		}
	} else {
		memcpy(d->buffer + d->fill, data, len);
		d->fill += len;
	}
	d->size += len;
	return 0;
}

static void
draft_free(struct queue_draft *d)
{
	if (d->fd >= 0)
		close(d->fd);	/* releases the lock */
	close(d->dirfd);
	free(d->queue_dir);
	free(d);
}

void
queue_abort(struct queue_draft *d)
{
	char name[NAME_SIZE];

	if (d == NULL)
		return;
	/* Unlinked before the lock goes: no runner can take a half
	 * message. */
	file_name(name, 't', d->id);
	unlinkat(d->dirfd, name, 0);
	file_name(name, 'd', d->id);
	unlinkat(d->dirfd, name, 0);
	draft_free(d);
}

int
queue_commit(struct queue_draft *d, struct queue_entry *e, struct status *st)
{
	char name[NAME_SIZE];
	int renamed = 0;

	if (d->failed) {
		status_set(st, EX_SOFTWARE, NULL,
			   "df%s: commit after a failed write", d->id);
		queue_abort(d);
		return -1;
	}
	if (draft_flush(d, st) < 0)
		goto fail;
	memcpy(e->id, d->id, QID_SIZE);
	e->body_size = d->size;
	/* df data, qf data, then the names with one directory sync: the
	 * df was created before the qf's rename, and a journaling file
	 * system commits the two in that order, so a qf found after a crash
	 * has its body (a qf without df is removed by the cleanup). */
	if (write_qf(d->dirfd, d->queue_dir, e, d->fd, &renamed, st) < 0)
		goto fail;
	draft_free(d);
	return 0;
fail:
	/* The sender will be told to retry: a copy left here would be
	 * delivered twice. */
	if (renamed) {
		file_name(name, 'q', d->id);
		unlinkat(d->dirfd, name, 0);
	}
	queue_abort(d);
	return -1;
}

int
queue_create(const char *queue_dir, struct queue_entry *e, int body_fd,
	     struct status *st)
{
	struct queue_draft *d;
	char chunk[65536];
	ssize_t n;

	if (queue_begin(queue_dir, e, &d, st) < 0)
		return -1;
	for (;;) {
		n = read(body_fd, chunk, sizeof(chunk));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			status_errno(st, errno, "cannot read the message");
			queue_abort(d);
			return -1;
		}
		if (queue_write(d, chunk, (size_t)n, st) < 0) {
			queue_abort(d);
			return -1;
		}
	}
	return queue_commit(d, e, st);
}

/* ---- messages in the queue ---- */

/* Reads a regular file below dirfd; *missing is set for ENOENT. */
static int
read_file(int dirfd, const char *queue_dir, const char *name,
	  struct buf *out, int *missing, struct status *st)
{
	char chunk[65536];
	struct stat sb;
	ssize_t n;
	int fd;

	*missing = 0;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		*missing = errno == ENOENT;
		return status_errno(st, errno, "%s/%s: cannot open",
				    queue_dir, name);
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return status_set(st, EX_TEMPFAIL, "4.3.0",
				  "%s/%s: not a regular file", queue_dir,
				  name);
	}
	buf_reserve(out, (size_t)sb.st_size);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return status_errno(st, errno, "%s/%s: cannot read",
					    queue_dir, name);
		}
		buf_append(out, chunk, (size_t)n);
	}
	close(fd);
	return 0;
}

int
queue_read(const char *queue_dir, const char *id, struct queue_entry *e,
	   struct status *st)
{
	char qf[NAME_SIZE], why[STATUS_TEXT_MAX], dsn[sizeof(st->dsn)];
	struct buf text;
	int dirfd, missing, rc = -1;

	memset(e, 0, sizeof(*e));	/* freeing it is harmless */
	if (check_id(id, st) < 0 || (dirfd = open_dir(queue_dir, st)) < 0)
		return -1;
	file_name(qf, 'q', id);
	buf_init(&text);
	if (read_file(dirfd, queue_dir, qf, &text, &missing, st) == 0) {
		rc = queue_parse(text.data, text.len, e, st);
		if (rc == 0) {
			memcpy(e->id, id, QID_SIZE);
		} else {
			snprintf(why, sizeof(why), "%s", st->text);
			snprintf(dsn, sizeof(dsn), "%s", st->dsn);
			status_set(st, st->exit_code, dsn, "%s/%s: %s",
				   queue_dir, qf, why);
		}
	}
	close(dirfd);
	buf_free(&text);
	return rc;
}

int
queue_update(const char *queue_dir, const struct queue_entry *e,
	     struct status *st)
{
	char qf[NAME_SIZE];
	struct stat sb;
	int dirfd, renamed, rc;

	if (check_id(e->id, st) < 0 || (dirfd = open_dir(queue_dir, st)) < 0)
		return -1;
	/* Never bring back a message that has left the queue. */
	file_name(qf, 'q', e->id);
	if (fstatat(dirfd, qf, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = status_errno(st, errno, "%s/%s: cannot update", queue_dir,
				  qf);
		close(dirfd);
		return rc;
	}
	rc = write_qf(dirfd, queue_dir, e, -1, &renamed, st);
	close(dirfd);
	return rc;
}

int
queue_remove(const char *queue_dir, const char *id, struct status *st)
{
	static const char kinds[] = "qjdxt";
	char name[NAME_SIZE];
	int dirfd, rc = 0;
	size_t i;

	if (check_id(id, st) < 0 || (dirfd = open_dir(queue_dir, st)) < 0)
		return -1;
	/* qf first: a crash in between leaves an orphan df that the cleanup
	 * removes, never a qf without its body. The directory is synced
	 * after it: the removal may be the only record of the last
	 * recipient's delivery, and a qf that came back after a power
	 * failure would deliver to it again. */
	for (i = 0; i < sizeof(kinds) - 1; i++) {
		file_name(name, kinds[i], id);
		if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT &&
		    rc == 0)
			rc = status_errno(st, errno, "%s/%s: cannot remove",
					  queue_dir, name);
		if (i == 0 && rc == 0 && fsync(dirfd) < 0)
			rc = status_errno(st, errno, "%s: fsync", queue_dir);
	}
	close(dirfd);
	return rc;
}

/* 1 when name exists below dirfd, 0 when not, -1 on another error. */
static int
exists(int dirfd, const char *name)
{
	struct stat sb;

	if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	return errno == ENOENT ? 0 : -1;
}

enum queue_lock_result
queue_lock(const char *queue_dir, const char *id, int *lock_fd,
	   struct status *st)
{
	char df[NAME_SIZE], qf[NAME_SIZE];
	struct stat sb;
	int dirfd, fd, err;
	enum queue_lock_result result = QUEUE_LOCK_ERROR;

	*lock_fd = -1;
	if (check_id(id, st) < 0 || (dirfd = open_dir(queue_dir, st)) < 0)
		return QUEUE_LOCK_ERROR;
	file_name(df, 'd', id);
	file_name(qf, 'q', id);
	fd = openat(dirfd, df, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		if (err == ENOENT && exists(dirfd, qf) == 0) {
			status_set(st, EX_TEMPFAIL, "4.3.0",
				   "%s: no longer in the queue", id);
			result = QUEUE_LOCK_GONE;
		} else if (err == ENOENT) {
			status_set(st, EX_DATAERR, NULL,
				   "%s/%s: the message body is missing",
				   queue_dir, df);
		} else {
			status_errno(st, err, "%s/%s: cannot open", queue_dir,
				     df);
		}
		goto out;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		status_set(st, EX_TEMPFAIL, "4.3.0",
			   "%s/%s: not a regular file", queue_dir, df);
		goto close_fd;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			status_set(st, EX_TEMPFAIL, "4.3.0",
				   "%s: busy (locked by another process)", id);
			result = QUEUE_LOCK_BUSY;
		} else {
			status_errno(st, errno, "%s/%s: cannot lock",
				     queue_dir, df);
		}
		goto close_fd;
	}
	/* The holder before us may have removed the message and let go: a
	 * lock on an unlinked df, or a df whose qf went, is worth nothing. */
	if (fstat(fd, &sb) < 0 || sb.st_nlink == 0 || exists(dirfd, qf) != 1) {
		status_set(st, EX_TEMPFAIL, "4.3.0",
			   "%s: no longer in the queue", id);
		result = QUEUE_LOCK_GONE;
		goto close_fd;
	}
	*lock_fd = fd;
	result = QUEUE_LOCKED;
	goto out;
close_fd:
	close(fd);
out:
	close(dirfd);
	return result;
}

void
queue_unlock(int lock_fd)
{
	if (lock_fd >= 0)
		close(lock_fd);
}

static int
compare_ids(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids of the files of one kind, sorted (base-60 digits sort in ASCII
 * order, and ids start with their creation time: oldest first). */
static int
list_ids(const char *queue_dir, char kind, char ***ids, size_t *count,
	 struct status *st)
{
	DIR *d;
	struct dirent *de;
	size_t cap = 0;

	*ids = NULL;
	*count = 0;
	d = opendir(queue_dir);
	if (d == NULL)
		return status_errno(st, errno,
				    "%s: cannot read the queue directory",
				    queue_dir);
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL)
			break;
		if (de->d_name[0] != kind || de->d_name[1] != 'f' ||
		    !qid_valid(de->d_name + 2))
			continue;
		if (*count == cap) {
			cap = cap ? cap * 2 : 64;
			*ids = xrealloc(*ids, cap * sizeof(**ids));
		}
		(*ids)[(*count)++] = xstrdup(de->d_name + 2);
	}
	if (errno != 0) {
		status_errno(st, errno, "%s: cannot read the queue directory",
			     queue_dir);
		closedir(d);
		return -1;
	}
	closedir(d);
	if (*count > 1)
		qsort(*ids, *count, sizeof(**ids), compare_ids);
	return 0;
}

static void
free_ids(char **ids, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++)
		free(ids[i]);
	free(ids);
}

int
queue_list(const char *queue_dir, int (*fn)(const char *id, void *arg),
	   void *arg, struct status *st)
{
	char **ids;
	size_t count, i;
	int rc = 0;

	if (list_ids(queue_dir, 'q', &ids, &count, st) < 0) {
		free_ids(ids, count);
		return -1;
	}
	for (i = 0; i < count && rc == 0; i++)
		rc = fn(ids[i], arg);
	free_ids(ids, count);
	return rc;
}

static int
exists_kind(int dirfd, char kind, const char *id)
{
	char name[NAME_SIZE];

	file_name(name, kind, id);
	return exists(dirfd, name);
}

/* Removes the named kinds of one id; returns how many were there. */
static int
remove_kinds(int dirfd, const char *id, const char *kinds)
{
	char name[NAME_SIZE];
	int removed = 0;

	for (; *kinds != '\0'; kinds++) {
		file_name(name, *kinds, id);
		if (unlinkat(dirfd, name, 0) == 0)
			removed++;
	}
	return removed;
}

/* Takes the lock of an id's df if it can; -1 when busy or no df. */
static int
try_lock(int dirfd, const char *id)
{
	char df[NAME_SIZE];
	int fd;

	file_name(df, 'd', id);
	fd = openat(dirfd, df, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
queue_cleanup_orphans(const char *queue_dir, time_t now, struct status *st)
{
	char **ids = NULL;
	size_t count = 0, i;
	char name[NAME_SIZE];
	struct stat sb;
	int dirfd, fd, removed = 0;
	const char *kinds = "dtxjq";

	if ((dirfd = open_dir(queue_dir, st)) < 0)
		return -1;
	for (; *kinds != '\0'; kinds++) {
		if (list_ids(queue_dir, *kinds, &ids, &count, st) < 0) {
			free_ids(ids, count);
			close(dirfd);
			return -1;
		}
		for (i = 0; i < count; i++) {
			if (*kinds == 'q') {
				/* A qf without its body: a crash before the
				 * commit's directory sync, never acknowledged;
				 * nothing of it can be delivered. */
				file_name(name, 'q', ids[i]);
				if (exists_kind(dirfd, 'd', ids[i]) == 0 &&
				    fstatat(dirfd, name, &sb,
					    AT_SYMLINK_NOFOLLOW) == 0 &&
				    sb.st_mtime <= now - QUEUE_ORPHAN_AGE)
					removed += remove_kinds(dirfd, ids[i],
								"qxjt");
				continue;
			}
			if (*kinds == 'j') {
				/* A jf speaks of a qf's recipients: without
				 * the qf it means nothing (and only a runner
				 * holding the qf's lock writes one). */
				if (exists_kind(dirfd, 'q', ids[i]) == 0)
					removed += remove_kinds(dirfd, ids[i],
								"j");
				continue;
			}
			if (*kinds == 'x') {
				/* An xf outlives neither its qf nor its df. */
				if (exists_kind(dirfd, 'q', ids[i]) == 0 &&
				    exists_kind(dirfd, 'd', ids[i]) == 0)
					removed += remove_kinds(dirfd, ids[i],
								"x");
				continue;
			}
			if (*kinds == 'd') {
				/* Most dfs belong to a queued message; their
				 * locks are not touched. */
				file_name(name, 'd', ids[i]);
				if (exists_kind(dirfd, 'q', ids[i]) != 0 ||
				    fstatat(dirfd, name, &sb,
					    AT_SYMLINK_NOFOLLOW) < 0 ||
				    sb.st_mtime > now - QUEUE_ORPHAN_AGE)
					continue;
			}
			if (*kinds == 't' &&
			    exists_kind(dirfd, 'd', ids[i]) == 0) {
				/* Nobody writes a tf for a message without
				 * a body. */
				removed += remove_kinds(dirfd, ids[i], "t");
				continue;
			}
			/* With the lock held, no commit or update can be
			 * under way: what we see is what a crash left. */
			fd = try_lock(dirfd, ids[i]);
			if (fd < 0)
				continue;
			if (*kinds == 't')
				removed += remove_kinds(dirfd, ids[i], "t");
			else if (exists_kind(dirfd, 'q', ids[i]) == 0)
				removed += remove_kinds(dirfd, ids[i], "dxtj");
			close(fd);
		}
		free_ids(ids, count);
	}
	close(dirfd);
	return removed;
}

int
queue_append_transcript(const char *queue_dir, const char *id,
			const char *text, struct status *st)
{
	char xf[NAME_SIZE];
	struct buf line;
	struct stat sb;
	int dirfd, fd, rc = 0;

	if (check_id(id, st) < 0 || (dirfd = open_dir(queue_dir, st)) < 0)
		return -1;
	file_name(xf, 'x', id);
	fd = openat(dirfd, xf,
		    O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	close(dirfd);
	if (fd < 0)
		return status_errno(st, errno, "%s/%s: cannot open",
				    queue_dir, xf);
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return status_set(st, EX_TEMPFAIL, "4.3.0",
				  "%s/%s: not a regular file", queue_dir, xf);
	}
	buf_init(&line);
	buf_puts(&line, text);
	if (line.len == 0 || line.data[line.len - 1] != '\n')
		buf_putc(&line, '\n');
	/* One write: appends of concurrent writers do not interleave. */
	if (io_write_all(fd, line.data, line.len) < 0)
		rc = status_errno(st, errno, "%s/%s: cannot write", queue_dir,
				  xf);
	if (close(fd) < 0 && rc == 0)
		rc = status_errno(st, errno, "%s/%s: close", queue_dir, xf);
	buf_free(&line);
	return rc;
}

int
queue_read_transcript(const char *queue_dir, const char *id, struct buf *out,
		      struct status *st)
{
	char xf[NAME_SIZE];
	int dirfd, missing, rc;

	if (check_id(id, st) < 0 || (dirfd = open_dir(queue_dir, st)) < 0)
		return -1;
	file_name(xf, 'x', id);
	rc = read_file(dirfd, queue_dir, xf, out, &missing, st);
	close(dirfd);
	return rc < 0 && missing ? 0 : rc;
}
