//! The `chatbot` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_chatbot");

fn chatbot(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CHATBOT_DATA_DIR", data_dir)
        .env("CHATBOT_LOG", "warn");
    cmd
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = chatbot(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in [
        "serve",
        "migrate",
        "seed-demo",
        "openapi",
        "tenant",
        "apikey",
        "CHATBOT_LISTEN",
        "DATABASE_URL",
        "REDIS_URL",
    ] {
        assert!(text.contains(word), "--help mentions {word}:\n{text}");
    }
    for (cmd, word) in [
        ("serve", "--demo"),
        ("migrate", "migrations"),
        ("seed-demo", "--json"),
        ("openapi", "--output"),
        ("tenant", "create"),
        ("apikey", "revoke"),
        ("number", "rotate"),
    ] {
        let out = chatbot(dir.path()).args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(word), "{cmd} --help mentions {word}:\n{text}");
    }
}

#[test]
fn seed_demo_json_is_stable_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let first = chatbot(dir.path())
        .args(["seed-demo", "--json"])
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let doc: Value = serde_json::from_slice(&first.stdout).expect("stdout is one JSON object");
    assert_eq!(doc["created"], true);
    let tenants = doc["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 2);
    for t in tenants {
        for k in ["schema_name", "name", "api_key"] {
            assert!(t[k].as_str().is_some_and(|v| !v.is_empty()), "{k}");
        }
        for k in [
            "phone_number_id",
            "display_phone_number",
            "app_secret",
            "verify_token",
            "twilio_number",
            "twilio_auth_token",
        ] {
            assert!(
                t["whatsapp"][k].as_str().is_some_and(|v| !v.is_empty()),
                "whatsapp.{k}"
            );
        }
        let students = t["students"].as_array().unwrap();
        let ids: Vec<&str> = students
            .iter()
            .map(|s| s["student_id"].as_str().unwrap())
            .collect();
        for s in students {
            for k in ["student_id", "pin", "name", "class"] {
                assert!(s[k].as_str().is_some(), "student.{k}");
            }
        }
        for p in t["parents"].as_array().unwrap() {
            assert!(p["phone"].as_str().unwrap().starts_with('+'));
            for id in p["student_ids"].as_array().unwrap() {
                assert!(
                    ids.contains(&id.as_str().unwrap()),
                    "parent's student {id} listed"
                );
            }
        }
    }
    // Second run: nothing created, same credentials.
    let second = chatbot(dir.path())
        .args(["seed-demo", "--json"])
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(again["created"], false);
    assert_eq!(again["tenants"], doc["tenants"]);
    // Human-readable form names the API key and the docs.
    let text = chatbot(dir.path()).arg("seed-demo").output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(tenants[0]["api_key"].as_str().unwrap()) && text.contains("/docs"),
        "{text}"
    );
}

#[test]
fn openapi_command_writes_the_committed_document() {
    let dir = tempfile::tempdir().unwrap();
    let out = chatbot(dir.path()).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap();
    assert_eq!(out.stdout, committed);
    let file = dir.path().join("spec/openapi.json");
    let out = chatbot(dir.path())
        .args(["openapi", "--output"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read(&file).unwrap(), committed);
}

#[test]
fn bad_configuration_is_reported_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = chatbot(dir.path())
        .env("CHATBOT_LISTEN", "nowhere")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("CHATBOT_LISTEN"), "{err}");

    let cfg = dir.path().join("chatbot.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:9\"\nlisten_port = 3\n").unwrap();
    let out = chatbot(dir.path())
        .arg("--config")
        .arg(&cfg)
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("listen_port")
    );

    let out = chatbot(dir.path())
        .env("DATABASE_URL", "postgres://u:pw-XYZ@127.0.0.1:1/x")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("database") && !err.contains("pw-XYZ"), "{err}");
}

#[test]
fn migrate_creates_the_database_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = chatbot(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("chatbot.sqlite").exists());
    // Idempotent.
    assert!(
        chatbot(dir.path())
            .arg("migrate")
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn serve_demo_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = chatbot(dir.path())
        .env("CHATBOT_LISTEN", "127.0.0.1:0")
        .env("CHATBOT_LOG", "info")
        .env("CHATBOT_LOG_FORMAT", "json")
        .args(["serve", "--demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The ready line carries the bound address. The log pipe is then closed on purpose: a
    // server whose log reader went away must still answer and still shut down.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut addr = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "chatbot ready"
        {
            addr = v["addr"].as_str().map(str::to_string);
            break;
        }
        assert!(Instant::now() < deadline, "no ready line");
    }
    let addr = addr.expect("ready line with addr");
    let get = |path: &str| -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let status = buf[9..12].parse().unwrap();
        (status, buf)
    };
    assert_eq!(get("/healthz").0, 200);
    let (status, body) = get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(get("/docs").0, 200);
    assert_eq!(get("/openapi.json").0, 200);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains("Greenfield Academy") && stdout.contains("X-API-KEY"),
        "credentials printed:\n{stdout}"
    );
}

