#!/usr/bin/env python3
"""Conformance oracle for `postmerge quant-prep` and `postmerge merge --quant-prep` (SPEC §4).

Usage: python tests/oracle/quantprep_check.py PATH_TO_POSTMERGE_BINARY [--quick] [--keep DIR]

For every model (../shared/models/*.onnx except `_e2e_ort`, and tests/fixtures/*.onnx with
tests/fixtures/ref/<stem>/input.npy except rich_*), three cases, each run in onnxruntime (CPU) on
the model's reference input:

  a. numbers: `quant-prep IN -o P.onnx` (layout decoded, boxes normalized) against
     `merge IN -o D.onnx --layout decoded` (unprepared, boxes in input pixels): scores equal within
     1e-5, and boxes_P equal boxes_D / [W, H, W, H] within 1e-5 (normalized units).
  b. structure of P: onnx.checker full check; opset 13; every node named in the sidecar
     (P minus .onnx plus .nodes_to_exclude.json) exists in P; the sidecar equals the metadata
     `postmerge.nodes_to_exclude`; the excluded nodes are exactly the float post-process (every
     node with no Conv downstream of it); value_info covers every intermediate tensor with a static
     shape, and onnx.shape_inference (run from scratch, value_info removed) infers the same type
     and shape for each of them.
  c. NMS: `merge IN --layout pinto --quant-prep` against `merge IN --layout pinto`: the same rows
     (batch, class, score) with boxes scaled by 1/[W, H, W, H]. NMS IoU is invariant under per-axis
     scaling, so the selections must be the same; a differing row is accepted only when the
     difference is explained by an IoU that sits on the threshold (float32 rounding of the two
     unit systems putting it on different sides), which the case line then reports. The prepared
     pinto graph also gets the structure checks of (b), except that tensors downstream of
     NonMaxSuppression may have data-dependent dimensions.

Prints one line per case, a closing `N passed, M failed`, exits 1 on any failure.
--quick: only yolox_nano_80c_640x640_op11, gold_yolo_n_80c_640x640_op13 and the shapes models.
Only onnx, onnxruntime and numpy are used (tests/oracle/requirements.txt).
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import onnx
import onnxruntime as ort

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
FIXTURES = REPO / "tests" / "fixtures"

QUICK = ("yolox_nano_80c_640x640_op11", "gold_yolo_n_80c_640x640_op13",
         "yolox_nano_3c_128x160_op11_shapes", "yolox_nano_3c_640x640_op11_shapes")
PINTO = "batchno_classid_score_x1y1x2y2"
META_KEY = "postmerge.nodes_to_exclude"
IOU_THR = 0.40  # merge's default, used by both pinto merges
TIE_EPS = 1e-6  # |IoU - threshold| that counts as a tie at the threshold

# Tolerances in NORMALIZED units (1 = the input width or height). An absolute tolerance in
# pixels is meaningless for junk anchors: a raw YOLOX head's log-size can make exp() explode
# (up to 3e36 px and inf in the trained `_shapes` model), where one float32 ulp is far more than
# any pixel tolerance, and P computes x / W in a different order than D's x then / W. So boxes
# whose pixel coordinate is non-finite or above JUNK_PX are compared relatively (JUNK_RTOL), and
# non-finite values must be the same non-finite value.
SCORE_ATOL = 1e-5
BOX_ATOL = 1e-5
JUNK_PX = 1e4
JUNK_RTOL = 1e-5


from oracle_common import Failure, Report, need, shared_stems  # noqa: E402 (shared bookkeeping)


# ---------------------------------------------------------------------------------------------
# models, binary, runtime
# ---------------------------------------------------------------------------------------------

class Model:
    def __init__(self, path, ref_dir):
        self.path = path
        self.stem = path.stem
        self.x = np.load(ref_dir / "input.npy")
        self.h, self.w = int(self.x.shape[2]), int(self.x.shape[3])
        m = onnx.load(str(path), load_external_data=False)
        inits = {i.name for i in m.graph.initializer}
        self.input_name = [i.name for i in m.graph.input if i.name not in inits][0]

    @property
    def scale(self):
        return np.array([self.w, self.h, self.w, self.h], dtype=np.float64)


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
        models = [m for m in models if m.stem in QUICK]
    return models


def postmerge(binary, *args):
    r = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    need(r.returncode == 0, f"postmerge {' '.join(map(str, args))} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


def sidecar_of(path):
    return path.with_name(path.name[:-len(".onnx")] + ".nodes_to_exclude.json")


_SO = ort.SessionOptions()
_SO.log_severity_level = 3


def run(path, input_name, x):
    s = ort.InferenceSession(str(path), _SO, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {input_name: x})))


# ---------------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------------

def compare_boxes(norm, px, scale, what):
    """norm: boxes in [0,1] units; px: the same boxes in pixels. Returns a stats string."""
    norm = np.asarray(norm, dtype=np.float64)
    px = np.asarray(px, dtype=np.float64)
    need(norm.shape == px.shape, f"{what}: box shapes {list(norm.shape)} vs {list(px.shape)}")
    with np.errstate(invalid="ignore", over="ignore"):
        junk = ~np.isfinite(px) | (np.abs(px) > JUNK_PX)
        ordinary = ~junk
        d = np.abs(norm - px / scale)
        bad = ordinary & ~(d <= BOX_ATOL)
        if bad.any():
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            raise Failure(f"{what}: box{list(i[:-1])} coord {i[-1]}: normalized {norm[i]!r} vs pixels/scale "
                          f"{px[i] / scale[i[-1]]!r} (|Δ| {d[i]:.3g} > {BOX_ATOL})")
        # junk anchors: relative agreement of the unnormalized value; non-finite must match
        back = norm * scale
        both_fin = junk & np.isfinite(px) & np.isfinite(back)
        rel = np.where(both_fin, np.abs(back - px) / np.maximum(np.abs(px), 1e-30), 0.0)
        same_nonfinite = junk & ~np.isfinite(px) & ((back == px) | (np.isnan(back) & np.isnan(px)))
        # a finite value near FLT_MAX may overflow in one unit system only
        overflow_edge = junk & (np.isfinite(px) != np.isfinite(back)) & (
            np.where(np.isfinite(px), np.abs(px), np.abs(back)) > 1e37)
        ok_junk = (both_fin & (rel <= JUNK_RTOL)) | same_nonfinite | overflow_edge
        bad = junk & ~ok_junk
        if bad.any():
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            raise Failure(f"{what}: junk box{list(i[:-1])} coord {i[-1]}: normalized*scale {back[i]!r} vs pixels {px[i]!r}")
    dmax = float(d[ordinary].max()) if ordinary.any() else 0.0
    s = f"max|Δbox| {dmax:.1e} (normalized)"
    if junk.any():
        s += (f"; {int(junk.sum())} junk coords (|px|>{JUNK_PX:g} or non-finite, {int((~np.isfinite(px)).sum())} "
              f"non-finite) rel {float(rel.max()):.1e}")
        if overflow_edge.any():
            s += f", {int(overflow_edge.sum())} overflow only in one unit system"
    return s


def compare_scores(a, b, what):
    need(a.shape == b.shape, f"{what}: score shapes {list(a.shape)} vs {list(b.shape)}")
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    ok = (d <= SCORE_ATOL) | (a == b)
    if not ok.all():
        i = tuple(int(v) for v in np.argwhere(~ok)[0])
        raise Failure(f"{what}: scores{list(i)} {a[i]!r} vs {b[i]!r}")
    return float(d.max()) if d.size else 0.0


# ---------------------------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------------------------

def opset_of(m):
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def shape_of(t):
    """(elem_type, dims) of a ValueInfoProto; dims: int, str (dim_param) or None (unknown)."""
    if not t.type.HasField("tensor_type"):
        return None
    tt = t.type.tensor_type
    if not tt.HasField("shape"):
        return (tt.elem_type, None)
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return (tt.elem_type, tuple(dims))


def is_static(s):
    return s is not None and s[1] is not None and all(isinstance(d, int) for d in s[1])


def post_process_nodes(g):
    """Names of the nodes with no Conv downstream of them (the float post-process), graph order."""
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    # nodes that (transitively) feed a Conv
    feeds_conv = set()
    producer = {}
    for n in g.node:
        for o in n.output:
            producer[o] = n
    stack = [n for n in g.node if n.op_type == "Conv"]
    seen = set()
    while stack:
        n = stack.pop()
        for i in n.input:
            p = producer.get(i)
            if p is not None and p.name not in seen:
                seen.add(p.name)
                feeds_conv.add(p.name)
                stack.append(p)
    return [n.name for n in g.node if n.op_type != "Conv" and n.name not in feeds_conv]


def downstream_of(g, op_type):
    """Tensor names computed (transitively) from the outputs of any `op_type` node."""
    tainted = set()
    for n in g.node:  # graph order is topological (checker guarantees it)
        if n.op_type == op_type or any(i in tainted for i in n.input):
            tainted.update(o for o in n.output if o)
    return tainted


def check_structure(path, allow_dynamic_after_nms):
    """SPEC §4 structure of a prepared model; returns a detail string."""
    onnx.checker.check_model(str(path), full_check=True)
    m = onnx.load(str(path))
    g = m.graph
    need(opset_of(m) == 13, f"opset {opset_of(m)}, expected 13")
    names = [n.name for n in g.node]
    need(len(set(names)) == len(names), "duplicate node names")
    side = sidecar_of(path)
    need(side.exists(), f"sidecar {side.name} missing")
    sidecar = json.loads(side.read_text())
    need(isinstance(sidecar, list) and all(isinstance(s, str) for s in sidecar), "sidecar is not a JSON list of strings")
    missing = [s for s in sidecar if s not in set(names)]
    need(not missing, f"{len(missing)} sidecar names are no node of the model: {missing[:5]}")
    meta = {p.key: p.value for p in m.metadata_props}
    need(META_KEY in meta, f"metadata {META_KEY} missing (have {sorted(meta)})")
    need(json.loads(meta[META_KEY]) == sidecar, "metadata nodes_to_exclude differs from the sidecar")
    expected = post_process_nodes(g)
    extra = [s for s in sidecar if s not in set(expected)]
    need(not extra, f"{len(extra)} excluded nodes feed a Conv (they are not post-process): {extra[:5]}")
    lacking = [s for s in expected if s not in set(sidecar)]
    need(not lacking, f"{len(lacking)} post-process nodes not excluded: {lacking[:5]}")

    inits = {i.name for i in g.initializer}
    outputs = {o.name for o in g.output}
    # issue 12: no initializer nobody reads (onnxruntime warns about each one on every load)
    read = {i for n in g.node for i in n.input} | outputs
    unused = sorted(inits - read)
    need(not unused, f"{len(unused)} unused initializers: {unused[:5]}")
    intermediates = [o for n in g.node for o in n.output if o and o not in outputs and o not in inits]
    vi = {v.name: shape_of(v) for v in g.value_info}
    dyn_ok = downstream_of(g, "NonMaxSuppression") if allow_dynamic_after_nms else set()
    # Tensors computed from NonMaxSuppression's data-dependent output are excluded from
    # quantization and have no static shape; their value_info is optional (counted, not required).
    after_nms_without_vi = [t for t in intermediates if t in dyn_ok and t not in vi]
    intermediates = [t for t in intermediates if t not in after_nms_without_vi]
    no_vi = [t for t in intermediates if t not in vi]
    need(not no_vi, f"{len(no_vi)} of {len(intermediates)} intermediate tensors lack value_info: {no_vi[:5]}")
    not_static = [t for t in intermediates if not is_static(vi[t]) and t not in dyn_ok]
    need(not not_static, f"{len(not_static)} intermediate tensors without a static shape: "
         f"{[(t, vi[t]) for t in not_static[:3]]}")
    out_not_static = [o.name for o in g.output if not is_static(shape_of(o)) and o.name not in dyn_ok]
    need(not out_not_static, f"graph outputs without a static shape: {out_not_static}")

    # independent shape inference from scratch
    bare = onnx.ModelProto()
    bare.CopyFrom(m)
    del bare.graph.value_info[:]
    inf = onnx.shape_inference.infer_shapes(bare, check_type=True, strict_mode=True, data_prop=True)
    got = {v.name: shape_of(v) for v in inf.graph.value_info}
    differ = []
    unconfirmed = []
    for t in intermediates:
        s = got.get(t)
        if s is None or s[1] is None or any(d is None or isinstance(d, str) for d in s[1]):
            if t in dyn_ok:
                # data-dependent after NMS: element type and rank must still agree
                if s is not None and s[1] is not None and vi[t][1] is not None and \
                        (s[0] != vi[t][0] or len(s[1]) != len(vi[t][1])):
                    differ.append((t, vi[t], s))
                continue
            unconfirmed.append((t, vi[t], s))
        elif s != vi[t]:
            differ.append((t, vi[t], s))
    need(not differ, f"{len(differ)} value_info entries differ from onnx shape inference, e.g. "
         f"{differ[0][0]}: value_info {differ[0][1]}, inferred {differ[0][2]}" if differ else "")
    need(not unconfirmed, f"{len(unconfirmed)} static shapes that onnx shape inference cannot infer, e.g. "
         f"{unconfirmed[0]}" if unconfirmed else "")
    extra_dyn = len([t for t in intermediates if t in dyn_ok])
    return (f"opset 13, {len(g.node)} nodes, {len(sidecar)} excluded (= every node with no Conv downstream), "
            f"value_info {len(intermediates)}/{len(intermediates)} intermediates = inferred"
            + (f" ({extra_dyn} after NMS data-dependent)" if extra_dyn else " (all static)")
            + (f"; {len(after_nms_without_vi)} tensors after NMS have no value_info (allowed)"
               if after_nms_without_vi else ""))


# ---------------------------------------------------------------------------------------------
# IoU ties (case c)
# ---------------------------------------------------------------------------------------------

def iou32(a, b):
    """IoU in float32 like onnxruntime's NMS (min/max per axis, no +1)."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    ax0, ax1 = min(a[0], a[2]), max(a[0], a[2])
    ay0, ay1 = min(a[1], a[3]), max(a[1], a[3])
    bx0, bx1 = min(b[0], b[2]), max(b[0], b[2])
    by0, by1 = min(b[1], b[3]), max(b[1], b[3])
    ix0, ix1 = max(ax0, bx0), min(ax1, bx1)
    iy0, iy1 = max(ay0, by0), min(ay1, by1)
    if ix1 <= ix0 or iy1 <= iy0:
        return np.float32(0)
    inter = np.float32((ix1 - ix0) * (iy1 - iy0))
    ua = np.float32((ax1 - ax0) * (ay1 - ay0)) + np.float32((bx1 - bx0) * (by1 - by0)) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float32(inter / ua)


