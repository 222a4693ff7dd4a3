//! `chatbot eval`: run conversation suites (`evals/*.yaml`, see [`suite`]) through the real
//! engine and LLM path, against the mock model (each suite's script) or a real
//! OpenAI-compatible endpoint, on a fresh embedded database with the demo schools.
//!
//! Each case runs `repeat` times (a fresh conversation each time); a case passes when every
//! run passes, and its flip rate is the share of runs that disagree with the majority. Prompt
//! or model variants run side by side. Results are compared with a committed baseline (a case
//! that passed there and fails now is a regression), and written as JSON (stable schema),
//! JUnit XML and a Markdown summary. Exit codes: 0 pass, 1 failures (or, with
//! `--fail-on-regression`, regressions), 2 the harness could not run.

pub mod judge;
pub mod report;
pub mod suite;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;

use crate::config::Settings;
use crate::conversation::{self, Inbound, engine};
use crate::domain::{PhoneNumber, SchemaName};
use crate::llm::client::ClientConfig;
use crate::llm::mock::MockLlm;
use crate::llm::prompt::Prompts;
use crate::llm::{Limits, Llm};
use crate::pipeline::{Turn, Turns};
use crate::state::AppState;
use crate::tenancy::{self, TenantCtx};
use report::{CaseReport, Report, RunReport, TurnReport, VariantReport};
use suite::{Case, Expect, Suite};

/// A prompt or model variant.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Name in reports and the baseline.
    pub name: String,
    /// Prompt folder (`system.j2`, `user.j2`); `None`: the embedded prompts.
    pub prompts: Option<PathBuf>,
    /// Model; `None`: the run's model.
    pub model: Option<String>,
}

impl std::str::FromStr for Variant {
    type Err = String;
    /// `NAME`, `NAME:prompts=DIR`, `NAME:model=M` or `NAME:prompts=DIR,model=M`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s.split_once(':').unwrap_or((s, ""));
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!("variant name `{name}`: use letters, digits, - _ ."));
        }
        let mut v = Variant {
            name: name.to_string(),
            prompts: None,
            model: None,
        };
        for part in rest.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("prompts", dir)) => v.prompts = Some(PathBuf::from(dir)),
                Some(("model", m)) => v.model = Some(m.to_string()),
                _ => return Err(format!("`{part}`: expected prompts=DIR or model=NAME")),
            }
        }
        Ok(v)
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Suite files or folders.
    pub paths: Vec<PathBuf>,
    /// Only cases whose `suite/case` name contains this.
    pub filter: Option<String>,
    /// Cases run at once.
    pub concurrency: usize,
    /// Runs per case.
    pub repeat: u32,
    /// Variants; empty: one `default` variant.
    pub variants: Vec<Variant>,
    /// A real endpoint instead of the mock.
    pub base_url: Option<String>,
    /// Its key.
    pub api_key: Option<String>,
    /// The model.
    pub model: String,
    /// Response cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Baseline file to compare with (and write with `write_baseline`).
    pub baseline: Option<PathBuf>,
    /// Write the baseline from this run.
    pub write_baseline: bool,
    /// Exit 1 only for regressions against the baseline.
    pub fail_on_regression: bool,
    /// Folder for `report.json`, `junit.xml`, `summary.md`.
    pub out_dir: Option<PathBuf>,
    /// USD per million prompt tokens.
    pub price_in: f64,
    /// USD per million completion tokens.
    pub price_out: f64,
}

/// The run's result and its exit code (0 pass, 1 failures or regressions).
pub struct Finished {
    /// Everything measured.
    pub report: Report,
    /// 0 or 1.
    pub exit_code: u8,
}

/// Every student of every school: (school, full name, student ID), for the scope check.
type Roster = Vec<(i64, String, String)>;

struct Shared {
    state: AppState,
    roster: Roster,
    counter: AtomicUsize,
}

