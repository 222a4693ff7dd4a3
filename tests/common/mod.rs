//! Integration harness: the real application on a random port, with a fresh database per test.
//!
//! Every test runs in two variants (see [`variants!`]):
//! - `embedded`: SQLite data and SQLite job queue in a temporary data dir (always);
//! - `services`: PostgreSQL (`TEST_DATABASE_URL`, a fresh database per test, dropped afterwards)
//!   and Redis (`TEST_REDIS_URL`, a unique queue namespace, its keys deleted afterwards). Without
//!   either variable it is skipped with a note on stderr; `.ci/run` sets both.
#![allow(dead_code)]

pub mod browser;
pub mod fixture;
pub mod redis_server;

use std::net::SocketAddr;
use std::time::Duration;

use chatbot::app::Application;
use chatbot::config::{SecretUrl, Settings};
use chatbot::state::AppState;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which engines a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// SQLite + SQLite queue.
    Embedded,
    /// PostgreSQL and/or Redis from the environment.
    Services,
}

/// Generate `embedded` and `services` tests for each async fn `name(Variant)`.
#[macro_export]
macro_rules! variants {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::common::Variant::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn services() {
                super::$name($crate::common::Variant::Services).await
            }
        }
    )*};
}

/// A fresh PostgreSQL database, dropped when this guard is dropped.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sea_orm::ConnectionTrait;
                if let Ok(db) = sea_orm::Database::connect(&admin_url).await {
                    let _ = db
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = db.close().await;
                }
            });
        })
        .join();
    }
}

/// Redis keys of one test's queue namespace, deleted when this guard is dropped.
struct RedisNamespace {
    url: String,
    namespace: String,
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        let (url, pattern) = (self.url.clone(), format!("{}:*", self.namespace));
        let _ = std::thread::spawn(move || {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(mut conn) = client.get_connection()
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        })
        .join();
    }
}

/// The token tests read `/metrics` with (`CHATBOT_METRICS_TOKEN`).
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// Engines and settings for one test, before the app is started.
pub struct TestEnv {
    pub settings: Settings,
    pub variant: Variant,
    dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
    redis: Option<RedisNamespace>,
}

