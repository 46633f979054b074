/*
 * engine: rcfiles run against a message with fake actions that record what
 * would be delivered, piped or forwarded. Each flag of procmailrc(5),
 * weighted scoring, filters, nested and cloned blocks, variables and their
 * expansion, the logfile's abstract, INCLUDERC/SWITCHRC, HOST, EXITCODE and
 * TRAP, folder types and ATTACHMENT_TYPES.
 */
#include <CUnit/CUnit.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "suites.h"

#define NOW 1700000000	/* Tue Nov 14 22:13:20 2023 UTC */
#define MESSAGE "From: Alice <alice@example.org>\n" \
		"To: bob@example.org\n" \
		"Subject: hello world\n" \
		"\n" \
		"body line 1\n" \
		"body line 2\n"

/* What the fake actions saw, one line per call. */
struct record {
	struct buf calls;	/* "folder box 0 hb|pipe cmd|forward a b" */
	struct buf last_msg;	/* the bytes of the last message given */
	char cwd[4096];		/* the directory of the last call */
	int folder_fails;
};

static struct record rec;
static struct buf logged;	/* env->log lines */
static char *tmpdir;

static void
save_msg(const struct rules_msg *msg)
{
	const struct message *m = msg->message;
	char chunk[4096];
	off_t off = 0;
	ssize_t n;

	buf_reset(&rec.last_msg);
	while ((n = message_pread(m, chunk, sizeof(chunk), off)) > 0) {
		buf_append(&rec.last_msg, chunk, (size_t)n);
		off += n;
	}
	if (getcwd(rec.cwd, sizeof(rec.cwd)) == NULL)
		rec.cwd[0] = '\0';
}

static const char *
feed_name(int flags)
{
	switch (flags & (RULES_HEADER | RULES_BODY)) {
	case RULES_HEADER: return "h";
	case RULES_BODY: return "b";
	default: return "hb";
	}
}

static int
fake_folder(void *arg, const char *path, enum rules_folder_type type,
	    const struct rules_msg *msg, int flags, struct buf *stored,
	    struct status *st)
{
	(void)arg;
	save_msg(msg);
	buf_printf(&rec.calls, "folder %s %d %s\n", path, (int)type,
		   feed_name(flags));
	if (rec.folder_fails)
		return status_set(st, EX_CANTCREAT, NULL, "cannot write");
	if (type == RULES_MAILDIR)
		buf_printf(stored, "%s/new/1.x", path);
	return 0;
}

/* A few commands, interpreted: cat, true, false, "echo WORDS",
 * "addheader FIELD" (appends a header field), "upper", "exit N". */
static int
fake_pipe(void *arg, const char *command, const struct rules_msg *msg,
	  int flags, int capture, struct buf *output, int *exit_status,
	  struct status *st)
{
	(void)arg;
	(void)st;
	save_msg(msg);
	buf_printf(&rec.calls, "pipe %s %s%s\n", command, feed_name(flags),
		   capture ? " capture" : "");
	*exit_status = 0;
	if (strcmp(command, "cat") == 0) {
		if (capture)
			buf_append(output, rec.last_msg.data,
				   rec.last_msg.len);
	} else if (strcmp(command, "false") == 0) {
		*exit_status = 1;
	} else if (strncmp(command, "exit ", 5) == 0) {
		*exit_status = atoi(command + 5);
	} else if (strncmp(command, "echo ", 5) == 0) {
		if (capture)
			buf_printf(output, "%s\n", command + 5);
	} else if (strncmp(command, "addheader ", 10) == 0 && capture) {
		const char *m = rec.last_msg.data;
		const char *blank = strstr(m, "\n\n");
		size_t hl = blank != NULL ? (size_t)(blank + 1 - m) :
			rec.last_msg.len;

		buf_append(output, m, hl);
		buf_printf(output, "%s\n", command + 10);
		buf_append(output, m + hl, rec.last_msg.len - hl);
	} else if (strcmp(command, "upper") == 0 && capture) {
		size_t i;

		for (i = 0; i < rec.last_msg.len; i++)
			buf_putc(output, (char)toupper(
					 (unsigned char)rec.last_msg.data[i]));
	}
	return 0;
}

