//! Comparing a merged model's outputs with the Rust reference post-process (SPEC §5).

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::layouts::ColumnKind as Kind;
use crate::npy::Npy;
use crate::postprocess::{Layout, OutputTensor};

/// Tolerances of the exact comparison (identical pre-NMS tensors).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerance {
    /// Box coordinates, input pixels (or 4 f32 ulps of the value, whichever is larger: f32 cannot
    /// represent 1e-3 px for coordinates beyond ~8000 px, which exploding junk anchors reach).
    pub box_px: f32,
    /// Scores.
    pub score: f32,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            box_px: 1e-3,
            score: 1e-5,
        }
    }
}

/// One differing row.
#[derive(Debug, Clone, Serialize)]
pub struct RowDiff {
    pub output: String,
    pub row: usize,
    pub expected: Vec<f64>,
    pub actual: Vec<f64>,
}

/// Result of comparing layout outputs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Comparison {
    /// Rows compared per output.
    pub rows: Vec<(String, usize)>,
    /// Shape mismatches, missing outputs, count differences.
    pub problems: Vec<String>,
    /// First differing rows (at most 10 per output).
    pub diffs: Vec<RowDiff>,
    pub max_box_err: f64,
    pub max_score_err: f64,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.diffs.is_empty()
    }
}

/// Compare `actual` (from a runtime) with `expected` (from the reference) output by output,
/// row by row, with the layout's column meanings.
pub fn compare_outputs(
    layout: &Layout,
    expected: &[OutputTensor],
    actual: &[(String, Npy)],
    tol: Tolerance,
) -> Result<Comparison> {
    let mut c = Comparison::default();
    for e in expected {
        let Some((_, a)) = actual.iter().find(|(n, _)| *n == e.name) else {
            c.problems.push(format!("output `{}` is missing", e.name));
            continue;
        };
        let kinds = layout.column_kinds(&e.name);
        let width = if kinds.len() > 1 {
            kinds.len()
        } else {
            *e.tensor.shape.last().unwrap_or(&1).max(&1)
        };
        let same_width =
            a.shape.len() == e.tensor.shape.len() && a.shape[1..] == e.tensor.shape[1..];
        if a.shape != e.tensor.shape {
            c.problems.push(format!(
                "output `{}` has shape {:?}, the reference has {:?}",
                e.name, a.shape, e.tensor.shape
            ));
            if !same_width {
                continue;
            }
        }
        let ev: Vec<f64> = e.tensor.to_f32().into_iter().map(f64::from).collect();
        let av: Vec<f64> = match a.to_i64() {
            Some(iv)
                if !matches!(
                    a.data,
                    crate::npy::NpyData::F32(_) | crate::npy::NpyData::F64(_)
                ) =>
            {
                iv.into_iter().map(|x| x as f64).collect()
            }
            _ => a.to_f32().into_iter().map(f64::from).collect(),
        };
        if !ev.len().is_multiple_of(width.max(1)) || !av.len().is_multiple_of(width.max(1)) {
            bail!("output `{}`: {} vs {} values", e.name, av.len(), ev.len());
        }
        let (erows, arows) = (ev.len() / width.max(1), av.len() / width.max(1));
        // rows only one side has: shown as differences too (empty on the other side)
        for r in arows.min(erows)..arows.max(erows) {
            if c.diffs.len() < 10 {
                let (ex, ac) = if r < erows {
                    (ev[r * width..(r + 1) * width].to_vec(), vec![])
                } else {
                    (vec![], av[r * width..(r + 1) * width].to_vec())
                };
                c.diffs.push(RowDiff {
                    output: e.name.clone(),
                    row: r,
                    expected: ex,
                    actual: ac,
                });
            }
        }
        let rows = if width == 0 { 0 } else { erows.min(arows) };
        c.rows.push((e.name.clone(), rows));
        let mut shown = 0;
        for r in 0..rows {
            let mut bad = false;
            for k in 0..width {
                let i = r * width + k;
                let kind = if kinds.len() > 1 { kinds[k] } else { kinds[0] };
                let d = (ev[i] - av[i]).abs();
                let same = ev[i] == av[i] || (ev[i].is_nan() && av[i].is_nan());
                let ok = same
                    || match kind {
                        Kind::Exact => ev[i] == av[i],
                        Kind::Box => {
                            c.max_box_err = c.max_box_err.max(d);
                            // f32 cannot hold 1e-3 px beyond ~8000 px (junk anchors whose exp() explodes):
                            // there the bound is a few ulps of the value instead
                            d <= (tol.box_px as f64).max(ev[i].abs() * 4.0 * f32::EPSILON as f64)
                        }
                        Kind::Score => {
                            c.max_score_err = c.max_score_err.max(d);
                            d <= tol.score as f64
                        }
                    };
                bad |= !ok;
            }
            if bad && shown < 10 && c.diffs.len() < 20 {
                shown += 1;
                c.diffs.push(RowDiff {
                    output: e.name.clone(),
                    row: r,
                    expected: ev[r * width..(r + 1) * width].to_vec(),
                    actual: av[r * width..(r + 1) * width].to_vec(),
                });
            } else if bad {
                shown += 1;
            }
        }
        if shown > 10 {
            c.problems.push(format!(
                "output `{}`: {shown} rows differ (first 10 shown)",
                e.name
            ));
        }
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// `check ORIGINAL MERGED`
// ---------------------------------------------------------------------------------------------

use std::path::PathBuf;

use crate::families::{Family, Recognized};
use crate::graph::{constant, GraphIndex};
use crate::head::recognize;
use crate::model::Model;
use crate::postprocess::{
    decode, detections, detections_from_outputs, nms, render, Decoded, Detection, HeadSpec,
    NmsParams,
};
use crate::run::Runner;
use crate::shape::{vi_shape, Dim};

/// Where the test input comes from.
#[derive(Debug, Clone)]
pub enum CheckInput {
    /// A photo, preprocessed by the family's convention.
    Image(PathBuf),
    /// A ready tensor.
    Npy(PathBuf),
    /// A deterministic synthetic tensor.
    Synthetic,
    /// The default: the scenes bundled with the tool ([`SCENES`]), then the synthetic tensor,
    /// tried in that order; the first on which the reference selects a box clear of the score
    /// threshold is used.
    Scenes,
}

/// The scenes bundled with the tool for the default input (name, encoded image), in the order
/// they are tried. `assets/check/README.md` says where they come from.
pub const SCENES: [(&str, &[u8]); 2] = [
    (
        "dog_384x288.jpg",
        include_bytes!("../../assets/check/dog_384x288.jpg"),
    ),
    (
        "shapes_128x160.png",
        include_bytes!("../../assets/check/shapes_128x160.png"),
    ),
];

/// Options of `check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub input: CheckInput,
    pub tol: Tolerance,
}

/// NMS parameters the user asked for; step 3 compares against them. A `None` field means "what
/// the merged model records" (its `postmerge.merge` metadata, else its NMS constants).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Requested {
    pub score: Option<f32>,
    pub iou: Option<f32>,
    pub max_per_class: Option<usize>,
    /// K of the fixed-size layouts (trt, ultralytics); ignored for the others.
    pub max_det: Option<usize>,
    pub agnostic: Option<bool>,
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    /// `Some(true)` passed, `Some(false)` failed, `None` = not proven: not run or nothing
    /// compared (see `detail`).
    pub ok: Option<bool>,
    /// What the step compared: head values, reference selections, detections.
    pub compared: usize,
    pub detail: String,
}

