//! Typed settings: built-in defaults < optional TOML file < environment variables.
//!
//! Secrets (database and Redis passwords, the server secret key) are wrapped so that
//! neither `Debug` nor logs ever show them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Default request body limit: Meta's webhook contract allows up to 3 MB; a little headroom.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Every setting the service reads, after merging all sources.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the HTTP server binds (`CHATBOT_LISTEN`).
    pub listen: SocketAddr,
    /// Directory for the embedded databases, the secret key file and generated files (`CHATBOT_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Data database (`DATABASE_URL`); `None` means a SQLite file in the data dir.
    pub database_url: Option<SecretUrl>,
    /// Job queue (`REDIS_URL`); `None` means the embedded SQLite queue in the data dir.
    pub redis_url: Option<SecretUrl>,
    /// Server secret (`CHATBOT_SECRET_KEY`); `None` means a key file created in the data dir.
    pub secret_key: Option<SecretString>,
    /// The server secret being replaced (`CHATBOT_PREVIOUS_SECRET_KEY`), during a rotation:
    /// what it sealed or hashed still opens, and is sealed or hashed again under the new one.
    pub previous_secret_key: Option<SecretString>,
    /// Bearer token `/metrics` asks for on the public listener (`CHATBOT_METRICS_TOKEN`);
    /// without it (or with `metrics_listen`) the public listener does not serve metrics.
    pub metrics_token: Option<SecretString>,
    /// A separate address serving `/metrics` only, e.g. 127.0.0.1:9090
    /// (`CHATBOT_METRICS_LISTEN`).
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds a client has to send a request's headers, and then its body
    /// (`CHATBOT_REQUEST_READ_TIMEOUT`).
    pub request_read_timeout_secs: u64,
    /// `text` or `json` log lines on stderr (`CHATBOT_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Largest request body accepted, in bytes (`CHATBOT_BODY_LIMIT`).
    pub body_limit: usize,
    /// Prefix of every queue name, so several deployments can share one Redis (`CHATBOT_QUEUE_NAMESPACE`).
    pub queue_namespace: String,
    /// Seconds given to in-flight requests and jobs on shutdown (`CHATBOT_SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout_secs: u64,
    /// Idle minutes after which a conversation starts again at the menu (`CHATBOT_SESSION_IDLE_MINUTES`).
    pub session_idle_minutes: u32,
    /// Wrong PINs in a row before PIN entry is paused (`CHATBOT_PIN_MAX_FAILURES`).
    pub pin_max_failures: u32,
    /// Minutes PIN entry stays paused (`CHATBOT_PIN_LOCKOUT_MINUTES`).
    pub pin_lockout_minutes: u32,
    /// Megabytes of school snapshots kept per process (`CHATBOT_SNAPSHOT_CACHE_MB`).
    pub snapshot_cache_mb: u32,
    /// Graph API base for sending WhatsApp messages (`CHATBOT_WHATSAPP_API_BASE`).
    pub whatsapp_api_base: String,
    /// Twilio REST API base for sending WhatsApp messages (`CHATBOT_TWILIO_API_BASE`).
    pub twilio_api_base: String,
    /// The public base URL providers call, e.g. `https://bot.example.org` (`CHATBOT_PUBLIC_URL`);
    /// Twilio signs the full URL, which a proxy in front may rewrite. Unset: the request's
    /// `Host` and `X-Forwarded-Proto` headers.
    pub public_url: Option<String>,
    /// Messages per second sent from one business number (`CHATBOT_SEND_RATE`; Meta's default
    /// limit is 80).
    pub send_rate_per_second: u32,
    /// Seconds after which the jobs of a worker that stopped heart-beating are run again by
    /// another worker (`CHATBOT_ORPHAN_TIMEOUT_SECS`).
    pub orphan_timeout_secs: u64,
    /// Inbound messages handled at once per worker process, each conversation still one at a
    /// time and in order (`CHATBOT_INGEST_CONCURRENCY`).
    pub ingest_concurrency: usize,
    /// WhatsApp template sent instead of a free-form reply outside the 24-hour customer-service
    /// window: a Meta template name, or a Twilio Content SID (`HX...`) (`CHATBOT_WHATSAPP_TEMPLATE`).
    /// Unset: such replies are skipped and logged.
    pub whatsapp_template: Option<String>,
    /// Language code of that template (`CHATBOT_WHATSAPP_TEMPLATE_LANGUAGE`).
    pub whatsapp_template_language: String,
    /// The one JWT algorithm accepted (`CHATBOT_JWT_ALGORITHM`): HS256/384/512 with
    /// `jwt_secret`, RS*/PS*/ES256/ES384/EdDSA with `jwt_public_key_file`.
    pub jwt_algorithm: String,
    /// Shared secret of HS* tokens (`CHATBOT_JWT_SECRET`); with no secret and no public key,
    /// bearer tokens are refused and only API keys work.
    pub jwt_secret: Option<SecretString>,
    /// PEM public key file of RS*/PS*/ES*/EdDSA tokens (`CHATBOT_JWT_PUBLIC_KEY_FILE`).
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` of tokens (`CHATBOT_JWT_ISSUER`); needed when JWT is on.
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens (`CHATBOT_JWT_AUDIENCE`).
    pub jwt_audience: String,
    /// Sustained API requests per minute per credential (`CHATBOT_API_RATE_PER_MINUTE`).
    pub api_rate_per_minute: u32,
    /// Requests a credential may make at once above that pace (`CHATBOT_API_RATE_BURST`).
    pub api_rate_burst: u32,
    /// Base URL of an OpenAI-compatible API for the LLM fallback, e.g. `https://api.openai.com/v1` (`CHATBOT_LLM_BASE_URL`); unset: the bot answers by its rules only.
    pub llm_base_url: Option<String>,
    /// Model name (`CHATBOT_LLM_MODEL`).
    pub llm_model: String,
    /// API key of that endpoint (`CHATBOT_LLM_API_KEY`).
    pub llm_api_key: Option<SecretString>,
    /// Milliseconds a parent waits at most for the model, retries included, before the canned reply (`CHATBOT_LLM_TIMEOUT_MS`).
    pub llm_timeout_ms: u64,
    /// Retries of a call that got 429, 5xx or no connection (`CHATBOT_LLM_MAX_RETRIES`).
    pub llm_max_retries: u32,
    /// Most prompt tokens per call; the least important context is dropped to fit (`CHATBOT_LLM_PROMPT_BUDGET`).
    pub llm_prompt_budget: usize,
    /// Most tokens the model may write per answer (`CHATBOT_LLM_MAX_COMPLETION_TOKENS`).
    pub llm_max_completion_tokens: u32,
    /// Tokens each school may use per day (UTC) before the canned reply (`CHATBOT_LLM_DAILY_TOKENS`).
    pub llm_daily_tokens: u64,
    /// Longest model answer sent, in characters (`CHATBOT_LLM_MAX_ANSWER_CHARS`).
    pub llm_max_answer_chars: usize,
    /// Folder with `system.j2` and `user.j2` to use instead of the embedded `prompts/llm/` (`CHATBOT_LLM_PROMPTS_DIR`).
    pub llm_prompts_dir: Option<PathBuf>,
    /// Minutes a report card's download link works (`CHATBOT_REPORT_LINK_TTL_MINUTES`).
    pub report_link_ttl_minutes: u32,
    /// Folder of report-card PDFs (`CHATBOT_REPORTS_DIR`); `None`: `<data dir>/reports`.
    pub reports_dir: Option<PathBuf>,
    /// Days report cards are kept before the periodic cleanup deletes them (`CHATBOT_REPORT_RETENTION_DAYS`).
    pub report_retention_days: u32,
    /// Days parents' transcripts (and the record of staff actions on them) are kept before the
    /// periodic cleanup deletes them (`CHATBOT_TRANSCRIPT_RETENTION_DAYS`).
    pub transcript_retention_days: u32,
    /// Minutes between two periodic cleanups (`CHATBOT_CLEANUP_INTERVAL_MINUTES`).
    pub cleanup_interval_minutes: u32,
    /// Milliseconds between two messages of a chunk on the engagement WebSocket (`CHATBOT_ENGAGEMENT_INTERVAL_MS`).
    pub engagement_interval_ms: u64,
    /// School (schema name) whose report catalogue the engagement WebSocket serves when the request's host is no school's domain (`CHATBOT_ENGAGEMENT_TENANT`).
    pub engagement_tenant: Option<String>,
    /// Key of the payment system's HMAC-SHA256 over `report_url_params` (`CHATBOT_REPORT_HASH_SECRET`); unset: `/ws/chat-success` refuses paid reports.
    pub report_hash_secret: Option<SecretString>,
    /// Seconds an engagement WebSocket may wait for the visitor before it is closed (`CHATBOT_ENGAGEMENT_IDLE_SECS`).
    pub engagement_idle_secs: u64,
    /// Largest client message on the engagement WebSocket, in bytes (`CHATBOT_ENGAGEMENT_MAX_MESSAGE_BYTES`).
    pub engagement_max_message_bytes: usize,
    /// Open engagement WebSockets allowed per client address; 0: no cap (`CHATBOT_ENGAGEMENT_MAX_PER_ADDRESS`).
    pub engagement_max_per_address: u32,
    /// Origins (`https://shop.example`) allowed to open engagement WebSockets; empty: any (`CHATBOT_ENGAGEMENT_ALLOWED_ORIGINS`, comma-separated).
    pub engagement_allowed_origins: Vec<String>,
    /// Header a trusted reverse proxy puts the client's address in, e.g. `X-Real-IP` (`CHATBOT_CLIENT_IP_HEADER`); unset: the socket's peer address.
    pub client_ip_header: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("expected `text` or `json`, got `{other}`")),
        }
    }
}

