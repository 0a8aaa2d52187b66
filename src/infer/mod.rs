//! Static shape inference (with symbolic dims such as a symbolic batch) and propagation of small
//! constant values through the shape-computing ops that YOLOX and Gold-YOLO exports use
//! (`Shape → Gather → Unsqueeze → Concat → Reshape`, `Range`, `ConstantOfShape`, ...).
//!
//! Ops covered: every op in the op histograms of shared/models/MANIFEST.md — Add, ArgMax,
//! AveragePool, Cast, Clip, Concat, Constant, ConstantOfShape, Conv, Div, Equal, Exp, Expand,
//! Flatten, Gather, Greater, Identity, MatMul, MaxPool, Mul, Neg, NonMaxSuppression, ReduceSum,
//! ReduceMax, Range, Relu, Reshape, Resize, ScatterND, Shape, Sigmoid, Slice, Softmax, Split,
//! Squeeze, Sub, Tile, TopK, Transpose, Unsqueeze, Where — plus common elementwise ops. Unknown
//! ops (and `If`) get unknown shapes; inference goes on around them.
//!
//! Layout: one rule per op (the table in `registry.rs`), grouped by op kind under `ops/`; the
//! shared operand accessors in `helpers.rs`. A rule returns an [`InferError`] that says whether
//! the model is wrong ([`InferError::Defect`]) or the tool has no rule / no case for it.

mod helpers;
mod ops;
mod registry;

use std::collections::HashMap;

use anyhow::{bail, Result};

use crate::graph::{attr_f, describe, topo_order};
use crate::model::Model;
use crate::onnx::{tensor_proto::DataType, NodeProto};
use crate::tensor::{numel, Values};

pub use crate::ir::validate::validate_structure;
pub use crate::ir::value_info::{
    declared_input, fmt_shape, make_vi, set_vi_shape, vi_dtype, vi_shape, Dim,
};
pub use helpers::broadcast;
use helpers::set_dims_value;

/// Why the outputs of one node could not be inferred.
#[derive(Debug)]
pub enum InferError {
    /// No rule for this op (or the op is of a custom domain): a limit of the tool, not a defect.
    NoRule { op: String, domain: String },
    /// A rule exists, but this case of the op is not handled: a limit of the tool.
    Unsupported { op: String },
    /// The model is wrong (mismatched shapes, bad or missing attribute values, overflowing
    /// counts...), or an operand it needs is unknown.
    Defect(anyhow::Error),
}

impl InferError {
    /// Whether the error is the model's fault rather than a limit of inference.
    pub fn is_defect(&self) -> bool {
        matches!(self, InferError::Defect(_))
    }
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InferError::NoRule { op, domain } => {
                if is_standard(domain) {
                    write!(f, "no shape rule for {op}")
                } else {
                    write!(f, "op of domain `{domain}` is not inferred")
                }
            }
            InferError::Unsupported { op } => write!(f, "{op} shape inference is not supported"),
            InferError::Defect(e) => std::fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for InferError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // the wrapped error's own causes, so `{:#}` prints the same chain as before
            InferError::Defect(e) => e.source(),
            _ => None,
        }
    }
}

impl From<anyhow::Error> for InferError {
    fn from(e: anyhow::Error) -> Self {
        InferError::Defect(e)
    }
}

/// `return Err(InferError::Defect(anyhow!(...)))`: `bail!` for shape rules.
macro_rules! defect {
    ($($t:tt)*) => {
        return Err($crate::infer::InferError::Defect(anyhow::anyhow!($($t)*)))
    };
}
pub(crate) use defect;

fn is_standard(domain: &str) -> bool {
    matches!(domain, "" | "ai.onnx")
}

/// What is known about one tensor.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// ONNX dtype code
    pub dtype: Option<i32>,
    pub shape: Option<Vec<Dim>>,
    /// The values, when known statically and small (shape vectors, thresholds, grids, ...).
    pub value: Option<Values>,
    /// An int vector (rank ≤ 1) whose elements may be symbolic: what `Shape` of a tensor with a
    /// symbolic batch gives.
    pub dims_value: Option<Vec<Dim>>,
}

