//! The `postmerge` command line: parses arguments, calls the library, renders results.
//! Exit codes: 0 ok, 1 check mismatch, 2 error.

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
    after_help = "Examples:\n  postmerge inspect yolox_nano.onnx\n  postmerge diff a.onnx b.onnx --json\n\nExit codes: 0 ok, 1 check mismatch, 2 error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show IR/opsets, I/O, op histogram, parameters, the recognized detection head and the
    /// constants baked from the input resolution.
    #[command(after_help = "Examples:\n  postmerge inspect tests/fixtures/yolox_nano_640x640.onnx\n  postmerge inspect model.onnx --json | jq .head.family")]
    Inspect {
        /// Model to inspect (.onnx; external data is read from its folder)
        model: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Append decode + score threshold + NonMaxSuppression so the model outputs final detections.
    #[command(after_help = "Examples:\n  postmerge merge yolox_nano.onnx -o yolox_nano_post.onnx\n  postmerge merge gold_yolo_n.onnx -o e2e.onnx --layout trt --max-det 100\n  postmerge merge model.onnx -o m.onnx --thresholds inputs --score 0.3 --iou 0.5\n\nDefaults follow PINTO's published models: --max-per-class 20 --iou 0.40 --score 0.25.\nLayouts: pinto (YOLOX default) batchno_classid_score_x1y1x2y2 [N,7]; pinto-goldyolo (Gold-YOLO\ndefault) batchno_classid_x1y1x2y2_score [N,7]; trt num_dets/det_boxes/det_scores/det_classes;\nultralytics output0 [B,K,6]; decoded boxes [B,N,4] + scores [B,N,C] (no NMS).")]
    Merge {
        /// Exported model (YOLOX raw or decoded head, Gold-YOLO / YOLOv6)
        input: PathBuf,
        /// Output path (written atomically)
        #[arg(short, long)]
        output: PathBuf,
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
        /// After writing, check the result with tract against the Rust reference (exit 1 on mismatch)
        #[arg(long)]
        check: bool,
        /// Photo for --check (default: a deterministic synthetic input)
        #[arg(long, requires = "check")]
        image: Option<PathBuf>,
    },
    /// Prove a merged model by running it and the original with tract on the same input.
    #[command(after_help = "Examples:\n  postmerge check yolox_nano.onnx yolox_nano_post.onnx\n  postmerge check gold_yolo_n.onnx merged.onnx --image photo.jpg --json\n\nSteps: (1) original head output vs the same tensor inside MERGED (relative tolerance 1e-4);\n(2) MERGED's appended post-process vs the Rust reference on identical pre-NMS tensors\n(boxes <= 1e-3 px, scores <= 1e-5); (3) final detections vs the reference on the original's\noutput, matched by class and IoU >= 0.9 for scores clear of the threshold.\nExit codes: 0 equal, 1 mismatch, 2 error.")]
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
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Run a model on a photo and draw the detections into a PNG.
    #[command(after_help = "Examples:\n  postmerge detect yolox_nano_post.onnx dog.jpg -o dog_dets.png\n  postmerge detect gold_yolo_n.onnx image1.jpg -o out.png --json\n\nMerged models use their own NMS; raw exports are post-processed in Rust with --score/--iou/--max-per-class.")]
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
    },
    /// Retune the NMS parameters of an already merged model (ours, PINTO's, YOLOv6 --end2end --ort).
    #[command(after_help = "Examples:\n  postmerge set merged.onnx -o retuned.onnx --score 0.3 --iou 0.5 --max-per-class 50\n  postmerge set merged.onnx -o merged.onnx --in-place --score 0.35")]
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
    #[command(after_help = "Examples:\n  postmerge convert model.onnx -o copy.onnx\n  postmerge convert big.onnx -o out/big.onnx --external-data big.onnx.data")]
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
    #[command(after_help = "Examples:\n  postmerge diff model_640x640.onnx model_128x160.onnx\n  postmerge diff original.onnx merged.onnx --json > review.json\n\nExit code is 0 whether or not the models differ.")]
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

