//! Shared helpers for the broker's integration tests: driving the real `runnel` binary over
//! TCP, and calling its handlers in process.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable};

/// A running broker process with its own port and data dir; killed on drop.
pub struct Runnel {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A port nobody listened on a moment ago, picked *below* the kernel's ephemeral range.
///
/// Why not `bind(0)`: the kernel hands ports from its ephemeral range to outgoing connections
/// too, so a port it offered us can be taken by any concurrent test's client socket between our
/// check and the broker's bind (seen in CI as "Address already in use"). Below the range only
/// another test's explicit pick can clash, and `Runnel::start` retries that on a fresh port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const FLOOR: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(FLOOR);
    if span >= 1_000 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ (u64::from(std::process::id()) << 32);
        for _ in 0..1_000 {
            // SplitMix64 over a per-process sequence: different processes and threads wander
            // the range differently.
            let mut z = seed.wrapping_add(
                NEXT.fetch_add(1, Ordering::Relaxed)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let port = (FLOOR + (z % u64::from(span)) as u32) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 0");
    l.local_addr().expect("addr").port()
}

/// How many fresh ports `Runnel::start` tries when another process took the one it picked.
const BIND_ATTEMPTS: usize = 5;

impl Runnel {
    pub fn start(extra_config: &str) -> Runnel {
        Self::start_on_fresh_port(extra_config, None)
    }

    /// Starts on `port` with an existing data dir (restart tests): the port is the caller's, so a
    /// clash is not retried elsewhere.
    pub fn start_in(dir: tempfile::TempDir, port: u16, extra_config: &str) -> Runnel {
        Self::spawn(dir, port, extra_config, None, None, &[])
            .unwrap_or_else(|log| panic!("runnel exited while starting; log:\n{log}"))
    }

    /// Starts with the soft and hard descriptor limit (`RLIMIT_NOFILE`) set to `max_fds`.
    pub fn start_with_fd_limit(extra_config: &str, max_fds: u64) -> Runnel {
        Self::start_on_fresh_port(extra_config, Some(max_fds))
    }

    /// Starts in a new temp dir on a port picked here, picking another one when a concurrent
    /// process bound it first.
    fn start_on_fresh_port(extra_config: &str, max_fds: Option<u64>) -> Runnel {
        let mut last_log = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let dir = tempfile::tempdir().expect("tempdir");
            match Self::spawn(dir, free_port(), extra_config, max_fds, None, &[]) {
                Ok(runnel) => return runnel,
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => panic!("runnel exited while starting; log:\n{log}"),
            }
        }
        panic!("runnel found every port it tried taken; last log:\n{last_log}")
    }

    /// Starts with `--listen listen` (Kafka's listener list, e.g.
    /// `PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:2`) and extra environment variables; `port` is
    /// the plaintext listener's, which readiness is checked on.
    pub fn start_with_listeners(
        dir: tempfile::TempDir,
        listen: &str,
        port: u16,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Runnel {
        Self::spawn(dir, port, extra_config, None, Some(listen), env)
            .unwrap_or_else(|log| panic!("runnel exited while starting; log:\n{log}"))
    }

    fn spawn(
        dir: tempfile::TempDir,
        port: u16,
        extra_config: &str,
        max_fds: Option<u64>,
        listen: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Runnel, String> {
        let config = dir.path().join("runnel.toml");
        std::fs::write(&config, extra_config).expect("write config");
        let log = std::fs::File::create(dir.path().join("runnel.log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_runnel"));
        if let Some(max_fds) = max_fds {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: max_fds,
                        rlim_max: max_fds,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .envs(env.iter().copied())
            .arg("--listen")
            .arg(listen.map_or_else(|| format!("127.0.0.1:{port}"), str::to_owned))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn runnel");
        let mut runnel = Runnel { child, port, dir };
        runnel.wait_ready()?;
        Ok(runnel)
    }

    /// Waits until this process says it listens. A successful connect alone is not enough:
    /// tests pick ports concurrently, and another test's broker may hold this one while ours
    /// fails to bind it. An early exit is handed back as the process's log (with its status).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("exit status {status}\n{}", self.log()));
            }
            if self.log().contains("runnel is ready")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "runnel did not listen on {} in time; log:\n{}",
            self.port,
            self.log()
        );
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("runnel.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The process is still running (it did not panic, abort or exit).
    /// CPU seconds (user + system) the broker process has used so far, from /proc.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/<pid>/stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / hz
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("runnel exited with {status}; log:\n{}", self.log());
        }
        assert!(
            !self.log().contains("panicked"),
            "runnel logged a panic:\n{}",
            self.log()
        );
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Stops the process and hands back its data dir, for restart tests.
    pub fn into_dir(mut self) -> (tempfile::TempDir, u16) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (dir, port)
    }
}

/// Lines of a broker's log a failing test prints.
const TAIL_LINES: usize = 60;

impl Drop for Runnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the broker said (the tail of its log).
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(TAIL_LINES).collect();
            eprintln!("--- runnel log tail ({}) ---", self.data_dir().display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Encodes a request frame (size prefix, header, body).
pub fn request_frame(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &RequestKind,
) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
            "runnel-test",
        )));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("encode header");
    body.encode(&mut buf, version).expect("encode body");
    let mut frame = Vec::with_capacity(buf.len() + 4);
    frame.extend_from_slice(&(buf.len() as i32).to_be_bytes());
    frame.extend_from_slice(&buf);
    frame
}