/// Run the suites; an `Err` is a harness error (exit code 2).
pub async fn run(options: Options) -> Result<Finished, String> {
    let suites = suite::load(&options.paths)?;
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.secrets.secret_key = Some(SecretString::from(
        "chatbot-eval-secret-0123456789abcdef".to_string(),
    ));
    let defaults = settings.clone();
    let state = crate::app::build_state(settings)
        .await
        .map_err(|e| format!("cannot build the application: {e}"))?;
    crate::demo::seed(&state.db, &state.secret)
        .await
        .map_err(|e| format!("cannot seed the demo schools: {e}"))?;
    let mut roster = Vec::new();
    for ctx in tenancy::all(&state.db)
        .await
        .map_err(|e| format!("cannot list schools: {e}"))?
    {
        for (name, id) in crate::school::students::roster(&state.db, &ctx)
            .await
            .map_err(|e| e.to_string())?
        {
            roster.push((ctx.id(), name, id));
        }
    }
    let shared = Arc::new(Shared {
        state,
        roster,
        counter: AtomicUsize::new(0),
    });
    let variants = if options.variants.is_empty() {
        vec![Variant {
            name: "default".into(),
            prompts: None,
            model: None,
        }]
    } else {
        options.variants.clone()
    };
    let mut reports = Vec::new();
    for variant in &variants {
        let prompts_source = variant
            .prompts
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "embedded".into());
        // Check the variant's prompts once, before any case: a template that does not compile
        // is a harness error; one that fails at render time fails its cases.
        load_prompts(variant)?;
        let mut cases = Vec::new();
        for suite in &suites {
            cases.extend(run_suite(&shared, &options, &defaults, variant, suite).await?);
        }
        reports.push(VariantReport::new(
            variant.name.clone(),
            prompts_source,
            variant
                .model
                .clone()
                .unwrap_or_else(|| options.model.clone()),
            cases,
            options.price_in,
            options.price_out,
        ));
    }
    let mut report = Report::new(reports, options.base_url.is_none());
    let baseline = match &options.baseline {
        Some(path) if path.exists() && !options.write_baseline => {
            Some(report::Baseline::read(path)?)
        }
        _ => None,
    };
    if let Some(b) = &baseline {
        report.compare(b);
    }
    if options.write_baseline
        && let Some(path) = &options.baseline
    {
        report::Baseline::from_report(&report).write(path)?;
    }
    if let Some(out) = &options.out_dir {
        report.write(out)?;
    }
    let exit_code = if options.fail_on_regression {
        if baseline.is_none() && !options.write_baseline {
            return Err("--fail-on-regression needs a baseline file (--baseline)".into());
        }
        u8::from(report.regressions() > 0)
    } else {
        u8::from(report.failures() > 0)
    };
    Ok(Finished { report, exit_code })
}

fn load_prompts(variant: &Variant) -> Result<Prompts, String> {
    match &variant.prompts {
        Some(dir) => Prompts::from_dir(dir),
        None => Prompts::embedded(),
    }
    .map_err(|e| format!("variant `{}`: {e}", variant.name))
}

async fn run_suite(
    shared: &Arc<Shared>,
    options: &Options,
    defaults: &Settings,
    variant: &Variant,
    suite: &Suite,
) -> Result<Vec<CaseReport>, String> {
    let mock = match &options.base_url {
        Some(_) => None,
        None => Some(
            MockLlm::start(([127, 0, 0, 1], 0).into(), suite.mock.clone())
                .await
                .map_err(|e| format!("cannot start the mock LLM: {e}"))?,
        ),
    };
    let base_url = options
        .base_url
        .clone()
        .or_else(|| mock.as_ref().map(MockLlm::base_url))
        .expect("one of them");
    let config = ClientConfig {
        base_url,
        api_key: options.api_key.clone().unwrap_or_default(),
        model: variant
            .model
            .clone()
            .unwrap_or_else(|| options.model.clone()),
        timeout: Duration::from_millis(suite.llm.timeout_ms.unwrap_or(defaults.llm.timeout_ms)),
        max_retries: suite.llm.max_retries.unwrap_or(defaults.llm.max_retries),
        max_completion_tokens: defaults.llm.max_completion_tokens,
        cache_dir: options.cache_dir.clone(),
    };
    let limits = Limits {
        prompt_budget: suite
            .llm
            .prompt_budget
            .unwrap_or(defaults.llm.prompt_budget),
        daily_tokens: u64::MAX / 4,
        max_answer_chars: suite
            .llm
            .max_answer_chars
            .unwrap_or(defaults.llm.max_answer_chars),
        history_messages: 6,
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut order = Vec::new();
    for (i, case) in suite.cases.iter().enumerate() {
        let full = format!("{}/{}", suite.suite, case.name);
        if options
            .filter
            .as_ref()
            .is_some_and(|f| !full.contains(f.as_str()))
        {
            continue;
        }
        order.push(i);
        for run in 0..options.repeat.max(1) {
            let (shared, semaphore, case) = (shared.clone(), semaphore.clone(), case.clone());
            let (config, limits, variant) = (config.clone(), limits.clone(), variant.clone());
            let tenant = case.tenant.clone().unwrap_or_else(|| suite.tenant.clone());
            tasks.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                // A fresh client per run: one run's failures must not open the circuit for
                // the next.
                let llm = load_prompts(&variant).and_then(|prompts| {
                    Llm::new(config, prompts, limits, &shared.state.secret)
                        .map_err(|e| e.to_string())
                });
                let result = match llm {
                    Ok(llm) => run_case(&shared, Arc::new(llm), &tenant, &case).await,
                    Err(e) => Err(e),
                };
                (i, run, result)
            });
        }
    }
    let mut runs: BTreeMap<usize, Vec<(u32, RunReport)>> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, run, result) = joined.map_err(|e| format!("a case panicked: {e}"))?;
        runs.entry(i).or_default().push((run, result?));
    }
    if let Some(m) = mock {
        m.stop();
    }
    Ok(order
        .into_iter()
        .map(|i| {
            let case = &suite.cases[i];
            let mut r = runs.remove(&i).unwrap_or_default();
            r.sort_by_key(|(n, _)| *n);
            let mut report = CaseReport::new(
                suite.suite.clone(),
                case.name.clone(),
                r.into_iter().map(|(_, run)| run).collect(),
            );
            report.pass_at_least = suite.pass_at_least;
            report
        })
        .collect())
}

