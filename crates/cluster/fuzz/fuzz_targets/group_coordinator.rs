//! The group coordinator driven by a sequence of requests (built from Kafka's schemas, let
//! through only if the broker's validator and decoder accept them) and clock ticks. The work
//! and the invariants live in `runnel_cluster::fuzzing::group_coordinator`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runnel_cluster::fuzzing::group_coordinator(data);
});
