//! `quant-prep`: make a graph INT8 toolchains quantize well (SPEC §4), without Python.
//!
//! In order, each step for a reason:
//! 1. opset raised to 13 (per-channel quantization needs it), converting the ops whose
//!    signature changed (Unsqueeze/Squeeze/ReduceSum axes, Split sizes become inputs);
//! 2. Identity / Dropout removed (they only hide tensors from the quantizer's patterns);
//! 3. BatchNormalization folded into the preceding Conv (one op, one scale);
//! 4. constants folded: a node is folded when shape inference knows every output value
//!    statically, it is deterministic and has no subgraph, and it is not a QuantizeLinear /
//!    DequantizeLinear (Q/DQ pairs carry the quantization and are never folded); `Constant`
//!    nodes become initializers;
//! 5. dead nodes and unused initializers removed;
//! 6. every tensor's static shape recorded in value_info;
//! 7. the nodes after the last Conv (the head's reshapes/concats, the decode, NMS and the output
//!    layout) listed as `nodes_to_exclude`: boxes (pixels or [0, 1]) and probabilities must not
//!    share one quantization scale, and the post-process must stay float.
//!
//! What was done is recorded in metadata (`postmerge.quant_prep`, `postmerge.nodes_to_exclude`).

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::graph::{attr_f, cleanup, describe, make_attr_ints, toposort, GraphIndex};
use crate::model::Model;
use crate::onnx::{tensor_proto::DataType, GraphProto};
use crate::passes::{default_opset, set_default_opset, set_metadata};
use crate::shape::{infer, make_vi};
use crate::tensor::{numel, tensor_f32, tensor_from_values, tensor_i64, Values};

/// Options of quant-prep.
#[derive(Debug, Clone)]
pub struct QuantPrepOptions {
    /// Target opset (at least 13 for per-channel quantization).
    pub opset: i64,
    /// Largest tensor (elements) constant folding may create.
    pub max_fold_elems: usize,
}

impl Default for QuantPrepOptions {
    fn default() -> Self {
        QuantPrepOptions {
            opset: 13,
            max_fold_elems: 1 << 20,
        }
    }
}

/// What quant-prep did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct QuantPrepReport {
    pub opset_from: i64,
    pub opset_to: i64,
    pub converted_ops: usize,
    pub removed_identity: usize,
    pub folded_batchnorm: usize,
    pub folded_nodes: usize,
    pub constants_to_initializers: usize,
    pub removed_dead_nodes: usize,
    pub removed_initializers: usize,
    pub value_info: usize,
    pub nodes_to_exclude: Vec<String>,
    pub notes: Vec<String>,
}

/// Ops that are never folded even with constant inputs.
const NEVER_FOLD: &[&str] = &[
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "If",
    "Loop",
    "Scan",
    "NonMaxSuppression",
    "Constant",
];

/// Convert `Unsqueeze`/`Squeeze`/`ReduceSum`/`Split` from attribute to input form when crossing
/// opset 13; refuse ops whose meaning changes in ways not converted here.
fn upgrade_opset(m: &mut Model, to: i64) -> Result<usize> {
    let from = default_opset(&m.proto);
    if from >= to {
        return Ok(0);
    }
    if to > 17 {
        bail!("opset {to}: quant-prep converts up to opset 17");
    }
    let g = m.graph_mut();
    let mut names = crate::graph::NameGen::new(g);
    let mut new_inits = Vec::new();
    let mut converted = 0;
    for n in g.node.iter_mut() {
        if !n.domain().is_empty() {
            continue;
        }
        let op = n.op_type().to_string();
        match op.as_str() {
            "Unsqueeze" | "Squeeze" | "ReduceSum" if from < 13 => {
                if let Some(pos) = n.attribute.iter().position(|a| a.name() == "axes") {
                    let a = n.attribute.remove(pos);
                    let name = names.fresh(&format!(
                        "{}_axes",
                        if n.name().is_empty() {
                            n.output[0].as_str()
                        } else {
                            n.name()
                        }
                    ));
                    new_inits.push(tensor_i64(&name, &[a.ints.len() as i64], &a.ints));
                    if n.input.len() < 2 {
                        n.input.push(name);
                    } else {
                        n.input[1] = name;
                    }
                    converted += 1;
                }
            }
            "Split" if from < 13 => {
                if let Some(pos) = n.attribute.iter().position(|a| a.name() == "split") {
                    let a = n.attribute.remove(pos);
                    let name = names.fresh(&format!(
                        "{}_split",
                        if n.name().is_empty() {
                            n.output[0].as_str()
                        } else {
                            n.name()
                        }
                    ));
                    new_inits.push(tensor_i64(&name, &[a.ints.len() as i64], &a.ints));
                    n.input.push(name);
                    converted += 1;
                }
            }
            "Slice" | "Clip" | "Pad" | "TopK" | "Upsample" if from < 11 => {
                bail!("{}: converting opset {from} to {to} is not supported for this op (attributes became inputs at opset 10/11); export at opset 11 or later", describe(n));
            }
            "Dropout" if from < 12 => {} // removed by quant-prep anyway
            _ => {}
        }
    }
    g.initializer.extend(new_inits);
    set_default_opset(&mut m.proto, to);
    if m.proto.ir_version() < 7 {
        m.proto.ir_version = Some(7); // opset 13 needs IR 7
    }
    Ok(converted)
}

