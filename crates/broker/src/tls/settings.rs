//! The `ssl.*` broker keys an SSL listener uses, checked the way Kafka's
//! `DefaultSslEngineFactory` checks them, with PEM (KIP-651) as the one keystore and truststore
//! type runnel reads. Nothing is loaded here: `tls::server_config` reads the files at startup.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

/// The keys this module reads; `config` accepts them without a "not acted on" warning.
pub const KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.principal.mapping.rules",
    HANDSHAKE_TIMEOUT_KEY,
];

/// runnel's own key for the bound on a TLS handshake.
pub const HANDSHAKE_TIMEOUT_KEY: &str = "runnel.ssl.handshake.timeout.ms";

/// How long a new connection on an SSL listener may take to complete its handshake before it
/// is closed. Kafka has no such key (its handshakes wait for `connections.max.idle.ms`, ten
/// minutes by default); a client that connects and says nothing, or garbage, must not hold a
/// `max.connections` slot that long. Ten seconds is far beyond a real handshake on a loaded
/// broker.
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Kafka's default keystore and truststore type, which runnel cannot read.
const KAFKA_DEFAULT_STORE_TYPE: &str = "JKS";

/// Where the broker's certificate chain and private key come from (`ssl.keystore.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStore {
    /// `ssl.keystore.location`: one PEM file with the private key and the certificate chain.
    File(PathBuf),
    /// `ssl.keystore.certificate.chain` and `ssl.keystore.key`: PEM text in the config.
    Inline {
        certificate_chain: String,
        key: String,
    },
}

/// Where the CA certificates that client certificates must chain to come from
/// (`ssl.truststore.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustStore {
    /// `ssl.truststore.location`: a PEM file of certificates.
    File(PathBuf),
    /// `ssl.truststore.certificates`: PEM text in the config.
    Inline(String),
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for; the principal is `User:ANONYMOUS`.
    None,
    /// Asked for; a client without one is `User:ANONYMOUS`, one with a bad one is refused.
    Requested,
    /// A client without a valid certificate is refused.
    Required,
}

