//! A request frame (header + body, no length prefix): the first 4 bytes are api key and version.
//! The work and the oracle live in `runnel_protocol::fuzzing::request_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runnel_protocol::fuzzing::request_frame(data);
});
