//! Output layouts of a merged model (SPEC §2, `--layout`): one file per layout behind
//! [`OutputLayout`], listed once in [`LAYOUTS`].
//!
//! A layout owns everything about its outputs: the names, what `merge` appends after the shared
//! decode + NMS to produce them ([`OutputLayout::append`]), how the Rust reference renders them
//! ([`OutputLayout::render`]), how a model's outputs are read back into detections
//! ([`OutputLayout::read`]), what each column holds ([`OutputLayout::column_kinds`]) and how a
//! merged graph is recognized as having it ([`from_outputs`]).
//!
//! [`Layout`] is the typed value passed around (it carries K for the fixed-size layouts);
//! [`Layout::def`] is the one place that maps it to its [`OutputLayout`].

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::builder::Builder;
use crate::npy::{Npy, NpyData};
use crate::onnx::{GraphProto, ValueInfoProto};
use crate::postprocess::{Decoded, Detection, Selection};
use crate::shape::{vi_shape, Dim};

pub mod decoded;
pub mod pinto;
pub mod trt;
pub mod ultralytics;

/// The output layouts, in the order a merged graph's outputs are matched against them.
pub static LAYOUTS: &[&dyn OutputLayout] = &[
    &pinto::PINTO,
    &pinto::PINTO_GOLDYOLO,
    &trt::TRT,
    &ultralytics::ULTRALYTICS,
    &decoded::DECODED,
];

/// The output layouts of a merged model (SPEC §2, `--layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `batchno_classid_score_x1y1x2y2` f32 `[N, 7]`: batch, class, score, x1, y1, x2, y2, in NMS
    /// selection order.
    Pinto,
    /// `batchno_classid_x1y1x2y2_score` f32 `[N, 7]`: batch, class, x1, y1, x2, y2, score, in NMS
    /// selection order.
    PintoGoldYolo,
    /// YOLOv6 `--end2end` convention: `num_dets` i32 `[B, 1]`, `det_boxes` f32 `[B, K, 4]`,
    /// `det_scores` f32 `[B, K]`, `det_classes` i32 `[B, K]`. Per image, detections sorted by
    /// descending score (stable: ties keep NMS output order), truncated to K = `max_det`, padded
    /// with zero boxes / scores and class -1.
    Trt {
        /// K.
        max_det: usize,
    },
    /// `output0` f32 `[B, K, 6]`: x1, y1, x2, y2, score, class; same order and truncation as
    /// [`Layout::Trt`], padded with all-zero rows.
    Ultralytics {
        /// K.
        max_det: usize,
    },
    /// No NMS: `boxes` f32 `[B, N, 4]` (x1, y1, x2, y2) and `scores` f32 `[B, N, C]`.
    Decoded,
}

impl Layout {
    /// The layout's definition (the one `match` on the variant).
    pub fn def(&self) -> &'static dyn OutputLayout {
        match self {
            Layout::Pinto => &pinto::PINTO,
            Layout::PintoGoldYolo => &pinto::PINTO_GOLDYOLO,
            Layout::Trt { .. } => &trt::TRT,
            Layout::Ultralytics { .. } => &ultralytics::ULTRALYTICS,
            Layout::Decoded => &decoded::DECODED,
        }
    }

    /// K of the fixed-size layouts (`trt`, `ultralytics`); `None` for the others.
    pub fn max_det(&self) -> Option<usize> {
        match *self {
            Layout::Trt { max_det } | Layout::Ultralytics { max_det } => Some(max_det),
            Layout::Pinto | Layout::PintoGoldYolo | Layout::Decoded => None,
        }
    }

    /// The same layout with K = `max_det` (unchanged for layouts without K).
    pub fn with_max_det(self, max_det: usize) -> Layout {
        self.def().with_k(max_det)
    }

    /// The CLI name (`pinto`, `pinto-goldyolo`, `trt`, `ultralytics`, `decoded`).
    pub fn name(&self) -> &'static str {
        self.def().name()
    }

    /// Graph output names, in output order.
    pub fn output_names(&self) -> &'static [&'static str] {
        self.def().output_names()
    }

    /// Whether the outputs come after an NMS (every layout but `decoded`).
    pub fn has_nms(&self) -> bool {
        self.def().keep().is_some()
    }

    /// What each column of `output` holds (one entry: every value of the output).
    pub fn column_kinds(&self, output: &str) -> Vec<ColumnKind> {
        self.def().column_kinds(output)
    }
}

