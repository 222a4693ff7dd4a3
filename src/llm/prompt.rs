//! Prompts: minijinja templates under `prompts/llm/` (embedded at build time, or read from a
//! folder for prompt variants), rendered in strict mode, and cut to a token budget counted with
//! the model's tokenizer.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, context};
use tiktoken_rs::CoreBPE;

use super::client::Message;
use super::context::Context;
use crate::error::{Error, Result};

/// The templates a prompt folder must hold.
pub const TEMPLATES: [&str; 2] = ["system", "user"];
/// Tokens each message costs beyond its text (role and separators), and the reply's priming.
const PER_MESSAGE: usize = 4;
const PRIMING: usize = 3;

/// The prompt templates.
pub struct Prompts {
    env: Environment<'static>,
    /// Where they came from (`embedded` or a folder), for reports.
    pub source: String,
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompts")
            .field("source", &self.source)
            .finish()
    }
}

fn template_error(name: &str, e: minijinja::Error) -> Error {
    Error::Internal(anyhow::anyhow!("prompt template `{name}`: {e:#}"))
}

impl Prompts {
    fn from_sources(source: String, files: impl Iterator<Item = (String, String)>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| template_error("syntax", e))?,
        );
        for (name, text) in files {
            env.add_template_owned(name.clone(), text)
                .map_err(|e| template_error(&name, e))?;
        }
        for name in TEMPLATES {
            env.get_template(name)
                .map_err(|e| template_error(name, e))?;
        }
        Ok(Self { env, source })
    }

    /// The templates embedded from `prompts/llm/`.
    pub fn embedded() -> Result<Self> {
        Self::from_sources(
            "embedded".into(),
            crate::conversation::texts::PROMPT_FILES
                .iter()
                .filter_map(|(path, text)| {
                    let name = path.strip_prefix("llm/")?.strip_suffix(".j2")?;
                    Some((name.to_string(), text.to_string()))
                }),
        )
    }

    /// The templates of a folder holding `system.j2` and `user.j2` (a prompt variant).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        for name in TEMPLATES {
            let path = dir.join(format!("{name}.j2"));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::Internal(anyhow::anyhow!("cannot read {}: {e}", path.display()))
            })?;
            files.push((name.to_string(), text));
        }
        Self::from_sources(dir.display().to_string(), files.into_iter())
    }

    /// The messages for `ctx`: the system prompt (instructions and data), the earlier turns,
    /// the parent's message.
    pub fn render(&self, ctx: &Context, canary: &str) -> Result<Vec<Message>> {
        let system = self
            .env
            .get_template("system")
            .and_then(|t| {
                t.render(
                    context! { canary, ..minijinja::Value::from(minijinja::value::Serde(ctx)) },
                )
            })
            .map_err(|e| template_error("system", e))?;
        let user = self
            .env
            .get_template("user")
            .map_err(|e| template_error("user", e))?;
        let mut messages = vec![Message {
            role: "system",
            content: system.trim().to_string(),
        }];
        for turn in &ctx.history {
            let content = if turn.role == "user" {
                user.render(context! { text => &turn.text })
                    .map_err(|e| template_error("user", e))?
            } else {
                turn.text.clone()
            };
            messages.push(Message {
                role: turn.role,
                content: content.trim().to_string(),
            });
        }
        messages.push(Message {
            role: "user",
            content: user
                .render(context! { text => &ctx.message })
                .map_err(|e| template_error("user", e))?
                .trim()
                .to_string(),
        });
        Ok(messages)
    }
}

/// Counts tokens with the model's encoding (o200k_base when the model is unknown to
/// tiktoken, e.g. a local model); load it once, at start-up.
pub struct Tokenizer {
    bpe: &'static CoreBPE,
    /// The encoding's name.
    pub encoding: &'static str,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("encoding", &self.encoding)
            .finish()
    }
}

impl Tokenizer {
    /// The tokenizer of `model`.
    pub fn for_model(model: &str) -> Self {
        match tiktoken_rs::tokenizer::get_tokenizer(model) {
            Some(tiktoken_rs::tokenizer::Tokenizer::Cl100kBase) => Self {
                bpe: tiktoken_rs::cl100k_base_singleton(),
                encoding: "cl100k_base",
            },
            _ => Self {
                bpe: tiktoken_rs::o200k_base_singleton(),
                encoding: "o200k_base",
            },
        }
    }

    /// Tokens of a text.
    pub fn count(&self, text: &str) -> usize {
        self.bpe.count_ordinary(text)
    }

    /// Tokens of a chat request's messages.
    pub fn count_messages(&self, messages: &[Message]) -> usize {
        messages
            .iter()
            .map(|m| PER_MESSAGE + self.count(&m.content))
            .sum::<usize>()
            + PRIMING
    }
}

/// A prompt cut to its budget.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The messages to send.
    pub messages: Vec<Message>,
    /// Their tokens.
    pub tokens: usize,
    /// Pieces of context dropped to fit.
    pub dropped: usize,
}

/// Render `ctx`, dropping its least important pieces until the prompt fits `budget` tokens;
/// `None` when even the bare prompt (instructions and the message) does not fit.
pub fn fit(
    prompts: &Prompts,
    tokenizer: &Tokenizer,
    mut ctx: Context,
    canary: &str,
    budget: usize,
) -> Result<Option<Fitted>> {
    let mut dropped = 0;
    loop {
        let messages = prompts.render(&ctx, canary)?;
        let tokens = tokenizer.count_messages(&messages);
        if tokens <= budget {
            return Ok(Some(Fitted {
                messages,
                tokens,
                dropped,
            }));
        }
        if !ctx.drop_least_important() {
            return Ok(None);
        }
        dropped += 1;
    }
}
