//! YOLOX: the official export's raw head (`decode_in_inference=False`: grid offsets, log sizes,
//! sigmoid objectness and classes) and the `--decode_in_inference` head (cx, cy, w, h in input
//! pixels). Two registry entries, one file: they share everything but the box decode.

use anyhow::{anyhow, bail, ensure, Context, Result};

use super::{common, BoxEncoding, Candidate, DetectorFamily, Family, Preprocess, RawLayout};
use crate::builder::Builder;
use crate::graph::describe;
use crate::head::Head;
use crate::postprocess::{
    argmax, check_iou_threshold, nms_with, torchvision_batched_nms, DecodeOptions, Decoded,
    HeadSpec, Layout, NmsConvention, NmsParams, Selection,
};
use crate::tensor::tensor_f32;

/// How far a raw YOLOX box may grow: the appended decode bounds each log-size at
/// `ln(LOG_SIZE_BOUND_FACTOR · max(H, W) / stride)` before `Exp`, so no decoded width or height
/// exceeds `LOG_SIZE_BOUND_FACTOR · max(H, W)` pixels (four times the input's larger side).
///
/// Why (issue 12): background anchors of real YOLOX heads emit log-sizes like 18.8, whose `exp` is
/// 1.5e8; one such value makes every box tensor's range so wide that INT8 toolchains either abort
/// (TFLite's ADD `Prepare`) or quantize every real box to zero. Bounding the logit keeps the ranges
/// a small multiple of the input size (box coordinates within about `[-2M, 3M]`).
///
/// Why no detection changes (K = 4, M = max(H, W)):
/// 1. `min(t, L)` equals `t` for every `t ≤ L`, so every box whose width and height are below
///    `K·M` (more exactly: whose log-sizes are ≤ the f32 bound) is bit-for-bit the one the
///    unbounded decode gives; scores are never touched.
/// 2. ONNX NonMaxSuppression looks only at candidates (score > the score threshold): a box that is
///    not a candidate in any class never selects or suppresses anything. So unless some
///    *candidate* is at least `K·M` wide or high — four times the whole input — the NMS input
///    restricted to candidates is identical and so is every output row. "No detected box changes"
///    is therefore proven exactly for detections smaller than 4·max(H, W) in both dimensions.
///    The corpus and the fixtures have no larger candidate (tests/postprocess_ref.rs
///    `bounded_ordered_decode_changes_no_detection` asserts it): the trained models' largest
///    candidate is 0.37·M; random-weight heads emit up to 3.72·M (fixture yolox_nano_640x640),
///    and 2.05·M (yolox_nano_80c_128x160_op11), which is why K is 4 and not 2.
/// 3. If such a candidate exists (a detection larger than four times the input), its own box is
///    reported with that dimension equal to `K·M`; its centre does not move, so when the centre is
///    inside the input the box still spans the whole input in that dimension
///    (`[c − 2M, c + 2M] ⊇ [0, M]` for `0 ≤ c ≤ M`): what it marks inside the image is unchanged.
///    Its IoU with any other box A is at most `size(A) / (K·M)` in the bounded dimension before and
///    after the bound, so A's fate is unchanged whenever A is at most `iou_threshold · K·M` in both
///    dimensions (1.6·M at the default IoU 0.40, the whole input from IoU 0.25). Only two such
///    oversized candidates of one class may change their mutual suppression, and through the
///    per-class cap (or the fixed K of trt/ultralytics) that can change which other rows fit.
///
/// The factor trades exactness for INT8 resolution: a calibration scene with one exploding
/// anchor sets the box tensors' range to about `(K + 1)·M`, i.e. `(K + 1)·M / 255` per int8 step.
pub const LOG_SIZE_BOUND_FACTOR: f64 = 4.0;

/// The log-size bound of a YOLOX anchor of `stride` at an `input_h`×`input_w` input:
/// `ln(LOG_SIZE_BOUND_FACTOR · max(H, W) / stride)` computed in f64 and rounded to f32 once (the
/// appended graph stores exactly this value, so graph and reference compare the same f32).
pub fn log_size_bound(input_h: usize, input_w: usize, stride: u32) -> f32 {
    let m = input_h.max(input_w) as f64;
    (LOG_SIZE_BOUND_FACTOR * m / f64::from(stride.max(1))).ln() as f32
}

