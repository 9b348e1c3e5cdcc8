//! Fetch-based consumer: reads partitions from a start offset to the end offsets seen when it
//! started, one Fetch in flight, with the Java consumer's default sizes.

use std::time::Instant;

use anyhow::{bail, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::admin::{list_offsets, topic_name, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use crate::stream_fetch::{read_fetch_v12, STREAM_BUFFER_BYTES};
use crate::wire::{encode_frame, Client, FETCH_VERSION};

/// Java consumer defaults: fetch.max.bytes, max.partition.fetch.bytes, fetch.max.wait.ms.
pub const FETCH_BYTES_MAX: i32 = 50 * 1024 * 1024;
pub const PARTITION_FETCH_BYTES_MAX: i32 = 1024 * 1024;
pub const FETCH_WAIT_MS_MAX: i32 = 500;

pub struct ConsumeArgs {
    pub bootstrap: String,
    pub topic: String,
    pub partition_count: i32,
    pub record_bytes: usize,
}

pub async fn run(args: ConsumeArgs) -> Result<serde_json::Value> {
    let mut client = Client::connect(&args.bootstrap).await?;
    let mut offsets = list_offsets(
        &mut client,
        &args.topic,
        args.partition_count,
        EARLIEST_TIMESTAMP,
    )
    .await?;
    let ends = list_offsets(
        &mut client,
        &args.topic,
        args.partition_count,
        LATEST_TIMESTAMP,
    )
    .await?;
    // Responses are read as they stream in (see `stream_fetch`), so the version is pinned.
    const _: () = assert!(FETCH_VERSION == 12);
    let (reader, mut writer) = client.into_stream().into_split();
    let mut reader = tokio::io::BufReader::with_capacity(STREAM_BUFFER_BYTES, reader);
    let start = Instant::now();
    let mut records = 0u64;
    let mut batch_bytes = 0u64;
    let mut fetch_count = 0u64;
    let mut correlation_id = 0i32;
    while offsets.iter().zip(&ends).any(|(o, e)| o < e) {
        let partitions = offsets
            .iter()
            .zip(&ends)
            .enumerate()
            .filter(|(_, (o, e))| o < e)
            .map(|(p, (o, _))| {
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
            .with_session_epoch(-1) // no fetch session: full requests, like ConsumerPerformance's first fetch
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&args.topic))
                .with_partitions(partitions)]);
        correlation_id = correlation_id.wrapping_add(1);
        let frame = encode_frame(&request, FETCH_VERSION, correlation_id)?;
        writer.write_all(&frame).await?;
        let response = read_fetch_v12(&mut reader, correlation_id).await?;
        fetch_count += 1;
        if response.error_code != 0 {
            bail!("Fetch error {}", response.error_code);
        }
        for partition in &response.partitions {
            if partition.error_code != 0 {
                bail!(
                    "Fetch {}-{}: error {}",
                    args.topic,
                    partition.partition_index,
                    partition.error_code
                );
            }
            records += partition.record_count;
            batch_bytes += partition.batch_bytes;
            if let (Some(next), Some(slot)) = (
                partition.next_offset,
                offsets.get_mut(partition.partition_index as usize),
            ) {
                *slot = (*slot).max(next);
            }
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let payload_bytes = records * args.record_bytes as u64;
    Ok(json!({
        "records": records,
        "payload_bytes": payload_bytes,
        "batch_bytes": batch_bytes,
        "fetches": fetch_count,
        "elapsed_s": elapsed_s,
        "records_per_s": records as f64 / elapsed_s,
        "mib_per_s": payload_bytes as f64 / elapsed_s / (1024.0 * 1024.0),
        "wire_mib_per_s": batch_bytes as f64 / elapsed_s / (1024.0 * 1024.0),
    }))
}
