//! The find half: a symbolic probe over the graph that lists the constants an exporter baked from
//! the input resolution (`inspect`'s "resolution-dependent constants").
//!
//! Shape inference runs with the input's H and W as symbols; every dim that depends on them stays
//! symbolic. A constant is resolution-dependent when it fixes a number where the probe has a
//! symbol (and the probe then continues with a symbol there, so a baked value does not hide the
//! dependence downstream). Decoded-head tensors (no symbolic path: they are pure constants) are
//! recognized by their dims / values matching N or a level's grid (`baked`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::graph::{constant_ref, describe, topo_order, GraphIndex};
use crate::head::Head;
use crate::model::Model;
use crate::onnx::{GraphProto, NodeProto, TensorProto};
use crate::shape::{infer, infer_node, vi_dtype, vi_shape, Dim, Info, Shapes};

use super::rule_for;

/// One resolution-dependent constant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResConst {
    /// Node that consumes (or is) the constant.
    pub node: String,
    pub op: String,
    /// What it is.
    pub what: String,
    /// Its value (small ones in full; large ones by shape).
    pub value: String,
    /// The constant tensor (initializer or Constant output) or attribute.
    pub constant: String,
}

/// What a rule's `find` sees: the graph, the head, the numeric inference at the declared size,
/// the symbolic probe so far, and what has been found.
pub struct Probe<'a> {
    pub m: &'a Model,
    pub g: &'a GraphProto,
    pub ix: &'a GraphIndex,
    pub head: &'a Head,
    /// Inference at the declared size (a symbolic batch at the traced batch).
    pub numeric: &'a Shapes,
    /// The symbolic probe: the input's H and W are symbols.
    pub shapes: Shapes,
    fresh: usize,
    found: BTreeMap<(usize, String), ResConst>,
}

impl Probe<'_> {
    /// A new symbol for a dim a baked constant fixed (so the dependence is followed downstream).
    pub fn fresh_sym(&mut self) -> Dim {
        self.fresh += 1;
        Dim::Sym(format!("~{}", self.fresh))
    }

    /// Record `c`, found at topological position `at`, replacing an earlier record of it.
    pub fn set(&mut self, at: usize, c: ResConst) {
        self.found.insert((at, c.constant.clone()), c);
    }

    /// Record `c` unless that constant is already recorded at `at`.
    pub fn add(&mut self, at: usize, c: ResConst) {
        self.found.entry((at, c.constant.clone())).or_insert(c);
    }

    /// Whether the probe's shape of `name` has a resolution-dependent dim.
    pub fn spatial_in(&self, name: &str) -> bool {
        self.shapes
            .shape(name)
            .map(|s| s.iter().any(is_spatial))
            .unwrap_or(false)
    }
}

/// A dim that depends on the input's H or W in the probe.
pub fn is_spatial(d: &Dim) -> bool {
    matches!(d, Dim::Sym(s) if s.starts_with("H") || s.starts_with("W") || s.starts_with('~'))
}

pub(crate) fn fmt_vals(v: &[i64]) -> String {
    format!("{v:?}")
}

/// Input `k` of `n`, or "" (no such tensor) when the node has fewer inputs.
pub(crate) fn input(n: &NodeProto, k: usize) -> &str {
    n.input.get(k).map(String::as_str).unwrap_or("")
}

/// Output `k` of `n`, or "" when the node has fewer outputs.
pub(crate) fn output(n: &NodeProto, k: usize) -> &str {
    n.output.get(k).map(String::as_str).unwrap_or("")
}

/// Find the resolution-dependent constants of a model whose head was recognized.
pub fn find_resolution_constants(m: &Model, head: &Head) -> Result<Vec<ResConst>> {
    let g = m.graph();
    let ix = GraphIndex::build(g);
    let order = topo_order(g)?;
    let numeric = numeric_shapes(m, head)?;
    let mut p = Probe {
        m,
        g,
        ix: &ix,
        head,
        numeric: &numeric,
        shapes: symbolic_start(g, &ix, head, &numeric),
        fresh: 0,
        found: BTreeMap::new(),
    };
    for (at, &ni) in order.iter().enumerate() {
        let n = &g.node[ni];
        // unknown: outputs unknown in the probe too
        let Ok(mut outs) = infer_node(n, &p.shapes) else {
            continue;
        };
        (rule_for(n.op_type()).find)(&mut p, n, at, &mut outs);
        for (o, info) in n.output.iter().zip(outs) {
            p.shapes.map.insert(o.clone(), info);
        }
    }
    Ok(p.found.into_values().collect())
}

/// Numeric inference at the declared size; a symbolic batch is inferred at the batch the exporter
/// traced (what its constants hold).
fn numeric_shapes(m: &Model, head: &Head) -> Result<Shapes> {
    match &head.batch {
        Dim::Sym(_) => {
            let mut at = head.input_shape.clone();
            at[0] = Dim::Known(traced_batch(m, head).unwrap_or(1));
            infer(m, &HashMap::from([(head.input.clone(), at)]))
        }
        Dim::Known(_) => infer(m, &HashMap::new()),
    }
}

