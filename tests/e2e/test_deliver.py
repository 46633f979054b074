"""End-to-end tests of deliver: what lands in mboxes and maildirs, exit
codes, refusals, the maillog, configuration errors and the calling user.

Each test runs the real program in its own throwaway root (the `root`
fixture) and reads the result back with python's mailbox module.
"""

import email
import email.policy
import fcntl
import os
import re
import stat
import time

import pytest

from harness import (EX_CONFIG, EX_NOPERM, EX_NOUSER, EX_OK, EX_TEMPFAIL,
                     EX_USAGE, FROM_LINE, HOSTNAME, MAIL_GID, SENDER, USERS,
                     make_message, mboxrd_quote, read_maildir, read_mbox,
                     stored_form)

ALICE_TO = "alice@test.example"
BOB_TO = "bob@test.example"

LOG_LINE = re.compile(
    r"^(?P<stamp>\w{3} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) "
    r"deliver\[(?P<pid>\d+)\]: (?P<qid>\w{14}): to=<(?P<to>[^>]*)>, "
    r"ctladdr=<(?P<ctladdr>[^>]*)>(?: \((?P<ids>\d+/\d+)\))?, "
    r"delay=\d\d:\d\d:\d\d, xdelay=\d\d:\d\d:\d\d, mailer=local, "
    r"pri=\d+, dsn=(?P<dsn>\d\.\d\.\d), stat=(?P<stat>.*)$")


def deliver_ok(root, *args, message, **kwargs):
    result = root.run(*args, message=message, **kwargs)
    assert result.code == EX_OK, result
    return result


def mbox_bytes(root, user="alice"):
    return root.mbox(user).read_bytes()


def split_from_line(raw):
    line, _, rest = raw.partition(b"\n")
    return line.decode(), rest


def parse(stored):
    return email.message_from_bytes(stored, policy=email.policy.compat32)


def lock_path(root, user="alice"):
    return root.spool / (user + ".lock")


# -- 1. mbox delivery to the spool -------------------------------------------


def test_mbox_created_in_spool_owned_by_user_group_mail_mode_0660(root):
    message = make_message(b"Hello alice.\nSecond line.\n")
    deliver_ok(root, "-f", SENDER, "alice", message=message)

    st = os.lstat(root.mbox("alice"))
    assert stat.S_ISREG(st.st_mode)
    assert (st.st_uid, st.st_gid) == (USERS["alice"], MAIL_GID)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert not lock_path(root).exists()

    from_line, rest = split_from_line(mbox_bytes(root))
    match = FROM_LINE.match(from_line)
    assert match, from_line
    assert match.group(1) == SENDER
    expected = stored_form(message, ALICE_TO)
    assert rest == expected + b"\n"

    messages = read_mbox(root.mbox("alice"))
    assert len(messages) == 1
    got_from, stored = messages[0]
    assert got_from.startswith(SENDER + " ")
    assert stored == expected
    parsed = parse(stored)
    assert parsed.get_all("Return-Path") == [f"<{SENDER}>"]
    assert parsed.get_all("Delivered-To") == [ALICE_TO]
    assert parsed.get_payload(decode=False) == "Hello alice.\nSecond line.\n"


def test_mbox_second_message_is_appended(root):
    first = make_message(b"first\n", subject="one")
    second = make_message(b"second\n", subject="two")
    deliver_ok(root, "-f", SENDER, "alice", message=first)
    before = mbox_bytes(root)
    deliver_ok(root, "-f", SENDER, "alice", message=second)
    after = mbox_bytes(root)

    assert after.startswith(before)
    assert [s for _, s in read_mbox(root.mbox("alice"))] == [
        stored_form(first, ALICE_TO), stored_form(second, ALICE_TO)]


def test_mbox_crlf_message_is_stored_with_lf(root):
    body = b"line one\nline two\nbare\rcarriage return stays\n"
    message = make_message(body, newline=b"\r\n")
    assert message.count(b"\r\n") > 5
    deliver_ok(root, "-f", SENDER, "alice", message=message)

    raw = mbox_bytes(root)
    assert b"\r\n" not in raw
    assert b"bare\rcarriage return stays\n" in raw
    lf = message.replace(b"\r\n", b"\n")
    assert [s for _, s in read_mbox(root.mbox("alice"))] == [
        stored_form(lf, ALICE_TO)]


