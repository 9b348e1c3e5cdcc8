//! One Kafka request from this node to another one (the active controller, a partition's
//! leader, a transaction coordinator) and its answer, as every node-to-node client of the
//! broker sends it: the size-prefixed frame with its request header, then the answer's frame,
//! refused above a size bound before anything is allocated and walked with Kafka's schema
//! before it is decoded, whose header must echo the
//! correlation id and whose body must be read whole. Blocking streams serve the callers on
//! threads of their own (broker lifecycle, forwarded DescribeQuorum), tokio streams the async
//! ones (partition moves, transaction markers, AddPartitionsToTxn).

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// What identifies one request on its connection.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    /// The header's client id (names the sending component in the peer's logs).
    pub client_id: &'static str,
    /// Largest answer frame read; a larger one fails the call (a peer is not trusted with an
    /// allocation of its choosing).
    pub response_bytes_max: usize,
}

impl Call {
    /// The request frame: size, header, then the body `encode` writes.
    pub fn frame(&self, encode: impl FnOnce(&mut BytesMut) -> Result<()>) -> Result<Vec<u8>> {
        let header = RequestHeader::default()
            .with_request_api_key(self.key as i16)
            .with_request_api_version(self.version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        let mut body = BytesMut::new();
        header.encode(&mut body, self.key.request_header_version(self.version))?;
        encode(&mut body)?;
        let size = i32::try_from(body.len()).context("request too large")?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    /// The answer frame's size from its 4-byte prefix, within the bound.
    fn answer_size(&self, prefix: [u8; 4]) -> Result<usize> {
        let size = usize::try_from(i32::from_be_bytes(prefix)).context("negative answer size")?;
        if size > self.response_bytes_max {
            bail!(
                "answer of {size} bytes is larger than {}",
                self.response_bytes_max
            );
        }
        Ok(size)
    }

    /// The answer's body after its header, decoded by `decode`, which must read it whole.
    pub fn answer<Resp>(
        &self,
        mut answer: Bytes,
        decode: impl FnOnce(&mut Bytes) -> Result<Resp>,
    ) -> Result<Resp> {
        // kafka-protocol sizes vectors from counts on the wire before reading an element: a
        // peer's answer is walked with Kafka's schema first, as clients' requests are.
        runnel_protocol::validate::validate_response(self.key as i16, self.version, &answer)
            .with_context(|| format!("{:?} v{} answer", self.key, self.version))?;
        let header =
            ResponseHeader::decode(&mut answer, self.key.response_header_version(self.version))?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "answer to request {} where {} was expected",
                header.correlation_id,
                self.correlation_id
            );
        }
        let response = decode(&mut answer)?;
        if answer.has_remaining() {
            bail!("{} bytes after the answer", answer.remaining());
        }
        Ok(response)
    }
}

/// Sends `request` on a tokio stream and reads its answer.
pub async fn exchange<Req: Encodable, Resp: Decodable>(
    stream: &mut tokio::net::TcpStream,
    call: Call,
    request: &Req,
) -> Result<Resp> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let frame = call.frame(|body| request.encode(body, call.version))?;
    stream.write_all(&frame).await?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let mut answer = vec![0u8; call.answer_size(prefix)?];
    stream.read_exact(&mut answer).await?;
    call.answer(Bytes::from(answer), |body| Resp::decode(body, call.version))
}

/// Sends the request `encode` writes on a blocking stream and reads the answer `decode`
/// decodes (the stream's own timeouts bound both).
pub fn exchange_blocking<Resp>(
    stream: &mut std::net::TcpStream,
    call: Call,
    encode: impl FnOnce(&mut BytesMut) -> Result<()>,
    decode: impl FnOnce(&mut Bytes) -> Result<Resp>,
) -> Result<Resp> {
    use std::io::{Read, Write};
    let frame = call.frame(encode)?;
    stream.write_all(&frame)?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix)?;
    let mut answer = vec![0u8; call.answer_size(prefix)?];
    stream.read_exact(&mut answer)?;
    call.answer(Bytes::from(answer), decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::DescribeQuorumResponse;

    fn call() -> Call {
        Call {
            key: ApiKey::DescribeQuorum,
            version: 2,
            correlation_id: 7,
            client_id: "test",
            response_bytes_max: 1 << 20,
        }
    }

    // Proves a peer's answer claiming 2^31-1 topics in a few bytes is an error: decoded as it
    // came, kafka-protocol would ask for a vector of 2^31 topics and the allocation failure
    // would abort the whole process.
    #[test]
    fn an_answer_with_a_huge_count_fails_the_call_only() {
        // Correlation id 7, empty header tags, error 0, null message, topics: 2^31 - 1.
        let mut answer = vec![0, 0, 0, 7, 0, 0, 0, 0];
        answer.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        let result = call().answer(Bytes::from(answer), |body| {
            DescribeQuorumResponse::decode(body, 2)
        });
        assert!(result.is_err());
    }

    // Proves a well-formed answer still decodes (the walk follows kafka-protocol's grammar).
    #[test]
    fn a_well_formed_answer_decodes() {
        let mut answer = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(7)
            .encode(
                &mut answer,
                ApiKey::DescribeQuorum.response_header_version(2),
            )
            .unwrap();
        DescribeQuorumResponse::default()
            .with_error_message(Some(StrBytes::from_static_str("fine")))
            .encode(&mut answer, 2)
            .unwrap();
        let decoded = call()
            .answer(answer.freeze(), |body| {
                DescribeQuorumResponse::decode(body, 2)
            })
            .unwrap();
        assert_eq!(decoded.error_message.as_deref(), Some("fine"));
    }
}
