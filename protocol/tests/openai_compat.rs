//! Fixture tests for the OpenAI-compatible and Azure adapters: recorded-shape bodies from the
//! published references (see `fixtures/openai/README.md` and `fixtures/azure/README.md`) read
//! through the public `Adapter` API, streams fed in every split, errors mapped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use tollgate_protocol::chat::{
    ChatChunk, ChatRequest, Content, FinishReason, FunctionDef, Message, Role, StreamOptions, Tool,
    ToolChoice,
};
use tollgate_protocol::providers::azure::AzureAdapter;
use tollgate_protocol::providers::openai_compat::{AuthStyle, OpenAiCompatAdapter};
use tollgate_protocol::providers::presets::{preset, PRESETS};
use tollgate_protocol::providers::{Adapter, ErrorKind, ProviderError, Target};

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn openai() -> OpenAiCompatAdapter {
    OpenAiCompatAdapter::new(AuthStyle::Bearer)
}

fn target<'a>(model: &'a str) -> Target<'a> {
    Target {
        authority: "api.openai.com",
        base_path: "/v1",
        model,
        api_key: Some("sk-test"),
        api_version: None,
        aws: None,
        now_unix: 0,
    }
}

fn azure_target<'a>(deployment: &'a str, version: Option<&'a str>) -> Target<'a> {
    Target {
        authority: "contoso.openai.azure.com",
        base_path: "",
        model: deployment,
        api_key: Some("azure-key"),
        api_version: version,
        aws: None,
        now_unix: 0,
    }
}

/// Decodes a stream fixture in one piece, byte by byte and split at every offset; all must
/// agree. Returns the chunks and whether the stream was complete.
fn stream(adapter: &dyn Adapter, bytes: &[u8]) -> Result<(Vec<ChatChunk>, bool), ProviderError> {
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut d = adapter.stream_decoder("fallback-model");
        let mut out = Vec::new();
        for p in pieces {
            d.feed(p, &mut out)?;
        }
        let complete = d.finish(&mut out)?;
        Ok::<_, ProviderError>((out, complete))
    };
    let whole = run(&mut std::iter::once(bytes));
    let bytewise = run(&mut bytes.chunks(1));
    assert_eq!(whole, bytewise, "byte-by-byte");
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(run(&mut [a, b].into_iter()), whole, "split at {at}");
    }
    whole
}

fn text(chunks: &[ChatChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect()
}

fn finish(chunks: &[ChatChunk]) -> Vec<FinishReason> {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.finish_reason)
        .collect()
}

fn usage_chunks(chunks: &[ChatChunk]) -> Vec<&ChatChunk> {
    chunks.iter().filter(|c| c.usage.is_some()).collect()
}

// === requests ===

#[test]
fn request_body_is_the_openai_shape() {
    let req = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::text(Role::System, "be brief"),
            Message::text(Role::User, "weather?"),
        ],
        stream: Some(true),
        temperature: Some(0.2),
        max_completion_tokens: Some(50),
        tools: Some(vec![Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: "get_weather".into(),
                description: None,
                parameters: Some(json!({"type":"object"})),
                strict: Some(true),
            },
        }]),
        tool_choice: Some(ToolChoice::Mode("auto".into())),
        extra: [("seed".to_owned(), json!(7))].into_iter().collect(),
        ..ChatRequest::default()
    };
    let up = openai()
        .encode_request(&req, &target("gpt-4o-mini"))
        .unwrap();
    assert_eq!(up.path, "/v1/chat/completions");
    let headers: Vec<(&str, &str)> = up.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert!(headers.contains(&("authorization", "Bearer sk-test")));
    assert!(headers.contains(&("content-type", "application/json")));
    assert!(headers.contains(&("accept", "text/event-stream")));
    let body: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather?"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.2,
            "max_completion_tokens": 50,
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": true}}],
            "tool_choice": "auto",
            "seed": 7
        })
    );
}

