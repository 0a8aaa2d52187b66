//! `merge` end to end in tract: for every shared model (../shared, CI has it) and fixture with a
//! reference input, for every layout, the merged model's detections equal the Rust reference
//! post-process (ONNX NMS semantics) applied to the head tensor of the same run — identical
//! pre-NMS tensors, so the comparison is exact up to float noise of Exp (boxes ≤ 1e-3 px, scores
//! ≤ 1e-5) — and that head tensor matches the onnxruntime `raw.npy` within the runtimes' noise.
//! The onnxruntime side of the same comparison is tests/oracle/merge_check.py (CI).

mod common;

use postmerge::check::{compare_outputs, Tolerance};
use postmerge::head::{recognize, Family};
use postmerge::model::Model;
use postmerge::npy::read_npy_file;
use postmerge::passes::merge::{merge, MergeOptions, Thresholds};
use postmerge::postprocess::{decode, nms, render, HeadKind, HeadSpec, Layout, NmsParams};

fn layouts() -> Vec<Layout> {
    vec![
        Layout::Pinto,
        Layout::PintoGoldYolo,
        Layout::Trt { max_det: 100 },
        Layout::Ultralytics { max_det: 100 },
        Layout::Decoded,
    ]
}

fn spec(m: &Model) -> HeadSpec {
    let h = recognize(m, None).unwrap();
    let kind = match h.family {
        Family::YoloxRaw => HeadKind::YoloxRaw,
        Family::YoloxDecoded => HeadKind::YoloxDecoded,
        _ => HeadKind::GoldYolo,
    };
    HeadSpec {
        kind,
        num_classes: h.num_classes.unwrap(),
        strides: h.strides.iter().map(|&s| s as u32).collect(),
        input_h: h.height.unwrap() as usize,
        input_w: h.width.unwrap() as usize,
    }
}

/// Models with a reference input: (model path, ref dir).
fn cases() -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    common::models_with_inputs()
        .into_iter()
        .map(|(m, i)| (m, i.parent().unwrap().to_path_buf()))
        .collect()
}

fn check_one(
    path: &std::path::Path,
    refdir: &std::path::Path,
    layout: Layout,
    opts: &MergeOptions,
) {
    let input = read_npy_file(refdir.join("input.npy")).unwrap();
    let mut m = Model::load(path).unwrap();
    let sp = spec(&m);
    let head_out = recognize(&m, None).unwrap().output.unwrap();
    merge(
        &mut m,
        &MergeOptions {
            layout: Some(layout),
            ..opts.clone()
        },
    )
    .unwrap();
    let outs = postmerge::run::run_once(&m, &[&input], &[&head_out])
        .unwrap_or_else(|e| panic!("{} {}: {e:#}", path.display(), layout.name()));
    let (_, head) = outs.iter().find(|(n, _)| *n == head_out).unwrap();
    let raw = head.as_f32().unwrap();
    let dec = decode(raw, head.shape[0], head.shape[1], &sp).unwrap();
    let params = NmsParams {
        score_threshold: opts.score_threshold,
        iou_threshold: opts.iou_threshold,
        max_per_class: opts.max_per_class as usize,
        agnostic: opts.agnostic,
    };
    let sel = nms(&dec, &params).unwrap();
    let expected = render(&layout, &dec, &sel).unwrap();
    let cmp = compare_outputs(&layout, &expected, &outs, Tolerance::default()).unwrap();
    assert!(cmp.ok(), "{} {}: {:#?}", path.display(), layout.name(), cmp);
    if layout != Layout::Decoded {
        assert!(
            !sel.is_empty(),
            "{}: the reference selects nothing; the test would be vacuous",
            path.display()
        );
    }
}

#[test]
fn merged_models_equal_the_reference_in_tract_for_every_layout() {
    for (p, r) in cases() {
        for layout in layouts() {
            check_one(&p, &r, layout, &MergeOptions::default());
        }
    }
}

