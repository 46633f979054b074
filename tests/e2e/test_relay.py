"""End-to-end tests of remote delivery: routing (MX records in preference
order, address records without MX, null MX, the mailertable with its
"[host]", "host", "local:" and "error:" destinations and ".parent"
wildcards, the smarthost), the SMTP client against servers that accept,
defer, refuse, answer per recipient, offer STARTTLS, hang or are down, what
goes over the wire (dot-stuffing, CRLF, long lines), connection reuse, DNS
failures, local_only, and several of our hosts together: a backup MX that
queues for its primary (relay_based_on_mx), loop prevention when this host
is the best MX, and a mail loop between two hosts ended by max_hops.

The network is built by relaynet: dnsmasq on 127.0.53.1 answers for the
zone "test"; every program of ours runs in a private mount namespace whose
/etc/resolv.conf names it; the hosts are loopback addresses 127.0.0.x,
each an SMTP sink (relaynet.Sink, aiosmtpd) or an installation of ours
(relaynet.MailHost) with its own smtpd. The tests skip when dnsmasq cannot
be started.
"""

import email
import email.policy
import email.utils
import re
import smtplib
import socket
import ssl
import time

import pytest

import relaynet
from harness import EX_OK, read_mbox
from relaynet import PORT, wait_for

SENDER = "alice@tx.test"


@pytest.fixture
def net(tmp_path):
    network = relaynet.Net(tmp_path)
    try:
        yield network
    finally:
        network.close()


def start_dns(net, mx=None, hosts=None):
    try:
        return net.start_dns(mx, hosts)
    except relaynet.Unavailable as e:
        pytest.skip(f"no test DNS server: {e}")


# -- helpers ------------------------------------------------------------------


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def sender_host(net, *conf):
    """tx.test: the installation that sends, alice@tx.test its user."""
    return net.host("tx.test", conf=conf)


def submit(host, *recipients, subject="relay test", body=b"body\n",
           sender=SENDER, extra_headers=b""):
    """Queues a message with sendmail -odq -i; returns its queue id."""
    before = set(host.queued_ids())
    message = (b"From: <%s>\nTo: %s\nSubject: %s\n%s\n" % (
        sender.encode(), ", ".join(recipients).encode(), subject.encode(),
        extra_headers)) + body
    out = host.sendmail("-odq", "-i", "-f", sender, *recipients,
                        message=message)
    assert out.code == EX_OK, out
    [qid] = set(host.queued_ids()) - before
    return qid


def run_queue(host):
    out = host.sendmail("-q")
    assert out.code == EX_OK, out
    return out


def mbox_messages(host, user):
    if not host.mbox(user).exists():
        return []
    return [parse(stored) for _, stored in read_mbox(host.mbox(user))]


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


def bounces(host, user="alice"):
    """Runs the queue once more (the run that bounced queued the DSN) and
    returns {final recipient: (per-recipient fields, human text)} of the
    DSNs in user's mailbox."""
    run_queue(host)
    found = {}
    for msg in mbox_messages(host, user):
        if msg.get_content_type() != "multipart/report":
            continue
        assert msg.get_all("Return-Path") == ["<>"]
        assert email.utils.parseaddr(msg["From"])[1] == \
            f"MAILER-DAEMON@{host.name}"
        human, _, blocks, _ = dsn_parts(msg)
        for block in blocks:
            address = block["Final-Recipient"].split(";", 1)[1].strip()
            found[address] = (block, human.get_payload())
    return found


def to_lines(host):
    """{recipient: fields} of the last esmtp to= line for each recipient
    in host's maillog."""
    lines = {}
    for line in host.log_lines():
        m = re.search(r": to=<([^>]*)>, (.*mailer=esmtp.*)$", line)
        if m:
            fields = dict(re.findall(r"(\w+)=((?:[^,(]|\([^)]*\))*)",
                                     m.group(2)))
            fields["stat"] = m.group(2).split("stat=", 1)[1]
            lines[m.group(1)] = fields
    return lines


def recipients_of(host, qid):
    return {r["address"]: r for r in host.qf(qid).recipients}


def assert_queue_empty(host):
    assert host.queue_files() == []


def wire_lines(data):
    """The lines of wire data, asserting CRLF line ends only."""
    assert data.endswith(b"\r\n"), data[-50:]
    lines = data[:-2].split(b"\r\n")
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, line
    return lines


def body_of(data):
    return data.split(b"\r\n\r\n", 1)[1]


# -- routing: MX, address records, null MX ------------------------------------


def test_mail_goes_to_the_most_preferred_mx(net):
    best, other = net.address(), net.address()
    # Listed worst first: the order of the answer must not matter.
    start_dns(net, mx={"a.test": [(20, "mx2.a.test"), (10, "mx1.a.test"),
                                  (30, "mx3.a.test")]},
              hosts={"mx1.a.test": best, "mx2.a.test": other,
                     "mx3.a.test": other})
    mx1, mx2 = net.sink(best), net.sink(other)
    tx = sender_host(net)
    submit(tx, "bob@a.test")
    run_queue(tx)

    assert [m["rcpts"] for m in mx1.delivered()] == [["bob@a.test"]]
    assert mx2.connections == 0
    [message] = mx1.delivered()
    assert message["sender"] == SENDER
    assert message["helo"] == "tx.test"
    line = to_lines(tx)["bob@a.test"]
    assert line["relay"] == f"mx1.a.test [{best}]"
    assert line["dsn"] == "2.0.0"
    assert line["stat"] == "Sent (250 2.0.0 Ok: queued)"
    assert_queue_empty(tx)


