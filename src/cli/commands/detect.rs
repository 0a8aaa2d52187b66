//! `postmerge detect`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::args::DetectArgs;
use crate::cli::{check_output, class_names, load};

pub fn run(a: DetectArgs) -> Result<ExitCode> {
    let DetectArgs {
        model,
        image,
        output,
        json,
        score,
        iou,
        max_per_class,
        family,
        names,
        names_file,
    } = a;
    check_output(&model, &output, false)?;
    let names = class_names(names.as_deref(), names_file.as_deref())?;
    check_output(&image, &output, false)?;
    let m = load(&model)?;
    let params = postmerge::postprocess::NmsParams {
        score_threshold: score,
        iou_threshold: iou,
        max_per_class,
        agnostic: false,
    };
    let fam = family.map(Into::into);
    let (r, img) = postmerge::detect::detect_with_names(&m, &image, fam, &params, names)
        .with_context(|| format!("cannot run `{}` on `{}`", model.display(), image.display()))?;
    postmerge::detect::save_png(&img, &output)
        .with_context(|| format!("cannot save `{}`", output.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} detections ({}) -> {}",
            r.detections.len(),
            r.how,
            output.display()
        );
        for d in &r.detections {
            println!(
                "  class {:>3}{}  score {:.3}  box [{:.1}, {:.1}, {:.1}, {:.1}]",
                d.class,
                d.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
                d.score,
                d.bbox[0],
                d.bbox[1],
                d.bbox[2],
                d.bbox[3]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
