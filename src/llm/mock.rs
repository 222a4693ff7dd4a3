//! A mock OpenAI-compatible LLM server for tests, evals and demos (`chatbot mock-llm`).
//!
//! `POST /v1/chat/completions` answers plain or streamed (`"stream": true`, server-sent
//! events) from a script of rules matched against the request: the last user message
//! (substring or regex), text anywhere in the prompt, the tenant (`X-Chatbot-Tenant` header, or the `user` field up to its
//! first `:`), a tool offered, the model. A rule answers with text or a tool call, or injects a
//! fault (a status with `Retry-After`, a delay, a stream cut short, malformed JSON), optionally
//! only its first N times. Every request is recorded (`GET /mock/requests`, or
//! [`MockLlm::requests`]) so tests can check what a prompt contained.
//!
//! ```yaml
//! rules:
//!   - when: {last_user_regex: "(?i)maths", tool_offered: get_results}
//!     reply: {tool_call: {name: get_results, arguments: {subject: maths}}}
//!   - when: {last_user_contains: "friday"}
//!     fault: {status: 429, retry_after: 1}
//!     times: 1
//! default: {content: "I can only answer from what the school shared."}
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{Body, EndpointExt, Request, Response, Route, Server, get, handler, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// What a rule looks for; every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The last user message contains this (case-insensitive).
    pub last_user_contains: Option<String>,
    /// The last user message matches this regex.
    pub last_user_regex: Option<String>,
    /// The request is for this tenant.
    pub tenant: Option<String>,
    /// A tool of this name is offered.
    pub tool_offered: Option<String>,
    /// The model asked for.
    pub model: Option<String>,
    /// Some message of the prompt (system prompt included) contains this (case-insensitive):
    /// a mock "model" that can only answer what the prompt gives it.
    pub prompt_contains: Option<String>,
}

/// What a rule answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Assistant text.
    pub content: Option<String>,
    /// A tool call instead (or besides).
    pub tool_call: Option<ToolCall>,
}

/// A tool call to answer with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Function name.
    pub name: String,
    /// Its arguments (sent as a JSON string, as OpenAI does).
    #[serde(default)]
    pub arguments: Value,
}

/// A failure to inject.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Answer with this status (e.g. 429, 500) and an OpenAI-style error body.
    pub status: Option<u16>,
    /// With `status`: a `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// Wait this long before answering.
    pub delay_ms: Option<u64>,
    /// Streamed answers stop after the first chunk, without `[DONE]`.
    #[serde(default)]
    pub cut_stream: bool,
    /// The body is not valid JSON.
    #[serde(default)]
    pub malformed: bool,
}

/// One rule of a script.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for logs and failures.
    pub name: Option<String>,
    /// Conditions (none: every request).
    #[serde(default)]
    pub when: When,
    /// The answer.
    pub reply: Option<Reply>,
    /// A fault, before or instead of the answer.
    pub fault: Option<Fault>,
    /// Apply this rule only its first N matches.
    pub times: Option<u32>,
}

/// A script: rules tried in order, and the answer when none matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Answer when no rule matches (default: a fixed sentence).
    pub default: Option<Reply>,
}

impl Script {
    /// Parse a YAML script; regexes are checked here.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let script: Script = serde_yaml::from_str(text)?;
        script.check()?;
        Ok(script)
    }

    /// Check the regexes, and that every rule answers somehow.
    pub fn check(&self) -> anyhow::Result<()> {
        let script = self;
        for (i, rule) in script.rules.iter().enumerate() {
            if let Some(re) = &rule.when.last_user_regex {
                regex::Regex::new(re)
                    .map_err(|e| anyhow::anyhow!("rule {}: bad last_user_regex: {e}", i + 1))?;
            }
            if rule.reply.is_none() && rule.fault.is_none() {
                anyhow::bail!("rule {}: give a reply, a fault or both", i + 1);
            }
        }
        Ok(())
    }
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The JSON body.
    pub body: Value,
    /// `X-Chatbot-Tenant`, or the `user` field up to its first `:`.
    pub tenant: Option<String>,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// The rule that answered (its name or number), if any.
    pub rule: Option<String>,
}

impl Recorded {
    /// Every message's content joined, to search what the prompt said.
    pub fn prompt_text(&self) -> String {
        prompt_text(&self.body)
    }
}

#[derive(Default)]
struct Shared {
    script: Script,
    used: Vec<u32>,
    requests: Vec<Recorded>,
}

