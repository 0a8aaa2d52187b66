//! `resize` reproduces native exports: ../shared/models (CI has it) has the same weights exported
//! at 640x640, 480x640, 416x416 and 128x160; tests/fixtures/native has the project's Gold-YOLO-like
//! model exported natively at sizes the shared corpus lacks (96x96, 256x320, 384x640, 736x1280,
//! and 288x1280, where the pooled map has the same token count as at 640x640 but another shape).

mod common;

use std::collections::HashMap;

use postmerge::head::recognize;
use postmerge::model::Model;
use postmerge::npy::{read_npy_file, Npy, NpyData};
use postmerge::passes::resize::{resize, BatchSpec, ResizeOptions};
use postmerge::run::run_once;
use postmerge::shape::Dim;

fn resized(src: &std::path::Path, h: i64, w: i64, batch: Option<BatchSpec>) -> Model {
    let mut m = Model::load(src).unwrap();
    resize(
        &mut m,
        &ResizeOptions {
            height: h,
            width: w,
            batch,
        },
    )
    .unwrap_or_else(|e| panic!("{} -> {h}x{w}: {e:#}", src.display()));
    m
}

/// The structural diff must show nothing but what a native export has anyway.
fn assert_same_graph(a: &Model, native: &Model, what: &str) {
    let d = postmerge::diff::diff(a, native).unwrap();
    let text = postmerge::diff::render(&d);
    assert!(
        d.is_empty(),
        "{what}: resized and native exports differ:\n{text}"
    );
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let range = b
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f32, |m, &x| m.max(x.abs()));
    let d = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    d / range.max(1e-12)
}

#[test]
fn resized_shared_models_are_their_native_siblings() {
    let Some(_) = common::shared_or_skip(
        "resize of shared YOLOX / Gold-YOLO exports vs their native siblings",
    ) else {
        return;
    };
    let models = common::shared().join("models");
    let cases = [
        (
            "gold_yolo_n_80c_640x640_op13",
            "gold_yolo_n_80c_128x160_op13",
        ),
        (
            "gold_yolo_n_80c_640x640_op13",
            "gold_yolo_n_80c_480x640_op13",
        ),
        (
            "gold_yolo_n_80c_128x160_op13",
            "gold_yolo_n_80c_640x640_op13",
        ),
        ("yolox_nano_80c_640x640_op11", "yolox_nano_80c_128x160_op11"),
        ("yolox_nano_80c_640x640_op11", "yolox_nano_80c_480x640_op11"),
        ("yolox_nano_80c_640x640_op11", "yolox_nano_80c_416x416_op11"),
        ("yolox_nano_80c_128x160_op11", "yolox_nano_80c_640x640_op11"),
        (
            "yolox_nano_3c_640x640_op11_shapes",
            "yolox_nano_3c_128x160_op11_shapes",
        ),
        (
            "yolox_nano_3c_128x160_op11_shapes",
            "yolox_nano_3c_640x640_op11_shapes",
        ),
    ];
    for (from, to) in cases {
        let native = Model::load(&models.join(format!("{to}.onnx"))).unwrap();
        let h = recognize(&native, None).unwrap();
        let m = resized(
            &models.join(format!("{from}.onnx")),
            h.height.unwrap(),
            h.width.unwrap(),
            None,
        );
        assert_same_graph(&m, &native, &format!("{from} -> {to}"));
        // numerics in tract on the sibling's reference input; onnx.checker + onnxruntime vs the
        // native export in tests/oracle/resize_check.py
        let x = read_npy_file(common::shared().join(format!("ref/{to}/input.npy"))).unwrap();
        let a = run_once(&m, &[&x], &[]).unwrap();
        let raw = read_npy_file(common::shared().join(format!("ref/{to}/raw.npy"))).unwrap();
        assert_eq!(a[0].1.shape, raw.shape);
        let rel = max_rel(&a[0].1.to_f32(), &raw.to_f32());
        // tract vs the onnxruntime raw.npy: the runtimes' own noise (rust-notes.md §3)
        assert!(rel <= 2e-3, "{from} -> {to}: rel {rel}");
        let b = run_once(&native, &[&x], &[]).unwrap();
        assert!(
            max_rel(&a[0].1.to_f32(), &b[0].1.to_f32()) <= 1e-4,
            "{from} -> {to}: resized vs native in tract"
        );
    }
}