fn env_url(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl TestEnv {
    /// Prepare settings and fresh engines; `None` (test skipped) for `Services` without URLs.
    pub async fn new(variant: Variant) -> Option<Self> {
        // Server logs on stderr when asked for (CHATBOT_LOG=debug cargo test ...).
        if std::env::var_os("CHATBOT_LOG").is_some() {
            chatbot::telemetry::init(chatbot::config::LogFormat::Text);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let namespace = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut settings = Settings::default();
        settings.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.storage.data_dir = dir.path().to_path_buf();
        settings.secrets.secret_key = Some(SecretString::from(
            "test-secret-key-0123456789abcdef-0123456789".to_string(),
        ));
        settings.queue.namespace = namespace.clone();
        settings.server.metrics_token = Some(SecretString::from(METRICS_TOKEN.to_string()));
        settings.server.shutdown_timeout_secs = 5;
        let (mut pg, mut redis) = (None, None);
        if variant == Variant::Services {
            let (db_url, redis_url) = (env_url("TEST_DATABASE_URL"), env_url("TEST_REDIS_URL"));
            if db_url.is_none() && redis_url.is_none() {
                eprintln!(
                    "skipped: set TEST_DATABASE_URL and/or TEST_REDIS_URL to run the services variant"
                );
                return None;
            }
            if let Some(admin_url) = db_url {
                let name = format!("chatbot_{}", namespace.replace('-', "_"));
                create_pg_database(&admin_url, &name).await;
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                settings.storage.database_url = Some(SecretUrl::new(url.to_string()));
                pg = Some(PgDatabase { admin_url, name });
            }
            if let Some(url) = redis_url {
                settings.queue.redis_url = Some(SecretUrl::new(url.clone()));
                redis = Some(RedisNamespace { url, namespace });
            }
        }
        Some(Self {
            settings,
            variant,
            dir,
            pg,
            redis,
        })
    }

    /// Start the application with these settings.
    pub async fn start(self) -> TestApp {
        let application = Application::build(self.settings.clone())
            .await
            .expect("application builds");
        TestApp::from_application(application, self)
    }
}

async fn create_pg_database(admin_url: &str, name: &str) {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL unreachable: {e}"));
    db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let _ = db.close().await;
}

/// A running application and an HTTP client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The metrics listener, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    token: CancellationToken,
    handle: Option<JoinHandle<chatbot::error::Result<()>>>,
    // Dropped last: the database and namespace outlive the app (taken only by `restart`).
    env: Option<TestEnv>,
}

impl TestApp {
    /// The two schools most tests compare (fixture `alpha`, n = 1, and `beta`, n = 2), which
    /// share natural keys so a missing tenant filter shows.
    #[allow(dead_code)]
    pub async fn two_schools(&self) -> (fixture::School, fixture::School) {
        let (db, key) = (&self.state.db, &self.state.secret);
        (
            fixture::school(db, key, "alpha", 1).await,
            fixture::school(db, key, "beta", 2).await,
        )
    }

    /// Call the REST API at `path` (under `/api/v1/chatbot`) with an API key and an optional
    /// JSON body: the status and the JSON answer (`null` when it is not JSON).
    #[allow(dead_code)]
    pub async fn api(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = self
            .http
            .request(method, self.url(&format!("/api/v1/chatbot{path}")))
            .header("X-API-KEY", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// A parent (`digits`, the phone without its `+`) writes `words` to school `wa`'s number:
    /// a text message in a webhook signed as Meta signs it, answered `200`.
    pub async fn parent_says(
        &self,
        wa: &chatbot::demo::DemoWhatsapp,
        digits: &str,
        id: &str,
        words: &str,
    ) {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550100001", "phone_number_id": wa.phone_number_id},
                "contacts": [{"profile": {"name": "Parent"}, "wa_id": digits}],
                "messages": [{"from": digits, "id": id, "timestamp": "1763800000",
                              "type": "text", "text": {"body": words}}]
            }}]}]
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let r = self
            .http
            .post(self.url("/api/v1/chatbot/webhooks/whatsapp/"))
            .header("content-type", "application/json")
            .header(
                "X-Hub-Signature-256",
                chatbot::channels::whatsapp_cloud::sign(&bytes, &wa.app_secret),
            )
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
    }

    /// The id of the first conversation waiting for staff in the school of `key`, once there
    /// is one.
    pub async fn waiting_conversation(&self, key: &str) -> i64 {
        eventually(
            "a conversation waiting for staff",
            Duration::from_secs(30),
            || async {
                let (_, page) = self
                    .api(
                        key,
                        reqwest::Method::GET,
                        "/conversations/?status=waiting",
                        None,
                    )
                    .await;
                page["results"][0]["id"].as_i64()
            },
        )
        .await
    }

    /// Staff of the school of `key` take conversation `id` over (`200`) and answer `text`
    /// (`202`).
    pub async fn staff_answer(&self, key: &str, id: i64, text: &str) {
        let (status, body) = self
            .api(
                key,
                reqwest::Method::POST,
                &format!("/conversations/{id}/takeover/"),
                None,
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        let (status, body) = self
            .api(
                key,
                reqwest::Method::POST,
                &format!("/conversations/{id}/reply/"),
                Some(serde_json::json!({ "text": text })),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    }

    /// A running app with the demo schools, sending to a mock Graph API; `None` when the
    /// variant is skipped.
    #[allow(dead_code)]
    pub async fn with_demo_and_graph(
        v: Variant,
    ) -> Option<(
        Self,
        chatbot::channels::mock_graph::MockGraph,
        chatbot::demo::DemoCredentials,
    )> {
        let mut env = TestEnv::new(v).await?;
        let mock = chatbot::channels::mock_graph::MockGraph::start(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        env.settings.whatsapp.api_base = mock.base_url();
        let app = env.start().await;
        let creds = chatbot::demo::seed(&app.state.db, &app.state.secret)
            .await
            .unwrap();
        Some((app, mock, creds))
    }

    /// `POST get-chatbot/` with an API key: the status and the JSON answer.
    #[allow(dead_code)]
    pub async fn get_chatbot(
        &self,
        key: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let r = self
            .http
            .post(self.url("/api/v1/chatbot/get-chatbot/"))
            .header("X-API-KEY", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            r.status(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Fresh engines and a running app; `None` when the variant is skipped.
    pub async fn spawn(variant: Variant) -> Option<Self> {
        Some(TestEnv::new(variant).await?.start().await)
    }

    fn from_application(application: Application, env: TestEnv) -> Self {
        let addr = application.local_addr();
        let metrics_addr = application.metrics_addr();
        let state = application.state().clone();
        let token = application.shutdown_token();
        let handle = tokio::spawn(application.run());
        Self {
            addr,
            metrics_addr,
            base: format!("http://{addr}"),
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            token,
            handle: Some(handle),
            env: Some(env),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// The metrics text, read with the metrics token.
    #[allow(dead_code)]
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("request sent");
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        r.text().await.unwrap()
    }

    /// The variant this app runs.
    pub fn variant(&self) -> Variant {
        self.env().variant
    }

    /// Settings in force.
    pub fn settings(&self) -> &Settings {
        &self.env().settings
    }

    fn env(&self) -> &TestEnv {
        self.env.as_ref().expect("the app owns its engines")
    }

    /// Stop gracefully and start again on the same engines (database, queue, data dir), with
    /// `change` applied to the settings first: a restart of the service, as after an upgrade.
    #[allow(dead_code)]
    pub async fn restart(mut self, change: impl FnOnce(&mut Settings)) -> TestApp {
        self.halt().await.expect("app stopped cleanly");
        let mut env = self.env.take().expect("the app owns its engines");
        change(&mut env.settings);
        env.start().await
    }

    /// Stop gracefully and return what `run` returned.
    pub async fn stop(mut self) -> chatbot::error::Result<()> {
        self.halt().await
    }

    async fn halt(&mut self) -> chatbot::error::Result<()> {
        self.token.cancel();
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(20), handle)
            .await
            .expect("app stops within 20 s")
            .expect("app task did not panic")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Poll `check` until it returns `Some`, or panic after `deadline` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One role of a split deployment, running in this process as its own application: the web
/// role (`serve --no-workers`) or a workers-only role (`chatbot worker`).
pub struct Role {
    /// `http://addr` of the web role; `None` for workers.
    pub base: Option<String>,
    /// Its state (database, queue...).
    pub state: AppState,
    token: CancellationToken,
    handle: JoinHandle<chatbot::error::Result<()>>,
}

impl Role {
    /// The web role alone, bound to a free port.
    pub async fn web(settings: &Settings) -> Self {
        let app = Application::build(settings.clone())
            .await
            .expect("web role builds")
            .without_workers();
        let base = Some(format!("http://{}", app.local_addr()));
        let state = app.state().clone();
        let token = app.shutdown_token();
        Self {
            base,
            state,
            token,
            handle: tokio::spawn(app.run()),
        }
    }

    /// Workers alone, with their own connections, as another process would have.
    pub async fn worker(settings: &Settings) -> Self {
        let state = chatbot::app::build_state(settings.clone())
            .await
            .expect("worker state builds");
        let app = Application::workers_only(state.clone(), std::time::Instant::now());
        let token = app.shutdown_token();
        Self {
            base: None,
            state,
            token,
            handle: tokio::spawn(app.run()),
        }
    }

    /// Stop gracefully; panics if the role failed.
    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("role stops within 20 s")
            .expect("role task did not panic")
            .expect("role ran without error");
    }
}

/// The ingest job the webhook queues for a text "hi" with this message id.
pub fn ingest_job(
    business: &str,
    from: &str,
    message_id: &str,
) -> chatbot::pipeline::turn::IngestJob {
    chatbot::pipeline::turn::IngestJob::meta_text(business, from, message_id, "hi")
}
