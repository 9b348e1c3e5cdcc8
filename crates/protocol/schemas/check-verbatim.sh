#!/bin/sh
# Checks that every *.json here is byte-identical to the same file in Kafka's kafka-clients
# sources jar (see README.md for the coordinates). Needs unzip; fetch the jar first with
#   mvn -q dependency:get -Dartifact=org.apache.kafka:kafka-clients:4.1.2:jar:sources
# and kafka-4.4/*.json against kafka-clients-4.4.0.jar (binary jar; the schemas are resources).
# Usage: check-verbatim.sh [path/to/kafka-clients-4.1.2-sources.jar] [path/to/kafka-clients-4.4.0.jar]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
jar=${1:-$HOME/.m2/repository/org/apache/kafka/kafka-clients/4.1.2/kafka-clients-4.1.2-sources.jar}
jar44=${2:-$HOME/.m2/repository/org/apache/kafka/kafka-clients/4.4.0/kafka-clients-4.4.0.jar}
expected_sha1_44=1d2ebc2a3f0ecce03faa288c42d4e8f998aac47d
expected_sha1=46ef70dabef103fcb60b6f61460954349e1d7590
actual_sha1=$(sha1sum "$jar" | cut -d' ' -f1)
if [ "$actual_sha1" != "$expected_sha1" ]; then
    echo "$jar: sha1 $actual_sha1, expected $expected_sha1" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unzip -q "$jar" 'common/message/*.json' -d "$tmp"
status=0
count=0
for file in "$here"/*.json; do
    name=$(basename "$file")
    count=$((count + 1))
    if ! cmp -s "$file" "$tmp/common/message/$name"; then
        echo "differs from the jar: $name" >&2
        status=1
    fi
done
actual_sha1_44=$(sha1sum "$jar44" | cut -d' ' -f1)
if [ "$actual_sha1_44" != "$expected_sha1_44" ]; then
    echo "$jar44: sha1 $actual_sha1_44, expected $expected_sha1_44" >&2
    exit 1
fi
mkdir "$tmp/44"
unzip -q "$jar44" 'common/message/*.json' -d "$tmp/44"
for file in "$here"/kafka-4.4/*.json; do
    name=$(basename "$file")
    count=$((count + 1))
    if ! cmp -s "$file" "$tmp/44/common/message/$name"; then
        echo "differs from the 4.4.0 jar: $name" >&2
        status=1
    fi
done
echo "$count files checked against $jar and $jar44"
exit $status
