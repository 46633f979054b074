"""End-to-end tests of recipient resolution in deliver: the aliases files
and their compiled form (newaliases, praliases), the order of precedence
virtusertable > aliases > ~/.forward > mailbox, extensions, ~/.forward and
its safety checks, :include: files, addresses a sender types, loops,
duplicates and `deliver -V`.

Commands, files, remote forwarding and mailing lists are in
test_resolve_targets.py. Each test runs in its own ResolveRoot (see
resolve_env.py), removed afterwards.
"""

import os
import subprocess
import time

import pytest

from harness import (EX_CONFIG, EX_NOPERM, EX_NOUSER, EX_OK, EX_TEMPFAIL,
                     HOSTNAME, SENDER, make_message, read_mbox)
from resolve_env import (VIRTUAL_DOMAIN, log_entries, messages,
                         parse_aliases_text, read_cdb, rroot, send,
                         subjects)

EX_UNAVAILABLE = 69
USERS4 = ("alice", "bob", "carol", "dave")

assert rroot  # the fixture, imported for pytest


def who_got(root, subject, users=USERS4):
    """The users whose mailbox holds a message with this subject, with
    the number of copies each."""
    got = {}
    for user in users:
        n = subjects(root, user).count(subject)
        if n:
            got[user] = n
    return got


def only_headers(msg, name):
    return msg.get_all(name) or []


# -- 1. aliases files, newaliases, praliases ---------------------------------

ALIASES_TEXT = """\
# The administrator's aliases.
postmaster: alice
Team: bob,
  carol,
\tdave
# a comment between entries: x: nobody-should-see-this
abuse:  alice ,bob
list-with-comment: carol,
# a comment inside a continued entry
  dave
"""


def test_newaliases_reports_counts_and_writes_the_db(rroot):
    rroot.write_aliases(ALIASES_TEXT)
    expected = parse_aliases_text(ALIASES_TEXT)
    values = {name: ",".join(dests) for name, dests in expected.items()}

    out = rroot.newaliases()

    assert out.code == EX_OK, out
    assert out.stdout == (
        f"{rroot.aliases}: {len(values)} aliases, longest "
        f"{max(map(len, values.values()))} bytes, "
        f"{sum(map(len, values.values()))} bytes total\n")
    db = read_cdb(str(rroot.aliases) + ".db")
    assert db == {k.encode(): v.encode() for k, v in values.items()}
    # The comment's pretend entry is not an alias.
    assert b"x" not in db
    # No temporary file is left beside it.
    assert sorted(p.name for p in rroot.path.glob("aliases*")) == \
        ["aliases", "aliases.db"]


def test_duplicate_alias_names_last_one_counts_with_a_warning(rroot):
    text = "help: bob\nother: alice\nHELP: carol\n"
    rroot.write_aliases(text)
    names = parse_aliases_text(text)  # later lines replace earlier ones

    out = rroot.newaliases()
    listing = rroot.praliases("help")
    result, _ = send(rroot, "help", subject="dup name")

    assert out.code == EX_OK, out
    assert str(rroot.aliases) in out.stderr and "duplicate" in out.stderr
    assert out.stdout.startswith(f"{rroot.aliases}: {len(names)} aliases,")
    assert listing.stdout.splitlines() == [f"help:{names['help'][0]}"]
    assert result.code == EX_OK, result
    assert who_got(rroot, "dup name") == {names["help"][0]: 1}


def test_deliver_uses_the_db_when_the_text_is_gone(rroot):
    rroot.write_aliases("helpdesk: carol\n")
    assert rroot.newaliases().code == EX_OK
    rroot.aliases.unlink()

    result, _ = send(rroot, "helpdesk", subject="via db")

    assert result.code == EX_OK, result
    assert who_got(rroot, "via db") == {"carol": 1}


def test_praliases_prints_all_and_by_name(rroot):
    rroot.write_aliases(ALIASES_TEXT)
    assert rroot.newaliases().code == EX_OK
    expected = {name: ",".join(dests)
                for name, dests in parse_aliases_text(ALIASES_TEXT).items()}

    everything = rroot.praliases()
    by_name = rroot.praliases("team", "no-such-alias", "abuse")

    assert everything.code == EX_OK, everything
    assert sorted(everything.stdout.splitlines()) == \
        sorted(f"{k}:{v}" for k, v in expected.items())
    assert by_name.stdout.splitlines() == [
        f"team:{expected['team']}", "no-such-alias: No such key",
        f"abuse:{expected['abuse']}"]


def test_continuation_lines_and_comments_deliver_to_every_member(rroot):
    rroot.write_aliases(ALIASES_TEXT)
    members = parse_aliases_text(ALIASES_TEXT)

    result, _ = send(rroot, "team", subject="to team")
    result2, _ = send(rroot, "list-with-comment", subject="to list")

    assert result.code == EX_OK and result2.code == EX_OK, (result, result2)
    assert who_got(rroot, "to team") == {u: 1 for u in members["team"]}
    assert who_got(rroot, "to list") == \
        {u: 1 for u in members["list-with-comment"]}


