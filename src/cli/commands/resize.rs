//! `postmerge resize`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::args::ResizeArgs;
use crate::cli::jobs::{plan_jobs, run_jobs};

pub fn run(a: ResizeArgs) -> Result<ExitCode> {
    let ResizeArgs {
        input,
        output,
        sizes,
        batch,
        json,
        input_format,
    } = a;
    let jobs = plan_jobs(&input, &output, &sizes, batch.as_deref(), false)?;
    run_jobs(
        &input,
        jobs,
        json,
        move |m| {
            let mut v = serde_json::json!({});
            super::apply_input_format(m, input_format, None, &mut v)?;
            Ok(v.into())
        },
        None,
        None,
    )
}