def test_mbox_from_lines_in_body_are_quoted_mboxrd(root):
    body = (b"From the start of a line\n"
            b">From quoted once already\n"
            b">>From quoted twice already\n"
            b"From:no space, not quoted\n"
            b"Fromage is not quoted\n"
            b" From indented is not quoted\n"
            b">Fromage neither\n"
            b"a From in the middle\n"
            b"\n"
            b"From \n"
            b"From the last line")
    message = make_message(body)
    deliver_ok(root, "-f", SENDER, "alice", message=message)

    raw = mbox_bytes(root)
    _, rest = split_from_line(raw)
    lines = rest.split(b"\n")
    for line in (b">From the start of a line", b">>From quoted once already",
                 b">>>From quoted twice already", b"From:no space, not quoted",
                 b"Fromage is not quoted", b" From indented is not quoted",
                 b">Fromage neither", b"a From in the middle", b">From ",
                 b">From the last line"):
        assert line in lines, (line, rest)
    # Exactly one "From " line starts a message: the one deliver wrote.
    assert len(re.findall(rb"(?m)^From ", raw)) == 1
    expected_stored = mboxrd_quote(stored_form(message + b"\n", ALICE_TO))
    assert rest == expected_stored + b"\n"

    messages = read_mbox(root.mbox("alice"))
    assert len(messages) == 1
    stored = messages[0][1]
    assert stored == expected_stored
    # mboxrd readers take one '>' off: the body comes back as it was sent.
    unquoted = re.sub(rb"(?m)^>(>*From )", rb"\1", stored)
    assert unquoted.endswith(b"\n\n" + body + b"\n")


@pytest.mark.parametrize("null_sender", ["<>", ""])
def test_null_sender_gives_empty_return_path_and_mailer_daemon(root,
                                                               null_sender):
    message = make_message(b"a bounce\n", sender="MAILER-DAEMON@x.org")
    deliver_ok(root, "-f", null_sender, "alice", message=message)

    from_line, rest = split_from_line(mbox_bytes(root))
    match = FROM_LINE.match(from_line)
    assert match and match.group(1) == "MAILER-DAEMON", from_line
    assert rest.startswith(b"Return-Path: <>\n"
                           b"Delivered-To: alice@test.example\n")
    stored = read_mbox(root.mbox("alice"))[0][1]
    assert parse(stored).get_all("Return-Path") == ["<>"]


ENVELOPE_LINE = b"From envsender@y.org  Mon Jan  1 10:00:00 2001\n"


@pytest.mark.parametrize("stdin_kind", ["pipe", "file"])
def test_leading_from_line_gives_sender_and_is_not_duplicated(root,
                                                              stdin_kind):
    message = make_message(b"body\nFrom inside the body\n",
                           sender="envsender@y.org")
    data = ENVELOPE_LINE + message
    if stdin_kind == "pipe":
        result = root.run("alice", message=data)
    else:
        path = root.path / "message"
        path.write_bytes(data)
        with open(path, "rb") as stdin:
            result = root.run("alice", stdin=stdin)
    assert result.code == EX_OK, result

    raw = mbox_bytes(root)
    from_line, rest = split_from_line(raw)
    match = FROM_LINE.match(from_line)
    assert match and match.group(1) == "envsender@y.org", from_line
    assert b"Mon Jan  1 10:00:00 2001" not in raw
    assert len(re.findall(rb"(?m)^From ", raw)) == 1
    expected = mboxrd_quote(stored_form(message, ALICE_TO,
                                        sender="envsender@y.org"))
    assert [s for _, s in read_mbox(root.mbox("alice"))] == [expected]
    assert "ctladdr=<envsender@y.org>" in root.log_lines()[-1]


