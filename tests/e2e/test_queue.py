"""End-to-end tests of sendmail, mailq and the queue runner: submission
(options, header rewriting, limits), the queue files and mailq's listing,
delivery by `sendmail -q` through the real deliver, the maillog and
mailstats, retries with backoff, expiry and delay notices (RFC 3464 DSNs),
bounces of bounces, remote recipients that have no route yet, a runner
killed half way, two runners at once, a full disk, and submission by an
ordinary user through the set-group-ID binary.

Each test gets its own throwaway root (harness.QueueRoot) with a queue
directory "queue" and deliver_path pointing to $MAIL_BIN/deliver; results
are read back with python's mailbox and email packages.
"""

import collections
import contextlib
import email
import email.parser
import email.policy
import email.utils
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from harness import (DELIVER, EX_DATAERR, EX_NOPERM, EX_OK, EX_TEMPFAIL,
                     EX_USAGE, HOSTNAME, SENDMAIL, USERS, Output,
                     QueueRoot, big_body, check_sanitizer,
                     is_sanitizer_build, make_message, parse_mailq,
                     qf_unescape,
                     read_maildir, read_mbox)

ROOT_SENDER = f"root@{HOSTNAME}"
QID = re.compile(r"[0-9A-Za-x]{14}")
MIN_BACKOFF = 300       # mail.conf's default min_backoff, 5m
MAX_DELIVERIES = 4      # and max_deliveries


@pytest.fixture
def qroot(request):
    """A fresh installation with an empty queue directory (root, 0700:
    the root has no submit_group) and deliver_path set."""
    root = QueueRoot(base=os.environ.get("E2E_TMPDIR"))
    root.queue_dir().mkdir(mode=0o700)
    try:
        yield root
        root.check_sanitizer_reports()
    finally:
        if os.environ.get("E2E_KEEP") and getattr(request.node,
                                                  "e2e_failed", False):
            print(f"\nkept the throwaway root: {root.path}")
        else:
            root.remove()


# -- helpers ------------------------------------------------------------------


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def mbox_messages(root, user):
    """The messages in user's spool mbox, parsed; [] when there is none."""
    if not root.mbox(user).exists():
        return []
    return [parse(stored) for _, stored in read_mbox(root.mbox(user))]


def maildir_messages(root, user):
    if not root.maildir(user).exists():
        return []
    return [parse(stored) for stored in read_maildir(root.maildir(user))
            .values()]


def submit(root, *args, message, code=EX_OK):
    """sendmail with args; asserts its exit code; returns the queue ids
    that appeared."""
    before = set(root.queued_ids())
    out = root.sendmail(*args, message=message)
    assert out.code == code, out
    return sorted(set(root.queued_ids()) - before)


def submit_one(root, *args, message):
    ids = submit(root, "-odq", *args, message=message)
    assert len(ids) == 1, ids
    return ids[0]


def run_queue(root, *args):
    out = root.sendmail("-q", *args)
    assert out.code == EX_OK, out
    return out


def mailq(root):
    out = root.run_program("mailq")
    assert out.code == EX_OK, out
    return out.stdout


def assert_queue_empty(root):
    """No qf, df, tf or xf left, and mailq says so."""
    assert root.queue_files() == []
    assert mailq(root) == (f"{root.queue_dir()} is empty\n"
                           "\t\tTotal requests: 0\n")


def message_id(text):
    return re.search(r"(?mi)^Message-ID: *(\S+)", text).group(1)


def install_tempfail(root, user="alice"):
    """Makes user's deliveries fail temporarily: a ~/.forward that pipes to
    a command exiting 75 (EX_TEMPFAIL), as a full mailbox or a busy
    program would. Returns the file the command appends a line to on each
    call."""
    home = root.home(user)
    uid = USERS[user]
    script = home / "tempfail"
    script.write_text("#!/bin/sh\n"
                      "cat > /dev/null\n"
                      "echo call >> \"$HOME/calls\"\n"
                      "echo 'mailbox is on holiday' >&2\n"
                      "exit 75\n")
    os.chown(script, uid, uid)
    os.chmod(script, 0o755)
    forward = home / ".forward"
    forward.write_text(f'"|{script}"\n')
    os.chown(forward, uid, uid)
    os.chmod(forward, 0o644)
    return home / "calls"


