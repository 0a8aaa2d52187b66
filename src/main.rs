//! The `postmerge` command line: parses arguments, calls the library, renders results.
//! Exit codes: 0 ok, 1 check mismatch, 2 error, 3 check not proven (a step compared nothing),
//! 130 interrupted (SIGINT/SIGTERM/SIGHUP).

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Render an error chain once: `error: top` then `  caused by: ...` per cause.
fn render_error(e: &anyhow::Error) -> String {
    let mut s = format!("error: {e}");
    for c in e.chain().skip(1) {
        s.push_str(&format!("\n  caused by: {c}"));
    }
    s
}

fn main() -> ExitCode {
    // SIGINT, SIGTERM (a pipeline's timeout) and SIGHUP: clean up, exit 130
    let _ = ctrlc::set_handler(cli::signals::on_interrupt);
    let args = match cli::args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // the arguments hold only `&'static` registry entries (immutable) besides plain values
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cli::run(args)));
    // an interrupt being handled finishes first (exit 130)
    let _finishing = cli::signals::exit_lock();
    if postmerge::model::is_cancelled() {
        eprintln!("interrupted: stopped; unfinished temp files removed, outputs not yet renamed into place were not written");
        return ExitCode::from(130);
    }
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("{}", render_error(&e));
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("error: internal error (a bug in postmerge); please report it with the command and input");
            ExitCode::from(2)
        }
    }
}
