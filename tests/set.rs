//! `set` retunes merged models: ours (initializers, PINTO's names), the Gold-YOLO `--end2end --ort`
//! export (Constant nodes; ../shared, CI has it), graph-input defaults, shared constants. Results
//! are verified by running with tract against the Rust reference.

mod common;

use postmerge::check::{compare_outputs, Tolerance};
use postmerge::graph::{constant, GraphIndex};
use postmerge::model::Model;
use postmerge::npy::read_npy_file;
use postmerge::passes::merge::{merge, MergeOptions, Thresholds};
use postmerge::passes::set::{set, SetOptions};
use postmerge::postprocess::{decode, nms, render, HeadKind, HeadSpec, Layout, NmsParams};

fn yolox() -> (Model, postmerge::npy::Npy) {
    let m = Model::load(&common::shared().join("models/yolox_nano_80c_640x640_op11.onnx")).unwrap();
    let x =
        read_npy_file(common::shared().join("ref/yolox_nano_80c_640x640_op11/input.npy")).unwrap();
    (m, x)
}

/// Run a merged pinto model and compare with the reference at `params`; returns the row count.
fn run_pinto(m: &Model, x: &postmerge::npy::Npy, params: NmsParams) -> usize {
    let outs = postmerge::run::run_once(m, &[x], &["output"]).unwrap();
    let head = &outs.iter().find(|(n, _)| n == "output").unwrap().1;
    let dec = decode(
        head.as_f32().unwrap(),
        1,
        8400,
        &HeadSpec::new(HeadKind::YoloxRaw, 80, 640, 640),
    )
    .unwrap();
    let sel = nms(&dec, &params).unwrap();
    let exp = render(&Layout::Pinto, &dec, &sel).unwrap();
    let cmp = compare_outputs(&Layout::Pinto, &exp, &outs, Tolerance::default()).unwrap();
    assert!(cmp.ok(), "{cmp:#?}");
    sel.len()
}

fn value(m: &Model, name: &str) -> Vec<f64> {
    let g = m.graph();
    let ix = GraphIndex::build(g);
    let t = constant(g, &ix, name)
        .map(|(_, t)| t)
        .or_else(|| ix.initializer.get(name).map(|&i| g.initializer[i].clone()))
        .unwrap();
    m.tensor_values(&t).unwrap().as_f64()
}

