//! The listeners: accept connections on every bound listener up to `max.connections` (one
//! limit over all of them, as Kafka's), and on shutdown stop accepting, let in-flight requests
//! finish, then flush and close the logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::connection;
use crate::state::Broker;

/// How long shutdown waits for in-flight requests (a long-polling fetch waits at most its
/// `max_wait_ms`, which clients keep well under this).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One bound listener of `listeners`.
pub struct Listener {
    /// Its name (`PLAINTEXT`, `SSL`, ...), which its connections' requests carry.
    pub name: Arc<str>,
    pub socket: TcpListener,
    /// The TLS acceptor of an SSL listener; `None` on a PLAINTEXT one.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

pub async fn run(
    broker: Arc<Broker>,
    listeners: Vec<Listener>,
    stop: impl std::future::Future<Output = ()>,
) {
    // A controller-only node (`process.roles=controller`) has no client listener: it serves
    // the quorum and the Kafka requests of its CONTROLLER listener, and never registers.
    let broker_role = broker.has_broker_role();
    assert_eq!(
        listeners.is_empty(),
        !broker_role,
        "a broker has at least one client listener, a controller-only node none"
    );
    let max_connections = broker.config.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let timers = tokio::spawn(Arc::clone(&broker.groups).run_timers(Arc::clone(&broker)));
    let txn_timers = tokio::spawn(Arc::clone(&broker.txns).run_timers(Arc::clone(&broker)));
    let log_maintenance = tokio::spawn(crate::log_manager::run(
        Arc::clone(&broker),
        shutdown_rx.clone(),
    ));
    let cleaner = crate::log_cleaner::LogCleaner::start(Arc::clone(&broker));
    // Heartbeats go to the active controller (in process on a node without voters); while
    // this node is the active controller it fences brokers (itself included, should its
    // heartbeats stall) whose session expires.
    let channel = crate::lifecycle::controller_channel(&broker);
    let heartbeats = broker_role.then(|| {
        tokio::spawn(crate::lifecycle::run_heartbeats(
            Arc::clone(&broker),
            Arc::clone(&channel),
            shutdown_rx.clone(),
        ))
    });
    let fencing = tokio::spawn(crate::lifecycle::run_fencing(
        Arc::clone(&broker),
        shutdown_rx.clone(),
    ));
    let controller = broker.metadata.quorum().map(|quorum| {
        let (name, connections) = quorum.controller_connections();
        tokio::spawn(serve_controller_connections(
            Arc::clone(&broker),
            Arc::clone(&slots),
            Arc::from(name),
            connections,
            shutdown_rx.clone(),
        ))
    });
    tokio::pin!(stop);
    // A quorum node serves clients only once it has caught up with the metadata log and its
    // controller unfenced it, as Kafka's BrokerServer enables request processing only then:
    // before that its image may lack committed changes (a restarted node replaying), and a
    // client would be told of topics and configs as they were.
    let mut stopping = false;
    if !broker_role {
        stop.as_mut().await;
        stopping = true;
    } else if broker.metadata.is_quorum() {
        tokio::select! {
            _ = &mut stop => stopping = true,
            _ = wait_until_unfenced(&broker, true) => {}
        }
    }
    // Where the next accept starts looking, so a busy listener cannot starve the others.
    let mut first = 0;
    loop {
        if stopping {
            break;
        }
        // Wait for a connection slot first, so at the limit we stop accepting (the kernel backlog
        // holds new clients) instead of accepting and dropping them. One slot for whichever
        // listener has a client first: a slot held per idle listener would leave a busy one
        // short of `max.connections`.
        let permit = tokio::select! {
            _ = &mut stop => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (index, accepted) = tokio::select! {
            _ = &mut stop => break,
            accepted = accept_any(&listeners, first) => accepted,
        };
        first = (index + 1) % listeners.len();
        let listener = &listeners[index];
        match accepted {
            Ok((stream, peer)) => {
                let broker = Arc::clone(&broker);
                let shutdown = shutdown_rx.clone();
                let name = Arc::clone(&listener.name);
                let tls = listener.tls.clone();
                tokio::spawn(async move {
                    connection::serve(broker, stream, peer, name, tls, shutdown).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(listener = %listener.name, error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    drop(listeners);
    // Kafka's controlled shutdown: leaderships move away (clients are told
    // NOT_LEADER_OR_FOLLOWER and refresh their metadata) before the logs close.
    if let Some(heartbeats) = heartbeats {
        heartbeats.abort();
        let broker = Arc::clone(&broker);
        let channel = Arc::clone(&channel);
        let _ = tokio::task::spawn_blocking(move || {
            broker
                .lifecycle
                .controlled_shutdown(&broker, &*channel, SHUTDOWN_GRACE);
        })
        .await;
    }
    if let Some(controller) = controller {
        controller.abort();
    }
    let _ = shutdown_tx.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still busy after the grace period; closing anyway");
    }
    timers.abort();
    txn_timers.abort();
    fencing.abort();
    // A retention pass under way finishes before the logs close.
    if tokio::time::timeout(SHUTDOWN_GRACE, log_maintenance)
        .await
        .is_err()
    {
        tracing::warn!("log maintenance still busy after the grace period; closing anyway");
    }
    if let Some(cleaner) = cleaner {
        cleaner.shutdown();
    }
    broker.shutdown();
    tracing::info!("shutdown complete");
}

/// Returns once this node's current incarnation is registered and unfenced in its own image;
/// `announce`: say so in the log (the server does; the readiness probe waits silently).
pub async fn wait_until_unfenced(broker: &Broker, announce: bool) {
    let mut logged = !announce;
    loop {
        let epoch = broker.lifecycle.broker_epoch();
        let unfenced = broker
            .image()
            .brokers
            .get(&broker.node_id())
            .is_some_and(|b| b.broker_epoch == epoch && epoch >= 0 && !b.fenced);
        if unfenced {
            // Its leaderships' coordinator shards load in the background (see Broker::open).
            let deadline = tokio::time::Instant::now() + crate::state::COORDINATOR_LOAD_WAIT;
            while !broker.coordinators_loaded() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(UNFENCE_POLL).await;
            }
            if announce {
                tracing::info!("caught up with the metadata log and unfenced; serving clients");
            }
            return;
        }
        if !logged {
            tracing::info!(
                "waiting to catch up with the metadata log and be unfenced before serving clients"
            );
            logged = true;
        }
        tokio::time::sleep(UNFENCE_POLL).await;
    }
}

/// Returns once the quorum has an active controller this node knows of: when a
/// controller-only node is ready (it has no broker registration to wait for).
pub async fn wait_for_active_controller(broker: &Broker) {
    while broker.metadata.active_controller().is_none() {
        tokio::time::sleep(UNFENCE_POLL).await;
    }
    tracing::info!("the metadata quorum has an active controller");
}

/// How often a starting quorum node looks whether it was unfenced.
const UNFENCE_POLL: Duration = Duration::from_millis(20);

/// The next connection on any of `listeners`, looking at `first` first; with its listener's
/// index.
async fn accept_any(
    listeners: &[Listener],
    first: usize,
) -> (usize, std::io::Result<(TcpStream, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        for offset in 0..listeners.len() {
            let index = (first + offset) % listeners.len();
            if let Poll::Ready(accepted) = listeners[index].socket.poll_accept(cx) {
                return Poll::Ready((index, accepted));
            }
        }
        Poll::Pending
    })
    .await
}

/// Serves the Kafka connections of the CONTROLLER listener, which the quorum's listener
/// thread accepts and hands over (`metadata::quorum::ControllerConnection`). Each also takes
/// one of the `max.connections` slots; at the limit a connection is closed (the quorum's
/// listener has already accepted it, so there is no backlog to leave it in).
async fn serve_controller_connections(
    broker: Arc<Broker>,
    slots: Arc<Semaphore>,
    name: Arc<str>,
    mut connections: tokio::sync::mpsc::Receiver<crate::metadata::quorum::ControllerConnection>,
    shutdown: watch::Receiver<bool>,
) {
    while let Some(connection) = connections.recv().await {
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(listener = %name, "max.connections reached; closing a controller connection");
            continue;
        };
        let (stream, peer, slot) = connection.into_parts();
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, "cannot serve a controller connection");
                continue;
            }
        };
        let broker = Arc::clone(&broker);
        let shutdown = shutdown.clone();
        let name = Arc::clone(&name);
        tokio::spawn(async move {
            connection::serve(broker, stream, peer, name, None, shutdown).await;
            // The quorum listener's slot goes once the server is done with the connection.
            drop(slot);
            drop(permit);
        });
    }
}
