"""End-to-end tests of deliver under stress: concurrent deliveries, a
delivery killed half way, a full disk, and large messages. What is checked
is the promise of mda/mbox.h and mda/maildir.h: every message is delivered
whole exactly once, or not at all and the mailbox is as it was.

The concurrency tests send 500 messages from each of 8 workers; against a
sanitizer build, E2E_PER_WORKER may make that fewer.
"""

import collections
import concurrent.futures
import os
import re
import signal
import subprocess
import time

import pytest

from harness import (EX_OK, EX_TEMPFAIL, SENDER, USERS, MAIL_GID, big_body,
                     body_of, check_sanitizer, feed_slowly,
                     is_sanitizer_build, make_message, read_maildir,
                     read_mbox, sha256, stored_form)

ALICE_TO = "alice@test.example"
WORKERS = 8
PER_WORKER = (int(os.environ.get("E2E_PER_WORKER", "500"))
              if is_sanitizer_build() else 500)
MAILDIR_NAME = re.compile(r",S=(\d+)$")


def mboxrd_unquote(data):
    return re.sub(rb"(?m)^>(>*From )", rb"\1", data)


# -- 7. concurrency -----------------------------------------------------------


def unique_body(worker, index):
    body = (b"worker %d message %d\n" % (worker, index)
            + os.urandom(48).hex().encode() + b"\n"
            + b"From a line that an mbox must quote\n"
            + os.urandom(200).hex().encode() + b"\n")
    if index % 10 == 0:
        # Larger than deliver's 64 KiB write buffer: written in several
        # write(2) calls, so that only the locks keep messages apart.
        body += big_body(150 << 10)
    return body


def deliver_many(root, worker, count):
    hashes = []
    for index in range(count):
        body = unique_body(worker, index)
        message = make_message(body, subject=f"w{worker} m{index}")
        result = root.run("-f", SENDER, "alice", message=message)
        assert result.code == EX_OK, (worker, index, result)
        hashes.append(sha256(body))
    return hashes


def deliver_concurrently(root):
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(deliver_many, root, w, PER_WORKER)
                   for w in range(WORKERS)]
        sent = [h for f in futures for h in f.result()]
    elapsed = time.monotonic() - started
    assert len(set(sent)) == WORKERS * PER_WORKER
    return sent, elapsed


def test_concurrent_deliveries_to_one_mbox(root):
    sent, elapsed = deliver_concurrently(root)

    messages = read_mbox(root.mbox("alice"))
    assert len(messages) == WORKERS * PER_WORKER
    got = collections.Counter()
    for _, stored in messages:
        assert stored.startswith(
            b"Return-Path: <sender@x.org>\nDelivered-To: alice@test.example\n")
        body = body_of(stored)
        # Quoted in the file, whole after unquoting.
        assert b"\n>From a line that an mbox must quote\n" in body
        got[sha256(mboxrd_unquote(body))] += 1
    assert got == collections.Counter(sent)
    assert not (root.spool / "alice.lock").exists()
    st = os.lstat(root.mbox("alice"))
    assert (st.st_uid, st.st_gid) == (USERS["alice"], MAIL_GID)
    sent_lines = [l for l in root.log_lines() if l.endswith("stat=Sent")]
    assert len(sent_lines) == WORKERS * PER_WORKER
    print(f"{len(sent)} mbox deliveries in {elapsed:.1f}s")


def test_concurrent_deliveries_to_one_maildir(root):
    root.configure("mailbox = ~/Maildir/")
    sent, elapsed = deliver_concurrently(root)

    maildir = root.maildir("alice")
    names = os.listdir(maildir / "new")
    assert len(names) == WORKERS * PER_WORKER
    assert os.listdir(maildir / "tmp") == []
    got = collections.Counter()
    for name, stored in read_maildir(maildir).items():
        assert int(MAILDIR_NAME.search(name).group(1)) == len(stored)
        got[sha256(body_of(stored))] += 1
    assert got == collections.Counter(sent)
    print(f"{len(sent)} maildir deliveries in {elapsed:.1f}s")


