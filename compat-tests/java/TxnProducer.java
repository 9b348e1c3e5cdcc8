// A Java KafkaProducer (kafka-clients 4.4: transaction version 2 when the cluster finalized it) runs
// transactions over the partitions of a topic: "TAG:commit" or "TAG:abort" arguments, each one
// transaction of two records per partition valued TAG-pP-I. Prints "DONE" when every transaction ended.
// Usage: java -cp <kafka libs> TxnProducer.java BOOTSTRAP TOPIC PARTITIONS TRANSACTIONAL_ID TAG:commit|abort...
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnProducer {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("transactional.id", args[3]);
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        String topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            for (int a = 4; a < args.length; a++) {
                String[] step = args[a].split(":");
                producer.beginTransaction();
                for (int p = 0; p < partitions; p++) {
                    for (int i = 0; i < 2; i++) {
                        producer.send(new ProducerRecord<>(topic, p, null, step[0] + "-p" + p + "-" + i)).get();
                    }
                }
                if (step[1].equals("commit")) {
                    producer.commitTransaction();
                } else {
                    producer.abortTransaction();
                }
            }
        }
        System.out.println("DONE");
    }
}
