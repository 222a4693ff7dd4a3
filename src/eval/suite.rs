//! Eval suites: YAML files of multi-turn conversations with what each turn must show.
//!
//! ```yaml
//! suite: grounded
//! description: Answers come from the school's data.
//! tenant: demo                  # default school of the cases
//! llm: {timeout_ms: 1500}       # optional limits for this suite
//! mock:                         # the mock model's script (ignored against a real endpoint)
//!   rules:
//!     - when: {last_user_contains: "mid-term", prompt_contains: "Mid-term break"}
//!       reply: {content: "Mid-term break starts on Friday."}
//! pass_at_least: 0.95          # optional: the share of cases that must pass (default: all)
//! cases:
//!   - name: mid-term break
//!     phone: "+2348030000002"
//!     turns:
//!       - say: hello
//!         expect: {llm_called: false, state: main_menu}
//!       - say: When is the mid-term break?
//!         expect:
//!           llm_called: true
//!           contains: [Friday]
//!           prompt_contains: [Mid-term break]
//!           max_prompt_tokens: 3000
//!           judge: {rubric: "Says when the break starts", threshold: 0.7}
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::llm::mock::Script;

/// One suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Suite name (unique among the suites run).
    pub suite: String,
    /// What it measures.
    #[serde(default)]
    pub description: String,
    /// Default school of its cases (schema name).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Limits for this suite.
    #[serde(default)]
    pub llm: SuiteLimits,
    /// The mock model's script.
    #[serde(default)]
    pub mock: Script,
    /// The suite passes when at least this share of its cases pass (0 to 1), instead of
    /// every case: for suites that measure how well the bot understands real messages, where
    /// a few misses are expected and the rate is what is held.
    pub pass_at_least: Option<f64>,
    /// The conversations.
    pub cases: Vec<Case>,
    /// The file it came from.
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_tenant() -> String {
    "demo".into()
}

/// Limits a suite may set (defaults: the service's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteLimits {
    /// Deadline of a call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Retries.
    pub max_retries: Option<u32>,
    /// Prompt token budget.
    pub prompt_budget: Option<usize>,
    /// Longest answer.
    pub max_answer_chars: Option<usize>,
}

/// One conversation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Case name (unique in its suite).
    pub name: String,
    /// The school, when not the suite's.
    pub tenant: Option<String>,
    /// The parent's phone.
    pub phone: String,
    /// The turns, in order.
    pub turns: Vec<TurnSpec>,
}

/// One message and what must hold after it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSpec {
    /// What the parent says.
    pub say: String,
    /// Assertions.
    #[serde(default)]
    pub expect: Expect,
}

/// Assertions on one turn; all given must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The replies contain each of these.
    #[serde(default)]
    pub contains: Vec<String>,
    /// The replies contain none of these.
    #[serde(default)]
    pub not_contains: Vec<String>,
    /// The replies match this regex.
    pub regex: Option<String>,
    /// `contains`, `not_contains` and `regex` ignore case (default: true).
    #[serde(default = "yes")]
    pub ignore_case: bool,
    /// The conversation's state afterwards (`main_menu`, `viewing_results`...).
    pub state: Option<String>,
    /// The conversation's state afterwards is one of these.
    #[serde(default)]
    pub state_in: Vec<String>,
    /// The model was (not) called.
    pub llm_called: Option<bool>,
    /// The LLM path's outcome (`answered`, `tool`, `refused:unknown_student`, `failed:timeout`...).
    pub outcome: Option<String>,
    /// The model called this tool, with at least these arguments.
    pub tool: Option<ToolExpect>,
    /// The bot declined (the canned reply, or "only children verified for this phone").
    pub refusal: Option<bool>,
    /// No student outside the phone's verified scope, of any school, is named in the replies
    /// (default: checked).
    #[serde(default = "yes")]
    pub in_scope: bool,
    /// Prompt tokens at most.
    pub max_prompt_tokens: Option<u64>,
    /// The prompt sent contains each of these.
    #[serde(default)]
    pub prompt_contains: Vec<String>,
    /// The prompt sent contains none of these.
    #[serde(default)]
    pub prompt_not_contains: Vec<String>,
    /// A model grades the replies against a rubric (see [`super::judge`]).
    pub judge: Option<super::judge::Judge>,
}

impl Default for Expect {
    fn default() -> Self {
        Self {
            contains: Vec::new(),
            not_contains: Vec::new(),
            regex: None,
            ignore_case: true,
            state: None,
            state_in: Vec::new(),
            llm_called: None,
            outcome: None,
            tool: None,
            refusal: None,
            in_scope: true,
            max_prompt_tokens: None,
            prompt_contains: Vec::new(),
            prompt_not_contains: Vec::new(),
            judge: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// An expected tool call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolExpect {
    /// Tool name.
    pub name: String,
    /// Arguments that must be present with these values.
    #[serde(default)]
    pub arguments: serde_json::Map<String, Value>,
}

/// Read the suites in `paths` (files, or folders whose `*.yaml`/`*.yml` files are read, not
/// recursively), sorted by path. Errors name the file.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Suite>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(p);
                }
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or folder", path.display()));
        }
    }
    files.sort();
    let mut suites: Vec<Suite> = Vec::new();
    for file in files {
        let suite = read(&file)?;
        if suites.iter().any(|s| s.suite == suite.suite) {
            return Err(format!(
                "{}: suite `{}` is defined twice",
                file.display(),
                suite.suite
            ));
        }
        suites.push(suite);
    }
    if suites.is_empty() {
        return Err("no suites found".into());
    }
    Ok(suites)
}

fn read(file: &Path) -> Result<Suite, String> {
    let at = |e: String| format!("{}: {e}", file.display());
    let text = std::fs::read_to_string(file).map_err(|e| at(e.to_string()))?;
    let mut suite: Suite = serde_yaml::from_str(&text).map_err(|e| at(e.to_string()))?;
    suite.mock.check().map_err(|e| at(format!("mock: {e}")))?;
    if let Some(bar) = suite.pass_at_least
        && !(0.0..=1.0).contains(&bar)
    {
        return Err(at(format!("pass_at_least: {bar} is not between 0 and 1")));
    }
    let mut names = std::collections::HashSet::new();
    for case in &suite.cases {
        if !names.insert(case.name.as_str()) {
            return Err(at(format!("case `{}` is defined twice", case.name)));
        }
        if case.turns.is_empty() {
            return Err(at(format!("case `{}` has no turns", case.name)));
        }
        for turn in &case.turns {
            if let Some(re) = &turn.expect.regex {
                regex::Regex::new(re)
                    .map_err(|e| at(format!("case `{}`: bad regex: {e}", case.name)))?;
            }
        }
    }
    suite.path = file.to_path_buf();
    Ok(suite)
}
