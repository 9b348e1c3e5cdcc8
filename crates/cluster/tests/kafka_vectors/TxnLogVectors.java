// Prints __transaction_state records as Kafka encodes them (TransactionLog.keyToBytes /
// valueToBytes), one per line: name, transaction.version level, key hex, value hex. The Rust
// test `txn_log_matches_kafka` (crates/cluster/src/txn/tests/records.rs) reads the checked-in
// output, txn_log_vectors.txt; the ignored test `kafka_reads_our_txn_log` (crates/cluster/tests/
// kafka_txn_log.rs) runs this program, checks the file is still what Kafka writes, and feeds
// our records to Kafka's reader (`read` mode). To regenerate against the cached Kafka jars:
//
//   CP="compat-tests/.cache/kafka-libs/*"
//   javac -cp "$CP" -d /tmp/txnvec crates/cluster/tests/kafka_vectors/TxnLogVectors.java
//   java -cp "$CP:/tmp/txnvec" TxnLogVectors > crates/cluster/tests/kafka_vectors/txn_log_vectors.txt

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.util.HashSet;
import java.util.List;
import java.util.TreeSet;

import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.coordinator.transaction.TransactionLog;
import org.apache.kafka.coordinator.transaction.TransactionState;
import org.apache.kafka.coordinator.transaction.TxnTransitMetadata;
import org.apache.kafka.server.common.TransactionVersion;

public class TxnLogVectors {
    static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) s.append(String.format("%02x", x));
        return s.toString();
    }

    static void print(String name, String txnId, TransactionVersion level, long pid, long prevPid, long nextPid,
                      short epoch, int timeout, TransactionState state, List<TopicPartition> tps,
                      long start, long lastUpdate, TransactionVersion client) {
        TxnTransitMetadata t = new TxnTransitMetadata(pid, prevPid, nextPid, epoch, (short) -1, timeout, state,
            new HashSet<>(tps), start, lastUpdate, client);
        System.out.println(name + " " + level.featureLevel() + " " + hex(TransactionLog.keyToBytes(txnId)) + " "
            + hex(TransactionLog.valueToBytes(t, level)));
    }

    static byte[] unhex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return b;
    }

    // `read`: each stdin line "key_hex value_hex" read with Kafka's TransactionLog.read, printed
    // as "id pid prevPid nextPid epoch timeout state start lastUpdate clientVersion partitions".
    static void read() throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.split(" ");
            TransactionLog.ReadResult r = TransactionLog.read(ByteBuffer.wrap(unhex(f[0])), ByteBuffer.wrap(unhex(f[1])));
            TransactionLog.TxnRecord rec = (TransactionLog.TxnRecord) r;
            var m = rec.metadata();
            TreeSet<String> tps = new TreeSet<>();
            m.topicPartitions().forEach(tp -> tps.add(tp.topic() + "-" + tp.partition()));
            System.out.println(rec.transactionId() + " " + m.producerId() + " " + m.prevProducerId() + " "
                + m.prepareNoTransit().nextProducerId() + " " + m.producerEpoch() + " " + m.txnTimeoutMs() + " " + m.state().id() + " "
                + m.txnStartTimestamp() + " " + m.txnLastUpdateTimestamp() + " "
                + m.clientTransactionVersion().featureLevel() + " " + String.join(",", tps));
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("read")) {
            read();
            return;
        }
        TopicPartition a0 = new TopicPartition("orders", 0);
        TopicPartition a1 = new TopicPartition("orders", 1);
        TopicPartition a7 = new TopicPartition("orders", 7);
        TopicPartition b3 = new TopicPartition("__consumer_offsets", 3);
        print("empty-tv0", "txn-1", TransactionVersion.TV_0, 1000, -1, -1, (short) 0, 60000,
            TransactionState.EMPTY, List.of(), -1, 1700000000000L, TransactionVersion.TV_0);
        print("empty-tv1", "txn-1", TransactionVersion.TV_1, 1000, 1000, -1, (short) 1, 60000,
            TransactionState.EMPTY, List.of(), -1, 1700000000001L, TransactionVersion.TV_0);
        print("ongoing-tv2", "txn-\u00e9", TransactionVersion.TV_2, 4242, 4242, -1, (short) 5, 900000,
            TransactionState.ONGOING, List.of(a0), 1700000000100L, 1700000000100L, TransactionVersion.TV_2);
        print("ongoing-tv0", "t", TransactionVersion.TV_0, 7, 7, -1, (short) 3, 10000,
            TransactionState.ONGOING, List.of(a1), 1700000000100L, 1700000000200L, TransactionVersion.TV_0);
        print("prepare-commit-tv2-many", "txn-2", TransactionVersion.TV_2, 12, 12, -1, (short) 9, 60000,
            TransactionState.PREPARE_COMMIT, List.of(a0, a1, a7, b3), 1700000000300L, 1700000000400L,
            TransactionVersion.TV_2);
        print("prepare-abort-overflow", "txn-3", TransactionVersion.TV_2, 12, 12, 13, (short) 32767, 60000,
            TransactionState.PREPARE_ABORT, List.of(b3), 1700000000300L, 1700000000400L, TransactionVersion.TV_2);
        print("complete-commit-tv0", "txn-4", TransactionVersion.TV_0, 99, 99, -1, (short) 2, 60000,
            TransactionState.COMPLETE_COMMIT, List.of(), 1700000000300L, 1700000000500L, TransactionVersion.TV_0);
        print("complete-abort-tv2", "txn-4", TransactionVersion.TV_2, 100, 99, -1, (short) 0, 60000,
            TransactionState.COMPLETE_ABORT, List.of(), 1700000000300L, 1700000000500L, TransactionVersion.TV_2);
        print("prepare-abort-tv0-many", "txn-5", TransactionVersion.TV_0, 5, 5, -1, (short) 4, 30000,
            TransactionState.PREPARE_ABORT, List.of(a7, a1, b3), 1700000000300L, 1700000000600L,
            TransactionVersion.TV_0);
    }
}
