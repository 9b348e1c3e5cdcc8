//! The listener: accepts connections up to `max.connections`, and on shutdown stops accepting,
//! lets in-flight requests finish, then flushes and closes the logs.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::connection;
use crate::state::Broker;

/// How long shutdown waits for in-flight requests (a long-polling fetch waits at most its
/// `max_wait_ms`, which clients keep well under this).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) {
    let max_connections = broker.config.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let timers = tokio::spawn(Arc::clone(&broker.groups).run_timers(Arc::clone(&broker)));
    tokio::pin!(stop);
    loop {
        // Wait for a connection slot first, so at the limit we stop accepting (the kernel backlog
        // holds new clients) instead of accepting and dropping them.
        let permit = tokio::select! {
            _ = &mut stop => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let broker = Arc::clone(&broker);
                let shutdown = shutdown_rx.clone();
                tokio::spawn(async move {
                    connection::serve(broker, stream, peer, shutdown).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    drop(listener);
    let _ = shutdown_tx.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still busy after the grace period; closing anyway");
    }
    timers.abort();
    broker.shutdown();
    tracing::info!("shutdown complete");
}