#[test]
fn decoded_yolox_heads_are_regenerated_for_the_new_grid() {
    let Some(_) = common::shared_or_skip("resize of the shared decoded YOLOX heads") else {
        return;
    };
    // no native decoded export at 128x160 exists: compare with the reference decode of the raw
    // native 128x160 output (same weights)
    for stem in [
        "yolox_nano_80c_640x640_op11_decode",
        "yolox_nano_80c_640x640_op11_decode_githead",
    ] {
        let m = resized(
            &common::shared().join(format!("models/{stem}.onnx")),
            128,
            160,
            None,
        );
        let x = read_npy_file(common::shared().join("ref/yolox_nano_80c_128x160_op11/input.npy"))
            .unwrap();
        let y = run_once(&m, &[&x], &[]).unwrap();
        let raw = read_npy_file(common::shared().join("ref/yolox_nano_80c_128x160_op11/raw.npy"))
            .unwrap();
        let r = raw.to_f32();
        let spec = postmerge::postprocess::HeadSpec::new(
            postmerge::postprocess::HeadKind::YoloxRaw,
            80,
            128,
            160,
        );
        let dec = postmerge::postprocess::decode(&r, 1, 420, &spec).unwrap();
        let got = y[0].1.to_f32();
        for i in 0..420 {
            let b = dec.box_at(0, i).unwrap();
            let (cx, cy, w, h) = (
                (b[0] + b[2]) / 2.0,
                (b[1] + b[3]) / 2.0,
                b[2] - b[0],
                b[3] - b[1],
            );
            let row = &got[i * 85..i * 85 + 4];
            for (k, want) in [cx, cy, w, h].iter().enumerate() {
                // tract (resized decoded graph) vs the reference decode of onnxruntime's raw
                // output: runtime noise only; measured worst 0.0088 px / 2.7e-4 relative
                assert!(
                    (row[k] - want).abs() <= 1e-3 * want.abs().max(1.0),
                    "{stem} anchor {i} col {k}: {} vs {want}",
                    row[k]
                );
            }
        }
    }
}

fn synthetic(h: usize, w: usize, b: usize) -> Npy {
    postmerge::imageio::synthetic(postmerge::head::Family::GoldYolo, b, h, w).unwrap()
}

#[test]
fn goldlike_matches_its_native_exports_where_pools_stop_dividing_evenly() {
    let src = common::fixtures().join("goldlike_640x640.onnx");
    for (h, w) in [(96, 96), (256, 320), (384, 640), (736, 1280), (288, 1280)] {
        let native =
            Model::load(&common::fixtures().join(format!("native/goldlike_{h}x{w}.onnx"))).unwrap();
        let m = resized(&src, h, w, None);
        assert_same_graph(&m, &native, &format!("goldlike -> {h}x{w}"));
        let x = synthetic(h as usize, w as usize, 1);
        let a = run_once(&m, &[&x], &[]).unwrap();
        let b = run_once(&native, &[&x], &[]).unwrap();
        assert_eq!(a[0].1.shape, b[0].1.shape);
        assert!(
            max_rel(&a[0].1.to_f32(), &b[0].1.to_f32()) <= 1e-4,
            "{h}x{w}"
        );
    }
}

#[test]
fn every_tensor_has_the_inferred_shape_at_new_sizes() {
    let Some(_) = common::shared_or_skip("inferred shapes of the resized shared Gold-YOLO-n")
    else {
        return;
    };
    // the real Gold-YOLO at sizes with no native export: run in tract with every tensor exposed
    for (h, w) in [(96, 96), (256, 320)] {
        let m = resized(
            &common::shared().join("models/gold_yolo_n_80c_640x640_op13.onnx"),
            h,
            w,
            None,
        );
        let shapes = postmerge::shape::infer(&m, &HashMap::new()).unwrap();
        assert!(shapes.unknown.is_empty(), "{:?}", shapes.unknown);
        let names: Vec<String> = m
            .graph()
            .node
            .iter()
            .filter(|n| n.op_type() != "Constant")
            .flat_map(|n| n.output.clone())
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let x = synthetic(h as usize, w as usize, 1);
        let outs = run_once(&m, &[&x], &refs).unwrap();
        let mut checked = 0;
        for (name, t) in &outs {
            let Some(s) = shapes.shape(name) else {
                continue;
            };
            let want: Vec<usize> = s.iter().map(|d| d.known().unwrap() as usize).collect();
            assert_eq!(t.shape, want, "{h}x{w}: tensor `{name}`");
            checked += 1;
        }
        assert!(checked > 400, "{checked}");
    }
}