#[test]
fn set_on_our_merge_changes_results_as_the_thresholds_say() {
    let Some(_) = common::shared_or_skip("set on a merge of the shared YOLOX-nano 80c 640x640")
    else {
        return;
    };
    let (mut m, x) = yolox();
    merge(&mut m, &MergeOptions::default()).unwrap();
    let before = run_pinto(&m, &x, NmsParams::default());
    let ch = set(
        &mut m,
        &SetOptions {
            score_threshold: Some(0.5),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!(
        ch[0].tensor, "main01_score_threshold",
        "PINTO's names are kept"
    );
    assert_eq!(value(&m, "main01_score_threshold"), vec![0.5]);
    let after = run_pinto(
        &m,
        &x,
        NmsParams {
            score_threshold: 0.5,
            ..NmsParams::default()
        },
    );
    assert!(
        after < before,
        "{after} rows at score 0.5 vs {before} at 0.25"
    );
    set(
        &mut m,
        &SetOptions {
            max_per_class: Some(1),
            iou_threshold: Some(0.2),
            ..Default::default()
        },
    )
    .unwrap();
    let capped = run_pinto(
        &m,
        &x,
        NmsParams {
            score_threshold: 0.5,
            iou_threshold: 0.2,
            max_per_class: 1,
            agnostic: false,
        },
    );
    assert!(capped <= 80 && capped < after, "{capped}");
}

#[test]
fn set_updates_graph_input_defaults() {
    let Some(_) =
        common::shared_or_skip("set of graph-input defaults on the shared YOLOX-nano 80c 640x640")
    else {
        return;
    };
    let (mut m, x) = yolox();
    merge(
        &mut m,
        &MergeOptions {
            thresholds: Thresholds::Inputs,
            ..MergeOptions::default()
        },
    )
    .unwrap();
    let ch = set(
        &mut m,
        &SetOptions {
            score_threshold: Some(0.6),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(ch[0].how.contains("default of graph input"), "{:?}", ch[0]);
    assert_eq!(
        value(&m, "main01_score_threshold"),
        vec![0.6000000238418579]
    );
    // graph inputs stay inputs
    assert!(m
        .graph()
        .input
        .iter()
        .any(|i| i.name() == "main01_score_threshold"));
    // tract treats initializer-backed inputs as constants: the new default applies
    let n = run_pinto(
        &m,
        &x,
        NmsParams {
            score_threshold: 0.6,
            ..NmsParams::default()
        },
    );
    assert!(n > 0);
}

#[test]
fn a_shared_constant_is_copied_not_changed() {
    let Some(_) =
        common::shared_or_skip("set with a shared constant on the shared YOLOX-nano 80c 640x640")
    else {
        return;
    };
    let (mut m, _) = yolox();
    merge(&mut m, &MergeOptions::default()).unwrap();
    // another consumer of the IoU constant
    let g = m.graph_mut();
    g.node.push(postmerge::graph::make_node(
        "Identity",
        "other_user",
        &["main01_iou_threshold"],
        &["other_out"],
        vec![],
    ));
    g.output.push(postmerge::shape::make_vi(
        "other_out",
        1,
        &[postmerge::shape::Dim::Known(1)],
    ));
    let ch = set(
        &mut m,
        &SetOptions {
            iou_threshold: Some(0.3),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ch[0].tensor, "main01_iou_threshold_mod");
    assert!(ch[0].how.contains("shared"));
    assert_eq!(
        value(&m, "main01_iou_threshold"),
        vec![0.4000000059604645],
        "other consumer unchanged"
    );
    assert_eq!(
        value(&m, "main01_iou_threshold_mod"),
        vec![0.30000001192092896]
    );
    let nms = m
        .graph()
        .node
        .iter()
        .find(|n| n.op_type() == "NonMaxSuppression")
        .unwrap();
    assert_eq!(nms.input[3], "main01_iou_threshold_mod");
}

#[test]
fn set_retunes_the_gold_yolo_end2end_ort_export() {
    let Some(_) = common::shared_or_skip("set on the shared Gold-YOLO --end2end --ort export")
    else {
        return;
    };
    let p = common::shared().join("models/gold_yolo_n_80c_640x640_op13_e2e_ort.onnx");
    let mut m = Model::load(&p).unwrap();
    let ch = set(
        &mut m,
        &SetOptions {
            score_threshold: Some(0.5),
            iou_threshold: Some(0.3),
            max_per_class: Some(10),
        },
    )
    .unwrap();
    assert_eq!(ch.len(), 3);
    for c in &ch {
        assert!(c.how.starts_with("Constant node"), "{c:?}");
    }
    assert_eq!(ch[0].old, "[100]");
    assert_eq!(value(&m, "/end2end/Constant_14_output_0"), vec![10.0]);
    assert_eq!(
        value(&m, "/end2end/Constant_15_output_0"),
        vec![0.30000001192092896]
    );
    assert_eq!(value(&m, "/end2end/Constant_16_output_0"), vec![0.5]);
    // runs: fewer detections, all above the new threshold, at most 10 per class
    let x =
        read_npy_file(common::shared().join("ref/gold_yolo_n_80c_640x640_op13_e2e_ort/input.npy"))
            .unwrap();
    let outs = postmerge::run::run_once(&m, &[&x], &[]).unwrap();
    let get = |n: &str| outs.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let num = get("num_dets").to_i64().unwrap()[0] as usize;
    assert!(num > 0 && num < 634, "{num}");
    let scores = get("det_scores").to_f32();
    let classes = get("det_classes").to_i64().unwrap();
    assert!(
        scores[..num].iter().all(|&s| s > 0.5),
        "{:?}",
        &scores[..num]
    );
    let mut per = std::collections::HashMap::new();
    for &c in &classes[..num] {
        *per.entry(c).or_insert(0) += 1;
    }
    assert!(per.values().all(|&v| v <= 10), "{per:?}");
}

#[test]
fn set_on_a_model_without_nms_is_a_clear_error() {
    let Some(_) = common::shared_or_skip("set refusal on the shared YOLOX-nano 80c 640x640") else {
        return;
    };
    let (mut m, _) = yolox();
    let e = set(
        &mut m,
        &SetOptions {
            score_threshold: Some(0.5),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no NonMaxSuppression node"), "{e}");
    let e = set(&mut m, &SetOptions::default()).unwrap_err().to_string();
    assert!(e.contains("nothing to set"), "{e}");
}

/// The post-NMS filter (keep selections above the score threshold) reads the NMS node's own
/// score threshold, so `set --score` retunes both: lowered to 0.1, rows scoring in (0.1, 0.25]
/// appear (a filter left at 0.25 would drop them), in place and when the constant is shared.
#[test]
fn set_score_retunes_the_post_nms_filter_too() {
    let m0 = Model::load(&common::fixtures().join("yolox_nano_128x160.onnx")).unwrap();
    let x = read_npy_file(common::fixtures().join("ref/yolox_nano_128x160/input.npy")).unwrap();
    let spec = HeadSpec::new(HeadKind::YoloxRaw, 3, 128, 160);
    for layout in [Layout::Pinto, Layout::Trt { max_det: 100 }] {
        for shared in [false, true] {
            let mut m = m0.clone();
            merge(
                &mut m,
                &MergeOptions {
                    layout: Some(layout),
                    ..MergeOptions::default()
                },
            )
            .unwrap();
            if shared {
                let g = m.graph_mut();
                g.node.push(postmerge::graph::make_node(
                    "Identity",
                    "other_user",
                    &["main01_score_threshold"],
                    &["other_out"],
                    vec![],
                ));
                g.output.push(postmerge::shape::make_vi(
                    "other_out",
                    1,
                    &[postmerge::shape::Dim::Known(1)],
                ));
            }
            let ch = set(
                &mut m,
                &SetOptions {
                    score_threshold: Some(0.1),
                    ..Default::default()
                },
            )
            .unwrap();
            let nms_score = m
                .graph()
                .node
                .iter()
                .find(|n| n.op_type() == "NonMaxSuppression")
                .unwrap()
                .input[4]
                .clone();
            assert_eq!(ch[0].tensor, nms_score);
            assert_eq!(nms_score.ends_with("_mod"), shared);
            // every appended reader of a score threshold reads the NMS node's
            let readers: Vec<_> = m
                .graph()
                .node
                .iter()
                .filter(|n| n.name().starts_with("postmerge/"))
                .filter(|n| {
                    n.input
                        .iter()
                        .any(|i| i.starts_with("main01_score_threshold"))
                })
                .collect();
            assert_eq!(readers.len(), 1);
            assert_eq!(readers[0].op_type(), "Greater");
            assert!(readers[0].input.contains(&nms_score));
            if shared {
                assert_eq!(value(&m, "main01_score_threshold"), vec![0.25]);
            }
            let outs = postmerge::run::run_once(&m, &[&x], &["output"]).unwrap();
            let head = &outs.iter().find(|(n, _)| n == "output").unwrap().1;
            let dec = decode(head.as_f32().unwrap(), 1, 420, &spec).unwrap();
            let params = NmsParams {
                score_threshold: 0.1,
                ..NmsParams::default()
            };
            let sel = nms(&dec, &params).unwrap();
            let low = sel
                .iter()
                .filter(|s| dec.score(0, s.box_index, s.class).unwrap() <= 0.25)
                .count();
            assert!(
                low > 0,
                "no selection in (0.1, 0.25]: the test would be vacuous"
            );
            let exp = render(&layout, &dec, &sel).unwrap();
            let cmp = compare_outputs(&layout, &exp, &outs, Tolerance::default()).unwrap();
            assert!(cmp.ok(), "{} shared={shared}: {cmp:#?}", layout.name());
        }
    }
}
