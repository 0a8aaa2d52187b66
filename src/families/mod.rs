//! Detector families: one file per family holding everything family-specific, behind
//! [`DetectorFamily`], and the registry [`FAMILIES`].
//!
//! A family is identified by its [`Family`] id (the `--family` / serde / merge-record id:
//! `yolox-raw`, `yolox-decoded`, `gold-yolo`); [`Family::def`] resolves an id to its definition.
//! Code outside this module never matches on a family: it asks the definition.
//!
//! "Already merged" and "TensorRT plugin" are states of a graph, not families: [`Recognized`]
//! says which of them [`recognize`] found (or which family's raw head).
//!
//! Adding a family: its file here, its variant and one registry arm in [`Family::def`] (plus its
//! place in the recognition order [`FAMILIES`]), and its tests.

use anyhow::Result;
use serde::{Serialize, Serializer};

use crate::builder::Builder;
use crate::graph::GraphIndex;
use crate::head::Head;
use crate::model::Model;
use crate::postprocess::{DecodeOptions, Decoded, HeadSpec, Layout, Selection};

pub mod common;
pub mod gold_yolo;
pub mod head;
pub mod yolox;

pub use head::recognize;

/// A registered detector family (its id). `postprocess::HeadKind` is this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// YOLOX raw head: xy offsets in grid units, log-size wh, sigmoid obj and cls.
    YoloxRaw,
    /// YOLOX with `--decode_in_inference`: cx, cy, w, h already in pixels.
    YoloxDecoded,
    /// Gold-YOLO / YOLOv6 v3: decoded cx, cy, w, h in pixels, column 4 constant 1.
    GoldYolo,
}

/// The families in recognition order: the first whose rule matches a head decides.
pub const FAMILIES: &[Family] = &[Family::GoldYolo, Family::YoloxDecoded, Family::YoloxRaw];

impl Family {
    /// The registry: a family id's definition.
    pub fn def(self) -> &'static dyn DetectorFamily {
        match self {
            Family::YoloxRaw => &yolox::RAW,
            Family::YoloxDecoded => &yolox::DECODED,
            Family::GoldYolo => &gold_yolo::GOLD_YOLO,
        }
    }

    /// The stable id (`yolox-raw`, `yolox-decoded`, `gold-yolo`).
    pub fn id(self) -> &'static str {
        self.def().id()
    }

    /// The stable id (the old `HeadKind::name`).
    pub fn name(self) -> &'static str {
        self.id()
    }

    /// `inspect`'s one-line description.
    pub fn label(self) -> &'static str {
        self.def().label()
    }

    /// The family with this id.
    pub fn from_id(id: &str) -> Option<Family> {
        FAMILIES.iter().copied().find(|f| f.id() == id)
    }

    /// The family a merged model without a merge record was most likely made from, judged by its
    /// layout: the one family whose default layout it is, else YOLOX raw (the most common export;
    /// YOLOX raw and decoded share their preprocessing).
    pub fn from_default_layout(layout: &Layout) -> Family {
        let mut own = FAMILIES
            .iter()
            .copied()
            .filter(|f| f.def().default_layout() == *layout);
        match (own.next(), own.next()) {
            (Some(f), None) => f,
            _ => Family::YoloxRaw,
        }
    }
}

/// The family with this id (`yolox-raw`, …), as `merge` records it.
pub fn by_id(id: &str) -> Option<Family> {
    Family::from_id(id)
}

/// [`Family::from_default_layout`]: the family a merged model without a record was most likely
/// made from.
pub fn for_layout(layout: &Layout) -> Family {
    Family::from_default_layout(layout)
}

/// A candidate head output, as recognition hands it to each family's rule.
pub struct Candidate<'a> {
    pub model: &'a Model,
    pub index: &'a GraphIndex,
    /// The output's name.
    pub output: &'a str,
    /// Node indices of the output's ancestors (sorted).
    pub ancestors: &'a [usize],
    /// "N = … for strides … at HxW", for the rule text.
    pub strides_txt: &'a str,
}

/// What a family is: everything family-specific, behind one trait (one implementation per file).
pub trait DetectorFamily: Sync {
    /// Its id in the registry.
    fn family(&self) -> Family;
    /// The stable id: `--family`, the merge record, serde.
    fn id(&self) -> &'static str;
    /// `inspect`'s one-liner.
    fn label(&self) -> &'static str;
    /// Graph rule: is this candidate output this family's head? `Some(rule text naming nodes)`.
    fn recognize(&self, cand: &Candidate<'_>) -> Result<Option<String>>;
    /// What the raw output means.
    fn raw(&self) -> RawLayout;
    /// The reference decode: the raw head output (flat, C order) → corner boxes and scores, the
    /// same arithmetic as the decode `merge` appends ([`DecodeOptions::MERGED`]) or as the
    /// upstream project computes it ([`DecodeOptions::OFFICIAL`]). Errors, never panics, on
    /// inconsistent sizes.
    fn decode(
        &self,
        raw: &[f32],
        batch: usize,
        n: usize,
        spec: &HeadSpec,
        opts: DecodeOptions,
    ) -> Result<Decoded>;
    /// The upstream project's own post-process (the one its `dets.json` references come from)
    /// at score threshold `conf` and IoU threshold `iou`.
    fn official(&self, d: &Decoded, conf: f32, iou: f32) -> Result<Vec<Selection>>;
    /// The decode `merge` appends after head output `out` (`n` boxes, `c` classes): returns
    /// (boxes [B,N,4] x1y1x2y2, scores [B,N,C]); `normalize`: boxes divided by the input size.
    /// Mirrors [`DetectorFamily::decode`] op for op.
    fn append_decode(
        &self,
        b: &mut Builder,
        head: &Head,
        out: &str,
        n: i64,
        c: i64,
        normalize: bool,
    ) -> Result<(String, String)>;
    /// How a photo becomes the export's float input.
    fn preprocess(&self) -> Preprocess;
    /// The output layout `merge` appends when none is asked for.
    fn default_layout(&self) -> Layout;
    /// Whether the export bakes nothing of its input size, so it runs at any size the strides
    /// divide (`check` then runs the original at the merged model's size).
    fn runs_at_any_size(&self) -> bool;
}

/// A family's preprocessing convention: photo → letterboxed picture → float NCHW tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preprocess {
    /// Channel order of the tensor: RGB (else BGR).
    pub rgb: bool,
    /// Pixel values divided by 255 (a float32 division), else kept 0..255.
    pub div255: bool,
    /// Letterbox centred (yolov6: padding `round(d / 2 - 0.1)` left and top), else top-left.
    pub centred: bool,
    /// The resized size rounded, else truncated.
    pub round_size: bool,
    /// Grey level of the padding.
    pub pad: u8,
}