def test_next_mx_is_tried_when_the_best_is_down_or_busy(net):
    down, busy, backup = net.address(), net.address(), net.address()
    start_dns(net, mx={"down.test": [(10, "mx1.down.test"),
                                     (20, "mx2.down.test")],
                       "busy.test": [(10, "mx1.busy.test"),
                                     (20, "mx2.busy.test")]},
              hosts={"mx1.down.test": down, "mx1.busy.test": busy,
                     "mx2.down.test": backup, "mx2.busy.test": backup})
    # Nothing listens on down: the connection is refused.
    busy_sink = net.sink(busy, greeting="421 4.3.2 Too busy, come back "
                                        "later")
    backup_sink = net.sink(backup)
    tx = sender_host(net)
    submit(tx, "bob@down.test")
    submit(tx, "bob@busy.test")
    run_queue(tx)

    assert sorted(r for m in backup_sink.delivered() for r in m["rcpts"]) \
        == ["bob@busy.test", "bob@down.test"]
    assert busy_sink.connections == 1 and busy_sink.messages == []
    lines = to_lines(tx)
    assert lines["bob@down.test"]["relay"] == f"mx2.down.test [{backup}]"
    assert lines["bob@busy.test"]["relay"] == f"mx2.busy.test [{backup}]"
    assert_queue_empty(tx)


def test_equal_preference_mx_hosts_share_the_mail(net):
    first, second = net.address(), net.address()
    start_dns(net, mx={"eq.test": [(10, "mx-a.eq.test"),
                                   (10, "mx-b.eq.test")]},
              hosts={"mx-a.eq.test": first, "mx-b.eq.test": second})
    sinks = [net.sink(first), net.sink(second)]
    tx = sender_host(net, "max_deliveries = 1",
                     "smtp_connection_reuse = no")
    for i in range(20):
        submit(tx, f"user{i}@eq.test")
    run_queue(tx)

    counts = [len(s.delivered()) for s in sinks]
    assert sum(counts) == 20
    # Shuffled per message: the chance that one host got all 20 by
    # chance is 2**-19.
    assert all(counts), counts
    assert_queue_empty(tx)


def test_domain_without_mx_gets_mail_at_its_address(net):
    address = net.address()
    start_dns(net, hosts={"plain.test": address})
    sink = net.sink(address)
    tx = sender_host(net)
    submit(tx, "bob@plain.test")
    run_queue(tx)

    assert [m["rcpts"] for m in sink.delivered()] == [["bob@plain.test"]]
    assert to_lines(tx)["bob@plain.test"]["relay"] == \
        f"plain.test [{address}]"
    assert_queue_empty(tx)


def test_null_mx_bounces_at_once(net):
    start_dns(net, mx={"nomail.test": [(0, ".")]})
    tx = sender_host(net)
    submit(tx, "bob@nomail.test")
    run_queue(tx)

    block, human = bounces(tx)["bob@nomail.test"]
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.10"
    assert "does not accept mail (null MX)" in block["Diagnostic-Code"]
    assert "nomail.test does not accept mail" in human
    assert to_lines(tx)["bob@nomail.test"]["dsn"] == "5.1.10"
    assert_queue_empty(tx)


def test_dns_nxdomain_bounces_servfail_and_timeout_defer(net):
    start_dns(net)
    tx = sender_host(net)
    qid = submit(tx, "bob@nosuch.test", "bob@x.servfail.test",
                 "bob@x.timeout.test")
    started = time.monotonic()
    run_queue(tx)
    assert time.monotonic() - started < 15

    rcpts = recipients_of(tx, qid)
    assert rcpts["bob@x.servfail.test"]["state"] == "Q"
    assert rcpts["bob@x.servfail.test"]["dsn"].startswith("4.")
    assert "server failure or timeout" in \
        rcpts["bob@x.servfail.test"]["reply"]
    assert rcpts["bob@x.timeout.test"]["state"] == "Q"
    assert rcpts["bob@x.timeout.test"]["dsn"].startswith("4.")
    lines = to_lines(tx)
    assert lines["bob@x.timeout.test"]["stat"].startswith("Deferred: ")
    assert lines["bob@x.servfail.test"]["stat"].startswith("Deferred: ")

    found = bounces(tx)
    assert list(found) == ["bob@nosuch.test"]
    block, _ = found["bob@nosuch.test"]
    assert block["Status"] == "5.1.2"
    assert "nosuch.test: no such domain" in block["Diagnostic-Code"]
    # The deferred ones are still there, waiting.
    assert sorted(recipients_of(tx, qid)) == ["bob@x.servfail.test",
                                             "bob@x.timeout.test"]


# -- the mailertable and the smarthost ----------------------------------------


