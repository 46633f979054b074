#!/bin/sh
# rules-bench.sh: the rules engine of deliver against procmail on the same
# 50-recipe rcfile, one process per message, as an MTA runs a delivery
# agent; then what ATTACHMENT_TYPES costs, and proof that libmagic is not
# even loaded by rules that never read it. See bench/README.md.
#
#   bench/rules-bench.sh [N]            (N messages, default 1000)
#
# Environment: N (or the first argument), SEED (1), ROUNDS (1; with more,
# the summary shows medians), DELIVER (default bin/deliver of this tree),
# PROCMAIL (default /usr/bin/procmail), BENCH_TMP (where the throwaway root goes, default /tmp), KEEP=1
# (keep it).
#
# Fairness, so that the ratio means something:
# - The same messages (bench/gen-messages.py, seeded) in the same order,
#   through the same driver (bench/spawn.c: fork+exec per message, the
#   message on a pipe, wait4 for the child's CPU time), as the calling
#   user, into identical sandboxes: the same rcfile text, whose MAILDIR,
#   DEFAULT (a maildir) and LOGFILE are in the sandbox, so that HOME and
#   the spool are not touched and the two differ only in the sandbox path.
# - deliver runs as "deliver -C conf -f SENDER -r RCFILE", procmail as
#   "procmail -m -f SENDER RCFILE": one rcfile as the caller, arguments
#   after it as $1... . Without -m (rcfile mode) procmail would differ only
#   in defaults this rcfile sets itself (MAILDIR, DEFAULT) and in creating
#   the caller's empty /var/mail/$LOGNAME, which deliver -r never touches;
#   -m keeps the host's spool out of the run.
# - The rcfile has no command recipes: the rules themselves are measured,
#   not the commands they would start. Both write one LOGFILE abstract a
#   message; deliver also writes its maillog line (to a file).
# - The mbox folders get one seed message before the run, and 5 messages
#   warm up each sandbox before it is timed: procmail sleeps 1 s after
#   writing to a new or empty mbox (its NFS atime hack), which would
#   dominate a short run.
# - Both fsync every message (deliver also the maildir's new/ directory:
#   see deliver-bench.sh for what that costs on a real disk).
# - After each run, every folder of the two sandboxes must hold the same
#   number of messages (the "check" lines); the script fails otherwise.
# - ATTACHMENT_TYPES: the same rcfile with one more recipe, early, that
#   quarantines Windows executables by their real type. procmail runs it
#   too (the variable is empty there; the rcfile stays valid for both).
#   libmagic is looked for with LD_DEBUG=files: the dynamic loader names
#   every library it loads, dlopen()ed ones included.
set -eu

