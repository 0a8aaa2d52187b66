//! Plain-Rust reference post-process: the oracle for every graph `postmerge` appends.
//!
//! The pipeline mirrors what a merged model computes, step by step:
//!
//! 1. [`decode`]: raw head output `[B, N, 5+C]` → [`Decoded`] boxes `[B, N, 4]` (x1, y1, x2, y2 in
//!    input pixels) and scores `[B, N, C]` = objectness × class probability.
//! 2. [`nms`]: ONNX `NonMaxSuppression` semantics exactly as onnxruntime (and tract) implement them →
//!    a list of [`Selection`]s `(batch, class, box_index)` in the runtime's output order.
//! 3. [`render`]: the selections as the tensors of one output [`Layout`] (SPEC §2), or
//!    [`detections`] for a uniform [`Detection`] list; [`detections_from_outputs`] reads a model's
//!    layout tensors back into the same list.
//!
//! The official post-processing of the upstream projects differs from ONNX semantics in known
//! ways. Those conventions are options of the same reference, so tests can reproduce the official
//! detections (`shared/ref/*/dets.json`) and explain every difference:
//! [`IouConvention::LegacyPlusOne`] (YOLOX `multiclass_nms`, see [`yolox_multiclass_nms`]),
//! [`yolox_postprocess`] (YOLOX `utils/boxes.py::postprocess`) and [`gold_yolo_nms`] (YOLOv6 /
//! Gold-YOLO `non_max_suppression`).
//!
//! Every function validates its inputs and returns an error instead of panicking.

use std::cmp::Ordering;

use anyhow::{anyhow, ensure, Context, Result};

// ---------------------------------------------------------------------------------------------
// Head description and decode
// ---------------------------------------------------------------------------------------------

/// Which raw head layout a model's output has: the detector family ([`crate::families::Family`]).
pub use crate::families::Family as HeadKind;

/// Everything [`decode`] needs to know about a head besides its output tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSpec {
    /// The head layout.
    pub kind: HeadKind,
    /// Number of classes C (the row length is 5 + C).
    pub num_classes: usize,
    /// Strides of the feature levels, in anchor order (8, 16, 32, and 64 for p6 heads). Used
    /// only by the YOLOX raw head, whose grid [`decode`] generates.
    pub strides: Vec<u32>,
    /// Network input height in pixels.
    pub input_h: usize,
    /// Network input width in pixels.
    pub input_w: usize,
}

/// One feature level of a YOLOX grid: its stride and its size in cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLevel {
    /// Stride in input pixels.
    pub stride: u32,
    /// Rows: `input_h / stride`.
    pub h: usize,
    /// Columns: `input_w / stride`.
    pub w: usize,
}

impl HeadSpec {
    /// A spec with the usual strides 8, 16, 32.
    pub fn new(kind: HeadKind, num_classes: usize, input_h: usize, input_w: usize) -> HeadSpec {
        HeadSpec {
            kind,
            num_classes,
            strides: vec![8, 16, 32],
            input_h,
            input_w,
        }
    }

    /// Length of one row of the raw output: 5 + C.
    pub fn row_len(&self) -> Result<usize> {
        ensure!(self.num_classes >= 1, "a head needs at least one class");
        self.num_classes
            .checked_add(5)
            .ok_or_else(|| anyhow!("too many classes"))
    }

    /// The grid levels in anchor order. Errors if a stride is 0 or does not divide the input size.
    pub fn grid_levels(&self) -> Result<Vec<GridLevel>> {
        ensure!(
            !self.strides.is_empty(),
            "no strides given for a {} head",
            self.kind.name()
        );
        self.strides
            .iter()
            .map(|&stride| {
                let s = usize::try_from(stride).map_err(|_| anyhow!("stride too large"))?;
                ensure!(s > 0, "stride 0 is invalid");
                ensure!(
                    self.input_h.is_multiple_of(s) && self.input_w.is_multiple_of(s),
                    "input {}x{} (HxW) is not a multiple of stride {}",
                    self.input_h,
                    self.input_w,
                    s
                );
                Ok(GridLevel {
                    stride,
                    h: self.input_h / s,
                    w: self.input_w / s,
                })
            })
            .collect()
    }

    /// Number of anchors N = Σ (H/s)·(W/s) over the strides.
    pub fn num_anchors(&self) -> Result<usize> {
        self.grid_levels()?.iter().try_fold(0usize, |acc, l| {
            l.h.checked_mul(l.w)
                .and_then(|hw| acc.checked_add(hw))
                .ok_or_else(|| anyhow!("anchor count overflows"))
        })
    }
}

/// Decoded head output: corner boxes and per-class scores, plus the raw score columns the
/// official single-label conventions need.
///
/// All tensors are flat, C order. Functions taking a `Decoded` validate the lengths first
/// ([`Decoded::validate`]), so a hand-built value with inconsistent fields gives an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Batch size B.
    pub batch: usize,
    /// Boxes per image N.
    pub num_boxes: usize,
    /// Classes C.
    pub num_classes: usize,
    /// `[B, N, 4]`: x1, y1, x2, y2 in input pixels.
    pub boxes: Vec<f32>,
    /// `[B, N, C]`: objectness × class probability, computed in f32 as `obj * cls`.
    pub scores: Vec<f32>,
    /// `[B, N]`: column 4 of the raw output (1.0 when built by [`Decoded::from_boxes_scores`]).
    pub objectness: Vec<f32>,
    /// `[B, N, C]`: columns 5… of the raw output (a copy of `scores` when built by
    /// [`Decoded::from_boxes_scores`]).
    pub class_probs: Vec<f32>,
}

impl Decoded {
    /// Wraps pre-NMS tensors taken from a merged model: `boxes` `[B, N, 4]` (x1, y1, x2, y2) and
    /// `scores` `[B, N, C]`. Objectness is set to 1 and class probabilities to the scores.
    pub fn from_boxes_scores(
        batch: usize,
        num_boxes: usize,
        num_classes: usize,
        boxes: Vec<f32>,
        scores: Vec<f32>,
    ) -> Result<Decoded> {
        let objectness = vec![1.0; batch.checked_mul(num_boxes).ok_or_else(too_large)?];
        let d = Decoded {
            batch,
            num_boxes,
            num_classes,
            boxes,
            class_probs: scores.clone(),
            scores,
            objectness,
        };
        d.validate()?;
        Ok(d)
    }

