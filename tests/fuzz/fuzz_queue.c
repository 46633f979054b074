/*
 * fuzz_queue: libFuzzer harness for the qf parser. Whatever it accepts must
 * come back unchanged through the writer: format(parse(x)) is a fixed point.
 * Not built by default:
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined \
 *     -Ilib -Ismtpd tests/fuzz/fuzz_queue.c smtpd/queue.c lib/qid.c \
 *     lib/status.c lib/buf.c -o fuzz_queue
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_entry e, again;
	struct status st;
	struct buf first, second;

	if (queue_parse((const char *)data, size, &e, &st) < 0)
		return 0;
	buf_init(&first);
	buf_init(&second);
	queue_format(&e, &first);
	if (queue_parse(first.data, first.len, &again, &st) < 0)
		abort();	/* the writer wrote what the reader refuses */
	queue_format(&again, &second);
	if (first.len != second.len ||
	    memcmp(first.data, second.data, first.len) != 0)
		abort();
	queue_entry_free(&e);
	queue_entry_free(&again);
	buf_free(&first);
	buf_free(&second);
	return 0;
}
