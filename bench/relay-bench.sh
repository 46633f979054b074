#!/bin/sh
# relay-bench.sh: relaying queued mail to local smtp-sink servers, our queue
# runner vs Postfix's queue manager and smtp client. See bench/README.md.
#
#   bench/relay-bench.sh [N]          (N queued messages, default 10000)
#
# N messages of 4 KiB (a 4096-byte body), one recipient each, spread over
# DOMAINS (4) domains d0.example..., are queued with "sendmail -odq"; then
# for each number of destinations in DESTS ("1 4") and each
# smtp_connection_reuse in REUSE ("yes no") one "sendmail -q" is timed
# (queueing time not counted) while smtp-sink servers on loopback ports
# take the mail. With 1 destination, mailertable routes every domain to
# one sink ([127.0.0.1]:port: one destination, one connection cache key);
# with 4, each domain to a sink of its own. Each run starts from the same
# queue (a copy of the one sendmail -odq filled) and checks that the sinks
# received every message and that the queue is empty afterwards.
#
# Postfix (POSTFIX=none skips it) relays the same message through the
# same sinks with the same routes (transport_maps), reuse on or off
# (smtp_connection_cache_on_demand): its N messages are put on hold
# through its smtpd (smtp-source -F with the same file), released to the
# deferred queue (postsuper -H), and the clock runs from "postqueue -f"
# until the sinks have every message and Postfix's queue is empty.
#
# Environment: N or the first argument; DOMAINS (4); DESTS ("1 $DOMAINS");
# REUSE ("yes no"); ROUNDS (1; with more, the table shows medians); MAX_DELIVERIES (our max_deliveries, default 4, our
# default; Postfix keeps its defaults: up to 20 connections per
# destination, 100 processes); SENDMAIL and SMTPD_USER/SMTPD_GROUP (mail,
# mail: the user our SMTP client runs as); POSTFIX; BENCH_TMP; KEEP=1.
#
# Printed per run: msgs, wall seconds, rate (messages per second), cpu_ms
# (CPU per message of the relaying side: for ours the sendmail -q process
# tree, for Postfix its whole process tree; the sinks are not counted),
# sink_msgs (what the sinks counted) and connections (SMTP sessions the
# sinks saw end; Postfix's cached connections end 2 s after their last
# use, smtp_connection_cache_time_limit, so the count waits for them).
set -eu

