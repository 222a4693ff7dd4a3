//! Real processes: a web process and worker processes of the `chatbot` binary sharing one
//! database and queue. A worker killed with SIGKILL in the middle of sending loses nothing and
//! doubles nothing; SIGTERM lets a worker finish what it is doing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chatbot::channels::mock_graph::MockGraph;
use chatbot::channels::whatsapp_cloud::sign;
use chatbot::config::Settings;
use common::{TestEnv, Variant, eventually};
use serde_json::{Value, json};

variants!(a_worker_killed_mid_send_loses_and_doubles_nothing);

const BIN: &str = env!("CARGO_BIN_EXE_chatbot");

/// One `chatbot` process with the test's settings; its log goes to `log`.
fn spawn(settings: &Settings, mock: &MockGraph, args: &[&str], log: &Path) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CHATBOT_DATA_DIR", &settings.storage.data_dir)
        .env("CHATBOT_LISTEN", "127.0.0.1:0")
        .env("CHATBOT_LOG", "info")
        .env("CHATBOT_LOG_FORMAT", "json")
        .env("CHATBOT_QUEUE_NAMESPACE", &settings.queue.namespace)
        .env(
            "CHATBOT_SECRET_KEY",
            secrecy::ExposeSecret::expose_secret(settings.secrets.secret_key.as_ref().unwrap()),
        )
        .env("CHATBOT_WHATSAPP_API_BASE", mock.base_url())
        .env("CHATBOT_ORPHAN_TIMEOUT_SECS", "3")
        .env("CHATBOT_SHUTDOWN_TIMEOUT", "20");
    if let Some(url) = &settings.storage.database_url {
        cmd.env("DATABASE_URL", url.expose());
    }
    if let Some(url) = &settings.queue.redis_url {
        cmd.env("REDIS_URL", url.expose());
    }
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// The address in the "chatbot ready" line of a log.
async fn ready_addr(log: &Path) -> String {
    eventually("the ready line", Duration::from_secs(60), || async {
        std::fs::read_to_string(log).ok()?.lines().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v["message"] == "chatbot ready")
                .then(|| v["addr"].as_str().map(str::to_string))
                .flatten()
        })
    })
    .await
}

/// Is the "chatbot ready" line of a workers-only process there?
async fn wait_ready(log: &Path) {
    eventually(
        "the worker's ready line",
        Duration::from_secs(60),
        || async {
            std::fs::read_to_string(log)
                .ok()?
                .contains("chatbot ready")
                .then_some(())
        },
    )
    .await
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path: PathBuf = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            out.push_str(&format!("--- {}\n", path.display()));
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    out
}

async fn a_worker_killed_mid_send_loses_and_doubles_nothing(v: Variant) {
    use chatbot::entities::message_log;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let Some(env) = TestEnv::new(v).await else {
        return;
    };
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let settings = env.settings.clone();
    let dir = settings.storage.data_dir.clone();
    // Seed the demo schools in the shared database (this also migrates it).
    let state = chatbot::app::build_state(settings.clone()).await.unwrap();
    let creds = chatbot::demo::seed(&state.db, &state.secret).await.unwrap();
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = demo
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+')
        .to_string();

    let mut web = spawn(
        &settings,
        &mock,
        &["serve", "--no-workers"],
        &dir.join("web.log"),
    );
    let addr = ready_addr(&dir.join("web.log")).await;
    // As Meta does, the mock posts each message's `sent` status to the webhook.
    mock.post_statuses_to(
        &format!("http://{addr}/api/v1/chatbot/webhooks/whatsapp/"),
        &wa.app_secret,
    );
    let mut worker_a = spawn(&settings, &mock, &["worker"], &dir.join("worker-a.log"));
    wait_ready(&dir.join("worker-a.log")).await;

    // The first reply stays in flight at the Graph API long enough to kill its sender.
    mock.hold_next(&[Duration::from_secs(60)]);
    let client = reqwest::Client::new();
    let deliver = |id: &'static str, text: &'static str| {
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": wa.phone_number_id},
                "contacts": [{"wa_id": digits}],
                "messages": [{"from": digits, "id": id, "type": "text", "text": {"body": text}}]
            }}]}]
        }))
        .unwrap();
        client
            .post(format!("http://{addr}/api/v1/chatbot/webhooks/whatsapp/"))
            .header("X-Hub-Signature-256", sign(&body, &wa.app_secret))
            .body(body)
            .send()
    };
    assert_eq!(deliver("wamid.k1", "hi").await.unwrap().status(), 200);
    eventually(
        "the first reply in flight",
        Duration::from_secs(30),
        || async { (mock.received().len() == 1).then_some(()) },
    )
    .await;
    worker_a.kill().unwrap(); // SIGKILL
    worker_a.wait().unwrap();

    // Another worker process re-runs the orphaned job: the reply already handed to the Graph
    // API (whose id the killed worker never recorded, but whose status named it) is not sent
    // again, the one after it is sent.
    let mut worker_b = spawn(&settings, &mock, &["worker"], &dir.join("worker-b.log"));
    let got = eventually("the second reply", Duration::from_secs(60), || async {
        let got = mock.received();
        (got.len() >= 2).then_some(got)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let texts: Vec<String> = mock.received().iter().map(|r| r.text()).collect();
    assert_eq!(texts.len(), 2, "nothing doubled: {texts:?}\n{}", logs(&dir));
    assert!(texts[0].contains("Welcome"), "{texts:?}");
    assert_eq!(got[1].body["interactive"]["type"], "list", "{texts:?}");

    // The conversation goes on with the new worker, in order.
    assert_eq!(deliver("wamid.k2", "results").await.unwrap().status(), 200);
    eventually(
        "the answer to `results`",
        Duration::from_secs(30),
        || async { (mock.received().len() >= 3).then_some(()) },
    )
    .await;
    assert!(mock.received()[2].text().contains("Which results"));

    // SIGTERM while a send is in flight: the worker finishes it before exiting.
    mock.hold_next(&[Duration::from_secs(2)]);
    assert_eq!(deliver("wamid.k3", "2").await.unwrap().status(), 200);
    eventually(
        "the next reply in flight",
        Duration::from_secs(30),
        || async { (mock.received().len() >= 4).then_some(()) },
    )
    .await;
    let term = Command::new("kill")
        .args(["-TERM", &worker_b.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = worker_b.wait().unwrap();
    assert!(
        status.success(),
        "graceful exit: {status:?}\n{}",
        logs(&dir)
    );
    let rows = message_log::Entity::find()
        .filter(message_log::Column::ReplyTo.eq("wamid.k3"))
        .order_by_asc(message_log::Column::Id)
        .all(&state.db)
        .await
        .unwrap();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.status == "sent"),
        "the in-flight send finished and was recorded: {:?}\n{}",
        rows.iter().map(|r| &r.status).collect::<Vec<_>>(),
        logs(&dir)
    );

    web.kill().unwrap();
    web.wait().unwrap();
    state.db.clone().close().await.unwrap();
    mock.stop();
    drop(env);
}
