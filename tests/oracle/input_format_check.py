#!/usr/bin/env python3
"""Conformance oracle for `--input-format nhwc-u8-bgr|nhwc-u8-rgb` (issue 12 item 3).

Usage: python tests/oracle/input_format_check.py PATH_TO_POSTMERGE_BINARY

For the project's own fixtures (YOLOX raw yolox_nano_128x160, YOLOX decoded
yolox_nano_640x640_decode, the trained shapes_128x160, the Gold-YOLO-like goldlike_128x160) and
both channel orders, in onnxruntime (CPU):

  a. `merge IN --layout decoded --input-format FMT` (U) passes onnx.checker full_check; its input
     keeps its name and is uint8 [1, H, W, 3];
  b. U on a uint8 frame equals `merge IN --layout decoded` (F) on the float tensor the family's
     official preprocessing makes from the SAME frame, written here in numpy independently of
     postmerge: YOLOX = BGR as float32 0..255, NCHW; Gold-YOLO = RGB, float32 `/ 255`, NCHW.
     Boxes and scores within 1e-5 of their range (measured: 0 for YOLOX);
  c. feeding U the frame in the other channel order changes the scores (the order is applied);
  d. `quant-prep IN --input-format FMT` (P, opset 13) passes full_check and equals `quant-prep IN`
     on the same frame; then onnxruntime's quantize_static (QDQ, per-channel, MinMax, the
     nodes_to_exclude sidecar) accepts P with a uint8 calibration reader, and the INT8 result
     loads and runs on a uint8 frame (YOLOX models only: opset-13 Gold-YOLO-like has no sidecar
     difference to show).

The frame is tests/fixtures/shapes/sample_1.png resized with PIL to the model's H x W (any fixed
picture works: both models get the same one). Prints one line per case and `N passed, M failed`.
"""
import argparse
import logging
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

from oracle_common import Report, need

REPO = pathlib.Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"
MODELS = [("yolox_nano_128x160", "yolox"), ("yolox_nano_640x640_decode", "yolox"),
          ("shapes_128x160", "yolox"), ("goldlike_128x160", "gold")]
FORMATS = ("nhwc-u8-bgr", "nhwc-u8-rgb")
REL = 1e-5


def run(binary, *args):
    r = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"postmerge {' '.join(map(str, args))}: {r.stderr}")


def session(path):
    o = ort.SessionOptions()
    o.log_severity_level = 3
    o.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def outputs(path, x):
    s = session(path)
    return {o.name: v for o, v in zip(s.get_outputs(), s.run(None, {s.get_inputs()[0].name: x}))}


def frame(h, w, bgr):
    rgb = np.asarray(Image.open(FIX / "shapes" / "sample_1.png").convert("RGB").resize((w, h), Image.BILINEAR))
    return np.ascontiguousarray(rgb[..., ::-1] if bgr else rgb)[None]  # [1, H, W, 3] uint8


