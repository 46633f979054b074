"""The throwaway installation the end-to-end tests run deliver in.

A MailRoot is a temporary directory (mode 0755, so that test users can
traverse it) holding passwd/group files for nss_wrapper, a spool directory
root:mail 2775, home directories owned by their users, a private tmp_dir and
a mail.conf. MailRoot.run() executes the real $MAIL_BIN/deliver against it
and fails the test when a sanitizer reports anything. The helpers below build
messages, compute the form deliver must store them in, and read mailboxes
back with python's own mailbox module.
"""

import base64
import hashlib
import mailbox
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAIL_BIN = Path(os.environ.get("MAIL_BIN") or REPO / "bin").resolve()
DELIVER = MAIL_BIN / "deliver"

HOSTNAME = "test.example"
MAIL_GID = 8
USERS = {"alice": 60001, "bob": 60002, "carol": 60003}
SENDER = "sender@x.org"

# sysexits.h
EX_OK, EX_USAGE, EX_NOUSER = 0, 64, 67
EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 75, 77, 78

# Anything AddressSanitizer, LeakSanitizer or UBSan print means a bug.
SANITIZER_REPORT = re.compile(
    r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:|"
    r"==\d+==(ERROR|WARNING)|SUMMARY: \w+Sanitizer")


def is_sanitizer_build():
    try:
        return b"__asan_init" in DELIVER.read_bytes()
    except OSError:
        return False


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Result:
    def __init__(self, code, stderr):
        self.code = code
        self.stderr = stderr

    def __iter__(self):
        return iter((self.code, self.stderr))

    def __repr__(self):
        return f"Result(code={self.code}, stderr={self.stderr!r})"


class MailRoot:
    """One throwaway installation; remove() deletes it."""

    def __init__(self, base=None):
        self.path = Path(tempfile.mkdtemp(prefix="deliver-e2e-", dir=base))
        os.chmod(self.path, 0o755)
        self.spool = self.path / "spool"
        self.tmp = self.path / "tmp"
        self.log = self.path / "maillog"
        self.conf = self.path / "mail.conf"
        self.passwd = self.path / "passwd"
        self.group = self.path / "group"
        self.extra_passwd = []
        self.spool.mkdir()
        os.chown(self.spool, 0, MAIL_GID)
        os.chmod(self.spool, 0o2775)
        self.tmp.mkdir()
        os.chmod(self.tmp, 0o1777)
        for name, uid in USERS.items():
            home = self.home(name)
            home.mkdir(parents=True)
            os.chown(home, uid, uid)
            os.chmod(home, 0o755)
        self.write_nss_files()
        self.configure()

    # -- the installation ------------------------------------------------

    def home(self, user):
        return self.path / "home" / user

    def mbox(self, user):
        return self.spool / user

    def maildir(self, user):
        return self.home(user) / "Maildir"

    def write_nss_files(self):
        lines = [f"{name}:x:{uid}:{uid}:{name.title()} Example:"
                 f"{self.home(name)}:/bin/sh\n" for name, uid in USERS.items()]
        lines.append("root:x:0:0:root:/root:/bin/sh\n")
        # The unprivileged user of smtpd's sessions and of the queue
        # runner's SMTP client (smtpd_user's default).
        lines.append("mail:x:8:8:mail:/var/mail:/usr/sbin/nologin\n")
        lines.extend(self.extra_passwd)
        self.passwd.write_text("".join(lines))
        groups = ["root:x:0:\n", f"mail:x:{MAIL_GID}:\n"]
        groups += [f"{name}:x:{uid}:\n" for name, uid in USERS.items()]
        self.group.write_text("".join(groups))
        os.chmod(self.passwd, 0o644)
        os.chmod(self.group, 0o644)

    def add_passwd_line(self, line):
        self.extra_passwd.append(line.rstrip("\n") + "\n")
        self.write_nss_files()

    # Every path deliver might touch lives in the root: the host's
    # /etc/aliases, tables and MTA are never read, rebuilt or called.
    BASE_CONF = [f"hostname = {HOSTNAME}", "spool_dir = spool",
                 "log = maillog", "tmp_dir = tmp", "aliases = aliases",
                 "virtusertable = virtusertable", "mailertable = mailertable",
                 "access = access", "queue_dir = queue",
                 "statistics = statistics", "sendmail_path = relay/sendmail"]

    def configure(self, *extra_lines):
        """Writes mail.conf: the base settings plus extra_lines; returns
        the line number of the first extra line."""
        lines = [*self.BASE_CONF, *extra_lines]
        self.conf.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o644)
        return len(self.BASE_CONF) + 1

    def install_relay_stub(self):
        """A sendmail_path that records what deliver hands on: one
        directory per call with argv, uid and the message."""
        relay = self.path / "relay"
        relay.mkdir(exist_ok=True)
        os.chmod(relay, 0o1777)
        stub = relay / "sendmail"
        stub.write_text(
            "#!/bin/sh\n"
            "d=$(mktemp -d \"$(dirname \"$0\")/call.XXXXXX\")\n"
            "chmod 755 \"$d\"\n"
            "printf '%s\\n' \"$@\" > \"$d/argv\"\n"
            "id -u > \"$d/uid\"\n"
            "cat > \"$d/message\"\n")
        os.chmod(stub, 0o755)
        return relay

    def relay_calls(self):
        relay = self.path / "relay"
        if not relay.exists():
            return []
        calls = []
        for call in sorted(relay.glob("call.*")):
            calls.append({
                "argv": (call / "argv").read_text().splitlines(),
                "uid": int((call / "uid").read_text()),
                "message": (call / "message").read_bytes()})
        return calls

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)

    # -- running deliver -------------------------------------------------

    def env(self):
        asan = os.environ.get("ASAN_OPTIONS", "")
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LD_PRELOAD": "libnss_wrapper.so",
            "NSS_WRAPPER_PASSWD": str(self.passwd),
            "NSS_WRAPPER_GROUP": str(self.group),
            # nss_wrapper dlopen()s libc with RTLD_DEEPBIND, which the
            # sanitizer runtime refuses; without it nothing changes.
            "NSS_WRAPPER_DISABLE_DEEPBIND": "1",
            # nss_wrapper is preloaded ahead of the ASan runtime.
            "ASAN_OPTIONS": (asan + ":" if asan else "")
            + "verify_asan_link_order=0",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
            "LSAN_OPTIONS": os.environ.get("LSAN_OPTIONS", ""),
        }

    def command(self, *args, as_user=None, conf=True):
        argv = [str(DELIVER)]
        if conf:
            argv += ["-C", str(self.conf)]
        argv += [str(a) for a in args]
        if as_user is not None:
            uid = USERS[as_user]
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                    "--clear-groups", "--"] + argv
        return argv

    def run(self, *args, message=b"", stdin=None, as_user=None, conf=True,
            timeout=120):
        """Runs deliver with message (or the open file stdin) on its
        standard input; returns Result(exit code, stderr text)."""
        proc = subprocess.run(
            self.command(*args, as_user=as_user, conf=conf),
            input=None if stdin is not None else message,
            stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=self.env(), timeout=timeout, cwd=self.path)
        stderr = proc.stderr.decode("utf-8", "replace")
        check_sanitizer(stderr)
        return Result(proc.returncode, stderr)

    def popen(self, *args, as_user=None):
        return subprocess.Popen(
            self.command(*args, as_user=as_user), stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=self.env(), cwd=self.path)

    def log_lines(self):
        if not self.log.exists():
            return []
        return self.log.read_text().splitlines()

    # -- looking at the result -------------------------------------------

    def snapshot(self, exclude=("maillog",)):
        return tree_snapshot(self.path, exclude)


