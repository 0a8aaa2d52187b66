//! Shape operands over spatial dims: `Reshape` targets (attention token counts, `[1, N, 2]`
//! decoded-head plumbing) and the shape operands of `Expand` / `Tile` / `ConstantOfShape`.
//!
//! A `Reshape` target is split into groups of equal element count (`reshape_groups`); a group fed
//! by a spatial dim is resolution-dependent. At the new size a changed group is re-derived (one
//! dim: the product; dims copied from a feature map: that map's new dims). The other three ops'
//! shape operands are found and rewritten when they hold N or end in a level's grid.

use std::ops::Range;

use anyhow::{bail, Result};

use crate::graph::describe;
use crate::model::Model;
use crate::onnx::NodeProto;
use crate::shape::{fmt_shape, Dim, Info};

use super::baked::{self, Scan};
use super::probe::{
    const_parts, fmt_vals, input, is_spatial, output, reshape_groups, Probe, ResConst,
};
use super::rewrite::{node_at, old_dims, RewriteCx};
use super::ResolutionRule;

pub const RESHAPE: ResolutionRule = ResolutionRule {
    ops: &["Reshape"],
    find: find_reshape,
    rewrite: rewrite_reshape,
};

pub const EXPAND_TILE: ResolutionRule = ResolutionRule {
    ops: &["Expand", "Tile"],
    find: |p, n, at, _| {
        shape_operand_numbers(p, n, at, input(n, 1));
        baked::scan(p, n, at, Scan::Data);
    },
    rewrite: rewrite_shape_operand,
};

pub const CONSTANT_OF_SHAPE: ResolutionRule = ResolutionRule {
    ops: &["ConstantOfShape"],
    // its only input is the shape
    find: |p, n, at, _| shape_operand_numbers(p, n, at, input(n, 0)),
    rewrite: rewrite_shape_operand,
};

/// Decoded-head constants in a shape operand: values containing N or ending in a grid.
fn shape_operand_numbers(p: &mut Probe, n: &NodeProto, at: usize, operand: &str) {
    for (cname, vals, _) in const_parts(p.g, p.ix, Some(p.numeric), operand) {
        if let Some(why) = baked::head_number(p.head, &vals) {
            p.add(
                at,
                ResConst {
                    node: n.name().to_string(),
                    op: n.op_type().into(),
                    what: format!("shape operand {why}"),
                    value: fmt_vals(&vals),
                    constant: cname,
                },
            );
        }
    }
}

/// Expand / Tile / ConstantOfShape: their constant inputs as decoded-head tensors, shape operands
/// ending in a level grid included.
fn rewrite_shape_operand(m: &mut Model, cx: &mut RewriteCx, ni: usize, _p: i64) -> Result<()> {
    baked::rewrite_inputs(m, cx, ni, true)
}

fn find_reshape(p: &mut Probe, n: &NodeProto, at: usize, outs: &mut [Info]) {
    let known = |s: Option<&Vec<Dim>>| {
        s.and_then(|s| s.iter().map(Dim::known).collect::<Option<Vec<i64>>>())
    };
    let data_in = p.shapes.shape(input(n, 0)).cloned();
    let num_in = known(p.numeric.shape(input(n, 0)));
    let num_out = known(p.numeric.shape(output(n, 0)));
    if let (Some(pin), Some(nin), Some(nout)) = (&data_in, &num_in, &num_out) {
        if pin.iter().any(is_spatial) {
            if let Some(groups) = reshape_groups(nin, nout) {
                spatial_targets(p, n, at, pin, &groups, outs);
            }
        }
    }
    shape_operand_numbers(p, n, at, input(n, 1));
    baked::scan(p, n, at, Scan::Data);
}

