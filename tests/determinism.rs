//! Same inputs, same bytes: every writing subcommand is run twice, into two different folders
//! (same file names), and every file it wrote must be byte-identical between the runs. Multi-size
//! `resize` runs its sizes on parallel threads: its outputs must equal the single-size runs'.
//!
//! Fixtures only (tests/fixtures: the YOLOX-nano and Gold-YOLO-like 128x160 models, the
//! external-data model and the shapes scenes), so it runs on a bare clone.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn yolox() -> PathBuf {
    common::fixtures().join("yolox_nano_128x160.onnx")
}

fn goldlike() -> PathBuf {
    common::fixtures().join("goldlike_128x160.onnx")
}

/// Every file in `dir` (recursively) → its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// Run `args` (with `{out}` replaced by a fresh folder) twice; returns the files of the first run
/// after asserting both runs wrote the same names and bytes.
fn twice(label: &str, args: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut snaps = Vec::new();
    let keep = tempfile::tempdir().unwrap();
    for run in 0..2 {
        let dir = keep.path().join(format!("run{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        let a: Vec<String> = args
            .iter()
            .map(|s| s.replace("{out}", dir.to_str().unwrap()))
            .collect();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (code, out, err) = common::run(&a);
        assert_eq!(code, 0, "{label}: postmerge {a:?}\n{out}\n{err}");
        snaps.push(snapshot(&dir));
    }
    let (a, b) = (&snaps[0], &snaps[1]);
    assert!(!a.is_empty(), "{label}: nothing written");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{label}: different files written"
    );
    for (k, v) in a {
        assert!(
            v == &b[k],
            "{label}: `{k}` differs between two identical runs ({} vs {} bytes)",
            v.len(),
            b[k].len()
        );
        assert!(
            !k.contains(".postmerge-") && !k.ends_with(".tmp"),
            "{label}: temp file `{k}` left behind"
        );
    }
    snaps.swap_remove(0)
}

#[test]
fn convert_is_deterministic() {
    let y = yolox();
    let y = y.to_str().unwrap();
    let plain = twice("convert", &["convert", y, "-o", "{out}/m.onnx"]);
    // a lossless round trip: identical to the input, too
    assert_eq!(
        plain["m.onnx"],
        std::fs::read(yolox()).unwrap(),
        "convert is not byte-identical to its input"
    );
    let ext = twice(
        "convert --external-data",
        &[
            "convert",
            y,
            "-o",
            "{out}/m.onnx",
            "--external-data",
            "m.onnx.data",
        ],
    );
    assert_eq!(ext.len(), 2, "{:?}", ext.keys());
    let rich = common::fixtures().join("rich_640x640.onnx");
    twice(
        "convert (external data in)",
        &["convert", rich.to_str().unwrap(), "-o", "{out}/rich.onnx"],
    );
}

#[test]
fn merge_is_deterministic_for_every_layout() {
    let y = yolox();
    let g = goldlike();
    for (model, family) in [
        (y.to_str().unwrap(), "yolox"),
        (g.to_str().unwrap(), "goldlike"),
    ] {
        for layout in ["pinto", "pinto-goldyolo", "trt", "ultralytics", "decoded"] {
            twice(
                &format!("merge {family} {layout}"),
                &["merge", model, "-o", "{out}/m.onnx", "--layout", layout],
            );
        }
        twice(
            &format!("merge {family} agnostic inputs"),
            &[
                "merge",
                model,
                "-o",
                "{out}/m.onnx",
                "--agnostic",
                "--thresholds",
                "inputs",
                "--layout",
                "trt",
                "--max-det",
                "50",
            ],
        );
        twice(
            &format!("merge {family} --size x2"),
            &[
                "merge",
                model,
                "-o",
                "{out}/m_{h}x{w}.onnx",
                "--size",
                "96x96",
                "--size",
                "256x320",
            ],
        );
    }
}

#[test]
fn set_is_deterministic() {
    let d = tempfile::tempdir().unwrap();
    let merged = d.path().join("merged.onnx");
    let (code, _, err) = common::run(&[
        "merge",
        yolox().to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let m = merged.to_str().unwrap();
    twice(
        "set",
        &[
            "set",
            m,
            "-o",
            "{out}/s.onnx",
            "--score",
            "0.3",
            "--iou",
            "0.5",
            "--max-per-class",
            "7",
        ],
    );
    twice(
        "set score only",
        &["set", m, "-o", "{out}/s.onnx", "--score", "0.35"],
    );
}

#[test]
fn resize_is_deterministic_and_thread_independent() {
    for model in [yolox(), goldlike()] {
        let m = model.to_str().unwrap();
        let a = twice(
            "resize 96x96",
            &["resize", m, "-o", "{out}/r.onnx", "--size", "96x96"],
        );
        let b = twice(
            "resize 256x320",
            &["resize", m, "-o", "{out}/r.onnx", "--size", "256x320"],
        );
        // both sizes at once, on parallel threads: the same bytes as one at a time
        let both = twice(
            "resize x2",
            &[
                "resize",
                m,
                "-o",
                "{out}/r_{h}x{w}.onnx",
                "--size",
                "96x96",
                "--size",
                "256x320",
            ],
        );
        assert!(
            both["r_96x96.onnx"] == a["r.onnx"],
            "{m}: parallel 96x96 differs from the single run"
        );
        assert!(
            both["r_256x320.onnx"] == b["r.onnx"],
            "{m}: parallel 256x320 differs from the single run"
        );
        twice(
            "resize batch",
            &[
                "resize",
                m,
                "-o",
                "{out}/r.onnx",
                "--size",
                "128x160",
                "--batch",
                "dynamic",
            ],
        );
    }
}

#[test]
fn detect_png_is_deterministic() {
    let img = common::fixtures().join("shapes/sample_1.png");
    let d = tempfile::tempdir().unwrap();
    let merged = d.path().join("merged.onnx");
    let (code, _, err) = common::run(&[
        "merge",
        yolox().to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    twice(
        "detect merged",
        &[
            "detect",
            merged.to_str().unwrap(),
            img.to_str().unwrap(),
            "-o",
            "{out}/d.png",
        ],
    );
    twice(
        "detect raw",
        &[
            "detect",
            yolox().to_str().unwrap(),
            img.to_str().unwrap(),
            "-o",
            "{out}/d.png",
        ],
    );
    let img1 = common::fixtures().join("shapes/sample_2.png");
    twice(
        "detect goldlike raw",
        &[
            "detect",
            goldlike().to_str().unwrap(),
            img1.to_str().unwrap(),
            "-o",
            "{out}/d.png",
        ],
    );
}

#[test]
fn quant_prep_is_deterministic() {
    let (_, help, _) = common::run(&["--help"]);
    if !help
        .lines()
        .any(|l| l.trim_start().starts_with("quant-prep "))
    {
        eprintln!("quant-prep is not in this build: skipped");
        return;
    }
    let y = yolox();
    twice(
        "quant-prep",
        &["quant-prep", y.to_str().unwrap(), "-o", "{out}/q.onnx"],
    );
    twice(
        "quant-prep pinto",
        &[
            "quant-prep",
            y.to_str().unwrap(),
            "-o",
            "{out}/q.onnx",
            "--layout",
            "pinto",
        ],
    );
}

#[test]
fn json_reports_are_deterministic() {
    // not files, but pipelines diff them: inspect/diff JSON must not depend on hash-map order
    let y = yolox();
    let g = goldlike();
    for args in [
        vec!["inspect", g.to_str().unwrap(), "--json"],
        vec!["diff", y.to_str().unwrap(), g.to_str().unwrap(), "--json"],
    ] {
        let a = common::run(&args);
        let b = common::run(&args);
        assert_eq!(a.0, 0, "{args:?}: {}", a.2);
        assert_eq!(a.1, b.1, "{args:?}: stdout differs between two runs");
    }
}
