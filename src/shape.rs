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

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::graph::{attr_f, attr_i, attr_ints, constant_node_value, describe, topo_order};
use crate::model::Model;
use crate::onnx::{
    tensor_proto::DataType, type_proto, GraphProto, NodeProto, TensorShapeProto, ValueInfoProto,
};
use crate::tensor::dtype_name;
use crate::tensor::{numel, Values};

/// One dimension: a number or a symbol (e.g. `batch`, or `N` for data-dependent sizes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(untagged)]
pub enum Dim {
    Known(i64),
    Sym(String),
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            Dim::Sym(_) => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

/// Render a shape as `[1,3,640,640]`.
pub fn fmt_shape(s: &[Dim]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
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
    fn of(dtype: Option<i32>, shape: Option<Vec<Dim>>) -> Info {
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
const MAX_VALUE_ELEMS: usize = 1 << 20;

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
fn keeps_values(dtype: i32, dims: &[i64], float_limit: usize) -> bool {
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

/// Shape of a declared value_info (`None` when it carries no tensor shape).
pub fn vi_shape(v: &ValueInfoProto) -> Option<Vec<Dim>> {
    let tt = match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t,
        _ => return None,
    };
    let shape = tt.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .enumerate()
            .map(|(i, d)| match &d.value {
                Some(crate::onnx::tensor_shape_proto::dimension::Value::DimValue(x)) => {
                    Dim::Known(*x)
                }
                Some(crate::onnx::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                    Dim::Sym(p.clone())
                }
                None => Dim::Sym(format!("{}_dim{i}", v.name())),
            })
            .collect(),
    )
}

/// Element type of a declared value_info.
pub fn vi_dtype(v: &ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t.elem_type,
        _ => None,
    }
}

/// Set the tensor shape of a value_info (keeps everything else).
pub fn set_vi_shape(v: &mut ValueInfoProto, shape: &[Dim]) {
    use crate::onnx::tensor_shape_proto::{dimension::Value as DV, Dimension};
    let t = v.r#type.get_or_insert_with(Default::default);
    if !matches!(t.value, Some(type_proto::Value::TensorType(_))) {
        t.value = Some(type_proto::Value::TensorType(Default::default()));
    }
    if let Some(type_proto::Value::TensorType(tt)) = &mut t.value {
        let old = tt.shape.take().unwrap_or_default();
        let dims = shape
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut nd: Dimension = old.dim.get(i).cloned().unwrap_or_default();
                nd.value = Some(match d {
                    Dim::Known(x) => DV::DimValue(*x),
                    Dim::Sym(s) => DV::DimParam(s.clone()),
                });
                nd
            })
            .collect();
        tt.shape = Some(TensorShapeProto { dim: dims });
    }
}

/// A value_info with dtype and shape.
pub fn make_vi(name: &str, dtype: i32, shape: &[Dim]) -> ValueInfoProto {
    let mut v = ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(crate::onnx::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype),
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    set_vi_shape(&mut v, shape);
    v
}

/// Infer shapes for the whole graph. `input_override` replaces declared input shapes (for
/// re-specialization). Declared value_info is not trusted (it may be stale); graph inputs and
/// initializers are the ground truth.
pub fn infer(model: &Model, input_override: &HashMap<String, Vec<Dim>>) -> Result<Shapes> {
    infer_limited(model, input_override, SHAPE_FLOAT_VALUES)
}

/// Refuse a graph that cannot be a valid model, first half: every tensor read is defined, and
/// there is no cycle. Callers recognize the head next (its messages are the more specific ones),
/// then call [`validate_nodes`].
pub fn validate_structure(model: &Model) -> Result<()> {
    crate::graph::check_references(model.graph())?;
    topo_order(model.graph()).map(|_| ())
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
                let e = e.to_string();
                // some rules already name the node
                let msg = if e.starts_with(&d) {
                    e.clone()
                } else {
                    format!("{d}: {e}")
                };
                let standard = matches!(n.domain(), "" | "ai.onnx");
                let rule = !(e.starts_with("no shape rule") || e.contains("is not supported"));
                let inputs_known = n.input.iter().all(|i| i.is_empty() || s.shape(i).is_some());
                if standard && rule && inputs_known {
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

fn set_dims_value(info: &mut Info) {
    if let (Some(v), Some(shape)) = (&info.value, &info.shape) {
        if shape.len() <= 1 && !v.is_float() && v.len() <= 16 {
            info.dims_value = Some(v.as_i64().into_iter().map(Dim::Known).collect());
        }
    }
}

fn with_value(dtype: Option<i32>, shape: Vec<Dim>, value: Values) -> Info {
    let mut i = Info {
        dtype,
        shape: Some(shape),
        value: Some(value),
        dims_value: None,
    };
    set_dims_value(&mut i);
    i
}

fn known(shape: &[i64]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::Known(d)).collect()
}

/// Broadcast two shapes (numpy rules).
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>> {
    let r = a.len().max(b.len());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = if i + a.len() >= r {
            &a[i + a.len() - r]
        } else {
            &Dim::Known(1)
        };
        let db = if i + b.len() >= r {
            &b[i + b.len() - r]
        } else {
            &Dim::Known(1)
        };
        out.push(match (da, db) {
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
            (x, y) if x == y => x.clone(),
            (Dim::Known(_), Dim::Known(_)) => {
                bail!("cannot broadcast {} with {}", fmt_shape(a), fmt_shape(b))
            }
            (Dim::Sym(_), Dim::Known(y)) => Dim::Known(*y),
            (Dim::Known(x), Dim::Sym(_)) => Dim::Known(*x),
            (x, _) => x.clone(),
        });
    }
    Ok(out)
}

/// Product of dims: `Ok(None)` when one is symbolic, an error when it overflows i64 (hostile
/// dims such as 1e12 x 1e12 must be an error, not a panic).
fn known_product<'a>(dims: impl Iterator<Item = &'a Dim> + Clone) -> Result<Option<i64>> {
    if dims.clone().any(|d| d.known().is_none()) {
        return Ok(None);
    }
    let mut p: i64 = 1;
    for d in dims {
        let v = d.known().unwrap_or(1);
        p = p
            .checked_mul(v)
            .ok_or_else(|| anyhow::anyhow!("element count overflows (a dim of {v})"))?;
    }
    Ok(Some(p))
}

fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    // rank 0 has no axis at all (indexing dim 0 of a scalar's shape would panic)
    if a < 0 || a >= r {
        bail!("axis {axis} out of range for rank {rank}");
    }
    Ok(a as usize)
}