def official(fr, bgr, family):
    """The family's float NCHW input from a uint8 frame (numpy, no postmerge code)."""
    img = fr[0]
    if family == "yolox":
        img = img if bgr else img[..., ::-1]  # YOLOX takes BGR 0..255
        x = img.astype(np.float32)
    else:
        img = img[..., ::-1] if bgr else img  # Gold-YOLO takes RGB / 255
        x = img.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def max_rel(a, b):
    fin = np.isfinite(a) & np.isfinite(b)
    need(np.array_equal(np.isfinite(a), np.isfinite(b)), "non-finite values differ")
    rng = float(np.abs(a[fin]).max()) if fin.any() else 0.0
    d = float(np.abs(a[fin] - b[fin]).max()) if fin.any() else 0.0
    return d, (d / rng if rng else d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    rep = Report()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="input_format_"))
    for stem, family in MODELS:
        src = FIX / f"{stem}.onnx"
        f = tmp / f"{stem}_f.onnx"
        run(args.binary, "merge", src, "-o", f, "--layout", "decoded")
        qf = tmp / f"{stem}_qf.onnx"
        run(args.binary, "quant-prep", src, "-o", qf)
        for fmt in FORMATS:
            bgr = fmt.endswith("bgr")
            u = tmp / f"{stem}_{fmt}.onnx"

            def case_merge(u=u, fmt=fmt, bgr=bgr, src=src, f=f, family=family):
                run(args.binary, "merge", src, "-o", u, "--layout", "decoded", "--input-format", fmt)
                m = onnx.load(str(u))
                onnx.checker.check_model(m, full_check=True)
                i = m.graph.input[0]
                dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
                need(i.name == "images" and i.type.tensor_type.elem_type == onnx.TensorProto.UINT8
                     and dims[3] == 3, f"input {i.name} type {i.type.tensor_type.elem_type} {dims}")
                h, w = dims[1], dims[2]
                fr = frame(h, w, bgr)
                a, b = outputs(u, fr), outputs(f, official(fr, bgr, family))
                worst = []
                for k in ("boxes", "scores"):
                    need(a[k].shape == b[k].shape, f"{k}: {a[k].shape} vs {b[k].shape}")
                    d, r = max_rel(a[k], b[k])
                    need(r <= REL, f"{k} differ: max |d| {d:.3e} (relative {r:.1e} > {REL})")
                    worst.append(f"{k} max |d| {d:.2e}")
                wrong = outputs(u, np.ascontiguousarray(fr[..., ::-1]))["scores"]
                dw = float(np.abs(wrong - b["scores"]).max())
                need(dw > 1e-3, f"the other channel order changes the scores by only {dw:.2e}")
                return (f"full_check ok, uint8 {dims}; uint8 model vs float model on the same frame: "
                        f"{', '.join(worst)}; wrong channel order: scores off by {dw:.3f}")

            rep.case(f"{stem} {fmt} merge", case_merge)

            def case_qprep(stem=stem, fmt=fmt, bgr=bgr, src=src, qf=qf, family=family):
                p = tmp / f"{stem}_{fmt}_q.onnx"
                run(args.binary, "quant-prep", src, "-o", p, "--input-format", fmt)
                m = onnx.load(str(p))
                onnx.checker.check_model(m, full_check=True)
                need(m.opset_import[0].version == 13 or any(o.version == 13 for o in m.opset_import),
                     "opset is not 13")
                dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
                fr = frame(dims[1], dims[2], bgr)
                a, b = outputs(p, fr), outputs(qf, official(fr, bgr, family))
                for k in a:
                    d, r = max_rel(a[k], b[k])
                    need(r <= REL, f"{k} differ: {d:.3e}")
                detail = "full_check ok, opset 13, equal to the float quant-prep"
                if family == "yolox":
                    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                                          QuantFormat, QuantType, quantize_static)
                    import json

                    class Reader(CalibrationDataReader):
                        def __init__(self):
                            self.items = iter([{"images": frame(dims[1], dims[2], bgr)},
                                               {"images": np.ascontiguousarray(fr[:, ::-1])}])

                        def get_next(self):
                            return next(self.items, None)

                    q = tmp / f"{stem}_{fmt}_int8.onnx"
                    exclude = json.loads(p.with_suffix(".nodes_to_exclude.json").read_text())
                    quantize_static(str(p), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)
                    o = outputs(q, fr)
                    need(all(np.isfinite(v).all() for v in o.values()), "INT8 outputs are not finite")
                    ds = float(np.abs(o["scores"] - a["scores"]).max())
                    detail += f"; quantize_static on the uint8 input: loads, runs, max |score - float| {ds:.3f}"
                return detail

            rep.case(f"{stem} {fmt} quant-prep", case_qprep)
    print(f"{rep.passed} passed, {rep.failed} failed")
    sys.exit(1 if rep.failed else 0)


if __name__ == "__main__":
    main()