@pytest.mark.parametrize("typed", ["TEAM", "tEaM@TEST.EXAMPLE",
                                   "<Team@test.example>"])
def test_alias_names_match_in_any_case(rroot, typed):
    rroot.write_aliases("Team: bob, carol\n")

    result, _ = send(rroot, typed, subject="any case")

    assert result.code == EX_OK, result
    assert who_got(rroot, "any case") == {"bob": 1, "carol": 1}


def test_syntax_error_names_file_and_line(rroot):
    text = "postmaster: alice\n# fine\nthis line has no colon\nabuse: bob\n"
    rroot.write_aliases(text)
    bad_line = text.splitlines().index("this line has no colon") + 1

    out = rroot.newaliases()
    listing = rroot.praliases()
    result, _ = send(rroot, "postmaster", subject="broken table")

    assert out.code == EX_CONFIG, out
    assert f"{rroot.aliases}:{bad_line}:" in out.stderr
    assert not (rroot.path / "aliases.db").exists()
    assert listing.code == EX_CONFIG and \
        f"{rroot.aliases}:{bad_line}:" in listing.stderr
    # deliver does not bounce mail for the administrator's typo: it waits
    # (75, which every MTA retries; 78 would bounce under sendmail).
    assert result.code == EX_TEMPFAIL, result
    assert f"{rroot.aliases}:{bad_line}:" in result.stderr
    assert who_got(rroot, "broken table") == {}
    [entry] = log_entries(rroot)
    assert entry["dsn"].startswith("4."), entry


def test_stale_db_is_not_used_and_deliver_rebuilds_it(rroot):
    rroot.write_aliases("sales: bob\n")
    assert rroot.newaliases().code == EX_OK
    db_path = rroot.path / "aliases.db"
    assert read_cdb(db_path) == {b"sales": b"bob"}
    # The administrator edits the text and forgets newaliases.
    now = time.time()
    os.utime(db_path, (now - 10, now - 10))
    rroot.aliases.write_text("sales: carol\n")
    os.utime(rroot.aliases, (now - 5, now - 5))

    result, _ = send(rroot, "sales", subject="after edit")

    assert result.code == EX_OK, result
    assert who_got(rroot, "after edit") == {"carol": 1}
    assert read_cdb(db_path) == {b"sales": b"carol"}
    assert db_path.stat().st_mtime > rroot.aliases.stat().st_mtime


def test_praliases_reads_the_text_of_a_stale_db_without_rewriting_it(rroot):
    rroot.write_aliases("sales: bob\n")
    assert rroot.newaliases().code == EX_OK
    db_path = rroot.path / "aliases.db"
    before = (db_path.read_bytes(), db_path.stat().st_mtime_ns)
    later = db_path.stat().st_mtime + 5
    rroot.aliases.write_text("sales: carol\n")
    os.utime(rroot.aliases, (later, later))

    out = rroot.praliases()

    assert out.stdout.splitlines() == ["sales:carol"]
    assert (db_path.read_bytes(), db_path.stat().st_mtime_ns) == before


def test_several_aliases_files_first_one_wins(rroot):
    second = rroot.path / "aliases2"
    rroot.write_aliases("shared: bob\nfirst-only: alice\n")
    rroot.write_aliases("shared: carol\nsecond-only: dave\n", path=second)
    rroot.set_conf(f"aliases = aliases, {second.name}")

    out = rroot.newaliases()
    r1, _ = send(rroot, "shared", subject="shared")
    r2, _ = send(rroot, "second-only", subject="second")
    r3, _ = send(rroot, "first-only", subject="first")

    assert out.code == EX_OK, out
    assert [line.split(":")[0] for line in out.stdout.splitlines()] == \
        [str(rroot.aliases), str(second)]
    assert (rroot.path / "aliases2.db").exists()
    assert (r1.code, r2.code, r3.code) == (EX_OK, EX_OK, EX_OK)
    assert who_got(rroot, "shared") == {"bob": 1}
    assert who_got(rroot, "second") == {"dave": 1}
    assert who_got(rroot, "first") == {"alice": 1}


