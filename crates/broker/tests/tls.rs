//! SSL listeners against the real binary: produce and fetch over TLS 1.2 and 1.3, the PEM
//! keystore forms, client certificates and the principal they give, and connections that never
//! complete a handshake. Certificates are made at test time by a throwaway CA.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The subject of the client certificate, written O, OU, CN as usual.
const CLIENT_PRINCIPAL: &str = "User:CN=alice,OU=eng,O=Runnel Test";

/// A certificate and its key, in PEM.
struct Issued {
    certificate_pem: String,
    key_pem: String,
}

/// A throwaway CA, a server certificate for 127.0.0.1 and localhost, and a client certificate.
struct Pki {
    ca_pem: String,
    server: Issued,
    client: Issued,
}

fn ca(name: &str) -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
    let pem = ca.pem();
    (ca, pem)
}

fn issue(
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    params: rcgen::CertificateParams,
) -> Issued {
    let key = rcgen::KeyPair::generate().expect("key");
    let certificate = params.signed_by(&key, ca).expect("sign");
    Issued {
        certificate_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn client_params(ou: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    // A fresh name: the default one starts with a CN, which would keep its first place.
    params.distinguished_name = rcgen::DistinguishedName::new();
    let dn = &mut params.distinguished_name;
    dn.push(rcgen::DnType::OrganizationName, "Runnel Test");
    dn.push(rcgen::DnType::OrganizationalUnitName, ou);
    dn.push(rcgen::DnType::CommonName, "alice");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params
}

impl Pki {
    fn new() -> Pki {
        let (ca, ca_pem) = ca("runnel test CA");
        let mut server = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("san");
        server
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        server
            .distinguished_name
            .push(rcgen::DnType::CommonName, "runnel");
        server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        Pki {
            server: issue(&ca, server),
            client: issue(&ca, client_params("eng")),
            ca_pem,
        }
    }

    /// The PEM file `ssl.keystore.location` takes: private key, then the chain up to the CA.
    fn server_keystore_pem(&self) -> String {
        format!(
            "{}{}{}",
            self.server.key_pem, self.server.certificate_pem, self.ca_pem
        )
    }
}

/// A TOML string value (JSON's escapes are TOML's for these).
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("json")
}

/// A broker with a PLAINTEXT and an SSL listener, `ssl_config` holding the `ssl.*` keys.
struct TlsBroker {
    runnel: Runnel,
    ssl_port: u16,
}

fn start(files: &[(&str, &str)], ssl_config: &str) -> TlsBroker {
    start_with_env(files, ssl_config, &[])
}

fn start_with_env(files: &[(&str, &str)], ssl_config: &str, env: &[(&str, &str)]) -> TlsBroker {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let config = ssl_config.replace("$DIR", &dir.path().to_string_lossy());
    let port = free_port();
    let mut ssl_port = free_port();
    while ssl_port == port {
        ssl_port = free_port();
    }
    let listen = format!("PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port}");
    let runnel = Runnel::start_with_listeners(dir, &listen, port, &config, env);
    TlsBroker { runnel, ssl_port }
}

/// The keystore as one PEM file, and nothing else.
const KEYSTORE_FILE: &str = "\"ssl.keystore.type\" = \"PEM\"\n\
     \"ssl.keystore.location\" = \"$DIR/server.pem\"\n";

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A client of the SSL port, trusting `ca_pem`, presenting `identity` if given; the handshake
/// is done before it returns (`Err` if it failed).
fn tls_connect(
    port: u16,
    ca_pem: &str,
    version: &'static rustls::SupportedProtocolVersion,
    identity: Option<&Issued>,
) -> std::io::Result<TlsStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA");
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots);
    let config = match identity {
        Some(issued) => builder
            .with_client_auth_cert(
                vec![
                    CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes())
                        .expect("cert"),
                ],
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    let server = ServerName::try_from("127.0.0.1").expect("name");
    let mut connection = ClientConnection::new(Arc::new(config), server).expect("client");
    let mut socket = TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket)?;
    }
    Ok(StreamOwned::new(connection, socket))
}

fn api_versions() -> RequestKind {
    use kafka_protocol::protocol::StrBytes;
    RequestKind::ApiVersions(
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("runnel-tls-test"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    )
}

/// The endpoints a Metadata answer on `stream` lists.
fn brokers(stream: &mut (impl Read + Write)) -> Vec<(String, i32)> {
    let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![])));
    let ResponseKind::Metadata(r) = call(stream, ApiKey::Metadata, 12, &request) else {
        panic!("not a Metadata response")
    };
    r.brokers
        .iter()
        .map(|b| (b.host.to_string(), b.port))
        .collect()
}

