//! A full disk against the real binary: a produce that cannot be written answers
//! KAFKA_STORAGE_ERROR, the broker keeps serving reads and metadata, writes resume at the next
//! offset once space returns, and every acknowledged record is intact after a restart.
//!
//! The data dir is a small tmpfs mounted for the test, filled with a filler file to make the
//! disk really full (ENOSPC from the kernel, no injected fault). Mounting needs root; without it
//! the test says so and returns.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;

const TOPIC: &str = "full";
const KAFKA_STORAGE_ERROR: i16 = 56;

/// Unmounts (lazily: the broker may still hold files) when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir_all(at).expect("mount point");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status();
    matches!(status, Ok(s) if s.success()).then(|| Tmpfs(at.to_path_buf()))
}

/// Writes `path` until the file system refuses a single byte more.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let mut chunk = 1 << 20;
    while chunk > 0 {
        if file.write_all(&vec![0xAB; chunk]).is_err() {
            chunk /= 2;
        }
    }
    // Whatever the last failed write_all left is in the file; the disk is full either way.
}

fn produce(stream: &mut TcpStream, records: Bytes) -> produce_response::PartitionProduceResponse {
    let request = produce_request(TOPIC, -1, 30_000, &[(0, records)]);
    let ResponseKind::Produce(r) = call(stream, ApiKey::Produce, 9, &request) else {
        panic!("not a Produce response")
    };
    r.responses[0].partition_responses[0].clone()
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("record-{i:05}-").into_bytes();
    v.resize(16 * 1024, b'x');
    v
}

#[test]
fn a_full_disk_answers_kafka_storage_error_and_writes_resume_when_space_returns() {
    // Goal: ENOSPC on a produce is KAFKA_STORAGE_ERROR for it alone; reads and metadata go on; once space returns
    // writes continue at the next offset; every acknowledged record survives a restart.
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mount) = mount_tmpfs(&dir.path().join("data"), "16m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let port = free_port();
    let runnel = Runnel::start_in(dir, port, "");
    let mut stream = runnel.connect();
    create_topic(&mut stream, TOPIC, 1, &[]);
    let mut acknowledged = BTreeMap::new();
    for i in 0..8 {
        let answer = produce(&mut stream, batch(&[value(i)]));
        assert_eq!(answer.error_code, 0);
        acknowledged.insert(answer.base_offset, Bytes::from(value(i)));
    }
    let filler = mount.0.join("filler");
    fill(&filler);
    // Several produces while the disk is full: each refused, the broker stays up.
    for i in 100..104 {
        let answer = produce(&mut stream, batch(&[value(i), value(i + 1)]));
        assert_eq!(answer.error_code, KAFKA_STORAGE_ERROR, "{answer:?}");
    }
    let ResponseKind::Metadata(md) = call(
        &mut stream,
        ApiKey::Metadata,
        12,
        &RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    ) else {
        panic!("not a Metadata response")
    };
    assert_eq!(md.topics.len(), 1, "metadata is served");
    assert_eq!(
        read_partition(&mut stream, TOPIC, 0),
        acknowledged,
        "reads are served"
    );
    // Space returns.
    std::fs::remove_file(&filler).expect("remove filler");
    for i in 200..204 {
        let answer = produce(&mut stream, batch(&[value(i)]));
        assert_eq!(answer.error_code, 0, "{answer:?}");
        assert_eq!(answer.base_offset, acknowledged.len() as i64, "no gap");
        acknowledged.insert(answer.base_offset, Bytes::from(value(i)));
    }
    // A restart (SIGKILL: the page cache of a tmpfs is its disk) keeps every acknowledged record.
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, "");
    let mut stream = runnel.connect();
    assert_eq!(read_partition(&mut stream, TOPIC, 0), acknowledged);
    drop(mount);
}
