//! One conformance suite for every provider adapter, sans-IO: each adapter is paired with the
//! mock that speaks its vendor's wire format, and the same checks run over every pair: a simple
//! chat, a stream decoded under every split of its bytes, a tool-call round trip (plain and
//! streamed), usage in both modes, and error mapping for `mock-error-429` / `mock-error-400`.
//!
//! The table in [`cases`] pairs: OpenAI-compatible and Azure with the OpenAI-format mock
//! (`crate::mock`, routed by path), Anthropic, Gemini and Bedrock with their native mocks.
//! A new vendor joins by adding one `Case`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use tollgate_protocol::chat::{
    ChatChunk, ChatRequest, ChatResponse, Content, FinishReason, FunctionDef, Message, Role, Tool,
    ToolCall,
};
use tollgate_protocol::mock::{self, MockKnobs, MockPlan, MockStep};
use tollgate_protocol::openai::Endpoint;
use tollgate_protocol::providers::anthropic::AnthropicAdapter;
use tollgate_protocol::providers::anthropic_mock;
use tollgate_protocol::providers::azure::AzureAdapter;
use tollgate_protocol::providers::bedrock::BedrockAdapter;
use tollgate_protocol::providers::bedrock_mock;
use tollgate_protocol::providers::gemini::GeminiAdapter;
use tollgate_protocol::providers::gemini_mock;
use tollgate_protocol::providers::openai_compat::{AuthStyle, OpenAiCompatAdapter};
use tollgate_protocol::providers::{Adapter, AwsSigning, ErrorKind, StreamDecoder, Target};

// === the table ===

/// Builds the deployment target for a model id.
type TargetFn = for<'a> fn(&'a str) -> Target<'a>;

/// A vendor mock: `plan(path with query, body, knobs, request_index)`.
type PlanFn = fn(&str, &[u8], &MockKnobs, u64) -> MockPlan;

/// One adapter and the mock that answers in its wire format.
struct Case {
    name: &'static str,
    adapter: Box<dyn Adapter>,
    target: TargetFn,
    plan: PlanFn,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "openai_compat",
            adapter: Box::new(OpenAiCompatAdapter::new(AuthStyle::Bearer)),
            target: openai_target,
            plan: openai_plan,
        },
        Case {
            name: "azure",
            adapter: Box::new(AzureAdapter::new()),
            target: azure_target,
            plan: openai_plan,
        },
        Case {
            name: "gemini",
            adapter: Box::new(GeminiAdapter::new()),
            target: gemini_target,
            plan: gemini_mock::plan,
        },
        Case {
            name: "anthropic",
            adapter: Box::new(AnthropicAdapter),
            target: anthropic_target,
            plan: anthropic_mock::plan,
        },
        Case {
            name: "bedrock",
            adapter: Box::new(BedrockAdapter::new()),
            target: bedrock_target,
            plan: bedrock_mock::plan,
        },
    ]
}

fn openai_target(model: &str) -> Target<'_> {
    Target {
        authority: "127.0.0.1:18000",
        base_path: "/v1",
        model,
        api_key: Some("sk-conformance"),
        api_version: None,
        aws: None,
        now_unix: 1_700_000_000,
    }
}

fn azure_target(model: &str) -> Target<'_> {
    Target {
        authority: "conformance.openai.azure.com",
        base_path: "",
        model,
        api_key: Some("azure-conformance"),
        api_version: None,
        aws: None,
        now_unix: 1_700_000_000,
    }
}

fn anthropic_target(model: &str) -> Target<'_> {
    Target {
        authority: "api.anthropic.com",
        base_path: "",
        model,
        api_key: Some("sk-ant-conformance"),
        api_version: None,
        aws: None,
        now_unix: 1_700_000_000,
    }
}

