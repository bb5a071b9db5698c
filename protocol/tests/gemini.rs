//! Gemini adapter and native Gemini mock, checked against recorded-shape fixtures written from
//! Google's published API reference (see `fixtures/gemini/README.md`) and against each other:
//! every mock plan must decode through the adapter the way the engine would read it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use tollgate_protocol::chat::{
    ChatChunk, ChatRequest, Content, FinishReason, Message, Role, ToolCall,
};
use tollgate_protocol::mock::{FaultKind, FaultSpec, MockKnobs, MockPlan, MockStep};
use tollgate_protocol::providers::gemini::{to_gemini_schema, GeminiAdapter, API_KEY_HEADER};
use tollgate_protocol::providers::gemini_mock;
use tollgate_protocol::providers::{Adapter, ErrorKind, ProviderError, Target, UpstreamRequest};

mod common;
use common::plan_body;

// === helpers ===

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/gemini/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

fn target<'a>(model: &'a str, key: Option<&'a str>) -> Target<'a> {
    Target {
        authority: "generativelanguage.googleapis.com",
        base_path: "",
        model,
        api_key: key,
        api_version: None,
        aws: None,
        now_unix: 0,
    }
}

fn request(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn encode(req: &ChatRequest) -> UpstreamRequest {
    GeminiAdapter
        .encode_request(req, &target(&req.model, Some("AIza-secret")))
        .unwrap()
}

fn body_json(up: &UpstreamRequest) -> Value {
    serde_json::from_slice(&up.body).unwrap()
}

fn header<'a>(up: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
    up.headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// Decodes a stream fed in the given pieces: (chunks, complete).
fn decode_stream(pieces: &[&[u8]]) -> Result<(Vec<ChatChunk>, bool), ProviderError> {
    let mut dec = GeminiAdapter.stream_decoder("gemini-test");
    let mut out = Vec::new();
    for p in pieces {
        dec.feed(p, &mut out)?;
    }
    let complete = dec.finish(&mut out)?;
    Ok((out, complete))
}

fn content_text(chunks: &[ChatChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect()
}

fn finishes(chunks: &[ChatChunk]) -> Vec<FinishReason> {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.finish_reason)
        .collect()
}

/// Sends a canonical request through the adapter to the mock, the way the engine would.
fn via_mock(req: &ChatRequest, knobs: &MockKnobs, index: u64) -> (UpstreamRequest, MockPlan) {
    let up = GeminiAdapter
        .encode_request(req, &target(&req.model, Some("k")))
        .unwrap();
    let plan = gemini_mock::plan(&up.path, &up.body, knobs, index);
    (up, plan)
}

fn chat(model: &str, stream: bool, messages: Value) -> ChatRequest {
    request(json!({"model": model, "stream": stream, "messages": messages}))
}

// === request translation ===

#[test]
fn full_request_matches_the_recorded_gemini_body() {
    let req: ChatRequest = serde_json::from_slice(&fixture("request_full.openai.json")).unwrap();
    let up = encode(&req);
    assert_eq!(up.method, "POST");
    assert_eq!(up.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(body_json(&up), json_fixture("request_full.gemini.json"));
    assert_eq!(header(&up, API_KEY_HEADER), Some("AIza-secret"));
    assert_eq!(
        header(&up, "host"),
        Some("generativelanguage.googleapis.com")
    );
    assert_eq!(header(&up, "content-type"), Some("application/json"));
    assert!(!up.path.contains("AIza"), "the key never goes in the URL");
    assert!(!up.path.contains("key="));
}

#[test]
fn stream_requests_use_sse_and_the_base_path_and_version() {
    let mut req = chat(
        "gemini-2.0-flash",
        true,
        json!([{"role":"user","content":"hi"}]),
    );
    let mut t = target("models/gemini-2.0-flash", None);
    t.base_path = "/proxy";
    t.api_version = Some("v1");
    let up = GeminiAdapter.encode_request(&req, &t).unwrap();
    assert_eq!(
        up.path,
        "/proxy/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(header(&up, API_KEY_HEADER), None);
    assert_eq!(header(&up, "accept"), Some("text/event-stream"));
    req.stream = Some(false);
    let err = GeminiAdapter
        .encode_request(&req, &target("gemini?key=x", None))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("model"));
}

#[test]
fn plain_text_request_is_minimal() {
    let req = chat("m", false, json!([{"role":"user","content":"hello"}]));
    assert_eq!(
        body_json(&encode(&req)),
        json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]})
    );
}