fn input<'a>(n: &NodeProto, s: &'a Shapes, i: usize) -> Option<&'a Info> {
    n.input
        .get(i)
        .filter(|x| !x.is_empty())
        .and_then(|x| s.map.get(x))
}

fn req<'a>(n: &NodeProto, s: &'a Shapes, i: usize) -> Result<&'a Info> {
    match input(n, s, i) {
        Some(x) => Ok(x),
        None => bail!(
            "input {i} (`{}`) is unknown",
            n.input.get(i).map(String::as_str).unwrap_or("")
        ),
    }
}

fn req_shape<'a>(n: &NodeProto, s: &'a Shapes, i: usize) -> Result<&'a Vec<Dim>> {
    match &req(n, s, i)?.shape {
        Some(x) => Ok(x),
        None => bail!("shape of input {i} (`{}`) is unknown", n.input[i]),
    }
}

/// Int values of input `i` (from `value` or a fully known `dims_value`).
fn int_values(n: &NodeProto, s: &Shapes, i: usize) -> Option<Vec<i64>> {
    let info = input(n, s, i)?;
    if let Some(v) = &info.value {
        return Some(v.as_i64());
    }
    info.dims_value.as_ref()?.iter().map(Dim::known).collect()
}

/// Possibly-symbolic int vector of input `i`.
fn dims_values(n: &NodeProto, s: &Shapes, i: usize) -> Option<Vec<Dim>> {
    let info = input(n, s, i)?;
    if let Some(d) = &info.dims_value {
        return Some(d.clone());
    }
    info.value
        .as_ref()
        .filter(|v| !v.is_float())
        .map(|v| v.as_i64().into_iter().map(Dim::Known).collect())
}

fn elementwise_values(op: &str, vals: &[&Values]) -> Option<Values> {
    let float = vals.iter().any(|v| v.is_float());
    if vals.iter().any(|v| v.is_empty())
        || vals
            .iter()
            .any(|v| v.len() != vals[0].len() && v.len() != 1)
    {
        return None;
    }
    let n = vals.iter().map(|v| v.len()).max()?;
    if float {
        let f: Vec<Vec<f64>> = vals.iter().map(|v| v.as_f64()).collect();
        let at = |k: usize, i: usize| if f[k].len() == 1 { f[k][0] } else { f[k][i] };
        let out: Vec<f64> = (0..n)
            .map(|i| match op {
                "Add" => at(0, i) + at(1, i),
                "Sub" => at(0, i) - at(1, i),
                "Mul" => at(0, i) * at(1, i),
                "Div" => at(0, i) / at(1, i),
                _ => f64::NAN,
            })
            .collect();
        if out.iter().any(|x| x.is_nan()) {
            return None;
        }
        Some(match vals[0] {
            Values::F64(_) => Values::F64(out),
            _ => Values::F32(out.into_iter().map(|x| x as f32).collect()),
        })
    } else {
        let iv: Vec<Vec<i64>> = vals.iter().map(|v| v.as_i64()).collect();
        let at = |k: usize, i: usize| if iv[k].len() == 1 { iv[k][0] } else { iv[k][i] };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b) = (at(0, i), at(1, i));
            out.push(match op {
                "Add" => a.checked_add(b)?,
                "Sub" => a.checked_sub(b)?,
                "Mul" => a.checked_mul(b)?,
                "Div" => {
                    if b == 0 {
                        return None;
                    }
                    a.checked_div_euclid(b)? // ONNX integer Div truncates; shapes are non-negative here
                }
                "Equal" => (a == b) as i64,
                _ => return None,
            });
        }
        Some(match (op, vals[0]) {
            ("Equal", _) => Values::Bool(out.into_iter().map(|x| x != 0).collect()),
            (_, Values::I32(_)) => Values::I32(out.into_iter().map(|x| x as i32).collect()),
            _ => Values::I64(out),
        })
    }
}

fn pool_out(inp: i64, k: i64, stride: i64, pad: i64, dil: i64, ceil: bool) -> i64 {
    // i128: hostile attributes (i64::MAX kernels, pads, dilations) must not overflow
    let (inp, k, stride, pad, dil) = (
        inp as i128,
        k as i128,
        stride as i128,
        pad as i128,
        dil as i128,
    );
    let eff = dil * (k - 1) + 1;
    let num = inp + pad - eff;
    if num < 0 {
        return 0;
    }
    let o = if ceil {
        let o = (num + stride - 1) / stride + 1;
        // last window must start inside the (left-padded) input
        if (o - 1) * stride >= inp + pad / 2 {
            o - 1
        } else {
            o
        }
    } else {
        num / stride + 1
    };
    i64::try_from(o).unwrap_or(i64::MAX)
}

fn spatial_out(n: &NodeProto, x: &[Dim], kernel: &[i64]) -> Result<Vec<Dim>> {
    let sp = kernel.len();
    if x.len() != sp + 2 {
        bail!("expected a rank-{} input, found {}", sp + 2, fmt_shape(x));
    }
    let strides = attr_ints(n, "strides")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; sp]);
    let dil = attr_ints(n, "dilations")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; sp]);
    let pads = attr_ints(n, "pads")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; 2 * sp]);
    let auto = crate::graph::attr_s(n, "auto_pad").unwrap_or_default();
    let ceil = attr_i(n, "ceil_mode").unwrap_or(0) != 0;
    if strides.len() != sp || dil.len() != sp || pads.len() != 2 * sp {
        bail!("strides/dilations/pads do not match kernel rank {sp}");
    }
    let mut out = x[..2].to_vec();
    for i in 0..sp {
        let d = match &x[i + 2] {
            Dim::Known(v) => *v,
            Dim::Sym(sy) => {
                out.push(Dim::Sym(format!("{sy}'")));
                continue;
            }
        };
        if strides[i] <= 0 || dil[i] <= 0 || kernel[i] <= 0 {
            bail!("non-positive kernel/stride/dilation");
        }
        let (d128, s128, k128, dl128) = (
            d as i128,
            strides[i] as i128,
            kernel[i] as i128,
            dil[i] as i128,
        );
        let o = match auto.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                i64::try_from((d128 + s128 - 1) / s128).unwrap_or(i64::MAX)
            }
            "VALID" => {
                i64::try_from((d128 - dl128 * (k128 - 1) - 1) / s128 + 1).unwrap_or(i64::MIN)
            }
            _ => pool_out(
                d,
                kernel[i],
                strides[i],
                pads[i].saturating_add(pads[i + sp]),
                dil[i],
                ceil,
            ),
        };
        if o <= 0 {
            bail!("kernel {:?} does not fit input {}", kernel, fmt_shape(x));
        }
        out.push(Dim::Known(o));
    }
    Ok(out)
}

