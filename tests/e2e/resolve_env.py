"""A throwaway installation for the recipient-resolution tests of deliver
(test_resolve*.py): harness.MailRoot plus what resolution needs.

ResolveRoot adds the users `nobody` (65534, default_privs), `listowner`
(a mailing list's owner) and `dave` (an alias file's owner) to the
nss_wrapper files, runs newaliases and praliases from MAIL_BIN, writes
aliases / virtusertable / include files and ~/.forward files, installs the
fake sendmail of harness.MailRoot.install_relay_stub, and keeps a
world-writable `out` directory where test commands record what they saw.
"""

import email
import email.policy
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import (SENDER, USERS, MailRoot, check_sanitizer, make_message,
                     read_mbox)

NEWALIASES = harness.MAIL_BIN / "newaliases"
PRALIASES = harness.MAIL_BIN / "praliases"

# name: (uid, gid, home; None: a fresh directory under the root's home/)
EXTRA_USERS = {
    "nobody": (65534, 65534, "/nonexistent"),
    "listowner": (60010, 60010, None),
    "dave": (60004, 60004, None),
}
ALL_UIDS = {**USERS, **{n: u for n, (u, _, _) in EXTRA_USERS.items()}}

VIRTUAL_DOMAIN = "virt.example"


class Output:
    def __init__(self, code, stdout, stderr):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return (f"Output(code={self.code}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r})")


