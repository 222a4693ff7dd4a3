//! Log setup: `CHATBOT_LOG` (or `RUST_LOG`) filters, text or JSON lines on stderr, so stdout
//! stays clean for commands that print data (`seed-demo --json`, `openapi`).
//!
//! One event is one line, whatever it carries: values from outside (a webhook's message id, a
//! model's tool name) may hold newlines or other control characters, and in text logs these are
//! escaped (`\n`, `\u{1b}`), so no one can forge a log line. JSON lines escape them already.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,apalis=warn,apalis_core=warn,apalis_sqlite=warn,apalis_redis=warn,poem=warn";

/// Install the global subscriber; later calls are ignored (tests start many apps).
pub fn init(format: LogFormat) {
    let filter = std::env::var("CHATBOT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(move || OneLine {
            inner: std::io::stderr(),
            ansi,
        })
        .with_ansi(ansi)
        // Reporting a failed log write uses eprintln!, which panics when stderr is closed and
        // would take the request (or the shutdown handler) down with it.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A writer that keeps each event on one line: every control character but the event's final
/// newline (and, on a terminal, the formatter's own colour escapes) is written escaped.
struct OneLine<W> {
    inner: W,
    ansi: bool,
}

/// `buf` (one formatted event) with its control characters escaped; `None` when it has none.
fn escape_controls(buf: &[u8], ansi: bool) -> Option<Vec<u8>> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let unsafe_byte = |b: u8| b.is_ascii_control() && b != b'\t' && !(ansi && b == 0x1b);
    if !body.iter().copied().any(unsafe_byte) {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if unsafe_byte(b) => out.extend_from_slice(format!("\\u{{{b:x}}}").as_bytes()),
            b => out.push(b),
        }
    }
    if body.len() < buf.len() {
        out.push(b'\n');
    }
    Some(out)
}

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over each event whole, in one `write_all`.
        match escape_controls(buf, self.ansi) {
            Some(escaped) => self.inner.write_all(&escaped)?,
            None => self.inner.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn an_event_stays_on_one_line() {
        let forged = b"INFO duplicate message_id=x\n2026-12-05 INFO forged\r\x07\n";
        let out = escape_controls(forged, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "INFO duplicate message_id=x\\n2026-12-05 INFO forged\\r\\u{7}\n"
        );
        assert_eq!(escape_controls(b"INFO plain\tline\n", false), None);
        assert_eq!(escape_controls(b"\x1b[32mINFO\x1b[0m\n", true), None);
        assert!(escape_controls(b"\x1b[32mINFO\x1b[0m\n", false).is_some());
    }
}