static int
fake_forward(void *arg, const char *const *addresses, size_t n,
	     const struct rules_msg *msg, struct status *st)
{
	size_t i;

	(void)arg;
	(void)st;
	save_msg(msg);
	buf_puts(&rec.calls, "forward");
	for (i = 0; i < n; i++)
		buf_printf(&rec.calls, " %s", addresses[i]);
	buf_putc(&rec.calls, '\n');
	return 0;
}

static void
log_line(void *arg, const char *text)
{
	(void)arg;
	buf_printf(&logged, "%s\n", text);
}

static const struct rules_actions actions = {
	NULL, fake_folder, fake_pipe, fake_forward
};

static void
setup(void)
{
	memset(&rec, 0, sizeof(rec));
	buf_init(&rec.calls);
	buf_init(&rec.last_msg);
	buf_init(&logged);
	tmpdir = fixture_tmpdir();
}

static void
teardown(void)
{
	buf_free(&rec.calls);
	buf_free(&rec.last_msg);
	buf_free(&logged);
	if (tmpdir != NULL) {
		fixture_rmtree(tmpdir);
		free(tmpdir);
	}
	tmpdir = NULL;
}

/* A message in memory, as message_read() leaves a small one. */
static void
message_of(struct message *m, const char *text)
{
	const char *blank;

	memset(m, 0, sizeof(*m));
	buf_init(&m->head);
	buf_puts(&m->head, text);
	m->fd = -1;
	m->size = (off_t)m->head.len;
	blank = strstr(m->head.data, "\n\n");
	m->header_len = blank != NULL ? (size_t)(blank + 2 - m->head.data) :
		m->head.len;
	m->envelope_sender = xstrdup("alice@example.org");
	m->arrival = NOW;
}

static void
env_of(struct rules_env *env)
{
	memset(env, 0, sizeof(*env));
	env->home = tmpdir;
	env->logname = "bob";
	env->default_mailbox = "/var/mail/bob";
	env->hostname = "mail.example.org";
	env->log = log_line;
}

/* Runs rcfile text against a message; returns *delivered. */
static int
run_msg(const char *rcfile, const char *text, struct rules_env *env_out)
{
	struct rules_env env;
	struct message m;
	struct status st;
	int delivered = -1;

	env_of(&env);
	message_of(&m, text);
	CU_ASSERT_EQUAL(rules_run_text("rc", rcfile, strlen(rcfile), &env,
				       &m, &actions, &delivered, &st), 0);
	message_free(&m);
	if (getenv("RULES_TEST_DEBUG") != NULL)
		fprintf(stderr, "\n--- calls:\n%s--- log:\n%s---\n",
			rec.calls.data, logged.data);
	if (env_out != NULL)
		*env_out = env;
	else
		free(env.result_default);
	return delivered;
}

static int
run(const char *rcfile)
{
	return run_msg(rcfile, MESSAGE, NULL);
}

#define CALLS_ARE(want) CU_ASSERT_STRING_EQUAL(rec.calls.data, want)

static void
test_engine_header_match_delivers(void)
{
	CU_ASSERT_EQUAL(run(":0\n* ^Subject:.*hello\nbox\n:0\nother\n"), 1);
	CALLS_ARE("folder box 0 hb\n");
	CU_ASSERT_STRING_EQUAL(rec.last_msg.data, MESSAGE);
	CU_ASSERT_STRING_EQUAL(rec.cwd, tmpdir);	/* MAILDIR = HOME */
}

static void
test_engine_no_match_leaves_default(void)
{
	struct rules_env env;

	CU_ASSERT_EQUAL(run_msg(":0\n* ^Subject:.*nothing\nbox\n"
				"DEFAULT=$HOME/inbox\n", MESSAGE, &env), 0);
	CALLS_ARE("");
	CU_ASSERT_PTR_NOT_NULL_FATAL(env.result_default);
	CU_ASSERT_EQUAL(strncmp(env.result_default, tmpdir, strlen(tmpdir)),
			0);
	CU_ASSERT_STRING_EQUAL(env.result_default + strlen(tmpdir),
			       "/inbox");
	free(env.result_default);
}

