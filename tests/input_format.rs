//! `--input-format nhwc-u8-bgr|nhwc-u8-rgb` (merge, resize, quant-prep): the model takes uint8
//! NHWC frames and does Cast, Transpose, channel order and the family's scale in the graph.
//! Everything runs on the project's own fixtures (no ../shared).
//!
//! The oracle of "the same picture" is the float model fed `imageio::preprocess` of a photo (the
//! family's official convention, tested against the official refs in tests/check.rs) and the
//! uint8 model fed the letterboxed frame of the same photo: their outputs must be equal.

mod common;

use std::path::{Path, PathBuf};

use postmerge::head::Family;
use postmerge::imageio::{frame, letterbox, load_image, preprocess, preprocess_frame};
use postmerge::model::Model;
use postmerge::npy::Npy;
use postmerge::passes::input_format::{input_format, InputFormat};
use postmerge::run::run_once;

const BGR: InputFormat = InputFormat::NhwcU8Bgr;
const RGB: InputFormat = InputFormat::NhwcU8Rgb;

fn fixture(name: &str) -> PathBuf {
    common::fixtures().join(name)
}

fn photo() -> image::RgbImage {
    load_image(&fixture("shapes/sample_1.png")).unwrap()
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = common::run(args);
    assert_eq!(code, 0, "postmerge {args:?}: {err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `merge SRC` (pinto/pinto-goldyolo) with `extra` flags into DIR/NAME.
fn merged(src: &Path, dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec!["merge", s(src), "-o", s(&out)];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x == y || (x.is_nan() && y.is_nan()) {
                0.0
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f32::max)
}

/// Every output of `a` on `xa` equals the same output of `b` on `xb`: bit for bit for YOLOX (no
/// arithmetic but a cast), within `rel` of the output's range for Gold-YOLO (tract folds the
/// prepended `Div(255)` into its plan differently than the float model's input arrives: measured
/// 1.9e-7 relative on the head), with the same number of rows.
fn assert_same_outputs(
    a: &Model,
    xa: &Npy,
    b: &Model,
    xb: &Npy,
    extra: &[&str],
    rel: f32,
    what: &str,
) {
    let oa = run_once(a, &[xa], extra).unwrap();
    let ob = run_once(b, &[xb], extra).unwrap();
    assert_eq!(oa.len(), ob.len(), "{what}");
    for ((na, ta), (nb, tb)) in oa.iter().zip(&ob) {
        assert_eq!(na, nb, "{what}");
        assert_eq!(ta.shape, tb.shape, "{what}: output `{na}`");
        let (va, vb) = (ta.to_f32(), tb.to_f32());
        let d = max_abs(&va, &vb);
        let range = va
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            d <= rel * range,
            "{what}: output `{na}` differs by {d} (range {range})"
        );
    }
}

/// The tolerance of [`assert_same_outputs`] for a family.
fn tol(fam: Family) -> f32 {
    if fam == Family::GoldYolo {
        1e-5
    } else {
        0.0
    }
}

fn family_of(stem: &str) -> Family {
    if stem.starts_with("goldlike") {
        Family::GoldYolo
    } else {
        Family::YoloxRaw
    }
}

#[test]
fn frame_models_give_the_float_models_outputs_on_the_same_photo() {
    // YOLOX raw and decoded heads and the Gold-YOLO-like fixture, both channel orders: the merged
    // uint8 model on the letterboxed frame == the merged float model on the float tensor, for the
    // final detections and the head tensor inside
    let dir = tempfile::tempdir().unwrap();
    let img = photo();
    for stem in [
        "yolox_nano_128x160",
        "yolox_nano_640x640_decode",
        "goldlike_128x160",
    ] {
        let src = fixture(&format!("{stem}.onnx"));
        let fam = family_of(stem);
        let head = postmerge::head::recognize(&Model::load(&src).unwrap(), None).unwrap();
        let (h, w) = (head.height.unwrap() as u32, head.width.unwrap() as u32);
        let head_out = head.output.clone().unwrap();
        let float = Model::load(&merged(&src, dir.path(), &format!("{stem}_f.onnx"), &[])).unwrap();
        let (x, _) = preprocess(&img, fam, h, w).unwrap();
        let mut dets = 0;
        for fmt in [BGR, RGB] {
            let p = merged(
                &src,
                dir.path(),
                &format!("{stem}_{fmt}.onnx"),
                &["--input-format", fmt.name()],
            );
            let u8m = Model::load(&p).unwrap();
            assert_eq!(input_format(&u8m).unwrap(), fmt);
            let (f, _) = preprocess_frame(&img, fam, h, w, fmt).unwrap();
            assert_eq!(f.shape, vec![1, h as usize, w as usize, 3]);
            assert_same_outputs(
                &float,
                &x,
                &u8m,
                &f,
                &[&head_out],
                tol(fam),
                &format!("{stem} {fmt}"),
            );
            let outs = run_once(&u8m, &[&f], &[]).unwrap();
            dets = outs[0].1.shape[0];
        }
        // the comparison is not one of two empty outputs
        assert!(dets > 0, "{stem}: no detections on the photo");
    }
}

#[test]
fn the_wrong_channel_order_changes_the_output() {
    // a BGR model fed the RGB frame (and vice versa) must not give the right answer: the
    // prepended channel order is really applied (the photo has coloured shapes)
    let dir = tempfile::tempdir().unwrap();
    let img = photo();
    for stem in ["yolox_nano_128x160", "goldlike_128x160"] {
        let src = fixture(&format!("{stem}.onnx"));
        let fam = family_of(stem);
        let (canvas, _) = letterbox(&img, fam, 128, 160).unwrap();
        let (bgr, rgb) = (
            frame(&canvas, true).unwrap(),
            frame(&canvas, false).unwrap(),
        );
        assert_ne!(bgr.to_f32(), rgb.to_f32(), "the photo must have colours");
        let orig = Model::load(&src).unwrap();
        let head_out = postmerge::head::recognize(&orig, None)
            .unwrap()
            .output
            .unwrap();
        let head_out = head_out.as_str();
        let (x, _) = preprocess(&img, fam, 128, 160).unwrap();
        let want = run_once(&orig, &[&x], &[]).unwrap();
        let want = &want.iter().find(|(n, _)| n == head_out).unwrap().1;
        for (fmt, right, wrong) in [(BGR, &bgr, &rgb), (RGB, &rgb, &bgr)] {
            let p = dir.path().join(format!("{stem}_{fmt}.onnx"));
            ok(&[
                "resize",
                s(&src),
                "-o",
                s(&p),
                "--size",
                "128x160",
                "--input-format",
                fmt.name(),
            ]);
            let m = Model::load(&p).unwrap();
            let got = |f: &Npy| {
                let o = run_once(&m, &[f], &[]).unwrap();
                o.into_iter()
                    .find(|(n, _)| n == head_out)
                    .unwrap()
                    .1
                    .to_f32()
            };
            let (r, w) = (got(right), got(wrong));
            let range = want.to_f32().iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                max_abs(&r, &want.to_f32()) <= tol(fam) * range,
                "{stem} {fmt}: right order"
            );
            let d = max_abs(&w, &want.to_f32());
            assert!(
                d > 1e-2,
                "{stem} {fmt}: the wrong channel order changed the head by only {d}"
            );
        }
    }
}