impl Info {
    pub(crate) fn of(dtype: Option<i32>, shape: Option<Vec<Dim>>) -> Info {
        Info {
            dtype,
            shape,
            value: None,
            dims_value: None,
        }
    }
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }
    /// Static shape as numbers, if fully known.
    pub fn static_shape(&self) -> Option<Vec<i64>> {
        self.shape.as_ref()?.iter().map(Dim::known).collect()
    }
}

/// Largest constant (elements) whose values are kept for propagation.
pub(crate) const MAX_VALUE_ELEMS: usize = 1 << 20;

/// Largest floating-point constant (elements) whose values shape inference decodes: enough for
/// Resize scales, Range bounds and scalar thresholds. Larger float tensors are weights; decoding
/// them would copy the whole model into memory for nothing (issue 7: 21 % of `resize`'s CPU and
/// +25 MiB of RSS on Gold-YOLO-n). Constant folding asks for every value with [`infer_with_values`].
pub const SHAPE_FLOAT_VALUES: usize = 64;

/// Shape inference result: per tensor name.
#[derive(Debug, Clone)]
pub struct Shapes {
    pub map: HashMap<String, Info>,
    /// Nodes whose outputs could not be inferred (op + reason), for reporting.
    pub unknown: Vec<String>,
    /// Float constants with more elements than this are inferred for their shape only.
    pub float_value_limit: usize,
    /// The subset of `unknown` that are defects of the model rather than limits of inference: a
    /// standard-domain op with a shape rule, whose inputs all have known shapes, that still could
    /// not be inferred (a missing required attribute, a perm of the wrong length, a float Reshape
    /// shape, an element count that overflows...).
    pub defects: Vec<String>,
}

impl Default for Shapes {
    fn default() -> Self {
        Shapes {
            map: HashMap::new(),
            unknown: Vec::new(),
            float_value_limit: SHAPE_FLOAT_VALUES,
            defects: Vec::new(),
        }
    }
}

/// Whether a constant of `dtype` with `dims` has its values decoded under `float_limit`.
pub(crate) fn keeps_values(dtype: i32, dims: &[i64], float_limit: usize) -> bool {
    let limit = match DataType::try_from(dtype) {
        Ok(DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16) => {
            float_limit.min(MAX_VALUE_ELEMS)
        }
        _ => MAX_VALUE_ELEMS,
    };
    numel(dims).map(|n| n <= limit).unwrap_or(false)
}

impl Shapes {
    pub fn get(&self, name: &str) -> Option<&Info> {
        self.map.get(name)
    }
    pub fn shape(&self, name: &str) -> Option<&Vec<Dim>> {
        self.map.get(name).and_then(|i| i.shape.as_ref())
    }
}

/// Infer shapes for the whole graph. `input_override` replaces declared input shapes (for
/// re-specialization). Declared value_info is not trusted (it may be stale); graph inputs and
/// initializers are the ground truth.
pub fn infer(model: &Model, input_override: &HashMap<String, Vec<Dim>>) -> Result<Shapes> {
    infer_limited(model, input_override, SHAPE_FLOAT_VALUES)
}

/// Second half (after [`validate_structure`]): no node whose shape cannot be inferred because of
/// the model itself ([`Shapes::defects`]). Custom-domain and unknown ops pass (they are carried
/// through untouched). `resize` checks the defects of its own inference instead of calling this.
pub fn validate_nodes(model: &Model) -> Result<()> {
    let s = infer(model, &HashMap::new())?;
    if let Some(d) = s.defects.first() {
        bail!("{d}");
    }
    Ok(())
}

/// [`infer`], also computing the values of every constant-foldable tensor up to 2^20 elements,
/// weights included (for constant folding).
pub fn infer_with_values(
    model: &Model,
    input_override: &HashMap<String, Vec<Dim>>,
) -> Result<Shapes> {
    infer_limited(model, input_override, MAX_VALUE_ELEMS)
}

