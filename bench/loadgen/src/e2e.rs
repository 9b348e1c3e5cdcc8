//! End-to-end latency at a fixed rate: the producer stamps each record with its *intended* send time
//! (so a stalled broker cannot hide latency by slowing the sender: no coordinated omission), a
//! long-polling consumer on its own connection records now - stamp.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};

use crate::admin::{list_offsets, topic_name, LATEST_TIMESTAMP};
use crate::batch::{encode_batch, for_each_value, summarize};
use crate::consume::{FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX, PARTITION_FETCH_BYTES_MAX};
use crate::produce::now_ms;
use crate::wire::{
    decode_response, encode_frame, read_frame, Client, FETCH_VERSION, PRODUCE_VERSION,
};

/// How often the producer wakes to send what the rate says is due.
const TICK: Duration = Duration::from_millis(1);
/// Produce requests outstanding before the producer waits (the wait shows up as latency).
const INFLIGHT_MAX: usize = 16;
const STAMP_BYTES: usize = 8;
/// Bytes per produce batch when the sender catches up after a stall: below Kafka's default
/// `max.message.bytes` (1 MiB), near a Java producer's batch size under load.
const CATCH_UP_BATCH_BYTES: usize = 64 * 1024;

pub struct E2eArgs {
    pub bootstrap: String,
    pub topic: String,
    pub partition_count: i32,
    pub record_bytes: usize,
    pub acks: i16,
    pub rate_per_s: f64,
    pub duration: Duration,
    pub warmup: Duration,
}

pub async fn run(args: E2eArgs) -> Result<serde_json::Value> {
    if args.record_bytes < STAMP_BYTES {
        bail!("--record-bytes must be at least {STAMP_BYTES} to carry the timestamp");
    }
    let mut admin = Client::connect(&args.bootstrap).await?;
    let ends = list_offsets(
        &mut admin,
        &args.topic,
        args.partition_count,
        LATEST_TIMESTAMP,
    )
    .await?;
    let origin = Instant::now();
    let expected = (args.rate_per_s * args.duration.as_secs_f64()) as u64;
    let consumer = tokio::spawn(consume(
        args.bootstrap.clone(),
        args.topic.clone(),
        ends,
        origin,
        args.warmup,
        expected,
    ));
    let sent = produce(&args, origin).await?;
    let (received, latency_us) =
        tokio::time::timeout(Duration::from_secs(30), consumer).await???;
    Ok(json!({
        "rate_per_s": args.rate_per_s,
        "sent": sent,
        "received": received,
        "latency_ms": crate::histogram_json(&latency_us),
    }))
}

fn stamp_ns(origin: Instant, at: Instant) -> u64 {
    at.duration_since(origin).as_nanos() as u64
}

async fn produce(args: &E2eArgs, origin: Instant) -> Result<u64> {
    let (mut reader, mut writer) = Client::connect(&args.bootstrap)
        .await?
        .into_stream()
        .into_split();
    let permits = Arc::new(Semaphore::new(INFLIGHT_MAX));
    let (tx, mut rx) = mpsc::channel::<(i32, tokio::sync::OwnedSemaphorePermit)>(INFLIGHT_MAX);
    let acker = tokio::spawn(async move {
        while let Some((correlation_id, permit)) = rx.recv().await {
            let response = decode_response::<ProduceRequest>(
                read_frame(&mut reader).await?,
                PRODUCE_VERSION,
                correlation_id,
            )?;
            drop(permit);
            for p in response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
            {
                if p.error_code != 0 {
                    bail!("produce error {} on partition {}", p.error_code, p.index);
                }
            }
        }
        anyhow::Ok(())
    });
    let interval_ns = 1e9 / args.rate_per_s;
    let total = (args.rate_per_s * args.duration.as_secs_f64()) as u64;
    let mut sent = 0u64;
    let mut correlation_id = 1i32;
    let mut partition = 0i32;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut values: Vec<Vec<u8>> = Vec::new();
    while sent < total {
        ticker.tick().await;
        let due_now = ((origin.elapsed().as_nanos() as f64 / interval_ns) as u64).min(total);
        let batch_records_max = (CATCH_UP_BATCH_BYTES / args.record_bytes).max(1) as u64;
        while sent < due_now {
            let due = due_now.min(sent + batch_records_max);
            values.clear();
            for n in sent..due {
                let intended = origin + Duration::from_nanos((n as f64 * interval_ns) as u64);
                let mut value = vec![0u8; args.record_bytes];
                value[..STAMP_BYTES].copy_from_slice(&stamp_ns(origin, intended).to_be_bytes());
                values.push(value);
            }
            let batch = encode_batch(values.iter().map(Vec::as_slice), now_ms());
            let request = ProduceRequest::default()
                .with_acks(args.acks)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(&args.topic))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch))])]);
            let permit = permits.clone().acquire_owned().await?;
            writer
                .write_all(&encode_frame(&request, PRODUCE_VERSION, correlation_id)?)
                .await?;
            if tx.send((correlation_id, permit)).await.is_err() {
                // The acker stopped: its error is the one worth reporting.
                return Err(acker
                    .await?
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("acker stopped early")));
            }
            correlation_id = correlation_id.wrapping_add(1);
            partition = (partition + 1) % args.partition_count;
            sent = due;
        }
    }
    drop(tx);
    acker.await??;
    Ok(sent)
}

async fn consume(
    bootstrap: String,
    topic: String,
    mut offsets: Vec<i64>,
    origin: Instant,
    warmup: Duration,
    expected: u64,
) -> Result<(u64, Histogram<u64>)> {
    let mut client = Client::connect(&bootstrap).await?;
    let mut latency_us = Histogram::<u64>::new(3)?;
    let warmup_ns = warmup.as_nanos() as u64;
    let mut received = 0u64;
    while received < expected {
        let partitions = offsets
            .iter()
            .enumerate()
            .map(|(p, o)| {
                FetchPartition::default()
                    .with_partition(p as i32)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(*o)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX)
            })
            .collect();
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(FETCH_WAIT_MS_MAX)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_BYTES_MAX)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&topic))
                .with_partitions(partitions)]);
        let response = client.call(&request, FETCH_VERSION).await?;
        let now_ns = stamp_ns(origin, Instant::now());
        for partition in response.responses.iter().flat_map(|t| t.partitions.iter()) {
            if partition.error_code != 0 {
                bail!(
                    "fetch error {} on partition {}",
                    partition.error_code,
                    partition.partition_index
                );
            }
            let Some(data) = &partition.records else {
                continue;
            };
            for_each_value(data, |value| {
                let Some(stamp) = value.get(..STAMP_BYTES) else {
                    return;
                };
                let sent_ns = u64::from_be_bytes(stamp.try_into().unwrap_or([0; 8]));
                received += 1;
                if sent_ns >= warmup_ns {
                    latency_us
                        .record(now_ns.saturating_sub(sent_ns) / 1000)
                        .ok();
                }
            });
            if let (Some(next), Some(slot)) = (
                summarize(data).next_offset,
                offsets.get_mut(partition.partition_index as usize),
            ) {
                *slot = (*slot).max(next);
            }
        }
    }
    Ok((received, latency_us))
}
