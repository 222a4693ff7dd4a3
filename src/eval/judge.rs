//! The `judge:` assertion: a model grades the bot's replies against a rubric, as promptfoo's
//! `llm-rubric` does. In CI the suite's mock answers (its rules can look at the rubric and the
//! replies); with `--base-url` a real model grades.
//!
//! ```yaml
//! expect:
//!   judge:
//!     rubric: Says when classes resume, and invents nothing.
//!     threshold: 0.7        # optional: the score must also reach this
//! ```
//!
//! The judge answers JSON: `{"pass": true, "score": 0.9, "reason": "..."}` (`score` from 0 to
//! 1; without it, 1 for a pass and 0 for a fail). Its score and reason go into the report.

use serde::{Deserialize, Serialize};

use crate::llm::Llm;

/// What the judge is told (the system message).
pub const JUDGE_SYSTEM: &str = "You grade replies of a school's WhatsApp assistant for \
parents against a rubric. Read the rubric and the output, and decide whether the output \
meets the rubric. Answer with JSON only, no other text: \
{\"pass\": true or false, \"score\": a number from 0 to 1, \"reason\": \"one sentence\"}.";

/// The `judge:` assertion of a turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Judge {
    /// What a good reply does.
    pub rubric: String,
    /// The lowest passing score (default: the judge's own pass).
    pub threshold: Option<f64>,
}

/// The judge's verdict, as reported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// The rubric graded against.
    pub rubric: String,
    /// Passed (the judge's pass, and the score at least the threshold).
    pub pass: bool,
    /// Score from 0 to 1.
    pub score: f64,
    /// The judge's reason.
    pub reason: String,
}

#[derive(Deserialize)]
struct Answer {
    pass: bool,
    score: Option<f64>,
    #[serde(default)]
    reason: String,
}

/// The user message the judge reads.
pub fn request(rubric: &str, output: &str) -> String {
    format!("<rubric>\n{rubric}\n</rubric>\n<output>\n{output}\n</output>")
}

/// Read the judge's answer (JSON, perhaps in a code fence).
pub fn parse(judge: &Judge, answer: &str) -> Result<Verdict, String> {
    let text = answer.trim();
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .map(|t| t.trim_end().trim_end_matches("```"))
        .unwrap_or(text)
        .trim();
    let a: Answer = serde_json::from_str(text)
        .map_err(|e| format!("the judge's answer is not a verdict ({e}): {answer:?}"))?;
    let score = a
        .score
        .unwrap_or(if a.pass { 1.0 } else { 0.0 })
        .clamp(0.0, 1.0);
    Ok(Verdict {
        rubric: judge.rubric.clone(),
        pass: a.pass && judge.threshold.is_none_or(|t| score >= t),
        score,
        reason: a.reason,
    })
}

/// Grade `output` against the rubric with `llm`.
pub async fn grade(llm: &Llm, judge: &Judge, output: &str) -> Result<Verdict, String> {
    let answer = llm
        .ask(JUDGE_SYSTEM, &request(&judge.rubric, output), "eval-judge")
        .await
        .map_err(|e| format!("the judge could not answer: {e}"))?
        .ok_or("the judge gave no answer")?;
    parse(judge, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_with_their_threshold() {
        let judge = Judge {
            rubric: "Names the day".into(),
            threshold: Some(0.7),
        };
        let v = parse(
            &judge,
            r#"{"pass": true, "score": 0.9, "reason": "says Wednesday"}"#,
        )
        .unwrap();
        assert!(v.pass && v.score == 0.9 && v.reason == "says Wednesday");
        let v = parse(&judge, "```json\n{\"pass\": true, \"score\": 0.5}\n```").unwrap();
        assert!(!v.pass, "below the threshold");
        let v = parse(
            &Judge {
                threshold: None,
                ..judge.clone()
            },
            r#"{"pass": false, "reason": "no day"}"#,
        )
        .unwrap();
        assert_eq!((v.pass, v.score), (false, 0.0));
        assert!(parse(&judge, "I think it passes").is_err());
    }
}