N=${1:-${N:-1000}}
SEED=${SEED:-1}
ROUNDS=${ROUNDS:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
DELIVER=${DELIVER:-$HERE/../bin/deliver}
PROCMAIL=${PROCMAIL:-/usr/bin/procmail}
SENDER=bench-sender@example.org
WARMUP=5
# The mbox folders of the rcfile below (the others are maildirs).
MBOXES="invoices bounces archive"

[ -x "$DELIVER" ] || { echo "no deliver at $DELIVER: run make, or set DELIVER" >&2; exit 1; }
[ -x "$PROCMAIL" ] || { echo "no procmail at $PROCMAIL (apt-get install procmail)" >&2; exit 1; }

ROOT=$(mktemp -d "${BENCH_TMP:-/tmp}/rules-bench.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$ROOT"' EXIT INT TERM
RESULTS=$ROOT/results
: > "$RESULTS"

${CC:-cc} -O2 -o "$ROOT/spawn" "$HERE/spawn.c"
python3 "$HERE/gen-messages.py" -n "$N" -s "$SEED" "$ROOT/msgs"

# The rcfile: 50 recipes of the kind a user's ~/.procmailrc grows to.
# Header tests on From, To, Subject and List-Id, ^TO_ lists, a few body
# tests, a scoring recipe, MATCH, a nested block with E, a copy; most mail
# ends in $DEFAULT, the rest in a dozen folders.
cat > "$ROOT/rules.rc" <<'EOF'
MAILDIR=@MAILDIR@
DEFAULT=$MAILDIR/inbox/
LOGFILE=$MAILDIR/procmail.log

# 1-4: loops and what the spam filter upstream marked
:0
* ^X-Loop: sam@example\.org
/dev/null

:0
* ^X-Spam-Flag: YES
spam/

:0
* ^X-Spam-Level: \*\*\*\*\*
spam/

:0
* ^Subject:.*\[(SPAM|BULK)\]
spam/

# 5: a score of small hints
:0
* -100^0
* 50^0 ^Subject:.*(deadline|urgent|invoice)
* 40^0 ^Content-Type: multipart/alternative
* 30^0 ^From:.*@(mail\.example\.com|corp\.example\.net)
* 25^0 ! ^User-Agent:
* 20^0 ^Subject: Re:
* 1^1 ^Received:.*ESMTPS
* -200^0 ^List-Id:
spam/

# 6-7: remember the subject and whether it is a reply
:0
* ^Subject: *\/[^ ].*
{ SUBJECT=$MATCH }

:0
* SUBJECT ?? ^Re:
{ REPLY=yes }

# 8-13: mailing lists by List-Id
:0
* ^List-Id:.*<dev\.example\.com>
lists/dev-example-com/

:0
* ^List-Id:.*<dev\.example\.org>
lists/dev-example-org/

:0
* ^List-Id:.*<dev\.example\.net>
lists/dev-example-net/

:0
* ^List-Id:.*<dev\.mail\.example\.com>
lists/dev-mail/

:0
* ^List-Id:.*<dev\.lists\.example\.org>
lists/dev-lists/

:0
* ^List-Id:.*<dev\.corp\.example\.net>
lists/dev-corp/

# 14-19: lists that come without List-Id
:0
* ^TO_announce@example\.com
lists/announce/

:0
* ^TO_(security|cert)@example\.(com|org)
lists/security/

:0
* ^TO_debian-(devel|user)@lists\.debian\.org
lists/debian/

:0
* ^TO_linux-kernel@vger\.kernel\.org
lists/lkml/

:0
* ^Precedence: (bulk|list|junk)
lists/bulk/

:0
* ^(Mailing-List|X-Mailing-List|X-BeenThere):
lists/other/

# 20-21: bounces and robots
:0:
* ^FROM_MAILER
bounces

:0
* ^FROM_DAEMON
robots/

# 22: a copy of everything from two colleagues
:0 c:
* ^From:.*\<(grace|heidi)\.
archive

# 23-28: people
:0
* ^From:.*\<trent\.
people/trent/

:0
* ^From:.*\<(victor|walter)\.(smith|jones)@
people/vw/

:0
* ^From:.*@family\.example
people/family/

:0
* ^TO_judy\.
to-judy/

:0
* ^Cc:.*\<mallory\.
* ! ^To:.*\<mallory\.
cc-mallory/

:0
* ^Reply-To:.*noreply
notifications/

# 29-30: big mail
:0
* > 500000
* ^Content-Type: multipart/mixed
big/

:0
* < 100
tiny/

# 31-33: invoices by subject, documents and deadlines by body
:0:
* ^Subject:.*\<invoice\>
invoices

:0 B
* ^Content-Type: application/(pdf|vnd\.openxmlformats)
documents/

:0 B
* \<deadline (tomorrow|monday|friday)\>
deadlines/

# 34-41: work mail, sorted in a block
:0
* ^From:.*@corp\.example\.net
{
	:0
	* ^Subject:.*(budget|quarter|report)
	work/reports/

	:0 E
	* ^Subject:.*(meeting|agenda|schedule)
	work/meetings/

	:0 E
	* ^Subject:.*(release|patch|kernel|build)
	work/builds/

	:0 E
	* REPLY ?? yes
	work/replies/

	:0 HB
	* server.*(failure|down)
	work/alerts/

	:0 B
	* ^From .*customer
	work/customers/

	:0
	work/
}

# 42-45: things a user stopped caring about
:0
* ^Subject:.*(newsletter|unsubscribe|webinar)
/dev/null

:0
* ^X-Mailer:.*(Mass|Bulk)
lists/bulk/

:0
* ^Subject:.*\<(sale|offer|discount)\>
promotions/

:0
* ^From:.*(newsletter|marketing|promo)@
promotions/

# 46-50: projects by subject words
:0
* ^Subject:.*\<(backup|disk|queue)\>
ops/

:0
* ^Subject:.*\<(config|version|test)\>.*\<(failure|success)\>
ops/ci/

:0
* $ ^Subject:.*$\SUBJECT.*draft
drafts/

:0 A
* ^Subject:.*final
drafts/final/

:0
* ^X-Priority: 1
urgent/
EOF

# The same with one more recipe, early, that reads ATTACHMENT_TYPES.
awk '/^# 6-7: remember the subject/ && !done {
	print "# the extension: a Windows executable, whatever it is called"
	print ":0"
	print "* ATTACHMENT_TYPES ?? ^application/(x-dosexec|x-executable|vnd\\.microsoft\\.portable-executable)$"
	print "quarantine/"
	print ""
	done = 1
}
{ print }' "$ROOT/rules.rc" > "$ROOT/types.rc"

recipes=$(grep -c '^[[:space:]]*:0' "$ROOT/rules.rc")
[ "$recipes" = 50 ] || { echo "rules.rc has $recipes recipes, not 50" >&2; exit 1; }

# sandbox WHO RC: a fresh sandbox $ROOT/WHO with mail/ and its rcfile.
sandbox() {
	dir=$ROOT/$1
	rm -rf "$dir"
	# the parents of nested folders: neither program makes them
	mkdir -p "$dir/mail/lists" "$dir/mail/people" "$dir/mail/work" \
		"$dir/mail/drafts" "$dir/mail/ops"
	sed "s|@MAILDIR@|$dir/mail|" "$ROOT/$2.rc" > "$dir/rc"
	for mbox in $MBOXES; do
		printf 'From seed@example.org Thu Jan  1 00:00:00 1970\nSubject: seed\n\nseed\n\n' \
			> "$dir/mail/$mbox"
	done
	cat > "$dir/mail.conf" <<EOF
hostname = bench.example
mailbox = $dir/mail/inbox/
log = $dir/maillog
statistics = $dir/statistics
aliases = $dir/aliases
virtusertable = $dir/virtusertable
EOF
}

# counts DIR: "folder count" lines for every folder below DIR/mail.
counts() {
	python3 - "$1/mail" <<'EOF'
import mailbox, os, sys
top, out = sys.argv[1], []
for path, dirs, files in os.walk(top):
    rel = os.path.relpath(path, top)
    if "new" in dirs and "cur" in dirs:
        n = len(os.listdir(os.path.join(path, "new"))) + \
            len(os.listdir(os.path.join(path, "cur")))
        out.append(f"{rel}/ {n}")
        dirs[:] = [d for d in dirs if d not in ("new", "cur", "tmp")]
    for f in files:
        if f == "procmail.log" or f.endswith(".lock"):
            continue
        mb = mailbox.mbox(os.path.join(path, f), create=False)
        out.append(f"{os.path.normpath(os.path.join(rel, f))} {len(mb)}")
print("\n".join(sorted(out)))
EOF
}

# run LABEL WHO RC: fresh sandbox, warm-up, timed run.
run() {
	label=$1 who=$2 rc=$3
	sandbox "$who" "$rc"
	dir=$ROOT/$who
	case $label in
	deliver*) set -- "$DELIVER" -C "$dir/mail.conf" -f "$SENDER" -r "$dir/rc" ;;
	procmail*) set -- "$PROCMAIL" -m -f "$SENDER" "$dir/rc" ;;
	esac
	"$ROOT/spawn" -p -l "$label" -n "$WARMUP" "$ROOT/msgs" "$@" > /dev/null
	"$ROOT/spawn" -p -l "$label" "$ROOT/msgs" "$@" | tee -a "$RESULTS"
}