#[test]
fn official_thresholds_agnostic_and_input_thresholds_also_match() {
    let Some(_) = common::shared_or_skip(
        "official / agnostic / input thresholds on the shared YOLOX-nano 80c 640x640",
    ) else {
        return;
    };
    let (p, r) = cases()
        .into_iter()
        .find(|(p, _)| p.ends_with("yolox_nano_80c_640x640_op11.onnx"))
        .unwrap();
    let official = MergeOptions {
        iou_threshold: 0.45,
        max_per_class: 100000,
        ..MergeOptions::default()
    };
    check_one(&p, &r, Layout::Pinto, &official);
    check_one(
        &p,
        &r,
        Layout::Pinto,
        &MergeOptions {
            agnostic: true,
            ..MergeOptions::default()
        },
    );
    check_one(
        &p,
        &r,
        Layout::Trt { max_det: 100 },
        &MergeOptions {
            agnostic: true,
            ..MergeOptions::default()
        },
    );
    check_one(
        &p,
        &r,
        Layout::Pinto,
        &MergeOptions {
            thresholds: Thresholds::Inputs,
            ..MergeOptions::default()
        },
    );
}

#[test]
fn head_tensor_in_tract_matches_onnxruntime_raw_output() {
    for (p, r) in cases() {
        let Ok(raw) = read_npy_file(r.join("raw.npy")) else {
            continue;
        };
        let input = read_npy_file(r.join("input.npy")).unwrap();
        let m = Model::load(&p).unwrap();
        let outs = postmerge::run::run_once(&m, &[&input], &[]).unwrap();
        let got = outs[0].1.as_f32().unwrap();
        let want = raw.as_f32().unwrap();
        assert_eq!(got.len(), want.len());
        let range = want.iter().fold(0f32, |a, &x| a.max(x.abs()));
        let maxd = got
            .iter()
            .zip(want)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        // rust-notes.md §3: tract vs onnxruntime differ by ~1e-4 (YOLOX) to 1e-3 (Gold-YOLO) of the range
        assert!(
            maxd <= 2e-3 * range,
            "{}: max |tract - ort| = {maxd} for range {range}",
            p.display()
        );
    }
}

#[test]
fn diff_of_original_vs_merged_snapshot_per_layout() {
    // the project's own fixtures (tests/fixtures): what a release reviewer sees for each layout
    for (fixture, layouts) in [
        (
            "yolox_nano_128x160",
            vec![
                Layout::Pinto,
                Layout::Trt { max_det: 100 },
                Layout::Ultralytics { max_det: 100 },
                Layout::Decoded,
            ],
        ),
        ("goldlike_128x160", vec![Layout::PintoGoldYolo]),
    ] {
        let path = common::fixtures().join(format!("{fixture}.onnx"));
        let a = Model::load(&path).unwrap();
        for layout in layouts {
            let mut b = a.clone();
            merge(
                &mut b,
                &MergeOptions {
                    layout: Some(layout),
                    ..MergeOptions::default()
                },
            )
            .unwrap();
            let text = postmerge::diff::render(&postmerge::diff::diff(&a, &b).unwrap());
            let name = format!("{fixture}__{}", layout.name());
            common::settings("merge").bind(|| insta::assert_snapshot!(name, text));
        }
    }
}

