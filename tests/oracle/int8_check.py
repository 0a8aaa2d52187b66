#!/usr/bin/env python3
"""INT8 conformance oracle for `postmerge merge --quant-prep` (SPEC §4): does the prepared graph
quantize well, and far better than the naive merge?

Usage: python tests/oracle/int8_check.py PATH_TO_POSTMERGE_BINARY [--quick] [--keep DIR]

For each model, two float graphs are made with the binary:
  naive    = `postmerge merge IN -o naive.onnx --layout pinto` (boxes in input pixels, the model's opset)
  prepared = `postmerge merge IN -o prep.onnx --layout pinto --quant-prep` (boxes normalized to
             [0,1], opset 13, post-process listed in prep.nodes_to_exclude.json)
Both are quantized with onnxruntime.quantization.quantize_static: QuantFormat.QDQ,
per_channel=True, CalibrationMethod.MinMax, activations QInt8 (asymmetric int8), weights QInt8
(symmetric int8), reduce_range=False ("S8S8", onnxruntime's recommended first choice for QDQ);
the prepared one with nodes_to_exclude = the sidecar list. Not QUInt8 activations ("U8S8"): on
x86 onnxruntime runs U8S8 Convs with kernels that do not compute what the QDQ graph says
(VPMADDUBSW saturates 16-bit pair sums). Measured on the project's fixture (tests/oracle/README.md):
the same U8S8 model gives F1 0.833 with its fused kernels and 1.000 with graph optimizations off
(DequantizeLinear -> float op -> QuantizeLinear, the graph's reference semantics), while S8S8 gives
bit-identical NMS inputs both ways, equal to U8S8 run unfused. Asymmetric uint8 and int8 hold the
same grid (zero point shifted by 128), so the choice changes the kernels, not the quantization.
Reported for every case: the prepared INT8 model's fused kernels against its own reference
semantics (F1).
If the naive per-channel run raises or writes a model onnxruntime cannot load (at opset 11
per-channel DequantizeLinear needs the `axis` attribute of opset 13), it is retried per-tensor
and the fallback is reported. A model that cannot be quantized at all counts as F1 0 with the reason.

Agreement: each INT8 model is run next to its own float model on HELD-OUT inputs (never used for
calibration) and detections are matched: same class, IoU >= 0.5, greedily in descending INT8
score order, each float detection matched at most once. F1 = 2 TP / (n_float + n_int8), summed
over the held-out inputs. The prepared model's rows are multiplied by [W, H, W, H] (its float
reference is the prepared float model, unnormalized the same way).

Requirement (one case per model): prepared F1 >= 0.9 for every model whose float output is stable
(self-agreement F1 >= 0.95 under 0.1 and 1 grey level of input noise: the three trained shapes
models, the project's own fixture included), and the prepared graph beats the naive one: a higher
F1, or the same F1 with a smaller mean |score error| of the matched detections. Why not F1 alone:
since `merge` bounds the log-sizes before Exp, the naive merge no longer collapses in INT8, and on
a trained model both can keep the same detection set; what the naive graph still loses is its
output rows, one [N, 7] tensor whose single quantization scale mixes pixels, class ids and
probabilities (fixture: scores come back as 0, 0.629 or 1.258, mean |score error| 0.30 against
0.02 prepared), which a class + IoU match does not see. Random-weight models are chaotic (they
disagree with themselves under 0.1 grey level of noise), so no 8-bit quantization can keep 0.9
there; their F1 is reported. Also reported:
file sizes, median single-thread onnxruntime latency (intra/inter-op threads 1, >= 20 runs after
2 warm-ups) of float and INT8, float detection counts, precision/recall, and that the excluded
nodes stayed float in the quantized prepared graph.

Models and data (see the README section "int8_check.py" for the reasoning):
  yolox_nano_3c_128x160_op11_shapes  trained; calib: images/shapes/calib/*.png (64);
                                     held out: images/shapes/sample_{0..4}.png
  yolox_nano_3c_640x640_op11_shapes  trained; calib: 16 mosaics of 5x4 calib tiles (objects keep
                                     their 128x160 scale); held out: sample_640_{0,1}.png and one
                                     mosaic of the held-out sample_{0..4} tiles
  yolox_nano_80c_640x640_op11        random weights; calib/held-out from images/*.jpg (below)
  gold_yolo_n_80c_640x640_op13       random weights; same
  fixture_shapes_128x160             the project's own trained copy (tests/fixtures/shapes_128x160.onnx);
                                     calib: images/shapes/calib/*.png; held out: tests/fixtures/shapes/*.png
  Photos (dog, image1-3): calib = each photo as is, flipped left-right, centre crop 75 %, darkened
  x0.6, plus the model's ref input.npy; held out = 2 seeded random crops per photo (each side
  40-70 % of the photo, random position, brightness x0.8-1.2, random flip). Calib crops are 100 %
  or 75 % of a side, so no held-out input equals a calib one; the script also checks numerically
  that every held-out tensor differs from every calib tensor (mean |Δ| reported).
  Preprocessing per family: YOLOX BGR float 0..255, resize by r = min(H/h, W/w) (bilinear,
  half-pixel centres like OpenCV INTER_LINEAR), pasted top-left on 114; Gold-YOLO RGB /255, the
  same resize centred on 114 (YOLOv6 letterbox).
--quick: the 128x160 shapes model and YOLOX-nano 640x640 only.
Prints one line per case and a table, ends with `N passed, M failed`, exits 1 on any failure.
Needs onnx, onnxruntime, numpy and pillow (PNG/JPEG decoding) from tests/oracle/requirements.txt.
"""
import argparse
import json
import logging
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
MODELS = SHARED / "models"
IMAGES = SHARED / "images"
SHAPES = IMAGES / "shapes"
OWN_SHAPES = REPO / "tests" / "fixtures" / "shapes"  # the project's own trained detector's scenes
PINTO = "batchno_classid_score_x1y1x2y2"