/// Remove Identity and Dropout (inference: Dropout is the identity) unless they produce a graph
/// output.
fn remove_identity(g: &mut GraphProto) -> usize {
    let outputs: HashSet<String> = g.output.iter().map(|o| o.name().to_string()).collect();
    let mut removed = BTreeSet::new();
    let mut rename: HashMap<String, String> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        if matches!(n.op_type(), "Identity" | "Dropout")
            && n.domain().is_empty()
            && !n.input.is_empty()
            && !outputs.contains(&n.output[0])
            && n.output.iter().skip(1).all(|o| o.is_empty())
        {
            rename.insert(n.output[0].clone(), n.input[0].clone());
            removed.insert(i);
        }
    }
    let resolve = |mut s: String| {
        while let Some(t) = rename.get(&s) {
            s = t.clone();
        }
        s
    };
    crate::graph::remove_nodes(g, &removed);
    for n in g.node.iter_mut() {
        for i in n.input.iter_mut() {
            if rename.contains_key(i) {
                *i = resolve(i.clone());
            }
        }
    }
    removed.len()
}

/// Fold BatchNormalization into the Conv producing its input (when that Conv has no other reader).
fn fold_batchnorm(m: &mut Model) -> Result<usize> {
    let g = m.graph();
    let ix = GraphIndex::build(g);
    let mut plans = Vec::new();
    for (bi, bn) in g.node.iter().enumerate() {
        if bn.op_type() != "BatchNormalization"
            || bn.output.iter().skip(1).any(|o| !o.is_empty())
            || bn.input.len() < 5
        {
            continue;
        }
        let Some(&ci) = ix.producer.get(&bn.input[0]) else {
            continue;
        };
        let conv = &g.node[ci];
        if conv.op_type() != "Conv"
            || ix.consumers_of(&bn.input[0]).len() != 1
            || ix.outputs.contains(&bn.input[0])
        {
            continue;
        }
        let get = |name: &str| -> Option<Vec<f64>> {
            crate::graph::constant_ref(g, &ix, name)
                .and_then(|t| m.tensor_values(t).ok())
                .map(|v| v.as_f64())
        };
        let (Some(scale), Some(bias), Some(mean), Some(var)) = (
            get(&bn.input[1]),
            get(&bn.input[2]),
            get(&bn.input[3]),
            get(&bn.input[4]),
        ) else {
            continue;
        };
        let Some(wt) = crate::graph::constant_ref(g, &ix, &conv.input[1]) else {
            continue;
        };
        if wt.data_type() != DataType::Float as i32 || ix.consumers_of(&conv.input[1]).len() != 1 {
            continue;
        }
        let w = m.tensor_values(wt)?.as_f64();
        let cout = wt.dims[0] as usize;
        if [scale.len(), bias.len(), mean.len(), var.len()]
            .iter()
            .any(|&l| l != cout)
            || cout == 0
        {
            continue;
        }
        let b0 = match conv.input.get(2).filter(|s| !s.is_empty()) {
            Some(bname) => match get(bname) {
                Some(v) if v.len() == cout => v,
                _ => continue,
            },
            None => vec![0.0; cout],
        };
        let eps = attr_f(bn, "epsilon").unwrap_or(1e-5) as f64;
        let per = w.len() / cout;
        let mut nw = vec![0f32; w.len()];
        let mut nb = vec![0f32; cout];
        for o in 0..cout {
            let k = scale[o] / (var[o] + eps).sqrt();
            for j in 0..per {
                nw[o * per + j] = (w[o * per + j] * k) as f32;
            }
            nb[o] = ((b0[o] - mean[o]) * k + bias[o]) as f32;
        }
        plans.push((bi, ci, wt.dims.clone(), nw, nb));
    }
    let count = plans.len();
    let g = m.graph_mut();
    let mut names = crate::graph::NameGen::new(g);
    let mut remove = BTreeSet::new();
    for (bi, ci, dims, nw, nb) in plans {
        let wname = names.fresh(&format!("{}_bnfolded_weight", g.node[ci].name()));
        let bname = names.fresh(&format!("{}_bnfolded_bias", g.node[ci].name()));
        g.initializer.push(tensor_f32(&wname, &dims, &nw));
        g.initializer
            .push(tensor_f32(&bname, &[nb.len() as i64], &nb));
        let out = g.node[bi].output[0].clone();
        let conv = &mut g.node[ci];
        conv.input[1] = wname;
        if conv.input.len() > 2 {
            conv.input[2] = bname;
        } else {
            conv.input.push(bname);
        }
        conv.output[0] = out;
        remove.insert(bi);
    }
    crate::graph::remove_nodes(g, &remove);
    Ok(count)
}

