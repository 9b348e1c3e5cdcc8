"""Fetch v4 spoken on the wire, so a test sees record batches exactly as the broker stored them.

Clients decompress batches and hide their headers; the codec a broker chose (`compression.type`)
and the timestamp type it stamped are only visible in each batch's attributes. One request, one
partition, every batch header in the returned records decoded.
"""

from __future__ import annotations

import socket
import struct

from config_wire import _Reader, _recv

FETCH = 1
VERSION = 4

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def fetch_batches(bootstrap: str, topic: str, partition: int = 0, offset: int = 0, timeout_s: float = 10.0) -> list[dict]:
    """Fetch v4 of one partition from `offset`; every whole v2 batch header in the answer, as dicts."""
    name = topic.encode()
    body = struct.pack(">iiiib", -1, 500, 1, 64 << 20, 0)
    body += struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, 32 << 20)
    client_id = b"fetch-wire"
    header = struct.pack(">hhih", FETCH, VERSION, 11, len(client_id)) + client_id
    frame = header + body
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        r = _Reader(_recv(sock, size))
    if r.i32() != 11:
        raise ValueError("correlation id mismatch")
    r.i32()  # throttle_time_ms
    batches = []
    for _ in range(r.i32()):
        r.take(struct.unpack(">h", r.take(2))[0])  # topic name
        for _ in range(r.i32()):
            r.i32()  # partition
            error = r.i16()
            if error != 0:
                raise ValueError(f"fetch error code {error}")
            r.take(16)  # high watermark, last stable offset
            aborted = r.i32()
            for _ in range(max(aborted, 0)):
                r.take(16)
            n = r.i32()
            records = r.take(n) if n > 0 else b""
            batches.extend(_batch_headers(records))
    return batches


def _batch_headers(records: bytes) -> list[dict]:
    out = []
    pos = 0
    while pos + 61 <= len(records):
        base_offset, length, _epoch, magic, _crc, attributes, last_delta, base_ts, max_ts = struct.unpack(
            ">qiibIhiqq", records[pos : pos + 43]
        )
        if pos + 12 + length > len(records):
            break  # a trailing partial batch, as a fetch may end with
        if magic != 2:
            raise ValueError(f"magic {magic} at {pos}")
        count = struct.unpack(">i", records[pos + 57 : pos + 61])[0]
        out.append(
            {
                "base_offset": base_offset,
                "last_offset": base_offset + last_delta,
                "codec": CODECS.get(attributes & 7, f"unknown-{attributes & 7}"),
                "log_append_time": bool(attributes & 8),
                "base_timestamp": base_ts,
                "max_timestamp": max_ts,
                "record_count": count,
            }
        )
        pos += 12 + length
    return out