fn infer_limited(
    model: &Model,
    input_override: &HashMap<String, Vec<Dim>>,
    float_value_limit: usize,
) -> Result<Shapes> {
    let g = model.graph();
    let mut s = Shapes {
        float_value_limit,
        ..Shapes::default()
    };
    for i in &g.input {
        let shape = input_override
            .get(i.name())
            .cloned()
            .or_else(|| vi_shape(i));
        s.map
            .insert(i.name().to_string(), Info::of(vi_dtype(i), shape));
    }
    let inputs: std::collections::HashSet<&str> = g.input.iter().map(|i| i.name()).collect();
    // Large float initializers are decoded only when some node could be folded with them.
    let foldable_inputs = if float_value_limit > SHAPE_FLOAT_VALUES {
        foldable_inputs(g, &inputs)
    } else {
        Default::default()
    };
    for t in &g.initializer {
        if inputs.contains(t.name()) {
            continue;
        }
        let mut info = Info::of(
            t.data_type,
            Some(t.dims.iter().map(|&d| Dim::Known(d)).collect()),
        );
        let limit = if foldable_inputs.contains(t.name()) {
            float_value_limit
        } else {
            SHAPE_FLOAT_VALUES
        };
        if keeps_values(t.data_type(), &t.dims, limit) {
            info.value = model.tensor_values(t).ok();
        }
        set_dims_value(&mut info);
        s.map.insert(t.name().to_string(), info);
    }
    let order = topo_order(g)?;
    for i in order {
        let n = &g.node[i];
        match infer_node(n, &s) {
            Ok(outs) => {
                for (name, info) in n.output.iter().zip(outs) {
                    if !name.is_empty() {
                        s.map.insert(name.clone(), info);
                    }
                }
            }
            Err(e) => {
                let d = describe(n);
                let text = e.to_string();
                // some rules already name the node
                let msg = if text.starts_with(&d) {
                    text
                } else {
                    format!("{d}: {text}")
                };
                // a defect only if it is not just an operand whose shape was not inferred
                let inputs_known = n.input.iter().all(|i| i.is_empty() || s.shape(i).is_some());
                if e.is_defect() && inputs_known {
                    s.defects.push(msg.clone());
                }
                s.unknown.push(msg);
            }
        }
    }
    Ok(s)
}

/// Tensors read by a node whose every input is static (an initializer, a Constant, a Shape/Size, or
/// the output of such a node): only those nodes can be constant-folded, so only their weights are
/// worth decoding.
fn foldable_inputs<'a>(
    g: &'a crate::onnx::GraphProto,
    graph_inputs: &std::collections::HashSet<&str>,
) -> std::collections::HashSet<&'a str> {
    let mut static_: std::collections::HashSet<&str> = g
        .initializer
        .iter()
        .map(|t| t.name())
        .filter(|n| !graph_inputs.contains(n))
        .collect();
    let mut wanted = std::collections::HashSet::new();
    let Ok(order) = topo_order(g) else {
        return wanted;
    };
    for i in order {
        let n = &g.node[i];
        let all_static = n
            .input
            .iter()
            .all(|x| x.is_empty() || static_.contains(x.as_str()));
        if all_static || matches!(n.op_type(), "Shape" | "Size") {
            if all_static {
                wanted.extend(n.input.iter().map(|x| x.as_str()));
            }
            static_.extend(n.output.iter().map(|x| x.as_str()));
        }
    }
    wanted
}

/// Infer the outputs of one node from what is known about its inputs.
pub fn infer_node(n: &NodeProto, s: &Shapes) -> Result<Vec<Info>, InferError> {
    if !is_standard(n.domain()) {
        return Err(InferError::NoRule {
            op: n.op_type().to_string(),
            domain: n.domain().to_string(),
        });
    }
    if n.output.is_empty() {
        defect!("the node has no outputs");
    }
    match registry::rule(n.op_type()) {
        Some(rule) => rule(n, s),
        None => Err(InferError::NoRule {
            op: n.op_type().to_string(),
            domain: n.domain().to_string(),
        }),
    }
}

/// Infer and return the graph's output shapes as inferred (not as declared).
pub fn output_shapes(model: &Model, shapes: &Shapes) -> Vec<(String, Option<Vec<Dim>>)> {
    model
        .graph()
        .output
        .iter()
        .map(|o| (o.name().to_string(), shapes.shape(o.name()).cloned()))
        .collect()
}

/// Sanity: attribute float getter used by callers that mirror shape rules.
pub fn attr_float(n: &NodeProto, name: &str) -> Option<f32> {
    attr_f(n, name)
}

