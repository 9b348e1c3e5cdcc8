"""How the apps' Java programs are launched (classes and jars fetched and compiled by setup.sh)."""

from __future__ import annotations

from broker import CACHE_DIR, KAFKA_CONF_DIR, java_classpath

APP_CLASSES = CACHE_DIR / "app-classes"
# Kafka Connect 4.3.1 with the FileStream connectors (apps/connect-pom.xml).
CONNECT_CLASSPATH = f"{CACHE_DIR / 'connect-libs'}/*"


def app_argv(main_class: str, *args: str, heap: str = "512M", classpath: str | None = None) -> list[str]:
    """`java` running `main_class` from the apps' classes over the 4.4 jars (or `classpath`)."""
    return [
        "java", f"-Xmx{heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        f"-Dlog4j.configuration=file:{KAFKA_CONF_DIR / 'log4j-tools.properties'}",
        "-cp", classpath or f"{APP_CLASSES}:{java_classpath()}", main_class, *args,
    ]