#[test]
fn parameters_without_type_are_objects_and_empty_ones_are_left_out() {
    let req = request(json!({
        "model": "m", "messages": [{"role":"user","content":"x"}],
        "tools": [
            {"type":"function","function":{"name":"a","parameters":{"properties":{"q":{"type":"string"}}}}},
            {"type":"function","function":{"name":"b","parameters":{"type":"object"}}},
            {"type":"function","function":{"name":"c"}}
        ]
    }));
    assert_eq!(
        body_json(&encode(&req))["tools"],
        json!([{"functionDeclarations": [
            {"name": "a", "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}}},
            {"name": "b"},
            {"name": "c"}
        ]}])
    );
}

#[test]
fn tool_choice_modes() {
    let tools = json!([{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}]);
    for (choice, expected) in [
        (json!("auto"), json!({"mode": "AUTO"})),
        (json!("none"), json!({"mode": "NONE"})),
        (json!("required"), json!({"mode": "ANY"})),
        (
            json!({"type":"function","function":{"name":"f"}}),
            json!({"mode": "ANY", "allowedFunctionNames": ["f"]}),
        ),
    ] {
        let req = request(json!({
            "model": "m", "messages": [{"role":"user","content":"x"}],
            "tools": tools, "tool_choice": choice
        }));
        let body = body_json(&encode(&req));
        assert_eq!(body["toolConfig"]["functionCallingConfig"], expected);
        assert_eq!(
            body["tools"][0]["functionDeclarations"][0]["parameters"],
            json!({"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}})
        );
    }
    let req = request(json!({
        "model": "m", "messages": [{"role":"user","content":"x"}],
        "tools": tools, "tool_choice": "sometimes"
    }));
    let err = GeminiAdapter
        .encode_request(&req, &target("m", None))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("tool_choice"));
    // Without tools there is nothing to configure.
    let req = request(json!({
        "model": "m", "messages": [{"role":"user","content":"x"}], "tool_choice": "none"
    }));
    let body = body_json(&encode(&req));
    assert!(body.get("toolConfig").is_none());
    assert!(body.get("tools").is_none());
}

#[test]
fn json_mode_and_sampling_and_thinking() {
    let req = request(json!({
        "model": "m", "messages": [{"role":"user","content":"x"}],
        "response_format": {"type": "json_object"},
        "stop": "END", "max_tokens": 50, "n": 2, "reasoning_effort": "low",
        "presence_penalty": 0.5
    }));
    assert_eq!(
        body_json(&encode(&req))["generationConfig"],
        json!({
            "responseMimeType": "application/json",
            "stopSequences": ["END"],
            "maxOutputTokens": 50,
            "candidateCount": 2,
            "presencePenalty": 0.5,
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}
        })
    );
    let req = request(json!({
        "model": "m", "messages": [{"role":"user","content":"x"}],
        "response_format": {"type": "text"}, "reasoning_effort": "none"
    }));
    assert_eq!(
        body_json(&encode(&req))["generationConfig"],
        json!({"thinkingConfig": {"thinkingBudget": 0, "includeThoughts": false}})
    );
}

#[test]
fn tool_results_need_a_known_call_id() {
    let req = chat(
        "m",
        false,
        json!([
            {"role":"user","content":"x"},
            {"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"b","content":"r"}
        ]),
    );
    let err = GeminiAdapter
        .encode_request(&req, &target("m", None))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[2].tool_call_id"));
    assert!(err.message.contains("\"b\""), "{}", err.message);

    let req = chat(
        "m",
        false,
        json!([{"role":"user","content":"x"},{"role":"tool","content":"r"}]),
    );
    let err = GeminiAdapter
        .encode_request(&req, &target("m", None))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[1].tool_call_id"));
}

#[test]
fn repeated_call_ids_resolve_to_the_latest_call() {
    // Gemini's synthesized ids restart at call_0 every turn.
    let req = chat(
        "m",
        false,
        json!([
            {"role":"user","content":"x"},
            {"role":"assistant","tool_calls":[{"id":"call_0","type":"function","function":{"name":"first","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"call_0","content":"1"},
            {"role":"assistant","tool_calls":[{"id":"call_0","type":"function","function":{"name":"second","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"call_0","content":"[1,2]"}
        ]),
    );
    let body = body_json(&encode(&req));
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "first", "response": {"content": "1"}})
    );
    assert_eq!(
        body["contents"][4]["parts"][0]["functionResponse"],
        json!({"name": "second", "response": {"content": [1, 2]}})
    );
}

#[test]
fn untranslatable_input_names_the_field() {
    let cases = [
        (
            json!([{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{oops"}}]}]),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!([{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1]"}}]}]),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!([{"role":"user","content":[{"type":"text","text":"x"},{"type":"video_url","video_url":"v"}]}]),
            "messages[0].content[1].type",
        ),
        (
            json!([{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!([{"role":"system","content":"only instructions"}]),
            "messages",
        ),
    ];
    for (messages, param) in cases {
        let req = chat("m", false, messages);
        let err = GeminiAdapter
            .encode_request(&req, &target("m", None))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some(param), "{}", err.message);
    }
    let req = request(json!({
        "model":"m","messages":[{"role":"user","content":"x"}],
        "tools":[{"type":"retrieval","function":{"name":"f"}}]
    }));
    let err = GeminiAdapter
        .encode_request(&req, &target("m", None))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("tools[0].type"));
}

#[test]
fn audio_and_inline_files_become_inline_data() {
    let req = chat(
        "m",
        false,
        json!([{"role":"user","content":[
            {"type":"input_audio","input_audio":{"data":"UklGR","format":"wav"}},
            {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBER","filename":"a.pdf"}}
        ]}]),
    );
    assert_eq!(
        body_json(&encode(&req))["contents"][0]["parts"],
        json!([
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}}
        ])
    );
}

#[test]
fn schema_conversion_handles_refs_type_lists_and_all_of() {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "n": {"type": ["integer", "string"]},
            "node": {"$ref": "#/definitions/Node"},
            "merged": {"allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}
            ]},
            "choice": {"oneOf": [{"type": "string"}, {"type": "number", "format": "float"}]},
            "count": {"type": "integer", "enum": [1, 2, 3], "examples": [2]}
        },
        "definitions": {
            "Node": {"type": "object", "properties": {"next": {"$ref": "#/definitions/Node"}}}
        }
    });
    let out = to_gemini_schema(&schema);
    let p = &out["properties"];
    assert_eq!(
        p["n"],
        json!({"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]})
    );
    assert_eq!(
        p["merged"],
        json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}}, "required": ["a", "b"]})
    );
    assert_eq!(
        p["choice"],
        json!({"anyOf": [{"type": "STRING"}, {"type": "NUMBER", "format": "float"}]})
    );
    // Non-string enums are dropped; the first example is kept.
    assert_eq!(p["count"], json!({"type": "INTEGER", "example": 2}));
    // A recursive $ref is inlined to a bounded depth and then cut off.
    let mut node = &p["node"];
    let mut depth = 0;
    while node.get("properties").is_some() {
        node = &node["properties"]["next"];
        depth += 1;
    }
    assert!((5..=30).contains(&depth), "depth {depth}");
    assert!(out.get("$schema").is_none());
    assert!(out.get("definitions").is_none());
}

