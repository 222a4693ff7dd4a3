//! The chat-completions client: any OpenAI-compatible endpoint through async-openai, with a
//! deadline on the whole call, bounded retries on 429 / 5xx / refused connections that honour
//! `Retry-After` (a wait that would pass the deadline is not taken), and a circuit breaker that
//! answers at once while the endpoint keeps failing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, CreateChatCompletionRequest, CreateChatCompletionResponse,
};
use rand::Rng;
use serde_json::Value;

/// Consecutive failed calls that open the circuit.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long an open circuit answers at once before one call may try again.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// Where and how to call the model.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// API key (empty for servers without one).
    pub api_key: String,
    /// Model name.
    pub model: String,
    /// The whole call, retries included, ends by then.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Most tokens the model may write.
    pub max_completion_tokens: u32,
    /// Keep answers in this folder, keyed by the request (the eval harness' response cache):
    /// the same rendered request is answered from it without a call.
    pub cache_dir: Option<std::path::PathBuf>,
}

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// Text.
    pub content: String,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// Tool name.
    pub name: String,
    /// Arguments (a JSON object; `{}` when the model sent none or garbage).
    pub arguments: Value,
}

/// What the model answered.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Completion {
    /// Its text, if any.
    pub content: Option<String>,
    /// The first tool call, if any.
    pub tool_call: Option<ToolCall>,
    /// Prompt tokens as the server counted them.
    pub prompt_tokens: Option<u32>,
    /// Completion tokens as the server counted them.
    pub completion_tokens: Option<u32>,
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The circuit is open after repeated failures.
    #[error("circuit open after repeated failures")]
    CircuitOpen,
    /// The endpoint answered with an error (after the retries allowed).
    #[error("endpoint error: {0}")]
    Endpoint(String),
    /// The answer could not be read.
    #[error("unreadable answer: {0}")]
    Malformed(String),
}

impl LlmError {
    /// A short stable label for logs, metrics and eval reports.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::Endpoint(_) => "endpoint_error",
            Self::Malformed(_) => "malformed",
        }
    }
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    trial_running: bool,
}

/// The client; cheap to share behind an `Arc`.
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    config: ClientConfig,
    breaker: Mutex<Breaker>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .finish()
    }
}