static void
test_engine_flag_B_and_H(void)
{
	CU_ASSERT_EQUAL(run(":0\n* body line\nnot-in-header\n"
			    ":0 B\n* ^body line 2\nbody\n"), 1);
	CALLS_ARE("folder body 0 hb\n");
	buf_reset(&rec.calls);
	CU_ASSERT_EQUAL(run(":0 HB\n* hello(.|$)*body line 2\nboth\n"), 1);
	CALLS_ARE("folder both 0 hb\n");
	buf_reset(&rec.calls);
	CU_ASSERT_EQUAL(run(":0 B\n* H ?? ^Subject\nvar-override\n"), 1);
	CALLS_ARE("folder var-override 0 hb\n");
}

static void
test_engine_flag_D(void)
{
	CU_ASSERT_EQUAL(run(":0 D\n* ^subject\nwrongcase\n"
			    ":0 D\n* ^Subject\nrightcase\n"), 1);
	CALLS_ARE("folder rightcase 0 hb\n");
}

static void
test_engine_flags_A_and_a(void)
{
	CU_ASSERT_EQUAL(run(":0 c\n* ^Subject: hello\ncopy1\n"
			    ":0 A\nchained\n"), 1);
	CALLS_ARE("folder copy1 0 hb\nfolder chained 0 hb\n");
	buf_reset(&rec.calls);
	CU_ASSERT_EQUAL(run(":0 c\n* ^Subject: nomatch\ncopy1\n"
			    ":0 A\nchained\n:0\nlast\n"), 1);
	CALLS_ARE("folder last 0 hb\n");
	buf_reset(&rec.calls);
	rec.folder_fails = 1;
	CU_ASSERT_EQUAL(run(":0 c\ncopy1\n:0 a\nafter-success\n"), 0);
	CALLS_ARE("folder copy1 0 hb\n");
	rec.folder_fails = 0;
	buf_reset(&rec.calls);
	CU_ASSERT_EQUAL(run(":0 c\ncopy1\n:0 a\nafter-success\n"), 1);
	CALLS_ARE("folder copy1 0 hb\nfolder after-success 0 hb\n");
}

static void
test_engine_flags_E_and_e(void)
{
	/* procmail 3.22: e runs after a failure, one E after a match
	 * disables the E recipes that follow, a failed condition on an E
	 * lets the next E try. */
	CU_ASSERT_EQUAL(run(":0 fw\n| false\n"
			    ":0 e\n{ LOG=e }\n"
			    ":0 E\n| echo E1\n"
			    ":0\n* nomatch\n{ }\n"
			    ":0 E\n* nomatch2\n| echo E3\n"
			    ":0 E\n| echo E4\n"), 1);
	CALLS_ARE("pipe false hb capture\npipe echo E4 hb\n");
	CU_ASSERT_PTR_NOT_NULL(strstr(logged.data, "Program failure (1)"));
}

static void
test_engine_flag_c_copies_and_continues(void)
{
	CU_ASSERT_EQUAL(run(":0 c\ncopy\n:0\nfinal\n:0\nnever\n"), 1);
	CALLS_ARE("folder copy 0 hb\nfolder final 0 hb\n");
	buf_reset(&rec.calls);
	CU_ASSERT_EQUAL(run(":0 c\ncopy\n"), 0);
}

static void
test_engine_flags_h_and_b(void)
{
	CU_ASSERT_EQUAL(run(":0 hc\nhead\n:0 b\nbody\n"), 1);
	CALLS_ARE("folder head 0 h\nfolder body 0 b\n");
	CU_ASSERT_STRING_EQUAL(rec.last_msg.data,
			       "body line 1\nbody line 2\n");
	buf_reset(&rec.calls);
	run(":0 h\n| cat\n");
	CU_ASSERT_STRING_EQUAL(rec.last_msg.data,
			       "From: Alice <alice@example.org>\n"
			       "To: bob@example.org\n"
			       "Subject: hello world\n\n");
}

