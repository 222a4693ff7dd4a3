//! The bot's words: minijinja templates under `prompts/replies/<lang>/`, embedded at build time,
//! rendered in strict mode (a missing variable is an error, not an empty string), and the
//! keywords that pick intents, per language.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, Value};

use super::input::normalize;
use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/prompt_files.rs"));

/// The language used when neither the user nor the school chose one the bot speaks.
pub const FALLBACK_LANGUAGE: &str = "en";

/// Templates and keywords for every language the bot speaks.
pub struct Texts {
    env: Environment<'static>,
    languages: Vec<String>,
    /// language -> intent -> normalized keywords
    keywords: BTreeMap<String, BTreeMap<String, Vec<Keyword>>>,
    /// (language, label name) -> label, rendered once from each `labels.j2`
    labels: BTreeMap<(String, String), String>,
}

impl std::fmt::Debug for Texts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Texts")
            .field("languages", &self.languages)
            .finish()
    }
}

fn template_error(name: &str, e: minijinja::Error) -> Error {
    Error::Internal(anyhow::anyhow!("reply template `{name}`: {e:#}"))
}

/// Keyword lists named `opt_...` are matched whole ([`Texts::opt_change`]), not as intents.
const OPT_PREFIX: &str = "opt_";
/// Keyword lists named `topic_...` name what a question about the notices is about; their
/// words are also what the notices are searched for ([`Texts::topic_words`]).
pub const TOPIC_PREFIX: &str = "topic_";
/// Keyword lists named `lang_<code>` ask for that language by name ("in French please").
pub const LANG_PREFIX: &str = "lang_";

/// One keyword of an intent, normalized. Written `=word` in `keywords.toml`, it counts only
/// as the whole message ("ok", "fine"), never inside a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    /// The normalized words.
    pub text: String,
    /// Only the whole message.
    pub whole: bool,
}

impl Keyword {
    fn parse(raw: &str) -> Self {
        match raw.strip_prefix('=') {
            Some(rest) => Self {
                text: normalize(rest),
                whole: true,
            },
            None => Self {
                text: normalize(raw),
                whole: false,
            },
        }
    }

    /// Does normalized input `said` say this keyword?
    pub fn said_in(&self, said: &str) -> bool {
        self.said_in_words(&super::input::Words::new(said))
    }

    /// [`Keyword::said_in`] for input already split ([`super::input::Words`]).
    pub fn said_in_words(&self, said: &super::input::Words<'_>) -> bool {
        if self.whole {
            said.text == self.text
        } else {
            said.matches(&self.text)
        }
    }
}

/// The tier of an intent: when a message says words of several intents, the first tier with
/// a match decides, and within it the longest keyword. Asking for help (a forgotten PIN, a
/// person, a sick child) outranks a task ("results", "notices"), a task outranks navigation
/// ("menu", "help", "back") and navigation outranks courtesy ("thanks", "good morning"): "Good
/// afternoon, I want to check my ward result" is about results.
fn tier(intent: &str) -> u8 {
    match intent {
        "forgot_pin" | "person" | "contact" | "absence" => 0,
        "results" | "attendance" | "notices" | "report" => 1,
        _ if intent.starts_with(TOPIC_PREFIX) => 1,
        "thanks" | "greeting" => 3,
        _ => 2,
    }
}

impl Texts {
    /// Load the templates embedded from `prompts/replies/`.
    pub fn embedded() -> Result<Self> {
        Self::from_files(PROMPT_FILES.iter().copied())
    }

