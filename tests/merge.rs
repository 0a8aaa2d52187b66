//! `merge` end to end in tract: for every shared model (../shared, CI has it) and fixture with a
//! reference input, for every layout, the merged model's detections equal the Rust reference
//! post-process (ONNX NMS semantics) applied to the head tensor of the same run — identical
//! pre-NMS tensors, so the comparison is exact up to float noise of Exp (boxes ≤ 1e-3 px, scores
//! ≤ 1e-5) — and that head tensor matches the onnxruntime `raw.npy` within the runtimes' noise.
//! The onnxruntime side of the same comparison is tests/oracle/merge_check.py (CI).

mod common;

use postmerge::check::{compare_outputs, Tolerance};
use postmerge::head::{recognize, Family};
use postmerge::model::Model;
use postmerge::npy::read_npy_file;
use postmerge::passes::merge::{merge, MergeOptions, Thresholds};
use postmerge::postprocess::{decode, nms, render, HeadKind, HeadSpec, Layout, NmsParams};

fn layouts() -> Vec<Layout> {
    vec![
        Layout::Pinto,
        Layout::PintoGoldYolo,
        Layout::Trt { max_det: 100 },
        Layout::Ultralytics { max_det: 100 },
        Layout::Decoded,
    ]
}

fn spec(m: &Model) -> HeadSpec {
    let h = recognize(m, None).unwrap();
    let kind = match h.family {
        Family::YoloxRaw => HeadKind::YoloxRaw,
        Family::YoloxDecoded => HeadKind::YoloxDecoded,
        _ => HeadKind::GoldYolo,
    };
    HeadSpec {
        kind,
        num_classes: h.num_classes.unwrap(),
        strides: h.strides.iter().map(|&s| s as u32).collect(),
        input_h: h.height.unwrap() as usize,
        input_w: h.width.unwrap() as usize,
    }
}

/// Models with a reference input: (model path, ref dir).
fn cases() -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    common::models_with_inputs()
        .into_iter()
        .map(|(m, i)| (m, i.parent().unwrap().to_path_buf()))
        .collect()
}

fn check_one(
    path: &std::path::Path,
    refdir: &std::path::Path,
    layout: Layout,
    opts: &MergeOptions,
) {
    let input = read_npy_file(refdir.join("input.npy")).unwrap();
    let mut m = Model::load(path).unwrap();
    let sp = spec(&m);
    let head_out = recognize(&m, None).unwrap().output.unwrap();
    merge(
        &mut m,
        &MergeOptions {
            layout: Some(layout),
            ..opts.clone()
        },
    )
    .unwrap();
    let outs = postmerge::run::run_once(&m, &[&input], &[&head_out])
        .unwrap_or_else(|e| panic!("{} {}: {e:#}", path.display(), layout.name()));
    let (_, head) = outs.iter().find(|(n, _)| *n == head_out).unwrap();
    let raw = head.as_f32().unwrap();
    let dec = decode(raw, head.shape[0], head.shape[1], &sp).unwrap();
    let params = NmsParams {
        score_threshold: opts.score_threshold,
        iou_threshold: opts.iou_threshold,
        max_per_class: opts.max_per_class as usize,
        agnostic: opts.agnostic,
    };
    let sel = nms(&dec, &params).unwrap();
    let expected = render(&layout, &dec, &sel).unwrap();
    let cmp = compare_outputs(&layout, &expected, &outs, Tolerance::default()).unwrap();
    assert!(cmp.ok(), "{} {}: {:#?}", path.display(), layout.name(), cmp);
    if layout != Layout::Decoded {
        assert!(
            !sel.is_empty(),
            "{}: the reference selects nothing; the test would be vacuous",
            path.display()
        );
    }
}

#[test]
fn merged_models_equal_the_reference_in_tract_for_every_layout() {
    for (p, r) in cases() {
        for layout in layouts() {
            check_one(&p, &r, layout, &MergeOptions::default());
        }
    }
}

#[test]
fn official_thresholds_agnostic_and_input_thresholds_also_match() {
    let (p, r) = cases()
        .into_iter()
        .find(|(p, _)| p.ends_with("yolox_nano_80c_640x640_op11.onnx"))
        .unwrap();
    let official = MergeOptions {
        iou_threshold: 0.45,
        max_per_class: 100000,
        ..MergeOptions::default()
    };
    check_one(&p, &r, Layout::Pinto, &official);
    check_one(
        &p,
        &r,
        Layout::Pinto,
        &MergeOptions {
            agnostic: true,
            ..MergeOptions::default()
        },
    );
    check_one(
        &p,
        &r,
        Layout::Trt { max_det: 100 },
        &MergeOptions {
            agnostic: true,
            ..MergeOptions::default()
        },
    );
    check_one(
        &p,
        &r,
        Layout::Pinto,
        &MergeOptions {
            thresholds: Thresholds::Inputs,
            ..MergeOptions::default()
        },
    );
}

