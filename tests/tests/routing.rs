//! Routing through real sockets: retries, fallbacks, cooldown and recovery, priority failover,
//! the per-request opt-out, streams that die before their first event, and the response
//! headers that say who answered.

use std::net::TcpListener;
use std::time::Duration;

use tollgate_loadgen::mock::{MockServer, MockServerConfig};
use tollgate_tests::*;

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn routing_toml(flip_port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[routing]
retries = 1
backoff_base = "1ms"
backoff_max = "5ms"
cooldown_failures = 2
cooldown = "400ms"

[[providers]]
name = "mock"
kind = "mock"
first_byte_timeout = "300ms"

[[providers]]
name = "flip"
kind = "openai"
base_url = "http://127.0.0.1:{flip_port}/v1"
connect_timeout = "200ms"

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[[models]]
name = "resilient"
deployments = [{{ provider = "flip", model = "gpt-4o-mini" }}]
fallbacks = ["gpt-4o-mini"]

[[models]]
name = "mixed"
strategy = "priority"
deployments = [
  {{ provider = "mock", model = "mock-error-503", priority = 0 }},
  {{ provider = "mock", model = "gpt-4o-mini", priority = 1 }},
]

[[models]]
name = "flaky-stream"
deployments = [{{ provider = "mock", model = "mock-reset" }}]
fallbacks = ["gpt-4o-mini"]

[[models]]
name = "long-context"
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[[models]]
name = "short-context"
deployments = [{{ provider = "mock", model = "mock-context-overflow" }}]
fallbacks = ["bad-request"]
context_fallbacks = ["long-context"]

[[models]]
name = "short-context-only"
deployments = [{{ provider = "mock", model = "mock-context-overflow" }}]
fallbacks = ["gpt-4o-mini"]

[[models]]
name = "bad-request"
deployments = [{{ provider = "mock", model = "mock-error-400" }}]
fallbacks = ["gpt-4o-mini"]

[[keys]]
name = "demo"
key = "{DEMO_KEY}"
"#
    )
}

fn chat(addr: std::net::SocketAddr, model: &str, stream: bool) -> Response {
    post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body(model, stream),
    )
}

#[test]
fn refused_deployment_retries_then_falls_back() {
    let gw = start(config(&routing_toml(closed_port()), &[]), 1);
    let r = chat(gw.addr(), "resilient", false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-deployment"), Some("mock/gpt-4o-mini"));
    // retries = 1: two attempts on the refused deployment, then the fallback.
    assert_eq!(r.header("x-tollgate-attempts"), Some("3"));
    assert_eq!(r.json()["object"], "chat.completion");
    gw.shutdown();
}

#[test]
fn cooldown_skips_an_ejected_deployment_then_probes_and_recovers() {
    let port = closed_port();
    let gw = start(config(&routing_toml(port), &[]), 1);
    // Two consecutive failures eject the refused deployment.
    let r = chat(gw.addr(), "resilient", false);
    assert_eq!(r.header("x-tollgate-attempts"), Some("3"));
    // While it cools down, requests go straight to the fallback.
    let r = chat(gw.addr(), "resilient", false);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-tollgate-attempts"),
        Some("1"),
        "ejected deployment skipped"
    );

    // The upstream comes back; after the cooldown one request probes it and it is used again.
    let up = MockServer::start(MockServerConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        ..MockServerConfig::default()
    })
    .expect("mock on the reserved port");
    std::thread::sleep(Duration::from_millis(500));
    let r = chat(gw.addr(), "resilient", false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-deployment"), Some("flip/gpt-4o-mini"));
    assert_eq!(r.header("x-tollgate-attempts"), Some("1"));
    let r = chat(gw.addr(), "resilient", false);
    assert_eq!(r.header("x-tollgate-deployment"), Some("flip/gpt-4o-mini"));
    assert_eq!(up.stats().requests(), 2);
    gw.shutdown();
    up.shutdown();
}

#[test]
fn priority_fails_over_within_the_model() {
    let gw = start(config(&routing_toml(closed_port()), &[]), 1);
    let r = chat(gw.addr(), "mixed", false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-deployment"), Some("mock/gpt-4o-mini"));
    assert_eq!(r.header("x-tollgate-attempts"), Some("2"));
    gw.shutdown();
}

#[test]
fn fallbacks_can_be_turned_off_per_request() {
    let gw = start(config(&routing_toml(closed_port()), &[]), 1);
    let body = chat_body("resilient", false);
    let mut c = Client::connect(gw.addr());
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {DEMO_KEY}\r\nx-tollgate-fallback: off\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response();
    r.assert_error(502, "upstream_unreachable");
    gw.shutdown();
}

#[test]
fn stream_whose_upstream_dies_before_the_first_event_falls_back() {
    let gw = start(config(&routing_toml(closed_port()), &[]), 1);
    let r = chat(gw.addr(), "flaky-stream", true);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-deployment"), Some("mock/gpt-4o-mini"));
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(!r.text().contains("\"error\""), "{}", r.text());
    gw.shutdown();
}

#[test]
fn a_bad_request_is_not_retried_or_fallen_back() {
    let gw = start(config(&routing_toml(closed_port()), &[]), 1);
    let r = chat(gw.addr(), "bad-request", false);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("x-tollgate-attempts"), Some("1"));
    assert!(r.json()["error"]["message"].is_string());
    gw.shutdown();
}

#[test]
fn context_overflow_goes_to_the_context_fallbacks_only() {
    let gw = start(config(&routing_toml(closed_port()), &[]), 1);
    let r = chat(gw.addr(), "short-context", false);
    assert_eq!(r.status, 200, "{}", r.text());
    // Not the ordinary fallback (bad-request), and not a retry of the same model.
    assert_eq!(r.header("x-tollgate-deployment"), Some("mock/gpt-4o-mini"));
    assert_eq!(r.header("x-tollgate-attempts"), Some("2"));

    // Without context fallbacks the overflow is the client's answer: ordinary fallbacks do not
    // help a prompt that is too long.
    let r = chat(gw.addr(), "short-context-only", false);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    gw.shutdown();
}