def test_f_flag_overrides_leading_from_line(root):
    message = make_message(b"body\n")
    deliver_ok(root, "-f", SENDER, "alice", message=ENVELOPE_LINE + message)
    from_line, rest = split_from_line(mbox_bytes(root))
    assert FROM_LINE.match(from_line).group(1) == SENDER
    assert rest == stored_form(message, ALICE_TO) + b"\n"


def test_sender_defaults_to_calling_user(root):
    message = make_message(b"no sender given\n")
    deliver_ok(root, "alice", message=message)
    stored = read_mbox(root.mbox("alice"))[0][1]
    assert stored == stored_form(message, ALICE_TO, sender="root")


def test_sender_with_line_break_is_refused(root):
    result = root.run("-f", "evil@x.org\nX-Injected: yes", "alice",
                      message=make_message(b"x\n"))
    assert result.code == EX_USAGE, result
    assert not root.mbox("alice").exists()


def test_existing_return_path_and_content_length_are_replaced(root):
    body = b"This body is longer than Content-Length claims.\n" * 3
    message = (b"Return-Path: <forged@evil.example>\n"
               b"From: Sender <sender@x.org>\n"
               b"Content-Length: 3\n"
               b"To: alice@test.example\n"
               b"return-path:\n <folded-forgery@evil.example>\n"
               b"Subject: replaced fields\n"
               b"CONTENT-LENGTH:   7\n"
               b"\n") + body
    deliver_ok(root, "-f", SENDER, "alice", message=message)

    kept = (b"From: Sender <sender@x.org>\n"
            b"To: alice@test.example\n"
            b"Subject: replaced fields\n"
            b"\n") + body
    stored = read_mbox(root.mbox("alice"))[0][1]
    assert stored == stored_form(kept, ALICE_TO)
    parsed = parse(stored)
    assert parsed.get_all("Return-Path") == [f"<{SENDER}>"]
    assert parsed.get_all("Content-Length") is None
    assert b"evil.example" not in mbox_bytes(root)


def test_message_without_final_newline_gets_one(root):
    first = make_message(b"no newline at the end")
    second = make_message(b"second\n")
    deliver_ok(root, "-f", SENDER, "alice", message=first)
    deliver_ok(root, "-f", SENDER, "alice", message=second)
    assert [s for _, s in read_mbox(root.mbox("alice"))] == [
        stored_form(first + b"\n", ALICE_TO), stored_form(second, ALICE_TO)]


def test_append_to_mbox_not_ending_in_newline_starts_a_new_message(root):
    old = (b"From old@x.org Mon Jan  1 00:00:00 2024\n"
           b"Subject: old\n\nold body without newline")
    path = root.mbox("alice")
    path.write_bytes(old)
    os.chown(path, USERS["alice"], MAIL_GID)
    os.chmod(path, 0o660)
    message = make_message(b"new\n")
    deliver_ok(root, "-f", SENDER, "alice", message=message)

    raw = path.read_bytes()
    assert raw.startswith(old)
    messages = read_mbox(path)
    assert len(messages) == 2
    assert messages[0][1].startswith(
        b"Subject: old\n\nold body without newline")
    assert messages[1][1] == stored_form(message, ALICE_TO)


def test_mbox_in_home_is_private_to_its_user(root):
    root.configure("mailbox = ~/mbox")
    message = make_message(b"to the home mbox\n")
    deliver_ok(root, "-f", SENDER, "alice", message=message)
    path = root.home("alice") / "mbox"
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid) == (USERS["alice"], USERS["alice"])
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert [s for _, s in read_mbox(path)] == [stored_form(message, ALICE_TO)]
    assert list(root.spool.iterdir()) == []


def test_recipient_with_extension_and_upper_case_reaches_user(root):
    message = make_message(b"tagged\n")
    deliver_ok(root, "-f", SENDER, "Alice+lists@TEST.example", message=message)
    assert os.listdir(root.spool) == ["alice"]
    stored = read_mbox(root.mbox("alice"))[0][1]
    assert parse(stored)["Delivered-To"].lower() == "alice+lists@test.example"
    assert stored.endswith(b"\n\ntagged\n")


