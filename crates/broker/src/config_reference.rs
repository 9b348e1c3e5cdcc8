//! The configuration reference (`docs/config-reference.md`), generated from the code that reads
//! configs so that the page cannot drift from what the broker does.
//!
//! Its sources are the lists `config::from_raw` checks keys against (acted on, runnel's own,
//! SSL), the topic-config table with its acted-on flags, and Kafka's own catalogue for defaults,
//! types and documentation. runnel's own keys carry their documentation here, and their defaults
//! are read off `BrokerConfig::default()`, never typed twice. A test regenerates the page and fails
//! on any difference; `RUNNEL_BLESS=1 cargo test -p runnel-broker --lib config_reference`
//! rewrites it.

use std::fmt::Write;

use runnel_cluster::kafka_configs::{kafka_configs, ConfigType, DynamicMode};
use runnel_cluster::topic_config::topic_configs;

use crate::config::{BrokerConfig, ACTED_ON};

/// One of runnel's own keys (no Kafka equivalent), documented where it is listed.
pub struct RunnelKey {
    pub name: &'static str,
    /// Its default, read off the default config.
    pub default: fn(&BrokerConfig) -> String,
    pub doc: &'static str,
}

/// runnel's own keys. Every entry of `config::RUNNEL_KEYS` must appear here (a test checks).
pub const RUNNEL_KEY_DOCS: &[RunnelKey] = &[
    RunnelKey {
        name: "runnel.metadata.log.records.max",
        default: |c| c.metadata_log_records_max.to_string(),
        doc: "records the metadata log may hold; a write beyond it is refused until a snapshot empties the log",
    },
    RunnelKey {
        name: "runnel.fetch.waiters.max",
        default: |c| c.fetch_waiters_max.to_string(),
        doc: "long-polling fetches parked at once, broker-wide; beyond it a fetch is answered at once",
    },
    RunnelKey {
        name: "runnel.fetch.zero.copy",
        default: |c| c.fetch_zero_copy.to_string(),
        doc: "send fetched records from the segment files with sendfile(2); false reads them into memory first (SSL listeners always do)",
    },
    RunnelKey {
        name: "runnel.log.format",
        default: |c| {
            match c.log_format {
                crate::logging::LogFormat::Text => "text",
                crate::logging::LogFormat::Json => "json",
            }
            .to_owned()
        },
        doc: "`text` lines (colour only on a terminal) or `json` objects, one per line, for log shippers; also `--log-format`",
    },
    RunnelKey {
        name: crate::admin::settings::LISTENER_KEY,
        default: |c| c.admin.listener.clone().unwrap_or_default(),
        doc: "`HOST:PORT` of the admin HTTP listener (`/metrics`, `/health`, `/ready`; also `--admin-listen`); an empty value turns it off. The default address only warns when taken; a configured one that cannot be bound stops startup",
    },
    RunnelKey {
        name: crate::admin::settings::CONNECTIONS_MAX_KEY,
        default: |c| c.admin.connections_max.to_string(),
        doc: "admin HTTP connections served at once; more wait in the listen backlog",
    },
    RunnelKey {
        name: crate::tls::settings::HANDSHAKE_TIMEOUT_KEY,
        default: |c| c.ssl.handshake_timeout_ms.to_string(),
        doc: "how long a connection on an SSL listener may take to finish its TLS handshake before it is closed",
    },
];

