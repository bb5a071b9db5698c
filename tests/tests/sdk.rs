//! The official `openai` and `anthropic` Python clients against the gateway: chat, streaming,
//! usage, tool calls, errors. The packages are installed with pip when it is missing, so a fresh machine needs no set-up.

use std::process::Command;

use tollgate_tests::*;

/// Install a Python package with pip unless it imports already.
fn ensure_package(name: &str) {
    let have = Command::new("python3")
        .args(["-c", &format!("import {name}")])
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
            name,
        ])
        .status()
        .expect("python3 runs");
    assert!(status.success(), "pip install {name} failed");
}

#[test]
fn official_openai_python_client_chats_and_streams() {
    ensure_package("openai");
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

/// Both official SDKs, every provider kind behind the gateway: chat, stream and a tool round
/// trip each.
#[test]
fn official_sdks_work_whatever_provider_is_behind() {
    ensure_package("openai");
    ensure_package("anthropic");
    let up = tollgate_loadgen::mock::MockServer::start(Default::default()).expect("mock starts");
    let gw = start(
        config(&all_providers_toml(&format!("http://{}", up.addr())), &[]),
        1,
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/sdk_matrix.py");
    let base = format!("http://{}", gw.addr());
    let models: Vec<&str> = PROVIDER_MODELS.iter().map(|(m, _)| *m).collect();
    for sdk in ["openai", "anthropic"] {
        let out = Command::new("python3")
            .args([script, sdk, &base, DEMO_KEY])
            .args(&models)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{sdk}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), models.len(), "{sdk}");
        for v in lines {
            assert!(v.get("error").is_none(), "{sdk}: {v}");
            assert!(
                v["chat"].as_str().is_some_and(|s| !s.is_empty()),
                "{sdk}: {v}"
            );
            assert!(
                v["stream"].as_str().is_some_and(|s| !s.is_empty()),
                "{sdk}: {v}"
            );
            assert_eq!(v["tool_name"], "get_weather", "{sdk}: {v}");
            assert_eq!(
                v["tool_args"],
                serde_json::json!({"city": "Paris"}),
                "{sdk}: {v}"
            );
            assert!(
                v["after_tool"]
                    .as_str()
                    .is_some_and(|s| s.contains("sunny")),
                "{sdk}: {v}"
            );
        }
    }
    gw.shutdown();
    up.shutdown();
}
