//! The `postmerge` binary's own modules: argument types ([`args`]), one function per subcommand
//! ([`commands`]), the all-or-nothing multi-output runner ([`jobs`]) and interrupt handling
//! ([`signals`]). The library never prints or exits; everything that does lives here.

pub mod args;
pub mod commands;
pub mod jobs;
pub mod signals;

use anyhow::Result;

use postmerge::model::Model;

pub use commands::run;

/// `--allow-nonfinite` of this run.
pub static ALLOW_NONFINITE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Refuse a model with NaN/Inf weights unless `--allow-nonfinite` was given.
pub fn refuse_nonfinite(m: &Model, path: &std::path::Path) -> Result<()> {
    // a malformed graph is reported as such by the subcommand itself (its message is the more
    // specific one)
    if ALLOW_NONFINITE.load(std::sync::atomic::Ordering::Relaxed)
        || postmerge::shape::validate_structure(m).is_err()
    {
        return Ok(());
    }
    postmerge::nonfinite::refuse(m, &format!("`{}`", path.display()))
}

pub fn load(p: &std::path::Path) -> Result<Model> {
    Model::load(p)
}

/// Refuse to overwrite the input unless asked to (and watch the output's folder for the interrupt
/// handler).
pub fn check_output(
    input: &std::path::Path,
    output: &std::path::Path,
    in_place: bool,
) -> Result<()> {
    signals::watch_output_dir(output);
    if !in_place && postmerge::model::same_file(input, output) {
        anyhow::bail!(
            "output `{}` is the input file; pass --in-place to overwrite it on purpose",
            output.display()
        );
    }
    Ok(())
}

/// `--names a,b,c` or `--names-file FILE` (clap makes them exclusive).
pub fn class_names(
    names: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<postmerge::detect::ClassNames>> {
    Ok(match (names, file) {
        (Some(n), _) => Some(postmerge::detect::parse_names(n)?),
        (None, Some(f)) => Some(postmerge::detect::read_names_file(f)?),
        (None, None) => None,
    })
}

/// The strings of a JSON array, joined with ", " (empty for anything else).
pub fn join_strs(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
