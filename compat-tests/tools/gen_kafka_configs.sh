#!/usr/bin/env bash
# Regenerates crates/cluster/src/kafka_configs.json from the Apache Kafka jars of the compat cache
# (compat-tests/setup.sh puts them in .cache/kafka-libs; KAFKA_LIBS overrides the directory).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIBS="${KAFKA_LIBS:-$HERE/../.cache/kafka-libs}"
OUT="$HERE/../../crates/cluster/src/kafka_configs.json"
[[ -d "$LIBS" ]] || { echo "no Kafka jars in $LIBS; run compat-tests/setup.sh" >&2; exit 1; }
java -cp "$LIBS/*" "$HERE/DumpKafkaConfigs.java" > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT" >&2
