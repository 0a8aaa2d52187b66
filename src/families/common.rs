//! Helpers shared by the families: stride sets and grid arithmetic, and the `[B, N, 5+C]` row
//! decode (corners from cx, cy, w, h; scores = objectness × class) in plain Rust.

use anyhow::{anyhow, ensure, Result};

use crate::builder::Builder;
use crate::graph::make_attr_i;
use crate::head::Head;
use crate::postprocess::{DecodeOptions, Decoded, HeadSpec};

/// Which stride sets a head may use.
pub const STRIDE_SETS: [&[i64]; 2] = [&[8, 16, 32], &[8, 16, 32, 64]];

/// Σ (h/s)·(w/s) over `strides`, `None` on overflow.
pub fn grid_total(strides: &[i64], h: i64, w: i64) -> Option<i64> {
    strides.iter().try_fold(0i64, |acc, s| {
        (h / s).checked_mul(w / s).and_then(|c| acc.checked_add(c))
    })
}

/// The stride set whose grids add up to `n` for an `h`×`w` input.
pub fn strides_for(n: i64, h: i64, w: i64) -> Option<Vec<i64>> {
    STRIDE_SETS
        .iter()
        .find(|ss| ss.iter().all(|s| h % s == 0 && w % s == 0) && grid_total(ss, h, w) == Some(n))
        .map(|s| s.to_vec())
}

fn too_large() -> anyhow::Error {
    anyhow!("tensor dimensions overflow")
}

/// Checks that `raw` holds `batch` × `n` rows of 5 + C values; returns the row length.
pub fn check_rows(raw: &[f32], batch: usize, n: usize, spec: &HeadSpec) -> Result<usize> {
    let row = spec.row_len()?;
    let bn = batch.checked_mul(n).ok_or_else(too_large)?;
    let expected = bn.checked_mul(row).ok_or_else(too_large)?;
    ensure!(
        raw.len() == expected,
        "raw head output has {} values, expected B*N*(5+C) = {batch}*{n}*{row} = {expected}",
        raw.len()
    );
    Ok(row)
}

/// The row decode of `[B, N, 5+C]` heads with objectness in column 4 (rows checked by
/// [`check_rows`]): `xywh(k, row)` gives the (cx, cy, w, h) of flat row `k`, then
///
/// ```text
/// x1 = cx - w * 0.5    y1 = cy - h * 0.5    x2 = cx + w * 0.5    y2 = cy + h * 0.5
/// score[c] = obj * cls[c]                                  // column 4 × column 5+c
/// ```
pub fn decode_rows(
    raw: &[f32],
    batch: usize,
    n: usize,
    spec: &HeadSpec,
    mut xywh: impl FnMut(usize, [f32; 4]) -> Result<[f32; 4]>,
) -> Result<Decoded> {
    let row = check_rows(raw, batch, n, spec)?;
    let c = spec.num_classes;
    let bn = batch.checked_mul(n).ok_or_else(too_large)?;
    let mut boxes = Vec::with_capacity(bn * 4);
    let mut scores = Vec::with_capacity(bn * c);
    let mut objectness = Vec::with_capacity(bn);
    let mut class_probs = Vec::with_capacity(bn * c);
    for (k, r) in raw.chunks_exact(row).enumerate() {
        let (head, cls) = r.split_at(5);
        let obj = head[4];
        let [cx, cy, w, h] = xywh(k, [head[0], head[1], head[2], head[3]])?;
        boxes.extend_from_slice(&[cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5]);
        objectness.push(obj);
        scores.extend(cls.iter().map(|&p| obj * p));
        class_probs.extend_from_slice(cls);
    }
    Ok(Decoded {
        batch,
        num_boxes: n,
        num_classes: c,
        boxes,
        scores,
        objectness,
        class_probs,
    })
}

/// Decoded heads (cx, cy, w, h in input pixels in columns 0-3): the columns as given, `|w|, |h|`
/// with `opts.order_corners` (so `x1 <= x2`, `y1 <= y2`; for a negative `w` this gives exactly
/// the swapped pair of the plain formula, and ONNX NonMaxSuppression orders each box's corners
/// itself, so the selections are identical).
pub fn decode_cxcywh(
    raw: &[f32],
    batch: usize,
    n: usize,
    spec: &HeadSpec,
    opts: DecodeOptions,
) -> Result<Decoded> {
    decode_rows(raw, batch, n, spec, |_, [c0, c1, c2, c3]| {
        Ok(if opts.order_corners {
            [c0, c1, c2.abs(), c3.abs()]
        } else {
            [c0, c1, c2, c3]
        })
    })
}

