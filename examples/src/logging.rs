//! The daemons' log output: text for people, JSON lines for collectors.
//!
//! - Text is tracing's usual line, with colour only when stderr is a terminal (a log file or
//!   `kubectl logs` gets no escape sequences). An access-log event's message is written as it
//!   is, with only control characters escaped (tracing's writer escapes char by char: that was
//!   a quarter of a node proxy's CPU per tunnel).
//! - JSON is one object per line and nothing else: `time`, `level`, `scope` (the target), then
//!   `message` and every field as a value. An access-log event (target `access`) already
//!   carries its record as a JSON object in its message; its keys are merged in, so the
//!   line is the record with `time`, `level` and `scope` in front.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use ambit_telemetry::json_escape;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `<time> <LEVEL> <scope>: message key=value ...`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "plain" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// Installs the process's logger on stderr: `RUST_LOG` picks levels (default `default`). Does
/// nothing when a logger is already installed.
pub fn init_logging_as(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .event_format(TextLines::default())
            .try_init(),
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
    };
}

/// The text event format: tracing's usual line (`<time> <LEVEL> <target>: message fields`), but
/// an access-log event (target `access`), whose message is already one line of `key=value`,
/// is written without passing each character through tracing's escaping writer.
#[derive(Debug, Default)]
pub struct TextLines {
    usual: tracing_subscriber::fmt::format::Format,
}

impl<S, N> FormatEvent<S, N> for TextLines
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
        let meta = event.metadata();
        if meta.target() != "access" {
            return self.usual.format_event(ctx, writer, event);
        }
        SystemTime.format_time(&mut writer)?;
        write!(writer, " {:>5} {}: ", meta.level().as_str(), meta.target())?;
        let mut fields = Unescaped {
            out: Controls(&mut writer),
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(writer)
    }
}

/// Writes an event's message, then its other fields as ` key=value`, through [`Controls`].
struct Unescaped<W: fmt::Write> {
    out: Controls<W>,
    result: fmt::Result,
}

impl<W: fmt::Write> Visit for Unescaped<W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = if field.name() == "message" {
            write!(self.out, "{value:?}")
        } else {
            write!(self.out, " {}={value:?}", field.name())
        };
    }
}

/// Passes text through with control characters (C0, DEL, C1) escaped as `\u{..}`, so a value
/// cannot move a terminal's cursor or forge a line. Text without them is written whole.
struct Controls<W: fmt::Write>(W);

impl<W: fmt::Write> fmt::Write for Controls<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // 0xC2 leads U+0080..U+00BF, where the C1 controls are: those take the slow path.
        if !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            if c.is_control() {
                write!(self.0, "{}", c.escape_unicode())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The JSON-lines event format (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        writeln!(
            writer,
            "{}",
            json_line(&time, meta.level().as_str(), meta.target(), &fields)
        )
    }
}

