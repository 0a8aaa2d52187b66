//! The project's own trained detector (tests/fixtures/shapes_128x160.onnx, trained by
//! `make_fixtures.py shapes` with shared/tools/train-shapes) gives REAL detections: on held-out
//! scenes from the training tool's generator (tests/fixtures/shapes/, ground truth in gt.json) the
//! merged model must find the drawn shapes, and `check` must agree with the reference. Fixtures
//! only: no ../shared needed.

mod common;

use std::path::PathBuf;

use postmerge::model::Model;
use postmerge::passes::merge::{merge, MergeOptions};

fn dir() -> PathBuf {
    common::fixtures().join("shapes")
}

fn original() -> Model {
    Model::load(&common::fixtures().join("shapes_128x160.onnx")).unwrap()
}

struct Gt {
    class: usize,
    bbox: [f32; 4],
}

fn ground_truth() -> Vec<(String, Vec<Gt>)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("gt.json")).unwrap()).unwrap();
    let mut out: Vec<(String, Vec<Gt>)> = v["samples"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, boxes)| {
            let gts = boxes
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let c: Vec<f32> = b["box"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                        .collect();
                    Gt {
                        class: b["class_id"].as_u64().unwrap() as usize,
                        bbox: [c[0], c[1], c[2], c[3]],
                    }
                })
                .collect();
            (name.clone(), gts)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if ua > 0.0 {
        inter / ua
    } else {
        0.0
    }
}

#[test]
fn trained_detector_finds_the_drawn_shapes_after_merge() {
    let mut m = original();
    merge(&mut m, &MergeOptions::default()).unwrap();
    let gt = ground_truth();
    assert!(gt.len() >= 8, "samples missing in {}", dir().display());
    let (mut tp, mut fp, mut n_gt) = (0usize, 0usize, 0usize);
    let mut misses = Vec::new();
    for (name, gts) in &gt {
        let (rep, _) = postmerge::detect::detect(
            &m,
            &dir().join(name),
            None,
            &postmerge::postprocess::NmsParams::default(),
        )
        .unwrap();
        n_gt += gts.len();
        let mut used = vec![false; gts.len()];
        for d in &rep.detections {
            // greedy, in the model's order: the best unused same-class ground truth at IoU >= 0.5
            let best = gts
                .iter()
                .enumerate()
                .filter(|(j, g)| !used[*j] && g.class == d.class)
                .map(|(j, g)| (j, iou(g.bbox, d.bbox)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((j, v)) if v >= 0.5 => {
                    used[j] = true;
                    tp += 1;
                }
                _ => {
                    fp += 1;
                    misses.push(format!("{name}: false {:?}", d));
                }
            }
        }
        for (j, g) in gts.iter().enumerate() {
            if !used[j] {
                misses.push(format!("{name}: missed class {} {:?}", g.class, g.bbox));
            }
        }
    }
    let recall = tp as f32 / n_gt as f32;
    let precision = tp as f32 / (tp + fp).max(1) as f32;
    println!("{n_gt} shapes: recall {recall:.3}, precision {precision:.3}\n{misses:#?}");
    assert!(
        recall >= 0.9 && precision >= 0.9,
        "recall {recall:.3} precision {precision:.3} at IoU 0.5, same class:\n{misses:#?}"
    );
}

#[test]
fn check_agrees_on_every_sample_and_after_resize() {
    let orig = original();
    let mut merged = orig.clone();
    merge(&mut merged, &MergeOptions::default()).unwrap();
    for (name, _) in ground_truth() {
        let r = postmerge::check::check_models(
            &orig,
            &merged,
            &postmerge::check::CheckOptions {
                input: postmerge::check::CheckInput::Image(dir().join(&name)),
                tol: Default::default(),
            },
        )
        .unwrap();
        assert!(r.ok, "{name}:\n{}", postmerge::check::render_report(&r));
    }
    // the same weights at 640x640 (re-specialized, then merged) still agree with the reference
    let mut big = orig.clone();
    postmerge::passes::resize::resize(
        &mut big,
        &postmerge::passes::resize::ResizeOptions {
            height: 640,
            width: 640,
            batch: None,
        },
    )
    .unwrap();
    let mut big_merged = big.clone();
    merge(&mut big_merged, &MergeOptions::default()).unwrap();
    let r = postmerge::check::check_models(
        &big,
        &big_merged,
        &postmerge::check::CheckOptions {
            input: postmerge::check::CheckInput::Image(dir().join("sample_0.png")),
            tol: Default::default(),
        },
    )
    .unwrap();
    assert!(r.ok, "{}", postmerge::check::render_report(&r));
}