N=${1:-${N:-10000}}
DOMAINS=${DOMAINS:-4}
DESTS=${DESTS:-1 $DOMAINS}
REUSE=${REUSE:-yes no}
ROUNDS=${ROUNDS:-1}
MAX_DELIVERIES=${MAX_DELIVERIES:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/postfix-common.sh
. "$HERE/postfix-common.sh"
SENDMAIL=${SENDMAIL:-$HERE/../bin/sendmail}
SMTPD_USER=${SMTPD_USER:-mail}
SMTPD_GROUP=${SMTPD_GROUP:-mail}
POSTFIX=${POSTFIX:-$(command -v postfix || echo none)}
SINK=${SINK:-/usr/sbin/smtp-sink}
SOURCE=${SOURCE:-/usr/sbin/smtp-source}

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$SENDMAIL" ] || { echo "no sendmail at $SENDMAIL: run make, or set SENDMAIL" >&2; exit 1; }
[ -x "$SINK" ] || { echo "no $SINK (apt-get install postfix)" >&2; exit 1; }
getent passwd "$SMTPD_USER" >/dev/null || { echo "no user $SMTPD_USER" >&2; exit 1; }

ROOT=$(mktemp -d "${BENCH_TMP:-/tmp}/relay-bench.XXXXXX")
chmod 755 "$ROOT"
OURS=$ROOT/ours
PF=$ROOT/postfix
PF_UP=0
SINK_PIDS=
RESULTS=$ROOT/results
: > "$RESULTS"

stop_sinks() {
	for p in $SINK_PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $SINK_PIDS; do wait "$p" 2>/dev/null || true; done
	SINK_PIDS=
}
cleanup() {
	stop_sinks
	[ "$PF_UP" = 0 ] || "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1 || true
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $ROOT" >&2; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# DOMAINS sink ports and one for Postfix's smtpd.
PORTS=$(python3 - "$((DOMAINS + 1))" <<'EOF'
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
EOF
)
port() { echo "$PORTS" | cut -d' ' -f"$(($1 + 1))"; }	# port K (0-based)
PF_PORT=$(port "$DOMAINS")

wait_port() {
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

# The message: a few header fields and a 4096-byte body (64 lines of 64).
python3 - "$ROOT/message" <<'EOF'
import sys
body = "".join(("%04d the quick brown fox jumps over the lazy dog" % i).ljust(63, ".")
               + "\n" for i in range(64))
assert len(body) == 4096
with open(sys.argv[1], "w") as f:
    f.write("From: Bench <bench@client.example>\nTo: rcpt@dest.example\n"
            "Subject: relay bench\n\n" + body)
EOF

# start_sinks COUNT: smtp-sink on ports 0..COUNT-1, counters in sink.K.
start_sinks() {
	k=0
	while [ "$k" -lt "$1" ]; do
		"$SINK" -c -u nobody "127.0.0.1:$(port "$k")" 256 > "$ROOT/sink.$k" 2>&1 &
		SINK_PIDS="$SINK_PIDS $!"
		k=$((k + 1))
	done
	k=0
	while [ "$k" -lt "$1" ]; do
		wait_port "$(port "$k")" || { echo "smtp-sink did not start" >&2; exit 1; }
		k=$((k + 1))
	done
	sleep 0.2	# wait_port's own connections are counted; settle them
	SINK_BASE=$(sink_total sess)
}

# sink_total FIELD: the sum over the sinks of their last FIELD= counter.
sink_total() {
	for f in "$ROOT"/sink.*; do
		tr '\r' '\n' < "$f" | grep "$1=" | tail -n 1
	done | sed "s/.*$1=\([0-9]*\).*/\1/" | awk '{ s += $1 } END { print s + 0 }'
}

# routes DESTS: "domain port" lines, domain K to sink K mod DESTS.
routes() {
	k=0
	while [ "$k" -lt "$DOMAINS" ]; do
		echo "d$k.example $(port $((k % $1)))"
		k=$((k + 1))
	done
}

# --- ours ---------------------------------------------------------------------
mkdir -p "$OURS/queue" "$OURS/master" "$OURS/tmp"
chown "root:$SMTPD_GROUP" "$OURS/queue" "$OURS/master"
chmod 2770 "$OURS/queue" "$OURS/master"
ours_conf() {	# ours_conf QUEUE_DIR REUSE
	cat <<EOF
hostname = bench.example
queue_dir = $1
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
max_deliveries = $MAX_DELIVERIES
smtp_connection_reuse = $2
EOF
}
ours_conf "$OURS/master" yes > "$OURS/master.conf"

echo "# N=$N domains=$DOMAINS dests=[$DESTS] reuse=[$REUSE] max_deliveries=$MAX_DELIVERIES root=$ROOT"
start=$(date +%s)
# Two queueing loops, one per core; message i goes to domain i mod DOMAINS.
for half in 0 1; do
	i=$half
	while [ "$i" -lt "$N" ]; do
		"$SENDMAIL" -C "$OURS/master.conf" -odq -f bench@client.example \
			"rcpt@d$((i % DOMAINS)).example" < "$ROOT/message"
		i=$((i + 2))
	done &
done
wait
queued=$(find "$OURS/master" -name 'qf*' | wc -l)
[ "$queued" -eq "$N" ] || { echo "queued $queued of $N" >&2; exit 1; }
echo "# queued $N messages with sendmail -odq in $(($(date +%s) - start)) s (not counted)"

# ours_run DESTS REUSE
ours_run() {
	routes "$1" | while read -r domain p; do
		echo "$domain smtp:[127.0.0.1]:$p"
	done > "$OURS/mailertable"
	ours_conf "$OURS/queue" "$2" > "$OURS/mail.conf"
	find "$OURS/queue" -mindepth 1 -delete
	cp -a "$OURS/master/." "$OURS/queue/"
	sync
	rm -f "$ROOT"/sink.*
	start_sinks "$1"
	# Wall time and the CPU of the whole sendmail -q tree (workers and
	# their SMTP client processes are waited for by their parents).
	# shellcheck disable=SC2046 # three numbers
	set -- "$1" "$2" $(python3 - "$SENDMAIL" -C "$OURS/mail.conf" -q <<'EOF'
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.call(sys.argv[1:])
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f} {rc}")
EOF
)
	sleep 0.3
	msgs=$(sink_total mesg) sess=$(($(sink_total sess) - SINK_BASE))
	stop_sinks
	left=$(find "$OURS/queue" -name 'qf*' | wc -l)
	report ours "$1" "$2" "$3" "$4" "$msgs" "$sess" "$left" "$ROUND"
	[ "$5" = 0 ] || echo "ours: sendmail -q exited $5" >&2
}

# report SYSTEM DESTS REUSE WALL CPU SINK_MSGS CONNECTIONS LEFT ROUND
report() {
	awk -v sys="$1" -v d="$2" -v r="$3" -v w="$4" -v c="$5" -v m="$6" \
	    -v s="$7" -v left="$8" -v round="$9" -v n="$N" 'BEGIN {
		printf "%s dests=%s reuse=%s round=%d msgs=%d wall=%.3f rate=%.1f cpu_ms=%.3f sink_msgs=%d connections=%d%s\n",
			sys, d, r, round, n, w, n / w, c * 1000 / n, m, s,
			(m == n && left == 0) ? "" : sprintf(" FAILED (left in queue: %d)", left) }' |
		tee -a "$RESULTS"
}

# --- Postfix ------------------------------------------------------------------
pf_start() {
	mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
	chown postfix "$PF/data"
	{ pf_main_cf "$PF" postfix-relay-bench; cat <<EOF; } > "$PF/etc/main.cf"
# Mail comes in on hold; the timed run releases it.
smtpd_client_restrictions = check_client_access static:HOLD
transport_maps = texthash:$PF/etc/transport
# Only the flush that the run starts: no periodic deferred-queue scans.
queue_run_delay = 3600s
EOF
	awk -v listen="127.0.0.1:$PF_PORT" '
		/^#/ || /^[ \t]/ || NF == 0 { print; next }
		$1 == "smtp" && $2 == "inet" { $1 = listen }
		$5 == "y" { $5 = "n" }
		{ print }' /etc/postfix/master.cf > "$PF/etc/master.cf"
	: > "$PF/etc/transport"
	"$POSTFIX" -c "$PF/etc" start >/dev/null 2>&1 ||
		{ echo "Postfix did not start; see $PF/maillog" >&2; exit 1; }
	PF_UP=1
	wait_port "$PF_PORT" || { echo "Postfix does not listen" >&2; exit 1; }
}

pf_files() {	# queue files in the directories of undelivered mail
	find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" \
		"$PF/queue/hold" "$PF/queue/maildrop" -type f | wc -l
}

# pf_run DESTS REUSE
pf_run() {
	routes "$1" | while read -r domain p; do
		echo "$domain smtp:[127.0.0.1]:$p"
	done > "$PF/etc/transport"
	[ "$2" = yes ] && cache=yes || cache=no
	postconf -c "$PF/etc" -e "smtp_connection_cache_on_demand = $cache"
	"$POSTFIX" -c "$PF/etc" reload >/dev/null 2>&1
	sleep 2
	postsuper -c "$PF/etc" -d ALL >/dev/null 2>&1 || true
	k=0
	while [ "$k" -lt "$DOMAINS" ]; do
		count=$(((N - k + DOMAINS - 1) / DOMAINS))	# i mod DOMAINS == k
		"$SOURCE" -s 10 -m "$count" -F "$ROOT/message" -M client.example \
			-f bench@client.example -t "rcpt@d$k.example" "127.0.0.1:$PF_PORT"
		k=$((k + 1))
	done
	held=$(find "$PF/queue/hold" -type f | wc -l)
	[ "$held" -eq "$N" ] || { echo "postfix: $held of $N on hold" >&2; exit 1; }
	postsuper -c "$PF/etc" -H ALL >/dev/null 2>&1
	sync
	rm -f "$ROOT"/sink.*
	start_sinks "$1"
	master=$(head -n 1 "$PF/queue/pid/master.pid" | tr -d ' ')
	cpu0=$(python3 "$HERE/proc-tree.py" cpu "$master")
	# From the flush until the sinks have all N and the queue is empty.
	wall=$(python3 - "$N" "$PF" "$ROOT" <<'EOF'
import glob, os, re, subprocess, sys, time
n, pf, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def sunk():
    total = 0
    for path in glob.glob(root + "/sink.*"):
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 200))
            found = re.findall(rb"mesg=(\d+)", f.read())
            total += int(found[-1]) if found else 0
    return total
def left():
    count = 0
    for d in ("incoming", "active", "deferred"):
        for dirpath, _, files in os.walk(f"{pf}/queue/{d}"):
            count += len(files)
    return count
t = time.monotonic()
subprocess.check_call(["postqueue", "-c", pf + "/etc", "-f"])
deadline = t + 1800
while sunk() < n and time.monotonic() < deadline:
    time.sleep(0.01)
while left() > 0 and time.monotonic() < deadline:
    time.sleep(0.01)
print(f"{time.monotonic() - t:.3f}")
EOF
)
	cpu1=$(python3 "$HERE/proc-tree.py" cpu "$master")
	sleep 3	# cached connections are closed after 2 s idle
	msgs=$(sink_total mesg) sess=$(($(sink_total sess) - SINK_BASE))
	stop_sinks
	report postfix "$1" "$2" "$wall" "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" \
		"$msgs" "$sess" "$(pf_files)" "$ROUND"
}

