//! The LLM fallback: what the rules could not place goes to a model, with a prompt built only
//! from one school's data and the children this phone is verified for.
//!
//! [`Llm::respond`] gathers the context ([`context`]), renders the prompt and cuts it to the
//! token budget ([`prompt`]), asks the model ([`client`]: deadline, retries, circuit breaker),
//! and turns its answer into a [`Followup`] the rules carry out: a tool call becomes a menu
//! flow ([`tools`]), text is sent only when it passes the output checks ([`guard`]); anything
//! else becomes the canned reply. Usage is recorded per school and day, under a daily cap
//! ([`usage`]). The mock server for tests and evals is [`mock`].

pub mod client;
pub mod context;
pub mod guard;
pub mod mock;
pub mod prompt;
pub mod tools;
pub mod usage;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;
use crate::conversation::Followup;
use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::school::snapshot::{Child, SchoolSnapshot};
use crate::tenancy::TenantCtx;
use client::{ClientConfig, LlmClient};
use prompt::{Prompts, Tokenizer};

/// The reply template of every failure (timeout, refusal, cap...).
pub const CANNED: &str = "llm_unavailable";

/// Limits of the fallback.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most prompt tokens per call.
    pub prompt_budget: usize,
    /// Tokens per school per day, unless the school has its own cap.
    pub daily_tokens: u64,
    /// Longest answer sent, in characters.
    pub max_answer_chars: usize,
    /// Earlier messages of the conversation given to the model.
    pub history_messages: u64,
}

/// What happened on the LLM path for one message: logs, metrics and the eval harness read it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Trace {
    /// A request reached the model (or was attempted).
    pub called: bool,
    /// `answered`, `tool`, `refused:<check>`, `failed:<why>`, `capped`, `over_budget`.
    pub outcome: String,
    /// The tool the model called, with its arguments.
    pub tool: Option<(String, Value)>,
    /// Prompt tokens (the server's count, else ours).
    pub prompt_tokens: u64,
    /// Completion tokens (the server's count, else ours).
    pub completion_tokens: u64,
    /// Context pieces dropped to fit the budget.
    pub dropped: usize,
    /// The messages sent (the eval harness checks what a prompt held).
    #[serde(skip)]
    pub messages: Vec<client::Message>,
}

impl Trace {
    /// The outcome without its detail (`refused`, `failed`...), for metrics.
    pub fn kind(&self) -> &str {
        self.outcome.split(':').next().unwrap_or_default()
    }
}

/// The assembled fallback; one per process.
pub struct Llm {
    client: LlmClient,
    prompts: Prompts,
    tokenizer: Tokenizer,
    limits: Limits,
    canary_key: [u8; 32],
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("client", &self.client)
            .field("prompts", &self.prompts)
            .field("tokenizer", &self.tokenizer)
            .finish()
    }
}

impl Llm {
    /// Assemble from parts (the eval harness passes its own prompts and limits). The canary
    /// planted in each prompt is derived from `secret` and the prompt's data: unguessable, yet
    /// the same request renders the same (so responses can be cached).
    pub fn new(
        config: ClientConfig,
        prompts: Prompts,
        limits: Limits,
        secret: &SecretKey,
    ) -> Result<Self> {
        let tokenizer = Tokenizer::for_model(&config.model);
        // Load the encoding now (hundreds of milliseconds), not on a parent's message.
        tokenizer.count("warm up");
        let client = LlmClient::new(config).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        Ok(Self {
            client,
            prompts,
            tokenizer,
            limits,
            canary_key: secret.subkey("llm-canary"),
        })
    }

