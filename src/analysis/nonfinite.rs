//! Files that lie: non-finite values (NaN, ±Inf) in float weights, and in the tensors `check`
//! compares.
//!
//! A weight that became NaN (a flipped byte, a diverged training run) makes onnxruntime compute an
//! all-NaN head and no detections, while tract's Sigmoid turns NaN into a finite number: a check
//! run with tract alone would pass. So the weights themselves are scanned: float initializers and
//! `Constant` values read (directly or through a pass-through op such as Cast or
//! DequantizeLinear) by Conv, ConvTranspose, Gemm, MatMul, BatchNormalization, or by the head — the
//! tail of the graph after its last weighted layer (decode grids, strides, anchor points).
//! Non-finite constants elsewhere (a `-inf` attention mask, an `inf` Clip bound) are legitimate and
//! not reported.

use std::collections::{HashMap, HashSet, VecDeque};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::check::Step;
use crate::graph::{describe, GraphIndex};
use crate::model::Model;
use crate::npy::Npy;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::TensorProto;

/// One float constant holding non-finite values.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NonFinite {
    /// Initializer name, or the output of the `Constant` node.
    pub tensor: String,
    /// The weighted node (or head node) that reads it.
    pub consumer: String,
    pub nan: usize,
    pub pos_inf: usize,
    pub neg_inf: usize,
    /// Elements of the tensor.
    pub total: usize,
}

impl NonFinite {
    /// `1 NaN, 2 +Inf of 432 values in `w` (read by Conv `/backbone/...`)`
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.nan > 0 {
            parts.push(format!("{} NaN", self.nan));
        }
        if self.pos_inf > 0 {
            parts.push(format!("{} +Inf", self.pos_inf));
        }
        if self.neg_inf > 0 {
            parts.push(format!("{} -Inf", self.neg_inf));
        }
        format!(
            "`{}`: {} of {} values (read by {})",
            self.tensor,
            parts.join(", "),
            self.total,
            self.consumer
        )
    }
    pub fn count(&self) -> usize {
        self.nan + self.pos_inf + self.neg_inf
    }
}

/// Ops whose float inputs are weights.
const WEIGHTED: [&str; 5] = [
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "BatchNormalization",
];

/// Ops a weight may pass through on its way to a weighted op.
const PASS_THROUGH: [&str; 9] = [
    "Identity",
    "Cast",
    "Reshape",
    "Transpose",
    "Unsqueeze",
    "Squeeze",
    "Flatten",
    "DequantizeLinear",
    "QuantizeLinear",
];

/// Counts (NaN, +Inf, -Inf, total) of a float tensor; `None` for non-float types.
fn count_tensor(m: &Model, t: &TensorProto) -> Option<(usize, usize, usize, usize)> {
    let mut c = (0usize, 0usize, 0usize, 0usize);
    let mut add = |x: f64| {
        c.3 += 1;
        if x.is_nan() {
            c.0 += 1;
        } else if x == f64::INFINITY {
            c.1 += 1;
        } else if x == f64::NEG_INFINITY {
            c.2 += 1;
        }
    };
    match DataType::try_from(t.data_type()) {
        Ok(DataType::Float | DataType::Double) => {
            for x in m.tensor_values(t).ok()?.as_f64() {
                add(x);
            }
        }
        Ok(dt @ (DataType::Float16 | DataType::Bfloat16)) => {
            let raw = if crate::tensor::is_external(t) {
                Some(m.external_slice(t).ok()?.to_vec())
            } else {
                t.raw_data.as_ref().map(|r| r.to_vec())
            };
            let bits: Vec<u16> = match raw {
                Some(r) => r
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect(),
                None => t.int32_data.iter().map(|&x| x as u16).collect(),
            };
            // exponent all ones: Inf (mantissa 0) or NaN
            let (exp, man, sign) = if dt == DataType::Float16 {
                (0x7C00u16, 0x03FFu16, 0x8000u16)
            } else {
                (0x7F80u16, 0x007Fu16, 0x8000u16)
            };
            for b in bits {
                if b & exp == exp {
                    if b & man != 0 {
                        add(f64::NAN)
                    } else if b & sign != 0 {
                        add(f64::NEG_INFINITY)
                    } else {
                        add(f64::INFINITY)
                    }
                } else {
                    add(0.0)
                }
            }
        }
        _ => return None,
    }
    Some(c)
}

/// Nodes of the head tail: ancestors of a graph output from which no weighted op can be reached.
fn head_tail(g: &crate::onnx::GraphProto, ix: &GraphIndex) -> HashSet<usize> {
    let order = crate::graph::topo_order(g).unwrap_or_default();
    // reaches_weighted[n]: a weighted op is n itself or downstream of n
    let mut reaches: HashMap<usize, bool> = HashMap::new();
    for &i in order.iter().rev() {
        let n = &g.node[i];
        let r = WEIGHTED.contains(&n.op_type())
            || n.output.iter().any(|o| {
                ix.consumers
                    .get(o)
                    .map(|cs| cs.iter().any(|c| reaches.get(c).copied().unwrap_or(false)))
                    .unwrap_or(false)
            });
        reaches.insert(i, r);
    }
    let mut tail = HashSet::new();
    let mut q: VecDeque<String> = g.output.iter().map(|o| o.name().to_string()).collect();
    let mut seen = HashSet::new();
    while let Some(t) = q.pop_front() {
        let Some(&p) = ix.producer.get(&t) else {
            continue;
        };
        if !seen.insert(p) || reaches.get(&p).copied().unwrap_or(true) {
            continue;
        }
        tail.insert(p);
        for i in crate::graph::node_reads(&g.node[p]) {
            q.push_back(i);
        }
    }
    tail
}

