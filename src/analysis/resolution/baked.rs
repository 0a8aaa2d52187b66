//! Tensors of a decoded head baked from its grids, and the rules of ops with no rule of their own.
//!
//! A decoded head (YOLOX `--decode_in_inference`, Gold-YOLO) carries pure constants sized by the
//! number of boxes N or by a level's grid: anchor points, per-anchor strides, ones, `[h, 1]` /
//! `[1, w]` aranges, small int operands holding N (`[1, N, 2]`). No symbolic path reaches them, so
//! they are found by their dims / values matching N or a grid, and regenerated for the new grids.
//! Which per-anchor value patterns a family bakes is `BAKED_PATTERNS` (family knowledge, kept in
//! one table so it can move to the family files).

use anyhow::{bail, Result};

use crate::graph::{constant_ref, describe};
use crate::head::Head;
use crate::model::Model;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{NodeProto, TensorProto};
use crate::tensor::{numel, Values};

use super::probe::{fmt_vals, Probe, ResConst};
use super::rewrite::{close, node_at, Level, Rewrite, RewriteCx};
use super::ResolutionRule;

// ---- rules of ops that have no shape or size semantics of their own ------------------------

/// Ops whose small int operands are indices / axes / split sizes, not shapes: only tensors sized
/// by N or a grid are found (rewritten like any other op's inputs).
pub const INDEX_OPERANDS: ResolutionRule = ResolutionRule {
    ops: &["Slice", "Gather", "Unsqueeze", "Squeeze", "Split", "Concat"],
    find: |p, n, at, _| scan(p, n, at, Scan::TensorsOnly),
    rewrite: rewrite_other,
};

/// Conv weights: neither found nor rewritten.
pub const CONV: ResolutionRule = ResolutionRule {
    ops: &["Conv"],
    find: |_, _, _, _| {},
    rewrite: keep,
};

/// Other weight-carrying ops: scanned like any op when finding, never rewritten.
pub const WEIGHTS: ResolutionRule = ResolutionRule {
    ops: &["ConvTranspose", "Gemm", "BatchNormalization"],
    find: |p, n, at, _| scan(p, n, at, Scan::All),
    rewrite: keep,
};

/// Every op without a rule: its constant inputs as decoded-head tensors.
pub const OTHER: ResolutionRule = ResolutionRule {
    ops: &[],
    find: |p, n, at, _| scan(p, n, at, Scan::All),
    rewrite: rewrite_other,
};

fn keep(_: &mut Model, _: &mut RewriteCx, _: usize, _: i64) -> Result<()> {
    Ok(())
}

fn rewrite_other(m: &mut Model, cx: &mut RewriteCx, ni: usize, _p: i64) -> Result<()> {
    rewrite_inputs(m, cx, ni, false)
}

// ---- family knowledge: the per-anchor patterns decoded heads bake --------------------------

/// A per-anchor tensor a decoded head bakes from its grids: recognized by its values at the old
/// grids, regenerated at the new ones.
pub struct BakedPattern {
    /// How the rewrite names it ("baked {what} [dims]").
    pub what: &'static str,
    /// Values per anchor (the tensor has N · per_anchor elements).
    pub per_anchor: usize,
    pub values: fn(&[Level]) -> Vec<f64>,
}

/// The per-anchor patterns, tried in this order (YOLOX decoded: strides, xy; Gold-YOLO: anchor
/// points (x + 0.5)·s, their (x + 0.5) form, strides).
pub static BAKED_PATTERNS: &[BakedPattern] = &[
    BakedPattern {
        what: "per-anchor strides",
        per_anchor: 1,
        values: |g| cells(g).map(|(s, _, _)| s).collect(),
    },
    BakedPattern {
        what: "anchor indices",
        per_anchor: 1,
        values: |g| cells(g).enumerate().map(|(i, _)| i as f64).collect(),
    },
    BakedPattern {
        what: "xy",
        per_anchor: 2,
        values: |g| cells(g).flat_map(|(_, x, y)| [x, y]).collect(),
    },
    BakedPattern {
        what: "xy+0.5",
        per_anchor: 2,
        values: |g| cells(g).flat_map(|(_, x, y)| [x + 0.5, y + 0.5]).collect(),
    },
    BakedPattern {
        what: "xy+0.5*s",
        per_anchor: 2,
        values: |g| {
            cells(g)
                .flat_map(|(s, x, y)| [(x + 0.5) * s, (y + 0.5) * s])
                .collect()
        },
    },
];

