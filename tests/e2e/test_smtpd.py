"""End-to-end tests of smtpd, the SMTP server: every reply of the protocol
(RFC 5321 codes with RFC 3463 enhanced status codes), pipelining,
dot-stuffing, bare LF/CR (no SMTP smuggling), the size limit at and over,
100+ recipients, NUL bytes, over-long lines, disconnects, the recipient
checks (local users, aliases, virtusertable error: entries), relaying and
the access table (addresses, prefixes, IPv6, host names, domains, every
value, reloaded per session), STARTTLS (smtplib, swaks, and commands
injected before the handshake), the queue files written before the 250,
a full disk, the session limits and timeouts, SIGTERM, SIGHUP and SIGKILL,
the maillog and mailstats, smtpd -i, sendmail -bs, the daemon's flags,
and the whole path SMTP -> queue -> deliver -> mailbox read back with
python's mailbox.

The daemon runs as root in a throwaway root (harness.QueueRoot) with an
unprivileged session user "mailsvc" and submit_group mail, on free
loopback ports; clients connect from other loopback addresses
(127.0.0.2...) to be someone else, and host names come from an
nss_wrapper hosts file. Most tests share one daemon (module fixture);
those that stop, reload or limit it start their own. The bugs these
tests found are noted where they are checked. E2E_KEEP=1 keeps the root of
a failed test that has a daemon of its own.
"""

import contextlib
import mailbox
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import HOSTNAME, MAIL_BIN, MAIL_GID, QueueRoot, check_sanitizer

SMTPD = MAIL_BIN / "smtpd"
SESSION_USER = "mailsvc"
SESSION_UID = 60010
QID = r"[0-9A-Za-x]{14}"
MAX_SIZE = 20000
MAX_LINE = 1000

ACCESS = """\
# the test access table
127.0.0.1\t\tRELAY
IPv6:::1\t\tRELAY
127.0.0.2\t\tOK
127.0.0.3\t\tREJECT
127.0.0.4\t\tERROR:4.7.1:451 Come back later
127.0.0.5\t\tERROR:5.7.1:550 You are not welcome here
127.0.0.6\t\tDISCARD
Connect:client9.example.org\tRELAY
.trusted.example\tRELAY
From:spammer@bad.example\tREJECT
From:.junk.example\tERROR:5.7.1:553 Junk senders go away
To:blocked@test.example\tERROR:5.7.2:550 Mailbox blocked by policy
To:relayto.example\tRELAY
"""

HOSTS = """\
127.0.0.1 localhost
::1 localhost
127.0.0.9 client9.example.org
127.0.0.10 mx.trusted.example
127.0.0.11 mx.untrusted.example
"""

VIRTUSERTABLE = """\
spam@test.example\terror:5.7.0:550 Invalid address
gone@test.example\terror:5.1.6:550 This user has moved away
info@virtual.example\talice
@catchall.example\tbob
"""

ALIASES = """\
team: alice, bob
"""


# -- the daemon -------------------------------------------------------------

def free_port():
    """A TCP port that is free on 127.0.0.1 and on ::1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET) as s4:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6) as s6:
                    s6.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def wait_for(predicate, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def make_root():
    """A QueueRoot set up for smtpd: the session user, the queue directory
    root:mail 2770, the tables, a hosts file, a statistics file and a
    self-signed certificate made with the openssl command."""
    root = QueueRoot(base=os.environ.get("E2E_TMPDIR"))
    root.add_passwd_line(f"{SESSION_USER}:x:{SESSION_UID}:{SESSION_UID}:"
                         "smtpd:/nonexistent:/usr/sbin/nologin")
    queue = root.queue_dir()
    queue.mkdir()
    os.chown(queue, 0, MAIL_GID)
    os.chmod(queue, 0o2770)
    (root.path / "access").write_text(ACCESS)
    (root.path / "virtusertable").write_text(VIRTUSERTABLE)
    (root.path / "aliases").write_text(ALIASES)
    (root.path / "hosts").write_text(HOSTS)
    (root.path / "statistics").write_text("")
    for name in ("access", "virtusertable", "aliases", "hosts",
                 "statistics"):
        os.chmod(root.path / name, 0o644)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", f"/CN={HOSTNAME}",
         "-addext", f"subjectAltName=DNS:{HOSTNAME},IP:127.0.0.1",
         "-keyout", str(root.path / "key.pem"),
         "-out", str(root.path / "cert.pem")],
        check=True, capture_output=True)
    os.chmod(root.path / "key.pem", 0o600)
    return root


def conf_lines(port, *extra, tls=True):
    # One connection per session process unless a test asks for reuse:
    # the tests count session processes.
    lines = [f"smtpd_user = {SESSION_USER}", "submit_group = mail",
             "smtpd_max_use = 1",
             f"smtpd_path = {SMTPD}",
             f"listen = 127.0.0.1:{port}, [::1]:{port}",
             f"max_message_size = {MAX_SIZE}", "max_recipients = 100",
             f"max_line_length = {MAX_LINE}",
             "local_domains = test.example, localhost"]
    if tls:
        lines += ["smtp_cert = cert.pem", "smtp_key = key.pem"]
    return lines + list(extra)


class Smtpd:
    """One smtpd daemon (-F) on a root; stop() checks it ended well."""

    def __init__(self, root, port, queue_runner=False):
        self.root = root
        self.port = port
        self.queue_runner = queue_runner
        self.proc = None
        self.stderr_path = root.path / f"smtpd-{port}.stderr"

    def env(self):
        env = self.root.queue_env()
        env["NSS_WRAPPER_HOSTS"] = str(self.root.path / "hosts")
        return env

    def start(self):
        started = self.count_log("starting daemon")
        argv = [str(SMTPD), "-C", str(self.root.conf), "-F"]
        if self.queue_runner:
            argv += ["-q", "30m"]
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen(
                argv, env=self.env(), cwd=self.root.path,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr, start_new_session=True)
        wait_for(lambda: self.count_log("starting daemon") > started
                 or self.proc.poll() is not None, what="smtpd to start")
        assert self.proc.poll() is None, self.stderr()
        return self

    def count_log(self, text):
        return sum(text in line for line in self.root.log_lines())

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def sessions(self):
        """The pids of the daemon's children (its sessions, and the
        queue runner when there is one)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except FileNotFoundError:
            return []

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError("smtpd did not stop on SIGTERM")
        self.check()

    def check(self):
        check_sanitizer(self.stderr())
        self.root.check_sanitizer_reports()

    def smtp(self, source=None, host="127.0.0.1", timeout=10):
        return smtplib.SMTP(host, self.port, timeout=timeout,
                            source_address=(source, 0) if source else None)

    def client(self, source=None, host="127.0.0.1", timeout=10):
        return Client(self.port, host, source, timeout)


