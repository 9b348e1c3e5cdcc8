//! Response frames with holes, so record bytes can go from a file to the socket without passing
//! through user space (Kafka's zero-copy `FileRecords.writeTo`, i.e. `sendfile`).
//!
//! kafka-protocol encodes a `records` field as a length prefix followed by one `put_slice` of the
//! field's bytes. A fetch handler fills each `records` field with a [`placeholder`] of the real
//! length: a slice of a reserved, never-written zero region. [`encode_response_with_holes`] runs
//! kafka-protocol's own encoder into a buffer that recognises those slices by address and, instead
//! of copying them, cuts the frame there and puts the caller's next *external* part (a file range)
//! in the hole. Every version rule, length prefix and tagged field therefore stays
//! kafka-protocol's; this module adds no encoding of its own. The tests check, for every Fetch
//! version, that filling the holes gives exactly the bytes of a plain encode.
//!
//! Nothing here reads the placeholder region: its pages are never touched, so it costs address
//! space, not memory.

use std::ops::Range;
use std::sync::OnceLock;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use crate::frame::EncodeError;

/// Largest hole: the size of the reserved placeholder region. A records field is an `i32`-sized
/// byte string and fetches are capped by `fetch.max.bytes` (or one batch, at most a segment), so
/// 1 GiB of address space (no memory: it is never touched) covers every real answer; a larger one
/// is simply encoded in memory.
pub const HOLE_BYTES_MAX: usize = 1 << 30;

/// The reserved region: `mmap`ed read-only, private and anonymous, so every page is the shared
/// zero page if anything ever read it. `None` if the mapping failed (then nothing is spliced).
fn region() -> Option<&'static [u8]> {
    static REGION: OnceLock<Option<usize>> = OnceLock::new();
    let base = *REGION.get_or_init(|| {
        // SAFETY: a fresh anonymous mapping with no address hint aliases nothing; it is never
        // unmapped, so the `'static` slice below stays valid.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                HOLE_BYTES_MAX,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(ptr as usize)
    });
    // SAFETY: `base` is the start of a live, readable (zero-filled), never-unmapped mapping of
    // `HOLE_BYTES_MAX` bytes that nothing writes.
    base.map(|b| unsafe { std::slice::from_raw_parts(b as *const u8, HOLE_BYTES_MAX) })
}

/// A stand-in for `len` bytes that will come from elsewhere, or `None` if `len` is larger than
/// [`HOLE_BYTES_MAX`] or the region could not be reserved (the caller then supplies real bytes).
pub fn placeholder(len: usize) -> Option<Bytes> {
    let region = region()?;
    region.get(..len).map(Bytes::from_static)
}

/// Whether `slice` is a [`placeholder`] (by address; its zero content is never looked at).
pub fn is_placeholder(slice: &[u8]) -> bool {
    let Some(region) = region() else {
        return false;
    };
    let start = region.as_ptr() as usize;
    let at = slice.as_ptr() as usize;
    // Empty slices may point anywhere; an empty records field is written as is.
    !slice.is_empty() && at == start && slice.len() <= region.len()
}

/// A part of a spliced frame, in send order.
#[derive(Debug)]
pub enum Part<E> {
    Bytes(Bytes),
    /// The caller's stand-in for the bytes of one hole.
    External(E),
}

/// Something that fills a hole, and how many bytes it stands for.
pub trait External {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encodes a whole response frame (size prefix, header, body) like
/// `frame::encode_response`, except that each records field holding a [`placeholder`] becomes
/// a [`Part::External`], taken in encode order from `externals`. Fails, so the caller can encode
/// in memory instead, if the holes and `externals` do not pair up one to one with equal lengths.
pub fn encode_response_with_holes<E: External, M: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &M,
    externals: Vec<E>,
) -> Result<Vec<Part<E>>, EncodeError> {
    let err = |message: String| EncodeError::Encode {
        api: api_key,
        version: api_version,
        message,
    };
    let mut buf = SplicingBuf {
        done: Vec::new(),
        done_len: 0,
        current: BytesMut::with_capacity(256),
        externals: externals.into_iter(),
        broken: None,
        scratch: Vec::new(),
    };
    buf.current.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(|e| err(e.to_string()))?;
    body.encode(&mut buf, api_version)
        .map_err(|e| err(e.to_string()))?;
    if let Some(why) = buf.broken.take() {
        return Err(err(why));
    }
    if buf.externals.next().is_some() {
        return Err(err("more external parts than holes".into()));
    }
    let total = buf.done_len + buf.current.len();
    let size = i32::try_from(total - 4).map_err(|_| EncodeError::TooLarge(total))?;
    buf.flush_current();
    let mut parts = buf.done;
    match parts.first_mut() {
        Some(Part::Bytes(first)) if first.len() >= 4 => {
            let mut head = BytesMut::from(first.as_ref());
            head[..4].copy_from_slice(&size.to_be_bytes());
            *first = head.freeze();
        }
        _ => return Err(err("frame does not start with its size prefix".into())),
    }
    Ok(parts)
}

