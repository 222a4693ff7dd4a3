//! What an eval run measured, the baseline it is compared with, and the three outputs:
//! `report.json` (schema version 1, stable: fields are only ever added), `junit.xml` and
//! `summary.md`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::llm::Trace;
use crate::pipeline::Turn;

/// Version of `report.json`'s shape.
pub const SCHEMA_VERSION: u32 = 1;

/// One turn of one run.
#[derive(Debug, Clone, Serialize)]
pub struct TurnReport {
    /// What the parent said.
    pub say: String,
    /// The bot's replies, as plain text.
    pub replies: Vec<String>,
    /// State afterwards.
    pub state: String,
    /// The LLM path, when it ran.
    pub llm: Option<Trace>,
    /// Failed assertions (and errors).
    pub failures: Vec<String>,
    /// The judge's verdict, when the turn has a `judge:` assertion.
    pub judge: Option<super::judge::Verdict>,
}

impl TurnReport {
    /// From a turn's outcome.
    pub fn new(say: &str, o: &Turn, failures: Vec<String>) -> Self {
        Self {
            say: say.to_string(),
            replies: o.replies.iter().map(|r| r.to_plain()).collect(),
            state: o.session.state.name().to_string(),
            llm: o.llm.clone(),
            failures,
            judge: None,
        }
    }

    /// A turn that failed with an error.
    pub fn error(say: &str, error: String) -> Self {
        Self {
            say: say.to_string(),
            replies: Vec::new(),
            state: String::new(),
            llm: None,
            failures: vec![format!("error: {error}")],
            judge: None,
        }
    }

    fn tokens(&self) -> (u64, u64, u64) {
        self.llm.as_ref().map_or((0, 0, 0), |t| {
            (t.prompt_tokens, t.completion_tokens, u64::from(t.called))
        })
    }
}

/// One run of a case.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Every turn passed.
    pub passed: bool,
    /// The turns.
    pub turns: Vec<TurnReport>,
}

impl RunReport {
    /// From its turns.
    pub fn new(turns: Vec<TurnReport>) -> Self {
        Self {
            passed: turns.iter().all(|t| t.failures.is_empty()),
            turns,
        }
    }
}

/// One case over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// Suite.
    pub suite: String,
    /// Case.
    pub case: String,
    /// Every run passed.
    pub passed: bool,
    /// Runs that passed.
    pub passes: usize,
    /// Share of runs that disagree with the majority (0 when all agree).
    pub flip_rate: f64,
    /// What the baseline says, when there is one.
    pub baseline: Option<bool>,
    /// Passed in the baseline, fails now.
    pub regression: bool,
    /// Prompt tokens over all runs.
    pub prompt_tokens: u64,
    /// Completion tokens over all runs.
    pub completion_tokens: u64,
    /// Calls to the model over all runs.
    pub llm_calls: u64,
    /// The runs.
    pub runs: Vec<RunReport>,
    /// The suite's pass bar, when it has one: then this case alone fails nothing.
    #[serde(skip)]
    pub pass_at_least: Option<f64>,
}

impl CaseReport {
    /// From its runs.
    pub fn new(suite: String, case: String, runs: Vec<RunReport>) -> Self {
        let passes = runs.iter().filter(|r| r.passed).count();
        let n = runs.len().max(1);
        let (mut p, mut c, mut calls) = (0, 0, 0);
        for t in runs.iter().flat_map(|r| &r.turns) {
            let (tp, tc, tn) = t.tokens();
            p += tp;
            c += tc;
            calls += tn;
        }
        Self {
            suite,
            case,
            passed: passes == runs.len() && !runs.is_empty(),
            passes,
            flip_rate: passes.min(runs.len() - passes) as f64 / n as f64,
            baseline: None,
            regression: false,
            prompt_tokens: p,
            completion_tokens: c,
            llm_calls: calls,
            runs,
            pass_at_least: None,
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.suite, self.case)
    }

