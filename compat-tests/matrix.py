#!/usr/bin/env python3
"""Write docs/compatibility.md from compat-tests/results/*.json: client x feature area, runnel vs Kafka.

  python compat-tests/matrix.py                 # read results/ and kafka/baseline-notes.md, write docs/compatibility.md
  python compat-tests/matrix.py --check         # exit 1 if docs/compatibility.md is not up to date
  python compat-tests/matrix.py --from-junit report.xml --target runnel
                                                # convert our own pytest suites' --junitxml report into
                                                # results/own-runnel.json (then run without flags)

Inputs: results/<suite>-<target>.json as written by compat-tests/suites/*/run.py (and own-<target>.json),
results/<suite>-<target>-3nodes.json (runs against three nodes, their own section), and each suite's
allowlist.txt and allowlist-3nodes.txt. Each test is put in one feature area by AREA_RULES (first match wins),
so "groups (classic)" shrinks to zero allow-listed tests as runnel grows consumer groups.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
RESULTS_DIR = COMPAT_DIR / "results"
SUITES_DIR = COMPAT_DIR / "suites"
DOC_PATH = COMPAT_DIR.parent / "docs" / "compatibility.md"
# Hand-written: what the Kafka baseline is and what moved since the previous one; appended verbatim.
BASELINE_NOTES_PATH = COMPAT_DIR / "kafka" / "baseline-notes.md"

sys.path.insert(0, str(SUITES_DIR))

from common import load_allowlist  # noqa: E402

# Column order of the matrix.
SUITES = ("librdkafka", "franz-go", "own")
TARGETS = ("runnel", "kafka")

AREAS = (
    "produce",
    "idempotent produce",
    "consume (assign, offsets)",
    "compression codecs",
    "metadata & connections",
    "admin (topics, configs)",
    "groups (classic)",
    "groups (KIP-848)",
    "transactions",
    "share groups (KIP-932)",
    "security (SASL/TLS, ACLs)",
    "multi-broker",
    "client telemetry (KIP-714)",
    "client-side unit tests",
    "other",
)

# (suite, regex on the test name, area). First match wins; the regexes read test names (librdkafka
# numbers_and_names, franz-go TestNames, our pytest node ids) and were written from each test's source.
AREA_RULES: list[tuple[str, str, str]] = [
    # ---- librdkafka tests/0nnn-*.c
    ("librdkafka", r"^0(115|119|126|135|142|097)_", "security (SASL/TLS, ACLs)"),
    ("librdkafka", r"^01(7\d|8\d|90)_|share_consumer", "share groups (KIP-932)"),
    ("librdkafka", r"^0150_", "client telemetry (KIP-714)"),
    ("librdkafka", r"^0101_", "multi-broker"),
    ("librdkafka", r"^0(098|103|129)_", "transactions"),
    ("librdkafka", r"^0090_", "idempotent produce"),
    ("librdkafka", r"^0(017|092)_", "compression codecs"),
    ("librdkafka", r"^0(044|077|081|107|109|111)_", "admin (topics, configs)"),
    ("librdkafka", r"^0(018|019|020|030|033|045|050|056|069|089|091|093|099|102|113|116|118|122|130|132|140)_",
     "groups (classic)"),
    ("librdkafka", r"^0(016|028|035|042|053|057|063|083|084|123)_", "metadata & connections"),
    ("librdkafka", r"^0(012|014|015|022|026|029|031|034|036|038|040|041|047|051|054|059|060|061|065|067|082|085|112|127|137|139)_",
     "consume (assign, offsets)"),
    ("librdkafka", r"^0(001|002|003|005|007|008|011|013|021|039|048|052|055|064|070|073|086|110|114|125)_", "produce"),
    # ---- franz-go pkg/kgo
    ("franz-go", r"^Test(SCRAM|OAuth)", "security (SASL/TLS, ACLs)"),
    ("franz-go", r"^TestShare|Share", "share groups (KIP-932)"),
    ("franz-go", r"848", "groups (KIP-848)"),
    ("franz-go", r"^TestTxn", "transactions"),
    ("franz-go", r"^Test(Group|Issue523$|Issue1034$|ConsumeRegex$|UnknownGroupOffsetFetchPinned$)", "groups (classic)"),
    ("franz-go", r"^Test(Client_Produce|Issue769$|Issue831$|IssueProduce|DirectPartitionPurge$|RackAwarePartitioning$)", "produce"),
    ("franz-go", r"^Test(Issue337$|Issue434$|Issue648$|Issue810$|Issue865$|Issue325$|IssueFetch|Pause|ConsumeMaxDecompress|ConsumeTopicRetrieval|HookPollStart$|Pooling$|AddRemovePartitions$)",
     "consume (assign, offsets)"),
    ("franz-go", r"^TestPing$", "metadata & connections"),
    # ---- our own scenario suites (pytest node ids, kafkajs file names)
    ("own", r"codec|compress", "compression codecs"),
    ("own", r"admin|topics_create|create_list|delete_unknown|replication_factor|existing_topic|metadata", "admin (topics, configs)"),
    ("own", r"kip848|\[consumer", "groups (KIP-848)"),
    ("own", r"group|commit", "groups (classic)"),
    ("own", r"txn|transaction", "transactions"),
    ("own", r"idempot|kill9|crash|ack_producer", "idempotent produce"),
    ("own", r"consume|offsets|round_trip|read_back", "consume (assign, offsets)"),
    ("own", r"produce", "produce"),
]


def area_of(suite: str, name: str, unit_tests: set[str]) -> str:
    if name in unit_tests:
        return "client-side unit tests"
    for rule_suite, pattern, area in AREA_RULES:
        if rule_suite == suite and re.search(pattern, name):
            return area
    return "other"


def load_results(suffix: str = "") -> dict[tuple[str, str], dict]:
    """results/<suite>-<target><suffix>.json by (suite, target); suffix "-3nodes" for three-node runs."""
    found = {}
    for suite in SUITES:
        for target in TARGETS:
            path = RESULTS_DIR / f"{suite}-{target}{suffix}.json"
            if path.exists():
                found[(suite, target)] = json.loads(path.read_text())
    return found


def unit_tests_of(doc: dict) -> set[str]:
    """franz-go marks which tests reach a broker; the rest are client-side unit tests."""
    if "needs_broker" not in doc:
        return set()
    broker = set(doc["needs_broker"])
    return {t["name"] for t in doc["tests"] if t["name"] not in broker}


def cell(counts: dict) -> str:
    if not counts:
        return "–"
    p, f, s = counts.get("pass", 0), counts.get("fail", 0), counts.get("skip", 0)
    if p + f + s == 0:
        return "–"
    text = f"{p}/{p + f}"
    if s:
        text += f" ({s} skip)"
    return text


def render_runs(w, results: dict[tuple[str, str], dict]) -> None:
    w("| suite | client | target | pass | fail | skip | date | duration | notes |")
    w("|---|---|---|---:|---:|---:|---|---:|---|")
    for (suite, target), doc in sorted(results.items(), key=lambda kv: (SUITES.index(kv[0][0]), TARGETS.index(kv[0][1]))):
        c = doc["counts"]
        notes = []
        if doc.get("runner_flags"):
            notes.append(f"`{doc['runner_flags']}`")
        if doc.get("runnel_binary"):
            notes.append(f"binary {doc['runnel_binary']}")
        if doc.get("broker_deaths"):
            notes.append(f"**broker died {doc['broker_deaths']}x**")
        w(f"| {suite} | {doc.get('client', suite)} {doc.get('client_version', '')} | {target} {doc.get('target_version', '')} | "
          f"{c['pass']} | {c['fail']} | {c['skip']} | {doc.get('date', '')} | {doc.get('duration_s', 0):.0f}s | {' '.join(notes)} |")


def render_areas(w, results: dict[tuple[str, str], dict]) -> None:
    cols = [(s, t) for s in SUITES for t in TARGETS if (s, t) in results]
    header = "| area | " + " | ".join(f"{s} {'runnel' if t == 'runnel' else 'Kafka'}" for s, t in cols) + " |"
    w(header)
    w("|---|" + "---:|" * len(cols))
    table: dict[str, dict[tuple[str, str], dict]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for (suite, target), doc in results.items():
        units = unit_tests_of(doc)
        for t in doc["tests"]:
            table[area_of(suite, t["name"], units)][(suite, target)][t["status"]] += 1
    for area in AREAS:
        if area not in table:
            continue
        w(f"| {area} | " + " | ".join(cell(table[area].get(col, {})) for col in cols) + " |")


def runnel_gaps(results: dict[tuple[str, str], dict]) -> tuple[list, list]:
    """Tests that pass on Kafka but fail on runnel without an allow-list entry (runnel bugs): those of the
    client suites, and those of our own scenario suites (which have no allow-list)."""
    gaps, own_gaps = [], []
    for suite in SUITES:
        kafka, runnel = results.get((suite, "kafka")), results.get((suite, "runnel"))
        if not kafka or not runnel:
            continue
        kafka_status = {t["name"]: t["status"] for t in kafka["tests"]}
        for t in runnel["tests"]:
            if t["status"] == "fail" and kafka_status.get(t["name"]) == "pass" and not t.get("allowlist"):
                row = (suite, t["name"], t.get("reason", ""))
                (own_gaps if suite == "own" else gaps).append(row)
    return gaps, own_gaps


def render_three_nodes(w, results: dict[tuple[str, str], dict]) -> None:
    """The same suites against three-node clusters of each target (compat-tests/harness/cluster.py)."""
    w("## Three nodes")
    w("")
    w("The client suites against a three-node cluster of each target (`compat-tests/harness/cluster.py`:")
    w("three runnel processes, or three Kafka 4.4 processes in KRaft combined mode; every node a broker and")
    w("a controller). Regenerate with `compat-tests/suites/run.sh --full --nodes 3`. Against three runnel")
    w("nodes the tests in `<suite>/allowlist-3nodes.txt` are skipped too (they need replication, which")
    w("\"Cluster II\" builds, or fail against three Kafka nodes).")
    w("")
    render_runs(w, results)
    w("")
    render_areas(w, results)
    w("")
    gaps, _ = runnel_gaps(results)
    if gaps:
        w("Runnel failures against three nodes not explained by an allow-list (each a runnel bug):")
        w("")
        w("| suite | test | failure |")
        w("|---|---|---|")
        for suite, name, reason in gaps:
            w(f"| {suite} | `{name}` | {reason.replace('|', '/')[:200]} |")
        w("")
    elif any(t == "runnel" for _, t in results):
        w("Every test that passes against three Kafka nodes and is not allow-listed passes against three")
        w("runnel nodes.")
        w("")
    flaky = [(suite, target, t["name"], t["reason"]) for (suite, target), doc in sorted(results.items())
             for t in doc["tests"] if t["status"] == "pass" and t.get("reason", "").startswith("flaky:")]
    if flaky:
        w("Passed only on retry (the runners retry a failing test once, alone):")
        w("")
        w("| suite | target | test | first failure |")
        w("|---|---|---|---|")
        for suite, target, name, reason in flaky:
            w(f"| {suite} | {target} | `{name}` | {reason.removeprefix('flaky: passed on retry after: ').replace('|', '/')[:200]} |")
        w("")
    for suite in SUITES:
        path = SUITES_DIR / suite / "allowlist-3nodes.txt"
        if not path.exists():
            continue
        allow = load_allowlist(path)
        kafka = results.get((suite, "kafka"))
        kafka_status = {t["name"]: t["status"] for t in kafka["tests"]} if kafka else {}
        w(f"### {suite}: three-node allow-list ({len(allow)} tests)")
        w("")
        if not allow:
            w("Empty: every test that passes against three Kafka nodes runs against three runnel nodes.")
            w("")
            continue
        w("| test | category | on 3 Kafka nodes | reason |")
        w("|---|---|---|---|")
        for name, e in sorted(allow.items(), key=lambda kv: (kv[1].category, kv[0])):
            w(f"| `{name}` | {e.category} | {kafka_status.get(name, '–')} | {e.reason.replace('|', '/')} |")
        w("")


def render(results: dict[tuple[str, str], dict], results_3nodes: dict[tuple[str, str], dict] | None = None) -> str:
    out: list[str] = []
    w = out.append
    w("# Compatibility matrix")
    w("")
    w("<!-- Generated by compat-tests/matrix.py from compat-tests/results/*.json and")
    w("     compat-tests/kafka/baseline-notes.md; do not edit by hand. -->")
    w("")
    w("Real clients' own test suites, run unchanged against runnel and against a single-node Apache Kafka")
    w("(KRaft, from the Maven jars) as the baseline. Regenerate with `compat-tests/suites/run.sh --full`")
    w("(runs everything, several minutes) or just `python compat-tests/matrix.py` (re-reads the results).")
    w("")
    w("## Runs")
    w("")
    render_runs(w, results)
    w("")
    w("## Feature areas")
    w("")
    w("Each cell is passed/run; skipped tests (allow-listed, or skipped by the suite itself: not applicable")
    w("to this broker version, needs an environment we do not set up) are counted apart.")
    w("")
    render_areas(w, results)
    w("")

    # Tests that pass on Kafka but fail on runnel without an allow-list entry: runnel bugs. Our own
    # scenario suites have no allow-list (a test there is written for a feature as it lands), so their
    # runnel failures are listed apart, with the area that explains most of them.
    gaps, own_gaps = runnel_gaps(results)
    w("## Runnel failures not explained by a missing feature")
    w("")
    if gaps:
        w("These pass against Kafka and are not allow-listed: each is a runnel bug.")
        w("")
        w("| suite | test | failure |")
        w("|---|---|---|")
        for suite, name, reason in gaps:
            w(f"| {suite} | `{name}` | {reason.replace('|', '/')[:200]} |")
    else:
        w("None in the client suites: every test that passes against Kafka and is not allow-listed passes")
        w("against runnel.")
    w("")
    if own_gaps:
        w("### Own scenario suites failing on runnel (pass on Kafka)")
        w("")
        w("| test | area | failure |")
        w("|---|---|---|")
        for suite, name, reason in own_gaps:
            w(f"| `{name}` | {area_of(suite, name, set())} | {reason.replace('|', '/')[:160]} |")
        w("")

    flaky = [(suite, target, t["name"], t["reason"]) for (suite, target), doc in sorted(results.items())
             for t in doc["tests"] if t["status"] == "pass" and t.get("reason", "").startswith("flaky:")]
    if flaky:
        w("## Passed only on retry")
        w("")
        w("The suite runners retry a failing test once, alone; these passed the second time.")
        w("")
        w("| suite | target | test | first failure |")
        w("|---|---|---|---|")
        for suite, target, name, reason in flaky:
            w(f"| {suite} | {target} | `{name}` | {reason.removeprefix('flaky: passed on retry after: ').replace('|', '/')[:200]} |")
        w("")

    w("## Allow-lists")
    w("")
    w("Tests not run against runnel. `needs:<feature>` names a feature runnel has not built yet (the entry is")
    w("deleted when it lands); `fails-on-kafka` also fails against single-node Kafka. Lists live in")
    w("`compat-tests/suites/<suite>/allowlist.txt`.")
    w("")
    for suite in SUITES:
        path = SUITES_DIR / suite / "allowlist.txt"
        if not path.exists():
            continue
        allow = load_allowlist(path)
        kafka = results.get((suite, "kafka"))
        kafka_status = {t["name"]: t["status"] for t in kafka["tests"]} if kafka else {}
        by_cat: dict[str, int] = defaultdict(int)
        for e in allow.values():
            by_cat[e.category] += 1
        w(f"### {suite} ({len(allow)} tests: " + ", ".join(f"{n} {c}" for c, n in sorted(by_cat.items())) + ")")
        w("")
        w("| test | category | on Kafka | reason |")
        w("|---|---|---|---|")
        for name, e in sorted(allow.items(), key=lambda kv: (kv[1].category, kv[0])):
            w(f"| `{name}` | {e.category} | {kafka_status.get(name, '–')} | {e.reason.replace('|', '/')} |")
        w("")
    if results_3nodes:
        render_three_nodes(w, results_3nodes)
    if BASELINE_NOTES_PATH.exists():
        w(BASELINE_NOTES_PATH.read_text().rstrip())
        w("")
    return "\n".join(out).rstrip() + "\n"


def from_junit(path: Path, target: str) -> Path:
    """pytest --junitxml -> results/own-<target>.json, same shape as the suites' results."""
    root = ET.parse(path).getroot()
    tests = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        status, reason = "pass", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, reason = "fail", (child.get("message") or "")[:300]
            elif child.tag == "skipped":
                status, reason = "skip", (child.get("message") or "")[:300]
        tests.append({"name": name, "status": status, "duration_s": round(float(case.get("time") or 0), 3),
                      **({"reason": reason} if reason else {})})
    counts = {s: sum(1 for t in tests if t["status"] == s) for s in ("pass", "fail", "skip")}
    doc = {"suite": "own", "client": "own scenario suites", "client_version": "", "target": target,
           "target_version": "", "mode": "full", "date": "", "duration_s": 0, "counts": counts,
           "tests": sorted(tests, key=lambda t: t["name"])}
    ts = next(root.iter("testsuite"), None)
    if ts is not None:
        doc["date"] = (ts.get("timestamp") or "")[:10]
        doc["duration_s"] = round(float(ts.get("time") or 0), 1)
    out = RESULTS_DIR / f"own-{target}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if docs/compatibility.md is stale")
    parser.add_argument("--from-junit", type=Path, help="convert a pytest --junitxml report to results/own-<target>.json")
    parser.add_argument("--target", choices=TARGETS, help="with --from-junit: which broker the report ran against")
    args = parser.parse_args()
    if args.from_junit:
        if not args.target:
            parser.error("--from-junit needs --target")
        print(f"wrote {from_junit(args.from_junit, args.target)}")
        return 0
    text = render(load_results(), load_results("-3nodes"))
    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run python compat-tests/matrix.py", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