fn stack(inputs: &[&Npy]) -> Npy {
    let mut data = Vec::new();
    for x in inputs {
        data.extend(x.to_f32());
    }
    let mut shape = inputs[0].shape.clone();
    shape[0] = inputs.len();
    Npy::new(shape, NpyData::F32(data)).unwrap()
}

fn flipped(x: &Npy) -> Npy {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let v = x.to_f32();
    let mut o = vec![0f32; v.len()];
    for k in 0..c {
        for y in 0..h {
            for xx in 0..w {
                o[(k * h + y) * w + xx] = v[(k * h + y) * w + (w - 1 - xx)];
            }
        }
    }
    Npy::new(x.shape.clone(), NpyData::F32(o)).unwrap()
}

#[test]
fn batch_four_and_dynamic_batch_give_per_image_batch_one_results() {
    let Some(_) = common::shared_or_skip("batch 4 / dynamic batch of the shared models") else {
        return;
    };
    for stem in [
        "yolox_nano_80c_128x160_op11",
        "gold_yolo_n_80c_128x160_op13",
    ] {
        let src = common::shared().join(format!("models/{stem}.onnx"));
        let one = Model::load(&src).unwrap();
        let x0 = read_npy_file(common::shared().join(format!("ref/{stem}/input.npy"))).unwrap();
        let imgs = [
            x0.clone(),
            flipped(&x0),
            synthetic(128, 160, 1),
            flipped(&synthetic(128, 160, 1)),
        ];
        let singles: Vec<Vec<f32>> = imgs
            .iter()
            .map(|x| run_once(&one, &[x], &[]).unwrap()[0].1.to_f32())
            .collect();
        let refs: Vec<&Npy> = imgs.iter().collect();
        let batch = stack(&refs);
        for spec in [BatchSpec::Static(4), BatchSpec::Dynamic] {
            let m = resized(&src, 128, 160, Some(spec.clone()));
            let want_dim = if spec == BatchSpec::Dynamic {
                Dim::Sym("batch".into())
            } else {
                Dim::Known(4)
            };
            assert_eq!(
                postmerge::shape::vi_shape(&m.graph().input[0]).unwrap()[0],
                want_dim
            );
            let out = run_once(&m, &[&batch], &[]).unwrap();
            let all = out[0].1.to_f32();
            assert_eq!(out[0].1.shape[0], 4);
            let per = all.len() / 4;
            for (i, s) in singles.iter().enumerate() {
                let rel = max_rel(&all[i * per..(i + 1) * per], s);
                assert!(rel <= 1e-5, "{stem} {spec:?} image {i}: rel {rel}");
            }
            // merged: the batch column carries the image index, and image i's rows (in order)
            // are the batch-1 model's rows on image i: class exact, score 1e-5, box 1e-3 px
            let mut mm = m.clone();
            postmerge::passes::merge::merge(&mut mm, &Default::default()).unwrap();
            let out = run_once(&mm, &[&batch], &[]).unwrap();
            let v = out[0].1.to_f32();
            assert_eq!(out[0].1.shape[1], 7);
            let mut m1 = one.clone();
            postmerge::passes::merge::merge(&mut m1, &Default::default()).unwrap();
            let mut compared = 0;
            for (i, img) in imgs.iter().enumerate() {
                let mine: Vec<&[f32]> = v.chunks(7).filter(|r| r[0] == i as f32).collect();
                let single = run_once(&m1, &[img], &[]).unwrap()[0].1.to_f32();
                let theirs: Vec<&[f32]> = single.chunks(7).collect();
                assert_eq!(mine.len(), theirs.len(), "{stem} {spec:?} image {i}: rows");
                for (k, (a, b)) in mine.iter().zip(&theirs).enumerate() {
                    let what = format!("{stem} {spec:?} image {i} row {k}: {a:?} vs {b:?}");
                    assert_eq!(b[0], 0.0, "{what}");
                    assert_eq!(a[1], b[1], "class: {what}");
                    let score = if stem.starts_with("gold") { 6 } else { 2 };
                    assert!((a[score] - b[score]).abs() <= 1e-5, "score: {what}");
                    for c in (1..7).filter(|&c| c != score && c != 1) {
                        assert!((a[c] - b[c]).abs() <= 1e-3, "box: {what}");
                    }
                }
                compared += mine.len();
            }
            assert!(compared > 0, "{stem} {spec:?}: no rows compared");
            assert_eq!(compared, v.len() / 7, "{stem} {spec:?}: rows of no image");
        }
    }
}