class Client:
    """A raw SMTP client: bytes out, whole replies in."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10):
        self.sock = socket.create_connection(
            (host, port), timeout=timeout,
            source_address=(source, 0) if source else None)
        self.pending = b""

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        while b"\r\n" not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unread {self.pending!r}")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def reply_lines(self):
        lines = []
        while True:
            line = self.line()
            assert re.match(r"[2-5]\d\d[ -]", line), f"bad reply {line!r}"
            lines.append(line)
            if line[3] == " ":
                return lines

    def reply(self):
        """The last line of the next reply, e.g. "250 2.1.0 Sender ok"."""
        lines = self.reply_lines()
        assert all(line[:3] == lines[0][:3] for line in lines), lines
        return lines[-1]

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def cmd_lines(self, text):
        """Every line of the reply to text (EHLO, HELP)."""
        self.send(text + "\r\n")
        return self.reply_lines()

    def nothing_yet(self, wait=0.3):
        """True when the server has said nothing more within wait."""
        if self.pending:
            return False
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10)
        self.pending += chunk
        return False

    def at_eof(self, timeout=10):
        """True when the server closed the connection (after everything
        read so far)."""
        self.sock.settimeout(timeout)
        try:
            rest = self.sock.recv(65536)
        except ConnectionResetError:
            rest = b""
        self.pending += rest
        return rest == b"" and self.pending == b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def transaction(self, sender="someone@remote.example",
                    rcpts=("alice@test.example",), ehlo=True):
        """EHLO (or nothing), MAIL and RCPTs, each answered 250, then
        DATA answered 354."""
        if ehlo:
            assert self.cmd("EHLO client.example").startswith("250 ")
        assert self.cmd(f"MAIL FROM:<{sender}>").startswith("250 2.1.0")
        for rcpt in rcpts:
            assert self.cmd(f"RCPT TO:<{rcpt}>").startswith("250 2.1.5")
        assert self.cmd("DATA").startswith("354 ")


def accepted_id(reply):
    m = re.fullmatch(rf"250 2\.0\.0 ({QID}) Message accepted for delivery",
                     reply)
    assert m, reply
    return m.group(1)


def message(subject, body="Hello.\r\n", extra=""):
    return (f"From: Someone <someone@remote.example>\r\n"
            f"To: alice@test.example\r\nSubject: {subject}\r\n{extra}"
            f"\r\n{body}")


def df_bytes(root, queue_id):
    return (root.queue_dir() / ("df" + queue_id)).read_bytes()


@contextlib.contextmanager
def access_table(root, text):
    """The access table replaced by text for a while (every session reads
    it anew)."""
    path = root.path / "access"
    old = path.read_text()
    path.write_text(text)
    try:
        yield
    finally:
        path.write_text(old)


def stats_counts(root):
    """(connections from, connections rejected, ESMTP msgsrej, ESMTP
    msgsfr) from mailstats -P (the program-readable layout)."""
    out = root.run_program("mailstats", "-P")
    assert out.code == 0, out
    conn = rej = msgsrej = msgsfr = 0
    for line in out.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == "C":
            conn, rej = int(fields[1]), int(fields[3])
        elif fields and fields[0] == "5":
            assert fields[7] == "esmtp", line
            msgsfr, msgsrej = int(fields[1]), int(fields[5])
    return conn, rej, msgsrej, msgsfr


@pytest.fixture(scope="module")
def server():
    """The shared daemon (no queue runner: accepted mail stays in the
    queue to be looked at)."""
    root = make_root()
    port = free_port()
    root.configure(*conf_lines(port))
    daemon = Smtpd(root, port).start()
    try:
        yield daemon
        daemon.stop()
        assert daemon.proc.returncode == 0
    finally:
        if daemon.proc.poll() is None:
            os.killpg(daemon.proc.pid, signal.SIGKILL)
        root.remove()


@pytest.fixture
def own_root(request):
    """A root of its own for a test that starts its own daemon."""
    root = make_root()
    daemons = []
    yield root, daemons
    try:
        for daemon in daemons:
            daemon.stop()
    finally:
        for daemon in daemons:
            if daemon.proc and daemon.proc.poll() is None:
                os.killpg(daemon.proc.pid, signal.SIGKILL)
        if os.environ.get("E2E_KEEP") and getattr(request.node,
                                                  "e2e_failed", False):
            print(f"\nkept the throwaway root: {root.path}")
        else:
            root.remove()


def start_own(own_root, *extra, queue_runner=False, tls=True):
    root, daemons = own_root
    port = free_port()
    root.configure(*conf_lines(port, *extra, tls=tls))
    daemon = Smtpd(root, port, queue_runner=queue_runner)
    daemons.append(daemon)
    return daemon.start()


# -- greeting, EHLO and every reply -----------------------------------------

def test_greeting_and_ehlo_keywords(server):
    smtp = server.smtp()
    try:
        code, banner = smtp.docmd("NOOP")
        assert (code, banner) == (250, b"2.0.0 OK")
        code, text = smtp.ehlo("client.example")
        assert code == 250
        assert text.split(b"\n")[0] == (
            b"test.example Hello localhost [127.0.0.1], pleased to meet you")
        assert smtp.esmtp_features == {
            "pipelining": "", "size": str(MAX_SIZE), "8bitmime": "",
            "enhancedstatuscodes": "", "starttls": "", "help": ""}
        code, text = smtp.helo("client.example")
        assert (code, text) == (250, b"test.example Hello localhost "
                                     b"[127.0.0.1], pleased to meet you")
    finally:
        smtp.quit()


def test_greeting_names_the_host(server):
    with server.client() as c:
        assert c.reply() == "220 test.example ESMTP ready"


def test_every_command_reply_and_enhanced_code(server):
    with server.client() as c:
        assert c.reply().startswith("220 ")
        steps = [
            ("NOOP", "250 2.0.0 OK"),
            ("MAIL FROM:<a@remote.example>", "503 5.5.1 "),
            ("RCPT TO:<alice@test.example>", "503 5.5.1 "),
            ("DATA", "503 5.5.1 "),
            ("RSET", "250 2.0.0 "),
            ("VRFY alice", "252 2.5.2 "),
            ("VRFY", "501 5.5.4 "),
            ("EXPN team", "502 5.7.0 "),
            ("XYZZY", "500 5.5.1 "),
            ("STARTTLS extra", "501 5.5.4 "),
            ("EHLO", "501 5.5.4 "),
            # A CR in the name once reached the Received line.
            ("EHLO evil\rX-Injected: yes", "501 5.5.4 "),
            ("HELO client.example", "250 test.example Hello "),
            ("MAIL FROM:someone@remote.example", "501 5.1.7 "),
            ("MAIL FROM:<someone@remote.example> SIZE=10", "555 5.5.4 "),
            ("EHLO client.example", "250 HELP"),
            ("MAIL FROM:<someone@remote.example> FOO=BAR", "555 5.5.4 "),
            ("MAIL FROM:<someone@remote.example> BODY=8BITMIME",
             "250 2.1.0 Sender ok"),
            ("MAIL FROM:<other@remote.example>", "503 5.5.1 "),
            ("DATA", "554 5.5.1 "),
            ("RCPT TO:<>", "501 5.1.3 "),
            ("RCPT TO:<alice@test.example> NOTIFY=NEVER", "555 5.5.4 "),
            ("RCPT TO:<nobody@test.example>",
             "550 5.1.1 <nobody@test.example>... User unknown"),
            ("RCPT TO:<alice@test.example>", "250 2.1.5 Recipient ok"),
            ("RSET", "250 2.0.0 "),
            ("DATA", "503 5.5.1 "),
            ("MAIL FROM:<>", "250 2.1.0 "),
            ("RCPT TO:<Alice@Test.Example>", "250 2.1.5 "),
            ("DATA", "354 End data with <CR><LF>.<CR><LF>"),
        ]
        for command, want in steps:
            got = c.cmd(command)
            assert got.startswith(want), (command, got)
        queue_id = accepted_id(c.cmd(message("replies") + "."))
        help_lines = c.cmd_lines("HELP")
        assert help_lines[0].startswith("214-2.0.0 ")
        assert help_lines[-1].startswith("214 2.0.0 ")
        assert c.cmd("QUIT") == "221 2.0.0 test.example closing connection"
        assert c.at_eof()
    qf = server.root.qf(queue_id)
    assert qf.get("S") == ""
    assert [r["address"] for r in qf.recipients] == ["Alice@Test.Example"]


def test_unknown_local_user_is_550_5_1_1(server):
    smtp = server.smtp()
    try:
        smtp.ehlo("client.example")
        smtp.mail("someone@remote.example")
        assert smtp.rcpt("nobody@test.example") == (
            550, b"5.1.1 <nobody@test.example>... User unknown")
        assert smtp.rcpt("nobody@localhost")[0] == 550
        assert smtp.rcpt("alice@test.example") == (
            250, b"2.1.5 Recipient ok")
    finally:
        smtp.quit()
    assert any("reject=550 5.1.1 <nobody@test.example>... User unknown"
               in line for line in server.root.log_lines())


def test_aliases_postmaster_extensions_and_virtusertable(server):
    smtp = server.smtp()
    try:
        smtp.ehlo("client.example")
        smtp.mail("someone@remote.example")
        for rcpt in ("team@test.example", "postmaster",
                     "postmaster@test.example", "alice+lists@test.example",
                     "bob@localhost", "info@virtual.example",
                     "anyone@catchall.example"):
            assert smtp.rcpt(rcpt)[0] == 250, rcpt
        # A virtual domain without a catch-all knows only its entries.
        assert smtp.rcpt("other@virtual.example") == (
            550, b"5.1.1 <other@virtual.example>... User unknown")
    finally:
        smtp.quit()


def test_virtusertable_error_entry_answers_with_its_own_code(server):
    smtp = server.smtp()
    try:
        smtp.ehlo("client.example")
        smtp.mail("someone@remote.example")
        assert smtp.rcpt("spam@test.example") == (
            550, b"5.7.0 <spam@test.example>... Invalid address")
        assert smtp.rcpt("gone@test.example") == (
            550, b"5.1.6 <gone@test.example>... This user has moved away")
    finally:
        smtp.quit()
    assert any("ruleset=check_rcpt, arg1=<spam@test.example>" in line and
               "reject=550 5.7.0" in line
               for line in server.root.log_lines())


# -- one message --------------------------------------------------------------

def test_qf_and_df_exist_when_250_arrives(server):
    with server.client() as c:
        assert c.reply().startswith("220 ")
        c.transaction(rcpts=("alice@test.example", "bob@test.example"))
        c.send(message("durable", "line one\r\nline two\r\n") + ".\r\n")
        reply = c.reply()
        queue_id = accepted_id(reply)
        # Nothing may be missing at the moment the client hears 250.
        queue = server.root.queue_dir()
        assert (queue / ("qf" + queue_id)).is_file()
        assert (queue / ("df" + queue_id)).is_file()
        assert not (queue / ("tf" + queue_id)).exists()
        assert c.cmd("QUIT").startswith("221 ")
    qf = server.root.qf(queue_id)
    assert qf.get("S") == "someone@remote.example"
    assert [r["address"] for r in qf.recipients] == [
        "alice@test.example", "bob@test.example"]
    assert all(r["state"] == "Q" for r in qf.recipients)
    assert qf.headers.startswith("Received: from client.example (localhost "
                                 "[127.0.0.1])\n\tby test.example with "
                                 f"ESMTP id {queue_id};")
    assert "Subject: durable\n" in qf.headers
    assert df_bytes(server.root, queue_id) == b"line one\nline two\n"
    log = server.root.log_lines()
    assert any(re.search(rf"smtpd\[\d+\]: {queue_id}: from=<someone@remote"
                         r"\.example>, size=\d+, class=0, nrcpts=2, "
                         r"proto=ESMTP, daemon=smtpd, relay=localhost "
                         r"\[127\.0\.0\.1\]$", line) for line in log), log


def test_pipelined_commands_answer_in_order(server):
    with server.client() as c:
        assert c.reply().startswith("220 ")
        lines = c.cmd_lines("EHLO client.example")
        assert "250-PIPELINING" in lines
        # RFC 2920: a whole group in one packet, the replies in order.
        c.send("MAIL FROM:<someone@remote.example> SIZE=200\r\n"
               "RCPT TO:<alice@test.example>\r\n"
               "RCPT TO:<nobody@test.example>\r\n"
               "RCPT TO:<bob@test.example>\r\n"
               "DATA\r\n")
        assert c.reply().startswith("250 2.1.0")
        assert c.reply().startswith("250 2.1.5")
        assert c.reply().startswith("550 5.1.1")
        assert c.reply().startswith("250 2.1.5")
        assert c.reply().startswith("354 ")
        c.send(message("pipelined one") + ".\r\n"
               "MAIL FROM:<x@remote.example>\r\n"
               "RCPT TO:<nobody@test.example>\r\n"
               "DATA\r\n"
               "RSET\r\n"
               "MAIL FROM:<y@remote.example>\r\n"
               "RCPT TO:<carol@test.example>\r\n"
               "DATA\r\n")
        first = accepted_id(c.reply())
        for want in ("250 2.1.0", "550 5.1.1", "554 5.5.1", "250 2.0.0",
                     "250 2.1.0", "250 2.1.5", "354 "):
            got = c.reply()
            assert got.startswith(want), (want, got)
        c.send(message("pipelined two") + ".\r\nQUIT\r\n")
        second = accepted_id(c.reply())
        assert c.reply().startswith("221 ")
        assert c.at_eof()
    assert [r["address"] for r in server.root.qf(first).recipients] == [
        "alice@test.example", "bob@test.example"]
    assert server.root.qf(second).get("S") == "y@remote.example"


def test_dot_stuffing_is_undone(server):
    body = ("..one leading dot\r\n...two\r\n.\t\r\n. \r\nmid.dle\r\n"
            "..\r\nlast\r\n")
    with server.client() as c:
        assert c.reply().startswith("220 ")
        c.transaction()
        queue_id = accepted_id(c.cmd(message("dots", body) + "."))
        assert c.cmd("QUIT").startswith("221")
    assert df_bytes(server.root, queue_id) == (
        b".one leading dot\n..two\n\t\n \nmid.dle\n.\nlast\n")

    # smtplib stuffs the dots itself: what it sends comes back whole.
    text = "Subject: smtplib dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n"
    smtp = server.smtp()
    try:
        smtp.ehlo("client.example")
        smtp.mail("someone@remote.example")
        smtp.rcpt("alice@test.example")
        code, reply = smtp.data(text.encode())
        assert code == 250
        queue_id = accepted_id(f"{code} {reply.decode()}")
    finally:
        smtp.quit()
    assert df_bytes(server.root, queue_id) == b".\n..\n.x\nend\n"


SMUGGLING = {
    "lf-dot-lf": "a\n.\nMAIL", "cr-dot-cr": "a\r.\rMAIL",
    "crlf-dot-lf": "a\r\n.\nMAIL", "lf-dot-crlf": "a\n.\r\nMAIL",
    "cr-dot-crlf": "a\r.\r\nMAIL", "crlf-dot-cr": "a\r\n.\rMAIL",
    "lf-dot-cr": "a\n.\rMAIL", "crlf-dot-cr-crlf": "a\r\n.\r\r\nMAIL",
}


@pytest.mark.parametrize("trick", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_bare_lf_or_cr_around_the_dot_never_ends_data(server, trick):
    """SMTP smuggling: only CRLF.CRLF ends the data, so a second message
    hidden behind a bare LF or CR stays text of the first."""
    with server.client() as c:
        assert c.reply().startswith("220 ")
        c.transaction(rcpts=("alice@test.example",))
        c.send("Subject: smuggling\r\n\r\n" + trick +
               " FROM:<evil@remote.example>\r\n"
               "RCPT TO:<bob@test.example>\r\nDATA\r\n"
               "Subject: smuggled\r\n\r\nevil\r\n")
        assert c.nothing_yet(), "the server answered inside the data"
        queue_id = accepted_id(c.cmd("."))
        assert c.cmd("QUIT").startswith("221")
    qf = server.root.qf(queue_id)
    assert [r["address"] for r in qf.recipients] == ["alice@test.example"]
    body = df_bytes(server.root, queue_id)
    assert b"FROM:<evil@remote.example>\n" in body
    assert b"Subject: smuggled\n" in body
    assert not any("evil@remote.example" in line and "from=" in line
                   for line in server.root.log_lines())


def test_bare_lf_and_cr_are_kept_as_text(server):
    with server.client() as c:
        assert c.reply().startswith("220 ")
        c.transaction()
        queue_id = accepted_id(c.cmd("Subject: bare\r\n\r\n"
                                     "one\ntwo\rthree\r\n."))
        assert c.cmd("QUIT").startswith("221")
    assert df_bytes(server.root, queue_id) == b"one\ntwo\rthree\n"


# -- limits -------------------------------------------------------------------

def sized_message(size):
    """A message of exactly size octets as sent (CRLF line ends, ending
    in CRLF), without dots at line starts."""
    text = "Subject: size\r\n\r\n" + ("x" * 76 + "\r\n") * (size // 78 + 1)
    text = text[:size - 2] + "\r\n"
    assert len(text) == size
    return text


def test_size_limit_in_mail_and_in_data_at_and_over(server):
    with server.client() as c:
        assert c.reply().startswith("220 ")
        assert c.cmd("EHLO client.example") == "250 HELP"
        assert c.cmd(f"MAIL FROM:<a@remote.example> SIZE={MAX_SIZE + 1}"
                     ).startswith("552 5.3.4 ")
        assert c.cmd(f"MAIL FROM:<a@remote.example> SIZE={MAX_SIZE}"
                     ).startswith("250 2.1.0")
        assert c.cmd("RCPT TO:<alice@test.example>").startswith("250")
        assert c.cmd("DATA").startswith("354")
        at_limit = accepted_id(c.cmd(sized_message(MAX_SIZE) + "."))

        before = set(server.root.queue_files())
        c.transaction(ehlo=False)
        assert c.cmd(sized_message(MAX_SIZE + 1) + ".").startswith(
            "552 5.3.4 ")
        # Far over, and with a SIZE that lied: read to the end, refused.
        c.transaction(ehlo=False)
        assert c.cmd(sized_message(10 * MAX_SIZE) + ".").startswith(
            "552 5.3.4 ")
        assert c.cmd("NOOP").startswith("250")
        assert c.cmd("QUIT").startswith("221")
    assert set(server.root.queue_files()) == before
    sent_body = sized_message(MAX_SIZE).partition("\r\n\r\n")[2]
    assert df_bytes(server.root, at_limit) == \
        sent_body.replace("\r\n", "\n").encode()
    assert any("refused: size over" in line
               for line in server.root.log_lines())


def test_100_recipients_accepted_and_the_101st_is_452(server):
    rcpts = [f"alice+{n}@test.example" for n in range(101)]
    smtp = server.smtp()
    try:
        smtp.ehlo("client.example")
        refused = smtp.sendmail("someone@remote.example", rcpts,
                                message("many").encode())
    finally:
        smtp.quit()
    assert refused == {rcpts[100]: (452, b"4.5.3 Too many recipients")}
    ids = [n for n in server.root.queued_ids()
           if server.root.qf(n).header("Subject") == "many"]
    assert len(ids) == 1
    assert [r["address"] for r in server.root.qf(ids[0]).recipients] == \
        rcpts[:100]


def test_nul_bytes_are_refused(server):
    before = set(server.root.queue_files())
    with server.client() as c:
        assert c.reply().startswith("220 ")
        assert c.cmd("EHLO client\0.example").startswith("500 5.5.2 ")
        c.transaction()
        c.send(b"Subject: nul\r\n\r\nbefore\0after\r\n.\r\n")
        assert c.reply().startswith("554 5.6.0 ")
        assert c.cmd("NOOP").startswith("250")
        assert c.cmd("QUIT").startswith("221")
    assert set(server.root.queue_files()) == before


def test_over_long_lines(server):
    before = set(server.root.queue_files())
    with server.client() as c:
        assert c.reply().startswith("220 ")
        c.transaction()
        ok_line = "y" * MAX_LINE
        queue_id = accepted_id(c.cmd(f"Subject: long\r\n\r\n{ok_line}"
                                     "\r\n."))
        c.transaction(ehlo=False)
        assert c.cmd("Subject: long\r\n\r\n" + "z" * (MAX_LINE + 1) +
                     "\r\n.").startswith("554 5.6.0 ")
        # A command line over 512 octets and more: refused, and the
        # session goes on.
        assert c.cmd("NOOP " + "q" * 5000).startswith("500 5.5.2 ")
        assert c.cmd("NOOP").startswith("250")
        assert c.cmd("QUIT").startswith("221")
    assert set(server.root.queue_files()) == before | {
        "df" + queue_id, "qf" + queue_id}
    assert df_bytes(server.root, queue_id) == ok_line.encode() + b"\n"


def test_disconnect_in_data_leaves_nothing_in_the_queue(server):
    before = set(server.root.queue_files())
    lost = server.count_log("lost input channel")
    c = server.client()
    assert c.reply().startswith("220 ")
    c.transaction()
    c.send("Subject: cut\r\n\r\n" + "half a message\r\n" * 500 + "and th")
    time.sleep(0.2)
    c.close()
    wait_for(lambda: server.count_log("lost input channel") > lost,
             what="the session to notice")
    # A client that goes away right after the dot (no QUIT) has its
    # message, though.
    c = server.client()
    assert c.reply().startswith("220 ")
    c.transaction()
    queue_id = accepted_id(c.cmd(message("no quit") + "."))
    c.close()
    wait_for(lambda: set(server.root.queue_files()) == before | {
        "df" + queue_id, "qf" + queue_id}, what="an unchanged queue")


# -- relaying and the access table -------------------------------------------

def relay_reply(server, source=None, host="127.0.0.1",
                rcpt="someone@elsewhere.example"):
    """The reply to RCPT TO:<rcpt> from a client at source or over
    host."""
    with server.client(source=source, host=host) as c:
        assert c.reply().startswith("220 ")
        assert c.cmd("EHLO client.example").startswith("250 ")
        assert c.cmd("MAIL FROM:<sender@remote.example>").startswith("250 ")
        reply = c.cmd(f"RCPT TO:<{rcpt}>")
        assert c.cmd("QUIT").startswith("221 ")
        return reply


def test_relay_from_a_relay_client_is_allowed(server):
    assert relay_reply(server) == "250 2.1.5 Recipient ok"


def test_relay_from_a_non_relay_address_is_denied(server):
    rej_before = server.count_log("Relaying denied")
    assert relay_reply(server, "127.0.0.2") == (
        "550 5.7.1 <someone@elsewhere.example>... Relaying denied")
    assert relay_reply(server, "127.0.0.2",
                       rcpt="someone@sub.test.example").startswith("550 ")
    # Local mail and To: RELAY domains are fine from anywhere.
    assert relay_reply(server, "127.0.0.2",
                       rcpt="alice@test.example").startswith("250 ")
    assert relay_reply(server, "127.0.0.2",
                       rcpt="anyone@relayto.example").startswith("250 ")
    assert server.count_log("Relaying denied") == rej_before + 2
    assert any(re.search(r"ruleset=check_rcpt, arg1=<someone@elsewhere"
                         r"\.example>, relay=unknown \[127\.0\.0\.2\], "
                         r"reject=550 5\.7\.1 ", line)
               for line in server.root.log_lines())


def test_relay_with_source_route_and_percent_hack_is_denied(server):
    assert relay_reply(server, "127.0.0.2",
                       rcpt="@test.example:someone@elsewhere.example"
                       ).startswith("550 ")
    assert relay_reply(server, "127.0.0.2",
                       rcpt="someone%elsewhere.example@test.example"
                       ).startswith("550 ")


def test_ipv6_listener_and_ipv6_access_key(server):
    smtp = server.smtp(host="::1")
    try:
        code, text = smtp.ehlo("client.example")
        assert code == 250 and b"[::1]" in text.split(b"\n")[0]
    finally:
        smtp.quit()
    assert relay_reply(server, host="::1").startswith("250 ")
    with access_table(server.root,
                      "IPv6:::1\tERROR:5.7.1:550 Not over IPv6\n"):
        with server.client(host="::1") as c:
            assert c.reply() == "554 5.7.1 Not over IPv6"
    with access_table(server.root, "IPv6:0:0:0:0:0:0:0\tOK\n"):
        # An entry (here a prefix) decides: OK is not RELAY.
        assert relay_reply(server, host="::1").startswith("550 ")
    assert any("connect from localhost [::1]" in line
               for line in server.root.log_lines())


def test_access_connect_reject_and_error(server):
    with server.client(source="127.0.0.3") as c:
        assert c.reply() == "554 5.7.1 Access denied"
        # (Once "503 5.7.1 5.7.1 Access denied".)
        assert c.cmd("EHLO client.example") == "503 5.7.1 Access denied"
        assert c.cmd("MAIL FROM:<a@remote.example>").startswith("503 5.7.1")
        assert c.cmd("NOOP").startswith("250")
        assert c.cmd("QUIT").startswith("221")
        assert c.at_eof()
    with server.client(source="127.0.0.4") as c:
        assert c.reply() == "421 4.7.1 Come back later"
        assert c.at_eof()
    with server.client(source="127.0.0.5") as c:
        assert c.reply() == "554 5.7.1 You are not welcome here"
    log = server.root.log_lines()
    assert any("ruleset=check_relay, arg1=<127.0.0.3>, relay=unknown "
               "[127.0.0.3], reject=550 5.7.1 Access denied" in line
               for line in log), log


def test_access_discard_accepts_and_drops(server):
    before = set(server.root.queue_files())
    with server.client(source="127.0.0.6") as c:
        assert c.reply().startswith("220 ")
        c.transaction()
        accepted_id(c.cmd(message("discard me") + "."))
        assert c.cmd("QUIT").startswith("221")
    assert set(server.root.queue_files()) == before
    assert any("discarded (access table)" in line
               for line in server.root.log_lines())


def test_a_discarded_sender_does_not_discard_the_next_message(server):
    with access_table(server.root,
                      ACCESS + "From:dropme@remote.example\tDISCARD\n"):
        with server.client() as c:
            assert c.reply().startswith("220 ")
            before = set(server.root.queue_files())
            c.transaction(sender="dropme@remote.example")
            dropped = accepted_id(c.cmd(message("dropped") + "."))
            assert set(server.root.queue_files()) == before
            # The next transaction of the session has a sender of its
            # own. (Once the DISCARD stuck to the session: mail lost.)
            c.transaction(sender="keepme@remote.example", ehlo=False)
            kept = accepted_id(c.cmd(message("kept") + "."))
            assert c.cmd("QUIT").startswith("221")
    assert set(server.root.queue_files()) == before | {"df" + kept,
                                                       "qf" + kept}
    assert any(f"{dropped}: from=<dropme@remote.example>: discarded"
               in line for line in server.root.log_lines())


def test_access_senders_and_recipients(server):
    smtp = server.smtp()
    try:
        smtp.ehlo("client.example")
        assert smtp.mail("spammer@bad.example") == (
            550, b"5.7.1 <spammer@bad.example>... Access denied")
        assert smtp.mail("x@host.junk.example") == (
            553, b"5.7.1 <x@host.junk.example>... Junk senders go away")
        assert smtp.mail("fine@remote.example")[0] == 250
        assert smtp.rcpt("blocked@test.example") == (
            550, b"5.7.2 <blocked@test.example>... Mailbox blocked by "
                 b"policy")
    finally:
        smtp.quit()
    assert any("ruleset=check_mail, arg1=<spammer@bad.example>" in line
               for line in server.root.log_lines())


def test_access_host_names_and_domains(server):
    # 127.0.0.9 is client9.example.org (entry for the host name);
    # 127.0.0.10 is mx.trusted.example (entry .trusted.example);
    # 127.0.0.11 has a name but no entry.
    smtp = server.smtp(source="127.0.0.9")
    try:
        assert smtp.ehlo("x")[1].split(b"\n")[0] == (
            b"test.example Hello client9.example.org [127.0.0.9], "
            b"pleased to meet you")
    finally:
        smtp.quit()
    assert relay_reply(server, "127.0.0.9").startswith("250 ")
    assert relay_reply(server, "127.0.0.10").startswith("250 ")
    assert relay_reply(server, "127.0.0.11").startswith("550 ")
    with access_table(server.root, ".example.org\tREJECT\n"):
        with server.client(source="127.0.0.9") as c:
            assert c.reply() == "554 5.7.1 Access denied"


def test_access_prefixes_and_the_table_read_per_session(server):
    assert relay_reply(server, "127.0.0.2").startswith("550 ")
    with access_table(server.root, "127.0.0.\tRELAY\n"):
        assert relay_reply(server, "127.0.0.2").startswith("250 ")
        assert relay_reply(server, "127.0.0.5").startswith("250 ")
    with access_table(server.root, "127.0.0\tRELAY\n"):
        assert relay_reply(server, "127.0.0.3").startswith("250 ")
    with access_table(server.root, "192.168.\tRELAY\n127.0.0.2\tOK\n"):
        assert relay_reply(server, "127.0.0.2").startswith("550 ")
        # With no entry, localhost still relays (INTERFACE.md, the
        # seed's default); this once held only without a table.
        assert relay_reply(server).startswith("250 ")
    with access_table(server.root, "127.0.0.1\tREJECT\n"):
        with server.client() as c:
            assert c.reply() == "554 5.7.1 Access denied"
    # Back to the module's table: the same session rules as before.
    assert relay_reply(server, "127.0.0.2").startswith("550 ")
    with server.client(source="127.0.0.3") as c:
        assert c.reply().startswith("554 ")


def test_an_unreadable_table_is_a_temporary_failure(server):
    path = server.root.path / "access"
    with access_table(server.root, "127.0.0.1 RELAY\n"):
        os.chmod(path, 0o600)   # the session user cannot read it
        try:
            with server.client() as c:
                assert c.reply().startswith("421 4.3.0 ")
        finally:
            os.chmod(path, 0o644)
    with server.client() as c:
        assert c.reply().startswith("220 ")


# -- STARTTLS -----------------------------------------------------------------

def tls_context(root):
    context = ssl.create_default_context(cafile=str(root.path / "cert.pem"))
    return context


def test_starttls_with_smtplib(server):
    smtp = server.smtp()
    try:
        smtp.ehlo("client.example")
        assert smtp.has_extn("starttls")
        code, _ = smtp.starttls(context=tls_context(server.root))
        assert code == 220
        smtp.ehlo("client.example")
        assert not smtp.has_extn("starttls")
        assert smtp.has_extn("pipelining")
        assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")
        smtp.mail("someone@remote.example")
        smtp.rcpt("alice@test.example")
        code, text = smtp.data(message("over tls").encode())
        queue_id = accepted_id(f"{code} {text.decode()}")
        assert smtp.docmd("STARTTLS")[0] == 503
    finally:
        smtp.quit()
    assert f"with ESMTPS id {queue_id}" in server.root.qf(queue_id).headers
    assert any(re.search(r"STARTTLS from localhost \[127\.0\.0\.1\]: "
                         r"TLSv1\.[23], ", line)
               for line in server.root.log_lines())


def test_starttls_with_swaks(server):
    proc = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.port),
         "--tls", "--helo", "swaks.example", "--from", "swaks@remote.example",
         "--to", "alice@test.example", "--header", "Subject: via swaks",
         "--body", "Sent by swaks over TLS."],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TLS started" in proc.stdout
    m = re.search(rf"<~  250 2\.0\.0 ({QID}) Message accepted", proc.stdout)
    assert m, proc.stdout
    assert b"Sent by swaks over TLS." in df_bytes(server.root, m.group(1))


def test_commands_injected_before_the_tls_handshake_are_dropped(server):
    """CVE-2011-0411: what follows STARTTLS in the same packet was sent
    in the clear and must not be taken as said under TLS."""
    with server.client() as c:
        assert c.reply().startswith("220 ")
        assert "250-STARTTLS" in c.cmd_lines("EHLO client.example")
        c.send("STARTTLS\r\nMAIL FROM:<evil@remote.example>\r\n"
               "RCPT TO:<alice@test.example>\r\n")
        assert c.line() == "220 2.0.0 Ready to start TLS"
        assert c.pending == b"", "the server answered injected commands"
        c.sock = tls_context(server.root).wrap_socket(
            c.sock, server_hostname=HOSTNAME)
        # Had the injected MAIL been kept, this would be 503 "Sender
        # already specified" or the RCPT would have been taken.
        assert c.cmd("MAIL FROM:<good@remote.example>").startswith(
            "503 5.5.1 ")   # no EHLO yet in the new session
        lines = c.cmd_lines("EHLO client.example")
        assert not any("STARTTLS" in line for line in lines)
        assert c.cmd("DATA").startswith("503 5.5.1 ")
        assert c.cmd("MAIL FROM:<good@remote.example>").startswith("250 ")
        assert c.cmd("STARTTLS").startswith("503 5.5.1 ")
        assert c.cmd("QUIT").startswith("221 ")
    assert not any("evil@remote.example" in line
                   for line in server.root.log_lines())


def test_starttls_is_not_offered_without_a_certificate(own_root):
    daemon = start_own(own_root, tls=False)
    smtp = daemon.smtp()
    try:
        smtp.ehlo("client.example")
        assert not smtp.has_extn("starttls")
        assert smtp.docmd("STARTTLS") == (502, b"5.5.1 STARTTLS not "
                                               b"available")
    finally:
        smtp.quit()


# -- the whole path -----------------------------------------------------------

def test_smtp_to_queue_to_deliver_to_mailbox(own_root):
    root = own_root[0]
    daemon = start_own(own_root, queue_runner=True)
    body = "First line.\r\n.dot line\r\nLast line.\r\n"
    smtp = daemon.smtp()
    try:
        smtp.ehlo("client.example")
        refused = smtp.sendmail(
            "someone@remote.example",
            ["team@test.example", "info@virtual.example"],
            message("full path", body).encode())
        assert refused == {}
        smtp.starttls(context=tls_context(root))
        smtp.ehlo("client.example")
        smtp.sendmail("other@remote.example", ["carol"],
                      message("tls path").encode())
    finally:
        smtp.quit()

    # The runner, woken by the daemon, delivers at once; the queue is
    # empty when every recipient is done.
    wait_for(lambda: root.queue_files() == [] and
             all(root.mbox(u).exists() for u in ("alice", "bob", "carol")),
             timeout=60, what="the deliveries")
    box = mailbox.mbox(str(root.mbox("alice")), create=False)
    try:
        messages = list(box)
    finally:
        box.close()
    # team -> alice, bob; info@virtual.example -> alice: alice gets one
    # copy (the same message, one recipient after resolution) or two.
    assert 1 <= len(messages) <= 2
    msg = messages[0]
    assert msg["Subject"] == "full path"
    assert msg["Return-Path"] == "<someone@remote.example>"
    assert msg.get_payload() == "First line.\n.dot line\nLast line.\n"
    received = msg.get_all("Received")[0]
    assert re.match(r"from client\.example \(localhost \[127\.0\.0\.1\]\)"
                    r"\s+by test\.example with ESMTP id ", received)
    bob = harness.read_mbox(root.mbox("bob"))
    assert b"Subject: full path" in bob[0][1]
    carol = mailbox.mbox(str(root.mbox("carol")), create=False)
    try:
        msg = list(carol)[0]
    finally:
        carol.close()
    assert msg["Subject"] == "tls path"
    assert "with ESMTPS id" in msg["Received"]
    assert any("stat=Sent" in line and "carol" in line
               for line in root.log_lines())


# -- smtpd -i, sendmail -bs, a full disk --------------------------------------

def script(*messages_, helo="EHLO client.example"):
    parts = [helo]
    for subject in messages_:
        parts += ["MAIL FROM:<someone@remote.example>",
                  "RCPT TO:<alice@test.example>", "DATA",
                  message(subject) + "."]
    parts.append("QUIT")
    return ("\r\n".join(parts) + "\r\n").encode()


def replies(output):
    return [line for line in output.decode(errors="replace").split("\r\n")
            if line and line[3] == " "]


def test_smtpd_i_runs_one_session_on_stdin_and_stdout(server):
    proc = subprocess.run(
        [str(SMTPD), "-C", str(server.root.conf), "-i"],
        input=script("inetd style"), capture_output=True,
        env=server.env(), cwd=server.root.path, timeout=30)
    check_sanitizer(proc.stderr.decode(errors="replace"))
    assert proc.returncode == 0, proc.stderr
    got = replies(proc.stdout)
    assert got[0] == "220 test.example ESMTP ready"
    assert [r[:3] for r in got] == ["220", "250", "250", "250", "354", "250",
                                    "221"]
    queue_id = accepted_id(got[5])
    assert server.root.qf(queue_id).get("S") == "someone@remote.example"
    # The session ran as the session user: its files are not root's.
    st = (server.root.queue_dir() / ("qf" + queue_id)).stat()
    assert (st.st_uid, st.st_gid) == (SESSION_UID, MAIL_GID)


def test_sendmail_bs_speaks_smtp_on_stdin(server):
    out = server.root.run_program("sendmail", "-bs",
                                  message=script("bs", helo="HELO x"))
    assert out.code == 0, out
    got = out.stdout.split("\r\n")
    codes = [line[:3] for line in got if line]
    assert codes == ["220", "250", "250", "250", "354", "250", "221"], got
    queue_id = accepted_id(got[5])
    assert server.root.qf(queue_id).header("Subject") == "bs"
    assert "with SMTP id" in server.root.qf(queue_id).headers


def test_full_disk_is_452_and_leaves_nothing_half_written(server):
    """A 64 KiB tmpfs over the queue directory, in a private mount
    namespace (nothing outside sees it), with smtpd -i in it."""
    root = server.root
    conf = root.path / "diskfull.conf"
    conf.write_text(root.conf.read_text().replace(
        f"max_message_size = {MAX_SIZE}", "max_message_size = 1m"))
    listing = root.path / "diskfull.listing"
    body_64k = "".join(f"{n:063d}\r\n" for n in range(1024))   # 64 KiB
    parts = ["EHLO client.example"]
    for body in ("x" * 70 + "\r\n") * 1500, body_64k, "small\r\n":
        parts += ["MAIL FROM:<someone@remote.example>",
                  "RCPT TO:<alice@test.example>", "DATA",
                  "Subject: full\r\n\r\n" + body + "."]
    parts.append("QUIT")
    queue = root.queue_dir()
    shell = (f"mount -t tmpfs -o size=64k,mode=2770 tmpfs '{queue}' && "
             f"chown 0:{MAIL_GID} '{queue}' && "
             f"'{SMTPD}' -C '{conf}' -i; rc=$?; "
             f"ls -A '{queue}' > '{listing}'; exit $rc")
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell],
        input=("\r\n".join(parts) + "\r\n").encode(), capture_output=True,
        env=server.env(), cwd=root.path, timeout=60)
    check_sanitizer(proc.stderr.decode(errors="replace"))
    assert proc.returncode == 0, proc.stderr
    got = replies(proc.stdout)
    codes = [r[:3] for r in got]
    assert codes == ["220", "250", "250", "250", "354", "452", "250", "250",
                     "354", "452", "250", "250", "354", "250", "221"], got
    assert got[5].startswith("452 4.3.1 ")   # no room for the df
    assert got[9].startswith("452 4.3.1 ")   # no room for the qf
    queue_id = accepted_id(got[13])
    names = sorted(listing.read_text().split())
    assert [n for n in names if n != ".trigger"] == sorted(
        ["df" + queue_id, "qf" + queue_id])
    assert not (queue / ("qf" + queue_id)).exists()   # it was the tmpfs
    log = [line for line in root.log_lines() if "No space left" in line]
    assert any(re.search(r"/queue/df\w+: cannot write", line)
               for line in log), log
    assert any(re.search(r"/queue/tf\w+: cannot write", line)
               for line in log), log


# -- processes, signals, the log and the counters -----------------------------

def test_bad_flags_and_a_bad_configuration_are_refused(server):
    root = server.root
    for args, code in ((["-x"], 64), (["-q", "0"], 64), (["-q", "soon"], 64),
                       (["-i", "extra"], 64)):
        proc = subprocess.run([str(SMTPD), "-C", str(root.conf), *args],
                              capture_output=True, env=server.env(),
                              stdin=subprocess.DEVNULL, timeout=30)
        assert proc.returncode == code, (args, proc)
        assert b"usage: smtpd" in proc.stderr
    bad = root.path / "bad.conf"
    for line in ("max_recipients = 99", "max_line_length = 999",
                 "command_timeout = soon", "listen_on = 127.0.0.1:25"):
        bad.write_text(root.conf.read_text() + line + "\n")
        proc = subprocess.run([str(SMTPD), "-C", str(bad), "-i"],
                              capture_output=True, env=server.env(),
                              stdin=subprocess.DEVNULL, timeout=30)
        assert proc.returncode == 78, (line, proc)
        assert f"{bad}:{len(root.conf.read_text().splitlines()) + 1}" in \
            proc.stderr.decode(), (line, proc.stderr)
    # A listen address that is not one.
    bad.write_text(root.conf.read_text().replace(
        f"listen = 127.0.0.1:{server.port}", "listen = nowhere"))
    proc = subprocess.run([str(SMTPD), "-C", str(bad), "-F"],
                          capture_output=True, env=server.env(),
                          stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 78, proc
    assert b"listen: bad address nowhere" in proc.stderr


def daemon_pids(conf):
    """The processes whose command line names conf."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(conf).encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def test_without_f_smtpd_goes_into_the_background(own_root):
    root = own_root[0]
    port = free_port()
    root.configure(*conf_lines(port))
    daemon = Smtpd(root, port)
    proc = subprocess.run([str(SMTPD), "-C", str(root.conf)],
                          env=daemon.env(), cwd=root.path, timeout=30,
                          stdin=subprocess.DEVNULL, capture_output=True)
    assert proc.returncode == 0, proc
    try:
        wait_for(lambda: daemon.count_log("starting daemon"),
                 what="the daemon")
        with daemon.client() as c:
            assert c.reply().startswith("220 ")
            assert c.cmd("QUIT").startswith("221 ")
        wait_for(lambda: len(daemon_pids(root.conf)) == 1,
                 what="the session to end")
        pid = daemon_pids(root.conf)[0]
        # Detached: the leader of a session of its own, not our child.
        assert os.getsid(pid) == pid
        assert int(Path(f"/proc/{pid}/stat").read_text().split()[3]) != \
            os.getpid()
    finally:
        for pid in daemon_pids(root.conf):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not daemon_pids(root.conf), what="the daemon to stop")
    assert daemon.count_log("daemon stopped") == 1
    daemon.check()