#[cfg(test)]
mod hostile_tests {
    //! Regressions for panics found by tests/hostile.rs, tests/props.rs and fuzzing: each of these
    //! nodes used to panic (overflow, empty operand, missing output); now it is an error or a
    //! plain result.
    use super::helpers::known;
    use super::*;
    use crate::graph::{make_attr_i, make_attr_ints, make_node};

    fn s(entries: Vec<(&str, Option<Vec<i64>>, Option<Values>)>) -> Shapes {
        let mut s = Shapes::default();
        for (name, shape, value) in entries {
            let mut i = Info::of(Some(DataType::Int64 as i32), shape.map(|v| known(&v)));
            i.value = value;
            set_dims_value(&mut i);
            s.map.insert(name.to_string(), i);
        }
        s
    }

    #[test]
    fn hostile_nodes_are_errors_not_panics() {
        let big = 1_000_000_000_000i64;
        let cases: Vec<(NodeProto, Shapes, bool)> = vec![
            // Reshape whose target element count overflows i64
            (
                make_node("Reshape", "r", &["x", "t"], &["y"], vec![]),
                s(vec![
                    ("x", Some(vec![1, 85, 420]), None),
                    ("t", Some(vec![4]), Some(Values::I64(vec![1, 85, big, big]))),
                ]),
                false,
            ),
            // Range with an empty start
            (
                make_node("Range", "r", &["a", "b", "c"], &["y"], vec![]),
                s(vec![
                    ("a", Some(vec![0]), Some(Values::I64(vec![]))),
                    ("b", Some(vec![]), Some(Values::I64(vec![5]))),
                    ("c", Some(vec![]), Some(Values::I64(vec![1]))),
                ]),
                false,
            ),
            // Split / NonMaxSuppression / Reshape without outputs
            (
                make_node("Split", "r", &["x"], &[], vec![make_attr_i("axis", 1)]),
                s(vec![("x", Some(vec![1, 4]), None)]),
                false,
            ),
            (
                make_node("NonMaxSuppression", "r", &["x", "x"], &[], vec![]),
                s(vec![("x", Some(vec![1, 4]), None)]),
                false,
            ),
            // Concat without inputs, of scalars, with overflowing dims
            (
                make_node("Concat", "r", &[], &["y"], vec![make_attr_i("axis", 0)]),
                s(vec![]),
                false,
            ),
            (
                make_node("Concat", "r", &["x"], &["y"], vec![make_attr_i("axis", 0)]),
                s(vec![("x", Some(vec![]), None)]),
                false,
            ),
            (
                make_node(
                    "Concat",
                    "r",
                    &["x", "x"],
                    &["y"],
                    vec![make_attr_i("axis", 0)],
                ),
                s(vec![("x", Some(vec![i64::MAX]), None)]),
                false,
            ),
            // Conv with a rank-1 weight
            (
                make_node("Conv", "r", &["x", "w"], &["y"], vec![]),
                s(vec![
                    ("x", Some(vec![1, 3, 8, 8]), None),
                    ("w", Some(vec![3]), None),
                ]),
                false,
            ),
            // Tile / pools / Slice whose arithmetic overflows
            (
                make_node("Tile", "r", &["x", "t"], &["y"], vec![]),
                s(vec![
                    ("x", Some(vec![1 << 40]), None),
                    ("t", Some(vec![1]), Some(Values::I64(vec![1 << 40]))),
                ]),
                false,
            ),
            (
                make_node(
                    "MaxPool",
                    "r",
                    &["x"],
                    &["y"],
                    vec![make_attr_ints("kernel_shape", &[i64::MAX, i64::MAX])],
                ),
                s(vec![("x", Some(vec![1, 3, 8, 8]), None)]),
                false,
            ),
            (
                make_node(
                    "MaxPool",
                    "r",
                    &["x"],
                    &["y"],
                    vec![
                        make_attr_ints("kernel_shape", &[3, 3]),
                        make_attr_ints("pads", &[i64::MAX; 4]),
                    ],
                ),
                s(vec![("x", Some(vec![1, 3, 8, 8]), None)]),
                true,
            ),
            (
                make_node("Slice", "r", &["x", "a", "b", "c", "d"], &["y"], vec![]),
                s(vec![
                    ("x", Some(vec![5]), Some(Values::I64(vec![1, 2, 3, 4, 5]))),
                    ("a", Some(vec![1]), Some(Values::I64(vec![-1]))),
                    ("b", Some(vec![1]), Some(Values::I64(vec![i64::MIN]))),
                    ("c", Some(vec![1]), Some(Values::I64(vec![0]))),
                    ("d", Some(vec![1]), Some(Values::I64(vec![i64::MIN]))),
                ]),
                true,
            ),
            (
                make_node("Slice", "r", &["x", "a", "b", "c", "d"], &["y"], vec![]),
                s(vec![
                    ("x", Some(vec![0]), None),
                    ("a", Some(vec![1]), Some(Values::I64(vec![0]))),
                    ("b", Some(vec![1]), Some(Values::I64(vec![-1]))),
                    ("c", Some(vec![1]), Some(Values::I64(vec![0]))),
                    ("d", Some(vec![1]), Some(Values::I64(vec![-1]))),
                ]),
                true,
            ),
            // integer Div i64::MIN / -1, Neg of i64::MIN, Add with an empty operand: no value, no panic
            (
                make_node("Div", "r", &["a", "b"], &["y"], vec![]),
                s(vec![
                    ("a", Some(vec![1]), Some(Values::I64(vec![i64::MIN]))),
                    ("b", Some(vec![1]), Some(Values::I64(vec![-1]))),
                ]),
                true,
            ),
            (
                make_node("Neg", "r", &["a"], &["y"], vec![]),
                s(vec![(
                    "a",
                    Some(vec![1]),
                    Some(Values::I64(vec![i64::MIN])),
                )]),
                true,
            ),
            (
                make_node("Add", "r", &["a", "b"], &["y"], vec![]),
                s(vec![
                    ("a", Some(vec![]), Some(Values::I64(vec![]))),
                    ("b", Some(vec![]), Some(Values::I64(vec![0]))),
                ]),
                true,
            ),
        ];
        for (node, shapes, ok) in cases {
            let r = infer_node(&node, &shapes);
            assert_eq!(
                r.is_ok(),
                ok,
                "{} {:?}: {:?}",
                node.op_type(),
                node.input,
                r.err()
            );
        }
    }
}

