"""java/TxnClient.java from Python: a transactional KafkaProducer (Kafka 4.4's Java client) driven command by command."""

from __future__ import annotations

import queue
import subprocess
import threading

from broker import CACHE_DIR, KAFKA_CONF_DIR, java_classpath

REPLY_TIMEOUT_S = 120.0


class TxnClientError(RuntimeError):
    """A command answered "ERR ExceptionClass message"."""

    def __init__(self, command: str, exception: str, message: str):
        super().__init__(f"{command}: {exception}: {message}")
        self.exception = exception
        self.message = message


class TxnClient:
    """`TxnClient(bootstrap, transactional_id)`; each method sends one command and waits for its reply."""

    def __init__(self, bootstrap: str, transactional_id: str, transaction_timeout_ms: int = 60_000):
        self.proc = subprocess.Popen(
            [
                "java", "-Xmx256M", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                f"-Dlog4j.configuration=file:{KAFKA_CONF_DIR / 'log4j-tools.properties'}",
                "-Dlog4j2.statusLoggerLevel=OFF",
                "-cp", f"{CACHE_DIR / 'java-classes'}:{java_classpath()}",
                "TxnClient", bootstrap, transactional_id, str(transaction_timeout_ms),
            ],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(("OK", "ERR")):
                self.replies.put(line.rstrip("\n"))
        self.replies.put(None)

    def call(self, command: str) -> list[str]:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        try:
            reply = self.replies.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"TxnClient gave no reply to {command!r} in {REPLY_TIMEOUT_S}s; stderr:\n"
                                 + "".join(self.stderr[-30:])) from None
        if reply is None:
            raise AssertionError(f"TxnClient exited during {command!r}; stderr:\n" + "".join(self.stderr[-30:]))
        words = reply.split(" ")
        if words[0] == "ERR":
            raise TxnClientError(command, words[1], " ".join(words[2:]))
        return words[1:]

    def init(self) -> None:
        self.call("init")

    def begin(self) -> None:
        self.call("begin")

    def send(self, topic: str, partition: int, timestamp_ms: int, value: str) -> int:
        """Sends one record (value without spaces) and returns its offset once acked."""
        assert " " not in value
        got_partition, offset = self.call(f"send {topic} {partition} {timestamp_ms} {value}")
        assert int(got_partition) == partition
        return int(offset)

    def send_offsets(self, group: str, topic: str, partition: int, offset: int) -> None:
        self.call(f"offsets {group} {topic} {partition} {offset}")

    def commit(self) -> None:
        self.call("commit")

    def abort(self) -> None:
        self.call("abort")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit")
                self.proc.wait(timeout=60)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "TxnClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
