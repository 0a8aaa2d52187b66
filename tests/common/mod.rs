//! Helpers shared by the integration tests, and the ONE place that decides whether the suites over
//! the larger shared corpus run.
//!
//! `cargo test` on a bare clone uses only the project's own fixtures (`tests/fixtures`). The suites
//! over the shared corpus (real YOLOX / Gold-YOLO exports with onnxruntime references: a `shared/`
//! folder with `models/`, `ref/` and `images/`) run only when it is switched on explicitly:
//!
//! ```sh
//! POSTMERGE_SHARED=/path/to/shared cargo test        # `.ci/run` sets it to ../shared
//! ```
//!
//! Without the variable, every test (or part of a test) that needs the corpus prints ONE line to
//! stderr, `skipped (POSTMERGE_SHARED not set): <test>: <what was not run>`, and runs whatever it
//! can on the fixtures. With the variable set, a missing folder, a missing listed model or ref, or
//! a model file that is in none of the lists below makes the tests FAIL: a test never passes
//! because its data is absent, and a new file in the corpus is never dropped silently.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable naming the shared corpus folder (the one with `models/`, `ref/`,
/// `images/`).
pub const SHARED_VAR: &str = "POSTMERGE_SHARED";

/// The selection: `tests/shared_corpus.txt`, one `group stem [why]` line per shared model (also
/// read by tests/oracle/oracle_common.py). Groups: `supported` (the families postmerge merges:
/// every "every shared model" suite runs on these), `merged` (NMS already in the graph),
/// `set-aside` (a supported family left out of those suites, with the reason) and `unsupported`
/// (issue 15: tests/shared_corpus.rs asserts today's refusal).
pub const GROUPS: &[&str] = &["supported", "merged", "set-aside", "unsupported"];

/// `(group, stem, why)` for every line of tests/shared_corpus.txt.
pub fn corpus_list() -> Vec<(&'static str, &'static str, &'static str)> {
    const LIST: &str = include_str!("../shared_corpus.txt");
    LIST.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let group = words.next().unwrap();
            let stem = words.next().unwrap_or("");
            // the rest of the line, as written
            let why = l[l.find(stem).unwrap() + stem.len()..].trim();
            assert!(
                GROUPS.contains(&group) && !stem.is_empty(),
                "tests/shared_corpus.txt: bad line `{l}`"
            );
            (group, stem, why)
        })
        .collect()
}

/// The stems of one group of tests/shared_corpus.txt.
pub fn stems(group: &str) -> Vec<&'static str> {
    assert!(GROUPS.contains(&group), "unknown group {group}");
    corpus_list()
        .into_iter()
        .filter(|(g, _, _)| *g == group)
        .map(|(_, s, _)| s)
        .collect()
}

/// The shared corpus folder when `POSTMERGE_SHARED` is set (checked once: the folder, every
/// listed model with its `ref/<stem>/input.npy`, the photos, and no unlisted model). `None` when
/// the variable is unset or empty. Panics (the calling test fails) when it is set but the corpus
/// is missing or incomplete.
pub fn shared_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Result<Option<PathBuf>, String>> = OnceLock::new();
    let r = DIR.get_or_init(|| {
        let Some(v) = std::env::var_os(SHARED_VAR).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let dir = PathBuf::from(v);
        validate_shared(&dir)
            .map_err(|e| format!("{SHARED_VAR}={} is set but {e}", dir.display()))?;
        Ok(Some(std::fs::canonicalize(&dir).unwrap_or(dir)))
    });
    match r {
        Ok(d) => d.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn validate_shared(dir: &Path) -> Result<(), String> {
    for sub in ["models", "ref", "images"] {
        if !dir.join(sub).is_dir() {
            return Err(format!("`{}` is not a folder", dir.join(sub).display()));
        }
    }
    let listed = every_listed_stem();
    let mut missing = Vec::new();
    for stem in &listed {
        if !dir.join(format!("models/{stem}.onnx")).is_file() {
            missing.push(format!("models/{stem}.onnx"));
        }
        if !dir.join(format!("ref/{stem}/input.npy")).is_file() {
            missing.push(format!("ref/{stem}/input.npy"));
        }
    }
    for img in ["dog.jpg", "image1.jpg"] {
        if !dir.join("images").join(img).is_file() {
            missing.push(format!("images/{img}"));
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "the corpus is incomplete: missing {}",
            missing.join(", ")
        ));
    }
    let unlisted: Vec<String> = onnx_files(&dir.join("models"))
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|s| !listed.contains(s))
        .collect();
    if !unlisted.is_empty() {
        return Err(format!(
            "models/ has files no test group selects: {} (add each to tests/shared_corpus.txt)",
            unlisted.join(", ")
        ));
    }
    Ok(())
}

fn every_listed_stem() -> Vec<String> {
    let list = corpus_list();
    let mut stems: Vec<String> = list.iter().map(|(_, s, _)| s.to_string()).collect();
    stems.sort();
    stems.dedup();
    assert_eq!(
        stems.len(),
        list.len(),
        "tests/shared_corpus.txt lists a stem twice"
    );
    stems
}

/// The name of the running test (libtest names its threads after the tests).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