    /// Load from (path under `prompts/`, contents) pairs.
    pub fn from_files(files: impl Iterator<Item = (&'static str, &'static str)>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut languages = Vec::new();
        let mut keywords = BTreeMap::new();
        for (path, source) in files {
            let Some(rest) = path.strip_prefix("replies/") else {
                continue;
            };
            let Some((lang, file)) = rest.split_once('/') else {
                continue;
            };
            if !languages.iter().any(|l| l == lang) {
                languages.push(lang.to_string());
            }
            if let Some(name) = file.strip_suffix(".j2") {
                let key: &'static str = Box::leak(format!("{lang}/{name}").into_boxed_str());
                env.add_template(key, source)
                    .map_err(|e| template_error(key, e))?;
            } else if file == "keywords.toml" {
                let table: BTreeMap<String, Vec<String>> = toml::from_str(source)
                    .map_err(|e| Error::Internal(anyhow::anyhow!("prompts/{path}: {e}")))?;
                let table = table
                    .into_iter()
                    .map(|(intent, words)| {
                        (intent, words.iter().map(|w| Keyword::parse(w)).collect())
                    })
                    .collect();
                keywords.insert(lang.to_string(), table);
            }
        }
        languages.sort();
        let mut labels = BTreeMap::new();
        for lang in &languages {
            let key = format!("{lang}/labels");
            let template = env
                .get_template(&key)
                .map_err(|e| template_error(&key, e))?;
            let mut captured = template
                .render_captured(())
                .map_err(|e| template_error(&key, e))?;
            let rendered: Vec<(String, std::result::Result<String, minijinja::Error>)> = captured
                .with_state_mut(|state| {
                    let names: Vec<String> =
                        state.exports().into_iter().map(str::to_string).collect();
                    names
                        .into_iter()
                        .map(|name| {
                            let text = state.call_macro(&name, &[]);
                            (name, text)
                        })
                        .collect()
                });
            for (name, text) in rendered {
                let text = text.map_err(|e| template_error(&format!("{key}::{name}"), e))?;
                labels.insert((lang.clone(), name), text.trim().to_string());
            }
        }
        Ok(Self {
            env,
            languages,
            keywords,
            labels,
        })
    }

    /// Languages with templates, e.g. `["en", "fr"]`.
    pub fn languages(&self) -> &[String] {
        &self.languages
    }

    /// `lang` if the bot speaks it, else the fallback.
    pub fn language<'a>(&'a self, lang: &'a str) -> &'a str {
        if self.languages.iter().any(|l| l == lang) {
            lang
        } else {
            FALLBACK_LANGUAGE
        }
    }

    /// Render reply `name` in `lang` with `ctx`.
    pub fn render(&self, lang: &str, name: &str, ctx: Value) -> Result<String> {
        let key = format!("{lang}/{name}");
        let template = self
            .env
            .get_template(&key)
            .map_err(|e| template_error(&key, e))?;
        template.render(ctx).map_err(|e| template_error(&key, e))
    }

