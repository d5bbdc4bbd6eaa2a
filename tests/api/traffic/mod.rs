//! Traffic: rate limits (in process, and shared through Redis by several instances), the
//! credential and read caches and their invalidation across instances, and Redis failing
//! under load.
//! Tests that stop Redis start a throwaway one ([`ThrowawayRedis`]), never the shared one.

mod admission;
mod credentials;
mod outage;
mod rate_limits;
mod reads;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestTenant, expect_json, free_port, override_limits};

/// The shared Redis every test may use (keys are per tenant and credential, so tests do
/// not meet).
pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// A Redis server of one test's own on a free port, killed on drop.
pub struct ThrowawayRedis {
    child: Option<Child>,
    pub port: u16,
}

impl ThrowawayRedis {
    pub fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the throwaway Redis never answered");
    }

    pub fn ping(&self) -> bool {
        self.cli(&["ping"]).is_some_and(|out| out.trim() == "PONG")
    }

    /// `redis-cli` against it; its output when it ran.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Kills it (as a crash would) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Gives `tenant` its own rate (overriding its plan's) through the operator API.
pub async fn set_rate(app: &TestApp, tenant: &TestTenant, per_second: u64, burst: u64) {
    override_limits(
        app,
        tenant,
        json!({"requests_per_second": per_second, "request_burst": burst}),
    )
    .await;
}

/// `/health/ready`'s body.
pub async fn readiness(app: &TestApp) -> Value {
    expect_json(
        app.client
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await
}
