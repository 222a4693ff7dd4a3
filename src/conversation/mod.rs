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
