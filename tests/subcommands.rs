//! Every subcommand through the binary, on the project's own fixtures only (no shared corpus: this
//! is what a bare clone proves). Each case checks the OUTPUT against something independent of the
//! command that wrote it: the scene generator's ground truth (tests/fixtures/shapes/gt.json), a
//! native export of the same weights at the target size, the written file read back by the
//! library, or a second command run on the result.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, run};
use postmerge::model::Model;

fn shapes() -> PathBuf {
    fixtures().join("shapes_128x160.onnx")
}

fn scene(n: usize) -> PathBuf {
    fixtures().join(format!("shapes/sample_{n}.png"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn iou(a: &[f64], b: &[f64]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let i = iw * ih;
    i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)
}

/// Ground truth of a scene: (class, [x1, y1, x2, y2]).
fn ground_truth(n: usize) -> Vec<(u64, Vec<f64>)> {
    let gt = json(&std::fs::read_to_string(fixtures().join("shapes/gt.json")).unwrap());
    gt["samples"][format!("sample_{n}.png")]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["class_id"].as_u64().unwrap(),
                o["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

/// `detect --json` detections: (class, score, box in photo pixels).
fn detections(v: &serde_json::Value) -> Vec<(u64, f64, Vec<f64>)> {
    v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["class"].as_u64().unwrap(),
                d["score"].as_f64().unwrap(),
                d["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

/// Every ground-truth object is found once (same class, IoU >= 0.7) and nothing else is.
fn assert_finds_ground_truth(dets: &[(u64, f64, Vec<f64>)], n: usize, what: &str) {
    let gt = ground_truth(n);
    assert_eq!(
        dets.len(),
        gt.len(),
        "{what}: {dets:?} vs ground truth {gt:?}"
    );
    for (c, b) in &gt {
        let hits = dets
            .iter()
            .filter(|(dc, _, db)| dc == c && iou(db, b) >= 0.7)
            .count();
        assert_eq!(hits, 1, "{what}: class {c} {b:?} in {dets:?}");
    }
}

/// The README's first command (`merge … --check --image …`) and then its second (`detect`).
#[test]
fn readme_main_command_merges_proves_and_detects_the_shapes() {
    let d = tempfile::tempdir().unwrap();
    let post = d.path().join("shapes_post.onnx");
    let (code, out, err) = run(&[
        "merge",
        s(&shapes()),
        "-o",
        s(&post),
        "--check",
        "--image",
        s(&scene(1)),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // the merge line on stdout, the check report on stderr
    let out = format!("{out}{err}");
    assert!(
        out.contains("layout pinto") && out.contains("check passed (3 detections)"),
        "{out}"
    );
    // non-vacuous: every step ran and agreed, on the 3 objects of the scene
    for step in ["[ok  ] head", "[ok  ] post-process", "[ok  ] detections"] {
        assert!(out.contains(step), "{step} missing:\n{out}");
    }
    assert!(
        out.contains("3 selections") && out.contains("3 clear of the threshold"),
        "{out}"
    );

    // detect on the merged model: the scene's ground truth, drawn into a PNG
    let png = d.path().join("sample_1_dets.png");
    let (code, out, err) = run(&["detect", s(&post), s(&scene(1)), "-o", s(&png), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["how"], "merged (pinto)");
    assert_finds_ground_truth(&detections(&v), 1, "detect merged sample_1");
    let img = image::open(&png).expect("detect writes a PNG").to_rgb8();
    let src = image::open(scene(1)).unwrap().to_rgb8();
    assert!(
        img.width() >= 160 && img.height() >= 128,
        "{:?}",
        img.dimensions()
    );
    assert_eq!(img.width() * 128, img.height() * 160, "aspect ratio kept");
    if img.dimensions() == src.dimensions() {
        assert!(img != src, "nothing drawn");
    }

    // the raw export, post-processed in Rust by detect, finds the same objects
    let (code, out, err) = run(&[
        "detect",
        s(&shapes()),
        s(&scene(1)),
        "-o",
        s(&d.path().join("raw.png")),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_finds_ground_truth(&detections(&json(&out)), 1, "detect raw sample_1");
}

#[test]
fn check_passes_on_every_step_and_fails_on_a_different_model() {
    let d = tempfile::tempdir().unwrap();
    let post = d.path().join("post.onnx");
    let (code, _, err) = run(&["merge", s(&shapes()), "-o", s(&post), "--layout", "trt"]);
    assert_eq!(code, 0, "{err}");
    for n in [0, 1] {
        let (code, out, err) = run(&[
            "check",
            s(&shapes()),
            s(&post),
            "--image",
            s(&scene(n)),
            "--json",
        ]);
        assert_eq!(code, 0, "sample_{n}: {out}{err}");
        let v = json(&out);
        assert_eq!(v["ok"], true);
        assert_eq!(v["layout"], "trt");
        assert_eq!(
            v["detections"].as_u64().unwrap() as usize,
            ground_truth(n).len(),
            "sample_{n}: {v}"
        );
        let steps: Vec<_> = v["steps"].as_array().unwrap().iter().collect();
        assert_eq!(steps.len(), 3);
        assert!(
            steps.iter().all(|s| s["ok"] == true),
            "a step skipped or failed: {v}"
        );
    }
    // the merged YOLOX-nano fixture is another network: check must say so (head and
    // detections), exit 1
    let other = d.path().join("other.onnx");
    let (code, _, err) = run(&[
        "merge",
        s(&fixtures().join("yolox_nano_128x160.onnx")),
        "-o",
        s(&other),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(&["check", s(&shapes()), s(&other), "--image", s(&scene(1))]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] head") && out.contains("[FAIL] detections"),
        "{out}"
    );
    assert!(out.contains("check FAILED"), "{out}");
}

#[test]
fn set_retunes_and_the_result_detects_accordingly() {
    let d = tempfile::tempdir().unwrap();
    let post = d.path().join("post.onnx");
    let (code, _, err) = run(&["merge", s(&shapes()), "-o", s(&post)]);
    assert_eq!(code, 0, "{err}");
    let retuned = d.path().join("retuned.onnx");
    let (code, out, err) = run(&[
        "set",
        s(&post),
        "-o",
        s(&retuned),
        "--score",
        "0.5",
        "--iou",
        "0.3",
        "--max-per-class",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let changes = json(&out);
    let got: Vec<(String, String, String)> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["tensor"].as_str().unwrap().to_string(),
                c["old"].as_str().unwrap().to_string(),
                c["new"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "main01_max_output_boxes_per_class".into(),
                "[20]".into(),
                "[1]".into()
            ),
            (
                "main01_iou_threshold".into(),
                "[0.4]".into(),
                "[0.3]".into()
            ),
            (
                "main01_score_threshold".into(),
                "[0.25]".into(),
                "[0.5]".into()
            ),
        ]
    );
    // the input file is untouched and the output's metadata says what it now does
    let m = Model::load(&retuned).unwrap();
    let meta: Vec<_> = m
        .proto
        .metadata_props
        .iter()
        .filter(|e| e.key() == "postmerge.merge")
        .map(|e| e.value().to_string())
        .collect();
    assert_eq!(meta.len(), 1);
    assert!(
        meta[0].contains("score=0.5")
            && meta[0].contains("iou=0.3")
            && meta[0].contains("max_per_class=1"),
        "{meta:?}"
    );
    // sample_1 has two circles and a triangle: one per class is left
    let (code, out, err) = run(&[
        "detect",
        s(&retuned),
        s(&scene(1)),
        "-o",
        s(&d.path().join("r.png")),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let dets = detections(&json(&out));
    let mut classes: Vec<u64> = dets.iter().map(|d| d.0).collect();
    classes.sort();
    assert_eq!(classes, [1, 2], "{dets:?}");
    assert!(dets.iter().all(|d| d.1 > 0.5), "{dets:?}");
    // and the original merge still gives all three
    let (_, out, _) = run(&[
        "detect",
        s(&post),
        s(&scene(1)),
        "-o",
        s(&d.path().join("p.png")),
        "--json",
    ]);
    assert_eq!(detections(&json(&out)).len(), 3);
}

#[test]
fn resize_gives_the_native_export_and_diff_says_so() {
    let d = tempfile::tempdir().unwrap();
    // the Gold-YOLO-like fixture bakes its size into 20 neck constants; the 128x160 fixture is a
    // native export of the same weights
    for (from, native, rewrites) in [
        ("goldlike_640x640", "goldlike_128x160", true),
        ("yolox_nano_640x640", "yolox_nano_128x160", false),
    ] {
        let out = d.path().join(format!("{from}_128x160.onnx"));
        let (code, stdout, err) = run(&[
            "resize",
            s(&fixtures().join(format!("{from}.onnx"))),
            "-o",
            s(&out),
            "--size",
            "128x160",
            "--json",
        ]);
        assert_eq!(code, 0, "{from}: {err}");
        let v = json(&stdout);
        let r = &v[0]["resize"];
        assert_eq!(r["from"], serde_json::json!([640, 640]), "{v}");
        assert_eq!(r["to"], serde_json::json!([128, 160]), "{v}");
        assert_eq!(
            (r["boxes_from"].as_u64(), r["boxes_to"].as_u64()),
            (Some(8400), Some(420))
        );
        assert_eq!(
            !r["rewrites"].as_array().unwrap().is_empty(),
            rewrites,
            "{from}: {v}"
        );
        let native = fixtures().join(format!("{native}.onnx"));
        let (code, stdout, err) = run(&["diff", s(&out), s(&native)]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            stdout,
            "no differences\n",
            "{from} resized vs native {}",
            native.display()
        );
        let (code, stdout, _) = run(&["diff", s(&out), s(&native), "--json"]);
        assert_eq!(code, 0);
        let v = json(&stdout);
        for part in [
            "header",
            "inputs",
            "outputs",
            "nodes",
            "initializers",
            "value_info",
        ] {
            assert_eq!(
                v["summary"][part],
                serde_json::json!({"added": 0, "removed": 0, "changed": 0}),
                "{part}"
            );
        }
    }
    // the two native exports differ only in the declared I/O shapes (raw YOLOX bakes nothing)
    let (code, stdout, _) = run(&[
        "diff",
        s(&fixtures().join("yolox_nano_640x640.onnx")),
        s(&fixtures().join("yolox_nano_128x160.onnx")),
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("inputs: 1 changed; outputs: 1 changed\n")
            && stdout.contains("~ images: f32[1,3,640,640] -> f32[1,3,128,160]")
            && stdout.contains("~ output: f32[1,8400,8] -> f32[1,420,8]"),
        "{stdout}"
    );
}

#[test]
fn inspect_reads_the_head_from_the_graph() {
    let d = tempfile::tempdir().unwrap();
    for (fixture, family, h, w) in [
        ("shapes_128x160", "yolox-raw", 128, 160),
        ("yolox_nano_640x640_decode", "yolox-decoded", 640, 640),
        ("goldlike_640x640", "gold-yolo", 640, 640),
    ] {
        // under a neutral name: recognition must not use the file name
        let p = d.path().join("model.onnx");
        std::fs::copy(fixtures().join(format!("{fixture}.onnx")), &p).unwrap();
        let (code, out, err) = run(&["inspect", s(&p), "--json"]);
        assert_eq!(code, 0, "{err}");
        let v = json(&out);
        assert_eq!(v["head"]["family"], family, "{fixture}");
        assert_eq!(v["head"]["num_classes"], 3, "{fixture}");
        assert_eq!(
            (v["head"]["height"].as_i64(), v["head"]["width"].as_i64()),
            (Some(h), Some(w))
        );
        assert_eq!(v["head"]["num_boxes"], 21 * h * w / 1024, "{fixture}");
        let (code, text, _) = run(&["inspect", s(&p)]);
        assert_eq!(code, 0);
        assert!(
            text.contains(&format!("{h}x{w}")) || text.contains(&format!("{h},{w}")),
            "{text}"
        );
    }
    // a merged model is reported as merged, with its NMS node
    let post = d.path().join("post.onnx");
    assert_eq!(run(&["merge", s(&shapes()), "-o", s(&post)]).0, 0);
    let v = json(&run(&["inspect", s(&post), "--json"]).1);
    assert_eq!(v["head"]["family"], "merged");
    assert_eq!(v["head"]["nms_node"], "main01_nonmaxsuppression11");
}

#[test]
fn quant_prep_writes_the_prepared_graph_and_its_sidecar() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("prep.onnx");
    let (code, stdout, err) = run(&["quant-prep", s(&shapes()), "-o", s(&out), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&stdout);
    assert_eq!(v[0]["merge"]["layout"], "decoded", "{v}");
    let m = Model::load(&out).unwrap();
    let outputs: Vec<&str> = m.graph().output.iter().map(|o| o.name()).collect();
    assert_eq!(outputs, ["boxes", "scores"]);
    let sidecar = d.path().join("prep.nodes_to_exclude.json");
    let names: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
    assert!(!names.is_empty());
    assert_eq!(
        serde_json::to_value(&names).unwrap(),
        v[0]["quant_prep"]["nodes_to_exclude"],
        "sidecar = --json report"
    );
    let nodes: std::collections::BTreeSet<&str> = m.graph().node.iter().map(|n| n.name()).collect();
    for n in &names {
        assert!(
            nodes.contains(n.as_str()),
            "sidecar names `{n}`, not a node of the output"
        );
    }
    // no Conv is excluded: the backbone is what gets quantized
    assert!(m
        .graph()
        .node
        .iter()
        .filter(|n| names.iter().any(|x| x == n.name()))
        .all(|n| n.op_type() != "Conv"));
    // the prepared model with NMS still proves equal to the original on a real scene
    let pinto = d.path().join("prep_pinto.onnx");
    let (code, _, err) = run(&[
        "quant-prep",
        s(&shapes()),
        "-o",
        s(&pinto),
        "--layout",
        "pinto",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["check", s(&shapes()), s(&pinto), "--image", s(&scene(1))]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("check passed (3 detections)"), "{out}");
}

#[test]
fn convert_is_lossless_with_and_without_external_data() {
    let d = tempfile::tempdir().unwrap();
    let src = shapes();
    let copy = d.path().join("copy.onnx");
    let (code, _, err) = run(&["convert", s(&src), "-o", s(&copy)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read(&copy).unwrap() == std::fs::read(&src).unwrap(),
        "byte-identical"
    );
    let ext = d.path().join("ext.onnx");
    let (code, _, err) = run(&[
        "convert",
        s(&src),
        "-o",
        s(&ext),
        "--external-data",
        "ext.onnx.data",
    ]);
    assert_eq!(code, 0, "{err}");
    let data = d.path().join("ext.onnx.data");
    assert!(
        data.metadata().unwrap().len() > 1 << 20,
        "the weights moved to the data file"
    );
    assert!(ext.metadata().unwrap().len() < 1 << 20);
    // read back, only where the weights are stored changed (same content hashes), and it
    // still merges and checks
    let (code, out, _) = run(&["diff", s(&src), s(&ext)]);
    assert_eq!(code, 0);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("initializers: ") && first.ends_with(" changed"),
        "{out}"
    );
    let changed: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with('~'))
        .collect();
    assert!(!changed.is_empty());
    for l in &changed {
        assert!(
            l.ends_with("(storage: raw -> external:ext.onnx.data)"),
            "{l}"
        );
    }
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with(['+', '-'])),
        "{out}"
    );
    let post = d.path().join("post.onnx");
    let (code, out, err) = run(&[
        "merge",
        s(&ext),
        "-o",
        s(&post),
        "--check",
        "--image",
        s(&scene(1)),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let out = format!("{out}{err}");
    assert!(out.contains("check passed (3 detections)"), "{out}");
}