    /// The first failing turn as a reviewer reads it: which turn, what was said, what was
    /// expected, and what the bot actually said.
    fn first_failure(&self) -> Option<String> {
        self.runs.iter().find_map(|r| {
            r.turns.iter().enumerate().find_map(|(i, t)| {
                (!t.failures.is_empty()).then(|| {
                    let said: String = t.replies.join(" / ").chars().take(400).collect();
                    format!(
                        "turn {} {:?}: {}; the bot said ({}): {:?}",
                        i + 1,
                        t.say,
                        t.failures.join("; "),
                        if t.state.is_empty() { "-" } else { &t.state },
                        said
                    )
                })
            })
        })
    }
}

/// Sums of one variant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Cases.
    pub cases: usize,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Regressions against the baseline.
    pub regressions: usize,
    /// Failed cases of suites without a pass bar: each one fails the run.
    pub failed_strict: usize,
    /// Regressions in suites without a pass bar.
    pub regressions_strict: usize,
    /// Suites with a pass bar that passed fewer cases than it.
    pub suites_below_bar: usize,
    /// Calls to the model.
    pub llm_calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Estimated cost in USD at the prices given.
    pub cost_usd: f64,
}

/// How one suite did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SuiteScore {
    /// Suite name.
    pub suite: String,
    /// Cases run.
    pub cases: usize,
    /// Cases that passed.
    pub passed: usize,
    /// `passed / cases`.
    pub pass_rate: f64,
    /// The suite's bar, when it has one.
    pub pass_at_least: Option<f64>,
    /// Below its bar: the run fails.
    pub below_bar: bool,
}

/// One prompt or model variant.
#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    /// Variant name.
    pub name: String,
    /// Prompt source.
    pub prompts: String,
    /// Model.
    pub model: String,
    /// Sums.
    pub totals: Totals,
    /// Pass rate of each suite.
    pub suites: Vec<SuiteScore>,
    /// Cases.
    pub cases: Vec<CaseReport>,
    #[serde(skip)]
    prices: (f64, f64),
}

impl VariantReport {
    /// From its cases, at USD prices per million prompt and completion tokens.
    pub fn new(
        name: String,
        prompts: String,
        model: String,
        cases: Vec<CaseReport>,
        price_in: f64,
        price_out: f64,
    ) -> Self {
        let mut v = Self {
            name,
            prompts,
            model,
            totals: Totals::default(),
            suites: Vec::new(),
            cases,
            prices: (price_in, price_out),
        };
        v.total();
        v
    }

