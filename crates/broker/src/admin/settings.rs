//! The admin listener's settings: its config keys, defaults and parsing. Apart from the
//! listener itself so that the broker config can hold them without depending on the broker
//! state the listener reads.

/// The config key naming the admin listener's address.
pub const LISTENER_KEY: &str = "runnel.admin.listener";

/// The config key capping the admin listener's open connections.
pub const CONNECTIONS_MAX_KEY: &str = "runnel.admin.connections.max";

/// Where the admin listener binds unless told otherwise: loopback only, so metrics (which
/// name topics and groups) are not exposed to the network by default.
pub const DEFAULT_LISTENER: &str = "127.0.0.1:9644";

/// `runnel.admin.connections.max`'s default: a few scrapers and probes at once.
pub const DEFAULT_CONNECTIONS_MAX: usize = 16;

/// The admin listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `HOST:PORT` to bind; `None`: no admin listener (`runnel.admin.listener = ""`).
    pub listener: Option<String>,
    /// Whether `listener` was configured (not the default): a configured address that cannot
    /// be bound stops startup; the default one only logs a warning, so a second broker on the
    /// same machine (tests, a laptop) still starts.
    pub explicit: bool,
    /// `runnel.admin.connections.max`: open admin connections at once; further clients wait in
    /// the kernel's backlog.
    pub connections_max: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listener: Some(DEFAULT_LISTENER.to_owned()),
            explicit: false,
            connections_max: DEFAULT_CONNECTIONS_MAX,
        }
    }
}

impl AdminConfig {
    /// Reads the admin keys from `get` (trimmed values by key).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<AdminConfig> {
        let mut config = AdminConfig::default();
        if let Some(v) = get(LISTENER_KEY) {
            config.explicit = true;
            config.listener = match v.as_str() {
                "" | "none" | "off" => None,
                address => {
                    if address
                        .rsplit_once(':')
                        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
                    {
                        anyhow::bail!(
                            "config key '{LISTENER_KEY}': '{address}' is not HOST:PORT (or \"\" to turn the admin listener off)"
                        );
                    }
                    Some(address.to_owned())
                }
            };
        }
        if let Some(v) = get(CONNECTIONS_MAX_KEY) {
            config.connections_max = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                anyhow::anyhow!("config key '{CONNECTIONS_MAX_KEY}': '{v}' is not a number >= 1")
            })?;
        }
        Ok(config)
    }
}