def explain_by_ties(rows_p, rows_n, scale):
    """For rows present in one selection only, look for a candidate pair (the row's box and a box
    selected in the same class by the other run) whose IoU straddles the threshold between the
    pixel and normalized computations, or lies within TIE_EPS of it. Returns (explained,
    unexplained) lists of descriptions."""
    thr = np.float32(IOU_THR)

    def key(r):
        return (int(r[0]), int(r[1]), float(r[2]))
    kp = {key(r): r for r in rows_p}
    kn = {key(r): r for r in rows_n}
    explained, unexplained = [], []
    for k in sorted(set(kp) ^ set(kn)):
        b, c, _ = k
        only_in = "prepared" if k in kp else "naive"
        r = kp.get(k, kn.get(k))
        # the row's box in pixels and normalized
        bpx = (r[3:7] * scale if only_in == "prepared" else r[3:7]).astype(np.float64)
        other = rows_n if only_in == "prepared" else rows_p
        found = None
        for o in other:
            if int(o[0]) != b or int(o[1]) != c:
                continue
            opx = (o[3:7] * scale if only_in == "naive" else o[3:7]).astype(np.float64)
            i_px = iou32(bpx, opx)
            i_nm = iou32(bpx / scale, opx / scale)
            # onnxruntime's own float32 evaluation order may differ from iou32's by an ulp or
            # two, so an IoU within TIE_EPS of the threshold also counts as a tie
            if (i_px > thr) != (i_nm > thr) or min(abs(float(i_px) - IOU_THR), abs(float(i_nm) - IOU_THR)) <= TIE_EPS:
                found = f"class {c}: IoU {float(i_px):.9g} (px) vs {float(i_nm):.9g} (normalized) around {IOU_THR}"
                break
        (explained if found else unexplained).append(f"row {list(k)} only in {only_in}" + (f" [{found}]" if found else ""))
    return explained, unexplained


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------

