/*
 * buf: growth by doubling, NUL bytes inside, truncation, stealing.
 */
#include <CUnit/CUnit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "suites.h"

/* The invariants every operation keeps. */
static void
assert_sane(const struct buf *b)
{
	CU_ASSERT_PTR_NOT_NULL_FATAL(b->data);
	CU_ASSERT(b->len < b->cap);
	CU_ASSERT_EQUAL(b->data[b->len], '\0');
}

static void
test_buf_init_is_empty_string(void)
{
	struct buf b;

	buf_init(&b);
	assert_sane(&b);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_STRING_EQUAL(b.data, "");
	buf_free(&b);
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(b.len, 0);
}

static void
test_buf_append_grows_past_many_doublings(void)
{
	struct buf b;
	size_t i, grows = 0, last_cap;

	buf_init(&b);
	last_cap = b.cap;
	for (i = 0; i < 300000; i++) {
		char c = (char)('a' + i % 26);

		buf_append(&b, &c, 1);
		if (b.cap != last_cap) {
			/* Doubling, not growing by a little each time. */
			CU_ASSERT_EQUAL(b.cap, last_cap * 2);
			last_cap = b.cap;
			grows++;
		}
	}
	assert_sane(&b);
	CU_ASSERT_EQUAL(b.len, 300000);
	CU_ASSERT(grows >= 12);
	for (i = 0; i < b.len; i++)
		if (b.data[i] != (char)('a' + i % 26))
			break;
	CU_ASSERT_EQUAL(i, b.len);
	buf_free(&b);
}

static void
test_buf_printf_appends_and_grows(void)
{
	struct buf b, expect;
	char piece[1000], num[16];
	int i;

	memset(piece, 'x', sizeof(piece) - 1);
	piece[sizeof(piece) - 1] = '\0';
	buf_init(&b);
	buf_init(&expect);
	buf_puts(&b, "start:");
	buf_puts(&expect, "start:");
	for (i = 0; i < 200; i++) {
		buf_printf(&b, "[%d:%s]", i, piece);
		snprintf(num, sizeof(num), "[%d", i);
		buf_puts(&expect, num);
		buf_putc(&expect, ':');
		buf_puts(&expect, piece);
		buf_putc(&expect, ']');
	}
	assert_sane(&b);
	CU_ASSERT_EQUAL(b.len, expect.len);
	CU_ASSERT(b.len == expect.len &&
		  memcmp(b.data, expect.data, b.len) == 0);
	buf_free(&b);
	buf_free(&expect);
}

static void
test_buf_printf_exactly_filling_capacity(void)
{
	struct buf b;
	char text[200];

	/* 63 bytes fit a fresh 64-byte buffer with its NUL; 64 do not. */
	memset(text, 'y', sizeof(text));
	text[63] = '\0';
	buf_init(&b);
	buf_printf(&b, "%s", text);
	CU_ASSERT_EQUAL(b.len, 63);
	assert_sane(&b);
	buf_printf(&b, "%c", 'z');
	CU_ASSERT_EQUAL(b.len, 64);
	CU_ASSERT_EQUAL(b.data[63], 'z');
	assert_sane(&b);
	buf_reset(&b);
	text[63] = 'y';
	text[64] = '\0';
	buf_printf(&b, "%s", text);
	CU_ASSERT_EQUAL(b.len, 64);
	CU_ASSERT_EQUAL(strlen(b.data), 64);
	assert_sane(&b);
	buf_free(&b);
}

static void
test_buf_keeps_nul_bytes_inside(void)
{
	static const char data[] = { 'a', '\0', 'b', '\0', '\0', 'c' };
	struct buf b;
	int i;

	buf_init(&b);
	for (i = 0; i < 100; i++)
		buf_append(&b, data, sizeof(data));
	buf_putc(&b, '\0');
	assert_sane(&b);
	CU_ASSERT_EQUAL(b.len, 100 * sizeof(data) + 1);
	CU_ASSERT_EQUAL(memcmp(b.data + 99 * sizeof(data), data, sizeof(data)),
			0);
	CU_ASSERT_EQUAL(b.data[b.len - 1], '\0');
	CU_ASSERT_EQUAL(strlen(b.data), 1);	/* stops at the first NUL */
	buf_free(&b);
}

