//! The two demo pages in headless Chromium (Debian's `chromium`, driven by `playwright-core`):
//! chat to the purchase on `/api/chatbot-demo/engagement/newjob/`, see the socket close
//! normally, follow the page to `/api/chatbot-demo/success/newjob/`, and get the report link.
//!
//! Needs `/usr/bin/chromium` and playwright-core (`PLAYWRIGHT_CORE`, a path to the package;
//! default `/var/tmp/chatbot-ci-node/node_modules/playwright-core`, where `.ci/run` installs
//! it). Without them the test is skipped with a note, unless `CI` is set: then it fails.

mod common;

use chatbot::channels::engagement::catalogue::{self, built_in};
use common::{TestEnv, Variant, browser};

const SCRIPT: &str = r#"
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    // (playwright starts Chromium with a fresh profile of its own)
  });
  const page = await browser.newPage();
  const out = { answers: 0 };
  try {
    await page.goto(process.env.BASE + '/api/chatbot-demo/engagement/newjob/');
    await page.selectOption('#lang', process.env.LANG_CODE);
    await page.click('#connect');
    // Answer "yes" with the page's button each time the bot waits, until the checkout.
    for (let i = 0; i < 10; i++) {
      const which = await Promise.race([
        page.waitForSelector('#yes:not([disabled])', { timeout: 20000 }).then(() => 'yes'),
        page.waitForSelector('#checkout', { timeout: 20000 }).then(() => 'checkout'),
      ]);
      if (which === 'checkout') break;
      // The checkout chunk's last message is `waiting` too: the button may be enabled for an
      // instant before the close disables it again, and then the click is not made.
      if (await page.click('#yes', { timeout: 3000 }).then(() => true, () => false)) {
        out.answers++;
      }
    }
    out.state = await page.textContent('#state');
    out.bot = await page.$$eval('.bot', els => els.map(e => e.textContent));
    await page.click('#checkout');
    await page.waitForURL('**/api/chatbot-demo/success/newjob/');
    await page.selectOption('#lang', process.env.LANG_CODE);
    await page.click('#connect');
    const link = await page.waitForSelector('a.report-link', { timeout: 20000 });
    out.report_url = await link.getAttribute('href');
    await page.waitForFunction(() => document.getElementById('state').textContent === 'Chat finished.', null, { timeout: 20000 });
    out.success_state = await page.textContent('#state');
    out.paid = await page.$$eval('.bot', els => els.length);
  } catch (e) {
    out.error = String(e);
    out.page = await page.content().catch(() => '');
  }
  await browser.close();
  console.log(JSON.stringify(out));
})();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_pages_chat_to_the_purchase_and_the_link_in_chromium() {
    if !browser::available() {
        return;
    }
    let mut env = TestEnv::new(Variant::Embedded).await.unwrap();
    env.settings.engagement.interval_ms = 40;
    env.settings.engagement.tenant = Some("alpha".into());
    // The demo secret: the success page then carries a signed sample, as under `serve --demo`.
    env.settings.engagement.hash_secret = Some(chatbot::demo::REPORT_HASH_SECRET.into());
    let app = env.start().await;
    let (alpha, _) = app.two_schools().await;
    catalogue::insert(
        &app.state.db,
        &alpha.ctx,
        "newjob",
        &built_in("newjob").unwrap(),
        true,
    )
    .await
    .unwrap();
    let newjob = built_in("newjob").unwrap();

    for lang in ["en", "ru", "pl"] {
        let out = browser::run(
            SCRIPT,
            &[("BASE", app.base.clone()), ("LANG_CODE", lang.to_string())],
        )
        .await;
        assert!(out.get("error").is_none(), "{lang}: {out}");
        // Yes to intro, method and offer (a fourth click may land on the checkout chunk's
        // last message in the instant before the close).
        let answers = out["answers"].as_u64().unwrap();
        assert!((3..=4).contains(&answers), "{lang}: {out}");
        assert_eq!(
            out["state"], "Chat closed: starting the checkout.",
            "{lang}: the socket closed normally"
        );
        let d = newjob
            .dialogue
            .get(chatbot::channels::engagement::script::Lang::parse(lang).unwrap());
        let bot: Vec<&str> = out["bot"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            bot.first().copied(),
            d.greeting_new.first().map(String::as_str)
        );
        assert_eq!(
            bot.last().copied(),
            d.steps["checkout"].say.last().map(String::as_str)
        );
        let url = out["report_url"].as_str().unwrap();
        assert!(
            url.starts_with("/api/reading/newjob/?date=2023-10-8&") && url.contains("&hash="),
            "{lang}: {url}"
        );
        assert_eq!(out["success_state"], "Chat finished.");
        assert_eq!(out["paid"].as_u64().unwrap() as usize, d.paid.len());
    }
}