/// A running mock LLM server.
pub struct MockLlm {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

fn prompt_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn last_user(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|x| x["role"] == "user"))
        .and_then(|x| x["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn matches(when: &When, body: &Value, tenant: Option<&str>) -> bool {
    let user = last_user(body);
    if let Some(s) = &when.last_user_contains
        && !user.to_lowercase().contains(&s.to_lowercase())
    {
        return false;
    }
    if let Some(re) = &when.last_user_regex
        && !regex::Regex::new(re).is_ok_and(|re| re.is_match(&user))
    {
        return false;
    }
    if let Some(t) = &when.tenant
        && tenant != Some(t.as_str())
    {
        return false;
    }
    if let Some(tool) = &when.tool_offered {
        let offered = body["tools"].as_array().is_some_and(|tools| {
            tools
                .iter()
                .any(|t| t["function"]["name"].as_str() == Some(tool.as_str()))
        });
        if !offered {
            return false;
        }
    }
    if let Some(model) = &when.model
        && body["model"].as_str() != Some(model.as_str())
    {
        return false;
    }
    if let Some(s) = &when.prompt_contains
        && !prompt_text(body).to_lowercase().contains(&s.to_lowercase())
    {
        return false;
    }
    true
}

fn error_body(status: u16, message: &str) -> String {
    json!({"error": {"message": message, "type": "mock_error", "code": status}}).to_string()
}

fn completion(n: usize, model: &str, reply: &Reply, prompt: &str) -> Value {
    let tool_calls: Vec<Value> = reply
        .tool_call
        .iter()
        .map(|t| {
            json!({"id": format!("call_mock_{n}"), "type": "function",
                   "function": {"name": t.name, "arguments": t.arguments.to_string()}})
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": reply.content});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let finish = if reply.tool_call.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    // Rough token counts (words), enough for budget bookkeeping in tests.
    let prompt_tokens = prompt.split_whitespace().count();
    let completion_tokens = reply
        .content
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .count();
    json!({
        "id": format!("chatcmpl-mock-{n}"),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    })
}

/// The server-sent events of a streamed answer: role, the text a word at a time, the tool
/// call, the finish; `cut` stops after the first chunk.
fn stream_events(n: usize, model: &str, reply: &Reply, cut: bool) -> String {
    let chunk = |delta: Value, finish: Option<&str>| {
        let c = json!({
            "id": format!("chatcmpl-mock-{n}"),
            "object": "chat.completion.chunk",
            "created": chrono::Utc::now().timestamp(),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        format!("data: {c}\n\n")
    };
    let mut out = chunk(json!({"role": "assistant", "content": ""}), None);
    if cut {
        return out;
    }
    if let Some(text) = &reply.content {
        for word in text.split_inclusive(' ') {
            out.push_str(&chunk(json!({"content": word}), None));
        }
    }
    if let Some(t) = &reply.tool_call {
        out.push_str(&chunk(
            json!({"tool_calls": [{"index": 0, "id": format!("call_mock_{n}"), "type": "function",
                   "function": {"name": t.name, "arguments": t.arguments.to_string()}}]}),
            None,
        ));
    }
    let finish = if reply.tool_call.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    out.push_str(&chunk(json!({}), Some(finish)));
    out.push_str("data: [DONE]\n\n");
    out
}

#[handler]
async fn completions(req: &Request, body: Body, shared: Data<&Arc<Mutex<Shared>>>) -> Response {
    let bytes = body.into_vec().await.unwrap_or_default();
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .content_type("application/json")
            .body(error_body(400, "request body is not JSON"));
    };
    let tenant = req
        .header("x-chatbot-tenant")
        .map(str::to_string)
        .or_else(|| {
            body["user"]
                .as_str()
                .and_then(|u| u.split(':').next())
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        });
    let (n, rule, default) = {
        let mut s = shared.lock().expect("mock state");
        let Shared {
            script,
            used,
            requests,
        } = &mut *s;
        used.resize(script.rules.len(), 0);
        let found = script.rules.iter().enumerate().find(|(i, r)| {
            r.times.is_none_or(|t| used[*i] < t) && matches(&r.when, &body, tenant.as_deref())
        });
        let rule = found.map(|(i, r)| {
            used[i] += 1;
            (
                r.name.clone().unwrap_or_else(|| format!("rule {}", i + 1)),
                r.clone(),
            )
        });
        requests.push(Recorded {
            body: body.clone(),
            tenant: tenant.clone(),
            authorization: req.header("authorization").map(str::to_string),
            rule: rule.as_ref().map(|(name, _)| name.clone()),
        });
        (requests.len(), rule.map(|(_, r)| r), script.default.clone())
    };
    let fault = rule
        .as_ref()
        .and_then(|r| r.fault.clone())
        .unwrap_or_default();
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = fault.status {
        let mut response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .content_type("application/json");
        if let Some(secs) = fault.retry_after {
            response = response.header("Retry-After", secs.to_string());
        }
        return response.body(error_body(status, "injected by the mock"));
    }
    let reply = rule.and_then(|r| r.reply).or(default).unwrap_or(Reply {
        content: Some("I can only answer from what the school shared.".into()),
        tool_call: None,
    });
    let model = body["model"].as_str().unwrap_or("mock").to_string();
    if fault.malformed {
        return Response::builder()
            .content_type("application/json")
            .body("{\"choices\": [ this is not json");
    }
    if body["stream"].as_bool() == Some(true) {
        return Response::builder()
            .content_type("text/event-stream")
            .header("Cache-Control", "no-cache")
            .body(stream_events(n, &model, &reply, fault.cut_stream));
    }
    Response::builder()
        .content_type("application/json")
        .body(completion(n, &model, &reply, &prompt_text(&body)).to_string())
}

#[handler]
fn recorded(shared: Data<&Arc<Mutex<Shared>>>) -> Json<Value> {
    let s = shared.lock().expect("mock state");
    Json(Value::Array(
        s.requests
            .iter()
            .map(|r| json!({"body": r.body, "tenant": r.tenant, "rule": r.rule}))
            .collect(),
    ))
}

impl MockLlm {
    /// Start on `addr` (port 0 picks one) with `script`.
    pub async fn start(addr: SocketAddr, script: Script) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(addr).into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().copied())
            .unwrap_or(addr);
        let shared = Arc::new(Mutex::new(Shared {
            script,
            ..Default::default()
        }));
        let stop = CancellationToken::new();
        let app = Route::new()
            .at("/v1/chat/completions", post(completions))
            .at("/mock/requests", get(recorded))
            .data(shared.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, token.cancelled_owned(), None)
                .await;
        });
        Ok(Self { addr, shared, stop })
    }

    /// Base URL to configure as the LLM endpoint (`.../v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().expect("mock state").requests.clone()
    }

    /// Replace the script (and forget how often its rules were used).
    pub fn set_script(&self, script: Script) {
        let mut s = self.shared.lock().expect("mock state");
        s.script = script;
        s.used.clear();
    }

    /// Stop serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
