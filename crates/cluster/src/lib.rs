//! Cluster state for Runnel.
//!
//! All cluster state changes are records appended to a metadata log ([`metadata::MetadataLog`]);
//! applying them yields an immutable [`metadata::MetadataImage`] that request handlers read
//! through an atomic swap. Single node today: the local [`controller::Controller`] appends to a
//! local log. A cluster replicates the same log later, so nothing here may depend on being alone.

pub mod controller;
pub mod error;
pub mod fuzzing;
pub mod group;
pub mod metadata;
pub mod topic_config;

pub use controller::Controller;
pub use error::ClusterError;
pub use metadata::{MetadataImage, TopicImage};
