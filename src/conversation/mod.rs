//! Conversations with parents: the pure engine ([`engine::handle`] over a school snapshot),
//! its texts, input handling, sessions and the transcript. Running a turn against the
//! database (loading the session, finding the facts the engine asks for, the model fallback,
//! storing the result) is the pipeline's (`pipeline::converse`).

pub mod analytics;
pub mod engine;
pub mod feed;
pub mod handoff;
pub mod input;
pub mod reply;
pub mod store;
pub mod texts;
pub mod transcript;
pub mod writes;

use std::sync::LazyLock;

pub use engine::{
    Action, Effect, EngineConfig, Facts, Followup, Inbound, Need, Outcome, Purpose, Session, State,
    World,
};
pub use reply::{Choice, Reply};
pub use texts::Texts;

static TEXTS: LazyLock<Texts> =
    LazyLock::new(|| Texts::embedded().expect("templates under prompts/replies/ compile (tested)"));

/// The embedded reply texts, loaded once per process.
pub fn texts() -> &'static Texts {
    &TEXTS
}

/// The conversation settings, checked when the configuration is loaded.
impl crate::config::Check for crate::config::Conversation {
    fn check(&mut self) -> Result<(), crate::config::Problem> {
        use crate::config::keys::conversation as key;
        for (key, value) in [
            (key::session_idle_minutes, self.session_idle_minutes),
            (key::pin_max_failures, self.pin_max_failures),
            (key::pin_lockout_minutes, self.pin_lockout_minutes),
        ] {
            key.require(value > 0, "must be at least 1")?;
        }
        key::snapshot_cache_mb.require_within(
            self.snapshot_cache_mb,
            1..=65_536,
            "megabytes (64 GiB)",
        )
    }
}

/// The engine's tunables, from the conversation settings.
impl From<&crate::config::Conversation> for EngineConfig {
    fn from(settings: &crate::config::Conversation) -> Self {
        Self {
            idle_timeout: chrono::Duration::minutes(settings.session_idle_minutes.into()),
            max_pin_failures: settings.pin_max_failures,
            lockout: chrono::Duration::minutes(settings.pin_lockout_minutes.into()),
        }
    }
}