# -- 8. a delivery killed half way --------------------------------------------

BIG = 50 << 20


def start_and_kill(root, message, grown, timeout=120):
    """Starts deliver with message arriving through a slow pipe and kills
    it with SIGKILL as soon as grown() says it is writing. Returns the
    stderr of the killed process."""
    proc = root.popen("-f", SENDER, "alice")
    writer = feed_slowly(proc.stdin, message, chunk=4 << 20, pause=0.05)
    deadline = time.monotonic() + timeout
    killed = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if grown():
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait()
        writer.join()
    stderr = proc.stderr.read().decode("utf-8", "replace")
    check_sanitizer(stderr)
    assert killed, f"deliver ended before it could be killed: " \
        f"exit {proc.returncode}: {stderr}"
    assert proc.returncode == -signal.SIGKILL
    return stderr


def test_killed_mbox_delivery_is_rolled_back_by_the_next(root):
    mbox = root.mbox("alice")
    earlier = [make_message(b"earlier %d\n" % i) for i in range(3)]
    for message in earlier:
        assert root.run("-f", SENDER, "alice", message=message).code == EX_OK
    old = mbox.read_bytes()

    big = make_message(big_body(BIG), subject="killed half way")
    start_and_kill(root, big, lambda: mbox.stat().st_size > len(old))

    # What the kill left: part of the big message and a stale dot-lock.
    left = mbox.read_bytes()
    assert left.startswith(old) and len(left) > len(old)
    print(f"killed with {len(left) - len(old)} of "
          f"{len(stored_form(big, ALICE_TO))} bytes written")
    assert (root.spool / "alice.lock").exists()

    after = make_message(b"after the kill\n")
    result = root.run("-f", SENDER, "alice", message=after)
    assert result.code == EX_OK, result

    raw = mbox.read_bytes()
    assert raw.startswith(old)
    assert b"killed half way" not in raw
    stored = [s for _, s in read_mbox(mbox)]
    expected = [stored_form(m, ALICE_TO) for m in earlier + [after]]
    assert [sha256(s) for s in stored] == [sha256(e) for e in expected]
    assert not (root.spool / "alice.lock").exists()


def test_killed_maildir_delivery_leaves_only_whole_messages_in_new(root):
    root.configure("mailbox = ~/Maildir/")
    maildir = root.maildir("alice")
    earlier = [make_message(b"earlier %d\n" % i) for i in range(2)]
    for message in earlier:
        assert root.run("-f", SENDER, "alice", message=message).code == EX_OK

    def writing():
        return any(e.stat().st_size > 0 for e in os.scandir(maildir / "tmp"))

    big = make_message(big_body(BIG), subject="killed half way")
    big_stored = stored_form(big, ALICE_TO)
    start_and_kill(root, big, writing)

    whole = {sha256(stored_form(m, ALICE_TO)) for m in earlier}
    partial = [e for e in os.scandir(maildir / "tmp")]
    in_new = {sha256(s) for s in read_maildir(maildir).values()}
    print(f"killed with {[p.stat().st_size for p in partial]} in tmp/ of "
          f"{len(big_stored)} bytes")
    if partial:
        # Killed while writing: the part stays in tmp/, out of sight.
        assert len(partial) == 1
        assert partial[0].stat().st_size <= len(big_stored)
        assert in_new == whole
    else:
        # Killed after the rename: then the message is whole.
        assert in_new == whole | {sha256(big_stored)}

    after = make_message(b"after the kill\n")
    assert root.run("-f", SENDER, "alice", message=after).code == EX_OK
    got = read_maildir(maildir)
    for name, stored in got.items():
        assert int(MAILDIR_NAME.search(name).group(1)) == len(stored)
    expected = whole | {sha256(stored_form(after, ALICE_TO))}
    if not partial:
        expected.add(sha256(big_stored))
    assert {sha256(s) for s in got.values()} == expected
    assert len(got) == len(expected)