def test_mailertable_bracketed_host_bypasses_mx(net):
    gateway, mx_of_corp, mx_of_gateway, literal = (
        net.address() for _ in range(4))
    start_dns(net, mx={"corp.test": [(10, "mx.corp.test")],
                       "gw.corp.test": [(10, "mx.gw.corp.test")]},
              hosts={"gw.corp.test": gateway, "mx.corp.test": mx_of_corp,
                     "mx.gw.corp.test": mx_of_gateway})
    sinks = {a: net.sink(a) for a in (gateway, mx_of_corp, mx_of_gateway)}
    other_port = net.sink(literal, port=PORT + 1)
    ipv6 = net.sink("::1", port=PORT + 2)
    tx = sender_host(net)
    tx.write_table("mailertable",
                   "corp.test\tsmtp:[gw.corp.test]\n"
                   f"lit.test\tsmtp:[{literal}]:{PORT + 1}\n"
                   f"v6.test\tsmtp:[IPv6:::1]:{PORT + 2}\n")
    submit(tx, "bob@corp.test")
    submit(tx, "bob@lit.test")
    submit(tx, "bob@v6.test")
    run_queue(tx)

    # [gw.corp.test]: its address record, not corp.test's MX nor its own.
    assert [m["rcpts"] for m in sinks[gateway].delivered()] == [
        ["bob@corp.test"]]
    assert sinks[mx_of_corp].connections == 0
    assert sinks[mx_of_gateway].connections == 0
    assert [m["rcpts"] for m in other_port.delivered()] == [
        ["bob@lit.test"]]
    lines = to_lines(tx)
    assert lines["bob@corp.test"]["relay"] == f"gw.corp.test [{gateway}]"
    assert lines["bob@lit.test"]["relay"] == f"[{literal}]"
    assert [m["rcpts"] for m in ipv6.delivered()] == [["bob@v6.test"]]
    assert lines["bob@v6.test"]["relay"] == "[IPv6:::1]"
    assert_queue_empty(tx)


def test_mailertable_host_without_brackets_uses_its_mx(net):
    relay_mx, domain_mx, esmtp_host, relay_host = (
        net.address() for _ in range(4))
    start_dns(net, mx={"corp.test": [(10, "mx.corp.test")],
                       "relay.test": [(10, "mx.relay.test")]},
              hosts={"mx.corp.test": domain_mx, "mx.relay.test": relay_mx,
                     "relay.test": domain_mx})
    via_mx, domain_sink = net.sink(relay_mx), net.sink(domain_mx)
    esmtp_sink, relay_sink = net.sink(esmtp_host), net.sink(relay_host)
    tx = sender_host(net)
    tx.write_table("mailertable",
                   "corp.test smtp:relay.test\n"
                   f"e.test esmtp:[{esmtp_host}]\n"
                   f"r.test relay:[{relay_host}]\n")
    submit(tx, "bob@corp.test", "bob@e.test", "bob@r.test")
    run_queue(tx)

    assert [m["rcpts"] for m in via_mx.delivered()] == [["bob@corp.test"]]
    assert domain_sink.connections == 0
    assert [m["rcpts"] for m in esmtp_sink.delivered()] == [["bob@e.test"]]
    assert [m["rcpts"] for m in relay_sink.delivered()] == [["bob@r.test"]]
    assert to_lines(tx)["bob@corp.test"]["relay"] == \
        f"mx.relay.test [{relay_mx}]"
    assert_queue_empty(tx)


def test_mailertable_local_user_delivers_here(net):
    start_dns(net)
    tx = sender_host(net)
    tx.write_table("mailertable", "corp.test local:carol\n")
    submit(tx, "bob@corp.test", subject="for carol")
    run_queue(tx)

    [got] = mbox_messages(tx, "carol")
    assert got["Subject"] == "for carol"
    assert got.get_payload() == "body\n"
    assert_queue_empty(tx)


def test_mailertable_error_entries_bounce_or_defer_with_their_text(net):
    start_dns(net)
    tx = sender_host(net)
    tx.write_table("mailertable",
                   "bad.test error:5.7.1:550 Mail for bad.test is not "
                   "accepted here\n"
                   "later.test error:4.3.2:451 bad.test is down for "
                   "maintenance\n")
    qid = submit(tx, "bob@bad.test", "bob@later.test")
    run_queue(tx)

    later = recipients_of(tx, qid)["bob@later.test"]
    assert (later["state"], later["dsn"]) == ("Q", "4.3.2")
    assert later["reply"] == "bad.test is down for maintenance"
    found = bounces(tx)
    assert list(found) == ["bob@bad.test"]
    block, human = found["bob@bad.test"]
    assert block["Status"] == "5.7.1"
    assert "Mail for bad.test is not accepted here" in \
        block["Diagnostic-Code"]
    assert "Mail for bad.test is not accepted here" in human


def test_mailertable_exact_entry_beats_wildcards_and_the_closest_wildcard_wins(
        net):
    exact, parent, deep, bare = (net.address() for _ in range(4))
    start_dns(net, hosts={"par.test": bare})
    sinks = {a: net.sink(a) for a in (exact, parent, deep, bare)}
    tx = sender_host(net)
    tx.write_table("mailertable",
                   f".par.test smtp:[{parent}]\n"
                   f"exact.par.test smtp:[{exact}]\n"
                   f".deep.par.test smtp:[{deep}]\n")
    submit(tx, "u@exact.par.test", "u@other.par.test", "u@a.b.par.test",
           "u@deep.par.test", "u@x.deep.par.test", "u@par.test")
    run_queue(tx)

    def got(address):
        return sorted(r for m in sinks[address].delivered()
                      for r in m["rcpts"])

    assert got(exact) == ["u@exact.par.test"]
    assert got(parent) == ["u@a.b.par.test", "u@deep.par.test",
                           "u@other.par.test"]
    assert got(deep) == ["u@x.deep.par.test"]
    # ".par.test" is for the subdomains only: par.test itself by DNS.
    assert got(bare) == ["u@par.test"]
    assert_queue_empty(tx)