static void
test_engine_filter_replaces_message(void)
{
	CU_ASSERT_EQUAL(run(":0 fw\n| addheader X-Filtered: yes\n"
			    ":0\n* ^X-Filtered: yes\nfiltered\n"), 1);
	CALLS_ARE("pipe addheader X-Filtered: yes hb capture\n"
		  "folder filtered 0 hb\n");
	CU_ASSERT_PTR_NOT_NULL(strstr(rec.last_msg.data,
				      "Subject: hello world\n"
				      "X-Filtered: yes\n\nbody line 1\n"));
	buf_reset(&rec.calls);
	/* a body filter keeps the header */
	run(":0 bfw\n| upper\n:0 B\n* BODY LINE 2\nupper\n");
	CALLS_ARE("pipe upper b capture\nfolder upper 0 hb\n");
	CU_ASSERT_PTR_NOT_NULL(strstr(rec.last_msg.data,
				      "Subject: hello world\n\nBODY LINE 1\n"));
}

static void
test_engine_failed_filter_keeps_message(void)
{
	CU_ASSERT_EQUAL(run(":0 fw\n| exit 3\n:0\n* ^Subject: hello\nkept\n"),
			1);
	CU_ASSERT_STRING_EQUAL(rec.last_msg.data, MESSAGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(logged.data, "Rescue of unfiltered"));
	buf_reset(&logged);
	/* W: the same, without the "Program failure" line */
	run(":0 fW\n| exit 3\n");
	CU_ASSERT_PTR_NULL(strstr(logged.data, "Program failure"));
}

static void
test_engine_pipe_delivery_and_wait(void)
{
	/* without w the exit code is ignored: delivered */
	CU_ASSERT_EQUAL(run(":0\n| false\n:0\nnever\n"), 1);
	CALLS_ARE("pipe false hb\n");
	buf_reset(&rec.calls);
	CU_ASSERT_EQUAL(run(":0 w\n| false\n:0\nnext\n"), 1);
	CALLS_ARE("pipe false hb\nfolder next 0 hb\n");
}

static void
test_engine_capture_and_backquote(void)
{
	CU_ASSERT_EQUAL(run("OUT=`echo from backquote`\n"
			    ":0\nCAP=| echo captured\n"
			    ":0\n* CAP ?? ^captured$\n"
			    "* OUT ?? ^from backquote$\n"
			    "\"$CAP-$OUT\"\n"), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(rec.calls.data,
				      "folder captured-from backquote 0"));
}

static void
test_engine_weighted_scoring(void)
{
	/* procmail 3.22: -1 + 2 * 5 lines of header (with the From_ line
	 * and the empty line) = 9 */
	CU_ASSERT_EQUAL(run(":0\n* -1^0\n* 2^1 ^.*$\n{ S=$= }\n"
			    ":0\n* S ?? ^9$\nscore9\n"), 1);
	CALLS_ARE("folder score9 0 hb\n");
	buf_reset(&rec.calls);
	CU_ASSERT_EQUAL(run(":0\n* -100^0\n* 1^1 ^.*$\nnegative\n"
			    ":0\n* 1^0 Subject\n* 1^0 Subject\n"
			    "* -1^0 Subject\npositive\n"), 1);
	CALLS_ARE("folder positive 0 hb\n");
	buf_reset(&rec.calls);
	/* size weights, a non-weighted condition still has to hold */
	CU_ASSERT_EQUAL(run(":0\n* 10^1 > 50\n* ^Subject: nomatch\nno\n"
			    ":0\n* 10^1 > 50\nyes\n"), 1);
	CALLS_ARE("folder yes 0 hb\n");
}

static void
test_engine_nested_blocks(void)
{
	CU_ASSERT_EQUAL(run(":0\n* ^From:.*alice\n{\n"
			    "  :0\n  * ^Subject:.*nomatch\n  inner1\n"
			    "  :0\n  {\n    :0\n    * ^To:.*bob\n    inner2\n"
			    "  }\n}\n:0\nouter\n"), 1);
	CALLS_ARE("folder inner2 0 hb\n");
	buf_reset(&rec.calls);
	/* a block that delivers nothing goes on after it */
	CU_ASSERT_EQUAL(run(":0\n{ X=1 }\n:0\n* X ?? 1\nafter\n"), 1);
	CALLS_ARE("folder after 0 hb\n");
}

