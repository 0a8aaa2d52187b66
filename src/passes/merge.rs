//! `merge`: append decode (where the head needs it), scores = obj × cls, corner boxes, ONNX
//! NonMaxSuppression and one of the output layouts of SPEC §2, so the model outputs final
//! detections.
//!
//! The appended arithmetic mirrors `postprocess::decode` exactly (same operations in the same
//! order), so the Rust reference is an exact oracle for it:
//! `cx = (c0 + gx) * s`, `w = exp(min(c2, L)) * s` (YOLOX raw; `L` =
//! [`crate::postprocess::log_size_bound`]), `w = |c2|` (decoded heads), `x1 = cx - w * 0.5`,
//! `x2 = cx + w * 0.5`, `score = obj * cls`.
//!
//! Built to survive INT8 toolchains that quantize the post-process too (onnx2tf → TFLite,
//! SPEC §4, issue 12):
//! - the log-sizes are bounded before `Exp` (why no detection changes:
//!   [`crate::postprocess::LOG_SIZE_BOUND_FACTOR`]);
//! - corners are ordered (`x1 <= x2`, `y1 <= y2`) before NMS for every family;
//! - boxes and scores never share a tensor inside the appended nodes (the `pinto*` and
//!   `ultralytics` outputs mix them by definition of their layouts; `trt` and `decoded` keep them
//!   apart);
//! - after NMS, only selections whose score is above the score threshold are kept (the NMS
//!   node's own `score_threshold` input, so `set`, sam4onnx and `--thresholds inputs` retune both):
//!   runtimes whose NMS pads its output to a fixed size with junk rows (TFLite: index 0, score
//!   ≈ 1e-7) then give the same rows and counts as onnxruntime, where the filter keeps every row;
//! - no appended initializer is left unused.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::builder::Builder;
use crate::families::{Family, Recognized};
use crate::graph::{make_attr_i, make_attr_ints};
use crate::head::{recognize, Head};
use crate::layouts::{Appended, Keep, Selected};
use crate::model::Model;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::ValueInfoProto;
use crate::passes::{default_opset, set_default_opset};
use crate::postprocess::Layout;
use crate::record::MergeRecord;
use crate::shape::{make_vi, Dim};
use crate::tensor::{tensor_f32, tensor_i64};

/// PINTO-compatible names (their `sam4onnx` recipe rewrites these).
pub const NMS_NODE: &str = "main01_nonmaxsuppression11";
pub const MAX_OUT: &str = "main01_max_output_boxes_per_class";
pub const IOU: &str = "main01_iou_threshold";
pub const SCORE: &str = "main01_score_threshold";
/// Prefix of every other appended node and tensor.
pub const PREFIX: &str = "postmerge/";

/// How NMS thresholds are stored (recorded in the merge record).
pub use crate::record::Thresholds;

/// Options of `merge`.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_per_class: i64,
    /// K of the fixed-size layouts.
    pub max_det: usize,
    /// `None`: the family's default (pinto for YOLOX, pinto-goldyolo for Gold-YOLO).
    pub layout: Option<Layout>,
    pub agnostic: bool,
    pub thresholds: Thresholds,
    /// `None`: the model's opset, raised to 11 if below 10.
    pub opset: Option<i64>,
    /// Override the recognized family.
    pub family: Option<Family>,
    /// Boxes normalized to [0, 1] by the input width/height (quantization-friendly; folded into
    /// the decode's stride constants where the decode is appended).
    pub normalize_boxes: bool,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            score_threshold: 0.25,
            iou_threshold: 0.40,
            max_per_class: 20,
            max_det: 100,
            layout: None,
            agnostic: false,
            thresholds: Thresholds::Const,
            opset: None,
            family: None,
            normalize_boxes: false,
        }
    }
}

/// What `merge` did.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    pub family: Family,
    pub layout: String,
    pub opset: i64,
    pub outputs: Vec<String>,
    pub appended_nodes: usize,
    pub notes: Vec<String>,
}

