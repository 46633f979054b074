/*
 * Unit tests for smtpd/access.c: access table values and the lookups for
 * clients, senders and recipients, on a table read from a temporary file.
 */
#include <CUnit/CUnit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "suites.h"

static const char table_text[] =
	"# the access table of the tests\n"
	"127.0.0.1\t\tRELAY\n"
	"Connect:10.1.2.3\tREJECT\n"
	"192.168.\t\tRELAY\n"
	"10.9\t\t\tOK\n"
	"172.16.5.4\t\tDISCARD\n"
	"203.0.113.7\t\tERROR:4.7.1:451 Slow down\n"
	"203.0.113.8\t\tERROR:\"5.7.1:550 Go away\"\n"
	"IPv6:2001:db8\t\tRELAY\n"
	"::1\t\t\tRELAY\n"
	"Connect:IPv6:2001:db9:0:0:0:0:0:66 REJECT\n"
	"trusted.example.net\tRELAY\n"
	".partner.example\tRELAY\n"
	"Connect:bad.host.example REJECT\n"
	"From:spammer@bad.example REJECT\n"
	"From:.junk.example\tERROR:5.7.1:550 Junk not wanted\n"
	"From:bounce@\t\tREJECT\n"
	"To:relayto.example\tRELAY\n"
	"To:blocked@local.example ERROR:5.7.2:550 Blocked by policy\n"
	"example.org\t\tREJECT\n"
	"10.7.7.7\t\tNONSENSE\n";

static char *dir;
static struct map *table;

static void
setup(void)
{
	struct status st;
	char path[4096];

	dir = fixture_tmpdir();
	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	snprintf(path, sizeof(path), "%s/access", dir);
	CU_ASSERT_EQUAL(fixture_write_text(path, table_text), 0);
	table = map_parse_text(path, MAP_TABLE, NULL, &st);
	CU_ASSERT_PTR_NOT_NULL(table);
}

static void
teardown(void)
{
	if (table != NULL)
		map_close(table);
	table = NULL;
	CU_ASSERT_EQUAL(fixture_rmtree(dir), 0);
	free(dir);
}

static int
parse(const char *value, struct access_result *r)
{
	memset(r, 0, sizeof(*r));
	return access_parse_value(value, strlen(value), r);
}

static void
test_access_parse_value_words(void)
{
	struct access_result r;

	CU_ASSERT_EQUAL(parse("RELAY", &r), 0);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
	CU_ASSERT_EQUAL(parse("  relay \t", &r), 0);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
	CU_ASSERT_EQUAL(parse("OK", &r), 0);
	CU_ASSERT_EQUAL(r.action, ACCESS_OK);
	CU_ASSERT_STRING_EQUAL(r.reply, "");
	CU_ASSERT_EQUAL(parse("DISCARD", &r), 0);
	CU_ASSERT_EQUAL(r.action, ACCESS_DISCARD);
	CU_ASSERT_EQUAL(parse("REJECT", &r), 0);
	CU_ASSERT_EQUAL(r.action, ACCESS_REJECT);
	CU_ASSERT_STRING_EQUAL(r.reply, "550 5.7.1 Access denied");
	/* A word is a whole word. */
	CU_ASSERT_EQUAL(parse("RELAYED", &r), -1);
	CU_ASSERT_EQUAL(parse("OKAY", &r), -1);
	CU_ASSERT_EQUAL(parse("", &r), -1);
	CU_ASSERT_EQUAL(parse("SKIP", &r), -1);
}

