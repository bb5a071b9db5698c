//! The `tollgate` binary itself: `check`, `--version`, and the README quick start served for real
//! and stopped with SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
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

#[test]
fn quickstart_serves_and_stops_on_sigterm() {
    let store = tempfile::tempdir().unwrap();
    let data = store.path().join("data");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            &example("quickstart.toml"),
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
        ])
        .env("TOLLGATE_LOG", "info")
        .env("NO_COLOR", "1")
        .env("TOLLGATE_DATA", &data)
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
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = TcpStream::connect(addr.as_str()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-tollgate-demo\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("\"chat.completion\""), "{response}");

    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
