/*
 * address: parsing of paths and local@domain, safe local names, extensions.
 */
#include <CUnit/CUnit.h>

#include <string.h>

#include "address.h"
#include "suites.h"

/* Parses text (its strlen) and checks the result. */
static void
assert_parses(const char *text, const char *local, const char *domain)
{
	struct address a;

	address_init(&a);
	CU_ASSERT_EQUAL(address_parse(&a, text, strlen(text)), 0);
	CU_ASSERT_STRING_EQUAL(a.local.data, local);
	CU_ASSERT_EQUAL(a.local.len, strlen(local));
	CU_ASSERT_STRING_EQUAL(a.domain.data, domain);
	CU_ASSERT_EQUAL(a.domain.len, strlen(domain));
	address_free(&a);
}

static void
assert_rejected(const char *text, size_t len)
{
	struct address a;

	address_init(&a);
	CU_ASSERT_EQUAL(address_parse(&a, text, len), -1);
	address_free(&a);
}

static void
test_address_parse_plain_and_bracketed(void)
{
	assert_parses("alice@example.org", "alice", "example.org");
	assert_parses("<alice@example.org>", "alice", "example.org");
	assert_parses("  <bob@example.org>\t", "bob", "example.org");
	assert_parses("postmaster", "postmaster", "");
	assert_parses("<postmaster>", "postmaster", "");
}

static void
test_address_parse_lowercases_domain_only(void)
{
	assert_parses("Alice.Smith@EXAMPLE.Org", "Alice.Smith", "example.org");
}

static void
test_address_parse_quoted_local_part(void)
{
	assert_parses("\"a b\"@x.example", "a b", "x.example");
	/* The split is at the last '@' outside quotes. */
	assert_parses("\"a@b\"@example.org", "a@b", "example.org");
	assert_parses("a@b@example.org", "a@b", "example.org");
	assert_parses("\"x\\\"y\"@example.org", "x\"y", "example.org");
}

static void
test_address_parse_reads_only_len_bytes(void)
{
	static const char text[] = "carol@example.orgGARBAGE@evil";
	struct address a;

	address_init(&a);
	CU_ASSERT_EQUAL(address_parse(&a, text, 17), 0);
	CU_ASSERT_STRING_EQUAL(a.local.data, "carol");
	CU_ASSERT_STRING_EQUAL(a.domain.data, "example.org");
	/* A second parse into the same address replaces the first. */
	CU_ASSERT_EQUAL(address_parse(&a, "dave", 4), 0);
	CU_ASSERT_STRING_EQUAL(a.local.data, "dave");
	CU_ASSERT_EQUAL(a.domain.len, 0);
	address_free(&a);
}

static void
test_address_parse_rejects_bad_input(void)
{
	assert_rejected("", 0);
	assert_rejected("   ", 3);
	assert_rejected("<>", 2);
	assert_rejected("\"unbalanced@example.org", 23);
	assert_rejected("\"a\"b\"@example.org", 17);
	assert_rejected("a\tb@example.org", 15);
	assert_rejected("a\rb@example.org", 15);
	assert_rejected("ab@exa\nmple.org", 15);
	assert_rejected("ab\x7f@example.org", 15);
	assert_rejected("ab\0@example.org", 15);
	assert_rejected("@example.org", 12);
	assert_rejected("alice@", 6);
	assert_rejected("\"\"@example.org", 14);
}

static void
test_address_unbracket_strips_one_pair(void)
{
	const char *p = "  <<x@y>>  ";
	size_t len = strlen(p);

	address_unbracket(&p, &len);
	CU_ASSERT_EQUAL(len, 5);
	CU_ASSERT_EQUAL(strncmp(p, "<x@y>", len), 0);
	p = "<";
	len = 1;
	address_unbracket(&p, &len);
	CU_ASSERT_EQUAL(len, 1);
}

static void
test_address_safe_local_rejects_hostile_names(void)
{
	static const char *bad[] = {
		"../x", "-x", "a/b", ".x", "", "a b", "a\tb", "a|b", "|cmd",
		"$HOME", "a;b", "a`b`", "a\\b", "x\n", "a:b", "~root", "a*",
	};
	char long_name[66];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(address_safe_local(bad[i], strlen(bad[i])), 0);
	CU_ASSERT_EQUAL(address_safe_local("ab\0c", 4), 0);
	memset(long_name, 'a', sizeof(long_name));
	CU_ASSERT_EQUAL(address_safe_local(long_name, 65), 0);
	CU_ASSERT_EQUAL(address_safe_local(long_name, 64), 1);
}