// === response decoding ===

#[test]
fn text_response_with_thoughts_and_cached_usage() {
    let resp = GeminiAdapter
        .decode_response(&fixture("response_text_thoughts.json"), "gemini-2.5-flash")
        .unwrap();
    assert_eq!(resp.id, "chatcmpl-mAitaJ2nB6qE1dkP");
    assert_eq!(resp.object, "chat.completion");
    assert_eq!(resp.model, "gemini-2.5-flash");
    let choice = &resp.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    assert_eq!(choice.message.role, Role::Assistant);
    assert_eq!(
        choice.message.content,
        Some(Content::Text("Paris is mild today: 21 C and clear.".into()))
    );
    assert_eq!(
        choice.message.reasoning_content.as_deref(),
        Some("The user wants a short answer about Paris weather.")
    );
    let usage = resp.usage.unwrap();
    assert_eq!(usage.prompt_tokens, 120);
    assert_eq!(usage.completion_tokens, 9 + 32, "thoughts count as output");
    assert_eq!(usage.total_tokens, 161);
    assert_eq!(usage.cached_tokens(), 64);
}

#[test]
fn function_call_response() {
    let resp = GeminiAdapter
        .decode_response(&fixture("response_function_calls.json"), "m")
        .unwrap();
    let choice = &resp.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(choice.message.content, None);
    let calls: Vec<(String, String, String)> = choice
        .message
        .tool_calls
        .iter()
        .flatten()
        .map(|c: &ToolCall| {
            assert_eq!(c.kind, "function");
            (
                c.id.clone(),
                c.function.name.clone(),
                c.function.arguments.clone(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "call_0".into(),
                "get_weather".into(),
                r#"{"city":"Paris","unit":"celsius"}"#.into()
            ),
            ("call_1".into(), "get_time".into(), "{}".into()),
        ]
    );
    assert_eq!(resp.usage.unwrap().completion_tokens, 24);
}

#[test]
fn finish_reasons_and_blocked_prompts() {
    let blocked = GeminiAdapter
        .decode_response(&fixture("response_prompt_blocked.json"), "m")
        .unwrap();
    assert_eq!(blocked.choices.len(), 1);
    assert_eq!(
        blocked.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(
        blocked.choices[0].message.content,
        Some(Content::Text(String::new()))
    );
    assert_eq!(blocked.usage.unwrap().prompt_tokens, 12);
    assert_eq!(blocked.usage.unwrap().completion_tokens, 0);

    let capped = GeminiAdapter
        .decode_response(&fixture("response_max_tokens.json"), "m")
        .unwrap();
    assert_eq!(capped.choices[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(capped.id, "chatcmpl-gemini");

    let recited = GeminiAdapter
        .decode_response(&fixture("response_recitation.json"), "m")
        .unwrap();
    assert_eq!(
        recited.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );

    let err = GeminiAdapter
        .decode_response(b"{\"candidates\":[]}", "m")
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadResponse);
    let err = GeminiAdapter.decode_response(b"<html>", "m").unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadResponse);
    assert_eq!(err.status, 502);
}

// === streams ===

#[test]
fn text_stream_decodes_role_reasoning_text_finish_usage() {
    let (chunks, complete) = decode_stream(&[&fixture("stream_text.sse")]).unwrap();
    assert!(complete);
    assert!(chunks.iter().all(|c| c.id == "chatcmpl-s-1"));
    assert!(chunks.iter().all(|c| c.model == "gemini-test"));
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    assert_eq!(
        chunks[1].choices[0].delta.reasoning_content.as_deref(),
        Some("Thinking about Paris.")
    );
    assert_eq!(content_text(&chunks), "Paris is sunny today.");
    assert_eq!(finishes(&chunks), vec![FinishReason::Stop]);
    // role, thought, 2 texts, finish, usage
    assert_eq!(chunks.len(), 6);
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let usage = last.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (10, 13, 23)
    );
    assert_eq!(usage.cached_tokens(), 4);
}

#[test]
fn function_call_stream_gives_whole_calls() {
    let (chunks, complete) = decode_stream(&[&fixture("stream_function_calls.sse")]).unwrap();
    assert!(complete);
    let calls: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .flat_map(|c| c.delta.tool_calls.iter().flatten())
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].index, 0);
    assert_eq!(calls[0].id.as_deref(), Some("call_0"));
    assert_eq!(calls[0].kind.as_deref(), Some("function"));
    assert_eq!(calls[0].function.name.as_deref(), Some("get_weather"));
    assert_eq!(
        calls[0].function.arguments.as_deref(),
        Some(r#"{"city":"Paris"}"#)
    );
    assert_eq!(calls[1].index, 1);
    assert_eq!(calls[1].id.as_deref(), Some("call_1"));
    assert_eq!(calls[1].function.arguments.as_deref(), Some("{}"));
    assert_eq!(finishes(&chunks), vec![FinishReason::ToolCalls]);
    assert_eq!(chunks.last().unwrap().usage.unwrap().completion_tokens, 12);
}

