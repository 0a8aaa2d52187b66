//! `trt`: the YOLOv6 `--end2end` convention, `num_dets` i32 `[B, 1]`, `det_boxes` f32
//! `[B, K, 4]`, `det_scores` f32 `[B, K]`, `det_classes` i32 `[B, K]`. Per image, detections
//! sorted by descending score (stable: ties keep NMS output order), truncated to K, padded with
//! zero boxes / scores and class -1. [`append_topk`] (the per-image top-K in ONNX ops) is shared
//! with `ultralytics`.

use std::cmp::Ordering;

use anyhow::{anyhow, Context, Result};

use super::{
    ensure_shape, f32_data, find_output, int_data, nth, tensor, too_large, Appended, ColumnKind,
    Keep, Layout, OutputLayout, OutputTensor,
};
use crate::builder::Builder;
use crate::graph::make_attr_i;
use crate::npy::NpyData;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::ValueInfoProto;
use crate::postprocess::{detections, Decoded, Detection, Selection};
use crate::shape::{make_vi, Dim};
use crate::tensor::{tensor_f32, tensor_i64};

/// The `trt` layout.
pub struct Trt;

/// `trt`.
pub static TRT: Trt = Trt;

const OUTPUTS: &[&str] = &["num_dets", "det_boxes", "det_scores", "det_classes"];

impl OutputLayout for Trt {
    fn name(&self) -> &'static str {
        "trt"
    }

    fn output_names(&self) -> &'static [&'static str] {
        OUTPUTS
    }

    fn with_k(&self, max_det: usize) -> Layout {
        Layout::Trt { max_det }
    }

    fn keep(&self) -> Option<Keep> {
        Some(Keep::Mask)
    }

    fn k_dim(&self) -> Option<(&'static str, usize)> {
        Some(("det_boxes", 1))
    }

    fn column_kinds(&self, output: &str) -> Vec<ColumnKind> {
        match output {
            "det_boxes" => vec![ColumnKind::Box],
            "det_scores" => vec![ColumnKind::Score],
            _ => vec![ColumnKind::Exact],
        }
    }

    fn append(&self, b: &mut Builder, t: &Appended) -> Result<Vec<ValueInfoProto>> {
        let (nd, db, ds, dc) = append_topk_selected(b, t)?;
        let tensors = [&nd, &db, &ds, &dc];
        for (name, x) in OUTPUTS.iter().zip(tensors) {
            let node = format!("{}{name}", b.prefix);
            b.op_named("Identity", &node, &[x.as_str()], &[*name], vec![]);
        }
        let (f32t, i32t) = (DataType::Float as i32, DataType::Int32 as i32);
        let (batch, k) = (t.batch, t.k);
        Ok(vec![
            make_vi("num_dets", i32t, &[batch.clone(), Dim::Known(1)]),
            make_vi(
                "det_boxes",
                f32t,
                &[batch.clone(), Dim::Known(k), Dim::Known(4)],
            ),
            make_vi("det_scores", f32t, &[batch.clone(), Dim::Known(k)]),
            make_vi("det_classes", i32t, &[batch.clone(), Dim::Known(k)]),
        ])
    }

    fn render(
        &self,
        decoded: &Decoded,
        selections: &[Selection],
        k: usize,
    ) -> Result<Vec<OutputTensor>> {
        let name = |i: usize| nth(OUTPUTS, i);
        let per = top_k_per_image(decoded.batch, &detections(decoded, selections)?, k);
        let bk = decoded.batch.checked_mul(k).ok_or_else(too_large)?;
        let mut num = Vec::with_capacity(decoded.batch);
        let mut boxes = vec![0.0f32; bk.checked_mul(4).ok_or_else(too_large)?];
        let mut scores = vec![0.0f32; bk];
        let mut classes = vec![-1i32; bk];
        for (b, dets) in per.iter().enumerate() {
            num.push(
                i32::try_from(dets.len()).map_err(|_| anyhow!("too many detections for int32"))?,
            );
            for (j, d) in dets.iter().enumerate() {
                let slot = b * k + j;
                if let Some(dst) = boxes.get_mut(slot * 4..slot * 4 + 4) {
                    dst.copy_from_slice(&d.bbox());
                }
                if let Some(s) = scores.get_mut(slot) {
                    *s = d.score;
                }
                if let Some(c) = classes.get_mut(slot) {
                    *c = class_i32(d.class)?;
                }
            }
        }
        Ok(vec![
            tensor(name(0), vec![decoded.batch, 1], NpyData::I32(num))?,
            tensor(name(1), vec![decoded.batch, k, 4], NpyData::F32(boxes))?,
            tensor(name(2), vec![decoded.batch, k], NpyData::F32(scores))?,
            tensor(name(3), vec![decoded.batch, k], NpyData::I32(classes))?,
        ])
    }

    fn read(&self, outputs: &[OutputTensor]) -> Result<Vec<Detection>> {
        let name = |i: usize| nth(OUTPUTS, i);
        let mut out = Vec::new();
        let num_t = find_output(outputs, name(0))?;
        let boxes_t = find_output(outputs, name(1))?;
        let scores_t = find_output(outputs, name(2))?;
        let classes_t = find_output(outputs, name(3))?;
        ensure_shape(num_t, name(0), 2, &[(1, 1)])?;
        let b = num_t.shape.first().copied().unwrap_or(0);
        let k = boxes_t.shape.get(1).copied().unwrap_or(0);
        ensure_shape(boxes_t, name(1), 3, &[(0, b), (2, 4)])?;
        ensure_shape(scores_t, name(2), 2, &[(0, b), (1, k)])?;
        ensure_shape(classes_t, name(3), 2, &[(0, b), (1, k)])?;
        let num = int_data(num_t, name(0))?;
        let boxes = f32_data(boxes_t, name(1))?;
        let scores = f32_data(scores_t, name(2))?;
        let classes = int_data(classes_t, name(3))?;
        for (batch, &count) in num.iter().enumerate() {
            let count = usize::try_from(count)
                .ok()
                .filter(|&c| c <= k)
                .ok_or_else(|| anyhow!("num_dets[{batch}] = {count} is not in 0..={k}"))?;
            for j in 0..count {
                let slot = batch
                    .checked_mul(k)
                    .and_then(|x| x.checked_add(j))
                    .filter(|&x| x.checked_mul(4).is_some())
                    .ok_or_else(too_large)?;
                let bx = boxes
                    .get(slot * 4..slot * 4 + 4)
                    .ok_or_else(|| anyhow!("det_boxes too short"))?;
                let score = *scores
                    .get(slot)
                    .ok_or_else(|| anyhow!("det_scores too short"))?;
                let class = *classes
                    .get(slot)
                    .ok_or_else(|| anyhow!("det_classes too short"))?;
                let class = usize::try_from(class)
                    .map_err(|_| anyhow!("det_classes[{batch}][{j}] = {class} within num_dets"))?;
                out.push(Detection {
                    batch,
                    class,
                    score,
                    x1: bx[0],
                    y1: bx[1],
                    x2: bx[2],
                    y2: bx[3],
                });
            }
        }
        Ok(out)
    }
}