def test_a_killed_session_does_not_affect_another(server):
    first = server.client()
    assert first.reply().startswith("220 ")
    before = set(server.sessions())
    second = server.client()
    assert second.reply().startswith("220 ")
    second.transaction()
    new = set(server.sessions()) - before
    assert len(new) == 1
    os.kill(new.pop(), signal.SIGKILL)
    with pytest.raises((EOFError, ConnectionResetError)):
        second.reply()
    second.close()
    # The other session and the daemon go on.
    first.transaction()
    accepted_id(first.cmd(message("survivor") + "."))
    assert first.cmd("QUIT").startswith("221")
    first.close()
    with server.client() as third:
        assert third.reply().startswith("220 ")
    wait_for(lambda: server.count_log("died of signal 9"),
             what="the daemon to log the killed session")
    assert server.proc.poll() is None


def test_sessions_run_as_the_session_user(server):
    with server.client() as c:
        assert c.reply().startswith("220 ")
        pids = server.sessions()
        assert pids
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
            gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
            groups = re.search(r"^Groups:\s*(.*)$", status, re.M).group(1)
            assert set(uids) == {str(SESSION_UID)}
            assert set(gids) == {str(MAIL_GID)}
            assert groups.split() in ([], [str(MAIL_GID)])


def test_maillog_and_mailstats_count_connections_and_rejections(server):
    conn, rej, msgsrej, msgsfr = stats_counts(server.root)
    with server.client() as c:
        assert c.reply().startswith("220 ")
        c.transaction(sender="counted@remote.example")
        queue_id = accepted_id(c.cmd(message("counted") + "."))
        c.cmd("MAIL FROM:<someone@remote.example>")
        assert c.cmd("RCPT TO:<nobody@test.example>").startswith("550")
        assert c.cmd("QUIT").startswith("221")
    with server.client(source="127.0.0.3") as c:
        assert c.reply().startswith("554")
        assert c.cmd("QUIT").startswith("221")
    # The daemon counts a connection after it forked the session.
    wait_for(lambda: stats_counts(server.root) ==
             (conn + 2, rej + 1, msgsrej + 1, msgsfr + 1),
             what=f"the counts to grow from {(conn, rej, msgsrej, msgsfr)}"
             f", now {stats_counts(server.root)}")
    conn2, rej2, msgsrej2, msgsfr2 = stats_counts(server.root)
    log = server.root.log_lines()
    for pattern in (r"connect from localhost \[127\.0\.0\.1\]",
                    rf"{queue_id}: from=<counted@remote\.example>, size=\d+,",
                    r"ruleset=check_rcpt, arg1=<nobody@test\.example>, "
                    r"relay=localhost \[127\.0\.0\.1\], reject=550 5\.1\.1 "
                    r"<nobody@test\.example>\.\.\. User unknown$",
                    r"connect from unknown \[127\.0\.0\.3\]$"):
        assert any(re.search(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d test smtpd"
                             r"\[\d+\]: " + pattern, line)
                   for line in log), (pattern, log[-10:])
    # The same counts in sendmail's human layout.
    out = server.root.run_program("mailstats")
    assert out.code == 0, out
    lines = out.stdout.splitlines()
    assert [line.split() for line in lines if line.startswith(" C ")] == [
        ["C", str(conn2), "0", str(rej2)]]
    esmtp = [line.split() for line in lines if line.endswith(" esmtp")]
    assert esmtp and esmtp[0][1] == str(msgsfr2) and \
        esmtp[0][5] == str(msgsrej2), out.stdout


