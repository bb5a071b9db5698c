//! The gateway with its built-in mock provider: routes, auth, models, streaming, errors and
//! graceful shutdown.

use std::time::Duration;

use tollgate_tests::*;

fn gateway(mock_knobs: &str) -> tollgate_engine::Gateway {
    start(config(&mock_gateway_toml("", mock_knobs), &[]), 1)
}

#[test]
fn chat_completion_through_builtin_mock() {
    let gw = gateway("completion_tokens = 7");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["usage"]["completion_tokens"], 7);
    gw.shutdown();
}

#[test]
fn completions_embeddings_and_models() {
    let gw = gateway("embedding_dims = 4");
    let r = post(
        gw.addr(),
        "/v1/completions",
        Some(DEMO_KEY),
        r#"{"model":"gpt-4o-mini","prompt":"Once upon"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "text_completion");

    let r = post(
        gw.addr(),
        "/v1/embeddings",
        Some(DEMO_KEY),
        r#"{"model":"gpt-4o-mini","input":"hello"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);

    let mut c = Client::connect(gw.addr());
    let r = c.get("/v1/models", Some(DEMO_KEY));
    assert_eq!(r.status, 200);
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&"gpt-4o-mini".to_owned()), "{ids:?}");
    assert_eq!(r.json()["data"][0]["owned_by"], "tollgate");
    assert_eq!(c.get("/v1/models", None).status, 401);
    gw.shutdown();
}

#[test]
fn auth_errors_are_401_with_openai_body() {
    let gw = gateway("");
    let body = chat_body("gpt-4o-mini", false);
    let r = post(gw.addr(), "/v1/chat/completions", None, &body);
    r.assert_error(401, "invalid_api_key");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some("sk-wrong-key-1234"),
        &body,
    );
    r.assert_error(401, "invalid_api_key");
    assert!(
        !r.text().contains("sk-wrong-key-1234"),
        "key echoed: {}",
        r.text()
    );

    // x-api-key works as the Anthropic SDK sends it.
    let mut c = Client::connect(gw.addr());
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nx-api-key: {DEMO_KEY}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().status, 200);
    gw.shutdown();
}

#[test]
fn request_errors_name_the_field() {
    let gw = gateway("");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-9", false),
    );
    r.assert_error(404, "model_not_found");
    assert_eq!(r.json()["error"]["param"], "model");

    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        r#"{"model":"gpt-4o-mini"}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "messages");

    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        r#"{"model":"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");

    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        r#"{"model":"gpt-4o-mini","stream":"yes","messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "stream");

    let mut c = Client::connect(gw.addr());
    let r = c.get("/v1/nothing-here", None);
    r.assert_error(404, "unknown_url");
    let r = c.get("/v1/chat/completions", Some(DEMO_KEY));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    // Errors that keep framing intact keep the connection.
    assert_eq!(c.get("/health/live", None).status, 200);
    gw.shutdown();
}

#[test]
fn stream_is_forwarded_event_by_event_in_order() {
    // 8 chunks 40 ms apart: the first content must reach the client long before the last.
    let gw = gateway("chunks = 8\nchunk_delay = \"40ms\"");
    let mut c = Client::connect(gw.addr());
    c.send(&post_bytes(
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", true),
    ));
    let mut arrivals = Vec::new();
    let r = c.read_response_with(|t, _| arrivals.push(t));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    // The gateway asked the upstream for usage; this client did not, so it sees no usage event.
    assert!(chunks
        .iter()
        .all(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.is_empty());
    assert!(
        arrivals.len() >= 8,
        "events arrived in {} pieces",
        arrivals.len()
    );
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        spread >= Duration::from_millis(200),
        "stream was buffered: {arrivals:?}"
    );
    // Keep-alive after a chunked stream.
    assert_eq!(c.get("/health/live", None).status, 200);
    gw.shutdown();
}

#[test]
fn stream_usage_is_passed_when_the_client_asks() {
    let gw = gateway("chunks = 3");
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(gw.addr(), "/v1/chat/completions", Some(DEMO_KEY), body);
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    gw.shutdown();
}

#[test]
fn upstream_failures_are_clear_errors() {
    let toml = mock_gateway_toml("", "chunks = 6");
    // Short first-byte timeout for the hanging model.
    let toml = toml.replace(
        "kind = \"mock\"",
        "kind = \"mock\"\nfirst_byte_timeout = \"300ms\"\nidle_timeout = \"300ms\"",
    );
    let gw = start(config(&toml, &[]), 1);
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

    let r = post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("boom", false),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.json()["error"]["message"].is_string());

    // A stream cut by the upstream ends with an SSE error event, never silently.
    let r = post(
        addr,
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("cut", true),
    );
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_closed", "{last}");
    assert!(data.len() > 2, "some content came before the cut: {data:?}");
    gw.shutdown();
}