def test_praliases_with_several_files_shows_what_is_in_force(rroot):
    second = rroot.path / "aliases2"
    first_text = "shared: bob\nfirst-only: alice\n"
    second_text = "shared: carol\nsecond-only: dave\n"
    rroot.write_aliases(first_text)
    rroot.write_aliases(second_text, path=second)
    rroot.set_conf(f"aliases = aliases, {second.name}")
    # The first file that has a name wins (as deliver resolves it).
    in_force = {**parse_aliases_text(second_text),
                **parse_aliases_text(first_text)}

    everything = rroot.praliases()
    by_name = rroot.praliases("shared", "first-only", "second-only", "none")

    assert everything.code == EX_OK, everything
    assert sorted(everything.stdout.splitlines()) == sorted(
        f"{k}:{','.join(v)}" for k, v in in_force.items())
    assert by_name.stdout.splitlines() == [
        f"shared:{','.join(in_force['shared'])}",
        f"first-only:{','.join(in_force['first-only'])}",
        f"second-only:{','.join(in_force['second-only'])}",
        "none: No such key"]
    result, _ = send(rroot, "shared", subject="in force")
    assert result.code == EX_OK, result
    assert who_got(rroot, "in force") == \
        {u: 1 for u in in_force["shared"]}


# -- 2. precedence: virtusertable > aliases > .forward > mailbox -------------

def test_virtusertable_beats_aliases(rroot):
    rroot.write_virtusertable(f"alice@{HOSTNAME} bob\n")
    rroot.write_aliases("alice: carol\n")

    result, _ = send(rroot, f"alice@{HOSTNAME}", subject="virt first")

    assert result.code == EX_OK, result
    assert who_got(rroot, "virt first") == {"bob": 1}


def test_alias_beats_forward(rroot):
    rroot.write_aliases("alice: bob\n")
    rroot.write_forward("alice", "carol\n")

    result, _ = send(rroot, "alice", subject="alias first")

    assert result.code == EX_OK, result
    assert who_got(rroot, "alias first") == {"bob": 1}


def test_forward_beats_mailbox(rroot):
    rroot.write_forward("alice", "carol\n")

    result, _ = send(rroot, "alice", subject="forward first")

    assert result.code == EX_OK, result
    assert who_got(rroot, "forward first") == {"carol": 1}
    assert not rroot.mbox("alice").exists()


def test_virtusertable_key_order_and_substitutions(rroot):
    d = VIRTUAL_DOMAIN
    rroot.write_virtusertable(
        f"alice+exact@{d} bob\n"
        f"alice++@{d} carol\n"
        f"alice@{d} dave\n"
        f"info@{d} %2\n"
        f"@{d} %1%3\n")
    rroot.write_aliases("bob+sales: carol\n")
    cases = [  # recipient, who gets it
        (f"alice+exact@{d}", "bob"),      # user+detail@domain
        (f"alice+other@{d}", "carol"),    # user++@domain
        (f"alice@{d}", "dave"),           # user@domain
        (f"info+bob@{d}", "bob"),         # %2: the detail
        (f"carol@{d}", "carol"),          # @domain with %1
        (f"bob+sales@{d}", "carol"),      # %1%3 keeps +detail: alias
        (f"bob+misc@{d}", "bob"),         # %1%3 -> bob+misc -> bob
    ]
    for recipient, user in cases:
        result, _ = send(rroot, recipient, subject=recipient)
        assert result.code == EX_OK, (recipient, result)
        assert who_got(rroot, recipient) == {user: 1}, recipient


@pytest.mark.parametrize("dsn,code,text,exit_code", [
    ("5.7.0", "550", "Invalid address", EX_UNAVAILABLE),
    ("5.1.1", "550", "No such person here", EX_NOUSER),
    ("4.2.1", "450", "Mailbox disabled for now", EX_TEMPFAIL),
])
def test_virtusertable_error_entry(rroot, dsn, code, text, exit_code):
    address = f"spam@{VIRTUAL_DOMAIN}"
    rroot.write_virtusertable(f"{address} error:{dsn}:{code} {text}\n"
                              f"@{VIRTUAL_DOMAIN} alice\n")

    result, _ = send(rroot, address, subject="error entry")

    assert result.code == exit_code, result
    assert who_got(rroot, "error entry") == {}
    [entry] = log_entries(rroot)
    assert entry["to"] == address
    assert entry["dsn"] == dsn
    assert text in entry["stat"]


def test_unknown_user_in_a_virtusertable_domain_is_67(rroot):
    rroot.write_virtusertable(f"alice@{VIRTUAL_DOMAIN} alice\n")
    rroot.install_relay_stub()

    result, _ = send(rroot, f"zed@{VIRTUAL_DOMAIN}", subject="nobody home")
    known, _ = send(rroot, f"alice@{VIRTUAL_DOMAIN}", subject="known")

    assert result.code == EX_NOUSER, result
    assert known.code == EX_OK, known
    assert who_got(rroot, "known") == {"alice": 1}
    # The domain is served here: nothing is relayed for it.
    assert rroot.relay_calls() == []
    assert [e["dsn"] for e in log_entries(rroot)
            if e["to"] == f"zed@{VIRTUAL_DOMAIN}"] == ["5.1.1"]


# -- 3. extensions --------------------------------------------------------------

