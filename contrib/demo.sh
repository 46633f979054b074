#!/bin/sh
# make demo: runs the system in a throwaway directory and shows where mail
# lands: first deliver(8) on its own, then sendmail(8), the queue, mailq and
# mailstats. Test users come from nss_wrapper, so nothing on the host changes.
set -eu
BIN=${1:-$(pwd)/bin}
ROOT=$(mktemp -d /tmp/mail-demo.XXXXXX)
chmod 755 "$ROOT"
mkdir -p "$ROOT/spool" "$ROOT/home/alice" "$ROOT/home/bob"
chown 60001:60001 "$ROOT/home/alice"
chown 60002:60002 "$ROOT/home/bob"
chgrp 8 "$ROOT/spool"
chmod 2775 "$ROOT/spool"
cat > "$ROOT/passwd" <<EOP
alice:x:60001:60001:Alice Example:$ROOT/home/alice:/bin/sh
bob:x:60002:60002:Bob Example:$ROOT/home/bob:/bin/sh
root:x:0:0:root:/root:/bin/sh
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
EOP
cat > "$ROOT/group" <<EOP
mail:x:8:
smmsp:x:60100:
alice:x:60001:
bob:x:60002:
root:x:0:
EOP
# One configuration for everything, paths relative to it; deliver_path is
# the deliver just built, which the queue runner starts.
CONF=$ROOT/mail.conf
cat > "$CONF" <<EOP
hostname = demo.example
spool_dir = spool
queue_dir = mqueue
log = maillog
statistics = statistics
aliases = aliases
virtusertable = virtusertable
system_rcfile = procmailrc
deliver_path = $BIN/deliver
smtpd_path = $BIN/smtpd
# smtpd's sessions and the queue runner's SMTP client run as this user.
smtpd_user = mail
listen = 127.0.0.1:2525
# Mail for other hosts goes to a sink on 127.0.0.1:2526 that stands for
# the Internet (see the end).
smarthost = [127.0.0.1]:2526
EOP
# As with sendmail, counting happens only when the statistics file exists.
: > "$ROOT/statistics"
# An alias for both, and rules of alice's own: list mail into a maildir.
printf 'staff: alice, bob\n' > "$ROOT/aliases"
printf '@demo2.example %%1@demo.example\n' > "$ROOT/virtusertable"
cat > "$ROOT/home/alice/.procmailrc" <<'EOP'
MAILDIR=$HOME/Mail
LOGFILE=$HOME/procmail.log
:0
* ^Subject:.*\[lists\]
lists/
EOP
mkdir "$ROOT/home/alice/Mail"
chown 60001:60001 "$ROOT/home/alice/.procmailrc" "$ROOT/home/alice/Mail"
# alice keeps the classic spool mbox; bob's mail goes to a maildir in his
# home, as his own rules file says.
printf 'DEFAULT=$HOME/Maildir/\n' > "$ROOT/home/bob/.procmailrc"
chown 60002:60002 "$ROOT/home/bob/.procmailrc"

export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD="$ROOT/passwd" \
	NSS_WRAPPER_GROUP="$ROOT/group"

say() { printf '\n== %s\n' "$*"; }

say "deliver: 3 messages to alice (mbox) and 2 to bob (maildir) in $ROOT"
for i in 1 2 3; do
	printf 'From: carol@example.org\nTo: alice@demo.example\nSubject: demo %s\n\nHello alice, message %s.\nFrom here on, a line that mbox must quote.\n' "$i" "$i" |
		"$BIN/deliver" -C "$CONF" -f carol@example.org alice
done
for i in 1 2; do
	printf 'From: carol@example.org\r\nTo: bob@demo.example\r\nSubject: demo %s\r\n\r\nHello bob (CRLF input), message %s.\r\n' "$i" "$i" |
		"$BIN/deliver" -C "$CONF" -f carol@example.org bob
