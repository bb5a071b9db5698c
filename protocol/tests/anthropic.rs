//! Anthropic adapter, front door and mock, checked against recorded-shape fixtures
//! (`tests/fixtures/anthropic/`, see its README) and against each other: the adapter decodes
//! what the mock plans, the front door's encoder output decodes as valid Anthropic SSE, and an
//! Anthropic request survives the trip through the canonical model and back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use serde_json::{json, Value};
use tollgate_protocol::anthropic_api::{
    decode_request, encode_error, encode_error_event, encode_response, error_type_for,
    inspect_native, native_usage, rewrite_model, MessagesStreamEncoder, NativeUsageTracker,
};
use tollgate_protocol::chat::{
    ChatChunk, ChatRequest, ChatResponse, ChatUsage, Content, ContentPart, FinishReason,
    FunctionCall, FunctionDef, ImageUrl, Message, NamedToolChoice, ResponseFormat, Role, Stop,
    Tool, ToolCall, ToolChoice,
};
use tollgate_protocol::mock::{FaultKind, FaultSpec, MockKnobs, MockPlan, MockStep};
use tollgate_protocol::providers::anthropic::{AnthropicAdapter, JSON_OBJECT_INSTRUCTION};
use tollgate_protocol::providers::anthropic_mock;
use tollgate_protocol::providers::{Adapter, ErrorKind, ProviderError, Target};
use tollgate_protocol::sse::SseDecoder;

mod common;
use common::plan_body;

// === helpers ===

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/anthropic/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn target<'a>(model: &'a str) -> Target<'a> {
    Target {
        authority: "api.anthropic.com",
        base_path: "",
        model,
        api_key: Some("sk-ant-test"),
        api_version: None,
        aws: None,
        now_unix: 0,
    }
}

fn encode(req: &ChatRequest) -> Value {
    let up = AnthropicAdapter
        .encode_request(req, &target("claude-sonnet-4-20250514"))
        .unwrap();
    serde_json::from_slice(&up.body).unwrap()
}

fn user(text: &str) -> Message {
    Message::text(Role::User, text)
}

fn request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: "claude".into(),
        messages,
        ..ChatRequest::default()
    }
}

fn weather_tool() -> Tool {
    Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: "get_weather".into(),
            description: Some("Get the weather".into()),
            parameters: Some(json!({"type":"object","properties":{"city":{"type":"string"}}})),
            strict: None,
        },
    }
}

/// Decodes a whole stream fed in the given pieces.
fn decode_pieces(pieces: &[&[u8]]) -> (Vec<ChatChunk>, Result<bool, ProviderError>) {
    let mut dec = AnthropicAdapter.stream_decoder("claude-client");
    let mut out = Vec::new();
    for p in pieces {
        if let Err(e) = dec.feed(p, &mut out) {
            return (out, Err(e));
        }
    }
    let done = dec.finish(&mut out);
    (out, done)
}

fn decode_stream(bytes: &[u8]) -> (Vec<ChatChunk>, Result<bool, ProviderError>) {
    decode_pieces(&[bytes])
}

/// What a stream of chunks adds up to.
#[derive(Debug, Default, PartialEq)]
struct Assembled {
    role_first: bool,
    text: String,
    reasoning: String,
    /// (id, name, arguments) per tool index.
    calls: Vec<(String, String, String)>,
    finish: Option<FinishReason>,
    usage: Option<ChatUsage>,
    usage_last: bool,
}

fn assemble(chunks: &[ChatChunk]) -> Assembled {
    let mut a = Assembled {
        role_first: chunks
            .first()
            .is_some_and(|c| c.choices[0].delta.role == Some(Role::Assistant)),
        usage_last: chunks
            .last()
            .is_some_and(|c| c.usage.is_some() && c.choices.is_empty()),
        ..Assembled::default()
    };
    for c in chunks {
        if let Some(u) = c.usage {
            a.usage = Some(u);
        }
        for ch in &c.choices {
            let d = &ch.delta;
            a.text.push_str(d.content.as_deref().unwrap_or(""));
            a.reasoning
                .push_str(d.reasoning_content.as_deref().unwrap_or(""));
            for tc in d.tool_calls.iter().flatten() {
                let i = tc.index as usize;
                if a.calls.len() <= i {
                    a.calls.resize(i + 1, Default::default());
                }
                if let Some(id) = &tc.id {
                    a.calls[i].0.clone_from(id);
                }
                if let Some(n) = &tc.function.name {
                    a.calls[i].1.clone_from(n);
                }
                a.calls[i]
                    .2
                    .push_str(tc.function.arguments.as_deref().unwrap_or(""));
            }
            if ch.finish_reason.is_some() {
                assert!(a.finish.is_none(), "one finish chunk");
                a.finish = ch.finish_reason;
            }
        }
    }
    a
}

/// (event name, data JSON) of every SSE block.
fn sse_events(bytes: &[u8]) -> Vec<(String, Value)> {
    let mut dec = SseDecoder::new(1 << 20);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        let data = f.data.unwrap();
        out.push((f.event.unwrap(), serde_json::from_str(&data).unwrap()));
    }
    assert!(!dec.finish(&mut buf), "no trailing partial block");
    out
}

// === adapter: request ===

#[test]
fn request_head_and_defaults() {
    let req = request(vec![user("hi")]);
    let up = AnthropicAdapter
        .encode_request(&req, &target("claude-sonnet-4-20250514"))
        .unwrap();
    assert_eq!(up.method, "POST");
    assert_eq!(up.path, "/v1/messages");
    let header = |name: &str| {
        up.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("host"), Some("api.anthropic.com"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(header("accept"), None);
    assert!(!up.headers.iter().any(|(n, _)| *n == "authorization"));
    let body: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        })
    );

    let mut req = request(vec![user("hi")]);
    req.stream = Some(true);
    req.max_completion_tokens = Some(77);
    req.max_tokens = Some(5);
    let mut t = target("m");
    t.base_path = "/anthropic";
    t.api_version = Some("2024-01-01");
    let up = AnthropicAdapter.encode_request(&req, &t).unwrap();
    assert_eq!(up.path, "/anthropic/v1/messages");
    assert!(up
        .headers
        .contains(&("anthropic-version", "2024-01-01".to_owned())));
    assert!(up
        .headers
        .contains(&("accept", "text/event-stream".to_owned())));
    let body: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(body["max_tokens"], 77);
    assert_eq!(body["stream"], true);
}

