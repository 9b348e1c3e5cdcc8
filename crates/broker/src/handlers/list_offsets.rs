//! ListOffsets: earliest, latest, by timestamp, max timestamp (and the tiered-storage specials,
//! answered as Kafka does when remote storage is off).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::errors::storage_error_code;
use crate::state::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const EARLIEST_PENDING_UPLOAD: i64 = -6;

pub fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let image = broker.image();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let resolved = image.topic(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let Some(partition) =
                        resolved.and_then(|t| broker.partition(&t.topic_id, p.partition_index))
                    else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if let Some(code) =
                        super::leader_epoch_error(p.current_leader_epoch, partition.leader_epoch)
                    {
                        return response.with_error_code(code);
                    }
                    let log = partition.lock_log();
                    // Leader epochs are reported from v4; earlier versions must keep -1.
                    let epoch = if version >= 4 {
                        log.latest_epoch().unwrap_or(partition.leader_epoch)
                    } else {
                        -1
                    };
                    match p.timestamp {
                        // No transactions yet, so the last stable offset is the high watermark
                        // for both isolation levels.
                        LATEST => response
                            .with_offset(log.high_watermark())
                            .with_leader_epoch(epoch),
                        EARLIEST | EARLIEST_LOCAL => response
                            .with_offset(log.log_start_offset())
                            .with_leader_epoch(epoch),
                        MAX_TIMESTAMP => match log.max_timestamp_and_offset() {
                            Ok(Some((offset, timestamp, batch_epoch))) => response
                                .with_timestamp(timestamp)
                                .with_offset(offset)
                                .with_leader_epoch(if version >= 4 { batch_epoch } else { -1 }),
                            Ok(None) => response,
                            Err(e) => response.with_error_code(storage_error_code(&e)),
                        },
                        // Remote storage is off: nothing is tiered or pending upload.
                        LATEST_TIERED | EARLIEST_PENDING_UPLOAD => response,
                        ts if ts < 0 => {
                            response.with_error_code(ResponseError::InvalidRequest.code())
                        }
                        ts => match log.offset_for_timestamp(ts) {
                            Ok(Some((offset, timestamp, batch_epoch)))
                                if offset < log.high_watermark() =>
                            {
                                response
                                    .with_offset(offset)
                                    .with_timestamp(timestamp)
                                    .with_leader_epoch(if version >= 4 { batch_epoch } else { -1 })
                            }
                            Ok(_) => response,
                            Err(e) => response.with_error_code(storage_error_code(&e)),
                        },
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