#[test]
fn blocked_and_cut_streams() {
    let (chunks, complete) = decode_stream(&[&fixture("stream_prompt_blocked.sse")]).unwrap();
    assert!(complete);
    assert_eq!(finishes(&chunks), vec![FinishReason::ContentFilter]);
    assert_eq!(chunks.last().unwrap().usage.unwrap().prompt_tokens, 9);

    let (chunks, complete) = decode_stream(&[&fixture("stream_cut.sse")]).unwrap();
    assert!(!complete, "no finishReason: a truncation");
    assert_eq!(content_text(&chunks), "Paris is ");
    assert!(finishes(&chunks).is_empty());

    // A half-written last event is a truncation too, even after a finish.
    let mut text = fixture("stream_text.sse");
    text.extend_from_slice(b"data: {\"candi");
    let (_, complete) = decode_stream(&[&text]).unwrap();
    assert!(!complete);

    let (chunks, complete) = decode_stream(&[]).unwrap();
    assert!(!complete);
    assert!(chunks.is_empty());
}

#[test]
fn every_split_offset_gives_identical_chunks() {
    for name in [
        "stream_text.sse",
        "stream_function_calls.sse",
        "stream_prompt_blocked.sse",
        "stream_cut.sse",
    ] {
        let bytes = fixture(name);
        let whole = decode_stream(&[&bytes]).unwrap();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(
                decode_stream(&[a, b]).unwrap(),
                whole,
                "{name} split at {at}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            decode_stream(&singles).unwrap(),
            whole,
            "{name} byte by byte"
        );
    }
}