# -- 2. maildir delivery ------------------------------------------------------

MAILDIR_NAME = re.compile(
    r"^\d+\.M\d+P\d+R[0-9a-f]{8}\.test\.example,S=(\d+)$")


def test_maildir_delivery_creates_dirs_and_one_whole_file(root):
    root.configure("mailbox = ~/Maildir/")
    message = make_message(b"Hello maildir.\n")
    deliver_ok(root, "-f", SENDER, "alice", message=message)

    maildir = root.maildir("alice")
    for sub in ("", "tmp", "new", "cur"):
        st = os.lstat(maildir / sub)
        assert stat.S_ISDIR(st.st_mode), sub
        assert st.st_uid == USERS["alice"], sub
        assert stat.S_IMODE(st.st_mode) == 0o700, sub
    assert os.listdir(maildir / "tmp") == []
    assert os.listdir(maildir / "cur") == []
    names = os.listdir(maildir / "new")
    assert len(names) == 1
    match = MAILDIR_NAME.match(names[0])
    assert match, names[0]
    path = maildir / "new" / names[0]
    st = os.lstat(path)
    assert int(match.group(1)) == st.st_size
    assert (st.st_uid, st.st_gid) == (USERS["alice"], USERS["alice"])
    assert stat.S_IMODE(st.st_mode) == 0o600
    expected = stored_form(message, ALICE_TO)
    assert path.read_bytes() == expected
    assert read_maildir(maildir) == {names[0]: expected}
    assert list(root.spool.iterdir()) == []


def test_maildir_keeps_from_lines_and_stores_crlf_as_lf(root):
    root.configure("mailbox = ~/Maildir/")
    body = b"From the start, not quoted in a maildir\n>From either\n"
    first = make_message(body, newline=b"\r\n")
    second = make_message(b"second\n")
    deliver_ok(root, "-f", SENDER, "alice", message=first)
    deliver_ok(root, "-f", SENDER, "alice", message=second)

    got = read_maildir(root.maildir("alice"))
    assert len(got) == 2
    for name, data in got.items():
        match = MAILDIR_NAME.match(name)
        assert match and int(match.group(1)) == len(data), name
    assert sorted(got.values()) == sorted([
        stored_form(first.replace(b"\r\n", b"\n"), ALICE_TO),
        stored_form(second, ALICE_TO)])


# -- 3. several recipients ----------------------------------------------------


def test_several_recipients_each_get_their_copy(root):
    message = make_message(b"to both\n", to="alice@test.example, bob")
    deliver_ok(root, "-f", SENDER, "alice", "bob", message=message)
    for user, rcpt in (("alice", ALICE_TO), ("bob", BOB_TO)):
        st = os.lstat(root.mbox(user))
        assert (st.st_uid, st.st_gid) == (USERS[user], MAIL_GID)
        assert [s for _, s in read_mbox(root.mbox(user))] == [
            stored_form(message, rcpt)]
    assert not root.mbox("carol").exists()


@pytest.mark.parametrize("order", [
    ("nosuchuser", "alice", "bob"),
    ("alice", "nosuchuser", "bob"),
    ("alice", "bob", "nosuchuser"),
])
def test_unknown_user_among_recipients_exits_67_others_delivered(root, order):
    message = make_message(b"mixed\n")
    result = root.run("-f", SENDER, *order, message=message)
    assert result.code == EX_NOUSER, result
    assert "nosuchuser" in result.stderr
    for user, rcpt in (("alice", ALICE_TO), ("bob", BOB_TO)):
        assert [s for _, s in read_mbox(root.mbox(user))] == [
            stored_form(message, rcpt)]
    assert sorted(os.listdir(root.spool)) == ["alice", "bob"]


def make_bob_mbox(root):
    path = root.mbox("bob")
    path.write_bytes(b"")
    os.chown(path, USERS["bob"], MAIL_GID)
    os.chmod(path, 0o660)
    return path


