//! The website engagement flow over real WebSockets: `/ws/chat/{report_id}` to the checkout
//! and `/ws/chat-success/{report_id}` after payment, in ru, en and pl, with every error the
//! contract names, the limits, the catalogue API, and schools kept apart.

mod common;

use std::time::Duration;

use chatbot::channels::engagement::catalogue::{self, built_in};
use chatbot::channels::engagement::params::sign;
use chatbot::channels::engagement::script::{Lang, Script, Vars, format_price, render};
use common::{TestApp, TestEnv, Variant};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &str = "test-report-hash-secret-0123456789";
const INTERVAL_MS: u64 = 25;

variants!(
    chat_walks_to_the_checkout_in_every_language,
    chat_branches_on_no_unclear_and_go_on,
    chat_ignores_the_client_while_sending,
    chat_refuses_bad_ids_and_messages,
    success_hands_over_the_link_and_refuses_forgeries,
    demo_success_page_signs_a_sample_with_the_demo_secret,
    limits_origins_addresses_idle_size_and_floods,
    catalogue_api_manages_reports_per_school,
);

/// An app whose default school (`alpha`) sells `newjob` and `love`; `beta` sells only its own
/// `love`, with a title of its own.
async fn engagement_app(
    v: Variant,
    tweak: impl FnOnce(&mut chatbot::config::Settings),
) -> Option<(TestApp, common::fixture::School, common::fixture::School)> {
    let mut env = TestEnv::new(v).await?;
    env.settings.engagement.interval_ms = INTERVAL_MS;
    env.settings.engagement.tenant = Some("alpha".into());
    env.settings.engagement.hash_secret = Some(SECRET.into());
    tweak(&mut env.settings);
    let app = env.start().await;
    let (alpha, beta) = app.two_schools().await;
    let db = &app.state.db;
    for slug in ["newjob", "love"] {
        catalogue::insert(db, &alpha.ctx, slug, &built_in(slug).unwrap(), true)
            .await
            .unwrap();
    }
    let mut beta_love = built_in("love").unwrap();
    beta_love.titles.en = "Beta's own love report".into();
    catalogue::insert(db, &beta.ctx, "love", &beta_love, true)
        .await
        .unwrap();
    Some((app, alpha, beta))
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server did next.
#[derive(Debug, PartialEq)]
enum Ev {
    Json(Value),
    Close(Option<u16>, String),
}

struct Client {
    ws: Ws,
}

async fn connect_with(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Client, tungstenite::Error> {
    let mut request = format!("ws://{}{path}", app.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(Client { ws })
}

async fn connect(app: &TestApp, path: &str) -> Client {
    connect_with(app, path, &[]).await.expect("connects")
}

impl Client {
    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    async fn next(&mut self) -> Ev {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("the server answers within 10 s");
            return match m {
                Some(Ok(Message::Text(t))) => Ev::Json(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(frame))) => Ev::Close(
                    frame.as_ref().map(|f| u16::from(f.code)),
                    frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                ),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(e)) => Ev::Close(None, e.to_string()),
                None => Ev::Close(None, "eof".into()),
            };
        }
    }

    /// Messages up to and including the one that waits; panics on anything else.
    async fn chunk(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                Ev::Json(v) => {
                    let waiting = v["status"] == "waiting";
                    assert!(
                        waiting || v["status"] == "sending",
                        "a chunk message has a status: {v}"
                    );
                    out.push(v);
                    if waiting {
                        return out;
                    }
                }
                other => panic!("expected a chunk, got {other:?} after {out:?}"),
            }
        }
    }

    /// Everything until the server closes, and the close code.
    async fn rest(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                Ev::Json(v) => out.push(v),
                Ev::Close(code, _) => return (out, code),
            }
        }
    }
}

fn texts(chunk: &[Value]) -> Vec<String> {
    chunk
        .iter()
        .map(|m| m["message"].as_str().expect("message text").to_string())
        .collect()
}

