//! `check` passes on every merged shared model (../shared, CI has it) and fixture, and FAILS with
//! exit 1 and the differing rows on deliberately broken merges. `detect` draws what it detects.

mod common;

use postmerge::check::{check_models, CheckInput, CheckOptions};
use postmerge::graph::GraphIndex;
use postmerge::model::Model;
use postmerge::passes::merge::{merge, MergeOptions};
use postmerge::postprocess::Layout;

fn opts(input: std::path::PathBuf) -> CheckOptions {
    CheckOptions {
        input: CheckInput::Npy(input),
        tol: Default::default(),
    }
}

#[test]
fn check_passes_on_every_merged_model() {
    for (p, input) in common::models_with_inputs() {
        let o = Model::load(&p).unwrap();
        for layout in [None, Some(Layout::Trt { max_det: 100 })] {
            let mut m = o.clone();
            merge(
                &mut m,
                &MergeOptions {
                    layout,
                    ..MergeOptions::default()
                },
            )
            .unwrap();
            let r = check_models(&o, &m, &opts(input.clone())).unwrap();
            assert!(
                r.ok,
                "{}: {}",
                p.display(),
                postmerge::check::render_report(&r)
            );
            assert!(
                r.steps.iter().all(|s| s.ok == Some(true)),
                "{}",
                postmerge::check::render_report(&r)
            );
        }
    }
}

/// Merge the YOLOX fixture, break it with `f`, and return the check report.
fn broken(f: impl Fn(&mut Model)) -> postmerge::check::CheckReport {
    let p = common::fixtures().join("yolox_nano_640x640.onnx");
    let o = Model::load(&p).unwrap();
    let mut m = o.clone();
    merge(&mut m, &MergeOptions::default()).unwrap();
    f(&mut m);
    check_models(
        &o,
        &m,
        &opts(common::fixtures().join("ref/yolox_nano_640x640/input.npy")),
    )
    .unwrap()
}

fn set_init(m: &mut Model, name: &str, t: postmerge::onnx::TensorProto) {
    let g = m.graph_mut();
    let i = GraphIndex::build(g).initializer[name];
    g.initializer[i] = postmerge::onnx::TensorProto {
        name: Some(name.into()),
        ..t
    };
}

fn assert_caught(r: &postmerge::check::CheckReport, what: &str) {
    let text = postmerge::check::render_report(r);
    assert!(!r.ok, "{what} was not caught:\n{text}");
    assert!(
        text.contains("[FAIL] post-process")
            && text.contains("expected")
            && text.contains("actual"),
        "{what}:\n{text}"
    );
}

#[test]
fn check_catches_a_wrong_iou_constant() {
    assert_caught(
        &broken(|m| {
            set_init(
                m,
                "main01_iou_threshold",
                postmerge::tensor::tensor_f32("", &[1], &[0.7]),
            )
        }),
        "wrong IoU",
    );
}

#[test]
fn check_catches_swapped_box_columns() {
    assert_caught(
        &broken(|m| {
            let n = m
                .graph_mut()
                .node
                .iter_mut()
                .find(|n| n.name() == "postmerge/Concat")
                .unwrap();
            n.input.swap(0, 1); // x2y2 before x1y1
        }),
        "swapped box columns",
    );
}

#[test]
fn check_catches_scores_not_multiplied_by_obj() {
    assert_caught(
        &broken(|m| {
            let g = m.graph_mut();
            let n = g
                .node
                .iter_mut()
                .find(|n| n.name() == "postmerge/Mul_3")
                .unwrap();
            assert_eq!(n.op_type(), "Mul");
            n.input[0] = "postmerge/half".into(); // 0.5 instead of obj
        }),
        "scores without obj",
    );
}

#[test]
fn check_catches_an_off_by_one_stride() {
    assert_caught(
        &broken(|m| {
            let g = m.graph_mut();
            let i = GraphIndex::build(g).initializer["postmerge/stride"];
            let mut v = postmerge::tensor::values(&g.initializer[i])
                .unwrap()
                .as_f64();
            for x in v.iter_mut().filter(|x| **x == 16.0) {
                *x = 17.0;
            }
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            g.initializer[i] =
                postmerge::tensor::tensor_f32("postmerge/stride", &[1, f.len() as i64, 1], &f);
        }),
        "stride 17 instead of 16",
    );
}

