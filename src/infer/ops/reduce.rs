//! Reductions and contractions: Reduce*, ArgMax/ArgMin, TopK, NonMaxSuppression, MatMul, Gemm.

use anyhow::Result;

use crate::graph::{attr_i, attr_ints};
use crate::infer::helpers::{broadcast, dtype, int_values, norm_axis, req_shape};
use crate::infer::{defect, Dim, InferError, Info, Shapes};
use crate::onnx::{tensor_proto::DataType, NodeProto};

type Out = Result<Vec<Info>, InferError>;

/// `xs` without the dims in `axes` (or with them set to 1 under `keepdims`).
fn reduced(n: &NodeProto, xs: &[Dim], axes: &[i64]) -> Result<Vec<Dim>, InferError> {
    let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
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
    Ok(out)
}

/// ReduceSum, ReduceMax, ReduceMin, ReduceMean, ReduceProd: axes from the attribute or input 1,
/// all axes without either.
pub fn reduce(n: &NodeProto, s: &Shapes) -> Out {
    let xs = req_shape(n, s, 0)?;
    let axes: Vec<i64> = attr_ints(n, "axes")
        .map(<[i64]>::to_vec)
        .or_else(|| int_values(n, s, 1))
        .unwrap_or_else(|| (0..xs.len() as i64).collect());
    let out = reduced(n, xs, &axes)?;
    Ok(vec![Info::of(dtype(n, s, 0), Some(out))])
}

/// ArgMax, ArgMin: int64 indices along `axis`.
pub fn arg_reduce(n: &NodeProto, s: &Shapes) -> Out {
    let xs = req_shape(n, s, 0)?;
    let out = reduced(n, xs, &[attr_i(n, "axis").unwrap_or(0)])?;
    Ok(vec![Info::of(Some(DataType::Int64 as i32), Some(out))])
}

pub fn top_k(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
    let i64t = Some(DataType::Int64 as i32);
    let xs = req_shape(n, s, 0)?;
    let a = norm_axis(attr_i(n, "axis").unwrap_or(-1), xs.len())?;
    let k = int_values(n, s, 1)
        .and_then(|v| v.first().copied())
        .map(Dim::Known)
        .unwrap_or_else(|| Dim::Sym(format!("{}_k", n.output[0])));
    let mut out = xs.clone();
    out[a] = k;
    Ok(vec![
        Info::of(dt0, Some(out.clone())),
        Info::of(i64t, Some(out)),
    ])
}

pub fn mat_mul(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
    let a = req_shape(n, s, 0)?;
    let b = req_shape(n, s, 1)?;
    if a.len() < 2 || b.len() < 2 {
        defect!("MatMul of rank < 2 inputs is not inferred");
    }
    let batch = broadcast(&a[..a.len() - 2], &b[..b.len() - 2])?;
    let mut out = batch;
    out.push(a[a.len() - 2].clone());
    out.push(b[b.len() - 1].clone());
    Ok(vec![Info::of(dt0, Some(out))])
}

pub fn gemm(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
    let a = req_shape(n, s, 0)?;
    let b = req_shape(n, s, 1)?;
    let ta = attr_i(n, "transA").unwrap_or(0) != 0;
    let tb = attr_i(n, "transB").unwrap_or(0) != 0;
    if a.len() != 2 || b.len() != 2 {
        defect!("Gemm needs rank-2 inputs");
    }
    Ok(vec![Info::of(
        dt0,
        Some(vec![
            if ta { a[1].clone() } else { a[0].clone() },
            if tb { b[0].clone() } else { b[1].clone() },
        ]),
    )])
}

/// NonMaxSuppression: `[N, 3]` selected indices, N data-dependent.
pub fn non_max_suppression(n: &NodeProto, _s: &Shapes) -> Out {
    Ok(vec![Info::of(
        Some(DataType::Int64 as i32),
        Some(vec![Dim::Sym(format!("{}_N", n.output[0])), Dim::Known(3)]),
    )])
}