/// Fold nodes whose outputs are statically known; turn Constant nodes into initializers.
fn fold_constants(m: &mut Model, max_elems: usize) -> Result<(usize, usize)> {
    let shapes = crate::shape::infer_with_values(m, &HashMap::new())?;
    let g = m.graph();
    let outputs: HashSet<&str> = g.output.iter().map(|o| o.name()).collect();
    let mut fold = BTreeSet::new();
    let mut inits = Vec::new();
    let mut constants = 0;
    for (i, n) in g.node.iter().enumerate() {
        if !n.domain().is_empty()
            || n.attribute
                .iter()
                .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            continue;
        }
        let is_const = n.op_type() == "Constant";
        if NEVER_FOLD.contains(&n.op_type()) && !is_const {
            continue;
        }
        if n.output.iter().any(|o| outputs.contains(o.as_str())) {
            continue;
        }
        let mut made = Vec::new();
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            let Some(info) = shapes.get(o) else { break };
            let (Some(v), Some(dims)) = (&info.value, info.static_shape()) else {
                break;
            };
            if numel(&dims) != Some(v.len()) || v.len() > max_elems {
                break;
            }
            // keep the dtype inference reported (Shape → int64, Equal → bool, ...)
            let v = match DataType::try_from(info.dtype.unwrap_or(0)) {
                Ok(DataType::Int64) => Values::I64(v.as_i64()),
                Ok(DataType::Float) => {
                    Values::F32(v.as_f64().into_iter().map(|x| x as f32).collect())
                }
                _ => v.clone(),
            };
            made.push(tensor_from_values(o, &dims, &v));
        }
        if made.len() == n.output.iter().filter(|o| !o.is_empty()).count() && !made.is_empty() {
            if is_const {
                // keep the original tensor exactly (dtype, raw bytes), only move it
                if let Some(mut t) = crate::graph::constant_node_value(n) {
                    t.name = Some(n.output[0].clone());
                    inits.push(t);
                    constants += 1;
                    fold.insert(i);
                }
                continue;
            }
            inits.extend(made);
            fold.insert(i);
        }
    }
    let folded = fold.len() - constants;
    let g = m.graph_mut();
    crate::graph::remove_nodes(g, &fold);
    g.initializer.extend(inits);
    Ok((folded, constants))
}

