//! `pinto` and `pinto-goldyolo`: one f32 `[N, 7]` output of the kept NMS selections over the
//! whole batch, in selection order (N is data-dependent): batch, class, then score and box in
//! the order of the layout's [`Pinto::score_first`] (PINTO's published YOLOX / Gold-YOLO files).

use anyhow::Result;

use super::{
    ensure_shape, f32_data, find_output, index_from_f32, nth, tensor, Appended, ColumnKind, Keep,
    Layout, OutputLayout, OutputTensor,
};
use crate::builder::Builder;
use crate::graph::make_attr_i;
use crate::npy::NpyData;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::ValueInfoProto;
use crate::postprocess::{detections, Decoded, Detection, Selection};
use crate::shape::{make_vi, Dim};

/// A PINTO-style `[N, 7]` layout.
pub struct Pinto {
    name: &'static str,
    outputs: &'static [&'static str],
    /// `batch, class, score, x1, y1, x2, y2` (YOLOX) rather than `batch, class, x1, y1, x2, y2,
    /// score` (Gold-YOLO).
    pub score_first: bool,
}

/// `pinto`: `batchno_classid_score_x1y1x2y2`.
pub static PINTO: Pinto = Pinto {
    name: "pinto",
    outputs: &["batchno_classid_score_x1y1x2y2"],
    score_first: true,
};

/// `pinto-goldyolo`: `batchno_classid_x1y1x2y2_score`.
pub static PINTO_GOLDYOLO: Pinto = Pinto {
    name: "pinto-goldyolo",
    outputs: &["batchno_classid_x1y1x2y2_score"],
    score_first: false,
};

impl OutputLayout for Pinto {
    fn name(&self) -> &'static str {
        self.name
    }

    fn output_names(&self) -> &'static [&'static str] {
        self.outputs
    }

    fn with_k(&self, _max_det: usize) -> Layout {
        if self.score_first {
            Layout::Pinto
        } else {
            Layout::PintoGoldYolo
        }
    }

    fn keep(&self) -> Option<Keep> {
        Some(Keep::Compact)
    }

    /// The `[N, 7]` output among any others (PINTO's files may keep extra outputs).
    fn is_outputs(&self, names: &[&str]) -> bool {
        names.contains(&nth(self.outputs, 0))
    }

    fn column_kinds(&self, _output: &str) -> Vec<ColumnKind> {
        use ColumnKind::*;
        if self.score_first {
            vec![Exact, Exact, Score, Box, Box, Box, Box]
        } else {
            vec![Exact, Exact, Box, Box, Box, Box, Score]
        }
    }

    fn append(&self, b: &mut Builder, t: &Appended) -> Result<Vec<ValueInfoProto>> {
        let s = t.selected()?;
        let bf = b.cast(&s.batch, DataType::Float);
        let cls1 = b.unsqueeze(&s.classes, &[1]);
        let cf = b.cast(&cls1, DataType::Float);
        let sc = b.unsqueeze(&s.scores, &[1]);
        let name = nth(self.outputs, 0);
        let parts: Vec<&str> = if self.score_first {
            vec![&bf, &cf, &sc, &s.boxes]
        } else {
            vec![&bf, &cf, &s.boxes, &sc]
        };
        let node = format!("{}output_concat", b.prefix);
        b.op_named(
            "Concat",
            &node,
            &parts,
            &[name],
            vec![make_attr_i("axis", 1)],
        );
        Ok(vec![make_vi(
            name,
            DataType::Float as i32,
            &[Dim::Sym("N".into()), Dim::Known(7)],
        )])
    }

    fn render(
        &self,
        decoded: &Decoded,
        selections: &[Selection],
        _k: usize,
    ) -> Result<Vec<OutputTensor>> {
        let dets = detections(decoded, selections)?;
        let mut data = Vec::with_capacity(dets.len() * 7);
        for d in &dets {
            let (b, c) = (d.batch as f32, d.class as f32);
            if self.score_first {
                data.extend_from_slice(&[b, c, d.score, d.x1, d.y1, d.x2, d.y2]);
            } else {
                data.extend_from_slice(&[b, c, d.x1, d.y1, d.x2, d.y2, d.score]);
            }
        }
        Ok(vec![tensor(
            nth(self.outputs, 0),
            vec![dets.len(), 7],
            NpyData::F32(data),
        )?])
    }

    fn read(&self, outputs: &[OutputTensor]) -> Result<Vec<Detection>> {
        let name = nth(self.outputs, 0);
        let t = find_output(outputs, name)?;
        ensure_shape(t, name, 2, &[(1, 7)])?;
        let mut out = Vec::new();
        for row in f32_data(t, name)?.chunks_exact(7) {
            let (batch, class) = (
                index_from_f32(row[0], "batch")?,
                index_from_f32(row[1], "class")?,
            );
            let (score, bx) = if self.score_first {
                (row[2], [row[3], row[4], row[5], row[6]])
            } else {
                (row[6], [row[2], row[3], row[4], row[5]])
            };
            out.push(Detection {
                batch,
                class,
                score,
                x1: bx[0],
                y1: bx[1],
                x2: bx[2],
                y2: bx[3],
            });
        }
        Ok(out)
    }
}
