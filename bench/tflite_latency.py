#!/usr/bin/env python3
"""Single-thread latency of the trained YOLOX-nano shapes model at 128x160, bare vs merged, in
onnxruntime, OpenVINO, TFLite fp32 and TFLite INT8 (issue 12, item 6).

    .ci/tflite-venv.sh --bench          # the TFLite venv + OpenVINO
    /work/venv-tflite/bin/python bench/tflite_latency.py PATH_TO_POSTMERGE [--work DIR] [--rounds 15] [--runs 40]
        [--model ONNX] [--out results.json]

Files (made in --work, reused when present):
  bare          the export as it is (raw YOLOX head [1, 420, 8], no post-process)
  merged        `postmerge merge` (decode + score + NMS, layout pinto)
  merged-qp     `postmerge merge --quant-prep` (the same, boxes normalized, opset 13: the file that
                goes to onnx2tf for INT8)
  *.tflite      onnx2tf 1.29.24 `-oiqt -cind` of bare and merged-qp (calibration: the 64
                ../shared/images/shapes/calib scenes, NHWC BGR 0..255), as tests/oracle/tflite_check.py
Runtimes, each on one thread: onnxruntime (intra/inter-op 1, sequential), OpenVINO CPU
(INFERENCE_NUM_THREADS 1, NUM_STREAMS 1, INFERENCE_PRECISION_HINT f32, PERFORMANCE_HINT LATENCY),
ai_edge_litert Interpreter(num_threads=1) (XNNPACK, the default delegate). Inputs: the held-out
scenes sample_0..4 in turn (the NMS cost depends on the candidates). Timed: one inference with
its input copy-in and output copy-out (ORT session.run, OpenVINO infer(), TFLite set_tensor +
invoke + get_tensor of every output).

Made for a loaded machine: for each runtime the files are timed interleaved in one process after
--warmup untimed runs of each; each iteration runs every file once, in an order that alternates
(bare, merged / merged, bare / ...) so neither file always runs first, and the iterations are cut
into --rounds rounds of --runs iterations. Per round: the median of each file and their ratio
merged / bare. Reported: the median of the per-round ratios with their p25-p75 and min-max
(the spread says how much the load moved the figure), the pooled median of each file, the median
of the paired per-iteration difference merged - bare, the minimum of each file (the least disturbed
run), and the 1-min load average at the start and end of each runtime's rounds. Every TFLite file is first loaded in a subprocess: a file whose
allocate_tensors() aborts is reported as such and not timed.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(v, "1")

import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "oracle"))
SHARED = REPO.parent / "shared"
MODEL = SHARED / "models" / "yolox_nano_3c_128x160_op11_shapes.onnx"


def inputs_nchw():
    import int8_check as ic
    _, held = ic.shapes_sets(128, 160)
    return [x for _, x in held]


def make_files(binary, model, work):
    import tflite_check as tc
    work.mkdir(parents=True, exist_ok=True)
    tc.write_standin(work)
    files = {"bare": model}
    for name, extra in (("merged", []), ("merged-qp", ["--quant-prep"])):
        p = work / f"{name}.onnx"
        if not p.exists():
            tc.postmerge(binary, "merge", model, "-o", p, *extra)
        files[name] = p
    import int8_check as ic
    calib, _ = ic.shapes_sets(128, 160)
    cnpy = work / "calib.npy"
    np.save(cnpy, np.ascontiguousarray(np.concatenate([x for _, x in calib]).transpose(0, 2, 3, 1)).astype(np.float32))
    for name in ("bare", "merged-qp"):
        src = work / f"{name}.src.onnx"
        if not src.exists():
            src.write_bytes(pathlib.Path(files[name]).read_bytes())
        out = work / f"{name}_tflite"
        if not (out / f"{src.stem}_full_integer_quant.tflite").exists():
            dt, err, _ = tc.convert((src, out, cnpy, "images", work, []))
            print(f"onnx2tf {name}: {dt:.0f} s{' ' + err if err else ''}", file=sys.stderr, flush=True)
        for kind in tc.FILES:
            files[f"{name}/{kind}"] = out / f"{src.stem}_{kind}.tflite"
    return files


def stats(ts):
    q = statistics.quantiles(ts, n=4)
    return {"median": statistics.median(ts), "p25": q[0], "p75": q[2], "min": min(ts), "n": len(ts)}


def time_interleaved(runners, warmup, runs, xs, rounds=1):
    """runners: {name: fn(x)}; returns {name: [[ms] per round]}: every iteration runs each file
    once, the order reversed on every other iteration."""
    names = list(runners)
    for fn in runners.values():
        for i in range(warmup):
            fn(xs[i % len(xs)])
    out = {k: [[] for _ in range(rounds)] for k in names}
    it = 0
    for r in range(rounds):
        for _ in range(runs):
            x = xs[it % len(xs)]
            for k in (names if it % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                runners[k](x)
                out[k][r].append((time.perf_counter() - t0) * 1e3)
            it += 1
    return out


def ort_runners(files, names, xs):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    r = {}
    for n in names:
        s = ort.InferenceSession(str(files[n]), so, providers=["CPUExecutionProvider"])
        iname = s.get_inputs()[0].name
        r[n] = (lambda s, iname: lambda x: s.run(None, {iname: x}))(s, iname)
    return r


def ov_runners(files, names, xs):
    import openvino as ov
    core = ov.Core()
    cfg = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
           "PERFORMANCE_HINT": "LATENCY"}
    r = {}
    for n in names:
        c = core.compile_model(str(files[n]), "CPU", cfg)
        req = c.create_infer_request()
        r[n] = (lambda req: lambda x: req.infer({0: x}))(req)
    return r


def tfl_runners(files, names, xs):
    from ai_edge_litert.interpreter import Interpreter
    r = {}
    for n in names:
        it = Interpreter(model_path=str(files[n]), num_threads=1)
        it.allocate_tensors()
        ind = it.get_input_details()[0]
        outs = [o["index"] for o in it.get_output_details()]
        dt = np.dtype(ind["dtype"])
        sc, zp = ind["quantization"]
        feeds = []
        for x in xs:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            if dt != np.float32:
                info = np.iinfo(dt)
                x = np.clip(np.rint(x / sc + zp), info.min, info.max).astype(dt)
            feeds.append(x)
        idx = {id(x): k for k, x in enumerate(xs)}

        def run(x, it=it, ind=ind, outs=outs, feeds=feeds, idx=idx):
            it.set_tensor(ind["index"], feeds[idx[id(x)]])
            it.invoke()
            return [it.get_tensor(o) for o in outs]
        r[n] = run
    return r


def child(kind, files_json, names, warmup, runs, rounds):
    files = {k: pathlib.Path(v) for k, v in json.loads(files_json).items()}
    xs = inputs_nchw()
    mk = {"onnxruntime": ort_runners, "openvino": ov_runners, "tflite": tfl_runners}[kind]
    runners = mk(files, names, xs)
    load0 = os.getloadavg()[0]
    ts = time_interleaved(runners, warmup, runs, xs, rounds)
    print(json.dumps({"ts": ts, "load": [load0, os.getloadavg()[0]]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", type=pathlib.Path)
    ap.add_argument("--model", type=pathlib.Path, default=MODEL)
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/tflite_latency"))
    ap.add_argument("--runs", type=int, default=40, help="iterations per round")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", type=pathlib.Path)
    args = ap.parse_args()
    import tflite_check as tc
    files = make_files(args.binary.resolve(), args.model.resolve(), args.work.resolve())
    groups = [
        ("onnxruntime", "onnxruntime float", ["bare", "merged", "merged-qp"]),
        ("openvino", "OpenVINO float", ["bare", "merged", "merged-qp"]),
        ("tflite", "TFLite fp32", ["bare/float32", "merged-qp/float32"]),
        ("tflite", "TFLite INT8 (int8 inside, float I/O)", ["bare/integer_quant", "merged-qp/integer_quant"]),
        ("tflite", "TFLite full INT8 (int8 I/O)", ["bare/full_integer_quant", "merged-qp/full_integer_quant"]),
    ]
    xs = inputs_nchw()
    results = []
    load = os.getloadavg()[0]
    for kind, label, names in groups:
        notes = {}
        ok = []
        for n in names:
            if kind == "tflite":
                outs, meta = tc.run_tflite(files[n], [np.ascontiguousarray(x.transpose(0, 2, 3, 1)) for x in xs[:1]],
                                           args.work.resolve())
                if outs is None:
                    notes[n] = meta
                    continue
            ok.append(n)
        ts, gload = {}, None
        if ok:
            r = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps({k: str(v) for k, v in files.items()}),
                                ",".join(ok), str(args.warmup), str(args.runs), str(args.rounds)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                for n in ok:
                    notes[n] = f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]}"
            else:
                res = json.loads(r.stdout.strip().splitlines()[-1])
                ts, gload = res["ts"], res["load"]
        flat = {n: [v for rnd in rr for v in rnd] for n, rr in ts.items()}
        row = {"runtime": label, "files": names, "stats": {n: stats(v) for n, v in flat.items()}, "notes": notes,
               "load": gload}
        base = names[0]
        for n in names[1:]:
            if base in ts and n in ts:
                d = [b - a for a, b in zip(flat[base], flat[n])]
                ratios = [statistics.median(m) / statistics.median(b) for b, m in zip(ts[base], ts[n])]
                q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
                row.setdefault("paired", {})[n] = {"median_ms": statistics.median(d),
                                                   "pct": 100 * statistics.median(d) / statistics.median(flat[base]),
                                                   "ratio_median": statistics.median(ratios), "ratio_p25": q[0],
                                                   "ratio_p75": q[2], "ratio_min": min(ratios),
                                                   "ratio_max": max(ratios), "rounds": len(ratios)}
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    load_end = os.getloadavg()[0]
    print(f"\n{args.rounds} rounds x {args.runs} interleaved iterations per file (after {args.warmup} warm-ups); "
          f"1-min load average {load:.1f} at start, {load_end:.1f} at end; {os.cpu_count()} CPUs\n")
    print("| runtime | bare ms, median (p25–p75) | merged ms, median (p25–p75) | merged / bare: median of "
          "rounds (p25–p75, min–max) | paired merged − bare | min bare / merged | load |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        base = row["files"][0]
        for n in row["files"][1:]:
            def cell(k):
                if k in row["stats"]:
                    s = row["stats"][k]
                    return f"{s['median']:.3f} ({s['p25']:.3f}–{s['p75']:.3f})"
                return row["notes"].get(k, "-")
            p = row.get("paired", {}).get(n)
            ratio = (f"{p['ratio_median']:.3f} ({p['ratio_p25']:.3f}–{p['ratio_p75']:.3f}, "
                     f"{p['ratio_min']:.3f}–{p['ratio_max']:.3f})" if p else "-")
            paired = f"{p['median_ms']:+.3f} ms ({p['pct']:+.1f} %)" if p else "-"
            ld = f"{row['load'][0]:.1f}→{row['load'][1]:.1f}" if row.get("load") else "-"
            mins = (f"{row['stats'][base]['min']:.3f} / {row['stats'][n]['min']:.3f}"
                    if n in row["stats"] and base in row["stats"] else "-")
            print(f"| {row['runtime']}: `{base}` vs `{n}` | {cell(base)} | {cell(n)} | {ratio} | {paired} | {mins} | {ld} |")
    if args.out:
        args.out.write_text(json.dumps({"load": [load, load_end], "runs": args.runs, "rounds": args.rounds,
                                              "results": results}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4].split(","), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))
        sys.exit(0)
    sys.exit(main())
