"""Makes kubeconform-ready standalone schemas from the kubernetes-validate wheel's "local" ones.

The wheel's schemas point at shared definitions by URL (`$id` https://kubernetes.io/api/...,
`$ref` /api/_definitions.json#/$defs/...), which kubeconform would try to download. Each schema
written here carries the definitions it reaches under its own `$defs`, refs rewritten to
`#/$defs/...`, and no `$id`: nothing is fetched.

    python3 standalone_schemas.py SOURCE_DIR DEST_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PREFIX = "/api/_definitions.json#/$defs/"
LOCAL = "#/$defs/"


def rewrite(node, reached: set[str]):
    """Rewrites refs in place, collecting the definition names they reach."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            # Kind schemas point into the shared file; the shared file points within itself.
            for prefix in (PREFIX, LOCAL):
                if ref.startswith(prefix):
                    name = ref[len(prefix):]
                    node["$ref"] = LOCAL + name
                    reached.add(name)
        for value in node.values():
            rewrite(value, reached)
    elif isinstance(node, list):
        for value in node:
            rewrite(value, reached)


def main(source: Path, dest: Path) -> None:
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.json")):
        if path.name.startswith("_"):
            continue
        schema = json.loads(path.read_text())
        schema.pop("$id", None)
        reached: set[str] = set()
        rewrite(schema, reached)
        defs: dict[str, object] = {}
        todo = list(reached)
        while todo:
            name = todo.pop()
            if name in defs:
                continue
            definition = json.loads(json.dumps(definitions[name]))
            found: set[str] = set()
            rewrite(definition, found)
            defs[name] = definition
            todo.extend(found - defs.keys())
        if defs:
            schema["$defs"] = defs
        (dest / path.name).write_text(json.dumps(schema))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