/// The lines a script says, rendered as the server renders them.
fn lines(lines: &[String], lang: Lang, script: &Script, price: f64, currency: &str) -> Vec<String> {
    let price = format_price(lang, price);
    let vars = Vars {
        price: &price,
        currency,
        title: script.titles.get(lang),
    };
    lines.iter().map(|l| render(l, &vars).unwrap()).collect()
}

fn statuses_ok(chunk: &[Value]) {
    let n = chunk.len();
    for (i, m) in chunk.iter().enumerate() {
        let want = if i + 1 == n { "waiting" } else { "sending" };
        assert_eq!(m["status"], want, "message {i} of {n}: {m}");
        assert_eq!(
            m.as_object().unwrap().len(),
            2,
            "only message and status: {m}"
        );
    }
}

async fn chat_walks_to_the_checkout_in_every_language(v: Variant) {
    let Some((app, _, _)) = engagement_app(v, |_| {}).await else {
        return;
    };
    let script = built_in("newjob").unwrap();
    for (lang, yes, currency, price) in [
        (Lang::En, "Yes!", "euros", 19.9),
        (Lang::Ru, "да, конечно", "рублей", 250.0),
        (Lang::Pl, "Tak", "złotych", 49.0),
    ] {
        let d = script.dialogue.get(lang);
        for new_visitor in [true, false] {
            let mut c = connect(&app, "/ws/chat/newjob").await;
            let first = json!({
                "lang": lang.code(),
                "is_new_visitor": new_visitor,
                "price": price,
                "currency": currency,
            });
            let sent = std::time::Instant::now();
            c.send(first.clone()).await;
            let chunk = c.chunk().await;
            // Paced: the last of n messages cannot leave before (n - 1) intervals.
            assert!(
                sent.elapsed() >= Duration::from_millis(INTERVAL_MS * (chunk.len() as u64 - 1)),
                "messages are paced"
            );
            statuses_ok(&chunk);
            let greeting = if new_visitor {
                &d.greeting_new
            } else {
                &d.greeting_returning
            };
            let mut want = lines(greeting, lang, &script, price, currency);
            want.extend(lines(&d.steps["intro"].say, lang, &script, price, currency));
            assert_eq!(texts(&chunk), want, "{lang:?} first chunk");

            // Same message format along the conversation, the answer in `message`.
            let answer = |text: &str| {
                let mut m = first.clone();
                m["message"] = json!(text);
                m
            };
            c.send(answer(yes)).await;
            let chunk = c.chunk().await;
            statuses_ok(&chunk);
            assert_eq!(
                texts(&chunk),
                lines(&d.steps["method"].say, lang, &script, price, currency)
            );
            c.send(answer(yes)).await;
            let offer = c.chunk().await;
            let shown = texts(&offer);
            let price_text = format_price(lang, price);
            assert!(
                shown[0].contains(&format!("{price_text} {currency}")),
                "the price as the seed shows it: {shown:?}"
            );
            assert!(shown[0].contains(script.titles.get(lang)));
            c.send(answer(yes)).await;
            // The purchase: the last chunk, then a normal close (the checkout signal).
            let (last, code) = c.rest().await;
            statuses_ok(&last);
            assert_eq!(
                texts(&last),
                lines(&d.steps["checkout"].say, lang, &script, price, currency)
            );
            assert_eq!(
                code,
                Some(1000),
                "{lang:?}: normal close starts the checkout"
            );
        }
    }
    // A whole-number price shows without decimals in every language.
    assert_eq!(format_price(Lang::Ru, 250.0), "250");
}