/// One run of one case in a fresh conversation; `Err` only when the case cannot run at all
/// (unknown school, bad phone): a harness error.
async fn run_case(
    shared: &Shared,
    llm: Arc<Llm>,
    tenant: &str,
    case: &Case,
) -> Result<RunReport, String> {
    let state = &shared.state;
    let talk = Turns {
        llm: Some(llm.clone()),
        ..state.turns().clone()
    };
    let schema = SchemaName::parse(tenant).map_err(|e| format!("case `{}`: {e}", case.name))?;
    let ctx = tenancy::by_schema_name(&state.db, &schema)
        .await
        .map_err(|e| format!("case `{}`: school `{tenant}`: {e}", case.name))?;
    let phone =
        PhoneNumber::parse(&case.phone).map_err(|e| format!("case `{}`: {e}", case.name))?;
    // A channel of its own: a fresh session, whatever ran before.
    let channel = format!("eval-{:x}", shared.counter.fetch_add(1, Ordering::Relaxed));
    let mut turns = Vec::new();
    // Everything the parent typed so far: what they typed may be echoed back to them.
    let mut typed_so_far = String::new();
    for spec in &case.turns {
        typed_so_far.push_str(&spec.say);
        typed_so_far.push('\n');
        let outcome = crate::pipeline::converse(
            &talk,
            &ctx,
            &channel,
            &phone,
            &Inbound::text(&spec.say),
            Utc::now(),
        )
        .await;
        let turn = match outcome {
            Ok(o) => {
                let allowed = allowed(state, &ctx, &phone, &o).await?;
                let mut failures = check(&spec.expect, &typed_so_far, &o, &allowed, &shared.roster);
                let mut report = TurnReport::new(&spec.say, &o, Vec::new());
                if let Some(j) = &spec.expect.judge {
                    let said = report.replies.join("\n");
                    match judge::grade(&llm, j, &said).await {
                        Ok(verdict) => {
                            if !verdict.pass {
                                failures.push(format!(
                                    "judge: score {:.2}{} against \"{}\": {}",
                                    verdict.score,
                                    j.threshold
                                        .map(|t| format!(" (at least {t:.2})"))
                                        .unwrap_or_default(),
                                    j.rubric,
                                    verdict.reason
                                ));
                            }
                            report.judge = Some(verdict);
                        }
                        Err(e) => failures.push(format!("judge: {e}")),
                    }
                }
                report.failures = failures;
                report
            }
            Err(e) => TurnReport::error(&spec.say, e.to_string()),
        };
        turns.push(turn);
    }
    Ok(RunReport::new(turns))
}

/// Student IDs and names this phone may see after the turn.
async fn allowed(
    state: &AppState,
    ctx: &TenantCtx,
    phone: &PhoneNumber,
    o: &Turn,
) -> Result<(HashSet<String>, HashSet<String>), String> {
    let school = state
        .pipeline
        .turns
        .snapshots
        .get(&state.db, ctx)
        .await
        .map_err(|e| e.to_string())?;
    let children = engine::children(&school, phone, &o.session);
    Ok((
        children
            .iter()
            .map(|c| c.model.student_id.clone())
            .collect(),
        children.iter().map(|c| c.name.clone()).collect(),
    ))
}

/// The bot's ways of declining, in every language, rendered once per run.
static REFUSALS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let texts = conversation::texts();
    let mut out = Vec::new();
    for lang in texts.languages() {
        for name in [crate::llm::CANNED, "not_in_scope"] {
            if let Ok(t) = texts.render(lang, name, minijinja::context! { school => "" }) {
                out.push(t.trim().to_string());
            }
        }
    }
    out
});

