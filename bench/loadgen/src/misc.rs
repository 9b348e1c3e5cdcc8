//! Small probes: metadata latency, idle connections, start-up to first ack, loopback bandwidth.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::admin::{api_versions, create_topic, metadata, topic_name};
use crate::batch::encode_batch;
use crate::produce::now_ms;
use crate::wire::{Client, PRODUCE_VERSION};

/// `count` sequential Metadata requests for all topics (what a client's periodic refresh asks).
pub async fn metadata_latency(bootstrap: &str, count: u32) -> Result<serde_json::Value> {
    let mut client = Client::connect(bootstrap).await?;
    let mut latency_us = Histogram::<u64>::new(3)?;
    let mut partitions = 0usize;
    for _ in 0..count {
        let start = Instant::now();
        let response = metadata(&mut client, None).await?;
        latency_us.record(start.elapsed().as_micros() as u64)?;
        partitions = response.topics.iter().map(|t| t.partitions.len()).sum();
    }
    Ok(
        json!({ "requests": count, "partitions": partitions, "latency_ms": crate::histogram_json(&latency_us) }),
    )
}

/// Opens `count` connections, each completing one ApiVersions exchange (so the broker has set up
/// its per-connection state), prints a `{"ready": ...}` line, then holds them until stdin closes.
pub async fn idle(bootstrap: &str, count: usize) -> Result<serde_json::Value> {
    let start = Instant::now();
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let mut client = Client::connect(bootstrap).await?;
        api_versions(&mut client).await?;
        clients.push(client);
    }
    println!(
        "{}",
        json!({ "ready": count, "open_s": start.elapsed().as_secs_f64() })
    );
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    while stdin.read_line(&mut line).await? > 0 {
        line.clear();
    }
    Ok(json!({ "connections": clients.len() }))
}

/// Retries connect + CreateTopics + Produce(acks=1) until one record is acked; prints the wall clock
/// (Unix ns) of that ack so the caller can subtract the moment it spawned the broker.
pub async fn first_produce(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    let mut attempts = 0u32;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        attempts += 1;
        let attempt = async {
            let mut client = Client::connect(bootstrap).await?;
            create_topic(&mut client, topic, 1, &[], Duration::from_secs(5)).await?;
            let batch = encode_batch([b"first".as_slice()], now_ms());
            let request = ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch))])]);
            let response = client.call(&request, PRODUCE_VERSION).await?;
            for p in response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
            {
                if p.error_code != 0 {
                    bail!("produce error {}", p.error_code);
                }
            }
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(())) => {
                let acked_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
                return Ok(json!({ "acked_unix_ns": acked_unix_ns, "attempts": attempts }));
            }
            Ok(Err(e)) => last_error = format!("{e:#}"),
            Err(_) => last_error = "attempt timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("no acked produce after {timeout:?} ({attempts} attempts; last: {last_error})")
}

/// Loopback TCP bandwidth: one thread sends `total_bytes` in 1 MiB writes, another reads them.
pub fn loopback(total_bytes: u64) -> Result<serde_json::Value> {
    const CHUNK_BYTES: usize = 1 << 20;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut received = 0u64;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(received);
            }
            received += n as u64;
        }
    });
    let mut stream = TcpStream::connect(address)?;
    let chunk = vec![7u8; CHUNK_BYTES];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total_bytes {
        stream.write_all(&chunk)?;
        sent += CHUNK_BYTES as u64;
    }
    drop(stream);
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    let elapsed_s = start.elapsed().as_secs_f64();
    Ok(
        json!({ "bytes": received, "elapsed_s": elapsed_s, "mib_per_s": received as f64 / elapsed_s / (1024.0 * 1024.0) }),
    )
}
