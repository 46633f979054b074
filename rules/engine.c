/*
 * engine: procmail's evaluation order. Per nesting level it keeps what the
 * A, a, E and e flags look back at; a delivering recipe that succeeds
 * without "c" ends the run; a filter replaces the message for the recipes
 * after it (the engine then owns an in-memory copy).
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "magic.h"
#include "mime.h"
#include "msgform.h"
#include "rcparse.h"
#include "rxtrans.h"
#include "vars.h"

#define INCLUDE_DEPTH_MAX 32
#define WEIGHT_COUNT_MAX 100000L
#define LOCKSLEEP_DEFAULT 8
#define LOCKTIMEOUT_DEFAULT 1024
#define LOCK_WAIT_MAX 3600	/* never hang forever on a stuck lock */

enum run_result {
	RUN_CONTINUE,
	RUN_DELIVERED,	/* a delivering recipe succeeded: stop */
	RUN_STOP_FILE,	/* HOST differs: next rcfile */
	RUN_SWITCH	/* SWITCHRC: abort this rcfile, go on with another */
};

/* What A, a, E and e look back at, per nesting level. */
struct level {
	int lastcond;		/* last recipe without A/a: conditions met */
	int prev_matched;	/* the preceding recipe ran its action */
	int prev_succ;		/* ... and it succeeded */
};

struct run {
	struct rules_env *env;
	const struct rules_actions *act;
	struct status *st;
	struct vars vars;
	struct rx_cache *rx;

	const struct message *orig;
	struct message copy;	/* the filtered message, when filtered */
	int filtered;
	char *sender;
	struct buf from_line;	/* "From sender date\n" */
	struct buf htext;	/* From_ line and header: the H area */
	int htext_ok;
	struct buf btext;	/* the body: the B area */
	int btext_ok;
	int types_ok;		/* ATTACHMENT_TYPES is computed */

	const char *const *args;
	size_t nargs;
	const char *rcname;
	double score;
	int last_exit;
	char *lastfolder;
	long lastsize;		/* the size of the last delivery */
	int logfd;
	int verbose;
	char *global_lock;
	char *switch_to;
	int include_depth;
	int delivered;
};

/* ---- logging ---- */

