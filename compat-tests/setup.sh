#!/usr/bin/env bash
# Installs everything the compat suite needs on a fresh machine, caching into compat-tests/.cache/
# (plus kafkajs/node_modules). Safe to rerun: each step is skipped while its stamp (a hash of the
# file that defines it) still matches, so a warm rerun takes about a second.
#
#   Apache Kafka 4.4 jars + CLI tools  <- Maven Central, via kafka/pom.xml
#   confluent-kafka + pytest venv      <- PyPI, via requirements.txt
#   kafkajs                            <- npm, via kafkajs/package-lock.json
#   kcat                               <- Debian
#   chromium + playwright-core         <- Debian, npm (console/package-lock.json)
#   crash/AckProducer.java             -> compiled against the kafka-clients jar above
#   java/TxnClient.java                -> likewise (a transactional producer driven on stdin)
#   apps/*.java                        -> compiled against the Kafka jars above (kafka-streams)
#   Kafka Connect 4.3.1 + FileStream   <- Maven Central, via apps/connect-pom.xml (own classpath)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="$HERE/.cache"
LIBS="$CACHE/kafka-libs"
VENV="$CACHE/venv"
CLASSES="$CACHE/java-classes"
mkdir -p "$CACHE"

log() { echo "[setup] $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "need $* but apt-get is missing; install it by hand"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    if [[ $APT_UPDATED -eq 0 ]]; then
        $sudo apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# ---- tools from Debian, only when missing ------------------------------------------------------------
command -v kcat >/dev/null || apt_install kcat
# crates/broker/tests/fsync_mode.rs checks fsync-before-ack ordering under strace.
command -v strace >/dev/null || apt_install strace
command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven
command -v node >/dev/null || apt_install nodejs npm
# console/console.test.js drives the admin listener's web console in headless Chromium.
command -v chromium >/dev/null || apt_install chromium
# The SSL tests make their certificates with it (harness/certs.py).
command -v openssl >/dev/null || apt_install openssl

PYTHON_BASE="${COMPAT_PYTHON_BASE:-}"
if [[ -z "$PYTHON_BASE" ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null; then PYTHON_BASE="$candidate"; break; fi
    done
fi
[[ -n "$PYTHON_BASE" ]] || die "no python3 found"

# ---- Apache Kafka jars (broker, CLI tools, kafka-clients) --------------------------------------------
# The class names launched by this suite, the client suites' kafka-*.sh shims
# (suites/librdkafka/run.py) and bench/; versions move classes (4.4 moved kafka.admin.ConfigCommand
# to org.apache.kafka.tools.ConfigCommand), so a download that lacks one fails here.
KAFKA_MAIN_CLASSES=(
    kafka.Kafka
    kafka.tools.StorageTool
    org.apache.kafka.tools.TopicCommand
    org.apache.kafka.tools.ConsoleProducer
    org.apache.kafka.tools.consumer.ConsoleConsumer
    org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
    org.apache.kafka.tools.GetOffsetShell
    org.apache.kafka.tools.AclCommand
    org.apache.kafka.tools.ConfigCommand
    org.apache.kafka.tools.ProducerPerformance
    org.apache.kafka.tools.ConsumerPerformance
    org.apache.kafka.metadata.authorizer.StandardAuthorizer
    org.apache.kafka.clients.producer.KafkaProducer
    org.apache.kafka.streams.KafkaStreams
    org.apache.kafka.tools.TransactionsCommand
)
# Copies the runtime jars of Maven project $1 into $2 (through $2.tmp, so a failed download leaves
# the old set), failing unless every main class after $3 is in them. Skipped while $2's stamp (the
# pom's hash) matches; returns 1 when it downloaded (the caller may reset what depends on the jars).
fetch_maven_libs() {
    local pom="$1" dest="$2"
    shift 2
    local want
    want="$(hash_of "$pom")"
    stamp_ok "$dest/.stamp" "$want" && return 0
    log "downloading the jars of $(basename "$(dirname "$pom")")/$(basename "$pom") (Maven Central)"
    rm -rf "$dest.tmp"
    mvn -q -B -f "$pom" dependency:copy-dependencies \
        -DoutputDirectory="$dest.tmp" -DincludeScope=runtime >"$CACHE/mvn.log" 2>&1 \
        || { cat "$CACHE/mvn.log" >&2; die "maven download for $pom failed"; }
    # Called as a condition, so `set -e` does not apply in here: every failure dies explicitly.
    "$PYTHON_BASE" - "$dest.tmp" "$@" <<'EOF' || die "the jars of $pom lack a main class"
import glob, sys, zipfile
libs, wanted = sys.argv[1], sys.argv[2:]
found = set()
for jar in glob.glob(f"{libs}/*.jar"):
    names = set(zipfile.ZipFile(jar).namelist())
    found |= {c for c in wanted if c.replace(".", "/") + ".class" in names}
missing = sorted(set(wanted) - found)
if missing:
    sys.exit(f"missing main classes in {libs}: {missing}")
EOF
    rm -rf "$dest" && mv "$dest.tmp" "$dest" && echo "$want" >"$dest/.stamp" || die "could not install $dest"
    return 1
}
if ! fetch_maven_libs "$HERE/kafka/pom.xml" "$LIBS" "${KAFKA_MAIN_CLASSES[@]}"; then
    # The KRaft storage template (harness/broker.py) is formatted by these jars; re-format with new ones.
    rm -rf "$CACHE"/kafka-storage-template-*
fi

# ---- Python venv: confluent-kafka (bundles librdkafka) + pytest --------------------------------------
want="$(hash_of "$HERE/requirements.txt"; "$PYTHON_BASE" --version)"
if ! stamp_ok "$VENV/.stamp" "$want"; then
    log "creating venv with $PYTHON_BASE from requirements.txt"
    rm -rf "$VENV"
    "$PYTHON_BASE" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
    "$VENV/bin/python" -c "import confluent_kafka, pytest" || die "venv import check failed"
    echo "$want" >"$VENV/.stamp"
fi

# ---- kafkajs (npm ci from the committed lock file) ---------------------------------------------------
want="$(hash_of "$HERE/kafkajs/package-lock.json")"
if ! stamp_ok "$HERE/kafkajs/node_modules/.compat-stamp" "$want"; then
    log "npm ci (kafkajs)"
    (cd "$HERE/kafkajs" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" >"$HERE/kafkajs/node_modules/.compat-stamp"
fi

# ---- playwright-core for the console test (npm ci from the committed lock file; it drives Debian's
# chromium, and downloads no browser) ----------------------------------------------------------------
want="$(hash_of "$HERE/console/package-lock.json")"
if ! stamp_ok "$HERE/console/node_modules/.compat-stamp" "$want"; then
    log "npm ci (console)"
    (cd "$HERE/console" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" >"$HERE/console/node_modules/.compat-stamp"
fi

# ---- the tests' Java clients (crash/AckProducer.java, java/TxnClient.java) ----------------------------
CLIENTS_JAR="$(ls "$LIBS"/kafka-clients-*.jar | head -n1)"
want="$(hash_of "$HERE/crash/AckProducer.java" "$HERE/java/TxnClient.java"; echo "$CLIENTS_JAR")"
if ! stamp_ok "$CLASSES/.stamp" "$want"; then
    log "javac crash/AckProducer.java java/TxnClient.java"
    rm -rf "$CLASSES"
    mkdir -p "$CLASSES"
    javac -nowarn -d "$CLASSES" -cp "$CLIENTS_JAR" "$HERE/crash/AckProducer.java" "$HERE/java/TxnClient.java"
    echo "$want" >"$CLASSES/.stamp"
fi

# ---- Kafka Connect (apps/connect-pom.xml), on a classpath of its own ----------------------------------
fetch_maven_libs "$HERE/apps/connect-pom.xml" "$CACHE/connect-libs" \
    org.apache.kafka.connect.cli.ConnectStandalone org.apache.kafka.connect.file.FileStreamSourceConnector \
    || true

# ---- the apps users bring (apps/*.java: a Kafka Streams application) ---------------------------------
APP_CLASSES="$CACHE/app-classes"
want="$(hash_of "$HERE"/apps/*.java; ls "$LIBS")"
if ! stamp_ok "$APP_CLASSES/.stamp" "$want"; then
    log "javac apps/*.java"
    rm -rf "$APP_CLASSES"
    mkdir -p "$APP_CLASSES"
    javac -nowarn -d "$APP_CLASSES" -cp "$LIBS/*" "$HERE"/apps/*.java
    echo "$want" >"$APP_CLASSES/.stamp"
fi

versions="$("$VENV/bin/python" -c 'from importlib.metadata import version; import confluent_kafka as c; print("confluent-kafka", version("confluent-kafka"), "(librdkafka", c.libversion()[0] + ")")')"
log "ok: $(basename "$CLIENTS_JAR" .jar), $versions, kafkajs $(node -p 'require(process.argv[1]).version' "$HERE/kafkajs/node_modules/kafkajs/package.json"), kcat $(kcat -V 2>&1 | grep -o 'Version [^ ]*' | head -n1 | cut -d' ' -f2)"
