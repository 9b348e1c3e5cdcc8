//! TLS for SSL listeners: the rustls server config built from the `ssl.*` keys at startup (a
//! bad file or key stops the broker with a message naming it, as Kafka fails to start), and
//! the principal a client certificate authenticates.

pub mod dn;
pub mod settings;

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::context::Principal;
use settings::{ClientAuth, KeyStore, SslConfig, TlsVersion, TrustStore};

/// Bytes of a PEM store file we read at most: a certificate chain and key are a few KiB, a CA
/// bundle a few hundred; anything larger is not a store.
const STORE_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The rustls crypto provider of every SSL listener (see the workspace manifest for why ring).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server config of SSL listeners from `ssl.*`: reads the keystore (and the
/// truststore when client certificates are asked for) and checks that the key fits the
/// certificate.
pub fn server_config(ssl: &SslConfig) -> Result<Arc<ServerConfig>> {
    let Some(keystore) = &ssl.keystore else {
        bail!(
            "an SSL listener needs the broker's certificate and key: set ssl.keystore.type=PEM \
             and ssl.keystore.location (a PEM file with the private key and certificate chain), \
             or ssl.keystore.certificate.chain and ssl.keystore.key"
        );
    };
    let (chain, key) = load_keystore(keystore)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = ssl
        .enabled_protocols
        .iter()
        .map(|v| match v {
            TlsVersion::V1_2 => &rustls::version::TLS12,
            TlsVersion::V1_3 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .context("ssl.enabled.protocols")?;
    let verifier = match ssl.client_auth {
        ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
        auth => {
            let Some(truststore) = &ssl.truststore else {
                bail!("ssl.client.auth needs a truststore (ssl.truststore.location)");
            };
            let roots = Arc::new(load_truststore(truststore)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            verifier
                .build()
                .map_err(|e| anyhow!("ssl.truststore: cannot verify client certificates: {e}"))?
        }
    };
    let config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            anyhow!("ssl.keystore: cannot use the private key with the certificate: {e}")
        })?;
    Ok(Arc::new(config))
}

/// The principal of a connection whose client presented `certificate` (the end entity), as
/// Kafka's default principal builder with `ssl.principal.mapping.rules=DEFAULT` names it.
pub fn principal(certificate: &CertificateDer<'_>) -> Result<Principal, dn::DnError> {
    Ok(Principal {
        principal_type: "User".into(),
        name: dn::subject_rfc2253(certificate)?,
    })
}

fn read_store(key: &str, path: &std::path::Path) -> Result<String> {
    let context = || format!("{key} {}", path.display());
    let len = std::fs::metadata(path).with_context(context)?.len();
    if len > STORE_FILE_BYTES_MAX {
        bail!(
            "{}: {len} bytes is not a PEM store (at most {STORE_FILE_BYTES_MAX})",
            context()
        );
    }
    std::fs::read_to_string(path).with_context(context)
}

fn load_keystore(
    keystore: &KeyStore,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (chain_pem, chain_from, key_pem, key_from) = match keystore {
        KeyStore::File(path) => {
            let text = read_store("ssl.keystore.location", path)?;
            let from = format!("ssl.keystore.location {}", path.display());
            (text.clone(), from.clone(), text, from)
        }
        KeyStore::Inline {
            certificate_chain,
            key,
        } => (
            certificate_chain.clone(),
            "ssl.keystore.certificate.chain".to_owned(),
            key.clone(),
            "ssl.keystore.key".to_owned(),
        ),
    };
    if key_pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        bail!(
            "{key_from}: the private key is encrypted; runnel reads unencrypted PKCS#8 keys only \
             (`openssl pkcs8 -topk8 -nocrypt -in encrypted.pem`), and ssl.key.password is not \
             supported"
        );
    }
    let chain = certificates(&chain_pem, &chain_from)?;
    let mut keys = PrivateKeyDer::pem_slice_iter(key_pem.as_bytes());
    let key = match keys.next() {
        Some(Ok(key)) => key,
        Some(Err(e)) => bail!("{key_from}: bad PEM: {e}"),
        None => bail!("{key_from}: no private key (-----BEGIN PRIVATE KEY-----) found"),
    };
    if keys.next().is_some() {
        bail!("{key_from}: expected one private key, found several");
    }
    Ok((chain, key))
}

fn load_truststore(truststore: &TrustStore) -> Result<RootCertStore> {
    let (pem, from) = match truststore {
        TrustStore::File(path) => (
            read_store("ssl.truststore.location", path)?,
            format!("ssl.truststore.location {}", path.display()),
        ),
        TrustStore::Inline(pem) => (pem.clone(), "ssl.truststore.certificates".to_owned()),
    };
    let mut roots = RootCertStore::empty();
    for certificate in certificates(&pem, &from)? {
        roots
            .add(certificate)
            .map_err(|e| anyhow!("{from}: not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// Every certificate of a PEM text; at least one.
fn certificates(pem: &str, from: &str) -> Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{from}: bad PEM: {e}"))?;
    if chain.is_empty() {
        bail!("{from}: no certificate (-----BEGIN CERTIFICATE-----) found");
    }
    Ok(chain)
}
