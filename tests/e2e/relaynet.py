"""A small test internet on the loopback network for the relay tests.

- Dns: dnsmasq on 127.0.53.1:53, authoritative for the zone "test" (a name
  it was not told about is NXDOMAIN), with MX and address records per test,
  a subzone whose server answers SERVFAIL and one whose server never answers.
- Net.prefix(): the argv prefix that runs a program in a private mount
  namespace where /etc/resolv.conf names that server (the host's file is
  never touched: the bind mount exists only inside the namespace).
- Sink: a scriptable SMTP server in a thread (replies per command and per
  recipient, PIPELINING, STARTTLS, a server that hangs) that keeps the DATA
  section byte for byte as it came over the wire and counts connections.
- MailHost: one installation of our programs (harness.QueueRoot) acting as
  a host of that internet: its own hostname and address, its programs run
  in the namespace, optionally its smtpd listening.

Test hosts are loopback addresses 127.0.0.x (Linux routes all of 127/8 to
lo); every SMTP server listens on PORT.
"""

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import harness

PORT = 2525
DNS_ADDR = "127.0.53.1"
SERVFAIL_ADDR = "127.0.53.2"     # upstream of servfail.test: says SERVFAIL
SILENT_ADDR = "127.0.53.3"       # upstream of timeout.test: never answers
SMTPD_USER = "mailsvc:x:60010:60010:smtpd:/nonexistent:/usr/sbin/nologin"


class Unavailable(Exception):
    """The test network cannot be built here (no dnsmasq, port busy)."""