/// A YOLOX head; `decoded`: exported with `--decode_in_inference`.
pub struct Yolox {
    decoded: bool,
}

/// The raw head's registry entry.
pub const RAW: Yolox = Yolox { decoded: false };
/// The decoded head's registry entry.
pub const DECODED: Yolox = Yolox { decoded: true };

impl DetectorFamily for Yolox {
    fn family(&self) -> Family {
        if self.decoded {
            Family::YoloxDecoded
        } else {
            Family::YoloxRaw
        }
    }

    fn id(&self) -> &'static str {
        if self.decoded {
            "yolox-decoded"
        } else {
            "yolox-raw"
        }
    }

    fn label(&self) -> &'static str {
        if self.decoded {
            "YOLOX decoded head (--decode_in_inference)"
        } else {
            "YOLOX raw head"
        }
    }

    /// Decoded: an `Exp` (the box decode `exp(wh) * stride`) on the path to the output. Raw: no
    /// `Exp` and a `Sigmoid` on it (refused with the reason when the path has no `Sigmoid`).
    fn recognize(&self, c: &Candidate<'_>) -> Result<Option<String>> {
        let g = c.model.graph();
        let (out, strides_txt) = (c.output, c.strides_txt);
        let exp = c.ancestors.iter().find(|&&i| g.node[i].op_type() == "Exp");
        if self.decoded {
            return Ok(exp.map(|&e| format!("{} is on the path to output `{out}`: the box decode (exp(wh) * stride) is in the graph; {strides_txt}", describe(&g.node[e]))));
        }
        if exp.is_some() {
            return Ok(None);
        }
        let sigmoids = c
            .ancestors
            .iter()
            .filter(|&&i| g.node[i].op_type() == "Sigmoid")
            .count();
        if sigmoids == 0 {
            bail!("output `{out}` has the shape of a detection head ({strides_txt}) but no Sigmoid on its path: not a YOLOX or Gold-YOLO head");
        }
        Ok(Some(format!("output `{out}` has no Exp and no constant-1 column on its path (raw YOLOX head: grid offsets, log sizes, sigmoid obj/cls); {strides_txt}")))
    }

    fn raw(&self) -> RawLayout {
        RawLayout {
            boxes: if self.decoded {
                BoxEncoding::CxCyWhPixels
            } else {
                BoxEncoding::GridOffsetLogSize
            },
            objectness: Some(4),
            classes_from: 5,
        }
    }

    /// Raw head: the grid is generated per stride `s` in `spec.strides` order with `hs = H/s`,
    /// `ws = W/s`, anchors row-major (y then x), and every value is computed in f32 in exactly
    /// this order of operations, which the appended ONNX graph mirrors:
    ///
    /// ```text
    /// cx = (raw0 + gx) * s        cy = (raw1 + gy) * s        // Add, then Mul
    /// w  = exp(min(raw2, L)) * s  h  = exp(min(raw3, L)) * s  // Min, Exp, then Mul
    /// ```
    ///
    /// with `L = log_size_bound(H, W, s)` when `opts.bound_log_size` (else no `min`); a NaN
    /// log-size stays NaN (numpy / onnxruntime `Min`; tract's `Min` returns the bound instead).
    /// Errors if a stride does not divide the input size or `n != Σ (H/s)(W/s)`.
    ///
    /// Decoded head: columns 0-3 as given (`|w|, |h|` with `opts.order_corners`).
    fn decode(
        &self,
        raw: &[f32],
        batch: usize,
        n: usize,
        spec: &HeadSpec,
        opts: DecodeOptions,
    ) -> Result<Decoded> {
        if self.decoded {
            return common::decode_cxcywh(raw, batch, n, spec, opts);
        }
        common::check_rows(raw, batch, n, spec)?;
        // Per-anchor (gx, gy, stride, log-size bound).
        let levels = spec.grid_levels()?;
        let total = spec.num_anchors()?;
        ensure!(
            total == n,
            "N = {n} anchors in the raw output, but strides {:?} at {}x{} (HxW) give {total}",
            spec.strides,
            spec.input_h,
            spec.input_w
        );
        let mut grid = Vec::with_capacity(total);
        for l in levels {
            let bound = if opts.bound_log_size {
                log_size_bound(spec.input_h, spec.input_w, l.stride)
            } else {
                f32::INFINITY
            };
            for y in 0..l.h {
                for x in 0..l.w {
                    grid.push([x as f32, y as f32, l.stride as f32, bound]);
                }
            }
        }
        common::decode_rows(raw, batch, n, spec, |k, [c0, c1, c2, c3]| {
            let i = if n == 0 { 0 } else { k % n };
            let [gx, gy, s, bound] = *grid
                .get(i)
                .ok_or_else(|| anyhow!("internal: anchor {i} outside the grid"))?;
            // NaN-propagating min (a NaN log-size stays NaN)
            let lim = |t: f32| if t > bound { bound } else { t };
            Ok([
                (c0 + gx) * s,
                (c1 + gy) * s,
                lim(c2).exp() * s,
                lim(c3).exp() * s,
            ])
        })
    }

    /// `demo_utils.multiclass_nms` ([`yolox_multiclass_nms`]), which the official demo uses.
    fn official(&self, d: &Decoded, conf: f32, iou: f32) -> Result<Vec<Selection>> {
        yolox_multiclass_nms(d, conf, iou)
    }

    /// Raw head: `cx = (c0 + gx) * s`, `w = exp(min(c2, L)) * s` with per-anchor grid, stride
    /// and log-size bound constants; decoded head: `|w|, |h|` ([`common::append_cxcywh`]).
    fn append_decode(
        &self,
        b: &mut Builder,
        head: &Head,
        out: &str,
        n: i64,
        c: i64,
        normalize: bool,
    ) -> Result<(String, String)> {
        if self.decoded {
            return common::append_row_decode(b, out, c, |b, rows| {
                Ok(common::append_cxcywh(b, head, rows, normalize))
            });
        }
        let (w, h) = (
            head.width.unwrap_or(1) as f32,
            head.height.unwrap_or(1) as f32,
        );
        common::append_row_decode(b, out, c, |b, rows| {
            let (grid, stride) = grid_tensors(head)?;
            let gname = b.init("grid", tensor_f32("", &[1, n, 2], &grid));
            // normalized: the per-anchor stride becomes (s/W, s/H), so no op is added at run time
            let sname = if normalize {
                let sxy: Vec<f32> = stride.iter().flat_map(|&s| [s / w, s / h]).collect();
                b.init("stride_normalized", tensor_f32("", &[1, n, 2], &sxy))
            } else {
                b.init("stride", tensor_f32("", &[1, n, 1], &stride))
            };
            let a = b.op("Add", &[&rows.xy, &gname], vec![]);
            let cxcy = b.op("Mul", &[&a, &sname], vec![]);
            // log-sizes bounded before Exp (Min with a per-anchor constant: Clip needs scalar
            // bounds)
            let bounds = log_size_bounds(head)?;
            ensure!(
                bounds.len() as i64 == n,
                "internal: {} log-size bounds for {n} anchors",
                bounds.len()
            );
            let lname = b.init("log_size_bound", tensor_f32("", &[1, n, 1], &bounds));
            let whb = b.op("Min", &[&rows.wh, &lname], vec![]);
            let e = b.op("Exp", &[&whb], vec![]);
            let wh = b.op("Mul", &[&e, &sname], vec![]);
            Ok(common::Centred {
                cxcy,
                wh,
                half: b.const_f32("half", &[1], &[0.5]),
            })
        })
    }

    /// BGR 0..255, top-left letterbox, size truncated, pad 114.
    fn preprocess(&self) -> Preprocess {
        Preprocess {
            rgb: false,
            div255: false,
            centred: false,
            round_size: false,
            pad: 114,
        }
    }

    /// `pinto` (`batchno_classid_score_x1y1x2y2`).
    fn default_layout(&self) -> Layout {
        Layout::Pinto
    }

    /// The raw head: the decode (grids) is not in the graph. The decoded head bakes its grids.
    fn runs_at_any_size(&self) -> bool {
        !self.decoded
    }
}

