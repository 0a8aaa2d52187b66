//! `postmerge check`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::args::CheckArgs;
use crate::cli::{load, refuse_nonfinite};

pub fn run(a: CheckArgs) -> Result<ExitCode> {
    let CheckArgs {
        original,
        merged,
        image,
        input,
        score,
        iou,
        max_per_class,
        max_det,
        json,
    } = a;
    let o = load(&original)?;
    let m = load(&merged)?;
    refuse_nonfinite(&o, &original)?;
    refuse_nonfinite(&m, &merged)?;
    let input = match (image, input) {
        (Some(p), _) => postmerge::check::CheckInput::Image(p),
        (None, Some(p)) => postmerge::check::CheckInput::Npy(p),
        (None, None) => postmerge::check::CheckInput::Scenes,
    };
    let r = postmerge::check::check_against(
        &o,
        &m,
        &postmerge::check::CheckOptions {
            input,
            tol: Default::default(),
        },
        &postmerge::check::Requested {
            score,
            iou,
            max_per_class,
            max_det,
            agnostic: None,
        },
    )
    .with_context(|| {
        format!(
            "cannot check `{}` against `{}`",
            merged.display(),
            original.display()
        )
    })?;
    super::print_json_or(json, &r, postmerge::check::render_report)?;
    Ok(ExitCode::from(r.status.exit_code()))
}