/// The encoder's output buffer: finished parts plus the bytes since the last hole.
struct SplicingBuf<E, I: Iterator<Item = E>> {
    done: Vec<Part<E>>,
    /// Frame bytes in `done`, holes included.
    done_len: usize,
    current: BytesMut,
    externals: I,
    /// Why the frame cannot be spliced; checked when encoding returns.
    broken: Option<String>,
    /// Backing for a `range` request that crosses a hole (only ever reached if kafka-protocol
    /// starts back-patching across a records field; the frame is then marked broken).
    scratch: Vec<u8>,
}

impl<E: External, I: Iterator<Item = E>> SplicingBuf<E, I> {
    fn flush_current(&mut self) {
        if !self.current.is_empty() {
            let bytes = self.current.split().freeze();
            self.done_len += bytes.len();
            self.done.push(Part::Bytes(bytes));
        }
    }

    fn hole(&mut self, len: usize) {
        match self.externals.next() {
            Some(external) if external.len() == len => {
                self.flush_current();
                self.done_len += len;
                self.done.push(Part::External(external));
            }
            Some(external) => {
                self.broken.get_or_insert_with(|| {
                    format!(
                        "a hole of {len} bytes met an external part of {}",
                        external.len()
                    )
                });
            }
            None => {
                self.broken
                    .get_or_insert_with(|| "more holes than external parts".into());
            }
        }
    }
}

// SAFETY: every method delegates to `current` (a `BytesMut`), whose `BufMut` contract holds.
unsafe impl<E: External, I: Iterator<Item = E>> BufMut for SplicingBuf<E, I> {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded from our caller, who initialised `cnt` bytes of `chunk_mut`.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if is_placeholder(src) {
            self.hole(src.len());
        } else {
            self.current.put_slice(src);
        }
    }
}

