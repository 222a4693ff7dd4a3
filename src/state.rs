//! What the HTTP handlers share: the service's components, composed once in `app.rs`. Only
//! the API, the HTTP routes, the CLI and the eval harness (which drive the service from
//! outside) see it; each component below gets just what it needs.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::channels::engagement::Site;
use crate::channels::inbound::Webhooks;
use crate::config::Settings;
use crate::crypto::SecretKey;
use crate::metrics::Metrics;
use crate::pipeline::{JobQueue, Pipeline, Turns};
use crate::reports::Reports;

/// Shared, cheap-to-clone application state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Data database.
    pub db: DatabaseConnection,
    /// Job queue.
    pub queue: JobQueue,
    /// Server secret.
    pub secret: SecretKey,
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Counters and histograms served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The message pipeline's workers: turns, delivery, background work.
    pub pipeline: Pipeline,
    /// The WhatsApp webhooks (Meta, Twilio).
    pub webhooks: Webhooks,
    /// The website engagement flow.
    pub site: Site,
    /// Bearer token checks; `None` when no JWT key is configured.
    pub jwt: Option<Arc<crate::api::jwt::JwtVerifier>>,
    /// API requests per credential.
    pub api_limits: Arc<crate::api::limits::RateLimiter>,
    /// Event streams open per school.
    pub streams: Arc<crate::api::limits::StreamSlots>,
}

impl AppState {
    /// What running a conversation's turn needs (the API's message endpoint, the CLI's chat).
    pub fn turns(&self) -> &Turns {
        &self.pipeline.turns
    }

    /// Report cards.
    pub fn reports(&self) -> &Reports {
        &self.pipeline.reports
    }

    /// Forget the app secrets kept in memory (a number was registered, rotated or removed), so
    /// the next webhook reads them again; other processes notice within a second of a
    /// signature that no longer matches.
    pub fn forget_app_secrets(&self) {
        self.webhooks.app_secrets.forget();
    }
}