proptest::proptest! {
    #[test]
    fn any_multi_split_gives_identical_chunks(
        which in 0usize..6,
        cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..10),
    ) {
        let inputs = [
            fixture("stream_text.sse"),
            fixture("stream_function_calls.sse"),
            fixture("stream_prompt_blocked.sse"),
            fixture("stream_cut.sse"),
            plan_body(&via_mock(
                &chat("mock", true, json!([{"role":"user","content":"x"}])),
                &MockKnobs::default(),
                0,
            ).1),
            // LF-only separators decode the same way.
            String::from_utf8(fixture("stream_text.sse")).unwrap().replace("\r\n", "\n").into_bytes(),
        ];
        let input = &inputs[which];
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for p in points {
            pieces.push(&input[prev..p]);
            prev = p;
        }
        pieces.push(&input[prev..]);
        proptest::prop_assert_eq!(decode_stream(&pieces).unwrap(), decode_stream(&[input]).unwrap());
    }
}

#[test]
fn error_event_inside_a_stream_is_an_error() {
    let mut bytes = fixture("stream_cut.sse");
    bytes.extend_from_slice(
        b"data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n",
    );
    let mut dec = GeminiAdapter.stream_decoder("m");
    let mut out = Vec::new();
    let err = dec.feed(&bytes, &mut out).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(err.status, 503);
    assert!(err.is_retryable());
    assert_eq!(content_text(&out), "Paris is ");
    // The decoder stays failed.
    assert!(dec.feed(b"", &mut out).is_err());
    assert!(dec.finish(&mut out).is_err());

    let err = decode_stream(&[b"data: {not json\n\n"]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadResponse);
}

// === errors ===

