"""Kafka's admin CLI tools for log dirs, offsets, leaders and features, and the ApiVersions
handshake of Kafka 4.4's Java clients, against the broker."""

from __future__ import annotations

import socket
import struct
import threading

from helpers import run_java_tool

BROKER_API_VERSIONS = "org.apache.kafka.tools.BrokerApiVersionsCommand"
API_VERSIONS_KEY = 18


class RequestLog:
    """A TCP proxy in front of the broker that records (api key, version) of every request frame
    each client connection sends, without changing a byte."""

    def __init__(self, upstream: str):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[list[tuple[int, int]]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            requests: list[tuple[int, int]] = []
            with self.lock:
                self.connections.append(requests)
            threading.Thread(target=self._requests, args=(client, server, requests), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    @staticmethod
    def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _requests(self, client: socket.socket, server: socket.socket, requests: list) -> None:
        try:
            while True:
                size = self._read_exactly(client, 4)
                if size is None:
                    break
                frame = self._read_exactly(client, struct.unpack(">i", size)[0])
                if frame is None:
                    break
                requests.append(struct.unpack(">hh", frame[:4]))
                server.sendall(size + frame)
        except OSError:
            pass
        finally:
            server.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self.listener.close()


def test_java_4_4_clients_open_with_api_versions_v5_and_no_fallback(broker):
    # Proves: a Kafka 4.4 Java client opens its connection with ApiVersions v5 (KIP-1242) and is
    # served at once: the broker advertises ApiVersions up to v5 and no v4 retry follows.
    proxy = RequestLog(broker.bootstrap)
    try:
        out = run_java_tool(BROKER_API_VERSIONS, "--bootstrap-server", proxy.address)
    finally:
        proxy.close()
    assert "ApiVersions(18): 0 to 5 [usable: 5]" in out, out
    with proxy.lock:
        connections = [list(c) for c in proxy.connections if c]
    assert connections, "the tool sent nothing through the proxy"
    for requests in connections:
        api_versions = [version for key, version in requests if key == API_VERSIONS_KEY]
        assert requests[0] == (API_VERSIONS_KEY, 5), requests
        assert api_versions == [5], requests