static void
log_write(struct run *run, const char *p, size_t len)
{
	while (run->logfd >= 0 && len > 0) {
		ssize_t n = write(run->logfd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void diag(struct run *run, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A diagnostic: to LOGFILE as procmail writes them, and to the caller. */
static void
diag(struct run *run, const char *fmt, ...)
{
	struct buf b;
	va_list ap;

	buf_init(&b);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (run->env->log != NULL)
		run->env->log(run->env->log_arg, b.data);
	if (run->logfd >= 0) {
		struct buf line;

		buf_init(&line);
		buf_printf(&line, "deliver: %s\n", b.data);
		log_write(run, line.data, line.len);
		buf_free(&line);
	}
	buf_free(&b);
}

static void
parse_error(void *arg, const char *file, int line, const char *text)
{
	diag(arg, "%s:%d: %s", file, line, text);
}

/* ---- the message ---- */

static const struct message *
cur(const struct run *run)
{
	return run->filtered ? &run->copy : run->orig;
}

static void
read_body(const struct message *m, struct buf *out)
{
	off_t off = (off_t)m->header_len;
	char chunk[65536];
	ssize_t n;

	while ((n = message_pread(m, chunk, sizeof(chunk), off)) > 0) {
		buf_append(out, chunk, (size_t)n);
		off += n;
	}
}

/* Appends a header section with its fields unfolded: the line end before
 * a continuation line (one that starts with a blank) becomes a space, the
 * blank stays. procmail matches conditions against (and feeds "?"
 * programs) the header in this form; folders and commands get it as it
 * came. */
static void
append_unfolded(struct buf *out, const char *p, size_t len)
{
	size_t i, start = out->len;

	buf_append(out, p, len);
	for (i = start; i + 1 < out->len; i++)
		if (out->data[i] == '\n' &&
		    (out->data[i + 1] == ' ' || out->data[i + 1] == '\t'))
			out->data[i] = ' ';
}

/* The H area of conditions: the From_ line and the unfolded header. */
static const struct buf *
header_text(struct run *run)
{
	const struct message *m = cur(run);

	if (!run->htext_ok) {
		buf_reset(&run->htext);
		buf_append(&run->htext, run->from_line.data,
			   run->from_line.len);
		append_unfolded(&run->htext, m->head.data, m->header_len);
		run->htext_ok = 1;
	}
	return &run->htext;
}

static const struct buf *
body_text(struct run *run)
{
	if (!run->btext_ok) {
		buf_reset(&run->btext);
		read_body(cur(run), &run->btext);
		run->btext_ok = 1;
	}
	return &run->btext;
}

/* Replaces the current message by header + body (copied first: either may
 * point into the message being replaced). */
static void
set_message(struct run *run, const char *hdr, size_t hlen, const char *body,
	    size_t blen)
{
	struct buf data;

	buf_init(&data);
	buf_append(&data, hdr, hlen);
	buf_append(&data, body, blen);
	if (run->filtered) {
		buf_free(&run->copy.head);
		free(run->copy.envelope_sender);
	}
	memset(&run->copy, 0, sizeof(run->copy));
	run->copy.head = data;
	run->copy.fd = -1;
	run->copy.size = (off_t)data.len;
	run->copy.header_len = hlen;
	run->copy.envelope_sender = xstrdup(run->sender);
	run->copy.arrival = run->orig->arrival;
	run->filtered = 1;
	run->htext_ok = 0;
	run->btext_ok = 0;
	if (run->types_ok) {
		run->types_ok = 0;
		vars_unset(&run->vars, "ATTACHMENT_TYPES");
	}
}

/* Internal to the engine, never passed on: feed the header unfolded (to
 * the program of a "?" condition). */
#define FEED_UNFOLDED (1u << 16)

/* The part of the message a recipe's h and b flags select, as a message
 * of its own in tmp when it is not all of it (or it is to be unfolded). */
static const struct message *
select_part(struct run *run, unsigned hb, struct message *tmp)
{
	const struct message *m = cur(run);

	if ((hb & RULES_HEADER) && (hb & RULES_BODY) &&
	    !(hb & FEED_UNFOLDED))
		return m;
	memset(tmp, 0, sizeof(*tmp));
	buf_init(&tmp->head);
	tmp->fd = -1;
	tmp->envelope_sender = m->envelope_sender;
	tmp->arrival = m->arrival;
	if (hb & RULES_HEADER) {
		if (hb & FEED_UNFOLDED)
			append_unfolded(&tmp->head, m->head.data,
					m->header_len);
		else
			buf_append(&tmp->head, m->head.data, m->header_len);
		tmp->header_len = m->header_len;
		if (hb & RULES_BODY) {
			const struct buf *b = body_text(run);

			buf_append(&tmp->head, b->data, b->len);
		}
	} else if (hb & RULES_BODY) {
		const struct buf *b = body_text(run);

		buf_append(&tmp->head, b->data, b->len);
	}
	tmp->size = (off_t)tmp->head.len;
	return tmp;
}

static unsigned
feed_flags(unsigned rflags)
{
	unsigned f = 0;

	if (rflags & RC_FLAG_h)
		f |= RULES_HEADER;
	if (rflags & RC_FLAG_b)
		f |= RULES_BODY;
	if (f == 0)
		f = RULES_HEADER | RULES_BODY;
	if (rflags & RC_FLAG_r)
		f |= RULES_RAW;
	if (rflags & RC_FLAG_i)
		f |= RULES_IGNORE_WRITE_ERRORS;
	if (rflags & (RC_FLAG_w | RC_FLAG_W))
		f |= RULES_WAIT;
	return f;
}

struct callmsg {
	struct rules_msg msg;
	struct message tmp;
	int own_tmp;
	char **envp;
};

static void
callmsg_init(struct run *run, unsigned hb, struct callmsg *cm)
{
	memset(cm, 0, sizeof(*cm));
	cm->msg.message = select_part(run, hb, &cm->tmp);
	cm->own_tmp = cm->msg.message == &cm->tmp;
	cm->envp = vars_envp_new(&run->vars);
	cm->msg.envp = cm->envp;
	cm->msg.sender = run->sender;
}

static void
callmsg_free(struct callmsg *cm)
{
	if (cm->own_tmp)
		buf_free(&cm->tmp.head);
	vars_envp_free(cm->envp);
}

const char *
rules_msg_getvar(const struct rules_msg *msg, const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; msg->envp != NULL && msg->envp[i] != NULL; i++)
		if (strncmp(msg->envp[i], name, n) == 0 &&
		    msg->envp[i][n] == '=')
			return msg->envp[i] + n + 1;
	return NULL;
}

/* Runs a command with the message (or part) on stdin. Returns 0 when it
 * ran; *exit_status then has its exit code. */
static int
run_command(struct run *run, const char *command, unsigned flags,
	    int capture, struct buf *output, int *exit_status)
{
	struct callmsg cm;
	struct status st;
	int rc;

	*exit_status = -1;
	if (run->act->pipe == NULL) {
		diag(run, "no way to run \"%s\"", command);
		return -1;
	}
	callmsg_init(run, flags, &cm);
	status_ok(&st);
	flags &= ~FEED_UNFOLDED;
	rc = run->act->pipe(run->act->arg, command, &cm.msg, (int)flags,
			    capture, output, exit_status, &st);
	callmsg_free(&cm);
	if (rc < 0) {
		diag(run, "failed to run \"%s\": %s", command, st.text);
		*exit_status = -1;
	} else {
		run->last_exit = *exit_status;
	}
	return rc;
}

/* ---- variables ---- */

static void
special_var(void *arg, char name, struct buf *out)
{
	struct run *run = arg;
	size_t i;

	switch (name) {
	case '#':
		buf_printf(out, "%zu", run->nargs);
		break;
	case '$':
		buf_printf(out, "%ld", (long)getpid());
		break;
	case '?':
		buf_printf(out, "%d", run->last_exit);
		break;
	case '_':
		buf_puts(out, run->rcname != NULL ? run->rcname : "");
		break;
	case '-':
		buf_puts(out, run->lastfolder != NULL ? run->lastfolder : "");
		break;
	case '=':
		buf_printf(out, "%ld", (long)run->score);
		break;
	case '@':
		for (i = 0; i < run->nargs; i++)
			buf_printf(out, "%s%s", i > 0 ? " " : "",
				   run->args[i]);
		break;
	default:
		if (name >= '1' && name <= '9' &&
		    (size_t)(name - '1') < run->nargs)
			buf_puts(out, run->args[name - '1']);
		else if (name == '0')
			buf_puts(out, "deliver");
		break;
	}
}

static void
backquote_run(void *arg, const char *command, struct buf *out)
{
	struct run *run = arg;
	int status;

	run_command(run, command, RULES_HEADER | RULES_BODY, 1, out,
		    &status);
}

/* ATTACHMENT_TYPES, computed the first time text refers to it. */
static void
need_types(struct run *run, const char *text)
{
	struct buf types;
	const struct buf *b;
	const struct message *m;

	if (run->types_ok || strstr(text, "ATTACHMENT_TYPES") == NULL)
		return;
	run->types_ok = 1;
	buf_init(&types);
	m = cur(run);
	b = body_text(run);
	mime_attachment_types(m->head.data, m->header_len, b->data, b->len,
			      magic_type_of, &types);
	vars_set(&run->vars, "ATTACHMENT_TYPES", types.data);
	buf_free(&types);
}

static void
expand(struct run *run, const char *text, enum vars_mode mode,
       struct buf *out, size_t *nwords)
{
	struct vars_ctx ctx;

	need_types(run, text);
	ctx.vars = &run->vars;
	ctx.special = special_var;
	ctx.backquote = backquote_run;
	ctx.arg = run;
	vars_expand(&ctx, text, mode, out, nwords);
}

static long
var_long(struct run *run, const char *name, long dflt)
{
	const char *v = vars_get(&run->vars, name);
	char *end;
	long n;

	if (v == NULL || *v == '\0')
		return dflt;
	n = strtol(v, &end, 10);
	return end == v ? dflt : n;
}

/* ---- locks ---- */

/* A dot-lock as procmail makes them: created exclusively, forced away
 * when older than LOCKTIMEOUT. */
static int
lock_take(struct run *run, const char *path)
{
	long sleep_s = var_long(run, "LOCKSLEEP", LOCKSLEEP_DEFAULT);
	long timeout = var_long(run, "LOCKTIMEOUT", LOCKTIMEOUT_DEFAULT);
	time_t start = time(NULL);

	if (sleep_s < 1)
		sleep_s = 1;
	for (;;) {
		struct stat sb;
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
				    O_NOFOLLOW, 0);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (errno != EEXIST) {
			diag(run, "error while locking \"%s\": %s", path,
			     strerror(errno));
			return -1;
		}
		if (timeout > 0 && lstat(path, &sb) == 0 &&
		    time(NULL) - sb.st_mtime > timeout) {
			diag(run, "forcing lock on \"%s\"", path);
			unlink(path);
			continue;
		}
		if (time(NULL) - start > LOCK_WAIT_MAX) {
			diag(run, "lock timeout on \"%s\"", path);
			return -1;
		}
		sleep((unsigned)sleep_s);
	}
}

static void
lock_release(const char *path)
{
	if (path != NULL)
		unlink(path);
}

/* ---- the logfile ---- */

static void
open_logfile(struct run *run, const char *path)
{
	if (run->logfd >= 0)
		close(run->logfd);
	run->logfd = -1;
	if (path == NULL || *path == '\0')
		return;
	run->logfd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
				O_NOCTTY, 0666);
	if (run->logfd < 0)
		diag(run, "cannot open logfile \"%s\": %s", path,
		     strerror(errno));
}

/* The abstract's Subject line: the field's first line as it stands in the
 * header (name spelt as there), at most 78 characters, blanks and control
 * characters such as tab and CR shown as spaces: procmail's logabstract(). */
static void
put_field_line(struct buf *out, const char *header, size_t len,
	       const char *name)
{
	size_t n = strlen(name), i = 0, k;

	while (i < len) {
		const char *line = header + i;
		const char *nl = memchr(line, '\n', len - i);
		size_t ll = nl != NULL ? (size_t)(nl - line) : len - i;

		if (ll > n && strncasecmp(line, name, n) == 0 &&
		    line[n] == ':') {
			if (ll > 78)
				ll = 78;
			buf_putc(out, ' ');
			for (k = 0; k < ll; k++) {
				char c = line[k];

				buf_putc(out, c == '\t' || c == '\v' ||
					 c == '\f' || c == '\r' ? ' ' : c);
			}
			buf_putc(out, '\n');
			return;
		}
		i += ll + 1;
	}
}

/* procmail's abstract: the From_ line, the Subject, the folder padded with
 * tabs to column 72 and the size in 7 columns. */
static void
log_abstract(struct run *run, const char *folder, long size)
{
	const struct message *m = cur(run);
	struct buf out;
	size_t flen = strlen(folder), col;

	if (run->logfd < 0)
		return;
	buf_init(&out);
	buf_append(&out, run->from_line.data, run->from_line.len);
	put_field_line(&out, m->head.data, m->header_len, "Subject");
	if (flen > 60)
		flen = 60;
	buf_printf(&out, "  Folder: %.*s", (int)flen, folder);
	col = 10 + flen;
	do {
		buf_putc(&out, '\t');
		col = (col / 8 + 1) * 8;
	} while (col < 72);
	buf_printf(&out, "%7ld\n", size);
	log_write(run, out.data, out.len);
	buf_free(&out);
}

/* After a delivering recipe succeeded: the abstract when LOGABSTRACT
 * asks for one (default: for the final delivery only). */
static void
maybe_abstract(struct run *run, const char *folder, long size, int copy)
{
	const char *la = vars_get(&run->vars, "LOGABSTRACT");

	run->lastsize = size;
	if (la != NULL && strcasecmp(la, "all") == 0)
		log_abstract(run, folder, size);
	else if (!copy && vars_is_true(la, 1))
		log_abstract(run, folder, size);
}

static void
set_lastfolder(struct run *run, const char *value)
{
	free(run->lastfolder);
	run->lastfolder = xstrdup(value);
	vars_set(&run->vars, "LASTFOLDER", value);
}

/* ---- conditions ---- */

static const char *
area(struct run *run, unsigned flags, size_t *len, struct buf *tmp)
{
	int h = (flags & RC_FLAG_H) != 0, b = (flags & RC_FLAG_B) != 0;
	const struct buf *t;

	if (!h && !b)
		h = 1;
	if (h && b) {
		buf_reset(tmp);
		t = header_text(run);
		buf_append(tmp, t->data, t->len);
		t = body_text(run);
		buf_append(tmp, t->data, t->len);
		*len = tmp->len;
		return tmp->data;
	}
	t = h ? header_text(run) : body_text(run);
	*len = t->len;
	return t->data;
}

/* x to the power y for the scoring, without libm: the mail path should not
 * load another shared library for the rare weighted recipe. Integer powers
 * by squaring; others as e^(y ln x) from two short series (ample for a
 * score). */
static double
power(double x, double y)
{
	double result = 1.0, base = x, ln = 0.0, z, z2, term, t, r, e;
	long n = (long)y;
	int k, i, exp2;

	if (y == (double)n && n >= 0 && n < (1L << 30)) {
		while (n > 0) {
			if (n & 1)
				result *= base;
			base *= base;
			n >>= 1;
		}
		return result;
	}
	if (x <= 0.0)
		return x == 0.0 ? 0.0 : 1.0;
	/* ln x = e ln 2 + ln m, m in [0.5, 1): ln m = 2 atanh((m-1)/(m+1)) */
	z = frexp(x, &exp2);
	z = (z - 1.0) / (z + 1.0);
	z2 = z * z;
	term = z;
	for (i = 1; i < 60; i += 2) {
		ln += term / i;
		term *= z2;
	}
	ln = 2.0 * ln + exp2 * 0.69314718055994530942;
	/* e^t = 2^k e^r with |r| <= ln 2 / 2 */
	t = y * ln;
	if (t > 700.0)
		return 1e300;
	if (t < -700.0)
		return 0.0;
	k = (int)(t / 0.69314718055994530942 + (t < 0 ? -0.5 : 0.5));
	r = t - k * 0.69314718055994530942;
	e = 1.0;
	term = 1.0;
	for (i = 1; i < 25; i++) {
		term *= r / i;
		e += term;
	}
	return ldexp(e, k);
}

static double
weight_sum(double w, double x, long n)
{
	if (n <= 0)
		return 0;
	if (x == 1.0)
		return w * (double)n;
	return w * (power(x, (double)n) - 1.0) / (x - 1.0);
}

/* Evaluates one condition. Returns 1 (met), 0 (not met), and adds to
 * *score for a weighted one (which then always "passes"). */
static int
eval_condition(struct run *run, const struct rc_recipe *r,
	       const struct rc_cond *c, double *score)
{
	struct rc_cond_parts parts;
	struct buf expanded, tmp, err;
	int negate, result = 0;
	const char *rest;

	buf_init(&expanded);
	buf_init(&tmp);
	buf_init(&err);
	rc_cond_split(c->text, &parts);
	negate = parts.negate;
	rest = parts.rest;
	if (parts.kind == RC_COND_EXPAND) {
		expand(run, rest, VARS_DQUOTE, &expanded, NULL);
		rc_cond_split(expanded.data, &parts);
		negate ^= parts.negate;
		rest = parts.rest;
		if (parts.kind == RC_COND_EXPAND)
			parts.kind = RC_COND_REGEX;	/* "$$": once only */
	}
	need_types(run, c->text);
	switch (parts.kind) {
	case RC_COND_REGEX:
	case RC_COND_VAR: {
		unsigned flags = r->flags;
		const char *text;
		size_t len;
		struct rx *rx;

		if (parts.kind == RC_COND_VAR) {
			char *name = xstrndup(parts.var, parts.var_len);

			if (strcmp(name, "H") == 0 || strcmp(name, "B") == 0 ||
			    strcmp(name, "HB") == 0 ||
			    strcmp(name, "BH") == 0) {
				flags &= ~(unsigned)(RC_FLAG_H | RC_FLAG_B);
				if (strchr(name, 'H') != NULL)
					flags |= RC_FLAG_H;
				if (strchr(name, 'B') != NULL)
					flags |= RC_FLAG_B;
				text = area(run, flags, &len, &tmp);
			} else {
				const char *v = vars_get(&run->vars, name);

				buf_puts(&tmp, v != NULL ? v : "");
				text = tmp.data;
				len = tmp.len;
			}
			free(name);
		} else {
			text = area(run, flags, &len, &tmp);
		}
		rx = rx_get(run->rx, rest, (r->flags & RC_FLAG_D) != 0, &err);
		if (rx == NULL) {
			diag(run, "%s:%d: %s", run->rcname, c->line, err.data);
			result = 0;
			break;
		}
		if (c->weighted) {
			long n = rx_count(rx, text, len,
					  c->exponent == 0.0 ? 1 :
					  WEIGHT_COUNT_MAX);

			if (negate)
				n = n == 0 ? 1 : 0;
			*score += weight_sum(c->weight, c->exponent, n);
			result = 1;
		} else {
			size_t ms = 0, me = 0;
			int found = rx_search(rx, text, len, 0, &ms, &me) == 1;

			if (found && !negate && rx_has_split(rx)) {
				char *match = xstrndup(text + ms, me - ms);

				vars_set(&run->vars, "MATCH", match);
				free(match);
			}
			result = found != negate;
		}
		if (run->verbose)
			diag(run, "%s on \"%s\"", result ? "Match" : "No match",
			     rest);
		break;
	}
	case RC_COND_PROGRAM: {
		struct buf cmd;
		int status, ran;
		unsigned feed = 0;

		buf_init(&cmd);
		expand(run, rest, VARS_COMMAND, &cmd, NULL);
		/* procmail feeds the program the area the H and B flags
		 * select, as for a regex: the header by default */
		if (r->flags & RC_FLAG_H)
			feed |= RULES_HEADER;
		if (r->flags & RC_FLAG_B)
			feed |= RULES_BODY;
		if (feed == 0)
			feed = RULES_HEADER;
		feed |= FEED_UNFOLDED;
		ran = run_command(run, cmd.data, feed, 0, NULL, &status) == 0;
		buf_free(&cmd);
		if (c->weighted) {
			if (negate)
				*score += weight_sum(c->weight, c->exponent,
						     ran ? status : 1);
			else
				*score += ran && status == 0 ? c->weight :
					c->exponent;
			result = 1;
		} else {
			result = (ran && status == 0) != negate;
		}
		break;
	}
	case RC_COND_LESS:
	case RC_COND_MORE: {
		/* procmail's mail starts with its From_ line */
		double size = (double)cur(run)->size +
			      (double)run->from_line.len;
		double limit = strtod(rest, NULL);

		if (c->weighted) {
			double ratio;

			if (size <= 0)
				size = 1;
			if (limit <= 0)
				limit = 1;
			ratio = parts.kind == RC_COND_MORE ? size / limit :
				limit / size;
			*score += c->weight * power(ratio, c->exponent);
			result = 1;
		} else {
			int met = parts.kind == RC_COND_LESS ? size < limit :
				size > limit;

			result = met != negate;
		}
		break;
	}
	case RC_COND_EXPAND:
		break;
	}
	buf_free(&expanded);
	buf_free(&tmp);
	buf_free(&err);
	return result;
}

/* All conditions of a recipe: met (1) or not (0); sets $=. */
static int
eval_conditions(struct run *run, const struct rc_recipe *r)
{
	double score = 0;
	int weighted = 0;
	size_t i;

	for (i = 0; i < r->nconds; i++) {
		const struct rc_cond *c = &r->conds[i];

		if (c->weighted)
			weighted = 1;
		if (!eval_condition(run, r, c, &score)) {
			run->score = score;
			return 0;
		}
		if (score >= (double)INT_MAX || score <= -(double)INT_MAX)
			break;
	}
	run->score = score;
	return weighted ? score > 0 : 1;
}

/* ---- actions ---- */

static enum rules_folder_type
folder_type(const char *path, struct buf *clean)
{
	size_t n = strlen(path);
	struct stat sb;

	buf_reset(clean);
	if (strcmp(path, "/dev/null") == 0) {
		buf_puts(clean, path);
		return RULES_DEVNULL;
	}
	if (n >= 2 && strcmp(path + n - 2, "/.") == 0) {
		buf_append(clean, path, n - 2);
		return RULES_MH;
	}
	if (n >= 1 && path[n - 1] == '/') {
		buf_append(clean, path, n - 1);
		return RULES_MAILDIR;
	}
	buf_puts(clean, path);
	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		return RULES_DIRECTORY;
	return RULES_MBOX;
}

static long
logged_size(const struct message *m, enum rules_folder_type type,
	    const struct run *run, unsigned feed)
{
	long size = (long)m->size;

	if ((feed & RULES_HEADER) && (type == RULES_MBOX ||
				      type == RULES_DEVNULL))
		size += (long)run->from_line.len;
	return size;
}

static int
do_folder(struct run *run, const struct rc_recipe *r, unsigned feed)
{
	struct buf words, clean, stored, lastfolder, lock;
	size_t nwords = 0, i;
	const char *w;
	int ok = 1, locked = 0;
	long size = 0;
	struct callmsg cm;

	buf_init(&words);
	buf_init(&clean);
	buf_init(&stored);
	buf_init(&lastfolder);
	buf_init(&lock);
	expand(run, r->action_text, VARS_WORDS, &words, &nwords);
	if (nwords == 0) {
		diag(run, "%s: empty folder name", run->rcname);
		ok = 0;
		goto out;
	}
	if (r->locked) {
		enum rules_folder_type t = folder_type(words.data, &clean);

		if (r->lockfile != NULL)
			expand(run, r->lockfile, VARS_ASSIGN, &lock, NULL);
		else if (t == RULES_MBOX) {
			/* The mbox writer takes "folder.lock" itself (with
			 * liblockfile); taking it here would deadlock. */
		} else if (t != RULES_DEVNULL) {
			const char *ext = vars_get(&run->vars, "LOCKEXT");

			buf_printf(&lock, "%s%s", clean.data,
				   ext != NULL ? ext : ".lock");
		}
		if (lock.len > 0) {
			if (lock_take(run, lock.data) < 0) {
				ok = 0;
				goto out;
			}
			locked = 1;
		}
	}
	callmsg_init(run, feed, &cm);
	for (i = 0, w = words.data; i < nwords; i++, w += strlen(w) + 1) {
		enum rules_folder_type type = folder_type(w, &clean);
		struct status st;

		buf_reset(&stored);
		status_ok(&st);
		if (run->act->folder == NULL ||
		    run->act->folder(run->act->arg, clean.data, type, &cm.msg,
				     (int)feed, &stored, &st) < 0) {
			diag(run, "error while writing to \"%s\"%s%s", w,
			     st.text[0] != '\0' ? ": " : "", st.text);
			ok = 0;
			break;
		}
		if (lastfolder.len > 0)
			buf_putc(&lastfolder, ' ');
		buf_puts(&lastfolder, stored.len > 0 ? stored.data : w);
		size = logged_size(cm.msg.message, type, run, feed);
		/* procmail writes one file and links the other directories;
		 * an mbox takes only the first name. */
		if (type != RULES_DIRECTORY && type != RULES_MAILDIR &&
		    type != RULES_MH)
			break;
	}
	callmsg_free(&cm);
	if (ok) {
		set_lastfolder(run, lastfolder.data);
		maybe_abstract(run, lastfolder.data, size,
			       (r->flags & RC_FLAG_c) != 0);
	}
	if (locked)
		lock_release(lock.data);
out:
	buf_free(&words);
	buf_free(&clean);
	buf_free(&stored);
	buf_free(&lastfolder);
	buf_free(&lock);
	return ok;
}

/* Uses a filter's output as the message (or its header or body). */
static void
apply_filter(struct run *run, unsigned feed, struct buf *out)
{
	const struct message *m = cur(run);
	const char *p = out->data, *end = out->data + out->len, *hend;
	struct buf hdr;

	buf_init(&hdr);
	if (feed & RULES_HEADER) {
		/* A From_ line in the output is the envelope line, not a
		 * header field. */
		if (end - p >= 5 && memcmp(p, "From ", 5) == 0) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));

			if (nl != NULL) {
				buf_reset(&run->from_line);
				buf_append(&run->from_line, p,
					   (size_t)(nl + 1 - p));
				p = nl + 1;
			}
		}
	}
	if ((feed & RULES_HEADER) && (feed & RULES_BODY)) {
		const char *q = p;

		hend = NULL;
		if (q < end && *q == '\n') {
			hend = q + 1;
		} else {
			while (q < end) {
				const char *nl = memchr(q, '\n',
							(size_t)(end - q));

				if (nl == NULL)
					break;
				if (nl + 1 < end && nl[1] == '\n') {
					hend = nl + 2;
					break;
				}
				q = nl + 1;
			}
		}
		if (hend == NULL)
			hend = end;
		buf_append(&hdr, p, (size_t)(hend - p));
		if (hdr.len > 0 && hend == end) {
			if (hdr.data[hdr.len - 1] != '\n')
				buf_putc(&hdr, '\n');
			buf_putc(&hdr, '\n');
		}
		set_message(run, hdr.data, hdr.len, hend, (size_t)(end - hend));
	} else if (feed & RULES_HEADER) {
		buf_append(&hdr, p, (size_t)(end - p));
		if (hdr.len > 0 && hdr.data[hdr.len - 1] != '\n')
			buf_putc(&hdr, '\n');
		if (hdr.len > 0 && (hdr.len < 2 ||
				    hdr.data[hdr.len - 2] != '\n'))
			buf_putc(&hdr, '\n');
		{
			const struct buf *b = body_text(run);
			struct buf body;

			buf_init(&body);
			buf_append(&body, b->data, b->len);
			set_message(run, hdr.data, hdr.len, body.data,
				    body.len);
			buf_free(&body);
		}
	} else {
		buf_append(&hdr, m->head.data, m->header_len);
		set_message(run, hdr.data, hdr.len, p, (size_t)(end - p));
	}
	buf_free(&hdr);
}