#[test]
fn operators_create_schools_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| chatbot(dir.path()).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();

    let out = run(&[
        "tenant",
        "create",
        "--schema",
        "greenfield",
        "--name",
        "Greenfield Academy",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let school: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(school["schema_name"], "greenfield");
    let again = run(&["tenant", "create", "--schema", "greenfield", "--name", "X"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    let bad = run(&["tenant", "create", "--schema", "1st", "--name", "X"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("schema name"),
        "{}",
        text(&bad.stderr)
    );

    let out = run(&[
        "apikey",
        "create",
        "--tenant",
        "greenfield",
        "--name",
        "ci",
        "--scope",
        "messages",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    assert!(key.starts_with("cbk_") && key.len() == 36, "{key}");
    assert!(text(&out.stderr).contains("shown this once"));

    let out = run(&["apikey", "list", "--tenant", "greenfield", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(&key), "the key is never listed");
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let prefix = keys[0]["prefix"].as_str().unwrap().to_string();
    assert!(key.starts_with(&prefix));
    assert!(keys[0]["revoked_at"].is_null());

    let out = run(&["apikey", "revoke", "--tenant", "greenfield", &prefix]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["apikey", "list", "--tenant", "greenfield", "--json"]);
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(keys[0]["revoked_at"].is_string());

    let out = run(&["tenant", "list"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("greenfield\tGreenfield Academy\tUTC\ten\t0"));
    let out = run(&["apikey", "list", "--tenant", "nowhere"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nowhere"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 28 point 8: a value from outside that holds a newline (here a message id in a signed
/// webhook, written to the text log by the duplicate check and the worker's span) cannot start
/// a log line of its own: the running server escapes it.
#[test]
fn a_webhook_value_cannot_forge_a_log_line() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let out = chatbot(dir.path())
        .args(["seed-demo", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creds: Value = serde_json::from_slice(&out.stdout).unwrap();
    let wa = &creds["tenants"][0]["whatsapp"];
    let mut child = chatbot(dir.path())
        .env("CHATBOT_LISTEN", "127.0.0.1:0")
        .env("CHATBOT_LOG", "info")
        .env("CHATBOT_LOG_FORMAT", "text")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {what:?} in:\n{}", seen.join("\n")));
            seen.push(line.clone());
            if line.contains(what) {
                return line;
            }
        }
    };
    let ready = wait_for("chatbot ready");
    let addr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("the ready line names its address")
        .to_string();

    let forged = "wamid.x\n2026-12-05T00:00:00.000000Z  INFO chatbot: FORGED admin signed in";
    let body = serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1", "phone_number_id": wa["phone_number_id"]},
            "messages": [{"from": "2348000000999", "id": forged, "timestamp": "1763800000",
                "type": "text", "text": {"body": "hi"}}],
        }}]}],
    }))
    .unwrap();
    let signature =
        chatbot::channels::whatsapp_cloud::sign(&body, wa["app_secret"].as_str().unwrap());
    let post = || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /api/v1/chatbot/webhooks/whatsapp/ HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/json\r\nX-Hub-Signature-256: {signature}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(&body).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    };
    post();
    post();
    let duplicate = wait_for("duplicate delivery ignored");
    assert!(duplicate.contains("wamid.x\\n2026"), "{duplicate}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
    seen.extend(lines.try_iter());
    for line in &seen {
        assert!(!line.starts_with("2026-12-05T00:00:00"), "forged: {line}");
        assert!(
            !line.contains("FORGED") || line.contains("wamid.x\\n"),
            "{line}"
        );
    }
}

#[test]
fn operators_register_rotate_and_remove_a_schools_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = chatbot(dir.path());
        cmd.env("CHATBOT_PUBLIC_URL", "https://bot.example.org");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).output().unwrap()
    };
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(run(
        &[
            "tenant", "create", "--schema", "lagos-gs", "--name", "Lagos GS",
        ],
        &[],
    ));
    const ACCESS: &str = "EAAG-cli-access-token-0001";
    const SECRET: &str = "cli-app-secret-0123456789abcdef";
    const VERIFY: &str = "cli-verify-token-0001";
    const ROTATED: &str = "cli-app-secret-rotated-00009999";
    // Secrets from the environment, so they stay out of `ps` and shell history.
    let meta_env = [
        ("CHATBOT_NUMBER_ACCESS_TOKEN", ACCESS),
        ("CHATBOT_NUMBER_APP_SECRET", SECRET),
        ("CHATBOT_NUMBER_VERIFY_TOKEN", VERIFY),
    ];
    let add = [
        "number",
        "add",
        "--tenant",
        "lagos-gs",
        "--meta",
        "--phone",
        "+2348011110000",
        "--phone-number-id",
        "777000111",
        "--json",
    ];
    // Logged at debug level, nothing of a secret reaches the log either.
    let mut debug_env = meta_env.to_vec();
    debug_env.push(("CHATBOT_LOG", "debug"));
    let out = run(&add, &debug_env);
    let log = text(&out.stderr);
    for (_, secret) in meta_env {
        assert!(!log.contains(secret), "a secret in the log: {log}");
    }
    let added: Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(
        added["webhook_url"],
        "https://bot.example.org/api/v1/chatbot/webhooks/whatsapp"
    );
    assert_eq!(added["secrets"]["access_token_last4"], "0001");
    // Twilio, with its token as an argument.
    ok(run(
        &[
            "number",
            "add",
            "--tenant",
            "lagos-gs",
            "--twilio",
            "--phone",
            "+14155550101",
            "--account-sid",
            "AC0123456789abcdef0123456789abcdef",
            "--auth-token",
            "cli-twilio-auth-token-000001",
        ],
        &[],
    ));
    // The same number again: refused, saying why.
    let again = run(&add, &meta_env);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already registered"),
        "{}",
        text(&again.stderr)
    );
    // A missing secret or provider is a usage error.
    let missing = run(&add, &meta_env[..2]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("verify-token"),
        "{}",
        text(&missing.stderr)
    );
    let neither = run(
        &[
            "number",
            "add",
            "--tenant",
            "lagos-gs",
            "--phone",
            "+2348011110001",
        ],
        &[],
    );
    assert!(!neither.status.success());

    let rotate = [
        "number",
        "rotate",
        "--tenant",
        "lagos-gs",
        "+2348011110000",
        "--app-secret",
        ROTATED,
    ];
    assert!(ok(run(&rotate, &[])).contains("replaced"));
    let list = ok(run(
        &["number", "list", "--tenant", "lagos-gs", "--json"],
        &[],
    ));
    let rows: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(rows[0]["secrets"]["app_secret_last4"], "9999");
    let table = ok(run(&["number", "list", "--tenant", "lagos-gs"], &[]));
    assert!(
        table.contains("+14155550101") && table.contains("auth_token=…0001"),
        "{table}"
    );
    // No secret in clear in anything printed, nor in the database file.
    let mut stored = String::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            stored.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    for secret in [
        ACCESS,
        SECRET,
        VERIFY,
        ROTATED,
        "cli-twilio-auth-token-000001",
    ] {
        assert!(!list.contains(secret) && !table.contains(secret));
        assert!(!stored.contains(secret), "{secret} stored in clear");
    }
    let id = rows[1]["id"].as_i64().unwrap().to_string();
    assert!(ok(run(&["number", "remove", "--tenant", "lagos-gs", &id], &[])).contains("removed"));
    let list = ok(run(
        &["number", "list", "--tenant", "lagos-gs", "--json"],
        &[],
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `chatbot config` as an operator runs it: the effective values by group, secrets hidden,
/// each with where it came from; a refused value names the setting and exits 2.
#[test]
fn config_prints_the_effective_configuration_and_its_sources() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chatbot.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:9000\"\nllm_model = \"from-file\"\n",
    )
    .unwrap();
    let out = chatbot(dir.path())
        .args(["config", "--config"])
        .arg(&file)
        .env("CHATBOT_LLM_MODEL", "from-env")
        .env("DATABASE_URL", "postgres://app:hunter2-pw@db:5432/chatbot")
        .env(
            "CHATBOT_SECRET_KEY",
            "hunter2-hunter2-hunter2-hunter2-hunter2",
        )
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("hunter2"), "a secret printed:\n{text}");
    let line = |name: &str| {
        let found = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        found.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert_eq!(
        line("listen"),
        format!("listen 0.0.0.0:9000 file {}", file.display())
    );
    assert_eq!(
        line("llm_model"),
        "llm_model from-env environment CHATBOT_LLM_MODEL"
    );
    assert_eq!(
        line("database_url"),
        "database_url postgres://app:***@db:5432/chatbot environment DATABASE_URL"
    );
    assert_eq!(
        line("secret_key"),
        "secret_key *** environment CHATBOT_SECRET_KEY"
    );
    assert_eq!(line("body_limit"), "body_limit 4194304 default");
    assert!(text.contains("# llm (checked in llm)"), "{text}");

    let out = chatbot(dir.path())
        .arg("config")
        .env("CHATBOT_SEND_RATE", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("invalid value for CHATBOT_SEND_RATE (in the environment): must be between"),
        "{err}"
    );

    let out = chatbot(dir.path())
        .args(["config", "--reference"])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.matches("\n| `").count(), 55, "{table}");
}
