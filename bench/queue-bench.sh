#!/bin/sh
# queue-bench.sh: the whole local path, submission -> queue -> maildir, of
# our sendmail and of Postfix side by side: N messages submitted one
# process per message (as cron jobs and scripts do) to a few local users,
# then delivered into their maildirs. See bench/README.md.
#
#   bench/queue-bench.sh [N]            (N messages, default 10000)
#
# Environment: SEED (1), ROUNDS (1; with more, the summary shows medians),
# NUSERS (4 bench users qbench1..qbenchNUSERS, created with useradd when
# missing, homes /home/qbenchN; their ~/Maildir is emptied for every run
# and removed at the end; "userdel -r qbenchN" removes them), SENDMAIL and
# DELIVER (default bin/ of this tree; copied before the run), POSTFIX (1 =
# also run Postfix, the default when /usr/sbin/postfix exists; 0 = ours
# only), WARMUP (20 messages per configuration, untimed), TIMEOUT (300 s
# without a delivery counts as a failure), BENCH_TMP (where the throwaway
# root goes, default /tmp; not tmpfs: fsync must cost what it costs),
# KEEP=1 (keep the throwaway root).
#
# Four configurations, each timed by bench/queue-drive (one process per
# message, the message on a pipe; a child subreaper, so the CPU of every
# detached delivery and daemon process is counted, and nothing else):
#
#   ours/queued        sendmail -odq per message, then one "sendmail -q"
#   postfix/queued     Postfix's sendmail per message with the instance
#                      stopped (postdrop leaves them in maildrop), then
#                      "postfix start": pickup, cleanup, qmgr, local
#   ours/background    sendmail per message, default mode: root's sendmail
#                      forks a detached delivery of that message
#   postfix/background Postfix's sendmail per message, instance running
#
# Fairness, so that the ratios mean something:
# - Same messages (bench/gen-messages.py, seeded), same order, same
#   envelope (-i -f bench-sender@example.org user@bench.example, message
#   i to user i mod NUSERS), same users, the same pre-created empty
#   ~/Maildir for every run; both deliver as the recipient into new/.
# - Both run as root, with their default concurrency: ours max_deliveries
#   4; Postfix local_destination_concurrency_limit 2 per recipient,
#   default_process_limit 100. Both log to a file in the throwaway root
#   (ours with maillog lines, Postfix through postlogd); neither uses
#   aliases (ours: absent tables; Postfix: alias_maps empty); both look
#   for ~/.forward (ours also for ~/.procmailrc; there are none).
# - The Postfix instance is private: its own config_directory, queue_
#   directory and data_directory in the throwaway root, no inet listener
#   (master.cf without smtp), daemons not chrooted, biff = no. No host
#   instance is configured or started (no /etc/postfix/main.cf is needed;
#   /etc/postfix is read only as meta_directory, Debian's postfix-files
#   and dynamicmaps.cf), and nothing listens on port 25.
# - The configurations run interleaved in one run (the machine may be
#   shared): each round runs all four, alternating which system goes
#   first; a warm-up of WARMUP messages per configuration comes first.
# - Durability differs and is reported: ours fsyncs the df, the qf and
#   the queue directory at submission, and deliver the maildir file and
#   new/; Postfix fsyncs the maildrop file, the queue file, and the
#   maildir file, never a directory.
set -eu

N=${1:-${N:-10000}}
SEED=${SEED:-1}
ROUNDS=${ROUNDS:-1}
NUSERS=${NUSERS:-4}
WARMUP=${WARMUP:-20}
TIMEOUT=${TIMEOUT:-300}
HERE=$(cd "$(dirname "$0")" && pwd)
SENDMAIL=${SENDMAIL:-$HERE/../bin/sendmail}
DELIVER=${DELIVER:-$HERE/../bin/deliver}
PF_SENDMAIL=/usr/sbin/sendmail
POSTFIX=${POSTFIX:-$([ -x /usr/sbin/postfix ] && echo 1 || echo 0)}
SENDER=bench-sender@example.org
DOMAIN=bench.example