#[cfg(test)]
mod value_tests {
    use super::*;
    use crate::graph::make_node;
    use crate::onnx::{GraphProto, ModelProto};
    use crate::tensor::tensor_f32;

    /// `x + w` (w is a weight: x is an input) and `-c` (foldable: c is a constant).
    fn model() -> Model {
        let g = GraphProto {
            input: vec![make_vi("x", DataType::Float as i32, &[Dim::Known(100)])],
            initializer: vec![
                tensor_f32("w", &[100], &[1.0; 100]),
                tensor_f32("c", &[100], &[2.0; 100]),
                tensor_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0]),
            ],
            node: vec![
                make_node("Add", "add_w", &["x", "w"], &["y"], vec![]),
                make_node("Neg", "neg_c", &["c"], &["z"], vec![]),
            ],
            output: vec![
                make_vi("y", DataType::Float as i32, &[Dim::Known(100)]),
                make_vi("z", DataType::Float as i32, &[Dim::Known(100)]),
            ],
            ..Default::default()
        };
        Model::from_proto(
            ModelProto {
                graph: Some(g),
                ..Default::default()
            },
            "t",
        )
    }

    #[test]
    fn shape_inference_does_not_decode_weights() {
        let s = infer(&model(), &HashMap::new()).unwrap();
        assert!(s.get("w").unwrap().value.is_none(), "a 100-float weight");
        assert!(s.get("c").unwrap().value.is_none());
        assert!(
            s.get("s").unwrap().value.is_some(),
            "small floats (Resize scales) stay"
        );
        assert_eq!(s.shape("z").unwrap(), &vec![Dim::Known(100)]);
    }

    #[test]
    fn folding_inference_decodes_only_foldable_weights() {
        let s = infer_with_values(&model(), &HashMap::new()).unwrap();
        assert!(s.get("w").unwrap().value.is_none(), "x + w cannot fold");
        assert_eq!(
            s.get("c").unwrap().value.as_ref().map(|v| v.len()),
            Some(100)
        );
        assert_eq!(
            s.get("z").unwrap().value.as_ref().map(|v| v.as_f64()[0]),
            Some(-2.0)
        );
    }
}

