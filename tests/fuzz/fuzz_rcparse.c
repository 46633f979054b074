/*
 * fuzz_rcparse: libFuzzer harness for the rcfile parser, and for the
 * condition splitter and the regex translator on what it finds. Not built
 * by default:
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined \
 *     -Ilib -Imda -Irules tests/fuzz/fuzz_rcparse.c rules/rcparse.c \
 *     rules/rxtrans.c lib/buf.c -lpcre2-8 -o fuzz_rcparse
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "rcparse.h"
#include "rxtrans.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
walk(const struct rc_item *items, size_t n)
{
	size_t i, k;

	for (i = 0; i < n; i++) {
		const struct rc_recipe *r = items[i].recipe;

		if (r == NULL)
			continue;
		for (k = 0; k < r->nconds; k++) {
			struct rc_cond_parts parts;
			struct buf out;
			int split;

			rc_cond_split(r->conds[k].text, &parts);
			buf_init(&out);
			rx_translate(parts.rest, strlen(parts.rest), &out,
				     &split);
			buf_free(&out);
		}
		walk(r->block, r->nblock);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rc_file *rc = rc_parse("fuzz", (const char *)data, size, NULL,
				      NULL);

	walk(rc->items, rc->nitems);
	rc_free(rc);
	return 0;
}
