#!/usr/bin/env python3
"""Batch independence of merged dynamic-batch exports in onnxruntime (issue 13).

For each dynamic-batch export (the fixtures in tests/fixtures/dynamic/, and the real Gold-YOLO
`--dynamic-batch` file of the shared corpus when POSTMERGE_SHARED names it), `postmerge merge`
(default layout, and `--layout trt`) must give a model that runs at batch 1, 2 and 4 in
onnxruntime, and every image of a batch must get exactly the detections it gets alone
(row by row, in the same order; values equal to 1e-4). The batch holds different images: the
reference input and three variants (mirrored, flipped, rolled), so a model that repeats image 0
or mixes images fails. The YOLOX decoded fixture, whose ScatterND index plumbing fixes batch 1,
must be refused (exit 2) and merge with --batch 1.

Usage: python3 tests/oracle/batch_check.py path/to/postmerge
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures")


def variants(x):
    return [x, x[..., ::-1].copy(), x[..., ::-1, :].copy(), np.roll(x, 37, axis=3).copy()]


def rows_per_image(outs, names, b):
    """Split the merged outputs into per-image detection rows."""
    d = dict(zip(names, outs))
    if "num_dets" in d:
        res = []
        for i in range(b):
            n = int(d["num_dets"][i, 0])
            res.append(np.concatenate([d["det_boxes"][i, :n], d["det_scores"][i, :n, None],
                                       d["det_classes"][i, :n, None].astype(np.float32)], axis=1))
        return res
    (t,) = outs
    return [t[t[:, 0] == i][:, 1:] for i in range(b)]


def main():
    exe = sys.argv[1]
    cases = [
        (os.path.join(FIX, "dynamic", "yolox_nano_640x640_dynamic.onnx"),
         os.path.join(FIX, "ref", "yolox_nano_640x640", "input.npy")),
        (os.path.join(FIX, "dynamic", "goldlike_640x640_dynbatch.onnx"),
         os.path.join(FIX, "ref", "goldlike_640x640", "input.npy")),
    ]
    shared = os.environ.get("POSTMERGE_SHARED")
    if shared:
        stem = "gold_yolo_n_80c_640x640_op13_dynbatch"
        cases.append((os.path.join(shared, "models", stem + ".onnx"),
                      os.path.join(shared, "ref", stem, "input.npy")))
    else:
        print("note: POSTMERGE_SHARED not set: the real Gold-YOLO --dynamic-batch file is not run")
    ort.set_default_logger_severity(3)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for model, inp in cases:
            x = np.load(inp)
            imgs = variants(x)
            for layout in ("default", "trt"):
                out = os.path.join(tmp, f"{os.path.basename(model)[:-5]}_{layout}.onnx")
                cmd = [exe, "merge", model, "-o", out] + ([] if layout == "default" else ["--layout", "trt"])
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"FAIL {os.path.basename(model)} {layout}: merge exit {r.returncode}: {r.stderr.strip()}")
                    failures += 1
                    continue
                s = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
                names = [o.name for o in s.get_outputs()]
                alone = [rows_per_image(s.run(None, {"images": im}), names, 1)[0] for im in imgs]
                for b in (2, 4):
                    xb = np.concatenate(imgs[:b])
                    try:
                        per = rows_per_image(s.run(None, {"images": xb}), names, b)
                    except Exception as e:  # noqa: BLE001 - reported
                        print(f"FAIL {os.path.basename(out)} batch {b}: onnxruntime: {str(e)[:200]}")
                        failures += 1
                        continue
                    for i in range(b):
                        a, g = alone[i], per[i]
                        ok = a.shape == g.shape and (a.size == 0 or np.abs(a - g).max() <= 1e-4)
                        if not ok or a.shape[0] == 0:
                            print(f"FAIL {os.path.basename(out)} batch {b} image {i}: {g.shape[0]} rows, alone {a.shape[0]}")
                            failures += 1
                    print(f"ok   {os.path.basename(out)} batch {b}: per-image rows {[p.shape[0] for p in per]} equal to each image alone")
        # the decoded fixture bakes batch 1 into its ScatterND indices: refused, and merges at batch 1
        dec = os.path.join(FIX, "dynamic", "yolox_nano_640x640_decode_dynamic.onnx")
        r = subprocess.run([exe, "merge", dec, "-o", os.path.join(tmp, "dec.onnx")], capture_output=True, text=True)
        if r.returncode != 2 or "ScatterND" not in r.stderr:
            print(f"FAIL decode_dynamic: expected exit 2 naming ScatterND, got {r.returncode}: {r.stderr.strip()}")
            failures += 1
        else:
            print("ok   decode_dynamic refused: " + r.stderr.strip().splitlines()[-1].strip()[:160])
        r = subprocess.run([exe, "merge", dec, "-o", os.path.join(tmp, "dec1.onnx"), "--batch", "1"], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL decode_dynamic --batch 1: exit {r.returncode}: {r.stderr.strip()}")
            failures += 1
        else:
            s = ort.InferenceSession(os.path.join(tmp, "dec1.onnx"), providers=["CPUExecutionProvider"])
            (t,) = s.run(None, {"images": np.load(os.path.join(FIX, "ref", "yolox_nano_640x640", "input.npy"))})
            print(f"ok   decode_dynamic --batch 1: {t.shape[0]} detections in onnxruntime")
    print(f"{0 if failures else 1} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
