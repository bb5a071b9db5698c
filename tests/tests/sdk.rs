//! The official `openai` Python client against the gateway: chat, streaming, usage, errors.
//! The package is installed with pip when it is missing, so a fresh machine needs no set-up.

use std::process::Command;

use tollgate_tests::*;

fn ensure_openai_package() {
    let have = Command::new("python3")
        .args(["-c", "import openai"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return;
    }
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "openai",
        ])
        .status()
        .expect("python3 runs");
    assert!(status.success(), "pip install openai failed");
}

#[test]
fn official_openai_python_client_chats_and_streams() {
    ensure_openai_package();
    let gw = start(
        config(
            &mock_gateway_toml("", "chunks = 5\ncompletion_tokens = 9"),
            &[],
        ),
        1,
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/openai_client.py");
    let base = format!("http://{}/v1", gw.addr());
    let out = Command::new("python3")
        .args([script, &base, DEMO_KEY, "gpt-4o-mini"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert!(
        v["chat_content"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert_eq!(v["chat_completion_tokens"], 9, "{v}");
    assert!(v["stream_pieces"].as_u64().unwrap() >= 5, "{v}");
    assert_eq!(v["stream_finish"], "stop", "{v}");
    assert_eq!(v["stream_usage_events"], 0, "{v}");
    assert!(v["streamed_usage"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["error_status"], 404, "{v}");
    assert_eq!(
        v["models"],
        serde_json::json!(["gpt-4o-mini", "cut", "reset", "hang", "boom"]),
        "{v}"
    );
    gw.shutdown();
}