/// Reads one response frame; `None` if the broker closed the connection.
pub fn read_frame(stream: &mut impl Read) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let size = i32::from_be_bytes(size);
    assert!((0..64 << 20).contains(&size), "response size {size}");
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

/// Sends a request and decodes the response at the same version.
pub fn call(
    stream: &mut (impl Read + Write),
    key: ApiKey,
    version: i16,
    body: &RequestKind,
) -> ResponseKind {
    stream
        .write_all(&request_frame(key, version, 42, body))
        .expect("write request");
    let mut frame = read_frame(stream).expect("response (connection was closed)");
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .expect("response header");
    assert_eq!(header.correlation_id, 42);
    ResponseKind::decode(key, &mut frame, version).expect("decode response")
}

/// True once the broker has closed this connection (read returns EOF or reset).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

pub fn write_raw(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}

pub fn i16_at(b: &Bytes, at: usize) -> i16 {
    let mut s = b.slice(at..at + 2);
    s.get_i16()
}

pub fn put_frame(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.put_i32(body.len() as i32);
    v.extend_from_slice(body);
    v
}

/// A topic name as requests carry it.
pub fn name(s: &str) -> TopicName {
    TopicName(kafka_protocol::protocol::StrBytes::from_string(
        s.to_owned(),
    ))
}

/// One uncompressed batch of keyless records with these values (timestamps fixed).
pub fn batch<V: AsRef<[u8]>>(values: &[V]) -> Bytes {
    let spec = runnel_protocol::batch::BatchSpec {
        records: values
            .iter()
            .map(|v| runnel_protocol::batch::RecordSpec {
                timestamp_delta: 0,
                key: None,
                value: Some(v.as_ref()),
                headers: vec![],
            })
            .collect(),
        base_timestamp: 1_700_000_000_000,
        ..Default::default()
    };
    runnel_protocol::batch::encode_uncompressed_batch(&spec).into()
}

/// A CreateTopics request (v7 shape) for `topic` with `partitions` partitions, replication
/// factor 1 and these configs.
pub fn create_topics_request(
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> RequestKind {
    use kafka_protocol::messages::{create_topics_request, CreateTopicsRequest};
    use kafka_protocol::protocol::StrBytes;
    RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]))
}

/// Creates `topic` (CreateTopics v7) with these configs and asserts it was created.
pub fn create_topic(
    stream: &mut (impl Read + Write),
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let request = create_topics_request(topic, partitions, configs);
    let ResponseKind::CreateTopics(r) = call(stream, ApiKey::CreateTopics, 7, &request) else {
        panic!("not a CreateTopics response")
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// A Produce request (v9 shape) of one batch to each named partition of `topic`.
pub fn produce_request(
    topic: &str,
    acks: i16,
    timeout_ms: i32,
    batches: &[(i32, Bytes)],
) -> RequestKind {
    use kafka_protocol::messages::{produce_request, ProduceRequest};
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(
                    batches
                        .iter()
                        .map(|(partition, records)| {
                            produce_request::PartitionProduceData::default()
                                .with_index(*partition)
                                .with_records(Some(records.clone()))
                        })
                        .collect(),
                )]),
    )
}

