//! The Rust reference post-process against the official detections of the real-model corpus.
//!
//! NOTE: this test reads the shared corpus OUTSIDE the crate, at `../shared` (resolved as
//! `concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")`): `ref/<model>/raw.npy` (onnxruntime head
//! output), `dets.json` (official post-processing), `dets_postprocess.json` (YOLOX secondary path)
//! and the `_e2e_ort` outputs. See `../shared/models/MANIFEST.md`, "Reference post-processing".
//!
//! For every model with a `raw.npy`:
//! (a) the official convention of the reference reproduces `dets.json` exactly (same rows, same
//!     classes, same order; boxes within 1e-3 px, scores within 1e-5);
//! (b) ONNX semantics (same thresholds, no cap) is computed, and every row that differs from the
//!     official rows is explained — and the explanation asserted — by replaying both greedy passes
//!     side by side, class by class:
//!     - YOLOX: `Direct` — a box kept by both runs whose legacy "+1" IoU and plain IoU with the row
//!       fall on different sides of 0.45; `Cascade` — the row's suppressor is itself a differing row;
//!     - Gold-YOLO: `NonArgmax` — ONNX keeps a box for a class that is not its argmax (the official
//!       code is single-label); `NonArgmaxSuppressor` — an official row suppressed in ONNX by such a
//!       box; `Cascade`; `Cap` — beyond the official `max_det`; `OffsetRounding` — the official
//!       `+class*4096` offset changes the f32 IoU across the threshold (never observed, but allowed
//!       as an explanation because it is a real convention difference).
//!
//! Run with `--nocapture` to see the per-model summary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use postmerge::npy::{read_npy_file, write_npy_file, Npy, NpyData};
use postmerge::postprocess::{
    decode, decode_with, detections, gold_yolo_nms, iou, log_size_bound, nms, suppresses,
    yolox_multiclass_nms, yolox_postprocess, DecodeOptions, Decoded, Detection, GoldYoloNmsParams,
    HeadKind, HeadSpec, IouConvention, NmsParams, Selection,
};
use serde_json::Value;

const SCORE_THR: f32 = 0.25;
const IOU_THR: f32 = 0.45;
const BOX_TOL: f64 = 1e-3;
const SCORE_TOL: f64 = 1e-5;

struct Case {
    name: String,
    dir: PathBuf,
    spec: HeadSpec,
    decoded: Decoded,
}

fn ref_dir() -> PathBuf {
    let dir = common::shared().join("ref");
    assert!(
        dir.is_dir(),
        "shared corpus not found at {} (this test needs ../shared)",
        dir.display()
    );
    dir
}

/// Every YOLOX / Gold-YOLO model directory with a `raw.npy`, decoded (the families this
/// reference has official conventions for; the other families' refs — `ultra_*`, `yolov5*`,
/// `yolov6*`, `yolov7*` — have other layouts and other official post-processing, and the
/// `_dynbatch` copy has the same raw output as its static twin).
fn cases() -> Vec<Case> {
    // the YOLOX and Gold-YOLO exports (tests/common selects them; other families: issue 15)
    let dirs: Vec<PathBuf> = common::stems("supported")
        .iter()
        .map(|s| ref_dir().join(s))
        .collect();
    assert!(
        dirs.len() >= 10,
        "expected the full corpus, found {} models",
        dirs.len()
    );
    dirs.into_iter().map(|dir| load_case(&dir)).collect()
}

