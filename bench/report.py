#!/usr/bin/env python3
"""Print the markdown tables of a bench/run.sh results folder (machine.txt, criterion/,
process.jsonl, ort.jsonl, profile.txt). Usage: report.py OUT"""
import json
import os
import statistics
import sys

OUT = sys.argv[1]


def load_jsonl(name):
    p = os.path.join(OUT, name)
    if not os.path.exists(p):
        return []
    return [json.loads(l) for l in open(p) if l.strip()]


def ms(s):
    return f"{s * 1e3:.1f}" if s < 10 else f"{s:.2f} s"


def crit(group, bench):
    d = os.path.join(OUT, "criterion", group, bench, "new")
    try:
        est = json.load(open(os.path.join(d, "estimates.json")))
        smp = json.load(open(os.path.join(d, "sample.json")))
    except FileNotFoundError:
        return None
    per = [t / i for t, i in zip(smp["times"], smp["iters"])]
    return {"median": est["median"]["point_estimate"] / 1e9, "mad": est["median_abs_dev"]["point_estimate"] / 1e9,
            "min": min(per) / 1e9, "max": max(per) / 1e9, "n": len(per)}


def fmt_c(c):
    if c is None:
        return "—"
    return f"{c['median'] * 1e3:.2f} ({c['min'] * 1e3:.2f}–{c['max'] * 1e3:.2f})"


print("## Machine\n")
mt = os.path.join(OUT, "machine.txt")
if os.path.exists(mt):
    print("```")
    print(open(mt).read().rstrip())
    print("```\n")

# --- criterion ---------------------------------------------------------------------------------
CB = ["fs_copy", "copy_fsync", "read", "decode", "encode", "write", "write_atomic", "clone", "load_save",
      "merge", "resize_128x160", "quant_prep", "load_merge_save", "load_resize_128x160_save", "load_quant_prep_save"]