/// Every record of `topic`'s `partition` below its high watermark, as offset -> value, read
/// with Fetch v12 from offset 0 in whole batches ([`fetched_records`]).
pub fn read_partition(
    stream: &mut TcpStream,
    topic: &str,
    partition: i32,
) -> std::collections::BTreeMap<i64, Bytes> {
    let mut records = std::collections::BTreeMap::new();
    let mut offset = 0;
    loop {
        let request = fetch_request(topic, partition, offset, 0, 8 << 20);
        let ResponseKind::Fetch(r) = call(stream, ApiKey::Fetch, 12, &request) else {
            panic!("not a Fetch response")
        };
        let answer = &r.responses[0].partitions[0];
        assert_eq!(answer.error_code, 0, "fetch of {topic}-{partition}");
        if offset >= answer.high_watermark {
            return records;
        }
        let before = offset;
        for (record_offset, value) in fetched_records(answer.records.clone()) {
            offset = offset.max(record_offset + 1);
            records.insert(record_offset, value);
        }
        assert!(offset > before, "fetch below the HW made no progress");
    }
}

/// A Fetch request (v12 shape) of `topic`'s `partition` from `offset` that waits for nothing
/// (`max_wait_ms` 0), with `max_bytes` for the response and for the partition.
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    min_bytes: i32,
    max_bytes: i32,
) -> RequestKind {
    use kafka_protocol::messages::{fetch_request, FetchRequest};
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(min_bytes)
            .with_max_bytes(max_bytes)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]),
    )
}

/// The records of the whole batches in a fetched records field, as (offset, value); a batch
/// cut short at the end (as Kafka's responses may end) is left out.
pub fn fetched_records(records: Option<Bytes>) -> Vec<(i64, Bytes)> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut bytes = records.unwrap_or_default();
    let mut out = Vec::new();
    while bytes.len() >= 12 {
        let size = 12 + usize::try_from((&bytes[8..12]).get_i32()).expect("batch length");
        if bytes.len() < size {
            break;
        }
        let mut one = bytes.split_to(size);
        let set = RecordBatchDecoder::decode(&mut one).expect("decode stored batch");
        for record in set.records {
            out.push((record.offset, record.value.unwrap_or_default()));
        }
    }
    out
}

/// One request through the broker's handlers in this process (no socket), as a client on
/// 127.0.0.1 over plaintext would send it.
pub async fn call_handler(
    broker: &std::sync::Arc<runnel_broker::state::Broker>,
    key: ApiKey,
    version: i16,
    request: RequestKind,
) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1);
    let connection =
        runnel_broker::context::ConnectionContext::plaintext("127.0.0.1:1".parse().expect("addr"));
    let ctx = runnel_broker::context::RequestContext {
        connection: &connection,
        header: &header,
    };
    match runnel_broker::handlers::handle(
        broker,
        &ctx,
        runnel_protocol::request::Request::Kafka(request),
    )
    .await
    {
        runnel_broker::handlers::Reply::Send(body) => body,
        _ => panic!("no response"),
    }
}

/// The config line that puts the admin listener on a free loopback port (read back with
/// [`Runnel::admin_port`]).
pub const ADMIN_ON_ANY_PORT: &str = "\"runnel.admin.listener\" = \"127.0.0.1:0\"\n";

impl Runnel {
    /// The admin listener's port, from its startup log line.
    pub fn admin_port(&self) -> u16 {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("admin listener:"))
            .unwrap_or_else(|| panic!("no admin listener line in the log:\n{log}"));
        let address = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("listen="))
            .unwrap_or_else(|| panic!("no listen= in {line}"));
        let port = address.rsplit(':').next().expect("HOST:PORT");
        // Text logs may colour field values; keep the digits.
        let digits: String = port.chars().filter(char::is_ascii_digit).collect();
        digits.parse().expect("admin port")
    }
}

/// Sends `request` (raw HTTP) to `127.0.0.1:port` and returns everything the server wrote
/// until it closed the connection (the admin listener serves one request per connection).
pub fn http_raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// GETs `path` from the admin listener on `port`: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let answer = http_raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    );
    http_status_and_body(&answer)
}