@pytest.fixture
def limited(own_root):
    return start_own(own_root, "max_sessions = 3",
                     "max_sessions_per_client = 2", "command_timeout = 2s",
                     "data_timeout = 3s")


def test_max_sessions_per_client_and_max_sessions_give_421(limited):
    daemon = limited
    conn, rej, _, _ = stats_counts(daemon.root)
    clients = [daemon.client() for _ in range(2)]
    for c in clients:
        assert c.reply().startswith("220 ")
    with daemon.client() as third:
        assert third.reply() == ("421 4.7.0 test.example Too many sessions "
                                 "from your address, try again later")
        assert third.at_eof()
    other = daemon.client(source="127.0.0.2")
    assert other.reply().startswith("220 ")
    with daemon.client(source="127.0.0.7") as fourth:
        assert fourth.reply() == ("421 4.7.0 test.example Too many "
                                  "sessions, try again later")
    # The daemon logs after it answered.
    wait_for(lambda: daemon.count_log("refused connection from "
                                      "[127.0.0.7]: Too many sessions"),
             what="the log line of the refusal")
    for c in clients + [other]:
        assert c.cmd("QUIT").startswith("221")
        c.close()
    wait_for(lambda: not daemon.sessions(), what="the sessions to end")
    with daemon.client() as again:
        assert again.reply().startswith("220 ")
    # Counted by the daemon after it forked or refused: wait for it.
    wait_for(lambda: stats_counts(daemon.root)[:2] == (conn + 6, rej + 2),
             what=f"the counts to grow from {(conn, rej)}, now "
             f"{stats_counts(daemon.root)}")


