//! `runnel` under `strace`, and an audit of its trace: which log writes each successful fsync
//! covered and whether any produce answer reached the socket before. Shared by the fsync-mode
//! and pipelining tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A skipped strace check must be asked for, never silent: `./run-tests` installs strace
/// (compat-tests/setup.sh) before the cargo tests run.
pub fn require_strace(what: &str) {
    assert!(
        std::env::var_os("RUNNEL_TEST_ALLOW_NO_STRACE").is_some(),
        "strace is missing or cannot trace here; install it (compat-tests/setup.sh does) \
         or set RUNNEL_TEST_ALLOW_NO_STRACE=1 to skip this check knowingly"
    );
    eprintln!("strace is not usable here; skipping {what}");
}

/// `runnel` running under `strace`, which logs its log writes, fsyncs and socket writes.
pub struct Traced {
    strace: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Traced {
    /// A connection to the traced broker; reads time out after 30 s (strace slows it down).
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream
    }

    fn trace_path(&self) -> std::path::PathBuf {
        self.dir.path().join("strace.txt")
    }

    /// Kills the broker (strace's child) and waits for strace to finish writing the trace.
    pub fn stop(mut self) -> String {
        self.kill_broker();
        let _ = self.strace.wait();
        std::fs::read_to_string(self.trace_path()).expect("strace output")
    }

    /// SIGKILLs strace's children: the broker. (Killing only strace would detach the broker
    /// and leave it running.)
    fn kill_broker(&self) {
        let children = format!("/proc/{0}/task/{0}/children", self.strace.id());
        let mut pids = String::new();
        let _ = std::fs::File::open(&children).and_then(|mut f| f.read_to_string(&mut pids));
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").arg("-KILL").arg(pid).status();
        }
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        // A failed test drops it without `stop`.
        self.kill_broker();
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

/// What every fsync of the traced broker takes at least: a disk without a volatile write cache.
/// Group commit can only group batches that arrive while an fsync runs; a test machine's disk
/// may fsync faster than a traced broker reads a request, which would leave nothing to group
/// and make the count depend on the machine.
pub const FSYNC_DELAY_US: u32 = 10_000;

/// Starts `runnel` under strace, every fsync delayed by `fsync_delay_us` if given. `None` if
/// strace is missing or cannot trace here: the caller must then call `require_strace`.
pub fn start_traced(fsync_delay_us: Option<u32>) -> Option<Traced> {
    start_traced_with_config("", fsync_delay_us)
}

/// [`start_traced`] with this `runnel.toml`.
pub fn start_traced_with_config(config_toml: &str, fsync_delay_us: Option<u32>) -> Option<Traced> {
    if Command::new("strace").arg("-V").output().is_err() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = crate::common::free_port();
    let config = dir.path().join("runnel.toml");
    std::fs::write(&config, config_toml).expect("write config");
    let log = std::fs::File::create(dir.path().join("runnel.log")).expect("log file");
    let strace = Command::new("strace")
        .args(["-f", "-qq", "-y", "-o"])
        .arg(dir.path().join("strace.txt"))
        .args([
            "-e",
            "trace=write,pwrite64,pwritev,pwritev2,writev,sendto,sendmsg,fsync,fdatasync",
        ])
        .args(fsync_delay_us.into_iter().flat_map(|us| {
            [
                "-e".to_owned(),
                format!("inject=fsync,fdatasync:delay_exit={us}"),
            ]
        }))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_runnel"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn strace");
    let mut traced = Traced { strace, port, dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Ready once this broker says it listens: a connect alone could reach another test's
    // broker on a reused port while ours failed to bind.
    let ready = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("runnel.log"))
            .is_ok_and(|log| log.contains("runnel is ready"))
    };
    while !ready(traced.dir.path()) || TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = traced.strace.try_wait().expect("try_wait") {
            // ptrace may be forbidden here (a container without CAP_SYS_PTRACE).
            let log = std::fs::read_to_string(traced.dir.path().join("runnel.log"));
            eprintln!("strace exited with {status} ({log:?}); skipping");
            return None;
        }
        assert!(Instant::now() < deadline, "traced runnel did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(traced)
}

/// What a trace shows about one partition's log file and the client sockets, for a run where
/// every log write is one produce's batch and every socket write after the first log write is
/// one produce's answer, both in request order.
#[derive(Default)]
pub struct Audit {
    /// Writes to the partition's `.log` seen so far.
    pub log_writes: u64,
    /// `log_writes` when the last successful fsync of the `.log` *started*: what it covers.
    pub synced: u64,
    /// Successful fsyncs of the `.log` that started after its first write.
    pub fsyncs: u64,
    /// fsyncs in progress, by thread: the `log_writes` they cover.
    fsyncs_running: HashMap<String, u64>,
    /// Socket writes after the first log write: answer `n` answers the `n`th batch.
    pub answers: u64,
    /// Answers sent before an fsync covered the batch they answer.
    pub early_answers: Vec<String>,
}

impl Audit {
    pub fn line(&mut self, line: &str, log_file: &str) {
        let Some((pid, call)) = line.split_once(' ') else {
            return;
        };
        // Injected delays mark the result: `= 0 (DELAYED)`.
        let call = call.trim_start().trim_end_matches(" (DELAYED)");
        let is_fsync = call.starts_with("fdatasync(") || call.starts_with("fsync(");
        if is_fsync && call.contains(log_file) {
            if call.ends_with("<unfinished ...>") {
                self.fsyncs_running.insert(pid.to_owned(), self.log_writes);
            } else if call.ends_with("= 0") {
                self.fsync_done(self.log_writes);
            }
        } else if call.starts_with("<... fdatasync resumed>")
            || call.starts_with("<... fsync resumed>")
        {
            if let Some(covered) = self.fsyncs_running.remove(pid) {
                if call.ends_with("= 0") {
                    self.fsync_done(covered);
                }
            }
        } else if call.starts_with("pwrite") && call.contains(log_file) {
            self.log_writes += 1;
        } else if ["write(", "writev(", "sendto(", "sendmsg("]
            .iter()
            .any(|c| call.starts_with(c))
            && call.contains("<socket:[")
            && self.log_writes > 0
        {
            self.answers += 1;
            if self.synced < self.answers {
                self.early_answers.push(line.to_owned());
            }
        }
    }

    /// A successful fsync that started when `covered` log writes had been seen.
    fn fsync_done(&mut self, covered: u64) {
        self.synced = self.synced.max(covered);
        if covered > 0 {
            self.fsyncs += 1;
        }
    }
}

/// Audits `trace` for one partition's `log_file` (a suffix of the traced path): at least
/// `requests` writes to it and as many answers, and no answer written before an fsync covered
/// the write it answers.
pub fn assert_every_answer_follows_its_fsync(trace: &str, log_file: &str, requests: u64) {
    let mut audit = Audit::default();
    for line in trace.lines() {
        audit.line(line, log_file);
    }
    assert!(
        audit.log_writes >= requests,
        "the trace shows {} writes to {log_file}",
        audit.log_writes
    );
    assert!(
        audit.answers >= requests,
        "the trace shows {} answers",
        audit.answers
    );
    assert!(
        audit.early_answers.is_empty(),
        "answers sent before the write they answer was fsynced:\n{}",
        audit.early_answers.join("\n")
    );
}