/// Outcome of a whole check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every step compared something real and agreed.
    Passed,
    /// A step found a difference.
    Failed,
    /// No step failed, but at least one compared nothing (or could not run): nothing is proven.
    NotProven,
}

impl Status {
    /// The process exit code of `check` / `merge --check`: 0 passed, 1 failed, 3 not proven.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Passed => 0,
            Status::Failed => 1,
            Status::NotProven => 3,
        }
    }

    /// The status of a list of steps: failed if one failed, else not proven if one is not
    /// proven, else passed.
    pub fn of(steps: &[Step]) -> Status {
        if steps.iter().any(|s| s.ok == Some(false)) {
            Status::Failed
        } else if steps.is_empty() || steps.iter().any(|s| s.ok.is_none()) {
            Status::NotProven
        } else {
            Status::Passed
        }
    }
}

/// The full report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub original: String,
    pub merged: String,
    pub input: String,
    pub family: Family,
    pub layout: String,
    /// NMS parameters the merged model records (step 2's reference uses them).
    pub params: String,
    /// NMS parameters asked for (step 3's reference uses them).
    pub requested: String,
    pub original_size: (i64, i64),
    pub merged_size: (i64, i64),
    pub steps: Vec<Step>,
    /// First differing rows of the exact step.
    pub diffs: Vec<RowDiff>,
    /// Detections compared by step 3.
    pub detections: usize,
    /// `status == Passed`.
    pub ok: bool,
    pub status: Status,
    pub notes: Vec<String>,
}