/// The layout named `name` (its `--layout` / merge-record name), K = `max_det`.
pub fn by_name(name: &str, max_det: usize) -> Option<Layout> {
    LAYOUTS
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.with_k(max_det))
}

/// The layout of a merged graph, from its output names (K from the outputs' static shape).
pub fn from_outputs(g: &GraphProto) -> Result<Layout> {
    let names: Vec<&str> = g.output.iter().map(|o| o.name()).collect();
    let Some(def) = LAYOUTS.iter().find(|l| l.is_outputs(&names)) else {
        let all: Vec<&str> = LAYOUTS.iter().map(|l| l.name()).collect();
        bail!(
            "outputs {:?} are not one of postmerge's layouts ({})",
            names,
            all.join(", ")
        );
    };
    let k = match def.k_dim() {
        None => 0,
        Some((name, axis)) => {
            let o = g
                .output
                .iter()
                .find(|o| o.name() == name)
                .and_then(vi_shape);
            match o.as_ref().and_then(|s| s.get(axis)).and_then(Dim::known) {
                Some(k) if k > 0 => k as usize,
                _ => bail!("output `{name}` has no static K dimension"),
            }
        }
    };
    Ok(def.with_k(k))
}

/// What kind of value a column holds (how `check` compares it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ColumnKind {
    /// Indices and counts: equal or different.
    Exact,
    /// Box coordinates: within the box tolerance.
    Box,
    /// Scores: within the score tolerance.
    Score,
}

/// How a layout keeps the NMS selections whose score is above the threshold.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Keep {
    /// Drop the other rows (data-dependent row count: `NonZero` + `Gather`).
    Compact,
    /// Keep every row and a mask; the layout's per-image top-K leaves the masked rows out.
    Mask,
}

/// The tensors `merge` hands a layout to build its outputs from (names in the graph).
pub struct Appended<'a> {
    /// Decoded boxes `[B, N, 4]` (x1, y1, x2, y2).
    pub boxes: &'a str,
    /// Decoded scores `[B, N, C]`.
    pub scores: &'a str,
    /// N.
    pub n_boxes: i64,
    /// C.
    pub classes: i64,
    /// B as the model declares it.
    pub batch: &'a Dim,
    /// The head output (where a fixed-K layout takes the run-time B from).
    pub head_out: &'a str,
    /// K of the fixed-size layouts.
    pub k: i64,
    /// The NMS selections, for the layouts with [`OutputLayout::keep`].
    pub selected: Option<Selected>,
}

impl Appended<'_> {
    fn selected(&self) -> Result<&Selected> {
        self.selected
            .as_ref()
            .context("internal: the layout needs the NMS selections")
    }
}

/// The kept NMS selections, one row each.
pub struct Selected {
    /// Batch index `[M, 1]` int64.
    pub batch: String,
    /// Box `[M, 4]`.
    pub boxes: String,
    /// Score `[M]`.
    pub scores: String,
    /// Class `[M]` int64.
    pub classes: String,
    /// `[M]` bool: above the score threshold ([`Keep::Mask`] only).
    pub keep: Option<String>,
}