[ "$POSTFIX" = none ] || pf_start
for ROUND in $(seq "$ROUNDS"); do
	for d in $DESTS; do
		for r in $REUSE; do
			ours_run "$d" "$r"
			[ "$POSTFIX" = none ] || pf_run "$d" "$r"
		done
	done
done

# med SYSTEM DESTS REUSE FIELD: the median of FIELD over the rounds.
med() {
	grep "^$1 dests=$2 reuse=$3 " "$RESULTS" | sed "s/.* $4=//; s/ .*//" |
		sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0;
			else if (NR % 2) print v[(NR + 1) / 2];
			else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo
echo "medians over $ROUNDS round(s): msgs/s, and relaying CPU ms per message:"
printf '%-6s %-6s %9s %9s %7s   %8s %8s\n' dests reuse ours postfix ratio ours_cpu pf_cpu
for d in $DESTS; do
	for r in $REUSE; do
		awk -v d="$d" -v r="$r" -v o="$(med ours "$d" "$r" rate)" \
		    -v p="$(med postfix "$d" "$r" rate)" -v oc="$(med ours "$d" "$r" cpu_ms)" \
		    -v pc="$(med postfix "$d" "$r" cpu_ms)" 'BEGIN {
			printf "%-6s %-6s %9.1f %9.1f %7s   %8.3f %8.3f\n", d, r, o, p,
				(p > 0 ? sprintf("%.2f", o / p) : "-"), oc, pc }'
	done
done
! grep -q FAILED "$RESULTS"
