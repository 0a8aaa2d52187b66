//! Interrupt handling: SIGINT, SIGTERM and SIGHUP stop the run, remove this process's temp files
//! from the folders it writes into, and exit 130.

use std::path::PathBuf;

/// Folders this run writes into: on SIGINT/SIGTERM/SIGHUP the handler removes this process's temp
/// files from them before exiting (destructors do not run on `exit`).
static OUTPUT_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Remember `output`'s folder for the interrupt handler.
pub fn watch_output_dir(output: &std::path::Path) {
    let dir = postmerge::model::parent_dir(output).to_path_buf();
    let mut dirs = OUTPUT_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
}

/// Held by the interrupt handler from its start until `exit(130)`, and by the main thread while it
/// renames a multi-output run's files into place and before it reports its outcome: an interrupt
/// then either comes before the renames (nothing appears) or after all of them, and the exit code
/// is 130 rather than the error of a write whose temp file the handler just removed.
static EXIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Take [`EXIT_LOCK`] (a poisoned lock is still taken).
pub fn exit_lock() -> std::sync::MutexGuard<'static, ()> {
    EXIT_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The SIGINT/SIGTERM/SIGHUP handler (installed by `main`).
pub fn on_interrupt() {
    // Cooperative first: every write in progress stops with an error, the temp files go with their
    // destructors and main() exits 130. A run busy in a long computation (check runs the models)
    // gets a few seconds; then this thread removes the temp files itself and exits.
    postmerge::model::cancel();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _held_until_exit = exit_lock();
    let dirs = OUTPUT_DIRS
        .lock()
        .map(|d| d.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    let removed: usize = dirs
        .iter()
        .map(|d| postmerge::model::remove_own_temp_files(d))
        .sum();
    eprintln!(
        "interrupted: stopped; {removed} unfinished temp file(s) removed, outputs not yet renamed into place were not written"
    );
    std::process::exit(130);
}
