//! Issue 13: files that lie. Declared output shapes that are symbolic (every dynamic-batch export)
//! never decide recognition; a symbolic batch the exporter baked into constants is repaired (or
//! refused); NaN/Inf weights are refused, and `check` fails on them.
//!
//! Fixtures: tests/fixtures/dynamic/ (written by tests/fixtures/make_dynamic.py from the committed
//! static exports; the same declarations as the official `--dynamic` / `--dynamic-batch` exports).
//! The real Gold-YOLO `--dynamic-batch` file runs when POSTMERGE_SHARED names the shared corpus.
//! onnxruntime runs the same batch cases in tests/oracle/batch_check.py.

mod common;

use std::path::{Path, PathBuf};

use postmerge::head::{recognize, Family};
use postmerge::model::Model;
use postmerge::npy::{read_npy_file, Npy, NpyData};
use postmerge::passes::merge::{merge, MergeOptions};
use postmerge::shape::Dim;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn dynamic(name: &str) -> PathBuf {
    fixtures().join("dynamic").join(name)
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_postmerge")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("run postmerge");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The shared corpus when POSTMERGE_SHARED is set (the switch of tests/common on main); a test
/// that needs it prints that it did not run otherwise.
fn shared_or_skip(what: &str) -> Option<PathBuf> {
    match std::env::var_os("POSTMERGE_SHARED").filter(|v| !v.is_empty()) {
        Some(v) => {
            let d = PathBuf::from(v);
            assert!(
                d.join("models").is_dir(),
                "POSTMERGE_SHARED={} has no models/",
                d.display()
            );
            Some(d)
        }
        None => {
            eprintln!("skipped (POSTMERGE_SHARED not set): {what}");
            None
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("postmerge-lying-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Rows of the PINTO-style `[N, 7]` output (col 0 = image index), per image, index dropped.
fn rows_per_image(out: &Npy, b: usize) -> Vec<Vec<Vec<f32>>> {
    let v = out.to_f32();
    let mut per = vec![Vec::new(); b];
    for r in v.chunks(7) {
        let i = r[0] as usize;
        assert!(i < b, "row for image {i} of a batch of {b}");
        per[i].push(r[1..].to_vec());
    }
    per
}

/// Merge a dynamic-batch export, then run it in tract at batch 1, 2 and 4 with different images:
/// every image of a batch gives row by row the detections it gives alone.
fn batch_independent(model: &Path, input: &Path) {
    let o = Model::load(model).unwrap();
    let mut m = o.clone();
    merge(&mut m, &MergeOptions::default()).unwrap();
    assert_eq!(
        recognize(&m, None).unwrap().batch,
        Dim::Sym("batch".into()),
        "the merged model keeps the symbolic batch"
    );
    let imgs = common::variants(&read_npy_file(input).unwrap());
    let out_name = m.graph().output[0].name().to_string();
    let runs = |x: &Npy| -> Npy {
        let outs = postmerge::run::run_once(&m, &[x], &[]).unwrap();
        outs.into_iter().find(|(n, _)| *n == out_name).unwrap().1
    };
    let alone: Vec<Vec<Vec<f32>>> = imgs
        .iter()
        .map(|x| rows_per_image(&runs(x), 1).remove(0))
        .collect();
    assert!(
        alone.iter().all(|a| !a.is_empty()),
        "every image has detections alone"
    );
    for b in [2usize, 4] {
        let per = rows_per_image(&runs(&common::stack(&imgs[..b])), b);
        for i in 0..b {
            assert_eq!(
                per[i].len(),
                alone[i].len(),
                "{} batch {b} image {i}: rows",
                model.display()
            );
            for (r, (g, a)) in per[i].iter().zip(&alone[i]).enumerate() {
                let d = g
                    .iter()
                    .zip(a)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(
                    d <= 1e-3,
                    "{} batch {b} image {i} row {r}: {g:?} vs alone {a:?}",
                    model.display()
                );
            }
        }
    }
}

#[test]
fn yolox_dynamic_is_recognized_from_inferred_shapes_and_merges() {
    let p = dynamic("yolox_nano_640x640_dynamic.onnx");
    let m = Model::load(&p).unwrap();
    let h = recognize(&m, None).unwrap();
    assert_eq!(h.family, Family::YoloxRaw);
    assert_eq!((h.num_boxes, h.num_classes), (Some(8400), Some(3)));
    assert_eq!(h.batch, Dim::Sym("batch".into()));
    assert_eq!(h.declared_vs_inferred.len(), 1);
    let d = &h.declared_vs_inferred[0];
    assert_eq!(
        d.declared.as_ref().unwrap(),
        &vec![
            Dim::Sym("batch".into()),
            Dim::Sym("Transposeoutput_dim_1".into()),
            Dim::Sym("Transposeoutput_dim_2".into())
        ]
    );
    assert_eq!(
        d.inferred,
        vec![Dim::Sym("batch".into()), Dim::Known(8400), Dim::Known(8)]
    );
    let (code, out, err) = run(&["inspect", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("head:       YOLOX raw head"), "{out}");
    assert!(out.contains("shapes:   output `output` declares [batch,Transposeoutput_dim_1,Transposeoutput_dim_2], shape inference gives [batch,8400,8]"), "{out}");
    // merge + check (tract) on the fixture's reference input
    let o = tmp("yolox_dyn_post.onnx");
    let (code, _, err) = run(&["merge", p.to_str().unwrap(), "-o", o.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let input = fixtures().join("ref/yolox_nano_640x640/input.npy");
    let (code, out, err) = run(&[
        "check",
        p.to_str().unwrap(),
        o.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("check passed"), "{out}");
    batch_independent(&p, &input);
    // the static export it was derived from has no disagreement to report
    let s = Model::load(&fixtures().join("yolox_nano_640x640.onnx")).unwrap();
    assert!(recognize(&s, None).unwrap().declared_vs_inferred.is_empty());
}

#[test]
fn goldlike_dynbatch_is_repaired_to_run_at_any_batch() {
    let p = dynamic("goldlike_640x640_dynbatch.onnx");
    let o = Model::load(&p).unwrap();
    let h = recognize(&o, None).unwrap();
    assert_eq!(h.family, Family::GoldYolo);
    assert_eq!(h.num_boxes, Some(8400));
    // as exported it does not run at batch 2 (shape inference sees what onnxruntime hits)
    let why = postmerge::passes::resize::batch_defects(&o, &h.input, &h.input_shape, &[1, 2])
        .unwrap()
        .expect("the file bakes batch 1");
    assert!(why.contains("transformer_blocks.0/attn/Reshape"), "{why}");
    let mut m = o.clone();
    let rep = merge(&mut m, &MergeOptions::default()).unwrap();
    let note = rep.notes.join("\n");
    assert!(
        note.contains(
            "/neck/high_IFM/transformer_blocks.0/attn/Reshape_1 [1, 4, 8, 100] -> [0, 4, 8, 100]"
        ),
        "{note}"
    );
    assert!(note.contains("8 constant(s)"), "{note}");
    batch_independent(&p, &fixtures().join("ref/goldlike_640x640/input.npy"));
    // resize with a dynamic batch repairs it too; with --batch 4 the constants carry 4
    for (batch, first) in [("dynamic", "0"), ("4", "4")] {
        let out = tmp(&format!("gl_b{batch}.onnx"));
        let (code, _, err) = run(&[
            "resize",
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--size",
            "640x640",
            "--batch",
            batch,
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        let r = Model::load(&out).unwrap();
        let hr = recognize(&r, None).unwrap();
        assert!(
            postmerge::passes::resize::batch_defects(&r, &hr.input, &hr.input_shape, &[1, 2, 4])
                .unwrap()
                .is_none()
                || batch == "4"
        );
        let g = r.graph();
        let c = g
            .node
            .iter()
            .find(|n| {
                n.output
                    .first()
                    .map(|o| o == "/neck/high_IFM/transformer_blocks.0/attn/Constant_1_output_0")
                    .unwrap_or(false)
            })
            .and_then(postmerge::graph::constant_node_value)
            .or_else(|| {
                g.initializer
                    .iter()
                    .find(|t| {
                        t.name() == "/neck/high_IFM/transformer_blocks.0/attn/Constant_1_output_0"
                    })
                    .cloned()
            })
            .expect("attention shape constant");
        let v = r.tensor_values(&c).unwrap().as_i64();
        assert_eq!(v[0].to_string(), first, "{batch}: {v:?}");
        assert_eq!(&v[1..], &[4, 8, 100]);
    }
}

#[test]
fn yolox_decode_dynamic_that_bakes_batch_one_is_refused_and_merges_at_batch_one() {
    let p = dynamic("yolox_nano_640x640_decode_dynamic.onnx");
    let h = recognize(&Model::load(&p).unwrap(), None).unwrap();
    assert_eq!(h.family, Family::YoloxDecoded);
    assert_eq!(h.num_boxes, Some(8400));
    let o = tmp("dec_dyn.onnx");
    let (code, _, err) = run(&["merge", p.to_str().unwrap(), "-o", o.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot keep the symbolic batch") && err.contains("/head/ScatterND"),
        "{err}"
    );
    assert!(!o.exists(), "no partial output");
    let (code, _, err) = run(&[
        "merge",
        p.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--batch",
        "1",
        "--check",
        "--image",
        fixtures().join("shapes/sample_1.png").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("check passed"), "{err}");
}

/// A copy of the 128x160 YOLOX fixture with 4 bytes one third into the file turned into a NaN
/// (the case: they land in a Conv weight); returns (path, tensor name).
fn nan_copy() -> (PathBuf, String) {
    let src = fixtures().join("yolox_nano_128x160.onnx");
    let mut b = std::fs::read(&src).unwrap();
    let m = Model::load(&src).unwrap();
    let off = b.len() / 3;
    for t in &m.graph().initializer {
        let raw = t.raw_data.as_ref().map(|r| r.to_vec()).unwrap_or_default();
        if raw.len() < 64 {
            continue;
        }
        let Some(i) = b.windows(64).position(|w| w == &raw[..64]) else {
            continue;
        };
        if i <= off && off < i + raw.len() {
            let k = i + (off - i) / 4 * 4;
            b[k..k + 4].copy_from_slice(&f32::NAN.to_le_bytes());
            let p = tmp("yolox_nan_128x160.onnx");
            std::fs::write(&p, &b).unwrap();
            return (p, t.name().to_string());
        }
    }
    panic!("no initializer one third into the file");
}

#[test]
fn nan_weight_is_refused_everywhere_and_fails_check_with_the_override() {
    let (p, tensor) = nan_copy();
    let ps = p.to_str().unwrap();
    let scan = postmerge::nonfinite::scan(&Model::load(&p).unwrap());
    assert_eq!(scan.len(), 1, "{scan:?}");
    assert_eq!(
        (
            scan[0].tensor.as_str(),
            scan[0].nan,
            scan[0].pos_inf + scan[0].neg_inf
        ),
        (tensor.as_str(), 1, 0)
    );
    assert!(scan[0].consumer.contains("(Conv)"), "{:?}", scan[0]);
    // the clean fixture has none
    assert!(postmerge::nonfinite::scan(
        &Model::load(&fixtures().join("yolox_nano_128x160.onnx")).unwrap()
    )
    .is_empty());
    let (code, out, _) = run(&["inspect", ps]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("non-finite: `{tensor}`: 1 NaN of")),
        "{out}"
    );
    let o = tmp("nan_post.onnx");
    let os = o.to_str().unwrap();
    let want = format!("`{tensor}`: 1 NaN of");
    for args in [
        vec!["merge", ps, "-o", os],
        vec!["resize", ps, "-o", os, "--size", "320x320"],
        vec!["quant-prep", ps, "-o", os],
    ] {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&want) && err.contains("--allow-nonfinite"),
            "{args:?}: {err}"
        );
        assert!(!o.exists(), "{args:?} wrote an output");
    }
    let (code, _, err) = run(&["merge", ps, "-o", os, "--allow-nonfinite"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["check", ps, os]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&want), "{err}");
    let (code, out, err) = run(&["check", "--allow-nonfinite", ps, os]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("[FAIL] weights: ORIGINAL") && out.contains("check FAILED"),
        "{out}"
    );
    // merge --check with the override fails the same way (exit 1, nothing written)
    let o2 = tmp("nan_post2.onnx");
    let (code, _, err) = run(&[
        "merge",
        ps,
        "-o",
        o2.to_str().unwrap(),
        "--allow-nonfinite",
        "--check",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!o2.exists());
}

#[test]
fn check_fails_on_non_finite_compared_tensors() {
    // library level: a merged model whose head tensor holds NaN (weights clean) fails the steps
    // that compare it, even though max |d| skips NaN
    let o = Model::load(&fixtures().join("yolox_nano_128x160.onnx")).unwrap();
    let mut m = o.clone();
    merge(&mut m, &MergeOptions::default()).unwrap();
    let mut steps = vec![
        postmerge::check::Step {
            name: "head".into(),
            ok: Some(true),
            compared: 2,
            detail: String::new(),
        },
        postmerge::check::Step {
            name: "post-process".into(),
            ok: Some(true),
            compared: 2,
            detail: String::new(),
        },
        postmerge::check::Step {
            name: "detections".into(),
            ok: Some(true),
            compared: 2,
            detail: String::new(),
        },
    ];
    let clean = Npy::new(vec![1, 2], NpyData::F32(vec![0.5, 1.0])).unwrap();
    let nan = Npy::new(vec![1, 2], NpyData::F32(vec![f32::NAN, f32::INFINITY])).unwrap();
    let outs = vec![
        ("output".to_string(), nan.clone()),
        ("batchno_classid_score_x1y1x2y2".to_string(), clean.clone()),
    ];
    postmerge::nonfinite::taint_steps(&mut steps, &o, &m, Some(&clean), &outs, "output");
    let oks: Vec<Option<bool>> = steps.iter().map(|s| s.ok).collect();
    assert_eq!(oks, vec![Some(false), Some(false), Some(true)], "{steps:?}");
    assert!(
        steps[0].detail.contains("2 in the merged head"),
        "{steps:?}"
    );
}

#[test]
fn real_gold_yolo_dynamic_batch_export_merges_and_runs_at_any_batch() {
    let Some(shared) = shared_or_skip("the real Gold-YOLO --dynamic-batch export") else {
        return;
    };
    let stem = "gold_yolo_n_80c_640x640_op13_dynbatch";
    let p = shared.join(format!("models/{stem}.onnx"));
    let input = shared.join(format!("ref/{stem}/input.npy"));
    let m = Model::load(&p).unwrap();
    let h = recognize(&m, None).unwrap();
    assert_eq!(
        (h.family, h.num_boxes, h.num_classes),
        (Family::GoldYolo, Some(8400), Some(80))
    );
    assert_eq!(
        h.declared_vs_inferred[0].inferred,
        vec![Dim::Sym("batch".into()), Dim::Known(8400), Dim::Known(85)]
    );
    batch_independent(&p, &input);
    let o = tmp("gold_dyn_post.onnx");
    let (code, _, err) = run(&[
        "merge",
        p.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--check",
        "--image",
        shared.join("images/image1.jpg").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("check passed"), "{err}");
}