static int
do_pipe(struct run *run, const struct rc_recipe *r, unsigned feed,
	int *delivering)
{
	struct buf cmd, out, lock;
	int status = -1, ok = 1, locked = 0;
	int wait = (r->flags & (RC_FLAG_w | RC_FLAG_W)) != 0;
	int quiet = (r->flags & RC_FLAG_W) != 0;

	buf_init(&cmd);
	buf_init(&out);
	buf_init(&lock);
	expand(run, r->action_text, VARS_COMMAND, &cmd, NULL);
	*delivering = r->capture == NULL && !(r->flags & RC_FLAG_f);
	if (r->locked && r->lockfile != NULL) {
		expand(run, r->lockfile, VARS_ASSIGN, &lock, NULL);
		if (lock.len > 0) {
			if (lock_take(run, lock.data) < 0) {
				ok = 0;
				goto out;
			}
			locked = 1;
		}
	}
	if (run_command(run, cmd.data, feed, !*delivering, &out, &status) <
	    0) {
		ok = 0;
	} else if (r->capture != NULL) {
		/* procmail strips exactly one trailing newline */
		if (out.len > 0 && out.data[out.len - 1] == '\n')
			buf_truncate(&out, out.len - 1);
		vars_set(&run->vars, r->capture, out.data);
		if (wait && status != 0)
			ok = 0;
	} else if (r->flags & RC_FLAG_f) {
		if (wait && status != 0) {
			if (!quiet)
				diag(run, "Program failure (%d) of \"%s\"",
				     status, cmd.data);
			diag(run, "Rescue of unfiltered data succeeded");
			ok = 0;
		} else {
			apply_filter(run, feed, &out);
		}
	} else {
		if (wait && status != 0) {
			if (!quiet)
				diag(run, "Program failure (%d) of \"%s\"",
				     status, cmd.data);
			ok = 0;
		} else {
			struct message tmp;
			const struct message *m = select_part(run, feed, &tmp);

			set_lastfolder(run, cmd.data);
			maybe_abstract(run, cmd.data,
				       logged_size(m, RULES_MBOX, run, feed),
				       (r->flags & RC_FLAG_c) != 0);
			if (m == &tmp)
				buf_free(&tmp.head);
		}
	}
	if (locked)
		lock_release(lock.data);
out:
	buf_free(&cmd);
	buf_free(&out);
	buf_free(&lock);
	return ok;
}