static void
test_engine_cloned_block(void)
{
	/* the clone's variables and filters stay in the clone */
	CU_ASSERT_EQUAL(run("X=outer\n"
			    ":0 c\n{\n X=inner\n :0 fw\n | addheader X-C: 1\n"
			    " :0\n clonebox\n}\n"
			    ":0\n* ! ^X-C:\n* X ?? outer\nmainbox\n"), 1);
	CALLS_ARE("pipe addheader X-C: 1 hb capture\n"
		  "folder clonebox 0 hb\nfolder mainbox 0 hb\n");
}

static void
test_engine_variables_and_expansion(void)
{
	CU_ASSERT_EQUAL(run("A=one\nBB=${A:-x}-${UNSET:-def}-${A:+set}"
			    "-${UNSET+no}-${A-y}\n"
			    "DOT=a.b\n"
			    ":0\n* $ BB ?? ^one-def-set--one$\n"
			    "* $ DOT ?? ^$\\DOT$\n"
			    "* ! $ DOT ?? ^a\\\\.c\n"
			    "'quoted name' \"$A\"\n"), 1);
	CALLS_ARE("folder quoted name 0 hb\n");
}

static void
test_engine_match_variable(void)
{
	CU_ASSERT_EQUAL(run(":0\n* ^Subject: \\/.*\n{ S=$MATCH }\n"
			    ":0\n* ^From:.*<\\/[^@]+\n{ U=$MATCH }\n"
			    ":0\n* $ S ?? ^hello world$\n$U\n"), 1);
	CALLS_ARE("folder alice 0 hb\n");
}

static void
test_engine_forward(void)
{
	CU_ASSERT_EQUAL(run("TO=carol@example.org\n"
			    ":0\n! dave@example.org $TO\n"), 1);
	CALLS_ARE("forward dave@example.org carol@example.org\n");
}

static void
test_engine_conditions_program_and_size(void)
{
	CU_ASSERT_EQUAL(run(":0\n* ? false\nno1\n"
			    ":0\n* ! ? true\nno2\n"
			    ":0\n* < 10\nno3\n"
			    ":0\n* > 100000\nno4\n"
			    ":0\n* ? true\n* < 100000\n* ! > 100000\nyes\n"),
			1);
	CU_ASSERT_PTR_NOT_NULL(strstr(rec.calls.data, "folder yes 0 hb"));
	CU_ASSERT_PTR_NULL(strstr(rec.calls.data, "folder no"));
}

static void
test_engine_folder_types(void)
{
	char *dir;
	struct buf path;

	buf_init(&path);
	buf_printf(&path, "%s/existing", tmpdir);
	CU_ASSERT_EQUAL(mkdir(path.data, 0700), 0);
	dir = path.data;
	(void)dir;
	run(":0 c\nmaildir/\n:0 c\nmh/.\n:0 c\nexisting\n:0 c\n/dev/null\n"
	    ":0\nmbox\n");
	CALLS_ARE("folder maildir 1 hb\nfolder mh 2 hb\n"
		  "folder existing 3 hb\nfolder /dev/null 4 hb\n"
		  "folder mbox 0 hb\n");
	buf_free(&path);
}

static void
test_engine_logfile_abstract(void)
{
	struct buf rcfile, want, got, logpath;

	buf_init(&rcfile);
	buf_init(&want);
	buf_init(&got);
	buf_init(&logpath);
	buf_printf(&logpath, "%s/log", tmpdir);
	buf_printf(&rcfile, "LOGFILE=%s\nLOG=\"hello\n\"\n"
		   ":0 c\nmaildir/\n:0\nout\n", logpath.data);
	CU_ASSERT_EQUAL(run(rcfile.data), 1);
	/* only the final delivery unless LOGABSTRACT=all; the size counts
	 * the From_ line, as procmail's does */
	buf_puts(&want, "hello\n"
		 "From alice@example.org Tue Nov 14 22:13:20 2023\n"
		 " Subject: hello world\n"
		 "  Folder: out\t\t\t\t\t\t\t\t    146\n");
	CU_ASSERT_EQUAL(fixture_read_file(logpath.data, &got), 0);
	if (getenv("RULES_TEST_DEBUG") != NULL)
		fprintf(stderr, "[%s]\n", got.data);
	CU_ASSERT_STRING_EQUAL(got.data, want.data);
	buf_reset(&rcfile);
	buf_reset(&got);
	unlink(logpath.data);
	buf_printf(&rcfile, "LOGFILE=%s\nLOGABSTRACT=all\n"
		   ":0 c\nmaildir/\n:0 h\n| cat\n", logpath.data);
	run(rcfile.data);
	CU_ASSERT_EQUAL(fixture_read_file(logpath.data, &got), 0);
	if (getenv("RULES_TEST_DEBUG") != NULL)
		fprintf(stderr, "[%s]\n", got.data);
	CU_ASSERT_PTR_NOT_NULL(strstr(got.data,
				      "  Folder: maildir/new/1.x\t\t\t\t\t\t"
				      "     98\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(got.data,
				      "  Folder: cat\t\t\t\t\t\t\t\t    122\n"));
	buf_free(&rcfile);
	buf_free(&want);
	buf_free(&got);
	buf_free(&logpath);
}

