//! What people really type: case, accents, punctuation and small typos are forgiven.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lower-case, accents removed, punctuation turned into spaces, whitespace collapsed:
/// `"  Résultats!! "` -> `"resultats"`.
pub fn normalize(text: &str) -> String {
    let folded: String = text
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a transcript and a prompt hold instead of a PIN.
pub const PIN_WITHHELD: &str = "[PIN withheld]";

/// A message with anything that may be a PIN taken out, before it is stored or shown to a
/// model: a message that is only 4-8 digits (with spaces or punctuation between them), and
/// any 4-8 digit run next to the words "pin", "code" or "password" ("my pin is 1234", "1234 is
/// the code"). Longer numbers (phones, student IDs with letters) are kept.
pub fn withhold_pins(text: &str) -> std::borrow::Cow<'_, str> {
    use std::sync::LazyLock;
    static AFTER: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b(pin|code|passcode|password)\b(\D{0,24}?)\b\d{4,8}\b")
            .expect("valid pattern")
    });
    static BEFORE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b\d{4,8}\b(\D{0,16}?)\b(pin|code|passcode|password)\b")
            .expect("valid pattern")
    });
    let digits = text.chars().filter(char::is_ascii_digit).count();
    if (4..=8).contains(&digits)
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || !c.is_alphanumeric())
    {
        return PIN_WITHHELD.into();
    }
    match AFTER.replace_all(text, format!("${{1}}${{2}}{PIN_WITHHELD}")) {
        std::borrow::Cow::Borrowed(_) => {
            BEFORE.replace_all(text, format!("{PIN_WITHHELD}${{1}}${{2}}"))
        }
        std::borrow::Cow::Owned(after) => BEFORE
            .replace_all(&after, format!("{PIN_WITHHELD}${{1}}${{2}}"))
            .into_owned()
            .into(),
    }
}