def test_alias_with_extension_before_alias(rroot):
    rroot.write_aliases("team+urgent: carol\nteam: bob\n")

    r1, _ = send(rroot, "team+urgent", subject="urgent")
    r2, _ = send(rroot, f"team+later@{HOSTNAME}", subject="later")

    assert (r1.code, r2.code) == (EX_OK, EX_OK), (r1, r2)
    assert who_got(rroot, "urgent") == {"carol": 1}
    assert who_got(rroot, "later") == {"bob": 1}


def test_forward_with_extension_before_forward(rroot):
    rroot.write_forward("alice", "bob\n", name=".forward+lists")
    rroot.write_forward("alice", "carol\n")

    r1, _ = send(rroot, "alice+lists", subject="lists")
    r2, _ = send(rroot, "alice+misc", subject="misc")
    r3, _ = send(rroot, "alice", subject="plain")

    assert (r1.code, r2.code, r3.code) == (EX_OK, EX_OK, EX_OK)
    assert who_got(rroot, "lists") == {"bob": 1}
    assert who_got(rroot, "misc") == {"carol": 1}
    assert who_got(rroot, "plain") == {"carol": 1}


@pytest.mark.parametrize("delimiter", ["-", ""])
def test_recipient_delimiter(rroot, delimiter):
    rroot.set_conf(f"recipient_delimiter = {delimiter}")
    rroot.write_aliases("team-sales: carol\nteam: bob\n")

    dash, _ = send(rroot, "alice-news", subject="dash")
    plus, _ = send(rroot, "alice+news", subject="plus")
    alias, _ = send(rroot, "team-misc", subject="alias")

    # Only the configured delimiter separates an extension; with none,
    # alice-news and alice+news are names of their own (unknown here).
    if delimiter:
        assert (dash.code, plus.code, alias.code) == \
            (EX_OK, EX_NOUSER, EX_OK)
        assert who_got(rroot, "dash") == {"alice": 1}
        assert who_got(rroot, "alias") == {"bob": 1}
    else:
        assert (dash.code, plus.code, alias.code) == \
            (EX_NOUSER, EX_NOUSER, EX_NOUSER)
    assert who_got(rroot, "plus") == {}


@pytest.mark.parametrize("recipient,owner", [
    ("alice+News@test.example", "alice"),
    ("team+x@test.example", "bob"),
    ("alice+tag", "alice"),
])
def test_delivered_to_has_the_full_original_recipient(rroot, recipient,
                                                      owner):
    rroot.write_aliases("team: bob\n")

    result, _ = send(rroot, recipient, subject="dt")

    assert result.code == EX_OK, result
    [(_, msg)] = messages(rroot, owner)
    full = recipient if "@" in recipient else f"{recipient}@{HOSTNAME}"
    assert only_headers(msg, "Delivered-To") == [full]
    assert only_headers(msg, "Return-Path") == [f"<{SENDER}>"]


# -- 4. ~/.forward ---------------------------------------------------------------

@pytest.mark.parametrize("self_entry", ["\\alice", "alice"])
def test_forward_keeping_a_copy(rroot, self_entry):
    rroot.write_forward("alice", f"# keep a copy\nbob\n{self_entry}\n")

    result, _ = send(rroot, "alice", subject="copy")

    assert result.code == EX_OK, result
    assert who_got(rroot, "copy") == {"alice": 1, "bob": 1}
    [(_, msg)] = messages(rroot, "alice")
    assert only_headers(msg, "Delivered-To") == [f"alice@{HOSTNAME}"]


def test_backslash_user_stops_expansion_of_aliases(rroot):
    # \bob is bob's mailbox itself: neither his alias nor his .forward.
    rroot.write_aliases("bob: carol\n")
    rroot.write_forward("bob", "dave\n")
    rroot.write_forward("alice", "\\bob\n")

    result, _ = send(rroot, "alice", subject="backslash")

    assert result.code == EX_OK, result
    assert who_got(rroot, "backslash") == {"bob": 1}


def test_empty_forward_is_none(rroot):
    rroot.write_forward("alice", "# nothing here\n\n   \n")

    result, _ = send(rroot, "alice", subject="empty forward")

    assert result.code == EX_OK, result
    assert who_got(rroot, "empty forward") == {"alice": 1}


