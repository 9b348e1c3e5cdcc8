//! What the group coordinator asks of its shell: responses to send and records to append.

use kafka_protocol::messages::ResponseKind;

use super::Record;

/// The shell's handle on one request, echoed back with its response.
pub type RequestId = u64;

/// What the shell must do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send this response (encoded by the shell at the version the request came with).
    Respond(RequestId, ResponseKind),
    /// Append `records` durably to __consumer_offsets partition `partition`, then send
    /// `on_success`; if the append fails send `on_failure` instead.
    Append {
        partition: i32,
        records: Vec<Record>,
        on_success: Vec<(RequestId, ResponseKind)>,
        on_failure: Vec<(RequestId, ResponseKind)>,
    },
}