/// A connection URL that may carry a password; `Debug` and `Display` hide the password.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    /// Wrap a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }
    /// The full URL, password included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Hide the password in `scheme://user:password@host/...`; other URLs are returned unchanged.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None if userinfo.is_empty() => String::new(),
        None => "***".to_string(),
    };
    format!("{}://{}@{}", &url[..scheme_end], user, &rest[at + 1..])
}

/// A setting that could not be read; says which source and which key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a value of the wrong shape.
    #[error("invalid value for {name}: {message}")]
    Env {
        /// Variable name.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The optional layer every source provides; unknown keys in a file are an error (typos fail loudly).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    redis_url: Option<String>,
    secret_key: Option<String>,
    previous_secret_key: Option<String>,
    metrics_token: Option<String>,
    metrics_listen: Option<SocketAddr>,
    request_read_timeout_secs: Option<u64>,
    log_format: Option<LogFormat>,
    body_limit: Option<usize>,
    queue_namespace: Option<String>,
    shutdown_timeout_secs: Option<u64>,
    session_idle_minutes: Option<u32>,
    pin_max_failures: Option<u32>,
    pin_lockout_minutes: Option<u32>,
    snapshot_cache_mb: Option<u32>,
    whatsapp_api_base: Option<String>,
    twilio_api_base: Option<String>,
    public_url: Option<String>,
    send_rate_per_second: Option<u32>,
    orphan_timeout_secs: Option<u64>,
    ingest_concurrency: Option<usize>,
    whatsapp_template: Option<String>,
    whatsapp_template_language: Option<String>,
    jwt_algorithm: Option<String>,
    jwt_secret: Option<String>,
    jwt_public_key_file: Option<PathBuf>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    api_rate_per_minute: Option<u32>,
    api_rate_burst: Option<u32>,
    llm_base_url: Option<String>,
    llm_model: Option<String>,
    llm_api_key: Option<String>,
    llm_timeout_ms: Option<u64>,
    llm_max_retries: Option<u32>,
    llm_prompt_budget: Option<usize>,
    llm_max_completion_tokens: Option<u32>,
    llm_daily_tokens: Option<u64>,
    llm_max_answer_chars: Option<usize>,
    llm_prompts_dir: Option<PathBuf>,
    report_link_ttl_minutes: Option<u32>,
    reports_dir: Option<PathBuf>,
    report_retention_days: Option<u32>,
    transcript_retention_days: Option<u32>,
    cleanup_interval_minutes: Option<u32>,
    engagement_interval_ms: Option<u64>,
    engagement_tenant: Option<String>,
    report_hash_secret: Option<String>,
    engagement_idle_secs: Option<u64>,
    engagement_max_message_bytes: Option<usize>,
    engagement_max_per_address: Option<u32>,
    engagement_allowed_origins: Option<OriginList>,
    client_ip_header: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            secret_key: None,
            previous_secret_key: None,
            metrics_token: None,
            metrics_listen: None,
            request_read_timeout_secs: 10,
            log_format: LogFormat::Text,
            body_limit: DEFAULT_BODY_LIMIT,
            queue_namespace: "chatbot".to_string(),
            shutdown_timeout_secs: 10,
            session_idle_minutes: 30,
            pin_max_failures: 5,
            pin_lockout_minutes: 15,
            snapshot_cache_mb: 256,
            whatsapp_api_base: "https://graph.facebook.com/v21.0".to_string(),
            twilio_api_base: "https://api.twilio.com".to_string(),
            public_url: None,
            send_rate_per_second: 80,
            orphan_timeout_secs: 30,
            ingest_concurrency: 32,
            whatsapp_template: None,
            whatsapp_template_language: "en".to_string(),
            jwt_algorithm: "HS256".to_string(),
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_issuer: None,
            jwt_audience: "chatbot".to_string(),
            api_rate_per_minute: 600,
            api_rate_burst: 60,
            llm_base_url: None,
            llm_model: "gpt-4o-mini".to_string(),
            llm_api_key: None,
            llm_timeout_ms: 6000,
            llm_max_retries: 2,
            llm_prompt_budget: 3000,
            llm_max_completion_tokens: 300,
            llm_daily_tokens: 200_000,
            llm_max_answer_chars: 900,
            llm_prompts_dir: None,
            report_link_ttl_minutes: 1440,
            reports_dir: None,
            report_retention_days: 30,
            transcript_retention_days: 365,
            cleanup_interval_minutes: 60,
            engagement_interval_ms: 2000,
            engagement_tenant: None,
            report_hash_secret: None,
            engagement_idle_secs: 300,
            engagement_max_message_bytes: 4096,
            engagement_max_per_address: 20,
            engagement_allowed_origins: Vec::new(),
            client_ip_header: None,
        }
    }
}

