//! `postmerge merge`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::args::MergeArgs;
use crate::cli::class_names;
use crate::cli::jobs::{plan_jobs, run_jobs, JobOutput};

pub fn run(a: MergeArgs) -> Result<ExitCode> {
    let MergeArgs {
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
    } = a;
    let jobs = plan_jobs(&input, &output, &sizes, batch.as_deref(), in_place)?;
    let names = class_names(names.as_deref(), names_file.as_deref())?;
    let mut opts = super::merge_options(nms, layout, agnostic, thresholds, opset, family);
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
            super::apply_input_format(m, input_format, family, &mut v)?;
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
