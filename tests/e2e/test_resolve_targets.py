"""End-to-end tests of the destinations recipient resolution leads to
besides mailboxes: commands ("|command"), files (/path), remote addresses
(handed to sendmail_path), the owner-NAME envelope sender of lists, and a
real mailing list manager (mlmmj) behind an alias.

Each test runs in its own ResolveRoot (see resolve_env.py), removed
afterwards. Commands record what they saw in the root's world-writable
out/ directory.
"""

import os
import stat
import time

import pytest

from harness import (EX_NOPERM, EX_NOUSER, EX_OK, EX_TEMPFAIL, FROM_LINE,
                     HOSTNAME, SENDER, make_message, read_mbox, stored_form)
from resolve_env import (log_entries, messages, pid_alive, rroot, send,
                         subjects, wait_for)

EX_UNAVAILABLE = 69
MLMMJ_RECEIVE = "/usr/bin/mlmmj-receive"

assert rroot  # the fixture, imported for pytest


def parse_env(text):
    env = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            env[name] = value
    return env


def entries_for(root, to):
    return [e for e in log_entries(root) if e["to"] == to]


# -- 6. commands ------------------------------------------------------------------

@pytest.mark.parametrize("owner", ["root", "dave"])
def test_command_runs_as_alias_file_owner_or_default_privs(rroot, owner):
    out = rroot.out
    rroot.write_aliases(f'hook: "|id -u > {out}/uid; id -g > {out}/gid; '
                        f'id -G > {out}/groups"\n', owner=owner)
    runner = "nobody" if owner == "root" else owner
    uid = rroot.uid(runner)

    result, _ = send(rroot, "hook", subject="runner")

    assert result.code == EX_OK, result
    assert int(rroot.note("uid")) == uid
    assert int(rroot.note("gid")) == uid  # each test user's own group
    assert rroot.note("groups").split() == [str(uid)]
    [entry] = entries_for(rroot, f"|id -u > {out}/uid; id -g > {out}/gid; "
                                 f"id -G > {out}/groups")
    assert entry["mailer"] == "prog" and entry["dsn"] == "2.0.0"
    assert entry["ids"] == f"{uid}/{uid}"


def test_default_privs_names_who_commands_of_root_run_as(rroot):
    rroot.write_aliases(f'hook: "|id -u > {rroot.out}/uid"\n')
    rroot.set_conf("default_privs = carol")

    result, _ = send(rroot, "hook", subject="carol runs it")

    assert result.code == EX_OK, result
    assert int(rroot.note("uid")) == rroot.uid("carol")


@pytest.mark.parametrize("privs", ["root", "no-such-user"])
def test_command_never_runs_as_root(rroot, privs):
    marker = rroot.out / "ran"
    rroot.write_aliases(f'hook: "|id -u > {marker}", bob\n')
    rroot.set_conf(f"default_privs = {privs}")

    result, _ = send(rroot, "hook", subject="never root")

    time.sleep(0.2)
    assert not marker.exists()
    assert result.code != EX_OK, result
    # Not a bounce: the administrator has to fix default_privs.
    [entry] = entries_for(rroot, "hook")
    assert entry["dsn"].startswith("4."), entry


def test_command_environment_and_input(rroot):
    out = rroot.out
    rroot.write_aliases(f'hook: "|env > {out}/env; cat > {out}/stdin"\n')
    message = make_message(b"Hello, command.\n", subject="env",
                           to=f"hook+Tag.1@{HOSTNAME}")
    recipient = f"hook+Tag.1@{HOSTNAME}"

    result = rroot.run("-f", SENDER, recipient, message=message)

    assert result.code == EX_OK, result
    env = parse_env(rroot.note("env"))
    nobody = {"HOME": "/nonexistent", "USER": "nobody",
              "LOGNAME": "nobody"}
    for name, value in {**nobody, "SHELL": "/bin/sh", "SENDER": SENDER,
                        "RECIPIENT": recipient, "EXTENSION": "Tag.1",
                        "LOCAL": "hook+Tag.1", "DOMAIN": HOSTNAME}.items():
        assert env.get(name) == value, (name, env)
    assert env["PATH"].split(":")[0].startswith("/")
    # Nothing of deliver's own environment leaks into the command.
    for name in ("LD_PRELOAD", "NSS_WRAPPER_PASSWD", "ASAN_OPTIONS",
                 "UBSAN_OPTIONS"):
        assert name not in env
    stdin = (out / "stdin").read_bytes()
    from_line, _, rest = stdin.partition(b"\n")
    match = FROM_LINE.match(from_line.decode())
    assert match and match.group(1) == SENDER, from_line
    assert rest == stored_form(message, recipient)


