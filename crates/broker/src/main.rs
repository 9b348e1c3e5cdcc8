//! `runnel`: a Kafka-compatible broker. With no arguments: one node on localhost:9092, data in
//! ./data.

use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context;
use runnel_broker::config::{self, Command};
use runnel_broker::context::SecurityProtocol;
use runnel_broker::{admin, replica, server, state, tls};

/// The static musl build (the container image) would otherwise use musl's allocator, which
/// serialises every allocation on one lock.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match config::parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runnel: {e:#}");
            return ExitCode::from(2);
        }
    };
    let (config, warnings) = match command {
        Command::Help => {
            println!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("runnel {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run(config, warnings) => (*config, warnings),
    };
    let log_format = config.log_format;
    runnel_broker::logging::init(log_format);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            // The plain repeat is for people; in JSON every stderr line must stay an object.
            if log_format == runnel_broker::logging::LogFormat::Text {
                eprintln!("runnel: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::BrokerConfig) -> anyhow::Result<()> {
    log_startup_summary(&config);
    // The TLS material first: a bad keystore stops startup before any port is bound. Files are
    // small and read once, so blocking here is fine.
    let tls = if config
        .listeners
        .iter()
        .any(|l| l.security_protocol == SecurityProtocol::Ssl)
    {
        let server_config = tokio::task::block_in_place(|| tls::server_config(&config.ssl))?;
        Some(tokio_rustls::TlsAcceptor::from(server_config))
    } else {
        None
    };
    let mut listeners = Vec::with_capacity(config.listeners.len());
    let mut endpoints = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let address = listener.bind_address();
        let socket = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("binding listener {} at {address}", listener.name))?;
        let bound = socket.local_addr()?;
        let advertised = listener.advertised_endpoint(bound);
        tracing::info!(
            listener = %listener.name,
            security_protocol = ?listener.security_protocol,
            listen = %bound,
            advertised = %format!("{}:{}", advertised.0, advertised.1),
            "listening"
        );
        endpoints.push((listener.name.clone(), advertised));
        listeners.push(server::Listener {
            name: Arc::from(listener.name.as_str()),
            socket,
            tls: match listener.security_protocol {
                SecurityProtocol::Plaintext => None,
                SecurityProtocol::Ssl => tls.clone(),
            },
        });
    }
    // The admin listener before the logs are opened: /health answers during recovery.
    let admin_state = admin::AdminState::new();
    start_admin(&config.admin, &admin_state).await?;
    let broker =
        tokio::task::block_in_place(|| state::Broker::open_with_endpoints(config, endpoints))?;
    admin_state.broker_open(&broker);
    {
        // Ready once clients are served: at once on a single node; in a quorum once this
        // incarnation is registered and unfenced (the server opens its listeners only then).
        let admin_state = Arc::clone(&admin_state);
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            if !broker.has_broker_role() {
                server::wait_for_active_controller(&broker).await;
            } else if broker.metadata.is_quorum() {
                server::wait_until_unfenced(&broker, false).await;
            }
            admin_state.serving();
        });
    }
    tracing::info!(
        node_id = broker.node_id(),
        data_dir = %broker.config.data_dir.display(),
        "runnel is ready"
    );
    tokio::spawn(replica::move_fetcher::run(
        Arc::clone(&broker),
        broker.config.replica_fetch,
    ));
    let stop = async {
        stop_signal().await;
        admin_state.shutting_down();
    };
    server::run(broker, listeners, stop).await;
    Ok(())
}

/// Binds the admin listener (if on) and serves it for the life of the process. A configured
/// address that cannot be bound stops startup; the default one only warns (see
/// `AdminConfig::explicit`).
async fn start_admin(
    config: &admin::AdminConfig,
    state: &Arc<admin::AdminState>,
) -> anyhow::Result<()> {
    let Some(address) = &config.listener else {
        tracing::info!("admin listener off ({} is empty)", admin::LISTENER_KEY);
        return Ok(());
    };
    let socket = match tokio::net::TcpListener::bind(address.as_str()).await {
        Ok(socket) => socket,
        Err(e) if !config.explicit => {
            tracing::warn!(listen = %address, error = %e, "cannot bind the default admin listener; running without /metrics, /health and /ready (set {} to choose another address)", admin::LISTENER_KEY);
            return Ok(());
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "binding the admin listener at {address} ({})",
                    admin::LISTENER_KEY
                )
            })
        }
    };
    tracing::info!(listen = %socket.local_addr()?, "admin listener: /metrics, /health, /ready");
    tokio::spawn(admin::serve(
        socket,
        Arc::clone(state),
        config.connections_max,
    ));
    Ok(())
}

/// One line saying what this process runs with: identity, where data lives, the listeners and
/// the settings operators most often ask about. Secrets never appear: nothing `ssl.*` but the
/// client-auth mode, and topic defaults (which hold no secrets) by their broker names.
fn log_startup_summary(config: &config::BrokerConfig) {
    let listeners = config
        .listeners
        .iter()
        .map(|l| {
            let advertised = l
                .advertised
                .as_ref()
                .map(|(host, port)| format!(" advertised {host}:{port}"))
                .unwrap_or_default();
            format!(
                "{}({:?})://{}:{}{advertised}",
                l.name, l.security_protocol, l.host, l.port
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let topic_defaults = config
        .topic_defaults()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node_id = config.node_id,
        data_dir = %config.data_dir.display(),
        listeners = %listeners,
        ssl_client_auth = ?config.ssl.client_auth,
        auto_create_topics = config.auto_create_topics,
        num_partitions = config.num_partitions,
        default_replication_factor = config.default_replication_factor,
        max_connections = config.max_connections,
        socket_request_max_bytes = config.socket_request_max_bytes,
        fetch_max_bytes = config.fetch_max_bytes,
        offsets_topic_num_partitions = config.groups.offsets_topic_num_partitions,
        group_initial_rebalance_delay_ms = config.groups.group_initial_rebalance_delay_ms,
        topic_defaults = %topic_defaults,
        "starting runnel"
    );
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops runnel");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