def test_command_and_data_timeouts_give_421_4_4_2(limited):
    daemon = limited
    before = set(daemon.root.queue_files())
    start = time.monotonic()
    idle = daemon.client()
    assert idle.reply().startswith("220 ")
    stalled = daemon.client()
    assert stalled.reply().startswith("220 ")
    stalled.transaction()
    stalled.send("Subject: stalled\r\n\r\nhalf")
    data_start = time.monotonic()
    assert idle.reply() == "421 4.4.2 test.example Error: timeout exceeded"
    assert time.monotonic() - start >= 1.9     # command_timeout = 2s
    assert idle.at_eof()
    assert stalled.reply() == ("421 4.4.2 test.example Error: timeout "
                               "exceeded")
    assert time.monotonic() - data_start >= 2.9    # data_timeout = 3s
    assert stalled.at_eof()
    idle.close()
    stalled.close()
    assert set(daemon.root.queue_files()) == before
    assert any("timeout waiting for input from localhost [127.0.0.1] during "
               "message transfer" in line for line in daemon.root.log_lines())


def test_sigterm_lets_a_message_in_data_finish(own_root):
    # (A session in DATA was once dropped at once: the interrupted poll
    # was taken for the client going away.)
    daemon = start_own(own_root)
    idle = daemon.client()
    assert idle.reply().startswith("220 ")
    assert idle.cmd("EHLO client.example").startswith("250")
    busy = daemon.client()
    assert busy.reply().startswith("220 ")
    busy.transaction()
    busy.send("Subject: last one\r\n\r\nfirst half\r\n")
    time.sleep(0.2)
    daemon.signal(signal.SIGTERM)
    # The idle session is told at once; no new sessions are taken.
    assert idle.reply() == "421 4.3.2 test.example Service shutting down"
    assert idle.at_eof()
    idle.close()
    wait_for(lambda: connection_refused(daemon.port), what="listeners gone")
    assert daemon.proc.poll() is None
    time.sleep(0.3)
    busy.send("second half\r\n.\r\n")
    queue_id = accepted_id(busy.reply())
    assert busy.reply() == "421 4.3.2 test.example Service shutting down"
    assert busy.at_eof()
    busy.close()
    assert daemon.proc.wait(timeout=10) == 0
    assert df_bytes(daemon.root, queue_id) == b"first half\nsecond half\n"
    assert daemon.count_log("daemon stopped") == 1