#[test]
fn client_stream_options_are_kept_and_usage_forced() {
    let mut extra = serde_json::Map::new();
    extra.insert("include_obfuscation".into(), json!(false));
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, "x")],
        stream: Some(true),
        stream_options: Some(StreamOptions {
            include_usage: Some(false),
            extra,
        }),
        ..ChatRequest::default()
    };
    let up = openai().encode_request(&req, &target("m")).unwrap();
    let body: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(
        body["stream_options"],
        json!({"include_usage": true, "include_obfuscation": false})
    );
}

#[test]
fn azure_request_addressing() {
    let req = ChatRequest {
        model: "gpt-4o".into(),
        messages: vec![Message::text(Role::User, "x")],
        ..ChatRequest::default()
    };
    let up = AzureAdapter::new()
        .encode_request(&req, &azure_target("prod-gpt4o", None))
        .unwrap();
    assert_eq!(
        up.path,
        "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    );
    let headers: Vec<(&str, &str)> = up.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert!(headers.contains(&("api-key", "azure-key")));
    assert!(headers.contains(&("host", "contoso.openai.azure.com")));
    assert!(!headers.iter().any(|(n, _)| *n == "authorization"));
    let up = AzureAdapter::new()
        .encode_request(&req, &azure_target("d", Some("2025-04-01-preview")))
        .unwrap();
    assert!(up.path.ends_with("?api-version=2025-04-01-preview"));
    assert_eq!(AzureAdapter::new().name(), "azure");
    assert_eq!(openai().name(), "openai");
}

// === OpenAI responses ===

#[test]
fn openai_chat_response() {
    let r = openai()
        .decode_response(&fixture("openai/chat_response.json"), "gpt-4.1")
        .unwrap();
    assert_eq!(r.id, "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT");
    assert_eq!(r.created, 1741569952);
    assert_eq!(
        r.model, "gpt-4.1",
        "the requested model is echoed, like every adapter"
    );
    assert_eq!(r.choices.len(), 1);
    assert_eq!(
        r.choices[0].message.content,
        Some(Content::Text("Hello! How can I assist you today?".into()))
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (19, 10, 29)
    );
    assert_eq!(u.cached_tokens(), 0);
}

#[test]
fn openai_tool_call_response() {
    let r = openai()
        .decode_response(&fixture("openai/tool_call_response.json"), "m")
        .unwrap();
    let c = &r.choices[0];
    assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(c.message.content, None);
    let call = &c.message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "call_abc123");
    assert_eq!(call.kind, "function");
    assert_eq!(call.function.name, "get_current_weather");
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(args, json!({"location": "Boston, MA"}));
    assert_eq!(r.usage.unwrap().cached_tokens(), 64);
}

#[test]
fn compat_minimal_response_gets_defaults() {
    let r = openai()
        .decode_response(&fixture("openai/compat_minimal_response.json"), "fallback")
        .unwrap();
    assert!(!r.id.is_empty());
    assert_eq!(r.object, "chat.completion");
    assert_eq!(r.created, 0);
    assert_eq!(r.model, "fallback", "the requested model is echoed");
    let m = &r.choices[0].message;
    assert_eq!(m.role, Role::Assistant);
    assert_eq!(m.text_content(), "The answer is 4.");
    assert_eq!(m.reasoning_content.as_deref(), Some("2 plus 2 is 4."));
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = r.usage.unwrap();
    assert_eq!(u.total_tokens, 21, "total computed when missing");
    assert_eq!(u.cached_tokens(), 8, "DeepSeek cache hits count as cached");
}

#[test]
fn ollama_tool_call_with_object_arguments() {
    let r = openai()
        .decode_response(&fixture("openai/ollama_tool_response.json"), "llama3.1")
        .unwrap();
    let call = &r.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert!(!call.id.is_empty(), "a missing id is filled");
    assert_eq!(call.kind, "function");
    assert_eq!(call.function.name, "get_weather");
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
}

