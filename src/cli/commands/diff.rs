//! `postmerge diff`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::args::DiffArgs;
use crate::cli::load;

pub fn run(a: DiffArgs) -> Result<ExitCode> {
    let DiffArgs { a, b, json } = a;
    let ma = load(&a)?;
    let mb = load(&b)?;
    let d = postmerge::diff::diff(&ma, &mb)
        .with_context(|| format!("cannot diff `{}` and `{}`", a.display(), b.display()))?;
    super::print_json_or(json, &d, postmerge::diff::render)?;
    Ok(ExitCode::SUCCESS)
}