/// YOLOX `yolox/utils/demo_utils.py::multiclass_nms(boxes, scores, nms_thr, score_thr,
/// class_agnostic=False)`: per class, `score > score_thr`, greedy NMS with the legacy "+1" IoU,
/// suppress when IoU > `nms_thr`, multi-label (a box may be kept for several classes), no cap.
/// Rows come grouped by image, then class, then descending score — the order of the official
/// output for one image.
pub fn yolox_multiclass_nms(
    decoded: &Decoded,
    score_thr: f32,
    nms_thr: f32,
) -> Result<Vec<Selection>> {
    let params = NmsParams {
        score_threshold: score_thr,
        iou_threshold: nms_thr,
        max_per_class: usize::MAX,
        agnostic: false,
    };
    nms_with(decoded, &params, &NmsConvention::YOLOX_LEGACY)
}

/// YOLOX `yolox/utils/boxes.py::postprocess(prediction, num_classes, conf_thre, nms_thre,
/// class_agnostic=False)` on a decoded head:
///
/// - one label per box: the argmax of the class probabilities (columns 5…; ties → lowest class);
/// - candidate when `obj * max_cls >= conf_thre` (note `>=`); the score is that product;
/// - `torchvision.ops.batched_nms` ([`IouConvention::Torchvision`], IoU > `nms_thre` suppresses):
///   for at most 1000 candidates (`boxes.numel() <= 4000`) it runs one NMS over boxes offset by
///   `class * (max_coordinate + 1)` in f32 (its "coordinate trick"), otherwise one NMS per class;
/// - output sorted by descending score (stable), no cap.
pub fn yolox_postprocess(
    decoded: &Decoded,
    conf_thre: f32,
    nms_thre: f32,
) -> Result<Vec<Selection>> {
    decoded.validate()?;
    check_iou_threshold(nms_thre)?;
    let mut out = Vec::new();
    for b in 0..decoded.batch {
        // (score, box index, class)
        let mut dets: Vec<(f32, usize, usize)> = Vec::new();
        for i in 0..decoded.num_boxes {
            let probs = decoded
                .class_probs_of(b, i)
                .ok_or_else(|| anyhow!("internal: probs"))?;
            let obj = decoded
                .objectness_at(b, i)
                .ok_or_else(|| anyhow!("internal: obj"))?;
            let Some((max_cls, class)) = argmax(probs) else {
                continue;
            };
            let score = obj * max_cls;
            if score >= conf_thre {
                dets.push((score, i, class));
            }
        }
        out.extend(torchvision_batched_nms(decoded, b, &dets, nms_thre)?);
    }
    Ok(out)
}