def connection_refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sighup_reloads_mail_conf(own_root):
    # (A larger max_sessions once overran the daemon's table of children
    # sized at start-up: a heap overflow.)
    root = own_root[0]
    daemon = start_own(own_root, "max_sessions = 1")
    smtp = daemon.smtp()
    try:
        smtp.ehlo("client.example")
        assert smtp.esmtp_features["size"] == str(MAX_SIZE)
    finally:
        smtp.quit()
    wait_for(lambda: not daemon.sessions(), what="the session to end")
    root.conf.write_text(root.conf.read_text().replace(
        f"max_message_size = {MAX_SIZE}", "max_message_size = 30000")
        .replace("max_sessions = 1", "max_sessions = 4"))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.count_log("configuration reloaded"),
             what="the reload")
    clients = [daemon.client() for _ in range(4)]
    for c in clients:
        assert c.reply().startswith("220 ")
    lines = clients[0].cmd_lines("EHLO client.example")
    assert "250-SIZE 30000" in lines
    with daemon.client() as fifth:
        assert fifth.reply().startswith("421 4.7.0 ")
    for c in clients:
        assert c.cmd("QUIT").startswith("221")
        c.close()
    # A bad file is not taken: the old configuration stays.
    root.conf.write_text(root.conf.read_text() + "no_such_key = 1\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.count_log("keeping the old configuration"),
             what="the refused reload")
    wait_for(lambda: not daemon.sessions(), what="the sessions to end")
    smtp = daemon.smtp()
    try:
        smtp.ehlo("client.example")
        assert smtp.esmtp_features["size"] == "30000"
    finally:
        smtp.quit()
    assert daemon.proc.poll() is None


