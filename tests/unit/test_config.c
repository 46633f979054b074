/*
 * config: defaults, overrides, relative paths, $key expansion, and errors
 * that name file:line.
 */
#include <CUnit/CUnit.h>

#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "config.h"
#include "suites.h"

struct conf_dir {
	char *dir;
	struct buf file;	/* DIR/mail.conf */
};

/* Writes text to DIR/mail.conf in a fresh directory. */
static int
conf_write(struct conf_dir *cd, const char *text)
{
	cd->dir = fixture_tmpdir();
	buf_init(&cd->file);
	if (cd->dir == NULL)
		return -1;
	buf_printf(&cd->file, "%s/mail.conf", cd->dir);
	if (text == NULL)
		return 0;
	return fixture_write_file(cd->file.data, text, strlen(text));
}

static void
conf_done(struct conf_dir *cd)
{
	CU_ASSERT_EQUAL(fixture_rmtree(cd->dir), 0);
	free(cd->dir);
	buf_free(&cd->file);
}

/* Loads text as mail.conf and expects failure naming line. */
static void
assert_config_error(const char *text, int line, const char *words)
{
	struct conf_dir cd;
	struct config cfg;
	struct status st;
	struct buf where;

	CU_ASSERT_FATAL(conf_write(&cd, text) == 0);
	status_ok(&st);
	CU_ASSERT_EQUAL(config_load(&cfg, cd.file.data, 1, &st), -1);
	CU_ASSERT_EQUAL(st.exit_code, EX_CONFIG);
	CU_ASSERT_EQUAL(st.exit_code, 78);
	buf_init(&where);
	buf_printf(&where, "%s:%d:", cd.file.data, line);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.text, where.data));
	if (words != NULL)
		CU_ASSERT_PTR_NOT_NULL(strstr(st.text, words));
	buf_free(&where);
	conf_done(&cd);
}

static void
test_config_missing_file_gives_every_default(void)
{
	struct conf_dir cd;
	struct config cfg;
	struct status st;

	CU_ASSERT_FATAL(conf_write(&cd, NULL) == 0);
	CU_ASSERT_FATAL(config_load(&cfg, cd.file.data, 0, &st) == 0);
	CU_ASSERT_PTR_NULL(cfg.path);
	CU_ASSERT_STRING_EQUAL(cfg.hostname, "");
	CU_ASSERT_EQUAL_FATAL(cfg.local_domains.count, 2);
	CU_ASSERT_STRING_EQUAL(cfg.local_domains.items[1], "localhost");
	CU_ASSERT_STRING_EQUAL(cfg.spool_dir, "/var/spool/mail");
	CU_ASSERT_STRING_EQUAL(cfg.mailbox, "/var/spool/mail/%u");
	CU_ASSERT_STRING_EQUAL(cfg.queue_dir, "/var/spool/mqueue");
	CU_ASSERT_EQUAL_FATAL(cfg.aliases.count, 1);
	CU_ASSERT_STRING_EQUAL(cfg.aliases.items[0], "/etc/aliases");
	CU_ASSERT_STRING_EQUAL(cfg.virtusertable, "/etc/mail/virtusertable");
	CU_ASSERT_STRING_EQUAL(cfg.mailertable, "/etc/mail/mailertable");
	CU_ASSERT_STRING_EQUAL(cfg.access, "/etc/mail/access");
	CU_ASSERT_STRING_EQUAL(cfg.log, "syslog");
	CU_ASSERT_STRING_EQUAL(cfg.statistics, "/etc/mail/statistics");
	CU_ASSERT_EQUAL_FATAL(cfg.listen.count, 2);
	CU_ASSERT_STRING_EQUAL(cfg.listen.items[0], "127.0.0.1:25");
	CU_ASSERT_STRING_EQUAL(cfg.listen.items[1], "[::1]:25");
	CU_ASSERT_EQUAL(cfg.relay_based_on_mx, 0);
	CU_ASSERT_STRING_EQUAL(cfg.default_privs, "nobody");
	CU_ASSERT_EQUAL(cfg.max_message_size, 52428800);
	CU_ASSERT_EQUAL(cfg.max_recipients, 1000);
	CU_ASSERT_EQUAL(cfg.max_hops, 25);
	CU_ASSERT_EQUAL(cfg.queue_lifetime, 432000);
	CU_ASSERT_EQUAL(cfg.queue_warn, 14400);
	CU_ASSERT_EQUAL(cfg.command_timeout, 300);
	CU_ASSERT_EQUAL(cfg.data_timeout, 600);
	CU_ASSERT_EQUAL(cfg.max_sessions, 100);
	CU_ASSERT_EQUAL(cfg.max_sessions_per_client, 10);
	CU_ASSERT_STRING_EQUAL(cfg.smtp_cert, "");
	CU_ASSERT_STRING_EQUAL(cfg.smtp_key, "");
	CU_ASSERT_STRING_EQUAL(cfg.mail_group, "mail");
	CU_ASSERT_EQUAL(cfg.lock_timeout, 300);
	CU_ASSERT_STRING_EQUAL(cfg.recipient_delimiter, "+");
	CU_ASSERT_STRING_EQUAL(cfg.sendmail_path, SBINDIR "/sendmail");
	CU_ASSERT_STRING_EQUAL(cfg.smtpd_path, SBINDIR "/smtpd");
	CU_ASSERT_STRING_EQUAL(cfg.submit_group, "smmsp");
	CU_ASSERT_EQUAL(cfg.max_deliveries, 4);
	CU_ASSERT_EQUAL(cfg.min_backoff, 300);
	CU_ASSERT_EQUAL(cfg.max_backoff, 3600);
	CU_ASSERT_STRING_EQUAL(cfg.smtpd_user, "mail");
	CU_ASSERT_EQUAL(cfg.max_line_length, 2048);
	CU_ASSERT_STRING_EQUAL(cfg.smarthost, "");
	CU_ASSERT_EQUAL(cfg.smtp_port, 25);
	CU_ASSERT_EQUAL(cfg.local_only, 0);
	CU_ASSERT_EQUAL(cfg.smtp_connect_timeout, 30);
	CU_ASSERT_EQUAL(cfg.smtp_connection_reuse, 1);
	CU_ASSERT_EQUAL(cfg.smtpd_max_use, 100);
	CU_ASSERT_STRING_EQUAL(cfg.tmp_dir, "/tmp");
	config_free(&cfg);
	conf_done(&cd);
}