/// True if the broker refuses this session: the next request gets no answer, only an alert or
/// the end of the stream.
fn refused(stream: &mut TlsStream) -> bool {
    let frame = request_frame(ApiKey::ApiVersions, 3, 42, &api_versions());
    if stream
        .write_all(&frame)
        .and_then(|()| stream.flush())
        .is_err()
    {
        return true;
    }
    read_frame(stream).is_none()
}

/// Reads until the broker closes the connection; how long that took, or `None` if it was
/// still open after `limit`. Whatever arrived is appended to `received`.
fn closed_within(
    stream: &mut TcpStream,
    limit: Duration,
    received: &mut Vec<u8>,
) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

fn produce(topic: &str, values: &[&[u8]]) -> RequestKind {
    produce_request(topic, -1, 5000, &[(0, batch(values))])
}

fn fetch(topic: &str, offset: i64) -> RequestKind {
    fetch_request(topic, 0, offset, 1, 1 << 20)
}

// Over TLS 1.2 and 1.3 a client creates a topic, produces and fetches its records back (the
// fetch goes through user space, TLS cannot take sendfile), and Metadata sends each listener's
// clients back to their own port.
#[test]
fn produce_and_fetch_over_tls() {
    let pki = Pki::new();
    let keystore = pki.server_keystore_pem();
    let b = start(&[("server.pem", &keystore)], KEYSTORE_FILE);
    let value = vec![b'v'; 200_000];
    for (round, version) in [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .enumerate()
    {
        let mut s = tls_connect(b.ssl_port, &pki.ca_pem, version, None).expect("handshake");
        assert_eq!(
            s.conn.protocol_version(),
            Some(version.version),
            "negotiated version"
        );
        let ResponseKind::ApiVersions(r) = call(&mut s, ApiKey::ApiVersions, 3, &api_versions())
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        let topic = format!("tls-{round}");
        create_topic(&mut s, &topic, 1, &[]);
        for i in 0..3u8 {
            let values: [&[u8]; 2] = [&value, &[i; 10]];
            let ResponseKind::Produce(r) =
                call(&mut s, ApiKey::Produce, 11, &produce(&topic, &values))
            else {
                panic!()
            };
            let p = &r.responses[0].partition_responses[0];
            assert_eq!((p.error_code, p.base_offset), (0, i64::from(i) * 2));
        }
        let ResponseKind::Fetch(r) = call(&mut s, ApiKey::Fetch, 12, &fetch(&topic, 0)) else {
            panic!()
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 6));
        let records = p.records.clone().expect("records");
        let mut position = 0;
        let mut next_offset = 0;
        while position < records.len() {
            let header = runnel_protocol::batch::BatchHeader::parse(&records[position..])
                .expect("batch header");
            assert_eq!(header.base_offset, next_offset);
            next_offset = header.last_offset() + 1;
            position += header.size_bytes();
        }
        assert_eq!(
            (position, next_offset),
            (records.len(), 6),
            "every record once"
        );
        assert_eq!(
            brokers(&mut s),
            vec![("127.0.0.1".to_owned(), i32::from(b.ssl_port))]
        );
    }
    let mut plain = b.runnel.connect();
    assert_eq!(
        brokers(&mut plain),
        vec![("127.0.0.1".to_owned(), i32::from(b.runnel.port))]
    );
}