/// Layout and NMS parameters of a merged model, as its graph computes them: the constants (or
/// graph-input defaults) feeding its NonMaxSuppression, and whether the NMS is class-agnostic.
/// For the `decoded` layout (no NMS) the parameters are the defaults.
pub fn merged_info(merged: &Model) -> Result<(Layout, NmsParams)> {
    let g = merged.graph();
    let layout = crate::layouts::from_outputs(g)?;
    let mut params = NmsParams::default();
    if layout.has_nms() {
        let ix = GraphIndex::build(g);
        let Some(n) = g.node.iter().find(|n| n.op_type() == "NonMaxSuppression") else {
            bail!("the merged model has no NonMaxSuppression node")
        };
        let val = |i: usize| -> Result<f64> {
            let name = n.input.get(i).cloned().unwrap_or_default();
            let t = constant(g, &ix, &name)
                .map(|(_, t)| t)
                .or_else(|| ix.initializer.get(&name).map(|&k| g.initializer[k].clone()));
            let Some(t) = t else {
                bail!("NMS input {i} `{name}` is not a constant")
            };
            merged
                .tensor_values(&t)?
                .as_f64()
                .first()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("NMS input `{name}` is empty"))
        };
        params.max_per_class = val(2)? as usize;
        params.iou_threshold = val(3)? as f32;
        params.score_threshold = val(4)? as f32;
        // agnostic: the NMS scores are a ReduceMax over classes
        params.agnostic = ix
            .producer
            .get(&n.input[1])
            .map(|&p| &g.node[p])
            .and_then(|t| t.input.first())
            .and_then(|i| ix.producer.get(i))
            .map(|&p| g.node[p].op_type() == "ReduceMax")
            .unwrap_or(false);
    }
    Ok((layout, params))
}

/// What `merge` recorded in the `postmerge.merge` metadata (`set` keeps it up to date).
pub type Recorded = crate::record::MergeRecord;

/// The `postmerge.merge` metadata of a model, or `None` when it has none.
pub fn recorded(m: &Model) -> Option<Recorded> {
    Recorded::of(m)
}

/// Differences between the NMS parameters a merged graph computes with and the ones it records:
/// one line per differing parameter (empty when they agree).
pub fn constant_problems(layout: &Layout, graph: &NmsParams, rec: &Recorded) -> Vec<String> {
    let mut p = Vec::new();
    if layout.has_nms() {
        let f = |name: &str, input: usize, g: f32, r: Option<f32>, p: &mut Vec<String>| {
            if let Some(r) = r.filter(|&r| r != g) {
                p.push(format!("NonMaxSuppression input {input} ({name}) is {g} in the graph; the model's postmerge.merge metadata records {r}"));
            }
        };
        f(
            "score_threshold",
            4,
            graph.score_threshold,
            rec.score,
            &mut p,
        );
        f("iou_threshold", 3, graph.iou_threshold, rec.iou, &mut p);
        if let Some(r) = rec.max_per_class.filter(|&r| r != graph.max_per_class) {
            p.push(format!("NonMaxSuppression input 2 (max_output_boxes_per_class) is {} in the graph; the model's postmerge.merge metadata records {r}", graph.max_per_class));
        }
        if let Some(r) = rec.agnostic.filter(|&r| r != graph.agnostic) {
            p.push(format!(
                "the graph's NMS is {}; the model's postmerge.merge metadata records agnostic={r}",
                if graph.agnostic {
                    "class-agnostic"
                } else {
                    "per class"
                }
            ));
        }
    }
    if let (Some(k), Some(r)) = (layout.max_det(), rec.max_det) {
        if k != r {
            p.push(format!(
                "the outputs hold K = {k} detections; the model's postmerge.merge metadata records max_det={r}"
            ));
        }
    }
    p
}

/// Differences between what was asked for and what the model records (one line each).
pub fn request_problems(
    layout: &Layout,
    rec: &NmsParams,
    req: &Requested,
    recorded_k: Option<usize>,
) -> Vec<String> {
    let mut p = Vec::new();
    let mut f = |name: &str, asked: Option<String>, has: String| {
        if let Some(a) = asked.filter(|a| *a != has) {
            p.push(format!("{name} {a} was asked for; the model has {has}"));
        }
    };
    f(
        "score",
        req.score.map(|v| v.to_string()),
        rec.score_threshold.to_string(),
    );
    f(
        "IoU",
        req.iou.map(|v| v.to_string()),
        rec.iou_threshold.to_string(),
    );
    f(
        "max-per-class",
        req.max_per_class.map(|v| v.to_string()),
        rec.max_per_class.to_string(),
    );
    if layout.has_nms() {
        f(
            "agnostic",
            req.agnostic.map(|v| v.to_string()),
            rec.agnostic.to_string(),
        );
    }
    if let Some(k) = recorded_k {
        f("max-det", req.max_det.map(|v| v.to_string()), k.to_string());
    }
    p
}