/// Ops whose inputs/attributes changed meaning at the given opset: raising the opset across one of
/// these versions would silently change the model, so it is refused.
const SIGNATURE_CHANGES: &[(&str, i64)] = &[
    ("Slice", 10),
    ("Upsample", 10),
    ("Resize", 11),
    ("Resize", 13),
    ("Clip", 11),
    ("Pad", 11),
    ("TopK", 10),
    ("TopK", 11),
    ("Unsqueeze", 13),
    ("Squeeze", 13),
    ("ReduceSum", 13),
    ("Split", 13),
    ("Split", 18),
    ("ReduceMax", 18),
    ("ReduceMin", 18),
    ("ReduceMean", 18),
    ("Dropout", 12),
    ("BatchNormalization", 14),
    ("Resize", 18),
    ("Resize", 19),
];

fn check_opset_raise(m: &Model, from: i64, to: i64) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    for n in &m.graph().node {
        if !n.domain().is_empty() {
            continue;
        }
        if let Some((_, v)) = SIGNATURE_CHANGES
            .iter()
            .find(|(op, v)| *op == n.op_type() && *v > from && *v <= to)
        {
            bail!("raising the opset from {from} to {to} would change the meaning of {} (its definition changed at opset {v}); keep the model's opset or convert the model first", crate::graph::describe(n));
        }
    }
    Ok(())
}

