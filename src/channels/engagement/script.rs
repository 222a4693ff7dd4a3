//! A report's preprogrammed dialogue: what the bot says in each language, the steps it walks a
//! visitor through, and where each answer (yes / no / unclear / go on) leads.
//!
//! The same document is the API's request body, the stored row and the YAML files under
//! `prompts/engagement/`. Lines are minijinja templates with `price`, `currency` and `title`.

use crate::error::ErrorCode;
use std::collections::{BTreeMap, HashSet, VecDeque};

use minijinja::{Environment, UndefinedBehavior};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Languages the engagement flow speaks, as the seed fixes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Russian.
    Ru,
    /// English.
    En,
    /// Polish.
    Pl,
}

impl Lang {
    /// `ru`, `en` or `pl`; anything else is `None`.
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "ru" => Some(Self::Ru),
            "en" => Some(Self::En),
            "pl" => Some(Self::Pl),
            _ => None,
        }
    }

    /// The code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Ru => "ru",
            Self::En => "en",
            Self::Pl => "pl",
        }
    }

    /// Every language, in the seed's order.
    pub const ALL: [Lang; 3] = [Lang::Ru, Lang::En, Lang::Pl];
}

/// Longest report slug.
pub const MAX_SLUG: usize = 64;
const MAX_LINE: usize = 1000;
const MAX_LINES: usize = 20;
const MAX_STEPS: usize = 100;
const MAX_TITLE: usize = 200;

/// A report a visitor can buy, with its titles and dialogue in every language.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The report's title in each language (shown by demo pages, available to lines as `title`).
    pub titles: Titles,
    /// The dialogue in each language.
    pub dialogue: Dialogues,
}

/// One text per language.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
pub struct Titles {
    /// Russian.
    pub ru: String,
    /// English.
    pub en: String,
    /// Polish.
    pub pl: String,
}

/// One dialogue per language.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
pub struct Dialogues {
    /// Russian.
    pub ru: Dialogue,
    /// English.
    pub en: Dialogue,
    /// Polish.
    pub pl: Dialogue,
}

/// The dialogue in one language.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
pub struct Dialogue {
    /// Said first to a visitor who has never talked to the bot (`is_new_visitor: true`).
    pub greeting_new: Vec<String>,
    /// Said first to a returning visitor.
    pub greeting_returning: Vec<String>,
    /// The step the greeting leads into (its lines follow the greeting in the first chunk).
    pub start: String,
    /// Steps by id.
    pub steps: BTreeMap<String, Step>,
    /// Said when an answer to a yes/no step is neither, before its question is asked again
    /// (unless the step has its own `unclear` branch).
    pub not_understood: Vec<String>,
    /// Said on `/ws/chat-success` after a successful payment; exactly one of them carries the
    /// report's link.
    pub paid: Vec<PaidLine>,
    /// Said on `/ws/chat-success` when the payment did not go through.
    pub unpaid: Vec<String>,
}

/// One step: lines, then a branch on the visitor's answer, or the purchase.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(skip_serializing_if_is_none)]
pub struct Step {
    /// Lines the bot sends, one every interval; the last one waits for the visitor.
    pub say: Vec<String>,
    /// Step after a "yes".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yes: Option<String>,
    /// Step after a "no".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no: Option<String>,
    /// Step after an answer that is neither (default: `not_understood`, then this step's last
    /// line again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclear: Option<String>,
    /// Step after any answer (a step without `yes`/`no`), or after a message without an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// `true`: the purchase. After these lines the server closes the socket normally, which
    /// tells the frontend to start the checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<bool>,
}

impl Step {
    /// Whether this step ends the chat at the checkout.
    pub fn is_checkout(&self) -> bool {
        self.checkout == Some(true)
    }
}

/// A line after payment; one of them carries the report link.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(skip_serializing_if_is_none)]
pub struct PaidLine {
    /// The text.
    pub message: String,
    /// `true` on the one line that carries `report_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_url: Option<bool>,
}

impl PaidLine {
    /// Whether this line carries the link.
    pub fn has_link(&self) -> bool {
        self.report_url == Some(true)
    }
}

impl Dialogues {
    /// The dialogue in `lang`.
    pub fn get(&self, lang: Lang) -> &Dialogue {
        match lang {
            Lang::Ru => &self.ru,
            Lang::En => &self.en,
            Lang::Pl => &self.pl,
        }
    }
}

impl Titles {
    /// The title in `lang`.
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Ru => &self.ru,
            Lang::En => &self.en,
            Lang::Pl => &self.pl,
        }
    }
}

/// What the visitor's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Agrees.
    Yes,
    /// Declines.
    No,
    /// Neither.
    Unclear,
    /// No answer at all: a message without `message`, "go on".
    GoOn,
}

/// Where an answer leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move<'a> {
    /// To this step.
    To(&'a str),
    /// Stay: say `not_understood`, then the step's last line again.
    Repeat,
}