/// Test credentials (AWS's documented example key pair) and a fixed signing time.
fn bedrock_target(model: &str) -> Target<'_> {
    Target {
        authority: "bedrock-runtime.us-east-1.amazonaws.com",
        base_path: "",
        model,
        api_key: None,
        api_version: None,
        aws: Some(AwsSigning {
            region: "us-east-1",
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            session_token: None,
        }),
        now_unix: 1_700_000_000,
    }
}

fn gemini_target(model: &str) -> Target<'_> {
    Target {
        authority: "generativelanguage.googleapis.com",
        base_path: "",
        model,
        api_key: Some("gemini-conformance"),
        api_version: None,
        aws: None,
        now_unix: 1_700_000_000,
    }
}

/// The OpenAI-format mock behind a path, the way the mock server routes it (Azure's
/// `/openai/deployments/<d>/chat/completions?api-version=..` lands on chat completions too).
fn openai_plan(path: &str, body: &[u8], knobs: &MockKnobs, index: u64) -> MockPlan {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let endpoint = if path.ends_with("/chat/completions") {
        Endpoint::ChatCompletions
    } else if path.ends_with("/completions") {
        Endpoint::Completions
    } else if path.ends_with("/embeddings") {
        Endpoint::Embeddings
    } else {
        return mock::error_plan(404, "unknown route");
    };
    mock::plan(endpoint, body, knobs, index, &mut Vec::new())
}

// === driving one exchange ===

/// What the mock answered: its status and the body bytes it sent, concatenated.
struct Answer {
    status: u16,
    body: Vec<u8>,
    complete: bool,
}

fn exchange(case: &Case, req: &ChatRequest, index: u64) -> Answer {
    let target = (case.target)(&req.model);
    let up = case
        .adapter
        .encode_request(req, &target)
        .unwrap_or_else(|e| panic!("{}: encode failed: {e}", case.name));
    assert_eq!(up.method, "POST", "{}", case.name);
    assert!(up.path.starts_with('/'), "{}: path {}", case.name, up.path);
    assert!(
        up.headers.iter().any(|(n, _)| *n == "host"),
        "{}: host header",
        case.name
    );
    let plan = (case.plan)(&up.path, &up.body, &MockKnobs::default(), index);
    let mut body = Vec::new();
    let mut complete = false;
    for step in &plan.steps {
        match step {
            MockStep::Body { bytes, .. } => body.extend_from_slice(bytes),
            MockStep::End => complete = true,
            _ => {}
        }
    }
    let status = plan
        .status
        .unwrap_or_else(|| panic!("{}: the mock sent no head", case.name));
    Answer {
        status,
        body,
        complete,
    }
}

fn decode(case: &Case, req: &ChatRequest, index: u64) -> ChatResponse {
    let answer = exchange(case, req, index);
    assert_eq!(
        answer.status,
        200,
        "{}: {}",
        case.name,
        String::from_utf8_lossy(&answer.body)
    );
    assert!(answer.complete, "{}", case.name);
    case.adapter
        .decode_response(&answer.body, &req.model)
        .unwrap_or_else(|e| panic!("{}: decode failed: {e:?}", case.name))
}

/// Feeds `pieces` to a fresh decoder; returns the chunks and `finish()`'s verdict.
fn feed_pieces<'a>(
    case: &Case,
    model: &str,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<ChatChunk>, bool) {
    let mut decoder: Box<dyn StreamDecoder> = case.adapter.stream_decoder(model);
    let mut out = Vec::new();
    for piece in pieces {
        decoder
            .feed(piece, &mut out)
            .unwrap_or_else(|e| panic!("{}: feed failed: {e:?}", case.name));
    }
    let complete = decoder
        .finish(&mut out)
        .unwrap_or_else(|e| panic!("{}: finish failed: {e:?}", case.name));
    (out, complete)
}

fn stream(case: &Case, req: &ChatRequest, index: u64) -> (Vec<u8>, Vec<ChatChunk>) {
    let answer = exchange(case, req, index);
    assert_eq!(
        answer.status,
        200,
        "{}: {}",
        case.name,
        String::from_utf8_lossy(&answer.body)
    );
    let (chunks, complete) = feed_pieces(case, &req.model, [&answer.body[..]]);
    assert!(
        complete,
        "{}: finish() must report a complete stream",
        case.name
    );
    (answer.body, chunks)
}