#[test]
fn merge_refuses_what_it_cannot_merge() {
    let Some(_) =
        common::shared_or_skip("merge refusals on the shared end2end and YOLOX-nano exports")
    else {
        return;
    };
    let e2e =
        Model::load(&common::shared().join("models/gold_yolo_n_80c_640x640_op13_e2e_ort.onnx"))
            .unwrap();
    let e = merge(&mut e2e.clone(), &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already merged")
            && e.contains("/end2end/NonMaxSuppression")
            && e.contains("postmerge set"),
        "{e}"
    );
    // a TensorRT plugin graph
    let mut trt =
        Model::load(&common::shared().join("models/yolox_nano_80c_128x160_op11.onnx")).unwrap();
    let g = trt.graph_mut();
    let mut n = postmerge::graph::make_node(
        "EfficientNMS_TRT",
        "trt_nms",
        &["output"],
        &["num_dets"],
        vec![],
    );
    n.domain = Some("TRT".into());
    g.node.push(n);
    let e = merge(&mut trt, &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("TensorRT plugin") && e.contains("trt_nms"),
        "{e}"
    );
    // classes/strides that do not add up: N = 421 for a 128x160 input
    let mut bad =
        Model::load(&common::shared().join("models/yolox_nano_80c_128x160_op11.onnx")).unwrap();
    let out = &mut bad.graph_mut().output[0];
    postmerge::shape::set_vi_shape(
        out,
        &[
            postmerge::shape::Dim::Known(1),
            postmerge::shape::Dim::Known(421),
            postmerge::shape::Dim::Known(85),
        ],
    );
    // issue 13: a declared shape that lies decides nothing; the graph computes N = 420 (a graph
    // that really computes a wrong N is refused: tests/hostile.rs `head_n_mismatch`)
    let h = recognize(&bad, None).unwrap();
    assert_eq!(h.num_boxes, Some(420));
    assert!(
        h.declared_vs_inferred[0]
            .describe()
            .contains("declares [1,421,85], shape inference gives [1,420,85]"),
        "{:?}",
        h.declared_vs_inferred
    );
    merge(&mut bad, &MergeOptions::default()).unwrap();
    // opset lowering and nonsense thresholds
    let mut m =
        Model::load(&common::shared().join("models/yolox_nano_80c_128x160_op11.onnx")).unwrap();
    assert!(merge(
        &mut m.clone(),
        &MergeOptions {
            opset: Some(9),
            ..MergeOptions::default()
        }
    )
    .unwrap_err()
    .to_string()
    .contains("opset 10"));
    assert!(merge(
        &mut m.clone(),
        &MergeOptions {
            max_per_class: 0,
            ..MergeOptions::default()
        }
    )
    .unwrap_err()
    .to_string()
    .contains("at least 1"));
    assert!(merge(
        &mut m,
        &MergeOptions {
            opset: Some(13),
            ..MergeOptions::default()
        }
    )
    .unwrap_err()
    .to_string()
    .contains("would change the meaning"));
}

