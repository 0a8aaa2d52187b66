//! Static shape inference over every fixture and (POSTMERGE_SHARED, tests/common) shared model: every node
//! of the YOLOX / Gold-YOLO op set is inferred, the inferred outputs equal the declared ones, and a
//! symbolic batch flows through to the outputs.

mod common;

use std::collections::HashMap;

use postmerge::model::Model;
use postmerge::shape::{infer, vi_shape, Dim};

#[test]
fn every_node_of_every_model_is_inferred_and_outputs_match_declarations() {
    for p in common::all_models() {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let m = Model::load(&p).unwrap();
        let s = infer(&m, &HashMap::new()).unwrap();
        if stem.ends_with("_e2e_ort") {
            // the end2end graph's `If` has subgraphs: only what follows it is unknown
            assert!(
                s.unknown
                    .iter()
                    .all(|u| u.contains("If") || u.contains("/end2end/")),
                "{stem}: {:?}",
                s.unknown
            );
            continue;
        }
        if stem.starts_with("rich") {
            continue; // custom-domain function and If: unknown ops pass through, by design
        }
        assert!(s.unknown.is_empty(), "{stem}: {:?}", s.unknown);
        for o in &m.graph().output {
            let (inferred, declared) = (s.shape(o.name()), vi_shape(o));
            if stem.ends_with("_dynbatch") {
                // Gold-YOLO --dynamic-batch names every output dim but the batch (issue 13):
                // inference computes them
                assert_eq!(
                    inferred,
                    Some(&vec![
                        Dim::Sym("batch".into()),
                        Dim::Known(8400),
                        Dim::Known(85)
                    ]),
                    "{stem}: output {} (declared {declared:?})",
                    o.name()
                );
                continue;
            }
            assert_eq!(inferred, declared.as_ref(), "{stem}: output {}", o.name());
        }
    }
}

#[test]
fn symbolic_batch_flows_to_the_outputs() {
    let Some(_) = common::shared_or_skip(
        "symbolic batch through the shared YOLOX-nano, Gold-YOLO-n and onnxsim exports",
    ) else {
        return;
    };
    for stem in [
        "yolox_nano_80c_128x160_op11",
        "gold_yolo_n_80c_128x160_op13",
        "yolox_nano_80c_640x640_op11_sim",
    ] {
        let m = Model::load(&common::shared().join(format!("models/{stem}.onnx"))).unwrap();
        let mut ov = HashMap::new();
        let mut shape = vi_shape(&m.graph().input[0]).unwrap();
        shape[0] = Dim::Sym("batch".into());
        ov.insert("images".to_string(), shape);
        let s = infer(&m, &ov).unwrap();
        let out = s.shape(m.graph().output[0].name()).unwrap();
        // raw YOLOX and Gold-YOLO compute their reshapes from Shape at run time: batch stays symbolic;
        // the onnxsim'd file bakes batch 1 into a Reshape — inference says so (known 1)
        if stem.ends_with("_sim") {
            // Reshape [1, 85, -1] folds the batch into the box axis: N is no longer 8400
            assert_eq!(out[0], Dim::Known(1), "{stem}: {out:?}");
            assert!(matches!(out[1], Dim::Sym(_)), "{stem}: {out:?}");
        } else {
            assert_eq!(out[0], Dim::Sym("batch".into()), "{stem}: {out:?}");
            assert_eq!(
                out[1].known(),
                vi_shape(&m.graph().output[0]).unwrap()[1].known(),
                "{stem}"
            );
        }
    }
}

#[test]
fn the_vendored_proto_and_the_supported_ir_version_agree() {
    let proto =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/onnx.proto")).unwrap();
    let line = proto
        .lines()
        .find(|l| l.trim_start().starts_with("IR_VERSION ="))
        .unwrap();
    let hex = line
        .split("0x")
        .nth(1)
        .unwrap()
        .trim_end_matches(';')
        .trim();
    let v = i64::from_str_radix(hex, 16).unwrap();
    assert_eq!(v, postmerge::model::SUPPORTED_IR_VERSION);
    let upstream =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/UPSTREAM.md")).unwrap();
    assert!(
        upstream.contains(&format!("({v})")),
        "proto/UPSTREAM.md must state IR {v}"
    );
}