/// One output layout.
pub trait OutputLayout: Sync {
    /// The `--layout` name, also the merge record's `layout=`.
    fn name(&self) -> &'static str;
    /// Graph output names, in output order.
    fn output_names(&self) -> &'static [&'static str];
    /// The typed value, K = `max_det` where the layout has one.
    fn with_k(&self, max_det: usize) -> Layout;
    /// How the selections above the score threshold are kept; `None`: no NMS in the graph.
    fn keep(&self) -> Option<Keep>;
    /// Where K is in the outputs (output name, axis), for the fixed-size layouts.
    fn k_dim(&self) -> Option<(&'static str, usize)> {
        None
    }
    /// Whether a graph with these output names (in order) has this layout.
    fn is_outputs(&self, names: &[&str]) -> bool {
        names == self.output_names()
    }
    /// What each column of `output` holds (one entry: every value of the output).
    fn column_kinds(&self, output: &str) -> Vec<ColumnKind>;
    /// Appends the nodes producing the outputs; returns the graph outputs, in order.
    fn append(&self, b: &mut Builder, t: &Appended) -> Result<Vec<ValueInfoProto>>;
    /// The selections as the output tensors, exactly as the merged graph must produce them
    /// (names, dtypes, shapes, order, padding); `k` is K of the fixed-size layouts.
    fn render(
        &self,
        decoded: &Decoded,
        selections: &[Selection],
        k: usize,
    ) -> Result<Vec<OutputTensor>>;
    /// The outputs read back into detections (the inverse of [`OutputLayout::render`]).
    fn read(&self, outputs: &[OutputTensor]) -> Result<Vec<Detection>>;
}

/// One named output tensor of a layout.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    /// Graph output name.
    pub name: String,
    /// Shape and data.
    pub tensor: Npy,
}

/// Renders NMS selections as the output tensors of `layout`, exactly as the merged graph must
/// produce them (names, dtypes, shapes, order, padding). For [`Layout::Decoded`] the selections
/// are ignored.
pub fn render(
    layout: &Layout,
    decoded: &Decoded,
    selections: &[Selection],
) -> Result<Vec<OutputTensor>> {
    decoded.validate()?;
    layout
        .def()
        .render(decoded, selections, layout.max_det().unwrap_or(0))
}

/// Reads a model's layout outputs back into detections (the inverse of [`render`]).
///
/// `trt` uses the first `num_dets` entries per image (int32 or int64 tensors accepted);
/// `ultralytics` has no count, so its rows with a score > 0 are detections (padding rows are all
/// zero and a selected score is always above a non-negative threshold); `decoded` has no
/// detections and is an error.
pub fn detections_from_outputs(
    layout: &Layout,
    outputs: &[OutputTensor],
) -> Result<Vec<Detection>> {
    layout.def().read(outputs)
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the layout files
// ---------------------------------------------------------------------------------------------

fn too_large() -> anyhow::Error {
    anyhow!("tensor dimensions overflow")
}

fn tensor(name: &str, shape: Vec<usize>, data: NpyData) -> Result<OutputTensor> {
    Ok(OutputTensor {
        name: name.to_string(),
        tensor: Npy::new(shape, data)?,
    })
}

/// The `i`-th name of `names` (`?` past the end).
fn nth(names: &'static [&'static str], i: usize) -> &'static str {
    names.get(i).copied().unwrap_or("?")
}

fn find_output<'a>(outputs: &'a [OutputTensor], name: &str) -> Result<&'a Npy> {
    outputs
        .iter()
        .find(|o| o.name == name)
        .map(|o| &o.tensor)
        .ok_or_else(|| {
            let have: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
            anyhow!("output `{name}` not found (have {have:?})")
        })
}

fn f32_data<'a>(t: &'a Npy, name: &str) -> Result<&'a [f32]> {
    t.as_f32()
        .ok_or_else(|| anyhow!("output `{name}` is {}, expected float32", t.dtype()))
}

fn int_data(t: &Npy, name: &str) -> Result<Vec<i64>> {
    t.to_i64()
        .ok_or_else(|| anyhow!("output `{name}` is {}, expected an integer type", t.dtype()))
}

fn index_from_f32(v: f32, what: &str) -> Result<usize> {
    ensure!(
        v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 16_777_216.0,
        "{what} value {v} is not a valid index"
    );
    Ok(v as usize)
}

