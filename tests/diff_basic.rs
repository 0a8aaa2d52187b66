//! `postmerge::diff` on real exports.
//!
//! Integration test over the shared corpus (POSTMERGE_SHARED, see tests/common and
//! `shared/models/MANIFEST.md`, section "Resolution-dependent constants"). The expected changes
//! below are written from that MANIFEST, not from the diff output.

mod common;

use std::time::Instant;

use postmerge::diff::{diff, render, GraphDiff, Kind, Shown};
use postmerge::model::Model;

fn load(name: &str) -> Model {
    let p = common::shared().join("models").join(name);
    Model::load(&p).unwrap_or_else(|e| panic!("cannot load {}: {e:#}", p.display()))
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => "../snapshots/diff", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!(name, text);
    });
}

fn values(s: &Option<Shown>) -> String {
    match s {
        Some(Shown::Tensor(t)) => t.values.clone().unwrap_or_else(|| format!("#{}", t.hash)),
        Some(Shown::Text(t)) => t.clone(),
        None => "(none)".into(),
    }
}

fn io(d: &[postmerge::diff::IoChange]) -> Vec<(String, String, String)> {
    d.iter()
        .map(|c| {
            assert_eq!(c.kind, Kind::Changed, "{c:?}");
            (
                c.name.clone(),
                c.old.as_ref().unwrap().to_string(),
                c.new.as_ref().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_nothing_else(d: &GraphDiff) {
    assert!(d.header.is_empty(), "header: {:?}", d.header);
    assert!(
        d.initializers.is_empty(),
        "no initializer may differ (same weights): {:?}",
        d.initializers
    );
    assert!(d.value_info.is_empty(), "value_info: {:?}", d.value_info);
}

#[test]
fn a_model_diffed_with_itself_is_empty() {
    let Some(_) = common::shared_or_skip(
        "diff of the shared Gold-YOLO-n and YOLOX-nano exports with themselves",
    ) else {
        return;
    };
    for name in [
        "gold_yolo_n_80c_640x640_op13.onnx",
        "yolox_nano_80c_640x640_op11.onnx",
    ] {
        let m = load(name);
        let d = diff(&m, &m).unwrap();
        assert!(d.is_empty(), "{name}:\n{}", render(&d));
        assert_eq!(render(&d), "no differences\n");
    }
}

/// MANIFEST: "YOLOX raw head ... no attribute or constant differs ... Only the declared graph
/// input `[1,3,H,W]` and output `[1,N,5+C]` shapes differ".
#[test]
fn yolox_nano_640_vs_128x160_differs_only_in_io_shapes() {
    let Some(_) =
        common::shared_or_skip("diff of the shared YOLOX-nano 640x640 vs 128x160 exports")
    else {
        return;
    };
    let (a, b) = (
        load("yolox_nano_80c_640x640_op11.onnx"),
        load("yolox_nano_80c_128x160_op11.onnx"),
    );
    let d = diff(&a, &b).unwrap();
    assert_eq!(
        io(&d.inputs),
        [(
            "images".into(),
            "f32[1,3,640,640]".into(),
            "f32[1,3,128,160]".into()
        )]
    );
    assert_eq!(
        io(&d.outputs),
        [(
            "output".into(),
            "f32[1,8400,85]".into(),
            "f32[1,420,85]".into()
        )]
    );
    assert!(d.nodes.is_empty(), "{:?}", d.nodes);
    assert_nothing_else(&d);
    let text = render(&d);
    snapshot("yolox_nano_80c_640x640_vs_128x160", &text);
}

/// MANIFEST "Gold-YOLO plain export (n, s, m; opset 13)": 20 nodes differ, all in `/neck`.
#[test]
fn gold_yolo_n_640_vs_128x160_shows_exactly_the_resolution_dependent_constants() {
    let Some(_) =
        common::shared_or_skip("diff of the shared Gold-YOLO-n 640x640 vs 128x160 exports")
    else {
        return;
    };
    let (a, b) = (
        load("gold_yolo_n_80c_640x640_op13.onnx"),
        load("gold_yolo_n_80c_128x160_op13.onnx"),
    );
    let t = Instant::now();
    let d = diff(&a, &b).unwrap();
    let elapsed = t.elapsed();
    eprintln!("diff of two 22 MB Gold-YOLO models: {elapsed:?}");
    // Loose bound (the release build takes a few ms): guards against quadratic behaviour only.
    assert!(elapsed.as_secs_f64() < 5.0, "diff took {elapsed:?}");

    assert_eq!(
        io(&d.inputs),
        [(
            "images".into(),
            "f32[1,3,640,640]".into(),
            "f32[1,3,128,160]".into()
        )]
    );
    assert_eq!(
        io(&d.outputs),
        [(
            "outputs".into(),
            "f32[1,8400,85]".into(),
            "f32[1,420,85]".into()
        )]
    );
    assert_nothing_else(&d);
    assert_eq!((d.summary.nodes.added, d.summary.nodes.removed), (0, 0));

    // Every changed node as (module, what, old, new); a Constant is described by the op that reads it.
    let mut got: Vec<(String, String, String, String)> = Vec::new();
    for n in &d.nodes {
        assert_eq!(n.kind, Kind::Changed, "{n:?}");
        assert!(
            n.key.starts_with("/neck/"),
            "only the neck is resolution-dependent: {}",
            n.key
        );
        let (module, _) = n.key.rsplit_once('/').unwrap();
        for c in &n.changes {
            let what = if n.op == "Constant" {
                assert_eq!(c.what, "value");
                assert_eq!(n.used_by.len(), 1, "{n:?}");
                format!(
                    "{} input",
                    n.used_by[0]
                        .rsplit_once(" (")
                        .unwrap()
                        .1
                        .trim_end_matches(')')
                )
            } else {
                format!("{} {}", n.op, c.what)
            };
            got.push((module.to_string(), what, values(&c.old), values(&c.new)));
        }
    }
    got.sort();

    let s = |a: &str, b: &str, c: &str, d: &str| {
        (a.to_string(), b.to_string(), c.to_string(), d.to_string())
    };
    let mut want = vec![
        // "`Resize` output sizes: ... `Constant[h, w]` differs: `low_FAM` [40,40]→[8,10],
        // `LAF_p4`/`Inject_p4` (x2) [40,40]→[8,10], `LAF_p3`/`Inject_p3` (x2) [80,80]→[16,20],
        // `Inject_n5` (x2) [20,20]→[4,5]" — the Concat(Shape(x)[0:2], Constant[h, w]) constants.
        s("/neck/low_FAM", "Concat input", "[40, 40]", "[8, 10]"),
        s("/neck/LAF_p4", "Concat input", "[40, 40]", "[8, 10]"),
        s("/neck/Inject_p4", "Concat input", "[40, 40]", "[8, 10]"),
        s("/neck/Inject_p4", "Concat input", "[40, 40]", "[8, 10]"),
        s("/neck/LAF_p3", "Concat input", "[80, 80]", "[16, 20]"),
        s("/neck/Inject_p3", "Concat input", "[80, 80]", "[16, 20]"),
        s("/neck/Inject_p3", "Concat input", "[80, 80]", "[16, 20]"),
        s("/neck/Inject_n5", "Concat input", "[20, 20]", "[4, 5]"),
        s("/neck/Inject_n5", "Concat input", "[20, 20]", "[4, 5]"),
        // "`AveragePool` attributes of `high_FAM`": 640x640 kernels/strides [8,8]/[8,8],
        // [4,4]/[4,4], [2,2]/[2,2]; 128x160 strides [8,6], [4,3], [2,1], kernel of the last [2,3].
        s("/neck/high_FAM", "AveragePool strides", "[8, 8]", "[8, 6]"),
        s("/neck/high_FAM", "AveragePool strides", "[4, 4]", "[4, 3]"),
        s("/neck/high_FAM", "AveragePool strides", "[2, 2]", "[2, 1]"),
        s(
            "/neck/high_FAM",
            "AveragePool kernel_shape",
            "[2, 2]",
            "[2, 3]",
        ),
    ];
    // "attention `Reshape` shapes in the 2 `high_IFM` transformer blocks: [1,4,8,100]→[1,4,8,6]
    // (q and k), [1,4,16,100]→[1,4,16,6] (v), and back-to-map [1,64,10,10]→[1,64,2,3]".
    for blk in 0..2 {
        let m = format!("/neck/high_IFM/transformer_blocks.{blk}/attn");
        want.push(s(&m, "Reshape input", "[1, 4, 8, 100]", "[1, 4, 8, 6]"));
        want.push(s(&m, "Reshape input", "[1, 4, 8, 100]", "[1, 4, 8, 6]"));
        want.push(s(&m, "Reshape input", "[1, 4, 16, 100]", "[1, 4, 16, 6]"));
        want.push(s(&m, "Reshape input", "[1, 64, 10, 10]", "[1, 64, 2, 3]"));
    }
    want.sort();
    assert_eq!(got, want);
    // MANIFEST: "20 nodes differ" (9 Concat constants + 3 AveragePools + 8 Reshape constants; the
    // MANIFEST's "10 Concat constants" miscounts its own list of 9 — Inject_n4's two Resizes take
    // their size from `Shape` at runtime).
    assert_eq!(d.nodes.len(), 20);

    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["summary"]["nodes"]["changed"], 20);
    snapshot("gold_yolo_n_80c_640x640_vs_128x160", &render(&d));
}