F1_MIN = 0.9
# float self-agreement (F1 under the noise levels in NOISE_SDS) a model needs before the F1_MIN bar
# applies to it
STABLE_F1 = 0.95
MATCH_IOU = 0.5
LAT_RUNS = 20
SEED = 20240607
NOISE_SD = (0.1, 1.0)  # grey levels, for the float stability reference

# S8S8: see the docstring (U8S8's x86 kernels depart from the QDQ graph's own semantics)
ACTIVATION_TYPE = QuantType.QInt8
WEIGHT_TYPE = QuantType.QInt8


from oracle_common import Failure, need  # noqa: E402 (shared bookkeeping)


# ---------------------------------------------------------------------------------------------
# images and preprocessing
# ---------------------------------------------------------------------------------------------

def read_bgr(path):
    """uint8 HxWx3 BGR, as cv2.imread gives it."""
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[..., ::-1])


def resize_linear(img, new_w, new_h):
    """Bilinear resize with half-pixel centres, edge-clamped (OpenCV INTER_LINEAR's geometry;
    float arithmetic, rounded to uint8). Only used to make representative inputs."""
    h, w = img.shape[:2]
    if (h, w) == (new_h, new_w):
        return img.copy()

    def axis(n_out, n_in):
        f = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        f = np.clip(f, 0, n_in - 1)
        i0 = np.floor(f).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (f - i0).astype(np.float32)
    y0, y1, fy = axis(new_h, h)
    x0, x1, fx = axis(new_w, w)
    a = img.astype(np.float32)
    rows = a[y0] * (1 - fy)[:, None, None] + a[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def preproc_yolox(img, H, W):
    """YOLOX `preproc`: BGR 0..255, resize by r = min(H/h, W/w), top-left on 114."""
    h, w = img.shape[:2]
    r = min(H / h, W / w)
    nw, nh = int(w * r), int(h * r)
    out = np.full((H, W, 3), 114, np.uint8)
    out[:nh, :nw] = resize_linear(img, nw, nh)
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None].astype(np.float32))


def preproc_gold(img, H, W):
    """YOLOv6 `letterbox(auto=False)` + BGR->RGB + /255: centred on 114."""
    h, w = img.shape[:2]
    r = min(H / h, W / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (W - nw) / 2, (H - nh) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    out = np.full((H, W, 3), 114, np.uint8)
    out[top:top + nh, left:left + nw] = resize_linear(img, nw, nh)
    rgb = out[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(rgb)


def crop(img, fx, fy, ox, oy):
    """Crop fx x fy of the image (fractions), top-left at fractions ox, oy of the free room."""
    h, w = img.shape[:2]
    cw, ch = max(8, int(round(w * fx))), max(8, int(round(h * fy)))
    x0, y0 = int(round((w - cw) * ox)), int(round((h - ch) * oy))
    return img[y0:y0 + ch, x0:x0 + cw]


def bright(img, k):
    return np.clip(np.rint(img.astype(np.float32) * k), 0, 255).astype(np.uint8)


def photo_sets(pre, H, W, ref_inputs):
    """(calib, heldout) lists of (tag, tensor) made from the four photos."""
    photos = [(p.stem, read_bgr(p)) for p in sorted(IMAGES.glob("*.jpg"))]
    calib = []
    for name, img in photos:
        calib.append((f"{name}", pre(img, H, W)))
        calib.append((f"{name}/flip", pre(img[:, ::-1], H, W)))
        calib.append((f"{name}/centre75", pre(crop(img, 0.75, 0.75, 0.5, 0.5), H, W)))
        calib.append((f"{name}/dark0.6", pre(bright(img, 0.6), H, W)))
    for tag, x in ref_inputs:
        calib.append((tag, x))
    rng = np.random.default_rng(SEED)
    held = []
    for name, img in photos:
        for k in range(2):
            fx, fy = rng.uniform(0.4, 0.7, size=2)
            ox, oy = rng.uniform(0, 1, size=2)
            b = rng.uniform(0.8, 1.2)
            flip = rng.random() < 0.5
            im = crop(img, fx, fy, ox, oy)
            im = bright(im[:, ::-1] if flip else im, b)
            held.append((f"{name}/crop{k}({fx:.2f}x{fy:.2f}@{ox:.2f},{oy:.2f},b{b:.2f}{',flip' if flip else ''})",
                         pre(im, H, W)))
    return calib, held


def to_tensor_bgr(img):
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None].astype(np.float32))