/// Edit distance counting an adjacent swap as one edit (optimal string alignment), bounded:
/// returns `max + 1` as soon as it is certain to exceed `max`.
pub fn edit_distance(a: &str, b: &str, max: usize) -> usize {
    // Normalized input is nearly always ASCII, and short: compare bytes, without allocating.
    if a.is_ascii() && b.is_ascii() && a.len() < 64 && b.len() < 64 {
        return osa(a.as_bytes(), b.as_bytes(), max);
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    osa(&a, &b, max)
}

/// [`edit_distance`] over any comparable units.
fn osa<T: PartialEq>(a: &[T], b: &[T], max: usize) -> usize {
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    // Three rows of the table: on the stack for words and phrases, on the heap beyond.
    let width = b.len() + 1;
    let mut stack = [0usize; 3 * 65];
    let mut heap = Vec::new();
    let rows: &mut [usize] = if width <= 65 {
        &mut stack[..3 * width]
    } else {
        heap.resize(3 * width, 0);
        &mut heap
    };
    let (mut before, rest) = rows.split_at_mut(width);
    let (mut prev, mut cur) = rest.split_at_mut(width);
    for (j, cell) in prev.iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j - 1] + cost).min(prev[j] + 1).min(cur[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > max {
            return max + 1;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Typos allowed for a word of this length: none below 5 letters ("test" is not "text"), one
/// up to 7, two beyond.
fn tolerance(word: &str) -> usize {
    match word.chars().count() {
        0..=4 => 0,
        5..=7 => 1,
        _ => 2,
    }
}

/// `a` is `b` with at most `tolerance(b)` typos, and begins with the same letter (people
/// rarely get the first letter wrong; "present" is not "resent").
fn close(a: &str, b: &str) -> bool {
    let max = tolerance(b);
    max > 0
        && tolerance(a) > 0
        && a.chars().next() == b.chars().next()
        && edit_distance(a, b, max) <= max
}

/// Normalized input split once, to be matched against many keywords.
pub struct Words<'a> {
    /// The whole input.
    pub text: &'a str,
    /// ` text `: a phrase is in it when ` phrase ` is.
    padded: String,
    words: Vec<&'a str>,
}

impl<'a> Words<'a> {
    /// Split normalized input `said`.
    pub fn new(said: &'a str) -> Self {
        Self {
            text: said,
            padded: format!(" {said} "),
            words: said.split(' ').filter(|w| !w.is_empty()).collect(),
        }
    }

    /// [`matches`], without splitting the input again.
    pub fn matches(&self, keyword: &str) -> bool {
        if self.text.is_empty() || keyword.is_empty() {
            return false;
        }
        if self.text == keyword {
            return true;
        }
        if keyword.contains(' ') {
            // A phrase appears whole (its first word is one of the input's, the cheap test
            // first), or is the whole message with one typo.
            let first = keyword.split(' ').next().unwrap_or(keyword);
            let b = self.padded.as_bytes();
            return (self.words.contains(&first)
                && self.padded.match_indices(keyword).any(|(i, _)| {
                    i > 0 && b[i - 1] == b' ' && b.get(i + keyword.len()) == Some(&b' ')
                }))
                || (self.words.len() == keyword.split(' ').count()
                    && self.text.chars().next() == keyword.chars().next()
                    && edit_distance(self.text, keyword, 1) <= 1);
        }
        self.words
            .iter()
            .any(|w| *w == keyword || close(w, keyword))
    }
}

/// Does normalized input `said` mean `keyword` (also normalized)? Whole input or one of its
/// words equal to the keyword, allowing small typos; multi-word keywords must appear as a phrase.
pub fn matches(said: &str, keyword: &str) -> bool {
    Words::new(said).matches(keyword)
}

/// Ordinals and their synonyms in one spelling: "3rd" and "third" are both "3".
fn ordinal(word: &str) -> &str {
    match word {
        "1st" | "first" | "one" | "premier" | "premiere" | "1er" | "1ere" => "1",
        "2nd" | "second" | "two" | "deuxieme" | "seconde" | "2e" | "2eme" => "2",
        "3rd" | "third" | "three" | "troisieme" | "3e" | "3eme" => "3",
        "4th" | "fourth" | "quatrieme" => "4",
        _ => word,
    }
}

/// Words that say which kind of thing is chosen, not which one ("term", "exam"): left out
/// when a typed answer is matched against the choices' labels.
const CHOICE_NOISE: &[&str] = &[
    "the",
    "a",
    "of",
    "for",
    "my",
    "please",
    "pls",
    "abeg",
    "term",
    "terms",
    "exam",
    "exams",
    "examination",
    "examinations",
    "result",
    "results",
    "test",
    "session",
    "one",
    "le",
    "la",
    "du",
    "de",
    "trimestre",
    "resultats",
    "examen",
    "show",
    "me",
    "i",
    "want",
    "see",
];

/// The choice that normalized input `said` names by part of its label: "third term" is
/// "Third Term 2025", "2nd term" is "Second Term ...", "last exam" or "latest" the first of a
/// newest-first list. `None` when no choice or several match.
pub fn choice_named(said: &str, labels: &[String], newest_first: bool) -> Option<usize> {
    let words: Vec<&str> = said
        .split(' ')
        .filter(|w| !w.is_empty() && !CHOICE_NOISE.contains(w))
        .map(ordinal)
        .collect();
    if words.is_empty() {
        return None;
    }
    if newest_first
        && words.iter().all(|w| {
            matches!(
                *w,
                "last"
                    | "latest"
                    | "recent"
                    | "newest"
                    | "current"
                    | "this"
                    | "dernier"
                    | "derniere"
            )
        })
    {
        return (!labels.is_empty()).then_some(0);
    }
    let found: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, label)| {
            let label = normalize(label);
            let label: Vec<&str> = label.split(' ').map(ordinal).collect();
            words
                .iter()
                .all(|w| label.iter().any(|l| l == w || close(w, l)))
        })
        .map(|(i, _)| i)
        .collect();
    match found.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// `"2"`, `" 2. "`, `"#2"` -> `Some(2)`.
pub fn menu_number(said: &str) -> Option<usize> {
    let digits: String = said.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = digits.trim_start_matches('#').trim_end_matches(['.', ')']);
    if digits.is_empty() || digits.len() > 2 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// Runs of letters and runs of digits of `text`, upper-cased, with what separated each run
/// from the one before (`""` when a letter run touches a digit run): `gfa-2026 0012` is
/// `[("", GFA), ("-", 2026), (" ", 0012)]`.
fn id_runs(text: &str) -> Vec<(String, String)> {
    let mut runs: Vec<(String, String)> = Vec::new();
    let mut sep = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_alphanumeric() {
            let c = c.to_ascii_uppercase();
            let same_run = sep.is_empty()
                && runs.last().is_some_and(|(_, run)| {
                    run.ends_with(|l: char| l.is_ascii_digit() == c.is_ascii_digit())
                });
            match runs.last_mut() {
                Some((_, run)) if same_run => run.push(c),
                _ => runs.push((std::mem::take(&mut sep), c.to_string())),
            }
        } else {
            sep.push(c);
        }
    }
    runs
}

/// The shape of an ID: whether each of its runs is digits (`GFA/2026/0012` is letters, digits,
/// digits; `COVID-19` letters, digits).
pub fn id_shape(text: &str) -> Vec<bool> {
    id_runs(text)
        .iter()
        .map(|(_, run)| run.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

fn kinds(runs: &[(String, String)]) -> Vec<(bool, usize)> {
    let mut out: Vec<(bool, usize)> = Vec::new();
    for (_, run) in runs {
        let digit = run.starts_with(|c: char| c.is_ascii_digit());
        match out.last_mut() {
            Some((d, n)) if *d == digit => *n += run.len(),
            _ => out.push((digit, run.len())),
        }
    }
    out
}

/// A student ID as the school writes its IDs: `gfa-2026-0012`, `GFA 2026 0012` and
/// `gfa20260012` are `GFA/2026/0012` when the school's IDs (`samples`) look like that. `None`
/// when no sample has the same letters-and-digits shape.
pub fn canonical_id(typed: &str, samples: &[String]) -> Option<String> {
    let typed = id_runs(typed);
    if typed.is_empty() {
        return None;
    }
    let want = kinds(&typed);
    let letters: String = typed.iter().map(|(_, r)| r.as_str()).collect();
    for sample in samples {
        let runs = id_runs(sample);
        if kinds(&runs) != want {
            continue;
        }
        // The typed characters, cut where the sample's runs are cut, joined by its separators.
        let mut out = String::new();
        let mut at = 0;
        for (sep, run) in &runs {
            out.push_str(sep);
            out.push_str(&letters[at..at + run.len()]);
            at += run.len();
        }
        if at == letters.len() && out.len() <= 64 {
            return Some(out);
        }
    }
    None
}

/// A made-up ID in the school's format, for "for example ..." (never a real student's): the
/// letters and a year kept, other digits replaced by `0...1`.
pub fn id_example(samples: &[String]) -> String {
    let Some(sample) = samples.first() else {
        return "ABC/2024/0001".to_string();
    };
    id_runs(sample)
        .into_iter()
        .map(|(sep, run)| {
            let year = run.len() == 4 && (run.starts_with("19") || run.starts_with("20"));
            if run.starts_with(|c: char| c.is_ascii_digit()) && !year {
                format!("{sep}{}1", "0".repeat(run.len() - 1))
            } else {
                format!("{sep}{run}")
            }
        })
        .collect()
}

/// Is normalized input `said` shaped like a PIN: 4 to 8 digits and nothing else?
pub fn pin_shaped(said: &str) -> bool {
    let digits: String = said.chars().filter(|c| !c.is_whitespace()).collect();
    (4..=8).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

/// The PIN in a short message sent where a PIN is expected: `4821`, `48 21`, `my pin is 4821`,
/// `4821 is the pin`. `None` when there is no single 4-8 digit run or the message is long.
pub fn pin_in(said: &str) -> Option<String> {
    if pin_shaped(said) {
        return Some(said.chars().filter(|c| !c.is_whitespace()).collect());
    }
    let words: Vec<&str> = said.split(' ').collect();
    let runs: Vec<&&str> = words
        .iter()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    match runs.as_slice() {
        [one] if words.len() <= 6 && (4..=8).contains(&one.len()) => Some(one.to_string()),
        _ => None,
    }
}

/// The word of `text` that may be a student ID: one with letters and digits (`it is
/// GFA/2026/0012` -> `GFA/2026/0012`), or the whole text.
pub fn id_token(text: &str) -> &str {
    let candidates: Vec<&str> = text
        .split_whitespace()
        .filter(|w| {
            w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(|c| c.is_ascii_alphabetic())
        })
        .collect();
    match candidates.as_slice() {
        [one] => one.trim_matches(|c: char| !c.is_ascii_alphanumeric()),
        _ => text.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_withheld_wherever_they_are_typed() {
        for (text, kept) in [
            ("4821", PIN_WITHHELD),
            (" 48 21. ", PIN_WITHHELD),
            ("12345678", PIN_WITHHELD),
            ("my pin is 4821", "my pin is [PIN withheld]"),
            ("PIN: 4821 please", "PIN: [PIN withheld] please"),
            ("the code=00417", "the code=[PIN withheld]"),
            ("4821 is my pin", "[PIN withheld] is my pin"),
            (
                "Pin 1234, code 5678",
                "Pin [PIN withheld], code [PIN withheld]",
            ),
        ] {
            assert_eq!(withhold_pins(text), kept, "{text}");
        }
        for text in [
            "hi",
            "123",
            "call me on +2348012345678",
            "GFA/2026/0012 results",
            "results for 2026 please",
            "pink 1234 shoes are 12345 naira",
        ] {
            assert_eq!(withhold_pins(text), text, "{text}");
        }
    }

    #[test]
    fn normalizes_case_accents_and_punctuation() {
        assert_eq!(normalize("  Résultats!! "), "resultats");
        assert_eq!(normalize("ÁTTENDANCE, please"), "attendance please");
        assert_eq!(normalize("Ọ̀kọ̀"), "oko");
        assert_eq!(normalize("report-card"), "report card");
    }

    #[test]
    fn tolerates_small_typos_only() {
        assert!(matches("resluts", "results"));
        assert!(matches("show me the atendance", "attendance"));
        assert!(matches("my report card please", "report card"));
        assert!(matches("reprot card", "report card"));
        assert!(!matches("resale", "results"));
        assert!(!matches("bye", "yes"), "short words must match exactly");
        assert!(!matches("text", "test"), "four letters must match exactly");
        assert!(
            !matches("resent", "present"),
            "the first letter must be right"
        );
        assert!(matches("menu", "menu"));
        assert!(!matches("", "menu"));
    }

    #[test]
    fn choices_named_by_part_of_their_label() {
        let terms = [
            "Third Term 2026".to_string(),
            "Second Term 2026".to_string(),
            "First Term 2025".to_string(),
        ];
        assert_eq!(choice_named("third term", &terms, true), Some(0));
        assert_eq!(choice_named("2nd term", &terms, true), Some(1));
        assert_eq!(choice_named("the first one", &terms, true), Some(2));
        assert_eq!(choice_named("last", &terms, true), Some(0));
        assert_eq!(choice_named("2026", &terms, true), None, "two match");
        assert_eq!(choice_named("term", &terms, true), None, "says nothing");
        assert_eq!(choice_named("fourth term", &terms, true), None);
    }

    #[test]
    fn student_ids_as_the_school_writes_them() {
        let samples = vec!["GFA/2026/0012".to_string()];
        for typed in [
            "gfa-2026-0012",
            "GFA 2026 0012",
            "gfa20260012",
            "Gfa/2026/0012",
        ] {
            assert_eq!(
                canonical_id(typed, &samples).as_deref(),
                Some("GFA/2026/0012"),
                "{typed}"
            );
        }
        assert_eq!(canonical_id("GFA/26/12", &samples), None);
        assert_eq!(canonical_id("4821", &samples), None);
        assert_eq!(id_example(&samples), "GFA/2026/0001");
        assert_eq!(id_example(&[]), "ABC/2024/0001");
        assert_eq!(id_token("it is GFA/2026/0012."), "GFA/2026/0012");
        assert_eq!(pin_in("my pin is 4821"), Some("4821".into()));
        assert_eq!(pin_in("48 21"), Some("4821".into()));
        assert_eq!(pin_in("123"), None);
        assert!(pin_shaped("4821") && !pin_shaped("gfa 2026"));
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("results", "resluts", 3), 1, "swap");
        assert_eq!(edit_distance("results", "reslts", 3), 1, "deletion");
        assert_eq!(edit_distance("kitten", "sitting", 5), 3);
        assert_eq!(edit_distance("abc", "abc", 0), 0);
        assert_eq!(edit_distance("abcdef", "zzzzzz", 2), 3, "bounded");
    }

    #[test]
    fn menu_numbers() {
        assert_eq!(menu_number("2"), Some(2));
        assert_eq!(menu_number(" 2. "), Some(2));
        assert_eq!(menu_number("#10"), Some(10));
        assert_eq!(menu_number("0"), None);
        assert_eq!(menu_number("two"), None);
        assert_eq!(menu_number("123"), None);
    }
}