    fn total(&mut self) {
        let mut t = Totals {
            cases: self.cases.len(),
            ..Totals::default()
        };
        let mut suites: Vec<SuiteScore> = Vec::new();
        for c in &self.cases {
            if c.passed {
                t.passed += 1;
            } else {
                t.failed += 1;
            }
            t.regressions += usize::from(c.regression);
            if c.pass_at_least.is_none() {
                t.failed_strict += usize::from(!c.passed);
                t.regressions_strict += usize::from(c.regression);
            }
            if suites.last().is_none_or(|s| s.suite != c.suite) {
                suites.push(SuiteScore {
                    suite: c.suite.clone(),
                    pass_at_least: c.pass_at_least,
                    ..SuiteScore::default()
                });
            }
            let score = suites.last_mut().expect("pushed");
            score.cases += 1;
            score.passed += usize::from(c.passed);
            t.llm_calls += c.llm_calls;
            t.prompt_tokens += c.prompt_tokens;
            t.completion_tokens += c.completion_tokens;
        }
        for s in &mut suites {
            s.pass_rate = s.passed as f64 / s.cases.max(1) as f64;
            s.below_bar = s.pass_at_least.is_some_and(|bar| s.pass_rate < bar);
            t.suites_below_bar += usize::from(s.below_bar);
        }
        self.suites = suites;
        t.cost_usd = (t.prompt_tokens as f64 * self.prices.0
            + t.completion_tokens as f64 * self.prices.1)
            / 1_000_000.0;
        self.totals = t;
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `report.json` shape version.
    pub schema_version: u32,
    /// When the run ended (UTC, RFC 3339).
    pub generated_at: String,
    /// Against the mock model (each suite's script).
    pub mock: bool,
    /// A baseline was compared.
    pub baseline_compared: bool,
    /// Per variant.
    pub variants: Vec<VariantReport>,
}

impl Report {
    /// From the variants.
    pub fn new(variants: Vec<VariantReport>, mock: bool) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            generated_at: chrono::Utc::now().to_rfc3339(),
            mock,
            baseline_compared: false,
            variants,
        }
    }

    /// Mark each case with the baseline's verdict and whether it regressed.
    pub fn compare(&mut self, baseline: &Baseline) {
        self.baseline_compared = true;
        for v in &mut self.variants {
            for c in &mut v.cases {
                c.baseline = baseline
                    .cases
                    .get(&v.name)
                    .and_then(|cases| cases.get(&c.key()))
                    .copied();
                c.regression = c.baseline == Some(true) && !c.passed;
            }
            v.total();
        }
    }

    /// What fails the run over all variants: failed cases of suites without a pass bar, and
    /// suites below their bar.
    pub fn failures(&self) -> usize {
        let t = self.variants.iter().map(|v| &v.totals);
        t.map(|t| t.failed_strict + t.suites_below_bar).sum()
    }

    /// What fails a `--fail-on-regression` run: regressions of suites without a pass bar,
    /// and suites below their bar.
    pub fn regressions(&self) -> usize {
        let t = self.variants.iter().map(|v| &v.totals);
        t.map(|t| t.regressions_strict + t.suites_below_bar).sum()
    }

    /// Write `report.json`, `junit.xml` and `summary.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
        };
        write(
            "report.json",
            serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n",
        )?;
        write("junit.xml", self.junit())?;
        write("summary.md", self.markdown())
    }

    /// JUnit XML: one test suite per (variant, suite), one test case per case.
    pub fn junit(&self) -> String {
        fn esc(s: &str) -> String {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        }
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
        for v in &self.variants {
            let mut by_suite: BTreeMap<&str, Vec<&CaseReport>> = BTreeMap::new();
            for c in &v.cases {
                by_suite.entry(&c.suite).or_default().push(c);
            }
            for (suite, cases) in by_suite {
                let failed = cases.iter().filter(|c| !c.passed).count();
                out.push_str(&format!(
                    "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">\n",
                    esc(&format!("{}/{suite}", v.name)),
                    cases.len()
                ));
                for c in cases {
                    out.push_str(&format!(
                        "    <testcase classname=\"{}\" name=\"{}\">",
                        esc(&format!("{}.{}", v.name, c.suite)),
                        esc(&c.case)
                    ));
                    if !c.passed {
                        let why = c.first_failure().unwrap_or_default();
                        out.push_str(&format!(
                            "<failure message=\"{}\">{}</failure>",
                            esc(&why),
                            esc(&format!("{}/{} runs passed", c.passes, c.runs.len()))
                        ));
                    }
                    out.push_str("</testcase>\n");
                }
                out.push_str("  </testsuite>\n");
            }
        }
        out.push_str("</testsuites>\n");
        out
    }

    /// A Markdown summary: variants side by side, then every failing case.
    pub fn markdown(&self) -> String {
        let mut out = String::from("# Eval summary\n\n");
        out.push_str(&format!(
            "Model: {}. Baseline compared: {}.\n\n",
            if self.mock {
                "mock (each suite's script)"
            } else {
                "real endpoint"
            },
            if self.baseline_compared { "yes" } else { "no" }
        ));
        out.push_str("| variant | prompts | model | cases | passed | failed | regressions | LLM calls | prompt tokens | completion tokens | cost (USD) |\n");
        out.push_str(
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for v in &self.variants {
            let t = &v.totals;
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.4} |\n",
                v.name,
                v.prompts,
                v.model,
                t.cases,
                t.passed,
                t.failed,
                t.regressions,
                t.llm_calls,
                t.prompt_tokens,
                t.completion_tokens,
                t.cost_usd
            ));
        }
        out.push_str("\n| variant | suite | cases | passed | pass rate | bar |\n");
        out.push_str("| --- | --- | ---: | ---: | ---: | --- |\n");
        for v in &self.variants {
            for s in &v.suites {
                let bar = match s.pass_at_least {
                    Some(bar) if s.below_bar => format!("{:.0}% **below**", bar * 100.0),
                    Some(bar) => format!("{:.0}% held", bar * 100.0),
                    None => "every case".to_string(),
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {:.1}% | {} |\n",
                    v.name,
                    s.suite,
                    s.cases,
                    s.passed,
                    s.pass_rate * 100.0,
                    bar
                ));
            }
        }
        if self.variants.len() > 1 {
            out.push_str("\n| case |");
            for v in &self.variants {
                out.push_str(&format!(" {} |", v.name));
            }
            out.push_str("\n| --- |");
            for _ in &self.variants {
                out.push_str(" --- |");
            }
            out.push('\n');
            for (i, c) in self.variants[0].cases.iter().enumerate() {
                out.push_str(&format!("| {} |", c.key()));
                for v in &self.variants {
                    let mark = v
                        .cases
                        .get(i)
                        .map_or("-", |c| if c.passed { "pass" } else { "FAIL" });
                    out.push_str(&format!(" {mark} |"));
                }
                out.push('\n');
            }
        }
        let judged: Vec<String> = self
            .variants
            .iter()
            .flat_map(|v| {
                v.cases.iter().flat_map(move |c| {
                    c.runs.iter().flat_map(move |r| {
                        r.turns.iter().enumerate().filter_map(move |(i, t)| {
                            t.judge.as_ref().map(|j| {
                                format!(
                                    "| {} | {} | {} {:?} | {:.2} | {} | {} |\n",
                                    v.name,
                                    c.key(),
                                    i + 1,
                                    t.say,
                                    j.score,
                                    if j.pass { "pass" } else { "FAIL" },
                                    j.reason.replace('|', "/")
                                )
                            })
                        })
                    })
                })
            })
            .collect();
        if !judged.is_empty() {
            out.push_str("\n## Judged replies\n\n| variant | case | turn | score | verdict | reason |\n| --- | --- | --- | ---: | --- | --- |\n");
            for line in judged {
                out.push_str(&line);
            }
        }
        let failing: Vec<(&VariantReport, &CaseReport)> = self
            .variants
            .iter()
            .flat_map(|v| v.cases.iter().filter(|c| !c.passed).map(move |c| (v, c)))
            .collect();
        if !failing.is_empty() {
            out.push_str("\n## Failing cases\n\n");
            for (v, c) in failing {
                out.push_str(&format!(
                    "- {} `{}`{}: {}/{} runs passed (flip rate {:.2}); {}\n",
                    v.name,
                    c.key(),
                    if c.regression { " **regression**" } else { "" },
                    c.passes,
                    c.runs.len(),
                    c.flip_rate,
                    c.first_failure().unwrap_or_default()
                ));
            }
        }
        out
    }
}

/// The committed verdicts: variant -> `suite/case` -> passed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Baseline {
    /// `report.json` shape version it was written with.
    pub schema_version: u32,
    /// Verdicts.
    pub cases: BTreeMap<String, BTreeMap<String, bool>>,
}

impl Baseline {
    /// Read a baseline file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The verdicts of a run.
    pub fn from_report(report: &Report) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            cases: report
                .variants
                .iter()
                .map(|v| {
                    (
                        v.name.clone(),
                        v.cases.iter().map(|c| (c.key(), c.passed)).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Write it (pretty, sorted, so diffs are readable).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}