static void
test_config_missing_file_fails_when_it_must_exist(void)
{
	struct conf_dir cd;
	struct config cfg;
	struct status st;

	CU_ASSERT_FATAL(conf_write(&cd, NULL) == 0);
	CU_ASSERT_EQUAL(config_load(&cfg, cd.file.data, 1, &st), -1);
	CU_ASSERT_EQUAL(st.exit_code, EX_CONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.text, cd.file.data));
	conf_done(&cd);
}

static void
test_config_file_overrides_keys_with_comments_and_blanks(void)
{
	struct conf_dir cd;
	struct config cfg;
	struct status st;

	CU_ASSERT_FATAL(conf_write(&cd,
		"# a comment\n"
		"\n"
		"   \t\n"
		"  # an indented comment\n"
		"max_recipients = 250\n"
		"queue_lifetime=3d\n"
		"  relay_based_on_mx   =   yes  \n"
		"max_message_size = 10m\n"
		"listen = 0.0.0.0:25, [::]:25 , 127.0.0.1:587\n"
		"log = /var/log/mail.log\n"
		"max_recipients = 300\n") == 0);
	CU_ASSERT_FATAL(config_load(&cfg, cd.file.data, 1, &st) == 0);
	CU_ASSERT_STRING_EQUAL(cfg.path, cd.file.data);
	CU_ASSERT_EQUAL(cfg.max_recipients, 300);	/* the last one wins */
	CU_ASSERT_EQUAL(cfg.queue_lifetime, 3 * 86400);
	CU_ASSERT_EQUAL(cfg.relay_based_on_mx, 1);
	CU_ASSERT_EQUAL(cfg.max_message_size, 10 * 1024 * 1024);
	CU_ASSERT_EQUAL_FATAL(cfg.listen.count, 3);
	CU_ASSERT_STRING_EQUAL(cfg.listen.items[1], "[::]:25");
	CU_ASSERT_STRING_EQUAL(cfg.listen.items[2], "127.0.0.1:587");
	CU_ASSERT_STRING_EQUAL(cfg.log, "/var/log/mail.log");
	/* What the file does not name keeps its default. */
	CU_ASSERT_EQUAL(cfg.queue_warn, 14400);
	CU_ASSERT_STRING_EQUAL(cfg.spool_dir, "/var/spool/mail");
	config_free(&cfg);
	conf_done(&cd);
}

