//! Cluster state for Runnel.
//!
//! All cluster state changes are records appended to a metadata log ([`metadata::MetadataLog`]);
//! applying them yields an immutable [`metadata::MetadataImage`] that request handlers read
//! through an atomic swap. The [`controller::ControllerEngine`] decides the records of each
//! command from the image alone; the broker appends them (to a local file log today, a Raft
//! quorum later) and applies them once committed. Nothing here does I/O or may depend on being
//! alone.

pub mod broker_config;
pub mod broker_lifecycle;
pub mod controller;
pub mod error;
pub mod features;
pub mod fuzzing;
pub mod group;
pub mod heartbeat;
pub mod kafka_configs;
pub mod metadata;
pub mod placement;
pub mod quorum;
pub mod reassignment;
pub mod shard;
pub mod shard_leadership;
pub mod topic_config;
pub mod txn;

pub use controller::{Command, ControllerEngine};
pub use error::ClusterError;
pub use metadata::{MetadataImage, TopicImage};
