//! Kafka's record rules on produce through the real handlers: INVALID_TIMESTAMP with Kafka's
//! record errors for `message.timestamp.before.max.ms`, and `compression.type` changes (broker
//! default, then a topic override) reaching the partition's next append without a restart.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::call_handler;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_broker::config::BrokerConfig;
use runnel_broker::state::Broker;
use runnel_protocol::batch::{
    encode_uncompressed_batch, BatchHeader, BatchSpec, Compression, RecordSpec,
};

const TOPIC: &str = "rules";

fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    Broker::open(config, ("localhost".into(), 9092)).expect("open broker")
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

async fn create(broker: &Arc<Broker>, configs: &[(&str, &str)]) {
    let request = common::create_topics_request(TOPIC, 1, configs);
    let ResponseKind::CreateTopics(r) =
        call_handler(broker, ApiKey::CreateTopics, 7, request).await
    else {
        panic!("wrong response")
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// SET `name=value` on a resource (2 = topic, 4 = broker; "" = the cluster-wide default).
async fn set(broker: &Arc<Broker>, resource_type: i8, resource: &str, name: &str, value: &str) {
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(str(resource))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(str(name))
                    .with_config_operation(0)
                    .with_value(Some(str(value))),
            ]),
    ]);
    let ResponseKind::IncrementalAlterConfigs(r) = call_handler(
        broker,
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(request),
    )
    .await
    else {
        panic!("wrong response")
    };
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
}

fn batch(timestamp_ms: i64) -> Bytes {
    let value = b"a value that compresses, a value that compresses".repeat(4);
    encode_uncompressed_batch(&BatchSpec {
        base_timestamp: timestamp_ms,
        records: (0..3)
            .map(|_| RecordSpec {
                value: Some(&value),
                ..RecordSpec::default()
            })
            .collect(),
        ..BatchSpec::default()
    })
    .into()
}

async fn produce(
    broker: &Arc<Broker>,
    records: Bytes,
) -> produce_response::PartitionProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(str(TOPIC)))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])]);
    let ResponseKind::Produce(r) =
        call_handler(broker, ApiKey::Produce, 11, RequestKind::Produce(request)).await
    else {
        panic!("wrong response")
    };
    r.responses[0].partition_responses[0].clone()
}

/// Codecs of the stored batches, in order.
fn stored_codecs(broker: &Arc<Broker>) -> Vec<Compression> {
    let image = broker.image();
    let topic = image.topic(TOPIC).expect("topic");
    let partition = broker.partition(&topic.topic_id, 0).expect("partition");
    let bytes = partition
        .reader()
        .read(0, 1 << 20, i64::MAX, true)
        .expect("read");
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let header = BatchHeader::parse(&bytes[pos..]).expect("header");
        out.push(header.compression().expect("codec"));
        pos += header.size_bytes();
    }
    out
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

#[tokio::test]
async fn a_too_old_record_is_invalid_timestamp_with_kafkas_record_errors() {
    // Goal: before.max.ms refuses the batch with INVALID_TIMESTAMP, Kafka's message and one record error per record.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    create(&broker, &[("message.timestamp.before.max.ms", "3600000")]).await;
    let old = now_ms() - 7_200_000;
    let answer = produce(&broker, batch(old)).await;
    assert_eq!(answer.error_code, 32, "INVALID_TIMESTAMP");
    assert_eq!(answer.base_offset, -1);
    assert_eq!(
        answer.log_start_offset, 0,
        "Kafka answers the log start with record errors"
    );
    assert_eq!(
        answer.error_message.as_deref(),
        Some("One or more records have been rejected due to invalid timestamp")
    );
    assert_eq!(
        answer
            .record_errors
            .iter()
            .map(|e| e.batch_index)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let message = answer.record_errors[0]
        .batch_index_error_message
        .as_deref()
        .expect("message")
        .to_string();
    assert!(
        message.starts_with(&format!("Timestamp {old} of message with offset 0 is out of range. The timestamp should be within [")),
        "{message}"
    );
    let fresh = produce(&broker, batch(now_ms())).await;
    assert_eq!((fresh.error_code, fresh.base_offset), (0, 0));
}

#[tokio::test]
async fn compression_type_changes_reach_the_next_append_without_a_restart() {
    // Goal: the broker default (dynamic, cluster-wide) and then a topic override decide the stored codec of the next batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    create(&broker, &[]).await;
    assert_eq!(produce(&broker, batch(now_ms())).await.error_code, 0);
    set(&broker, 4, "", "compression.type", "zstd").await;
    assert_eq!(produce(&broker, batch(now_ms())).await.error_code, 0);
    set(&broker, 2, TOPIC, "compression.type", "lz4").await;
    assert_eq!(produce(&broker, batch(now_ms())).await.error_code, 0);
    set(&broker, 2, TOPIC, "compression.type", "producer").await;
    assert_eq!(produce(&broker, batch(now_ms())).await.error_code, 0);
    assert_eq!(
        stored_codecs(&broker),
        [
            Compression::None,
            Compression::Zstd,
            Compression::Lz4,
            Compression::None
        ]
    );
}