#[test]
fn head_tensor_in_tract_matches_onnxruntime_raw_output() {
    for (p, r) in cases() {
        let Ok(raw) = read_npy_file(r.join("raw.npy")) else {
            continue;
        };
        let input = read_npy_file(r.join("input.npy")).unwrap();
        let m = Model::load(&p).unwrap();
        let outs = postmerge::run::run_once(&m, &[&input], &[]).unwrap();
        let got = outs[0].1.as_f32().unwrap();
        let want = raw.as_f32().unwrap();
        assert_eq!(got.len(), want.len());
        let range = want.iter().fold(0f32, |a, &x| a.max(x.abs()));
        let maxd = got
            .iter()
            .zip(want)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        // rust-notes.md §3: tract vs onnxruntime differ by ~1e-4 (YOLOX) to 1e-3 (Gold-YOLO) of the range
        assert!(
            maxd <= 2e-3 * range,
            "{}: max |tract - ort| = {maxd} for range {range}",
            p.display()
        );
    }
}

#[test]
fn diff_of_original_vs_merged_snapshot_per_layout() {
    // the project's own fixtures (tests/fixtures): what a release reviewer sees for each layout
    for (fixture, layouts) in [
        (
            "yolox_nano_128x160",
            vec![
                Layout::Pinto,
                Layout::Trt { max_det: 100 },
                Layout::Ultralytics { max_det: 100 },
                Layout::Decoded,
            ],
        ),
        ("goldlike_128x160", vec![Layout::PintoGoldYolo]),
    ] {
        let path = common::fixtures().join(format!("{fixture}.onnx"));
        let a = Model::load(&path).unwrap();
        for layout in layouts {
            let mut b = a.clone();
            merge(
                &mut b,
                &MergeOptions {
                    layout: Some(layout),
                    ..MergeOptions::default()
                },
            )
            .unwrap();
            let text = postmerge::diff::render(&postmerge::diff::diff(&a, &b).unwrap());
            let name = format!("{fixture}__{}", layout.name());
            common::settings("merge").bind(|| insta::assert_snapshot!(name, text));
        }
    }
}

#[test]
fn merge_refuses_what_it_cannot_merge() {
    let e2e =
        Model::load(&common::shared().join("models/gold_yolo_n_80c_640x640_op13_e2e_ort.onnx"))
            .unwrap();
    let e = merge(&mut e2e.clone(), &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already merged")
            && e.contains("/end2end/NonMaxSuppression")
            && e.contains("postmerge set"),
        "{e}"
    );
    // a TensorRT plugin graph
    let mut trt =
        Model::load(&common::shared().join("models/yolox_nano_80c_128x160_op11.onnx")).unwrap();
    let g = trt.graph_mut();
    let mut n = postmerge::graph::make_node(
        "EfficientNMS_TRT",
        "trt_nms",
        &["output"],
        &["num_dets"],
        vec![],
    );
    n.domain = Some("TRT".into());
    g.node.push(n);
    let e = merge(&mut trt, &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("TensorRT plugin") && e.contains("trt_nms"),
        "{e}"
    );
    // classes/strides that do not add up: N = 421 for a 128x160 input
    let mut bad =
        Model::load(&common::shared().join("models/yolox_nano_80c_128x160_op11.onnx")).unwrap();
    let out = &mut bad.graph_mut().output[0];
    postmerge::shape::set_vi_shape(
        out,
        &[
            postmerge::shape::Dim::Known(1),
            postmerge::shape::Dim::Known(421),
            postmerge::shape::Dim::Known(85),
        ],
    );
    // issue 13: a declared shape that lies decides nothing; the graph computes N = 420 (a graph
    // that really computes a wrong N is refused: tests/hostile.rs `head_n_mismatch`)
    let h = recognize(&bad, None).unwrap();
    assert_eq!(h.num_boxes, Some(420));
    assert!(
        h.declared_vs_inferred[0]
            .describe()
            .contains("declares [1,421,85], shape inference gives [1,420,85]"),
        "{:?}",
        h.declared_vs_inferred
    );
    merge(&mut bad, &MergeOptions::default()).unwrap();
    // opset lowering and nonsense thresholds
    let mut m =
        Model::load(&common::shared().join("models/yolox_nano_80c_128x160_op11.onnx")).unwrap();
    assert!(merge(
        &mut m.clone(),
        &MergeOptions {
            opset: Some(9),
            ..MergeOptions::default()
        }
    )
    .unwrap_err()
    .to_string()
    .contains("opset 10"));
    assert!(merge(
        &mut m.clone(),
        &MergeOptions {
            max_per_class: 0,
            ..MergeOptions::default()
        }
    )
    .unwrap_err()
    .to_string()
    .contains("at least 1"));
    assert!(merge(
        &mut m,
        &MergeOptions {
            opset: Some(13),
            ..MergeOptions::default()
        }
    )
    .unwrap_err()
    .to_string()
    .contains("would change the meaning"));
}

#[test]
fn merge_is_deterministic_and_names_never_collide() {
    let p = common::shared().join("models/yolox_nano_80c_128x160_op11.onnx");
    let mut a = Model::load(&p).unwrap();
    let mut b = Model::load(&p).unwrap();
    merge(
        &mut a,
        &MergeOptions {
            layout: Some(Layout::Trt { max_det: 10 }),
            ..MergeOptions::default()
        },
    )
    .unwrap();
    merge(
        &mut b,
        &MergeOptions {
            layout: Some(Layout::Trt { max_det: 10 }),
            ..MergeOptions::default()
        },
    )
    .unwrap();
    assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    let mut names = std::collections::HashSet::new();
    for n in &a.graph().node {
        assert!(
            names.insert(n.name().to_string()),
            "duplicate node name {}",
            n.name()
        );
    }
    postmerge::graph::check_references(a.graph()).unwrap();
}