/// Append the post-process. Refuses already merged models, TensorRT plugin graphs and
/// unrecognized heads.
pub fn merge(m: &mut Model, opts: &MergeOptions) -> Result<MergeReport> {
    // a graph that reads undefined tensors, has a cycle or a malformed node is refused before
    // anything is appended
    crate::shape::validate_structure(m)?;
    let mut head = recognize(m, None)?;
    match head.family {
        Recognized::Merged => bail!("the model is already merged: {}; use `postmerge set` to retune its thresholds", head.rule),
        Recognized::TrtPlugin => bail!("the model uses a TensorRT plugin NMS ({}); postmerge appends ONNX NonMaxSuppression to un-merged exports only", head.rule),
        Recognized::Raw(_) => {}
    }
    crate::shape::validate_nodes(m)?;
    // a symbolic batch the exporter baked into constants is repaired first (or refused)
    let batch_repair = crate::passes::resize::repair_symbolic_batch(m)?;
    if let Some(f) = opts.family {
        head.family = Recognized::Raw(f);
    }
    if !(0.0..=1.0).contains(&opts.iou_threshold) || !opts.score_threshold.is_finite() {
        bail!(
            "--iou must be in [0, 1] and --score finite (got {} / {})",
            opts.iou_threshold,
            opts.score_threshold
        );
    }
    if opts.max_per_class <= 0 {
        bail!("--max-per-class must be at least 1 (0 means \"none\" in onnxruntime but \"unlimited\" in tract)");
    }
    let family = head
        .family
        .family()
        .context("internal: merging a graph that has no raw head")?;
    let layout = opts
        .layout
        .unwrap_or(family.def().default_layout())
        .with_max_det(opts.max_det);
    if opts.max_det == 0 {
        bail!("--max-det must be at least 1");
    }
    let mut notes = Vec::new();
    if let Some(r) = &batch_repair {
        let changed: Vec<String> = r
            .rewrites
            .iter()
            .filter(|w| w.old != w.new)
            .map(|w| format!("{} {} -> {}", w.node, w.old, w.new))
            .collect();
        notes.push(format!("the input declares batch `{}` but the exporter baked its traced batch into {} constant(s); rewritten so the model runs at any batch: {}", r.batch_from, changed.len(), changed.join(", ")));
    }
    let cur = default_opset(&m.proto);
    let opset = match opts.opset {
        Some(v) if v < 10 => bail!("--opset {v}: NonMaxSuppression needs opset 10 or later"),
        Some(v) if v < cur => {
            bail!("--opset {v} is lower than the model's opset {cur}; lowering is not supported")
        }
        Some(v) => v,
        None if cur < 10 => {
            notes.push(format!(
                "opset raised from {cur} to 11: NonMaxSuppression needs opset 10 or later"
            ));
            11
        }
        None => cur,
    };
    check_opset_raise(m, cur, opset)?;
    if opset > cur && opts.opset.is_some() {
        notes.push(format!("opset raised from {cur} to {opset} as requested"));
    }
    let n_boxes = head.num_boxes.context("head has no box count")?;
    let classes = head.num_classes.context("head has no class count")? as i64;
    let out = head.output.clone().context("head has no output")?;
    let batch = head.batch.clone();
    let before = m.graph().node.len();
    let ir = m.proto.ir_version();

    let g = m.graph_mut();
    // the head output stops being a graph output
    let old_outputs: Vec<ValueInfoProto> = std::mem::take(&mut g.output);
    let mut b = Builder::new(g, PREFIX, opset);
    let (boxes, scores) =
        append_decode(&mut b, &head, &out, n_boxes, classes, opts.normalize_boxes)?;

    let new_outputs: Vec<ValueInfoProto>;
    let def = layout.def();
    let mut t = Appended {
        boxes: &boxes,
        scores: &scores,
        n_boxes,
        classes,
        batch: &batch,
        head_out: &out,
        k: layout.max_det().unwrap_or(0) as i64,
        selected: None,
    };
    match def.keep() {
        None => {
            new_outputs = def.append(&mut b, &t)?;
        }
        Some(rows) => {
            let (sel_all, nms_scores, argmax, score_thr) =
                append_nms(&mut b, &boxes, &scores, opts, ir)?;
            // Each selection's score and whether it is above the NMS score threshold (strictly,
            // as NonMaxSuppression selects). In onnxruntime/tract every selection is; a runtime
            // that pads NMS to a fixed size (TFLite: index 0, score ~1e-7) adds rows that are not.
            let sel_scores = b.op("GatherND", &[&nms_scores, &sel_all], vec![]); // [M]
            let keep = b.op("Greater", &[&sel_scores, &score_thr], vec![]); // [M] bool
            let (sel, det_scores, keep_mask) = if rows == Keep::Compact {
                // data-dependent row count: keep the rows (NonZero + Gather; onnx2tf converts
                // both, tract types them — Compress is not typed in tract)
                let nz = b.op("NonZero", &[&keep], vec![]); // [1,M']
                let idx = b.squeeze(&nz, &[0]); // [M']
                let sel = b.op("Gather", &[&sel_all, &idx], vec![make_attr_i("axis", 0)]);
                let sc = b.op("Gather", &[&sel_scores, &idx], vec![make_attr_i("axis", 0)]);
                (sel, sc, None)
            } else {
                // fixed-K layouts: rows below the threshold are masked out of the per-image top-K
                (sel_all.clone(), sel_scores, Some(keep.clone()))
            };
            // selected rows: batch, class, box
            let sel_b = b.slice(&sel, &[0], &[1], &[1]);
            let box_idx_cols = b.const_i64("batch_box_cols", &[2], &[0, 2]);
            let sel_bb = b.op(
                "Gather",
                &[&sel, &box_idx_cols],
                vec![make_attr_i("axis", 1)],
            );
            let det_boxes = b.op("GatherND", &[&boxes, &sel_bb], vec![]); // [M,4]
            let det_class_i64 = match &argmax {
                Some(am) => b.op("GatherND", &[am, &sel_bb], vec![]), // [M]
                None => {
                    let c = b.slice(&sel, &[1], &[2], &[1]);
                    b.squeeze(&c, &[1])
                }
            };
            t.selected = Some(Selected {
                batch: sel_b,
                boxes: det_boxes,
                scores: det_scores,
                classes: det_class_i64,
                keep: keep_mask,
            });
            new_outputs = def.append(&mut b, &t)?;
        }
    }
    let appended = b.g.node.len() - before;
    let g = m.graph_mut();
    g.output = new_outputs;
    // keep the old head output's value_info (now an internal tensor) for readers
    for o in old_outputs {
        if !g.value_info.iter().any(|v| v.name() == o.name()) {
            g.value_info.push(o);
        }
    }
    crate::graph::toposort(g)?;
    if opset != cur {
        set_default_opset(&mut m.proto, opset);
    }
    if m.proto.ir_version() < 4 && opts.thresholds == Thresholds::Inputs {
        bail!("--thresholds inputs needs IR version 4 or later (initializers as input defaults)");
    }
    MergeRecord {
        family: Some(
            serde_json::to_value(head.family)?
                .as_str()
                .unwrap_or("?")
                .to_string(),
        ),
        layout: Some(layout.name().to_string()),
        score: Some(opts.score_threshold),
        iou: Some(opts.iou_threshold),
        max_per_class: usize::try_from(opts.max_per_class).ok(),
        agnostic: Some(opts.agnostic),
        thresholds: Some(opts.thresholds),
        max_det: Some(opts.max_det),
        normalized: opts.normalize_boxes.then(|| crate::record::Normalized {
            height: head.height.unwrap_or(0),
            width: head.width.unwrap_or(0),
        }),
        other: Vec::new(),
    }
    .store(m);
    Ok(MergeReport {
        family,
        layout: layout.name().to_string(),
        opset,
        outputs: m
            .graph()
            .output
            .iter()
            .map(|o| o.name().to_string())
            .collect(),
        appended_nodes: appended,
        notes,
    })
}

