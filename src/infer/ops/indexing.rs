//! Indexing and joining ops: Gather, GatherND, Slice, Split, Concat, Transpose, ScatterND,
//! ScatterElements, NonZero.

use anyhow::Result;

use crate::graph::{attr_i, attr_ints};
use crate::infer::helpers::{dims_values, dtype, input, int_values, norm_axis, req, req_shape};
use crate::infer::{defect, fmt_shape, Dim, InferError, Info, Shapes};
use crate::onnx::{tensor_proto::DataType, NodeProto};
use crate::tensor::Values;

type Out = Result<Vec<Info>, InferError>;

pub fn gather(n: &NodeProto, s: &Shapes) -> Out {
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
        } else if let (Some(Values::F32(fv)), Some(iv)) = (x.value.as_ref(), int_values(n, s, 1)) {
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
    Ok(vec![info])
}

pub fn slice(n: &NodeProto, s: &Shapes) -> Out {
    let x = req(n, s, 0)?;
    let xs = x
        .shape
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
    let (starts, ends, axes, steps) = slice_params(n, s)?;
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        defect!("starts/ends/axes/steps lengths differ");
    }
    let mut out = xs.clone();
    let mut ranges: Vec<(usize, i64, i64, i64)> = Vec::new();
    for k in 0..starts.len() {
        let a = norm_axis(axes[k], xs.len())?;
        let step = steps[k];
        if step == 0 {
            defect!("Slice step 0");
        }
        match &xs[a] {
            Dim::Known(d) => {
                if *d < 0 {
                    defect!("input dim {d} is negative");
                }
                let (len, st, en) = slice_range(*d, starts[k], ends[k], step);
                out[a] = Dim::Known(len);
                ranges.push((a, st, en, step));
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
    Ok(vec![info])
}

/// Slice starts, ends, axes and steps: inputs 1-4 (opset 10+) or attributes (opset < 10).
#[allow(clippy::type_complexity)]
fn slice_params(n: &NodeProto, s: &Shapes) -> Result<(Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>)> {
    Ok(if n.input.len() >= 3 {
        let st =
            int_values(n, s, 1).ok_or_else(|| anyhow::anyhow!("Slice starts are not constant"))?;
        let en =
            int_values(n, s, 2).ok_or_else(|| anyhow::anyhow!("Slice ends are not constant"))?;
        let ax = if n.input.len() > 3 && !n.input[3].is_empty() {
            int_values(n, s, 3).ok_or_else(|| anyhow::anyhow!("Slice axes are not constant"))?
        } else {
            (0..st.len() as i64).collect()
        };
        let sp = if n.input.len() > 4 && !n.input[4].is_empty() {
            int_values(n, s, 4).ok_or_else(|| anyhow::anyhow!("Slice steps are not constant"))?
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
    })
}

/// Length and clamped (start, end) of `start..end` by `step` (≠ 0) over a dim of size `d` ≥ 0.
fn slice_range(d: i64, start: i64, end: i64, step: i64) -> (i64, i64, i64) {
    // i128: hostile starts/ends/steps (i64::MIN, i64::MAX) must not overflow
    let (d, step) = (d as i128, step as i128);
    let (mut st, mut en) = (start as i128, end as i128);
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
    (len.max(0) as i64, st as i64, en as i64)
}

pub fn split(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
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
                defect!("Split of a symbolic axis")
            };
            let (d, k) = (d as i128, n.output.len() as i128);
            let each = (d + k - 1) / k;
            (0..k)
                .map(|i| each.min(d - i * each).max(0) as i64)
                .collect()
        }
    };
    if parts.len() != n.output.len() {
        defect!(
            "split has {} parts for {} outputs",
            parts.len(),
            n.output.len()
        );
    }
    Ok(parts
        .iter()
        .map(|&p| {
            let mut o = xs.clone();
            o[a] = Dim::Known(p);
            Info::of(dt0, Some(o))
        })
        .collect())
}

pub fn concat(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
    let axis = attr_i(n, "axis").unwrap_or(0);
    let shapes: Vec<&Vec<Dim>> = (0..n.input.len())
        .map(|i| req_shape(n, s, i))
        .collect::<Result<_>>()?;
    let Some(first) = shapes.first() else {
        defect!("Concat without inputs")
    };
    let r = first.len();
    let a = norm_axis(axis, r)?;
    let mut out = shapes[0].clone();
    let mut total: Option<i64> = Some(0);
    for sh in &shapes {
        if sh.len() != r {
            defect!("inputs of different ranks");
        }
        total = match (total, sh[a].known()) {
            (Some(t), Some(v)) => Some(
                t.checked_add(v)
                    .ok_or_else(|| anyhow::anyhow!("concatenated dim {t} + {v} overflows"))?,
            ),
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
    Ok(vec![info])
}

pub fn transpose(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
    let x = req(n, s, 0)?;
    let xs = x
        .shape
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("unknown input shape"))?;
    let perm: Vec<i64> = attr_ints(n, "perm")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| (0..xs.len() as i64).rev().collect());
    if perm.len() != xs.len() {
        defect!("perm {:?} does not match rank {}", perm, xs.len());
    }
    let out: Vec<Dim> = perm
        .iter()
        .map(|&p| {
            xs.get(p as usize)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("perm {p} out of range"))
        })
        .collect::<Result<_>>()?;
    Ok(vec![Info::of(dt0, Some(out))])
}

pub fn scatter_nd(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
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
                defect!(
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
                defect!(
                    "updates {} do not match indices {} over data {} (expected {})",
                    fmt_shape(u),
                    fmt_shape(i),
                    fmt_shape(d),
                    fmt_shape(&want)
                );
            }
        }
    }
    Ok(vec![Info::of(dt0, data)])
}

pub fn non_zero(n: &NodeProto, s: &Shapes) -> Out {
    let i64t = Some(DataType::Int64 as i32);
    let xs = req_shape(n, s, 0)?;
    Ok(vec![Info::of(
        i64t,
        Some(vec![
            Dim::Known(xs.len() as i64),
            Dim::Sym(format!("{}_N", n.output[0])),
        ]),
    )])
}

pub fn scatter_elements(n: &NodeProto, s: &Shapes) -> Out {
    let dt0 = dtype(n, s, 0);
    Ok(vec![Info::of(dt0, req(n, s, 0)?.shape.clone())])
}

pub fn gather_nd(n: &NodeProto, _s: &Shapes) -> Out {
    Err(InferError::Unsupported {
        op: n.op_type().to_string(),
    })
}
