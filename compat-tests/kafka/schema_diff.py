#!/usr/bin/env python3
"""What changed on the wire between two Kafka releases, read from their kafka-clients jars.

The jar carries the message schemas (`common/message/*Request.json`, `*Response.json`), so diffing two
jars lists, per API key, the version ranges that moved (and an unstable latest version becoming
stable), plus each field added, removed or re-versioned. This is how the baseline notes in
docs/compatibility.md (compat-tests/kafka/baseline-notes.md) were checked when the baseline moved.

  compat-tests/kafka/schema_diff.py OLD.jar NEW.jar            # version ranges per API key
  compat-tests/kafka/schema_diff.py --fields OLD.jar NEW.jar   # and the field-level differences

Jars: `mvn -q dependency:copy -Dartifact=org.apache.kafka:kafka-clients:4.1.2 -DoutputDirectory=DIR`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path

FIELD_KEYS = ("type", "versions", "nullableVersions", "tag", "taggedVersions", "default")


def load_schemas(jar: Path) -> dict[str, dict]:
    """Every message schema in the jar by file stem, comments stripped (Kafka's JSON has // lines)."""
    out = {}
    with zipfile.ZipFile(jar) as z:
        for name in z.namelist():
            if name.startswith("common/message/") and name.endswith(".json"):
                text = re.sub(r"^\s*//.*$", "", z.read(name).decode(), flags=re.M)
                out[Path(name).stem] = json.loads(text)
    return out


def flatten(fields: list | None, prefix: str = "") -> dict[str, dict]:
    out = {}
    for f in fields or []:
        path = prefix + f["name"]
        out[path] = {k: f[k] for k in FIELD_KEYS if k in f}
        out.update(flatten(f.get("fields"), path + "."))
    return out


def all_fields(schema: dict) -> dict[str, dict]:
    out = flatten(schema.get("fields"))
    for struct in schema.get("commonStructs") or []:
        out.update(flatten(struct.get("fields"), f"({struct['name']})."))
    return out


def describe(schema: dict) -> str:
    text = schema["validVersions"]
    if schema.get("latestVersionUnstable"):
        text += " (latest unstable)"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--fields", action="store_true", help="also list field-level differences")
    args = parser.parse_args()
    old, new = load_schemas(args.old), load_schemas(args.new)

    def requests(schemas: dict[str, dict]) -> dict[int, tuple[str, dict]]:
        return {s["apiKey"]: (stem, s) for stem, s in schemas.items() if s.get("type") == "request"}

    old_req, new_req = requests(old), requests(new)
    for key in sorted(set(old_req) | set(new_req)):
        if key not in old_req:
            stem, s = new_req[key]
            print(f"{key:3} {stem.removesuffix('Request'):40} new: {describe(s)}")
            continue
        if key not in new_req:
            print(f"{key:3} {old_req[key][0].removesuffix('Request'):40} removed")
            continue
        (stem, a), (_, b) = old_req[key], new_req[key]
        if describe(a) != describe(b):
            print(f"{key:3} {stem.removesuffix('Request'):40} {describe(a)} -> {describe(b)}")

    if args.fields:
        for stem in sorted(set(old) | set(new)):
            a, b = old.get(stem), new.get(stem)
            if a is None or b is None:
                continue
            lines = [f"  {k}: {a.get(k)} -> {b.get(k)}"
                     for k in ("validVersions", "flexibleVersions", "latestVersionUnstable") if a.get(k) != b.get(k)]
            fa, fb = all_fields(a), all_fields(b)
            lines += [f"  {p}: {fa.get(p)} -> {fb.get(p)}" for p in sorted(set(fa) | set(fb)) if fa.get(p) != fb.get(p)]
            if lines:
                print(f"== {stem}")
                print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