class ResolveRoot(MailRoot):
    """MailRoot with extra users, tables and a place for commands' notes."""

    def __init__(self, base=None):
        super().__init__(base=base)
        for name, (uid, gid, home) in EXTRA_USERS.items():
            if home is None:
                home_path = self.home(name)
                home_path.mkdir(parents=True)
                os.chown(home_path, uid, gid)
                os.chmod(home_path, 0o755)
                home = str(home_path)
            self.add_passwd_line(f"{name}:x:{uid}:{gid}:{name}:{home}:"
                                 f"/bin/sh")
        self.out = self.path / "out"
        self.out.mkdir()
        os.chmod(self.out, 0o1777)
        self.aliases = self.path / "aliases"
        self.virtusertable = self.path / "virtusertable"

    def write_nss_files(self):
        super().write_nss_files()
        with open(self.group, "a") as f:
            for name, (uid, gid, _) in EXTRA_USERS.items():
                f.write(f"{'nogroup' if name == 'nobody' else name}"
                        f":x:{gid}:\n")

    def uid(self, user):
        return ALL_UIDS[user]

    def set_conf(self, *lines):
        """mail.conf = base settings + lines (replacing earlier extras)."""
        self.configure(*lines)

    # -- tables ----------------------------------------------------------

    def write_table(self, path, text, owner=0, mode=0o644):
        path = Path(path)
        path.write_text(text)
        os.chown(path, owner, owner)
        os.chmod(path, mode)
        return path

    def write_aliases(self, text, owner="root", path=None):
        path = Path(path) if path else self.aliases
        uid = 0 if owner == "root" else self.uid(owner)
        return self.write_table(path, text, owner=uid)

    def write_virtusertable(self, text):
        return self.write_table(self.virtusertable, text)

    def write_forward(self, user, text, name=".forward", mode=0o644,
                      owner=None):
        path = self.home(user) / name
        path.write_text(text)
        uid = self.uid(owner or user)
        os.chown(path, uid, uid)
        os.chmod(path, mode)
        return path

    # -- the other programs ----------------------------------------------

    def tool(self, program, *args, conf=True):
        argv = [str(program)]
        if conf:
            argv += ["-C", str(self.conf)]
        argv += [str(a) for a in args]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                              capture_output=True, env=self.env(),
                              timeout=60, cwd=self.path)
        stderr = proc.stderr.decode("utf-8", "replace")
        check_sanitizer(stderr)
        return Output(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                      stderr)

    def newaliases(self, *args):
        return self.tool(NEWALIASES, *args)

    def praliases(self, *args):
        return self.tool(PRALIASES, *args)

    def verify(self, *args):
        """deliver -V: the resolution tree on stdout, nothing delivered."""
        return self.tool(harness.DELIVER, "-V", *args)

    # -- looking at what happened ----------------------------------------

    def note(self, name):
        """What a test command wrote to out/NAME (None when nothing)."""
        path = self.out / name
        return path.read_text() if path.exists() else None


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def wait_for(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(step)


def read_cdb(path):
    """{key: value} of every record in a tinycdb file (as bytes), read
    sequentially: the records lie between the 2048-byte header and the
    first hash table."""
    data = Path(path).read_bytes()
    assert len(data) >= 2048, f"{path}: too short for a cdb"
    header = [int.from_bytes(data[i:i + 4], "little")
              for i in range(0, 2048, 8)]
    end = min(header)
    records, pos = {}, 2048
    while pos < end:
        klen = int.from_bytes(data[pos:pos + 4], "little")
        dlen = int.from_bytes(data[pos + 4:pos + 8], "little")
        key = data[pos + 8:pos + 8 + klen]
        records[key] = data[pos + 8 + klen:pos + 8 + klen + dlen]
        pos += 8 + klen + dlen
    assert pos == end, f"{path}: records overrun the hash tables"
    return records


def split_list(value):
    """An alias value as destinations: split at commas outside quotes,
    trimmed (what the aliases(5) format means)."""
    items, cur, quoted, i = [], "", False, 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            cur += value[i:i + 2]
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            items.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    items.append(cur.strip())
    return [item for item in items if item]


def parse_aliases_text(text):
    """{lower-case name: [destinations]} of an aliases text, following
    aliases(5): '#' comments, continuation lines starting with a blank,
    'name: dest, dest'."""
    entries, logical = {}, []
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t"):
            if line.strip():
                logical.append(line.strip())
            continue
        if logical:
            name, _, value = " ".join(logical).partition(":")
            entries[name.strip().lower()] = split_list(value)
        logical = [line] if line.strip() else []
    return entries


# -- pytest glue ------------------------------------------------------------


@pytest.fixture
def rroot(request):
    """A fresh ResolveRoot for one test, removed afterwards (kept for a
    look when E2E_KEEP is set and the test failed)."""
    mail_root = ResolveRoot(base=os.environ.get("E2E_TMPDIR"))
    yield mail_root
    if os.environ.get("E2E_KEEP") and getattr(request.node, "e2e_failed",
                                              False):
        print(f"\nkept the throwaway root: {mail_root.path}")
        return
    mail_root.remove()


LOG_ENTRY = re.compile(
    r"deliver\[\d+\]: \w+: to=<(?P<to>.*?)>(?:, orig_to=<(?P<orig>.*?)>)?, "
    r"ctladdr=<(?P<ctladdr>[^>]*)>(?: \((?P<ids>\d+/-?\d+)\))?, "
    r"delay=[\d:]+, xdelay=[\d:]+, mailer=(?P<mailer>\S+), pri=\d+, "
    r"dsn=(?P<dsn>\d\.\d+\.\d+), stat=(?P<stat>.*)$")


def log_entries(root):
    """The maillog delivery lines as dicts (to, orig, ctladdr, ids, mailer,
    dsn, stat)."""
    entries = []
    for line in root.log_lines():
        m = LOG_ENTRY.search(line)
        if m:
            entries.append(m.groupdict())
    return entries


def parse(stored):
    return email.message_from_bytes(stored, policy=email.policy.compat32)


def messages(root, user):
    """[(From_ sender, email.message.Message)] in user's spool mbox; []
    when there is no mbox."""
    path = root.mbox(user)
    if not path.exists():
        return []
    return [(from_.split(" ", 1)[0], parse(raw))
            for from_, raw in read_mbox(path)]


def subjects(root, user):
    return [msg["Subject"] for _, msg in messages(root, user)]


def send(root, *recipients, subject="test", sender=SENDER, body=None,
         extra_headers=(), to=None):
    """Delivers a fresh message to recipients (deliver -f sender ...);
    returns (Result, the message bytes)."""
    message = make_message(body if body is not None else
                           f"body of {subject}\n".encode(),
                           subject=subject, sender=sender,
                           to=to or ", ".join(r for r in recipients
                                              if r != "--"),
                           extra_headers=extra_headers)
    return root.run("-f", sender, *recipients, message=message), message
