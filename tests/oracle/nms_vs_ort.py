#!/usr/bin/env python3
"""Cross-check the Rust reference NMS (src/postprocess.rs) against onnxruntime's NonMaxSuppression.

Not part of `cargo test` (cargo tests never need Python). Usage, from the crate root:

    python3 tests/oracle/nms_vs_ort.py            # runs the cargo dump test into a temp dir
    python3 tests/oracle/nms_vs_ort.py --dir DIR  # reuse a dump made with
        POSTMERGE_ORACLE_DIR=DIR cargo test --test postprocess_ref dump_for_onnxruntime_oracle

The dump holds, for every model of ../shared/ref with a raw.npy, the reference's decoded tensors
(boxes [B,N,4] x1y1x2y2, scores [B,N,C]) and its NMS selections for several parameter sets, class-aware
and agnostic. This script feeds the SAME tensors to a one-node-plus-plumbing ONNX graph in
onnxruntime and requires bit-identical selections. It also re-decodes raw.npy with numpy (float32,
same formula) and reports the largest difference from the Rust decode.

Agnostic graph: ReduceMax over classes -> NonMaxSuppression with one class; the class of each
selection is ArgMax over classes (first maximum), both computed by onnxruntime.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

CRATE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(CRATE, "..", "shared")


def nms_model(agnostic: bool, max_per_class: int, iou: float, score: float) -> bytes:
    inits = [
        helper.make_tensor("max_out", TensorProto.INT64, [1], [max_per_class]),
        helper.make_tensor("iou_thr", TensorProto.FLOAT, [1], [iou]),
        helper.make_tensor("score_thr", TensorProto.FLOAT, [1], [score]),
    ]
    nodes = []
    outputs = [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])]
    if agnostic:
        nodes.append(helper.make_node("ReduceMax", ["scores"], ["smax"], axes=[2], keepdims=1))
        nodes.append(helper.make_node("Transpose", ["smax"], ["st"], perm=[0, 2, 1]))
        nodes.append(helper.make_node("ArgMax", ["scores"], ["argmax"], axis=2, keepdims=0))
        outputs.append(helper.make_tensor_value_info("argmax", TensorProto.INT64, [None, None]))
    else:
        nodes.append(helper.make_node("Transpose", ["scores"], ["st"], perm=[0, 2, 1]))
    nodes.append(
        helper.make_node("NonMaxSuppression", ["boxes", "st", "max_out", "iou_thr", "score_thr"], ["selected"])
    )
    graph = helper.make_graph(
        nodes,
        "nms_oracle",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [None, None, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, None, None]),
        ],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def ort_select(boxes, scores, agnostic, p):
    sess = ort.InferenceSession(
        nms_model(agnostic, p["max_per_class"], p["iou_threshold"], p["score_threshold"]),
        providers=["CPUExecutionProvider"],
    )
    outs = sess.run(None, {"boxes": boxes, "scores": scores})
    sel = outs[0].astype(np.int64)
    if agnostic:
        argmax = outs[1]
        sel = sel.copy()
        sel[:, 1] = argmax[sel[:, 0], sel[:, 2]]
    return sel


def numpy_decode(raw, kind, h, w):
    """float32 decode with the formula documented in src/postprocess.rs::decode."""
    raw = raw.astype(np.float32)
    xy, wh = raw[..., 0:2], raw[..., 2:4]
    if kind == "yolox-raw":
        grids, strides = [], []
        for s in (8, 16, 32):
            yv, xv = np.meshgrid(np.arange(h // s), np.arange(w // s), indexing="ij")
            grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
            strides.append(np.full((grids[-1].shape[0], 1), s))
        grid = np.concatenate(grids).astype(np.float32)[None]
        stride = np.concatenate(strides).astype(np.float32)[None]
        xy = (xy + grid) * stride
        wh = np.exp(wh) * stride
    cx, cy, bw, bh = xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1]
    half = np.float32(0.5)
    boxes = np.stack([cx - bw * half, cy - bh * half, cx + bw * half, cy + bh * half], -1)
    scores = raw[..., 4:5] * raw[..., 5:]
    return boxes, scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", help="existing dump directory (POSTMERGE_ORACLE_DIR)")
    args = ap.parse_args()
    tmp = None
    if args.dir:
        dump = args.dir
    else:
        tmp = tempfile.TemporaryDirectory()
        dump = tmp.name
        env = dict(os.environ, POSTMERGE_ORACLE_DIR=dump)
        env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/postmerge-target"))
        env.setdefault("POSTMERGE_SHARED", os.path.abspath(SHARED))
        subprocess.run(
            ["cargo", "test", "--locked", "--quiet", "--test", "postprocess_ref", "dump_for_onnxruntime_oracle"],
            cwd=CRATE, env=env, check=True,
        )
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}")
    failures = 0
    total_runs = 0
    # Never vacuous: every ref of a supported model (group `supported` of tests/shared_corpus.txt,
    # the list the cargo half dumps) must be in the dump (the cargo half skips itself when
    # POSTMERGE_SHARED is unset, which would leave the dump empty).
    ref_dir = os.path.join(SHARED, "ref")
    with open(os.path.join(CRATE, "tests", "shared_corpus.txt")) as f:
        supported = [l.split()[1] for l in f if l.split()[:1] == ["supported"]]
    expected = sorted(n for n in supported if os.path.exists(os.path.join(ref_dir, n, "raw.npy")))
    dumped = sorted(os.listdir(dump))
    missing = [n for n in expected if n not in dumped]
    if len(expected) < 10 or missing:
        print(f"error: the dump in {dump} lacks {len(missing)} of the {len(expected)} refs of supported models "
              f"(tests/shared_corpus.txt): {missing[:5]} (is POSTMERGE_SHARED set for the cargo half?)", file=sys.stderr)
        return 1
    print(f"{len(dumped)} dumped refs (all {len(expected)} refs of the supported shared models)")
    for name in dumped:
        d = os.path.join(dump, name)
        boxes = np.load(os.path.join(d, "boxes.npy"))
        scores = np.load(os.path.join(d, "scores.npy"))
        params = json.load(open(os.path.join(d, "params.json")))
        kind = open(os.path.join(d, "kind.txt")).read().strip()
        raw = np.load(os.path.join(SHARED, "ref", name, "raw.npy"))
        np.seterr(over="ignore")
        h, w = np.load(os.path.join(SHARED, "ref", name, "input.npy")).shape[2:]
        nb, ns = numpy_decode(raw, kind, h, w)
        same = (nb == boxes) | (np.isnan(nb) & np.isnan(boxes))  # exp overflow gives equal +-inf
        with np.errstate(invalid="ignore"):
            delta = np.where(same, 0, np.abs(nb - boxes) / np.maximum(1, np.abs(boxes)))
        box_diff = float(delta.max())
        n_box_diff = int((~same).any(-1).sum())
        n_inf = int((~np.isfinite(boxes)).any(-1).sum())
        score_same = bool((ns == scores).all())
        line = [f"{name:<44} decode vs numpy: max|Δbox|/max(1,|box|) {box_diff:.1e} ({n_box_diff} boxes differ), scores identical={score_same}, {n_inf} non-finite boxes"]
        for pname, p in params.items():
            for agnostic in (False, True):
                tag = "_agnostic" if agnostic else ""
                ours = np.load(os.path.join(d, f"sel_{pname}{tag}.npy"))
                theirs = ort_select(boxes, scores, agnostic, p)
                total_runs += 1
                ok = ours.shape == theirs.shape and (ours == theirs).all()
                if not ok:
                    failures += 1
                    k = min(len(ours), len(theirs))
                    first = next((i for i in range(k) if (ours[i] != theirs[i]).any()), k)
                    line.append(f"  MISMATCH {pname}{tag}: rust {ours.shape[0]} vs ort {theirs.shape[0]} rows, first diff at {first}")
                else:
                    line.append(f"  {pname}{tag}: {ours.shape[0]} identical")
        print(line[0])
        print("   " + "; ".join(l.strip() for l in line[1:]))
    print(f"{total_runs - failures}/{total_runs} NMS runs bit-identical to onnxruntime")
    if total_runs == 0:
        print("error: no NMS run was compared", file=sys.stderr)
        failures += 1
    if tmp:
        tmp.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