# check RC: the deliver and procmail sandboxes of RC hold the same mail.
check() {
	counts "$ROOT/d-$1" > "$ROOT/d-$1.counts"
	counts "$ROOT/p-$1" > "$ROOT/p-$1.counts"
	total=$(awk '{ n += $2 } END { print n }' "$ROOT/d-$1.counts")
	folders=$(wc -l < "$ROOT/d-$1.counts")
	inbox=$(awk '$1 == "inbox/" { print $2 }' "$ROOT/d-$1.counts")
	if cmp -s "$ROOT/d-$1.counts" "$ROOT/p-$1.counts"; then
		echo "check $1: same count in all $folders folders" \
			"($total messages, $inbox in DEFAULT): ok"
	else
		echo "check $1: deliver and procmail differ (folder count):" >&2
		diff "$ROOT/d-$1.counts" "$ROOT/p-$1.counts" >&2 || true
		exit 1
	fi
}

# magic_lines RC: the loader's lines about libmagic while deliver runs RC
# on a message with an attachment.
magic_lines() {
	sandbox "ld-$1" "$1"
	msg=$(grep -l '^Content-Type: multipart/mixed' "$ROOT"/msgs/*.eml |
		head -n 1)
	LD_DEBUG=files "$DELIVER" -C "$ROOT/ld-$1/mail.conf" -f "$SENDER" \
		-r "$ROOT/ld-$1/rc" < "$msg" 2>&1 >/dev/null |
		grep -c 'libmagic' || true
}

echo "deliver:  $DELIVER"
echo "procmail: $PROCMAIL -m ($("$PROCMAIL" -v 2>&1 | head -n 1))"
echo "messages: $N (seed $SEED), rounds: $ROUNDS, recipes: $recipes, root: $ROOT"
echo
"$ROOT/spawn" -p -l "baseline(/bin/true)" "$ROOT/msgs" /bin/true |
	tee -a "$RESULTS"
round=1
while [ "$round" -le "$ROUNDS" ]; do
	run deliver/rules d-rules rules
	run procmail/rules p-rules rules
	check rules
	run deliver/rules+types d-types types
	run procmail/rules+types p-types types
	check types
	round=$((round + 1))
done

without=$(magic_lines rules)
with=$(magic_lines types)
echo
if [ "$without" -eq 0 ] && [ "$with" -gt 0 ]; then
	echo "libmagic: not loaded by rules without ATTACHMENT_TYPES" \
		"(LD_DEBUG=files: $without lines); loaded with it ($with lines): ok"
else
	echo "libmagic: $without loader lines without ATTACHMENT_TYPES," \
		"$with with it: expected 0 and more than 0" >&2
	exit 1
fi

echo
python3 - "$RESULTS" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, *fields = line.split()
    kv = dict(f.split("=", 1) for f in fields)
    runs.setdefault(label, []).append(kv)
def med(label, key):
    return statistics.median(float(r[key]) for r in runs[label])
print(f"{'':24} {'msgs/s':>9} {'CPU ms/msg':>11} {'user':>7} {'sys':>7}"
      f" {'max RSS KiB':>12}")
for label in runs:
    print(f"{label:24} {med(label, 'rate'):9.1f} {med(label, 'cpu_ms'):11.3f}"
          f" {med(label, 'user_ms'):7.3f} {med(label, 'sys_ms'):7.3f}"
          f" {med(label, 'maxrss_kib'):12.0f}")
print()
for rc in ("rules", "rules+types"):
    d, p = f"deliver/{rc}", f"procmail/{rc}"
    print(f"ratio deliver/procmail {rc:12} "
          f"rate {med(d, 'rate') / med(p, 'rate'):.2f}  "
          f"CPU/msg {med(d, 'cpu_ms') / med(p, 'cpu_ms'):.2f}")
plain, typed = "deliver/rules", "deliver/rules+types"
print(f"ATTACHMENT_TYPES in deliver: "
      f"+{med(typed, 'cpu_ms') - med(plain, 'cpu_ms'):.3f} CPU ms/msg "
      f"(CPU x{med(typed, 'cpu_ms') / med(plain, 'cpu_ms'):.2f}, "
      f"rate x{med(typed, 'rate') / med(plain, 'rate'):.2f})")
print()
print("Ratios: rate above 1 and CPU/msg below 1 favour deliver. The "
      "baseline row is\nthe fork+exec every row pays. procmail never "
      "computes ATTACHMENT_TYPES.")
EOF
