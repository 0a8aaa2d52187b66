//! The binary end to end: `inspect` snapshots for every fixture and (with POSTMERGE_SHARED, see
//! tests/common) every shared model postmerge handles, error rendering and exit codes on malformed input.

mod common;

use common::{file_hash, run, settings};

#[test]
fn inspect_every_model_snapshot() {
    for p in common::all_models() {
        let (code, out, err) = run(&["inspect", p.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {err}", p.display());
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        settings("inspect").bind(|| insta::assert_snapshot!(name, out));
    }
}

#[test]
fn inspect_recognizes_every_shared_family_from_the_graph() {
    let Some(_) = common::shared_or_skip(
        "inspect --json family/classes/size of every shared YOLOX and Gold-YOLO export",
    ) else {
        return;
    };
    let expect = [
        ("gold_yolo_n_80c_128x160_op13", "gold-yolo"),
        ("gold_yolo_n_80c_480x640_op13", "gold-yolo"),
        ("gold_yolo_n_80c_640x640_op13", "gold-yolo"),
        ("gold_yolo_n_80c_640x640_op13_e2e_ort", "merged"),
        ("yolox_nano_3c_128x160_op11_shapes", "yolox-raw"),
        ("yolox_nano_3c_640x640_op11_shapes", "yolox-raw"),
        ("yolox_nano_80c_128x160_op11", "yolox-raw"),
        ("yolox_nano_80c_416x416_op11", "yolox-raw"),
        ("yolox_nano_80c_480x640_op11", "yolox-raw"),
        ("yolox_nano_80c_640x640_op11", "yolox-raw"),
        ("yolox_nano_80c_640x640_op11_decode", "yolox-decoded"),
        (
            "yolox_nano_80c_640x640_op11_decode_githead",
            "yolox-decoded",
        ),
        ("yolox_nano_80c_640x640_op11_sim", "yolox-raw"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (stem, family) in expect {
        // copy under a neutral name: recognition must not use the file name
        let src = common::shared().join(format!("models/{stem}.onnx"));
        let p = dir.path().join("model.onnx");
        std::fs::copy(&src, &p).unwrap();
        let (code, out, err) = run(&["inspect", p.to_str().unwrap(), "--json"]);
        assert_eq!(code, 0, "{stem}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["head"]["family"], family, "{stem}");
        if family != "merged" {
            let parts: Vec<&str> = stem.split('_').collect();
            let classes: u64 = parts
                .iter()
                .find_map(|p| p.strip_suffix('c').and_then(|c| c.parse().ok()))
                .unwrap();
            let (h, w) = parts
                .iter()
                .find_map(|p| p.split_once('x').filter(|(a, _)| a.parse::<i64>().is_ok()))
                .unwrap();
            let (h, w): (i64, i64) = (h.parse().unwrap(), w.parse().unwrap());
            assert_eq!(v["head"]["num_classes"], classes, "{stem}");
            assert_eq!(v["head"]["height"], h);
            assert_eq!(v["head"]["width"], w);
            assert_eq!(
                v["head"]["num_boxes"],
                21 * h * w / 1024,
                "{stem}: N for strides 8/16/32"
            );
            assert_eq!(v["head"]["strides"], serde_json::json!([8, 16, 32]));
        } else {
            assert_eq!(v["head"]["nms_node"], "/end2end/NonMaxSuppression");
        }
    }
}

#[test]
fn inspect_lists_the_resolution_constants_the_manifest_lists() {
    let Some(_) = common::shared_or_skip("inspect --json resolution constants of the shared Gold-YOLO-n and YOLOX-nano exports vs MANIFEST.md") else {
        return;
    };
    // MANIFEST.md: Gold-YOLO plain export — 10 Resize size constants, 3 high_FAM AveragePools, 8
    // attention Reshapes differ between sizes; raw YOLOX: none.
    let (_, out, _) = run(&[
        "inspect",
        common::shared()
            .join("models/gold_yolo_n_80c_640x640_op13.onnx")
            .to_str()
            .unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rc = v["resolution_constants"].as_array().unwrap();
    let count = |op: &str, pat: &str| {
        rc.iter()
            .filter(|c| c["op"] == op && c["node"].as_str().unwrap().contains(pat))
            .count()
    };
    // The graph has 11 Resize nodes with a `sizes` input; 9 concatenate a baked Constant [h, w]
    // (MANIFEST.md says "10 Concat constants"; listing the graph shows 9 — the two
    // `/neck/Inject_n4/Resize*` take their size from a runtime Cast), checked with python onnx.
    let mut resize: Vec<&str> = rc
        .iter()
        .filter(|c| c["op"] == "Resize")
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    resize.sort();
    assert_eq!(
        resize,
        [
            "/neck/Inject_n5/Resize",
            "/neck/Inject_n5/Resize_1",
            "/neck/Inject_p3/Resize",
            "/neck/Inject_p3/Resize_1",
            "/neck/Inject_p4/Resize",
            "/neck/Inject_p4/Resize_1",
            "/neck/LAF_p3/Resize",
            "/neck/LAF_p4/Resize",
            "/neck/low_FAM/Resize"
        ]
    );
    assert_eq!(count("AveragePool", "high_FAM"), 3);
    assert_eq!(count("Reshape", "attn"), 8);
    let (_, out, _) = run(&[
        "inspect",
        common::shared()
            .join("models/yolox_nano_80c_640x640_op11.onnx")
            .to_str()
            .unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["resolution_constants"].as_array().unwrap().len(), 0);
    // decoded YOLOX: grids (6 Expand shapes + 6 aranges), strides [1,N,1], ScatterND plumbing
    let (_, out, _) = run(&[
        "inspect",
        common::shared()
            .join("models/yolox_nano_80c_640x640_op11_decode.onnx")
            .to_str()
            .unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rc = v["resolution_constants"].as_array().unwrap();
    assert!(
        rc.iter().filter(|c| c["op"] == "Expand").count() >= 12 + 2,
        "{rc:#?}"
    );
    assert_eq!(
        rc.iter()
            .filter(|c| c["op"] == "Mul" && c["value"] == "f32 [1, 8400, 1]")
            .count(),
        2
    );
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn malformed_inputs_fail_cleanly_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(common::fixtures().join("yolox_nano_128x160.onnx")).unwrap();
    // a valid protobuf that is not a model: a TensorProto
    let tensor = {
        use prost::Message;
        postmerge::tensor::tensor_i64("t", &[2], &[1, 2]).encode_to_vec()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.onnx", vec![], "is empty (0 bytes)"),
        (
            "truncated.onnx",
            good[..good.len() / 2].to_vec(),
            "is not an ONNX model",
        ),
        (
            "random.onnx",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "not",
        ),
        ("tensor.onnx", tensor, "not an ONNX model"),
    ];
    for (name, bytes, msg) in cases {
        let p = write(dir.path(), name, &bytes);
        let h = file_hash(std::path::Path::new(&p));
        for args in [
            vec!["inspect", p.as_str()],
            vec![
                "convert",
                p.as_str(),
                "-o",
                dir.path().join("out.onnx").to_str().unwrap(),
            ],
        ] {
            let (code, out, err) = run(&args);
            assert_eq!(code, 2, "{name} {args:?}: {out} {err}");
            assert!(
                err.starts_with("error: ") && err.contains(msg) && err.contains(name),
                "{name}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
            assert!(
                !dir.path().join("out.onnx").exists(),
                "no output for {name}"
            );
        }
        assert_eq!(h, file_hash(std::path::Path::new(&p)), "input untouched");
    }
    // a missing folder, the input itself, missing external data
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let (code, _, err) = run(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        "/nonexistent-dir/x.onnx",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("folder `/nonexistent-dir` does not exist"),
        "{err}"
    );
    let copy = dir.path().join("m.onnx");
    std::fs::copy(&src, &copy).unwrap();
    let h = file_hash(&copy);
    let (code, _, err) = run(&[
        "convert",
        copy.to_str().unwrap(),
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("is the input file; pass --in-place"), "{err}");
    assert_eq!(h, file_hash(&copy));
    let (code, _, err) = run(&[
        "convert",
        copy.to_str().unwrap(),
        "-o",
        dir.path().join("e.onnx").to_str().unwrap(),
        "--external-data",
        "e.data",
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_file(dir.path().join("e.data")).unwrap();
    let (code, _, err) = run(&["inspect", dir.path().join("e.onnx").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("stored in external data file")
            && err.contains("e.data")
            && err.contains("caused by:"),
        "{err}"
    );
}

#[test]
fn unwritable_output_leaves_nothing() {
    // root ignores directory permissions, so use a path whose parent is a file
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, b"x").unwrap();
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let (code, _, err) = run(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        file.join("x.onnx").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: cannot save"), "{err}");
}

#[test]
fn help_has_examples_for_each_subcommand() {
    for sub in [
        "inspect",
        "diff",
        "convert",
        "merge",
        "set",
        "resize",
        "check",
        "detect",
        "quant-prep",
    ] {
        let (code, out, _) = run(&[sub, "--help"]);
        assert_eq!(code, 0);
        assert!(
            out.contains("Examples:") && out.contains(&format!("postmerge {sub}")),
            "{sub}: {out}"
        );
    }
    let (code, _, err) = run(&["no-such-command"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn multi_output_runs_are_all_or_nothing() {
    // one invalid size among several: exit 2, no new file, and a file already at one of the
    // destinations keeps its old bytes (fixture only, no ../shared)
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let pattern = dir.path().join("out_{h}x{w}.onnx");
    let old = dir.path().join("out_96x96.onnx");
    std::fs::write(&old, b"an older file").unwrap();
    for cmd in ["resize", "merge"] {
        let (code, out, err) = run(&[
            cmd,
            src.to_str().unwrap(),
            "--size",
            "96x96",
            "--size",
            "256x320",
            "--size",
            "100x100",
            "-o",
            pattern.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{cmd}: {out}{err}");
        assert!(
            err.contains("1 of 3 outputs failed") && err.contains("no output written"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("100x100") && err.contains("multiples"),
            "{err}"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["out_96x96.onnx"],
            "{cmd}: only the old file may remain"
        );
        assert_eq!(std::fs::read(&old).unwrap(), b"an older file");
    }
    // all valid: every file written
    let (code, _, err) = run(&[
        "resize",
        src.to_str().unwrap(),
        "--size",
        "96x96",
        "--size",
        "256x320",
        "-o",
        pattern.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for f in ["out_96x96.onnx", "out_256x320.onnx"] {
        postmerge::model::Model::load(&dir.path().join(f)).unwrap();
    }
}