#[test]
fn google_error_bodies_map_to_kinds() {
    let cases = [
        ("error_429.json", 429, ErrorKind::RateLimited, Some(30)),
        (
            "error_400_context.json",
            400,
            ErrorKind::ContextLength,
            None,
        ),
        (
            "error_400_invalid.json",
            400,
            ErrorKind::InvalidRequest,
            None,
        ),
        (
            "error_400_precondition.json",
            400,
            ErrorKind::InvalidRequest,
            None,
        ),
        (
            "error_400_api_key.json",
            400,
            ErrorKind::Authentication,
            None,
        ),
        ("error_403.json", 403, ErrorKind::Authentication, None),
        ("error_404.json", 404, ErrorKind::NotFound, None),
        ("error_500.json", 500, ErrorKind::Unavailable, None),
        ("error_503.json", 503, ErrorKind::Unavailable, None),
        ("error_504.json", 504, ErrorKind::Unavailable, None),
        ("error_array_stream.json", 503, ErrorKind::Unavailable, None),
    ];
    for (name, status, kind, retry_after) in cases {
        let body = fixture(name);
        let err = GeminiAdapter.map_error(status, &body);
        assert_eq!(err.kind, kind, "{name}");
        assert_eq!(err.status, status, "{name}");
        assert_eq!(err.retry_after, retry_after, "{name}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let error = if v.is_array() {
            &v[0]["error"]
        } else {
            &v["error"]
        };
        assert_eq!(err.message, error["message"].as_str().unwrap(), "{name}");
    }
    assert!(GeminiAdapter
        .map_error(429, &fixture("error_429.json"))
        .is_retryable());
    assert_eq!(
        GeminiAdapter
            .map_error(400, &fixture("error_400_context.json"))
            .openai_code(),
        Some("context_length_exceeded")
    );
    let err = GeminiAdapter.map_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(err.message, "Gemini answered HTTP 502");
}

// === the native mock through the adapter ===

#[test]
fn mock_chat_decodes_with_usage() {
    let req = chat(
        "mock",
        false,
        json!([{"role":"user","content":"Say something nice"}]),
    );
    let (_, plan) = via_mock(&req, &MockKnobs::default(), 0);
    assert_eq!(plan.status, Some(200));
    let resp = GeminiAdapter
        .decode_response(&plan_body(&plan), "mock")
        .unwrap();
    assert_eq!(resp.id, "chatcmpl-mock-0");
    let text = resp.choices[0].message.text_content();
    assert!(text.starts_with("Tollgate mock tokens"), "{text}");
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
    let usage = resp.usage.unwrap();
    assert_eq!(usage.completion_tokens, 16);
    assert_eq!(usage.completion_tokens, plan.usage.completion_tokens);
    assert_eq!(usage.prompt_tokens, plan.usage.prompt_tokens);
    assert!(usage.prompt_tokens > 0);
}

#[test]
fn mock_stream_decodes_with_timing_and_usage() {
    let knobs = MockKnobs {
        latency: Duration::from_millis(5),
        ttft: Duration::from_millis(7),
        chunk_delay: Duration::from_millis(3),
        chunks: 4,
        ..MockKnobs::default()
    };
    let req = chat(
        "mock",
        true,
        json!([{"role":"user","content":"stream please"}]),
    );
    let (up, plan) = via_mock(&req, &knobs, 3);
    assert!(up.path.ends_with(":streamGenerateContent?alt=sse"));
    match &plan.steps[0] {
        MockStep::Head {
            delay,
            status,
            content_type,
            body_len,
        } => {
            assert_eq!(*delay, Duration::from_millis(5));
            assert_eq!(*status, 200);
            assert_eq!(*content_type, "text/event-stream");
            assert_eq!(*body_len, None);
        }
        other => panic!("{other:?}"),
    }
    let delays: Vec<Duration> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            MockStep::Body { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [7, 3, 3, 3].map(Duration::from_millis).to_vec());
    assert_eq!(plan.steps.last(), Some(&MockStep::End));
    let (chunks, complete) = decode_stream(&[&plan_body(&plan)]).unwrap();
    assert!(complete);
    assert_eq!(content_text(&chunks), "Tollgate mock tokens flow");
    assert_eq!(finishes(&chunks), vec![FinishReason::Stop]);
    let usage = chunks.last().unwrap().usage.unwrap();
    assert_eq!(usage.completion_tokens, 4);
    assert_eq!(usage.completion_tokens, plan.usage.completion_tokens);
    assert_eq!(usage.prompt_tokens, plan.usage.prompt_tokens);
}

