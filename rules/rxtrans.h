/*
 * rxtrans: procmail's regular expressions on PCRE2. Translates procmail's
 * dialect (egrep syntax, "^" and "$" that match a newline, "^^" anchors,
 * "\<" "\>", "\/" for MATCH, the ^TO_ ^TO ^FROM_DAEMON ^FROM_MAILER macros
 * of procmail 3.22) to a PCRE2 pattern, compiles each pattern once per run
 * and searches texts with it (JIT only for large texts).
 */
#ifndef RULES_RXTRANS_H
#define RULES_RXTRANS_H

#include <stddef.h>

#include "buf.h"

/* Appends the PCRE2 form of the procmail pattern [pat, pat + len) to out;
 * *has_split says whether it holds "\/". */
void rx_translate(const char *pat, size_t len, struct buf *out,
		  int *has_split);

struct rx;
struct rx_cache;

struct rx_cache *rx_cache_new(void);
void rx_cache_free(struct rx_cache *cache);

/* The compiled form of a procmail pattern (a C string), case insensitive
 * unless case_sensitive. NULL when it does not compile, with the reason in
 * err. Owned by the cache. */
struct rx *rx_get(struct rx_cache *cache, const char *pat, int case_sensitive,
		  struct buf *err);

/* Searches text from offset start. Returns 1 and the span of the match
 * (the part after "\/" when the pattern has one), 0 when there is none, -1
 * on a matching error (too complex a pattern). */
int rx_search(struct rx *rx, const char *text, size_t len, size_t start,
	      size_t *match_start, size_t *match_end);
/* Counts non-overlapping matches in text, stopping at max. */
long rx_count(struct rx *rx, const char *text, size_t len, long max);
int rx_has_split(const struct rx *rx);

#endif
