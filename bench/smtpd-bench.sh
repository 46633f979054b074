#!/bin/sh
# smtpd-bench.sh: SMTP ingest, our smtpd vs Postfix's, with smtp-source.
# See bench/README.md.
#
#   bench/smtpd-bench.sh [N]          (N messages per run, default 2000)
#
# For each number of concurrent sessions in SESSIONS (1 10 50 50d),
# smtp-source sends N messages of 4 KiB (-l 4096), one message per
# connection (with a "d", as in 50d: all of them over that many
# connections kept open, smtp-source -d, which shows what a connection
# costs), to our smtpd and to a Postfix instance of our own, ROUNDS times
# (3); it prints a line per run, the medians, and the ratios ours/Postfix
# of the messages per second and of the server's CPU time per message.
# Then one more run of N messages over RSS_SESSIONS (50) connections held
# open (smtp-source -d: N/50 messages on each) for each server, with
# bench/proc-tree.py sampling /proc, for the peak memory of the server's
# process tree with that many sessions at once; and,
# when strace is installed, 20 messages each under strace, which count the
# fsync calls per message on files and on directories.
#
# Environment: N or the first argument; SESSIONS ("1 10 50 50d"); ROUNDS (3);
# WARMUP (200: messages sent before each timed run, so that Postfix has
# its processes and both have the binaries and tables in memory; before
# the first round each server also gets one untimed run of N messages at
# 10 sessions); SETTLE_US (40) and SETTLE_MAX (420): before it starts, the
# script waits, at most SETTLE_MAX seconds, until creating a file costs
# less than SETTLE_US microseconds (see below; it prints the probe);
# RSS_SESSIONS (50; 0 skips the memory runs); DURCHECK (1; 0 skips the
# strace runs); SMTPD (default bin/smtpd of this tree); SMTPD_USER and
# SMTPD_GROUP (the session user and its group: mail and mail);
# POSTFIX=none (ours alone); BENCH_TMP (where the throwaway root goes,
# default /tmp: keep it on the disk you care about, never tmpfs); KEEP=1.
#
# Fairness, so that the ratio means something:
# - Same client (smtp-source, the same flags: HELO client.example, MAIL
#   FROM:<bench@client.example>, RCPT TO:<bench@remote.example>, 4096
#   bytes of body, QUIT after each message), same loopback address, same
#   file system (one throwaway directory), one server at a time.
# - Neither server delivers while it is measured: ours runs without -q (no
#   queue runner; its sessions' trigger writes find no FIFO), Postfix puts
#   every message on hold (smtpd_client_restrictions = check_client_access
#   static:HOLD), so that its queue manager never touches them. Holding
#   also keeps Postfix's in_flow_delay neutral: cleanup hands the token
#   back for mail it does not put into incoming/.
# - Both accept the message as relay mail from 127.0.0.1 (ours: loopback
#   may relay by default; Postfix: mynetworks = 127.0.0.0/8), both look up
#   the client's name (PTR and forward; /etc/hosts answers for 127.0.0.1),
#   both log to a file in the throwaway root (ours directly, Postfix
#   through postlogd), neither has alias or access tables.
# - Durability differs and is reported, not hidden: ours writes df, fsyncs
#   it, fsyncs the directory, writes tf, fsyncs it, renames it to qf and
#   fsyncs the directory again before "250"; Postfix (mail_stream.c)
#   fsyncs the queue file once and never fsyncs a directory. In practice
#   Linux ext4 makes the name durable with that fsync too (with a journal
#   the fsync commits the transaction that holds the new directory entry;
#   without one, as here, ext4_sync_parent() writes the parent directory
#   of a newly created file), POSIX does not promise it. The strace runs
#   show the counts.
# - Queues are emptied between runs by moving the files aside (into
#   ROOT/aside, removed at the end), not by deleting them, and the file
#   system is synced: on an ext4 without a journal (this VM's) the inode
#   allocator skips every inode freed in the last 5 s (305 s while its
#   inode table block is dirty), and after a few thousand deletions a new
#   file can cost a millisecond of CPU; a run would pay for the previous
#   run's clean-up, and ours (two new files per message) twice as much as
#   Postfix (one). For the same reason the script first waits until new
#   files are cheap (other programs' deletions, a previous run's clean-up
#   included, slow the allocator down for up to 5 minutes) and prints the
#   cost of a new file before and after the rounds. Runs of the two
#   servers alternate within each round.
# - Postfix runs with chroot off (the master.cf column), as our smtpd has
#   no chroot either; otherwise Debian's master.cf and Postfix's defaults.
set -eu

