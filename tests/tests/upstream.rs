//! The gateway in front of a real OpenAI-compatible HTTP upstream (`tollgate-mock` on loopback):
//! model rewrite, upstream auth, keep-alive reuse, streaming, and upstream failures.

use std::net::TcpListener;
use std::time::Duration;

use tollgate_loadgen::mock::{MockServer, MockServerConfig};
use tollgate_protocol::mock::MockKnobs;
use tollgate_tests::*;

fn mock(knobs: MockKnobs) -> MockServer {
    MockServer::start(MockServerConfig {
        knobs,
        ..MockServerConfig::default()
    })
    .expect("mock starts")
}

/// A gateway whose provider `up` points at `base_url`, with client model `gpt-4o-mini` served by
/// upstream model `upstream-model`, plus fault models named after the mock's conventions.
fn gateway_for(base_url: &str, provider_extra: &str) -> tollgate_engine::Gateway {
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[providers]]
name = "up"
kind = "openai"
base_url = "${{UPSTREAM_BASE_URL}}"
api_key = "${{UPSTREAM_API_KEY}}"
{provider_extra}

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "up", model = "upstream-model" }}]

[[models]]
name = "same-name"
deployments = [{{ provider = "up", model = "same-name" }}]

[[models]]
name = "cut"
deployments = [{{ provider = "up", model = "mock-cut" }}]

[[models]]
name = "reset"
deployments = [{{ provider = "up", model = "mock-reset" }}]

[[models]]
name = "hang"
deployments = [{{ provider = "up", model = "mock-hang" }}]

[[models]]
name = "limited"
deployments = [{{ provider = "up", model = "mock-error-429" }}]

[[keys]]
name = "demo"
key = "{DEMO_KEY}"
"#
    );
    start(
        config(
            &toml,
            &[
                ("UPSTREAM_BASE_URL", base_url),
                ("UPSTREAM_API_KEY", "sk-upstream-secret"),
            ],
        ),
        1,
    )
}

#[test]
fn proxies_with_model_rewrite_and_upstream_key() {
    let up = mock(MockKnobs::default());
    let gw = gateway_for(&up.base_url(), "");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    // The mock echoes the model it was asked for: the deployment's, not the client's.
    assert_eq!(v["model"], "upstream-model");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        up.stats().last_authorization().as_deref(),
        Some("Bearer sk-upstream-secret")
    );

    for (path, body, object) in [
        (
            "/v1/completions",
            r#"{"model":"gpt-4o-mini","prompt":"hi"}"#,
            "text_completion",
        ),
        (
            "/v1/embeddings",
            r#"{"model":"gpt-4o-mini","input":"hi"}"#,
            "list",
        ),
    ] {
        let r = post(gw.addr(), path, Some(DEMO_KEY), body);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["object"], object, "{path}");
    }
    assert_eq!(up.stats().requests(), 3);
    gw.shutdown();
    up.shutdown();
}

#[test]
fn upstream_connections_are_kept_alive_and_reused() {
    let up = mock(MockKnobs::default());
    let gw = gateway_for(&up.base_url(), "");
    for i in 0..25 {
        // Fresh client connections each time: reuse must come from the gateway's pool.
        let r = post(
            gw.addr(),
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body("same-name", i % 2 == 0),
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.stats().requests(), 25);
    assert_eq!(
        up.stats().connections(),
        1,
        "one worker, sequential requests: one upstream connection"
    );
    gw.shutdown();
    up.shutdown();
}

#[test]
fn streams_from_http_upstream_in_order_with_usage_hidden() {
    let up = mock(MockKnobs {
        chunks: 6,
        chunk_delay: Duration::from_millis(30),
        ..MockKnobs::default()
    });
    let gw = gateway_for(&up.base_url(), "");
    let mut c = Client::connect(gw.addr());
    c.send(&post_bytes(
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", true),
    ));
    let mut arrivals = Vec::new();
    let r = c.read_response_with(|t, _| arrivals.push(t));
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    for d in &data[..data.len() - 1] {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["model"], "upstream-model");
        assert!(
            !v["choices"].as_array().unwrap().is_empty(),
            "usage-only event leaked: {d}"
        );
    }
    assert!(
        *arrivals.last().unwrap() - arrivals[0] >= Duration::from_millis(120),
        "{arrivals:?}"
    );
    // The gateway asked the upstream for usage even though the client did not.
    assert!(up.stats().completion_tokens() > 0);
    gw.shutdown();
    up.shutdown();
}

#[test]
fn refused_upstream_is_502() {
    // Reserve a port and close it so nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = gateway_for(&format!("http://127.0.0.1:{port}/v1"), "");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    );
    r.assert_error(502, "upstream_unreachable");
    assert!(!r.text().contains("sk-upstream-secret"));
    gw.shutdown();
}

#[test]
fn upstream_reset_timeout_cut_and_status_are_mapped() {
    let up = mock(MockKnobs {
        chunks: 8,
        ..MockKnobs::default()
    });
    let gw = gateway_for(&up.base_url(), "first_byte_timeout = \"300ms\"");
    let addr = gw.addr();

    let r = post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("reset", false),
    );
    r.assert_error(502, "upstream_closed");

    let r = post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("hang", false),
    );
    r.assert_error(504, "upstream_timeout");

    // An OpenAI-style upstream error is passed through with its status.
    let r = post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("limited", false),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "rate_limit_exceeded");

    let r = post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("cut", true),
    );
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_closed", "{last}");

    let r = post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("cut", false),
    );
    assert_eq!(r.status, 502, "{}", r.text());

    // After all that, healthy requests still work.
    let r = post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(r.status, 200);
    gw.shutdown();
    up.shutdown();
}

#[test]
fn pooled_connection_closed_by_upstream_is_retried_transparently() {
    let up = mock(MockKnobs::default());
    let gw = gateway_for(&up.base_url(), "");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(r.status, 200);
    // Restart the upstream on the same port: the gateway's pooled connection is now dead.
    let addr = up.addr();
    up.shutdown();
    let up = MockServer::start(MockServerConfig {
        listen: addr,
        ..MockServerConfig::default()
    })
    .expect("mock restarts on the same port");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.stats().requests(), 1);
    gw.shutdown();
    up.shutdown();
}
