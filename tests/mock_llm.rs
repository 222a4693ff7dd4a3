//! The mock LLM server over real HTTP: scripted answers by rule (last user message, tenant,
//! tools offered), tool calls, streamed answers, injected faults, and the requests recorded.

use std::time::{Duration, Instant};

use chatbot::llm::mock::{MockLlm, Script};
use serde_json::{Value, json};

const SCRIPT: &str = r#"
rules:
  - name: results tool
    when: {last_user_regex: "(?i)\\bmaths?\\b", tool_offered: get_results}
    reply: {tool_call: {name: get_results, arguments: {subject: maths}}}
  - name: busy once
    when: {last_user_contains: "FRIDAY"}
    fault: {status: 429, retry_after: 3}
    times: 1
  - name: friday
    when: {last_user_contains: "friday", tenant: demo}
    reply: {content: "School is open on Friday."}
  - name: slow
    when: {last_user_contains: "slow"}
    fault: {delay_ms: 300}
    reply: {content: "Sorry for the wait."}
  - name: broken
    when: {last_user_contains: "broken"}
    fault: {malformed: true}
  - name: cut
    when: {last_user_contains: "cut"}
    fault: {cut_stream: true}
    reply: {content: "This stream never ends properly."}
default: {content: "I can only answer from what the school shared."}
"#;

fn request(user: &str, text: &str) -> Value {
    json!({
        "model": "mock-1",
        "user": format!("{user}:abc123"),
        "messages": [
            {"role": "system", "content": "You answer for <school>Demo</school> only."},
            {"role": "user", "content": text}
        ]
    })
}

async fn post(mock: &MockLlm, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url()))
        .header("Authorization", "Bearer test-key")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn answers_by_rule_and_records_every_request() {
    let mock = MockLlm::start(
        ([127, 0, 0, 1], 0).into(),
        Script::from_yaml(SCRIPT).unwrap(),
    )
    .await
    .unwrap();

    // A tool call only when the tool is offered.
    let mut with_tool = request("demo", "How did Ada do in Maths?");
    with_tool["tools"] =
        json!([{"type": "function", "function": {"name": "get_results", "parameters": {}}}]);
    let body: Value = post(&mock, &with_tool).await.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let call = &choice["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_results");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"subject": "maths"})
    );
    let body: Value = post(&mock, &request("demo", "How did Ada do in Maths?"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "I can only answer from what the school shared."
    );

    // A fault for the first match only, with Retry-After; then the tenant's own rule.
    let r = post(&mock, &request("demo", "Is school open on Friday?")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let body: Value = post(&mock, &request("demo", "Is school open on Friday?"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "School is open on Friday."
    );
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // Another tenant does not match the tenant's rule.
    let body: Value = post(&mock, &request("north", "Is school open on Friday?"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "I can only answer from what the school shared."
    );

    // A delay, and a body that is not JSON.
    let started = Instant::now();
    let body: Value = post(&mock, &request("demo", "slow please"))
        .await
        .json()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Sorry for the wait."
    );
    let text = post(&mock, &request("demo", "broken"))
        .await
        .text()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    // Everything recorded: tenant, key, rule, and what the prompt said.
    let recorded = mock.requests();
    assert_eq!(recorded.len(), 7);
    assert_eq!(recorded[0].rule.as_deref(), Some("results tool"));
    assert_eq!(recorded[1].rule, None);
    assert_eq!(recorded[2].rule.as_deref(), Some("busy once"));
    assert_eq!(recorded[4].tenant.as_deref(), Some("north"));
    assert_eq!(
        recorded[0].authorization.as_deref(),
        Some("Bearer test-key")
    );
    assert!(recorded[0].prompt_text().contains("<school>Demo</school>"));
    // Not JSON in: a 400, recorded nowhere.
    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url()))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(mock.requests().len(), 7);
    mock.stop();
}

fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn streams_word_by_word_or_cut_short() {
    let mock = MockLlm::start(
        ([127, 0, 0, 1], 0).into(),
        Script::from_yaml(SCRIPT).unwrap(),
    )
    .await
    .unwrap();
    let mut body = request("demo", "Is school open on friday?");
    body["stream"] = json!(true);
    // The first matching request meets the one-time fault; the second streams.
    assert_eq!(post(&mock, &body).await.status(), 429);
    let r = post(&mock, &body).await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let sse = events(&r.text().await.unwrap());
    assert_eq!(sse.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = sse[..sse.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "School is open on Friday.");
    assert!(chunks.len() > 4, "a chunk per word");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    let mut cut = request("demo", "cut");
    cut["stream"] = json!(true);
    let sse = events(&post(&mock, &cut).await.text().await.unwrap());
    assert_eq!(sse.len(), 1, "one chunk, no [DONE]: {sse:?}");
    mock.stop();
}

#[test]
fn scripts_are_checked_when_loaded() {
    assert!(
        Script::from_yaml("rules:\n  - when: {last_user_regex: \"(\"}\n    reply: {content: x}\n")
            .is_err()
    );
    assert!(
        Script::from_yaml("rules:\n  - when: {last_user_contains: x}\n").is_err(),
        "neither reply nor fault"
    );
    assert!(
        Script::from_yaml("rules:\n  - when: {last_user_contain: x}\n    reply: {content: x}\n")
            .is_err(),
        "typo"
    );
    assert!(Script::from_yaml(SCRIPT).is_ok());
}