def calls(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def remove_tempfail(root, user="alice"):
    (root.home(user) / ".forward").unlink()


def dsn_parts(msg):
    """(human part, per-message fields, [per-recipient fields], headers
    part) of an RFC 3464 report, asserting its structure."""
    assert msg.get_content_type() == "multipart/report", msg
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    blocks = parts[1].get_payload()
    assert len(blocks) >= 2, blocks
    return parts[0], blocks[0], blocks[1:], parts[2]


def assert_from_mailer_daemon(msg):
    assert msg.get_all("Return-Path") == ["<>"]
    assert email.utils.parseaddr(msg["From"])[1] == \
        f"MAILER-DAEMON@{HOSTNAME}"
    assert msg["Auto-Submitted"] == "auto-replied"


def log_matching(root, pattern):
    return [line for line in root.log_lines() if re.search(pattern, line)]


def simple(subject="test", to="alice@test.example", body=b"body\n",
           extra=()):
    return make_message(body, subject=subject, to=to, extra_headers=extra)


# -- 1. submission and the queue files ----------------------------------------


def test_submission_as_root_queues_qf_and_df_0640_and_mailq_lists_it(qroot):
    message = simple(to="alice@test.example, bob@test.example",
                     body=b"hello\nworld\n")
    out = qroot.sendmail("-odq", "alice", "bob@test.example",
                         message=message)
    assert (out.code, out.stdout, out.stderr) == (EX_OK, "", "")
    ids = qroot.queued_ids()
    assert len(ids) == 1 and QID.fullmatch(ids[0]), ids
    qid = ids[0]
    assert qroot.queue_files() == [f"df{qid}", f"qf{qid}"]
    for kind in "dq":
        st = os.lstat(qroot.queue_dir() / f"{kind}f{qid}")
        assert stat.S_ISREG(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert st.st_uid == 0

    qf = qroot.qf(qid)
    assert qf.get("V") == "1"
    assert qf.get("S") == ROOT_SENDER
    assert abs(qf.number("T") - time.time()) < 60
    assert (qf.number("N"), qf.number("K")) == (0, 0)
    assert [(r["state"], r["address"]) for r in qf.recipients] == [
        ("Q", "alice@test.example"), ("Q", "bob@test.example")]
    assert (qroot.queue_dir() / f"df{qid}").read_bytes() == b"hello\nworld\n"
    assert qf.number("Z") == len(b"hello\nworld\n")
    # queue.5: the I record holds the Message-ID for the log.
    assert qf.get("I") == message_id(message.decode())
    assert qf.header("Message-ID") == message_id(message.decode())
    assert re.fullmatch(
        rf"\(from root@localhost\)\s+by {re.escape(HOSTNAME)} id {qid};"
        r"\s+\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
        qf.header("Received")), qf.header("Received")

    listing = mailq(qroot)
    assert listing.splitlines()[0] == f"\t\t{qroot.queue_dir()} (1 request)"
    assert parse_mailq(listing) == {qid: {
        "size": 12, "sender": ROOT_SENDER, "status": None,
        "recipients": ["alice@test.example", "bob@test.example"]}}
    assert listing.endswith("\t\tTotal requests: 1\n")
    # sendmail -bp is mailq.
    bp = qroot.sendmail("-bp")
    assert (bp.code, bp.stdout) == (EX_OK, listing)
    # Nothing was delivered: -odq only queues.
    assert not qroot.mbox("alice").exists()


def test_mailq_lists_several_messages_in_queue_order(qroot):
    first = submit_one(qroot, "alice", message=simple("one"))
    second = submit_one(qroot, "-f", "bob@test.example", "carol", "bob",
                        message=simple("two", body=b"x" * 1000 + b"\n"))
    entries = parse_mailq(mailq(qroot))
    assert list(entries) == sorted([first, second])
    assert entries[second] == {
        "size": 1001, "sender": "bob@test.example", "status": None,
        "recipients": ["carol@test.example", "bob@test.example"]}
    assert mailq(qroot).endswith("\t\tTotal requests: 2\n")


def test_mailq_on_an_empty_queue_says_so(qroot):
    expected = f"{qroot.queue_dir()} is empty\n\t\tTotal requests: 0\n"
    assert mailq(qroot) == expected
    assert parse_mailq(expected) == {}
    bp = qroot.sendmail("-bp")
    assert (bp.code, bp.stdout) == (EX_OK, expected)


def test_odq_keeps_mail_queued_until_sendmail_q(qroot):
    message = simple("queued")
    qid = submit_one(qroot, "alice", message=message)
    time.sleep(0.3)
    assert not qroot.mbox("alice").exists()
    assert qroot.queued_ids() == [qid]
    out = run_queue(qroot)
    assert out.stdout == ""
    [got] = mbox_messages(qroot, "alice")
    assert got["Message-ID"] == message_id(message.decode())
    assert got.get_all("Return-Path") == [f"<{ROOT_SENDER}>"]
    assert got.get_payload() == "body\n"
    assert_queue_empty(qroot)


def test_odi_delivers_before_sendmail_exits(qroot):
    message = simple("interactive")
    assert submit(qroot, "-odi", "alice", message=message) == []
    [got] = mbox_messages(qroot, "alice")
    assert got["Message-ID"] == message_id(message.decode())
    assert_queue_empty(qroot)


def test_default_delivery_as_root_happens_in_the_background(qroot):
    message = simple("background")
    out = qroot.sendmail("alice", message=message)
    assert out.code == EX_OK, out
    deadline = time.time() + 20
    while time.time() < deadline:
        if mbox_messages(qroot, "alice") and not qroot.queued_ids():
            break
        time.sleep(0.05)
    [got] = mbox_messages(qroot, "alice")
    assert got["Message-ID"] == message_id(message.decode())
    assert_queue_empty(qroot)


def test_root_makes_a_missing_queue_dir_2770_with_submit_group(qroot):
    qroot.queue_dir().rmdir()
    qroot.add_group_line("mailsubmit:x:60100:")
    qroot.configure("submit_group = mailsubmit")
    qid = submit_one(qroot, "alice", message=simple())
    st = os.lstat(qroot.queue_dir())
    assert stat.S_ISDIR(st.st_mode)
    assert (st.st_uid, st.st_gid) == (0, 60100)
    assert stat.S_IMODE(st.st_mode) == 0o2770
    for kind in "dq":
        fst = os.lstat(qroot.queue_dir() / f"{kind}f{qid}")
        assert fst.st_gid == 60100
        assert stat.S_IMODE(fst.st_mode) == 0o640


def test_root_makes_a_missing_queue_dir_0700_without_submit_group(qroot):
    qroot.queue_dir().rmdir()
    submit_one(qroot, "alice", message=simple())
    st = os.lstat(qroot.queue_dir())
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o700)


# -- 2. what submission does to a message -------------------------------------


def test_t_sends_to_to_cc_and_bcc_and_removes_bcc_from_every_copy(qroot):
    message = (b"From: Someone <someone@x.org>\n"
               b"To: Alice <alice@test.example>\n"
               b"Cc: bob@test.example\n"
               b"Bcc: carol@test.example\n"
               b"Subject: blind\n"
               b"Message-ID: <blind@x.org>\n"
               b"Date: Mon, 01 Jan 2001 00:00:00 +0000\n"
               b"\n"
               b"who sees whom\n")
    assert submit(qroot, "-odi", "-t", message=message) == []
    for user in ("alice", "bob", "carol"):
        [got] = mbox_messages(qroot, user)
        assert got["Message-ID"] == "<blind@x.org>"
        assert got.get_all("Bcc") is None
        assert got["To"] == "Alice <alice@test.example>"
        assert got["Cc"] == "bob@test.example"
        assert got.get_payload() == "who sees whom\n"
        if user != "carol":
            assert b"carol" not in got.as_bytes()
    assert_queue_empty(qroot)


def test_missing_date_message_id_and_from_are_added(qroot):
    before = time.time()
    qid = submit_one(qroot, "-t", message=b"To: alice\nSubject: bare\n\n"
                                          b"text\n")
    run_queue(qroot)
    [got] = mbox_messages(qroot, "alice")
    assert got["Message-ID"] == f"<{qid}@{HOSTNAME}>"
    date = email.utils.parsedate_to_datetime(got["Date"]).timestamp()
    assert before - 2 <= date <= time.time() + 2
    assert email.utils.parseaddr(got["From"]) == ("root", ROOT_SENDER)
    assert got["To"] == "alice"
    for name in ("Date", "Message-ID", "From", "Received"):
        assert len(got.get_all(name)) == 1, name


def test_present_date_message_id_and_from_are_kept(qroot):
    headers = (b"From: Someone Else <else@x.org>\n"
               b"To: alice@test.example\n"
               b"Date: Mon, 01 Jan 2001 00:00:00 +0000\n"
               b"Message-ID: <kept@x.org>\n"
               b"Subject: keep\n")
    submit(qroot, "-odi", "-t", message=headers + b"\ntext\n")
    [got] = mbox_messages(qroot, "alice")
    assert got.get_all("From") == ["Someone Else <else@x.org>"]
    assert got.get_all("Date") == ["Mon, 01 Jan 2001 00:00:00 +0000"]
    assert got.get_all("Message-ID") == ["<kept@x.org>"]
    # The user's header comes through whole and in order, after the
    # Received: field this host adds.
    stored = read_mbox(qroot.mbox("alice"))[0][1]
    head = stored.split(b"\n\n", 1)[0] + b"\n"
    assert head.endswith(headers)


def test_received_line_is_added_first(qroot):
    message = simple(extra=["Received: from old.example by x.org; "
                            "Mon, 01 Jan 2001 00:00:00 +0000"])
    qid = submit_one(qroot, "alice", message=message)
    run_queue(qroot)
    [got] = mbox_messages(qroot, "alice")
    received = got.get_all("Received")
    assert len(received) == 2
    assert re.fullmatch(
        rf"\(from root@localhost\)\s+by {re.escape(HOSTNAME)} id {qid};"
        r"\s+\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
        received[0]), received[0]
    assert received[1].startswith("from old.example")
    # Return-Path and Delivered-To come from deliver, then ours.
    assert got.keys()[:3] == ["Return-Path", "Delivered-To", "Received"]


@pytest.mark.parametrize("given, expected", [
    ("bob@test.example", "bob@test.example"),
    ("<carol@x.org>", "carol@x.org"),
    ("bare", f"bare@{HOSTNAME}"),
])
def test_f_sets_the_envelope_sender_and_return_path(qroot, given, expected):
    qid = submit_one(qroot, "-f", given, "alice", message=simple())
    assert qroot.qf(qid).get("S") == expected
    run_queue(qroot)
    [got] = mbox_messages(qroot, "alice")
    assert got.get_all("Return-Path") == [f"<{expected}>"]
    assert read_mbox(qroot.mbox("alice"))[0][0].startswith(expected + " ")


@pytest.mark.parametrize("null", ["<>", ""])
def test_f_null_sender_gives_an_empty_return_path(qroot, null):
    qid = submit_one(qroot, "-f", null, "alice", message=simple())
    assert qroot.qf(qid).get("S") == ""
    assert parse_mailq(mailq(qroot))[qid]["sender"] == ""
    run_queue(qroot)
    [got] = mbox_messages(qroot, "alice")
    assert got.get_all("Return-Path") == ["<>"]
    assert read_mbox(qroot.mbox("alice"))[0][0].startswith("MAILER-DAEMON ")
    assert log_matching(qroot, rf"{qid}: from=<>, ")


def test_F_sets_the_display_name_of_an_added_from(qroot):
    submit(qroot, "-odi", "-F", 'Jane "JQ" Doe', "alice",
           message=b"Subject: named\n\ntext\n")
    submit(qroot, "-odi", "-FCompact", "bob",
           message=b"Subject: named\n\ntext\n")
    [alice] = mbox_messages(qroot, "alice")
    assert alice["From"] == '"Jane \\"JQ\\" Doe" <root@test.example>'
    assert email.utils.parseaddr(alice["From"]) == ('Jane "JQ" Doe',
                                                    ROOT_SENDER)
    [bob] = mbox_messages(qroot, "bob")
    assert email.utils.parseaddr(bob["From"]) == ("Compact", ROOT_SENDER)


def test_command_line_recipients_are_added_to_t_ones(qroot):
    message = b"To: alice@test.example\nSubject: both\n\ntext\n"
    qid = submit_one(qroot, "-t", "bob", "alice", message=message)
    assert [r["address"] for r in qroot.qf(qid).recipients] == [
        "alice@test.example", "bob@test.example"]
    run_queue(qroot)
    assert len(mbox_messages(qroot, "alice")) == 1
    assert len(mbox_messages(qroot, "bob")) == 1


def test_lone_dot_ends_the_input_without_i(qroot):
    message = (b"Subject: dots\n\nline one\n..two dots stay\n.x stays\n"
               b".\nafter the dot\n")
    qid = submit_one(qroot, "alice", message=message)
    assert (qroot.queue_dir() / f"df{qid}").read_bytes() == \
        b"line one\n..two dots stay\n.x stays\n"
    run_queue(qroot)
    [got] = mbox_messages(qroot, "alice")
    assert got.get_payload() == "line one\n..two dots stay\n.x stays\n"


def test_lone_dot_with_crlf_ends_the_input_too(qroot):
    qid = submit_one(qroot, "alice",
                     message=b"Subject: crlf\r\n\r\nline\r\n.\r\nafter\r\n")
    assert (qroot.queue_dir() / f"df{qid}").read_bytes() == b"line\r\n"


@pytest.mark.parametrize("flags", [["-i"], ["-oi"], ["-OIgnoreDots"],
                                   ["-ti"]])
def test_lone_dot_is_text_with_i_or_oi(qroot, flags):
    body = b"line one\n.\nafter the dot\n..\n.\n"
    message = b"To: alice@test.example\nSubject: dots\n\n" + body
    qid = submit_one(qroot, *flags, "alice", message=message)
    assert (qroot.queue_dir() / f"df{qid}").read_bytes() == body
    run_queue(qroot)
    [got] = mbox_messages(qroot, "alice")
    assert got.get_payload() == body.decode()


@pytest.mark.parametrize("text, body", [
    (b"just text, no header\nsecond: line\n\nmore\n",
     "just text, no header\nsecond: line\n\nmore\n"),
    (b"hello", "hello\n"),
])
def test_message_without_header_section_is_all_body(qroot, text, body):
    submit(qroot, "-odi", "alice", message=text)
    [got] = mbox_messages(qroot, "alice")
    assert got.get_payload() == body
    for name in ("Received", "Date", "Message-ID", "From"):
        assert len(got.get_all(name)) == 1, name
    assert "just text" not in "".join(got.keys())


def test_cron_flags_work(qroot):
    """Debian's cron runs sendmail -FCronDaemon -i -odi -oem -oi -t."""
    message = (b"To: alice\n"
               b"Subject: Cron <root@host> run-parts /etc/cron.daily\n"
               b"MIME-Version: 1.0\n"
               b"Content-Type: text/plain; charset=UTF-8\n"
               b"Content-Transfer-Encoding: 8bit\n"
               b"X-Cron-Env: <SHELL=/bin/sh>\n"
               b"\n"
               b"job output\n.\nmore output \xc3\xa9\n")
    out = qroot.sendmail("-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t",
                         message=message)
    assert (out.code, out.stdout, out.stderr) == (EX_OK, "", "")
    [got] = mbox_messages(qroot, "alice")
    assert email.utils.parseaddr(got["From"]) == ("CronDaemon", ROOT_SENDER)
    assert got.get_payload(decode=True) == \
        b"job output\n.\nmore output \xc3\xa9\n"
    assert got["X-Cron-Env"] == "<SHELL=/bin/sh>"
    assert_queue_empty(qroot)


def test_8bitmime_flag_and_null_sender_work(qroot):
    """As mutt, git send-email and vacation programs call it."""
    body = "Grüße, ☃\n".encode()
    out = qroot.sendmail("-B8BITMIME", "-f", "<>", "-oi", "-odq", "--",
                         "alice",
                         message=b"Subject: 8bit\nContent-Type: text/plain; "
                                 b"charset=utf-8\n\n" + body)
    assert out.code == EX_OK, out
    run_queue(qroot)
    [got] = mbox_messages(qroot, "alice")
    assert got.get_all("Return-Path") == ["<>"]
    assert got.get_payload(decode=True) == body


def test_unknown_and_ignored_options_are_accepted(qroot):
    args = ["-U", "-m", "-n", "-G", "-Z", "-oem", "-oee", "-oQ/elsewhere",
            "-N", "never", "-R", "hdrs", "-V", "envid", "-h", "5",
            "-L", "tag", "-X", "/dev/null", "-e", "q", "-Mxfoo", "-bm",
            "-odq", "alice"]
    qid = submit_one(qroot, *args, message=simple())
    assert [r["address"] for r in qroot.qf(qid).recipients] == [
        "alice@test.example"]


@pytest.mark.parametrize("args, message", [
    ([], b"Subject: nobody\n\ntext\n"),
    (["-t"], b"Subject: nobody\n\ntext\n"),
    (["-t"], b"To: undisclosed-recipients:;\nSubject: nobody\n\ntext\n"),
])
def test_no_recipients_exits_64_and_queues_nothing(qroot, args, message):
    out = qroot.sendmail(*args, message=message)
    assert out.code == EX_USAGE, out
    assert "recipient" in out.stderr
    assert qroot.queue_files() == []


def test_message_over_max_message_size_exits_65_and_queues_nothing(qroot):
    qroot.configure("max_message_size = 4000")
    out = qroot.sendmail("-odq", "alice",
                         message=b"Subject: big\n\n" + b"x" * 5000 + b"\n")
    assert out.code == EX_DATAERR, out
    assert "4000" in out.stderr
    assert qroot.queue_files() == []
    # A body bigger than the copy buffer is refused the same way.
    out = qroot.sendmail("-odq", "alice",
                         message=b"Subject: big\n\n" + big_body(200 << 10))
    assert out.code == EX_DATAERR, out
    assert qroot.queue_files() == []
    # What fits is accepted (the limit counts what the client sent).
    submit_one(qroot, "alice", message=b"Subject: fits\n\n" + b"x" * 3900)


def test_max_message_size_counts_the_header_the_client_sent(qroot):
    """INTERFACE.md: max_message_size counts the client's octets (RFC
    1870), which include its header section."""
    qroot.configure("max_message_size = 4000")
    header = b"".join(b"X-Pad-%02d: %s\n" % (i, b"p" * 60)
                      for i in range(60))
    assert len(header) > 4000
    out = qroot.sendmail("-odq", "alice",
                         message=header + b"Subject: fat\n\nsmall\n")
    assert out.code == EX_DATAERR, out
    assert qroot.queue_files() == []


def test_too_many_received_lines_are_refused(qroot):
    qroot.configure("max_hops = 3")
    received = [f"Received: from hop{i}.example by x.org; "
                f"Mon, 01 Jan 2001 00:00:0{i} +0000" for i in range(3)]
    out = qroot.sendmail("-odq", "alice",
                         message=simple(extra=received))
    assert out.code == EX_DATAERR, out
    assert "hops" in out.stderr
    assert qroot.queue_files() == []
    # One hop fewer: queued and delivered (ours makes max_hops, which
    # deliver still takes).
    submit_one(qroot, "alice", message=simple(extra=received[:2]))
    run_queue(qroot)
    [got] = mbox_messages(qroot, "alice")
    assert len(got.get_all("Received")) == 3
    assert_queue_empty(qroot)


def test_too_many_recipients_are_refused(qroot):
    qroot.configure("max_recipients = 100")
    rcpts = [f"r{i}@remote.example" for i in range(101)]
    out = qroot.sendmail("-odq", *rcpts, message=simple())
    assert out.code == EX_DATAERR, out
    assert qroot.queue_files() == []
    submit_one(qroot, *rcpts[:100], message=simple())


# -- 3. delivery by the queue runner, the maillog and mailstats --------------

FROM_LOG = re.compile(
    r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ sendmail\[\d+\]: (?P<qid>\w{14}): "
    r"from=<(?P<sender>[^>]*)>, size=(?P<size>\d+), class=0, "
    r"nrcpts=(?P<nrcpts>\d+)(?:, msgid=(?P<msgid><[^>]*>))?, "
    r"relay=(?P<relay>\S+)$")
TO_LOG = re.compile(
    r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ deliver\[\d+\]: (?P<qid>\w{14}): "
    r"to=<(?P<to>[^>]*)>, (?:orig_to=<(?P<orig>[^>]*)>, )?"
    r"ctladdr=<(?P<ctladdr>[^>]*)>.*, mailer=local, pri=\d+, "
    r"dsn=(?P<dsn>[\d.]+), stat=(?P<stat>.*)$")


@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_runner_delivers_and_logs_one_from_and_one_to_per_recipient(
        qroot, kind):
    if kind == "maildir":
        qroot.configure("mailbox = ~/Maildir/")
    read = mbox_messages if kind == "mbox" else maildir_messages
    first = simple("first", to="alice, bob", body=b"first body\n")
    second = simple("second", to="carol", body=b"second body\n" * 50)
    id1 = submit_one(qroot, "-f", "carol@test.example", "alice", "bob",
                     message=first)
    id2 = submit_one(qroot, "carol", message=second)
    run_queue(qroot)
    assert_queue_empty(qroot)

    delivered = {}
    for user in ("alice", "bob", "carol"):
        [got] = read(qroot, user)
        assert got["Delivered-To"] == f"{user}@{HOSTNAME}"
        delivered[user] = got
    assert delivered["alice"]["Message-ID"] == message_id(first.decode())
    assert delivered["bob"]["Message-ID"] == message_id(first.decode())
    assert delivered["carol"]["Message-ID"] == message_id(second.decode())
    assert delivered["carol"].get_payload() == "second body\n" * 50

    froms = {m["qid"]: m for m in map(FROM_LOG.match, qroot.log_lines())
             if m}
    assert sorted(froms) == sorted([id1, id2])
    assert len(log_matching(qroot, r"sendmail\[\d+\]: \w{14}: from=")) == 2
    for qid, msg, sender, users in (
            (id1, first, "carol@test.example", ["alice", "bob"]),
            (id2, second, ROOT_SENDER, ["carol"])):
        line = froms[qid]
        assert line["sender"] == sender
        assert int(line["nrcpts"]) == len(users)
        assert line["msgid"] == message_id(msg.decode())
        assert line["relay"] == "root@localhost"
        # size: the message as queued, i.e. as delivered without the
        # Return-Path: and Delivered-To: fields deliver put first.
        copy = delivered[users[0]]
        queued = copy.as_bytes().split(b"\n", 2)[2]
        assert copy.keys()[:2] == ["Return-Path", "Delivered-To"]
        assert int(line["size"]) == len(queued)
        tos = [m for m in map(TO_LOG.match, qroot.log_lines())
               if m and m["qid"] == qid]
        assert len(tos) == len(users)
        assert sorted(m["orig"] or m["to"] for m in tos) == sorted(
            f"{u}@{HOSTNAME}" for u in users)
        assert {m["stat"] for m in tos} == {"Sent"}
        assert {m["ctladdr"] for m in tos} == {sender}


def test_mailstats_counts_local_messages_from_and_to(qroot):
    (qroot.path / "statistics").write_bytes(b"")
    submit_one(qroot, "alice", "bob", message=simple("one"))
    submit_one(qroot, "carol", message=simple("two"))
    run_queue(qroot)
    out = qroot.run_program("mailstats")
    assert out.code == EX_OK, out
    rows = {}
    for line in out.stdout.splitlines():
        fields = line.split()
        if fields and fields[-1] == "local":
            rows["local"] = fields
        elif fields and fields[0] == "T":
            rows["T"] = fields
    assert rows["local"][1] == "2", out.stdout      # msgsfr
    assert rows["local"][3] == "3", out.stdout      # msgsto
    assert rows["T"][1:5:2] == ["2", "3"], out.stdout


# -- 4. temporary failures, retries and backoff ------------------------------


def qf_times(root, qid):
    qf = root.qf(qid)
    return qf.number("N"), qf.number("K"), qf.number("Y")


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@contextlib.contextmanager
def queue_daemon(root, interval="1h"):
    """sendmail -qINTERVAL, the queue runner daemon, whose passes keep to
    the retry schedule; stopped with SIGTERM (it detaches itself: its pid
    comes from its maillog line)."""
    out = root.sendmail(f"-q{interval}")
    assert out.code == EX_OK, out
    deadline = time.time() + 30
    started = []
    while not started:
        assert time.time() < deadline, "the daemon did not start"
        started = log_matching(root, r"sendmail\[\d+\]: starting queue "
                                     r"runner daemon")
        time.sleep(0.02)
    pid = int(re.search(r"sendmail\[(\d+)\]", started[-1]).group(1))
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 30
        while not process_gone(pid):
            assert time.time() < deadline, "the daemon did not stop"
            time.sleep(0.02)
    assert log_matching(root, rf"sendmail\[{pid}\]: queue runner daemon "
                              r"stopped")


def test_temporary_failure_stays_queued_and_is_retried_by_sendmail_q(qroot):
    calls_file = install_tempfail(qroot)
    message = simple("retry me")
    qid = submit_one(qroot, "-f", "bob@test.example", "alice",
                     message=message)
    run_queue(qroot)
    assert calls(calls_file) == 1
    assert qroot.queued_ids() == [qid]
    tries, last, next_attempt = qf_times(qroot, qid)
    assert tries == 1
    assert abs(last - time.time()) < 60
    assert next_attempt == last + MIN_BACKOFF
    [rcpt] = qroot.qf(qid).recipients
    assert (rcpt["state"], rcpt["dsn"]) == ("Q", "4.3.0")
    assert "exit status 75" in rcpt["reply"]
    assert "mailbox is on holiday" in rcpt["reply"]
    entry = parse_mailq(mailq(qroot))[qid]
    assert entry["recipients"] == ["alice@test.example"]
    reason = qf_unescape(qroot.qf(qid).get("M"))
    assert rcpt["reply"] in reason
    assert entry["status"] and reason.startswith(entry["status"]), entry
    assert "Deferred" in entry["status"], entry
    assert log_matching(qroot, rf"deliver\[\d+\]: {qid}: .*mailer=prog, .*"
                               r"dsn=4\.3\.0, stat=Deferred: ")
    assert (qroot.queue_dir() / f"xf{qid}").exists()
    assert not qroot.mbox("bob").exists()   # no bounce, no warning

    # A scheduled pass (the daemon's) leaves it alone before next_attempt.
    control = simple("control", to="carol")
    control_id = submit_one(qroot, "carol", message=control)
    with queue_daemon(qroot):
        deadline = time.time() + 30
        while time.time() < deadline and control_id in qroot.queued_ids():
            time.sleep(0.05)
        assert len(mbox_messages(qroot, "carol")) == 1
    assert calls(calls_file) == 1
    assert qf_times(qroot, qid) == (tries, last, next_attempt)

    # sendmail -q ignores the schedule; the wait doubles.
    run_queue(qroot)
    assert calls(calls_file) == 2
    tries, last, next_attempt = qf_times(qroot, qid)
    assert tries == 2
    assert next_attempt == last + 2 * MIN_BACKOFF

    # Fixed: delivered once, and the queue forgets it.
    remove_tempfail(qroot)
    run_queue(qroot)
    run_queue(qroot)
    assert calls(calls_file) == 2
    [got] = mbox_messages(qroot, "alice")
    assert got["Message-ID"] == message_id(message.decode())
    assert got.get_all("Return-Path") == ["<bob@test.example>"]
    assert_queue_empty(qroot)
    assert not qroot.mbox("bob").exists()


def install_fake_deliver(root, code, say="done"):
    """Points deliver_path at a script that records each call (argv and
    the message on stdin) in root/calls/ and exits with code after
    printing "deliver: say" on stderr."""
    calls_dir = root.path / "calls"
    calls_dir.mkdir()
    script = root.path / "fake-deliver"
    script.write_text("#!/bin/sh\n"
                      f"f=$(mktemp '{calls_dir}/call.XXXXXX')\n"
                      "printf '%s\\n' \"$@\" > \"$f\"\n"
                      "cat > \"$f.message\"\n"
                      f"echo 'deliver: {say}' >&2\n"
                      f"exit {code}\n")
    os.chmod(script, 0o755)
    conf = root.conf.read_text().replace(f"deliver_path = {DELIVER}",
                                         f"deliver_path = {script}")
    root.conf.write_text(conf)
    return calls_dir


def fake_calls(calls_dir):
    """[(argv, message)] of the fake deliver's calls."""
    return [(path.read_text().splitlines(),
             Path(str(path) + ".message").read_bytes())
            for path in sorted(calls_dir.glob("call.??????"))]


def queued_message(root, qid):
    """The message as the runner hands it to deliver: the header section
    of the qf, an empty line, the df."""
    return (root.qf(qid).headers.encode("utf-8", "surrogateescape") + b"\n"
            + (root.queue_dir() / f"df{qid}").read_bytes())


@pytest.mark.parametrize("sender, flag", [
    ("carol@test.example", "carol@test.example"), ("<>", "<>")])
def test_runner_runs_deliver_once_per_local_recipient(qroot, sender, flag):
    calls_dir = install_fake_deliver(qroot, EX_OK)
    qid = submit_one(qroot, "-f", sender, "alice", "bob@test.example",
                     message=simple(body=b"the body\n"))
    expected_message = queued_message(qroot, qid)
    run_queue(qroot)
    assert_queue_empty(qroot)
    calls = fake_calls(calls_dir)
    assert sorted(argv for argv, _ in calls) == [
        ["-C", str(qroot.conf), "-Q", qid, "-f", flag, "--", rcpt]
        for rcpt in ("alice@test.example", "bob@test.example")]
    for _, message in calls:
        assert message == expected_message


@pytest.mark.parametrize("code, say, state, dsn", [
    (75, "mailbox busy, try later 4.2.1", "Q", "4.2.1"),
    (74, "I/O error writing the mailbox", "Q", "4.3.0"),
    (71, "cannot fork", "Q", "4.3.0"),
    (78, "bad configuration", "Q", "4.3.5"),
    (67, "no such user 5.1.1", "B", "5.1.1"),
    (69, "mailbox unavailable", "B", "5.3.0"),
    (77, "not allowed here", "B", "5.7.1"),
])
def test_runner_reads_deliver_exit_codes_as_status_does(qroot, code, say,
                                                       state, dsn):
    """lib/status.c: 71, 74, 75 and 78 from deliver are temporary (the
    message waits), the other failures permanent (a bounce at once); the
    enhanced status code comes from deliver's last line when it has one,
    from the exit code otherwise."""
    install_fake_deliver(qroot, code, say)
    qid = submit_one(qroot, "-f", "bob@test.example", "alice",
                     message=simple())
    run_queue(qroot)
    if state == "Q":
        assert qroot.queued_ids() == [qid]
        [rcpt] = qroot.qf(qid).recipients
        assert (rcpt["state"], rcpt["dsn"]) == ("Q", dsn)
        assert rcpt["reply"] == say
        assert qroot.qf(qid).number("N") == 1
        return
    [notice_id] = qroot.queued_ids()
    assert notice_id != qid
    notice = parse(queued_message(qroot, notice_id))
    assert qroot.qf(notice_id).get("S") == ""
    assert [r["address"] for r in qroot.qf(notice_id).recipients] == [
        "bob@test.example"]
    _, _, [rcpt], _ = dsn_parts(notice)
    assert (rcpt["Action"], rcpt["Status"]) == ("failed", dsn)
    assert rcpt["Final-Recipient"] == "rfc822; alice@test.example"
    assert say in rcpt["Diagnostic-Code"]


def test_backoff_doubles_from_min_backoff_up_to_max_backoff(qroot):
    qroot.configure("min_backoff = 1m", "max_backoff = 150s")
    install_tempfail(qroot)
    qid = submit_one(qroot, "alice", message=simple())
    waits = []
    for _ in range(4):
        run_queue(qroot)
        tries, last, next_attempt = qf_times(qroot, qid)
        waits.append(next_attempt - last)
    assert tries == 4
    assert waits == [60, 120, 150, 150]


def test_deliver_that_cannot_run_defers(qroot):
    """A deliver_path that is missing is the administrator's to fix: the
    message waits."""
    qroot.configure()
    conf = qroot.conf.read_text().replace(str(DELIVER),
                                          str(qroot.path / "no-deliver"))
    qroot.conf.write_text(conf)
    qid = submit_one(qroot, "alice", message=simple())
    run_queue(qroot)
    assert qroot.queued_ids() == [qid]
    [rcpt] = qroot.qf(qid).recipients
    assert rcpt["state"] == "Q"
    assert rcpt["dsn"].startswith("4."), rcpt


# -- 5. bounces: expiry, permanent failures, delay warnings ------------------


def test_expired_message_bounces_with_an_rfc3464_dsn(qroot):
    qroot.configure("queue_lifetime = 1s")
    calls_file = install_tempfail(qroot)
    message = simple("will expire")
    qid = submit_one(qroot, "-f", "bob@test.example", "alice",
                     message=message)
    time.sleep(1.2)
    run_queue(qroot)            # tried once more, then given up
    assert calls(calls_file) == 1
    assert qid not in qroot.queued_ids()
    [dsn_id] = qroot.queued_ids()
    assert qroot.qf(dsn_id).get("S") == ""
    run_queue(qroot)            # the DSN goes out
    assert_queue_empty(qroot)
    assert not qroot.mbox("alice").exists()

    [dsn] = mbox_messages(qroot, "bob")
    assert_from_mailer_daemon(dsn)
    assert email.utils.parseaddr(dsn["To"])[1] == "bob@test.example"
    text, per_message, recipients, headers = dsn_parts(dsn)
    assert "alice@test.example" in text.get_payload()
    assert per_message["Reporting-MTA"] == f"dns; {HOSTNAME}"
    assert per_message["Arrival-Date"]
    [rcpt] = recipients
    assert rcpt["Final-Recipient"] == "rfc822; alice@test.example"
    assert rcpt["Action"] == "failed"
    assert re.fullmatch(r"4\.4\.7|5\.\d\.\d", rcpt["Status"]), rcpt["Status"]
    diagnostic = rcpt["Diagnostic-Code"]
    assert "mailbox is on holiday" in diagnostic
    # The lifetime is named as it was configured, not rounded to days.
    assert "1 second" in diagnostic, diagnostic
    assert "0 days" not in diagnostic, diagnostic
    original = email.message_from_string(headers.get_payload())
    assert original["Message-ID"] == message_id(message.decode())
    assert original["Subject"] == "will expire"
    assert log_matching(qroot, rf"{qid}: {dsn_id}: DSN: ")


def test_unknown_user_bounces_at_once_with_5_1_1(qroot):
    message = simple("to nobody")
    qid = submit_one(qroot, "-f", "bob@test.example", "nosuch", "alice",
                     message=message)
    run_queue(qroot)
    assert len(mbox_messages(qroot, "alice")) == 1
    assert qid not in qroot.queued_ids()
    run_queue(qroot)
    assert_queue_empty(qroot)
    [dsn] = mbox_messages(qroot, "bob")
    assert_from_mailer_daemon(dsn)
    _, _, recipients, headers = dsn_parts(dsn)
    [rcpt] = recipients
    assert rcpt["Final-Recipient"] == "rfc822; nosuch@test.example"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == "5.1.1"
    assert "nosuch" in rcpt["Diagnostic-Code"]
    assert message_id(message.decode()) in headers.get_payload()
    assert len(mbox_messages(qroot, "alice")) == 1


def test_delay_warning_is_sent_once_and_only_once(qroot):
    qroot.configure("queue_warn = 2s")
    calls_file = install_tempfail(qroot)
    message = simple("slow")
    before = time.time()
    qid = submit_one(qroot, "-f", "bob@test.example", "alice",
                     message=message)
    run_queue(qroot)
    assert len(qroot.queued_ids()) == 1
    if time.time() - before < 1.9:
        # Too early to warn (unless this machine is very slow).
        assert qroot.qf(qid).get("W") is None
    time.sleep(max(0, before + 2.2 - time.time()))
    run_queue(qroot)            # warns
    assert qroot.qf(qid).get("W") == "1"
    for _ in range(3):
        run_queue(qroot)
    assert calls(calls_file) == 5
    assert qroot.queued_ids() == [qid]

    [warning] = mbox_messages(qroot, "bob")
    assert_from_mailer_daemon(warning)
    _, _, recipients, headers = dsn_parts(warning)
    [rcpt] = recipients
    assert rcpt["Final-Recipient"] == "rfc822; alice@test.example"
    assert rcpt["Action"] == "delayed"
    assert rcpt["Status"] == "4.3.0"
    assert rcpt["Will-Retry-Until"]
    assert message_id(message.decode()) in headers.get_payload()
    # Still there, and delivered when the problem goes away.
    remove_tempfail(qroot)
    run_queue(qroot)
    assert len(mbox_messages(qroot, "alice")) == 1
    assert len(mbox_messages(qroot, "bob")) == 1
    assert_queue_empty(qroot)


def aliases(root, text):
    (root.path / "aliases").write_text(text)
    out = root.run_program("newaliases")
    assert out.code == EX_OK, out


def test_bounce_of_a_null_sender_message_goes_to_postmaster(qroot):
    aliases(qroot, "postmaster: carol\n")
    message = simple("from nobody")
    qid = submit_one(qroot, "-f", "<>", "nosuch", message=message)
    run_queue(qroot)
    [notice_id] = qroot.queued_ids()
    notice_qf = qroot.qf(notice_id)
    assert notice_qf.get("S") == ""
    assert [r["address"] for r in notice_qf.recipients] == [
        f"postmaster@{HOSTNAME}"]
    run_queue(qroot)
    assert_queue_empty(qroot)
    [notice] = mbox_messages(qroot, "carol")
    assert_from_mailer_daemon(notice)
    assert notice["Delivered-To"] == f"postmaster@{HOSTNAME}"
    assert "postmaster" in notice["Subject"]
    _, _, recipients, headers = dsn_parts(notice)
    [rcpt] = recipients
    assert rcpt["Final-Recipient"] == "rfc822; nosuch@test.example"
    assert (rcpt["Action"], rcpt["Status"]) == ("failed", "5.1.1")
    assert message_id(message.decode()) in headers.get_payload()
    assert log_matching(qroot, rf"{qid}: {notice_id}: DSN: ")
    for user in ("alice", "bob"):
        assert not qroot.mbox(user).exists()


def test_failed_bounce_to_postmaster_is_logged_and_not_looped(qroot):
    aliases(qroot, "postmaster: nobody-here\n")
    submit_one(qroot, "-f", "<>", "nosuch", message=simple())
    run_queue(qroot)            # bounce to postmaster queued
    [notice_id] = qroot.queued_ids()
    run_queue(qroot)            # postmaster fails too: logged, dropped
    assert_queue_empty(qroot)
    lost = log_matching(qroot, rf"{notice_id}: lost bounce from <> to "
                               rf"postmaster@{HOSTNAME}")
    assert len(lost) == 1, qroot.log_lines()
    for _ in range(2):
        run_queue(qroot)
        assert_queue_empty(qroot)
    assert not list(qroot.spool.iterdir())


# -- 6. remote recipients -----------------------------------------------------


@pytest.fixture
def closed_port():
    """A loopback TCP port that refuses connections for the test's
    length: bound (so that nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_remote_recipients_stay_queued_local_ones_delivered_once(
        qroot, closed_port):
    """Remote mail that cannot go out yet (here: the smarthost refuses
    connections) waits in the queue, however often the queue is run; the
    local recipients of the same message are delivered once and recorded
    as sent."""
    qroot.configure(f"smarthost = [127.0.0.1]:{closed_port}")
    message = simple("mixed", to="alice, friend@remote.example")
    qid = submit_one(qroot, "-f", "bob@test.example", "alice",
                     "friend@remote.example", "other@far.example",
                     message=message)
    for attempt in range(1, 4):
        run_queue(qroot)
        assert qroot.queued_ids() == [qid]
        qf = qroot.qf(qid)
        assert qf.number("N") == attempt
        states = {r["address"]: r for r in qf.recipients}
        assert states["alice@test.example"]["state"] == "S"
        for remote in ("friend@remote.example", "other@far.example"):
            assert states[remote]["state"] == "Q"
            assert states[remote]["dsn"].startswith("4."), states[remote]
            assert "Connection refused" in states[remote]["reply"]
        assert len(mbox_messages(qroot, "alice")) == 1
    entry = parse_mailq(mailq(qroot))[qid]
    assert entry["recipients"] == ["friend@remote.example",
                                   "other@far.example"]
    assert "Connection refused" in entry["status"]
    deferred = log_matching(qroot, rf"{qid}: to=<friend@remote\.example>, "
                                   r".*mailer=esmtp, .*dsn=4\.\d\.\d+, "
                                   r"stat=Deferred: ")
    assert len(deferred) == 3
    sent = [m for m in map(TO_LOG.match, qroot.log_lines())
            if m and m["qid"] == qid]
    assert [m["stat"] for m in sent] == ["Sent"]
    assert (qroot.queue_dir() / f"df{qid}").exists()
    assert not qroot.mbox("bob").exists()


# -- 7. crashes and concurrency -----------------------------------------------

CRASH_MESSAGES = 2000 if not is_sanitizer_build() else int(
    os.environ.get("E2E_CRASH_MESSAGES", "1000"))
USERS_FOR_LOAD = ("alice", "bob", "carol")


def queue_many(root, count, tag):
    """Queues count messages (-odq) round robin to the test users, eight
    sendmail processes at a time; returns their Message-IDs."""
    ids = []
    running = []
    for index in range(count):
        msgid = f"<{tag}.{index}@x.org>"
        ids.append(msgid)
        user = USERS_FOR_LOAD[index % len(USERS_FOR_LOAD)]
        proc = root.popen_program("sendmail", "-odq", user,
                                  stdin=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        proc.stdin.write(f"Message-ID: {msgid}\nSubject: {tag} {index}\n\n"
                         f"message {index}\n".encode())
        proc.stdin.close()
        running.append(proc)
        if len(running) == 8 or index == count - 1:
            for p in running:
                stderr = p.stderr.read().decode(errors="replace")
                assert p.wait() == EX_OK, stderr
                check_sanitizer(stderr)
            running = []
    return ids


def maildir_new_count(root):
    total = 0
    for user in USERS_FOR_LOAD:
        new = root.maildir(user) / "new"
        if new.exists():
            total += len(os.listdir(new))
    return total


def delivered_ids(root):
    """Counter of Message-IDs in the test users' maildirs."""
    parser = email.parser.BytesHeaderParser()
    found = collections.Counter()
    for user in USERS_FOR_LOAD:
        for stored in read_maildir(root.maildir(user)).values():
            found[parser.parsebytes(stored)["Message-ID"]] += 1
    return found


def queued_message_ids(root):
    """The Message-IDs of the messages that still have a qf."""
    found = set()
    for qid in root.queued_ids():
        try:
            found.add(root.qf(qid).header("Message-ID"))
        except FileNotFoundError:
            pass
    return found


def group_alive(pgid):
    """True while a process of the group is more than a zombie."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while group_alive(proc.pid):
        assert time.time() < deadline, "the killed runner's group lives on"
        time.sleep(0.01)


def test_killed_runner_delivers_every_message_exactly_once(qroot):
    """2,000 messages to three maildir users (about 10 s on 2 cores;
    against a sanitizer build, where 2,000 take about 50 s, the number is
    E2E_CRASH_MESSAGES, default 1,000). The runner's whole process group
    (runner, workers, deliver) is killed with SIGKILL three times part
    way, and sendmail -q is run again until the queue is empty. Every
    message arrives exactly once, counted by Message-ID: also those whose
    delivery was complete in the mailbox when the kill came but not yet
    recorded in the qf (the runner's attempt journal sends them to
    deliver -U, which finds the copy and does not write another)."""
    qroot.configure("mailbox = ~/Maildir/")
    sent = queue_many(qroot, CRASH_MESSAGES, "crash")
    assert len(qroot.queued_ids()) == CRASH_MESSAGES

    in_flight = set()
    kills = 0
    started = time.time()
    for round_ in range(20):
        if not qroot.queued_ids():
            break
        runner = qroot.popen_program("sendmail", "-q")
        if kills < 3:
            target = min(CRASH_MESSAGES - 1,
                         maildir_new_count(qroot) + CRASH_MESSAGES // 5)
            while (runner.poll() is None
                   and maildir_new_count(qroot) < target):
                time.sleep(0.002)
            if runner.poll() is None:
                kill_group(runner)
                kills += 1
                ambiguous = set(delivered_ids(qroot)) & \
                    queued_message_ids(qroot)
                assert len(ambiguous) <= MAX_DELIVERIES, ambiguous
                in_flight |= ambiguous
                continue
        assert runner.wait(timeout=300) == EX_OK
    assert kills >= 1, "the runner finished before it could be killed"
    assert qroot.queued_ids() == []
    assert not [n for n in qroot.queue_files() if n[:2] in ("qf", "tf",
                                                              "jf")]
    assert mailq(qroot).endswith("Total requests: 0\n")

    got = delivered_ids(qroot)
    missing = [m for m in sent if got[m] == 0]
    assert not missing, f"{len(missing)} messages lost: {missing[:10]}"
    assert set(got) == set(sent)
    twice = {m: got[m] for m in sent if got[m] != 1}
    assert not twice, (f"delivered more than once (in flight at a kill: "
                       f"{sorted(in_flight)}): {twice}")
    if in_flight:
        # The interrupted ones were recognised, not written again.
        assert any("already holds this message" in line
                   for line in qroot.log_lines())
    print(f"\n{CRASH_MESSAGES} messages, {kills} kills, "
          f"{len(in_flight)} in flight, {time.time() - started:.1f}s")


def test_two_runners_at_once_deliver_every_message_once(qroot):
    qroot.configure("mailbox = ~/Maildir/")
    sent = queue_many(qroot, 300, "pair")
    runners = [qroot.popen_program("sendmail", "-q",
                                   stderr=subprocess.PIPE)
               for _ in range(2)]
    for runner in runners:
        stderr = runner.stderr.read().decode(errors="replace")
        assert runner.wait(timeout=300) == EX_OK, stderr
        check_sanitizer(stderr)
    assert_queue_empty(qroot)
    got = delivered_ids(qroot)
    assert set(got) == set(sent)
    assert {m: n for m, n in got.items() if n != 1} == {}
    tos = [m for m in map(TO_LOG.match, qroot.log_lines()) if m]
    assert len(tos) == 300


# -- 8. a full disk -----------------------------------------------------------

FULL_DISK_SCRIPT = r"""
set -e
queue=$1 out=$2 filler=$3
shift 3
mount -t tmpfs -o size=1m,mode=0700 tmpfs "$queue"
if [ "$filler" -gt 0 ]; then
    head -c "$filler" /dev/zero > "$queue/filler"
fi
set +e
"$@" < "$out/big" > /dev/null 2> "$out/big.stderr"
echo $? > "$out/big.rc"
ls -A "$queue" > "$out/after-big"
"$@" < "$out/small" > /dev/null 2> "$out/small.stderr"
echo $? > "$out/small.rc"
ls -A "$queue" > "$out/after-small"
"""


def run_with_full_queue(root, big, small, filler=0):
    """In a private mount namespace where a 1 MiB tmpfs covers the queue
    directory (with filler bytes used up first), queues big, then small,
    for alice. Returns the directory with the exit codes, stderr and the
    queue's contents after each."""
    out = root.path / "namespace-out"
    out.mkdir()
    (out / "big").write_bytes(big)
    (out / "small").write_bytes(small)
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            FULL_DISK_SCRIPT, "sh", str(root.queue_dir()), str(out),
            str(filler), *root.program_command("sendmail", "-odq", "alice")]
    proc = subprocess.run(argv, env=root.queue_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    if not (out / "big.rc").exists():
        pytest.skip("cannot mount a tmpfs in a private mount namespace "
                    f"here: {proc.stderr.decode(errors='replace').strip()}")
    for name in ("big.stderr", "small.stderr"):
        check_sanitizer((out / name).read_text(errors="replace"))
    root.check_sanitizer_reports()
    return out


def queue_kinds(listing):
    return sorted(name[:2] for name in listing.split() if name != "filler")


def test_full_disk_fails_with_75_and_leaves_no_partial_files(qroot):
    big = simple("too big", body=big_body(2 << 20))
    small = simple("fits")
    out = run_with_full_queue(qroot, big, small)
    assert int((out / "big.rc").read_text()) == EX_TEMPFAIL, \
        (out / "big.stderr").read_text()
    assert "No space left on device" in (out / "big.stderr").read_text()
    assert (out / "after-big").read_text().split() == []
    assert int((out / "small.rc").read_text()) == EX_OK, \
        (out / "small.stderr").read_text()
    assert queue_kinds((out / "after-small").read_text()) == ["df", "qf"]
    # The tmpfs was private: the real queue never saw any of it.
    assert qroot.queue_files() == []


def test_full_disk_while_writing_the_qf_removes_the_df_too(qroot):
    """The body fits, the qf (a large header) does not."""
    header = "".join(f"X-Long-{i:04d}: {'h' * 70}\n" for i in range(2000))
    big = (header + "Subject: fat header\n\nsmall body\n").encode()
    assert len(big) > 128 << 10
    small = simple("fits")
    out = run_with_full_queue(qroot, big, small,
                              filler=(1 << 20) - (96 << 10))
    assert int((out / "big.rc").read_text()) == EX_TEMPFAIL, \
        (out / "big.stderr").read_text()
    assert queue_kinds((out / "after-big").read_text()) == []
    assert int((out / "small.rc").read_text()) == EX_OK, \
        (out / "small.stderr").read_text()
    assert queue_kinds((out / "after-small").read_text()) == ["df", "qf"]


# -- 9. submission by an ordinary user: the set-group-ID binary ---------------

SUBMIT_GROUP, SUBMIT_GID = "mailsubmit", 60100

BIND_SCRIPT = r"""
set -e
mount --bind "$1" /etc/passwd
mount --bind "$2" /etc/group
shift 2
exec "$@"
"""


class SetgidInstall:
    """sendmail installed set-group-ID to a submit group, a queue directory
    root:group 2770, and passwd/group files that know the test users, for
    bind-mounting over the real ones (a set-group-ID program ignores
    LD_PRELOAD, so nss_wrapper cannot give it the test users)."""

    def __init__(self, root):
        self.root = root
        root.configure(f"submit_group = {SUBMIT_GROUP}")
        root.add_group_line(f"{SUBMIT_GROUP}:x:{SUBMIT_GID}:")
        self.passwd = root.path / "etc-passwd"
        self.group = root.path / "etc-group"
        users = "".join(f"{name}:x:{uid}:{uid}:{name.title()} Example:"
                        f"{root.home(name)}:/bin/sh\n"
                        for name, uid in USERS.items())
        groups = "".join(f"{name}:x:{uid}:\n" for name, uid in USERS.items())
        self.passwd.write_text(Path("/etc/passwd").read_text() + users)
        self.group.write_text(Path("/etc/group").read_text() + groups
                              + f"{SUBMIT_GROUP}:x:{SUBMIT_GID}:\n")
        for path in (self.passwd, self.group):
            os.chmod(path, 0o644)
        sbin = root.path / "sbin"
        sbin.mkdir()
        os.chmod(sbin, 0o755)
        self.sendmail = sbin / "sendmail"
        shutil.copy(SENDMAIL, self.sendmail)
        os.chown(self.sendmail, 0, SUBMIT_GID)
        os.chmod(self.sendmail, 0o2755)
        self.mailq = sbin / "mailq"
        os.link(self.sendmail, self.mailq)
        qdir = root.queue_dir()
        os.chown(qdir, 0, SUBMIT_GID)
        os.chmod(qdir, 0o2770)

    def run(self, user, *argv, message=b""):
        """Runs argv as user (real and effective ids, no supplementary
        groups) in a private mount namespace with the bound passwd and
        group files. Returns harness-style Output."""
        uid = USERS[user]
        env = {k: v for k, v in self.root.queue_env().items()
               if not k.startswith(("LD_", "NSS_WRAPPER"))}
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               BIND_SCRIPT, "sh", str(self.passwd), str(self.group),
               "setpriv", f"--reuid={uid}", f"--regid={uid}",
               "--clear-groups", "--", *map(str, argv)]
        proc = subprocess.run(cmd, input=message, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env,
                              cwd=self.root.path, timeout=120)
        stderr = proc.stderr.decode("utf-8", "replace")
        if "mount" in stderr and proc.returncode != 0 and \
                "Permission denied" not in stderr:
            pytest.skip(f"cannot bind-mount in a mount namespace: {stderr}")
        check_sanitizer(stderr)
        self.root.check_sanitizer_reports()
        return Output(proc.returncode,
                      proc.stdout.decode("utf-8", "replace"), stderr)

    def submit(self, user, *args, message, conf=None):
        return self.run(user, self.sendmail, "-C", conf or self.root.conf,
                        *args, message=message)


