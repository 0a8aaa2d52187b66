//! The `postmerge` command line: parses arguments, calls the library, renders results.
//! Exit codes: 0 ok, 1 check mismatch, 2 error, 3 check not proven (a step compared nothing),
//! 130 interrupted (SIGINT/SIGTERM/SIGHUP).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use postmerge::model::Model;

#[derive(Parser)]
#[command(
    name = "postmerge",
    version,
    about = "Turn YOLOX / Gold-YOLO ONNX exports into verified, end-to-end detection models",
    long_about = "postmerge reads a freshly exported YOLOX or Gold-YOLO (YOLOv6-family) ONNX model and \
                  inspects it, diffs it, appends post-processing (decode + score threshold + NMS), \
                  re-specializes its input resolution and checks every result by running it with tract.",
    after_help = "Examples:\n  postmerge inspect yolox_nano.onnx\n  postmerge diff a.onnx b.onnx --json\n\nExit codes: 0 ok, 1 check mismatch, 2 error, 3 check not proven (a step of `check` / `merge --check`\ncompared nothing: no box selected on the input), 130 interrupted (temp files removed)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// merge, resize, quant-prep and check refuse (exit 2) a model whose float weights hold NaN or
    /// ±Inf; with this flag they go on (check then fails with exit 1 on those values).
    /// Example: postmerge check --allow-nonfinite a.onnx b.onnx
    #[arg(long, global = true)]
    allow_nonfinite: bool,
}

/// `--allow-nonfinite` of this run.
static ALLOW_NONFINITE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Refuse a model with NaN/Inf weights unless `--allow-nonfinite` was given.
fn refuse_nonfinite(m: &Model, path: &std::path::Path) -> Result<()> {
    // a malformed graph is reported as such by the subcommand itself (its message is the more
    // specific one)
    if ALLOW_NONFINITE.load(std::sync::atomic::Ordering::Relaxed)
        || postmerge::shape::validate_structure(m).is_err()
    {
        return Ok(());
    }
    postmerge::nonfinite::refuse(m, &format!("`{}`", path.display()))
}