impl<E: External, I: Iterator<Item = E>> ByteBufMut for SplicingBuf<E, I> {
    fn offset(&self) -> usize {
        self.done_len + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.done_len) {
            Some(local) => self.current.resize(local, 0),
            None => {
                self.broken
                    .get_or_insert_with(|| "seek back across a hole".into());
            }
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let local = r.start.checked_sub(self.done_len).and_then(|start| {
            let end = r.end.checked_sub(self.done_len)?;
            (end <= self.current.len()).then_some(start..end)
        });
        match local {
            Some(local) => &mut self.current[local],
            None => {
                self.broken
                    .get_or_insert_with(|| "back-patch across a hole".into());
                self.scratch.clear();
                self.scratch.resize(r.len(), 0);
                &mut self.scratch
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_response;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{FetchResponse, ProducerId, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    /// A test external: the bytes it stands for.
    struct Chunk(Bytes);
    impl External for Chunk {
        fn len(&self) -> usize {
            self.0.len()
        }
    }

    fn join(parts: Vec<Part<Chunk>>) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                Part::Bytes(b) => out.extend_from_slice(&b),
                Part::External(Chunk(b)) => out.extend_from_slice(&b),
            }
        }
        out
    }

    fn partition(index: i32, records: Option<Bytes>) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(1000 + i64::from(index))
            .with_last_stable_offset(999)
            .with_log_start_offset(7)
            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                .with_producer_id(ProducerId(9))
                .with_first_offset(3)]))
            .with_records(records)
    }

    /// Records of several sizes (empty, null, small, 100 KiB) over two topics.
    fn contents() -> Vec<Option<Bytes>> {
        vec![
            Some(Bytes::from_static(b"first records")),
            None,
            Some(Bytes::new()),
            Some(Bytes::from(vec![7u8; 100 * 1024])),
            Some(Bytes::from_static(b"x")),
        ]
    }

    fn response(records: Vec<Option<Bytes>>, version: i16) -> FetchResponse {
        let mut partitions: Vec<PartitionData> = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| partition(i as i32, r))
            .collect();
        let second = partitions.split_off(partitions.len().min(2));
        let topic = |name: &'static str, id: u128| {
            if version >= 13 {
                FetchableTopicResponse::default().with_topic_id(uuid::Uuid::from_u128(id))
            } else {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str(name)))
            }
        };
        FetchResponse::default()
            .with_throttle_time_ms(5)
            .with_session_id(if version >= 7 { 42 } else { 0 })
            .with_responses(vec![
                topic("a", 1).with_partitions(partitions),
                topic("bb", 2).with_partitions(second),
            ])
    }

    #[test]
    fn holes_filled_give_the_plain_encoding_at_every_fetch_version() {
        // Goal: splicing adds no encoding of its own. For every Fetch version we serve, the frame
        // with holes, once filled with the bytes the externals stand for, equals kafka-protocol's
        // plain encode of the same response (sizes, compact lengths, tagged fields, size prefix).
        for version in 4..=18i16 {
            let header_version = ApiKey::Fetch.response_header_version(version);
            let plain = encode_response(
                ApiKey::Fetch,
                version,
                header_version,
                77,
                &ResponseKind::Fetch(response(contents(), version)),
            )
            .unwrap();
            let mut externals = Vec::new();
            let with_placeholders: Vec<Option<Bytes>> = contents()
                .into_iter()
                .map(|c| match c {
                    Some(b) if !b.is_empty() => {
                        let hole = placeholder(b.len()).unwrap();
                        externals.push(Chunk(b));
                        Some(hole)
                    }
                    other => other,
                })
                .collect();
            assert_eq!(externals.len(), 3);
            let parts = encode_response_with_holes(
                ApiKey::Fetch,
                version,
                header_version,
                77,
                &response(with_placeholders, version),
                externals,
            )
            .unwrap();
            let holes = parts
                .iter()
                .filter(|p| matches!(p, Part::External(_)))
                .count();
            assert_eq!(holes, 3, "v{version}: every placeholder became a hole");
            assert_eq!(join(parts), plain.to_vec(), "v{version}");
        }
    }

    #[test]
    fn mismatched_externals_are_refused_not_sent() {
        // Goal: a frame whose holes and externals do not pair up exactly is an error (the caller
        // falls back to an in-memory encode), never a frame with wrong lengths.
        let records = vec![Some(placeholder(10).unwrap())];
        let wrong_len = encode_response_with_holes(
            ApiKey::Fetch,
            12,
            1,
            1,
            &response(records.clone(), 12),
            vec![Chunk(Bytes::from_static(b"123456789"))],
        );
        assert!(wrong_len.is_err());
        let too_few = encode_response_with_holes::<Chunk, FetchResponse>(
            ApiKey::Fetch,
            12,
            1,
            1,
            &response(records.clone(), 12),
            vec![],
        );
        assert!(too_few.is_err());
        let too_many = encode_response_with_holes(
            ApiKey::Fetch,
            12,
            1,
            1,
            &response(records, 12),
            vec![
                Chunk(Bytes::from(vec![0u8; 10])),
                Chunk(Bytes::from(vec![0u8; 10])),
            ],
        );
        assert!(too_many.is_err());
    }

    #[test]
    fn placeholders_cost_no_memory_and_have_limits() {
        // Goal: a hole larger than the region is refused (the caller reads into memory instead),
        // and a placeholder is recognised only by its address, never by its zero content.
        assert!(placeholder(HOLE_BYTES_MAX + 1).is_none());
        assert!(placeholder(HOLE_BYTES_MAX).is_some());
        assert!(!is_placeholder(&[0u8; 64]));
        assert!(!is_placeholder(&[]));
    }
}