class HeldLock:
    """Holds bob's mbox lock the way another deliverer or a mail reader
    would: an fcntl lock, or a dot-lock of a live process."""

    def __init__(self, root, kind):
        self.path = make_bob_mbox(root)
        self.kind = kind
        self.fd = None
        self.lock = lock_path(root, "bob")

    def __enter__(self):
        if self.kind == "fcntl":
            self.fd = os.open(self.path, os.O_RDWR)
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
        else:
            self.lock.write_text(f"{os.getpid()}\n")
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
        if self.lock.exists():
            self.lock.unlink()


@pytest.mark.parametrize("kind", ["fcntl", "dotlock"])
@pytest.mark.parametrize("order", [
    ("nosuchuser", "bob", "alice"),
    ("bob", "nosuchuser"),
    ("alice", "nosuchuser", "bob"),
])
def test_lock_timeout_75_outranks_unknown_user_67(root, order, kind):
    root.configure("lock_timeout = 2s")
    message = make_message(b"bob is locked\n")
    with HeldLock(root, kind) as held:
        started = time.monotonic()
        result = root.run("-f", SENDER, *order, message=message)
        elapsed = time.monotonic() - started
        assert held.path.read_bytes() == b""
    assert result.code == EX_TEMPFAIL, result
    assert "bob" in result.stderr and "nosuchuser" in result.stderr
    assert 1.5 <= elapsed < 30, elapsed
    if "alice" in order:
        assert [s for _, s in read_mbox(root.mbox("alice"))] == [
            stored_form(message, ALICE_TO)]


@pytest.mark.parametrize("order", [("bob", "nosuchuser", "alice"),
                                   ("alice", "nosuchuser", "bob")])
def test_unwritable_mailbox_75_outranks_unknown_user_67(root, order):
    # Bob's maildir would go in a home he cannot write.
    root.configure("mailbox = ~/Maildir/")
    os.chown(root.home("bob"), 0, 0)
    message = make_message(b"bob cannot receive\n")
    result = root.run("-f", SENDER, *order, message=message)
    assert result.code == EX_TEMPFAIL, result
    assert not root.maildir("bob").exists()
    assert list(read_maildir(root.maildir("alice")).values()) == [
        stored_form(message, ALICE_TO)]


# -- 4. hostile recipient names -----------------------------------------------

HOSTILE = ["../x", "-x", "a/b", ".", "..", "nosuchuser", "alice/../bob",
           "bob\nX-Injected: yes", "alice@", "@test.example", "<>", "~alice",
           "alice:x", "../x@test.example"]
# The same names in the passwd file, as root: only deliver's own checks
# stand between them and a file written outside the spool.
HOSTILE_PASSWD = ["../x", "-x", "a/b", ".", "..", "~alice"]


def add_hostile_users(root):
    for name in HOSTILE_PASSWD:
        root.add_passwd_line(f"{name}:x:0:0::{root.path}/evil:/bin/sh")


@pytest.mark.parametrize("mode", [[], ["-d"]], ids=["resolve", "direct"])
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_recipient_exits_67_and_creates_nothing(root, name, mode):
    add_hostile_users(root)
    before = root.snapshot()
    result = root.run("-f", SENDER, *mode, "--", name,
                      message=make_message(b"hostile\n"))
    assert result.code == EX_NOUSER, result
    assert root.snapshot() == before
    # One log line, whatever the name holds (no line injection).
    lines = root.log_lines()
    assert len(lines) == 1, lines
    assert re.search(r"dsn=5\.1\.\d, stat=", lines[0]), lines[0]


def test_non_local_domain_with_d_exits_67_and_creates_nothing(root):
    relay = root.install_relay_stub()
    before = root.snapshot()
    result = root.run("-f", SENDER, "-d", "alice@other.domain",
                      message=make_message(b"not for us\n"))
    assert result.code == EX_NOUSER, result
    assert root.snapshot() == before
    assert root.relay_calls() == []
    assert relay.exists()
    assert "dsn=5.1.2" in root.log_lines()[-1]