/// The four column groups of a `[B, N, 5+C]` head output, sliced in the appended graph.
pub struct Rows {
    /// Columns 0-1 `[B, N, 2]`.
    pub xy: String,
    /// Columns 2-3 `[B, N, 2]`.
    pub wh: String,
    /// Column 4 `[B, N, 1]`.
    pub obj: String,
    /// Columns 5… `[B, N, C]`.
    pub cls: String,
}

/// What a family's box decode gives the shared tail: centres `[B, N, 2]`, sizes `[B, N, 2]` and
/// the factor that makes half-sizes of them.
pub struct Centred {
    pub cxcy: String,
    pub wh: String,
    pub half: String,
}

/// The decode of `[B, N, 5+C]` heads with objectness in column 4: slices the rows, lets `boxes`
/// append the family's centres and sizes, then the shared tail
/// `x1y1 = cxcy - wh * half`, `x2y2 = cxcy + wh * half`, boxes = Concat, scores = obj × cls.
/// Returns (boxes [B,N,4] x1y1x2y2, scores [B,N,C]).
pub fn append_row_decode(
    b: &mut Builder,
    out: &str,
    c: i64,
    boxes: impl FnOnce(&mut Builder, &Rows) -> Result<Centred>,
) -> Result<(String, String)> {
    let rows = Rows {
        xy: b.slice(out, &[0], &[2], &[2]),
        wh: b.slice(out, &[2], &[4], &[2]),
        obj: b.slice(out, &[4], &[5], &[2]),
        cls: b.slice(out, &[5], &[5 + c], &[2]),
    };
    let Centred { cxcy, wh, half } = boxes(b, &rows)?;
    let hw = b.op("Mul", &[&wh, &half], vec![]);
    let x1y1 = b.op("Sub", &[&cxcy, &hw], vec![]);
    let x2y2 = b.op("Add", &[&cxcy, &hw], vec![]);
    let boxes = b.op("Concat", &[&x1y1, &x2y2], vec![make_attr_i("axis", 2)]);
    let scores = b.op("Mul", &[&rows.obj, &rows.cls], vec![]);
    Ok((boxes, scores))
}

/// The box decode of decoded heads (cx, cy, w, h in pixels), the graph of [`decode_cxcywh`]:
/// `|w|, |h|` so the corners come out ordered (x1 <= x2, y1 <= y2); for a negative w,
/// cx - |w|*0.5 == cx + w*0.5 exactly, i.e. the two corners swapped, and ONNX NMS orders corners
/// itself, so its selections are unchanged. `normalize`: boxes divided by the input size.
pub fn append_cxcywh(b: &mut Builder, head: &Head, rows: &Rows, normalize: bool) -> Centred {
    let (w, h) = (
        head.width.unwrap_or(1) as f32,
        head.height.unwrap_or(1) as f32,
    );
    let wha = b.op("Abs", &[&rows.wh], vec![]);
    if normalize {
        // boxes come decoded in pixels: one Mul scales the centres, the sizes' scale is
        // folded into the 0.5 of the corner conversion
        let inv = b.const_f32("inv_size", &[1, 1, 2], &[1.0 / w, 1.0 / h]);
        let cxcy = b.op("Mul", &[&rows.xy, &inv], vec![]);
        Centred {
            cxcy,
            wh: wha,
            half: b.const_f32("half_normalized", &[1, 1, 2], &[0.5 / w, 0.5 / h]),
        }
    } else {
        Centred {
            cxcy: rows.xy.clone(),
            wh: wha,
            half: b.const_f32("half", &[1], &[0.5]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_for_huge_sizes_does_not_overflow() {
        let big = 1_000_000_000_000i64; // 1e12: (h/8)*(w/8) overflows i64
        assert_eq!(strides_for(420, big, big), None);
        assert_eq!(strides_for(420, 128, 160), Some(vec![8, 16, 32]));
        assert_eq!(grid_total(&[8, 16, 32], i64::MAX - 7, i64::MAX - 7), None);
    }
}