impl Dialogue {
    /// Where `answer` at step `at` leads.
    pub fn follow(&self, at: &str, answer: Answer) -> Move<'_> {
        let Some(step) = self.steps.get(at) else {
            return Move::To(&self.start);
        };
        let branching = step.yes.is_some() || step.no.is_some();
        let target = match (answer, branching) {
            (_, false) => step.next.as_deref(),
            (Answer::Yes, true) => step.yes.as_deref(),
            (Answer::No, true) => step.no.as_deref(),
            (Answer::Unclear, true) => step.unclear.as_deref(),
            (Answer::GoOn, true) => step.next.as_deref().or(step.unclear.as_deref()),
        };
        target.map_or(Move::Repeat, Move::To)
    }
}

/// Recognise yes / no in the visitor's language (English words are understood everywhere).
/// Rules only: hesitation ("not sure", "не знаю") is unclear, a negation wins over a yes.
pub fn classify(lang: Lang, text: &str) -> Answer {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Answer::Unclear;
    }
    let joined = words.join(" ");
    let has_phrase = |phrases: &[&str]| {
        phrases.iter().any(|p| {
            joined == *p
                || joined.starts_with(&format!("{p} "))
                || joined.ends_with(&format!(" {p}"))
                || joined.contains(&format!(" {p} "))
        })
    };
    let has_word = |set: &[&str]| words.iter().any(|w| set.contains(w));
    let (unsure, no, yes): (&[&str], &[&str], &[&str]) = match lang {
        Lang::Ru => (
            &[
                "не знаю",
                "не уверен",
                "не уверена",
                "может быть",
                "может",
                "возможно",
                "наверное",
                "хз",
            ],
            &["нет", "неа", "не", "не хочу", "потом", "позже", "никогда"],
            &[
                "да",
                "ага",
                "угу",
                "конечно",
                "хочу",
                "давай",
                "давайте",
                "ок",
                "окей",
                "хорошо",
                "согласен",
                "согласна",
                "верно",
                "точно",
                "go",
            ],
        ),
        Lang::Pl => (
            &[
                "nie wiem",
                "nie jestem pewien",
                "nie jestem pewna",
                "może",
                "chyba",
            ],
            &["nie", "później", "potem", "nigdy"],
            &[
                "tak",
                "jasne",
                "pewnie",
                "oczywiście",
                "chcę",
                "dobrze",
                "ok",
                "okej",
                "poproszę",
                "zgoda",
                "dokładnie",
            ],
        ),
        Lang::En => (&[], &[], &[]),
    };
    const EN_UNSURE: &[&str] = &[
        "not sure",
        "don't know",
        "dont know",
        "i don't know",
        "maybe",
        "perhaps",
        "no idea",
    ];
    const EN_NO: &[&str] = &[
        "no", "nope", "nah", "not", "never", "later", "don't", "dont", "n",
    ];
    const EN_YES: &[&str] = &[
        "yes",
        "yeah",
        "yep",
        "yup",
        "y",
        "sure",
        "ok",
        "okay",
        "course",
        "definitely",
        "absolutely",
        "right",
        "correct",
        "want",
        "please",
    ];
    if has_phrase(unsure) || has_phrase(EN_UNSURE) {
        return Answer::Unclear;
    }
    if has_word(no) || has_phrase(no) || has_word(EN_NO) {
        return Answer::No;
    }
    if has_word(yes) || has_word(EN_YES) {
        return Answer::Yes;
    }
    Answer::Unclear
}

/// The price as the dialogue shows it: `250` for a whole number, else two decimals
/// (`19.90` in English, `19,90` in Russian and Polish).
pub fn format_price(lang: Lang, price: f64) -> String {
    if price.fract() == 0.0 && price.abs() < 1e15 {
        return format!("{}", price as i64);
    }
    let text = format!("{price:.2}");
    match lang {
        Lang::En => text,
        Lang::Ru | Lang::Pl => text.replace('.', ","),
    }
}

fn environment() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env
    })
}

/// What a line may use.
#[derive(Debug, Serialize)]
pub struct Vars<'a> {
    /// The price as shown (see [`format_price`]).
    pub price: &'a str,
    /// The currency as the client sent it.
    pub currency: &'a str,
    /// The report's title in the visitor's language.
    pub title: &'a str,
}

/// Render one line.
pub fn render(line: &str, vars: &Vars<'_>) -> Result<String, minijinja::Error> {
    if !line.contains("{{") && !line.contains("{%") {
        return Ok(line.to_string());
    }
    environment().render_str(line, minijinja::Value::from(minijinja::value::Serde(vars)))
}

fn invalid(message: String) -> Error {
    Error::invalid(ErrorCode::InvalidScript, message)
}

/// Check a report slug: 1-64 of `a-z`, `0-9`, `-`, `_`.
pub fn check_slug(slug: &str) -> Result<(), Error> {
    let ok = !slug.is_empty()
        && slug.len() <= MAX_SLUG
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidSlug,
            format!("a report id is 1-{MAX_SLUG} characters of a-z, 0-9, '-' and '_'"),
        ))
    }
}