def test_smarthost_takes_remote_mail_after_the_mailertable(net):
    smart, special, domain_mx, smart_mx = (net.address() for _ in range(4))
    start_dns(net, mx={"a.test": [(10, "mx.a.test")],
                       "smart.test": [(10, "mx.smart.test")]},
              hosts={"mx.a.test": domain_mx, "smart.test": smart,
                     "mx.smart.test": smart_mx})
    smart_sink, special_sink = net.sink(smart), net.sink(special)
    domain_sink, smart_mx_sink = net.sink(domain_mx), net.sink(smart_mx)
    tx = sender_host(net, f"smarthost = [{smart}]")
    tx.write_table("mailertable", f"special.test smtp:[{special}]\n")
    submit(tx, "bob@a.test", "bob@special.test")
    run_queue(tx)

    assert [m["rcpts"] for m in smart_sink.delivered()] == [["bob@a.test"]]
    assert [m["rcpts"] for m in special_sink.delivered()] == [
        ["bob@special.test"]]
    assert domain_sink.connections == 0
    assert to_lines(tx)["bob@a.test"]["relay"] == f"[{smart}]"

    # Without brackets the smarthost is a name with MX records.
    tx.set_conf("smarthost = smart.test")
    submit(tx, "carol@a.test")
    run_queue(tx)
    assert [m["rcpts"] for m in smart_mx_sink.delivered()] == [
        ["carol@a.test"]]
    assert domain_sink.connections == 0
    assert_queue_empty(tx)


# -- what the remote server says ----------------------------------------------


def test_temporary_refusal_is_retried_by_sendmail_q_then_delivered(net):
    address = net.address()
    start_dns(net, hosts={"grey.test": address})
    sink = net.sink(address, rcpt=lambda a: "451 4.7.1 Greylisted, try "
                                             "again later")
    tx = sender_host(net)
    qid = submit(tx, "bob@grey.test")
    run_queue(tx)

    bob = recipients_of(tx, qid)["bob@grey.test"]
    assert (bob["state"], bob["dsn"]) == ("Q", "4.7.1")
    assert "451 4.7.1 Greylisted, try again later" in bob["reply"]
    line = to_lines(tx)["bob@grey.test"]
    assert line["relay"] == f"grey.test [{address}]"
    assert line["stat"] == \
        "Deferred: 451 4.7.1 Greylisted, try again later"
    # The transcript of the failed exchange is kept beside the qf.
    xf = (tx.queue_dir() / f"xf{qid}").read_text()
    assert "451 4.7.1 Greylisted" in xf
    assert tx.qf(qid).number("N") == 1
    assert sink.delivered() == []

    sink.rcpt = None
    run_queue(tx)
    [message] = sink.delivered()
    assert message["rcpts"] == ["bob@grey.test"]
    assert to_lines(tx)["bob@grey.test"]["stat"].startswith("Sent (250")
    assert_queue_empty(tx)
    assert mbox_messages(tx, "alice") == []


def test_permanent_refusal_bounces_with_the_remote_reply(net):
    address = net.address()
    start_dns(net, hosts={"strict.test": address})
    sink = net.sink(address, rcpt=lambda a: (
        "550 5.1.1 <bob@strict.test>: Recipient address rejected: no "
        "such user" if a.startswith("bob") else None),
        data_reply=lambda m: "554 5.7.1 Message rejected: looks like spam"
        if b"spam" in m["data"] else "250 2.0.0 Ok")
    tx = sender_host(net)
    submit(tx, "bob@strict.test", subject="hello")
    submit(tx, "carol@strict.test", subject="buy spam")
    run_queue(tx)

    assert sink.delivered() == []
    lines = to_lines(tx)
    assert lines["bob@strict.test"]["dsn"] == "5.1.1"
    assert lines["bob@strict.test"]["stat"] == (
        "550 5.1.1 <bob@strict.test>: Recipient address rejected: no such "
        "user")
    assert lines["carol@strict.test"]["dsn"] == "5.7.1"

    found = bounces(tx)
    block, human = found["bob@strict.test"]
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert block["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <bob@strict.test>: Recipient address rejected: "
        "no such user")
    assert "Recipient address rejected: no such user" in human
    block, _ = found["carol@strict.test"]
    assert block["Status"] == "5.7.1"
    assert block["Diagnostic-Code"] == \
        "smtp; 554 5.7.1 Message rejected: looks like spam"
    assert_queue_empty(tx)


def test_servers_that_hang_time_out_and_defer(net):
    silent, slow_data, stuck = (net.address() for _ in range(3))
    start_dns(net, hosts={"silent.test": silent, "slow.test": slow_data,
                          "stuck.test": stuck})
    net.sink(silent, hang="greeting")
    slow = net.sink(slow_data, hang="data")
    # A listener whose accept queue is full: connecting never completes.
    backlog = socket.socket()
    backlog.bind((stuck, PORT))
    backlog.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((stuck, PORT))
        fillers.append(filler)
    try:
        tx = sender_host(net, "command_timeout = 2s", "data_timeout = 2s",
                         "smtp_connect_timeout = 2s")
        qid = submit(tx, "bob@silent.test", "bob@slow.test",
                     "bob@stuck.test")
        started = time.monotonic()
        run_queue(tx)
        elapsed = time.monotonic() - started
    finally:
        backlog.close()
        for filler in fillers:
            filler.close()

    assert elapsed < 20, elapsed
    rcpts = recipients_of(tx, qid)
    assert {a: r["state"] for a, r in rcpts.items()} == {
        "bob@silent.test": "Q", "bob@slow.test": "Q", "bob@stuck.test": "Q"}
    assert rcpts["bob@silent.test"]["reply"] == \
        f"silent.test [{silent}]: timeout waiting for a reply"
    assert rcpts["bob@slow.test"]["reply"] == \
        f"slow.test [{slow_data}]: timeout waiting for a reply"
    assert rcpts["bob@stuck.test"]["reply"] == \
        f"connection to stuck.test [{stuck}] timed out"
    # The slow server had the whole message but never said so.
    assert len(slow.messages) == 1
    lines = to_lines(tx)
    for address in rcpts:
        assert lines[address]["stat"] == \
            "Deferred: " + rcpts[address]["reply"]
    # The log names the server that may have the message.
    assert lines["bob@slow.test"]["relay"] == f"slow.test [{slow_data}]"
    assert mbox_messages(tx, "alice") == []