#[test]
fn mock_honours_max_tokens() {
    let req = request(json!({
        "model": "mock", "stream": true, "max_tokens": 2,
        "messages": [{"role":"user","content":"x"}]
    }));
    let (_, plan) = via_mock(&req, &MockKnobs::default(), 0);
    let (chunks, complete) = decode_stream(&[&plan_body(&plan)]).unwrap();
    assert!(complete);
    assert_eq!(finishes(&chunks), vec![FinishReason::Length]);
    assert_eq!(plan.usage.completion_tokens, 2);
}

#[test]
fn mock_tool_round_trip() {
    let tools = json!([
        {"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
        {"type":"function","function":{"name":"other"}}
    ]);
    for stream in [false, true] {
        let first = request(json!({
            "model": "mock", "stream": stream, "tools": tools,
            "messages": [{"role":"user","content":"Weather in Paris?"}]
        }));
        let (_, plan) = via_mock(&first, &MockKnobs::default(), 0);
        let (call_id, name, arguments) = if stream {
            let (chunks, complete) = decode_stream(&[&plan_body(&plan)]).unwrap();
            assert!(complete);
            assert_eq!(finishes(&chunks), vec![FinishReason::ToolCalls]);
            let call = chunks
                .iter()
                .flat_map(|c| &c.choices)
                .flat_map(|c| c.delta.tool_calls.iter().flatten())
                .next()
                .unwrap()
                .clone();
            (
                call.id.unwrap(),
                call.function.name.unwrap(),
                call.function.arguments.unwrap(),
            )
        } else {
            let resp = GeminiAdapter
                .decode_response(&plan_body(&plan), "mock")
                .unwrap();
            assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::ToolCalls));
            let call = resp.choices[0].message.tool_calls.as_ref().unwrap()[0].clone();
            (call.id, call.function.name, call.function.arguments)
        };
        assert_eq!(call_id, "call_0");
        assert_eq!(name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&arguments).unwrap(),
            json!({"city": "Paris"})
        );
        assert!(plan.usage.completion_tokens > 0);

        let mut second = first.clone();
        second.messages.push(Message {
            tool_calls: Some(vec![serde_json::from_value(json!({
                "id": call_id, "type": "function",
                "function": {"name": name, "arguments": arguments}
            }))
            .unwrap()]),
            content: None,
            ..Message::text(Role::Assistant, "")
        });
        let mut result = Message::text(Role::Tool, "sunny, 21 C");
        result.tool_call_id = Some(call_id.clone());
        second.messages.push(result);
        let (up, plan) = via_mock(&second, &MockKnobs::default(), 1);
        let sent = body_json(&up);
        assert_eq!(
            sent["contents"][2]["parts"][0]["functionResponse"]["name"],
            "get_weather"
        );
        let text = if stream {
            let (chunks, complete) = decode_stream(&[&plan_body(&plan)]).unwrap();
            assert!(complete);
            assert_eq!(finishes(&chunks), vec![FinishReason::Stop]);
            content_text(&chunks)
        } else {
            let resp = GeminiAdapter
                .decode_response(&plan_body(&plan), "mock")
                .unwrap();
            assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
            resp.choices[0].message.text_content()
        };
        assert_eq!(text, "Tool said: sunny, 21 C");
        // "Tool", " said:", " sunny,", " 21", " C"
        assert_eq!(plan.usage.completion_tokens, 5, "one token per word");
    }

    // An assistant turn last: ordinary text even though tools are offered.
    let req = request(json!({
        "model": "mock", "tools": tools,
        "messages": [{"role":"user","content":"x"},{"role":"assistant","content":"y"}]
    }));
    let (_, plan) = via_mock(&req, &MockKnobs::default(), 0);
    let resp = GeminiAdapter
        .decode_response(&plan_body(&plan), "mock")
        .unwrap();
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
    assert!(resp.choices[0].message.tool_calls.is_none());
}

