//! `partition.metadata`: Kafka's `PartitionMetadataFile` ("version: 0\ntopic_id: <uuid>\n"),
//! where the uuid is Kafka's `Uuid.toString()`: URL-safe base64 without padding (22 chars).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::StorageError;

pub(crate) const PARTITION_METADATA_FILE: &str = "partition.metadata";
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// A metadata file is a few dozen bytes; anything bigger is not ours.
const METADATA_FILE_BYTES_MAX: u64 = 4096;

pub(crate) fn encode_topic_id(id: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let mut block = [0u8; 3];
        block[..chunk.len()].copy_from_slice(chunk);
        let n = (u32::from(block[0]) << 16) | (u32::from(block[1]) << 8) | u32::from(block[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let sextet = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

pub(crate) fn decode_topic_id(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 22 {
        return None;
    }
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut out = Vec::with_capacity(16);
    for &c in bytes {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push((bits >> bit_count) as u8);
            bits &= (1 << bit_count) - 1;
        }
    }
    out.try_into().ok()
}

/// Writes `partition.metadata` if absent, or checks the topic id in it.
pub(crate) fn check_or_write(dir: &Path, topic_id: &[u8; 16]) -> Result<(), StorageError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    match fs::metadata(&path) {
        Ok(meta) => {
            if meta.len() > METADATA_FILE_BYTES_MAX {
                return Err(StorageError::Corrupt(
                    "partition.metadata is too large".into(),
                ));
            }
            let text = fs::read_to_string(&path)?;
            let found = parse(&text)
                .ok_or_else(|| StorageError::Corrupt("malformed partition.metadata".into()))?;
            if &found != topic_id {
                return Err(StorageError::TopicIdMismatch);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
            let mut file = fs::File::create(&tmp)?;
            write!(
                file,
                "version: 0\ntopic_id: {}\n",
                encode_topic_id(topic_id)
            )?;
            // Durable before the rename so a crash never leaves an empty metadata file.
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn parse(text: &str) -> Option<[u8; 16]> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "version: 0" {
        return None;
    }
    let id = lines.next()?.trim().strip_prefix("topic_id:")?.trim();
    decode_topic_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_id_round_trips_in_kafka_base64url() {
        // Kafka prints Uuid(0x0102..) as URL-safe base64 without padding; we read back what we write.
        let id: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(250));
        let text = encode_topic_id(&id);
        assert_eq!(text.len(), 22);
        assert_eq!(decode_topic_id(&text), Some(id));
        // Kafka's Uuid.ZERO_UUID prints as "AAAAAAAAAAAAAAAAAAAAAA".
        assert_eq!(encode_topic_id(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(decode_topic_id("AAAA"), None);
    }
}