static void
test_access_parse_value_errors(void)
{
	struct access_result r;

	CU_ASSERT_EQUAL(parse("ERROR:5.7.0:550 Invalid address", &r), 0);
	CU_ASSERT_EQUAL(r.action, ACCESS_ERROR);
	CU_ASSERT_STRING_EQUAL(r.reply, "550 5.7.0 Invalid address");
	CU_ASSERT_EQUAL(parse("error:4.2.0:450 Busy, try later", &r), 0);
	CU_ASSERT_STRING_EQUAL(r.reply, "450 4.2.0 Busy, try later");
	/* Without a DSN: X.7.1 of the reply's class. */
	CU_ASSERT_EQUAL(parse("ERROR:553 No such domain", &r), 0);
	CU_ASSERT_STRING_EQUAL(r.reply, "553 5.7.1 No such domain");
	CU_ASSERT_EQUAL(parse("ERROR:421 Go away", &r), 0);
	CU_ASSERT_STRING_EQUAL(r.reply, "421 4.7.1 Go away");
	/* Quoted as sendmail's m4 files write it. */
	CU_ASSERT_EQUAL(parse("ERROR:\"5.7.1:550 Quoted text\"", &r), 0);
	CU_ASSERT_STRING_EQUAL(r.reply, "550 5.7.1 Quoted text");
	/* The DSN's class follows the reply code's. */
	CU_ASSERT_EQUAL(parse("ERROR:5.7.1:451 Mixed", &r), 0);
	CU_ASSERT_STRING_EQUAL(r.reply, "451 4.7.1 Mixed");
	/* No control characters reach the wire. */
	CU_ASSERT_EQUAL(parse("ERROR:550 a\tb\rc", &r), 0);
	CU_ASSERT_STRING_EQUAL(r.reply, "550 5.7.1 a b c");
	/* A very long text is cut, not overrun. */
	{
		char value[2048];

		memset(value, 'x', sizeof(value) - 1);
		value[sizeof(value) - 1] = '\0';
		memcpy(value, "ERROR:550 ", 10);
		CU_ASSERT_EQUAL(parse(value, &r), 0);
		CU_ASSERT_EQUAL(strlen(r.reply), sizeof(r.reply) - 1);
	}
	/* Not a reply code. */
	CU_ASSERT_EQUAL(parse("ERROR:", &r), -1);
	CU_ASSERT_EQUAL(parse("ERROR:5.7.1:", &r), -1);
	CU_ASSERT_EQUAL(parse("ERROR:250 fine", &r), -1);
	CU_ASSERT_EQUAL(parse("ERROR:600 x", &r), -1);
	CU_ASSERT_EQUAL(parse("ERROR:55", &r), -1);
	CU_ASSERT_EQUAL(parse("ERROR:5x0 x", &r), -1);
	/* Only len bytes are read. */
	CU_ASSERT_EQUAL(access_parse_value("RELAYX", 5, &r), 0);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
}

static void
client_is(const char *ip, const char *name, enum access_action action,
	  const char *key)
{
	struct access_result r;

	access_client(table, ip, name, &r);
	CU_ASSERT_EQUAL(r.action, action);
	if (key != NULL)
		CU_ASSERT_STRING_EQUAL(r.key, key);
	if (r.action != action || (key && strcmp(r.key, key) != 0))
		fprintf(stderr, "\n  client %s %s: action %d key %s\n", ip,
			name ? name : "-", (int)r.action, r.key);
}

static void
test_access_client_addresses_and_prefixes(void)
{
	struct access_result r;

	client_is("127.0.0.1", NULL, ACCESS_RELAY, "127.0.0.1");
	client_is("127.0.0.2", NULL, ACCESS_NONE, NULL);
	client_is("10.1.2.3", NULL, ACCESS_REJECT, "Connect:10.1.2.3");
	client_is("192.168.44.5", NULL, ACCESS_RELAY, "192.168.");
	client_is("192.169.1.1", NULL, ACCESS_NONE, NULL);
	/* "10.9" is the net 10.9, not 10.99. */
	client_is("10.9.1.1", NULL, ACCESS_OK, "10.9");
	client_is("10.99.1.1", NULL, ACCESS_NONE, NULL);
	client_is("172.16.5.4", NULL, ACCESS_DISCARD, "172.16.5.4");
	client_is("172.16.5.40", NULL, ACCESS_NONE, NULL);
	access_client(table, "203.0.113.7", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_ERROR);
	CU_ASSERT_STRING_EQUAL(r.reply, "451 4.7.1 Slow down");
	access_client(table, "203.0.113.8", NULL, &r);
	CU_ASSERT_STRING_EQUAL(r.reply, "550 5.7.1 Go away");
	/* An entry whose value is nonsense decides nothing. */
	client_is("10.7.7.7", NULL, ACCESS_NONE, NULL);
}

static void
test_access_client_ipv6(void)
{
	client_is("::1", NULL, ACCESS_RELAY, "::1");
	client_is("2001:db8::5", NULL, ACCESS_RELAY, "IPv6:2001:db8");
	client_is("2001:DB8:0::17", NULL, ACCESS_RELAY, "IPv6:2001:db8");
	client_is("2001:db9::66", NULL, ACCESS_REJECT,
		  "Connect:IPv6:2001:db9:0:0:0:0:0:66");
	client_is("2001:db9::67", NULL, ACCESS_NONE, NULL);
	client_is("::2", NULL, ACCESS_NONE, NULL);
}