[ "$(id -u)" = 0 ] || { echo "run as root (both MTAs deliver as the recipient)" >&2; exit 1; }
[ -x "$SENDMAIL" ] || { echo "no sendmail at $SENDMAIL: run make, or set SENDMAIL" >&2; exit 1; }
[ -x "$DELIVER" ] || { echo "no deliver at $DELIVER: run make, or set DELIVER" >&2; exit 1; }
SENDMAIL=$(cd "$(dirname "$SENDMAIL")" && pwd)/$(basename "$SENDMAIL")
DELIVER=$(cd "$(dirname "$DELIVER")" && pwd)/$(basename "$DELIVER")
if [ "$POSTFIX" = 1 ]; then
	{ [ -x /usr/sbin/postfix ] && getent passwd postfix >/dev/null; } || {
		echo "POSTFIX=1 needs postfix (apt-get install -y" \
		     "--no-install-recommends postfix), or use POSTFIX=0" >&2
		exit 1; }
	grep -q postdrop "$PF_SENDMAIL" || {
		echo "$PF_SENDMAIL is not Postfix's" >&2; exit 1; }
fi

# The bench users: real accounts, because a root-run deliver (and
# Postfix's local) look the recipient up in the host's passwd.
USERS="" RCPTS="" WATCH=""
i=1
while [ "$i" -le "$NUSERS" ]; do
	u=qbench$i
	if ! getent passwd "$u" >/dev/null; then
		useradd -m -d "/home/$u" -s /usr/sbin/nologin \
			-c "queue-bench.sh user" "$u"
	fi
	# Their ~/Maildir is emptied for every run: only accounts that this
	# script made are used.
	if [ "$(getent passwd "$u" | cut -d: -f5)" != "queue-bench.sh user" ]; then
		echo "user $u exists but was not made by queue-bench.sh" >&2
		exit 1
	fi
	home=$(getent passwd "$u" | cut -d: -f6)
	for f in .forward .procmailrc; do
		if [ -e "$home/$f" ]; then
			echo "$home/$f exists: the bench users must have none" >&2
			exit 1
		fi
	done
	USERS="$USERS $u"
	RCPTS="$RCPTS${RCPTS:+,}$u@$DOMAIN"
	WATCH="$WATCH${WATCH:+,}$home/Maildir/new"
	i=$((i + 1))
done