// With `ssl.client.auth=required` a client certificate from the truststore's CA is the
// principal, in Kafka's DN form; a client without a certificate, or with one from another CA,
// is refused. The keystore is given inline (certificate chain and key as config values).
#[test]
fn required_client_certificate_is_the_principal() {
    let pki = Pki::new();
    let config = format!(
        "\"ssl.keystore.type\" = \"PEM\"\n\
         \"ssl.keystore.certificate.chain\" = {}\n\
         \"ssl.keystore.key\" = {}\n\
         \"ssl.truststore.type\" = \"PEM\"\n\
         \"ssl.truststore.location\" = \"$DIR/ca.pem\"\n\
         \"ssl.client.auth\" = \"required\"\n",
        toml_string(&format!("{}{}", pki.server.certificate_pem, pki.ca_pem)),
        toml_string(&pki.server.key_pem),
    );
    let mut b = start_with_env(
        &[("ca.pem", &pki.ca_pem)],
        &config,
        &[
            ("RUST_LOG", "info,runnel_broker::connection=debug"),
            ("NO_COLOR", "1"),
        ],
    );
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut s = tls_connect(b.ssl_port, &pki.ca_pem, version, Some(&pki.client))
            .expect("handshake with a client certificate");
        let ResponseKind::ApiVersions(r) = call(&mut s, ApiKey::ApiVersions, 3, &api_versions())
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0);

        // No certificate: TLS 1.2 fails the handshake, TLS 1.3 the first read after it.
        if let Ok(mut s) = tls_connect(b.ssl_port, &pki.ca_pem, version, None) {
            assert!(refused(&mut s), "a client without a certificate was served");
        }
        let (rogue, _) = ca("rogue CA");
        let stranger = issue(&rogue, client_params("eng"));
        if let Ok(mut s) = tls_connect(b.ssl_port, &pki.ca_pem, version, Some(&stranger)) {
            assert!(refused(&mut s), "a certificate of another CA was accepted");
        }
    }
    let log = b.runnel.log();
    assert!(
        log.contains(&format!("principal={CLIENT_PRINCIPAL}")),
        "principal not seen:\n{log}"
    );
    assert!(!log.contains("principal=User:ANONYMOUS"), "{log}");
    assert!(log.contains("TLS handshake failed"), "{log}");
    b.runnel.assert_alive();
}

// With `ssl.client.auth=requested` a client without a certificate is served as
// User:ANONYMOUS and one with a certificate as its subject.
#[test]
fn requested_client_certificate_is_optional() {
    let pki = Pki::new();
    let keystore = pki.server_keystore_pem();
    let config = format!(
        "{KEYSTORE_FILE}\"ssl.truststore.type\" = \"PEM\"\n\
         \"ssl.truststore.certificates\" = {}\n\
         \"ssl.client.auth\" = \"requested\"\n",
        toml_string(&pki.ca_pem)
    );
    let b = start_with_env(
        &[("server.pem", &keystore)],
        &config,
        &[
            ("RUST_LOG", "info,runnel_broker::connection=debug"),
            ("NO_COLOR", "1"),
        ],
    );
    for identity in [None, Some(&pki.client)] {
        let mut s = tls_connect(b.ssl_port, &pki.ca_pem, &rustls::version::TLS13, identity)
            .expect("handshake");
        let ResponseKind::ApiVersions(r) = call(&mut s, ApiKey::ApiVersions, 3, &api_versions())
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
    }
    let log = b.runnel.log();
    assert!(log.contains("principal=User:ANONYMOUS"), "{log}");
    assert!(
        log.contains(&format!("principal={CLIENT_PRINCIPAL}")),
        "{log}"
    );
}

// A client that connects to the SSL port and says nothing is closed after
// runnel.ssl.handshake.timeout.ms, which releases its max.connections slot; while it waits,
// other clients are served.
#[test]
fn silent_clients_time_out_and_free_their_slots() {
    let pki = Pki::new();
    let keystore = pki.server_keystore_pem();
    let timeout = Duration::from_millis(1000);
    let config = format!(
        "{KEYSTORE_FILE}\"runnel.ssl.handshake.timeout.ms\" = {}\n\"max.connections\" = 2\n",
        timeout.as_millis()
    );
    let mut b = start(&[("server.pem", &keystore)], &config);
    // The clock is read before connecting: the server starts the handshake timeout at its
    // accept, which is after that, so "closed before the timeout" cannot come from this thread
    // being scheduled late after `connect` returned.
    let silent_connect = |port| {
        let before = Instant::now();
        (
            TcpStream::connect(("127.0.0.1", port)).expect("connect"),
            before,
        )
    };
    let mut silent = vec![silent_connect(b.ssl_port)];
    // The second slot: a TLS client is served while the silent one waits.
    let mut s = tls_connect(b.ssl_port, &pki.ca_pem, &rustls::version::TLS13, None)
        .expect("handshake beside a silent client");
    call(&mut s, ApiKey::ApiVersions, 3, &api_versions());
    assert!(
        silent[0].1.elapsed() < timeout,
        "served only after {:?}",
        silent[0].1.elapsed()
    );
    drop(s);
    // Both slots silent: the next client waits in the backlog until a silent one is closed.
    silent.push(silent_connect(b.ssl_port));
    let mut s = tls_connect(b.ssl_port, &pki.ca_pem, &rustls::version::TLS12, None)
        .expect("handshake once a silent client is gone");
    call(&mut s, ApiKey::ApiVersions, 3, &api_versions());
    for (stream, connected) in &mut silent {
        closed_within(stream, Duration::from_secs(10), &mut Vec::new())
            .expect("a silent client was never closed");
        let waited = connected.elapsed();
        assert!(waited >= timeout, "closed before the timeout: {waited:?}");
    }
    let log = b.runnel.log();
    assert!(log.contains("runnel.ssl.handshake.timeout.ms"), "{log}");
    b.runnel.assert_alive();
}