async fn chat_branches_on_no_unclear_and_go_on(v: Variant) {
    let Some((app, _, _)) = engagement_app(v, |_| {}).await else {
        return;
    };
    let script = built_in("newjob").unwrap();
    let d = script.dialogue.get(Lang::En);
    let say = |step: &str| lines(&d.steps[step].say, Lang::En, &script, 10.0, "EUR");
    let first = json!({"lang": "en", "is_new_visitor": true, "price": 10, "currency": "EUR"});
    let answer = |text: Option<&str>| {
        let mut m = first.clone();
        if let Some(t) = text {
            m["message"] = json!(t);
        }
        m
    };
    let mut c = connect(&app, "/ws/chat/newjob").await;
    c.send(first.clone()).await;
    c.chunk().await;
    c.send(answer(Some("No, not really"))).await;
    assert_eq!(texts(&c.chunk().await), say("other"));
    // Neither yes nor no: "not understood", then the question again.
    c.send(answer(Some("what do you mean?"))).await;
    let mut want = lines(&d.not_understood, Lang::En, &script, 10.0, "EUR");
    want.push(say("other").last().unwrap().clone());
    assert_eq!(texts(&c.chunk().await), want);
    c.send(answer(Some("nope"))).await;
    let farewell = c.chunk().await;
    assert_eq!(texts(&farewell), say("farewell"));
    assert!(
        texts(&farewell)[0].contains("10 EUR"),
        "price in the farewell"
    );
    // A message without an answer means "go on".
    c.send(answer(None)).await;
    let offer = c.chunk().await;
    assert_eq!(texts(&offer), say("offer"));
    c.send(answer(Some("no"))).await;
    assert_eq!(texts(&c.chunk().await), say("farewell"));
    c.send(answer(Some("ok"))).await;
    assert_eq!(texts(&c.chunk().await), say("offer"));
    c.send(answer(Some("yes please"))).await;
    let (_, code) = c.rest().await;
    assert_eq!(code, Some(1000));
}

async fn chat_ignores_the_client_while_sending(v: Variant) {
    // A long interval, so the client surely speaks between two messages of a chunk.
    let Some((app, _, _)) = engagement_app(v, |s| s.engagement.interval_ms = 700).await else {
        return;
    };
    let script = built_in("newjob").unwrap();
    let d = script.dialogue.get(Lang::En);
    let say = |step: &str| lines(&d.steps[step].say, Lang::En, &script, 10.0, "EUR");
    let first = json!({"lang": "en", "is_new_visitor": true, "price": 10, "currency": "EUR"});
    let mut c = connect(&app, "/ws/chat/newjob").await;
    c.send(first.clone()).await;
    let Ev::Json(hi) = c.next().await else {
        panic!("a greeting")
    };
    assert_eq!(hi["status"], "sending");
    // "No" now would lead to `other`; said while the bot is sending, it is not an answer.
    let mut no = first.clone();
    no["message"] = json!("no");
    c.send(no).await;
    let rest = c.chunk().await;
    assert_eq!(
        rest.len(),
        d.greeting_new.len() + d.steps["intro"].say.len() - 1
    );
    let mut yes = first.clone();
    yes["message"] = json!("yes");
    c.send(yes).await;
    assert_eq!(
        texts(&c.chunk().await),
        say("method"),
        "the answer was this yes"
    );
}