/// Every anchor of a grid set, level by level, row-major: (stride, x, y).
fn cells(grids: &[Level]) -> impl Iterator<Item = (f64, f64, f64)> + '_ {
    grids.iter().flat_map(|&(s, gh, gw)| {
        (0..gh).flat_map(move |y| (0..gw).map(move |x| (s as f64, x as f64, y as f64)))
    })
}

// ---- find ------------------------------------------------------------------------------------

/// Which constant inputs of a node `scan` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Every input: tensors sized by N or a grid, and small int operands holding N or a grid.
    All,
    /// Only the data input (input 0): the op's rule handles its shape / size operand.
    Data,
    /// Every input, tensors sized by N or a grid only.
    TensorsOnly,
}

/// Record the constant inputs of `n` (topological position `at`) that are baked tensors sized by
/// N or a grid, or small int64 operands holding N or a grid.
pub fn scan(p: &mut Probe, n: &NodeProto, at: usize, which: Scan) {
    let inputs = if which == Scan::Data { 1 } else { usize::MAX };
    for inp in n.input.iter().take(inputs).filter(|s| !s.is_empty()) {
        let Some(t) = constant_ref(p.g, p.ix, inp) else {
            continue;
        };
        let small_int = numel(&t.dims).map(|c| c <= 8).unwrap_or(false)
            && t.data_type() == DataType::Int64 as i32;
        let found = if let Some(why) = head_dims(p.head, &t.dims) {
            Some((format!("baked tensor {why}"), tensor_value(p.m, t)))
        } else if which != Scan::TensorsOnly && small_int {
            p.m.tensor_values(t).ok().and_then(|v| {
                let vals = v.as_i64();
                head_number(p.head, &vals).map(|why| (format!("operand {why}"), fmt_vals(&vals)))
            })
        } else {
            None
        };
        if let Some((what, value)) = found {
            let c = ResConst {
                node: n.name().to_string(),
                op: n.op_type().into(),
                what,
                value,
                constant: inp.clone(),
            };
            p.add(at, c);
        }
    }
}

/// A tensor as `inspect` shows it: small ones in full, large ones by dtype and dims.
fn tensor_value(m: &Model, t: &TensorProto) -> String {
    if numel(&t.dims).unwrap_or(0) <= 8 {
        m.tensor_values(t)
            .map(|v| fmt_vals(&v.as_i64()))
            .unwrap_or_default()
    } else {
        format!("{} {:?}", crate::tensor::dtype_name(t.data_type()), t.dims)
    }
}

/// Why a small int vector depends on the head's size (contains N, or equals a level's grid).
pub fn head_number(head: &Head, vals: &[i64]) -> Option<String> {
    let n = head.num_boxes?;
    if vals.contains(&n) && n > 1 {
        return Some(format!("containing N = {n}"));
    }
    if vals.len() >= 2 {
        for (k, (gh, gw)) in head.grids.iter().enumerate() {
            if vals[vals.len() - 2..] == [*gh, *gw] && (gh * gw > 1) {
                return Some(format!(
                    "ending in the stride-{} grid {gh}x{gw}",
                    head.strides[k]
                ));
            }
        }
    }
    None
}

/// Why a baked tensor's dims depend on the head's size.
pub fn head_dims(head: &Head, dims: &[i64]) -> Option<String> {
    let n = head.num_boxes?;
    if dims.contains(&n) && n > 1 {
        return Some(format!("with N = {n} rows"));
    }
    for (k, (gh, gw)) in head.grids.iter().enumerate() {
        if dims.len() == 2
            && ((dims[0] == *gh && dims[1] == 1 && *gh > 1)
                || (dims[0] == 1 && dims[1] == *gw && *gw > 1))
        {
            return Some(format!(
                "sized by the stride-{} grid {gh}x{gw}",
                head.strides[k]
            ));
        }
    }
    None
}

