#!/bin/sh
# deliver-bench.sh: deliver vs procmail, one process per message, as an MTA
# runs a delivery agent. See bench/README.md.
#
#   bench/deliver-bench.sh [N]          (N messages, default 1000)
#
# Environment: DELIVER (the binary; default bin/deliver of this tree),
# PROCMAIL (default /usr/bin/procmail), SEED (1), ROUNDS (1; with more,
# the summary shows medians), STDIN (pipe or file; pipe as an MTA does),
# DELIVER_FLAGS (extra flags for deliver, e.g. -d: no alias or .forward
# resolution, as procmail -d), NOSYNC (1 = also run both with libeatmydata, i.e. with fsync turned off;
# the default when the library is installed), BENCH_TMP (where the
# throwaway root goes, default /tmp: keep it on the disk you care about,
# not tmpfs, or fsync costs nothing), KEEP=1 (keep the throwaway root).
#
# Fairness, so that the ratio means something:
# - The same messages (bench/gen-messages.py, seeded), in the same order,
#   through the same driver (bench/spawn.c: fork+exec per message, the
#   message on a pipe, wait4 for the child's CPU time), the same user
#   (root, delivering to files root owns; neither program switches user),
#   into a fresh mailbox in the same directory tree for each run.
# - Same envelope: both get the sender with -f; both write a "From " line,
#   quote "From " lines in the body, and log one record per message to a
#   file (deliver its maillog line, procmail its LOGFILE lines).
# - Same locking for mbox: deliver takes fcntl + dot-lock; procmail's
#   ":0:" recipe takes the dot-lock and (Debian's build) an fcntl lock.
#   Maildir: neither locks.
# - One warm-up of 5 messages each before timing (binaries, libraries and
#   the message files in the page cache), into the same mailbox, so that
#   the timed run never starts on a new mbox: procmail sleeps 1 s after
#   its first byte when the mbox's mtime equals its atime, in practice on a
#   new or empty one (its NFS atime hack), which would dominate a short run.
# - Durability differs and is reported, not hidden: deliver fdatasync()s
#   the mbox, or fsync()s the maildir file and then the new/ directory
#   (without the latter a rename may vanish in a crash). Debian's procmail
#   3.23 fsync()s the mbox or the maildir file, but never the directory.
#   With NOSYNC the same runs are repeated with fsync made a no-op in both,
#   which compares the code paths alone.
# - procmail runs in -m mode with an rcfile, as the calling user; deliver
#   with "-C conf -f sender root", so it also resolves the recipient
#   (virtusertable, aliases, ~root/.forward), against empty tables in the
#   throwaway root: the host's /etc/aliases is neither read nor compiled.
#   With DELIVER_FLAGS=-d it skips that, as procmail -d would.
# - A baseline row runs /bin/true the same way: the cost of fork, exec and
#   the dynamic loader that every row pays. A test user through nss_wrapper is not
#   used: procmail -d clears its environment before it looks the user up,
#   so the wrapper cannot reach it, and -m never switches users anyway.
set -eu

