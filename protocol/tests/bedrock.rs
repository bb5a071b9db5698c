//! Bedrock adapter tests: translation both ways against recorded-shape fixtures
//! (`tests/fixtures/bedrock/`, see its README), event stream decoding split at every offset,
//! SigV4 signing of the upstream request, and the native Bedrock mock driven through the adapter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::{json, Value};
use tollgate_protocol::chat::{
    ChatChunk, ChatRequest, ChatResponse, FinishReason, Message, Role, ToolChoice,
};
use tollgate_protocol::mock::{MockKnobs, MockPlan, MockStep};
use tollgate_protocol::providers::bedrock::{
    encode_body, BedrockAdapter, CONTENT_TYPE_EVENTSTREAM, SIGNING_SERVICE,
};
use tollgate_protocol::providers::bedrock_mock::{self, MOCK_TOOL_INPUT, MOCK_TOOL_USE_ID};
use tollgate_protocol::providers::eventstream::{write_message, Header};
use tollgate_protocol::providers::sigv4::{self, Credentials, SignableRequest};
use tollgate_protocol::providers::{Adapter, AwsSigning, ErrorKind, Target, UpstreamRequest};

mod common;
use common::plan_body;

const NOW: u64 = 1_763_700_000;

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "bedrock",
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// A ConverseStream body built from a JSON list of `{headers, payload}` messages.
fn stream_fixture(name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for message in fixture_json(name).as_array().unwrap() {
        let headers: Vec<Header> = message["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| Header::string(k.as_str(), v.as_str().unwrap()))
            .collect();
        let payload = message["payload"].to_string();
        write_message(&headers, payload.as_bytes(), &mut body).unwrap();
    }
    body
}

fn aws(token: Option<&'static str>) -> AwsSigning<'static> {
    AwsSigning {
        region: "us-west-2",
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: token,
    }
}

fn target(model: &str, now: u64) -> Target<'_> {
    Target {
        authority: "bedrock-runtime.us-west-2.amazonaws.com",
        base_path: "",
        model,
        api_key: None,
        api_version: None,
        aws: Some(aws(None)),
        now_unix: now,
    }
}

fn request(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// Decodes `body` fed in the given pieces; returns the chunks and `finish`'s verdict.
fn decode_stream(pieces: &[&[u8]]) -> (Vec<ChatChunk>, bool) {
    let mut decoder = BedrockAdapter.stream_decoder("m");
    let mut out = Vec::new();
    for piece in pieces {
        decoder.feed(piece, &mut out).unwrap();
    }
    let complete = decoder.finish(&mut out).unwrap();
    (out, complete)
}

/// What a stream of chunks adds up to.
#[derive(Debug, Default, PartialEq)]
struct Assembled {
    role_chunks: usize,
    content: String,
    reasoning: String,
    /// (id, name, arguments) per tool call index.
    tools: Vec<(String, String, String)>,
    finish: Option<FinishReason>,
    usage: Option<(u64, u64, u64)>,
}

fn assemble(chunks: &[ChatChunk]) -> Assembled {
    let mut a = Assembled::default();
    for c in chunks {
        if let Some(u) = c.usage {
            a.usage = Some((u.prompt_tokens, u.completion_tokens, u.cached_tokens()));
        }
        for choice in &c.choices {
            let d = &choice.delta;
            if d.role == Some(Role::Assistant) {
                a.role_chunks += 1;
            }
            a.content.push_str(d.content.as_deref().unwrap_or(""));
            a.reasoning
                .push_str(d.reasoning_content.as_deref().unwrap_or(""));
            for t in d.tool_calls.iter().flatten() {
                let i = t.index as usize;
                if a.tools.len() <= i {
                    a.tools.resize(i + 1, Default::default());
                }
                if let Some(id) = &t.id {
                    a.tools[i].0 = id.clone();
                }
                if let Some(name) = &t.function.name {
                    a.tools[i].1 = name.clone();
                }
                a.tools[i]
                    .2
                    .push_str(t.function.arguments.as_deref().unwrap_or(""));
            }
            if choice.finish_reason.is_some() {
                a.finish = choice.finish_reason;
            }
        }
    }
    a
}

// === request translation ===

#[test]
fn request_fixture_translates_to_converse() {
    let req: ChatRequest = serde_json::from_slice(&fixture("chat_request.json")).unwrap();
    assert_eq!(
        encode_body(&req).unwrap(),
        fixture_json("converse_request.json")
    );
}

#[test]
fn tool_choice_variants() {
    let base = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    });
    let with = |choice: Value| {
        let mut v = base.clone();
        v["tool_choice"] = choice;
        encode_body(&request(v)).unwrap()
    };
    assert_eq!(
        with(json!("auto"))["toolConfig"]["toolChoice"],
        json!({"auto": {}})
    );
    assert_eq!(
        with(json!("required"))["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    assert_eq!(
        with(json!({"type": "function", "function": {"name": "f"}}))["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "f"}})
    );
    // "none" without tool history: no tools at all.
    assert!(with(json!("none")).get("toolConfig").is_none());
    // No tool_choice: tools, no choice.
    let v = encode_body(&request(base.clone())).unwrap();
    assert!(v["toolConfig"].get("toolChoice").is_none());
    assert_eq!(v["toolConfig"]["tools"][0]["toolSpec"]["name"], "f");

    // "none" with tool history: Bedrock needs the toolConfig, sent without a choice.
    let mut v = base.clone();
    v["tool_choice"] = json!("none");
    v["messages"] = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    ]);
    let body = encode_body(&request(v.clone())).unwrap();
    assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], "f");
    assert!(body["toolConfig"].get("toolChoice").is_none());
    // Tool history without tools: placeholder specs named after the calls.
    v.as_object_mut().unwrap().remove("tools");
    v.as_object_mut().unwrap().remove("tool_choice");
    let body = encode_body(&request(v)).unwrap();
    assert_eq!(
        body["toolConfig"]["tools"],
        json!([{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}])
    );
}