#[test]
fn mock_errors_are_native_and_classified() {
    for (model, kind, retryable, status_name) in [
        (
            "mock-error-429",
            ErrorKind::RateLimited,
            true,
            "RESOURCE_EXHAUSTED",
        ),
        (
            "mock-error-400",
            ErrorKind::InvalidRequest,
            false,
            "INVALID_ARGUMENT",
        ),
        ("mock-error-500", ErrorKind::Unavailable, true, "INTERNAL"),
        (
            "mock-error-503",
            ErrorKind::Unavailable,
            true,
            "UNAVAILABLE",
        ),
        (
            "mock-error-401",
            ErrorKind::Authentication,
            false,
            "UNAUTHENTICATED",
        ),
        ("mock-error-404", ErrorKind::NotFound, false, "NOT_FOUND"),
    ] {
        let req = chat(model, false, json!([{"role":"user","content":"x"}]));
        let (_, plan) = via_mock(&req, &MockKnobs::default(), 0);
        let status = plan.status.unwrap();
        assert_eq!(status.to_string(), model.trim_start_matches("mock-error-"));
        assert_eq!(plan.usage.total_tokens, 0);
        let body = plan_body(&plan);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["status"], status_name);
        assert_eq!(v["error"]["code"], status);
        let err = GeminiAdapter.map_error(status, &body);
        assert_eq!(err.kind, kind, "{model}");
        assert_eq!(err.is_retryable(), retryable, "{model}");
    }
    // A body Gemini would refuse is a 400 INVALID_ARGUMENT, not retryable.
    let plan = gemini_mock::plan(
        "/v1beta/models/mock:generateContent",
        br#"{"contents":[]}"#,
        &MockKnobs::default(),
        0,
    );
    assert_eq!(plan.status, Some(400));
    let err = GeminiAdapter.map_error(400, &plan_body(&plan));
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(!err.is_retryable());
}

#[test]
fn mock_faults_reset_hang_cut_slow() {
    let msgs = json!([{"role":"user","content":"x"}]);
    let (_, plan) = via_mock(
        &chat("mock-reset", false, msgs.clone()),
        &MockKnobs::default(),
        0,
    );
    assert_eq!(plan.steps, vec![MockStep::Reset]);
    assert_eq!(plan.status, None);
    let (_, plan) = via_mock(
        &chat("mock-hang", true, msgs.clone()),
        &MockKnobs::default(),
        0,
    );
    assert_eq!(plan.steps, vec![MockStep::Hang]);

    let (_, plan) = via_mock(
        &chat("mock-cut", true, msgs.clone()),
        &MockKnobs::default(),
        0,
    );
    assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
    let (chunks, complete) = decode_stream(&[&plan_body(&plan)]).unwrap();
    assert!(!complete, "cut stream has no finishReason");
    assert!(finishes(&chunks).is_empty());
    assert_eq!(plan.usage.completion_tokens, 8);
    assert_eq!(
        chunks.last().unwrap().usage.unwrap().completion_tokens,
        plan.usage.completion_tokens
    );

    let (_, plan) = via_mock(
        &chat("mock-cut", false, msgs.clone()),
        &MockKnobs::default(),
        0,
    );
    assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
    assert_eq!(plan.usage.completion_tokens, 0);
    assert!(GeminiAdapter
        .decode_response(&plan_body(&plan), "mock-cut")
        .is_err());

    let (_, plan) = via_mock(
        &chat("mock-slow", false, msgs.clone()),
        &MockKnobs::default(),
        0,
    );
    assert!(matches!(
        plan.steps[0],
        MockStep::Head { delay, .. } if delay == tollgate_protocol::mock::SLOW_MODEL_LATENCY
    ));

    let (_, plan) = via_mock(
        &chat("mock-slow-body", true, msgs.clone()),
        &MockKnobs::default(),
        0,
    );
    let (chunks, complete) = decode_stream(&[&plan_body(&plan)]).unwrap();
    assert!(complete);
    assert_eq!(finishes(&chunks), vec![FinishReason::Stop]);

    // A knob fault rate of 1/2 fails every second request with that status.
    let knobs = MockKnobs {
        fault: Some(FaultSpec {
            kind: FaultKind::Status(503),
            rate: 0.5,
        }),
        ..MockKnobs::default()
    };
    let statuses: Vec<Option<u16>> = (0..4)
        .map(|i| {
            via_mock(&chat("mock", false, msgs.clone()), &knobs, i)
                .1
                .status
        })
        .collect();
    assert_eq!(statuses, vec![Some(200), Some(503), Some(200), Some(503)]);
}
