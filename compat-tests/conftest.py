"""Shared pytest fixtures for the compat suite: a fresh broker per test, plus small helpers.

The target (runnel or Apache Kafka) comes from COMPAT_TARGET; see harness/broker.py.
Extra broker configs for one test: `@pytest.mark.broker_config({"num.partitions": 3})`.
An SSL listener beside PLAINTEXT: `@pytest.mark.ssl_listener`, its `ssl.*` keys from the test's `ssl_configs` fixture.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "harness"))

from broker import Broker, target_from_env  # noqa: E402

COMPAT_DIR = Path(__file__).resolve().parent
CACHE_DIR = COMPAT_DIR / ".cache"


def pytest_configure(config):
    config.addinivalue_line("markers", "broker_config(dict): extra broker configs (Kafka names) for this test")
    config.addinivalue_line("markers", "ssl_listener: add an SSL listener configured by the `ssl_configs` fixture")


def pytest_report_header(config):
    return f"compat target: {target_from_env()}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, attach the broker's log tail to the report while the broker still exists."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        broker = item.funcargs.get("broker") if hasattr(item, "funcargs") else None
        if isinstance(broker, Broker):
            report.sections.append(
                (f"broker log tail ({broker.target}, {broker.log_path})", broker.log_tail())
            )


@pytest.fixture
def broker(request):
    """A fresh broker for this test only; stopped (SIGTERM) and its temp dir removed afterwards."""
    ssl = request.node.get_closest_marker("ssl_listener") is not None
    configs = dict(request.getfixturevalue("ssl_configs")) if ssl else {}
    marker = request.node.get_closest_marker("broker_config")
    configs.update(marker.args[0] if marker else {})
    b = Broker(configs=configs, ssl_listener=ssl)
    try:
        b.start()
    except Exception:
        b.cleanup()
        raise
    yield b
    b.cleanup()


@pytest.fixture
def topic_name(request):
    """A topic name unique to this test, readable in broker logs."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"
