//! Finding the constants an exporter baked from the input resolution (SPEC §3): Resize target
//! sizes, adaptive-pool AveragePool kernels/strides, Reshape shapes over spatial dims (attention
//! token counts), and tensors of a decoded head sized by the number of boxes or grid cells.
//!
//! Method: a symbolic probe. Shape inference runs with the input's H and W as symbols; every dim
//! that depends on them stays symbolic. A constant is resolution-dependent when it fixes a number
//! where the probe has a symbol (and the probe then continues with a symbol there, so a baked value
//! does not hide the dependence downstream). Decoded-head tensors (no symbolic path: they are pure
//! constants) are recognized by their dims / values matching N or a level's grid.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use serde::Serialize;

use crate::graph::{attr_ints, constant_ref, topo_order, GraphIndex};
use crate::head::Head;
use crate::model::Model;
use crate::shape::{infer_node, vi_dtype, Dim, Info, Shapes};
use crate::tensor::numel;

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

fn is_spatial(d: &Dim) -> bool {
    matches!(d, Dim::Sym(s) if s.starts_with("H") || s.starts_with("W") || s.starts_with('~'))
}

fn fmt_vals(v: &[i64]) -> String {
    format!("{v:?}")
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

/// Find the resolution-dependent constants of a model whose head was recognized.
pub fn find_resolution_constants(m: &Model, head: &Head) -> Result<Vec<ResConst>> {
    let g = m.graph();
    let ix = GraphIndex::build(g);
    let mut found: BTreeMap<(usize, String), ResConst> = BTreeMap::new();
    let order = topo_order(g)?;
    let pos: HashMap<usize, usize> = order.iter().enumerate().map(|(p, &i)| (i, p)).collect();

    // --- numeric inference at the declared size, symbolic probe with H, W as symbols
    // a symbolic batch is inferred at the batch the exporter traced (what its constants hold)
    let numeric = match &head.batch {
        Dim::Sym(_) => {
            let mut at = head.input_shape.clone();
            at[0] = Dim::Known(crate::passes::resize::traced_batch(m, head).unwrap_or(1));
            crate::shape::infer(m, &HashMap::from([(head.input.clone(), at)]))?
        }
        Dim::Known(_) => crate::shape::infer(m, &HashMap::new())?,
    };
    let mut probe = Shapes::default();
    for i in &g.input {
        let mut shape = crate::shape::vi_shape(i);
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
    let mut fresh = 0usize;
    let mut sym = || {
        fresh += 1;
        Dim::Sym(format!("~{fresh}"))
    };
    for &ni in &order {
        let n = &g.node[ni];
        let mut outs = match infer_node(n, &probe) {
            Ok(o) => o,
            Err(_) => {
                // unknown: outputs unknown in the probe too
                continue;
            }
        };
        let name = n.name().to_string();
        match n.op_type() {
            "Resize" => {
                let in_spatial = probe
                    .shape(&n.input[0])
                    .map(|s| s.iter().any(is_spatial))
                    .unwrap_or(false);
                if let Some(sz) = n.input.get(3).filter(|s| !s.is_empty()) {
                    // constant parts of the sizes operand
                    let parts = const_parts(g, &ix, Some(&numeric), sz);
                    for (cname, vals, offset) in parts {
                        // only spatial elements (index ≥ 2 of the full sizes vector)
                        if offset + vals.len() > 2 {
                            found.insert(
                                (pos[&ni], cname.clone()),
                                ResConst {
                                    node: name.clone(),
                                    op: "Resize".into(),
                                    what: "target size (sizes)".into(),
                                    value: fmt_vals(&vals),
                                    constant: cname,
                                },
                            );
                            if let Some(s) = outs[0].shape.as_mut() {
                                for d in s.iter_mut().skip(2) {
                                    *d = sym();
                                }
                            }
                        }
                    }
                } else if in_spatial {
                    // scales: resolution-free unless the output is forced
                }
            }
            "AveragePool" => {
                let k = attr_ints(n, "kernel_shape").unwrap_or(&[]).to_vec();
                let st = attr_ints(n, "strides")
                    .map(<[i64]>::to_vec)
                    .unwrap_or_else(|| vec![1; k.len()]);
                let pads = attr_ints(n, "pads")
                    .map(<[i64]>::to_vec)
                    .unwrap_or_default();
                let in_shape = numeric.shape(&n.input[0]).cloned().unwrap_or_default();
                let out_shape = numeric.shape(&n.output[0]).cloned().unwrap_or_default();
                let in_spatial = probe
                    .shape(&n.input[0])
                    .map(|s| s.iter().any(is_spatial))
                    .unwrap_or(false);
                if in_spatial && k.iter().any(|&x| x > 1) && pads.iter().all(|&p| p == 0) {
                    let f = |s: &[Dim]| {
                        s.iter()
                            .skip(2)
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join("x")
                    };
                    found.insert(
                        (pos[&ni], format!("{name}.kernel_shape")),
                        ResConst {
                            node: name.clone(),
                            op: "AveragePool".into(),
                            what: format!(
                                "kernel/strides of an adaptive-pool emulation {} -> {}",
                                f(&in_shape),
                                f(&out_shape)
                            ),
                            value: format!("kernel {k:?} strides {st:?}"),
                            constant: format!("{name}.kernel_shape"),
                        },
                    );
                }
            }
            "Reshape" | "Expand" | "Tile" | "ConstantOfShape" => {
                let operand = if n.op_type() == "ConstantOfShape" {
                    0
                } else {
                    1
                };
                let data_in = if n.op_type() == "ConstantOfShape" {
                    None
                } else {
                    probe.shape(&n.input[0]).cloned()
                };
                let num_in = if n.op_type() == "ConstantOfShape" {
                    None
                } else {
                    numeric
                        .shape(&n.input[0])
                        .and_then(|s| s.iter().map(Dim::known).collect::<Option<Vec<i64>>>())
                };
                let num_out = numeric
                    .shape(&n.output[0])
                    .and_then(|s| s.iter().map(Dim::known).collect::<Option<Vec<i64>>>());
                let parts = const_parts(
                    g,
                    &ix,
                    Some(&numeric),
                    n.input.get(operand).map(String::as_str).unwrap_or(""),
                );
                if let (Some(pin), Some(nin), Some(nout), "Reshape") =
                    (&data_in, &num_in, &num_out, n.op_type())
                {
                    if pin.iter().any(is_spatial) {
                        if let Some(groups) = reshape_groups(nin, nout) {
                            let mut flagged_dims = Vec::new();
                            for (gi, go) in &groups {
                                if pin[gi.clone()].iter().any(is_spatial) {
                                    flagged_dims.extend(go.clone());
                                }
                            }
                            for (cname, vals, offset) in &parts {
                                let hit: Vec<usize> = (0..vals.len())
                                    .filter(|k| {
                                        flagged_dims.contains(&(offset + k))
                                            && vals[*k] != -1
                                            && vals[*k] != 0
                                    })
                                    .collect();
                                if !hit.is_empty() {
                                    found.insert(
                                        (pos[&ni], cname.clone()),
                                        ResConst {
                                            node: name.clone(),
                                            op: "Reshape".into(),
                                            what: format!(
                                                "target shape over spatial dims (input {})",
                                                crate::shape::fmt_shape(
                                                    &numeric
                                                        .shape(&n.input[0])
                                                        .cloned()
                                                        .unwrap_or_default()
                                                )
                                            ),
                                            value: fmt_vals(vals),
                                            constant: cname.clone(),
                                        },
                                    );
                                }
                            }
                            if let Some(s) = outs[0].shape.as_mut() {
                                for &d in &flagged_dims {
                                    if d < s.len() && !is_spatial(&s[d]) {
                                        s[d] = sym();
                                    }
                                }
                            }
                        }
                    }
                }
                // decoded-head constants: values containing N or equal to a grid
                for (cname, vals, _) in &parts {
                    if let Some(why) = head_number(head, vals) {
                        found.entry((pos[&ni], cname.clone())).or_insert(ResConst {
                            node: name.clone(),
                            op: n.op_type().into(),
                            what: format!("shape operand {why}"),
                            value: fmt_vals(vals),
                            constant: cname.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
        // baked tensors sized by N or a grid (decoded heads): any constant input of this node
        if n.op_type() != "Conv" {
            let shape_ops = matches!(
                n.op_type(),
                "Reshape" | "Expand" | "Tile" | "ConstantOfShape" | "Resize"
            );
            for (k, inp) in n.input.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
                if shape_ops && k >= 1 || n.op_type() == "ConstantOfShape" {
                    continue;
                }
                if let Some(t) = constant_ref(g, &ix, inp) {
                    if let Some(why) = head_dims(head, &t.dims) {
                        let value = if numel(&t.dims).unwrap_or(0) <= 8 {
                            m.tensor_values(t)
                                .map(|v| fmt_vals(&v.as_i64()))
                                .unwrap_or_default()
                        } else {
                            format!("{} {:?}", crate::tensor::dtype_name(t.data_type()), t.dims)
                        };
                        found.entry((pos[&ni], inp.clone())).or_insert(ResConst {
                            node: name.clone(),
                            op: n.op_type().into(),
                            what: format!("baked tensor {why}"),
                            value,
                            constant: inp.clone(),
                        });
                    } else if !matches!(
                        n.op_type(),
                        "Slice" | "Gather" | "Unsqueeze" | "Squeeze" | "Split" | "Concat"
                    ) && numel(&t.dims).map(|c| c <= 8).unwrap_or(false)
                        && t.data_type() == crate::onnx::tensor_proto::DataType::Int64 as i32
                    {
                        if let Ok(v) = m.tensor_values(t) {
                            let vals = v.as_i64();
                            if let Some(why) = head_number(head, &vals) {
                                found.entry((pos[&ni], inp.clone())).or_insert(ResConst {
                                    node: name.clone(),
                                    op: n.op_type().into(),
                                    what: format!("operand {why}"),
                                    value: fmt_vals(&vals),
                                    constant: inp.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
        for (o, info) in n.output.iter().zip(outs.drain(..)) {
            probe.map.insert(o.clone(), info);
        }
    }
    Ok(found.into_values().collect())
}

/// Why a small int vector depends on the head's size (contains N, or equals a level's grid).
fn head_number(head: &Head, vals: &[i64]) -> Option<String> {
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
fn head_dims(head: &Head, dims: &[i64]) -> Option<String> {
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

/// Constant pieces of a 1-D int operand: the whole thing if it is a constant, or the constant
/// inputs of the `Concat` producing it, each with its element offset (runtime parts count with
/// their length from `shapes`, 1 if unknown).
pub fn const_parts(
    g: &crate::onnx::GraphProto,
    ix: &GraphIndex,
    shapes: Option<&crate::shape::Shapes>,
    name: &str,
) -> Vec<(String, Vec<i64>, usize)> {
    let vals_of = |t: &crate::onnx::TensorProto| {
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