def check_sanitizer(stderr):
    assert not SANITIZER_REPORT.search(stderr), \
        "sanitizer report from deliver:\n" + stderr


def tree_snapshot(root, exclude=()):
    """Every entry below root (but those in or below exclude): kind, mode,
    owner, group, size and content hash."""
    root = Path(root)
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if any(rel == e or rel.startswith(e + "/") for e in exclude):
                continue
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                content = sha256(path.read_bytes())
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            entries[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                            st.st_uid, st.st_gid, st.st_size, content)
    return entries


def feed_slowly(pipe, data, chunk, pause):
    """Writes data to pipe in chunks with a pause between them, then closes
    it; returns the writer thread (a slow upstream, e.g. an SMTP client)."""
    def writer():
        try:
            for off in range(0, len(data), chunk):
                pipe.write(data[off:off + chunk])
                pipe.flush()
                if pause:
                    time.sleep(pause)
        except BrokenPipeError:
            pass
        finally:
            try:
                pipe.close()
            except BrokenPipeError:
                pass
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return thread


# -- messages ---------------------------------------------------------------

_counter = 0
_counter_lock = threading.Lock()


def make_message(body, subject="test", to="alice@test.example",
                 sender=SENDER, extra_headers=(), newline=b"\n"):
    """A message with a unique Message-ID; body is bytes with LF line ends
    (converted to newline)."""
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    headers = [f"From: Sender <{sender}>", f"To: {to}", f"Subject: {subject}",
               f"Message-ID: <{os.getpid()}.{n}.{time.time_ns()}@x.org>",
               *extra_headers]
    text = ("\n".join(headers) + "\n\n").encode() + body
    if newline != b"\n":
        text = text.replace(b"\n", newline)
    return text