/// Op types of the nodes the pass prepended (named `postmerge/input_*`), in graph order.
fn prepended_ops(m: &Model) -> Vec<String> {
    m.graph()
        .node
        .iter()
        .filter(|n| n.name().starts_with("postmerge/input_"))
        .map(|n| n.op_type().to_string())
        .collect()
}

#[test]
fn each_format_prepends_the_family_convention() {
    let dir = tempfile::tempdir().unwrap();
    for (stem, fmt, ops) in [
        ("yolox_nano_128x160", BGR, &["Cast", "Transpose"][..]),
        (
            "yolox_nano_128x160",
            RGB,
            &["Cast", "Transpose", "Gather"][..],
        ),
        ("goldlike_128x160", RGB, &["Cast", "Transpose", "Div"][..]),
        (
            "goldlike_128x160",
            BGR,
            &["Cast", "Transpose", "Gather", "Div"][..],
        ),
    ] {
        let src = fixture(&format!("{stem}.onnx"));
        let p = merged(&src, dir.path(), "m.onnx", &["--input-format", fmt.name()]);
        let m = Model::load(&p).unwrap();
        assert_eq!(prepended_ops(&m), ops, "{stem} {fmt}");
        // they come first, and the first reads the graph input, which kept its name
        let g = m.graph();
        assert_eq!(g.node[0].input[0], "images");
        assert_eq!(g.node[0].op_type(), "Cast");
        let i = &g.input[0];
        assert_eq!(i.name(), "images");
        assert_eq!(postmerge::shape::vi_dtype(i), Some(2)); // uint8
        let shape = postmerge::shape::vi_shape(i).unwrap();
        assert_eq!(postmerge::shape::fmt_shape(&shape), "[1,128,160,3]");
        // inspect reports it, as text and JSON
        let text = ok(&["inspect", s(&p)]);
        assert!(
            text.contains(&format!("input format: {fmt} (uint8 frame [1,128,160,3]")),
            "{text}"
        );
        assert!(text.contains("size:     128x160 (HxW)"), "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&ok(&["inspect", s(&p), "--json"])).unwrap();
        assert!(
            v["input_format"].as_str().unwrap().starts_with(fmt.name()),
            "{v}"
        );
    }
    // the default changes nothing: byte-identical to a merge without the flag
    let src = fixture("yolox_nano_128x160.onnx");
    let a = merged(&src, dir.path(), "a.onnx", &[]);
    let b = merged(&src, dir.path(), "b.onnx", &["--input-format", "nchw-f32"]);
    assert_eq!(common::file_hash(&a), common::file_hash(&b));
    let text = ok(&["inspect", s(&a)]);
    assert!(!text.contains("input format"), "{text}");
}

#[test]
fn resize_with_input_format_equals_the_native_export() {
    let dir = tempfile::tempdir().unwrap();
    let img = photo();
    let src = fixture("goldlike_640x640.onnx");
    let native = Model::load(&fixture("goldlike_128x160.onnx")).unwrap();
    let (x, _) = preprocess(&img, Family::GoldYolo, 128, 160).unwrap();
    let float = dir.path().join("f.onnx");
    ok(&["resize", s(&src), "-o", s(&float), "--size", "128x160"]);
    let float = Model::load(&float).unwrap();
    for fmt in [RGB, BGR] {
        let p = dir.path().join(format!("{fmt}.onnx"));
        let out = ok(&[
            "resize",
            s(&src),
            "-o",
            s(&p),
            "--size",
            "128x160",
            "--input-format",
            fmt.name(),
        ]);
        assert!(
            out.contains(&format!("takes uint8 {fmt} frames [1,128,160,3]")),
            "{out}"
        );
        let m = Model::load(&p).unwrap();
        let (f, _) = preprocess_frame(&img, Family::GoldYolo, 128, 160, fmt).unwrap();
        assert_same_outputs(
            &float,
            &x,
            &m,
            &f,
            &[],
            tol(Family::GoldYolo),
            &format!("resize {fmt}"),
        );
        // and the resized float model is the native export (same tolerance as tests/resize.rs)
        let a = run_once(&m, &[&f], &[]).unwrap();
        let b = run_once(&native, &[&x], &[]).unwrap();
        let (a, b) = (a[0].1.to_f32(), b[0].1.to_f32());
        let range = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max_abs(&a, &b) / range <= 1e-4, "{fmt} vs native");
        // the resized raw head is still recognized (inspect, detect read the frame's H and W)
        let head = postmerge::head::recognize(&m, None).unwrap();
        assert_eq!((head.height, head.width), (Some(128), Some(160)));
        assert_eq!(head.family, Family::GoldYolo);
    }
    // a symbolic batch stays symbolic, and two frames run at once
    let p = dir.path().join("dyn.onnx");
    ok(&[
        "resize",
        s(&src),
        "-o",
        s(&p),
        "--size",
        "128x160",
        "--batch",
        "dynamic",
        "--input-format",
        "nhwc-u8-rgb",
    ]);
    let m = Model::load(&p).unwrap();
    let shape = postmerge::shape::vi_shape(&m.graph().input[0]).unwrap();
    assert!(shape[0].known().is_none(), "{shape:?}");
    assert_eq!(postmerge::shape::fmt_shape(&shape[1..]), "[128,160,3]");
    let (f, _) = preprocess_frame(&img, Family::GoldYolo, 128, 160, RGB).unwrap();
    let mut two = f.to_f32().iter().map(|&v| v as u8).collect::<Vec<u8>>();
    two.extend(two.clone());
    let two = Npy::new(vec![2, 128, 160, 3], postmerge::npy::NpyData::U8(two)).unwrap();
    let o = run_once(&m, &[&two], &[]).unwrap();
    assert_eq!(o[0].1.shape[0], 2);
    let v = o[0].1.to_f32();
    let (a, b) = v.split_at(v.len() / 2);
    assert_eq!(max_abs(a, b), 0.0);
}