@pytest.fixture
def setgid(qroot):
    return SetgidInstall(qroot)


def test_ordinary_user_submits_through_the_setgid_binary(qroot, setgid):
    from_alice = (b"To: bob\nSubject: from alice\n"
                  b"Message-ID: <from-alice@x.org>\n\nhello bob\n")
    out = setgid.submit("alice", "bob", message=from_alice)
    assert (out.code, out.stderr) == (EX_OK, ""), out
    [alice_id] = qroot.queued_ids()
    from_bob = simple("from bob", to="carol")
    out = setgid.submit("bob", "carol", message=from_bob)
    assert out.code == EX_OK, out
    [bob_id] = set(qroot.queued_ids()) - {alice_id}

    for qid, uid in ((alice_id, USERS["alice"]), (bob_id, USERS["bob"])):
        for kind in "dq":
            st = os.lstat(qroot.queue_dir() / f"{kind}f{qid}")
            assert st.st_gid == SUBMIT_GID
            assert st.st_uid in (0, uid)
            assert stat.S_IMODE(st.st_mode) == 0o640
    qf = qroot.qf(alice_id)
    # The login name comes from the (bound) passwd file.
    assert qf.get("S") == f"alice@{HOSTNAME}"
    assert qf.header("Received").startswith("(from alice@localhost)")
    assert email.utils.parseaddr(qf.header("From")) == (
        "Alice Example", f"alice@{HOSTNAME}")
    qdir = os.lstat(qroot.queue_dir())
    assert (qdir.st_uid, qdir.st_gid) == (0, SUBMIT_GID)
    assert stat.S_IMODE(qdir.st_mode) == 0o2770

    # Without the binary alice can neither list the queue nor read bob's
    # queued mail.
    out = setgid.run("alice", "ls", qroot.queue_dir())
    assert out.code != 0 and "Permission denied" in out.stderr, out
    out = setgid.run("alice", "cat", qroot.queue_dir() / f"qf{bob_id}")
    assert out.code != 0 and "Permission denied" in out.stderr, out
    out = setgid.run("alice", "cat", qroot.queue_dir() / f"df{alice_id}")
    assert out.code != 0 and "Permission denied" in out.stderr, out

    # mailq through the binary works for her.
    for argv in ([setgid.mailq, "-C", qroot.conf],
                 [setgid.sendmail, "-C", qroot.conf, "-bp"]):
        out = setgid.run("alice", *argv)
        assert out.code == EX_OK, out
        entries = parse_mailq(out.stdout)
        assert sorted(entries) == sorted([alice_id, bob_id])
        assert entries[alice_id]["sender"] == f"alice@{HOSTNAME}"

    # Running the queue is root's.
    out = setgid.run("alice", setgid.sendmail, "-C", qroot.conf, "-q")
    assert out.code == EX_NOPERM, out
    assert sorted(qroot.queued_ids()) == sorted([alice_id, bob_id])

    # Root's queue run delivers with the users' envelope senders.
    run_queue(qroot)
    assert_queue_empty(qroot)
    [got] = mbox_messages(qroot, "bob")
    assert got.get_all("Return-Path") == [f"<alice@{HOSTNAME}>"]
    assert got["Message-ID"] == message_id(from_alice.decode())
    [got] = mbox_messages(qroot, "carol")
    assert got.get_all("Return-Path") == [f"<bob@{HOSTNAME}>"]


