//! JSON log lines written straight into the line buffer. tracing-subscriber's own JSON
//! format builds a map of every event's fields and parses the span's stored fields back from
//! JSON for every line, which made the access log a tenth of a request's cost. The shape is
//! the same: `{"timestamp", "level", "fields": {"message", ...}, "target", "span": {"name",
//! ...}}`, where `span` holds the fields of every span the event is in, outermost first.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// How span fields are stored: `"key":value` pairs joined by commas, ready to be copied into
/// every line logged inside the span.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut writer = writer;
        let mut visitor = Pairs::new(&mut writer, true);
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut visitor = Pairs::new(&mut writer, first);
        fields.record(&mut visitor);
        visitor.result
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Lines from crates that log through `log` come in as events of target `log`, with
        // the real target and place in `log.*` fields: their own metadata is used instead.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        timestamp(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"fields\":{{", meta.level())?;
        let mut visitor = Pairs::new(&mut writer, true);
        event.record(&mut visitor);
        visitor.result?;
        writer.write_str("},\"target\":")?;
        string(&mut writer, meta.target())?;
        if let Some(scope) = ctx.event_scope() {
            let mut spans = scope.from_root().peekable();
            writer.write_str(",\"span\":{")?;
            let mut name = "";
            while let Some(span) = spans.next() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                    && !fields.fields.is_empty()
                {
                    writer.write_str(&fields.fields)?;
                    writer.write_char(',')?;
                }
                if spans.peek().is_none() {
                    name = span.name();
                }
            }
            writer.write_str("\"name\":")?;
            string(&mut writer, name)?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes each field as `"name":value`, comma-separated.
struct Pairs<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl<'a, 'w> Pairs<'a, 'w> {
    fn new(writer: &'a mut Writer<'w>, first: bool) -> Self {
        Self {
            writer,
            first,
            result: Ok(()),
        }
    }

    fn key(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(',')?;
        }
        string(self.writer, field.name())?;
        self.writer.write_char(':')
    }

    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        // A `log` record's target and place, already in the line's metadata.
        if self.result.is_ok() && !field.name().starts_with("log.") {
            self.result = self.key(field).and_then(|()| value(self.writer));
        }
    }
}

impl Visit for Pairs<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |w| string(w, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those become strings.
        if value.is_finite() {
            self.pair(field, |w| write!(w, "{value}"));
        } else {
            self.pair(field, |w| write!(w, "\"{value}\""));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.pair(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value}")?;
            w.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// A JSON string.
fn string(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string; runs that need no escape are
/// copied whole.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// UTC, RFC 3339 with microseconds: `2026-11-23T09:41:07.123456Z`.
fn timestamp(w: &mut Writer<'_>) -> fmt::Result {
    let now = time::OffsetDateTime::now_utc();
    write!(
        w,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_json_with_the_fields_of_every_enclosing_span() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields)
                .event_format(JsonLines)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!(
                "request",
                request_id = "r-1",
                trace_id = tracing::field::Empty
            );
            outer.record("trace_id", "t\"1");
            let _outer = outer.enter();
            let inner = tracing::info_span!("call", n = 3u64);
            let _inner = inner.enter();
            let error = std::io::Error::other("bad\nline");
            tracing::warn!(
                status = 502u16,
                ratio = 0.5,
                nan = f64::NAN,
                ok = false,
                delta = -4i64,
                error = &error as &dyn std::error::Error,
                debug = ?"q\u{1}",
                "upstream \"failed\""
            );
        });
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields)
                    .event_format(JsonLines)
                    .with_writer({
                        let writer = buffer.clone();
                        move || writer.clone()
                    }),
            ),
            || {
                tracing::info!("outside");
                tracing_log::format_trace(
                    &tracing_log::log::Record::builder()
                        .args(format_args!("from log"))
                        .level(tracing_log::log::Level::Warn)
                        .target("some_crate::module")
                        .build(),
                )
                .unwrap();
            },
        );
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["message"], "upstream \"failed\"");
        assert_eq!(line["fields"]["status"], 502);
        assert_eq!(line["fields"]["ratio"], 0.5);
        assert_eq!(line["fields"]["nan"], "NaN");
        assert_eq!(line["fields"]["ok"], false);
        assert_eq!(line["fields"]["delta"], -4);
        assert_eq!(line["fields"]["error"], "bad\nline");
        assert_eq!(line["fields"]["debug"], "\"q\\u{1}\"");
        assert_eq!(line["span"]["request_id"], "r-1");
        assert_eq!(line["span"]["trace_id"], "t\"1");
        assert_eq!(line["span"]["n"], 3);
        assert_eq!(line["span"]["name"], "call");
        assert!(line["target"].as_str().unwrap().contains("json"));
        let stamp = line["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{stamp}"
        );
        assert!(lines[1].get("span").is_none());
        assert_eq!(lines[1]["fields"]["message"], "outside");
        assert_eq!(lines[2]["target"], "some_crate::module");
        assert_eq!(lines[2]["level"], "WARN");
        assert_eq!(
            lines[2]["fields"],
            serde_json::json!({"message": "from log"})
        );
    }
}
