/*
 * mailq: the queue listing.
 */
#include "mailq.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue.h"
#include "status.h"

struct listing {
	const struct config *cfg;
	struct buf text;
	size_t n;
};

static int
one(const char *id, void *arg)
{
	struct listing *l = arg;
	struct queue_entry e;
	struct status st;
	struct tm tm;
	char when[32];
	size_t i;

	if (queue_read(l->cfg->queue_dir, id, &e, &st) < 0) {
		/* Gone meanwhile (delivered), or unreadable: not listed. */
		queue_entry_free(&e);
		return 0;
	}
	localtime_r(&e.created, &tm);
	strftime(when, sizeof(when), "%a %b %d %H:%M", &tm);
	buf_printf(&l->text, "%-14s %8llu %.16s <%s>\n", id,
		   (unsigned long long)e.body_size, when,
		   e.sender != NULL ? e.sender : "");
	if (e.status_message != NULL)
		buf_printf(&l->text, "                 (%.60s)\n",
			   e.status_message);
	for (i = 0; i < e.nrecipients; i++)
		if (e.recipients[i].state != QUEUE_SENT)
			buf_printf(&l->text, "\t\t\t\t\t <%s>\n",
				   e.recipients[i].address);
	l->n++;
	queue_entry_free(&e);
	return 0;
}

int
mailq_print(const struct config *cfg, FILE *out)
{
	struct listing l;
	struct status st;

	l.cfg = cfg;
	l.n = 0;
	buf_init(&l.text);
	if (queue_list(cfg->queue_dir, one, &l, &st) < 0) {
		fprintf(stderr, "mailq: %s\n", st.text);
		buf_free(&l.text);
		return -1;
	}
	if (l.n == 0) {
		fprintf(out, "%s is empty\n", cfg->queue_dir);
	} else {
		fprintf(out, "\t\t%s (%zu request%s)\n", cfg->queue_dir, l.n,
			l.n == 1 ? "" : "s");
		fputs("-----Q-ID----- --Size-- -----Q-Time----- "
		      "------------Sender/Recipient-----------\n", out);
		fwrite(l.text.data, 1, l.text.len, out);
	}
	fprintf(out, "\t\tTotal requests: %zu\n", l.n);
	buf_free(&l.text);
	return 0;
}
