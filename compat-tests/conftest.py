"""Shared pytest fixtures for the compat suite: a fresh broker per test, plus small helpers.

The target (runnel or Apache Kafka) comes from COMPAT_TARGET; see harness/broker.py.
Extra broker configs for one test: `@pytest.mark.broker_config({"num.partitions": 3})`.
An SSL listener beside PLAINTEXT: `@pytest.mark.ssl_listener`, its `ssl.*` keys from the test's `ssl_configs` fixture.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "harness"))

from broker import Broker, target_from_env  # noqa: E402
from cluster import Cluster  # noqa: E402

COMPAT_DIR = Path(__file__).resolve().parent
CACHE_DIR = COMPAT_DIR / ".cache"


def pytest_configure(config):
    config.addinivalue_line("markers", "broker_config(dict): extra broker configs (Kafka names) for this test")
    config.addinivalue_line("markers", "ssl_listener: add an SSL listener configured by the `ssl_configs` fixture")
    config.addinivalue_line("markers", "nodes3: a 3-node cluster test; runs only with `run.sh --nodes 3` (COMPAT_NODES=3)")


def nodes_from_env() -> int:
    return int(os.environ.get("COMPAT_NODES", "1"))


# 3-node tests of features runnel has not built yet, skipped against runnel only (as the client
# suites' allow-lists): `<test name> needs:<feature> <reason>` per line; delete a line when its
# feature lands.
CLUSTER_ALLOWLIST = COMPAT_DIR / "multinode" / "allowlist-runnel.txt"


def cluster_allowlist() -> dict[str, str]:
    entries = {}
    if CLUSTER_ALLOWLIST.exists():
        for line in CLUSTER_ALLOWLIST.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                entries[name] = reason.strip()
    return entries


def pytest_collection_modifyitems(config, items):
    """3-node tests need `run.sh --nodes 3`; single-node tests are not run in 3-node mode."""
    three = nodes_from_env() == 3
    skip_cluster = pytest.mark.skip(reason="3-node test: run with compat-tests/run.sh --nodes 3")
    skip_single = pytest.mark.skip(reason="single-node test: run without --nodes 3")
    waiting = cluster_allowlist() if three and target_from_env() == "runnel" else {}
    for item in items:
        is_cluster = item.get_closest_marker("nodes3") is not None
        if is_cluster and not three:
            item.add_marker(skip_cluster)
        elif three and not is_cluster:
            item.add_marker(skip_single)
        elif item.name in waiting:
            item.add_marker(pytest.mark.skip(reason=f"runnel allow-list: {waiting[item.name]}"))


def pytest_report_header(config):
    return f"compat target: {target_from_env()}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, attach the broker's log tail to the report while the broker still exists."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call") and hasattr(item, "funcargs"):
        for name in ("cluster", "fresh_cluster", "dynamic_cluster", "isolated_cluster"):
            c = item.funcargs.get(name)
            if isinstance(c, Cluster):
                report.sections.append((f"cluster log tails ({c.target}, {c.root_dir})", c.log_tails()))
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


def _running(c: Cluster):
    """Starts `c` for a fixture, yields it, and removes its processes and files afterwards (also when it
    fails to start)."""
    try:
        c.start()
    except Exception:
        c.cleanup()
        raise
    yield c
    c.cleanup()


@pytest.fixture(scope="session")
def cluster():
    """The 3-node cluster the 3-node tests of this run share (they must leave every node running).

    `run.sh --nodes 3` starts it once for pytest and node alike and names it in COMPAT_CLUSTER_FILE;
    without that (pytest run by hand) this starts one for the session.
    """
    path = os.environ.get("COMPAT_CLUSTER_FILE")
    if path:
        yield Cluster.attach(json.loads(Path(path).read_text()))
        return
    yield from _running(Cluster())


@pytest.fixture
def fresh_cluster(request):
    """Three nodes of this test's own, for tests that kill, stop or restart nodes."""
    marker = request.node.get_closest_marker("broker_config")
    yield from _running(Cluster(configs=marker.args[0] if marker else None))


@pytest.fixture
def dynamic_cluster():
    """Three nodes of this test's own in a KIP-853 dynamic quorum: node 1 its only voter, nodes 2 and 3
    observers (harness/cluster.py, `quorum="dynamic"`)."""
    yield from _running(Cluster(quorum="dynamic"))


@pytest.fixture(scope="module")
def isolated_cluster():
    """Five nodes in Kafka's isolated mode (harness/cluster.py, `roles="isolated"`): nodes 1-3
    controller-only (`process.roles=controller`, the static voters), nodes 4 and 5 broker-only
    (`process.roles=broker`). Shared by the tests of one module (five JVMs start slowly on Kafka): a test
    that kills a node restarts it, and such tests come last in their module."""
    yield from _running(Cluster(roles="isolated", nodes=5, controllers=3))


@pytest.fixture
def topic_name(request):
    """A topic name unique to this test, readable in broker logs."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"