#[test]
fn malformed_bodies_are_bad_responses() {
    for body in [&b"not json"[..], b"{}", b"{\"choices\":7}", b""] {
        let e = openai().decode_response(body, "m").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadResponse, "{body:?}");
        assert_eq!(e.status, 502);
    }
    // An error object in a 200 body is the error it describes.
    let e = openai()
        .decode_response(
            br#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            "m",
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
}

// === OpenAI streams ===

#[test]
fn openai_stream_with_usage() {
    let (chunks, complete) = stream(&openai(), &fixture("openai/chat_stream_usage.sse")).unwrap();
    assert!(complete);
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    assert!(chunks.iter().all(|c| c.id == "chatcmpl-123"));
    assert!(chunks.iter().all(|c| c.created == 1694268190));
    assert_eq!(text(&chunks), "Hello there");
    assert_eq!(finish(&chunks), [FinishReason::Stop]);
    let usage = usage_chunks(&chunks);
    assert_eq!(usage.len(), 1);
    assert!(usage[0].choices.is_empty());
    let u = usage[0].usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (9, 2, 11)
    );
    assert!(std::ptr::eq(usage[0], chunks.last().unwrap()));
}

#[test]
fn openai_tool_call_stream() {
    let (chunks, complete) = stream(&openai(), &fixture("openai/tool_call_stream.sse")).unwrap();
    assert!(complete);
    let deltas: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.tool_calls.as_ref())
        .flatten()
        .collect();
    assert_eq!(
        deltas[0].id.as_deref(),
        Some("call_DdmO9pD3xa9XTPNJ32zg2hcA")
    );
    assert_eq!(deltas[0].kind.as_deref(), Some("function"));
    assert_eq!(deltas[0].function.name.as_deref(), Some("get_weather"));
    assert!(deltas[1..].iter().all(|d| d.id.is_none() && d.index == 0));
    let args: String = deltas
        .iter()
        .filter_map(|d| d.function.arguments.as_deref())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "Paris, France"})
    );
    assert_eq!(finish(&chunks), [FinishReason::ToolCalls]);
    assert_eq!(usage_chunks(&chunks).len(), 1);
}

#[test]
fn groq_usage_under_x_groq_becomes_a_usage_chunk() {
    let (chunks, complete) = stream(&openai(), &fixture("openai/groq_stream.sse")).unwrap();
    assert!(complete);
    assert_eq!(text(&chunks), "Fast");
    let usage = usage_chunks(&chunks);
    assert_eq!(usage.len(), 1);
    assert!(usage[0].choices.is_empty());
    let u = usage[0].usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (40, 1, 41)
    );
    // The finish chunk itself does not carry usage: one place to read it.
    assert!(chunks
        .iter()
        .filter(|c| !c.choices.is_empty())
        .all(|c| c.usage.is_none()));
}

#[test]
fn compat_stream_quirks() {
    let (chunks, complete) =
        stream(&openai(), &fixture("openai/compat_stream_quirks.sse")).unwrap();
    assert!(
        complete,
        "`[DONE] ` with a trailing space still ends the stream"
    );
    assert!(chunks.iter().all(|c| c.model == "fallback-model"));
    assert!(chunks
        .iter()
        .all(|c| !c.id.is_empty() && c.id == chunks[0].id));
    assert_eq!(text(&chunks), "Hi");
    let call = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .find_map(|c| c.delta.tool_calls.as_ref())
        .unwrap();
    assert_eq!(call[0].index, 0);
    assert_eq!(call[0].id.as_deref(), Some("call_0"));
    assert_eq!(
        serde_json::from_str::<Value>(call[0].function.arguments.as_deref().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish(&chunks), [FinishReason::ToolCalls]);
    let u = usage_chunks(&chunks)[0].usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (5, 3, 8)
    );
}

#[test]
fn error_event_in_stream_is_an_error() {
    let bytes = fixture("openai/stream_error.sse");
    let mut d = openai().stream_decoder("m");
    let mut out = Vec::new();
    let e = d.feed(&bytes, &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.is_retryable());
    assert!(e.message.contains("server had an error"));
    assert_eq!(text(&out), "Par", "chunks before the error are kept");
}

