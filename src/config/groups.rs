//! Every setting, declared once: `field [as "toml_key"]: Type = default, "VARIABLE";` with
//! what it means as its doc comment. The TOML key is the field's name unless given; groups
//! are concerns, each checked by the module named after `checked in`.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

use super::values::{LogFormat, OriginList, SecretUrl};

/// Largest request body by default: Meta's webhook contract allows up to 3 MB; a little headroom.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

settings! {
    /// The HTTP server: where it listens, what it accepts, how it logs.
    server: Server, checked in "http" {
        /// address to serve on
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), "CHATBOT_LISTEN";
        /// a separate address serving `/metrics` only, e.g. `127.0.0.1:9090`
        metrics_listen: Option<SocketAddr> = None, "CHATBOT_METRICS_LISTEN";
        /// bearer token `/metrics` asks for on the public listener (at least 16 characters);
        /// unset: no metrics there
        metrics_token: Option<SecretString> = None, "CHATBOT_METRICS_TOKEN";
        /// seconds a client has to send a request's headers (from its first byte), and the
        /// longest pause in a body (all of it within six times this); `408` or a closed
        /// connection beyond
        request_read_timeout_secs: u64 = 10, "CHATBOT_REQUEST_READ_TIMEOUT";
        /// largest request body in bytes (`413` beyond)
        body_limit: usize = DEFAULT_BODY_LIMIT, "CHATBOT_BODY_LIMIT";
        /// seconds for in-flight requests and jobs on shutdown
        shutdown_timeout_secs: u64 = 10, "CHATBOT_SHUTDOWN_TIMEOUT";
        /// `text` or `json` log lines on stderr; text lines escape control characters, so a
        /// value cannot forge a line
        log_format: LogFormat = LogFormat::Text, "CHATBOT_LOG_FORMAT";
        /// public base URL providers call, e.g. `https://bot.example.org`; Twilio signs the
        /// full URL, which a proxy may rewrite, and status callbacks are requested at it.
        /// Unset: the request's `Host` and `X-Forwarded-Proto`
        public_url: Option<String> = None, "CHATBOT_PUBLIC_URL";
        /// header a trusted reverse proxy puts the client address in (`X-Real-IP`,
        /// `X-Forwarded-For`: its last entry); unset: the socket's peer
        client_ip_header: Option<String> = None, "CHATBOT_CLIENT_IP_HEADER";
    }

    /// What is kept, where, and for how long.
    storage: Storage, checked in "db" {
        /// embedded databases, secret key file, report cards
        data_dir: PathBuf = PathBuf::from("./data"), "CHATBOT_DATA_DIR";
        /// `sqlite:...` or `postgres://...`; unset: `sqlite://<data_dir>/chatbot.sqlite`
        database_url: Option<SecretUrl> = None, "DATABASE_URL";
        /// parents' transcripts (message log) and the record of staff actions older than
        /// this are deleted by the periodic cleanup (1 to 3650)
        transcript_retention_days: u32 = 365, "CHATBOT_TRANSCRIPT_RETENTION_DAYS";
        /// how often processes running workers queue the cleanup (expired sessions, old
        /// report cards, old transcripts), 1 minute to 7 days
        cleanup_interval_minutes: u32 = 60, "CHATBOT_CLEANUP_INTERVAL_MINUTES";
    }

    /// The server secret, which seals provider secrets and keys the hashes of PINs and keys.
    secrets: Secrets, checked in "crypto" {
        /// server secret, at least 32 characters; set it when several processes share a
        /// database. Unset: generated into `<data_dir>/secret.key` (mode 0600)
        secret_key: Option<SecretString> = None, "CHATBOT_SECRET_KEY";
        /// the server secret being rotated out: what it sealed or hashed still opens, and is
        /// sealed or hashed again under the new one (see the README's Security)
        previous_secret_key: Option<SecretString> = None, "CHATBOT_PREVIOUS_SECRET_KEY";
    }

    /// The job queue and its workers.
    queue: Queue, checked in "pipeline::handle" {
        /// job queue on Redis (`redis://...`); unset: the SQLite queue `<data_dir>/jobs.sqlite`
        redis_url: Option<SecretUrl> = None, "REDIS_URL";
        /// prefix of queue names, so deployments can share a Redis
        namespace as "queue_namespace": String = "chatbot".to_string(), "CHATBOT_QUEUE_NAMESPACE";
        /// a worker silent this long (seconds) is dead; other workers run its jobs again
        /// (heartbeat: a third of it)
        orphan_timeout_secs: u64 = 30, "CHATBOT_ORPHAN_TIMEOUT_SECS";
        /// inbound messages (and sends) handled at once per worker process; one conversation
        /// is still one message at a time, in order. A message waits mostly on its database
        /// round trips, so more at once is more per second: 90, 129, 141, 155 messages/s end
        /// to end at 4, 16, 32, 64 (`cargo bench --bench pipeline`, SQLite, 2026-12-06)
        ingest_concurrency: usize = 32, "CHATBOT_INGEST_CONCURRENCY";
    }

    /// Sending on WhatsApp.
    whatsapp: WhatsApp, checked in "channels" {
        /// Graph API base for sending WhatsApp messages (a mock in tests)
        api_base as "whatsapp_api_base": String =
            "https://graph.facebook.com/v21.0".to_string(), "CHATBOT_WHATSAPP_API_BASE";
        /// Twilio REST API base for sending (a mock in tests)
        twilio_api_base: String = "https://api.twilio.com".to_string(), "CHATBOT_TWILIO_API_BASE";
        /// messages per second from one business number, shared by every worker process
        /// (Meta's default limit)
        send_rate_per_second: u32 = 80, "CHATBOT_SEND_RATE";
        /// template without parameters sent instead of a free-form message outside
        /// WhatsApp's 24-hour window when the number has no template of its own
        /// (`whatsapp-numbers/` `broadcast_template`): a Meta template name, or a Twilio
        /// Content SID (`HX...`); unset: such replies are skipped and logged
        template as "whatsapp_template": Option<String> = None, "CHATBOT_WHATSAPP_TEMPLATE";
        /// that template's language code
        template_language as "whatsapp_template_language": String =
            "en".to_string(), "CHATBOT_WHATSAPP_TEMPLATE_LANGUAGE";
    }

    /// Who may call the REST API, and how often.
    auth: Auth, checked in "api::jwt" {
        /// the one algorithm bearer tokens may use: `HS256/384/512` (with a secret), `RS*`,
        /// `PS*`, `ES256`, `ES384`, `EdDSA` (with a public key)
        jwt_algorithm: String = "HS256".to_string(), "CHATBOT_JWT_ALGORITHM";
        /// HMAC secret of `HS*` tokens, at least 32 characters; unset (and no public key):
        /// bearer tokens refused, API keys only
        jwt_secret: Option<SecretString> = None, "CHATBOT_JWT_SECRET";
        /// PEM public key of `RS*`/`PS*`/`ES*`/`EdDSA` tokens
        jwt_public_key_file: Option<PathBuf> = None, "CHATBOT_JWT_PUBLIC_KEY_FILE";
        /// the `iss` tokens must carry; required when JWT is on
        jwt_issuer: Option<String> = None, "CHATBOT_JWT_ISSUER";
        /// the `aud` tokens must carry
        jwt_audience: String = "chatbot".to_string(), "CHATBOT_JWT_AUDIENCE";
        /// sustained REST API requests per minute per credential (`429` with `Retry-After`
        /// beyond)
        api_rate_per_minute: u32 = 600, "CHATBOT_API_RATE_PER_MINUTE";
        /// requests a credential may make at once above that pace
        api_rate_burst: u32 = 60, "CHATBOT_API_RATE_BURST";
    }

    /// The LLM fallback, for what the rules cannot answer.
    llm: Llm, checked in "llm" {
        /// OpenAI-compatible API of the LLM fallback, e.g. `https://api.openai.com/v1`, a
        /// vLLM/Ollama/llama.cpp server, or `chatbot mock-llm`; unset: rules only
        base_url as "llm_base_url": Option<String> = None, "CHATBOT_LLM_BASE_URL";
        /// model name; also picks the tokenizer (`cl100k_base` for GPT-3.5/4, else
        /// `o200k_base`)
        model as "llm_model": String = "gpt-4o-mini".to_string(), "CHATBOT_LLM_MODEL";
        /// that endpoint's key
        api_key as "llm_api_key": Option<SecretString> = None, "CHATBOT_LLM_API_KEY";
        /// the longest a parent waits for the model (milliseconds), retries included, before
        /// the canned reply
        timeout_ms as "llm_timeout_ms": u64 = 6000, "CHATBOT_LLM_TIMEOUT_MS";
        /// retries on `429`, `5xx` and refused connections, waiting `Retry-After` when it
        /// fits in the deadline
        max_retries as "llm_max_retries": u32 = 2, "CHATBOT_LLM_MAX_RETRIES";
        /// most prompt tokens per call; the least important context goes first
        prompt_budget as "llm_prompt_budget": usize = 3000, "CHATBOT_LLM_PROMPT_BUDGET";
        /// most tokens the model may write
        max_completion_tokens as "llm_max_completion_tokens": u32 =
            300, "CHATBOT_LLM_MAX_COMPLETION_TOKENS";
        /// tokens each school may use per day (UTC), unless it has its own cap (`chatbot
        /// tenant llm-cap`); beyond, the canned reply
        daily_tokens as "llm_daily_tokens": u64 = 200_000, "CHATBOT_LLM_DAILY_TOKENS";
        /// longest answer sent, in characters; a longer one is refused
        max_answer_chars as "llm_max_answer_chars": usize = 900, "CHATBOT_LLM_MAX_ANSWER_CHARS";
        /// a folder with `system.j2` and `user.j2` to use instead of the embedded
        /// `prompts/llm/`
        prompts_dir as "llm_prompts_dir": Option<PathBuf> = None, "CHATBOT_LLM_PROMPTS_DIR";
    }

    /// The conversation engine's rules of the game.
    conversation: Conversation, checked in "conversation::engine" {
        /// idle minutes after which a conversation restarts at the menu (and says so)
        session_idle_minutes: u32 = 30, "CHATBOT_SESSION_IDLE_MINUTES";
        /// wrong PINs a student's PIN may take, and a phone or API credential may make, per
        /// window (see the README's Security)
        pin_max_failures: u32 = 5, "CHATBOT_PIN_MAX_FAILURES";
        /// how long a PIN window, and so a lock, lasts (minutes)
        pin_lockout_minutes: u32 = 15, "CHATBOT_PIN_LOCKOUT_MINUTES";
        /// megabytes of school snapshots per process (1 to 65536); the least recently used
        /// school's goes first
        snapshot_cache_mb: u32 = 256, "CHATBOT_SNAPSHOT_CACHE_MB";
    }

    /// Report cards: where they are kept and how long their links work.
    reports: Reports, checked in "reports" {
        /// folder of report-card PDFs (`<school id>/<report id>.pdf`); unset:
        /// `<data_dir>/reports`
        dir as "reports_dir": Option<PathBuf> = None, "CHATBOT_REPORTS_DIR";
        /// how long a report card's download link works, in minutes (1 minute to 30 days)
        link_ttl_minutes as "report_link_ttl_minutes": u32 = 1440, "CHATBOT_REPORT_LINK_TTL_MINUTES";
        /// report cards older than this (days) are deleted (files and rows) by the periodic
        /// cleanup
        retention_days as "report_retention_days": u32 = 30, "CHATBOT_REPORT_RETENTION_DAYS";
    }

    /// The website's engagement WebSocket.
    engagement: Engagement, checked in "channels::engagement" {
        /// pause between two messages of a chunk, in milliseconds (1 to 60,000)
        interval_ms as "engagement_interval_ms": u64 = 2000, "CHATBOT_ENGAGEMENT_INTERVAL_MS";
        /// school (schema name) whose report catalogue is served when the request's `Host` is
        /// no school's domain (`serve --demo`: `demo`)
        tenant as "engagement_tenant": Option<String> = None, "CHATBOT_ENGAGEMENT_TENANT";
        /// key of the payment system's HMAC-SHA256 `hash` in `report_url_params`, at least 16
        /// characters (`serve --demo`: the public demo secret); unset: paid reports refused
        hash_secret as "report_hash_secret": Option<SecretString> = None, "CHATBOT_REPORT_HASH_SECRET";
        /// a chat waiting this long (seconds) for the visitor is closed (`1001`)
        idle_secs as "engagement_idle_secs": u64 = 300, "CHATBOT_ENGAGEMENT_IDLE_SECS";
        /// largest client message (and frame), in bytes; bigger closes with `1009`
        max_message_bytes as "engagement_max_message_bytes": usize =
            4096, "CHATBOT_ENGAGEMENT_MAX_MESSAGE_BYTES";
        /// open engagement WebSockets per client address (`429` beyond; `0`: no cap)
        max_per_address as "engagement_max_per_address": u32 = 20, "CHATBOT_ENGAGEMENT_MAX_PER_ADDRESS";
        /// comma-separated origins (`https://shop.example`) whose pages may open engagement
        /// WebSockets (`403` for others); unset: any
        allowed_origins as "engagement_allowed_origins": OriginList =
            OriginList::default(), "CHATBOT_ENGAGEMENT_ALLOWED_ORIGINS";
    }
}
