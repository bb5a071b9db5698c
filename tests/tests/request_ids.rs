//! Request identity end to end: every response carries an `x-request-id` (the client's when it
//! is sane, else a new one), the upstream receives the same id, a client's W3C `traceparent`
//! reaches the upstream as a child span of the same trace (with its `tracestate`), and an
//! invalid one is not passed on.

use tollgate_loadgen::mock::{MockServer, MockServerConfig};
use tollgate_tests::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn gateway(up: &MockServer) -> tollgate_engine::Gateway {
    let keys = "[[keys]]\nname = \"demo\"\nkey = \"sk-tollgate-demo\"\n";
    start(
        config(&upstream_gateway_toml(&up.base_url(), "", keys), &[]),
        1,
    )
}

/// A chat completion with extra request headers.
fn chat(addr: std::net::SocketAddr, key: &str, headers: &[(&str, &str)]) -> Response {
    let body = chat_body("gpt-4o-mini", false);
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nauthorization: Bearer {key}\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = Client::connect(addr);
    client.send(request.as_bytes());
    client.read_response()
}

#[test]
fn every_response_names_its_request_and_the_upstream_hears_the_same_id_and_trace() {
    let up = MockServer::start(MockServerConfig::default()).unwrap();
    let gw = gateway(&up);
    let addr = gw.addr();

    // Made by the gateway when the client sends none: distinct per request.
    let a = chat(addr, "sk-tollgate-demo", &[]);
    let b = chat(addr, "sk-tollgate-demo", &[]);
    assert_eq!(a.status, 200);
    let (ida, idb) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert!(ida.starts_with("req-"), "{ida}");
    assert_ne!(ida, idb);
    // Errors carry it too; an id with a space is replaced, not echoed.
    let refused = chat(addr, "sk-wrong", &[("x-request-id", "has space")]);
    assert_eq!(refused.status, 401);
    assert!(refused.header("x-request-id").unwrap().starts_with("req-"));
    let unknown = Client::connect(addr).get("/nope", None);
    assert_eq!(unknown.status, 404);
    assert!(unknown.header("x-request-id").is_some());

    // The client's id and trace context go upstream; the span is the gateway's own.
    let traced = chat(
        addr,
        "sk-tollgate-demo",
        &[
            ("x-request-id", "client-id-42"),
            ("traceparent", PARENT),
            ("tracestate", "vendor=abc"),
        ],
    );
    assert_eq!(traced.status, 200);
    assert_eq!(traced.header("x-request-id"), Some("client-id-42"));
    let seen = up
        .stats()
        .last_traced()
        .expect("a traced request reached the mock");
    assert_eq!(seen.request_id.as_deref(), Some("client-id-42"));
    assert_eq!(seen.tracestate.as_deref(), Some("vendor=abc"));
    let parts: Vec<&str> = seen.traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{}", seen.traceparent);
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"));
    assert_eq!(parts[2].len(), 16);
    assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "a child span, not the client's"
    );
    assert_ne!(parts[2], "0000000000000000");

    // An invalid traceparent is not passed on (the mock records only traced requests).
    let before = up.stats().requests();
    let bad = chat(
        addr,
        "sk-tollgate-demo",
        &[
            ("x-request-id", "client-id-43"),
            ("traceparent", "00-xyz-01"),
        ],
    );
    assert_eq!(bad.status, 200);
    assert_eq!(up.stats().requests(), before + 1);
    assert_eq!(
        up.stats().last_traced().unwrap().request_id.as_deref(),
        Some("client-id-42"),
        "the untraced request left the record alone"
    );
    gw.shutdown();
}