/// Splits a raw HTTP answer into its status code and body (0 when there was no answer).
pub fn http_status_and_body(answer: &str) -> (u16, String) {
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `name{labels}` in a scrape (labels as written, e.g.
/// `topic="t"`; empty for none), `None` if absent.
pub fn sample(scrape: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(key.as_str()))
        .map(|value| value.trim().parse().expect("sample value"))
}

/// One node of a test quorum on loopback (every node broker and controller): its client and
/// CONTROLLER ports.
pub struct QuorumNode {
    pub id: i32,
    pub port: u16,
    pub controller_port: u16,
}

/// Nodes 1..=`count` on free ports, and their `controller.quorum.voters`.
pub fn quorum_nodes(count: i32) -> (Vec<QuorumNode>, String) {
    let nodes: Vec<QuorumNode> = (1..=count)
        .map(|id| QuorumNode {
            id,
            port: free_port(),
            controller_port: free_port(),
        })
        .collect();
    let voters = nodes
        .iter()
        .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
        .collect::<Vec<_>>()
        .join(",");
    (nodes, voters)
}

impl QuorumNode {
    /// `listeners`: the client listener, then the CONTROLLER one.
    pub fn listeners(&self) -> String {
        format!(
            "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
            self.port, self.controller_port
        )
    }

    /// Its config as a voter of `voters`, then `extra` (TOML lines).
    pub fn config(&self, voters: &str, extra: &str) -> String {
        format!(
            "\"node.id\" = {}\n\"controller.listener.names\" = \"CONTROLLER\"\n\
             \"listener.security.protocol.map\" = \"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\"\n\
             \"controller.quorum.voters\" = \"{voters}\"\n{extra}",
            self.id
        )
    }

    /// Starts it in `dir` as a voter of `voters`, with `extra` config lines.
    pub fn start(&self, voters: &str, dir: tempfile::TempDir, extra: &str) -> Runnel {
        Runnel::start_with_listeners(
            dir,
            &self.listeners(),
            self.port,
            &self.config(voters, extra),
            &[],
        )
    }
}

/// The quorum as its leader describes it: (leader, voters, observers), each replica with its
/// directory id.
pub type Quorum = (
    i32,
    std::collections::BTreeMap<i32, uuid::Uuid>,
    std::collections::BTreeMap<i32, uuid::Uuid>,
);

/// DescribeQuorum (v2) on each of `ports` in turn: the first answer without an error, with
/// the port that gave it; `None` while none answers (no leader yet, or all down).
pub fn describe_quorum(ports: &[u16]) -> Option<(u16, Quorum)> {
    describe_quorum_version(ports, 2)
}

/// [`describe_quorum`] at request `version` (directory ids are nil below v2, which lacks them).
pub fn describe_quorum_version(ports: &[u16], version: i16) -> Option<(u16, Quorum)> {
    use kafka_protocol::messages::{describe_quorum_request, DescribeQuorumRequest};
    for &port in ports {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = RequestKind::DescribeQuorum(DescribeQuorumRequest::default().with_topics(
            vec![describe_quorum_request::TopicData::default()
                .with_topic_name(name("__cluster_metadata"))
                .with_partitions(vec![
                    describe_quorum_request::PartitionData::default().with_partition_index(0),
                ])],
        ));
        let ResponseKind::DescribeQuorum(r) =
            call(&mut stream, ApiKey::DescribeQuorum, version, &request)
        else {
            continue;
        };
        let p = &r.topics[0].partitions[0];
        if p.error_code != 0 {
            continue;
        }
        let set =
            |replicas: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
                replicas
                    .iter()
                    .map(|v| (v.replica_id.0, v.replica_directory_id))
                    .collect::<std::collections::BTreeMap<_, _>>()
            };
        return Some((
            port,
            (p.leader_id.0, set(&p.current_voters), set(&p.observers)),
        ));
    }
    None
}

/// Polls `f` every 100 ms until it gives a value; panics saying `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CreateTopics (v7) of `topic` with `partitions` on `port`: the topic's error code
/// (NOT_CONTROLLER when the node does not answer).
pub fn create_code(port: u16, topic: &str, partitions: i32) -> i16 {
    const NOT_CONTROLLER: i16 = 41;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return NOT_CONTROLLER;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let request = create_topics_request(topic, partitions, &[]);
    let ResponseKind::CreateTopics(r) = call(&mut stream, ApiKey::CreateTopics, 7, &request) else {
        panic!("not a CreateTopics response")
    };
    r.topics[0].error_code
}

/// Creates `topic` on `port`, retrying while no controller commits (NOT_CONTROLLER, timeouts,
/// or INVALID_REPLICATION_FACTOR before any broker registered) for up to 30 s.
pub fn create_retrying(port: u16, topic: &str, partitions: i32) {
    let code = wait_for(Duration::from_secs(30), "a controller commits", || {
        let code = create_code(port, topic, partitions);
        (!matches!(code, 41 | 7 | 38)).then_some(code)
    });
    assert_eq!(code, 0, "creating {topic}");
}

/// Whether `topic` is in `port`'s metadata (its own image).
pub fn topic_visible(port: u16, topic: &str) -> bool {
    use kafka_protocol::messages::{metadata_request, MetadataRequest};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
    ])));
    let ResponseKind::Metadata(r) = call(&mut stream, ApiKey::Metadata, 12, &request) else {
        panic!("not a Metadata response")
    };
    r.topics[0].error_code == 0
}
