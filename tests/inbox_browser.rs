//! The staff inbox page (`/inbox/`) in headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`, as `tests/engagement_browser.rs`): sign in with an API key, a parent
//! escalates over a signed webhook and the waiting list shows it (live, from the event
//! stream), staff take over and answer, the answer reaches the mock Graph API once and its
//! status moves to `sent` on the page, staff hand back, and the bot answers the parent again.
//!
//! Needs `/usr/bin/chromium` and playwright-core (`PLAYWRIGHT_CORE`; default
//! `/var/tmp/chatbot-ci-node/node_modules/playwright-core`, where `.ci/run` installs it).
//! Without them the test is skipped with a note, unless `CI` is set: then it fails.

mod common;

use common::{TestApp, Variant, browser};

const REPLY: &str = "Good afternoon, this is Mrs Okafor from the school office.";

const SCRIPT: &str = r#"
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const crypto = require('crypto');
const env = process.env;

// A parent's text message to the school's number, signed as Meta signs it.
async function parentSays(id, text) {
  const body = JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: 'WABA', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550100001', phone_number_id: env.PHONE_NUMBER_ID },
      contacts: [{ profile: { name: 'Parent' }, wa_id: env.DIGITS }],
      messages: [{ from: env.DIGITS, id, timestamp: '1763800000', type: 'text', text: { body: text } }],
    } }] }],
  });
  const sig = 'sha256=' + crypto.createHmac('sha256', env.APP_SECRET).update(body).digest('hex');
  const r = await fetch(env.BASE + '/api/v1/chatbot/webhooks/whatsapp/', {
    method: 'POST', headers: { 'content-type': 'application/json', 'X-Hub-Signature-256': sig }, body,
  });
  if (r.status !== 200) throw new Error('webhook answered ' + r.status);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  const out = { console: [] };
  page.on('console', (m) => { if (m.type() === 'error') out.console.push(m.text()); });
  page.on('pageerror', (e) => out.console.push(String(e)));
  const phone = '+' + env.DIGITS;
  const item = `#waiting li[data-phone="${phone}"]`;
  try {
    await page.goto(env.BASE + '/inbox/');
    // A wrong key is refused and the sign-in form comes back.
    await page.fill('#secret', 'not-a-key');
    await page.click('#signin-button');
    await page.waitForFunction(() => document.getElementById('signin-error').textContent.length > 0, null, { timeout: 10000 });
    out.refused = await page.textContent('#signin-error');
    await page.fill('#secret', env.API_KEY);
    await page.click('#signin-button');
    await page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: 20000 });
    out.school = await page.textContent('#school');

    const asked = Date.now();
    await parentSays('wamid.b1', 'Please can I talk to a person');
    await page.waitForSelector(item, { timeout: 20000 });
    out.shown_after_ms = Date.now() - asked;

    await page.click(item);
    await page.waitForSelector('#takeover:not([hidden])', { timeout: 10000 });
    out.transcript_before = await page.$$eval('.msg', (els) => els.map((e) => e.firstChild.textContent));
    await page.click('#takeover');
    await page.waitForSelector('#status[data-status="staff"]', { timeout: 10000 });
    await page.waitForSelector('#reply:not([hidden])', { timeout: 10000 });
    await page.fill('#reply-text', env.REPLY);
    await page.click('#reply-send');
    // Its delivery status moves on the page, from the event stream.
    await page.waitForSelector('.msg[data-staff="yes"][data-status="sent"]', { timeout: 20000 });

    await page.click('#release');
    await page.waitForSelector('#status[data-status="bot"]', { timeout: 10000 });
    await parentSays('wamid.b2', 'menu');
    await page.waitForFunction(
      () => [...document.querySelectorAll('.msg.out:not(.staff)')].some((m) => m.textContent.includes('How can I help')),
      null, { timeout: 20000 });
    out.transcript = await page.$$eval('.msg', (els) => els.map((e) => [e.dataset.direction, e.dataset.staff || 'bot', e.firstChild.textContent]));
    // Today's bars in the chart: the rules answered, and staff.
    await page.click('#show-analytics');
    await page.waitForSelector('#chart rect.rules', { timeout: 10000 });
    out.bars = await page.$$eval('#chart rect', (els) => els.map((e) => e.getAttribute('class')));
    out.figures = await page.$$eval('#figures tr', (rows) => rows.map((r) => r.textContent));
    out.stored = await page.evaluate(() => Object.keys(sessionStorage));
    await page.click('#signout');
    out.after_signout = await page.evaluate(() => Object.keys(sessionStorage));
  } catch (e) {
    out.error = String(e);
    out.page = await page.content().catch(() => '');
  }
  await browser.close();
  console.log(JSON.stringify(out));
})();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_answer_a_waiting_parent_from_the_inbox_page_in_chromium() {
    if !browser::available() {
        return;
    }
    let (app, mock, creds) = TestApp::with_demo_and_graph(Variant::Embedded)
        .await
        .unwrap();
    let school = &creds.tenants[0];
    let digits = school
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+')
        .to_string();

    // The page is served with its policy: its own script only, no framing.
    let r = app.http.get(app.url("/inbox/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let policy = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    assert!(r.text().await.unwrap().contains("/inbox/inbox.js"));

    let out = browser::run(
        SCRIPT,
        &[
            ("BASE", app.base.clone()),
            ("API_KEY", school.api_key.clone()),
            ("APP_SECRET", school.whatsapp.app_secret.clone()),
            ("PHONE_NUMBER_ID", school.whatsapp.phone_number_id.clone()),
            ("DIGITS", digits.clone()),
            ("REPLY", REPLY.to_string()),
        ],
    )
    .await;
    assert!(out.get("error").is_none(), "{out}");
    // The one error expected: the wrong key's 401.
    let errors: Vec<&serde_json::Value> = out["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e.as_str().unwrap().contains("status of 401"))
        .collect();
    assert!(errors.is_empty(), "errors in the page: {out}");
    eprintln!(
        "inbox page: the escalation was listed {} ms after the webhook",
        out["shown_after_ms"]
    );
    assert!(
        out["refused"].as_str().unwrap().contains("refused"),
        "{out}"
    );
    assert!(
        out["school"].as_str().unwrap().contains(&school.name),
        "{out}"
    );
    assert!(
        out["transcript_before"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "Please can I talk to a person"),
        "{out}"
    );
    let transcript = out["transcript"].as_array().unwrap();
    let staff: Vec<&serde_json::Value> = transcript.iter().filter(|m| m[1] == "yes").collect();
    assert_eq!(staff.len(), 1, "{out}");
    assert_eq!(staff[0][2], REPLY);
    let bars: Vec<&str> = out["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert!(bars.contains(&"rules"), "{out}");
    assert!(
        out["figures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("Handed to staff1")),
        "{out}"
    );
    assert_eq!(out["stored"], serde_json::json!(["inbox.credential"]));
    assert_eq!(out["after_signout"], serde_json::json!([]));

    // The reply reached the Graph API once, and the bot answered after the release.
    let sent: Vec<String> = mock
        .received()
        .iter()
        .map(|r| {
            r.body["text"]["body"]
                .as_str()
                .or(r.body["interactive"]["body"]["text"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(sent.iter().filter(|t| *t == REPLY).count(), 1, "{sent:?}");
    let reply_at = sent.iter().position(|t| t == REPLY).unwrap();
    assert!(
        sent[reply_at + 1..]
            .iter()
            .any(|t| t.contains("How can I help")),
        "{sent:?}"
    );
    app.stop().await.unwrap();
    mock.stop();
}