def case_numbers(binary, m, tmp, state):
    P = tmp / f"{m.stem}.qprep.onnx"
    D = tmp / f"{m.stem}.decoded.onnx"
    postmerge(binary, "quant-prep", m.path, "-o", P)
    state["P"] = P  # case b checks its structure even if the numbers below differ
    postmerge(binary, "merge", m.path, "-o", D, "--layout", "decoded")
    op, od = run(P, m.input_name, m.x), run(D, m.input_name, m.x)
    need(sorted(op) == ["boxes", "scores"], f"quant-prep outputs {sorted(op)}, expected boxes, scores")
    need(sorted(od) == ["boxes", "scores"], f"decoded merge outputs {sorted(od)}")
    need(op["boxes"].dtype == np.float32 and op["scores"].dtype == np.float32, "outputs are not float32")
    ds = compare_scores(op["scores"], od["scores"], "scores")
    sb = compare_boxes(op["boxes"], od["boxes"], m.scale, "boxes")
    # issue 12: corners ordered, and the bounded decode keeps every coordinate finite
    pb = op["boxes"]
    need(np.all(np.isfinite(pb)), "non-finite normalized box coordinates")
    need(np.all(pb[..., 0] <= pb[..., 2]) and np.all(pb[..., 1] <= pb[..., 3]), "inverted boxes (x1 > x2 or y1 > y2)")
    wmax = float(np.max(np.maximum(pb[..., 2] - pb[..., 0], pb[..., 3] - pb[..., 1])))
    fin = np.isfinite(op["boxes"]) & (np.abs(od["boxes"]) <= JUNK_PX)
    # reported: the range of the ordinary (non-junk) normalized coordinates
    rng = (float(op["boxes"][fin].min()), float(op["boxes"][fin].max())) if fin.any() else (0.0, 0.0)
    return (f"{m.w}x{m.h}: max|Δscore| {ds:.1e}, {sb}; normalized box range "
            f"[{rng[0]:.2f}, {rng[1]:.2f}] over {op['boxes'].shape[1]} anchors; largest size {wmax:.2f}")


