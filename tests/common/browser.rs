//! Headless Chromium (Debian's `chromium`) driven by `playwright-core` from a Node script, for
//! the tests of the pages the service serves. Needs `/usr/bin/chromium` and playwright-core
//! (`PLAYWRIGHT_CORE`, a path to the package; default
//! `/var/tmp/chatbot-ci-node/node_modules/playwright-core`, where `.ci/run` installs it).

use std::path::PathBuf;
use std::process::Command;

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The playwright-core package.
pub fn playwright() -> PathBuf {
    std::env::var_os("PLAYWRIGHT_CORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/chatbot-ci-node/node_modules/playwright-core"))
}

/// Whether Chromium and playwright-core are here. Without them a test skips itself with a
/// note, unless `CI` is set: then this fails.
pub fn available() -> bool {
    if std::path::Path::new(CHROMIUM).exists() && playwright().exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {CHROMIUM} or playwright-core ({}) is missing: .ci/run installs both",
        playwright().display()
    );
    eprintln!(
        "skipped: needs {CHROMIUM} and playwright-core at {} (PLAYWRIGHT_CORE)",
        playwright().display()
    );
    false
}

/// Run `script` (CommonJS) with Node, `PLAYWRIGHT_CORE`, `CHROMIUM` and `env` set: the JSON
/// value its last line of output prints. Fails when Node does.
pub async fn run(script: &str, env: &[(&str, String)]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.cjs");
    std::fs::write(&path, script).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(&path)
        .env("PLAYWRIGHT_CORE", playwright())
        .env("CHROMIUM", CHROMIUM);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = tokio::task::spawn_blocking(move || cmd.output().expect("node runs"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "node failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}