/// The target elements of groups fed by a spatial dim: record the constants that fix them, and
/// give those output dims fresh symbols in the probe.
fn spatial_targets(
    p: &mut Probe,
    n: &NodeProto,
    at: usize,
    pin: &[Dim],
    groups: &[(Range<usize>, Range<usize>)],
    outs: &mut [Info],
) {
    let mut flagged_dims = Vec::new();
    for (gi, go) in groups {
        if pin
            .get(gi.clone())
            .is_some_and(|s| s.iter().any(is_spatial))
        {
            flagged_dims.extend(go.clone());
        }
    }
    let in_shape = fmt_shape(&p.numeric.shape(input(n, 0)).cloned().unwrap_or_default());
    for (cname, vals, offset) in const_parts(p.g, p.ix, Some(p.numeric), input(n, 1)) {
        let hit = (0..vals.len())
            .any(|k| flagged_dims.contains(&(offset + k)) && vals[k] != -1 && vals[k] != 0);
        if hit {
            p.set(
                at,
                ResConst {
                    node: n.name().to_string(),
                    op: "Reshape".into(),
                    what: format!("target shape over spatial dims (input {in_shape})"),
                    value: fmt_vals(&vals),
                    constant: cname,
                },
            );
        }
    }
    if let Some(s) = outs.first_mut().and_then(|o| o.shape.as_mut()) {
        for &d in &flagged_dims {
            if d < s.len() && !is_spatial(&s[d]) {
                s[d] = p.fresh_sym();
            }
        }
    }
}

/// One Reshape at the new size: its old input/output dims, new input dims, element groups.
struct At<'a> {
    n: &'a NodeProto,
    /// topological position
    p: i64,
    i0: Vec<i64>,
    o0: Vec<i64>,
    i1: Vec<Dim>,
    groups: Vec<(Range<usize>, Range<usize>)>,
}

fn rewrite_reshape(m: &mut Model, cx: &mut RewriteCx, ni: usize, p: i64) -> Result<()> {
    let (n, name) = node_at(m, ni);
    let parts = const_parts(m.graph(), &cx.ix, Some(cx.s0), input(&n, 1));
    if parts.is_empty() {
        return Ok(());
    }
    let (Some(i0), Some(o0)) = (
        old_dims(cx.s0, input(&n, 0)),
        old_dims(cx.s0, output(&n, 0)),
    ) else {
        return Ok(());
    };
    let i1 = cx.s1.shape(input(&n, 0)).cloned().unwrap_or_default();
    if i1.len() != i0.len() {
        return Ok(());
    }
    let unchanged = i1.iter().zip(&i0).all(|(a, b)| a.known() == Some(*b));
    // head-sized constants (decoded heads: [1, N, 2] ScatterND plumbing) even if unchanged input
    let Some(groups) = reshape_groups(&i0, &o0) else {
        return Ok(());
    };
    let r = At {
        n: &n,
        p,
        i0,
        o0,
        i1,
        groups,
    };
    let mut o1: Vec<Dim> = r.o0.iter().map(|&d| Dim::Known(d)).collect();
    token_maps(cx, &r, &mut o1)?;
    if !unchanged {
        for k in 0..r.groups.len() {
            changed_group(cx, &r, k, &mut o1)?;
        }
    }
    // allowzero = 1 (opset 14+): a 0 is a zero-sized dim, not "copy the input's"
    let allowzero = crate::graph::attr_i(&n, "allowzero")
        .map(|a| a != 0)
        .unwrap_or(false);
    for (cname, vals, off) in parts {
        let newv = new_target(cx, &r, &o1, &vals, off, allowzero, unchanged);
        if newv.iter().filter(|&&x| x == -1).count() > 1 {
            bail!(
                "{}: re-derived shape {:?} would need two -1 dims",
                describe(&n),
                newv
            );
        }
        if newv != vals {
            cx.write_int(m, &cname, &newv, &name, "Reshape target shape")?;
        }
    }
    Ok(())
}