def case_structure(m, state):
    need("P" in state, "quant-prep output missing (case a failed)")
    return check_structure(state["P"], allow_dynamic_after_nms=False)


def case_pinto(binary, m, tmp):
    NP = tmp / f"{m.stem}.pinto_qprep.onnx"
    NN = tmp / f"{m.stem}.pinto.onnx"
    postmerge(binary, "merge", m.path, "-o", NP, "--layout", "pinto", "--quant-prep")
    postmerge(binary, "merge", m.path, "-o", NN, "--layout", "pinto")
    structure = check_structure(NP, allow_dynamic_after_nms=True)
    rp = run(NP, m.input_name, m.x)
    rn = run(NN, m.input_name, m.x)
    need(list(rp) == [PINTO] and list(rn) == [PINTO], f"outputs {list(rp)} / {list(rn)}, expected [{PINTO}]")
    a, b = rp[PINTO], rn[PINTO]
    if a.shape == b.shape and (a[:, :2] == b[:, :2]).all():
        ds = compare_scores(a[:, 2], b[:, 2], "scores")
        sb = compare_boxes(a[:, 3:7], b[:, 3:7], m.scale, "boxes")
        return f"{len(a)} rows identical (batch, class exact; max|Δscore| {ds:.1e}; {sb}); structure: {structure}"
    explained, unexplained = explain_by_ties(a, b, m.scale)
    need(not unexplained, f"{len(a)} prepared vs {len(b)} naive rows; unexplained: {unexplained[:4]}"
         + (f"; explained by IoU ties: {explained[:2]}" if explained else ""))
    return (f"{len(a)} prepared vs {len(b)} naive rows; every difference an IoU tie at {IOU_THR}: "
            f"{explained[:3]}; structure: {structure}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", type=pathlib.Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", type=pathlib.Path, help="write the models here instead of a temp dir")
    args = ap.parse_args()
    binary = args.binary.resolve()
    t0 = time.perf_counter()
    rep = Report()
    with tempfile.TemporaryDirectory(prefix="quantprep_check_") as td:
        tmp = args.keep or pathlib.Path(td)
        tmp.mkdir(parents=True, exist_ok=True)
        models = discover(args.quick)
        if not models:
            print("no models found", file=sys.stderr)
            return 2
        for m in models:
            state = {}
            rep.case(f"quant-prep {m.stem}: decoded P vs D", lambda: case_numbers(binary, m, tmp, state))
            rep.case(f"quant-prep {m.stem}: structure", lambda: case_structure(m, state))
            rep.case(f"merge --quant-prep {m.stem}: pinto vs naive pinto", lambda: case_pinto(binary, m, tmp))
    print(f"{len(models)} models, {time.perf_counter() - t0:.1f} s")
    for f in rep.failures:
        print(f"  failed: {f}")
    print(f"{rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
