//! `Resize` target sizes. A constant `sizes` operand (or the constant parts of the `Concat` that
//! builds it) fixes the output's spatial dims: it is found when it covers a spatial element, and
//! re-derived from the feature map it copied (an earlier tensor with those spatial dims). `scales`
//! are resolution-free (nothing to find or rewrite).

use anyhow::{bail, Context, Result};

use crate::graph::describe;
use crate::model::Model;
use crate::onnx::NodeProto;
use crate::shape::{Dim, Info};

use super::baked::{self, Scan};
use super::probe::{const_parts, fmt_vals, input, output, Probe, ResConst};
use super::rewrite::{node_at, old_dims, RewriteCx};
use super::ResolutionRule;

pub const RESIZE: ResolutionRule = ResolutionRule {
    ops: &["Resize"],
    find,
    rewrite,
};

fn find(p: &mut Probe, n: &NodeProto, at: usize, outs: &mut [Info]) {
    let sz = input(n, 3);
    for (cname, vals, offset) in const_parts(p.g, p.ix, Some(p.numeric), sz) {
        // only spatial elements (index ≥ 2 of the full sizes vector)
        if offset + vals.len() <= 2 {
            continue;
        }
        p.set(
            at,
            ResConst {
                node: n.name().to_string(),
                op: "Resize".into(),
                what: "target size (sizes)".into(),
                value: fmt_vals(&vals),
                constant: cname,
            },
        );
        if let Some(s) = outs.first_mut().and_then(|o| o.shape.as_mut()) {
            for d in s.iter_mut().skip(2) {
                *d = p.fresh_sym();
            }
        }
    }
    // the data input may be a baked tensor; `sizes`/`scales` are handled above
    baked::scan(p, n, at, Scan::Data);
}

fn rewrite(m: &mut Model, cx: &mut RewriteCx, ni: usize, p: i64) -> Result<()> {
    let (n, name) = node_at(m, ni);
    let parts = const_parts(m.graph(), &cx.ix, Some(cx.s0), input(&n, 3));
    if parts.is_empty() {
        return Ok(());
    }
    let Some(old) = old_dims(cx.s0, output(&n, 0)) else {
        return Ok(());
    };
    if old.len() != 4 {
        return Ok(());
    }
    let new_pair = cx
        .map_pair((old[2], old[3]), p, output(&n, 0))?
        .with_context(|| {
            format!(
                "{}: baked target size {}x{} matches no feature map; cannot re-derive it",
                describe(&n),
                old[2],
                old[3]
            )
        })?;
    let x1 = cx.s1.shape(input(&n, 0)).cloned().unwrap_or_default();
    let batch_known = matches!(x1.first(), Some(Dim::Known(_)));
    let full: Vec<i64> = vec![
        if batch_known {
            x1.first().and_then(Dim::known).unwrap_or(old[0])
        } else {
            old[0]
        },
        x1.get(1).and_then(Dim::known).unwrap_or(old[1]),
        new_pair.0,
        new_pair.1,
    ];
    for (cname, vals, off) in parts {
        let newv: Vec<i64> = (0..vals.len())
            .map(|k| full.get(off + k).copied().unwrap_or(vals[k]))
            .collect();
        if off < 2 && !batch_known {
            bail!(
                "{}: the Resize sizes bake the batch dimension; a symbolic batch is not possible",
                describe(&n)
            );
        }
        cx.write_int(m, &cname, &newv, &name, "Resize target size")?;
    }
    Ok(())
}