static void
test_access_client_host_names(void)
{
	client_is("198.51.100.1", "trusted.example.net", ACCESS_RELAY,
		  "trusted.example.net");
	client_is("198.51.100.1", "TRUSTED.Example.NET", ACCESS_RELAY, NULL);
	client_is("198.51.100.2", "mx1.partner.example", ACCESS_RELAY,
		  ".partner.example");
	client_is("198.51.100.2", "a.b.partner.example", ACCESS_RELAY,
		  ".partner.example");
	client_is("198.51.100.3", "bad.host.example", ACCESS_REJECT,
		  "Connect:bad.host.example");
	client_is("198.51.100.4", "other.example.net", ACCESS_NONE, NULL);
	client_is("198.51.100.5", NULL, ACCESS_NONE, NULL);
	client_is("198.51.100.5", "", ACCESS_NONE, NULL);
	/* The address decides before the name. */
	client_is("127.0.0.1", "bad.host.example", ACCESS_RELAY, "127.0.0.1");
	client_is("10.1.2.3", "trusted.example.net", ACCESS_REJECT, NULL);
}

static void
test_access_without_a_table_only_localhost_relays(void)
{
	struct access_result r;

	access_client(NULL, "127.0.0.1", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
	access_client(NULL, "::1", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
	access_client(NULL, "10.0.0.1", "localhost", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
	access_client(NULL, "127.0.0.2", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_client(NULL, "192.168.1.1", "host.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_client(NULL, "::2", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_sender(NULL, "spammer@bad.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_recipient(NULL, "u@relayto.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
}

/* INTERFACE.md: with no entry that matches, only 127.0.0.1 and ::1 may
 * relay; an entry for them decides like any other. */
static void
test_access_loopback_relays_unless_an_entry_says_otherwise(void)
{
	struct access_result r;
	struct status st;
	struct map *other;
	char path[4096];

	snprintf(path, sizeof(path), "%s/other", dir);
	CU_ASSERT_EQUAL_FATAL(fixture_write_text(path, "192.168. RELAY\n"), 0);
	other = map_parse_text(path, MAP_TABLE, NULL, &st);
	CU_ASSERT_PTR_NOT_NULL_FATAL(other);
	access_client(other, "127.0.0.1", "localhost", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
	access_client(other, "::1", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
	access_client(other, "127.0.0.2", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_client(other, "10.0.0.1", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	map_close(other);

	CU_ASSERT_EQUAL_FATAL(fixture_write_text(path, "127.0.0.1 REJECT\n"
						 "IPv6:::1 OK\n"), 0);
	other = map_parse_text(path, MAP_TABLE, NULL, &st);
	CU_ASSERT_PTR_NOT_NULL_FATAL(other);
	access_client(other, "127.0.0.1", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_REJECT);
	access_client(other, "::1", NULL, &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_OK);
	CU_ASSERT_STRING_EQUAL(r.key, "IPv6:::1");
	map_close(other);
}

static void
test_access_senders(void)
{
	struct access_result r;

	access_sender(table, "spammer@bad.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_REJECT);
	CU_ASSERT_STRING_EQUAL(r.key, "From:spammer@bad.example");
	access_sender(table, "SPAMMER@Bad.Example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_REJECT);
	access_sender(table, "other@bad.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_sender(table, "x@host.junk.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_ERROR);
	CU_ASSERT_STRING_EQUAL(r.reply, "550 5.7.1 Junk not wanted");
	access_sender(table, "bounce@anywhere.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_REJECT);
	CU_ASSERT_STRING_EQUAL(r.key, "From:bounce@");
	/* Untagged entries speak for senders too. */
	access_sender(table, "u@example.org", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_REJECT);
	CU_ASSERT_STRING_EQUAL(r.key, "example.org");
	access_sender(table, "fine@good.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_sender(table, "", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_sender(table, "nodomain", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
}

static void
test_access_recipients_only_to_entries(void)
{
	struct access_result r;

	access_recipient(table, "u@relayto.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_RELAY);
	CU_ASSERT_STRING_EQUAL(r.key, "To:relayto.example");
	access_recipient(table, "blocked@local.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_ERROR);
	CU_ASSERT_STRING_EQUAL(r.reply, "550 5.7.2 Blocked by policy");
	access_recipient(table, "other@local.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	/* An untagged or From: entry does not. */
	access_recipient(table, "u@example.org", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
	access_recipient(table, "spammer@bad.example", &r);
	CU_ASSERT_EQUAL(r.action, ACCESS_NONE);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_access_parse_value_words),
	UNIT_TEST(test_access_parse_value_errors),
	UNIT_TEST(test_access_client_addresses_and_prefixes),
	UNIT_TEST(test_access_client_ipv6),
	UNIT_TEST(test_access_client_host_names),
	UNIT_TEST(test_access_without_a_table_only_localhost_relays),
	UNIT_TEST(test_access_loopback_relays_unless_an_entry_says_otherwise),
	UNIT_TEST(test_access_senders),
	UNIT_TEST(test_access_recipients_only_to_entries),
};

void
test_access_register(void)
{
	fixture_suite_setup("access", tests, UNIT_COUNT(tests), setup,
			    teardown);
}
