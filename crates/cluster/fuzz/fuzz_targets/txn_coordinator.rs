//! The transaction coordinator driven by requests, ticks, append outcomes, marker writes,
//! producer-id blocks and restarts. The work and the invariants live in
//! `runnel_cluster::fuzzing::txn_coordinator`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runnel_cluster::fuzzing::txn_coordinator(data);
});