// ---- rewrite ---------------------------------------------------------------------------------

/// Re-derive the constant inputs of node `ni` that are decoded-head tensors. `shape_operand`: the
/// node's small int inputs are shapes (Expand / Tile / ConstantOfShape), so one ending in a level
/// grid is one too.
pub fn rewrite_inputs(
    m: &mut Model,
    cx: &mut RewriteCx,
    ni: usize,
    shape_operand: bool,
) -> Result<()> {
    let (n, name) = node_at(m, ni);
    let g = m.graph();
    let consts: Vec<(String, TensorProto)> = n
        .input
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|inp| {
            constant_ref(g, &cx.ix, inp)
                .cloned()
                .map(|t| (inp.clone(), t))
        })
        .collect();
    for (inp, t) in consts {
        rewrite_tensor(m, cx, &n, &name, &inp, &t, shape_operand)?;
    }
    Ok(())
}

/// One constant input: a tensor sized by N, a grid arange, or a small int vector holding N / a grid.
fn rewrite_tensor(
    m: &mut Model,
    cx: &mut RewriteCx,
    n: &NodeProto,
    node: &str,
    cname: &str,
    t: &TensorProto,
    shape_operand: bool,
) -> Result<()> {
    let dims = &t.dims;
    let count = numel(dims).unwrap_or(0);
    if count == 0 || count > 4 * cx.n0 as usize + 16 {
        return Ok(());
    }
    let Ok(vals) = m.tensor_values(t) else {
        return Ok(());
    };
    if dims.contains(&cx.n0) && cx.n0 > 1 {
        let (what, new_dims, values) = regenerate(cx, n, cname, dims, &vals, count)?;
        let note = Rewrite {
            node: node.to_string(),
            what: format!("baked {what} {:?}", dims),
            old: format!("{:?}", dims),
            new: format!("{:?}", new_dims),
        };
        return cx.write_tensor(m, cname, &new_dims, values, note);
    }
    if let Some((new_dims, values, what)) = level_arange(cx, dims, &vals, count) {
        let note = Rewrite {
            node: node.to_string(),
            what: what.to_string(),
            old: format!("{:?}", dims),
            new: format!("{:?}", new_dims),
        };
        return cx.write_tensor(m, cname, &new_dims, values, note);
    }
    if !vals.is_float() && dims.len() == 1 && count <= 8 {
        let v = vals.as_i64();
        if let Some((why, nv)) = small_ints(cx, &v, shape_operand) {
            if nv != v {
                return cx.write_int(m, cname, &nv, node, why);
            }
        }
    }
    Ok(())
}

/// A tensor with an N-sized dim: which pattern its values are, its new dims and values.
fn regenerate(
    cx: &RewriteCx,
    n: &NodeProto,
    cname: &str,
    dims: &[i64],
    vals: &Values,
    count: usize,
) -> Result<(&'static str, Vec<i64>, Values)> {
    let (n0, n1) = (cx.n0, cx.n1);
    let f = vals.as_f64();
    let new_dims: Vec<i64> = dims.iter().map(|&d| if d == n0 { n1 } else { d }).collect();
    let per = count / n0 as usize;
    let regenerated: Option<(&str, Vec<f64>)> = if f.iter().all(|&x| x == 1.0) {
        Some(("ones", vec![1.0; n1 as usize * per]))
    } else {
        BAKED_PATTERNS
            .iter()
            .find(|b| b.per_anchor == per && close(&f, &(b.values)(&cx.g0)))
            .map(|b| (b.what, (b.values)(&cx.g1)))
    };
    let Some((what, nv)) = regenerated else {
        bail!("{}: baked tensor `{cname}` {:?} is sized by N = {n0} but its values are no known grid/stride/anchor/ones pattern; cannot re-derive it", describe(n), dims);
    };
    let values = if vals.is_float() {
        Values::F32(nv.iter().map(|&x| x as f32).collect())
    } else {
        Values::I64(nv.iter().map(|&x| x as i64).collect())
    };
    Ok((what, new_dims, values))
}