ROOT=$(mktemp -d "${BENCH_TMP:-/tmp}/queue-bench.XXXXXX")
chmod 755 "$ROOT"
PF=$ROOT/postfix
cleanup() {
	if [ "$POSTFIX" = 1 ] && [ -f "$PF/etc/main.cf" ] &&
	   postfix -c "$PF/etc" status >/dev/null 2>&1; then
		postfix -c "$PF/etc" stop >/dev/null 2>&1 || true
	fi
	for u in $USERS; do
		rm -rf "$(getent passwd "$u" | cut -d: -f6)/Maildir"
	done
	[ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
RESULTS=$ROOT/results
: > "$RESULTS"

${CC:-cc} -O2 -o "$ROOT/queue-drive" "$HERE/queue-drive.c"
# Copies, so that a rebuild of the tree during the run (make replaces
# bin/ in place) cannot change or break the programs measured.
mkdir "$ROOT/bin"
cp "$SENDMAIL" "$ROOT/bin/sendmail"
cp "$DELIVER" "$ROOT/bin/deliver"
BUILD="sendmail $(sha256sum "$SENDMAIL" | cut -c1-12), deliver $(sha256sum "$DELIVER" | cut -c1-12)"
SENDMAIL_SRC=$SENDMAIL
SENDMAIL=$ROOT/bin/sendmail
DELIVER=$ROOT/bin/deliver
python3 "$HERE/gen-messages.py" -n "$N" -s "$SEED" "$ROOT/msgs"

# --- ours: a throwaway installation -------------------------------------
OURS=$ROOT/ours
mkdir -p "$OURS/tmp" "$OURS/spool"
chmod 1777 "$OURS/tmp"
# Every table, the log, the statistics and the queue are in the root:
# the host's /etc/aliases, /etc/procmailrc and /etc/mail are not used.
cat > "$OURS/mail.conf" <<EOF
hostname = $DOMAIN
spool_dir = $OURS/spool
mailbox = ~/Maildir/
queue_dir = $OURS/queue
log = $OURS/maillog
statistics = $OURS/statistics
tmp_dir = $OURS/tmp
aliases = $OURS/aliases
virtusertable = $OURS/virtusertable
mailertable = $OURS/mailertable
access = $OURS/access
system_rcfile = $OURS/procmailrc
sendmail_path = $OURS/no-relay
deliver_path = $DELIVER
EOF

# --- Postfix: a private instance ----------------------------------------
if [ "$POSTFIX" = 1 ]; then
	mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
	chown postfix:postfix "$PF/data"
	chmod 700 "$PF/data"
	cat > "$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $PF/etc
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
mydestination = $DOMAIN, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
home_mailbox = Maildir/
alias_maps =
alias_database =
biff = no
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
EOF
	# Debian's master.cf without the smtp listener and the pipe(8)
	# examples, with no daemon chrooted (the queue directory is no
	# chroot jail: nothing was copied into it).
	cat > "$PF/etc/master.cf" <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	# "postfix check" creates the queue's subdirectories.
	postfix -c "$PF/etc" check > "$PF/check.log" 2>&1 || {
		cat "$PF/check.log" >&2
		echo "postfix check failed; see $PF/maillog" >&2
		exit 1; }
fi
PF_CTL="postfix -c $PF/etc"

fresh_maildirs() {
	for u in $USERS; do
		home=$(getent passwd "$u" | cut -d: -f6)
		rm -rf "$home/Maildir"
		for d in "" /new /cur /tmp; do
			install -d -o "$u" -g "$(id -g "$u")" -m 700 \
				"$home/Maildir$d"
		done
	done
}

# drive LABEL LIMIT [driver options...] -- CMD...: one driver run on
# fresh maildirs. LIMIT is "" for all messages.
drive() {
	label=$1 limit=$2
	shift 2
	fresh_maildirs
	"$ROOT/queue-drive" -l "$label" ${limit:+-n "$limit"} -t "$TIMEOUT" \
		-r "$RCPTS" -w "$WATCH" "$@"
}

# The four configurations: NAME [LIMIT] runs it and prints its line.
run() {
	case $1 in
	ours/queued)
		drive "$1" "${2:-}" -Q "$SENDMAIL -C $OURS/mail.conf -q" \
			"$ROOT/msgs" "$SENDMAIL" -C "$OURS/mail.conf" -odq -i \
			-f "$SENDER" %r ;;
	ours/background)
		drive "$1" "${2:-}" "$ROOT/msgs" \
			"$SENDMAIL" -C "$OURS/mail.conf" -i -f "$SENDER" %r ;;
	postfix/queued)
		drive "$1" "${2:-}" -Q "$PF_CTL start >>$PF/ctl.log 2>&1" \
			-A "$PF_CTL stop >>$PF/ctl.log 2>&1" "$ROOT/msgs" \
			"$PF_SENDMAIL" -C "$PF/etc" -i -f "$SENDER" %r ;;
	postfix/background)
		drive "$1" "${2:-}" -B "$PF_CTL start >>$PF/ctl.log 2>&1" \
			-A "$PF_CTL stop >>$PF/ctl.log 2>&1" "$ROOT/msgs" \
			"$PF_SENDMAIL" -C "$PF/etc" -i -f "$SENDER" %r ;;
	esac
}

