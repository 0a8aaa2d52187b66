#!/usr/bin/env python3
"""Runtime cost of the merged post-process in onnxruntime (issue 7, part d).

For each case, on one thread (intra_op_num_threads=1, inter_op_num_threads=1, sequential):
- `bare`        session.run of the un-merged export alone;
- `numpy`       the official YOLOX demo post-processing in numpy on its output
                (yolox/utils/demo_utils.py: demo_postprocess grids for raw YOLOX heads, cxcywh ->
                xyxy, scores = obj * cls, multiclass_nms class-aware: per class score > thr, greedy
                NMS with legacy +1 IoU, multi-label, no cap) — Gold-YOLO's boxes are already decoded,
                so it gets the same code minus demo_postprocess;
- `numpy_cap`   the same with at most --max-per-class detections per class (what the merged
                model's NonMaxSuppression keeps; greedy NMS stopped after that many picks);
- `merged`      session.run of the merged model (`postmerge merge`, default layout).
Runs are interleaved (bare+numpy, merged, bare+numpy, ...) after --warmup untimed runs of each, so
load from other jobs falls on both alike; reports median, p25, p75 and min of --runs runs, the
median of the paired per-iteration difference merged - bare, and the number of detections each
path produces.

    ort_latency.py --out results.jsonl --runs 50 \
        --case NAME FAMILY(yolox|goldyolo) BARE.onnx MERGED.onnx INPUT.npy [--case ...]

`--selfcheck RAW.npy DETS.json H W` verifies the numpy post-process against a reference
(`shared/ref/<yolox model>/dets.json`, made by the YOLOX code itself) and exits.
"""
import argparse
import json
import os
import statistics
import sys
import time

# one thread everywhere, before numpy is imported
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

np.seterr(over="ignore")  # exp of large raw log-sizes in random-weight models, as in the demo