/// Step 3's comparison of two detection sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DetectionMatch {
    /// Reference detections clear of the threshold (score more than 1e-3 away from it).
    pub considered: usize,
    /// Of those, how many have no detection of the same image and class with IoU >= 0.9.
    pub missing: usize,
    /// Detections of `got` clear of the threshold with no such reference detection.
    pub extra: usize,
}

/// Matches detections by image, class and IoU >= 0.9. Two runs may differ in the last bits, so
/// scores within 1e-3 of the threshold are not compared; every other detection of `got` (also one
/// below the threshold, which should not be there at all) needs a reference partner, and every
/// reference detection above the threshold a partner in `got`.
pub fn match_detections(
    reference: &[Detection],
    got: &[Detection],
    score_threshold: f32,
) -> DetectionMatch {
    let margin = 1e-3f32;
    let clear = |d: &Detection| (d.score - score_threshold).abs() > margin;
    // identical boxes match even when degenerate (zero or negative width: IoU 0), which junk
    // anchors of random-weight models produce
    let matched = |d: &Detection, pool: &[Detection]| {
        pool.iter().any(|g| {
            g.batch == d.batch && g.class == d.class && (g.bbox() == d.bbox() || iou(g, d) >= 0.9)
        })
    };
    DetectionMatch {
        considered: reference.iter().filter(|d| clear(d)).count(),
        missing: reference
            .iter()
            .filter(|d| clear(d) && !matched(d, got))
            .count(),
        extra: got
            .iter()
            .filter(|d| clear(d) && !matched(d, reference))
            .count(),
    }
}

/// Largest input tensor `check` builds (bytes).
const MAX_CHECK_INPUT_BYTES: u128 = 2 << 30;

fn hw(m: &Model) -> Result<(Dim, i64, i64)> {
    let h = recognize(m, None).or_else(|_| -> Result<crate::head::Head> { bail!("no head") });
    let g = m.graph();
    let shape = match h {
        Ok(h) => h.input_shape,
        Err(_) => g.input.first().and_then(vi_shape).unwrap_or_default(),
    };
    // a model that takes uint8 [B, H, W, 3] frames: seen as [B, 3, H, W]
    let shape = crate::passes::input_format::nchw_view(
        &shape,
        crate::passes::input_format::input_format(m)?,
    );
    match (
        shape.first(),
        shape.get(2).and_then(Dim::known),
        shape.get(3).and_then(Dim::known),
    ) {
        (Some(b), Some(hh), Some(ww)) => {
            // the input tensor check builds is B x 3 x H x W floats; refuse absurd declarations
            // before allocating (head recognition allows up to 16384 a side)
            let elems = (b.known().unwrap_or(1).max(1) as u128)
                * 3
                * (hh.max(0) as u128)
                * (ww.max(0) as u128);
            if hh <= 0 || ww <= 0 || elems * 4 > MAX_CHECK_INPUT_BYTES {
                bail!(
                    "input shape {} declares a {:.1} GB input; check runs models with inputs up to {} GiB",
                    crate::shape::fmt_shape(&shape),
                    (elems * 4) as f64 / 1e9,
                    MAX_CHECK_INPUT_BYTES >> 30
                );
            }
            Ok((b.clone(), hh, ww))
        }
        _ => bail!(
            "input shape {} has no static H and W",
            crate::shape::fmt_shape(&shape)
        ),
    }
}

fn iou(a: &Detection, b: &Detection) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = iw * ih;
    let ua = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
    if ua > 0.0 {
        inter / ua
    } else {
        0.0
    }
}

fn preprocessing(family: Family) -> String {
    family.def().preprocess().describe()
}