/// The weighted or head node a constant feeds (through pass-through ops), if any.
fn weighted_consumer(
    g: &crate::onnx::GraphProto,
    ix: &GraphIndex,
    tail: &HashSet<usize>,
    name: &str,
) -> Option<usize> {
    let mut q = VecDeque::from([(name.to_string(), 0usize)]);
    let mut seen = HashSet::new();
    while let Some((t, depth)) = q.pop_front() {
        for &c in ix.consumers.get(&t).map(Vec::as_slice).unwrap_or(&[]) {
            let n = &g.node[c];
            if WEIGHTED.contains(&n.op_type()) || tail.contains(&c) {
                return Some(c);
            }
            if depth < 4 && PASS_THROUGH.contains(&n.op_type()) && seen.insert(c) {
                for o in &n.output {
                    q.push_back((o.clone(), depth + 1));
                }
            }
        }
    }
    None
}

/// Every float weight (initializer or Constant value) of `m` that holds NaN or ±Inf and is read by
/// a weighted op or by the head, in graph order.
pub fn scan(m: &Model) -> Vec<NonFinite> {
    let g = m.graph();
    let ix = GraphIndex::build(g);
    let tail = head_tail(g, &ix);
    let mut out = Vec::new();
    let mut found = |name: &str, t: &TensorProto| {
        let Some((nan, pos_inf, neg_inf, total)) = count_tensor(m, t) else {
            return;
        };
        if nan + pos_inf + neg_inf == 0 {
            return;
        }
        if let Some(c) = weighted_consumer(g, &ix, &tail, name) {
            out.push(NonFinite {
                tensor: name.to_string(),
                consumer: describe(&g.node[c]),
                nan,
                pos_inf,
                neg_inf,
                total,
            });
        }
    };
    for t in &g.initializer {
        found(t.name(), t);
    }
    for n in g.node.iter().filter(|n| n.op_type() == "Constant") {
        if let (Some(t), Some(o)) = (crate::graph::constant_node_value(n), n.output.first()) {
            found(o, &t);
        }
    }
    out
}

/// Refuse a model whose weights hold non-finite values (exit 2 in the CLI), naming each tensor and
/// how many values; `what` names the model in the message (e.g. its path).
pub fn refuse(m: &Model, what: &str) -> Result<()> {
    let bad = scan(m);
    if bad.is_empty() {
        return Ok(());
    }
    let total: usize = bad.iter().map(NonFinite::count).sum();
    bail!(
        "{what}: {total} non-finite value(s) (NaN/Inf) in {} weight tensor(s): {}; such a model computes NaN (onnxruntime gives an all-NaN head and no detections) — re-export it, or pass --allow-nonfinite to process it anyway",
        bad.len(),
        bad.iter()
            .take(8)
            .map(NonFinite::describe)
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// NaN / ±Inf count of a tensor `check` compares (0 for integer tensors).
pub fn count_npy(t: &Npy) -> usize {
    use crate::npy::NpyData;
    match &t.data {
        NpyData::F32(v) => v.iter().filter(|x| !x.is_finite()).count(),
        NpyData::F64(v) => v.iter().filter(|x| !x.is_finite()).count(),
        _ => 0,
    }
}

/// Make `check` fail on non-finite values: each step whose compared tensors (the original's head
/// output, the same tensor in the merged model `head`, the merged model's outputs) hold NaN/Inf
/// fails, saying how many; and when either model's weights hold NaN/Inf, a `weights` step fails
/// (tract's Sigmoid can turn NaN finite, so the head tensors alone may not show it).
pub fn taint_steps(
    steps: &mut Vec<Step>,
    original: &Model,
    merged: &Model,
    orig_head: Option<&Npy>,
    merged_outs: &[(String, Npy)],
    head: &str,
) {
    let o = orig_head.map(count_npy).unwrap_or(0);
    let mh: usize = merged_outs
        .iter()
        .filter(|(n, _)| n == head)
        .map(|(_, t)| count_npy(t))
        .sum();
    let mo: usize = merged_outs
        .iter()
        .filter(|(n, _)| n != head)
        .map(|(_, t)| count_npy(t))
        .sum();
    for st in steps.iter_mut() {
        let (a, b, what) = match st.name.as_str() {
            "head" => (o, mh, ("original head", "merged head")),
            "post-process" => (mh, mo, ("merged head", "merged outputs")),
            "detections" => (o, mo, ("original head", "merged outputs")),
            _ => continue,
        };
        if a + b > 0 {
            st.ok = Some(false);
            st.detail.push_str(&format!(
                "; NON-FINITE: {a} NaN/Inf in the {}, {b} in the {}",
                what.0, what.1
            ));
        }
    }
    for (label, m) in [("ORIGINAL", original), ("MERGED", merged)] {
        let bad = scan(m);
        if !bad.is_empty() {
            steps.push(Step {
                name: "weights".into(),
                ok: Some(false),
                compared: 1,
                detail: format!(
                    "{label} `{}` holds non-finite weights: {}",
                    m.source,
                    bad.iter()
                        .take(8)
                        .map(NonFinite::describe)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
    }
}