#[derive(Subcommand)]
enum Cmd {
    /// Show IR/opsets, I/O, op histogram, parameters, the recognized detection head and the
    /// constants baked from the input resolution.
    #[command(
        after_help = "Examples:\n  postmerge inspect tests/fixtures/yolox_nano_640x640.onnx\n  postmerge inspect model.onnx --json | jq .head.family"
    )]
    Inspect {
        /// Model to inspect (.onnx; external data is read from its folder)
        model: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Append decode + score threshold + NonMaxSuppression so the model outputs final detections.
    #[command(
        after_help = "Examples:\n  postmerge merge yolox_nano.onnx -o yolox_nano_post.onnx\n  postmerge merge gold_yolo_n.onnx -o e2e.onnx --layout trt --max-det 100\n  postmerge merge model.onnx -o m.onnx --thresholds inputs --score 0.3 --iou 0.5\n  postmerge merge yolox_nano.onnx -o cam.onnx --input-format nhwc-u8-bgr   # feed OpenCV frames\n  postmerge merge shapes_128x160.onnx -o shapes_post.onnx --names circle,triangle,square\n\n--input-format nhwc-u8-bgr|nhwc-u8-rgb: the model takes the letterboxed picture as uint8\n[B,H,W,3]; the graph casts, transposes, reorders channels for the family (YOLOX BGR, Gold-YOLO\nRGB) and scales (YOLOX none, Gold-YOLO /255). Default nchw-f32 = the export's float input.\n\nDefaults follow PINTO's published models: --max-per-class 20 --iou 0.40 --score 0.25.\nLayouts: pinto (YOLOX default) batchno_classid_score_x1y1x2y2 [N,7]; pinto-goldyolo (Gold-YOLO\ndefault) batchno_classid_x1y1x2y2_score [N,7]; trt num_dets/det_boxes/det_scores/det_classes;\nultralytics output0 [B,K,6]; decoded boxes [B,N,4] + scores [B,N,C] (no NMS)."
    )]
    Merge {
        /// Exported model (YOLOX raw or decoded head, Gold-YOLO / YOLOv6)
        input: PathBuf,
        /// Output path (written atomically), or a pattern with {h}, {w}, {stem} with several --size
        #[arg(short, long)]
        output: String,
        #[command(flatten)]
        nms: NmsArgs,
        /// Output layout (default: pinto for YOLOX, pinto-goldyolo for Gold-YOLO)
        #[arg(long, value_enum)]
        layout: Option<LayoutArg>,
        /// One NMS pass over all classes (best class per box) instead of per class
        #[arg(long)]
        agnostic: bool,
        /// Store NMS parameters as constants or as graph inputs with defaults
        #[arg(long, value_enum, default_value_t = ThresholdsArg::Const)]
        thresholds: ThresholdsArg,
        /// Opset of the result (default: the model's, raised to 11 if below 10)
        #[arg(long)]
        opset: Option<i64>,
        /// Override the recognized family
        #[arg(long, value_enum)]
        family: Option<FamilyArg>,
        /// Print what was done as JSON
        #[arg(long)]
        json: bool,
        /// Allow OUTPUT to be the input file itself
        #[arg(long)]
        in_place: bool,
        /// Re-specialize to this size (HxW) before appending (repeatable; OUTPUT is then a pattern
        /// with {h} and {w}; all sizes are written, or none if one fails)
        #[arg(long = "size", value_name = "HxW")]
        sizes: Vec<String>,
        /// Batch of the result: a number, or `dynamic`
        #[arg(long)]
        batch: Option<String>,
        /// Also prepare for INT8 quantization: boxes normalized to [0,1], graph folded, post-process
        /// listed in OUTPUT.nodes_to_exclude.json (see `quant-prep`)
        #[arg(long)]
        quant_prep: bool,
        /// Make the model take uint8 NHWC frames [B,H,W,3] (the letterboxed picture, BGR or RGB):
        /// Cast, Transpose, the channel order and the family's scale are prepended in the graph
        #[arg(long, value_enum, default_value_t = InputFormatArg::NchwF32, value_name = "FORMAT")]
        input_format: InputFormatArg,
        /// Before writing, check the result with tract against the Rust reference and the requested
        /// --score/--iou/--max-per-class/--max-det/--agnostic (exit 1 on mismatch, 3 if nothing was
        /// compared; no output is written then)
        #[arg(long)]
        check: bool,
        /// Photo for --check (default: the bundled scenes, then a synthetic tensor; the first on
        /// which the reference selects boxes)
        #[arg(long, requires = "check")]
        image: Option<PathBuf>,
        /// Class names to store in the model's metadata (class 0 first), used by `detect`
        #[arg(long, value_name = "A,B,C", conflicts_with = "names_file")]
        names: Option<String>,
        /// Class names to store, one per line (class 0 first)
        #[arg(long, value_name = "FILE")]
        names_file: Option<PathBuf>,
    },
    /// Re-specialize an export to other input sizes (and batch) without going back to PyTorch.
    #[command(
        after_help = "Examples:\n  postmerge resize yolox_nano_640x640.onnx -o yolox_nano_128x160.onnx --size 128x160\n  postmerge resize gold_yolo_n.onnx --size 128x160 --size 256x320 --size 480x640 -o 'out/{stem}_{h}x{w}.onnx'\n  postmerge resize model.onnx -o model_b4.onnx --size 640x640 --batch 4\n  postmerge resize gold_yolo_n.onnx -o cam_128x160.onnx --size 128x160 --input-format nhwc-u8-rgb\n\nSizes are HxW (height first) and must be multiples of the largest stride (32, or 64 for p6\nheads). With several sizes, OUTPUT is a pattern with {h} and {w} (and optionally {stem});\nsizes are processed in parallel, all or nothing: if one fails, no output is written."
    )]
    Resize {
        /// Exported model (un-merged)
        input: PathBuf,
        /// Output path, or a pattern with {h}, {w}, {stem} for several sizes
        #[arg(short, long)]
        output: String,
        /// Target size HxW (repeatable; all sizes are written, or none if one fails)
        #[arg(long = "size", value_name = "HxW", required = true)]
        sizes: Vec<String>,
        /// Batch of the result: a number, or `dynamic` for a symbolic batch
        #[arg(long)]
        batch: Option<String>,
        /// Print what was rewritten as JSON
        #[arg(long)]
        json: bool,
        /// Make the model take uint8 NHWC frames [B,H,W,3] (the letterboxed picture, BGR or RGB):
        /// Cast, Transpose, the channel order and the family's scale are prepended in the graph
        #[arg(long, value_enum, default_value_t = InputFormatArg::NchwF32, value_name = "FORMAT")]
        input_format: InputFormatArg,
    },
    /// Prove a merged model by running it and the original with tract on the same input.
    #[command(
        after_help = "Examples:\n  postmerge check yolox_nano.onnx yolox_nano_post.onnx\n  postmerge check gold_yolo_n.onnx merged.onnx --image photo.jpg --json\n\nSteps: (1) original head output vs the same tensor inside MERGED (relative tolerance 1e-4);\n(2) MERGED's appended post-process vs the Rust reference on identical pre-NMS tensors\n(boxes <= 1e-3 px, scores <= 1e-5); (3) final detections vs the reference on the original's\noutput, matched by class and IoU >= 0.9 for scores clear of the threshold.\nEvery step must compare something real: a step that compares nothing (no box selected on the
input, or the original cannot run at MERGED's size) is NOT PROVEN and check exits 3.
Default input: the bundled scenes (a photo, a shapes scene), then a synthetic tensor; the first on
which the reference selects boxes. Step 3 uses --score/--iou/--max-per-class/--max-det (default:
what MERGED records); step 2 also requires MERGED's NMS constants to equal what it records.
  postmerge check model.onnx post.onnx --score 0.3 --iou 0.5   # was post.onnx merged like this?