// === requests ===

fn chat(model: &str, stream: bool) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![
            Message::text(Role::System, "You are terse."),
            Message::text(Role::User, "Say hello to the gateway please."),
        ],
        stream: stream.then_some(true),
        max_tokens: Some(100),
        ..ChatRequest::default()
    }
}

fn weather_tool() -> Tool {
    Tool {
        kind: "function".to_owned(),
        function: FunctionDef {
            name: "get_weather".to_owned(),
            description: Some("Current weather in a city".to_owned()),
            parameters: Some(json!({
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"]
            })),
            strict: None,
        },
    }
}

fn tool_request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "mock".to_owned(),
        messages: vec![Message::text(Role::User, "What is the weather in Paris?")],
        tools: Some(vec![weather_tool()]),
        stream: stream.then_some(true),
        max_tokens: Some(100),
        ..ChatRequest::default()
    }
}

/// The follow-up turn: the assistant's tool call and the tool's answer "sunny".
fn tool_result_request(call: &ToolCall, stream: bool) -> ChatRequest {
    let mut req = tool_request(stream);
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.content = None;
    assistant.tool_calls = Some(vec![call.clone()]);
    let mut result = Message::text(Role::Tool, "sunny");
    result.tool_call_id = Some(call.id.clone());
    result.name = Some(call.function.name.clone());
    req.messages.push(assistant);
    req.messages.push(result);
    req
}

fn text_of(resp: &ChatResponse) -> String {
    resp.choices
        .first()
        .map(|c| c.message.text_content())
        .unwrap_or_default()
}

fn streamed_text(chunks: &[ChatChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect()
}

fn streamed_finish(chunks: &[ChatChunk]) -> Option<FinishReason> {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .find_map(|c| c.finish_reason)
}

/// Reassembles the first streamed tool call: id and name from its pieces, arguments joined.
fn streamed_tool_call(case: &Case, chunks: &[ChatChunk]) -> ToolCall {
    let mut id = None;
    let mut name = String::new();
    let mut arguments = String::new();
    let mut pieces = 0;
    for delta in chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.tool_calls.as_ref())
        .flatten()
        .filter(|d| d.index == 0)
    {
        if id.is_none() {
            id = delta.id.clone();
        }
        if let Some(n) = &delta.function.name {
            name.push_str(n);
        }
        if let Some(a) = &delta.function.arguments {
            arguments.push_str(a);
            pieces += 1;
        }
    }
    assert!(pieces >= 1, "{}: no streamed argument pieces", case.name);
    ToolCall {
        id: id.unwrap_or_else(|| panic!("{}: streamed tool call without id", case.name)),
        kind: "function".to_owned(),
        function: tollgate_protocol::chat::FunctionCall { name, arguments },
    }
}

fn assert_paris(case: &Case, call: &ToolCall) {
    assert_eq!(call.function.name, "get_weather", "{}", case.name);
    assert!(!call.id.is_empty(), "{}", case.name);
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap_or_else(|e| {
        panic!(
            "{}: arguments {:?} are not JSON: {e}",
            case.name, call.function.arguments
        )
    });
    assert_eq!(args, json!({"city": "Paris"}), "{}", case.name);
}

// === (a) simple chat, (d) usage ===

#[test]
fn simple_chat() {
    for case in cases() {
        let resp = decode(&case, &chat("mock", false), 0);
        assert_eq!(resp.object, "chat.completion", "{}", case.name);
        assert_eq!(resp.choices.len(), 1, "{}", case.name);
        let choice = &resp.choices[0];
        assert_eq!(choice.message.role, Role::Assistant, "{}", case.name);
        assert!(
            !text_of(&resp).trim().is_empty(),
            "{}: empty text",
            case.name
        );
        assert_eq!(
            choice.finish_reason,
            Some(FinishReason::Stop),
            "{}",
            case.name
        );
        let usage = resp
            .usage
            .unwrap_or_else(|| panic!("{}: no usage", case.name));
        assert!(usage.prompt_tokens > 0, "{}: {usage:?}", case.name);
        assert!(usage.completion_tokens > 0, "{}: {usage:?}", case.name);
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens,
            "{}",
            case.name
        );
    }
}

