//! Interrupted runs: `postmerge convert` (and a multi-size `resize`) of a ~200 MB model is killed
//! with SIGKILL at many points of its run; afterwards each destination must be either absent or a
//! complete, loadable file byte-identical to an uninterrupted run's — never truncated — because
//! every write goes through a temp file in the destination folder, fsync, then rename
//! (src/ir/model.rs `atomic_write`).
//!
//! What SIGKILL does leave: the temp file being written at that moment (`.postmerge-XXXXXX.tmp`,
//! removed by its destructor on every normal or error exit, but a killed process runs no code).
//! The test allows those and only those, reports how many leaked, and checks that a later run
//! into the same folder still succeeds and produces identical bytes.
//!
//! SIGINT and SIGTERM (Ctrl-C, a pipeline's timeout) are caught: the handler removes this process's
//! temp files and exits with 130, so those runs must leave no temp file at all, and a multi-size
//! run (all or nothing) leaves either every output or none.
//!
//! The big model is ../shared/models/yolox_nano_80c_128x160_op11.onnx (this test uses ../shared;
//! CI has it) plus an unused 200 MB zero initializer, written at test time into a temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;

const BIG_BYTES: usize = 200 << 20;

fn big_model(dir: &Path) -> PathBuf {
    let mut m = postmerge::onnx::ModelProto::decode(
        &std::fs::read(common::fixtures().join("yolox_nano_128x160.onnx")).unwrap()[..],
    )
    .unwrap();
    let zeros = postmerge::onnx::TensorProto {
        name: Some("interrupt_test_padding".into()),
        dims: vec![(BIG_BYTES / 4) as i64],
        data_type: Some(postmerge::onnx::tensor_proto::DataType::Float as i32),
        raw_data: Some(bytes::Bytes::from(vec![0u8; BIG_BYTES])),
        ..Default::default()
    };
    m.graph.as_mut().unwrap().initializer.push(zeros);
    let p = dir.join("big.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn is_temp(name: &str) -> bool {
    name.starts_with(".postmerge-") && name.ends_with(".tmp")
}

/// How a run is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Kill,
    /// `kill -<SIG>` (INT, TERM): caught by postmerge
    Signal(&'static str),
}

/// Start `args`, stop it after `after` (if still running); true if it was stopped.
fn run_and_kill(args: &[&str], after: Duration, stop: Stop) -> bool {
    let mut child = Command::new(common::bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{args:?} failed on its own: {st}");
            return false;
        }
        if t0.elapsed() >= after {
            match stop {
                Stop::Kill => child.kill().unwrap(), // SIGKILL on unix
                Stop::Signal(sig) => {
                    let ok = Command::new("kill")
                        .arg(format!("-{sig}"))
                        .arg(child.id().to_string())
                        .status()
                        .unwrap();
                    assert!(ok.success());
                }
            }
            let st = child.wait().unwrap();
            if let Stop::Signal(sig) = stop {
                // 130 from the handler; 0 if it finished first; a plain signal death only if
                // the signal came before main() installed the handler (nothing written yet)
                use std::os::unix::process::ExitStatusExt;
                assert!(
                    matches!(st.code(), Some(0) | Some(130)) || st.signal().is_some(),
                    "{args:?} after SIG{sig}: {st}"
                );
            }
            // it may have finished in the meantime
            return !st.success();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The uninterrupted run: its output bytes (by file name) and its duration (the faster of two
/// runs — the first one also warms the page cache — which must write the same bytes).
fn reference(
    args: &dyn Fn(&Path) -> Vec<String>,
    dir: &Path,
) -> (Vec<(String, Vec<u8>)>, Duration) {
    let mut took = Duration::MAX;
    let mut outs: Vec<Vec<(String, Vec<u8>)>> = Vec::new();
    for k in 0..2 {
        let d = dir.join(format!("run{k}"));
        std::fs::create_dir_all(&d).unwrap();
        let a = args(&d);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        let (code, _, err) = common::run(&a);
        took = took.min(t0.elapsed());
        assert_eq!(code, 0, "{err}");
        outs.push(
            files(&d)
                .into_iter()
                .map(|f| {
                    let b = std::fs::read(d.join(&f)).unwrap();
                    (f, b)
                })
                .collect(),
        );
    }
    assert!(
        outs[0] == outs[1],
        "two uninterrupted runs wrote different bytes"
    );
    let _ = std::fs::remove_dir_all(dir.join("run1"));
    (outs.swap_remove(0), took)
}

/// Kill `args` at `points` moments spread over the reference duration (the last two too late);
/// after each kill every destination is absent or identical to the reference.
fn interrupt(
    label: &str,
    args: &dyn Fn(&Path) -> Vec<String>,
    root: &Path,
    points: usize,
    stop: Stop,
) {
    let (good, took) = reference(args, &root.join("reference"));
    assert!(!good.is_empty());
    let mut killed = 0;
    let mut complete = 0;
    let mut absent = 0;
    let mut leaked = 0;
    for k in 0..points {
        let dir = root.join(format!("kill{k:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        // spread over the run; the last two let it finish (the destination must then be complete)
        let after = if k + 2 >= points {
            took * 3
        } else {
            took.mul_f64(0.9 * k as f64 / (points - 2) as f64)
        };
        let a = args(&dir);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        if run_and_kill(&a, after, stop) {
            killed += 1;
        }
        let before = (absent, complete);
        for (name, bytes) in &good {
            let p = dir.join(name);
            match std::fs::read(&p) {
                Err(_) => absent += 1,
                Ok(b) => {
                    assert!(b.len() == bytes.len() && b == *bytes, "{label}: after a kill at {after:?}, `{name}` exists but is not the complete file ({} of {} bytes)", b.len(), bytes.len());
                    if name.ends_with(".onnx") {
                        postmerge::model::Model::load(&p)
                            .unwrap_or_else(|e| panic!("{label}: `{name}` does not load: {e:#}"));
                    }
                    complete += 1;
                }
            }
        }
        for f in files(&dir) {
            if good.iter().any(|(n, _)| *n == f) {
                continue;
            }
            assert!(
                is_temp(&f),
                "{label}: unexpected file `{f}` after a kill at {after:?}"
            );
            let len = std::fs::metadata(dir.join(&f)).unwrap().len();
            assert!(
                len <= good.iter().map(|(_, b)| b.len() as u64).max().unwrap(),
                "temp file larger than any output"
            );
            leaked += 1;
        }
        if let Stop::Signal(sig) = stop {
            assert_eq!(
                leaked, 0,
                "{label}: SIG{sig} is caught: no temp file may be left"
            );
            // all or nothing: every destination complete, or none
            let (a1, c1) = (absent - before.0, complete - before.1);
            assert!(
                a1 == 0 || c1 == 0,
                "{label}: after SIG{sig} at {after:?}, {c1} outputs complete and {a1} absent"
            );
        }
        // a later run into the same folder succeeds and writes the same bytes
        if k % 4 == 0 {
            let (code, _, err) = common::run(&a);
            assert_eq!(code, 0, "{label}: re-run after a kill: {err}");
            for (name, bytes) in &good {
                assert!(
                    std::fs::read(dir.join(name)).unwrap() == *bytes,
                    "{label}: re-run wrote different bytes for `{name}`"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("{label}: reference run {took:?}; {points} runs, {killed} killed mid-run; destinations afterwards: {absent} absent, {complete} complete (never partial); leaked temp files: {leaked}{}", if matches!(stop, Stop::Kill) { " (SIGKILL cannot be caught)" } else { "" });
    assert!(
        killed >= points / 3,
        "{label}: only {killed} of {points} runs were interrupted; the timing is off"
    );
}

#[test]
fn sigkill_during_convert_never_leaves_a_partial_model() {
    let root = tempfile::tempdir().unwrap();
    let big = big_model(root.path());
    let args = convert_args(big, &[]);
    interrupt("convert", &args, root.path(), 16, Stop::Kill);
}

#[test]
fn sigkill_during_convert_to_external_data() {
    // data file first, model file last: a kill in between leaves a complete data file and no
    // model (an orphan `big_copy.onnx.data`, complete, is allowed)
    let root = tempfile::tempdir().unwrap();
    let big = big_model(root.path());
    let args = convert_args(big, &["--external-data", "big_copy.onnx.data"]);
    interrupt(
        "convert --external-data",
        &args,
        root.path(),
        12,
        Stop::Kill,
    );
}

#[test]
fn sigkill_during_multi_size_resize() {
    let root = tempfile::tempdir().unwrap();
    let big = big_model(root.path());
    let args = multi_size_args(big);
    interrupt("resize x3", &args, root.path(), 12, Stop::Kill);
}

/// `convert BIG -o OUT/big_copy.onnx EXTRA...`
fn convert_args(big: PathBuf, extra: &'static [&'static str]) -> impl Fn(&Path) -> Vec<String> {
    move |out: &Path| {
        let mut v = vec![
            "convert".to_string(),
            big.display().to_string(),
            "-o".into(),
            out.join("big_copy.onnx").display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }
}

fn multi_size_args(big: PathBuf) -> impl Fn(&Path) -> Vec<String> {
    move |out: &Path| {
        vec![
            "resize".to_string(),
            big.display().to_string(),
            "-o".into(),
            out.join("big_{h}x{w}.onnx").display().to_string(),
            "--size".into(),
            "96x96".into(),
            "--size".into(),
            "256x320".into(),
            "--size".into(),
            "128x128".into(),
        ]
    }
}

#[test]
fn sigint_and_sigterm_leave_no_temp_file_and_all_or_nothing() {
    let root = tempfile::tempdir().unwrap();
    let big = big_model(root.path());
    let args = multi_size_args(big.clone());
    interrupt(
        "resize x3, SIGINT",
        &args,
        &root.path().join("int"),
        10,
        Stop::Signal("INT"),
    );
    let convert = convert_args(big, &[]);
    interrupt(
        "convert, SIGTERM",
        &convert,
        &root.path().join("term"),
        10,
        Stop::Signal("TERM"),
    );
}