impl LlmClient {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Result<Self, String> {
        // reqwest 0.13 (async-openai's) takes rustls' process-wide provider; 0.12 brings its own.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest013::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build the LLM HTTP client: {e}"))?;
        let service = tower::ServiceBuilder::new()
            .retry(RetryPolicy::new(config.max_retries, config.timeout))
            .service(ReqwestService::new(http));
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.clone());
        Ok(Self {
            client: Client::with_config(openai).with_http_service(service),
            config,
            breaker: Mutex::new(Breaker::default()),
        })
    }

    /// The model asked for.
    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// Ask the model: `messages`, the `tools` offered (OpenAI function tools as JSON), and
    /// `user` (the end-user tag OpenAI asks for: tenant and an opaque user id).
    pub async fn complete(
        &self,
        messages: &[Message],
        tools: &[Value],
        user: &str,
    ) -> Result<Completion, LlmError> {
        let body = self.request_body(messages, tools, user);
        let cached = self.config.cache_dir.as_ref().map(|dir| {
            use sha2::Digest;
            let key = hex::encode(sha2::Sha256::digest(body.to_string().as_bytes()));
            dir.join(format!("{key}.json"))
        });
        if let Some(path) = &cached
            && let Ok(text) = std::fs::read_to_string(path)
            && let Ok(hit) = serde_json::from_str::<Completion>(&text)
        {
            return Ok(hit);
        }
        self.admit()?;
        let result = self.call(body).await;
        self.record(result.is_ok());
        if let (Some(path), Ok(answer)) = (&cached, &result) {
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| std::fs::write(path, serde_json::to_vec(answer).unwrap_or_default()));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the LLM response cache");
            }
        }
        result
    }

    fn admit(&self) -> Result<(), LlmError> {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        match b.open_until {
            Some(until) if Instant::now() < until => Err(LlmError::CircuitOpen),
            Some(_) if b.trial_running => Err(LlmError::CircuitOpen),
            Some(_) => {
                b.trial_running = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        b.trial_running = false;
        if ok {
            if b.open_until.is_some() {
                tracing::info!("LLM endpoint answers again; circuit closed");
            }
            *b = Breaker::default();
            return;
        }
        b.failures += 1;
        if b.open_until.is_some() || b.failures >= BREAKER_THRESHOLD {
            tracing::warn!(
                failures = b.failures,
                cooldown_secs = BREAKER_COOLDOWN.as_secs(),
                "LLM endpoint keeps failing; circuit open"
            );
            b.open_until = Some(Instant::now() + BREAKER_COOLDOWN);
        }
    }

    fn request_body(&self, messages: &[Message], tools: &[Value], user: &str) -> Value {
        let mut body = serde_json::json!({
            "model": self.config.model,
            "messages": messages
                .iter()
                .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
                .collect::<Vec<_>>(),
            "max_completion_tokens": self.config.max_completion_tokens,
            "temperature": 0,
            "user": user,
        });
        if !tools.is_empty() {
            body["tools"] = Value::Array(tools.to_vec());
            body["tool_choice"] = Value::String("auto".into());
        }
        body
    }

    async fn call(&self, body: Value) -> Result<Completion, LlmError> {
        let request: CreateChatCompletionRequest = serde_json::from_value(body)
            .map_err(|e| LlmError::Malformed(format!("request does not fit the API: {e}")))?;
        let answer = tokio::time::timeout(self.config.timeout, self.client.chat().create(request))
            .await
            .map_err(|_| LlmError::Timeout(self.config.timeout))?;
        let response: CreateChatCompletionResponse = answer.map_err(|e| match e {
            OpenAIError::JSONDeserialize(e, _) => LlmError::Malformed(e.to_string()),
            OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout(self.config.timeout),
            other => LlmError::Endpoint(truncate(&other.to_string(), 300)),
        })?;
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(LlmError::Malformed("no choices".into()));
        };
        let tool_call = choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .find_map(|c| match c {
                ChatCompletionMessageToolCalls::Function(f) => Some(ToolCall {
                    arguments: serde_json::from_str::<Value>(&f.function.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::Object(Default::default())),
                    name: f.function.name,
                }),
                ChatCompletionMessageToolCalls::Custom(_) => None,
            });
        let usage = response.usage;
        Ok(Completion {
            content: choice.message.content.filter(|c| !c.trim().is_empty()),
            tool_call,
            prompt_tokens: usage.as_ref().map(|u| u.prompt_tokens),
            completion_tokens: usage.as_ref().map(|u| u.completion_tokens),
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Retries 429, 5xx and refused connections, waiting `Retry-After` when the server gives it
/// (otherwise 250 ms doubling, with jitter), never past the call's deadline.
#[derive(Clone, Debug)]
struct RetryPolicy {
    max_retries: u32,
    attempts: u32,
    deadline: Duration,
    started: Option<Instant>,
}

impl RetryPolicy {
    fn new(max_retries: u32, deadline: Duration) -> Self {
        Self {
            max_retries,
            attempts: 0,
            deadline,
            started: None,
        }
    }
}

type Response = reqwest013::Response;

impl tower::retry::Policy<HttpRequestFactory, Response, OpenAIError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut HttpRequestFactory,
        result: &mut Result<Response, OpenAIError>,
    ) -> Option<Self::Future> {
        let (retryable, retry_after) = match result {
            Ok(r) => {
                let status = r.status();
                let after = r
                    .headers()
                    .get(reqwest013::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                (status.as_u16() == 429 || status.is_server_error(), after)
            }
            Err(OpenAIError::Reqwest(e)) => (e.is_connect(), None),
            Err(_) => (false, None),
        };
        if !retryable || self.attempts >= self.max_retries {
            return None;
        }
        let wait = retry_after.unwrap_or_else(|| {
            let base = Duration::from_millis(250) * 2u32.pow(self.attempts.min(5));
            base.mul_f64(rand::rng().random_range(0.5..1.0))
        });
        let elapsed = self.started.map(|s| s.elapsed()).unwrap_or_default();
        if elapsed + wait >= self.deadline {
            tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                "LLM endpoint asks to wait past the deadline; not retrying"
            );
            return None;
        }
        self.attempts += 1;
        tracing::info!(
            attempt = self.attempts,
            wait_ms = wait.as_millis() as u64,
            "retrying the LLM endpoint"
        );
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        self.started.get_or_insert_with(Instant::now);
        Some(req.clone())
    }
}