/// Nodes that are neither a Conv nor lead to one: everything after the last Conv on every path.
pub fn nodes_after_last_conv(g: &GraphProto) -> Vec<String> {
    let ix = GraphIndex::build(g);
    let mut feeds_conv: HashSet<usize> = HashSet::new();
    let mut stack: Vec<usize> = g
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op_type(), "Conv" | "ConvTranspose" | "Gemm"))
        .map(|(i, _)| i)
        .collect();
    while let Some(i) = stack.pop() {
        if !feeds_conv.insert(i) {
            continue;
        }
        for r in crate::graph::node_reads(&g.node[i]) {
            if let Some(&p) = ix.producer.get(&r) {
                stack.push(p);
            }
        }
    }
    g.node
        .iter()
        .enumerate()
        .filter(|(i, n)| !feeds_conv.contains(i) && !n.name().is_empty())
        .map(|(_, n)| n.name().to_string())
        .collect()
}

/// Give every unnamed node a unique name (nodes_to_exclude needs names).
fn name_nodes(g: &mut GraphProto) {
    let mut names = crate::graph::NameGen::new(g);
    for n in g.node.iter_mut() {
        if n.name().is_empty() {
            let base = format!(
                "{}_{}",
                n.op_type(),
                n.output.first().cloned().unwrap_or_default()
            );
            n.name = Some(names.fresh(&base));
        }
    }
}