def test_command_without_extension_has_no_extension_variable(rroot):
    rroot.write_aliases(f'hook: "|env > {rroot.out}/env"\n')

    result, _ = send(rroot, "hook", subject="no ext")

    assert result.code == EX_OK, result
    env = parse_env(rroot.note("env"))
    assert "EXTENSION" not in env or env["EXTENSION"] == ""
    assert env["RECIPIENT"] == f"hook@{HOSTNAME}"


@pytest.mark.parametrize("script,exit_code,dsn_class", [
    ("exit 75", EX_TEMPFAIL, "4"),
    ("exit 71", EX_TEMPFAIL, "4"),
    ("echo no such mailbox; exit 67", EX_NOUSER, "5"),
    ("echo something broke >&2; exit 1", EX_UNAVAILABLE, "5"),
    ("kill -9 $$", EX_TEMPFAIL, "4"),
])
def test_command_exit_status_mapping(rroot, script, exit_code, dsn_class):
    rroot.write_aliases(f'hook: "|{script}"\n')

    result, _ = send(rroot, "hook", subject="exit mapping")

    assert result.code == exit_code, result
    [entry] = entries_for(rroot, f"|{script}")
    assert entry["dsn"].startswith(dsn_class + "."), entry
    if exit_code == EX_NOUSER:
        assert entry["dsn"] == "5.1.1"
    if "echo" in script:
        said = script.split("echo ", 1)[1].split(";")[0].split(" >&2")[0]
        assert said in entry["stat"], entry
        assert said in result.stderr


@pytest.mark.parametrize("printed,status,exit_code,dsn", [
    ("5.2.2 mailbox full", 1, EX_UNAVAILABLE, "5.2.2"),
    ("4.2.2 over quota", 75, EX_TEMPFAIL, "4.2.2"),
    # The class follows the exit status, the detail the output.
    ("4.2.2 over quota", 1, EX_UNAVAILABLE, "5.2.2"),
    ("5.7.1 not you", 75, EX_TEMPFAIL, "4.7.1"),
])
def test_command_enhanced_status_code_is_used(rroot, printed, status,
                                              exit_code, dsn):
    script = f"echo {printed}; exit {status}"
    rroot.write_aliases(f'hook: "|{script}"\n')

    result, _ = send(rroot, "hook", subject="enhanced")

    assert result.code == exit_code, result
    [entry] = entries_for(rroot, f"|{script}")
    assert entry["dsn"] == dsn, entry
    assert printed in entry["stat"]


def test_command_time_limit_kills_the_whole_process_group(rroot):
    out = rroot.out
    limit = 2
    rroot.set_conf(f"command_time_limit = {limit}s")
    rroot.write_aliases(
        f'slow: "|sleep 300 & echo $! > {out}/bg.pid; echo $$ > '
        f'{out}/sh.pid; sleep 300"\n')

    started = time.monotonic()
    result, _ = send(rroot, "slow", subject="slow")
    elapsed = time.monotonic() - started

    assert result.code == EX_TEMPFAIL, result
    assert limit <= elapsed < limit + 20, elapsed
    pids = [int(rroot.note(name)) for name in ("bg.pid", "sh.pid")]
    try:
        assert wait_for(lambda: not any(map(pid_alive, pids)), timeout=5), \
            [p for p in pids if pid_alive(p)]
    finally:
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, 9)
    [entry] = entries_for(rroot, f"|sleep 300 & echo $! > {out}/bg.pid; "
                                 f"echo $$ > {out}/sh.pid; sleep 300")
    assert entry["dsn"].startswith("4."), entry
    assert "timed out" in entry["stat"]