/// Refuse to overwrite the input unless asked to.
fn check_output(input: &std::path::Path, output: &std::path::Path, in_place: bool) -> Result<()> {
    if !in_place && postmerge::model::same_file(input, output) {
        anyhow::bail!("output `{}` is the input file; pass --in-place to overwrite it on purpose", output.display());
    }
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Pinto,
    PintoGoldyolo,
    Trt,
    Ultralytics,
    Decoded,
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

fn load(p: &PathBuf) -> Result<Model> {
    Model::load(p)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Inspect { model, json } => {
            let m = load(&model)?;
            let r = postmerge::inspect::inspect(&m).with_context(|| format!("cannot inspect `{}`", model.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", postmerge::inspect::render(&r));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Merge { input, output, score, iou, max_per_class, max_det, layout, agnostic, thresholds, opset, family, json, in_place, check, image } => {
            use postmerge::postprocess::Layout;
            check_output(&input, &output, in_place)?;
            let mut m = load(&input)?;
            let opts = postmerge::passes::merge::MergeOptions {
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
                family: family.map(|f| match f {
                    FamilyArg::YoloxRaw => postmerge::head::Family::YoloxRaw,
                    FamilyArg::YoloxDecoded => postmerge::head::Family::YoloxDecoded,
                    FamilyArg::GoldYolo => postmerge::head::Family::GoldYolo,
                }),
            };
            let original = if check { Some(m.clone()) } else { None };
            let rep = postmerge::passes::merge::merge(&mut m, &opts).with_context(|| format!("cannot merge `{}`", input.display()))?;
            m.save(&output, &Default::default()).with_context(|| format!("cannot save `{}`", output.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                for n in &rep.notes {
                    eprintln!("note: {n}");
                }
                eprintln!("merged {:?} head: layout {}, opset {}, {} nodes appended -> {} ({})", rep.family, rep.layout, rep.opset, rep.appended_nodes, output.display(), rep.outputs.join(", "));
            }
            if let Some(original) = original {
                let written = load(&output)?;
                let input = match image {
                    Some(p) => postmerge::check::CheckInput::Image(p),
                    None => postmerge::check::CheckInput::Synthetic,
                };
                let r = postmerge::check::check_models(&original, &written, &postmerge::check::CheckOptions { input, tol: Default::default() })?;
                eprint!("{}", postmerge::check::render_report(&r));
                if !r.ok {
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { original, merged, image, input, json } => {
            let o = load(&original)?;
            let m = load(&merged)?;
            let input = match (image, input) {
                (Some(p), _) => postmerge::check::CheckInput::Image(p),
                (None, Some(p)) => postmerge::check::CheckInput::Npy(p),
                (None, None) => postmerge::check::CheckInput::Synthetic,
            };
            let r = postmerge::check::check_models(&o, &m, &postmerge::check::CheckOptions { input, tol: Default::default() })
                .with_context(|| format!("cannot check `{}` against `{}`", merged.display(), original.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", postmerge::check::render_report(&r));
            }
            Ok(if r.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Detect { model, image, output, json, score, iou, max_per_class, family } => {
            let m = load(&model)?;
            let params = postmerge::postprocess::NmsParams { score_threshold: score, iou_threshold: iou, max_per_class, agnostic: false };
            let fam = family.map(|f| match f {
                FamilyArg::YoloxRaw => postmerge::head::Family::YoloxRaw,
                FamilyArg::YoloxDecoded => postmerge::head::Family::YoloxDecoded,
                FamilyArg::GoldYolo => postmerge::head::Family::GoldYolo,
            });
            let (r, img) = postmerge::detect::detect(&m, &image, fam, &params).with_context(|| format!("cannot run `{}` on `{}`", model.display(), image.display()))?;
            postmerge::detect::save_png(&img, &output).with_context(|| format!("cannot save `{}`", output.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{} detections ({}) -> {}", r.detections.len(), r.how, output.display());
                for d in &r.detections {
                    println!("  class {:>3}  score {:.3}  box [{:.1}, {:.1}, {:.1}, {:.1}]", d.class, d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Set { input, output, score, iou, max_per_class, json, in_place } => {
            check_output(&input, &output, in_place)?;
            let mut m = load(&input)?;
            let opts = postmerge::passes::set::SetOptions { score_threshold: score, iou_threshold: iou, max_per_class };
            let changes = postmerge::passes::set::set(&mut m, &opts).with_context(|| format!("cannot retune `{}`", input.display()))?;
            m.save(&output, &Default::default()).with_context(|| format!("cannot save `{}`", output.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&changes)?);
            } else {
                for c in &changes {
                    println!("{}: {} `{}` {} -> {} ({})", c.node, c.parameter, c.tensor, c.old, c.new, c.how);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Convert { input, output, external_data, in_place } => {
            check_output(&input, &output, in_place)?;
            let m = load(&input)?;
            let opts = postmerge::model::SaveOptions { external_data, external_threshold: 1024 };
            m.save(&output, &opts).with_context(|| format!("cannot save `{}`", output.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Diff { a, b, json } => {
            let ma = load(&a)?;
            let mb = load(&b)?;
            let d = postmerge::diff::diff(&ma, &mb).with_context(|| format!("cannot diff `{}` and `{}`", a.display(), b.display()))?;
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
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match std::panic::catch_unwind(|| run(cli)) {
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
