//! In-process benchmarks of postmerge's library calls against a plain file copy of the same bytes
//! (issue 7, Performance). Run them with `bench/run.sh`, which also measures whole processes and
//! onnxruntime latency and prints the table that BENCHMARKS.md is written from; or alone with
//!
//!     cargo bench --bench transform                  # everything
//!     cargo bench --bench transform -- gold_yolo_n   # one model (criterion's name filter)
//!
//! Models are read from `$POSTMERGE_MODELS` (default `../shared/models` next to the crate); a
//! missing model is skipped with a note. Outputs go to a temp folder inside `$POSTMERGE_BENCH_TMP`
//! (default: the system temp dir).
//!
//! Group `<model>` benchmarks, each one step of `postmerge convert|merge|resize` or the whole of it:
//! - `fs_copy`            std::fs::copy of the model file (the floor a transformer is compared to)
//! - `copy_fsync`         the same plus fsync of the copy (postmerge's writes are fsync'ed)
//! - `read`               std::fs::read of the file
//! - `decode`             Model::from_bytes on bytes already in memory (zero-copy weights)
//! - `encode`             Model::to_bytes
//! - `write`              File::create + write_all of the encoded bytes (no fsync)
//! - `write_atomic`       model::atomic_write (temp file + fsync + rename), what `save` does
//! - `clone`              Model::clone (what each job of a multi-size run starts with)
//! - `load_save`          Model::load + Model::save: all of `postmerge convert`'s work
//! - `merge`, `resize_128x160`, `quant_prep`  the pass alone on an already decoded model (clone
//!   excluded); `quant_prep` is what `postmerge quant-prep` does: merge with the decoded layout and
//!   normalized boxes, then the quant_prep pass
//! - `load_merge_save`, `load_resize_128x160_save`, `load_quant_prep_save`  the whole pipeline

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use postmerge::model::{atomic_write, Model};
use postmerge::passes::merge::{merge, MergeOptions};
use postmerge::passes::quant_prep::quant_prep;
use postmerge::passes::resize::{resize, ResizeOptions};
use postmerge::postprocess::Layout;

/// (short name, file) of the models benchmarked.
const MODELS: &[(&str, &str)] = &[
    ("yolox_nano", "yolox_nano_80c_640x640_op11.onnx"),
    ("gold_yolo_n", "gold_yolo_n_80c_640x640_op13.onnx"),
    // the largest shared model (22.6 MB, NMS already in the graph): I/O only, no merge/resize
    (
        "gold_yolo_n_e2e",
        "gold_yolo_n_80c_640x640_op13_e2e_ort.onnx",
    ),
];

fn models_dir() -> PathBuf {
    match std::env::var_os("POSTMERGE_MODELS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models"),
    }
}

fn tmp_dir() -> tempfile::TempDir {
    match std::env::var_os("POSTMERGE_BENCH_TMP") {
        Some(d) => tempfile::tempdir_in(d).expect("temp dir in $POSTMERGE_BENCH_TMP"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn small_to_128x160() -> ResizeOptions {
    ResizeOptions {
        height: 128,
        width: 160,
        batch: None,
    }
}

/// `postmerge quant-prep IN -o OUT` in-process: merge (decoded layout, boxes in [0,1]), then prepare.
fn quant_prep_all(m: &mut Model) {
    let opts = MergeOptions {
        layout: Some(Layout::Decoded),
        normalize_boxes: true,
        ..Default::default()
    };
    merge(m, &opts).unwrap();
    black_box(quant_prep(m, &Default::default()).unwrap());
}

fn bench_model(c: &mut Criterion, name: &str, path: &Path, passes: bool) {
    let tmp = tmp_dir();
    let out = tmp.path().join("out.onnx");
    let raw = Bytes::from(std::fs::read(path).expect("read model"));
    let model = Model::from_bytes(raw.clone(), name).expect("decode model");
    let encoded = model.to_bytes().expect("encode");
    assert_eq!(
        encoded.len(),
        raw.len(),
        "{name}: a round trip changed the size"
    );

    let mut g = c.benchmark_group(name);
    // Flat sampling: the slow steps (0.1-1 s per call) would need minutes with criterion's linear
    // 1, 2, ..., n iterations per sample.
    g.sample_size(30)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    g.bench_function("fs_copy", |b| b.iter(|| std::fs::copy(path, &out).unwrap()));
    g.bench_function("copy_fsync", |b| {
        b.iter(|| {
            std::fs::copy(path, &out).unwrap();
            std::fs::File::open(&out).unwrap().sync_all().unwrap();
        })
    });
    g.bench_function("read", |b| {
        b.iter(|| black_box(std::fs::read(path).unwrap()))
    });
    g.bench_function("decode", |b| {
        b.iter(|| black_box(Model::from_bytes(raw.clone(), name).unwrap()))
    });
    g.bench_function("encode", |b| {
        b.iter(|| black_box(model.to_bytes().unwrap()))
    });
    g.bench_function("write", |b| {
        b.iter(|| {
            let mut f = std::fs::File::create(&out).unwrap();
            f.write_all(&encoded).unwrap();
        })
    });
    g.bench_function("write_atomic", |b| {
        b.iter(|| atomic_write(&out, &encoded).unwrap())
    });
    g.bench_function("clone", |b| b.iter(|| black_box(model.clone())));
    g.bench_function("load_save", |b| {
        b.iter(|| {
            let m = Model::load(path).unwrap();
            m.save(&out, &Default::default()).unwrap();
        })
    });
    if passes {
        let opts = MergeOptions::default();
        g.bench_function("merge", |b| {
            b.iter_batched(
                || model.clone(),
                |mut m| black_box(merge(&mut m, &opts).unwrap()),
                BatchSize::PerIteration,
            )
        });
        g.bench_function("resize_128x160", |b| {
            b.iter_batched(
                || model.clone(),
                |mut m| black_box(resize(&mut m, &small_to_128x160()).unwrap()),
                BatchSize::PerIteration,
            )
        });
        g.bench_function("quant_prep", |b| {
            b.iter_batched(
                || model.clone(),
                |mut m| quant_prep_all(&mut m),
                BatchSize::PerIteration,
            )
        });
        g.bench_function("load_merge_save", |b| {
            b.iter(|| {
                let mut m = Model::load(path).unwrap();
                merge(&mut m, &opts).unwrap();
                m.save(&out, &Default::default()).unwrap();
            })
        });
        g.bench_function("load_resize_128x160_save", |b| {
            b.iter(|| {
                let mut m = Model::load(path).unwrap();
                resize(&mut m, &small_to_128x160()).unwrap();
                m.save(&out, &Default::default()).unwrap();
            })
        });
        g.bench_function("load_quant_prep_save", |b| {
            b.iter(|| {
                let mut m = Model::load(path).unwrap();
                quant_prep_all(&mut m);
                m.save(&out, &Default::default()).unwrap();
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let dir = models_dir();
    for &(name, file) in MODELS {
        let path = dir.join(file);
        if !path.is_file() {
            eprintln!(
                "skipping {name}: {} not found (set POSTMERGE_MODELS)",
                path.display()
            );
            continue;
        }
        bench_model(c, name, &path, !name.ends_with("_e2e"));
    }
}

criterion_group!(transform, benches);
criterion_main!(transform);
