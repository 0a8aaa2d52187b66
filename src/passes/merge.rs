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
use crate::graph::{make_attr_i, make_attr_ints, make_attr_t, GraphIndex};
use crate::head::{recognize, Head};
use crate::model::Model;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::ValueInfoProto;
use crate::passes::{default_opset, set_default_opset, set_metadata};
use crate::postprocess::Layout;
use crate::shape::{make_vi, Dim};
use crate::tensor::{tensor_f32, tensor_i64};

/// PINTO-compatible names (their `sam4onnx` recipe rewrites these).
pub const NMS_NODE: &str = "main01_nonmaxsuppression11";
pub const MAX_OUT: &str = "main01_max_output_boxes_per_class";
pub const IOU: &str = "main01_iou_threshold";
pub const SCORE: &str = "main01_score_threshold";
/// Prefix of every other appended node and tensor.
pub const PREFIX: &str = "postmerge/";

/// How NMS thresholds are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Thresholds {
    /// Named initializers (rewritable in the file with `set` or sam4onnx).
    #[default]
    Const,
    /// Graph inputs with same-named initializers as defaults.
    Inputs,
}

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
    let layout = opts.layout.unwrap_or(family.def().default_layout());
    let layout = match layout {
        Layout::Trt { .. } => Layout::Trt {
            max_det: opts.max_det,
        },
        Layout::Ultralytics { .. } => Layout::Ultralytics {
            max_det: opts.max_det,
        },
        l => l,
    };
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
    let f32t = DataType::Float as i32;
    let i32t = DataType::Int32 as i32;
    match layout {
        Layout::Decoded => {
            b.op_named(
                "Identity",
                &format!("{PREFIX}boxes"),
                &[&boxes],
                &["boxes"],
                vec![],
            );
            b.op_named(
                "Identity",
                &format!("{PREFIX}scores"),
                &[&scores],
                &["scores"],
                vec![],
            );
            new_outputs = vec![
                make_vi(
                    "boxes",
                    f32t,
                    &[batch.clone(), Dim::Known(n_boxes), Dim::Known(4)],
                ),
                make_vi(
                    "scores",
                    f32t,
                    &[batch.clone(), Dim::Known(n_boxes), Dim::Known(classes)],
                ),
            ];
        }
        _ => {
            let (sel_all, nms_scores, argmax, score_thr) =
                append_nms(&mut b, &boxes, &scores, opts, ir)?;
            // Each selection's score and whether it is above the NMS score threshold (strictly,
            // as NonMaxSuppression selects). In onnxruntime/tract every selection is; a runtime
            // that pads NMS to a fixed size (TFLite: index 0, score ~1e-7) adds rows that are not.
            let sel_scores = b.op("GatherND", &[&nms_scores, &sel_all], vec![]); // [M]
            let keep = b.op("Greater", &[&sel_scores, &score_thr], vec![]); // [M] bool
            let (sel, det_scores, keep_mask) =
                if matches!(layout, Layout::Pinto | Layout::PintoGoldYolo) {
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
            match layout {
                Layout::Pinto | Layout::PintoGoldYolo => {
                    let bf = b.cast(&sel_b, DataType::Float);
                    let cls1 = b.unsqueeze(&det_class_i64, &[1]);
                    let cf = b.cast(&cls1, DataType::Float);
                    let sc = b.unsqueeze(&det_scores, &[1]);
                    let (name, parts): (&str, Vec<&str>) = if layout == Layout::Pinto {
                        (
                            "batchno_classid_score_x1y1x2y2",
                            vec![&bf, &cf, &sc, &det_boxes],
                        )
                    } else {
                        (
                            "batchno_classid_x1y1x2y2_score",
                            vec![&bf, &cf, &det_boxes, &sc],
                        )
                    };
                    b.op_named(
                        "Concat",
                        &format!("{PREFIX}output_concat"),
                        &parts,
                        &[name],
                        vec![make_attr_i("axis", 1)],
                    );
                    new_outputs = vec![make_vi(name, f32t, &[Dim::Sym("N".into()), Dim::Known(7)])];
                }
                Layout::Trt { max_det } | Layout::Ultralytics { max_det } => {
                    let k = max_det as i64;
                    let sel_b1 = b.squeeze(&sel_b, &[1]); // [M]
                    let keep_mask = keep_mask.context("internal: no keep mask")?;
                    let (nd, db, ds, dc) = append_topk(
                        &mut b,
                        &out,
                        &sel_b1,
                        &keep_mask,
                        &det_boxes,
                        &det_scores,
                        &det_class_i64,
                        k,
                        &batch,
                    )?;
                    if matches!(layout, Layout::Trt { .. }) {
                        b.op_named(
                            "Identity",
                            &format!("{PREFIX}num_dets"),
                            &[&nd],
                            &["num_dets"],
                            vec![],
                        );
                        b.op_named(
                            "Identity",
                            &format!("{PREFIX}det_boxes"),
                            &[&db],
                            &["det_boxes"],
                            vec![],
                        );
                        b.op_named(
                            "Identity",
                            &format!("{PREFIX}det_scores"),
                            &[&ds],
                            &["det_scores"],
                            vec![],
                        );
                        b.op_named(
                            "Identity",
                            &format!("{PREFIX}det_classes"),
                            &[&dc],
                            &["det_classes"],
                            vec![],
                        );
                        new_outputs = vec![
                            make_vi("num_dets", i32t, &[batch.clone(), Dim::Known(1)]),
                            make_vi(
                                "det_boxes",
                                f32t,
                                &[batch.clone(), Dim::Known(k), Dim::Known(4)],
                            ),
                            make_vi("det_scores", f32t, &[batch.clone(), Dim::Known(k)]),
                            make_vi("det_classes", i32t, &[batch.clone(), Dim::Known(k)]),
                        ];
                    } else {
                        // x1,y1,x2,y2,score,class; padding rows all zero
                        let s3 = b.unsqueeze(&ds, &[2]);
                        // -1 padding -> 0; Max on floats (integer Max needs opset 12)
                        let cf0 = b.cast(&dc, DataType::Float);
                        let zerof_out = b.const_f32("zero_class", &[1], &[0.0]);
                        let cf = b.op("Max", &[&cf0, &zerof_out], vec![]);
                        let c3 = b.unsqueeze(&cf, &[2]);
                        b.op_named(
                            "Concat",
                            &format!("{PREFIX}output0"),
                            &[&db, &s3, &c3],
                            &["output0"],
                            vec![make_attr_i("axis", 2)],
                        );
                        new_outputs = vec![make_vi(
                            "output0",
                            f32t,
                            &[batch.clone(), Dim::Known(k), Dim::Known(6)],
                        )];
                    }
                }
                Layout::Decoded => unreachable!(),
            }
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
    let desc = format!(
        "family={}; layout={}; score={}; iou={}; max_per_class={}; agnostic={}; thresholds={}; max_det={}{}",
        serde_json::to_value(head.family)?.as_str().unwrap_or("?"),
        layout.name(),
        opts.score_threshold,
        opts.iou_threshold,
        opts.max_per_class,
        opts.agnostic,
        if opts.thresholds == Thresholds::Const { "const" } else { "inputs" },
        opts.max_det,
        if opts.normalize_boxes { format!("; boxes=normalized/{}x{}", head.height.unwrap_or(0), head.width.unwrap_or(0)) } else { String::new() }
    );
    set_metadata(&mut m.proto, "postmerge.merge", &desc);
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

/// Per-image top-K of the selections whose `keep` is true: (num_dets [B,1] i32, boxes [B,K,4],
/// scores [B,K], classes [B,K] i32), sorted by descending score, padded with 0 / class -1. ONNX
/// ops only.
#[allow(clippy::too_many_arguments)]
fn append_topk(
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
    let _ = make_attr_t; // (kept for future constant attributes)
    let _ = GraphIndex::default;
    Ok((num, det_boxes, det_scores, det_classes))
}
