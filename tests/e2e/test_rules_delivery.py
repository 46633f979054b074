"""End-to-end tests of how deliver runs a real recipient's rules.

`deliver -C conf -f SENDER alice` (as root, like an MTA's local mailer):
the system rcfile (`system_rcfile`, here in the throwaway root) and then
~/.procmailrc run as alice on the message that already carries
Return-Path: and Delivered-To:; an rcfile that is not safe is ignored (the
mail goes to the mailbox), a broken one still ends in DEFAULT with its
errors in the maillog. Also: $1 from -a and from user+tag, the privileges
a pipe recipe runs with, ATTACHMENT_TYPES on a disguised Windows
executable, and that libmagic is only loaded for rcfiles that ask for
ATTACHMENT_TYPES.
"""

import base64
import os
import re
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

import harness
from harness import (EX_OK, HOSTNAME, MAIL_GID, SENDER, USERS, check_sanitizer,
                     make_message, read_maildir, read_mbox)

ALICE = USERS["alice"]
ALICE_TO = f"alice@{HOSTNAME}"


# -- helpers -----------------------------------------------------------------


def leak_checks_possible():
    """LeakSanitizer stops the process's threads with ptrace at exit; once
    deliver has taken the recipient's ids the process is not dumpable
    (fs.suid_dumpable = 0) and LeakSanitizer dies with "does not work under
    ptrace" (exit 1). Every test here delivers as root to alice."""
    try:
        return Path("/proc/sys/fs/suid_dumpable").read_text().strip() != "0"
    except OSError:
        return True


@pytest.fixture(autouse=True)
def sanitizer_env(monkeypatch):
    """In a sanitizer build where leak checks cannot run after the user
    switch, turn off only those (AddressSanitizer and UBSan stay on and
    check_sanitizer still fails a test on any report)."""
    if harness.is_sanitizer_build() and not leak_checks_possible():
        asan = os.environ.get("ASAN_OPTIONS", "")
        monkeypatch.setenv("ASAN_OPTIONS",
                           (asan + ":" if asan else "") + "detect_leaks=0")


def setup_rules(root, user_rc=None, system_rc=None, user="alice",
                owner=None, mode=0o644, crlf=False):
    """mail.conf pointing system_rcfile into the root; writes the user's
    ~/.procmailrc (owned by owner, default the user) and the system rcfile
    (root's) when given. Returns the user rcfile's path."""
    root.configure("system_rcfile = procmailrc")
    path = root.home(user) / ".procmailrc"
    if user_rc is not None:
        text = user_rc.lstrip("\n")
        if crlf:
            text = text.replace("\n", "\r\n")
        path.write_bytes(text.encode())
        uid = USERS[owner or user] if (owner or user) != "root" else 0
        os.chown(path, uid, uid)
        os.chmod(path, mode)
    if system_rc is not None:
        sys_path = root.path / "procmailrc"
        sys_path.write_text(system_rc.lstrip("\n"))
        os.chown(sys_path, 0, 0)
        os.chmod(sys_path, 0o644)
    return path


def deliver(root, *args, message, expect=EX_OK):
    result = root.run("-f", SENDER, *args, message=message)
    assert result.code == expect, (result, root.log_lines())
    return result


def spool_messages(root, user="alice"):
    path = root.mbox(user)
    return read_mbox(path) if path.exists() else []


def folder_messages(path):
    return read_mbox(path) if Path(path).exists() else []