/// The whole page.
pub fn markdown() -> String {
    let catalogue = kafka_configs();
    let defaults = BrokerConfig::default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Configuration reference\n\n\
         Generated from the code (`crates/broker/src/config_reference.rs`); a test fails when this page \
         and the broker disagree. Kafka's defaults, types and documentation come from Apache Kafka {}'s own \
         config definitions. For how to set configs and what each does in runnel, see \
         [configuration.md](configuration.md).\n",
        catalogue.kafka_version
    );

    let _ = writeln!(
        out,
        "## Broker configs runnel acts on\n\n\
         | key | Kafka default | type | dynamic in Kafka | Kafka's documentation (first sentence) |\n\
         |---|---|---|---|---|"
    );
    let mut acted: Vec<&str> = ACTED_ON.to_vec();
    acted.extend(crate::metadata::quorum_config::KEYS);
    acted.sort_unstable();
    for key in acted {
        match catalogue.broker(key) {
            Some(def) => {
                let _ = writeln!(
                    out,
                    "| `{key}` | {} | {} | {} | {} |",
                    cell_default(def.def.default.as_deref()),
                    type_name(def.def.config_type),
                    dynamic_name(def.dynamic),
                    first_sentence(def.def.documentation.as_deref()),
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| `{key}` | — | — | — | internal in Kafka (not in its documented catalogue) |"
                );
            }
        }
    }

    let _ = writeln!(
        out,
        "\n## runnel's own configs\n\n\
         Limits and switches with no Kafka equivalent, under a `runnel.` prefix so they never collide \
         with a future Kafka key.\n\n\
         | key | default | meaning |\n|---|---|---|"
    );
    for key in RUNNEL_KEY_DOCS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} |",
            key.name,
            (key.default)(&defaults),
            key.doc
        );
    }

    let _ = writeln!(
        out,
        "\n## SSL listener configs\n\n\
         Read for listeners whose security protocol is SSL (Kafka's names and meanings):\n"
    );
    let ssl: Vec<String> = crate::tls::settings::KEYS
        .iter()
        .filter(|k| !k.starts_with("runnel."))
        .map(|k| format!("`{k}`"))
        .collect();
    let _ = writeln!(out, "{}", ssl.join(", "));

    let _ = writeln!(
        out,
        "\n## Topic configs\n\n\
         Every topic config Kafka has is accepted, validated and reported by DescribeConfigs; \"acted on\" \
         says whether runnel behaves differently when it changes. The broker key in the second column \
         sets the default for every topic.\n\n\
         | topic config | broker default key | Kafka default | type | acted on |\n|---|---|---|---|---|"
    );
    for def in topic_configs() {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            def.name,
            def.broker_synonym
                .map_or_else(|| "—".to_owned(), |s| format!("`{s}`")),
            cell_default(Some(def.default)),
            type_name(def.config_type),
            if def.acted_on {
                "yes"
            } else {
                "no: reported only"
            },
        );
    }

    let synonyms: Vec<&str> = topic_configs()
        .iter()
        .filter_map(|d| d.broker_synonym)
        .collect();
    let mut ignored: Vec<&str> = catalogue
        .broker
        .iter()
        .map(|b| b.def.name.as_str())
        .filter(|k| !ACTED_ON.contains(k) && !synonyms.contains(k))
        .filter(|k| !crate::tls::settings::KEYS.contains(k))
        .filter(|k| !crate::metadata::quorum_config::KEYS.contains(k))
        .collect();
    ignored.sort_unstable();
    let _ = writeln!(
        out,
        "\n## Kafka broker configs accepted and ignored\n\n\
         A `server.properties` translates as is: these {} keys are accepted with a warning that names \
         each one, and change nothing. Any other key that is neither Kafka's nor runnel's stops the \
         broker at startup with an error naming it.\n",
        ignored.len()
    );
    let listed: Vec<String> = ignored.iter().map(|k| format!("`{k}`")).collect();
    let _ = writeln!(out, "{}", listed.join(", "));
    out
}

fn cell_default(default: Option<&str>) -> String {
    match default {
        None => "none".to_owned(),
        Some("") => "\"\"".to_owned(),
        Some(d) => format!("`{}`", d.replace('|', "\\|")),
    }
}

fn type_name(t: ConfigType) -> &'static str {
    match t {
        ConfigType::Boolean => "boolean",
        ConfigType::String => "string",
        ConfigType::Int => "int",
        ConfigType::Short => "short",
        ConfigType::Long => "long",
        ConfigType::Double => "double",
        ConfigType::List => "list",
        ConfigType::Class => "class",
        ConfigType::Password => "password",
    }
}

fn dynamic_name(mode: DynamicMode) -> &'static str {
    match mode {
        DynamicMode::ReadOnly => "no",
        DynamicMode::PerBroker => "per broker",
        DynamicMode::ClusterWide => "cluster-wide",
    }
}

/// The first sentence of Kafka's documentation, on one line, safe inside a table cell.
fn first_sentence(doc: Option<&str>) -> String {
    let Some(doc) = doc else {
        return String::new();
    };
    let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let end = flat
        .match_indices(". ")
        .map(|(i, _)| i + 1)
        .next()
        .unwrap_or(flat.len());
    flat[..end].replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RUNNEL_KEYS;

    const PAGE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/config-reference.md"
    );

    #[test]
    fn every_runnel_key_is_documented_once() {
        // Goal: a new runnel.* key cannot ship without a line in the reference.
        let documented: Vec<&str> = RUNNEL_KEY_DOCS.iter().map(|k| k.name).collect();
        for key in RUNNEL_KEYS {
            assert_eq!(
                documented.iter().filter(|d| *d == key).count(),
                1,
                "{key} needs exactly one entry in RUNNEL_KEY_DOCS"
            );
        }
        for key in &documented {
            assert!(
                RUNNEL_KEYS.contains(key),
                "{key} is documented but the broker does not read it"
            );
        }
    }

    #[test]
    fn the_reference_page_matches_the_code() {
        // Goal: docs/config-reference.md says what the broker does; regenerate it with
        // RUNNEL_BLESS=1 when a change to the code is meant.
        let generated = markdown();
        if std::env::var_os("RUNNEL_BLESS").is_some() {
            std::fs::write(PAGE, &generated).expect("write the reference page");
            return;
        }
        let on_disk = std::fs::read_to_string(PAGE).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/config-reference.md is out of date: run \
             RUNNEL_BLESS=1 cargo test -p runnel-broker --lib config_reference"
        );
    }

    #[test]
    fn documented_defaults_are_what_the_parser_produces() {
        // Goal: the defaults the page shows are the ones a config without the key gets, and
        // setting a key to its shown default is accepted.
        let defaults = BrokerConfig::default();
        for key in RUNNEL_KEY_DOCS {
            let shown = (key.default)(&defaults);
            let raw = [(key.name.to_owned(), shown.clone())].into_iter().collect();
            let (parsed, _) = crate::config::from_raw(raw)
                .unwrap_or_else(|e| panic!("{} = {shown} refused: {e:#}", key.name));
            assert_eq!((key.default)(&parsed), shown, "{}", key.name);
        }
    }
}
