#!/usr/bin/env python3
"""proc-tree.py rss [-i SECONDS] [-o FILE] ROOTPID
proc-tree.py cpu ROOTPID

A process and all its descendants, read from /proc. Used by
bench/smtpd-bench.sh and bench/relay-bench.sh; not a general tool.

cpu: prints the CPU seconds (user + system) that the tree has used so far:
its live processes' own time plus the time of the children they have
reaped (cutime + cstime), so that short-lived session processes that
ended are counted too. The difference of two readings is the CPU of
what happened in between.

rss: samples the memory of the tree until SIGTERM or SIGINT (or until
ROOTPID is gone), then prints the peak:

    peak_rss_kib=N procs=N peak_pss_kib=N samples=N
    name=smtpd role=master procs=1 rss_kib=N
    name=smtpd role=child procs=50 rss_kib_sum=N rss_kib_avg=N rss_kib_max=N

peak_rss_kib is the largest sum of VmRSS over the tree seen in one sample
(RSS counts shared pages, libc for one, once per process, so the sum
overstates what the tree really holds); peak_pss_kib the largest sum of
Pss (shared pages divided among the processes that map them), which is
the fairer figure for a tree of forked processes. The name= lines break
the peak-RSS sample down by command name; rss_kib_max is the largest RSS
of one process of that name over the whole run.
"""
import argparse
import os
import signal
import sys
import time


def read_tree(times=None):
    """{pid: (ppid, comm)} for every process; with a dict for times, also
    {pid: clock ticks of utime + stime + cutime + cstime}."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        close = stat.rfind(")")
        comm = stat[stat.find("(") + 1:close]
        fields = stat[close + 2:].split()
        procs[int(entry)] = (int(fields[1]), comm)
        if times is not None:
            times[int(entry)] = sum(int(v) for v in fields[11:15])
    return procs


def descendants(procs, root):
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu(root):
    times = {}
    procs = read_tree(times)
    ticks = sum(times[pid] for pid in descendants(procs, root))
    print(f"{ticks / os.sysconf('SC_CLK_TCK'):.3f}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("rss", "cpu"))
    ap.add_argument("-i", type=float, default=0.05, dest="interval")
    ap.add_argument("-o", dest="output")
    ap.add_argument("root", type=int)
    args = ap.parse_args()
    if args.mode == "cpu":
        return cpu(args.root)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    peak_rss, peak_pss, samples = -1, 0, 0
    peak_detail = []
    max_by_name = {}
    while not stop and os.path.exists(f"/proc/{args.root}"):
        procs = read_tree()
        total_rss = total_pss = 0
        detail = []
        for pid in descendants(procs, args.root):
            rss = kib(f"/proc/{pid}/status", "VmRSS:")
            if rss is None:
                continue
            pss = kib(f"/proc/{pid}/smaps_rollup", "Pss:") or 0
            name = procs[pid][1]
            role = "master" if pid == args.root else "child"
            detail.append((name, role, rss))
            total_rss += rss
            total_pss += pss
            key = (name, role)
            max_by_name[key] = max(max_by_name.get(key, 0), rss)
        samples += 1
        if total_rss > peak_rss:
            peak_rss, peak_detail = total_rss, detail
        peak_pss = max(peak_pss, total_pss)
        time.sleep(args.interval)

    out = open(args.output, "w") if args.output else sys.stdout
    print(f"peak_rss_kib={peak_rss} procs={len(peak_detail)} "
          f"peak_pss_kib={peak_pss} samples={samples}", file=out)
    groups = {}
    for name, role, rss in peak_detail:
        groups.setdefault((name, role), []).append(rss)
    for (name, role), values in sorted(groups.items(),
                                       key=lambda kv: -sum(kv[1])):
        if role == "master":
            print(f"name={name} role=master procs=1 rss_kib={values[0]}",
                  file=out)
        else:
            print(f"name={name} role=child procs={len(values)} "
                  f"rss_kib_sum={sum(values)} "
                  f"rss_kib_avg={sum(values) // len(values)} "
                  f"rss_kib_max={max_by_name[(name, role)]}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