def test_server_that_resets_the_connection_during_data_defers(net):
    address = net.address()
    start_dns(net, hosts={"reset.test": address})
    sink = net.sink(address, hang="reset")
    tx = sender_host(net)
    # Bigger than the socket buffers: the client is still writing when
    # the reset comes (and must not die of SIGPIPE).
    qid = submit(tx, "bob@reset.test", body=(b"x" * 998 + b"\n") * 10240)
    run_queue(tx)

    assert sink.messages == [{"rcpts": ["bob@reset.test"], "reset": True}]
    bob = recipients_of(tx, qid)["bob@reset.test"]
    assert bob["state"] == "Q" and bob["dsn"].startswith("4."), bob
    # The reason is the broken connection, not the last reply (354).
    assert re.fullmatch(rf"reset\.test \[{re.escape(address)}\]: "
                        r"(connection lost|connection closed by the server)",
                        bob["reply"]), bob
    line = to_lines(tx)["bob@reset.test"]
    assert line["relay"] == f"reset.test [{address}]"
    assert line["stat"] == "Deferred: " + bob["reply"]
    assert tx.qf(qid).number("N") == 1

    sink.hang = None
    run_queue(tx)
    [message] = sink.delivered()
    assert len(body_of(message["data"])) == 1000 * 10240
    assert_queue_empty(tx)


@pytest.mark.parametrize("pipelining", [True, False],
                         ids=["pipelining", "no-pipelining"])
def test_per_recipient_replies_in_one_transaction(net, pipelining):
    address = net.address()
    start_dns(net, hosts={"mixed.test": address})
    replies = {"busy@mixed.test": "452 4.2.2 Mailbox full, try later",
               "gone@mixed.test": "550 5.1.1 gone@mixed.test: User unknown"}
    sink = net.sink(address, rcpt=replies.get, pipelining=pipelining)
    tx = sender_host(net)
    qid = submit(tx, "ok@mixed.test", "busy@mixed.test", "gone@mixed.test",
                 "ok2@mixed.test")
    run_queue(tx)

    # One connection, one transaction, the accepted recipients in it.
    assert sink.connections == 1
    [message] = sink.delivered()
    assert message["rcpts"] == ["ok@mixed.test", "ok2@mixed.test"]
    rcpts = recipients_of(tx, qid)
    assert (rcpts["busy@mixed.test"]["state"],
            rcpts["busy@mixed.test"]["dsn"]) == ("Q", "4.2.2")
    lines = to_lines(tx)
    assert lines["ok@mixed.test"]["stat"].startswith("Sent (250")
    assert lines["busy@mixed.test"]["stat"] == \
        "Deferred: 452 4.2.2 Mailbox full, try later"
    assert lines["gone@mixed.test"]["dsn"] == "5.1.1"

    found = bounces(tx)
    assert list(found) == ["gone@mixed.test"]
    assert "550 5.1.1 gone@mixed.test: User unknown" in \
        found["gone@mixed.test"][0]["Diagnostic-Code"]

    # The next run sends to the deferred one only.
    sink.rcpt = None
    run_queue(tx)
    assert [m["rcpts"] for m in sink.delivered()] == [
        ["ok@mixed.test", "ok2@mixed.test"], ["busy@mixed.test"]]
    assert_queue_empty(tx)


def test_helo_is_used_when_ehlo_is_refused(net):
    address = net.address()
    start_dns(net, hosts={"old.test": address})
    sink = net.sink(address, ehlo=False)
    tx = sender_host(net)
    submit(tx, "bob@old.test")
    run_queue(tx)

    [message] = sink.delivered()
    assert message["helo"] == "tx.test"
    # No ESMTP parameters for a server that knows no extensions.
    assert message["params"] == []
    commands = [line.split()[0].upper() for line in sink.transcripts[0]]
    assert commands[:2] == [b"EHLO", b"HELO"]
    assert_queue_empty(tx)


# -- STARTTLS -----------------------------------------------------------------


def test_starttls_is_used_with_our_smtpd(net):
    address = net.address()
    start_dns(net, hosts={"rx.test": address})
    rx = net.host("rx.test", address)
    cert, key = relaynet.self_signed_cert(rx.path, "rx.test")
    rx.set_conf(f"smtp_cert = {cert}", f"smtp_key = {key}")
    rx.start_smtpd()
    tx = sender_host(net)
    submit(tx, "bob@rx.test", subject="secret")
    run_queue(tx)

    assert wait_for(lambda: mbox_messages(rx, "bob"))
    [got] = mbox_messages(rx, "bob")
    assert got["Subject"] == "secret"
    assert re.search(r"by rx\.test with ESMTPS", got["Received"]), \
        got["Received"]
    assert any(re.search(rf"STARTTLS from \S+ \[{re.escape(tx.ip)}\]: TLS",
                         line) for line in rx.log_lines()), rx.log_lines()
    assert_queue_empty(tx)