static int
do_forward(struct run *run, const struct rc_recipe *r, unsigned feed)
{
	struct buf words;
	size_t nwords = 0, i;
	const char **addrs;
	const char *w;
	struct callmsg cm;
	struct status st;
	int ok;

	buf_init(&words);
	expand(run, r->action_text, VARS_WORDS, &words, &nwords);
	if (nwords == 0) {
		diag(run, "%s: no address to forward to", run->rcname);
		buf_free(&words);
		return 0;
	}
	addrs = xcalloc(nwords, sizeof(*addrs));
	for (i = 0, w = words.data; i < nwords; i++, w += strlen(w) + 1)
		addrs[i] = w;
	callmsg_init(run, feed, &cm);
	status_ok(&st);
	ok = run->act->forward != NULL &&
	     run->act->forward(run->act->arg, addrs, nwords, &cm.msg,
			       &st) == 0;
	if (!ok) {
		diag(run, "forwarding failed%s%s",
		     st.text[0] != '\0' ? ": " : "", st.text);
	} else {
		struct buf lf;
		const char *sm = vars_get(&run->vars, "SENDMAIL");
		const char *smf = vars_get(&run->vars, "SENDMAILFLAGS");

		/* procmail's LASTFOLDER: the command it ran */
		buf_init(&lf);
		buf_puts(&lf, sm != NULL ? sm : "/usr/sbin/sendmail");
		if (smf != NULL && *smf != '\0')
			buf_printf(&lf, " %s", smf);
		for (i = 0; i < nwords; i++)
			buf_printf(&lf, " %s", addrs[i]);
		set_lastfolder(run, lf.data);
		maybe_abstract(run, lf.data,
			       logged_size(cm.msg.message, RULES_MBOX, run,
					   feed),
			       (r->flags & RC_FLAG_c) != 0);
		buf_free(&lf);
	}
	callmsg_free(&cm);
	free(addrs);
	buf_free(&words);
	return ok;
}

