//! Fail points for crash tests: named places where the broker can be made to die as `kill -9`
//! would kill it (no flush, no cleanup, no unwinding), to prove that what it acknowledged
//! survives and what it left half done is finished or undone after a restart.
//!
//! The environment variable `RUNNEL_FAILPOINTS` names the points to arm, comma-separated; it
//! is read once, at the first check. Unarmed (the variable unset, the normal case), a check
//! costs one load of an initialised `OnceLock` and an empty-list test.
//!
//! The points:
//!
//! - `txn.after_prepare`: a transaction's PrepareCommit/PrepareAbort record is committed to
//!   `__transaction_state`, no marker is written yet. After a restart the coordinator finds
//!   the transaction prepared and writes its markers and its completion.
//! - `txn.between_markers`: the first partition's marker is durable, the next ones are not
//!   written (armed, markers are written one partition at a time so there is a "between").
//! - `txn.before_complete`: every marker is durable, the CompleteCommit/CompleteAbort record is
//!   not written.

use std::sync::OnceLock;

/// The armed points, read once from `RUNNEL_FAILPOINTS`.
fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("RUNNEL_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Whether the point `name` is armed (for code that changes how it works so the point exists).
pub fn is_armed(name: &str) -> bool {
    let armed = armed();
    !armed.is_empty() && armed.iter().any(|a| a == name)
}

/// Dies here, at once and without cleanup, if the point `name` is armed.
pub fn failpoint(name: &str) {
    if is_armed(name) {
        eprintln!("fail point {name} reached: killing the process");
        // SIGKILL to ourselves: the process ends as `kill -9` ends it, nothing flushed.
        // SAFETY: kill(2) with our own pid and a valid signal has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // Not reached; if the signal could not be sent, abort without cleanup either.
        std::process::abort();
    }
}