    /// Like [`Decoded::from_boxes_scores`] with scores in ONNX NonMaxSuppression order
    /// `[B, C, N]` (as fed to the NMS node after the Transpose).
    pub fn from_boxes_scores_bcn(
        batch: usize,
        num_boxes: usize,
        num_classes: usize,
        boxes: Vec<f32>,
        scores_bcn: Vec<f32>,
    ) -> Result<Decoded> {
        let per_image = num_boxes.checked_mul(num_classes).ok_or_else(too_large)?;
        let total = per_image.checked_mul(batch).ok_or_else(too_large)?;
        ensure!(
            scores_bcn.len() == total,
            "scores [B, C, N] = [{batch}, {num_classes}, {num_boxes}] need {total} values, got {}",
            scores_bcn.len()
        );
        let mut scores = vec![0.0; total];
        if per_image > 0 {
            for (dst, src) in scores
                .chunks_exact_mut(per_image)
                .zip(scores_bcn.chunks_exact(per_image))
            {
                for (c, class_row) in src.chunks_exact(num_boxes).enumerate() {
                    for (i, &s) in class_row.iter().enumerate() {
                        if let Some(slot) = dst.get_mut(i * num_classes + c) {
                            *slot = s;
                        }
                    }
                }
            }
        }
        Decoded::from_boxes_scores(batch, num_boxes, num_classes, boxes, scores)
    }

    /// Checks that every tensor has the length its dimensions announce.
    pub fn validate(&self) -> Result<()> {
        let bn = self
            .batch
            .checked_mul(self.num_boxes)
            .ok_or_else(too_large)?;
        let bn4 = bn.checked_mul(4).ok_or_else(too_large)?;
        let bnc = bn.checked_mul(self.num_classes).ok_or_else(too_large)?;
        for (name, len, want) in [
            ("boxes", self.boxes.len(), bn4),
            ("scores", self.scores.len(), bnc),
            ("objectness", self.objectness.len(), bn),
            ("class_probs", self.class_probs.len(), bnc),
        ] {
            ensure!(
                len == want,
                "decoded `{name}` has {len} values, expected {want} for B={}, N={}, C={}",
                self.batch,
                self.num_boxes,
                self.num_classes
            );
        }
        Ok(())
    }

    /// Flat offset of element 0 of box `i` of image `b` in a `[B, N, width]` tensor (checked).
    fn flat(&self, b: usize, i: usize, width: usize) -> Option<usize> {
        b.checked_mul(self.num_boxes)?
            .checked_add(i)?
            .checked_mul(width)
    }

    /// Box `i` of image `b` as `[x1, y1, x2, y2]`, or `None` if out of range.
    pub fn box_at(&self, b: usize, i: usize) -> Option<[f32; 4]> {
        if b >= self.batch || i >= self.num_boxes {
            return None;
        }
        let start = self.flat(b, i, 4)?;
        let s = self.boxes.get(start..start.checked_add(4)?)?;
        Some([s[0], s[1], s[2], s[3]])
    }

    /// Score of class `c` for box `i` of image `b`, or `None` if out of range.
    pub fn score(&self, b: usize, i: usize, c: usize) -> Option<f32> {
        self.scores_of(b, i)?.get(c).copied()
    }

    /// All C scores of box `i` of image `b`.
    pub fn scores_of(&self, b: usize, i: usize) -> Option<&[f32]> {
        if b >= self.batch || i >= self.num_boxes {
            return None;
        }
        let start = self.flat(b, i, self.num_classes)?;
        self.scores.get(start..start.checked_add(self.num_classes)?)
    }

    /// All C class probabilities (raw columns 5…) of box `i` of image `b`.
    pub fn class_probs_of(&self, b: usize, i: usize) -> Option<&[f32]> {
        if b >= self.batch || i >= self.num_boxes {
            return None;
        }
        let start = self.flat(b, i, self.num_classes)?;
        self.class_probs
            .get(start..start.checked_add(self.num_classes)?)
    }

    /// Objectness (raw column 4) of box `i` of image `b`.
    pub fn objectness_at(&self, b: usize, i: usize) -> Option<f32> {
        if b >= self.batch || i >= self.num_boxes {
            return None;
        }
        self.objectness.get(self.flat(b, i, 1)?).copied()
    }
}

fn too_large() -> anyhow::Error {
    anyhow!("tensor dimensions overflow")
}

pub use crate::families::yolox::{log_size_bound, LOG_SIZE_BOUND_FACTOR};

/// Which of the merged graph's robustness steps [`decode_with`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeOptions {
    /// YOLOX raw heads: log-sizes bounded at [`log_size_bound`] before `exp` (ONNX `Min`).
    pub bound_log_size: bool,
    /// Decoded heads (YOLOX `--decode_in_inference`, Gold-YOLO): `w, h` taken as `|w|, |h|`, so
    /// `x1 <= x2` and `y1 <= y2` for every box (random-weight Gold-YOLO emits negative widths).
    /// For a negative `w` this gives exactly the swapped pair of the plain formula
    /// (`cx - |w|·0.5 == cx + w·0.5` in IEEE arithmetic), and ONNX NonMaxSuppression orders each
    /// box's corners with min/max before it computes IoU, so the NMS selections are identical;
    /// only the reported corners of inverted boxes are swapped into order.
    pub order_corners: bool,
}

impl DecodeOptions {
    /// What the graphs `postmerge merge` appends compute (both steps).
    pub const MERGED: DecodeOptions = DecodeOptions {
        bound_log_size: true,
        order_corners: true,
    };
    /// The upstream projects' own arithmetic (no bound, corners as computed): for reproducing
    /// official detections.
    pub const OFFICIAL: DecodeOptions = DecodeOptions {
        bound_log_size: false,
        order_corners: false,
    };
}