done
say "newaliases, then mail to the alias staff, to alice@demo2.example (virtusertable) and a [lists] message that alice's rules file"
"$BIN/newaliases" -C "$CONF"
printf 'From: carol@example.org\nSubject: staff meeting\n\nAt noon.\n' |
	"$BIN/deliver" -C "$CONF" -f carol@example.org staff
printf 'From: carol@example.org\nSubject: via virtusertable\n\nHi.\n' |
	"$BIN/deliver" -C "$CONF" -f carol@example.org alice@demo2.example
printf 'From: list@example.org\nSubject: [lists] weekly digest\n\nNews.\n' |
	"$BIN/deliver" -C "$CONF" -f list@example.org alice
"$BIN/deliver" -C "$CONF" -V staff alice@demo2.example
set +e
printf 'Subject: nobody\n\nx\n' | "$BIN/deliver" -C "$CONF" nosuchuser
echo "(exit code $? for an unknown user: 67 = EX_NOUSER)"
set -e

say "what landed where"
ls -l "$ROOT/spool"
find "$ROOT/home" -path '*/new/*' -type f -exec ls -l {} +
echo "alice's procmail log:"
cat "$ROOT/home/alice/procmail.log"

say "alice's mbox, read back with python3's mailbox module"
/usr/bin/python3 - "$ROOT" <<'EOP'
import mailbox, sys
root = sys.argv[1]
for key, msg in mailbox.mbox(root + "/spool/alice").items():
    print(f"  mbox #{key}: {msg.get_from()!r} Subject={msg['Subject']!r} "
          f"Delivered-To={msg['Delivered-To']!r}")
for box in ("/home/bob/Maildir", "/home/alice/Mail/lists"):
    for key, msg in mailbox.Maildir(root + box, factory=None).items():
        print(f"  {box}: Subject={msg['Subject']!r} "
              f"Return-Path={msg['Return-Path']!r}")
EOP

say "the raw mbox"
cat "$ROOT/spool/alice"

# --- sendmail and the queue -------------------------------------------------
submit() { "$BIN/sendmail" -C "$CONF" -odq "$@"; }

say "sendmail (as root, -odq: queue only): 5 messages"
printf 'Subject: queued for alice\n\nVia the queue.\n' | submit alice
printf 'Subject: queued for bob\n\nVia the queue, into a maildir.\n' |
	submit -f carol@example.org bob@demo.example
queued=$(printf 'From: carol@example.org\nTo: alice@demo.example\nBcc: bob\nSubject: -t with a Bcc\n\nBob must not see a Bcc: field.\n' |
	submit -t -v)
echo "$queued"
printf 'Subject: to nobody\n\nThis one comes back to alice.\n' |
	submit -f alice nosuchuser
printf 'Subject: to another host\n\nThere is no route out yet.\n' |
	submit zach@remote.example
echo "(queue directory:)"
ls -ld "$ROOT/mqueue"
echo "(the -t message's qf: envelope, recipients, header; see queue(5))"
cat "$ROOT/mqueue/qf${queued%%:*}"

say "mailq"
"$BIN/mailq" -C "$CONF"

say "sendmail -q -v: one queue run"
"$BIN/sendmail" -C "$CONF" -q -v

say "mailq: the bounce for alice waits for the next run; the remote one is deferred (its smarthost is not up yet)"
"$BIN/mailq" -C "$CONF"

say "sendmail -q: the bounce is delivered"
"$BIN/sendmail" -C "$CONF" -q
"$BIN/mailq" -C "$CONF"

say "the mailboxes after the queue runs"
/usr/bin/python3 - "$ROOT" <<'EOP'
import mailbox, sys
root = sys.argv[1]
new = lambda m: "Received" in m and "from root@localhost" in m["Received"] \
    or m["From"].startswith("Mail Delivery")
