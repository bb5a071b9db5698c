//! Every translation end to end through real sockets: OpenAI-format and Anthropic-format
//! clients in front of OpenAI, Azure, Anthropic, Gemini and Bedrock upstreams (one
//! `tollgate-mock` speaks each vendor's native format), including streams, tool-call round
//! trips, error mapping and fallback across providers.

use tollgate_loadgen::mock::{MockServer, MockServerConfig};
use tollgate_tests::*;

const MODELS: &[(&str, &str)] = PROVIDER_MODELS;

fn gateway(up: &MockServer) -> tollgate_engine::Gateway {
    start(
        config(&all_providers_toml(&format!("http://{}", up.addr())), &[]),
        1,
    )
}

fn mock() -> MockServer {
    MockServer::start(MockServerConfig::default()).expect("mock starts")
}

const TOOLS: &str = r#"[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]"#;

#[test]
fn openai_clients_reach_every_provider() {
    let up = mock();
    let gw = gateway(&up);
    for (model, deployment) in MODELS {
        let r = post(
            gw.addr(),
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body(model, false),
        );
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(
            r.header("x-tollgate-deployment"),
            Some(*deployment),
            "{model}"
        );
        let v = r.json();
        assert_eq!(v["object"], "chat.completion", "{model}: {v}");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant", "{model}");
        assert!(
            v["choices"][0]["message"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            "{model}: {v}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{model}: {v}");
        assert!(
            v["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{model}: {v}"
        );
        assert!(
            v["created"].as_u64().unwrap() > 1_600_000_000,
            "{model}: {v}"
        );
    }
    // Each provider was called with its own credential style.
    assert_eq!(up.stats().requests(), MODELS.len() as u64);
    gw.shutdown();
    up.shutdown();
}

#[test]
fn openai_clients_stream_from_every_provider() {
    let up = mock();
    let gw = gateway(&up);
    for (model, _) in MODELS {
        let r = post(
            gw.addr(),
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body(model, true),
        );
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let data = sse_data(&r.body);
        assert_eq!(
            data.last().map(String::as_str),
            Some("[DONE]"),
            "{model}: {data:?}"
        );
        let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(
            chunks.iter().all(|c| c.get("error").is_none()),
            "{model}: {data:?}"
        );
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["role"], "assistant",
            "{model}: {data:?}"
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(!text.is_empty(), "{model}: {data:?}");
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "stop"),
            "{model}: {data:?}"
        );
        // No usage event: this client did not ask for one.
        assert!(
            chunks
                .iter()
                .all(|c| !c["choices"].as_array().unwrap().is_empty()),
            "{model}: {data:?}"
        );
    }
    gw.shutdown();
    up.shutdown();
}

