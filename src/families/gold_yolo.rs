//! Gold-YOLO / YOLOv6 v3: a decoded `[B, N, 5+C]` head (cx, cy, w, h in input pixels, column 4 a
//! constant 1, sigmoid class scores in columns 5…).

use std::cmp::Ordering;

use anyhow::{anyhow, ensure, Result};

use super::{common, BoxEncoding, Candidate, DetectorFamily, Family, Preprocess, RawLayout};
use crate::builder::Builder;
use crate::graph::{constant_ref, describe, GraphIndex};
use crate::head::Head;
use crate::model::Model;
use crate::postprocess::{
    argmax, check_iou_threshold, greedy, DecodeOptions, Decoded, HeadSpec, IouConvention, Layout,
    Selection,
};

/// The Gold-YOLO / YOLOv6 family.
pub struct GoldYolo;

/// Its registry entry.
pub const GOLD_YOLO: GoldYolo = GoldYolo;

/// Is `name` (an input of the final Concat) a constant-1 column?
fn ones_column(m: &Model, ix: &GraphIndex, name: &str) -> Option<String> {
    let g = m.graph();
    if let Some(&p) = ix.producer.get(name) {
        let n = &g.node[p];
        if n.op_type() == "ConstantOfShape" {
            let t = crate::graph::attr(n, "value").and_then(|a| a.t.as_ref())?;
            let v = crate::tensor::values(t).ok()?.as_f64();
            if v.len() == 1 && v[0] == 1.0 {
                return Some(describe(n));
            }
            return None;
        }
    }
    let t = constant_ref(g, ix, name)?;
    if t.dims.last() != Some(&1) {
        return None;
    }
    let v = m.tensor_values(t).ok()?.as_f64();
    if !v.is_empty() && v.iter().all(|&x| x == 1.0) {
        return Some(format!("constant `{}` (all ones {:?})", name, t.dims));
    }
    None
}

impl DetectorFamily for GoldYolo {
    fn family(&self) -> Family {
        Family::GoldYolo
    }

    fn id(&self) -> &'static str {
        "gold-yolo"
    }

    fn label(&self) -> &'static str {
        "Gold-YOLO / YOLOv6 (decoded head, constant-1 objectness column)"
    }

    /// `Concat(boxes, ones, cls)` at the output.
    fn recognize(&self, c: &Candidate<'_>) -> Result<Option<String>> {
        let (m, ix, out) = (c.model, c.index, c.output);
        let g = m.graph();
        if let Some(&p) = ix.producer.get(out) {
            let last = &g.node[p];
            if last.op_type() == "Concat" && last.input.len() == 3 {
                if let Some(why) = ones_column(m, ix, &last.input[1]) {
                    return Ok(Some(format!("output `{out}` is produced by {} whose middle input (column 4) is the constant 1 of {why}; {}", describe(last), c.strides_txt)));
                }
            }
        }
        Ok(None)
    }

    fn raw(&self) -> RawLayout {
        RawLayout {
            boxes: BoxEncoding::CxCyWhPixels,
            objectness: Some(4),
            classes_from: 5,
        }
    }

    /// Columns 0-3 as given (`|w|, |h|` with `opts.order_corners`); column 4, a constant 1, is
    /// still multiplied in, as the official code does.
    fn decode(
        &self,
        raw: &[f32],
        batch: usize,
        n: usize,
        spec: &HeadSpec,
        opts: DecodeOptions,
    ) -> Result<Decoded> {
        common::decode_cxcywh(raw, batch, n, spec, opts)
    }

    /// `non_max_suppression` at `tools/infer.py`'s settings ([`gold_yolo_nms`]).
    fn official(&self, d: &Decoded, conf: f32, iou: f32) -> Result<Vec<Selection>> {
        gold_yolo_nms(
            d,
            &GoldYoloNmsParams {
                conf_thres: conf,
                iou_thres: iou,
                ..GoldYoloNmsParams::default()
            },
        )
    }

    fn append_decode(
        &self,
        b: &mut Builder,
        head: &Head,
        out: &str,
        _n: i64,
        c: i64,
        normalize: bool,
    ) -> Result<(String, String)> {
        common::append_row_decode(b, out, c, |b, rows| {
            Ok(common::append_cxcywh(b, head, rows, normalize))
        })
    }

    /// RGB / 255 (its exporter's `img /= 255`), centred letterbox, size rounded, pad 114.
    fn preprocess(&self) -> Preprocess {
        Preprocess {
            rgb: true,
            div255: true,
            centred: true,
            round_size: true,
            pad: 114,
        }
    }

    /// `pinto-goldyolo` (`batchno_classid_x1y1x2y2_score`).
    fn default_layout(&self) -> Layout {
        Layout::PintoGoldYolo
    }

    /// Its anchor points and strides are baked at the export size.
    fn runs_at_any_size(&self) -> bool {
        false
    }
}