/// `[h, 1]` / `[1, w]` int aranges of a level grid (YOLOX decode meshgrid) at the new grid.
fn level_arange(
    cx: &RewriteCx,
    dims: &[i64],
    vals: &Values,
    count: usize,
) -> Option<(Vec<i64>, Values, &'static str)> {
    if dims.len() != 2 || vals.is_float() || count <= 1 {
        return None;
    }
    let f = vals.as_f64();
    let arange = |k: i64| (0..k).map(|x| x as f64).collect::<Vec<_>>();
    if dims[1] == 1 && close(&f, &arange(dims[0])) {
        if let Some(l) = cx.level_of_h(dims[0]) {
            let h1 = cx.g1[l].1;
            return Some((
                vec![h1, 1],
                Values::I64((0..h1).collect()),
                "grid row indices",
            ));
        }
    }
    if dims[0] == 1 && close(&f, &arange(dims[1])) {
        if let Some(l) = cx.level_of_w(dims[1]) {
            let w1 = cx.g1[l].2;
            return Some((
                vec![1, w1],
                Values::I64((0..w1).collect()),
                "grid column indices",
            ));
        }
    }
    None
}

/// A small int vector holding N (→ the new N), or, for a shape operand, ending in a level's grid
/// (→ the new grid): why, and the new values.
fn small_ints(cx: &RewriteCx, v: &[i64], shape_operand: bool) -> Option<(&'static str, Vec<i64>)> {
    let (n0, n1) = (cx.n0, cx.n1);
    if n0 > 1 && v.contains(&n0) {
        let nv = v.iter().map(|&x| if x == n0 { n1 } else { x }).collect();
        return Some(("shape holding N", nv));
    }
    if shape_operand && v.len() >= 2 {
        let tail = (v[v.len() - 2], v[v.len() - 1]);
        if let Some(l) = cx.g0.iter().position(|&(_, a, b)| (a, b) == tail) {
            let (_, a, b) = cx.g1[l];
            let mut nv = v.to_vec();
            let len = nv.len();
            nv[len - 2] = a;
            nv[len - 1] = b;
            return Some(("shape ending in a level grid", nv));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::BAKED_PATTERNS;

    /// The generator the table replaced (passes/resize.rs `anchor_pattern`), kept as the oracle.
    fn anchor_pattern(grids: &[(i64, i64, i64)], kind: &str) -> Vec<f64> {
        let mut v = Vec::new();
        for &(s, gh, gw) in grids {
            for y in 0..gh {
                for x in 0..gw {
                    match kind {
                        "per-anchor strides" => v.push(s as f64),
                        "anchor indices" => v.push(v.len() as f64),
                        "xy" => v.extend([x as f64, y as f64]),
                        "xy+0.5" => v.extend([x as f64 + 0.5, y as f64 + 0.5]),
                        "xy+0.5*s" => {
                            v.extend([(x as f64 + 0.5) * s as f64, (y as f64 + 0.5) * s as f64])
                        }
                        _ => unreachable!("{kind}"),
                    }
                }
            }
        }
        v
    }

    #[test]
    fn patterns_are_the_old_generators_in_the_old_order() {
        let grids = [(8, 4, 5), (16, 2, 3), (32, 1, 2)];
        let names: Vec<&str> = BAKED_PATTERNS.iter().map(|b| b.what).collect();
        assert_eq!(
            names,
            [
                "per-anchor strides",
                "anchor indices",
                "xy",
                "xy+0.5",
                "xy+0.5*s"
            ]
        );
        for b in BAKED_PATTERNS {
            let v = (b.values)(&grids);
            assert_eq!(v, anchor_pattern(&grids, b.what), "{}", b.what);
            assert_eq!(v.len(), 28 * b.per_anchor, "{}", b.what);
        }
    }
}
