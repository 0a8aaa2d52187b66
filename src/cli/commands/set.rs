//! `postmerge set`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::args::SetArgs;
use crate::cli::{check_output, load};

pub fn run(a: SetArgs) -> Result<ExitCode> {
    let SetArgs {
        input,
        output,
        score,
        iou,
        max_per_class,
        json,
        in_place,
    } = a;
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