/// Parameters of YOLOv6 / Gold-YOLO `yolov6/utils/nms.py::non_max_suppression` (with
/// `classes=None`, `multi_label=False`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoldYoloNmsParams {
    /// `conf_thres`: candidates need objectness > it and max class probability > it, and then
    /// score > it.
    pub conf_thres: f32,
    /// `iou_thres`: suppress when the torchvision IoU is > it.
    pub iou_thres: f32,
    /// `max_det`: detections kept per image (`tools/infer.py` passes 1000; the function's own
    /// default is 300).
    pub max_det: usize,
    /// `max_nms`: at most this many boxes (highest scores) go into NMS (30000).
    pub max_nms: usize,
    /// `agnostic`: class-agnostic NMS (`max_wh` offset 0).
    pub agnostic: bool,
}

impl Default for GoldYoloNmsParams {
    /// The settings of `tools/infer.py`: 0.25, 0.45, max_det 1000, max_nms 30000, class-aware.
    fn default() -> Self {
        GoldYoloNmsParams {
            conf_thres: 0.25,
            iou_thres: 0.45,
            max_det: 1000,
            max_nms: 30000,
            agnostic: false,
        }
    }
}

/// YOLOv6 / Gold-YOLO official `non_max_suppression` (single label):
///
/// - candidates: objectness (column 4) > conf and max class probability > conf;
/// - score = cls × obj, class = argmax of the scores (ties → lowest class), kept if score > conf;
/// - if more than `max_nms` remain, the `max_nms` highest scores (stable descending sort);
/// - class-aware NMS by offsetting boxes by `class * 4096` in f32 (`max_wh`), then one
///   `torchvision.ops.nms` ([`IouConvention::Torchvision`] on the offset boxes);
/// - the first `max_det` kept boxes, in NMS order (descending score).
pub fn gold_yolo_nms(decoded: &Decoded, params: &GoldYoloNmsParams) -> Result<Vec<Selection>> {
    decoded.validate()?;
    check_iou_threshold(params.iou_thres)?;
    ensure!(
        (0.0..=1.0).contains(&params.conf_thres),
        "conf_thres must be in [0, 1]"
    );
    const MAX_WH: f32 = 4096.0;
    let mut out = Vec::new();
    for b in 0..decoded.batch {
        let mut dets: Vec<(f32, usize, usize)> = Vec::new();
        for i in 0..decoded.num_boxes {
            let obj = decoded
                .objectness_at(b, i)
                .ok_or_else(|| anyhow!("internal: obj"))?;
            let probs = decoded
                .class_probs_of(b, i)
                .ok_or_else(|| anyhow!("internal: probs"))?;
            let Some((max_cls, _)) = argmax(probs) else {
                continue;
            };
            if !(obj > params.conf_thres && max_cls > params.conf_thres) {
                continue;
            }
            let scores = decoded
                .scores_of(b, i)
                .ok_or_else(|| anyhow!("internal: scores"))?;
            let Some((conf, class)) = argmax(scores) else {
                continue;
            };
            if conf > params.conf_thres {
                dets.push((conf, i, class));
            }
        }
        if dets.len() > params.max_nms {
            dets.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or(Ordering::Equal));
            dets.truncate(params.max_nms);
        }
        let box_of = |k: usize| -> Result<[f32; 4]> {
            let d = dets.get(k).ok_or_else(|| anyhow!("internal: det"))?;
            let bx = decoded
                .box_at(b, d.1)
                .ok_or_else(|| anyhow!("internal: box"))?;
            let off = if params.agnostic {
                0.0
            } else {
                d.2 as f32 * MAX_WH
            };
            Ok([bx[0] + off, bx[1] + off, bx[2] + off, bx[3] + off])
        };
        let cands: Vec<(f32, usize)> = dets.iter().enumerate().map(|(k, d)| (d.0, k)).collect();
        let keep = greedy(
            cands,
            box_of,
            IouConvention::Torchvision,
            params.iou_thres,
            usize::MAX,
        )?;
        for k in keep.into_iter().take(params.max_det) {
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

#[cfg(test)]
mod tests {
    use crate::families::Family;
    use crate::postprocess::{decode, HeadSpec};

    fn spec(kind: Family, c: usize, h: usize, w: usize) -> HeadSpec {
        HeadSpec::new(kind, c, h, w)
    }

    #[test]
    fn decode_decoded_heads_and_batch() {
        let s = spec(Family::GoldYolo, 1, 32, 32);
        // Two images, two boxes each.
        let raw = vec![
            10.0, 20.0, 4.0, 6.0, 1.0, 0.5, //
            0.0, 0.0, 2.0, 2.0, 1.0, 0.25, //
            5.0, 5.0, 10.0, 10.0, 1.0, 0.75, //
            1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
        ];
        let d = decode(&raw, 2, 2, &s).unwrap();
        assert_eq!(d.box_at(0, 0).unwrap(), [8.0, 17.0, 12.0, 23.0]);
        assert_eq!(d.box_at(1, 0).unwrap(), [0.0, 0.0, 10.0, 10.0]);
        assert_eq!(d.score(1, 0, 0).unwrap(), 0.75);
        let s = spec(Family::YoloxDecoded, 1, 32, 32);
        let d2 = decode(&raw, 2, 2, &s).unwrap();
        assert_eq!(d2.boxes, d.boxes);
    }
}
