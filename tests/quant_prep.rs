//! quant-prep keeps the float outputs (after undoing the box normalization) within 1e-5, in tract,
//! for every shared model (../shared, CI has it) and fixture; the onnxruntime side and the INT8
//! agreement are tests/oracle/quantprep_check.py and int8_check.py (CI).

mod common;

use postmerge::model::Model;
use postmerge::npy::read_npy_file;
use postmerge::passes::merge::{merge, MergeOptions};
use postmerge::passes::quant_prep::{quant_prep, QuantPrepOptions};
use postmerge::postprocess::Layout;
use postmerge::run::run_once;

#[test]
fn prepared_float_outputs_equal_the_unprepared_ones() {
    for (p, input) in common::models_with_inputs() {
        let x = read_npy_file(&input).unwrap();
        let base = Model::load(&p).unwrap();
        let h = postmerge::head::recognize(&base, None).unwrap();
        let (hh, ww) = (h.height.unwrap() as f32, h.width.unwrap() as f32);
        let mut plain = base.clone();
        merge(
            &mut plain,
            &MergeOptions {
                layout: Some(Layout::Decoded),
                ..Default::default()
            },
        )
        .unwrap();
        let mut prep = base.clone();
        merge(
            &mut prep,
            &MergeOptions {
                layout: Some(Layout::Decoded),
                normalize_boxes: true,
                ..Default::default()
            },
        )
        .unwrap();
        let rep = quant_prep(&mut prep, &QuantPrepOptions::default()).unwrap();
        assert_eq!(postmerge::passes::default_opset(&prep.proto), 13);
        assert!(!rep.nodes_to_exclude.is_empty());
        let a = run_once(&plain, &[&x], &[]).unwrap();
        let b = run_once(&prep, &[&x], &[]).unwrap();
        let (ab, bb) = (a[0].1.to_f32(), b[0].1.to_f32());
        let mut worst = 0f32;
        for (i, (u, v)) in ab.iter().zip(&bb).enumerate() {
            let scale = if i % 2 == 0 { ww } else { hh };
            let want = u / scale;
            if !want.is_finite() || want.abs() > 1e4 / scale {
                // junk anchors whose exp() explodes: f32 relative precision only
                assert!(
                    (v - want).abs() <= want.abs() * 1e-5
                        || (v.is_infinite() && want.is_infinite()),
                    "{} box {i}: {v} vs {want}",
                    p.display()
                );
                continue;
            }
            worst = worst.max((v - want).abs());
        }
        assert!(
            worst <= 1e-5,
            "{}: normalized boxes differ by {worst}",
            p.display()
        );
        assert_eq!(a[1].1.to_f32(), b[1].1.to_f32(), "{}: scores", p.display());
        // every tensor has a static shape recorded
        let vi: std::collections::HashSet<&str> =
            prep.graph().value_info.iter().map(|v| v.name()).collect();
        let outs: std::collections::HashSet<&str> =
            prep.graph().output.iter().map(|v| v.name()).collect();
        for n in &prep.graph().node {
            for o in &n.output {
                assert!(
                    vi.contains(o.as_str()) || outs.contains(o.as_str()),
                    "{}: no value_info for `{o}`",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn sidecar_and_metadata_list_the_float_post_process() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let out = dir.path().join("prep.onnx");
    let (code, _, err) = common::run(&[
        "merge",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quant-prep",
    ]);
    assert_eq!(code, 0, "{err}");
    let list: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("prep.nodes_to_exclude.json")).unwrap(),
    )
    .unwrap();
    let m = Model::load(&out).unwrap();
    let meta = m
        .proto
        .metadata_props
        .iter()
        .find(|e| e.key() == "postmerge.nodes_to_exclude")
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<String>>(meta.value()).unwrap(),
        list
    );
    let names: std::collections::HashSet<&str> = m.graph().node.iter().map(|n| n.name()).collect();
    assert!(list.iter().all(|n| names.contains(n.as_str())));
    // NMS and every appended node are excluded; no Conv is
    assert!(list.contains(&"main01_nonmaxsuppression11".to_string()));
    for n in &m.graph().node {
        if n.op_type() == "Conv" {
            assert!(!list.contains(&n.name().to_string()));
        }
        if n.name().starts_with("postmerge/") || n.name().starts_with("main01_") {
            assert!(
                list.contains(&n.name().to_string()),
                "{} not excluded",
                n.name()
            );
        }
    }
    // the head's box/score concat is excluded too (they must not share a quantization scale)
    assert!(
        list.iter().any(|n| n.starts_with("/head/Concat")),
        "{list:?}"
    );
    let (_, out_text, _) = common::run(&["inspect", out.to_str().unwrap()]);
    assert!(out_text.contains("postmerge.quant_prep"), "{out_text}");
    // the check command still proves the prepared merge (boxes normalized: the merge record says so)
}

#[test]
fn diff_snapshot_of_original_vs_prepared() {
    let a = Model::load(&common::fixtures().join("yolox_nano_128x160.onnx")).unwrap();
    let mut b = a.clone();
    merge(
        &mut b,
        &MergeOptions {
            layout: Some(Layout::Decoded),
            normalize_boxes: true,
            ..Default::default()
        },
    )
    .unwrap();
    quant_prep(&mut b, &QuantPrepOptions::default()).unwrap();
    let text = postmerge::diff::render(&postmerge::diff::diff(&a, &b).unwrap());
    common::settings("quant_prep")
        .bind(|| insta::assert_snapshot!("yolox_nano_128x160_prepared", text));
}

#[test]
fn check_proves_prepared_merges_too() {
    for stem in ["yolox_nano_640x640", "goldlike_640x640"] {
        let dir = tempfile::tempdir().unwrap();
        let src = common::fixtures().join(format!("{stem}.onnx"));
        let out = dir.path().join("prep.onnx");
        let input = common::fixtures().join(format!("ref/{stem}/input.npy"));
        let (code, _, err) = common::run(&[
            "merge",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--quant-prep",
        ]);
        assert_eq!(code, 0, "{err}");
        let (code, stdout, err) = common::run(&[
            "check",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stdout}{err}");
        assert!(
            stdout.contains("[ok  ] post-process")
                && stdout.contains("[ok  ] detections")
                && stdout.contains("normalized"),
            "{stdout}"
        );
    }
}