N=${1:-${N:-2000}}
SESSIONS=${SESSIONS:-1 10 50 50d}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-200}
RSS_SESSIONS=${RSS_SESSIONS:-50}
DURCHECK=${DURCHECK:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/postfix-common.sh
. "$HERE/postfix-common.sh"
SMTPD=${SMTPD:-$HERE/../bin/smtpd}
SMTPD_USER=${SMTPD_USER:-mail}
SMTPD_GROUP=${SMTPD_GROUP:-mail}
POSTFIX=${POSTFIX:-$(command -v postfix || echo none)}
SOURCE=${SOURCE:-/usr/sbin/smtp-source}
SOURCE_FLAGS="-l 4096 -M client.example -f bench@client.example -t bench@remote.example"

[ "$(id -u)" = 0 ] || { echo "run as root (smtpd drops to $SMTPD_USER; Postfix needs root)" >&2; exit 1; }
[ -x "$SMTPD" ] || { echo "no smtpd at $SMTPD: run make, or set SMTPD" >&2; exit 1; }
[ -x "$SOURCE" ] || { echo "no $SOURCE (apt-get install postfix)" >&2; exit 1; }
getent passwd "$SMTPD_USER" >/dev/null || { echo "no user $SMTPD_USER" >&2; exit 1; }
getent group "$SMTPD_GROUP" >/dev/null || { echo "no group $SMTPD_GROUP" >&2; exit 1; }
command -v strace >/dev/null || DURCHECK=0

ROOT=$(mktemp -d "${BENCH_TMP:-/tmp}/smtpd-bench.XXXXXX")
chmod 755 "$ROOT"	# the session user walks through it to the queue
OURS=$ROOT/ours
PF=$ROOT/postfix
SMTPD_PID=
PF_UP=0
RESULTS=$ROOT/results
: > "$RESULTS"

cleanup() {
	[ -z "$SMTPD_PID" ] || { kill "$SMTPD_PID" 2>/dev/null; wait "$SMTPD_PID" 2>/dev/null || true; }
	[ "$PF_UP" = 0 ] || "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1 || true
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $ROOT" >&2; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports.
# shellcheck disable=SC2046 # two numbers
set -- $(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
OURS_PORT=$1 PF_PORT=$2

wait_port() {	# wait_port PORT: until something listens there (10 s)
	python3 - "$1" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}

# --- our smtpd -------------------------------------------------------------
mkdir -p "$OURS/queue" "$OURS/tmp"
chown "root:$SMTPD_GROUP" "$OURS/queue"
chmod 2770 "$OURS/queue"
# Every path in the throwaway root; the tables do not exist, so that the
# host's are not read; statistics does not exist either (no counting, as
# after make install, which creates no statistics file).
cat > "$OURS/mail.conf" <<EOF
hostname = bench.example
listen = 127.0.0.1:$OURS_PORT
queue_dir = $OURS/queue
tmp_dir = $OURS/tmp
spool_dir = $OURS/spool
log = $OURS/maillog
statistics = $OURS/statistics
aliases = $OURS/aliases
virtusertable = $OURS/virtusertable
mailertable = $OURS/mailertable
access = $OURS/access
smtpd_user = $SMTPD_USER
submit_group = $SMTPD_GROUP
max_sessions = 500
max_sessions_per_client = 500
EOF
"$SMTPD" -C "$OURS/mail.conf" -F &
SMTPD_PID=$!
wait_port "$OURS_PORT" || { echo "our smtpd did not start; see $OURS/maillog" >&2; exit 1; }

# --- Postfix ---------------------------------------------------------------
if [ "$POSTFIX" != none ]; then
	mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
	chown postfix "$PF/data"
	{ pf_main_cf "$PF" postfix-smtpd-bench; cat <<EOF; } > "$PF/etc/main.cf"
# Nothing is delivered while it is measured: every message goes on hold.
smtpd_client_restrictions = check_client_access static:HOLD
EOF
	# Debian's master.cf, chroot off, smtpd on our port.
	awk -v listen="127.0.0.1:$PF_PORT" '
		/^#/ || /^[ \t]/ || NF == 0 { print; next }
		$1 == "smtp" && $2 == "inet" { $1 = listen }
		$5 == "y" { $5 = "n" }
		{ print }' /etc/postfix/master.cf > "$PF/etc/master.cf"
	"$POSTFIX" -c "$PF/etc" start >/dev/null 2>&1 ||
		{ echo "Postfix did not start; see $PF/maillog" >&2; exit 1; }
	PF_UP=1
	wait_port "$PF_PORT" || { echo "Postfix does not listen; see $PF/maillog" >&2; exit 1; }
fi

# queued SYSTEM: messages in its queue.
queued() {
	case $1 in
	ours) find "$OURS/queue" -name 'qf*' | wc -l ;;
	postfix) find "$PF/queue/hold" "$PF/queue/incoming" "$PF/queue/active" \
		"$PF/queue/deferred" -type f | wc -l ;;
	esac
}

# empty SYSTEM: move every queued message aside (see above), then sync.
ASIDE=$ROOT/aside
mkdir -p "$ASIDE"
empty() {
	aside=$(mktemp -d "$ASIDE/$1.XXXXXX")
	case $1 in
	ours) find "$OURS/queue" -maxdepth 1 -name '[dqtj]f*' \
		-exec mv -t "$aside" {} + ;;
	postfix) find "$PF/queue/hold" "$PF/queue/incoming" "$PF/queue/active" \
		"$PF/queue/deferred" -type f -exec mv -t "$aside" {} + ;;
	esac
	sync
}

