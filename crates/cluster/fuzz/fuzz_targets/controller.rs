//! The controller engine driven by a sequence of commands as the broker submits them (topic
//! names, partition counts, replication factors and configs on and past Kafka's limits), each
//! accepted command's records applied to the image as the broker's metadata driver does. The
//! work and the invariants live in `runnel_cluster::fuzzing::controller`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runnel_cluster::fuzzing::controller(data);
});
