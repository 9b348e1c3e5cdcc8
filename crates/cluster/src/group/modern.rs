//! The seam to KIP-848 consumer groups (`consumer/`, written separately).
//!
//! The coordinator only uses the agreed `ConsumerGroup` API. Until `consumer/` exports it, a
//! stand-in with the same signatures answers UNSUPPORTED_VERSION and recognizes no records, so
//! classic groups and offsets work on their own. Enable the real one with the cargo feature
//! `kip848` (runnel-cluster) once `consumer::ConsumerGroup` exists.

#[cfg(feature = "kip848")]
pub(crate) use super::consumer::{is_consumer_group_record_key, ConsumerGroup};

#[cfg(not(feature = "kip848"))]
pub(crate) use stand_in::{is_consumer_group_record_key, ConsumerGroup};

#[cfg(not(feature = "kip848"))]
mod stand_in {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
    use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

    use crate::group::{GroupConfig, Record, TopicView};

    /// Stand-in for `consumer::ConsumerGroup` with the agreed signatures.
    #[derive(Debug)]
    pub(crate) struct ConsumerGroup {
        group_id: String,
    }

    #[allow(dead_code, clippy::unused_self)]
    impl ConsumerGroup {
        pub fn new(group_id: String) -> Self {
            ConsumerGroup { group_id }
        }
        pub fn heartbeat(
            &mut self,
            _req: &ConsumerGroupHeartbeatRequest,
            _version: i16,
            _now_ms: i64,
            _topics: &dyn TopicView,
            _config: &GroupConfig,
        ) -> (ConsumerGroupHeartbeatResponse, Vec<Record>) {
            let response = ConsumerGroupHeartbeatResponse::default()
                .with_error_code(ResponseError::UnsupportedVersion.code());
            (response, Vec::new())
        }
        pub fn tick(
            &mut self,
            _now_ms: i64,
            _topics: &dyn TopicView,
            _config: &GroupConfig,
        ) -> Vec<Record> {
            Vec::new()
        }
        pub fn next_deadline_ms(&self) -> Option<i64> {
            None
        }
        pub fn describe(
            &self,
            _version: i16,
            _include_authorized_operations: bool,
            _topics: &dyn TopicView,
        ) -> DescribedGroup {
            DescribedGroup::default()
                .with_group_id(kafka_protocol::messages::GroupId(
                    kafka_protocol::protocol::StrBytes::from_string(self.group_id.clone()),
                ))
                .with_group_state(kafka_protocol::protocol::StrBytes::from_static_str("Empty"))
        }
        pub fn state_name(&self) -> &'static str {
            "Empty"
        }
        pub fn validate_offset_commit(
            &self,
            _member_id: &str,
            _member_epoch: i32,
        ) -> Result<(), i16> {
            Ok(())
        }
        pub fn validate_offset_fetch(
            &self,
            _member_id: Option<&str>,
            _member_epoch: i32,
        ) -> Result<(), i16> {
            Ok(())
        }
        pub fn is_empty(&self) -> bool {
            true
        }
        pub fn subscribed_topics(&self) -> Vec<String> {
            Vec::new()
        }
        pub fn replay(&mut self, _key: &[u8], _value: Option<&[u8]>) -> Result<bool, String> {
            Ok(false)
        }
        pub fn tombstones(&self) -> Vec<Record> {
            Vec::new()
        }
    }

    /// Stand-in: recognizes no key, so KIP-848 records are skipped at replay.
    pub(crate) fn is_consumer_group_record_key(_key: &[u8]) -> Option<String> {
        None
    }
}
