//! `decoded`: no NMS, `boxes` f32 `[B, N, 4]` (x1, y1, x2, y2) and `scores` f32 `[B, N, C]`, one
//! row per anchor (for INT8 backbones with NMS on the host; `quant-prep`'s default).

use anyhow::{bail, Result};

use super::{nth, tensor, Appended, ColumnKind, Keep, Layout, OutputLayout, OutputTensor};
use crate::builder::Builder;
use crate::npy::NpyData;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::ValueInfoProto;
use crate::postprocess::{Decoded, Detection, Selection};
use crate::shape::{make_vi, Dim};

/// The `decoded` layout.
pub struct DecodedLayout;

/// `decoded`.
pub static DECODED: DecodedLayout = DecodedLayout;

const OUTPUTS: &[&str] = &["boxes", "scores"];

impl OutputLayout for DecodedLayout {
    fn name(&self) -> &'static str {
        "decoded"
    }

    fn output_names(&self) -> &'static [&'static str] {
        OUTPUTS
    }

    fn with_k(&self, _max_det: usize) -> Layout {
        Layout::Decoded
    }

    fn keep(&self) -> Option<Keep> {
        None
    }

    fn column_kinds(&self, output: &str) -> Vec<ColumnKind> {
        if output == "boxes" {
            vec![ColumnKind::Box]
        } else {
            vec![ColumnKind::Score]
        }
    }

    fn append(&self, b: &mut Builder, t: &Appended) -> Result<Vec<ValueInfoProto>> {
        for (name, x) in OUTPUTS.iter().zip([t.boxes, t.scores]) {
            let node = format!("{}{name}", b.prefix);
            b.op_named("Identity", &node, &[x], &[*name], vec![]);
        }
        let f32t = DataType::Float as i32;
        let n = Dim::Known(t.n_boxes);
        Ok(vec![
            make_vi("boxes", f32t, &[t.batch.clone(), n.clone(), Dim::Known(4)]),
            make_vi("scores", f32t, &[t.batch.clone(), n, Dim::Known(t.classes)]),
        ])
    }

    fn render(
        &self,
        decoded: &Decoded,
        _selections: &[Selection],
        _k: usize,
    ) -> Result<Vec<OutputTensor>> {
        Ok(vec![
            tensor(
                nth(OUTPUTS, 0),
                vec![decoded.batch, decoded.num_boxes, 4],
                NpyData::F32(decoded.boxes.clone()),
            )?,
            tensor(
                nth(OUTPUTS, 1),
                vec![decoded.batch, decoded.num_boxes, decoded.num_classes],
                NpyData::F32(decoded.scores.clone()),
            )?,
        ])
    }

    fn read(&self, _outputs: &[OutputTensor]) -> Result<Vec<Detection>> {
        bail!("the `decoded` layout has no NMS; run `nms` on its tensors")
    }
}
