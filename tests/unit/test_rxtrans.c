/*
 * rxtrans: procmail's regex dialect on PCRE2: the four macros, case
 * folding, "^" and "$" as newlines (match counts as procmail 3.22 gives
 * them), "^^", "\<" "\>", "\/" for MATCH and the characters PCRE2 reads
 * differently ("{", runs of quantifiers, a leading "*").
 */
#include <CUnit/CUnit.h>

#include <string.h>

#include "rxtrans.h"
#include "suites.h"

#define HEADER "From alice@example.org  Tue Nov 14 22:13:20 2023\n" \
	       "From: Alice <alice@example.org>\n" \
	       "To: bob@example.org\n" \
	       "Subject: hello world\n" \
	       "X-Long: a\n" \
	       "  continued\n" \
	       "\n"

static struct rx_cache *cache;

static void
setup(void)
{
	cache = rx_cache_new();
}

static void
teardown(void)
{
	rx_cache_free(cache);
	cache = NULL;
}

/* Whether pat finds a match in text; match gets the span. */
static int
search_cs(const char *pat, const char *text, int case_sensitive,
	  char *match, size_t size)
{
	struct buf err;
	struct rx *rx;
	size_t ms = 0, me = 0;
	int rc;

	buf_init(&err);
	rx = rx_get(cache, pat, case_sensitive, &err);
	buf_free(&err);
	if (rx == NULL)
		return -1;
	rc = rx_search(rx, text, strlen(text), 0, &ms, &me);
	if (rc == 1 && match != NULL)
		snprintf(match, size, "%.*s", (int)(me - ms), text + ms);
	return rc;
}

static int
search(const char *pat, const char *text)
{
	return search_cs(pat, text, 0, NULL, 0);
}

static long
count(const char *pat, const char *text)
{
	struct buf err;
	struct rx *rx;

	buf_init(&err);
	rx = rx_get(cache, pat, 0, &err);
	buf_free(&err);
	return rx == NULL ? -1 : rx_count(rx, text, strlen(text), 1000);
}

static void
test_rxtrans_to_macros(void)
{
	CU_ASSERT_EQUAL(search("^TO_bob@example\\.org", HEADER), 1);
	CU_ASSERT_EQUAL(search("^TO_bob@example\\.org",
			       "Cc: Bob <bob@example.org>\n"), 1);
	CU_ASSERT_EQUAL(search("^TO_bob@example\\.org",
			       "Resent-To: x, bob@example.org\n"), 1);
	CU_ASSERT_EQUAL(search("^TO_bob@example\\.org",
			       "Reply-To: bob@example.org\n"), 0);
	/* ^TO_ wants an address boundary, ^TO a word boundary */
	CU_ASSERT_EQUAL(search("^TO_bob@", "To: jim.bob@x\n"), 0);
	CU_ASSERT_EQUAL(search("^TObob", "To: jim.bob@x\n"), 1);
	CU_ASSERT_EQUAL(search("^TObob", "To: jimbob@x\n"), 0);
	CU_ASSERT_EQUAL(search("^TO_bob", "X-Envelope-To: bob\n"), 1);
	CU_ASSERT_EQUAL(search("^TO_bob", "Apparently-Resent-To: bob\n"), 1);
}

static void
test_rxtrans_from_daemon_and_mailer(void)
{
	CU_ASSERT_EQUAL(search("^FROM_DAEMON",
			       "From: MAILER-DAEMON@example.org\n"), 1);
	CU_ASSERT_EQUAL(search("^FROM_DAEMON", "Precedence: bulk\n"), 1);
	CU_ASSERT_EQUAL(search("^FROM_DAEMON",
			       "From: root@example.org (Cron Daemon)\n"), 1);
	CU_ASSERT_EQUAL(search("^FROM_DAEMON",
			       "From: alice@example.org\nSubject: hi\n"), 0);
	CU_ASSERT_EQUAL(search("^FROM_MAILER",
			       "From: Mail Delivery Subsystem "
			       "<mailer-daemon@example.org>\n"), 1);
	CU_ASSERT_EQUAL(search("^FROM_MAILER", "Precedence: bulk\n"), 0);
	CU_ASSERT_EQUAL(search("^FROM_MAILER",
			       "From: alice@example.org\n"), 0);
}

static void
test_rxtrans_case_folding(void)
{
	CU_ASSERT_EQUAL(search_cs("^subject: HELLO", HEADER, 0, NULL, 0), 1);
	CU_ASSERT_EQUAL(search_cs("^subject: HELLO", HEADER, 1, NULL, 0), 0);
	CU_ASSERT_EQUAL(search_cs("^Subject: hello", HEADER, 1, NULL, 0), 1);
}

static void
test_rxtrans_match_split(void)
{
	char m[128];

	CU_ASSERT_EQUAL(search_cs("^Subject: \\/.*", HEADER, 0, m,
				  sizeof(m)), 1);
	CU_ASSERT_STRING_EQUAL(m, "hello world");
	/* "$" is a newline and so part of MATCH (procmail 3.22) */
	CU_ASSERT_EQUAL(search_cs("^Subject: \\/.*$", HEADER, 0, m,
				  sizeof(m)), 1);
	CU_ASSERT_STRING_EQUAL(m, "hello world\n");
	CU_ASSERT_EQUAL(search_cs("^From:.*<\\/[^>]+", HEADER, 0, m,
				  sizeof(m)), 1);
	CU_ASSERT_STRING_EQUAL(m, "alice@example.org");
}

