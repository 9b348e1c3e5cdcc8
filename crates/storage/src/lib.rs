//! One partition's log on disk: segments, sparse indexes, recovery, idempotent-producer state
//! and the leader-epoch cache, in Kafka's on-disk formats so Kafka's tools can read our files.
//!
//! Knows record batches (via `runnel_protocol::batch`), not Kafka APIs.

pub mod cleaner;
mod config;
mod epoch_cache;
mod error;
mod file_budget;
mod file_names;
mod index;
pub mod io;
mod log;
mod log_start;
mod metadata;
mod offsets;
mod producer_snapshot;
mod producer_state;
mod reader;
mod recovery;
mod recovery_point;
mod segment;
mod txn;
mod verification;

pub use config::{BrokerCompressionType, LogConfig};
pub use epoch_cache::EpochEntry;
pub use error::StorageError;
pub use file_budget::{FileBudget, FileBudgetStats, PinnedFile, DEFAULT_MAX_OPEN_FILES};
pub use log::{
    rename_for_delete, AppendOutcome, ExpiredFiles, FileSlice, LastShutdown, OpenStats,
    PartitionLog,
};
pub use offsets::{LogOffsets, OffsetsSnapshot};
pub use reader::{ActiveProducer, LogReader, LogSnapshot};
pub use runnel_protocol::batch::TimestampType;
pub use txn::{AbortedTxn, TxnMarker, TxnResult, ABORTED_TXN_BYTES};
pub use verification::{Verification, VerificationGuard, VERIFICATION_ENTRIES_MAX};
