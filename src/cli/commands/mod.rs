//! One function per subcommand, and [`run`], which dispatches to them.

mod check;
mod convert;
mod detect;
mod diff;
mod inspect;
mod merge;
mod quant_prep;
mod resize;
mod set;

use std::process::ExitCode;

use anyhow::{Context, Result};

use postmerge::model::Model;

use super::args::{Cli, Cmd, FamilyArg, InputFormatArg, LayoutArg, NmsArgs, ThresholdsArg};

/// Run the parsed command line; the exit code of a run that did not fail.
pub fn run(cli: Cli) -> Result<ExitCode> {
    super::ALLOW_NONFINITE.store(cli.allow_nonfinite, std::sync::atomic::Ordering::Relaxed);
    match cli.cmd {
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Merge(a) => merge::run(a),
        Cmd::QuantPrep(a) => quant_prep::run(a),
        Cmd::Resize(a) => resize::run(a),
        Cmd::Check(a) => check::run(a),
        Cmd::Detect(a) => detect::run(a),
        Cmd::Set(a) => set::run(a),
        Cmd::Convert(a) => convert::run(a),
        Cmd::Diff(a) => diff::run(a),
    }
}

/// Print `r` as pretty JSON, or its text rendering.
fn print_json_or<T: serde::Serialize>(
    json: bool,
    r: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print!("{}", text(r));
    }
    Ok(())
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

/// The merge options of `merge` and `quant-prep`.
fn merge_options(
    nms: NmsArgs,
    layout: Option<LayoutArg>,
    agnostic: bool,
    thresholds: ThresholdsArg,
    opset: Option<i64>,
    family: Option<FamilyArg>,
) -> postmerge::passes::merge::MergeOptions {
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
        layout: layout.map(|l| l.0.with_k(max_det)),
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
