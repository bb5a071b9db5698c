//! The mock provider speaking Bedrock Runtime natively: plans answers to `Converse` (JSON) and
//! `ConverseStream` (`application/vnd.amazon.eventstream` frames with correct CRCs), with
//! Bedrock's own error bodies, so the Bedrock adapter can be exercised end to end without AWS.
//!
//! Like `crate::mock`, it must never read a clock, draw randomness or touch a socket: the same
//! request sequence always yields the same plans. It cannot see request headers, so it does not
//! check signatures. Faults and knobs follow `crate::mock` (`fault_for`); tool calls follow the
//! conformance convention shared by every vendor mock (see [`plan`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::bedrock::CONTENT_TYPE_EVENTSTREAM;
use super::eventstream::write_event;
use crate::mock::{
    body_plan, fault_for, no_answer_plan, FaultKind, MockKnobs, MockPlan, MockStep,
    CONTENT_TYPE_JSON, SLOW_BODY_MAX_PIECES, SLOW_BODY_PIECE_BYTES, SLOW_BODY_PIECE_DELAY,
};
use crate::openai::Usage;

/// `toolUseId` of the tool call the mock makes (the shared conformance convention).
pub const MOCK_TOOL_USE_ID: &str = "call_mock_1";

/// Input of the tool call the mock makes, as JSON text.
pub const MOCK_TOOL_INPUT: &str = r#"{"city":"Paris"}"#;

/// Prefix of the mock's answer to a tool result: `Tool said: <result text>`.
pub const TOOL_SAID_PREFIX: &str = "Tool said: ";

/// The generated text cycles through these pieces; one piece is one completion "token". Same
/// words as `crate::mock` (whose list is private), so every vendor mock says the same thing.
const WORDS: &[&str] = &[
    " Tollgate",
    " mock",
    " tokens",
    " flow",
    " through",
    " the",
    " gateway",
    " like",
    " water",
    " through",
    " well",
    " placed",
    " pipes",
    ".",
];

/// What the request asked for, as far as the mock cares.
struct Inspected {
    prompt_tokens: u64,
    max_tokens: Option<u64>,
    reply: Reply,
}

enum Reply {
    /// The usual generated text.
    Words,
    /// Call this tool with [`MOCK_TOOL_INPUT`].
    CallTool(String),
    /// Answer a tool result with `Tool said: <text>`.
    ToolSaid(String),
}

/// The answer before framing: streamed deltas (each with the tokens it counts for) and the
/// stop reason.
struct Answer {
    kind: AnswerKind,
    deltas: Vec<(String, u64)>,
    stop_reason: &'static str,
}

enum AnswerKind {
    Text,
    Tool(String),
}

impl Answer {
    fn completion_tokens(&self) -> u64 {
        self.deltas.iter().map(|d| d.1).sum()
    }
}

// === plan ===

/// Plans the answer to one Bedrock Runtime request: `path` is the request path
/// (`[base]/model/<percent-encoded model id>/converse` or `.../converse-stream`), `body` the
/// Converse request, `request_index` counts requests from 0 (it drives the fault rate).
///
/// Model-name conventions and knob faults come from [`crate::mock::fault_for`]:
/// `mock-error-<status>` answers that status with Bedrock's `{"message": ...}` body,
/// `mock-reset` resets before any byte, `mock-cut` sends half the stream (never `messageStop`)
/// or half the JSON body and resets, `mock-hang` never answers, `mock-slow` waits longer,
/// `mock-slow-body` trickles the body. A body Bedrock would refuse gets a 400; an unknown
/// operation a 404.
///
/// Tool convention shared by every vendor mock: when the request offers tools and the last
/// message is a user turn with text, the answer is exactly one `toolUse` of the first tool, id
/// [`MOCK_TOOL_USE_ID`], input [`MOCK_TOOL_INPUT`], stop reason `tool_use` (streamed in two
/// pieces); when the last user turn carries a `toolResult`, the answer is the text
/// `Tool said: <tool result text>`; otherwise the usual mock text.
pub fn plan(path: &str, body: &[u8], knobs: &MockKnobs, request_index: u64) -> MockPlan {
    let (model, stream) = match parse_path(path) {
        Ok(call) => call,
        Err((status, message)) => return error_plan(status, &message, knobs.latency),
    };
    let inspected = match serde_json::from_slice::<Value>(body)
        .map_err(|e| format!("Malformed input request: {e}"))
        .and_then(|req| inspect(&req))
    {
        Ok(inspected) => inspected,
        Err(message) => return error_plan(400, &message, knobs.latency),
    };

    let (fault, latency) = fault_for(&model, knobs, request_index);
    match fault {
        Some(FaultKind::Status(status)) => {
            return error_plan(status, &injected_message(status), latency)
        }
        Some(FaultKind::Reset) => return no_answer_plan(MockStep::Reset),
        Some(FaultKind::Hang) => return no_answer_plan(MockStep::Hang),
        Some(FaultKind::CutStream | FaultKind::SlowBody) | None => {}
    }

    let requested = if stream {
        knobs.chunks
    } else {
        knobs.completion_tokens
    };
    let answer = answer(&inspected, requested, knobs.response_bytes, stream);
    let cut = fault == Some(FaultKind::CutStream);
    let plan = if stream {
        stream_plan(&answer, inspected.prompt_tokens, knobs, latency, cut)
    } else {
        json_plan(&answer, inspected.prompt_tokens, latency, cut)
    };
    if fault == Some(FaultKind::SlowBody) {
        slow_body(plan)
    } else {
        plan
    }
}

