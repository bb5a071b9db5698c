//! The JSON access log end to end: one line per request with the schema of
//! config/REFERENCE.md, the same request id the client saw, tokens as the upstream counted
//! them, and never the key itself.

use serde_json::Value;
use tollgate_loadgen::mock::{MockServer, MockServerConfig};
use tollgate_tests::*;

#[test]
fn every_model_request_is_one_line_with_the_documented_fields() {
    let up = MockServer::start(MockServerConfig::default()).unwrap();
    let log = temp_store().join("access.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let extra = r#"
[[prices]]
model = "gpt-4o-mini"
input = 0.15
output = 0.60

[[teams]]
name = "ml"

[[keys]]
name = "demo"
key = "sk-tollgate-demo"
team = "ml"

[[keys]]
name = "capped"
key = "sk-tollgate-capped"
limits = { rpm = 1 }
"#;
    let server = format!("access_log = \"{}\"", log.display());
    let toml = upstream_gateway_toml(&up.base_url(), &server, extra);
    let gw = start(config(&toml, &[]), 1);
    let addr = gw.addr();
    let plain = post(
        addr,
        "/v1/chat/completions",
        Some("sk-tollgate-demo"),
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(plain.status, 200);
    let streamed = post(
        addr,
        "/v1/chat/completions",
        Some("sk-tollgate-demo"),
        &chat_body("gpt-4o-mini", true),
    );
    assert_eq!(streamed.status, 200);
    let capped = Some("sk-tollgate-capped");
    let body = chat_body("gpt-4o-mini", false);
    assert_eq!(
        post(addr, "/v1/chat/completions", capped, &body).status,
        200
    );
    assert_eq!(
        post(addr, "/v1/chat/completions", capped, &body).status,
        429
    );
    // Refused before a key is known, and no route at all: short lines.
    let no_key = post(addr, "/v1/chat/completions", Some("sk-nope"), &body);
    assert_eq!(no_key.status, 401);
    assert_eq!(Client::connect(addr).get("/nowhere", None).status, 404);
    gw.shutdown();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    let fields = [
        "time",
        "route",
        "request_id",
        "key",
        "key_prefix",
        "team",
        "model",
        "deployment",
        "status",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_usd",
        "latency_ms",
        "ttft_ms",
        "attempts",
    ];
    for line in &lines {
        let object = line.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut want = fields.to_vec();
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want, "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }
    let model_lines: Vec<&Value> = lines.iter().filter(|l| l["model"] != "").collect();
    assert_eq!(model_lines.len(), 4, "{text}");
    for line in &model_lines {
        assert_eq!(line["model"], "gpt-4o-mini");
        assert_eq!(line["route"], "chat_completions");
    }
    let unauthorized = lines.iter().find(|l| l["status"] == 401).unwrap();
    assert_eq!(unauthorized["route"], "chat_completions");
    assert_eq!(unauthorized["key"], "");
    assert_eq!(
        unauthorized["request_id"],
        no_key.header("x-request-id").unwrap()
    );
    let unknown = lines.iter().find(|l| l["status"] == 404).unwrap();
    assert_eq!(unknown["route"], "unknown");
    assert_eq!(unknown["attempts"], 0);
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id} in {text}"))
    };
    let first = by_id(plain.header("x-request-id").unwrap());
    assert_eq!(first["key"], "demo");
    assert_eq!(first["team"], "ml");
    assert_eq!(first["deployment"], "up/gpt-4o-mini");
    assert_eq!(first["status"], 200);
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["ttft_ms"], Value::Null);
    assert!(first["latency_ms"].as_f64().unwrap() > 0.0);
    let stream = by_id(streamed.header("x-request-id").unwrap());
    assert!(stream["ttft_ms"].as_f64().unwrap() > 0.0, "{stream}");
    // Tokens as the mock counted them, over the three requests it answered.
    let sum = |field: &str| {
        lines
            .iter()
            .map(|l| l[field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(up.stats().requests(), 3);
    assert_eq!(sum("input_tokens"), up.stats().prompt_tokens());
    assert_eq!(sum("output_tokens"), up.stats().completion_tokens());
    let refused = lines.iter().find(|l| l["status"] == 429).unwrap();
    assert_eq!(refused["key"], "capped");
    assert_eq!(refused["deployment"], "");
    assert_eq!(refused["attempts"], 0);
    // The key is named and abbreviated, never written out.
    assert!(!text.contains("sk-tollgate-demo"), "{text}");
    assert!(!text.contains("sk-tollgate-capped"), "{text}");
}