#[cfg(test)]
mod error_tests {
    //! The loop classifies an error by its [`InferError`] variant: a model defect, or a limit of
    //! inference (no rule, an unsupported case, a custom domain), with unchanged messages.
    use super::*;
    use crate::graph::{make_attr_ints, make_node};
    use crate::onnx::{GraphProto, ModelProto};
    use crate::tensor::tensor_f32;

    fn model(nodes: Vec<NodeProto>) -> Model {
        let g = GraphProto {
            input: vec![make_vi(
                "x",
                DataType::Float as i32,
                &[Dim::Known(1), Dim::Known(3), Dim::Known(8), Dim::Known(8)],
            )],
            initializer: vec![tensor_f32("w", &[3, 3, 3, 3], &[0.0; 81])],
            node: nodes,
            ..Default::default()
        };
        Model::from_proto(
            ModelProto {
                graph: Some(g),
                ..Default::default()
            },
            "t",
        )
    }

    #[test]
    fn each_error_has_its_variant_and_its_old_message() {
        let m = model(vec![]);
        let s = infer(&m, &HashMap::new()).unwrap();
        let mut custom = make_node("Foo", "c", &["x"], &["y"], vec![]);
        custom.domain = Some("com.example".into());
        let cases = [
            (
                make_node("If", "n", &["x"], &["y"], vec![]),
                "no shape rule for If",
                false,
            ),
            (custom, "op of domain `com.example` is not inferred", false),
            (
                make_node("ConvTranspose", "n", &["x", "w"], &["y"], vec![]),
                "ConvTranspose shape inference is not supported",
                false,
            ),
            (
                make_node("GatherND", "n", &["x", "w"], &["y"], vec![]),
                "GatherND shape inference is not supported",
                false,
            ),
            (
                make_node(
                    "Transpose",
                    "n",
                    &["x"],
                    &["y"],
                    vec![make_attr_ints("perm", &[0, 1])],
                ),
                "perm [0, 1] does not match rank 4",
                true,
            ),
            (
                make_node("Relu", "n", &["x"], &[], vec![]),
                "the node has no outputs",
                true,
            ),
        ];
        for (node, msg, defect) in cases {
            let e = infer_node(&node, &s).unwrap_err();
            assert_eq!(e.to_string(), msg);
            assert_eq!(e.is_defect(), defect, "{msg}");
        }
    }

    #[test]
    fn only_defects_with_known_inputs_are_defects() {
        let m = model(vec![
            make_node("If", "no_rule", &["x"], &["a"], vec![]),
            make_node("ConvTranspose", "deconv", &["x", "w"], &["b"], vec![]),
            make_node(
                "Transpose",
                "bad_perm",
                &["x"],
                &["c"],
                vec![make_attr_ints("perm", &[1, 0])],
            ),
            // its input is unknown (the output of the If): not the model's fault
            make_node(
                "Transpose",
                "after_if",
                &["a"],
                &["d"],
                vec![make_attr_ints("perm", &[1, 0])],
            ),
        ]);
        let s = infer(&m, &HashMap::new()).unwrap();
        assert_eq!(
            s.unknown,
            [
                "node `no_rule` (If): no shape rule for If",
                "node `deconv` (ConvTranspose): ConvTranspose shape inference is not supported",
                "node `bad_perm` (Transpose): perm [1, 0] does not match rank 4",
                "node `after_if` (Transpose): input 0 (`a`) is unknown",
            ]
        );
        assert_eq!(
            s.defects,
            ["node `bad_perm` (Transpose): perm [1, 0] does not match rank 4"]
        );
    }

    #[test]
    fn a_rule_naming_the_node_is_not_prefixed_twice() {
        let m = model(vec![make_node("MaxPool", "pool", &["x"], &["y"], vec![])]);
        let s = infer(&m, &HashMap::new()).unwrap();
        assert_eq!(
            s.defects,
            ["node `pool` (MaxPool): missing required attribute `kernel_shape` (ints)"]
        );
    }
}