/// An event's fields, each already written as `,"key":"value"`.
#[derive(Debug, Default)]
struct JsonFields {
    message: String,
    rest: String,
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field.name(), &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = write!(self.rest, ",\"{}\":{value}", json_escape(field.name()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.rest, ",\"{}\":{value}", json_escape(field.name()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let _ = write!(self.rest, ",\"{}\":{value}", json_escape(field.name()));
    }
}

impl JsonFields {
    fn push(&mut self, name: &str, value: &str) {
        if name == "message" {
            self.message = value.to_owned();
        } else {
            let _ = write!(
                self.rest,
                ",\"{}\":\"{}\"",
                json_escape(name),
                json_escape(value)
            );
        }
    }
}

/// One event as a JSON object. A message that is itself a JSON object (an access-log record)
/// has its members spliced in after `time`, `level` and `scope`.
fn json_line(time: &str, level: &str, scope: &str, fields: &JsonFields) -> String {
    let mut out = format!(
        "{{\"time\":\"{}\",\"level\":\"{}\",\"scope\":\"{}\"",
        json_escape(time),
        level.to_ascii_lowercase(),
        json_escape(scope)
    );
    let m = fields.message.trim();
    match m.strip_prefix('{').and_then(|m| m.strip_suffix('}')) {
        Some(members) if scope == "access" => {
            if !members.trim().is_empty() {
                out.push(',');
                out.push_str(members);
            }
        }
        _ => {
            let _ = write!(out, ",\"message\":\"{}\"", json_escape(&fields.message));
        }
    }
    out.push_str(&fields.rest);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, f: impl FnOnce()) -> String {
        let sink = Sink::default();
        let out = sink.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO);
        match format {
            LogFormat::Json => {
                tracing::subscriber::with_default(builder.event_format(JsonLines).finish(), f)
            }
            LogFormat::Text => tracing::subscriber::with_default(
                builder.event_format(TextLines::default()).finish(),
                f,
            ),
        }
        let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn json_lines_are_objects_with_values() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 15008));
        let out = capture(LogFormat::Json, || {
            tracing::info!(%addr, n = 3u64, ok = true, "node \"proxy\" ready");
            tracing::warn!(target: "ambit_node", error = "boom", "accept failed");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("{\"time\":\""), "{}", lines[0]);
        assert!(
            lines[0].ends_with(
                ",\"level\":\"info\",\"scope\":\"ambit_examples::logging::tests\",\"message\":\"node \\\"proxy\\\" ready\",\"addr\":\"127.0.0.1:15008\",\"n\":3,\"ok\":true}"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("\"level\":\"warn\",\"scope\":\"ambit_node\""));
    }

    #[test]
    fn access_records_are_merged_not_nested() {
        let record = ambit_telemetry::AccessLog {
            src_addr: "10.0.0.1:5000".into(),
            direction: "inbound",
            bytes_sent: 7,
            ..Default::default()
        };
        let line = record.to_json();
        let out = capture(
            LogFormat::Json,
            || tracing::info!(target: "access", "{line}"),
        );
        let out = out.trim_end();
        assert!(!out.contains('\n'), "{out}");
        assert!(out.starts_with("{\"time\":\""), "{out}");
        let tail = ",\"level\":\"info\",\"scope\":\"access\",\"message\":\"connection complete\",\"src.addr\":\"10.0.0.1:5000\",\"direction\":\"inbound\",\"bytes_sent\":7";
        assert!(out.contains(tail), "{out}");
    }

    /// Everything after the timestamp.
    fn untimed(out: &str) -> Vec<String> {
        out.lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_owned())
            .collect()
    }

    #[test]
    fn text_access_lines_read_as_tracing_writes_them() {
        let line = "connection complete src.addr=10.0.0.1:5000 error=\"503: no workload\"";
        let emit = || {
            tracing::info!(target: "access", "{line}");
            tracing::warn!(target: "ambit_node", error = "boom", "accept failed");
        };
        let ours = capture(LogFormat::Text, emit);
        let sink = Sink::default();
        let out = sink.clone();
        let usual = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(usual, emit);
        let theirs = String::from_utf8(out.0.lock().map(|b| b.clone()).unwrap_or_default());
        assert_eq!(
            untimed(&ours),
            untimed(&theirs.unwrap_or_default()),
            "{ours}"
        );
        assert!(ours.starts_with("20"), "{ours}");
    }

    #[test]
    fn control_characters_in_access_lines_are_escaped() {
        let line = "connection failed error=\"bad\u{1b}[31m\nforged\u{9b} line\" dst=caf\u{e9}";
        let out = capture(
            LogFormat::Text,
            || tracing::info!(target: "access", "{line}"),
        );
        let out = out.strip_suffix('\n').unwrap_or(&out);
        assert!(!out.contains(['\u{1b}', '\n', '\u{9b}']), "{out:?}");
        assert!(
            out.ends_with("error=\"bad\\u{1b}[31m\\u{a}forged\\u{9b} line\" dst=caf\u{e9}"),
            "{out:?}"
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
