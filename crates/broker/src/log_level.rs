//! The runtime log level: IncrementalAlterConfigs on a BROKER_LOGGER resource sets the level of
//! log4j's `root` logger in Kafka; in runnel the same request replaces tracing's global filter.
//! The binary installs the setter (it owns the subscriber); a broker embedded without one (tests)
//! answers that the level cannot change at runtime.

use std::sync::OnceLock;

/// Replaces the global log filter with one level (`"debug"`, ...), or says why it cannot.
pub type LevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static SETTER: OnceLock<LevelSetter> = OnceLock::new();

/// Installs the setter; the first one installed stays.
pub fn install(setter: LevelSetter) {
    // A second install (tests starting several brokers) keeps the first: there is one
    // subscriber per process.
    let _ = SETTER.set(setter);
}

/// Sets the global level from a log4j level name (FATAL maps to tracing's ERROR).
pub fn set(log4j_level: &str) -> Result<(), String> {
    let level = match log4j_level {
        "FATAL" | "ERROR" => "error",
        "WARN" => "warn",
        "INFO" => "info",
        "DEBUG" => "debug",
        _ => "trace",
    };
    match SETTER.get() {
        Some(setter) => setter(level),
        None => Err("This runnel process cannot change its log level at runtime".into()),
    }
}
