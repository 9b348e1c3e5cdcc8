//! The runnel process: config, listeners, connections and per-API handlers. The only crate that
//! owns tokio tasks and sockets.

pub mod admin;
pub mod authorizer;
pub mod blocking;
pub mod clean_shutdown;
pub mod clock;
pub mod config;
pub mod config_reference;
pub mod connection;
pub mod context;
pub mod coordinator_runtime;
pub mod durability;
pub mod errors;
pub mod failpoint;
pub mod fetch_session;
pub mod group_events;
pub mod groups;
pub mod handlers;
pub mod internal_topics;
pub mod lifecycle;
pub mod listener;
pub mod log_cleaner;
pub mod log_level;
pub mod log_manager;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod replica;
pub mod send;
pub mod server;
pub mod state;
pub mod tls;
pub mod transport;
pub mod txn_marker_channel;
pub mod txn_markers;
pub mod txns;
