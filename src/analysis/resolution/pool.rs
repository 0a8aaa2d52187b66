//! Adaptive-pool `AveragePool` kernel/strides. Gold-YOLO exports `onnx_AdaptiveAvgPool2d` as an
//! `AveragePool` with stride = floor(in/out), kernel = in − (out−1)·stride; both attributes are
//! baked from the input size. The output size is re-derived from the feature map it copied (or,
//! in `PyramidPoolAgg`, (P5 − 1) // 2 + 1 of one), and the formula is applied again. A pool whose
//! attributes are not exactly that formula is a plain pool, independent of the size.

use anyhow::{bail, Context, Result};

use crate::graph::{attr_ints, describe, set_attr_ints};
use crate::model::Model;
use crate::onnx::NodeProto;
use crate::shape::{Dim, Info};

use super::baked::{self, Scan};
use super::probe::{input, output, Probe, ResConst};
use super::rewrite::{node_at, old_dims, spatial, Rewrite, RewriteCx};
use super::ResolutionRule;

pub const AVERAGE_POOL: ResolutionRule = ResolutionRule {
    ops: &["AveragePool"],
    find,
    rewrite,
};

/// `onnx_AdaptiveAvgPool2d` for one axis: (kernel, stride) pooling `inp` down to `out`.
/// (An `out` of 0 gives stride 0, which no rule accepts.)
fn formula(inp: i64, out: i64) -> (i64, i64) {
    let s = inp.checked_div(out).unwrap_or(0);
    (inp - (out - 1) * s, s)
}

fn find(p: &mut Probe, n: &NodeProto, at: usize, _outs: &mut [Info]) {
    let k = attr_ints(n, "kernel_shape").unwrap_or(&[]).to_vec();
    let st = attr_ints(n, "strides")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; k.len()]);
    let pads = attr_ints(n, "pads")
        .map(<[i64]>::to_vec)
        .unwrap_or_default();
    if p.spatial_in(input(n, 0)) && k.iter().any(|&x| x > 1) && pads.iter().all(|&p| p == 0) {
        let in_shape = p.numeric.shape(input(n, 0)).cloned().unwrap_or_default();
        let out_shape = p.numeric.shape(output(n, 0)).cloned().unwrap_or_default();
        let f = |s: &[Dim]| {
            s.iter()
                .skip(2)
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        let name = n.name();
        p.set(
            at,
            ResConst {
                node: name.to_string(),
                op: "AveragePool".into(),
                what: format!(
                    "kernel/strides of an adaptive-pool emulation {} -> {}",
                    f(&in_shape),
                    f(&out_shape)
                ),
                value: format!("kernel {k:?} strides {st:?}"),
                constant: format!("{name}.kernel_shape"),
            },
        );
    }
    baked::scan(p, n, at, Scan::All);
}

fn rewrite(m: &mut Model, cx: &mut RewriteCx, ni: usize, p: i64) -> Result<()> {
    let (n, name) = node_at(m, ni);
    let (Some(i0), Some(o0)) = (
        old_dims(cx.s0, input(&n, 0)),
        old_dims(cx.s0, output(&n, 0)),
    ) else {
        return Ok(());
    };
    if i0.len() != 4 {
        return Ok(());
    }
    let k = attr_ints(&n, "kernel_shape").unwrap_or(&[]).to_vec();
    let st = attr_ints(&n, "strides")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; 2]);
    let pads = attr_ints(&n, "pads")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; 4]);
    if k.len() != 2 || pads.iter().any(|&x| x != 0) {
        return Ok(());
    }
    let adaptive = (0..2).all(|d| {
        o0.get(2 + d).map(|&o| formula(i0[2 + d], o))
            == Some((k[d], st.get(d).copied().unwrap_or(1)))
    });
    let Some(i1) = cx.s1.shape(input(&n, 0)).and_then(|s| spatial(s)) else {
        return Ok(());
    };
    if !adaptive {
        return Ok(()); // a plain pool: its attributes do not depend on the size
    }
    if (i0[2], i0[3]) == i1 {
        return Ok(());
    }
    let out1 = cx.map_pool_out((o0[2], o0[3]), p, output(&n, 0))?.with_context(|| {
        format!("{}: adaptive-pool output {}x{} matches no feature map (nor (P-1)//2+1 of one); cannot re-derive kernel/strides", describe(&n), o0[2], o0[3])
    })?;
    let (kh, sh) = formula(i1.0, out1.0);
    let (kw, sw) = formula(i1.1, out1.1);
    if out1.0 <= 0 || out1.1 <= 0 || sh <= 0 || sw <= 0 || kh <= 0 || kw <= 0 {
        bail!(
            "{}: adaptive pool {}x{} -> {}x{} is impossible",
            describe(&n),
            i1.0,
            i1.1,
            out1.0,
            out1.1
        );
    }
    let (nk, ns) = (vec![kh, kw], vec![sh, sw]);
    if nk != k || ns != st {
        let node = &mut m.graph_mut().node[ni];
        set_attr_ints(node, "kernel_shape", &nk);
        set_attr_ints(node, "strides", &ns);
        cx.rewrites.push(Rewrite {
            node: name,
            what: format!(
                "AveragePool kernel/strides (adaptive {}x{} -> {}x{})",
                i1.0, i1.1, out1.0, out1.1
            ),
            old: format!("kernel {k:?} strides {st:?}"),
            new: format!("kernel {nk:?} strides {ns:?}"),
        });
    }
    Ok(())
}