/* ---- items ---- */

static enum run_result run_items(struct run *run, const struct rc_item *items,
				 size_t n, struct level *lv);
static enum run_result run_file(struct run *run, const char *path,
				struct level *lv);

/* The state a "c" block's clone leaves behind untouched. */
struct snapshot {
	struct vars vars;
	struct message copy;
	int filtered;
	struct buf from_line;
	char *lastfolder;
	int logfd;
};

static void
snapshot_take(struct run *run, struct snapshot *s)
{
	vars_copy(&s->vars, &run->vars);
	s->filtered = run->filtered;
	s->copy = run->copy;
	if (run->filtered) {
		buf_init(&s->copy.head);
		buf_append(&s->copy.head, run->copy.head.data,
			   run->copy.head.len);
		s->copy.envelope_sender = xstrdup(run->copy.envelope_sender);
	}
	buf_init(&s->from_line);
	buf_append(&s->from_line, run->from_line.data, run->from_line.len);
	s->lastfolder = run->lastfolder != NULL ?
		xstrdup(run->lastfolder) : NULL;
	s->logfd = run->logfd >= 0 ?
		fcntl(run->logfd, F_DUPFD_CLOEXEC, 3) : -1;
}

static void
snapshot_restore(struct run *run, struct snapshot *s)
{
	char *maildir;

	vars_free(&run->vars);
	run->vars = s->vars;
	if (run->filtered) {
		buf_free(&run->copy.head);
		free(run->copy.envelope_sender);
	}
	run->copy = s->copy;
	run->filtered = s->filtered;
	buf_free(&run->from_line);
	run->from_line = s->from_line;
	free(run->lastfolder);
	run->lastfolder = s->lastfolder;
	if (run->logfd >= 0)
		close(run->logfd);
	run->logfd = s->logfd;
	run->htext_ok = run->btext_ok = 0;
	run->types_ok = vars_get(&run->vars, "ATTACHMENT_TYPES") != NULL;
	/* The clone may have changed directory. */
	maildir = (char *)vars_get(&run->vars, "MAILDIR");
	if (maildir != NULL && chdir(maildir) < 0)
		diag(run, "cannot chdir to \"%s\": %s", maildir,
		     strerror(errno));
}