def mosaic(tiles, rows, cols):
    th, tw = tiles[0].shape[:2]
    out = np.zeros((rows * th, cols * tw, 3), np.uint8)
    for k, t in enumerate(tiles[:rows * cols]):
        r, c = divmod(k, cols)
        out[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = t
    return out


def shapes_sets(H, W, own=False):
    calib_imgs = [read_bgr(p) for p in sorted((SHAPES / "calib").glob("*.png"))]
    need(len(calib_imgs) == 64, f"expected 64 calib images, found {len(calib_imgs)}")
    if own:
        # the project's trained fixture: calibrated on the shared calib scenes, held out on its own
        # 8 scenes (drawn by the same generator with another seed)
        need((H, W) == (128, 160), f"the shapes fixture is 128x160, not {H}x{W}")
        calib = [(f"calib_{k:02d}", to_tensor_bgr(im)) for k, im in enumerate(calib_imgs)]
        held = [(p.stem, to_tensor_bgr(read_bgr(p))) for p in sorted(OWN_SHAPES.glob("sample_*.png"))]
        need(len(held) == 8, f"expected 8 samples in {OWN_SHAPES}, found {len(held)}")
        return calib, held
    samples = [read_bgr(SHAPES / f"sample_{k}.png") for k in range(5)]
    if (H, W) == (128, 160):
        calib = [(f"calib_{k:02d}", to_tensor_bgr(im)) for k, im in enumerate(calib_imgs)]
        held = [(f"sample_{k}", to_tensor_bgr(im)) for k, im in enumerate(samples)]
        return calib, held
    need((H, W) == (640, 640), f"no shapes data for {H}x{W}")
    # 640x640 = 5 rows x 4 columns of 128x160 tiles: the objects keep the 14-56 px scale the model
    # was trained on (resizing a 128x160 scene to 640 would make them 4x larger).
    rng = np.random.default_rng(SEED)
    calib = []
    for k in range(16):
        idx = rng.permutation(64)[:20]
        tiles = [calib_imgs[i][:, ::-1] if (i + k) % 2 else calib_imgs[i] for i in idx]
        calib.append((f"calib_mosaic{k}", to_tensor_bgr(mosaic(tiles, 5, 4))))
    held = [(f"sample_640_{k}", to_tensor_bgr(read_bgr(SHAPES / f"sample_640_{k}.png"))) for k in range(2)]
    tiles = [(s[:, ::-1] if (j // 5) % 2 else s) for j, s in enumerate(samples * 4)]
    held.append(("sample_0..4_mosaic", to_tensor_bgr(mosaic(tiles, 5, 4))))
    return calib, held


# ---------------------------------------------------------------------------------------------
# model specs
# ---------------------------------------------------------------------------------------------

def spec(stem, family, data, path=None):
    return {"stem": stem, "path": path or MODELS / f"{stem}.onnx", "family": family, "data": data}


def all_specs(quick):
    specs = [
        spec("yolox_nano_3c_128x160_op11_shapes", "yolox", "shapes"),
        spec("yolox_nano_80c_640x640_op11", "yolox", "photos"),
        spec("gold_yolo_n_80c_640x640_op13", "gold", "photos"),
        spec("yolox_nano_3c_640x640_op11_shapes", "yolox", "shapes"),
        spec("fixture_shapes_128x160", "yolox", "own-shapes", REPO / "tests" / "fixtures" / "shapes_128x160.onnx"),
    ]
    if quick:
        specs = specs[:2]
    return specs


def make_data(s, H, W):
    if s["data"] in ("shapes", "own-shapes"):
        return shapes_sets(H, W, own=s["data"] == "own-shapes")
    pre = preproc_yolox if s["family"] == "yolox" else preproc_gold
    ref = SHARED / "ref" / s["stem"] / "input.npy"
    refs = [(f"ref/{s['stem']}/input.npy", np.load(ref))] if ref.exists() else []
    return photo_sets(pre, H, W, refs)


def disjointness(calib, held, unit):
    """Smallest mean |Δ| in grey levels between a held-out and a calib tensor (must be > 0: no
    input is shared; 1 grey level = `unit` in tensor units)."""
    best = np.inf
    for _, h in held:
        for _, c in calib:
            best = min(best, float(np.mean(np.abs(h - c))) / unit)
    return best


# ---------------------------------------------------------------------------------------------
# running, quantizing, matching
# ---------------------------------------------------------------------------------------------

def postmerge(binary, *args):
    r = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    need(r.returncode == 0, f"postmerge {' '.join(map(str, args))} exited {r.returncode}: {r.stderr.strip()[-400:]}")


def session(path, threads=0, reference=False):
    """`reference`: graph optimizations off, so a QDQ model runs as DequantizeLinear -> float op ->
    QuantizeLinear (its own semantics) instead of fused integer kernels."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if reference:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Reader(CalibrationDataReader):
    def __init__(self, name, xs):
        self.name = name
        self.xs = xs
        self.i = 0

    def get_next(self):
        if self.i >= len(self.xs):
            return None
        self.i += 1
        return {self.name: self.xs[self.i - 1]}

    def rewind(self):
        self.i = 0


def quantize(src, dst, input_name, calib, per_channel, exclude):
    """quantize_static with this script's settings; raises on failure or an unloadable result."""
    if os.path.exists(dst):
        os.remove(dst)
    quantize_static(str(src), str(dst), Reader(input_name, calib), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, reduce_range=False, activation_type=ACTIVATION_TYPE,
                    weight_type=WEIGHT_TYPE, calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=exclude)
    session(dst)  # onnxruntime must load what it wrote


def probe(path, dst):
    """Copy of the model with NonMaxSuppression's boxes and scores inputs as extra outputs."""
    m = onnx.load(str(path))
    nms = [n for n in m.graph.node if n.op_type == "NonMaxSuppression"]
    need(len(nms) == 1, f"{path.name}: {len(nms)} NonMaxSuppression nodes")
    names = list(nms[0].input[:2])
    for t in names:
        m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    onnx.save(m, str(dst))
    return dst, names


def run_probe(path, tmp, input_name, xs, scale):
    """(detections, [(boxes [N,4] in pixels, scores [C,N]) per input]) of one model."""
    p, (bname, sname) = probe(path, tmp / (path.name[:-len(".onnx")] + ".probe.onnx"))
    sess = session(p)
    dets, pre = [], []
    for x in xs:
        r, b, sc = sess.run([PINTO, bname, sname], {input_name: x})
        dets.extend(detections(None, input_name, [x], scale, rows=r))
        pre.append((b[0].astype(np.float64) * scale, sc[0].astype(np.float64)))
    return dets, pre


def prenms_error(ref, test, scale):
    """Quantization error on the NMS inputs: scores over every anchor x class, and scores and
    boxes (relative to the input size) over the float candidates (score > 0.25)."""
    ds_all, ds_cand, db_cand = [], [], []
    for (rb, rs), (tb, ts) in zip(ref, test):
        d = np.abs(rs - ts)
        ds_all.append(d.ravel())
        cand = rs > 0.25
        ds_cand.append(d[cand])
        anchors = cand.any(axis=0)
        with np.errstate(invalid="ignore", over="ignore"):
            db_cand.append((np.abs(rb[anchors] - tb[anchors]) / scale).ravel())
    cat = np.concatenate
    db = cat(db_cand)
    db = np.where(np.isfinite(db), db, np.inf)  # a box that turns non-finite counts as worst
    # boxes: median and 95th percentile (a few exploding exp() boxes would dominate a mean)
    return {"score_all": float(np.mean(cat(ds_all))), "score_cand": float(np.mean(cat(ds_cand))),
            "box_med": float(np.median(db)) if db.size else float("nan"),
            "box_p95": float(np.percentile(db, 95)) if db.size else float("nan")}


def detections(sess, input_name, xs, scale, rows=None):
    """Per input: float64 [K, 6] rows (class, score, x1, y1, x2, y2) in input pixels."""
    out = []
    for x in xs:
        r = (sess.run([PINTO], {input_name: x})[0] if rows is None else rows).astype(np.float64)
        need(r.ndim == 2 and r.shape[1] == 7, f"{PINTO} has shape {list(r.shape)}")
        # batch column ignored: batch-1 inputs (a quantized naive graph may garble it)
        d = np.column_stack([np.rint(r[:, 1]), r[:, 2], r[:, 3:7] * scale]) if len(r) else np.zeros((0, 6))
        out.append(d)
    return out


def iou_matrix(a, b):
    ax0, ay0 = np.minimum(a[:, 0], a[:, 2]), np.minimum(a[:, 1], a[:, 3])
    ax1, ay1 = np.maximum(a[:, 0], a[:, 2]), np.maximum(a[:, 1], a[:, 3])
    bx0, by0 = np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3])
    bx1, by1 = np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(ax0[:, None], bx0[None]), 0, None)
        ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(ay0[:, None], by0[None]), 0, None)
        inter = iw * ih
        union = ((ax1 - ax0) * (ay1 - ay0))[:, None] + ((bx1 - bx0) * (by1 - by0))[None] - inter
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


