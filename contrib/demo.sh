#!/bin/sh
# make demo: runs the system in a throwaway directory and shows where mail
# lands. Test users come from nss_wrapper, so nothing on the host changes.
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
EOP
cat > "$ROOT/group" <<EOP
mail:x:8:
alice:x:60001:
bob:x:60002:
root:x:0:
EOP
# alice: the classic spool mbox; bob: a maildir in his home (second config).
cat > "$ROOT/mail.conf" <<EOP
hostname = demo.example
spool_dir = spool
log = maillog
aliases = aliases
virtusertable = virtusertable
system_rcfile = procmailrc
EOP
sed 's|^log.*|log = maillog\nmailbox = ~/Maildir/|' "$ROOT/mail.conf" > "$ROOT/maildir.conf"
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

export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD="$ROOT/passwd" \
	NSS_WRAPPER_GROUP="$ROOT/group"

say() { printf '\n== %s\n' "$*"; }

say "delivering 3 messages to alice (mbox) and 2 to bob (maildir) in $ROOT"
for i in 1 2 3; do
	printf 'From: carol@example.org\nTo: alice@demo.example\nSubject: demo %s\n\nHello alice, message %s.\nFrom here on, a line that mbox must quote.\n' "$i" "$i" |
		"$BIN/deliver" -C "$ROOT/mail.conf" -f carol@example.org alice
done
for i in 1 2; do
	printf 'From: carol@example.org\r\nTo: bob@demo.example\r\nSubject: demo %s\r\n\r\nHello bob (CRLF input), message %s.\r\n' "$i" "$i" |
		"$BIN/deliver" -C "$ROOT/maildir.conf" -f carol@example.org bob
done
say "newaliases, then mail to the alias staff, to alice@demo2.example (virtusertable) and a [lists] message that alice's rules file"
"$BIN/newaliases" -C "$ROOT/mail.conf"
printf 'From: carol@example.org\nSubject: staff meeting\n\nAt noon.\n' |
	"$BIN/deliver" -C "$ROOT/mail.conf" -f carol@example.org staff
printf 'From: carol@example.org\nSubject: via virtusertable\n\nHi.\n' |
	"$BIN/deliver" -C "$ROOT/mail.conf" -f carol@example.org alice@demo2.example
printf 'From: list@example.org\nSubject: [lists] weekly digest\n\nNews.\n' |
	"$BIN/deliver" -C "$ROOT/mail.conf" -f list@example.org alice
"$BIN/deliver" -C "$ROOT/mail.conf" -V staff alice@demo2.example
set +e
printf 'Subject: nobody\n\nx\n' | "$BIN/deliver" -C "$ROOT/mail.conf" nosuchuser
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

say "the maillog"
cat "$ROOT/maillog"
printf '\nThe throwaway root stays for you to look at: %s\n' "$ROOT"
