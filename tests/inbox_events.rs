//! `conversations/events/`: a staff inbox hears, as Server-Sent Events, a parent's message, the
//! conversation escalated, a staff reply and its delivery status, for its own school only.
//! Signed webhooks in, the mock Graph API out, event streams read over HTTP, on both backends.

mod common;

use std::time::Duration;

use chatbot::demo::DemoTenant;
use common::{TestApp, Variant};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

variants!(
    staff_hear_their_schools_conversations_as_they_change,
    event_streams_need_a_credential_and_are_limited,
);

const EVENTS: &str = "/api/v1/chatbot/conversations/events/";

/// An open event stream, read event by event.
struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

/// `GET conversations/events/` with `key`: live (asking for `text/event-stream`) or not.
async fn request(app: &TestApp, key: &str, live: bool) -> reqwest::Response {
    let mut r = app.http.get(app.url(EVENTS)).header("X-API-KEY", key);
    if live {
        r = r.header("Accept", "text/event-stream");
    }
    r.send().await.unwrap()
}

impl Events {
    async fn open(app: &TestApp, school: &DemoTenant) -> Self {
        let r = request(app, &school.api_key, true).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            body: r.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (`name`, data), or `None` when none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some((name, serde_json::from_str(&data).unwrap()));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.unwrap()).replace("\r\n", "\n"));
        }
    }

    /// Read events until one satisfies `want`; panics after `wait`.
    async fn until(
        &mut self,
        what: &str,
        wait: Duration,
        want: impl Fn(&str, &Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some((name, data)) if want(&name, &data) => return data,
                Some(other) => seen.push(other),
                None => panic!("no event {what} within {wait:?}; saw {seen:?}"),
            }
        }
    }
}

async fn staff_hear_their_schools_conversations_as_they_change(v: Variant) {
    let Some((app, mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let (school, other) = (&creds.tenants[0], &creds.tenants[1]);
    let digits = school
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+')
        .to_string();
    let phone = format!("+{digits}");
    let mut ours = Events::open(&app, school).await;
    let mut theirs = Events::open(&app, other).await;
    let wait = Duration::from_secs(20);

    app.parent_says(
        &school.whatsapp,
        &digits,
        "wamid.e1",
        "I need to talk to a person please",
    )
    .await;
    let inbound = ours
        .until("for the parent's message", wait, |name, d| {
            name == "message" && d["message"]["direction"] == "in"
        })
        .await;
    assert_eq!(inbound["message"]["phone"], phone);
    assert_eq!(
        inbound["message"]["preview"],
        "I need to talk to a person please"
    );
    let escalated = ours
        .until("for the escalation", wait, |name, d| {
            name == "conversation" && d["conversation"]["action"] == "escalated"
        })
        .await;
    assert_eq!(escalated["conversation"]["status"], "waiting");
    assert_eq!(escalated["conversation"]["actor"], "parent");
    let id = escalated["conversation"]["id"].as_i64().unwrap();

    // Staff take over and answer: the move, the reply, and the reply's status as it goes.
    let api = |path: String| {
        app.http
            .post(app.url(&format!("/api/v1/chatbot{path}")))
            .header("X-API-KEY", &school.api_key)
    };
    let r = api(format!("/conversations/{id}/takeover/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ours.until("for the takeover", wait, |name, d| {
        name == "conversation"
            && d["conversation"]["status"] == "staff"
            && d["conversation"]["id"] == id
    })
    .await;
    let r = api(format!("/conversations/{id}/reply/"))
        .json(&json!({"text": "Mr Bello here, how can I help?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let queued: Value = r.json().await.unwrap();
    let sent = ours
        .until("for the staff reply sent", wait, |name, d| {
            name == "message"
                && d["message"]["id"] == queued["id"]
                && d["message"]["status"] == "sent"
        })
        .await;
    assert_eq!(sent["message"]["from_staff"], true);
    assert!(mock.count() >= 1);

    // The other school heard nothing of it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Some(event) = theirs
        .next(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        let text = event.1.to_string();
        assert!(
            !text.contains(&digits) && !text.contains("Mr Bello"),
            "another school's stream got {event:?}"
        );
    }

    // A client that does not ask for a live stream (a poller, or schemathesis) gets the last
    // seconds' events and the end of the response, not a ten-minute wait.
    app.parent_says(&school.whatsapp, &digits, "wamid.e9", "Thank you, noted")
        .await;
    common::eventually("a poll with the parent's latest message", wait, || async {
        let r = request(&app, &school.api_key, false).await;
        assert_eq!(r.status(), StatusCode::OK);
        let text = tokio::time::timeout(Duration::from_secs(10), r.text())
            .await
            .expect("a request not asking for text/event-stream ends at once")
            .unwrap();
        text.contains("Thank you, noted").then_some(())
    })
    .await;
    app.stop().await.unwrap();
    mock.stop();
}

async fn event_streams_need_a_credential_and_are_limited(v: Variant) {
    let Some((app, _mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let r = app.http.get(app.url(EVENTS)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .http
        .get(app.url(EVENTS))
        .header("X-API-KEY", "not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // At most 20 open per school; one closed makes room.
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(Events::open(&app, school).await);
    }
    let r = request(&app, &school.api_key, false).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another school has its own.
    drop(Events::open(&app, &creds.tenants[1]).await);
    drop(open.pop());
    common::eventually("a slot given back", Duration::from_secs(40), || async {
        let r = request(&app, &school.api_key, true).await;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    app.stop().await.unwrap();
}
