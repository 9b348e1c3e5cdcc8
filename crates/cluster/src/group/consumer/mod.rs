//! KIP-848 consumer groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe).
//!
//! - `group`: one group's state machine (heartbeat, timers, describe, offsets checks, replay).
//! - `member`: a member and its reconciliation towards its target assignment.
//! - `assignor`: the server-side `uniform` and `range` assignors.
//! - `records`: Kafka's `ConsumerGroup*` records in `__consumer_offsets`.
//! - `regex`: the RE2-subset matcher for `subscribed_topic_regex`.

pub mod assignor;
mod group;
pub mod member;
pub mod records;
pub mod regex;
#[cfg(test)]
mod tests;

pub use group::{
    ClassicError, ClassicJoin, ClientInfo, ConsumerGroup, PersistedGroup, LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};

/// Recognizes ConsumerGroup* record keys (key versions 3..=8 and 16 in Kafka's
/// `__consumer_offsets`) and returns the group id; `None` for other or malformed keys.
pub fn is_consumer_group_record_key(key: &[u8]) -> Option<String> {
    records::RecordKey::decode(key)
        .ok()
        .flatten()
        .map(|k| k.group_id().to_string())
}