def test_command_that_does_not_read_its_input_succeeds(rroot):
    rroot.write_aliases('hook: "|exit 0"\n')
    body = b"x" * 1000 + b"\n"

    result, _ = send(rroot, "hook", subject="unread",
                     body=body * 300)

    assert result.code == EX_OK, result


def test_forward_command_runs_as_the_user(rroot):
    out = rroot.out
    rroot.write_forward("alice", f'"|id -u > {out}/fwd-uid; '
                                 f'echo $HOME > {out}/fwd-home"\n')

    result, _ = send(rroot, "alice", subject="fwd cmd")

    assert result.code == EX_OK, result
    assert int(rroot.note("fwd-uid")) == rroot.uid("alice")
    assert rroot.note("fwd-home").strip() == str(rroot.home("alice"))
    assert not rroot.mbox("alice").exists()


def test_commands_refused_from_forward_when_not_allowed(rroot):
    marker = rroot.out / "fwd-ran"
    rroot.set_conf("allow_mail_to_commands = alias")
    rroot.write_forward("alice", f'"|touch {marker}"\n')
    rroot.write_aliases(f'hook: "|touch {rroot.out}/alias-ran"\n')

    result, _ = send(rroot, "alice", subject="fwd refused")
    allowed, _ = send(rroot, "hook", subject="alias allowed")

    assert result.code == EX_NOPERM, result
    time.sleep(0.2)
    assert not marker.exists()
    assert [e["dsn"] for e in entries_for(rroot, "alice")] == ["5.7.1"]
    assert allowed.code == EX_OK, allowed
    assert (rroot.out / "alias-ran").exists()


# -- 7. files ----------------------------------------------------------------------

@pytest.mark.parametrize("owner", ["root", "dave"])
def test_file_destination_is_an_mbox_written_as_the_runner(rroot, owner):
    target = rroot.out / "archive.mbox"
    rroot.write_aliases(f"archive: {target}\n", owner=owner)
    runner = "nobody" if owner == "root" else owner

    first, m1 = send(rroot, "archive", subject="first")
    second, m2 = send(rroot, f"archive+x@{HOSTNAME}", subject="second")

    assert (first.code, second.code) == (EX_OK, EX_OK), (first, second)
    st = target.stat()
    assert st.st_uid == rroot.uid(runner)
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0
    stored = read_mbox(target)
    assert [raw for _, raw in stored] == [
        stored_form(m1, f"archive@{HOSTNAME}"),
        stored_form(m2, f"archive+x@{HOSTNAME}")]
    assert all(from_.startswith(SENDER + " ") for from_, _ in stored)
    [e1, e2] = entries_for(rroot, str(target))
    assert e1["mailer"] == "*file*" and e1["dsn"] == "2.0.0"


def test_file_the_runner_may_not_write_is_not_written(rroot):
    # A root-owned file: only root could append, and files are never
    # written as root from a root-owned aliases file.
    target = rroot.out / "root-only.mbox"
    target.write_bytes(b"")
    os.chmod(target, 0o644)
    rroot.write_aliases(f"archive: {target}\n")

    result, _ = send(rroot, "archive", subject="no write")

    assert result.code != EX_OK, result
    assert target.read_bytes() == b""


def test_dev_null_swallows(rroot):
    rroot.write_aliases("complaints: /dev/null\n")
    assert rroot.newaliases().code == EX_OK
    before = rroot.snapshot(exclude=("maillog",))

    result, _ = send(rroot, "complaints", subject="complaint")

    assert result.code == EX_OK, result
    assert rroot.snapshot(exclude=("maillog",)) == before
    [entry] = entries_for(rroot, "/dev/null")
    assert entry["dsn"] == "2.0.0"