static void
test_engine_includerc_and_switchrc(void)
{
	struct buf rcfile, inc, sw;

	buf_init(&rcfile);
	buf_init(&inc);
	buf_init(&sw);
	buf_printf(&inc, "%s/inc.rc", tmpdir);
	buf_printf(&sw, "%s/sw.rc", tmpdir);
	CU_ASSERT_EQUAL(fixture_write_text(inc.data, "FROMINC=yes\n"
					   ":0 c\nincbox\n"), 0);
	CU_ASSERT_EQUAL(fixture_write_text(sw.data, ":0\n"
					   "* FROMINC ?? yes\nswbox\n"), 0);
	buf_printf(&rcfile, "INCLUDERC=%s\nSWITCHRC=%s\n:0\nnever\n",
		   inc.data, sw.data);
	CU_ASSERT_EQUAL(run(rcfile.data), 1);
	CALLS_ARE("folder incbox 0 hb\nfolder swbox 0 hb\n");
	buf_reset(&rec.calls);
	/* a SWITCHRC that cannot be read is skipped */
	CU_ASSERT_EQUAL(run("SWITCHRC=/nonexistent/rc\n:0\nstill\n"), 1);
	CALLS_ARE("folder still 0 hb\n");
	buf_free(&rcfile);
	buf_free(&inc);
	buf_free(&sw);
}

static void
test_engine_host_mismatch_stops(void)
{
	struct rules_env env;

	CU_ASSERT_EQUAL(run_msg("HOST=mail.example.org\n:0 c\nsame\n"
				"HOST=elsewhere\n:0\nnever\n", MESSAGE, &env),
			0);
	CALLS_ARE("folder same 0 hb\n");
	CU_ASSERT_EQUAL(env.result_host_mismatch, 1);
	free(env.result_default);
}

static void
test_engine_exitcode_and_trap(void)
{
	struct rules_env env;

	run_msg("EXITCODE=67\n", MESSAGE, &env);
	CU_ASSERT_EQUAL(env.result_exitcode, 67);
	free(env.result_default);
	run_msg("TRAP=\"exit 5\"\nEXITCODE=\n", MESSAGE, &env);
	CU_ASSERT_EQUAL(env.result_exitcode, 5);
	CU_ASSERT_PTR_NOT_NULL(strstr(rec.calls.data, "pipe exit 5"));
	free(env.result_default);
	run_msg(":0\nbox\n", MESSAGE, &env);
	CU_ASSERT_EQUAL(env.result_exitcode, -1);
	free(env.result_default);
}

static void
test_engine_maildir_chdir_and_lastfolder(void)
{
	struct buf rcfile, sub;

	buf_init(&rcfile);
	buf_init(&sub);
	buf_printf(&sub, "%s/Mail", tmpdir);
	CU_ASSERT_EQUAL(mkdir(sub.data, 0700), 0);
	buf_printf(&rcfile, "MAILDIR=%s\n:0 c\nfolder/\n"
		   ":0\n* LASTFOLDER ?? ^folder/new/1\\.x$\n"
		   "next-$LASTFOLDER\n", sub.data);
	CU_ASSERT_EQUAL(run(rcfile.data), 1);
	CALLS_ARE("folder folder 1 hb\nfolder next-folder/new/1.x 0 hb\n");
	CU_ASSERT_STRING_EQUAL(rec.cwd, sub.data);
	buf_free(&rcfile);
	buf_free(&sub);
}