/// Per-anchor grid (gx, gy) `[1,N,2]` and stride `[1,N,1]` for the model's H×W.
pub fn grid_tensors(head: &Head) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut grid = Vec::new();
    let mut stride = Vec::new();
    for (k, &(gh, gw)) in head.grids.iter().enumerate() {
        let s = head.strides[k] as f32;
        for y in 0..gh {
            for x in 0..gw {
                grid.push(x as f32);
                grid.push(y as f32);
                stride.push(s);
            }
        }
    }
    Ok((grid, stride))
}

/// Per-anchor log-size bound `[1,N,1]`: [`log_size_bound`] of the anchor's
/// stride at the model's H×W (the same f32 the reference decode uses).
pub fn log_size_bounds(head: &Head) -> Result<Vec<f32>> {
    let (h, w) = (
        head.height.context("head has no input height")?,
        head.width.context("head has no input width")?,
    );
    let mut v = Vec::new();
    for (k, &(gh, gw)) in head.grids.iter().enumerate() {
        let s = *head
            .strides
            .get(k)
            .context("head has fewer strides than grids")?;
        let l = log_size_bound(h.max(1) as usize, w.max(1) as usize, s.max(1) as u32);
        v.extend(std::iter::repeat_n(l, (gh * gw).max(0) as usize));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use crate::families::Family;
    use crate::postprocess::{decode, HeadSpec};

    fn spec(kind: Family, c: usize, h: usize, w: usize) -> HeadSpec {
        HeadSpec::new(kind, c, h, w)
    }

    #[test]
    fn decode_yolox_raw_grid_order_and_formula() {
        // 64x32 input, strides 8,16,32: levels 8x4, 4x2, 2x1 → N = 32 + 8 + 2 = 42.
        let s = spec(Family::YoloxRaw, 2, 64, 32);
        assert_eq!(s.num_anchors().unwrap(), 42);
        let n = 42;
        let mut raw = vec![0.0f32; n * 7];
        // Anchor 5 = stride 8, y = 1, x = 1 (row-major, 4 columns).
        raw[5 * 7..5 * 7 + 7].copy_from_slice(&[0.5, 0.25, 0.0, 1.0f32.ln(), 0.5, 0.2, 0.8]);
        // Anchor 33 = stride 16, level size 4x2: index 1 → y = 0, x = 1.
        raw[33 * 7..33 * 7 + 7].copy_from_slice(&[0.0, 0.0, 2.0f32.ln(), 0.0, 1.0, 0.5, 0.5]);
        // Anchor 41 = stride 32, level 2x1: index 1 → y = 1, x = 0.
        raw[41 * 7..41 * 7 + 7].copy_from_slice(&[-1.0, 0.5, 0.0, 0.0, 0.9, 1.0, 0.0]);
        let d = decode(&raw, 1, n, &s).unwrap();
        // cx = (0.5 + 1) * 8 = 12, cy = (0.25 + 1) * 8 = 10, w = h = 8.
        assert_eq!(d.box_at(0, 5).unwrap(), [8.0, 6.0, 16.0, 14.0]);
        assert_eq!(d.scores_of(0, 5).unwrap(), &[0.1, 0.4]);
        // cx = 16, cy = 0, w = exp(ln 2) * 16 ≈ 32, h = 16.
        let b = d.box_at(0, 33).unwrap();
        let w = 2.0f32.ln().exp() * 16.0;
        assert_eq!(b, [16.0 - w * 0.5, -8.0, 16.0 + w * 0.5, 8.0]);
        // cx = (-1 + 0) * 32 = -32, cy = (0.5 + 1) * 32 = 48, w = h = 32.
        assert_eq!(d.box_at(0, 41).unwrap(), [-48.0, 32.0, -16.0, 64.0]);
        assert_eq!(d.score(0, 41, 0).unwrap(), 0.9);
        assert_eq!(d.objectness_at(0, 41).unwrap(), 0.9);
        // Anchor 0: raw zeros → cx = cy = 0, w = h = 8.
        assert_eq!(d.box_at(0, 0).unwrap(), [-4.0, -4.0, 4.0, 4.0]);
    }

    #[test]
    fn decode_errors() {
        let s = spec(Family::YoloxRaw, 2, 64, 32);
        let err = decode(&vec![0.0; 41 * 7], 1, 41, &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("give 42"), "{err}");
        let err = decode(&vec![0.0; 42 * 7 - 1], 1, 42, &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected"), "{err}");
        let s = spec(Family::YoloxRaw, 2, 60, 32);
        assert!(decode(&vec![0.0; 42 * 7], 1, 42, &s)
            .unwrap_err()
            .to_string()
            .contains("multiple"));
        let s = spec(Family::GoldYolo, 0, 64, 32);
        assert!(decode(&[], 1, 0, &s).is_err());
        let s = HeadSpec {
            strides: vec![0],
            ..spec(Family::YoloxRaw, 1, 8, 8)
        };
        assert!(decode(&[0.0; 6], 1, 1, &s).is_err());
        let s = spec(Family::GoldYolo, 1, 8, 8);
        assert!(decode(&[0.0; 6], usize::MAX, 2, &s).is_err());
        // Empty batch is fine.
        assert_eq!(decode(&[], 0, 3, &s).unwrap().boxes.len(), 0);
    }
}
