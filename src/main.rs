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
