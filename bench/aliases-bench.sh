#!/bin/sh
# Measures the cost of recipient resolution (issue "deliver, part 2"):
#   1. newaliases on a 100,000-entry aliases file;
#   2. the time an alias lookup adds to one delivery: deliver -V (resolve
#      only) through a 100,000-entry aliases.db vs. with no aliases at all,
#      median of many runs, and a whole delivery with and without the alias;
#   3. a 10,000-member list alias expanded and delivered (maildirs).
# Usage: bench/aliases-bench.sh [BINDIR]   (default: ./bin; run as root)
set -eu
BIN=$(cd "${1:-bin}" && pwd)
ROOT=$(mktemp -d /tmp/aliases-bench.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
chmod 755 "$ROOT"
PY=/usr/bin/python3
N=100000
MEMBERS=10000

# Test users through nss_wrapper: u0..u9999 plus nobody.
$PY - "$ROOT" "$MEMBERS" <<'EOP'
import os, sys
root, members = sys.argv[1], int(sys.argv[2])
with open(f"{root}/passwd", "w") as p, open(f"{root}/group", "w") as g:
    p.write("root:x:0:0:root:/root:/bin/sh\n")
    p.write("nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
    g.write("root:x:0:\nmail:x:8:\nnogroup:x:65534:\n")
    os.makedirs(f"{root}/home", exist_ok=True)
    for i in range(members):
        uid = 100000 + i
        p.write(f"u{i}:x:{uid}:{uid}::{root}/home/u{i}:/bin/sh\n")
        g.write(f"u{i}:x:{uid}:\n")
        os.mkdir(f"{root}/home/u{i}")
        os.chown(f"{root}/home/u{i}", uid, uid)
EOP
export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD="$ROOT/passwd" \
	NSS_WRAPPER_GROUP="$ROOT/group"

# 100,000 aliases, each with two or three destinations, plus the list.
$PY - "$ROOT" "$N" "$MEMBERS" <<'EOP'
import sys
root, n, members = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(f"{root}/aliases", "w") as f:
    for i in range(n):
        f.write(f"alias{i}: u{i % members}, someone{i}@example.org,\n"
                f"  other{i}@example.net\n")
    f.write("biglist: " + ", ".join(f"u{i}" for i in range(members)) + "\n")
    f.write("one: u1\n")
EOP
cat > "$ROOT/mail.conf" <<EOP
hostname = bench.example
aliases = aliases
virtusertable = virtusertable
log = maillog
mailbox = ~/Maildir/
EOP
sed 's|^aliases = .*|aliases = no-aliases|' "$ROOT/mail.conf" > "$ROOT/plain.conf"

echo "== newaliases, $N entries"
start=$($PY -c 'import time; print(time.monotonic())')
"$BIN/newaliases" -C "$ROOT/mail.conf"
$PY -c "import time; print(f'newaliases: {time.monotonic()-$start:.3f} s')"

echo "== one delivery: what the alias lookup adds"
$PY - "$BIN" "$ROOT" <<'EOP'
import subprocess, sys, time, statistics
bin, root = sys.argv[1], sys.argv[2]
msg = b"From: a@b\nSubject: x\n\nhello\n"
def median(args, data=b"", runs=200):
    times = []
    for _ in range(runs):
        t = time.monotonic()
        subprocess.run(args, input=data, stdout=subprocess.DEVNULL, check=True)
        times.append(time.monotonic() - t)
    return statistics.median(times) * 1000
plain = median([f"{bin}/deliver", "-C", f"{root}/plain.conf", "-V", "u1"])
alias = median([f"{bin}/deliver", "-C", f"{root}/mail.conf", "-V", "one"])
print(f"resolve only: u1 without aliases {plain:.3f} ms, "
      f"'one' through 100,000-entry aliases.db {alias:.3f} ms, "
      f"difference {alias - plain:+.3f} ms")
plain = median([f"{bin}/deliver", "-C", f"{root}/plain.conf", "u1"], msg)
alias = median([f"{bin}/deliver", "-C", f"{root}/mail.conf", "one"], msg)
print(f"whole delivery to a maildir: direct {plain:.3f} ms, via alias "
      f"{alias:.3f} ms, difference {alias - plain:+.3f} ms")
EOP

echo "== a $MEMBERS-member list alias, expanded and delivered"
start=$($PY -c 'import time; print(time.monotonic())')
printf 'From: a@b\nSubject: to the list\n\nhello everyone\n' |
	"$BIN/deliver" -C "$ROOT/mail.conf" -f a@b biglist
$PY -c "import time; print(f'biglist: {time.monotonic()-$start:.2f} s')"
count=$(find "$ROOT/home" -path '*/Maildir/new/*' -type f -print0 |
	xargs -0 grep -l 'to the list' | wc -l)
echo "maildirs holding the message: $count of $MEMBERS"