def test_non_local_domain_is_only_handed_to_sendmail_unprivileged(root):
    # Full resolution hands a remote address to sendmail_path (here a
    # stub that records the call), as the default_privs user, never root.
    root.install_relay_stub()
    before = root.snapshot(exclude=("maillog", "relay"))
    message = make_message(b"not for us\n")
    result = root.run("-f", SENDER, "alice@other.domain", message=message)
    assert result.code == EX_OK, result
    assert root.snapshot(exclude=("maillog", "relay")) == before
    calls = root.relay_calls()
    assert len(calls) == 1
    assert calls[0]["uid"] != 0
    assert calls[0]["argv"][-1] == "alice@other.domain"
    assert SENDER in calls[0]["argv"]
    assert calls[0]["message"].endswith(b"\n\nnot for us\n")


@pytest.mark.parametrize("mode", [[], ["-d"]], ids=["resolve", "direct"])
def test_hostile_recipient_beside_a_real_one(root, mode):
    add_hostile_users(root)
    before = root.snapshot()
    message = make_message(b"one good, two bad\n")
    result = root.run("-f", SENDER, *mode, "--", "../x", "alice", "-x",
                      message=message)
    assert result.code == EX_NOUSER, result
    after = root.snapshot()
    assert set(after) - set(before) == {"spool/alice"}
    assert [s for _, s in read_mbox(root.mbox("alice"))] == [
        stored_form(message, ALICE_TO)]


# -- 5. refusals --------------------------------------------------------------


def elsewhere(root, name, content=b"precious, not a mailbox\n", owner="alice"):
    directory = root.path / "elsewhere"
    directory.mkdir(exist_ok=True)
    path = directory / name
    if content is not None:
        path.write_bytes(content)
        os.chown(path, USERS[owner], MAIL_GID)
        os.chmod(path, 0o660)
    return path


@pytest.mark.parametrize("target_exists", [True, False])
def test_symlinked_mbox_is_refused(root, target_exists):
    target = elsewhere(root, "target",
                       content=b"precious\n" if target_exists else None)
    os.symlink(target, root.mbox("alice"))
    before = root.snapshot()
    result = root.run("-f", SENDER, "alice", message=make_message(b"x\n"))
    assert result.code == EX_TEMPFAIL, result
    assert "alice" in result.stderr
    assert root.snapshot() == before
    assert os.path.islink(root.mbox("alice"))
    if target_exists:
        assert target.read_bytes() == b"precious\n"
    else:
        assert not target.exists()


def test_hard_linked_mbox_is_refused(root):
    path = root.mbox("alice")
    path.write_bytes(b"From a@x.org Mon Jan  1 00:00:00 2024\n\nold\n\n")
    os.chown(path, USERS["alice"], MAIL_GID)
    os.chmod(path, 0o660)
    os.link(path, elsewhere(root, "hardlink", content=None))
    before = root.snapshot()
    result = root.run("-f", SENDER, "alice", message=make_message(b"x\n"))
    assert result.code == EX_TEMPFAIL, result
    assert root.snapshot() == before


def test_mbox_owned_by_someone_else_is_refused(root):
    path = root.mbox("alice")
    path.write_bytes(b"bob's file\n")
    os.chown(path, USERS["bob"], MAIL_GID)
    os.chmod(path, 0o660)
    before = root.snapshot()
    result = root.run("-f", SENDER, "alice", message=make_message(b"x\n"))
    assert result.code == EX_TEMPFAIL, result
    assert root.snapshot() == before


def test_fifo_mbox_is_refused_without_hanging(root):
    os.mkfifo(root.mbox("alice"), 0o660)
    os.chown(root.mbox("alice"), USERS["alice"], MAIL_GID)
    before = root.snapshot()
    result = root.run("-f", SENDER, "alice", message=make_message(b"x\n"),
                      timeout=30)
    assert result.code == EX_TEMPFAIL, result
    assert root.snapshot() == before


def test_symlinked_maildir_is_refused(root):
    root.configure("mailbox = ~/Maildir/")
    target = root.path / "elsewhere-maildir"
    for sub in ("", "tmp", "new", "cur"):
        (target / sub).mkdir(exist_ok=True)
        os.chown(target / sub, USERS["alice"], USERS["alice"])
    os.symlink(target, root.maildir("alice"))
    before = root.snapshot()
    result = root.run("-f", SENDER, "alice", message=make_message(b"x\n"))
    assert result.code == EX_TEMPFAIL, result
    assert root.snapshot() == before