groups = [g for g in ("yolox_nano", "gold_yolo_n", "gold_yolo_n_e2e") if os.path.isdir(os.path.join(OUT, "criterion", g))]
if groups:
    print("## In-process (criterion; ms per call: median of the samples' means, (min–max) over samples)\n")
    print("| step | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for b in CB:
        print(f"| `{b}` | " + " | ".join(fmt_c(crit(g, b)) for g in groups) + " |")
    print()
    print("| ratio (medians) | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for num, den in [("load_save", "fs_copy"), ("load_save", "copy_fsync"), ("load_merge_save", "load_save"), ("load_resize_128x160_save", "load_save"), ("load_quant_prep_save", "load_save")]:
        cells = []
        for g in groups:
            a, b = crit(g, num), crit(g, den)
            cells.append(f"{a['median'] / b['median']:.2f}×" if a and b else "—")
        print(f"| {num} / {den} | " + " | ".join(cells) + " |")
    print()
    print("Breakdown of load+save (read + decode + encode + write_atomic vs measured load_save):\n")
    for g in groups:
        parts = {k: crit(g, k) for k in ("read", "decode", "encode", "write_atomic", "load_save")}
        if all(parts.values()):
            tot = parts["load_save"]["median"]
            s = ", ".join(f"{k} {parts[k]['median'] * 1e3:.2f} ms ({parts[k]['median'] / tot * 100:.0f}%)" for k in ("read", "decode", "encode", "write_atomic"))
            print(f"- {g}: {s}; load_save {tot * 1e3:.2f} ms")
    print()

# --- whole process -----------------------------------------------------------------------------
proc = load_jsonl("process.jsonl")
titles = {"io": "Whole process: load+save vs copy (a)", "passes": "Whole process: passes vs load+save (b)",
          "big": "Whole process: a 220 MB model (Gold-YOLO-n + 200 MB of weights; peak RSS, a/b)",
          "multi": "Whole process: 37 PINTO sizes in one call (c)", "check": "Whole process: check (e)"}
for grp, title in titles.items():
    rows = [r for r in proc if r["group"] == grp]
    if not rows:
        continue
    print(f"## {title}\n")
    print("| command | runs | wall median | p25–p75 | min–max | user | sys | peak RSS | files/s | load1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fps = f"{r.get('written', r['files']) / r['wall_median']:.1f}" if r["files"] > 1 else ""
        if r.get("exit") or r.get("written", r["files"]) != r["files"]:
            fps += f" (**exit {r.get('exit')}: {r.get('written')} of {r['files']} written**)"
        print(f"| {r['label']} | {r['runs']} | {ms(r['wall_median'])} | {ms(r['wall_p25'])}–{ms(r['wall_p75'])} | {ms(r['wall_min'])}–{ms(r['wall_max'])} "
              f"| {r['user_median']:.2f} s | {r['sys_median']:.2f} s | {r['rss_median'] / 2**20:.1f} MiB | {fps} | {r['load1_median']:.2f} |")
    print("\n(wall in ms unless marked s)\n")
    if grp == "passes" and os.path.exists(os.path.join(OUT, "quant_prep.txt")):
        print("quant-prep: " + open(os.path.join(OUT, "quant_prep.txt")).read().strip() + "\n")

# --- onnxruntime -------------------------------------------------------------------------------
ortr = load_jsonl("ort.jsonl")
if ortr:
    r0 = ortr[0]
    print(f"## onnxruntime {r0['onnxruntime']} latency, 1 thread (d): ms, median (p25–p75) of {r0['bare']['n']} interleaved runs\n")
    print(f"score > {r0['score']}, IoU {r0['iou']}; `numpy` = official YOLOX demo post-process (no cap), `numpy cap` = same capped at {r0['max_per_class']}/class like the merged NMS\n")
    print("| model | size | bare | numpy post | bare + numpy | bare + numpy cap | merged | merged / bare | paired merged − bare | merged / (bare+numpy) | dets numpy / cap / merged |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    f = lambda s: f"{s['median'] * 1e3:.2f} ({s['p25'] * 1e3:.2f}–{s['p75'] * 1e3:.2f})"  # noqa: E731

    def pair(r):
        d = r.get("merged_minus_bare")
        if not d:
            return "—"
        return f"{d['median'] * 1e3:+.2f} ms ({d['median'] / r['bare']['median'] * 100:+.1f}%)"
    for r in ortr:
        print(f"| {r['case']} | {r['size']} | {f(r['bare'])} | {f(r['numpy'])} | {f(r['bare_numpy'])} | {f(r['bare_numpy_cap'])} | {f(r['merged'])} "
              f"| {r['merged']['median'] / r['bare']['median']:.3f} | {pair(r)} | {r['merged']['median'] / r['bare_numpy']['median']:.3f} "
              f"| {r['dets_numpy']} / {r['dets_numpy_cap']} / {r['dets_merged']} |")
    print()

# --- targets -----------------------------------------------------------------------------------
print("## Targets\n")
sizes = {}
if os.path.exists(os.path.join(OUT, "sizes.tsv")):
    for line in open(os.path.join(OUT, "sizes.tsv")):
        k, v = line.split("\t")
        sizes[k] = int(v)
for r in proc:
    name = r["label"].split(":")[0]
    if r["group"] in ("io", "passes", "big") and name in sizes and ": cp" not in r["label"]:
        ratio = r["rss_median"] / sizes[name]
        print(f"- {r['label']}: peak RSS {r['rss_median'] / 2**20:.1f} MiB = {ratio:.2f}× the file "
              f"({sizes[name] / 2**20:.1f} MiB) ≤ 1.5×: {'PASS' if ratio <= 1.5 else 'FAIL'}")
for r in proc:
    if r["group"] == "multi" and ("resize" in r["label"] or "merge" in r["label"]):
        ok = r["wall_median"] < 10
        print(f"- {r['label']}: {r['wall_median']:.2f} s (max {r['wall_max']:.2f} s) < 10 s: {'PASS' if ok else 'FAIL'}")
for r in ortr:
    ratio = r["merged"]["median"] / r["bare"]["median"]
    if r["size"] == "640x640":
        d = r.get("merged_minus_bare")
        paired = f"; paired overhead {d['median'] / r['bare']['median'] * 100:+.1f}%: {'PASS' if d['median'] <= 0.05 * r['bare']['median'] else 'FAIL'}" if d else ""
        print(f"- {r['case']} 640x640: merged {ratio:.3f}× bare (≤ 1.05): {'PASS' if ratio <= 1.05 else 'FAIL'}{paired}")
    if r["size"] == "128x160":
        ok = r["merged"]["median"] < r["bare_numpy"]["median"]
        okc = r["merged"]["median"] < r["bare_numpy_cap"]["median"]
        print(f"- {r['case']} 128x160: merged {r['merged']['median'] * 1e3:.2f} ms vs bare+numpy {r['bare_numpy']['median'] * 1e3:.2f} ms: {'PASS' if ok else 'FAIL'}"
              f" (vs bare+numpy capped {r['bare_numpy_cap']['median'] * 1e3:.2f} ms: {'PASS' if okc else 'FAIL'})")
        d = r.get("merged_minus_bare_numpy")
        if d:
            print(f"  - paired per-iteration merged − (bare+numpy): median {d['median'] * 1e3:+.2f} ms (p25 {d['p25'] * 1e3:+.2f}, p75 {d['p75'] * 1e3:+.2f})")
print()

pt = os.path.join(OUT, "profile.txt")
if os.path.exists(pt):
    print("## Profiles\n")
    print(open(pt).read())
