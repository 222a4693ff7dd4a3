//! A `redis-server` of a test's or benchmark's own, on a free port, with its append-only file
//! on (as production Redis must be configured), to be shut down and started again on the same
//! file. Shared by `tests/redis_restart.rs` and `benches/soak.rs`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private `redis-server`; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// `always` or `everysec`.
    fsync: &'static str,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start on a free port, syncing the append-only file as `appendfsync` says (`always`:
    /// every write; `everysec`: production's default).
    pub fn start(appendfsync: &'static str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            child: None,
            port,
            fsync: appendfsync,
            dir: tempfile::tempdir().unwrap(),
        };
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_until(&self, up: bool) {
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() == up {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "redis-server on {} did not come {}",
            self.port,
            if up { "up" } else { "down" }
        );
    }

    /// Start on the same port and directory (its append-only file holds what was there).
    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        self.wait_until(true);
    }

    /// `SHUTDOWN`: Redis syncs its append-only file and exits.
    pub fn shutdown(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown"])
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.wait_until(false);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
