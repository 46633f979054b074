/*
 * rcparse: the tree of good rcfiles (assignments, flags, locks, conditions,
 * continuations, every kind of action, nested blocks), CRLF files, and bad
 * and truncated ones, which report file:line and keep what can be read.
 */
#include <CUnit/CUnit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcparse.h"
#include "suites.h"

struct errors {
	int count;
	int last_line;
	char last[256];
};

static void
record_error(void *arg, const char *file, int line, const char *text)
{
	struct errors *e = arg;

	e->count++;
	e->last_line = line;
	snprintf(e->last, sizeof(e->last), "%s:%d: %s", file, line, text);
}

static struct rc_file *
parse(const char *text, struct errors *e)
{
	memset(e, 0, sizeof(*e));
	return rc_parse("rc", text, strlen(text), record_error, e);
}

static void
test_rcparse_assignments(void)
{
	struct errors e;
	struct rc_file *rc = parse(
		"# comment\n"
		"MAILDIR=$HOME/Mail   # trailing comment\n"
		"LOG = \"two\n lines\"\n"
		"UNSET\n"
		"EMPTY=\n"
		"Q='a b'\"c\"`date`\n", &e);

	CU_ASSERT_EQUAL(e.count, 0);
	CU_ASSERT_EQUAL_FATAL(rc->nitems, 5);
	CU_ASSERT_STRING_EQUAL(rc->items[0].name, "MAILDIR");
	CU_ASSERT_STRING_EQUAL(rc->items[0].value, "$HOME/Mail");
	CU_ASSERT_EQUAL(rc->items[0].line, 2);
	CU_ASSERT_STRING_EQUAL(rc->items[1].value, "\"two\n lines\"");
	CU_ASSERT_STRING_EQUAL(rc->items[2].name, "UNSET");
	CU_ASSERT_PTR_NULL(rc->items[2].value);
	CU_ASSERT_EQUAL(rc->items[2].line, 5);
	CU_ASSERT_STRING_EQUAL(rc->items[3].value, "");
	CU_ASSERT_STRING_EQUAL(rc->items[4].value, "'a b'\"c\"`date`");
	rc_free(rc);
}

static void
test_rcparse_recipe_flags_lock_conditions(void)
{
	struct errors e;
	struct rc_file *rc = parse(
		":0 HBDfwc: my.lock\n"
		"* ^Subject:.*hello\n"
		"*   2000^0.5   ^From:.*boss\n"
		"* ! ^X-Spam: \\\n"
		"     yes\n"
		"| formail -A \"X: y\"\n"
		":0:\n"
		"inbox\n", &e);
	struct rc_recipe *r;

	CU_ASSERT_EQUAL(e.count, 0);
	CU_ASSERT_EQUAL_FATAL(rc->nitems, 2);
	r = rc->items[0].recipe;
	CU_ASSERT_EQUAL(r->flags, RC_FLAG_H | RC_FLAG_B | RC_FLAG_D |
			RC_FLAG_f | RC_FLAG_w | RC_FLAG_c);
	CU_ASSERT_TRUE(r->locked);
	CU_ASSERT_STRING_EQUAL(r->lockfile, "my.lock");
	CU_ASSERT_EQUAL_FATAL(r->nconds, 3);
	CU_ASSERT_STRING_EQUAL(r->conds[0].text, "^Subject:.*hello");
	CU_ASSERT_FALSE(r->conds[0].weighted);
	CU_ASSERT_TRUE(r->conds[1].weighted);
	CU_ASSERT_DOUBLE_EQUAL(r->conds[1].weight, 2000, 0.001);
	CU_ASSERT_DOUBLE_EQUAL(r->conds[1].exponent, 0.5, 0.001);
	CU_ASSERT_STRING_EQUAL(r->conds[1].text, "^From:.*boss");
	CU_ASSERT_STRING_EQUAL(r->conds[2].text, "! ^X-Spam: yes");
	CU_ASSERT_EQUAL(r->action, RC_ACTION_PIPE);
	CU_ASSERT_STRING_EQUAL(r->action_text, "formail -A \"X: y\"");
	r = rc->items[1].recipe;
	CU_ASSERT_TRUE(r->locked);
	CU_ASSERT_PTR_NULL(r->lockfile);
	CU_ASSERT_EQUAL(r->action, RC_ACTION_FOLDER);
	CU_ASSERT_STRING_EQUAL(r->action_text, "inbox");
	CU_ASSERT_EQUAL(rc->items[1].line, 7);
	rc_free(rc);
}

