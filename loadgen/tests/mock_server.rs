//! The standalone mock server over raw TCP: routes, shapes, model-name faults, keep-alive,
//! pipelining, request framing and the counters tests rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::{chat, post, roundtrip, Client};
use tollgate_loadgen::{Driver, FaultKind, FaultSpec, MockKnobs, MockServer, MockServerConfig};

/// `TOLLGATE_TEST_DRIVER=legacy cargo test` runs this file on the epoll driver.
fn config() -> MockServerConfig {
    let driver = std::env::var("TOLLGATE_TEST_DRIVER")
        .map(|d| d.parse::<Driver>().unwrap())
        .unwrap_or_default();
    MockServerConfig {
        driver,
        ..MockServerConfig::default()
    }
}

fn start() -> MockServer {
    MockServer::start(config()).unwrap()
}

fn start_with(knobs: MockKnobs) -> MockServer {
    MockServer::start(MockServerConfig { knobs, ..config() }).unwrap()
}

#[test]
fn chat_completion_route() {
    let mock = start();
    let res = roundtrip(
        mock.addr(),
        &post("/v1/chat/completions", &chat("gpt-4o-mini", false)),
    );
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let v = res.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 16);
    // "Hello, mock provider!" is 21 bytes -> 6 tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(mock.stats().requests(), 1);
    assert_eq!(mock.stats().prompt_tokens(), 6);
    assert_eq!(mock.stats().completion_tokens(), 16);
    assert_eq!(mock.stats().status_count(200), 1);
}

#[test]
fn completions_embeddings_and_models_routes() {
    let mock = start();
    let res = roundtrip(
        mock.addr(),
        &post(
            "/v1/completions",
            r#"{"model":"i","prompt":"Say this is a test"}"#,
        ),
    );
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["object"], "text_completion");

    let res = roundtrip(
        mock.addr(),
        &post("/v1/embeddings", r#"{"model":"e","input":["a","b","c"]}"#),
    );
    assert_eq!(res.status, 200);
    let v = res.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(v["data"][2]["embedding"].as_array().unwrap().len(), 16);

    let res = roundtrip(mock.addr(), b"GET /v1/models HTTP/1.1\r\nhost: m\r\n\r\n");
    assert_eq!(res.status, 200);
    let v = res.json();
    assert_eq!(v["object"], "list");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "mock-error-429"));
}

#[test]
fn unknown_route_and_wrong_method() {
    let mock = start();
    let res = roundtrip(mock.addr(), &post("/v1/nope", "{}"));
    assert_eq!(res.status, 404);
    assert_eq!(res.json()["error"]["type"], "not_found_error");
    let res = roundtrip(
        mock.addr(),
        b"GET /v1/chat/completions HTTP/1.1\r\nhost: m\r\n\r\n",
    );
    assert_eq!(res.status, 405);
    assert!(res.json()["error"]["message"].is_string());
    let res = roundtrip(mock.addr(), &post("/v1/chat/completions", "{\"model\":"));
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["type"], "invalid_request_error");
}

#[test]
fn streamed_chat_is_chunked_sse_with_done() {
    let mock = start();
    let res = roundtrip(mock.addr(), &post("/v1/chat/completions", &chat("m", true)));
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/event-stream"));
    assert_eq!(res.header("transfer-encoding"), Some("chunked"));
    let data = res.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    // role, 16 content, finish, usage, [DONE]
    assert_eq!(data.len(), 20);
    let usage: serde_json::Value = serde_json::from_str(&data[18]).unwrap();
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 16);
}

#[test]
fn model_error_statuses() {
    let mock = start();
    for (status, ty) in [
        (429, "rate_limit_exceeded"),
        (503, "server_error"),
        (500, "server_error"),
    ] {
        let model = format!("mock-error-{status}");
        for stream in [false, true] {
            let res = roundtrip(
                mock.addr(),
                &post("/v1/chat/completions", &chat(&model, stream)),
            );
            assert_eq!(res.status, status);
            assert_eq!(res.json()["error"]["type"], ty);
        }
        assert_eq!(mock.stats().status_count(status), 2);
    }
}

#[test]
fn model_reset_closes_without_a_byte() {
    let mock = start();
    let mut client = Client::connect(mock.addr());
    client.send(&post("/v1/chat/completions", &chat("mock-reset", false)));
    let (bytes, end) = client.read_to_end();
    assert!(bytes.is_empty(), "got {bytes:?}");
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(mock.stats().resets(), 1);
}

#[test]
fn model_cut_truncates_json_and_stream() {
    let mock = start();
    let mut client = Client::connect(mock.addr());
    client.send(&post("/v1/chat/completions", &chat("mock-cut", false)));
    let (bytes, end) = client.read_to_end();
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"));
    assert_eq!(body.len(), declared / 2);
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);

    let mut client = Client::connect(mock.addr());
    client.send(&post("/v1/chat/completions", &chat("mock-cut", true)));
    let (bytes, end) = client.read_to_end();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"));
    assert!(text.contains("chat.completion.chunk"));
    assert!(!text.contains("[DONE]"));
    assert!(!text.ends_with("0\r\n\r\n"), "no last chunk");
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);
}

#[test]
fn model_hang_sends_nothing_and_shutdown_still_completes() {
    let mock = start();
    let mut client = Client::connect(mock.addr());
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    client.send(&post("/v1/chat/completions", &chat("mock-hang", false)));
    let err = client.read_response().unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert_eq!(mock.stats().hangs(), 1);
    let began = Instant::now();
    mock.shutdown();
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    // The hanging connection was closed by the shutdown.
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (bytes, _) = client.read_to_end();
    assert!(bytes.is_empty());
}