/// Bedrock's error body: `{"message": ...}`.
pub fn error_body(message: &str) -> Bytes {
    Bytes::from(json!({ "message": message }).to_string())
}

fn error_plan(status: u16, message: &str, delay: Duration) -> MockPlan {
    body_plan(status, CONTENT_TYPE_JSON, error_body(message), delay)
}

fn injected_message(status: u16) -> String {
    match status {
        429 => {
            "Too many requests, please wait before trying again. (injected by the mock)".to_owned()
        }
        400 => "The mock provider was asked to fail with status 400 (validation).".to_owned(),
        _ => format!("The mock provider was asked to fail with status {status}."),
    }
}

/// `(model id, stream?)` from the request path.
fn parse_path(path: &str) -> Result<(String, bool), (u16, String)> {
    let path = path.split('?').next().unwrap_or(path);
    let not_found = || (404, format!("Unknown operation: {path}"));
    let start = path.find("/model/").ok_or_else(not_found)? + "/model/".len();
    let rest = &path[start..];
    let (encoded, action) = rest.rsplit_once('/').ok_or_else(not_found)?;
    let stream = match action {
        "converse" => false,
        "converse-stream" => true,
        _ => return Err(not_found()),
    };
    let model = percent_decode(encoded).ok_or_else(|| {
        (
            400,
            "The model identifier is not validly encoded.".to_owned(),
        )
    })?;
    if model.is_empty() {
        return Err(not_found());
    }
    Ok((model, stream))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn inspect(req: &Value) -> Result<Inspected, String> {
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| "1 validation error detected: 'messages' must not be null".to_owned())?;
    let mut text_bytes = 0usize;
    let mut count = |blocks: Option<&Value>| {
        for block in blocks.and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = block.get("text").and_then(Value::as_str) {
                text_bytes += t.len();
            }
            if let Some(results) = block.pointer("/toolResult/content") {
                for r in results.as_array().into_iter().flatten() {
                    if let Some(t) = r.get("text").and_then(Value::as_str) {
                        text_bytes += t.len();
                    }
                }
            }
        }
    };
    count(req.get("system"));
    for m in messages {
        count(m.get("content"));
    }
    let prompt_tokens = (text_bytes.div_ceil(4)).max(1) as u64;
    let max_tokens = req
        .pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_u64);
    let first_tool = req
        .pointer("/toolConfig/tools/0/toolSpec/name")
        .and_then(Value::as_str);

    let mut reply = Reply::Words;
    if let Some(last) = messages.last() {
        if last.get("role").and_then(Value::as_str) == Some("user") {
            let blocks = last
                .get("content")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let results: Vec<String> = blocks
                .iter()
                .filter_map(|b| b.get("toolResult"))
                .map(tool_result_text)
                .collect();
            let has_text = blocks
                .iter()
                .any(|b| b.get("text").and_then(Value::as_str).is_some());
            if !results.is_empty() {
                reply = Reply::ToolSaid(results.join(" "));
            } else if let (Some(tool), true) = (first_tool, has_text) {
                reply = Reply::CallTool(tool.to_owned());
            }
        }
    }
    Ok(Inspected {
        prompt_tokens,
        max_tokens,
        reply,
    })
}

/// The text of a `toolResult`: its text blocks, or its JSON blocks serialised.
fn tool_result_text(result: &Value) -> String {
    let mut out = String::new();
    for block in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            out.push_str(t);
        } else if let Some(j) = block.get("json") {
            out.push_str(&j.to_string());
        }
    }
    out
}

// === answers ===

fn piece(i: usize) -> &'static str {
    let word = WORDS[i % WORDS.len()];
    if i == 0 {
        word.trim_start()
    } else {
        word
    }
}

fn tokens_of(text: &str) -> u64 {
    (text.len().div_ceil(4)).max(1) as u64
}

