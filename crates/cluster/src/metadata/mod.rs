//! The metadata log and the image it yields.

mod image;
mod log;
mod record;

pub use image::{MetadataImage, TopicImage};
pub use log::MetadataLog;
pub use record::MetadataRecord;
