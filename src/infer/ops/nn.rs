//! Neural-network ops over NCHW spatial dims: Conv, ConvTranspose, the pools, the global pools,
//! Resize / Upsample.

use anyhow::{bail, Result};

use crate::graph::{attr_i, attr_ints};
use crate::infer::helpers::{dims_values, dtype, input, req_shape};
use crate::infer::{defect, fmt_shape, Dim, InferError, Info, Shapes};
use crate::onnx::{tensor_proto::DataType, NodeProto};

type Out = Result<Vec<Info>, InferError>;

/// The weight of a Conv / ConvTranspose (`[M, C/group, k...]`) and its kernel.
fn conv_weight<'a>(n: &NodeProto, s: &'a Shapes) -> Result<(&'a Vec<Dim>, Vec<i64>), InferError> {
    let w = req_shape(n, s, 1)?;
    if w.len() < 3 {
        defect!(
            "weight `{}` has shape {}, expected [M, C/group, k...]",
            n.input[1],
            fmt_shape(w)
        );
    }
    let kernel: Vec<i64> = match attr_ints(n, "kernel_shape") {
        Some(k) => k.to_vec(),
        None => w[2..].iter().map(|d| d.known().unwrap_or(1)).collect(),
    };
    Ok((w, kernel))
}

pub fn conv(n: &NodeProto, s: &Shapes) -> Out {
    let x = req_shape(n, s, 0)?;
    let (w, kernel) = conv_weight(n, s)?;
    let mut out = spatial_out(n, x, &kernel)?;
    out[1] = w[0].clone();
    Ok(vec![Info::of(dtype(n, s, 0), Some(out))])
}

/// The operands are checked (a bad weight is a defect), the output shape is not inferred.
pub fn conv_transpose(n: &NodeProto, s: &Shapes) -> Out {
    req_shape(n, s, 0)?;
    conv_weight(n, s)?;
    Err(InferError::Unsupported {
        op: n.op_type().to_string(),
    })
}

/// MaxPool, AveragePool, LpPool (and MaxPool's optional indices).
pub fn pool(n: &NodeProto, s: &Shapes) -> Out {
    let x = req_shape(n, s, 0)?;
    let kernel = crate::graph::req_ints(n, "kernel_shape")?;
    let out = spatial_out(n, x, kernel)?;
    let mut v = vec![Info::of(dtype(n, s, 0), Some(out.clone()))];
    if n.output.len() > 1 {
        v.push(Info::of(Some(DataType::Int64 as i32), Some(out)));
    }
    Ok(v)
}

/// GlobalAveragePool, GlobalMaxPool: spatial dims become 1.
pub fn global_pool(n: &NodeProto, s: &Shapes) -> Out {
    let x = req_shape(n, s, 0)?;
    let mut out = x[..2.min(x.len())].to_vec();
    out.extend(std::iter::repeat_n(
        Dim::Known(1),
        x.len().saturating_sub(2),
    ));
    Ok(vec![Info::of(dtype(n, s, 0), Some(out))])
}

/// Resize: `sizes` (input 3) if given, else the scales (input 2, or 1 in the two-input form).
pub fn resize(n: &NodeProto, s: &Shapes) -> Out {
    let sizes = n
        .input
        .get(3)
        .filter(|x| !x.is_empty())
        .and_then(|_| dims_values(n, s, 3));
    let scales_idx = if n.input.len() == 2 { 1 } else { 2 };
    resized(n, s, sizes, scales_idx)
}

/// Upsample: the scales of input 1.
pub fn upsample(n: &NodeProto, s: &Shapes) -> Out {
    resized(n, s, None, 1)
}

fn resized(n: &NodeProto, s: &Shapes, sizes: Option<Vec<Dim>>, scales_idx: usize) -> Out {
    let x = req_shape(n, s, 0)?;
    let out = if let Some(sz) = sizes {
        if sz.len() != x.len() {
            defect!(
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
            defect!("scales {:?} do not match input rank {}", sc, x.len());
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
        defect!("Resize needs constant scales or sizes");
    };
    Ok(vec![Info::of(dtype(n, s, 0), Some(out))])
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
