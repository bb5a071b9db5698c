//! The `tollgate` binary itself: `check`, `--version`, the README quick start served for real and
//! stopped with SIGTERM, reloaded with SIGHUP, the admin commands (offline and through a running
//! gateway), and a `kill -9` under load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn example(name: &str) -> String {
    format!("{}/../config/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_accepts_the_examples() {
    for name in [
        "quickstart.toml",
        "openai-compatible.toml",
        "providers.toml",
    ] {
        let out = Command::new(BIN)
            .args(["check", "--config", &example(name)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
}

#[test]
fn check_reports_every_error_with_its_path() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        r#"
[server]
listen = "nowhere"
bogus = 1

[[models]]
name = "m"
deployments = [{ provider = "missing", model = "x" }]
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for path in [
        "server.listen",
        "server.bogus",
        "models[0].deployments[0].provider",
    ] {
        assert!(err.contains(path), "missing {path} in:\n{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_flag() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// A gateway process, killed if the test fails before stopping it.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `tollgate serve` on a free loopback port and wait until it listens.
fn spawn_gateway(config: &str, data: &Path, workers: &str) -> (Served, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--workers",
            workers,
        ])
        .env("TOLLGATE_LOG", "info")
        .env("NO_COLOR", "1")
        .env("TOLLGATE_DATA", data)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr: String = rest
                .chars()
                .filter(|c| !c.is_control())
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| !c.is_whitespace())
                .collect();
            break addr
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .to_owned();
        }
    };
    // Keep draining the log so the gateway never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (Served(child), addr)
}

/// One chat completion with `connection: close`; the whole response as text.
fn chat(addr: &str, key: &str) -> std::io::Result<String> {
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#;
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    Ok(response)
}

/// Send `signal` and wait for the process to end.
fn stop(served: &mut Served, signal: libc::c_int) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    let rc = unsafe { libc::kill(served.0.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0);
    served.0.wait().unwrap()
}

#[test]
fn quickstart_serves_and_stops_on_sigterm() {
    let store = tempfile::tempdir().unwrap();
    let data = store.path().join("data");
    let (mut child, addr) = spawn_gateway(&example("quickstart.toml"), &data, "1");
    let response = chat(&addr, "sk-tollgate-demo").unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("\"chat.completion\""), "{response}");

    let status = stop(&mut child, libc::SIGTERM);
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