static void
test_buf_append_zero_bytes_changes_nothing(void)
{
	struct buf b;

	buf_init(&b);
	buf_puts(&b, "abc");
	buf_append(&b, "zzz", 0);
	buf_puts(&b, "");
	CU_ASSERT_EQUAL(b.len, 3);
	CU_ASSERT_STRING_EQUAL(b.data, "abc");
	buf_free(&b);
}

static void
test_buf_truncate_shortens_only(void)
{
	struct buf b;

	buf_init(&b);
	buf_puts(&b, "hello, world");
	buf_truncate(&b, 5);
	CU_ASSERT_EQUAL(b.len, 5);
	CU_ASSERT_STRING_EQUAL(b.data, "hello");
	buf_truncate(&b, 50);	/* longer than it is: no change */
	CU_ASSERT_EQUAL(b.len, 5);
	CU_ASSERT_STRING_EQUAL(b.data, "hello");
	buf_puts(&b, "!");
	CU_ASSERT_STRING_EQUAL(b.data, "hello!");
	buf_truncate(&b, 0);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_STRING_EQUAL(b.data, "");
	buf_free(&b);
}

static void
test_buf_reset_keeps_capacity(void)
{
	struct buf b;
	size_t cap;
	int i;

	buf_init(&b);
	for (i = 0; i < 1000; i++)
		buf_puts(&b, "0123456789");
	cap = b.cap;
	buf_reset(&b);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_STRING_EQUAL(b.data, "");
	CU_ASSERT_EQUAL(b.cap, cap);
	buf_free(&b);
}

static void
test_buf_steal_hands_over_data_and_leaves_empty(void)
{
	struct buf b;
	char *stolen;
	int i;

	buf_init(&b);
	for (i = 0; i < 100; i++)
		buf_printf(&b, "%02d", i);
	stolen = buf_steal(&b);
	CU_ASSERT_EQUAL(strlen(stolen), 200);
	CU_ASSERT_EQUAL(strncmp(stolen, "000102", 6), 0);
	CU_ASSERT_EQUAL(strcmp(stolen + 194, "979899"), 0);
	/* b is a usable empty buffer, not an alias of stolen. */
	assert_sane(&b);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_PTR_NOT_EQUAL(b.data, stolen);
	buf_puts(&b, "again");
	CU_ASSERT_STRING_EQUAL(b.data, "again");
	CU_ASSERT_EQUAL(strncmp(stolen, "000102", 6), 0);
	free(stolen);
	buf_free(&b);
}

static void
test_buf_xstrndup_stops_at_len(void)
{
	char *p = xstrndup("abcdef", 3);

	CU_ASSERT_STRING_EQUAL(p, "abc");
	free(p);
	p = xstrdup("");
	CU_ASSERT_STRING_EQUAL(p, "");
	free(p);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_buf_init_is_empty_string),
	UNIT_TEST(test_buf_append_grows_past_many_doublings),
	UNIT_TEST(test_buf_printf_appends_and_grows),
	UNIT_TEST(test_buf_printf_exactly_filling_capacity),
	UNIT_TEST(test_buf_keeps_nul_bytes_inside),
	UNIT_TEST(test_buf_append_zero_bytes_changes_nothing),
	UNIT_TEST(test_buf_truncate_shortens_only),
	UNIT_TEST(test_buf_reset_keeps_capacity),
	UNIT_TEST(test_buf_steal_hands_over_data_and_leaves_empty),
	UNIT_TEST(test_buf_xstrndup_stops_at_len),
};

void
test_buf_register(void)
{
	fixture_suite("buf", tests, UNIT_COUNT(tests));
}
