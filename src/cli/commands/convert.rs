//! `postmerge convert`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::args::ConvertArgs;
use crate::cli::{check_output, load};

pub fn run(a: ConvertArgs) -> Result<ExitCode> {
    let ConvertArgs {
        input,
        output,
        external_data,
        in_place,
    } = a;
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