fn load_case(dir: &Path) -> Case {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let raw = read_npy_file(dir.join("raw.npy")).unwrap();
    let input = read_npy_file(dir.join("input.npy")).unwrap();
    let (b, n, row) = match raw.shape[..] {
        [b, n, row] => (b, n, row),
        _ => panic!("{name}: raw shape {:?}", raw.shape),
    };
    let (h, w) = match input.shape[..] {
        [_, 3, h, w] => (h, w),
        _ => panic!("{name}: input shape {:?}", input.shape),
    };
    let kind = if name.starts_with("gold_yolo") {
        HeadKind::GoldYolo
    } else if name.contains("_decode") {
        HeadKind::YoloxDecoded
    } else {
        HeadKind::YoloxRaw
    };
    let spec = HeadSpec::new(kind, row - 5, h, w);
    // the upstream projects' own arithmetic: these cases reproduce their detections
    let decoded = decode_with(raw.as_f32().unwrap(), b, n, &spec, DecodeOptions::OFFICIAL).unwrap();
    Case {
        name,
        dir: dir.to_path_buf(),
        spec,
        decoded,
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `dets` rows `[batch, class, score, x1, y1, x2, y2]`.
fn official_rows(json: &Value) -> Vec<[f64; 7]> {
    json["dets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let v: Vec<f64> = r
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            v.try_into().unwrap()
        })
        .collect()
}

/// Max deviations of a row-by-row comparison.
#[derive(Default, Debug)]
struct Dev {
    box_px: f64,
    score: f64,
}

/// Compares our detections with official rows one by one (same order); returns the mismatches.
fn compare(ours: &[Detection], rows: &[[f64; 7]], dev: &mut Dev) -> Vec<String> {
    let mut errs = Vec::new();
    if ours.len() != rows.len() {
        errs.push(format!(
            "row count: ours {} vs official {}",
            ours.len(),
            rows.len()
        ));
    }
    for (k, (d, r)) in ours.iter().zip(rows).enumerate() {
        let bd = [d.x1, d.y1, d.x2, d.y2]
            .iter()
            .zip(&r[3..])
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(0.0, f64::max);
        let sd = (f64::from(d.score) - r[2]).abs();
        dev.box_px = dev.box_px.max(bd);
        dev.score = dev.score.max(sd);
        if d.batch as f64 != r[0] || d.class as f64 != r[1] || bd > BOX_TOL || sd > SCORE_TOL {
            errs.push(format!(
                "row {k}: ours {d:?} vs official {r:?} (box {bd:.2e}, score {sd:.2e})"
            ));
        }
    }
    errs
}

fn onnx_params_uncapped() -> NmsParams {
    NmsParams {
        score_threshold: SCORE_THR,
        iou_threshold: IOU_THR,
        max_per_class: usize::MAX,
        agnostic: false,
    }
}

/// Candidates of one class (score > threshold), in NMS order: descending score, ties by index.
fn sorted_candidates(d: &Decoded, b: usize, class: usize) -> Vec<usize> {
    let mut c: Vec<(f32, usize)> = (0..d.num_boxes)
        .filter_map(|i| {
            let s = d.score(b, i, class).unwrap();
            (s > SCORE_THR).then_some((s, i))
        })
        .collect();
    c.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap());
    c.into_iter().map(|(_, i)| i).collect()
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Why a row differs between the ONNX run and the official run.
#[derive(Debug, Clone, PartialEq)]
enum Why {
    /// A box `by` kept by both runs suppresses the row in one convention only: its IoU with the
    /// row is on different sides of the threshold (`iou_onnx` vs `iou_official`).
    Direct {
        by: usize,
        iou_onnx: f32,
        iou_official: f32,
    },
    /// The row's suppressor `by` (in the run that dropped it) is itself a differing row.
    Cascade { by: usize },
    /// Gold-YOLO: ONNX keeps the box for a class that is not its argmax (official is single-label).
    NonArgmax { argmax: usize },
    /// Gold-YOLO: an official row that ONNX suppresses by a box `by` whose argmax is another class.
    NonArgmaxSuppressor { by: usize, by_argmax: usize },
    /// Gold-YOLO: the official `+class*4096` offset moves the f32 IoU with `by` across the threshold.
    OffsetRounding {
        by: usize,
        iou_onnx: f32,
        iou_official: f32,
    },
    /// Gold-YOLO: dropped by the official `max_det` cap.
    Cap,
}

#[derive(Debug)]
struct Diff {
    class: usize,
    box_index: usize,
    /// True if ONNX keeps the row and the official run does not.
    only_onnx: bool,
    why: Why,
}

/// One class of one image: replays ONNX NMS and the official NMS over the same sorted candidates
/// and explains every differing decision. Returns (kept ONNX, kept official, diffs).
fn replay_class(
    d: &Decoded,
    b: usize,
    class: usize,
    official_candidate: &dyn Fn(usize) -> bool,
    official_conv: IouConvention,
    official_box: &dyn Fn(usize) -> [f32; 4],
) -> (Vec<usize>, Vec<usize>, Vec<Diff>) {
    let bx = |i: usize| d.box_at(b, i).unwrap();
    let (mut kept_o, mut kept_f) = (Vec::<usize>::new(), Vec::<usize>::new());
    let mut diffs = Vec::new();
    let mut differing: BTreeSet<usize> = BTreeSet::new();
    for k in sorted_candidates(d, b, class) {
        let o_sup: Vec<usize> = kept_o
            .iter()
            .copied()
            .filter(|&j| suppresses(IouConvention::Onnx, &bx(j), &bx(k), IOU_THR))
            .collect();
        let is_f = official_candidate(k);
        let f_sup: Vec<usize> = if is_f {
            kept_f
                .iter()
                .copied()
                .filter(|&j| suppresses(official_conv, &official_box(j), &official_box(k), IOU_THR))
                .collect()
        } else {
            Vec::new()
        };
        let in_o = o_sup.is_empty();
        let in_f = is_f && f_sup.is_empty();
        if in_o {
            kept_o.push(k);
        }
        if in_f {
            kept_f.push(k);
        }
        if in_o == in_f {
            continue;
        }
        let why = if !is_f {
            let am = argmax(d.scores_of(b, k).unwrap());
            assert_ne!(
                am, class,
                "box {k} class {class}: not an official candidate but argmax"
            );
            Why::NonArgmax { argmax: am }
        } else {
            // The suppressors in the run that dropped the row.
            let (sups, kept_other) = if in_f {
                (&o_sup, &kept_f)
            } else {
                (&f_sup, &kept_o)
            };
            if let Some(&j) = sups.iter().find(|j| kept_other.contains(j)) {
                // Kept by both runs, suppresses in one convention only.
                let iou_onnx = iou(IouConvention::Onnx, &bx(j), &bx(k));
                let iou_official = iou(official_conv, &official_box(j), &official_box(k));
                assert_ne!(
                    iou_onnx > IOU_THR,
                    suppresses(official_conv, &official_box(j), &official_box(k), IOU_THR),
                    "direct explanation must straddle the threshold"
                );
                if official_conv == IouConvention::LegacyPlusOne {
                    Why::Direct {
                        by: j,
                        iou_onnx,
                        iou_official,
                    }
                } else {
                    Why::OffsetRounding {
                        by: j,
                        iou_onnx,
                        iou_official,
                    }
                }
            } else {
                let j = sups[0];
                if !official_candidate(j) {
                    Why::NonArgmaxSuppressor {
                        by: j,
                        by_argmax: argmax(d.scores_of(b, j).unwrap()),
                    }
                } else {
                    assert!(
                        differing.contains(&j),
                        "cascade from {j}, which is not a differing row"
                    );
                    Why::Cascade { by: j }
                }
            }
        };
        differing.insert(k);
        diffs.push(Diff {
            class,
            box_index: k,
            only_onnx: in_o,
            why,
        });
    }
    (kept_o, kept_f, diffs)
}

fn keys(sel: &[Selection]) -> BTreeSet<(usize, usize, usize)> {
    sel.iter()
        .map(|s| (s.batch, s.class, s.box_index))
        .collect()
}

fn per_class(sel: &[Selection], b: usize) -> BTreeMap<usize, Vec<usize>> {
    let mut m: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for s in sel.iter().filter(|s| s.batch == b) {
        m.entry(s.class).or_default().push(s.box_index);
    }
    m
}

fn summarize(diffs: &[Diff]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in diffs {
        let k = match d.why {
            Why::Direct { .. } => "direct +1-IoU straddle",
            Why::Cascade { .. } => "cascade",
            Why::NonArgmax { .. } => "non-argmax class kept",
            Why::NonArgmaxSuppressor { .. } => "suppressed by a non-argmax box",
            Why::OffsetRounding { .. } => "offset rounding",
            Why::Cap => "max_det cap",
        };
        *counts.entry(k).or_default() += 1;
    }
    let only_onnx = diffs.iter().filter(|d| d.only_onnx).count();
    format!(
        "{} differing rows ({} only in ONNX, {} only official): {:?}",
        diffs.len(),
        only_onnx,
        diffs.len() - only_onnx,
        counts
    )
}

/// (a) + (b) for one YOLOX model.
fn check_yolox(case: &Case) -> Vec<String> {
    let mut errs = Vec::new();
    let d = &case.decoded;
    let json = read_json(&case.dir.join("dets.json"));
    let meta = &json["meta"];
    assert_eq!(meta["score_thr"].as_f64(), Some(0.25), "{}", case.name);
    assert_eq!(meta["iou_thr"].as_f64(), Some(0.45), "{}", case.name);
    assert!(meta["postprocess"]
        .as_str()
        .unwrap()
        .contains("multiclass_nms"));
    let rows = official_rows(&json);

    // (a) Official convention reproduces dets.json.
    let official = yolox_multiclass_nms(d, SCORE_THR, IOU_THR).unwrap();
    let mut dev = Dev::default();
    let e = compare(&detections(d, &official).unwrap(), &rows, &mut dev);
    errs.extend(
        e.into_iter()
            .map(|m| format!("{} dets.json: {m}", case.name)),
    );

    // Secondary: dets_postprocess.json (single label, >=, torchvision batched_nms).
    let pp_json = read_json(&case.dir.join("dets_postprocess.json"));
    let pp_rows = official_rows(&pp_json);
    let pp = yolox_postprocess(d, SCORE_THR, IOU_THR).unwrap();
    let mut pp_dev = Dev::default();
    let e = compare(&detections(d, &pp).unwrap(), &pp_rows, &mut pp_dev);
    errs.extend(
        e.into_iter()
            .map(|m| format!("{} dets_postprocess.json: {m}", case.name)),
    );

    // (b) ONNX semantics vs official, explained.
    let onnx = nms(d, &onnx_params_uncapped()).unwrap();
    let (ko, kf) = (keys(&onnx), keys(&official));
    let mut diffs = Vec::new();
    for b in 0..d.batch {
        let (po, pf) = (per_class(&onnx, b), per_class(&official, b));
        for class in 0..d.num_classes {
            let bx = |i: usize| d.box_at(b, i).unwrap();
            let (kept_o, kept_f, class_diffs) =
                replay_class(d, b, class, &|_| true, IouConvention::LegacyPlusOne, &bx);
            assert_eq!(
                &kept_o,
                po.get(&class).unwrap_or(&Vec::new()),
                "{} class {class}: replay vs nms",
                case.name
            );
            assert_eq!(
                &kept_f,
                pf.get(&class).unwrap_or(&Vec::new()),
                "{} class {class}: replay vs official",
                case.name
            );
            if let Some(first) = class_diffs.first() {
                assert!(
                    matches!(first.why, Why::Direct { .. }),
                    "{}: first difference must be direct",
                    case.name
                );
            }
            diffs.extend(class_diffs);
        }
    }
    assert_eq!(
        diffs.len(),
        ko.symmetric_difference(&kf).count(),
        "{}: every differing row explained",
        case.name
    );
    for diff in &diffs {
        assert!(
            matches!(diff.why, Why::Direct { .. } | Why::Cascade { .. }),
            "{}: {diff:?}",
            case.name
        );
    }
    println!(
        "{:<44} official {:>3} rows == dets.json (max |Δbox| {:.1e} px, |Δscore| {:.1e}); \
         postprocess {:>3} rows == dets_postprocess.json (|Δbox| {:.1e}); ONNX {:>3} rows, {}",
        case.name,
        official.len(),
        dev.box_px,
        dev.score,
        pp.len(),
        pp_dev.box_px,
        onnx.len(),
        summarize(&diffs)
    );
    for diff in diffs
        .iter()
        .filter(|d| matches!(d.why, Why::Direct { .. }))
        .take(3)
    {
        println!(
            "    e.g. class {} box {} only_onnx={} {:?}",
            diff.class, diff.box_index, diff.only_onnx, diff.why
        );
    }
    errs
}

/// (a) + (b) for one Gold-YOLO model.
fn check_gold(case: &Case) -> Vec<String> {
    let mut errs = Vec::new();
    let d = &case.decoded;
    let json = read_json(&case.dir.join("dets.json"));
    let meta = &json["meta"];
    assert_eq!(meta["score_thr"].as_f64(), Some(0.25), "{}", case.name);
    assert_eq!(meta["iou_thr"].as_f64(), Some(0.45), "{}", case.name);
    assert!(
        meta["postprocess"]
            .as_str()
            .unwrap()
            .contains("max_det=1000"),
        "{}",
        case.name
    );
    let rows = official_rows(&json);
    assert!(
        d.objectness.iter().all(|&o| o == 1.0),
        "{}: Gold-YOLO column 4 is 1",
        case.name
    );

    // (a)
    let params = GoldYoloNmsParams {
        conf_thres: SCORE_THR,
        iou_thres: IOU_THR,
        max_det: 1000,
        ..Default::default()
    };
    let official = gold_yolo_nms(d, &params).unwrap();
    let mut dev = Dev::default();
    let e = compare(&detections(d, &official).unwrap(), &rows, &mut dev);
    errs.extend(
        e.into_iter()
            .map(|m| format!("{} dets.json: {m}", case.name)),
    );

    // The cap: the uncapped run must start with the capped rows; the rest is explained by Cap.
    let uncapped = gold_yolo_nms(
        d,
        &GoldYoloNmsParams {
            max_det: usize::MAX,
            ..params
        },
    )
    .unwrap();
    assert_eq!(&uncapped[..official.len()], &official[..], "{}", case.name);
    let mut diffs: Vec<Diff> = uncapped[official.len()..]
        .iter()
        .map(|s| Diff {
            class: s.class,
            box_index: s.box_index,
            only_onnx: true,
            why: Why::Cap,
        })
        .collect();

    // (b)
    let onnx = nms(d, &onnx_params_uncapped()).unwrap();
    for b in 0..d.batch {
        let (po, pf) = (per_class(&onnx, b), per_class(&uncapped, b));
        for class in 0..d.num_classes {
            let off = class as f32 * 4096.0;
            let obox = |i: usize| {
                let x = d.box_at(b, i).unwrap();
                [x[0] + off, x[1] + off, x[2] + off, x[3] + off]
            };
            let is_official = |i: usize| argmax(d.scores_of(b, i).unwrap()) == class;
            let (kept_o, kept_f, class_diffs) =
                replay_class(d, b, class, &is_official, IouConvention::Torchvision, &obox);
            assert_eq!(
                &kept_o,
                po.get(&class).unwrap_or(&Vec::new()),
                "{} class {class}: replay vs nms",
                case.name
            );
            let mut want_f = pf.get(&class).cloned().unwrap_or_default();
            // Official output is sorted globally by score; per class that is our replay order.
            want_f.sort_by(|&x, &y| {
                d.score(b, y, class)
                    .unwrap()
                    .partial_cmp(&d.score(b, x, class).unwrap())
                    .unwrap()
            });
            assert_eq!(
                kept_f, want_f,
                "{} class {class}: replay vs official",
                case.name
            );
            diffs.extend(class_diffs);
        }
    }
    let (ko, kf) = (keys(&onnx), keys(&official));
    assert_eq!(
        diffs.len(),
        ko.symmetric_difference(&kf).count(),
        "{}: every differing row explained",
        case.name
    );
    for diff in &diffs {
        assert!(
            !matches!(diff.why, Why::Direct { .. }),
            "{}: {diff:?}",
            case.name
        );
    }
    println!(
        "{:<44} official {:>3} rows == dets.json (max |Δbox| {:.1e} px, |Δscore| {:.1e}); ONNX {:>3} rows, {}",
        case.name,
        official.len(),
        dev.box_px,
        dev.score,
        onnx.len(),
        summarize(&diffs)
    );
    errs
}

#[test]
fn reference_reproduces_official_detections_and_explains_onnx_differences() {
    let Some(_) = common::shared_or_skip(
        "reference post-process vs the official detections of every shared YOLOX / Gold-YOLO ref",
    ) else {
        return;
    };
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for case in cases() {
        seen.insert(case.spec.kind.name());
        match case.spec.kind {
            HeadKind::GoldYolo => errs.extend(check_gold(&case)),
            HeadKind::YoloxRaw | HeadKind::YoloxDecoded => errs.extend(check_yolox(&case)),
        }
    }
    assert_eq!(seen.len(), 3, "all three head kinds covered: {seen:?}");
    assert!(
        errs.is_empty(),
        "{} mismatches:\n{}",
        errs.len(),
        errs.join("\n")
    );
}

/// Issue 12: the merged graph's decode (log-sizes bounded before exp, corners ordered) changes no
/// detection of the corpus — neither ONNX-semantics NMS (default and official thresholds) nor the
/// official conventions — and every box it changes is explained: a bounded background anchor
/// (never a candidate) or an inverted box whose corners are swapped into order.
#[test]
fn bounded_ordered_decode_changes_no_detection() {
    let Some(_) = common::shared_or_skip(
        "the bounded, corner-ordered decode vs the official one on every shared ref",
    ) else {
        return;
    };
    let mut total_bounded = 0;
    for case in cases() {
        let raw = read_npy_file(case.dir.join("raw.npy")).unwrap();
        let (b, n) = (raw.shape[0], raw.shape[1]);
        let raw = raw.to_f32();
        let row = case.spec.num_classes + 5;
        let merged = decode(&raw, b, n, &case.spec).unwrap();
        let official = &case.decoded;
        // which anchors the merged decode changes, and why
        let levels = case.spec.grid_levels().unwrap();
        let stride_of = |i: usize| {
            let mut k = i % n;
            for l in &levels {
                if k < l.h * l.w {
                    return l.stride;
                }
                k -= l.h * l.w;
            }
            unreachable!()
        };
        let (mut bounded, mut bounded_cand, mut inverted, mut inverted_cand) = (0, 0, 0, 0);
        for (k, r) in raw.chunks_exact(row).enumerate() {
            let cand = r[5..].iter().any(|&c| r[4] * c > 0.01);
            let (bi, i) = (k / n, k % n);
            let (m, o) = (
                merged.box_at(bi, i).unwrap(),
                official.box_at(bi, i).unwrap(),
            );
            match case.spec.kind {
                HeadKind::YoloxRaw => {
                    let l = log_size_bound(case.spec.input_h, case.spec.input_w, stride_of(i));
                    if r[2] > l || r[3] > l {
                        bounded += 1;
                        bounded_cand += cand as usize;
                        // the box keeps its centre and is at most four times the input's larger side
                        let side = case.spec.input_h.max(case.spec.input_w) as f32;
                        assert!(
                            m[2] - m[0] <= 4.0 * side * 1.0001
                                && m[3] - m[1] <= 4.0 * side * 1.0001
                        );
                    } else {
                        assert_eq!(m, o, "{} anchor {i}", case.name);
                    }
                }
                _ => {
                    if r[2] < 0.0 || r[3] < 0.0 {
                        inverted += 1;
                        inverted_cand += cand as usize;
                    }
                    // exactly the official corners, ordered per axis
                    let want = [
                        o[0].min(o[2]),
                        o[1].min(o[3]),
                        o[0].max(o[2]),
                        o[1].max(o[3]),
                    ];
                    assert_eq!(m, want, "{} anchor {i}", case.name);
                }
            }
        }
        assert_eq!(merged.scores, official.scores);
        // no candidate (score above 0.01, let alone the 0.25 threshold) is bounded: the
        // selections cannot change (postprocess::LOG_SIZE_BOUND_FACTOR, point 2)
        assert_eq!(bounded_cand, 0, "{}: a bounded candidate", case.name);
        total_bounded += bounded;
        for params in [NmsParams::default(), onnx_params_uncapped()] {
            let sm = nms(&merged, &params).unwrap();
            assert_eq!(sm, nms(official, &params).unwrap(), "{}", case.name);
        }
        match case.spec.kind {
            HeadKind::GoldYolo => {
                let p = GoldYoloNmsParams::default();
                assert_eq!(
                    gold_yolo_nms(&merged, &p).unwrap(),
                    gold_yolo_nms(official, &p).unwrap()
                );
            }
            _ => {
                assert_eq!(
                    yolox_multiclass_nms(&merged, SCORE_THR, IOU_THR).unwrap(),
                    yolox_multiclass_nms(official, SCORE_THR, IOU_THR).unwrap()
                );
                assert_eq!(
                    yolox_postprocess(&merged, SCORE_THR, IOU_THR).unwrap(),
                    yolox_postprocess(official, SCORE_THR, IOU_THR).unwrap()
                );
            }
        }
        println!(
            "{}: {bounded} anchors bounded ({bounded_cand} of them candidates), {inverted} inverted boxes ordered ({inverted_cand} candidates); selections identical",
            case.name
        );
    }
    // the corpus does exercise the bound (yolox_nano_3c_640x640_op11_shapes has log-sizes ~89)
    assert!(total_bounded > 0);
}

/// The raw YOLOX head decoded by the reference equals the `--decode_in_inference` graphs' output
/// (same weights and input) up to float rounding of the in-graph decode.
#[test]
fn yolox_decode_matches_decode_in_inference_graphs() {
    let Some(_) = common::shared_or_skip("reference decode vs the shared decode_in_inference refs")
    else {
        return;
    };
    let raw = load_case(&ref_dir().join("yolox_nano_80c_640x640_op11"));
    for variant in [
        "yolox_nano_80c_640x640_op11_decode",
        "yolox_nano_80c_640x640_op11_decode_githead",
    ] {
        let dec = load_case(&ref_dir().join(variant));
        let max_box = raw
            .decoded
            .boxes
            .iter()
            .zip(&dec.decoded.boxes)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert_eq!(raw.decoded.scores, dec.decoded.scores, "{variant}: scores");
        assert!(max_box <= 1e-4, "{variant}: max |Δbox| {max_box}");
        println!("{variant}: max |Δbox| vs reference decode of the raw head = {max_box:.2e} px");
    }
}

/// The `_e2e_ort` model ran ONNX NonMaxSuppression (100 per class, IoU 0.45, score 0.25,
/// multi-label) inside onnxruntime on its own decoded boxes. The plain export's raw.npy has the
/// same weights and input; ONNX-semantics NMS on it must give the same detections.
#[test]
fn gold_yolo_e2e_ort_matches_onnx_semantics() {
    let Some(_) =
        common::shared_or_skip("reference NMS vs the shared Gold-YOLO --end2end --ort outputs")
    else {
        return;
    };
    let case = load_case(&ref_dir().join("gold_yolo_n_80c_640x640_op13"));
    let e2e_dir = ref_dir().join("gold_yolo_n_80c_640x640_op13_e2e_ort");
    let num = read_npy_file(e2e_dir.join("raw_num_dets.npy"))
        .unwrap()
        .to_i64()
        .unwrap()[0] as usize;
    let boxes = read_npy_file(e2e_dir.join("raw_det_boxes.npy"))
        .unwrap()
        .to_f32();
    let scores = read_npy_file(e2e_dir.join("raw_det_scores.npy"))
        .unwrap()
        .to_f32();
    let classes = read_npy_file(e2e_dir.join("raw_det_classes.npy"))
        .unwrap()
        .to_i64()
        .unwrap();
    let e2e: Vec<Detection> = (0..num)
        .map(|k| Detection {
            batch: 0,
            class: classes[k] as usize,
            score: scores[k],
            x1: boxes[4 * k],
            y1: boxes[4 * k + 1],
            x2: boxes[4 * k + 2],
            y2: boxes[4 * k + 3],
        })
        .collect();
    // dets.json of the e2e model = those rows.
    let rows = official_rows(&read_json(&e2e_dir.join("dets.json")));
    let mut dev = Dev::default();
    assert!(compare(&e2e, &rows, &mut dev).is_empty());

    let params = NmsParams {
        score_threshold: 0.25,
        iou_threshold: 0.45,
        max_per_class: 100,
        agnostic: false,
    };
    let sel = nms(&case.decoded, &params).unwrap();
    let ours = detections(&case.decoded, &sel).unwrap();
    assert_eq!(ours.len(), e2e.len(), "detection count");

    // Match each e2e row to one of ours with the same class, box within BOX_TOL, score within
    // SCORE_TOL (the e2e graph converts xywh→xyxy with a MatMul, so boxes may differ by rounding).
    let mut used = vec![false; ours.len()];
    let (mut max_box, mut max_score, mut unmatched) = (0.0f32, 0.0f32, Vec::new());
    for (k, e) in e2e.iter().enumerate() {
        let found = ours.iter().enumerate().find(|(j, o)| {
            !used[*j]
                && o.class == e.class
                && (o.score - e.score).abs() <= SCORE_TOL as f32
                && o.bbox()
                    .iter()
                    .zip(e.bbox())
                    .all(|(a, b)| (a - b).abs() <= BOX_TOL as f32)
        });
        match found {
            Some((j, o)) => {
                used[j] = true;
                max_score = max_score.max((o.score - e.score).abs());
                for (a, b) in o.bbox().iter().zip(e.bbox()) {
                    max_box = max_box.max((a - b).abs());
                }
            }
            None => unmatched.push(k),
        }
    }
    // e2e rows are sorted by descending score; so are ours per image with a stable sort.
    let mut sorted = ours.clone();
    sorted.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap());
    let same_order = sorted
        .iter()
        .zip(&e2e)
        .filter(|(a, b)| a.class == b.class && a.score == b.score)
        .count();
    println!(
        "e2e_ort: {} rows, {} matched (class, |Δbox| <= {BOX_TOL}, |Δscore| <= {SCORE_TOL}); max |Δbox| {:.2e} px, \
         max |Δscore| {:.2e}; {} rows at the same rank with identical class and score",
        e2e.len(),
        e2e.len() - unmatched.len(),
        max_box,
        max_score,
        same_order
    );
    assert!(
        unmatched.is_empty(),
        "unmatched e2e rows: {:?}",
        unmatched.iter().map(|&k| e2e[k]).collect::<Vec<_>>()
    );
}