port_of() { [ "$1" = ours ] && echo "$OURS_PORT" || echo "$PF_PORT"; }

pid_of() {
	if [ "$1" = ours ]; then
		echo "$SMTPD_PID"
	else
		head -n 1 "$PF/queue/pid/master.pid" | tr -d ' '
	fi
}

SEND_FLAGS=
# send SYSTEM SESSIONS COUNT [LABEL]: a timed smtp-source run, checked;
# with LABEL, prints the rate and the CPU that the server's process tree
# used per message (bench/proc-tree.py cpu: session processes that ended
# are counted through their parent).
send() {
	system=$1 sessions=$2 count=$3 label=${4:-}
	cpu0=$(python3 "$HERE/proc-tree.py" cpu "$(pid_of "$system")")
	start=$(date +%s.%N)
	# shellcheck disable=SC2086 # SOURCE_FLAGS is a word list
	"$SOURCE" $SOURCE_FLAGS $SEND_FLAGS -s "$sessions" -m "$count" \
		"127.0.0.1:$(port_of "$system")"
	end=$(date +%s.%N)
	sleep 0.2	# the last sessions exit and are reaped
	cpu1=$(python3 "$HERE/proc-tree.py" cpu "$(pid_of "$system")")
	got=$(queued "$system")
	if [ "$got" -ne "$count" ]; then
		echo "$system: $got of $count messages queued" >&2
		exit 1
	fi
	[ -z "$label" ] || awk -v l="$label" -v n="$count" -v s="$start" -v e="$end" \
		-v c0="$cpu0" -v c1="$cpu1" 'BEGIN {
		printf "%s msgs=%d wall=%.3f rate=%.1f cpu_ms=%.3f\n",
			l, n, e - s, n / (e - s), (c1 - c0) * 1000 / n }'
}

SYSTEMS=ours
[ "$POSTFIX" = none ] || SYSTEMS="ours postfix"
# probe: microseconds that creating a new empty file costs now.
probe() {
	python3 - "$ROOT" <<'EOF'
import os, sys, tempfile, time
d = tempfile.mkdtemp(dir=sys.argv[1], prefix="probe.")
t = time.perf_counter()
for i in range(1000):
    os.close(os.open(f"{d}/p{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
print(f"{(time.perf_counter() - t) * 1e3:.1f}")
EOF
}
# Wait until new files are cheap again: inodes that other programs freed
# shortly before (a previous bench's clean-up, say) make the allocator
# slow for up to 5 minutes on a journal-less ext4, see above.
sync
waited=0
while :; do
	us=$(probe)
	awk -v u="$us" -v t="${SETTLE_US:-40}" 'BEGIN { exit !(u < t) }' && break
	if [ "$waited" -ge "${SETTLE_MAX:-420}" ]; then
		echo "# warning: new files still cost $us us each; figures will suffer" >&2
		break
	fi
	sleep 15
	waited=$((waited + 15))
done
echo "# file creation: $us us per new file (waited ${waited} s for it)"
for system in $SYSTEMS; do
	empty "$system"
	send "$system" 10 "$N"
done

echo "# N=$N sessions=[$SESSIONS] rounds=$ROUNDS warmup=$WARMUP root=$ROOT"
PF_VERSION=none
[ "$POSTFIX" = none ] || PF_VERSION=$(postconf -d -h mail_version)
echo "# ours 127.0.0.1:$OURS_PORT ($SMTPD); postfix 127.0.0.1:$PF_PORT ($PF_VERSION)"
for round in $(seq "$ROUNDS"); do
	for s in $SESSIONS; do
		# "50d": 50 sessions, each connection kept for the next message.
		case $s in *d) SEND_FLAGS=-d ;; *) SEND_FLAGS= ;; esac
		for system in $SYSTEMS; do
			empty "$system"
			[ "$WARMUP" = 0 ] || send "$system" "${s%d}" "$WARMUP"
			empty "$system"
			send "$system" "${s%d}" "$N" "$system s=$s round=$round" | tee -a "$RESULTS"
		done
	done
	SEND_FLAGS=
