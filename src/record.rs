//! The merge record: what `merge` did, stored in the model as the [`KEY`] metadata entry and read
//! back by `check`, `detect`, `set` and the input-format pass. One writer
//! ([`MergeRecord::to_metadata_string`]) and one parser ([`MergeRecord::parse`]).
//!
//! The stored form is `;`-separated `key=value` entries, e.g.
//! `family=yolox-raw; layout=pinto; score=0.25; iou=0.4; max_per_class=20; agnostic=false;
//! thresholds=const; max_det=100` (then `; boxes=normalized/HxW` for `merge --quant-prep`).
//!
//! Reading is lenient, as it always was: entries are trimmed, empty ones skipped, a later entry
//! of a key wins, and an entry whose key is unknown or whose value does not parse leaves its
//! field `None` and is kept verbatim in [`MergeRecord::other`], so `set` writes it back (after the
//! known keys, which are always written in the order above).

use serde::Serialize;

use crate::layouts::Layout;
use crate::model::Model;

/// The metadata key of the merge record.
pub const KEY: &str = "postmerge.merge";

/// How NMS thresholds are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Thresholds {
    /// Named initializers (rewritable in the file with `set` or sam4onnx).
    #[default]
    Const,
    /// Graph inputs with same-named initializers as defaults.
    Inputs,
}

impl Thresholds {
    /// The recorded value (`const`, `inputs`).
    pub fn id(self) -> &'static str {
        match self {
            Thresholds::Const => "const",
            Thresholds::Inputs => "inputs",
        }
    }

    fn parse(s: &str) -> Option<Thresholds> {
        [Thresholds::Const, Thresholds::Inputs]
            .into_iter()
            .find(|t| t.id() == s)
    }
}

/// The input size the boxes are normalized by (`boxes=normalized/HxW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalized {
    pub height: i64,
    pub width: i64,
}

/// What `merge` recorded (`set` keeps the thresholds up to date). A field is `None` when the
/// stored record does not have it (or has a value that does not parse).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeRecord {
    /// The family id (`yolox-raw`, `yolox-decoded`, `gold-yolo`).
    pub family: Option<String>,
    /// The layout name (`pinto`, … ; see [`crate::layouts::LAYOUTS`]).
    pub layout: Option<String>,
    pub score: Option<f32>,
    pub iou: Option<f32>,
    pub max_per_class: Option<usize>,
    pub agnostic: Option<bool>,
    pub thresholds: Option<Thresholds>,
    /// K of the fixed-size layouts (recorded for every layout).
    pub max_det: Option<usize>,
    /// Boxes normalized to [0, 1] by this input size.
    pub normalized: Option<Normalized>,
    /// Entries not understood (unknown key, or a value that does not parse), verbatim.
    pub other: Vec<String>,
}

