/*
 * maildir: a delivered message is whole in new/ under a unique name with
 * its size; failures leave nothing behind; symlinks are refused.
 */
#include <CUnit/CUnit.h>

#include <dirent.h>
#include <regex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "maildir.h"
#include "suites.h"

#define MSG "Subject: hello\r\n\r\nFrom me\r\nbody\r\n"
#define FORM "Return-Path: <alice@example.org>\n" \
	     "Delivered-To: bob@example.org\n" \
	     "Subject: hello\n\nFrom me\nbody\n"
#define NAME_RE "^[0-9]+\\.M[0-9]+P[0-9]+R[0-9a-f]{8}\\.host,S=([0-9]+)$"

static struct msgform
maildir_form(void)
{
	struct msgform form;

	memset(&form, 0, sizeof(form));
	form.mbox = 1;	/* maildir_deliver must turn it off */
	form.sender = "alice@example.org";
	form.delivered_to = "bob@example.org";
	form.now = 1700000000;
	return form;
}

static int
deliver(const char *dir, const char *text, struct buf *delivered,
	struct status *st)
{
	struct msgform form = maildir_form();
	struct message m;
	int rc;

	if (fixture_message(&m, text, strlen(text), "/tmp", st) < 0)
		return -2;
	rc = maildir_deliver(dir, &m, &form, "host", delivered, st);
	message_free(&m);
	return rc;
}

/* The one entry of dir/sub, or NULL. The caller frees it. */
static char *
only_entry(const char *dir, const char *sub)
{
	struct buf path;
	DIR *d;
	struct dirent *e;
	char *name = NULL;
	int count = 0;

	buf_init(&path);
	buf_printf(&path, "%s/%s", dir, sub);
	d = opendir(path.data);
	buf_free(&path);
	if (d == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (count++ == 0)
			name = strdup(e->d_name);
	}
	closedir(d);
	if (count != 1) {
		free(name);
		return NULL;
	}
	return name;
}

static int
entries(const char *dir, const char *sub)
{
	struct buf path;
	int n;

	buf_init(&path);
	buf_printf(&path, "%s/%s", dir, sub);
	n = fixture_count_entries(path.data);
	buf_free(&path);
	return n;
}

