//! `ultralytics`: `output0` f32 `[B, K, 6]`, x1, y1, x2, y2, score, class per row; the same
//! per-image order and truncation as `trt`, padded with all-zero rows.

use anyhow::Result;

use super::trt::{append_topk_selected, top_k_per_image};
use super::{
    ensure_shape, f32_data, find_output, index_from_f32, nth, tensor, too_large, Appended,
    ColumnKind, Keep, Layout, OutputLayout, OutputTensor,
};
use crate::builder::Builder;
use crate::graph::make_attr_i;
use crate::npy::NpyData;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::ValueInfoProto;
use crate::postprocess::{detections, Decoded, Detection, Selection};
use crate::shape::{make_vi, Dim};

/// The `ultralytics` layout.
pub struct Ultralytics;

/// `ultralytics`.
pub static ULTRALYTICS: Ultralytics = Ultralytics;

const OUTPUTS: &[&str] = &["output0"];

impl OutputLayout for Ultralytics {
    fn name(&self) -> &'static str {
        "ultralytics"
    }

    fn output_names(&self) -> &'static [&'static str] {
        OUTPUTS
    }

    fn with_k(&self, max_det: usize) -> Layout {
        Layout::Ultralytics { max_det }
    }

    fn keep(&self) -> Option<Keep> {
        Some(Keep::Mask)
    }

    fn k_dim(&self) -> Option<(&'static str, usize)> {
        Some(("output0", 1))
    }

    fn column_kinds(&self, _output: &str) -> Vec<ColumnKind> {
        use ColumnKind::*;
        vec![Box, Box, Box, Box, Score, Exact]
    }

    fn append(&self, b: &mut Builder, t: &Appended) -> Result<Vec<ValueInfoProto>> {
        let (_nd, db, ds, dc) = append_topk_selected(b, t)?;
        // x1,y1,x2,y2,score,class; padding rows all zero
        let s3 = b.unsqueeze(&ds, &[2]);
        // -1 padding -> 0; Max on floats (integer Max needs opset 12)
        let cf0 = b.cast(&dc, DataType::Float);
        let zerof_out = b.const_f32("zero_class", &[1], &[0.0]);
        let cf = b.op("Max", &[&cf0, &zerof_out], vec![]);
        let c3 = b.unsqueeze(&cf, &[2]);
        let name = nth(OUTPUTS, 0);
        let node = format!("{}{name}", b.prefix);
        b.op_named(
            "Concat",
            &node,
            &[&db, &s3, &c3],
            &[name],
            vec![make_attr_i("axis", 2)],
        );
        Ok(vec![make_vi(
            name,
            DataType::Float as i32,
            &[t.batch.clone(), Dim::Known(t.k), Dim::Known(6)],
        )])
    }

    fn render(
        &self,
        decoded: &Decoded,
        selections: &[Selection],
        k: usize,
    ) -> Result<Vec<OutputTensor>> {
        let per = top_k_per_image(decoded.batch, &detections(decoded, selections)?, k);
        let bk = decoded.batch.checked_mul(k).ok_or_else(too_large)?;
        let mut data = vec![0.0f32; bk.checked_mul(6).ok_or_else(too_large)?];
        for (b, dets) in per.iter().enumerate() {
            for (j, d) in dets.iter().enumerate() {
                let slot = b * k + j;
                if let Some(dst) = data.get_mut(slot * 6..slot * 6 + 6) {
                    dst.copy_from_slice(&[d.x1, d.y1, d.x2, d.y2, d.score, d.class as f32]);
                }
            }
        }
        Ok(vec![tensor(
            nth(OUTPUTS, 0),
            vec![decoded.batch, k, 6],
            NpyData::F32(data),
        )?])
    }

    fn read(&self, outputs: &[OutputTensor]) -> Result<Vec<Detection>> {
        let name = nth(OUTPUTS, 0);
        let t = find_output(outputs, name)?;
        ensure_shape(t, name, 3, &[(2, 6)])?;
        let k = t.shape.get(1).copied().unwrap_or(0);
        let mut out = Vec::new();
        for (r, row) in f32_data(t, name)?.chunks_exact(6).enumerate() {
            if row[4] > 0.0 {
                let batch = r.checked_div(k).unwrap_or(0);
                let class = index_from_f32(row[5], "class")?;
                out.push(Detection {
                    batch,
                    class,
                    score: row[4],
                    x1: row[0],
                    y1: row[1],
                    x2: row[2],
                    y2: row[3],
                });
            }
        }
        Ok(out)
    }
}
