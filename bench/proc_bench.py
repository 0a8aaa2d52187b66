#!/usr/bin/env python3
"""Whole-process timings: wall time (perf_counter around fork/exec/wait4), user and system CPU and
peak RSS (the child's rusage from wait4, the same numbers `/usr/bin/time -v` prints), for a group of
commands run ROUND-ROBIN (run 1 of every command, then run 2 of every command, ...), so load from
other jobs on a shared machine falls on all of them alike.

    proc_bench.py --runs 7 --group NAME --out results.jsonl SPEC.tsv

SPEC.tsv: one command per line, `label<TAB>files<TAB>command[<TAB>pre-command]`; `files` is how
many files the command should write, optionally `N:GLOB` to count the files actually written after
every run (files/s uses that count), `command` is split with shlex and executed
directly (no shell unless it says `sh -c ...`), `pre-command` (optional) runs untimed before every
run of it (e.g. to delete the previous outputs). Lines starting with # are ignored. Every command
runs once untimed first (warm page cache, first-run effects), then --runs timed times. A non-zero
exit status is recorded (`exit` in the JSON, shown in the summary) and the command's stderr of the
warm-up run is kept in `stderr`, so a partial failure (e.g. 1 of 37 sizes) is reported, not hidden.
Appends one JSON object per command to --out and prints a one-line summary of each.
"""
import argparse
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys
import time


TIME = "/usr/bin/time"  # GNU time (Debian: apt-get install -y time)


def run_once(argv, errfile):
    """(exit code, wall s, user s, sys s, peak RSS bytes) of one run of argv.

    The command is started with posix_spawn through GNU time, which reports the child's user/sys
    CPU and peak RSS: a fork of this Python process would count Python's own ~12 MiB in the
    child's peak RSS. Wall time is measured here (perf_counter), GNU time's is only 10 ms precise.
    """
    rfile = errfile + ".rusage"
    wrapped = [TIME, "-q", "-f", "%x %U %S %M", "-o", rfile, *argv] if os.path.exists(TIME) else argv
    fa = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_OPEN, 2, errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
    t0 = time.perf_counter()
    pid = os.posix_spawnp(wrapped[0], wrapped, os.environ, file_actions=fa)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if wrapped is argv:
        return code, wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss * 1024
    fields = open(rfile).read().split()[-4:]
    os.unlink(rfile)
    return int(fields[0]), wall, float(fields[1]), float(fields[2]), int(fields[3]) * 1024


def quantile(xs, q):
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("spec")
    a = ap.parse_args()
    cmds = []
    for line in open(a.spec):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        label, files, cmd = parts[0], parts[1], parts[2]
        files, _, pattern = files.partition(":")
        files = int(files)
        pre = parts[3] if len(parts) > 3 and parts[3].strip() else None
        cmds.append({"label": label, "files": files, "cmd": cmd, "pre": pre, "argv": shlex.split(cmd), "samples": [], "glob": pattern or None, "exit": 0, "stderr": ""})
    errfile = a.out + ".stderr.tmp"
    for rnd in range(a.runs + 1):
        for c in cmds:
            if c["pre"]:
                subprocess.run(c["pre"], shell=True, check=True)
            code, wall, user, sys_, rss = run_once(c["argv"], errfile)
            written = len(glob.glob(c["glob"])) if c["glob"] else c["files"]
            if code != 0:
                c["exit"] = code
                if rnd == 0:
                    c["stderr"] = open(errfile).read()[-4000:]
                    print(f"  warning: `{c['label']}` exited with {code}:\n    " + c["stderr"].strip().replace("\n", "\n    "), file=sys.stderr)
            if rnd > 0:  # run 0 is the untimed warm-up
                c["samples"].append({"wall": wall, "user": user, "sys": sys_, "rss": rss, "load1": os.getloadavg()[0], "exit": code, "written": written})
    os.unlink(errfile)
    with open(a.out, "a") as f:
        for c in cmds:
            w = [s["wall"] for s in c["samples"]]
            rec = {
                "group": a.group,
                "label": c["label"],
                "cmd": c["cmd"],
                "files": c["files"],
                "written": min(s["written"] for s in c["samples"]),
                "exit": c["exit"],
                "stderr": c["stderr"],
                "runs": len(w),
                "wall_median": statistics.median(w),
                "wall_min": min(w),
                "wall_max": max(w),
                "wall_p25": quantile(w, 0.25),
                "wall_p75": quantile(w, 0.75),
                "user_median": statistics.median(s["user"] for s in c["samples"]),
                "sys_median": statistics.median(s["sys"] for s in c["samples"]),
                "rss_median": statistics.median(s["rss"] for s in c["samples"]),
                "rss_max": max(s["rss"] for s in c["samples"]),
                "load1_median": statistics.median(s["load1"] for s in c["samples"]),
                "samples": c["samples"],
            }
            f.write(json.dumps(rec) + "\n")
            fps = f"  {rec['written'] / rec['wall_median']:.1f} files/s" if c["files"] > 1 else ""
            if rec["written"] != c["files"] or c["exit"]:
                fps += f"  EXIT {c['exit']}, {rec['written']} of {c['files']} files written"
            print(f"  {c['label']:<44} wall {rec['wall_median'] * 1e3:9.1f} ms (min {rec['wall_min'] * 1e3:.1f}, max {rec['wall_max'] * 1e3:.1f})"
                  f"  user {rec['user_median']:.2f}s sys {rec['sys_median']:.2f}s  RSS {rec['rss_median'] / 2**20:7.1f} MiB{fps}")


if __name__ == "__main__":
    main()