fn answer(
    inspected: &Inspected,
    requested: u32,
    response_bytes: Option<usize>,
    stream: bool,
) -> Answer {
    match &inspected.reply {
        Reply::CallTool(name) => {
            let (a, b) = MOCK_TOOL_INPUT.split_at(MOCK_TOOL_INPUT.len() / 2);
            Answer {
                kind: AnswerKind::Tool(name.clone()),
                deltas: vec![(a.to_owned(), tokens_of(a)), (b.to_owned(), tokens_of(b))],
                stop_reason: "tool_use",
            }
        }
        Reply::ToolSaid(result) => {
            let mut deltas = vec![(TOOL_SAID_PREFIX.to_owned(), tokens_of(TOOL_SAID_PREFIX))];
            if !result.is_empty() {
                deltas.push((result.clone(), tokens_of(result)));
            }
            Answer {
                kind: AnswerKind::Text,
                deltas,
                stop_reason: "end_turn",
            }
        }
        Reply::Words => {
            let capped = match inspected.max_tokens {
                Some(max) if max < u64::from(requested) => max as usize,
                _ => requested as usize,
            };
            let words = padded_words(capped, response_bytes);
            let chunks = if stream { capped } else { 1 };
            let mut deltas = Vec::with_capacity(chunks);
            if !words.is_empty() {
                // With padding there are more words than chunks: chunk c carries words
                // [c*W/n, (c+1)*W/n), at least one each.
                let n = chunks.max(1);
                for c in 0..n {
                    let range = (c * words.len() / n)..((c + 1) * words.len() / n);
                    let text: String = words[range.clone()].concat();
                    deltas.push((text, range.len() as u64));
                }
            }
            Answer {
                kind: AnswerKind::Text,
                deltas,
                stop_reason: if capped < requested as usize {
                    "max_tokens"
                } else {
                    "end_turn"
                },
            }
        }
    }
}

/// `base` words, and more until the text is exactly `target` bytes when a target is set (the
/// last word is truncated to fit).
fn padded_words(base: usize, target: Option<usize>) -> Vec<String> {
    let mut words: Vec<String> = (0..base).map(|i| piece(i).to_owned()).collect();
    let Some(target) = target else {
        return words;
    };
    let mut len: usize = words.iter().map(String::len).sum();
    if len >= target {
        return words;
    }
    let mut i = base;
    while len < target {
        let p = piece(i);
        let take = p.len().min(target - len);
        words.push(p[..take].to_owned());
        len += take;
        i += 1;
    }
    words
}

fn usage_json(prompt: u64, completion: u64) -> Value {
    json!({
        "inputTokens": prompt,
        "outputTokens": completion,
        "totalTokens": prompt + completion,
    })
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        cached_tokens: 0,
    }
}

fn json_plan(answer: &Answer, prompt: u64, latency: Duration, cut: bool) -> MockPlan {
    let completion = answer.completion_tokens();
    let content = match &answer.kind {
        AnswerKind::Text => {
            let text: String = answer.deltas.iter().map(|d| d.0.as_str()).collect();
            json!([{ "text": text }])
        }
        AnswerKind::Tool(name) => {
            let input: Value = serde_json::from_str(MOCK_TOOL_INPUT).unwrap_or(Value::Null);
            json!([{ "toolUse": { "toolUseId": MOCK_TOOL_USE_ID, "name": name, "input": input } }])
        }
    };
    let body = json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": answer.stop_reason,
        "usage": usage_json(prompt, completion),
        "metrics": { "latencyMs": 0 },
    });
    let bytes = Bytes::from(body.to_string());
    let mut plan = body_plan(200, CONTENT_TYPE_JSON, bytes.clone(), latency);
    if cut {
        // Half the body, then a reset: the client cannot use any of it.
        plan.steps = vec![
            plan.steps.swap_remove(0),
            MockStep::Body {
                delay: Duration::ZERO,
                bytes: bytes.slice(..bytes.len() / 2),
            },
            MockStep::Reset,
        ];
        plan.usage = usage(prompt, 0);
    } else {
        plan.usage = usage(prompt, completion);
    }
    plan
}

fn event(out: &mut Vec<u8>, event_type: &str, payload: &Value) {
    // Encoding fails only for oversized headers or messages, which these small events are not.
    let _ = write_event(event_type, payload.to_string().as_bytes(), out);
}