static int
do_block(struct run *run, const struct rc_recipe *r, enum run_result *res)
{
	struct level inner = { 1, 1, 1 };

	*res = RUN_CONTINUE;
	if (r->flags & RC_FLAG_c) {
		/* procmail clones itself; the clone runs the block and ends
		 * there, the parent goes on after it. */
		struct snapshot s;
		int saved = run->delivered;
		enum run_result rr;

		snapshot_take(run, &s);
		rr = run_items(run, r->block, r->nblock, &inner);
		snapshot_restore(run, &s);
		run->delivered = saved;
		if (rr == RUN_SWITCH) {
			free(run->switch_to);
			run->switch_to = NULL;
		}
		return 1;
	}
	*res = run_items(run, r->block, r->nblock, &inner);
	return 1;
}

static enum run_result
run_recipe(struct run *run, const struct rc_recipe *r, struct level *lv)
{
	unsigned f = r->flags, feed = feed_flags(f);
	int chained = (f & (RC_FLAG_A | RC_FLAG_a)) != 0;
	int matched, ok = 0, delivering = 0;
	enum run_result res = RUN_CONTINUE;

	if ((chained && !lv->lastcond) || ((f & RC_FLAG_a) && !lv->prev_succ) ||
	    ((f & RC_FLAG_e) && !(lv->prev_matched && !lv->prev_succ))) {
		lv->prev_matched = 0;
		lv->prev_succ = 0;
		return RUN_CONTINUE;
	}
	if ((f & RC_FLAG_E) && lv->prev_matched) {
		/* else: skipped, and so are the E recipes after it */
		if (!chained)
			lv->lastcond = 0;
		return RUN_CONTINUE;
	}
	matched = eval_conditions(run, r);
	if (!chained)
		lv->lastcond = matched;
	lv->prev_matched = matched;
	if (!matched) {
		lv->prev_succ = 0;
		return RUN_CONTINUE;
	}
	switch (r->action) {
	case RC_ACTION_BLOCK:
		ok = do_block(run, r, &res);
		break;
	case RC_ACTION_FOLDER:
		if (r->action_text == NULL || r->action_text[0] == '\0')
			break;
		delivering = 1;
		ok = do_folder(run, r, feed);
		break;
	case RC_ACTION_PIPE:
		ok = do_pipe(run, r, feed, &delivering);
		break;
	case RC_ACTION_FORWARD:
		delivering = 1;
		ok = do_forward(run, r, feed);
		break;
	}
	lv->prev_succ = ok;
	if (res != RUN_CONTINUE)
		return res;
	if (delivering && ok && !(f & RC_FLAG_c)) {
		run->delivered = 1;
		return RUN_DELIVERED;
	}
	return RUN_CONTINUE;
}

static enum run_result
assign(struct run *run, const struct rc_item *it, struct level *lv)
{
	struct buf val;
	const char *name = it->name;
	enum run_result res = RUN_CONTINUE;

	if (strcmp(name, "ATTACHMENT_TYPES") == 0) {
		diag(run, "%s:%d: ATTACHMENT_TYPES is read-only", run->rcname,
		     it->line);
		return RUN_CONTINUE;
	}
	if (it->value == NULL) {
		vars_unset(&run->vars, name);
		if (strcmp(name, "LOGFILE") == 0) {
			open_logfile(run, NULL);
		} else if (strcmp(name, "LOCKFILE") == 0) {
			lock_release(run->global_lock);
			free(run->global_lock);
			run->global_lock = NULL;
		} else if (strcmp(name, "SWITCHRC") == 0) {
			free(run->switch_to);
			run->switch_to = NULL;
			return RUN_SWITCH;
		}
		return RUN_CONTINUE;
	}
	buf_init(&val);
	expand(run, it->value, VARS_ASSIGN, &val, NULL);
	if (strcmp(name, "INCLUDERC") == 0) {
		vars_set(&run->vars, name, val.data);
		res = run_file(run, val.data, lv);
	} else if (strcmp(name, "SWITCHRC") == 0) {
		struct stat sb;

		vars_set(&run->vars, name, val.data);
		if (val.len == 0) {
			free(run->switch_to);
			run->switch_to = NULL;
			res = RUN_SWITCH;
		} else if (stat(val.data, &sb) < 0 ||
			   !(S_ISREG(sb.st_mode) ||
			     strcmp(val.data, "/dev/null") == 0)) {
			diag(run, "%s:%d: couldn't read \"%s\"", run->rcname,
			     it->line, val.data);
		} else {
			free(run->switch_to);
			run->switch_to = xstrdup(val.data);
			res = RUN_SWITCH;
		}
	} else if (strcmp(name, "SHIFT") == 0) {
		long k = strtol(val.data, NULL, 10);

		if (k > 0) {
			size_t s = (size_t)k > run->nargs ? run->nargs :
				(size_t)k;

			run->args += s;
			run->nargs -= s;
		}
	} else {
		vars_set(&run->vars, name, val.data);
	}
	if (strcmp(name, "MAILDIR") == 0) {
		if (chdir(val.data) < 0)
			diag(run, "couldn't chdir to \"%s\": %s", val.data,
			     strerror(errno));
	} else if (strcmp(name, "LOGFILE") == 0) {
		open_logfile(run, val.data);
	} else if (strcmp(name, "LOG") == 0) {
		log_write(run, val.data, val.len);
	} else if (strcmp(name, "UMASK") == 0) {
		umask((mode_t)(strtol(val.data, NULL, 8) & 0777));
	} else if (strcmp(name, "VERBOSE") == 0) {
		run->verbose = vars_is_true(val.data, 0);
	} else if (strcmp(name, "LOCKFILE") == 0) {
		lock_release(run->global_lock);
		free(run->global_lock);
		run->global_lock = NULL;
		if (val.len > 0 && lock_take(run, val.data) == 0)
			run->global_lock = xstrdup(val.data);
	} else if (strcmp(name, "HOST") == 0) {
		const char *host = run->env->hostname;

		if (host != NULL && strcmp(val.data, host) != 0)
			res = RUN_STOP_FILE;
	}
	buf_free(&val);
	return res;
}