# verify LABEL: every message arrived exactly once, to its recipient,
# with its body intact, and both queues are empty.
verify() {
	# shellcheck disable=SC2086 # USERS is a word list
	python3 - "$1" "$ROOT/msgs" "$N" "$OURS/queue" "$PF/spool" $USERS <<'EOF'
import collections, hashlib, os, pwd, sys
label, msgdir, n, ours_queue, pf_spool, *users = sys.argv[1:]
n = int(n)

def split(data):
    # Header section and body: maildir files keep LF line ends.
    end = data.find(b"\n\n")
    return (data, b"") if end < 0 else (data[:end + 1], data[end + 2:])

def message_id(header):
    for line in header.split(b"\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip().decode()
    return None

expected = {u: collections.Counter() for u in users}
bodies = {}
names = sorted(f for f in os.listdir(msgdir) if f.endswith(".eml"))[:n]
for i, name in enumerate(names):
    header, body = split(open(os.path.join(msgdir, name), "rb").read())
    mid = message_id(header)
    expected[users[i % len(users)]][mid] += 1
    bodies[mid] = hashlib.sha256(body).hexdigest()

errors = []
total = 0
for u in users:
    md = os.path.join(pwd.getpwnam(u).pw_dir, "Maildir")
    got = collections.Counter()
    for sub in ("tmp", "cur"):
        left = os.listdir(os.path.join(md, sub))
        if left:
            errors.append(f"{u}: {len(left)} files in Maildir/{sub}")
    for f in os.listdir(os.path.join(md, "new")):
        header, body = split(open(os.path.join(md, "new", f), "rb").read())
        mid = message_id(header)
        got[mid] += 1
        total += 1
        if mid in bodies and hashlib.sha256(body).hexdigest() != bodies[mid]:
            errors.append(f"{u}: body of {mid} differs from the original")
    missing = expected[u] - got
    extra = got - expected[u]
    if missing:
        errors.append(f"{u}: {sum(missing.values())} messages missing, "
                      f"e.g. {next(iter(missing))}")
    if extra:
        errors.append(f"{u}: {sum(extra.values())} unexpected or duplicate "
                      f"messages, e.g. {next(iter(extra))}")
if label.startswith("ours"):
    left = [f for f in os.listdir(ours_queue) if not f.startswith(".")] \
        if os.path.isdir(ours_queue) else []
else:
    left = [os.path.join(d, f) for q in ("maildrop", "incoming", "active",
                                         "deferred", "hold", "corrupt")
            for d, _, fs in os.walk(os.path.join(pf_spool, q)) for f in fs]
if left:
    errors.append(f"{len(left)} files left in the queue, e.g. {left[0]}")
if errors:
    print(f"{label}: VERIFY FAILED ({total} files)", file=sys.stderr)
    for e in errors[:20]:
        print("  " + e, file=sys.stderr)
    sys.exit(1)
print(f"  verified: {total} messages, each once, to its recipient, "
      f"bodies intact, queue empty")
EOF
}

SYSTEMS="ours"
[ "$POSTFIX" = 1 ] && SYSTEMS="ours postfix"
case $SENDMAIL_SRC in
"$(cd "$HERE/.." && pwd)"/*)
	BUILD="$BUILD; tree $(git -C "$HERE" describe --always --dirty 2>/dev/null || echo '(no git)')" ;;
esac
echo "ours:     $SENDMAIL_SRC (sha256 $BUILD)"
[ "$POSTFIX" = 1 ] && echo "postfix:  $(postconf -d -h mail_version) ($PF_SENDMAIL -C $PF/etc)"
echo "messages: $N (seed $SEED) to$USERS at $DOMAIN, rounds: $ROUNDS, root: $ROOT"
echo "machine:  $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) at start, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo

if [ "$POSTFIX" = 1 ]; then
	# Once started, the instance's public/pickup socket exists, so that
	# postdrop with the instance stopped finds no server there, as on an
	# installed system, and does not warn that it is missing.
	$PF_CTL start >>"$PF/ctl.log" 2>&1
	$PF_CTL stop >>"$PF/ctl.log" 2>&1
fi
# Warm-up: binaries, libraries and messages in the page cache.
for sys in $SYSTEMS; do
	for mode in queued background; do
		run "$sys/$mode" "$WARMUP" > /dev/null
	done
done
if [ "$POSTFIX" = 1 ]; then
	# What starting and stopping the instance costs by itself (counted
	# in the postfix rows, once per run, as the -A/-Q commands).
	fresh_maildirs
	"$ROOT/queue-drive" -l "postfix-start+stop" -n 0 -r "$RCPTS" \
		-w "$WATCH" -B "$PF_CTL start >>$PF/ctl.log 2>&1" \
		-A "$PF_CTL stop >>$PF/ctl.log 2>&1" "$ROOT/msgs" /bin/true |
		awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^cpu_ms=/)
			print "postfix start+stop, empty queue: " substr($i, 8) \
			      " ms CPU (in the postfix rows: /N per message)" }'
	echo
fi

round=1
while [ "$round" -le "$ROUNDS" ]; do
	order=$SYSTEMS
	[ $((round % 2)) = 0 ] && [ "$POSTFIX" = 1 ] && order="postfix ours"
	for mode in queued background; do
		for sys in $order; do
			run "$sys/$mode" > "$ROOT/line"
			cat "$ROOT/line"
			verify "$sys/$mode"
			cat "$ROOT/line" >> "$RESULTS"
		done
	done
	round=$((round + 1))
done

echo
python3 - "$RESULTS" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, *fields = line.split()
    runs.setdefault(label, []).append(dict(f.split("=", 1) for f in fields))
def med(label, key):
    return statistics.median(float(r[key]) for r in runs[label])
print(f"{'':20} {'submit':>8} {'queue run':>10} {'end-to-end':>11}"
      f" {'CPU ms/msg':>11} {'submit':>7} {'queue':>7}")
print(f"{'':20} {'msgs/s':>8} {'msgs/s':>10} {'msgs/s':>11}"
      f" {'total':>11} {'CPU':>7} {'CPU':>7}")
for label in runs:
    queued = label.endswith("/queued")
    q = f"{med(label, 'queue_rate'):10.1f}" if queued else f"{'-':>10}"
    qc = f"{med(label, 'queue_cpu_ms'):7.3f}" if queued else f"{'-':>7}"
    sc = f"{med(label, 'submit_cpu_ms'):7.3f}" if queued else f"{'-':>7}"
    print(f"{label:20} {med(label, 'submit_rate'):8.1f} {q}"
          f" {med(label, 'e2e_rate'):11.1f} {med(label, 'cpu_ms'):11.3f}"
          f" {sc} {qc}")
print()
for mode in ("queued", "background"):
    o, p = f"ours/{mode}", f"postfix/{mode}"
    if o not in runs or p not in runs:
        continue
    parts = [f"submit {med(o, 'submit_rate') / med(p, 'submit_rate'):.2f}"]
    if mode == "queued":
        parts.append("queue run "
                     f"{med(o, 'queue_rate') / med(p, 'queue_rate'):.2f}")
    parts.append("end-to-end "
                 f"{med(o, 'e2e_rate') / med(p, 'e2e_rate'):.2f}")
    parts.append(f"CPU/msg {med(o, 'cpu_ms') / med(p, 'cpu_ms'):.2f}")
    print(f"ratio ours/postfix {mode:11} " + "  ".join(parts))
if "postfix/queued" not in runs:
    sys.exit(0)
print()
print("Rates: above 1, ours is faster; CPU: below 1, ours uses less. "
      "Queued: ours\nsubmits into its queue (header rewrite, df+qf, "
      "fsyncs) and 'sendmail -q'\ndelivers; Postfix's submission is "
      "postdrop into maildrop only, pickup and\ncleanup run in its queue "
      "run ('postfix start', included). Background:\nsubmit is how fast "
      "the submitting processes return; end-to-end ends with\nthe last "
      "maildir file.")
EOF