def make_unsafe(root, how):
    """Sets up alice's .forward (to bob) unsafely in the way named."""
    home = root.home("alice")
    if how == "symlink":
        target = root.write_forward("alice", "bob\n", name="forward-real")
        (home / ".forward").symlink_to(target)
        os.lchown(home / ".forward", root.uid("alice"), root.uid("alice"))
    elif how == "group-writable":
        root.write_forward("alice", "bob\n", mode=0o664)
    elif how == "world-writable":
        root.write_forward("alice", "bob\n", mode=0o646)
    elif how == "owned-by-another-user":
        root.write_forward("alice", "bob\n", owner="bob")
    elif how == "group-writable-home":
        root.write_forward("alice", "bob\n")
        os.chmod(home, 0o775)
    elif how == "world-writable-home":
        root.write_forward("alice", "bob\n")
        os.chmod(home, 0o757)
    elif how == "fifo":
        os.mkfifo(home / ".forward")
        os.chown(home / ".forward", root.uid("alice"), root.uid("alice"))
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", [
    "symlink", "group-writable", "world-writable", "owned-by-another-user",
    "group-writable-home", "world-writable-home", "fifo"])
def test_unsafe_forward_is_ignored_and_logged(rroot, how):
    make_unsafe(rroot, how)

    result, _ = send(rroot, "alice", subject="unsafe")

    assert result.code == EX_OK, result
    assert who_got(rroot, "unsafe") == {"alice": 1}
    ignored = [line for line in rroot.log_lines()
               if ".forward ignored" in line]
    assert len(ignored) == 1, rroot.log_lines()
    assert str(rroot.home("alice") / ".forward") in ignored[0]


def test_sticky_home_defers_delivery(rroot):
    rroot.write_forward("alice", "bob\n")
    os.chmod(rroot.home("alice"), 0o1755)

    result, _ = send(rroot, "alice", subject="sticky")

    assert result.code == EX_TEMPFAIL, result
    assert who_got(rroot, "sticky") == {}
    [entry] = log_entries(rroot)
    assert entry["dsn"].startswith("4.")


def test_root_owned_forward_is_accepted(rroot):
    # An administrator may install a user's .forward.
    path = rroot.home("alice") / ".forward"
    path.write_text("carol\n")
    os.chown(path, 0, 0)
    os.chmod(path, 0o644)

    result, _ = send(rroot, "alice", subject="root forward")

    assert result.code == EX_OK, result
    assert who_got(rroot, "root forward") == {"carol": 1}


def test_forward_unreadable_by_its_user_is_ignored(rroot):
    # It is read with alice's privileges: mode 0 keeps even her out.
    rroot.write_forward("alice", "bob\n", mode=0o000)

    result, _ = send(rroot, "alice", subject="unreadable")

    assert result.code == EX_OK, result
    assert who_got(rroot, "unreadable") == {"alice": 1}
    assert any(".forward ignored" in line for line in rroot.log_lines())


# -- 5. :include: ----------------------------------------------------------------

def write_include(root, text, owner=0, name="staff.list"):
    path = root.path / name
    path.write_text(text)
    os.chown(path, owner, owner)
    os.chmod(path, 0o644)
    return path


def test_include_members_are_delivered(rroot):
    path = write_include(rroot, "# the staff\nalice\nbob, carol\n\n")
    rroot.write_aliases(f"staff: :include:{path}\n")

    result, _ = send(rroot, "staff", subject="staff")

    assert result.code == EX_OK, result
    assert who_got(rroot, "staff") == {"alice": 1, "bob": 1, "carol": 1}


def test_missing_include_file_is_an_error(rroot):
    rroot.write_aliases(f"staff: :include:{rroot.path}/no-such.list, bob\n")

    result, _ = send(rroot, "staff", subject="missing include")

    assert result.code != EX_OK, result
    assert who_got(rroot, "missing include") == {"bob": 1}


def test_commands_and_files_in_include_refused_by_default(rroot):
    marker = rroot.out / "include-command-ran"
    mbox = rroot.out / "include.mbox"
    path = write_include(rroot, f'alice\n"|touch {marker}"\n{mbox}\n')
    rroot.write_aliases(f"staff: :include:{path}\n")

    result, _ = send(rroot, "staff", subject="include refused")

    assert result.code == EX_NOPERM, result
    assert who_got(rroot, "include refused") == {"alice": 1}
    time.sleep(0.2)
    assert not marker.exists()
    assert not mbox.exists()
    refused = [e for e in log_entries(rroot) if e["to"] == "staff"]
    assert sorted(e["dsn"] for e in refused) == ["5.7.1", "5.7.1"], refused


def test_commands_and_files_in_include_allowed_when_configured(rroot):
    marker = rroot.out / "include-command-uid"
    mbox = rroot.out / "include.mbox"
    path = write_include(rroot, f'alice\n"|id -u > {marker}"\n{mbox}\n')
    rroot.write_aliases(f"staff: :include:{path}\n")
    rroot.set_conf("allow_mail_to_commands = alias, forward, include",
                   "allow_mail_to_files = alias, forward, include")

    result, _ = send(rroot, "staff", subject="include allowed")

    assert result.code == EX_OK, result
    assert who_got(rroot, "include allowed") == {"alice": 1}
    # A root-owned include file: its commands and files run as
    # default_privs.
    assert marker.read_text().strip() == str(rroot.uid("nobody"))
    assert mbox.stat().st_uid == rroot.uid("nobody")
    [(_, stored)] = read_mbox(mbox)
    assert b"Subject: include allowed" in stored