impl Preprocess {
    /// How `check` names it.
    pub fn describe(&self) -> String {
        format!(
            "{} {}, {} letterbox",
            if self.rgb { "RGB" } else { "BGR" },
            if self.div255 { "/255" } else { "0..255" },
            if self.centred { "centred" } else { "top-left" }
        )
    }
}

/// How a raw head output is laid out (the families of today: `[B, N, 5+C]` rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLayout {
    /// Box encoding of the first four columns.
    pub boxes: BoxEncoding,
    /// Column of the objectness score (`None`: the family has none).
    pub objectness: Option<usize>,
    /// First class-score column.
    pub classes_from: usize,
}

/// What the four box columns hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxEncoding {
    /// Offsets in grid cells and log-sizes (decode: add the grid, exp, scale by the stride).
    GridOffsetLogSize,
    /// cx, cy, w, h in input pixels.
    CxCyWhPixels,
}

/// What recognition found in a graph: a registered family's raw head, or a state of the graph.
/// `head::Family` is this type (its old variants are the associated constants below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recognized {
    /// The raw (un-merged) head of a registered family.
    Raw(Family),
    /// NMS already in the graph (ours, PINTO's, YOLOv6 `--end2end --ort`).
    Merged,
    /// TensorRT plugin NMS (EfficientNMS_TRT & co): not runnable by ONNX runtimes.
    TrtPlugin,
}

#[allow(non_upper_case_globals)]
impl Recognized {
    /// The old `head::Family::YoloxRaw`.
    pub const YoloxRaw: Recognized = Recognized::Raw(Family::YoloxRaw);
    /// The old `head::Family::YoloxDecoded`.
    pub const YoloxDecoded: Recognized = Recognized::Raw(Family::YoloxDecoded);
    /// The old `head::Family::GoldYolo`.
    pub const GoldYolo: Recognized = Recognized::Raw(Family::GoldYolo);
}

impl Recognized {
    /// The family of a raw head, `None` for a merged or TensorRT graph.
    pub fn family(self) -> Option<Family> {
        match self {
            Recognized::Raw(f) => Some(f),
            Recognized::Merged | Recognized::TrtPlugin => None,
        }
    }

    /// The id `inspect --json` reports: the family id, `merged` or `trt-plugin`.
    pub fn id(self) -> &'static str {
        match self {
            Recognized::Raw(f) => f.id(),
            Recognized::Merged => "merged",
            Recognized::TrtPlugin => "trt-plugin",
        }
    }

    /// `inspect`'s one-line description.
    pub fn label(self) -> &'static str {
        match self {
            Recognized::Raw(f) => f.label(),
            Recognized::Merged => "already merged (NonMaxSuppression in the graph)",
            Recognized::TrtPlugin => "TensorRT plugin NMS graph",
        }
    }
}

impl From<Family> for Recognized {
    fn from(f: Family) -> Recognized {
        Recognized::Raw(f)
    }
}

impl PartialEq<Family> for Recognized {
    fn eq(&self, other: &Family) -> bool {
        *self == Recognized::Raw(*other)
    }
}

impl Serialize for Recognized {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// A family id, or a recognition outcome that names one (the image and frame helpers take
/// either, so the old `head::Family` values keep working).
pub trait AsFamily: Copy {
    /// The family, or why there is none.
    fn as_family(self) -> Result<Family>;
}

impl AsFamily for Family {
    fn as_family(self) -> Result<Family> {
        Ok(self)
    }
}

impl AsFamily for Recognized {
    fn as_family(self) -> Result<Family> {
        self.family()
            .ok_or_else(|| anyhow::anyhow!("{} is not a detector family", self.label()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        for (i, &f) in FAMILIES.iter().enumerate() {
            assert_eq!(f.def().family(), f);
            assert_eq!(serde_json::to_value(f).unwrap(), f.id());
            assert_eq!(Family::from_id(f.id()), Some(f));
            assert!(!FAMILIES[..i].contains(&f), "{} registered twice", f.id());
        }
        for f in [Family::YoloxRaw, Family::YoloxDecoded, Family::GoldYolo] {
            assert!(FAMILIES.contains(&f), "{} not in FAMILIES", f.id());
        }
        assert_eq!(serde_json::to_value(Recognized::Merged).unwrap(), "merged");
        assert_eq!(
            serde_json::to_value(Recognized::TrtPlugin).unwrap(),
            "trt-plugin"
        );
    }
}