/// The candidate inputs of `opts.input`, in the order they are tried (one unless `Scenes`).
fn candidates(
    input: &CheckInput,
    family: Family,
    batch: usize,
    mh: i64,
    mw: i64,
) -> Result<Vec<(Npy, String)>> {
    let photo = |img: &image::RgbImage| -> Result<Npy> {
        let (t, _) = crate::imageio::preprocess(img, family, mh as u32, mw as u32)?;
        if batch > 1 {
            repeat_batch(&t, batch)
        } else {
            Ok(t)
        }
    };
    let synthetic = || -> Result<(Npy, String)> {
        Ok((
            crate::imageio::synthetic(family, batch, mh as usize, mw as usize)?,
            "deterministic synthetic tensor".to_string(),
        ))
    };
    Ok(match input {
        CheckInput::Npy(p) => {
            let n = crate::npy::read_npy_file(p)?;
            if n.shape.len() != 4 || n.shape[2] as i64 != mh || n.shape[3] as i64 != mw {
                bail!(
                    "input `{}` has shape {:?}; the merged model takes [B,3,{mh},{mw}]",
                    p.display(),
                    n.shape
                );
            }
            vec![(n, format!("tensor {}", p.display()))]
        }
        CheckInput::Image(p) => {
            let img = crate::imageio::load_image(p)?;
            vec![(
                photo(&img)?,
                format!(
                    "image {} ({} preprocessing)",
                    p.display(),
                    preprocessing(family)
                ),
            )]
        }
        CheckInput::Synthetic => vec![synthetic()?],
        CheckInput::Scenes => {
            let mut v = Vec::new();
            for (name, bytes) in SCENES {
                let img = image::load_from_memory(bytes)
                    .with_context(|| format!("cannot decode the bundled scene `{name}`"))?
                    .to_rgb8();
                v.push((
                    photo(&img)?,
                    format!(
                        "bundled scene {name} ({} preprocessing)",
                        preprocessing(family)
                    ),
                ));
            }
            v.push(synthetic()?);
            v
        }
    })
}

/// Run `check` with the parameters the merged model records (see [`check_against`]).
pub fn check_models(original: &Model, merged: &Model, opts: &CheckOptions) -> Result<CheckReport> {
    check_against(original, merged, opts, &Requested::default())
}

