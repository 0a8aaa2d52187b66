//! Multi-output runs of merge / resize / quant-prep: sizes × output pattern → [`Job`]s, run in
//! parallel and all or nothing ([`run_jobs`]), then the text or JSON summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use postmerge::check::Requested;
use postmerge::model::{Model, Staged};

use super::signals::exit_lock;
use super::{check_output, join_strs, load, refuse_nonfinite};

/// One output of a multi-size run.
pub struct Job {
    pub size: Option<(i64, i64)>,
    pub batch: Option<postmerge::passes::resize::BatchSpec>,
    pub output: PathBuf,
}

fn parse_batch(b: Option<&str>) -> Result<Option<postmerge::passes::resize::BatchSpec>> {
    use postmerge::passes::resize::BatchSpec;
    Ok(match b {
        None => None,
        Some("dynamic") | Some("dyn") | Some("N") => Some(BatchSpec::Dynamic),
        Some(v) => Some(BatchSpec::Static(v.parse().map_err(|_| {
            anyhow::anyhow!("--batch `{v}` is neither a number nor `dynamic`")
        })?)),
    })
}

/// Sizes × output pattern → jobs; validates before any work.
pub fn plan_jobs(
    input: &Path,
    output: &str,
    sizes: &[String],
    batch: Option<&str>,
    in_place: bool,
) -> Result<Vec<Job>> {
    let batch = parse_batch(batch)?;
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parsed = Vec::new();
    for s in sizes {
        parsed.push(Some(postmerge::passes::resize::parse_size(s)?));
    }
    if parsed.is_empty() {
        parsed.push(None);
    }
    if parsed.len() > 1 && !(output.contains("{h}") && output.contains("{w}")) {
        anyhow::bail!("{} sizes need an output pattern with {{h}} and {{w}}, e.g. -o 'out/{{stem}}_{{h}}x{{w}}.onnx' (got `{output}`)", parsed.len());
    }
    let mut jobs: Vec<Job> = Vec::new();
    for size in parsed {
        let (h, w) = size
            .map(|(h, w)| (h.to_string(), w.to_string()))
            .unwrap_or_default();
        let out = PathBuf::from(
            output
                .replace("{h}", &h)
                .replace("{w}", &w)
                .replace("{stem}", &stem),
        );
        check_output(input, &out, in_place)?;
        if jobs.iter().any(|j| j.output == out) {
            anyhow::bail!("two sizes write the same file `{}`", out.display());
        }
        jobs.push(Job {
            size,
            batch: batch.clone(),
            output: out,
        });
    }
    Ok(jobs)
}

/// What a job's transformation returns besides the edited model.
pub struct JobOutput {
    pub report: serde_json::Value,
    /// Node names for the `OUT.nodes_to_exclude.json` sidecar (quant-prep).
    pub sidecar: Option<Vec<String>>,
}

impl From<serde_json::Value> for JobOutput {
    fn from(report: serde_json::Value) -> Self {
        JobOutput {
            report,
            sidecar: None,
        }
    }
}

/// What one job leaves: its report and its staged (not yet renamed) files.
type Done = (serde_json::Value, Vec<Staged>);

