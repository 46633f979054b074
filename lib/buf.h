/*
 * buf: the one growable byte string of the system. Length-counted, always
 * NUL-terminated, grows by doubling; may hold NUL bytes (mail can). Allocation
 * failure aborts the program: a mail program that cannot get a few KiB cannot
 * do anything useful, and every caller would otherwise need the same check.
 */
#ifndef LIB_BUF_H
#define LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;	/* NUL-terminated; never NULL after buf_init */
	size_t len;	/* bytes in use, not counting the terminator */
	size_t cap;	/* bytes allocated */
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_truncate(struct buf *b, size_t len);
/* Returns the data and leaves b empty; the caller frees the result. */
char *buf_steal(struct buf *b);

/* Allocation helpers with the same abort-on-failure policy. */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t len);

#endif