/// Run `check`: original vs merged, in three steps (SPEC §5), step 3 against the NMS parameters
/// `req` asks for.
pub fn check_against(
    original: &Model,
    merged: &Model,
    opts: &CheckOptions,
    req: &Requested,
) -> Result<CheckReport> {
    crate::shape::validate_structure(original)
        .with_context(|| format!("ORIGINAL `{}` is not a valid model", original.source))?;
    crate::shape::validate_structure(merged)
        .with_context(|| format!("MERGED `{}` is not a valid model", merged.source))?;
    let head = recognize(original, None)?;
    let Recognized::Raw(family) = head.family else {
        bail!(
            "ORIGINAL must be an un-merged export; `{}` is {}",
            original.source,
            head.family.label()
        );
    };
    let head_out = head
        .output
        .clone()
        .ok_or_else(|| anyhow::anyhow!("original has no head output"))?;
    let (layout, graph_params) = merged_info(merged)?;
    let (mb, mh, mw) = hw(merged)?;
    crate::shape::validate_nodes(original)
        .with_context(|| format!("ORIGINAL `{}` is not a valid model", original.source))?;
    crate::shape::validate_nodes(merged)
        .with_context(|| format!("MERGED `{}` is not a valid model", merged.source))?;
    let (oh, ow) = (head.height.unwrap_or(0), head.width.unwrap_or(0));
    let batch = mb.known().unwrap_or(1) as usize;
    let mut notes = Vec::new();
    // the parameters: what the graph computes with, what it records, what was asked for
    let rec = recorded(merged);
    if rec.is_none() {
        notes.push("the merged model has no postmerge.merge metadata: its NMS constants are taken as what it records".into());
    }
    let rec_or_default = rec.clone().unwrap_or_default();
    let recorded_params = NmsParams {
        score_threshold: rec_or_default.score.unwrap_or(graph_params.score_threshold),
        iou_threshold: rec_or_default.iou.unwrap_or(graph_params.iou_threshold),
        max_per_class: rec_or_default
            .max_per_class
            .unwrap_or(graph_params.max_per_class),
        agnostic: rec_or_default.agnostic.unwrap_or(graph_params.agnostic),
    };
    let layout_k = layout.max_det();
    let const_problems = match &rec {
        Some(r) => constant_problems(&layout, &graph_params, r),
        None => Vec::new(),
    };
    let req_problems = request_problems(&layout, &recorded_params, req, layout_k);
    let wanted = NmsParams {
        score_threshold: req.score.unwrap_or(recorded_params.score_threshold),
        iou_threshold: req.iou.unwrap_or(recorded_params.iou_threshold),
        max_per_class: req.max_per_class.unwrap_or(recorded_params.max_per_class),
        agnostic: req.agnostic.unwrap_or(recorded_params.agnostic),
    };
    let wanted_k = layout_k.map(|k| req.max_det.unwrap_or(k));
    let spec = HeadSpec {
        kind: family,
        num_classes: head.num_classes.unwrap_or(0),
        strides: head.strides.iter().map(|&s| s as u32).collect(),
        input_h: mh as usize,
        input_w: mw as usize,
    };
    // boxes normalized to [0, 1] (merge --quant-prep): the reference scales its boxes the same way
    let normalized = rec.as_ref().is_some_and(|r| r.normalized.is_some());
    let norm = |mut d: Decoded| {
        if normalized {
            for b in d.boxes.chunks_mut(4) {
                b[0] /= mw as f32;
                b[1] /= mh as f32;
                b[2] /= mw as f32;
                b[3] /= mh as f32;
            }
        }
        d
    };
    let decode_head = |t: &Npy| -> Result<Decoded> {
        Ok(norm(decode(
            &t.to_f32(),
            t.shape.first().copied().unwrap_or(0),
            t.shape.get(1).copied().unwrap_or(0),
            &spec,
        )?))
    };
    // the input: the first candidate on which the reference selects a box clear of the threshold
    let cands = candidates(&opts.input, family, batch, mh, mw)?;
    // a MERGED that takes uint8 NHWC frames gets the frame whose in-graph preprocessing is
    // exactly the candidate (the same picture; the synthetic input and photos are pixel values)
    let mfmt = crate::passes::input_format::input_format(merged)?;
    let mcands: Vec<Npy> = cands
        .iter()
        .map(|(x, _)| {
            if mfmt.is_frame() {
                crate::passes::input_format::nchw_to_frame(x, mfmt, family)
                    .context("MERGED takes uint8 frames")
            } else {
                Ok(x.clone())
            }
        })
        .collect::<Result<_>>()?;
    let mrun = Runner::new(merged, &[&mcands[0]], &[&head_out])?;
    if mrun.fallback {
        notes.push("tract could not type the merged model and ran it un-typed".into());
    }
    let mut chosen: Option<(usize, Vec<(String, Npy)>)> = None;
    let mut first: Option<Vec<(String, Npy)>> = None;
    for (i, x) in mcands.iter().enumerate() {
        let outs = mrun.run(&[x])?;
        if cands.len() == 1 {
            chosen = Some((i, outs));
            break;
        }
        let Some((_, t)) = outs.iter().find(|(n, _)| *n == head_out) else {
            bail!("the merged model has no tensor `{head_out}` (the original's head output)")
        };
        let d = decode_head(t)?;
        let selects = !nms(&d, &recorded_params)?.is_empty()
            && detections(&d, &nms(&d, &wanted)?)?
                .iter()
                .any(|x| x.score > wanted.score_threshold + 1e-3);
        if selects {
            chosen = Some((i, outs));
            break;
        }
        if first.is_none() {
            first = Some(outs);
        }
    }
    let (ci, mouts) = match (chosen, first) {
        (Some(c), _) => c,
        (None, Some(f)) => {
            notes.push(format!("on none of the {} default inputs (bundled scenes, synthetic tensor) does the reference select a box: nothing can be proven; pass --image with a photo on which the model detects something", cands.len()));
            (0, f)
        }
        (None, None) => bail!("no input to check with"),
    };
    if matches!(opts.input, CheckInput::Scenes) && ci > 0 {
        notes.push(format!(
            "default input: {}, the first of {} on which the reference selects boxes (tried before it: {})",
            cands[ci].1,
            cands.len(),
            cands[..ci].iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let (input, mut input_desc) = (&cands[ci].0, cands[ci].1.clone());
    if mfmt.is_frame() {
        input_desc.push_str(&format!(
            "; MERGED fed the same picture as a uint8 {mfmt} frame"
        ));
    }
    let Some((_, mhead)) = mouts.iter().find(|(n, _)| *n == head_out) else {
        bail!("the merged model has no tensor `{head_out}` (the original's head output)")
    };
    let mut steps = Vec::new();
    // step 1: original head output vs the head tensor inside the merged model
    let orig_raw = if (oh, ow) == (mh, mw) || family.def().runs_at_any_size() {
        match Runner::new(original, &[input], &[]).and_then(|r| r.run(&[input])) {
            Ok(o) => o.into_iter().find(|(n, _)| *n == head_out).map(|(_, t)| t),
            Err(e) => {
                notes.push(format!("the original cannot run at {mh}x{mw}: {e:#}"));
                None
            }
        }
    } else {
        notes.push(format!("the original ({oh}x{ow}) bakes constants of its size and cannot run at {mh}x{mw}: steps 1 and 3 need a native export at that size (or `merge --size {mh}x{mw} --check`, which checks against the re-specialized original)"));
        None
    };
    match &orig_raw {
        Some(o) if o.shape == mhead.shape => {
            let (a, b) = (o.to_f32(), mhead.to_f32());
            let range = a
                .iter()
                .filter(|x| x.is_finite())
                .fold(0f32, |m, &x| m.max(x.abs()));
            let finite = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .count();
            // a value finite on one side only is a difference
            let one_sided = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| x.is_finite() != y.is_finite())
                .count();
            let maxd = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            let rel = if range > 0.0 { maxd / range } else { maxd };
            let ok = if one_sided > 0 {
                Some(false)
            } else if finite == 0 {
                None
            } else {
                Some(rel <= 1e-4)
            };
            steps.push(Step {
                name: "head".into(),
                ok,
                compared: finite,
                detail: format!("original head `{head_out}` vs the same tensor in the merged model: {finite} values, max |d| {maxd:.3e} (range {range:.3e}, relative {rel:.1e}, tolerance 1e-4){}", if one_sided > 0 { format!("; {one_sided} values finite on one side only") } else { String::new() }),
            });
        }
        Some(o) => steps.push(Step {
            name: "head".into(),
            ok: Some(false),
            compared: 0,
            detail: format!(
                "head shapes differ: original {:?}, merged {:?}",
                o.shape, mhead.shape
            ),
        }),
        None => steps.push(Step {
            name: "head".into(),
            ok: None,
            compared: 0,
            detail: "not proven: the original cannot run at the merged model's size".into(),
        }),
    };
    let tol = if normalized {
        Tolerance {
            box_px: opts.tol.box_px / mh.max(mw) as f32,
            ..opts.tol
        }
    } else {
        opts.tol
    };
    if normalized {
        notes.push(format!(
            "boxes are normalized to [0, 1] by {mw}x{mh} (WxH); box errors are in those units"
        ));
    }
    // step 2: the appended post-process on identical pre-NMS tensors vs the reference, with the
    // parameters the model records (its NMS constants must equal them)
    let dec = decode_head(mhead)?;
    let step2_params = if !layout.has_nms() {
        wanted
    } else {
        recorded_params
    };
    let sel = nms(&dec, &step2_params)?;
    let expected = render(&layout, &dec, &sel)?;
    let cmp = compare_outputs(&layout, &expected, &mouts, tol)?;
    let mut problems = const_problems.clone();
    problems.extend(cmp.problems.iter().cloned());
    let step2_ok = if !const_problems.is_empty() || !cmp.ok() {
        Some(false)
    } else if sel.is_empty() {
        None
    } else {
        Some(true)
    };
    steps.push(Step {
        name: "post-process".into(),
        ok: step2_ok,
        compared: sel.len(),
        detail: format!(
            "appended post-process vs the Rust reference on the same head tensor: {} selections{}; max box error {:.2e} px, max score error {:.2e}{}{}",
            sel.len(),
            if !layout.has_nms() { " (reference NMS, to prove the input exercises the scores)" } else { "" },
            cmp.max_box_err,
            cmp.max_score_err,
            if problems.is_empty() { String::new() } else { format!("; {}", problems.join("; ")) },
            if step2_ok.is_none() { "; not proven: the reference selects no box on this input" } else { "" },
        ),
    });
    // step 3: final detections vs the reference on the original's output, with the requested
    // parameters
    let mut ndets = 0;
    if let Some(o) = &orig_raw {
        let odec = decode_head(o)?;
        let mut refd = detections(&odec, &nms(&odec, &wanted)?)?;
        let got = if !layout.has_nms() {
            // no NMS in the model: the reference NMS on its decoded outputs
            let find = |n: &str| {
                mouts
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, t)| t)
                    .ok_or_else(|| anyhow::anyhow!("the merged model has no output `{n}`"))
            };
            let (bx, sc) = (find("boxes")?, find("scores")?);
            let d = Decoded::from_boxes_scores(
                bx.shape.first().copied().unwrap_or(0),
                bx.shape.get(1).copied().unwrap_or(0),
                sc.shape.get(2).copied().unwrap_or(0),
                bx.to_f32(),
                sc.to_f32(),
            )?;
            detections(&d, &nms(&d, &wanted)?)?
        } else {
            let outs: Vec<OutputTensor> = mouts
                .iter()
                .filter(|(n, _)| layout.output_names().contains(&n.as_str()))
                .map(|(n, t)| OutputTensor {
                    name: n.clone(),
                    tensor: t.clone(),
                })
                .collect();
            detections_from_outputs(&layout, &outs)?
        };
        if let Some(k) = wanted_k {
            // the fixed-K layouts keep the K best per image
            refd = top_k(&refd, batch.max(1), k);
        }
        let m = match_detections(&refd, &got, wanted.score_threshold);
        ndets = m.considered;
        let ok = if !req_problems.is_empty() || m.missing > 0 || m.extra > 0 {
            Some(false)
        } else if m.considered == 0 {
            None
        } else {
            Some(true)
        };
        steps.push(Step {
            name: "detections".into(),
            ok,
            compared: m.considered,
            detail: format!(
                "merged detections vs the reference on the original's head output{}: {} clear of the threshold, {} missing, {} extra (matched by class and IoU >= 0.9){}{}",
                if !layout.has_nms() { " (reference NMS on both)" } else { "" },
                m.considered,
                m.missing,
                m.extra,
                if req_problems.is_empty() { String::new() } else { format!("; {}", req_problems.join("; ")) },
                if ok.is_none() { "; not proven: no reference detection on this input" } else { "" },
            ),
        });
    } else {
        steps.push(Step {
            name: "detections".into(),
            ok: if req_problems.is_empty() {
                None
            } else {
                Some(false)
            },
            compared: 0,
            detail: format!(
                "not proven: no original output at this size{}",
                if req_problems.is_empty() {
                    String::new()
                } else {
                    format!("; {}", req_problems.join("; "))
                }
            ),
        });
    }
    crate::nonfinite::taint_steps(
        &mut steps,
        original,
        merged,
        orig_raw.as_ref(),
        &mouts,
        &head_out,
    );
    let status = Status::of(&steps);
    let fmt_params = |p: &NmsParams, k: Option<usize>| {
        format!(
            "score > {}, IoU > {}, {} per class{}{}",
            p.score_threshold,
            p.iou_threshold,
            p.max_per_class,
            if p.agnostic { ", agnostic" } else { "" },
            k.map(|k| format!(", max-det {k}")).unwrap_or_default()
        )
    };
    Ok(CheckReport {
        original: original.source.clone(),
        merged: merged.source.clone(),
        input: input_desc,
        family,
        layout: layout.name().into(),
        params: fmt_params(&recorded_params, layout_k),
        requested: fmt_params(&wanted, wanted_k),
        original_size: (oh, ow),
        merged_size: (mh, mw),
        steps,
        diffs: cmp.diffs,
        detections: ndets,
        ok: status == Status::Passed,
        status,
        notes,
    })
}