#[test]
fn stream_without_done_is_incomplete() {
    let bytes = fixture("openai/chat_stream_usage.sse");
    let cut = &bytes[..bytes.len() - "data: [DONE]\n\n".len()];
    let (chunks, complete) = stream(&openai(), cut).unwrap();
    assert!(!complete);
    assert_eq!(
        usage_chunks(&chunks).len(),
        1,
        "usage that arrived still counts"
    );
    let (_, complete) = stream(&openai(), &bytes[..bytes.len() - 3]).unwrap();
    assert!(!complete, "an unterminated [DONE] event is not dispatched");
}

#[test]
fn garbage_chunk_is_a_bad_response() {
    let mut d = openai().stream_decoder("m");
    let e = d.feed(b"data: {nope\n\n", &mut Vec::new()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
}

// === OpenAI errors ===

#[test]
fn openai_error_mapping() {
    let a = openai();
    let e = a.map_error(400, &fixture("openai/error_context_length.json"));
    assert_eq!(e.kind, ErrorKind::ContextLength);
    assert_eq!(e.status, 400);
    assert!(!e.is_retryable());

    let e = a.map_error(429, &fixture("openai/error_rate_limit.json"));
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.is_retryable());
    assert_eq!(e.retry_after, Some(1), "253ms rounds up to one second");

    let e = a.map_error(429, &fixture("openai/error_insufficient_quota.json"));
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.message.contains("insufficient_quota"), "{}", e.message);

    let e = a.map_error(401, &fixture("openai/error_invalid_api_key.json"));
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert!(
        !e.message.contains("sk-"),
        "never echo key fragments: {}",
        e.message
    );

    let e = a.map_error(404, &fixture("openai/error_model_not_found.json"));
    assert_eq!(e.kind, ErrorKind::NotFound);

    let e = a.map_error(400, &fixture("openai/vllm_error.json"));
    assert_eq!(
        e.kind,
        ErrorKind::ContextLength,
        "matched on vLLM's message"
    );

    let e = a.map_error(404, &fixture("openai/ollama_error.json"));
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("llama9"));

    let e = a.map_error(
        400,
        br#"{"error":{"message":"flagged","type":"invalid_request_error","code":"content_policy_violation"}}"#,
    );
    assert_eq!(e.kind, ErrorKind::ContentFilter);

    for (status, kind) in [
        (500, ErrorKind::Unavailable),
        (503, ErrorKind::Unavailable),
        (422, ErrorKind::InvalidRequest),
    ] {
        let e = a.map_error(status, b"<html>Bad Gateway</html>");
        assert_eq!(e.kind, kind, "{status}");
        assert!(e.message.contains("Bad Gateway"));
    }
    let e = a.map_error(302, b"");
    assert_eq!((e.kind, e.status), (ErrorKind::BadResponse, 502));
    let e = a.map_error(400, &vec![b'x'; 100_000]);
    assert!(e.message.len() < 1100, "upstream messages are clipped");
}

// === Azure ===

#[test]
fn azure_response_with_filter_results() {
    let r = AzureAdapter::new()
        .decode_response(&fixture("azure/chat_response.json"), "prod")
        .unwrap();
    assert_eq!(r.model, "prod");
    assert_eq!(
        r.choices[0].message.text_content(),
        "Yes, customer managed keys are supported by Azure OpenAI."
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(r.usage.unwrap().total_tokens, 39);
}

#[test]
fn azure_content_filter_finish_passes_through() {
    let r = AzureAdapter::new()
        .decode_response(&fixture("azure/content_filter_finish.json"), "prod")
        .unwrap();
    assert_eq!(
        r.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(r.choices[0].message.content, None);
    assert_eq!(r.choices[0].message.role, Role::Assistant);

    let (chunks, complete) = stream(
        &AzureAdapter::new(),
        &fixture("azure/content_filter_stream.sse"),
    )
    .unwrap();
    assert!(complete);
    assert_eq!(text(&chunks), "The battle");
    assert_eq!(finish(&chunks), [FinishReason::ContentFilter]);
}

#[test]
fn azure_stream_drops_the_prompt_filter_chunk() {
    let (chunks, complete) =
        stream(&AzureAdapter::new(), &fixture("azure/chat_stream.sse")).unwrap();
    assert!(complete);
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    assert!(
        chunks.iter().all(|c| c.id == "chatcmpl-AzStream1"),
        "the empty id of the filter chunk is not adopted"
    );
    assert_eq!(text(&chunks), "Hello from Azure");
    assert_eq!(finish(&chunks), [FinishReason::Stop]);
    let usage = usage_chunks(&chunks);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].usage.unwrap().total_tokens, 15);
}