pub use crate::families::yolox::{grid_tensors, log_size_bounds};

/// Decode → (boxes [B,N,4] x1y1x2y2, scores [B,N,C]): the family's own `append_decode` (see
/// [`crate::families`]).
fn append_decode(
    b: &mut Builder,
    head: &Head,
    out: &str,
    n: i64,
    c: i64,
    normalize: bool,
) -> Result<(String, String)> {
    let family = head
        .family
        .family()
        .context("internal: merging a graph that has no raw head")?;
    family.def().append_decode(b, head, out, n, c, normalize)
}

/// NMS → (selected [M,3], the score tensor NMS saw [B,C',N], argmax classes [B,N] when agnostic,
/// the score threshold tensor NMS reads).
fn append_nms(
    b: &mut Builder,
    boxes: &str,
    scores: &str,
    opts: &MergeOptions,
    _ir: i64,
) -> Result<(String, String, Option<String>, String)> {
    let (nms_scores, argmax) = if opts.agnostic {
        let mx = b.reduce("ReduceMax", scores, &[2], true); // [B,N,1]
        let t = b.op(
            "Transpose",
            &[&mx],
            vec![make_attr_ints("perm", &[0, 2, 1])],
        ); // [B,1,N]
        let am = b.op(
            "ArgMax",
            &[scores],
            vec![make_attr_i("axis", 2), make_attr_i("keepdims", 0)],
        ); // [B,N]
        (t, Some(am))
    } else {
        (
            b.op(
                "Transpose",
                &[scores],
                vec![make_attr_ints("perm", &[0, 2, 1])],
            ),
            None,
        )
    };
    let max_out = b.init_named(tensor_i64("", &[1], &[opts.max_per_class]), MAX_OUT);
    let iou = b.init_named(tensor_f32("", &[1], &[opts.iou_threshold]), IOU);
    let score = b.init_named(tensor_f32("", &[1], &[opts.score_threshold]), SCORE);
    if opts.thresholds == Thresholds::Inputs {
        let g = &mut b.g;
        g.input
            .push(make_vi(&max_out, DataType::Int64 as i32, &[Dim::Known(1)]));
        g.input
            .push(make_vi(&iou, DataType::Float as i32, &[Dim::Known(1)]));
        g.input
            .push(make_vi(&score, DataType::Float as i32, &[Dim::Known(1)]));
    }
    let sel = b.name("selected_indices");
    b.op_named(
        "NonMaxSuppression",
        NMS_NODE,
        &[boxes, &nms_scores, &max_out, &iou, &score],
        &[&sel],
        vec![make_attr_i("center_point_box", 0)],
    );
    Ok((sel, nms_scores, argmax, score))
}