def test_starttls_is_used_with_aiosmtpd(net, tmp_path):
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    address = net.address()
    start_dns(net, hosts={"aio.test": address})
    cert, key = relaynet.self_signed_cert(tmp_path, "aio.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sessions = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            sessions.append((session.ssl, envelope.mail_from,
                             list(envelope.rcpt_tos),
                             envelope.original_content))
            return "250 2.0.0 Ok"

    controller = aiosmtpd.Controller(Handler(), hostname=address, port=PORT,
                                     tls_context=context,
                                     server_hostname="aio.test")
    controller.start()
    try:
        tx = sender_host(net)
        submit(tx, "bob@aio.test", body=b"over TLS\n")
        run_queue(tx)
    finally:
        controller.stop()

    [(tls, sender, rcpts, content)] = sessions
    assert tls is not None
    assert (sender, rcpts) == (SENDER, ["bob@aio.test"])
    assert content.endswith(b"\r\n\r\nover TLS\r\n")
    assert_queue_empty(tx)


def test_starttls_that_fails_is_given_up_for_the_clear(net):
    address = net.address()
    start_dns(net, hosts={"badtls.test": address})
    sink = net.sink(address, starttls="broken")
    # Several messages, each on connections of its own: a failed
    # handshake can end in a write to the closed connection, which must
    # not kill the queue runner with SIGPIPE (it did, now and then).
    tx = sender_host(net, "max_deliveries = 1",
                     "smtp_connection_reuse = no")
    for i in range(8):
        submit(tx, f"user{i}@badtls.test")
    run_queue(tx)

    # Opportunistic: after the failed handshake once more, without TLS.
    assert len(sink.delivered()) == 8, tx.log_lines()
    assert sink.connections == 16
    for number, transcript in enumerate(sink.transcripts, 1):
        verbs = [line.split()[0].upper() for line in transcript]
        if number % 2:
            assert verbs == [b"EHLO", b"STARTTLS"]
        else:
            assert verbs[0] == b"EHLO" and b"STARTTLS" not in verbs
    assert all(m["connection"] % 2 == 0 for m in sink.delivered())
    assert all(line["stat"].startswith("Sent (250")
               for line in to_lines(tx).values())
    assert_queue_empty(tx)


# -- the bytes on the wire ----------------------------------------------------


def test_dot_stuffing_line_ends_and_long_lines_on_the_wire(net):
    address = net.address()
    start_dns(net, hosts={"wire.test": address})
    sink = net.sink(address)
    tx = sender_host(net)
    body = (b"first\n"
            b".starts with a dot\n"
            b"..two dots\n"
            b".\n"
            b"bare\rCR inside\n"
            b"crlf line\r\n"
            b"CR at the end\r"
            b"CR CR LF\r\r\n"
            b"\n"
            + b"A" * 2500 + b"\n"
            + b"B" * 998 + b".\n"
            + b"C" * 998 + b"\n"
            + b"last")
    long_header = b"X-Long: " + b"h" * 1500 + b"\n"
    qid = submit(tx, "bob@wire.test", body=body, extra_headers=long_header)
    stored = (tx.queue_dir() / f"df{qid}").read_bytes()
    run_queue(tx)

    [message] = sink.delivered()
    data = message["data"]
    lines = wire_lines(data)
    # RFC 5321 4.5.3.1.6: at most 998 octets a line, not counting the
    # dot added for transparency.
    for line in lines:
        assert len(line) - line.startswith(b"..") <= 998, line[:40]
    expected = (b"first\r\n"
                b"..starts with a dot\r\n"
                b"...two dots\r\n"
                b"..\r\n"
                b"bare\r\nCR inside\r\n"
                b"crlf line\r\n"
                b"CR at the end\r\n"
                b"CR CR LF\r\n\r\n"
                b"\r\n"
                + b"A" * 998 + b"\r\n" + b"A" * 998 + b"\r\n"
                + b"A" * 504 + b"\r\n"
                + b"B" * 998 + b"\r\n..\r\n"
                + b"C" * 998 + b"\r\n"
                + b"last\r\n")
    # Queued as submitted: the client makes the line ends right.
    assert stored == body
    assert body_of(data) == expected
    # The long header line is folded (CRLF and a space put in), not cut.
    head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    assert b"\r\nX-Long: " + b"h" * 1500 + b"\r\n" in \
        head.replace(b"\r\n ", b"")
    assert_queue_empty(tx)


def test_size_and_8bitmime_are_declared_when_offered(net):
    address = net.address()
    start_dns(net, hosts={"ext.test": address})
    sink = net.sink(address)
    tx = sender_host(net)
    submit(tx, "bob@ext.test", body="caf\u00e9 8bit\n".encode())
    run_queue(tx)

    [message] = sink.delivered()
    params = dict(p.split("=", 1) for p in message["params"])
    assert params["BODY"] == "8BITMIME"
    # RFC 1870: the size of the message (a little under the wire size,
    # which counts CR LF pairs).
    size = int(params["SIZE"])
    unstuffed = message["data"].replace(b"\r\n", b"\n")
    assert len(unstuffed) - 50 <= size <= len(message["data"]), \
        (size, len(message["data"]))