#[test]
fn untranslatable_requests_name_the_param() {
    let err = |v: Value| encode_body(&request(v)).unwrap_err();
    let e = err(json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
    ]}));
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0].image_url"));
    let e = err(json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}
    ]}));
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0].image_url"));
    let e = err(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}}),
    );
    assert_eq!(e.param.as_deref(), Some("response_format"));
    let e = err(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}));
    assert_eq!(e.param.as_deref(), Some("n"));
    let e = err(json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{nope"}}]}
    ]}));
    assert_eq!(
        e.param.as_deref(),
        Some("messages[0].tool_calls[0].function.arguments")
    );
    let e = err(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}));
    assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
    let e = err(json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}
    ]}));
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
}

#[test]
fn consecutive_same_role_turns_merge() {
    let body = encode_body(&request(json!({"model": "m", "messages": [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "developer", "content": "be kind"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": "d"}
    ]})))
    .unwrap();
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
            {"role": "assistant", "content": [{"text": "c"}, {"text": "d"}]}
        ])
    );
    assert_eq!(body["system"], json!([{"text": "be kind"}]));
    assert!(body.get("inferenceConfig").is_none());
}

// === signing ===

#[test]
fn encoded_request_is_signed_with_sigv4() {
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    let req = request(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    let t = target(model, NOW);
    let up = BedrockAdapter.encode_request(&req, &t).unwrap();
    assert_eq!(up.method, "POST");
    assert_eq!(
        up.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(header(&up, "host"), Some(t.authority));
    assert_eq!(header(&up, "content-type"), Some("application/json"));
    assert_eq!(header(&up, "accept"), Some("application/json"));
    assert_eq!(header(&up, "x-amz-date"), Some("20251121T044000Z"));
    assert_eq!(header(&up, "x-amz-security-token"), None);

    // Recompute the signature independently from the same inputs.
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
    };
    let signable = SignableRequest {
        method: "POST",
        path: &up.path,
        query: &[],
        headers: &[("host", t.authority), ("content-type", "application/json")],
        payload: &up.body,
        content_sha256_header: false,
    };
    let steps = sigv4::sign_with_steps(&signable, &creds, "us-west-2", SIGNING_SERVICE, NOW);
    assert_eq!(
        header(&up, "authorization"),
        Some(steps.headers.authorization.as_str())
    );
    // The model id is encoded twice in the canonical URI, as AWS requires for non-S3 services.
    assert!(steps
        .canonical_request
        .starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\n"));
    let auth = header(&up, "authorization").unwrap();
    assert!(auth.starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251121/us-west-2/bedrock/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature="
    ));

    // Another second, another signature.
    let later = BedrockAdapter
        .encode_request(&req, &target(model, NOW + 1))
        .unwrap();
    assert_ne!(
        header(&later, "authorization"),
        header(&up, "authorization")
    );
    assert_eq!(header(&later, "x-amz-date"), Some("20251121T044001Z"));
}

#[test]
fn stream_request_session_token_and_missing_credentials() {
    let req = request(
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    let mut t = target("m", NOW);
    t.base_path = "/proxy";
    t.aws = Some(aws(Some("session-token-value")));
    let up = BedrockAdapter.encode_request(&req, &t).unwrap();
    assert_eq!(up.path, "/proxy/model/m/converse-stream");
    assert_eq!(header(&up, "accept"), Some(CONTENT_TYPE_EVENTSTREAM));
    assert_eq!(
        header(&up, "x-amz-security-token"),
        Some("session-token-value")
    );
    assert!(header(&up, "authorization")
        .unwrap()
        .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"));
    // The secret never appears in what is sent.
    assert!(up.headers.iter().all(|(_, v)| !v.contains("EXAMPLEKEY")));

    t.aws = None;
    assert!(BedrockAdapter.encode_request(&req, &t).is_err());
}

// === responses ===

#[test]
fn response_fixture_decodes() {
    let r: ChatResponse = BedrockAdapter
        .decode_response(&fixture("converse_response.json"), "claude")
        .unwrap();
    assert_eq!(r.model, "claude");
    assert_eq!(r.object, "chat.completion");
    assert!(r.id.starts_with("chatcmpl-") && r.id.len() == 9 + 24);
    let choice = &r.choices[0];
    assert_eq!(choice.message.role, Role::Assistant);
    assert_eq!(
        choice.message.text_content(),
        "Paris: 18 °C and cloudy at 14:05."
    );
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (225, 12, 237)
    );
    assert_eq!(u.cached_tokens(), 100);
}

#[test]
fn tool_use_response_fixture_decodes() {
    let r = BedrockAdapter
        .decode_response(&fixture("converse_response_tool_use.json"), "m")
        .unwrap();
    let m: &Message = &r.choices[0].message;
    assert_eq!(m.content, None);
    assert_eq!(
        m.reasoning_content.as_deref(),
        Some("The user wants the weather; call the tool.")
    );
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(calls[0].kind, "function");
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(r.usage.unwrap().total_tokens, 70);
}

#[test]
fn unreadable_response_is_bad_response() {
    let e = BedrockAdapter
        .decode_response(b"{\"output\":", "m")
        .unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::BadResponse, 502));
    let e = BedrockAdapter.decode_response(b"{}", "m").unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
}