def owner_of(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def rules_log(root):
    return [line for line in root.log_lines() if "rules" in line]


# -- ~/.procmailrc and /etc/procmailrc ----------------------------------------


def test_user_rcfile_files_into_folders_under_home_as_the_user(root):
    setup_rules(root, """
MAILDIR=$HOME/Mail
:0 c
copies

:0
* ^Subject: sort me
sorted/
""")
    mail = root.home("alice") / "Mail"
    mail.mkdir()
    os.chown(mail, ALICE, ALICE)
    message = make_message(b"filed by the rules\n", subject="sort me")
    deliver(root, "alice", message=message)

    copies = folder_messages(mail / "copies")
    assert len(copies) == 1
    from_, stored = copies[0]
    assert from_.split()[0] == SENDER
    assert stored == harness.stored_form(message, ALICE_TO)
    maildir = read_maildir(mail / "sorted")
    assert list(maildir.values()) == [harness.stored_form(message, ALICE_TO)]
    # everything the rules made belongs to alice, in her own group
    for path in [mail / "copies", mail / "sorted", mail / "sorted" / "new",
                 *(mail / "sorted" / "new").iterdir()]:
        assert owner_of(path) == (ALICE, ALICE), path
    assert stat.S_IMODE(os.lstat(mail / "copies").st_mode) & 0o077 == 0
    # delivered by the rules: nothing in the spool
    assert not root.mbox("alice").exists()


def test_system_rcfile_runs_first_then_user_rcfile(root):
    setup_rules(root, user_rc="""
:0 c
| echo "user $LOGNAME $(id -u)" >> $HOME/order.txt
:0
user-folder
""", system_rc="""
:0 c
| echo "system $LOGNAME $(id -u)" >> $HOME/order.txt
SYSTEM_SET=yes
""")
    deliver(root, "alice", message=make_message(b"x\n"))
    order = (root.home("alice") / "order.txt").read_text().splitlines()
    assert order == [f"system alice {ALICE}", f"user alice {ALICE}"]
    assert len(folder_messages(root.home("alice") / "user-folder")) == 1


def test_system_rcfile_delivery_ends_the_run(root):
    setup_rules(root, user_rc="""
:0
user-folder
""", system_rc="""
:0
* ^Subject: system takes it
$HOME/system-folder
""")
    deliver(root, "alice",
            message=make_message(b"x\n", subject="system takes it"))
    deliver(root, "alice", message=make_message(b"y\n", subject="other"))
    system = folder_messages(root.home("alice") / "system-folder")
    user = folder_messages(root.home("alice") / "user-folder")
    assert [m.count(b"system takes it") for _, m in system] == [1]
    assert [b"Subject: other" in m for _, m in user] == [True]
    assert owner_of(root.home("alice") / "system-folder") == (ALICE, ALICE)


def test_no_delivering_recipe_falls_back_to_the_spool(root):
    setup_rules(root, """
:0 c
copy

:0
* ^Subject: never
never
""")
    message = make_message(b"to the spool\n")
    deliver(root, "alice", message=message)
    spool = spool_messages(root)
    assert len(spool) == 1
    from_, stored = spool[0]
    assert from_.split()[0] == SENDER
    assert stored.startswith(b"Return-Path: <%s>\nDelivered-To: %s\n"
                             % (SENDER.encode(), ALICE_TO.encode()))
    assert stored.endswith(message)
    # the spool file as the MTA makes it: alice's, group mail, 0660
    st = os.lstat(root.mbox("alice"))
    assert (st.st_uid, st.st_gid) == (ALICE, MAIL_GID)
    assert stat.S_IMODE(st.st_mode) == 0o660
    # the copy the rules made has the same header lines
    [(_, copy)] = folder_messages(root.home("alice") / "copy")
    assert copy.startswith(b"Return-Path: <%s>\nDelivered-To: %s\n"
                           % (SENDER.encode(), ALICE_TO.encode()))
    assert not (root.home("alice") / "never").exists()


def test_fallback_with_logfile_and_filter_reaches_the_spool(root):
    # With a LOGFILE (and a filter) the rules engine writes DEFAULT itself:
    # the spool mbox must come out exactly as the MTA makes it, with the
    # filtered message, and the LOGFILE gets procmail's abstract.
    setup_rules(root, """
LOGFILE=$HOME/procmail.log
:0 fw
| sed 's/original text/FILTERED TEXT/'
""")
    message = make_message(b"original text\n", subject="logged")
    deliver(root, "alice", message=message)
    [(from_, stored)] = spool_messages(root)
    assert b"FILTERED TEXT" in stored and b"original text" not in stored
    assert stored.startswith(b"Return-Path: <%s>\nDelivered-To: %s\n"
                             % (SENDER.encode(), ALICE_TO.encode()))
    st = os.lstat(root.mbox("alice"))
    assert (st.st_uid, st.st_gid) == (ALICE, MAIL_GID)
    assert stat.S_IMODE(st.st_mode) == 0o660
    log = (root.home("alice") / "procmail.log").read_text()
    assert f"  Folder: {root.mbox('alice')}" in log
    assert " Subject: logged\n" in log
    assert owner_of(root.home("alice") / "procmail.log") == (ALICE, ALICE)


def test_conditions_see_delivered_to_and_return_path(root):
    setup_rules(root, rf"""
:0
* ^Delivered-To: alice@{re.escape(HOSTNAME)}$
* ^Return-Path: <{re.escape(SENDER)}>
seen
""")
    deliver(root, "alice", message=make_message(b"x\n"))
    assert len(folder_messages(root.home("alice") / "seen")) == 1
    assert not root.mbox("alice").exists()


def test_syntax_error_still_delivers_to_default_and_logs_file_line(root):
    rcfile = setup_rules(root, """
:0
* ^Subject: never
{
  :0
  never-folder

junk line here
:0 Q
* ^Subject: no such subject
odd
""")
    message = make_message(b"despite the errors\n")
    deliver(root, "alice", message=message)
    [(_, stored)] = spool_messages(root)
    assert stored.endswith(message)
    log = rules_log(root)
    # each problem named with the rcfile and its line
    assert any(f"{rcfile}:3:" in line and "brace" in line for line in log), \
        log
    assert any(f"{rcfile}:8:" in line and "'Q'" in line for line in log), \
        log


@pytest.mark.parametrize("problem", ["other-owner", "group-writable",
                                     "world-writable"])
def test_unsafe_rcfile_is_ignored(root, problem):
    owner, mode = {"other-owner": ("bob", 0o644),
                   "group-writable": ("alice", 0o664),
                   "world-writable": ("alice", 0o646)}[problem]
    rcfile = setup_rules(root, """
:0
stolen
""", owner=owner, mode=mode)
    message = make_message(b"must reach the mailbox\n")
    deliver(root, "alice", message=message)
    [(_, stored)] = spool_messages(root)
    assert stored == harness.stored_form(message, ALICE_TO)
    assert not (root.home("alice") / "stolen").exists()
    assert any(str(rcfile) in line and "ignored" in line
               for line in rules_log(root)), root.log_lines()


def test_crlf_rcfile_works(root):
    setup_rules(root, """
FOLDER=crlf-folder
:0
* ^Subject: crlf rules$
$FOLDER
""", crlf=True)
    deliver(root, "alice", message=make_message(b"x\n", subject="crlf rules"))
    assert len(folder_messages(root.home("alice") / "crlf-folder")) == 1
    assert not root.mbox("alice").exists()


@pytest.mark.parametrize("how", ["-a", "plus"])
def test_extension_reaches_dollar_one(root, how):
    setup_rules(root, """
:0 c
| echo "[$1] [$#]" > $HOME/arg.txt
ARG=$1
:0
* ARG ?? ^^tag^^
tagged
""")
    if how == "-a":
        deliver(root, "-a", "tag", "alice", message=make_message(b"x\n"))
    else:
        deliver(root, "alice+tag", message=make_message(
            b"x\n", to=f"alice+tag@{HOSTNAME}"))
    assert (root.home("alice") / "arg.txt").read_text() == "[tag] [1]\n"
    assert len(folder_messages(root.home("alice") / "tagged")) == 1


def test_pipe_runs_as_the_user_without_the_mail_group(root):
    setup_rules(root, """
:0
| (id -u; id -g; id -G) > $HOME/ids.txt
""")
    deliver(root, "alice", message=make_message(b"x\n"))
    uid, gid, groups = (root.home("alice") / "ids.txt").read_text() \
        .splitlines()
    assert (int(uid), int(gid)) == (ALICE, ALICE)
    assert [int(g) for g in groups.split()] == [ALICE]
    assert MAIL_GID not in [int(g) for g in groups.split()]
    assert owner_of(root.home("alice") / "ids.txt") == (ALICE, ALICE)


# -- ATTACHMENT_TYPES and libmagic --------------------------------------------


def windows_executable():
    """A minimal PE32 image: DOS header ("MZ", e_lfanew), PE signature,
    COFF header, optional header. libmagic calls it a PE executable."""
    mz = bytearray(128)
    mz[0:2] = b"MZ"
    struct.pack_into("<HHHH", mz, 2, 0x90, 3, 0, 4)
    struct.pack_into("<H", mz, 0x18, 0x40)
    struct.pack_into("<I", mz, 0x3C, len(mz))
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0,
                                   0x102)
    optional = bytearray(0xE0)
    struct.pack_into("<H", optional, 0, 0x10B)
    struct.pack_into("<H", optional, 68, 2)
    return bytes(mz) + coff + bytes(optional) + b"\0" * 256


