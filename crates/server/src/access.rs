//! The access log: one line per request, once its response is sent, in the
//! shape the rest of the log has (`tracing`'s JSON or plain lines, in the
//! request's span, which carries its id).
//!
//! When logs go to this process's own buffer ([`crate::logwriter`]), the
//! line is written here by hand: `tracing`'s formatter takes every field
//! through `fmt::Debug` and a visitor, which was ~7 % of a proxied
//! request's instructions, and this is the one line every request writes.
//! Otherwise (tests with their own subscriber, a terminal with colours) it
//! is an ordinary `tracing` event in the request's span. A test below
//! checks that both write the same line.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, Method, Uri};
use tracing::Level;

use crate::config::LogFormat;
use crate::logwriter::LogBuffer;

/// The target the line has always had (filters name it).
const TARGET: &str = "switchyard_server::front";
const MESSAGE: &str = "finished processing request";

static DIRECT: OnceLock<(LogBuffer, LogFormat)> = OnceLock::new();

/// Access lines go straight to `buffer`, which must be the writer of the
/// installed subscriber, in its format (without ANSI colours).
pub(crate) fn write_to(buffer: LogBuffer, format: LogFormat) {
    let _ = DIRECT.set((buffer, format));
}

/// What one access line says.
pub struct Access {
    pub request_id: HeaderValue,
    pub method: Method,
    pub uri: Uri,
    pub status: u16,
    pub elapsed: Duration,
}

impl Access {
    fn id(&self) -> &str {
        self.request_id.to_str().unwrap_or("")
    }

    fn level(&self) -> Level {
        if self.status >= 500 {
            Level::WARN
        } else {
            Level::INFO
        }
    }

    /// Writes the line; `span` is the request's (used when the line goes
    /// through `tracing`).
    pub fn log(self, span: &tracing::Span) {
        let enabled = match self.level() {
            Level::WARN => tracing::enabled!(target: TARGET, Level::WARN),
            _ => tracing::enabled!(target: TARGET, Level::INFO),
        };
        if !enabled {
            return;
        }
        match DIRECT.get() {
            Some((buffer, format)) => {
                let mut line = Vec::with_capacity(320);
                self.format(*format, SystemTime::now(), &mut line);
                buffer.write_line(&line);
            }
            None => self.event(span),
        }
    }

    fn event(&self, span: &tracing::Span) {
        let (method, path) = (self.method.as_str(), self.uri.path());
        let (status, latency_ms) = (self.status, millis(self.elapsed));
        span.in_scope(|| {
            if self.level() == Level::WARN {
                tracing::warn!(target: TARGET, method, path, status, latency_ms, "{MESSAGE}");
            } else {
                tracing::info!(target: TARGET, method, path, status, latency_ms, "{MESSAGE}");
            }
        });
    }

    /// The line as `tracing-subscriber` writes it for [`Self::event`] in a
    /// span `request{request_id}`.
    fn format(&self, format: LogFormat, now: SystemTime, out: &mut Vec<u8>) {
        let time = humantime::format_rfc3339_micros(now);
        let level = self.level();
        let ms = millis(self.elapsed);
        let _ = match format {
            LogFormat::Json => {
                let _ = write!(out, r#"{{"timestamp":"{time}","level":"{level}","fields":{{"message":"{MESSAGE}","method":"#);
                let _ = serde_json::to_writer(&mut *out, self.method.as_str());
                out.extend_from_slice(br#","path":"#);
                let _ = serde_json::to_writer(&mut *out, self.uri.path());
                let _ = write!(out, r#","status":{},"latency_ms":{ms:?}}},"target":"{TARGET}","span":{{"request_id":"#, self.status);
                let _ = serde_json::to_writer(&mut *out, self.id());
                writeln!(out, r#","name":"request"}}}}"#)
            }
            LogFormat::Plain => writeln!(
                out,
                "{time} {level:>5} request{{request_id={}}}: {TARGET}: {MESSAGE} method={:?} path={:?} status={} latency_ms={ms:?}",
                self.id(),
                self.method.as_str(),
                self.uri.path(),
                self.status
            ),
        };
    }
}

/// Milliseconds with microsecond resolution, as an `f64` for the field.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// The line `tracing-subscriber` writes for the same request.
    fn through_tracing(a: &Access, format: LogFormat) -> String {
        let out = Captured::default();
        let builder = tracing_subscriber::fmt().with_ansi(false).with_writer(out.clone());
        let dispatch: tracing::Dispatch = match format {
            LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).into(),
            LogFormat::Plain => builder.into(),
        };
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("request", request_id = %a.id());
            a.event(&span);
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn by_hand(a: &Access, format: LogFormat) -> String {
        let mut out = Vec::new();
        a.format(format, SystemTime::now(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn access(id: &'static str, status: u16, micros: u64) -> Access {
        Access {
            request_id: HeaderValue::from_static(id),
            method: Method::POST,
            uri: Uri::from_static("/v1/chat/completions?x=1"),
            status,
            elapsed: Duration::from_micros(micros),
        }
    }

    #[test]
    fn json_lines_match_tracing_s() {
        for a in [
            access("req-7f3a", 200, 1234),
            access(r#"quote"and\slash"#, 502, 3_000_017),
            access("0193a0b4-1c2d-7e8f-9a0b-1c2d3e4f5a6b", 429, 0),
        ] {
            let mut theirs: serde_json::Value = serde_json::from_str(&through_tracing(&a, LogFormat::Json)).unwrap();
            let mut ours: serde_json::Value = serde_json::from_str(&by_hand(&a, LogFormat::Json)).unwrap();
            let stamp = ours["timestamp"].as_str().unwrap().to_string();
            assert!(
                stamp.ends_with('Z') && stamp.len() == "2026-12-03T10:21:00.123456Z".len(),
                "{stamp}"
            );
            theirs["timestamp"] = "-".into();
            ours["timestamp"] = "-".into();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn plain_lines_match_tracing_s() {
        for a in [access("req-7f3a", 200, 1234), access("r", 503, 999_999)] {
            let theirs = through_tracing(&a, LogFormat::Plain);
            let ours = by_hand(&a, LogFormat::Plain);
            // Everything after the timestamp, byte for byte.
            let rest = |l: &str| l.split_once(' ').unwrap().1.to_string();
            assert_eq!(rest(&ours), rest(&theirs));
            assert!(ours.ends_with('\n'));
        }
    }
}
