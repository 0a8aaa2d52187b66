//! Elementwise ops: unary activations and normalizations (shape-preserving), Identity, Neg,
//! Dropout, Quantize/DequantizeLinear, Cast, and the broadcasting binary ops, comparisons and
//! `Where`, with the small values they fold.

use crate::graph::attr_i;
use crate::infer::helpers::{
    broadcast, dims_values, input, int_values, req, req_shape, set_dims_value,
};
use crate::infer::{Dim, InferError, Info, Shapes};
use crate::onnx::{tensor_proto::DataType, NodeProto};
use crate::tensor::{numel, Values};

type Out = Result<Vec<Info>, InferError>;

/// Relu, Sigmoid, Softmax, BatchNormalization, ...: same dtype and shape as input 0.
pub fn unary(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    Ok(vec![Info::of(x.dtype, x.shape.clone())])
}

/// Identity: input 0, values included.
pub fn identity(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    let mut info = Info::of(x.dtype, x.shape.clone());
    info.value = x.value.clone();
    info.dims_value = x.dims_value.clone();
    Ok(vec![info])
}

/// Neg, folding f32 and i64 values.
pub fn neg(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    let mut info = Info::of(x.dtype, x.shape.clone());
    if let Some(v) = &x.value {
        info.value = match v {
            Values::F32(a) => Some(Values::F32(a.iter().map(|e| -e).collect())),
            Values::I64(a) => Some(Values::I64(a.iter().map(|e| e.wrapping_neg()).collect())),
            _ => None,
        };
    }
    Ok(vec![info])
}

/// Dropout: the data, and the optional bool mask.
pub fn dropout(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    let mut outs = vec![Info::of(x.dtype, x.shape.clone())];
    if n.output.len() > 1 {
        outs.push(Info::of(Some(DataType::Bool as i32), x.shape.clone()));
    }
    Ok(outs)
}

/// QuantizeLinear: the dtype of the zero point (uint8 without one).
pub fn quantize_linear(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    let dtype = input(n, s, 2)
        .and_then(|z| z.dtype)
        .or(Some(DataType::Uint8 as i32));
    Ok(vec![Info::of(dtype, x.shape.clone())])
}

/// DequantizeLinear: float.
pub fn dequantize_linear(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    Ok(vec![Info::of(
        Some(DataType::Float as i32),
        x.shape.clone(),
    )])
}

pub fn cast(n: &NodeProto, s: &Shapes) -> Out {
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
    Ok(vec![info])
}

/// The numpy broadcast of every input's shape.
fn broadcast_inputs(n: &NodeProto, s: &Shapes) -> Result<Vec<Dim>, InferError> {
    let mut shape = req_shape(n, s, 0)?.clone();
    for i in 1..n.input.len() {
        shape = broadcast(&shape, req_shape(n, s, i)?)?;
    }
    Ok(shape)
}

/// The values of every input, when all are known.
fn input_values<'a>(n: &NodeProto, s: &'a Shapes) -> Option<Vec<&'a Values>> {
    (0..n.input.len())
        .map(|i| input(n, s, i).and_then(|x| x.value.as_ref()))
        .collect()
}

/// The output of a broadcasting op, with its folded value unless that value's length does not
/// match the (known part of the) output shape.
fn folded(dtype: Option<i32>, shape: Vec<Dim>, value: Option<Values>) -> Info {
    let mut info = Info::of(dtype, Some(shape.clone()));
    info.value = value;
    if info
        .value
        .as_ref()
        .map(|v| Some(v.len()) != numel(&shape.iter().filter_map(Dim::known).collect::<Vec<_>>()))
        .unwrap_or(false)
    {
        info.value = None;
    }
    set_dims_value(&mut info);
    info
}

