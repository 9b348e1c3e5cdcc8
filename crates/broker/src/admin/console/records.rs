//! The record browser: reads a few records of one partition, from an offset or from the end,
//! and shows each key, value and header value as text when it is UTF-8 and as hex otherwise,
//! cut at `RECORD_FIELD_BYTES_SHOWN_MAX` bytes (and saying so).
//!
//! Bounded: at most `RECORDS_MAX` records per request, read in whole batches within
//! `RECORDS_READ_BYTES_MAX` bytes (one batch larger than that is still read whole, as a Fetch
//! with KIP-74 would, so a batch is never cut; its size is capped by `max.message.bytes`),
//! compressed batches decompressed within the broker's usual limits. Only offsets below the
//! high watermark are shown; control batches (transaction markers) are skipped.

use runnel_protocol::batch::{
    BatchHeader, BatchRecords, RecordView, TimestampType, BATCH_HEADER_LEN,
};
use runnel_protocol::compression::DecompressLimits;
use runnel_storage::{LogSnapshot, StorageError};
use serde_json::{json, Value};

/// Records one browse request returns at most.
pub const RECORDS_MAX: i64 = 500;

/// Records a browse request returns unless it asks (`limit`).
pub const RECORDS_DEFAULT: i64 = 50;

/// Bytes of stored batches one browse request reads (beyond a first batch larger than this).
pub const RECORDS_READ_BYTES_MAX: usize = 4 << 20;

/// Bytes of one key, value or header value shown; the rest is cut and the field says so.
pub const RECORD_FIELD_BYTES_SHOWN_MAX: usize = 4096;

/// Headers shown per record; the rest are counted.
pub const RECORD_HEADERS_SHOWN_MAX: usize = 64;

/// Where a browse starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At this offset (clamped to the log start; at or past the high watermark: nothing).
    Offset(i64),
    /// The last `limit` records below the high watermark (a tail).
    End,
}

/// Up to `limit` records of the log from `start`, as the console's JSON.
pub fn browse(log: &LogSnapshot, start: Start, limit: i64) -> Result<Value, StorageError> {
    let log_start = log.log_start_offset();
    let high_watermark = log.high_watermark();
    let from = match start {
        Start::Offset(offset) => offset.max(log_start),
        Start::End => (high_watermark - limit).max(log_start),
    };
    let limits = DecompressLimits::for_max_message_bytes(RECORDS_READ_BYTES_MAX);
    let mut records = Vec::new();
    let mut position = from;
    let mut bytes_read = 0usize;
    let mut problem = None;
    'reads: while i64::try_from(records.len()).unwrap_or(i64::MAX) < limit
        && position < high_watermark
        && bytes_read < RECORDS_READ_BYTES_MAX
    {
        let bytes = log.read(
            position,
            RECORDS_READ_BYTES_MAX - bytes_read,
            high_watermark,
            true,
        )?;
        if bytes.is_empty() {
            break;
        }
        let before = position;
        bytes_read += bytes.len();
        let mut at = 0usize;
        while at < bytes.len() {
            let Ok(header) = BatchHeader::parse(&bytes[at..]) else {
                break;
            };
            let size = header.size_bytes();
            if size < BATCH_HEADER_LEN {
                break;
            }
            let Some(batch) = bytes.get(at..at.saturating_add(size)) else {
                break;
            };
            at += size;
            let after_batch = header.last_offset().saturating_add(1);
            if header.is_control() || header.last_offset() < position {
                position = position.max(after_batch);
                continue;
            }
            let opened = match BatchRecords::open(batch, limits) {
                Ok(opened) => opened,
                Err(e) => {
                    problem = Some(format!(
                        "batch at offset {} not shown: {e}",
                        header.base_offset
                    ));
                    position = position.max(after_batch);
                    continue;
                }
            };
            let log_append = header.timestamp_type() == TimestampType::LogAppendTime;
            let mut full = false;
            let walked = opened.for_each(|r| {
                let offset = header.base_offset.saturating_add(i64::from(r.offset_delta));
                if full || offset < position || offset >= high_watermark {
                    return;
                }
                records.push(record(offset, log_append, &r));
                full = i64::try_from(records.len()).unwrap_or(i64::MAX) >= limit;
            });
            if let Err(e) = walked {
                problem = Some(format!(
                    "batch at offset {} not shown: {e}",
                    header.base_offset
                ));
            }
            if full {
                position = records
                    .last()
                    .and_then(|r: &Value| r["offset"].as_i64())
                    .map_or(after_batch, |o| o + 1);
                break 'reads;
            }
            position = position.max(after_batch);
        }
        if position == before {
            // Nothing readable past `position` (a guard: stored batches were validated).
            break;
        }
    }
    Ok(json!({
        "log_start_offset": log_start,
        "high_watermark": high_watermark,
        "from": from,
        "next_offset": position.min(high_watermark).max(from),
        "records": records,
        "problem": problem,
        "limits": {
            "records_max": RECORDS_MAX,
            "read_bytes_max": RECORDS_READ_BYTES_MAX,
            "field_bytes_shown_max": RECORD_FIELD_BYTES_SHOWN_MAX,
            "headers_shown_max": RECORD_HEADERS_SHOWN_MAX,
        },
    }))
}