N=${1:-${N:-1000}}
SEED=${SEED:-1}
ROUNDS=${ROUNDS:-1}
STDIN=${STDIN:-pipe}
HERE=$(cd "$(dirname "$0")" && pwd)
DELIVER=${DELIVER:-$HERE/../bin/deliver}
PROCMAIL=${PROCMAIL:-/usr/bin/procmail}
SENDER=bench-sender@example.org
EATMYDATA=$(ls /usr/lib/*/libeatmydata.so /usr/lib/libeatmydata.so \
	2>/dev/null | head -n 1 || true)
NOSYNC=${NOSYNC:-$([ -n "$EATMYDATA" ] && echo 1 || echo 0)}

[ -x "$DELIVER" ] || { echo "no deliver at $DELIVER: run make, or set DELIVER" >&2; exit 1; }
[ -x "$PROCMAIL" ] || { echo "no procmail at $PROCMAIL (apt-get install procmail)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (both programs deliver to root's files)" >&2; exit 1; }
DELIVER_FLAGS=${DELIVER_FLAGS:-}
case " $DELIVER_FLAGS " in
*" -d "*) ;;
*)	ROOT_HOME=$(getent passwd root | cut -d: -f6)
	if [ -e "$ROOT_HOME/.forward" ]; then
		echo "$ROOT_HOME/.forward exists: deliver would forward root's mail; use DELIVER_FLAGS=-d" >&2
		exit 1
	fi ;;
esac
if [ "$NOSYNC" = 1 ] && [ -z "$EATMYDATA" ]; then
	echo "NOSYNC=1 needs libeatmydata (apt-get install eatmydata)" >&2
	exit 1
fi
case $STDIN in pipe) SPAWN_MODE=-p ;; file) SPAWN_MODE=-f ;;
	*) echo "STDIN must be pipe or file" >&2; exit 1 ;; esac

ROOT=$(mktemp -d "${BENCH_TMP:-/tmp}/deliver-bench.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$ROOT"' EXIT INT TERM
RESULTS=$ROOT/results
: > "$RESULTS"

${CC:-cc} -O2 -o "$ROOT/spawn" "$HERE/spawn.c"
python3 "$HERE/gen-messages.py" -n "$N" -s "$SEED" "$ROOT/msgs"
# A non-setuid copy of procmail for the NOSYNC runs: the dynamic loader
# ignores LD_PRELOAD for a set-id program. Mode bits are all that differ.
cp "$PROCMAIL" "$ROOT/procmail-nosuid"
chmod 755 "$ROOT/procmail-nosuid"

# setup FORMAT DIR: writes DIR/mail.conf and DIR/procmailrc that deliver
# to DIR/deliver/... and DIR/procmail/... in FORMAT (mbox or maildir).
setup() {
	rm -rf "$2"
	mkdir -p "$2/deliver" "$2/procmail"
	if [ "$1" = mbox ]; then
		dmbox='$spool_dir/%u'
		pdefault=$2/procmail/root
		precipe=':0:'
	else
		dmbox=$2/deliver/Maildir/
		pdefault=$2/procmail/Maildir/
		precipe=':0'
	fi
	# hostname is set so that neither program depends on the resolver;
	# the tables do not exist (empty), so that the host's are not used.
	cat > "$2/mail.conf" <<EOF
hostname = bench.example
spool_dir = $2/deliver
mailbox = $dmbox
log = $2/deliver.log
aliases = $2/aliases
virtusertable = $2/virtusertable
EOF
	cat > "$2/procmailrc" <<EOF
LOGFILE=$2/procmail.log
DEFAULT=$pdefault
$precipe
\$DEFAULT
EOF
}

# count FORMAT DIR/WHO: messages delivered there.
count() {
	if [ "$1" = mbox ]; then
		grep -c '^From ' "$2/root" || true
	else
		find "$2/Maildir/new" -type f | wc -l
	fi
}

# run LABEL FORMAT PRELOAD: a warm-up, then the timed run, then a check.
run() {
	label=$1 format=$2 preload=$3
	case $label in
	deliver*) who=deliver
		cmd="$DELIVER -C @DIR@/mail.conf $DELIVER_FLAGS -f $SENDER root" ;;
	procmail*) who=procmail
		pm=$PROCMAIL
		[ -z "$preload" ] || pm=$ROOT/procmail-nosuid
		cmd="$pm -m -f $SENDER @DIR@/procmailrc" ;;
	esac
	dir=$ROOT/$format
	setup "$format" "$dir"
	# The warm-up goes into the same mailbox: the timed run never writes
	# to a new mbox, where procmail's first write sleeps 1 s.
	for limit in "-n 5" ""; do
		# shellcheck disable=SC2086 # cmd and limit are word lists
		env ${preload:+LD_PRELOAD=$preload} "$ROOT/spawn" $SPAWN_MODE \
			-l "$label/$format" $limit "$ROOT/msgs" \
			$(echo "$cmd" | sed "s|@DIR@|$dir|g") > "$ROOT/line"
	done
	got=$(count "$format" "$dir/$who")
	if [ "$got" != $((N + 5)) ]; then
		echo "$label/$format: $got messages in the mailbox, not $((N + 5))" >&2
		exit 1
	fi
	cat "$ROOT/line" >> "$RESULTS"
	cat "$ROOT/line"
}

echo "deliver:  $DELIVER $DELIVER_FLAGS"
echo "procmail: $PROCMAIL ($("$PROCMAIL" -v 2>&1 | head -n 1))"
echo "messages: $N (seed $SEED), stdin: $STDIN, rounds: $ROUNDS, root: $ROOT"
echo
"$ROOT/spawn" $SPAWN_MODE -l "baseline(/bin/true)" "$ROOT/msgs" /bin/true |
	tee -a "$RESULTS"
round=1
while [ "$round" -le "$ROUNDS" ]; do
	for format in mbox maildir; do
		run deliver "$format" ""
		run procmail "$format" ""
		if [ "$NOSYNC" = 1 ]; then
			run deliver-nosync "$format" "$EATMYDATA"
			run procmail-nosync "$format" "$EATMYDATA"
		fi
	done
	round=$((round + 1))
done

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
for suffix in ("", "-nosync"):
    for fmt in ("mbox", "maildir"):
        d, p = f"deliver{suffix}/{fmt}", f"procmail{suffix}/{fmt}"
        if d in runs and p in runs:
            print(f"ratio deliver/procmail {fmt + suffix:15} "
                  f"rate {med(d, 'rate') / med(p, 'rate'):.2f}  "
                  f"CPU/msg {med(d, 'cpu_ms') / med(p, 'cpu_ms'):.2f}")
print()
print("deliver fsyncs every message (fdatasync on the mbox; fsync of the "
      "maildir\nfile and of new/). procmail fsyncs the mbox or the maildir "
      "file, but not\nthe maildir directory. '-nosync' rows: fsync "
      "disabled in both (libeatmydata).")
EOF