#[test]
fn errors_map_by_status_and_message() {
    let e = BedrockAdapter.map_error(429, &fixture("error_throttling.json"));
    assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, 429));
    assert_eq!(
        e.message,
        "Too many requests, please wait before trying again."
    );
    assert!(e.is_retryable());
    let e = BedrockAdapter.map_error(400, &fixture("error_validation_context.json"));
    assert_eq!(e.kind, ErrorKind::ContextLength);
    assert!(!e.is_retryable());
    let e = BedrockAdapter.map_error(400, br#"{"message":"Malformed input request"}"#);
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    let e = BedrockAdapter.map_error(403, &fixture("error_access_denied.json"));
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert!(e.message.contains("not authorized"));
    assert_eq!(
        BedrockAdapter
            .map_error(404, br#"{"message":"Model not found"}"#)
            .kind,
        ErrorKind::NotFound
    );
    for status in [424, 500, 503] {
        let e = BedrockAdapter.map_error(status, b"<html>oops</html>");
        assert_eq!(e.kind, ErrorKind::Unavailable, "{status}");
        assert_eq!(e.status, status);
        assert!(e.is_retryable());
        assert!(e.message.contains(&status.to_string()));
    }
}

// === stream ===

fn expected_stream() -> Assembled {
    Assembled {
        role_chunks: 1,
        content: "Let me check the weather.".into(),
        reasoning: "Weather question.".into(),
        tools: vec![(
            "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into(),
            "get_weather".into(),
            r#"{"city": "Paris"}"#.into(),
        )],
        finish: Some(FinishReason::ToolCalls),
        usage: Some((412, 61, 0)),
    }
}

#[test]
fn stream_fixture_decodes_at_every_split() {
    let body = stream_fixture("converse_stream.json");
    let (whole, complete) = decode_stream(&[&body]);
    assert!(complete);
    assert_eq!(assemble(&whole), expected_stream());
    // Shape: role chunk first, usage chunk last with no choices, finish just before it.
    assert_eq!(whole[0].choices[0].delta.role, Some(Role::Assistant));
    let last = whole.last().unwrap();
    assert!(last.choices.is_empty() && last.usage.is_some());
    let finish = &whole[whole.len() - 2];
    assert_eq!(
        finish.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    assert!(whole.iter().all(|c| c.id == whole[0].id && c.model == "m"));
    // The first tool piece carries id, type and name.
    let first_tool = whole
        .iter()
        .find_map(|c| c.choices.first()?.delta.tool_calls.clone())
        .unwrap();
    assert_eq!(first_tool[0].kind.as_deref(), Some("function"));

    for split in 0..=body.len() {
        let (chunks, complete) = decode_stream(&[&body[..split], &body[split..]]);
        assert!(complete, "split {split}");
        assert_eq!(chunks, whole, "split {split}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(decode_stream(&bytes).0, whole);
}

#[test]
fn stream_without_message_stop_is_incomplete() {
    let body = stream_fixture("converse_stream.json");
    // Everything up to (not including) the messageStop frame: drop the last two messages.
    let events = fixture_json("converse_stream.json");
    let mut cut = Vec::new();
    for m in &events.as_array().unwrap()[..10] {
        let headers: Vec<Header> = m["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| Header::string(k.as_str(), v.as_str().unwrap()))
            .collect();
        write_message(&headers, m["payload"].to_string().as_bytes(), &mut cut).unwrap();
    }
    assert!(body.starts_with(&cut));
    let (chunks, complete) = decode_stream(&[&cut]);
    assert!(!complete);
    assert_eq!(assemble(&chunks).finish, None);
    // Cut in the middle of the messageStop frame: still incomplete, not an error.
    let (_, complete) = decode_stream(&[&body[..cut.len() + 10]]);
    assert!(!complete);
}

#[test]
fn stream_exception_is_a_provider_error() {
    let body = stream_fixture("converse_stream_exception.json");
    let mut decoder = BedrockAdapter.stream_decoder("m");
    let mut out = Vec::new();
    let err = decoder.feed(&body, &mut out).unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, 429));
    assert_eq!(
        err.message,
        "Too many tokens, please wait before trying again."
    );
    // What came before the exception was delivered.
    assert_eq!(assemble(&out).content, "Hel");

    for (name, kind) in [
        ("serviceUnavailableException", ErrorKind::Unavailable),
        ("internalServerException", ErrorKind::Unavailable),
        ("modelStreamErrorException", ErrorKind::Unavailable),
        ("validationException", ErrorKind::InvalidRequest),
    ] {
        let mut body = Vec::new();
        write_message(
            &[
                Header::string(":exception-type", name),
                Header::string(":message-type", "exception"),
            ],
            br#"{"message":"boom"}"#,
            &mut body,
        )
        .unwrap();
        let err = BedrockAdapter
            .stream_decoder("m")
            .feed(&body, &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind, kind, "{name}");
    }
    let mut body = Vec::new();
    write_message(
        &[
            Header::string(":exception-type", "validationException"),
            Header::string(":message-type", "exception"),
        ],
        br#"{"message":"Input is too long for requested model."}"#,
        &mut body,
    )
    .unwrap();
    let err = BedrockAdapter
        .stream_decoder("m")
        .feed(&body, &mut Vec::new())
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextLength);
}

#[test]
fn corrupted_stream_is_bad_response() {
    let mut body = stream_fixture("converse_stream.json");
    let at = body.len() / 2;
    body[at] ^= 0xff;
    let mut decoder = BedrockAdapter.stream_decoder("m");
    let err = decoder.feed(&body, &mut Vec::new()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadResponse);
}

// === mock through the adapter ===

fn content_type(plan: &MockPlan) -> &'static str {
    match plan.steps.first() {
        Some(MockStep::Head { content_type, .. }) => content_type,
        other => panic!("no head: {other:?}"),
    }
}

fn call_mock(req: &ChatRequest, knobs: &MockKnobs) -> (UpstreamRequest, MockPlan) {
    let up = BedrockAdapter
        .encode_request(req, &target(&req.model, NOW))
        .unwrap();
    let plan = bedrock_mock::plan(&up.path, &up.body, knobs, 0);
    (up, plan)
}

fn chat(model: &str, stream: bool) -> ChatRequest {
    request(json!({"model": model, "stream": stream, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Say something about tollgates."}
    ]}))
}

