//! Kafka's listener keys: `listeners`, `advertised.listeners`, `listener.security.protocol.map`
//! and `controller.listener.names`, read into the client listeners runnel binds, each with its
//! security protocol and the address its clients are told.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};

use crate::context::SecurityProtocol;

/// Kafka's `listener.security.protocol.map` default: each protocol is a listener name of its own.
const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// One client listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Kafka's listener name, upper-cased as Kafka normalises it: handlers answer with this
    /// listener's endpoints, as Kafka answers with the endpoints of the listener a request came
    /// in on.
    pub name: String,
    pub security_protocol: SecurityProtocol,
    /// Host to bind; empty binds every interface, as in Kafka.
    pub host: String,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// What clients of this listener are told to connect to (`advertised.listeners`); `None`:
    /// the bound address.
    pub advertised: Option<(String, u16)>,
}

impl ListenerConfig {
    /// The address to bind, in the form `TcpListener::bind` takes.
    pub fn bind_address(&self) -> String {
        match self.host.as_str() {
            "" => format!("0.0.0.0:{}", self.port),
            host if host.contains(':') => format!("[{host}]:{}", self.port),
            host => format!("{host}:{}", self.port),
        }
    }

    /// The (host, port) clients of this listener are told, once it is bound to `bound`.
    pub fn advertised_endpoint(&self, bound: std::net::SocketAddr) -> (String, u16) {
        if let Some(a) = &self.advertised {
            return a.clone();
        }
        let host = Some(self.host.as_str())
            .filter(|h| !h.is_empty() && *h != "0.0.0.0" && *h != "::")
            .unwrap_or("localhost");
        (host.to_owned(), bound.port())
    }
}

/// The listeners runnel serves, from the merged config's values (trimmed), with warnings.
///
/// `listeners` entries are `NAME://HOST:PORT`; a bare `HOST:PORT` (what `--listen` took
/// before) is `PLAINTEXT://HOST:PORT`. Listeners named in `controller.listener.names` are not
/// bound here: the metadata quorum binds the CONTROLLER one. A bare `HOST:PORT` in `advertised.listeners`
/// advertises the first listener.
pub fn parse(
    listeners: &str,
    advertised: Option<&str>,
    protocol_map: Option<&str>,
    controller_names: Option<&str>,
) -> Result<(Vec<ListenerConfig>, Vec<String>)> {
    let mut warnings = Vec::new();
    let map = parse_protocol_map(protocol_map.unwrap_or(DEFAULT_PROTOCOL_MAP))?;
    let controllers: Vec<String> = controller_names
        .unwrap_or_default()
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect();
    let mut out: Vec<ListenerConfig> = Vec::new();
    for entry in entries(listeners) {
        let (name, host, port) = parse_entry("listeners", entry)?;
        if controllers.contains(&name) {
            warnings.push(format!(
                "listener {name} is in controller.listener.names: the metadata quorum binds it \
                 when controller.quorum.voters or controller.quorum.bootstrap.servers is set"
            ));
            continue;
        }
        if out.iter().any(|l| l.name == name) {
            bail!("config key 'listeners': listener name {name} appears twice");
        }
        if port != 0 && out.iter().any(|l| l.port == port) {
            bail!("config key 'listeners': port {port} is used by two listeners");
        }
        let protocol = match map.get(&name) {
            Some(Ok(protocol)) => *protocol,
            Some(Err(sasl)) => bail!(
                "config key 'listeners': listener {name} is {sasl}; runnel does not offer SASL \
                 yet (PLAINTEXT and SSL listeners only)"
            ),
            None => bail!(
                "config key 'listeners': listener {name} has no security protocol; map it in \
                 listener.security.protocol.map (e.g. {name}:SSL)"
            ),
        };
        out.push(ListenerConfig {
            name,
            security_protocol: protocol,
            host,
            port,
            advertised: None,
        });
    }
    if out.is_empty() {
        bail!("config key 'listeners' names no client listener");
    }
    for entry in entries(advertised.unwrap_or_default()) {
        let (name, host, port) = match parse_entry("advertised.listeners", entry)? {
            (name, host, port) if entry.contains("://") => (name, host, port),
            (_, host, port) => (out[0].name.clone(), host, port),
        };
        let Some(listener) = out.iter_mut().find(|l| l.name == name) else {
            bail!("config key 'advertised.listeners': {name} is not a listener of 'listeners'");
        };
        if listener.advertised.is_some() {
            bail!("config key 'advertised.listeners': listener name {name} appears twice");
        }
        listener.advertised = Some((host, port));
    }
    Ok((out, warnings))
}

fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// `NAME://HOST:PORT` or `HOST:PORT` (named PLAINTEXT) -> (NAME, HOST, PORT).
fn parse_entry(key: &str, entry: &str) -> Result<(String, String, u16)> {
    let (name, address) = match entry.split_once("://") {
        Some((name, address)) => (name.trim().to_ascii_uppercase(), address),
        None => ("PLAINTEXT".to_owned(), entry),
    };
    if name.is_empty() {
        bail!("config key '{key}': '{entry}' has an empty listener name");
    }
    let (host, port) =
        split_host_port(address).map_err(|e| anyhow!("config key '{key}': '{entry}': {e}"))?;
    Ok((name, host, port))
}

/// `HOST:PORT`, `[IPV6]:PORT` or `:PORT` -> (host without brackets, port).
pub fn split_host_port(address: &str) -> Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("'{address}' is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("'{address}': '{port}' is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

/// A listener name's protocol: one runnel serves, or a SASL one it refuses by name.
type Mapped = std::result::Result<SecurityProtocol, String>;

fn parse_protocol_map(text: &str) -> Result<BTreeMap<String, Mapped>> {
    let mut map = BTreeMap::new();
    for entry in entries(text) {
        let Some((name, protocol)) = entry.split_once(':') else {
            bail!("config key 'listener.security.protocol.map': '{entry}' is not NAME:PROTOCOL");
        };
        let protocol = protocol.trim().to_ascii_uppercase();
        let mapped = match protocol.as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            // Allowed in the map (Kafka's default lists them); refused on a listener.
            "SASL_PLAINTEXT" | "SASL_SSL" => Err(protocol),
            other => bail!(
                "config key 'listener.security.protocol.map': '{other}' is not a security \
                 protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
            ),
        };
        map.insert(name.trim().to_ascii_uppercase(), mapped);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(
        list: &str,
        advertised: Option<&str>,
        map: Option<&str>,
    ) -> Result<Vec<ListenerConfig>> {
        parse(list, advertised, map, None).map(|(l, _)| l)
    }

    // A bare HOST:PORT is a PLAINTEXT listener; several named listeners each get their
    // protocol from the default map, and advertised.listeners is matched by name.
    #[test]
    fn several_listeners_with_protocols() {
        let l = listeners("127.0.0.1:9092", Some("example.com:19092"), None).expect("parse");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "PLAINTEXT");
        assert_eq!(l[0].security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(l[0].advertised, Some(("example.com".into(), 19092)));

        let l = listeners(
            "PLAINTEXT://:9092, ssl://[::1]:9093",
            Some("SSL://broker.example:443"),
            None,
        )
        .expect("parse");
        assert_eq!(l[0].bind_address(), "0.0.0.0:9092");
        assert_eq!(l[0].advertised, None);
        assert_eq!(l[1].name, "SSL");
        assert_eq!(l[1].security_protocol, SecurityProtocol::Ssl);
        assert_eq!(l[1].bind_address(), "[::1]:9093");
        assert_eq!(l[1].advertised, Some(("broker.example".into(), 443)));
        let bound = "127.0.0.1:5555".parse().expect("addr");
        assert_eq!(l[0].advertised_endpoint(bound), ("localhost".into(), 5555));
    }

    // Custom names take their protocol from listener.security.protocol.map; a controller
    // listener is skipped with a warning.
    #[test]
    fn protocol_map_and_controller_listeners() {
        let (l, warnings) = parse(
            "CLIENT://h:1,SECURE://h:2,CONTROLLER://h:3",
            None,
            Some("CLIENT:PLAINTEXT,SECURE:SSL,CONTROLLER:PLAINTEXT"),
            Some("CONTROLLER"),
        )
        .expect("parse");
        let names: Vec<_> = l
            .iter()
            .map(|l| (l.name.as_str(), l.security_protocol))
            .collect();
        assert_eq!(
            names,
            [
                ("CLIENT", SecurityProtocol::Plaintext),
                ("SECURE", SecurityProtocol::Ssl)
            ]
        );
        assert!(warnings.iter().any(|w| w.contains("CONTROLLER")));
    }

    // Mistakes are errors naming the listener: no protocol, SASL, duplicates, an advertised
    // name without a listener.
    #[test]
    fn mistakes_are_named() {
        let err = |r: Result<Vec<ListenerConfig>>| format!("{:#}", r.expect_err("error"));
        assert!(err(listeners("CLIENT://h:1", None, None)).contains("CLIENT"));
        assert!(err(listeners("SASL_SSL://h:1", None, None)).contains("SASL"));
        assert!(err(listeners("PLAINTEXT://h:1,PLAINTEXT://h:2", None, None)).contains("twice"));
        assert!(err(listeners("PLAINTEXT://h:1,SSL://h:1", None, None)).contains("port 1"));
        assert!(err(listeners("PLAINTEXT://h:1", Some("SSL://h:2"), None)).contains("SSL"));
        assert!(err(listeners("PLAINTEXT://h:x", None, None)).contains("port number"));
        assert!(err(listeners("A://h:1", None, Some("A:TLS"))).contains("TLS"));
    }
}