def test_session_processes_are_reused_and_renewed_on_sighup(own_root):
    """With smtpd_max_use above 1 a session process serves one connection
    after another (no fork per connection); after SIGHUP the next
    connection gets a process of the new configuration."""
    root = own_root[0]
    daemon = start_own(own_root, "smtpd_max_use = 3")

    def served_by():
        with daemon.client() as c:
            assert c.reply().startswith("220 ")
            pids = set(daemon.sessions())
            c.transaction()
            accepted_id(c.cmd(message("reuse") + "."))
            assert c.cmd("QUIT").startswith("221")
        return pids

    first = served_by()
    wait_for(lambda: daemon.count_log("disconnect from") >= 1,
             what="the first session to end")
    second = served_by()
    assert first == second, "a second connection got a new process"
    wait_for(lambda: daemon.count_log("disconnect from") >= 2,
             what="the second session to end")
    third = served_by()
    # The third connection was that process's last (smtpd_max_use = 3).
    wait_for(lambda: not (set(daemon.sessions()) & third),
             what="the used-up session process to end")
    root.conf.write_text(root.conf.read_text().replace(
        f"max_message_size = {MAX_SIZE}", "max_message_size = 30000"))
    fourth = served_by()
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.count_log("configuration reloaded"),
             what="the reload")
    wait_for(lambda: not (set(daemon.sessions()) & fourth),
             what="the old configuration's process to end")
    with daemon.client() as c:
        assert c.reply().startswith("220 ")
        assert "250-SIZE 30000" in c.cmd_lines("EHLO client.example")
    assert len(root.queued_ids()) == 4
    daemon.check()