def test_forward_file_written_as_the_user(rroot):
    target = rroot.home("alice") / "saved.mbox"
    rroot.write_forward("alice", f"{target}\n")

    result, message = send(rroot, "alice", subject="saved")

    assert result.code == EX_OK, result
    assert target.stat().st_uid == rroot.uid("alice")
    assert [raw for _, raw in read_mbox(target)] == \
        [stored_form(message, f"alice@{HOSTNAME}")]
    assert not rroot.mbox("alice").exists()


def test_files_refused_from_forward_when_not_allowed(rroot):
    target = rroot.home("alice") / "saved.mbox"
    rroot.set_conf("allow_mail_to_files = alias")
    rroot.write_forward("alice", f"{target}\n")

    result, _ = send(rroot, "alice", subject="file refused")

    assert result.code == EX_NOPERM, result
    assert not target.exists()
    assert not rroot.mbox("alice").exists()
    assert [e["dsn"] for e in entries_for(rroot, "alice")] == ["5.7.1"]


# -- remote addresses ---------------------------------------------------------------

def check_relayed(root, call, sender, address, message, recipient):
    assert call["argv"] == ["-oi", "-f", sender, "--", address]
    assert call["uid"] == root.uid("nobody")
    relayed = call["message"]
    assert not relayed.startswith(b"From ")
    assert b"\nReturn-Path:" not in b"\n" + relayed.split(b"\n\n")[0]
    assert relayed == b"Delivered-To: %s\n" % recipient.encode() + message


def test_alias_to_remote_address_goes_to_sendmail(rroot):
    rroot.install_relay_stub()
    rroot.write_aliases("fwd: friend@remote.example, bob\n")

    result, message = send(rroot, "fwd", subject="relay")

    assert result.code == EX_OK, result
    [call] = rroot.relay_calls()
    check_relayed(rroot, call, SENDER, "friend@remote.example", message,
                  f"fwd@{HOSTNAME}")
    assert subjects(rroot, "bob") == ["relay"]
    [entry] = entries_for(rroot, "friend@remote.example")
    assert entry["mailer"] == "relay" and entry["dsn"] == "2.0.0"


def test_forward_to_remote_address_keeps_the_original_sender(rroot):
    rroot.install_relay_stub()
    rroot.write_forward("alice", "alice.elsewhere@remote.example\n\\alice\n")
    sender = "original@sender.example"

    result, message = send(rroot, "alice", subject="fwd relay",
                           sender=sender)

    assert result.code == EX_OK, result
    [call] = rroot.relay_calls()
    check_relayed(rroot, call, sender, "alice.elsewhere@remote.example",
                  message, f"alice@{HOSTNAME}")
    assert subjects(rroot, "alice") == ["fwd relay"]


@pytest.mark.parametrize("address,sender", [
    ("o'brien@remote.example", SENDER),
    ("friend@remote.example", "o'brien@irish.example"),
    ("it's$(touch${IFS}{pwned})`touch {pwned}`@remote.example",
     "x';touch {pwned};'@sender.example"),
])
def test_remote_address_and_sender_reach_sendmail_verbatim(rroot, address,
                                                           sender):
    """An apostrophe is valid in an address; the shell that starts
    sendmail_path must neither refuse it nor run what follows it."""
    pwned = rroot.out / "pwned"
    address = address.replace("{pwned}", str(pwned))
    sender = sender.replace("{pwned}", str(pwned))
    rroot.install_relay_stub()
    rroot.write_aliases("fwd: " + address + "\n")

    result, message = send(rroot, "fwd", subject="verbatim", sender=sender)

    assert result.code == EX_OK, result
    [call] = rroot.relay_calls()
    check_relayed(rroot, call, sender, rfc5321_form(address), message,
                  f"fwd@{HOSTNAME}")
    assert not pwned.exists()


def rfc5321_form(address):
    """The address as it is handed on: a local part that is not a
    dot-string (blanks, parentheses...) is quoted, as RFC 5321 writes it."""
    local, _, domain = address.rpartition("@")
    atext = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789!#$%&'*+-/=?^_`{|}~")
    words = local.split(".")
    if all(words) and all(set(w) <= atext for w in words):
        return address
    quoted = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"@{domain}'


