//! Comparing a merged model's outputs with the Rust reference post-process (SPEC §5).

use anyhow::{bail, Context, Result};
use serde::Serialize;

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

/// What kind of value a column holds.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Exact,
    Box,
    Score,
}

fn column_kinds(layout: &Layout, output: &str) -> Vec<Kind> {
    use Kind::*;
    match (layout, output) {
        (Layout::Pinto, _) => vec![Exact, Exact, Score, Box, Box, Box, Box],
        (Layout::PintoGoldYolo, _) => vec![Exact, Exact, Box, Box, Box, Box, Score],
        (Layout::Trt { .. }, "det_boxes") => vec![Box],
        (Layout::Trt { .. }, "det_scores") => vec![Score],
        (Layout::Trt { .. }, _) => vec![Exact],
        (Layout::Ultralytics { .. }, _) => vec![Box, Box, Box, Box, Score, Exact],
        (Layout::Decoded, "boxes") => vec![Box],
        (Layout::Decoded, _) => vec![Score],
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
        let kinds = column_kinds(layout, &e.name);
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

use crate::graph::{constant, GraphIndex};
use crate::head::{recognize, Family};
use crate::model::Model;
use crate::postprocess::{
    decode, detections, detections_from_outputs, nms, render, Detection, HeadKind, HeadSpec,
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
}

/// Options of `check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub input: CheckInput,
    pub tol: Tolerance,
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    /// `None` = not run (see `detail`).
    pub ok: Option<bool>,
    pub detail: String,
}

/// The full report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub original: String,
    pub merged: String,
    pub input: String,
    pub family: Family,
    pub layout: String,
    pub params: String,
    pub original_size: (i64, i64),
    pub merged_size: (i64, i64),
    pub steps: Vec<Step>,
    /// First differing rows of the exact step.
    pub diffs: Vec<RowDiff>,
    pub detections: usize,
    pub ok: bool,
    pub notes: Vec<String>,
}

