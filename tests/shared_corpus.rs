//! The shared corpus selection (tests/shared_corpus.txt, read by tests/common and the Python
//! oracles): every file of the corpus is in exactly one group, and what postmerge does today with
//! the files the "every shared model" suites leave out is asserted here — an export of a family
//! postmerge does not merge yet (issue 15) must be refused with a message that says what was
//! found, never dropped silently and never half-merged. When one of them becomes supported, its
//! case here fails and its line in tests/shared_corpus.txt moves to `supported`.
//!
//! Needs the shared corpus (POSTMERGE_SHARED, see tests/common).

mod common;

use std::collections::BTreeSet;

use postmerge::model::Model;
use postmerge::npy::{read_npy_file, NpyData};

#[test]
fn the_selection_lists_every_shared_model_once() {
    let list = common::corpus_list();
    let stems: BTreeSet<&str> = list.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(stems.len(), list.len(), "a stem is listed twice");
    for g in common::GROUPS {
        assert!(
            !common::stems(g).is_empty(),
            "group {g} of tests/shared_corpus.txt is empty"
        );
    }
    for (g, s, why) in &list {
        if *g == "set-aside" || *g == "unsupported" {
            assert!(!why.is_empty(), "{s}: a {g} model needs its reason");
        }
    }
    let Some(dir) = common::shared_or_skip(
        "the check that tests/shared_corpus.txt lists exactly the files of models/",
    ) else {
        return;
    };
    let files: BTreeSet<String> = common::onnx_files(&dir.join("models"))
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = stems.iter().map(|s| s.to_string()).collect();
    assert_eq!(files, listed, "models/ vs tests/shared_corpus.txt");
}

/// (stem, words `merge` and `inspect` must say today).
const REFUSALS: &[(&str, &[&str])] = &[
    (
        "ultra_yolo11n_640x640_op17",
        &[
            "`output0` [1,84,8400]",
            "YOLOv8-style [B, 4+C, N] head",
            "only YOLOX and Gold-YOLO/YOLOv6",
        ],
    ),
    (
        "ultra_yolov8n_128x160_op17",
        &[
            "`output0` [1,84,420]",
            "YOLOv8-style [B, 4+C, N] head",
            "only YOLOX and Gold-YOLO/YOLOv6",
        ],
    ),
    (
        "ultra_yolov8n_640x640_op17",
        &[
            "`output0` [1,84,8400]",
            "YOLOv8-style [B, 4+C, N] head",
            "only YOLOX and Gold-YOLO/YOLOv6",
        ],
    ),
    (
        "ultra_yolo26n_640x640_op17_e2e",
        &[
            "no detection head found",
            "= 8400 or 8500 for a 640x640 input",
            "found `output0` [1,300,6]",
        ],
    ),
    (
        "yolov5n_128x160_op17",
        &[
            "no detection head found",
            "= 420 or 424 for a 128x160 input",
            "found `output0` [1,1260,85]",
        ],
    ),
    (
        "yolov5n_640x640_op17",
        &[
            "no detection head found",
            "= 8400 or 8500 for a 640x640 input",
            "found `output0` [1,25200,85]",
        ],
    ),
    (
        "yolov7tiny_640x640_op12",
        &[
            "no detection head found",
            "found `output` [1,3,80,80,85], `286` [1,3,40,40,85], `298` [1,3,20,20,85]",
        ],
    ),
    (
        "yolov7tiny_640x640_op12_grid",
        &["no detection head found", "found `output` [1,25200,85]"],
    ),
];