static void
test_address_safe_local_accepts_ordinary_names(void)
{
	static const char *good[] = { "alice", "a.b", "a_b-c", "x", "bob+tag",
				      "user1", "a.", "A-Z" };
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CU_ASSERT_EQUAL(address_safe_local(good[i], strlen(good[i])),
				1);
	/* Only len bytes count: "alice/../x" cut at 5 is "alice". */
	CU_ASSERT_EQUAL(address_safe_local("alice/../x", 5), 1);
}

static void
test_address_split_extension_with_plus(void)
{
	const char *ext = NULL;
	size_t user_len = 0, ext_len = 99;

	CU_ASSERT_EQUAL(address_split_extension("bob+lists", 9, '+',
						&user_len, &ext, &ext_len), 1);
	CU_ASSERT_EQUAL(user_len, 3);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ext);
	CU_ASSERT_EQUAL(ext_len, 5);
	CU_ASSERT_EQUAL(strncmp(ext, "lists", 5), 0);
	/* The first delimiter splits. */
	CU_ASSERT_EQUAL(address_split_extension("a+b+c", 5, '+', &user_len,
						&ext, &ext_len), 1);
	CU_ASSERT_EQUAL(user_len, 1);
	CU_ASSERT_EQUAL(ext_len, 3);
	CU_ASSERT_EQUAL(strncmp(ext, "b+c", 3), 0);
	/* An empty extension is still one. */
	CU_ASSERT_EQUAL(address_split_extension("bob+", 4, '+', &user_len,
						&ext, &ext_len), 1);
	CU_ASSERT_EQUAL(user_len, 3);
	CU_ASSERT_EQUAL(ext_len, 0);
	/* Another delimiter. */
	CU_ASSERT_EQUAL(address_split_extension("bob-x", 5, '-', &user_len,
						&ext, &ext_len), 1);
	CU_ASSERT_EQUAL(user_len, 3);
}

static void
test_address_split_extension_without_one(void)
{
	const char *ext = "junk";
	size_t user_len = 0, ext_len = 99;

	CU_ASSERT_EQUAL(address_split_extension("bob", 3, '+', &user_len,
						&ext, &ext_len), 0);
	CU_ASSERT_EQUAL(user_len, 3);
	CU_ASSERT_PTR_NULL(ext);
	CU_ASSERT_EQUAL(ext_len, 0);
	/* '\0' recognises no delimiter. */
	CU_ASSERT_EQUAL(address_split_extension("bob+x", 5, '\0', &user_len,
						&ext, &ext_len), 0);
	CU_ASSERT_EQUAL(user_len, 5);
	CU_ASSERT_PTR_NULL(ext);
	/* "+tag" alone is not user "" with a tag. */
	CU_ASSERT_EQUAL(address_split_extension("+tag", 4, '+', &user_len,
						&ext, &ext_len), 0);
	CU_ASSERT_EQUAL(user_len, 4);
	CU_ASSERT_PTR_NULL(ext);
	/* The delimiter past len does not count. */
	CU_ASSERT_EQUAL(address_split_extension("bob+x", 3, '+', &user_len,
						&ext, &ext_len), 0);
	CU_ASSERT_EQUAL(user_len, 3);
}

static void
quote_check(const char *local, const char *expected)
{
	struct buf out;

	buf_init(&out);
	address_quote_local(&out, local, strlen(local));
	CU_ASSERT_STRING_EQUAL(out.data, expected);
	buf_free(&out);
}

static void
test_address_quote_local_only_when_needed(void)
{
	quote_check("alice", "alice");
	quote_check("o'brien+tag", "o'brien+tag");
	quote_check("first.last", "first.last");
	quote_check("a b", "\"a b\"");
	quote_check("a..b", "\"a..b\"");
	quote_check(".dot", "\".dot\"");
	quote_check("say\"hi\"", "\"say\\\"hi\\\"\"");
	quote_check("back\\slash", "\"back\\\\slash\"");
	quote_check("a@b", "\"a@b\"");
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_address_quote_local_only_when_needed),
	UNIT_TEST(test_address_parse_plain_and_bracketed),
	UNIT_TEST(test_address_parse_lowercases_domain_only),
	UNIT_TEST(test_address_parse_quoted_local_part),
	UNIT_TEST(test_address_parse_reads_only_len_bytes),
	UNIT_TEST(test_address_parse_rejects_bad_input),
	UNIT_TEST(test_address_unbracket_strips_one_pair),
	UNIT_TEST(test_address_safe_local_rejects_hostile_names),
	UNIT_TEST(test_address_safe_local_accepts_ordinary_names),
	UNIT_TEST(test_address_split_extension_with_plus),
	UNIT_TEST(test_address_split_extension_without_one),
};

void
test_address_register(void)
{
	fixture_suite("address", tests, UNIT_COUNT(tests));
}
