//! Record-batch bytes as found in a produce request. The work lives in
//! `runnel_protocol::fuzzing::record_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runnel_protocol::fuzzing::record_batch(data);
});
