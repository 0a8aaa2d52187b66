//! `postmerge quant-prep`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::args::{LayoutArg, QuantPrepArgs, ThresholdsArg};
use crate::cli::jobs::{plan_jobs, run_jobs, JobOutput};

pub fn run(a: QuantPrepArgs) -> Result<ExitCode> {
    let QuantPrepArgs {
        input,
        output,
        layout,
        nms,
        json,
        in_place,
        input_format,
    } = a;
    let jobs = plan_jobs(&input, &output, &[], None, in_place)?;
    let mut opts = super::merge_options(
        nms,
        Some(layout.unwrap_or(LayoutArg::DECODED)),
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
                v["merge"] = serde_json::to_value(postmerge::passes::merge::merge(m, &opts)?)?;
            } else {
                v["note"] = "already merged: graph preparation only (boxes stay as the model computes them)".into();
            }
            super::apply_input_format(m, input_format, None, &mut v)?;
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
