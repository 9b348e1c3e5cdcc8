import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A transactional KafkaProducer driven line by line on stdin, so a test can hold a transaction open
 * while it looks at the broker with other tools. One reply line per command: "OK ..." or
 * "ERR ExceptionClass message" (the producer stays usable as far as the client allows).
 *
 *   init                                 initTransactions()
 *   begin                                beginTransaction()
 *   send TOPIC PARTITION TIMESTAMP VALUE send and wait for the ack: "OK PARTITION OFFSET"
 *   offsets GROUP TOPIC PARTITION OFFSET sendOffsetsToTransaction for one partition
 *   commit | abort | flush | quit
 *
 * Usage: TxnClient BOOTSTRAP TRANSACTIONAL_ID TRANSACTION_TIMEOUT_MS
 */
public final class TxnClient {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, args[1]);
        props.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, args[2]);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            String line;
            while ((line = in.readLine()) != null) {
                String[] w = line.trim().split(" ", 5);
                try {
                    switch (w[0]) {
                        case "init" -> { producer.initTransactions(); reply("OK"); }
                        case "begin" -> { producer.beginTransaction(); reply("OK"); }
                        case "send" -> {
                            RecordMetadata md = producer.send(new ProducerRecord<>(
                                w[1], Integer.parseInt(w[2]), Long.parseLong(w[3]), null, w[4])).get();
                            reply("OK " + md.partition() + " " + md.offset());
                        }
                        case "offsets" -> {
                            producer.sendOffsetsToTransaction(
                                Map.of(new TopicPartition(w[2], Integer.parseInt(w[3])),
                                    new OffsetAndMetadata(Long.parseLong(w[4]))),
                                new ConsumerGroupMetadata(w[1]));
                            reply("OK");
                        }
                        case "commit" -> { producer.commitTransaction(); reply("OK"); }
                        case "abort" -> { producer.abortTransaction(); reply("OK"); }
                        case "flush" -> { producer.flush(); reply("OK"); }
                        case "quit" -> { reply("OK"); return; }
                        default -> reply("ERR IllegalArgumentException unknown command " + w[0]);
                    }
                } catch (Exception e) {
                    Throwable cause = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
                    reply("ERR " + cause.getClass().getSimpleName() + " " + String.valueOf(cause.getMessage()).replace('\n', ' '));
                }
            }
        }
    }

    private static void reply(String text) {
        System.out.println(text);
        System.out.flush();
    }
}