/// Writes the reference's decoded tensors and NMS selections for `tests/oracle/nms_vs_ort.py`
/// when `POSTMERGE_ORACLE_DIR` is set (no-op otherwise; cargo tests never need Python).
#[test]
fn dump_for_onnxruntime_oracle() {
    let Some(out) = std::env::var_os("POSTMERGE_ORACLE_DIR") else {
        return;
    };
    let Some(_) = common::shared_or_skip(
        "dump of the reference NMS over the shared refs for tests/oracle/nms_vs_ort.py",
    ) else {
        return;
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).unwrap();
    let param_sets: [(&str, NmsParams); 4] = [
        ("onnx_025_045_all", onnx_params_uncapped()),
        ("onnx_025_040_20", NmsParams::default()),
        (
            "onnx_025_045_100",
            NmsParams {
                iou_threshold: 0.45,
                max_per_class: 100,
                ..NmsParams::default()
            },
        ),
        (
            "onnx_001_065_5",
            NmsParams {
                score_threshold: 0.01,
                iou_threshold: 0.65,
                max_per_class: 5,
                agnostic: false,
            },
        ),
    ];
    for case in cases() {
        let d = &case.decoded;
        let dir = out.join(&case.name);
        std::fs::create_dir_all(&dir).unwrap();
        let f32s =
            |shape: Vec<usize>, v: &Vec<f32>| Npy::new(shape, NpyData::F32(v.clone())).unwrap();
        write_npy_file(
            dir.join("boxes.npy"),
            &f32s(vec![d.batch, d.num_boxes, 4], &d.boxes),
        )
        .unwrap();
        write_npy_file(
            dir.join("scores.npy"),
            &f32s(vec![d.batch, d.num_boxes, d.num_classes], &d.scores),
        )
        .unwrap();
        for (name, p) in &param_sets {
            for agnostic in [false, true] {
                let p = NmsParams { agnostic, ..*p };
                let sel = nms(d, &p).unwrap();
                let flat: Vec<i64> = sel
                    .iter()
                    .flat_map(|s| [s.batch as i64, s.class as i64, s.box_index as i64])
                    .collect();
                let tag = if agnostic { "_agnostic" } else { "" };
                let npy = Npy::new(vec![sel.len(), 3], NpyData::I64(flat)).unwrap();
                write_npy_file(dir.join(format!("sel_{name}{tag}.npy")), &npy).unwrap();
            }
        }
        let params_json = serde_json::json!(param_sets
            .iter()
            .map(|(n, p)| (n.to_string(), serde_json::json!({
                "score_threshold": p.score_threshold,
                "iou_threshold": p.iou_threshold,
                "max_per_class": if p.max_per_class == usize::MAX { i64::MAX } else { p.max_per_class as i64 },
            })))
            .collect::<serde_json::Map<_, _>>());
        std::fs::write(dir.join("params.json"), params_json.to_string()).unwrap();
        std::fs::write(dir.join("kind.txt"), case.spec.kind.name()).unwrap();
    }
}