// Garbage and a plaintext Kafka request on the SSL port close that connection at once with no
// Kafka answer (a TLS alert at most), and the broker goes on serving both listeners.
#[test]
fn garbage_and_plaintext_on_the_ssl_port_are_closed() {
    let pki = Pki::new();
    let keystore = pki.server_keystore_pem();
    let mut b = start(&[("server.pem", &keystore)], KEYSTORE_FILE);
    let kafka_request = request_frame(ApiKey::ApiVersions, 3, 42, &api_versions());
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    for (what, bytes) in [
        ("a plaintext Kafka request", &kafka_request),
        ("garbage", &garbage),
    ] {
        let mut raw = TcpStream::connect(("127.0.0.1", b.ssl_port)).expect("connect");
        raw.write_all(bytes).expect("write");
        let mut received = Vec::new();
        let waited = closed_within(&mut raw, Duration::from_secs(5), &mut received)
            .unwrap_or_else(|| panic!("{what} on the SSL port: connection left open"));
        // Well before the 10 s handshake timeout: the bytes themselves end it.
        assert!(waited < Duration::from_secs(5), "{what}: {waited:?}");
        // Nothing, or TLS alert records (content type 21), never a Kafka response.
        assert!(
            received.is_empty() || received[0] == 21,
            "{what} got an answer: {received:?}"
        );
    }
    let mut s = tls_connect(b.ssl_port, &pki.ca_pem, &rustls::version::TLS13, None)
        .expect("handshake after bad clients");
    call(&mut s, ApiKey::ApiVersions, 3, &api_versions());
    let mut plain = b.runnel.connect();
    call(&mut plain, ApiKey::ApiVersions, 3, &api_versions());
    b.runnel.assert_alive();
}

/// Runs the binary with `config` and an SSL listener; it must refuse to start. Its stderr.
fn refused_startup(files: &[(&str, &str)], config: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let config = config.replace("$DIR", &dir.path().to_string_lossy());
    std::fs::write(dir.path().join("runnel.toml"), config).expect("config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .arg("--listen")
        .arg(format!("SSL://127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(dir.path().join("runnel.toml"))
        .output()
        .expect("run runnel");
    assert!(!output.status.success(), "runnel started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// Keystores runnel cannot use stop it at startup with a message naming the fix: JKS (Kafka's
// default type) and PKCS12 name PEM, an encrypted key or ssl.key.password names the
// unencrypted form, a missing keystore and a key of another certificate are named.
#[test]
fn unusable_keystores_refuse_startup() {
    let pki = Pki::new();
    let keystore = pki.server_keystore_pem();
    let err = refused_startup(&[], "\"ssl.keystore.location\" = \"$DIR/server.jks\"\n");
    assert!(
        err.contains("ssl.keystore.type") && err.contains("PEM"),
        "{err}"
    );
    let err = refused_startup(
        &[],
        "\"ssl.keystore.type\" = \"PKCS12\"\n\"ssl.keystore.location\" = \"$DIR/server.p12\"\n",
    );
    assert!(
        err.contains("PKCS12") && err.contains("ssl.keystore.type=PEM"),
        "{err}"
    );
    let err = refused_startup(
        &[("server.pem", &keystore)],
        &format!("{KEYSTORE_FILE}\"ssl.key.password\" = \"secret\"\n"),
    );
    assert!(err.contains("unencrypted"), "{err}");
    let encrypted = keystore.replace(" PRIVATE KEY-----", " ENCRYPTED PRIVATE KEY-----");
    let err = refused_startup(&[("server.pem", &encrypted)], KEYSTORE_FILE);
    assert!(err.contains("encrypted"), "{err}");
    let err = refused_startup(&[], KEYSTORE_FILE);
    assert!(err.contains("server.pem"), "{err}");
    let err = refused_startup(&[], "\"num.partitions\" = 1\n");
    assert!(err.contains("ssl.keystore.location"), "{err}");
    let other = issue(&ca("other").0, client_params("x"));
    let mismatched = format!("{}{}", other.key_pem, pki.server.certificate_pem);
    let err = refused_startup(&[("server.pem", &mismatched)], KEYSTORE_FILE);
    assert!(err.contains("cannot use the private key"), "{err}");
}
