//! Setup and control-plane calls: readiness probe, topic creation, offsets, metadata latency.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::wire::{
    Client, API_VERSIONS_VERSION, CREATE_TOPICS_VERSION, LIST_OFFSETS_VERSION, METADATA_VERSION,
};

const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Kafka's ListOffsets sentinels.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

pub async fn api_versions(client: &mut Client) -> Result<()> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("runnel-loadgen"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    let response = client.call(&request, API_VERSIONS_VERSION).await?;
    if response.error_code != 0 {
        bail!("ApiVersions error {}", response.error_code);
    }
    Ok(())
}

pub async fn metadata(client: &mut Client, topics: Option<&[&str]>) -> Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                .collect()
        }));
    client.call(&request, METADATA_VERSION).await
}

/// Ready = a Metadata round trip lists at least one broker (Kafka accepts connections before its
/// broker has registered with its own controller).
pub async fn wait_ready(bootstrap: &str, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let attempt = async {
            let mut client = Client::connect(bootstrap).await?;
            let response = metadata(&mut client, Some(&[])).await?;
            anyhow::Ok(!response.brokers.is_empty())
        };
        match tokio::time::timeout(Duration::from_secs(3), attempt).await {
            Ok(Ok(true)) => return Ok(start.elapsed()),
            _ if Instant::now() >= deadline => {
                bail!("broker at {bootstrap} not ready after {timeout:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Creates `topic` (an existing one is fine) and waits until every partition has a leader.
pub async fn create_topic(
    client: &mut Client,
    topic: &str,
    partition_count: i32,
    configs: &[(String, String)],
    timeout: Duration,
) -> Result<()> {
    let creatable = CreatableTopic::default()
        .with_name(topic_name(topic))
        .with_num_partitions(partition_count)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![creatable])
        .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX));
    let response = client.call(&request, CREATE_TOPICS_VERSION).await?;
    for result in &response.topics {
        if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
            bail!(
                "CreateTopics {topic}: error {} {:?}",
                result.error_code,
                result.error_message
            );
        }
    }
    wait_leaders(client, topic, partition_count, timeout).await
}

pub async fn wait_leaders(
    client: &mut Client,
    topic: &str,
    partition_count: i32,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let response = metadata(client, Some(&[topic])).await?;
        let led = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.error_code == 0 && p.leader_id != BrokerId(-1))
            .count();
        // Metadata can name a leader before that broker has taken leadership locally (Kafka answers
        // NOT_LEADER_OR_FOLLOWER for a moment after CreateTopics); ListOffsets succeeds only once it has.
        if led >= usize::try_from(partition_count).unwrap_or(0)
            && list_offsets(client, topic, partition_count, LATEST_TIMESTAMP)
                .await
                .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{topic}: {led} of {partition_count} partitions have a leader after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Offsets for partitions `0..partition_count` at `timestamp` (LATEST_TIMESTAMP / EARLIEST_TIMESTAMP).
pub async fn list_offsets(
    client: &mut Client,
    topic: &str,
    partition_count: i32,
    timestamp: i64,
) -> Result<Vec<i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_timeout_ms(30_000)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                (0..partition_count)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = client.call(&request, LIST_OFFSETS_VERSION).await?;
    let mut offsets = vec![-1i64; usize::try_from(partition_count)?];
    for partition in response.topics.iter().flat_map(|t| t.partitions.iter()) {
        if partition.error_code != 0 {
            bail!(
                "ListOffsets {topic}-{}: error {}",
                partition.partition_index,
                partition.error_code
            );
        }
        if let Some(slot) = usize::try_from(partition.partition_index)
            .ok()
            .and_then(|i| offsets.get_mut(i))
        {
            *slot = partition.offset;
        }
    }
    if offsets.contains(&-1) {
        bail!("ListOffsets {topic}: some partitions missing from the response");
    }
    Ok(offsets)
}
