//! What HTTP handlers and job workers share.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::channels::graph::GraphClient;
use crate::channels::twilio::TwilioClient;
use crate::config::Settings;
use crate::crypto::SecretKey;
use crate::metrics::Metrics;
use crate::pipeline::JobQueue;

/// App secrets as read at an instant.
pub type SecretsSnapshot = (
    std::time::Instant,
    Arc<crate::channels::whatsapp_cloud::AppSecrets>,
);

/// Shared, cheap-to-clone application state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Data database.
    pub db: DatabaseConnection,
    /// Job queue.
    pub queue: JobQueue,
    /// Where webhooks hand verified deliveries to be stored (group commit).
    pub intake: crate::pipeline::accept::Intake,
    /// Server secret.
    pub secret: SecretKey,
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Graph API client (one connection pool for every send).
    pub graph: GraphClient,
    /// Twilio Messages API client.
    pub twilio: TwilioClient,
    /// Counters and histograms served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The schools' Meta app secrets, kept briefly so a webhook does not read them every time.
    pub secrets_cache: Arc<std::sync::Mutex<Option<SecretsSnapshot>>>,
    /// Bearer token checks; `None` when no JWT key is configured.
    pub jwt: Option<Arc<crate::api::jwt::JwtVerifier>>,
    /// API requests per credential.
    pub api_limits: Arc<crate::api::limits::RateLimiter>,
    /// The LLM fallback; `None` when no endpoint is configured (rules only).
    pub llm: Option<Arc<crate::llm::Llm>>,
    /// The website engagement flow's catalogue cache and open connections.
    pub engagement: Arc<crate::channels::engagement::Engagement>,
    /// Snapshots of the schools in use, replaced when a school's data version moves.
    pub snapshots: Arc<crate::school::snapshot::cache::SnapshotCache>,
    /// Where the turns of this process commit their writes together (group commit).
    pub turn_writes: Arc<crate::conversation::writes::TurnWriter>,
}

impl AppState {
    /// Forget the app secrets kept in memory (a number was registered, rotated or removed), so
    /// the next webhook reads them again; other processes notice within a second of a
    /// signature that no longer matches.
    pub fn forget_app_secrets(&self) {
        *self.secrets_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