#[test]
fn merge_with_size_equals_the_reference_on_the_native_export() {
    let Some(_) = common::shared_or_skip("merge --size on shared models vs the native exports")
    else {
        return;
    };
    // merge --size 128x160 of the 640x640 export vs the reference post-process of the native
    // 128x160 export's raw output (both run in tract on the native reference input)
    for (from, to) in [
        (
            "gold_yolo_n_80c_640x640_op13",
            "gold_yolo_n_80c_128x160_op13",
        ),
        ("yolox_nano_80c_640x640_op11", "yolox_nano_80c_128x160_op11"),
    ] {
        let mut m = resized(
            &common::shared().join(format!("models/{from}.onnx")),
            128,
            160,
            None,
        );
        postmerge::passes::merge::merge(&mut m, &Default::default()).unwrap();
        let native = Model::load(&common::shared().join(format!("models/{to}.onnx"))).unwrap();
        let x = read_npy_file(common::shared().join(format!("ref/{to}/input.npy"))).unwrap();
        let r = postmerge::check::check_models(
            &native,
            &m,
            &postmerge::check::CheckOptions {
                input: postmerge::check::CheckInput::Npy(
                    common::shared().join(format!("ref/{to}/input.npy")),
                ),
                tol: Default::default(),
            },
        )
        .unwrap();
        assert!(
            r.ok && r.steps.iter().all(|s| s.ok == Some(true)),
            "{}",
            postmerge::check::render_report(&r)
        );
        let _ = x;
    }
}

#[test]
fn sizes_the_model_cannot_take_are_refused_before_any_work() {
    let Some(_) = common::shared_or_skip("size refusals on the shared YOLOX-nano 640x640") else {
        return;
    };
    let src = common::shared().join("models/yolox_nano_80c_640x640_op11.onnx");
    for (h, w, msg) in [
        (100, 160, "multiples of the largest stride 32"),
        (0, 160, "must be positive"),
        (-32, 64, "must be positive"),
        (65536, 64, "larger than 8192"),
    ] {
        let mut m = Model::load(&src).unwrap();
        let e = resize(
            &mut m,
            &ResizeOptions {
                height: h,
                width: w,
                batch: None,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(msg), "{h}x{w}: {e}");
    }
    let mut m = Model::load(&src).unwrap();
    postmerge::passes::merge::merge(&mut m, &Default::default()).unwrap();
    let e = resize(
        &mut m,
        &ResizeOptions {
            height: 128,
            width: 160,
            batch: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("resize first, then merge"), "{e}");
    // CLI: bad size strings and patterns
    let (code, _, err) = common::run(&[
        "resize",
        src.to_str().unwrap(),
        "-o",
        "/tmp/x.onnx",
        "--size",
        "128x160",
        "--size",
        "256x320",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("output pattern with {h} and {w}"), "{err}");
    let (code, _, err) = common::run(&[
        "resize",
        src.to_str().unwrap(),
        "-o",
        "/tmp/x.onnx",
        "--size",
        "128by160",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("is not HxW"), "{err}");
}

#[test]
fn diff_snapshot_of_goldlike_640_vs_resized_128x160() {
    let a = Model::load(&common::fixtures().join("goldlike_640x640.onnx")).unwrap();
    let b = resized(
        &common::fixtures().join("goldlike_640x640.onnx"),
        128,
        160,
        None,
    );
    let text = postmerge::diff::render(&postmerge::diff::diff(&a, &b).unwrap());
    common::settings("resize")
        .bind(|| insta::assert_snapshot!("goldlike_640x640_to_128x160", text));
    // and the resized model equals the native 128x160 fixture
    assert_same_graph(
        &b,
        &Model::load(&common::fixtures().join("goldlike_128x160.onnx")).unwrap(),
        "goldlike 128x160",
    );
}
