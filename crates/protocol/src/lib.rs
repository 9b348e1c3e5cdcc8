//! Bytes <-> typed Kafka requests and responses.
//!
//! Knows nothing of disks, sockets or topics. Everything here treats its input as hostile: a
//! length or count read from the wire is checked against the bytes that are actually left before
//! anything is sized from it.

pub mod api;
pub mod api_versions;
pub mod batch;
pub mod compression;
pub mod frame;
pub mod fuzzing;
pub mod kafka_uuid;
pub mod request;
pub mod splice;
pub mod validate;