/// Infer the outputs of one node from what is known about its inputs.
pub fn infer_node(n: &NodeProto, s: &Shapes) -> Result<Vec<Info>> {
    if !(n.domain().is_empty() || n.domain() == "ai.onnx") {
        bail!("op of domain `{}` is not inferred", n.domain());
    }
    if n.output.is_empty() {
        bail!("the node has no outputs");
    }
    let op = n.op_type();
    let dt0 = input(n, s, 0).and_then(|i| i.dtype);
    let f32t = Some(DataType::Float as i32);
    let i64t = Some(DataType::Int64 as i32);
    let booll = Some(DataType::Bool as i32);
    Ok(match op {
        "Constant" => {
            let Some(t) = constant_node_value(n) else {
                bail!("Constant without a value")
            };
            let mut info = Info::of(t.data_type, Some(known(&t.dims)));
            if keeps_values(t.data_type(), &t.dims, s.float_value_limit) {
                info.value = crate::tensor::values(&t).ok();
            }
            set_dims_value(&mut info);
            vec![info]
        }
        "Relu"
        | "Sigmoid"
        | "Exp"
        | "Clip"
        | "Neg"
        | "Sqrt"
        | "Softmax"
        | "Identity"
        | "Tanh"
        | "LeakyRelu"
        | "HardSigmoid"
        | "HardSwish"
        | "Log"
        | "Abs"
        | "Floor"
        | "Ceil"
        | "Erf"
        | "Reciprocal"
        | "Dropout"
        | "Not"
        | "Round"
        | "Sign"
        | "LogSoftmax"
        | "Elu"
        | "Selu"
        | "Softplus"
        | "Mish"
        | "Gelu"
        | "PRelu"
        | "BatchNormalization"
        | "InstanceNormalization"
        | "LpNormalization"
        | "QuantizeLinear"
        | "DequantizeLinear" => {
            let x = req(n, s, 0)?;
            let mut info = Info::of(dt0, x.shape.clone());
            if op == "QuantizeLinear" {
                info.dtype = input(n, s, 2)
                    .and_then(|z| z.dtype)
                    .or(Some(DataType::Uint8 as i32));
            } else if op == "DequantizeLinear" {
                info.dtype = f32t;
            }
            if op == "Identity" {
                info.value = x.value.clone();
                info.dims_value = x.dims_value.clone();
            }
            if op == "Neg" {
                if let Some(v) = &x.value {
                    info.value = match v {
                        Values::F32(a) => Some(Values::F32(a.iter().map(|e| -e).collect())),
                        Values::I64(a) => {
                            Some(Values::I64(a.iter().map(|e| e.wrapping_neg()).collect()))
                        }
                        _ => None,
                    };
                }
            }
            let mut outs = vec![info];
            if op == "Dropout" && n.output.len() > 1 {
                outs.push(Info::of(booll, x.shape.clone()));
            }
            outs
        }
        "Cast" => {
            let x = req(n, s, 0)?;
            let to = attr_i(n, "to").map(|v| v as i32);
            let mut info = Info::of(to, x.shape.clone());
            if let Some(v) = &x.value {
                info.value = match DataType::try_from(to.unwrap_or(0)) {
                    Ok(DataType::Float) => Some(Values::F32(
                        v.as_f64().into_iter().map(|e| e as f32).collect(),
                    )),
                    Ok(DataType::Double) => Some(Values::F64(v.as_f64())),
                    Ok(DataType::Int64) => Some(Values::I64(v.as_i64())),
                    Ok(DataType::Int32) => Some(Values::I32(
                        v.as_i64().into_iter().map(|e| e as i32).collect(),
                    )),
                    Ok(DataType::Bool) => Some(Values::Bool(
                        v.as_f64().into_iter().map(|e| e != 0.0).collect(),
                    )),
                    _ => None,
                };
            }
            if matches!(
                DataType::try_from(to.unwrap_or(0)),
                Ok(DataType::Int64) | Ok(DataType::Int32)
            ) {
                info.dims_value = x.dims_value.clone();
            }
            set_dims_value(&mut info);
            vec![info]
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Greater" | "Less" | "And" | "Or"
        | "GreaterOrEqual" | "LessOrEqual" | "Mod" | "Max" | "Min" | "Sum" | "Where" | "Xor"
        | "BitShift" => {
            let mut shape = req_shape(n, s, 0)?.clone();
            for i in 1..n.input.len() {
                shape = broadcast(&shape, req_shape(n, s, i)?)?;
            }
            let dtype = match op {
                "Equal" | "Greater" | "Less" | "And" | "Or" | "GreaterOrEqual" | "LessOrEqual"
                | "Xor" => booll,
                "Where" => input(n, s, 1).and_then(|i| i.dtype),
                _ => dt0,
            };
            let mut info = Info::of(dtype, Some(shape.clone()));
            let vals: Option<Vec<&Values>> = (0..n.input.len())
                .map(|i| input(n, s, i).and_then(|x| x.value.as_ref()))
                .collect();
            if let Some(vals) = vals {
                if op == "Where" && vals.len() == 3 {
                    let c = vals[0].as_i64();
                    let len = c.len().max(vals[1].len()).max(vals[2].len());
                    let pick = |v: &Values, i: usize| -> f64 {
                        let f = v.as_f64();
                        if f.len() == 1 {
                            f[0]
                        } else {
                            f[i]
                        }
                    };
                    if vals.iter().all(|v| v.len() == len || v.len() == 1) {
                        let out: Vec<f64> = (0..len)
                            .map(|i| {
                                if (if c.len() == 1 { c[0] } else { c[i] }) != 0 {
                                    pick(vals[1], i)
                                } else {
                                    pick(vals[2], i)
                                }
                            })
                            .collect();
                        info.value = Some(match vals[1] {
                            Values::F32(_) => {
                                Values::F32(out.into_iter().map(|e| e as f32).collect())
                            }
                            _ => Values::I64(out.into_iter().map(|e| e as i64).collect()),
                        });
                    }
                } else if vals.len() == 2 {
                    info.value = elementwise_values(op, &vals);
                }
                if info
                    .value
                    .as_ref()
                    .map(|v| {
                        Some(v.len())
                            != numel(&shape.iter().filter_map(Dim::known).collect::<Vec<_>>())
                    })
                    .unwrap_or(false)
                {
                    info.value = None;
                }
            } else if op == "Equal" {
                // symbolic: Equal(shape vector, negative constants) — a dim is never negative, so
                // a symbolic dim compares false (torch's expand lowering: Where(Equal(shape, -1),
                // ones, shape) in YOLOX `--dynamic --decode_in_inference` exports)
                if let (Some(a), Some(c)) = (dims_values(n, s, 0), int_values(n, s, 1)) {
                    let out: Option<Vec<bool>> = (c.len() == a.len() || c.len() == 1)
                        .then(|| {
                            a.iter()
                                .enumerate()
                                .map(|(i, d)| {
                                    let k = if c.len() == 1 { c[0] } else { c[i] };
                                    match d.known() {
                                        Some(v) => Some(v == k),
                                        None => (k < 0).then_some(false),
                                    }
                                })
                                .collect()
                        })
                        .flatten();
                    if let Some(out) = out.filter(|o| shape.len() == 1 && o.len() == a.len()) {
                        info.value = Some(Values::Bool(out));
                    }
                }
            } else if op == "Where" {
                // symbolic: Where(cond_const, a, b) over shape vectors
                if let (Some(c), Some(a), Some(b)) = (
                    int_values(n, s, 0),
                    dims_values(n, s, 1),
                    dims_values(n, s, 2),
                ) {
                    if c.len() == a.len() && a.len() == b.len() {
                        info.dims_value = Some(
                            (0..c.len())
                                .map(|i| {
                                    if c[i] != 0 {
                                        a[i].clone()
                                    } else {
                                        b[i].clone()
                                    }
                                })
                                .collect(),
                        );
                    }
                }
            }
            set_dims_value(&mut info);
            vec![info]
        }
        "Conv" | "ConvTranspose" => {
            let x = req_shape(n, s, 0)?;
            let w = req_shape(n, s, 1)?;
            if w.len() < 3 {
                bail!(
                    "weight `{}` has shape {}, expected [M, C/group, k...]",
                    n.input[1],
                    fmt_shape(w)
                );
            }
            let kernel: Vec<i64> = match attr_ints(n, "kernel_shape") {
                Some(k) => k.to_vec(),
                None => w[2..].iter().map(|d| d.known().unwrap_or(1)).collect(),
            };
            if op == "ConvTranspose" {
                bail!("ConvTranspose shape inference is not supported");
            }
            let mut out = spatial_out(n, x, &kernel)?;
            out[1] = w[0].clone();
            vec![Info::of(dt0, Some(out))]
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            let x = req_shape(n, s, 0)?;
            let kernel = crate::graph::req_ints(n, "kernel_shape")?;
            let out = spatial_out(n, x, kernel)?;
            let mut v = vec![Info::of(dt0, Some(out.clone()))];
            if n.output.len() > 1 {
                v.push(Info::of(i64t, Some(out)));
            }
            v
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let x = req_shape(n, s, 0)?;
            let mut out = x[..2.min(x.len())].to_vec();
            out.extend(std::iter::repeat_n(
                Dim::Known(1),
                x.len().saturating_sub(2),
            ));
            vec![Info::of(dt0, Some(out))]
        }
        "Resize" | "Upsample" => {
            let x = req_shape(n, s, 0)?;
            let sizes = if op == "Resize" {
                n.input
                    .get(3)
                    .filter(|x| !x.is_empty())
                    .and_then(|_| dims_values(n, s, 3))
            } else {
                None
            };
            let scales_idx = if op == "Resize" {
                if n.input.len() == 2 {
                    1
                } else {
                    2
                }
            } else {
                1
            };
            let out = if let Some(sz) = sizes {
                if sz.len() != x.len() {
                    bail!(
                        "sizes {} do not match input rank {}",
                        fmt_shape(&sz),
                        x.len()
                    );
                }
                sz
            } else if let Some(sc) = input(n, s, scales_idx)
                .and_then(|i| i.value.as_ref())
                .map(|v| v.as_f64())
                .filter(|v| !v.is_empty())
            {
                if sc.len() != x.len() {
                    bail!("scales {:?} do not match input rank {}", sc, x.len());
                }
                x.iter()
                    .zip(&sc)
                    .map(|(d, &f)| match d {
                        Dim::Known(v) => Dim::Known(((*v as f64) * f).floor() as i64),
                        Dim::Sym(sy) if f == 1.0 => Dim::Sym(sy.clone()),
                        Dim::Sym(sy) => Dim::Sym(format!("{sy}*{f}")),
                    })
                    .collect()
            } else {
                bail!("Resize needs constant scales or sizes");
            };
            vec![Info::of(dt0, Some(out))]
        }
        "Concat" => {
            let axis = attr_i(n, "axis").unwrap_or(0);
            let shapes: Vec<&Vec<Dim>> = (0..n.input.len())
                .map(|i| req_shape(n, s, i))
                .collect::<Result<_>>()?;
            let Some(first) = shapes.first() else {
                bail!("Concat without inputs")
            };
            let r = first.len();
            let a = norm_axis(axis, r)?;
            let mut out = shapes[0].clone();
            let mut total: Option<i64> = Some(0);
            for sh in &shapes {
                if sh.len() != r {
                    bail!("inputs of different ranks");
                }
                total =
                    match (total, sh[a].known()) {
                        (Some(t), Some(v)) => Some(t.checked_add(v).ok_or_else(|| {
                            anyhow::anyhow!("concatenated dim {t} + {v} overflows")
                        })?),
                        _ => None,
                    };
                for (k, d) in sh.iter().enumerate() {
                    if k != a && matches!(out[k], Dim::Sym(_)) && d.known().is_some() {
                        out[k] = d.clone();
                    }
                }
            }
            out[a] = total
                .map(Dim::Known)
                .unwrap_or_else(|| Dim::Sym(format!("{}_concat", n.output[0])));
            let mut info = Info::of(dt0, Some(out));
            if r == 1 {
                let parts: Option<Vec<Vec<Dim>>> =
                    (0..n.input.len()).map(|i| dims_values(n, s, i)).collect();
                if let Some(p) = parts {
                    info.dims_value = Some(p.concat());
                    if let Some(all) = info
                        .dims_value
                        .as_ref()
                        .unwrap()
                        .iter()
                        .map(Dim::known)
                        .collect::<Option<Vec<i64>>>()
                    {
                        info.value = Some(Values::I64(all));
                    }
                } else {
                    let vals: Option<Vec<Vec<f64>>> = (0..n.input.len())
                        .map(|i| {
                            input(n, s, i)
                                .and_then(|x| x.value.as_ref())
                                .map(|v| v.as_f64())
                        })
                        .collect();
                    if let (Some(v), Some(Values::F32(_))) =
                        (vals, input(n, s, 0).and_then(|x| x.value.as_ref()))
                    {
                        info.value = Some(Values::F32(
                            v.concat().into_iter().map(|e| e as f32).collect(),
                        ));
                    }
                }
            }
            vec![info]
        }
        "Reshape" => {
            let x = req(n, s, 0)?;
            if let Some(dt) = input(n, s, 1).and_then(|i| i.dtype) {
                if dt != DataType::Int64 as i32 {
                    bail!(
                        "shape input `{}` is {}, expected {}",
                        n.input[1],
                        dtype_name(dt),
                        dtype_name(DataType::Int64 as i32)
                    );
                }
            }
            let Some(target) = dims_values(n, s, 1) else {
                bail!("Reshape target shape is not a constant")
            };
            let allowzero = attr_i(n, "allowzero").unwrap_or(0) != 0;
            let xs = x.shape.as_ref();
            let mut out: Vec<Dim> = Vec::with_capacity(target.len());
            let mut infer_at = None;
            for (i, d) in target.iter().enumerate() {
                match d {
                    Dim::Known(0) if !allowzero => match xs.and_then(|s| s.get(i)) {
                        Some(v) => out.push(v.clone()),
                        None => bail!("Reshape copies dim {i} from an input of unknown shape"),
                    },
                    Dim::Known(-1) => {
                        infer_at = Some(i);
                        out.push(Dim::Known(-1));
                    }
                    other => out.push(other.clone()),
                }
            }
            if let Some(k) = infer_at {
                let total: Option<i64> = match xs {
                    Some(s) => known_product(s.iter())?,
                    None => None,
                };
                let rest: Option<i64> = known_product(
                    out.iter()
                        .enumerate()
                        .filter(|(i, _)| *i != k)
                        .map(|(_, d)| d),
                )?;
                out[k] = match (total, rest) {
                    (Some(t), Some(r)) if r > 0 && t % r == 0 => Dim::Known(t / r),
                    (Some(_), Some(r)) => bail!(
                        "cannot reshape {} to {} (element count not divisible by {r})",
                        fmt_shape(xs.unwrap()),
                        fmt_shape(&target)
                    ),
                    _ => {
                        // symbolic: if the other dims match the input's except one symbol, carry it
                        let sym = xs.and_then(|s| {
                            s.iter().find_map(|d| {
                                if let Dim::Sym(x) = d {
                                    Some(x.clone())
                                } else {
                                    None
                                }
                            })
                        });
                        match (sym, xs) {
                            (Some(sy), Some(sv)) => {
                                let known_in: Option<i64> =
                                    known_product(sv.iter().filter(|d| d.known().is_some()))?;
                                let known_out: i64 = known_product(
                                    out.iter()
                                        .enumerate()
                                        .filter(|(i, d)| *i != k && d.known().is_some())
                                        .map(|(_, d)| d),
                                )?
                                .unwrap_or(1);
                                let syms_out = out
                                    .iter()
                                    .enumerate()
                                    .filter(|(i, d)| *i != k && matches!(d, Dim::Sym(_)))
                                    .count();
                                match known_in {
                                    Some(ki)
                                        if syms_out == 1
                                            && known_out > 0
                                            && ki % known_out == 0 =>
                                    {
                                        Dim::Known(ki / known_out)
                                    }
                                    Some(ki)
                                        if syms_out == 0
                                            && known_out > 0
                                            && ki % known_out == 0
                                            && ki / known_out == 1 =>
                                    {
                                        Dim::Sym(sy)
                                    }
                                    _ => Dim::Sym(format!("{}_d{k}", n.output[0])),
                                }
                            }
                            _ => Dim::Sym(format!("{}_d{k}", n.output[0])),
                        }
                    }
                };
            } else if let (Some(tin), Some(tout)) = (
                match xs {
                    Some(s) => known_product(s.iter())?,
                    None => None,
                },
                known_product(out.iter())?,
            ) {
                if tin != tout {
                    bail!(
                        "cannot reshape {} ({tin} elements) to {} ({tout} elements)",
                        fmt_shape(xs.unwrap()),
                        fmt_shape(&out)
                    );
                }
            }
            let mut info = Info::of(x.dtype, Some(out.clone()));
            if let Some(v) = &x.value {
                info.value = Some(v.clone());
            }
            if out.len() <= 1 {
                info.dims_value = x.dims_value.clone();
            }
            set_dims_value(&mut info);
            vec![info]
        }
        "Flatten" => {
            let x = req_shape(n, s, 0)?;
            let a = attr_i(n, "axis").unwrap_or(1);
            let a = if a < 0 { a + x.len() as i64 } else { a } as usize;
            let prod = |ds: &[Dim]| -> Result<Dim> {
                Ok(known_product(ds.iter())?
                    .map(Dim::Known)
                    .unwrap_or_else(|| Dim::Sym(format!("{}_flat", n.output[0]))))
            };
            vec![Info::of(
                dt0,
                Some(vec![
                    prod(&x[..a.min(x.len())])?,
                    prod(&x[a.min(x.len())..])?,
                ]),
            )]
        }
        "Transpose" => {
            let x = req(n, s, 0)?;
            let xs = x
                .shape
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
            let perm: Vec<i64> = attr_ints(n, "perm")
                .map(<[i64]>::to_vec)
                .unwrap_or_else(|| (0..xs.len() as i64).rev().collect());
            if perm.len() != xs.len() {
                bail!("perm {:?} does not match rank {}", perm, xs.len());
            }
            let out: Vec<Dim> = perm
                .iter()
                .map(|&p| {
                    xs.get(p as usize)
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("perm {p} out of range"))
                })
                .collect::<Result<_>>()?;
            vec![Info::of(dt0, Some(out))]
        }
        "Shape" => {
            let xs = req_shape(n, s, 0)?;
            let r = xs.len() as i64;
            let clampi = |v: i64| -> usize { (if v < 0 { v + r } else { v }).clamp(0, r) as usize };
            let start = clampi(attr_i(n, "start").unwrap_or(0));
            let end = clampi(attr_i(n, "end").unwrap_or(r));
            let dims = if start < end {
                xs[start..end].to_vec()
            } else {
                vec![]
            };
            let mut info = Info::of(i64t, Some(vec![Dim::Known(dims.len() as i64)]));
            if let Some(all) = dims.iter().map(Dim::known).collect::<Option<Vec<i64>>>() {
                info.value = Some(Values::I64(all));
            }
            info.dims_value = Some(dims);
            vec![info]
        }
        "Gather" => {
            let x = req(n, s, 0)?;
            let xs = x
                .shape
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("unknown data shape"))?;
            let idx = req(n, s, 1)?;
            let is = idx
                .shape
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("unknown indices shape"))?;
            let a = norm_axis(attr_i(n, "axis").unwrap_or(0), xs.len())?;
            let mut out = xs[..a].to_vec();
            out.extend(is.iter().cloned());
            out.extend(xs[a + 1..].iter().cloned());
            let mut info = Info::of(x.dtype, Some(out));
            if xs.len() == 1 {
                if let (Some(dv), Some(iv)) = (dims_values(n, s, 0), int_values(n, s, 1)) {
                    let len = dv.len() as i64;
                    let picked: Option<Vec<Dim>> = iv
                        .iter()
                        .map(|&i| {
                            let j = if i < 0 { i + len } else { i };
                            dv.get(j as usize).cloned()
                        })
                        .collect();
                    if let Some(p) = picked {
                        if let Some(all) = p.iter().map(Dim::known).collect::<Option<Vec<i64>>>() {
                            info.value = Some(Values::I64(all));
                        }
                        info.dims_value = Some(p);
                    }
                } else if let (Some(Values::F32(fv)), Some(iv)) =
                    (x.value.as_ref(), int_values(n, s, 1))
                {
                    let len = fv.len() as i64;
                    info.value = iv
                        .iter()
                        .map(|&i| {
                            let j = if i < 0 { i + len } else { i };
                            fv.get(j as usize).copied()
                        })
                        .collect::<Option<Vec<f32>>>()
                        .map(Values::F32);
                }
            }
            vec![info]
        }
        "Unsqueeze" | "Squeeze" => {
            let x = req(n, s, 0)?;
            let xs = x
                .shape
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
            let axes: Option<Vec<i64>> = attr_ints(n, "axes")
                .map(<[i64]>::to_vec)
                .or_else(|| int_values(n, s, 1));
            let out = if op == "Unsqueeze" {
                let Some(axes) = axes else {
                    bail!("Unsqueeze axes are not constant")
                };
                let r = xs.len() + axes.len();
                let mut ax: Vec<usize> = axes
                    .iter()
                    .map(|&a| norm_axis(a, r))
                    .collect::<Result<_>>()?;
                ax.sort_unstable();
                let mut out = Vec::with_capacity(r);
                let mut it = xs.iter();
                for i in 0..r {
                    if ax.contains(&i) {
                        out.push(Dim::Known(1));
                    } else {
                        out.push(
                            it.next()
                                .cloned()
                                .ok_or_else(|| anyhow::anyhow!("bad axes"))?,
                        );
                    }
                }
                out
            } else {
                match axes {
                    Some(axes) => {
                        let ax: Vec<usize> = axes
                            .iter()
                            .map(|&a| norm_axis(a, xs.len()))
                            .collect::<Result<_>>()?;
                        xs.iter()
                            .enumerate()
                            .filter(|(i, _)| !ax.contains(i))
                            .map(|(_, d)| d.clone())
                            .collect()
                    }
                    None => xs
                        .iter()
                        .filter(|d| **d != Dim::Known(1))
                        .cloned()
                        .collect(),
                }
            };
            let mut info = Info::of(x.dtype, Some(out.clone()));
            info.value = x.value.clone();
            if out.len() <= 1 {
                info.dims_value = x.dims_value.clone();
            }
            set_dims_value(&mut info);
            vec![info]
        }
        "Slice" => {
            let x = req(n, s, 0)?;
            let xs = x
                .shape
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
            let (starts, ends, axes, steps) = if n.input.len() >= 3 {
                let st = int_values(n, s, 1)
                    .ok_or_else(|| anyhow::anyhow!("Slice starts are not constant"))?;
                let en = int_values(n, s, 2)
                    .ok_or_else(|| anyhow::anyhow!("Slice ends are not constant"))?;
                let ax = if n.input.len() > 3 && !n.input[3].is_empty() {
                    int_values(n, s, 3)
                        .ok_or_else(|| anyhow::anyhow!("Slice axes are not constant"))?
                } else {
                    (0..st.len() as i64).collect()
                };
                let sp = if n.input.len() > 4 && !n.input[4].is_empty() {
                    int_values(n, s, 4)
                        .ok_or_else(|| anyhow::anyhow!("Slice steps are not constant"))?
                } else {
                    vec![1; st.len()]
                };
                (st, en, ax, sp)
            } else {
                let st = crate::graph::req_ints(n, "starts")?.to_vec();
                let en = crate::graph::req_ints(n, "ends")?.to_vec();
                let ax = attr_ints(n, "axes")
                    .map(<[i64]>::to_vec)
                    .unwrap_or_else(|| (0..st.len() as i64).collect());
                let sp = vec![1; st.len()];
                (st, en, ax, sp)
            };
            if starts.len() != ends.len()
                || axes.len() != starts.len()
                || steps.len() != starts.len()
            {
                bail!("starts/ends/axes/steps lengths differ");
            }
            let mut out = xs.clone();
            let mut ranges: Vec<(usize, i64, i64, i64)> = Vec::new();
            for k in 0..starts.len() {
                let a = norm_axis(axes[k], xs.len())?;
                let step = steps[k];
                if step == 0 {
                    bail!("Slice step 0");
                }
                match &xs[a] {
                    Dim::Known(d) => {
                        if *d < 0 {
                            bail!("input dim {d} is negative");
                        }
                        // i128: hostile starts/ends/steps (i64::MIN, i64::MAX) must not overflow
                        let (d, step) = (*d as i128, step as i128);
                        let (mut st, mut en) = (starts[k] as i128, ends[k] as i128);
                        if st < 0 {
                            st += d;
                        }
                        if en < 0 {
                            en += d;
                        }
                        let (st, en) = if d == 0 {
                            (0, 0)
                        } else if step > 0 {
                            (st.clamp(0, d), en.clamp(0, d))
                        } else {
                            (st.clamp(0, d - 1), en.clamp(-1, d - 1))
                        };
                        let len = if step > 0 {
                            ((en - st) + step - 1).max(0) / step
                        } else {
                            ((st - en) + (-step) - 1).max(0) / (-step)
                        };
                        out[a] = Dim::Known(len.max(0) as i64);
                        ranges.push((a, st as i64, en as i64, step as i64));
                    }
                    Dim::Sym(sy) => {
                        if starts[k] == 0 && ends[k] >= i32::MAX as i64 && step == 1 {
                            // full range keeps the symbol
                        } else {
                            out[a] = Dim::Sym(format!("{sy}_slice"));
                        }
                    }
                }
            }
            let mut info = Info::of(x.dtype, Some(out.clone()));
            if xs.len() == 1 && ranges.len() == 1 && ranges[0].3 > 0 {
                let (_, st, en, step) = ranges[0];
                if let Some(dv) = dims_values(n, s, 0) {
                    let picked: Vec<Dim> = (st..en)
                        .step_by(step as usize)
                        .filter_map(|i| dv.get(i as usize).cloned())
                        .collect();
                    if let Some(all) = picked.iter().map(Dim::known).collect::<Option<Vec<i64>>>() {
                        info.value = Some(Values::I64(all));
                    }
                    info.dims_value = Some(picked);
                }
            }
            vec![info]
        }
        "Split" => {
            let xs = req_shape(n, s, 0)?;
            let a = norm_axis(attr_i(n, "axis").unwrap_or(0), xs.len())?;
            let parts: Vec<i64> = match attr_ints(n, "split").map(<[i64]>::to_vec).or_else(|| {
                if n.input.len() > 1 && !n.input[1].is_empty() {
                    int_values(n, s, 1)
                } else {
                    None
                }
            }) {
                Some(p) => p,
                None => {
                    let Some(d) = xs[a].known() else {
                        bail!("Split of a symbolic axis")
                    };
                    let (d, k) = (d as i128, n.output.len() as i128);
                    let each = (d + k - 1) / k;
                    (0..k)
                        .map(|i| each.min(d - i * each).max(0) as i64)
                        .collect()
                }
            };
            if parts.len() != n.output.len() {
                bail!(
                    "split has {} parts for {} outputs",
                    parts.len(),
                    n.output.len()
                );
            }
            parts
                .iter()
                .map(|&p| {
                    let mut o = xs.clone();
                    o[a] = Dim::Known(p);
                    Info::of(dt0, Some(o))
                })
                .collect()
        }
        "ConstantOfShape" => {
            let Some(dims) = dims_values(n, s, 0) else {
                bail!("ConstantOfShape shape is not constant")
            };
            let t = crate::graph::attr(n, "value").and_then(|a| a.t.clone());
            let dtype = t
                .as_ref()
                .map(|t| t.data_type())
                .unwrap_or(DataType::Float as i32);
            let mut info = Info::of(Some(dtype), Some(dims.clone()));
            if let (Some(all), Some(t)) = (
                dims.iter().map(Dim::known).collect::<Option<Vec<i64>>>(),
                t.as_ref(),
            ) {
                if let (Some(cnt), Ok(v)) = (numel(&all), crate::tensor::values(t)) {
                    if cnt <= MAX_VALUE_ELEMS && v.len() == 1 {
                        info.value = Some(match v {
                            Values::F32(x) => Values::F32(vec![x[0]; cnt]),
                            Values::I64(x) => Values::I64(vec![x[0]; cnt]),
                            Values::I32(x) => Values::I32(vec![x[0]; cnt]),
                            other => other,
                        });
                        if info.value.as_ref().map(|v| v.len() != cnt).unwrap_or(false) {
                            info.value = None;
                        }
                    }
                }
            } else if t.is_none() {
                if let Some(all) = dims.iter().map(Dim::known).collect::<Option<Vec<i64>>>() {
                    if let Some(cnt) = numel(&all).filter(|&c| c <= MAX_VALUE_ELEMS) {
                        info.value = Some(Values::F32(vec![0.0; cnt]));
                    }
                }
            }
            set_dims_value(&mut info);
            vec![info]
        }
        "Expand" => {
            let x = req(n, s, 0)?;
            let xs = x
                .shape
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
            let Some(target) = dims_values(n, s, 1) else {
                bail!("Expand shape is not constant")
            };
            let out = broadcast(xs, &target)?;
            let mut info = Info::of(x.dtype, Some(out.clone()));
            if let (Some(v), Some(all)) = (
                &x.value,
                out.iter().map(Dim::known).collect::<Option<Vec<i64>>>(),
            ) {
                info.value = expand_values(
                    v,
                    &xs.iter().filter_map(Dim::known).collect::<Vec<_>>(),
                    &all,
                );
            }
            set_dims_value(&mut info);
            vec![info]
        }
        "Tile" => {
            let x = req(n, s, 0)?;
            let xs = x
                .shape
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
            let Some(rep) = int_values(n, s, 1) else {
                bail!("Tile repeats are not constant")
            };
            if rep.len() != xs.len() {
                bail!("repeats {:?} do not match rank {}", rep, xs.len());
            }
            let out = xs
                .iter()
                .zip(&rep)
                .map(|(d, &r)| match d {
                    Dim::Known(v) => v
                        .checked_mul(r)
                        .map(Dim::Known)
                        .ok_or_else(|| anyhow::anyhow!("dim {v} repeated {r} times overflows")),
                    Dim::Sym(sy) if r == 1 => Ok(Dim::Sym(sy.clone())),
                    Dim::Sym(sy) => Ok(Dim::Sym(format!("{sy}*{r}"))),
                })
                .collect::<Result<Vec<Dim>>>()?;
            vec![Info::of(x.dtype, Some(out))]
        }
        "Range" => {
            let (Some(st), Some(lim), Some(dl)) = (
                input(n, s, 0).and_then(|i| i.value.clone()),
                input(n, s, 1).and_then(|i| i.value.clone()),
                input(n, s, 2).and_then(|i| i.value.clone()),
            ) else {
                let sym = Dim::Sym(format!("{}_len", n.output[0]));
                return Ok(vec![Info::of(dt0, Some(vec![sym]))]);
            };
            let first = |v: &Values, what: &str| {
                v.as_f64()
                    .first()
                    .copied()
                    .ok_or_else(|| anyhow::anyhow!("Range {what} is an empty tensor"))
            };
            let (a, b, d) = (
                first(&st, "start")?,
                first(&lim, "limit")?,
                first(&dl, "delta")?,
            );
            if d == 0.0 {
                bail!("Range delta 0");
            }
            let cnt = ((b - a) / d).ceil().max(0.0) as usize;
            if cnt > MAX_VALUE_ELEMS {
                bail!("Range of {cnt} elements");
            }
            let vals: Vec<f64> = (0..cnt).map(|i| a + i as f64 * d).collect();
            let value = if st.is_float() {
                Values::F32(vals.into_iter().map(|e| e as f32).collect())
            } else {
                Values::I64(vals.into_iter().map(|e| e as i64).collect())
            };
            vec![with_value(dt0, vec![Dim::Known(cnt as i64)], value)]
        }
        "MatMul" => {
            let a = req_shape(n, s, 0)?;
            let b = req_shape(n, s, 1)?;
            if a.len() < 2 || b.len() < 2 {
                bail!("MatMul of rank < 2 inputs is not inferred");
            }
            let batch = broadcast(&a[..a.len() - 2], &b[..b.len() - 2])?;
            let mut out = batch;
            out.push(a[a.len() - 2].clone());
            out.push(b[b.len() - 1].clone());
            vec![Info::of(dt0, Some(out))]
        }
        "Gemm" => {
            let a = req_shape(n, s, 0)?;
            let b = req_shape(n, s, 1)?;
            let ta = attr_i(n, "transA").unwrap_or(0) != 0;
            let tb = attr_i(n, "transB").unwrap_or(0) != 0;
            if a.len() != 2 || b.len() != 2 {
                bail!("Gemm needs rank-2 inputs");
            }
            vec![Info::of(
                dt0,
                Some(vec![
                    if ta { a[1].clone() } else { a[0].clone() },
                    if tb { b[0].clone() } else { b[1].clone() },
                ]),
            )]
        }
        "ScatterND" => {
            // updates must be indices.shape[:-1] + data.shape[k:] (k = indices.shape[-1]); a
            // mismatch is what a graph that baked the traced batch into its index plumbing gives
            // at another batch
            let data = req(n, s, 0)?.shape.clone();
            if let (Some(d), Some(i), Some(u)) = (
                data.as_ref(),
                input(n, s, 1).and_then(|x| x.shape.as_ref()),
                input(n, s, 2).and_then(|x| x.shape.as_ref()),
            ) {
                if let Some(k) = i.last().and_then(Dim::known) {
                    if k < 1 || k as usize > d.len() {
                        bail!(
                            "indices {} index {k} dims of data {}",
                            fmt_shape(i),
                            fmt_shape(d)
                        );
                    }
                    let want: Vec<Dim> = i[..i.len() - 1]
                        .iter()
                        .chain(&d[k as usize..])
                        .cloned()
                        .collect();
                    let clash = want.len() != u.len()
                        || want
                            .iter()
                            .zip(u)
                            .any(|(a, b)| a.known().is_some() && b.known().is_some() && a != b);
                    if clash {
                        bail!(
                            "updates {} do not match indices {} over data {} (expected {})",
                            fmt_shape(u),
                            fmt_shape(i),
                            fmt_shape(d),
                            fmt_shape(&want)
                        );
                    }
                }
            }
            vec![Info::of(dt0, data)]
        }
        "ScatterElements" => vec![Info::of(dt0, req(n, s, 0)?.shape.clone())],
        "GatherND" => bail!("GatherND shape inference is not supported"),
        "NonMaxSuppression" => vec![Info::of(
            i64t,
            Some(vec![Dim::Sym(format!("{}_N", n.output[0])), Dim::Known(3)]),
        )],
        "NonZero" => {
            let xs = req_shape(n, s, 0)?;
            vec![Info::of(
                i64t,
                Some(vec![
                    Dim::Known(xs.len() as i64),
                    Dim::Sym(format!("{}_N", n.output[0])),
                ]),
            )]
        }
        "TopK" => {
            let xs = req_shape(n, s, 0)?;
            let a = norm_axis(attr_i(n, "axis").unwrap_or(-1), xs.len())?;
            let k = int_values(n, s, 1)
                .and_then(|v| v.first().copied())
                .map(Dim::Known)
                .unwrap_or_else(|| Dim::Sym(format!("{}_k", n.output[0])));
            let mut out = xs.clone();
            out[a] = k;
            vec![Info::of(dt0, Some(out.clone())), Info::of(i64t, Some(out))]
        }
        "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceMean" | "ReduceProd" | "ArgMax"
        | "ArgMin" => {
            let xs = req_shape(n, s, 0)?;
            let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
            let axes: Vec<i64> = if op.starts_with("Arg") {
                vec![attr_i(n, "axis").unwrap_or(0)]
            } else {
                attr_ints(n, "axes")
                    .map(<[i64]>::to_vec)
                    .or_else(|| int_values(n, s, 1))
                    .unwrap_or_else(|| (0..xs.len() as i64).collect())
            };
            let ax: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, xs.len()))
                .collect::<Result<_>>()?;
            let mut out = Vec::new();
            for (i, d) in xs.iter().enumerate() {
                if ax.contains(&i) {
                    if keep {
                        out.push(Dim::Known(1));
                    }
                } else {
                    out.push(d.clone());
                }
            }
            vec![Info::of(
                if op.starts_with("Arg") { i64t } else { dt0 },
                Some(out),
            )]
        }
        _ => bail!("no shape rule for {op}"),
    })
}