static void
test_engine_syntax_errors_logged_rest_runs(void)
{
	CU_ASSERT_EQUAL(run(":0 Z\n* ^Subject\nbox\n%%bad\n"), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(logged.data, "rc:1: unknown flag"));
	CU_ASSERT_PTR_NOT_NULL(strstr(logged.data, "rc:4: skipped"));
	CALLS_ARE("folder box 0 hb\n");
	buf_reset(&rec.calls);
	buf_reset(&logged);
	CU_ASSERT_EQUAL(run(":0\n* ^Subject: (unclosed[\nbox\n:0\nnext\n"),
			1);
	CU_ASSERT_PTR_NOT_NULL(strstr(logged.data, "invalid regexp"));
	CALLS_ARE("folder next 0 hb\n");
}

static void
test_engine_attachment_types(void)
{
	static const char mime_msg[] =
		"From: a@example.org\n"
		"Subject: files\n"
		"MIME-Version: 1.0\n"
		"Content-Type: multipart/mixed; boundary=\"XX\"\n"
		"\n"
		"preamble\n"
		"--XX\n"
		"Content-Type: text/plain\n"
		"\n"
		"just text\n"
		"--XX\n"
		"Content-Type: application/octet-stream\n"
		"Content-Transfer-Encoding: base64\n"
		"\n"
		"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4K\n"
		"--XX--\n";

	CU_ASSERT_EQUAL(run_msg(":0\n* ATTACHMENT_TYPES ?? ^application/pdf$\n"
				"pdf\n", mime_msg, NULL), 1);
	CALLS_ARE("folder pdf 0 hb\n");
	buf_reset(&rec.calls);
	CU_ASSERT_EQUAL(run_msg("ATTACHMENT_TYPES=x\nT=$ATTACHMENT_TYPES\n"
				":0\n* T ?? ^text/plain$\n"
				"* T ?? ^application/pdf$\ntwo\n", mime_msg,
				NULL), 1);
	CALLS_ARE("folder two 0 hb\n");
	CU_ASSERT_PTR_NOT_NULL(strstr(logged.data, "read-only"));
}

void
test_engine_register(void)
{
	static const struct unit_test tests[] = {
		UNIT_TEST(test_engine_header_match_delivers),
		UNIT_TEST(test_engine_no_match_leaves_default),
		UNIT_TEST(test_engine_flag_B_and_H),
		UNIT_TEST(test_engine_flag_D),
		UNIT_TEST(test_engine_flags_A_and_a),
		UNIT_TEST(test_engine_flags_E_and_e),
		UNIT_TEST(test_engine_flag_c_copies_and_continues),
		UNIT_TEST(test_engine_flags_h_and_b),
		UNIT_TEST(test_engine_filter_replaces_message),
		UNIT_TEST(test_engine_failed_filter_keeps_message),
		UNIT_TEST(test_engine_pipe_delivery_and_wait),
		UNIT_TEST(test_engine_capture_and_backquote),
		UNIT_TEST(test_engine_weighted_scoring),
		UNIT_TEST(test_engine_nested_blocks),
		UNIT_TEST(test_engine_cloned_block),
		UNIT_TEST(test_engine_variables_and_expansion),
		UNIT_TEST(test_engine_match_variable),
		UNIT_TEST(test_engine_forward),
		UNIT_TEST(test_engine_conditions_program_and_size),
		UNIT_TEST(test_engine_folder_types),
		UNIT_TEST(test_engine_logfile_abstract),
		UNIT_TEST(test_engine_includerc_and_switchrc),
		UNIT_TEST(test_engine_host_mismatch_stops),
		UNIT_TEST(test_engine_exitcode_and_trap),
		UNIT_TEST(test_engine_maildir_chdir_and_lastfolder),
		UNIT_TEST(test_engine_syntax_errors_logged_rest_runs),
		UNIT_TEST(test_engine_attachment_types),
	};

	fixture_suite_setup("engine", tests, UNIT_COUNT(tests), setup,
			    teardown);
}