/// Decodes a raw head output `[B, N, 5+C]` (flat, C order) into corner boxes and scores, as the
/// merged graph does ([`DecodeOptions::MERGED`]); see [`decode_with`].
pub fn decode(raw: &[f32], batch: usize, n: usize, spec: &HeadSpec) -> Result<Decoded> {
    decode_with(raw, batch, n, spec, DecodeOptions::MERGED)
}

/// Decodes a raw head output `[B, N, 5+C]` (flat, C order) into corner boxes and scores.
///
/// For the YOLOX raw head the grid is generated per stride `s` in `spec.strides` order with
/// `hs = H/s`, `ws = W/s`, anchors row-major (y then x), and every value is computed in f32 in
/// exactly this order of operations, which the appended ONNX graph mirrors:
///
/// ```text
/// cx = (raw0 + gx) * s        cy = (raw1 + gy) * s        // Add, then Mul
/// w  = exp(min(raw2, L)) * s  h  = exp(min(raw3, L)) * s  // Min, Exp, then Mul
/// ```
///
/// with `L = log_size_bound(H, W, s)` when `opts.bound_log_size` (else no `min`); a NaN log-size
/// stays NaN (numpy / onnxruntime `Min`; tract's `Min` returns the bound instead).
///
/// For the decoded kinds, `cx, cy, w, h` are columns 0-3 as given (`|w|, |h|` with
/// `opts.order_corners`). Then, for every kind:
///
/// ```text
/// x1 = cx - w * 0.5    y1 = cy - h * 0.5    x2 = cx + w * 0.5    y2 = cy + h * 0.5
/// score[c] = obj * cls[c]                                  // column 4 × column 5+c
/// ```
///
/// (`w * 0.5` equals the official code's `w / 2` bit for bit; `exp` is Rust's `f32::exp`, which
/// may differ from a runtime's vectorized Exp by an ulp.)
///
/// Errors (never panics) if `raw.len() != batch * n * (5 + C)`, or for `YoloxRaw` if a stride does
/// not divide the input size or `n != Σ (H/s)(W/s)`.
pub fn decode_with(
    raw: &[f32],
    batch: usize,
    n: usize,
    spec: &HeadSpec,
    opts: DecodeOptions,
) -> Result<Decoded> {
    spec.kind.def().decode(raw, batch, n, spec, opts)
}

// ---------------------------------------------------------------------------------------------
// IoU conventions
// ---------------------------------------------------------------------------------------------

/// How the IoU of two boxes is computed and compared with the threshold. In every convention a
/// candidate is suppressed when its IoU with an already selected box is *strictly greater* than
/// the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IouConvention {
    /// ONNX NonMaxSuppression as onnxruntime's CPU kernel computes it (`center_point_box = 0`):
    /// each box's two corners are ordered per axis with min/max (so x1y1x2y2 and y1x1y2x2 inputs
    /// give the same result — IoU is symmetric in the axes), no "+1", f32 arithmetic,
    /// `inter / (area_candidate + area_selected - inter)`, IoU taken as 0 when the boxes do not
    /// overlap; f32 comparison with the f32 threshold.
    Onnx,
    /// YOLOX `demo_utils.nms` (numpy, f32): widths, heights and areas get the legacy "+1 pixel",
    /// `w = max(0, xx2 - xx1 + 1)`, `ovr = inter / (area_i + area_j - inter)`; a box is kept only
    /// if `ovr <= thr` (so a NaN IoU suppresses); f32 comparison.
    LegacyPlusOne,
    /// `torchvision.ops.nms` (CPU kernel): no "+1", corners used as given, f32 arithmetic, but the
    /// threshold is a Python float (f64): the f32 IoU is compared in f64 with the decimal value of
    /// the threshold (the shortest decimal that round-trips the f32 threshold, e.g. 0.45).
    Torchvision,
}

/// `std::max` / `std::min` as C++ defines them (the first argument wins ties and NaN cases).
pub(crate) fn cpp_max(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}
fn cpp_min(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}
/// onnxruntime's `MaxMin`: orders two coordinates.
fn ort_min_max(lhs: f32, rhs: f32) -> (f32, f32) {
    if lhs >= rhs {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    }
}

/// The decimal (f64) value of an f32 threshold as a user would have typed it (e.g. 0.45).
fn decimal_f64(x: f32) -> f64 {
    format!("{x}").parse::<f64>().unwrap_or(f64::from(x))
}