def agreement(ref, test):
    """Greedy matching of `test` (INT8) detections to `ref` (float) ones, summed over inputs."""
    tp = n_ref = n_test = 0
    dscore = []
    unmatched_ref_scores = []
    for r, t in zip(ref, test):
        n_ref += len(r)
        n_test += len(t)
        used = np.zeros(len(r), bool)
        if len(r) and len(t):
            iou = iou_matrix(t[:, 2:6], r[:, 2:6])
            same = t[:, 0][:, None] == r[:, 0][None]
            for i in np.argsort(-t[:, 1], kind="stable"):
                cand = np.where(same[i] & ~used & (iou[i] >= MATCH_IOU), iou[i], -1.0)
                j = int(np.argmax(cand))
                if cand[j] >= MATCH_IOU:
                    used[j] = True
                    tp += 1
                    dscore.append(abs(t[i, 1] - r[j, 1]))
        unmatched_ref_scores.extend(r[~used, 1].tolist())
    f1 = 2 * tp / (n_ref + n_test) if n_ref + n_test else 1.0
    return {"f1": f1, "tp": tp, "n_float": n_ref, "n_int8": n_test,
            "precision": tp / n_test if n_test else float(n_ref == 0),
            "recall": tp / n_ref if n_ref else 1.0,
            "mean_dscore": float(np.mean(dscore)) if dscore else float("nan"),
            "missed_float_scores_median": float(np.median(unmatched_ref_scores)) if unmatched_ref_scores else float("nan")}