#[test]
fn streamed_usage_arrives_when_asked_for() {
    let up = mock();
    let gw = gateway(&up);
    for (model, _) in MODELS {
        let body = format!(
            r#"{{"model":"{model}","stream":true,"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let r = post(gw.addr(), "/v1/chat/completions", Some(DEMO_KEY), &body);
        let data = sse_data(&r.body);
        let usage: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
        assert!(
            usage["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
            "{model}: {data:?}"
        );
    }
    gw.shutdown();
    up.shutdown();
}

#[test]
fn tool_call_round_trip_through_every_provider() {
    let up = mock();
    let gw = gateway(&up);
    for (model, _) in MODELS {
        for stream in [false, true] {
            let ask = format!(
                r#"{{"model":"{model}","stream":{stream},"tools":{TOOLS},"messages":[{{"role":"user","content":"Weather in Paris?"}}]}}"#
            );
            let r = post(gw.addr(), "/v1/chat/completions", Some(DEMO_KEY), &ask);
            assert_eq!(r.status, 200, "{model} stream={stream}: {}", r.text());
            let (id, name, args) = if stream {
                let data = sse_data(&r.body);
                let mut id = String::new();
                let mut name = String::new();
                let mut args = String::new();
                for d in &data[..data.len() - 1] {
                    let v: serde_json::Value = serde_json::from_str(d).unwrap();
                    if let Some(calls) = v["choices"][0]["delta"]["tool_calls"].as_array() {
                        for c in calls {
                            if let Some(s) = c["id"].as_str() {
                                id = s.to_owned();
                            }
                            if let Some(s) = c["function"]["name"].as_str() {
                                name = s.to_owned();
                            }
                            if let Some(s) = c["function"]["arguments"].as_str() {
                                args.push_str(s);
                            }
                        }
                    }
                }
                (id, name, args)
            } else {
                let v = r.json();
                let call = &v["choices"][0]["message"]["tool_calls"][0];
                assert_eq!(
                    v["choices"][0]["finish_reason"], "tool_calls",
                    "{model}: {v}"
                );
                (
                    call["id"].as_str().unwrap_or_default().to_owned(),
                    call["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    call["function"]["arguments"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            };
            assert_eq!(name, "get_weather", "{model} stream={stream}");
            let args: serde_json::Value = serde_json::from_str(&args)
                .unwrap_or_else(|e| panic!("{model} stream={stream}: arguments {args:?}: {e}"));
            assert_eq!(
                args,
                serde_json::json!({"city":"Paris"}),
                "{model} stream={stream}"
            );
            assert!(!id.is_empty(), "{model} stream={stream}");

            let answer = format!(
                r#"{{"model":"{model}","stream":false,"tools":{TOOLS},"messages":[{{"role":"user","content":"Weather in Paris?"}},{{"role":"assistant","content":null,"tool_calls":[{{"id":"{id}","type":"function","function":{{"name":"get_weather","arguments":"{{\"city\":\"Paris\"}}"}}}}]}},{{"role":"tool","tool_call_id":"{id}","content":"sunny"}}]}}"#
            );
            let r = post(gw.addr(), "/v1/chat/completions", Some(DEMO_KEY), &answer);
            assert_eq!(r.status, 200, "{model}: {}", r.text());
            let text = r.json()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(text.contains("sunny"), "{model}: {text:?}");
        }
    }
    gw.shutdown();
    up.shutdown();
}

fn messages_body(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":256,"stream":{stream},"system":"Be brief.","messages":[{{"role":"user","content":"Say hello."}}]}}"#
    )
}

fn post_messages(addr: std::net::SocketAddr, body: &str) -> Response {
    let mut c = Client::connect(addr);
    c.send(
        format!(
            "POST /v1/messages HTTP/1.1\r\nhost: t\r\nx-api-key: {DEMO_KEY}\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response()
}

#[test]
fn anthropic_clients_reach_every_provider() {
    let up = mock();
    let gw = gateway(&up);
    for (model, deployment) in MODELS {
        let r = post_messages(gw.addr(), &messages_body(model, false));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.header("x-tollgate-deployment"), Some(*deployment));
        let v = r.json();
        assert_eq!(v["type"], "message", "{model}: {v}");
        assert_eq!(v["role"], "assistant", "{model}: {v}");
        assert_eq!(v["content"][0]["type"], "text", "{model}: {v}");
        assert!(
            v["content"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{model}: {v}"
        );
        assert_eq!(v["stop_reason"], "end_turn", "{model}: {v}");
        assert!(
            v["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}: {v}"
        );

        let r = post_messages(gw.addr(), &messages_body(model, true));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let text = r.text();
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(events.first(), Some(&"message_start"), "{model}: {text}");
        assert_eq!(events.last(), Some(&"message_stop"), "{model}: {text}");
        assert!(events.contains(&"content_block_delta"), "{model}: {text}");
        assert!(events.contains(&"message_delta"), "{model}: {text}");
    }
    gw.shutdown();
    up.shutdown();
}

#[test]
fn anthropic_errors_use_anthropic_shape() {
    let up = mock();
    let gw = gateway(&up);
    let r = post_messages(gw.addr(), r#"{"model":"claude","messages":[]}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert!(r.json()["error"]["message"].is_string());
    let r = post_messages(gw.addr(), &messages_body("nope", false));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    gw.shutdown();
    up.shutdown();
}

#[test]
fn provider_errors_map_and_fall_back_across_providers() {
    let up = mock();
    let gw = gateway(&up);
    // Anthropic says overloaded (529): the request falls back to Gemini.
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("claude-overloaded", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-tollgate-deployment"),
        Some("gemini/gemini-2.5-flash")
    );
    assert_eq!(r.header("x-tollgate-attempts"), Some("2"));
    // Anthropic's 429 reaches an OpenAI client as an OpenAI rate-limit error.
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("claude-limited", false),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        r.json()["error"]["type"],
        "rate_limit_error",
        "{}",
        r.text()
    );
    gw.shutdown();
    up.shutdown();
}

#[test]
fn the_providers_example_serves_every_model_against_local_mocks() {
    let up = mock();
    let root = format!("http://{}", up.addr());
    let v1 = format!("{root}/v1");
    let toml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/examples/providers.toml"
    ))
    .unwrap();
    let env = [
        ("OPENAI_BASE_URL", v1.as_str()),
        ("OPENAI_API_KEY", "sk-test"),
        ("ANTHROPIC_BASE_URL", root.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ("GEMINI_BASE_URL", root.as_str()),
        ("GEMINI_API_KEY", "gemini-test"),
        ("AZURE_OPENAI_ENDPOINT", root.as_str()),
        ("AZURE_OPENAI_API_KEY", "azure-test"),
        ("BEDROCK_ENDPOINT", root.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret-test"),
    ];
    let gw = start(config(&toml, &env), 1);
    for model in [
        "gpt-4o-mini",
        "claude-sonnet",
        "gemini-flash",
        "azure-gpt",
        "bedrock-claude",
    ] {
        let r = post(
            gw.addr(),
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body(model, false),
        );
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.json()["object"], "chat.completion", "{model}");
    }
    // `resilient` starts on a port where nothing listens and falls back to gpt-4o-mini.
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("resilient", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-tollgate-deployment"),
        Some("openai/gpt-4o-mini")
    );
    gw.shutdown();
    up.shutdown();
}