/// What failed in one turn (empty: it passed).
fn check(
    e: &Expect,
    said_by_parent: &str,
    o: &Turn,
    allowed: &(HashSet<String>, HashSet<String>),
    roster: &Roster,
) -> Vec<String> {
    let mut failures = Vec::new();
    let said: String = o
        .replies
        .iter()
        .map(|r| r.to_plain())
        .collect::<Vec<_>>()
        .join("\n");
    let fold = |s: &str| {
        if e.ignore_case {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let hay = fold(&said);
    for c in &e.contains {
        if !hay.contains(&fold(c)) {
            failures.push(format!("replies do not contain {c:?}"));
        }
    }
    for c in &e.not_contains {
        if hay.contains(&fold(c)) {
            failures.push(format!("replies contain {c:?}"));
        }
    }
    if let Some(re) = &e.regex {
        let pattern = if e.ignore_case {
            format!("(?i){re}")
        } else {
            re.clone()
        };
        if !regex::Regex::new(&pattern).is_ok_and(|r| r.is_match(&said)) {
            failures.push(format!("replies do not match /{re}/"));
        }
    }
    if let Some(state) = &e.state
        && o.session.state.name() != state
    {
        failures.push(format!(
            "state is {}, expected {state}",
            o.session.state.name()
        ));
    }
    if !e.state_in.is_empty() && !e.state_in.iter().any(|s| s == o.session.state.name()) {
        failures.push(format!(
            "state is {}, expected one of {}",
            o.session.state.name(),
            e.state_in.join(", ")
        ));
    }
    let trace = o.llm.clone().unwrap_or_default();
    if let Some(called) = e.llm_called
        && trace.called != called
    {
        failures.push(format!(
            "LLM {}called, expected {}called",
            if trace.called { "" } else { "not " },
            if called { "" } else { "not " }
        ));
    }
    if let Some(outcome) = &e.outcome
        && &trace.outcome != outcome
    {
        failures.push(format!(
            "LLM outcome {:?}, expected {outcome:?}",
            trace.outcome
        ));
    }
    if let Some(tool) = &e.tool {
        match &trace.tool {
            Some((name, args)) if name == &tool.name => {
                for (k, v) in &tool.arguments {
                    if args.get(k) != Some(v) {
                        failures.push(format!(
                            "tool {name} argument {k} is {}, expected {v}",
                            args.get(k).cloned().unwrap_or_default()
                        ));
                    }
                }
            }
            Some((name, _)) => failures.push(format!("tool {name} called, expected {}", tool.name)),
            None => failures.push(format!("no tool called, expected {}", tool.name)),
        }
    }
    if let Some(refusal) = e.refusal {
        let refused = REFUSALS.iter().any(|t| said.contains(t.as_str()));
        if refused != refusal {
            failures.push(if refusal {
                "the bot did not decline".to_string()
            } else {
                "the bot declined".to_string()
            });
        }
    }
    if e.in_scope {
        // What the parent typed in this conversation may be echoed ("the PIN of
        // GFA/2026/0012?"), in the school's format ("gfa-2026-0012" typed).
        let (ids, names) = allowed;
        let lower = said.to_lowercase();
        let key = |s: &str| -> String {
            s.chars()
                .filter(char::is_ascii_alphanumeric)
                .flat_map(|c| c.to_lowercase())
                .collect()
        };
        let typed = key(said_by_parent);
        for (_, name, id) in roster {
            let id_lower = id.to_lowercase();
            if !ids.contains(id) && lower.contains(&id_lower) && !typed.contains(&key(id)) {
                failures.push(format!(
                    "replies name student {id}, outside the verified scope"
                ));
            }
            if !names.contains(name)
                && !name.is_empty()
                && said.contains(name.as_str())
                && !said_by_parent.contains(name.as_str())
            {
                failures.push(format!("replies name {name}, outside the verified scope"));
            }
        }
    }
    if let Some(max) = e.max_prompt_tokens
        && trace.prompt_tokens > max
    {
        failures.push(format!(
            "{} prompt tokens, expected at most {max}",
            trace.prompt_tokens
        ));
    }
    let prompt: String = trace
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for c in &e.prompt_contains {
        if !prompt.contains(c.as_str()) {
            failures.push(format!("prompt does not contain {c:?}"));
        }
    }
    for c in &e.prompt_not_contains {
        if prompt.contains(c.as_str()) {
            failures.push(format!("prompt contains {c:?}"));
        }
    }
    failures
}