#[test]
fn quant_prep_keeps_its_guarantees_with_a_frame_input() {
    let dir = tempfile::tempdir().unwrap();
    let img = photo();
    let src = fixture("yolox_nano_128x160.onnx");
    let q = dir.path().join("q.onnx");
    let p = dir.path().join("p.onnx");
    ok(&["quant-prep", s(&src), "-o", s(&q)]);
    ok(&[
        "quant-prep",
        s(&src),
        "-o",
        s(&p),
        "--input-format",
        "nhwc-u8-bgr",
    ]);
    let (qm, pm) = (Model::load(&q).unwrap(), Model::load(&p).unwrap());
    assert_eq!(postmerge::passes::default_opset(&pm.proto), 13);
    assert_eq!(prepended_ops(&pm), ["Cast", "Transpose"]);
    // value_info for every tensor a node writes that is not a graph output
    let g = pm.graph();
    let outs: Vec<&str> = g.output.iter().map(|o| o.name()).collect();
    let vis: std::collections::HashSet<&str> = g.value_info.iter().map(|v| v.name()).collect();
    for n in &g.node {
        for o in n.output.iter().filter(|o| !outs.contains(&o.as_str())) {
            assert!(
                vis.contains(o.as_str()),
                "no value_info for `{o}` of {}",
                n.name()
            );
        }
    }
    let cast_vi = g
        .value_info
        .iter()
        .find(|v| v.name() == g.node[0].output[0])
        .unwrap();
    assert_eq!(
        postmerge::shape::fmt_shape(&postmerge::shape::vi_shape(cast_vi).unwrap()),
        "[1,128,160,3]"
    );
    // the sidecar is the float model's: the preprocessing feeds the first Conv and is not excluded
    let side =
        |m: &Path| std::fs::read_to_string(m.with_extension("nodes_to_exclude.json")).unwrap();
    let (sq, sp) = (side(&q), side(&p));
    assert_eq!(sq, sp);
    let list: Vec<String> = serde_json::from_str(&sp).unwrap();
    assert!(!list.is_empty() && list.iter().all(|n| !n.starts_with("postmerge/input_")));
    // and the numbers are the float model's
    let (x, _) = preprocess(&img, Family::YoloxRaw, 128, 160).unwrap();
    let (f, _) = preprocess_frame(&img, Family::YoloxRaw, 128, 160, BGR).unwrap();
    assert_same_outputs(&qm, &x, &pm, &f, &[], 0.0, "quant-prep");
    // merge --quant-prep --input-format, checked on the photo
    let mq = dir.path().join("mq.onnx");
    let out = ok(&[
        "merge",
        s(&src),
        "-o",
        s(&mq),
        "--quant-prep",
        "--input-format",
        "nhwc-u8-rgb",
        "--check",
        "--image",
        s(&fixture("shapes/sample_1.png")),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["check"]["ok"], true, "{out}");
    assert_eq!(v[0]["quant_prep"]["opset_to"], 13);
}

#[test]
fn check_and_detect_understand_frame_models() {
    let dir = tempfile::tempdir().unwrap();
    for stem in ["yolox_nano_128x160", "goldlike_128x160"] {
        let src = fixture(&format!("{stem}.onnx"));
        for fmt in [BGR, RGB] {
            let u8p = merged(
                &src,
                dir.path(),
                "u.onnx",
                &["--input-format", fmt.name(), "--layout", "trt"],
            );
            let fp = merged(&src, dir.path(), "f.onnx", &["--layout", "trt"]);
            // synthetic input and a photo: the head step passes (exactly equal for YOLOX) and
            // every step has the verdict it has for the float model (goldlike on sample_1.png
            // fails step 3 for the float model too: its random weights give near-tied boxes)
            for extra in [
                &[][..],
                &["--image", s(&fixture("shapes/sample_1.png"))][..],
            ] {
                let run = |m: &Path| {
                    let mut args = vec!["check", s(&src), s(m), "--json"];
                    args.extend_from_slice(extra);
                    let (code, out, err) = common::run(&args);
                    assert!(code == 0 || code == 1, "{stem} {fmt} {extra:?}: {err}");
                    (
                        code,
                        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
                    )
                };
                let (code, v) = run(&u8p);
                let (fcode, fv) = run(&fp);
                assert!(
                    v["input"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("uint8 {fmt} frame")),
                    "{v}"
                );
                let head = &v["steps"][0];
                assert_eq!(head["ok"], true, "{v}");
                let verdicts = |v: &serde_json::Value| -> Vec<serde_json::Value> {
                    v["steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["ok"].clone())
                        .collect()
                };
                assert_eq!(verdicts(&v), verdicts(&fv), "{stem} {fmt} {extra:?}: {v}");
                assert_eq!(code, fcode);
                if stem.starts_with("yolox") {
                    // nothing but a cast: exactly equal, and every step passes
                    assert!(
                        head["detail"].as_str().unwrap().contains("max |d| 0.000e0"),
                        "{head}"
                    );
                    assert_eq!(code, 0, "{v}");
                }
                if extra.is_empty() {
                    assert_eq!(code, 0, "{stem} {fmt} synthetic: {v}");
                }
            }
            // detect feeds the letterboxed frame: same detections as the float model
            let d = |m: &Path| {
                let png = dir.path().join("d.png");
                let out = ok(&[
                    "detect",
                    s(m),
                    s(&fixture("shapes/sample_1.png")),
                    "-o",
                    s(&png),
                    "--json",
                ]);
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                (v["detections"].clone(), v["input_format"].clone())
            };
            let (du, fu) = d(&u8p);
            let (df, ff) = d(&fp);
            if stem.starts_with("yolox") {
                assert_eq!(du, df, "{stem} {fmt}");
            } else {
                // Gold-YOLO: the same detections, in the same order, to float rounding
                let (du, df) = (du.as_array().unwrap(), df.as_array().unwrap());
                assert_eq!(du.len(), df.len(), "{stem} {fmt}");
                for (a, b) in du.iter().zip(df) {
                    assert_eq!(a["class"], b["class"], "{stem} {fmt}");
                    let f = |v: &serde_json::Value| v.as_f64().unwrap();
                    assert!(
                        (f(&a["score"]) - f(&b["score"])).abs() <= 1e-4,
                        "{a} vs {b}"
                    );
                    for k in 0..4 {
                        assert!(
                            (f(&a["box_input"][k]) - f(&b["box_input"][k])).abs() <= 1e-2,
                            "{a} vs {b}"
                        );
                    }
                }
            }
            assert!(!du.as_array().unwrap().is_empty());
            assert_eq!(
                (fu.as_str(), ff.as_str()),
                (Some(fmt.name()), Some("nchw-f32"))
            );
        }
    }
}

#[test]
fn check_refuses_a_tensor_no_frame_gives() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("yolox_nano_128x160.onnx");
    let u8p = merged(
        &src,
        dir.path(),
        "u.onnx",
        &["--input-format", "nhwc-u8-bgr"],
    );
    let x = dir.path().join("x.npy");
    let v: Vec<f32> = (0..3 * 128 * 160).map(|i| (i % 7) as f32 + 0.5).collect();
    postmerge::npy::write_npy_file(
        &x,
        &Npy::new(vec![1, 3, 128, 160], postmerge::npy::NpyData::F32(v)).unwrap(),
    )
    .unwrap();
    let (code, _, err) = common::run(&["check", s(&src), s(&u8p), "--input", s(&x)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("MERGED takes uint8 frames") && err.contains("not a uint8 frame: value 0.5"),
        "{err}"
    );
}

#[test]
fn outputs_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    for (cmd, src, extra) in [
        (
            "merge",
            "goldlike_128x160.onnx",
            &["--input-format", "nhwc-u8-bgr"][..],
        ),
        (
            "resize",
            "yolox_nano_640x640.onnx",
            &["--size", "128x160", "--input-format", "nhwc-u8-rgb"][..],
        ),
        (
            "quant-prep",
            "yolox_nano_128x160.onnx",
            &["--input-format", "nhwc-u8-rgb"][..],
        ),
    ] {
        let mut hashes = Vec::new();
        for k in 0..2 {
            let out = dir.path().join(format!("{cmd}_{k}.onnx"));
            let mut args = vec![cmd, "x", "-o", s(&out)];
            let src = fixture(src);
            args[1] = s(&src);
            args.extend_from_slice(extra);
            ok(&args);
            hashes.push(common::file_hash(&out));
        }
        assert_eq!(hashes[0], hashes[1], "{cmd}");
    }
}

#[test]
fn bad_values_and_formatted_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("yolox_nano_128x160.onnx");
    for cmd in ["merge", "resize", "quant-prep"] {
        let out = dir.path().join("bad.onnx");
        let mut args = vec![cmd, s(&src), "-o", s(&out), "--input-format", "nhwc-u8"];
        if cmd == "resize" {
            args.extend(["--size", "128x160"]);
        }
        let (code, _, err) = common::run(&args);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("invalid value 'nhwc-u8'")
                && err.contains("nhwc-u8-bgr")
                && err.contains("nhwc-u8-rgb"),
            "{cmd}: {err}"
        );
        assert!(!out.exists());
    }
    // a model that already takes frames: merge/resize/quant-prep say what to do instead
    let u8p = merged(
        &src,
        dir.path(),
        "u.onnx",
        &["--input-format", "nhwc-u8-bgr"],
    );
    let r = dir.path().join("r.onnx");
    ok(&[
        "resize",
        s(&src),
        "-o",
        s(&r),
        "--size",
        "128x160",
        "--input-format",
        "nhwc-u8-bgr",
    ]);
    for (cmd, input) in [
        ("merge", &r),
        ("quant-prep", &r),
        ("resize", &r),
        ("merge", &u8p),
    ] {
        let out = dir.path().join("again.onnx");
        let mut args = vec![cmd, s(input), "-o", s(&out)];
        if cmd == "resize" {
            args.extend(["--size", "256x320"]);
        }
        let (code, _, err) = common::run(&args);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("already takes uint8 NHWC frames"),
            "{cmd}: {err}"
        );
        assert!(!out.exists());
    }
    // --help shows the flag with an example
    let help = ok(&["merge", "--help"]);
    assert!(
        help.contains("--input-format <FORMAT>") && help.contains("--input-format nhwc-u8-bgr"),
        "{help}"
    );
}