# -- 9. a full disk -----------------------------------------------------------

NAMESPACE_SCRIPT = r"""
set -e
mountpoint=$1 mount_options=$2 seed=$3 seed_owner=$4 big=$5 small=$6 out=$7
shift 7
mount -t tmpfs -o "size=1m,$mount_options" tmpfs "$mountpoint"
stat -f -c %T "$mountpoint" > "$out/fstype"
if [ -s "$seed" ]; then
    cp "$seed" "$mountpoint/alice"
    chown "$seed_owner" "$mountpoint/alice"
    chmod 0660 "$mountpoint/alice"
fi
set +e
cat "$big" | "$@" 2> "$out/big.stderr"
echo $? > "$out/big.rc"
(cd "$mountpoint" && find . | sort) > "$out/after-big"
cp -a "$mountpoint" "$out/after-big.copy"
"$@" < "$small" 2> "$out/small.stderr"
echo $? > "$out/small.rc"
cp -a "$mountpoint" "$out/after-small.copy"
"""


def run_on_small_tmpfs(root, mountpoint, mount_options, seed, big, small):
    """In a private mount namespace where a 1 MiB tmpfs covers mountpoint
    (holding seed as alice's mbox when seed is not empty), runs deliver for
    alice with big, then with small, from pipes. Returns the directory with
    what happened: exit codes, stderr, copies of the tmpfs after each."""
    out = root.path / "namespace-out"
    out.mkdir()
    files = {}
    for name, data in (("seed", seed), ("big", big), ("small", small)):
        files[name] = root.path / f"ns-{name}"
        files[name].write_bytes(data)
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            NAMESPACE_SCRIPT, "sh", str(mountpoint), mount_options,
            str(files["seed"]), f"{USERS['alice']}:{MAIL_GID}",
            str(files["big"]), str(files["small"]), str(out),
            *root.command("-f", SENDER, "alice")]
    proc = subprocess.run(argv, env=root.env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    if not (out / "big.rc").exists():
        pytest.skip("cannot mount a tmpfs in a private mount namespace "
                    f"here: {proc.stderr.decode(errors='replace').strip()}")
    for name in ("big.stderr", "small.stderr"):
        check_sanitizer((out / name).read_text(errors="replace"))
    assert (out / "fstype").read_text().strip() == "tmpfs"
    return out


def test_full_disk_leaves_mbox_unchanged(root):
    seed = b"".join(
        b"From old@x.org Mon Jan  1 00:00:00 2024\nSubject: old %d\n\n" % i
        + big_body(60 << 10) + b"\n" for i in range(10))
    assert 550 << 10 < len(seed) < 700 << 10
    big = make_message(big_body(1 << 20), subject="does not fit")
    small = make_message(b"fits\n", subject="small")
    out = run_on_small_tmpfs(root, root.spool,
                             f"uid=0,gid={MAIL_GID},mode=2775", seed, big,
                             small)

    assert int((out / "big.rc").read_text()) == EX_TEMPFAIL, \
        (out / "big.stderr").read_text()
    after_big = out / "after-big.copy"
    assert (after_big / "alice").read_bytes() == seed
    assert (out / "after-big").read_text().split() == [".", "./alice"]
    # The tmpfs was private: the real spool never saw any of it.
    assert os.listdir(root.spool) == []
    # With room enough the next delivery works and appends after the seed.
    assert int((out / "small.rc").read_text()) == EX_OK, \
        (out / "small.stderr").read_text()
    after_small = (out / "after-small.copy" / "alice").read_bytes()
    assert after_small.startswith(seed)
    stored = [s for _, s in read_mbox(out / "after-small.copy" / "alice")]
    assert len(stored) == 11
    assert stored[-1] == stored_form(small, ALICE_TO)
    big_line, small_line = root.log_lines()[-2:]
    assert "dsn=4.3.1, stat=Deferred: " in big_line, big_line
    assert small_line.endswith("stat=Sent"), small_line


def test_full_disk_leaves_maildir_empty(root):
    root.configure("mailbox = ~/Maildir/")
    maildir = root.maildir("alice")
    maildir.mkdir()
    os.chown(maildir, USERS["alice"], USERS["alice"])
    big = make_message(big_body(1 << 20), subject="does not fit")
    small = make_message(b"fits\n", subject="small")
    uid = USERS["alice"]
    out = run_on_small_tmpfs(root, maildir, f"uid={uid},gid={uid},mode=0700",
                             b"", big, small)

    assert int((out / "big.rc").read_text()) == EX_TEMPFAIL, \
        (out / "big.stderr").read_text()
    entries = (out / "after-big").read_text().split()
    assert [e for e in entries if e.count("/") > 1] == [], entries
    assert int((out / "small.rc").read_text()) == EX_OK, \
        (out / "small.stderr").read_text()
    got = read_maildir(out / "after-small.copy")
    assert list(got.values()) == [stored_form(small, ALICE_TO)]
    assert os.listdir(maildir) == []


# -- 11. large messages -------------------------------------------------------

LARGE = 20 << 20


def deliver_large(root, message, stdin_kind):
    if stdin_kind == "pipe":
        proc = root.popen("-f", SENDER, "alice")
        writer = feed_slowly(proc.stdin, message, chunk=1 << 20, pause=0)
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.wait(timeout=120)
        writer.join()
        check_sanitizer(stderr)
        assert proc.returncode == EX_OK, stderr
    else:
        path = root.path / "large-message"
        path.write_bytes(message)
        with open(path, "rb") as stdin:
            result = root.run("-f", SENDER, "alice", stdin=stdin)
        assert result.code == EX_OK, result


@pytest.mark.parametrize("stdin_kind", ["pipe", "file"])
def test_large_message_to_mbox_is_intact(root, stdin_kind):
    body = big_body(LARGE)
    message = make_message(body, subject="large")
    deliver_large(root, message, stdin_kind)
    stored = [s for _, s in read_mbox(root.mbox("alice"))]
    assert len(stored) == 1
    assert sha256(body_of(stored[0])) == sha256(body)
    assert sha256(stored[0]) == sha256(stored_form(message, ALICE_TO))


@pytest.mark.parametrize("stdin_kind", ["pipe", "file"])
def test_large_message_to_maildir_is_intact(root, stdin_kind):
    root.configure("mailbox = ~/Maildir/")
    body = big_body(LARGE)
    message = make_message(body, subject="large")
    deliver_large(root, message, stdin_kind)
    got = read_maildir(root.maildir("alice"))
    assert len(got) == 1
    (name, stored), = got.items()
    assert int(MAILDIR_NAME.search(name).group(1)) == len(stored)
    assert sha256(body_of(stored)) == sha256(body)
    assert sha256(stored) == sha256(stored_form(message, ALICE_TO))


@pytest.mark.parametrize("stdin_kind", ["pipe", "file"])
def test_large_message_with_leading_from_line(root, stdin_kind):
    # Larger than what deliver keeps in memory: the From_ line comes off
    # a spooled (pipe) or seekable (file) message.
    body = big_body(3 << 20)
    message = make_message(body, subject="large", sender="env@y.org")
    deliver_large_envelope = b"From env@y.org Mon Jan  1 10:00:00 2001\n"
    if stdin_kind == "pipe":
        result = root.run("alice", message=deliver_large_envelope + message)
    else:
        path = root.path / "large-message"
        path.write_bytes(deliver_large_envelope + message)
        with open(path, "rb") as stdin:
            result = root.run("alice", stdin=stdin)
    assert result.code == EX_OK, result
    messages = read_mbox(root.mbox("alice"))
    assert len(messages) == 1
    from_line, stored = messages[0]
    assert from_line.startswith("env@y.org ")
    assert sha256(stored) == sha256(stored_form(message, ALICE_TO,
                                                sender="env@y.org"))
