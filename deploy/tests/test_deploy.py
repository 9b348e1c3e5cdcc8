"""Deploy artefacts, checked with the tools operators use on them.

- The Helm chart lints, renders objects that Kubernetes' own schemas accept (kubeconform, strict),
  runs runnel as a StatefulSet behind a headless service with probes on /ready, and writes a
  broker config that runnel itself accepts.
- The systemd unit passes `systemd-analyze verify`.
- The OCI image (a static musl binary FROM scratch) builds with podman, starts, serves a Kafka
  client through a published port, and stops cleanly on SIGTERM. Skipped, saying why, where
  podman or the musl toolchain cannot run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "deploy" / ".cache"
HELM = CACHE / "bin" / "helm"
KUBECONFORM = CACHE / "bin" / "kubeconform"
SCHEMAS = CACHE / "kubernetes-json-schema"
CHART = REPO / "deploy" / "helm" / "runnel"
RUNNEL_BIN = Path(os.environ.get("RUNNEL_BIN") or REPO / "target" / "release" / "runnel")


def kubernetes_version() -> str:
    return (CACHE / "kubernetes-version").read_text().strip()


def run(*argv, input: str | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in argv], input=input, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{argv[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def render(*helm_args) -> str:
    return run(HELM, "template", "kafka", CHART, "--namespace", "streaming", *helm_args).stdout


def objects(manifest: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def kubeconform(manifest: str) -> subprocess.CompletedProcess:
    location = f"{SCHEMAS}/{{{{ .NormalizedKubernetesVersion }}}}-standalone-strict/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    return run(
        KUBECONFORM, "-strict", "-summary", "-output", "json",
        "-kubernetes-version", kubernetes_version(),
        "-schema-location", location, "-",
        input=manifest, check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of GET http://127.0.0.1:port/path (0 when nothing answers)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def wait_ready(port: int, process: subprocess.Popen | None, log: Path | None, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while http_get(port, "/ready")[0] != 200:
        if process is not None:
            assert process.poll() is None, f"runnel exited:\n{log.read_text() if log else ''}"
        assert time.monotonic() < deadline, f"/ready never answered 200:\n{log.read_text() if log else ''}"
        time.sleep(0.1)


# ---- Helm chart ---------------------------------------------------------------------------------------


def test_chart_lints_strictly():
    run(HELM, "lint", "--strict", CHART)


def test_rendered_objects_are_valid_for_kubernetes():
    manifest = render()
    result = kubeconform(manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    # Every object was checked against a schema: none skipped for want of one.
    assert summary == {
        "valid": len(objects(manifest)),
        "invalid": 0,
        "errors": 0,
        "skipped": 0,
    }, summary


def test_the_schema_check_rejects_a_malformed_statefulset():
    """The check above could pass vacuously if the schemas were not applied; this one must fail."""
    docs = objects(render())
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    statefulset["spec"]["replicas"] = "one"
    statefulset["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["portt"] = 1
    result = kubeconform(yaml.safe_dump(statefulset))
    (resource,) = json.loads(result.stdout)["resources"]
    # Invalid, not merely unchecked ("statusError" would mean no schema was found).
    assert resource["status"] == "statusInvalid", resource
    assert "replicas" in resource["msg"] and "portt" in resource["msg"], resource["msg"]


def test_statefulset_runs_one_broker_per_pod_probed_on_ready():
    docs = objects(render())
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    assert set(by_kind) == {"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap"}

    (statefulset,) = by_kind["StatefulSet"]
    headless = [s for s in by_kind["Service"] if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == 1
    assert statefulset["spec"]["serviceName"] == headless[0]["metadata"]["name"]
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"

    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"kafka": 9092, "admin": 9644}
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/ready", "port": "admin"}, probe
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"}

    args = container["args"]
    advertised = args[args.index("--advertised-listener") + 1]
    assert advertised == f"$(POD_NAME).{headless[0]['metadata']['name']}.$(POD_NAMESPACE).svc:9092"
    assert args[args.index("--data-dir") + 1] == "/data"

    (pdb,) = by_kind["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]


def test_more_than_one_replica_is_refused_until_runnel_clusters():
    result = run(HELM, "template", "kafka", CHART, "--set", "replicaCount=3", check=False)
    assert result.returncode != 0
    assert "clustering" in result.stderr


def test_rendered_broker_config_is_accepted_by_runnel(tmp_path):
    """Values become runnel.toml; runnel must start on it (big numbers must not turn into 1e+09)."""
    values = tmp_path / "values.yaml"
    values.write_text(
        "config:\n"
        "  log.segment.bytes: 1073741824\n"
        "  log.cleaner.min.cleanable.ratio: 0.3\n"
        "  compression.type: zstd\n"
        "  auto.create.topics.enable: false\n"
    )
    docs = objects(render("--values", values))
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    toml = configmap["data"]["runnel.toml"]
    assert '"log.segment.bytes" = 1073741824' in toml, toml
    assert '"log.cleaner.min.cleanable.ratio" = 0.3' in toml, toml
    assert '"compression.type" = "zstd"' in toml, toml
    config = tmp_path / "runnel.toml"
    config.write_text(toml)

    port = free_port()
    log = tmp_path / "runnel.log"
    with log.open("w") as stderr:
        broker = subprocess.Popen(
            [RUNNEL_BIN, "--config", config, "--listen", f"127.0.0.1:{port}",
             "--data-dir", tmp_path / "data"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        while "runnel is ready" not in log.read_text():
            assert broker.poll() is None, f"runnel refused the chart's config:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        broker.terminate()
        broker.wait(timeout=30)


def test_chart_command_line_starts_runnel_and_its_probe_paths_answer(tmp_path):
    """The StatefulSet's args, as Kubernetes expands them, start runnel; /ready and /health answer."""
    docs = objects(render())
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    config = tmp_path / "runnel.toml"
    config.write_text(configmap["data"]["runnel.toml"])
    kafka_port, admin_port = free_port(), free_port()
    args = []
    for arg in container["args"]:
        arg = arg.replace("$(POD_NAME)", "kafka-runnel-0").replace("$(POD_NAMESPACE)", "streaming")
        arg = arg.replace("0.0.0.0:9092", f"127.0.0.1:{kafka_port}").replace("0.0.0.0:9644", f"127.0.0.1:{admin_port}")
        arg = arg.replace("/etc/runnel/runnel.toml", str(config))
        args.append(str(tmp_path / "data") if arg == "/data" else arg)
    assert "$(" not in " ".join(args), args
    log = tmp_path / "runnel.log"
    with log.open("w") as stderr:
        broker = subprocess.Popen([RUNNEL_BIN, *args], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_ready(admin_port, broker, log)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert http_get(admin_port, path)[0] == 200, probe
        # The advertised name is the pod's stable DNS name under the headless service.
        assert "kafka-runnel-0.kafka-runnel-headless.streaming.svc" in log.read_text()
    finally:
        broker.terminate()
        broker.wait(timeout=30)


# ---- Grafana ------------------------------------------------------------------------------------------


def test_grafana_dashboard_queries_only_metrics_runnel_exposes(tmp_path):
    """Every series the dashboard's queries name is a family a real broker's /metrics declares."""
    import re

    dashboard = json.loads((REPO / "deploy" / "grafana" / "runnel-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    named = {m for e in exprs for m in re.findall(r"\b(runnel_[a-z_]+)", e)}

    admin_port = free_port()
    log = tmp_path / "runnel.log"
    with log.open("w") as stderr:
        broker = subprocess.Popen(
            [RUNNEL_BIN, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", tmp_path / "data",
             "--admin-listen", f"127.0.0.1:{admin_port}"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        wait_ready(admin_port, broker, log)
        status, body = http_get(admin_port, "/metrics")
        assert status == 200
    finally:
        broker.terminate()
        broker.wait(timeout=30)
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.MULTILINE))
    assert families, body[:500]

    def exposed(name: str) -> bool:
        if name in families:
            return True
        for suffix, kinds in (("_total", {"counter"}), ("_bucket", {"histogram"}), ("_sum", {"histogram"}),
                              ("_count", {"histogram"})):
            if name.endswith(suffix) and families.get(name[: -len(suffix)]) in kinds:
                return True
        return False

    assert sorted(n for n in named if not exposed(n)) == []


# ---- systemd ------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    unit = (REPO / "deploy" / "runnel.service").read_text()
    # verify checks that ExecStart's binary exists: point it at the one just built.
    unit = unit.replace("/usr/local/bin/runnel", str(RUNNEL_BIN))
    path = tmp_path / "runnel.service"
    path.write_text(unit)
    result = run("systemd-analyze", "verify", path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


# ---- the OCI image ------------------------------------------------------------------------------------


def image_tools_missing() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed"
    if run("podman", "info", check=False).returncode != 0:
        return "podman cannot run here (`podman info` failed)"
    if shutil.which("musl-gcc") is None:
        return "musl-gcc (Debian musl-tools) is not installed"
    targets = run("rustup", "target", "list", "--installed", check=False).stdout.split()
    if "x86_64-unknown-linux-musl" not in targets:
        return "Rust's x86_64-unknown-linux-musl target is not installed"
    return None


class Podman:
    """How podman starts containers on this machine."""

    def __init__(self, global_args: list[str], env: dict[str, str]):
        self.global_args = global_args
        self.env = env

    def __call__(self, *args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", *self.global_args, *[str(a) for a in args]],
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done


def podman_that_runs(tag: str, scratch: Path) -> tuple[Podman | None, str]:
    """The first podman setup that starts `tag`, or None and what went wrong.

    Podman's defaults raise RLIMIT_NOFILE/NPROC in the container and its default runtime (crun)
    refuses hybrid cgroup hierarchies; sandboxed CI machines may allow neither. The image does
    not need them, so the fallbacks drop the default ulimits and use runc.
    """
    no_ulimits = scratch / "containers.conf"
    no_ulimits.write_text("[containers]\ndefault_ulimits = []\n")
    setups = [([], {})]
    setups.append(([], {"CONTAINERS_CONF": str(no_ulimits)}))
    if shutil.which("runc"):
        setups.append((["--runtime", "runc"], {"CONTAINERS_CONF": str(no_ulimits)}))
    errors = []
    for global_args, env in setups:
        podman = Podman(global_args, {**os.environ, **env})
        done = podman("run", "--rm", tag, "--version", check=False)
        if done.returncode == 0 and done.stdout.startswith("runnel "):
            return podman, ""
        errors.append(f"{global_args} {env}: {done.stderr.strip()}")
    return None, "; ".join(errors)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The image, built once for the tests below and removed after them, and a podman that runs it."""
    missing = image_tools_missing()
    if missing:
        pytest.skip(missing)
    tag = f"localhost/runnel-test:{uuid.uuid4().hex[:8]}"
    run(REPO / "deploy" / "image" / "build.sh", tag, timeout=3600)
    try:
        podman, why = podman_that_runs(tag, tmp_path_factory.mktemp("podman"))
        if podman is None:
            pytest.skip(f"podman built the image but cannot start containers here: {why}")
        yield tag, podman
    finally:
        run("podman", "rmi", "--force", tag, check=False)


def produce_and_consume(port: int, topic: str) -> bytes | None:
    """Produces one record with acks=all and reads it back as a new group; its value, or None."""
    from confluent_kafka import Consumer, Producer

    value = f"hello from a container {uuid.uuid4()}".encode()
    producer = Producer({"bootstrap.servers": f"localhost:{port}", "acks": "all"})
    producer.produce(topic, key=b"k", value=value)
    assert producer.flush(60) == 0
    consumer = Consumer({
        "bootstrap.servers": f"localhost:{port}", "group.id": f"image-test-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                return value if message.value() == value else message.value()
    finally:
        consumer.close()
    return None


def test_image_from_scratch_serves_kafka_clients_and_stops_cleanly(image):
    tag, podman = image
    name = f"runnel-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    try:
        # Only the base's files: no shell, no package manager in the image.
        assert podman("run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", "true",
                      check=False).returncode != 0
        admin_port = free_port()
        podman("run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:9092",
               "--publish", f"127.0.0.1:{admin_port}:9644",
               tag, "--listen", "0.0.0.0:9092", "--advertised-listener", f"localhost:{port}",
               "--data-dir", "/data", "--admin-listen", "0.0.0.0:9644")
        wait_ready(admin_port, None, None, timeout_s=60)
        got = produce_and_consume(port, "from-the-image")
        status, metrics = http_get(admin_port, "/metrics")
        assert status == 200 and 'runnel_topic_bytes_in_total{topic="from-the-image"}' in metrics
        assert got is not None and got.startswith(b"hello from a container"), (
            got, podman("logs", name, check=False).stderr)

        podman("stop", "--time", "60", name)
        status = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert status == "0", podman("logs", name, check=False).stderr
    finally:
        podman("rm", "--force", name, check=False)


def test_one_node_compose_file_runs_the_image(image):
    tag, podman = image
    compose = CACHE / "venv" / "bin" / "podman-compose"
    port = free_port()
    admin_port = free_port()
    env = {**podman.env, "RUNNEL_IMAGE": tag, "RUNNEL_PORT": str(port), "RUNNEL_ADMIN_PORT": str(admin_port)}
    project = f"runnel-test-{uuid.uuid4().hex[:8]}"
    argv = [compose, "--project-name", project, "--file", REPO / "deploy" / "compose" / "one-node.yaml"]
    if podman.global_args:
        argv += ["--podman-args", " ".join(podman.global_args)]

    def compose_run(*args, check=True):
        done = subprocess.run([str(a) for a in argv + list(args)], env=env, capture_output=True,
                              text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"podman-compose {args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    try:
        compose_run("up", "--detach")
        wait_ready(admin_port, None, None, timeout_s=60)
        got = produce_and_consume(port, "from-compose")
        assert got is not None and got.startswith(b"hello from a container"), (
            got, compose_run("logs", check=False).stdout)
    finally:
        compose_run("down", "--volumes", check=False)


# ---- three-node examples (deploy/cluster/, deploy/compose/three-node.yaml) ----------------------------


def _cluster_node_configs(folder: Path) -> dict[int, dict]:
    import tomllib

    nodes = {}
    for path in sorted(folder.glob("node*.toml")):
        config = tomllib.loads(path.read_text())
        nodes[config["node.id"]] = config
    return nodes


def _listener_ports(value: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


@pytest.mark.parametrize("folder", ["cluster", "compose/three-node"])
def test_three_node_example_configs_form_one_quorum(folder):
    # Proves: the three example node configs use only Kafka's broker config names (and runnel.* ones), number the nodes 1-3,
    # name the same three voters, and each node's voter entry is its own CONTROLLER listener (by address on
    # loopback, by port and service name in compose), with a PLAINTEXT listener it advertises.
    known = {c["name"] for c in json.loads((REPO / "crates/cluster/src/kafka_configs.json").read_text())["broker"]}
    nodes = _cluster_node_configs(REPO / "deploy" / folder)
    assert sorted(nodes) == [1, 2, 3]
    voters = {c["controller.quorum.voters"] for c in nodes.values()}
    assert len(voters) == 1, voters
    voter_map = {int(v.split("@")[0]): v.split("@")[1] for v in voters.pop().split(",")}
    assert sorted(voter_map) == [1, 2, 3]
    for node_id, config in nodes.items():
        kafka_keys = {k for k in config if not k.startswith("runnel.")}
        assert kafka_keys <= known, kafka_keys - known
        assert config["process.roles"] == "broker,controller"
        assert config["controller.listener.names"] == "CONTROLLER"
        listeners = _listener_ports(config["listeners"])
        assert set(listeners) == {"PLAINTEXT", "CONTROLLER"}
        advertised = _listener_ports(config["advertised.listeners"])
        assert set(advertised) == {"PLAINTEXT"}
        host, port = voter_map[node_id].rsplit(":", 1)
        if folder == "cluster":
            assert (host, int(port)) == listeners["CONTROLLER"]
            assert advertised["PLAINTEXT"] == listeners["PLAINTEXT"]
        else:
            assert host == f"runnel-{node_id}" and int(port) == listeners["CONTROLLER"][1]
    if folder == "compose/three-node":
        compose = yaml.safe_load((REPO / "deploy" / "compose" / "three-node.yaml").read_text())
        for node_id, config in nodes.items():
            service = compose["services"][f"runnel-{node_id}"]
            host_port = _listener_ports(config["advertised.listeners"])["PLAINTEXT"][1]
            inner = _listener_ports(config["listeners"])["PLAINTEXT"][1]
            assert f"127.0.0.1:{host_port}:{inner}" in service["ports"], service["ports"]
            assert f"./three-node/node{node_id}.toml:/etc/runnel/runnel.toml:ro,Z" in service["volumes"]


# ---- isolated-mode example (deploy/cluster/isolated/) -----------------------------------------------------


def test_isolated_example_runs_three_controllers_and_two_brokers(tmp_path):
    # Proves: the isolated-mode example configs, as written but on free ports, start three controller-only
    # nodes and two broker-only nodes that form one cluster: clients see brokers 4 and 5 only, and a topic
    # created through one is written and read back through the cluster. Every node's /ready answers 200.
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    folder = REPO / "deploy" / "cluster" / "isolated"
    texts = {p.stem: p.read_text() for p in sorted(folder.glob("*.toml"))}
    assert sorted(texts) == ["broker4", "broker5", "controller1", "controller2", "controller3"]
    # Every fixed port of the examples (client, controller, admin) onto a free one, the same everywhere.
    fixed = sorted({int(p) for text in texts.values() for p in re.findall(r"127\.0\.0\.1:(\d+)", text)})
    ports = {p: free_port() for p in fixed}
    processes = []
    try:
        for name, text in texts.items():
            for old, new in ports.items():
                text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
            config = tmp_path / f"{name}.toml"
            config.write_text(text)
            log = open(tmp_path / f"{name}.log", "w")
            processes.append(subprocess.Popen(
                [RUNNEL_BIN, "--config", config, "--data-dir", tmp_path / name],
                stdout=subprocess.DEVNULL, stderr=log,
            ))
        import tomllib

        configs = {name: tomllib.loads(text) for name, text in texts.items()}
        port_of = lambda address: ports[int(address.rsplit(":", 1)[1])]  # noqa: E731
        admin_ports = [port_of(c["runnel.admin.listener"]) for c in configs.values()]
        deadline = time.time() + 60
        while time.time() < deadline and not all(http_get(p, "/ready")[0] == 200 for p in admin_ports):
            assert all(p.poll() is None for p in processes), [
                (tmp_path / f"{n}.log").read_text()[-2000:] for n in texts
            ]
            time.sleep(0.2)
        assert all(http_get(p, "/ready")[0] == 200 for p in admin_ports)
        bootstrap = ",".join(
            f"127.0.0.1:{port_of(configs[b]['listeners'])}" for b in ("broker4", "broker5")
        )
        admin = AdminClient({"bootstrap.servers": bootstrap})
        brokers = sorted(admin.list_topics(timeout=10).brokers)
        assert brokers == [4, 5]
        admin.create_topics([NewTopic("isolated", 4, 1)])["isolated"].result(timeout=30)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(4):
            producer.produce("isolated", value=f"v{i}".encode(), partition=i)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "isolated-check",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe(["isolated"])
        seen = set()
        deadline = time.time() + 60
        while len(seen) < 4 and time.time() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                seen.add(message.value())
        consumer.close()
        assert seen == {b"v0", b"v1", b"v2", b"v3"}
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