#[test]
fn health_endpoints() {
    let gw = gateway("");
    let mut c = Client::connect(gw.addr());
    let r = c.get("/health/live", None);
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("live")));
    let r = c.get("/health/ready", None);
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );
    gw.shutdown();
}

#[test]
fn shutdown_finishes_in_flight_streams() {
    let gw = gateway("chunks = 6\nchunk_delay = \"50ms\"");
    let addr = gw.addr();
    let client = std::thread::spawn(move || {
        post(
            addr,
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body("gpt-4o-mini", true),
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    gw.shutdown();
    let r = client.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        r.header("connection"),
        None,
        "head was sent before the drain began"
    );
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn streams_still_running_when_the_grace_runs_out_end_with_an_error_and_are_recorded() {
    // A 3-second stream, a 200 ms grace.
    let mut cfg = config(
        &mock_gateway_toml(
            "shutdown_grace = \"200ms\"",
            "chunks = 30\nchunk_delay = \"100ms\"",
        ),
        &[],
    );
    let store = temp_store();
    cfg.store.path = store.clone();
    let gw = start(cfg, 1);
    let addr = gw.addr();
    let client = std::thread::spawn(move || {
        post(
            addr,
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body("gpt-4o-mini", true),
        )
    });
    std::thread::sleep(Duration::from_millis(150));
    let stopping = std::time::Instant::now();
    gw.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_millis(1500),
        "shutdown waited for the stream: {:?}",
        stopping.elapsed()
    );
    let r = client.join().unwrap();
    assert_eq!(r.status, 200);
    let events = sse_data(&r.body);
    let last = events.last().unwrap();
    assert!(last.contains("\"code\":\"shutting_down\""), "{events:?}");
    assert!(events.len() >= 3, "content before the cut: {events:?}");
    // Settled and on the ledger, like any stream that ended early.
    let store = tollgate_engine::store::sled_store::SledStore::open(&store).unwrap();
    let records = tollgate_engine::store::Store::records(&store, 0, u64::MAX, 10).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].output_tokens > 0, "{:?}", records[0]);
}

#[test]
fn two_workers_share_the_port() {
    let gw = start(config(&mock_gateway_toml("", ""), &[]), 2);
    for _ in 0..20 {
        let r = post(
            gw.addr(),
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body("gpt-4o-mini", false),
        );
        assert_eq!(r.status, 200);
    }
    let served: u64 = gw
        .workers()
        .iter()
        .map(|w| w.requests.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(served, 20);
    gw.shutdown();
}

#[test]
fn connections_over_the_worker_limit_are_closed() {
    let gw = start(
        config(
            &mock_gateway_toml("max_connections_per_worker = 2", ""),
            &[],
        ),
        1,
    );
    let mut a = Client::connect(gw.addr());
    let mut b = Client::connect(gw.addr());
    assert_eq!(a.get("/health/live", None).status, 200);
    assert_eq!(b.get("/health/live", None).status, 200);
    let mut c = Client::connect(gw.addr());
    assert!(
        c.is_closed(Duration::from_secs(2)),
        "third connection must be refused"
    );
    drop(a);
    // Once the server has seen the close, new connections are served again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = Client::connect(gw.addr());
        d.send(b"GET /health/live HTTP/1.1\r\nhost: t\r\n\r\n");
        if !d.is_closed(Duration::from_millis(200)) {
            assert_eq!(d.read_response().status, 200);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
    }
    let refused: u64 = gw
        .workers()
        .iter()
        .map(|w| {
            w.connections_refused
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(refused >= 1, "refused {refused}");
    drop(b);
    gw.shutdown();
}

#[test]
fn legacy_epoll_driver_serves_the_same() {
    let toml = mock_gateway_toml("io_driver = \"legacy\"", "chunks = 4").replace(
        "kind = \"mock\"",
        "kind = \"mock\"\nfirst_byte_timeout = \"200ms\"",
    );
    let gw = start(config(&toml, &[]), 2);
    for w in gw.workers() {
        let driver = w.driver.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(driver, tollgate_engine::Driver::Legacy as u8);
    }
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", true),
    );
    assert_eq!(r.status, 200);
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("hang", false),
    );
    assert_eq!(r.status, 504, "timers work on the legacy driver too");
    gw.shutdown();
}