#[test]
fn request_system_merging_and_sampling() {
    let mut req = request(vec![
        Message::text(Role::System, "Be brief."),
        user("one"),
        user("two"),
        Message::text(Role::Developer, "Use French."),
        Message::text(Role::Assistant, "un"),
        Message::text(Role::Assistant, "deux"),
        user("three"),
    ]);
    req.stop = Some(Stop::One("END".into()));
    req.temperature = Some(0.3);
    req.top_p = Some(0.8);
    req.user = Some("user-42".into());
    req.extra.insert("top_k".into(), json!(7));
    req.extra.insert("seed".into(), json!(1));
    let body = encode(&req);
    assert_eq!(body["system"], "Be brief.\n\nUse French.");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type":"text","text":"one"},{"type":"text","text":"two"}]},
            {"role": "assistant", "content": [{"type":"text","text":"un"},{"type":"text","text":"deux"}]},
            {"role": "user", "content": [{"type":"text","text":"three"}]},
        ])
    );
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(body["temperature"], 0.3);
    assert_eq!(body["top_p"], 0.8);
    assert_eq!(body["top_k"], 7);
    assert_eq!(body["metadata"], json!({"user_id": "user-42"}));
    assert!(
        body.get("seed").is_none(),
        "OpenAI-only extras are not sent"
    );

    req.extra.insert("n".into(), json!(1));
    req.max_tokens = None;
    req.extra.insert(
        "thinking".into(),
        json!({"type": "enabled", "budget_tokens": 10000}),
    );
    let body = encode(&req);
    assert_eq!(body["thinking"]["budget_tokens"], 10000);
    assert_eq!(body["max_tokens"], 14096, "room for the thinking budget");

    req.temperature = Some(1.5);
    let err = AnthropicAdapter
        .encode_request(&req, &target("m"))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("temperature"));
    req.temperature = None;

    req.extra.insert("n".into(), json!(2));
    let err = AnthropicAdapter
        .encode_request(&req, &target("m"))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("n"));
}

#[test]
fn request_images() {
    let mut msg = user("");
    msg.content = Some(Content::Parts(vec![
        ContentPart::Text {
            text: "what is this?".into(),
        },
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: "data:image/png;base64,iVBORw0KGgo=".into(),
                detail: Some("high".into()),
            },
        },
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: "https://example.com/cat.jpg".into(),
                detail: None,
            },
        },
    ]));
    let body = encode(&request(vec![msg.clone()]));
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type":"text","text":"what is this?"},
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
            {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}},
        ])
    );
    let set_third = |msg: &mut Message, part: ContentPart| {
        let Some(Content::Parts(parts)) = &mut msg.content else {
            unreachable!()
        };
        parts[2] = part;
    };
    set_third(
        &mut msg,
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: "ftp://x/y.png".into(),
                detail: None,
            },
        },
    );
    let err = AnthropicAdapter
        .encode_request(&request(vec![msg.clone()]), &target("m"))
        .unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[0].content[2].image_url.url")
    );
    set_third(
        &mut msg,
        ContentPart::Other(json!({"type":"input_audio","input_audio":{"data":"x"}})),
    );
    let err = AnthropicAdapter
        .encode_request(&request(vec![msg]), &target("m"))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[0].content[2]"));
}

#[test]
fn request_passes_documents_from_the_front_door() {
    let body = br#"{"model":"claude","max_tokens":100,"messages":[{"role":"user","content":[
        {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0xLjQ="}},
        {"type":"text","text":"Summarize this."}]}]}"#;
    let req = decode_request(body).unwrap();
    let sent = encode(&req);
    assert_eq!(
        sent["messages"][0]["content"],
        json!([
            {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0xLjQ="}},
            {"type":"text","text":"Summarize this."},
        ])
    );
    assert_eq!(sent["max_tokens"], 100);
}

#[test]
fn request_tools_calls_and_results() {
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.content = None;
    assistant.reasoning_content = Some("thinking without a signature is not sent".into());
    assistant.tool_calls = Some(vec![
        ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            },
        },
        ToolCall {
            id: "call_2".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: String::new(),
            },
        },
    ]);
    let mut r1 = Message::text(Role::Tool, "15C");
    r1.tool_call_id = Some("call_1".into());
    let mut r2 = Message::text(Role::Tool, "");
    r2.content = Some(Content::Parts(vec![ContentPart::Text {
        text: "9C".into(),
    }]));
    r2.tool_call_id = Some("call_2".into());
    let mut req = request(vec![
        user("weather?"),
        assistant.clone(),
        r1,
        r2,
        user("thanks"),
    ]);
    req.tools = Some(vec![weather_tool()]);
    req.tool_choice = Some(ToolChoice::Mode("required".into()));
    req.parallel_tool_calls = Some(false);
    let body = encode(&req);
    assert_eq!(
        body["tools"],
        json!([{"name":"get_weather","description":"Get the weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type":"any","disable_parallel_tool_use":true})
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role":"user","content":[{"type":"text","text":"weather?"}]},
            {"role":"assistant","content":[
                {"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
                {"type":"tool_use","id":"call_2","name":"get_weather","input":{}},
            ]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"call_1","content":"15C"},
                {"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"9C"}]},
                {"type":"text","text":"thanks"},
            ]},
        ])
    );

    for (choice, expected) in [
        (ToolChoice::Mode("auto".into()), json!({"type":"auto"})),
        (ToolChoice::Mode("none".into()), json!({"type":"none"})),
        (
            ToolChoice::Named(NamedToolChoice {
                kind: "function".into(),
                function: tollgate_protocol::chat::FunctionName {
                    name: "get_weather".into(),
                },
            }),
            json!({"type":"tool","name":"get_weather"}),
        ),
    ] {
        let mut r = request(vec![user("x")]);
        r.tools = Some(vec![weather_tool()]);
        r.tool_choice = Some(choice);
        assert_eq!(encode(&r)["tool_choice"], expected);
    }

    // Invalid argument JSON names the exact parameter.
    let mut bad = assistant;
    bad.tool_calls.as_mut().unwrap()[1].function.arguments = "{\"city\":".into();
    let err = AnthropicAdapter
        .encode_request(&request(vec![user("x"), bad]), &target("m"))
        .unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[1].tool_calls[1].function.arguments")
    );
    // A tool message must say which call it answers.
    let err = AnthropicAdapter
        .encode_request(
            &request(vec![user("x"), Message::text(Role::Tool, "r")]),
            &target("m"),
        )
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[1].tool_call_id"));
}