fn ensure_shape(t: &Npy, name: &str, rank: usize, last: &[(usize, usize)]) -> Result<()> {
    ensure!(
        t.shape.len() == rank,
        "output `{name}` has shape {:?}, expected rank {rank}",
        t.shape
    );
    for &(axis, dim) in last {
        ensure!(
            t.shape.get(axis) == Some(&dim),
            "output `{name}` has shape {:?}, expected dim {axis} = {dim}",
            t.shape
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::{detections, nms, NmsParams};

    const A: [f32; 4] = [0.0, 0.0, 10.0, 10.0];
    const C: [f32; 4] = [0.0, 0.0, 10.0, 5.0];
    const FAR: [f32; 4] = [100.0, 100.0, 110.0, 110.0];

    use crate::postprocess::test_support::{dec_batch, sel};

    fn two_image_case() -> (Decoded, Vec<Selection>) {
        let img0: &[([f32; 4], &[f32])] = &[(A, &[0.5, 0.1]), (FAR, &[0.9, 0.6]), (C, &[0.1, 0.5])];
        let img1: &[([f32; 4], &[f32])] = &[(A, &[0.1, 0.1]), (FAR, &[0.1, 0.1]), (C, &[0.1, 0.1])];
        let d = dec_batch(&[img0, img1]);
        let params = NmsParams {
            score_threshold: 0.25,
            iou_threshold: 0.45,
            max_per_class: 10,
            ..Default::default()
        };
        let s = nms(&d, &params).unwrap();
        // class 0: FAR (0.9), A (0.5); class 1: FAR (0.6), C (0.5) (IoU(FAR, C) = 0).
        assert_eq!(
            s,
            vec![sel(0, 0, 1), sel(0, 0, 0), sel(0, 1, 1), sel(0, 1, 2)]
        );
        (d, s)
    }

    fn f32s(t: &OutputTensor) -> &[f32] {
        t.tensor.as_f32().unwrap()
    }

    #[test]
    fn layout_pinto_rows_in_selection_order() {
        let (d, s) = two_image_case();
        let out = render(&Layout::Pinto, &d, &s).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "batchno_classid_score_x1y1x2y2");
        assert_eq!(out[0].tensor.shape, vec![4, 7]);
        assert_eq!(
            &f32s(&out[0])[..14],
            &[0.0, 0.0, 0.9, 100.0, 100.0, 110.0, 110.0, 0.0, 0.0, 0.5, 0.0, 0.0, 10.0, 10.0]
        );
        let out = render(&Layout::PintoGoldYolo, &d, &s).unwrap();
        assert_eq!(out[0].name, "batchno_classid_x1y1x2y2_score");
        assert_eq!(
            &f32s(&out[0])[21..28],
            &[0.0, 1.0, 0.0, 0.0, 10.0, 5.0, 0.5]
        );
        // Empty selection → [0, 7].
        let out = render(&Layout::Pinto, &d, &[]).unwrap();
        assert_eq!(out[0].tensor.shape, vec![0, 7]);
    }

    #[test]
    fn layout_trt_sorted_truncated_padded() {
        let (d, s) = two_image_case();
        let out = render(&Layout::Trt { max_det: 3 }, &d, &s).unwrap();
        let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            ["num_dets", "det_boxes", "det_scores", "det_classes"]
        );
        assert_eq!(
            out[0].tensor,
            Npy::new(vec![2, 1], NpyData::I32(vec![3, 0])).unwrap()
        );
        // Image 0 by descending score: FAR/0 (0.9), FAR/1 (0.6), then A/0 and C/1 tie at 0.5 →
        // NMS order keeps A/0 (class 0 came first); C/1 is cut by K = 3.
        assert_eq!(f32s(&out[2]), &[0.9, 0.6, 0.5, 0.0, 0.0, 0.0]);
        assert_eq!(out[3].tensor.data, NpyData::I32(vec![0, 1, 0, -1, -1, -1]));
        assert_eq!(out[1].tensor.shape, vec![2, 3, 4]);
        assert_eq!(&f32s(&out[1])[8..12], &A);
        assert!(f32s(&out[1])[12..].iter().all(|&v| v == 0.0));
        // Read back.
        let back = detections_from_outputs(&Layout::Trt { max_det: 3 }, &out).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!((back[2].class, back[2].score, back[2].bbox()), (0, 0.5, A));
    }

    #[test]
    fn layout_ultralytics_and_decoded() {
        let (d, s) = two_image_case();
        let out = render(&Layout::Ultralytics { max_det: 5 }, &d, &s).unwrap();
        assert_eq!(out[0].name, "output0");
        assert_eq!(out[0].tensor.shape, vec![2, 5, 6]);
        let v = f32s(&out[0]);
        assert_eq!(&v[..6], &[100.0, 100.0, 110.0, 110.0, 0.9, 0.0]);
        assert_eq!(&v[18..24], &[0.0, 0.0, 10.0, 5.0, 0.5, 1.0]);
        assert!(v[24..].iter().all(|&x| x == 0.0));
        let back = detections_from_outputs(&Layout::Ultralytics { max_det: 5 }, &out).unwrap();
        assert_eq!(back.len(), 4);
        let out = render(&Layout::Decoded, &d, &s).unwrap();
        assert_eq!(out[0].tensor.shape, vec![2, 3, 4]);
        assert_eq!(out[1].tensor.shape, vec![2, 3, 2]);
        assert!(detections_from_outputs(&Layout::Decoded, &out).is_err());
    }

    #[test]
    fn layouts_read_back_to_the_same_detections() {
        let (d, s) = two_image_case();
        let dets = detections(&d, &s).unwrap();
        for layout in [Layout::Pinto, Layout::PintoGoldYolo] {
            let back = detections_from_outputs(&layout, &render(&layout, &d, &s).unwrap()).unwrap();
            assert_eq!(back, dets);
        }
        // Wrong names / shapes / dtypes are errors.
        let out = render(&Layout::Pinto, &d, &s).unwrap();
        assert!(detections_from_outputs(&Layout::PintoGoldYolo, &out).is_err());
        let mut bad = out.clone();
        bad[0].tensor = Npy::new(vec![4, 7], NpyData::I64(vec![0; 28])).unwrap();
        assert!(detections_from_outputs(&Layout::Pinto, &bad).is_err());
        let mut bad = out;
        bad[0].tensor = Npy::new(vec![1, 7], NpyData::F32(vec![-1.0; 7])).unwrap();
        assert!(detections_from_outputs(&Layout::Pinto, &bad).is_err());
    }

    #[test]
    fn registry_names_are_unique_and_round_trip() {
        for (i, l) in LAYOUTS.iter().enumerate() {
            assert!(
                LAYOUTS[..i].iter().all(|o| o.name() != l.name()),
                "duplicate layout {}",
                l.name()
            );
            let v = by_name(l.name(), 7).unwrap();
            assert_eq!(v.name(), l.name());
            assert_eq!(v.def().output_names(), l.output_names());
            assert_eq!(v.max_det().is_some(), l.k_dim().is_some());
        }
        assert_eq!(by_name("trt", 7), Some(Layout::Trt { max_det: 7 }));
        assert_eq!(by_name("pinto", 7), Some(Layout::Pinto));
        assert_eq!(by_name("nope", 7), None);
        assert_eq!(
            Layout::Ultralytics { max_det: 1 }.with_max_det(9),
            Layout::Ultralytics { max_det: 9 }
        );
        assert_eq!(Layout::Decoded.with_max_det(9), Layout::Decoded);
        assert!(!Layout::Decoded.has_nms());
        assert!(Layout::Pinto.has_nms());
    }

    #[test]
    fn column_kinds_per_output() {
        use ColumnKind::*;
        assert_eq!(
            Layout::Pinto.column_kinds("batchno_classid_score_x1y1x2y2"),
            [Exact, Exact, Score, Box, Box, Box, Box]
        );
        assert_eq!(
            Layout::PintoGoldYolo.column_kinds("x"),
            [Exact, Exact, Box, Box, Box, Box, Score]
        );
        let trt = Layout::Trt { max_det: 1 };
        assert_eq!(trt.column_kinds("det_boxes"), [Box]);
        assert_eq!(trt.column_kinds("det_scores"), [Score]);
        assert_eq!(trt.column_kinds("num_dets"), [Exact]);
        assert_eq!(trt.column_kinds("det_classes"), [Exact]);
        assert_eq!(
            Layout::Ultralytics { max_det: 1 }.column_kinds("output0"),
            [Box, Box, Box, Box, Score, Exact]
        );
        assert_eq!(Layout::Decoded.column_kinds("boxes"), [Box]);
        assert_eq!(Layout::Decoded.column_kinds("scores"), [Score]);
    }
}