# -- 6. the maillog -----------------------------------------------------------


def alice_log_line(sender=r"sender@x\.org"):
    return re.compile(
        r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ deliver\[\d+\]: \w{14}: "
        r"to=<alice>, ctladdr=<" + sender + r"> \(60001/60001\), "
        r"delay=\d\d:\d\d:\d\d, xdelay=\d\d:\d\d:\d\d, mailer=local, "
        r"pri=\d+, dsn=2\.0\.0, stat=Sent$")


def test_maillog_one_line_for_a_delivery(root):
    deliver_ok(root, "-f", SENDER, "alice", message=make_message(b"x\n"))
    lines = root.log_lines()
    assert len(lines) == 1, lines
    assert alice_log_line().match(lines[0]), lines[0]
    fields = LOG_LINE.match(lines[0])
    assert fields.group("host") == HOSTNAME.split(".")[0]
    stamp = time.strptime(fields.group("stamp"), "%b %d %H:%M:%S")
    now = time.localtime()
    assert (stamp.tm_mon, stamp.tm_mday) == (now.tm_mon, now.tm_mday) or \
        now.tm_hour == 0


def test_maillog_line_per_recipient_with_failures(root):
    result = root.run("-f", SENDER, "alice", "nosuchuser", "bob",
                      message=make_message(b"x\n"))
    assert result.code == EX_NOUSER, result
    lines = root.log_lines()
    assert len(lines) == 3, lines
    fields = {}
    for line in lines:
        match = LOG_LINE.match(line)
        assert match, line
        fields[match.group("to")] = match
    assert set(fields) == {"alice", "bob", "nosuchuser"}
    assert len({m.group("qid") for m in fields.values()}) == 1
    assert alice_log_line().match(fields["alice"].group(0))
    assert fields["bob"].group("ids") == "60002/60002"
    assert (fields["bob"].group("dsn"), fields["bob"].group("stat")) == (
        "2.0.0", "Sent")
    unknown = fields["nosuchuser"]
    assert unknown.group("ctladdr") == SENDER
    assert (unknown.group("dsn"), unknown.group("stat")) == ("5.1.1",
                                                             "User unknown")


def test_maillog_deferred_delivery(root):
    root.configure("lock_timeout = 1s")
    with HeldLock(root, "fcntl"):
        result = root.run("-f", SENDER, "bob", message=make_message(b"x\n"))
    assert result.code == EX_TEMPFAIL, result
    lines = root.log_lines()
    assert len(lines) == 1, lines
    match = LOG_LINE.match(lines[0])
    assert match, lines[0]
    assert match.group("to") == "bob"
    assert match.group("dsn").startswith("4.")
    assert match.group("stat").startswith("Deferred: "), lines[0]


# -- 10. configuration and usage errors ---------------------------------------


def test_unknown_config_key_exits_78_naming_file_and_line(root):
    first = root.configure("mailbox = $spool_dir/%u", "# a comment", "",
                           "no_such_key = 1")
    before = root.snapshot()
    result = root.run("-f", SENDER, "alice", message=make_message(b"x\n"))
    assert result.code == EX_CONFIG, result
    assert f"mail.conf:{first + 3}:" in result.stderr, result.stderr
    assert "no_such_key" in result.stderr
    assert root.snapshot() == before


@pytest.mark.parametrize("line", [
    "lock_timeout = soon",
    "lock_timeout = 5 minutes",
    "max_recipients = 10",
    "max_message_size = 12q",
    "relay_based_on_mx = maybe",
    "max_hops = -1",
    "recipient_delimiter = ++",
    "this line has no equals sign",
])
def test_bad_config_value_exits_78_naming_file_and_line(root, line):
    first = root.configure("# a comment", line)
    before = root.snapshot()
    result = root.run("-f", SENDER, "alice", message=make_message(b"x\n"))
    assert result.code == EX_CONFIG, result
    assert f"mail.conf:{first + 1}:" in result.stderr, result.stderr
    assert root.snapshot() == before


