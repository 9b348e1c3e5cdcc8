import java.io.BufferedOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Crash-test producer: an idempotent KafkaProducer (acks=all, default retries) that sends numbered
 * messages round-robin over a topic's partitions and prints "ACK msg-N PARTITION OFFSET" for each send
 * the broker acknowledged, flushing every line so the test sees each ack as soon as the client does.
 * It runs until killed (or until MAX_COUNT sends), because the test decides when to crash the broker.
 *
 * Usage: AckProducer BOOTSTRAP TOPIC PARTITION_COUNT [MAX_COUNT]
 */
public final class AckProducer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int partitionCount = Integer.parseInt(args[2]);
        long maxCount = args.length > 3 ? Long.parseLong(args[3]) : Long.MAX_VALUE;

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        // Callbacks run on the producer's I/O thread; one synchronized stream keeps lines whole.
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out, 1 << 16), false, StandardCharsets.UTF_8);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (long n = 0; n < maxCount; n++) {
                final String msg = "msg-" + n;
                int partition = (int) (n % partitionCount);
                producer.send(new ProducerRecord<>(topic, partition, msg, msg), (metadata, error) -> {
                    if (error == null) {
                        synchronized (out) {
                            out.println("ACK " + msg + " " + metadata.partition() + " " + metadata.offset());
                            out.flush();
                        }
                    }
                });
            }
            producer.flush();
        }
        out.flush();
    }
}