#[test]
fn merge_is_deterministic_and_names_never_collide() {
    let Some(_) =
        common::shared_or_skip("merge determinism / name collisions on the shared YOLOX-nano 80c")
    else {
        return;
    };
    let p = common::shared().join("models/yolox_nano_80c_128x160_op11.onnx");
    let mut a = Model::load(&p).unwrap();
    let mut b = Model::load(&p).unwrap();
    merge(
        &mut a,
        &MergeOptions {
            layout: Some(Layout::Trt { max_det: 10 }),
            ..MergeOptions::default()
        },
    )
    .unwrap();
    merge(
        &mut b,
        &MergeOptions {
            layout: Some(Layout::Trt { max_det: 10 }),
            ..MergeOptions::default()
        },
    )
    .unwrap();
    assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    let mut names = std::collections::HashSet::new();
    for n in &a.graph().node {
        assert!(
            names.insert(n.name().to_string()),
            "duplicate node name {}",
            n.name()
        );
    }
    postmerge::graph::check_references(a.graph()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Issue 12: a post-process that survives INT8 toolchains and runtimes that pad NMS
// ---------------------------------------------------------------------------------------------

use postmerge::npy::{Npy, NpyData};
use postmerge::postprocess::{decode_with, log_size_bound, DecodeOptions};
use postmerge::shape::{make_vi, Dim};

const F32: i32 = 1; // onnx TensorProto.FLOAT
const I64: i32 = 7; // onnx TensorProto.INT64

fn fixture(stem: &str) -> (Model, Npy, Npy) {
    let m = Model::load(&common::fixtures().join(format!("{stem}.onnx"))).unwrap();
    let dir = common::fixtures().join("ref").join(stem);
    let input = read_npy_file(dir.join("input.npy")).unwrap();
    let raw = read_npy_file(dir.join("raw.npy")).unwrap();
    (m, input, raw)
}

fn merged(m: &Model, layout: Layout, opts: &MergeOptions) -> Model {
    let mut m = m.clone();
    let max_det = match layout {
        Layout::Trt { max_det } | Layout::Ultralytics { max_det } => max_det,
        _ => opts.max_det,
    };
    merge(
        &mut m,
        &MergeOptions {
            layout: Some(layout),
            max_det,
            ..opts.clone()
        },
    )
    .unwrap();
    m
}

/// A copy of a merged model whose head tensor is the first graph input (the backbone removed),
/// so a test can feed the appended post-process any head output it likes.
fn head_as_input(m: &Model, head: &str, shape: &[i64]) -> Model {
    let mut m = m.clone();
    let g = m.graph_mut();
    for n in g.node.iter_mut() {
        for o in n.output.iter_mut().filter(|o| o.as_str() == head) {
            *o = "cut_head_unused".into();
        }
    }
    let image = g.input[0].name().to_string();
    g.input.retain(|i| i.name() != image);
    let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Known(d)).collect();
    g.input.insert(0, make_vi(head, F32, &dims));
    postmerge::graph::cleanup(g);
    postmerge::graph::check_references(g).unwrap();
    m
}

/// A copy of a merged model whose NonMaxSuppression output is the last graph input: the
/// post-NMS part can be fed the selections a padding runtime (TFLite) returns.
fn nms_as_input(m: &Model) -> Model {
    let mut m = m.clone();
    let g = m.graph_mut();
    let i = g
        .node
        .iter()
        .position(|n| n.op_type() == "NonMaxSuppression")
        .unwrap();
    let sel = g.node.remove(i).output[0].clone();
    g.input
        .push(make_vi(&sel, I64, &[Dim::Sym("M".into()), Dim::Known(3)]));
    postmerge::graph::cleanup(g);
    m
}

/// Every tensor an appended (`postmerge/…`) node produces.
fn appended_tensors(m: &Model) -> Vec<String> {
    m.graph()
        .node
        .iter()
        .filter(|n| n.name().starts_with("postmerge/") || n.name().starts_with("main01_"))
        .flat_map(|n| n.output.iter().cloned())
        .filter(|o| !o.is_empty())
        .collect()
}

fn f32_npy(shape: &[usize], v: Vec<f32>) -> Npy {
    Npy::new(shape.to_vec(), NpyData::F32(v)).unwrap()
}

/// Background anchors (best score below 0.01) of a raw head, first `k` of them.
fn background(raw: &[f32], row: usize, k: usize) -> Vec<usize> {
    raw.chunks_exact(row)
        .enumerate()
        .filter(|(_, r)| r[5..].iter().all(|&c| r[4] * c < 0.01))
        .map(|(i, _)| i)
        .take(k)
        .collect()
}

#[test]
fn a_huge_log_size_stays_bounded_and_changes_no_detection() {
    // the appended decode, run in tract, on the fixture's head output with three background
    // anchors given the log-sizes of issue 12 (18.8), 80 and 100 (exp(100) overflows f32)
    let (m, _, raw) = fixture("yolox_nano_128x160");
    let head = recognize(&m, None).unwrap().output.unwrap();
    let sp = spec(&m);
    let (n, row) = (raw.shape[1], raw.shape[2]);
    let mut crafted = raw.to_f32();
    let bg = background(&crafted, row, 3);
    assert_eq!(bg.len(), 3);
    crafted[bg[0] * row + 2] = 18.8;
    crafted[bg[1] * row + 3] = 80.0;
    crafted[bg[2] * row + 2] = 100.0;
    crafted[bg[2] * row + 3] = 100.0;
    let x = f32_npy(&[1, n, row], crafted.clone());
    // the unbounded decode (today's arithmetic) explodes on them ...
    let official = decode_with(&crafted, 1, n, &sp, DecodeOptions::OFFICIAL).unwrap();
    assert!(official
        .box_at(0, bg[2])
        .unwrap()
        .iter()
        .any(|v| v.is_infinite()));
    assert!(official.box_at(0, bg[0]).unwrap()[2] > 1e8);
    let params = NmsParams::default();
    let official_sel = nms(&official, &params).unwrap();
    assert!(!official_sel.is_empty());
    let m_side = sp.input_h.max(sp.input_w) as f32;
    // strides 8/16/32 at 128x160: 320, 80 and 20 anchors
    let stride_at = |i: usize| {
        if i < 320 {
            8
        } else if i < 400 {
            16
        } else {
            32
        }
    };
    assert_eq!(n, 420);
    for layout in layouts() {
        for normalize in [false, true] {
            let mm = merged(
                &m,
                layout,
                &MergeOptions {
                    normalize_boxes: normalize,
                    ..Default::default()
                },
            );
            let cut = head_as_input(&mm, &head, &[1, n as i64, row as i64]);
            let names = appended_tensors(&cut);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let outs = postmerge::run::run_once(&cut, &[&x], &refs).unwrap();
            // ... the appended graph does not: every float tensor is finite, and no box
            // coordinate exceeds half the bound (4·max(H, W)) beyond the input
            let limit = if normalize { 4.5 } else { 3.5 * m_side };
            for (name, t) in &outs {
                if let Some(v) = t.as_f32() {
                    assert!(
                        v.iter().all(|x| x.is_finite()),
                        "{} normalize={normalize}: `{name}` has a non-finite value",
                        layout.name()
                    );
                    if name.contains("Concat") || name == "boxes" || name == "det_boxes" {
                        let mx = v.iter().fold(0f32, |a, b| a.max(b.abs()));
                        assert!(mx <= limit, "{}: `{name}` reaches {mx}", layout.name());
                    }
                }
            }
            let scale = |d: &mut postmerge::postprocess::Decoded| {
                if normalize {
                    for b in d.boxes.chunks_mut(4) {
                        b[0] /= sp.input_w as f32;
                        b[1] /= sp.input_h as f32;
                        b[2] /= sp.input_w as f32;
                        b[3] /= sp.input_h as f32;
                    }
                }
            };
            let tol = Tolerance {
                box_px: if normalize { 1e-5 } else { 1e-3 },
                ..Tolerance::default()
            };
            if layout == Layout::Decoded {
                // every other anchor's box is the unbounded decode's; the three are bounded
                let got = &outs.iter().find(|(k, _)| k == "boxes").unwrap().1.to_f32();
                let mut want = official.clone();
                scale(&mut want);
                for i in 0..n {
                    let (g, w) = (&got[i * 4..i * 4 + 4], &want.boxes[i * 4..i * 4 + 4]);
                    let l = log_size_bound(sp.input_h, sp.input_w, stride_at(i));
                    let r = &crafted[i * row..(i + 1) * row];
                    if r[2] > l || r[3] > l {
                        // bounded: the crafted three and the fixture's own oversized background
                        // anchors, none of them a candidate
                        assert!(r[5..].iter().all(|&c| r[4] * c <= 0.25), "anchor {i}");
                        let bw = (g[2] - g[0]) * if normalize { sp.input_w as f32 } else { 1.0 };
                        let bh = (g[3] - g[1]) * if normalize { sp.input_h as f32 } else { 1.0 };
                        assert!(bw <= 4.0 * m_side * 1.0001 && bh <= 4.0 * m_side * 1.0001);
                    } else {
                        for (a, b) in g.iter().zip(w) {
                            assert!((a - b).abs() <= tol.box_px, "anchor {i}: {g:?} vs {w:?}");
                        }
                    }
                }
                // the bounded anchors reach exactly the bound in the dimension that was huge
                let b0 = &got[bg[0] * 4..bg[0] * 4 + 4];
                let w0 = (b0[2] - b0[0]) * if normalize { sp.input_w as f32 } else { 1.0 };
                let s0 = stride_at(bg[0]);
                let want_w = log_size_bound(sp.input_h, sp.input_w, s0).exp() * s0 as f32;
                assert!((w0 - want_w).abs() <= 1e-2 * want_w, "{w0} vs {want_w}");
                assert!((want_w - 4.0 * m_side).abs() <= 1e-3 * m_side);
            } else {
                // detections: exactly the unbounded reference's (the three are not candidates)
                let mut d = official.clone();
                scale(&mut d);
                let expected = render(&layout, &d, &official_sel).unwrap();
                let cmp = compare_outputs(&layout, &expected, &outs, tol).unwrap();
                assert!(
                    cmp.ok(),
                    "{} normalize={normalize}: {cmp:#?}",
                    layout.name()
                );
            }
        }
    }
}

#[test]
fn inverted_boxes_come_out_ordered_and_nms_selects_the_same() {
    // Gold-YOLO with random weights emits negative widths/heights (issue 12: 426 of 4621 boxes);
    // the fixture's head output with the sizes of every third anchor negated (w, h or both),
    // candidates included, fed to the appended post-process in tract
    let (m, _, raw) = fixture("goldlike_128x160");
    let head = recognize(&m, None).unwrap().output.unwrap();
    let sp = spec(&m);
    let (n, row) = (raw.shape[1], raw.shape[2]);
    let mut crafted = raw.to_f32();
    let mut inverted_candidates = 0;
    for i in (0..n).step_by(3) {
        let r = &mut crafted[i * row..(i + 1) * row];
        match i % 9 {
            0 => r[2] = -r[2],
            3 => r[3] = -r[3],
            _ => {
                r[2] = -r[2];
                r[3] = -r[3]
            }
        }
        if r[5..].iter().any(|&c| r[4] * c > 0.25) {
            inverted_candidates += 1;
        }
    }
    assert!(
        inverted_candidates >= 3,
        "{inverted_candidates} inverted candidates"
    );
    let x = f32_npy(&[1, n, row], crafted.clone());
    let ordered = decode(&crafted, 1, n, &sp).unwrap();
    let plain = decode_with(&crafted, 1, n, &sp, DecodeOptions::OFFICIAL).unwrap();
    for agnostic in [false, true] {
        let params = NmsParams {
            agnostic,
            ..NmsParams::default()
        };
        // ONNX NMS orders corners itself: the same selections, in the same order
        let sel = nms(&ordered, &params).unwrap();
        assert_eq!(sel, nms(&plain, &params).unwrap());
        assert!(!sel.is_empty());
        for layout in layouts() {
            let mm = merged(
                &m,
                layout,
                &MergeOptions {
                    agnostic,
                    ..Default::default()
                },
            );
            let cut = head_as_input(&mm, &head, &[1, n as i64, row as i64]);
            let outs = postmerge::run::run_once(&cut, &[&x], &[]).unwrap();
            let expected = render(&layout, &ordered, &sel).unwrap();
            let cmp = compare_outputs(&layout, &expected, &outs, Tolerance::default()).unwrap();
            assert!(cmp.ok(), "{}: {cmp:#?}", layout.name());
            let dets = postmerge::postprocess::detections_from_outputs(
                &layout,
                &outs
                    .iter()
                    .map(|(n, t)| postmerge::postprocess::OutputTensor {
                        name: n.clone(),
                        tensor: t.clone(),
                    })
                    .collect::<Vec<_>>(),
            );
            match layout {
                Layout::Decoded => {
                    let b = outs[0].1.to_f32();
                    assert!(b.chunks(4).all(|c| c[0] <= c[2] && c[1] <= c[3]));
                }
                _ => {
                    let dets = dets.unwrap();
                    assert_eq!(dets.len(), sel.len().min(100));
                    assert!(dets.iter().all(|d| d.x1 <= d.x2 && d.y1 <= d.y2));
                }
            }
        }
    }
}

/// Every merged output of the fixtures: no initializer nobody reads, and boxes with x1 <= x2,
/// y1 <= y2 — every layout, const and input thresholds, agnostic, `merge --quant-prep` and
/// `quant-prep`.
#[test]
fn every_layout_has_no_unused_initializer_and_no_inverted_boxes() {
    let (mut checked, mut want) = (0, 0);
    for stem in [
        "yolox_nano_128x160",
        "goldlike_128x160",
        "yolox_nano_640x640_decode",
    ] {
        let (m, input, _) = fixture(stem);
        let mut lays = layouts();
        lays.push(Layout::Trt { max_det: 3 });
        let variants: &[&str] = if stem.contains("640") {
            // a 640x640 run is slow in a debug build: the variants that change the decode
            &["plain", "merge --quant-prep", "quant-prep"]
        } else {
            &[
                "plain",
                "inputs",
                "agnostic",
                "merge --quant-prep",
                "quant-prep",
            ]
        };
        for layout in lays {
            for &variant in variants {
                if variant == "quant-prep" && layout != Layout::Decoded {
                    continue;
                }
                want += 1;
                let opts = MergeOptions {
                    thresholds: if variant == "inputs" {
                        Thresholds::Inputs
                    } else {
                        Thresholds::Const
                    },
                    agnostic: variant == "agnostic",
                    normalize_boxes: variant.contains("quant-prep"),
                    ..Default::default()
                };
                let mut mm = merged(&m, layout, &opts);
                if variant.contains("quant-prep") {
                    postmerge::passes::quant_prep::quant_prep(&mut mm, &Default::default())
                        .unwrap();
                }
                let what = format!("{stem} {} {variant}", layout.name());
                let g = mm.graph();
                let read: std::collections::HashSet<String> = g
                    .node
                    .iter()
                    .flat_map(postmerge::graph::node_reads)
                    .chain(g.output.iter().map(|o| o.name().to_string()))
                    .collect();
                let unused: Vec<&str> = g
                    .initializer
                    .iter()
                    .map(|t| t.name())
                    .filter(|n| !read.contains(*n))
                    .collect();
                assert!(unused.is_empty(), "{what}: unused initializers {unused:?}");
                let outs = postmerge::run::run_once(&mm, &[&input], &[]).unwrap();
                let boxes: Vec<[f32; 4]> = match layout {
                    Layout::Decoded => outs[0]
                        .1
                        .to_f32()
                        .chunks(4)
                        .map(|c| [c[0], c[1], c[2], c[3]])
                        .collect(),
                    _ => postmerge::postprocess::detections_from_outputs(
                        &layout,
                        &outs
                            .iter()
                            .map(|(n, t)| postmerge::postprocess::OutputTensor {
                                name: n.clone(),
                                tensor: t.clone(),
                            })
                            .collect::<Vec<_>>(),
                    )
                    .unwrap()
                    .iter()
                    .map(|d| d.bbox())
                    .collect(),
                };
                assert!(
                    !boxes.is_empty(),
                    "{what}: no boxes, the test would be vacuous"
                );
                assert!(
                    boxes.iter().all(|b| b[0] <= b[2] && b[1] <= b[3]),
                    "{what}: inverted box"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, want);
    assert_eq!(want, 2 * (6 * 4 + 1) + 6 * 2 + 1);
}

/// TFLite's NMS (what onnx2tf makes of NonMaxSuppression) returns max_per_class rows per class,
/// the unused ones pointing at box 0 with a score of ~1e-7. Fed such padded selections, every
/// layout gives exactly the real detections; fed the real ones (onnxruntime, tract), the same.
#[test]
fn padded_nms_selections_are_dropped_in_every_layout() {
    for (stem, lays) in [
        (
            "yolox_nano_128x160",
            vec![
                Layout::Pinto,
                Layout::Trt { max_det: 100 },
                Layout::Ultralytics { max_det: 100 },
                Layout::Trt { max_det: 3 },
            ],
        ),
        ("goldlike_128x160", vec![Layout::PintoGoldYolo]),
    ] {
        let (m, input, _) = fixture(stem);
        let head = recognize(&m, None).unwrap().output.unwrap();
        let sp = spec(&m);
        for layout in lays {
            for thresholds in [Thresholds::Const, Thresholds::Inputs] {
                let opts = MergeOptions {
                    thresholds,
                    ..Default::default()
                };
                let mm = merged(&m, layout, &opts);
                let outs = postmerge::run::run_once(&mm, &[&input], &[&head]).unwrap();
                let h = &outs.iter().find(|(n, _)| *n == head).unwrap().1;
                let dec = decode(h.as_f32().unwrap(), 1, h.shape[1], &sp).unwrap();
                let params = NmsParams::default();
                let sel = nms(&dec, &params).unwrap();
                assert!(sel.len() >= 2, "{stem}: {} selections", sel.len());
                // box 0 is below the threshold in every class, as in TFLite's padding
                assert!(dec.scores_of(0, 0).unwrap().iter().all(|&s| s <= 0.25));
                // TFLite order: per class, the real selections, then padding up to the cap
                let mut padded = Vec::new();
                let mut real = Vec::new();
                for c in 0..sp.num_classes {
                    let rows: Vec<_> = sel.iter().filter(|s| s.class == c).collect();
                    for s in &rows {
                        padded.extend([0i64, c as i64, s.box_index as i64]);
                        real.extend([0i64, c as i64, s.box_index as i64]);
                    }
                    for _ in rows.len()..20 {
                        padded.extend([0i64, c as i64, 0]);
                    }
                }
                let expected = render(&layout, &dec, &sel).unwrap();
                let cut = nms_as_input(&mm);
                for (what, rows) in [("padded", &padded), ("real", &real)] {
                    let s = Npy::new(vec![rows.len() / 3, 3], NpyData::I64(rows.clone())).unwrap();
                    // (tract reads initializer-backed inputs as constants: not fed)
                    let got = postmerge::run::run_once(&cut, &[&input, &s], &[]).unwrap();
                    let cmp =
                        compare_outputs(&layout, &expected, &got, Tolerance::default()).unwrap();
                    assert!(cmp.ok(), "{stem} {} {what}: {cmp:#?}", layout.name());
                    if let Layout::Trt { max_det } = layout {
                        let nd = got[0].1.to_i64().unwrap();
                        assert_eq!(nd, vec![sel.len().min(max_det) as i64]);
                    }
                }
                // with --thresholds inputs the filter reads the threshold input: given 0.5, only
                // the selections above 0.5 remain
                if thresholds == Thresholds::Inputs {
                    // the threshold as a plain input (its default initializer removed, so tract
                    // takes it from the caller); the NMS parameters are dead without the NMS node
                    let mut cut2 = cut.clone();
                    let g = cut2.graph_mut();
                    g.initializer.retain(|t| !t.name().starts_with("main01_"));
                    g.input.retain(|i| {
                        !matches!(
                            i.name(),
                            "main01_max_output_boxes_per_class" | "main01_iou_threshold"
                        )
                    });
                    assert_eq!(g.input[1].name(), "main01_score_threshold");
                    let score = f32_npy(&[1], vec![0.5]);
                    let s =
                        Npy::new(vec![padded.len() / 3, 3], NpyData::I64(padded.clone())).unwrap();
                    let got = postmerge::run::run_once(&cut2, &[&input, &score, &s], &[]).unwrap();
                    let high: Vec<_> = sel
                        .iter()
                        .copied()
                        .filter(|s| dec.score(0, s.box_index, s.class).unwrap() > 0.5)
                        .collect();
                    assert!(!high.is_empty() && high.len() < sel.len());
                    let expected = render(&layout, &dec, &high).unwrap();
                    let cmp =
                        compare_outputs(&layout, &expected, &got, Tolerance::default()).unwrap();
                    assert!(cmp.ok(), "{stem} {} input 0.5: {cmp:#?}", layout.name());
                }
            }
        }
    }
}