def test_missing_config_file_exits_78(root):
    missing = root.path / "no-such.conf"
    before = root.snapshot()
    result = root.run("-C", missing, "-f", SENDER, "alice", conf=False,
                      message=make_message(b"x\n"))
    assert result.code == EX_CONFIG, result
    assert str(missing) in result.stderr
    assert root.snapshot() == before


@pytest.mark.parametrize("args", [["-Z", "alice"], ["-f"], [], ["-f", SENDER]])
def test_bad_usage_exits_64_with_usage_line(root, args):
    before = root.snapshot()
    result = root.run(*args, message=make_message(b"x\n"))
    assert result.code == EX_USAGE, result
    assert re.search(r"(?m)^usage: deliver ", result.stderr), result.stderr
    assert root.snapshot() == before


# -- 12. the calling user -----------------------------------------------------


def writable_log(root):
    # deliver run by a user opens the log as that user.
    root.log.touch()
    os.chmod(root.log, 0o666)


def test_user_delivers_to_own_maildir(root):
    root.configure("mailbox = ~/Maildir/")
    writable_log(root)
    message = make_message(b"delivered by alice herself\n")
    result = root.run("alice", message=message, as_user="alice")
    assert result.code == EX_OK, result
    got = read_maildir(root.maildir("alice"))
    assert list(got.values()) == [stored_form(message, ALICE_TO,
                                              sender="alice")]
    for name in got:
        st = os.lstat(root.maildir("alice") / "new" / name)
        assert st.st_uid == USERS["alice"]
    assert alice_log_line("alice").match(root.log_lines()[-1])


@pytest.mark.parametrize("mailbox", ["~/Maildir/", "$spool_dir/%u"])
def test_user_cannot_deliver_to_another_user(root, mailbox):
    root.configure(f"mailbox = {mailbox}")
    writable_log(root)
    before = root.snapshot()
    result = root.run("-f", SENDER, "bob", message=make_message(b"x\n"),
                      as_user="alice")
    assert result.code == EX_NOPERM, result
    assert root.snapshot() == before
    assert "dsn=5.7.1" in root.log_lines()[-1]


# -- deliver -U: the queue runner's recovery after an interrupted run --------

RECOVERY_QID = "6AUDQNuFqHZgFk"


def recovery_message():
    return (b"Received: (from root@localhost)\n\tby test.example id "
            + RECOVERY_QID.encode() + b";\n\tMon, 30 Nov 2026 13:00:00 +0000\n"
            b"From: someone@x.org\nSubject: once\n\nbody\n")


@pytest.mark.parametrize("maildir", [False, True])
def test_recovery_leaves_a_mailbox_alone_that_holds_the_message(root, maildir):
    if maildir:
        root.configure("mailbox = ~/Maildir/")
    message = recovery_message()

    def count():
        return (len(read_maildir(root.maildir("alice"))) if maildir
                else len(read_mbox(root.mbox("alice"))))

    deliver_ok(root, "-Q", RECOVERY_QID, "-f", SENDER, "alice",
               message=message)
    assert count() == 1
    # The runner died before it recorded this delivery: -U finds the copy.
    deliver_ok(root, "-Q", RECOVERY_QID, "-U", "-f", SENDER, "alice",
               message=message)
    assert count() == 1
    assert any("already holds this message for alice@test.example" in line
               for line in root.log_lines())
    # Another recipient of the same message is not mistaken for it.
    deliver_ok(root, "-Q", RECOVERY_QID, "-U", "-f", SENDER, "bob",
               message=message)
    assert (len(read_maildir(root.maildir("bob"))) if maildir
            else len(read_mbox(root.mbox("bob")))) == 1
    # Without -U (a new delivery of the same message) it is written again.
    deliver_ok(root, "-Q", RECOVERY_QID, "-f", SENDER, "alice",
               message=message)
    assert count() == 2