/// A TLS version of `ssl.enabled.protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// The settings of SSL listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslConfig {
    /// Required by an SSL listener; checked in `config` once the listeners are known.
    pub keystore: Option<KeyStore>,
    pub truststore: Option<TrustStore>,
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols` (Kafka's default: TLSv1.2,TLSv1.3).
    pub enabled_protocols: Vec<TlsVersion>,
    /// `runnel.ssl.handshake.timeout.ms`.
    pub handshake_timeout_ms: u64,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            keystore: None,
            truststore: None,
            client_auth: ClientAuth::None,
            enabled_protocols: vec![TlsVersion::V1_2, TlsVersion::V1_3],
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// Reads the `ssl.*` keys through `get` (trimmed values of the merged config).
pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<SslConfig> {
    let mut c = SslConfig::default();
    let present = |k: &str| get(k).filter(|v| !v.is_empty());

    if present("ssl.key.password").is_some() {
        bail!(
            "config key 'ssl.key.password': runnel does not read encrypted private keys; give \
             the key unencrypted in PKCS#8 PEM ('-----BEGIN PRIVATE KEY-----', e.g. \
             `openssl pkcs8 -topk8 -nocrypt -in encrypted.pem`) and protect the file by its \
             permissions"
        );
    }
    let location = present("ssl.keystore.location");
    let chain = present("ssl.keystore.certificate.chain");
    let key = present("ssl.keystore.key");
    if location.is_some() || chain.is_some() || key.is_some() {
        require_pem("ssl.keystore.type", get("ssl.keystore.type"))?;
        if present("ssl.keystore.password").is_some() {
            bail!(
                "config key 'ssl.keystore.password' cannot be given with a PEM keystore (as in \
                 Kafka); the PEM private key must be unencrypted"
            );
        }
        c.keystore = Some(match (location, chain, key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => bail!(
                "give either 'ssl.keystore.location' or 'ssl.keystore.certificate.chain' with \
                 'ssl.keystore.key', not both"
            ),
            (Some(path), None, None) => KeyStore::File(PathBuf::from(path)),
            (None, Some(certificate_chain), Some(key)) => KeyStore::Inline {
                certificate_chain,
                key,
            },
            (None, Some(_), None) => bail!(
                "config key 'ssl.keystore.certificate.chain' needs 'ssl.keystore.key' (the \
                 private key, PEM)"
            ),
            (None, None, Some(_)) => bail!(
                "config key 'ssl.keystore.key' needs 'ssl.keystore.certificate.chain' (the \
                 certificate chain, PEM)"
            ),
            (None, None, None) => unreachable!("one of them is present in this branch"),
        });
    }

    let location = present("ssl.truststore.location");
    let certificates = present("ssl.truststore.certificates");
    if location.is_some() || certificates.is_some() {
        require_pem("ssl.truststore.type", get("ssl.truststore.type"))?;
        if present("ssl.truststore.password").is_some() {
            bail!("config key 'ssl.truststore.password' cannot be given with a PEM truststore (as in Kafka)");
        }
        c.truststore = Some(match (location, certificates) {
            (Some(_), Some(_)) => bail!(
                "give either 'ssl.truststore.location' or 'ssl.truststore.certificates', not both"
            ),
            (Some(path), None) => TrustStore::File(PathBuf::from(path)),
            (None, Some(pem)) => TrustStore::Inline(pem),
            (None, None) => unreachable!("one of them is present in this branch"),
        });
    }

    if let Some(v) = get("ssl.client.auth") {
        c.client_auth = match v.to_ascii_lowercase().as_str() {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            _ => {
                bail!("config key 'ssl.client.auth': '{v}' is not one of none, requested, required")
            }
        };
    }
    if c.client_auth != ClientAuth::None && c.truststore.is_none() {
        bail!(
            "config key 'ssl.client.auth' is '{}': client certificates are checked against \
             the CA certificates of 'ssl.truststore.location' or 'ssl.truststore.certificates' \
             (with ssl.truststore.type=PEM), and neither is set",
            if c.client_auth == ClientAuth::Required {
                "required"
            } else {
                "requested"
            }
        );
    }

    if let Some(v) = get("ssl.enabled.protocols") {
        let mut versions = Vec::new();
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            versions.push(match name {
                "TLSv1.2" => TlsVersion::V1_2,
                "TLSv1.3" => TlsVersion::V1_3,
                other => bail!(
                    "config key 'ssl.enabled.protocols': '{other}' is not offered; runnel \
                     speaks TLSv1.2 and TLSv1.3"
                ),
            });
        }
        versions.sort();
        versions.dedup();
        if versions.is_empty() {
            bail!("config key 'ssl.enabled.protocols' lists no protocol");
        }
        c.enabled_protocols = versions;
    }

    if let Some(v) = get("ssl.principal.mapping.rules") {
        if v != "DEFAULT" {
            bail!(
                "config key 'ssl.principal.mapping.rules': runnel applies only DEFAULT (the \
                 principal is the certificate's subject, e.g. User:CN=alice,OU=eng); got '{v}'"
            );
        }
    }

    if let Some(v) = get(HANDSHAKE_TIMEOUT_KEY) {
        c.handshake_timeout_ms = v.parse().ok().filter(|ms| *ms >= 1).ok_or_else(|| {
            anyhow!(
                "config key '{HANDSHAKE_TIMEOUT_KEY}': '{v}' is not a number of milliseconds >= 1"
            )
        })?;
    }
    Ok(c)
}

/// A keystore or truststore must be PEM; Kafka's default type, JKS, applies when none is given.
fn require_pem(key: &str, value: Option<String>) -> Result<()> {
    let value = value.unwrap_or_else(|| KAFKA_DEFAULT_STORE_TYPE.to_owned());
    if value.eq_ignore_ascii_case("PEM") {
        return Ok(());
    }
    bail!(
        "config key '{key}' is {value}{}: runnel reads only PEM stores (KIP-651); set {key}=PEM \
         and give the certificates and an unencrypted PKCS#8 key in PEM (a PKCS12 or JKS store \
         converts with `openssl pkcs12 -in store.p12 -nodes`, after `keytool -importkeystore \
         -deststoretype PKCS12` for JKS)",
        if value == KAFKA_DEFAULT_STORE_TYPE {
            " (Kafka's default)"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parse_map(pairs: &[(&str, &str)]) -> Result<SslConfig> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(|k| map.get(k).cloned())
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        format!("{:#}", parse_map(pairs).expect_err("an error"))
    }

    // The two PEM keystore forms of KIP-651, a PEM truststore and client auth are read.
    #[test]
    fn pem_forms() {
        let c = parse_map(&[
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.location", "/ca.pem"),
            ("ssl.client.auth", "required"),
            ("ssl.enabled.protocols", "TLSv1.3"),
        ])
        .expect("parse");
        assert_eq!(c.keystore, Some(KeyStore::File("/k.pem".into())));
        assert_eq!(c.truststore, Some(TrustStore::File("/ca.pem".into())));
        assert_eq!(c.client_auth, ClientAuth::Required);
        assert_eq!(c.enabled_protocols, vec![TlsVersion::V1_3]);

        let c = parse_map(&[
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.certificate.chain", "CHAIN"),
            ("ssl.keystore.key", "KEY"),
        ])
        .expect("parse");
        assert_eq!(
            c.keystore,
            Some(KeyStore::Inline {
                certificate_chain: "CHAIN".into(),
                key: "KEY".into()
            })
        );
        assert_eq!(c.client_auth, ClientAuth::None);
        assert_eq!(
            c.enabled_protocols,
            vec![TlsVersion::V1_2, TlsVersion::V1_3]
        );
    }

    // JKS (Kafka's default type) and PKCS12 are refused naming PEM; so are encrypted keys,
    // half-given inline keystores and client auth without a truststore.
    #[test]
    fn refusals_name_the_fix() {
        let jks = error(&[("ssl.keystore.location", "/k.jks")]);
        assert!(
            jks.contains("JKS (Kafka's default)") && jks.contains("=PEM"),
            "{jks}"
        );
        let p12 = error(&[
            ("ssl.keystore.type", "PKCS12"),
            ("ssl.keystore.location", "/k.p12"),
        ]);
        assert!(
            p12.contains("PKCS12") && p12.contains("ssl.keystore.type=PEM"),
            "{p12}"
        );
        let trust = error(&[("ssl.truststore.location", "/t.jks")]);
        assert!(trust.contains("ssl.truststore.type=PEM"), "{trust}");
        assert!(error(&[("ssl.key.password", "x")]).contains("unencrypted"));
        assert!(
            error(&[("ssl.keystore.type", "PEM"), ("ssl.keystore.key", "KEY")])
                .contains("ssl.keystore.certificate.chain")
        );
        assert!(error(&[
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.keystore.password", "x"),
        ])
        .contains("ssl.keystore.password"));
        assert!(error(&[("ssl.client.auth", "required")]).contains("ssl.truststore.location"));
        assert!(error(&[("ssl.client.auth", "sometimes")]).contains("sometimes"));
        assert!(error(&[("ssl.enabled.protocols", "TLSv1.1,TLSv1.2")]).contains("TLSv1.1"));
        assert!(
            error(&[("ssl.principal.mapping.rules", "RULE:^CN=(.*?),.*$/$1/")]).contains("DEFAULT")
        );
        assert!(error(&[(HANDSHAKE_TIMEOUT_KEY, "0")]).contains(HANDSHAKE_TIMEOUT_KEY));
    }
}