def test_include_of_a_user_owned_alias_file_runs_as_that_user(rroot):
    marker = rroot.out / "include-owner-uid"
    path = write_include(rroot, f'"|id -u > {marker}"\n',
                         owner=rroot.uid("dave"))
    rroot.write_aliases(f"staff: :include:{path}\n", owner="dave")
    rroot.set_conf("allow_mail_to_commands = alias, forward, include")

    result, _ = send(rroot, "staff", subject="dave include")

    assert result.code == EX_OK, result
    assert marker.read_text().strip() == str(rroot.uid("dave"))


def test_include_loop_is_a_bounce(rroot):
    one = rroot.path / "one.list"
    two = rroot.path / "two.list"
    write_include(rroot, f":include:{two}\nalice\n", name="one.list")
    write_include(rroot, f":include:{one}\n", name="two.list")
    rroot.write_aliases(f"staff: :include:{one}\n")

    result, _ = send(rroot, "staff", subject="include loop")

    assert result.code == EX_UNAVAILABLE, result
    assert who_got(rroot, "include loop") == {"alice": 1}
    assert [e["dsn"] for e in log_entries(rroot) if e["to"] == "staff"] \
        == ["5.4.6"]


# -- 8. addresses a sender types ---------------------------------------------

HOSTILE = {  # id: a recipient as a sender might type it
    "quoted-pipe": '"|touch {pwned}"@{host}',
    "quoted-pipe-bare": '"|touch {pwned}"',
    "unquoted-pipe": "|touch${{IFS}}{pwned}@{host}",
    "path": "{pwned}",
    "quoted-path": '"{pwned}"@{host}',
    "include": ":include:{out}/list@{host}",
    "quoted-include": '":include:{out}/list"@{host}',
    "dotdot": "../alice",
    "slash": "alice/../bob@{host}",
    "dash": "-alice",
    "dash-option": "-oQ{out}@{host}",
    "dot": ".alice",
}


@pytest.mark.parametrize("key", sorted(HOSTILE))
def test_no_command_or_file_from_a_typed_address(rroot, key):
    recipient = HOSTILE[key].format(pwned=rroot.out / "pwned",
                                    out=rroot.out, host=HOSTNAME)
    (rroot.out / "list").write_text(f'"|touch {rroot.out}/pwned"\n')
    rroot.install_relay_stub()
    before = rroot.snapshot(exclude=("maillog", "out/list"))

    result, _ = send(rroot, "--", recipient, subject="hostile")

    assert result.code == EX_NOUSER, (recipient, result)
    time.sleep(0.1)
    assert not (rroot.out / "pwned").exists()
    assert rroot.snapshot(exclude=("maillog", "out/list")) == before
    assert rroot.relay_calls() == []


@pytest.mark.parametrize("table,recipient", [
    ("@{d} %1", '"|touch {pwned}"@{d}'),
    ("@{d} %1", "|touch${{IFS}}{pwned}@{d}"),
    ("@{d} %1", '"{pwned}"@{d}'),
    ("@{d} %1", '"alice,{pwned}"@{d}'),
    ("@{d} %1", '":include:{out}/list"@{d}'),
    ("@{d} alice%3", '"alice+x,{pwned}"@{d}'),
    ("@{d} alice%3", "alice+x,|touch${{IFS}}{pwned}@{d}"),
    ("info@{d} %2", '"info+|touch {pwned}"@{d}'),
    ("info@{d} %2", "info+{pwned}@{d}"),
])
def test_no_command_or_file_from_a_virtusertable_substitution(rroot, table,
                                                               recipient):
    """%1 %2 %3 put what the sender typed into the destination: it must not
    become a command, a file, an include or a second destination."""
    fill = {"d": VIRTUAL_DOMAIN, "pwned": rroot.out / "pwned",
            "out": rroot.out}
    rroot.write_virtusertable(table.format(**fill) + "\n")
    (rroot.out / "list").write_text(f'"|touch {rroot.out}/pwned"\n')
    rroot.install_relay_stub()
    rroot.set_conf("allow_mail_to_commands = alias, forward, include",
                   "allow_mail_to_files = alias, forward, include")

    result, _ = send(rroot, recipient.format(**fill), subject="hostile")

    assert result.code == EX_NOUSER, result
    time.sleep(0.1)
    assert not (rroot.out / "pwned").exists()
    assert who_got(rroot, "hostile") == {}
    assert rroot.relay_calls() == []


