#!/bin/sh
# rss-bench.sh: peak memory (RSS) of deliver for one large message, from a
# pipe and from a regular file, into an mbox and a maildir. deliver streams
# the message (a pipe beyond 1 MiB is spooled to tmp_dir), so its peak must
# not grow with the message: the target is under 8 MiB. See bench/README.md.
#
#   bench/rss-bench.sh [SIZE]           (default 100m; k/m/g suffixes)
#
# Environment: DELIVER (default bin/deliver of this tree), PROCMAIL
# (/usr/bin/procmail; measured for reference, PROCMAIL=none to skip),
# LIMIT_KIB (8192), BENCH_TMP (/tmp), KEEP=1 (keep the throwaway root).
#
# deliver runs with -d (no alias or .forward resolution, which does not
# touch the message) so that root's own .forward cannot interfere.
#
# The peak comes from wait4()'s ru_maxrss for the child, taken by the C
# driver bench/spawn.c: forked from that small process, the memory a child
# had before exec (which ru_maxrss also counts) stays below 1.5 MiB.
set -eu

SIZE=${1:-100m}
HERE=$(cd "$(dirname "$0")" && pwd)
DELIVER=${DELIVER:-$HERE/../bin/deliver}
PROCMAIL=${PROCMAIL:-/usr/bin/procmail}
LIMIT_KIB=${LIMIT_KIB:-8192}
SENDER=bench-sender@example.org

[ -x "$DELIVER" ] || { echo "no deliver at $DELIVER: run make, or set DELIVER" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (deliver writes root's files)" >&2; exit 1; }

ROOT=$(mktemp -d "${BENCH_TMP:-/tmp}/rss-bench.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$ROOT"' EXIT INT TERM
${CC:-cc} -O2 -o "$ROOT/spawn" "$HERE/spawn.c"
python3 "$HERE/gen-messages.py" -n 1 --size "$SIZE" "$ROOT/msgs"
MSG=$ROOT/msgs/msg-000001.eml
mkdir -p "$ROOT/tmp"

echo "deliver: $DELIVER"
echo "message: $(wc -c < "$MSG") bytes; limit ${LIMIT_KIB} KiB"
echo
printf '%-10s %-8s %-6s %12s %10s %8s\n' program format stdin \
	"peak RSS MiB" "wall s" result
fail=0
# measure PROGRAM FORMAT STDIN
measure() {
	dir=$ROOT/out
	rm -rf "$dir"
	mkdir -p "$dir"
	if [ "$2" = mbox ]; then
		box=$dir/mbox
	else
		box=$dir/Maildir/
	fi
	cat > "$ROOT/mail.conf" <<EOF
hostname = bench.example
mailbox = $box
log = $ROOT/deliver.log
tmp_dir = $ROOT/tmp
aliases = $ROOT/aliases
virtusertable = $ROOT/virtusertable
EOF
	lock=
	[ "$2" = maildir ] || lock=:
	printf 'DEFAULT=%s\n:0%s\n$DEFAULT\n' "$box" "$lock" > "$ROOT/procmailrc"
	if [ "$1" = deliver ]; then
		set -- "$@" "$DELIVER" -C "$ROOT/mail.conf" -d -f "$SENDER" root
	else
		set -- "$@" "$PROCMAIL" -m -f "$SENDER" "$ROOT/procmailrc"
	fi
	mode=-p
	[ "$3" = pipe ] || mode=-f
	prog=$1 format=$2 how=$3
	shift 3
	line=$("$ROOT/spawn" $mode -l x "$MSG" "$@")
	kib=$(echo "$line" | sed 's/.*maxrss_kib=\([0-9]*\).*/\1/')
	wall=$(echo "$line" | sed 's/.*wall=\([0-9.]*\).*/\1/')
	result=-
	if [ "$prog" = deliver ]; then
		if [ "$kib" -lt "$LIMIT_KIB" ]; then
			result=ok
		else
			result=OVER
			fail=1
		fi
	fi
	printf '%-10s %-8s %-6s %12.2f %10s %8s\n' "$prog" "$format" "$how" \
		"$(echo "$kib" | awk '{print $1 / 1024}')" "$wall" "$result"
	rm -rf "$dir"
}

for format in mbox maildir; do
	for how in pipe file; do
		measure deliver "$format" "$how"
	done
done
if [ "$PROCMAIL" != none ] && [ -x "$PROCMAIL" ]; then
	for format in mbox maildir; do
		measure procmail "$format" pipe
	done
fi
exit $fail
