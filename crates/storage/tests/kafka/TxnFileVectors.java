import java.io.File;
import java.nio.ByteBuffer;
import java.nio.file.Files;

import org.apache.kafka.common.message.AbortedTxn;
import org.apache.kafka.common.record.internal.ControlRecordType;
import org.apache.kafka.common.record.internal.EndTransactionMarker;
import org.apache.kafka.common.record.internal.MemoryRecords;
import org.apache.kafka.storage.internals.log.TransactionIndex;

/**
 * Prints, as hex, the bytes Kafka writes for a transaction marker batch
 * (MemoryRecords.withEndTransactionMarker) and for one entry appended to a .txnindex by its
 * TransactionIndex.
 */
public class TxnFileVectors {
    static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) s.append(String.format("%02x", x));
        return s.toString();
    }

    public static void main(String[] args) throws Exception {
        // args: offset timestamp leaderEpoch producerId producerEpoch coordinatorEpoch ABORT|COMMIT
        //       then the aborted txn: producerId firstOffset lastOffset lastStableOffset
        MemoryRecords marker = MemoryRecords.withEndTransactionMarker(
            Long.parseLong(args[0]), Long.parseLong(args[1]), Integer.parseInt(args[2]),
            Long.parseLong(args[3]), Short.parseShort(args[4]),
            new EndTransactionMarker(ControlRecordType.valueOf(args[6]), Integer.parseInt(args[5])));
        ByteBuffer buffer = marker.buffer();
        byte[] bytes = new byte[buffer.remaining()];
        buffer.duplicate().get(bytes);
        System.out.println(hex(bytes));
        File file = File.createTempFile("kafka", ".txnindex");
        file.delete();
        TransactionIndex index = new TransactionIndex(0L, file);
        index.append(new AbortedTxn()
            .setProducerId(Long.parseLong(args[7]))
            .setFirstOffset(Long.parseLong(args[8]))
            .setLastOffset(Long.parseLong(args[9]))
            .setLastStableOffset(Long.parseLong(args[10])));
        index.flush();
        index.close();
        System.out.println(hex(Files.readAllBytes(file.toPath())));
        file.delete();
    }
}