static void
test_rcparse_actions(void)
{
	struct errors e;
	struct rc_file *rc = parse(
		":0\n! a@example.org b@example.org\n"
		":0\nVAR=| echo hi\n"
		":0 c\n| cat \\\n  > out\n"
		":0\nMail/ other/.\n", &e);

	CU_ASSERT_EQUAL(e.count, 0);
	CU_ASSERT_EQUAL_FATAL(rc->nitems, 4);
	CU_ASSERT_EQUAL(rc->items[0].recipe->action, RC_ACTION_FORWARD);
	CU_ASSERT_STRING_EQUAL(rc->items[0].recipe->action_text,
			       "a@example.org b@example.org");
	CU_ASSERT_EQUAL(rc->items[1].recipe->action, RC_ACTION_PIPE);
	CU_ASSERT_STRING_EQUAL(rc->items[1].recipe->capture, "VAR");
	CU_ASSERT_STRING_EQUAL(rc->items[1].recipe->action_text, "echo hi");
	CU_ASSERT_STRING_EQUAL(rc->items[2].recipe->action_text,
			       "cat   > out");
	CU_ASSERT_STRING_EQUAL(rc->items[3].recipe->action_text,
			       "Mail/ other/.");
	rc_free(rc);
}

static void
test_rcparse_nested_blocks(void)
{
	struct errors e;
	struct rc_file *rc = parse(
		":0\n"
		"* ^From:.*x\n"
		"{\n"
		"  X=1\n"
		"  :0 c\n"
		"  { LOG=\"in\" }\n"
		"  :0\n"
		"  inner\n"
		"}\n"
		"after=1\n", &e);
	struct rc_recipe *r, *inner;

	CU_ASSERT_EQUAL(e.count, 0);
	CU_ASSERT_EQUAL_FATAL(rc->nitems, 2);
	r = rc->items[0].recipe;
	CU_ASSERT_EQUAL(r->action, RC_ACTION_BLOCK);
	CU_ASSERT_EQUAL_FATAL(r->nblock, 3);
	CU_ASSERT_STRING_EQUAL(r->block[0].name, "X");
	inner = r->block[1].recipe;
	CU_ASSERT_EQUAL(inner->action, RC_ACTION_BLOCK);
	CU_ASSERT_EQUAL_FATAL(inner->nblock, 1);
	CU_ASSERT_STRING_EQUAL(inner->block[0].value, "\"in\"");
	CU_ASSERT_STRING_EQUAL(r->block[2].recipe->action_text, "inner");
	CU_ASSERT_STRING_EQUAL(rc->items[1].name, "after");
	CU_ASSERT_EQUAL(rc->items[1].line, 10);
	rc_free(rc);
}

static void
test_rcparse_crlf_reads_as_lf(void)
{
	struct errors e1, e2;
	struct rc_file *a = parse("X=1\n:0 B\n* foo\nbox\n", &e1);
	struct rc_file *b = parse("X=1\r\n:0 B\r\n* foo\r\nbox\r\n", &e2);

	CU_ASSERT_EQUAL(e2.count, 0);
	CU_ASSERT_EQUAL_FATAL(b->nitems, a->nitems);
	CU_ASSERT_STRING_EQUAL(b->items[0].value, "1");
	CU_ASSERT_STRING_EQUAL(b->items[1].recipe->conds[0].text, "foo");
	CU_ASSERT_STRING_EQUAL(b->items[1].recipe->action_text, "box");
	CU_ASSERT_EQUAL(b->items[1].line, 2);
	rc_free(a);
	rc_free(b);
}