    /// A short label (button, list row) from `labels.j2`: the macro `name`.
    pub fn label(&self, lang: &str, name: &str) -> Result<String> {
        self.labels
            .get(&(lang.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "no label `{name}` in prompts/replies/{lang}/labels.j2"
                ))
            })
    }

    /// The intent that normalized input `said` names, looking at every language (a French
    /// speaker typing MENU in an English conversation is understood): the first [`tier`] with a
    /// match, and in it the longest keyword.
    pub fn intent(&self, said: &str) -> Option<&str> {
        let said = super::input::Words::new(said);
        let mut best: Option<(&str, u8, usize)> = None;
        for table in self.keywords.values() {
            for (intent, words) in table {
                if intent.starts_with(OPT_PREFIX) {
                    continue;
                }
                let rank = tier(intent);
                for word in words {
                    let better = best
                        .is_none_or(|(_, r, len)| rank < r || (rank == r && word.text.len() > len));
                    if better && word.said_in_words(&said) {
                        best = Some((intent.as_str(), rank, word.text.len()));
                    }
                }
            }
        }
        best.map(|(intent, _, _)| intent)
    }

    /// The words a notice is searched for on topic `intent` (`topic_...`), in every language.
    pub fn topic_words(&self, intent: &str) -> Vec<&Keyword> {
        self.keywords
            .values()
            .filter_map(|table| table.get(intent))
            .flatten()
            .collect()
    }

    /// `Some(false)` when normalized input `said` is, as a whole, an opt-out word (STOP,
    /// UNSUBSCRIBE...), `Some(true)` when it is an opt-in word (START...), in any language.
    /// Exact: no typo tolerance and never inside a sentence, so "bus stop" or "top" opts no
    /// one out.
    pub fn opt_change(&self, said: &str) -> Option<bool> {
        for table in self.keywords.values() {
            for (intent, opted_in) in [("opt_out", false), ("opt_in", true)] {
                if table
                    .get(intent)
                    .is_some_and(|words| words.iter().any(|w| w.text == said))
                {
                    return Some(opted_in);
                }
            }
        }
        None
    }

    /// The language whose name (`language_name` label) the input is, if any.
    pub fn language_named(&self, said: &str) -> Option<&str> {
        self.languages.iter().map(String::as_str).find(|lang| {
            *lang == said
                || self
                    .label(lang, "language_name")
                    .is_ok_and(|name| super::input::matches(said, &normalize(&name)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;
    use std::collections::BTreeSet;

    fn texts() -> Texts {
        Texts::embedded().expect("embedded templates compile")
    }

    #[test]
    fn english_and_a_second_language_are_complete() {
        let t = texts();
        assert_eq!(t.languages(), ["en", "fr"]);
        let names = |lang: &str| -> BTreeSet<String> {
            PROMPT_FILES
                .iter()
                .filter_map(|(p, _)| {
                    p.strip_prefix(&format!("replies/{lang}/"))
                        .map(str::to_string)
                })
                .collect()
        };
        assert_eq!(
            names("en"),
            names("fr"),
            "every language has every template"
        );
        let labels = |lang: &str| -> BTreeSet<String> {
            t.labels
                .keys()
                .filter(|(l, _)| l == lang)
                .map(|(_, n)| n.clone())
                .collect()
        };
        assert_eq!(labels("en"), labels("fr"), "every language has every label");
        assert!(labels("en").contains("results") && labels("en").len() >= 12);
        for lang in t.languages() {
            assert_eq!(
                t.keywords[lang].keys().collect::<Vec<_>>(),
                t.keywords["en"].keys().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_missing_variable_is_an_error_not_an_empty_string() {
        let t = texts();
        let err = t.render("en", "ask_pin", context! {}).unwrap_err();
        assert!(err.to_string().contains("en/ask_pin"), "{err}");
        let ok = t
            .render(
                "en",
                "ask_pin",
                context! { student_id => "GFA/2026/0001", school => "X" },
            )
            .unwrap();
        assert!(ok.contains("GFA/2026/0001"));
        assert!(t.render("xx", "ask_pin", context! {}).is_err());
        assert!(t.label("en", "no_such_label").is_err());
    }

    #[test]
    fn intents_in_any_language_with_typos() {
        let t = texts();
        for (said, intent) in [
            ("results", "results"),
            ("resluts", "results"),
            ("resultats", "results"),
            ("my report card please", "report"),
            ("attendence", "attendance"),
            ("presences", "attendance"),
            ("retour", "back"),
            ("good morning", "greeting"),
            ("another child", "add_child"),
            ("Good afternoon, I want to check my ward result", "results"),
            ("hello, i forgot my pin", "forgot_pin"),
            ("please help me see the notices", "notices"),
            ("ok", "thanks"),
            ("God bless you", "thanks"),
            ("when does school resume", "topic_resume"),
            ("en francais svp", "lang_fr"),
        ] {
            assert_eq!(t.intent(&normalize(said)), Some(intent), "{said}");
        }
        assert_eq!(t.intent("did ada improve compared to last term"), None);
        assert_eq!(
            t.intent("ok i will check"),
            None,
            "`=ok` is only the whole message"
        );
        assert_eq!(t.intent("the bus stop"), None);
        assert_eq!(t.language_named("francais"), Some("fr"));
        assert_eq!(t.language_named("english"), Some("en"));
        assert_eq!(t.language("pl"), "en", "unknown languages fall back");
    }
}