fn record(offset: i64, log_append: bool, r: &RecordView<'_>) -> Value {
    let (headers, headers_total) = headers(r.headers);
    json!({
        "offset": offset,
        "timestamp": r.timestamp,
        "timestamp_type": if log_append { "LogAppendTime" } else { "CreateTime" },
        "key": field(r.key),
        "value": field(r.value),
        "headers": headers,
        "headers_total": headers_total,
    })
}

/// A key, value or header value as shown: `{"encoding": "utf8"|"hex"|"null", "data",
/// "size", "truncated"}`. Cut at `RECORD_FIELD_BYTES_SHOWN_MAX` bytes (a UTF-8 cut falls back
/// to the last whole character).
pub fn field(bytes: Option<&[u8]>) -> Value {
    let Some(bytes) = bytes else {
        return json!({ "encoding": "null", "data": null, "size": 0, "truncated": false });
    };
    let shown = &bytes[..bytes.len().min(RECORD_FIELD_BYTES_SHOWN_MAX)];
    let truncated = shown.len() < bytes.len();
    let text = match std::str::from_utf8(shown) {
        Ok(text) => Some(text),
        // A cut in the middle of a character: the whole ones before it, if all else was text.
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(&shown[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(text) => json!({
            "encoding": "utf8", "data": text, "size": bytes.len(), "truncated": truncated,
        }),
        None => json!({
            "encoding": "hex", "data": hex(shown), "size": bytes.len(), "truncated": truncated,
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The headers of a record (the count varint and the headers as written): up to
/// `RECORD_HEADERS_SHOWN_MAX` of them as `{"key", "value"}`, and the count the record claims.
/// Malformed bytes end the list (the batch passed validation when it was written, so this is
/// only a guard).
fn headers(raw: &[u8]) -> (Vec<Value>, i64) {
    let mut cursor = raw;
    let Some(count) = varint(&mut cursor) else {
        return (Vec::new(), 0);
    };
    let mut shown = Vec::new();
    for _ in 0..count.clamp(0, RECORD_HEADERS_SHOWN_MAX as i64) {
        let Some(key) = varint(&mut cursor)
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| take(&mut cursor, n))
        else {
            break;
        };
        let value = match varint(&mut cursor) {
            Some(-1) => None,
            Some(n) => match usize::try_from(n).ok().and_then(|n| take(&mut cursor, n)) {
                Some(value) => Some(value),
                None => break,
            },
            None => break,
        };
        shown.push(json!({
            "key": String::from_utf8_lossy(&key[..key.len().min(RECORD_FIELD_BYTES_SHOWN_MAX)]),
            "value": field(value),
        }));
    }
    (shown, count.max(0))
}

fn take<'a>(cursor: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if cursor.len() < n {
        return None;
    }
    let (taken, rest) = cursor.split_at(n);
    *cursor = rest;
    Some(taken)
}

/// A zig-zag varint (Kafka's `ByteUtils.readVarint`), at most 5 bytes.
fn varint(cursor: &mut &[u8]) -> Option<i64> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let (&byte, rest) = cursor.split_first()?;
        *cursor = rest;
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = (value >> 1) as i32 ^ -((value & 1) as i32);
            return Some(i64::from(decoded));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Text stays text, binary becomes hex, and long fields are cut and marked.
    #[test]
    fn fields_show_text_or_hex_within_the_limit() {
        assert_eq!(field(None)["encoding"], "null");
        let text = field(Some("héllo".as_bytes()));
        assert_eq!(
            (text["encoding"].as_str(), text["data"].as_str()),
            (Some("utf8"), Some("héllo"))
        );
        let binary = field(Some(&[0xff, 0x00, 0x10]));
        assert_eq!(
            (binary["encoding"].as_str(), binary["data"].as_str()),
            (Some("hex"), Some("ff0010"))
        );
        let long = "é".repeat(RECORD_FIELD_BYTES_SHOWN_MAX);
        let cut = field(Some(long.as_bytes()));
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["encoding"], "utf8");
        assert_eq!(cut["size"], long.len());
        assert!(cut["data"].as_str().unwrap().len() <= RECORD_FIELD_BYTES_SHOWN_MAX);
    }

    // Headers decode as written; a count that lies about the bytes stops the list, no panic.
    #[test]
    fn headers_decode_and_survive_garbage() {
        // 2 headers: "a" -> "1", "b" -> null (zig-zag: 2 -> 4, 1 -> 2, -1 -> 1).
        let raw = [4, 2, b'a', 2, b'1', 2, b'b', 1];
        let (shown, count) = headers(&raw);
        assert_eq!(count, 2);
        assert_eq!(shown[0]["key"], "a");
        assert_eq!(shown[0]["value"]["data"], "1");
        assert_eq!(shown[1]["value"]["encoding"], "null");
        let (shown, count) = headers(&[0x7e, 2, b'a', 0xff]);
        assert_eq!((shown.len(), count), (0, 63));
        assert_eq!(headers(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).0.len(), 0);
    }
}