#[test]
fn mock_chat_json_decodes() {
    let (_, plan) = call_mock(
        &chat("anthropic.claude-3-haiku-20240307-v1:0", false),
        &MockKnobs::default(),
    );
    assert_eq!(plan.status, Some(200));
    assert_eq!(content_type(&plan), "application/json");
    let r = BedrockAdapter
        .decode_response(&plan_body(&plan), "claude")
        .unwrap();
    let text = r.choices[0].message.text_content();
    assert!(
        text.starts_with("Tollgate mock tokens flow through the gateway"),
        "{text}"
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = r.usage.unwrap();
    assert_eq!(u.completion_tokens, 16);
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (
            plan.usage.prompt_tokens,
            plan.usage.completion_tokens,
            plan.usage.total_tokens
        )
    );
}

#[test]
fn mock_stream_decodes_at_every_split() {
    let knobs = MockKnobs {
        chunks: 5,
        ..MockKnobs::default()
    };
    let (_, plan) = call_mock(&chat("m", true), &knobs);
    assert_eq!(content_type(&plan), CONTENT_TYPE_EVENTSTREAM);
    assert!(matches!(
        plan.steps[0],
        MockStep::Head { body_len: None, .. }
    ));
    let body = plan_body(&plan);
    let (chunks, complete) = decode_stream(&[&body]);
    assert!(complete);
    let a = assemble(&chunks);
    assert_eq!(a.content, "Tollgate mock tokens flow through");
    assert_eq!(a.finish, Some(FinishReason::Stop));
    assert_eq!(a.role_chunks, 1);
    assert_eq!(
        a.usage,
        Some((plan.usage.prompt_tokens, plan.usage.completion_tokens, 0))
    );
    assert_eq!(plan.usage.completion_tokens, 5);
    for split in 0..=body.len() {
        assert_eq!(decode_stream(&[&body[..split], &body[split..]]).0, chunks);
    }
    // The same request without streaming says the same thing.
    let knobs = MockKnobs {
        completion_tokens: 5,
        ..knobs
    };
    let (_, plan) = call_mock(&chat("m", false), &knobs);
    let r = BedrockAdapter
        .decode_response(&plan_body(&plan), "m")
        .unwrap();
    assert_eq!(r.choices[0].message.text_content(), a.content);
}