#[test]
fn request_response_formats() {
    let mut req = request(vec![Message::text(Role::System, "Be terse."), user("x")]);
    req.response_format = Some(ResponseFormat::JsonObject);
    let body = encode(&req);
    assert_eq!(
        body["system"],
        format!("Be terse.\n\n{JSON_OBJECT_INSTRUCTION}")
    );

    let schema =
        json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]});
    req.response_format = Some(ResponseFormat::JsonSchema {
        json_schema: json!({"name":"weather_report","schema":schema,"strict":true}),
    });
    let body = encode(&req);
    assert_eq!(body["system"], "Be terse.");
    assert_eq!(body["tools"][0]["name"], "json_response_weather_report");
    assert_eq!(body["tools"][0]["input_schema"], schema);
    assert_eq!(
        body["tool_choice"],
        json!({"type":"tool","name":"json_response_weather_report"})
    );
    // With client tools as well, the model must call some tool: one of theirs or the answer.
    req.tools = Some(vec![weather_tool()]);
    let body = encode(&req);
    assert_eq!(body["tools"].as_array().unwrap().len(), 2);
    assert_eq!(body["tool_choice"], json!({"type":"any"}));

    // The forced tool's input comes back as the message text.
    let resp = AnthropicAdapter
        .decode_response(&fixture("response_json_schema.json"), "gpt-4o")
        .unwrap();
    let msg = &resp.choices[0].message;
    assert_eq!(msg.tool_calls, None);
    let text: Value = serde_json::from_str(&msg.text_content()).unwrap();
    assert_eq!(text, json!({"city":"Paris","temperature_c":15}));
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
}

// === adapter: responses ===

#[test]
fn responses_decode() {
    let a = AnthropicAdapter;
    let r = a
        .decode_response(&fixture("response_text.json"), "claude-client")
        .unwrap();
    assert_eq!(r.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(r.object, "chat.completion");
    assert_eq!(r.model, "claude-client");
    assert_eq!(
        r.choices[0].message.text_content(),
        "Hello! How can I help you today?"
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(r.usage, Some(ChatUsage::new(12, 10, 0)));

    let r = a
        .decode_response(&fixture("response_tool_use.json"), "m")
        .unwrap();
    let m = &r.choices[0].message;
    assert_eq!(
        m.text_content(),
        "I'll check the current weather in San Francisco for you."
    );
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(calls[0].kind, "function");
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(
        calls[0].function.arguments,
        r#"{"location":"San Francisco, CA","unit":"celsius"}"#
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));

    let r = a
        .decode_response(&fixture("response_thinking.json"), "m")
        .unwrap();
    let m = &r.choices[0].message;
    assert_eq!(
        m.reasoning_content.as_deref(),
        Some("To approach this, let me think about what I know about prime numbers...")
    );
    assert_eq!(
        m.text_content(),
        "Yes, there are infinitely many prime numbers."
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Length));

    let r = a
        .decode_response(&fixture("response_cached.json"), "m")
        .unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = r.usage.unwrap();
    assert_eq!(u.prompt_tokens, 21 + 188_086 + 1500);
    assert_eq!(u.cached_tokens(), 1500);
    assert_eq!(u.completion_tokens, 393);
    assert_eq!(u.total_tokens, 21 + 188_086 + 1500 + 393);

    let r = a
        .decode_response(&fixture("response_refusal.json"), "m")
        .unwrap();
    assert_eq!(
        r.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );

    let e = a.decode_response(b"{\"content\": 5}", "m").unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert_eq!(e.status, 502);
}

#[test]
fn errors_map() {
    let a = AnthropicAdapter;
    for (file, status, kind, retryable) in [
        ("error_rate_limit.json", 429, ErrorKind::RateLimited, true),
        ("error_overloaded.json", 529, ErrorKind::Unavailable, true),
        ("error_api.json", 500, ErrorKind::Unavailable, true),
        (
            "error_invalid_request.json",
            400,
            ErrorKind::InvalidRequest,
            false,
        ),
        (
            "error_context_length.json",
            400,
            ErrorKind::ContextLength,
            false,
        ),
        (
            "error_authentication.json",
            401,
            ErrorKind::Authentication,
            false,
        ),
        (
            "error_permission.json",
            403,
            ErrorKind::Authentication,
            false,
        ),
        ("error_not_found.json", 404, ErrorKind::NotFound, false),
    ] {
        let e = a.map_error(status, &fixture(file));
        assert_eq!(e.kind, kind, "{file}");
        assert_eq!(e.status, status, "{file}");
        assert_eq!(e.is_retryable(), retryable, "{file}");
        let v: Value = serde_json::from_slice(&fixture(file)).unwrap();
        assert_eq!(e.message, v["error"]["message"], "{file}");
    }
    let e = a.map_error(503, b"");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("503"));
}

// === adapter: streams ===

#[test]
fn stream_text_fixture() {
    let (chunks, done) = decode_stream(&fixture("stream_text.sse"));
    assert_eq!(done, Ok(true));
    let a = assemble(&chunks);
    assert!(a.role_first && a.usage_last);
    assert_eq!(a.text, "Hello!");
    assert_eq!(a.finish, Some(FinishReason::Stop));
    assert_eq!(a.usage, Some(ChatUsage::new(25, 15, 0)));
    for c in &chunks {
        assert_eq!(c.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(c.model, "claude-client");
        assert_eq!(c.object, "chat.completion.chunk");
    }
    // role, Hello, !, finish, usage
    assert_eq!(chunks.len(), 5);
    assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some(""));
    let finish = &chunks[3].choices[0];
    assert_eq!(finish.delta, Default::default());
}