fn top_k(d: &[Detection], batch: usize, k: usize) -> Vec<Detection> {
    let mut out = Vec::new();
    for b in 0..batch {
        let mut v: Vec<Detection> = d.iter().filter(|x| x.batch == b).copied().collect();
        v.sort_by(|a, c| {
            c.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        v.truncate(k);
        out.extend(v);
    }
    out
}

fn repeat_batch(t: &Npy, b: usize) -> Result<Npy> {
    let v = t.to_f32();
    let mut data = Vec::with_capacity(v.len() * b);
    for _ in 0..b {
        data.extend_from_slice(&v);
    }
    let mut shape = t.shape.clone();
    shape[0] = b;
    Npy::new(shape, crate::npy::NpyData::F32(data))
}

/// Text rendering of a report.
pub fn render_report(r: &CheckReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "original: {} ({}, {}x{})",
        r.original,
        r.family.label(),
        r.original_size.0,
        r.original_size.1
    );
    let _ = writeln!(
        s,
        "merged:   {} (layout {}, {}x{}, {})",
        r.merged, r.layout, r.merged_size.0, r.merged_size.1, r.params
    );
    if r.requested != r.params {
        let _ = writeln!(s, "asked:    {}", r.requested);
    }
    let _ = writeln!(s, "input:    {}", r.input);
    for st in &r.steps {
        let tag = match st.ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "NOT PROVEN",
        };
        let _ = writeln!(s, "[{tag}] {}: {}", st.name, st.detail);
    }
    for d in r.diffs.iter().take(10) {
        let f = |v: &[f64]| {
            if v.is_empty() {
                "(no row)".to_string()
            } else {
                v.iter()
                    .map(|x| format!("{x:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(
            s,
            "  {} row {}: expected [{}]\n  {} row {}: actual   [{}]",
            d.output,
            d.row,
            f(&d.expected),
            d.output,
            d.row,
            f(&d.actual)
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let _ = writeln!(
        s,
        "{}",
        match r.status {
            Status::Passed => format!("check passed ({} detections)", r.detections),
            Status::Failed => "check FAILED".to_string(),
            Status::NotProven => format!(
                "check NOT PROVEN: {} compared nothing on this input (exit code 3)",
                r.steps
                    .iter()
                    .filter(|s| s.ok.is_none())
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    );
    s
}
