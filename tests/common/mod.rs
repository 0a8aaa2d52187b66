//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared` beside the checkout (CI has it; tests that use it say so).
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
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

/// All shared models (../shared/models) and the project's fixtures.
pub fn all_models() -> Vec<PathBuf> {
    let mut v = onnx_files(&shared().join("models"));
    assert!(
        v.len() >= 10,
        "expected the shared corpus in ../shared/models"
    );
    v.extend(onnx_files(&fixtures()));
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
    s.add_filter(
        &regex_escape(
            &std::fs::canonicalize(shared())
                .unwrap()
                .display()
                .to_string(),
        ),
        "[shared]",
    );
    s.add_filter(&regex_escape(&shared().display().to_string()), "[shared]");
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

/// Every shared model and fixture that has a reference input (shared/ref/<stem>/input.npy or
/// tests/fixtures/ref/<stem>/input.npy), except the already merged `_e2e_ort` file and the
/// non-detector `rich_*` fixture: (model, input.npy).
pub fn models_with_inputs() -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    for p in all_models() {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        if stem.ends_with("_e2e_ort") || stem.starts_with("rich") {
            continue;
        }
        for dir in [
            shared().join("ref").join(&stem),
            fixtures().join("ref").join(&stem),
        ] {
            if dir.join("input.npy").exists() {
                v.push((p.clone(), dir.join("input.npy")));
                break;
            }
        }
    }
    assert!(v.len() >= 12, "{v:?}");
    v
}