static enum run_result
run_items(struct run *run, const struct rc_item *items, size_t n,
	  struct level *lv)
{
	size_t i;

	for (i = 0; i < n; i++) {
		enum run_result res;

		if (items[i].type == RC_ITEM_ASSIGN)
			res = assign(run, &items[i], lv);
		else
			res = run_recipe(run, items[i].recipe, lv);
		if (res != RUN_CONTINUE)
			return res;
	}
	return RUN_CONTINUE;
}

static int
read_file(const char *path, struct buf *out)
{
	char chunk[8192];
	struct stat sb;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -1;
	if (fstat(fd, &sb) < 0 || (!S_ISREG(sb.st_mode) &&
				   !S_ISCHR(sb.st_mode))) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		buf_append(out, chunk, (size_t)n);
	}
	close(fd);
	return 0;
}

static enum run_result
run_parsed(struct run *run, const char *name, const char *text, size_t len,
	   struct level *lv)
{
	struct rc_file *rc;
	const char *saved = run->rcname;
	enum run_result res;

	rc = rc_parse(name, text, len, parse_error, run);
	run->rcname = rc->name;
	res = run_items(run, rc->items, rc->nitems, lv);
	run->rcname = saved;
	rc_free(rc);
	return res;
}

/* An INCLUDERC: as if its text stood here. */
static enum run_result
run_file(struct run *run, const char *path, struct level *lv)
{
	struct buf text;
	enum run_result res;

	if (run->include_depth >= INCLUDE_DEPTH_MAX) {
		diag(run, "INCLUDERC \"%s\" nested too deeply", path);
		return RUN_CONTINUE;
	}
	buf_init(&text);
	if (read_file(path, &text) < 0) {
		diag(run, "couldn't read \"%s\": %s", path, strerror(errno));
		buf_free(&text);
		return RUN_CONTINUE;
	}
	run->include_depth++;
	res = run_parsed(run, path, text.data, text.len, lv);
	run->include_depth--;
	buf_free(&text);
	return res;
}

/* ---- the run ---- */

static void
init_vars(struct run *run)
{
	struct rules_env *env = run->env;
	const char *home = env->home != NULL ? env->home : "/";
	struct buf b;

	buf_init(&b);
	vars_set(&run->vars, "HOME", home);
	if (env->logname != NULL) {
		vars_set(&run->vars, "LOGNAME", env->logname);
		vars_set(&run->vars, "USER", env->logname);
	}
	vars_set(&run->vars, "SHELL", env->shell != NULL ? env->shell :
		 "/bin/sh");
	if (env->system_rcfile)
		buf_puts(&b, "/usr/local/bin:/usr/bin:/bin");
	else
		buf_printf(&b, "%s/bin:/usr/local/bin:/usr/bin:/bin", home);
	vars_set(&run->vars, "PATH", b.data);
	vars_set(&run->vars, "SHELLMETAS", "&|<>~;?*[");
	vars_set(&run->vars, "SHELLFLAGS", "-c");
	buf_reset(&b);
	if (env->orgmail != NULL)
		buf_puts(&b, env->orgmail);
	else if (env->default_mailbox != NULL)
		buf_puts(&b, env->default_mailbox);
	else
		buf_printf(&b, "/var/mail/%s", env->logname != NULL ?
			   env->logname : "nobody");
	vars_set(&run->vars, "ORGMAIL", b.data);
	vars_set(&run->vars, "DEFAULT", env->default_mailbox != NULL ?
		 env->default_mailbox : b.data);
	vars_set(&run->vars, "MAILDIR", home);
	vars_set(&run->vars, "MSGPREFIX", "msg.");
	vars_set(&run->vars, "SENDMAIL", env->sendmail != NULL ? env->sendmail :
		 "/usr/sbin/sendmail");
	vars_set(&run->vars, "SENDMAILFLAGS", "-oi");
	vars_set(&run->vars, "LOCKEXT", ".lock");
	if (env->hostname != NULL)
		vars_set(&run->vars, "HOST", env->hostname);
	vars_set(&run->vars, "PROCMAIL_VERSION", "3.22");
	buf_free(&b);
}

/* TRAP and EXITCODE, as procmail runs them on its way out. */
static void
finish(struct run *run)
{
	const char *trap = vars_get(&run->vars, "TRAP");
	const char *ec = vars_get(&run->vars, "EXITCODE");
	int trap_status = -1;

	if (ec == NULL && trap != NULL && *trap != '\0')
		vars_set(&run->vars, "EXITCODE", run->delivered ? "0" : "");
	if (trap != NULL && *trap != '\0') {
		struct buf out;
		char *cmd = xstrdup(trap);

		buf_init(&out);
		if (run_command(run, cmd, RULES_HEADER | RULES_BODY, 1, &out,
				&trap_status) == 0)
			log_write(run, out.data, out.len);
		buf_free(&out);
		free(cmd);
	}
	ec = vars_get(&run->vars, "EXITCODE");
	run->env->result_exitcode = -1;
	if (ec != NULL && *ec != '\0')
		run->env->result_exitcode = atoi(ec);
	else if (ec != NULL && trap != NULL && *trap != '\0')
		run->env->result_exitcode = trap_status;
}