const GOVERNED: &str = r#"
[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "gpt-4o-mini"
deployments = [{ provider = "mock", model = "gpt-4o-mini" }]

[[teams]]
name = "ml"

[[keys]]
name = "load"
key = "sk-tollgate-load"
team = "ml"
limits = { budget = "1000usd/month", rpm = 10000000 }

[admin]
master_key = "master-key-for-the-cli-test"

[store]
path = "${TOLLGATE_DATA}"
flush_interval = "50ms"
"#;

/// Run an admin command; (exit code, stdout JSON or Null, stderr).
fn tollgate(config: &Path, data: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("TOLLGATE_DATA", data)
        .env("TOLLGATE_LOG", "warn")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keys_from_the_cli_offline_and_through_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.toml");
    std::fs::write(&config, GOVERNED).unwrap();
    let data = dir.path().join("data");

    // No gateway: straight into the store.
    let (code, created, err) = tollgate(
        &config,
        &data,
        &["keys", "create", "--team", "ml", "--budget", "50usd/month"],
    );
    assert_eq!(code, 0, "{err}");
    let secret = created["key"].as_str().unwrap().to_owned();
    let name = created["name"].as_str().unwrap().to_owned();
    assert_eq!(created["limits"]["budget"][0], "50usd/month");
    let (code, _, err) = tollgate(&config, &data, &["keys", "create", "--team", "nobody"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("team `nobody` does not exist (field `team`)"),
        "{err}"
    );

    // The gateway picks the key up from the store.
    let (mut child, addr) = spawn_gateway(config.to_str().unwrap(), &data, "2");
    let response = chat(&addr, &secret).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    // Now the store is the gateway's: the CLI goes through its admin API.
    let (code, revoked, err) = tollgate(
        &config,
        &data,
        &["keys", "revoke", &name, "--gateway", &addr],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("through the gateway's admin API"), "{err}");
    assert!(revoked["revoked_at"].is_u64());
    // Every worker refuses it within a reconcile interval (connections spread over both).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut admitted = 1;
    while !(0..8).all(|_| {
        let response = chat(&addr, &secret).unwrap();
        admitted += u64::from(response.starts_with("HTTP/1.1 200"));
        response.starts_with("HTTP/1.1 401") && response.contains("key_revoked")
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "still admitted after 3s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200)); // one flush interval and then some
    let (code, spend, err) = tollgate(
        &config,
        &data,
        &[
            "spend",
            "--scope",
            "key",
            "--name",
            &name,
            "--gateway",
            &addr,
        ],
    );
    assert_eq!(code, 0, "{err}");
    // The first request plus any admitted before the revocation reached that worker; a
    // revoked key is refused before it is charged anything.
    assert_eq!(spend["data"][0]["requests"], admitted, "{spend}");

    assert!(stop(&mut child, libc::SIGTERM).success());

    // Stopped: offline again, and the revocation stuck.
    let (code, key, err) = tollgate(&config, &data, &["keys", "get", &name]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(key["revoked_at"], revoked["revoked_at"]);
    assert!(!key.to_string().contains(&secret));
}

#[test]
fn keys_and_teams_take_a_guardrails_profile_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.toml");
    let profiles = "\n[[guardrails.profiles]]\nname = \"strict\"\nrules = [{ id = \"cards\", detector = \"payment_card\", action = \"block\" }]\n";
    std::fs::write(&config, format!("{GOVERNED}{profiles}")).unwrap();
    let data = dir.path().join("data");

    let (code, created, err) = tollgate(
        &config,
        &data,
        &["keys", "create", "--name", "k", "--guardrails", "strict"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(created["guardrails"], "strict");
    let (code, cleared, err) =
        tollgate(&config, &data, &["keys", "update", "k", "--no-guardrails"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cleared["guardrails"], serde_json::Value::Null);
    let (code, team, err) = tollgate(
        &config,
        &data,
        &["teams", "create", "payments", "--guardrails", "strict"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(team["guardrails"], "strict");
    let (code, _, err) = tollgate(&config, &data, &["keys", "create", "--guardrails", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown guardrails profile \"nope\" (configured: strict)"),
        "{err}"
    );
}

#[test]
fn kill_9_under_load_leaves_a_consistent_store() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use tollgate_engine::store::sled_store::SledStore;
    use tollgate_engine::store::{Scope, Store};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.toml");
    std::fs::write(&config, GOVERNED).unwrap();
    let data = dir.path().join("data");
    let mut acknowledged_before = 0;
    for round in 0..2 {
        let (mut child, addr) = spawn_gateway(config.to_str().unwrap(), &data, "2");
        let done = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (done, served, addr) = (done.clone(), served.clone(), addr.clone());
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        match chat(&addr, "sk-tollgate-load") {
                            Ok(r) if r.starts_with("HTTP/1.1 200") => {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) if r.starts_with("HTTP/1.1 ") => panic!("refused: {r}"),
                            // Cut off or refused: the gateway is gone.
                            Ok(_) | Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        stop(&mut child, libc::SIGKILL);
        done.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let served = served.load(Ordering::Relaxed);
        assert!(served > 50, "round {round}: only {served} requests served");

        // The store opens, its aggregates equal the sum of its records, and it holds at most
        // what was acknowledged (the last flush interval may be lost, never invented).
        let store = SledStore::open(&data).unwrap();
        store.verify().unwrap();
        let total = store.lifetime(Scope::All, "", None).unwrap();
        let on_disk = store.records(0, u64::MAX, usize::MAX).unwrap();
        assert_eq!(total.requests, on_disk.len() as u64);
        assert!(
            total.requests > acknowledged_before,
            "round {round}: nothing durable"
        );
        assert!(
            total.requests <= acknowledged_before + served,
            "round {round}: {} records for {} acknowledged",
            total.requests,
            acknowledged_before + served
        );
        assert_eq!(
            total.cost,
            on_disk.iter().map(|r| r.cost).sum::<u64>(),
            "round {round}"
        );
        eprintln!(
            "round {round}: {served} acknowledged, {} records on disk in all",
            total.requests
        );
        acknowledged_before = total.requests;
    }
}

#[test]
fn sighup_reloads_the_file_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.toml");
    std::fs::write(&config, GOVERNED).unwrap();
    let data = dir.path().join("data");
    let (mut child, addr) = spawn_gateway(config.to_str().unwrap(), &data, "2");
    let pid = child.0.id() as libc::pid_t;
    let status = |key: &str| chat(&addr, key).unwrap()[9..12].to_owned();
    assert_eq!(status("sk-tollgate-load"), "200");
    assert_eq!(status("sk-tollgate-added"), "401");
    let hup = || {
        // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };
    // Until `deadline`, whether `key` gets `want`.
    let eventually = |key: &str, want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if status(key) == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };

    let added = format!("{GOVERNED}\n[[keys]]\nname = \"added\"\nkey = \"sk-tollgate-added\"\n");
    std::fs::write(&config, &added).unwrap();
    hup();
    assert!(
        eventually("sk-tollgate-added", "200"),
        "SIGHUP did not reload"
    );

    // Broken: the running config (with the added key) stays, and the process lives on.
    std::fs::write(&config, "[server\n").unwrap();
    hup();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status("sk-tollgate-added"), "200");
    assert_eq!(status("sk-tollgate-load"), "200");

    // `tollgate reload` asks the gateway through its admin API and waits for the outcome.
    std::fs::write(&config, GOVERNED).unwrap();
    let reload = Command::new(BIN)
        .args(["reload", "--gateway", &addr, "--config"])
        .arg(&config)
        .env("TOLLGATE_DATA", &data)
        .output()
        .unwrap();
    assert!(reload.status.success(), "{reload:?}");
    let answer: serde_json::Value = serde_json::from_slice(&reload.stdout).unwrap();
    assert_eq!(answer["reloaded"], true, "{answer}");
    assert_eq!(answer["generation"], 2, "{answer}");
    assert_eq!(status("sk-tollgate-added"), "401");
    let status = stop(&mut child, libc::SIGTERM);
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