static void
test_rcparse_errors_keep_the_rest(void)
{
	struct errors e;
	struct rc_file *rc;

	rc = parse(":0 Z\n* x\nbox\nY=2\n", &e);
	CU_ASSERT_EQUAL(e.count, 1);
	CU_ASSERT_STRING_EQUAL(e.last, "rc:1: unknown flag 'Z'");
	CU_ASSERT_EQUAL(rc->nitems, 2);
	rc_free(rc);

	rc = parse("X=1\n%%% junk\n:0\n* x\n}\nY=2\n", &e);
	CU_ASSERT_EQUAL(e.count, 3);	/* junk, no action, stray brace */
	CU_ASSERT_EQUAL(rc->nitems, 3);
	CU_ASSERT_STRING_EQUAL(rc->items[2].name, "Y");
	rc_free(rc);

	rc = parse(":0\n{\n:0\nbox\n", &e);
	CU_ASSERT_EQUAL(e.count, 1);
	CU_ASSERT_EQUAL(e.last_line, 2);
	CU_ASSERT_EQUAL_FATAL(rc->nitems, 1);
	CU_ASSERT_EQUAL(rc->items[0].recipe->nblock, 1);
	rc_free(rc);
}

static void
test_rcparse_truncated_input(void)
{
	static const char *const texts[] = {
		":", ":0", ":0 f", ":0:", "* x", ":0\n*", ":0\n* x\\",
		"X=\"open", "X='open", "X=`open", "X", "X=", "{", "}",
		":0\n{", ":0\n{ :0\n{", "X=a\\", ":0\n|", ":0\n!",
	};
	size_t i, n;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		for (n = 0; n <= strlen(texts[i]); n++) {
			/* an exactly sized copy: ASan sees any overread */
			char *copy = malloc(n > 0 ? n : 1);
			struct rc_file *rc;

			memcpy(copy, texts[i], n);
			rc = rc_parse("t", copy, n, NULL, NULL);
			CU_ASSERT_PTR_NOT_NULL(rc);
			rc_free(rc);
			free(copy);
		}
	}
}

static void
test_rcparse_cond_split(void)
{
	struct rc_cond_parts p;

	rc_cond_split("^Subject: x", &p);
	CU_ASSERT_EQUAL(p.kind, RC_COND_REGEX);
	CU_ASSERT_FALSE(p.negate);
	CU_ASSERT_STRING_EQUAL(p.rest, "^Subject: x");
	rc_cond_split("! ^From", &p);
	CU_ASSERT_TRUE(p.negate);
	CU_ASSERT_STRING_EQUAL(p.rest, "^From");
	rc_cond_split("? test -f x", &p);
	CU_ASSERT_EQUAL(p.kind, RC_COND_PROGRAM);
	CU_ASSERT_STRING_EQUAL(p.rest, "test -f x");
	rc_cond_split("< 1000", &p);
	CU_ASSERT_EQUAL(p.kind, RC_COND_LESS);
	rc_cond_split("!> 1000", &p);
	CU_ASSERT_EQUAL(p.kind, RC_COND_MORE);
	CU_ASSERT_TRUE(p.negate);
	rc_cond_split("$ ^From:.*$SENDER", &p);
	CU_ASSERT_EQUAL(p.kind, RC_COND_EXPAND);
	CU_ASSERT_STRING_EQUAL(p.rest, "^From:.*$SENDER");
	rc_cond_split("SUBJ ?? ^foo", &p);
	CU_ASSERT_EQUAL(p.kind, RC_COND_VAR);
	CU_ASSERT_EQUAL(p.var_len, 4);
	CU_ASSERT_EQUAL(strncmp(p.var, "SUBJ", 4), 0);
	CU_ASSERT_STRING_EQUAL(p.rest, "^foo");
	rc_cond_split("\\!literal", &p);
	CU_ASSERT_EQUAL(p.kind, RC_COND_REGEX);
	CU_ASSERT_STRING_EQUAL(p.rest, "!literal");
	rc_cond_split("Subject", &p);
	CU_ASSERT_EQUAL(p.kind, RC_COND_REGEX);
	CU_ASSERT_STRING_EQUAL(p.rest, "Subject");
}

void
test_rcparse_register(void)
{
	static const struct unit_test tests[] = {
		UNIT_TEST(test_rcparse_assignments),
		UNIT_TEST(test_rcparse_recipe_flags_lock_conditions),
		UNIT_TEST(test_rcparse_actions),
		UNIT_TEST(test_rcparse_nested_blocks),
		UNIT_TEST(test_rcparse_crlf_reads_as_lf),
		UNIT_TEST(test_rcparse_errors_keep_the_rest),
		UNIT_TEST(test_rcparse_truncated_input),
		UNIT_TEST(test_rcparse_cond_split),
	};

	fixture_suite("rcparse", tests, UNIT_COUNT(tests));
}