def latency_ms(path, input_name, x):
    s = session(path, threads=1)
    for _ in range(2):
        s.run(None, {input_name: x})
    ts = []
    for _ in range(LAT_RUNS):
        t0 = time.perf_counter()
        s.run(None, {input_name: x})
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def excluded_stay_float(qpath, exclude):
    """In the quantized prepared model: every excluded node still exists with its op type, and
    none of them reads or writes a tensor through a (De)QuantizeLinear pair except where its
    input comes from a quantized Conv (the boundary). Returns a summary string."""
    m = onnx.load(str(qpath), load_external_data=False)
    by_name = {n.name: n for n in m.graph.node}
    missing = [e for e in exclude if e not in by_name]
    producer = {o: n for n in m.graph.node for o in n.output}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    ex = set(exclude)
    q_outputs = []  # excluded nodes whose output goes into QuantizeLinear
    dq_inputs = []  # excluded nodes reading a DequantizeLinear output
    for e in exclude:
        n = by_name.get(e)
        if n is None:
            continue
        for o in n.output:
            if any(c.op_type == "QuantizeLinear" for c in consumers.get(o, [])):
                q_outputs.append(e)
        for i in n.input:
            p = producer.get(i)
            if p is not None and p.op_type == "DequantizeLinear":
                dq_inputs.append(e)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"missing": missing, "q_outputs": q_outputs, "dq_inputs": sorted(set(dq_inputs)),
            "n_q": ops.get("QuantizeLinear", 0), "n_dq": ops.get("DequantizeLinear", 0),
            "n_excluded": len(ex)}


# ---------------------------------------------------------------------------------------------
# one model
# ---------------------------------------------------------------------------------------------