static void
test_config_relative_paths_follow_the_file(void)
{
	struct conf_dir cd;
	struct config cfg;
	struct status st;
	struct buf want;

	CU_ASSERT_FATAL(conf_write(&cd, "spool_dir = spool\n"
					"aliases = aliases, /etc/more\n"
					"log = log/maillog\n") == 0);
	CU_ASSERT_FATAL(config_load(&cfg, cd.file.data, 1, &st) == 0);
	buf_init(&want);
	buf_printf(&want, "%s/spool", cd.dir);
	CU_ASSERT_STRING_EQUAL(cfg.spool_dir, want.data);
	/* The default mailbox is built from the resolved spool_dir. */
	buf_puts(&want, "/%u");
	CU_ASSERT_STRING_EQUAL(cfg.mailbox, want.data);
	CU_ASSERT_EQUAL_FATAL(cfg.aliases.count, 2);
	buf_reset(&want);
	buf_printf(&want, "%s/aliases", cd.dir);
	CU_ASSERT_STRING_EQUAL(cfg.aliases.items[0], want.data);
	CU_ASSERT_STRING_EQUAL(cfg.aliases.items[1], "/etc/more");
	buf_reset(&want);
	buf_printf(&want, "%s/log/maillog", cd.dir);
	CU_ASSERT_STRING_EQUAL(cfg.log, want.data);
	buf_free(&want);
	config_free(&cfg);
	conf_done(&cd);
}

static void
test_config_expands_dollar_keys(void)
{
	struct conf_dir cd;
	struct config cfg;
	struct status st;

	CU_ASSERT_FATAL(conf_write(&cd,
		"spool_dir = /srv/mail\n"
		"queue_dir = $spool_dir/queue\n"
		"mailbox = ${spool_dir}/boxes/%u\n"
		"hostname = mx.example.org\n"
		"statistics = /var/stats/$hostname\n"
		"default_privs = $mail_group\n") == 0);
	CU_ASSERT_FATAL(config_load(&cfg, cd.file.data, 1, &st) == 0);
	CU_ASSERT_STRING_EQUAL(cfg.queue_dir, "/srv/mail/queue");
	CU_ASSERT_STRING_EQUAL(cfg.mailbox, "/srv/mail/boxes/%u");
	CU_ASSERT_STRING_EQUAL(cfg.default_privs, "mail");
	CU_ASSERT_STRING_EQUAL(cfg.statistics, "/var/stats/mx.example.org");
	CU_ASSERT_EQUAL_FATAL(cfg.local_domains.count, 2);
	CU_ASSERT_STRING_EQUAL(cfg.local_domains.items[0], "mx.example.org");
	config_free(&cfg);
	conf_done(&cd);
}

static void
test_config_unknown_key_names_file_and_line(void)
{
	assert_config_error("# ok\nmax_hops = 30\n\nno_such_key = 1\n", 4,
			    "no_such_key");
}

static void
test_config_bad_values_name_file_and_line(void)
{
	assert_config_error("max_recipients = 99\n", 1, "max_recipients");
	assert_config_error("\nmax_recipients = 100x\n", 2, "max_recipients");
	assert_config_error("#\n#\nrelay_based_on_mx = maybe\n", 3,
			    "relay_based_on_mx");
	assert_config_error("\n\n\n\nqueue_lifetime = 5x\n", 5,
			    "queue_lifetime");
	assert_config_error("hostname = a\nmax_message_size = 12q\n", 2,
			    "max_message_size");
	assert_config_error("recipient_delimiter = +-\n", 1,
			    "recipient_delimiter");
	assert_config_error("max_hops\n", 1, NULL);
	assert_config_error("\nspool_dir = $nonexistent/x\n", 2, "nonexistent");
	/* A loop is an error, not a hang. */
	assert_config_error("tmp_dir = $tmp_dir\n", 1, "tmp_dir");
}

static void
test_config_minimum_count_is_accepted(void)
{
	struct conf_dir cd;
	struct config cfg;
	struct status st;

	CU_ASSERT_FATAL(conf_write(&cd, "max_recipients = 100\n") == 0);
	CU_ASSERT_FATAL(config_load(&cfg, cd.file.data, 1, &st) == 0);
	CU_ASSERT_EQUAL(cfg.max_recipients, 100);
	config_free(&cfg);
	conf_done(&cd);
}

static void
test_config_parse_duration(void)
{
	unsigned s = 7;

	CU_ASSERT(config_parse_duration("0", &s) == 0 && s == 0);
	CU_ASSERT(config_parse_duration("30", &s) == 0 && s == 30);
	CU_ASSERT(config_parse_duration("30s", &s) == 0 && s == 30);
	CU_ASSERT(config_parse_duration("5m", &s) == 0 && s == 300);
	CU_ASSERT(config_parse_duration("4h", &s) == 0 && s == 14400);
	CU_ASSERT(config_parse_duration("5d", &s) == 0 && s == 432000);
	CU_ASSERT(config_parse_duration("2w", &s) == 0 && s == 1209600);
	s = 7;
	CU_ASSERT_EQUAL(config_parse_duration("5x", &s), -1);
	CU_ASSERT_EQUAL(config_parse_duration("", &s), -1);
	CU_ASSERT_EQUAL(config_parse_duration("m", &s), -1);
	CU_ASSERT_EQUAL(config_parse_duration("-5", &s), -1);
	CU_ASSERT_EQUAL(config_parse_duration(" 5", &s), -1);
	CU_ASSERT_EQUAL(config_parse_duration("5mm", &s), -1);
	CU_ASSERT_EQUAL(config_parse_duration("99999999w", &s), -1);
	CU_ASSERT_EQUAL(config_parse_duration("99999999999999999999", &s),
			-1);
	CU_ASSERT_EQUAL(s, 7);	/* untouched by failures */
}

