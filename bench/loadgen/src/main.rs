//! runnel-loadgen: one lean Kafka-protocol client that drives runnel and Apache Kafka alike, so a
//! side-by-side number compares brokers, not clients. Every subcommand prints one JSON line on stdout.

mod admin;
mod batch;
mod consume;
mod e2e;
mod misc;
mod produce;
mod stream_fetch;
mod wire;

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;

#[derive(Parser)]
#[command(about = "Lean Kafka load generator for bench/run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Wait until Metadata lists a broker; prints the wait.
    Probe {
        #[arg(long)]
        bootstrap: String,
        #[arg(long, default_value_t = 180.0)]
        timeout_s: f64,
    },
    /// Create a topic (existing is fine) and wait for every partition's leader.
    CreateTopic {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Topic config as KEY=VALUE, repeatable.
        #[arg(long = "config")]
        configs: Vec<String>,
        #[arg(long, default_value_t = 300.0)]
        timeout_s: f64,
    },
    /// Pipelined produce of fixed-size records.
    Produce {
        #[arg(long)]
        bootstrap: String,
        /// A topic, or several separated by commas (each with `--partitions` partitions).
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 100)]
        record_bytes: usize,
        /// 0, 1 or -1 (all).
        #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
        acks: i16,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Run for this long instead of a record count.
        #[arg(long)]
        duration_s: Option<f64>,
        /// Produce requests in flight per connection (Java's max.in.flight.requests.per.connection).
        #[arg(long, default_value_t = 5)]
        inflight: usize,
        /// Bytes per partition batch (Java's batch.size).
        #[arg(long, default_value_t = 16384)]
        batch_bytes: usize,
        /// Bytes per request (Java's max.request.size).
        #[arg(long, default_value_t = 1 << 20)]
        request_bytes_max: usize,
        #[arg(long, default_value_t = 1)]
        connections: usize,
    },
    /// Read a topic from the beginning to the end offsets seen at start.
    Consume {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Record value size, to report payload MiB/s like the Java tools.
        #[arg(long, default_value_t = 100)]
        record_bytes: usize,
    },
    /// End-to-end latency at a fixed rate.
    E2e {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        acks: i16,
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        /// Records stamped before this are sent but not counted.
        #[arg(long, default_value_t = 1.0)]
        warmup_s: f64,
    },
    /// Latency of Metadata requests for all topics.
    MetadataLatency {
        #[arg(long)]
        bootstrap: String,
        #[arg(long, default_value_t = 100)]
        count: u32,
    },
    /// Hold N idle connections until stdin closes.
    Idle {
        #[arg(long)]
        bootstrap: String,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
    },
    /// Retry until one produce is acked; prints the ack's wall-clock time.
    FirstProduce {
        #[arg(long)]
        bootstrap: String,
        #[arg(long, default_value = "startup")]
        topic: String,
        #[arg(long, default_value_t = 180.0)]
        timeout_s: f64,
    },
    /// Loopback TCP bandwidth of this machine.
    Loopback {
        #[arg(long, default_value_t = 4 << 30)]
        bytes: u64,
    },
}

/// Percentiles in milliseconds from a histogram of microseconds.
pub fn histogram_json(latency_us: &Histogram<u64>) -> serde_json::Value {
    let ms = |q: f64| latency_us.value_at_quantile(q) as f64 / 1000.0;
    serde_json::json!({
        "count": latency_us.len(),
        "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999),
        "max": latency_us.max() as f64 / 1000.0,
        "mean": latency_us.mean() / 1000.0,
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let out = match Cli::parse().command {
        Command::Probe {
            bootstrap,
            timeout_s,
        } => {
            let waited = admin::wait_ready(&bootstrap, secs(timeout_s)).await?;
            serde_json::json!({ "ready_after_s": waited.as_secs_f64() })
        }
        Command::CreateTopic {
            bootstrap,
            topic,
            partitions,
            configs,
            timeout_s,
        } => {
            let configs: Vec<(String, String)> = configs
                .iter()
                .map(|c| {
                    c.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| anyhow::anyhow!("--config {c}: want KEY=VALUE"))
                })
                .collect::<Result<_>>()?;
            let mut client = wire::Client::connect_retrying(&bootstrap, secs(10.0)).await?;
            let start = std::time::Instant::now();
            admin::create_topic(&mut client, &topic, partitions, &configs, secs(timeout_s)).await?;
            serde_json::json!({ "topic": topic, "partitions": partitions, "elapsed_s": start.elapsed().as_secs_f64() })
        }
        Command::Produce {
            bootstrap,
            topic,
            partitions,
            record_bytes,
            acks,
            records,
            duration_s,
            inflight,
            batch_bytes,
            request_bytes_max,
            connections,
        } => {
            produce::run(produce::ProduceArgs {
                bootstrap,
                topic,
                partition_count: partitions,
                record_bytes,
                acks,
                record_count: records,
                duration: duration_s.map(secs),
                inflight_max: inflight,
                batch_bytes,
                request_bytes_max,
                connection_count: connections,
            })
            .await?
        }
        Command::Consume {
            bootstrap,
            topic,
            partitions,
            record_bytes,
        } => {
            consume::run(consume::ConsumeArgs {
                bootstrap,
                topic,
                partition_count: partitions,
                record_bytes,
            })
            .await?
        }
        Command::E2e {
            bootstrap,
            topic,
            partitions,
            record_bytes,
            acks,
            rate,
            duration_s,
            warmup_s,
        } => {
            e2e::run(e2e::E2eArgs {
                bootstrap,
                topic,
                partition_count: partitions,
                record_bytes,
                acks,
                rate_per_s: rate,
                duration: secs(duration_s),
                warmup: secs(warmup_s),
            })
            .await?
        }
        Command::MetadataLatency { bootstrap, count } => {
            misc::metadata_latency(&bootstrap, count).await?
        }
        Command::Idle {
            bootstrap,
            connections,
        } => misc::idle(&bootstrap, connections).await?,
        Command::FirstProduce {
            bootstrap,
            topic,
            timeout_s,
        } => misc::first_produce(&bootstrap, &topic, secs(timeout_s)).await?,
        Command::Loopback { bytes } => {
            tokio::task::spawn_blocking(move || misc::loopback(bytes)).await??
        }
    };
    println!("{out}");
    Ok(())
}