@pytest.mark.parametrize("owner, mode", [("alice", 0o644), ("root", 0o664)])
def test_config_not_owned_by_root_makes_the_binary_drop_its_group(
        qroot, setgid, owner, mode):
    conf = qroot.path / "mine.conf"    # beside mail.conf: same paths
    shutil.copy(qroot.conf, conf)
    uid = USERS[owner] if owner != "root" else 0
    os.chown(conf, uid, uid)
    os.chmod(conf, mode)
    out = setgid.submit("alice", "bob", message=simple(), conf=conf)
    assert out.code == EX_TEMPFAIL, out
    assert "Permission denied" in out.stderr, out
    assert qroot.queue_files() == []
    out = setgid.run("alice", setgid.mailq, "-C", conf)
    assert out.code != EX_OK, out
    assert "Permission denied" in out.stderr, out
    # The same file, root's and not writable by others, is trusted.
    os.chown(conf, 0, 0)
    os.chmod(conf, 0o644)
    out = setgid.submit("alice", "bob", message=simple(), conf=conf)
    assert out.code == EX_OK, out
    assert len(qroot.queued_ids()) == 1


def test_background_deliveries_are_limited_to_max_deliveries(qroot):
    """A burst of submissions does not become a burst of delivery
    processes: with every slot taken, the message stays queued for the
    queue daemon or the next run."""
    import fcntl
    qroot.configure("max_deliveries = 1")
    slot = open(qroot.queue_dir() / ".slot0", "w")
    fcntl.flock(slot, fcntl.LOCK_EX)
    try:
        out = qroot.sendmail("alice", message=simple("held"))
        assert out.code == EX_OK, out
        time.sleep(1)
        assert mbox_messages(qroot, "alice") == []
        assert len(qroot.queued_ids()) == 1
    finally:
        slot.close()
    assert qroot.run_program("sendmail", "-q").code == EX_OK
    assert len(mbox_messages(qroot, "alice")) == 1
    assert_queue_empty(qroot)