fn expand_values(v: &Values, in_shape: &[i64], out_shape: &[i64]) -> Option<Values> {
    let total = numel(out_shape)?;
    if total > MAX_VALUE_ELEMS {
        return None;
    }
    let r = out_shape.len();
    let mut ins = vec![1i64; r - in_shape.len().min(r)];
    ins.extend_from_slice(in_shape);
    if ins.len() != r {
        return None;
    }
    let mut in_strides = vec![0i64; r];
    let mut acc = 1i64;
    for i in (0..r).rev() {
        in_strides[i] = if ins[i] == 1 { 0 } else { acc };
        acc = acc.checked_mul(ins[i])?;
    }
    let src = v.as_f64();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0i64; r];
    for _ in 0..total {
        let off: i64 = idx.iter().zip(&in_strides).map(|(a, b)| a * b).sum();
        out.push(*src.get(off as usize)?);
        for k in (0..r).rev() {
            idx[k] += 1;
            if idx[k] < out_shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Some(match v {
        Values::F32(_) => Values::F32(out.into_iter().map(|e| e as f32).collect()),
        Values::I64(_) => Values::I64(out.into_iter().map(|e| e as i64).collect()),
        Values::I32(_) => Values::I32(out.into_iter().map(|e| e as i32).collect()),
        _ => return None,
    })
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

/// Declared shape of graph input `name`.
pub fn declared_input(g: &GraphProto, name: &str) -> Option<Vec<Dim>> {
    g.input.iter().find(|i| i.name() == name).and_then(vi_shape)
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
        Model {
            proto: ModelProto {
                graph: Some(g),
                ..Default::default()
            },
            base_dir: None,
            external: Default::default(),
            source: "t".into(),
        }
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