/// The shared corpus folder, or `None` after printing one line saying what this test does not
/// run. The line goes to the process's stderr directly (not through the test harness's capture),
/// so a plain `cargo test` shows it.
pub fn shared_or_skip(what: &str) -> Option<PathBuf> {
    let dir = shared_dir();
    if dir.is_none() {
        let line = format!("skipped ({SHARED_VAR} not set): {}: {what}\n", test_name());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    dir
}

/// The shared corpus folder, for a test that has already passed `shared_or_skip`. Panics if the
/// corpus is not switched on (a test that reaches this without the gate is a bug in the test).
pub fn shared() -> PathBuf {
    shared_dir().unwrap_or_else(|| {
        panic!(
            "{}: this test needs the shared corpus but has no `common::shared_or_skip` gate \
             (set {SHARED_VAR}=/path/to/shared)",
            test_name()
        )
    })
}

/// The project's own fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every .onnx file directly in `dir`, sorted.
pub fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().map(|x| x == "onnx").unwrap_or(false))
        .collect();
    v.sort();
    v
}

/// Paths of the given shared models (`models/<stem>.onnx`); the corpus must be switched on.
pub fn shared_models(stems: &[&str]) -> Vec<PathBuf> {
    let d = shared();
    stems
        .iter()
        .map(|s| d.join(format!("models/{s}.onnx")))
        .collect()
}

/// The fixtures, plus — when the shared corpus is switched on — the shared models postmerge
/// handles (groups `supported` and `merged`); without it, one line says the shared part was not
/// run.
pub fn all_models() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if shared_or_skip("the shared models (shared_corpus.txt: supported, merged); fixtures only")
        .is_some()
    {
        v.extend(shared_models(&stems("supported")));
        v.extend(shared_models(&stems("merged")));
    }
    let fixtures = onnx_files(&fixtures());
    assert!(fixtures.len() >= 7, "tests/fixtures: {fixtures:?}");
    v.extend(fixtures);
    v
}

/// Path to the built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_postmerge"))
}

/// Run the binary; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("run postmerge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// insta settings: snapshots in the top-level snapshots/<suite>, paths filtered.
pub fn settings(suite: &str) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("snapshots")
            .join(suite),
    );
    s.set_prepend_module_to_snapshot(false);
    if let Some(d) = shared_dir() {
        s.add_filter(&regex_escape(&d.display().to_string()), "[shared]");
        if let Some(v) = std::env::var_os(SHARED_VAR) {
            s.add_filter(
                &regex_escape(&PathBuf::from(v).display().to_string()),
                "[shared]",
            );
        }
    }
    s.add_filter(&regex_escape(env!("CARGO_MANIFEST_DIR")), "[repo]");
    s
}

fn regex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// sha256 of a file's bytes (to prove inputs are never modified).
pub fn file_hash(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let b = std::fs::read(p).unwrap_or_default();
    format!("{:x}", Sha256::digest(&b))
}

/// Every model of `all_models()` that has a reference input (shared/ref/<stem>/input.npy or
/// tests/fixtures/ref/<stem>/input.npy), except the already merged `_e2e_ort` file and the
/// non-detector `rich_*` fixture: (model, input.npy). The trained `shapes_128x160` fixture has no
/// ref; tests/shapes.rs and tests/subcommands.rs cover it on its scenes.
pub fn models_with_inputs() -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    let shared = shared_dir();
    for p in all_models() {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        if stem.ends_with("_e2e_ort") || stem.starts_with("rich") {
            continue;
        }
        let mut dirs = vec![fixtures().join("ref").join(&stem)];
        if let Some(s) = &shared {
            dirs.insert(0, s.join("ref").join(&stem));
        }
        for dir in dirs {
            if dir.join("input.npy").exists() {
                v.push((p.clone(), dir.join("input.npy")));
                break;
            }
        }
    }
    let from_shared = v.iter().filter(|(_, i)| !i.starts_with(fixtures())).count();
    let want = if shared.is_some() {
        stems("supported").len()
    } else {
        0
    };
    assert_eq!(
        from_shared, want,
        "shared models with a reference input: {v:?}"
    );
    assert!(
        v.len() - from_shared >= 5,
        "fixtures with a reference input: {v:?}"
    );
    v
}

/// The reference input and three different images made from it (mirrored, flipped, rolled): a
/// model that mixes or repeats the images of a batch cannot give each its own detections.
pub fn variants(x: &postmerge::npy::Npy) -> Vec<postmerge::npy::Npy> {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let v = x.to_f32();
    let at = |ch: usize, y: usize, xx: usize| v[(ch * h + y) * w + xx];
    let make = |f: &dyn Fn(usize, usize, usize) -> f32| {
        let mut d = Vec::with_capacity(v.len());
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    d.push(f(ch, y, xx));
                }
            }
        }
        postmerge::npy::Npy::new(vec![1, c, h, w], postmerge::npy::NpyData::F32(d)).unwrap()
    };
    vec![
        make(&|ch, y, xx| at(ch, y, xx)),
        make(&|ch, y, xx| at(ch, y, w - 1 - xx)),
        make(&|ch, y, xx| at(ch, h - 1 - y, xx)),
        make(&|ch, y, xx| at(ch, y, (xx + w - 37) % w)),
    ]
}

/// The images stacked into one batch.
pub fn stack(imgs: &[postmerge::npy::Npy]) -> postmerge::npy::Npy {
    let mut d = Vec::new();
    for i in imgs {
        d.extend(i.to_f32());
    }
    let mut shape = imgs[0].shape.clone();
    shape[0] = imgs.len();
    postmerge::npy::Npy::new(shape, postmerge::npy::NpyData::F32(d)).unwrap()
}