#[test]
fn mock_max_tokens_cap_is_length() {
    let mut req = chat("m", true);
    req.max_tokens = Some(3);
    let (up, plan) = call_mock(&req, &MockKnobs::default());
    let body: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(body["inferenceConfig"]["maxTokens"], 3);
    let a = assemble(&decode_stream(&[&plan_body(&plan)]).0);
    assert_eq!(a.content, "Tollgate mock tokens");
    assert_eq!(a.finish, Some(FinishReason::Length));
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "get_time"}}
    ])
}

#[test]
fn mock_tool_round_trip() {
    for stream in [false, true] {
        let first = request(
            json!({"model": "m", "stream": stream, "tools": weather_tools(), "messages": [
                {"role": "user", "content": "Weather in Paris?"}
            ]}),
        );
        let (_, plan) = call_mock(&first, &MockKnobs::default());
        let (call, finish) = if stream {
            let body = plan_body(&plan);
            let (chunks, complete) = decode_stream(&[&body]);
            assert!(complete);
            // The arguments arrive in at least two pieces.
            let pieces = chunks
                .iter()
                .flat_map(|c| c.choices.iter())
                .flat_map(|c| c.delta.tool_calls.iter().flatten())
                .filter(|t| {
                    t.function
                        .arguments
                        .as_deref()
                        .is_some_and(|a| !a.is_empty())
                })
                .count();
            assert!(pieces >= 2, "{pieces}");
            let a = assemble(&chunks);
            assert_eq!(a.content, "");
            assert_eq!(a.tools.len(), 1);
            (a.tools[0].clone(), a.finish)
        } else {
            let r = BedrockAdapter
                .decode_response(&plan_body(&plan), "m")
                .unwrap();
            let calls = r.choices[0].message.tool_calls.clone().unwrap();
            assert_eq!(calls.len(), 1);
            let c = &calls[0];
            (
                (
                    c.id.clone(),
                    c.function.name.clone(),
                    c.function.arguments.clone(),
                ),
                r.choices[0].finish_reason,
            )
        };
        assert_eq!(call.0, MOCK_TOOL_USE_ID);
        assert_eq!(call.1, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&call.2).unwrap(),
            serde_json::from_str::<Value>(MOCK_TOOL_INPUT).unwrap()
        );
        assert_eq!(finish, Some(FinishReason::ToolCalls));

        // Second leg: the tool result goes back; the mock quotes it.
        let second = request(
            json!({"model": "m", "stream": stream, "tools": weather_tools(), "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": call.0, "type": "function", "function": {"name": call.1, "arguments": call.2}}
                ]},
                {"role": "tool", "tool_call_id": MOCK_TOOL_USE_ID, "content": "sunny, 21 C"}
            ]}),
        );
        let (up, plan) = call_mock(&second, &MockKnobs::default());
        let sent: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            sent["messages"][2]["content"][0]["toolResult"]["toolUseId"],
            MOCK_TOOL_USE_ID
        );
        let text = if stream {
            assemble(&decode_stream(&[&plan_body(&plan)]).0).content
        } else {
            BedrockAdapter
                .decode_response(&plan_body(&plan), "m")
                .unwrap()
                .choices[0]
                .message
                .text_content()
        };
        assert_eq!(text, "Tool said: sunny, 21 C");
    }
}