fn stream_plan(
    answer: &Answer,
    prompt: u64,
    knobs: &MockKnobs,
    latency: Duration,
    cut: bool,
) -> MockPlan {
    let mut prefix = Vec::new();
    event(&mut prefix, "messageStart", &json!({ "role": "assistant" }));
    if let AnswerKind::Tool(name) = &answer.kind {
        event(
            &mut prefix,
            "contentBlockStart",
            &json!({
                "contentBlockIndex": 0,
                "start": { "toolUse": { "toolUseId": MOCK_TOOL_USE_ID, "name": name } }
            }),
        );
    }
    let deltas: Vec<(Vec<u8>, u64)> = answer
        .deltas
        .iter()
        .map(|(text, tokens)| {
            let delta = match answer.kind {
                AnswerKind::Text => json!({ "text": text }),
                AnswerKind::Tool(_) => json!({ "toolUse": { "input": text } }),
            };
            let mut out = Vec::new();
            event(
                &mut out,
                "contentBlockDelta",
                &json!({ "contentBlockIndex": 0, "delta": delta }),
            );
            (out, *tokens)
        })
        .collect();

    let mut steps = Vec::with_capacity(deltas.len() + 3);
    steps.push(MockStep::Head {
        delay: latency,
        status: 200,
        content_type: CONTENT_TYPE_EVENTSTREAM,
        body_len: None,
    });
    let sent = if cut { deltas.len() / 2 } else { deltas.len() };
    let mut pending = prefix;
    let mut served = 0;
    for (i, (bytes, tokens)) in deltas.iter().take(sent).enumerate() {
        pending.extend_from_slice(bytes);
        served += tokens;
        steps.push(MockStep::Body {
            delay: if i == 0 {
                knobs.ttft
            } else {
                knobs.chunk_delay
            },
            bytes: Bytes::from(std::mem::take(&mut pending)),
        });
    }
    if cut {
        if !pending.is_empty() {
            steps.push(MockStep::Body {
                delay: knobs.ttft,
                bytes: Bytes::from(pending),
            });
        }
        steps.push(MockStep::Reset);
        return MockPlan {
            steps,
            status: Some(200),
            usage: usage(prompt, served),
        };
    }
    let completion = answer.completion_tokens();
    event(
        &mut pending,
        "contentBlockStop",
        &json!({ "contentBlockIndex": 0 }),
    );
    event(
        &mut pending,
        "messageStop",
        &json!({ "stopReason": answer.stop_reason }),
    );
    event(
        &mut pending,
        "metadata",
        &json!({ "usage": usage_json(prompt, completion), "metrics": { "latencyMs": 0 } }),
    );
    steps.push(MockStep::Body {
        delay: if deltas.is_empty() {
            knobs.ttft
        } else {
            Duration::ZERO
        },
        bytes: Bytes::from(pending),
    });
    steps.push(MockStep::End);
    MockPlan {
        steps,
        status: Some(200),
        usage: usage(prompt, completion),
    }
}

/// Head at once, then every body byte in small pieces [`SLOW_BODY_PIECE_DELAY`] apart, then the
/// plan's last step.
fn slow_body(plan: MockPlan) -> MockPlan {
    let mut head = None;
    let mut body = BytesMut::new();
    let mut last = MockStep::End;
    for step in plan.steps {
        match step {
            MockStep::Head {
                status,
                content_type,
                body_len,
                ..
            } => {
                head = Some(MockStep::Head {
                    delay: Duration::ZERO,
                    status,
                    content_type,
                    body_len,
                });
            }
            MockStep::Body { bytes, .. } => body.extend_from_slice(&bytes),
            other => last = other,
        }
    }
    let mut steps = Vec::with_capacity(SLOW_BODY_MAX_PIECES + 2);
    steps.extend(head);
    let mut body = body.freeze();
    let mut pieces = 0;
    while !body.is_empty() {
        pieces += 1;
        let take = if pieces >= SLOW_BODY_MAX_PIECES {
            body.len()
        } else {
            body.len().min(SLOW_BODY_PIECE_BYTES)
        };
        steps.push(MockStep::Body {
            delay: SLOW_BODY_PIECE_DELAY,
            bytes: body.split_to(take),
        });
    }
    steps.push(last);
    MockPlan {
        steps,
        status: plan.status,
        usage: plan.usage,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
            Ok(("anthropic.claude-3-haiku-20240307-v1:0".to_owned(), true))
        );
        assert_eq!(
            parse_path("/base/model/m/converse"),
            Ok(("m".to_owned(), false))
        );
        assert_eq!(parse_path("/model/m/invoke").unwrap_err().0, 404);
        assert_eq!(parse_path("/model/%zz/converse").unwrap_err().0, 400);
    }

    #[test]
    fn padding_is_exact() {
        let words = padded_words(4, Some(100));
        assert_eq!(words.concat().len(), 100);
        assert_eq!(padded_words(3, None).concat(), "Tollgate mock tokens");
    }

    #[test]
    fn slow_body_trickles() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        let p = plan(
            "/model/mock-slow-body/converse",
            body,
            &MockKnobs::default(),
            0,
        );
        let bodies = p
            .steps
            .iter()
            .filter(|s| matches!(s, MockStep::Body { .. }))
            .count();
        assert!(bodies > 3 && bodies <= SLOW_BODY_MAX_PIECES, "{bodies}");
        assert!(matches!(p.steps[0], MockStep::Head { delay, .. } if delay.is_zero()));
    }
}