static void
test_rxtrans_anchors_and_lines(void)
{
	CU_ASSERT_EQUAL(search("^^From alice", HEADER), 1);
	CU_ASSERT_EQUAL(search("^^From:", HEADER), 0);
	CU_ASSERT_EQUAL(search("line 2$^^", "line 1\nline 2\n"), 1);
	CU_ASSERT_EQUAL(search("line 1$^^", "line 1\nline 2\n"), 0);
	/* 6 lines and the empty one: as procmail counts "^.*$" */
	CU_ASSERT_EQUAL(count("^.*$", HEADER), 7);
	CU_ASSERT_EQUAL(count("^.*$", "body line 1\nbody line 2\n"), 2);
	/* "$" then "^" cross a line end */
	CU_ASSERT_EQUAL(search("X-Long: a$^  continued", HEADER), 1);
	CU_ASSERT_EQUAL(search("^Subject:.*continued", HEADER), 0);
	/* a negated class never matches a newline */
	CU_ASSERT_EQUAL(search("world[^x]X-Long", HEADER), 0);
}

static void
test_rxtrans_word_boundaries(void)
{
	CU_ASSERT_EQUAL(search("\\<world\\>", HEADER), 1);
	CU_ASSERT_EQUAL(search("\\<worl\\>", HEADER), 0);
	CU_ASSERT_EQUAL(search("\\<hello", "hello"), 1);
	CU_ASSERT_EQUAL(search("hello\\>", "hello"), 1);
	CU_ASSERT_EQUAL(search("\\<ello", "hello"), 0);
}

static void
test_rxtrans_pcre_differences(void)
{
	struct buf out;
	int split;

	CU_ASSERT_EQUAL(search("a{2}", "a{2}"), 1);
	CU_ASSERT_EQUAL(search("a{2}", "aa"), 0);
	CU_ASSERT_EQUAL(search("*x", "*x"), 1);
	CU_ASSERT_EQUAL(search("(a|*b)", "*b"), 1);
	CU_ASSERT_EQUAL(search("ab*+c", "ac"), 1);	/* not possessive */
	CU_ASSERT_EQUAL(search("ab+?c", "ac"), 1);	/* (b+)? */
	CU_ASSERT_EQUAL(search("\\d", "d"), 1);		/* only a quote */
	CU_ASSERT_EQUAL(search("\\d", "1"), 0);
	/* no named classes: "[[:alpha:]" and a "]" */
	CU_ASSERT_EQUAL(search("[[:alpha:]]", "a]"), 1);
	CU_ASSERT_EQUAL(search("[[:alpha:]]", "b"), 0);
	CU_ASSERT_EQUAL(search("[^-a]", "-a\n"), 0);
	CU_ASSERT_EQUAL(search("[^-a]", "-ab"), 1);
	CU_ASSERT_EQUAL(search("unbalanced)", "unbalanced)"), 1);
	CU_ASSERT_EQUAL(search("(open", "open"), 1);
	CU_ASSERT_EQUAL(search("", "anything"), 1);
	buf_init(&out);
	rx_translate("^a$", 3, &out, &split);
	CU_ASSERT_STRING_EQUAL(out.data, "(?:^|\\n)a(?:\\n|\\z)");
	CU_ASSERT_FALSE(split);
	buf_reset(&out);
	rx_translate("a\\/b", 4, &out, &split);
	CU_ASSERT_STRING_EQUAL(out.data, "a\\Kb");
	CU_ASSERT_TRUE(split);
	buf_free(&out);
}

static void
test_rxtrans_compiles_once(void)
{
	struct buf err;
	struct rx *a, *b, *c;

	buf_init(&err);
	a = rx_get(cache, "^Subject", 0, &err);
	b = rx_get(cache, "^Subject", 0, &err);
	c = rx_get(cache, "^Subject", 1, &err);
	CU_ASSERT_PTR_NOT_NULL(a);
	CU_ASSERT_PTR_EQUAL(a, b);
	CU_ASSERT_PTR_NOT_EQUAL(a, c);
	CU_ASSERT_PTR_NULL(rx_get(cache, "[", 0, &err) == NULL ? NULL : a);
	buf_free(&err);
}

static void
test_rxtrans_large_text_uses_jit(void)
{
	struct buf text;
	int i;

	buf_init(&text);
	for (i = 0; i < 5000; i++)
		buf_puts(&text, "a line of body text here\n");
	buf_puts(&text, "needle\n");
	CU_ASSERT_EQUAL(search("^needle$", text.data), 1);
	CU_ASSERT_EQUAL(count("^a line", text.data), 1000);
	buf_free(&text);
}

void
test_rxtrans_register(void)
{
	static const struct unit_test tests[] = {
		UNIT_TEST(test_rxtrans_to_macros),
		UNIT_TEST(test_rxtrans_from_daemon_and_mailer),
		UNIT_TEST(test_rxtrans_case_folding),
		UNIT_TEST(test_rxtrans_match_split),
		UNIT_TEST(test_rxtrans_anchors_and_lines),
		UNIT_TEST(test_rxtrans_word_boundaries),
		UNIT_TEST(test_rxtrans_pcre_differences),
		UNIT_TEST(test_rxtrans_compiles_once),
		UNIT_TEST(test_rxtrans_large_text_uses_jit),
	};

	fixture_suite_setup("rxtrans", tests, UNIT_COUNT(tests), setup,
			    teardown);
}
