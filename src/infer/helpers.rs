//! Operand accessors and shape arithmetic shared by the rules.

use anyhow::{bail, Result};

use super::{fmt_shape, Dim, Info, Shapes};
use crate::onnx::NodeProto;
use crate::tensor::Values;

pub(crate) fn set_dims_value(info: &mut Info) {
    if let (Some(v), Some(shape)) = (&info.value, &info.shape) {
        if shape.len() <= 1 && !v.is_float() && v.len() <= 16 {
            info.dims_value = Some(v.as_i64().into_iter().map(Dim::Known).collect());
        }
    }
}

pub(crate) fn with_value(dtype: Option<i32>, shape: Vec<Dim>, value: Values) -> Info {
    let mut i = Info {
        dtype,
        shape: Some(shape),
        value: Some(value),
        dims_value: None,
    };
    set_dims_value(&mut i);
    i
}

pub(crate) fn known(shape: &[i64]) -> Vec<Dim> {
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
pub(crate) fn known_product<'a>(
    dims: impl Iterator<Item = &'a Dim> + Clone,
) -> Result<Option<i64>> {
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

pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    // rank 0 has no axis at all (indexing dim 0 of a scalar's shape would panic)
    if a < 0 || a >= r {
        bail!("axis {axis} out of range for rank {rank}");
    }
    Ok(a as usize)
}

pub(crate) fn input<'a>(n: &NodeProto, s: &'a Shapes, i: usize) -> Option<&'a Info> {
    n.input
        .get(i)
        .filter(|x| !x.is_empty())
        .and_then(|x| s.map.get(x))
}

pub(crate) fn req<'a>(n: &NodeProto, s: &'a Shapes, i: usize) -> Result<&'a Info> {
    match input(n, s, i) {
        Some(x) => Ok(x),
        None => bail!(
            "input {i} (`{}`) is unknown",
            n.input.get(i).map(String::as_str).unwrap_or("")
        ),
    }
}

pub(crate) fn req_shape<'a>(n: &NodeProto, s: &'a Shapes, i: usize) -> Result<&'a Vec<Dim>> {
    match &req(n, s, i)?.shape {
        Some(x) => Ok(x),
        None => bail!("shape of input {i} (`{}`) is unknown", n.input[i]),
    }
}

/// Int values of input `i` (from `value` or a fully known `dims_value`).
pub(crate) fn int_values(n: &NodeProto, s: &Shapes, i: usize) -> Option<Vec<i64>> {
    let info = input(n, s, i)?;
    if let Some(v) = &info.value {
        return Some(v.as_i64());
    }
    info.dims_value.as_ref()?.iter().map(Dim::known).collect()
}

/// Possibly-symbolic int vector of input `i`.
pub(crate) fn dims_values(n: &NodeProto, s: &Shapes, i: usize) -> Option<Vec<Dim>> {
    let info = input(n, s, i)?;
    if let Some(d) = &info.dims_value {
        return Some(d.clone());
    }
    info.value
        .as_ref()
        .filter(|v| !v.is_float())
        .map(|v| v.as_i64().into_iter().map(Dim::Known).collect())
}

/// The dtype of input `i`, when known.
pub(crate) fn dtype(n: &NodeProto, s: &Shapes, i: usize) -> Option<i32> {
    input(n, s, i).and_then(|x| x.dtype)
}