# -- connection reuse ---------------------------------------------------------


@pytest.mark.parametrize("reuse,connections", [("yes", 1), ("no", 4)])
def test_connection_reuse(net, reuse, connections):
    address = net.address()
    start_dns(net, mx={"reuse.test": [(10, "mx.reuse.test")]},
              hosts={"mx.reuse.test": address})
    sink = net.sink(address)
    tx = sender_host(net, "max_deliveries = 1",
                     f"smtp_connection_reuse = {reuse}")
    for i in range(4):
        submit(tx, f"user{i}@reuse.test", subject=f"message {i}")
    run_queue(tx)

    assert len(sink.delivered()) == 4
    assert sorted(r for m in sink.delivered() for r in m["rcpts"]) == [
        f"user{i}@reuse.test" for i in range(4)]
    assert sink.connections == connections
    # Every connection ends with QUIT.
    assert wait_for(lambda: all(t and t[-1].upper().startswith(b"QUIT")
                                for t in sink.transcripts))
    assert_queue_empty(tx)


def test_domains_with_the_same_mx_share_one_connection(net):
    address = net.address()
    start_dns(net, mx={"one.test": [(10, "mx.shared.test")],
                       "two.test": [(10, "mx.shared.test")]},
              hosts={"mx.shared.test": address})
    sink = net.sink(address)
    tx = sender_host(net, "max_deliveries = 1")
    submit(tx, "bob@one.test", "bob@two.test", "carol@one.test")
    submit(tx, "carol@two.test")
    run_queue(tx)

    assert sink.connections == 1
    # One transaction a domain and message, each with its recipients.
    assert sorted(m["rcpts"] for m in sink.delivered()) == [
        ["bob@one.test", "carol@one.test"], ["bob@two.test"],
        ["carol@two.test"]]
    assert_queue_empty(tx)


def test_cached_connection_the_server_closed_is_replaced(net):
    address = net.address()
    start_dns(net, hosts={"curt.test": address})
    sink = net.sink(address, close_after_data=True)
    tx = sender_host(net, "max_deliveries = 1")
    for i in range(3):
        submit(tx, f"user{i}@curt.test")
    run_queue(tx)

    assert len(sink.delivered()) == 3
    assert sink.connections == 3
    assert all(line["stat"].startswith("Sent (250")
               for line in to_lines(tx).values())
    assert_queue_empty(tx)


# -- local_only ---------------------------------------------------------------


def test_local_only_bounces_remote_recipients_and_delivers_local_ones(net):
    address = net.address()
    start_dns(net, hosts={"far.test": address})
    sink = net.sink(address)
    tx = sender_host(net, "local_only = yes")
    submit(tx, "bob@far.test", "carol@tx.test", subject="local only")
    run_queue(tx)

    assert sink.connections == 0
    [got] = mbox_messages(tx, "carol")
    assert got["Subject"] == "local only"
    block, human = bounces(tx)["bob@far.test"]
    assert block["Status"] == "5.3.2"
    assert "remote delivery is turned off on this host (local_only)" in \
        block["Diagnostic-Code"]
    assert "remote delivery is turned off" in human
    assert_queue_empty(tx)


# -- several of our hosts: backup MX, loops -----------------------------------


def backup_mx_network(net):
    """corp.test: MX 10 mx1.corp.test (the primary), MX 20 mx2.corp.test
    (the backup, relay_based_on_mx = yes); other.test and best.test, whose
    MX the backup is not or is the best one; tx.test sends."""
    primary_ip, backup_ip, other_ip = (net.address() for _ in range(3))
    start_dns(net, mx={"corp.test": [(10, "mx1.corp.test"),
                                     (20, "mx2.corp.test")],
                       "other.test": [(10, "mx.other.test")],
                       "best.test": [(10, "mx2.corp.test"),
                                     (20, "mx.other.test")]},
              hosts={"mx1.corp.test": primary_ip,
                     "mx2.corp.test": backup_ip,
                     "mx.other.test": other_ip,
                     "plain.test": other_ip})
    primary = net.host("mx1.corp.test", primary_ip,
                       local_domains=["corp.test"])
    backup = net.host("mx2.corp.test", backup_ip,
                      conf=["relay_based_on_mx = yes"])
    return primary, backup


def test_backup_mx_queues_while_the_primary_is_down_and_delivers_once(net):
    primary, backup = backup_mx_network(net)
    backup.start_smtpd()
    tx = sender_host(net)
    submit(tx, "bob@corp.test", subject="via the backup")
    run_queue(tx)

    # The primary is down: the backup took the message...
    assert to_lines(tx)["bob@corp.test"]["relay"] == \
        f"mx2.corp.test [{backup.ip}]"
    assert_queue_empty(tx)
    # ...and tried the primary only (never itself), in vain.
    assert wait_for(lambda: "bob@corp.test" in to_lines(backup))
    line = to_lines(backup)["bob@corp.test"]
    assert line["stat"].startswith("Deferred: "), line
    assert primary.ip in line["stat"]
    [qid] = backup.queued_ids()

    primary.start_smtpd()
    run_queue(backup)
    assert to_lines(backup)["bob@corp.test"]["relay"] == \
        f"mx1.corp.test [{primary.ip}]"
    assert_queue_empty(backup)
    assert wait_for(lambda: mbox_messages(primary, "bob"))
    # Another run and a while later: still exactly one copy.
    run_queue(backup)
    run_queue(primary)
    time.sleep(0.5)
    [got] = mbox_messages(primary, "bob")
    assert got["Subject"] == "via the backup"
    received = got.get_all("Received")
    assert re.search(r"by mx1\.corp\.test with ESMTP", received[0])
    assert re.search(rf"\[{re.escape(backup.ip)}\]", received[0])
    assert re.search(r"by mx2\.corp\.test with ESMTP", received[1])
    assert re.search(rf"\[{re.escape(tx.ip)}\]", received[1])