EXE_TYPES = ("application/x-dosexec",
             "application/vnd.microsoft.portable-executable")


def disguised_exe_message():
    exe = base64.encodebytes(windows_executable())
    body = (b"--b1\n"
            b"Content-Type: text/plain; charset=us-ascii\n\n"
            b"Please see the attached invoice.\n\n"
            b"--b1\n"
            b"Content-Type: text/plain; name=\"invoice.txt\"\n"
            b"Content-Disposition: attachment; filename=\"invoice.txt\"\n"
            b"Content-Transfer-Encoding: base64\n\n" + exe +
            b"\n--b1--\n")
    return make_message(body, subject="invoice", extra_headers=[
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b1"'])


def libmagic_type(root, data):
    path = root.path / "sample.bin"
    path.write_bytes(data)
    out = subprocess.run(["file", "--brief", "--mime-type", str(path)],
                         capture_output=True, text=True)
    return out.stdout.strip()


def test_attachment_types_catches_a_disguised_windows_executable(root):
    if not shutil.which("file"):
        pytest.skip("file(1) is not installed")
    kind = libmagic_type(root, windows_executable())
    assert kind in EXE_TYPES, f"libmagic calls the test PE {kind!r}"
    setup_rules(root, r"""
:0 c
| echo "$ATTACHMENT_TYPES" > $HOME/types.txt
:0
* ATTACHMENT_TYPES ?? ^application/(x-dosexec|vnd\.microsoft\.portable-executable)$
quarantine
""")
    deliver(root, "alice", message=disguised_exe_message())
    types = (root.home("alice") / "types.txt").read_text().split()
    assert kind in types, types
    assert "text/plain" in types, types      # the real text part
    [(_, stored)] = folder_messages(root.home("alice") / "quarantine")
    assert b"invoice.txt" in stored
    assert not root.mbox("alice").exists()

    # a plain text attachment with the same labels is not caught
    (root.home("alice") / "quarantine").unlink()
    plain = disguised_exe_message().replace(
        base64.encodebytes(windows_executable()),
        base64.encodebytes(b"just text, honestly\n" * 10))
    deliver(root, "alice", message=plain)
    assert len(spool_messages(root)) == 1
    assert not (root.home("alice") / "quarantine").exists()


def strace_deliver(root, message, *args):
    """Runs deliver under strace -f -e trace=openat; returns the trace."""
    trace = root.path / "strace.out"
    argv = ["strace", "-f", "-qq", "-e", "trace=openat,open", "-o",
            str(trace), *root.command("-f", SENDER, *args)]
    proc = subprocess.run(argv, input=message, capture_output=True,
                          env=root.env(), timeout=120, cwd=root.path)
    stderr = proc.stderr.decode("utf-8", "replace")
    if not trace.exists():
        pytest.skip(f"strace cannot trace here: {stderr.strip()}")
    check_sanitizer(stderr)
    assert proc.returncode == EX_OK, (stderr, root.log_lines())
    return trace.read_text()


def test_libmagic_is_loaded_only_for_attachment_types(root):
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    setup_rules(root, """
:0 c
| cat > /dev/null
:0 B
* invoice
invoices
""")
    trace = strace_deliver(root, disguised_exe_message(), "alice")
    assert "libmagic" not in trace
    assert "magic.mgc" not in trace
    assert len(folder_messages(root.home("alice") / "invoices")) == 1

    # the control: the same run with ATTACHMENT_TYPES does open it, so the
    # trace would have shown it
    setup_rules(root, """
:0
* ATTACHMENT_TYPES ?? ^application/
typed
""")
    trace = strace_deliver(root, disguised_exe_message(), "alice")
    assert re.search(r"libmagic\.so[.\d]*\"", trace), \
        "libmagic not opened although the rcfile reads ATTACHMENT_TYPES"
    assert len(folder_messages(root.home("alice") / "typed")) == 1