/// Tokens back to a map: the token count may stay the same while the map's h x w changes (10x10
/// at 640x640 and 5x20 at 288x1280 are both 100 tokens).
fn token_maps(cx: &RewriteCx, r: &At, o1: &mut [Dim]) -> Result<()> {
    for (gi, go) in &r.groups {
        if go.len() == 2 && gi.len() == 1 && r.i1[gi.start].known() == Some(r.i0[gi.start]) {
            let out0 = &r.o0[go.clone()];
            if let Some(pair) = cx.map_pair((out0[0], out0[1]), r.p, output(r.n, 0))? {
                if pair.0 * pair.1 == r.i0[gi.start] {
                    o1[go.start] = Dim::Known(pair.0);
                    o1[go.start + 1] = Dim::Known(pair.1);
                }
            }
        }
    }
    Ok(())
}

/// Re-derive the output dims of group `k` when its input dims changed.
fn changed_group(cx: &RewriteCx, r: &At, k: usize, o1: &mut [Dim]) -> Result<()> {
    let (gi, go) = &r.groups[k];
    let in0 = &r.i0[gi.clone()];
    let in1 = &r.i1[gi.clone()];
    if in1.iter().zip(in0).all(|(a, b)| a.known() == Some(*b)) {
        return Ok(());
    }
    let out0 = &r.o0[go.clone()];
    let Some(prod) = in1.iter().map(Dim::known).product::<Option<i64>>() else {
        // symbolic batch group
        if go.len() == 1 && gi.len() == 1 {
            o1[go.start] = in1[0].clone();
            return Ok(());
        }
        bail!(
            "{}: a symbolic dimension enters the baked shape {:?}",
            describe(r.n),
            r.o0
        );
    };
    let non_one: Vec<usize> = go.clone().filter(|&k| r.o0[k] != 1).collect();
    if go.len() == 1 {
        o1[go.start] = Dim::Known(prod);
    } else if non_one.len() == 1 {
        // [1, N] style: the single non-1 dim takes the whole group
        o1[non_one[0]] = Dim::Known(prod);
    } else if out0 == in0 {
        for (k, d) in in1.iter().enumerate() {
            o1[go.start + k] = d.clone();
        }
    } else if go.len() == 2 {
        // dims copied from a feature map (attention: tokens back to h x w)
        let pair = cx
            .map_pair((out0[0], out0[1]), r.p, output(r.n, 0))?
            .filter(|q| q.0 * q.1 == prod);
        let Some(pair) = pair else {
            bail!("{}: cannot re-derive the baked shape {:?} (input {} -> {}): dims {:?} match no feature map of {prod} elements", describe(r.n), r.o0, fmt_shape(&r.i0.iter().map(|&d| Dim::Known(d)).collect::<Vec<_>>()), fmt_shape(&r.i1), out0);
        };
        o1[go.start] = Dim::Known(pair.0);
        o1[go.start + 1] = Dim::Known(pair.1);
    } else {
        bail!(
            "{}: cannot re-derive the baked shape {:?} for input {}",
            describe(r.n),
            r.o0,
            fmt_shape(&r.i1)
        );
    }
    Ok(())
}

/// The new values of one constant part (at element offset `off`) of the target shape.
fn new_target(
    cx: &RewriteCx,
    r: &At,
    o1: &[Dim],
    vals: &[i64],
    off: usize,
    allowzero: bool,
    unchanged: bool,
) -> Vec<i64> {
    let mut newv = vals.to_vec();
    for k in 0..vals.len() {
        let idx = off + k;
        if vals[k] == -1 || (vals[k] == 0 && !allowzero) {
            continue;
        }
        match o1.get(idx) {
            Some(Dim::Known(v)) => newv[k] = *v,
            Some(Dim::Sym(_)) => {
                let copy_sym = !allowzero
                    && idx < r.i0.len()
                    && r.i1.get(idx).is_some_and(|d| matches!(d, Dim::Sym(_)));
                newv[k] = if copy_sym { 0 } else { -1 }
            }
            None => {}
        }
        // N baked independently of the input (decoded-head plumbing)
        if unchanged && vals[k] == cx.n0 && cx.n0 > 1 {
            newv[k] = cx.n1;
        }
    }
    newv
}
