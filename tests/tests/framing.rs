//! HTTP/1.1 framing at the front door: limits, smuggling attempts, timeouts, pipelining.

use std::time::{Duration, Instant};

use tollgate_tests::*;

fn gateway(server_extra: &str) -> tollgate_engine::Gateway {
    start(config(&mock_gateway_toml(server_extra, ""), &[]), 1)
}

fn raw(gw: &tollgate_engine::Gateway, bytes: &[u8]) -> (Response, Client) {
    let mut c = Client::connect(gw.addr());
    c.send(bytes);
    (c.read_response(), c)
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_close() {
    let gw = gateway("");
    let (r, mut c) = raw(
        &gw,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed(Duration::from_secs(2)));
    gw.shutdown();
}

#[test]
fn conflicting_content_lengths_and_bare_lf_are_400() {
    let gw = gateway("");
    let (r, _) = raw(
        &gw,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde",
    );
    assert_eq!(r.status, 400);
    let (r, _) = raw(&gw, b"GET /health/live HTTP/1.1\nhost: t\n\n");
    assert_eq!(r.status, 400);
    let (r, _) = raw(
        &gw,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n\r\n",
    );
    assert_eq!(r.status, 400, "empty chunk size");
    gw.shutdown();
}

#[test]
fn oversized_head_is_431_and_body_413() {
    let gw = gateway("max_head_bytes = \"2KiB\"\nmax_body_bytes = \"1KiB\"");
    let big = format!(
        "GET /health/live HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
        "a".repeat(4096)
    );
    let (r, _) = raw(&gw, big.as_bytes());
    assert_eq!(r.status, 431);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2000)
    );
    let (r, _) = raw(
        &gw,
        &post_bytes("/v1/chat/completions", Some(DEMO_KEY), &body),
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    gw.shutdown();
}

#[test]
fn chunked_request_body_and_expect_continue() {
    let gw = gateway("");
    let body = chat_body("gpt-4o-mini", false);
    let (first, second) = body.split_at(10);
    let mut c = Client::connect(gw.addr());
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {DEMO_KEY}\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    );
    // The gateway must invite the body before we send it.
    assert_eq!(c.read_interim_status(), 100);
    c.send(
        format!(
            "{:x};ext=1\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
            first.len(),
            second.len()
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "chat.completion");
    gw.shutdown();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let gw = gateway("");
    let mut c = Client::connect(gw.addr());
    let mut burst = Vec::new();
    burst.extend_from_slice(b"GET /health/live HTTP/1.1\r\nhost: t\r\n\r\n");
    burst.extend_from_slice(&post_bytes(
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    ));
    burst.extend_from_slice(b"GET /nope HTTP/1.1\r\nhost: t\r\n\r\n");
    burst.extend_from_slice(b"GET /health/ready HTTP/1.1\r\nhost: t\r\n\r\n");
    c.send(&burst);
    assert_eq!(c.read_response().json()["status"], "live");
    assert_eq!(c.read_response().json()["object"], "chat.completion");
    assert_eq!(c.read_response().status, 404);
    assert_eq!(c.read_response().json()["status"], "ready");
    gw.shutdown();
}

#[test]
fn slow_head_is_408() {
    let gw = gateway("header_read_timeout = \"300ms\"");
    let mut c = Client::connect(gw.addr());
    let start = Instant::now();
    c.send(b"GET /health/live HTTP/1.1\r\nhost: t\r\n");
    // Keep trickling bytes: the deadline counts from the first byte, not from the last read.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(120));
        c.send(b"x-a: b\r\n");
    }
    let r = c.read_response();
    assert_eq!(r.status, 408);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(c.is_closed(Duration::from_secs(2)));
    gw.shutdown();
}

#[test]
fn idle_keepalive_connection_is_closed() {
    let gw = gateway("keepalive_timeout = \"200ms\"");
    let mut c = Client::connect(gw.addr());
    assert_eq!(c.get("/health/live", None).status, 200);
    assert!(c.is_closed(Duration::from_secs(3)));
    gw.shutdown();
}

#[test]
fn http10_client_gets_close_delimited_stream() {
    let gw = gateway("");
    let body = chat_body("gpt-4o-mini", true);
    let mut c = Client::connect(gw.addr());
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.0\r\nauthorization: Bearer {DEMO_KEY}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    gw.shutdown();
}