def test_extension_cannot_pick_a_forward_outside_the_home(rroot):
    # alice happens to have a directory named like .forward+<tag>; a
    # sender's "+d/../../../evil" must not read a file outside her home.
    home = rroot.home("alice")
    (home / ".forward+d").mkdir()
    os.chown(home / ".forward+d", rroot.uid("alice"), rroot.uid("alice"))
    evil = rroot.path / "evil"
    evil.write_text("bob\n")
    os.chmod(evil, 0o644)
    relative = os.path.relpath(evil, home / ".forward+d")
    assert (home / ".forward+d" / relative).resolve() == evil.resolve()

    result, _ = send(rroot, f"alice+d/{relative}", subject="traversal")

    # Such an extension names no .forward+tag: ~/.forward (none here),
    # then the mailbox.
    assert result.code == EX_OK, result
    assert who_got(rroot, "traversal") == {"alice": 1}


# -- 9. loops and duplicates -------------------------------------------------

def test_alias_loop_bounces_naming_the_loop(rroot):
    rroot.write_aliases("a: b\nb: a\n")

    result, _ = send(rroot, "a", subject="loop")

    assert result.code == EX_UNAVAILABLE, result
    [entry] = log_entries(rroot)
    assert entry["dsn"] == "5.4.6"
    assert "a -> b -> a" in entry["stat"]
    assert who_got(rroot, "loop") == {}


def test_forward_chain_loop_bounces(rroot):
    rroot.write_forward("alice", "bob\n")
    rroot.write_forward("bob", "alice\n")

    result, _ = send(rroot, "alice", subject="forward loop")

    assert result.code == EX_UNAVAILABLE, result
    assert who_got(rroot, "forward loop") == {}
    [entry] = log_entries(rroot)
    assert entry["dsn"] == "5.4.6"
    assert "alice -> bob -> alice" in entry["stat"]


def test_virtusertable_loop_bounces(rroot):
    d = VIRTUAL_DOMAIN
    rroot.write_virtusertable(f"a@{d} b@{d}\nb@{d} a@{d}\n")

    result, _ = send(rroot, f"a@{d}", subject="virtual loop")

    assert result.code == EX_UNAVAILABLE, result
    [entry] = log_entries(rroot)
    assert entry["dsn"] == "5.4.6"
    assert f"a@{d} -> b@{d} -> a@{d}" in entry["stat"]


def test_self_reference_delivers_the_mailbox(rroot):
    rroot.write_aliases("alice: alice, bob\n")

    result, _ = send(rroot, "alice", subject="self")

    assert result.code == EX_OK, result
    assert who_got(rroot, "self") == {"alice": 1, "bob": 1}


@pytest.mark.parametrize("field,looping", [
    (f"alice@{HOSTNAME}", True),
    (f"ALICE@{HOSTNAME.upper()}", True),
    (f"bob@{HOSTNAME}", False),
])
def test_delivered_to_loop(rroot, field, looping):
    result, _ = send(rroot, "alice", subject="dt loop",
                     extra_headers=[f"Delivered-To: {field}"])

    if looping:
        assert result.code == EX_UNAVAILABLE, result
        assert who_got(rroot, "dt loop") == {}
        [entry] = log_entries(rroot)
        assert entry["dsn"] == "5.4.6"
    else:
        assert result.code == EX_OK, result
        assert who_got(rroot, "dt loop") == {"alice": 1}


@pytest.mark.parametrize("hops_over", [1, 0])
def test_max_hops(rroot, hops_over):
    max_hops = 3
    rroot.set_conf(f"max_hops = {max_hops}")
    received = [f"Received: from h{i}.example by h{i + 1}.example; "
                f"Mon, 1 Jan 2024 00:00:0{i} +0000"
                for i in range(max_hops + hops_over)]

    result, _ = send(rroot, "alice", subject="hops", extra_headers=received)

    if hops_over:
        assert result.code == EX_UNAVAILABLE, result
        assert who_got(rroot, "hops") == {}
        [entry] = log_entries(rroot)
        assert entry["dsn"] == "5.4.6"
    else:
        assert result.code == EX_OK, result
        assert who_got(rroot, "hops") == {"alice": 1}


def test_same_destination_twice_gets_one_copy(rroot):
    rroot.write_aliases("team: alice, bob, Alice\nall: team, alice, carol\n")
    rroot.write_forward("carol", "\\carol\nalice\n")

    result, _ = send(rroot, "team", "alice", "all", "carol",
                     subject="dup")

    assert result.code == EX_OK, result
    assert who_got(rroot, "dup") == {"alice": 1, "bob": 1, "carol": 1}


def test_deep_alias_chain_is_cut_off(rroot):
    n = 40
    lines = [f"hop{i}: hop{i + 1}" for i in range(n)] + [f"hop{n}: alice"]
    rroot.write_aliases("\n".join(lines) + "\n")

    result, _ = send(rroot, "hop0", subject="deep")

    assert result.code == EX_UNAVAILABLE, result
    assert who_got(rroot, "deep") == {}
    assert [e["dsn"] for e in log_entries(rroot)] == ["5.4.6"]