// === (b) streaming under every split, (d) usage ===

#[test]
fn streaming_is_split_invariant() {
    for case in cases() {
        let req = chat("mock", true);
        let (body, reference) = stream(&case, &req, 0);

        // Shape: role first, text deltas, a finish reason, a usage chunk.
        let first = reference
            .first()
            .unwrap_or_else(|| panic!("{}: no chunks", case.name));
        assert_eq!(
            first.choices.first().and_then(|c| c.delta.role),
            Some(Role::Assistant),
            "{}: the first chunk carries the role",
            case.name
        );
        assert!(
            reference
                .iter()
                .all(|c| c.object == "chat.completion.chunk"),
            "{}",
            case.name
        );
        let text = streamed_text(&reference);
        assert!(!text.trim().is_empty(), "{}: no text deltas", case.name);
        let text_chunks = reference
            .iter()
            .flat_map(|c| &c.choices)
            .filter(|c| c.delta.content.as_deref().is_some_and(|t| !t.is_empty()))
            .count();
        assert!(text_chunks >= 2, "{}: {text_chunks} text deltas", case.name);
        assert_eq!(
            streamed_finish(&reference),
            Some(FinishReason::Stop),
            "{}",
            case.name
        );
        let usage = reference
            .iter()
            .rev()
            .find_map(|c| c.usage)
            .unwrap_or_else(|| panic!("{}: no usage chunk", case.name));
        assert!(
            usage.prompt_tokens > 0 && usage.completion_tokens > 0,
            "{}: {usage:?}",
            case.name
        );

        // Same chunks whatever the reads look like: byte by byte, and every two-piece split.
        let (bytewise, complete) = feed_pieces(&case, &req.model, body.chunks(1));
        assert!(complete, "{}", case.name);
        assert_eq!(bytewise, reference, "{}: byte-by-byte", case.name);
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            let (split, complete) = feed_pieces(&case, &req.model, [a, b]);
            assert!(complete, "{}: split at {at}", case.name);
            assert_eq!(split, reference, "{}: split at {at}", case.name);
        }
        for read in [3, 7, 64, 1500] {
            let (split, _) = feed_pieces(&case, &req.model, body.chunks(read));
            assert_eq!(split, reference, "{}: reads of {read}", case.name);
        }
    }
}

#[test]
fn truncated_stream_is_reported() {
    for case in cases() {
        let req = chat("mock", true);
        let (body, _) = stream(&case, &req, 0);
        // Half a stream never reaches its terminal event.
        let mut decoder = case.adapter.stream_decoder(&req.model);
        let mut out = Vec::new();
        let fed = decoder.feed(&body[..body.len() / 2], &mut out);
        let finished = fed.and_then(|()| decoder.finish(&mut out));
        assert!(
            !matches!(finished, Ok(true)),
            "{}: a cut stream must not look complete",
            case.name
        );
    }
}

// === (c) tool-call round trip ===

#[test]
fn tool_call_round_trip() {
    for case in cases() {
        let resp = decode(&case, &tool_request(false), 0);
        let choice = &resp.choices[0];
        assert_eq!(
            choice.finish_reason,
            Some(FinishReason::ToolCalls),
            "{}",
            case.name
        );
        let calls = choice
            .message
            .tool_calls
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no tool calls in {resp:?}", case.name));
        assert_eq!(calls.len(), 1, "{}", case.name);
        assert_paris(&case, &calls[0]);
        assert!(resp.usage.is_some(), "{}: usage", case.name);

        let resp = decode(&case, &tool_result_request(&calls[0], false), 1);
        let text = text_of(&resp);
        assert!(text.contains("sunny"), "{}: {text:?}", case.name);
        assert_eq!(
            resp.choices[0].finish_reason,
            Some(FinishReason::Stop),
            "{}",
            case.name
        );
    }
}

