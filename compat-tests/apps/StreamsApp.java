import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * A Kafka Streams application of the kind users bring, at-least-once (or exactly_once_v2):
 *
 *   payments (user -> amount as text)
 *     -> filter: drop values that are not whole numbers
 *     -> map: parse the amount, re-key by user in upper case (a repartition topic)
 *     -> aggregate: running total per user           -> totals  (user -> total)
 *     -> windowed count per user, 1-minute windows   -> counts  (user@windowStartMs -> count)
 *
 * Usage: StreamsApp BOOTSTRAP APPLICATION_ID STATE_DIR [PROCESSING_GUARANTEE]
 * PROCESSING_GUARANTEE is at_least_once (the default) or exactly_once_v2.
 * Prints "RUNNING" once the application reaches RUNNING, then runs until stdin closes or it is
 * killed; exits 1 if the application dies in ERROR.
 */
public class StreamsApp {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[2]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args.length > 3 ? args[3] : StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        // Ride out a broker restart: keep retrying rather than dying.
        props.put(StreamsConfig.consumerPrefix("session.timeout.ms"), 10000);
        props.put(StreamsConfig.consumerPrefix("heartbeat.interval.ms"), 1000);
        props.put(StreamsConfig.producerPrefix("delivery.timeout.ms"), 120000);
        props.put(StreamsConfig.TASK_TIMEOUT_MS_CONFIG, 120000);

        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, Long> amounts = builder
            .stream("payments", Consumed.with(Serdes.String(), Serdes.String()))
            .filter((user, amount) -> amount != null && amount.matches("-?[0-9]+"))
            .map((user, amount) -> KeyValue.pair(user.toUpperCase(), Long.parseLong(amount)));
        amounts
            .groupByKey(Grouped.with("by-user", Serdes.String(), Serdes.Long()))
            .aggregate(() -> 0L, (user, amount, total) -> total + amount,
                Materialized.with(Serdes.String(), Serdes.Long()))
            .toStream()
            .to("totals", Produced.with(Serdes.String(), Serdes.Long()));
        amounts
            .groupByKey(Grouped.with("by-user-windowed", Serdes.String(), Serdes.Long()))
            .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofMinutes(1)))
            .count(Materialized.with(Serdes.String(), Serdes.Long()))
            .toStream()
            .map((window, count) -> KeyValue.pair(window.key() + "@" + window.window().start(), count))
            .to("counts", Produced.with(Serdes.String(), Serdes.Long()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch dead = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                System.out.println("RUNNING");
                System.out.flush();
            }
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                dead.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                .StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        streams.start();
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() != -1) { }
            } catch (Exception ignored) { }
            dead.countDown();
        });
        stdin.setDaemon(true);
        stdin.start();
        dead.await();
        KafkaStreams.State last = streams.state();
        streams.close(Duration.ofSeconds(30));
        System.exit(last == KafkaStreams.State.ERROR ? 1 : 0);
    }
}
