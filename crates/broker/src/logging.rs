//! The process's log output: plain text for people (coloured only on a terminal) or one JSON
//! object per line for log shippers (`--log-format json`, `runnel.log.format`).
//!
//! Both formats sit under the same reloadable filter, so a BROKER_LOGGER change
//! (`crate::log_level`) applies whichever one is in use.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (tracing's default format).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`, `fields`, and
    /// `spans` when the event happened inside any.
    Json,
}

impl LogFormat {
    /// Parses the value of `--log-format` / `runnel.log.format`.
    pub fn parse(value: &str) -> Option<LogFormat> {
        match value.trim() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Whether text logs may carry ANSI colour: only when stderr is a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (the no-color.org convention). A file
/// or pipe (systemd, docker, `2> file`) gets plain text.
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber writing to stderr in `format`, with the level from
/// `RUST_LOG` (default `info`), and the runtime level setter of `crate::log_level`.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The filter sits behind a reload handle so BROKER_LOGGER changes apply at runtime.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(colour),
            ),
            None,
        ),
        LogFormat::Json => (None, Some(json_layer(std::io::stderr))),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .init();
    crate::log_level::install(Box::new(move |level| {
        handle
            .reload(tracing_subscriber::EnvFilter::new(level))
            .map_err(|e| e.to_string())
    }));
}

/// The JSON-lines layer over `writer`.
pub fn json_layer<S, W>(writer: W) -> tracing_subscriber::fmt::Layer<S, JsonFields, JsonEvent, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .fmt_fields(JsonFields)
        .event_format(JsonEvent)
        .with_writer(writer)
}

/// Collects an event's or span's fields as JSON values; `message` is kept apart.
#[derive(Default)]
struct Collect {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl Collect {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Collect {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

/// Formats span fields as a JSON object (stored in the span's extensions and read back by
/// `JsonEvent`), so a span's fields reach the line as values, not as text.
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut collect = Collect::default();
        fields.record(&mut collect);
        if let Some(message) = collect.message {
            collect
                .fields
                .insert("message".into(), Value::from(message));
        }
        write!(writer, "{}", Value::Object(collect.fields))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // A span recording more fields later: merge them into its object.
        let mut map = match serde_json::from_str::<Value>(&current.fields) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut collect = Collect::default();
        fields.record(&mut collect);
        map.extend(collect.fields);
        current.fields = Value::Object(map).to_string();
        Ok(())
    }
}

/// Writes one event as one JSON object on one line. The event's own fields live under
/// `fields` rather than at the top level, so no field can shadow `timestamp`, `level`,
/// `target` or `message`.
pub struct JsonEvent;

impl<S, N> FormatEvent<S, N> for JsonEvent
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut collect = Collect::default();
        event.record(&mut collect);
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::from(timestamp));
        line.insert("level".into(), Value::from(metadata.level().as_str()));
        line.insert("target".into(), Value::from(metadata.target()));
        line.insert(
            "message".into(),
            Value::from(collect.message.unwrap_or_default()),
        );
        line.insert("fields".into(), Value::Object(collect.fields));
        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            for span in scope.from_root() {
                let mut object = Map::new();
                object.insert("name".into(), Value::from(span.name()));
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&fields.fields) {
                        object.extend(map);
                    }
                }
                spans.push(Value::Object(object));
            }
            line.insert("spans".into(), Value::Array(spans));
        }
        // serde_json escapes control characters, so a newline in a message stays inside its
        // string and the object stays on one line.
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(f: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect()
    }

    // Each event is one line holding the fixed keys, with its fields typed under `fields`
    // (so a field named `level` cannot overwrite the level) and its spans listed.
    #[test]
    fn json_lines_have_fixed_keys_and_typed_fields() {
        let out = lines(|| {
            let span = tracing::info_span!("request", api = "Produce", correlation_id = 7);
            let _entered = span.enter();
            tracing::warn!(partition = 3, ok = true, level = "x", topic = %"t", "two\nlines");
        });
        assert_eq!(out.len(), 1, "{out:?}");
        let line = &out[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "two\nlines");
        assert_eq!(line["target"], module_path!());
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(line["fields"]["partition"], 3);
        assert_eq!(line["fields"]["ok"], true);
        assert_eq!(line["fields"]["level"], "x");
        assert_eq!(line["fields"]["topic"], "t");
        assert_eq!(line["spans"][0]["name"], "request");
        assert_eq!(line["spans"][0]["api"], "Produce");
        assert_eq!(line["spans"][0]["correlation_id"], 7);
    }

    // Colour only on a terminal, and NO_COLOR (when non-empty) turns it off there too.
    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn formats_parse() {
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("JSON"), None);
    }
}