    fn canary(&self, context: &context::Context) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.canary_key).expect("any length");
        mac.update(
            serde_json::to_string(context)
                .unwrap_or_default()
                .as_bytes(),
        );
        format!("ref-{}", hex::encode(&mac.finalize().into_bytes()[..6]))
    }

    /// From the settings; `None` when `CHATBOT_LLM_BASE_URL` is unset. Loads the tokenizer and
    /// the prompts now, so a broken template stops the start-up, not a parent's message.
    pub fn from_settings(s: &Settings, secret: &SecretKey) -> Result<Option<Self>> {
        let Some(base_url) = &s.llm.base_url else {
            return Ok(None);
        };
        let prompts = match &s.llm.prompts_dir {
            Some(dir) => Prompts::from_dir(dir)?,
            None => Prompts::embedded()?,
        };
        let config = ClientConfig {
            base_url: base_url.clone(),
            api_key: s
                .llm
                .api_key
                .as_ref()
                .map(|k| k.expose_secret().to_string())
                .unwrap_or_default(),
            model: s.llm.model.clone(),
            timeout: Duration::from_millis(s.llm.timeout_ms),
            max_retries: s.llm.max_retries,
            max_completion_tokens: s.llm.max_completion_tokens,
            cache_dir: None,
        };
        let limits = Limits {
            prompt_budget: s.llm.prompt_budget,
            daily_tokens: s.llm.daily_tokens,
            max_answer_chars: s.llm.max_answer_chars,
            history_messages: 6,
        };
        let llm = Self::new(config, prompts, limits, secret)?;
        tracing::info!(
            base_url = %base_url,
            model = %s.llm.model,
            encoding = llm.tokenizer.encoding,
            prompts = %llm.prompts.source,
            "LLM fallback on"
        );
        Ok(Some(llm))
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// One plain exchange with the model (no tools, no school data): a system message and a
    /// user message in, the answer's text out. For the eval harness's judge.
    pub async fn ask(
        &self,
        system: &str,
        user: &str,
        tag: &str,
    ) -> std::result::Result<Option<String>, client::LlmError> {
        let messages = [
            client::Message {
                role: "system",
                content: system.to_string(),
            },
            client::Message {
                role: "user",
                content: user.to_string(),
            },
        ];
        Ok(self.client.complete(&messages, &[], tag).await?.content)
    }

    /// The tokenizer (the model's encoding).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The prompts.
    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }

    /// Decide what to do with `message`, which the rules could not place. `children` is the
    /// phone's verified scope; `history` the conversation's last messages as
    /// (`in`|`out`, text); `user` an opaque id of the parent for the provider's abuse
    /// monitoring (never the phone number). Only database errors are errors: every model failure is a canned
    /// followup, with the reason in the trace and the log.
    #[allow(clippy::too_many_arguments)]
    pub async fn respond<C: ConnectionTrait>(
        &self,
        school: &SchoolSnapshot,
        ctx: &TenantCtx,
        db: &C,
        children: &[&Child],
        history: Vec<(String, String)>,
        message: &str,
        language: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<(Followup, Trace)> {
        let mut trace = Trace::default();
        let canned = |mut trace: Trace, outcome: String| {
            trace.outcome = outcome;
            Ok((Followup::Canned(CANNED), trace))
        };
        let used = usage::tokens_on(db, ctx, now.date_naive()).await?;
        let cap = school
            .profile()
            .llm_daily_tokens
            .unwrap_or(self.limits.daily_tokens.min(i64::MAX as u64) as i64);
        if used >= cap {
            tracing::warn!(
                tenant = ctx.schema_name(),
                used,
                cap,
                "daily LLM token cap reached; canned reply"
            );
            return canned(trace, "capped".into());
        }
        // From the snapshot: no read of school data per message.
        let context = context::gather(school, children, history, message, language, now);
        let canary = self.canary(&context);
        let Some(fitted) = prompt::fit(
            &self.prompts,
            &self.tokenizer,
            context,
            &canary,
            self.limits.prompt_budget,
        )?
        else {
            tracing::warn!(
                tenant = ctx.schema_name(),
                budget = self.limits.prompt_budget,
                "prompt does not fit the token budget even without context; canned reply"
            );
            return canned(trace, "over_budget".into());
        };
        trace.dropped = fitted.dropped;
        trace.messages = fitted.messages.clone();
        trace.called = true;
        let tools = tools::definitions();
        let tag = format!("{}:{user}", ctx.schema_name());
        let answer = self.client.complete(&fitted.messages, &tools, &tag).await;
        let completion = match answer {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(tenant = ctx.schema_name(), error = %e, "LLM call failed; canned reply");
                if e == client::LlmError::CircuitOpen {
                    trace.called = false;
                } else {
                    usage::record(db, ctx, now, 0, 0, true).await?;
                }
                return canned(trace, format!("failed:{}", e.label()));
            }
        };
        trace.prompt_tokens = completion
            .prompt_tokens
            .map(u64::from)
            .unwrap_or(fitted.tokens as u64);
        trace.completion_tokens =
            completion
                .completion_tokens
                .map(u64::from)
                .unwrap_or_else(|| {
                    self.tokenizer
                        .count(completion.content.as_deref().unwrap_or_default())
                        as u64
                });
        let usable = completion.tool_call.is_some() || completion.content.is_some();
        usage::record(
            db,
            ctx,
            now,
            trace.prompt_tokens,
            trace.completion_tokens,
            !usable,
        )
        .await?;
        if let Some(call) = completion.tool_call {
            trace.tool = Some((call.name.clone(), call.arguments.clone()));
            return match tools::action(&call.name, &call.arguments) {
                Some(action) => {
                    trace.outcome = "tool".into();
                    Ok((Followup::Act(action), trace))
                }
                None => {
                    tracing::warn!(tool = %call.name, "LLM called a tool that does not exist");
                    canned(trace, "refused:unknown_tool".into())
                }
            };
        }
        let Some(text) = completion.content else {
            return canned(trace, "refused:empty".into());
        };
        let checked = guard::check_answer(
            &text,
            &fitted.messages,
            &canary,
            school.roster(),
            self.limits.max_answer_chars,
        );
        match checked {
            Ok(text) => {
                trace.outcome = "answered".into();
                Ok((Followup::Answer(text), trace))
            }
            Err(reason) => {
                tracing::warn!(
                    tenant = ctx.schema_name(),
                    reason,
                    "LLM answer failed the output checks; canned reply"
                );
                canned(trace, format!("refused:{reason}"))
            }
        }
    }
}

/// The LLM settings, checked (and the base URL's trailing `/` dropped) when the configuration
/// is loaded.
impl crate::config::Check for crate::config::Llm {
    fn check(&mut self) -> std::result::Result<(), crate::config::Problem> {
        use crate::config::keys::llm as key;
        if let Some(url) = &mut self.base_url {
            *url = url.trim_end_matches('/').to_string();
            key::base_url.require_http_url(url)?;
        }
        key::timeout_ms.require_within(self.timeout_ms, 100..=120_000, "milliseconds")?;
        key::max_retries.require(self.max_retries <= 10, "must be at most 10")?;
        key::prompt_budget.require_within(self.prompt_budget, 500..=1_000_000, "tokens")?;
        key::max_completion_tokens.require_within(
            self.max_completion_tokens,
            16..=100_000,
            "tokens",
        )?;
        key::max_answer_chars.require_within(
            self.max_answer_chars,
            50..=4096,
            "characters (WhatsApp's limit)",
        )?;
        key::model.require(!self.model.trim().is_empty(), "must not be empty")
    }
}
