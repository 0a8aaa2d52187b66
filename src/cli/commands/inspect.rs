//! `postmerge inspect`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::args::InspectArgs;
use crate::cli::load;

pub fn run(a: InspectArgs) -> Result<ExitCode> {
    let InspectArgs { model, json } = a;
    let m = load(&model)?;
    let r = postmerge::inspect::inspect(&m)
        .with_context(|| format!("cannot inspect `{}`", model.display()))?;
    super::print_json_or(json, &r, postmerge::inspect::render)?;
    Ok(ExitCode::SUCCESS)
}
