#!/usr/bin/env python3
"""Conformance oracle (CI) for `postmerge merge` and `postmerge set`, run with onnxruntime.

Usage: python tests/oracle/merge_check.py PATH_TO_POSTMERGE_BINARY [--quick] [--keep DIR]

Every merged model is (a) accepted by `onnx.checker.check_model(full_check=True)`, (b) run in
onnxruntime (CPU) with the head tensor exposed as an extra graph output, and (c) its outputs are
compared with an independent numpy implementation of SPEC §2 applied to that very head tensor.
Sections (one output line per case, a closing `N passed, M failed`, exit 1 on any failure):

  1. merge, every model x every layout (+ agnostic and non-default parameter cases)
  2. YOLOX official thresholds (IoU 0.45, no cap) vs shared/ref/<stem>/dets.json, every difference
     explained by the legacy "+1 pixel" IoU of YOLOX's multiclass_nms
  3. --thresholds inputs: defaults when the inputs are omitted, overrides when given
  4. set: retuning our own merge and a YOLOv6/Gold-YOLO --end2end --ort model
  5. batch: a symbolic-batch copy of a raw YOLOX export, merged with every layout, run at batch 2
     and 4 and compared image by image with the batch-1 results

Models: ../shared/models/*.onnx (except `_e2e_ort`, which section 4 uses) with inputs from
../shared/ref/<stem>/, and tests/fixtures/*.onnx with tests/fixtures/ref/<stem>/input.npy (not rich_*).
--quick: only yolox_nano_80c_640x640_op11 and gold_yolo_n_80c_640x640_op13 in sections 1 and 2.
Only onnx, onnxruntime and numpy are used (tests/oracle/requirements.txt).
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
FIXTURES = REPO / "tests" / "fixtures"

LAYOUTS = ["pinto", "pinto-goldyolo", "trt", "ultralytics", "decoded"]
OUTPUT_NAMES = {
    "pinto": ["batchno_classid_score_x1y1x2y2"],
    "pinto-goldyolo": ["batchno_classid_x1y1x2y2_score"],
    "trt": ["num_dets", "det_boxes", "det_scores", "det_classes"],
    "ultralytics": ["output0"],
    "decoded": ["boxes", "scores"],
}
DEFAULTS = {"score": 0.25, "iou": 0.40, "max_per_class": 20, "max_det": 100}
NMS_NODE = "main01_nonmaxsuppression11"
MAX_OUT, IOU_THR, SCORE_THR = "main01_max_output_boxes_per_class", "main01_iou_threshold", "main01_score_threshold"

YOLOX_640 = "yolox_nano_80c_640x640_op11"
GOLD_640 = "gold_yolo_n_80c_640x640_op13"
E2E_ORT = "gold_yolo_n_80c_640x640_op13_e2e_ort"

BOX_ATOL = 1e-3
SCORE_ATOL = 1e-5
HEAD_RTOL = 1e-4


from oracle_common import Failure, Report, need, shared_stems  # noqa: E402 (shared bookkeeping)


# ---------------------------------------------------------------------------------------------
# the models under test
# ---------------------------------------------------------------------------------------------

class Model:
    """One exported detector and its reference data."""

    def __init__(self, path, ref_dir):
        self.path = path
        self.stem = path.stem
        self.ref_dir = ref_dir
        self.x = np.load(ref_dir / "input.npy")
        raw = ref_dir / "raw.npy"
        self.raw = np.load(raw) if raw.exists() else None
        dets = ref_dir / "dets.json"
        self.dets_json = dets if dets.exists() else None
        # Family from the file name (independent of the binary's own recognition, which the
        # oracle cross-checks against `merge --json`).
        if self.stem.startswith("gold"):
            self.kind = "gold-yolo"
        elif "_decode" in self.stem:
            self.kind = "yolox-decoded"
        else:
            self.kind = "yolox-raw"
        m = onnx.load(str(path), load_external_data=False)
        need(len(m.graph.output) == 1, f"{self.stem}: expected one head output")
        self.head_vi = m.graph.output[0]
        self.head_name = self.head_vi.name
        inits = {i.name for i in m.graph.initializer}
        self.input_name = [i.name for i in m.graph.input if i.name not in inits][0]
        self.h, self.w = self.x.shape[2], self.x.shape[3]
        self.opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))

    @property
    def default_layout(self):
        return "pinto-goldyolo" if self.kind == "gold-yolo" else "pinto"


def discover(quick):
    models = []
    # the families postmerge merges (tests/shared_corpus.txt; the others are issue 15)
    for p in [SHARED / "models" / f"{s}.onnx" for s in shared_stems("supported")]:
        ref = SHARED / "ref" / p.stem
        if (ref / "input.npy").exists():
            models.append(Model(p, ref))
    for p in sorted(FIXTURES.glob("*.onnx")):
        ref = FIXTURES / "ref" / p.stem
        if p.stem.startswith("rich_") or not (ref / "input.npy").exists():
            continue
        models.append(Model(p, ref))
    if quick:
        models = [m for m in models if m.stem in (YOLOX_640, GOLD_640)]
    return models


# ---------------------------------------------------------------------------------------------
# numpy reference post-process (SPEC §2), written from the spec, float32 throughout
# ---------------------------------------------------------------------------------------------

def yolox_grid(h, w, strides=(8, 16, 32)):
    """Per-anchor gx, gy, stride (float32 [N]); levels in stride order, each row-major (y, then x)."""
    gx, gy, st = [], [], []
    for s in strides:
        ny, nx = h // s, w // s
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        gx.append(xx.reshape(-1))
        gy.append(yy.reshape(-1))
        st.append(np.full(ny * nx, s))
    return (np.concatenate(gx).astype(np.float32), np.concatenate(gy).astype(np.float32),
            np.concatenate(st).astype(np.float32))


# The appended decode bounds YOLOX log-sizes before exp at ln(K * max(H, W) / stride), K = 4, so no
# box exceeds four times the input's larger side (src/postprocess.rs LOG_SIZE_BOUND_FACTOR has the
# argument why no detection changes), and takes |w|, |h| of decoded heads so x1 <= x2, y1 <= y2.
LOG_SIZE_BOUND_FACTOR = 4.0


def log_size_bound(h, w, stride):
    """float32 bound of the log-size at `stride` (computed in float64, rounded once)."""
    return np.float32(np.log(LOG_SIZE_BOUND_FACTOR * max(h, w) / float(stride)))


def decode(head, kind, h, w, merged=True):
    """head [B,N,5+C] -> boxes [B,N,4] x1y1x2y2 (input pixels), scores [B,N,C] = obj * cls.

    merged=True: what postmerge's graph computes (bounded log-sizes, |w|, |h|); False: the upstream
    projects' own arithmetic (for reproducing their detections)."""
    head = np.asarray(head, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "yolox-raw":
            gx, gy, st = yolox_grid(h, w)
            need(head.shape[1] == gx.shape[0], f"head has N={head.shape[1]} anchors, grid of {h}x{w} gives {gx.shape[0]}")
            bound = (np.array([log_size_bound(h, w, s) for s in st], dtype=np.float32) if merged
                     else np.full(st.shape, np.inf, dtype=np.float32))
            cx = (head[..., 0] + gx) * st
            cy = (head[..., 1] + gy) * st
            bw = np.exp(np.minimum(head[..., 2], bound)) * st
            bh = np.exp(np.minimum(head[..., 3], bound)) * st
        else:  # YOLOX decode_in_inference and Gold-YOLO: columns 0-3 are already cx, cy, w, h
            cx, cy = head[..., 0], head[..., 1]
            bw, bh = head[..., 2], head[..., 3]
            if merged:
                bw, bh = np.abs(bw), np.abs(bh)
        half = np.float32(0.5)
        boxes = np.stack([cx - bw * half, cy - bh * half, cx + bw * half, cy + bh * half], axis=-1)
        scores = head[..., 4:5] * head[..., 5:]
    return boxes.astype(np.float32), scores.astype(np.float32)


def greedy_onnx(boxes, order, iou_thr, cap):
    """ONNX NonMaxSuppression greedy pass over candidates `order` (already sorted) of one image.

    IoU without "+1"; a candidate is suppressed when IoU with an already selected box is strictly
    greater than iou_thr. Float32 arithmetic in onnxruntime's order: coordinates ordered per axis
    (min/max), intersection first (0 when the extents do not overlap), union = area(candidate) +
    area(selected) - intersection. Vectorized: each selected box removes every remaining candidate
    it suppresses at once (equivalent to checking each candidate against all earlier selections,
    IoU being symmetric)."""
    if cap <= 0 or order.size == 0:
        return np.zeros(0, dtype=np.int64)
    b = boxes[order]
    xmin, xmax = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    ymin, ymax = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    with np.errstate(over="ignore", invalid="ignore"):
        area = (xmax - xmin) * (ymax - ymin)
    thr = np.float32(iou_thr)
    rem = np.arange(order.size)
    keep = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while rem.size and len(keep) < cap:
            i = rem[0]
            keep.append(i)
            r = rem[1:]
            ix0, ix1 = np.maximum(xmin[r], xmin[i]), np.minimum(xmax[r], xmax[i])
            iy0, iy1 = np.maximum(ymin[r], ymin[i]), np.minimum(ymax[r], ymax[i])
            inter = (ix1 - ix0) * (iy1 - iy0)
            iou = inter / (area[r] + area[i] - inter)
            sup = (ix1 > ix0) & (iy1 > iy0) & (inter > 0) & (iou > thr)
            rem = r[~sup]
    return order[np.asarray(keep, dtype=np.int64)]


def sort_desc_stable(idx, s):
    """Candidates `idx` (ascending box index) by descending score, lower index first on ties."""
    return idx[np.argsort(-s[idx], kind="stable")]


def nms_ref(boxes, scores, score_thr, iou_thr, max_per_class, agnostic=False):
    """Selections in ONNX NonMaxSuppression output order (image, class, selection order).

    Returns (b, c, i, score) arrays. Class-aware: one pass per class, candidates score > thr
    (strict). Agnostic: one pass per image over each box's max score; class = argmax (first max)."""
    B, N, C = scores.shape
    thr = np.float32(score_thr)
    out_b, out_c, out_i, out_s = [], [], [], []
    for b in range(B):
        if agnostic:
            s = scores[b].max(axis=1)
            cls = scores[b].argmax(axis=1)
            cand = np.flatnonzero(s > thr)
            keep = greedy_onnx(boxes[b], sort_desc_stable(cand, s), iou_thr, max_per_class)
            out_b.append(np.full(keep.size, b))
            out_c.append(cls[keep])
            out_i.append(keep)
            out_s.append(s[keep])
            continue
        mask = scores[b] > thr  # [N, C]
        cs, ns = np.nonzero(mask.T)  # sorted by class, then box index
        bounds = np.searchsorted(cs, np.arange(C + 1))
        for c in range(C):
            cand = ns[bounds[c]:bounds[c + 1]]
            if cand.size == 0:
                continue
            s = scores[b, :, c]
            keep = greedy_onnx(boxes[b], sort_desc_stable(cand, s), iou_thr, max_per_class)
            out_b.append(np.full(keep.size, b))
            out_c.append(np.full(keep.size, c))
            out_i.append(keep)
            out_s.append(s[keep])
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return cat(out_b, np.int64), cat(out_c, np.int64), cat(out_i, np.int64), cat(out_s, np.float32)


def render(layout, boxes, scores, sel, max_det):
    """The expected output tensors of `layout` for selections `sel` (see SPEC §2)."""
    B = boxes.shape[0]
    sb, sc, si, ss = sel
    bx = boxes[sb, si] if sb.size else np.zeros((0, 4), np.float32)
    f = np.float32
    if layout == "pinto":
        return {"batchno_classid_score_x1y1x2y2": np.column_stack([sb.astype(f), sc.astype(f), ss, bx]).astype(f).reshape(-1, 7)}
    if layout == "pinto-goldyolo":
        return {"batchno_classid_x1y1x2y2_score": np.column_stack([sb.astype(f), sc.astype(f), bx, ss]).astype(f).reshape(-1, 7)}
    if layout == "decoded":
        return {"boxes": boxes, "scores": scores}
    K = max_det
    num = np.zeros((B, 1), np.int32)
    dboxes = np.zeros((B, K, 4), f)
    dscores = np.zeros((B, K), f)
    dclasses = np.full((B, K), -1, np.int32)
    for b in range(B):
        rows = np.flatnonzero(sb == b)  # NMS order
        rows = rows[np.argsort(-ss[rows], kind="stable")][:K]  # by score, stable w.r.t. NMS order
        n = rows.size
        num[b, 0] = n
        dboxes[b, :n] = bx[rows]
        dscores[b, :n] = ss[rows]
        dclasses[b, :n] = sc[rows]
    if layout == "trt":
        return {"num_dets": num, "det_boxes": dboxes, "det_scores": dscores, "det_classes": dclasses}
    out = np.zeros((B, K, 6), f)
    for b in range(B):
        n = num[b, 0]
        out[b, :n, 0:4] = dboxes[b, :n]
        out[b, :n, 4] = dscores[b, :n]
        out[b, :n, 5] = dclasses[b, :n]
    return {"output0": out}


# Which columns of each output are boxes / scores / exact integers.
def column_roles(layout, name):
    if layout == "pinto":
        return {"exact": [0, 1], "score": [2], "box": [3, 4, 5, 6]}
    if layout == "pinto-goldyolo":
        return {"exact": [0, 1], "score": [6], "box": [2, 3, 4, 5]}
    if layout == "ultralytics":
        return {"exact": [5], "score": [4], "box": [0, 1, 2, 3]}
    return {"num_dets": "exact", "det_classes": "exact", "det_boxes": "box", "det_scores": "score",
            "boxes": "box", "scores": "score"}[name]


def box_tol(expected):
    """Tolerance per box: 1e-3 px, or 4 float32 ulps of the box's largest |coordinate| if larger.

    Junk anchors of raw YOLOX heads can have log-sizes whose exp() explodes: in
    yolox_nano_3c_640x640_op11_shapes 33 boxes (all with scores ~0) reach |coordinate| > 8192 px,
    up to 3e36, and one is inf. onnxruntime's Exp (MLAS) and numpy's exp may differ by an ulp,
    and the float32 spacing there is far above 1e-3 px (ulp(8192) = 1e-3, ulp(1e6) = 0.06).
    The error of x1 = cx - w/2 is a few ulps of |w/2|, which can be much larger than |x1| itself
    when cx and w/2 nearly cancel; max(|x1|, |x2|) >= w/2 bounds it, hence the largest |coordinate|
    of the same box."""
    mag = np.max(np.abs(expected), axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        ulp4 = 4 * np.spacing(np.where(np.isfinite(mag), mag, 0).astype(np.float32))
    return np.maximum(BOX_ATOL, ulp4)


class Stats:
    def __init__(self):
        self.box = 0.0  # px, over coordinates judged by the 1e-3 px rule
        self.box_ulp = None  # ulps (of the box's largest |coordinate|), over the huge ones
        self.score = 0.0

    def __str__(self):
        huge = "" if self.box_ulp is None else f" ({self.box_ulp:.1f} ulp on huge boxes)"
        return f"max|Δbox| {self.box:.1e}{huge} max|Δscore| {self.score:.1e}"


def first_bad(bad):
    return tuple(int(v) for v in np.argwhere(bad)[0])


def compare_outputs(layout, actual, expected, stats, what=""):
    """Compare one layout's outputs; raise Failure naming the first differing row."""
    for name, exp in expected.items():
        need(name in actual, f"{what}output {name} missing (have {sorted(actual)})")
        act = actual[name]
        need(act.dtype == exp.dtype, f"{what}{name}: dtype {act.dtype}, expected {exp.dtype}")
        if act.shape != exp.shape:
            hint = row_diff_hint(layout, act, exp) if layout in ("pinto", "pinto-goldyolo") and act.ndim == 2 else ""
            raise Failure(f"{what}{name}: shape {list(act.shape)}, expected {list(exp.shape)}{hint}")
        roles = column_roles(layout, name)
        if isinstance(roles, dict):  # row-wise layouts: [..., cols]
            def cols(a, k):
                return a[..., roles[k]]
            bad = cols(act, "exact") != cols(exp, "exact")
            if bad.any():
                idx = first_bad(bad)[:-1]
                raise Failure(f"{what}{name} row {idx}: batch/class differ: expected {exp[idx].tolist()}, actual {act[idx].tolist()}")
            eb, ab = cols(exp, "box"), cols(act, "box")
            check_boxes(name, ab, eb, exp, act, stats, what)
            check_scores(name, cols(act, "score"), cols(exp, "score"), exp, act, stats, what, row_axis_drop=1)
        elif roles == "exact":
            bad = act != exp
            if bad.any():
                idx = first_bad(bad)
                raise Failure(f"{what}{name}{list(idx)}: expected {exp[idx]}, actual {act[idx]}")
        elif roles == "box":
            check_boxes(name, act, exp, exp, act, stats, what)
        else:
            check_scores(name, act, exp, exp, act, stats, what, row_axis_drop=0)


def row_diff_hint(layout, act, exp):
    """For [N,7] layouts of different lengths: where the row lists first differ."""
    r = column_roles(layout, "")
    n = min(len(act), len(exp))
    for k in range(n):
        same = (act[k, r["exact"]] == exp[k, r["exact"]]).all() and abs(act[k, r["score"][0]] - exp[k, r["score"][0]]) <= SCORE_ATOL
        if not same:
            return f"; first differing row {k}: expected {exp[k].tolist()}, actual {act[k].tolist()}"
    extra = act[n] if len(act) > n else exp[n]
    return f"; rows agree up to {n}, then {'actual' if len(act) > n else 'expected'} has row {extra.tolist()}"


def check_boxes(name, a, e, exp_full, act_full, stats, what):
    tol = box_tol(e)
    with np.errstate(invalid="ignore"):
        d = np.abs(a.astype(np.float64) - e.astype(np.float64))
        ok = (d <= tol) | (a == e) | (np.isnan(a) & np.isnan(e))
    if not ok.all():
        idx = first_bad(~ok)
        row = idx[:-1]
        raise Failure(f"{what}{name}{list(row)} box differs: expected {exp_full[row].tolist()}, actual {act_full[row].tolist()}"
                      f" (|Δ| {d[idx]:.3g} > tol {tol[row][0]:.3g})")
    tol = np.broadcast_to(tol, d.shape)
    small = np.isfinite(d) & (tol == BOX_ATOL)
    if small.any():
        stats.box = max(stats.box, float(d[small].max()))
    huge = np.isfinite(d) & (tol > BOX_ATOL)
    if huge.any():
        ulps = d[huge] / (tol[huge] / 4)
        stats.box_ulp = max(stats.box_ulp or 0.0, float(ulps.max()))


def check_scores(name, a, e, exp_full, act_full, stats, what, row_axis_drop):
    d = np.abs(a.astype(np.float64) - e.astype(np.float64))
    ok = (d <= SCORE_ATOL) | (a == e)
    if not ok.all():
        idx = first_bad(~ok)
        row = idx[:-1] if row_axis_drop else idx
        raise Failure(f"{what}{name}{list(row)} score differs: expected {exp_full[row].tolist()}, actual {act_full[row].tolist()}")
    if d.size:
        stats.score = max(stats.score, float(np.nanmax(d)))


def count_rows(layout, outs):
    if layout in ("pinto", "pinto-goldyolo"):
        return int(outs[OUTPUT_NAMES[layout][0]].shape[0])
    if layout == "trt":
        return int(outs["num_dets"].sum())
    if layout == "ultralytics":
        return int((outs["output0"][..., 4] > 0).sum())
    return int(outs["scores"].size)


# ---------------------------------------------------------------------------------------------
# running the binary and onnxruntime
# ---------------------------------------------------------------------------------------------

class Tool:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = pathlib.Path(tmp)
        self.n = 0

    def out_path(self, tag):
        self.n += 1
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tag)
        return self.tmp / f"{self.n:03d}_{safe}.onnx"

    def run(self, args, tag):
        out = self.out_path(tag)
        cmd = [self.binary, *[str(a) for a in args[:2]], "-o", str(out), "--json", *[str(a) for a in args[2:]]]
        r = subprocess.run(cmd, capture_output=True, text=True)
        need(r.returncode == 0, f"`{' '.join(cmd[1:])}` exited {r.returncode}: {r.stderr.strip()[-500:]}")
        try:
            info = json.loads(r.stdout)
            # `merge --json` prints one object per written file: [{"output": ..., "merge": {...}}]
            if isinstance(info, list):
                info = info[0].get("merge", info[0]) if info else {}
        except json.JSONDecodeError:
            info = None
        return out, info

    def merge(self, model, args, tag):
        return self.run(["merge", model.path, *args], tag)

    def set(self, path, args, tag):
        return self.run(["set", path, *args], tag)


def checker(path):
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise Failure(f"onnx.checker(full_check) rejects {path.name}: {str(e).splitlines()[0][:300]}")


def session_bytes(model_proto):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model_proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def with_extra_outputs(path, extra):
    """A copy of the model (in memory) that also outputs the tensors in `extra` (ValueInfoProtos)."""
    m = onnx.load(str(path))
    produced = {o for n in m.graph.node for o in n.output}
    have = {o.name for o in m.graph.output}
    for vi in extra:
        need(vi.name in produced, f"tensor {vi.name} is not produced by any node of {path.name}")
        if vi.name not in have:
            m.graph.output.append(vi)
    return m


def run(sess, feeds):
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def head_vs_raw(model, head):
    """The head tensor inside the merged model vs the stored onnxruntime output (raw.npy)."""
    if model.raw is None:
        return "no raw.npy"
    need(head.shape == model.raw.shape, f"head {list(head.shape)} vs raw.npy {list(model.raw.shape)}")
    scale = float(np.max(np.abs(model.raw)))
    d = float(np.max(np.abs(head.astype(np.float64) - model.raw)))
    need(d <= HEAD_RTOL * scale, f"head tensor differs from raw.npy by {d:.3g} > {HEAD_RTOL:g} x {scale:.3g}")
    return f"head vs raw.npy {d:.1e}"


def args_of(p):
    """CLI arguments for a parameter dict."""
    a = []
    if "layout" in p:
        a += ["--layout", p["layout"]]
    for k, flag in (("score", "--score"), ("iou", "--iou"), ("max_per_class", "--max-per-class"), ("max_det", "--max-det")):
        if k in p:
            a += [flag, p[k]]
    if p.get("agnostic"):
        a.append("--agnostic")
    if "opset" in p:
        a += ["--opset", p["opset"]]
    return a


def params_of(p):
    q = dict(DEFAULTS)
    q.update({k: v for k, v in p.items() if k in DEFAULTS})
    return q


# ---------------------------------------------------------------------------------------------
# section 1: merge x layouts
# ---------------------------------------------------------------------------------------------

CASES = [{"layout": lay} for lay in LAYOUTS] + [
    {"layout": "pinto", "agnostic": True},
    {"layout": "trt", "score": 0.3, "iou": 0.5, "max_per_class": 5, "max_det": 30},
    {"layout": "ultralytics", "agnostic": True, "max_det": 10},
]
# Models below opset 12 also get the ultralytics layout at --opset 12 (Max on int32 needs opset 12;
# this isolates that typing problem from the layout's numbers).
ULTRA_OPSET12 = {"layout": "ultralytics", "opset": 12}


def cases_for(model):
    return CASES + ([ULTRA_OPSET12] if model.opset < 12 else [])


def case_tag(p):
    extra = " ".join(f"{k}={v}" for k, v in p.items() if k != "layout")
    return p.get("layout", "default") + (f" {extra}" if extra else "")


class Ctx:
    def __init__(self, tool, keep_sessions):
        self.tool = tool
        self.keep_sessions = keep_sessions
        self.sessions = {}  # (stem, case tag) -> (session, merged path) for the models reused later
        self.results = {}  # (stem, case tag) -> outputs
        self.refcache = {}


def merged_case(ctx, model, p, stats):
    """Merge `model` with parameters p, check it, run it, compare with the reference. Returns detail."""
    layout = p["layout"]
    tag = case_tag(p)
    path, info = ctx.tool.merge(model, args_of(p), f"{model.stem}_{tag}")
    if info is not None:
        need(info.get("family") == model.kind, f"binary recognized family {info.get('family')}, oracle expects {model.kind}")
        need(info.get("layout") == layout, f"--json says layout {info.get('layout')}")
        need(info.get("outputs") == OUTPUT_NAMES[layout], f"--json outputs {info.get('outputs')}")
    checker(path)
    sess = session_bytes(with_extra_outputs(path, [model.head_vi]))
    outs = run(sess, {model.input_name: model.x})
    need(sorted(outs) == sorted(OUTPUT_NAMES[layout] + [model.head_name]),
         f"graph outputs {sorted(outs)}, expected {OUTPUT_NAMES[layout]}")
    head = outs.pop(model.head_name)
    raw_note = head_vs_raw(model, head)
    q = params_of(p)
    boxes, scores = decode(head, model.kind, model.h, model.w)
    sel = nms_ref(boxes, scores, q["score"], q["iou"], q["max_per_class"], p.get("agnostic", False))
    expected = render(layout, boxes, scores, sel, q["max_det"])
    key = (model.stem, tag)
    ctx.results[key] = outs
    if model.stem in ctx.keep_sessions:
        ctx.sessions[key] = (sess, path)
    compare_outputs(layout, outs, expected, stats)
    n = count_rows(layout, outs)
    what = f"{n} values" if layout == "decoded" else f"{n} dets (NMS selected {sel[0].size})"
    return f"{what}; {stats}; {raw_note}"


def section_merge(rep, ctx, models):
    print("== 1. merge: every model x every layout vs the numpy reference", flush=True)
    for model in models:
        for p in cases_for(model):
            stats = Stats()
            rep.case(f"merge {model.stem} [{case_tag(p)}]", lambda m=model, p=p, s=stats: merged_case(ctx, m, p, s))

        def default_layout(model=model):
            path, info = ctx.tool.merge(model, [], f"{model.stem}_default")
            names = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
            need(names == OUTPUT_NAMES[model.default_layout], f"default layout outputs {names}, expected {OUTPUT_NAMES[model.default_layout]}")
            g = onnx.load(str(path), load_external_data=False).graph
            nms = [n for n in g.node if n.op_type == "NonMaxSuppression"]
            need(len(nms) == 1 and nms[0].name == NMS_NODE, f"NMS node names {[n.name for n in nms]}")
            inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
            for name, dt, val in ((MAX_OUT, np.int64, 20), (IOU_THR, np.float32, 0.4), (SCORE_THR, np.float32, 0.25)):
                need(name in inits, f"initializer {name} missing")
                a = inits[name]
                need(a.dtype == dt and a.shape == (1,) and a[0] == dt(val), f"{name} = {a!r}, expected {dt.__name__}[1] [{val}]")
            need(list(nms[0].input[2:5]) == [MAX_OUT, IOU_THR, SCORE_THR], f"NMS inputs {list(nms[0].input)}")
            return f"{model.default_layout}, {NMS_NODE}, PINTO-named constants 20/0.4/0.25"
        rep.case(f"merge {model.stem} [default layout + names]", default_layout)


# ---------------------------------------------------------------------------------------------
# section 2: official YOLOX detections (dets.json) and the legacy +1 IoU
# ---------------------------------------------------------------------------------------------

def yolox_legacy_nms(boxes, scores, nms_thr, plus_one=True):
    """yolox/utils/demo_utils.py::nms, transcribed (numpy, legacy '+1 pixel' widths/areas).

    plus_one=False is the same code without the +1 (used to show that the +1 is the only
    difference between the official path and ONNX NonMaxSuppression)."""
    one = 1 if plus_one else 0
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        areas = (x2 - x1 + one) * (y2 - y1 + one)
        order = scores.argsort()[::-1]
        keep = []
        while order.size > 0:
            i = order[0]
            keep.append(i)
            xx1 = np.maximum(x1[i], x1[order[1:]])
            yy1 = np.maximum(y1[i], y1[order[1:]])
            xx2 = np.minimum(x2[i], x2[order[1:]])
            yy2 = np.minimum(y2[i], y2[order[1:]])
            w = np.maximum(0.0, xx2 - xx1 + one)
            h = np.maximum(0.0, yy2 - yy1 + one)
            inter = w * h
            ovr = inter / (areas[i] + areas[order[1:]] - inter)
            inds = np.where(ovr <= nms_thr)[0]
            order = order[inds + 1]
    return keep


def yolox_multiclass_nms(boxes, scores, nms_thr, score_thr, plus_one=True):
    """multiclass_nms_class_aware: per class, score > thr, legacy NMS; returns [(class, box index)]."""
    sel = []
    for c in range(scores.shape[1]):
        cls_scores = scores[:, c]
        mask = cls_scores > score_thr
        if mask.sum() == 0:
            continue
        idx = np.flatnonzero(mask)
        keep = yolox_legacy_nms(boxes[mask], cls_scores[mask], nms_thr, plus_one)
        sel += [(c, int(idx[k])) for k in keep]
    return sel


def rows_of(sel, boxes, scores):
    """[batch 0, class, score, x1..y2] rows for (class, index) selections."""
    return np.array([[0, c, scores[i, c], *boxes[i]] for c, i in sel], dtype=np.float64).reshape(-1, 7)


def rows_close(a, b):
    return a[1] == b[1] and abs(a[2] - b[2]) <= SCORE_ATOL and np.all(np.abs(a[3:] - b[3:]) <= BOX_ATOL)


def official_case(ctx, model):
    path, _ = ctx.tool.merge(model, ["--layout", "pinto", "--iou", 0.45, "--max-per-class", 100000], f"{model.stem}_official")
    checker(path)
    sess = session_bytes(with_extra_outputs(path, [model.head_vi]))
    outs = run(sess, {model.input_name: model.x})
    head = outs.pop(model.head_name)
    head_vs_raw(model, head)
    actual = outs["batchno_classid_score_x1y1x2y2"]
    # (a) conformance: the merged model is ONNX NMS on its own head tensor
    boxes, scores = decode(head, model.kind, model.h, model.w)
    sel = nms_ref(boxes, scores, 0.25, 0.45, 100000)
    compare_outputs("pinto", outs, render("pinto", boxes, scores, sel, 100), Stats())
    onnx_sel = [(int(c), int(i)) for c, i in zip(sel[1], sel[2])]
    # (b) the official path reproduced: legacy +1 NMS on raw.npy (what dets.json was computed from)
    d = json.loads(model.dets_json.read_text())
    dets = np.array(d["dets"], dtype=np.float64).reshape(-1, 7)
    need(d["meta"]["iou_thr"] == 0.45 and d["meta"]["score_thr"] == 0.25, f"dets.json meta thresholds {d['meta']}")
    rb, rs = decode(model.raw[0:1], model.kind, model.h, model.w, merged=False)
    rb, rs = rb[0], rs[0]
    legacy = yolox_multiclass_nms(rb, rs, 0.45, 0.25, plus_one=True)
    # the merged graph's bounded decode changes no official detection either
    mb, ms = decode(model.raw[0:1], model.kind, model.h, model.w)
    need(yolox_multiclass_nms(mb[0], ms[0], 0.45, 0.25, plus_one=True) == legacy,
         "the bounded decode changes the official (legacy +1) detections")
    leg_rows = rows_of(legacy, rb, rs)
    need(leg_rows.shape == dets.shape, f"legacy +1 NMS gives {len(leg_rows)} rows, dets.json has {len(dets)}")
    for k in range(len(dets)):
        need(rows_close(leg_rows[k], dets[k]) and leg_rows[k][0] == dets[k][0],
             f"legacy +1 NMS row {k} {leg_rows[k].tolist()} != dets.json {dets[k].tolist()}")
    # the same transcription without +1 selects exactly what ONNX NMS selects (per class, as sets):
    # so the +1 is the only difference between the two paths
    noplus = yolox_multiclass_nms(rb, rs, 0.45, 0.25, plus_one=False)
    need(set(noplus) == set(onnx_sel),
         f"legacy NMS without +1 differs from ONNX NMS beyond the +1: {sorted(set(noplus) ^ set(onnx_sel))[:5]}")
    # (c) pinto output vs dets.json, row matching per class by value
    act = actual.astype(np.float64)
    unmatched_dets = list(range(len(dets)))
    by_class = {}
    for k in unmatched_dets:
        by_class.setdefault(int(dets[k][1]), []).append(k)
    equal, only_onnx = 0, []
    for r in range(len(act)):
        cands = by_class.get(int(act[r][1]), [])
        hit = next((k for k in cands if rows_close(act[r], dets[k])), None)
        if hit is None:
            only_onnx.append(r)
        else:
            cands.remove(hit)
            equal += 1
    only_dets = sorted(k for ks in by_class.values() for k in ks)
    # explanation: classes whose ONNX and legacy (+1) selections differ
    legacy_set, onnx_set = set(legacy), set(onnx_sel)
    diff_classes = {c for c, _ in legacy_set ^ onnx_set}
    explained = 0
    unexplained = []
    for r in only_onnx:  # row r of the output is selection r of the ONNX reference
        c, i = onnx_sel[r]
        if c in diff_classes and (c, i) in onnx_set - legacy_set:
            explained += 1
        else:
            unexplained.append(f"output row {r} {actual[r].tolist()}")
    for k in only_dets:  # row k of dets.json is selection k of the legacy reproduction
        c, i = legacy[k]
        if c in diff_classes and (c, i) in legacy_set - onnx_set:
            explained += 1
        else:
            unexplained.append(f"dets.json row {k} {dets[k].tolist()}")
    differing = len(only_onnx) + len(only_dets)
    need(not unexplained, f"{len(unexplained)} differing rows not explained by +1 IoU: {unexplained[:3]}")
    need(equal + len(only_onnx) == len(act) and equal + len(only_dets) == len(dets), "row bookkeeping")
    return (f"ONNX {len(act)} rows, dets.json {len(dets)} (legacy +1 reproduces {len(dets)}/{len(dets)}); "
            f"equal {equal}, differing {differing} ({len(only_onnx)} only ONNX, {len(only_dets)} only official), "
            f"explained {explained}, in {len(diff_classes)} classes where +1 changes NMS")


def section_official(rep, ctx, models):
    print("== 2. YOLOX official thresholds vs dets.json (legacy +1-pixel IoU)", flush=True)
    for model in models:
        if model.kind == "gold-yolo" or model.dets_json is None or model.raw is None:
            continue
        rep.case(f"official {model.stem} [pinto iou=0.45 max=100000]", lambda m=model: official_case(ctx, m))


# ---------------------------------------------------------------------------------------------
# section 3: --thresholds inputs
# ---------------------------------------------------------------------------------------------

def thresholds_inputs(rep, ctx, model, p):
    layout = p["layout"]
    q = params_of(p)
    tag = f"{model.stem} [{case_tag(p)} thresholds=inputs]"
    state = {}

    def build():
        path, _ = ctx.tool.merge(model, args_of(p) + ["--thresholds", "inputs"], f"{model.stem}_inputs")
        checker(path)
        m = onnx.load(str(path))
        ins = {i.name: i for i in m.graph.input}
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        for name, et, dt, val in ((MAX_OUT, TensorProto.INT64, np.int64, q["max_per_class"]),
                                  (IOU_THR, TensorProto.FLOAT, np.float32, q["iou"]),
                                  (SCORE_THR, TensorProto.FLOAT, np.float32, q["score"])):
            need(name in ins, f"graph input {name} missing (inputs {list(ins)})")
            tt = ins[name].type.tensor_type
            need(tt.elem_type == et and [d.dim_value for d in tt.shape.dim] == [1], f"input {name}: {tt}")
            need(name in inits and inits[name].shape == (1,) and inits[name][0] == dt(val),
                 f"initializer {name} = {inits.get(name)!r}, expected [{val}]")
        state["sess"] = session_bytes(with_extra_outputs(path, [model.head_vi]))
        outs = run(state["sess"], {model.input_name: model.x})
        state["head"] = outs.pop(model.head_name)
        state["boxes"], state["scores"] = decode(state["head"], model.kind, model.h, model.w)
        sel = nms_ref(state["boxes"], state["scores"], q["score"], q["iou"], q["max_per_class"], p.get("agnostic", False))
        compare_outputs(layout, outs, render(layout, state["boxes"], state["scores"], sel, q["max_det"]), Stats())
        state["default"] = outs
        state["n0"] = sel[0].size
        note = ""
        const = ctx.results.get((model.stem, case_tag(p)))
        if const is not None:
            for k, v in const.items():
                need(np.array_equal(v, outs[k]), f"{k}: inputs-omitted run differs from the const merge")
            note = ", identical to the const merge"
        return f"inputs + default initializers {q['max_per_class']}/{q['iou']}/{q['score']}; omitted -> {count_rows(layout, outs)} dets{note}"

    if rep.case(f"thresholds {tag} omitted", build) is None:
        return

    def given(over):
        def fn():
            feeds = {model.input_name: model.x}
            r = dict(q)
            if "score" in over:
                feeds[SCORE_THR] = np.array([over["score"]], np.float32)
                r["score"] = over["score"]
            if "iou" in over:
                feeds[IOU_THR] = np.array([over["iou"]], np.float32)
                r["iou"] = over["iou"]
            if "max_per_class" in over:
                feeds[MAX_OUT] = np.array([over["max_per_class"]], np.int64)
                r["max_per_class"] = over["max_per_class"]
            outs = run(state["sess"], feeds)
            head = outs.pop(model.head_name)
            need(np.array_equal(head, state["head"]), "head tensor changed between runs")
            sel = nms_ref(state["boxes"], state["scores"], r["score"], r["iou"], r["max_per_class"], p.get("agnostic", False))
            compare_outputs(layout, outs, render(layout, state["boxes"], state["scores"], sel, q["max_det"]), Stats())
            n0, n = state["n0"], sel[0].size
            props = []
            if set(over) == {"score"} and over["score"] > q["score"]:
                # raising only the score threshold cuts the tail of the greedy order: the result is
                # the default result minus its rows with score <= the new threshold
                t = np.float32(over["score"])
                d0 = state["default"]
                keep0 = default_scores(layout, d0) > t
                need((sel[3] > t).all(), "a selected score is not above the new threshold")
                need(n == int(keep0.sum()), f"{n} dets, but the default run has {int(keep0.sum())} with score > {t}")
                if not keep0.all():
                    need(n < n0, f"score {over['score']}: {n} dets, not fewer than {n0}")
                props.append(f"{'fewer' if n < n0 else 'same (all default dets were above it)'} ({n} vs {n0}), "
                             f"all > {over['score']}, = default rows above it")
            if "iou" in over and over["iou"] < q["iou"]:
                need(n <= n0, f"iou {over['iou']}: {n} dets > {n0}")
                props.append(f"fewer or equal ({n} <= {n0})")
            if "max_per_class" in over:
                pairs = np.stack([sel[0], sel[1]], 1)
                _, counts = np.unique(pairs, axis=0, return_counts=True)
                need(counts.size == 0 or counts.max() <= over["max_per_class"], f"a class has {counts.max()} dets")
                props.append(f"<= {over['max_per_class']} per class and image ({n} dets)")
            return f"{over} -> matches reference; " + "; ".join(props)
        return fn

    for over in ({"score": 0.5}, {"iou": 0.2}, {"max_per_class": 1}, {"score": 0.3, "iou": 0.6, "max_per_class": 3}):
        rep.case(f"thresholds {tag} given {over}", given(over))


def default_scores(layout, outs):
    """Scores of the valid detections of a run, in output order."""
    if layout == "pinto":
        return outs["batchno_classid_score_x1y1x2y2"][:, 2]
    if layout == "pinto-goldyolo":
        return outs["batchno_classid_x1y1x2y2_score"][:, 6]
    if layout == "trt":
        return np.concatenate([outs["det_scores"][b, :n] for b, n in enumerate(outs["num_dets"][:, 0])])
    o = outs["output0"]
    return o[..., 4][o[..., 4] > 0]


def section_thresholds(rep, ctx, by_stem):
    print("== 3. --thresholds inputs", flush=True)
    if YOLOX_640 in by_stem:
        thresholds_inputs(rep, ctx, by_stem[YOLOX_640], {"layout": "pinto"})
        thresholds_inputs(rep, ctx, by_stem[YOLOX_640], {"layout": "trt"})
    if GOLD_640 in by_stem:
        thresholds_inputs(rep, ctx, by_stem[GOLD_640], {"layout": "pinto-goldyolo"})
        thresholds_inputs(rep, ctx, by_stem[GOLD_640], {"layout": "ultralytics", "score": 0.3, "iou": 0.5, "max_per_class": 7, "agnostic": True})


# ---------------------------------------------------------------------------------------------
# section 4: set
# ---------------------------------------------------------------------------------------------

def strip_params(m, names):
    """A copy of model m with the given initializers / Constant values blanked, for 'nothing else changed'."""
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    del m2.metadata_props[:]  # `set` records the new parameters in metadata (checked separately)
    for t in m2.graph.initializer:
        if t.name in names:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.ClearField("int64_data")
    for n in m2.graph.node:
        if n.op_type == "Constant" and n.output[0] in names:
            for a in n.attribute:
                a.t.ClearField("raw_data")
                a.t.ClearField("float_data")
                a.t.ClearField("int64_data")
    return m2


def section_set(rep, ctx, by_stem):
    print("== 4. set", flush=True)
    model = by_stem.get(YOLOX_640)
    if model is not None:
        state = {}

        def base():
            path, _ = ctx.tool.merge(model, ["--layout", "pinto"], f"{model.stem}_setbase")
            state["path"] = path
            sess = session_bytes(with_extra_outputs(path, [model.head_vi]))
            outs = run(sess, {model.input_name: model.x})
            head = outs.pop(model.head_name)
            state["boxes"], state["scores"] = decode(head, model.kind, model.h, model.w)
            state["rows"] = outs["batchno_classid_score_x1y1x2y2"]
            sel = nms_ref(state["boxes"], state["scores"], 0.25, 0.4, 20)
            compare_outputs("pinto", outs, render("pinto", state["boxes"], state["scores"], sel, 100), Stats())
            return f"pinto merge, {len(state['rows'])} rows"

        if rep.case(f"set {model.stem} [base pinto merge]", base) is not None:
            def retune(args, r, expect_rows, what):
                def fn():
                    out, info = ctx.tool.set(state["path"], args, f"{model.stem}_set")
                    checker(out)
                    a, b = onnx.load(str(state["path"])), onnx.load(str(out))
                    need(strip_params(a, {MAX_OUT, IOU_THR, SCORE_THR}) == strip_params(b, {MAX_OUT, IOU_THR, SCORE_THR}),
                         "set changed more than the NMS parameter initializers")
                    inits = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
                    need(inits[SCORE_THR][0] == np.float32(r["score"]) and inits[IOU_THR][0] == np.float32(r["iou"])
                         and inits[MAX_OUT][0] == r["max_per_class"], f"initializers after set: {[inits[k] for k in (MAX_OUT, IOU_THR, SCORE_THR)]}")
                    meta = {e.key: e.value for e in b.metadata_props}.get("postmerge.merge")
                    if meta is not None:
                        want = f"score={r['score']}; iou={r['iou']}; max_per_class={r['max_per_class']}"
                        need(want in meta, f"metadata postmerge.merge not updated: {meta!r}")
                    sess = session_bytes(b)
                    rows = run(sess, {model.input_name: model.x})["batchno_classid_score_x1y1x2y2"]
                    sel = nms_ref(state["boxes"], state["scores"], r["score"], r["iou"], r["max_per_class"])
                    compare_outputs("pinto", {"batchno_classid_score_x1y1x2y2": rows},
                                    render("pinto", state["boxes"], state["scores"], sel, 100), Stats())
                    exp = expect_rows(state["rows"])
                    need(rows.shape == exp.shape and np.array_equal(rows, exp),
                         f"{len(rows)} rows, expected the {len(exp)} {what}")
                    need(len(rows) < len(state["rows"]), f"{len(rows)} rows, not fewer than {len(state['rows'])}")
                    return f"{len(rows)} rows (< {len(state['rows'])}) = {what} = reference; only the initializers changed"
                return fn

            def above(rows, t=np.float32(0.5)):
                return rows[rows[:, 2] > t]

            def first_k(rows, k=3):
                keep = np.zeros(len(rows), bool)
                seen = {}
                for r in range(len(rows)):
                    key = (rows[r, 0], rows[r, 1])
                    seen[key] = seen.get(key, 0) + 1
                    keep[r] = seen[key] <= k
                return rows[keep]

            rep.case(f"set {model.stem} [--score 0.5]",
                     retune(["--score", 0.5], {"score": 0.5, "iou": 0.4, "max_per_class": 20}, above, "original rows with score > 0.5"))
            rep.case(f"set {model.stem} [--max-per-class 3]",
                     retune(["--max-per-class", 3], {"score": 0.25, "iou": 0.4, "max_per_class": 3}, first_k,
                            "first 3 original rows of each class"))

    e2e = SHARED / "models" / f"{E2E_ORT}.onnx"
    ref = SHARED / "ref" / E2E_ORT
    if e2e.exists():
        rep.case(f"set {E2E_ORT} [--score 0.5 --iou 0.3 --max-per-class 10]", lambda: set_e2e(ctx, e2e, ref))


def set_e2e(ctx, path, ref):
    x = np.load(ref / "input.npy")
    out, info = ctx.tool.set(path, ["--score", 0.5, "--iou", 0.3, "--max-per-class", 10], f"{E2E_ORT}_set")
    checker(out)
    results = {}
    for tag, p, (mx, iou, sc) in (("orig", path, (100, 0.45, 0.25)), ("set", out, (10, 0.3, 0.5))):
        m = onnx.load(str(p))
        nms = [n for n in m.graph.node if n.op_type == "NonMaxSuppression"]
        need(len(nms) == 1, f"{tag}: {len(nms)} NonMaxSuppression nodes")
        # expose NMS's own inputs (boxes [B,N,4] x1y1x2y2, scores [B,C,N]) to check its selections
        extra = [helper.make_tensor_value_info(nms[0].input[0], TensorProto.FLOAT, None),
                 helper.make_tensor_value_info(nms[0].input[1], TensorProto.FLOAT, None)]
        outs = run(session_bytes(with_extra_outputs(p, extra)), {m.graph.input[0].name: x})
        boxes, scores_bcn = outs.pop(nms[0].input[0]), outs.pop(nms[0].input[1])
        n = int(outs["num_dets"][0, 0])
        sel = nms_ref(boxes, np.ascontiguousarray(scores_bcn.transpose(0, 2, 1)), sc, iou, mx)
        exp = sorted(zip(sel[1].tolist(), sel[3].tolist()))
        got = sorted(zip(outs["det_classes"][0, :n].tolist(), outs["det_scores"][0, :n].tolist()))
        need(len(exp) == len(got) and all(a[0] == b[0] and abs(a[1] - b[1]) <= SCORE_ATOL for a, b in zip(exp, got)),
             f"{tag}: {n} dets; NMS reference with {mx}/{iou}/{sc} selects {len(exp)} (class, score) pairs that differ")
        results[tag] = (n, outs)
    n0, o0 = results["orig"]
    n1, o1 = results["set"]
    raw_n = np.load(ref / "raw_num_dets.npy")
    need(n0 == int(raw_n[0, 0]), f"original num_dets {n0} != raw_num_dets.npy {raw_n[0, 0]}")
    need(n1 < n0, f"num_dets {n1} not below {n0}")
    s = o1["det_scores"][0, :n1]
    need((s > np.float32(0.5)).all(), f"a valid det_score <= 0.5: {s.min()}")
    cls, counts = np.unique(o1["det_classes"][0, :n1], return_counts=True)
    need(counts.size == 0 or counts.max() <= 10, f"class {cls[counts.argmax()]} has {counts.max()} dets")
    return (f"num_dets {n0} -> {n1}, all scores > 0.5, max per class {counts.max() if counts.size else 0} <= 10, "
            f"both runs = NMS reference on the graph's own NMS inputs")


# ---------------------------------------------------------------------------------------------
# section 5: batch (symbolic batch dim)
# ---------------------------------------------------------------------------------------------

def section_batch(rep, ctx, by_stem):
    print("== 5. batch: symbolic-batch copy of a raw YOLOX export", flush=True)
    model = by_stem.get(YOLOX_640)
    if model is None:
        return
    state = {}

    def build():
        m = onnx.load(str(model.path))
        for vi in list(m.graph.input) + list(m.graph.output):
            if vi.name == model.input_name or vi.name == model.head_name:
                vi.type.tensor_type.shape.dim[0].ClearField("dim_value")
                vi.type.tensor_type.shape.dim[0].dim_param = "batch"
        del m.graph.value_info[:]
        path = ctx.tool.out_path(f"{model.stem}_symbatch")
        onnx.save(m, str(path))
        checker(path)
        state["path"] = path
        head_vi = [o for o in m.graph.output if o.name == model.head_name][0]
        state["head_vi"] = head_vi
        x2 = np.concatenate([model.x, np.ascontiguousarray(model.x[..., ::-1])])
        state["x"] = {2: x2, 4: np.concatenate([model.x] * 4)}
        h = run(session_bytes(m), {model.input_name: x2})[model.head_name]
        need(h.shape == (2,) + model.raw.shape[1:], f"batch-2 head shape {h.shape}")
        d = float(np.max(np.abs(h[0:1] - model.raw)))
        need(d <= HEAD_RTOL * float(np.max(np.abs(model.raw))), f"batch-2 image 0 head differs from raw.npy by {d}")
        return f"input/output batch dim 'batch'; runs at batch 2 -> {list(h.shape)}, image 0 vs raw.npy {d:.1e}"

    if rep.case(f"batch {model.stem} [symbolic copy]", build) is None:
        return
    x_flip = np.ascontiguousarray(model.x[..., ::-1])
    for p in CASES[:6] + ([ULTRA_OPSET12] if model.opset < 12 else []):
        rep.case(f"batch {model.stem} [{case_tag(p)}]", lambda p=p: batch_case(ctx, model, state, p, x_flip))


def split_per_image(layout, outs, b):
    """Image b's part of the outputs, in the batch-1 form."""
    if layout in ("pinto", "pinto-goldyolo"):
        t = outs[OUTPUT_NAMES[layout][0]]
        r = t[t[:, 0] == b].copy()
        r[:, 0] = 0
        return {OUTPUT_NAMES[layout][0]: r}
    return {k: v[b:b + 1] for k, v in outs.items()}


def batch_case(ctx, model, state, p, x_flip):
    layout = p["layout"]
    q = params_of(p)
    path, info = ctx.tool.run(["merge", state["path"], *args_of(p)], f"{model.stem}_symbatch_{case_tag(p)}")
    checker(path)
    m = onnx.load(str(path))
    for o in m.graph.output:
        if layout not in ("pinto", "pinto-goldyolo"):
            d0 = o.type.tensor_type.shape.dim[0]
            need(not d0.HasField("dim_value"), f"output {o.name} declares a static batch {d0.dim_value}")
    sess = session_bytes(with_extra_outputs(path, [state["head_vi"]]))
    b1 = ctx.sessions.get((model.stem, case_tag(p)))
    need(b1 is not None, "batch-1 session of section 1 missing")
    single = {"ref": ctx.results[(model.stem, case_tag(p))], "flip": run(b1[0], {model.input_name: x_flip})}
    single["flip"].pop(model.head_name)
    notes = []
    for B, names in ((2, ["ref", "flip"]), (4, ["ref"] * 4)):
        outs = run(sess, {model.input_name: state["x"][B]})
        head = outs.pop(model.head_name)
        need(head.shape[0] == B, f"head batch {head.shape[0]}")
        boxes, scores = decode(head, model.kind, model.h, model.w)
        sel = nms_ref(boxes, scores, q["score"], q["iou"], q["max_per_class"], p.get("agnostic", False))
        compare_outputs(layout, outs, render(layout, boxes, scores, sel, q["max_det"]), Stats(), what=f"batch {B}: ")
        if layout in ("pinto", "pinto-goldyolo"):
            bc = outs[OUTPUT_NAMES[layout][0]][:, 0]
            need(np.all(np.diff(bc) >= 0) and set(np.unique(bc).tolist()) <= set(range(B)),
                 f"batch {B}: batch column not image-major in 0..{B - 1}")
        else:
            first = next(iter(outs.values()))
            need(first.shape[0] == B, f"batch {B}: outputs have batch {first.shape[0]}")
        per = []
        for b, nm in enumerate(names):
            mine = split_per_image(layout, outs, b)
            compare_outputs(layout, mine, {k: single[nm][k] for k in mine}, Stats(), what=f"batch {B} image {b} vs batch-1 {nm}: ")
            per.append(count_rows(layout, mine))
        notes.append(f"B={B} per-image {per}")
    return "; ".join(notes) + " = batch-1 results = reference"


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", help="path to the postmerge binary")
    ap.add_argument("--quick", action="store_true", help="one YOLOX and one Gold-YOLO model only")
    ap.add_argument("--keep", help="write the merged models here (kept) instead of a temp dir")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}; binary {args.binary}")
    rep = Report()
    models = discover(args.quick)
    by_stem = {m.stem: m for m in models}
    for stem in sorted({YOLOX_640, GOLD_640} - set(by_stem)):
        def missing(stem=stem):
            raise Failure(f"model {stem} (or its ref/input.npy) not found under {SHARED}")
        rep.case(f"setup {stem}", missing)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or tmp
        pathlib.Path(work).mkdir(parents=True, exist_ok=True)
        ctx = Ctx(Tool(args.binary, work), keep_sessions={YOLOX_640})
        timings = []
        for name, fn in (("merge", lambda: section_merge(rep, ctx, models)),
                         ("official", lambda: section_official(rep, ctx, models)),
                         ("thresholds", lambda: section_thresholds(rep, ctx, by_stem)),
                         ("set", lambda: section_set(rep, ctx, by_stem)),
                         ("batch", lambda: section_batch(rep, ctx, by_stem))):
            ts = time.perf_counter()
            fn()
            timings.append(f"{name} {time.perf_counter() - ts:.1f} s")
    if rep.failures:
        print("\nfailures:")
        for f in rep.failures:
            print(f"  {f}")
        causes = {}
        for f in rep.failures:  # same message up to the file / case name = same cause
            causes.setdefault(re.sub(r"\S+\.onnx", "<file>", f.split(": ", 1)[1]), []).append(f.split(": ", 1)[0])
        print(f"distinct causes ({len(causes)}):")
        for cause, cases in causes.items():
            print(f"  {len(cases)} x {cause}")
    print(f"{len(models)} models; time: {', '.join(timings)}; total {time.perf_counter() - t0:.1f} s")
    print(f"{rep.passed} passed, {rep.failed} failed")
    sys.exit(1 if rep.failed else 0)


if __name__ == "__main__":
    main()