static void
test_maildir_creates_dirs_and_one_file_in_new(void)
{
	char *top = fixture_tmpdir(), *name;
	const char *subs[] = { "tmp", "new", "cur" };
	struct buf dir, file, content, delivered;
	struct status st;
	struct stat sb;
	regex_t re;
	regmatch_t match[2];
	size_t i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	buf_init(&dir);
	buf_init(&file);
	buf_init(&content);
	buf_init(&delivered);
	buf_printf(&dir, "%s/Maildir/", top);	/* a trailing slash is fine */
	CU_ASSERT_EQUAL(deliver(dir.data, MSG, &delivered, &st), 0);
	for (i = 0; i < 3; i++) {
		buf_reset(&file);
		buf_printf(&file, "%s/Maildir/%s", top, subs[i]);
		CU_ASSERT_EQUAL_FATAL(lstat(file.data, &sb), 0);
		CU_ASSERT(S_ISDIR(sb.st_mode));
		CU_ASSERT_EQUAL(sb.st_mode & 07777, 0700);
	}
	buf_truncate(&dir, dir.len - 1);
	CU_ASSERT_EQUAL(entries(dir.data, "tmp"), 0);
	CU_ASSERT_EQUAL(entries(dir.data, "cur"), 0);
	name = only_entry(dir.data, "new");
	CU_ASSERT_PTR_NOT_NULL_FATAL(name);
	CU_ASSERT_FATAL(regcomp(&re, NAME_RE, REG_EXTENDED) == 0);
	CU_ASSERT_EQUAL(regexec(&re, name, 2, match, 0), 0);
	regfree(&re);
	buf_reset(&file);
	buf_printf(&file, "%s/new/%s", dir.data, name);
	CU_ASSERT_STRING_EQUAL(delivered.data, file.data);
	CU_ASSERT_EQUAL(fixture_read_file(file.data, &content), 0);
	CU_ASSERT_STRING_EQUAL(content.data, FORM);
	/* S= is the size of the file. */
	CU_ASSERT_EQUAL(strtoul(name + match[1].rm_so, NULL, 10),
			strlen(FORM));
	CU_ASSERT_EQUAL(content.len, strlen(FORM));
	CU_ASSERT_EQUAL(lstat(file.data, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 07777, 0600);
	free(name);
	buf_free(&dir);
	buf_free(&file);
	buf_free(&content);
	buf_free(&delivered);
	CU_ASSERT_EQUAL(fixture_rmtree(top), 0);
	free(top);
}

static void
test_maildir_second_delivery_gets_another_name(void)
{
	char *top = fixture_tmpdir();
	struct buf first, second;
	struct status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	buf_init(&first);
	buf_init(&second);
	CU_ASSERT_EQUAL(deliver(top, MSG, &first, &st), 0);
	CU_ASSERT_EQUAL(deliver(top, MSG, &second, &st), 0);
	CU_ASSERT_STRING_NOT_EQUAL(first.data, second.data);
	CU_ASSERT_EQUAL(entries(top, "new"), 2);
	CU_ASSERT_EQUAL(entries(top, "tmp"), 0);
	buf_free(&first);
	buf_free(&second);
	CU_ASSERT_EQUAL(fixture_rmtree(top), 0);
	free(top);
}

static void
test_maildir_refuses_symlinked_maildir(void)
{
	char *top = fixture_tmpdir();
	struct buf real, link_path;
	struct status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	buf_init(&real);
	buf_init(&link_path);
	buf_printf(&real, "%s/real", top);
	buf_printf(&link_path, "%s/Maildir", top);
	CU_ASSERT_FATAL(mkdir(real.data, 0700) == 0);
	CU_ASSERT_FATAL(symlink(real.data, link_path.data) == 0);
	CU_ASSERT_EQUAL(deliver(link_path.data, MSG, NULL, &st), -1);
	CU_ASSERT_EQUAL(st.exit_code, EX_TEMPFAIL);
	buf_putc(&link_path, '/');	/* "Maildir/" must not follow it */
	CU_ASSERT_EQUAL(deliver(link_path.data, MSG, NULL, &st), -1);
	CU_ASSERT_EQUAL(st.exit_code, EX_TEMPFAIL);
	CU_ASSERT_EQUAL(fixture_count_entries(real.data), 0);
	buf_free(&real);
	buf_free(&link_path);
	CU_ASSERT_EQUAL(fixture_rmtree(top), 0);
	free(top);
}

static void
test_maildir_unique_name_escapes_slash_and_colon(void)
{
	struct buf name;
	const char *host;

	buf_init(&name);
	maildir_unique_name(&name, "a/b:c.example", NULL);
	host = strchr(name.data, '.');
	CU_ASSERT_PTR_NOT_NULL_FATAL(host);
	CU_ASSERT_STRING_EQUAL(host + 1 + strcspn(host + 1, "."),
			       ".a\\057b\\072c.example");
	CU_ASSERT_PTR_NULL(strchr(name.data, '/'));
	CU_ASSERT_PTR_NULL(strchr(name.data, ':'));
	buf_free(&name);
}

static int
deliver_with_size_limit(void *arg)
{
	const char *dir = arg;
	struct rlimit rl;
	struct status st;
	struct buf big;
	int rc;

	signal(SIGXFSZ, SIG_IGN);
	rl.rlim_cur = rl.rlim_max = 1000;
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		return 10;
	buf_init(&big);
	fixture_big_message(&big, 3000);
	rc = deliver(dir, big.data, NULL, &st);
	buf_free(&big);
	if (rc != -1)
		return 11;
	return st.exit_code == EX_CANTCREAT ? 0 : 12;
}

static void
test_maildir_failure_leaves_nothing_behind(void)
{
	char *top = fixture_tmpdir();

	CU_ASSERT_PTR_NOT_NULL_FATAL(top);
	CU_ASSERT_EQUAL(fixture_in_child(deliver_with_size_limit, top), 0);
	CU_ASSERT_EQUAL(entries(top, "new"), 0);
	CU_ASSERT_EQUAL(entries(top, "tmp"), 0);
	CU_ASSERT_EQUAL(entries(top, "cur"), 0);
	CU_ASSERT_EQUAL(fixture_rmtree(top), 0);
	free(top);
}

static const struct unit_test tests[] = {
	UNIT_TEST(test_maildir_creates_dirs_and_one_file_in_new),
	UNIT_TEST(test_maildir_second_delivery_gets_another_name),
	UNIT_TEST(test_maildir_refuses_symlinked_maildir),
	UNIT_TEST(test_maildir_unique_name_escapes_slash_and_colon),
	UNIT_TEST(test_maildir_failure_leaves_nothing_behind),
};

void
test_maildir_register(void)
{
	fixture_suite("maildir", tests, UNIT_COUNT(tests));
}
