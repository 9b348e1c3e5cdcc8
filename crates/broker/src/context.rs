//! What a handler knows about the request in front of it beyond its body: who sent it, over
//! which listener and connection, and the header (Kafka's `RequestContext`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::RequestHeader;
use runnel_cluster::group::ClientInfo;

/// An authenticated identity (Kafka's `KafkaPrincipal`): `User:ANONYMOUS` on a PLAINTEXT
/// listener, where nobody authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub principal_type: String,
    pub name: String,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            principal_type: "User".into(),
            name: "ANONYMOUS".into(),
        }
    }
}

/// Kafka's `SecurityProtocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
}

/// One client connection, fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// Unique within this process, for logs and (later) quotas and sessions.
    pub id: u64,
    pub peer: SocketAddr,
    /// The listener's name (`PLAINTEXT`, as Kafka names a `PLAINTEXT://` listener).
    pub listener: &'static str,
    pub security_protocol: SecurityProtocol,
    pub principal: Principal,
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

impl ConnectionContext {
    /// A connection accepted on the PLAINTEXT listener.
    pub fn plaintext(peer: SocketAddr) -> ConnectionContext {
        ConnectionContext {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            listener: "PLAINTEXT",
            security_protocol: SecurityProtocol::Plaintext,
            principal: Principal::anonymous(),
        }
    }
}

/// One request: its connection and header.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    pub connection: &'a ConnectionContext,
    pub header: &'a RequestHeader,
}

impl RequestContext<'_> {
    pub fn principal(&self) -> &Principal {
        &self.connection.principal
    }

    pub fn api_version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn client_id(&self) -> &str {
        self.header.client_id.as_ref().map_or("", |c| c.as_str())
    }

    /// Client id and host as the group coordinator records them; Kafka reports the host as
    /// the client address with a leading '/'.
    pub fn client_info(&self) -> ClientInfo {
        ClientInfo {
            client_id: self.client_id().to_owned(),
            client_host: format!("/{}", self.connection.peer.ip()),
        }
    }
}