/// Add, Sub, Mul, Div (folded on two known operands), Pow, Mod, Max, Min, Sum, BitShift: the
/// dtype of input 0.
pub fn arithmetic(n: &NodeProto, s: &Shapes) -> Out {
    let shape = broadcast_inputs(n, s)?;
    let dtype = input(n, s, 0).and_then(|i| i.dtype);
    let value = input_values(n, s)
        .filter(|v| v.len() == 2)
        .and_then(|v| elementwise_values(n.op_type(), &v));
    Ok(vec![folded(dtype, shape, value)])
}

/// Equal (folded on two known operands), Greater, Less, And, Or, Xor, ...: bool.
pub fn comparison(n: &NodeProto, s: &Shapes) -> Out {
    let shape = broadcast_inputs(n, s)?;
    let value = match input_values(n, s) {
        Some(v) => (v.len() == 2)
            .then(|| elementwise_values(n.op_type(), &v))
            .flatten(),
        None if n.op_type() == "Equal" => equal_symbolic(n, s, &shape),
        None => None,
    };
    Ok(vec![folded(Some(DataType::Bool as i32), shape, value)])
}

/// Equal(shape vector, negative constants) with symbolic dims: a dim is never negative, so a
/// symbolic dim compares false (torch's expand lowering: Where(Equal(shape, -1), ones, shape) in
/// YOLOX `--dynamic --decode_in_inference` exports).
fn equal_symbolic(n: &NodeProto, s: &Shapes, shape: &[Dim]) -> Option<Values> {
    let (a, c) = (dims_values(n, s, 0)?, int_values(n, s, 1)?);
    if !(c.len() == a.len() || c.len() == 1) {
        return None;
    }
    let out: Vec<bool> = a
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let k = if c.len() == 1 { c[0] } else { c[i] };
            match d.known() {
                Some(v) => Some(v == k),
                None => (k < 0).then_some(false),
            }
        })
        .collect::<Option<_>>()?;
    (shape.len() == 1 && out.len() == a.len()).then_some(Values::Bool(out))
}

/// Where: the dtype of input 1; folds known operands, and selects between two shape vectors
/// under a constant condition.
pub fn where_(n: &NodeProto, s: &Shapes) -> Out {
    let shape = broadcast_inputs(n, s)?;
    let dtype = input(n, s, 1).and_then(|i| i.dtype);
    let info = match input_values(n, s) {
        Some(vals) if vals.len() == 3 => folded(dtype, shape, where_values(&vals)),
        Some(_) => folded(dtype, shape, None),
        None => {
            let mut info = Info::of(dtype, Some(shape));
            info.dims_value = where_dims(n, s);
            set_dims_value(&mut info);
            info
        }
    };
    Ok(vec![info])
}

/// `Where(c, a, b)` over known values (each of the full length or a scalar).
fn where_values(vals: &[&Values]) -> Option<Values> {
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
    if !vals.iter().all(|v| v.len() == len || v.len() == 1) {
        return None;
    }
    let out: Vec<f64> = (0..len)
        .map(|i| {
            if (if c.len() == 1 { c[0] } else { c[i] }) != 0 {
                pick(vals[1], i)
            } else {
                pick(vals[2], i)
            }
        })
        .collect();
    Some(match vals[1] {
        Values::F32(_) => Values::F32(out.into_iter().map(|e| e as f32).collect()),
        _ => Values::I64(out.into_iter().map(|e| e as i64).collect()),
    })
}

/// Symbolic: `Where(cond_const, a, b)` over shape vectors.
fn where_dims(n: &NodeProto, s: &Shapes) -> Option<Vec<Dim>> {
    let (c, a, b) = (
        int_values(n, s, 0)?,
        dims_values(n, s, 1)?,
        dims_values(n, s, 2)?,
    );
    if c.len() == a.len() && a.len() == b.len() {
        Some(
            (0..c.len())
                .map(|i| {
                    if c[i] != 0 {
                        a[i].clone()
                    } else {
                        b[i].clone()
                    }
                })
                .collect(),
        )
    } else {
        None
    }
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