/// Layout, NMS parameters and head output name of a merged model.
pub fn merged_info(merged: &Model) -> Result<(Layout, NmsParams)> {
    let g = merged.graph();
    let names: Vec<&str> = g.output.iter().map(|o| o.name()).collect();
    let k_of = |name: &str, axis: usize| -> Result<usize> {
        let o = g
            .output
            .iter()
            .find(|o| o.name() == name)
            .and_then(vi_shape);
        match o.as_ref().and_then(|s| s.get(axis)).and_then(Dim::known) {
            Some(k) if k > 0 => Ok(k as usize),
            _ => bail!("output `{name}` has no static K dimension"),
        }
    };
    let layout = if names.contains(&"batchno_classid_score_x1y1x2y2") {
        Layout::Pinto
    } else if names.contains(&"batchno_classid_x1y1x2y2_score") {
        Layout::PintoGoldYolo
    } else if names == ["num_dets", "det_boxes", "det_scores", "det_classes"] {
        Layout::Trt {
            max_det: k_of("det_boxes", 1)?,
        }
    } else if names == ["output0"] {
        Layout::Ultralytics {
            max_det: k_of("output0", 1)?,
        }
    } else if names == ["boxes", "scores"] {
        Layout::Decoded
    } else {
        bail!("outputs {:?} are not one of postmerge's layouts (pinto, pinto-goldyolo, trt, ultralytics, decoded)", names);
    };
    let mut params = NmsParams::default();
    if layout != Layout::Decoded {
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
        // what merge was asked for (recorded in metadata; `set` keeps it up to date) wins over the
        // constants found in the graph: a constant that disagrees with it is a broken model
        if let Some(meta) = merged
            .proto
            .metadata_props
            .iter()
            .find(|e| e.key() == "postmerge.merge")
        {
            for kv in meta.value().split(';') {
                let Some((k, v)) = kv.trim().split_once('=') else {
                    continue;
                };
                match k {
                    "score" => params.score_threshold = v.parse().unwrap_or(params.score_threshold),
                    "iou" => params.iou_threshold = v.parse().unwrap_or(params.iou_threshold),
                    "max_per_class" => {
                        params.max_per_class = v.parse().unwrap_or(params.max_per_class)
                    }
                    _ => {}
                }
            }
        }
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

fn family_kind(f: Family) -> HeadKind {
    match f {
        Family::YoloxRaw => HeadKind::YoloxRaw,
        Family::YoloxDecoded => HeadKind::YoloxDecoded,
        _ => HeadKind::GoldYolo,
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

/// Run `check`: original vs merged, in three steps (SPEC §5).
pub fn check_models(original: &Model, merged: &Model, opts: &CheckOptions) -> Result<CheckReport> {
    crate::shape::validate_structure(original)
        .with_context(|| format!("ORIGINAL `{}` is not a valid model", original.source))?;
    crate::shape::validate_structure(merged)
        .with_context(|| format!("MERGED `{}` is not a valid model", merged.source))?;
    let head = recognize(original, None)?;
    if matches!(head.family, Family::Merged | Family::TrtPlugin) {
        bail!(
            "ORIGINAL must be an un-merged export; `{}` is {}",
            original.source,
            head.family.label()
        );
    }
    let head_out = head
        .output
        .clone()
        .ok_or_else(|| anyhow::anyhow!("original has no head output"))?;
    let (layout, params) = merged_info(merged)?;
    let (mb, mh, mw) = hw(merged)?;
    crate::shape::validate_nodes(original)
        .with_context(|| format!("ORIGINAL `{}` is not a valid model", original.source))?;
    crate::shape::validate_nodes(merged)
        .with_context(|| format!("MERGED `{}` is not a valid model", merged.source))?;
    let (oh, ow) = (head.height.unwrap_or(0), head.width.unwrap_or(0));
    let batch = mb.known().unwrap_or(1) as usize;
    let mut notes = Vec::new();
    let (input, input_desc) = match &opts.input {
        CheckInput::Npy(p) => {
            let n = crate::npy::read_npy_file(p)?;
            if n.shape.len() != 4 || n.shape[2] as i64 != mh || n.shape[3] as i64 != mw {
                bail!(
                    "input `{}` has shape {:?}; the merged model takes [B,3,{mh},{mw}]",
                    p.display(),
                    n.shape
                );
            }
            (n, format!("tensor {}", p.display()))
        }
        CheckInput::Image(p) => {
            let img = crate::imageio::load_image(p)?;
            let (t, _) = crate::imageio::preprocess(&img, head.family, mh as u32, mw as u32)?;
            let t = if batch > 1 {
                repeat_batch(&t, batch)?
            } else {
                t
            };
            (
                t,
                format!(
                    "image {} ({} preprocessing)",
                    p.display(),
                    if head.family == Family::GoldYolo {
                        "RGB /255, centred letterbox"
                    } else {
                        "BGR 0..255, top-left letterbox"
                    }
                ),
            )
        }
        CheckInput::Synthetic => (
            crate::imageio::synthetic(head.family, batch, mh as usize, mw as usize)?,
            "deterministic synthetic tensor".to_string(),
        ),
    };
    // a MERGED that takes uint8 NHWC frames gets the frame whose in-graph preprocessing is
    // exactly `input` (the same picture; the synthetic input and photos are pixel values)
    let mfmt = crate::passes::input_format::input_format(merged)?;
    let frame;
    let (minput, input_desc) = if mfmt.is_frame() {
        frame = crate::passes::input_format::nchw_to_frame(&input, mfmt, head.family)
            .context("MERGED takes uint8 frames")?;
        (
            &frame,
            format!("{input_desc}; MERGED fed the same picture as a uint8 {mfmt} frame"),
        )
    } else {
        (&input, input_desc)
    };
    let spec = HeadSpec {
        kind: family_kind(head.family),
        num_classes: head.num_classes.unwrap_or(0),
        strides: head.strides.iter().map(|&s| s as u32).collect(),
        input_h: mh as usize,
        input_w: mw as usize,
    };
    // merged, with its head tensor exposed
    let mrun = Runner::new(merged, &[minput], &[&head_out])?;
    if mrun.fallback {
        notes.push("tract could not type the merged model and ran it un-typed".into());
    }
    let mouts = mrun.run(&[minput])?;
    let Some((_, mhead)) = mouts.iter().find(|(n, _)| *n == head_out) else {
        bail!("the merged model has no tensor `{head_out}` (the original's head output)")
    };
    let n_boxes = mhead.shape.get(1).copied().unwrap_or(0);
    let mut steps = Vec::new();
    // step 1: original head output vs the head tensor inside the merged model
    let orig_raw = if (oh, ow) == (mh, mw) || head.family == Family::YoloxRaw {
        match Runner::new(original, &[&input], &[]).and_then(|r| r.run(&[&input])) {
            Ok(o) => o.into_iter().find(|(n, _)| *n == head_out).map(|(_, t)| t),
            Err(e) => {
                notes.push(format!("the original cannot run at {mh}x{mw}: {e:#}"));
                None
            }
        }
    } else {
        notes.push(format!("the original ({oh}x{ow}) bakes constants of its size and cannot run at {mh}x{mw}: steps 1 and 3 need a native export at that size"));
        None
    };
    match &orig_raw {
        Some(o) if o.shape == mhead.shape => {
            let (a, b) = (o.to_f32(), mhead.to_f32());
            let range = a
                .iter()
                .filter(|x| x.is_finite())
                .fold(0f32, |m, &x| m.max(x.abs()));
            let maxd = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            let rel = if range > 0.0 { maxd / range } else { maxd };
            steps.push(Step { name: "head".into(), ok: Some(rel <= 1e-4), detail: format!("original head `{head_out}` vs the same tensor in the merged model: max |d| {maxd:.3e} (range {range:.3e}, relative {rel:.1e}, tolerance 1e-4)") });
        }
        Some(o) => steps.push(Step {
            name: "head".into(),
            ok: Some(false),
            detail: format!(
                "head shapes differ: original {:?}, merged {:?}",
                o.shape, mhead.shape
            ),
        }),
        None => steps.push(Step {
            name: "head".into(),
            ok: None,
            detail: "not run: the original cannot run at the merged model's size".into(),
        }),
    }
    // boxes normalized to [0, 1] (merge --quant-prep): the reference scales its boxes the same way
    let normalized = merged
        .proto
        .metadata_props
        .iter()
        .any(|e| e.key() == "postmerge.merge" && e.value().contains("boxes=normalized"));
    let norm = |mut d: crate::postprocess::Decoded| {
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
    // step 2: the appended post-process on identical pre-NMS tensors vs the reference
    let dec = norm(decode(&mhead.to_f32(), mhead.shape[0], n_boxes, &spec)?);
    let sel = nms(&dec, &params)?;
    let expected = render(&layout, &dec, &sel)?;
    let cmp = compare_outputs(&layout, &expected, &mouts, tol)?;
    let step2_ok = cmp.ok();
    steps.push(Step {
        name: "post-process".into(),
        ok: Some(step2_ok),
        detail: format!(
            "appended post-process vs the Rust reference on the same head tensor: {} selections; max box error {:.2e} px, max score error {:.2e}{}",
            sel.len(),
            cmp.max_box_err,
            cmp.max_score_err,
            if cmp.problems.is_empty() { String::new() } else { format!("; {}", cmp.problems.join("; ")) }
        ),
    });
    // step 3: final detections vs the reference on the original's output (clear of ties/threshold)
    let ndets = if layout == Layout::Decoded {
        0
    } else {
        sel.len()
    };
    if let (Some(o), true) = (&orig_raw, layout != Layout::Decoded) {
        let odec = norm(decode(&o.to_f32(), o.shape[0], n_boxes, &spec)?);
        let rsel = nms(&odec, &params)?;
        let refd = detections(&odec, &rsel)?;
        let outs: Vec<OutputTensor> = mouts
            .iter()
            .filter(|(n, _)| layout.output_names().contains(&n.as_str()))
            .map(|(n, t)| OutputTensor {
                name: n.clone(),
                tensor: t.clone(),
            })
            .collect();
        let mut got = detections_from_outputs(&layout, &outs)?;
        let mut refd = refd;
        if let Layout::Trt { max_det } | Layout::Ultralytics { max_det } = layout {
            // the fixed-K layouts keep the K best per image
            refd = top_k(&refd, batch.max(1), max_det);
            got = top_k(&got, batch.max(1), max_det);
        }
        let margin = 1e-3f32;
        let clear = |d: &Detection| d.score > params.score_threshold + margin;
        let unmatched_ref = refd
            .iter()
            .filter(|d| clear(d))
            .filter(|d| {
                !got.iter()
                    .any(|g| g.batch == d.batch && g.class == d.class && iou(g, d) >= 0.9)
            })
            .count();
        let unmatched_got = got
            .iter()
            .filter(|d| clear(d))
            .filter(|d| {
                !refd
                    .iter()
                    .any(|g| g.batch == d.batch && g.class == d.class && iou(g, d) >= 0.9)
            })
            .count();
        let considered = refd.iter().filter(|d| clear(d)).count();
        steps.push(Step {
            name: "detections".into(),
            ok: Some(unmatched_ref == 0 && unmatched_got == 0),
            detail: format!("merged detections vs the reference on the original's head output: {considered} clear of the threshold, {unmatched_ref} missing, {unmatched_got} extra (matched by class and IoU >= 0.9)"),
        });
    } else {
        steps.push(Step {
            name: "detections".into(),
            ok: None,
            detail: if layout == Layout::Decoded {
                "not run: the decoded layout has no NMS".into()
            } else {
                "not run: no original output at this size".into()
            },
        });
    }
    let ok = steps.iter().all(|s| s.ok != Some(false));
    Ok(CheckReport {
        original: original.source.clone(),
        merged: merged.source.clone(),
        input: input_desc,
        family: head.family,
        layout: layout.name().into(),
        params: format!(
            "score > {}, IoU > {}, {} per class{}",
            params.score_threshold,
            params.iou_threshold,
            params.max_per_class,
            if params.agnostic { ", agnostic" } else { "" }
        ),
        original_size: (oh, ow),
        merged_size: (mh, mw),
        steps,
        diffs: cmp.diffs,
        detections: ndets,
        ok,
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
    let _ = writeln!(s, "input:    {}", r.input);
    for st in &r.steps {
        let tag = match st.ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "skip",
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
        if r.ok {
            format!("check passed ({} detections)", r.detections)
        } else {
            "check FAILED".to_string()
        }
    );
    s
}