/// The probe's starting point: the graph inputs (the head input with H, W as symbols) and the
/// initializers as the numeric inference knows them.
fn symbolic_start(g: &GraphProto, ix: &GraphIndex, head: &Head, numeric: &Shapes) -> Shapes {
    let mut probe = Shapes::default();
    for i in &g.input {
        let mut shape = vi_shape(i);
        if i.name() == head.input {
            if let Some(s) = shape.as_mut() {
                s[2] = Dim::Sym("H".into());
                s[3] = Dim::Sym("W".into());
            }
        }
        probe.map.insert(
            i.name().to_string(),
            Info {
                dtype: vi_dtype(i),
                shape,
                value: None,
                dims_value: None,
            },
        );
    }
    for (k, v) in &numeric.map {
        if ix.initializer.contains_key(k) && !probe.map.contains_key(k) {
            probe.map.insert(k.clone(), v.clone());
        }
    }
    probe
}

/// The batch an exporter traced a symbolic-batch graph with: the leading number a `Reshape` puts
/// where its input has the symbolic batch (Gold-YOLO `--dynamic-batch` keeps `[1, 4, 8, 100]` in its
/// attention). 1 when no node bakes one; an error when two nodes bake different ones.
pub fn traced_batch(m: &Model, head: &Head) -> Result<i64> {
    let Dim::Sym(sym) = &head.batch else {
        return Ok(head.batch.known().unwrap_or(1));
    };
    let s = infer(m, &HashMap::new())?;
    let mut seen: BTreeMap<i64, String> = BTreeMap::new();
    for n in m.graph().node.iter().filter(|n| n.op_type() == "Reshape") {
        let (Some(i), Some(o)) = (s.shape(input(n, 0)), s.shape(output(n, 0))) else {
            continue;
        };
        if let (Some(Dim::Sym(a)), Some(Dim::Known(k))) = (i.first(), o.first()) {
            if a == sym && *k >= 1 {
                seen.entry(*k).or_insert_with(|| describe(n));
            }
        }
    }
    match seen.len() {
        0 => Ok(1),
        1 => Ok(*seen.keys().next().unwrap_or(&1)),
        _ => bail!(
            "the graph bakes different batches for its symbolic batch `{sym}`: {}",
            seen.iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Split `a` and `b` (same element count) into aligned groups of equal products.
pub fn reshape_groups(
    a: &[i64],
    b: &[i64],
) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    let (mut i, mut j) = (0usize, 0usize);
    let mut groups = Vec::new();
    while i < a.len() || j < b.len() {
        let (si, sj) = (i, j);
        let mut pa: i64 = 1;
        let mut pb: i64 = 1;
        if i < a.len() {
            pa = a[i];
            i += 1;
        }
        if j < b.len() {
            pb = b[j];
            j += 1;
        }
        while pa != pb {
            if pa < pb {
                if i >= a.len() {
                    return None;
                }
                pa = pa.checked_mul(a[i])?;
                i += 1;
            } else {
                if j >= b.len() {
                    return None;
                }
                pb = pb.checked_mul(b[j])?;
                j += 1;
            }
        }
        groups.push((si..i, sj..j));
    }
    Some(groups)
}

/// Constant pieces of a 1-D int operand: the whole thing if it is a constant, or the constant
/// inputs of the `Concat` producing it, each with its element offset (runtime parts count with
/// their length from `shapes`, 1 if unknown).
pub fn const_parts(
    g: &GraphProto,
    ix: &GraphIndex,
    shapes: Option<&Shapes>,
    name: &str,
) -> Vec<(String, Vec<i64>, usize)> {
    let vals_of = |t: &TensorProto| {
        crate::tensor::values(t)
            .ok()
            .filter(|v| !v.is_float() && v.len() <= 16)
            .map(|v| v.as_i64())
    };
    if name.is_empty() {
        return vec![];
    }
    if let Some(t) = constant_ref(g, ix, name) {
        return vals_of(t)
            .map(|v| vec![(name.to_string(), v, 0)])
            .unwrap_or_default();
    }
    let Some(&p) = ix.producer.get(name) else {
        return vec![];
    };
    let n = &g.node[p];
    if n.op_type() != "Concat" {
        return vec![];
    }
    let mut out = Vec::new();
    let mut off = 0usize;
    for i in &n.input {
        match constant_ref(g, ix, i).and_then(vals_of) {
            Some(v) => {
                let l = v.len();
                out.push((i.clone(), v, off));
                off += l;
            }
            None => {
                off += shapes
                    .and_then(|s| s.shape(i))
                    .and_then(|s| s.first())
                    .and_then(Dim::known)
                    .unwrap_or(1) as usize
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::reshape_groups;

    #[test]
    fn groups_follow_products() {
        let g = reshape_groups(&[1, 32, 10, 10], &[1, 4, 8, 100]).unwrap();
        assert_eq!(g, vec![(0..1, 0..1), (1..2, 1..3), (2..4, 3..4)]);
        assert!(reshape_groups(&[2, 3], &[7]).is_none());
    }
}
