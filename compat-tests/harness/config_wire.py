"""DescribeConfigs v4 spoken on the wire, for tests that compare every field Kafka and runnel send.

Client libraries drop fields (documentation, config_type, synonym order) or reorder them, so the
differential config test talks the protocol itself: one request, one response, nothing hidden.
"""

from __future__ import annotations

import socket
import struct

DESCRIBE_CONFIGS = 32
VERSION = 4


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _compact_str(s: str | None) -> bytes:
    if s is None:
        return _uvarint(0)
    b = s.encode()
    return _uvarint(len(b) + 1) + b


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("response ends early")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def boolean(self) -> bool:
        return self.take(1) != b"\x00"

    def uvarint(self) -> int:
        shift = 0
        value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def compact_str(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def array(self, item):
        n = self.uvarint()
        return [] if n == 0 else [item() for _ in range(n - 1)]

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def describe_configs(
    bootstrap: str,
    resources: list[tuple[int, str]],
    synonyms: bool = True,
    documentation: bool = True,
    timeout_s: float = 10.0,
) -> list[dict]:
    """DescribeConfigs v4 for (resource_type, name) pairs, all keys; the results as dicts."""
    body = _uvarint(len(resources) + 1)
    for rtype, name in resources:
        body += struct.pack(">b", rtype) + _compact_str(name) + _uvarint(0) + _uvarint(0)
    body += bytes([int(synonyms), int(documentation)]) + _uvarint(0)
    client_id = b"config-diff"
    header = struct.pack(">hhih", DESCRIBE_CONFIGS, VERSION, 7, len(client_id)) + client_id + _uvarint(0)
    frame = header + body
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        r = _Reader(_recv(sock, size))
    if r.i32() != 7:
        raise ValueError("correlation id mismatch")
    r.tags()
    r.i32()  # throttle_time_ms

    def synonym():
        s = {"name": r.compact_str(), "value": r.compact_str(), "source": r.i8()}
        r.tags()
        return s

    def config():
        c = {
            "name": r.compact_str(),
            "value": r.compact_str(),
            "read_only": r.boolean(),
            "source": r.i8(),
            "sensitive": r.boolean(),
            "synonyms": r.array(synonym),
            "type": r.i8(),
            "documentation": r.compact_str(),
        }
        r.tags()
        return c

    def result():
        out = {
            "error_code": r.i16(),
            "error_message": r.compact_str(),
            "resource_type": r.i8(),
            "resource_name": r.compact_str(),
            "configs": r.array(config),
        }
        r.tags()
        return out

    results = r.array(result)
    r.tags()
    return results


def _recv(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("connection closed")
        out += chunk
    return bytes(out)


def _exchange(bootstrap: str, api_key: int, version: int, body: bytes, timeout_s: float = 30.0) -> _Reader:
    client_id = b"config-diff"
    header = struct.pack(">hhih", api_key, version, 9, len(client_id)) + client_id + _uvarint(0)
    frame = header + body
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        r = _Reader(_recv(sock, size))
    if r.i32() != 9:
        raise ValueError("correlation id mismatch")
    r.tags()
    return r


def create_topic(bootstrap: str, name: str, configs: dict[str, str]) -> dict:
    """CreateTopics v7 for one topic (1 partition, replication 1); its result with the configs the
    controller reports as (name, value, read_only, source, sensitive) tuples."""
    body = _uvarint(2) + _compact_str(name) + struct.pack(">ih", 1, 1) + _uvarint(1)
    body += _uvarint(len(configs) + 1)
    for k, v in configs.items():
        body += _compact_str(k) + _compact_str(v) + _uvarint(0)
    body += _uvarint(0) + struct.pack(">i", 30000) + b"\x00" + _uvarint(0)
    r = _exchange(bootstrap, 19, 7, body)
    r.i32()

    def config():
        c = (r.compact_str(), r.compact_str(), r.boolean(), r.i8(), r.boolean())
        r.tags()
        return c

    def topic():
        t = {
            "name": r.compact_str(),
            "topic_id": r.take(16),
            "error_code": r.i16(),
            "error_message": r.compact_str(),
            "num_partitions": r.i32(),
            "replication_factor": r.i16(),
            "configs": r.array(config),
        }
        r.tags()
        return t

    [result] = r.array(topic)
    return result


def incremental_alter_configs(bootstrap: str, resources: list[tuple[int, str, list[tuple[str, int, str | None]]]]):
    """IncrementalAlterConfigs v1; [(error_code, error_message)] per resource."""
    body = _uvarint(len(resources) + 1)
    for rtype, name, ops in resources:
        body += struct.pack(">b", rtype) + _compact_str(name) + _uvarint(len(ops) + 1)
        for key, op, value in ops:
            body += _compact_str(key) + struct.pack(">b", op) + _compact_str(value) + _uvarint(0)
        body += _uvarint(0)
    body += b"\x00" + _uvarint(0)
    r = _exchange(bootstrap, 44, 1, body)
    r.i32()

    def response():
        out = (r.i16(), r.compact_str())
        r.i8()
        r.compact_str()
        r.tags()
        return out

    return r.array(response)