#[test]
fn model_slow_and_slow_body() {
    let mock = start();
    let began = Instant::now();
    let res = roundtrip(
        mock.addr(),
        &post("/v1/chat/completions", &chat("mock-slow", false)),
    );
    assert_eq!(res.status, 200);
    assert!(began.elapsed() >= Duration::from_millis(200));

    let mut client = Client::connect(mock.addr());
    let began = Instant::now();
    client.send(&post(
        "/v1/chat/completions",
        &chat("mock-slow-body", false),
    ));
    let res = client.read_response().unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["object"], "chat.completion");
    // The body comes in 32-byte pieces 50 ms apart: well over 300 ms for ~500 bytes.
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn keep_alive_reuses_one_connection() {
    let mock = start();
    let mut client = Client::connect(mock.addr());
    for _ in 0..2 {
        client.send(&post("/v1/chat/completions", &chat("m", false)));
        assert_eq!(client.read_response().unwrap().status, 200);
    }
    assert_eq!(mock.stats().connections(), 1);
    assert_eq!(mock.stats().requests(), 2);
}

#[test]
fn pipelined_requests_answer_in_order() {
    let mock = start();
    let mut client = Client::connect(mock.addr());
    let mut batch = Vec::new();
    for model in ["first", "second", "third"] {
        batch.extend(post("/v1/chat/completions", &chat(model, false)));
    }
    batch.extend(post("/v1/embeddings", r#"{"model":"fourth","input":"x"}"#));
    batch.extend(post("/v1/chat/completions", &chat("fifth", true)));
    client.send(&batch);
    for model in ["first", "second", "third", "fourth"] {
        let res = client.read_response().unwrap();
        assert_eq!(res.status, 200);
        assert_eq!(res.json()["model"], model);
    }
    let res = client.read_response().unwrap();
    assert_eq!(res.sse_data().last().unwrap(), "[DONE]");
    assert!(res.sse_data()[0].contains("\"model\":\"fifth\""));
    assert_eq!(mock.stats().connections(), 1);
    assert_eq!(mock.stats().requests(), 5);
}

#[test]
fn chunked_request_body_and_expect_continue() {
    let mock = start();
    let body = chat("chunky", false);
    let (a, b) = body.split_at(10);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: m\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let res = roundtrip(mock.addr(), request.as_bytes());
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["model"], "chunky");

    let mut client = Client::connect(mock.addr());
    let body = chat("patient", false);
    client.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: m\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = client.read_response().unwrap();
    assert_eq!(interim.status, 100);
    client.send(body.as_bytes());
    let res = client.read_response().unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["model"], "patient");
}

#[test]
fn connection_close_is_honoured() {
    let mock = start();
    let mut client = Client::connect(mock.addr());
    let body = chat("m", false);
    client.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: m\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let res = client.read_response().unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.header("connection"), Some("close"));
    let (rest, end) = client.read_to_end();
    assert!(rest.is_empty() && end.is_ok());
}

#[test]
fn malformed_request_gets_400_and_close() {
    let mock = start();
    let mut client = Client::connect(mock.addr());
    client.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: m\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nhello");
    let res = client.read_response().unwrap();
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    let (_, end) = client.read_to_end();
    assert!(end.is_ok(), "closed after the error");
    assert_eq!(mock.stats().requests(), 0);
}

#[test]
fn records_the_last_authorization_header() {
    let mock = start();
    assert_eq!(mock.stats().last_authorization(), None);
    let body = chat("m", false);
    for key in ["Bearer sk-first", "Bearer sk-upstream"] {
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: m\r\nauthorization: {key}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(roundtrip(mock.addr(), request.as_bytes()).status, 200);
    }
    assert_eq!(
        mock.stats().last_authorization().as_deref(),
        Some("Bearer sk-upstream")
    );
}

#[test]
fn knob_fault_rate_is_deterministic() {
    let mock = start_with(MockKnobs {
        fault: Some(FaultSpec {
            kind: FaultKind::Status(503),
            rate: 0.25,
        }),
        ..MockKnobs::default()
    });
    let mut client = Client::connect(mock.addr());
    let mut statuses = Vec::new();
    for _ in 0..8 {
        client.send(&post("/v1/chat/completions", &chat("gpt-4o-mini", false)));
        statuses.push(client.read_response().unwrap().status);
    }
    assert_eq!(statuses, [200, 200, 200, 503, 200, 200, 200, 503]);
    assert_eq!(mock.stats().status_count(503), 2);
}

#[test]
fn knobs_shape_streams_and_latency() {
    let mock = start_with(MockKnobs {
        latency: Duration::from_millis(30),
        ttft: Duration::from_millis(20),
        chunks: 3,
        chunk_delay: Duration::from_millis(10),
        ..MockKnobs::default()
    });
    let began = Instant::now();
    let res = roundtrip(mock.addr(), &post("/v1/chat/completions", &chat("m", true)));
    let elapsed = began.elapsed();
    assert_eq!(res.sse_data().len(), 1 + 3 + 1 + 1 + 1);
    assert!(elapsed >= Duration::from_millis(70), "{elapsed:?}");
}

#[test]
fn threads_share_the_listener() {
    let mock = MockServer::start(MockServerConfig {
        threads: 3,
        ..config()
    })
    .unwrap();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let addr = mock.addr();
            std::thread::spawn(move || {
                roundtrip(addr, &post("/v1/chat/completions", &chat("m", false))).status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(mock.stats().requests(), 6);
    assert_eq!(mock.stats().connections(), 6);
}