for key, msg in mailbox.mbox(root + "/spool/alice").items():
    if not new(msg):
        continue
    print(f"  alice mbox #{key}: {msg.get_from()!r} Subject={msg['Subject']!r}")
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            for block in part.get_payload():
                for f in ("Final-Recipient", "Action", "Status",
                          "Diagnostic-Code"):
                    if block[f]:
                        print(f"      {f}: {block[f]}")
for key, msg in mailbox.Maildir(root + "/home/bob/Maildir",
                                factory=None).items():
    if new(msg):
        print(f"  bob maildir: Subject={msg['Subject']!r} "
              f"Return-Path={msg['Return-Path']!r} Bcc={msg['Bcc']!r}")
EOP

say "the maillog (deliver's lines, then sendmail's and the queue runner's)"
cat "$ROOT/maillog"

say "mailstats"
"$BIN/mailstats" -C "$CONF"

# --- smtpd and the SMTP client --------------------------------------------
say "smtpd on 127.0.0.1:2525 with the queue runner daemon (-q 30m), and an SMTP sink on 127.0.0.1:2526 for remote mail"
/usr/bin/python3 - "$ROOT/sink.txt" > /dev/null 2>&1 <<'EOP' &
import sys, time
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        with open(sys.argv[1], "a") as f:
            f.write(f"--- from {envelope.mail_from} to {envelope.rcpt_tos}\n")
            f.write(envelope.content.decode("utf-8", "replace"))
        return "250 2.0.0 taken by the sink"
c = Controller(Sink(), hostname="127.0.0.1", port=2526)
c.start()
time.sleep(60)
EOP
SINK=$!
"$BIN/smtpd" -C "$CONF" -F -q 30m &
SMTPD=$!
trap 'kill $SMTPD $SINK 2>/dev/null || true' EXIT
sleep 1
/usr/bin/python3 - <<'EOP'
import smtplib
with smtplib.SMTP("127.0.0.1", 2525) as s:
    print(" ", s.ehlo("client.example"))
    s.sendmail("dave@example.org", ["alice@demo.example"],
               b"Subject: over SMTP\r\n\r\nHello alice, over SMTP.\r\n")
    print("  sent to alice@demo.example over SMTP")
    s.sendmail("alice@demo.example", ["zach@remote.example"],
               b"Subject: out to the world\r\n\r\nRelayed from localhost.\r\n")
    print("  sent to zach@remote.example over SMTP (localhost may relay)")
    try:
        s.sendmail("x@example.org", ["nobody@demo.example"], b"x")
    except smtplib.SMTPRecipientsRefused as e:
        print("  refused:", e.recipients)
EOP
printf 'Subject: sendmail, delivered at once\n\nNo -odq this time.\n' |
	"$BIN/sendmail" -C "$CONF" bob
for i in 1 2 3 4 5 6 7 8 9 10; do
	grep -q "out to the world" "$ROOT/sink.txt" 2>/dev/null && break
	sleep 0.5
done
sleep 0.5
kill $SMTPD $SINK 2>/dev/null || true
wait $SMTPD 2>/dev/null || true
say "what smtpd and the SMTP client did"
/usr/bin/python3 - "$ROOT" <<'EOP'
import mailbox, sys
root = sys.argv[1]
for key, msg in mailbox.mbox(root + "/spool/alice").items():
    if msg["Subject"] == "over SMTP":
        print(f"  alice mbox: Subject={msg['Subject']!r} Received={msg['Received'].split(';')[0]!r}")
for key, msg in mailbox.Maildir(root + "/home/bob/Maildir", factory=None).items():
    if msg["Subject"] == "sendmail, delivered at once":
        print(f"  bob maildir: Subject={msg['Subject']!r}")
EOP
echo "  the sink (standing for the remote host) received:"
sed 's/^/    /' "$ROOT/sink.txt" 2>/dev/null | grep -v '^    $' | head -20 || true
grep -E 'smtpd\[|esmtp' "$ROOT/maillog" | tail -12
printf '\nThe throwaway root stays for you to look at: %s\n' "$ROOT"