#[test]
fn check_cli_exit_codes_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let out = dir.path().join("m.onnx");
    let (code, _, err) = common::run(&[
        "merge",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--check",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("check passed"), "{err}");
    // checked before it is renamed into place, but reported under its final name
    assert!(
        err.contains(&format!("merged:   {}", out.display())) && !err.contains(".postmerge-"),
        "{err}"
    );
    let mut m = Model::load(&out).unwrap();
    set_init(
        &mut m,
        "main01_iou_threshold",
        postmerge::tensor::tensor_f32("", &[1], &[0.05]),
    );
    let bad = dir.path().join("bad.onnx");
    m.save(&bad, &Default::default()).unwrap();
    let input = common::fixtures().join("ref/yolox_nano_128x160/input.npy");
    let (code, stdout, _) = common::run(&[
        "check",
        src.to_str().unwrap(),
        bad.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("check FAILED") && stdout.contains("row"),
        "{stdout}"
    );
    let (code, stdout, _) = common::run(&[
        "check",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], true);
    let (code, _, err) = common::run(&["check", src.to_str().unwrap(), src.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not one of postmerge's layouts"), "{err}");
}

#[test]
fn detect_draws_the_detections_it_reports() {
    let Some(_) = common::shared_or_skip(
        "detect on the shared dog.jpg (tests/subcommands.rs runs detect on the fixtures)",
    ) else {
        return;
    };
    // ../shared/images/dog.jpg with the merged YOLOX fixture
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("yolox_nano_640x640.onnx");
    let merged = dir.path().join("m.onnx");
    let (code, _, err) = common::run(&[
        "merge",
        src.to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let png = dir.path().join("dets.png");
    let dog = common::shared().join("images/dog.jpg");
    let (code, stdout, err) = common::run(&[
        "detect",
        merged.to_str().unwrap(),
        dog.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let dets = v["detections"].as_array().unwrap();
    assert!(!dets.is_empty());
    let photo = image::open(&dog).unwrap().to_rgb8();
    let drawn = image::open(&png).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), photo.dimensions());
    // every reported box has its class colour on its left edge, mid-height
    for d in dets {
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let class = d["class"].as_u64().unwrap() as usize;
        let (x, y) = (b[0].floor() as u32, ((b[1] + b[3]) / 2.0) as u32);
        if x < drawn.width() && y < drawn.height() {
            let px = drawn.get_pixel(x, y).0;
            let any = (0..3).any(|c| px == postmerge::imageio::class_colour(c).0);
            assert!(any, "no box colour at ({x},{y}) for class {class}: {px:?}");
        }
    }
    // the raw export post-processed in Rust gives the same detections as the merged model
    let (code, stdout2, err) = common::run(&[
        "detect",
        src.to_str().unwrap(),
        dog.to_str().unwrap(),
        "-o",
        dir.path().join("raw.png").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v2: serde_json::Value = serde_json::from_str(&stdout2).unwrap();
    assert_eq!(v2["detections"].as_array().unwrap().len(), dets.len());
    assert_eq!(v2["how"], "raw + Rust post-process");
}

#[test]
fn yolox_preprocessing_matches_the_official_input() {
    let Some(_) =
        common::shared_or_skip("preprocessing of the shared photos vs the official input.npy")
    else {
        return;
    };
    // ref input.npy was made by yolox.data.data_augment.preproc (cv2) from dog.jpg; different JPEG
    // decoders and cv2's fixed-point bilinear differ by a few grey levels, never more
    let img = postmerge::imageio::load_image(&common::shared().join("images/dog.jpg")).unwrap();
    let (x, lb) =
        postmerge::imageio::preprocess(&img, postmerge::head::Family::YoloxRaw, 640, 640).unwrap();
    let want = postmerge::npy::read_npy_file(
        common::shared().join("ref/yolox_nano_80c_640x640_op11/input.npy"),
    )
    .unwrap();
    let (a, b) = (x.to_f32(), want.to_f32());
    let mean = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs() as f64)
        .sum::<f64>()
        / a.len() as f64;
    assert!(mean < 1.5, "mean |d| {mean}");
    assert!((lb.ratio - 0.8333333333333334).abs() < 1e-9, "{lb:?}");
    let img = postmerge::imageio::load_image(&common::shared().join("images/image1.jpg")).unwrap();
    let (x, lb) =
        postmerge::imageio::preprocess(&img, postmerge::head::Family::GoldYolo, 640, 640).unwrap();
    let want = postmerge::npy::read_npy_file(
        common::shared().join("ref/gold_yolo_n_80c_640x640_op13/input.npy"),
    )
    .unwrap();
    let (a, b) = (x.to_f32(), want.to_f32());
    let mean = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs() as f64)
        .sum::<f64>()
        / a.len() as f64;
    assert!(mean < 1.5 / 255.0, "mean |d| {mean}");
    assert_eq!((lb.pad_x, lb.pad_y), (0.0, 52.0));
}