def evaluate(binary, s, tmp):
    t0 = time.perf_counter()
    stem = s["stem"]
    m = onnx.load(str(s["path"]), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    name = inp.name
    H, W = (int(d.dim_value) for d in inp.type.tensor_type.shape.dim[2:4])
    scale = np.array([W, H, W, H], np.float64)
    calib, held = make_data(s, H, W)
    unit = 1.0 if s["family"] == "yolox" else 1.0 / 255  # one grey level in tensor units
    gap = disjointness(calib, held, unit)
    need(gap > 0, "a held-out input equals a calibration input")
    cx = [x for _, x in calib]
    hx = [x for _, x in held]

    naive = tmp / f"{stem}.naive.onnx"
    prep = tmp / f"{stem}.prep.onnx"
    postmerge(binary, "merge", s["path"], "-o", naive, "--layout", "pinto")
    postmerge(binary, "merge", s["path"], "-o", prep, "--layout", "pinto", "--quant-prep")
    # quantize_static logs "Please consider pre-processing before quantization" unless the model
    # carries metadata onnx.quant.pre_process = onnxruntime.quant; the log is silenced below and
    # the fact reported instead.
    pm = onnx.load(str(prep), load_external_data=False)
    pre_tag = any(p.key == "onnx.quant.pre_process" and p.value == "onnxruntime.quant" for p in pm.metadata_props)
    side = prep.with_name(prep.name[:-len(".onnx")] + ".nodes_to_exclude.json")
    exclude = json.loads(side.read_text())

    res = {"stem": stem, "hw": f"{H}x{W}", "n_calib": len(cx), "n_held": len(hx), "gap": gap,
           "pre_tag": pre_tag,
           "opset_naive": next(o.version for o in onnx.load(str(naive), load_external_data=False).opset_import
                               if o.domain in ("", "ai.onnx"))}
    f_naive, pre_naive = run_probe(naive, tmp, name, hx, np.ones(4))
    f_prep, pre_prep = run_probe(prep, tmp, name, hx, scale)
    res["float_prep_vs_naive"] = agreement(f_naive, f_prep)["f1"]
    res["n_float"] = sum(len(d) for d in f_naive)
    # How stable are the float detections themselves? The float (prepared) model against itself
    # on the held-out inputs plus Gaussian noise of NOISE_SD grey levels (1 grey level = 1 for
    # YOLOX's 0..255 input, 1/255 for Gold-YOLO's 0..1): a reference point for the INT8 numbers,
    # not part of the requirement.
    rng = np.random.default_rng(SEED)
    fs = session(prep)
    res["noise_f1"] = {sd: agreement(f_prep, detections(fs, name, [
        (x + rng.normal(0, sd * unit, x.shape)).astype(np.float32) for x in hx], scale))["f1"] for sd in NOISE_SD}

    # --- naive: per-channel, per-tensor fallback
    qn = tmp / f"{stem}.naive.int8.onnx"
    res["naive_mode"] = None
    res["naive_notes"] = []
    for per_channel in (True, False):
        tq = time.perf_counter()
        try:
            quantize(naive, qn, name, cx, per_channel, None)
            res["naive_mode"] = "per-channel" if per_channel else "per-tensor"
            res["naive_qtime"] = time.perf_counter() - tq
            break
        except Exception as e:  # noqa: BLE001 - reported, then the fallback
            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:220]}"
            res["naive_notes"].append(f"{'per-channel' if per_channel else 'per-tensor'} failed: {msg}")
    if res["naive_mode"]:
        q_naive, pre_qn = run_probe(qn, tmp, name, hx, np.ones(4))
        res["naive"] = agreement(f_naive, q_naive)
        res["naive_err"] = prenms_error(pre_naive, pre_qn, scale)
    else:
        res["naive"] = {"f1": 0.0, "tp": 0, "n_float": res["n_float"], "n_int8": 0, "precision": 0.0, "recall": 0.0,
                        "mean_dscore": float("nan"), "missed_float_scores_median": float("nan")}

    # --- prepared: per-channel with the sidecar
    qp = tmp / f"{stem}.prep.int8.onnx"
    res["prep_notes"] = []
    tq = time.perf_counter()
    try:
        quantize(prep, qp, name, cx, True, exclude)
        res["prep_qtime"] = time.perf_counter() - tq
        q_prep, pre_qp = run_probe(qp, tmp, name, hx, scale)
        res["prep"] = agreement(f_prep, q_prep)
        res["prep_err"] = prenms_error(pre_prep, pre_qp, scale)
        res["prep_float_check"] = excluded_stay_float(qp, exclude)
        # do onnxruntime's fused INT8 kernels compute what the QDQ graph says? (reported)
        res["prep_kernels"] = agreement(detections(session(qp, reference=True), name, hx, scale), q_prep)["f1"]
        res["n_excluded"] = len(exclude)
    except Exception as e:  # noqa: BLE001
        res["prep_notes"].append(f"per-channel failed: {type(e).__name__}: {str(e).splitlines()[0][:220]}")
        res["prep"] = {"f1": 0.0, "tp": 0, "n_float": res["n_float"], "n_int8": 0, "precision": 0.0, "recall": 0.0,
                       "mean_dscore": float("nan"), "missed_float_scores_median": float("nan")}

    # --- sizes and single-thread latency on the first held-out input
    x0 = hx[0]
    res["size"] = {"naive_float": naive.stat().st_size, "prep_float": prep.stat().st_size,
                   "naive_int8": qn.stat().st_size if res["naive_mode"] else None,
                   "prep_int8": qp.stat().st_size if qp.exists() and not res["prep_notes"] else None}
    res["lat"] = {"naive_float": latency_ms(naive, name, x0), "prep_float": latency_ms(prep, name, x0),
                  "naive_int8": latency_ms(qn, name, x0) if res["naive_mode"] else None,
                  "prep_int8": latency_ms(qp, name, x0) if res["size"]["prep_int8"] else None}
    res["time"] = time.perf_counter() - t0
    return res


