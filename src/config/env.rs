//! Environment variable names, in one place so `--help` and the README agree with the code.

/// Listen address.
pub const LISTEN: &str = "CHATBOT_LISTEN";
/// Data directory.
pub const DATA_DIR: &str = "CHATBOT_DATA_DIR";
/// Database URL.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Redis URL.
pub const REDIS_URL: &str = "REDIS_URL";
/// Secret key.
pub const SECRET_KEY: &str = "CHATBOT_SECRET_KEY";
pub const PREVIOUS_SECRET_KEY: &str = "CHATBOT_PREVIOUS_SECRET_KEY";
pub const METRICS_TOKEN: &str = "CHATBOT_METRICS_TOKEN";
pub const METRICS_LISTEN: &str = "CHATBOT_METRICS_LISTEN";
pub const REQUEST_READ_TIMEOUT: &str = "CHATBOT_REQUEST_READ_TIMEOUT";
/// Log format.
pub const LOG_FORMAT: &str = "CHATBOT_LOG_FORMAT";
/// Body limit.
pub const BODY_LIMIT: &str = "CHATBOT_BODY_LIMIT";
/// Queue namespace.
pub const QUEUE_NAMESPACE: &str = "CHATBOT_QUEUE_NAMESPACE";
/// Shutdown timeout.
pub const SHUTDOWN_TIMEOUT: &str = "CHATBOT_SHUTDOWN_TIMEOUT";
/// Session idle timeout.
pub const SESSION_IDLE_MINUTES: &str = "CHATBOT_SESSION_IDLE_MINUTES";
/// PIN failures before lockout.
pub const PIN_MAX_FAILURES: &str = "CHATBOT_PIN_MAX_FAILURES";
/// PIN lockout minutes.
pub const PIN_LOCKOUT_MINUTES: &str = "CHATBOT_PIN_LOCKOUT_MINUTES";
/// Megabytes of school snapshots kept per process.
pub const SNAPSHOT_CACHE_MB: &str = "CHATBOT_SNAPSHOT_CACHE_MB";
/// Graph API base URL.
pub const WHATSAPP_API_BASE: &str = "CHATBOT_WHATSAPP_API_BASE";
/// Twilio API base URL.
pub const TWILIO_API_BASE: &str = "CHATBOT_TWILIO_API_BASE";
/// Public base URL.
pub const PUBLIC_URL: &str = "CHATBOT_PUBLIC_URL";
/// Sends per second per business number.
pub const SEND_RATE: &str = "CHATBOT_SEND_RATE";
/// Orphaned job timeout.
pub const ORPHAN_TIMEOUT_SECS: &str = "CHATBOT_ORPHAN_TIMEOUT_SECS";
/// Ingest concurrency per worker process.
pub const INGEST_CONCURRENCY: &str = "CHATBOT_INGEST_CONCURRENCY";
/// Template outside the 24-hour window.
pub const WHATSAPP_TEMPLATE: &str = "CHATBOT_WHATSAPP_TEMPLATE";
/// Its language.
pub const WHATSAPP_TEMPLATE_LANGUAGE: &str = "CHATBOT_WHATSAPP_TEMPLATE_LANGUAGE";
/// JWT algorithm.
pub const JWT_ALGORITHM: &str = "CHATBOT_JWT_ALGORITHM";
/// JWT HMAC secret.
pub const JWT_SECRET: &str = "CHATBOT_JWT_SECRET";
/// JWT public key file.
pub const JWT_PUBLIC_KEY_FILE: &str = "CHATBOT_JWT_PUBLIC_KEY_FILE";
/// JWT issuer.
pub const JWT_ISSUER: &str = "CHATBOT_JWT_ISSUER";
/// JWT audience.
pub const JWT_AUDIENCE: &str = "CHATBOT_JWT_AUDIENCE";
/// API requests per minute per credential.
pub const API_RATE_PER_MINUTE: &str = "CHATBOT_API_RATE_PER_MINUTE";
/// API burst per credential.
pub const API_RATE_BURST: &str = "CHATBOT_API_RATE_BURST";
/// Base URL of an OpenAI-compatible API for the LLM fallback, e.g. `https://api.openai.com/v1`.
pub const LLM_BASE_URL: &str = "CHATBOT_LLM_BASE_URL";
/// Model name.
pub const LLM_MODEL: &str = "CHATBOT_LLM_MODEL";
/// API key of that endpoint.
pub const LLM_API_KEY: &str = "CHATBOT_LLM_API_KEY";
/// Milliseconds a parent waits at most for the model, retries included, before the canned reply.
pub const LLM_TIMEOUT_MS: &str = "CHATBOT_LLM_TIMEOUT_MS";
/// Retries of a call that got 429, 5xx or no connection.
pub const LLM_MAX_RETRIES: &str = "CHATBOT_LLM_MAX_RETRIES";
/// Most prompt tokens per call; the least important context is dropped to fit.
pub const LLM_PROMPT_BUDGET: &str = "CHATBOT_LLM_PROMPT_BUDGET";
/// Most tokens the model may write per answer.
pub const LLM_MAX_COMPLETION_TOKENS: &str = "CHATBOT_LLM_MAX_COMPLETION_TOKENS";
/// Tokens each school may use per day (UTC) before the canned reply.
pub const LLM_DAILY_TOKENS: &str = "CHATBOT_LLM_DAILY_TOKENS";
/// Longest model answer sent, in characters.
pub const LLM_MAX_ANSWER_CHARS: &str = "CHATBOT_LLM_MAX_ANSWER_CHARS";
/// Folder with `system.j2` and `user.j2` to use instead of the embedded `prompts/llm/`.
pub const LLM_PROMPTS_DIR: &str = "CHATBOT_LLM_PROMPTS_DIR";
/// Report link lifetime.
pub const REPORT_LINK_TTL_MINUTES: &str = "CHATBOT_REPORT_LINK_TTL_MINUTES";
/// Report-card folder.
pub const REPORTS_DIR: &str = "CHATBOT_REPORTS_DIR";
/// Report retention.
pub const REPORT_RETENTION_DAYS: &str = "CHATBOT_REPORT_RETENTION_DAYS";
/// Transcript retention.
pub const TRANSCRIPT_RETENTION_DAYS: &str = "CHATBOT_TRANSCRIPT_RETENTION_DAYS";
/// Cleanup interval.
pub const CLEANUP_INTERVAL_MINUTES: &str = "CHATBOT_CLEANUP_INTERVAL_MINUTES";
/// Pacing of the engagement WebSocket.
pub const ENGAGEMENT_INTERVAL_MS: &str = "CHATBOT_ENGAGEMENT_INTERVAL_MS";
/// School whose report catalogue the engagement WebSocket serves by default.
pub const ENGAGEMENT_TENANT: &str = "CHATBOT_ENGAGEMENT_TENANT";
/// Key of the payment system's `report_url_params` hash.
pub const REPORT_HASH_SECRET: &str = "CHATBOT_REPORT_HASH_SECRET";
/// Engagement WebSocket idle timeout.
pub const ENGAGEMENT_IDLE_SECS: &str = "CHATBOT_ENGAGEMENT_IDLE_SECS";
/// Largest engagement client message.
pub const ENGAGEMENT_MAX_MESSAGE_BYTES: &str = "CHATBOT_ENGAGEMENT_MAX_MESSAGE_BYTES";
/// Engagement WebSockets per client address.
pub const ENGAGEMENT_MAX_PER_ADDRESS: &str = "CHATBOT_ENGAGEMENT_MAX_PER_ADDRESS";
/// Origins allowed to open engagement WebSockets.
pub const ENGAGEMENT_ALLOWED_ORIGINS: &str = "CHATBOT_ENGAGEMENT_ALLOWED_ORIGINS";
/// Header carrying the client's address behind a trusted proxy.
pub const CLIENT_IP_HEADER: &str = "CHATBOT_CLIENT_IP_HEADER";
/// Config file path.
pub const CONFIG: &str = "CHATBOT_CONFIG";
