#!/usr/bin/env python3
"""Resized and batch-changed models in onnx.checker and onnxruntime vs native exports.

README ("How results are proven"): "Resized models are compared with native exports of the same
weights: the graph diff is empty and the outputs are equal." The cargo tests prove that in tract;
this script proves it with the official tools, on postmerge's OWN output:

1. `postmerge resize SRC --size HxW ...` (several sizes in one call) for every native export of the
   same weights (tests/fixtures/native/goldlike_*, tests/fixtures/*_128x160.onnx, and, when
   ../shared is there, gold_yolo_n_80c_* / yolox_nano_80c_*): each output passes
   `onnx.checker.check_model(full_check=True)` and its onnxruntime output equals the native
   export's on the same input (max |d| <= 1e-5 x the output's range; onnxruntime runs the two
   graphs with the same kernels, so the measured difference is 0).
2. `resize --batch 4` and `--batch dynamic`: checker, then onnxruntime on 4 (dynamic: 3 and 1)
   DIFFERENT images at once; every image's rows equal the native batch-1 export's on that image,
   row by row.
3. `merge --size HxW` (pinto layout), and `merge --size HxW --batch 2 --layout trt` /
   `--layout ultralytics`: checker; the final outputs equal those of `merge` applied to the native
   export (batch 1, image by image), row by row: counts and class/batch columns exact, boxes within
   1e-3 px, scores within 1e-5.

Usage (from the crate root): python3 tests/oracle/resize_check.py PATH/TO/postmerge
Prints one line per case and `N passed, M failed`; exits 1 if a case failed.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import Failure, Report, need  # noqa: E402

CRATE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(CRATE, "tests", "fixtures")
SHARED = os.path.join(CRATE, "..", "shared")

BIN = None
TMP = None


def run(*args):
    p = subprocess.run([BIN, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise Failure(f"postmerge {' '.join(args)} exited {p.returncode}: {p.stderr.strip()[-800:]}")
    return p.stdout


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def checked(path):
    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise Failure(f"onnx.checker(full_check) rejects {os.path.basename(path)}: {e}")
    return session(path)


def inputs(family, h, w, n, seed):
    """n different deterministic inputs [1,3,h,w]: smooth random fields in the family's range."""
    rng = np.random.default_rng(seed)
    scale = 1.0 if family == "gold" else 255.0
    out = []
    for _ in range(n):
        coarse = rng.uniform(0, 1, size=(3, max(h // 16, 1), max(w // 16, 1))).astype(np.float32)
        x = np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)[:, :h, :w]
        x = np.clip(x + rng.uniform(-0.1, 0.1, size=x.shape).astype(np.float32), 0, 1)
        out.append((x * scale).astype(np.float32)[None])
    return out


def ref_input(stem, h, w):
    for d in (os.path.join(SHARED, "ref", stem), os.path.join(FIX, "ref", stem)):
        p = os.path.join(d, "input.npy")
        if os.path.exists(p):
            x = np.load(p)
            if x.shape[2:] == (h, w):
                return x.astype(np.float32)
    return None


def one(sess, x):
    return sess.run(None, {sess.get_inputs()[0].name: x})


def same_head(a, b, what):
    need(a.shape == b.shape, f"{what}: shape {a.shape} vs native {b.shape}")
    fin = np.isfinite(a) & np.isfinite(b)
    need((np.isfinite(a) == np.isfinite(b)).all(), f"{what}: non-finite values differ")
    rng = float(np.abs(b[fin]).max()) if fin.any() else 0.0
    d = float(np.abs(a[fin] - b[fin]).max()) if fin.any() else 0.0
    need(d <= 1e-5 * max(rng, 1.0), f"{what}: max |d| {d:.3e} (range {rng:.3e}) > 1e-5 relative")
    return d


def family_of(stem):
    return "gold" if stem.startswith("gold") else "yolox"


def resize_case(src, natives):
    """natives: list of (h, w, native path)."""
    stem = os.path.splitext(os.path.basename(src))[0]
    fam = family_of(stem)
    out_dir = tempfile.mkdtemp(dir=TMP)
    pattern = os.path.join(out_dir, "{stem}_{h}x{w}.onnx")
    args = ["resize", src, "-o", pattern]
    for h, w, _ in natives:
        args += ["--size", f"{h}x{w}"]
    run(*args)
    details = []
    for h, w, native in natives:
        out = os.path.join(out_dir, f"{stem}_{h}x{w}.onnx")
        s, n = checked(out), session(native)
        xs = inputs(fam, h, w, 2, seed=h * 10007 + w)
        r = ref_input(os.path.splitext(os.path.basename(native))[0], h, w)
        if r is not None:
            xs.append(r)
        worst = 0.0
        for k, x in enumerate(xs):
            a, b = one(s, x), one(n, x)
            need(len(a) == len(b), f"{h}x{w}: {len(a)} outputs vs {len(b)}")
            for i, (p, q) in enumerate(zip(a, b)):
                worst = max(worst, same_head(p, q, f"{h}x{w} input {k} output {i}"))
        details.append(f"{h}x{w} max|d| {worst:.1e} on {len(xs)} inputs")
    return "; ".join(details)


def batch_case(src, h, w, native):
    stem = os.path.splitext(os.path.basename(src))[0]
    fam = family_of(stem)
    n = session(native)
    details = []
    for batch, sizes in (("4", [4]), ("dynamic", [3, 1])):
        out = os.path.join(TMP, f"{stem}_{h}x{w}_b{batch}.onnx")
        run("resize", src, "-o", out, "--size", f"{h}x{w}", "--batch", batch)
        s = checked(out)
        for b in sizes:
            xs = inputs(fam, h, w, b, seed=b * 31 + h)
            got = one(s, np.concatenate(xs, axis=0))
            for i, x in enumerate(xs):
                want = one(n, x)
                for j, (g, q) in enumerate(zip(got, want)):
                    need(g.shape[0] == b, f"--batch {batch}: output {j} has batch {g.shape[0]}, fed {b}")
                    same_head(g[i:i + 1], q, f"--batch {batch} (fed {b}) image {i} output {j}")
        details.append(f"--batch {batch}: {sum(sizes)} images row by row")
    return "; ".join(details)


def outputs_by_name(sess, x):
    return dict(zip([o.name for o in sess.get_outputs()], one(sess, x)))


def rows_equal(got, want, layout, what):
    """Final outputs of one image: counts/ids exact, boxes 1e-3 px, scores 1e-5."""
    def close(a, b, tol, name):
        need(a.shape == b.shape, f"{what}: `{name}` shape {a.shape} vs {b.shape}")
        if a.size:
            d = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            need(d <= tol, f"{what}: `{name}` differs by {d:.3e} > {tol}")

    if layout == "pinto":
        a, b = got["batchno_classid_score_x1y1x2y2"], want["batchno_classid_score_x1y1x2y2"]
        need(a.shape == b.shape, f"{what}: {a.shape[0]} rows vs {b.shape[0]} native")
        close(a[:, :2], b[:, :2], 0, "batch/class")
        close(a[:, 2], b[:, 2], 1e-5, "score")
        close(a[:, 3:], b[:, 3:], 1e-3, "box")
        return a.shape[0]
    if layout == "trt":
        close(got["num_dets"], want["num_dets"], 0, "num_dets")
        close(got["det_classes"], want["det_classes"], 0, "det_classes")
        close(got["det_scores"], want["det_scores"], 1e-5, "det_scores")
        close(got["det_boxes"], want["det_boxes"], 1e-3, "det_boxes")
        return int(got["num_dets"].sum())
    a, b = got["output0"], want["output0"]
    close(a[..., 5], b[..., 5], 0, "class")
    close(a[..., 4], b[..., 4], 1e-5, "score")
    close(a[..., :4], b[..., :4], 1e-3, "box")
    return int((a[..., 4] > 0).sum())


def merge_size_case(src, h, w, native):
    stem = os.path.splitext(os.path.basename(src))[0]
    fam = family_of(stem)
    details = []
    xs = inputs(fam, h, w, 2, seed=h + w)
    r = ref_input(os.path.splitext(os.path.basename(native))[0], h, w)
    if r is not None:
        xs.append(r)
    for layout, batch in (("pinto", None), ("trt", "2"), ("ultralytics", "2")):
        lay = ["--layout", layout] if layout != "pinto" or fam != "gold" else ["--layout", "pinto"]
        out = os.path.join(TMP, f"{stem}_m_{layout}_{h}x{w}.onnx")
        args = ["merge", src, "-o", out, "--size", f"{h}x{w}", *lay]
        if batch:
            args += ["--batch", batch]
        run(*args)
        nat = os.path.join(TMP, f"{stem}_native_{layout}_{h}x{w}.onnx")
        run("merge", native, "-o", nat, *lay)
        s, n = checked(out), checked(nat)
        total = 0
        if batch:
            b = int(batch)
            for k in range(0, len(xs) - len(xs) % b, b):
                got = outputs_by_name(s, np.concatenate(xs[k:k + b], axis=0))
                for i in range(b):
                    want = outputs_by_name(n, xs[k + i])
                    mine = {name: v[i:i + 1] for name, v in got.items()}
                    total += rows_equal(mine, want, layout, f"{layout} --batch {batch} image {k + i}")
        else:
            for k, x in enumerate(xs):
                total += rows_equal(outputs_by_name(s, x), outputs_by_name(n, x), layout, f"{layout} input {k}")
        need(total > 0, f"{layout}: no detection on any input, nothing compared")
        details.append(f"{layout}{' --batch ' + batch if batch else ''}: {total} detections")
    return "; ".join(details)


def main():
    global BIN, TMP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bin", help="path to the postmerge binary")
    a = ap.parse_args()
    BIN = os.path.abspath(a.bin)
    rep = Report()
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        gold640 = os.path.join(FIX, "goldlike_640x640.onnx")
        natives = [(128, 160, os.path.join(FIX, "goldlike_128x160.onnx"))]
        for f in sorted(os.listdir(os.path.join(FIX, "native"))):
            if f.startswith("goldlike_") and f.endswith(".onnx"):
                hh, ww = f[len("goldlike_"):-5].split("x")
                natives.append((int(hh), int(ww), os.path.join(FIX, "native", f)))
        rep.case("resize goldlike_640x640 -> native goldlike exports",
                 lambda: resize_case(gold640, natives))
        yx640 = os.path.join(FIX, "yolox_nano_640x640.onnx")
        yx128 = os.path.join(FIX, "yolox_nano_128x160.onnx")
        rep.case("resize yolox_nano_640x640 -> native 128x160",
                 lambda: resize_case(yx640, [(128, 160, yx128)]))
        rep.case("resize --batch goldlike_640x640 -> 128x160",
                 lambda: batch_case(gold640, 128, 160, natives[0][2]))
        rep.case("resize --batch yolox_nano_640x640 -> 128x160",
                 lambda: batch_case(yx640, 128, 160, yx128))
        rep.case("merge --size goldlike_640x640 -> 128x160",
                 lambda: merge_size_case(gold640, 128, 160, natives[0][2]))
        rep.case("merge --size yolox_nano_640x640 -> 128x160",
                 lambda: merge_size_case(yx640, 128, 160, yx128))
        models = os.path.join(SHARED, "models")
        if os.path.isdir(models):
            for src, sizes in (
                ("gold_yolo_n_80c_640x640_op13", [(128, 160), (480, 640)]),
                ("yolox_nano_80c_640x640_op11", [(128, 160), (416, 416), (480, 640)]),
            ):
                base = src.replace("640x640", "{}")
                nat = [(h, w, os.path.join(models, base.format(f"{h}x{w}") + ".onnx")) for h, w in sizes]
                nat = [n for n in nat if os.path.exists(n[2])]
                p = os.path.join(models, src + ".onnx")
                rep.case(f"resize {src} -> shared native exports", lambda p=p, nat=nat: resize_case(p, nat))
                rep.case(f"merge --size {src} -> 128x160",
                         lambda p=p, nat=nat: merge_size_case(p, 128, 160, nat[0][2]))
        else:
            print(f"note: {models} not found: shared models not covered", flush=True)
    print(f"{rep.passed} passed, {rep.failed} failed")
    sys.exit(1 if rep.failed else 0)


if __name__ == "__main__":
    main()
