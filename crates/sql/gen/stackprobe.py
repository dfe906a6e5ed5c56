#!/usr/bin/env python3
"""Bisects the smallest thread stack that parses each shape at given depths.
usage: stackprobe.py <path to stackprobe binary> <mode> <shape> <levels>..."""
import subprocess
import sys

binary, mode, shape = sys.argv[1:4]

def ok(n, kib):
    r = subprocess.run([binary, shape, str(n), str(kib), mode], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.startswith("ok"), r.stdout.strip()[:80]

for n in map(int, sys.argv[4:]):
    good, msg = ok(n, 1 << 20)
    if not good:
        print(f"{shape} {mode} n={n}: fails on 1 GiB: {msg}")
        continue
    lo, hi = 16, 1 << 20
    while hi - lo > max(4, lo // 100):
        mid = (lo + hi) // 2
        if ok(n, mid)[0]:
            hi = mid
        else:
            lo = mid
    print(f"{shape} {mode} n={n}: min stack {hi} KiB", flush=True)