done
empty ours
[ "$POSTFIX" = none ] || empty postfix

echo
# med SYSTEM SESSIONS FIELD: the median of FIELD over the rounds.
med() {
	grep "^$1 s=$2 " "$RESULTS" | sed "s/.* $3=//; s/ .*//" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) print 0;
			else if (NR % 2) print v[(NR + 1) / 2];
			else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "medians over $ROUNDS round(s): msgs/s, and server CPU ms per message"
printf '%-9s %9s %9s %7s   %8s %8s %7s\n' sessions ours postfix ratio \
	ours_cpu pf_cpu ratio
for s in $SESSIONS; do
	awk -v s="$s" -v o="$(med ours "$s" rate)" -v p="$(med postfix "$s" rate)" \
	    -v oc="$(med ours "$s" cpu_ms)" -v pc="$(med postfix "$s" cpu_ms)" 'BEGIN {
		printf "%-9s %9.1f %9.1f %7s   %8.3f %8.3f %7s\n", s, o, p,
			(p > 0 ? sprintf("%.2f", o / p) : "-"), oc, pc,
			(pc > 0 ? sprintf("%.2f", oc / pc) : "-") }'
done

echo "# file creation after the rounds: $(probe) us per new file"

# --- memory at RSS_SESSIONS sessions -----------------------------------------
if [ "$RSS_SESSIONS" != 0 ]; then
	echo
	for system in $SYSTEMS; do
		empty "$system"
		send "$system" "$RSS_SESSIONS" "$WARMUP"
		empty "$system"
		python3 "$HERE/proc-tree.py" rss -o "$ROOT/rss.$system" "$(pid_of "$system")" &
		sampler=$!
		sleep 0.3
		# -d: each connection stays open for the next message, so that
		# all RSS_SESSIONS sessions exist at once while /proc is read.
		SEND_FLAGS=-d
		send "$system" "$RSS_SESSIONS" "$N" "$system s=$RSS_SESSIONS -d (sampled)"
		SEND_FLAGS=
		kill "$sampler"
		wait "$sampler" || true
		echo "memory of $system's process tree, $RSS_SESSIONS sessions:"
		sed 's/^/  /' "$ROOT/rss.$system"
		empty "$system"
	done
fi

# --- fsync per message, under strace -----------------------------------------
if [ "$DURCHECK" = 1 ]; then
	echo
	for system in $SYSTEMS; do
		root=$(pid_of "$system")
		pids=$root
		[ "$system" = ours ] || pids="$root $(pgrep -P "$root" | tr '\n' ' ')"
		empty "$system"
		# shellcheck disable=SC2046 # one -p per pid
		strace -f -qq -y -o "$ROOT/strace.$system" \
			-e trace=fsync,fdatasync,syncfs,sync,sync_file_range,rename,renameat,renameat2 \
			$(for p in $pids; do printf -- '-p %s ' "$p"; done) &
		tracer=$!
		sleep 1
		send "$system" 1 20
		sleep 0.5
		kill -INT "$tracer"
		wait "$tracer" || true
		python3 - "$system" "$ROOT/strace.$system" 20 <<'EOF'
import os, re, sys
system, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = dirs = renames = 0
for line in open(path):
    m = re.search(r'\b(fsync|fdatasync|sync_file_range|syncfs)\(\d+<([^>]*)>', line)
    if m:
        if os.path.isdir(m.group(2)):
            dirs += 1
        else:
            files += 1
    elif re.search(r'\brename(at2?)?\(', line) and "= 0" in line:
        renames += 1
print(f"{system}: per message: fsync of a file {files / n:.2f}, "
      f"fsync of a directory {dirs / n:.2f}, renames {renames / n:.2f}")
EOF
		empty "$system"
	done
fi