/// Run every job (one output each) in parallel, all or nothing: every output is first written to
/// a temp file next to its destination (and checked, with `--check`); only when every job has
/// succeeded are they renamed into place. If one fails, no output is written.
/// Each job resizes (when it has a size or batch) then applies `then`; the input is decoded once
/// and shared (weights are reference-counted, not copied).
pub fn run_jobs<F>(
    input: &Path,
    jobs: Vec<Job>,
    json: bool,
    then: F,
    check: Option<Requested>,
    image: Option<PathBuf>,
) -> Result<ExitCode>
where
    F: Fn(&mut Model) -> Result<JobOutput> + Sync,
{
    let base = load(input)?;
    refuse_nonfinite(&base, input)?;
    postmerge::passes::input_format::ensure_float_input(&base)?;
    let results = run_parallel(&jobs, |job| {
        run_job(&base, input, job, &then, check, image.as_deref())
    });
    let mut failed = Vec::new();
    let mut values = Vec::new();
    let mut staged = Vec::new();
    for (i, r) in results {
        match r {
            Ok((v, s)) => {
                values.push(v);
                staged.extend(s);
            }
            Err(e) => failed.push((i, e)),
        }
    }
    if !failed.is_empty() {
        drop(staged); // deletes every temp file: no output of this run appears
        return fail(&jobs, failed);
    }
    {
        let _no_interrupt_midway = exit_lock();
        if postmerge::model::is_cancelled() {
            anyhow::bail!("interrupted");
        }
        postmerge::model::commit_all(staged)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else {
        for v in &values {
            print_summary(v);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `one` for every job on up to `available_parallelism` threads (no new job starts once the
/// run is cancelled), with `[k/total]` progress on a terminal; the results in job order.
fn run_parallel<F>(jobs: &[Job], one: F) -> Vec<(usize, Result<Done>)>
where
    F: Fn(&Job) -> Result<Done> + Sync,
{
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let total = jobs.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Done>)>> = Mutex::new(Vec::new());
    let tty = std::io::stderr().is_terminal();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(total)
        .max(1);
    std::thread::scope(|sc| {
        for _ in 0..workers {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total || postmerge::model::is_cancelled() {
                    break;
                }
                let job = &jobs[i];
                let r = one(job);
                let k = done.fetch_add(1, Ordering::SeqCst) + 1;
                if tty && total > 1 {
                    eprintln!(
                        "[{k}/{total}] {} {}",
                        if r.is_ok() { "ready" } else { "FAILED" },
                        job.output.display()
                    );
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results
}

/// One job: resize a copy of `base` if asked, apply `then`, stage its files next to the output
/// (and prove the written model with `--check`).
fn run_job<F>(
    base: &Model,
    input: &Path,
    job: &Job,
    then: &F,
    check: Option<Requested>,
    image: Option<&Path>,
) -> Result<Done>
where
    F: Fn(&mut Model) -> Result<JobOutput>,
{
    let mut m = base.clone();
    let mut report = serde_json::Map::new();
    report.insert("output".into(), job.output.display().to_string().into());
    if job.size.is_some() || job.batch.is_some() {
        report.insert("resize".into(), resize_job(&mut m, input, job)?);
    }
    let original = if check.is_some() {
        Some(m.clone())
    } else {
        None
    };
    let out = then(&mut m).with_context(|| format!("cannot process `{}`", input.display()))?;
    if let serde_json::Value::Object(extra) = out.report {
        report.extend(extra);
    }
    let mut staged = Vec::new();
    if let Some(nodes) = &out.sidecar {
        staged.push(stage_sidecar(&job.output, nodes)?);
    }
    let model_files = m
        .stage(&job.output, &Default::default())
        .with_context(|| format!("cannot save `{}`", job.output.display()))?;
    let written_at = model_files.last().map(|s| s.temp_path().to_path_buf());
    staged.extend(model_files);
    if let (Some(o), Some(written_at)) = (original, written_at) {
        let requested = check.unwrap_or_default();
        check_job(&o, &written_at, job, &requested, image, &mut report)?;
    }
    Ok((serde_json::Value::Object(report), staged))
}

/// Re-specialize `m` to the job's size (default: its own) and batch; the resize report.
fn resize_job(m: &mut Model, input: &Path, job: &Job) -> Result<serde_json::Value> {
    let (h, w) = match job.size {
        Some(hw) => hw,
        None => {
            let head = postmerge::head::recognize(m, None)?;
            (head.height.unwrap_or(0), head.width.unwrap_or(0))
        }
    };
    let rep = postmerge::passes::resize::resize(
        m,
        &postmerge::passes::resize::ResizeOptions {
            height: h,
            width: w,
            batch: job.batch.clone(),
        },
    )
    .with_context(|| format!("cannot re-specialize `{}` to {h}x{w}", input.display()))?;
    Ok(serde_json::to_value(&rep)?)
}

/// `--check` of one job: read the model back from its temp file `written_at` and prove it against
/// `original`; a failed or unproven check is the job's error.
fn check_job(
    original: &Model,
    written_at: &Path,
    job: &Job,
    requested: &Requested,
    image: Option<&Path>,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let mut written = load(written_at)?;
    // read back from its temp file; report it under the name it will have
    written.source = job.output.display().to_string();
    let inp = match image {
        Some(p) => postmerge::check::CheckInput::Image(p.to_path_buf()),
        None => postmerge::check::CheckInput::Scenes,
    };
    let r = postmerge::check::check_against(
        original,
        &written,
        &postmerge::check::CheckOptions {
            input: inp,
            tol: Default::default(),
        },
        requested,
    )?;
    report.insert("check".into(), serde_json::to_value(&r)?);
    report.insert(
        "check_text".into(),
        postmerge::check::render_report(&r).into(),
    );
    match r.status {
        postmerge::check::Status::Passed => Ok(()),
        postmerge::check::Status::Failed => anyhow::bail!(
            "check FAILED for `{}`:\n{}",
            job.output.display(),
            postmerge::check::render_report(&r)
        ),
        postmerge::check::Status::NotProven => anyhow::bail!(
            "check NOT PROVEN for `{}`:\n{}",
            job.output.display(),
            postmerge::check::render_report(&r)
        ),
    }
}

/// The outcome of a run in which the `failed` jobs failed (nothing was written): one output that
/// failed other than by its check is that error; failed checks are listed on stderr and exit 1
/// (3 when all are not proven); other failures are one error that lists them all.
fn fail(jobs: &[Job], mut failed: Vec<(usize, anyhow::Error)>) -> Result<ExitCode> {
    let total = jobs.len();
    let is_check = |e: &anyhow::Error| {
        let e = e.to_string();
        e.starts_with("check FAILED") || e.starts_with("check NOT PROVEN")
    };
    if total == 1 && !is_check(&failed[0].1) {
        return Err(failed.remove(0).1);
    }
    let check_failed = failed.iter().any(|(_, e)| is_check(e));
    let only_not_proven = failed
        .iter()
        .all(|(_, e)| e.to_string().starts_with("check NOT PROVEN"));
    let failed: Vec<String> = failed
        .into_iter()
        .map(|(i, e)| format!("{}: {}", jobs[i].output.display(), crate::render_error(&e)))
        .collect();
    let msg = failed.join("\n");
    let nothing = if total > 1 {
        format!("no output written (all {total} outputs are written only when all succeed)")
    } else {
        "no output written".to_string()
    };
    if check_failed {
        eprintln!("{msg}\n{nothing}");
        return Ok(ExitCode::from(if only_not_proven {
            postmerge::check::Status::NotProven.exit_code()
        } else {
            postmerge::check::Status::Failed.exit_code()
        }));
    }
    anyhow::bail!(
        "{} of {total} outputs failed; {nothing}:\n{msg}",
        failed.len()
    )
}

/// The text summary of one written output (`v` is its JSON report).
fn print_summary(v: &serde_json::Value) {
    let out = v["output"].as_str().unwrap_or("?");
    if let Some(q) = v.get("quant_prep") {
        println!("{out}: prepared for INT8 (opset {}): {} nodes to exclude (sidecar {}), {} folded, {} value_info", q["opset_to"], q["nodes_to_exclude"].as_array().map(|a| a.len()).unwrap_or(0), Path::new(out).with_extension("nodes_to_exclude.json").display(), q["folded_nodes"], q["value_info"]);
    }
    if let Some(mr) = v.get("merge") {
        let mut mr = mr.clone();
        if let Some(q) = v.get("quant_prep") {
            mr["opset"] = q["opset_to"].clone();
        }
        if mr.get("layout").is_some() {
            for n in mr["notes"].as_array().into_iter().flatten() {
                eprintln!("note: {}", n.as_str().unwrap_or(""));
            }
            println!(
                "{out}: merged {} head, layout {}, opset {}, {} nodes appended ({})",
                mr["family"].as_str().unwrap_or("?"),
                mr["layout"].as_str().unwrap_or("?"),
                mr["opset"],
                mr["appended_nodes"],
                join_strs(&mr["outputs"])
            );
        }
    }
    if let Some(f) = v.get("input_format") {
        println!(
            "{out}: input `{}` takes uint8 {} frames {} (was {}); prepended {}",
            f["input"].as_str().unwrap_or("?"),
            f["format"].as_str().unwrap_or("?"),
            f["to_shape"].as_str().unwrap_or("?"),
            f["from_shape"].as_str().unwrap_or("?"),
            join_strs(&f["prepended"])
        );
    }
    if let Some(c) = v.get("check_text") {
        eprint!("{}", c.as_str().unwrap_or(""));
    }
    if let Some(r) = v.get("resize") {
        println!(
            "{out}: {}x{} -> {}x{}, batch {} -> {}, N {} -> {}, {} constants rewritten",
            r["from"][0],
            r["from"][1],
            r["to"][0],
            r["to"][1],
            r["batch_from"].as_str().unwrap_or(""),
            r["batch_to"].as_str().unwrap_or(""),
            r["boxes_from"],
            r["boxes_to"],
            r["rewrites"].as_array().map(|a| a.len()).unwrap_or(0)
        );
    } else if v.get("merge").is_none() && v.get("quant_prep").is_none() {
        println!("{out}: written");
    }
}

/// `out.onnx` → `out.nodes_to_exclude.json`, a JSON list quantize_static accepts as is.
fn stage_sidecar(output: &Path, nodes: &[String]) -> Result<Staged> {
    let p = output.with_extension("nodes_to_exclude.json");
    let text = serde_json::to_string_pretty(nodes)? + "\n";
    postmerge::model::stage_with(&p, |f| {
        use std::io::Write;
        Ok(f.write_all(text.as_bytes())?)
    })
    .with_context(|| format!("cannot write `{}`", p.display()))
}