impl MergeRecord {
    /// Parses a stored record (never fails; see the module doc).
    pub fn parse(s: &str) -> MergeRecord {
        let mut r = MergeRecord::default();
        for entry in s.split(';') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some((k, v)) = entry.split_once('=') else {
                r.other.push(entry.to_string());
                continue;
            };
            let understood = match k {
                "family" => {
                    r.family = Some(v.to_string());
                    true
                }
                "layout" => {
                    r.layout = Some(v.to_string());
                    true
                }
                "score" => set(&mut r.score, v.parse().ok()),
                "iou" => set(&mut r.iou, v.parse().ok()),
                "max_per_class" => set(&mut r.max_per_class, v.parse().ok()),
                "agnostic" => set(&mut r.agnostic, v.parse().ok()),
                "thresholds" => set(&mut r.thresholds, Thresholds::parse(v)),
                "max_det" => set(&mut r.max_det, v.parse().ok()),
                "boxes" => set(&mut r.normalized, parse_normalized(v)),
                _ => false,
            };
            if !understood {
                r.other.push(entry.to_string());
            }
        }
        r
    }

    /// The stored form: the known fields that are set, in the order of the module doc, then
    /// [`MergeRecord::other`] (less entries of a known key whose field is set).
    pub fn to_metadata_string(&self) -> String {
        let mut e: Vec<String> = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                e.push(format!("{k}={v}"));
            }
        };
        put("family", self.family.clone());
        put("layout", self.layout.clone());
        put("score", self.score.map(|v| v.to_string()));
        put("iou", self.iou.map(|v| v.to_string()));
        put("max_per_class", self.max_per_class.map(|v| v.to_string()));
        put("agnostic", self.agnostic.map(|v| v.to_string()));
        put("thresholds", self.thresholds.map(|t| t.id().to_string()));
        put("max_det", self.max_det.map(|v| v.to_string()));
        put(
            "boxes",
            self.normalized
                .map(|n| format!("normalized/{}x{}", n.height, n.width)),
        );
        for o in &self.other {
            let key = o.split_once('=').map(|(k, _)| k);
            if key.is_some_and(|k| self.has(k)) {
                continue;
            }
            e.push(o.clone());
        }
        e.join("; ")
    }

    /// Whether the known key `k` has a value.
    fn has(&self, k: &str) -> bool {
        match k {
            "family" => self.family.is_some(),
            "layout" => self.layout.is_some(),
            "score" => self.score.is_some(),
            "iou" => self.iou.is_some(),
            "max_per_class" => self.max_per_class.is_some(),
            "agnostic" => self.agnostic.is_some(),
            "thresholds" => self.thresholds.is_some(),
            "max_det" => self.max_det.is_some(),
            "boxes" => self.normalized.is_some(),
            _ => false,
        }
    }

    /// The record stored in a model, or `None` when it has none.
    pub fn of(m: &Model) -> Option<MergeRecord> {
        m.proto
            .metadata_props
            .iter()
            .find(|e| e.key() == KEY)
            .map(|e| MergeRecord::parse(e.value()))
    }

    /// Stores the record in a model (replacing the one it has).
    pub fn store(&self, m: &mut Model) {
        crate::passes::set_metadata(&mut m.proto, KEY, &self.to_metadata_string());
    }

    /// The recorded layout (K = the recorded `max_det`), when it names one.
    pub fn layout(&self) -> Option<Layout> {
        crate::layouts::by_name(self.layout.as_deref()?, self.max_det.unwrap_or(0))
    }
}

/// `*field = value`; whether the value was understood. A value that does not parse clears the
/// field (a later entry of the key wins, as it always did).
fn set<T>(field: &mut Option<T>, value: Option<T>) -> bool {
    let ok = value.is_some();
    *field = value;
    ok
}

