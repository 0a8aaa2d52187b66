//! Comparing a merged model's outputs with the Rust reference post-process (SPEC §5).

use anyhow::{bail, Result};
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
        Tolerance { box_px: 1e-3, score: 1e-5 }
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
pub fn compare_outputs(layout: &Layout, expected: &[OutputTensor], actual: &[(String, Npy)], tol: Tolerance) -> Result<Comparison> {
    let mut c = Comparison::default();
    for e in expected {
        let Some((_, a)) = actual.iter().find(|(n, _)| *n == e.name) else {
            c.problems.push(format!("output `{}` is missing", e.name));
            continue;
        };
        if a.shape != e.tensor.shape {
            c.problems.push(format!("output `{}` has shape {:?}, the reference has {:?}", e.name, a.shape, e.tensor.shape));
            continue;
        }
        let kinds = column_kinds(layout, &e.name);
        let width = if kinds.len() > 1 { kinds.len() } else { *e.tensor.shape.last().unwrap_or(&1).max(&1) };
        let ev: Vec<f64> = e.tensor.to_f32().into_iter().map(f64::from).collect();
        let av: Vec<f64> = match a.to_i64() {
            Some(iv) if !matches!(a.data, crate::npy::NpyData::F32(_) | crate::npy::NpyData::F64(_)) => iv.into_iter().map(|x| x as f64).collect(),
            _ => a.to_f32().into_iter().map(f64::from).collect(),
        };
        if ev.len() != av.len() {
            bail!("output `{}`: {} vs {} values", e.name, av.len(), ev.len());
        }
        let rows = if width == 0 { 0 } else { ev.len() / width };
        c.rows.push((e.name.clone(), rows));
        let mut shown = 0;
        for r in 0..rows {
            let mut bad = false;
            for k in 0..width {
                let i = r * width + k;
                let kind = if kinds.len() > 1 { kinds[k] } else { kinds[0] };
                let d = (ev[i] - av[i]).abs();
                let same = ev[i] == av[i] || (ev[i].is_nan() && av[i].is_nan());
                let ok = same || match kind {
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
            if bad && shown < 10 {
                shown += 1;
                c.diffs.push(RowDiff { output: e.name.clone(), row: r, expected: ev[r * width..(r + 1) * width].to_vec(), actual: av[r * width..(r + 1) * width].to_vec() });
            } else if bad {
                shown += 1;
            }
        }
        if shown > 10 {
            c.problems.push(format!("output `{}`: {shown} rows differ (first 10 shown)", e.name));
        }
    }
    Ok(c)
}
