//! Replays the checked-in fuzz corpora through exactly the code the fuzz targets run, so every
//! seed and every past finding stays covered by an ordinary `cargo test`; and sweeps inputs from
//! a seeded generator, a cheap stand-in for the fuzzer where no nightly toolchain runs.

use std::path::{Path, PathBuf};

use runnel_protocol::fuzzing::Xorshift;

fn corpus(target: &str) -> Vec<PathBuf> {
    runnel_protocol::fuzzing::corpus_files(Path::new(env!("CARGO_MANIFEST_DIR")), target)
}

// Proves every group_coordinator corpus file runs with the coordinator's invariants intact.
#[test]
fn group_coordinator_corpus() {
    let files = corpus("group_coordinator");
    assert!(!files.is_empty());
    for file in files {
        eprintln!("{}", file.display());
        runnel_cluster::fuzzing::group_coordinator(&std::fs::read(&file).unwrap());
    }
}

/// Pseudo-random inputs of `len` bytes from `seed`.
fn input(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Xorshift(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

// Proves 300 pseudo-random runs of up to 64 steps keep the coordinator's invariants (seeds are
// fixed: a failure names the seed that reproduces it).
#[test]
fn group_coordinator_random_runs() {
    for seed in 1..=300u64 {
        let data = input(seed * 0x9e37_79b9, 2048);
        let run = std::panic::catch_unwind(|| runnel_cluster::fuzzing::group_coordinator(&data));
        assert!(
            run.is_ok(),
            "seed {seed} broke an invariant (see the panic above)"
        );
    }
}

// Writes the seed corpus (run with --ignored): the first random runs' inputs, and the run that
// found the 40,000-byte group id reaching the record encoder before the validator refused it.
#[test]
#[ignore]
fn write_group_coordinator_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/group_coordinator");
    std::fs::create_dir_all(&dir).unwrap();
    for seed in 1..=16u64 {
        std::fs::write(
            dir.join(format!("random-{seed:02}")),
            input(seed * 0x9e37_79b9, 2048),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("regress-long-group-id"),
        input(208 * 0x9e37_79b9, 2048),
    )
    .unwrap();
}

// Proves every controller corpus file runs with the controller's invariants intact.
#[test]
fn controller_corpus() {
    let files = corpus("controller");
    assert!(!files.is_empty());
    for file in files {
        eprintln!("{}", file.display());
        runnel_cluster::fuzzing::controller(&std::fs::read(&file).unwrap());
    }
}

// Proves 400 pseudo-random runs of up to 64 commands keep the controller's invariants (seeds
// are fixed: a failure names the seed that reproduces it).
#[test]
fn controller_random_runs() {
    for seed in 1..=400u64 {
        let data = input(seed * 0x2545_f491, 512);
        let run = std::panic::catch_unwind(|| runnel_cluster::fuzzing::controller(&data));
        assert!(
            run.is_ok(),
            "seed {seed} broke an invariant (see the panic above)"
        );
    }
}

// Writes the controller's seed corpus (run with --ignored): the first random runs' inputs, and
// two made by hand (one choice a byte): a topic of the most partitions allowed next to one over
// the limit, and a topic of an older log (no registrations) then RegisterMissingPartitions.
#[test]
#[ignore]
fn write_controller_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/controller");
    std::fs::create_dir_all(&dir).unwrap();
    for seed in 1..=16u64 {
        std::fs::write(
            dir.join(format!("random-{seed:02}")),
            input(seed * 0x2545_f491, 512),
        )
        .unwrap();
    }
    // Defaults 1/1, one broker; create "a" with 10,000 partitions, then "b" with 10,001.
    let most_partitions = [0, 0, 1, 3, 0, 0, 0, 15, 0, 4, 0, 1, 3, 0, 0, 1, 11, 4, 0, 1];
    std::fs::write(dir.join("most-partitions"), most_partitions).unwrap();
    // Defaults 1/1, two brokers; "a" with 3 partitions as an older log holds it, then
    // RegisterMissingPartitions for node 1.
    let older_log = [0, 0, 2, 3, 0, 0, 0, 3, 2, 4, 0, 0, 2, 1];
    std::fs::write(dir.join("older-log-topic"), older_log).unwrap();
}

// Proves every txn_coordinator corpus file runs with the coordinator's invariants intact.
#[test]
fn txn_coordinator_corpus() {
    let files = corpus("txn_coordinator");
    assert!(!files.is_empty());
    for file in files {
        eprintln!("{}", file.display());
        runnel_cluster::fuzzing::txn_coordinator(&std::fs::read(&file).unwrap());
    }
}

// Proves 400 pseudo-random runs of up to 96 steps keep the transaction coordinator's
// invariants (seeds are fixed: a failure names the seed that reproduces it).
#[test]
fn txn_coordinator_random_runs() {
    for seed in 1..=400u64 {
        let data = input(seed * 0x5851_f42d, 1024);
        let run = std::panic::catch_unwind(|| runnel_cluster::fuzzing::txn_coordinator(&data));
        assert!(
            run.is_ok(),
            "seed {seed} broke an invariant (see the panic above)"
        );
    }
}

// Writes the transaction coordinator's seed corpus (run with --ignored): the first random
// runs' inputs.
#[test]
#[ignore]
fn write_txn_coordinator_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/txn_coordinator");
    std::fs::create_dir_all(&dir).unwrap();
    for seed in 1..=16u64 {
        std::fs::write(
            dir.join(format!("random-{seed:02}")),
            input(seed * 0x5851_f42d, 1024),
        )
        .unwrap();
    }
}