#[test]
fn mock_tools_without_user_text_answer_words() {
    // Tools offered, but tool_choice none and no tool history: no toolConfig, so no tool call.
    let mut req = request(json!({"model": "m", "tools": weather_tools(), "messages": [
        {"role": "user", "content": "hello"}
    ]}));
    req.tool_choice = Some(ToolChoice::Mode("none".into()));
    let (_, plan) = call_mock(&req, &MockKnobs::default());
    let r = BedrockAdapter
        .decode_response(&plan_body(&plan), "m")
        .unwrap();
    assert!(r.choices[0].message.tool_calls.is_none());
}

#[test]
fn mock_errors_map_through_the_adapter() {
    let (_, plan) = call_mock(&chat("mock-error-429", true), &MockKnobs::default());
    assert_eq!(plan.status, Some(429));
    assert_eq!(plan.usage.total_tokens, 0);
    let e = BedrockAdapter.map_error(429, &plan_body(&plan));
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.is_retryable());

    let (_, plan) = call_mock(&chat("mock-error-400", false), &MockKnobs::default());
    assert_eq!(plan.status, Some(400));
    let e = BedrockAdapter.map_error(400, &plan_body(&plan));
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(!e.is_retryable());

    let (_, plan) = call_mock(&chat("mock-error-503", false), &MockKnobs::default());
    assert!(BedrockAdapter
        .map_error(503, &plan_body(&plan))
        .is_retryable());

    // A body Bedrock would refuse.
    let plan = bedrock_mock::plan("/model/m/converse", b"{not json", &MockKnobs::default(), 0);
    assert_eq!(plan.status, Some(400));
    let plan = bedrock_mock::plan("/model/m/invoke", b"{}", &MockKnobs::default(), 0);
    assert_eq!(plan.status, Some(404));
}