Exit codes: 0 equal, 1 mismatch, 2 error, 3 not proven (nothing compared)."
    )]
    Check {
        /// The un-merged export
        original: PathBuf,
        /// The merged model (possibly re-specialized to another size)
        merged: PathBuf,
        /// A photo, preprocessed by the family's convention
        #[arg(long, conflicts_with = "input")]
        image: Option<PathBuf>,
        /// A .npy input tensor [B,3,H,W]
        #[arg(long)]
        input: Option<PathBuf>,
        /// Score threshold MERGED should have (default: the one it records)
        #[arg(long)]
        score: Option<f32>,
        /// IoU threshold MERGED should have (default: the one it records)
        #[arg(long)]
        iou: Option<f32>,
        /// Detections per class MERGED should keep (default: what it records)
        #[arg(long)]
        max_per_class: Option<usize>,
        /// K of the trt / ultralytics layouts MERGED should have (default: its outputs' K)
        #[arg(long)]
        max_det: Option<usize>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Run a model on a photo and draw the detections into a PNG.
    #[command(
        after_help = "Examples:\n  postmerge detect yolox_nano_post.onnx dog.jpg -o dog_dets.png\n  postmerge detect gold_yolo_n.onnx image1.jpg -o out.png --json\n  postmerge detect shapes_post.onnx sample_1.png -o out.png --names circle,triangle,square\n  postmerge detect model.onnx photo.jpg -o out.png --names-file coco.names\n\nMerged models use their own NMS; raw exports are post-processed in Rust with --score/--iou/--max-per-class.\nLabels read `NAME SCORE` (class numbers when no names are given or stored); pictures under 640 px\non the long side are scaled up before drawing (the JSON boxes stay in photo pixels).\nModels that take uint8 frames (--input-format) get the letterboxed picture as such a frame."
    )]
    Detect {
        /// Merged model or raw export
        model: PathBuf,
        /// Photo (jpeg or png)
        image: PathBuf,
        /// Annotated PNG to write
        #[arg(short, long)]
        output: PathBuf,
        /// Print the detections as JSON
        #[arg(long)]
        json: bool,
        /// Score threshold (raw models)
        #[arg(long, default_value_t = 0.25)]
        score: f32,
        /// IoU threshold (raw models)
        #[arg(long, default_value_t = 0.40)]
        iou: f32,
        /// Max detections per class (raw models)
        #[arg(long, default_value_t = 20)]
        max_per_class: usize,
        /// Preprocessing convention override
        #[arg(long, value_enum)]
        family: Option<FamilyArg>,
        /// Class names for the labels, class 0 first (default: the names `merge --names` stored)
        #[arg(long, value_name = "A,B,C", conflicts_with = "names_file")]
        names: Option<String>,
        /// Class names, one per line (class 0 first)
        #[arg(long, value_name = "FILE")]
        names_file: Option<PathBuf>,
    },
    /// Prepare a model for INT8 quantization: decode with boxes normalized to [0,1] and scores as
    /// separate outputs, constants and BatchNorm folded, Identity/Dropout removed, static shapes in
    /// value_info, and the float post-process listed for `quantize_static(nodes_to_exclude=…)`.
    #[command(
        after_help = "Examples:\n  postmerge quant-prep yolox_nano.onnx -o yolox_nano_qprep.onnx\n  postmerge quant-prep yolox_nano.onnx -o prep.onnx --layout pinto\n  postmerge quant-prep yolox_nano.onnx -o prep_u8.onnx --input-format nhwc-u8-bgr\n  python -c \"import json; from onnxruntime.quantization import quantize_static; ...\n    quantize_static('prep.onnx', 'int8.onnx', reader, nodes_to_exclude=json.load(open('prep.nodes_to_exclude.json')))\"\n\nThe default layout `decoded` gives the backbone+head only (boxes [B,N,4] in [0,1], scores [B,N,C]),\nready to quantize and pair with NMS on the host. The sidecar OUTPUT minus .onnx plus\n.nodes_to_exclude.json is a JSON list accepted as is by onnxruntime's quantize_static."
    )]
    QuantPrep {
        /// Exported (or already merged) model
        input: PathBuf,
        /// Output path
        #[arg(short, long)]
        output: String,
        /// Output layout (default decoded: no NMS)
        #[arg(long, value_enum)]
        layout: Option<LayoutArg>,
        #[command(flatten)]
        nms: NmsArgs,
        /// Print what was done as JSON
        #[arg(long)]
        json: bool,
        /// Allow OUTPUT to be the input file itself
        #[arg(long)]
        in_place: bool,
        /// Make the model take uint8 NHWC frames [B,H,W,3] (the letterboxed picture, BGR or RGB):
        /// Cast, Transpose, the channel order and the family's scale are prepended in the graph
        #[arg(long, value_enum, default_value_t = InputFormatArg::NchwF32, value_name = "FORMAT")]
        input_format: InputFormatArg,
    },
    /// Retune the NMS parameters of an already merged model (ours, PINTO's, YOLOv6 --end2end --ort).
    #[command(
        after_help = "Examples:\n  postmerge set merged.onnx -o retuned.onnx --score 0.3 --iou 0.5 --max-per-class 50\n  postmerge set merged.onnx -o merged.onnx --in-place --score 0.35"
    )]
    Set {
        /// Merged model
        input: PathBuf,
        /// Output path (written atomically)
        #[arg(short, long)]
        output: PathBuf,
        /// New score threshold
        #[arg(long)]
        score: Option<f32>,
        /// New IoU threshold
        #[arg(long)]
        iou: Option<f32>,
        /// New max detections per class
        #[arg(long)]
        max_per_class: Option<i64>,
        /// Print the changes as JSON
        #[arg(long)]
        json: bool,
        /// Allow OUTPUT to be the input file itself
        #[arg(long)]
        in_place: bool,
    },
    /// Re-encode a model (a lossless round trip), optionally moving large weights into an external
    /// data file — the way to write models over the 2 GiB protobuf limit.
    #[command(
        after_help = "Examples:\n  postmerge convert model.onnx -o copy.onnx\n  postmerge convert big.onnx -o out/big.onnx --external-data big.onnx.data"
    )]
    Convert {
        /// Input model
        input: PathBuf,
        /// Output path (written atomically; never the input unless --in-place)
        #[arg(short, long)]
        output: PathBuf,
        /// Store initializers of at least 1 KiB in this file (relative to the output's folder)
        #[arg(long, value_name = "FILE")]
        external_data: Option<String>,
        /// Allow OUTPUT to be the input file itself
        #[arg(long)]
        in_place: bool,
    },
    /// Semantic diff of two models: opsets, I/O, nodes, attributes, initializers (by content hash).
    #[command(
        after_help = "Examples:\n  postmerge diff model_640x640.onnx model_128x160.onnx\n  postmerge diff original.onnx merged.onnx --json > review.json\n\nExit code is 0 whether or not the models differ."
    )]
    Diff {
        /// First (old) model
        a: PathBuf,
        /// Second (new) model
        b: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

/// One output of a multi-size run.
struct Job {
    size: Option<(i64, i64)>,
    batch: Option<postmerge::passes::resize::BatchSpec>,
    output: PathBuf,
}

fn parse_batch(b: Option<&str>) -> Result<Option<postmerge::passes::resize::BatchSpec>> {
    use postmerge::passes::resize::BatchSpec;
    Ok(match b {
        None => None,
        Some("dynamic") | Some("dyn") | Some("N") => Some(BatchSpec::Dynamic),
        Some(v) => Some(BatchSpec::Static(v.parse().map_err(|_| {
            anyhow::anyhow!("--batch `{v}` is neither a number nor `dynamic`")
        })?)),
    })
}

/// Sizes × output pattern → jobs; validates before any work.
fn plan_jobs(
    input: &std::path::Path,
    output: &str,
    sizes: &[String],
    batch: Option<&str>,
    in_place: bool,
) -> Result<Vec<Job>> {
    let batch = parse_batch(batch)?;
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parsed = Vec::new();
    for s in sizes {
        parsed.push(Some(postmerge::passes::resize::parse_size(s)?));
    }
    if parsed.is_empty() {
        parsed.push(None);
    }
    if parsed.len() > 1 && !(output.contains("{h}") && output.contains("{w}")) {
        anyhow::bail!("{} sizes need an output pattern with {{h}} and {{w}}, e.g. -o 'out/{{stem}}_{{h}}x{{w}}.onnx' (got `{output}`)", parsed.len());
    }
    let mut jobs: Vec<Job> = Vec::new();
    for size in parsed {
        let (h, w) = size
            .map(|(h, w)| (h.to_string(), w.to_string()))
            .unwrap_or_default();
        let out = PathBuf::from(
            output
                .replace("{h}", &h)
                .replace("{w}", &w)
                .replace("{stem}", &stem),
        );
        check_output(input, &out, in_place)?;
        if jobs.iter().any(|j| j.output == out) {
            anyhow::bail!("two sizes write the same file `{}`", out.display());
        }
        jobs.push(Job {
            size,
            batch: batch.clone(),
            output: out,
        });
    }
    Ok(jobs)
}

#[allow(clippy::too_many_arguments)]
fn merge_options(
    nms: NmsArgs,
    layout: Option<LayoutArg>,
    agnostic: bool,
    thresholds: ThresholdsArg,
    opset: Option<i64>,
    family: Option<FamilyArg>,
) -> postmerge::passes::merge::MergeOptions {
    use postmerge::postprocess::Layout;
    let NmsArgs {
        score,
        iou,
        max_per_class,
        max_det,
    } = nms;
    postmerge::passes::merge::MergeOptions {
        score_threshold: score,
        iou_threshold: iou,
        max_per_class,
        max_det,
        layout: layout.map(|l| match l {
            LayoutArg::Pinto => Layout::Pinto,
            LayoutArg::PintoGoldyolo => Layout::PintoGoldYolo,
            LayoutArg::Trt => Layout::Trt { max_det },
            LayoutArg::Ultralytics => Layout::Ultralytics { max_det },
            LayoutArg::Decoded => Layout::Decoded,
        }),
        agnostic,
        thresholds: match thresholds {
            ThresholdsArg::Const => postmerge::passes::merge::Thresholds::Const,
            ThresholdsArg::Inputs => postmerge::passes::merge::Thresholds::Inputs,
        },
        opset,
        family: family.map(Into::into),
        normalize_boxes: false,
    }
}

/// Resize (when the job has a size or batch) then apply `then`, for every job, in parallel; the
/// input is decoded once and shared (weights are reference-counted, not copied).
/// What a job's transformation returns besides the edited model.
struct JobOutput {
    report: serde_json::Value,
    /// Node names for the `OUT.nodes_to_exclude.json` sidecar (quant-prep).
    sidecar: Option<Vec<String>>,
}

impl From<serde_json::Value> for JobOutput {
    fn from(report: serde_json::Value) -> Self {
        JobOutput {
            report,
            sidecar: None,
        }
    }
}

/// Run every job (one output each) in parallel, all or nothing: every output is first written to
/// a temp file next to its destination (and checked, with `--check`); only when every job has
/// succeeded are they renamed into place. If one fails, no output is written.
fn run_jobs<F>(
    input: &std::path::Path,
    jobs: Vec<Job>,
    json: bool,
    then: F,
    check: Option<postmerge::check::Requested>,
    image: Option<PathBuf>,
) -> Result<ExitCode>
where
    F: Fn(&mut Model) -> Result<JobOutput> + Sync,
{
    use postmerge::model::Staged;
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let base = load(input)?;
    refuse_nonfinite(&base, input)?;
    postmerge::passes::input_format::ensure_float_input(&base)?;
    let total = jobs.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    type Done = (serde_json::Value, Vec<Staged>);
    let results: Mutex<Vec<(usize, Result<Done>)>> = Mutex::new(Vec::new());
    let tty = std::io::stderr().is_terminal();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(total)
        .max(1);
    std::thread::scope(|sc| {
        for _ in 0..workers {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total || postmerge::model::is_cancelled() {
                    break;
                }
                let job = &jobs[i];
                let r = (|| -> Result<Done> {
                    let mut m = base.clone();
                    let mut report = serde_json::Map::new();
                    report.insert("output".into(), job.output.display().to_string().into());
                    if job.size.is_some() || job.batch.is_some() {
                        let (h, w) = match job.size {
                            Some(hw) => hw,
                            None => {
                                let head = postmerge::head::recognize(&m, None)?;
                                (head.height.unwrap_or(0), head.width.unwrap_or(0))
                            }
                        };
                        let rep = postmerge::passes::resize::resize(
                            &mut m,
                            &postmerge::passes::resize::ResizeOptions {
                                height: h,
                                width: w,
                                batch: job.batch.clone(),
                            },
                        )
                        .with_context(|| {
                            format!("cannot re-specialize `{}` to {h}x{w}", input.display())
                        })?;
                        report.insert("resize".into(), serde_json::to_value(&rep)?);
                    }
                    let original = if check.is_some() {
                        Some(m.clone())
                    } else {
                        None
                    };
                    let out = then(&mut m)
                        .with_context(|| format!("cannot process `{}`", input.display()))?;
                    if let serde_json::Value::Object(extra) = out.report {
                        report.extend(extra);
                    }
                    let mut staged = Vec::new();
                    if let Some(nodes) = &out.sidecar {
                        staged.push(stage_sidecar(&job.output, nodes)?);
                    }
                    let model_files = m
                        .stage(&job.output, &Default::default())
                        .with_context(|| format!("cannot save `{}`", job.output.display()))?;
                    let written_at = model_files.last().map(|s| s.temp_path().to_path_buf());
                    staged.extend(model_files);
                    if let (Some(o), Some(written_at)) = (original, written_at) {
                        let mut written = load(&written_at)?;
                        // read back from its temp file; report it under the name it will have
                        written.source = job.output.display().to_string();
                        let inp = match &image {
                            Some(p) => postmerge::check::CheckInput::Image(p.clone()),
                            None => postmerge::check::CheckInput::Scenes,
                        };
                        let r = postmerge::check::check_against(
                            &o,
                            &written,
                            &postmerge::check::CheckOptions {
                                input: inp,
                                tol: Default::default(),
                            },
                            &check.unwrap_or_default(),
                        )?;
                        report.insert("check".into(), serde_json::to_value(&r)?);
                        report.insert(
                            "check_text".into(),
                            postmerge::check::render_report(&r).into(),
                        );
                        match r.status {
                            postmerge::check::Status::Passed => {}
                            postmerge::check::Status::Failed => anyhow::bail!(
                                "check FAILED for `{}`:\n{}",
                                job.output.display(),
                                postmerge::check::render_report(&r)
                            ),
                            postmerge::check::Status::NotProven => anyhow::bail!(
                                "check NOT PROVEN for `{}`:\n{}",
                                job.output.display(),
                                postmerge::check::render_report(&r)
                            ),
                        }
                    }
                    Ok((serde_json::Value::Object(report), staged))
                })();
                let k = done.fetch_add(1, Ordering::SeqCst) + 1;
                if tty && total > 1 {
                    eprintln!(
                        "[{k}/{total}] {} {}",
                        if r.is_ok() { "ready" } else { "FAILED" },
                        job.output.display()
                    );
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut failed = Vec::new();
    let mut values = Vec::new();
    let mut staged = Vec::new();
    for (i, r) in results {
        match r {
            Ok((v, s)) => {
                values.push(v);
                staged.extend(s);
            }
            Err(e) => failed.push((i, e)),
        }
    }
    if !failed.is_empty() {
        drop(staged); // deletes every temp file: no output of this run appears
        let is_check = |e: &anyhow::Error| {
            let e = e.to_string();
            e.starts_with("check FAILED") || e.starts_with("check NOT PROVEN")
        };
        if total == 1 && !is_check(&failed[0].1) {
            return Err(failed.remove(0).1);
        }
        let check_failed = failed.iter().any(|(_, e)| is_check(e));
        let only_not_proven = failed
            .iter()
            .all(|(_, e)| e.to_string().starts_with("check NOT PROVEN"));
        let failed: Vec<String> = failed
            .into_iter()
            .map(|(i, e)| format!("{}: {}", jobs[i].output.display(), render_error(&e)))
            .collect();
        let msg = failed.join("\n");
        let nothing = if total > 1 {
            format!("no output written (all {total} outputs are written only when all succeed)")
        } else {
            "no output written".to_string()
        };
        if check_failed {
            eprintln!("{msg}\n{nothing}");
            return Ok(ExitCode::from(if only_not_proven {
                postmerge::check::Status::NotProven.exit_code()
            } else {
                postmerge::check::Status::Failed.exit_code()
            }));
        }
        anyhow::bail!(
            "{} of {total} outputs failed; {nothing}:\n{msg}",
            failed.len()
        );
    }
    {
        let _no_interrupt_midway = exit_lock();
        if postmerge::model::is_cancelled() {
            anyhow::bail!("interrupted");
        }
        postmerge::model::commit_all(staged)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else {
        for v in &values {
            let out = v["output"].as_str().unwrap_or("?");
            if let Some(q) = v.get("quant_prep") {
                println!("{out}: prepared for INT8 (opset {}): {} nodes to exclude (sidecar {}), {} folded, {} value_info", q["opset_to"], q["nodes_to_exclude"].as_array().map(|a| a.len()).unwrap_or(0), std::path::Path::new(out).with_extension("nodes_to_exclude.json").display(), q["folded_nodes"], q["value_info"]);
            }
            if let Some(mr) = v.get("merge") {
                let mut mr = mr.clone();
                if let Some(q) = v.get("quant_prep") {
                    mr["opset"] = q["opset_to"].clone();
                }
                if mr.get("layout").is_some() {
                    for n in mr["notes"].as_array().into_iter().flatten() {
                        eprintln!("note: {}", n.as_str().unwrap_or(""));
                    }
                    println!(
                        "{out}: merged {} head, layout {}, opset {}, {} nodes appended ({})",
                        mr["family"].as_str().unwrap_or("?"),
                        mr["layout"].as_str().unwrap_or("?"),
                        mr["opset"],
                        mr["appended_nodes"],
                        join_strs(&mr["outputs"])
                    );
                }
            }
            if let Some(f) = v.get("input_format") {
                println!(
                    "{out}: input `{}` takes uint8 {} frames {} (was {}); prepended {}",
                    f["input"].as_str().unwrap_or("?"),
                    f["format"].as_str().unwrap_or("?"),
                    f["to_shape"].as_str().unwrap_or("?"),
                    f["from_shape"].as_str().unwrap_or("?"),
                    join_strs(&f["prepended"])
                );
            }
            if let Some(c) = v.get("check_text") {
                eprint!("{}", c.as_str().unwrap_or(""));
            }
            if let Some(r) = v.get("resize") {
                println!(
                    "{out}: {}x{} -> {}x{}, batch {} -> {}, N {} -> {}, {} constants rewritten",
                    r["from"][0],
                    r["from"][1],
                    r["to"][0],
                    r["to"][1],
                    r["batch_from"].as_str().unwrap_or(""),
                    r["batch_to"].as_str().unwrap_or(""),
                    r["boxes_from"],
                    r["boxes_to"],
                    r["rewrites"].as_array().map(|a| a.len()).unwrap_or(0)
                );
            } else if v.get("merge").is_none() && v.get("quant_prep").is_none() {
                println!("{out}: written");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `out.onnx` → `out.nodes_to_exclude.json`, a JSON list quantize_static accepts as is.
fn stage_sidecar(output: &std::path::Path, nodes: &[String]) -> Result<postmerge::model::Staged> {
    let p = output.with_extension("nodes_to_exclude.json");
    let text = serde_json::to_string_pretty(nodes)? + "\n";
    postmerge::model::stage_with(&p, |f| {
        use std::io::Write;
        Ok(f.write_all(text.as_bytes())?)
    })
    .with_context(|| format!("cannot write `{}`", p.display()))
}

/// Refuse to overwrite the input unless asked to.
/// Folders this run writes into: on SIGINT/SIGTERM/SIGHUP the handler removes this process's temp
/// files from them before exiting (destructors do not run on `exit`).
static OUTPUT_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn watch_output_dir(output: &std::path::Path) {
    let dir = postmerge::model::parent_dir(output).to_path_buf();
    let mut dirs = OUTPUT_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
}

/// Held by the interrupt handler from its start until `exit(130)`, and by the main thread while it
/// renames a multi-output run's files into place and before it reports its outcome: an interrupt
/// then either comes before the renames (nothing appears) or after all of them, and the exit code
/// is 130 rather than the error of a write whose temp file the handler just removed.
static EXIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exit_lock() -> std::sync::MutexGuard<'static, ()> {
    EXIT_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn on_interrupt() {
    // Cooperative first: every write in progress stops with an error, the temp files go with their
    // destructors and main() exits 130. A run busy in a long computation (check runs the models)
    // gets a few seconds; then this thread removes the temp files itself and exits.
    postmerge::model::cancel();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _held_until_exit = exit_lock();
    let dirs = OUTPUT_DIRS
        .lock()
        .map(|d| d.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    let removed: usize = dirs
        .iter()
        .map(|d| postmerge::model::remove_own_temp_files(d))
        .sum();
    eprintln!(
        "interrupted: stopped; {removed} unfinished temp file(s) removed, outputs not yet renamed into place were not written"
    );
    std::process::exit(130);
}

fn check_output(input: &std::path::Path, output: &std::path::Path, in_place: bool) -> Result<()> {
    watch_output_dir(output);
    if !in_place && postmerge::model::same_file(input, output) {
        anyhow::bail!(
            "output `{}` is the input file; pass --in-place to overwrite it on purpose",
            output.display()
        );
    }
    Ok(())
}

/// NMS parameters shared by `merge` and `quant-prep`.
#[derive(clap::Args, Clone, Copy)]
struct NmsArgs {
    /// Score threshold (NMS keeps scores strictly above it)
    #[arg(long, default_value_t = 0.25)]
    score: f32,
    /// IoU threshold (NMS suppresses overlaps strictly above it)
    #[arg(long, default_value_t = 0.40)]
    iou: f32,
    /// Detections kept per class and image
    #[arg(long, default_value_t = 20)]
    max_per_class: i64,
    /// K of the fixed-size layouts (trt, ultralytics)
    #[arg(long, default_value_t = 100)]
    max_det: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Pinto,
    PintoGoldyolo,
    Trt,
    Ultralytics,
    Decoded,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum InputFormatArg {
    /// float32 [B,3,H,W] in the family's convention (the export as it is)
    NchwF32,
    /// uint8 [B,H,W,3], B,G,R (OpenCV imread, most camera APIs)
    NhwcU8Bgr,
    /// uint8 [B,H,W,3], R,G,B (PIL, picamera2 RGB arrays)
    NhwcU8Rgb,
}

impl From<InputFormatArg> for postmerge::passes::input_format::InputFormat {
    fn from(f: InputFormatArg) -> Self {
        use postmerge::passes::input_format::InputFormat;
        match f {
            InputFormatArg::NchwF32 => InputFormat::NchwF32,
            InputFormatArg::NhwcU8Bgr => InputFormat::NhwcU8Bgr,
            InputFormatArg::NhwcU8Rgb => InputFormat::NhwcU8Rgb,
        }
    }
}

/// The `--input-format` step of merge / resize / quant-prep (after the graph's other edits, before
/// quant-prep's graph preparation); adds its report under `input_format`.
fn apply_input_format(
    m: &mut Model,
    fmt: InputFormatArg,
    family: Option<FamilyArg>,
    v: &mut serde_json::Value,
) -> Result<()> {
    let rep = postmerge::passes::input_format::apply(m, fmt.into(), family.map(Into::into))
        .context("cannot apply --input-format")?;
    if let Some(rep) = rep {
        v["input_format"] = serde_json::to_value(&rep)?;
    }
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ThresholdsArg {
    Const,
    Inputs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FamilyArg {
    YoloxRaw,
    YoloxDecoded,
    GoldYolo,
}

impl From<FamilyArg> for postmerge::families::Family {
    fn from(f: FamilyArg) -> Self {
        use postmerge::families::{gold_yolo, yolox, DetectorFamily};
        match f {
            FamilyArg::YoloxRaw => yolox::RAW.family(),
            FamilyArg::YoloxDecoded => yolox::DECODED.family(),
            FamilyArg::GoldYolo => gold_yolo::GOLD_YOLO.family(),
        }
    }
}

/// `--names a,b,c` or `--names-file FILE` (clap makes them exclusive).
fn class_names(
    names: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<postmerge::detect::ClassNames>> {
    Ok(match (names, file) {
        (Some(n), _) => Some(postmerge::detect::parse_names(n)?),
        (None, Some(f)) => Some(postmerge::detect::read_names_file(f)?),
        (None, None) => None,
    })
}

fn load(p: &std::path::Path) -> Result<Model> {
    Model::load(p)
}

fn run(cli: Cli) -> Result<ExitCode> {
    ALLOW_NONFINITE.store(cli.allow_nonfinite, std::sync::atomic::Ordering::Relaxed);
    match cli.cmd {
        Cmd::Inspect { model, json } => {
            let m = load(&model)?;
            let r = postmerge::inspect::inspect(&m)
                .with_context(|| format!("cannot inspect `{}`", model.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", postmerge::inspect::render(&r));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Merge {
            input,
            output,
            nms,
            layout,
            agnostic,
            thresholds,
            opset,
            family,
            json,
            in_place,
            check,
            image,
            sizes,
            batch,
            quant_prep,
            input_format,
            names,
            names_file,
        } => {
            let jobs = plan_jobs(&input, &output, &sizes, batch.as_deref(), in_place)?;
            let names = class_names(names.as_deref(), names_file.as_deref())?;
            let mut opts = merge_options(nms, layout, agnostic, thresholds, opset, family);
            opts.normalize_boxes = quant_prep;
            // --check proves the result against what was asked for, not what the model records
            let requested = check.then(|| postmerge::check::Requested {
                score: Some(opts.score_threshold),
                iou: Some(opts.iou_threshold),
                max_per_class: usize::try_from(opts.max_per_class).ok(),
                max_det: Some(opts.max_det),
                agnostic: Some(opts.agnostic),
            });
            run_jobs(
                &input,
                jobs,
                json,
                move |m| {
                    if let Some(n) = &names {
                        postmerge::detect::store_names(m, n)?;
                    }
                    let rep = postmerge::passes::merge::merge(m, &opts)?;
                    let mut v = serde_json::json!({ "merge": serde_json::to_value(&rep)? });
                    apply_input_format(m, input_format, family, &mut v)?;
                    let mut sidecar = None;
                    if quant_prep {
                        let q = postmerge::passes::quant_prep::quant_prep(m, &Default::default())?;
                        v["quant_prep"] = serde_json::to_value(&q)?;
                        sidecar = Some(q.nodes_to_exclude);
                    }
                    Ok(JobOutput { report: v, sidecar })
                },
                requested,
                image,
            )
        }
        Cmd::QuantPrep {
            input,
            output,
            layout,
            nms,
            json,
            in_place,
            input_format,
        } => {
            let jobs = plan_jobs(&input, &output, &[], None, in_place)?;
            let mut opts = merge_options(
                nms,
                Some(layout.unwrap_or(LayoutArg::Decoded)),
                false,
                ThresholdsArg::Const,
                None,
                None,
            );
            opts.normalize_boxes = true;
            run_jobs(
                &input,
                jobs,
                json,
                move |m| {
                    let mut v = serde_json::json!({});
                    let head = postmerge::head::recognize(m, None)?;
                    if head.family != postmerge::families::Recognized::Merged {
                        v["merge"] =
                            serde_json::to_value(postmerge::passes::merge::merge(m, &opts)?)?;
                    } else {
                        v["note"] = "already merged: graph preparation only (boxes stay as the model computes them)".into();
                    }
                    apply_input_format(m, input_format, None, &mut v)?;
                    let q = postmerge::passes::quant_prep::quant_prep(m, &Default::default())?;
                    v["quant_prep"] = serde_json::to_value(&q)?;
                    Ok(JobOutput {
                        report: v,
                        sidecar: Some(q.nodes_to_exclude),
                    })
                },
                None,
                None,
            )
        }
        Cmd::Resize {
            input,
            output,
            sizes,
            batch,
            json,
            input_format,
        } => {
            let jobs = plan_jobs(&input, &output, &sizes, batch.as_deref(), false)?;
            run_jobs(
                &input,
                jobs,
                json,
                move |m| {
                    let mut v = serde_json::json!({});
                    apply_input_format(m, input_format, None, &mut v)?;
                    Ok(v.into())
                },
                None,
                None,
            )
        }
        Cmd::Check {
            original,
            merged,
            image,
            input,
            score,
            iou,
            max_per_class,
            max_det,
            json,
        } => {
            let o = load(&original)?;
            let m = load(&merged)?;
            refuse_nonfinite(&o, &original)?;
            refuse_nonfinite(&m, &merged)?;
            let input = match (image, input) {
                (Some(p), _) => postmerge::check::CheckInput::Image(p),
                (None, Some(p)) => postmerge::check::CheckInput::Npy(p),
                (None, None) => postmerge::check::CheckInput::Scenes,
            };
            let r = postmerge::check::check_against(
                &o,
                &m,
                &postmerge::check::CheckOptions {
                    input,
                    tol: Default::default(),
                },
                &postmerge::check::Requested {
                    score,
                    iou,
                    max_per_class,
                    max_det,
                    agnostic: None,
                },
            )
            .with_context(|| {
                format!(
                    "cannot check `{}` against `{}`",
                    merged.display(),
                    original.display()
                )
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", postmerge::check::render_report(&r));
            }
            Ok(ExitCode::from(r.status.exit_code()))
        }
        Cmd::Detect {
            model,
            image,
            output,
            json,
            score,
            iou,
            max_per_class,
            family,
            names,
            names_file,
        } => {
            check_output(&model, &output, false)?;
            let names = class_names(names.as_deref(), names_file.as_deref())?;
            check_output(&image, &output, false)?;
            let m = load(&model)?;
            let params = postmerge::postprocess::NmsParams {
                score_threshold: score,
                iou_threshold: iou,
                max_per_class,
                agnostic: false,
            };
            let fam = family.map(Into::into);
            let (r, img) = postmerge::detect::detect_with_names(&m, &image, fam, &params, names)
                .with_context(|| {
                    format!("cannot run `{}` on `{}`", model.display(), image.display())
                })?;
            postmerge::detect::save_png(&img, &output)
                .with_context(|| format!("cannot save `{}`", output.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} detections ({}) -> {}",
                    r.detections.len(),
                    r.how,
                    output.display()
                );
                for d in &r.detections {
                    println!(
                        "  class {:>3}{}  score {:.3}  box [{:.1}, {:.1}, {:.1}, {:.1}]",
                        d.class,
                        d.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
                        d.score,
                        d.bbox[0],
                        d.bbox[1],
                        d.bbox[2],
                        d.bbox[3]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Set {
            input,
            output,
            score,
            iou,
            max_per_class,
            json,
            in_place,
        } => {
            check_output(&input, &output, in_place)?;
            let mut m = load(&input)?;
            let opts = postmerge::passes::set::SetOptions {
                score_threshold: score,
                iou_threshold: iou,
                max_per_class,
            };
            let changes = postmerge::passes::set::set(&mut m, &opts)
                .with_context(|| format!("cannot retune `{}`", input.display()))?;
            m.save(&output, &Default::default())
                .with_context(|| format!("cannot save `{}`", output.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&changes)?);
            } else {
                for c in &changes {
                    println!(
                        "{}: {} `{}` {} -> {} ({})",
                        c.node, c.parameter, c.tensor, c.old, c.new, c.how
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Convert {
            input,
            output,
            external_data,
            in_place,
        } => {
            check_output(&input, &output, in_place)?;
            let m = load(&input)?;
            let opts = postmerge::model::SaveOptions {
                external_data,
                external_threshold: 1024,
            };
            m.save(&output, &opts)
                .with_context(|| format!("cannot save `{}`", output.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Diff { a, b, json } => {
            let ma = load(&a)?;
            let mb = load(&b)?;
            let d = postmerge::diff::diff(&ma, &mb)
                .with_context(|| format!("cannot diff `{}` and `{}`", a.display(), b.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", postmerge::diff::render(&d));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Render an error chain once: `error: top` then `  caused by: ...` per cause.
fn render_error(e: &anyhow::Error) -> String {
    let mut s = format!("error: {e}");
    for c in e.chain().skip(1) {
        s.push_str(&format!("\n  caused by: {c}"));
    }
    s
}

fn main() -> ExitCode {
    // SIGINT, SIGTERM (a pipeline's timeout) and SIGHUP: clean up, exit 130
    let _ = ctrlc::set_handler(on_interrupt);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let outcome = std::panic::catch_unwind(|| run(cli));
    // an interrupt being handled finishes first (exit 130)
    let _finishing = exit_lock();
    if postmerge::model::is_cancelled() {
        eprintln!("interrupted: stopped; unfinished temp files removed, outputs not yet renamed into place were not written");
        return ExitCode::from(130);
    }
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("{}", render_error(&e));
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("error: internal error (a bug in postmerge); please report it with the command and input");
            ExitCode::from(2)
        }
    }
}

/// The strings of a JSON array, joined with ", " (empty for anything else).
fn join_strs(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