static void
test_config_parse_size(void)
{
	uint64_t n = 7;

	CU_ASSERT(config_parse_size("0", &n) == 0 && n == 0);
	CU_ASSERT(config_parse_size("1234", &n) == 0 && n == 1234);
	CU_ASSERT(config_parse_size("10k", &n) == 0 && n == 10240);
	CU_ASSERT(config_parse_size("10K", &n) == 0 && n == 10240);
	CU_ASSERT(config_parse_size("3m", &n) == 0 && n == 3145728);
	CU_ASSERT(config_parse_size("2G", &n) == 0 && n == 2147483648ULL);
	n = 7;
	CU_ASSERT_EQUAL(config_parse_size("12q", &n), -1);
	CU_ASSERT_EQUAL(config_parse_size("", &n), -1);
	CU_ASSERT_EQUAL(config_parse_size("k", &n), -1);
	CU_ASSERT_EQUAL(config_parse_size("-1", &n), -1);
	CU_ASSERT_EQUAL(config_parse_size("1kb", &n), -1);
	CU_ASSERT_EQUAL(config_parse_size("99999999999999999999g", &n), -1);
	CU_ASSERT_EQUAL(config_parse_size("18014398509481984g", &n), -1);
	CU_ASSERT_EQUAL(n, 7);
}

static void
test_config_parse_bool(void)
{
	static const char *yes[] = { "yes", "YES", "true", "On", "1" };
	static const char *no[] = { "no", "No", "false", "OFF", "0" };
	static const char *bad[] = { "maybe", "", "y", "2", "yes " };
	size_t i;
	int v;

	for (i = 0; i < 5; i++) {
		v = -1;
		CU_ASSERT(config_parse_bool(yes[i], &v) == 0 && v == 1);
		v = -1;
		CU_ASSERT(config_parse_bool(no[i], &v) == 0 && v == 0);
		v = -1;
		CU_ASSERT(config_parse_bool(bad[i], &v) == -1 && v == -1);
	}
}

static void
test_config_local_domain_ignores_case(void)
{
	struct conf_dir cd;
	struct config cfg;
	struct status st;
	const char *text = "Example.ORG trailing";

	CU_ASSERT_FATAL(conf_write(&cd, "hostname = mx.example.net\n"
					"local_domains = example.org, "
					"$hostname, Localhost\n") == 0);
	CU_ASSERT_FATAL(config_load(&cfg, cd.file.data, 1, &st) == 0);
	CU_ASSERT_EQUAL(config_is_local_domain(&cfg, "EXAMPLE.org", 11), 1);
	CU_ASSERT_EQUAL(config_is_local_domain(&cfg, text, 11), 1);
	CU_ASSERT_EQUAL(config_is_local_domain(&cfg, "MX.Example.Net", 14), 1);
	CU_ASSERT_EQUAL(config_is_local_domain(&cfg, "localhost", 9), 1);
	CU_ASSERT_EQUAL(config_is_local_domain(&cfg, "example.or", 10), 0);
	CU_ASSERT_EQUAL(config_is_local_domain(&cfg, "example.orgx", 12), 0);
	CU_ASSERT_EQUAL(config_is_local_domain(&cfg, "sub.example.org", 15),
			0);
	CU_ASSERT_EQUAL(config_is_local_domain(&cfg, "", 0), 0);
	config_free(&cfg);
	conf_done(&cd);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_config_missing_file_gives_every_default),
	UNIT_TEST(test_config_missing_file_fails_when_it_must_exist),
	UNIT_TEST(test_config_file_overrides_keys_with_comments_and_blanks),
	UNIT_TEST(test_config_relative_paths_follow_the_file),
	UNIT_TEST(test_config_expands_dollar_keys),
	UNIT_TEST(test_config_unknown_key_names_file_and_line),
	UNIT_TEST(test_config_bad_values_name_file_and_line),
	UNIT_TEST(test_config_minimum_count_is_accepted),
	UNIT_TEST(test_config_parse_duration),
	UNIT_TEST(test_config_parse_size),
	UNIT_TEST(test_config_parse_bool),
	UNIT_TEST(test_config_local_domain_ignores_case),
};

void
test_config_register(void)
{
	fixture_suite("config", tests, UNIT_COUNT(tests));
}