static void
set_result_default(struct run *run)
{
	const char *d = vars_get(&run->vars, "DEFAULT");
	struct buf b;
	char cwd[PATH_MAX];

	buf_init(&b);
	if (d == NULL || *d == '\0')
		d = vars_get(&run->vars, "ORGMAIL");
	if (d != NULL && d[0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL)
		buf_printf(&b, "%s/%s", cwd, d);
	else if (d != NULL)
		buf_puts(&b, d);
	free(run->env->result_default);
	run->env->result_default = buf_steal(&b);
	buf_free(&b);
}

/* procmail delivers to DEFAULT itself when the rcfiles delivered nothing.
 * The caller does it for us (env->result_default) unless the outcome
 * matters to the run: a filtered message only the engine holds (the
 * caller has only the original), the LOGFILE's abstract of the final
 * delivery, and the EXITCODE that TRAP sees. Returns 1 when delivered. */
static int
deliver_default(struct run *run)
{
	const char *trap = vars_get(&run->vars, "TRAP");
	const char *d = vars_get(&run->vars, "DEFAULT");
	enum rules_folder_type type;
	struct buf clean, stored;
	struct callmsg cm;
	struct status st;
	int rc;

	if (!run->filtered && run->logfd < 0 && (trap == NULL || *trap == '\0'))
		return 0;
	if (d == NULL || *d == '\0')
		d = vars_get(&run->vars, "ORGMAIL");
	if (d == NULL || *d == '\0' || run->act->folder == NULL)
		return 0;
	buf_init(&clean);
	buf_init(&stored);
	type = folder_type(d, &clean);
	callmsg_init(run, RULES_HEADER | RULES_BODY, &cm);
	status_ok(&st);
	rc = run->act->folder(run->act->arg, clean.data, type, &cm.msg,
			      RULES_HEADER | RULES_BODY, &stored, &st);
	if (rc < 0) {
		diag(run, "error while writing to \"%s\"%s%s", d,
		     st.text[0] != '\0' ? ": " : "", st.text);
	} else {
		const char *where = stored.len > 0 ? stored.data : d;

		set_lastfolder(run, where);
		maybe_abstract(run, where,
			       logged_size(cm.msg.message, type, run,
					   RULES_HEADER | RULES_BODY), 0);
		run->delivered = 1;
	}
	callmsg_free(&cm);
	buf_free(&clean);
	buf_free(&stored);
	return rc == 0;
}

struct source {
	const char *name;
	const char *text;	/* NULL: read the file name */
	size_t len;
};

static int
run_all(const struct source *src, size_t n, struct rules_env *env,
	const struct message *m, const struct rules_actions *actions,
	int *delivered, struct status *st)
{
	struct run run;
	size_t i;
	int cwd_fd;
	mode_t old_umask;
	enum run_result last = RUN_CONTINUE;

	*delivered = 0;
	memset(&run, 0, sizeof(run));
	run.env = env;
	run.act = actions;
	run.st = st;
	run.orig = m;
	run.logfd = -1;
	run.args = env->args;
	run.nargs = env->nargs;
	env->result_host_mismatch = 0;
	env->result_exitcode = -1;
	vars_init(&run.vars);
	run.rx = rx_cache_new();
	buf_init(&run.from_line);
	buf_init(&run.htext);
	buf_init(&run.btext);
	run.sender = xstrdup(env->sender != NULL ? env->sender :
			     m->envelope_sender != NULL ?
			     m->envelope_sender : "");
	msgform_from_line(&run.from_line, run.sender, m->arrival);
	status_ok(st);

	cwd_fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	old_umask = umask(077);
	init_vars(&run);
	if (chdir(vars_get(&run.vars, "MAILDIR")) < 0)
		diag(&run, "couldn't chdir to \"%s\": %s",
		     vars_get(&run.vars, "MAILDIR"), strerror(errno));

	for (i = 0; i < n && last != RUN_DELIVERED; i++) {
		struct level lv = { 0, 0, 0 };
		struct buf text;

		buf_init(&text);
		if (src[i].text != NULL) {
			last = run_parsed(&run, src[i].name, src[i].text,
					  src[i].len, &lv);
		} else if (read_file(src[i].name, &text) < 0) {
			diag(&run, "couldn't read \"%s\": %s", src[i].name,
			     strerror(errno));
			last = RUN_CONTINUE;
		} else {
			last = run_parsed(&run, src[i].name, text.data,
					  text.len, &lv);
		}
		buf_free(&text);
		/* SWITCHRC: the named rcfile takes this one's place. */
		while (last == RUN_SWITCH && run.switch_to != NULL) {
			char *next = run.switch_to;
			struct level lv2 = { 0, 0, 0 };

			run.switch_to = NULL;
			buf_init(&text);
			if (read_file(next, &text) < 0) {
				diag(&run, "couldn't read \"%s\"", next);
				last = RUN_CONTINUE;
			} else {
				last = run_parsed(&run, next, text.data,
						  text.len, &lv2);
			}
			buf_free(&text);
			free(next);
		}
	}
	if (last == RUN_STOP_FILE) {
		/* procmail: HOST not this host after the last rcfile ends
		 * the run without an error, as if delivered; on its way out
		 * it logs the abstract of the last delivery (a copy). */
		const char *la = vars_get(&run.vars, "LOGABSTRACT");

		env->result_host_mismatch = 1;
		if (run.lastfolder != NULL && vars_is_true(la, 1) &&
		    !(la != NULL && strcasecmp(la, "all") == 0))
			log_abstract(&run, run.lastfolder, run.lastsize);
	} else if (!run.delivered) {
		deliver_default(&run);
	}
	*delivered = run.delivered;
	finish(&run);
	set_result_default(&run);

	lock_release(run.global_lock);
	free(run.global_lock);
	if (run.logfd >= 0)
		close(run.logfd);
	if (cwd_fd >= 0) {
		if (fchdir(cwd_fd) < 0)
			status_errno(st, errno, "cannot return to directory");
		close(cwd_fd);
	}
	umask(old_umask);
	if (run.filtered) {
		buf_free(&run.copy.head);
		free(run.copy.envelope_sender);
	}
	free(run.switch_to);
	free(run.lastfolder);
	free(run.sender);
	buf_free(&run.from_line);
	buf_free(&run.htext);
	buf_free(&run.btext);
	rx_cache_free(run.rx);
	vars_free(&run.vars);
	return 0;
}

int
rules_run(const char *const *rcfiles, size_t n, struct rules_env *env,
	  const struct message *m, const struct rules_actions *actions,
	  int *delivered, struct status *st)
{
	struct source *src = xcalloc(n > 0 ? n : 1, sizeof(*src));
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		src[i].name = rcfiles[i];
	rc = run_all(src, n, env, m, actions, delivered, st);
	free(src);
	return rc;
}

int
rules_run_text(const char *name, const char *text, size_t len,
	       struct rules_env *env, const struct message *m,
	       const struct rules_actions *actions, int *delivered,
	       struct status *st)
{
	struct source src;

	src.name = name;
	src.text = text;
	src.len = len;
	return run_all(&src, 1, env, m, actions, delivered, st);
}