def test_backup_mx_relays_only_for_domains_it_is_a_lower_mx_of(net):
    primary, backup = backup_mx_network(net)
    backup.start_smtpd()
    client = net.address()
    with smtplib.SMTP(backup.ip, PORT, source_address=(client, 0),
                      timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert smtp.mail("someone@client.test")[0] == 250
        assert smtp.rcpt("bob@corp.test")[0] == 250
        for address in ("bob@other.test", "bob@plain.test",
                        "bob@best.test", "bob@nosuch.test"):
            code, text = smtp.rcpt(address)
            assert (code, text.split()[0]) == (550, b"5.7.1"), \
                (address, code, text)
            assert b"Relaying denied" in text
        # DNS cannot tell now: try again later, do not refuse.
        code, text = smtp.rcpt("bob@x.servfail.test")
        assert code == 451 and text.startswith(b"4."), (code, text)
    assert any("reject=550 5.7.1 <bob@other.test>" in line
               for line in backup.log_lines())

    # relay_based_on_mx = no: not even corp.test.
    backup.stop_smtpd()
    backup.set_conf("relay_based_on_mx = no")
    backup.start_smtpd()
    with smtplib.SMTP(backup.ip, PORT, source_address=(client, 0),
                      timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("someone@client.test")
        code, text = smtp.rcpt("bob@corp.test")
        assert (code, text.split()[0]) == (550, b"5.7.1")


def test_best_mx_bounces_with_5_3_5_instead_of_sending_to_itself(net):
    me_ip, down, lower = (net.address() for _ in range(3))
    start_dns(net, mx={"self.test": [(10, "mx.self.test"),
                                     (20, "lower.self.test")],
                       "byaddr.test": [(10, "mail.byaddr.test")],
                       "between.test": [(10, "down.between.test"),
                                        (20, "mx.self.test"),
                                        (30, "lower.between.test")]},
              hosts={"mx.self.test": me_ip,
                     "lower.self.test": lower,
                     # 127.0.0.1 is an address of this machine.
                     "mail.byaddr.test": "127.0.0.1",
                     "noaddr.test": "127.0.0.1",
                     "down.between.test": down,
                     "lower.between.test": lower})
    lower_sink = net.sink(lower)
    me = net.host("mx.self.test", me_ip)
    qid = submit(me, "bob@self.test", "bob@byaddr.test", "bob@noaddr.test",
                 "bob@between.test", sender="alice@mx.self.test")
    run_queue(me)

    # Nothing went to a worse MX, to ourselves, or anywhere else.
    assert lower_sink.connections == 0
    # Below us in between.test's list only down.between.test is left: it
    # is down, so the mail waits.
    between = recipients_of(me, qid)["bob@between.test"]
    assert between["state"] == "Q"
    assert down in between["reply"]
    found = bounces(me)
    assert sorted(found) == ["bob@byaddr.test", "bob@noaddr.test",
                             "bob@self.test"]
    for address, (block, human) in found.items():
        assert block["Status"] == "5.3.5", (address, block)
        assert "loops back to me" in block["Diagnostic-Code"]
        assert "loops back to me" in human
    assert [r["address"] for r in me.qf(qid).recipients] == [
        "bob@between.test"]


def test_mail_loop_between_two_hosts_is_stopped_by_max_hops(net):
    a_ip, b_ip = net.address(), net.address()
    start_dns(net, hosts={"a.loop.test": a_ip, "b.loop.test": b_ip})
    hosts = []
    for name, ip, peer in (("a.loop.test", a_ip, b_ip),
                           ("b.loop.test", b_ip, a_ip)):
        host = net.host(name, ip, conf=["max_hops = 6"])
        # Each forwards ping.test to the other, and lets the other relay.
        host.write_table("mailertable", f"ping.test smtp:[{peer}]\n")
        host.write_table("access", "To:ping.test RELAY\n")
        host.start_smtpd()
        hosts.append(host)
    a, b = hosts
    submit(a, "bob@ping.test", subject="round and round",
           sender="alice@a.loop.test")
    run_queue(a)

    def notice():
        # The bounce may wait in a queue that no run has seen yet.
        for host in hosts:
            host.sendmail("-q")
        return [m for m in mbox_messages(a, "alice")
                if m.get_content_type() == "multipart/report"]

    dsns = wait_for(notice, timeout=30, interval=0.3)
    assert len(dsns) == 1, [h.log_lines() for h in hosts]
    _, _, [block], headers = dsn_parts(dsns[0])
    assert block["Status"] == "5.4.6"
    assert "554 5.4.6 Too many hops" in block["Diagnostic-Code"]
    # The message went round until it had max_hops Received fields.
    original = parse(headers.get_payload().encode())
    assert len(original.get_all("Received")) == 6
    # Nothing is left anywhere, and no one else got anything.
    time.sleep(0.5)
    for host in hosts:
        host.sendmail("-q")
        assert_queue_empty(host)
    assert len(notice()) == 1
    assert mbox_messages(b, "bob") == [] and mbox_messages(a, "bob") == []