#[test]
fn streamed_tool_call_round_trip() {
    for case in cases() {
        let (_, chunks) = stream(&case, &tool_request(true), 0);
        let call = streamed_tool_call(&case, &chunks);
        assert_paris(&case, &call);
        assert_eq!(
            streamed_finish(&chunks),
            Some(FinishReason::ToolCalls),
            "{}",
            case.name
        );
        assert!(
            chunks.iter().any(|c| c.usage.is_some()),
            "{}: usage chunk",
            case.name
        );

        let (_, chunks) = stream(&case, &tool_result_request(&call, true), 1);
        let text = streamed_text(&chunks);
        assert!(text.contains("sunny"), "{}: {text:?}", case.name);
        assert!(
            chunks.iter().any(|c| c.usage.is_some()),
            "{}: usage chunk",
            case.name
        );
    }
}

/// A tool result given as content parts reads the same as plain text.
#[test]
fn tool_result_as_parts() {
    for case in cases() {
        let call = ToolCall {
            id: "call_mock_1".to_owned(),
            kind: "function".to_owned(),
            function: tollgate_protocol::chat::FunctionCall {
                name: "get_weather".to_owned(),
                arguments: r#"{"city":"Paris"}"#.to_owned(),
            },
        };
        let mut req = tool_result_request(&call, false);
        if let Some(last) = req.messages.last_mut() {
            last.content = Some(Content::Parts(vec![
                tollgate_protocol::chat::ContentPart::Text {
                    text: "sunny".to_owned(),
                },
            ]));
        }
        let text = text_of(&decode(&case, &req, 0));
        assert!(text.contains("sunny"), "{}: {text:?}", case.name);
    }
}

// === (e), (f) errors ===

#[test]
fn rate_limit_is_retryable() {
    for case in cases() {
        for streaming in [false, true] {
            let answer = exchange(&case, &chat("mock-error-429", streaming), 0);
            assert_eq!(answer.status, 429, "{}", case.name);
            let err = case.adapter.map_error(answer.status, &answer.body);
            assert_eq!(err.kind, ErrorKind::RateLimited, "{}: {err:?}", case.name);
            assert!(err.is_retryable(), "{}", case.name);
            assert_eq!(err.status, 429, "{}", case.name);
            assert!(!err.message.is_empty(), "{}", case.name);
        }
    }
}

#[test]
fn bad_request_is_not_retryable() {
    for case in cases() {
        for streaming in [false, true] {
            let answer = exchange(&case, &chat("mock-error-400", streaming), 0);
            assert_eq!(answer.status, 400, "{}", case.name);
            let err = case.adapter.map_error(answer.status, &answer.body);
            assert_eq!(
                err.kind,
                ErrorKind::InvalidRequest,
                "{}: {err:?}",
                case.name
            );
            assert!(!err.is_retryable(), "{}", case.name);
            assert_eq!(err.status, 400, "{}", case.name);
        }
    }
}

#[test]
fn server_errors_are_retryable() {
    for case in cases() {
        let answer = exchange(&case, &chat("mock-error-503", false), 0);
        assert_eq!(answer.status, 503, "{}", case.name);
        let err = case.adapter.map_error(answer.status, &answer.body);
        assert_eq!(err.kind, ErrorKind::Unavailable, "{}: {err:?}", case.name);
        assert!(err.is_retryable(), "{}", case.name);
    }
}

#[test]
fn every_case_has_a_distinct_name() {
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len());
    assert_eq!(
        names,
        ["anthropic", "azure", "bedrock", "gemini", "openai_compat"],
        "every adapter is covered"
    );
    for case in &cases {
        assert!(!case.adapter.name().is_empty(), "{}", case.name);
    }
}