/// Prepare `m` for quantization in place.
pub fn quant_prep(m: &mut Model, opts: &QuantPrepOptions) -> Result<QuantPrepReport> {
    let mut rep = QuantPrepReport {
        opset_from: default_opset(&m.proto),
        ..Default::default()
    };
    if opts.opset < 13 {
        rep.notes.push(format!(
            "opset {} kept below 13: onnxruntime refuses per-channel quantization there",
            opts.opset
        ));
    }
    rep.converted_ops = upgrade_opset(m, opts.opset)?;
    rep.opset_to = default_opset(&m.proto);
    if rep.opset_to > rep.opset_from {
        rep.notes.push(format!(
            "opset raised from {} to {} (per-channel quantization needs 13)",
            rep.opset_from, rep.opset_to
        ));
    }
    rep.removed_identity = remove_identity(m.graph_mut());
    rep.folded_batchnorm = fold_batchnorm(m)?;
    let (folded, consts) = fold_constants(m, opts.max_fold_elems).context("constant folding")?;
    rep.folded_nodes = folded;
    rep.constants_to_initializers = consts;
    let c = cleanup(m.graph_mut());
    rep.removed_dead_nodes = c.nodes.len();
    rep.removed_initializers = c.initializers.len();
    toposort(m.graph_mut())?;
    name_nodes(m.graph_mut());
    // value_info: every internal tensor with a fully static shape
    let shapes = infer(m, &HashMap::new())?;
    let g = m.graph();
    let skip: HashSet<&str> = g
        .input
        .iter()
        .chain(&g.output)
        .map(|v| v.name())
        .chain(g.initializer.iter().map(|t| t.name()))
        .collect();
    let mut vis = Vec::new();
    for n in &g.node {
        for o in n
            .output
            .iter()
            .filter(|o| !o.is_empty() && !skip.contains(o.as_str()))
        {
            if let Some(info) = shapes.get(o) {
                // static where it is static; data-dependent dims (after NMS) stay symbolic
                if let (Some(dt), Some(s)) = (info.dtype, &info.shape) {
                    vis.push(make_vi(o, dt, s));
                }
            }
        }
    }
    rep.value_info = vis.len();
    rep.nodes_to_exclude = nodes_after_last_conv(g);
    let g = m.graph_mut();
    g.value_info = vis;
    let _ = make_attr_ints;
    set_metadata(
        &mut m.proto,
        "postmerge.nodes_to_exclude",
        &serde_json::to_string(&rep.nodes_to_exclude)?,
    );
    let desc = format!(
        "opset {}->{}; identity removed {}; batchnorm folded {}; nodes folded {}; constants->initializers {}; dead nodes removed {}; initializers removed {}; value_info {}; nodes_to_exclude {} (everything after the last Conv)",
        rep.opset_from, rep.opset_to, rep.removed_identity, rep.folded_batchnorm, rep.folded_nodes, rep.constants_to_initializers, rep.removed_dead_nodes, rep.removed_initializers, rep.value_info, rep.nodes_to_exclude.len()
    );
    set_metadata(&mut m.proto, "postmerge.quant_prep", &desc);
    // what onnxruntime.quantization.preprocess writes after the same steps (shape inference and
    // graph optimization); without it quantize_static asks for that preprocessing again
    set_metadata(&mut m.proto, "onnx.quant.pre_process", "onnxruntime.quant");
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::make_node;
    use crate::onnx::{ModelProto, OperatorSetIdProto, ValueInfoProto};
    use crate::shape::Dim;

    fn vi(name: &str, shape: &[i64]) -> ValueInfoProto {
        make_vi(
            name,
            DataType::Float as i32,
            &shape.iter().map(|&d| Dim::Known(d)).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn batchnorm_folds_into_conv_exactly() {
        // Conv(1->2, 1x1, w=[2,3], b=[1,-1]) then BN(scale [2,1], bias [0,1], mean [1,0], var [3,0.25], eps 1)
        let g = GraphProto {
            node: vec![
                make_node("Conv", "conv", &["x", "w", "b"], &["c"], vec![]),
                make_node(
                    "BatchNormalization",
                    "bn",
                    &["c", "s", "bb", "m", "v"],
                    &["y"],
                    vec![crate::graph::make_attr_f("epsilon", 1.0)],
                ),
            ],
            initializer: vec![
                tensor_f32("w", &[2, 1, 1, 1], &[2.0, 3.0]),
                tensor_f32("b", &[2], &[1.0, -1.0]),
                tensor_f32("s", &[2], &[2.0, 1.0]),
                tensor_f32("bb", &[2], &[0.0, 1.0]),
                tensor_f32("m", &[2], &[1.0, 0.0]),
                tensor_f32("v", &[2], &[3.0, 0.25]),
            ],
            input: vec![vi("x", &[1, 1, 2, 2])],
            output: vec![vi("y", &[1, 2, 2, 2])],
            ..Default::default()
        };
        let mut m = Model::from_proto(
            ModelProto {
                ir_version: Some(7),
                opset_import: vec![OperatorSetIdProto {
                    domain: Some(String::new()),
                    version: Some(13),
                }],
                graph: Some(g),
                ..Default::default()
            },
            "t",
        );
        assert_eq!(fold_batchnorm(&mut m).unwrap(), 1);
        let g = m.graph();
        assert_eq!(g.node.len(), 1);
        assert_eq!(g.node[0].output[0], "y");
        let ix = GraphIndex::build(g);
        let w = crate::tensor::values(&g.initializer[ix.initializer[&g.node[0].input[1]]])
            .unwrap()
            .as_f64();
        let b = crate::tensor::values(&g.initializer[ix.initializer[&g.node[0].input[2]]])
            .unwrap()
            .as_f64();
        // k0 = 2/sqrt(4) = 1, k1 = 1/sqrt(1.25)
        let k1 = 1.0 / 1.25f64.sqrt();
        assert!(
            (w[0] - 2.0).abs() < 1e-6 && (w[1] - 3.0 * k1).abs() < 1e-6,
            "{w:?}"
        );
        assert!(
            (b[0] - 0.0).abs() < 1e-6 && (b[1] - (-1.0 * k1 + 1.0)).abs() < 1e-6,
            "{b:?}"
        );
    }

    #[test]
    fn identity_and_dropout_go_but_not_graph_outputs() {
        let mut g = GraphProto {
            node: vec![
                make_node("Identity", "i1", &["x"], &["a"], vec![]),
                make_node("Dropout", "d", &["a"], &["b"], vec![]),
                make_node("Relu", "r", &["b"], &["c"], vec![]),
                make_node("Identity", "i2", &["c"], &["y"], vec![]),
            ],
            input: vec![vi("x", &[1])],
            output: vec![vi("y", &[1])],
            ..Default::default()
        };
        assert_eq!(remove_identity(&mut g), 2);
        let names: Vec<&str> = g.node.iter().map(|n| n.name()).collect();
        assert_eq!(names, ["r", "i2"]);
        assert_eq!(g.node[0].input[0], "x");
    }
}
