#!/usr/bin/env python3
"""Spread across several complete bench/run.sh runs (each itself a median of several runs):
for every whole-process command and onnxruntime case, the per-run medians side by side, their
median, and the load average of each run.

    compare_runs.py OUT1 OUT2 [OUT3 ...]
"""
import json
import os
import statistics
import sys

outs = sys.argv[1:]


def jsonl(d, name):
    p = os.path.join(d, name)
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []


def fmt(s):
    return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.2f} s"


print("| command | " + " | ".join(f"run {i + 1}" for i in range(len(outs))) + " | median of runs | spread (max/min) |")
print("|---|" + "---|" * (len(outs) + 2))
rows = {}
for i, d in enumerate(outs):
    for r in jsonl(d, "process.jsonl"):
        key = (r["group"], r["label"])
        rows.setdefault(key, [None] * len(outs))[i] = (r["wall_median"], r["load1_median"])
for (grp, label), vals in rows.items():
    got = [v[0] for v in vals if v]
    cells = [f"{fmt(v[0])} (load {v[1]:.1f})" if v else "—" for v in vals]
    print(f"| {grp}: {label} | " + " | ".join(cells) + f" | {fmt(statistics.median(got))} | {max(got) / min(got):.2f}× |")

print()
print("| onnxruntime case | metric | " + " | ".join(f"run {i + 1}" for i in range(len(outs))) + " |")
print("|---|---|" + "---|" * len(outs))
cases = {}
for i, d in enumerate(outs):
    for r in jsonl(d, "ort.jsonl"):
        cases.setdefault((r["case"], r["size"]), [None] * len(outs))[i] = r
for (case, size), vals in cases.items():
    for metric, f in [("bare ms", lambda r: f"{r['bare']['median'] * 1e3:.2f}"),
                      ("bare+numpy ms", lambda r: f"{r['bare_numpy']['median'] * 1e3:.2f}"),
                      ("merged ms", lambda r: f"{r['merged']['median'] * 1e3:.2f}"),
                      ("merged / bare", lambda r: f"{r['merged']['median'] / r['bare']['median']:.3f}"),
                      ("paired merged − bare", lambda r: f"{r['merged_minus_bare']['median'] / r['bare']['median'] * 100:+.1f}%" if "merged_minus_bare" in r else "—")]:
        print(f"| {case} {size} | {metric} | " + " | ".join(f(v) if v else "—" for v in vals) + " |")