#[test]
fn mock_faults() {
    let knobs = MockKnobs::default();
    for stream in [false, true] {
        let (_, plan) = call_mock(&chat("mock-reset", stream), &knobs);
        assert_eq!(plan.steps, [MockStep::Reset]);
        let (_, plan) = call_mock(&chat("mock-hang", stream), &knobs);
        assert_eq!(plan.steps, [MockStep::Hang]);
    }
    // mock-cut: half the stream, no messageStop, then a reset.
    let (_, plan) = call_mock(&chat("mock-cut", true), &knobs);
    assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
    let (chunks, complete) = decode_stream(&[&plan_body(&plan)]);
    assert!(!complete);
    let a = assemble(&chunks);
    assert_eq!(a.finish, None);
    assert_eq!(plan.usage.completion_tokens, 8);
    assert_eq!(a.content.split_whitespace().count(), 8);
    // mock-cut JSON: half a body.
    let (_, plan) = call_mock(&chat("mock-cut", false), &knobs);
    assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
    assert!(BedrockAdapter
        .decode_response(&plan_body(&plan), "m")
        .is_err());
    assert_eq!(plan.usage.completion_tokens, 0);
    // mock-slow waits before the head.
    let (_, plan) = call_mock(&chat("mock-slow", true), &knobs);
    assert!(matches!(plan.steps[0], MockStep::Head { delay, .. } if !delay.is_zero()));
    // mock-slow-body trickles a stream that still decodes.
    let (_, plan) = call_mock(&chat("mock-slow-body", true), &knobs);
    assert!(decode_stream(&[&plan_body(&plan)]).1);
}

#[test]
fn mock_response_bytes_pads_exactly() {
    let knobs = MockKnobs {
        response_bytes: Some(500),
        chunks: 4,
        ..MockKnobs::default()
    };
    let (_, plan) = call_mock(&chat("m", true), &knobs);
    let a = assemble(&decode_stream(&[&plan_body(&plan)]).0);
    assert_eq!(a.content.len(), 500);
    assert!(plan.usage.completion_tokens > 4);
}