fn parse_normalized(v: &str) -> Option<Normalized> {
    let (h, w) = v.strip_prefix("normalized/")?.split_once('x')?;
    Some(Normalized {
        height: h.parse().ok()?,
        width: w.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known keys, in the order they are written.
    const KEYS: [&str; 9] = [
        "family",
        "layout",
        "score",
        "iou",
        "max_per_class",
        "agnostic",
        "thresholds",
        "max_det",
        "boxes",
    ];

    const TODAY: &str = "family=yolox-raw; layout=pinto; score=0.25; iou=0.4; max_per_class=20; agnostic=false; thresholds=const; max_det=100";

    fn full() -> MergeRecord {
        MergeRecord {
            family: Some("yolox-raw".into()),
            layout: Some("pinto".into()),
            score: Some(0.25),
            iou: Some(0.4),
            max_per_class: Some(20),
            agnostic: Some(false),
            thresholds: Some(Thresholds::Const),
            max_det: Some(100),
            normalized: None,
            other: vec![],
        }
    }

    #[test]
    fn writes_todays_exact_string() {
        assert_eq!(full().to_metadata_string(), TODAY);
        let q = MergeRecord {
            layout: Some("decoded".into()),
            normalized: Some(Normalized {
                height: 128,
                width: 160,
            }),
            ..full()
        };
        assert_eq!(
            q.to_metadata_string(),
            "family=yolox-raw; layout=decoded; score=0.25; iou=0.4; max_per_class=20; agnostic=false; thresholds=const; max_det=100; boxes=normalized/128x160"
        );
        let g = MergeRecord {
            family: Some("gold-yolo".into()),
            layout: Some("trt".into()),
            score: Some(0.3),
            iou: Some(0.5),
            max_per_class: Some(7),
            agnostic: Some(true),
            thresholds: Some(Thresholds::Inputs),
            max_det: Some(10),
            ..full()
        };
        assert_eq!(
            g.to_metadata_string(),
            "family=gold-yolo; layout=trt; score=0.3; iou=0.5; max_per_class=7; agnostic=true; thresholds=inputs; max_det=10"
        );
    }

    #[test]
    fn parses_todays_string_and_round_trips() {
        assert_eq!(MergeRecord::parse(TODAY), full());
        for s in [
            TODAY.to_string(),
            format!("{TODAY}; boxes=normalized/128x160"),
            "family=gold-yolo; layout=ultralytics; score=0.6; iou=0.3; max_per_class=2; agnostic=true; thresholds=inputs; max_det=5".into(),
        ] {
            let r = MergeRecord::parse(&s);
            assert_eq!(r.to_metadata_string(), s);
            assert_eq!(MergeRecord::parse(&r.to_metadata_string()), r);
            assert!(r.other.is_empty());
        }
        let n = MergeRecord::parse(&format!("{TODAY}; boxes=normalized/128x160"));
        assert_eq!(
            n.normalized,
            Some(Normalized {
                height: 128,
                width: 160
            })
        );
        assert_eq!(
            MergeRecord::parse("layout=trt; max_det=10").layout(),
            Some(Layout::Trt { max_det: 10 })
        );
    }

    #[test]
    fn partial_and_foreign_records() {
        // missing keys are None and are not written back
        let r = MergeRecord::parse("score=0.5");
        assert_eq!(r.score, Some(0.5));
        assert_eq!(r.iou, None);
        assert_eq!(r.to_metadata_string(), "score=0.5");
        assert_eq!(MergeRecord::parse(""), MergeRecord::default());
        // untrimmed, empty, unknown and unparsable entries: read as before (ignored), kept
        let r = MergeRecord::parse(" score=0.5 ;; note=hand edited; iou=abc; agnostic=maybe; x");
        assert_eq!((r.score, r.iou, r.agnostic), (Some(0.5), None, None));
        assert_eq!(
            r.other,
            ["note=hand edited", "iou=abc", "agnostic=maybe", "x"]
        );
        assert_eq!(
            r.to_metadata_string(),
            "score=0.5; note=hand edited; iou=abc; agnostic=maybe; x"
        );
        // a later entry wins; a value set later replaces an unparsable entry of its key
        let mut r = MergeRecord::parse("score=0.1; score=0.2; iou=abc");
        assert_eq!(r.score, Some(0.2));
        r.iou = Some(0.3);
        assert_eq!(r.to_metadata_string(), "score=0.2; iou=0.3");
        // `boxes` without the size is not understood (kept verbatim)
        let r = MergeRecord::parse("boxes=normalized");
        assert_eq!(r.normalized, None);
        assert_eq!(r.other, ["boxes=normalized"]);
        // a key spelled with spaces around `=` is not the key
        assert_eq!(MergeRecord::parse("score =0.5").score, None);
        assert_eq!(MergeRecord::parse("score= 0.5").score, None);
    }

    #[test]
    fn keys_are_listed_once_in_write_order() {
        let r = MergeRecord {
            normalized: Some(Normalized {
                height: 1,
                width: 2,
            }),
            ..full()
        };
        let written: Vec<String> = r
            .to_metadata_string()
            .split("; ")
            .map(|e| e.split_once('=').unwrap().0.to_string())
            .collect();
        assert_eq!(written, KEYS);
        for k in KEYS {
            assert!(r.has(k), "{k}");
        }
    }
}