#[test]
fn azure_error_mapping() {
    let a = AzureAdapter::new();
    let e = a.map_error(400, &fixture("azure/error_content_filter.json"));
    assert_eq!(e.kind, ErrorKind::ContentFilter);
    assert_eq!(e.status, 400);
    assert!(!e.is_retryable());
    assert_eq!(e.openai_code(), Some("content_filter"));

    let e = a.map_error(429, &fixture("azure/error_rate_limit.json"));
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(6));

    let e = a.map_error(404, &fixture("azure/error_deployment_not_found.json"));
    assert_eq!(e.kind, ErrorKind::NotFound);

    let e = a.map_error(401, &fixture("azure/error_unauthorized.json"));
    assert_eq!(e.kind, ErrorKind::Authentication);
}

// === presets ===

#[test]
fn presets_resolve() {
    assert_eq!(PRESETS.len(), 11);
    let openai = preset("openai").unwrap();
    assert_eq!(openai.base_url, "https://api.openai.com/v1");
    assert_eq!(openai.env_base_url, "OPENAI_BASE_URL");
    assert_eq!(openai.env_api_key, "OPENAI_API_KEY");
    assert_eq!(preset("vllm").unwrap().base_url, "http://127.0.0.1:8000/v1");
    assert_eq!(
        preset("ollama").unwrap().base_url,
        "http://127.0.0.1:11434/v1"
    );
    assert_eq!(
        preset("lmstudio").unwrap().base_url,
        "http://127.0.0.1:1234/v1"
    );
    for name in [
        "groq",
        "mistral",
        "together",
        "deepseek",
        "fireworks",
        "openrouter",
        "xai",
    ] {
        let p = preset(name).unwrap();
        assert_eq!(p.auth, AuthStyle::Bearer, "{name}");
        assert!(p.base_url.starts_with("https://"), "{name}");
    }
    // A preset's auth style drives the adapter.
    let adapter = OpenAiCompatAdapter::new(preset("ollama").unwrap().auth);
    let req = ChatRequest {
        model: "llama3".into(),
        messages: vec![Message::text(Role::User, "x")],
        ..ChatRequest::default()
    };
    let up = adapter.encode_request(&req, &target("llama3")).unwrap();
    assert!(!up.headers.iter().any(|(n, _)| *n == "authorization"));
}

// === property: any split of any fixture stream ===

proptest::proptest! {
    #[test]
    fn any_multi_split_decodes_the_same(cuts in proptest::collection::vec(0usize..4096, 0..12)) {
        for (adapter, path) in [
            (&openai() as &dyn Adapter, "openai/tool_call_stream.sse"),
            (&openai(), "openai/compat_stream_quirks.sse"),
            (&AzureAdapter::new(), "azure/chat_stream.sse"),
        ] {
            let bytes = fixture(path);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts {
                pieces.push(&bytes[start..cut]);
                start = cut;
            }
            pieces.push(&bytes[start..]);
            let run = |pieces: &[&[u8]]| {
                let mut d = adapter.stream_decoder("m");
                let mut out = Vec::new();
                for p in pieces {
                    d.feed(p, &mut out).unwrap();
                }
                let complete = d.finish(&mut out).unwrap();
                (out, complete)
            };
            proptest::prop_assert_eq!(run(&pieces), run(&[&bytes[..]]), "{}", path);
        }
    }
}