def big_body(size):
    """About size bytes of random base64 in 76-column lines (never a line
    that mbox quoting would touch)."""
    return base64.encodebytes(os.urandom(size * 3 // 4))


def stored_form(message, recipient, sender=SENDER):
    """What deliver writes for message (LF line ends, no From_ line):
    Return-Path and Delivered-To first, then the message."""
    return (b"Return-Path: <%s>\nDelivered-To: %s\n"
            % (sender.encode(), recipient.encode())) + message


def mboxrd_quote(data):
    return re.sub(rb"(?m)^(>*From )", rb">\1", data)


def body_of(stored):
    """The body of a stored message: everything after the first empty
    line."""
    head, sep, body = stored.partition(b"\n\n")
    assert sep, f"no header/body separator in {stored[:200]!r}"
    return body


FROM_LINE = re.compile(
    r"^From (\S+) (Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[ \d]\d \d\d:\d\d:\d\d \d{4}$")


def read_mbox(path):
    """[(From_ line without "From ", stored bytes)] read by mailbox.mbox."""
    box = mailbox.mbox(str(path), create=False)
    try:
        return [(box[key].get_from(), box.get_bytes(key))
                for key in box.keys()]
    finally:
        box.close()


def read_maildir(path):
    """{key: bytes} for the messages mailbox.Maildir sees (new/ and cur/).
    The key is the file name up to any ":info" part: here the whole name,
    for deliver writes none."""
    box = mailbox.Maildir(str(path), factory=None, create=False)
    return {key: box.get_bytes(key) for key in box.keys()}


# -- the queue: sendmail, mailq, mailstats and the queue files -------------
#
# Helpers for the sendmail/queue tests (test_queue.py). They only add to
# what is above: MailRoot.run() and friends still run deliver as before.

SENDMAIL = MAIL_BIN / "sendmail"
EX_DATAERR = 65

# Where the queue tests' sanitizer builds write their reports: deliver runs
# below the queue runner, which keeps deliver's stderr for the qf, so a
# report would end up as a bounce reason instead of failing the test.
SANITIZER_DIR = "sanitizer"


class Output:
    """What a program printed and how it ended."""

    def __init__(self, code, stdout, stderr):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return (f"Output(code={self.code}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r})")


class QueueRoot(MailRoot):
    """A MailRoot for sendmail and the queue: a mail.conf whose
    deliver_path is $MAIL_BIN/deliver, the queue directory "queue" (made by
    the caller or by root's sendmail), and ways to run the queue programs
    and to read the queue files back."""

    def configure(self, *extra_lines):
        """MailRoot.configure() with deliver_path first; returns the line
        number of the first of extra_lines."""
        return MailRoot.configure(self, f"deliver_path = {DELIVER}",
                                  *extra_lines) + 1

    def queue_env(self):
        """env() with the sanitizers' reports going to files in the root
        (read back by sanitizer_reports()), for processes below
        sendmail."""
        env = self.env()
        reports = self.path / SANITIZER_DIR
        reports.mkdir(exist_ok=True)
        os.chmod(reports, 0o1777)
        where = f"log_path={reports}/report"
        env["ASAN_OPTIONS"] += ":" + where
        env["UBSAN_OPTIONS"] += ":" + where
        return env

    def sanitizer_reports(self):
        """The text of every sanitizer report file written so far."""
        reports = self.path / SANITIZER_DIR
        if not reports.exists():
            return []
        return [p.read_text(errors="replace")
                for p in sorted(reports.iterdir())]

    def check_sanitizer_reports(self):
        for text in self.sanitizer_reports():
            check_sanitizer(text)
            assert not text.strip(), "sanitizer report:\n" + text

    def program_command(self, program, *args, as_user=None, conf=True):
        argv = [str(MAIL_BIN / program)]
        if conf:
            argv += ["-C", str(self.conf)]
        argv += [str(a) for a in args]
        if as_user is not None:
            uid = USERS[as_user]
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                    "--clear-groups", "--"] + argv
        return argv

    def run_program(self, program, *args, message=b"", as_user=None,
                    conf=True, timeout=120):
        """Runs $MAIL_BIN/program (sendmail, mailq, mailstats,
        newaliases...) with -C mail.conf and message on stdin; returns
        Output. Fails on any sanitizer report, on stderr or in the report
        files."""
        proc = subprocess.run(
            self.program_command(program, *args, as_user=as_user,
                                 conf=conf),
            input=message, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.queue_env(), timeout=timeout, cwd=self.path)
        stderr = proc.stderr.decode("utf-8", "replace")
        check_sanitizer(stderr)
        self.check_sanitizer_reports()
        return Output(proc.returncode,
                      proc.stdout.decode("utf-8", "replace"), stderr)

    def popen_program(self, program, *args, **kwargs):
        """Starts $MAIL_BIN/program in a session of its own (so that its
        whole process group can be signalled); stdin, stdout and stderr
        are /dev/null unless kwargs say otherwise."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        return subprocess.Popen(self.program_command(program, *args),
                                env=self.queue_env(), cwd=self.path,
                                start_new_session=True, **kwargs)

    def sendmail(self, *args, message=b"", **kwargs):
        return self.run_program("sendmail", *args, message=message,
                                **kwargs)

    def queue_dir(self):
        return self.path / "queue"

    def queue_files(self):
        """The names in the queue directory (the daemon's FIFO and the
        background deliveries' slot files left out)."""
        qdir = self.queue_dir()
        if not qdir.exists():
            return []
        return sorted(n for n in os.listdir(qdir)
                      if n != ".trigger" and not n.startswith(".slot"))

    def queued_ids(self):
        """The queue ids that have a qf."""
        return [n[2:] for n in self.queue_files() if n.startswith("qf")]

    def qf(self, queue_id):
        return read_qf(self.queue_dir() / ("qf" + queue_id))

    def add_group_line(self, line):
        """Appends a line to the nss_wrapper group file (write_nss_files(),
        which add_passwd_line() calls, writes the file anew without
        it)."""
        with open(self.group, "a") as group:
            group.write(line.rstrip("\n") + "\n")


def qf_unescape(text):
    """A qf text value with its %XX escapes decoded (see queue.5)."""
    return re.sub(rb"%([0-9A-Fa-f]{2})",
                  lambda m: bytes([int(m.group(1), 16)]),
                  text.encode("utf-8", "surrogateescape")).decode(
                      "utf-8", "replace")


class QueueFile:
    """A qf read back: records (letter -> list of raw values), recipients
    as dicts (state, dsn, address, orcpt, reply) and the header section."""

    def __init__(self, text):
        lines = text.split("\n")
        assert lines[-1] == "" and lines[-2] == ".", \
            f"qf does not end in a '.' line: {text[-200:]!r}"
        self.records = {}
        self.recipients = []
        headers = []
        for line in lines[:-2]:
            kind, value = line[:1], line[1:]
            if kind == "R":
                fields = value.split(":")
                fields += [""] * (5 - len(fields))
                self.recipients.append({
                    "state": fields[0], "dsn": fields[1],
                    "address": qf_unescape(fields[2]),
                    "orcpt": qf_unescape(fields[3]),
                    "reply": qf_unescape(fields[4])})
            elif kind == "H":
                headers.append(qf_unescape(value) + "\n")
            else:
                self.records.setdefault(kind, []).append(value)
        self.headers = "".join(headers)

    def get(self, kind, default=None):
        values = self.records.get(kind)
        return values[0] if values else default

    def number(self, kind):
        return int(self.get(kind, "0"))

    def header(self, name):
        """The first value of a header field (unfolded), or None."""
        import email.parser
        return email.parser.Parser().parsestr(self.headers + "\n",
                                              headersonly=True).get(name)


def read_qf(path):
    return QueueFile(Path(path).read_text(errors="surrogateescape"))


MAILQ_HEADING = ("-----Q-ID----- --Size-- -----Q-Time----- "
                 "------------Sender/Recipient-----------")


def parse_mailq(text):
    """{queue id: {"size", "sender", "status", "recipients"}} from mailq's
    sendmail layout; asserts the layout on the way."""
    lines = text.splitlines()
    assert lines[-1].startswith("\t\tTotal requests: "), text
    total = int(lines[-1].split(": ")[1])
    if total == 0:
        assert len(lines) == 2 and lines[0].endswith(" is empty"), text
        return {}
    assert re.fullmatch(r"\t\t.* \(\d+ requests?\)", lines[0]), text
    assert int(re.search(r"\((\d+) request", lines[0]).group(1)) == total
    assert lines[1] == MAILQ_HEADING, text
    entries, current = {}, None
    for line in lines[2:-1]:
        head = re.fullmatch(
            r"(\w{14}) +(\d+) (\w{3} \w{3} [ \d]\d \d\d:\d\d) <([^>]*)>",
            line)
        if head:
            current = {"size": int(head.group(2)), "sender": head.group(4),
                       "status": None, "recipients": []}
            entries[head.group(1)] = current
            continue
        assert current is not None, text
        status = re.fullmatch(r" {17}\((.*)\)", line)
        rcpt = re.fullmatch(r"\t{5} <([^>]*)>", line)
        assert status or rcpt, f"unexpected mailq line {line!r}"
        if status:
            current["status"] = status.group(1)
        else:
            current["recipients"].append(rcpt.group(1))
    assert len(entries) == total, text
    return entries