/// The IoU of two boxes `[x1, y1, x2, y2]` as `conv` computes it (0 when they do not overlap, for
/// [`IouConvention::Onnx`]). Symmetric in its arguments.
pub fn iou(conv: IouConvention, a: &[f32; 4], b: &[f32; 4]) -> f32 {
    match conv {
        IouConvention::Onnx => {
            // onnxruntime BoxInfo: index pairs (0,2) and (1,3) are the two axes.
            let (a0, a2) = ort_min_max(a[0], a[2]);
            let (a1, a3) = ort_min_max(a[1], a[3]);
            let (b0, b2) = ort_min_max(b[0], b[2]);
            let (b1, b3) = ort_min_max(b[1], b[3]);
            let area_a = (a2 - a0) * (a3 - a1);
            let area_b = (b2 - b0) * (b3 - b1);
            let i1_min = cpp_max(a1, b1);
            let i1_max = cpp_min(a3, b3);
            if i1_max <= i1_min {
                return 0.0;
            }
            let i0_min = cpp_max(a0, b0);
            let i0_max = cpp_min(a2, b2);
            if i0_max <= i0_min {
                return 0.0;
            }
            let inter = (i1_max - i1_min) * (i0_max - i0_min);
            if inter <= 0.0 {
                return 0.0;
            }
            inter / (area_a + area_b - inter)
        }
        IouConvention::LegacyPlusOne => {
            let area_a = (a[2] - a[0] + 1.0) * (a[3] - a[1] + 1.0);
            let area_b = (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
            let xx1 = np_maximum(a[0], b[0]);
            let yy1 = np_maximum(a[1], b[1]);
            let xx2 = np_minimum(a[2], b[2]);
            let yy2 = np_minimum(a[3], b[3]);
            let w = np_maximum(0.0, xx2 - xx1 + 1.0);
            let h = np_maximum(0.0, yy2 - yy1 + 1.0);
            let inter = w * h;
            inter / (area_a + area_b - inter)
        }
        IouConvention::Torchvision => {
            let area_a = (a[2] - a[0]) * (a[3] - a[1]);
            let area_b = (b[2] - b[0]) * (b[3] - b[1]);
            let xx1 = cpp_max(a[0], b[0]);
            let yy1 = cpp_max(a[1], b[1]);
            let xx2 = cpp_min(a[2], b[2]);
            let yy2 = cpp_min(a[3], b[3]);
            let w = cpp_max(0.0, xx2 - xx1);
            let h = cpp_max(0.0, yy2 - yy1);
            let inter = w * h;
            inter / (area_a + area_b - inter)
        }
    }
}

/// numpy `maximum` / `minimum` propagate NaN.
fn np_maximum(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}
fn np_minimum(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// Whether `conv` suppresses `candidate` given an already `selected` box (see
/// [`IouConvention`] for the exact comparison).
pub fn suppresses(
    conv: IouConvention,
    selected: &[f32; 4],
    candidate: &[f32; 4],
    iou_threshold: f32,
) -> bool {
    let v = iou(conv, selected, candidate);
    match conv {
        IouConvention::Onnx => v > iou_threshold,
        // numpy keeps `ovr <= thr`; anything else (including NaN) is suppressed.
        IouConvention::LegacyPlusOne => !matches!(
            v.partial_cmp(&iou_threshold),
            Some(Ordering::Less | Ordering::Equal)
        ),
        IouConvention::Torchvision => f64::from(v) > decimal_f64(iou_threshold),
    }
}

// ---------------------------------------------------------------------------------------------
// NMS
// ---------------------------------------------------------------------------------------------

/// NonMaxSuppression parameters. Defaults follow PINTO's published models: score 0.25, IoU 0.40,
/// 20 boxes per class, class-aware.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NmsParams {
    /// A box is a candidate for a class when its score is strictly greater than this
    /// (`>=` only with [`ScoreCmp::GreaterOrEqual`]).
    pub score_threshold: f32,
    /// A candidate is suppressed when its IoU with a selected box is strictly greater than this.
    /// Must be in [0, 1] (onnxruntime refuses other values).
    pub iou_threshold: f32,
    /// At most this many selections per (batch, class) — per batch when `agnostic`. 0 selects
    /// nothing, as the ONNX spec and onnxruntime say (tract reads 0 as "unlimited"; never emit 0).
    /// Use `usize::MAX` for "no cap".
    pub max_per_class: usize,
    /// One NMS pass per image over all boxes instead of one per class. Each box takes its best
    /// score over the classes and the class of that score (ArgMax: ties go to the lowest class
    /// index); the selection reports that class.
    pub agnostic: bool,
}

impl Default for NmsParams {
    fn default() -> Self {
        NmsParams {
            score_threshold: 0.25,
            iou_threshold: 0.40,
            max_per_class: 20,
            agnostic: false,
        }
    }
}

/// How a score is compared with the score threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScoreCmp {
    /// `score > threshold` (ONNX NonMaxSuppression, YOLOX `multiclass_nms`, YOLOv6).
    Greater,
    /// `score >= threshold` (YOLOX `utils/boxes.py::postprocess`).
    GreaterOrEqual,
}

impl ScoreCmp {
    fn passes(self, score: f32, threshold: f32) -> bool {
        match self {
            ScoreCmp::Greater => score > threshold,
            ScoreCmp::GreaterOrEqual => score >= threshold,
        }
    }
}

/// The NMS convention: which IoU and which score comparison. [`NmsConvention::ONNX`] is what
/// merged graphs compute; the others reproduce official post-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NmsConvention {
    /// IoU formula and comparison.
    pub iou: IouConvention,
    /// Score threshold comparison.
    pub score_cmp: ScoreCmp,
}

impl NmsConvention {
    /// ONNX NonMaxSuppression (onnxruntime / tract).
    pub const ONNX: NmsConvention = NmsConvention {
        iou: IouConvention::Onnx,
        score_cmp: ScoreCmp::Greater,
    };
    /// YOLOX `demo_utils.multiclass_nms`: legacy +1 IoU, `score > thr`.
    pub const YOLOX_LEGACY: NmsConvention = NmsConvention {
        iou: IouConvention::LegacyPlusOne,
        score_cmp: ScoreCmp::Greater,
    };
}

/// One NMS pick: `(batch, class, box_index)`, a row of ONNX NonMaxSuppression's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selection {
    /// Image index in the batch.
    pub batch: usize,
    /// Class index.
    pub class: usize,
    /// Index of the box (anchor) in `0..N`.
    pub box_index: usize,
}

/// Greedy NMS over candidates `(score, index)` listed in ascending index order. Sorts them by
/// descending score (stable, so ties keep the lower index first, as onnxruntime's comparator and
/// tract's stable sort do), then selects greedily up to `cap`.
pub(crate) fn greedy(
    mut candidates: Vec<(f32, usize)>,
    box_of: impl Fn(usize) -> Result<[f32; 4]>,
    iou_conv: IouConvention,
    iou_threshold: f32,
    cap: usize,
) -> Result<Vec<usize>> {
    candidates.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal));
    let mut kept: Vec<(usize, [f32; 4])> = Vec::new();
    for (_, index) in candidates {
        if kept.len() >= cap {
            break;
        }
        let candidate = box_of(index)?;
        if !kept
            .iter()
            .any(|(_, sel)| suppresses(iou_conv, sel, &candidate, iou_threshold))
        {
            kept.push((index, candidate));
        }
    }
    Ok(kept.into_iter().map(|(i, _)| i).collect())
}

/// First maximum and its index (ties → lowest index, like ONNX ArgMax with
/// `select_last_index = 0` and `torch.max`). NaN values never win.
pub(crate) fn argmax(values: &[f32]) -> Option<(f32, usize)> {
    let mut best: Option<(f32, usize)> = None;
    for (i, &v) in values.iter().enumerate() {
        match best {
            None if !v.is_nan() => best = Some((v, i)),
            Some((b, _)) if v > b => best = Some((v, i)),
            _ => {}
        }
    }
    best
}

