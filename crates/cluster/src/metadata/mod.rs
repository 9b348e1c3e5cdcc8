//! The metadata log (a trait: the broker owns the files behind it) and the image it yields.

mod image;
mod log;
mod record;

pub use image::{BrokerImage, MetadataDelta, MetadataImage, PartitionImage, TopicImage};
pub use log::{decode_entries, encode_entries, Decoded, LogEntry, MetadataLog};
pub use record::{BrokerListener, MetadataRecord};