def fmt_agree(a):
    return (f"F1 {a['f1']:.3f} (TP {a['tp']}, float {a['n_float']}, int8 {a['n_int8']}, P {a['precision']:.3f}, "
            f"R {a['recall']:.3f}, mean|Δscore| matched {a['mean_dscore']:.3f}, median score of missed float "
            f"{a['missed_float_scores_median']:.3f})")


def fmt_err(e):
    if not e:
        return ""
    return (f"; NMS inputs: mean|Δscore| {e['score_all']:.4f} (all), {e['score_cand']:.4f} (float candidates > 0.25), "
            f"|Δbox| median {e['box_med']:.4f} / p95 {e['box_p95']:.4f} of the input size (candidates)")


def mb(n):
    return "-" if n is None else f"{n / 1e6:.2f} MB"


def ms(v):
    return "-" if v is None else f"{v:.1f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", type=pathlib.Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", type=pathlib.Path, help="write the models here instead of a temp dir")
    ap.add_argument("--only", help="run only the case whose model stem contains this")
    args = ap.parse_args()
    binary = args.binary.resolve()
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice logs; see pre_tag
    t_start = time.perf_counter()
    print(f"quantize_static: QDQ, per_channel=True (naive falls back to per-tensor if refused), MinMax, "
          f"activations {ACTIVATION_TYPE.name}, weights {WEIGHT_TYPE.name}, reduce_range=False; "
          f"onnxruntime {ort.__version__}, onnx {onnx.__version__}", flush=True)
    passed = failed = 0
    failures = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8_check_") as td:
        tmp = args.keep or pathlib.Path(td)
        tmp.mkdir(parents=True, exist_ok=True)
        for s in all_specs(args.quick):
            if args.only and args.only not in s["stem"]:
                continue
            name = f"int8 {s['stem']}"
            try:
                r = evaluate(binary, s, tmp)
            except Exception as e:  # noqa: BLE001 - a crash is a failure of this model's case
                failed += 1
                tb = traceback.format_exc(limit=3).strip().splitlines()
                failures.append(f"{name}: {type(e).__name__}: {e}")
                print(f"FAIL {name}: {type(e).__name__}: {e} [{' | '.join(tb[-3:])}]", flush=True)
                continue
            rows.append(r)
            print(f"---- {s['stem']} ({r['hw']}, naive opset {r['opset_naive']}): calib {r['n_calib']}, "
                  f"held out {r['n_held']} (closest held-out/calib pair: mean|Δ| {r['gap']:.3g} grey levels), "
                  f"float prepared vs naive F1 {r['float_prep_vs_naive']:.3f}", flush=True)
            for note in r["naive_notes"]:
                print(f"     naive: {note}")
            print(f"     naive    [{r['naive_mode'] or 'not quantized'}]: {fmt_agree(r['naive'])}{fmt_err(r.get('naive_err'))}")
            for note in r["prep_notes"]:
                print(f"     prepared: {note}")
            if not r["pre_tag"]:
                print("     prepared: no metadata onnx.quant.pre_process=onnxruntime.quant, so quantize_static logs "
                      "'Please consider pre-processing before quantization' for it too (log silenced here)")
            print(f"     prepared [per-channel, {r.get('n_excluded', '?')} nodes excluded]: {fmt_agree(r['prep'])}"
                  f"{fmt_err(r.get('prep_err'))}")
            if "prep_kernels" in r:
                print(f"     prepared INT8: fused kernels vs the QDQ graph's reference semantics (optimizations off) "
                      f"F1 {r['prep_kernels']:.3f} (reported)")
            print("     float stability reference (not required): float prepared vs itself with input noise "
                  + ", ".join(f"SD {sd:g} grey level F1 {f1:.3f}" for sd, f1 in r["noise_f1"].items()))
            fc = r.get("prep_float_check")
            if fc:
                print(f"     prepared INT8 graph: {fc['n_q']} QuantizeLinear / {fc['n_dq']} DequantizeLinear; excluded "
                      f"nodes missing {len(fc['missing'])}, feeding a QuantizeLinear {len(fc['q_outputs'])}"
                      f"{' ' + str(fc['q_outputs'][:4]) if fc['q_outputs'] else ''}, reading a DequantizeLinear "
                      f"{len(fc['dq_inputs'])} (the boundary after the last Convs: {fc['dq_inputs'][:4]}"
                      f"{'...' if len(fc['dq_inputs']) > 4 else ''})")
            print(f"     sizes float/int8: naive {mb(r['size']['naive_float'])} / {mb(r['size']['naive_int8'])}, "
                  f"prepared {mb(r['size']['prep_float'])} / {mb(r['size']['prep_int8'])}; single-thread median "
                  f"of {LAT_RUNS}: naive {ms(r['lat']['naive_float'])} / {ms(r['lat']['naive_int8'])}, "
                  f"prepared {ms(r['lat']['prep_float'])} / {ms(r['lat']['prep_int8'])}  ({r['time']:.1f} s)", flush=True)
            problems = []
            # The 0.9 bar needs a float model that agrees with itself under sub-quantization-step
            # input noise: a random-weight model (chaotic: F1 ~0.7 against itself with 0.1 grey
            # level of noise, ~0.2 with 1 level; 16-bit activations still only reach ~0.3) cannot
            # keep 0.9 under ANY 8-bit quantization, so there only "prepared beats naive" is
            # required and the F1 is reported. Trained models must reach the bar.
            stable = min(r["noise_f1"].values()) >= STABLE_F1 if r["noise_f1"] else False
            if stable and r["prep"]["f1"] < F1_MIN:
                problems.append(f"prepared F1 {r['prep']['f1']:.3f} < {F1_MIN}")
            if not stable:
                print(f"     note: the float model is not stable under input noise (self-agreement "
                      f"{min(r['noise_f1'].values()) if r['noise_f1'] else float('nan'):.3f} < {STABLE_F1}); the {F1_MIN} bar "
                      f"does not apply, only prepared > naive", flush=True)
            # prepared beats naive: higher F1, or the same F1 and smaller score error on the matches
            # (the naive rows share one scale between pixels and probabilities; see the docstring)
            pf, nf = r["prep"]["f1"], r["naive"]["f1"]
            ps, ns = r["prep"]["mean_dscore"], r["naive"]["mean_dscore"]
            tie_won = np.isclose(pf, nf) and np.isfinite(ps) and np.isfinite(ns) and ps < ns
            if not (pf > nf and not np.isclose(pf, nf)) and not tie_won:
                problems.append(f"prepared F1 {pf:.3f} (mean|Δscore| {ps:.3f}) does not beat naive F1 {nf:.3f} "
                                f"(mean|Δscore| {ns:.3f})")
            if fc and (fc["missing"] or fc["q_outputs"]):
                problems.append(f"excluded nodes quantized: missing {fc['missing'][:3]}, quantized outputs {fc['q_outputs'][:3]}")
            if r["float_prep_vs_naive"] < 1.0:
                problems.append(f"float prepared and naive models disagree (F1 {r['float_prep_vs_naive']:.4f})")
            if problems:
                failed += 1
                failures.append(f"{name}: {'; '.join(problems)}")
                print(f"FAIL {name}: {'; '.join(problems)}", flush=True)
            else:
                passed += 1
                bar = f">= {F1_MIN}" if stable else "(bar n/a: unstable float model)"
                how = (f"> naive F1 {nf:.3f}" if not tie_won else
                       f"= naive F1 {nf:.3f}, mean|Δscore| {ps:.3f} < naive {ns:.3f}")
                print(f"ok   {name}: prepared F1 {pf:.3f} {bar} and {how}", flush=True)

    print()
    print("| model | HxW | float dets | naive INT8 F1 (mode) | prepared INT8 F1 | size float / naive int8 / prep int8 "
          "| latency 1 thread float / naive int8 / prep int8 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stem']} | {r['hw']} | {r['n_float']} | {r['naive']['f1']:.3f} ({r['naive_mode'] or 'failed'}) | "
              f"{r['prep']['f1']:.3f} | {mb(r['size']['prep_float'])} / {mb(r['size']['naive_int8'])} / "
              f"{mb(r['size']['prep_int8'])} | {ms(r['lat']['prep_float'])} / {ms(r['lat']['naive_int8'])} / "
              f"{ms(r['lat']['prep_int8'])} |")
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")
    for f in failures:
        print(f"  failed: {f}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
