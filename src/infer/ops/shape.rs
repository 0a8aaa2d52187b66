//! Shape-manipulation ops: Constant, Shape, Reshape, Flatten, Unsqueeze, Squeeze, Expand, Tile,
//! ConstantOfShape, Range. These carry the shape vectors (`dims_value`) that export plumbing
//! computes at run time.

use anyhow::Result;

use crate::graph::{attr_i, attr_ints, constant_node_value};
use crate::infer::helpers::{
    broadcast, dims_values, dtype, input, int_values, known, known_product, norm_axis, req,
    req_shape, set_dims_value, with_value,
};
use crate::infer::{
    defect, fmt_shape, keeps_values, Dim, InferError, Info, Shapes, MAX_VALUE_ELEMS,
};
use crate::onnx::{tensor_proto::DataType, NodeProto};
use crate::tensor::{dtype_name, numel, Values};

type Out = Result<Vec<Info>, InferError>;

pub fn constant(n: &NodeProto, s: &Shapes) -> Out {
    let Some(t) = constant_node_value(n) else {
        defect!("Constant without a value")
    };
    let mut info = Info::of(t.data_type, Some(known(&t.dims)));
    if keeps_values(t.data_type(), &t.dims, s.float_value_limit) {
        info.value = crate::tensor::values(&t).ok();
    }
    set_dims_value(&mut info);
    Ok(vec![info])
}

/// Shape, with its `start`/`end` range; the dims become the (possibly symbolic) value.
pub fn shape(n: &NodeProto, s: &Shapes) -> Out {
    let i64t = Some(DataType::Int64 as i32);
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
    Ok(vec![info])
}

pub fn reshape(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    if let Some(dt) = input(n, s, 1).and_then(|i| i.dtype) {
        if dt != DataType::Int64 as i32 {
            defect!(
                "shape input `{}` is {}, expected {}",
                n.input[1],
                dtype_name(dt),
                dtype_name(DataType::Int64 as i32)
            );
        }
    }
    let Some(target) = dims_values(n, s, 1) else {
        defect!("Reshape target shape is not a constant")
    };
    let allowzero = attr_i(n, "allowzero").unwrap_or(0) != 0;
    let xs = x.shape.as_ref();
    let mut out: Vec<Dim> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, d) in target.iter().enumerate() {
        match d {
            Dim::Known(0) if !allowzero => match xs.and_then(|s| s.get(i)) {
                Some(v) => out.push(v.clone()),
                None => defect!("Reshape copies dim {i} from an input of unknown shape"),
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
            (Some(_), Some(r)) => defect!(
                "cannot reshape {} to {} (element count not divisible by {r})",
                fmt_shape(xs.unwrap()),
                fmt_shape(&target)
            ),
            _ => symbolic_minus_one(n, xs, &out, k)?,
        };
    } else if let (Some(tin), Some(tout)) = (
        match xs {
            Some(s) => known_product(s.iter())?,
            None => None,
        },
        known_product(out.iter())?,
    ) {
        if tin != tout {
            defect!(
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
    Ok(vec![info])
}

/// The `-1` dim `k` of a Reshape of an input with symbolic dims: if the other dims match the
/// input's except one symbol, carry it.
fn symbolic_minus_one(n: &NodeProto, xs: Option<&Vec<Dim>>, out: &[Dim], k: usize) -> Result<Dim> {
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
    Ok(match (sym, xs) {
        (Some(sy), Some(sv)) => {
            let known_in: Option<i64> = known_product(sv.iter().filter(|d| d.known().is_some()))?;
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
                Some(ki) if syms_out == 1 && known_out > 0 && ki % known_out == 0 => {
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
    })
}

pub fn flatten(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
    let x = req_shape(n, s, 0)?;
    let a = attr_i(n, "axis").unwrap_or(1);
    let a = if a < 0 { a + x.len() as i64 } else { a } as usize;
    let prod = |ds: &[Dim]| -> Result<Dim> {
        Ok(known_product(ds.iter())?
            .map(Dim::Known)
            .unwrap_or_else(|| Dim::Sym(format!("{}_flat", n.output[0]))))
    };
    Ok(vec![Info::of(
        dt0,
        Some(vec![
            prod(&x[..a.min(x.len())])?,
            prod(&x[a.min(x.len())..])?,
        ]),
    )])
}

pub fn expand(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    let xs = x
        .shape
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
    let Some(target) = dims_values(n, s, 1) else {
        defect!("Expand shape is not constant")
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
    Ok(vec![info])
}

pub fn tile(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    let xs = x
        .shape
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
    let Some(rep) = int_values(n, s, 1) else {
        defect!("Tile repeats are not constant")
    };
    if rep.len() != xs.len() {
        defect!("repeats {:?} do not match rank {}", rep, xs.len());
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
    Ok(vec![Info::of(x.dtype, Some(out))])
}

pub fn constant_of_shape(n: &NodeProto, s: &Shapes) -> Out {
    let Some(dims) = dims_values(n, s, 0) else {
        defect!("ConstantOfShape shape is not constant")
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
    Ok(vec![info])
}

/// Range: the values when start, limit and delta are known, else a symbolic length.
pub fn range(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
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
        defect!("Range delta 0");
    }
    let cnt = ((b - a) / d).ceil().max(0.0) as usize;
    if cnt > MAX_VALUE_ELEMS {
        defect!("Range of {cnt} elements");
    }
    let vals: Vec<f64> = (0..cnt).map(|i| a + i as f64 * d).collect();
    let value = if st.is_float() {
        Values::F32(vals.into_iter().map(|e| e as f32).collect())
    } else {
        Values::I64(vals.into_iter().map(|e| e as i64).collect())
    };
    Ok(vec![with_value(dt0, vec![Dim::Known(cnt as i64)], value)])
}

/// The input of a (Un)Squeeze, its shape, and its axes (attribute or input 1) when constant.
fn squeeze_operands<'a>(
    n: &NodeProto,
    s: &'a Shapes,
) -> Result<(&'a Info, &'a Vec<Dim>, Option<Vec<i64>>), InferError> {
    let x = req(n, s, 0)?;
    let xs = x
        .shape
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
    let axes: Option<Vec<i64>> = attr_ints(n, "axes")
        .map(<[i64]>::to_vec)
        .or_else(|| int_values(n, s, 1));
    Ok((x, xs, axes))
}

/// The output of an op that only relabels the dims of `x`: its values carry over.
fn relabelled(x: &Info, out: Vec<Dim>) -> Info {
    let mut info = Info::of(x.dtype, Some(out.clone()));
    info.value = x.value.clone();
    if out.len() <= 1 {
        info.dims_value = x.dims_value.clone();
    }
    set_dims_value(&mut info);
    info
}

pub fn unsqueeze(n: &NodeProto, s: &Shapes) -> Out {
    let (x, xs, axes) = squeeze_operands(n, s)?;
    let Some(axes) = axes else {
        defect!("Unsqueeze axes are not constant")
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
    Ok(vec![relabelled(x, out)])
}

/// Squeeze: the given axes, or every dim known to be 1.
pub fn squeeze(n: &NodeProto, s: &Shapes) -> Out {
    let (x, xs, axes) = squeeze_operands(n, s)?;
    let out = match axes {
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
    };
    Ok(vec![relabelled(x, out)])
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
