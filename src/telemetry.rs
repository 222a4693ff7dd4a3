//! Log setup: `CHATBOT_LOG` (or `RUST_LOG`) filters, text or JSON lines on stderr, so stdout
//! stays clean for commands that print data (`seed-demo --json`, `openapi`).

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
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        // Reporting a failed log write uses eprintln!, which panics when stderr is closed and
        // would take the request (or the shutdown handler) down with it.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