def wait_for(predicate, timeout=10.0, interval=0.05):
    """Polls predicate until it is true; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def listening(ip, port):
    """True when a TCP socket listens on ip:port (read from /proc, so that
    looking does not open an SMTP session)."""
    want = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(ip))[0],
                          port)
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                return True
    return False


# -- DNS ----------------------------------------------------------------------


def _dns_query(name, qtype=1):
    header = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode()
                      for p in name.split(".")) + b"\0"
    return header + labels + struct.pack(">HH", qtype, 1)


def _answer_servfail(sock, stopping):
    while not stopping.is_set():
        try:
            data, peer = sock.recvfrom(512)
        except socket.timeout:
            continue
        except OSError:
            return
        if len(data) < 12:
            continue
        # The question back, QR set, RD copied, RA, RCODE 2 (SERVFAIL).
        flags = bytes([0x80 | (data[2] & 0x01), 0x82])
        sock.sendto(data[:2] + flags + data[4:6] + b"\0" * 6 + data[12:],
                    peer)


class Dns:
    """dnsmasq answering for "test". mx: {domain: [(pref, host), ...]}
    ("." as host is a null MX); hosts: {name: address or [addresses]}."""

    def __init__(self, workdir, mx=None, hosts=None):
        self.workdir = Path(workdir)
        self.mx = mx or {}
        self.hosts = hosts or {}
        self.proc = None
        self.thread = None
        self.sockets = []

    def argv(self):
        argv = [shutil.which("dnsmasq") or "dnsmasq", "--keep-in-foreground",
                "--no-resolv", "--no-hosts", "--no-poll",
                "--bind-interfaces", f"--listen-address={DNS_ADDR}",
                "--port=53", "--pid-file", "--user=nobody",
                "--group=nogroup", "--cache-size=0", "--log-queries",
                f"--log-facility={self.workdir / 'dnsmasq.log'}",
                "--local=/test/",
                f"--server=/servfail.test/{SERVFAIL_ADDR}",
                f"--server=/timeout.test/{SILENT_ADDR}"]
        for domain, records in self.mx.items():
            for pref, host in records:
                argv.append(f"--mx-host={domain},{host},{pref}")
        for name, addresses in self.hosts.items():
            if isinstance(addresses, str):
                addresses = [addresses]
            argv.append(f"--host-record={name},{','.join(addresses)}")
        return argv

    def start(self):
        if shutil.which("dnsmasq") is None:
            raise Unavailable("dnsmasq is not installed (dnsmasq-base)")
        servfail = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sockets = [servfail, silent]
        try:
            servfail.bind((SERVFAIL_ADDR, 53))
            silent.bind((SILENT_ADDR, 53))
        except OSError as e:
            self.stop()
            raise Unavailable(f"cannot bind the fake DNS upstreams: {e}")
        # A thread blocked in recvfrom would keep the port after close():
        # it wakes up now and then to see whether it should stop.
        servfail.settimeout(0.1)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=_answer_servfail,
                                       args=(servfail, self.stopping),
                                       daemon=True)
        self.thread.start()
        self.stderr = open(self.workdir / "dnsmasq.stderr", "w+")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.settimeout(0.2)
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                probe.sendto(_dns_query("probe.test"), (DNS_ADDR, 53))
                try:
                    probe.recvfrom(512)
                    return self
                except (socket.timeout, ConnectionRefusedError):
                    continue
        finally:
            probe.close()
        self.stderr.seek(0)
        why = self.stderr.read().strip()
        self.stop()
        raise Unavailable(f"dnsmasq did not start: {why or 'no answer'}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.thread is not None:
            self.stopping.set()
            self.thread.join()
            self.thread = None
        for sock in self.sockets:
            sock.close()
        self.sockets = []


# -- the network --------------------------------------------------------------

_next_host = [10]


class Net:
    """The network of one test: its DNS, sinks and mail hosts, all stopped
    and removed by close()."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.resolv = self.workdir / "resolv.conf"
        # Short timeouts: the timeout test waits for one of them.
        self.resolv.write_text(f"nameserver {DNS_ADDR}\n"
                               "options timeout:1 attempts:1\n")
        os.chmod(self.resolv, 0o644)
        self.dns = None
        self.things = []

    @staticmethod
    def address():
        """A fresh 127.0.0.x for a host of this test (never 127.0.0.1,
        which is an interface address of this machine, and not one that
        an earlier test used, whose stragglers might still hold it)."""
        n = _next_host[0]
        _next_host[0] = 10 + (n - 9) % 240
        return f"127.0.0.{n}"

    def start_dns(self, mx=None, hosts=None):
        self.dns = Dns(self.workdir, mx, hosts).start()
        return self.dns

    def prefix(self):
        """argv prefix: the rest runs where /etc/resolv.conf is ours."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"',
                "sh", str(self.resolv)]

    def sink(self, ip, **kwargs):
        sink = Sink(ip, **kwargs).start()
        self.things.append(sink)
        return sink

    def host(self, name, ip=None, **kwargs):
        host = MailHost(self, name, ip or self.address(), **kwargs)
        self.things.append(host)
        return host

    def close(self):
        """Stops everything, then raises the first error (a sanitizer
        report of a host) if there was one."""
        error = None
        for thing in reversed(self.things):
            try:
                thing.close()
            except Exception as e:      # noqa: BLE001 (re-raised below)
                error = error or e
        if self.dns is not None:
            self.dns.stop()
        if error is not None:
            raise error


# -- a scriptable SMTP server -------------------------------------------------


class Sink:
    """An SMTP server on ip:port in a thread.

    greeting: the first reply. rcpt(address) -> reply, or None for 250.
    mail_reply, data_reply: replies (data_reply may be a function of the
    message). hang: "greeting" never greets, "data" never answers the end
    of the data, "reset" resets the connection (RST) in the middle of the
    data. ehlo=False refuses EHLO (502), so the client must say HELO.
    starttls="broken" offers STARTTLS, says 220 and then talks nonsense
    instead of TLS. close_after_data closes the connection after
    answering the data, without a word.

    Every message received is a dict: "sender", "params" (of MAIL FROM),
    "rcpts" (the accepted recipients), "data" (the bytes between the 354
    and the final ".\\r\\n", exactly as they came over the wire), "helo",
    "connection" (its number, from 1) and "reply" (the code answered).
    transcripts holds each connection's command lines."""

    def __init__(self, ip, port=PORT, *, greeting=None, rcpt=None,
                 mail_reply=None, data_reply="250 2.0.0 Ok: queued",
                 hang=None, ehlo=True, pipelining=True, size=True,
                 starttls=None, close_after_data=False, name=None):
        self.ip, self.port = ip, port
        self.name = name or f"sink-{ip}"
        self.greeting = greeting or f"220 {self.name} ESMTP sink"
        self.rcpt = rcpt
        self.mail_reply = mail_reply
        self.data_reply = data_reply
        self.hang = hang
        self.ehlo = ehlo
        self.pipelining = pipelining
        self.size = size
        self.starttls = starttls
        self.close_after_data = close_after_data
        self.messages = []
        self.connections = 0
        self.transcripts = []
        self.lock = threading.Lock()
        self.conns = []
        self.stopping = threading.Event()
        self.listener = None

    def start(self):
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.ip, self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self):
        self.stopping.set()
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
                self.conns.append(conn)
                self.transcripts.append([])
            threading.Thread(target=self._session, args=(conn, number),
                             daemon=True).start()

    def _session(self, conn, number):
        try:
            self._talk(conn, number)
        except (OSError, ValueError, IndexError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _talk(self, conn, number):
        transcript = self.transcripts[number - 1]
        if self.hang == "greeting":
            self.stopping.wait()
            return
        stream = conn.makefile("rb")

        def send(line):
            conn.sendall(line.encode() + b"\r\n")

        send(self.greeting)
        if not self.greeting.startswith("220"):
            stream.readline()
            return
        helo, sender, params, rcpts = None, None, [], []
        while True:
            line = stream.readline()
            if not line:
                return
            transcript.append(line)
            verb = line.split(b" ", 1)[0].strip().upper()
            arg = line[len(verb):].strip().decode("utf-8", "replace")
            if verb == b"EHLO" and self.ehlo:
                helo = arg
                ext = [f"{self.name} Hello", "8BITMIME"]
                if self.pipelining:
                    ext.append("PIPELINING")
                if self.size:
                    ext.append("SIZE 10240000")
                if self.starttls:
                    ext.append("STARTTLS")
                for i, e in enumerate(ext):
                    send(f"250{'-' if i < len(ext) - 1 else ' '}{e}")
            elif verb == b"STARTTLS" and self.starttls == "broken":
                send("220 2.0.0 Ready to start TLS")
                conn.sendall(b"this is not a TLS handshake\r\n" * 4)
                return
            elif verb == b"HELO":
                helo = arg
                send(f"250 {self.name}")
            elif verb == b"MAIL":
                path, _, rest = arg.split(":", 1)[1].strip().partition(">")
                sender, params, rcpts = path.lstrip("<"), rest.split(), []
                send(self.mail_reply or "250 2.1.0 Ok")
            elif verb == b"RCPT":
                address = arg.split(":", 1)[1].strip().strip("<>")
                reply = self.rcpt(address) if self.rcpt else None
                if reply is None:
                    rcpts.append(address)
                    reply = "250 2.1.5 Ok"
                send(reply)
            elif verb == b"DATA":
                if not rcpts:
                    send("554 5.5.1 No valid recipients")
                    continue
                send("354 End data with <CR><LF>.<CR><LF>")
                if self.hang == "reset":
                    stream.read(4096)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                    with self.lock:
                        self.messages.append({"rcpts": rcpts,
                                              "reset": True})
                    return
                data = b""
                while True:
                    chunk = stream.readline()
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    data += chunk
                message = {"sender": sender, "params": params,
                           "rcpts": rcpts, "data": data, "helo": helo,
                           "connection": number}
                if self.hang == "data":
                    with self.lock:
                        self.messages.append(message)
                    self.stopping.wait()
                    return
                reply = self.data_reply
                if callable(reply):
                    reply = reply(message)
                message["reply"] = int(reply[:3])
                with self.lock:
                    self.messages.append(message)
                send(reply)
                if self.close_after_data:
                    return
                sender, params, rcpts = None, [], []
            elif verb == b"RSET":
                sender, params, rcpts = None, [], []
                send("250 2.0.0 Ok")
            elif verb == b"NOOP":
                send("250 2.0.0 Ok")
            elif verb == b"QUIT":
                send("221 2.0.0 Bye")
                return
            else:
                send("502 5.5.2 Command not recognized")

    def delivered(self):
        """The messages answered with 250."""
        with self.lock:
            return [m for m in self.messages if m.get("reply") == 250]


def self_signed_cert(directory, name):
    """(certificate, key) files for name, made with openssl."""
    directory = Path(directory)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


# -- our own mail hosts -------------------------------------------------------


class MailHost(harness.QueueRoot):
    """An installation named name at address ip: hostname = name, local
    mail for name and local_domains, smtpd on ip:PORT (start_smtpd), and
    remote mail sent from ip to port PORT. Every program runs inside the
    network's namespace."""

    def __init__(self, net, name, ip, local_domains=(), conf=()):
        self.net = net
        self.name = name
        self.ip = ip
        self.smtpd = None
        self.smtpd_stderr = None
        super().__init__(base=os.environ.get("E2E_TMPDIR"))
        self.add_passwd_line(SMTPD_USER)
        queue = self.queue_dir()
        queue.mkdir()
        os.chown(queue, 0, harness.MAIL_GID)
        os.chmod(queue, 0o2770)
        self.host_conf = [
            f"hostname = {name}",
            "local_domains = " + ", ".join([name, *local_domains]),
            f"listen = {ip}:{PORT}", f"smtp_port = {PORT}",
            f"smtp_bind_address = {ip}", "smtpd_user = mailsvc",
            "submit_group = mail"]
        self.set_conf(*conf)

    def set_conf(self, *lines):
        """mail.conf: the base settings, this host's and lines (a later
        line overrides an earlier one with the same key)."""
        merged = {}
        for line in [*self.host_conf, *lines]:
            key = line.split("=", 1)[0].strip()
            merged[key] = line
        # After BASE_CONF, whose hostname the host's replaces.
        self.configure(*merged.values())

    def program_command(self, program, *args, as_user=None, conf=True):
        return self.net.prefix() + super().program_command(
            program, *args, as_user=as_user, conf=conf)

    def write_table(self, name, text):
        path = self.path / name
        path.write_text(text)
        os.chmod(path, 0o644)

    def start_smtpd(self):
        self.smtpd_stderr = open(self.path / "smtpd.stderr", "w+")
        self.smtpd = self.popen_program("smtpd", "-F", "-q", "30m",
                                        stderr=self.smtpd_stderr)
        if not wait_for(lambda: listening(self.ip, PORT) or
                        self.smtpd.poll() is not None):
            raise AssertionError(f"smtpd of {self.name} does not listen")
        assert self.smtpd.poll() is None, self.smtpd_errors()
        return self

    def smtpd_errors(self):
        if self.smtpd_stderr is None:
            return ""
        self.smtpd_stderr.seek(0)
        return self.smtpd_stderr.read()

    def stop_smtpd(self):
        if self.smtpd is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.smtpd.pid, signal.SIGTERM)
        try:
            self.smtpd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.smtpd.pid, signal.SIGKILL)
            self.smtpd.wait()
        # The session and runner children: wait until they are gone.
        wait_for(lambda: not _group_alive(self.smtpd.pid), timeout=10)
        self.smtpd = None
        harness.check_sanitizer(self.smtpd_errors())
        wait_for(lambda: not listening(self.ip, PORT), timeout=5)

    def close(self):
        try:
            self.stop_smtpd()
            self.check_sanitizer_reports()
        finally:
            if self.smtpd_stderr is not None:
                self.smtpd_stderr.close()
            if not os.environ.get("E2E_KEEP"):
                self.remove()


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
