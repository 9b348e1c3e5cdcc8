// Prints __transaction_state records as Kafka encodes them (TransactionLog.keyToBytes /
// valueToBytes), one per line: name, transaction.version level, key hex, value hex. The Rust
// test `txn_log_matches_kafka` (crates/cluster/src/txn/tests/records.rs) reads the checked-in
// output, txn_log_vectors.txt. To regenerate against the cached Kafka jars:
//
//   CP="compat-tests/.cache/kafka-libs/*"
//   javac -cp "$CP" -d /tmp/txnvec crates/cluster/tests/kafka_vectors/TxnLogVectors.java
//   java -cp "$CP:/tmp/txnvec" TxnLogVectors > crates/cluster/tests/kafka_vectors/txn_log_vectors.txt

import java.util.HashSet;
import java.util.List;

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

    public static void main(String[] args) {
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