pub(crate) fn check_iou_threshold(t: f32) -> Result<()> {
    ensure!(
        (0.0..=1.0).contains(&t),
        "iou_threshold must be in [0, 1], got {t}"
    );
    Ok(())
}

/// ONNX NonMaxSuppression semantics, exactly as onnxruntime's CPU kernel (and tract) compute them:
/// per image, per class, the boxes whose score is strictly greater than `score_threshold`, sorted
/// by descending score (ties: lower box index first), are selected greedily; a candidate is
/// suppressed when its [`IouConvention::Onnx`] IoU with a selected box of the same class is
/// strictly greater than `iou_threshold`; at most `max_per_class` per (image, class).
///
/// Output order is onnxruntime's: image-major, then class, then selection order. With
/// `params.agnostic` there is one pass per image over all boxes (see [`NmsParams::agnostic`]).
pub fn nms(decoded: &Decoded, params: &NmsParams) -> Result<Vec<Selection>> {
    nms_with(decoded, params, &NmsConvention::ONNX)
}

/// [`nms`] with another IoU / score-threshold convention. With
/// [`NmsConvention::YOLOX_LEGACY`], `max_per_class = usize::MAX` and `agnostic = false` this is
/// YOLOX's `multiclass_nms_class_aware` (see [`yolox_multiclass_nms`]); with `agnostic = true` it
/// is `multiclass_nms_class_agnostic`.
pub fn nms_with(
    decoded: &Decoded,
    params: &NmsParams,
    conv: &NmsConvention,
) -> Result<Vec<Selection>> {
    decoded.validate()?;
    check_iou_threshold(params.iou_threshold)?;
    let mut out = Vec::new();
    if params.max_per_class == 0 {
        return Ok(out);
    }
    let (n, c) = (decoded.num_boxes, decoded.num_classes);
    for b in 0..decoded.batch {
        let box_of = |i: usize| {
            decoded
                .box_at(b, i)
                .ok_or_else(|| anyhow!("internal: box {i} of image {b} out of range"))
        };
        if params.agnostic {
            let mut best_class = vec![0usize; n];
            let mut candidates = Vec::new();
            for (i, slot) in best_class.iter_mut().enumerate() {
                let scores = decoded
                    .scores_of(b, i)
                    .ok_or_else(|| anyhow!("internal: scores"))?;
                if let Some((s, k)) = argmax(scores) {
                    *slot = k;
                    if conv.score_cmp.passes(s, params.score_threshold) {
                        candidates.push((s, i));
                    }
                }
            }
            for i in greedy(
                candidates,
                box_of,
                conv.iou,
                params.iou_threshold,
                params.max_per_class,
            )? {
                let class = best_class.get(i).copied().unwrap_or(0);
                out.push(Selection {
                    batch: b,
                    class,
                    box_index: i,
                });
            }
        } else {
            for class in 0..c {
                let mut candidates = Vec::new();
                for i in 0..n {
                    let s = decoded
                        .score(b, i, class)
                        .ok_or_else(|| anyhow!("internal: score"))?;
                    if conv.score_cmp.passes(s, params.score_threshold) {
                        candidates.push((s, i));
                    }
                }
                for i in greedy(
                    candidates,
                    box_of,
                    conv.iou,
                    params.iou_threshold,
                    params.max_per_class,
                )? {
                    out.push(Selection {
                        batch: b,
                        class,
                        box_index: i,
                    });
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Official conventions
// ---------------------------------------------------------------------------------------------

pub use crate::families::yolox::{yolox_multiclass_nms, yolox_postprocess};

/// `torchvision.ops.batched_nms` over `dets` = (score, box index, class) of image `b`, returning
/// selections in its output order (descending score).
pub(crate) fn torchvision_batched_nms(
    decoded: &Decoded,
    b: usize,
    dets: &[(f32, usize, usize)],
    thr: f32,
) -> Result<Vec<Selection>> {
    let box_of = |i: usize| {
        decoded
            .box_at(b, i)
            .ok_or_else(|| anyhow!("internal: box {i} out of range"))
    };
    let mut out = Vec::new();
    if dets.len().saturating_mul(4) > 4000 {
        // _batched_nms_vanilla: per class, then all kept sorted by descending score.
        let mut classes: Vec<usize> = dets.iter().map(|d| d.2).collect();
        classes.sort_unstable();
        classes.dedup();
        let mut kept_mask = vec![false; dets.len()];
        for class in classes {
            let members: Vec<usize> = (0..dets.len()).filter(|&k| dets[k].2 == class).collect();
            let cands: Vec<(f32, usize)> = members
                .iter()
                .enumerate()
                .map(|(m, &k)| (dets[k].0, m))
                .collect();
            let member_box = |m: usize| {
                let k = *members.get(m).ok_or_else(|| anyhow!("internal: member"))?;
                box_of(dets[k].1)
            };
            for m in greedy(
                cands,
                member_box,
                IouConvention::Torchvision,
                thr,
                usize::MAX,
            )? {
                if let Some(&k) = members.get(m) {
                    kept_mask[k] = true;
                }
            }
        }
        let mut kept: Vec<usize> = (0..dets.len()).filter(|&k| kept_mask[k]).collect();
        kept.sort_by(|&x, &y| dets[y].0.partial_cmp(&dets[x].0).unwrap_or(Ordering::Equal));
        for k in kept {
            out.push(Selection {
                batch: b,
                class: dets[k].2,
                box_index: dets[k].1,
            });
        }
    } else {
        // _batched_nms_coordinate_trick
        let mut max_coordinate = f32::NEG_INFINITY;
        for d in dets {
            for v in box_of(d.1)? {
                max_coordinate = cpp_max(max_coordinate, v);
            }
        }
        let offset_box = |k: usize| -> Result<[f32; 4]> {
            let d = dets.get(k).ok_or_else(|| anyhow!("internal: det"))?;
            let off = d.2 as f32 * (max_coordinate + 1.0);
            let bx = box_of(d.1)?;
            Ok([bx[0] + off, bx[1] + off, bx[2] + off, bx[3] + off])
        };
        let cands: Vec<(f32, usize)> = dets.iter().enumerate().map(|(k, d)| (d.0, k)).collect();
        for k in greedy(
            cands,
            offset_box,
            IouConvention::Torchvision,
            thr,
            usize::MAX,
        )? {
            if let Some(d) = dets.get(k) {
                out.push(Selection {
                    batch: b,
                    class: d.2,
                    box_index: d.1,
                });
            }
        }
    }
    Ok(out)
}

pub use crate::families::gold_yolo::{gold_yolo_nms, GoldYoloNmsParams};

// ---------------------------------------------------------------------------------------------
// Detections and output layouts
// ---------------------------------------------------------------------------------------------

/// One detection in the uniform view every layout can be read into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Image index in the batch.
    pub batch: usize,
    /// Class index.
    pub class: usize,
    /// Score (objectness × class probability).
    pub score: f32,
    /// Left, in input pixels.
    pub x1: f32,
    /// Top, in input pixels.
    pub y1: f32,
    /// Right, in input pixels.
    pub x2: f32,
    /// Bottom, in input pixels.
    pub y2: f32,
}

impl Detection {
    /// The box as `[x1, y1, x2, y2]`.
    pub fn bbox(&self) -> [f32; 4] {
        [self.x1, self.y1, self.x2, self.y2]
    }
}

/// The selections as detections (same order), with the box and the score of the selected class.
pub fn detections(decoded: &Decoded, selections: &[Selection]) -> Result<Vec<Detection>> {
    decoded.validate()?;
    selections
        .iter()
        .map(|s| {
            let bx = decoded
                .box_at(s.batch, s.box_index)
                .ok_or_else(|| anyhow!("selection {s:?} is out of range"))?;
            let score = decoded
                .score(s.batch, s.box_index, s.class)
                .ok_or_else(|| anyhow!("selection {s:?} is out of range"))?;
            Ok(Detection {
                batch: s.batch,
                class: s.class,
                score,
                x1: bx[0],
                y1: bx[1],
                x2: bx[2],
                y2: bx[3],
            })
        })
        .collect()
}

// The output layouts (`Layout`, `render`, `detections_from_outputs`, `OutputTensor`) live in
// `crate::layouts`, one file per layout; these paths keep working.
pub use crate::layouts::{detections_from_outputs, render, Layout, OutputTensor};

/// Convenience: decode, ONNX-semantics NMS and detections in one call.
pub fn reference_detections(
    raw: &[f32],
    batch: usize,
    n: usize,
    spec: &HeadSpec,
    params: &NmsParams,
) -> Result<Vec<Detection>> {
    let decoded = decode(raw, batch, n, spec).context("decoding the raw head output")?;
    let selections = nms(&decoded, params)?;
    detections(&decoded, &selections)
}

#[cfg(test)]
/// Builders shared by the unit tests of the reference and of the layouts.
pub(crate) mod test_support {
    use super::{Decoded, Selection};

    /// A decoded tensor for several images from (box, per-class scores) pairs.
    pub(crate) fn dec_batch(images: &[&[([f32; 4], &[f32])]]) -> Decoded {
        let n = images[0].len();
        let c = images[0][0].1.len();
        let mut boxes = Vec::new();
        let mut scores = Vec::new();
        for img in images {
            assert_eq!(img.len(), n);
            for (b, s) in img.iter() {
                boxes.extend_from_slice(b);
                scores.extend_from_slice(s);
            }
        }
        Decoded::from_boxes_scores(images.len(), n, c, boxes, scores).unwrap()
    }

    /// A selection.
    pub(crate) fn sel(batch: usize, class: usize, box_index: usize) -> Selection {
        Selection {
            batch,
            class,
            box_index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{dec_batch, sel};

    /// A decoded tensor for one image from (box, per-class scores) pairs.
    fn dec(items: &[([f32; 4], &[f32])]) -> Decoded {
        dec_batch(&[items])
    }

    fn params(score: f32, iou: f32, cap: usize) -> NmsParams {
        NmsParams {
            score_threshold: score,
            iou_threshold: iou,
            max_per_class: cap,
            agnostic: false,
        }
    }

    // Integer geometry: A = [0,0,10,10], B = [0,5,10,15] → inter 50, union 150, IoU 1/3;
    // C = [0,0,10,5] inside A → inter 50, union 100, IoU 0.5 exactly; FAR overlaps nothing.
    const A: [f32; 4] = [0.0, 0.0, 10.0, 10.0];
    const B: [f32; 4] = [0.0, 5.0, 10.0, 15.0];
    const C: [f32; 4] = [0.0, 0.0, 10.0, 5.0];
    const FAR: [f32; 4] = [100.0, 100.0, 110.0, 110.0];

    #[test]
    fn iou_values() {
        assert_eq!(iou(IouConvention::Onnx, &A, &B), 50.0 / 150.0);
        assert_eq!(iou(IouConvention::Onnx, &A, &C), 0.5);
        assert_eq!(iou(IouConvention::Onnx, &A, &FAR), 0.0);
        // Corner order does not matter for ONNX (min/max per axis), and x/y swap does not either.
        assert_eq!(iou(IouConvention::Onnx, &[10.0, 10.0, 0.0, 0.0], &C), 0.5);
        assert_eq!(
            iou(
                IouConvention::Onnx,
                &[0.0, 0.0, 5.0, 10.0],
                &[0.0, 0.0, 10.0, 10.0]
            ),
            0.5
        );
        // Legacy +1: A is 11x11 = 121, C is 11x6 = 66, inter 11*6 = 66 → 66 / 121.
        assert_eq!(iou(IouConvention::LegacyPlusOne, &A, &C), 66.0 / 121.0);
        // Touching boxes: 0 for ONNX, but the +1 convention counts a 1-pixel overlap.
        let touch = [10.0, 0.0, 20.0, 10.0];
        assert_eq!(iou(IouConvention::Onnx, &A, &touch), 0.0);
        assert_eq!(
            iou(IouConvention::LegacyPlusOne, &A, &touch),
            11.0 / (121.0 + 121.0 - 11.0)
        );
        assert_eq!(iou(IouConvention::Torchvision, &A, &C), 0.5);
    }

    #[test]
    fn iou_threshold_is_strict() {
        // IoU exactly 0.5: not suppressed at 0.5, suppressed just below.
        assert!(!suppresses(IouConvention::Onnx, &A, &C, 0.5));
        assert!(suppresses(IouConvention::Onnx, &A, &C, 0.4999));
        let d = dec(&[(A, &[0.9]), (C, &[0.8])]);
        assert_eq!(
            nms(&d, &params(0.1, 0.5, 10)).unwrap(),
            vec![sel(0, 0, 0), sel(0, 0, 1)]
        );
        assert_eq!(nms(&d, &params(0.1, 0.49, 10)).unwrap(), vec![sel(0, 0, 0)]);
        // Torchvision compares with the decimal threshold in f64; legacy keeps IoU <= thr.
        assert!(!suppresses(IouConvention::Torchvision, &A, &C, 0.5));
        assert!(!suppresses(IouConvention::LegacyPlusOne, &A, &A, 1.0));
    }

    #[test]
    fn torchvision_threshold_is_the_decimal_value() {
        // IoU([0,0,10,10], [0,0,10,4]) = 40 / 100, which in f32 is exactly f32(0.4)
        // = 0.4000000059604645 > 0.4. onnxruntime compares f32 with f32(0.4): equal, not
        // suppressed. torchvision compares in f64 with the Python float 0.4: suppressed.
        let thin = [0.0, 0.0, 10.0, 4.0];
        assert_eq!(iou(IouConvention::Onnx, &A, &thin), 0.4f32);
        assert!(!suppresses(IouConvention::Onnx, &A, &thin, 0.4));
        assert!(suppresses(IouConvention::Torchvision, &A, &thin, 0.4));
        assert_eq!(decimal_f64(0.4), 0.4);
        assert_eq!(decimal_f64(0.45), 0.45);
        assert_eq!(decimal_f64(0.25), 0.25);
    }

    #[test]
    fn score_threshold_is_strict() {
        let d = dec(&[(A, &[0.25]), (FAR, &[0.2500001])]);
        assert_eq!(nms(&d, &params(0.25, 0.5, 10)).unwrap(), vec![sel(0, 0, 1)]);
        let ge = NmsConvention {
            iou: IouConvention::Onnx,
            score_cmp: ScoreCmp::GreaterOrEqual,
        };
        assert_eq!(
            nms_with(&d, &params(0.25, 0.5, 10), &ge).unwrap(),
            vec![sel(0, 0, 1), sel(0, 0, 0)]
        );
    }

    #[test]
    fn ties_go_to_the_lower_box_index() {
        // Three identical boxes with identical scores: only the lowest index survives.
        let d = dec(&[(FAR, &[0.7]), (A, &[0.7]), (A, &[0.7]), (A, &[0.7])]);
        assert_eq!(
            nms(&d, &params(0.5, 0.5, 10)).unwrap(),
            vec![sel(0, 0, 0), sel(0, 0, 1)]
        );
        // Equal scores, disjoint boxes: selection order is ascending index.
        let d = dec(&[(FAR, &[0.7]), (A, &[0.7]), (B, &[0.9])]);
        // B (0.9) first; then FAR and A tie at 0.7 → FAR (index 0) before A (index 1); A vs B IoU 1/3.
        assert_eq!(
            nms(&d, &params(0.5, 0.5, 10)).unwrap(),
            vec![sel(0, 0, 2), sel(0, 0, 0), sel(0, 0, 1)]
        );
    }

    #[test]
    fn greedy_suppression_only_by_selected_boxes() {
        // A (0.9) suppresses C (IoU 0.5 > 0.45); C would have suppressed nothing else; B (IoU 1/3
        // with A) survives. Classic chain: X suppressed by A cannot suppress anything.
        let d = dec(&[(A, &[0.9]), (C, &[0.8]), (B, &[0.7])]);
        assert_eq!(
            nms(&d, &params(0.1, 0.45, 10)).unwrap(),
            vec![sel(0, 0, 0), sel(0, 0, 2)]
        );
        // With threshold 0.3 B is suppressed by A as well.
        assert_eq!(nms(&d, &params(0.1, 0.3, 10)).unwrap(), vec![sel(0, 0, 0)]);
    }

    #[test]
    fn per_class_cap_and_class_order() {
        let far2 = [200.0, 200.0, 210.0, 210.0];
        let d = dec(&[(A, &[0.9, 0.3]), (FAR, &[0.8, 0.95]), (far2, &[0.85, 0.1])]);
        // class 0: A, far2, FAR by score; class 1: FAR, A. Cap 2.
        assert_eq!(
            nms(&d, &params(0.2, 0.5, 2)).unwrap(),
            vec![sel(0, 0, 0), sel(0, 0, 2), sel(0, 1, 1), sel(0, 1, 0)]
        );
        assert_eq!(
            nms(&d, &params(0.2, 0.5, 1)).unwrap(),
            vec![sel(0, 0, 0), sel(0, 1, 1)]
        );
        assert_eq!(nms(&d, &params(0.2, 0.5, 0)).unwrap(), vec![]);
        // The cap counts selections, not candidates: a suppressed candidate does not use a slot.
        let d = dec(&[(A, &[0.9]), (A, &[0.8]), (FAR, &[0.7])]);
        assert_eq!(
            nms(&d, &params(0.2, 0.5, 2)).unwrap(),
            vec![sel(0, 0, 0), sel(0, 0, 2)]
        );
    }

    #[test]
    fn multi_label_keeps_a_box_for_several_classes() {
        let d = dec(&[(A, &[0.9, 0.8]), (C, &[0.7, 0.85])]);
        // class 0: A then C suppressed (IoU 0.5 > 0.4); class 1: C then A suppressed.
        assert_eq!(
            nms(&d, &params(0.5, 0.4, 10)).unwrap(),
            vec![sel(0, 0, 0), sel(0, 1, 1)]
        );
    }

    #[test]
    fn agnostic_uses_max_score_and_argmax_class() {
        let d = dec(&[(A, &[0.6, 0.9]), (C, &[0.95, 0.1]), (FAR, &[0.7, 0.7])]);
        let p = NmsParams {
            agnostic: true,
            ..params(0.5, 0.4, 10)
        };
        // Max scores: A 0.9 (class 1), C 0.95 (class 0), FAR 0.7 (tie → class 0).
        // Order C, A, FAR; A suppressed by C (IoU 0.5) regardless of class.
        assert_eq!(nms(&d, &p).unwrap(), vec![sel(0, 0, 1), sel(0, 0, 2)]);
        let p1 = NmsParams {
            max_per_class: 1,
            ..p
        };
        assert_eq!(nms(&d, &p1).unwrap(), vec![sel(0, 0, 1)]);
    }

    #[test]
    fn batches_are_independent_and_ordered() {
        let img0: &[([f32; 4], &[f32])] = &[(A, &[0.9]), (C, &[0.8])];
        let img1: &[([f32; 4], &[f32])] = &[(A, &[0.3]), (C, &[0.8])];
        let d = dec_batch(&[img0, img1]);
        assert_eq!(
            nms(&d, &params(0.5, 0.4, 10)).unwrap(),
            vec![sel(0, 0, 0), sel(1, 0, 1)]
        );
    }

    #[test]
    fn nan_scores_are_never_selected() {
        let d = dec(&[(A, &[f32::NAN]), (FAR, &[0.6])]);
        assert_eq!(nms(&d, &params(0.5, 0.4, 10)).unwrap(), vec![sel(0, 0, 1)]);
        let p = NmsParams {
            agnostic: true,
            ..params(0.5, 0.4, 10)
        };
        assert_eq!(nms(&d, &p).unwrap(), vec![sel(0, 0, 1)]);
    }

    #[test]
    fn invalid_parameters_and_shapes_are_errors() {
        let d = dec(&[(A, &[0.9])]);
        assert!(nms(&d, &params(0.5, 1.5, 10)).is_err());
        assert!(nms(&d, &params(0.5, f32::NAN, 10)).is_err());
        let mut bad = d.clone();
        bad.scores.pop();
        assert!(nms(&bad, &params(0.5, 0.4, 10))
            .unwrap_err()
            .to_string()
            .contains("scores"));
        assert!(detections(&d, &[sel(0, 0, 5)]).is_err());
        assert!(detections(&d, &[sel(1, 0, 0)]).is_err());
        assert!(detections(&d, &[sel(0, 1, 0)]).is_err());
    }

    #[test]
    fn legacy_plus_one_differs_from_onnx() {
        // Two 10x10 boxes shifted by 4 px: ONNX IoU = 60/140 = 0.4286 (kept at 0.45),
        // legacy = 77/165 = 0.4667 (suppressed at 0.45).
        let s = [4.0, 0.0, 14.0, 10.0];
        let d = dec(&[(A, &[0.9]), (s, &[0.8])]);
        assert_eq!(nms(&d, &params(0.25, 0.45, 10)).unwrap().len(), 2);
        assert_eq!(
            yolox_multiclass_nms(&d, 0.25, 0.45).unwrap(),
            vec![sel(0, 0, 0)]
        );
    }

    #[test]
    fn scores_bcn_transpose() {
        // B=1, N=2, C=3: scores_bcn[c][i].
        let d = Decoded::from_boxes_scores_bcn(
            1,
            2,
            3,
            [A, FAR].concat(),
            vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        )
        .unwrap();
        assert_eq!(d.scores, vec![0.1, 0.3, 0.5, 0.2, 0.4, 0.6]);
        assert!(Decoded::from_boxes_scores_bcn(1, 2, 3, [A, FAR].concat(), vec![0.1]).is_err());
    }

    #[test]
    fn gold_yolo_official_is_single_label_with_cap() {
        // Box 0 scores 0.9 (class 0) and 0.8 (class 1): single label keeps only class 0.
        let d = dec(&[(A, &[0.9, 0.8]), (FAR, &[0.3, 0.6]), (C, &[0.2, 0.1])]);
        let p = GoldYoloNmsParams::default();
        assert_eq!(
            gold_yolo_nms(&d, &p).unwrap(),
            vec![sel(0, 0, 0), sel(0, 1, 1)]
        );
        // ONNX multi-label also keeps (1, box 0).
        // ONNX multi-label also keeps (class 0, FAR) at 0.3 and (class 1, A) at 0.8.
        assert_eq!(
            nms(&d, &params(0.25, 0.45, 100)).unwrap(),
            vec![sel(0, 0, 0), sel(0, 0, 1), sel(0, 1, 0), sel(0, 1, 1)]
        );
        let p1 = GoldYoloNmsParams { max_det: 1, ..p };
        assert_eq!(gold_yolo_nms(&d, &p1).unwrap(), vec![sel(0, 0, 0)]);
        // Objectness must pass too.
        let mut d2 = d.clone();
        d2.objectness[0] = 0.2;
        d2.scores[0] = 0.9 * 0.2;
        d2.scores[1] = 0.8 * 0.2;
        assert_eq!(gold_yolo_nms(&d2, &p).unwrap(), vec![sel(0, 1, 1)]);
    }

    #[test]
    fn yolox_postprocess_is_single_label_ge_sorted() {
        // Box 1 score exactly 0.25 passes (>=); output sorted by score across classes.
        let d = dec(&[(A, &[0.3, 0.9]), (FAR, &[0.25, 0.1]), (C, &[0.5, 0.2])]);
        assert_eq!(
            yolox_postprocess(&d, 0.25, 0.45).unwrap(),
            vec![sel(0, 1, 0), sel(0, 0, 2), sel(0, 0, 1)]
        );
        // multiclass_nms keeps box 0 for class 0 too (0.3 > 0.25) — but C (0.5) suppresses
        // it there only under +1 IoU; ONNX IoU(A, C) = 0.5 > 0.45 as well.
        assert_eq!(
            yolox_multiclass_nms(&d, 0.25, 0.45).unwrap(),
            vec![sel(0, 0, 2), sel(0, 1, 0)]
        );
    }
}