def test_failing_sendmail_defers(rroot):
    rroot.install_relay_stub()
    stub = rroot.path / "relay" / "sendmail"
    stub.write_text("#!/bin/sh\ncat >/dev/null\nexit 75\n")
    rroot.write_aliases("fwd: friend@remote.example\n")

    result, _ = send(rroot, "fwd", subject="relay fails")

    assert result.code == EX_TEMPFAIL, result


# -- owner-NAME ------------------------------------------------------------------

@pytest.mark.parametrize("sender", [SENDER, ""])
def test_owner_alias_becomes_the_envelope_sender(rroot, sender):
    rroot.install_relay_stub()
    rroot.write_aliases("mylist: alice, member@remote.example\n"
                        "owner-mylist: bob\n")
    owner = f"owner-mylist@{HOSTNAME}"
    # The null sender (a bounce) stays null: no bounce of a bounce.
    expected = owner if sender else ""

    result, message = send(rroot, "mylist", subject="list post",
                           sender=sender or "<>")

    assert result.code == EX_OK, result
    [(from_, msg)] = messages(rroot, "alice")
    assert from_ == (expected or "MAILER-DAEMON")
    assert msg.get_all("Return-Path") == [f"<{expected}>"]
    [call] = rroot.relay_calls()
    assert call["argv"] == ["-oi", "-f", expected, "--",
                            "member@remote.example"]
    assert subjects(rroot, "bob") == []


def test_without_owner_alias_the_sender_is_kept(rroot):
    rroot.write_aliases("mylist: alice\n")

    result, _ = send(rroot, "mylist", subject="no owner")

    assert result.code == EX_OK, result
    [(from_, msg)] = messages(rroot, "alice")
    assert from_ == SENDER
    assert msg.get_all("Return-Path") == [f"<{SENDER}>"]


# -- 10. a mailing list manager ------------------------------------------------------

MLMMJ_DIRS = ("incoming queue queue/discarded archive text subconf unsubconf "
              "bounce control moderation subscribers.d digesters.d requeue "
              "nomailsubs.d").split()


@pytest.mark.skipif(not os.access(MLMMJ_RECEIVE, os.X_OK),
                    reason="mlmmj is not installed")
def test_mlmmj_list_post_is_archived(rroot):
    owner = rroot.uid("listowner")
    listdir = rroot.home("listowner") / "mylist"
    for name in MLMMJ_DIRS:
        (listdir / name).mkdir(parents=True, exist_ok=True)
    (listdir / "control" / "listaddress").write_text(
        f"mylist@{HOSTNAME}\n")
    for path in [listdir, *listdir.rglob("*")]:
        os.chown(path, owner, owner)
    list_aliases = rroot.path / "list-aliases"
    rroot.write_aliases(f'mylist: "|{MLMMJ_RECEIVE} -L {listdir}"\n',
                        owner="listowner", path=list_aliases)
    rroot.write_aliases("postmaster: alice\n")
    rroot.set_conf(f"aliases = aliases, {list_aliases.name}")
    body = b"A first post to the list.\n"

    result, message = send(rroot, "mylist", subject="first post",
                           to=f"mylist@{HOSTNAME}", body=body)

    assert result.code == EX_OK, result
    [entry] = entries_for(rroot, f"|{MLMMJ_RECEIVE} -L {listdir}")
    assert entry["ids"] == f"{owner}/{owner}"
    archive = listdir / "archive"
    archived = wait_for(lambda: sorted(archive.iterdir()), timeout=15)
    assert archived, sorted(p.name for p in listdir.rglob("*"))
    assert archived[0].name == "1"
    stored = archived[0].read_bytes()
    assert b"Subject: first post" in stored
    assert stored.endswith(body)
    assert archived[0].stat().st_uid == owner
    # Nothing was left behind in the incoming queue.
    assert wait_for(lambda: not list((listdir / "incoming").iterdir()),
                    timeout=10)