#[test]
fn stream_tool_use_fixture() {
    let (chunks, done) = decode_stream(&fixture("stream_tool_use.sse"));
    assert_eq!(done, Ok(true));
    let a = assemble(&chunks);
    assert_eq!(
        a.text,
        "Okay, let's check the weather for San Francisco, CA:"
    );
    assert_eq!(
        a.calls,
        vec![(
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6".to_owned(),
            "get_weather".to_owned(),
            r#"{"location": "San Francisco, CA", "unit": "fahrenheit"}"#.to_owned()
        )]
    );
    assert_eq!(a.finish, Some(FinishReason::ToolCalls));
    assert_eq!(a.usage, Some(ChatUsage::new(472, 89, 0)));
    // The first piece of the call carries id, type and name; the others only arguments.
    let pieces: Vec<_> = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.tool_calls.as_ref())
        .flatten()
        .collect();
    assert_eq!(pieces.len(), 5, "header + four non-empty argument pieces");
    assert_eq!(pieces[0].kind.as_deref(), Some("function"));
    assert!(pieces[1..]
        .iter()
        .all(|p| p.id.is_none() && p.function.name.is_none() && p.index == 0));
}

#[test]
fn stream_thinking_fixture() {
    let (chunks, done) = decode_stream(&fixture("stream_thinking.sse"));
    assert_eq!(done, Ok(true));
    let a = assemble(&chunks);
    assert_eq!(
        a.reasoning,
        "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3"
    );
    assert_eq!(a.text, "27 * 453 = 12,231");
    assert_eq!(a.usage, Some(ChatUsage::new(40 + 2048, 120, 2048)));
}

#[test]
fn stream_error_event_is_a_provider_error() {
    let (chunks, done) = decode_stream(&fixture("stream_error.sse"));
    let err = done.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(err.status, 529);
    assert_eq!(err.message, "Overloaded");
    assert!(err.is_retryable());
    assert_eq!(assemble(&chunks).text, "Hello");
}

#[test]
fn truncated_stream_is_incomplete_but_reports_usage() {
    let full = fixture("stream_tool_use.sse");
    let cut = &full[..full.len() / 2];
    let (chunks, done) = decode_stream(cut);
    assert_eq!(done, Ok(false));
    let a = assemble(&chunks);
    assert_eq!(a.finish, None);
    assert_eq!(a.usage.map(|u| u.prompt_tokens), Some(472));
}

#[test]
fn stream_split_at_every_offset_gives_identical_chunks() {
    for name in [
        "stream_text.sse",
        "stream_tool_use.sse",
        "stream_thinking.sse",
    ] {
        let bytes = fixture(name);
        let (whole, done) = decode_stream(&bytes);
        assert_eq!(done, Ok(true));
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let (split, done) = decode_pieces(&[a, b]);
            assert_eq!(done, Ok(true), "{name} split at {at}");
            assert_eq!(split, whole, "{name} split at {at}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_pieces(&bytewise).0, whole, "{name} byte by byte");
    }
}

// === front door ===

#[test]
fn front_door_decodes_every_feature() {
    let req = decode_request(&fixture("request_full.json")).unwrap();
    assert_eq!(req.model, "claude-sonnet-4-20250514");
    assert_eq!(req.max_tokens, Some(1024));
    assert_eq!(req.stream, Some(true));
    assert_eq!(
        req.stream_options.as_ref().unwrap().include_usage,
        Some(true)
    );
    assert_eq!(req.temperature, Some(0.5));
    assert_eq!(req.top_p, Some(0.9));
    assert_eq!(req.extra.get("top_k"), Some(&json!(40)));
    assert_eq!(req.stop, Some(Stop::Many(vec!["\n\nHuman:".into()])));
    assert_eq!(
        req.user.as_deref(),
        Some("13803d75-b4b5-4c3e-b2a2-6f21399b021b")
    );
    assert_eq!(req.parallel_tool_calls, Some(false));
    assert_eq!(req.tool_choice, Some(ToolChoice::Mode("auto".into())));
    let tools = req.tools.as_ref().unwrap();
    assert_eq!(tools[0].function.name, "get_weather");
    assert_eq!(
        tools[0].function.parameters.as_ref().unwrap()["required"],
        json!(["location"])
    );

    let m = &req.messages;
    let roles: Vec<Role> = m.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(m[0].text_content(), "You are a weather assistant.");
    let Some(Content::Parts(parts)) = &m[1].content else {
        panic!("parts")
    };
    assert_eq!(parts.len(), 3);
    let ContentPart::ImageUrl { image_url } = &parts[1] else {
        panic!()
    };
    assert_eq!(
        image_url.as_data(),
        Some(("image/jpeg", "/9j/4AAQSkZJRg=="))
    );
    let ContentPart::ImageUrl { image_url } = &parts[2] else {
        panic!()
    };
    assert!(image_url.url.starts_with("https://upload.wikimedia.org/"));
    assert_eq!(
        m[2].reasoning_content.as_deref(),
        Some("The user wants the weather in Paris.")
    );
    assert_eq!(
        m[2].text_content(),
        "That is the Eiffel Tower. Let me check the weather."
    );
    let call = &m[2].tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(
        serde_json::from_str::<Value>(&call.function.arguments).unwrap(),
        json!({"location": "Paris, France", "unit": "celsius"})
    );
    assert_eq!(
        m[3].tool_call_id.as_deref(),
        Some("toolu_01A09q90qw90lq917835lq9")
    );
    assert_eq!(m[3].text_content(), "15 degrees, light rain");
    assert_eq!(m[4].text_content(), "Thanks. Anything else?");

    let req = decode_request(&fixture("request_tool_results.json")).unwrap();
    assert_eq!(req.messages[0].text_content(), "Answer briefly.");
    assert_eq!(
        req.tool_choice,
        Some(ToolChoice::Named(NamedToolChoice {
            kind: "function".into(),
            function: tollgate_protocol::chat::FunctionName {
                name: "get_weather".into()
            },
        }))
    );
    let tools: Vec<&Message> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .collect();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0].text_content(), "15C");
    assert_eq!(tools[1].text_content(), "Error: station offline");
}