#[test]
fn exports_postmerge_does_not_merge_yet_are_refused_clearly() {
    let Some(_) = common::shared_or_skip(
        "refusal of the unsupported / set-aside shared exports (Ultralytics, YOLOv5, YOLOv7, NMS-free)",
    ) else {
        return;
    };
    let mut want: Vec<&str> = common::stems("unsupported");
    want.extend(
        common::stems("set-aside")
            .into_iter()
            .filter(|s| !YOLOV6.contains(s) && *s != DYNBATCH),
    );
    want.sort();
    let mut have: Vec<&str> = REFUSALS.iter().map(|(s, _)| *s).collect();
    have.sort();
    assert_eq!(
        have, want,
        "every unsupported / set-aside model has its case here"
    );
    let dir = tempfile::tempdir().unwrap();
    for (stem, words) in REFUSALS {
        let src = common::shared().join(format!("models/{stem}.onnx"));
        let src_s = src.to_str().unwrap();
        let before = common::file_hash(&src);
        // merge: exit 2, one error naming the file and what was found, nothing written
        let out = dir.path().join(format!("{stem}_post.onnx"));
        let (code, stdout, err) = common::run(&["merge", src_s, "-o", out.to_str().unwrap()]);
        assert_eq!(code, 2, "{stem}: merge exit code\n{stdout}{err}");
        assert!(
            err.starts_with(&format!("error: cannot process `{src_s}`"))
                && !err.contains("panicked"),
            "{stem}: {err}"
        );
        for w in *words {
            assert!(err.contains(w), "{stem}: merge error lacks `{w}`:\n{err}");
        }
        assert!(!out.exists(), "{stem}: merge wrote an output");
        // quant-prep and resize refuse the same way
        for cmd in [
            vec!["quant-prep", src_s, "-o", out.to_str().unwrap()],
            vec![
                "resize",
                src_s,
                "-o",
                out.to_str().unwrap(),
                "--size",
                "320x320",
            ],
        ] {
            let (code, _, err) = common::run(&cmd);
            assert_eq!(code, 2, "{stem}: {cmd:?}: {err}");
            assert!(err.contains(words[0]), "{stem}: {cmd:?}: {err}");
            assert!(!out.exists(), "{stem}: {} wrote an output", cmd[0]);
        }
        // inspect still describes the file (exit 0) and says why no head was recognized
        let (code, stdout, err) = common::run(&["inspect", src_s, "--json"]);
        assert_eq!(code, 0, "{stem}: inspect: {err}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(v["head"].is_null(), "{stem}: head {}", v["head"]);
        let he = v["head_error"].as_str().unwrap_or_default();
        for w in *words {
            assert!(he.contains(w), "{stem}: head_error lacks `{w}`: {he}");
        }
        // the file itself loads and round-trips byte for byte (only the head is unsupported)
        let m = Model::load(&src).unwrap_or_else(|e| panic!("{stem}: {e:#}"));
        assert!(
            m.to_bytes().unwrap() == std::fs::read(&src).unwrap(),
            "{stem}: round trip changed bytes"
        );
        assert_eq!(before, common::file_hash(&src), "{stem}: input modified");
    }
}

/// Gold-YOLO `--dynamic-batch` (set-aside): merged, checked and run at batch 1/2/4 by tests/lying.rs.
const DYNBATCH: &str = "gold_yolo_n_80c_640x640_op13_dynbatch";

/// The YOLOv6 v3 exports of the set-aside group.
const YOLOV6: &[&str] = &["yolov6n_128x160_op13", "yolov6n_640x640_op13"];

/// YOLOv6 v3's official export writes Gold-YOLO's head (constant-1 column 4): it is recognized
/// from the graph as `gold-yolo` (not from its name), merge + check pass on its reference input,
/// and resize refuses with the reason (ConvTranspose has no shape inference yet).
#[test]
fn yolov6_exports_merge_and_check_but_do_not_resize_yet() {
    let Some(_) = common::shared_or_skip("what works on the shared YOLOv6 v3 exports (set-aside)")
    else {
        return;
    };
    let mut aside: Vec<&str> = common::stems("set-aside");
    aside.retain(|s| !REFUSALS.iter().any(|(r, _)| r == s) && *s != DYNBATCH);
    assert_eq!(aside, YOLOV6, "the set-aside models without a refusal case");
    let dir = tempfile::tempdir().unwrap();
    for (stem, n) in [
        ("yolov6n_128x160_op13", 420),
        ("yolov6n_640x640_op13", 8400),
    ] {
        let p = dir.path().join("model.onnx");
        std::fs::copy(common::shared().join(format!("models/{stem}.onnx")), &p).unwrap();
        let ps = p.to_str().unwrap();
        let (code, out, err) = common::run(&["inspect", ps, "--json"]);
        assert_eq!(code, 0, "{stem}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["head"]["family"], "gold-yolo", "{stem}");
        assert_eq!(v["head"]["num_boxes"], n, "{stem}");
        assert_eq!(v["head"]["num_classes"], 80, "{stem}");
        // merge, then check on the reference input: every step runs and agrees
        let post = dir.path().join("post.onnx");
        let (code, out, err) = common::run(&["merge", ps, "-o", post.to_str().unwrap()]);
        assert_eq!(code, 0, "{stem}: {out}{err}");
        assert!(out.contains("layout pinto-goldyolo"), "{stem}: {out}");
        let input = common::shared().join(format!("ref/{stem}/input.npy"));
        let (code, out, err) = common::run(&[
            "check",
            ps,
            post.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(code, 0, "{stem}: {out}{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(r["detections"].as_u64().unwrap() > 10, "{stem}: {r}");
        assert!(
            r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["ok"] == true),
            "{stem}: a step skipped or failed: {r}"
        );
        // resize: refused with the reason, nothing written
        let out_r = dir.path().join("r.onnx");
        let (code, _, err) = common::run(&[
            "resize",
            ps,
            "-o",
            out_r.to_str().unwrap(),
            "--size",
            "256x320",
        ]);
        assert_eq!(code, 2, "{stem}: {err}");
        assert!(
            err.contains("ConvTranspose shape inference is not supported"),
            "{stem}: {err}"
        );
        assert!(!out_r.exists());
    }
}

/// numpy's int64 output of onnxruntime (the `_e2e_ort` export's `num_dets`), read by src/io/npy.rs.
#[test]
fn reads_real_int64_npy_output() {
    let Some(dir) = common::shared_or_skip("reading the shared int64 raw_num_dets.npy") else {
        return;
    };
    let npy = read_npy_file(dir.join("ref/gold_yolo_n_80c_640x640_op13_e2e_ort/raw_num_dets.npy"))
        .unwrap();
    assert_eq!(npy.shape, vec![1, 1]);
    assert_eq!(npy.data, NpyData::I64(vec![634]));
}