pub mod env;

impl Settings {
    /// Load from the process environment and, if given, a TOML file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// Load with an explicit environment lookup (tests pass a map instead of mutating the process).
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut settings = Settings::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let layer: Layer = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            settings.apply(layer);
        }
        settings.apply(Self::env_layer(&env)?);
        settings.validate()?;
        Ok(settings)
    }

    fn env_layer(env: &impl Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        fn parse<T: std::str::FromStr>(
            env: &impl Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<Option<T>, ConfigError>
        where
            T::Err: fmt::Display,
        {
            match env(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|e: T::Err| ConfigError::Env {
                        name,
                        message: e.to_string(),
                    }),
            }
        }
        let text = |name: &'static str| env(name).filter(|v| !v.trim().is_empty());
        Ok(Layer {
            listen: parse(env, env::LISTEN)?,
            data_dir: text(env::DATA_DIR).map(PathBuf::from),
            database_url: text(env::DATABASE_URL),
            redis_url: text(env::REDIS_URL),
            secret_key: text(env::SECRET_KEY),
            previous_secret_key: text(env::PREVIOUS_SECRET_KEY),
            metrics_token: text(env::METRICS_TOKEN),
            metrics_listen: parse(env, env::METRICS_LISTEN)?,
            request_read_timeout_secs: parse(env, env::REQUEST_READ_TIMEOUT)?,
            log_format: parse(env, env::LOG_FORMAT)?,
            body_limit: parse(env, env::BODY_LIMIT)?,
            queue_namespace: text(env::QUEUE_NAMESPACE),
            shutdown_timeout_secs: parse(env, env::SHUTDOWN_TIMEOUT)?,
            session_idle_minutes: parse(env, env::SESSION_IDLE_MINUTES)?,
            pin_max_failures: parse(env, env::PIN_MAX_FAILURES)?,
            pin_lockout_minutes: parse(env, env::PIN_LOCKOUT_MINUTES)?,
            snapshot_cache_mb: parse(env, env::SNAPSHOT_CACHE_MB)?,
            whatsapp_api_base: text(env::WHATSAPP_API_BASE),
            twilio_api_base: text(env::TWILIO_API_BASE),
            public_url: text(env::PUBLIC_URL),
            send_rate_per_second: parse(env, env::SEND_RATE)?,
            orphan_timeout_secs: parse(env, env::ORPHAN_TIMEOUT_SECS)?,
            ingest_concurrency: parse(env, env::INGEST_CONCURRENCY)?,
            whatsapp_template: text(env::WHATSAPP_TEMPLATE),
            whatsapp_template_language: text(env::WHATSAPP_TEMPLATE_LANGUAGE),
            jwt_algorithm: text(env::JWT_ALGORITHM),
            jwt_secret: text(env::JWT_SECRET),
            jwt_public_key_file: text(env::JWT_PUBLIC_KEY_FILE).map(PathBuf::from),
            jwt_issuer: text(env::JWT_ISSUER),
            jwt_audience: text(env::JWT_AUDIENCE),
            api_rate_per_minute: parse(env, env::API_RATE_PER_MINUTE)?,
            api_rate_burst: parse(env, env::API_RATE_BURST)?,
            llm_base_url: text(env::LLM_BASE_URL),
            llm_model: text(env::LLM_MODEL),
            llm_api_key: text(env::LLM_API_KEY),
            llm_timeout_ms: parse(env, env::LLM_TIMEOUT_MS)?,
            llm_max_retries: parse(env, env::LLM_MAX_RETRIES)?,
            llm_prompt_budget: parse(env, env::LLM_PROMPT_BUDGET)?,
            llm_max_completion_tokens: parse(env, env::LLM_MAX_COMPLETION_TOKENS)?,
            llm_daily_tokens: parse(env, env::LLM_DAILY_TOKENS)?,
            llm_max_answer_chars: parse(env, env::LLM_MAX_ANSWER_CHARS)?,
            llm_prompts_dir: text(env::LLM_PROMPTS_DIR).map(PathBuf::from),
            report_link_ttl_minutes: parse(env, env::REPORT_LINK_TTL_MINUTES)?,
            reports_dir: text(env::REPORTS_DIR).map(PathBuf::from),
            report_retention_days: parse(env, env::REPORT_RETENTION_DAYS)?,
            transcript_retention_days: parse(env, env::TRANSCRIPT_RETENTION_DAYS)?,
            cleanup_interval_minutes: parse(env, env::CLEANUP_INTERVAL_MINUTES)?,
            engagement_interval_ms: parse(env, env::ENGAGEMENT_INTERVAL_MS)?,
            engagement_tenant: text(env::ENGAGEMENT_TENANT),
            report_hash_secret: text(env::REPORT_HASH_SECRET),
            engagement_idle_secs: parse(env, env::ENGAGEMENT_IDLE_SECS)?,
            engagement_max_message_bytes: parse(env, env::ENGAGEMENT_MAX_MESSAGE_BYTES)?,
            engagement_max_per_address: parse(env, env::ENGAGEMENT_MAX_PER_ADDRESS)?,
            engagement_allowed_origins: parse(env, env::ENGAGEMENT_ALLOWED_ORIGINS)?,
            client_ip_header: text(env::CLIENT_IP_HEADER),
        })
    }

    fn apply(&mut self, layer: Layer) {
        let Layer {
            listen,
            data_dir,
            database_url,
            redis_url,
            secret_key,
            previous_secret_key,
            metrics_token,
            metrics_listen,
            request_read_timeout_secs,
            log_format,
            body_limit,
            queue_namespace,
            shutdown_timeout_secs,
            session_idle_minutes,
            pin_max_failures,
            pin_lockout_minutes,
            snapshot_cache_mb,
            whatsapp_api_base,
            twilio_api_base,
            public_url,
            send_rate_per_second,
            orphan_timeout_secs,
            ingest_concurrency,
            whatsapp_template,
            whatsapp_template_language,
            jwt_algorithm,
            jwt_secret,
            jwt_public_key_file,
            jwt_issuer,
            jwt_audience,
            api_rate_per_minute,
            api_rate_burst,
            llm_base_url,
            llm_model,
            llm_api_key,
            llm_timeout_ms,
            llm_max_retries,
            llm_prompt_budget,
            llm_max_completion_tokens,
            llm_daily_tokens,
            llm_max_answer_chars,
            llm_prompts_dir,
            report_link_ttl_minutes,
            reports_dir,
            report_retention_days,
            transcript_retention_days,
            cleanup_interval_minutes,
            engagement_interval_ms,
            engagement_tenant,
            report_hash_secret,
            engagement_idle_secs,
            engagement_max_message_bytes,
            engagement_max_per_address,
            engagement_allowed_origins,
            client_ip_header,
        } = layer;
        if let Some(v) = listen {
            self.listen = v;
        }
        if let Some(v) = data_dir {
            self.data_dir = v;
        }
        if let Some(v) = database_url {
            self.database_url = Some(SecretUrl::new(v));
        }
        if let Some(v) = redis_url {
            self.redis_url = Some(SecretUrl::new(v));
        }
        if let Some(v) = secret_key {
            self.secret_key = Some(SecretString::from(v));
        }
        if let Some(v) = previous_secret_key {
            self.previous_secret_key = Some(SecretString::from(v));
        }
        if let Some(v) = metrics_token {
            self.metrics_token = Some(SecretString::from(v));
        }
        if let Some(v) = metrics_listen {
            self.metrics_listen = Some(v);
        }
        if let Some(v) = request_read_timeout_secs {
            self.request_read_timeout_secs = v;
        }
        if let Some(v) = log_format {
            self.log_format = v;
        }
        if let Some(v) = body_limit {
            self.body_limit = v;
        }
        if let Some(v) = queue_namespace {
            self.queue_namespace = v;
        }
        if let Some(v) = shutdown_timeout_secs {
            self.shutdown_timeout_secs = v;
        }
        if let Some(v) = session_idle_minutes {
            self.session_idle_minutes = v;
        }
        if let Some(v) = pin_max_failures {
            self.pin_max_failures = v;
        }
        if let Some(v) = pin_lockout_minutes {
            self.pin_lockout_minutes = v;
        }
        if let Some(v) = snapshot_cache_mb {
            self.snapshot_cache_mb = v;
        }
        if let Some(v) = whatsapp_api_base {
            self.whatsapp_api_base = v;
        }
        if let Some(v) = twilio_api_base {
            self.twilio_api_base = v;
        }
        if let Some(v) = public_url {
            self.public_url = Some(v.trim_end_matches('/').to_string());
        }
        if let Some(v) = send_rate_per_second {
            self.send_rate_per_second = v;
        }
        if let Some(v) = orphan_timeout_secs {
            self.orphan_timeout_secs = v;
        }
        if let Some(v) = ingest_concurrency {
            self.ingest_concurrency = v;
        }
        if let Some(v) = whatsapp_template {
            self.whatsapp_template = Some(v);
        }
        if let Some(v) = whatsapp_template_language {
            self.whatsapp_template_language = v;
        }
        if let Some(v) = jwt_algorithm {
            self.jwt_algorithm = v.trim().to_ascii_uppercase();
        }
        if let Some(v) = jwt_secret {
            self.jwt_secret = Some(SecretString::from(v));
        }
        if let Some(v) = jwt_public_key_file {
            self.jwt_public_key_file = Some(v);
        }
        if let Some(v) = jwt_issuer {
            self.jwt_issuer = Some(v);
        }
        if let Some(v) = jwt_audience {
            self.jwt_audience = v;
        }
        if let Some(v) = api_rate_per_minute {
            self.api_rate_per_minute = v;
        }
        if let Some(v) = api_rate_burst {
            self.api_rate_burst = v;
        }
        if let Some(v) = llm_base_url {
            self.llm_base_url = Some(v.trim_end_matches('/').to_string());
        }
        if let Some(v) = llm_model {
            self.llm_model = v;
        }
        if let Some(v) = llm_api_key {
            self.llm_api_key = Some(SecretString::from(v));
        }
        if let Some(v) = llm_timeout_ms {
            self.llm_timeout_ms = v;
        }
        if let Some(v) = llm_max_retries {
            self.llm_max_retries = v;
        }
        if let Some(v) = llm_prompt_budget {
            self.llm_prompt_budget = v;
        }
        if let Some(v) = llm_max_completion_tokens {
            self.llm_max_completion_tokens = v;
        }
        if let Some(v) = llm_daily_tokens {
            self.llm_daily_tokens = v;
        }
        if let Some(v) = llm_max_answer_chars {
            self.llm_max_answer_chars = v;
        }
        if let Some(v) = llm_prompts_dir {
            self.llm_prompts_dir = Some(v);
        }
        if let Some(v) = report_link_ttl_minutes {
            self.report_link_ttl_minutes = v;
        }
        if let Some(v) = reports_dir {
            self.reports_dir = Some(v);
        }
        if let Some(v) = report_retention_days {
            self.report_retention_days = v;
        }
        if let Some(v) = transcript_retention_days {
            self.transcript_retention_days = v;
        }
        if let Some(v) = cleanup_interval_minutes {
            self.cleanup_interval_minutes = v;
        }
        if let Some(v) = engagement_interval_ms {
            self.engagement_interval_ms = v;
        }
        if let Some(v) = engagement_tenant {
            self.engagement_tenant = Some(v.trim().to_string());
        }
        if let Some(v) = report_hash_secret {
            self.report_hash_secret = Some(SecretString::from(v));
        }
        if let Some(v) = engagement_idle_secs {
            self.engagement_idle_secs = v;
        }
        if let Some(v) = engagement_max_message_bytes {
            self.engagement_max_message_bytes = v;
        }
        if let Some(v) = engagement_max_per_address {
            self.engagement_max_per_address = v;
        }
        if let Some(v) = engagement_allowed_origins {
            self.engagement_allowed_origins = v.0;
        }
        if let Some(v) = client_ip_header {
            self.client_ip_header = Some(v.trim().to_ascii_lowercase());
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            let u = url.expose();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                return Err(ConfigError::Env {
                    name: env::DATABASE_URL,
                    message: format!(
                        "expected a sqlite: or postgres:// URL, got `{}`",
                        url.redacted()
                    ),
                });
            }
        }
        if let Some(url) = &self.redis_url {
            let u = url.expose();
            if !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("redis+unix:"))
            {
                return Err(ConfigError::Env {
                    name: env::REDIS_URL,
                    message: format!("expected a redis:// URL, got `{}`", url.redacted()),
                });
            }
        }
        for (name, key) in [
            (env::SECRET_KEY, &self.secret_key),
            (env::PREVIOUS_SECRET_KEY, &self.previous_secret_key),
        ] {
            if let Some(key) = key
                && key.expose_secret().len() < 32
            {
                return Err(ConfigError::Env {
                    name,
                    message: "must be at least 32 characters".to_string(),
                });
            }
        }
        if let Some(token) = &self.metrics_token
            && token.expose_secret().len() < 16
        {
            return Err(ConfigError::Env {
                name: env::METRICS_TOKEN,
                message: "must be at least 16 characters".to_string(),
            });
        }
        if !(1..=3600).contains(&self.request_read_timeout_secs) {
            return Err(ConfigError::Env {
                name: env::REQUEST_READ_TIMEOUT,
                message: "must be 1 to 3600 seconds".to_string(),
            });
        }
        if self.body_limit < 1024 {
            return Err(ConfigError::Env {
                name: env::BODY_LIMIT,
                message: "must be at least 1024 bytes".to_string(),
            });
        }
        for (name, value) in [
            (env::SESSION_IDLE_MINUTES, self.session_idle_minutes),
            (env::PIN_MAX_FAILURES, self.pin_max_failures),
            (env::PIN_LOCKOUT_MINUTES, self.pin_lockout_minutes),
            (env::SNAPSHOT_CACHE_MB, self.snapshot_cache_mb),
        ] {
            if value == 0 {
                return Err(ConfigError::Env {
                    name,
                    message: "must be at least 1".to_string(),
                });
            }
        }
        if self.snapshot_cache_mb > 65_536 {
            return Err(ConfigError::Env {
                name: env::SNAPSHOT_CACHE_MB,
                message: "must be at most 65536 (64 GiB)".to_string(),
            });
        }
        for (name, value) in [
            (env::WHATSAPP_API_BASE, Some(&self.whatsapp_api_base)),
            (env::TWILIO_API_BASE, Some(&self.twilio_api_base)),
            (env::PUBLIC_URL, self.public_url.as_ref()),
        ] {
            if let Some(url) = value
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ConfigError::Env {
                    name,
                    message: "must be an http:// or https:// URL".to_string(),
                });
            }
        }
        if self.send_rate_per_second == 0 || self.send_rate_per_second > 10_000 {
            return Err(ConfigError::Env {
                name: env::SEND_RATE,
                message: "must be between 1 and 10000 messages per second".to_string(),
            });
        }
        if !(3..=3600).contains(&self.orphan_timeout_secs) {
            return Err(ConfigError::Env {
                name: env::ORPHAN_TIMEOUT_SECS,
                message: "must be between 3 and 3600 seconds".to_string(),
            });
        }
        if !(1..=256).contains(&self.ingest_concurrency) {
            return Err(ConfigError::Env {
                name: env::INGEST_CONCURRENCY,
                message: "must be between 1 and 256".to_string(),
            });
        }
        crate::api::jwt::check_settings(&self.jwt())
            .map_err(|(name, message)| ConfigError::Env { name, message })?;
        if !(1..=1_000_000).contains(&self.api_rate_per_minute) {
            return Err(ConfigError::Env {
                name: env::API_RATE_PER_MINUTE,
                message: "must be between 1 and 1000000 requests per minute".to_string(),
            });
        }
        if !(1..=100_000).contains(&self.api_rate_burst) {
            return Err(ConfigError::Env {
                name: env::API_RATE_BURST,
                message: "must be between 1 and 100000 requests".to_string(),
            });
        }
        if let Some(url) = &self.llm_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Env {
                name: env::LLM_BASE_URL,
                message: "must be an http:// or https:// URL".to_string(),
            });
        }
        for (name, ok, message) in [
            (
                env::LLM_TIMEOUT_MS,
                (100..=120_000).contains(&self.llm_timeout_ms),
                "must be between 100 and 120000 milliseconds",
            ),
            (
                env::LLM_MAX_RETRIES,
                self.llm_max_retries <= 10,
                "must be at most 10",
            ),
            (
                env::LLM_PROMPT_BUDGET,
                (500..=1_000_000).contains(&self.llm_prompt_budget),
                "must be between 500 and 1000000 tokens",
            ),
            (
                env::LLM_MAX_COMPLETION_TOKENS,
                (16..=100_000).contains(&self.llm_max_completion_tokens),
                "must be between 16 and 100000 tokens",
            ),
            (
                env::LLM_MAX_ANSWER_CHARS,
                (50..=4096).contains(&self.llm_max_answer_chars),
                "must be between 50 and 4096 characters (WhatsApp's limit)",
            ),
            (
                env::LLM_MODEL,
                !self.llm_model.trim().is_empty(),
                "must not be empty",
            ),
            (
                env::REPORT_LINK_TTL_MINUTES,
                (1..=60 * 24 * 30).contains(&self.report_link_ttl_minutes),
                "must be between 1 minute and 30 days",
            ),
            (
                env::REPORT_RETENTION_DAYS,
                (1..=3650).contains(&self.report_retention_days),
                "must be between 1 and 3650 days",
            ),
            (
                env::TRANSCRIPT_RETENTION_DAYS,
                (1..=3650).contains(&self.transcript_retention_days),
                "must be between 1 and 3650 days",
            ),
            (
                env::CLEANUP_INTERVAL_MINUTES,
                (1..=60 * 24 * 7).contains(&self.cleanup_interval_minutes),
                "must be between 1 minute and 7 days",
            ),
            (
                env::ENGAGEMENT_INTERVAL_MS,
                (1..=60_000).contains(&self.engagement_interval_ms),
                "must be between 1 and 60000 milliseconds",
            ),
            (
                env::ENGAGEMENT_IDLE_SECS,
                (1..=86_400).contains(&self.engagement_idle_secs),
                "must be between 1 second and 1 day",
            ),
            (
                env::ENGAGEMENT_MAX_MESSAGE_BYTES,
                (256..=1_048_576).contains(&self.engagement_max_message_bytes),
                "must be between 256 bytes and 1 MiB",
            ),
            (
                env::REPORT_HASH_SECRET,
                self.report_hash_secret
                    .as_ref()
                    .is_none_or(|s| s.expose_secret().len() >= 16),
                "must be at least 16 characters",
            ),
            (
                env::CLIENT_IP_HEADER,
                self.client_ip_header
                    .as_ref()
                    .is_none_or(|h| poem::http::HeaderName::from_bytes(h.as_bytes()).is_ok()),
                "must be a valid HTTP header name",
            ),
            (
                env::ENGAGEMENT_TENANT,
                self.engagement_tenant
                    .as_ref()
                    .is_none_or(|t| crate::domain::SchemaName::parse(t).is_ok()),
                "must be a school's schema name",
            ),
        ] {
            if !ok {
                return Err(ConfigError::Env {
                    name,
                    message: message.to_string(),
                });
            }
        }
        let ns_ok = !self.queue_namespace.is_empty()
            && self.queue_namespace.len() <= 64
            && self
                .queue_namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ns_ok {
            return Err(ConfigError::Env {
                name: env::QUEUE_NAMESPACE,
                message: "use 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'".to_string(),
            });
        }
        Ok(())
    }

    /// The data database URL: `DATABASE_URL`, or the SQLite file in the data dir.
    pub fn database_url(&self) -> SecretUrl {
        self.database_url.clone().unwrap_or_else(|| {
            SecretUrl::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("chatbot.sqlite").display()
            ))
        })
    }

    /// The bearer-token settings, as the API checks them.
    pub fn jwt(&self) -> crate::api::jwt::JwtSettings<'_> {
        crate::api::jwt::JwtSettings {
            algorithm: &self.jwt_algorithm,
            secret: self.jwt_secret.as_ref(),
            public_key_file: self.jwt_public_key_file.as_deref(),
            issuer: self.jwt_issuer.as_deref(),
            audience: &self.jwt_audience,
        }
    }

    /// The conversation engine's tunables.
    pub fn engine_config(&self) -> crate::conversation::EngineConfig {
        crate::conversation::EngineConfig {
            idle_timeout: chrono::Duration::minutes(self.session_idle_minutes.into()),
            max_pin_failures: self.pin_max_failures,
            lockout: chrono::Duration::minutes(self.pin_lockout_minutes.into()),
        }
    }

    /// The report-card folder: `CHATBOT_REPORTS_DIR`, or `<data dir>/reports`.
    pub fn reports_dir(&self) -> PathBuf {
        self.reports_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("reports"))
    }

    /// Path of the embedded job queue database (used when `REDIS_URL` is unset).
    pub fn queue_sqlite_path(&self) -> PathBuf {
        self.data_dir.join("jobs.sqlite")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|text| {
            let p = dir.path().join("chatbot.toml");
            std::fs::write(&p, text).unwrap();
            p
        });
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(path.as_deref(), |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_then_file_then_env() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(
            s.database_url()
                .expose()
                .starts_with("sqlite://./data/chatbot.sqlite")
        );
        assert!(s.redis_url.is_none());

        let file = "listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/chatbot\"\nbody_limit = 2048\n";
        let s = load(Some(file), &[]).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.data_dir, PathBuf::from("/srv/chatbot"));
        assert_eq!(s.body_limit, 2048);

        let s = load(Some(file), &[("CHATBOT_LISTEN", "127.0.0.1:7000")]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7000", "env beats file");
        assert_eq!(
            s.data_dir,
            PathBuf::from("/srv/chatbot"),
            "file beats default"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = load(None, &[("CHATBOT_LISTEN", "not-an-address")]).unwrap_err();
        assert!(e.to_string().contains("CHATBOT_LISTEN"), "{e}");
        let e = load(Some("lisen = \"x\"\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = load(None, &[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        let e = load(None, &[("CHATBOT_SECRET_KEY", "short")]).unwrap_err();
        assert!(e.to_string().contains("CHATBOT_SECRET_KEY"), "{e}");
    }

    #[test]
    fn jwt_settings_are_checked_when_loaded() {
        let secret = (
            "CHATBOT_JWT_SECRET",
            "jwt-secret-0123456789abcdef-0123456789",
        );
        let issuer = ("CHATBOT_JWT_ISSUER", "https://auth.example");
        let s = load(None, &[secret, issuer]).unwrap();
        assert_eq!(s.jwt_algorithm, "HS256");
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        for (vars, names) in [
            (vec![secret], "CHATBOT_JWT_ISSUER"),
            (
                vec![("CHATBOT_JWT_SECRET", "short"), issuer],
                "CHATBOT_JWT_SECRET",
            ),
            (
                vec![secret, issuer, ("CHATBOT_JWT_ALGORITHM", "none")],
                "CHATBOT_JWT_ALGORITHM",
            ),
            (
                vec![secret, issuer, ("CHATBOT_JWT_ALGORITHM", "RS256")],
                "CHATBOT_JWT_SECRET",
            ),
            (
                vec![("CHATBOT_JWT_PUBLIC_KEY_FILE", "/nonexistent.pem"), issuer],
                "CHATBOT_JWT_PUBLIC_KEY_FILE",
            ),
            (
                vec![("CHATBOT_API_RATE_PER_MINUTE", "0")],
                "CHATBOT_API_RATE_PER_MINUTE",
            ),
        ] {
            let e = load(None, &vars).unwrap_err();
            assert!(e.to_string().contains(names), "{vars:?}: {e}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = load(
            None,
            &[
                (
                    "DATABASE_URL",
                    "postgres://app:hunter2-db@db.internal:5432/chatbot",
                ),
                ("REDIS_URL", "redis://:hunter2-redis@cache:6379/0"),
                (
                    "CHATBOT_SECRET_KEY",
                    "hunter2-hunter2-hunter2-hunter2-hunter2",
                ),
            ],
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/chatbot"),
            "{shown}"
        );
        assert!(shown.contains("redis://:***@cache:6379/0"), "{shown}");
        assert_eq!(
            redact_url("sqlite://./data/x.sqlite?mode=rwc"),
            "sqlite://./data/x.sqlite?mode=rwc"
        );
        assert_eq!(redact_url("redis://token@host"), "redis://***@host");
    }
}

/// A comma-separated list of origins, each `scheme://host[:port]` without a path.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct OriginList(pub Vec<String>);

impl TryFrom<String> for OriginList {
    type Error = String;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        v.parse()
    }
}

impl std::str::FromStr for OriginList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut origins = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let rest = item
                .strip_prefix("https://")
                .or_else(|| item.strip_prefix("http://"))
                .ok_or_else(|| format!("`{item}` is not an http:// or https:// origin"))?;
            if rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "`{item}` is not an origin: write scheme://host[:port], without a path"
                ));
            }
            origins.push(item.to_ascii_lowercase());
        }
        Ok(Self(origins))
    }
}
