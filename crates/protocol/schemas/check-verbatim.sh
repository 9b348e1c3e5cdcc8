#!/bin/sh
# Checks that every *.json here is byte-identical to the same file in Kafka's kafka-clients
# sources jar (see README.md for the coordinates). Needs unzip; fetch the jar first with
#   mvn -q dependency:get -Dartifact=org.apache.kafka:kafka-clients:4.1.2:jar:sources
# Usage: check-verbatim.sh [path/to/kafka-clients-4.1.2-sources.jar]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
jar=${1:-$HOME/.m2/repository/org/apache/kafka/kafka-clients/4.1.2/kafka-clients-4.1.2-sources.jar}
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
echo "$count files checked against $jar"
exit $status
