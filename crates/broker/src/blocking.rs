//! Running disk-bound work (fsyncs, creating files and directories) from async code without
//! stalling the worker thread that the connections on it share.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which may block on the disk for a long time (a metadata fsync, opening the fifty
/// partitions of `__consumer_offsets`), without stalling the async worker it is called from:
/// tokio hands the worker's other tasks to another thread meanwhile (`block_in_place`). Outside
/// a multi-threaded runtime (startup before the runtime, single-threaded tests) it just runs `f`.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a blocking section on one worker leaves the runtime serving other tasks: a task
    // spawned before it completes while it is still blocked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_blocking_section_does_not_stall_the_worker() {
        let (tx, rx) = std::sync::mpsc::channel();
        let other = tokio::spawn(async move {
            tx.send(()).unwrap();
        });
        blocking(|| {
            // With the only worker blocked in place, the spawned task still runs.
            rx.recv_timeout(std::time::Duration::from_secs(10))
                .expect("the other task ran while this one blocked");
        });
        other.await.unwrap();
    }

    // Proves it runs inline where block_in_place would panic.
    #[tokio::test(flavor = "current_thread")]
    async fn runs_inline_on_a_current_thread_runtime() {
        assert_eq!(blocking(|| 7), 7);
    }
}