/// Per image, detections sorted by descending score (stable), truncated to `k`.
pub(super) fn top_k_per_image(batch: usize, dets: &[Detection], k: usize) -> Vec<Vec<Detection>> {
    let mut per: Vec<Vec<Detection>> = vec![Vec::new(); batch];
    for d in dets {
        if let Some(v) = per.get_mut(d.batch) {
            v.push(*d);
        }
    }
    for v in &mut per {
        v.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal));
        v.truncate(k);
    }
    per
}

fn class_i32(class: usize) -> Result<i32> {
    i32::try_from(class).map_err(|_| anyhow!("class {class} does not fit in int32"))
}

/// [`append_topk`] of the kept selections `t` hands a fixed-K layout: (num_dets, boxes, scores,
/// classes).
pub(super) fn append_topk_selected(
    b: &mut Builder,
    t: &Appended,
) -> Result<(String, String, String, String)> {
    let s = t.selected()?;
    let sel_b1 = b.squeeze(&s.batch, &[1]); // [M]
    let keep_mask = s.keep.as_deref().context("internal: no keep mask")?;
    append_topk(
        b, t.head_out, &sel_b1, keep_mask, &s.boxes, &s.scores, &s.classes, t.k, t.batch,
    )
}

/// Per-image top-K of the selections whose `keep` is true: (num_dets [B,1] i32, boxes [B,K,4],
/// scores [B,K], classes [B,K] i32), sorted by descending score, padded with 0 / class -1. ONNX
/// ops only.
#[allow(clippy::too_many_arguments)]
pub(super) fn append_topk(
    b: &mut Builder,
    head_out: &str,
    sel_batch: &str,
    keep: &str,
    boxes: &str,
    scores: &str,
    classes: &str,
    k: i64,
    batch: &Dim,
) -> Result<(String, String, String, String)> {
    // batch ids [B,1]
    let bids = match batch {
        Dim::Known(bn) => {
            let v: Vec<i64> = (0..*bn).collect();
            b.const_i64("batch_ids", &[*bn, 1], &v)
        }
        Dim::Sym(_) => {
            let shp = b.op("Shape", &[head_out], vec![]);
            let b0 = b.slice(&shp, &[0], &[1], &[0]);
            let bsc = b.squeeze(&b0, &[0]);
            let z = b.init("zero_scalar", tensor_i64("", &[], &[0]));
            let one = b.init("one_scalar", tensor_i64("", &[], &[1]));
            let r = b.op("Range", &[&z, &bsc, &one], vec![]);
            b.unsqueeze(&r, &[1])
        }
    };
    let sb = b.unsqueeze(sel_batch, &[0]); // [1,M]
    let same_image = b.op("Equal", &[&bids, &sb], vec![]); // [B,M]
                                                           // only selections above the score threshold count (padded NMS rows do not)
    let keep1 = b.unsqueeze(keep, &[0]); // [1,M]
    let eq = b.op("And", &[&same_image, &keep1], vec![]); // [B,M]
    let s1 = b.unsqueeze(scores, &[0]); // [1,M]
    let neg = b.const_f32("neg_one", &[1], &[-1.0]);
    let dense = b.op("Where", &[&eq, &s1, &neg], vec![]); // [B,M]
                                                          // K padding columns of -1: from a [B,1] slice of the head output so B follows the input
    let col = b.slice(head_out, &[0, 0], &[1, 1], &[1, 2]); // [B,1,1]
    let zerof = b.const_f32("zero_f", &[1], &[0.0]);
    let colz = b.op("Mul", &[&col, &zerof], vec![]);
    let coln = b.op("Add", &[&colz, &neg], vec![]); // all -1, [B,1,1]
    let col2 = b.squeeze(&coln, &[2]); // [B,1]
    let reps = b.const_i64("pad_repeats", &[2], &[1, k]);
    let pad = b.op("Tile", &[&col2, &reps], vec![]); // [B,K]
    let full = b.op("Concat", &[&dense, &pad], vec![make_attr_i("axis", 1)]); // [B,M+K]
    let kk = b.const_i64("k", &[1], &[k]);
    let tk = b.op_n(
        "TopK",
        &[&full, &kk],
        2,
        vec![
            make_attr_i("axis", 1),
            make_attr_i("largest", 1),
            make_attr_i("sorted", 1),
        ],
    );
    let (vals, idx) = (tk[0].clone(), tk[1].clone());
    let thr = b.const_f32("valid_thr", &[1], &[-0.5]);
    let valid = b.op("Greater", &[&vals, &thr], vec![]); // [B,K]
    let valid_i = b.cast(&valid, DataType::Int32);
    let num = b.reduce("ReduceSum", &valid_i, &[1], true); // [B,1] i32
    let det_scores = b.op("Where", &[&valid, &vals, &zerof], vec![]);
    // boxes: rows padded with K zero rows, gathered by idx, masked
    let zb = b.init(
        "zero_boxes",
        tensor_f32("", &[k, 4], &vec![0.0; (k * 4) as usize]),
    );
    let bpad = b.op("Concat", &[boxes, &zb], vec![make_attr_i("axis", 0)]); // [M+K,4]
    let gb = b.op("Gather", &[&bpad, &idx], vec![make_attr_i("axis", 0)]); // [B,K,4]
    let vf = b.cast(&valid, DataType::Float);
    let vf3 = b.unsqueeze(&vf, &[2]);
    let det_boxes = b.op("Mul", &[&gb, &vf3], vec![]);
    let zc = b.init("zero_classes", tensor_i64("", &[k], &vec![0; k as usize]));
    let cpad = b.op("Concat", &[classes, &zc], vec![make_attr_i("axis", 0)]); // [M+K]
    let gc = b.op("Gather", &[&cpad, &idx], vec![make_attr_i("axis", 0)]); // [B,K] i64
    let gc32 = b.cast(&gc, DataType::Int32);
    let m1 = b.init(
        "minus_one_i32",
        crate::tensor::tensor_from_values("", &[1], &crate::tensor::Values::I32(vec![-1])),
    );
    let det_classes = b.op("Where", &[&valid, &gc32, &m1], vec![]);
    Ok((num, det_boxes, det_scores, det_classes))
}
