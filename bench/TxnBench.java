import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Transaction benchmark for bench/run with Kafka's own Java client (the same program for both brokers),
 * default producer settings apart from the transactional id. Prints one JSON line.
 *
 *   produce BOOTSTRAP TOPIC PARTITIONS TXNS RECORDS_PER_TXN RECORD_BYTES
 *       each transaction: RECORDS_PER_TXN records spread round-robin over the partitions, then commit.
 *   fill BOOTSTRAP TOPIC PARTITIONS RECORDS RECORD_BYTES
 *       a plain (idempotent, acks=all) producer writes the input of `ctp`.
 *   ctp BOOTSTRAP INPUT OUTPUT PARTITIONS RECORDS RECORDS_PER_TXN
 *       consume-transform-produce: a read_committed group consumer (max.poll.records = RECORDS_PER_TXN)
 *       and a transactional producer; per poll: the records copied to OUTPUT's same partition, the
 *       consumer's positions sent with sendOffsetsToTransaction, commit; until RECORDS were processed.
 *
 * Commit latency is commitTransaction()'s duration; transaction latency runs from beginTransaction to the
 * commit's return. The first 5% of transactions are warm-up and not in the latency histograms.
 */
public final class TxnBench {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "produce" -> produce(args[1], args[2], Integer.parseInt(args[3]), Integer.parseInt(args[4]),
                Integer.parseInt(args[5]), Integer.parseInt(args[6]));
            case "fill" -> fill(args[1], args[2], Integer.parseInt(args[3]), Long.parseLong(args[4]), Integer.parseInt(args[5]));
            case "ctp" -> ctp(args[1], args[2], args[3], Integer.parseInt(args[4]), Long.parseLong(args[5]),
                Integer.parseInt(args[6]));
            default -> throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }

    private static Properties producerProps(String bootstrap, String transactionalId) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        if (transactionalId != null) {
            props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        }
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return props;
    }

    private static byte[] payload(int bytes) {
        byte[] value = new byte[bytes];
        new Random(42).nextBytes(value);
        return value;
    }

    private static void produce(String bootstrap, String topic, int partitions, int txns, int perTxn, int recordBytes) {
        byte[] value = payload(recordBytes);
        Latencies commit = new Latencies(txns);
        Latencies txn = new Latencies(txns);
        int warmup = txns / 20;
        long start = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps(bootstrap, "bench-" + UUID.randomUUID()))) {
            producer.initTransactions();
            for (int t = 0; t < txns; t++) {
                if (t == warmup) {
                    start = System.nanoTime();
                }
                long began = System.nanoTime();
                producer.beginTransaction();
                for (int i = 0; i < perTxn; i++) {
                    producer.send(new ProducerRecord<>(topic, i % partitions, null, value));
                }
                long committing = System.nanoTime();
                producer.commitTransaction();
                long done = System.nanoTime();
                if (t >= warmup) {
                    commit.add(done - committing);
                    txn.add(done - began);
                }
            }
        }
        report(System.nanoTime() - start, txns - warmup, (long) (txns - warmup) * perTxn, recordBytes, commit, txn);
    }

    private static void fill(String bootstrap, String topic, int partitions, long records, int recordBytes) throws Exception {
        byte[] value = payload(recordBytes);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps(bootstrap, null))) {
            for (long n = 0; n < records; n++) {
                producer.send(new ProducerRecord<>(topic, (int) (n % partitions), null, value));
            }
            producer.flush();
        }
        System.out.println("{\"records\": " + records + "}");
    }

    private static void ctp(String bootstrap, String input, String output, int partitions, long records, int perTxn) {
        Properties cprops = new Properties();
        cprops.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cprops.put(ConsumerConfig.GROUP_ID_CONFIG, "bench-ctp-" + UUID.randomUUID());
        cprops.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cprops.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cprops.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cprops.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, String.valueOf(perTxn));
        cprops.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cprops.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        long expectedTxns = Math.max(1, records / perTxn);
        Latencies commit = new Latencies((int) Math.min(expectedTxns * 2, Integer.MAX_VALUE / 2));
        Latencies txn = new Latencies((int) Math.min(expectedTxns * 2, Integer.MAX_VALUE / 2));
        long warmupRecords = records / 20;
        long processed = 0;
        long measuredRecords = 0;
        long measuredBytes = 0;
        int measuredTxns = 0;
        long start = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cprops);
             KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps(bootstrap, "bench-ctp-" + UUID.randomUUID()))) {
            producer.initTransactions();
            consumer.subscribe(List.of(input));
            long idleSince = System.nanoTime();
            while (processed < records) {
                ConsumerRecords<byte[], byte[]> polled = consumer.poll(Duration.ofMillis(500));
                if (polled.isEmpty()) {
                    if (System.nanoTime() - idleSince > 120_000_000_000L) {
                        throw new IllegalStateException("no input for 120 s after " + processed + " records");
                    }
                    continue;
                }
                idleSince = System.nanoTime();
                boolean measured = processed >= warmupRecords;
                if (measured && start == 0) {
                    start = System.nanoTime();
                }
                long began = System.nanoTime();
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                long bytes = 0;
                for (ConsumerRecord<byte[], byte[]> r : polled) {
                    producer.send(new ProducerRecord<>(output, r.partition(), r.key(), r.value()));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    bytes += r.value() == null ? 0 : r.value().length;
                }
                producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                long committing = System.nanoTime();
                producer.commitTransaction();
                long done = System.nanoTime();
                processed += polled.count();
                if (measured) {
                    commit.add(done - committing);
                    txn.add(done - began);
                    measuredTxns++;
                    measuredRecords += polled.count();
                    measuredBytes += bytes;
                }
            }
        }
        long elapsed = System.nanoTime() - start;
        report(elapsed, measuredTxns, measuredRecords, measuredRecords == 0 ? 0 : (int) (measuredBytes / measuredRecords), commit, txn);
    }

    private static void report(long elapsedNs, int txns, long records, int recordBytes, Latencies commit, Latencies txn) {
        double s = elapsedNs / 1e9;
        long bytes = records * recordBytes;
        System.out.println("{\"txns\": " + txns + ", \"records\": " + records + ", \"payload_bytes\": " + bytes
            + ", \"elapsed_s\": " + s + ", \"txns_per_s\": " + (txns / s) + ", \"records_per_s\": " + (records / s)
            + ", \"mib_per_s\": " + (bytes / s / (1 << 20))
            + ", \"commit_latency_ms\": " + commit.json() + ", \"txn_latency_ms\": " + txn.json() + "}");
    }

    /** Nanosecond samples, summarised as milliseconds. */
    private static final class Latencies {
        private long[] samples;
        private int n;

        Latencies(int capacity) {
            samples = new long[Math.max(16, capacity)];
        }

        void add(long ns) {
            if (n == samples.length) {
                samples = Arrays.copyOf(samples, n * 2);
            }
            samples[n++] = ns;
        }

        private double pct(long[] sorted, double p) {
            if (sorted.length == 0) {
                return 0;
            }
            int i = (int) Math.ceil(p / 100.0 * sorted.length) - 1;
            return sorted[Math.max(0, Math.min(sorted.length - 1, i))] / 1e6;
        }

        String json() {
            long[] sorted = Arrays.copyOf(samples, n);
            Arrays.sort(sorted);
            double mean = 0;
            for (long v : sorted) {
                mean += v / 1e6;
            }
            mean = sorted.length == 0 ? 0 : mean / sorted.length;
            return "{\"p50\": " + pct(sorted, 50) + ", \"p99\": " + pct(sorted, 99) + ", \"p999\": " + pct(sorted, 99.9)
                + ", \"max\": " + pct(sorted, 100) + ", \"mean\": " + mean + "}";
        }
    }
}
