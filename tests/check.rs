//! `check` passes on every merged shared model (../shared, CI has it) and fixture, and FAILS with
//! exit 1 and the differing rows on deliberately broken merges. Each of its three steps fails on
//! its own when only what it proves is broken; a check that compares nothing is NOT PROVEN (exit
//! 3), never a pass. `detect` draws what it detects.

mod common;

use postmerge::check::{
    check_against, check_models, match_detections, render_report, CheckInput, CheckOptions,
    CheckReport, Requested, Status,
};
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
    assert_eq!(r.status, Status::Failed, "{what}:\n{text}");
    assert_eq!(state(r, "head"), Some(true), "{what}:\n{text}");
}

/// The outcome of one step (`Some(true)` ok, `Some(false)` FAIL, `None` not proven).
fn state(r: &CheckReport, step: &str) -> Option<bool> {
    r.steps
        .iter()
        .find(|s| s.name == step)
        .unwrap_or_else(|| panic!("no step `{step}`:\n{}", render_report(r)))
        .ok
}

/// (head, post-process, detections)
fn states(r: &CheckReport) -> [Option<bool>; 3] {
    [
        state(r, "head"),
        state(r, "post-process"),
        state(r, "detections"),
    ]
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

// ---------------------------------------------------------------------------------------------
// Each step fails alone; nothing passes vacuously (issue 14)
// ---------------------------------------------------------------------------------------------

fn small() -> (Model, std::path::PathBuf) {
    (
        Model::load(&common::fixtures().join("yolox_nano_128x160.onnx")).unwrap(),
        common::fixtures().join("ref/yolox_nano_128x160/input.npy"),
    )
}

/// Merge the 128x160 YOLOX fixture with `mo`, break the merged copy with `f`, check it on the
/// reference input against `req`.
fn broken_small(mo: MergeOptions, f: impl Fn(&mut Model), req: Requested) -> CheckReport {
    let (o, input) = small();
    let mut m = o.clone();
    merge(&mut m, &mo).unwrap();
    f(&mut m);
    check_against(&o, &m, &opts(input), &req).unwrap()
}

#[test]
fn the_unbroken_small_merge_passes_every_step_non_vacuously() {
    // the baseline the "alone" tests below break one thing of
    let r = broken_small(MergeOptions::default(), |_| {}, Requested::default());
    let text = render_report(&r);
    assert_eq!(states(&r), [Some(true); 3], "{text}");
    assert_eq!(r.status, Status::Passed, "{text}");
    assert!(r.ok && r.detections > 0, "{text}");
    assert!(r.steps.iter().all(|s| s.compared > 0), "{text}");
    assert!(text.contains(&format!("check passed ({} detections)", r.detections)));
}

#[test]
fn check_step_head_fails_alone_on_a_perturbed_conv_bias() {
    // 0.02 grid cells added to the x offset of every stride-8 box, inside the merged model only:
    // its head tensor differs from the original's (relative 1e-2 > 1e-4) but its own post-process
    // is consistent and the boxes move 0.16 px (IoU > 0.9 with the reference)
    let r = broken_small(
        MergeOptions::default(),
        |m| {
            let g = m.graph_mut();
            let i = GraphIndex::build(g).initializer["head.reg_preds.0.bias"];
            let mut v = postmerge::tensor::values(&g.initializer[i])
                .unwrap()
                .as_f64();
            v[0] += 0.02;
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            g.initializer[i] = postmerge::tensor::tensor_f32("head.reg_preds.0.bias", &[4], &f);
        },
        Requested::default(),
    );
    let text = render_report(&r);
    assert_eq!(states(&r), [Some(false), Some(true), Some(true)], "{text}");
    assert!(
        text.contains("[FAIL] head") && text.contains("check FAILED"),
        "{text}"
    );
    assert_eq!(r.status, Status::Failed);
}

#[test]
fn check_step_post_process_fails_alone_on_an_nms_constant_off_its_record() {
    // the score constant of the graph no longer equals the recorded 0.25: no box of this input
    // lies in (0.25, 0.2501], so the rows agree and only the constant check can see it
    let r = broken_small(
        MergeOptions::default(),
        |m| {
            set_init(
                m,
                "main01_score_threshold",
                postmerge::tensor::tensor_f32("", &[1], &[0.2501]),
            )
        },
        Requested::default(),
    );
    let text = render_report(&r);
    assert_eq!(states(&r), [Some(true), Some(false), Some(true)], "{text}");
    assert!(
        text.contains("[FAIL] post-process")
            && text.contains("input 4 (score_threshold) is 0.2501 in the graph")
            && text.contains("records 0.25"),
        "{text}"
    );
    assert!(r.diffs.is_empty(), "{text}");
    // the same for max_output_boxes_per_class (int64) and the IoU
    for (name, t) in [
        (
            "main01_max_output_boxes_per_class",
            postmerge::tensor::tensor_i64("", &[1], &[21]),
        ),
        (
            "main01_iou_threshold",
            postmerge::tensor::tensor_f32("", &[1], &[0.40001]),
        ),
    ] {
        let r = broken_small(
            MergeOptions::default(),
            |m| set_init(m, name, t.clone()),
            Requested::default(),
        );
        let text = render_report(&r);
        assert_eq!(state(&r, "post-process"), Some(false), "{name}:\n{text}");
        assert_eq!(state(&r, "head"), Some(true), "{name}:\n{text}");
        assert!(text.contains("in the graph; the model's postmerge.merge metadata records"));
    }
}

#[test]
fn check_step_detections_fails_alone_when_the_model_is_not_what_was_asked() {
    // a self-consistent model (graph and metadata agree) with another detection set than the
    // one asked for: what a CLI that dropped --score / --max-per-class / --max-det would produce
    let cases: Vec<(&str, MergeOptions, Requested)> = vec![
        (
            "score 0.5 asked, 0.25 merged",
            MergeOptions::default(),
            Requested {
                score: Some(0.5),
                ..Default::default()
            },
        ),
        (
            "score 0.25 asked, 0.5 merged",
            MergeOptions {
                score_threshold: 0.5,
                ..Default::default()
            },
            Requested {
                score: Some(0.25),
                ..Default::default()
            },
        ),
        (
            "2 per class asked, 20 merged",
            MergeOptions::default(),
            Requested {
                max_per_class: Some(2),
                ..Default::default()
            },
        ),
        (
            "K 3 asked, 100 merged (trt)",
            MergeOptions {
                layout: Some(Layout::Trt { max_det: 100 }),
                ..Default::default()
            },
            Requested {
                max_det: Some(3),
                ..Default::default()
            },
        ),
        (
            "IoU 0.1 asked, 0.4 merged (ultralytics)",
            MergeOptions {
                layout: Some(Layout::Ultralytics { max_det: 100 }),
                ..Default::default()
            },
            Requested {
                iou: Some(0.1),
                ..Default::default()
            },
        ),
    ];
    for (what, mo, req) in cases {
        let r = broken_small(mo, |_| {}, req);
        let text = render_report(&r);
        assert_eq!(
            states(&r),
            [Some(true), Some(true), Some(false)],
            "{what}:\n{text}"
        );
        assert!(
            text.contains("[FAIL] detections") && text.contains("asked:"),
            "{what}:\n{text}"
        );
        // the detection sets differ, not only the parameters
        let d = &r.steps[2].detail;
        assert!(
            !d.contains(" 0 missing, 0 extra"),
            "{what}: the detections agree:\n{text}"
        );
        assert!(
            d.contains("was asked for; the model has"),
            "{what}:\n{text}"
        );
    }
    // asking for what the model has passes
    let r = broken_small(
        MergeOptions {
            score_threshold: 0.5,
            ..Default::default()
        },
        |_| {},
        Requested {
            score: Some(0.5),
            iou: Some(0.4),
            max_per_class: Some(20),
            max_det: Some(7),
            agnostic: Some(false),
        },
    );
    assert_eq!(r.status, Status::Passed, "{}", render_report(&r));
}

#[test]
fn check_step_detections_fails_on_retuned_thresholds() {
    // `set --score 0.6` changes graph and metadata together: the model agrees with itself
    // (steps 1 and 2) but no longer gives the detections the merge was asked for
    let r = broken_small(
        MergeOptions::default(),
        |m| {
            postmerge::passes::set::set(
                m,
                &postmerge::passes::set::SetOptions {
                    score_threshold: Some(0.6),
                    iou_threshold: None,
                    max_per_class: None,
                },
            )
            .unwrap();
        },
        Requested {
            score: Some(0.25),
            ..Default::default()
        },
    );
    let text = render_report(&r);
    assert_eq!(states(&r), [Some(true), Some(true), Some(false)], "{text}");
    let missing: usize = r.steps[2]
        .detail
        .split(", ")
        .find_map(|p| p.strip_suffix(" missing")?.parse().ok())
        .unwrap();
    assert!(missing > 0, "{text}");
}

#[test]
fn check_catches_a_changed_detection_set_in_steps_2_and_3() {
    // batch index and class id columns of the pinto output swapped: the rows differ from the
    // reference (step 2) and the detections are reported under other images/classes (step 3)
    let (o, input) = small();
    let mut m = o.clone();
    merge(&mut m, &MergeOptions::default()).unwrap();
    let g = m.graph_mut();
    let out = g.output[0].name().to_string();
    let n = g.node.iter_mut().find(|n| n.output.contains(&out)).unwrap();
    assert_eq!(n.op_type(), "Concat", "{n:?}");
    assert_eq!(n.input.len(), 4, "{n:?}"); // batch, class, score, boxes
    n.input.swap(0, 1);
    let r = check_against(&o, &m, &opts(input), &Requested::default()).unwrap();
    let text = render_report(&r);
    assert_eq!(states(&r), [Some(true), Some(false), Some(false)], "{text}");
}

#[test]
fn match_detections_requires_image_class_and_iou_for_scores_clear_of_the_threshold() {
    use postmerge::postprocess::Detection;
    let d = |batch, class, score, x1: f32| Detection {
        batch,
        class,
        score,
        x1,
        y1: 0.0,
        x2: x1 + 10.0,
        y2: 10.0,
    };
    let reference = [d(0, 1, 0.9, 0.0), d(0, 2, 0.8, 50.0)];
    let m = match_detections(&reference, &reference, 0.25);
    assert_eq!((m.considered, m.missing, m.extra), (2, 0, 0));
    // another class, another image, a shifted box (IoU 9/11 < 0.9): missing and extra
    for got in [
        [d(0, 0, 0.9, 0.0), d(0, 2, 0.8, 50.0)],
        [d(1, 1, 0.9, 0.0), d(0, 2, 0.8, 50.0)],
        [d(0, 1, 0.9, 1.0), d(0, 2, 0.8, 50.0)],
    ] {
        let m = match_detections(&reference, &got, 0.25);
        assert_eq!((m.considered, m.missing, m.extra), (2, 1, 1), "{got:?}");
    }
    // a box shifted by 0.5 px (IoU 0.905) matches
    let m = match_detections(&reference, &[d(0, 1, 0.9, 0.5), d(0, 2, 0.8, 50.0)], 0.25);
    assert_eq!((m.missing, m.extra), (0, 0));
    // scores within 1e-3 of the threshold are not compared, just above it they are
    let near = [d(0, 1, 0.2505, 0.0)];
    let m = match_detections(&near, &[], 0.25);
    assert_eq!((m.considered, m.missing), (0, 0));
    let m = match_detections(&[], &near, 0.25);
    assert_eq!(m.extra, 0);
    // a detection below the threshold should not be there at all
    let below = [d(0, 1, 0.2, 0.0)];
    assert_eq!(match_detections(&[], &below, 0.25).extra, 1);
    assert_eq!(match_detections(&below, &below, 0.25).extra, 0);
    let above = [d(0, 1, 0.2515, 0.0)];
    assert_eq!(match_detections(&above, &[], 0.25).missing, 1);
    assert_eq!(match_detections(&[], &above, 0.25).extra, 1);
    // a degenerate box (x2 < x1, IoU 0) matches its identical copy only
    let flat = [Detection {
        x2: -5.0,
        ..d(0, 1, 0.9, 0.0)
    }];
    assert_eq!(match_detections(&flat, &flat, 0.25).missing, 0);
    let other = [Detection {
        x2: -6.0,
        ..d(0, 1, 0.9, 0.0)
    }];
    assert_eq!(match_detections(&flat, &other, 0.25).missing, 1);
    // nothing compared
    let m = match_detections(&[], &[], 0.25);
    assert_eq!((m.considered, m.missing, m.extra), (0, 0, 0));
}

#[test]
fn a_check_that_compares_nothing_is_not_proven_with_exit_3() {
    // a uniform grey tensor: the trained shapes detector sees no shape, the reference selects
    // nothing; the check must not pass
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("shapes_128x160.onnx");
    let merged = dir.path().join("m.onnx");
    let (code, _, err) = common::run(&[
        "merge",
        src.to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let grey = dir.path().join("grey.npy");
    std::fs::write(
        &grey,
        postmerge::npy::write_npy_f32(&[1, 3, 128, 160], &vec![114.0; 3 * 128 * 160]).unwrap(),
    )
    .unwrap();
    let (code, stdout, err) = common::run(&[
        "check",
        src.to_str().unwrap(),
        merged.to_str().unwrap(),
        "--input",
        grey.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stdout}{err}");
    assert!(
        stdout.contains("[NOT PROVEN] post-process")
            && stdout.contains("[NOT PROVEN] detections")
            && stdout.contains("check NOT PROVEN: post-process, detections compared nothing")
            && !stdout.contains("check passed"),
        "{stdout}"
    );
    let (code, stdout, _) = common::run(&[
        "check",
        src.to_str().unwrap(),
        merged.to_str().unwrap(),
        "--input",
        grey.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["status"].as_str()),
        (Some(false), Some("not_proven"))
    );
    assert_eq!(v["steps"][1]["compared"], 0);
    // the same model checked on the bundled default input is proven
    let (code, stdout, err) =
        common::run(&["check", src.to_str().unwrap(), merged.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("input:    bundled scene"), "{stdout}");
}

#[test]
fn a_gold_yolo_original_at_another_size_leaves_check_not_proven() {
    // goldlike_640x640 bakes its size: it cannot run at 128x160, so steps 1 and 3 have nothing
    // to compare (same weights as goldlike_128x160)
    let o = Model::load(&common::fixtures().join("goldlike_640x640.onnx")).unwrap();
    let mut m = Model::load(&common::fixtures().join("goldlike_128x160.onnx")).unwrap();
    merge(&mut m, &MergeOptions::default()).unwrap();
    let r = check_models(
        &o,
        &m,
        &opts(common::fixtures().join("ref/goldlike_128x160/input.npy")),
    )
    .unwrap();
    let text = render_report(&r);
    assert_eq!(states(&r), [None, Some(true), None], "{text}");
    assert_eq!(r.status, Status::NotProven, "{text}");
    assert_eq!(r.status.exit_code(), 3);
    assert!(!r.ok);
    assert!(
        text.contains("check NOT PROVEN: head, detections"),
        "{text}"
    );
}

#[test]
fn status_of_steps() {
    let st = |ok: &[Option<bool>]| {
        Status::of(
            &ok.iter()
                .map(|&ok| postmerge::check::Step {
                    name: "s".into(),
                    ok,
                    compared: 1,
                    detail: String::new(),
                })
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(st(&[Some(true), Some(true), Some(true)]), Status::Passed);
    assert_eq!(st(&[Some(true), None, Some(true)]), Status::NotProven);
    assert_eq!(st(&[None, Some(false), Some(true)]), Status::Failed);
    assert_eq!(st(&[Some(false), Some(true), Some(true)]), Status::Failed);
    assert_eq!(st(&[]), Status::NotProven);
    assert_eq!(
        [Status::Passed, Status::Failed, Status::NotProven].map(|s| s.exit_code()),
        [0, 1, 3]
    );
}

/// `merge … --check` on the default input: exit 0, every step ok, more than 0 detections.
fn assert_merge_check_proves(args: &[&str]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let mut a: Vec<&str> = vec!["merge"];
    a.extend_from_slice(args);
    let o = out.to_str().unwrap().to_string();
    a.extend_from_slice(&["-o", &o, "--check"]);
    let (code, _, err) = common::run(&a);
    assert_eq!(code, 0, "{a:?}: {err}");
    assert!(out.exists());
    assert_eq!(err.matches("[ok  ]").count(), 3, "{a:?}: {err}");
    assert!(
        !err.contains("NOT PROVEN") && err.contains("input:    bundled scene"),
        "{err}"
    );
    let n: usize = err
        .split("check passed (")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{a:?}: {err}"));
    assert!(n > 0, "{a:?}: {err}");
    n
}

#[test]
fn the_readme_merge_check_proves_something() {
    // README: `merge tests/fixtures/shapes_128x160.onnx -o m.onnx --check` (no --image); the
    // audit measured "0 selections ... check passed (0 detections)" here before
    let f = |n: &str| common::fixtures().join(n).display().to_string();
    assert_merge_check_proves(&[&f("shapes_128x160.onnx")]);
    assert_merge_check_proves(&[&f("goldlike_128x160.onnx")]);
    assert_merge_check_proves(&[&f("goldlike_640x640.onnx"), "--size", "128x160"]);
    assert_merge_check_proves(&[&f("yolox_nano_128x160.onnx"), "--layout", "decoded"]);
    assert_merge_check_proves(&[&f("yolox_nano_128x160.onnx"), "--layout", "ultralytics"]);
}

#[test]
fn merge_check_compares_against_the_requested_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let out = dir.path().join("m.onnx");
    let (code, stdout, err) = common::run(&[
        "merge",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--layout",
        "trt",
        "--score",
        "0.3",
        "--iou",
        "0.5",
        "--max-per-class",
        "7",
        "--max-det",
        "9",
        "--check",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let c = &v[0]["check"];
    assert_eq!(c["status"], "passed", "{c}");
    assert_eq!(
        c["requested"], "score > 0.3, IoU > 0.5, 7 per class, max-det 9",
        "{c}"
    );
    assert_eq!(c["requested"], c["params"]);
    // standalone check asked for other parameters than the model has: step 3 fails, exit 1
    let (code, stdout, _) = common::run(&[
        "check",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "--score",
        "0.25",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("[ok  ] post-process")
            && stdout.contains("[FAIL] detections")
            && stdout.contains("score 0.25 was asked for; the model has 0.3"),
        "{stdout}"
    );
    let (code, stdout, _) = common::run(&[
        "check",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "--score",
        "0.3",
        "--iou",
        "0.5",
        "--max-per-class",
        "7",
        "--max-det",
        "9",
    ]);
    assert_eq!(code, 0, "{stdout}");
    for (flag, value, msg) in [
        ("--iou", "0.45", "IoU 0.45 was asked for; the model has 0.5"),
        (
            "--max-per-class",
            "20",
            "max-per-class 20 was asked for; the model has 7",
        ),
        (
            "--max-det",
            "100",
            "max-det 100 was asked for; the model has 9",
        ),
    ] {
        let (code, stdout, _) = common::run(&[
            "check",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            flag,
            value,
        ]);
        assert_eq!(code, 1, "{flag}: {stdout}");
        assert!(
            stdout.contains(msg) && stdout.contains("[FAIL] detections"),
            "{stdout}"
        );
    }
}

#[test]
fn merge_check_that_proves_nothing_writes_nothing_and_exits_3() {
    // --image with a uniform grey picture: the shapes detector selects nothing on it
    let dir = tempfile::tempdir().unwrap();
    let grey = dir.path().join("grey.png");
    image::RgbImage::from_pixel(160, 128, image::Rgb([114, 114, 114]))
        .save(&grey)
        .unwrap();
    let out = dir.path().join("m.onnx");
    let (code, _, err) = common::run(&[
        "merge",
        common::fixtures()
            .join("shapes_128x160.onnx")
            .to_str()
            .unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--check",
        "--image",
        grey.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("check NOT PROVEN") && err.contains("no output written"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn letterbox_maps_input_boxes_back_through_pad_and_ratio() {
    // the audit's MUT3b (pad ignored) survived every test: the mapping is checked here against
    // hand-computed values, for a synthetic letterbox and for both families' real preprocessing
    use postmerge::imageio::{preprocess, Letterbox};
    let lb = Letterbox {
        ratio: 0.5,
        pad_x: 10.0,
        pad_y: 20.0,
        width: 100,
        height: 100,
    };
    assert_eq!(
        lb.to_photo([30.0, 40.0, 50.0, 60.0]),
        [40.0, 40.0, 80.0, 80.0]
    );
    // clipped to the photo
    assert_eq!(
        lb.to_photo([0.0, 0.0, 500.0, 500.0]),
        [0.0, 0.0, 100.0, 100.0]
    );
    let img = image::RgbImage::from_pixel(200, 100, image::Rgb([10, 20, 30]));
    // Gold-YOLO: ratio 0.32, 64x32 centred in 64x64, 16 rows of padding above
    let (_, lb) = preprocess(&img, postmerge::head::Family::GoldYolo, 64, 64).unwrap();
    assert_eq!((lb.pad_x, lb.pad_y), (0.0, 16.0));
    let close = |a: [f32; 4], b: [f32; 4]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-3);
    let got = lb.to_photo([32.0, 32.0, 48.0, 40.0]);
    assert!(close(got, [100.0, 50.0, 150.0, 75.0]), "{got:?}");
    let got = lb.to_photo([0.0, 16.0, 64.0, 48.0]);
    assert!(close(got, [0.0, 0.0, 200.0, 100.0]), "{got:?}");
    // YOLOX: top-left, no padding
    let (_, lb) = preprocess(&img, postmerge::head::Family::YoloxRaw, 64, 64).unwrap();
    assert_eq!((lb.pad_x, lb.pad_y), (0.0, 0.0));
    let got = lb.to_photo([32.0, 16.0, 48.0, 24.0]);
    assert!(close(got, [100.0, 50.0, 150.0, 75.0]), "{got:?}");
}

#[test]
fn compare_outputs_reports_a_missing_output_as_not_ok() {
    // a problem without a differing row (output missing) must still fail the comparison
    let t = postmerge::npy::Npy::new(
        vec![1, 7],
        postmerge::npy::NpyData::F32(vec![0.0, 1.0, 0.9, 1.0, 2.0, 3.0, 4.0]),
    )
    .unwrap();
    let expected = [postmerge::postprocess::OutputTensor {
        name: "batchno_classid_score_x1y1x2y2".into(),
        tensor: t.clone(),
    }];
    let c = postmerge::check::compare_outputs(&Layout::Pinto, &expected, &[], Default::default())
        .unwrap();
    assert!(c.diffs.is_empty() && !c.problems.is_empty(), "{c:?}");
    assert!(!c.ok());
    let same = [("batchno_classid_score_x1y1x2y2".to_string(), t)];
    let c = postmerge::check::compare_outputs(&Layout::Pinto, &expected, &same, Default::default())
        .unwrap();
    assert!(c.ok(), "{c:?}");
}
