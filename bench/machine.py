"""What the numbers were measured on: CPU, memory, kernel, data-dir filesystem, fsync latency."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

# A small write + fdatasync loop: what one durable append costs on this disk.
FSYNC_SAMPLES = 200
FSYNC_WRITE_BYTES = 4096


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def _filesystem(path: Path) -> str:
    out = subprocess.run(["df", "--output=source,fstype", str(path)], capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    return " ".join(lines[-1].split()) if len(lines) > 1 else "unknown"


def fsync_latency_ms(directory: Path) -> dict:
    path = directory / "fsync-probe"
    block = os.urandom(FSYNC_WRITE_BYTES)
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(FSYNC_SAMPLES):
            start = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    samples.sort()
    return {
        "samples": FSYNC_SAMPLES,
        "write_bytes": FSYNC_WRITE_BYTES,
        "p50": samples[len(samples) // 2],
        "p99": samples[int(len(samples) * 0.99) - 1],
        "mean": statistics.fmean(samples),
    }


def describe(data_root: Path) -> dict:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "mem_gib": round(_mem_total_gib(), 1),
        "kernel": platform.release(),
        "filesystem": _filesystem(data_root),
        "data_root": str(data_root),
        "load_avg_at_start": os.getloadavg(),
        "fsync_ms": fsync_latency_ms(data_root),
    }