#[test]
fn front_door_rejects_with_the_field_named() {
    for (body, param) in [
        (r#"{"max_tokens":1,"messages":[]}"#, Some("model")),
        (r#"{"model":5,"max_tokens":1,"messages":[]}"#, Some("model")),
        (r#"{"model":"m","messages":[]}"#, Some("max_tokens")),
        (
            r#"{"model":"m","max_tokens":"9","messages":[]}"#,
            Some("max_tokens"),
        ),
        (r#"{"model":"m","max_tokens":1}"#, Some("messages")),
        (
            r#"{"model":"m","max_tokens":1,"messages":{}}"#,
            Some("messages"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user"}]}"#,
            Some("messages.0.content"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file"}}]}]}"#,
            Some("messages.0.content.0.source.type"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[],"stream":"yes"}"#,
            Some("stream"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[],"temperature":"hot"}"#,
            Some("temperature"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[],"tools":[{"name":"t"}]}"#,
            Some("tools.0.input_schema"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[],"tool_choice":{"type":"sometimes"}}"#,
            Some("tool_choice.type"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[],"system":5}"#,
            Some("system"),
        ),
        (r#"[1,2]"#, None),
        (r#"{"model":"m""#, None),
    ] {
        let err = decode_request(body.as_bytes()).unwrap_err();
        assert_eq!(err.param.as_deref(), param, "{body}: {}", err.message);
        assert!(!err.message.is_empty());
    }
}

/// Drops what the trip through the canonical model is documented to lose.
fn normalize_anthropic(mut v: Value) -> Value {
    let obj = v.as_object_mut().unwrap();
    obj.remove("stream");
    if let Some(Value::Array(blocks)) = obj.get("system").cloned() {
        let text: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
        obj.insert("system".into(), json!(text.join("\n")));
    }
    for m in obj["messages"].as_array_mut().unwrap() {
        if let Some(s) = m["content"].as_str() {
            m["content"] = json!([{"type":"text","text":s}]);
        }
        let blocks = m["content"].as_array_mut().unwrap();
        blocks.retain(|b| b["type"] != "thinking" && b["type"] != "redacted_thinking");
        for b in blocks {
            if b["type"] == "tool_result" {
                if let Some(inner) = b["content"].as_array() {
                    let text: Vec<&str> = inner.iter().filter_map(|i| i["text"].as_str()).collect();
                    b["content"] = json!(text.join("\n"));
                }
                if b.get("is_error") == Some(&json!(true)) {
                    b.as_object_mut().unwrap().remove("is_error");
                    b["content"] = json!(format!("Error: {}", b["content"].as_str().unwrap()));
                }
            }
        }
    }
    v
}

#[test]
fn front_door_round_trips_through_the_adapter() {
    for name in ["request_full.json", "request_tool_results.json"] {
        let original: Value = serde_json::from_slice(&fixture(name)).unwrap();
        let req = decode_request(&fixture(name)).unwrap();
        let up = AnthropicAdapter
            .encode_request(&req, &target(original["model"].as_str().unwrap()))
            .unwrap();
        let mut sent: Value = serde_json::from_slice(&up.body).unwrap();
        sent.as_object_mut().unwrap().remove("stream");
        // Single tool results are sent as strings: compare as text.
        for m in sent["messages"].as_array_mut().unwrap() {
            for b in m["content"].as_array_mut().unwrap() {
                if b["type"] == "tool_result" {
                    if let Some(inner) = b["content"].as_array() {
                        let text: Vec<&str> =
                            inner.iter().filter_map(|i| i["text"].as_str()).collect();
                        b["content"] = json!(text.join("\n"));
                    }
                }
            }
        }
        assert_eq!(sent, normalize_anthropic(original), "{name}");
    }
}

#[test]
fn front_door_response_encoding() {
    let resp = AnthropicAdapter
        .decode_response(&fixture("response_tool_use.json"), "claude-x")
        .unwrap();
    let mut out = BytesMut::new();
    encode_response(&resp, &mut out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "msg_01Aq9w938a90dw8q",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [
                {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 384, "output_tokens": 92, "cache_read_input_tokens": 0},
        })
    );
    // And it reads back through the adapter as the same canonical response.
    let back = AnthropicAdapter.decode_response(&out, "claude-x").unwrap();
    assert_eq!(back, resp);

    let mut resp = AnthropicAdapter
        .decode_response(&fixture("response_thinking.json"), "m")
        .unwrap();
    resp.usage = Some(ChatUsage::new(1550, 2000, 1500));
    let mut out = BytesMut::new();
    encode_response(&resp, &mut out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["content"][0]["type"], "thinking");
    assert_eq!(v["content"][1]["type"], "text");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 50, "output_tokens": 2000, "cache_read_input_tokens": 1500})
    );

    let resp = ChatResponse {
        id: "chatcmpl-1".into(),
        object: "chat.completion".into(),
        created: 1,
        model: "m".into(),
        choices: vec![tollgate_protocol::chat::Choice {
            index: 0,
            message: Message::text(Role::Assistant, "no"),
            finish_reason: Some(FinishReason::ContentFilter),
        }],
        usage: None,
    };
    let mut out = BytesMut::new();
    encode_response(&resp, &mut out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    assert_eq!(v["usage"]["output_tokens"], 0);
}

/// Checks the event grammar of a Messages stream and returns the event names.
fn check_grammar(events: &[(String, Value)]) -> Vec<String> {
    let names: Vec<String> = events.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(names[names.len() - 2], "message_delta");
    let mut open: Option<u64> = None;
    let mut next = 0;
    for (name, data) in events {
        assert_eq!(data["type"], name.as_str(), "event name matches data type");
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "blocks do not nest");
                assert_eq!(data["index"], next);
                open = Some(next);
            }
            "content_block_delta" => assert_eq!(data["index"].as_u64(), open),
            "content_block_stop" => {
                assert_eq!(data["index"].as_u64(), open);
                open = None;
                next += 1;
            }
            "message_delta" => assert_eq!(open, None),
            _ => {}
        }
    }
    names
}

#[test]
fn stream_encoder_output_is_valid_anthropic_sse() {
    for name in [
        "stream_text.sse",
        "stream_tool_use.sse",
        "stream_thinking.sse",
    ] {
        let (chunks, _) = decode_stream(&fixture(name));
        let mut enc = MessagesStreamEncoder::new("claude-front");
        let mut out = BytesMut::new();
        for c in &chunks {
            enc.push(c, &mut out);
        }
        enc.finish(&mut out);
        enc.finish(&mut out);
        let events = sse_events(&out);
        check_grammar(&events);
        assert_eq!(events[0].1["message"]["model"], "claude-front");
        // Decoding the encoder's output gives the same canonical stream back.
        let (again, done) = decode_stream(&out);
        assert_eq!(done, Ok(true), "{name}");
        // Usage included: message_start cannot know the input tokens before the usage chunk,
        // so message_delta carries them and the decoder merges both.
        assert_eq!(assemble(&again), assemble(&chunks), "{name}");
    }
}

#[test]
fn stream_encoder_holds_message_delta_for_usage() {
    let (chunks, _) = decode_stream(&fixture("stream_tool_use.sse"));
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    let mut enc = MessagesStreamEncoder::new("m");
    let mut out = BytesMut::new();
    for c in rest {
        enc.push(c, &mut out);
    }
    let names: Vec<String> = sse_events(&out).into_iter().map(|(n, _)| n).collect();
    assert!(!names.contains(&"message_delta".to_owned()));
    assert_eq!(names.last().map(String::as_str), Some("content_block_stop"));
    enc.push(usage_chunk, &mut out);
    let events = sse_events(&out);
    let names = check_grammar(&events);
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let delta = &events[names.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 89);
    assert_eq!(delta["usage"]["input_tokens"], 472);
    let tool = &events[5].1["content_block"];
    assert_eq!(
        *tool,
        json!({"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}})
    );
    assert_eq!(events[6].1["delta"]["type"], "input_json_delta");
    // Nothing after message_stop.
    let len = out.len();
    enc.push(usage_chunk, &mut out);
    enc.finish(&mut out);
    assert_eq!(out.len(), len);
}

#[test]
fn stream_encoder_without_usage_finishes_on_finish() {
    let chunk = |delta: tollgate_protocol::chat::Delta, finish| {
        ChatChunk::delta("chatcmpl-9", "gpt", 1, delta, finish)
    };
    let mut enc = MessagesStreamEncoder::new("m");
    let mut out = BytesMut::new();
    enc.push(
        &chunk(
            tollgate_protocol::chat::Delta {
                role: Some(Role::Assistant),
                content: Some("Hi".into()),
                ..Default::default()
            },
            None,
        ),
        &mut out,
    );
    enc.push(
        &chunk(Default::default(), Some(FinishReason::Length)),
        &mut out,
    );
    enc.finish(&mut out);
    let events = sse_events(&out);
    check_grammar(&events);
    assert_eq!(events[0].1["message"]["id"], "chatcmpl-9");
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 0);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 0);
}

#[test]
fn errors_render_in_anthropic_shape() {
    let mut out = BytesMut::new();
    encode_error(
        error_type_for("rate_limit_exceeded", 429),
        "slow \"down\"",
        &mut out,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({"type":"error","error":{"type":"rate_limit_error","message":"slow \"down\""}})
    );
    // The adapter reads it back as the same kind.
    assert_eq!(
        AnthropicAdapter.map_error(429, &out).kind,
        ErrorKind::RateLimited
    );
    let mut out = BytesMut::new();
    encode_error_event(error_type_for("api_error", 529), "busy\nnow", &mut out);
    let events = sse_events(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "error");
    assert_eq!(events[0].1["error"]["type"], "overloaded_error");
    assert_eq!(events[0].1["error"]["message"], "busy\nnow");
    for (ty, status, want) in [
        ("invalid_request_error", 400, "invalid_request_error"),
        ("invalid_request_error", 413, "request_too_large"),
        ("authentication_error", 401, "authentication_error"),
        ("permission_error", 403, "permission_error"),
        ("invalid_request_error", 404, "not_found_error"),
        ("server_error", 500, "api_error"),
        ("api_error", 502, "api_error"),
        ("api_error", 504, "timeout_error"),
    ] {
        assert_eq!(error_type_for(ty, status), want, "{ty} {status}");
    }
}

// === native pass-through ===

#[test]
fn native_inspect_and_rewrite() {
    let body = fixture("request_full.json");
    let s = inspect_native(&body).unwrap();
    assert_eq!(s.model, "claude-sonnet-4-20250514");
    assert!(s.stream);
    assert_eq!(s.max_tokens, 1024);
    let mut out = BytesMut::new();
    rewrite_model(&body, &s, "claude-opus-4-1", &mut out);
    let mut want: Value = serde_json::from_slice(&body).unwrap();
    want["model"] = json!("claude-opus-4-1");
    let got: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(got, want);
    // Only the model bytes changed.
    let text = String::from_utf8(out.to_vec()).unwrap();
    let orig = String::from_utf8(body.clone()).unwrap();
    assert_eq!(
        text,
        orig.replace("\"claude-sonnet-4-20250514\"", "\"claude-opus-4-1\"")
    );

    for (bad, param) in [
        (r#"{"max_tokens":1,"messages":[]}"#, Some("model")),
        (r#"{"model":"m","messages":[]}"#, Some("max_tokens")),
        (
            r#"{"model":"m","max_tokens":0,"messages":[]}"#,
            Some("max_tokens"),
        ),
        (r#"{"model":"m","max_tokens":1}"#, Some("messages")),
        (
            r#"{"model":"m","max_tokens":1,"messages":"x"}"#,
            Some("messages"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[],"stream":1}"#,
            Some("stream"),
        ),
        (
            r#"{"model":"m","model":"n","max_tokens":1,"messages":[]}"#,
            None,
        ),
        (r#"{"model":"m","max_tokens":1,"messages":[]"#, None),
    ] {
        let err = inspect_native(bad.as_bytes()).unwrap_err();
        assert_eq!(err.param.as_deref(), param, "{bad}");
    }
}

#[test]
fn native_usage_from_bodies_and_streams() {
    assert_eq!(
        native_usage(&fixture("response_cached.json")),
        Some(ChatUsage::new(21 + 188_086 + 1500, 393, 1500))
    );
    assert_eq!(native_usage(b"{\"id\":\"x\"}"), None);
    assert_eq!(native_usage(b"not json"), None);

    for (name, want) in [
        ("stream_text.sse", ChatUsage::new(25, 15, 0)),
        ("stream_tool_use.sse", ChatUsage::new(472, 89, 0)),
        ("stream_thinking.sse", ChatUsage::new(2088, 120, 2048)),
    ] {
        let mut t = NativeUsageTracker::new();
        assert_eq!(t.usage(), None);
        for (_, data) in sse_events(&fixture(name)) {
            t.observe(data.to_string().as_bytes());
        }
        assert_eq!(t.usage(), Some(want), "{name}");
        // The tracker and the adapter agree.
        let (chunks, _) = decode_stream(&fixture(name));
        assert_eq!(assemble(&chunks).usage, Some(want), "{name}");
    }
}

// === mock through the adapter ===

fn mock_body(model: &str, stream: bool, extra: Value) -> Vec<u8> {
    let mut v = json!({
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "What's the weather like in Paris today?"}],
        "stream": stream,
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

fn mock_decode(plan: &MockPlan, stream: bool) -> (Assembled, Result<bool, ProviderError>) {
    let body = plan_body(plan);
    if stream {
        let (chunks, done) = decode_stream(&body);
        (assemble(&chunks), done)
    } else {
        let r = AnthropicAdapter.decode_response(&body, "claude").unwrap();
        let m = &r.choices[0].message;
        let a = Assembled {
            text: m.text_content(),
            calls: m
                .tool_calls
                .iter()
                .flatten()
                .map(|c| {
                    (
                        c.id.clone(),
                        c.function.name.clone(),
                        c.function.arguments.clone(),
                    )
                })
                .collect(),
            finish: r.choices[0].finish_reason,
            usage: r.usage,
            ..Assembled::default()
        };
        (a, Ok(true))
    }
}

fn openai_usage(u: &tollgate_protocol::openai::Usage) -> ChatUsage {
    ChatUsage::new(u.prompt_tokens, u.completion_tokens, u.cached_tokens)
}

#[test]
fn mock_chat_and_stream_decode_with_usage() {
    let knobs = MockKnobs {
        chunks: 5,
        completion_tokens: 7,
        ..MockKnobs::default()
    };
    for stream in [false, true] {
        let plan = anthropic_mock::plan(
            "/v1/messages",
            &mock_body("claude", stream, json!({})),
            &knobs,
            1,
        );
        assert_eq!(plan.status, Some(200));
        assert!(matches!(plan.steps.last(), Some(MockStep::End)));
        let (a, done) = mock_decode(&plan, stream);
        assert_eq!(done, Ok(true));
        assert!(a.text.starts_with("Tollgate mock"), "{}", a.text);
        assert_eq!(a.finish, Some(FinishReason::Stop));
        assert_eq!(a.usage, Some(openai_usage(&plan.usage)));
        assert_eq!(plan.usage.completion_tokens, if stream { 5 } else { 7 });
        assert!(plan.usage.prompt_tokens > 0);
    }
    // The SSE has Anthropic's event grammar and honours ttft / chunk_delay.
    let knobs = MockKnobs {
        chunks: 3,
        ttft: std::time::Duration::from_millis(7),
        chunk_delay: std::time::Duration::from_millis(2),
        ..MockKnobs::default()
    };
    let plan = anthropic_mock::plan(
        "/v1/messages",
        &mock_body("claude", true, json!({})),
        &knobs,
        0,
    );
    let names = check_grammar(&sse_events(&plan_body(&plan)));
    assert_eq!(
        names.iter().filter(|n| *n == "content_block_delta").count(),
        3
    );
    assert!(names.contains(&"ping".to_owned()));
    let delays: Vec<u128> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            MockStep::Body { delay, .. } => Some(delay.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [0, 7, 2, 2, 0]);
    // max_tokens caps the answer and says so.
    let plan = anthropic_mock::plan(
        "/v1/messages",
        &mock_body("claude", false, json!({"max_tokens": 3})),
        &MockKnobs::default(),
        0,
    );
    let (a, _) = mock_decode(&plan, false);
    assert_eq!(a.finish, Some(FinishReason::Length));
    assert_eq!(plan.usage.completion_tokens, 3);
}

#[test]
fn mock_tool_round_trip() {
    let tools = json!({"tools": [
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "other", "input_schema": {"type": "object"}},
    ]});
    for stream in [false, true] {
        let plan = anthropic_mock::plan(
            "/v1/messages",
            &mock_body("claude", stream, tools.clone()),
            &MockKnobs::default(),
            0,
        );
        let (a, done) = mock_decode(&plan, stream);
        assert_eq!(done, Ok(true));
        assert_eq!(
            a.calls,
            vec![(
                "call_mock_1".to_owned(),
                "get_weather".to_owned(),
                r#"{"city":"Paris"}"#.to_owned()
            )],
            "stream={stream}"
        );
        assert_eq!(a.finish, Some(FinishReason::ToolCalls));
        assert_eq!(a.usage, Some(openai_usage(&plan.usage)));
        if stream {
            let pieces = sse_events(&plan_body(&plan))
                .into_iter()
                .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
                .count();
            assert!(pieces >= 2);
        }

        // Second turn: the canonical conversation, encoded by the adapter, answered by the mock.
        let mut req = ChatRequest {
            model: "claude".into(),
            messages: vec![user("What's the weather like in Paris today?")],
            tools: Some(vec![weather_tool()]),
            stream: Some(stream),
            ..ChatRequest::default()
        };
        let mut assistant = Message::text(Role::Assistant, "");
        assistant.content = None;
        assistant.tool_calls = Some(vec![ToolCall {
            id: a.calls[0].0.clone(),
            kind: "function".into(),
            function: FunctionCall {
                name: a.calls[0].1.clone(),
                arguments: a.calls[0].2.clone(),
            },
        }]);
        let mut result = Message::text(Role::Tool, "18C and sunny");
        result.tool_call_id = Some("call_mock_1".into());
        req.messages.push(assistant);
        req.messages.push(result);
        let up = AnthropicAdapter
            .encode_request(&req, &target("claude"))
            .unwrap();
        let plan = anthropic_mock::plan(&up.path, &up.body, &MockKnobs::default(), 1);
        let (a, done) = mock_decode(&plan, stream);
        assert_eq!(done, Ok(true));
        assert_eq!(a.text, "Tool said: 18C and sunny");
        assert!(a.calls.is_empty());
        assert_eq!(a.finish, Some(FinishReason::Stop));
        assert_eq!(a.usage, Some(openai_usage(&plan.usage)));
    }
}

#[test]
fn mock_faults_map_through_the_adapter() {
    for (model, status, kind, retryable) in [
        ("mock-error-429", 429, ErrorKind::RateLimited, true),
        ("mock-error-529", 529, ErrorKind::Unavailable, true),
        ("mock-error-500", 500, ErrorKind::Unavailable, true),
        ("mock-error-400", 400, ErrorKind::InvalidRequest, false),
        ("mock-error-401", 401, ErrorKind::Authentication, false),
    ] {
        let plan = anthropic_mock::plan(
            "/v1/messages",
            &mock_body(model, true, json!({})),
            &MockKnobs::default(),
            0,
        );
        assert_eq!(plan.status, Some(status));
        assert_eq!(plan.usage.total_tokens, 0);
        let body = plan_body(&plan);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "error");
        let e = AnthropicAdapter.map_error(status, &body);
        assert_eq!((e.kind, e.is_retryable()), (kind, retryable), "{model}");
    }
    let v: Value = serde_json::from_slice(&plan_body(&anthropic_mock::plan(
        "/v1/messages",
        &mock_body("mock-error-429", false, json!({})),
        &MockKnobs::default(),
        0,
    )))
    .unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // An invalid request is a native 400 that is not retried.
    let plan = anthropic_mock::plan(
        "/v1/messages",
        br#"{"model":"claude","messages":[]}"#,
        &MockKnobs::default(),
        0,
    );
    assert_eq!(plan.status, Some(400));
    let e = AnthropicAdapter.map_error(400, &plan_body(&plan));
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(!e.is_retryable());
    assert!(e.message.contains("max_tokens"));

    for (model, step) in [
        ("mock-reset", MockStep::Reset),
        ("mock-hang", MockStep::Hang),
    ] {
        let plan = anthropic_mock::plan(
            "/v1/messages",
            &mock_body(model, true, json!({})),
            &MockKnobs::default(),
            0,
        );
        assert_eq!(plan.steps, [step]);
        assert_eq!(plan.status, None);
    }

    // mock-cut: half the deltas, no message_stop, then a reset; the decoder calls it truncated.
    let knobs = MockKnobs {
        chunks: 8,
        ..MockKnobs::default()
    };
    let plan = anthropic_mock::plan(
        "/v1/messages",
        &mock_body("mock-cut", true, json!({})),
        &knobs,
        0,
    );
    assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
    let body = plan_body(&plan);
    assert!(!String::from_utf8_lossy(&body).contains("message_stop"));
    let (chunks, done) = decode_stream(&body);
    assert_eq!(done, Ok(false));
    assert_eq!(plan.usage.completion_tokens, 4);
    assert_eq!(assemble(&chunks).text, "Tollgate mock tokens flow");
    let plan = anthropic_mock::plan(
        "/v1/messages",
        &mock_body("mock-cut", false, json!({})),
        &knobs,
        0,
    );
    assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
    assert_eq!(plan.usage.completion_tokens, 0);

    // mock-slow waits before the head; the knobs' fault rate applies to ordinary models.
    let plan = anthropic_mock::plan(
        "/v1/messages",
        &mock_body("mock-slow", false, json!({})),
        &MockKnobs::default(),
        0,
    );
    assert!(matches!(
        plan.steps[0],
        MockStep::Head { delay, .. } if delay == tollgate_protocol::mock::SLOW_MODEL_LATENCY
    ));
    let knobs = MockKnobs {
        fault: Some(FaultSpec {
            kind: FaultKind::Status(529),
            rate: 1.0,
        }),
        ..MockKnobs::default()
    };
    let plan = anthropic_mock::plan(
        "/v1/messages",
        &mock_body("claude", false, json!({})),
        &knobs,
        0,
    );
    assert_eq!(plan.status, Some(529));

    // mock-slow-body: the same bytes, in small pieces.
    let slow = anthropic_mock::plan(
        "/v1/messages",
        &mock_body("mock-slow-body", true, json!({})),
        &MockKnobs::default(),
        0,
    );
    let (a, done) = mock_decode(&slow, true);
    assert_eq!(done, Ok(true));
    assert!(a.text.starts_with("Tollgate"));
    assert!(slow.steps.len() > 4);
}

#[test]
fn mock_plans_are_deterministic() {
    let body = mock_body("claude", true, json!({}));
    let a = anthropic_mock::plan("/v1/messages", &body, &MockKnobs::default(), 4);
    let b = anthropic_mock::plan("/v1/messages", &body, &MockKnobs::default(), 4);
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.usage, b.usage);
}

#[test]
fn stream_json_schema_tool_becomes_text() {
    let mut sse = BytesMut::new();
    for data in [
        json!({"type":"message_start","message":{"id":"msg_j","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_j","name":"json_response_weather","input":{}}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}),
        json!({"type":"content_block_stop","index":0}),
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":12}}),
        json!({"type":"message_stop"}),
    ] {
        tollgate_protocol::sse::write_event(&mut sse, data["type"].as_str(), &data.to_string());
    }
    let (chunks, done) = decode_stream(&sse);
    assert_eq!(done, Ok(true));
    let a = assemble(&chunks);
    assert_eq!(a.text, r#"{"city":"Paris"}"#);
    assert!(a.calls.is_empty());
    assert_eq!(a.finish, Some(FinishReason::Stop));
    assert_eq!(a.usage, Some(ChatUsage::new(9, 12, 0)));
}

proptest::proptest! {
    #[test]
    fn stream_random_multi_splits_agree(
        which in 0usize..3,
        cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..10),
    ) {
        let name = ["stream_text.sse", "stream_tool_use.sse", "stream_thinking.sse"][which];
        let bytes = fixture(name);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for p in points {
            pieces.push(&bytes[prev..p]);
            prev = p;
        }
        pieces.push(&bytes[prev..]);
        let (split, done) = decode_pieces(&pieces);
        proptest::prop_assert_eq!(done, Ok(true));
        proptest::prop_assert_eq!(split, decode_stream(&bytes).0);
    }
}
