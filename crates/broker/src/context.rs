//! What a handler knows about the request in front of it beyond its body: who sent it, over
//! which listener and connection, and the header (Kafka's `RequestContext`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::RequestHeader;
use runnel_cluster::group::ClientInfo;

/// An authenticated identity (Kafka's `KafkaPrincipal`): `User:ANONYMOUS` where nobody
/// authenticates (a PLAINTEXT listener, an SSL one without a client certificate), the
/// certificate's subject (`User:CN=alice,OU=eng`) for a client certificate on an SSL listener.
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

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// Kafka's `SecurityProtocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    /// TLS (`transport::Transport::Tls`).
    Ssl,
}

/// One client connection, fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// Unique within this process, for logs and (later) quotas and sessions.
    pub id: u64,
    pub peer: SocketAddr,
    /// The listener's name (`PLAINTEXT`, `SSL`, or a custom name of `listeners`): answers
    /// carry this listener's endpoints.
    pub listener: Arc<str>,
    pub security_protocol: SecurityProtocol,
    pub principal: Principal,
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

impl ConnectionContext {
    /// A connection accepted on listener `listener`, authenticated as `principal`.
    pub fn new(
        peer: SocketAddr,
        listener: Arc<str>,
        security_protocol: SecurityProtocol,
        principal: Principal,
    ) -> ConnectionContext {
        ConnectionContext {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            listener,
            security_protocol,
            principal,
        }
    }

    /// A connection accepted on the PLAINTEXT listener.
    pub fn plaintext(peer: SocketAddr) -> ConnectionContext {
        Self::new(
            peer,
            Arc::from("PLAINTEXT"),
            SecurityProtocol::Plaintext,
            Principal::anonymous(),
        )
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
