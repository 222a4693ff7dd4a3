//! `chatbot eval` as a user runs it: the shipped suites pass against the mock and match the
//! committed baseline; a broken prompt template is a regression (exit 1); the response cache
//! answers a repeated request; harness errors exit 2; the outputs are written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_chatbot");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn eval(args: &[&str]) -> Output {
    let data = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .arg("eval")
        .args(args)
        .current_dir(root())
        .env("CHATBOT_LOG", "error")
        .env("CHATBOT_DATA_DIR", data.path())
        .env_remove("CHATBOT_LLM_BASE_URL")
        .output()
        .expect("chatbot runs")
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn shipped_suites_pass_and_a_broken_prompt_is_a_regression() {
    let out = tempfile::tempdir().unwrap();
    let o = eval(&[
        "evals",
        "--fail-on-regression",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report(out.path());
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["mock"], true);
    assert_eq!(r["baseline_compared"], true);
    let v = &r["variants"][0];
    assert_eq!(v["name"], "default");
    // Suites without a bar pass whole; the phrasing suite holds its bar.
    assert_eq!(v["totals"]["failed_strict"], 0, "{stdout}");
    assert_eq!(v["totals"]["suites_below_bar"], 0, "{stdout}");
    let phrasings = v["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["suite"] == "phrasings")
        .expect("the phrasing suite ran");
    assert!(phrasings["cases"].as_u64().unwrap() >= 250, "{phrasings}");
    assert!(
        phrasings["pass_rate"].as_f64().unwrap() >= 0.95,
        "{phrasings}"
    );
    assert_eq!(phrasings["pass_at_least"], 0.95);
    let cases = v["cases"].as_array().unwrap();
    // Every case of the committed baseline ran, with the verdict it has there (every case of a
    // suite without a bar passed).
    let baseline: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("evals/baseline.json")).unwrap())
            .unwrap();
    let known = baseline["cases"]["default"].as_object().unwrap();
    assert_eq!(cases.len(), known.len());
    for c in cases {
        let key = format!(
            "{}/{}",
            c["suite"].as_str().unwrap(),
            c["case"].as_str().unwrap()
        );
        assert_eq!(known.get(&key), Some(&c["passed"]), "{key}");
        if c["suite"] != "phrasings" {
            assert_eq!(c["passed"], true, "{key}");
        }
    }
    // The rules suite never called the model; the others did.
    let calls = |suite: &str| -> u64 {
        cases
            .iter()
            .filter(|c| c["suite"] == suite)
            .map(|c| c["llm_calls"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(calls("rules"), 0);
    // Parents' phrasings are the rules' work: the model is called for the few misses only.
    assert!(calls("phrasings") <= 14, "{}", calls("phrasings"));
    assert!(calls("grounded") >= 5);
    // The judged reply: its score and reason are in the report and the summary.
    let judged: Vec<&Value> = cases
        .iter()
        .flat_map(|c| c["runs"][0]["turns"].as_array().unwrap())
        .filter(|t| !t["judge"].is_null())
        .collect();
    assert_eq!(judged.len(), 1);
    assert_eq!(judged[0]["judge"]["pass"], true);
    assert_eq!(judged[0]["judge"]["score"], 0.9);
    assert!(
        judged[0]["judge"]["reason"]
            .as_str()
            .unwrap()
            .contains("Wednesday")
    );
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), cases.len());
    let failing = cases.iter().filter(|c| c["passed"] == false).count();
    assert_eq!(junit.matches("<failure").count(), failing);
    let summary = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("| default | embedded | mock-1 |")
            && summary.contains("## Judged replies"),
        "{summary}"
    );

    // A prompt engineer drops the notices from the system prompt: the grounded answer that
    // needed one fails, which the baseline calls a regression.
    let broken = tempfile::tempdir().unwrap();
    let system = std::fs::read_to_string(root().join("prompts/llm/system.j2")).unwrap();
    let start = system.find("<notices>").unwrap();
    let end = system.find("</notices>").unwrap() + "</notices>\n".len();
    std::fs::write(
        broken.path().join("system.j2"),
        format!("{}{}", &system[..start], &system[end..]),
    )
    .unwrap();
    std::fs::copy(
        root().join("prompts/llm/user.j2"),
        broken.path().join("user.j2"),
    )
    .unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let variant = format!("default:prompts={}", broken.path().display());
    let o = eval(&[
        "evals",
        "--variant",
        &variant,
        "--fail-on-regression",
        "--out",
        out2.path().to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let r = report(out2.path());
    let regressed: Vec<String> = r["variants"][0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["regression"] == true)
        .map(|c| {
            format!(
                "{}/{}",
                c["suite"].as_str().unwrap(),
                c["case"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(regressed, ["grounded/a notice answers the question"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("**regression**"));
    // The failing case reads like a review: the turn, what was expected, what the bot said,
    // and the judge's reason.
    assert!(
        stdout.contains("turn 2 \"Should I pick the children up early on Friday?\"")
            && stdout.contains("the bot said")
            && stdout.contains("It does not say when classes resume."),
        "{stdout}"
    );
}

const CACHED_SUITE: &str = r#"
suite: cached
mock:
  default: {content: "ANSWER"}
cases:
  - name: one question
    phone: "+2348030000002"
    turns:
      - say: hi
      - say: Did she improve compared to last term?
        expect: {contains: [FIRST]}
"#;

#[test]
fn repeated_requests_are_answered_from_the_cache_and_variants_run_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("cached.yaml");
    let cache = dir.path().join("cache");
    let baseline = dir.path().join("baseline.json");
    let run = |answer: &str| {
        std::fs::write(&suite, CACHED_SUITE.replace("ANSWER", answer)).unwrap();
        eval(&[
            suite.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
            "--repeat",
            "3",
        ])
    };
    let first = run("FIRST answer");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "one rendered request"
    );
    // The mock would now say something else; the same rendered request comes from the cache.
    let second = run("SECOND answer");
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );

    // Without the cache the new answer fails the case: exit 1, flip rate 0 over 3 runs.
    let out = dir.path().join("out");
    std::fs::write(&suite, CACHED_SUITE.replace("ANSWER", "SECOND answer")).unwrap();
    let o = eval(&[
        suite.to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--repeat",
        "3",
        "--variant",
        "a",
        "--variant",
        "b:model=other-model",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let r = report(&out);
    let variants = r["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    assert_eq!(variants[1]["model"], "other-model");
    for v in variants {
        let c = &v["cases"][0];
        assert_eq!(c["passed"], false);
        assert_eq!(c["passes"], 0);
        assert_eq!(c["runs"].as_array().unwrap().len(), 3);
        assert_eq!(c["flip_rate"], 0.0);
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains("| cached/one question | FAIL | FAIL |"),
        "{summary}"
    );
}

#[test]
fn harness_errors_exit_2() {
    let o = eval(&["no/such/folder"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/folder"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "suite: bad\ncases:\n  - name: x\n    phone: '+2348030000002'\n    turns: []\n    surprise: 1\n").unwrap();
    let o = eval(&[bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.yaml"));

    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        "suite: unknown\ntenant: nowhere\ncases:\n  - name: x\n    phone: '+2348030000002'\n    turns: [{say: hi}]\n",
    )
    .unwrap();
    let o = eval(&[unknown.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere"));
}