async fn expect_error(c: &mut Client, want: &str) {
    match c.next().await {
        Ev::Json(v) => {
            assert_eq!(v.as_object().unwrap().len(), 1, "only error: {v}");
            let error = v["error"].as_str().expect("an error message");
            assert!(error.contains(want), "{error:?} should contain {want:?}");
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    match c.next().await {
        Ev::Close(code, _) => assert_ne!(code, Some(1000), "an error is not a checkout"),
        other => panic!("expected the close, got {other:?}"),
    }
}

async fn chat_refuses_bad_ids_and_messages(v: Variant) {
    let Some((app, alpha, beta)) = engagement_app(v, |_| {}).await else {
        return;
    };
    // Unknown ids, on both endpoints: the contract's exact error, then the close.
    for path in ["/ws/chat/nosuchreport", "/ws/chat-success/nosuchreport"] {
        let mut c = connect(&app, path).await;
        assert_eq!(c.next().await, Ev::Json(json!({"error": "Invalid Url"})));
        assert!(matches!(c.next().await, Ev::Close(..)));
    }
    let good = json!({"lang": "en", "is_new_visitor": true, "price": 5, "currency": "EUR"});
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("hello"), "Invalid message format"),
        (Message::text("[1, 2]"), "Invalid message format"),
        (Message::binary(b"{}".to_vec()), "Invalid message format"),
        (
            Message::text(r#"{"lang": "en"}"#),
            "Missing mandatory field: is_new_visitor",
        ),
        (
            Message::text(r#"{"is_new_visitor": true, "price": 5, "currency": "EUR"}"#),
            "Missing mandatory field: lang",
        ),
        (
            Message::text(r#"{"lang": "en", "is_new_visitor": true, "currency": "EUR"}"#),
            "Missing mandatory field: price",
        ),
        (
            Message::text(r#"{"lang": "en", "is_new_visitor": true, "price": 5}"#),
            "Missing mandatory field: currency",
        ),
        (
            Message::text(
                r#"{"lang": "de", "is_new_visitor": true, "price": 5, "currency": "EUR"}"#,
            ),
            "Unsupported lang: de",
        ),
        (
            Message::text(
                r#"{"lang": "en", "is_new_visitor": "yes", "price": 5, "currency": "EUR"}"#,
            ),
            "is_new_visitor",
        ),
        (
            Message::text(
                r#"{"lang": "en", "is_new_visitor": true, "price": -3, "currency": "EUR"}"#,
            ),
            "price",
        ),
    ];
    for (message, want) in cases {
        let mut c = connect(&app, "/ws/chat/newjob").await;
        c.send_raw(message).await;
        expect_error(&mut c, want).await;
    }
    // A later message that is not JSON ends the chat the same way.
    let mut c = connect(&app, "/ws/chat/newjob").await;
    c.send(good.clone()).await;
    c.chunk().await;
    c.send_raw(Message::text("yes")).await;
    expect_error(&mut c, "Invalid message format").await;

    // Schools are apart: the host picks the school, and beta sells no `newjob`...
    let beta_host = [("host", beta.domain.as_str())];
    let mut c = connect_with(&app, "/ws/chat/newjob", &beta_host)
        .await
        .unwrap();
    assert_eq!(c.next().await, Ev::Json(json!({"error": "Invalid Url"})));
    // ...while its own `love` speaks with its own title, and alpha's keeps alpha's.
    for (host, title) in [
        (beta.domain.as_str(), "Beta's own love report"),
        (alpha.domain.as_str(), "Will I meet my love this year?"),
    ] {
        let mut c = connect_with(&app, "/ws/chat/love", &[("host", host)])
            .await
            .unwrap();
        c.send(good.clone()).await;
        c.chunk().await;
        c.send(json!({"lang": "en", "is_new_visitor": true, "price": 5, "currency": "EUR", "message": "yes"}))
            .await;
        let offer = texts(&c.chunk().await);
        assert!(offer[0].contains(title), "{host}: {offer:?}");
        let other = if title.starts_with("Beta") {
            "Will I meet"
        } else {
            "Beta"
        };
        assert!(
            !offer.iter().any(|l| l.contains(other)),
            "{host}: {offer:?}"
        );
    }
    // A plain GET is not an upgrade: a clear HTTP error, no chat.
    let r = app.get("/ws/chat/newjob").await;
    assert!(r.status().is_client_error(), "{}", r.status());
}

fn signed(pairs_before: &str, pairs_after: &str) -> String {
    let message = format!("{pairs_before}&{pairs_after}");
    let hash = sign(SECRET.as_bytes(), &message);
    format!("{pairs_before}&hash={hash}&{pairs_after}")
}

async fn success_hands_over_the_link_and_refuses_forgeries(v: Variant) {
    let Some((app, _, _)) = engagement_app(v, |_| {}).await else {
        return;
    };
    let script = built_in("newjob").unwrap();
    let params = signed(
        "date=2023-10-8&time=12:44&tz=2&ln_d=37&ln_m=37&dir_ln=e&lt_d=55&lt_m=45&dir_lt=n",
        "report_id=newjob",
    );
    for lang in Lang::ALL {
        let d = script.dialogue.get(lang);
        let mut c = connect(&app, "/ws/chat-success/newjob").await;
        c.send(json!({"success": true, "lang": lang.code(), "report_url_params": params}))
            .await;
        let (said, code) = c.rest().await;
        assert_eq!(code, Some(1000), "{lang:?}");
        assert_eq!(said.len(), d.paid.len());
        let with_link: Vec<&Value> = said
            .iter()
            .filter(|m| m.get("report_url").is_some())
            .collect();
        assert_eq!(with_link.len(), 1, "one message carries the link: {said:?}");
        assert_eq!(
            with_link[0]["report_url"],
            format!("/api/reading/newjob/?{params}")
        );
        for (m, line) in said.iter().zip(&d.paid) {
            assert_eq!(m["message"], line.message.as_str());
            assert!(m.get("status").is_none(), "the seed's format: {m}");
        }

        let mut c = connect(&app, "/ws/chat-success/newjob").await;
        c.send(json!({"success": false, "lang": lang.code()})).await;
        let (said, code) = c.rest().await;
        assert_eq!(code, Some(1000));
        assert_eq!(
            said,
            d.unpaid
                .iter()
                .map(|l| json!({"message": l}))
                .collect::<Vec<_>>()
        );
    }
    // Forged, altered, reordered, unsigned, for another report or none, missing: refused.
    let hash = params
        .split("hash=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let forged = [
        params.replace("12:44", "12:45"),
        params.replace(hash, &"0".repeat(64)),
        params.replace(hash, &hash.to_uppercase()),
        params.replace("date=2023-10-8&time=12:44", "time=12:44&date=2023-10-8"),
        "date=2023-10-8&report_id=newjob".to_string(),
        format!("{params}&extra=1"),
        signed("date=2023-10-8", "report_id=love"),
        // Signed for no report in particular (issue 28 point 10), or for two.
        signed("date=2023-10-8", "time=12:44"),
        signed("report_id=love", "report_id=newjob"),
    ];
    for bad in forged {
        let mut c = connect(&app, "/ws/chat-success/newjob").await;
        c.send(json!({"success": true, "lang": "en", "report_url_params": bad}))
            .await;
        expect_error(&mut c, "Invalid report_url_params").await;
    }
    for (message, want) in [
        (
            json!({"success": true, "lang": "en"}),
            "Missing mandatory field: report_url_params",
        ),
        (json!({"lang": "en"}), "Missing mandatory field: success"),
        (json!({"success": true}), "Missing mandatory field: lang"),
        (json!({"success": false, "lang": "xx"}), "Unsupported lang"),
    ] {
        let mut c = connect(&app, "/ws/chat-success/newjob").await;
        c.send(message).await;
        expect_error(&mut c, want).await;
    }

    // The demo pages are served. With a real secret the success page signs nothing: it would
    // hand anyone a paid report's link.
    let page = app.get("/api/chatbot-demo/engagement/newjob/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/ws/chat/"));
    let page = app
        .get("/api/chatbot-demo/success/newjob/")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        demo_sample(&page),
        "",
        "no sample signed with a real secret"
    );
    assert!(!page.contains("hash="), "{page}");
    assert_eq!(
        app.get("/api/chatbot-demo/engagement/<x>/").await.status(),
        404
    );
}

/// The `report_url_params` sample of the demo success page.
fn demo_sample(page: &str) -> String {
    page.split("<textarea id=\"params\" rows=\"3\" cols=\"70\">")
        .nth(1)
        .unwrap()
        .split("</textarea>")
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// With the public demo secret (`serve --demo`), the success page plays the payment system:
/// its sample is signed, and the socket takes it.
async fn demo_success_page_signs_a_sample_with_the_demo_secret(v: Variant) {
    let Some((app, _, _)) = engagement_app(v, |s| {
        s.engagement.hash_secret = Some(chatbot::demo::REPORT_HASH_SECRET.into());
    })
    .await
    else {
        return;
    };
    let page = app
        .get("/api/chatbot-demo/success/love/")
        .await
        .text()
        .await
        .unwrap();
    let sample = demo_sample(&page);
    assert!(sample.ends_with("&report_id=love"), "{sample}");
    let mut c = connect(&app, "/ws/chat-success/love").await;
    c.send(json!({"success": true, "lang": "pl", "report_url_params": sample}))
        .await;
    let (said, code) = c.rest().await;
    assert_eq!(code, Some(1000));
    let url = said.iter().find_map(|m| m.get("report_url")).unwrap();
    assert_eq!(url, &json!(format!("/api/reading/love/?{sample}")));
}

async fn limits_origins_addresses_idle_size_and_floods(v: Variant) {
    let Some((app, _, _)) = engagement_app(v, |s| {
        s.engagement.max_per_address = 3;
        s.engagement.allowed_origins =
            chatbot::config::OriginList(vec!["https://shop.example".into()]);
        s.engagement.idle_secs = 1;
        s.engagement.max_message_bytes = 512;
    })
    .await
    else {
        return;
    };
    let origin = [("origin", "https://shop.example")];
    // Origins: another site, or none, is refused before the upgrade.
    for headers in [&[("origin", "https://evil.example")][..], &[][..]] {
        match connect_with(&app, "/ws/chat/newjob", headers).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
            other => panic!("expected 403, got {:?}", other.map(|_| ())),
        }
    }
    // Three chats per address; the fourth is refused; closing one frees its place.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            connect_with(&app, "/ws/chat/newjob", &origin)
                .await
                .unwrap(),
        );
    }
    match connect_with(&app, "/ws/chat/newjob", &origin).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // Idle: the three say nothing and are closed as "going away", not as a checkout.
    for c in &mut open {
        match c.next().await {
            Ev::Close(code, _) => assert_eq!(code, Some(u16::from(CloseCode::Away))),
            other => panic!("{other:?}"),
        }
    }
    drop(open);
    // A place is freed once the server has ended its session, which can be a moment after the
    // client saw the close; a refusal meanwhile is counted as one more "too_many".
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let mut c = common::eventually("a place frees up", Duration::from_secs(5), || async {
        match connect_with(&app, "/ws/chat/newjob", &origin).await {
            Ok(c) => Some(c),
            Err(tungstenite::Error::Http(r)) if r.status() == 429 => {
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Err(_) => None,
        }
    })
    .await;
    let too_many = 1 + refused.load(std::sync::atomic::Ordering::Relaxed);
    // Too big: closed with 1009.
    c.send_raw(Message::text(format!(
        "{{\"lang\": \"en\", \"pad\": \"{}\"}}",
        "x".repeat(600)
    )))
    .await;
    match c.next().await {
        Ev::Close(code, _) => assert_eq!(code, Some(1009)),
        other => panic!("{other:?}"),
    }
    // A flood of messages while the bot is sending: closed as a policy violation.
    let mut c = connect_with(&app, "/ws/chat/newjob", &origin)
        .await
        .unwrap();
    c.send(json!({"lang": "en", "is_new_visitor": true, "price": 5, "currency": "EUR"}))
        .await;
    for _ in 0..30 {
        if c.ws.send(Message::text("{}")).await.is_err() {
            break;
        }
    }
    let (_, code) = c.rest().await;
    assert_eq!(code, Some(1008));
    // Each refusal and ending is counted at /metrics, with how late paced sends went out.
    let want = [
        r#"chatbot_engagement_connections_total{endpoint="chat",outcome="origin_refused"} 2"#
            .to_string(),
        format!(
            r#"chatbot_engagement_connections_total{{endpoint="chat",outcome="too_many"}} {too_many}"#
        ),
        r#"chatbot_engagement_sessions_total{endpoint="chat",outcome="idle"} 3"#.to_string(),
        r#"chatbot_engagement_sessions_total{endpoint="chat",outcome="too_big"} 1"#.to_string(),
        r#"chatbot_engagement_sessions_total{endpoint="chat",outcome="flood"} 1"#.to_string(),
        "chatbot_engagement_send_lag_seconds_count ".to_string(),
    ];
    common::eventually("the endings counted", Duration::from_secs(10), || async {
        let text = app.metrics().await;
        want.iter().all(|w| text.contains(w.as_str())).then_some(())
    })
    .await;
}

async fn catalogue_api_manages_reports_per_school(v: Variant) {
    let Some((app, alpha, beta)) = engagement_app(v, |_| {}).await else {
        return;
    };
    let (status, list) = app
        .api(&alpha.api_key, Method::GET, "/engagement-reports/", None)
        .await;
    assert_eq!(status, 200);
    let slugs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["love", "newjob"]);
    let (status, list) = app
        .api(&beta.api_key, Method::GET, "/engagement-reports/", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "beta sees only its own");
    let (status, _) = app
        .api(
            &beta.api_key,
            Method::GET,
            "/engagement-reports/newjob/",
            None,
        )
        .await;
    assert_eq!(status, 404, "another school's report is not found");

    // A new report from the YAML format, as JSON.
    let mut body: Value = serde_json::to_value(built_in("love").unwrap()).unwrap();
    body["slug"] = json!("career-2027");
    let (status, created) = app
        .api(
            &alpha.api_key,
            Method::POST,
            "/engagement-reports/",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["active"], true);
    let (status, _) = app
        .api(
            &alpha.api_key,
            Method::POST,
            "/engagement-reports/",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 409);
    let mut c = connect(&app, "/ws/chat/career-2027").await;
    c.send(json!({"lang": "pl", "is_new_visitor": false, "price": 9.5, "currency": "złotych"}))
        .await;
    assert!(!c.chunk().await.is_empty());

    // Broken dialogues are refused with the reason, and nothing changes.
    let mut broken = body.clone();
    broken["slug"] = json!("broken");
    broken["dialogue"]["ru"]["steps"]["intro"]["yes"] = json!("nowhere");
    let (status, err) = app
        .api(
            &alpha.api_key,
            Method::POST,
            "/engagement-reports/",
            Some(broken),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("dialogue.ru.steps.intro.yes")
    );
    let mut broken = body.clone();
    broken["slug"] = json!("broken");
    broken["dialogue"]["en"]["greeting_new"] = json!(["Hi {{ nobody }}"]);
    let (status, _) = app
        .api(
            &alpha.api_key,
            Method::POST,
            "/engagement-reports/",
            Some(broken),
        )
        .await;
    assert_eq!(status, 400, "an unknown template variable is refused");
    let mut broken = body.clone();
    broken["slug"] = json!("Bad Slug");
    let (status, _) = app
        .api(
            &alpha.api_key,
            Method::POST,
            "/engagement-reports/",
            Some(broken),
        )
        .await;
    assert_eq!(status, 400);
    let (_, list) = app
        .api(&alpha.api_key, Method::GET, "/engagement-reports/", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 3);

    // Deactivated: visitors get `Invalid Url` at once (this process forgets its cache).
    let mut update = body.clone();
    update.as_object_mut().unwrap().remove("slug");
    update["active"] = json!(false);
    let (status, updated) = app
        .api(
            &alpha.api_key,
            Method::PUT,
            "/engagement-reports/career-2027/",
            Some(update),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["active"], false);
    let mut c = connect(&app, "/ws/chat/career-2027").await;
    assert_eq!(c.next().await, Ev::Json(json!({"error": "Invalid Url"})));
    // Beta cannot change or delete alpha's reports.
    let (status, _) = app
        .api(
            &beta.api_key,
            Method::DELETE,
            "/engagement-reports/newjob/",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .api(
            &alpha.api_key,
            Method::DELETE,
            "/engagement-reports/career-2027/",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .api(
            &alpha.api_key,
            Method::GET,
            "/engagement-reports/career-2027/",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .api(
            &alpha.api_key,
            Method::GET,
            "/engagement-reports/newjob/",
            None,
        )
        .await;
    assert_eq!(status, 200, "alpha's newjob is still there");
}