impl Script {
    /// Check everything a session relies on, so a stored script never fails a visitor: lines
    /// present and within limits, templates that render, branches that lead to existing steps,
    /// a purchase reachable from the start, one link after payment.
    pub fn validate(&self) -> Result<(), Error> {
        for lang in Lang::ALL {
            let code = lang.code();
            let title = self.titles.get(lang).trim();
            if title.is_empty() || title.chars().count() > MAX_TITLE {
                return Err(invalid(format!(
                    "titles.{code}: 1 to {MAX_TITLE} characters"
                )));
            }
            self.dialogue
                .get(lang)
                .validate(lang, title)
                .map_err(|m| invalid(format!("dialogue.{code}.{m}")))?;
        }
        Ok(())
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn check_lines(what: &str, lines: &[&str], vars: &Vars<'_>) -> Result<(), String> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(format!("{what}: 1 to {MAX_LINES} lines"));
    }
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() || line.chars().count() > MAX_LINE {
            return Err(format!("{what}[{i}]: 1 to {MAX_LINE} characters"));
        }
        render(line, vars).map_err(|e| format!("{what}[{i}]: {e}"))?;
    }
    Ok(())
}

fn step_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Dialogue {
    fn validate(&self, lang: Lang, title: &str) -> Result<(), String> {
        let price = format_price(lang, 19.9);
        let vars = Vars {
            price: &price,
            currency: "EUR",
            title,
        };
        check_lines("greeting_new", &refs(&self.greeting_new), &vars)?;
        check_lines("greeting_returning", &refs(&self.greeting_returning), &vars)?;
        check_lines("not_understood", &refs(&self.not_understood), &vars)?;
        check_lines("unpaid", &refs(&self.unpaid), &vars)?;
        let paid: Vec<&str> = self.paid.iter().map(|p| p.message.as_str()).collect();
        check_lines("paid", &paid, &vars)?;
        if self.paid.iter().filter(|p| p.has_link()).count() != 1 {
            return Err("paid: exactly one line must have `report_url: true`".into());
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(format!("steps: 1 to {MAX_STEPS} steps"));
        }
        if !self.steps.contains_key(&self.start) {
            return Err(format!("start: no step `{}`", self.start));
        }
        for (id, step) in &self.steps {
            if !step_id_ok(id) {
                return Err(format!(
                    "steps.{id}: a step id is 1-40 characters of A-Z, a-z, 0-9, '_' and '-'"
                ));
            }
            check_lines(&format!("steps.{id}.say"), &refs(&step.say), &vars)?;
            let targets = [&step.yes, &step.no, &step.unclear, &step.next];
            for (name, target) in ["yes", "no", "unclear", "next"].iter().zip(targets) {
                if let Some(t) = target
                    && !self.steps.contains_key(t)
                {
                    return Err(format!("steps.{id}.{name}: no step `{t}`"));
                }
            }
            if step.is_checkout() {
                if targets.iter().any(|t| t.is_some()) {
                    return Err(format!(
                        "steps.{id}: a checkout step ends the chat; it has no yes/no/unclear/next"
                    ));
                }
            } else if step.yes.is_some() != step.no.is_some() {
                return Err(format!("steps.{id}: give both `yes` and `no`, or neither"));
            } else if step.yes.is_none() && step.next.is_none() {
                return Err(format!(
                    "steps.{id}: a step leads on with `yes` and `no`, or `next`, or is `checkout: true`"
                ));
            }
        }
        // The purchase must be reachable from the start.
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([self.start.as_str()]);
        let mut reaches_checkout = false;
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            let step = &self.steps[id];
            reaches_checkout |= step.is_checkout();
            for t in [&step.yes, &step.no, &step.unclear, &step.next]
                .into_iter()
                .flatten()
            {
                queue.push_back(t);
            }
        }
        if !reaches_checkout {
            return Err("steps: no `checkout: true` step is reachable from `start`".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_by_rules_in_each_language() {
        use Answer::*;
        for (lang, text, want) in [
            (Lang::En, "Yes!", Yes),
            (Lang::En, "yeah sure", Yes),
            (Lang::En, "of course", Yes),
            (Lang::En, "No, thanks", No),
            (Lang::En, "not now", No),
            (Lang::En, "I'm not sure", Unclear),
            (Lang::En, "maybe", Unclear),
            (Lang::En, "what is this?", Unclear),
            (Lang::Ru, "Да", Yes),
            (Lang::Ru, "конечно, хочу", Yes),
            (Lang::Ru, "нет", No),
            (Lang::Ru, "не хочу", No),
            (Lang::Ru, "не знаю", Unclear),
            (Lang::Ru, "yes", Yes),
            (Lang::Pl, "Tak", Yes),
            (Lang::Pl, "oczywiście", Yes),
            (Lang::Pl, "Nie", No),
            (Lang::Pl, "nie wiem", Unclear),
            (Lang::Pl, "   ", Unclear),
        ] {
            assert_eq!(classify(lang, text), want, "{lang:?} {text:?}");
        }
    }

    #[test]
    fn prices_as_the_dialogue_shows_them() {
        assert_eq!(format_price(Lang::Ru, 250.0), "250");
        assert_eq!(format_price(Lang::En, 19.9), "19.90");
        assert_eq!(format_price(Lang::Pl, 19.9), "19,90");
        assert_eq!(format_price(Lang::Ru, 0.5), "0,50");
    }
}