# -- 11. deliver -V ----------------------------------------------------------------

def test_verify_prints_the_tree_and_delivers_nothing(rroot):
    marker = rroot.out / "verify-ran"
    rroot.install_relay_stub()
    rroot.write_aliases(f'team: alice, bob, "|touch {marker}", '
                        f"{rroot.out}/team.mbox, friend@remote.example\n")
    rroot.write_forward("bob", "\\bob\ncarol\n")
    assert rroot.newaliases().code == EX_OK
    before = rroot.snapshot(exclude=("maillog",))

    out = rroot.verify("team", "nosuchuser")

    assert out.code == EX_NOUSER, out
    lines = out.stdout.splitlines()
    assert lines[0] == "team"
    assert any(line.strip() == "alias team -> " + ",".join(
        parse_aliases_text(rroot.aliases.read_text())["team"])
        for line in lines), out.stdout
    deliverable = [line.strip() for line in lines
                   if line.strip().startswith("deliverable:")]
    assert deliverable == [
        "deliverable: mailbox of alice",
        "deliverable: mailbox of bob",
        "deliverable: mailbox of carol",
        f'deliverable: command "|touch {marker}" (as nobody)',
        f"deliverable: file {rroot.out}/team.mbox (as nobody)",
        "deliverable: remote <friend@remote.example>",
    ]
    # The tree: members are indented below the alias, bob's .forward
    # below bob.
    indent = {line.strip(): len(line) - len(line.lstrip()) for line in lines}
    assert indent["local user bob (uid %d)" % rroot.uid("bob")] > \
        indent["alias team -> " + ",".join(
            parse_aliases_text(rroot.aliases.read_text())["team"])]
    assert str(rroot.home("bob") / ".forward") in out.stdout
    assert "nosuchuser" in lines
    assert any("undeliverable: error 5.1.1" in line for line in lines)
    # Nothing was delivered, run or relayed; nothing was logged as sent.
    assert rroot.snapshot(exclude=("maillog",)) == before
    assert not marker.exists()
    assert rroot.relay_calls() == []
    assert log_entries(rroot) == []


def test_verify_reads_no_message(rroot):
    # -V must not wait for a message: stdin stays open and empty.
    proc = subprocess.Popen(rroot.command("-V", "alice"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=rroot.env())
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EX_OK, err
    assert b"deliverable: mailbox of alice" in out
    assert not rroot.mbox("alice").exists()


def test_unknown_local_user_is_67(rroot):
    result, _ = send(rroot, "zed", subject="who")

    assert result.code == EX_NOUSER, result
    assert [e["dsn"] for e in log_entries(rroot)] == ["5.1.1"]


def test_message_is_delivered_whole_through_an_alias(rroot):
    rroot.write_aliases("team: bob\n")
    message = make_message(b"line one\n\nline three\n",
                           subject="whole")

    result = rroot.run("-f", SENDER, "team", message=message)

    assert result.code == EX_OK, result
    [(sender, msg)] = messages(rroot, "bob")
    assert sender == SENDER
    assert msg.get_payload() == "line one\n\nline three\n"


def test_include_owned_by_a_list_manager_runs_as_that_manager(rroot):
    # A root-owned aliases file naming an include file that a list manager
    # keeps: read as default_privs, its commands run as its owner.
    marker = rroot.out / "manager-include-uid"
    path = write_include(rroot, f'"|id -u > {marker}"\nalice\n',
                         owner=rroot.uid("dave"))
    rroot.write_aliases(f"staff: :include:{path}\n")
    rroot.set_conf("allow_mail_to_commands = alias, forward, include")

    result, _ = send(rroot, "staff", subject="manager include")

    assert result.code == EX_OK, result
    assert marker.read_text().strip() == str(rroot.uid("dave"))
    assert who_got(rroot, "manager include") == {"alice": 1}


def test_writable_aliases_file_may_not_name_commands_or_files(rroot):
    marker = rroot.out / "writable-table-ran"
    mbox = rroot.out / "writable-table.mbox"
    rroot.write_table(rroot.aliases,
                      f'staff: alice, "|touch {marker}", {mbox}\n',
                      mode=0o666)

    result, _ = send(rroot, "staff", subject="writable table")

    assert result.code == EX_NOPERM, result
    assert who_got(rroot, "writable table") == {"alice": 1}
    time.sleep(0.2)
    assert not marker.exists()
    assert not mbox.exists()


def test_verify_writes_no_db_file(rroot):
    rroot.write_aliases("staff: alice\n")

    out = rroot.verify("staff")

    assert out.code == EX_OK, out
    assert "mailbox of alice" in out.stdout
    assert not (rroot.path / "aliases.db").exists()
