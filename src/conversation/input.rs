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
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur: Vec<usize> = vec![0; width];
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

/// Typos allowed for a word of this length: none below 4 letters, one up to 7, two beyond.
fn tolerance(word: &str) -> usize {
    match word.chars().count() {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Does normalized input `said` mean `keyword` (also normalized)? Whole input or one of its
/// words equal to the keyword, allowing small typos; multi-word keywords must appear as a phrase.
pub fn matches(said: &str, keyword: &str) -> bool {
    if said.is_empty() || keyword.is_empty() {
        return false;
    }
    if said == keyword {
        return true;
    }
    if keyword.contains(' ') {
        return format!(" {said} ").contains(&format!(" {keyword} "))
            || edit_distance(said, keyword, tolerance(keyword)) <= tolerance(keyword);
    }
    said.split(' ').any(|w| {
        w == keyword || edit_distance(w, keyword, tolerance(keyword)) <= tolerance(keyword)
    })
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
        assert!(matches("menu", "menu"));
        assert!(!matches("", "menu"));
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
