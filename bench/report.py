"""Turn bench/run's results JSON into the comparison table and docs/benchmarks.md."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    metric: str
    runnel: float | None
    kafka: float | None
    # The goal as runnel/Kafka ratio: (">=", 1.5) or ("<=", 0.5); None = context only.
    target: tuple[str, float] | None = None
    fmt: str = "{:.1f}"
    # An absolute runnel-only goal, e.g. ("<", 500) MiB.
    absolute: tuple[str, float] | None = None

    @property
    def ratio(self) -> float | None:
        if self.runnel is None or not self.kafka:
            return None
        return self.runnel / self.kafka

    @property
    def verdict(self) -> str:
        if self.absolute and self.runnel is not None:
            op, bound = self.absolute
            ok = self.runnel < bound if op == "<" else self.runnel <= bound
            return f"{'met' if ok else 'NOT met'} ({op} {bound:g})"
        if not self.target:
            return ""
        if self.ratio is None:
            return "n/a"
        op, bound = self.target
        ok = self.ratio >= bound if op == ">=" else self.ratio <= bound
        return f"{'met' if ok else 'NOT met'} ({op} {bound:g}x)"


def _get(d, *path):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def rows(results: dict) -> list[Row]:
    runs = results.get("runs", {})
    out: list[Row] = []

    def pair(metric, *path, target=None, fmt="{:.1f}", run=None, absolute=None):
        run_data = runs.get(run, {})
        r, k = _get(run_data.get("runnel"), *path), _get(run_data.get("kafka"), *path)
        if r is None and k is None:
            return
        out.append(Row(metric, r, k, target, fmt, absolute))

    for suffix, label in (("", ""), ("-fsync", " [fsync each message]")):
        a, bc = "a" + suffix, "bc" + suffix
        pair(f"(a) produce 100 B, 1 part, acks=1: MiB/s, loadgen{label}", "loadgen", "mib_per_s", run=a, target=(">=", 1.5))
        pair(f"(a) produce 100 B: MiB/s, kafka-producer-perf-test{label}", "java", "mib_per_s", run=a, target=(">=", 1.5))
        pair(f"(a) broker CPU s/GB, loadgen{label}", "loadgen", "broker", "cpu_s_per_gb", run=a, target=("<=", 0.5), fmt="{:.2f}")
        pair(f"(a) peak RSS MiB{label}", "final", "peak_rss_mib", run=a, target=("<=", 0.1))
        pair(f"(b) produce 1 KiB, 8 part, acks=all: MiB/s, loadgen{label}", "b", "loadgen", "mib_per_s", run=bc, target=(">=", 1.5))
        pair(f"(b) produce 1 KiB: MiB/s, kafka-producer-perf-test{label}", "b", "java", "mib_per_s", run=bc, target=(">=", 1.5))
        pair(f"(b) produce request p99 ms, loadgen{label}", "b", "loadgen", "request_latency_ms", "p99", run=bc, fmt="{:.2f}")
        pair(f"(b) broker CPU s/GB, loadgen{label}", "b", "loadgen", "broker", "cpu_s_per_gb", run=bc, target=("<=", 0.5), fmt="{:.2f}")
        pair(f"(c) consume from start: MiB/s, loadgen{label}", "c", "loadgen", "mib_per_s", run=bc, target=(">=", 1.5))
        pair(f"(c) consume: MiB/s, kafka-consumer-perf-test (fetch.MB.sec){label}", "c", "java", "mib_per_s", run=bc, target=(">=", 1.5))
        pair(f"(c) broker CPU s/GB, loadgen consume{label}", "c", "loadgen", "broker", "cpu_s_per_gb", run=bc, target=("<=", 0.5), fmt="{:.2f}")
        # runnel only: the same consume with sendfile off (records read and copied), against Kafka's sendfile.
        pair(f"(c) consume MiB/s, loadgen, runnel with runnel.fetch.zero.copy=false{label}", "c", "loadgen_copy", "mib_per_s", run=bc)
        pair(f"(c) broker CPU s/GB, runnel with runnel.fetch.zero.copy=false{label}", "c", "loadgen_copy", "broker", "cpu_s_per_gb", run=bc, fmt="{:.2f}")
        pair(f"(b+c) peak RSS MiB{label}", "final", "peak_rss_mib", run=bc, target=("<=", 0.1))
        pair(f"(b+c) RssAnon MiB at end{label}", "final", "rss_anon_mib", run=bc)
        pair(f"(b+c) RssFile MiB at end{label}", "final", "rss_file_mib", run=bc)
    loop = _get(results, "loopback", "mib_per_s")
    if loop:
        for path, name in ((("c", "loadgen", "mib_per_s"), "loadgen"), (("c", "java", "mib_per_s"), "perf-test")):
            r, k = _get(runs.get("bc", {}).get("runnel"), *path), _get(runs.get("bc", {}).get("kafka"), *path)
            if r is not None or k is not None:
                out.append(Row(f"(c) consume as % of loopback TCP ({loop:.0f} MiB/s), {name}",
                               None if r is None else 100 * r / loop, None if k is None else 100 * k / loop))
    pair("(d) e2e rate, records/s", "loadgen", "rate_per_s", run="d", fmt="{:.0f}")
    pair("(d) e2e p50 ms", "loadgen", "latency_ms", "p50", run="d", fmt="{:.2f}")
    pair("(d) e2e p99 ms", "loadgen", "latency_ms", "p99", run="d", target=("<=", 0.5), fmt="{:.2f}")
    pair("(d) e2e p99.9 ms", "loadgen", "latency_ms", "p999", run="d", target=("<=", 0.33), fmt="{:.2f}")
    pair("(d) broker CPU s/GB", "loadgen", "broker", "cpu_s_per_gb", run="d", target=("<=", 0.5), fmt="{:.2f}")
    pair("(d) peak RSS MiB", "final", "peak_rss_mib", run="d", target=("<=", 0.1))
    for parts in ("1000", "10000"):
        pair(f"(e) {parts} partitions: create + all leaders, s" + (" (the 9,000 added)" if parts == "10000" else ""), parts, "create", "elapsed_s", run="e", fmt="{:.2f}")
        pair(f"(e) {parts} partitions: metadata (all topics) p50 ms", parts, "metadata", "latency_ms", "p50", run="e", fmt="{:.2f}")
        pair(f"(e) {parts} partitions: metadata p99 ms", parts, "metadata", "latency_ms", "p99", run="e", fmt="{:.2f}")
        pair(f"(e) {parts} partitions: produce spread, MiB/s", parts, "produce", "mib_per_s", run="e")
        pair(f"(e) {parts} partitions: broker CPU s/GB", parts, "produce", "broker", "cpu_s_per_gb", run="e", fmt="{:.2f}")
        pair(f"(e) {parts} partitions: RSS MiB after produce", parts, "produce", "broker", "rss_mib", run="e",
             target=("<=", 0.1), absolute=("<", 500) if parts == "10000" else None)
        pair(f"(e) {parts} partitions: RssAnon MiB", parts, "produce", "broker", "rss_anon_mib", run="e")
        pair(f"(e) {parts} partitions: RssFile MiB", parts, "produce", "broker", "rss_file_mib", run="e")
    pair("(e) peak RSS MiB", "final", "peak_rss_mib", run="e", target=("<=", 0.1))
    pair("(f) idle connections", "connections", run="f", fmt="{:.0f}")
    pair("(f) RSS MiB with them open", "held", "rss_mib", run="f", target=("<=", 0.1))
    pair("(f) RssAnon MiB with them open", "held", "rss_anon_mib", run="f")
    pair("(f) RssFile MiB with them open", "held", "rss_file_mib", run="f")
    pair("(f) KiB per idle connection", "kib_per_connection", run="f")
    pair("(f) broker threads", "held", "threads", run="f", fmt="{:.0f}")
    pair("(z) produce 1 KiB, 8 part, acks=all, topic compression.type=zstd: MiB/s, loadgen", "loadgen", "mib_per_s", run="z")
    pair("(z) produce gzip into compression.type=zstd: MiB/s, kafka-producer-perf-test", "java", "mib_per_s", run="z")
    pair("(z) broker CPU s/GB, loadgen (uncompressed in, zstd stored)", "loadgen", "broker", "cpu_s_per_gb", run="z", fmt="{:.2f}")
    pair("(z) peak RSS MiB", "final", "peak_rss_mib", run="z")
    pair("(g) start-up to first acked produce, s", "startup_s", run="g", target=("<=", 0.05), fmt="{:.3f}")
    pair("(g) RSS MiB right after first ack", "broker", "rss_mib", run="g", target=("<=", 0.1))
    pair("(h) compaction: MiB/s of dirty log cleaned", "cleaned_mib_per_s", run="h", target=(">=", 2.0))
    pair("(h) compaction: broker peak RSS MiB while cleaning", "rss_mib_while_cleaning", run="h", target=("<=", 0.25))
    pair("(h) compaction: log MiB after cleaning", "log_mib_after", run="h")
    r_sizes = results.get("sizes", {})
    pair(f"(r) restart with {r_sizes.get('r_commits', 0):,} offset commits for {r_sizes.get('r_groups', 0)} groups: "
         "spawn to all groups' offsets, s",
         "restart_s", run="r", target=("<=", 0.1), fmt="{:.3f}")
    pair("(r) __consumer_offsets MiB on disk after the commits", "offsets_mib_after_load", run="r")
    pair("(r) __consumer_offsets MiB on disk before restart (after cleaning)", "offsets_mib_before_restart", run="r")
    pair("(r) cleaning wait before restart, s (until the size is stable for 5 s)", "compact_wait_s", run="r")
    pair("(r) OffsetFetch answers with wrong offsets during restart", "verify", "wrong_answers", run="r", fmt="{:.0f}")
    for suffix, label in (("", ""), ("-fsync", " [fsync each message]")):
        t, x = "t" + suffix, "x" + suffix
        pair(f"(t) transactional produce, 100 x 1 KiB to 8 part per txn: transactions/s{label}", "java", "txns_per_s",
             run=t, target=(">=", 2.0))
        pair(f"(t) transactional produce: MiB/s{label}", "java", "mib_per_s", run=t)
        pair(f"(t) commit latency p99 ms{label}", "java", "commit_latency_ms", "p99", run=t, target=("<=", 0.5), fmt="{:.2f}")
        pair(f"(t) commit latency p50 ms{label}", "java", "commit_latency_ms", "p50", run=t, fmt="{:.2f}")
        pair(f"(t) broker CPU s/GB{label}", "java", "broker", "cpu_s_per_gb", run=t, fmt="{:.2f}")
        pair(f"(x) consume-transform-produce, 100 x 1 KiB per txn: transactions/s{label}", "java", "txns_per_s",
             run=x, target=(">=", 2.0))
        pair(f"(x) consume-transform-produce: MiB/s{label}", "java", "mib_per_s", run=x)
        pair(f"(x) commit latency p99 ms{label}", "java", "commit_latency_ms", "p99", run=x, target=("<=", 0.5), fmt="{:.2f}")
        pair(f"(x) commit latency p50 ms{label}", "java", "commit_latency_ms", "p50", run=x, fmt="{:.2f}")
        pair(f"(x) broker CPU s/GB{label}", "java", "broker", "cpu_s_per_gb", run=x, fmt="{:.2f}")
    return out


def _cell(value, fmt) -> str:
    return "—" if value is None else fmt.format(value)


def table(rs: list[Row]) -> str:
    lines = ["| metric | runnel | Kafka | runnel/Kafka | issue target |", "|---|---:|---:|---:|---|"]
    for r in rs:
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"| {r.metric} | {_cell(r.runnel, r.fmt)} | {_cell(r.kafka, r.fmt)} | {ratio} | {r.verdict} |")
    return "\n".join(lines)


def errors(results: dict) -> list[str]:
    out = []
    for name, per_target in results.get("runs", {}).items():
        for target, data in per_target.items():
            if isinstance(data, dict) and "error" in data:
                out.append(f"- workload {name} on {target}: `{data['error'][:300]}`")
    return out


def markdown(results: dict, rs: list[Row]) -> str:
    m = results["machine"]
    fs = m["fsync_ms"]
    label = results.get("label") or ("quick smoke run" if results.get("quick") else "full run")
    parts = [
        "# Benchmarks: runnel vs Apache Kafka, side by side",
        "",
        "Generated by `bench/run` (do not edit by hand; rerun it). Raw numbers: `bench/results/*.json` (not in git).",
        "Three nodes against a three-node Kafka: [benchmarks-cluster.md](benchmarks-cluster.md) (`bench/cluster`).",
        "",
        f"**This run: {label}.** Command: `{results['command']}`; started {results['started']}, "
        f"finished {results.get('finished', '?')}; runnel `{m.get('runnel_commit', '?')}`, Apache Kafka {results['kafka_version']}.",
        "",
    ]
    if results.get("quick"):
        parts += [
            "> **Noisy smoke run.** `--quick` sizes last seconds per workload, and this machine's 2 cores were shared",
            "> with other engineers' builds and tests while it ran (load average at start: "
            f"{', '.join(f'{x:.1f}' for x in m['load_avg_at_start'])}). The load generators also share those cores with",
            "> the broker. Treat every number below as a check that the tooling works end to end and as a rough",
            "> direction, not as a result. Rerun `bench/run` (full sizes) on a quiet machine before quoting anything.",
            "",
        ]
    parts += [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu']} |",
        f"| cores | {m['cores']} |",
        f"| memory | {m['mem_gib']} GiB |",
        f"| kernel | {m['kernel']} |",
        f"| data dir filesystem | {m['filesystem']} (`{m['data_root']}`) |",
        f"| fsync latency ({fs['write_bytes']} B write + fdatasync, {fs['samples']}x) | p50 {fs['p50']:.3f} ms, p99 {fs['p99']:.3f} ms, mean {fs['mean']:.3f} ms |",
        f"| loopback TCP (1 sender + 1 receiver thread) | {results['loopback']['mib_per_s']:.0f} MiB/s |",
        "",
        "## Results",
        "",
        "Ratio is runnel / Kafka. MiB/s counts record values (what the Java perf tools report). CPU s/GB is broker",
        "utime+stime per 10^9 bytes of record values moved in that phase. Peak RSS is VmHWM over the broker's life in",
        "that workload; RssAnon (heap, stacks) and RssFile (mapped files, for Kafka also the JVM's jars and",
        "mmapped indexes) are at the workload's end. Both brokers run with their defaults (page cache, no fsync per",
        "message) unless a row says `[fsync each message]`, where both have `log.flush.interval.messages=1`.",
        "",
        table(rs),
        "",
    ]
    errs = errors(results)
    if errs:
        parts += ["### Failures in this run", "", *errs, ""]
    if results.get("perf", {}).get("top"):
        parts += ["## Where runnel spends CPU (perf, workload b produce + c consume)", "", "```",
                  *results["perf"]["top"], "```", ""]
    s = results["sizes"]
    parts += [
        "## Workloads",
        "",
        "Each workload starts a fresh runnel, runs, stops it, then does the same with a fresh Kafka (single KRaft",
        f"node, `-Xmx1G -Xms1G`, G1, Kafka's defaults apart from replication factor 1 for internal topics), on the",
        "same ports and data disk. The same `bench/loadgen` binary drives both brokers.",
        "",
        f"- **(a)** loadgen: {s['a_records']:,} records of 100 B to 1 partition, acks=1, 16 KiB batches, 5 requests in",
        f"  flight; then `kafka-producer-perf-test` with {s['java_a_records']:,} records (default producer settings).",
        f"- **(b)** the same with 1 KiB records, 8 partitions, acks=all: loadgen {s['b_records']:,} records,",
        f"  perf-test {s['java_b_records']:,}.",
        "- **(c)** on the same broker after (b): loadgen fetches topic `b` from offset 0 to its end (one Fetch in flight,",
        "  Java consumer default sizes, sessionless; each response is read as it streams in through a 256 KiB buffer",
        "  and summarised from batch headers); `kafka-consumer-perf-test` reads the perf-test's topic (fetch.MB.sec,",
        "  which excludes the group join). For runnel the loadgen consume is then repeated after a restart with",
        "  `runnel.fetch.zero.copy=false` (records read into memory and copied into the frame instead of `sendfile`).",
        f"- **(d)** fixed-rate produce of 1 KiB records to 8 partitions (acks=all) for {s['e2e_duration_s']} s; each record",
        "  carries its intended send time (no coordinated omission); a long-polling consumer records now - sent in an",
        "  HDR histogram; the first second is warm-up. Rate: half of Kafka's loadgen max from (b) unless `--e2e-rate`.",
        f"- **(e)** create a 1,000-partition topic, {s['metadata_requests']} Metadata requests for all topics, then",
        f"  {s['e_records']:,} records of 100 B spread over every partition (1 KiB batches). With `--partitions-10k`, the",
        "  same again after creating nine more 1,000-partition topics (10,000 partitions on the broker; the create row",
        "  times those nine). Kafka's controller refuses one CreateTopics of more than 10,000 records, so a single",
        "  10,000-partition topic cannot be created on Kafka.",
        f"- **(f)** {s['idle_connections']:,} connections, each after one ApiVersions exchange, held idle.",
        f"- **(g)** spawn to first acked produce (connect, CreateTopics, Produce acks=1), best of {s['startup_repeats']};",
        "  Kafka's one-time `kafka-storage format` is done before and not counted.",
        f"- **(h)** log compaction: {s.get('h_records', 0):,} keyed records ({s.get('h_keys', 0):,} keys, 100 B values) to a",
        "  compacted 1-partition topic (16 MiB segments) kept uncleanable by `min.compaction.lag.ms` = 1 h, then released;",
        "  cleaning time runs to the last change of the partition's size. Both brokers: `log.cleaner.backoff.ms` = 100,",
        "  `log.cleaner.dedupe.buffer.size` = 128 MiB.",
        f"- **(r)** restart with a compacted `__consumer_offsets`: {s.get('r_commits', 0):,} offset commits for",
        f"  {s.get('r_groups', 0)} groups without members (rounds of one OffsetCommit per group, all 100 partitions of an",
        "  empty topic each, through confluent-kafka's `alter_consumer_group_offsets`), `__consumer_offsets` set to",
        "  `segment.bytes` = 1 MiB by a topic-config change on both brokers (Kafka's default",
        "  `offsets.topic.segment.bytes`, 100 MiB, would keep everything in the active segment; the topic-config change",
        "  is used on both so the workload is the same) and `segment.ms` = 1 s before the last round (so it rolls every active segment and all",
        "  earlier commits are cleanable), the cleaner left to run until the topic's size is stable for 5 s, a clean stop (SIGTERM), then a",
        "  start on the same data dir timed from spawn until OffsetFetch for every group returns exactly its last",
        "  committed offsets (the probe process and its client exist before the spawn). Both brokers: `log.cleaner.backoff.ms` =",
        "  100, `log.cleaner.dedupe.buffer.size` = 128 MiB.",
        f"- **(z)** a topic with `compression.type=zstd`, 8 partitions, acks=all, 1 KiB records: loadgen sends",
        f"  {s.get('z_records', 0):,} records in uncompressed batches, `kafka-producer-perf-test` {s.get('java_z_records', 0):,}",
        "  records in gzip batches; both brokers decompress and re-encode every batch as zstd (level 3).",
        f"- **(t)** transactional produce with Kafka's Java client (`bench/TxnBench.java`, default producer settings): {s.get('t_txns', 0):,}",
        "  transactions of 100 records of 1 KiB round-robin over 8 partitions, each committed before the next begins; the",
        "  first 5% are warm-up. Commit latency is `commitTransaction()`'s duration. With `--fsync` also on both brokers",
        "  with `log.flush.interval.messages=1`.",
        f"- **(x)** consume-transform-produce: {s.get('x_records', 0):,} records of 1 KiB written to an 8-partition input",
        "  first (not measured), then a read_committed group consumer (`max.poll.records` = 100) and a transactional",
        "  producer: every poll is one transaction (records copied to the output's same partition,",
        "  `sendOffsetsToTransaction`, commit). MiB/s counts the output records' values.",
        "",
        "## Rerunning",
        "",
        "```",
        "compat-tests/setup.sh          # once: Kafka 4.4.0 jars from Maven Central",
        "bench/run                      # full sizes, every workload (tens of minutes)",
        "bench/run --quick              # smoke run",
        "bench/run --workloads d --e2e-rate 20000",
        "bench/run --fsync --partitions-10k --perf",
        "```",
        "",
    ]
    return "\n".join(parts)
