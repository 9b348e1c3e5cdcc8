//! Pipelined produce: pre-encoded requests, several in flight per connection, like a Java producer
//! under load with `max.in.flight.requests.per.connection` requests outstanding.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};

use crate::admin::topic_name;
use crate::batch::{encode_batch, RECORD_OVERHEAD_BYTES};
use crate::wire::{
    decode_response, encode_frame, read_frame, set_correlation_id, Client, PRODUCE_VERSION,
};

#[derive(Debug, Clone)]
pub struct ProduceArgs {
    pub bootstrap: String,
    pub topic: String,
    pub partition_count: i32,
    pub record_bytes: usize,
    pub acks: i16,
    pub record_count: u64,
    pub duration: Option<Duration>,
    pub inflight_max: usize,
    pub batch_bytes: usize,
    pub request_bytes_max: usize,
    pub connection_count: usize,
}

/// Result of one connection's run.
struct ConnectionTotals {
    records_acked: u64,
    errors: u64,
    first_error: Option<String>,
    latency_us: Histogram<u64>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Pre-encoded request frames for one connection's partitions (topic, partition): each holds one
/// batch for each of up to `request_bytes_max / batch_bytes` partitions, so a run rotates through
/// all of them.
fn build_frames(
    args: &ProduceArgs,
    partitions: &[(&str, i32)],
) -> Result<(Vec<BytesMut>, Vec<u64>)> {
    let records_per_batch = (args.batch_bytes / (args.record_bytes + RECORD_OVERHEAD_BYTES)).max(1);
    let value: Vec<u8> = (0..args.record_bytes)
        .map(|i| b'A' + (i % 26) as u8)
        .collect();
    let batch: Bytes = encode_batch(
        std::iter::repeat(value.as_slice()).take(records_per_batch),
        now_ms(),
    );
    let partitions_per_request =
        (args.request_bytes_max / batch.len()).clamp(1, partitions.len().max(1));
    let mut frames = Vec::new();
    let mut record_counts = Vec::new();
    for group in partitions.chunks(partitions_per_request) {
        let mut topic_data: Vec<TopicProduceData> = Vec::new();
        for &(topic, p) in group {
            let data = PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(batch.clone()));
            match topic_data.last_mut() {
                Some(t) if t.name.0.as_str() == topic => t.partition_data.push(data),
                _ => topic_data.push(
                    TopicProduceData::default()
                        .with_name(topic_name(topic))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let request = ProduceRequest::default()
            .with_acks(args.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(topic_data);
        frames.push(encode_frame(&request, PRODUCE_VERSION, 0)?);
        record_counts.push((records_per_batch * group.len()) as u64);
    }
    Ok((frames, record_counts))
}

pub async fn run(args: ProduceArgs) -> Result<serde_json::Value> {
    let topics: Vec<&str> = args.topic.split(',').filter(|t| !t.is_empty()).collect();
    let all: Vec<(&str, i32)> = topics
        .iter()
        .flat_map(|&t| (0..args.partition_count).map(move |p| (t, p)))
        .collect();
    let connection_count = args.connection_count.clamp(1, all.len().max(1));
    let budget = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connection_count {
        let partitions: Vec<(&str, i32)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % connection_count == c)
            .map(|(_, &tp)| tp)
            .collect();
        let (frames, counts) = build_frames(&args, &partitions)?;
        let client = Client::connect(&args.bootstrap).await?;
        tasks.push(tokio::spawn(run_connection(
            args.clone(),
            client,
            frames,
            counts,
            budget.clone(),
            stop.clone(),
            start,
        )));
    }
    if let Some(duration) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut records = 0u64;
    let mut errors = 0u64;
    let mut first_error = None;
    let mut latency_us = Histogram::<u64>::new(3)?;
    for task in tasks {
        let totals = task.await??;
        records += totals.records_acked;
        errors += totals.errors;
        first_error = first_error.or(totals.first_error);
        latency_us.add(&totals.latency_us)?;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let payload_bytes = records * args.record_bytes as u64;
    if errors > 0 {
        bail!(
            "{errors} produce errors; first: {}",
            first_error.unwrap_or_default()
        );
    }
    Ok(json!({
        "records": records,
        "payload_bytes": payload_bytes,
        "elapsed_s": elapsed_s,
        "records_per_s": records as f64 / elapsed_s,
        "mib_per_s": payload_bytes as f64 / elapsed_s / (1024.0 * 1024.0),
        "request_latency_ms": crate::histogram_json(&latency_us),
    }))
}

async fn run_connection(
    args: ProduceArgs,
    client: Client,
    mut frames: Vec<BytesMut>,
    record_counts: Vec<u64>,
    budget: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    start: Instant,
) -> Result<ConnectionTotals> {
    let (mut reader, mut writer) = client.into_stream().into_split();
    // acks=0 has no responses; the socket buffer is the only flow control, as for a Java producer.
    let awaits_response = args.acks != 0;
    let permits = Arc::new(Semaphore::new(args.inflight_max.max(1)));
    let (sent_tx, mut sent_rx) =
        mpsc::channel::<(i32, Instant, u64, tokio::sync::OwnedSemaphorePermit)>(
            args.inflight_max.max(1),
        );
    let reader_task = tokio::spawn(async move {
        let mut totals = ConnectionTotals {
            records_acked: 0,
            errors: 0,
            first_error: None,
            latency_us: Histogram::new(3)?,
        };
        while let Some((correlation_id, sent_at, records, permit)) = sent_rx.recv().await {
            let body = read_frame(&mut reader).await?;
            let response =
                decode_response::<ProduceRequest>(body, PRODUCE_VERSION, correlation_id)?;
            totals
                .latency_us
                .record(sent_at.elapsed().as_micros() as u64)
                .ok();
            drop(permit);
            let mut failed = false;
            for partition in response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
            {
                if partition.error_code != 0 {
                    failed = true;
                    totals.errors += 1;
                    totals.first_error.get_or_insert_with(|| {
                        format!(
                            "partition {} error {} {:?}",
                            partition.index, partition.error_code, partition.error_message
                        )
                    });
                }
            }
            if !failed {
                totals.records_acked += records;
            }
        }
        anyhow::Ok(totals)
    });
    let mut correlation_id: i32 = 1;
    let mut records_sent = 0u64;
    'send: loop {
        for (frame, &records) in frames.iter_mut().zip(&record_counts) {
            if stop.load(Ordering::Relaxed) {
                break 'send;
            }
            if args.duration.is_none()
                && budget.fetch_add(records, Ordering::Relaxed) >= args.record_count
            {
                break 'send;
            }
            let permit = permits.clone().acquire_owned().await?;
            set_correlation_id(frame, correlation_id);
            let sent_at = Instant::now();
            writer.write_all(frame).await?;
            if awaits_response {
                sent_tx
                    .send((correlation_id, sent_at, records, permit))
                    .await?;
            } else {
                records_sent += records;
            }
            correlation_id = correlation_id.wrapping_add(1);
        }
    }
    drop(sent_tx);
    let mut totals = reader_task.await??;
    if !awaits_response {
        writer.flush().await?;
        totals.records_acked = records_sent;
    }
    let _ = start;
    Ok(totals)
}