# --- yolox/utils/demo_utils.py semantics -------------------------------------------------------
def demo_postprocess(outputs, img_size, p6=False):
    grids = []
    expanded_strides = []
    strides = [8, 16, 32] if not p6 else [8, 16, 32, 64]
    hsizes = [img_size[0] // stride for stride in strides]
    wsizes = [img_size[1] // stride for stride in strides]
    for hsize, wsize, stride in zip(hsizes, wsizes, strides):
        xv, yv = np.meshgrid(np.arange(wsize), np.arange(hsize))
        grid = np.stack((xv, yv), 2).reshape(1, -1, 2)
        grids.append(grid)
        shape = grid.shape[:2]
        expanded_strides.append(np.full((*shape, 1), stride))
    grids = np.concatenate(grids, 1)
    expanded_strides = np.concatenate(expanded_strides, 1)
    outputs[..., :2] = (outputs[..., :2] + grids) * expanded_strides
    outputs[..., 2:4] = np.exp(outputs[..., 2:4]) * expanded_strides
    return outputs


def nms(boxes, scores, nms_thr, max_keep=None):
    """Single class NMS implemented in Numpy (legacy +1 widths), optionally stopped after max_keep."""
    x1 = boxes[:, 0]
    y1 = boxes[:, 1]
    x2 = boxes[:, 2]
    y2 = boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        inds = np.where(ovr <= nms_thr)[0]
        order = order[inds + 1]
    return keep


def multiclass_nms_class_aware(boxes, scores, nms_thr, score_thr, max_keep=None):
    """Multiclass NMS implemented in Numpy. Class-aware version."""
    final_dets = []
    num_classes = scores.shape[1]
    for cls_ind in range(num_classes):
        cls_scores = scores[:, cls_ind]
        valid_score_mask = cls_scores > score_thr
        if valid_score_mask.sum() == 0:
            continue
        valid_scores = cls_scores[valid_score_mask]
        valid_boxes = boxes[valid_score_mask]
        keep = nms(valid_boxes, valid_scores, nms_thr, max_keep)
        if len(keep) > 0:
            cls_inds = np.ones((len(keep), 1)) * cls_ind
            dets = np.concatenate([valid_boxes[keep], valid_scores[keep, None], cls_inds], 1)
            final_dets.append(dets)
    if len(final_dets) == 0:
        return None
    return np.concatenate(final_dets, 0)


def postprocess(raw, family, hw, nms_thr, score_thr, max_keep=None):
    """demo/ONNXRuntime/onnx_inference.py without the /ratio (detections in input pixels)."""
    out = raw.copy() if family == "yolox" else raw  # demo_postprocess writes in place
    predictions = demo_postprocess(out, hw)[0] if family == "yolox" else out[0]
    boxes = predictions[:, :4]
    scores = predictions[:, 4:5] * predictions[:, 5:]
    boxes_xyxy = np.ones_like(boxes)
    boxes_xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.0
    boxes_xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.0
    boxes_xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.0
    boxes_xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.0
    return multiclass_nms_class_aware(boxes_xyxy, scores, nms_thr, score_thr, max_keep)


# --- measurement --------------------------------------------------------------------------------
def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def stats(xs):
    s = sorted(xs)
    q = lambda p: s[min(len(s) - 1, int(round((len(s) - 1) * p)))]  # noqa: E731
    return {"median": statistics.median(s), "p25": q(0.25), "p75": q(0.75), "min": s[0], "max": s[-1], "n": len(s)}


def merged_count(outs):
    o = outs[0]
    return int(o.shape[0]) if o.ndim == 2 else int(np.prod(o.shape[:-1]))


def run_case(name, family, bare_p, merged_p, input_p, a):
    x = np.load(input_p).astype(np.float32)
    hw = (x.shape[2], x.shape[3])
    sb, sm = session(bare_p), session(merged_p)
    ib, im = sb.get_inputs()[0].name, sm.get_inputs()[0].name
    t_bare, t_np, t_npc, t_merged = [], [], [], []
    n_np = n_npc = n_m = None
    for it in range(a.warmup + a.runs):
        t0 = time.perf_counter()
        raw = sb.run(None, {ib: x})[0]
        t1 = time.perf_counter()
        d = postprocess(raw, family, hw, a.iou, a.score)
        t2 = time.perf_counter()
        dc = postprocess(raw, family, hw, a.iou, a.score, a.max_per_class)
        t3 = time.perf_counter()
        outs = sm.run(None, {im: x})
        t4 = time.perf_counter()
        if it >= a.warmup:
            t_bare.append(t1 - t0)
            t_np.append(t2 - t1)
            t_npc.append(t3 - t2)
            t_merged.append(t4 - t3)
        n_np = 0 if d is None else len(d)
        n_npc = 0 if dc is None else len(dc)
        n_m = merged_count(outs)
    bare_np = [b + p for b, p in zip(t_bare, t_np)]
    bare_npc = [b + p for b, p in zip(t_bare, t_npc)]
    rec = {
        "case": name, "family": family, "size": f"{hw[0]}x{hw[1]}", "bare_model": bare_p, "merged_model": merged_p, "input": input_p,
        "score": a.score, "iou": a.iou, "max_per_class": a.max_per_class,
        "bare": stats(t_bare), "numpy": stats(t_np), "numpy_cap": stats(t_npc),
        "bare_numpy": stats(bare_np), "bare_numpy_cap": stats(bare_npc), "merged": stats(t_merged),
        # paired: the two models ran back to back in the same iteration, so their difference
        # cancels most of the load from other jobs
        "merged_minus_bare": stats([m - b for m, b in zip(t_merged, t_bare)]),
        "merged_minus_bare_numpy": stats([m - b for m, b in zip(t_merged, bare_np)]),
        "dets_numpy": n_np, "dets_numpy_cap": n_npc, "dets_merged": n_m, "load1": os.getloadavg()[0],
        "onnxruntime": ort.__version__, "numpy_version": np.__version__,
    }
    ms = lambda k: rec[k]["median"] * 1e3  # noqa: E731
    print(f"  {name:<28} {rec['size']:>8}  bare {ms('bare'):8.2f}  +numpy {ms('bare_numpy'):8.2f} ({n_np} dets)"
          f"  +numpy cap {ms('bare_numpy_cap'):8.2f} ({n_npc})  merged {ms('merged'):8.2f} ({n_m} dets)"
          f"  merged/bare {rec['merged']['median'] / rec['bare']['median']:.3f}"
          f"  paired merged-bare {ms('merged_minus_bare'):+.2f} ms", flush=True)
    return rec


def selfcheck(raw_p, dets_p, h, w):
    raw = np.load(raw_p)
    ref = json.load(open(dets_p))
    meta = ref.get("meta", {})
    rows = np.array(ref["dets"] if isinstance(ref, dict) and "dets" in ref else ref, dtype=np.float64)
    nms_thr = float(meta.get("iou_thr", meta.get("nms_thr", 0.45)))
    score_thr = float(meta.get("score_thr", 0.25))
    d = postprocess(raw, "yolox", (h, w), nms_thr, score_thr)
    mine = np.zeros((0, 7)) if d is None else np.concatenate([np.zeros((len(d), 1)), d[:, 5:6], d[:, 4:5], d[:, :4]], 1)
    ok = mine.shape == rows.shape and np.allclose(mine, rows, atol=1e-3)
    print(f"selfcheck: {len(mine)} detections, reference {len(rows)}: {'OK' if ok else 'DIFFERENT'} (nms {nms_thr}, score {score_thr})")
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", nargs=5, action="append", metavar=("NAME", "FAMILY", "BARE", "MERGED", "INPUT"), default=[])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--score", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.40)
    ap.add_argument("--max-per-class", type=int, default=20)
    ap.add_argument("--out")
    ap.add_argument("--selfcheck", nargs=4, metavar=("RAW", "DETS", "H", "W"))
    a = ap.parse_args()
    if a.selfcheck:
        selfcheck(a.selfcheck[0], a.selfcheck[1], int(a.selfcheck[2]), int(a.selfcheck[3]))
    recs = [run_case(*c, a) for c in a.case]
    if a.out:
        with open(a.out, "a") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
